"""Export a model with its LoRA adapter merged and the CML tokens added, for serving engines.

`export_hf` writes a transformers folder (safetensors, tokenizer, config: what vLLM and SGLang
load); `export_gguf` writes a GGUF file (what llama.cpp loads). Both start from `merge`, which
merges the adapter into the base model and makes sure the CML markers are single tokens.
"""

from asynclm.export.gguf_file import GGUF_TYPES, export_gguf
from asynclm.export.hf import HF_DTYPES, export_hf
from asynclm.export.merge import MergedModel, merge

__all__ = ["GGUF_TYPES", "HF_DTYPES", "MergedModel", "export_gguf", "export_hf", "merge"]
