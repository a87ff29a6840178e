"""ONNX export: every architecture exports with dynamic sizes and onnxruntime matches PyTorch."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pixmend.cli import main  # noqa: E402
from pixmend.export import check_onnx  # noqa: E402
from pixmend.models.registry import build_model, shipped_weights  # noqa: E402
from pixmend.train import save_weights  # noqa: E402

from conftest import TINY_GL, TINY_PT  # noqa: E402

TINY = {
    "gl-transformer": ("correct", TINY_GL),
    "gl-transformer+desharpen": ("correct", {**TINY_GL, "desharpen": True, "sharp_width": 8, "sharp_crop": 32,
                                             "sharp_crops": 4}),
    "pixel-transformer": ("correct", TINY_PT),
    "window-sr-x2": ("upscale", dict(dim=12, depth=2, heads=2, scale=2)),
    "window-sr-x4": ("upscale", dict(dim=12, depth=2, heads=2, scale=4)),
    "inpaint-unet": ("inpaint", dict(base_channels=8, disc_channels=8)),
    "pixel-gpt": ("generate", dict(n_layer=1, n_head=2, n_embd=16)),
    "pixel-gpt+factored": ("generate", dict(n_layer=1, n_head=2, n_embd=16, head="factored", head_hidden=8,
                                            tokenizer="hsv", hsv_bits=[3, 2, 2], image_size=8)),
}


@pytest.mark.parametrize("arch", sorted(TINY))
def test_export_parity_every_architecture(arch, tmp_path, capsys):
    task, cfg = TINY[arch]
    arch = arch.split("+")[0]  # variants of one architecture: name+variant
    torch.manual_seed(0)
    model = build_model(arch, cfg)
    with torch.no_grad():  # make zero-initialised heads non-trivial, so parity means something
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    w = tmp_path / "m.safetensors"
    save_weights(w, model, card={"architecture": arch, "task": task, "config": cfg})
    out = tmp_path / "m.onnx"
    assert main(["export", str(w), "--format", "onnx", "-o", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert check_onnx(str(w), out) < 1e-4  # on inputs of a size the graph was not exported with
    assert main(["export", str(w), "-o", str(out)]) == 1  # no overwrite without --overwrite
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["gl-transformer", "pixel-transformer", "inpaint-unet", "window-sr-x2",
                                  "window-sr-x4", "pixel-gpt"])
def test_shipped_models_export(name, tmp_path):
    if not shipped_weights(name).exists():
        pytest.skip(f"{name} has no shipped weights in this checkout")
    out = tmp_path / f"{name}.onnx"
    assert main(["export", name, "-o", str(out), "--check"]) == 0
    assert check_onnx(name, out) < 1e-4
