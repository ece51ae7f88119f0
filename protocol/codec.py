"""msgpack codec with hard limits, plus small validators for decoded values.

Every decoder in this package goes through :func:`unpack` and the ``expect_*``
helpers, so malformed input always surfaces as :class:`RemoteProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import msgpack

from protocol.errors import LocalProtocolError, RemoteProtocolError

DEFAULT_MAX_MESSAGE = 1 << 20  # 1 MiB: gossip and control messages
MAX_BLOCK = 32 << 20  # 32 MiB: one changeset block on a sync stream

_UNPACK_ERRORS = (
    ValueError,  # covers msgpack's ExtraData, FormatError, StackError, UnicodeDecodeError
    TypeError,
    OverflowError,
    msgpack.OutOfData,
)

T = TypeVar("T")


def pack(obj: object) -> bytes:
    """Encode with msgpack (bin type for bytes, str for text)."""
    try:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode: {exc}") from exc


BIG_BINARY = 64 << 10  # binaries from this size pass through pack_pieces uncopied


def pack_pieces(obj: object, items: int = 2048) -> Iterator[bytes | memoryview]:
    """:func:`pack` of ``obj`` in consecutive pieces (``b"".join`` gives the same
    bytes): arrays longer than ``items`` are encoded ``items`` elements at a time, so a
    caller can pause between pieces (each ``packb`` call holds the GIL throughout), and
    a binary of :data:`BIG_BINARY` bytes or more is its header followed by the object
    itself, not a copy (an ingest chunk is tens of MB)."""
    if isinstance(obj, bytes | bytearray | memoryview) and len(obj) >= BIG_BINARY:
        view = memoryview(obj).cast("B")
        yield _bin_header(view.nbytes)
        yield view
    elif isinstance(obj, dict):
        yield _header(len(obj), 0x80, 0xDE)
        for key, value in obj.items():
            yield pack(key)
            yield from pack_pieces(value, items)
    elif isinstance(obj, list | tuple) and len(obj) > items:
        yield _header(len(obj), 0x90, 0xDC)
        for start in range(0, len(obj), items):
            chunk = list(obj[start : start + items])
            yield pack(chunk)[len(_header(len(chunk), 0x90, 0xDC)) :]
    else:
        yield pack(obj)


def _bin_header(n: int) -> bytes:
    """msgpack's bin 8/16/32 header (0xc4/0xc5/0xc6) for ``n`` bytes."""
    if n < 1 << 8:
        return bytes([0xC4, n])
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _header(n: int, fix: int, tag16: int) -> bytes:
    """msgpack's array (0x90/0xdc) or map (0x80/0xde) header for ``n`` entries."""
    if n < 16:
        return bytes([fix | n])
    if n < 1 << 16:
        return bytes([tag16]) + n.to_bytes(2, "big")
    return bytes([tag16 + 1]) + n.to_bytes(4, "big")


def unpack(data: bytes, max_size: int = DEFAULT_MAX_MESSAGE) -> Any:
    """Decode one msgpack object of at most ``max_size`` bytes."""
    if len(data) > max_size:
        raise RemoteProtocolError(f"message of {len(data)} bytes exceeds limit {max_size}")
    try:
        # unpackb takes no max_buffer_size; it bounds every str/bin/array/map/ext
        # length by len(data), which the check above already caps at max_size.
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except _UNPACK_ERRORS as exc:
        raise RemoteProtocolError(f"undecodable msgpack: {type(exc).__name__}: {exc}") from exc


def expect(value: object, kind: type[T], what: str) -> T:
    """Return ``value`` if it is a ``kind`` (bool is never accepted as int)."""
    if isinstance(value, bool) and kind is not bool:
        raise RemoteProtocolError(f"{what}: expected {kind.__name__}, got bool")
    if not isinstance(value, kind):
        raise RemoteProtocolError(f"{what}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def expect_str(value: object, what: str, max_len: int = 4096) -> str:
    """A text value of bounded length."""
    text = expect(value, str, what)
    if len(text) > max_len:
        raise RemoteProtocolError(f"{what}: string longer than {max_len}")
    return text


def expect_int(value: object, what: str, lo: int = 0, hi: int = (1 << 63) - 1) -> int:
    """An integer within ``[lo, hi]``."""
    number = expect(value, int, what)
    if not lo <= number <= hi:
        raise RemoteProtocolError(f"{what}: {number} outside [{lo}, {hi}]")
    return number


def expect_list(value: object, what: str, max_len: int = 1 << 20) -> list[Any]:
    """A list of bounded length."""
    items = expect(value, list, what)
    if len(items) > max_len:
        raise RemoteProtocolError(f"{what}: more than {max_len} items")
    return items


def expect_map(value: object, what: str, max_len: int = 4096) -> dict[Any, Any]:
    """A map of bounded size."""
    mapping = expect(value, dict, what)
    if len(mapping) > max_len:
        raise RemoteProtocolError(f"{what}: more than {max_len} entries")
    return mapping


def expect_list_of(
    value: object, what: str, item: Callable[[object, str], T], max_len: int = 4096
) -> list[T]:
    """A bounded list whose items each pass ``item``."""
    return [item(x, f"{what}[{i}]") for i, x in enumerate(expect_list(value, what, max_len))]


def expect_vector(value: object, what: str) -> dict[str, int]:
    """A version vector: ``{origin: seq >= 1}``."""
    raw = expect_map(value, what, max_len=65536)
    return {
        expect_str(origin, f"{what} key", 128): expect_int(seq, f"{what}[{origin}]", 1)
        for origin, seq in raw.items()
    }


M = TypeVar("M")


def pack_tagged(tag: str, body: dict[str, Any], version: int = 1) -> bytes:
    """A versioned, tagged message: ``{"v": version, "t": tag, **body}`` as msgpack."""
    return pack({"v": version, "t": tag, **body})


def unpack_tagged(
    data: bytes,
    parsers: dict[str, Callable[[dict[str, Any]], M]],
    what: str,
    max_size: int = DEFAULT_MAX_MESSAGE,
    version: int = 1,
) -> M:
    """Decode a :func:`pack_tagged` message with the parser of its tag; any defect
    (size, version, unknown tag, missing or ill-typed field) is a RemoteProtocolError."""
    raw = expect_map(unpack(data, max_size), what, 16)
    if raw.get("v") != version:
        raise RemoteProtocolError(f"unsupported {what} wire version {raw.get('v')!r}")
    tag = raw.get("t")
    parser = parsers.get(tag) if isinstance(tag, str) else None
    if parser is None:
        raise RemoteProtocolError(f"unknown {what} type {tag!r}")
    try:
        return parser(raw)
    except KeyError as exc:
        raise RemoteProtocolError(f"{tag}: missing field {exc}") from exc
