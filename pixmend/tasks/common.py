"""Glue every task shares: running a model over a batch of files with the CLI's rules.

Rules (GUIDE §2): one bad file never stops a batch — it is named on one stderr line and the exit status
becomes 1; inputs are never modified; outputs are written atomically; existing outputs are kept unless
``overwrite``; Ctrl-C / SIGTERM stop between files and leave no half-written output.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import PixmendError

_MODEL_CACHE: dict = {}


def set_threads() -> None:
    """Use the cores we have (PyTorch's default can oversubscribe small machines); ``OMP_NUM_THREADS`` wins,
    so two trainings can share a machine one core each."""
    import os

    env = os.environ.get("OMP_NUM_THREADS", "")
    n = int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def dihedral_mean(fn: Callable[..., torch.Tensor], *xs: torch.Tensor) -> torch.Tensor:
    """Geometric self-ensemble (Lim et al., EDSR+ 2017): ``fn`` applied to the 8 rotations / flips of its
    (..., H, W) inputs — all turned alike — each output turned back, and the 8 averaged. 8× the cost of ``fn``."""
    acc = None
    for k in range(4):
        for flip in (False, True):
            y = turned(fn, k, flip, *xs)
            acc = y if acc is None else acc + y
    return acc / 8


def turned(fn: Callable[..., torch.Tensor], k: int, flip: bool, *xs: torch.Tensor) -> torch.Tensor:
    """``fn`` applied to its (..., H, W) inputs rotated by ``k`` quarter turns (then mirrored when ``flip``),
    its output turned back: one member of the self-ensemble."""
    ts = [torch.rot90(x, k, dims=(-2, -1)) for x in xs]
    y = fn(*[t.flip(-1) for t in ts] if flip else ts)
    return torch.rot90(y.flip(-1) if flip else y, -k, dims=(-2, -1))


def config_number(cfg: dict, key: str, default: float, low: float, high: float, note: str = "") -> float:
    """``cfg[key]`` as a float checked to lie in [low, high] (a bool is not a number), or a one-line error."""
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
        raise PixmendError(f"{key} must be a number from {low:g} to {high:g}{note}, not {v!r}")
    return float(v)


def config_range(cfg: dict, key: str, default, low: float, high: float, unit: str = ""):
    """``cfg[key]`` as a (lo, hi) pair of floats with low <= lo <= hi <= high (None stays None), or a one-line
    error."""
    v = cfg.get(key, default)
    if v is None:
        return None
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            or not low <= v[0] <= v[1] <= high):
        raise PixmendError(f"{key} must be [low, high]{unit} with {low:g} <= low <= high <= {high:g}, not {v!r}")
    return float(v[0]), float(v[1])


def config_flag(cfg: dict, key: str, default: bool = False) -> bool:
    """``cfg[key]`` as a bool (true/false in TOML or ``--set``), or a one-line error."""
    v = cfg.get(key, default)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        v = v.strip().lower() == "true"  # --set KEY=True arrives as a string (it is not JSON)
    if not isinstance(v, bool):
        raise PixmendError(f"{key} must be true or false, not {v!r}")
    return v


def get_model(name: str | None, task: str, device: str = "cpu"):
    """Load a model once per process and reuse it (the web app and batches call this repeatedly)."""
    from ..models.registry import create_model

    key = (name, task, str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = create_model(name, task=task, device=device)
    return _MODEL_CACHE[key]


def to_tensor(rgb: np.ndarray, device="cpu") -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).unsqueeze(0).float().to(device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t[0].clamp(0, 1).permute(1, 2, 0).contiguous().cpu().numpy().astype(np.float32)


def error_line(path, err: BaseException) -> str:
    msg = str(err)
    if isinstance(err, PixmendError):
        return msg if str(path) in msg else f"{path}: {msg}"
    return f"{path}: failed ({err.__class__.__name__}: {msg})"


def collect_inputs(inputs: list[str]) -> tuple[list[Path], int]:
    """The input files, and how many paths were bad (missing, empty folders): each named on one stderr line and
    skipped, so a batch goes on with the others and exits 1."""
    from .. import io

    files, problems = io.collect_inputs(inputs)
    for err in problems:
        print(f"pixmend: {err}", file=sys.stderr)
    return files, len(problems)


def run_batch(inputs: list[str], out: str, process: Callable, overwrite: bool = False, desc: str = "",
              out_name: Callable[[Path], str] | None = None, max_pixels: int | None = None) -> int:
    """Read each input, ``process(loaded) -> (rgb, alpha)``, write to the planned output. Returns the exit status."""
    from .. import io

    files, failures = collect_inputs(inputs)
    if not files:
        return 1
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    plan = io.plan_outputs(files, out, single_file=single)
    interrupted = {"flag": False}

    def on_term(signum, frame):
        interrupted["flag"] = True

    old = signal.signal(signal.SIGTERM, on_term)
    bar = None
    if len(plan) > 1 and sys.stderr.isatty():  # a log or a pipe gets the error lines alone, no bar fragments
        from tqdm import tqdm

        bar = tqdm(total=len(plan), desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)

    def say(msg: str) -> None:  # through the bar when there is one, so each message gets a line of its own
        if bar is not None:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    try:
        for src, dst in plan:
            if interrupted["flag"]:
                say("pixmend: stopped by SIGTERM; finished outputs are complete, the rest were not started")
                return 130
            try:
                if dst.exists() and not overwrite:
                    raise PixmendError(f"{dst}: already exists (use --overwrite to replace it)")
                kw = {"max_pixels": max_pixels} if max_pixels else {}
                loaded = io.read_image(src, **kw)
                for note in loaded.notes:
                    say(f"{src}: note: {note}")
                rgb, alpha = process(loaded)
                io.write_image(dst, rgb, alpha, like=loaded, overwrite=overwrite)
            except PixmendError as e:
                failures += 1
                say(f"pixmend: {error_line(src, e)}")
            except (RuntimeError, ValueError, MemoryError, OSError) as e:
                failures += 1
                say(f"pixmend: {error_line(src, e)}")
            if bar:
                bar.update(1)
    finally:
        if bar:
            bar.close()
        signal.signal(signal.SIGTERM, old)
    return 1 if failures else 0


def batch_psnr(pred, target) -> float:
    """PSNR (dB) of a batch in [0, 1] against its target, for training logs (pred is clamped first)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        return float(-10 * torch.log10(F.mse_loss(pred.clamp(0, 1), target).clamp_min(1e-10)))
