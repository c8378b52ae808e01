"""Tokenizer wrapper: encoding, chat roles rendered from the model's template, streaming decode."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_PROBE = "\x00ASYNCLM_PROBE\x00"
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class ChatFormat:
    """Text that opens and closes each role's turn, read off the model's chat template."""

    prefixes: dict[str, str]
    suffixes: dict[str, str]
    generation_prompt: str
    begin: str = ""

    def role_prefix(self, role: str) -> str:
        return self._lookup(self.prefixes, role)

    def role_suffix(self, role: str) -> str:
        return self._lookup(self.suffixes, role)

    def render(self, role: str, text: str) -> str:
        return self.role_prefix(role) + text + self.role_suffix(role)

    @staticmethod
    def _lookup(table: dict[str, str], role: str) -> str:
        try:
            return table[role]
        except KeyError:
            raise ValueError(f"unknown chat role {role!r}; known: {sorted(table)}") from None

    @classmethod
    def chatml(cls) -> ChatFormat:
        return cls(
            prefixes={r: f"<|im_start|>{r}\n" for r in _ROLES},
            suffixes={r: "<|im_end|>\n" for r in _ROLES},
            generation_prompt="<|im_start|>assistant\n",
        )

    @classmethod
    def from_template(cls, hf_tokenizer: Any) -> ChatFormat:
        """Derive role prefixes/suffixes by rendering probe messages through the template."""
        if not getattr(hf_tokenizer, "chat_template", None):
            return cls.chatml()

        def render(messages: list[dict[str, str]], gen: bool = False) -> str:
            return hf_tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=gen
            )

        base = [{"role": "system", "content": "s"}]
        base_text = render(base)
        prefixes, suffixes = {}, {}
        for role in ("user", "assistant"):
            delta = render([*base, {"role": role, "content": _PROBE}])[len(base_text) :]
            prefixes[role], _, suffixes[role] = delta.partition(_PROBE)
        # The system turn opens the conversation: whatever precedes a role-shaped prefix
        # (e.g. a BOS text) is the conversation's `begin`.
        sys_pre, _, sys_suf = render([{"role": "system", "content": _PROBE}]).partition(_PROBE)
        expected = prefixes["user"].replace("user", "system")
        begin = sys_pre[: -len(expected)] if expected and sys_pre.endswith(expected) else ""
        prefixes["system"], suffixes["system"] = sys_pre[len(begin) :], sys_suf
        gen = render(base, gen=True)[len(base_text) :]
        return cls(prefixes, suffixes, gen, begin=begin)


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

    def token_id(self, text: str) -> int | None:
        """The id of a single (special) token, or None if `text` is not one token."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

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
