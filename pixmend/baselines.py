"""Classical colour-correction baselines for the benchmark.

A learned model is only worth shipping if it beats these. `gray_world` and
`white_patch` are the textbook automatic white balances; `oracle_affine`
cheats by looking at the ground truth, and so bounds what any single global
colour transform (white balance, channel mixing, brightness/contrast) can
reach. A model scoring above the oracle is fixing something local.

Images follow the pixmend convention: float (H, W, 3) RGB in [0, 1].
"""

from __future__ import annotations

import numpy as np

from pixmend.errors import PixmendError

_EPS = 1e-6
_CHUNK = 1 << 20  # pixels per chunk when accumulating the least-squares sums


def _rgb(img: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise PixmendError(f"{name} must be an RGB array of shape (H, W, 3), got {img.shape}")
    return img


def gray_world(rgb: np.ndarray) -> np.ndarray:
    """Scale each channel so the image averages to gray.

    Assumes the scene's colours average out to neutral, so any difference
    between channel means is the cast. Fails on scenes dominated by one
    colour (a lawn, a sunset).
    """
    img = _rgb(rgb).astype(np.float32)
    means = img.reshape(-1, 3).mean(axis=0, dtype=np.float64)
    gains = means.mean() / np.maximum(means, _EPS)
    return np.clip(img * gains.astype(np.float32), 0.0, 1.0)


def white_patch(rgb: np.ndarray, percentile: float = 99) -> np.ndarray:
    """Scale each channel so its `percentile` value becomes 1 (robust max-RGB).

    Assumes the brightest surfaces are white; a high percentile rather than
    the maximum keeps a few hot or clipped pixels from deciding the gains.
    """
    if not 0 < percentile <= 100:
        raise PixmendError(f"percentile must be in (0, 100], got {percentile}")
    img = _rgb(rgb).astype(np.float32)
    peaks = np.percentile(img.reshape(-1, 3), percentile, axis=0)
    gains = 1.0 / np.maximum(peaks, _EPS)
    return np.clip(img * gains.astype(np.float32), 0.0, 1.0)


def fit_affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (M, b) with dst ≈ src @ M.T + b over all pixels.

    M is (3, 3) and b is (3,): 12 parameters. Solved from the 4x4 normal
    equations, accumulated in float64 chunk by chunk so large images need no
    N x 4 design matrix. Degenerate inputs (e.g. a flat image) get the
    minimum-norm solution rather than an error.
    """
    src = _rgb(src, "src").reshape(-1, 3)
    dst = _rgb(dst, "dst").reshape(-1, 3)
    if src.shape != dst.shape:
        raise PixmendError(f"src and dst differ in size: {src.shape[0]} vs {dst.shape[0]} pixels")
    xtx = np.zeros((4, 4))
    xty = np.zeros((4, 3))
    for start in range(0, src.shape[0], _CHUNK):
        s = src[start : start + _CHUNK].astype(np.float64)
        x = np.concatenate([s, np.ones((s.shape[0], 1))], axis=1)
        xtx += x.T @ x
        xty += x.T @ dst[start : start + _CHUNK].astype(np.float64)
    w = np.linalg.lstsq(xtx, xty, rcond=None)[0]  # (4, 3): rows 0-2 = M.T, row 3 = b
    return w[:3].T.copy(), w[3].copy()


def apply_affine(rgb: np.ndarray, M: np.ndarray, b: np.ndarray, clip: bool = True) -> np.ndarray:
    """Apply rgb @ M.T + b per pixel; clip to [0, 1] unless `clip` is False."""
    img = _rgb(rgb).astype(np.float64)
    out = img @ np.asarray(M, dtype=np.float64).T + np.asarray(b, dtype=np.float64)
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


def oracle_affine(degraded: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Best global affine colour correction of `degraded` towards `truth`, clipped to [0, 1].

    An upper bound for white balance / colour-matrix methods, not a usable
    corrector: it needs the answer. Use `fit_affine` to see the fitted map.
    """
    degraded = _rgb(degraded, "degraded")
    truth = _rgb(truth, "truth")
    if degraded.shape != truth.shape:
        raise PixmendError(f"degraded and truth differ in shape: {degraded.shape} vs {truth.shape}")
    M, b = fit_affine(degraded, truth)
    return apply_affine(degraded, M, b)
