"""Super-resolution: WindowSR model, downsampling, SRDataset, UpscaleTask (loss, training), tiling, CLI, eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pixmend import degrade
from pixmend.cli import main
from pixmend.data import SRDataset
from pixmend.errors import PixmendError
from pixmend.metrics import sobel_edges as np_sobel
from pixmend.models.registry import DEFAULT_MODELS, build_model, create_model, list_models
from pixmend.models.window_sr import WindowSR, bicubic_upsample, flops
from pixmend.tasks.upscale import UpscaleTask, bicubic_upscale, evaluate, sobel_edges, upscale_rgb
from pixmend.tiling import tiled_apply

from conftest import save_png, synth_image, to_u8

TINY_SR = dict(dim=12, depth=2, heads=2, window=4)


def tiny(scale: int = 2, seed: int = 0, perturb: bool = True, **over) -> WindowSR:
    """A tiny WindowSR; ``perturb`` randomises the zero-initialised residual head so it is not bicubic."""
    torch.manual_seed(seed)
    m = build_model(f"window-sr-x{scale}", {**TINY_SR, **over})
    if perturb:
        with torch.no_grad():
            m.head.weight.normal_(0.0, 0.05)
            m.head.bias.normal_(0.0, 0.02)
    return m.eval()


# ------------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("scale", [2, 4])
def test_output_shape_odd_sizes(scale):
    m = tiny(scale)
    for h, w in ((13, 7), (1, 5), (9, 9)):
        with torch.no_grad():
            y = m(torch.rand(2, 3, h, w))
        assert y.shape == (2, 3, h * scale, w * scale)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("scale", [2, 4])
def test_untrained_model_is_bicubic(scale):
    m = build_model(f"window-sr-x{scale}", TINY_SR).eval()
    assert m.cfg.scale == scale
    x = torch.rand(1, 3, 11, 14)
    with torch.no_grad():
        assert torch.allclose(m(x), bicubic_upsample(x, scale), atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_upsample_matches_torch_geometry(scale):
    x = torch.rand(2, 3, 9, 7)
    torch_bicubic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)  # Keys a = -0.75
    assert torch.allclose(bicubic_upsample(x, scale, a=-0.75), torch_bicubic, atol=1e-5)
    assert torch.allclose(bicubic_upsample(torch.full((1, 1, 3, 4), 0.3), scale), torch.tensor(0.3))


def test_default_size_and_flops():
    m = build_model("window-sr-x2", {})
    n = sum(p.numel() for p in m.parameters())
    assert 100_000 < n < 300_000  # sized for a 2-core CPU (docstring: 0.15 M)
    small = tiny(2)
    f = flops(small, 16, 16)
    assert f > 0 and flops(small, 32, 32) == pytest.approx(4 * f, rel=0.05)  # linear in pixels


def test_gradients_reach_every_block():
    m = tiny(2).train()
    m(torch.rand(1, 3, 12, 12)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


# --------------------------------------------------------------------------------------------- alignment
def ramp(h: int, w: int) -> np.ndarray:
    """A constant-gradient image sampled at pixel centres (x + 0.5), different slope per channel."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    return np.stack([0.1 + 0.7 * xx / w, 0.1 + 0.7 * yy / h, 0.2 + 0.3 * xx / w + 0.3 * yy / h], -1)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("method", ["bilinear", "bicubic", "area"])
def test_gradient_upscales_aligned_to_hr_grid(scale, method):
    hr = ramp(64, 48)
    lr = degrade.downsample(hr, scale, method)
    assert lr.shape == (64 // scale, 48 // scale, 3)
    sr = upscale_rgb(lr, build_model(f"window-sr-x{scale}", TINY_SR).eval())
    assert sr.shape == hr.shape
    m = 3 * scale  # borders: the resizers treat edges differently
    err = sr[m:-m, m:-m] - hr[m:-m, m:-m]
    assert np.abs(err).max() < 1e-4
    # a half-HR-pixel shift would be ~0.7/48/2 ≈ 7e-3 off: we are far below that, and unbiased
    assert abs(float(err.mean())) < 1e-5


# ------------------------------------------------------------------------------------------------ tiling
@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_equals_untiled(scale):
    x = torch.rand(1, 3, 40, 36)
    untrained = build_model(f"window-sr-x{scale}", TINY_SR).eval()
    with torch.no_grad():
        full = untrained(x)
    tiled = upscale_rgb(x[0].permute(1, 2, 0).numpy(), untrained, scale, tile=16)
    assert np.abs(tiled - full.clamp(0, 1)[0].permute(1, 2, 0).numpy()).max() < 1e-4
    # a trained-like (random) model whose receptive field fits in overlap/4: exact
    local = tiny(scale, seed=3, depth=1, shift=False)
    x = torch.rand(1, 3, 64, 56)
    with torch.no_grad():
        assert torch.allclose(tiled_apply(local, x, tile=40, overlap=32, scale=scale), local(x), atol=1e-4)
        # with global channel attention the tiles' statistics differ slightly: close, not exact
        glob = tiny(scale, seed=4)
        diff = (tiled_apply(glob, x, tile=40, overlap=32, scale=scale) - glob(x)).abs()
    assert float(diff.max()) < 5e-3 and float(diff.mean()) < 5e-4


# ----------------------------------------------------------------------------------------- downsampling
def test_downsample_dims_and_methods():
    hr = synth_image(37, 50, seed=1)
    for s in (2, 3, 4):
        outs = {m: degrade.downsample(hr, s, m) for m in degrade.DOWNSAMPLE_METHODS}
        for m, lr in outs.items():
            assert lr.shape == (37 // s, 50 // s, 3) and lr.dtype == np.float32, m
            assert 0.0 <= lr.min() and lr.max() <= 1.0
        assert not np.allclose(outs["bilinear"], outs["bicubic"])
    # area is the exact mean of each s×s block (after cropping to a multiple of s)
    c = degrade.crop_to_multiple(hr, 4)
    blocks = c.reshape(c.shape[0] // 4, 4, c.shape[1] // 4, 4, 3).mean((1, 3))
    assert np.allclose(degrade.downsample(hr, 4, "area"), blocks, atol=1e-5)
    assert degrade.downsample(hr[..., 0], 2, "bicubic").shape == (18, 25)  # gray
    with pytest.raises(ValueError):
        degrade.downsample(hr, 2, "lanczos")
    a, ma = degrade.random_downsample(hr, 2, np.random.default_rng(5))
    b, mb = degrade.random_downsample(hr, 2, np.random.default_rng(5))
    assert ma == mb and ma in degrade.DOWNSAMPLE_METHODS and np.array_equal(a, b)
    seen = {degrade.random_downsample(hr[:8, :8], 2, np.random.default_rng(i))[1] for i in range(30)}
    assert seen == set(degrade.DOWNSAMPLE_METHODS)


def test_srdataset_shapes_and_seeding():
    imgs = [to_u8(synth_image(40, 52, seed=i)) for i in range(2)]
    ds = SRDataset(imgs, scale=2, lr_crop=12, length=5, seed=0)
    lr, hr = ds[0]
    assert lr.shape == (3, 12, 12) and hr.shape == (3, 24, 24) and lr.dtype == torch.float32
    assert 0 <= float(hr.min()) and float(hr.max()) <= 1
    ds.set_epoch(1)
    assert not torch.equal(ds[0][1], hr)  # fresh crops each epoch
    val = SRDataset(imgs, scale=4, lr_crop=32, length=3, seed=1, fixed=True)
    assert val.hr_crop == 40 and val[0][0].shape == (3, 10, 10)  # capped by the photo's size
    v0 = val[0][1]
    val.set_epoch(3)
    assert torch.equal(val[0][1], v0)


# -------------------------------------------------------------------------------------------- training
def test_sobel_matches_metrics():
    img = synth_image(20, 24, seed=2)
    t = sobel_edges(torch.from_numpy(img).permute(2, 0, 1)[None])
    assert np.allclose(t[0, 0].numpy(), np_sobel(img), atol=1e-5)


def test_loss_switches_to_edge_weighting_and_validation_is_plain_l1():
    task = UpscaleTask()
    cfg = {**task.defaults("window-sr-x2"), "steps": 4, "edge_weight_after": 0.5}
    m = tiny(2).train()
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    seen = []
    for _ in range(4):
        loss, metrics = task.loss(m, (lr, hr), cfg)
        seen.append("edge_l1" in metrics)
        if seen[-1]:
            assert loss.item() == pytest.approx(metrics["l1"] + metrics["edge_l1"], rel=1e-5)
    assert seen == [False, False, True, True] and int(m.steps_trained) == 4
    m.eval()
    with torch.no_grad():
        loss, metrics = task.loss(m, (lr, hr), cfg)
    assert float(loss) == pytest.approx(metrics["l1"]) and int(m.steps_trained) == 4


def test_mse_weight_adds_the_squared_error():
    task = UpscaleTask()
    cfg = {**task.defaults("window-sr-x2"), "steps": 2, "edge_weight_after": 1.0}
    assert cfg["mse_weight"] == 0.0
    m = tiny(2).train()
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    loss, metrics = task.loss(m, (lr, hr), {**cfg, "mse_weight": 20.0})
    assert loss.item() == pytest.approx(metrics["l1"] + 20.0 * metrics["mse"], rel=1e-5) and metrics["mse"] > 0
    loss, metrics = task.loss(m, (lr, hr), cfg)
    assert "mse" not in metrics and loss.item() == pytest.approx(metrics["l1"], rel=1e-5)


def test_patchgan_switch():
    task = UpscaleTask()
    cfg = {**task.defaults("window-sr-x2"), "steps": 2, "gan_weight": 0.1, "gan_after": 0.0}
    m = tiny(2).train()
    loss, metrics = task.loss(m, (torch.rand(2, 3, 12, 12), torch.rand(2, 3, 24, 24)), cfg)
    loss.backward()
    assert "gan_d" in metrics and "gan_g" in metrics and m.head.weight.grad is not None
    assert task.defaults("window-sr-x4")["scale"] == 4 and task.defaults("window-sr-x2")["gan_weight"] == 0


def test_tiny_training_run(photo_dir, tmp_path):
    from pixmend.train import train

    over = dict(TINY_SR, lr_crop=8, batch_size=4, samples_per_epoch=12, steps=4, val_batches=1, val_every=2,
                warmup_steps=2, peak_learning_rate=3e-3, log_every=2, checkpoint_every=100)
    res = train(UpscaleTask(), "window-sr-x4", photo_dir, tmp_path / "run", overrides=over, device="cpu",
                progress=False)
    assert res.steps == 4
    path = tmp_path / "run" / "model.safetensors"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"] == "window-sr-x4" and card["task"] == "upscale" and card["config"]["scale"] == 4
    model, card = create_model(str(path), task="upscale")
    assert model.cfg.scale == 4 and model.cfg.dim == 12 and 1 <= int(model.steps_trained) <= 4


# ----------------------------------------------------------------------------------------- registry / CLI
def test_registry_defaults():
    assert set(list_models("upscale")) == {"window-sr-x2", "window-sr-x4", "window-sr-x2-bicubic",
                                           "window-sr-x4-bicubic"}
    assert DEFAULT_MODELS["upscale"] == "window-sr-x2"
    assert build_model("window-sr-x4", {}).cfg.scale == 4
    assert build_model("window-sr-x2-bicubic", {}).cfg.scale == 2
    assert build_model("window-sr-x4-bicubic", {}).cfg.scale == 4


@pytest.fixture(scope="module")
def tiny_sr_weights(tmp_path_factory):
    from pixmend.train import save_weights

    path = tmp_path_factory.mktemp("tiny_sr") / "model.safetensors"
    save_weights(path, tiny(2, seed=7), card={"name": "tiny-sr", "architecture": "window-sr-x2", "task": "upscale",
                                               "config": {**TINY_SR, "scale": 2}})
    return path


def test_cli_upscale_end_to_end(tiny_sr_weights, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    save_png(d / "a.png", synth_image(20, 26, seed=1))
    rgba = np.dstack([to_u8(synth_image(18, 14, seed=2)), np.tile(np.linspace(0, 255, 14).astype(np.uint8), (18, 1))])
    Image.fromarray(rgba, "RGBA").save(d / "b.png")
    (d / "c.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    rc = main(["upscale", str(d), "-o", str(out), "--model", str(tiny_sr_weights), "--scale", "2", "--device", "cpu"])
    assert rc == 1  # the bad file is reported, the others written
    err = capsys.readouterr().err
    assert "c.png" in err
    with Image.open(out / "a.png") as im:
        assert im.size == (52, 40) and im.mode == "RGB"
    with Image.open(out / "b.png") as im:
        assert im.size == (28, 36) and im.mode == "RGBA"
        got = np.asarray(im)
    want_alpha = bicubic_upscale(rgba[..., 3].astype(np.float32) / 255, 2)
    assert np.abs(got[..., 3].astype(np.float32) / 255 - want_alpha).max() <= 1 / 255 + 1e-6
    model, _ = create_model(str(tiny_sr_weights), task="upscale")
    want_rgb = upscale_rgb(rgba[..., :3].astype(np.float32) / 255, model)
    assert np.abs(got[..., :3].astype(np.float32) / 255 - want_rgb).max() <= 1 / 255 + 1e-6
    assert not (out / "c.png").exists()
    # existing outputs are kept without --overwrite; one file → OUT is a file
    assert main(["upscale", str(d / "a.png"), "-o", str(out / "a.png"), "--model", str(tiny_sr_weights)]) == 1
    assert main(["upscale", str(d / "a.png"), "-o", str(out / "a.png"), "--model", str(tiny_sr_weights),
                 "--overwrite", "--tile", "8"]) == 0
    # --self-ensemble writes the 8-orientation average
    assert main(["upscale", str(d / "a.png"), "-o", str(out / "a-se.png"), "--model", str(tiny_sr_weights),
                 "--self-ensemble"]) == 0
    want_se = upscale_rgb(np.asarray(Image.open(d / "a.png")).astype(np.float32) / 255, model, ensemble=True)
    with Image.open(out / "a-se.png") as im:
        assert np.abs(np.asarray(im).astype(np.float32) / 255 - want_se).max() <= 1 / 255 + 1e-6
    capsys.readouterr()


def test_cli_upscale_scale_picks_model(tiny_sr_weights, tmp_path, capsys):
    img = tmp_path / "a.png"
    save_png(img, synth_image(12, 12))
    # ×4 requested from a ×2 model: usage error
    assert main(["upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", str(tiny_sr_weights),
                 "--scale", "4"]) == 2
    # no --model: --scale 4 picks window-sr-x4 (no shipped weights in a fresh checkout → a clear error)
    import pixmend.models.registry as R

    if not R.shipped_weights("window-sr-x4").exists():
        assert main(["upscale", str(img), "-o", str(tmp_path / "o.png"), "--scale", "4"]) == 1
        assert "window-sr-x4" in capsys.readouterr().err


def test_cli_train_and_eval_upscale(tiny_sr_weights, photo_dir, tmp_path, capsys):
    assert main(["eval", "upscale", "--data", str(photo_dir), "--model", str(tiny_sr_weights), "--json",
                 "--limit", "2"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["task"] == "upscale" and res["images"] == 2 and "psnr_y" in res and "ssim_y_bicubic" in res
    out = tmp_path / "run"
    assert main(["train", "upscale", "--data", str(photo_dir), "--model", "window-sr-x2", "--steps", "2",
                 "--batch-size", "2", "--out", str(out), "--no-progress", "--device", "cpu",
                 "--set", "dim=8", "--set", "depth=2", "--set", "heads=2", "--set", "lr_crop=8",
                 "--set", "samples_per_epoch=4", "--set", "val_batches=1"]) == 0
    assert (out / "model.safetensors").exists()


def test_eval_returns_psnr_y(tmp_path, photo_dir):
    untrained = build_model("window-sr-x2", TINY_SR).eval()
    card = {"architecture": "window-sr-x2"}
    res = evaluate(untrained, card, photo_dir, progress=False)
    assert res["images"] == 3 and res["scale"] == 2 and np.isfinite(res["psnr_y"]) and 0 < res["ssim_y"] <= 1
    assert res["psnr_y"] == pytest.approx(res["psnr_y_bicubic"], abs=1e-4)  # untrained = bicubic
    # the Set5 layout: DATA/hr + DATA/x2
    (tmp_path / "hr").mkdir()
    (tmp_path / "x2").mkdir()
    hr = synth_image(33, 40, seed=5)
    save_png(tmp_path / "hr" / "p.png", hr)
    save_png(tmp_path / "x2" / "p.png", degrade.downsample(hr, 2, "bicubic"))
    res = evaluate(tiny(2), card, tmp_path, progress=False)
    assert res["images"] == 1 and np.isfinite(res["psnr_y"])


def test_channel_attention_groups_option():
    """channel_groups = 1: one channel attention over all channels (seed 004: no split into groups)."""
    one = build_model("window-sr-x2", {**TINY_SR, "channel_groups": 1})
    grouped = build_model("window-sr-x2", TINY_SR)
    ch = [b.attn for b in one.blocks if b.kind == "channel"][0]
    assert ch.heads == 1 and ch.temperature.shape[0] == 1
    assert [b.attn for b in grouped.blocks if b.kind == "channel"][0].heads == TINY_SR["heads"]
    assert one(torch.rand(1, 3, 12, 16)).shape == (1, 3, 24, 32)


def test_lr_blur_and_noise_options_and_default_stream_unchanged(tmp_path):
    imgs = [to_u8(synth_image(64, 64, seed=3))]
    plain = SRDataset(imgs, 2, 16, 4, seed=0)
    again = SRDataset(imgs, 2, 16, 4, seed=0, blur_prob=0.0, noise_prob=0.0)
    assert torch.equal(plain[1][0], again[1][0])
    noisy = SRDataset(imgs, 2, 16, 4, seed=0, blur_prob=1.0, noise_prob=1.0)
    lr_p, hr_p = plain[1]
    lr_n, hr_n = noisy[1]
    assert torch.equal(hr_p, hr_n) and not torch.equal(lr_p, lr_n) and lr_n.min() >= 0 and lr_n.max() <= 1


def test_downsample_weights_and_lr_quantize():
    hr = synth_image(16, 16, seed=2)
    counts = {m: 0 for m in degrade.DOWNSAMPLE_METHODS}
    for i in range(600):
        counts[degrade.random_downsample(hr, 2, np.random.default_rng(i), weights=(1.0, 4.0, 1.0))[1]] += 1
    assert 0.6 < counts["bicubic"] / 600 < 0.73 and counts["bilinear"] > 50 and counts["area"] > 50
    only = {degrade.random_downsample(hr, 2, np.random.default_rng(i), weights=(0, 0, 1))[1] for i in range(20)}
    assert only == {"area"}
    with pytest.raises(ValueError, match="weights"):
        degrade.random_downsample(hr, 2, np.random.default_rng(0), weights=(1.0, 1.0))
    imgs = [to_u8(synth_image(64, 64, seed=3))]
    plain = SRDataset(imgs, 2, 16, 4, seed=0)
    q = SRDataset(imgs, 2, 16, 4, seed=0, quantize=True)
    (lr_p, hr_p), (lr_q, hr_q) = plain[2], q[2]
    assert torch.equal(hr_p, hr_q)  # same crop: quantising draws no random numbers
    assert torch.allclose(lr_q * 255, (lr_q * 255).round(), atol=1e-4) and not torch.equal(lr_p, lr_q)
    assert float((lr_p - lr_q).abs().max()) <= 0.5 / 255 + 1e-6


def test_task_reads_downsample_weights(photo_dir):
    task = UpscaleTask()
    cfg = {**task.defaults("window-sr-x2"), "seed": 0, "val_split": 0.2, "steps": 2, "num_epochs": 1,
           "downsample_weights": [0, 1, 0], "lr_quantize": True}
    train_ds, val_ds = task.datasets(cfg, photo_dir)
    assert train_ds.method_weights == val_ds.method_weights == (0.0, 1.0, 0.0)
    assert train_ds.quantize and val_ds.quantize
    as_text, _ = task.datasets({**cfg, "downsample_weights": "1, 4,1", "lr_quantize": "False"}, photo_dir)
    assert as_text.method_weights == (1.0, 4.0, 1.0) and as_text.quantize is False
    for bad in ([1, 1], [0, 0, 0], [1, float("nan"), 1], [1, float("inf"), 1], [1, -1, 1], "a,b,c"):
        with pytest.raises(PixmendError, match="downsample_weights"):
            task.datasets({**cfg, "downsample_weights": bad}, photo_dir)
    with pytest.raises(PixmendError, match="lr_quantize"):
        task.datasets({**cfg, "lr_quantize": "maybe"}, photo_dir)


@pytest.mark.parametrize("scale", [2, 4])
def test_self_ensemble_averages_the_eight_orientations(scale):
    m = tiny(scale, seed=5)
    rgb = synth_image(20, 28, seed=4)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    with torch.no_grad():
        outs = []
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, dims=(-2, -1))
                y = m(t.flip(-1) if flip else t)
                outs.append(torch.rot90(y.flip(-1) if flip else y, -k, dims=(-2, -1)))
        want = torch.stack(outs).mean(0).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    got = upscale_rgb(rgb, m, scale, ensemble=True)
    plain = upscale_rgb(rgb, m, scale)
    assert got.shape == plain.shape == (20 * scale, 28 * scale, 3)
    assert np.abs(got - want).max() < 1e-5 and np.abs(got - plain).max() > 1e-4
    # tiled self-ensemble stays close to untiled
    assert np.abs(upscale_rgb(rgb, m, scale, tile=16, ensemble=True) - got).mean() < 2e-3


def test_dihedral_mean_of_symmetric_functions_is_the_function():
    from pixmend.tasks.common import dihedral_mean

    x = torch.rand(1, 3, 5, 7)  # odd, non-square: rotations swap the sides
    assert torch.allclose(dihedral_mean(lambda t: 2 * t, x), 2 * x, atol=1e-6)
    # bicubic ×2 commutes with every rotation and flip (the kernel is symmetric): the mean is bicubic itself
    assert torch.allclose(dihedral_mean(lambda t: bicubic_upsample(t, 2), x), bicubic_upsample(x, 2), atol=1e-6)
    # a function that is not symmetric (a shift to the right) averages to something else
    shift = lambda t: F.pad(t, (1, 0))[..., :-1]  # noqa: E731
    assert not torch.allclose(dihedral_mean(shift, x), shift(x))
    # several inputs are turned alike: the mean of (a, b) ↦ a·b is a·b
    y = torch.rand(1, 3, 5, 7)
    assert torch.allclose(dihedral_mean(lambda a, b: a * b, x, y), x * y, atol=1e-6)


def test_hr_zoom_scale_augmentation(photo_dir):
    imgs = [to_u8(synth_image(120, 150, seed=3))]
    plain = SRDataset(imgs, 2, 16, 6, seed=0)
    off = SRDataset(imgs, 2, 16, 6, seed=0, hr_zoom=1.0)
    assert all(torch.equal(plain[i][1], off[i][1]) for i in range(6))  # off: the same stream as before
    zoom = SRDataset(imgs, 2, 16, 6, seed=0, hr_zoom=0.3)
    for i in range(6):
        lr, hr = zoom[i]
        assert lr.shape == (3, 16, 16) and hr.shape == (3, 32, 32) and 0 <= float(hr.min()) <= float(hr.max()) <= 1
    assert any(not torch.equal(plain[i][1], zoom[i][1]) for i in range(6))
    floats = SRDataset([synth_image(120, 150, seed=3)], 2, 16, 2, seed=0, hr_zoom=0.3)  # float photos work too
    assert floats[0][1].shape == (3, 32, 32)
    task = UpscaleTask()
    cfg = {**task.defaults("window-sr-x2"), "seed": 0, "val_split": 0.2, "steps": 2, "num_epochs": 1}
    train_ds, val_ds = task.datasets({**cfg, "hr_zoom": 0.5}, photo_dir)
    assert train_ds.hr_zoom == 0.5 and val_ds.hr_zoom == 1.0  # validation crops stay at the photos' own scale
    for bad in (0.0, 1.5, "half", True):
        with pytest.raises(PixmendError, match="hr_zoom"):
            task.datasets({**cfg, "hr_zoom": bad}, photo_dir)


def test_zero_init_blocks_grow_a_trained_model_exactly(tmp_path):
    """A deeper model with zero_init_blocks, --init from a shallower one, starts as exactly the shallower model."""
    from safetensors.torch import save_file

    from pixmend.train import load_init_weights

    small = tiny(2, seed=3)
    with torch.no_grad():  # make every block non-trivial, as after training
        for p in small.blocks.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_file(small.state_dict(), str(tmp_path / "small.safetensors"))
    (tmp_path / "small.json").write_text(json.dumps({"architecture": "window-sr-x2", "task": "upscale",
                                                     "config": {**TINY_SR, "scale": 2}}))
    big = build_model("window-sr-x2", {**TINY_SR, "depth": 4, "zero_init_blocks": True}).eval()
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        t = torch.rand(1, 8, 8, TINY_SR["dim"])
        assert torch.equal(big.blocks[3](t), t)  # an untouched block is the identity
    info = load_init_weights(big, str(tmp_path / "small.safetensors"), "upscale")
    assert info["tensors"] < info["of"]
    with torch.no_grad():
        torch.testing.assert_close(big(x), small(x), rtol=0, atol=1e-6)
    plain = build_model("window-sr-x2", {**TINY_SR, "depth": 4})
    with torch.no_grad():
        assert not torch.equal(plain.blocks[3](t), t)  # the default initialisation is unchanged
