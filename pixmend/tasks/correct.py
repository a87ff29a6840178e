"""Correction: inference, inspection, training and evaluation glue for the correctors.

Two architectures serve this task (``models/registry.py``):
- ``gl-transformer`` (default): global colour Transformer + local detail CNN, tiled at full resolution.
- ``pixel-transformer``: the seed's pixel-sequence model, every overlapping window averaged.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import degrade
from ..errors import PixmendError, UsageError
from .common import batch_psnr, config_flag, config_number, to_numpy, to_tensor

TILE, OVERLAP = 512, 64  # OVERLAP/4 ≥ the local stage's receptive-field radius, so tiling is exact


# --------------------------------------------------------------------------------------------- inference
def gl_correct(rgb: np.ndarray, model, device="cpu", tile: int = TILE, progress=None) -> np.ndarray:
    x = to_tensor(rgb, device)
    h, w = x.shape[-2:]
    # ~2.5× faster convolutions on CPU. Converted outside inference_mode: Module.to() swaps the parameters in
    # place, and inside inference_mode they would become inference tensors that can no longer be trained
    # (the trainer's preview calls this on the model being trained).
    model_cl = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        p = model.estimate(x)

        def run(t):
            y = model.apply_global(model.desharpen(t, p), p)
            return model_cl.apply_local(y.contiguous(memory_format=torch.channels_last), p.cond)

        margin = model.cfg.local_margin
        # The local stage works on 2×2 pixel groups (pixel-unshuffle), so every tile must start on an even
        # pixel or its groups differ from the untiled ones: pad to an even size (replicate, as apply_local does
        # untiled) and use an even tile, so all tile starts are even, then crop.
        xp = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else x
        out = _tiled(run, xp, tile - tile % 2, max(OVERLAP, 4 * margin), progress)[..., :h, :w]
    return to_numpy(out)


def _tiled(fn, x, tile, overlap, progress):
    from ..tiling import tiled_apply

    return tiled_apply(fn, x, tile=tile, overlap=overlap, progress=progress)


def window_indices(h: int, w: int, n: int, mode: str, stride: int, seed: int = 0) -> torch.Tensor:
    """Every window the seed's inference visits, as flat pixel indices (num_windows, n); covers each pixel."""
    mode = mode.upper()
    total = h * w
    if mode == "1D":
        stride = min(stride, n)  # a longer stride would skip pixels (left black)
        last = max(total - n, 0)
        starts = list(range(0, last + 1, stride))
        if starts[-1] != last:
            starts.append(last)
        idx = torch.tensor(starts)[:, None] + torch.arange(n)[None, :]
        return idx.clamp(max=total - 1)
    if mode == "2D":
        side = int(round(math.sqrt(n)))
        stride = min(stride, side)  # e.g. the default stride n/2 is longer than the patch side: gaps

        def starts_for(size):
            last = max(size - side, 0)
            s = list(range(0, last + 1, stride))
            return s + ([last] if s[-1] != last else [])

        ys, xs = starts_for(h), starts_for(w)
        dy, dx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        wins = []
        for y0 in ys:
            for x0 in xs:
                yy = (y0 + dy).clamp(max=h - 1)
                xx = (x0 + dx).clamp(max=w - 1)
                wins.append((yy * w + xx).reshape(-1))
        return torch.stack(wins)
    if mode == "RAND":
        g = torch.Generator().manual_seed(seed)
        passes = max(1, n // max(stride, 1))
        wins = []
        for _ in range(passes):
            perm = torch.randperm(total, generator=g)
            pad = (-total) % n
            perm = torch.cat([perm, perm[:pad]])
            wins.append(perm.view(-1, n))
        return torch.cat(wins)
    raise PixmendError(f"unknown dataset mode '{mode}'")


def pixel_transformer_correct(rgb: np.ndarray, model, stride: int | None = None, batch_size: int = 128,
                              device="cpu", progress=None) -> np.ndarray:
    cfg = model.cfg
    h, w = rgb.shape[:2]
    stride = stride or max(1, cfg.num_pixels // 2)
    flat = torch.from_numpy(np.ascontiguousarray(rgb.reshape(-1, 3))).float()
    wins = window_indices(h, w, cfg.num_pixels, cfg.dataset_mode, stride)
    acc = torch.zeros_like(flat)
    cnt = torch.zeros(len(flat), 1)
    n_batches = math.ceil(len(wins) / batch_size)
    with torch.inference_mode():
        for i in range(n_batches):
            idx = wins[i * batch_size:(i + 1) * batch_size]
            pred = model(flat[idx].to(device)).float().cpu()
            acc.index_add_(0, idx.reshape(-1), pred.reshape(-1, 3))
            cnt.index_add_(0, idx.reshape(-1), torch.ones(idx.numel(), 1))
            if progress:
                progress(i + 1, n_batches)
    return (acc / cnt.clamp_min(1)).view(h, w, 3).numpy()


def correct_rgb(rgb: np.ndarray, model, card: dict, strength: float = 1.0, stride: int | None = None,
                batch_size: int = 128, device="cpu", progress=None) -> np.ndarray:
    """Correct one float RGB image; ``strength`` blends original (0) and corrected (1) like the seed's slider."""
    if not 0.0 <= strength <= 1.0:
        raise PixmendError(f"--strength must be between 0 and 1, not {strength}")
    if strength == 0.0:
        return rgb.copy()
    if card["architecture"] == "pixel-transformer":
        out = pixel_transformer_correct(rgb, model, stride, batch_size, device, progress)
    else:
        out = gl_correct(rgb, model, device, progress=progress)
    return blend(rgb, out, strength)


def blend(original: np.ndarray, corrected: np.ndarray, strength: float) -> np.ndarray:
    return np.clip(original + strength * (corrected - original), 0, 1).astype(np.float32)


# -------------------------------------------------------------------------------------------- inspection
def inspect_rgb(rgb: np.ndarray, model, card: dict, device="cpu") -> dict:
    """What the corrector sees: cast direction/strength in CIELAB, the colour map, sharpening estimate."""
    from ..metrics import mean_lab

    corrected = correct_rgb(rgb, model, card, device=device)
    lab_in, lab_out = mean_lab(rgb), mean_lab(corrected)
    da, db = lab_in[1] - lab_out[1], lab_in[2] - lab_out[2]
    strength = math.hypot(da, db)
    hue = math.degrees(math.atan2(db, da)) % 360
    info = {
        "mean_lab_input": [round(float(v), 2) for v in lab_in],
        "mean_lab_corrected": [round(float(v), 2) for v in lab_out],
        "cast_delta_a": round(float(da), 2), "cast_delta_b": round(float(db), 2),
        "cast_strength": round(float(strength), 2),
        "cast_direction": _hue_name(hue, strength), "cast_hue_deg": round(hue, 1),
    }
    if card["architecture"] == "gl-transformer":
        with torch.inference_mode():
            p = model.estimate(to_tensor(rgb, device))
        m = p.matrix[0].cpu().numpy()
        info.update({
            "correction_gains_rgb": [round(float(v), 3) for v in np.diag(m)],
            "correction_matrix": [[round(float(v), 3) for v in row] for row in m],
            "correction_offset": [round(float(v), 3) for v in p.offset[0].cpu().numpy()],
            "sharpening_amount": round(max(0.0, float(p.sharpen[0])), 2),
        })
        if p.radius is not None:
            info["sharpening_radius_px"] = round(float(p.radius[0]), 2)
            info["sharpening_luma_only"] = round(float(p.luma_only[0]), 2)
        if p.strength is not None:  # the colour gate: the share of the colour correction applied
            info["colour_strength"] = round(float(p.strength[0]), 2)
    return info


def _hue_name(hue: float, strength: float) -> str:
    if strength < 2.0:
        return "none"
    names = [(30, "magenta-red"), (70, "orange"), (105, "yellow"), (150, "yellow-green"), (210, "green"),
             (250, "cyan"), (300, "blue"), (345, "violet"), (360, "magenta-red")]
    for limit, name in names:
        if hue < limit:
            return name
    return "magenta-red"


# ---------------------------------------------------------------------------------------------- training
def degrade_config(cfg: dict) -> "degrade.DegradeConfig":
    """The synthetic damage of a training run: DegradeConfig's defaults, overridden by ``degrade_*`` keys of
    the config (e.g. ``degrade_p_clean = 0.25``, ``degrade_warmth_range = [0.05, 1.0]``)."""
    base = degrade.DegradeConfig()
    over = {k[len("degrade_"):]: v for k, v in cfg.items() if k.startswith("degrade_")}
    unknown = [k for k in over if k not in base.__dataclass_fields__ or k == "extra"]
    if unknown:
        raise UsageError(f"unknown degradation setting(s): {', '.join('degrade_' + k for k in unknown)}")
    return degrade.DegradeConfig(**{**base.__dict__, **{k: tuple(v) if isinstance(v, list) else v
                                                        for k, v in over.items()}})


class CorrectTask:
    """Training recipe for both correctors (``pixmend train correct``)."""

    name = "correct"
    config_prefixes = ("degrade_",)  # the synthetic damage's settings, checked by degrade_config

    def defaults(self, architecture: str) -> dict:
        if architecture == "pixel-transformer":
            from ..models.pixel_transformer import PixelTransformerConfig

            return {**PixelTransformerConfig().__dict__, "dataset_stride": 64, "variants_per_image": 2,
                    "max_side": 768, "loss": "mse", "input_dir_train": "inputs", "output_dir_train": "outputs"}
        from ..models.gl_transformer import GLTransformerConfig

        return {**GLTransformerConfig().__dict__, "batch_size": 16, "crop": 256, "local_crop": 128,
                "samples_per_epoch": 4096, "peak_learning_rate": 1e-3, "warmup_steps": 300,
                "weight_decay": 0.01, "val_every": 250, "val_batches": 8, "p_illustration": 0.25,
                "global_loss_weight": 0.25, "sharpen_loss_weight": 0.05, "wide_views": False,
                "view_max": 384, "clean_look": 0.0, "clean_look_warm": False, "colour_only": False,
                "input_dir_train": "inputs", "output_dir_train": "outputs"}

    # -- data
    def datasets(self, cfg: dict, data: Path):
        from .. import data as D

        seed = int(cfg["seed"])
        pairs = D.paired_folders(data, cfg.get("input_dir_train", "inputs"), cfg.get("output_dir_train", "outputs"))
        if pairs is not None:
            tr, va = D.split_files(pairs, float(cfg["val_split"]), seed)
            load = lambda ps: [(D.load_uint8(a), D.load_uint8(b)) for a, b in ps]  # noqa: E731
            tr_pairs, va_pairs = load(tr), load(va or tr[:1])
        else:
            tr, tr_imgs, va_imgs = D.load_photo_split(data, float(cfg["val_split"]), seed,
                                                      "clean photos, or inputs/ and outputs/ folders")
        if "num_pixels" in cfg and "thumb_size" not in cfg:  # pixel-transformer: the seed's PixelDataset
            if pairs is None:
                tr_pairs = _synthetic_pairs(tr_imgs, cfg, seed)
                va_pairs = _synthetic_pairs(va_imgs, cfg, seed + 1)
            mk = lambda ps, s: D.PixelDataset([a for a, _ in ps], [b for _, b in ps], int(cfg["num_pixels"]),  # noqa: E731
                                              cfg["dataset_mode"], int(cfg["dataset_stride"]), seed=s)
            train_ds, val_ds = mk(tr_pairs, seed), mk(va_pairs, seed + 1)
        else:
            n_val = int(cfg["val_batches"]) * int(cfg["batch_size"])
            if pairs is None:
                dcfg = degrade_config(cfg)
                colour_only = config_flag(cfg, "colour_only")
                kw = dict(thumb=int(cfg["thumb_size"]) if cfg.get("wide_views") or colour_only else 0,
                          view_max=int(cfg.get("view_max", 384)), clean_look=config_number(cfg, "clean_look", 0.0, 0, 3),
                          look_warm_only=config_flag(cfg, "clean_look_warm"), views_only=colour_only)
                train_ds = D.SyntheticCorrectionDataset(tr_imgs, int(cfg["crop"]), int(cfg["samples_per_epoch"]), seed,
                                                        float(cfg["p_illustration"]), dcfg, **kw)
                val_ds = D.SyntheticCorrectionDataset(va_imgs, int(cfg["crop"]), n_val, seed + 1,
                                                      float(cfg["p_illustration"]), dcfg, fixed=True, **kw)
            else:
                train_ds = D.PairedCropDataset(tr_pairs, int(cfg["crop"]), int(cfg["samples_per_epoch"]), seed)
                val_ds = D.PairedCropDataset(va_pairs, int(cfg["crop"]), n_val, seed + 1, fixed=True)
        train_ds.num_sources = len(tr)
        return train_ds, val_ds

    # -- loss
    def loss(self, model, batch, cfg):
        if len(batch) == 2 and config_flag(cfg, "colour_only"):  # the colour stage alone, on wide-view thumbnails
            bad, clean = batch
            m = model.module if hasattr(model, "module") else model
            y = m.apply_global(bad, m.estimate(bad, sharpness=False))
            loss = F.l1_loss(y, clean)
            return loss, {"l1_thumb": loss.item(), "psnr": batch_psnr(y, clean)}
        if len(batch) == 2:  # pixel sequences
            x, y = batch
            pred = model(x)
            loss = F.l1_loss(pred, y) if cfg.get("loss") == "l1" else F.mse_loss(pred, y)
            return loss, {}
        bad, clean, amount = batch[:3]
        wide = len(batch) == 7  # SyntheticCorrectionDataset(thumb=…): + radius, luma_only, wide-view thumbnails
        m = model.module if hasattr(model, "module") else model
        p = m.estimate(bad, thumb=batch[5] if wide else None)
        y = m.apply_global(m.desharpen(bad, p), p)
        c = min(int(cfg["local_crop"]), bad.shape[-1])
        # the local stage trains on one random window per batch (it has a small receptive field; saves FLOPs)
        y0 = int(torch.randint(0, bad.shape[-2] - c + 1, (1,)))
        x0 = int(torch.randint(0, bad.shape[-1] - c + 1, (1,)))
        out = m.apply_local(y[..., y0:y0 + c, x0:x0 + c], p.cond)
        target = clean[..., y0:y0 + c, x0:x0 + c]
        l_full = F.l1_loss(out, target)
        l_global = F.l1_loss(y, clean)
        known = amount >= 0
        l_sharp = F.mse_loss(p.sharpen[known], amount[known]) if known.any() else out.new_zeros(())
        logs = {}
        if wide:  # the colour stage on the wide view; the sharpening estimator's radius and luma flag
            l_thumb = F.l1_loss(m.apply_global(batch[5], p), batch[6])
            l_global = l_global + l_thumb
            logs["l1_thumb"] = l_thumb.item()
            sharpened = amount > 0
            if p.radius is not None and sharpened.any():
                l_rad = F.l1_loss(p.radius[sharpened], batch[3][sharpened]) / m.cfg.max_radius
                l_luma = F.binary_cross_entropy(p.luma_only[sharpened].clamp(1e-4, 1 - 1e-4), batch[4][sharpened])
                l_sharp = l_sharp + l_rad + 0.1 * l_luma
                logs.update(radius_l1=l_rad.item() * m.cfg.max_radius, luma_bce=l_luma.item())
        loss = l_full + float(cfg["global_loss_weight"]) * l_global + float(cfg["sharpen_loss_weight"]) * l_sharp
        psnr = batch_psnr(out, target)
        return loss, {"l1": l_full.item(), "l1_global": l_global.item(), "sharpen_mse": l_sharp.item(),
                      "psnr": psnr, **logs}

    # -- TensorBoard picture: input | corrected | target
    def preview(self, model, cfg, val_ds):
        card = {"architecture": "pixel-transformer" if hasattr(model.cfg, "num_pixels") else "gl-transformer"}
        ref = cfg.get("reference_image_path")
        if ref:
            from ..io import read_image

            rgb = read_image(ref).rgb
            if max(rgb.shape[:2]) > 512:
                from PIL import Image
                s = 512 / max(rgb.shape[:2])
                im = Image.fromarray(degrade.to_uint8(rgb)).resize((int(rgb.shape[1] * s), int(rgb.shape[0] * s)))
                rgb = np.asarray(im, dtype=np.float32) / 255
            target = None
        elif hasattr(val_ds, "inputs"):  # PixelDataset: first validation image, downsized
            rgb = val_ds.inputs[0][:192, :192].astype(np.float32) / 255
            target = val_ds.targets[0][:192, :192].astype(np.float32) / 255
        else:
            bad, clean = val_ds[0][:2]
            rgb, target = bad.permute(1, 2, 0).numpy(), clean.permute(1, 2, 0).numpy()
        model.eval()
        dev = next(model.parameters()).device
        out = correct_rgb(rgb, model, card, stride=max(1, int(cfg.get("num_pixels", 128)) // 2),
                          batch_size=int(cfg.get("ref_img_inference_batch_size", 128)), device=dev)
        return np.concatenate([rgb, out] + ([target] if target is not None else []), axis=1)


def _synthetic_pairs(images: list[np.ndarray], cfg: dict, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Degraded copies of whole photos (downsized to max_side) for the pixel-sequence model."""
    from PIL import Image

    out = []
    max_side = int(cfg.get("max_side", 768))
    for i, img in enumerate(images):
        if max(img.shape[:2]) > max_side:
            s = max_side / max(img.shape[:2])
            img = np.asarray(Image.fromarray(img).resize((round(img.shape[1] * s), round(img.shape[0] * s)),
                                                         Image.Resampling.LANCZOS))
        clean = img.astype(np.float32) / 255
        for v in range(int(cfg.get("variants_per_image", 2))):
            bad, _ = degrade.gpt_degrade(clean, np.random.default_rng([seed, i, v]))
            out.append((degrade.to_uint8(bad), img))
    return out


# -------------------------------------------------------------------------------------------- evaluation
def evaluate(model, card: dict, data: Path, device="cpu", limit: int | None = None, stride: int | None = None,
             progress: bool = True) -> dict:
    """PSNR / SSIM / CIEDE2000 of the corrector on paired folders, or on clean images degraded with fixed seeds
    (image i uses seed i, always damaged: cast + sharpening)."""
    from .. import data as D
    from ..io import read_image
    from ..metrics import ciede2000, psnr, ssim

    pairs = D.paired_folders(data)
    if pairs is None:
        items = [(f, None) for f in D.image_files(data)]
    else:
        items = pairs
    if not items:
        raise PixmendError(f"{data}: no images")
    items = items[:limit] if limit else items
    rows = []
    it = items
    if progress:
        from tqdm import tqdm
        it = tqdm(items, desc="eval correct", unit="img")
    for i, (a, b) in enumerate(it):
        if b is None:
            clean = read_image(a).rgb
            bad, _ = degrade.gpt_degrade(clean, i, force="cast+sharpen")
        else:
            bad, clean = read_image(a).rgb, read_image(b).rgb
        out = correct_rgb(bad, model, card, stride=stride, device=device)
        rows.append({"image": Path(a).name, "psnr": psnr(out, clean), "ssim": ssim(out, clean),
                     "ciede2000": ciede2000(out, clean), "psnr_input": psnr(bad, clean),
                     "ciede2000_input": ciede2000(bad, clean)})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "image"}
    return {"task": "correct", "model": card.get("name", card["architecture"]), "images": len(rows), **mean,
            "per_image": rows}
