"""Autoregressive image modelling with ``pixel-gpt``: completion, generation, bits/dim, and its training recipe.

Images are modelled at ``image_size`` (32) pixels square as token grids (``pixmend.tokens``; HSV 5-4-4 by
default). The model card's config carries the tokenizer settings (``tokenizer``, ``hsv_bits`` or the fitted
``palette``, ``image_size``) and the class names (``label_names``) of a conditional model, so loading a model
rebuilds exactly the tokenizer it was trained with.

- ``complete_rgb``: keep the top ``keep`` fraction of token rows of an image, sample the rest.
- ``generate_images``: sample whole images, optionally conditioned on a label.
- ``evaluate``: bits per dimension = NLL in bits / (pixels × 3) of images resized/cropped to image_size.
- ``GenerateTask``: next-token cross-entropy on random square crops of downscaled photos (``pixmend train
  generate``), labels from sub-folder names; TensorBoard shows completions and samples each epoch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import PixmendError

LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------------------ helpers
def model_config(card: dict) -> dict:
    return card.get("config", {})


def image_size(card: dict) -> int:
    return int(model_config(card).get("image_size", 32))


def load_tokenizer(card: dict):
    from ..tokens import tokenizer_from_config

    return tokenizer_from_config(model_config(card))


def resolve_label(card: dict, label) -> int | None:
    """A class name (a training sub-folder) or index → index; None stays None (unconditional)."""
    if label is None:
        return None
    cfg = model_config(card)
    n = int(cfg.get("n_labels", 0))
    names = list(cfg.get("label_names") or [])
    if n == 0:
        raise PixmendError("this model is unconditional (it was trained without labelled sub-folders); "
                           "drop --label")
    if str(label) in names:
        return names.index(str(label))
    try:
        i = int(label)
    except (TypeError, ValueError):
        i = -1
    if 0 <= i < n:
        return i
    known = ", ".join(names) if names else f"0..{n - 1}"
    raise PixmendError(f"unknown label '{label}' (this model knows: {known})")


def upscale_nearest(rgb: np.ndarray, scale: int) -> np.ndarray:
    scale = int(scale)
    if scale < 1:
        raise PixmendError(f"--view-scale must be a positive integer, not {scale}")
    return rgb if scale == 1 else np.repeat(np.repeat(rgb, scale, 0), scale, 1)


def make_grid(images: list[np.ndarray], cols: int | None = None, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile equally sized images row by row (``cols`` default ⌈√n⌉) with ``gap`` pixels of ``fill`` between."""
    if not images:
        raise PixmendError("no images for the grid")
    n = len(images)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = images[0].shape[:2]
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), fill, dtype=np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = im
    return out


def _device(model):
    return next(model.parameters()).device


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def token_grid(rgb: np.ndarray, card: dict, tokenizer=None) -> np.ndarray:
    """The model's view of an image: centre square, resized to image_size, tokenised → (g, g) int64."""
    from ..data import square_resize

    tok = tokenizer or load_tokenizer(card)
    return tok.encode(square_resize(rgb, image_size(card)))


# ---------------------------------------------------------------------------------------------- inference
def complete_rgb(rgb: np.ndarray, model, card: dict, keep: float = 0.5, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0, label=None, progress=None) -> np.ndarray:
    """Keep the top ``keep`` fraction of rows (of the image_size² quantised image) and sample the rest.
    Returns float32 (image_size, image_size, 3); the kept rows are the input's quantised pixels exactly."""
    if not 0.0 <= keep <= 1.0:
        raise PixmendError(f"--keep must be between 0 and 1, not {keep}")
    tok = load_tokenizer(card)
    grid = token_grid(rgb, card, tok)
    g_h, g_w = grid.shape
    rows = min(g_h, max(0, int(round(keep * g_h))))
    prefix = torch.from_numpy(grid[:rows].reshape(1, -1).copy())
    lab = resolve_label(card, label)
    out = model.generate(prefix, (g_h - rows) * g_w, labels=lab, temperature=temperature, top_k=top_k,
                         generator=_generator(seed), progress=progress)
    return tok.decode(out[0].cpu().numpy().reshape(g_h, g_w))


def generate_tokens(model, card: dict, num: int, seed: int = 0, label=None, temperature: float = 1.0,
                    top_k: int | None = None, batch_size: int = 16, progress=None) -> np.ndarray:
    """(num, g, g) int64 token grids sampled from the start (or label) token; deterministic per seed."""
    if num < 1:
        raise PixmendError(f"--num must be at least 1, not {num}")
    g = image_size(card) // getattr(load_tokenizer(card), "patch", 1)
    lab = resolve_label(card, label)
    gen = _generator(seed)
    out = []
    for i in range(0, num, batch_size):
        b = min(batch_size, num - i)
        t = model.generate(None, g * g, labels=lab, temperature=temperature, top_k=top_k, generator=gen,
                           batch=b, progress=progress)
        out.append(t.cpu().numpy().reshape(b, g, g))
    return np.concatenate(out)


def generate_images(model, card: dict, num: int, seed: int = 0, label=None, temperature: float = 1.0,
                    top_k: int | None = None, batch_size: int = 16, progress=None) -> list[np.ndarray]:
    """``num`` sampled images, float32 (image_size, image_size, 3) each."""
    tok = load_tokenizer(card)
    return [tok.decode(t) for t in generate_tokens(model, card, num, seed, label, temperature, top_k,
                                                   batch_size, progress)]


# --------------------------------------------------------------------------------------------- likelihood
def nll_bits(model, tokens: torch.Tensor, labels=None, batch_size: int = 16) -> torch.Tensor:
    """Negative log-likelihood in bits of each token sequence (N, L) → (N,)."""
    dev = _device(model)
    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), batch_size):
            t = tokens[i:i + batch_size].to(dev)
            lab = None if labels is None else labels[i:i + batch_size].to(dev)
            ce = model.token_nll(model.hidden(t[:, :-1], lab), t)  # (B, L) nats
            out.append(ce.double().sum(1).cpu() / LN2)
    return torch.cat(out)


def evaluate(model, card: dict, data: Path, device="cpu", limit: int | None = None, progress: bool = True) -> dict:
    """Bits per dimension of the model on a folder's images (each centre-cropped and resized to image_size,
    tokenised with the model's tokenizer): NLL in bits / (pixels × 3). Images in sub-folders named like the
    model's labels are scored conditionally on that label."""
    from .. import data as D
    from ..io import read_image
    from ..tokens import describe

    items, names = D.labelled_image_files(data)
    if not items:
        raise PixmendError(f"{data}: no images")
    items = items[:limit] if limit else items
    cfg = model_config(card)
    model_names = list(cfg.get("label_names") or [])
    conditional = int(cfg.get("n_labels", 0)) > 0
    tok = load_tokenizer(card)
    size = image_size(card)
    grids, labels = [], []
    it = items
    if progress:
        from tqdm import tqdm
        it = tqdm(items, desc="eval generate", unit="img")
    for path, li in it:
        grids.append(token_grid(read_image(path).rgb, card, tok).reshape(-1))
        name = names[li] if li >= 0 else None
        labels.append(model_names.index(name) if name in model_names else -1)
    tokens = torch.from_numpy(np.stack(grids))
    lab = torch.tensor(labels) if conditional else None
    bits = nll_bits(model, tokens, lab).numpy()
    dims = size * size * 3
    rows = [{"image": Path(p).name, "bits_per_dim": float(b / dims)} for (p, _), b in zip(items, bits)]
    return {"task": "generate", "model": card.get("name", card.get("architecture")), "tokenizer": describe(tok),
            "image_size": size, "images": len(rows), "bits_per_dim": float(bits.sum() / (dims * len(rows))),
            "per_image": rows}


# ----------------------------------------------------------------------------------------------- training
class GenerateTask:
    """Training recipe for ``pixel-gpt`` (``pixmend train generate``)."""

    name = "generate"

    def defaults(self, architecture: str) -> dict:
        from ..models.pixel_gpt import PixelGPTConfig

        return {**PixelGPTConfig().__dict__, "tokenizer": "hsv", "hsv_bits": [5, 4, 4], "image_size": 32,
                "palette_size": 512, "batch_size": 16, "samples_per_epoch": 4096, "peak_learning_rate": 1e-3,
                "warmup_steps": 200, "weight_decay": 0.1, "betas": [0.9, 0.95], "val_every": 250,
                "val_batches": 4, "prescale": 96, "crop_scale_min": 0.35, "label_dropout": 0.1,
                "preview_samples": 4, "palette_fit_crops": 512, "loss_fraction": 1.0}

    # -- data
    def datasets(self, cfg: dict, data: Path):
        """Also completes ``cfg`` before the trainer builds the model and writes the card: the label names
        (sub-folders), the fitted palette of a palette/patch tokenizer, the vocabulary and sequence length."""
        from .. import data as D
        from ..tokens import tokenizer_from_config

        seed = int(cfg["seed"])
        items, names = D.labelled_image_files(data)
        if not items:
            raise PixmendError(f"{data}: no images (expected photos, optionally in one sub-folder per label)")
        tr, va = D.split_files(items, float(cfg["val_split"]), seed)
        va = va or tr[:1]
        prescale = int(cfg.get("prescale", 96))
        load = lambda its: [D.shrink_short_side(D.load_uint8(p), prescale) for p, _ in its]  # noqa: E731
        tr_imgs, va_imgs = load(tr), load(va)
        cfg["n_labels"] = len(names)
        cfg["label_names"] = names
        size = int(cfg.get("image_size", 32))
        kw = dict(size=size, scale_range=(float(cfg.get("crop_scale_min", 0.35)), 1.0))
        tok = tokenizer_from_config(cfg)
        if getattr(tok, "kind", "hsv") != "hsv" and cfg.get("palette") is None:
            fit_ds = D.TokenCropDataset(tr_imgs, None, tok, length=int(cfg.get("palette_fit_crops", 512)),
                                        seed=seed + 7, **kw)
            tok.fit([fit_ds.crop(i)[0] for i in range(len(fit_ds))], seed=seed)
        cfg.update(tok.config())
        grid = size // getattr(tok, "patch", 1)
        cfg["vocab_size"], cfg["block_size"], cfg["image_width"] = tok.vocab_size, grid * grid, grid
        n_val = int(cfg["val_batches"]) * int(cfg["batch_size"])
        train_ds = D.TokenCropDataset(tr_imgs, [li for _, li in tr], tok, length=int(cfg["samples_per_epoch"]),
                                      seed=seed, **kw)
        val_ds = D.TokenCropDataset(va_imgs, [li for _, li in va], tok, length=n_val, seed=seed + 1, fixed=True,
                                    **kw)
        train_ds.num_sources = len(tr)
        return train_ds, val_ds

    # -- loss: next-token cross-entropy over the whole image
    def loss(self, model, batch, cfg):
        tokens, labels = batch
        if int(cfg.get("n_labels", 0)) == 0:
            labels = None
        elif model.training and float(cfg.get("label_dropout", 0)) > 0:  # also learn the unconditional model
            drop = torch.rand(labels.shape, device=labels.device) < float(cfg["label_dropout"])
            labels = torch.where(drop, torch.full_like(labels, -1), labels)
        frac = float(cfg.get("loss_fraction", 1.0))
        if model.training and frac < 1.0:  # logits at a random subset of positions (see PixelGPT.forward)
            k = max(1, int(round(frac * tokens.shape[1])))
            at = torch.randperm(tokens.shape[1], device=tokens.device)[:k].sort().values
            _, loss = model(tokens[:, :-1], labels, targets=tokens[:, at], logits_at=at)
        else:
            _, loss = model(tokens[:, :-1], labels, targets=tokens)
        size = int(cfg.get("image_size", 32))
        bpd = loss.item() * tokens.shape[1] / (LN2 * size * size * 3)
        return loss, {"bits_per_dim": bpd}

    # -- TensorBoard picture: quantised val crops | their completions (top half kept) | samples
    def preview(self, model, cfg, val_ds):
        n = int(cfg.get("preview_samples", 4))
        if n <= 0:
            return None
        card = {"architecture": "pixel-gpt", "config": cfg}
        tok = load_tokenizer(card)
        model.eval()
        g = val_ds.size // getattr(tok, "patch", 1)
        toks = torch.stack([val_ds[i][0] for i in range(min(n, len(val_ds)))]).reshape(-1, g, g)
        gen = _generator(0)
        prefix = toks[:, :g // 2].reshape(len(toks), -1)
        done = model.generate(prefix, g * (g - g // 2), generator=gen).cpu().numpy().reshape(-1, g, g)
        samples = model.generate(None, g * g, generator=gen, batch=n).cpu().numpy().reshape(-1, g, g)
        ims = [tok.decode(t) for t in toks.numpy()] + [tok.decode(t) for t in done] + [tok.decode(t) for t in samples]
        cols = max(len(toks), n)
        return upscale_nearest(make_grid(ims, cols=cols, gap=1), 4)
