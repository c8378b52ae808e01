"""The plan of one prompt: what the KV side executes, and the cache keys of its modules.

No torch here. A `PromptPlan` lists the selected modules' own tokens at their fixed positions
(cacheable, identified by module path and by a content or prefix key), the parameter values at
their reserved positions, and the free text after the schema's last position. `SchemaLayout.plan`
(in `layout`) makes one.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from asynclm.promptcache.schema import Encoding, ModulePath

__all__ = [
    "ModuleSegment",
    "ParameterSegment",
    "PromptPlan",
    "TextSegment",
    "content_key",
    "prefix_key",
]


def content_key(tokens: Sequence[int], positions: Sequence[int]) -> str:
    """A stable key of a module's own tokens at their positions (the "modular" key)."""
    digest = hashlib.blake2b(digest_size=16, person=b"pml-module")
    digest.update(struct.pack("<Q", len(tokens)))
    digest.update(struct.pack(f"<{len(tokens)}q", *tokens))
    digest.update(struct.pack(f"<{len(positions)}q", *positions))
    return digest.hexdigest()


def prefix_key(previous: str, key: str) -> str:
    """The "prefix" key of a module: its content key chained to the previous module's prefix key."""
    digest = hashlib.blake2b(digest_size=16, person=b"pml-prefix")
    digest.update(previous.encode("ascii"))
    digest.update(b"/")
    digest.update(key.encode("ascii"))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ModuleSegment:
    """A selected module's own tokens at their schema positions: the cacheable unit.

    Attributes:
        path: The module's identity, e.g. ("doc-tokyo",); () is the schema's own text.
        tokens: The module's own token ids (may be empty, e.g. a module of nested modules).
        positions: One position per token, increasing; gaps are parameter slots, nested and
            unselected modules.
        modular_key: Key of this module's content alone (the "modular" encoding).
        prefix_key: Key of this module's content and of every module before it in this plan
            (the "prefix" encoding).
    """

    path: ModulePath
    tokens: tuple[int, ...]
    positions: tuple[int, ...]
    modular_key: str
    prefix_key: str

    def key(self, encoding: Encoding) -> str:
        """The cache key under `encoding` ("modular" or "prefix")."""
        return self.prefix_key if encoding == "prefix" else self.modular_key


@dataclass(frozen=True, slots=True)
class ParameterSegment:
    """A parameter value, computed per prompt at its slot's positions."""

    module: ModulePath
    name: str
    tokens: tuple[int, ...]
    positions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TextSegment:
    """Free text (a role turn includes its prefix and suffix) after the schema's layout."""

    role: str | None
    tokens: tuple[int, ...]
    positions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PromptPlan:
    """What the KV side executes for one prompt, in order.

    Attributes:
        schema: Schema name.
        encoding: The schema's encoding; `keys` uses it.
        modules: Selected modules in schema order, the schema's own text () first: reuse their
            cached KV (by path or key), or compute and cache it.
        parameters: Parameter values, in position order: always computed.
        text: Free text, at positions from the schema's length on: always computed.
        next_position: Position of the first generated token.
    """

    schema: str
    encoding: Encoding
    modules: tuple[ModuleSegment, ...]
    parameters: tuple[ParameterSegment, ...]
    text: tuple[TextSegment, ...]
    next_position: int

    @property
    def keys(self) -> tuple[str, ...]:
        """Each module segment's cache key under the schema's encoding."""
        return tuple(segment.key(self.encoding) for segment in self.modules)

    @property
    def num_cached_tokens(self) -> int:
        """Tokens in module segments (cacheable)."""
        return sum(len(s.tokens) for s in self.modules)

    @property
    def num_uncached_tokens(self) -> int:
        """Tokens in parameter and free-text segments (computed for every prompt)."""
        uncached: list[ParameterSegment | TextSegment] = [*self.parameters, *self.text]
        return sum(len(s.tokens) for s in uncached)

    def flatten(self) -> tuple[list[int], list[int]]:
        """All tokens and their positions, modules then parameters then text."""
        tokens: list[int] = []
        positions: list[int] = []
        segments: list[ModuleSegment | ParameterSegment | TextSegment]
        segments = [*self.modules, *self.parameters, *self.text]
        for segment in segments:
            tokens.extend(segment.tokens)
            positions.extend(segment.positions)
        return tokens, positions
