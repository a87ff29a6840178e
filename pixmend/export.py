"""``pixmend export MODEL --format onnx -o FILE``: any registry model (or trained weights) as an ONNX graph
with dynamic batch and image sizes, for onnxruntime, TensorRT, OpenVINO, browsers...

What each graph computes (inputs are float32 in [0, 1] unless said):

    correct  gl-transformer     image (1, 3, H, W), H and W even  → corrected image (1, 3, H, W)
             pixel-transformer  pixels (N, P, 3)                  → corrected pixels (N, P, 3)
    upscale  window-sr-x2/x4    image (N, 3, H, W), H and W multiples of 4 (the attention window)
                                                                  → image (N, 3, s·H, s·W)
    inpaint  inpaint-unet       image (N, 3, H, W), mask (N, 1, H, W), H and W multiples of 8
                                                                  → image, known pixels unchanged
    generate pixel-gpt          tokens (N, T) int64, T < 1024     → next-token logits (N, T + 1, V)

The whole-image graphs are the model on one tile: for very large images run them tile by tile as pixmend does
(``tiling.py``). Needs the ``[onnx]`` extra (onnx, onnxscript; onnxruntime to check the result).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import PixmendError


class _Logits(nn.Module):
    """pixel-gpt without the optional loss output and cache: tokens → logits."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, idx):
        return self.m(idx)[0]


def example_inputs(architecture: str, card: dict) -> tuple[nn.Module | None, tuple, list[str], dict]:
    """(wrapper or None, example inputs, input names, dynamic axes) for an architecture."""
    cfg = card.get("config", {})
    if architecture == "gl-transformer":  # one image per run (its colour statistics are per image)
        return None, (torch.rand(1, 3, 64, 96),), ["image"], {"image": {2: "height", 3: "width"}}
    if architecture.startswith("window-sr"):
        return None, (torch.rand(2, 3, 64, 96),), ["image"], {"image": {0: "batch", 2: "height", 3: "width"}}
    if architecture == "pixel-transformer":
        n = int(cfg.get("num_pixels", 128))
        return None, (torch.rand(2, n, 3),), ["pixels"], {"pixels": {0: "batch"}}
    if architecture == "inpaint-unet":
        mask = torch.zeros(2, 1, 64, 64)
        mask[..., 16:48, 16:48] = 1
        axes = {0: "batch", 2: "height", 3: "width"}
        return None, (torch.rand(2, 3, 64, 64), mask), ["image", "mask"], {"image": axes, "mask": axes}
    if architecture == "pixel-gpt":
        return _Logits, (torch.randint(0, 16, (2, 12)),), ["tokens"], {"tokens": {0: "batch", 1: "length"}}
    raise PixmendError(f"export: no ONNX recipe for architecture '{architecture}'")


# torch.export-based exporter where the model needs it (antialiased resize in gl-transformer); the TorchScript
# exporter elsewhere, whose traced shape arithmetic handles the window partitioning and causal masks.
DYNAMO = {"gl-transformer"}


def export(name_or_path: str, out: str | Path, fmt: str = "onnx", task: str | None = None) -> Path:
    """Export a registry model (shipped weights) or a trained ``.safetensors`` to ``out``."""
    from .models.registry import ARCHITECTURES, create_model

    if fmt != "onnx":
        raise PixmendError(f"unknown export format '{fmt}' (supported: onnx)")
    if task is None:
        if name_or_path in ARCHITECTURES:
            task = ARCHITECTURES[name_or_path].task
        else:
            if not Path(name_or_path).with_suffix(".json").exists():
                raise PixmendError(f"{name_or_path}: not a registry name, and no model card beside it")
            task = _card_task(name_or_path)
    model, card = create_model(name_or_path, task=task)
    return export_onnx(model, card, out)


def export_onnx(model: nn.Module, card: dict, out: str | Path, opset: int = 18) -> Path:
    """Write ``model`` (eval mode) to ``out`` as ONNX with dynamic sizes; returns the path."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise PixmendError("ONNX export needs the onnx extra: pip install 'pixmend[onnx]'") from None
    arch = card["architecture"]
    wrapper, inputs, names, axes = example_inputs(arch, card)
    net = (wrapper(model) if wrapper else model).eval()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if arch in DYNAMO:
                dims: dict = {}
                shapes = tuple({ax: dims.setdefault(label, torch.export.Dim(label, min=2 if label == "batch" else 16,
                                                                            max=16384))
                                for ax, label in axes[n].items()} for n in names)
                torch.onnx.export(net, inputs, str(tmp), input_names=names, output_names=["output"],
                                  dynamic_shapes=shapes, opset_version=opset, dynamo=True, verbose=False)
            else:
                torch.onnx.export(net, inputs, str(tmp), input_names=names, output_names=["output"],
                                  dynamic_axes=axes, opset_version=opset, dynamo=False)
        tmp.replace(out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def parity_inputs(architecture: str, card: dict) -> tuple:
    """Inputs of another size than the export example, to show the graph's sizes are really dynamic."""
    if architecture == "pixel-gpt":
        return (torch.randint(0, 16, (3, 20)),)
    if architecture == "pixel-transformer":
        return (torch.rand(5, int(card.get("config", {}).get("num_pixels", 128)), 3),)
    if architecture == "inpaint-unet":
        mask = torch.zeros(3, 1, 40, 56)
        mask[..., 8:20, 8:30] = 1
        return torch.rand(3, 3, 40, 56), mask
    if architecture == "gl-transformer":
        return (torch.rand(1, 3, 36, 52),)
    return (torch.rand(3, 3, 36, 52),)


def check_onnx(name_or_path: str, onnx_path: str | Path, task: str | None = None) -> float:
    """Max |onnxruntime − PyTorch| on inputs of a size the graph was not exported with."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise PixmendError("--check needs onnxruntime: pip install 'pixmend[onnx]'") from None
    from .models.registry import ARCHITECTURES, create_model

    if task is None:
        task = ARCHITECTURES[name_or_path].task if name_or_path in ARCHITECTURES else None
    model, card = create_model(name_or_path, task=task or _card_task(name_or_path))
    wrapper, _, names, _ = example_inputs(card["architecture"], card)
    net = (wrapper(model) if wrapper else model).eval()
    inputs = parity_inputs(card["architecture"], card)
    with torch.no_grad():
        ref = net(*inputs).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0]
    if got.shape != ref.shape:
        raise PixmendError(f"{onnx_path}: onnxruntime gives shape {got.shape}, PyTorch {ref.shape}")
    import numpy as np

    return float(np.abs(got - ref).max())


def _card_task(path: str) -> str:
    import json

    card_path = Path(path).with_suffix(".json")
    return json.loads(card_path.read_text()).get("task", "correct") if card_path.exists() else "correct"
