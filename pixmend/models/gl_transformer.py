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

3. Optional de-sharpening (``desharpen = true``, the shipped model): over-sharpening is an unsharp mask
   y = x + a·(x − G_σ * x), a linear filter with frequency response 1 + a·(1 − Ĝ_σ) ≥ 1, so it can be undone
   exactly once a and σ are known. A small CNN reads a few full-resolution crops (haloes vanish in a
   thumbnail), pools over them, and predicts the amount a, the radius σ and whether only luma was sharpened;
   the inverse filter is then applied in the Fourier domain, before the colour map (the reverse of how the
   damage was made). The local stage only mops up what is left (clipping, JPEG).

The whole model is trained jointly by ``pixmend train correct``.
"""

from __future__ import annotations

import math

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
    desharpen: bool = False  # stage 0: estimate the unsharp mask and invert it (off in older weights)
    sharp_width: int = 24  # channels of the sharpening estimator
    sharp_crop: int = 128  # full-resolution crops the estimator reads at inference
    sharp_crops: int = 9  # at most this many crops, spread over the image in a grid
    max_radius: float = 4.0  # largest unsharp-mask radius (Gaussian sigma, px) it can undo
    # Estimated amounts are soft-thresholded by this much before the mask is undone: the estimator cannot tell
    # a crisp clean photo from a mildly sharpened one, and softening a clean image costs more than leaving a
    # weak mask in place (calibrated after training on the validation photos; 0 while training).
    sharp_deadzone: float = 0.0
    # Colour gate: the estimator also proposes small corrections for images without a cast (a naturally warm
    # photo, a sunset), and a shift of 1–3 ΔE on a clean image costs more than it gains on a damaged one. If the
    # correction changes the thumbnail by e (mean CIE76 ΔE), it is applied with strength clamp((e − t)/t, 0, 1),
    # t = colour_deadzone: nothing below t, in full from 2t. 0 (training): always in full.
    colour_deadzone: float = 0.0


@dataclass
class GlobalParams:
    """What the global stage decided for one batch of images."""

    curves: torch.Tensor  # (B, 3, K+1) knot values of the monotone tone curves, 0 → 0 and 1 → 1
    matrix: torch.Tensor  # (B, 3, 3)
    offset: torch.Tensor  # (B, 3)
    sharpen: torch.Tensor  # (B,) estimated unsharp-mask amount of the input (0 = not sharpened)
    cond: torch.Tensor  # (B, local_width) conditioning for the local stage
    radius: torch.Tensor | None = None  # (B,) estimated unsharp-mask sigma, px (desharpen models)
    luma_only: torch.Tensor | None = None  # (B,) probability that only luma was sharpened (desharpen models)
    strength: torch.Tensor | None = None  # (B,) share of the colour correction applied (colour gate; None = all)


LUMA = (0.299, 0.587, 0.114)
SRGB_TO_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
D65_WHITE = (0.95047, 1.0, 1.08883)


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB (B, 3, H, W) in [0, 1] → CIELAB (D65), the standard formulas (torch, so the gate exports to ONNX)."""
    x = 1 - F.relu(1 - F.relu(x))  # clamp to [0, 1]; a Clip here breaks the ONNX graph next to the antialiased resize
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = torch.tensor(SRGB_TO_XYZ, device=x.device, dtype=x.dtype)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin) / torch.tensor(D65_WHITE, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    d = 6.0 / 29.0
    f = torch.where(xyz > d**3, (xyz.abs() + 1e-12) ** (1.0 / 3.0), xyz / (3 * d * d) + 4.0 / 29.0)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


class SharpnessEstimator(nn.Module):
    """Full-resolution crops → (amount, radius, p_luma) of the unsharp mask they were given.

    A fully convolutional trunk (two stride-2 stages) gives features at every position of every crop; they are
    pooled over all positions of all crops of an image twice — a plain mean and an attention-weighted mean
    (edges carry the evidence, flat sky does not) — and a small MLP reads the result. The last layer starts at
    zero, so the untrained estimator says amount 0: nothing to undo."""

    def __init__(self, width: int = 24, max_radius: float = 4.0):
        super().__init__()
        w = width
        self.max_radius = max_radius
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(16, w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.attn = nn.Conv2d(2 * w, 1, 1)
        self.mlp = nn.Sequential(nn.Linear(4 * w, 64), nn.ReLU(inplace=True), nn.Linear(64, 3))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, crops: torch.Tensor, n_images: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """crops: (n_images·k, 3, h, w), the k crops of each image consecutive."""
        f = self.trunk(crops - 0.5)
        k = len(crops) // n_images
        f = f.view(n_images, k, f.shape[1], -1).transpose(1, 2).flatten(2)  # (B, C, k·h·w)
        logits = self.attn.weight.view(1, -1, 1).mul(f).sum(1) + self.attn.bias  # (B, k·h·w)
        att = (f * torch.softmax(logits, dim=-1).unsqueeze(1)).sum(-1)
        o = self.mlp(torch.cat([f.mean(-1), att], dim=1))
        amount = o[:, 0].clamp(-0.4, 4.0)  # < 0 would undo a mild blur; clamped so the inverse stays stable
        radius = 0.3 + (self.max_radius - 0.3) * torch.sigmoid(o[:, 1])
        return amount, radius, torch.sigmoid(o[:, 2])


def crop_grid(x: torch.Tensor, size: int, max_crops: int) -> torch.Tensor:
    """Up to ``max_crops`` size×size crops of each image, spread evenly (a whole image smaller than ``size``
    is one crop): (B·k, 3, size', size')."""
    b, c, h, w = x.shape
    sh, sw = min(size, h), min(size, w)
    side = max(1, int(math.isqrt(max_crops)))
    ny = min(side, max(1, -(-h // sh)))  # integer arithmetic throughout: the ONNX exporter traces it
    nx = min(side, max(1, -(-w // sw)))
    ys = [i * (h - sh) // max(ny - 1, 1) for i in range(ny)]
    xs = [j * (w - sw) // max(nx - 1, 1) for j in range(nx)]
    crops = [x[:, :, y0:y0 + sh, x0:x0 + sw] for y0 in ys for x0 in xs]
    return torch.stack(crops, dim=1).flatten(0, 1)


def gaussian_response(n: int, sigma: torch.Tensor, onesided: bool, taps: int) -> torch.Tensor:
    """DFT (length n) of the sampled, normalised 1-D Gaussian kernel of each sigma — the kernel
    ``cv2.GaussianBlur`` uses — so small radii are inverted exactly, not through the continuous formula."""
    k = torch.arange(-taps, taps + 1, device=sigma.device, dtype=sigma.dtype)
    wts = torch.exp(-0.5 * (k[None, :] / sigma[:, None]) ** 2)
    wts = wts / wts.sum(1, keepdim=True)  # (B, 2·taps+1)
    i = torch.arange(n // 2 + 1 if onesided else n, device=sigma.device, dtype=sigma.dtype)
    freqs = (i if onesided else (i + n // 2) % n - n // 2) / n  # rfftfreq / fftfreq (ONNX has neither)
    return (wts[:, None, :] * torch.cos(2 * math.pi * freqs[None, :, None] * k[None, None, :])).sum(-1)  # (B, F)


def unsharp_inverse(y: torch.Tensor, amount: torch.Tensor, radius: torch.Tensor, luma_only: torch.Tensor,
                    max_radius: float = 4.0) -> torch.Tensor:
    """Undo y = x + a·(x − G_σ*x) (all channels, or luma only) in the Fourier domain; per-image a, σ, p_luma.
    Borders are reflected by 3·max_radius first, so the periodic FFT does not wrap one edge onto the other."""
    b, c, h, w = y.shape
    taps = int(math.ceil(3 * max_radius))
    pad = min(taps, h - 1, w - 1)
    yp = F.pad(y, (pad, pad, pad, pad), mode="reflect") if pad > 0 else y
    hp, wp = yp.shape[-2:]
    gy = gaussian_response(hp, radius, False, taps)  # (B, hp)
    gx = gaussian_response(wp, radius, True, taps)  # (B, wp//2+1)
    g = gy[:, :, None] * gx[:, None, :]
    inv = 1.0 / (1.0 + amount[:, None, None] * (1.0 - g))  # (B, hp, wp//2+1)
    lw = torch.tensor(LUMA, device=y.device, dtype=y.dtype).view(1, 3, 1, 1)
    luma = (yp * lw).sum(1, keepdim=True)
    spec = torch.fft.rfft2(torch.cat([yp, luma], dim=1))
    back = torch.fft.irfft2(spec * inv[:, None], s=(hp, wp))
    rgb_inv, luma_inv = back[:, :3], back[:, 3:]
    luma_way = yp + (luma_inv - luma)
    p = luma_only.view(b, 1, 1, 1)
    out = p * luma_way + (1 - p) * rgb_inv
    return out[..., pad:pad + h, pad:pad + w] if pad > 0 else out


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
        self.sharp = SharpnessEstimator(cfg.sharp_width, cfg.max_radius) if cfg.desharpen else None

    # ------------------------------------------------------------------------------------------ stage 1
    def thumbnail(self, x: torch.Tensor) -> torch.Tensor:
        s = self.cfg.thumb_size
        if x.shape[-2:] == (s, s):
            return x
        return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)

    def estimate(self, x: torch.Tensor, thumb: torch.Tensor | None = None, sharpness: bool = True) -> GlobalParams:
        """Look at the whole image (any size) and decide the colour transform. x: (B, 3, H, W) in [0, 1].
        ``thumb`` (training) gives the colour stage a thumbnail of a wider view than ``x``; ``sharpness=False``
        (colour-only training) skips the sharpening estimator, leaving its head's unused guess in place."""
        thumb = self.thumbnail(x) if thumb is None else self.thumbnail(thumb)
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
        p = GlobalParams(curves=curves, matrix=matrix, offset=a[:, 9:],
                         sharpen=self.head_sharpen(feat).squeeze(-1), cond=self.head_cond(feat))
        if self.sharp is not None and sharpness:
            crops = crop_grid(x, self.cfg.sharp_crop, self.cfg.sharp_crops)
            p.sharpen, p.radius, p.luma_only = self.sharp(crops, b)
            t = self.cfg.sharp_deadzone
            if t > 0:
                p.sharpen = torch.sign(p.sharpen) * (p.sharpen.abs() - t).clamp_min(0)
        if self.cfg.colour_deadzone > 0:
            p.strength = self.colour_strength(thumb, p)
        return p

    def colour_strength(self, thumb: torch.Tensor, p: GlobalParams) -> torch.Tensor:
        """The colour gate (see ``colour_deadzone``): (B,) strengths from how much the correction changes the
        thumbnail, in mean CIE76 ΔE."""
        t = self.cfg.colour_deadzone
        change = (rgb_to_lab(self._colour_map(thumb, p)) - rgb_to_lab(thumb)).pow(2).sum(1).sqrt().mean((1, 2))
        return ((change - t) / t).clamp(0, 1)

    def desharpen(self, x: torch.Tensor, p: GlobalParams) -> torch.Tensor:
        """Stage 0: invert the estimated unsharp mask (the identity for models without it)."""
        if self.sharp is None:
            return x
        return unsharp_inverse(x, p.sharpen, p.radius, p.luma_only, self.cfg.max_radius)

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
        y = self._colour_map(x, p)
        if p.strength is None:
            return y
        return x + p.strength.view(-1, 1, 1, 1) * (y - x)

    def _colour_map(self, x: torch.Tensor, p: GlobalParams) -> torch.Tensor:
        if torch.is_grad_enabled():
            y = self.apply_curves(x, p.curves)
        else:  # inference: a 4096-entry lookup table is ~5× faster than interpolating and exact to 1e-4
            y = self.apply_curves_lut(x, p.curves)
        return torch.einsum("bij,bjhw->bihw", p.matrix, y) + p.offset[:, :, None, None]

    def apply_curves_lut(self, x: torch.Tensor, curves: torch.Tensor, size: int = 4096) -> torch.Tensor:
        b = len(x)
        grid = torch.linspace(0, 1, size, device=x.device, dtype=x.dtype).view(1, 1, 1, size).expand(b, 3, 1, size)
        lut = self.apply_curves(grid.contiguous(), curves)[:, :, 0]  # (B, 3, size)
        pos = x.clamp(0, 1) * (size - 1)
        lo = pos.floor().clamp(max=size - 2)
        frac = pos - lo
        lo = lo.long()
        # linear between entries: continuous in x, so tiny input differences (ONNX, tiles) stay tiny
        slope = lut[..., 1:] - lut[..., :-1]
        return torch.stack([torch.stack([lut[i, c][lo[i, c]] + frac[i, c] * slope[i, c][lo[i, c]] for c in range(3)])
                            for i in range(b)])

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
        return self.apply_local(self.apply_global(self.desharpen(x, p), p), p.cond)


def build(config: dict) -> GLTransformer:
    fields = GLTransformerConfig.__dataclass_fields__
    return GLTransformer(GLTransformerConfig(**{k: v for k, v in config.items() if k in fields}))
