"""Write a merged model as a transformers folder: what vLLM and SGLang serve."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import torch

from asynclm.cml.tokens import MARKERS
from asynclm.export.merge import MergedModel

HF_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def export_hf(
    merged: MergedModel, out: str | os.PathLike[str], *, dtype: str = "float32", force: bool = False
) -> Path:
    """Write `merged` to the folder `out`: safetensors weights, config, tokenizer, chat template.

    Args:
        merged: from `merge`.
        out: the folder to create.
        dtype: weight dtype, one of `HF_DTYPES` (float32 keeps logits identical to the engine's;
            bfloat16 halves the size and is what GPU servers run).
        force: replace an existing folder.

    Returns:
        The folder.
    """
    if dtype not in HF_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(HF_DTYPES)}, got {dtype!r}")
    folder = Path(out).expanduser()
    _prepare(folder, force)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # A copy: casting in place would round the caller's float32 weights.
    model = copy.deepcopy(merged.model).to(HF_DTYPES[dtype])
    model.save_pretrained(tmp, safe_serialization=True)
    merged.tokenizer.save_pretrained(tmp)
    _write_generation_config(tmp, merged)
    _write_manifest(tmp, merged, dtype)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _prepare(folder: Path, force: bool) -> None:
    if folder.exists() and not force:
        raise FileExistsError(f"{folder} exists; pass force=True (--force) to replace it")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; an HF export is a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)


def _write_generation_config(folder: Path, merged: MergedModel) -> None:
    """Stop at the end-of-turn token: servers read this file for their default stop ids."""
    ids = set(merged.model.config.eos_token_id or []) | {merged.tokenizer.eos_token_id}
    eos = sorted(i for i in ids if i is not None)
    config = {"bos_token_id": merged.model.config.bos_token_id, "eos_token_id": eos}
    (folder / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _write_manifest(folder: Path, merged: MergedModel, dtype: str) -> None:
    """What was exported, for humans and for `asynclm` clients (the CML marker ids)."""
    manifest = {
        "exported_by": "asynclm export",
        "source": merged.source,
        "dtype": dtype,
        "cml_markers": dict(zip(MARKERS, merged.marker_ids, strict=True)),
        "markers_added_untrained": list(merged.added_markers),
    }
    (folder / "asynclm_export.json").write_text(json.dumps(manifest, indent=2) + "\n")
