"""Cache sharing messages on ``/duckpeer/cache/1``: "do you have fingerprint F at CID C?"

One request frame (:class:`CacheGet`), one answer frame (:class:`CacheFound` or
:class:`CacheMissing`). Each is a versioned msgpack map like ``protocol.messages``;
:func:`decode` turns any bytes into one of them or raises RemoteProtocolError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import codec
from protocol.codec import expect, expect_int, expect_list, expect_list_of, expect_str
from protocol.errors import RemoteProtocolError

WIRE_VERSION = 1
MAX_RESULT_BYTES = 64 << 20  # hard protocol maximum of one answer
MAX_COLUMNS = 4096
MAX_VALUE_DEPTH = 8
FINGERPRINT_LEN = 64  # hex SHA-256


@dataclass(frozen=True)
class CacheGet:
    """Ask a peer for the cached result of ``fingerprint`` at exactly ``db_cid``."""

    fingerprint: str
    db_cid: str
    max_rows: int


@dataclass(frozen=True)
class CacheFound:
    """The cached result: column names, rows, and what running it cost the holder."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    cost_ms: float = 0.0
    rewrites: tuple[str, ...] = ()


@dataclass(frozen=True)
class CacheMissing:
    """Not cached there (or refused); ``reason`` is for logs."""

    reason: str


CacheMessage = CacheGet | CacheFound | CacheMissing


def encode(msg: CacheMessage) -> bytes:
    """Encode a message to its versioned msgpack form."""
    tag, body = _TO_WIRE[type(msg)](msg)
    return codec.pack_tagged(tag, body, WIRE_VERSION)


def decode(data: bytes, max_size: int = MAX_RESULT_BYTES) -> CacheMessage:
    """Decode bytes into a message; any defect raises RemoteProtocolError."""
    return codec.unpack_tagged(data, _FROM_WIRE, "cache message", max_size, WIRE_VERSION)


def _get_to_wire(m: CacheGet) -> tuple[str, dict[str, Any]]:
    return "get", {"fp": m.fingerprint, "cid": m.db_cid, "max": m.max_rows}


def _get_from_wire(raw: dict[str, Any]) -> CacheGet:
    fp = expect_str(raw["fp"], "get.fp", FINGERPRINT_LEN)
    if len(fp) != FINGERPRINT_LEN or any(c not in "0123456789abcdef" for c in fp):
        raise RemoteProtocolError("get.fp: expected 64 lower-case hex digits")
    return CacheGet(fp, expect_str(raw["cid"], "get.cid", 128), expect_int(raw["max"], "get.max"))


def _found_to_wire(m: CacheFound) -> tuple[str, dict[str, Any]]:
    return "found", {
        "cols": list(m.columns),
        "rows": [list(r) for r in m.rows],
        "cost": m.cost_ms,
        "rw": list(m.rewrites),
    }


def _found_from_wire(raw: dict[str, Any]) -> CacheFound:
    columns = tuple(expect_list_of(raw["cols"], "found.cols", _column, MAX_COLUMNS))
    rows = tuple(_row(r, len(columns)) for r in expect_list(raw["rows"], "found.rows"))
    cost = raw.get("cost", 0.0)
    if not isinstance(cost, float | int) or isinstance(cost, bool) or cost < 0:
        raise RemoteProtocolError("found.cost: expected a number >= 0")
    rewrites = tuple(expect_list_of(raw.get("rw", []), "found.rw", _column, 16))
    return CacheFound(columns, rows, float(cost), rewrites)


def _column(value: object, what: str) -> str:
    return expect_str(value, what, 1024)


def _row(value: object, width: int) -> tuple[Any, ...]:
    items = expect_list(value, "found.rows[]", width)
    if len(items) != width:
        raise RemoteProtocolError(f"found.rows[]: expected {width} values, got {len(items)}")
    for item in items:
        _check_value(item, 0)
    return tuple(items)


def _check_value(value: object, depth: int) -> None:
    """A query value as ``to_wire`` makes it: scalars, lists and string-keyed maps."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if depth >= MAX_VALUE_DEPTH:
        raise RemoteProtocolError("found.rows: value nested too deeply")
    if isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            expect(key, str, "found.rows: map key")
            _check_value(item, depth + 1)
    else:
        raise RemoteProtocolError(f"found.rows: unexpected {type(value).__name__} value")


def _missing_to_wire(m: CacheMissing) -> tuple[str, dict[str, Any]]:
    return "missing", {"reason": m.reason}


def _missing_from_wire(raw: dict[str, Any]) -> CacheMissing:
    return CacheMissing(expect_str(raw["reason"], "missing.reason", 4096))


_TO_WIRE: dict[type, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    CacheGet: _get_to_wire,
    CacheFound: _found_to_wire,
    CacheMissing: _missing_to_wire,
}
_FROM_WIRE: dict[str, Callable[[dict[str, Any]], CacheMessage]] = {
    "get": _get_from_wire,
    "found": _found_from_wire,
    "missing": _missing_from_wire,
}
