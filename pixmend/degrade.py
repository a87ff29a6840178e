"""Synthetic degradations used to make training pairs and fixed-seed benchmarks.

The GPT-image damage model follows GUIDE §5 (measured on real GPT outputs): a mostly global colour map
(per-channel gains that cut blue hardest, channel mixing, warm offsets), a tone curve and saturation change,
then unsharp-mask over-sharpening (radius 0.5–3 px, amount 0.2–1.5) and sometimes mild JPEG.
Every sampler takes a ``numpy.random.Generator`` and returns its parameters, so a pair can be explained and
a benchmark repeated exactly. A share of samples is left clean so models learn to leave clean images alone.

All images are float32 arrays (H, W, 3) in [0, 1].
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------- colour cast


@dataclass
class CastParams:
    """degraded = tone(M @ clean + offset), then a saturation change around luma."""

    matrix: list  # 3x3 row-major, applied to column RGB vectors
    offset: list  # 3
    gamma: list  # 3 per-channel exponents (>1 darkens mid-tones)
    saturation: float


@dataclass
class SharpenParams:
    radius: float  # Gaussian sigma of the unsharp mask, pixels
    amount: float  # 0.2 .. 1.5 typical of GPT images
    luma_only: bool = False


@dataclass
class Degradation:
    cast: CastParams | None = None
    sharpen: SharpenParams | None = None
    jpeg_quality: int | None = None
    kind: str = "clean"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DegradeConfig:
    """Probabilities and ranges of the GPT-style degradation; broad on purpose (do not fit one generator)."""

    p_clean: float = 0.12
    p_cast_only: float = 0.20
    p_sharpen_only: float = 0.13  # the rest (≈55%) get cast + sharpening
    p_warm: float = 0.9  # warm (GPT-like) cast vs a milder cast in a random direction
    warmth_range: tuple = (0.35, 1.0)  # strength of the warm cast's latent (0 = no cast)
    p_jpeg: float = 0.3
    jpeg_range: tuple = (70, 95)
    radius_range: tuple = (0.5, 3.0)
    amount_range: tuple = (0.2, 1.5)
    extra: dict = field(default_factory=dict)


def sample_cast(rng: np.random.Generator, warm: bool = True, warmth_range: tuple = (0.35, 1.0)) -> CastParams:
    """A GPT-like cast. Real casts are consistent in direction (GUIDE §5: the corrections needed blue gain
    1.30–1.63, green 1.07–1.23, red 1.00–1.34), so one *warmth* latent drives all channels, with per-channel
    jitter, mild mixing and tone/saturation changes around it. ``warm=False`` gives a milder cast in a random
    direction so the model does not assume every tint is orange."""
    if warm:
        w = rng.uniform(*warmth_range)
        loss = np.array([rng.uniform(-0.04, 0.22), rng.uniform(0.06, 0.22), rng.uniform(0.25, 0.45)])
        gains = 1.0 - w * loss  # blue ×0.55–0.91, green ×0.78–0.98, red ×0.78–1.04
        offset = w * np.array([rng.uniform(0.0, 0.06), rng.uniform(-0.01, 0.04), rng.uniform(-0.05, 0.01)])
    else:
        gains = rng.uniform(0.85, 1.1, size=3)
        offset = rng.uniform(-0.03, 0.03, size=3)
    matrix = np.diag(gains)
    off_diag = np.clip(rng.normal(0.0, 0.03, size=(3, 3)), -0.1, 0.1)
    np.fill_diagonal(off_diag, 0.0)
    matrix = matrix + off_diag
    gamma = rng.uniform(0.9, 1.12) * rng.uniform(0.97, 1.03, size=3)
    saturation = float(rng.uniform(0.9, 1.2))
    return CastParams(matrix.tolist(), offset.tolist(), gamma.tolist(), saturation)


def apply_cast(rgb: np.ndarray, cast: CastParams) -> np.ndarray:
    m = np.asarray(cast.matrix, dtype=np.float32)
    out = rgb.reshape(-1, 3) @ m.T + np.asarray(cast.offset, dtype=np.float32)
    out = np.clip(out, 0.0, 1.0).reshape(rgb.shape)
    out = np.power(out, np.asarray(cast.gamma, dtype=np.float32))
    luma = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = luma[..., None] + cast.saturation * (out - luma[..., None])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------ over-sharpening


def gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    import cv2  # lazy: comes with invisible-watermark; only training and benchmarks need it

    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT)


def unsharp_mask(rgb: np.ndarray, radius: float, amount: float, luma_only: bool = False) -> np.ndarray:
    """Classic USM: x + amount·(x − blur(x)); the haloes and crunch of over-sharpened GPT images."""
    rgb = rgb.astype(np.float32)
    if luma_only:
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        luma = rgb @ w
        detail = luma - gaussian_blur(luma, radius)
        out = rgb + amount * detail[..., None]
    else:
        out = rgb + amount * (rgb - gaussian_blur(rgb, radius))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(rgb)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------- whole pipeline


def sample_degradation(rng: np.random.Generator, cfg: DegradeConfig | None = None) -> Degradation:
    cfg = cfg or DegradeConfig()
    u = rng.uniform()
    if u < cfg.p_clean:
        return Degradation(kind="clean")
    u -= cfg.p_clean
    if u < cfg.p_cast_only:
        kind = "cast"
    elif u < cfg.p_cast_only + cfg.p_sharpen_only:
        kind = "sharpen"
    else:
        kind = "cast+sharpen"
    deg = Degradation(kind=kind)
    if "cast" in kind:
        deg.cast = sample_cast(rng, warm=rng.uniform() < cfg.p_warm, warmth_range=cfg.warmth_range)
    if "sharpen" in kind:
        deg.sharpen = SharpenParams(
            radius=float(rng.uniform(*cfg.radius_range)),
            amount=float(rng.uniform(*cfg.amount_range)),
            luma_only=bool(rng.uniform() < 0.25),
        )
    if rng.uniform() < cfg.p_jpeg:
        deg.jpeg_quality = int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1))
    return deg


def apply_degradation(rgb: np.ndarray, deg: Degradation) -> np.ndarray:
    out = rgb.astype(np.float32)
    if deg.cast is not None:
        out = apply_cast(out, deg.cast)
    if deg.sharpen is not None:
        out = unsharp_mask(out, deg.sharpen.radius, deg.sharpen.amount, deg.sharpen.luma_only)
    if deg.jpeg_quality is not None:
        out = jpeg_roundtrip(out, deg.jpeg_quality)
    return out


def gpt_degrade(rgb: np.ndarray, seed: int | np.random.Generator, cfg: DegradeConfig | None = None,
                force: str | None = None) -> tuple[np.ndarray, Degradation]:
    """Degrade a clean image the way GPT image models do. ``force='cast+sharpen'`` skips the clean draw
    (benchmarks use it so every test image is actually damaged)."""
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    if force is not None:
        deg = sample_degradation(rng, cfg)
        while deg.kind != force:
            deg = sample_degradation(rng, cfg)
    else:
        deg = sample_degradation(rng, cfg)
    return apply_degradation(rgb, deg), deg


# -------------------------------------------------------------------------------------- content variation


@dataclass
class LookParams:
    """A natural variation of how a *clean* photo looks (camera white balance, black level, tone, saturation)."""

    gains: list  # 3 white-balance gains
    black: list  # 3 per-channel black levels (lifted shadows, slightly tinted)
    gamma: float
    saturation: float


def sample_look(rng: np.random.Generator, strength: float = 1.0, warm_only: bool = False) -> LookParams:
    """Clean photos are not all neutral: their white balance, black level and tone vary from camera to camera
    and photographer to photographer (GUIDE §5: hand-corrected GPT images have mean b* from −2 to +11.5).
    Applied to the clean photo *before* the damage, on both sides of a pair, this teaches the corrector that such
    looks are content to keep, not a cast to remove. At ``strength`` 1: warm/cool white balance up to about
    ±8 b* on mid-grey, a green/magenta tint up to about ±3 a*, black levels up to 0.03, gamma 0.92–1.08,
    saturation 0.9–1.12. ``warm_only`` draws the white balance from neutral to warm only: a cool photo with a
    warm cast looks neutral, so symmetric looks make neutral images ambiguous; warm-only ones keep them safe."""
    t = rng.uniform(0.0 if warm_only else -1.0, 1.0) * strength  # warm (+) / cool (−)
    g = rng.uniform(-1.0, 1.0) * strength  # magenta (+) / green (−)
    gains = np.array([1.0 + 0.04 * t, 1.0 - 0.03 * g, 1.0 - 0.10 * t])
    black = rng.uniform(0.0, 0.03 * strength, size=3)
    gamma = float(np.exp(rng.uniform(-1.0, 1.0) * 0.08 * strength))
    saturation = float(1.0 + rng.uniform(-0.10, 0.12) * strength)
    return LookParams((gains / gains.mean()).tolist(), black.tolist(), gamma, saturation)


def apply_look(rgb: np.ndarray, look: LookParams) -> np.ndarray:
    out = np.clip(rgb * np.asarray(look.gains, dtype=np.float32), 0.0, 1.0)
    out = np.power(out, np.float32(look.gamma))
    black = np.asarray(look.black, dtype=np.float32)
    out = black + (1.0 - black) * out
    luma = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = luma[..., None] + np.float32(look.saturation) * (out - luma[..., None])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def illustrate(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn a photo into flat-shaded, illustration-like content (GPT outputs include cartoons and 3D renders):
    edge-preserving smoothing then colour quantisation, optionally with a soft shading gradient."""
    import cv2

    img = to_uint8(rgb)
    img = cv2.bilateralFilter(img, d=7, sigmaColor=float(rng.uniform(40, 90)), sigmaSpace=7)
    img = cv2.medianBlur(img, 5)
    levels = int(rng.integers(6, 20))
    from PIL import Image

    # fast octree: median cut gives the same flat look at ~200x the cost (90 ms for a 256-px view)
    q = Image.fromarray(img).quantize(colors=levels, method=Image.Quantize.FASTOCTREE).convert("RGB")
    out = np.asarray(q, dtype=np.float32) / 255.0
    out = gaussian_blur(out, float(rng.uniform(0.6, 1.5)))  # anti-aliased edges like a renderer
    if rng.uniform() < 0.5:  # soft lighting gradient, as in 3D-cartoon renders
        h, w = out.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, 2 * np.pi)
        g = (np.cos(ang) * xx / w + np.sin(ang) * yy / h)
        g = (g - g.min()) / max(g.max() - g.min(), 1e-6)
        out = out * (0.8 + 0.25 * g[..., None])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------- downsampling (super-resolution)

DOWNSAMPLE_METHODS = ("bilinear", "bicubic", "area")


def crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of ``scale`` (the SR-benchmark convention)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def downsample(hr: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Low-resolution version of ``hr`` (float (H, W, 3) or (H, W) in [0, 1]) by Pillow's antialiased resizers.

    ``hr`` is first cropped to a multiple of ``scale`` (bottom/right), so the result is exactly
    ``(H // scale, W // scale)`` and LR pixel i covers HR pixels [i·s, (i+1)·s): pixel centres at half-integers,
    no sub-pixel shift (the ``align_corners=False`` convention that ``WindowSR``'s bicubic base uses too).
    Each channel is resized as a 32-bit float image, so nothing is quantised. ``area`` is the box filter
    (the exact mean of each s×s block).
    """
    from PIL import Image

    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
               "area": Image.Resampling.BOX}
    if method not in filters:
        raise ValueError(f"downsampling method must be one of {', '.join(DOWNSAMPLE_METHODS)}, not '{method}'")
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, not {scale}")
    hr = crop_to_multiple(np.asarray(hr, dtype=np.float32), scale)
    h, w = hr.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"image smaller than the scale factor {scale}")
    if scale == 1:
        return hr.copy()
    size = (w // scale, h // scale)
    planes = hr[..., None] if hr.ndim == 2 else hr
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c])).resize(size, filters[method]),
                      dtype=np.float32) for c in range(planes.shape[-1])]
    lr = np.stack(out, -1)
    lr = lr[..., 0] if hr.ndim == 2 else lr
    return np.clip(lr, 0.0, 1.0).astype(np.float32)


def random_downsample(hr: np.ndarray, scale: int, rng: np.random.Generator,
                      methods: tuple = DOWNSAMPLE_METHODS, weights: tuple | None = None) -> tuple[np.ndarray, str]:
    """The seed's LR recipe: a randomly chosen bilinear, bicubic or area downsampling — uniformly, or with the
    relative ``weights`` (one per method). Returns (lr, method)."""
    if weights is None:
        method = methods[int(rng.integers(len(methods)))]
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(methods),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"downsample weights {tuple(weights)} do not fit methods {tuple(methods)}")
        method = methods[int(rng.choice(len(methods), p=w / w.sum()))]
    return downsample(hr, scale, method), method


# ------------------------------------------------------------------------------------------------ masks
# Inpainting masks are float32 (H, W) arrays: 1 = hole (to fill), 0 = known pixel.
MASK_KINDS = ("square", "rect", "brush")


def square_mask(h: int, w: int, rng: np.random.Generator | None = None, size: int = 32, margin: int = 16,
                pos: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """The seed's mask: one ``size``×``size`` square at least ``margin`` pixels from every edge (random
    position from ``rng``, or ``pos`` = (y, x) for fixed evaluation holes). Returns (mask, (y, x))."""
    if pos is None:
        lo_y, hi_y = min(margin, h - size), max(min(margin, h - size), h - size - margin)
        lo_x, hi_x = min(margin, w - size), max(min(margin, w - size), w - size - margin)
        if lo_y < 0 or lo_x < 0:
            raise ValueError(f"a {size}×{size} hole does not fit a {w}×{h} image")
        pos = (int(rng.integers(lo_y, hi_y + 1)), int(rng.integers(lo_x, hi_x + 1)))
    y, x = pos
    m = np.zeros((h, w), np.float32)
    m[y:y + size, x:x + size] = 1.0
    return m, (y, x)


def fixed_square_positions(h: int, w: int, n: int, seed: int = 0, size: int = 32,
                           margin: int = 16) -> list[tuple[int, int]]:
    """``n`` seeded hole positions for repeatable evaluation (the seed's "fixed positions" test masks)."""
    rng = np.random.default_rng([seed, h, w, size])
    return [square_mask(h, w, rng, size, margin)[1] for _ in range(n)]


def rect_mask(h: int, w: int, rng: np.random.Generator, min_frac: float = 0.1, max_frac: float = 0.5) -> np.ndarray:
    """One axis-aligned rectangle whose sides are ``min_frac``–``max_frac`` of the image's."""
    rh = max(1, int(round(h * rng.uniform(min_frac, max_frac))))
    rw = max(1, int(round(w * rng.uniform(min_frac, max_frac))))
    y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    m = np.zeros((h, w), np.float32)
    m[y:y + rh, x:x + rw] = 1.0
    return m


def brush_mask(h: int, w: int, rng: np.random.Generator, strokes: tuple[int, int] = (1, 4),
               width_frac: tuple[float, float] = (0.04, 0.12), max_cover: float = 0.4) -> np.ndarray:
    """Free-form brush strokes (random walks drawn with a round brush), like a user scribbling over an object
    (the free-form masks of Yu et al., "Free-Form Image Inpainting with Gated Convolution", 2019). At most
    ``max_cover`` of the image is covered."""
    from PIL import Image, ImageDraw

    side = min(h, w)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(strokes[0], strokes[1] + 1))):
        width = max(2, int(side * rng.uniform(*width_frac)))
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        angle = float(rng.uniform(0, 2 * np.pi))
        pts = [(x, y)]
        for _ in range(int(rng.integers(2, 7))):
            angle += float(rng.normal(0, 0.8))
            step = side * rng.uniform(0.08, 0.3)
            x = float(np.clip(x + step * np.cos(angle), 0, w - 1))
            y = float(np.clip(y + step * np.sin(angle), 0, h - 1))
            pts.append((x, y))
        draw.line(pts, fill=255, width=width, joint="curve")
        for px, py in pts:  # round caps and joints
            r = width / 2
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
        if np.asarray(canvas).mean() / 255 >= max_cover:
            break
    return (np.asarray(canvas) > 127).astype(np.float32)


def random_mask(h: int, w: int, rng: np.random.Generator, probs: tuple[float, float, float] = (0.5, 0.2, 0.3),
                size: int = 32, margin: int = 16, brush_width: tuple | None = None) -> tuple[np.ndarray, str]:
    """A training mask: the seed's square (probability ``probs[0]``), a rectangle, or brush strokes.
    ``brush_width`` (low, high) in pixels sets the stroke widths (default: 4–12 % of the short side, which
    in a 64-px training crop is only 2–7 px). Returns (mask, kind); never empty."""
    kind = MASK_KINDS[int(rng.choice(3, p=np.asarray(probs, float) / np.sum(probs)))]
    if kind == "square" and h >= size and w >= size:
        m = square_mask(h, w, rng, size, min(margin, (min(h, w) - size) // 2))[0]
    elif kind == "rect":
        m = rect_mask(h, w, rng)
    else:
        kw = {} if brush_width is None else {"width_frac": tuple(b / min(h, w) for b in brush_width)}
        kind, m = "brush", brush_mask(h, w, rng, **kw)
    if not m.any():
        m[h // 2, w // 2] = 1.0
    return m, kind


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the hole by ``pixels`` (a square structuring element): the seed's 4-pixel context ring."""
    if pixels <= 0:
        return mask.astype(np.float32)
    from PIL import Image, ImageFilter

    im = Image.fromarray((mask > 0.5).astype(np.uint8) * 255)
    return (np.asarray(im.filter(ImageFilter.MaxFilter(2 * pixels + 1))) > 127).astype(np.float32)
