"""The inferlet wire format: data round-trips exactly; anything else is a ProtocolError."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from asynclm.engine.scope import QuotaExceededError
from asynclm.inferlet.errors import (
    InferletError,
    exception_data,
    exception_from_data,
    unwrap_quota_group,
)
from asynclm.inferlet.protocol import ProtocolError, decode, encode, frame_size

if sys.version_info < (3, 11):  # pragma: no cover - depends on the interpreter
    from exceptiongroup import ExceptionGroup

DATA = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(blacklist_categories=()))
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def round_trip(value: Any) -> Any:
    frame = encode(value)
    assert frame_size(frame[:4]) == len(frame) - 4
    return decode(frame[4:])


@given(DATA)
def test_data_round_trips(value: Any) -> None:
    assert round_trip(value) == value


def test_special_floats_tuples_and_marker_keys() -> None:
    out = round_trip({"nan": math.nan, "inf": -math.inf, "t": (1, 2), "$tensor": 1, "$x": [3]})
    assert math.isnan(out["nan"]) and out["inf"] == -math.inf
    assert out["t"] == [1, 2] and out["$tensor"] == 1 and out["$x"] == [3]


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool]
)
def test_tensors_round_trip(dtype: torch.dtype) -> None:
    tensor = (torch.arange(12).reshape(3, 4) % 3).to(dtype)
    out = round_trip({"logits": tensor, "empty": torch.empty(0, 5, dtype=dtype)})
    assert out["logits"].dtype == dtype and torch.equal(out["logits"], tensor)
    assert out["empty"].shape == (0, 5)


@pytest.mark.parametrize("value", [object(), {1: "a"}, {"f": len}, [set()], Exception("x")])
def test_anything_but_data_is_refused(value: Any) -> None:
    with pytest.raises(ProtocolError):
        encode(value)


def test_nesting_is_bounded() -> None:
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ProtocolError, match="nests deeper"):
        encode(deep)
    body = encode(1)[4:]
    header = b"[" * 5000 + b"]" * 5000
    with pytest.raises(ProtocolError):
        decode(len(header).to_bytes(4, "big") + header)
    assert decode(body) == 1


@pytest.mark.parametrize(
    "header",
    [
        b"{not json",
        b'{"$tensor": 4, "dtype": "float32", "shape": [2]}',  # no blob
        b'{"$tensor": 8, "dtype": "object", "shape": [2]}',
        b'{"$tensor": 0, "dtype": "float32", "shape": [-1]}',
        b'{"$bytes": -3}',
        b'{"$float": "1e999"}',
        b'{"$dict": [["a"]]}',
        b"\xff\xfe",
    ],
)
def test_malformed_messages_are_protocol_errors(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(len(header).to_bytes(4, "big") + header)
    with pytest.raises(ProtocolError):
        decode(b"\x00")


class Custom(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (KeyError("no export named 'x' is visible here"), KeyError, "no export named 'x'"),
        (ValueError("bad", 3), ValueError, "bad"),
        (MemoryError(), MemoryError, ""),
        (QuotaExceededError("page quota of 3 exceeded"), QuotaExceededError, "page quota"),
        (Custom("mine"), InferletError, "Custom: mine"),
        (SystemExit(3), InferletError, "SystemExit"),
        (ExceptionGroup("two", [ValueError("a"), KeyError("b")]), ExceptionGroup, "two"),
    ],
)
def test_exceptions_cross_as_data(error: BaseException, kind: type, text: str) -> None:
    rebuilt = exception_from_data(round_trip(exception_data(error)))
    assert type(rebuilt) is kind and text in str(rebuilt)


def test_a_group_of_quota_errors_is_its_first() -> None:
    first, second = QuotaExceededError("a"), QuotaExceededError("b")
    assert unwrap_quota_group(ExceptionGroup("g", [first, second])) is first
    mixed = ExceptionGroup("g", [first, ValueError("x")])
    assert unwrap_quota_group(mixed) is mixed


def test_a_malformed_error_is_an_inferlet_error() -> None:
    assert isinstance(exception_from_data("nope"), InferletError)
    assert isinstance(exception_from_data({"type": "OSError", "args": [object]}), OSError)
