"""Differentiable losses shared by the training recipes (torch; the numpy metrics live in ``metrics.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sobel_edges(img: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of BT.601 luma, (B, 1, H, W), replicated borders — the torch twin of
    ``metrics.sobel_edges``."""
    w = img.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    y = F.pad((img * w).sum(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    kx = img.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx = F.conv2d(y, kx)
    gy = F.conv2d(y, kx.transpose(-1, -2))
    return torch.sqrt(gx * gx + gy * gy + 1e-12)


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004: Gaussian window 11, σ 1.5, data range 1) of (B, C, H, W) images,
    'valid' region only: (B, C, H − window + 1, W − window + 1)."""
    x = torch.arange(window, dtype=a.dtype, device=a.device) - (window - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    g = g / g.sum()
    c = a.shape[1]
    kh, kw = g.view(1, 1, 1, -1).expand(c, 1, 1, window), g.view(1, 1, -1, 1).expand(c, 1, window, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of (B, C, H, W) images in [0, 1] (H, W ≥ 11)."""
    return ssim_map(a, b).mean()


def masked_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (B, C, H, W) over the pixels where ``weight`` (B, 1, H, W) is 1, all channels."""
    return (x * weight).sum() / (weight.sum() * x.shape[1]).clamp_min(1.0)
