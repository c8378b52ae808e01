"""CML, the in-context protocol between the model and the runtime.

The model writes `[CALL] <id> [HEAD] <call> [END]` to dispatch a call and keeps going, and
`[TRAP][END]` to wait for one; the runtime injects `[INTR] <id> [HEAD] <value> [END]`.
This package holds the markers and writers (`tokens`), the streaming parser (`parser`), the
call-id registry (`ids`), the call-body parser and validator (`call`), schema clean-up
(`schema`) and the grammar for constrained decoding (`grammar`). Pure Python: no torch.
"""

from asynclm.cml.call import (
    CallArgumentError,
    CallSyntaxError,
    ParsedCall,
    SchemaValidator,
    argument_errors,
    argument_problem,
    bind_arguments,
    parse_call,
    validate_arguments,
)
from asynclm.cml.grammar import call_grammar
from asynclm.cml.ids import CallIds
from asynclm.cml.parser import (
    BlockStart,
    Call,
    CMLParser,
    Event,
    Interrupt,
    Malformed,
    State,
    Text,
    Trap,
)
from asynclm.cml.schema import normalize_schema
from asynclm.cml.tokens import (
    CALL,
    END,
    HEAD,
    INTR,
    MARKERS,
    TRAP,
    format_call,
    format_interrupt,
    format_trap,
    format_value,
    interrupt_pieces,
    marker_pieces,
    neutralize,
)

__all__ = [
    "CALL",
    "END",
    "HEAD",
    "INTR",
    "MARKERS",
    "TRAP",
    "BlockStart",
    "CMLParser",
    "Call",
    "CallArgumentError",
    "CallIds",
    "CallSyntaxError",
    "Event",
    "Interrupt",
    "Malformed",
    "ParsedCall",
    "SchemaValidator",
    "State",
    "Text",
    "Trap",
    "argument_errors",
    "argument_problem",
    "bind_arguments",
    "call_grammar",
    "format_call",
    "format_interrupt",
    "format_trap",
    "format_value",
    "interrupt_pieces",
    "marker_pieces",
    "neutralize",
    "normalize_schema",
    "parse_call",
    "validate_arguments",
]
