"""A small random LoRA adapter with the CML markers, as `asynclm finetune` will write one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from asynclm.cml.tokens import MARKERS

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_cml_adapter(model: Any, hf_tokenizer: Any, out: Path, *, seed: int = 0) -> Any:
    """Save a random LoRA adapter (all projections, r=4) plus trained-looking CML token rows.

    `model` (a transformers Llama) is resized and wrapped in place; returns the PEFT model, whose
    forward is the reference the exported models are compared with.
    """
    from peft import LoraConfig, get_peft_model

    tokenizer = copy.deepcopy(hf_tokenizer)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": list(MARKERS)}, replace_extra_special_tokens=False
    )
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=TARGETS,
        init_lora_weights=False,  # random A and B: the adapter really changes the model
        trainable_token_indices={"embed_tokens": ids},
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "trainable_tokens_delta" in name:
                param.add_(0.05 * torch.randn_like(param))
    peft_model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return peft_model.eval()
