"""The command line, run in-process (plus one real subprocess): outputs, batch rules, exit codes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pixmend.cli import main

from conftest import save_png, synth_image, to_u8


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def err_lines(err: str) -> list[str]:
    """pixmend's own stderr lines (tqdm bars, which also write to stderr, are left out)."""
    return [ln.strip() for ln in err.replace("\r", "\n").splitlines() if ln.strip().startswith("pixmend:")]


@pytest.fixture()
def model(tiny_gl_weights):
    return ["--model", str(tiny_gl_weights), "--device", "cpu"]


@pytest.fixture()
def img_dir(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    save_png(d / "a.png", synth_image(40, 52, seed=1))
    Image.fromarray(to_u8(synth_image(36, 44, seed=2))).save(d / "b.jpg", quality=92)
    save_png(d / "c.png", synth_image(33, 31, seed=3))
    return d


def test_module_help_subprocess():
    r = subprocess.run([sys.executable, "-m", "pixmend", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for cmd in ("correct", "inspect", "verify", "train", "eval"):
        assert cmd in r.stdout


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2


# ------------------------------------------------------------------------------------------------ correct
@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".jpg", "JPEG")])
def test_single_file(tmp_path, model, capsys, ext, fmt):
    src = tmp_path / f"in{ext}"
    Image.fromarray(to_u8(synth_image(41, 57, seed=4))).save(src)
    before = sha(src)
    dst = tmp_path / f"out{ext}"
    assert main(["correct", str(src), "-o", str(dst), *model]) == 0
    with Image.open(dst) as im:
        assert im.format == fmt and im.size == (57, 41)
    assert sha(src) == before  # input untouched
    assert not np.array_equal(pixels(dst), pixels(src))  # the (non-identity) model changed it


def test_folder_in_folder_out(tmp_path, img_dir, model):
    before = {p.name: sha(p) for p in img_dir.iterdir()}
    out = tmp_path / "out"
    assert main(["correct", str(img_dir), "-o", str(out), *model]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.png"]
    for p in img_dir.iterdir():
        with Image.open(p) as a, Image.open(out / p.name) as b:
            assert a.size == b.size and a.format == b.format
    assert {p.name: sha(p) for p in img_dir.iterdir()} == before


def test_batch_with_bad_files(tmp_path, img_dir, model, capsys):
    (img_dir / "text.png").write_text("this is not a PNG")
    (img_dir / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["correct", str(img_dir), "-o", str(out), *model]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err_lines(err)
    assert len(lines) == 2, err
    assert err.splitlines() == lines and "\r" not in err  # not a terminal: no progress-bar fragments in the log
    assert sum("text.png" in ln for ln in lines) == 1
    assert sum("empty.png" in ln for ln in lines) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.png"]  # good files still written


def test_existing_output_kept_unless_overwrite(tmp_path, model, capsys):
    src = tmp_path / "in.png"
    save_png(src, synth_image(40, 40, seed=5))
    dst = tmp_path / "out.png"
    save_png(dst, np.zeros((8, 8, 3), np.float32))
    placeholder = sha(dst)
    assert main(["correct", str(src), "-o", str(dst), *model]) == 1
    err = capsys.readouterr().err
    assert sha(dst) == placeholder
    assert "already exists" in err or "exists" in err
    assert len(err_lines(err)) == 1 and "Traceback" not in err
    assert main(["correct", str(src), "-o", str(dst), "--overwrite", *model]) == 0
    assert sha(dst) != placeholder
    assert pixels(dst).shape == (40, 40, 3)


def test_rgba_alpha_kept_exactly(tmp_path, model):
    rgb = to_u8(synth_image(48, 40, seed=6))
    alpha = np.random.default_rng(0).integers(0, 256, size=(48, 40), dtype=np.uint8)
    src = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(src)
    dst = tmp_path / "out.png"
    assert main(["correct", str(src), "-o", str(dst), *model]) == 0
    with Image.open(dst) as im:
        assert im.mode == "RGBA"
        out = np.asarray(im)
    np.testing.assert_array_equal(out[..., 3], alpha)
    assert not np.array_equal(out[..., :3], rgb)


def test_strength_zero_gives_input(tmp_path, model):
    src = tmp_path / "in.png"
    save_png(src, synth_image(37, 45, seed=7))
    dst = tmp_path / "out.png"
    assert main(["correct", str(src), "-o", str(dst), "--strength", "0", *model]) == 0
    np.testing.assert_array_equal(pixels(dst), pixels(src))


def test_usage_errors_exit_2(tmp_path, model, capsys):
    src = tmp_path / "in.png"
    save_png(src, synth_image(16, 16))
    with pytest.raises(SystemExit) as e:
        main(["correct", str(src), "-o", str(tmp_path / "o.png"), "--strength", "2", *model])
    assert e.value.code == 2
    assert "strength" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["correct", str(src), *model])
    assert e.value.code == 2
    assert not (tmp_path / "o.png").exists()


def test_unknown_model_one_line(tmp_path, capsys):
    src = tmp_path / "in.png"
    save_png(src, synth_image(16, 16))
    assert main(["correct", str(src), "-o", str(tmp_path / "o.png"), "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "no-such-model" in err and "Traceback" not in err


def test_output_conflicts_are_usage_errors(tmp_path, img_dir, model, capsys):
    """Outputs that cannot be what the user meant are refused before anything runs, exit 2."""
    taken = tmp_path / "taken.png"
    save_png(taken, synth_image(8, 8))
    before = {p.name: sha(p) for p in img_dir.iterdir()}
    cases = [["correct", str(img_dir / "a.png"), str(img_dir / "c.png"), "-o", str(taken), *model],
             ["correct", str(img_dir / "a.png"), "-o", str(img_dir) + "/", *model],  # would replace the input
             ["generate", "-n", "1", "-o", str(taken)]]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("pixmend: error:"), err
    assert {p.name: sha(p) for p in img_dir.iterdir()} == before


def test_missing_input_is_an_error(tmp_path, model, capsys):
    assert main(["correct", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png"), *model]) == 1
    err = capsys.readouterr().err
    assert "nope.png" in err and "Traceback" not in err


def test_batch_goes_on_past_missing_paths(tmp_path, img_dir, model, capsys):
    """A mistyped path or an empty folder among the inputs is named and skipped; the rest are still done."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    args = [str(img_dir / "a.png"), str(tmp_path / "nope.png"), str(empty), str(img_dir / "c.png")]
    assert main(["correct", *args, "-o", str(out), *model]) == 1
    lines = err_lines(capsys.readouterr().err)
    assert len(lines) == 2 and "nope.png: no such file" in lines[0] and "empty: no image files" in lines[1]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert main(["inspect", str(tmp_path / "nope.png"), str(img_dir / "a.png"), *model]) == 1
    captured = capsys.readouterr()
    assert "a.png" in captured.out and len(err_lines(captured.err)) == 1


def test_watermark_then_verify(tmp_path, model, capsys):
    src = tmp_path / "big.png"
    save_png(src, synth_image(256, 256, seed=8))
    dst = tmp_path / "marked.png"
    assert main(["correct", str(src), "-o", str(dst), "--watermark", "pixmend-test", *model]) == 0
    capsys.readouterr()
    assert main(["verify", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "watermark: pixmend-test" in out
    assert main(["verify", str(src)]) == 0
    assert "no pixmend watermark" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ inspect
def test_inspect_json(img_dir, model, capsys):
    assert main(["inspect", str(img_dir), "--json", *model]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 3
    for ln in lines:
        info = json.loads(ln)
        assert "cast_delta_b" in info and "image" in info and "sharpening_amount" in info
    assert main(["inspect", str(img_dir / "a.png"), *model]) == 0
    assert "cast_delta_b" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- train and eval
def test_train_then_eval(photo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "correct", "--data", str(photo_dir), "--model", "pixel-transformer", "--steps", "3",
                 "--out", str(out), "--device", "cpu", "--no-progress", "--batch-size", "8",
                 "--set", "model_dim=16", "--set", "num_layers=1", "--set", "dim_feedforward=32",
                 "--set", "num_pixels=16", "--set", "variants_per_image=1", "--set", "val_batches=1"])
    assert code == 0
    assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    card = json.loads((out / "model.json").read_text())
    assert card["config"]["model_dim"] == 16 and card["total_steps"] == 3
    capsys.readouterr()
    assert main(["eval", "correct", "--data", str(photo_dir), "--model", str(out / "model.safetensors"),
                 "--device", "cpu", "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    res = json.loads(last)
    assert res["images"] == 3 and np.isfinite(res["psnr"]) and "ciede2000" in res


def test_train_unknown_model_is_usage_error(photo_dir, tmp_path, capsys):
    assert main(["train", "correct", "--data", str(photo_dir), "--model", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_train_rejects_unknown_and_mistyped_settings(photo_dir, tmp_path, capsys):
    """A misspelt key would otherwise train with the default; both are one-line usage errors before any output."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nsteps = 2\n[model]\nmodel_dimm = 16\n")
    out = tmp_path / "r"
    base = ["train", "correct", "--data", str(photo_dir), "--out", str(out), "--device", "cpu", "--no-progress"]
    for extra, words in [(["--set", "warmup_stepz=3"], ["warmup_stepz", "did you mean 'warmup_steps'"]),
                         (["--set", "batch_size=abc"], ["batch_size", "a number", "abc"]),
                         (["--config", str(cfg)], ["model_dimm", "model_dim"]),
                         (["--set", "steps"], ["key=value"])]:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert all(w in err for w in words), err
    assert not out.exists()


def test_eval_with_gl_model(photo_dir, tiny_gl_weights, capsys):
    assert main(["eval", "correct", "--data", str(photo_dir), "--model", str(tiny_gl_weights), "--device", "cpu",
                 "--json", "--limit", "2"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["images"] == 2 and {"psnr", "ssim", "ciede2000", "psnr_input"} <= set(res)
