"""Export of the real SmolLM2-135M with a random CML adapter: engine, transformers and GGUF
agree on the merged model's logits."""

from __future__ import annotations

import pytest
import torch

from asynclm.engine.engine import Engine
from asynclm.export import export_gguf, export_hf, merge
from tests.export.adapters import make_cml_adapter

pytestmark = [pytest.mark.real_model, pytest.mark.anyio, pytest.mark.timeout(1200)]
TEXT = "[CALL] w1 [HEAD] get_weather(city='Paris') [END] [TRAP][END][INTR] w1 [HEAD] 21 C [END]"


@pytest.fixture(scope="module")
def real_adapter(tmp_path_factory):
    """A random CML adapter on the real model, and the PEFT model it came from."""
    from asynclm.engine.loader import load_model, to_transformers

    base = load_model("smollm2-135m", adapter=None, device="cpu")  # the plain model
    folder = tmp_path_factory.mktemp("real-adapter")
    peft_model = make_cml_adapter(to_transformers(base.model), base.tokenizer.hf, folder, seed=3)
    return folder, peft_model


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


@pytest.fixture(scope="module")
def merged(real_adapter):
    return merge("smollm2-135m", real_adapter[0])


@pytest.fixture(scope="module")
def ids_and_expected(merged, real_adapter):
    ids = merged.tokenizer.encode("<|im_start|>assistant\n" + TEXT, add_special_tokens=False)
    return ids, _logits(real_adapter[1], ids)


async def test_real_hf_export_matches_the_engine(merged, real_adapter, ids_and_expected, tmp_path):
    from transformers import AutoModelForCausalLM

    adapter = real_adapter[0]
    ids, expected = ids_and_expected
    folder = export_hf(merged, tmp_path / "hf")
    exported = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert (_logits(exported, ids) - expected).abs().max() < 1e-3
    for engine in (
        Engine.load(str(folder), device="cpu", num_pages=64),
        Engine.load("smollm2-135m", adapter, device="cpu", num_pages=64),
    ):
        async with engine.context() as ctx:
            assert (await ctx.forward(ids) - expected).abs().max() < 1e-3


def test_real_gguf_export_loads_back(merged, ids_and_expected, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    ids, expected = ids_and_expected
    gguf = export_gguf(merged, tmp_path / "m.gguf", outtype="q8_0", progress=False)
    reloaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    got = _logits(reloaded, ids)
    # Q8_0 weights: the logits move a little, the ranking of the top tokens hardly at all
    assert (got - expected).abs().max() / expected.abs().max() < 0.1
    agree = (got.argmax(-1) == expected.argmax(-1)).float().mean()
    assert agree > 0.9
