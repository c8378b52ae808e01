"""Model configuration: a frozen dataclass with named presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Shape of a Llama-family decoder (SmolLM2, Llama 3.x, Qwen2.x)."""

    vocab_size: int = 49152
    hidden_size: int = 576
    intermediate_size: int = 1536
    num_layers: int = 30
    num_heads: int = 9
    num_kv_heads: int = 3
    head_dim: int = 64
    rms_norm_eps: float = 1e-5
    rope_theta: float = 100000.0
    rope_scaling: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    max_position: int = 8192
    tie_embeddings: bool = True
    attention_bias: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_name(cls, name: str) -> ModelConfig:
        """A named preset (`tiny`, `smollm2-135m`)."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}") from None

    @classmethod
    def from_hf(cls, hf: Any) -> ModelConfig:
        """Translate a transformers `PretrainedConfig` of a Llama-family model."""
        heads = hf.num_attention_heads
        head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // heads
        rope = getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {}
        theta = rope.get("rope_theta") or getattr(hf, "rope_theta", None) or 10000.0
        scaling = rope if rope.get("rope_type", "default") not in ("default", None) else None
        eos = hf.eos_token_id
        eos_ids = (
            tuple(eos) if isinstance(eos, (list, tuple)) else ((eos,) if eos is not None else ())
        )
        return cls(
            vocab_size=hf.vocab_size,
            hidden_size=hf.hidden_size,
            intermediate_size=hf.intermediate_size,
            num_layers=hf.num_hidden_layers,
            num_heads=heads,
            num_kv_heads=getattr(hf, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            rms_norm_eps=hf.rms_norm_eps,
            rope_theta=float(theta),
            rope_scaling=scaling,
            max_position=getattr(hf, "max_position_embeddings", 8192),
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            attention_bias=bool(getattr(hf, "attention_bias", False))
            or getattr(hf, "model_type", "") == "qwen2",
            bos_token_id=hf.bos_token_id,
            eos_token_ids=eos_ids,
        )

    def with_vocab(self, vocab_size: int) -> ModelConfig:
        return replace(self, vocab_size=vocab_size)

    def kv_bytes_per_token(self, itemsize: int) -> int:
        """Bytes of KV cache one token needs across all layers, for values of `itemsize` bytes
        (4 for float32, 2 for bfloat16: `dtype.itemsize`)."""
        if itemsize < 1:
            raise ValueError(f"itemsize must be >= 1 byte, got {itemsize}")
        return self.num_layers * 2 * self.num_kv_heads * self.head_dim * itemsize


PRESETS: dict[str, ModelConfig] = {
    "smollm2-135m": ModelConfig(bos_token_id=1, eos_token_ids=(2,)),
    "tiny": ModelConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        max_position=4096,
        bos_token_id=1,
        eos_token_ids=(2,),
    ),
}
