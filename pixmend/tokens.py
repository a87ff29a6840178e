"""Image tokenizers for the autoregressive image model (``pixel-gpt``): an image becomes a grid of integers.

- ``HSVTokenizer`` (pixace): convert to HSV, quantise each channel to its own bit width (5-4-4 by default:
  32 hues, 16 saturations, 16 values = 8192 colours), bit-shift and pack the three codes into one integer per
  pixel. ``decode`` returns the centre of each bin, so ``encode(decode(t)) == t`` for every token.
- ``PaletteTokenizer`` (Image GPT): the nearest colour of a k-means palette (e.g. 512 colours) fitted with numpy
  on training pixels; the palette is plain arrays (``state()`` / ``from_state()``, ``save()`` / ``load()``).
- ``PatchTokenizer``: non-overlapping p×p patches (``extract_patches`` as in Image GPT), each replaced by the
  nearest of k patch centroids (a k-means "patch palette"), so a 32×32 image becomes an 8×8 grid for p = 4.

Every tokenizer maps a float RGB image (H, W, 3) in [0, 1] to int64 tokens (H/p, W/p) and back, and describes
itself with ``config()``: the keys a model card stores so that loading a model rebuilds the same tokenizer
(``tokenizer_from_config``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import PixmendError

DEFAULT_HSV_BITS = (5, 4, 4)


# ------------------------------------------------------------------------------------------- colour space
def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """Vectorised RGB → HSV, all channels in [0, 1] (hue 0 = red; hue of a grey is 0). float64."""
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    c = mx - mn
    safe_c = np.where(c > 0, c, 1.0)
    h = np.where(mx == r, ((g - b) / safe_c) % 6.0,
                 np.where(mx == g, (b - r) / safe_c + 2.0, (r - g) / safe_c + 4.0))
    h = np.where(c > 0, h / 6.0, 0.0) % 1.0
    s = np.where(mx > 0, c / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Vectorised HSV → RGB (inverse of ``rgb_to_hsv``). float64."""
    hsv = np.asarray(hsv, dtype=np.float64)
    h, s, v = hsv[..., 0] % 1.0, hsv[..., 1], hsv[..., 2]
    h6 = h * 6.0
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices_r = [v, q, p, p, t, v]
    choices_g = [t, v, v, q, p, p]
    choices_b = [p, p, t, v, v, q]
    r = np.choose(i, choices_r)
    g = np.choose(i, choices_g)
    b = np.choose(i, choices_b)
    return np.stack([r, g, b], -1)


def _as_float_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise PixmendError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    return np.clip(rgb.astype(np.float64), 0.0, 1.0)


# ------------------------------------------------------------------------------------------------- HSV
class HSVTokenizer:
    """pixace's tokens: HSV quantised to ``bits`` = (hue, saturation, value) bits, packed ``h | s | v``.

    Hue bins are centred on multiples of 1/2^bh (so pure red is the centre of bin 0 and reds are not split
    between the first and last bin); saturation and value bins are [q, q+1) / 2^b. Decoding returns bin centres.
    """

    kind = "hsv"
    patch = 1

    def __init__(self, bits=DEFAULT_HSV_BITS):
        bits = tuple(int(b) for b in bits)
        if len(bits) != 3 or any(b < 1 or b > 8 for b in bits):
            raise PixmendError(f"HSV bits must be three widths between 1 and 8, not {bits}")
        self.bits = bits
        self.levels = tuple(1 << b for b in bits)

    @property
    def vocab_size(self) -> int:
        return 1 << sum(self.bits)

    def __repr__(self) -> str:
        return f"HSVTokenizer(bits={'-'.join(map(str, self.bits))})"

    def quantise(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hsv = rgb_to_hsv(_as_float_rgb(rgb))
        nh, ns, nv = self.levels
        qh = np.floor(hsv[..., 0] * nh + 0.5).astype(np.int64) % nh
        qs = np.clip(np.floor(hsv[..., 1] * ns), 0, ns - 1).astype(np.int64)
        qv = np.clip(np.floor(hsv[..., 2] * nv), 0, nv - 1).astype(np.int64)
        return qh, qs, qv

    def pack(self, qh, qs, qv) -> np.ndarray:
        _, bs, bv = self.bits
        return (np.asarray(qh, np.int64) << (bs + bv)) | (np.asarray(qs, np.int64) << bv) | np.asarray(qv, np.int64)

    def unpack(self, tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self._check(tokens)
        _, bs, bv = self.bits
        return t >> (bs + bv), (t >> bv) & ((1 << bs) - 1), t & ((1 << bv) - 1)

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float in [0, 1] (or uint8) → int64 tokens (H, W)."""
        return self.pack(*self.quantise(rgb))

    def decode_hsv(self, tokens) -> np.ndarray:
        qh, qs, qv = self.unpack(tokens)
        nh, ns, nv = self.levels
        return np.stack([qh / nh, (qs + 0.5) / ns, (qv + 0.5) / nv], -1)

    def decode(self, tokens) -> np.ndarray:
        """int tokens (H, W) → float32 RGB (H, W, 3) at the bin centres."""
        return hsv_to_rgb(self.decode_hsv(tokens)).astype(np.float32)

    def _check(self, tokens) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.vocab_size):
            raise PixmendError(f"tokens outside 0..{self.vocab_size - 1}")
        return t

    def config(self) -> dict:
        return {"tokenizer": "hsv", "hsv_bits": list(self.bits)}


# ------------------------------------------------------------------------------------------------ k-means
def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :], 0.0)


def nearest(x: np.ndarray, centres: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for every row of ``x``; chunked to bound memory."""
    x = np.asarray(x, dtype=np.float32)
    c = np.asarray(centres, dtype=np.float32)
    out = np.empty(len(x), dtype=np.int64)
    for i in range(0, len(x), chunk):
        out[i:i + chunk] = _sq_dists(x[i:i + chunk], c).argmin(1)
    return out


def kmeans(points: np.ndarray, k: int, seed: int = 0, iters: int = 25, max_points: int = 100_000) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding on (a seeded subsample of) ``points`` (N, D). Returns (k, D)
    float32 centres, all distinct: empty clusters are re-seeded at the worst-fitted points, and when the data
    has fewer than k distinct points the rest of the palette is filled with distinct random vectors."""
    rng = np.random.default_rng(seed)
    x = np.asarray(points, dtype=np.float32).reshape(len(points), -1)
    if len(x) == 0:
        raise PixmendError("k-means: no points to fit")
    if len(x) > max_points:
        x = x[rng.choice(len(x), max_points, replace=False)]
    uniq = np.unique(x, axis=0)
    if len(uniq) <= k:
        return _fill_distinct(uniq, k, rng)
    # k-means++ on a smaller sample (it is O(N·k))
    s = x[rng.choice(len(x), min(len(x), 20_000), replace=False)]
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = s[rng.integers(len(s))]
    d = _sq_dists(s, centres[:1])[:, 0]
    for j in range(1, k):
        p = d / d.sum() if d.sum() > 0 else None
        centres[j] = s[rng.choice(len(s), p=p)]
        d = np.minimum(d, _sq_dists(s, centres[j:j + 1])[:, 0])
    for _ in range(iters):
        assign = nearest(x, centres)
        sums = np.zeros_like(centres, dtype=np.float64)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=k)
        new = centres.copy()
        full = counts > 0
        new[full] = (sums[full] / counts[full, None]).astype(np.float32)
        empty = np.flatnonzero(~full)
        if len(empty):  # re-seed at the points farthest from their centre
            err = ((x - centres[assign]) ** 2).sum(1)
            new[empty] = x[np.argsort(err)[::-1][:len(empty)]]
        moved = float(np.abs(new - centres).max())
        centres = new
        if moved < 1e-6:
            break
    return _fill_distinct(centres, k, rng)


def _fill_distinct(centres: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Drop duplicate rows and top up with random vectors so there are exactly k distinct rows."""
    _, first = np.unique(centres, axis=0, return_index=True)
    out = [c for c in centres[np.sort(first)]]
    seen = {c.tobytes() for c in out}
    while len(out) < k:
        c = rng.uniform(0, 1, centres.shape[1]).astype(np.float32)
        if c.tobytes() not in seen:
            seen.add(c.tobytes())
            out.append(c)
    return np.stack(out[:k]).astype(np.float32)


# ------------------------------------------------------------------------------------------------ palette
class PaletteTokenizer:
    """Image GPT's tokens: the index of the nearest colour (RGB, squared distance) of a k-colour palette."""

    kind = "palette"
    patch = 1

    def __init__(self, k: int = 512, palette: np.ndarray | None = None):
        self.k = int(k)
        self.palette = None if palette is None else self._check_palette(palette, 3)

    def _check_palette(self, palette, dim: int) -> np.ndarray:
        p = np.asarray(palette, dtype=np.float32)
        if p.shape != (self.k, dim):
            raise PixmendError(f"palette must have shape ({self.k}, {dim}), not {p.shape}")
        return p

    @property
    def vocab_size(self) -> int:
        return self.k

    def fit(self, pixels, seed: int = 0, iters: int = 25) -> "PaletteTokenizer":
        """Fit the palette to pixels: an (N, 3) array, or a list of (H, W, 3) images (float or uint8)."""
        self.palette = kmeans(_pixels(pixels), self.k, seed, iters)
        return self

    def _ready(self) -> np.ndarray:
        if self.palette is None:
            raise PixmendError("the palette tokenizer has not been fitted (call fit() or load a palette)")
        return self.palette

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        x = _as_float_rgb(rgb)
        return nearest(x.reshape(-1, 3), self._ready()).reshape(x.shape[:2])

    def decode(self, tokens) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.k):
            raise PixmendError(f"tokens outside 0..{self.k - 1}")
        return self._ready()[t].astype(np.float32)

    # -- arrays in, arrays out
    def state(self) -> dict[str, np.ndarray]:
        return {"palette": self._ready().copy()}

    @classmethod
    def from_state(cls, state: dict) -> "PaletteTokenizer":
        p = np.asarray(state["palette"], dtype=np.float32)
        return cls(len(p), p)

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        save_file(self.state(), str(path))

    @classmethod
    def load(cls, path: str | Path) -> "PaletteTokenizer":
        from safetensors.numpy import load_file

        return cls.from_state(load_file(str(path)))

    def config(self) -> dict:
        cfg = {"tokenizer": "palette", "palette_size": self.k}
        if self.palette is not None:
            cfg["palette"] = self.palette.tolist()
        return cfg

    def __repr__(self) -> str:
        return f"PaletteTokenizer(k={self.k}{', unfitted' if self.palette is None else ''})"


# ------------------------------------------------------------------------------------------------ patches
def extract_patches(image, patch_size: int):
    """Non-overlapping p×p patches in row-major order.

    numpy (H, W, C) → (H/p · W/p, p, p, C); a torch tensor (C, H, W) → (N, C, p, p), as in Image GPT's
    ``image.unfold(1, p, p).unfold(2, p, p)``. H and W must be multiples of p.
    """
    p = int(patch_size)
    if _is_torch(image):
        c, h, w = image.shape
        _check_divisible(h, w, p)
        return image.unfold(1, p, p).unfold(2, p, p).permute(1, 2, 0, 3, 4).reshape(-1, c, p, p)
    a = np.asarray(image)
    h, w, c = a.shape
    _check_divisible(h, w, p)
    return a.reshape(h // p, p, w // p, p, c).transpose(0, 2, 1, 3, 4).reshape(-1, p, p, c)


def reassemble_patches(patches, height: int, width: int):
    """Inverse of ``extract_patches``: (N, p, p, C) numpy → (H, W, C); (N, C, p, p) torch → (C, H, W)."""
    if _is_torch(patches):
        n, c, p, _ = patches.shape
        _check_divisible(height, width, p)
        return patches.reshape(height // p, width // p, c, p, p).permute(2, 0, 3, 1, 4).reshape(c, height, width)
    a = np.asarray(patches)
    n, p, _, c = a.shape
    _check_divisible(height, width, p)
    if n != (height // p) * (width // p):
        raise PixmendError(f"{n} patches of {p}×{p} do not make a {height}×{width} image")
    return a.reshape(height // p, width // p, p, p, c).transpose(0, 2, 1, 3, 4).reshape(height, width, c)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _check_divisible(h: int, w: int, p: int) -> None:
    if p < 1 or h % p or w % p:
        raise PixmendError(f"image size {h}×{w} is not a multiple of the patch size {p}")


class PatchTokenizer:
    """One token per non-overlapping p×p patch: the nearest of k patch centroids (k-means on patch vectors)."""

    kind = "patch"

    def __init__(self, patch: int = 4, k: int = 512, centroids: np.ndarray | None = None):
        self.patch, self.k = int(patch), int(k)
        self.dim = self.patch * self.patch * 3
        self.centroids = None
        if centroids is not None:
            c = np.asarray(centroids, dtype=np.float32)
            if c.shape != (self.k, self.dim):
                raise PixmendError(f"patch centroids must have shape ({self.k}, {self.dim}), not {c.shape}")
            self.centroids = c

    @property
    def vocab_size(self) -> int:
        return self.k

    def fit(self, images, seed: int = 0, iters: int = 25) -> "PatchTokenizer":
        """Fit to a list of (H, W, 3) images (sizes multiples of the patch) or an (N, p·p·3) array."""
        if isinstance(images, np.ndarray) and images.ndim == 2:
            vecs = images
        else:
            vecs = np.concatenate([extract_patches(_as_float_rgb(im), self.patch).reshape(-1, self.dim)
                                   for im in images])
        self.centroids = kmeans(vecs, self.k, seed, iters)
        return self

    def _ready(self) -> np.ndarray:
        if self.centroids is None:
            raise PixmendError("the patch tokenizer has not been fitted")
        return self.centroids

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        x = _as_float_rgb(rgb)
        h, w = x.shape[:2]
        vecs = extract_patches(x, self.patch).reshape(-1, self.dim)
        return nearest(vecs, self._ready()).reshape(h // self.patch, w // self.patch)

    def decode(self, tokens) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.k):
            raise PixmendError(f"tokens outside 0..{self.k - 1}")
        gh, gw = t.shape
        p = self.patch
        patches = self._ready()[t.reshape(-1)].reshape(-1, p, p, 3)
        return reassemble_patches(patches, gh * p, gw * p).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"centroids": self._ready().copy()}

    @classmethod
    def from_state(cls, state: dict) -> "PatchTokenizer":
        c = np.asarray(state["centroids"], dtype=np.float32)
        return cls(int(round((c.shape[1] / 3) ** 0.5)), len(c), c)

    def config(self) -> dict:
        cfg = {"tokenizer": "patch", "patch_size": self.patch, "palette_size": self.k}
        if self.centroids is not None:
            cfg["palette"] = self.centroids.tolist()
        return cfg

    def __repr__(self) -> str:
        return f"PatchTokenizer(patch={self.patch}, k={self.k})"


def _pixels(pixels) -> np.ndarray:
    """(N, 3) pixels (float, or uint8 /255) or a list of (H, W, 3) images → (N, 3) float32."""
    if isinstance(pixels, np.ndarray) and pixels.ndim == 2:
        return pixels.astype(np.float32) / (255.0 if pixels.dtype == np.uint8 else 1.0)
    return np.concatenate([_as_float_rgb(im).reshape(-1, 3) for im in pixels]).astype(np.float32)


# ------------------------------------------------------------------------------------ card configuration
def tokenizer_from_config(cfg: dict):
    """Rebuild a tokenizer from a model card's config (keys written by ``Tokenizer.config()``)."""
    kind = str(cfg.get("tokenizer", "hsv")).lower()
    if kind == "hsv":
        return HSVTokenizer(cfg.get("hsv_bits", DEFAULT_HSV_BITS))
    if kind == "palette":
        k = int(cfg.get("palette_size", 512))
        return PaletteTokenizer(k, cfg.get("palette"))
    if kind == "patch":
        k, p = int(cfg.get("palette_size", 512)), int(cfg.get("patch_size", 4))
        return PatchTokenizer(p, k, cfg.get("palette"))
    raise PixmendError(f"unknown tokenizer '{kind}' (hsv, palette or patch)")


def vocab_size_for(cfg: dict) -> int:
    kind = str(cfg.get("tokenizer", "hsv")).lower()
    if kind == "hsv":
        return HSVTokenizer(cfg.get("hsv_bits", DEFAULT_HSV_BITS)).vocab_size
    return int(cfg.get("palette_size", 512))


def patch_size_for(cfg: dict) -> int:
    return int(cfg.get("patch_size", 4)) if str(cfg.get("tokenizer", "hsv")).lower() == "patch" else 1


def describe(tok) -> str:
    if isinstance(tok, HSVTokenizer):
        return "hsv " + "-".join(map(str, tok.bits))
    if isinstance(tok, PatchTokenizer):
        return f"patch {tok.patch}x{tok.patch}, {tok.k} centroids"
    return f"palette {tok.k}"
