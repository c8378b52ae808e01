"""Engine fixtures: the tiny random model (fast, exact) shared across tests."""

from __future__ import annotations

import pytest
import torch

from asynclm.engine.engine import Engine
from asynclm.engine.loader import LoadedModel, to_hf_state_dict


@pytest.fixture
def engine(tiny: LoadedModel) -> Engine:
    return Engine.from_loaded(tiny, num_pages=512, page_size=4, max_batch_tokens=64)


def hf_twin(loaded: LoadedModel):
    """A transformers LlamaForCausalLM carrying exactly our weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = loaded.model.config
    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=cfg.rope_theta,
        max_position_embeddings=cfg.max_position,
        tie_word_embeddings=cfg.tie_embeddings,
    )
    model = LlamaForCausalLM(hf_cfg).eval()
    state = to_hf_state_dict(
        cfg, {k: v.detach().contiguous().clone() for k, v in loaded.model.state_dict().items()}
    )
    model.load_state_dict(state, strict=False)
    return model


def hf_logits(model, tokens: list[int], positions: list[int] | None = None) -> torch.Tensor:
    ids = torch.tensor([tokens])
    pos = torch.tensor([positions]) if positions is not None else None
    with torch.no_grad():
        return model(input_ids=ids, position_ids=pos).logits[0].float()
