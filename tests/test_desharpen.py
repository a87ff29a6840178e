"""The de-sharpening stage of gl-transformer: the exact inverse unsharp mask, the sharpening estimator, tiling,
and the wide-view training data that feeds the colour stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixmend import data as D
from pixmend import degrade
from pixmend.errors import PixmendError
from pixmend.models import gl_transformer as G
from pixmend.tasks import correct as C

from conftest import TINY_GL, perturbed_gl, synth_image

TINY_DS = {**TINY_GL, "desharpen": True, "sharp_width": 8, "sharp_crop": 32, "sharp_crops": 4, "local_margin": 32}


def chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def inner(a: np.ndarray, m: int = 16) -> np.ndarray:
    return a[m:-m, m:-m]


@pytest.mark.parametrize("radius,amount,luma_only", [(0.5, 1.5, False), (1.2, 0.6, False), (3.0, 1.2, False),
                                                     (2.0, 1.0, True)])
def test_unsharp_inverse_undoes_unsharp_mask(radius, amount, luma_only):
    # kept inside [0.25, 0.75] so the mask's overshoot is never clipped (clipping destroys information)
    clean = 0.25 + 0.5 * synth_image(96, 112, seed=3)
    sharp = degrade.unsharp_mask(clean, radius, amount, luma_only)
    assert np.abs(inner(sharp - clean)).max() > 0.02  # the mask did something
    out = G.unsharp_inverse(chw(sharp), torch.tensor([amount]), torch.tensor([radius]),
                            torch.tensor([float(luma_only)]))[0].numpy().transpose(1, 2, 0)
    assert out.shape == clean.shape
    assert np.abs(inner(out - clean)).max() < 1e-3


def test_unsharp_inverse_amount_zero_is_identity_and_batches_are_independent():
    a, b = synth_image(40, 50, seed=1), 0.25 + 0.5 * synth_image(40, 50, seed=2)
    x = torch.cat([chw(a), chw(degrade.unsharp_mask(b, 1.5, 1.0))])
    out = G.unsharp_inverse(x, torch.tensor([0.0, 1.0]), torch.tensor([2.0, 1.5]), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)
    assert float((inner(out[1].numpy().transpose(1, 2, 0), 12) - inner(b, 12)).__abs__().max()) < 1e-3


def test_unsharp_inverse_tiny_images():
    for h, w in ((1, 1), (2, 7), (9, 3)):
        x = torch.rand(1, 3, h, w)
        out = G.unsharp_inverse(x, torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.5]))
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_crop_grid_spreads_crops_and_handles_small_images():
    x = torch.arange(2 * 3 * 100 * 160, dtype=torch.float32).view(2, 3, 100, 160)
    crops = G.crop_grid(x, 32, 9)
    assert crops.shape == (2 * 9, 3, 32, 32)
    torch.testing.assert_close(crops[0], x[0, :, :32, :32])  # first crop of image 0 at the top-left corner
    torch.testing.assert_close(crops[8], x[0, :, -32:, -32:])  # last one at the bottom-right corner
    torch.testing.assert_close(crops[9], x[1, :, :32, :32])  # then image 1
    assert G.crop_grid(torch.rand(1, 3, 20, 24), 32, 9).shape == (1, 3, 20, 24)


def test_untrained_desharpen_model_is_identity():
    torch.manual_seed(0)
    m = G.build(TINY_DS).eval()
    x = chw(synth_image(48, 64, seed=5))
    with torch.no_grad():
        p = m.estimate(x)
        assert float(p.sharpen.abs().max()) == 0.0
        torch.testing.assert_close(m(x), x, atol=2e-4, rtol=0)


def sharpening_gl(seed: int = 0):
    m = perturbed_gl(seed, TINY_DS)
    with torch.no_grad():
        m.sharp.mlp[-1].bias.copy_(torch.tensor([0.8, -0.5, 0.0]))  # amount 0.8, some radius: not the identity
        m.sharp.mlp[-1].weight.normal_(0.0, 1e-3)
    return m


def test_gradients_reach_the_sharpening_estimator():
    m = sharpening_gl().train()
    x = chw(synth_image(48, 48, seed=4))
    m(x).square().mean().backward()
    for name in ("sharp.trunk.0.weight", "sharp.mlp.2.weight", "stem.0.weight", "local_in.weight"):
        g = dict(m.named_parameters())[name].grad
        assert g is not None and float(g.abs().sum()) > 0, name


def test_tiled_equals_untiled_with_desharpening():
    m = sharpening_gl(seed=2)
    img = synth_image(200, 264, seed=6)
    card = {"architecture": "gl-transformer"}
    whole = C.gl_correct(img, m, tile=1024)
    tiled = C.gl_correct(img, m, tile=160)
    assert np.abs(whole - img).max() > 0.01
    assert np.abs(tiled - whole).max() < 2e-3
    assert C.correct_rgb(img, m, card, strength=0.0).tolist() == img.tolist()


def test_inspect_reports_the_estimated_unsharp_mask():
    m = sharpening_gl(seed=3)
    info = C.inspect_rgb(synth_image(40, 40, seed=1), m, {"architecture": "gl-transformer"})
    assert info["sharpening_amount"] == pytest.approx(0.8, abs=0.05)
    assert 0.3 <= info["sharpening_radius_px"] <= 4.0 and 0 <= info["sharpening_luma_only"] <= 1


def test_wide_view_dataset_items():
    imgs = [(synth_image(90, 120, seed=i) * 255).astype(np.uint8) for i in range(2)]
    ds = D.SyntheticCorrectionDataset(imgs, crop=48, length=8, seed=0, p_illustration=0.0, thumb=32)
    for i in range(8):
        bad, clean, amount, radius, luma, tb, tc = ds[i]
        assert bad.shape == clean.shape == (3, 48, 48)
        assert tb.shape == tc.shape == (3, 32, 32)
        assert (radius > 0) == (amount > 0) and float(luma) in (0.0, 1.0)
        assert 0 <= float(tb.min()) and float(tb.max()) <= 1
    a, b = ds[3], ds[3]
    assert all(torch.equal(u, v) for u, v in zip(a, b))  # seeded: the same item every time
    plain = D.SyntheticCorrectionDataset(imgs, crop=48, length=8, seed=0, p_illustration=0.0)
    assert len(plain[0]) == 3 and torch.equal(plain[0][0], ds[0][0])  # the crop is unchanged by the option


def test_training_step_with_wide_views_lowers_loss():
    torch.manual_seed(0)
    m = G.build(TINY_DS).train()
    imgs = [(synth_image(90, 120, seed=i) * 255).astype(np.uint8) for i in range(2)]
    ds = D.SyntheticCorrectionDataset(imgs, crop=48, length=8, seed=0, p_illustration=0.0, thumb=32)
    batch = [torch.stack(t) for t in zip(*[ds[i] for i in range(8)])]
    task = C.CorrectTask()
    cfg = {**task.defaults("gl-transformer"), "local_crop": 32, "wide_views": True}
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        torch.manual_seed(1)  # the same local window every step: a fixed problem
        loss, logs = task.loss(m, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert {"l1_thumb", "radius_l1", "luma_bce"} <= set(logs)
    assert losses[-1] < 0.7 * losses[0], losses


def test_colour_only_training_touches_only_the_colour_stage():
    """colour_only: the dataset gives (bad, clean) wide-view thumbnails only; the loss trains the global colour
    stage on them, lowers on a fixed batch, and leaves the sharpening estimator and local stage without gradient."""
    torch.manual_seed(0)
    m = G.build(TINY_DS).train()
    imgs = [(synth_image(90, 120, seed=i) * 255).astype(np.uint8) for i in range(2)]
    ds = D.SyntheticCorrectionDataset(imgs, crop=48, length=8, seed=0, p_illustration=0.0, thumb=32,
                                      views_only=True)
    items = [ds[i] for i in range(8)]
    assert all(len(it) == 2 and it[0].shape == it[1].shape == (3, 32, 32) for it in items)
    assert not torch.equal(items[0][0], items[1][0]) and torch.equal(ds[5][0], ds[5][0])  # varied, seeded
    with pytest.raises(PixmendError, match="thumbnail"):
        D.SyntheticCorrectionDataset(imgs, crop=48, length=8, views_only=True)
    batch = [torch.stack(t) for t in zip(*items)]
    task = C.CorrectTask()
    cfg = {**task.defaults("gl-transformer"), "colour_only": True}
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, logs = task.loss(m, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert "l1_thumb" in logs and losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is None for p in m.sharp.parameters()) and m.local_out.weight.grad is None
    assert m.head_affine.weight.grad is not None


def test_sharp_deadzone_soft_thresholds_the_amount():
    m = sharpening_gl(seed=4)  # amount ≈ 0.8
    x = chw(synth_image(40, 40, seed=2))
    with torch.no_grad():
        a = float(m.estimate(x).sharpen)
        m.cfg.sharp_deadzone = 0.3
        b = float(m.estimate(x).sharpen)
        m.cfg.sharp_deadzone = 2.0
        c = float(m.estimate(x).sharpen)
    assert b == pytest.approx(a - 0.3, abs=1e-5) and c == 0.0
