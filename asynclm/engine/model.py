"""A Llama-family decoder in plain PyTorch with explicit per-token positions.

One `forward(tokens, positions, batch, kv)` serves prefill and decode for a ragged batch of
sequences: the linear layers see all tokens of all sequences concatenated, attention runs per
sequence over the KV slots its page table names. Positions are only used for RoPE, so they may
have gaps or repeat (Prompt Cache lays modules out at fixed positions); which keys a query sees is
decided by storage order (causal over the sequence's slots).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asynclm.engine.attention import BatchMeta, PagedAttention
from asynclm.engine.config import ModelConfig
from asynclm.engine.kernels.linear import LinearKernel
from asynclm.engine.kernels.lowrank import LowRank
from asynclm.engine.kernels.ops import Ops
from asynclm.engine.kv_cache import KVCache


class Linear(nn.Linear):
    """`nn.Linear` that multiplies with the kernel its plan names for the batch size.

    The plan (`use`) comes from measurements at load (`asynclm.engine.tuning`): e.g. 4-bit
    block weights for decoding, oneDNN-packed ones for a few dozen rows, plain GEMMs for long
    prefill chunks. Without a plan, `F.linear`. The plain `weight` is always kept
    (state dicts, adapters, other devices); with a LoRA adapter it has the adapter merged in, and
    `lowrank` (when set) is the same weight kept apart: an exact block base plus the update.
    """

    kernels: tuple[tuple[int, LinearKernel], ...] = ()  # (max rows, kernel), rows ascending
    lowrank: LowRank | None = None

    def attach(self, lowrank: LowRank | None) -> None:
        """Offer the tuner this layer's adapter unmerged (`weight` must equal base + update)."""
        self.lowrank = lowrank

    def use(self, kernels: tuple[tuple[int, LinearKernel], ...]) -> None:
        """Serve a batch of r rows with the first kernel whose max rows is >= r."""
        self.kernels = kernels

    def kernel(self, rows: int) -> LinearKernel | None:
        for max_rows, kernel in self.kernels:
            if rows <= max_rows:
                return kernel
        return None

    def forward(self, x: Tensor) -> Tensor:
        kernel = self.kernel(x.shape[0])
        return F.linear(x, self.weight, self.bias) if kernel is None else kernel(x)


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


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.wqkv = Linear(cfg.hidden_size, q_dim + 2 * kv_dim, bias=cfg.attention_bias)
        self.wo = Linear(q_dim, cfg.hidden_size, bias=False)
        self.attend = PagedAttention(layer, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, batch: BatchMeta, kv: KVCache, ops: Ops
    ) -> Tensor:
        qkv = self.wqkv(x)  # [T, (H + 2 KVH) D]
        q = ops.rope_qkv(
            qkv, cos, sin, kv.data, self.layer, batch.write_slots, self.num_heads, self.num_kv_heads
        )  # [T, H D]; k and v are in the pool now
        return self.wo(self.attend(q, batch, kv, ops))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w13 = Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.w2 = Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor, ops: Ops) -> Tensor:
        return self.w2(ops.silu_mul(self.w13(x)))  # [T, 2I] -> [T, I] -> [T, C]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attention = Attention(cfg, layer)
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(
        self, h: Tensor, normed: Tensor, ctx: _Step, next_norm: RMSNorm
    ) -> tuple[Tensor, Tensor]:
        """`h` the residual stream, `normed` = attention_norm(h) -> (h', next_norm(h')).

        Each residual add is fused with the norm after it (the next block's, or the last one).
        """
        ops = ctx.ops
        attn = self.attention(normed, ctx.cos, ctx.sin, ctx.batch, ctx.kv, ops)
        h, normed = ops.add_rms_norm(h, attn, self.ffn_norm.weight, self.ffn_norm.eps)
        ffn = self.feed_forward(normed, ops)
        return ops.add_rms_norm(h, ffn, next_norm.weight, next_norm.eps)


@dataclass(frozen=True, slots=True)
class _Step:
    """What every block of one forward reads."""

    cos: Tensor  # [T, D]
    sin: Tensor
    batch: BatchMeta
    kv: KVCache
    ops: Ops


class Transformer(nn.Module):
    """The decoder. `forward` returns logits only for `batch.logit_rows`."""

    rope_cos: Tensor
    rope_sin: Tensor
    ops: Ops = Ops()  # torch ops; `use_ops(Ops(native=True))` once the native ones are loaded

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
        step = _Step(self.rope_cos[positions], self.rope_sin[positions], batch, kv, self.ops)
        blocks = cast(list[Block], list(self.layers))
        h = self.tok_embeddings(tokens)  # [T, hidden]
        first = blocks[0].attention_norm
        normed = self.ops.rms_norm(h, first.weight, first.eps)
        norms = [*(block.attention_norm for block in blocks[1:]), self.norm]
        for block, next_norm in zip(blocks, norms, strict=True):
            h, normed = block(h, normed, step, next_norm)
        return self.output(normed.index_select(0, batch.logit_rows)).float()

    @property
    def paged_decode(self) -> bool:
        """Whether single-token steps attend to the pool in place at any length."""
        return self.ops.native

    def use_ops(self, ops: Ops) -> None:
        """Run the fused ops natively (`Ops(native=True)`) or in torch."""
        self.ops = ops

    def decode_bytes(self) -> int:
        """Bytes of weights a one-token step reads with the kernels in use (for GB/s)."""
        total = 0
        for _, linear in self.linears():
            kernel = linear.kernel(1)
            total += kernel.nbytes if kernel is not None else linear.weight.nbytes
        return total

    def linears(self) -> list[tuple[str, Linear]]:
        """Every linear layer with its name (`layers.3.attention.wqkv`, `output`)."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, Linear)]

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
        self.output.use(())  # its kernels hold the old weight: plain until planned again

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype


def _grow(weight: Tensor, rows: int) -> Tensor:
    extra = weight.mean(0, keepdim=True).expand(rows - weight.shape[0], -1)
    return torch.cat((weight, extra))
