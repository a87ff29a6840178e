"""Shared fixtures: synthetic images made in code and tiny models, so the suite runs in seconds on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

# One intra-op thread: these tensors are tiny, and with more threads than free cores (CI runners, or a
# training running beside the tests) OpenMP spin-waiting makes small ops up to 100× slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _single_thread(monkeypatch):
    """Keep the CLI / API from raising the thread count back to os.cpu_count() (see above)."""
    import pixmend.tasks.common as common

    monkeypatch.setattr(common, "set_threads", lambda: None)
    torch.set_num_threads(1)

# A GLTransformer small enough to build, run and train in milliseconds.
TINY_GL = dict(thumb_size=32, token_grid=4, dim=32, depth=1, heads=2, local_width=8, local_depth=1,
               stem_channels=8, curve_knots=8)

# A PixelTransformerModel of the same spirit.
TINY_PT = dict(model_dim=16, num_layers=1, nhead=1, dim_feedforward=32, num_pixels=16, dropout=0.0)


def synth_image(h: int, w: int, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """Gradients, a few flat shapes and a little noise: float32 (h, w, 3) in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / max(h - 1, 1), xx / max(w - 1, 1)
    img = np.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * np.sin(6 * xx + 3 * yy + seed)], -1)
    for _ in range(3):
        y0, x0 = rng.integers(0, max(h - 8, 1)), rng.integers(0, max(w - 8, 1))
        hh, ww = rng.integers(4, max(h // 3, 5)), rng.integers(4, max(w // 3, 5))
        img[y0:y0 + hh, x0:x0 + ww] = rng.uniform(0.1, 0.9, size=3)
    img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Low-frequency content only (looks the same at any scale)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    img = np.stack([0.5 + 0.3 * np.sin(2 * xx + seed), 0.5 + 0.3 * np.cos(3 * yy), 0.3 + 0.4 * xx * yy], -1)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def save_png(path, img: np.ndarray) -> None:
    Image.fromarray(to_u8(img) if img.dtype != np.uint8 else img).save(path)


def perturbed_gl(seed: int = 0, config: dict | None = None):
    """A tiny GLTransformer whose heads and local output layer are random, so it is *not* the identity."""
    from pixmend.models.registry import build_model

    torch.manual_seed(seed)
    model = build_model("gl-transformer", config or TINY_GL)
    with torch.no_grad():
        model.local_out.weight.normal_(0.0, 0.05)
        model.local_out.bias.normal_(0.0, 0.02)
        model.head_affine.weight.normal_(0.0, 0.05)
        model.head_affine.bias.normal_(0.0, 0.03)
        model.head_curve.weight.normal_(0.0, 0.2)
        model.head_cond.weight.normal_(0.0, 0.2)
    return model.eval()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """Three small synthetic 'clean photos' (48×48 PNG)."""
    d = tmp_path_factory.mktemp("photos")
    for i in range(3):
        save_png(d / f"photo{i}.png", synth_image(48, 48, seed=i))
    return d


@pytest.fixture(scope="session")
def paired_dir(tmp_path_factory):
    """The seed's paired layout: DATA/inputs/x.png (degraded) and DATA/outputs/x.png (clean)."""
    from pixmend import degrade

    d = tmp_path_factory.mktemp("paired")
    (d / "inputs").mkdir()
    (d / "outputs").mkdir()
    for i in range(3):
        clean = synth_image(48, 48, seed=10 + i)
        bad, _ = degrade.gpt_degrade(clean, i, force="cast+sharpen")
        save_png(d / "inputs" / f"p{i}.png", bad)
        save_png(d / "outputs" / f"p{i}.png", clean)
    return d


@pytest.fixture(scope="session")
def tiny_gl_weights(tmp_path_factory):
    """A tiny, non-identity GLTransformer saved like `pixmend train` does: model.safetensors + model.json."""
    from pixmend.train import save_weights

    d = tmp_path_factory.mktemp("tiny_gl")
    path = d / "model.safetensors"
    save_weights(path, perturbed_gl(seed=1),
                 card={"name": "tiny-gl", "architecture": "gl-transformer", "task": "correct", "config": TINY_GL})
    return path
