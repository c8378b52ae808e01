"""llama.cpp (`llama-cpp-python`) as a benchmark peer: the same GGUF file, the same threads.

`LlamaCppPeer.open(gguf, threads)` loads a GGUF file; `requantized(gguf, "q8_0")` writes a Q8_0
copy of it once (llama.cpp's own quantizer, cached under `cache_root()/bench`). Prefill is one
`eval` of the prompt; decode is greedy generation after a short prompt, as our side measures it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asynclm.engine.paths import cache_root

_FTYPES = {"q8_0": 7, "q4_1": 3}  # llama.cpp's LLAMA_FTYPE_MOSTLY_* values


def available() -> bool:
    """Whether llama-cpp-python can be imported here."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def requantized(gguf: Path, fmt: str) -> Path:
    """A copy of `gguf` with its weights in `fmt` (made once, then reused)."""
    import llama_cpp

    if fmt not in _FTYPES:
        raise ValueError(f"unknown llama.cpp format {fmt!r}; known: {', '.join(_FTYPES)}")
    out = cache_root() / "bench" / f"{gguf.stem}.{fmt}.gguf"
    if out.exists() and out.stat().st_mtime >= gguf.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _FTYPES[fmt]
    params.allow_requantize = True
    tmp = out.with_suffix(".tmp")
    if llama_cpp.llama_model_quantize(str(gguf).encode(), str(tmp).encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {gguf} to {fmt}")
    tmp.replace(out)
    return out


@dataclass
class LlamaCppPeer:
    """One loaded llama.cpp model."""

    llm: Any
    name: str

    @classmethod
    def open(cls, gguf: Path, threads: int, n_ctx: int = 4096) -> LlamaCppPeer:
        import llama_cpp

        llm = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=n_ctx,
            n_batch=512,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        return cls(llm, gguf.name)

    def prefill(self, prompt: list[int]) -> float:
        """Seconds to evaluate a prompt from an empty cache."""
        self.llm.reset()
        t0 = time.perf_counter()
        self.llm.eval(prompt)
        return time.perf_counter() - t0

    def decode(self, prompt: list[int], new: int) -> tuple[float, list[int]]:
        """Seconds for greedy generation of `new` tokens after `prompt` (prompt included)."""
        self.llm.reset()
        out: list[int] = []
        t0 = time.perf_counter()
        for token in self.llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, reset=True):
            out.append(int(token))
            if len(out) == new:
                break
        return time.perf_counter() - t0, out

    def close(self) -> None:
        self.llm.close()
