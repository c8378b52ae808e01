"""Tokenizer wrapper: encoding, the chat format read off the model's template, streaming decode."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from asynclm.engine.chat import ChatFormat


class Tokenizer:
    """A thin layer over a transformers fast tokenizer."""

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf = hf_tokenizer
        self.chat = ChatFormat.from_template(hf_tokenizer)
        self._eos = self._collect_eos()

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

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens in the text are recognised; no BOS added)."""
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
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
        return [self.hf.convert_tokens_to_ids(t) for t in tokens]

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
