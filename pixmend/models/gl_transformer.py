"""GLTransformer: the default corrector — a global colour stage plus a local detail stage.

Why this shape: real GPT-image damage is mostly a *global* colour map (GUIDE §5: an affine colour fit explains
real pairs to 3.6–8.8/255) plus *local* over-sharpening haloes. So:

1. Global stage (resolution independent, a few ms): the whole image is resized to a ``thumb_size`` thumbnail,
   a two-layer conv stem cuts it into 8×8 patch tokens, and a small Transformer encoder reads them with a
   [CLS] token. From [CLS] it predicts an image-adaptive colour transform — three monotone per-channel tone
   curves followed by a 3×3 matrix + offset — which is then applied to every full-resolution pixel. It also
   predicts the sharpening amount (shown by ``pixmend inspect``) and a conditioning vector for stage 2.
2. Local stage (full resolution, through ``pixmend.tiling``): a small residual CNN working at half resolution
   after a pixel-unshuffle (wide receptive field for the FLOPs) removes haloes and crunch. Its first layer is
   biased by the global conditioning vector, so it knows how hard the image was sharpened and leaves clean
   images alone. The last layer starts at zero so the untrained model is the identity.

The whole model is trained jointly by ``pixmend train correct``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


STAT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass
class GLTransformerConfig:
    thumb_size: int = 128  # global stage input, pixels per side
    stem_channels: int = 48
    dim: int = 128  # Transformer width
    depth: int = 4
    heads: int = 4
    token_grid: int = 8  # thumbnail → token_grid² patch tokens
    curve_knots: int = 16  # pieces of each monotone tone curve
    local_width: int = 32
    local_depth: int = 4  # hidden 3×3 convs at half resolution
    local_margin: int = 16  # receptive-field radius (px) the tiler must give each tile


@dataclass
class GlobalParams:
    """What the global stage decided for one batch of images."""

    curves: torch.Tensor  # (B, 3, K+1) knot values of the monotone tone curves, 0 → 0 and 1 → 1
    matrix: torch.Tensor  # (B, 3, 3)
    offset: torch.Tensor  # (B, 3)
    sharpen: torch.Tensor  # (B,) estimated unsharp-mask amount of the input (0 = not sharpened)
    cond: torch.Tensor  # (B, local_width) conditioning for the local stage


class GLTransformer(nn.Module):
    def __init__(self, cfg: GLTransformerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or GLTransformerConfig()
        c = cfg.stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        stem_out = cfg.thumb_size // 4
        patch = stem_out // cfg.token_grid
        self.patch_embed = nn.Conv2d(c, cfg.dim, patch, stride=patch)
        n_tokens = cfg.token_grid**2
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        # Colour-constancy prior: per-channel mean and quantiles of the thumbnail, embedded into [CLS]. Gray-world
        # and white-patch are functions of exactly these numbers, so the Transformer starts from a strong cue.
        self.stats_embed = nn.Linear(3 * (len(STAT_QUANTILES) + 1), cfg.dim)
        self.pos = nn.Parameter(torch.randn(1, n_tokens + 1, cfg.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=2 * cfg.dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        k = cfg.curve_knots
        self.head_curve = nn.Linear(cfg.dim, 3 * k)
        self.head_affine = nn.Linear(cfg.dim, 12)
        self.head_sharpen = nn.Linear(cfg.dim, 1)
        self.head_cond = nn.Linear(cfg.dim, cfg.local_width)
        for head in (self.head_curve, self.head_affine, self.head_cond):  # start as the identity transform
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

        w = cfg.local_width
        self.local_in = nn.Conv2d(12, w, 3, padding=1)
        self.local_body = nn.Sequential(*[m for _ in range(cfg.local_depth)
                                          for m in (nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True))])
        self.local_out = nn.Conv2d(w, 12, 3, padding=1)
        nn.init.zeros_(self.local_out.weight)
        nn.init.zeros_(self.local_out.bias)

    # ------------------------------------------------------------------------------------------ stage 1
    def thumbnail(self, x: torch.Tensor) -> torch.Tensor:
        s = self.cfg.thumb_size
        if x.shape[-2:] == (s, s):
            return x
        return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)

    def estimate(self, x: torch.Tensor) -> GlobalParams:
        """Look at the whole image (any size) and decide the colour transform. x: (B, 3, H, W) in [0, 1]."""
        thumb = self.thumbnail(x)
        t = thumb - 0.5
        tokens = self.patch_embed(self.stem(t)).flatten(2).transpose(1, 2)
        cls = self.cls + self.stats_embed(self.image_stats(thumb)).unsqueeze(1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos
        feat = self.norm(self.encoder(tokens))[:, 0]
        b = len(feat)
        k = self.cfg.curve_knots
        steps = torch.softmax(self.head_curve(feat).view(b, 3, k), dim=-1)  # positive steps summing to 1
        curves = torch.cat([steps.new_zeros(b, 3, 1), steps.cumsum(-1)], dim=-1)
        a = self.head_affine(feat)
        matrix = torch.eye(3, device=x.device, dtype=feat.dtype).expand(b, 3, 3) + a[:, :9].view(b, 3, 3)
        return GlobalParams(curves=curves, matrix=matrix, offset=a[:, 9:],
                            sharpen=self.head_sharpen(feat).squeeze(-1), cond=self.head_cond(feat))

    @staticmethod
    def image_stats(thumb: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) → (B, 3·(Q+1)): per-channel mean and quantiles, centred on 0."""
        flat = thumb.flatten(2)
        q = torch.quantile(flat, torch.tensor(STAT_QUANTILES, device=thumb.device, dtype=thumb.dtype), dim=2)
        return torch.cat([flat.mean(2, keepdim=True), q.permute(1, 2, 0)], dim=2).flatten(1) - 0.5

    @staticmethod
    def apply_curves(x: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
        """Piecewise-linear per-channel curves; x (B,3,H,W), curves (B,3,K+1)."""
        b, c, h, w = x.shape
        k = curves.shape[-1] - 1
        pos = x.clamp(0, 1).reshape(b, c, -1) * k
        idx = pos.floor().clamp(max=k - 1)
        frac = pos - idx
        idx = idx.long()
        lo = torch.gather(curves, 2, idx)
        hi = torch.gather(curves, 2, idx + 1)
        return (lo + frac * (hi - lo)).view(b, c, h, w)

    def apply_global(self, x: torch.Tensor, p: GlobalParams) -> torch.Tensor:
        if torch.is_grad_enabled():
            y = self.apply_curves(x, p.curves)
        else:  # inference: a 4096-entry lookup table is ~5× faster than interpolating and exact to 1e-4
            y = self.apply_curves_lut(x, p.curves)
        return torch.einsum("bij,bjhw->bihw", p.matrix, y) + p.offset[:, :, None, None]

    def apply_curves_lut(self, x: torch.Tensor, curves: torch.Tensor, size: int = 4096) -> torch.Tensor:
        b = len(x)
        grid = torch.linspace(0, 1, size, device=x.device, dtype=x.dtype).view(1, 1, 1, size).expand(b, 3, 1, size)
        lut = self.apply_curves(grid.contiguous(), curves)[:, :, 0]  # (B, 3, size)
        idx = (x.clamp(0, 1) * (size - 1)).round().long()
        return torch.stack([torch.stack([lut[i, c][idx[i, c]] for c in range(3)]) for i in range(b)])

    # ------------------------------------------------------------------------------------------ stage 2
    def apply_local(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Residual detail correction at full resolution; y (B,3,H,W) is the colour-corrected image."""
        h, w = y.shape[-2:]
        pad_h, pad_w = h % 2, w % 2
        z = F.pad(y, (0, pad_w, 0, pad_h), mode="replicate") if (pad_h or pad_w) else y
        z = F.pixel_unshuffle(z, 2)
        f = F.relu(self.local_in(z - 0.5) + cond[:, :, None, None])
        r = F.pixel_shuffle(self.local_out(self.local_body(f)), 2)
        return y + r[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.estimate(x)
        return self.apply_local(self.apply_global(x, p), p.cond)


def build(config: dict) -> GLTransformer:
    fields = GLTransformerConfig.__dataclass_fields__
    return GLTransformer(GLTransformerConfig(**{k: v for k, v in config.items() if k in fields}))
