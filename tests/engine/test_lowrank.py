"""A LoRA adapter kept unmerged beside exact block weights: same logits as the merged model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asynclm.engine.engine import Engine
from asynclm.engine.kernels import check
from asynclm.engine.kernels.formats import dequantize, quantize
from asynclm.engine.kernels.linear import make_kernel
from asynclm.engine.kernels.lowrank import LowRank, stack_parts
from asynclm.engine.kernels.plan import ANY
from asynclm.engine.loader import load_model
from tests.engine.conftest import hf_logits, hf_twin

pytestmark = pytest.mark.anyio
TOKENS = [5, 17, 300, 4000, 12, 99, 1024, 7]


@pytest.fixture
def needs_native() -> None:
    if not check.native_ready():
        pytest.skip(f"native kernels off here: {check.problems()[0]}")


def _on_q4_1_grid(weight: torch.Tensor) -> torch.Tensor:
    """Rounded to Q4_1 until it is a fixed point (one rounding is not always one, in floats)."""
    for _ in range(8):
        rounded = dequantize(quantize(weight, "q4_1"))
        if torch.equal(rounded, weight):
            return weight
        weight = rounded
    raise AssertionError("Q4_1 rounding did not settle")


# ---- the math on one layer -------------------------------------------------------------------
def test_stacked_parts_equal_the_parts_merged_one_by_one():
    gen = torch.Generator().manual_seed(0)
    q = (torch.randn(4, 64, generator=gen), torch.randn(48, 4, generator=gen), 2.0)
    v = (torch.randn(8, 64, generator=gen), torch.randn(16, 8, generator=gen), 0.5)
    a, b = stack_parts([q, 16, v])  # k (16 rows) not adapted
    assert a.shape == (12, 64) and b.shape == (80, 12)
    expected = torch.cat([q[1] @ q[0] * q[2], torch.zeros(16, 64), v[1] @ v[0] * v[2]])
    torch.testing.assert_close(b @ a, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least one adapted part"):
        stack_parts([16, 16])


def test_lowrank_checks_its_shapes():
    base = quantize(torch.randn(8, 64), "q4_1")
    with pytest.raises(ValueError, match="do not fit"):
        LowRank(torch.zeros(4, 64), torch.zeros(9, 4), base)


@pytest.mark.parametrize("fmt", ["q4_1", "q8_0"])
def test_block_base_plus_lowrank_equals_the_merged_weight(needs_native, fmt):
    gen = torch.Generator().manual_seed(1)
    base = quantize(torch.randn(96, 128, generator=gen) * 0.05, fmt)
    a, b = torch.randn(16, 128, generator=gen) * 0.1, torch.randn(96, 16, generator=gen) * 0.1
    merged = dequantize(base) + b @ a
    kernel = make_kernel(f"{fmt}_lora", merged, None, None, LowRank(a, b, base))
    assert kernel is not None and kernel.nbytes < merged.nbytes
    for rows in (1, 3, 40):
        x = torch.randn(rows, 128, generator=gen)
        torch.testing.assert_close(kernel(x), F.linear(x, merged), rtol=1e-4, atol=1e-4)
    assert make_kernel("q8_0_lora" if fmt == "q4_1" else "q4_1_lora", merged, None) is None


# ---- a real adapter on a model with exact Q4_1 layers ----------------------------------------
@pytest.fixture
def q4_folder(tiny, tmp_path, monkeypatch):
    """The tiny model as a transformers folder, its layer weights on the Q4_1 grid."""
    monkeypatch.setenv("ASYNCLM_CACHE", str(tmp_path / "cache"))
    model = hf_twin(tiny)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("proj.weight"):
                p.copy_(_on_q4_1_grid(p))
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tiny.tokenizer.hf.save_pretrained(folder)
    return folder, model


@pytest.fixture
def adapter(q4_folder, tmp_path):
    """A PEFT adapter with random factors: q, v, o, gate, down adapted (k and up not)."""
    from peft import LoraConfig, get_peft_model

    _, model = q4_folder
    targets = ["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    folder = tmp_path / "adapter"
    peft_model.save_pretrained(folder)
    return folder, hf_logits(peft_model, TOKENS)


async def _logits(engine: Engine) -> torch.Tensor:
    async with engine.context() as ctx:
        return await ctx.forward(TOKENS)


def _force_unmerged(engine: Engine) -> int:
    """Run every layer with an unmerged adapter on its block + low-rank kernel, at any rows."""
    count = 0
    for _, linear in engine.model.linears():  # type: ignore[attr-defined]
        if linear.lowrank is not None:
            kernel = make_kernel("q4_1_lora", linear.weight, linear.bias, None, linear.lowrank)
            assert kernel is not None
            linear.use(((ANY, kernel),))
            count += 1
    return count


async def test_unmerged_adapter_gives_the_merged_logits(needs_native, q4_folder, adapter):
    folder, _ = q4_folder
    adapter_folder, expected = adapter
    loaded = load_model(str(folder), adapter=adapter_folder, device="cpu")
    merged = await _logits(Engine.from_loaded(loaded, num_pages=16, weights="fp32"))
    engine = Engine.from_loaded(loaded, num_pages=16, tune=False)
    assert _force_unmerged(engine) == 2 * 4  # every adapted linear of both blocks
    unmerged = await _logits(engine)
    plain = await _logits(Engine.from_loaded(load_model(str(folder), adapter=None), num_pages=16))
    assert (merged - plain).abs().max() > 1e-3  # the adapter really changes the model
    assert (merged - expected).abs().max() < 1e-4
    assert (unmerged - merged).abs().max() < 1e-4
    assert torch.equal(unmerged.argmax(-1), merged.argmax(-1))


async def test_the_tuner_measures_unmerged_against_merged_and_cache_keeps_it(
    needs_native, q4_folder, adapter
):
    folder, _ = q4_folder
    adapter_folder, _ = adapter
    first = load_model(str(folder), adapter=adapter_folder, device="cpu")
    engine = Engine.from_loaded(first, num_pages=16)
    assert engine.kernels is not None
    sites = {s.site: s for s in engine.kernels.sites}
    wqkv = sites["attention.wqkv"]
    assert wqkv.block == "q4_1+lora" and "q4_1_lora" in wqkv.timings[1]
    assert "q4_1_lora" in sites["feed_forward.w2"].timings[1]
    fp32 = Engine.from_loaded(first, num_pages=16, weights="fp32").kernels
    assert fp32 is not None
    assert all("q4_1_lora" not in s.timings[1] for s in fp32.sites)  # merged only
    second = load_model(str(folder), adapter=adapter_folder, device="cpu")  # from the cache
    assert second.fingerprint == first.fingerprint
    pairs = zip(first.model.linears(), second.model.linears(), strict=True)
    for (name, a), (_, b) in pairs:
        assert (a.lowrank is None) == (b.lowrank is None), name
        if a.lowrank is not None and b.lowrank is not None:
            assert torch.equal(a.lowrank.a, b.lowrank.a) and torch.equal(a.lowrank.b, b.lowrank.b)
            assert torch.equal(dequantize(a.lowrank.base), dequantize(b.lowrank.base))
    plain = load_model(str(folder), adapter=None, device="cpu")
    assert all(m.lowrank is None for _, m in plain.model.linears())


def test_a_base_off_the_block_grid_is_merged_only(tiny, tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("ASYNCLM_CACHE", str(tmp_path / "cache"))
    model = hf_twin(tiny)  # random float weights: no exact block form
    model.save_pretrained(tmp_path / "model")
    tiny.tokenizer.hf.save_pretrained(tmp_path / "model")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(tmp_path / "adapter")
    loaded = load_model(str(tmp_path / "model"), adapter=tmp_path / "adapter", device="cpu")
    assert all(m.lowrank is None for _, m in loaded.model.linears())
