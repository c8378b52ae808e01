"""Write a merged model as a GGUF file (what llama.cpp loads), with the `gguf` package.

Layout follows llama.cpp's `llama` architecture: its tensor names, Q/K rows permuted to its
interleaved RoPE convention, norms in float32, a byte-level BPE tokenizer (`gpt2`) with merges,
special token ids and the chat template. The CML markers are written as USER_DEFINED tokens:
llama.cpp matches them whole in prompt text *and* renders them in generated text (a CONTROL
token would be dropped from completions, and the agent would never see a call block).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from asynclm.cml.tokens import MARKERS
from asynclm.engine.loader import DEFAULT_MODEL, smollm2_gguf_path
from asynclm.export.merge import MergedModel

# name → (file type, type of 2-D weights); norms always stay float32
GGUF_TYPES: dict[str, tuple[gguf.LlamaFileType, gguf.GGMLQuantizationType]] = {
    "f32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
}
_T = gguf.MODEL_TENSOR
# transformers' parameter name (after `model.layers.N.`) → llama.cpp's tensor kind
_LAYER_TENSORS = {
    "self_attn.q_proj.weight": _T.ATTN_Q,
    "self_attn.k_proj.weight": _T.ATTN_K,
    "self_attn.v_proj.weight": _T.ATTN_V,
    "self_attn.o_proj.weight": _T.ATTN_OUT,
    "mlp.gate_proj.weight": _T.FFN_GATE,
    "mlp.up_proj.weight": _T.FFN_UP,
    "mlp.down_proj.weight": _T.FFN_DOWN,
    "input_layernorm.weight": _T.ATTN_NORM,
    "post_attention_layernorm.weight": _T.FFN_NORM,
}
_ARCH = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]


def export_gguf(
    merged: MergedModel,
    out: str | os.PathLike[str],
    *,
    outtype: str = "f16",
    pre: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write `merged` as one GGUF file.

    Args:
        merged: from `merge`.
        out: the `.gguf` file to write.
        outtype: `f32`, `f16` (default) or `q8_0` for the 2-D weights.
        pre: llama.cpp's pre-tokenizer name; read from the base GGUF file, or recognised for
            SmolLM2's tokenizer, when not given.
        force: replace an existing file.
        progress: show a progress bar while tensors are written.

    Returns:
        The file.
    """
    if outtype not in GGUF_TYPES:
        raise ValueError(f"outtype must be one of {sorted(GGUF_TYPES)}, got {outtype!r}")
    path = Path(out).expanduser()
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to replace it")
    config = merged.model.config
    _check_supported(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, _ARCH)
    try:
        _add_hparams(writer, config, GGUF_TYPES[outtype][0], merged.source)
        _add_tokenizer(writer, merged, pre or pre_tokenizer(merged))
        for name, array, qtype in _tensors(merged.model, GGUF_TYPES[outtype][1]):
            _add_tensor(writer, name, array, qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=progress)
    finally:
        writer.close()
    tmp.replace(path)
    return path


def _check_supported(config: Any) -> None:
    if getattr(config, "model_type", "llama") != "llama":
        raise ValueError(f"GGUF export supports Llama models, not {config.model_type!r}")
    if getattr(config, "attention_bias", False):
        raise ValueError("GGUF export of models with attention biases is not supported")
    scaling = getattr(config, "rope_scaling", None) or {}
    if scaling.get("rope_type", "default") not in ("default", None):
        raise ValueError(f"GGUF export does not support RoPE scaling {scaling!r} yet")


def _add_hparams(writer: gguf.GGUFWriter, config: Any, ftype: int, source: str) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(f"{Path(source).stem} + CML (asynclm export)")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim * config.num_attention_heads != config.hidden_size:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0


# ---- tokenizer ---------------------------------------------------------------------------------
def _add_tokenizer(writer: gguf.GGUFWriter, merged: MergedModel, pre: str) -> None:
    tokens, types = token_table(merged.tokenizer, merged.model.config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as folder:
        merged.tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)
    writer.add_add_bos_token(False)  # the chat template writes what the model needs


def token_table(hf_tokenizer: Any, vocab_size: int) -> tuple[list[str], list[gguf.TokenType]]:
    """Every token's text (byte-level BPE alphabet) and llama.cpp token type, by id.

    Rows of the embedding beyond the tokenizer's vocabulary (padding) become unused
    `[PADn]` tokens, as llama.cpp's own converter writes them.
    """
    by_id = {i: t for t, i in hf_tokenizer.get_vocab().items()}
    special = set(hf_tokenizer.all_special_tokens) | {
        t.content for t in hf_tokenizer.added_tokens_decoder.values() if t.special
    }
    tokens: list[str] = []
    types: list[gguf.TokenType] = []
    for i in range(vocab_size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(text)
            types.append(_token_type(text, special))
    return tokens, types


def _token_type(text: str, special: set[str]) -> gguf.TokenType:
    if text in MARKERS:
        return gguf.TokenType.USER_DEFINED
    return gguf.TokenType.CONTROL if text in special else gguf.TokenType.NORMAL


def pre_tokenizer(merged: MergedModel) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenization (its split regex)."""
    source = smollm2_gguf_path() if merged.source == DEFAULT_MODEL else Path(merged.source)
    if source.suffix == ".gguf" and source.is_file():
        field = gguf.GGUFReader(source).get_field(gguf.Keys.Tokenizer.PRE)
        if field is not None:
            return str(field.contents())
    if _is_smollm2_vocab(merged.tokenizer):
        return "smollm"
    raise ValueError(
        "cannot tell llama.cpp's pre-tokenizer for this tokenizer; pass pre= (--pre), e.g. "
        "'llama-bpe' for Llama 3 or 'qwen2' for Qwen2"
    )


def _is_smollm2_vocab(hf_tokenizer: Any) -> bool:
    from asynclm.engine.loader import default_tokenizer

    reference = default_tokenizer().hf.get_vocab()
    vocab = hf_tokenizer.get_vocab()
    return all(vocab.get(t) == i for t, i in reference.items())


# ---- tensors -----------------------------------------------------------------------------------
def _tensors(
    model: Any, weight_type: gguf.GGMLQuantizationType
) -> Iterator[tuple[str, np.ndarray, gguf.GGMLQuantizationType]]:
    """(llama.cpp name, float32 array in transformers' [out, in] layout, storage type)."""
    config = model.config
    state = {k: v.detach().to(torch.float32) for k, v in model.state_dict().items()}
    yield _name(_T.TOKEN_EMBD), _np(state["model.embed_tokens.weight"]), weight_type
    yield _name(_T.OUTPUT_NORM), _np(state["model.norm.weight"]), gguf.GGMLQuantizationType.F32
    if not config.tie_word_embeddings:
        yield _name(_T.OUTPUT), _np(state["lm_head.weight"]), weight_type
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    for i in range(config.num_hidden_layers):
        for suffix, kind in _LAYER_TENSORS.items():
            array = _np(state[f"model.layers.{i}.{suffix}"])
            if kind == _T.ATTN_Q:
                array = permute_for_rope(array, heads)
            elif kind == _T.ATTN_K:
                array = permute_for_rope(array, kv_heads)
            qtype = gguf.GGMLQuantizationType.F32 if array.ndim == 1 else weight_type
            yield _name(kind, i), array, qtype


def permute_for_rope(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Reorder Q/K rows from transformers' rotate-half RoPE to llama.cpp's interleaved pairs.

    Within each head, row j of the first half and row j of the second half become rows 2j and
    2j+1; transformers' GGUF loader applies the inverse.
    """
    rows = weight.shape[0]
    return (
        weight.reshape(num_heads, 2, rows // num_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _add_tensor(
    writer: gguf.GGUFWriter, name: str, array: np.ndarray, qtype: gguf.GGMLQuantizationType
) -> None:
    if qtype == gguf.GGMLQuantizationType.Q8_0 and array.shape[-1] % 32:
        qtype = gguf.GGMLQuantizationType.F16  # Q8_0 packs rows in blocks of 32
    if qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, array)
    elif qtype == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(name, array.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)


def _name(kind: gguf.MODEL_TENSOR, layer: int | None = None) -> str:
    template = gguf.TENSOR_NAMES[kind]
    return (template.format(bid=layer) if layer is not None else template) + ".weight"


def _np(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.cpu().numpy())
