"""Model architectures (shapes, defaults, identity at init, resolution independence) and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixmend.errors import PixmendError
from pixmend.models import gl_transformer as G
from pixmend.models import pixel_transformer as P
from pixmend.models import registry

from conftest import TINY_GL, TINY_PT, perturbed_gl, smooth_image, synth_image


def chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).unsqueeze(0)


# ------------------------------------------------------------------------------------- pixel transformer
def test_pixel_transformer_seed_defaults():
    cfg = P.PixelTransformerConfig()
    assert (cfg.model_dim, cfg.num_layers, cfg.nhead, cfg.dim_feedforward, cfg.dropout, cfg.num_pixels) == \
        (256, 4, 1, 1024, 0.1, 128)
    assert cfg.input_dim == 3 and cfg.dataset_mode == "1D"
    m = P.PixelTransformerModel()
    assert len(m.encoder.layers) == 4
    assert m.input_proj.out_features == 256


def test_pixel_transformer_shape_and_range():
    torch.manual_seed(0)
    m = P.build(TINY_PT).eval()
    x = torch.rand(3, 16, 3)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (3, 16, 3)
    assert float(y.min()) > 0.0 and float(y.max()) < 1.0


def test_pixel_transformer_build_ignores_unknown_keys():
    m = P.build({**TINY_PT, "batch_size": 8, "peak_learning_rate": 1e-3, "dataset_stride": 4, "NOPE": 1})
    assert m.cfg.model_dim == 16 and m.cfg.num_layers == 1 and m.cfg.num_pixels == 16
    g = G.build({**TINY_GL, "crop": 48, "batch_size": 4})
    assert g.cfg.dim == 32 and g.cfg.thumb_size == 32


def test_positional_encoding_differs_by_position():
    pe = P.SinusoidalPositionalEncoding(8, max_len=32)
    out = pe(torch.zeros(1, 5, 8))
    assert out.shape == (1, 5, 8)
    assert not torch.allclose(out[0, 1], out[0, 2])


# ------------------------------------------------------------------------------------------ GLTransformer
@pytest.fixture(scope="module")
def tiny_gl():
    torch.manual_seed(0)
    return G.build(TINY_GL).eval()


def test_untrained_gl_is_identity(tiny_gl):
    x = chw(synth_image(40, 56, seed=1))
    y = tiny_gl(x)  # grad mode: differentiable curves
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, atol=2e-5, rtol=0)
    with torch.no_grad():  # LUT path
        torch.testing.assert_close(tiny_gl(x), x, atol=2e-4, rtol=0)
    with torch.no_grad():
        p = tiny_gl.estimate(x)
    torch.testing.assert_close(p.matrix, torch.eye(3).expand(1, 3, 3))
    assert p.curves.shape == (1, 3, TINY_GL["curve_knots"] + 1)
    assert float(p.offset.abs().max()) == 0.0


def test_global_stage_is_resolution_independent():
    m = perturbed_gl(seed=3)
    with torch.no_grad():
        m.head_affine.weight.normal_(0.0, 0.3)  # a strongly image-dependent colour map
    img = smooth_image(128, 96)
    full = chw(img)
    half = F.interpolate(full, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    other = chw(smooth_image(128, 96, seed=2)[:, ::-1].copy() * 0.5)
    with torch.no_grad():
        a, b, c = m.estimate(full), m.estimate(half), m.estimate(other)
    diff_same = float((a.matrix - b.matrix).abs().max())
    diff_other = float((a.matrix - c.matrix).abs().max())
    assert diff_other > 0.02  # the estimate does depend on the content
    assert diff_same < 0.1 * diff_other, (diff_same, diff_other)
    assert float((a.offset - b.offset).abs().max()) < 0.1 * max(float((a.offset - c.offset).abs().max()), 1e-3)


def test_apply_local_keeps_shape_for_odd_sizes():
    m = perturbed_gl(seed=4)
    cond = torch.zeros(2, TINY_GL["local_width"])
    for h, w in ((33, 47), (32, 31), (1, 1), (5, 6)):
        y = torch.rand(2, 3, h, w)
        with torch.no_grad():
            out = m.apply_local(y, cond)
        assert out.shape == y.shape
        assert not torch.allclose(out, y)  # the perturbed local stage does something


def test_apply_curves_identity_and_monotone():
    x = torch.rand(2, 3, 7, 9)
    k = 8
    ident = torch.linspace(0, 1, k + 1).expand(2, 3, k + 1).contiguous()
    torch.testing.assert_close(G.GLTransformer.apply_curves(x, ident), x, atol=1e-6, rtol=0)
    # a gamma-like monotone curve keeps order and the end points
    curve = (torch.linspace(0, 1, k + 1) ** 2).expand(2, 3, k + 1).contiguous()
    ramp = torch.linspace(0, 1, 50).view(1, 1, 1, 50).expand(2, 3, 1, 50).contiguous()
    out = G.GLTransformer.apply_curves(ramp, curve)
    assert bool((out[..., 1:] >= out[..., :-1]).all())
    assert float(out[..., 0].abs().max()) == 0.0 and torch.allclose(out[..., -1], torch.ones(2, 3, 1))


def test_lut_matches_differentiable_curves():
    m = perturbed_gl(seed=5)
    x = chw(synth_image(24, 30, seed=2))
    with torch.no_grad():
        p = m.estimate(x)
    assert float((p.curves[..., 1:] - p.curves[..., :-1]).min()) >= 0  # monotone
    assert not torch.allclose(p.curves, torch.linspace(0, 1, p.curves.shape[-1]).expand_as(p.curves), atol=1e-3)
    exact = m.apply_curves(x, p.curves)
    with torch.no_grad():
        lut = m.apply_curves_lut(x, p.curves)
        glob_lut = m.apply_global(x, p)
    glob_exact = m.apply_global(x, p)  # grad enabled: differentiable path
    assert float((exact - lut).abs().max()) < 1e-3
    assert float((glob_exact - glob_lut).abs().max()) < 1e-3


def test_gl_gradients_reach_every_stage():
    m = perturbed_gl(seed=6).train()
    x = chw(synth_image(32, 32, seed=4))
    m(x).mean().backward()
    for name in ("stem.0.weight", "head_curve.weight", "head_affine.weight", "local_in.weight", "local_out.weight"):
        g = dict(m.named_parameters())[name].grad
        assert g is not None and float(g.abs().sum()) > 0, name


# --------------------------------------------------------------------------------------------- registry
def test_registry_lists_and_builds():
    assert set(registry.list_models("correct")) >= {"gl-transformer", "pixel-transformer"}
    assert set(registry.list_models("upscale")) == {"window-sr-x2", "window-sr-x4", "window-sr-x2-bicubic",
                                                    "window-sr-x4-bicubic"}
    m = registry.build_model("pixel-transformer", TINY_PT)
    assert isinstance(m, P.PixelTransformerModel) and m.cfg.model_dim == 16
    with pytest.raises(PixmendError):
        registry.build_model("no-such-architecture", {})


def test_create_model_from_weights_path(tiny_gl_weights):
    from safetensors.torch import load_file

    for ref in (str(tiny_gl_weights), tiny_gl_weights.parent):  # the file, or the run folder
        model, card = registry.create_model(str(ref))
        assert card["architecture"] == "gl-transformer"
        assert isinstance(model, G.GLTransformer) and not model.training
        assert model.cfg.dim == TINY_GL["dim"]
        saved = load_file(str(tiny_gl_weights))
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, saved[k], rtol=0, atol=0)


def test_create_model_errors(tmp_path, tiny_gl_weights):
    with pytest.raises(PixmendError, match="unknown model"):
        registry.create_model("no-such-model")
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(tiny_gl_weights.read_bytes())
    with pytest.raises(PixmendError, match="card"):
        registry.create_model(str(lonely))
    with pytest.raises(PixmendError, match="not found"):
        registry.create_model(str(tmp_path / "missing.safetensors"))
    # a card naming another architecture: the weights do not fit
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(tiny_gl_weights.read_bytes())
    wrong.with_suffix(".json").write_text('{"architecture": "pixel-transformer", "config": {"model_dim": 16}}')
    with pytest.raises(PixmendError, match="do not match"):
        registry.create_model(str(wrong))
    # a corrupt weights file
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors at all")
    bad.with_suffix(".json").write_text(tiny_gl_weights.with_suffix(".json").read_text())
    with pytest.raises(PixmendError, match="cannot read weights"):
        registry.create_model(str(bad))


def test_create_model_without_pretrained_weights():
    model, card = registry.create_model("pixel-transformer", pretrained=False)
    assert card["architecture"] == "pixel-transformer"
    assert isinstance(model, P.PixelTransformerModel)
