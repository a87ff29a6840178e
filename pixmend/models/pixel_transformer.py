"""PixelTransformerModel: the seed project's pixel-sequence corrector, reproduced faithfully.

A sequence of ``num_pixels`` RGB pixels (a scan-line window, a √n×√n patch or random pixels) is projected
3 → d by a linear layer, given sinusoidal positions, run through ``nn.TransformerEncoder`` and projected back
to 3 channels with a sigmoid. Inference slides overlapping windows over the image and averages every pixel's
predictions (see ``pixmend.tasks.correct.pixel_transformer_correct``).

It sees only ``num_pixels`` pixels at a time, so it cannot judge a global cast well and costs a lot per
megapixel; the default corrector (``gl_transformer.py``) exists for that reason. It is kept because users of
the seed rely on it and it is a clean baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PixelTransformerConfig:
    # Defaults are the seed's CONFIG values.
    input_dim: int = 3
    model_dim: int = 256
    num_layers: int = 4
    nhead: int = 1
    dim_feedforward: int = 1024
    dropout: float = 0.1
    num_pixels: int = 128
    dataset_mode: str = "1D"  # how windows are cut at inference too: "1D", "2D" or "RAND"


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sin/cos positions of Vaswani et al. (2017)."""

    def __init__(self, dim: int, max_len: int = 4096):
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.shape[1]].unsqueeze(0)


class PixelTransformerModel(nn.Module):
    """(batch, num_pixels, 3) in [0, 1] → (batch, num_pixels, 3) in [0, 1]."""

    def __init__(self, cfg: PixelTransformerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PixelTransformerConfig()
        self.input_proj = nn.Linear(cfg.input_dim, cfg.model_dim)
        self.pos = SinusoidalPositionalEncoding(cfg.model_dim, max_len=max(4096, cfg.num_pixels))
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.model_dim, nhead=cfg.nhead, dim_feedforward=cfg.dim_feedforward,
            dropout=cfg.dropout, batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=cfg.num_layers, enable_nested_tensor=False)
        self.output_proj = nn.Linear(cfg.model_dim, cfg.input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pos(self.input_proj(x))
        h = self.encoder(h)
        return torch.sigmoid(self.output_proj(h))


def build(config: dict) -> PixelTransformerModel:
    fields = PixelTransformerConfig.__dataclass_fields__
    return PixelTransformerModel(PixelTransformerConfig(**{k: v for k, v in config.items() if k in fields}))
