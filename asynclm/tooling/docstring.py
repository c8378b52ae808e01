"""Google-style docstrings read with griffe: a tool's description and its parameters' ones."""

from __future__ import annotations

import inspect

__all__ = ["parse_docstring"]


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Splits a Google-style docstring into its description and per-argument descriptions.

    Sections are read by griffe (a section header such as `Args:` follows a blank line).

    Args:
        doc: The docstring (dedented or not), or None.

    Returns:
        `(description, {argument: description})`: the description is the text before the first
        section, one line per paragraph; argument descriptions come from the `Args:` section
        (or `Arguments:`, `Parameters:`, `Params:`), each on one line.
    """
    text = inspect.cleandoc(doc or "")
    if not text:
        return "", {}
    from griffe import Docstring, DocstringSectionKind  # imported on first use: ~0.3 s

    sections = Docstring(text).parse("google", warnings=False)
    leading = [s for s in sections[:1] if s.kind is DocstringSectionKind.text]
    description = _paragraphs(str(leading[0].value)) if leading else ""
    arguments: dict[str, str] = {}
    for section in sections:
        if section.kind is DocstringSectionKind.parameters:
            arguments |= {p.name: _one_line(p.description) for p in section.value}
    return description, arguments


def _paragraphs(text: str) -> str:
    paragraphs = (" ".join(p.split()) for p in text.split("\n\n"))
    return "\n".join(p for p in paragraphs if p)


def _one_line(text: str) -> str:
    return " ".join(text.split())
