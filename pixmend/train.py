"""One trainer for every task: config, AdamW + Noam schedule, validation, best checkpoint, TensorBoard,
resumable checkpoints (safetensors + JSON, never pickle) and the exported model with its card.

A task module supplies a ``TrainTask`` (datasets, loss, preview image); everything else lives here so that
correct, upscale, inpaint and generate train the same way.

Run directory (``--out``):
    model.safetensors / model.json   best model by validation loss, with its model card
    last.safetensors  / last.json    full training state for ``--resume`` (model, optimiser, step, RNG, data position)
    tb/                              TensorBoard event files
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .errors import PixmendError, UsageError

# Training keys every task understands. The seed's CONFIG keys (upper case in the seed) are accepted in any case.
TRAIN_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "steps": 0,  # 0: run num_epochs epochs
    "num_epochs": 50,
    "batch_size": 256,
    "peak_learning_rate": 1e-4,
    "weight_decay": 0.01,
    "warmup_steps": 4000,
    "val_split": 0.1,
    "val_every": 500,  # steps between validations (and at every epoch end)
    "val_batches": 8,
    "log_every": 10,
    "checkpoint_every": 200,
    "grad_clip": 1.0,
    "num_workers": 0,
    "checkpoint_dir": "",  # seed key: where last.safetensors/json go (default: the run directory, --out)
    "lr_schedule": "noam",  # noam | constant (warm-up, then flat: the inpainting seed) | step (lr_steps) | cosine
    "min_learning_rate": 0.0,  # for "cosine": the rate reached at the last step
    "lr_steps": [],  # for "step": [[until_step, lr], ...] — e.g. the SR seed's piecewise-constant schedule
    "tensorboard_log_dir": "tb",
    "reference_image_path": "",  # seed key: an image corrected and logged to TensorBoard each epoch
    "ref_img_inference_batch_size": 128,
    "precision": "auto",  # auto: bf16 autocast on GPUs that have it (else fp16 + loss scaling), fp32 on CPU
}


class TrainTask(Protocol):
    name: str

    def defaults(self, architecture: str) -> dict: ...

    def datasets(self, cfg: dict, data: Path) -> tuple[Dataset, Dataset]: ...

    def loss(self, model: torch.nn.Module, batch, cfg: dict) -> tuple[torch.Tensor, dict]: ...

    def preview(self, model: torch.nn.Module, cfg: dict, val_ds: Dataset) -> np.ndarray | None: ...


def load_config_file(path: str | Path | None) -> dict:
    if not path:
        return {}
    path = Path(path)
    if not path.exists():
        raise PixmendError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise PixmendError(f"{path}: YAML configs need PyYAML (pip install pyyaml); TOML works without") from None
            data = yaml.safe_load(text) or {}
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
    except PixmendError:
        raise
    except Exception as e:
        raise PixmendError(f"{path}: cannot parse config ({e})") from None
    return normalise(data)


def normalise(cfg: dict) -> dict:
    """Flatten one level of tables ([train], [model]) and lower-case keys (the seed wrote NUM_EPOCHS)."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update({kk.lower(): vv for kk, vv in v.items()})
        else:
            out[k.lower()] = v
    return out


def parse_overrides(pairs: list[str]) -> dict:
    """``--set key=value`` overrides; values parsed as JSON when possible (numbers, booleans), else strings."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise UsageError(f"--set expects key=value, got '{p}'")
        k, v = p.split("=", 1)
        try:
            out[k.strip().lower()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip().lower()] = v
    return out


def check_settings(given: dict, known: dict, prefixes: tuple = ()) -> None:
    """Reject a setting (from a config file or ``--set``) that no part of training reads — a misspelt key would
    otherwise train silently with the default — and a value of the wrong kind (``batch_size = "abc"``), each
    as a one-line usage error before anything is written."""
    import difflib

    unknown = [k for k in given if k not in known and not k.startswith(prefixes)]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, list(known), n=1)
            hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise UsageError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(hints)}")
    for k, v in given.items():
        d = known.get(k)
        if d is None:
            continue
        if isinstance(d, bool):
            ok = isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in ("true", "false"))
            kind = "true or false"
        elif isinstance(d, (int, float)):
            ok, kind = isinstance(v, (int, float)) and not isinstance(v, bool), "a number"
        elif isinstance(d, str):
            ok, kind = isinstance(v, str), "text"
        elif isinstance(d, (list, tuple)):
            ok, kind = isinstance(v, (list, tuple)), "a list like [1, 2]"
        else:
            continue
        if not ok:
            raise UsageError(f"setting {k} must be {kind}, not {v!r}")


def noam_lr(step: int, peak: float, warmup: int) -> float:
    """Vaswani et al. (2017): linear warm-up, then decay ∝ 1/√step; scaled so the peak (at ``warmup``) is ``peak``."""
    step = max(step, 1)
    warmup = max(warmup, 1)
    return peak * min(step / warmup, math.sqrt(warmup / step))


def autocast_dtype(precision: str, dev: torch.device):
    """The autocast dtype for ``precision`` (auto | fp32 | bf16 | fp16) on ``dev``; None = full precision."""
    precision = str(precision).lower()
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise PixmendError(f"precision must be auto, fp32, bf16 or fp16, not '{precision}'")
    if precision == "fp32":
        return None
    if dev.type == "cuda":
        if precision == "fp16" or not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if precision == "auto":  # CPUs and MPS: full precision unless asked
        return None
    return torch.bfloat16 if dev.type == "cpu" else {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


SCHEDULE_KEYS = ("steps", "lr_schedule", "peak_learning_rate", "warmup_steps", "min_learning_rate", "lr_steps")


def schedule_lr(step: int, cfg: dict) -> float:
    """Learning rate at ``step`` (1-based) for the configured ``lr_schedule``."""
    kind = str(cfg.get("lr_schedule", "noam")).lower()
    peak, warmup = float(cfg["peak_learning_rate"]), int(cfg["warmup_steps"])
    if kind == "noam":
        return noam_lr(step, peak, warmup)
    if kind == "constant":
        return peak * min(1.0, max(step, 1) / max(warmup, 1))
    if kind == "step":
        table = sorted((int(a), float(b)) for a, b in cfg.get("lr_steps") or [])
        if not table:
            raise PixmendError("lr_schedule = 'step' needs lr_steps = [[until_step, lr], ...]")
        for until, lr in table:
            if step <= until:
                return lr
        return table[-1][1]
    if kind == "cosine":  # linear warm-up, then half a cosine from the peak down to min_learning_rate at `steps`
        total = int(cfg.get("steps") or 0)
        try:
            low = float(cfg.get("min_learning_rate", 0.0))
        except (TypeError, ValueError):
            raise PixmendError(f"min_learning_rate must be a number, not {cfg.get('min_learning_rate')!r}") from None
        if total <= warmup:
            raise PixmendError(f"lr_schedule = 'cosine' needs steps ({total}) > warmup_steps ({warmup})")
        if not 0.0 <= low <= peak:
            raise PixmendError(f"min_learning_rate ({low}) must lie between 0 and peak_learning_rate ({peak})")
        if step < warmup:
            return peak * max(step, 1) / max(warmup, 1)
        t = min(1.0, (step - warmup) / max(total - warmup, 1))
        return low + 0.5 * (peak - low) * (1.0 + math.cos(math.pi * t))
    raise PixmendError(f"lr_schedule must be noam, constant, step or cosine, not '{kind}'")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PixmendError("--device cuda: no CUDA GPU is available")
    return torch.device(name)


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads (CPU)"


# --------------------------------------------------------------------------------- safetensors checkpoints
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_weights(path: Path, model: torch.nn.Module, card: dict | None = None) -> None:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    _atomic_write_bytes(path, save(state))
    if card is not None:
        _atomic_write_bytes(path.with_suffix(".json"), json.dumps(card, indent=2).encode())


def save_checkpoint(path: Path, model, opt, meta: dict) -> None:
    """One safetensors file holds the model and optimiser tensors, the RNG state and — in its metadata — the
    JSON of everything else (step, data position, optimiser settings), so a checkpoint is a single atomic
    write: a run killed at any moment (even SIGKILL) leaves the previous checkpoint or the new one, never a mix.
    ``last.json`` beside it is a readable copy of the metadata."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    sd = opt.state_dict()
    opt_meta = {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        opt_meta["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                opt_meta["state"][str(pid)][k] = v
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta_json = json.dumps({**meta, "optimizer": opt_meta})
    _atomic_write_bytes(path, save(tensors, metadata={"pixmend_checkpoint": meta_json}))
    _atomic_write_bytes(path.with_suffix(".json"), json.dumps(json.loads(meta_json), indent=1).encode())


def checkpoint_model_state(tensors: dict) -> dict:
    """The model's state dict inside a checkpoint's tensors (stored under ``model.`` beside ``opt.`` / ``rng.``)."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def load_checkpoint(path: Path, model, opt) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        stored = (f.metadata() or {}).get("pixmend_checkpoint")
    # checkpoints of older versions kept the metadata only in the JSON file
    meta = json.loads(stored) if stored else json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path))
    unwrap(model).load_state_dict(checkpoint_model_state(tensors))
    opt_meta = meta.pop("optimizer")
    state: dict = {}
    for pid, st in opt_meta["state"].items():
        state[int(pid)] = dict(st)
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return meta


def load_init_weights(model: torch.nn.Module, init: str, task: str) -> dict:
    """Copy every tensor of ``init`` (registry name, weights path, or a run's ``last.safetensors`` checkpoint —
    its ``model.`` tensors) whose name and shape match ``model``'s. Returns what was loaded, for the model card."""
    from safetensors.torch import load_file

    from .models.registry import resolve

    path, _card = resolve(init, task)
    if path is None:
        raise PixmendError(f"--init {init}: no weights to start from")
    state = load_file(str(path))
    own = model.state_dict()
    if not any(k in own for k in state) and any(k.startswith("model.") for k in state):  # a training checkpoint
        state = checkpoint_model_state(state)
    match = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not match:
        raise PixmendError(f"--init {init}: no tensor matches this architecture")
    model.load_state_dict(match, strict=False)
    print(f"initialised {len(match)}/{len(own)} tensors from {path}", file=sys.stderr)
    return {"weights": str(path), "tensors": len(match), "of": len(own)}


def unwrap(model):
    return model.module if hasattr(model, "module") else model


# ----------------------------------------------------------------------------------------------- trainer
@dataclass
class TrainResult:
    out: Path
    steps: int
    best_val_loss: float
    history: list = field(default_factory=list)  # (step, train loss)


class _EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch that can start mid-epoch, so a resumed run sees the same batches."""

    def __init__(self, n: int, seed: int, epoch: int, start: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.epoch, self.start, self.rank, self.world = n, seed, epoch, start, rank, world

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        per_rank = self.n // self.world
        mine = perm[self.rank * per_rank:(self.rank + 1) * per_rank]
        return mine[self.start:]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self):
        return len(self._indices())


def train(task: TrainTask, architecture: str, data: Path, out: Path, cfg_file: str | None = None,
          overrides: dict | None = None, resume: bool = False, device: str = "auto",
          progress: bool = True, on_step: Callable[[int, float], None] | None = None,
          init: str | None = None) -> TrainResult:
    from .models.registry import build_model
    from .distributed import DistContext

    dist = DistContext.from_env(device)
    known = {**TRAIN_DEFAULTS, **task.defaults(architecture)}
    given = {**load_config_file(cfg_file), **(overrides or {})}
    check_settings(given, known, tuple(getattr(task, "config_prefixes", ())))
    cfg = {**known, **given}
    data, out = Path(data), Path(out)
    if not data.exists():
        raise PixmendError(f"{data}: training data not found")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(cfg["seed"]))
    dev = dist.device

    train_ds, val_ds = task.datasets(cfg, data)
    model = build_model(architecture, cfg)
    init_note = load_init_weights(model, init, task.name) if init and not resume else None
    model = model.to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(cfg["weight_decay"])},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=float(cfg["peak_learning_rate"]), betas=tuple(cfg.get("betas", (0.9, 0.999))))
    batch = int(cfg["batch_size"])
    per_rank_batch = max(1, batch // dist.world)
    steps_per_epoch = max(1, len(train_ds) // dist.world // per_rank_batch)
    total = int(cfg["steps"]) or int(cfg["num_epochs"]) * steps_per_epoch
    cfg["steps"] = total  # epoch-based runs too: the cosine schedule ends at the run's last step
    schedule_lr(1, cfg)  # a bad schedule setting fails now, before a checkpoint or log is written

    amp_dtype = autocast_dtype(cfg.get("precision", "auto"), dev)
    scaler = torch.amp.GradScaler(dev.type) if amp_dtype == torch.float16 else None

    def forward_loss(b):
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss, metrics = task.loss(model, _to(b, dev), cfg)
        return loss.float(), metrics

    step, epoch, pos, best, elapsed = 0, 0, 0, float("inf"), 0.0
    history: list = []
    schedule_changes: list = []  # resumed with other schedule settings: recorded in the checkpoint and the card
    ckpt_dir = Path(cfg["checkpoint_dir"]) if cfg.get("checkpoint_dir") else out
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / "last.safetensors"
    if resume:
        if ckpt.exists():
            meta = load_checkpoint(ckpt, model, opt)
            step, epoch, pos = meta["step"], meta["epoch"], meta["batch_in_epoch"]
            best, elapsed, history = meta["best_val_loss"], meta["elapsed_s"], meta.get("history", [])
            schedule_changes = list(meta.get("schedule_changes", []))
            if dist.is_main:
                print(f"resuming from {ckpt} at step {step}", file=sys.stderr)
                before = meta.get("config") or {}
                changed = [f"{k} {before[k]} → {cfg.get(k)}" for k in SCHEDULE_KEYS
                           if k in before and before[k] != cfg.get(k)]
                if changed:  # legal (e.g. a longer run), but the learning-rate curve bends here: say so
                    print(f"note: the learning-rate schedule changes at step {step}: {', '.join(changed)}",
                          file=sys.stderr)
                    schedule_changes.append({"at_step": step, "changed": changed})
        elif dist.is_main:
            print(f"--resume: no checkpoint in {out}, starting fresh", file=sys.stderr)
    model = dist.wrap(model)

    writer = None
    if dist.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / (cfg.get("tensorboard_log_dir") or "tb")))
        print(f"training {architecture} for {task.name}: {n_params / 1e6:.2f}M parameters, {total} steps, "
              f"batch {per_rank_batch}×{dist.world} = {per_rank_batch * dist.world} on {dist.describe()}",
              file=sys.stderr)

    card_base = {
        "name": out.name, "architecture": architecture, "task": task.name,
        "config": {k: v for k, v in cfg.items() if k not in TRAIN_DEFAULTS},
        "train_config": {k: v for k, v in cfg.items() if k in TRAIN_DEFAULTS},
        "data": {"path": str(data), "source_images": getattr(train_ds, "num_sources", None),
                 **getattr(task, "card_data", {})},
        "parameters": n_params, "hardware": hardware_description(dev), "world_size": dist.world,
        "torch": torch.__version__,
    }
    if resume and (out / "model.json").exists():  # keep what the interrupted run's card knew
        init_note = json.loads((out / "model.json").read_text()).get("initialised_from", init_note)
    if init_note:
        card_base["initialised_from"] = init_note
    if schedule_changes:
        card_base["schedule_changes"] = schedule_changes

    def meta_now() -> dict:
        return {"step": step, "epoch": epoch, "batch_in_epoch": pos, "best_val_loss": best,
                "elapsed_s": elapsed, "history": history[-2000:], "architecture": architecture, "config": cfg,
                "schedule_changes": schedule_changes}

    def validate() -> float:
        model.eval()
        losses: dict[str, list] = {}
        loader = DataLoader(val_ds, batch_size=per_rank_batch, shuffle=False, num_workers=0,
                            generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            for i, b in enumerate(loader):
                if i >= int(cfg["val_batches"]):
                    break
                loss, metrics = forward_loss(b)
                for k, v in {"loss": float(loss), **metrics}.items():
                    losses.setdefault(k, []).append(float(v))
        model.train()
        means = {k: float(np.mean(v)) for k, v in losses.items()}
        if writer:
            for k, v in means.items():
                writer.add_scalar(f"val/{k}", v, step)
        return means.get("loss", float("inf"))

    def checkpoint() -> None:
        if dist.is_main:
            save_checkpoint(ckpt, model, opt, meta_now())

    stop = {"now": False}

    def on_term(signum, frame):  # SIGTERM: finish the step, checkpoint, exit cleanly
        stop["now"] = True

    old_term = signal.signal(signal.SIGTERM, on_term) if dist.is_main or True else None
    bar = None
    if progress and dist.is_main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {task.name}", unit="step", dynamic_ncols=True)
    model.train()
    t_start = time.time() - elapsed
    try:
        while step < total and not stop["now"]:
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch)
            sampler = _EpochSampler(len(train_ds), int(cfg["seed"]), epoch, pos * per_rank_batch,
                                    dist.rank, dist.world)
            # a private generator: creating the iterator must not consume the global RNG (dropout), so a
            # resumed run draws exactly the same random numbers as an uninterrupted one
            loader = DataLoader(train_ds, batch_size=per_rank_batch, sampler=sampler, drop_last=True,
                                num_workers=int(cfg["num_workers"]),
                                generator=torch.Generator().manual_seed(int(cfg["seed"]) * 7919 + epoch))
            for b in loader:
                lr = schedule_lr(step + 1, cfg)
                for g in opt.param_groups:
                    g["lr"] = lr
                loss, metrics = forward_loss(b)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:  # fp16: scale the loss so small gradients do not underflow
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                else:
                    loss.backward()
                if cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                step += 1
                pos += 1
                lv = loss.item()
                if not math.isfinite(lv):
                    raise PixmendError(f"training diverged at step {step} (loss {lv}); lower peak_learning_rate")
                history.append([step, round(lv, 6)])
                elapsed = time.time() - t_start
                if on_step:
                    on_step(step, lv)
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=f"{lv:.4f}", lr=f"{lr:.2e}")
                if writer and step % int(cfg["log_every"]) == 0:
                    writer.add_scalar("train/loss", lv, step)
                    writer.add_scalar("train/lr", lr, step)
                    for k, v in metrics.items():
                        writer.add_scalar(f"train/{k}", float(v), step)
                end_of_epoch = pos >= steps_per_epoch
                if step % int(cfg["val_every"]) == 0 or end_of_epoch or step == total:
                    v = validate()
                    improved = v < best
                    if improved and dist.is_main:
                        best = v
                        save_weights(out / "model.safetensors", model,
                                     {**card_base, "steps": step, "best_val_loss": best, "wall_time_s": round(elapsed, 1)})
                    if bar is None and dist.is_main:  # --no-progress (background runs): one line per validation
                        print(f"step {step}/{total}  train loss {lv:.5f}  val loss {v:.5f}"
                              f"{' (best, saved)' if improved else f'  (best {best:.5f})'}  lr {lr:.2e}  "
                              f"{elapsed / 60:.1f} min", file=sys.stderr, flush=True)
                # the preview (the seed's reference image when reference_image_path is set) at every validation,
                # not only at epoch ends: an epoch of the seed's PixelDataset can be longer than a whole run
                validated = step % int(cfg["val_every"]) == 0 or end_of_epoch or step == total
                if validated and writer:
                    img = task.preview(unwrap(model), cfg, val_ds)
                    if img is not None:
                        writer.add_image("reference", np.clip(img, 0, 1), step, dataformats="HWC")
                    model.train()
                if step % int(cfg["checkpoint_every"]) == 0 or step == total or stop["now"]:
                    checkpoint()
                if step >= total or stop["now"] or end_of_epoch:
                    break
            if pos >= steps_per_epoch:
                epoch, pos = epoch + 1, 0
    except KeyboardInterrupt:
        checkpoint()
        if dist.is_main:
            print(f"\ninterrupted at step {step}; checkpoint saved, continue with --resume", file=sys.stderr)
        raise
    finally:
        if bar:
            bar.close()
        if writer:
            writer.close()
        signal.signal(signal.SIGTERM, old_term)
    checkpoint()
    if dist.is_main and not (out / "model.safetensors").exists():  # no validation data: keep the last weights
        save_weights(out / "model.safetensors", model, {**card_base, "steps": step, "best_val_loss": None,
                                                        "wall_time_s": round(elapsed, 1)})
    in_sync = dist.replicas_identical(model)
    if dist.is_main:  # the card records the whole run, even though the weights are the best validation step
        card_path = out / "model.json"
        card = json.loads(card_path.read_text())
        card.update({"total_steps": step, "total_wall_time_s": round(elapsed, 1),
                     "effective_batch_size": per_rank_batch * dist.world})
        if in_sync is not None:
            card["ddp_replicas_identical"] = in_sync
        _atomic_write_bytes(card_path, json.dumps(card, indent=2).encode())
    dist.close()
    return TrainResult(out=out, steps=step, best_val_loss=best, history=history)


def _to(batch, dev):
    if torch.is_tensor(batch):
        return batch.to(dev, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, dev) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, dev) for k, v in batch.items()}
    return batch
