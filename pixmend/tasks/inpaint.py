"""Inpainting: inference on any image and mask, the InpaintTask training recipe, and evaluate().

Model (``models/inpaint_unet.py``, registry name ``inpaint-unet``): the seed's U-Net generator with SAGAN
self-attention at the bottleneck and a light PatchGAN discriminator.

Inference (``inpaint_image``): the mask's connected holes are filled one window at a time. Each window is the
hole's bounding box plus context on every side (at least ``context`` pixels, and at least the hole's own
half-thickness), so the model always sees a hole with known pixels around it as in training. Holes much
thicker than the training holes (32 px) are filled at a reduced scale — the window is shrunk so that the
hole is about 32 px thick, filled, and the fill is upsampled — because the generator learnt to fill holes of
that size. Pixels outside the mask are never changed: the output is ``image·(1 − mask) + fill·mask``.

Training (``pixmend train inpaint --data PHOTOS``): random crops of clean photos, masks from
``degrade.random_mask``; the source photos are split 80/10/10 into train / validation / test. Losses and the
optimiser are the seed's: adversarial (1.0) + L1 (100) + Sobel edge (10) + SSIM (1); Adam, lr 2e-4, betas
(0.5, 0.999). ``variant = "hole_context"`` (the seed's first model) takes the pixel losses over the hole
grown by a 4-pixel context ring; ``variant = "whole"`` over the whole crop. The generator and discriminator
are updated together in one optimiser step: the discriminator's loss sees the generated image detached, and
the generator's adversarial term sees the discriminator's weights detached (``InpaintGAN.critic(frozen=True)``).
The validation loss (which picks the best checkpoint) is the L1 error inside the hole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import degrade
from ..errors import PixmendError
from .common import config_number, config_range, dihedral_mean, turned

TRAINED_HOLE = 32  # the hole size the shipped model was trained on (pixels)


# --------------------------------------------------------------------------------------------- inference
def mask_from_image(mask_rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """A user's mask image → float (H, W) with 1 = fill: white (any channel above half) is the hole."""
    m = np.asarray(mask_rgb, np.float32)
    m = m.max(axis=2) if m.ndim == 3 else m
    if alpha is not None:  # transparent pixels of a mask are "not painted"
        m = m * (np.asarray(alpha) > 0.5)
    return (m > 0.5).astype(np.float32)


def _thickness(component: np.ndarray) -> float:
    """Twice the largest distance from a hole pixel to the nearest known pixel (a square hole of side s: s)."""
    from scipy import ndimage

    return 2.0 * float(ndimage.distance_transform_cdt(np.pad(component, 1), metric="chessboard").max())


def hole_windows(mask: np.ndarray, context: int = 16) -> list[tuple[int, int, int, int, float]]:
    """One window (y0, y1, x0, x1, scale) per connected hole (8-connectivity): its bounding box grown by
    ``max(context, thickness / 2)`` on each side, clamped to the image; ``scale`` < 1 shrinks holes thicker
    than the trained size."""
    from scipy import ndimage

    labels, n = ndimage.label(mask > 0.5, structure=np.ones((3, 3), bool))
    out = []
    h, w = mask.shape
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        comp = labels[sl] == i
        t = _thickness(comp)
        scale = min(1.0, TRAINED_HOLE / t) if t > 1.5 * TRAINED_HOLE else 1.0
        pad = int(np.ceil(max(context, t / 2) ))
        y0, y1 = max(0, sl[0].start - pad), min(h, sl[0].stop + pad)
        x0, x1 = max(0, sl[1].start - pad), min(w, sl[1].stop + pad)
        out.append((y0, y1, x0, x1, scale))
    return out


def _fill_window(img: torch.Tensor, msk: torch.Tensor, model, scale: float, ensemble: bool = False) -> torch.Tensor:
    """Generator prediction (1, 3, h, w) for one window: padded to a multiple of 8 (reflection), optionally
    processed at ``scale`` and resized back; ``ensemble``: averaged over the 8 orientations."""
    h, w = img.shape[-2:]
    if scale < 1.0:
        sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
        img_s = F.interpolate(img, size=(sh, sw), mode="area")
        msk_s = (F.interpolate(msk, size=(sh, sw), mode="area") > 0).float()  # any hole pixel → hole
    else:
        img_s, msk_s = img, msk
    hh, ww = img_s.shape[-2:]
    ph, pw = (-hh) % 8, (-ww) % 8
    if ph or pw:
        mode = "reflect" if ph < hh and pw < ww else "replicate"
        # the mask is padded like the image: a hole that reaches the window's edge mirrors into the padding as
        # hole too (padded as "known", its unfilled pixels would pull the fill towards whatever they hold)
        img_s = F.pad(img_s, (0, pw, 0, ph), mode=mode)
        msk_s = F.pad(msk_s, (0, pw, 0, ph), mode=mode)
    gen = model.generator if hasattr(model, "generator") else model.module.generator
    # ensemble: averaged over the 8 rotations / flips of the window (docs/BENCHMARKS.md: "+ self-ensemble")
    pred = (dihedral_mean(gen, img_s, msk_s) if ensemble else gen(img_s, msk_s))[..., :hh, :ww]
    if scale < 1.0:
        pred = F.interpolate(pred, size=(h, w), mode="bicubic", align_corners=False)
    return pred.clamp(0, 1)  # the raw residual can step past white or black, as in InpaintGAN.forward


def inpaint_rgb(rgb: np.ndarray, mask: np.ndarray, model, device="cpu", context: int = 16,
                progress=None, whole: bool = False, ensemble: bool = False) -> np.ndarray:
    """Fill the holes of ``rgb`` (H, W, 3 float) where ``mask`` (H, W) is 1. Pixels outside the mask are
    returned bit-for-bit unchanged. ``whole=True``: the seed's whole-image variant — one pass over the entire
    image with every hole at once (memory grows with the image; the default works hole by hole).
    ``ensemble``: each window's prediction averaged over its 8 rotations / flips (8× the time)."""
    if mask.shape != rgb.shape[:2]:
        raise PixmendError(f"mask is {mask.shape[1]}×{mask.shape[0]} but the image is "
                           f"{rgb.shape[1]}×{rgb.shape[0]}")
    mask = (mask > 0.5)
    out = rgb.astype(np.float32).copy()
    if not mask.any():
        return out
    remaining = mask.copy()
    windows = [(0, mask.shape[0], 0, mask.shape[1], 1.0)] if whole else hole_windows(mask, context)
    with torch.inference_mode():
        for k, (y0, y1, x0, x1, scale) in enumerate(windows):
            m = remaining[y0:y1, x0:x1]
            if m.any():
                img_t = torch.from_numpy(np.ascontiguousarray(out[y0:y1, x0:x1].transpose(2, 0, 1)))[None].to(device)
                m_t = torch.from_numpy(m.astype(np.float32))[None, None].to(device)
                pred = _fill_window(img_t, m_t, model, scale, ensemble)[0].permute(1, 2, 0).cpu().numpy()
                region = out[y0:y1, x0:x1]
                region[m] = pred[m]
                remaining[y0:y1, x0:x1] = False
            if progress:
                progress(k + 1, len(windows))
    out[~mask] = rgb[~mask]  # exact, whatever happened above
    return out


def inpaint_image(rgb: np.ndarray, alpha: np.ndarray | None, mask: np.ndarray, model, device="cpu",
                  context: int = 16, whole: bool = False, ensemble: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB filled inside the mask; alpha kept exactly."""
    return inpaint_rgb(rgb, mask, model, device, context, whole=whole, ensemble=ensemble), alpha


# ---------------------------------------------------------------------------------------------- training
class InpaintTask:
    """Training recipe for the inpainting GAN (``pixmend train inpaint``)."""

    name = "inpaint"

    def defaults(self, architecture: str) -> dict:
        from ..models.inpaint_unet import InpaintConfig

        return {**InpaintConfig().__dict__,
                "batch_size": 16, "crop": 64, "samples_per_epoch": 4096,
                "peak_learning_rate": 2e-4, "betas": [0.5, 0.999], "weight_decay": 0.0,
                "warmup_steps": 100, "grad_clip": 0.0, "val_split": 0.1, "test_split": 0.1,
                "val_every": 250, "val_batches": 8,
                "variant": "hole_context",  # or "whole"
                "context_ring": 4,  # pixels of known context around the hole in the pixel losses
                "mask_probs": [0.5, 0.2, 0.3],  # square / rectangle / brush strokes
                "hole_size": 32, "hole_margin": 16,
                "zoom_range": [0.5, 1.0],  # random zoom-out of the training views (1 = the photo's own scale)
                "look_jitter": 0.0,  # strength of random photo looks on the training views (degrade.sample_look)
                "brush_width": None,  # [low, high] stroke widths in pixels (None: 4-12 % of the crop side)
                "adv_weight": 1.0, "l1_weight": 100.0, "edge_weight": 10.0, "ssim_weight": 1.0,
                "disc_weight": 1.0,
                # squared error over the same region as L1 (not in the seed; 0 = off): the L1 term pulls an
                # uncertain hole towards the median of what could be there, this one towards the mean, which is
                # what hole PSNR rewards (inpaint-unet-mse.toml)
                "mse_weight": 0.0,
                # self-ensemble distillation (not in the seed; 0 = off): squared error over the same region between
                # the prediction and the detached average of the generator's own predictions for the 8
                # rotations / flips of the crop (``ensemble_views`` of the 7 turned ones, drawn at random, plus
                # the prediction itself). The 8-way average fills holes better than one pass (the CLI's
                # --self-ensemble); this pulls the single pass towards it (inpaint-unet-distill.toml)
                "ensemble_weight": 0.0, "ensemble_views": 7}

    def datasets(self, cfg: dict, data: Path):
        from .. import data as D

        seed = int(cfg["seed"])
        files = D.image_files(data)
        if not files:
            raise PixmendError(f"{data}: no images (expected a folder of clean photos)")
        if cfg.get("variant", "hole_context") not in ("hole_context", "whole"):
            raise PixmendError(f"variant must be 'hole_context' or 'whole', not '{cfg['variant']}'")
        tr, va, te = D.split_three(files, float(cfg["val_split"]), float(cfg.get("test_split", 0.1)), seed)
        self.test_files = [str(p) for p in te]
        self.card_data = {"split": "80/10/10 by source image", "validation_sources": [p.name for p in va],
                          "test_sources": [p.name for p in te]}
        tr_imgs = [D.load_uint8(f) for f in tr]
        va_imgs = [D.load_uint8(f) for f in (va or tr[:1])]
        crop, probs = int(cfg["crop"]), tuple(float(p) for p in cfg["mask_probs"])
        kw = dict(hole=int(cfg["hole_size"]), margin=int(cfg["hole_margin"]))
        n_val = int(cfg["val_batches"]) * int(cfg["batch_size"])
        zoom, look = config_range(cfg, "zoom_range", [0.5, 1.0], 0.05, 1.0), config_number(cfg, "look_jitter", 0.0, 0, 3)
        kw["brush_width"] = config_range(cfg, "brush_width", None, 1, crop, " pixels (at most the crop)")
        train_ds = D.InpaintDataset(tr_imgs, crop, int(cfg["samples_per_epoch"]), seed, mask_probs=probs,
                                    zoom_range=zoom, look_jitter=look, **kw)
        val_ds = D.InpaintDataset(va_imgs, crop, n_val, seed + 1, fixed=True, mask_probs=probs, **kw)
        train_ds.num_sources = len(tr)
        return train_ds, val_ds

    def loss(self, model, batch, cfg):
        from ..losses import masked_mean, sobel_edges, ssim

        img, mask = batch
        m = model.module if hasattr(model, "module") else model
        training = m.training and torch.is_grad_enabled()
        out, pred = model(img, mask, raw=True)
        hole_l1 = masked_mean((out - img).abs(), mask)
        metrics = {"l1_hole": hole_l1.item()}
        with torch.no_grad():
            mse = masked_mean((out - img) ** 2, mask)
            metrics["psnr_hole"] = float(-10 * torch.log10(mse.clamp_min(1e-10)))
            metrics["ssim"] = float(ssim(out, img))
            metrics["edge_hole"] = float(masked_mean((sobel_edges(out) - sobel_edges(img)).abs(), mask))
        if not training:
            return hole_l1, metrics
        if cfg.get("variant", "hole_context") == "whole":
            region = torch.ones_like(mask)
        else:  # the hole and a ring of known context around it
            region = F.max_pool2d(mask, 2 * int(cfg["context_ring"]) + 1, 1, int(cfg["context_ring"]))
        l1 = masked_mean((pred - img).abs(), region)
        mse_region = masked_mean((pred - img) ** 2, region)
        edge = masked_mean((sobel_edges(pred) - sobel_edges(img)).abs(), region)
        ssim_loss = 1 - ssim(out, img)
        g_adv = F.softplus(-m.critic(out, mask, frozen=True)).mean()  # non-saturating generator loss
        d_loss = (F.softplus(-m.critic(img, mask)).mean() + F.softplus(m.critic(out.detach(), mask)).mean()) / 2
        loss = (float(cfg["adv_weight"]) * g_adv + float(cfg["l1_weight"]) * l1 + float(cfg["edge_weight"]) * edge
                + float(cfg["ssim_weight"]) * ssim_loss + float(cfg["disc_weight"]) * d_loss
                + float(cfg.get("mse_weight", 0.0)) * mse_region)
        metrics.update({"l1": l1.item(), "mse": mse_region.item(), "edge": edge.item(), "ssim_loss": ssim_loss.item(),
                        "gan_g": g_adv.item(), "gan_d": d_loss.item()})
        ens_weight = float(cfg.get("ensemble_weight", 0.0))
        if ens_weight > 0:
            target = ensemble_target(m.generator, img * (1 - mask), mask, pred,
                                     int(config_number(cfg, "ensemble_views", 7, 1, 7)))
            ens = masked_mean((pred - target) ** 2, region)
            loss = loss + ens_weight * ens
            metrics["ensemble"] = ens.item()
        return loss, metrics

    def preview(self, model, cfg, val_ds):
        img, mask = val_ds[0]
        model.eval()
        with torch.no_grad():
            out = model(img[None].to(next(model.parameters()).device), mask[None].to(img.device))[0].cpu()
        shown = img * (1 - mask) + 0.5 * mask
        return torch.cat([shown, out, img], 2).permute(1, 2, 0).numpy()


def ensemble_target(generator, image: torch.Tensor, mask: torch.Tensor, pred: torch.Tensor, views: int = 7
                    ) -> torch.Tensor:
    """The self-ensemble distillation target: ``pred`` and the generator's predictions for ``views`` of the 7
    non-trivial rotations / flips of (image, mask) (drawn at random without repetition), each turned back,
    averaged — all without gradients. ``views`` = 7 is exactly ``dihedral_mean``'s 8-way average."""
    turns = [(k, f) for k in range(4) for f in (False, True) if (k, f) != (0, False)]
    with torch.no_grad():
        acc = pred.detach().clone()
        for i in torch.randperm(7)[:views].tolist():
            acc += turned(generator, *turns[i], image, mask)
    return acc / (views + 1)


# -------------------------------------------------------------------------------------------- evaluation
def eval_masks(h: int, w: int, index: int, kind: str) -> np.ndarray:
    """The fixed evaluation mask of image ``index``: one seeded 32×32 square (16-pixel margin), or seeded
    free-form brush strokes."""
    if kind == "square":
        pos = degrade.fixed_square_positions(h, w, 1, seed=index)[0]
        return degrade.square_mask(h, w, pos=pos)[0]
    rng = np.random.default_rng([index, 2024])
    return degrade.brush_mask(h, w, rng, strokes=(2, 4), width_frac=(0.04, 0.09), max_cover=0.25)


def hole_scores(out: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    """PSNR / SSIM inside the hole (SSIM map averaged over hole pixels) and on the whole image."""
    from skimage.metrics import structural_similarity

    from ..metrics import psnr

    hole = mask > 0.5
    mse = float(np.mean((out[hole] - truth[hole]) ** 2))
    _, smap = structural_similarity(out, truth, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    from ..metrics import sobel_edges

    edge = np.abs(sobel_edges(out) - sobel_edges(truth))
    return {"psnr_hole": 10 * np.log10(1 / max(mse, 1e-10)), "ssim_hole": float(smap[hole].mean()),
            "l1_hole": float(np.abs(out[hole] - truth[hole]).mean()), "edge_hole": float(edge[hole].mean()),
            "psnr": psnr(out, truth), "ssim": float(smap.mean())}


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(size, h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return img[y0:y0 + s, x0:x0 + s]


def evaluate(model, card: dict, data: Path, device="cpu", limit: int | None = None, progress: bool = True,
             crop: int = 256, kinds: tuple = ("square", "brush")) -> dict:
    """Centre ``crop``×``crop`` crops of the images in DATA, each with its fixed seeded 32×32 hole and its fixed
    free-form mask; hole and whole-image PSNR / SSIM per mask kind."""
    from .. import data as D
    from ..io import read_image

    files = D.image_files(data)[:limit] if limit else D.image_files(data)
    if not files:
        raise PixmendError(f"{data}: no images")
    it = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc="eval inpaint", unit="img")
    rows = []
    for i, f in enumerate(it):
        truth = center_crop(read_image(f).rgb, crop)
        for kind in kinds:
            mask = eval_masks(*truth.shape[:2], i, kind)
            out = inpaint_rgb(truth * (1 - mask[..., None]), mask, model, device)
            rows.append({"image": f.name, "mask": kind, **hole_scores(out, truth, mask)})
    res = {"task": "inpaint", "model": card.get("name", card["architecture"]), "images": len(files)}
    for kind in kinds:
        sub = [r for r in rows if r["mask"] == kind]
        for k in ("psnr_hole", "ssim_hole", "l1_hole", "edge_hole", "psnr", "ssim"):
            res[f"{kind}_{k}"] = float(np.mean([r[k] for r in sub]))
    res["per_image"] = rows
    return res
