"""Super-resolution ×2 / ×4: inference, the UpscaleTask training recipe and evaluate().

Architectures (``models/registry.py``): ``window-sr-x2`` (default) and ``window-sr-x4`` — the window + channel
attention Transformer of ``models/window_sr.py``; its output is bicubic(LR) + a learnt residual.

Training recipe (``pixmend train upscale --data PHOTOS [--model window-sr-x4]``): random HR crops of clean
photos with random flips / 90° rotations; LR by a uniformly chosen bilinear, bicubic or area downsampling
(``degrade.random_downsample``). Loss: L1 for the first ``edge_weight_after`` fraction of the steps, then the
seed's edge-weighted L1 — per-pixel L1 multiplied by the Sobel edge magnitude of the ground truth's luma,
added to plain L1. Optional squared-error term (``mse_weight`` > 0, for a final PSNR fine-tune; off in the
shipped models). Optional PatchGAN term (``gan_weight`` > 0, from ``gan_after`` of the steps on; off in the
shipped models). Validation loss (used to pick the best model) is always plain L1, so it stays comparable
when the training loss changes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import degrade
from ..errors import PixmendError
from ..losses import sobel_edges  # noqa: F401  (re-exported: tests and older code import it from here)
from .common import batch_psnr, config_flag, config_number, dihedral_mean, to_numpy, to_tensor

TILE, OVERLAP = 256, 32  # LR pixels; the overlap is a multiple of the 4-pixel window


# --------------------------------------------------------------------------------------------- inference
def model_scale(model) -> int:
    m = model.module if hasattr(model, "module") else model
    return int(m.cfg.scale)


def bicubic_upscale(img: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic (Keys a = −0.5, align_corners=False, clamped to [0, 1]) of an (H, W, 3) or (H, W) float image:
    the model's own base, and how alpha is upscaled."""
    from ..models.window_sr import bicubic_upsample

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    up = bicubic_upsample(t, int(scale)).clamp(0, 1)
    return up[0, 0].numpy() if img.ndim == 2 else up[0].permute(1, 2, 0).contiguous().numpy()


def upscale_rgb(rgb: np.ndarray, model, scale: int | None = None, device="cpu", tile: int = TILE,
                progress=None, ensemble: bool = False) -> np.ndarray:
    """Upscale one float RGB image (H, W, 3) → (H·s, W·s, 3) through overlapped, blended tiles of ``tile`` LR px;
    ``ensemble``: each tile through the 8-fold geometric self-ensemble (``common.dihedral_mean``)."""
    from ..tiling import tiled_apply

    s = model_scale(model)
    if scale is not None and int(scale) != s:
        raise PixmendError(f"this model upscales ×{s}, not ×{scale}")
    x = to_tensor(rgb, device)
    overlap = min(OVERLAP, tile // 2 // 4 * 4)  # ≤ half the tile, a multiple of the window
    fn = (lambda t: dihedral_mean(model, t)) if ensemble else model
    with torch.inference_mode():
        out = tiled_apply(fn, x, tile=tile, overlap=overlap, scale=s, progress=progress)
    return to_numpy(out)


def upscale_image(rgb: np.ndarray, alpha: np.ndarray | None, model, scale: int | None = None, device="cpu",
                  tile: int = TILE, progress=None, ensemble: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB through the model (optionally self-ensembled); alpha (if any) separately by bicubic."""
    out = upscale_rgb(rgb, model, scale, device, tile, progress, ensemble)
    a = bicubic_upscale(alpha, model_scale(model)) if alpha is not None else None
    return out, a


# ---------------------------------------------------------------------------------------------- training
class PatchDiscriminator(nn.Module):
    """A small PatchGAN (pix2pix-style, spectrally normalised): one real/fake logit per ~22×22 patch."""

    def __init__(self, width: int = 32):
        super().__init__()
        sn = nn.utils.spectral_norm
        act = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, width, 4, 2, 1)), act(),
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1)), act(),
            sn(nn.Conv2d(2 * width, 4 * width, 3, 1, 1)), act(),
            sn(nn.Conv2d(4 * width, 1, 3, 1, 1)))

    def forward(self, x):
        return self.net(x * 2 - 1)


class UpscaleTask:
    """Training recipe for the super-resolution models (``pixmend train upscale``)."""

    name = "upscale"

    def __init__(self):
        self.total_steps = 0  # set by datasets(); the edge-weighting and GAN switches are fractions of it
        self._steps = 0  # fallback step counter for models without a ``steps_trained`` buffer
        self.disc = None
        self.disc_opt = None

    @staticmethod
    def scale_of(architecture: str) -> int:
        m = re.search(r"-x(\d+)$", architecture or "")
        return int(m.group(1)) if m else 2

    def defaults(self, architecture: str) -> dict:
        from ..models.window_sr import WindowSRConfig

        return {**WindowSRConfig(scale=self.scale_of(architecture)).__dict__,
                "batch_size": 16, "lr_crop": 48, "samples_per_epoch": 4096, "peak_learning_rate": 1e-3,
                "warmup_steps": 300, "weight_decay": 0.0, "val_every": 250, "val_batches": 8,
                "downsample_methods": "bilinear,bicubic,area",
                "edge_weight_after": 0.5,  # fraction of the steps trained with plain L1 before edge weighting
                "edge_loss_weight": 1.0,
                # > 0: add mse_weight × mean squared error, the PSNR objective itself (not in the seed): a short
                # final fine-tune with it is a common last step of PSNR-oriented SR training (tried on the shipped
                # models, no gain: window-sr-x2-zoom.toml, window-sr-x4-zoom.toml)
                "mse_weight": 0.0,
                "gan_weight": 0.0,  # > 0: add a PatchGAN term (off in shipped models)
                "gan_after": 0.8, "gan_lr": 1e-4, "gan_width": 32,
                "downsample_weights": [],  # relative probability per method; empty = uniform (the seed)
                "lr_quantize": False,  # round the LR crops to 8 bits (what stored LR images are)
                "hr_zoom": 1.0,  # < 1: cut each HR crop from the photo shrunk by a random factor in [hr_zoom, 1]
                "lr_blur_prob": 0.0, "lr_noise_prob": 0.0}  # the seed's blur / noise experiment, off

    # -- data
    def datasets(self, cfg: dict, data: Path):
        from .. import data as D

        seed = int(cfg["seed"])
        tr, tr_imgs, va_imgs = D.load_photo_split(data, float(cfg["val_split"]), seed)
        methods = cfg.get("downsample_methods", "bilinear,bicubic,area")
        methods = tuple(m.strip() for m in methods.split(",")) if isinstance(methods, str) else tuple(methods)
        bad = [m for m in methods if m not in degrade.DOWNSAMPLE_METHODS]
        if bad or not methods:
            raise PixmendError(f"downsample_methods: unknown {', '.join(bad) or '(none given)'} "
                               f"(use {', '.join(degrade.DOWNSAMPLE_METHODS)})")
        weights = cfg.get("downsample_weights") or None
        if weights is not None:
            raw = weights.split(",") if isinstance(weights, str) else weights  # "1,4,1" as downsample_methods
            try:
                weights = tuple(float(w) for w in raw)
            except (TypeError, ValueError):
                raise PixmendError(f"downsample_weights must be a list of numbers, not {cfg['downsample_weights']!r}") from None
            if (len(weights) != len(methods) or not all(math.isfinite(w) and w >= 0 for w in weights)
                    or sum(weights) <= 0):
                raise PixmendError(f"downsample_weights {list(weights)} must give one finite, non-negative weight "
                                   f"per method of downsample_methods ({', '.join(methods)}), not all zero")
        quantize = config_flag(cfg, "lr_quantize")
        zoom = config_number(cfg, "hr_zoom", 1.0, 0.1, 1.0, " (1 = off)")
        s, crop = int(cfg["scale"]), int(cfg["lr_crop"])
        n_val = int(cfg["val_batches"]) * int(cfg["batch_size"])
        train_ds = D.SRDataset(tr_imgs, s, crop, int(cfg["samples_per_epoch"]), seed, methods=methods,
                               blur_prob=float(cfg.get("lr_blur_prob", 0.0)),
                               noise_prob=float(cfg.get("lr_noise_prob", 0.0)),
                               method_weights=weights, quantize=quantize, hr_zoom=zoom)
        val_ds = D.SRDataset(va_imgs, s, crop, n_val, seed + 1, fixed=True, methods=methods,
                             method_weights=weights, quantize=quantize)
        train_ds.num_sources = len(tr)
        self.total_steps = int(cfg["steps"]) or int(cfg["num_epochs"]) * max(1, len(train_ds) // int(cfg["batch_size"]))
        return train_ds, val_ds

    # -- loss
    def _step(self, m) -> int:
        buf = getattr(m, "steps_trained", None)
        return int(buf) if buf is not None else self._steps

    def _advance(self, m) -> None:
        buf = getattr(m, "steps_trained", None)
        if buf is not None:
            with torch.no_grad():
                buf.add_(1)
        else:
            self._steps += 1

    def _active(self, frac: float, step: int, cfg: dict) -> bool:
        frac = float(frac)
        if frac <= 0:
            return True
        total = self.total_steps or int(cfg.get("steps") or 0)
        return total > 0 and frac < 1 and step >= round(frac * total)

    def loss(self, model, batch, cfg):
        lr, hr = batch
        m = model.module if hasattr(model, "module") else model
        training = m.training and torch.is_grad_enabled()
        pred = model(lr)
        diff = (pred - hr).abs()
        l1 = diff.mean()
        metrics = {"l1": l1.item()}
        metrics["psnr"] = batch_psnr(pred, hr)
        if not training:  # validation: plain L1, comparable across the whole run
            return l1, metrics
        step = self._step(m)
        self._advance(m)
        loss = l1
        if self._active(cfg.get("edge_weight_after", 0.5), step, cfg) and float(cfg.get("edge_loss_weight", 1.0)):
            edge = (diff * sobel_edges(hr)).mean()
            loss = loss + float(cfg.get("edge_loss_weight", 1.0)) * edge
            metrics["edge_l1"] = edge.item()
        if float(cfg.get("mse_weight", 0.0)) > 0:
            mse = (diff ** 2).mean()
            loss = loss + float(cfg["mse_weight"]) * mse
            metrics["mse"] = mse.item()
        if float(cfg.get("gan_weight", 0.0)) > 0 and self._active(cfg.get("gan_after", 0.8), step, cfg):
            g = self._gan_step(pred, hr, cfg, metrics)
            loss = loss + float(cfg["gan_weight"]) * g
        return loss, metrics

    def _gan_step(self, pred, hr, cfg, metrics) -> torch.Tensor:
        """One discriminator update, then the generator's non-saturating adversarial loss."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise PixmendError("gan_weight > 0 is single-process only (the discriminator is not distributed)")
        if self.disc is None:
            self.disc = PatchDiscriminator(int(cfg.get("gan_width", 32))).to(pred.device)
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=float(cfg.get("gan_lr", 1e-4)),
                                             betas=(0.5, 0.999))
        d_loss = F.softplus(self.disc(pred.detach())).mean() + F.softplus(-self.disc(hr)).mean()
        self.disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.disc_opt.step()
        for p in self.disc.parameters():
            p.requires_grad_(False)
        g = F.softplus(-self.disc(pred)).mean()
        for p in self.disc.parameters():
            p.requires_grad_(True)
        metrics["gan_d"], metrics["gan_g"] = d_loss.item(), g.item()
        return g

    # -- TensorBoard picture: bicubic | model | ground truth
    def preview(self, model, cfg, val_ds):
        lr, hr = val_ds[0]
        lr = lr.permute(1, 2, 0).numpy()
        s = model_scale(model)
        model.eval()
        dev = next(model.parameters()).device
        out = upscale_rgb(lr, model, device=dev)
        return np.concatenate([bicubic_upscale(lr, s), out, hr.permute(1, 2, 0).numpy()], axis=1)


# -------------------------------------------------------------------------------------------- evaluation
def eval_pairs(data: Path, scale: int) -> list[tuple[Path, Path | None]]:
    """(HR, LR or None) files: DATA/hr + DATA/xS (the Set5 layout) when present, else HR images in DATA."""
    from .. import data as D

    data = Path(data)
    hr_dir, lr_dir = data / "hr", data / f"x{scale}"
    if hr_dir.is_dir() and lr_dir.is_dir():
        lrs = {p.stem: p for p in D.image_files(lr_dir)}
        return [(p, lrs.get(p.stem)) for p in D.image_files(hr_dir)]
    return [(p, None) for p in D.image_files(hr_dir if hr_dir.is_dir() else data)]


def load_pair(hr_path: Path, lr_path: Path | None, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(lr, hr): HR cropped to a multiple of the scale; LR read from disk, or bicubic (PIL) from the HR."""
    from ..io import read_image

    hr = degrade.crop_to_multiple(read_image(hr_path).rgb, scale)
    if lr_path is None:
        return degrade.downsample(hr, scale, "bicubic"), hr
    lr = read_image(lr_path).rgb
    hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
    if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
        raise PixmendError(f"{lr_path}: {lr.shape[1]}×{lr.shape[0]} is not 1/{scale} of its HR image")
    return lr, hr


def evaluate(model, card: dict, data: Path, device="cpu", limit: int | None = None, progress: bool = True) -> dict:
    """PSNR-Y / SSIM-Y (border = scale, the SR-paper convention) of the model and of plain bicubic, on HR
    images whose LR is made by bicubic downsampling (or read from DATA/xS beside DATA/hr)."""
    from ..metrics import psnr_y, ssim_y

    s = model_scale(model)
    items = eval_pairs(Path(data), s)
    if not items:
        raise PixmendError(f"{data}: no images")
    items = items[:limit] if limit else items
    it = items
    if progress:
        from tqdm import tqdm
        it = tqdm(items, desc=f"eval upscale ×{s}", unit="img")
    rows = []
    for hr_path, lr_path in it:
        lr, hr = load_pair(hr_path, lr_path, s)
        out = upscale_rgb(lr, model, device=device)
        bic = bicubic_upscale(lr, s)
        rows.append({"image": Path(hr_path).name, "psnr_y": psnr_y(out, hr, s), "ssim_y": ssim_y(out, hr, s),
                     "psnr_y_bicubic": psnr_y(bic, hr, s), "ssim_y_bicubic": ssim_y(bic, hr, s)})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "image"}
    return {"task": "upscale", "model": card.get("name", card["architecture"]), "scale": s, "images": len(rows),
            **mean, "per_image": rows}
