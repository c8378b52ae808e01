"""A Llama-family decoder in plain PyTorch with explicit per-token positions.

One `forward(tokens, positions, batch, kv)` serves prefill and decode for a ragged batch of
sequences: the linear layers see all tokens of all sequences concatenated, attention runs per
sequence over the KV slots its page table names. Positions are only used for RoPE, so they may
have gaps or repeat (Prompt Cache lays modules out at fixed positions); which keys a query sees is
decided by storage order (causal over the sequence's slots).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    row_ids: int | None = None  # opaque id of the sequence (for scripted models)


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """Metadata of a ragged batch: where to write the new K/V, who attends to what."""

    write_slots: Tensor  # [T] slot of each new token
    sequences: tuple[SequenceBatch, ...]
    logit_rows: Tensor  # [R] rows of the batch whose logits are returned


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
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.wqkv = nn.Linear(cfg.hidden_size, q_dim + 2 * kv_dim, bias=cfg.attention_bias)
        self.wo = nn.Linear(q_dim, cfg.hidden_size, bias=False)
        self.split = (q_dim, kv_dim, kv_dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, batch: BatchMeta, kv: KVCache) -> Tensor:
        t = x.shape[0]
        q, k, v = self.wqkv(x).split(self.split, dim=-1)
        q = apply_rope(q.view(t, self.num_heads, self.head_dim), cos, sin)
        k = apply_rope(k.view(t, self.num_kv_heads, self.head_dim), cos, sin)
        v = v.view(t, self.num_kv_heads, self.head_dim)
        kv.write(self.layer, batch.write_slots, k, v)
        if len(batch.sequences) == 1:
            out = self._attend(q, batch.sequences[0], kv)
        else:
            out = torch.cat([self._attend(q[s.start : s.start + s.length], s, kv) for s in batch.sequences])
        return self.wo(out)

    def _attend(self, q: Tensor, seq: SequenceBatch, kv: KVCache) -> Tensor:
        n = q.shape[0]
        keys, values = kv.gather(self.layer, seq.kv_slots)  # [L, KVH, D] each
        kv_len = keys.shape[0]
        q = q.transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
        keys = keys.transpose(0, 1).unsqueeze(0)  # [1, KVH, L, D]
        values = values.transpose(0, 1).unsqueeze(0)
        if n == 1:
            out = F.scaled_dot_product_attention(q, keys, values, enable_gqa=True)
        elif n == kv_len:
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=True)
        else:  # new tokens after a cached prefix: query i sees keys [0, kv_len - n + i]
            mask = torch.ones(n, kv_len, dtype=torch.bool, device=q.device).tril(kv_len - n)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
        return out[0].transpose(0, 1).reshape(n, -1)  # [n, H*D]


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w13 = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


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

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.output = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
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

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype
