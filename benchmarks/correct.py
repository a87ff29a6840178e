"""Benchmark the correctors against classical baselines and write docs/BENCHMARKS.md.

    python benchmarks/correct.py [--data ../shared/data/bench] [--update-cards]

Quality: Kodak24 and McMaster18, each image i degraded with ``gpt_degrade(seed=i, force="cast+sharpen")``
(the project's own GPT-style damage), and again with ``heldout_degrade`` — an independently written
degradation (colour-temperature white-balance shift, Pillow's UnsharpMask, JPEG) that the models never saw —
so we can tell generalisation from fitting our own generator. "Do no harm": each method on the clean
originals, PSNR of output vs input. Speed: wall time and peak memory of one image, in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixmend import baselines, degrade  # noqa: E402
from pixmend.io import read_image  # noqa: E402
from pixmend.metrics import ciede2000, psnr, ssim  # noqa: E402


def heldout_degrade(rgb: np.ndarray, seed: int) -> np.ndarray:
    """A GPT-like damage model written independently of degrade.py: warm white balance by a colour
    temperature ratio, a brightness/contrast tweak, Pillow's UnsharpMask (percent/threshold style), JPEG."""
    from PIL import Image, ImageEnhance, ImageFilter

    rng = np.random.default_rng(10_000 + seed)
    warmth = rng.uniform(0.12, 0.35)  # fraction of the way from neutral towards a ~3000 K tint
    tint = np.array([1.0, 0.86, 0.62])  # relative RGB of a warm light
    gains = 1.0 + warmth * (tint - 1.0)
    img = np.clip(rgb * gains + warmth * np.array([0.05, 0.02, 0.0]), 0, 1)
    pil = Image.fromarray(degrade.to_uint8(img))
    pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.95, 1.15))
    pil = ImageEnhance.Color(pil).enhance(rng.uniform(0.9, 1.25))
    pil = pil.filter(ImageFilter.UnsharpMask(radius=float(rng.uniform(1.0, 2.5)),
                                             percent=int(rng.uniform(60, 160)), threshold=int(rng.integers(0, 3))))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(rng.integers(85, 96)))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def methods(models: dict):
    from pixmend.tasks.correct import correct_rgb

    out = {
        "no correction": lambda bad, clean: bad,
        "gray-world": lambda bad, clean: baselines.gray_world(bad),
        "white-patch": lambda bad, clean: baselines.white_patch(bad),
    }
    for name, (model, card) in models.items():
        out[name] = (lambda m, c: (lambda bad, clean: correct_rgb(bad, m, c)))(model, card)
    out["oracle global affine"] = lambda bad, clean: baselines.oracle_affine(bad, clean)
    return out


def quality(sets: dict, models: dict, damage: str) -> dict:
    table = {}
    for set_name, files in sets.items():
        for mname, fn in methods(models).items():
            rows, secs = [], []
            for i, f in enumerate(files):
                clean = read_image(f).rgb
                if damage == "project":
                    bad, _ = degrade.gpt_degrade(clean, i, force="cast+sharpen")
                elif damage == "heldout":
                    bad = heldout_degrade(clean, i)
                else:  # clean: do-no-harm
                    bad = clean
                t = time.perf_counter()
                out = fn(bad, clean)
                secs.append(time.perf_counter() - t)
                if damage == "clean":
                    rows.append((psnr(out, clean), 0, 0))
                else:
                    rows.append((psnr(out, clean), ssim(out, clean), ciede2000(out, clean)))
            r = np.array(rows)
            table.setdefault(set_name, {})[mname] = {"psnr": float(np.mean(np.minimum(r[:, 0], 100))),
                                                     "ssim": float(np.mean(r[:, 1])),
                                                     "ciede2000": float(np.mean(r[:, 2])),
                                                     "s_per_image": float(np.mean(secs))}
            print(f"[{damage}] {set_name:<10} {mname:<22} PSNR {table[set_name][mname]['psnr']:.2f}", flush=True)
    return table


SEED_PT = "pixel-transformer@seed-config"

SPEED_SNIPPET = r"""
SEED_PT = "pixel-transformer@seed-config"
import sys, time, resource, json, numpy as np, torch
torch.set_num_threads(int(sys.argv[4]))
from pixmend.tasks.common import get_model
from pixmend.tasks.correct import correct_rgb
if sys.argv[1] == SEED_PT:  # the seed's own CONFIG (256 wide, 4 layers, 128-pixel windows): speed only
    from pixmend.models.registry import build_model
    m, card = build_model("pixel-transformer", {}).eval(), {"architecture": "pixel-transformer"}
else:
    m, card = get_model(sys.argv[1], "correct")
h, w = int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
img = np.clip(rng.normal(0.5, 0.2, (h, w, 3)), 0, 1).astype(np.float32)
correct_rgb(img[:256, :256], m, card)  # warm-up
times = []
for _ in range(int(sys.argv[5])):
    t = time.perf_counter(); correct_rgb(img, m, card); times.append(time.perf_counter() - t)
print(json.dumps({"seconds": min(times), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def speed(model: str, h: int, w: int, threads: int = 2, repeats: int = 3) -> dict:
    r = subprocess.run([sys.executable, "-c", SPEED_SNIPPET, model, str(h), str(w), str(threads), str(repeats)],
                       capture_output=True, text=True, check=True, cwd=ROOT)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["s_per_mp"] = res["seconds"] / (h * w / 1e6)
    return res


def command_time(image: Path, tmp: Path, repeats: int = 3) -> float:
    """Whole `pixmend correct IMG -o OUT` command, start-up included (best of ``repeats``)."""
    best = float("inf")
    for i in range(repeats):
        out = tmp / f"cmd_out_{i}.png"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pixmend", "correct", str(image), "-o", str(out), "--overwrite"],
                       check=True, capture_output=True, cwd=ROOT)
        best = min(best, time.perf_counter() - t)
    return best


def fmt_table(table: dict, cols: list[tuple[str, str, str]]) -> str:
    lines = []
    for set_name, rows in table.items():
        lines.append(f"\n**{set_name}**\n")
        lines.append("| method | " + " | ".join(c[1] for c in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for m, v in rows.items():
            lines.append(f"| {m} | " + " | ".join(format(v[c[0]], c[2]) for c in cols) + " |")
    return "\n".join(lines)


def write_section(md_path: Path, name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = md_path.read_text() if md_path.exists() else "# Benchmarks\n\nMeasured by the scripts in `benchmarks/`.\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    md_path.write_text(text)


def load_models(names: str, task: str) -> tuple[dict, list]:
    """{name: (model, card)} for a comma-separated list of registry names / weights paths, and the names that
    could not be loaded (no weights yet), each reported on stderr."""
    from pixmend.errors import PixmendError
    from pixmend.tasks.common import get_model

    models, missing = {}, []
    for name in [m for m in names.split(",") if m]:
        try:
            models[name] = get_model(name, task)
        except PixmendError as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            missing.append(name)
    return models, missing


def machine() -> str:
    from pixmend.train import hardware_description
    import torch

    return f"{hardware_description(torch.device('cpu'))}, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "bench"))
    ap.add_argument("--models", default="gl-transformer,pixel-transformer")
    ap.add_argument("--limit", type=int, default=0, help="images per set (0 = all)")
    ap.add_argument("--update-cards", action="store_true", help="store the figures in the shipped model cards")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true",
                    help="measure speed only and keep the quality tables of benchmarks/results/correct.json")
    ap.add_argument("--seed-config-speed", action="store_true",
                    help="also time the seed's full-size pixel-transformer configuration (untrained; minutes)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from pixmend.data import image_files
    from pixmend.tasks.common import get_model

    data = Path(a.data)
    sets = {"Kodak24": image_files(data / "kodak24"), "McMaster18": image_files(data / "mcmaster18")}
    if a.limit:
        sets = {k: v[: a.limit] for k, v in sets.items()}
    names = [m for m in a.models.split(",") if m]
    models = {n: get_model(n, "correct") for n in names}
    out_json = ROOT / "benchmarks" / "results" / "correct.json"
    if a.skip_quality:  # re-measure speed only (on an idle machine), keeping the stored quality tables
        results = json.loads(out_json.read_text())
        results.update(machine=machine(), date=time.strftime("%Y-%m-%d"))
    else:
        results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                   "project": quality(sets, models, "project"), "heldout": quality(sets, models, "heldout"),
                   "clean": quality(sets, models, "clean")}
    if a.skip_speed:
        results.pop("speed", None)
        results.pop("command_seconds_1024x1536", None)
    else:
        results["speed"] = {}
        for n in names + ([SEED_PT] if a.seed_config_speed else []):
            for h, w in ((1024, 1024), (1024, 1536)) if n != SEED_PT else ((1024, 1536),):
                reps = 3 if not n.startswith("pixel-transformer") else 1
                results["speed"][f"{n} {h}x{w}"] = speed(n, h, w, repeats=reps)
                print("speed", n, h, w, results["speed"][f"{n} {h}x{w}"], flush=True)
        import tempfile

        from PIL import Image

        with tempfile.TemporaryDirectory() as tmp:
            img = Path(tmp) / "in.png"
            clean = read_image(sets["Kodak24"][0]).rgb
            big = np.asarray(Image.fromarray(degrade.to_uint8(clean)).resize((1536, 1024)), dtype=np.float32) / 255
            bad, _ = degrade.gpt_degrade(big, 0, force="cast+sharpen")
            Image.fromarray(degrade.to_uint8(bad)).save(img)
            results["command_seconds_1024x1536"] = command_time(img, Path(tmp))
            print("command", results["command_seconds_1024x1536"], flush=True)

    out_json.parent.mkdir(exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2))

    q = [("psnr", "PSNR dB ↑", ".2f"), ("ssim", "SSIM ↑", ".4f"), ("ciede2000", "CIEDE2000 ↓", ".2f"),
         ("s_per_image", "s / image", ".3f")]
    body = [f"## Correction (`benchmarks/correct.py`, {results['date']})\n", f"Machine: {results['machine']}.\n",
            "### Project degradation (GPT-style cast + over-sharpening, image i uses seed i)",
            fmt_table(results["project"], q),
            "\n### Held-out degradation (written independently; never used in training)",
            fmt_table(results["heldout"], q),
            "\n### Do no harm: clean originals in, PSNR of output vs input",
            fmt_table(results["clean"], [("psnr", "PSNR dB ↑", ".2f")])]
    if "speed" in results:
        body.append("\n### Speed on this CPU (2 threads; one image, best of runs, model already loaded)\n")
        body.append("| model | image | seconds | s / MP | peak RSS MB |\n|---|---|---|---|---|")
        for k, v in results["speed"].items():
            n, size = k.rsplit(" ", 1)
            body.append(f"| {n} | {size} | {v['seconds']:.2f} | {v['s_per_mp']:.2f} | {v['peak_rss_mb']:.0f} |")
        if any(k.startswith(SEED_PT) for k in results["speed"]):
            body.append(f"\n`{SEED_PT}` is the seed project's own CONFIG (model_dim 256, 4 layers, feed-forward "
                        "1024, 128-pixel windows, stride 64), built untrained: its speed does not depend on the "
                        "weights. The shipped `pixel-transformer` is a smaller configuration trained here.")
            ref = results["speed"].get("gl-transformer 1024x1536", {}).get("seconds")
            seed_s = results["speed"][f"{SEED_PT} 1024x1536"]["seconds"]
            if ref:
                body.append(f"gl-transformer is **{seed_s / ref:.0f}×** faster than the seed's configuration on "
                            "the 1024×1536 image.")
        body.append(f"\nWhole command `pixmend correct IMG.png -o OUT.png` on a 1024×1536 PNG, start-up included: "
                    f"**{results['command_seconds_1024x1536']:.2f} s**.")
    write_section(ROOT / "docs" / "BENCHMARKS.md", "correct", "\n".join(body))

    if a.update_cards:
        for n in names:
            card_path = ROOT / "pixmend" / "weights" / f"{n}.json"
            if card_path.exists():
                card = json.loads(card_path.read_text())
                card["benchmarks"] = {
                    "date": results["date"], "machine": results["machine"],
                    **{f"{d}/{s}": {k: round(v, 4) for k, v in results[d][s][n].items()}
                       for d in ("project", "heldout", "clean") for s in results[d]},
                    **{k: v for k, v in results.get("speed", {}).items() if k.startswith(n + " ")},
                }
                card_path.write_text(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
