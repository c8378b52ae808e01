"""Loading models: transformers folders, LoRA adapters (merged), the weight cache, errors."""

from __future__ import annotations

import pytest
import torch

from asynclm.engine.engine import Engine
from asynclm.engine.loader import load_model
from tests.engine.conftest import hf_logits, hf_twin

pytestmark = pytest.mark.anyio
TOKENS = [5, 17, 300, 4000, 12, 99, 1024, 7]


async def _logits(loaded) -> torch.Tensor:
    engine = Engine.from_loaded(loaded, num_pages=16)
    async with engine.context() as ctx:
        return await ctx.forward(TOKENS)


@pytest.fixture
def base_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("ASYNCLM_CACHE", str(tmp_path / "cache"))
    model = hf_twin(tiny)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tiny.tokenizer.hf.save_pretrained(folder)
    return folder, model


async def test_a_transformers_folder_loads_and_is_cached(base_folder, tmp_path) -> None:
    folder, model = base_folder
    first = load_model(str(folder), device="cpu")
    assert (await _logits(first) - hf_logits(model, TOKENS)).abs().max() < 1e-4
    cached = list((tmp_path / "cache" / "models").iterdir())
    assert len(cached) == 1 and (cached[0] / "weights.safetensors").exists()
    second = load_model(str(folder), device="cpu")  # from the cache this time
    assert second.fingerprint == first.fingerprint
    assert torch.equal(await _logits(second), await _logits(first))


async def test_a_lora_adapter_is_merged_at_load(base_folder, tmp_path) -> None:
    from peft import LoraConfig, get_peft_model

    folder, model = base_folder
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, config)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    expected = hf_logits(peft_model, TOKENS)
    with peft_model.disable_adapter():
        base = hf_logits(peft_model, TOKENS)
    assert (expected - base).abs().max() > 1e-3  # the adapter really changes the model
    merged = load_model(str(folder), adapter=adapter, device="cpu")
    assert (await _logits(merged) - expected).abs().max() < 1e-4
    plain = load_model(str(folder), device="cpu")
    assert merged.fingerprint != plain.fingerprint  # the adapter is part of the cache key


def test_bad_sources_are_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_model("some-org/some-model")
    with pytest.raises(ValueError, match="random weights"):
        load_model("tiny", adapter=tmp_path)
