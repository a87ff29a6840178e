"""Benchmark inpainting and write the 'inpaint' section of docs/BENCHMARKS.md (+ a picture in docs/).

    python benchmarks/inpaint.py [--data ../shared/data/bench] [--models inpaint-unet] [--update-cards]

Kodak24 centre 256×256 crops. Two mask sets, both fixed by seeds (``tasks.inpaint.eval_masks``): one 32×32
square hole per crop (16-pixel margin, the seed's evaluation holes) and free-form brush strokes (2–4 strokes,
≤ 25 % of the crop). PSNR and SSIM inside the hole (SSIM map averaged over hole pixels) and on the whole crop,
and seconds per image (2 threads). Each model also runs with ``--self-ensemble`` (8 orientations). Baselines:
mean fill (the hole painted with the mean of the known pixels), OpenCV Telea and Navier–Stokes (``cv2.inpaint``,
radius 5, on the 8-bit image).
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

from correct import load_models, machine, write_section  # noqa: E402

KINDS = ("square", "brush")


def mean_fill(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[mask > 0.5] = img[mask < 0.5].mean(axis=0)
    return out


def opencv(method: str):
    import cv2

    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]

    def run(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
        u8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
        out = cv2.inpaint(u8, (mask > 0.5).astype(np.uint8) * 255, 5, flag).astype(np.float32) / 255
        res = img.copy()
        res[mask > 0.5] = out[mask > 0.5]
        return res

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "bench"))
    ap.add_argument("--models", default="inpaint-unet", help="registry names or weights paths")
    ap.add_argument("--limit", type=int, default=0, help="images (0 = all 24)")
    ap.add_argument("--update-cards", action="store_true")
    ap.add_argument("--no-self-ensemble", action="store_true",
                    help="skip the rows with the 8-fold self-ensemble (inpaint --self-ensemble)")
    ap.add_argument("--md", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "inpaint.json"))
    ap.add_argument("--picture", default=str(ROOT / "docs" / "images" / "inpaint-examples.png"))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from pixmend import data as D
    from pixmend.io import read_image
    from pixmend.tasks.inpaint import center_crop, eval_masks, hole_scores, inpaint_rgb

    files = D.image_files(Path(a.data) / "kodak24")
    files = files[: a.limit] if a.limit else files
    crops = [center_crop(read_image(f).rgb, 256) for f in files]
    methods = {"mean fill": mean_fill, "OpenCV Telea": opencv("telea"), "OpenCV Navier-Stokes": opencv("ns")}
    loaded, missing = load_models(a.models, "inpaint")
    for name, (model, _card) in loaded.items():
        methods[name] = lambda img, mask, m=model: inpaint_rgb(img, mask, m)
        if not a.no_self_ensemble:
            methods[f"{name} + self-ensemble"] = lambda img, mask, m=model: inpaint_rgb(img, mask, m, ensemble=True)

    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "images": len(crops), "missing": missing,
               "methods": {}}
    outputs: dict = {}
    for name, fn in methods.items():
        res = {}
        for kind in KINDS:
            rows, secs = [], []
            for i, truth in enumerate(crops):
                mask = eval_masks(256, 256, i, kind)
                hidden = truth * (1 - mask[..., None]) + 0.5 * mask[..., None]  # the hole's content is gone
                t = time.perf_counter()
                out = fn(hidden, mask)
                secs.append(time.perf_counter() - t)
                assert np.array_equal(out[mask < 0.5], truth[mask < 0.5]), name  # known pixels untouched
                rows.append(hole_scores(out, truth, mask))
                if i < 4:
                    outputs.setdefault((kind, i), {})[name] = out
            res[kind] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            res[kind]["seconds"] = float(np.median(secs))
            print(f"{name:<22} {kind:<6} hole PSNR {res[kind]['psnr_hole']:.2f} SSIM {res[kind]['ssim_hole']:.4f}"
                  f"  whole PSNR {res[kind]['psnr']:.2f}  {res[kind]['seconds']:.3f} s", flush=True)
        results["methods"][name] = res

    out_json = Path(a.json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2))

    # picture: per row (2 square, 2 brush): masked input | Navier-Stokes | ours | truth
    ours = [n for n in methods if n not in ("mean fill", "OpenCV Telea", "OpenCV Navier-Stokes")]
    if ours:
        from PIL import Image

        rows = []
        for kind in KINDS:
            for i in range(min(2, len(crops))):
                mask = eval_masks(256, 256, i, kind)[..., None]
                shown = crops[i] * (1 - mask) + mask * np.array([1.0, 0.0, 1.0], np.float32)
                o = outputs[(kind, i)]
                rows.append(np.concatenate([shown, o["OpenCV Navier-Stokes"], o[ours[0]], crops[i]], 1))
        pic = np.clip(np.concatenate(rows, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
        Path(a.picture).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pic).save(a.picture)

    ns = results["methods"]["OpenCV Navier-Stokes"]["square"]["psnr_hole"]
    body = [f"## Inpainting (`benchmarks/inpaint.py`, {results['date']})\n",
            f"Machine: {results['machine']}.\n",
            f"Kodak24 centre 256×256 crops ({len(crops)} images), fixed seeded masks: one 32×32 square hole per crop "
            "(16 px margin) and free-form brush strokes (≤ 25 % of the crop). PSNR / SSIM inside the hole (SSIM map "
            "averaged over hole pixels) and on the whole crop; s = median seconds per image, 2 threads. "
            f"Target: hole PSNR on squares ≥ Navier-Stokes + 1.5 dB = {ns + 1.5:.2f} dB.\n"]
    if missing:
        body.append(f"Not measured (no trained weights yet): {', '.join(missing)}.\n")
    body.append("| method | square: hole PSNR | hole SSIM | whole PSNR | s | brush: hole PSNR | hole SSIM | "
                "whole PSNR | s |")
    body.append("|---|---|---|---|---|---|---|---|---|")
    for name, res in results["methods"].items():
        sq, br = res["square"], res["brush"]
        label = f"**{name}** (ours)" if name in ours else name
        body.append(f"| {label} | {sq['psnr_hole']:.2f} | {sq['ssim_hole']:.4f} | {sq['psnr']:.2f} | "
                    f"{sq['seconds']:.3f} | {br['psnr_hole']:.2f} | {br['ssim_hole']:.4f} | {br['psnr']:.2f} | "
                    f"{br['seconds']:.3f} |")
    if ours:
        rel = Path(a.picture).relative_to(ROOT / "docs") if Path(a.picture).is_relative_to(ROOT / "docs") else a.picture
        body.append(f"\n![masked input, Navier-Stokes, {ours[0]}, original]({rel})\n")
        body.append("Rows: two square holes, two free-form masks (first Kodak24 crops); columns: masked input "
                    f"(magenta = hole), OpenCV Navier-Stokes, {ours[0]}, original.")
    write_section(Path(a.md), "inpaint", "\n".join(body))

    if a.update_cards:
        for name in ours:
            card_path = ROOT / "pixmend" / "weights" / f"{name}.json"
            if card_path.exists():
                c = json.loads(card_path.read_text())
                c["benchmarks"] = {"date": results["date"], "machine": results["machine"],
                                   "kodak24_256": {k: {kk: round(vv, 4) for kk, vv in v.items()}
                                                   for k, v in results["methods"][name].items()},
                                   "opencv_ns_kodak24_256": results["methods"]["OpenCV Navier-Stokes"]}
                se = results["methods"].get(f"{name} + self-ensemble")
                if se:
                    c["benchmarks"]["kodak24_256_self_ensemble"] = {k: {kk: round(vv, 4) for kk, vv in v.items()}
                                                                    for k, v in se.items()}
                card_path.write_text(json.dumps(c, indent=2))


if __name__ == "__main__":
    main()
