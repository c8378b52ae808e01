"""What each OpenAI-compatible serving engine offers an agent, and the request fields for it.

No engine lets a client append tokens to a request that is generating over HTTP, so an
interrupt is an abort + resubmit ("async-naive"); what differs is how much of the resubmitted
prompt the engine recomputes and what it tells us about it:

- llama-cpp-python (`python -m llama_cpp.server`): text prompts only; one sequence, whose
  KV is reused up to the longest common prefix with the previous request; a new request
  interrupts the running stream (`interrupt_requests`, on by default).
- llama.cpp's own `llama-server`: token-id prompts; `cache_prompt` reuses a slot's KV for the
  common prefix, `id_slot` pins a conversation to a slot, `return_tokens` streams token ids,
  `/slots/{id}?action=save|restore` moves a slot's KV to disk and back.
- vLLM: token-id prompts; automatic prefix caching (block-granular, on by default in V1),
  `return_token_ids`; `skip_special_tokens: false` keeps the CML tokens in the text.
- SGLang: token-id prompts; RadixAttention prefix cache; `skip_special_tokens: false`;
  sessions (native `/generate` API) append to a request's history but restart decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ServerKind = Literal["llama-cpp-python", "llama.cpp", "vllm", "sglang", "openai"]


@dataclass(frozen=True, slots=True)
class ServerProfile:
    """How to talk to one kind of server.

    Attributes:
        kind: the engine.
        token_prompts: `/v1/completions` accepts a list of token ids as `prompt`.
        streams_token_ids: chunks carry the generated token ids (with `extra` set).
        reports_cached_tokens: the usage tells how many prompt tokens came from the cache.
        extra: fields added to every completion request.
    """

    kind: ServerKind
    token_prompts: bool
    streams_token_ids: bool = False
    reports_cached_tokens: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


PROFILES: dict[ServerKind, ServerProfile] = {
    "llama-cpp-python": ServerProfile("llama-cpp-python", token_prompts=False),
    "llama.cpp": ServerProfile(
        "llama.cpp",
        token_prompts=True,
        streams_token_ids=True,
        reports_cached_tokens=True,
        extra={"cache_prompt": True, "return_tokens": True},
    ),
    "vllm": ServerProfile(
        "vllm",
        token_prompts=True,
        streams_token_ids=True,
        reports_cached_tokens=True,
        extra={
            "return_token_ids": True,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
        },
    ),
    "sglang": ServerProfile("sglang", token_prompts=True, extra={"skip_special_tokens": False}),
    "openai": ServerProfile("openai", token_prompts=False),
}


def detect_kind(models: dict[str, Any], has_props: bool) -> ServerKind:
    """The engine behind a `/v1/models` answer (`has_props`: `/props` answered, llama-server)."""
    if has_props:
        return "llama.cpp"
    entries = models.get("data") or [{}]
    owner = str(entries[0].get("owned_by", "")).lower()
    if owner == "me":  # llama-cpp-python's answer
        return "llama-cpp-python"
    if owner in ("vllm", "sglang"):
        return owner  # type: ignore[return-value]
    if owner == "llamacpp":
        return "llama.cpp"
    return "openai"


def model_id(models: dict[str, Any]) -> str | None:
    entries = models.get("data") or []
    return str(entries[0]["id"]) if entries and "id" in entries[0] else None
