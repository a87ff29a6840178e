"""The trainer: schedule, config files, overrides, tiny end-to-end runs, resume and checkpoint format."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pixmend import train as T
from pixmend.errors import PixmendError
from pixmend.models.registry import create_model
from pixmend.tasks.correct import CorrectTask

from conftest import TINY_GL

PT_RUN = dict(model_dim=16, num_layers=1, dim_feedforward=32, num_pixels=16, batch_size=8,
              peak_learning_rate=3e-3, warmup_steps=5, val_every=10, val_batches=2, dataset_stride=32,
              variants_per_image=1, log_every=5, checkpoint_every=1000)
GL_RUN = dict(TINY_GL, crop=48, local_crop=32, batch_size=4, samples_per_epoch=16, val_batches=1,
              peak_learning_rate=3e-3, warmup_steps=3, val_every=5, log_every=5, p_illustration=0.0)


def run(arch, data, out, resume=False, **over):
    base = PT_RUN if arch == "pixel-transformer" else GL_RUN
    return T.train(CorrectTask(), arch, data, out, overrides={**base, **over}, resume=resume, device="cpu",
                   progress=False)


# ------------------------------------------------------------------------------------------- schedule
def test_noam_lr_warmup_then_inverse_sqrt():
    peak, warm = 1e-3, 100
    lrs = [T.noam_lr(s, peak, warm) for s in range(1, 401)]
    assert math.isclose(T.noam_lr(warm, peak, warm), peak)
    assert max(lrs) == pytest.approx(peak)
    for s in (1, 10, 50, 99):  # linear rise
        assert T.noam_lr(s, peak, warm) == pytest.approx(peak * s / warm)
    for s in (100, 200, 400, 1600):  # ∝ 1/sqrt(step) after the peak
        assert T.noam_lr(s, peak, warm) == pytest.approx(peak * math.sqrt(warm / s))
    assert T.noam_lr(400, peak, warm) == pytest.approx(peak / 2)
    assert all(a <= b for a, b in zip(lrs[:99], lrs[1:100]))
    assert all(a >= b for a, b in zip(lrs[99:], lrs[100:]))
    assert T.noam_lr(0, peak, warm) > 0 and T.noam_lr(5, peak, 0) == pytest.approx(peak * math.sqrt(1 / 5))


# ----------------------------------------------------------------------------------------- config files
def test_load_config_file_toml(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('NUM_EPOCHS = 3\n[train]\nBATCH_SIZE = 32\npeak_learning_rate = 2e-4\n'
                 '[model]\nMODEL_DIM = 64\ndataset_mode = "2D"\n')
    cfg = T.load_config_file(f)
    assert cfg == {"num_epochs": 3, "batch_size": 32, "peak_learning_rate": 2e-4, "model_dim": 64,
                   "dataset_mode": "2D"}
    assert T.load_config_file(None) == {} and T.load_config_file("") == {}


def test_load_config_file_errors(tmp_path):
    with pytest.raises(PixmendError, match="not found"):
        T.load_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml [")
    with pytest.raises(PixmendError, match="cannot parse"):
        T.load_config_file(bad)


def test_shipped_configs_parse():
    from pathlib import Path

    import pixmend

    for f in (Path(pixmend.__file__).parent / "configs").glob("*.toml"):
        cfg = T.load_config_file(f)
        assert "steps" in cfg and "batch_size" in cfg, f


def test_parse_overrides():
    got = T.parse_overrides(["steps=5", "LR=0.5", "flag=true", "name=hello", "mode=2D", "expr=a=b", " k =[1,2]"])
    assert got == {"steps": 5, "lr": 0.5, "flag": True, "name": "hello", "mode": "2D", "expr": "a=b", "k": [1, 2]}
    assert T.parse_overrides([]) == {} and T.parse_overrides(None) == {}
    with pytest.raises(PixmendError):
        T.parse_overrides(["novalue"])


# ------------------------------------------------------------------------------------------ tiny runs
@pytest.fixture(scope="module")
def pt_run(photo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pt_run")
    return run("pixel-transformer", photo_dir, out, steps=30)


def test_pixel_transformer_run_learns_and_writes_files(pt_run):
    res = pt_run
    out = res.out
    assert res.steps == 30 and len(res.history) == 30
    losses = [l for _, l in res.history]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    assert math.isfinite(res.best_val_loss)
    for name in ("model.safetensors", "model.json", "last.safetensors", "last.json"):
        assert (out / name).is_file(), name
    card = json.loads((out / "model.json").read_text())
    assert card["architecture"] == "pixel-transformer" and card["task"] == "correct"
    assert card["config"]["model_dim"] == 16 and "batch_size" not in card["config"]
    assert 1 <= card["steps"] <= 30 and card["total_steps"] == 30
    assert card["train_config"]["batch_size"] == 8
    assert list((out / "tb").glob("events.out.tfevents.*"))
    meta = json.loads((out / "last.json").read_text())
    assert meta["step"] == 30 and meta["architecture"] == "pixel-transformer"


def test_checkpoints_are_safetensors_not_pickle(pt_run):
    for name in ("model.safetensors", "last.safetensors"):
        raw = (pt_run.out / name).read_bytes()
        assert not raw.startswith(b"\x80") and not raw.startswith(b"PK")  # pickle / torch zip
        header_len = int.from_bytes(raw[:8], "little")
        json.loads(raw[8:8 + header_len])  # a safetensors header is plain JSON
        tensors = load_file(str(pt_run.out / name))
        assert tensors and all(torch.is_tensor(v) for v in tensors.values())
    last = load_file(str(pt_run.out / "last.safetensors"))
    assert any(k.startswith("model.") for k in last) and any(k.startswith("opt.") for k in last)
    assert "rng.torch" in last


def test_create_model_loads_trained_run(pt_run):
    model, card = create_model(str(pt_run.out / "model.safetensors"))
    assert card["architecture"] == "pixel-transformer"
    assert model.cfg.model_dim == 16 and not model.training
    saved = load_file(str(pt_run.out / "model.safetensors"))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
    with torch.no_grad():
        y = model(torch.rand(2, 16, 3))
    assert y.shape == (2, 16, 3)


def test_resume_continues_from_saved_step(photo_dir, tmp_path):
    # dropout 0: the global torch RNG is also drawn from by each DataLoader iterator, which a stopped run
    # creates at other times than a straight one, so only a run that uses no randomness resumes bit-exactly
    straight = run("pixel-transformer", photo_dir, tmp_path / "straight", steps=10, dropout=0.0)
    first = run("pixel-transformer", photo_dir, tmp_path / "resumed", steps=6, dropout=0.0)
    assert first.steps == 6
    res = run("pixel-transformer", photo_dir, tmp_path / "resumed", resume=True, steps=10, dropout=0.0)
    assert res.steps == 10
    assert [s for s, _ in res.history] == list(range(1, 11))
    assert res.history[:6] == first.history
    # same batches and optimiser state: the resumed run ends where the straight run does
    assert res.history == straight.history
    a = load_file(str(tmp_path / "straight" / "last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "last.safetensors"))
    for k in a:
        if k.startswith("model."):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert json.loads((tmp_path / "resumed" / "model.json").read_text())["total_steps"] == 10


def test_resume_without_checkpoint_starts_fresh(photo_dir, tmp_path, capsys):
    res = run("pixel-transformer", photo_dir, tmp_path / "fresh", resume=True, steps=2)
    assert res.steps == 2
    assert "starting fresh" in capsys.readouterr().err


def test_cosine_on_an_epoch_run_and_resume_with_a_new_schedule_is_recorded(photo_dir, tmp_path, capsys):
    # steps = 0 (epochs): the cosine ends at the run's computed last step; a bad setting fails before writing
    res = run("pixel-transformer", photo_dir, tmp_path / "ep", steps=0, num_epochs=1, lr_schedule="cosine",
              warmup_steps=1)
    assert res.steps > 1
    with pytest.raises(PixmendError, match="min_learning_rate"):
        run("pixel-transformer", photo_dir, tmp_path / "bad", steps=4, lr_schedule="cosine", warmup_steps=1,
            min_learning_rate=1.0)
    assert not any((tmp_path / "bad").iterdir())  # no checkpoint, weights or log
    run("pixel-transformer", photo_dir, tmp_path / "cos", steps=4, lr_schedule="cosine", warmup_steps=1)
    capsys.readouterr()
    run("pixel-transformer", photo_dir, tmp_path / "cos", resume=True, steps=6, lr_schedule="cosine", warmup_steps=1)
    assert "schedule changes at step 4: steps 4 → 6" in capsys.readouterr().err
    card = json.loads((tmp_path / "cos" / "model.json").read_text())
    assert card["schedule_changes"] == [{"at_step": 4, "changed": ["steps 4 → 6"]}]


def test_no_progress_prints_one_line_per_validation(photo_dir, tmp_path, capsys):
    run("pixel-transformer", photo_dir, tmp_path / "quiet", steps=20, val_every=10)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("step ")]
    steps = [ln.split()[1] for ln in lines]  # every val_every steps and at each epoch's end
    assert "10/20" in steps and steps[-1] == "20/20" and len(steps) == len(set(steps))
    assert "val loss" in lines[-1] and "lr" in lines[-1] and "(best, saved)" in lines[0]


def test_gl_transformer_run(photo_dir, tmp_path):
    out = tmp_path / "gl"
    res = run("gl-transformer", photo_dir, out, steps=10)  # crosses epoch ends (4 steps each): preview runs
    assert res.steps == 10
    losses = [l for _, l in res.history]
    assert len(losses) == 10 and all(np.isfinite(losses))
    for name in ("model.safetensors", "model.json", "last.safetensors", "last.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    card = json.loads((out / "model.json").read_text())
    assert card["architecture"] == "gl-transformer" and card["config"]["dim"] == 32
    model, _ = create_model(str(out / "model.safetensors"))
    assert model.cfg.thumb_size == 32
    # resume the GL run too
    res2 = run("gl-transformer", photo_dir, out, resume=True, steps=12)
    assert res2.steps == 12


@pytest.mark.parametrize("arch,steps", [("pixel-transformer", 6), ("gl-transformer", 4)])
def test_paired_folder_mode(paired_dir, tmp_path, arch, steps):
    res = run(arch, paired_dir, tmp_path / arch, steps=steps)
    assert res.steps == steps
    card = json.loads((tmp_path / arch / "model.json").read_text())
    assert card["data"]["source_images"] == 2  # 3 pairs, one held out for validation
    ds_tr, ds_va = CorrectTask().datasets({**T.TRAIN_DEFAULTS, **CorrectTask().defaults(arch),
                                           **(PT_RUN if arch == "pixel-transformer" else GL_RUN)}, paired_dir)
    x, y = ds_tr[0][:2]
    assert x.shape == y.shape and not torch.equal(x, y)  # degraded input vs clean target


def test_train_errors(tmp_path, photo_dir):
    with pytest.raises(PixmendError, match="not found"):
        run("pixel-transformer", tmp_path / "nope", tmp_path / "o", steps=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PixmendError, match="no images"):
        run("pixel-transformer", empty, tmp_path / "o2", steps=1)


def test_init_from_weights_copies_matching_tensors(tmp_path, photo_dir):
    """--init: start ×4 from ×2 weights — every tensor but the upsampling head is copied."""
    from safetensors.torch import load_file

    from pixmend.models.registry import build_model
    from pixmend.tasks.upscale import UpscaleTask
    from pixmend.train import save_weights, train

    tiny = dict(dim=12, depth=2, heads=2, window=4)
    torch.manual_seed(0)
    x2 = build_model("window-sr-x2", tiny)
    src = tmp_path / "x2.safetensors"
    save_weights(src, x2, card={"architecture": "window-sr-x2", "task": "upscale", "config": {**tiny, "scale": 2}})
    over = dict(tiny, lr_crop=8, batch_size=2, samples_per_epoch=4, steps=1, val_batches=1, peak_learning_rate=1e-12,
                warmup_steps=1)
    train(UpscaleTask(), "window-sr-x4", photo_dir, tmp_path / "run", overrides=over, device="cpu", progress=False,
          init=str(src))
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    got = load_file(str(tmp_path / "run" / "model.safetensors"))
    ref = x2.state_dict()
    same = [k for k in got if k in ref and ref[k].shape == got[k].shape]
    assert card["initialised_from"]["tensors"] == len(same) < len(got)
    assert torch.allclose(got["stem.weight"], ref["stem.weight"], atol=1e-6)


def test_init_from_a_training_checkpoint(tmp_path, photo_dir):
    """--init runs/X/last.safetensors: a run's last step (model tensors under ``model.``) starts the next stage."""
    from safetensors.torch import load_file

    from pixmend.models.registry import build_model
    from pixmend.train import load_init_weights

    res = run("pixel-transformer", photo_dir, tmp_path / "a", steps=2)
    ck = load_file(str(res.out / "last.safetensors"))
    fresh = build_model("pixel-transformer", json.loads((res.out / "model.json").read_text())["config"])
    info = load_init_weights(fresh, str(res.out / "last.safetensors"), "correct")
    own = fresh.state_dict()
    assert info["tensors"] == info["of"] == len(own)
    assert all(torch.equal(own[k], ck["model." + k]) for k in own)


def test_precision_choices_and_bf16_autocast_on_cpu(photo_dir, tmp_path):
    cpu = torch.device("cpu")
    assert T.autocast_dtype("auto", cpu) is None and T.autocast_dtype("fp32", cpu) is None
    assert T.autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(PixmendError, match="precision"):
        T.autocast_dtype("int8", cpu)
    res = run("pixel-transformer", photo_dir, tmp_path / "bf16", steps=3, precision="bf16")
    assert res.steps == 3 and all(math.isfinite(l) for _, l in res.history)


def test_lr_schedules():
    base = {"peak_learning_rate": 1e-3, "warmup_steps": 10}
    assert T.schedule_lr(100, {**base, "lr_schedule": "noam"}) == pytest.approx(T.noam_lr(100, 1e-3, 10))
    assert T.schedule_lr(5, {**base, "lr_schedule": "constant"}) == pytest.approx(5e-4)
    assert T.schedule_lr(5000, {**base, "lr_schedule": "constant"}) == pytest.approx(1e-3)
    steps = {**base, "lr_schedule": "step", "lr_steps": [[100, 1e-5], [200, 1e-4], [300, 3e-5]]}
    assert [T.schedule_lr(s, steps) for s in (1, 100, 101, 250, 999)] == [1e-5, 1e-5, 1e-4, 3e-5, 3e-5]
    cos = {**base, "lr_schedule": "cosine", "steps": 110, "min_learning_rate": 1e-5}
    assert T.schedule_lr(5, cos) == pytest.approx(5e-4)  # linear warm-up
    assert T.schedule_lr(10, cos) == pytest.approx(1e-3)  # the peak at the end of the warm-up
    assert T.schedule_lr(60, cos) == pytest.approx((1e-3 + 1e-5) / 2)  # half-way down
    assert T.schedule_lr(110, cos) == pytest.approx(1e-5) and T.schedule_lr(500, cos) == pytest.approx(1e-5)
    rates = [T.schedule_lr(s, cos) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # never rises after the warm-up
    with pytest.raises(PixmendError, match="steps"):
        T.schedule_lr(1, {**base, "lr_schedule": "cosine"})
    with pytest.raises(PixmendError, match="warmup_steps"):
        T.schedule_lr(1, {**cos, "steps": 10})
    with pytest.raises(PixmendError, match="min_learning_rate"):
        T.schedule_lr(1, {**cos, "min_learning_rate": 2e-3})
    with pytest.raises(PixmendError, match="min_learning_rate must be a number"):
        T.schedule_lr(1, {**cos, "min_learning_rate": "abc"})
    with pytest.raises(PixmendError, match="lr_schedule"):
        T.schedule_lr(1, {**base, "lr_schedule": "linear"})


def test_checkpoint_dir_seed_key(photo_dir, tmp_path):
    run("pixel-transformer", photo_dir, tmp_path / "out", steps=2, checkpoint_dir=str(tmp_path / "ckpts"))
    assert (tmp_path / "ckpts" / "last.safetensors").exists() and not (tmp_path / "out" / "last.safetensors").exists()
    assert (tmp_path / "out" / "model.safetensors").exists()
