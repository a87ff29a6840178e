"""The web app: ``pixmend serve`` (extra ``[app]``, Gradio). One tab per task.

Every upload goes through ``pixmend.io.read_image`` like the CLI (EXIF orientation, 16-bit, alpha, the pixel
limit, one-line errors for bad files), and every result is written by ``io.write_image`` in the input's format
to a private temporary folder, from which the browser downloads it. Models are loaded once per process
(``tasks.common.get_model``) and requests queue one at a time (``default_concurrency_limit=1``), so two users
never make the CPU thrash. The Correct tab keeps the fully corrected image in the session, so moving the
strength slider re-blends instantly without running the model again.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import PixmendError

DEFAULT_MAX_FILE_SIZE = "50mb"


def _gr():
    try:
        import gradio as gr
    except ImportError:
        raise PixmendError("the web app needs the app extra: pip install 'pixmend[app]'") from None
    return gr


class Workspace:
    """A temporary folder for results, removed when the app closes."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="pixmend-app-"))
        self._n = 0

    def path(self, stem: str, suffix: str) -> Path:
        self._n += 1
        d = self.dir / f"{self._n:06d}"
        d.mkdir()
        return d / f"{stem}{suffix}"

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _load(path):
    """Read an uploaded file, turning any failure into a one-line message for the user."""
    from . import io

    gr = _gr()
    if not path:
        raise gr.Error("Upload an image first.")
    try:
        return io.read_image(path)
    except PixmendError as e:
        raise gr.Error(str(e).replace(str(Path(path).parent) + "/", "")) from None


def _save(ws: Workspace, loaded, rgb, alpha, stem_suffix: str) -> str:
    from . import io

    src = Path(loaded.path) if loaded.path else Path("image.png")
    suffix = src.suffix.lower() if src.suffix.lower() in io.IMAGE_EXTENSIONS else ".png"
    out = ws.path(f"{src.stem}{stem_suffix}", suffix)
    io.write_image(out, rgb, alpha, like=loaded)
    return str(out)


def _model(name, task):
    from .tasks.common import get_model

    gr = _gr()
    try:
        return get_model(name, task)
    except PixmendError as e:
        raise gr.Error(str(e)) from None


# ------------------------------------------------------------------------------------------------ actions
def _mark(rgb, text):
    """The seed's invisible watermark, when the user typed one."""
    if not text:
        return rgb
    from .watermark import check_text, embed

    try:
        check_text(text)
        return embed(rgb, text)
    except PixmendError as e:
        raise _gr().Error(str(e)) from None


def correct_action(ws: Workspace, path, model_name, stride, strength, watermark=None, progress=None):
    """Run the model once at full strength; return (slider pair, download, inspect table, state)."""
    from .tasks.correct import blend, correct_rgb, inspect_rgb

    loaded = _load(path)
    model, card = _model(model_name, "correct")
    stride = int(stride) if stride else None
    full = correct_rgb(loaded.rgb, model, card, 1.0, stride)
    info = inspect_rgb(loaded.rgb, model, card) if card["architecture"] == "gl-transformer" else {}
    out = _mark(blend(loaded.rgb, full, float(strength)), watermark)
    saved = _save(ws, loaded, out, loaded.alpha, "-corrected")
    state = {"loaded": loaded, "full": full, "watermark": watermark}
    return (path, saved), saved, info, state


def reblend_action(ws: Workspace, state, strength):
    """The strength slider: blend the kept result with the original — no model run."""
    from .tasks.correct import blend

    if not state:
        return None, None
    loaded = state["loaded"]
    out = _mark(blend(loaded.rgb, state["full"], float(strength)), state.get("watermark"))
    saved = _save(ws, loaded, out, loaded.alpha, "-corrected")
    return (str(loaded.path), saved), saved


def correct_batch_action(ws: Workspace, files, model_name, stride, strength):
    """Many uploads → one zip of results; bad files are listed, the rest still processed."""
    from . import io
    from .tasks.common import error_line
    from .tasks.correct import correct_rgb

    if not files:
        raise _gr().Error("Upload one or more images.")
    model, card = _model(model_name, "correct")
    zpath = ws.path("pixmend-corrected", ".zip")
    errors, done = [], 0
    with zipfile.ZipFile(zpath, "w") as z:
        for f in files:
            f = getattr(f, "name", f)
            try:
                loaded = io.read_image(f)
                out = correct_rgb(loaded.rgb, model, card, float(strength), int(stride) if stride else None)
                saved = _save(ws, loaded, out, loaded.alpha, "")
                z.write(saved, Path(f).name)
                done += 1
            except (PixmendError, RuntimeError, ValueError, OSError) as e:
                errors.append(error_line(Path(f).name, e))
    report = f"{done} of {len(files)} images corrected." + ("\n" + "\n".join(errors) if errors else "")
    return str(zpath), report


def upscale_action(ws: Workspace, path, scale, ensemble=False, bicubic=False):
    """``bicubic``: the picture was made small with a bicubic filter, so window-sr-x{scale}-bicubic is used."""
    from .tasks.upscale import upscale_image

    loaded = _load(path)
    name = f"window-sr-x{int(scale)}" + ("-bicubic" if bicubic else "")
    model, _card = _model(name, "upscale")
    rgb, alpha = upscale_image(loaded.rgb, loaded.alpha, model, int(scale), ensemble=bool(ensemble))
    saved = _save(ws, loaded, rgb, alpha, f"-x{int(scale)}")
    return saved, saved


def editor_mask(value) -> tuple[str | None, np.ndarray | None]:
    """From a Gradio ImageEditor value: (background file, mask) — the mask is every painted pixel."""
    if not value:
        return None, None
    bg = value.get("background")
    layers = value.get("layers") or []
    mask = None
    for layer in layers:
        arr = np.asarray(_as_array(layer))
        if arr.ndim == 3 and arr.shape[2] == 4:
            painted = arr[..., 3] > 0
        else:
            painted = arr.reshape(arr.shape[0], arr.shape[1], -1).max(axis=2) > 0
        mask = painted if mask is None else (mask | painted)
    return bg, (mask.astype(np.float32) if mask is not None else None)


def _as_array(x):
    from PIL import Image

    if isinstance(x, (str, Path)):
        return np.asarray(Image.open(x))
    if isinstance(x, Image.Image):
        return np.asarray(x)
    return np.asarray(x)


def inpaint_action(ws: Workspace, value, ensemble=False):
    from .tasks.inpaint import inpaint_image

    gr = _gr()
    bg, mask = editor_mask(value)
    if bg is None:
        raise gr.Error("Upload an image, then paint over what should be filled.")
    if mask is None or not mask.any():
        raise gr.Error("Paint over the part of the image to fill (the brush).")
    if isinstance(bg, (str, Path)):
        loaded = _load(bg)
    else:
        from .io import from_array_or_pil

        loaded = from_array_or_pil(_as_array(bg))
    if mask.shape != loaded.rgb.shape[:2]:
        raise gr.Error(f"the painted mask is {mask.shape[1]}×{mask.shape[0]}, the image "
                       f"{loaded.rgb.shape[1]}×{loaded.rgb.shape[0]}")
    model, _card = _model(None, "inpaint")
    rgb, alpha = inpaint_image(loaded.rgb, loaded.alpha, mask, model, ensemble=bool(ensemble))
    saved = _save(ws, loaded, rgb, alpha, "-inpainted")
    return saved, saved


def generate_action(num, seed, temperature, top_k, label, view_scale):
    from .tasks.generate import generate_images, upscale_nearest

    model, card = _model(None, "generate")
    try:
        imgs = generate_images(model, card, int(num), int(seed), label or None, float(temperature),
                               int(top_k) if top_k else None)
    except PixmendError as e:
        raise _gr().Error(str(e)) from None
    return [(upscale_nearest(im, int(view_scale)) * 255 + 0.5).astype(np.uint8) for im in imgs]


def complete_action(path, keep, seed, temperature, num, view_scale):
    from .tasks.generate import complete_rgb, upscale_nearest

    loaded = _load(path)
    model, card = _model(None, "generate")
    outs = [complete_rgb(loaded.rgb, model, card, float(keep), float(temperature), None, int(seed) + i)
            for i in range(int(num))]
    return [(upscale_nearest(o, int(view_scale)) * 255 + 0.5).astype(np.uint8) for o in outs]


# ---------------------------------------------------------------------------------------------------- UI
def build_app(ws: Workspace | None = None):
    """The Gradio Blocks app (not launched)."""
    gr = _gr()
    from .models.registry import list_models

    ws = ws or Workspace()
    with gr.Blocks(title="pixmend") as demo:
        gr.Markdown("# pixmend\nMend images with small Transformer models — on your own machine.")
        with gr.Tab("Correct", id="correct"):
            gr.Markdown("Remove the yellow/orange cast and over-sharpening of GPT/Sora images.")
            with gr.Row():
                with gr.Column():
                    c_in = gr.Image(type="filepath", label="Image", elem_id="correct-input", image_mode=None)
                    c_model = gr.Dropdown(list_models("correct"), value="gl-transformer", label="Model",
                                          elem_id="correct-model")
                    c_stride = gr.Number(value=0, precision=0, minimum=0, label="Stride (pixel-transformer only;"
                                         " 0 = default)", elem_id="correct-stride")
                    c_strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Strength",
                                           elem_id="correct-strength")
                    c_mark = gr.Textbox(label="Invisible watermark (optional; read back with `pixmend verify`)",
                                        elem_id="correct-watermark")
                    c_btn = gr.Button("Correct", variant="primary", elem_id="correct-btn")
                with gr.Column():
                    c_cmp = gr.ImageSlider(label="Before / after", elem_id="correct-compare", type="filepath")
                    c_file = gr.File(label="Download", elem_id="correct-download")
                    c_info = gr.JSON(label="What the model sees (inspect)", elem_id="correct-inspect")
            c_state = gr.State(None)
            c_btn.click(lambda p, m, s, st, wm: correct_action(ws, p, m, s, st, wm),
                        [c_in, c_model, c_stride, c_strength, c_mark], [c_cmp, c_file, c_info, c_state])
            c_strength.release(lambda st, s: reblend_action(ws, st, s), [c_state, c_strength], [c_cmp, c_file],
                               queue=False)
            with gr.Accordion("Many images → zip", open=False):
                b_in = gr.File(file_count="multiple", label="Images", elem_id="batch-input")
                b_btn = gr.Button("Correct all", elem_id="batch-btn")
                b_out = gr.File(label="Results (zip)", elem_id="batch-download")
                b_report = gr.Textbox(label="Report", lines=3, elem_id="batch-report")
                b_btn.click(lambda f, m, s, st: correct_batch_action(ws, f, m, s, st),
                            [b_in, c_model, c_stride, c_strength], [b_out, b_report])
        with gr.Tab("Upscale", id="upscale"):
            with gr.Row():
                with gr.Column():
                    u_in = gr.Image(type="filepath", label="Image", elem_id="upscale-input")
                    u_scale = gr.Radio([2, 4], value=2, label="Scale", elem_id="upscale-scale")
                    u_ens = gr.Checkbox(False, label="Self-ensemble (8 orientations: a bit better, 8× slower)",
                                        elem_id="upscale-ensemble")
                    u_bic = gr.Checkbox(False, elem_id="upscale-bicubic",
                                        label="Made small with a bicubic filter (window-sr-x2/x4-bicubic)")
                    u_btn = gr.Button("Upscale", variant="primary", elem_id="upscale-btn")
                with gr.Column():
                    u_out = gr.Image(type="filepath", label="Result", elem_id="upscale-output")
                    u_file = gr.File(label="Download", elem_id="upscale-download")
            u_btn.click(lambda p, s, e, b: upscale_action(ws, p, s, e, b), [u_in, u_scale, u_ens, u_bic],
                        [u_out, u_file])
        with gr.Tab("Inpaint", id="inpaint"):
            gr.Markdown("Upload an image and paint over what should be filled.")
            with gr.Row():
                with gr.Column():
                    i_in = gr.ImageEditor(type="filepath", label="Image + brush", elem_id="inpaint-editor",
                                          brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"))
                    i_ens = gr.Checkbox(False, label="Self-ensemble (8 orientations: a bit better, 8× slower)",
                                        elem_id="inpaint-ensemble")
                    i_btn = gr.Button("Fill", variant="primary", elem_id="inpaint-btn")
                with gr.Column():
                    i_out = gr.Image(type="filepath", label="Result", elem_id="inpaint-output")
                    i_file = gr.File(label="Download", elem_id="inpaint-download")
            i_btn.click(lambda v, e: inpaint_action(ws, v, e), [i_in, i_ens], [i_out, i_file])
        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column():
                    g_num = gr.Slider(1, 64, value=16, step=1, label="Images", elem_id="generate-num")
                    g_seed = gr.Number(value=0, precision=0, label="Seed", elem_id="generate-seed")
                    g_temp = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                    g_topk = gr.Number(value=0, precision=0, minimum=0, label="Top-k (0 = all)")
                    g_label = gr.Textbox(label="Label (models trained with labels)")
                    g_view = gr.Slider(1, 16, value=4, step=1, label="View scale")
                    g_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                g_out = gr.Gallery(label="Samples", columns=8, elem_id="generate-gallery")
            g_btn.click(generate_action, [g_num, g_seed, g_temp, g_topk, g_label, g_view], [g_out])
            gr.Markdown("### Complete: keep the top rows of an image, sample the rest")
            with gr.Row():
                with gr.Column():
                    k_in = gr.Image(type="filepath", label="Image", elem_id="complete-input")
                    k_keep = gr.Slider(0.0, 1.0, value=0.5, step=1 / 32, label="Keep (fraction of rows)")
                    k_num = gr.Slider(1, 16, value=4, step=1, label="Completions")
                    k_btn = gr.Button("Complete", elem_id="complete-btn")
                k_out = gr.Gallery(label="Completions", columns=4, elem_id="complete-gallery")
            k_btn.click(complete_action, [k_in, k_keep, g_seed, g_temp, k_num, g_view], [k_out])
    demo.queue(default_concurrency_limit=1)
    demo.pixmend_workspace = ws
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, max_file_size: str = DEFAULT_MAX_FILE_SIZE,
          block: bool = True):
    """Launch the app. Binds 127.0.0.1 unless told otherwise; uploads over ``max_file_size`` are refused."""
    demo = build_app()
    demo.launch(server_name=host, server_port=port, max_file_size=max_file_size, prevent_thread_lock=not block,
                show_error=True, inbrowser=False)
    return demo
