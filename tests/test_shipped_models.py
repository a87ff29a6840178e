"""The shipped weights load through the registry and do their job on the repo's example image."""

import json
from pathlib import Path

import numpy as np
import pytest

from pixmend import cli
from pixmend.io import read_image
from pixmend.metrics import mean_lab
from pixmend.models.registry import WEIGHTS_DIR, create_model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "gpt-sample.png"


VARIANT_OF = {"window-sr-x2-bicubic": "window-sr-x2", "window-sr-x4-bicubic": "window-sr-x4"}  # shipped weights of an existing architecture


@pytest.mark.parametrize("name", ["gl-transformer", "pixel-transformer", "inpaint-unet", "window-sr-x2", "window-sr-x4",
                                  "window-sr-x2-bicubic", "window-sr-x4-bicubic", "pixel-gpt"])
def test_shipped_weights_and_card(name):
    weights = WEIGHTS_DIR / f"{name}.safetensors"
    card = json.loads(weights.with_suffix(".json").read_text())
    assert weights.stat().st_size < 20 * 1024 * 1024
    for key in ("architecture", "config", "data", "steps", "hardware", "wall_time_s"):
        assert key in card, key
    model, loaded_card = create_model(name, task=card["task"])
    assert loaded_card["architecture"] == VARIANT_OF.get(name, name)
    assert not model.training


def test_default_correct_on_example_removes_warm_cast(tmp_path):
    out = tmp_path / "fixed.png"
    assert cli.main(["correct", str(EXAMPLE), "-o", str(out), "--device", "cpu"]) == 0
    before, after = read_image(EXAMPLE).rgb, read_image(out).rgb
    assert after.shape == before.shape
    # the example has a strong yellow cast (b* ≈ +11 against -7 for the clean photo): it must come down
    assert mean_lab(after)[2] < mean_lab(before)[2] - 5
    clean = np.asarray(read_image(ROOT / "examples" / "clean-reference.jpg").rgb)
    err_before = np.abs(before - clean).mean()
    err_after = np.abs(after - clean).mean()
    assert err_after < 0.7 * err_before


def test_shipped_inpainter_fills_a_hole_better_than_grey(tmp_path):
    """On the example photo: known pixels untouched, and the fill is closer to the truth than filling the hole
    with the mean colour of the 8-pixel ring around it."""
    clean = read_image(ROOT / "examples" / "clean-reference.jpg").rgb
    h, w = clean.shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[h // 2 - 16:h // 2 + 16, w // 2 - 16:w // 2 + 16] = 1
    from PIL import Image

    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    hidden = clean * (1 - mask[..., None])
    Image.fromarray((hidden * 255 + 0.5).astype(np.uint8)).save(tmp_path / "in.png")
    assert cli.main(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "-o",
                     str(tmp_path / "out.png")]) == 0
    src, out = read_image(tmp_path / "in.png").rgb, read_image(tmp_path / "out.png").rgb
    hole = mask > 0
    assert np.array_equal(out[~hole], src[~hole])
    err = np.abs(out[hole] - clean[hole]).mean()
    ring = np.zeros_like(hole)
    ring[h // 2 - 24:h // 2 + 24, w // 2 - 24:w // 2 + 24] = True
    ring &= ~hole
    ring_mean = clean[ring].mean(axis=0)
    assert err < np.abs(ring_mean - clean[hole]).mean()


@pytest.mark.parametrize("scale,margin", [(2, 0.5), (4, 0.3)])
def test_shipped_upscaler_beats_bicubic_on_the_example(tmp_path, scale, margin):
    from pixmend import degrade
    from pixmend.metrics import psnr_y
    from pixmend.tasks.upscale import bicubic_upscale

    hr = degrade.crop_to_multiple(read_image(ROOT / "examples" / "clean-reference.jpg").rgb[:256, :256], scale)
    lr = degrade.downsample(hr, scale, "bicubic")
    from PIL import Image

    Image.fromarray((lr * 255 + 0.5).astype(np.uint8)).save(tmp_path / "lr.png")
    assert cli.main(["upscale", str(tmp_path / "lr.png"), "--scale", str(scale), "-o", str(tmp_path / "sr.png")]) == 0
    sr = read_image(tmp_path / "sr.png").rgb
    lr8 = read_image(tmp_path / "lr.png").rgb
    assert sr.shape == hr.shape
    assert psnr_y(sr, hr, scale) > psnr_y(bicubic_upscale(lr8, scale), hr, scale) + margin


def test_shipped_pixel_gpt_models_photos_and_completes_them(tmp_path, capsys):
    """The example photo at 32×32 costs far fewer bits than the uniform model (log2(8192)/3 = 4.33 bits/dim), and
    a completion keeps the given rows exactly and continues them with colours near the photo's."""
    from PIL import Image

    from pixmend.tasks.generate import load_tokenizer, token_grid

    clean = ROOT / "examples" / "clean-reference.jpg"
    data = tmp_path / "data"
    data.mkdir()
    Image.open(clean).convert("RGB").save(data / "photo.png")
    assert cli.main(["eval", "generate", "--data", str(data), "--json"]) == 0
    bpd = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["bits_per_dim"]
    assert bpd < 3.0
    out = tmp_path / "done.png"
    assert cli.main(["complete", str(clean), "-o", str(out), "--keep", "0.5", "--seed", "1"]) == 0
    done = read_image(out).rgb
    model, card = create_model("pixel-gpt", task="generate")
    tok = load_tokenizer(card)
    quantised = tok.decode(token_grid(read_image(clean).rgb, card, tok))
    assert done.shape == (32, 32, 3)
    np.testing.assert_allclose(done[:16], quantised[:16], atol=1 / 255 + 1e-6)
    assert np.abs(done[16:].mean((0, 1)) - quantised[16:].mean((0, 1))).max() < 0.25
