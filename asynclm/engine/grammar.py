"""Grammar constraints for generation, backed by xgrammar.

`Grammar` is compiled once per (engine, grammar text); each generation gets its own matcher.
Any object with `mask(logits)`, `advance(token)` and `is_finished()` can be passed to
`generate(constrain=...)`, so other constraint engines plug in the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import Tensor

if TYPE_CHECKING:
    from asynclm.engine.tokenizer import Tokenizer


@runtime_checkable
class Constraint(Protocol):
    """Per-generation state of a decoding constraint."""

    def mask(self, logits: Tensor) -> None:
        """Set the logits of tokens not allowed next to -inf (in place)."""

    def advance(self, token: int) -> None:
        """Record the sampled token."""

    def is_finished(self) -> bool:
        """True once the constrained text is complete."""


class GrammarError(ValueError):
    """A grammar that does not compile, or a token the grammar does not allow."""


class Grammar:
    """A compiled grammar (EBNF, JSON schema or regex) for one tokenizer."""

    def __init__(self, compiled: Any, vocab_size: int) -> None:
        self._compiled = compiled
        self._vocab_size = vocab_size

    def matcher(self) -> GrammarConstraint:
        return GrammarConstraint(self._compiled, self._vocab_size)


class GrammarCompiler:
    """Compiles grammars for a tokenizer; results are cached by their source text."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer.hf, vocab_size=vocab_size, stop_token_ids=list(tokenizer.eos_token_ids)
        )
        self._compiler = xgr.GrammarCompiler(info)
        self._vocab_size = vocab_size
        self._cache: dict[tuple[str, str, bool], Grammar] = {}

    def compile(
        self,
        *,
        ebnf: str | None = None,
        json_schema: str | dict | None = None,
        regex: str | None = None,
        any_whitespace: bool = True,
    ) -> Grammar:
        """Compile exactly one of: an EBNF grammar (root rule `root`), a JSON schema, a regex.

        JSON-schema properties keep their order; `any_whitespace=False` forbids free whitespace.
        """
        import json

        given = [
            (k, v)
            for k, v in (("ebnf", ebnf), ("json", json_schema), ("regex", regex))
            if v is not None
        ]
        if len(given) != 1:
            raise GrammarError("give exactly one of ebnf=, json_schema=, regex=")
        kind, source = given[0]
        text = json.dumps(source) if isinstance(source, dict) else str(source)
        key = (kind, text, any_whitespace)
        if key not in self._cache:
            self._cache[key] = Grammar(self._compile(kind, text, any_whitespace), self._vocab_size)
        return self._cache[key]

    def _compile(self, kind: str, text: str, any_whitespace: bool) -> Any:
        try:
            if kind == "ebnf":
                return self._compiler.compile_grammar(text)
            if kind == "json":
                return self._compiler.compile_json_schema(text, any_whitespace=any_whitespace)
            return self._compiler.compile_grammar(self._xgr.Grammar.from_regex(text))
        except Exception as e:  # xgrammar raises RuntimeError/ValueError with its own message
            raise GrammarError(f"invalid {kind} grammar: {e}") from e


class GrammarConstraint:
    """A matcher following one generation."""

    def __init__(self, compiled: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._vocab_size = vocab_size

    def mask(self, logits: Tensor) -> None:
        self._matcher.fill_next_token_bitmask(self._bitmask)
        row = logits.view(1, -1)
        if row.shape[-1] > self._vocab_size:  # tokens beyond the grammar's vocabulary: never
            row[:, self._vocab_size :] = float("-inf")
        self._xgr.apply_token_bitmask_inplace(
            row, self._bitmask.to(row.device), vocab_size=self._vocab_size
        )

    def advance(self, token: int) -> None:
        if not self._matcher.accept_token(token):
            raise GrammarError(f"token {token} is not allowed by the grammar here")

    def rollback(self, num_tokens: int = 1) -> None:
        """Un-accept the last `num_tokens` tokens (a stop token too: the matcher runs again)."""
        self._matcher.rollback(num_tokens)

    def is_finished(self) -> bool:
        return bool(self._matcher.is_terminated())

    def is_completed(self) -> bool:
        """True once the text so far is a whole sentence of the grammar (it may go on, or
        take a stop token next)."""
        return bool(self._matcher.is_completed())
