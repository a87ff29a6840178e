"""Benchmark the super-resolution models and write the 'upscale' section of docs/BENCHMARKS.md.

    python benchmarks/upscale.py [--data ../shared/data/bench] [--models NAME,...] [--update-cards]

(default models: window-sr-x2, window-sr-x4, window-sr-x2-bicubic, window-sr-x4-bicubic)

Quality: Set5 (the standard HR images with the LR images that ship with it, DATA/set5/{hr,x2,x4}) and
McMaster18 (LR made here by PIL bicubic, ``degrade.downsample``), PSNR and SSIM on the Y channel (BT.601
studio range, as SR papers) with ``border = scale`` pixels cropped. Rows: bicubic (measured — Keys a = −0.5,
the model's own base), published figures of SRCNN / FSRCNN / VDSR / SwinIR-light on Set5 (marked published,
not re-run), and our models with their parameter counts and speed (seconds per output megapixel on this CPU,
2 threads, 256×256 input, best of 3 — one run for the 8× slower self-ensemble rows — model already loaded).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from correct import load_models, machine, write_section  # noqa: E402  (the shared helpers of benchmarks/correct.py)

from pixmend.metrics import psnr_y, ssim_y  # noqa: E402

# Set5 PSNR-Y / SSIM-Y as published (SRCNN, FSRCNN, VDSR: the VDSR / FSRCNN papers' tables; SwinIR-light:
# Liang et al. 2021, Table 3). Parameters as usually quoted in lightweight-SR tables.
PUBLISHED = {
    2: {"bicubic": (None, 33.66, 0.9299), "SRCNN": (57_000, 36.66, 0.9542), "FSRCNN": (12_000, 37.00, 0.9558),
        "VDSR": (665_000, 37.53, 0.9587), "SwinIR-light": (878_000, 38.14, 0.9611)},
    4: {"bicubic": (None, 28.42, 0.8104), "SRCNN": (57_000, 30.48, 0.8628), "FSRCNN": (12_000, 30.72, 0.8660),
        "VDSR": (665_000, 31.35, 0.8838), "SwinIR-light": (897_000, 32.44, 0.8976)},
}
TARGETS = {2: 37.0, 4: 30.7}  # Set5 PSNR-Y the shipped models must reach


def load_sets(data: Path, scale: int, limit: int) -> dict:
    """{set name: [(lr, hr), ...]} as float RGB arrays."""
    from pixmend.tasks.upscale import eval_pairs, load_pair

    sets = {"Set5": eval_pairs(data / "set5", scale), "McMaster18": eval_pairs(data / "mcmaster18", scale)}
    return {k: [load_pair(h, lr, scale) for h, lr in (v[:limit] if limit else v)] for k, v in sets.items()}


def score(pairs, fn, scale: int) -> dict:
    rows, secs = [], []
    for lr, hr in pairs:
        t = time.perf_counter()
        out = fn(lr)
        secs.append(time.perf_counter() - t)
        rows.append((psnr_y(out, hr, scale), ssim_y(out, hr, scale)))
    r = np.array(rows)
    return {"psnr_y": float(r[:, 0].mean()), "ssim_y": float(r[:, 1].mean()), "s_per_image": float(np.mean(secs))}


def speed(model, scale: int, size: int = 256, repeats: int = 3, ensemble: bool = False) -> dict:
    from pixmend.tasks.upscale import upscale_rgb

    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(0.5, 0.2, (size, size, 3)), 0, 1).astype(np.float32)
    upscale_rgb(img[:64, :64], model)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        upscale_rgb(img, model, ensemble=ensemble)
        best = min(best, time.perf_counter() - t)
    out_mp = (size * scale) ** 2 / 1e6
    return {"input": f"{size}x{size}", "output": f"{size * scale}x{size * scale}", "seconds": best,
            "s_per_mp": best / out_mp}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "bench"))
    ap.add_argument("--models", default="window-sr-x2,window-sr-x4,window-sr-x2-bicubic,window-sr-x4-bicubic",
                    help="registry names or weights paths")
    ap.add_argument("--limit", type=int, default=0, help="images per set (0 = all)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--no-self-ensemble", action="store_true",
                    help="skip the rows of each model with the 8-fold self-ensemble (upscale --self-ensemble)")
    ap.add_argument("--update-cards", action="store_true", help="store the figures in the shipped model cards")
    ap.add_argument("--md", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "upscale.json"))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from pixmend.tasks.upscale import bicubic_upscale, model_scale, upscale_rgb

    data = Path(a.data)
    loaded, missing = load_models(a.models, "upscale")
    models = {name: (model, card, model_scale(model)) for name, (model, card) in loaded.items()}
    scales = sorted({s for *_, s in models.values()} | {2, 4})

    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "scales": {}, "missing": missing}
    for s in scales:
        sets = load_sets(data, s, a.limit)
        res: dict = {}
        for set_name, pairs in sets.items():
            res.setdefault(set_name, {})["bicubic (measured)"] = score(pairs, lambda lr: bicubic_upscale(lr, s), s)
            for name, (model, card, ms) in models.items():
                if ms == s:
                    res[set_name][name] = score(pairs, lambda lr, m=model: upscale_rgb(lr, m), s)
                    res[set_name][name]["parameters"] = sum(p.numel() for p in model.parameters())
                    if not a.no_self_ensemble:
                        se = res[set_name][f"{name} + self-ensemble"] = score(
                            pairs, lambda lr, m=model: upscale_rgb(lr, m, ensemble=True), s)
                        se["parameters"] = res[set_name][name]["parameters"]
            for m, v in res[set_name].items():
                print(f"×{s} {set_name:<10} {m:<22} PSNR-Y {v['psnr_y']:.2f} SSIM-Y {v['ssim_y']:.4f}", flush=True)
        speeds = {}
        if not a.skip_speed:
            for name, (model, card, ms) in models.items():
                if ms == s:
                    speeds[name] = speed(model, s)
                    print("speed", name, speeds[name], flush=True)
                    if not a.no_self_ensemble:
                        speeds[f"{name} + self-ensemble"] = speed(model, s, repeats=1, ensemble=True)
        results["scales"][str(s)] = {"quality": res, "speed": speeds}

    out_json = Path(a.json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2))

    body = [f"## Super-resolution (`benchmarks/upscale.py`, {results['date']})\n",
            f"Machine: {results['machine']}.\n",
            "PSNR / SSIM on the Y channel (BT.601 studio range), `border = scale` pixels cropped. Set5 uses its own "
            "LR images; McMaster18's LR is PIL bicubic. *Published* rows are the papers' figures, not re-run "
            "here (McMaster18 is not a standard SR set: no published figures). s / MP = seconds per output "
            "megapixel, 2 threads, 256×256 input. *+ self-ensemble* = `pixmend upscale --self-ensemble`: the "
            "same weights averaged over the 8 rotations/flips of the input (Lim et al. 2017), 8× the time. "
            "Timings on this shared virtual machine vary up to ~2× from one day to the next: compare speeds "
            "within one run. *window-sr-x2-bicubic* / *window-sr-x4-bicubic* are the ×2 / ×4 models fine-tuned "
            "on bicubic downsampling only (the LR of Set5 and McMaster18 here is bicubic); the defaults also "
            "learnt bilinear and area downsampling.\n"]
    if missing:
        body.append(f"Not measured (no trained weights yet): {', '.join(missing)}.\n")
    for s in scales:
        q, sp = results["scales"][str(s)]["quality"], results["scales"][str(s)]["speed"]
        body.append(f"\n### ×{s} (target: Set5 PSNR-Y ≥ {TARGETS.get(s, float('nan')):.1f} dB)\n")
        body.append("| method | params | Set5 PSNR-Y | Set5 SSIM-Y | McMaster18 PSNR-Y | McMaster18 SSIM-Y | s / MP |")
        body.append("|---|---|---|---|---|---|---|")
        names = list(q["Set5"])
        for m in names:
            st, mc = q["Set5"][m], q["McMaster18"][m]
            params = f"{st['parameters'] / 1e3:.0f}K" if "parameters" in st else "—"
            spd = f"{sp[m]['s_per_mp']:.2f}" if m in sp else "—"
            label = f"**{m}** (ours)" if m != "bicubic (measured)" else m
            body.append(f"| {label} | {params} | {st['psnr_y']:.2f} | {st['ssim_y']:.4f} | {mc['psnr_y']:.2f} | "
                        f"{mc['ssim_y']:.4f} | {spd} |")
        for m, (params, p, ss) in PUBLISHED.get(s, {}).items():
            pk = f"{params / 1e3:.0f}K" if params else "—"
            body.append(f"| {m} (published) | {pk} | {p:.2f} | {ss:.4f} | — | — | — |")
        for m, v in sp.items():
            body.append(f"\n{m}: {v['input']} → {v['output']} in **{v['seconds']:.2f} s**.")
    write_section(Path(a.md), "upscale", "\n".join(body))

    if a.update_cards:
        for name, (model, card, s) in models.items():
            card_path = ROOT / "pixmend" / "weights" / f"{name}.json"
            if card_path.exists():
                c = json.loads(card_path.read_text())
                q = results["scales"][str(s)]["quality"]
                c["benchmarks"] = {"date": results["date"], "machine": results["machine"],
                                   **{f"{k}/x{s}": {kk: round(vv, 4) for kk, vv in v[name].items()} for k, v in q.items()},
                                   **{f"{k}/x{s} self-ensemble": {kk: round(vv, 4) for kk, vv in v[f"{name} + self-ensemble"].items()}
                                      for k, v in q.items() if f"{name} + self-ensemble" in v},
                                   **({"speed": results["scales"][str(s)]["speed"][name]}
                                      if name in results["scales"][str(s)]["speed"] else {})}
                card_path.write_text(json.dumps(c, indent=2))


if __name__ == "__main__":
    main()
