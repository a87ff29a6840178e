"""Command-line interface: argument parsing only; the work happens in ``pixmend.tasks``.

Exit status: 0 all done; 1 some inputs failed (each named on one stderr line, the rest still processed);
2 usage error. Heavy modules (torch, the app, the trainer) are imported only by the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import PixmendError, UsageError

TASKS = ("correct", "upscale", "inpaint", "generate")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.print_usage(sys.stderr)
        print(f"pixmend: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _strength(v: str) -> float:
    f = float(v)
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError(f"strength must be between 0 and 1, not {v}")
    return f


def _positive_int(v: str) -> int:
    i = int(v)
    if i < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {v}")
    return i


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pixmend", description="Mend images with small Transformer models.")
    p.add_argument("--version", action="version", version=f"pixmend {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add_device(sp):
        sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to run (default: auto = CUDA, then Apple MPS, then CPU)")

    c = sub.add_parser("correct", help="remove the GPT-image colour cast and over-sharpening",
                       description="Correct images. One input file: OUT is a file; otherwise OUT is a folder and "
                                   "each output keeps its input's name and format.")
    c.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    c.add_argument("-o", "--output", required=True, metavar="OUT")
    c.add_argument("--model", default=None, help="registry name (gl-transformer [default], pixel-transformer) "
                                                 "or a .safetensors path written by `pixmend train`")
    c.add_argument("--strength", type=_strength, default=1.0, help="0 = original, 1 = fully corrected (default 1)")
    c.add_argument("--stride", type=_positive_int, default=None,
                   help="pixel-transformer only: window stride (default num_pixels/2; smaller = smoother, slower)")
    c.add_argument("--batch-size", type=_positive_int, default=128, help="pixel-transformer windows per batch")
    c.add_argument("--watermark", metavar="TEXT", default=None, help="embed TEXT as an invisible watermark")
    c.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    c.add_argument("--max-pixels", type=_positive_int, default=None, help="refuse larger images (default 100 MP)")
    add_device(c)

    i = sub.add_parser("inspect", help="show the cast and sharpening the corrector estimates")
    i.add_argument("inputs", nargs="+", metavar="IMAGE")
    i.add_argument("--model", default=None)
    i.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    add_device(i)

    v = sub.add_parser("verify", help="read an invisible pixmend watermark back")
    v.add_argument("inputs", nargs="+", metavar="IMAGE")

    t = sub.add_parser("train", help="train a model on your own data (also under torchrun)")
    t.add_argument("task", choices=TASKS)
    t.add_argument("--data", required=True, help="folder of clean photos, or inputs/ + outputs/ pairs")
    t.add_argument("--model", default=None, help="architecture to train (default: the task's default)")
    t.add_argument("--config", default=None, help="TOML (or YAML) file of training/model settings")
    t.add_argument("--steps", type=_positive_int, default=None, help="stop after N optimiser steps")
    t.add_argument("--batch-size", type=_positive_int, default=None)
    t.add_argument("--lr", type=float, default=None, help="peak learning rate")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    t.add_argument("--out", default=None, help="run directory (default runs/TASK-MODEL)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    t.add_argument("--no-progress", action="store_true")
    add_device(t)

    e = sub.add_parser("eval", help="measure a model (PSNR/SSIM/CIEDE2000, bits/dim, ...)")
    e.add_argument("task", choices=TASKS)
    e.add_argument("--data", required=True)
    e.add_argument("--model", default=None)
    e.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images")
    e.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    add_device(e)
    return p


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pixmend")
    except Exception:
        return "unknown"


# ------------------------------------------------------------------------------------------------ commands
def cmd_correct(a) -> int:
    from .tasks import common
    from .tasks.correct import correct_rgb
    from .train import pick_device

    common.set_threads()
    dev = pick_device(a.device)
    model, card = common.get_model(a.model, "correct", dev)
    if a.watermark is not None:
        from .watermark import check_text

        check_text(a.watermark)

    def process(img):
        out = correct_rgb(img.rgb, model, card, a.strength, a.stride, a.batch_size, dev)
        if a.watermark is not None:
            from .watermark import embed

            out = embed(out, a.watermark)
        return out, img.alpha

    return common.run_batch(a.inputs, a.output, process, a.overwrite, desc="correct", max_pixels=a.max_pixels)


def cmd_inspect(a) -> int:
    from . import io
    from .tasks import common
    from .tasks.correct import inspect_rgb
    from .train import pick_device

    common.set_threads()
    dev = pick_device(a.device)
    model, card = common.get_model(a.model, "correct", dev)
    status = 0
    for path in io.collect_inputs(a.inputs):
        try:
            info = {"image": str(path), **inspect_rgb(io.read_image(path).rgb, model, card, dev)}
        except PixmendError as err:
            print(f"pixmend: {common.error_line(path, err)}", file=sys.stderr)
            status = 1
            continue
        if a.json:
            print(json.dumps(info))
        else:
            print(f"{path}")
            for k, v in info.items():
                if k != "image":
                    print(f"  {k:<22} {v}")
    return status


def cmd_verify(a) -> int:
    from . import io
    from .tasks.common import error_line
    from .watermark import extract

    status = 0
    for path in io.collect_inputs(a.inputs):
        try:
            text = extract(io.read_image(path).rgb)
        except PixmendError as err:
            print(f"pixmend: {error_line(path, err)}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {'watermark: ' + text if text is not None else 'no pixmend watermark found'}")
    return status


def _task_module(task: str):
    import importlib

    try:
        return importlib.import_module(f"pixmend.tasks.{task}")
    except ModuleNotFoundError:
        raise PixmendError(f"task '{task}' is not available in this version") from None


def cmd_train(a) -> int:
    from .models.registry import DEFAULT_MODELS, list_models
    from .train import parse_overrides, train

    mod = _task_module(a.task)
    arch = a.model or DEFAULT_MODELS.get(a.task)
    if arch not in list_models(a.task):
        raise UsageError(f"unknown model '{arch}' for {a.task} (known: {', '.join(list_models(a.task))})")
    overrides = parse_overrides(a.set)
    for key, val in (("steps", a.steps), ("batch_size", a.batch_size), ("peak_learning_rate", a.lr), ("seed", a.seed)):
        if val is not None:
            overrides[key] = val
    out = Path(a.out or f"runs/{a.task}-{arch}")
    task = getattr(mod, f"{a.task.capitalize()}Task")()
    res = train(task, arch, Path(a.data), out, a.config, overrides, a.resume, a.device, progress=not a.no_progress)
    print(f"done: {res.steps} steps, best validation loss {res.best_val_loss:.5f}; model in {out / 'model.safetensors'}",
          file=sys.stderr)
    return 0


def cmd_eval(a) -> int:
    from .tasks import common
    from .train import pick_device

    common.set_threads()
    mod = _task_module(a.task)
    dev = pick_device(a.device)
    model, card = common.get_model(a.model, a.task, dev)
    res = mod.evaluate(model, card, Path(a.data), device=dev, limit=a.limit, progress=not a.json)
    if a.json:
        print(json.dumps({k: v for k, v in res.items() if k != "per_image"}))
    else:
        for k, v in res.items():
            if k != "per_image":
                print(f"{k:<18} {v:.4f}" if isinstance(v, float) else f"{k:<18} {v}")
    return 0


COMMANDS = {"correct": cmd_correct, "inspect": cmd_inspect, "verify": cmd_verify, "train": cmd_train,
            "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[a.command](a)
    except UsageError as err:
        print(f"pixmend: error: {err}", file=sys.stderr)
        return 2
    except PixmendError as err:
        print(f"pixmend: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pixmend: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
