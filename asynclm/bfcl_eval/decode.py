"""The model's CML calls as BFCL's checker reads answers: `[{name: {parameter: value}}]`. Pure.

Each call block's body is parsed as the runtime parses it (`asynclm.cml.parse_call`: Python call
syntax, literal arguments). Positional arguments are bound to the function's parameters in the
order of its document, as the runtime does when it runs the call (BFCL's own Python decoder
drops them; a model writing them would then fail on a missing parameter). A block that is not a
call at all (malformed) is counted apart: for the AST categories it fails the answer, as an
undecodable answer fails in BFCL; for irrelevance it is no call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asynclm.bfcl_eval.checker import Call
from asynclm.cml.call import CallSyntaxError, parse_call

__all__ = ["Decoded", "decode_calls"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """The calls of a run, decoded, and how many blocks could not be read as calls."""

    calls: list[Call]
    malformed: int


def decode_calls(bodies: Iterable[str], functions: Sequence[dict]) -> Decoded:
    """Decodes call bodies (`get_weather(city="Paris")`), in the order they were written.

    Args:
        bodies: The call bodies as the model wrote them ("" for a block with none).
        functions: The entry's function documents (for positional arguments).
    """
    order = {f["name"]: list(f.get("parameters", {}).get("properties", {})) for f in functions}
    calls: list[Call] = []
    malformed = 0
    for body in bodies:
        try:
            parsed = parse_call(body)
        except CallSyntaxError:
            malformed += 1
            continue
        names = order.get(parsed.name, [])
        arguments: dict[str, Any] = dict(zip(names, parsed.args, strict=False))
        arguments.update(parsed.kwargs)
        calls.append({parsed.name: arguments})
    return Decoded(calls, malformed)
