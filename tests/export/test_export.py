"""`asynclm export`: the merged model as a transformers folder and as a GGUF file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asynclm.cml.tokens import MARKERS
from asynclm.engine.engine import Engine
from asynclm.export import export_gguf, export_hf, merge
from asynclm.export.gguf_file import permute_for_rope

pytestmark = pytest.mark.anyio
TEXT = (
    "[CALL] w1 [HEAD] get_weather(city='Paris') [END] [TRAP][END]"
    "[INTR] w1 [HEAD] sunny [END] It is sunny.<|im_end|>"
)
# f16 weights round at 2^-11 relative, Q8_0 at 1/127 of each block's largest value
GGUF_TOLERANCE = {"f32": 1e-4, "f16": 2e-2, "q8_0": 1.5e-1}


def _hf_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


async def _engine_logits(engine: Engine, ids: list[int]) -> torch.Tensor:
    async with engine.context() as ctx:
        return await ctx.forward(ids)


@pytest.fixture(scope="module")
def merged(tiny_base, tiny_adapter):
    return merge(str(tiny_base), tiny_adapter[0])


@pytest.fixture(scope="module")
def ids(merged) -> list[int]:
    return [1, *merged.tokenizer.encode(TEXT, add_special_tokens=False)]


def test_merge_keeps_the_adapters_markers_and_weights(merged, tiny_adapter, ids) -> None:
    adapter_tok = tiny_adapter[1]  # the PEFT model; its tokenizer was saved beside it
    assert merged.added_markers == ()  # the adapter brought them
    assert merged.marker_ids == tuple(range(49152, 49157))
    assert all(i in ids for i in merged.marker_ids)  # each marker is one token
    expected = _hf_logits(adapter_tok, ids)
    assert (_hf_logits(merged.model, ids) - expected).abs().max() < 1e-4
    with adapter_tok.disable_adapter():
        assert (_hf_logits(adapter_tok, ids) - expected).abs().max() > 1e-2  # it matters


async def test_hf_folder_matches_the_engine_and_transformers(merged, ids, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = export_hf(merged, tmp_path / "hf")
    expected = _hf_logits(merged.model, ids)
    reloaded = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert (_hf_logits(reloaded, ids) - expected).abs().max() < 1e-5
    engine = Engine.load(str(folder), device="cpu", num_pages=64)
    assert (await _engine_logits(engine, ids) - expected).abs().max() < 1e-4
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert tokenizer.encode(TEXT, add_special_tokens=False) == ids[1:]
    assert tokenizer.chat_template == merged.tokenizer.chat_template
    manifest = json.loads((folder / "asynclm_export.json").read_text())
    assert manifest["cml_markers"] == dict(zip(MARKERS, merged.marker_ids, strict=True))
    generation = json.loads((folder / "generation_config.json").read_text())
    assert 2 in generation["eos_token_id"]


def test_hf_bfloat16_halves_the_weights(merged, tmp_path) -> None:
    small = export_hf(merged, tmp_path / "bf16", dtype="bfloat16")
    full = export_hf(merged, tmp_path / "f32")
    size = {f: (f / "model.safetensors").stat().st_size for f in (small, full)}
    assert size[small] < 0.6 * size[full]
    assert merged.model.dtype == torch.float32  # the merged model is left as it was


@pytest.fixture(scope="module")
def gguf_files(merged, tmp_path_factory):
    """Exported GGUF files by type, written once (reading one back takes seconds)."""
    folder = tmp_path_factory.mktemp("gguf")
    cache: dict[str, object] = {}

    def get(outtype: str):
        if outtype not in cache:
            cache[outtype] = export_gguf(
                merged, folder / f"m-{outtype}.gguf", outtype=outtype, progress=False
            )
        return cache[outtype]

    return get


# f32 and f16 take the same path as q8_0 but for the storage type: slow runs check them too
@pytest.mark.parametrize(
    "outtype",
    [
        pytest.param("f32", marks=pytest.mark.slow),
        pytest.param("f16", marks=pytest.mark.slow),
        "q8_0",
    ],
)
def test_gguf_loads_back_in_transformers(merged, ids, gguf_files, outtype) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_files(outtype)
    kwargs = {"gguf_file": path.name, "local_files_only": True}
    model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    expected = _hf_logits(merged.model, ids)
    error = (_hf_logits(model, ids) - expected).abs().max() / expected.abs().max()
    assert error < GGUF_TOLERANCE[outtype]
    tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
    assert tokenizer.encode(TEXT, add_special_tokens=False) == ids[1:]
    assert tokenizer.decode(ids[1:]) == TEXT  # markers come back as text
    assert tokenizer.chat_template == merged.tokenizer.chat_template


def test_gguf_metadata_marks_the_markers_user_defined(merged, gguf_files) -> None:
    import gguf

    reader = gguf.GGUFReader(gguf_files("q8_0"))
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    types = reader.get_field("tokenizer.ggml.token_type").contents()
    for marker, i in zip(MARKERS, merged.marker_ids, strict=True):
        assert tokens[i] == marker and types[i] == gguf.TokenType.USER_DEFINED
    assert types[2] == gguf.TokenType.CONTROL  # <|im_end|>
    assert reader.get_field("tokenizer.ggml.pre").contents() == "smollm"
    assert reader.get_field("tokenizer.ggml.eos_token_id").contents() == 2
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == "Q8_0" and kinds["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in kinds  # tied to token_embd, as llama.cpp expects


def test_rope_permutation_interleaves_the_halves_of_each_head() -> None:
    rows = np.arange(2 * 8).reshape(2 * 8, 1)  # 2 heads of head_dim 8
    permuted = permute_for_rope(rows, 2)[:, 0].tolist()
    assert permuted == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]


def test_bad_requests_are_clear_errors(merged, tiny_base, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no adapter folder"):
        merge(str(tiny_base), tmp_path / "missing")
    with pytest.raises(ValueError, match="not a PEFT adapter"):
        merge(str(tiny_base), tmp_path)
    with pytest.raises(ValueError, match="outtype must be one of"):
        export_gguf(merged, tmp_path / "x.gguf", outtype="q4_k")
    with pytest.raises(ValueError, match="dtype must be one of"):
        export_hf(merged, tmp_path / "x", dtype="int8")
    (tmp_path / "taken.gguf").write_bytes(b"")
    with pytest.raises(FileExistsError, match="--force"):
        export_gguf(merged, tmp_path / "taken.gguf")
    assert (tmp_path / "taken.gguf").read_bytes() == b""  # nothing lost


def test_the_command_writes_both_formats(tiny_base, tiny_adapter, tmp_path, capsys) -> None:
    from asynclm.cli import main

    adapter = str(tiny_adapter[0])
    args = ["export", "--model", str(tiny_base), "--adapter", adapter]
    assert main([*args, "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").exists()
    assert main([*args, "--format", "hf", "--out", str(tmp_path / "hf")]) == 1
    assert "--force" in capsys.readouterr().err
    gguf_args = ["--format", "gguf", "--dtype", "q8_0", "--out", str(tmp_path / "m.gguf")]
    assert main([*args, *gguf_args]) == 0
    assert (tmp_path / "m.gguf").stat().st_size > 1_000_000
