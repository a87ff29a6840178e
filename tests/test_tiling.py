"""Overlapped tiling: exact for small receptive fields, upscaling, progress, and the GL corrector tiled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixmend.tiling import _starts, tiled_apply

from conftest import perturbed_gl, synth_image


def small_conv_net(seed: int = 0) -> nn.Module:
    """Receptive-field radius 3 (three 3×3 convs), zero padding: edges differ unless tiles have context."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1)).eval()


@pytest.mark.parametrize("h,w,tile,overlap", [(100, 77, 32, 16), (64, 130, 48, 16), (50, 50, 20, 12)])
def test_tiled_equals_untiled_for_small_receptive_field(h, w, tile, overlap):
    net = small_conv_net()
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        ref = net(x)
        out = tiled_apply(net, x, tile=tile, overlap=overlap)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_tiling_without_overlap_shows_seams():
    """The test above can fail: with no overlap the zero padding at tile edges changes the result."""
    net = small_conv_net()
    x = torch.rand(1, 3, 70, 70)
    with torch.no_grad():
        ref = net(x)
        out = tiled_apply(net, x, tile=32, overlap=0)
    assert float((out - ref).abs().max()) > 1e-3


def test_small_image_runs_in_one_call():
    calls = []

    def fn(t):
        calls.append(tuple(t.shape))
        return t * 2

    x = torch.rand(1, 3, 30, 40)
    out = tiled_apply(fn, x, tile=64, overlap=16)
    assert calls == [(1, 3, 30, 40)]
    torch.testing.assert_close(out, x * 2)


def test_tiles_never_exceed_tile_size_and_cover_image():
    seen = []

    def fn(t):
        seen.append(t.shape[-2:])
        return t + 1

    x = torch.rand(1, 3, 90, 61)
    out = tiled_apply(fn, x, tile=32, overlap=8)
    assert all(hh <= 32 and ww <= 32 for hh, ww in seen)
    torch.testing.assert_close(out, x + 1)
    for size in (61, 90, 100, 33):
        starts = _starts(size, 32, 24)
        assert starts[0] == 0 and starts[-1] == size - 32 and starts == sorted(set(starts))


def test_scale_two_pixel_shuffle_pointwise():
    def up(t):  # pointwise colour change, each input pixel becomes a 2×2 block via pixel shuffle
        t = t * 0.8 + 0.1
        return F.pixel_shuffle(t.repeat_interleave(4, dim=1), 2)

    x = torch.rand(1, 3, 70, 45)
    ref = up(x)
    out = tiled_apply(up, x, tile=24, overlap=8, scale=2)
    assert out.shape == (1, 3, 140, 90)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_scale_two_with_context():
    """A 3×3 conv then pixel shuffle: still exact when overlap/4 covers the receptive field."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 12, 3, padding=1)

    def up(t):
        return F.pixel_shuffle(conv(t), 2)

    x = torch.rand(1, 3, 50, 66)
    with torch.no_grad():
        ref = up(x)
        out = tiled_apply(up, x, tile=24, overlap=8, scale=2)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_progress_called_once_per_tile():
    calls = []
    x = torch.rand(1, 3, 100, 70)
    tiled_apply(lambda t: t, x, tile=32, overlap=8, progress=lambda d, t: calls.append((d, t)))
    n = len(_starts(100, 32, 24)) * len(_starts(70, 32, 24))
    assert calls == [(i, n) for i in range(1, n + 1)]
    calls.clear()
    tiled_apply(lambda t: t, torch.rand(1, 3, 10, 10), tile=32, overlap=8, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]


def test_overlap_must_be_smaller_than_tile():
    with pytest.raises(ValueError):
        tiled_apply(lambda t: t, torch.rand(1, 3, 100, 100), tile=32, overlap=32)


# ------------------------------------------------------------------------------- GL corrector, tiled
@pytest.mark.parametrize("h,w", [(150, 131), (161, 133), (160, 128)])
def test_gl_correct_tiled_equals_untiled(h, w):
    """Odd sizes and odd tile starts included: the local stage's 2×2 pixel-unshuffle must stay aligned."""
    from pixmend.tasks.correct import gl_correct

    model = perturbed_gl(seed=2)
    img = synth_image(h, w, seed=7)
    whole = gl_correct(img, model, tile=1024)
    tiled = gl_correct(img, model, tile=96)  # overlap is 64: tiles at 0, 32, ... and an odd last start
    assert whole.shape == img.shape
    assert np.abs(whole - img).max() > 0.01  # the model is not the identity
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # an odd tile size is handled too
    np.testing.assert_allclose(gl_correct(img, model, tile=97), whole, atol=1e-5)


def test_gl_correct_leaves_model_trainable():
    """Inference (the trainer's preview uses it) must not turn the parameters into inference tensors."""
    from pixmend.tasks.correct import gl_correct

    model = perturbed_gl(seed=3)
    gl_correct(synth_image(40, 40), model)
    model.train()
    loss = model(torch.rand(1, 3, 32, 32)).mean()
    loss.backward()
    assert all(not p.is_inference() for p in model.parameters())
    assert model.local_out.weight.grad is not None
