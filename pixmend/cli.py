"""Command-line interface: argument parsing only; the work happens in ``pixmend.tasks``.

Exit status: 0 all done; 1 some inputs failed (each named on one stderr line, the rest still processed);
2 usage error. Heavy modules (torch, the app, the trainer) are imported only by the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import PixmendError, UsageError

TASKS = ("correct", "upscale", "inpaint", "generate")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.print_usage(sys.stderr)
        print(f"pixmend: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(v: str) -> int:
    i = int(v)
    if i < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {v}")
    return i


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pixmend", description="Mend images with small Transformer models.")
    p.add_argument("--version", action="version", version=f"pixmend {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add_device(sp):
        sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to run (default: auto = CUDA, then Apple MPS, then CPU)")

    c = sub.add_parser("correct", help="remove the GPT-image colour cast and over-sharpening",
                       description="Correct images. One input file: OUT is a file; otherwise OUT is a folder and "
                                   "each output keeps its input's name and format.")
    c.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    c.add_argument("-o", "--output", required=True, metavar="OUT")
    c.add_argument("--model", default=None, help="registry name (gl-transformer [default], pixel-transformer) "
                                                 "or a .safetensors path written by `pixmend train`")
    c.add_argument("--strength", type=_fraction, default=1.0, help="0 = original, 1 = fully corrected (default 1)")
    c.add_argument("--stride", type=_positive_int, default=None,
                   help="pixel-transformer only: window stride (default num_pixels/2; smaller = smoother, slower)")
    c.add_argument("--batch-size", type=_positive_int, default=128, help="pixel-transformer windows per batch")
    c.add_argument("--watermark", metavar="TEXT", default=None, help="embed TEXT as an invisible watermark")
    c.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    c.add_argument("--max-pixels", type=_positive_int, default=None, help="refuse larger images (default 100 MP)")
    add_device(c)

    u = sub.add_parser("upscale", help="super-resolution ×2 or ×4 (window + channel attention Transformer)",
                       description="Upscale images. One input file: OUT is a file; otherwise OUT is a folder and "
                                   "each output keeps its input's name and format. Alpha is upscaled by bicubic.")
    u.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    u.add_argument("-o", "--output", required=True, metavar="OUT")
    u.add_argument("--scale", type=int, choices=[2, 4], default=None,
                   help="2 or 4 (default: the model's scale; without --model, 2 → window-sr-x2, 4 → window-sr-x4)")
    u.add_argument("--model", default=None, help="registry name (window-sr-x2, window-sr-x4; window-sr-x2-bicubic, "
                                                 "window-sr-x4-bicubic for images made small with a bicubic filter) "
                                                 "or a .safetensors path written by `pixmend train upscale`")
    u.add_argument("--tile", type=_positive_int, default=256, help="tile side in input pixels (default 256)")
    u.add_argument("--self-ensemble", action="store_true",
                   help="average the model over the 8 rotations/flips of each tile: a little better, 8× slower")
    u.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    u.add_argument("--max-pixels", type=_positive_int, default=None,
                   help="refuse larger inputs (default 100 MP / scale², so outputs stay within 100 MP)")
    add_device(u)

    ip = sub.add_parser("inpaint", help="fill holes: white pixels of the mask are replaced, all others kept",
                        description="Inpaint images. MASK is an image of the same size (white = fill) or, for "
                                    "several inputs, a folder of masks with the same file names (any extension). "
                                    "Pixels outside the mask are never changed; alpha is kept.")
    ip.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    ip.add_argument("--mask", required=True, metavar="MASK", help="mask image, or a folder of masks named like the inputs")
    ip.add_argument("-o", "--output", required=True, metavar="OUT")
    ip.add_argument("--model", default=None, help="registry name (inpaint-unet) or a .safetensors path "
                                                  "written by `pixmend train inpaint`")
    ip.add_argument("--context", type=_positive_int, default=16, help="known pixels around each hole the model sees (default 16)")
    ip.add_argument("--whole", action="store_true",
                    help="the seed's whole-image variant: one pass over the entire image (default: a window per hole)")
    ip.add_argument("--self-ensemble", action="store_true",
                    help="average each hole's fill over the 8 rotations/flips of its window: a bit better, 8× slower")
    ip.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ip.add_argument("--max-pixels", type=_positive_int, default=None, help="refuse larger images (default 100 MP)")
    add_device(ip)

    ex = sub.add_parser("export", help="export a model to ONNX (dynamic batch and image sizes)",
                        description="Export a shipped model (registry name) or trained weights (.safetensors with "
                                    "its .json card) as an ONNX graph. Needs the [onnx] extra.")
    ex.add_argument("model", metavar="MODEL")
    ex.add_argument("--format", default="onnx", choices=["onnx"])
    ex.add_argument("-o", "--output", required=True, metavar="FILE")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    ex.add_argument("--check", action="store_true", help="run the graph in onnxruntime and compare with PyTorch")

    sv = sub.add_parser("serve", help="the web app (Gradio; pip install 'pixmend[app]')",
                        description="Start the pixmend web app: a tab per task. Binds 127.0.0.1 unless --host.")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=_positive_int, default=7860)
    sv.add_argument("--max-file-size", default="50mb", help="largest upload (default 50mb)")

    i = sub.add_parser("inspect", help="show the cast and sharpening the corrector estimates")
    i.add_argument("inputs", nargs="+", metavar="IMAGE")
    i.add_argument("--model", default=None)
    i.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    add_device(i)

    v = sub.add_parser("verify", help="read an invisible pixmend watermark back")
    v.add_argument("inputs", nargs="+", metavar="IMAGE")

    t = sub.add_parser("train", help="train a model on your own data (also under torchrun)")
    t.add_argument("task", choices=TASKS)
    t.add_argument("--data", required=True, help="folder of clean photos, or inputs/ + outputs/ pairs")
    t.add_argument("--model", default=None, help="architecture to train (default: the task's default)")
    t.add_argument("--config", default=None, help="TOML (or YAML) file of training/model settings")
    t.add_argument("--steps", type=_positive_int, default=None, help="stop after N optimiser steps")
    t.add_argument("--batch-size", type=_positive_int, default=None)
    t.add_argument("--lr", type=float, default=None, help="peak learning rate")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    t.add_argument("--out", default=None, help="run directory (default runs/TASK-MODEL)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                   help="autocast: auto = bf16 on GPUs that support it (else fp16 with loss scaling), fp32 on CPU")
    t.add_argument("--init", metavar="MODEL", default=None,
                   help="start from these weights (registry name or .safetensors path): fine-tune a shipped model "
                        "on your data, or start ×4 from ×2; tensors whose shapes differ are left as initialised")
    t.add_argument("--no-progress", action="store_true")
    add_device(t)

    e = sub.add_parser("eval", help="measure a model (PSNR/SSIM/CIEDE2000, bits/dim, ...)")
    e.add_argument("task", choices=TASKS)
    e.add_argument("--data", required=True)
    e.add_argument("--model", default=None)
    e.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images")
    e.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    add_device(e)

    def add_sampling(sp):  # complete / generate (pixel-gpt)
        sp.add_argument("--model", default=None, help="registry name (pixel-gpt [default]) or a .safetensors path "
                                                     "written by `pixmend train generate`")
        sp.add_argument("--temperature", type=_non_negative, default=1.0,
                        help="sampling temperature (default 1; 0 = always the likeliest token)")
        sp.add_argument("--top-k", type=_positive_int, default=None,
                        help="sample among the k likeliest tokens only (a factored-head model such as the shipped "
                             "pixel-gpt: the k likeliest levels of each colour channel)")
        sp.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
        sp.add_argument("--label", default=None, help="class name or index, for a model trained on labelled "
                                                      "sub-folders")
        sp.add_argument("--view-scale", type=_positive_int, default=1,
                        help="enlarge outputs N× (nearest neighbour) for viewing; the model works at 32×32")
        sp.add_argument("--overwrite", action="store_true", help="replace existing outputs")
        add_device(sp)

    cp = sub.add_parser("complete", help="complete images: keep the top rows, sample the rest (pixel-gpt)",
                        description="Each image is centre-cropped to a square and reduced to the model's 32×32 "
                                    "quantised colours; the top --keep fraction of rows is kept and the rest "
                                    "sampled. One input file: OUT is a file; otherwise OUT is a folder.")
    cp.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    cp.add_argument("-o", "--output", required=True, metavar="OUT")
    cp.add_argument("--keep", type=_fraction, default=0.5, help="fraction of rows kept from the top (default 0.5)")
    add_sampling(cp)

    g = sub.add_parser("generate", help="sample new images (pixel-gpt)",
                       description="Sample NUM images (32×32) into DIR as seedS_000.png, ... and/or one grid image.")
    g.add_argument("-o", "--output", default=None, metavar="DIR", help="folder for the images")
    g.add_argument("-n", "--num", type=_positive_int, default=16, help="number of images (default 16)")
    g.add_argument("--grid", default=None, metavar="FILE", help="also write all samples as one grid image")
    add_sampling(g)
    return p


def _fraction(v: str) -> float:
    f = float(v)
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {v}")
    return f


def _non_negative(v: str) -> float:
    f = float(v)
    if not f >= 0.0:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {v}")
    return f


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pixmend")
    except Exception:
        return "unknown"


# ------------------------------------------------------------------------------------------------ commands
def cmd_correct(a) -> int:
    from .tasks import common
    from .tasks.correct import correct_rgb
    from .train import pick_device

    common.set_threads()
    dev = pick_device(a.device)
    model, card = common.get_model(a.model, "correct", dev)
    if a.watermark is not None:
        from .watermark import check_text

        check_text(a.watermark)

    def process(img):
        out = correct_rgb(img.rgb, model, card, a.strength, a.stride, a.batch_size, dev)
        if a.watermark is not None:
            from .watermark import embed

            out = embed(out, a.watermark)
        return out, img.alpha

    return common.run_batch(a.inputs, a.output, process, a.overwrite, desc="correct", max_pixels=a.max_pixels)


def cmd_upscale(a) -> int:
    from .io import DEFAULT_MAX_PIXELS
    from .tasks import common
    from .tasks.upscale import model_scale, upscale_image
    from .train import pick_device

    common.set_threads()
    dev = pick_device(a.device)
    name = a.model or f"window-sr-x{a.scale or 2}"  # no --model: the registry model of that scale
    model, card = common.get_model(name, "upscale", dev)
    s = model_scale(model)
    if a.scale is not None and a.scale != s:
        raise UsageError(f"--scale {a.scale} but model {card.get('name', card['architecture'])} upscales ×{s}")

    def process(img):
        return upscale_image(img.rgb, img.alpha, model, s, dev, a.tile, ensemble=a.self_ensemble)

    return common.run_batch(a.inputs, a.output, process, a.overwrite, desc=f"upscale ×{s}",
                            max_pixels=a.max_pixels or DEFAULT_MAX_PIXELS // (s * s))


def cmd_inpaint(a) -> int:
    from . import io
    from .tasks import common
    from .tasks.inpaint import inpaint_image, mask_from_image
    from .train import pick_device

    mask_path = Path(a.mask)
    if not mask_path.exists():
        raise PixmendError(f"{mask_path}: mask not found")
    masks = None
    if mask_path.is_dir():
        masks = {}
        for p in sorted(mask_path.iterdir()):
            if p.suffix.lower() in io.IMAGE_EXTENSIONS:
                masks.setdefault(p.stem, p)
    common.set_threads()
    dev = pick_device(a.device)
    model, _card = common.get_model(a.model, "inpaint", dev)

    def process(img):
        mp = mask_path
        if masks is not None:
            mp = masks.get(img.path.stem) if img.path is not None else None
            if mp is None:
                raise PixmendError(f"{img.path}: no mask named {img.path.stem}.* in {mask_path}")
        m = io.read_image(mp)
        mask = mask_from_image(m.rgb, m.alpha)
        if mask.shape != img.rgb.shape[:2]:
            raise PixmendError(f"{img.path}: mask {mp} is {mask.shape[1]}×{mask.shape[0]}, the image is "
                               f"{img.rgb.shape[1]}×{img.rgb.shape[0]}")
        return inpaint_image(img.rgb, img.alpha, mask, model, dev, a.context, whole=a.whole, ensemble=a.self_ensemble)

    return common.run_batch(a.inputs, a.output, process, a.overwrite, desc="inpaint", max_pixels=a.max_pixels)


def cmd_export(a) -> int:
    from .export import check_onnx, export

    out = Path(a.output)
    if out.exists() and not a.overwrite:
        raise PixmendError(f"{out}: already exists (use --overwrite to replace it)")
    path = export(a.model, out, a.format)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    if a.check:
        err = check_onnx(a.model, path)
        print(f"onnxruntime matches PyTorch: max abs difference {err:.2e}", file=sys.stderr)
    return 0


def cmd_serve(a) -> int:
    from .app import serve

    print(f"pixmend app on http://{a.host}:{a.port} (Ctrl-C to stop)", file=sys.stderr)
    try:
        serve(a.host, a.port, a.max_file_size)
    except OSError as e:  # the port is taken, or the host is not an address of this machine
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise PixmendError(f"cannot start the web app on {a.host}:{a.port} ({first})") from None
    return 0


def cmd_inspect(a) -> int:
    from . import io
    from .tasks import common
    from .tasks.correct import inspect_rgb
    from .train import pick_device

    common.set_threads()
    dev = pick_device(a.device)
    model, card = common.get_model(a.model, "correct", dev)
    paths, bad = common.collect_inputs(a.inputs)
    status = 1 if bad else 0
    for path in paths:
        try:
            info = {"image": str(path), **inspect_rgb(io.read_image(path).rgb, model, card, dev)}
        except PixmendError as err:
            print(f"pixmend: {common.error_line(path, err)}", file=sys.stderr)
            status = 1
            continue
        if a.json:
            print(json.dumps(info))
        else:
            print(f"{path}")
            for k, v in info.items():
                if k != "image":
                    print(f"  {k:<22} {v}")
    return status


def cmd_verify(a) -> int:
    from . import io
    from .tasks.common import collect_inputs, error_line
    from .watermark import extract

    paths, bad = collect_inputs(a.inputs)
    status = 1 if bad else 0
    for path in paths:
        try:
            text = extract(io.read_image(path).rgb)
        except PixmendError as err:
            print(f"pixmend: {error_line(path, err)}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {'watermark: ' + text if text is not None else 'no pixmend watermark found'}")
    return status


def _task_module(task: str):
    import importlib

    try:
        return importlib.import_module(f"pixmend.tasks.{task}")
    except ModuleNotFoundError:
        raise PixmendError(f"task '{task}' is not available in this version") from None


def cmd_train(a) -> int:
    from .models.registry import DEFAULT_MODELS, list_models
    from .train import parse_overrides, train

    mod = _task_module(a.task)
    arch = a.model or DEFAULT_MODELS.get(a.task)
    if arch not in list_models(a.task):
        raise UsageError(f"unknown model '{arch}' for {a.task} (known: {', '.join(list_models(a.task))})")
    overrides = parse_overrides(a.set)
    for key, val in (("steps", a.steps), ("batch_size", a.batch_size), ("peak_learning_rate", a.lr), ("seed", a.seed),
                     ("precision", a.precision)):
        if val is not None:
            overrides[key] = val
    out = Path(a.out or f"runs/{a.task}-{arch}")
    task = getattr(mod, f"{a.task.capitalize()}Task")()
    res = train(task, arch, Path(a.data), out, a.config, overrides, a.resume, a.device, progress=not a.no_progress,
                init=a.init)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        print(f"done: {res.steps} steps, best validation loss {res.best_val_loss:.5f}; "
              f"model in {out / 'model.safetensors'}", file=sys.stderr)
    return 0


def cmd_eval(a) -> int:
    from .tasks import common
    from .train import pick_device

    common.set_threads()
    mod = _task_module(a.task)
    dev = pick_device(a.device)
    model, card = common.get_model(a.model, a.task, dev)
    res = mod.evaluate(model, card, Path(a.data), device=dev, limit=a.limit, progress=not a.json)
    if a.json:
        print(json.dumps({k: v for k, v in res.items() if k != "per_image"}))
    else:
        for k, v in res.items():
            if k != "per_image":
                print(f"{k:<18} {v:.4f}" if isinstance(v, float) else f"{k:<18} {v}")
    return 0


COMMANDS = {"correct": cmd_correct, "inspect": cmd_inspect, "verify": cmd_verify, "train": cmd_train,
            "eval": cmd_eval}
COMMANDS["upscale"] = cmd_upscale
COMMANDS["inpaint"] = cmd_inpaint
COMMANDS["export"] = cmd_export
COMMANDS["serve"] = cmd_serve


def _sampling_progress(desc: str):
    """A token-level progress bar on an interactive stderr; None otherwise (logs and tests stay clean)."""
    if not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="tok", file=sys.stderr, dynamic_ncols=True, leave=False)

    def progress(i, n):
        bar.total = n
        bar.n = i
        bar.refresh()

    return progress, bar


def cmd_complete(a) -> int:
    from .tasks import common
    from .tasks.generate import complete_rgb, resolve_label, upscale_nearest
    from .train import pick_device

    common.set_threads()
    dev = pick_device(a.device)
    model, card = common.get_model(a.model, "generate", dev)
    resolve_label(card, a.label)  # a bad label is a usage problem: fail before the first file

    def process(img):
        out = complete_rgb(img.rgb, model, card, a.keep, a.temperature, a.top_k, a.seed, a.label)
        return upscale_nearest(out, a.view_scale), None

    return common.run_batch(a.inputs, a.output, process, a.overwrite, desc="complete")


def cmd_generate(a) -> int:
    from . import io
    from .tasks import common
    from .tasks.generate import generate_images, make_grid, resolve_label, upscale_nearest
    from .train import pick_device

    if a.output is None and a.grid is None:
        raise UsageError("generate: give -o DIR and/or --grid FILE")
    out_dir = Path(a.output) if a.output else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: is a file, not a folder")
    targets = [out_dir / f"seed{a.seed}_{i:03d}.png" for i in range(a.num)] if out_dir else []
    targets += [Path(a.grid)] if a.grid else []
    if not a.overwrite:
        for t in targets:
            if t.exists():
                raise PixmendError(f"{t}: already exists (use --overwrite to replace it)")
    common.set_threads()
    dev = pick_device(a.device)
    model, card = common.get_model(a.model, "generate", dev)
    resolve_label(card, a.label)
    progress, bar = _sampling_progress("generate")
    try:
        images = generate_images(model, card, a.num, a.seed, a.label, a.temperature, a.top_k, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    views = [upscale_nearest(im, a.view_scale) for im in images]
    if out_dir is not None:
        for t, im in zip(targets, views):
            io.write_image(t, im, overwrite=a.overwrite)
    if a.grid:
        io.write_image(a.grid, make_grid(views, gap=max(1, a.view_scale)), overwrite=a.overwrite)
    where = ", ".join(str(x) for x in ([out_dir] if out_dir else []) + ([a.grid] if a.grid else []))
    print(f"generated {a.num} image(s) with seed {a.seed}: {where}", file=sys.stderr)
    return 0


COMMANDS.update({"complete": cmd_complete, "generate": cmd_generate})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[a.command](a)
    except UsageError as err:
        print(f"pixmend: error: {err}", file=sys.stderr)
        return 2
    except PixmendError as err:
        print(f"pixmend: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pixmend: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
