"""The model to export: base weights with the adapter merged, the CML markers as tokens."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from asynclm.cml.tokens import MARKERS
from asynclm.engine.loader import DEFAULT_MODEL, load_model, to_transformers


@dataclass(frozen=True, slots=True)
class MergedModel:
    """A transformers `LlamaForCausalLM` and its tokenizer, ready to be written out.

    Attributes:
        model: the merged model (float32, CPU, eval mode).
        tokenizer: its transformers fast tokenizer, the CML markers included.
        source: the base model's preset name or path.
        marker_ids: token id of each CML marker, in `MARKERS` order.
        added_markers: markers that were not in the adapter's tokenizer and were added here
            (their embeddings are the mean row: an untuned model does not know them).
    """

    model: Any
    tokenizer: Any
    source: str
    marker_ids: tuple[int, ...]
    added_markers: tuple[str, ...]


def merge(model: str = DEFAULT_MODEL, adapter: str | os.PathLike[str] | None = None) -> MergedModel:
    """Merge `adapter` (a PEFT LoRA folder, or None) into `model` and add the CML markers.

    The engine's own loader does the merging (one owner: what is exported is exactly what
    `Engine.load(model, adapter)` runs). The adapter folder's tokenizer, when it has one, is the
    model's tokenizer; CML markers it lacks are added as special tokens.

    Args:
        model: a preset (`smollm2-135m`, `tiny`), a transformers folder or a `.gguf` file.
        adapter: a PEFT LoRA adapter folder.

    Raises:
        FileNotFoundError: the model or the adapter does not exist.
        ValueError: the adapter is not a PEFT adapter folder.
    """
    if adapter is not None:
        _check_adapter(adapter)
    # No cache entry: an export is a one-off, and a merged copy would cost the model's size.
    loaded = load_model(model, adapter, device="cpu", use_cache=adapter is None)
    before = set(loaded.tokenizer.hf.get_vocab())
    ids = loaded.tokenizer.add_special_tokens(MARKERS)
    if max(ids) >= loaded.model.config.vocab_size:
        loaded.model.resize_vocab(max(ids) + 1)
    added = tuple(m for m in MARKERS if m not in before)
    return MergedModel(to_transformers(loaded.model), loaded.tokenizer.hf, model, tuple(ids), added)


def _check_adapter(adapter: str | os.PathLike[str]) -> None:
    path = os.fspath(adapter)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no adapter folder at {path}")
    if not os.path.exists(os.path.join(path, "adapter_config.json")):
        raise ValueError(
            f"{path} is not a PEFT adapter folder (no adapter_config.json); "
            "`asynclm finetune` writes one"
        )
