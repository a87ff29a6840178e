"""Classical colour-correction baselines."""

import numpy as np
import pytest

from pixmend import baselines
from pixmend.errors import PixmendError


def test_gray_world_neutralises_a_tinted_gray_image():
    rng = np.random.default_rng(0)
    gray = rng.uniform(0.2, 0.6, (32, 32, 1)).repeat(3, axis=2).astype(np.float32)
    tinted = gray * np.array([1.2, 1.1, 0.7], dtype=np.float32)
    out = baselines.gray_world(tinted)
    assert out.dtype == np.float32 and out.shape == tinted.shape
    # Every pixel neutral again: the channels agree.
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
    np.testing.assert_allclose(out[..., 1], out[..., 2], atol=1e-5)


def test_white_patch_maps_brightest_region_to_white():
    rng = np.random.default_rng(1)
    img = rng.uniform(0.0, 0.5, (64, 64, 3)).astype(np.float32)
    img[:16, :16] = [0.9, 0.8, 0.6]  # a white sheet under warm light, 1/16 of the image
    out = baselines.white_patch(img, percentile=99)
    np.testing.assert_allclose(out[:16, :16], 1.0, atol=1e-6)
    assert out.max() <= 1.0 and out.min() >= 0.0
    with pytest.raises(PixmendError):
        baselines.white_patch(img, percentile=0)


def test_fit_affine_recovers_a_known_map_exactly():
    rng = np.random.default_rng(2)
    src = rng.random((40, 50, 3))
    M = np.array([[0.9, 0.1, -0.05], [0.02, 1.1, 0.0], [-0.1, 0.05, 0.8]])
    b = np.array([0.03, -0.02, 0.1])
    dst = src @ M.T + b
    M_fit, b_fit = baselines.fit_affine(src, dst)
    np.testing.assert_allclose(M_fit, M, atol=1e-9)
    np.testing.assert_allclose(b_fit, b, atol=1e-9)
    np.testing.assert_allclose(baselines.apply_affine(src, M_fit, b_fit, clip=False), dst, atol=1e-6)


def test_oracle_affine_undoes_a_global_cast_and_clips():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.1, 0.9, (32, 32, 3)).astype(np.float32)
    M = np.array([[1.1, 0.05, 0.0], [0.0, 1.05, 0.0], [0.0, 0.0, 0.8]])
    degraded = (truth @ M.T + np.array([0.02, 0.01, 0.0])).astype(np.float32)
    out = baselines.oracle_affine(degraded, truth)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, truth, atol=1e-4)
    wild = baselines.apply_affine(truth, np.eye(3) * 3, np.zeros(3))
    assert wild.max() == 1.0


def test_fit_affine_on_a_flat_image_does_not_crash():
    flat = np.full((8, 8, 3), 0.5)
    M, b = baselines.fit_affine(flat, flat * 0.9)
    np.testing.assert_allclose(baselines.apply_affine(flat, M, b), 0.45, atol=1e-6)


def test_bad_shapes_are_user_errors():
    with pytest.raises(PixmendError):
        baselines.gray_world(np.zeros((8, 8)))
    with pytest.raises(PixmendError):
        baselines.oracle_affine(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
