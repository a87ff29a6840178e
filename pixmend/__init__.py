"""pixmend: mend images with small Transformer models.

Python API (mirrors the CLI). Functions take a PIL image or a numpy array (uint8, uint16 or float in [0, 1];
(H, W), (H, W, 3) or (H, W, 4)) and return the same kind: a PIL image for a PIL input, a float32 array in
[0, 1] for an array input. Alpha is carried through untouched.

    >>> import pixmend
    >>> fixed = pixmend.correct(Image.open("gpt.png"), strength=1.0)
    >>> info = pixmend.inspect(Image.open("gpt.png"))

Heavy imports (torch, models) happen on first use, so ``import pixmend`` is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["correct", "inspect", "verify", "upscale", "inpaint", "complete", "generate", "create_model",
           "PixmendError"]

from .errors import PixmendError


def _prepare(image):
    from .io import from_array_or_pil

    return from_array_or_pil(image)


def _return_like(image, rgb, alpha):
    from PIL import Image

    from .io import to_pil

    if isinstance(image, Image.Image):
        return to_pil(rgb, alpha)
    import numpy as np

    return np.dstack([rgb, alpha]).astype(np.float32) if alpha is not None else rgb


def correct(image, strength: float = 1.0, model: str | None = None, stride: int | None = None,
            device: str = "cpu", watermark: str | None = None):
    """Remove the GPT-image colour cast and over-sharpening. ``model``: registry name or weights path."""
    from .tasks.common import get_model, set_threads
    from .tasks.correct import correct_rgb

    set_threads()
    img = _prepare(image)
    m, card = get_model(model, "correct", device)
    out = correct_rgb(img.rgb, m, card, strength=strength, stride=stride, device=device)
    if watermark is not None:
        from .watermark import embed

        out = embed(out, watermark)
    return _return_like(image, out, img.alpha)


def inspect(image, model: str | None = None, device: str = "cpu") -> dict:
    """The corrector's estimate: cast direction/strength (CIELAB), colour map, sharpening amount."""
    from .tasks.common import get_model
    from .tasks.correct import inspect_rgb

    img = _prepare(image)
    m, card = get_model(model, "correct", device)
    return inspect_rgb(img.rgb, m, card, device)


def verify(image) -> str | None:
    """The text of an invisible watermark written by ``correct(..., watermark=TEXT)``, or None when there is none."""
    from .watermark import extract

    return extract(_prepare(image).rgb)


def upscale(image, scale: int = 2, model: str | None = None, device: str = "cpu", self_ensemble: bool = False):
    """Super-resolve ×2 or ×4 (alpha upscaled separately by bicubic). ``model`` defaults to window-sr-x{scale};
    ``self_ensemble`` averages the model over the 8 rotations/flips of the input (a little better, 8× slower)."""
    from .tasks.common import get_model, set_threads
    from .tasks.upscale import upscale_image

    if scale not in (2, 4):
        raise PixmendError(f"scale must be 2 or 4, not {scale}")
    set_threads()
    img = _prepare(image)
    m, _card = get_model(model or f"window-sr-x{scale}", "upscale", device)
    rgb, alpha = upscale_image(img.rgb, img.alpha, m, scale, device, ensemble=self_ensemble)
    return _return_like(image, rgb, alpha)


def inpaint(image, mask, model: str | None = None, device: str = "cpu", self_ensemble: bool = False):
    """Fill the holes of ``image`` where ``mask`` is white (a PIL image, array or path of the same size; for an
    array, nonzero/True = fill). Pixels outside the mask are returned unchanged; alpha is kept.
    ``self_ensemble`` averages each fill over the 8 rotations/flips of its window (a little better, 8× slower)."""
    import os

    import numpy as np

    from .tasks.common import get_model, set_threads
    from .tasks.inpaint import inpaint_image, mask_from_image

    set_threads()
    img = _prepare(image)
    if isinstance(mask, (str, os.PathLike)):
        from .io import read_image

        mi = read_image(mask)
        m = mask_from_image(mi.rgb, mi.alpha)
    elif isinstance(mask, np.ndarray) and mask.ndim == 2:
        m = (mask.astype(np.float32) > (0.5 if mask.dtype.kind == "f" else 0)).astype(np.float32)
    else:
        mi = _prepare(mask)
        m = mask_from_image(mi.rgb, mi.alpha)
    mdl, _card = get_model(model, "inpaint", device)
    rgb, alpha = inpaint_image(img.rgb, img.alpha, m, mdl, device, ensemble=self_ensemble)
    return _return_like(image, rgb, alpha)


def complete(image, keep: float = 0.5, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
             label=None, model: str | None = None, device: str = "cpu"):
    """Keep the top ``keep`` fraction of rows of ``image`` (resized to the model's 32×32, quantised) and sample
    the rest with the autoregressive model. Returns a 32×32 image (PIL in → PIL out, numpy → float numpy)."""
    from .tasks.common import get_model, set_threads
    from .tasks.generate import complete_rgb

    set_threads()
    img = _prepare(image)
    m, card = get_model(model, "generate", device)
    out = complete_rgb(img.rgb, m, card, keep, temperature, top_k, seed, label)
    return _return_like(image, out, None)


def generate(num: int = 16, seed: int = 0, label=None, temperature: float = 1.0, top_k: int | None = None,
             model: str | None = None, device: str = "cpu", as_pil: bool = True):
    """``num`` new images from the autoregressive model (deterministic per seed): PIL images, or float numpy
    arrays with ``as_pil=False``."""
    from .tasks.common import get_model, set_threads
    from .tasks.generate import generate_images

    set_threads()
    m, card = get_model(model, "generate", device)
    images = generate_images(m, card, num, seed, label, temperature, top_k)
    if not as_pil:
        return images
    from .io import to_pil

    return [to_pil(im) for im in images]


def create_model(name_or_path: str | None = None, task: str = "correct", pretrained: bool = True,
                 device: str = "cpu"):
    """The registry's front door: ``(model, card)`` for a name such as 'gl-transformer' or a weights path."""
    from .models.registry import create_model as _create

    return _create(name_or_path, task=task, pretrained=pretrained, device=device)
