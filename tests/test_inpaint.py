"""Inpainting: masks, InpaintGAN model, window inference (pixels outside the mask untouched), training, CLI, eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pixmend import degrade
from pixmend.cli import main
from pixmend.data import InpaintDataset, split_three
from pixmend.errors import PixmendError
from pixmend.models.registry import DEFAULT_MODELS, build_model, create_model, list_models
from pixmend.tasks.inpaint import InpaintTask, evaluate, hole_windows, inpaint_rgb, mask_from_image

from conftest import save_png, synth_image, to_u8

TINY = dict(base_channels=8, disc_channels=8)


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("inpaint-unet", TINY).eval()


# ------------------------------------------------------------------------------------------------- masks
def test_square_mask_respects_margin_and_fixed_positions_repeat():
    rng = np.random.default_rng(0)
    for _ in range(50):
        m, (y, x) = degrade.square_mask(100, 120, rng)
        assert m.sum() == 32 * 32 and 16 <= y <= 100 - 32 - 16 and 16 <= x <= 120 - 32 - 16
    assert degrade.fixed_square_positions(256, 256, 3, seed=5) == degrade.fixed_square_positions(256, 256, 3, seed=5)
    assert degrade.fixed_square_positions(256, 256, 3, seed=5) != degrade.fixed_square_positions(256, 256, 3, seed=6)


@pytest.mark.parametrize("seed", range(5))
def test_random_masks_are_binary_and_not_empty(seed):
    rng = np.random.default_rng(seed)
    for _ in range(6):
        m, kind = degrade.random_mask(64, 64, rng)
        assert kind in degrade.MASK_KINDS and m.dtype == np.float32 and set(np.unique(m)) <= {0.0, 1.0}
        assert 0 < m.mean() < 1
    b = degrade.brush_mask(128, 96, np.random.default_rng(seed))
    assert b.shape == (128, 96) and b.any()


def test_brush_width_sets_stroke_widths_in_pixels():
    from scipy import ndimage

    def width(bw):  # median over masks of the thickest spot: twice the largest distance to a known pixel
        rng = np.random.default_rng(0)
        masks = [degrade.random_mask(64, 64, rng, (0, 0, 1), brush_width=bw)[0] for _ in range(20)]
        return np.median([2 * ndimage.distance_transform_edt(np.pad(m, 1)).max() for m in masks])

    assert width(None) <= 8  # the default: 4-12 % of a 64-px side
    assert 13 <= width((12, 16)) <= 19  # strokes of 12-16 px (crossings and joints are a little thicker)


def test_dilate_mask_grows_by_the_ring():
    m = np.zeros((20, 20), np.float32)
    m[8:12, 8:12] = 1
    d = degrade.dilate_mask(m, 4)
    assert d.sum() == 12 * 12 and d[4, 4] == 1 and d[3, 3] == 0


def test_mask_from_image_white_is_hole_and_alpha_respected():
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[1, 1] = 1.0
    rgb[2, 2, 0] = 0.9  # a red stroke counts too
    m = mask_from_image(rgb)
    assert m[1, 1] == 1 and m[2, 2] == 1 and m.sum() == 2
    alpha = np.ones((4, 4), np.float32)
    alpha[1, 1] = 0.0
    assert mask_from_image(rgb, alpha).sum() == 1


# ------------------------------------------------------------------------------------------------- model
def test_model_keeps_known_pixels_and_shapes():
    m = tiny()
    img = torch.rand(2, 3, 32, 40)
    mask = torch.zeros(2, 1, 32, 40)
    mask[..., 8:20, 10:30] = 1
    out, pred = m(img, mask, raw=True)
    assert out.shape == pred.shape == img.shape
    assert torch.equal(out[mask.expand_as(out) == 0], img[mask.expand_as(img) == 0])
    assert m.critic(img, mask).shape[:2] == (2, 1)


def test_generator_ignores_the_hidden_pixels():
    """What is under the hole must not leak into the fill."""
    m = tiny()
    img = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    other = img.clone()
    other[..., 8:24, 8:24] = torch.rand(1, 3, 16, 16)
    assert torch.allclose(m(img, mask), m(other, mask))


def test_frozen_critic_sends_no_gradient_to_the_discriminator():
    m = tiny().train()
    img = torch.rand(1, 3, 32, 32, requires_grad=True)
    mask = torch.ones(1, 1, 32, 32)
    m.critic(img, mask, frozen=True).mean().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.discriminator.parameters())


def test_untrained_prefill_model_is_the_pushpull_fill():
    from pixmend.models.inpaint_unet import pushpull_fill

    m = build_model("inpaint-unet", TINY).eval()
    img = torch.rand(1, 3, 32, 48)
    mask = torch.zeros(1, 1, 32, 48)
    mask[..., 4:20, 10:40] = 1
    base = pushpull_fill(img, 1 - mask)
    assert torch.allclose(m(img, mask), img * (1 - mask) + base.clamp(0, 1) * mask)
    assert torch.allclose(base * (1 - mask), img * (1 - mask), atol=1e-6)  # known pixels come back unchanged
    flat = torch.full((1, 3, 32, 48), 0.3)
    assert torch.allclose(pushpull_fill(flat, 1 - mask), flat, atol=1e-6)  # a flat image is filled flat


def test_self_attention_at_the_bottleneck():
    m = build_model("inpaint-unet", {})
    att = m.generator.attention
    assert att.query.out_channels == att.value.out_channels // 8 and float(att.gamma.detach()) == 0.0
    n = sum(p.numel() for p in m.generator.parameters())
    assert 1.0e6 < n < 2.0e6


# --------------------------------------------------------------------------------------------- inference
def test_hole_windows_one_per_component_with_context():
    mask = np.zeros((100, 100), np.float32)
    mask[10:20, 10:20] = 1
    mask[60:70, 50:90] = 1
    wins = hole_windows(mask, context=16)
    assert len(wins) == 2
    (y0, y1, x0, x1, s) = wins[0]
    assert (y0, y1, x0, x1, s) == (0, 36, 0, 36, 1.0)
    big = np.zeros((400, 400), np.float32)
    big[50:350, 50:350] = 1
    assert hole_windows(big)[0][4] < 0.5  # a hole far thicker than the trained 32 px is filled at reduced scale


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (150, 97)])
def test_pixels_outside_the_mask_are_untouched(shape):
    rng = np.random.default_rng(1)
    img = synth_image(*shape, seed=3)
    mask = np.zeros(shape, np.float32)
    mask[rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)] = 1  # scattered pixels
    mask[5:25, 10:30] = 1  # a block
    mask[-5:, -9:] = 1  # touching the corner
    out = inpaint_rgb(img, mask, tiny())
    assert out.shape == img.shape and out.dtype == np.float32
    keep = mask == 0
    assert np.array_equal(out[keep], img[keep])
    assert not np.array_equal(out[~keep], img[~keep])


@pytest.mark.parametrize("ensemble", [False, True])
def test_filled_pixels_stay_in_range(ensemble):
    """Near white (an overexposed sky) the generator's raw residual steps past 1; the fill must not."""
    m = tiny()
    with torch.no_grad():
        m.generator.head.bias.fill_(0.2)
    img = np.full((48, 48, 3), 0.97, np.float32)
    mask = np.zeros((48, 48), np.float32)
    mask[12:36, 12:36] = 1
    out = inpaint_rgb(img, mask, m, ensemble=ensemble)
    assert out.min() >= 0.0 and out.max() <= 1.0 and out[mask > 0].max() == 1.0


@pytest.mark.parametrize("whole", [False, True])
def test_what_lies_under_the_mask_never_matters(whole):
    """A hole reaching the image's edge, in windows that are not multiples of 8 (so they are padded): the result
    must not depend on the pixel values inside the hole (a padded hole once counted as known, pulling in
    whatever the hole held: 2-4 dB lost on brush strokes that reach a window's edge)."""
    m = tiny()
    with torch.no_grad():
        m.generator.head.weight.normal_(0.0, 0.2)
    img = synth_image(45, 61, seed=2)
    mask = np.zeros((45, 61), np.float32)
    mask[30:, 40:52] = 1  # a stroke running off the bottom edge
    mask[10:14, 3:20] = 1
    black, white = img.copy(), img.copy()
    black[mask > 0], white[mask > 0] = 0.0, 1.0
    a, b = inpaint_rgb(black, mask, m, whole=whole), inpaint_rgb(white, mask, m, whole=whole)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_self_ensemble_averages_orientations_and_keeps_known_pixels():
    import torch

    from pixmend.tasks.common import dihedral_mean

    m = tiny()
    with torch.no_grad():  # the residual head starts at zero (the untrained model is the prefill): make it learn-like
        m.generator.head.weight.normal_(0.0, 0.2)
    img = synth_image(48, 40, seed=5)
    mask = np.zeros((48, 40), np.float32)
    mask[10:26, 12:30] = 1
    out = inpaint_rgb(img, mask, m, ensemble=True)
    plain = inpaint_rgb(img, mask, m)
    keep = mask == 0
    assert np.array_equal(out[keep], img[keep]) and not np.allclose(out[~keep], plain[~keep], atol=1e-4)
    # the ensemble of a window equals the mean of the 8 turned-back predictions
    x, k = torch.rand(1, 3, 16, 24), (torch.rand(1, 1, 16, 24) > 0.7).float()
    with torch.no_grad():
        want = torch.stack([torch.rot90(m.generator(torch.rot90(x, r, (-2, -1)), torch.rot90(k, r, (-2, -1))), -r, (-2, -1))
                            for r in range(4)]
                           + [torch.rot90(m.generator(torch.rot90(x, r, (-2, -1)).flip(-1),
                                                      torch.rot90(k, r, (-2, -1)).flip(-1)).flip(-1), -r, (-2, -1))
                              for r in range(4)]).mean(0)
        assert torch.allclose(dihedral_mean(m.generator, x, k), want, atol=1e-5)


def test_empty_mask_returns_the_image_and_size_mismatch_is_an_error():
    from pixmend.errors import PixmendError

    img = synth_image(20, 20)
    assert np.array_equal(inpaint_rgb(img, np.zeros((20, 20)), tiny()), img)
    with pytest.raises(PixmendError, match="mask is 10×20"):
        inpaint_rgb(img, np.zeros((20, 10)), tiny())


def test_large_hole_is_filled_at_reduced_scale():
    img = synth_image(200, 200)
    mask = np.zeros((200, 200), np.float32)
    mask[20:180, 30:190] = 1
    out = inpaint_rgb(img, mask, tiny())
    assert np.isfinite(out).all() and np.array_equal(out[mask == 0], img[mask == 0])


# ------------------------------------------------------------------------------------------------ training
def test_split_three_is_disjoint_80_10_10():
    files = [f"f{i}" for i in range(20)]
    tr, va, te = split_three(files, 0.1, 0.1, seed=0)
    assert (len(tr), len(va), len(te)) == (16, 2, 2)
    assert set(tr) | set(va) | set(te) == set(files) and not (set(tr) & set(va) or set(tr) & set(te))


def test_inpaint_dataset_shapes_and_fixed_validation():
    imgs = [to_u8(synth_image(80, 90, seed=i)) for i in range(2)]
    ds = InpaintDataset(imgs, crop=32, length=5, seed=0, fixed=True, hole=16, margin=4)
    x, m = ds[0]
    assert x.shape == (3, 32, 32) and m.shape == (1, 32, 32) and 0 < float(m.mean()) < 1
    ds.set_epoch(3)
    assert torch.equal(ds[0][1], m)  # fixed masks do not change with the epoch


def test_inpaint_augmentation_switches(photo_dir):
    imgs = [to_u8(synth_image(80, 90, seed=i)) for i in range(2)]
    plain = InpaintDataset(imgs, crop=32, length=4, seed=0, hole=16, margin=4)
    same = InpaintDataset(imgs, crop=32, length=4, seed=0, hole=16, margin=4, zoom_range=(0.5, 1.0), look_jitter=0)
    looks = InpaintDataset(imgs, crop=32, length=4, seed=0, hole=16, margin=4, look_jitter=2.0)
    for i in range(4):
        assert torch.equal(plain[i][0], same[i][0])  # the defaults are the recipe the shipped model used
        x, m = looks[i]
        assert torch.equal(m, plain[i][1]) and not torch.equal(x, plain[i][0])  # same view and mask, new look
        assert 0 <= float(x.min()) <= float(x.max()) <= 1
    task = InpaintTask()
    cfg = {**task.defaults("inpaint-unet"), "seed": 0, "val_split": 0.2, "test_split": 0.2}
    tr, va = task.datasets({**cfg, "zoom_range": [0.25, 1.0], "look_jitter": 1.5}, photo_dir)
    assert tr.zoom_range == (0.25, 1.0) and tr.look_jitter == 1.5
    assert va.zoom_range == (0.5, 1.0) and va.look_jitter == 0.0  # validation crops are not augmented
    assert tr.brush_width is None and va.brush_width is None  # off unless asked for
    tr, va = task.datasets({**cfg, "brush_width": [3, 24]}, photo_dir)
    assert tr.brush_width == va.brush_width == (3.0, 24.0)  # validation holes are those trained for
    for key, bad in (("zoom_range", [0.0, 1.0]), ("zoom_range", [0.9, 0.5]), ("zoom_range", 0.5),
                     ("look_jitter", -1), ("look_jitter", "lots"), ("brush_width", [0, 8]),
                     ("brush_width", [24, 3]), ("brush_width", 8), ("brush_width", [3, 1000])):
        with pytest.raises(PixmendError, match=key):
            task.datasets({**cfg, key: bad}, photo_dir)


def test_loss_terms_and_validation_is_hole_l1():
    task = InpaintTask()
    cfg = task.defaults("inpaint-unet")
    m = tiny().train()
    img = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    loss, met = task.loss(m, (img, mask), cfg)
    assert {"l1", "edge", "ssim_loss", "gan_g", "gan_d", "psnr_hole", "ssim"} <= set(met)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    m.eval()
    with torch.no_grad():
        v, vm = task.loss(m, (img, mask), cfg)
    assert float(v) == pytest.approx(vm["l1_hole"])


def test_mse_weight_adds_the_squared_error_term():
    task = InpaintTask()
    cfg = task.defaults("inpaint-unet")
    assert cfg["mse_weight"] == 0.0  # the seed's losses unless asked
    m = tiny().train()
    img = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    torch.manual_seed(0)
    base, met = task.loss(m, (img, mask), cfg)
    torch.manual_seed(0)
    more, met2 = task.loss(m, (img, mask), {**cfg, "mse_weight": 50.0})
    assert met["mse"] > 0 and met2["mse"] == pytest.approx(met["mse"])
    assert float(more) == pytest.approx(float(base) + 50.0 * met["mse"], rel=1e-5)


def test_ensemble_target_is_the_dihedral_mean_and_the_term_is_off_by_default():
    from pixmend.tasks.common import dihedral_mean
    from pixmend.tasks.inpaint import ensemble_target

    torch.manual_seed(0)
    m = tiny().eval()
    torch.nn.init.normal_(m.generator.head.weight, std=0.1)  # zero-initialised: the prefill alone is symmetric
    img, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 4:20, 10:26] = 1  # off-centre: each turn sees a different window
    with torch.no_grad():
        pred = m.generator(img, mask)
        full = ensemble_target(m.generator, img, mask, pred, views=7)
        assert torch.allclose(full, dihedral_mean(m.generator, img, mask), atol=1e-6)
        part = ensemble_target(m.generator, img, mask, pred, views=2)
    assert not torch.allclose(part, pred) and not torch.allclose(part, full)

    task = InpaintTask()
    cfg = task.defaults("inpaint-unet")
    assert cfg["ensemble_weight"] == 0.0
    m.train()
    _, met = task.loss(m, (img, mask), cfg)
    assert "ensemble" not in met
    loss, met = task.loss(m, (img, mask), {**cfg, "ensemble_weight": 100.0, "ensemble_views": 3})
    assert met["ensemble"] > 0
    loss.backward()  # the target carries no gradient; the prediction does
    assert m.generator.head.weight.grad is not None


def test_training_lowers_the_hole_loss(photo_dir, tmp_path):
    from pixmend.train import train

    # the seed's plain variant (grey hole in, sigmoid out): the prefill variant starts at a good fill already
    over = dict(TINY, prefill=False, crop=32, hole_size=16, hole_margin=4, batch_size=8, samples_per_epoch=64, steps=30,
                val_batches=2, val_every=10, warmup_steps=5, peak_learning_rate=3e-3, log_every=5,
                checkpoint_every=100, adv_weight=0.1)
    res = train(InpaintTask(), "inpaint-unet", photo_dir, tmp_path / "run", overrides=over, device="cpu",
                progress=False)
    first = np.mean([l for s, l in res.history[:5]])
    last = np.mean([l for s, l in res.history[-5:]])
    assert last < first
    model, card = create_model(str(tmp_path / "run" / "model.safetensors"), task="inpaint")
    assert card["architecture"] == "inpaint-unet" and model.cfg.base_channels == 8


def test_registry():
    assert list_models("inpaint") == ["inpaint-unet"] and DEFAULT_MODELS["inpaint"] == "inpaint-unet"


# ------------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from pixmend.train import save_weights

    path = tmp_path_factory.mktemp("tiny_inpaint") / "model.safetensors"
    save_weights(path, tiny(3), card={"name": "tiny-inpaint", "architecture": "inpaint-unet", "task": "inpaint",
                                      "config": TINY})
    return path


def test_cli_inpaint_single_and_folder(tiny_weights, tmp_path, capsys):
    img = synth_image(40, 50, seed=2)
    rgba = np.dstack([to_u8(img), np.full((40, 50), 200, np.uint8)])
    src = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(src)
    before = src.read_bytes()
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 15:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert main(["inpaint", str(src), "--mask", str(tmp_path / "mask.png"), "-o", str(out),
                 "--model", str(tiny_weights)]) == 0
    res = np.asarray(Image.open(out))
    assert res.shape == (40, 50, 4) and np.all(res[..., 3] == 200)  # alpha kept exactly
    keep = mask == 0
    assert np.array_equal(res[..., :3][keep], rgba[..., :3][keep])
    assert src.read_bytes() == before
    # exists → refused without --overwrite
    assert main(["inpaint", str(src), "--mask", str(tmp_path / "mask.png"), "-o", str(out),
                 "--model", str(tiny_weights)]) == 1
    assert "already exists" in capsys.readouterr().err

    # a folder of inputs with a folder of masks; one input has no mask, one has a wrong-size mask
    ind, md = tmp_path / "in", tmp_path / "masks"
    ind.mkdir()
    md.mkdir()
    for name in ("x", "y", "z"):
        save_png(ind / f"{name}.png", synth_image(32, 32, seed=len(name)))
    Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), 12)).save(md / "x.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(md / "y.png")
    rc = main(["inpaint", str(ind), "--mask", str(md), "-o", str(tmp_path / "o"), "--model", str(tiny_weights)])
    err = capsys.readouterr().err
    assert rc == 1 and (tmp_path / "o" / "x.png").exists()
    assert "y.png" in err and "10×10" in err and "z.png" in err and "no mask" in err
    assert "Traceback" not in err


def test_cli_mask_missing_is_one_line(tiny_weights, tmp_path, capsys):
    save_png(tmp_path / "a.png", synth_image(16, 16))
    rc = main(["inpaint", str(tmp_path / "a.png"), "--mask", str(tmp_path / "nope.png"), "-o",
               str(tmp_path / "o.png"), "--model", str(tiny_weights)])
    err = capsys.readouterr().err
    assert rc != 0 and "nope.png" in err and "Traceback" not in err


def test_api_inpaint_keeps_known_pixels(tiny_weights):
    import pixmend

    img = synth_image(24, 24)
    mask = np.zeros((24, 24), bool)
    mask[4:12, 4:12] = True
    out = pixmend.inpaint(img, mask, model=str(tiny_weights))
    assert out.shape == img.shape and np.array_equal(out[~mask], img[~mask])
    pil = pixmend.inpaint(Image.fromarray(to_u8(img)), Image.fromarray(mask.astype(np.uint8) * 255),
                          model=str(tiny_weights))
    assert pil.size == (24, 24)


def test_eval_and_train_cli(tiny_weights, photo_dir, tmp_path, capsys):
    assert main(["eval", "inpaint", "--data", str(photo_dir), "--model", str(tiny_weights), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["images"] == 3 and np.isfinite(res["square_psnr_hole"]) and 0 < res["brush_ssim"] <= 1
    r = evaluate(create_model(str(tiny_weights), task="inpaint")[0], {"architecture": "inpaint-unet"}, photo_dir,
                 progress=False, kinds=("square",))
    assert {"square_psnr_hole", "square_ssim_hole"} <= set(r)
    out = tmp_path / "run"
    assert main(["train", "inpaint", "--data", str(photo_dir), "--steps", "2", "--out", str(out), "--no-progress",
                 "--set", "base_channels=8", "--set", "crop=32", "--set", "hole_size=16", "--set", "hole_margin=4",
                 "--set", "samples_per_epoch=8", "--set", "val_batches=1", "--batch-size", "4"]) == 0
    assert (out / "model.safetensors").exists()


def test_whole_image_variant_keeps_known_pixels(tiny_weights, tmp_path):
    img = synth_image(40, 48, seed=4)
    mask = np.zeros((40, 48), np.float32)
    mask[5:15, 5:15] = 1
    mask[25:35, 30:44] = 1
    m = create_model(str(tiny_weights), task="inpaint")[0]
    out = inpaint_rgb(img, mask, m, whole=True)
    assert np.array_equal(out[mask == 0], img[mask == 0]) and not np.array_equal(out, img)
    save_png(tmp_path / "a.png", img)
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "m.png")
    assert main(["inpaint", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"), "-o",
                 str(tmp_path / "o.png"), "--model", str(tiny_weights), "--whole"]) == 0


def test_whole_variant_config_trains(photo_dir, tmp_path):
    from pixmend.train import load_config_file, train

    from pathlib import Path

    cfg = load_config_file(Path(__file__).resolve().parent.parent / "pixmend" / "configs" / "inpaint-unet-whole.toml")
    assert cfg["variant"] == "whole" and cfg["base_channels"] == 32
    over = dict(TINY, crop=32, hole_size=16, hole_margin=4, batch_size=2, samples_per_epoch=4, steps=2,
                val_batches=1, variant="whole")
    res = train(InpaintTask(), "inpaint-unet", photo_dir, tmp_path / "w", overrides=over, device="cpu",
                progress=False)
    assert res.steps == 2
