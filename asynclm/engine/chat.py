"""The chat format: the text that opens and closes each role's turn (no torch here).

One class for the whole project: the tokenizer reads it off the model's chat template, the
Context API renders turns with it, and Prompt Cache's (torch-free) layout renders PML role tags
with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_PROBE = "\x00ASYNCLM_PROBE\x00"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class ChatFormat:
    """Text that opens and closes each role's turn.

    Attributes:
        prefixes: Text that opens a turn, by role.
        suffixes: Text that closes a turn, by role.
        generation_prompt: Text that opens an assistant turn to generate into.
        begin: Text that opens a conversation (e.g. a BOS text), before its first turn.
    """

    prefixes: dict[str, str]
    suffixes: dict[str, str]
    generation_prompt: str
    begin: str = ""

    def role_prefix(self, role: str) -> str:
        """Text that opens a turn of `role`; ValueError for an unknown role."""
        return _lookup(self.prefixes, role)

    def role_suffix(self, role: str) -> str:
        """Text that closes a turn of `role`; ValueError for an unknown role."""
        return _lookup(self.suffixes, role)

    def render(self, role: str, text: str) -> str:
        """A whole turn of `role` saying `text`."""
        return self.role_prefix(role) + text + self.role_suffix(role)

    def turn(self, role: str, text: str, *, opening: bool = False) -> list[tuple[str, bool]]:
        """A whole turn as `(text, special)` pieces, each encoded on its own.

        The template's pieces are special (their special tokens recognised); `text` is plain
        text, whatever it holds. `opening`: the conversation's first turn (`begin` first).
        """
        prefix = (self.begin if opening else "") + self.role_prefix(role)
        return [(prefix, True), (text, False), (self.role_suffix(role), True)]

    @classmethod
    def chatml(cls) -> ChatFormat:
        """The ChatML template (SmolLM2, Qwen2): `<|im_start|>role\\n ... <|im_end|>\\n`."""
        return cls(
            prefixes={r: f"<|im_start|>{r}\n" for r in ROLES},
            suffixes=dict.fromkeys(ROLES, "<|im_end|>\n"),
            generation_prompt="<|im_start|>assistant\n",
        )

    @classmethod
    def from_template(cls, hf_tokenizer: Any) -> ChatFormat:
        """Derive role prefixes/suffixes by rendering probe messages through the template.

        A tokenizer without a chat template gets ChatML.
        """
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


def _lookup(table: dict[str, str], role: str) -> str:
    try:
        return table[role]
    except KeyError:
        raise ValueError(f"unknown chat role {role!r}; known: {sorted(table)}") from None
