"""WindowSR: the seed's window + channel attention Transformer for ×2 / ×4 super-resolution.

Shape (DaViT-style dual attention, sized for a 2-core CPU):

    LR ─┬─► bicubic ×s (Keys a = −0.5) ────────────────────────────────────────────────────┐
        └─► pad to a window multiple ─► conv 3×3 stem ─► blocks ─► LN ─► conv 3×3 (+ stem)    │
              ─► conv 3×3 → 3·s² channels (zero-initialised) ─► pixel-shuffle ×s ─► crop ──(+)─► SR

Blocks alternate *window* self-attention (tokens = pixels, attention inside 4×4 windows; every other window
block shifted by half a window with Swin's mask, so windows talk to each other) and *channel* ("group")
attention as in DaViT (the channels are the tokens: each head attends across its channel group with the
whole image as the feature vector — a global receptive field at linear cost). Every block is pre-norm with
residuals: ``x += attn(LN(x)); x += MLP(LN(x))``, each preceded by DaViT's depthwise 3×3 convolutional
position encoding. The channel attention uses cosine similarity with a learnt temperature per head (as in
Restormer's transposed attention) instead of a raw dot product, so its logits do not grow with the number of
pixels: a model trained on 48×48 crops does not drift when it runs on 256×256 tiles.

No sub-pixel shift by construction: the output is ``bicubic(LR) + residual`` and the residual head starts at
zero, so the untrained model *is* bicubic and training only learns the detail. The bicubic is Keys' kernel with
a = −0.5 (MATLAB's ``imresize`` and PIL's choice; PyTorch's ``F.interpolate`` uses −0.75, which does not
reproduce linear ramps exactly) with pixel centres at half-integers (``align_corners=False``, as PIL and
``degrade.downsample``) and replicated borders (as ``F.interpolate``): ``bicubic_upsample`` below.

Size (measured with ``torch.utils.flop_counter.FlopCounterMode`` on a 256×256 input; one multiply-add = 2
FLOPs; the default config: dim 48, depth 6 = 3 window + 3 channel blocks, 3 heads, window 4, MLP ratio 2):

    ×2: 146,949 parameters (0.15 M), 20.0 GFLOPs for 256×256 → 512×512
    ×4: 162,537 parameters (0.16 M), 22.0 GFLOPs for 256×256 → 1024×1024

(≈ 0.3 MFLOPs per LR pixel: linear layers 13.6 GFLOPs, convolutions 4.3 / 6.3, attention products 2.1.)
Measured speed of ``tasks.upscale.upscale_rgb`` with 2 threads on a 2-core EPYC that was also running two
trainings: 256×256 → 1024×1024 (×4) in 2.8 s, → 512×512 (×2) in 2.0 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class WindowSRConfig:
    scale: int = 2  # 2 or 4 (any integer ≥ 1 works)
    dim: int = 48  # feature channels
    depth: int = 6  # blocks, alternating window / channel attention (window first)
    heads: int = 3  # heads of both attentions (dim must divide by it)
    channel_groups: int = 0  # channel attention groups: 0 = one per head (DaViT); 1 = all channels together (the seed)
    window: int = 4  # window side, pixels
    shift: bool = True  # shift every other window block by window // 2 (Swin); False = DaViT's plain windows
    mlp_ratio: float = 2.0
    conv_pos: bool = True  # DaViT's depthwise 3×3 convolutional position encoding before attention and MLP
    # Every block starts as the identity (its position encodings, attention projection and MLP output at zero).
    # For growing a trained model: `--init` from a shallower one loads its blocks, and the added blocks start
    # as the identity, so training begins from exactly the smaller model's output.
    zero_init_blocks: bool = False


# ---------------------------------------------------------------------------------------------- bicubic
def keys_cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def bicubic_upsample(x: torch.Tensor, scale: int, a: float = -0.5) -> torch.Tensor:
    """(B, C, h, w) → (B, C, h·s, w·s) bicubic for an integer ``scale``; ``align_corners=False`` geometry
    (HR pixel j samples LR coordinate (j + ½)/s − ½), replicated borders. With a = −0.75 this equals
    ``F.interpolate(mode="bicubic", align_corners=False)``; a = −0.5 reproduces linear ramps exactly."""
    s = int(scale)
    if s == 1:
        return x
    b, c, h, w = x.shape
    phase = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5  # (s,) offsets in (−½, ½)
    taps = torch.arange(-2, 3, dtype=torch.float64)  # LR neighbours i−2 … i+2
    k = keys_cubic(phase[:, None] - taps[None, :], a).to(x.dtype).to(x.device)  # (s, 5)
    xp = F.pad(x.reshape(b * c, 1, h, w), (2, 2, 2, 2), mode="replicate")
    v = F.conv2d(xp, k.view(s, 1, 5, 1))  # (bc, s, h, w + 4): rows, per vertical phase
    o = F.conv2d(v.reshape(b * c * s, 1, h, w + 4), k.view(s, 1, 1, 5))  # (bc·s, s, h, w)
    return o.view(b, c, s, s, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * s, w * s)


# --------------------------------------------------------------------------------------------- attention
def _partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) → (B, nW, w·w, C), windows in row-major order."""
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, (h // w) * (wd // w), w * w, c)


def _merge(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    b, _, _, c = x.shape
    return x.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping w×w windows (optionally cyclically shifted, Swin)."""

    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self._masks: dict = {}

    def _mask(self, h: int, w: int, device) -> torch.Tensor:
        """Additive mask (nW, 1, N, N) that stops shifted windows mixing pixels from opposite image edges."""
        key = (h, w, str(device))
        if key not in self._masks:
            ws, s = self.window, self.shift
            # a normal tensor even when first built under inference_mode (preview during training)
            with torch.inference_mode(False), torch.no_grad():
                region = torch.zeros(1, h, w, 1)
                n = 0
                for ys in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                    for xs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                        region[:, ys, xs, :] = n
                        n += 1
                r = _partition(region, ws)[0, :, :, 0]  # (nW, N)
                m = (r[:, None, :] != r[:, :, None]).float() * -100.0
                self._masks = {key: m[:, None].to(device)}  # one size only: tiles are mostly the same size
        return self._masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C), H and W multiples of the window
        b, h, w, c = x.shape
        ws, s = self.window, self.shift
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        t = _partition(x, ws)  # (B, nW, N, C)
        nw, n = t.shape[1], t.shape[2]
        q, k, v = self.qkv(t).view(b, nw, n, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
        mask = self._mask(h, w, x.device).to(q.dtype) if s else None
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nW, heads, N, d)
        o = self.proj(o.transpose(2, 3).reshape(b, nw, n, c))
        o = _merge(o, ws, h, w)
        if s:
            o = torch.roll(o, shifts=(s, s), dims=(1, 2))
        return o


class ChannelAttention(nn.Module):
    """DaViT's channel ("group") attention: per head, the head's channels attend to each other, each channel
    described by its values at every pixel. Cosine-normalised with a learnt temperature (resolution independent)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.temperature = nn.Parameter(torch.full((heads, 1, 1), 10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        b, h, w, c = x.shape
        n = h * w
        q, k, v = self.qkv(x.reshape(b, n, c)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 4, 1).unbind(0)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)  # (B, heads, d, N)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(-1)  # (B, heads, d, d)
        o = (attn @ v).permute(0, 3, 1, 2).reshape(b, h, w, c)
        return self.proj(o)


class ConvPosEnc(nn.Module):
    """DaViT's convolutional position encoding: x + depthwise 3×3 conv(x), on (B, H, W, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Block(nn.Module):
    def __init__(self, dim: int, kind: str, heads: int, window: int, shift: int, mlp_ratio: float, conv_pos: bool,
                 channel_groups: int = 0):
        super().__init__()
        self.kind = kind
        self.cpe1 = ConvPosEnc(dim) if conv_pos else nn.Identity()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = (WindowAttention(dim, heads, window, shift) if kind == "window"
                     else ChannelAttention(dim, channel_groups or heads))
        self.cpe2 = ConvPosEnc(dim) if conv_pos else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cpe1(x)
        x = x + self.attn(self.norm1(x))
        x = self.cpe2(x)
        return x + self.mlp(self.norm2(x))


# ------------------------------------------------------------------------------------------------ model
class WindowSR(nn.Module):
    def __init__(self, cfg: WindowSRConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or WindowSRConfig()
        if cfg.scale < 1 or cfg.dim % cfg.heads or cfg.window < 1 or (cfg.channel_groups and cfg.dim % cfg.channel_groups):
            raise ValueError(f"bad WindowSR config: {cfg}")
        d = cfg.dim
        self.stem = nn.Conv2d(3, d, 3, padding=1)
        blocks = []
        n_window = 0
        for i in range(cfg.depth):
            if i % 2 == 0:
                shift = cfg.window // 2 if (cfg.shift and n_window % 2 == 1) else 0
                n_window += 1
                blocks.append(Block(d, "window", cfg.heads, cfg.window, shift, cfg.mlp_ratio, cfg.conv_pos))
            else:
                blocks.append(Block(d, "channel", cfg.heads, cfg.window, 0, cfg.mlp_ratio, cfg.conv_pos,
                                    cfg.channel_groups))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d)
        self.conv_after = nn.Conv2d(d, d, 3, padding=1)
        self.head = nn.Conv2d(d, 3 * cfg.scale**2, 3, padding=1)  # residual head, zero-initialised
        self.shuffle = nn.PixelShuffle(cfg.scale)
        # optimiser steps taken so far; saved with the weights so a resumed run keeps its loss schedule
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.int64))
        self.apply(self._init)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if cfg.zero_init_blocks:
            for blk in self.blocks:
                for layer in (blk.attn.proj, blk.mlp[-1]) + tuple(c.conv for c in (blk.cpe1, blk.cpe2)
                                                                 if isinstance(c, ConvPosEnc)):
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @property
    def scale(self) -> int:
        return self.cfg.scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stem(x - 0.5)
        t = f.permute(0, 2, 3, 1)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t).permute(0, 3, 1, 2)
        return f + self.conv_after(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] → (B, 3, h·s, w·s), not clamped."""
        s, ws = self.cfg.scale, self.cfg.window
        h, w = x.shape[-2:]
        base = bicubic_upsample(x, s)
        ph, pw = (-h) % ws, (-w) % ws
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        r = self.shuffle(self.head(self.features(xp)))[..., : h * s, : w * s]
        return base + r


def build(config: dict) -> WindowSR:
    fields = WindowSRConfig.__dataclass_fields__
    return WindowSR(WindowSRConfig(**{k: v for k, v in config.items() if k in fields}))


def flops(model: WindowSR, h: int = 256, w: int = 256) -> int:
    """FLOPs (2 per multiply-add) of one forward pass on an h×w input, by PyTorch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, h, w)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops()
