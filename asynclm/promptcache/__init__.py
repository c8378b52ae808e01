"""asynclm.promptcache: modular prompt caching (Prompt Cache, Gim et al., MLSys 2024).

The torch-free half lives here and imports without torch: PML schemas and prompts
(`schema`, parsed safely by `pml`) and their position layout (`layout`), which turns a prompt
into a `PromptPlan` of cached module segments, parameter segments and free text.
"""

from asynclm.promptcache.layout import (
    ChatFormat,
    ChatML,
    Encoder,
    ModuleLayout,
    ModuleSegment,
    ParameterSegment,
    ParameterSlot,
    PromptPlan,
    SchemaLayout,
    TextPiece,
    TextSegment,
    content_key,
    layout_schema,
    plan_prompt,
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
    System,
    Union,
    User,
)

# --- KV side (torch): module KV store, cached prefill -------------------------------------------
# Reserved for the lead. Keep this package importable without torch: expose torch-backed names
# lazily (a module-level __getattr__ as in asynclm/__init__.py), not by importing them here.

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "ENCODINGS",
    "ROLES",
    "Assistant",
    "ChatFormat",
    "ChatML",
    "Encoder",
    "Encoding",
    "Module",
    "ModuleLayout",
    "ModulePath",
    "ModuleSegment",
    "Node",
    "PMLError",
    "Parameter",
    "ParameterSegment",
    "ParameterSlot",
    "Prompt",
    "PromptPlan",
    "Role",
    "RoleName",
    "Schema",
    "SchemaLayout",
    "Select",
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
