"""``pixel-gpt``: a small decoder-only Transformer over image tokens (pixace / Image GPT), nanoGPT style.

Sequence layout: position 0 holds a start token — the unconditional start, or one of ``n_labels`` class
tokens for conditional generation — followed by the image tokens in raster order. The logits at position i
predict image token i, so ``forward(tokens[:, :-1], labels, targets=tokens)`` is next-token training on a whole
image. Sampling uses an explicit key/value cache (``KVCache``): each new token attends to the cached keys of
all earlier positions, so generating n tokens costs O(n) forward steps of one token each.

Positional embeddings are learned, either one vector per sequence position (``pos_emb = "learned"``) or a
row vector plus a column vector of the pixel being predicted (``"2d"``).

Two output heads (``head``):

- ``"tied"``: one softmax over the whole vocabulary that shares the token embedding matrix (weight tying,
  computed with ``F.linear`` so no tensor is stored twice in safetensors). Works for every tokenizer.
- ``"factored"`` (HSV tokens, ``channel_bits`` = the packed bit widths, e.g. 5-4-4): a token is its channels,
  embedded as the sum of one embedding per channel, and predicted one channel at a time as in PixelCNN —
  p(token) = p(value) · p(saturation | value) · p(hue | value, saturation), each factor a one-hidden-layer head
  on the Transformer's output plus embeddings of the channels already chosen. The likelihood is exact (the
  same bits/dim as a joint softmax), the output costs ~1/10 of an 8192-way layer, so training can take the
  loss at every position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class PixelGPTConfig:
    vocab_size: int = 8192  # 2^(5+4+4) for HSV 5-4-4
    n_labels: int = 0  # 0 = unconditional; otherwise class tokens 0..n_labels-1
    block_size: int = 1024  # image tokens per sequence (32×32); positions = block_size + 1 with the start token
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    pos_emb: str = "learned"  # "learned" (one vector per position) or "2d" (row + column)
    image_width: int = 0  # token-grid width for "2d" (0: √block_size)
    bias: bool = True
    head: str = "tied"  # "tied" (joint softmax sharing the token embedding) or "factored" (per channel)
    channel_bits: tuple = ()  # "factored": bit widths of the packed channels, most significant first
    head_hidden: int = 128  # "factored": width of each channel's hidden layer


class FactoredHead(nn.Module):
    """Per-channel prediction of packed tokens: token = c0 << (b1 + b2 + ...) | c1 << (...) | ... .

    Channels are predicted least significant first (for HSV 5-4-4: value, saturation, hue); step j reads the
    Transformer output x and the channels already fixed: ``logits_j = W_j gelu(A_j x + Σ_k E_jk[c_k])``.
    """

    def __init__(self, n_embd: int, bits, hidden: int):
        super().__init__()
        self.bits = [int(b) for b in bits]
        self.levels = [1 << b for b in self.bits]
        self.order = list(reversed(range(len(self.bits))))  # channel index predicted at each step
        self.inp = nn.ModuleList(nn.Linear(n_embd, hidden) for _ in self.order)
        self.cond = nn.ModuleList(nn.ModuleList(nn.Embedding(self.levels[c], hidden) for c in self.order[:j])
                                  for j in range(len(self.order)))
        self.out = nn.ModuleList(nn.Linear(hidden, self.levels[c]) for c in self.order)

    def split(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Packed tokens → one tensor of channel codes per channel (packing order)."""
        out, shift = [], 0
        for b in reversed(self.bits):
            out.append((tokens >> shift) & ((1 << b) - 1))
            shift += b
        return out[::-1]

    def pack(self, codes: list[torch.Tensor]) -> torch.Tensor:
        t = torch.zeros_like(codes[0])
        for c, b in zip(codes, self.bits):
            t = (t << b) | c
        return t

    def step_logits(self, j: int, x: torch.Tensor, known: list[torch.Tensor]) -> torch.Tensor:
        """Logits of the j-th predicted channel given x (..., C) and the codes of the steps before it."""
        h = self.inp[j](x)
        for emb, c in zip(self.cond[j], known):
            h = h + emb(c)
        return self.out[j](F.gelu(h))

    def nll(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (nats) of packed ``targets`` (...,) given x (..., C), summed over channels."""
        codes = self.split(targets)
        known, total = [], 0.0
        for j, c in enumerate(self.order):
            lg = self.step_logits(j, x, known)
            total = total + F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(), codes[c].reshape(-1),
                                            reduction="none").view(targets.shape)
            known.append(codes[c])
        return total

    def joint_log_probs(self, x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        """log p(token) for every token of the vocabulary: (..., C) → (..., V), packed-token order."""
        flat = x.reshape(-1, x.shape[-1])
        if torch.onnx.is_in_onnx_export():  # one traced block (a Python loop would fix the length)
            return self._joint(flat).reshape(*x.shape[:-1], -1)
        parts = [self._joint(flat[i:i + chunk]) for i in range(0, len(flat), chunk)]
        out = torch.cat(parts) if parts else flat.new_zeros(0, 1 << sum(self.bits))
        return out.reshape(*x.shape[:-1], -1)

    def _joint(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        lp = x.new_zeros(n)  # log-probability of each combination of the channels fixed so far
        for j in range(len(self.order)):
            h = self.inp[j](x).view(n, *([1] * j), -1)  # broadcast over the earlier channels' levels
            for k, emb in enumerate(self.cond[j]):
                shape = [1] * (j + 1) + [-1]
                shape[1 + k] = emb.weight.shape[0]
                h = h + emb.weight.view(shape)
            step = F.log_softmax(self.out[j](F.gelu(h)).float(), -1)  # (n, L_order[0], ..., L_order[j])
            lp = lp.unsqueeze(-1) + step
        # dims are (n, order[0], order[1], ...), least significant channel first → packing order
        perm = [0] + [1 + self.order.index(c) for c in range(len(self.bits))]
        return lp.permute(*perm).reshape(n, -1)

    def sample(self, x: torch.Tensor, temperature: float, top_k: int | None, generator) -> torch.Tensor:
        """(B, C) → (B, 1) packed tokens, one channel at a time (``top_k`` applies to each channel's levels)."""
        known, codes = [], [None] * len(self.bits)
        for j, c in enumerate(self.order):
            code = sample_logits(self.step_logits(j, x, known), temperature, top_k, generator)[:, 0]
            known.append(code)
            codes[c] = code
        return self.pack(codes)[:, None]


class KVCache:
    """Pre-allocated keys and values for every layer: (B, heads, max_len, head_dim) each; ``length`` filled."""

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int, device=None,
                 dtype=torch.float32):
        shape = (batch, n_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.length = 0
        self.max_len = max_len


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: PixelGPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head, self.n_embd = cfg.n_head, cfg.n_embd
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(self.n_embd, dim=2)
        hd = c // self.n_head
        q, k, v = (z.view(b, t, self.n_head, hd).transpose(1, 2) for z in (q, k, v))
        past = 0
        if cache is not None:
            past = cache.length
            if past + t > cache.max_len:
                raise ValueError(f"sequence of {past + t} exceeds the cache ({cache.max_len})")
            cache.k[layer][:, :, past:past + t] = k
            cache.v[layer][:, :, past:past + t] = v
            k, v = cache.k[layer][:, :, :past + t], cache.v[layer][:, :, :past + t]
        # no dropout on the attention weights: with it, CPU attention falls back to materialising every
        # (T × T) matrix (measured ~4× slower, 3 GB); ``dropout`` acts on embeddings, residuals and the MLP
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # also right for t = 1
        elif t == 1:  # one new token sees every cached position
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # a chunk after a cached prefix: query i sees keys 0 .. past + i
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: PixelGPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: PixelGPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, cache=None, layer=0):
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class PixelGPT(nn.Module):
    def __init__(self, cfg: PixelGPTConfig):
        super().__init__()
        if cfg.pos_emb not in ("learned", "2d"):
            raise ValueError(f"pos_emb must be 'learned' or '2d', not '{cfg.pos_emb}'")
        if cfg.head not in ("tied", "factored"):
            raise ValueError(f"head must be 'tied' or 'factored', not '{cfg.head}'")
        self.cfg = cfg
        if cfg.head == "factored":
            if not cfg.channel_bits or (1 << sum(int(b) for b in cfg.channel_bits)) != cfg.vocab_size:
                raise ValueError(f"the factored head needs channel_bits whose widths add up to log2(vocab_size) "
                                 f"= {math.log2(cfg.vocab_size):g} (HSV tokens), not {list(cfg.channel_bits)}")
            self.head = FactoredHead(cfg.n_embd, cfg.channel_bits, cfg.head_hidden)
            self.chan_emb = nn.ModuleList(nn.Embedding(n, cfg.n_embd) for n in self.head.levels)
        else:
            self.head = None
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.start_emb = nn.Embedding(cfg.n_labels + 1, cfg.n_embd)  # 0: unconditional; 1 + label otherwise
        n_pos = cfg.block_size + 1
        if cfg.pos_emb == "learned":
            self.pos_emb = nn.Embedding(n_pos, cfg.n_embd)
        else:
            w = cfg.image_width or int(round(math.sqrt(cfg.block_size)))
            self.width = w
            self.row_emb = nn.Embedding(cfg.block_size // w + 2, cfg.n_embd)
            self.col_emb = nn.Embedding(w, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scaled residual projections
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    # ---------------------------------------------------------------------------------------------- pieces
    @property
    def _anchor(self) -> torch.Tensor:  # a parameter: the model's device and dtype
        return self.start_emb.weight

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return self.tok_emb(idx)
        return sum(emb(c) for emb, c in zip(self.chan_emb, self.head.split(idx)))

    def positions(self, start: int, length: int, device) -> torch.Tensor:
        pos = torch.arange(start, start + length, device=device)
        if self.cfg.pos_emb == "learned":
            return self.pos_emb(pos)
        return self.row_emb(pos // self.width) + self.col_emb(pos % self.width)  # the pixel being predicted

    def start_tokens(self, batch: int, labels, device) -> torch.Tensor:
        if labels is None:
            idx = torch.zeros(batch, dtype=torch.long, device=device)
        else:
            labels = torch.as_tensor(labels, device=device).long().reshape(-1).expand(batch)
            if (labels >= self.cfg.n_labels).any():
                raise ValueError(f"label out of range (the model knows {self.cfg.n_labels} labels)")
            idx = (labels + 1).clamp_min(0)  # a negative label means "no label"
        return self.start_emb(idx)[:, None, :]

    def new_cache(self, batch: int, device=None, max_len: int | None = None) -> KVCache:
        c = self.cfg
        dtype = self._anchor.dtype
        return KVCache(c.n_layer, batch, c.n_head, max_len or c.block_size + 1, c.n_embd // c.n_head,
                       device or self._anchor.device, dtype)

    # --------------------------------------------------------------------------------------------- forward
    def hidden(self, idx: torch.Tensor, labels=None, cache: KVCache | None = None) -> torch.Tensor:
        """The Transformer's normalised output (B, T(+1), C): the start/label token is put in front of ``idx``
        unless a filled cache already holds the sequence's beginning."""
        b, t = idx.shape
        past = cache.length if cache is not None else 0
        x = self.embed(idx)
        if past == 0:
            x = torch.cat([self.start_tokens(b, labels, idx.device), x], 1)
        n = x.shape[1]
        if past + n > self.cfg.block_size + 1:
            raise ValueError(f"sequence of {past + n} positions exceeds block_size + 1 = {self.cfg.block_size + 1}")
        x = self.drop(x + self.positions(past, n, idx.device)[None])
        for i, blk in enumerate(self.blocks):
            x = blk(x, cache, i)
        if cache is not None:
            cache.length = past + n
        return self.ln_f(x)

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """Logits over the whole vocabulary (..., V) from hidden states (the factored head: exact log p)."""
        if self.head is None:
            return F.linear(h, self.tok_emb.weight)
        return self.head.joint_log_probs(h)

    def token_nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLL in nats of each target token (B, T) given the hidden states that predict it (B, T, C)."""
        if self.head is None:
            lg = self.log_probs(h)
            return F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(), targets.reshape(-1),
                                   reduction="none").view(targets.shape)
        return self.head.nll(h, targets)

    def forward(self, idx: torch.Tensor, labels=None, targets: torch.Tensor | None = None,
                cache: KVCache | None = None, logits_at: torch.Tensor | None = None):
        """``idx`` (B, T) image tokens. Without a cache (or with an empty one) the start/label token is put in
        front, and logits (B, T+1, V) predict image tokens 0..T; with a filled cache ``idx`` continues the cached
        sequence and logits (B, T, V) predict the tokens after each. ``targets`` (B, T') with T' ≤ the number of
        logits: mean cross-entropy (nats) over ``logits[:, :T']``; entries < 0 are ignored. Returns (logits, loss);
        with ``targets`` and the factored head the logits are not needed and are None.

        ``logits_at`` (K,) position indices: compute the output only there (``targets`` then (B, K)). With a
        large tied vocabulary the output layer dominates training; a random subset of positions per step is an
        unbiased estimate of the full loss at a fraction of that cost."""
        h = self.hidden(idx, labels, cache)
        if logits_at is not None:
            h = h[:, logits_at]
        loss = logits = None
        if targets is not None:
            tt = targets.shape[1]
            valid = targets >= 0
            nll = self.token_nll(h[:, :tt], targets.clamp_min(0))
            loss = (nll * valid).sum() / valid.sum().clamp_min(1)
        if targets is None or self.head is None:
            logits = self.log_probs(h)
        return logits, loss

    def next_token(self, h: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample one token (B, 1) from the hidden state of the last position (B, C)."""
        if self.head is None:
            return sample_logits(self.log_probs(h), temperature, top_k, generator)
        return self.head.sample(h, temperature, top_k, generator)

    # ---------------------------------------------------------------------------------------------- sample
    @torch.no_grad()
    def generate(self, prefix: torch.Tensor | None, n_new: int, labels=None, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None, batch: int | None = None,
                 progress=None) -> torch.Tensor:
        """Continue ``prefix`` (B, T0) image tokens (None or T0 = 0: from the start token) by ``n_new`` sampled
        tokens; returns (B, T0 + n_new). ``temperature`` 0 is greedy; ``top_k`` keeps the k likeliest tokens."""
        dev = self._anchor.device
        if prefix is None:
            prefix = torch.zeros(batch or 1, 0, dtype=torch.long, device=dev)
        prefix = prefix.to(dev).long()
        b, t0 = prefix.shape
        if t0 + n_new > self.cfg.block_size:
            raise ValueError(f"{t0} + {n_new} tokens exceed block_size {self.cfg.block_size}")
        if n_new <= 0:
            return prefix
        cache = self.new_cache(b, dev, t0 + n_new + 1)
        h = self.hidden(prefix, labels, cache=cache)[:, -1]
        out = [prefix]
        for i in range(n_new):
            nxt = self.next_token(h, temperature, top_k, generator)
            out.append(nxt)
            if progress:
                progress(i + 1, n_new)
            if i + 1 < n_new:
                h = self.hidden(nxt, cache=cache)[:, -1]
        return torch.cat(out, 1)


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of (B, V) logits → (B, 1)."""
    logits = logits.float()
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k:
        k = min(int(top_k), logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


def build(config: dict) -> PixelGPT:
    """Build from a card/training config. When the config names a tokenizer (``tokenizer``, ``hsv_bits``,
    ``palette_size``, ``patch_size``, ``image_size``), the vocabulary and sequence length follow from it, and
    the factored head takes its channel widths from ``hsv_bits``."""
    cfg = dict(config)
    if cfg.get("head") == "factored" and not cfg.get("channel_bits") and cfg.get("tokenizer", "hsv") == "hsv":
        from ..tokens import DEFAULT_HSV_BITS

        cfg["channel_bits"] = tuple(cfg.get("hsv_bits") or DEFAULT_HSV_BITS)
    if "tokenizer" in cfg:
        from ..tokens import patch_size_for, vocab_size_for

        cfg["vocab_size"] = vocab_size_for(cfg)
        side = int(cfg.get("image_size", 32)) // patch_size_for(cfg)
        cfg["block_size"] = side * side
        cfg.setdefault("image_width", side)
        if not cfg.get("image_width"):
            cfg["image_width"] = side
    fields = PixelGPTConfig.__dataclass_fields__
    return PixelGPT(PixelGPTConfig(**{k: v for k, v in cfg.items() if k in fields}))
