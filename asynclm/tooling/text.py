"""Text that can be encoded: any Python string made safe for the tokenizer and the prompt.

Tool results, user messages, prompts and tool documentation carry arbitrary text. Two kinds of
character cannot travel as they are:

- lone surrogates (U+D800-U+DFFF not paired, e.g. from `bytes.decode(errors="surrogateescape")`)
  have no UTF-8 encoding at all: the tokenizer refuses them;
- in the system prompt, which Prompt Cache keeps as XML-like modules, the C0 controls other than
  tab, newline and carriage return, and U+FFFE/U+FFFF, are not XML characters.

Each becomes U+FFFD (the replacement character); everything else is kept.
"""

from __future__ import annotations

import re

__all__ = ["REPLACEMENT", "clean_text", "xml_text"]

REPLACEMENT = "\ufffd"
_SURROGATES = re.compile("[\ud800-\udfff]")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (so that it encodes as UTF-8)."""
    return _SURROGATES.sub(REPLACEMENT, text)


def xml_text(text: str) -> str:
    """`text` with every character XML cannot carry replaced by U+FFFD (lone surrogates, C0
    controls but tab, newline and carriage return, U+FFFE and U+FFFF)."""
    return _NOT_XML.sub(REPLACEMENT, text)
