"""The single front door for models: ``create_model(name_or_path)``.

A registry entry names the architecture builder, the task it serves, its default config and the shipped
weights (``pixmend/weights/NAME.safetensors`` with the model card ``NAME.json`` beside it). A path to a
``.safetensors`` file written by ``pixmend train`` works too: its card (same stem, ``.json``) says which
architecture and config to build. Weights are only ever read through safetensors, never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import PixmendError, UsageError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def _pixel_transformer(cfg: dict):
    from .pixel_transformer import build

    return build(cfg)


def _gl_transformer(cfg: dict):
    from .gl_transformer import build

    return build(cfg)


def _window_sr(cfg: dict):
    from .window_sr import build

    return build(cfg)


def _inpaint_unet(cfg: dict):
    from .inpaint_unet import build

    return build(cfg)


def _pixel_gpt(cfg: dict):
    from .pixel_gpt import build

    return build(cfg)


@dataclass
class ModelEntry:
    name: str
    task: str
    builder: Callable[[dict], object]
    description: str
    default_config: dict = field(default_factory=dict)


ARCHITECTURES: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> None:
    ARCHITECTURES[entry.name] = entry


register(ModelEntry("gl-transformer", "correct", _gl_transformer,
                    "default corrector: global colour Transformer + local detail CNN"))
register(ModelEntry("pixel-transformer", "correct", _pixel_transformer,
                    "the seed's pixel-sequence Transformer (slow; kept for fidelity)"))
register(ModelEntry("pixel-gpt", "generate", _pixel_gpt,
                    "autoregressive image Transformer over 32×32 HSV tokens (complete, generate, bits/dim)",
                    {"tokenizer": "hsv", "hsv_bits": [5, 4, 4], "image_size": 32}))

DEFAULT_MODELS = {"correct": "gl-transformer"}
DEFAULT_MODELS["generate"] = "pixel-gpt"
for _s in (2, 4):
    register(ModelEntry(f"window-sr-x{_s}", "upscale", _window_sr,
                        f"×{_s} super-resolution: window + channel attention Transformer (bicubic + residual)",
                        {"scale": _s}))
    register(ModelEntry(f"window-sr-x{_s}-bicubic", "upscale", _window_sr,
                        f"×{_s} for images made small with a bicubic filter (window-sr-x{_s} fine-tuned on bicubic LR "
                        "only)", {"scale": _s}))
DEFAULT_MODELS["upscale"] = "window-sr-x2"
register(ModelEntry("inpaint-unet", "inpaint", _inpaint_unet,
                    "inpainting: U-Net generator with bottleneck self-attention + PatchGAN discriminator"))
DEFAULT_MODELS["inpaint"] = "inpaint-unet"  # `pixmend upscale --scale 4` picks window-sr-x4


def list_models(task: str | None = None) -> list[str]:
    return [n for n, e in ARCHITECTURES.items() if task is None or e.task == task]


def shipped_weights(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def resolve(name_or_path: str | None, task: str) -> tuple[Path | None, dict]:
    """Return (weights path or None, card dict) for a registry name or a weights path."""
    name_or_path = name_or_path or DEFAULT_MODELS[task]
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.is_dir() or p.exists():
        if p.is_dir():
            p = p / "model.safetensors"
        if not p.exists():
            raise PixmendError(f"{p}: model weights not found")
        card_path = p.with_suffix(".json")
        if not card_path.exists():
            raise PixmendError(f"{p}: no model card {card_path.name} beside the weights (it names the architecture)")
        card = json.loads(card_path.read_text())
        return p, card
    if name_or_path not in ARCHITECTURES:
        raise UsageError(f"unknown model '{name_or_path}' (known: {', '.join(list_models(task))})")
    entry = ARCHITECTURES[name_or_path]
    if entry.task != task:
        raise UsageError(f"model '{name_or_path}' is for '{entry.task}', not '{task}'")
    w = shipped_weights(name_or_path)
    card_path = w.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {
        "architecture": name_or_path, "config": dict(entry.default_config)}
    return (w if w.exists() else None), card


def build_model(architecture: str, config: dict):
    if architecture not in ARCHITECTURES:
        raise PixmendError(f"unknown architecture '{architecture}'")
    entry = ARCHITECTURES[architecture]
    return entry.builder({**entry.default_config, **config})


def create_model(name_or_path: str | None = None, task: str = "correct", pretrained: bool = True,
                 device: str = "cpu"):
    """Build a model and load its weights. Returns (model in eval mode, card dict)."""
    weights, card = resolve(name_or_path, task)
    model = build_model(card["architecture"], card.get("config", {}))
    if pretrained:
        if weights is None:
            raise PixmendError(f"model '{name_or_path}' has no shipped weights; train it with "
                               f"`pixmend train {task} --model {card['architecture']}`")
        load_weights(model, weights)
    return model.to(device).eval(), card


def load_weights(model, path: Path) -> None:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # corrupt or not a safetensors file
        raise PixmendError(f"{path}: cannot read weights ({e.__class__.__name__}: {e})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:  # strict=False still raises on shape mismatches (card config ≠ weights)
        raise PixmendError(f"{path}: weights do not match the architecture "
                           f"(tensor shapes differ from the config in its model card)") from None
    if missing or unexpected:
        raise PixmendError(f"{path}: weights do not match the architecture "
                           f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)")
