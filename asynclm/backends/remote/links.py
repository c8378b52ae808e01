"""What a remote context needs of its backend, and a generation of its context (protocols).

They keep the modules acyclic: `backend` builds `context`s, which start `generation`s; each
sees the one above it only through these protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from asynclm.backends.remote.client import RemoteClient
from asynclm.backends.remote.stats import Reason, Submission
from asynclm.engine.sampling import Sampler
from asynclm.engine.tokenizer import Tokenizer


class ServerLink(Protocol):
    """The backend as its contexts use it."""

    base_url: str
    client: RemoteClient

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def eos_token_id(self) -> int: ...

    def sampling_fields(self, sampler: Sampler, ban: Sequence[int]) -> dict[str, Any]: ...

    def prompt_field(self, ctx: object, tokens: Sequence[int]) -> dict[str, Any]: ...

    def record_submission(
        self, ctx: object, reason: Reason, prompt: list[int], discarded: int
    ) -> Submission: ...

    def record_received(self, ctx: object, tokens: Sequence[int]) -> None: ...


class GeneratingContext(Protocol):
    """The context as its generation uses it."""

    backend: ServerLink
    tokenizer: Tokenizer

    @property
    def tokens(self) -> list[int]: ...

    @property
    def text(self) -> str: ...

    def record_generated(self, tokens: Sequence[int]) -> None: ...

    def generation_ended(self, gen: Any) -> None: ...
