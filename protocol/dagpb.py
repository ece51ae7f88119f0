"""DAG-PB nodes and UnixFS ``Data`` messages, encoded by hand, sans-IO.

Follows the IPLD DAG-PB spec (``PBNode { Links = 2; Data = 1 }``, links first, then
data; ``PBLink { Hash = 1; Name = 2; Tsize = 3 }``) and the UnixFS v1 ``Data``
message (``Type = 1; Data = 2; filesize = 3; blocksizes = 4``, proto2, not packed).
The decoder is strict in the spec's sense: fields in canonical order, no unknown
fields, no duplicates; any defect is a :class:`RemoteProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from protocol.errors import RemoteProtocolError

MAX_VARINT_BYTES = 9  # 63-bit values, as the multiformats unsigned-varint spec allows


def encode_uvarint(value: int) -> bytes:
    """Unsigned LEB128 varint (protobuf and multiformats use the same form)."""
    if value < 0 or value >= 1 << 63:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read a minimal varint at ``pos``; return (value, next position)."""
    value = shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise RemoteProtocolError("truncated varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise RemoteProtocolError("varint not minimally encoded")
            return value, pos + i + 1
        shift += 7
    raise RemoteProtocolError("varint longer than 9 bytes")


@dataclass(frozen=True)
class PBLink:
    """A link: the child's CID bytes, its name, and the cumulative size below it."""

    hash: bytes
    name: str | None = None
    tsize: int | None = None


@dataclass(frozen=True)
class PBNode:
    """A DAG-PB node."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def _key(field_no: int, wire: int) -> bytes:
    return bytes([(field_no << 3) | wire])


def _bytes_field(field_no: int, value: bytes) -> bytes:
    return _key(field_no, 2) + encode_uvarint(len(value)) + value


def encode_link(link: PBLink) -> bytes:
    """Encode one PBLink."""
    out = _bytes_field(1, link.hash)
    if link.name is not None:
        out += _bytes_field(2, link.name.encode())
    if link.tsize is not None:
        out += _key(3, 0) + encode_uvarint(link.tsize)
    return out


def encode_node(node: PBNode) -> bytes:
    """Encode a PBNode: links (in the given order), then data."""
    parts = [_bytes_field(2, encode_link(link)) for link in node.links]
    if node.data is not None:
        parts.append(_bytes_field(1, node.data))
    return b"".join(parts)


def _fields(buf: bytes | memoryview, what: str) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs; varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = decode_uvarint(buf, pos)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_uvarint(buf, pos)
            out.append((field_no, value))
        elif wire == 2:
            length, pos = decode_uvarint(buf, pos)
            if pos + length > len(buf):
                raise RemoteProtocolError(f"{what}: field {field_no} runs past the end")
            out.append((field_no, bytes(buf[pos : pos + length])))
            pos += length
        else:
            raise RemoteProtocolError(f"{what}: unsupported wire type {wire}")
    return out


def _as_int(value: int | bytes, what: str) -> int:
    if not isinstance(value, int):
        raise RemoteProtocolError(f"{what}: expected a varint")
    return value


def _as_bytes(value: int | bytes, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise RemoteProtocolError(f"{what}: expected bytes")
    return value


def decode_link(buf: bytes) -> PBLink:
    """Decode one PBLink (Hash required; fields in order 1, 2, 3, each at most once)."""
    values: dict[int, int | bytes] = {}
    last = 0
    for field_no, value in _fields(buf, "PBLink"):
        if field_no <= last or field_no > 3:
            raise RemoteProtocolError(f"PBLink: unexpected field {field_no}")
        last = field_no
        values[field_no] = value
    if 1 not in values:
        raise RemoteProtocolError("PBLink: missing Hash")
    name, tsize = values.get(2), values.get(3)
    try:
        text = None if name is None else _as_bytes(name, "PBLink.Name").decode()
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("PBLink.Name: not UTF-8") from exc
    size = None if tsize is None else _as_int(tsize, "PBLink.Tsize")
    return PBLink(_as_bytes(values[1], "PBLink.Hash"), text, size)


def decode_node(buf: bytes | memoryview) -> PBNode:
    """Decode a PBNode: links first, then at most one Data field."""
    links: list[PBLink] = []
    data: bytes | None = None
    for field_no, value in _fields(buf, "PBNode"):
        if field_no == 2 and data is None:
            links.append(decode_link(_as_bytes(value, "PBNode.Links")))
        elif field_no == 1 and data is None:
            data = _as_bytes(value, "PBNode.Data")
        else:
            raise RemoteProtocolError(f"PBNode: unexpected field {field_no}")
    return PBNode(tuple(links), data)


class DataType(IntEnum):
    """UnixFS node types (those this module writes and reads)."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2


@dataclass(frozen=True)
class UnixFSData:
    """The UnixFS ``Data`` message carried in a DAG-PB node's Data field."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default=())


def encode_unixfs(msg: UnixFSData) -> bytes:
    """Encode a UnixFS Data message (blocksizes unpacked, as go-unixfs writes them)."""
    out = _key(1, 0) + encode_uvarint(int(msg.type))
    if msg.data is not None:
        out += _bytes_field(2, msg.data)
    if msg.filesize is not None:
        out += _key(3, 0) + encode_uvarint(msg.filesize)
    for size in msg.blocksizes:
        out += _key(4, 0) + encode_uvarint(size)
    return out


def decode_unixfs(buf: bytes) -> UnixFSData:
    """Decode the UnixFS Data fields this module uses; other UnixFS types are refused."""
    kind: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    sizes: list[int] = []
    for field_no, value in _fields(buf, "UnixFS"):
        if field_no == 1 and kind is None:
            kind = _as_int(value, "UnixFS.Type")
        elif field_no == 2 and data is None:
            data = _as_bytes(value, "UnixFS.Data")
        elif field_no == 3 and filesize is None:
            filesize = _as_int(value, "UnixFS.filesize")
        elif field_no == 4:
            sizes.append(_as_int(value, "UnixFS.blocksizes"))
        else:
            raise RemoteProtocolError(f"UnixFS: unexpected field {field_no}")
    if kind not in (0, 1, 2):
        raise RemoteProtocolError(f"UnixFS: unsupported type {kind}")
    return UnixFSData(DataType(kind), data, filesize, tuple(sizes))
