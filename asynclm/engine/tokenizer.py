"""Tokenizer wrapper: encoding, the chat format read off the model's template, streaming decode.

Text is encoded as plain text unless the caller says it is the chat template's or the runtime's
own (`encode(text, special=True)`): a tool result, a user message or a docstring that contains
`<|im_end|>` gets the tokens of those characters, never the control token. Any `str` encodes:
lone surrogates (which UTF-8 cannot carry) become U+FFFD, control characters are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from asynclm.engine.chat import ChatFormat


class Tokenizer:
    """A thin layer over a transformers fast tokenizer.

    Encoding goes through two private copies of the fast tokenizer's backend, one that
    recognises special tokens and one that never does, so no call toggles shared state (the
    runner's thread and the event loop may encode at the same time).
    """

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf = hf_tokenizer
        self.chat = ChatFormat.from_template(hf_tokenizer)
        self._eos = self._collect_eos()
        self._encoders: _Encoders | None = None

    def _collect_eos(self) -> tuple[int, ...]:
        ids = {self.hf.eos_token_id} if self.hf.eos_token_id is not None else set()
        for text in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>"):
            tid = self.hf.convert_tokens_to_ids(text)
            if isinstance(tid, int) and tid != self.hf.unk_token_id and tid is not None:
                ids.add(tid)
        return tuple(sorted(ids))

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self._eos

    @property
    def bos_token_id(self) -> int | None:
        return self.hf.bos_token_id

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of `text` (no BOS added).

        Args:
            text: Any string.
            special: Whether the text of special tokens in `text` (`<|im_end|>`) becomes
                those tokens. Only for text the chat template or the runtime writes (role
                prefixes, CML markers of a model tuned with them as special tokens); anything
                else (prompts, tool results, docstrings) is plain text: the default.

        Raises:
            TypeError: `text` is not a `str`.
        """
        return self._current_encoders().encode(_clean(text), special)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids, special tokens included, spaces as the tokens have them.

        A fast tokenizer's backend decodes directly: the same text as `hf.decode` with these
        options, about 4x quicker (it runs twice per generated token)."""
        backend = getattr(self.hf, "backend_tokenizer", None)
        if backend is not None:
            return str(backend.decode(list(ids), skip_special_tokens=False))
        return self.hf.decode(
            list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def add_special_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Add tokens as special tokens (never split); returns their ids."""
        tokens = list(tokens)
        vocab = self.hf.get_vocab()
        new = [t for t in tokens if t not in vocab]
        if new:
            self.hf.add_special_tokens(
                {"additional_special_tokens": new}, replace_extra_special_tokens=False
            )
            self._encoders = None
        return [self.hf.convert_tokens_to_ids(t) for t in tokens]

    def _current_encoders(self) -> _Encoders:
        encoders = self._encoders
        if encoders is None or encoders.is_stale():
            encoders = self._encoders = _Encoders(self.hf)
        return encoders

    def __getstate__(self) -> dict[str, Any]:
        # The encoders are copies of `hf`'s backend: rebuilt after unpickling, not sent.
        return {"hf": self.hf, "chat": self.chat, "_eos": self._eos, "_encoders": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Turns a growing token list into text deltas without re-decoding everything.

    Decodes a small window and holds back text while it ends in an incomplete UTF-8 sequence.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        prefix_text = self._tok.decode(self.ids[self._prefix : self._read])
        text = self._tok.decode(self.ids[self._prefix :])
        if len(text) > len(prefix_text) and not text.endswith("\ufffd"):
            delta = text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self.ids)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is held back (at the end of a generation)."""
        prefix_text = self._tok.decode(self.ids[self._prefix : self._read])
        text = self._tok.decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return text[len(prefix_text) :]


class _Encoders:
    """Two copies of a fast tokenizer's backend: special tokens recognised, and never."""

    def __init__(self, hf: Any) -> None:
        from tokenizers import Tokenizer as Backend

        self._source = hf.backend_tokenizer
        serialized = self._source.to_str()
        self._special = Backend.from_str(serialized)
        self._special.encode_special_tokens = False
        self._plain = Backend.from_str(serialized)
        self._plain.encode_special_tokens = True  # special tokens' text is split like any text
        self._size = self._vocab_size()

    def _vocab_size(self) -> int:
        return int(self._source.get_vocab_size(with_added_tokens=True))

    def is_stale(self) -> bool:
        """Whether tokens were added to the source since the copies were made."""
        return self._vocab_size() != self._size

    def encode(self, text: str, special: bool) -> list[int]:
        backend = self._special if special else self._plain
        return list(backend.encode(text, add_special_tokens=False).ids)


def _clean(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD (UTF-8 cannot carry them)."""
    if not isinstance(text, str):
        raise TypeError(f"can only encode str, not {type(text).__name__}")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a valid surrogate pair is joined, a lone one replaced
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text
