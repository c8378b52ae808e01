"""A Llama-family decoder in plain PyTorch with explicit per-token positions.

One `forward(tokens, positions, batch, kv)` serves prefill and decode for a ragged batch of
sequences: the linear layers see all tokens of all sequences concatenated, attention runs per
sequence over the KV slots its page table names. Positions are only used for RoPE, so they may
have gaps or repeat (Prompt Cache lays modules out at fixed positions); which keys a query sees is
decided by storage order (causal over the sequence's slots).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asynclm.engine.config import ModelConfig
from asynclm.engine.kv_cache import KVCache


@dataclass(frozen=True, slots=True)
class SequenceBatch:
    """Where one sequence's new tokens sit in the batch and which KV slots it attends to."""

    start: int  # first row of this sequence in the batch
    length: int  # number of new tokens
    kv_slots: Tensor  # [kv_len] every slot of the sequence, new tokens last
    mask: Tensor | None = None  # [length, keys] bool; None: plain causal (or no mask for 1 token)
    kv_range: tuple[int, int] | None = None  # attend to the pool's slots [lo, hi) in place
    runs: tuple[KeyRun, ...] = ()  # or to a few contiguous runs in place, merged exactly


@dataclass(frozen=True, slots=True)
class KeyRun:
    """Contiguous pool slots [lo, hi) holding consecutive keys of a sequence."""

    lo: int
    hi: int
    bias: Tensor | None = None  # [new tokens, hi - lo] additive mask (0 / -inf); None: all visible
    empty: Tensor | None = None  # [new tokens] bool: queries that see no key of this run


@dataclass(frozen=True, slots=True)
class DecodeGroup:
    """Single-token steps of several sequences, attended in one padded call."""

    rows: Tensor  # [B] rows of the batch
    kv_index: Tensor  # [B, L] slots, padded
    kv_mask: Tensor | None  # [B, 1, 1, L] bool (None when no padding)


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """Metadata of a ragged batch: where to write the new K/V, who attends to what."""

    write_slots: Tensor  # [T] slot of each new token
    sequences: tuple[SequenceBatch, ...]  # multi-token chunks, attended one by one
    logit_rows: Tensor  # [R] rows of the batch whose logits are returned
    decode: DecodeGroup | None = None


def causal_mask(n: int, kv_len: int, device: torch.device | str = "cpu") -> Tensor | None:
    """Query i of n new tokens sees keys [0, kv_len - n + i]; None when plain causal works."""
    if n == 1 or n == kv_len:
        return None
    return torch.ones(n, kv_len, dtype=torch.bool, device=device).tril(kv_len - n)


class Linear(nn.Linear):
    """`nn.Linear` that can run on weights pre-packed for oneDNN on CPU.

    On CPU, a weight reordered once into oneDNN's blocked layout streams much faster than
    `F.linear` on the plain layout for the few rows of decoding (~1.6x); long prefill chunks use
    the plain layout, which is as fast there. The plain `weight` is kept (state dicts, adapters,
    other devices). An optional half-precision copy serves batches of at most `decode_rows`
    tokens (opt-in, approximate).
    """

    packed: Tensor | None = None
    decode_weight: Tensor | None = None  # the weight in a low precision
    decode_rows: int = 0

    def pack(self) -> bool:
        """Reorder the weight for oneDNN; False (and nothing changed) where that is unavailable."""
        if self.weight.device.type != "cpu" or self.weight.dtype != torch.float32:
            return False
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), _PACK_ROWS_HINT)
            probe = torch.zeros(1, self.in_features)
            torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
        except (RuntimeError, AttributeError, NotImplementedError):
            return False
        self.packed = packed
        return True

    def forward_parts(self, x: Tensor, sizes: tuple[int, ...]) -> tuple[Tensor, ...]:
        """The outputs of a fused weight's row blocks (q/k/v, gate/up), each on its own.

        Long inputs multiply each block separately (faster GEMMs, no split copies); short ones
        use the fused (packed) weight and split its output.
        """
        if x.shape[0] <= _PACKED_MAX_ROWS or self.bias is not None:
            return tuple(self(x).split(sizes, dim=-1))
        return tuple(F.linear(x, w) for w in self.weight.split(sizes))

    def forward(self, x: Tensor) -> Tensor:
        w = self.decode_weight
        if w is not None and x.shape[0] <= self.decode_rows:
            bias = None if self.bias is None else self.bias.to(w.dtype)
            return F.linear(x.to(w.dtype), w, bias).to(x.dtype)
        if self.packed is not None and x.shape[0] <= _PACKED_MAX_ROWS and x.dtype == torch.float32:
            return torch.ops.mkldnn._linear_pointwise(
                x.contiguous(), self.packed, self.bias, "none", [], ""
            )
        return F.linear(x, self.weight, self.bias)


_PACK_ROWS_HINT = 8  # oneDNN picks its blocking for about this many rows; any count works
_PACKED_MAX_ROWS = 128  # above this, plain GEMM on the original layout is as fast or faster


class EngineModel(Protocol):
    """What the engine needs of a model: `Transformer`, or e.g. the scripted test model."""

    config: ModelConfig

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def __call__(
        self, tokens: Tensor, positions: Tensor, batch: BatchMeta, kv: KVCache
    ) -> Tensor: ...

    def resize_vocab(self, size: int) -> None: ...


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """cos/sin tables `[max_position, head_dim]` in the rotate-half convention."""
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim))
    inv_freq = _scale_inv_freq(inv_freq, cfg)
    t = torch.arange(cfg.max_position, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _scale_inv_freq(inv_freq: Tensor, cfg: ModelConfig) -> Tensor:
    """Llama 3 frequency scaling; other models use plain RoPE."""
    s = cfg.rope_scaling
    if not s or s.get("rope_type", s.get("type")) != "llama3":
        return inv_freq
    import math

    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_ctx = s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: [T, H, D]; cos/sin: [T, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1).mul_(sin[:, None, :])
    return torch.addcmul(rotated, x, cos[:, None, :])


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.num_heads, self.num_kv_heads, self.head_dim = (
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
        )
        q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.wqkv = Linear(cfg.hidden_size, q_dim + 2 * kv_dim, bias=cfg.attention_bias)
        self.wo = Linear(q_dim, cfg.hidden_size, bias=False)
        self.split = (q_dim, kv_dim, kv_dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, batch: BatchMeta, kv: KVCache) -> Tensor:
        t = x.shape[0]
        q, k, v = self.wqkv.forward_parts(x, self.split)
        q = apply_rope(q.view(t, self.num_heads, self.head_dim), cos, sin)
        k = apply_rope(k.view(t, self.num_kv_heads, self.head_dim), cos, sin)
        v = v.view(t, self.num_kv_heads, self.head_dim)
        kv.write(self.layer, batch.write_slots, k, v)
        if batch.decode is not None and not batch.sequences:
            out = self._attend_decode(q, batch.decode, kv)
        elif batch.decode is None and len(batch.sequences) == 1:
            out = self._attend(q, batch.sequences[0], kv)
        else:
            out = q.new_empty(t, self.num_heads * self.head_dim)
            if batch.decode is not None:
                out[batch.decode.rows] = self._attend_decode(q[batch.decode.rows], batch.decode, kv)
            for s in batch.sequences:
                out[s.start : s.start + s.length] = self._attend(
                    q[s.start : s.start + s.length], s, kv
                )
        return self.wo(out)

    def _attend(self, q: Tensor, seq: SequenceBatch, kv: KVCache) -> Tensor:
        n = q.shape[0]
        if seq.runs:
            return self._attend_runs(q, seq.runs, kv)
        if seq.kv_range is not None:  # no copy: the pool's own slots (mask hides foreign ones)
            keys, values = kv.view(self.layer, *seq.kv_range)  # [R, KVH, D] each
        else:
            keys, values = kv.gather(self.layer, seq.kv_slots)  # [L, KVH, D] each
        q = q.transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
        keys = keys.transpose(0, 1).unsqueeze(0)  # [1, KVH, L, D]
        values = values.transpose(0, 1).unsqueeze(0)
        causal = seq.mask is None and n > 1
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=seq.mask, is_causal=causal, enable_gqa=True
        )
        return out[0].transpose(0, 1).reshape(n, -1)  # [n, H*D]

    def _attend_runs(self, q: Tensor, runs: tuple[KeyRun, ...], kv: KVCache) -> Tensor:
        """Attention over several in-place runs of keys, merged with their log-sum-exps.

        Queries sharing a KV head are stacked ([1, KVH, G*n, D]) so no key is copied per head.
        """
        n, groups = q.shape[0], self.num_heads // self.num_kv_heads
        qg = q.view(n, self.num_kv_heads, groups, self.head_dim).permute(1, 2, 0, 3)
        qg = qg.reshape(1, self.num_kv_heads, groups * n, self.head_dim)  # [1, KVH, G*n, D]
        outs, lses = [], []
        for run in runs:
            keys, values = kv.view(self.layer, run.lo, run.hi)  # [R, KVH, D] views
            bias = None if run.bias is None else run.bias.repeat(groups, 1)  # [G*n, R]
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                qg,
                keys.transpose(0, 1).unsqueeze(0),
                values.transpose(0, 1).unsqueeze(0),
                attn_mask=bias,
            )
            if run.empty is not None:  # the kernel reports 0 for rows it saw nothing of
                lse = lse.masked_fill(run.empty.repeat(groups), float("-inf"))
            outs.append(out)
            lses.append(lse)
        lse = torch.stack(lses)  # [runs, 1, KVH, G*n]
        weights = torch.softmax(lse, dim=0).unsqueeze(-1)  # each run's share of the total
        out = (torch.stack(outs) * weights).sum(0)  # [1, KVH, G*n, D]
        out = out.view(self.num_kv_heads, groups, n, self.head_dim).permute(2, 0, 1, 3)
        return out.reshape(n, -1)  # [n, H*D] (head = kv_head * G + g)

    def _attend_decode(self, q: Tensor, group: DecodeGroup, kv: KVCache) -> Tensor:
        b, length = group.kv_index.shape
        keys, values = kv.gather(self.layer, group.kv_index.view(-1))  # [B*L, KVH, D]
        keys = keys.view(b, length, self.num_kv_heads, self.head_dim).transpose(
            1, 2
        )  # [B, KVH, L, D]
        values = values.view(b, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = q.view(b, 1, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, 1, D]
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=group.kv_mask, enable_gqa=True
        )
        return out.reshape(b, -1)  # [B, H*D]


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w13 = Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.w2 = Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.split = (cfg.intermediate_size, cfg.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13.forward_parts(x, self.split)
        return self.w2(F.silu(gate).mul_(up))  # silu's output is ours: multiply in place


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attention = Attention(cfg, layer)
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, batch: BatchMeta, kv: KVCache) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, batch, kv)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """The decoder. `forward` returns logits only for `batch.logit_rows`."""

    rope_cos: Tensor
    rope_sin: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.output = Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    @torch.inference_mode()
    def forward(self, tokens: Tensor, positions: Tensor, batch: BatchMeta, kv: KVCache) -> Tensor:
        """tokens, positions: [T] → logits [R, vocab] for R = len(batch.logit_rows)."""
        if int(positions.max()) >= self.config.max_position:
            raise ValueError(
                f"position {int(positions.max())} is beyond the model's window "
                f"of {self.config.max_position}"
            )
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        x = self.tok_embeddings(tokens)  # [T, hidden]
        for block in self.layers:
            x = block(x, cos, sin, batch, kv)
        x = self.norm(x.index_select(0, batch.logit_rows))
        return self.output(x).float()

    def set_decode_weights(self, dtype: torch.dtype | None, max_rows: int = 4) -> None:
        """Keep a `dtype` copy of every linear weight for batches of at most `max_rows` tokens
        (None removes the copies). Trades a small logit change for faster decoding."""
        for module in self.modules():
            if isinstance(module, Linear):
                w = module.weight.detach()
                module.decode_weight = None if dtype is None else w.to(dtype).contiguous()
                module.decode_rows = max_rows

    def pack_weights(self) -> bool:
        """Pre-pack every linear layer for oneDNN (CPU, fp32); True if all were packed."""
        results = [m.pack() for m in self.modules() if isinstance(m, Linear)]
        return bool(results) and all(results)

    def resize_vocab(self, size: int) -> None:
        """Grow the vocabulary; new embedding (and output) rows start as the mean row."""
        from dataclasses import replace

        with torch.no_grad():
            self.tok_embeddings.weight = nn.Parameter(
                _grow(self.tok_embeddings.weight, size), requires_grad=False
            )
            if self.config.tie_embeddings:
                self.output.weight = self.tok_embeddings.weight
            else:
                self.output.weight = nn.Parameter(
                    _grow(self.output.weight, size), requires_grad=False
                )
        self.config = replace(self.config, vocab_size=size)
        if self.output.packed is not None:
            self.output.pack()

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype


def _grow(weight: Tensor, rows: int) -> Tensor:
    extra = weight.mean(0, keepdim=True).expand(rows - weight.shape[0], -1)
    return torch.cat((weight, extra))
