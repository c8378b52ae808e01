"""The wire format between the engine and an out-of-process inferlet (no pickle either way).

A frame is a 4-byte big-endian length, then the message: a 4-byte header length, a JSON
header, and binary blobs (tensor data) the header refers to. Values are JSON-like data (None,
bool, int, float, str, lists, dicts with string keys) plus tensors and bytes, so a message can
describe only data, never code: the engine reads what an untrusted inferlet sends with `json`
and `torch.frombuffer`, nothing that can run it. Messages from the inferlet are capped in size.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

__all__ = ["MAX_FRAME_BYTES", "ProtocolError", "decode", "encode", "frame_size"]

MAX_FRAME_BYTES = 64 << 20  # the largest message an inferlet may send
_LENGTH = struct.Struct(">I")
_MAX_NESTING = 64


class ProtocolError(ValueError):
    """A message that is not well-formed data of this protocol."""


def encode(message: Any) -> bytes:
    """A whole frame (length prefix included) carrying `message`.

    Raises:
        ProtocolError: `message` holds something other than JSON-like data, tensors or bytes.
    """
    blobs: list[bytes] = []
    header = json.dumps(_to_json(message, blobs, 0), separators=(",", ":"), allow_nan=True)
    head = header.encode("utf-8", "surrogatepass")
    body = _LENGTH.pack(len(head)) + head + b"".join(blobs)
    return _LENGTH.pack(len(body)) + body


def frame_size(prefix: bytes) -> int:
    """The length of the message a 4-byte frame prefix announces."""
    return int(_LENGTH.unpack(prefix)[0])


def decode(body: bytes) -> Any:
    """The message of a frame body (what follows the length prefix).

    Raises:
        ProtocolError: The body is not a well-formed message.
    """
    try:
        (size,) = _LENGTH.unpack_from(body)
        header = json.loads(body[4 : 4 + size].decode("utf-8", "surrogatepass"))
    except (struct.error, ValueError, RecursionError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None
    return _from_json(header, memoryview(body)[4 + size :], 0)


def _to_json(value: Any, blobs: list[bytes], depth: int) -> Any:
    if depth > _MAX_NESTING:
        raise ProtocolError(f"data nests deeper than {_MAX_NESTING} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_to_json(item, blobs, depth + 1) for item in value]
    if isinstance(value, dict):
        return _dict_to_json(value, blobs, depth)
    if isinstance(value, (bytes, bytearray, memoryview)):
        blobs.append(bytes(value))
        return {"$bytes": len(blobs[-1])}
    if type(value).__module__ == "torch" and type(value).__name__ == "Tensor":
        return _tensor_to_json(value, blobs)
    raise ProtocolError(f"cannot send a {type(value).__name__}: only JSON-like data and tensors")


def _dict_to_json(value: dict, blobs: list[bytes], depth: int) -> Any:
    if not all(isinstance(key, str) for key in value):
        raise ProtocolError("dict keys must be strings")
    items = {key: _to_json(item, blobs, depth + 1) for key, item in value.items()}
    if any(key.startswith("$") for key in value):  # keep data keys apart from markers
        return {"$dict": [[key, item] for key, item in items.items()]}
    return items


def _tensor_to_json(tensor: Any, blobs: list[bytes]) -> Any:
    data = tensor.detach().to("cpu").contiguous()
    blobs.append(data.reshape(-1).view(torch_uint8()).numpy().tobytes() if data.numel() else b"")
    dtype = str(data.dtype).removeprefix("torch.")
    return {"$tensor": len(blobs[-1]), "dtype": dtype, "shape": list(data.shape)}


def torch_uint8() -> Any:
    import torch

    return torch.uint8


class _Blobs:
    """Reads the blobs of a message in order."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: object) -> memoryview:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError(f"bad blob size {size!r}")
        if self.offset + size > len(self.data):
            raise ProtocolError("a blob runs past the end of the message")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def _from_json(value: Any, blobs: memoryview | _Blobs, depth: int) -> Any:
    if not isinstance(blobs, _Blobs):
        blobs = _Blobs(blobs)
    if depth > _MAX_NESTING:
        raise ProtocolError(f"data nests deeper than {_MAX_NESTING} levels")
    if isinstance(value, list):
        return [_from_json(item, blobs, depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    if "$dict" in value:
        pairs = value["$dict"]
        if not isinstance(pairs, list) or not all(_is_pair(p) for p in pairs):
            raise ProtocolError("malformed $dict")
        return {key: _from_json(item, blobs, depth + 1) for key, item in pairs}
    if "$float" in value:
        return _special_float(value["$float"])
    if "$bytes" in value:
        return bytes(blobs.take(value["$bytes"]))
    if "$tensor" in value:
        return _tensor_from_json(value, blobs)
    return {key: _from_json(item, blobs, depth + 1) for key, item in value.items()}


def _is_pair(item: object) -> bool:
    return isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)


def _special_float(text: object) -> float:
    if text not in ("nan", "inf", "-inf"):
        raise ProtocolError(f"bad $float {text!r}")
    return float(str(text))


_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool")


def _tensor_from_json(value: dict, blobs: _Blobs) -> Any:
    import torch

    dtype, shape = value.get("dtype"), value.get("shape")
    if dtype not in _DTYPES or not isinstance(shape, list):
        raise ProtocolError(f"bad tensor description {value!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ProtocolError(f"bad tensor shape {shape!r}")
    torch_dtype = getattr(torch, str(dtype))
    numel = math.prod(shape)
    data = blobs.take(value["$tensor"])
    if len(data) != numel * torch.empty(0, dtype=torch_dtype).element_size():
        raise ProtocolError("tensor data does not match its shape")
    if not numel:
        return torch.empty(shape, dtype=torch_dtype)
    return torch.frombuffer(bytearray(data), dtype=torch_dtype).reshape(shape)
