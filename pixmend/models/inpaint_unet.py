"""InpaintGAN: the seed's U-Net generator with bottleneck self-attention, and its light PatchGAN critic.

Generator (input: the image with the hole greyed out + the mask, 4 channels; output: a full RGB image)::

    enc1 (c) ─pool─ enc2 (2c) ─pool─ enc3 (4c) ─pool─ bottleneck (4c) + SAGAN self-attention
         │              │               │                    │
       dec1 (c) ─up── dec2 (2c) ──up── dec3 (4c) ───up───────┘        skip connections by concatenation
         └─► 1×1 conv ─► sigmoid ─► composite: known pixels from the input, generated ones only in the hole

With ``prefill`` (the default) the hole is first filled by push-pull interpolation (a smooth, diffusion-like
fill from the known pixels around it, as OpenCV's classical inpainting gives), the network sees that instead of
a flat grey, and its zero-initialised head adds a residual: the untrained model *is* the smooth fill and
training only has to learn structure and texture (the same design as ``window_sr``'s bicubic + residual). With
``prefill = false`` it is the seed's plain version: grey hole in, sigmoid image out.

Each encoder / decoder stage is two 3×3 convolutions with LeakyReLU; max-pooling goes down, nearest
upsampling + a 3×3 convolution goes up (no checkerboard from transposed convolutions). The bottleneck's
self-attention is SAGAN's (Zhang et al., 2019): query/key projections to channels/8, value at full width, a
learnt gate ``gamma`` that starts at 0 so training begins as a plain U-Net. At 1/8 resolution it gives every
hole pixel the whole window as context at small cost.

Discriminator: a fully convolutional PatchGAN (stride-2 convolutions, spectral norm, LeakyReLU) that scores
overlapping patches as real or fake; it sees the image and the mask so it knows where to look.

Both live in one module so that one optimiser, one checkpoint and DDP cover them; ``forward`` is inference
(generator + composite), ``critic`` scores images. The training losses are in ``tasks/inpaint.py``.

Size (``torch.utils.flop_counter`` on a 64×64 window, multiply-add = 2 FLOPs; base 32): generator 1.42 M
parameters, 1.41 GFLOPs (≈ 0.34 MFLOPs per pixel); discriminator 72 k parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class InpaintConfig:
    base_channels: int = 32  # the seed: 64 for "hole + context", 32 for "whole image"
    attention: bool = True  # SAGAN self-attention at the bottleneck
    disc_channels: int = 32  # the seed's discriminator base width
    fill_value: float = 0.5  # what the generator sees inside the hole when prefill is off
    prefill: bool = True  # fill the hole by push-pull interpolation first and learn a residual over it
    prefill_levels: int = 6  # pyramid levels of the push-pull fill (a 64-px window: down to 1 px)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))


class SelfAttention(nn.Module):
    """SAGAN self-attention over all positions of a feature map; query/key at channels/8."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 8)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        k = self.key(x).flatten(2).transpose(1, 2)
        v = self.value(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # SAGAN: softmax(QᵀK) without scaling
        return x + self.gamma * out.transpose(1, 2).reshape(b, c, h, w)


def pushpull_fill(image: torch.Tensor, known: torch.Tensor, levels: int = 6, smooth_steps: int = 24) -> torch.Tensor:
    """Smooth hole filling: a push-pull pyramid (Gortler et al., "The Lumigraph", 1996) whose pull phase relaxes
    each level towards the harmonic (membrane) interpolant — ``smooth_steps`` Jacobi iterations per level, the
    unknown cells taking the mean of their four neighbours, known cells held — a small multigrid solve of the
    Laplace equation in the hole, the classical diffusion fill. Known pixels come back unchanged; cells with
    nothing known even at the coarsest level take the mean of all known pixels."""
    pyramid = []
    x, w = image * known, known
    for _ in range(levels):
        pyramid.append((x, w))
        x = F.avg_pool2d(x, 2, ceil_mode=True)
        w = F.avg_pool2d(w, 2, ceil_mode=True)
    total = known.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    mean = (image * known).sum(dim=(2, 3), keepdim=True) / total
    filled = torch.where(w > 1e-6, x / w.clamp_min(1e-6), mean)
    c = int(image.shape[1])  # a constant (3) even when traced for export
    kernel = image.new_tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).view(1, 1, 3, 3)
    kernel = kernel.repeat(c, 1, 1, 1)
    for x, w in reversed(pyramid):
        up = F.interpolate(filled, size=x.shape[-2:], mode="bilinear", align_corners=False)
        a = w.clamp(0, 1)
        data = x / w.clamp_min(1e-6)
        filled = data * a + up * (1 - a)
        for _ in range(smooth_steps):
            nb = F.conv2d(F.pad(filled, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
            filled = data * a + nb * (1 - a)
    return filled


class Generator(nn.Module):
    def __init__(self, cfg: InpaintConfig):
        super().__init__()
        c = cfg.base_channels
        self.fill_value = cfg.fill_value
        self.prefill, self.levels = cfg.prefill, cfg.prefill_levels
        self.enc1, self.enc2, self.enc3 = _block(4, c), _block(c, 2 * c), _block(2 * c, 4 * c)
        self.bottleneck = _block(4 * c, 4 * c)
        self.attention = SelfAttention(4 * c) if cfg.attention else nn.Identity()
        self.up3, self.dec3 = nn.Conv2d(4 * c, 4 * c, 3, padding=1), _block(8 * c, 4 * c)
        self.up2, self.dec2 = nn.Conv2d(4 * c, 2 * c, 3, padding=1), _block(4 * c, 2 * c)
        self.up1, self.dec1 = nn.Conv2d(2 * c, c, 3, padding=1), _block(2 * c, c)
        self.head = nn.Conv2d(c, 3, 1)
        if self.prefill:  # start as the push-pull fill; training learns the detail on top
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @staticmethod
    def _up(conv: nn.Module, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(conv(F.interpolate(x, size=like.shape[-2:], mode="nearest")), 0.2)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [0, 1], mask (B, 1, H, W) with 1 = hole → raw prediction (B, 3, H, W).
        H and W must be multiples of 8."""
        known = 1 - mask
        base = pushpull_fill(image, known, self.levels) if self.prefill else None
        x = torch.cat([image * known + (base if base is not None else self.fill_value) * mask, mask], 1)
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        b = self.attention(self.bottleneck(F.max_pool2d(e3, 2)))
        d3 = self.dec3(torch.cat([self._up(self.up3, b, e3), e3], 1))
        d2 = self.dec2(torch.cat([self._up(self.up2, d3, e2), e2], 1))
        d1 = self.dec1(torch.cat([self._up(self.up1, d2, e1), e1], 1))
        if base is not None:
            return base + self.head(d1)
        return torch.sigmoid(self.head(d1))


class PatchDiscriminator(nn.Module):
    """Light PatchGAN: image + mask → one logit per overlapping patch (receptive field ≈ 34 px)."""

    def __init__(self, cfg: InpaintConfig):
        super().__init__()
        c = cfg.disc_channels
        sn = nn.utils.parametrizations.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(4, c, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(2 * c, 2 * c, 3, 1, 1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(2 * c, 1, 3, 1, 1)))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image * 2 - 1, mask], 1))


class InpaintGAN(nn.Module):
    """Generator + discriminator. ``forward(image, mask)`` returns the inpainted image: every known pixel
    exactly as given, generated pixels only where ``mask`` is 1."""

    def __init__(self, cfg: InpaintConfig):
        super().__init__()
        self.cfg = cfg
        self.generator = Generator(cfg)
        self.discriminator = PatchDiscriminator(cfg)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, raw: bool = False):
        pred = self.generator(image, mask)
        out = image * (1 - mask) + pred.clamp(0, 1) * mask
        return (out, pred) if raw else out

    def critic(self, image: torch.Tensor, mask: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Patch logits. ``frozen=True``: gradients reach the image but not the discriminator's weights (the
        generator's adversarial term), so one optimiser step can update both networks."""
        if not frozen:
            return self.discriminator(image, mask)
        from torch.func import functional_call

        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        buffers = dict(self.discriminator.named_buffers())
        return functional_call(self.discriminator, {**params, **buffers}, (image, mask))


def build(cfg: dict) -> InpaintGAN:
    fields = InpaintConfig.__dataclass_fields__
    return InpaintGAN(InpaintConfig(**{k: v for k, v in cfg.items() if k in fields}))
