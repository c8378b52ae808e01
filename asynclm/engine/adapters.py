"""A PEFT LoRA adapter kept unmerged beside the merged weights, in the engine's layer names.

The loader still merges the adapter (the model's `weight`s, state dicts and exports carry it).
Where a layer's base weight lies exactly on a block grid (the default model's Q4_1 layers), it
also keeps that base as blocks plus the adapter's `A`/`B` (`kernels.lowrank.LowRank`), so the
tuner can measure merged float32 against exact blocks plus the low-rank product and keep the
faster. Layers whose base is not exact (or adapters using DoRA, LoRA biases, `fan_in_fan_out`)
are merged only, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asynclm.engine.config import ModelConfig
from asynclm.engine.kernels.formats import BlockWeight, exact_rows
from asynclm.engine.kernels.lowrank import LowRank, stack_parts
from asynclm.engine.model import Transformer

Factors = dict[str, tuple[Tensor, Tensor, float]]  # hf module name -> (A, B, scale)
_PARTS = {  # our linear (in a block) -> its transformers projections, in output order
    "attention.wqkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "attention.wo": ("self_attn.o_proj",),
    "feed_forward.w13": ("mlp.gate_proj", "mlp.up_proj"),
    "feed_forward.w2": ("mlp.down_proj",),
}
FILE = "lowrank.safetensors"


def peft_factors(peft_model: Any) -> tuple[Factors, dict[str, Tensor]]:
    """The plain LoRA factors of a `PeftModel` and copies of the base weights they update.

    Call before merging (the merge writes into the base weights). Returns `({}, {})` when any
    adapted layer is not plain LoRA on a linear layer (those adapters are merged only).
    """
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    factors: Factors = {}
    bases: dict[str, Tensor] = {}
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        if not isinstance(module, LoraLinear) or not _plain(module):
            return {}, {}
        layer: Any = module  # peft's own attributes are untyped
        (adapter,) = layer.active_adapters
        key = name.removeprefix("base_model.model.")
        a = layer.lora_A[adapter].weight.detach().float()
        b = layer.lora_B[adapter].weight.detach().float()
        factors[key] = (a.clone(), b.clone(), float(layer.scaling[adapter]))
        bases[key] = layer.get_base_layer().weight.detach().clone()
    return factors, bases


def _plain(module: Any) -> bool:
    adapters = list(module.active_adapters)
    if len(adapters) != 1 or module.fan_in_fan_out:
        return False
    adapter = adapters[0]
    variant = getattr(module, "lora_variant", {})
    bias = getattr(module, "lora_bias", {}).get(adapter, False)
    return adapter not in variant and not bias and adapter in module.lora_A


def unmerged(
    cfg: ModelConfig, factors: Factors, bases: dict[str, Tensor], merged: dict[str, Tensor]
) -> dict[str, LowRank]:
    """Each adapted linear of ours (`layers.3.attention.wqkv`) whose base weight is exact blocks.

    Args:
        cfg: the model's config.
        factors, bases: from `peft_factors`.
        merged: the merged weights in transformers' names (the base of parts not adapted).
    """
    out: dict[str, LowRank] = {}
    for i in range(cfg.num_layers):
        for ours, parts in _PARTS.items():
            names = [f"model.layers.{i}.{p}" for p in parts]
            if not any(n in factors for n in names):
                continue
            base = torch.cat([bases.get(n, merged[f"{n}.weight"]) for n in names])
            block = exact_rows(base)
            if block is None:
                continue
            pieces = [factors.get(n, merged[f"{n}.weight"].shape[0]) for n in names]
            a, b = stack_parts(pieces)
            out[f"layers.{i}.{ours}"] = LowRank(a, b, block)
    return out


def attach(model: Transformer, lowranks: dict[str, LowRank]) -> None:
    """Give each named linear of `model` its unmerged adapter."""
    linears = dict(model.linears())
    for name, lowrank in lowranks.items():
        linears[name].attach(lowrank)


def save(path: Path, lowranks: dict[str, LowRank]) -> None:
    """Write unmerged adapters (factors and base blocks) to a safetensors file."""
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {}
    for name, lr in lowranks.items():
        tensors |= {f"{name}.a": lr.a, f"{name}.b": lr.b, f"{name}.qweight": lr.base.qweight}
        tensors[f"{name}.scales"] = lr.base.scales
        if lr.base.mins is not None:
            tensors[f"{name}.mins"] = lr.base.mins
    formats = {name: lr.base.format for name, lr in lowranks.items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=formats)


def load(path: Path) -> dict[str, LowRank]:
    """Read what `save` wrote."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        formats = f.metadata() or {}
        t = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
    out = {}
    for name, fmt in formats.items():
        if f"{name}.a" not in t:  # metadata that names no layer
            continue
        base = BlockWeight(fmt, t[f"{name}.qweight"], t[f"{name}.scales"], t.get(f"{name}.mins"))
        out[name] = LowRank(t[f"{name}.a"], t[f"{name}.b"], base)
    return out
