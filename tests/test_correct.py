"""The correct task's inference helpers: strength blending, window coverage, pixel-transformer inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixmend.errors import PixmendError
from pixmend.models import pixel_transformer as P
from pixmend.tasks import correct as C

from conftest import TINY_PT, perturbed_gl, synth_image

GL_CARD = {"architecture": "gl-transformer"}
PT_CARD = {"architecture": "pixel-transformer"}


@pytest.fixture(scope="module")
def gl():
    return perturbed_gl(seed=11)


@pytest.fixture(scope="module")
def img():
    return synth_image(37, 45, seed=2)


def test_strength_zero_returns_input_exactly(gl, img):
    out = C.correct_rgb(img, gl, GL_CARD, strength=0.0)
    np.testing.assert_array_equal(out, img)
    assert out is not img  # a copy: callers may modify it


def test_strength_half_is_midway(gl, img):
    full = C.correct_rgb(img, gl, GL_CARD, strength=1.0)
    half = C.correct_rgb(img, gl, GL_CARD, strength=0.5)
    assert np.abs(full - img).max() > 0.01
    np.testing.assert_allclose(half, (img + full) / 2, atol=1e-6)
    assert full.dtype == half.dtype == np.float32
    assert full.min() >= 0 and full.max() <= 1


@pytest.mark.parametrize("s", [-0.1, 1.5])
def test_strength_out_of_range(gl, img, s):
    with pytest.raises(PixmendError):
        C.correct_rgb(img, gl, GL_CARD, strength=s)


@pytest.mark.parametrize("mode", ["1D", "2D", "RAND", "rand"])
@pytest.mark.parametrize("h,w,n,stride", [(13, 17, 16, 8), (9, 7, 16, 3), (3, 3, 16, 8), (20, 21, 25, 25),
                                          (16, 16, 16, 16), (13, 17, 16, 40)])
def test_window_indices_cover_every_pixel(mode, h, w, n, stride):
    if mode == "2D" and int(round(n ** 0.5)) ** 2 != n:
        pytest.skip("2D needs a square window")
    idx = C.window_indices(h, w, n, mode, stride, seed=1)
    assert idx.ndim == 2 and idx.shape[1] == n
    assert int(idx.min()) >= 0 and int(idx.max()) < h * w
    assert set(idx.reshape(-1).tolist()) == set(range(h * w))


def test_window_indices_unknown_mode():
    with pytest.raises(PixmendError):
        C.window_indices(8, 8, 16, "3D", 4)


def test_pixel_transformer_correct_shape_and_range():
    torch.manual_seed(0)
    model = P.build(TINY_PT).eval()
    for h, w in ((13, 11), (8, 8)):
        rgb = synth_image(h, w, seed=h)
        calls = []
        out = C.pixel_transformer_correct(rgb, model, stride=4, batch_size=7, progress=lambda d, t: calls.append(d))
        assert out.shape == (h, w, 3)
        assert out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
        assert calls and calls == list(range(1, len(calls) + 1))
        # every pixel's prediction is the mean of the model's outputs for it, so a model that returns its
        # input gives back the input exactly
    identity = lambda x: x  # noqa: E731
    identity.cfg = model.cfg
    rgb = synth_image(10, 9)
    np.testing.assert_allclose(C.pixel_transformer_correct(rgb, identity, stride=3), rgb, atol=1e-6)
    # the default stride (num_pixels/2) and a stride longer than the window leave no pixel out
    for mode, stride in (("2D", None), ("1D", 40), ("RAND", None)):
        identity.cfg = P.PixelTransformerConfig(**{**TINY_PT, "dataset_mode": mode})
        np.testing.assert_allclose(C.pixel_transformer_correct(rgb, identity, stride=stride), rgb, atol=1e-6)


def test_pixel_transformer_via_correct_rgb_and_2d_mode():
    torch.manual_seed(0)
    model = P.build({**TINY_PT, "dataset_mode": "2D"}).eval()
    rgb = synth_image(11, 14)
    out = C.correct_rgb(rgb, model, PT_CARD, strength=1.0, stride=2)
    assert out.shape == (11, 14, 3)


def test_inspect_reports_cast(gl, img):
    info = C.inspect_rgb(img, gl, GL_CARD)
    for key in ("cast_delta_a", "cast_delta_b", "cast_strength", "cast_direction", "correction_matrix",
                "sharpening_amount"):
        assert key in info
    assert np.asarray(info["correction_matrix"]).shape == (3, 3)
    assert info["cast_strength"] >= 0
