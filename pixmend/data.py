"""Datasets shared by the tasks.

- ``load_folder`` / ``split_files``: read a folder of training images once into memory (uint8) and split the
  *source images* into train/val so no crop of a validation photo is ever trained on.
- ``PixelDataset``: the seed's pixel sequences (modes ``1D``, ``2D``, ``RAND``) over paired images.
- ``SyntheticCorrectionDataset``: random crops of clean photos degraded on the fly (``degrade.py``).
- ``PairedCropDataset``: aligned random crops from the user's own before/after folders.
- ``SRDataset``: (LR, HR) super-resolution pairs: random HR crops, LR by a random downsampling.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import degrade
from .errors import PixmendError


# ------------------------------------------------------------------------------------------------ folders
def image_files(folder: str | Path) -> list[Path]:
    from .io import IMAGE_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise PixmendError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_uint8(path: Path) -> np.ndarray:
    from .io import read_image

    return degrade.to_uint8(read_image(path).rgb)


def split_files(files: list, val_split: float, seed: int) -> tuple[list, list]:
    """Seeded split of source files; at least one file each side when there are two or more."""
    files = list(files)
    if len(files) < 2 or val_split <= 0:
        return files, files[:0]
    order = np.random.default_rng(seed).permutation(len(files))
    n_val = min(len(files) - 1, max(1, int(round(val_split * len(files)))))
    val = [files[i] for i in sorted(order[:n_val])]
    train = [files[i] for i in sorted(order[n_val:])]
    return train, val


def load_photo_split(data: Path, val_split: float, seed: int, expected: str = "a folder of clean photos"
                     ) -> tuple[list[Path], list[np.ndarray], list[np.ndarray]]:
    """The photos in ``data`` split by source (seeded) and decoded: (train files, train images, validation
    images); with a single photo it validates on that one too."""
    files = image_files(data)
    if not files:
        raise PixmendError(f"{data}: no images (expected {expected})")
    tr, va = split_files(files, val_split, seed)
    return tr, [load_uint8(f) for f in tr], [load_uint8(f) for f in (va or tr[:1])]


def paired_folders(data: Path, input_dir: str = "inputs", output_dir: str = "outputs") -> list[tuple[Path, Path]] | None:
    """The seed's layout: DATA/inputs/x.png paired with DATA/outputs/x.png. None when DATA is not paired."""
    ind, outd = Path(data) / input_dir, Path(data) / output_dir
    if not (ind.is_dir() and outd.is_dir()):
        return None
    outs = {p.stem: p for p in image_files(outd)}
    pairs = [(p, outs[p.stem]) for p in image_files(ind) if p.stem in outs]
    if not pairs:
        raise PixmendError(f"{data}: {input_dir}/ and {output_dir}/ share no file names")
    return pairs


# ------------------------------------------------------------------------------------------ PixelDataset
class PixelDataset(Dataset):
    """The seed's sequences of ``num_pixels`` pixels cut identically from input and target images.

    - ``1D``: the image flattened row-major; windows start every ``stride`` pixels and wrap onto the next row.
    - ``2D``: √n × √n patches every ``stride`` pixels in both directions (n must be a perfect square).
    - ``RAND``: n pixels drawn at random positions (H·W // n samples per image, fresh draws per index/epoch).
    Images are (H, W, 3) uint8 or float arrays; items are float tensors (n, 3) in [0, 1].
    """

    def __init__(self, inputs: list[np.ndarray], targets: list[np.ndarray], num_pixels: int = 128,
                 mode: str = "1D", stride: int = 64, seed: int = 0):
        mode = mode.upper()
        if mode not in ("1D", "2D", "RAND"):
            raise PixmendError(f"dataset mode must be 1D, 2D or RAND, not '{mode}'")
        if len(inputs) != len(targets):
            raise PixmendError("inputs and targets differ in number")
        side = int(round(math.sqrt(num_pixels)))
        if mode == "2D" and side * side != num_pixels:
            raise PixmendError(f"2D mode needs a square number of pixels, not {num_pixels}")
        if stride < 1:
            raise PixmendError("stride must be at least 1")
        self.inputs, self.targets = inputs, targets
        self.n, self.mode, self.stride, self.side, self.seed = num_pixels, mode, stride, side, seed
        self.epoch = 0
        counts = []
        for a, b in zip(inputs, targets):
            if a.shape != b.shape:
                raise PixmendError(f"input and target sizes differ: {a.shape} vs {b.shape}")
            counts.append(self._count(*a.shape[:2]))
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # dimension cache

    def _count(self, h: int, w: int) -> int:
        if self.mode == "1D":
            return max(0, (h * w - self.n) // self.stride + 1)
        if self.mode == "2D":
            if h < self.side or w < self.side:
                return 0
            return ((h - self.side) // self.stride + 1) * ((w - self.side) // self.stride + 1)
        return (h * w) // self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        img = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return img, int(index - self.offsets[img])

    def pixel_indices(self, img: int, local: int, h: int, w: int) -> np.ndarray:
        """Flat (row-major) pixel indices of one sample."""
        if self.mode == "1D":
            start = local * self.stride
            return np.arange(start, start + self.n)
        if self.mode == "2D":
            per_row = (w - self.side) // self.stride + 1
            y0, x0 = (local // per_row) * self.stride, (local % per_row) * self.stride
            yy, xx = np.mgrid[y0:y0 + self.side, x0:x0 + self.side]
            return (yy * w + xx).ravel()
        rng = np.random.default_rng([self.seed, self.epoch, img, local])
        return rng.choice(h * w, size=self.n, replace=False)

    def __getitem__(self, index: int):
        img, local = self.locate(index)
        a, b = self.inputs[img], self.targets[img]
        h, w = a.shape[:2]
        idx = self.pixel_indices(img, local, h, w)
        x = a.reshape(-1, 3)[idx]
        y = b.reshape(-1, 3)[idx]
        scale = 255.0 if a.dtype == np.uint8 else 1.0
        return torch.from_numpy(x.astype(np.float32) / scale), torch.from_numpy(y.astype(np.float32) / scale)


# -------------------------------------------------------------------------------------- synthetic pairs
def random_view(img: np.ndarray, size: int, rng: np.random.Generator, scale_range=(0.5, 1.0)) -> np.ndarray:
    """A random size×size crop at a random zoom-out, randomly flipped/rotated; float32 [0, 1]."""
    from PIL import Image

    h, w = img.shape[:2]
    s = rng.uniform(*scale_range)
    src = int(min(h, w, max(size, round(size / s))))
    y0, x0 = int(rng.integers(0, h - src + 1)), int(rng.integers(0, w - src + 1))
    crop = img[y0:y0 + src, x0:x0 + src]
    if src != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC
                                                       if src < size else Image.Resampling.LANCZOS))
    crop = np.rot90(crop, int(rng.integers(0, 4)))
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop).astype(np.float32) / 255.0


def chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


class SeededDataset(Dataset):
    """Base of the on-the-fly datasets: item ``index`` of epoch ``e`` is drawn from its own seeded generator,
    so any item can be rebuilt exactly (resume, DDP ranks, workers); ``fixed`` datasets (validation) ignore
    the epoch and draw the same items every time. Subclasses set ``seed``, ``length``, ``fixed``."""

    seed: int = 0
    length: int = 0
    fixed: bool = False
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int, *salt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, index, *salt])


class SyntheticCorrectionDataset(SeededDataset):
    """(degraded, clean, sharpen_amount) crops made on the fly from clean photos; seeded per (epoch, index)."""

    def __init__(self, images: list[np.ndarray], crop: int = 256, length: int = 4096, seed: int = 0,
                 p_illustration: float = 0.25, degrade_cfg: degrade.DegradeConfig | None = None, fixed: bool = False,
                 thumb: int = 0, view_max: int = 384, clean_look: float = 0.0, look_warm_only: bool = False,
                 views_only: bool = False):
        if not images:
            raise PixmendError("no training images")
        self.images, self.crop, self.length, self.seed = images, crop, length, seed
        self.p_illustration, self.cfg, self.fixed = p_illustration, degrade_cfg or degrade.DegradeConfig(), fixed
        self.thumb, self.view_max = thumb, view_max
        self.clean_look = float(clean_look)  # strength of degrade.sample_look on the clean photo (0 = off)
        self.look_warm_only = bool(look_warm_only)  # its white balance only from neutral to warm
        if views_only and not thumb:
            raise PixmendError("views_only needs a thumbnail size")
        self.views_only = bool(views_only)  # only (bad_thumb, clean_thumb): trains the colour stage alone, fast
        # wide views are shrunk to view_max anyway: cut them from copies at twice that size (~10x cheaper)
        self.view_images = [shrink_long_side(im, 2 * view_max) for im in images] if thumb else images
        self.epoch = 0

    def __getitem__(self, index: int):
        """(bad, clean, amount); with ``thumb`` also (radius, luma_only, bad_thumb, clean_thumb): a thumbnail
        of a *wide* view of the same photo (40–100 % of each side, any aspect, squashed to thumb×thumb like
        inference squashes a whole image) with the same damage, so the colour stage learns from what it will
        see at inference — whole pictures — while the crop trains the full-resolution stages.
        With ``views_only`` just (bad_thumb, clean_thumb): no full-resolution crop at all."""
        rng = self._rng(index)
        k = int(rng.integers(len(self.images)))
        if self.views_only:
            view = wide_view(self.view_images[k], rng, self.view_max)
            if rng.uniform() < self.p_illustration:
                view = degrade.illustrate(view, rng)
            if self.clean_look > 0:
                view = degrade.apply_look(view, degrade.sample_look(rng, self.clean_look, self.look_warm_only))
            bad_view, _ = degrade.gpt_degrade(view, rng, self.cfg)
            return thumbnail(bad_view, self.thumb), thumbnail(view, self.thumb)
        img = self.images[k]
        clean = random_view(img, min(self.crop, *img.shape[:2]), rng)
        illustrated = rng.uniform() < self.p_illustration
        if illustrated:
            clean = degrade.illustrate(clean, rng)
        look = degrade.sample_look(rng, self.clean_look, self.look_warm_only) if self.clean_look > 0 else None
        if look is not None:
            clean = degrade.apply_look(clean, look)
        bad, deg = degrade.gpt_degrade(clean, rng, self.cfg)
        amount = deg.sharpen.amount if deg.sharpen is not None else 0.0
        out = (chw(bad), chw(clean), torch.tensor(amount, dtype=torch.float32))
        if not self.thumb:
            return out
        radius = deg.sharpen.radius if deg.sharpen is not None else 0.0
        luma = float(deg.sharpen.luma_only) if deg.sharpen is not None else 0.0
        out = out + (torch.tensor(radius, dtype=torch.float32), torch.tensor(luma, dtype=torch.float32))
        view = wide_view(self.view_images[k], rng, self.view_max)
        if illustrated:
            view = degrade.illustrate(view, rng)
        if look is not None:
            view = degrade.apply_look(view, look)
        bad_view = degrade.apply_degradation(view, deg)
        return out + (thumbnail(bad_view, self.thumb), thumbnail(view, self.thumb))


def shrink_long_side(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 image with its long side shrunk to ``size`` (unchanged when already smaller)."""
    from PIL import Image

    h, w = img.shape[:2]
    if max(h, w) <= size:
        return img
    s = size / max(h, w)
    return np.asarray(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                  Image.Resampling.LANCZOS))


def wide_view(img: np.ndarray, rng: np.random.Generator, max_side: int = 384) -> np.ndarray:
    """A random window covering 40–100 % of each side of ``img``, shrunk to ``max_side``, maybe flipped or
    rotated; float32 [0, 1]."""
    h, w = img.shape[:2]
    vh, vw = max(1, int(h * rng.uniform(0.4, 1.0))), max(1, int(w * rng.uniform(0.4, 1.0)))
    y0, x0 = int(rng.integers(0, h - vh + 1)), int(rng.integers(0, w - vw + 1))
    region = shrink_long_side(img[y0:y0 + vh, x0:x0 + vw], max_side)
    region = np.rot90(region, int(rng.integers(0, 4)))
    if rng.uniform() < 0.5:
        region = region[:, ::-1]
    return np.ascontiguousarray(region).astype(np.float32) / 255.0


def thumbnail(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(3, size, size): the same antialiased squash ``GLTransformer.thumbnail`` applies to a whole image."""
    import torch.nn.functional as F

    x = chw(rgb)[None]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


class PairedCropDataset(SeededDataset):
    """Aligned random crops from (input, target) image pairs, for users' own before/after data."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], crop: int = 256, length: int = 4096,
                 seed: int = 0, fixed: bool = False):
        if not pairs:
            raise PixmendError("no training pairs")
        for a, b in pairs:
            if a.shape != b.shape:
                raise PixmendError(f"paired images differ in size: {a.shape} vs {b.shape}")
        self.pairs, self.crop, self.length, self.seed, self.fixed = pairs, crop, length, seed, fixed
        self.epoch = 0

    def __getitem__(self, index: int):
        rng = self._rng(index)
        a, b = self.pairs[int(rng.integers(len(self.pairs)))]
        h, w = a.shape[:2]
        c = min(self.crop, h, w)
        y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        k, flip = int(rng.integers(0, 4)), rng.uniform() < 0.5

        def view(m):
            m = np.rot90(m[y0:y0 + c, x0:x0 + c], k)
            return np.ascontiguousarray(m[:, ::-1] if flip else m).astype(np.float32) / 255.0

        return chw(view(a)), chw(view(b)), torch.tensor(-1.0)  # -1: sharpening amount unknown


class SRDataset(SeededDataset):
    """(lr, hr) pairs for super-resolution, made on the fly from clean photos; seeded per (epoch, index).

    A random ``lr_crop·scale`` HR square (smaller only when a photo is), randomly rotated by a multiple of 90°
    and flipped, and its LR version by ``degrade.random_downsample`` (bilinear, bicubic or area: uniformly, or
    with ``method_weights``), optionally rounded to 8 bits (``quantize``).
    ``fixed=True`` (validation) draws the same crops every epoch. Items are float tensors (3, c, c) and
    (3, c·s, c·s) in [0, 1].
    """

    def __init__(self, images: list[np.ndarray], scale: int = 2, lr_crop: int = 48, length: int = 4096,
                 seed: int = 0, fixed: bool = False, methods: tuple = degrade.DOWNSAMPLE_METHODS,
                 blur_prob: float = 0.0, noise_prob: float = 0.0, method_weights: tuple | None = None,
                 quantize: bool = False, hr_zoom: float = 1.0):
        if not images:
            raise PixmendError("no training images")
        self.images, self.scale, self.lr_crop, self.length = images, int(scale), int(lr_crop), int(length)
        # the SR seed's "random blurring and random noise" experiment (off by default: it did not help there)
        self.blur_prob, self.noise_prob = float(blur_prob), float(noise_prob)
        self.seed, self.fixed, self.methods = seed, fixed, tuple(methods)
        # relative probability of each method (None: uniform, the seed's recipe); quantize: round the LR to
        # 8 bits, as every LR image a user has is stored
        self.method_weights = tuple(method_weights) if method_weights is not None else None
        self.quantize = bool(quantize)
        # scale augmentation (as FSRCNN and VDSR trained): each HR crop is cut from the photo shrunk by a random
        # factor in [hr_zoom, 1] (1 = off), so 44 photos give detail at many scales, as crisp as a downscale is
        self.hr_zoom = float(hr_zoom)
        self.epoch = 0
        smallest = min(min(im.shape[:2]) for im in images)
        if smallest < self.scale:
            raise PixmendError(f"training images must be at least {self.scale} pixels on each side")
        self.hr_crop = min(self.lr_crop, smallest // self.scale) * self.scale

    def __getitem__(self, index: int):
        rng = self._rng(index)
        img = self.images[int(rng.integers(len(self.images)))]
        h, w = img.shape[:2]
        c = self.hr_crop
        src = c
        if self.hr_zoom < 1.0:  # guarded: no draws when off (the same stream as before)
            src = min(h, w, max(c, round(c / rng.uniform(self.hr_zoom, 1.0))))
        y0, x0 = int(rng.integers(0, h - src + 1)), int(rng.integers(0, w - src + 1))
        hr = img[y0:y0 + src, x0:x0 + src]
        if src != c:
            from PIL import Image

            if hr.dtype == np.uint8:
                hr = np.asarray(Image.fromarray(hr).resize((c, c), Image.Resampling.LANCZOS))
            else:  # float photos: channel by channel in Pillow's 32-bit float mode
                hr = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(hr[..., i], dtype=np.float32))
                                          .resize((c, c), Image.Resampling.LANCZOS)) for i in range(3)], axis=-1)
                hr = np.clip(hr, 0.0, 1.0)
        hr = np.rot90(hr, int(rng.integers(0, 4)))
        if rng.uniform() < 0.5:
            hr = hr[:, ::-1]
        hr = np.ascontiguousarray(hr).astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
        lr, _ = degrade.random_downsample(hr, self.scale, rng, self.methods, self.method_weights)
        if self.blur_prob > 0 and rng.uniform() < self.blur_prob:  # guarded: no draws when off (same stream)
            lr = degrade.gaussian_blur(lr, float(rng.uniform(0.2, 1.0)))
        if self.noise_prob > 0 and rng.uniform() < self.noise_prob:
            lr = np.clip(lr + rng.normal(0.0, rng.uniform(0.0, 0.02), lr.shape), 0, 1).astype(np.float32)
        if self.quantize:
            lr = (np.round(np.clip(lr, 0, 1) * 255.0) / 255.0).astype(np.float32)
        return chw(lr), chw(hr)


# ------------------------------------------------------------------------------- token crops (generate)
def labelled_image_files(folder: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """Images in ``folder`` and in its sub-folders; each sub-folder's name is the label of its images.
    Returns ([(path, label index)], label names); images directly in ``folder`` get label -1 (none)."""
    folder = Path(folder)
    items = [(p, -1) for p in image_files(folder)]
    subs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and image_files(d))
    names = [d.name for d in subs]
    for i, d in enumerate(subs):
        items += [(p, i) for p in image_files(d)]
    return items, names


def shrink_short_side(img: np.ndarray, short: int) -> np.ndarray:
    """Downscale (LANCZOS) so the shorter side is ``short``; smaller images are returned as they are."""
    from PIL import Image

    h, w = img.shape[:2]
    if min(h, w) <= short:
        return img
    s = short / min(h, w)
    size = (max(short, round(w * s)), max(short, round(h * s)))
    return np.asarray(Image.fromarray(degrade.to_uint8(img) if img.dtype != np.uint8 else img)
                      .resize(size, Image.Resampling.LANCZOS))


def square_resize(img: np.ndarray, size: int, y0: int | None = None, x0: int | None = None,
                  side: int | None = None) -> np.ndarray:
    """A square crop (centred unless ``y0, x0, side`` are given) resized to size×size; float32 [0, 1]."""
    from PIL import Image

    h, w = img.shape[:2]
    side = side or min(h, w)
    y0 = (h - side) // 2 if y0 is None else y0
    x0 = (w - side) // 2 if x0 is None else x0
    crop = img[y0:y0 + side, x0:x0 + side]
    u8 = crop if crop.dtype == np.uint8 else degrade.to_uint8(crop)
    if side != size:
        u8 = np.asarray(Image.fromarray(np.ascontiguousarray(u8)).resize((size, size), Image.Resampling.LANCZOS))
    return u8.astype(np.float32) / 255.0


class TokenCropDataset(SeededDataset):
    """(tokens (L,) int64, label int64) for the autoregressive model: a random square crop (a random fraction
    ``scale_range`` of the shorter side) of a photo, resized to size×size, flipped left-right at random and
    tokenised (``pixmend.tokens``). Seeded per (seed, epoch, index); ``fixed`` ignores the epoch (validation)."""

    def __init__(self, images: list[np.ndarray], labels: list[int] | None, tokenizer, size: int = 32,
                 length: int = 4096, seed: int = 0, scale_range=(0.35, 1.0), flip: bool = True, fixed: bool = False):
        if not images:
            raise PixmendError("no training images")
        self.images, self.tokenizer, self.size, self.length, self.seed = images, tokenizer, size, length, seed
        self.labels = list(labels) if labels is not None else [-1] * len(images)
        self.scale_range, self.flip, self.fixed = tuple(scale_range), flip, fixed
        self.epoch = 0

    def crop(self, index: int) -> tuple[np.ndarray, int]:
        rng = self._rng(index)
        i = int(rng.integers(len(self.images)))
        img = self.images[i]
        h, w = img.shape[:2]
        short = min(h, w)
        side = int(np.clip(round(rng.uniform(*self.scale_range) * short), min(self.size, short), short))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        out = square_resize(img, self.size, y0, x0, side)
        if self.flip and rng.uniform() < 0.5:
            out = np.ascontiguousarray(out[:, ::-1])
        return out, self.labels[i]

    def __getitem__(self, index: int):
        rgb, label = self.crop(index)
        tokens = self.tokenizer.encode(rgb).reshape(-1)
        return torch.from_numpy(tokens.astype(np.int64)), torch.tensor(label, dtype=torch.long)


# ------------------------------------------------------------------------------------- inpainting crops
def split_three(files: list, val_split: float, test_split: float, seed: int) -> tuple[list, list, list]:
    """Seeded train / validation / test split of source files (the inpainting seed's 80/10/10)."""
    rest, test = split_files(files, test_split, seed + 101) if test_split > 0 else (list(files), [])
    frac = val_split / max(1e-9, 1 - test_split)
    train, val = split_files(rest, frac, seed)
    return train, val, test


class InpaintDataset(SeededDataset):
    """(image, mask) pairs for inpainting, made on the fly from clean photos; seeded per (epoch, index).

    A random ``crop``×``crop`` view (random zoom-out 0.5–1×, 90° rotations, flips: ``random_view``) and a
    mask from ``degrade.random_mask``: the seed's 32×32 square with a 16-pixel margin (probability
    ``mask_probs[0]``), a rectangle, or free-form brush strokes. ``fixed=True`` (validation / test) draws the
    same crops and masks every epoch — the seed's fixed evaluation holes. Items: (3, c, c) image in [0, 1] and
    (1, c, c) mask, 1 = hole.
    """

    def __init__(self, images: list[np.ndarray], crop: int = 64, length: int = 4096, seed: int = 0,
                 fixed: bool = False, mask_probs: tuple = (0.5, 0.2, 0.3), hole: int = 32, margin: int = 16,
                 zoom_range: tuple = (0.5, 1.0), look_jitter: float = 0.0, brush_width: tuple | None = None):
        if not images:
            raise PixmendError("no training images")
        if crop % 8:
            raise PixmendError(f"crop must be a multiple of 8, not {crop}")
        self.images, self.crop, self.length, self.seed, self.fixed = images, int(crop), int(length), seed, fixed
        self.mask_probs, self.hole, self.margin = tuple(mask_probs), int(hole), int(margin)
        # augmentation against memorising few photos: a wider zoom-out range, and random photo looks (white
        # balance, tint, black level, tone, saturation: degrade.sample_look at this strength; 0 = off)
        self.zoom_range, self.look_jitter = (float(zoom_range[0]), float(zoom_range[1])), float(look_jitter)
        self.brush_width = brush_width  # stroke widths in pixels (None: degrade.random_mask's default)
        self.epoch = 0

    def __getitem__(self, index: int):
        rng = self._rng(index, 7)
        img = self.images[int(rng.integers(len(self.images)))]
        view = random_view(img, self.crop, rng, self.zoom_range)
        mask, _ = degrade.random_mask(self.crop, self.crop, rng, self.mask_probs, self.hole, self.margin,
                                      self.brush_width)
        if self.look_jitter > 0:  # drawn last and only when on: the views and masks stay those of the seed
            view = degrade.apply_look(view, degrade.sample_look(rng, self.look_jitter))
        return chw(view), torch.from_numpy(mask)[None]
