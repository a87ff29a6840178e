"""Overlapped tiles with blending, so any model runs on any image size in bounded memory.

Tiles overlap by ``overlap`` input pixels. In each overlap the outer quarter next to a tile's inner edge gets
weight 0 (those pixels lack context there), then the weight ramps linearly across the middle half, so the
weights of neighbouring tiles sum to one. For a model whose receptive-field radius is at most overlap/4 the
tiled result equals the untiled one; for attention models the ramp hides seams.
"""

from __future__ import annotations

from typing import Callable

import torch


def _starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    w = torch.ones(n)
    if overlap <= 0:
        return w
    d = torch.arange(n, dtype=torch.float32) + 0.5
    band, ramp = overlap / 4.0, overlap / 2.0
    if at_start:
        w = torch.minimum(w, ((d - band) / ramp).clamp(0, 1))
    if at_end:
        w = torch.minimum(w, ((n - d - band) / ramp).clamp(0, 1))
    return w


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int = 512, overlap: int = 64,
                scale: int = 1, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Run ``fn`` (B,C,h,w) → (B,C',h·scale,w·scale) over ``x`` tile by tile and blend the results.

    ``progress(done, total)`` is called after each tile (for tqdm bars or the web app).
    """
    b, _, h, w = x.shape
    if h <= tile and w <= tile:
        out = fn(x)
        if progress:
            progress(1, 1)
        return out
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    step = tile - overlap
    ys, xs = _starts(h, tile, step), _starts(w, tile, step)
    out = weight = None
    total, done = len(ys) * len(xs), 0
    for y0 in ys:
        th = min(tile, h - y0)
        wy = _ramp(th * scale, overlap * scale, y0 > 0, y0 + th < h)
        for x0 in xs:
            tw = min(tile, w - x0)
            piece = fn(x[:, :, y0:y0 + th, x0:x0 + tw])
            if out is None:
                out = piece.new_zeros(b, piece.shape[1], h * scale, w * scale)
                weight = piece.new_zeros(1, 1, h * scale, w * scale)
            wx = _ramp(tw * scale, overlap * scale, x0 > 0, x0 + tw < w)
            wgt = (wy[:, None] * wx[None, :]).to(piece)
            sl = (slice(None), slice(None), slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
            out[sl] += piece * wgt
            weight[sl] += wgt
            done += 1
            if progress:
                progress(done, total)
    return out / weight.clamp_min(1e-8)
