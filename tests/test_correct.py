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


def test_colour_gate_applies_the_correction_by_how_much_it_changes():
    """colour_deadzone t: strength clamp((e − t)/t, 0, 1) from the thumbnail's mean CIE76 change e; 0 = off."""
    from pixmend.models.gl_transformer import rgb_to_lab

    m = perturbed_gl(seed=3)
    x = torch.from_numpy(synth_image(48, 64, seed=1).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        p = m.estimate(x)
        assert p.strength is None
        full = m.apply_global(x, p)
        thumb = m.thumbnail(x)
        e = float((rgb_to_lab(m.apply_global(thumb, p)) - rgb_to_lab(thumb)).pow(2).sum(1).sqrt().mean())
        assert e > 0.5  # the perturbed model does change colours
        for t, want in ((e / 4, 1.0), (e / 1.5, 0.5), (e * 2, 0.0)):
            m.cfg.colour_deadzone = t
            q = m.estimate(x)
            assert float(q.strength) == pytest.approx(want, abs=1e-3)
            assert torch.allclose(m.apply_global(x, q), x + want * (full - x), atol=1e-4)
        m.cfg.colour_deadzone = e * 2  # gated off: the colour stage is the identity, the rest still runs
        out = C.correct_rgb(x[0].permute(1, 2, 0).numpy(), m, {"architecture": "gl-transformer"})
        m.cfg.colour_deadzone = 0.0
    assert out.shape == (48, 64, 3)


def test_rgb_to_lab_matches_scikit_image():
    from skimage.color import rgb2lab

    from pixmend.models.gl_transformer import rgb_to_lab

    x = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    ours = rgb_to_lab(torch.from_numpy(x.transpose(2, 0, 1))[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - rgb2lab(x)).max() < 0.05
