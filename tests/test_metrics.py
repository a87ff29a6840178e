"""Metrics against values known in closed form."""

import math
import subprocess
import sys

import numpy as np
import pytest

from pixmend import metrics
from pixmend.errors import PixmendError


def smooth_image(h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * np.sin(5 * x * y)], axis=-1)
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(img, 0.1, 0.8).astype(np.float32)


def test_import_is_cheap():
    code = "import sys, pixmend.metrics; print('skimage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_psnr_of_constant_offset_is_20_db():
    a = smooth_image()
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)


def test_psnr_data_range_and_identical():
    a = smooth_image()
    assert metrics.psnr(a * 255, a * 255 + 25.5, data_range=255) == pytest.approx(20.0, abs=1e-3)
    assert metrics.psnr(a, a) == math.inf


def test_psnr_border_ignores_the_edges():
    a = smooth_image()
    b = a.copy()
    b[:2] += 0.5  # damage only the top two rows
    b[:, -2:] -= 0.5
    assert metrics.psnr(a, b) < 20
    assert metrics.psnr(a, b, border=2) == math.inf


def test_shape_mismatch_and_bad_border_are_user_errors():
    a = smooth_image()
    with pytest.raises(PixmendError):
        metrics.psnr(a, a[:32])
    with pytest.raises(PixmendError):
        metrics.psnr(a, a, border=32)


def test_ssim_identical_is_one_and_noise_lowers_it():
    a = smooth_image()
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a[..., 0], a[..., 0]) == pytest.approx(1.0)
    noisy = np.clip(a + np.random.default_rng(1).normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    assert metrics.ssim(a, noisy) < 0.9
    assert metrics.ssim(a, noisy, border=4) < 0.9


def test_ciede2000_zero_for_identical_positive_for_yellow_cast():
    a = smooth_image()
    assert metrics.ciede2000(a, a) == pytest.approx(0.0, abs=1e-9)
    cast = np.clip(a * np.array([1.05, 1.02, 0.85], dtype=np.float32), 0, 1)
    assert metrics.ciede2000(a, cast) > 2.0


def test_y_channel_of_white_and_black():
    white = np.ones((4, 4, 3), np.float32)
    black = np.zeros((4, 4, 3), np.float32)
    y_white, y_black = metrics.rgb_to_y(white), metrics.rgb_to_y(black)
    assert y_white.shape == (4, 4)
    np.testing.assert_allclose(y_white, 235 / 255, atol=1e-6)
    np.testing.assert_allclose(y_black, 16 / 255, atol=1e-6)


def test_psnr_y_and_ssim_y():
    hr = smooth_image()
    sr = np.clip(hr + 0.05, 0, 1)
    # A uniform RGB offset d moves Y by d * 219/255 (where nothing clips).
    expected = 20 * math.log10(1 / (0.05 * 219 / 255))
    assert metrics.psnr_y(sr, hr, border=4) == pytest.approx(expected, abs=1e-3)
    assert metrics.ssim_y(hr, hr, border=4) == pytest.approx(1.0)
    assert metrics.ssim_y(sr, hr, border=4) < 1.0


def test_mean_lab_shows_a_yellow_cast_as_positive_b():
    gray = np.full((8, 8, 3), 0.5, np.float32)
    L, a, b = metrics.mean_lab(gray)
    assert L == pytest.approx(53.4, abs=0.5)
    assert abs(a) < 0.01 and abs(b) < 0.01
    yellow = gray * np.array([1.1, 1.05, 0.8], dtype=np.float32)
    assert metrics.mean_lab(yellow)[2] > 10


def test_sobel_edges_flat_is_zero_and_edge_is_found():
    flat = np.full((16, 16, 3), 0.4, np.float32)
    assert np.all(metrics.sobel_edges(flat) == 0)
    step = np.zeros((16, 16), np.float32)
    step[:, 8:] = 1.0
    edges = metrics.sobel_edges(step)
    assert edges.shape == (16, 16)
    assert edges[:, 7:9].min() == pytest.approx(4.0)  # Sobel gain on a unit step
    assert edges[:, :6].max() == 0 and edges[:, 10:].max() == 0
