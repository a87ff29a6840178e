"""Tokenizers for the autoregressive model: HSV bit packing (pixace), k-means palette and patches (Image GPT)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from pixmend.errors import PixmendError
from pixmend.tokens import (HSVTokenizer, PaletteTokenizer, PatchTokenizer, extract_patches, hsv_to_rgb, kmeans,
                            reassemble_patches, rgb_to_hsv, tokenizer_from_config, vocab_size_for)

from conftest import synth_image

BITS = [(5, 4, 4), (4, 3, 3), (3, 2, 2), (1, 1, 1), (2, 5, 3), (6, 5, 5)]


# ------------------------------------------------------------------------------------------------- HSV
def test_hsv_conversion_matches_colorsys():
    x = np.random.default_rng(0).uniform(0, 1, (20, 20, 3))
    x[0, :5] = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0.2, 0.9, 0.2]]
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in x.reshape(-1, 3)]).reshape(x.shape)
    np.testing.assert_allclose(rgb_to_hsv(x), ref, atol=1e-12)
    np.testing.assert_allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-12)


@pytest.mark.parametrize("bits", BITS)
def test_hsv_every_token_round_trips(bits):
    tok = HSVTokenizer(bits)
    assert tok.vocab_size == 2 ** sum(bits)
    t = np.arange(tok.vocab_size).reshape(1, -1)
    rgb = tok.decode(t)
    assert rgb.dtype == np.float32 and rgb.shape == (1, tok.vocab_size, 3)
    assert rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_array_equal(tok.encode(rgb), t)
    # unpack/pack are inverse and the fields sit where the bit widths say
    qh, qs, qv = tok.unpack(t)
    np.testing.assert_array_equal(tok.pack(qh, qs, qv), t)
    assert qh.max() == 2 ** bits[0] - 1 and qs.max() == 2 ** bits[1] - 1 and qv.max() == 2 ** bits[2] - 1


@pytest.mark.parametrize("bits", BITS)
def test_hsv_decode_encode_within_quantisation_error(bits):
    tok = HSVTokenizer(bits)
    x = np.random.default_rng(1).uniform(0, 1, (40, 40, 3))
    t = tok.encode(x)
    assert t.dtype == np.int64 and t.shape == (40, 40)
    y = tok.decode(t)
    hx, hy = rgb_to_hsv(x), rgb_to_hsv(y)
    nh, ns, nv = (2 ** b for b in bits)
    eps = 1e-6
    assert np.abs(hx[..., 2] - hy[..., 2]).max() <= 0.5 / nv + eps
    assert np.abs(hx[..., 1] - hy[..., 1]).max() <= 0.5 / ns + eps
    dh = np.abs(hx[..., 0] - hy[..., 0])
    dh = np.minimum(dh, 1 - dh)  # hue is circular
    assert dh.max() <= 0.5 / nh + eps
    # hence a bounded RGB error: |Δv| + v·|Δs| + v·s·6|Δh|
    assert np.abs(x - y).max() <= 0.5 / nv + 0.5 / ns + 6 * 0.5 / nh + eps
    # and re-encoding the decoded image is exact
    np.testing.assert_array_equal(tok.encode(y), t)


def test_hsv_pack_layout_and_special_colours():
    tok = HSVTokenizer((5, 4, 4))
    assert int(tok.pack(3, 5, 7)) == (3 << 8) | (5 << 4) | 7
    img = np.array([[[1.0, 0, 0], [1, 1, 1], [0, 0, 0], [0.5, 0.5, 0.5]]])
    qh, qs, qv = tok.unpack(tok.encode(img))
    assert qh[0, 0] == 0 and qs[0, 0] == 15 and qv[0, 0] == 15  # pure red: hue bin 0 (centred on red)
    assert qs[0, 1] == 0 and qv[0, 1] == 15  # white: no saturation, top value
    assert qv[0, 2] == 0 and qs[0, 2] == 0  # black
    assert qs[0, 3] == 0 and qv[0, 3] == 8  # mid grey
    # a red just below hue 1.0 lands in bin 0 too (not split between first and last bin)
    assert tok.unpack(tok.encode(hsv_to_rgb(np.array([[[0.995, 1, 1]]]))))[0][0, 0] == 0
    # uint8 input means /255
    u8 = np.rint(img * 255).astype(np.uint8)
    np.testing.assert_array_equal(tok.encode(u8), tok.encode(u8 / 255.0))


def test_hsv_errors():
    with pytest.raises(PixmendError):
        HSVTokenizer((5, 4))
    with pytest.raises(PixmendError):
        HSVTokenizer((0, 4, 4))
    tok = HSVTokenizer((3, 2, 2))
    with pytest.raises(PixmendError):
        tok.decode(np.array([[128]]))
    with pytest.raises(PixmendError):
        tok.encode(np.zeros((4, 4)))


# --------------------------------------------------------------------------------------------- palette
def test_palette_round_trip_and_fit():
    img = synth_image(32, 32, seed=3)
    tok = PaletteTokenizer(32).fit([img], seed=0)
    assert tok.vocab_size == 32 and tok.palette.shape == (32, 3) and tok.palette.dtype == np.float32
    assert len(np.unique(tok.palette, axis=0)) == 32  # distinct colours
    t = np.arange(32).reshape(4, 8)
    np.testing.assert_array_equal(tok.encode(tok.decode(t)), t)
    # decode(encode(x)) is the nearest palette colour: never farther than any other entry
    x = img.reshape(-1, 3)
    y = tok.decode(tok.encode(img)).reshape(-1, 3)
    d_best = ((x[:, None] - tok.palette[None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(((x - y) ** 2).sum(-1), d_best, atol=1e-6)
    assert np.sqrt(d_best).mean() < 0.1
    # seeded: the same fit twice
    np.testing.assert_array_equal(PaletteTokenizer(32).fit([img], seed=0).palette, tok.palette)


def test_palette_exact_when_few_colours():
    colours = np.array([[0.1, 0.2, 0.3], [0.9, 0.1, 0.1], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    img = colours[np.random.default_rng(0).integers(0, 4, (16, 16))]
    tok = PaletteTokenizer(8).fit([img])
    np.testing.assert_array_equal(tok.decode(tok.encode(img)), img)
    np.testing.assert_array_equal(tok.encode(tok.decode(np.arange(8)[None])), np.arange(8)[None])


def test_palette_state_save_load_and_card_config(tmp_path):
    tok = PaletteTokenizer(16).fit([synth_image(24, 24, seed=1)], seed=2)
    again = PaletteTokenizer.from_state(tok.state())
    np.testing.assert_array_equal(again.palette, tok.palette)
    tok.save(tmp_path / "palette.safetensors")
    np.testing.assert_array_equal(PaletteTokenizer.load(tmp_path / "palette.safetensors").palette, tok.palette)
    import json

    cfg = json.loads(json.dumps(tok.config()))  # what a model card stores
    rebuilt = tokenizer_from_config(cfg)
    np.testing.assert_array_equal(rebuilt.palette, tok.palette)
    assert vocab_size_for(cfg) == 16
    with pytest.raises(PixmendError):
        PaletteTokenizer(16).encode(np.zeros((2, 2, 3)))  # not fitted


def test_kmeans_distinct_and_seeded():
    pts = np.random.default_rng(0).normal(size=(2000, 3)).astype(np.float32)
    a, b = kmeans(pts, 10, seed=1), kmeans(pts, 10, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10, 3) and len(np.unique(a, axis=0)) == 10
    # two clear clusters are found
    two = np.concatenate([np.zeros((50, 2)), np.ones((50, 2))]).astype(np.float32)
    c = kmeans(two + 0.01 * np.random.default_rng(0).normal(size=two.shape), 2)
    assert sorted(np.round(c[:, 0]).tolist()) == [0.0, 1.0]


# --------------------------------------------------------------------------------------------- patches
def test_patches_round_trip_numpy_and_torch():
    img = synth_image(16, 24, seed=0)
    p = extract_patches(img, 4)
    assert p.shape == (4 * 6, 4, 4, 3)
    np.testing.assert_array_equal(p[1], img[0:4, 4:8])  # row-major order
    np.testing.assert_array_equal(p[6], img[4:8, 0:4])
    np.testing.assert_array_equal(reassemble_patches(p, 16, 24), img)
    # the seed's torch version: image (C, H, W) → (N, C, p, p)
    t = torch.from_numpy(img.transpose(2, 0, 1).copy())
    seed = t.unfold(1, 4, 4).unfold(2, 4, 4).permute(1, 2, 0, 3, 4).contiguous().view(-1, 3, 4, 4)
    tp = extract_patches(t, 4)
    assert torch.equal(tp, seed)
    assert torch.equal(reassemble_patches(tp, 16, 24), t)
    np.testing.assert_array_equal(tp.permute(0, 2, 3, 1).numpy(), p)
    with pytest.raises(PixmendError):
        extract_patches(img, 5)


def test_patch_tokenizer_round_trip():
    rng = np.random.default_rng(0)
    blocks = rng.uniform(0, 1, (6, 2, 2, 3)).astype(np.float32)  # six distinct 2×2 patterns
    choice = rng.integers(0, 6, (8, 8))
    img = reassemble_patches(blocks[choice.reshape(-1)], 16, 16)
    tok = PatchTokenizer(2, 8).fit([img], seed=0)
    t = tok.encode(img)
    assert t.shape == (8, 8) and tok.vocab_size == 8
    np.testing.assert_allclose(tok.decode(t), img, atol=1e-6)  # ≤ k distinct patches: exact
    all_t = np.arange(8).reshape(2, 4)
    np.testing.assert_array_equal(tok.encode(tok.decode(all_t)), all_t)
    rebuilt = tokenizer_from_config(tok.config())
    np.testing.assert_array_equal(rebuilt.encode(img), t)
