"""pixel-gpt: causal Transformer with a KV cache, label conditioning, training, completion, generation, bits/dim,
and the `complete` / `generate` / `eval generate` commands. Models are tiny (8×8 images, HSV 3-2-2 = 128 tokens)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pixmend.cli import main
from pixmend.errors import PixmendError
from pixmend.models.pixel_gpt import sample_logits
from pixmend.models.registry import DEFAULT_MODELS, build_model, create_model, list_models
from pixmend.tasks import generate as G
from pixmend.tokens import HSVTokenizer

from conftest import save_png, synth_image

TINY = dict(n_layer=1, n_head=2, n_embd=32, tokenizer="hsv", hsv_bits=[3, 2, 2], image_size=8)
RUN = dict(TINY, batch_size=8, samples_per_epoch=32, steps=24, peak_learning_rate=1e-2, warmup_steps=4,
           val_every=8, val_batches=1, log_every=4, checkpoint_every=1000, prescale=48, preview_samples=2,
           palette_fit_crops=16)


def tiny(seed=0, **over):
    torch.manual_seed(seed)
    return build_model("pixel-gpt", {**TINY, **over}).eval()


def card_for(config=None, name="tiny-gpt"):
    return {"name": name, "architecture": "pixel-gpt", "task": "generate", "config": {**TINY, **(config or {})}}


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory):
    """A tiny random pixel-gpt saved like `pixmend train` does (model.safetensors + model.json)."""
    from pixmend.train import save_weights

    path = tmp_path_factory.mktemp("tiny_gpt") / "model.safetensors"
    save_weights(path, tiny(1), card=card_for())
    return path


# ----------------------------------------------------------------------------------------------- model
def test_registry_and_config_from_tokenizer():
    assert "pixel-gpt" in list_models("generate") and DEFAULT_MODELS["generate"] == "pixel-gpt"
    m = tiny()
    assert m.cfg.vocab_size == 128 and m.cfg.block_size == 64 and m.cfg.n_labels == 0
    big = build_model("pixel-gpt", {"n_layer": 1, "n_embd": 16, "n_head": 1})  # registry defaults: HSV 5-4-4, 32×32
    assert big.cfg.vocab_size == 8192 and big.cfg.block_size == 1024
    # tied output layer: no separate head tensor, so safetensors never sees shared storage
    assert not any("head" in k for k in m.state_dict())


@pytest.mark.parametrize("pos,head", [("learned", "tied"), ("2d", "tied"), ("learned", "factored")])
def test_causal_mask(pos, head):
    m = tiny(pos_emb=pos, head=head)
    x = torch.randint(0, 128, (2, 63))
    a, _ = m(x)
    assert a.shape == (2, 64, 128)
    y = x.clone()
    y[:, 40:] = (y[:, 40:] + 17) % 128  # change the future
    b, _ = m(y)
    torch.testing.assert_close(a[:, :41], b[:, :41])  # logits up to position 40 only see tokens < 40
    assert not torch.allclose(a[:, 41:], b[:, 41:])


@pytest.mark.parametrize("pos,head", [("learned", "tied"), ("2d", "tied"), ("2d", "factored")])
def test_kv_cache_matches_uncached(pos, head):
    m = tiny(2, pos_emb=pos, n_layer=2, n_labels=3, head=head)
    x = torch.randint(0, 128, (3, 63))
    labels = torch.tensor([0, 2, -1])
    full, _ = m(x, labels)
    cache = m.new_cache(3)
    parts = [m(x[:, :10], labels, cache=cache)[0]]  # start token + prefix in one go
    parts.append(m(x[:, 10:25], cache=cache)[0])  # a chunk after a cached prefix
    parts += [m(x[:, i:i + 1], cache=cache)[0] for i in range(25, 63)]  # one token at a time
    assert cache.length == 64
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_logits_at_a_subset_of_positions():
    m = tiny(8)
    x = torch.randint(0, 128, (2, 64))
    full, loss = m(x[:, :-1], targets=x)
    at = torch.tensor([0, 5, 17, 63])
    part, ploss = m(x[:, :-1], targets=x[:, at], logits_at=at)
    torch.testing.assert_close(part, full[:, at])
    ref = torch.nn.functional.cross_entropy(full[:, at].reshape(-1, 128), x[:, at].reshape(-1))
    torch.testing.assert_close(ploss, ref)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(full.reshape(-1, 128), x.reshape(-1)))


def sharpened(m, scale=30.0):
    """Scale the factored head's output layers so that its distributions are far from uniform."""
    with torch.no_grad():
        for lin in m.head.out:
            lin.weight.normal_(0, scale / lin.weight.shape[1] ** 0.5)
    return m


def test_factored_head_is_an_exact_distribution():
    """p(v) p(s|v) p(h|v,s) over all 128 tokens sums to one, its loss is the joint softmax's cross-entropy, the
    per-channel split/pack is the tokenizer's packing, and sampling draws from the same distribution."""
    m = sharpened(tiny(11, head="factored"))
    assert m.cfg.channel_bits == (3, 2, 2) and m.head.levels == [8, 4, 4]
    tok = HSVTokenizer((3, 2, 2))
    t = torch.arange(128)
    parts = m.head.split(t)
    np.testing.assert_array_equal(torch.stack(parts).numpy(), np.stack(tok.unpack(t.numpy())))
    assert torch.equal(m.head.pack(parts), t)
    x = torch.randint(0, 128, (2, 64))
    with torch.no_grad():
        lp, _ = m(x[:, :-1])
        _, loss = m(x[:, :-1], targets=x)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 64))
    torch.testing.assert_close(loss, F.cross_entropy(lp.reshape(-1, 128), x.reshape(-1)))
    h = torch.randn(1, 32)
    with torch.no_grad():
        p = m.head.joint_log_probs(h)[0].exp()
        draws = m.head.sample(h.expand(40000, 32), 1.0, None, torch.Generator().manual_seed(0))[:, 0]
    assert p.max() > 0.05  # far from uniform (1/128), so the comparison means something
    emp = torch.bincount(draws, minlength=128).float() / len(draws)
    assert (emp - p).abs().max() < 0.01
    with pytest.raises(ValueError, match="channel_bits"):
        build_model("pixel-gpt", {**TINY, "head": "factored", "channel_bits": [3, 2]})


def test_factored_head_greedy_generation_matches_uncached_reference():
    m = sharpened(tiny(12, head="factored"))
    prefix = torch.randint(0, 128, (2, 20))
    out = m.generate(prefix, 44, temperature=0)
    assert out.shape == (2, 64) and torch.equal(out[:, :20], prefix)
    ref = prefix
    with torch.no_grad():
        for _ in range(44):  # channel-by-channel greedy choice on the uncached hidden state
            ref = torch.cat([ref, m.next_token(m.hidden(ref)[:, -1], temperature=0)], 1)
    assert torch.equal(out, ref)


def test_generate_uses_cache_like_greedy_reference():
    m = tiny(3)
    prefix = torch.randint(0, 128, (2, 20))
    out = m.generate(prefix, 44, temperature=0)
    assert out.shape == (2, 64) and torch.equal(out[:, :20], prefix)
    ref = prefix
    for _ in range(44):  # uncached greedy decoding, the slow way
        ref = torch.cat([ref, m(ref)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)


def test_labels_condition_the_model():
    m = tiny(4, n_labels=3)
    with torch.no_grad():
        m.start_emb.weight.normal_(0, 1.0)
    x = torch.randint(0, 128, (2, 63))
    a, _ = m(x, torch.tensor([0, 0]))
    b, _ = m(x, torch.tensor([1, 1]))
    assert a.shape == b.shape == (2, 64, 128) and not torch.allclose(a, b)
    c, _ = m(x, torch.tensor([-1, -1]))  # -1: the unconditional start token
    torch.testing.assert_close(c, m(x)[0])
    g = m.generate(None, 64, labels=2, batch=3, generator=torch.Generator().manual_seed(0))
    assert g.shape == (3, 64) and int(g.max()) < 128
    with pytest.raises(ValueError):
        m(x, torch.tensor([3, 0]))


def test_sampling_determinism_top_k_and_temperature():
    m = tiny(5)
    a = m.generate(None, 64, batch=2, generator=torch.Generator().manual_seed(7))
    b = m.generate(None, 64, batch=2, generator=torch.Generator().manual_seed(7))
    c = m.generate(None, 64, batch=2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    logits = torch.randn(4, 50)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_logits(logits, 1.0, top_k=1, generator=g), logits.argmax(-1, keepdim=True))
    assert torch.equal(sample_logits(logits, 0.0), logits.argmax(-1, keepdim=True))
    top3 = logits.topk(3, -1).indices
    for _ in range(5):
        s = sample_logits(logits, 2.0, top_k=3, generator=g)
        assert (s == top3).any(-1).all()


# -------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("head", ["tied", "factored"])
def test_tiny_training_lowers_loss_and_writes_model(tmp_path, photo_dir, head):
    from pixmend.train import train

    out = tmp_path / "run"
    res = train(G.GenerateTask(), "pixel-gpt", photo_dir, out, overrides={**RUN, "head": head}, device="cpu",
                progress=False)
    assert res.steps == 24
    losses = [l for _, l in res.history]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.3
    assert losses[0] == pytest.approx(math.log(128), abs=0.3)  # starts near uniform over 128 tokens
    assert (out / "model.safetensors").exists() and (out / "tb").is_dir()
    card = json.loads((out / "model.json").read_text())
    assert card["architecture"] == "pixel-gpt" and card["task"] == "generate"
    cfg = card["config"]
    assert cfg["hsv_bits"] == [3, 2, 2] and cfg["image_size"] == 8 and cfg["tokenizer"] == "hsv"
    assert cfg["vocab_size"] == 128 and cfg["block_size"] == 64 and cfg["n_labels"] == 0
    model, card2 = create_model(str(out / "model.safetensors"), task="generate")
    assert isinstance(G.load_tokenizer(card2), HSVTokenizer) and G.load_tokenizer(card2).bits == (3, 2, 2)
    ims = G.generate_images(model, card2, 2, seed=0)
    assert len(ims) == 2 and ims[0].shape == (8, 8, 3)


def test_training_with_labels_and_palette(tmp_path):
    from pixmend.train import train

    data = tmp_path / "data"
    for li, name in enumerate(["cats", "dogs"]):
        (data / name).mkdir(parents=True)
        for i in range(2):
            save_png(data / name / f"{i}.png", synth_image(40, 40, seed=10 * li + i))
    out = tmp_path / "run"
    train(G.GenerateTask(), "pixel-gpt", data, out, device="cpu", progress=False,
          overrides={**RUN, "steps": 4, "tokenizer": "palette", "palette_size": 16, "val_split": 0.25,
                     "loss_fraction": 0.5})
    card = json.loads((out / "model.json").read_text())
    cfg = card["config"]
    assert cfg["n_labels"] == 2 and cfg["label_names"] == ["cats", "dogs"]
    assert cfg["vocab_size"] == 16 and np.asarray(cfg["palette"]).shape == (16, 3)
    model, card = create_model(str(out / "model.safetensors"), task="generate")
    assert model.cfg.n_labels == 2
    tok = G.load_tokenizer(card)
    np.testing.assert_array_equal(tok.palette, np.asarray(cfg["palette"], np.float32))
    assert G.resolve_label(card, "dogs") == 1 and G.resolve_label(card, "0") == 0
    with pytest.raises(PixmendError, match="cats, dogs"):
        G.resolve_label(card, "birds")
    ims = G.generate_images(model, card, 2, seed=0, label="cats")
    assert ims[0].shape == (8, 8, 3)
    res = G.evaluate(model, card, data, progress=False)  # sub-folders named like the labels: conditional
    assert res["images"] == 4 and 0 < res["bits_per_dim"] < math.log2(16) / 3 * 1.5


# ------------------------------------------------------------------------------------- complete / eval
def test_complete_keeps_top_rows_exactly():
    m, card = tiny(6), card_for()
    img = synth_image(40, 56, seed=2)  # not square: centre square, resized to 8×8
    tok = G.load_tokenizer(card)
    from pixmend.data import square_resize

    quantised = tok.decode(tok.encode(square_resize(img, 8)))
    out = G.complete_rgb(img, m, card, keep=0.5, seed=0)
    assert out.shape == (8, 8, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:4], quantised[:4])
    assert not np.array_equal(out[4:], quantised[4:])  # a random model does not reproduce the rest
    np.testing.assert_array_equal(G.complete_rgb(img, m, card, keep=1.0), quantised)
    np.testing.assert_array_equal(G.complete_rgb(img, m, card, keep=0.5, seed=3),
                                  G.complete_rgb(img, m, card, keep=0.5, seed=3))
    with pytest.raises(PixmendError):
        G.complete_rgb(img, m, card, keep=1.5)
    with pytest.raises(PixmendError, match="unconditional"):
        G.complete_rgb(img, m, card, label="cats")


@pytest.mark.parametrize("head", ["tied", "factored"])
def test_bits_per_dim_of_a_uniform_model(tmp_path, head):
    """A model whose logits are all equal assigns log2(V) bits to each token: bits/dim = log2(128) / 3."""
    m = tiny(7, head=head)
    with torch.no_grad():
        if head == "tied":
            m.tok_emb.weight.zero_()
        else:
            for lin in m.head.out:
                lin.weight.zero_()
                lin.bias.zero_()
    for i in range(3):
        save_png(tmp_path / f"{i}.png", synth_image(20, 30, seed=i))
    res = G.evaluate(m, card_for({"head": head}), tmp_path, progress=False)
    assert res["images"] == 3 and res["bits_per_dim"] == pytest.approx(7 / 3, rel=1e-5)
    assert len(res["per_image"]) == 3


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_complete(tmp_path, tiny_gpt):
    src = tmp_path / "in.png"
    img = synth_image(24, 24, seed=4)
    save_png(src, img)
    dst = tmp_path / "out.png"
    assert main(["complete", str(src), "-o", str(dst), "--keep", "0.5", "--view-scale", "4", "--top-k", "20",
                 "--model", str(tiny_gpt)]) == 0
    out = np.asarray(Image.open(dst), dtype=np.float32) / 255
    assert out.shape == (32, 32, 3)
    tok = HSVTokenizer((3, 2, 2))
    from pixmend.data import square_resize
    from pixmend.io import read_image

    quantised = tok.decode(tok.encode(square_resize(read_image(src).rgb, 8)))
    small = out[::4, ::4]
    np.testing.assert_allclose(small[:4], quantised[:4], atol=0.6 / 255)  # kept rows, up to 8-bit rounding
    np.testing.assert_array_equal(out, np.repeat(np.repeat(small, 4, 0), 4, 1))  # nearest-neighbour view
    assert main(["complete", str(src), "-o", str(dst), "--model", str(tiny_gpt)]) == 1  # exists
    assert main(["complete", str(src), "-o", str(dst), "--overwrite", "--model", str(tiny_gpt)]) == 0
    with pytest.raises(SystemExit) as e:
        main(["complete", str(src), "-o", str(dst), "--keep", "2", "--model", str(tiny_gpt)])
    assert e.value.code == 2


def test_cli_generate_is_deterministic(tmp_path, tiny_gpt, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    args = ["--num", "2", "--seed", "1", "--model", str(tiny_gpt)]
    assert main(["generate", *args, "-o", str(a)]) == 0
    assert main(["generate", *args, "-o", str(b), "--grid", str(tmp_path / "grid.png"), "--view-scale", "2"]) == 0
    files = sorted(p.name for p in a.iterdir())
    assert files == ["seed1_000.png", "seed1_001.png"]
    for f in files:
        ia, ib = np.asarray(Image.open(a / f)), np.asarray(Image.open(b / f))
        assert ia.shape == (8, 8, 3) and ib.shape == (16, 16, 3)
        np.testing.assert_array_equal(ib[::2, ::2], ia)
    assert Image.open(tmp_path / "grid.png").size == (2 * 16 + 2, 16)
    assert main(["generate", "--num", "2", "--seed", "2", "--model", str(tiny_gpt), "-o", str(c)]) == 0
    assert not np.array_equal(np.asarray(Image.open(c / "seed2_000.png")), np.asarray(Image.open(a / files[0])))
    capsys.readouterr()
    assert main(["generate", *args, "-o", str(a)]) == 1  # outputs exist
    assert "already exists" in capsys.readouterr().err
    assert main(["generate", *args]) == 2  # neither -o nor --grid
    assert main(["generate", *args, "-o", str(a), "--overwrite", "--label", "cats"]) == 1
    assert "unconditional" in capsys.readouterr().err


def test_cli_eval_json_bits_per_dim(tmp_path, tiny_gpt, capsys):
    for i in range(2):
        save_png(tmp_path / f"{i}.png", synth_image(16, 16, seed=i))
    assert main(["eval", "generate", "--data", str(tmp_path), "--model", str(tiny_gpt), "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["task"] == "generate" and last["images"] == 2
    assert 0 < last["bits_per_dim"] < 7 / 3 * 1.5  # a random model is near uniform (log2(128)/3 bits)
    model, card = create_model(str(tiny_gpt), task="generate")
    assert last["bits_per_dim"] == pytest.approx(G.evaluate(model, card, tmp_path, progress=False)["bits_per_dim"])


def test_python_api_complete_and_generate(tiny_gpt):
    import pixmend
    from PIL import Image

    ims = pixmend.generate(3, seed=5, model=str(tiny_gpt))
    assert len(ims) == 3 and all(isinstance(i, Image.Image) for i in ims)
    again = pixmend.generate(3, seed=5, model=str(tiny_gpt), as_pil=False)
    assert np.array_equal(np.asarray(ims[0]), np.rint(again[0] * 255).astype(np.uint8))
    src = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    out = pixmend.complete(src, keep=0.5, model=str(tiny_gpt))
    assert out.shape[2] == 3 and out.shape[0] == out.shape[1]
