"""Image-quality metrics for the benchmark and for `inspect`.

Thin wrappers over scikit-image so numbers match what other papers report.
scikit-image is imported inside each function: importing it costs about a
second, and `import pixmend.metrics` should stay cheap for the CLI.

All inputs follow the pixmend convention: float arrays (H, W, 3) RGB in
[0, 1]; the SSIM and PSNR functions also accept (H, W) gray.
"""

from __future__ import annotations

import numpy as np

from pixmend.errors import PixmendError

# ITU-R BT.601 luma as in MATLAB's rgb2ycbcr, the convention of SR papers:
# Y = 16 + (65.481 R + 128.553 G + 24.966 B) for R, G, B in [0, 1], Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0 / 255.0

# Plain BT.601 luma (no studio-range offset) for edge maps.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def _pair(a: np.ndarray, b: np.ndarray, border: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Check two images match and crop `border` pixels from each side of both."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise PixmendError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise PixmendError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}")
    border = int(border)
    if border < 0:
        raise PixmendError(f"border must be >= 0, got {border}")
    if border:
        if 2 * border >= min(a.shape[:2]):
            raise PixmendError(f"border {border} leaves nothing of a {a.shape[1]}x{a.shape[0]} image")
        a = a[border:-border, border:-border]
        b = b[border:-border, border:-border]
    return a.astype(np.float64), b.astype(np.float64)


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise PixmendError(f"expected an RGB image of shape (H, W, 3), got {img.shape}")
    return img


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels.

    Identical images give ``float('inf')`` (zero error); callers averaging
    over a set should expect that. `border` crops that many pixels from every
    side first, as SR papers do to ignore edge effects.
    """
    a, b = _pair(a, b, border)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    """Structural similarity in [-1, 1] (1 = identical), colour or gray.

    Uses the settings of Wang et al. (11x11 Gaussian window, sigma 1.5,
    population covariance) that scikit-image recommends for matching the
    reference MATLAB code and published numbers. Colour images are scored per
    channel and averaged. Needs at least 11x11 pixels after cropping.
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b, border)
    if min(a.shape[:2]) < 11:
        raise PixmendError(f"SSIM needs at least 11x11 pixels, got {a.shape[1]}x{a.shape[0]}")
    return float(
        structural_similarity(
            a,
            b,
            data_range=1.0,
            channel_axis=-1 if a.ndim == 3 else None,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def ciede2000(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference per pixel (0 = identical; ~1 is just noticeable).

    Measures colour casts in a perceptual unit that PSNR does not: a small
    hue shift costs little PSNR yet is plainly visible.
    """
    from skimage.color import deltaE_ciede2000, rgb2lab

    a, b = _pair(_rgb(a), _rgb(b))
    lab_a = rgb2lab(np.clip(a, 0.0, 1.0))
    lab_b = rgb2lab(np.clip(b, 0.0, 1.0))
    return float(np.mean(deltaE_ciede2000(lab_a, lab_b, channel_axis=-1)))


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma (MATLAB rgb2ycbcr), shape (H, W), in [16/255, 235/255].

    SR papers report PSNR/SSIM on this channel, so ours must use it too to be
    comparable: white maps to 235/255 and black to 16/255, not 1 and 0.
    """
    img = _rgb(img).astype(np.float64)
    return (img @ _Y_WEIGHTS + _Y_OFFSET).astype(np.float32)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """PSNR on the Y channel, the SR-paper convention (pass border = scale)."""
    return psnr(rgb_to_y(sr), rgb_to_y(hr), data_range=1.0, border=border)


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """SSIM on the Y channel, the SR-paper convention (pass border = scale)."""
    return ssim(rgb_to_y(sr), rgb_to_y(hr), border=border)


def mean_lab(img: np.ndarray) -> tuple[float, float, float]:
    """Mean (L*, a*, b*) of an image; the a*/b* means show a colour cast.

    Neutral content averages near a* = b* = 0; the GPT-image yellow cast
    shows as a positive mean b*.
    """
    from skimage.color import rgb2lab

    lab = rgb2lab(np.clip(_rgb(img).astype(np.float64), 0.0, 1.0))
    mean = lab.reshape(-1, 3).mean(axis=0)
    return float(mean[0]), float(mean[1]), float(mean[2])


def sobel_edges(img: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of luma, (H, W) float32, edges replicated.

    Plain numpy so it is cheap to call; used to compare edge strength
    (over-sharpening shows as larger magnitudes around edges).
    Accepts RGB (H, W, 3) or gray (H, W).
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3:
        img = _rgb(img) @ _LUMA_WEIGHTS
    elif img.ndim != 2:
        raise PixmendError(f"expected an (H, W) or (H, W, 3) image, got shape {img.shape}")
    p = np.pad(img, 1, mode="edge")
    # Separable Sobel: smooth [1, 2, 1] across, difference [-1, 0, 1] along.
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy).astype(np.float32)
