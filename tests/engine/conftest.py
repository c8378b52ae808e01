"""Engine fixtures: the tiny random model (fast, exact) shared across tests."""

from __future__ import annotations

import pytest
import torch

from asynclm.engine.engine import Engine
from asynclm.engine.loader import LoadedModel, to_transformers


@pytest.fixture
def engine(tiny: LoadedModel) -> Engine:
    return Engine.from_loaded(tiny, num_pages=512, page_size=4, max_batch_tokens=64)


def hf_twin(loaded: LoadedModel):
    """A transformers LlamaForCausalLM carrying exactly our weights."""
    return to_transformers(loaded.model)


def hf_logits(model, tokens: list[int], positions: list[int] | None = None) -> torch.Tensor:
    ids = torch.tensor([tokens])
    pos = torch.tensor([positions]) if positions is not None else None
    with torch.no_grad():
        return model(input_ids=ids, position_ids=pos).logits[0].float()


@pytest.fixture(scope="session", autouse=True)
def _native_kernels() -> None:
    """Load (or build once) the native kernels before any test points the cache elsewhere."""
    from asynclm.engine.kernels.check import native_ready

    native_ready()
