"""asynclm.promptcache: modular prompt caching (Prompt Cache, Gim et al., MLSys 2024).

The torch-free half imports without torch: PML schemas and prompts (`schema`, parsed safely by
`pml`), their position layout (`layout`), which turns a prompt into a `PromptPlan` (`plan`) of
cached module segments, parameter segments and free text. The KV side (`cache.PromptCache`, which
serves prompts from cached module K/V, and `store.ModuleStore`, its LRU + disk store) needs
torch and loads lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from asynclm.engine.chat import ChatFormat
from asynclm.promptcache.layout import (
    ChatML,
    Encoder,
    ModuleLayout,
    ParameterSlot,
    SchemaLayout,
    TextPiece,
    layout_schema,
    plan_prompt,
)
from asynclm.promptcache.plan import (
    ModuleSegment,
    ParameterSegment,
    PromptPlan,
    TextSegment,
    content_key,
    prefix_key,
)
from asynclm.promptcache.pml import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    parse_pml,
    parse_prompt,
    parse_schema,
)
from asynclm.promptcache.schema import (
    ENCODINGS,
    ROLES,
    Assistant,
    Encoding,
    Module,
    ModulePath,
    Node,
    Parameter,
    PMLError,
    Prompt,
    Role,
    RoleName,
    Schema,
    Select,
    Special,
    System,
    Union,
    User,
)

if TYPE_CHECKING:
    from asynclm.promptcache.cache import CacheStats, PromptCache
    from asynclm.promptcache.store import ModuleStore, ModuleStoreWarning, StoreEntry, StoreStats

# --- KV side (torch), loaded on first access so this package stays importable without torch --
_LAZY = {
    "CacheStats": "asynclm.promptcache.cache",
    "PromptCache": "asynclm.promptcache.cache",
    "ModuleStore": "asynclm.promptcache.store",
    "ModuleStoreWarning": "asynclm.promptcache.store",
    "StoreEntry": "asynclm.promptcache.store",
    "StoreStats": "asynclm.promptcache.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asynclm.promptcache' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "ENCODINGS",
    "ROLES",
    "Assistant",
    "CacheStats",
    "ChatFormat",
    "ChatML",
    "Encoder",
    "Encoding",
    "Module",
    "ModuleLayout",
    "ModulePath",
    "ModuleSegment",
    "ModuleStore",
    "ModuleStoreWarning",
    "Node",
    "PMLError",
    "Parameter",
    "ParameterSegment",
    "ParameterSlot",
    "Prompt",
    "PromptCache",
    "PromptPlan",
    "Role",
    "RoleName",
    "Schema",
    "SchemaLayout",
    "Select",
    "Special",
    "StoreEntry",
    "StoreStats",
    "System",
    "TextPiece",
    "TextSegment",
    "Union",
    "User",
    "content_key",
    "layout_schema",
    "parse_pml",
    "parse_prompt",
    "parse_schema",
    "plan_prompt",
    "prefix_key",
]
