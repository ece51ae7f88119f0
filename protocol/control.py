"""Control-socket messages between ``peerctl`` and the local daemon.

A request names a method and carries a params map; a response carries either a
result or an error with a stable code that the CLI maps to its exit code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple

from protocol import codec
from protocol.codec import expect, expect_int, expect_map, expect_str
from protocol.errors import RemoteProtocolError

WIRE_VERSION = 1
MAX_CONTROL_FRAME = 64 << 20  # an ingest chunk of 50k rows fits comfortably


# NamedTuples rather than dataclasses: importing dataclasses (and with it inspect)
# costs peerctl tens of milliseconds at start-up.


class ControlError(Exception):
    """A method's expected failure: ``code`` is stable (it becomes the response's
    ``error_code``), the message is one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def param(params: dict[str, Any], name: str, kind: type, required: bool = True) -> Any:
    """``params[name]`` if it is a ``kind`` (bool is not an int here), None if absent and
    not ``required``; otherwise ControlError ``bad_request``."""
    value = params.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ControlError("bad_request", f"parameter {name!r} must be a {kind.__name__}")
    return value


class ControlStream:
    """A method's result that is a stream (``watch``): the server sends each item of
    ``items`` as a response with ``more`` set, then a last one, and calls ``close()``
    when the stream ends or the caller goes away."""

    def __init__(self, items: AsyncIterator[Any], close: Callable[[], None]) -> None:
        self.items = items
        self.close = close


class ControlRequest(NamedTuple):
    """One call: ``method`` with ``params``; ``id`` echoes in the response."""

    id: int
    method: str
    params: dict[str, Any] = {}  # shared default, never mutated


class ControlResponse(NamedTuple):
    """Result of one call. ``error_code`` is None on success. ``more`` marks one item of
    a streamed result (``watch``): more responses with the same id follow, the last
    without ``more``."""

    id: int
    result: Any = None
    error_code: str | None = None
    error: str | None = None
    more: bool = False

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.error_code is None


def encode_request(req: ControlRequest) -> bytes:
    """Encode a control request."""
    return codec.pack({"v": WIRE_VERSION, "id": req.id, "m": req.method, "p": req.params})


def encode_request_pieces(req: ControlRequest) -> Iterator[bytes | memoryview]:
    """:func:`encode_request` in pieces (the same bytes): a large binary parameter, an
    ingest chunk's Arrow stream, is passed through uncopied."""
    return codec.pack_pieces({"v": WIRE_VERSION, "id": req.id, "m": req.method, "p": req.params})


def decode_request(data: bytes, max_size: int = MAX_CONTROL_FRAME) -> ControlRequest:
    """Decode a control request or raise RemoteProtocolError."""
    raw = expect_map(codec.unpack(data, max_size), "request", 8)
    if raw.get("v") != WIRE_VERSION:
        raise RemoteProtocolError(f"unsupported control version {raw.get('v')!r}")
    try:
        return ControlRequest(
            id=expect_int(raw["id"], "request.id"),
            method=expect_str(raw["m"], "request.method", 64),
            params=expect_map(raw.get("p", {}), "request.params", 64),
        )
    except KeyError as exc:
        raise RemoteProtocolError(f"request: missing field {exc}") from exc


def encode_response(resp: ControlResponse) -> bytes:
    """Encode a control response (``more`` only when set: one-shot responses keep the
    exact bytes they always had)."""
    return codec.pack(_response_map(resp))


def encode_response_pieces(
    resp: ControlResponse, items: int = 2048
) -> Iterator[bytes | memoryview]:
    """:func:`encode_response` in pieces (their concatenation is the same bytes): a large
    result is encoded a slice at a time, so the encoder can yield between slices."""
    return codec.pack_pieces(_response_map(resp), items)


def _response_map(resp: ControlResponse) -> dict[str, Any]:
    raw = {"v": WIRE_VERSION, "id": resp.id, "r": resp.result, "c": resp.error_code,
           "e": resp.error}  # fmt: skip
    if resp.more:
        raw["m"] = True
    return raw


def decode_response(data: bytes, max_size: int = MAX_CONTROL_FRAME) -> ControlResponse:
    """Decode a control response or raise RemoteProtocolError."""
    raw = expect_map(codec.unpack(data, max_size), "response", 8)
    if raw.get("v") != WIRE_VERSION:
        raise RemoteProtocolError(f"unsupported control version {raw.get('v')!r}")
    code = raw.get("c")
    error = raw.get("e")
    return ControlResponse(
        id=expect_int(raw.get("id"), "response.id"),
        result=raw.get("r"),
        error_code=None if code is None else expect_str(code, "response.code", 64),
        error=None if error is None else expect(error, str, "response.error"),
        more=raw.get("m") is True,
    )
