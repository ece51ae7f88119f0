"""CARv1 archives (IPLD Content Addressable aRchives), sans-IO.

An archive is ``varint(len) || dag-cbor {"roots": [CID, ...], "version": 1}``
followed by blocks, each ``varint(len(cid) + len(data)) || cid || data``. The reader
works over any buffer (bytes, or an mmap'ed file through a memoryview, without
copying), bounds every length, and raises :class:`RemoteProtocolError` for any defect;
:func:`verify_blocks` also checks each block against its CID's hash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import dag_cbor
from dag_cbor.encoding.err import CBORError
from multiformats import CID

from protocol import unixfs
from protocol.dagpb import decode_uvarint, encode_uvarint
from protocol.errors import RemoteProtocolError

MAX_HEADER = 64 << 10
MAX_ROOTS = 16
MAX_SECTION = unixfs.MAX_BLOCK + 256  # a block plus its CID


@dataclass(frozen=True)
class CarBlock:
    """One block of an archive: binary CID, data, and where the data sits."""

    cid: bytes
    data: memoryview
    offset: int  # of the data in the archive


def encode_header(roots: list[bytes]) -> bytes:
    """The framed CARv1 header naming ``roots`` (binary CIDs)."""
    body = dag_cbor.encode({"roots": [CID.decode(r) for r in roots], "version": 1})
    return encode_uvarint(len(body)) + body


def block_prefix(cid: bytes, size: int) -> bytes:
    """What precedes a block's data in the archive: section length and CID."""
    return encode_uvarint(len(cid) + size) + cid


def encode_block(cid: bytes, data: bytes) -> bytes:
    """One framed block section."""
    return block_prefix(cid, len(data)) + data


def read_header(buf: bytes | memoryview) -> tuple[list[bytes], int]:
    """Roots (binary CIDs) and the offset of the first block section."""
    length, pos = decode_uvarint(buf, 0)
    if length == 0 or length > MAX_HEADER or pos + length > len(buf):
        raise RemoteProtocolError(f"CAR header of {length} bytes is bad or truncated")
    try:
        header = dag_cbor.decode(bytes(buf[pos : pos + length]))
    except (CBORError, ValueError, TypeError, LookupError, OverflowError) as exc:
        # (OverflowError: a string length beyond the header's own, from dag_cbor)
        raise RemoteProtocolError(f"CAR header is not dag-cbor: {exc}") from exc
    if not isinstance(header, dict) or header.get("version") != 1:
        raise RemoteProtocolError("not a CARv1 archive (header version is not 1)")
    roots = header.get("roots")
    if not isinstance(roots, list) or not 1 <= len(roots) <= MAX_ROOTS:
        raise RemoteProtocolError("CAR header: roots must be a list of 1 to 16 CIDs")
    cids = [r for r in roots if isinstance(r, CID)]
    if len(cids) != len(roots):
        raise RemoteProtocolError("CAR header: a root is not a CID")
    return [bytes(r) for r in cids], pos + length


def iter_blocks(buf: bytes | memoryview, start: int) -> Iterator[CarBlock]:
    """Every block section from ``start`` to the end (not verified)."""
    view = memoryview(buf)
    pos = start
    while pos < len(view):
        length, at = decode_uvarint(view, pos)
        end = at + length
        if length == 0 or length > MAX_SECTION or end > len(view):
            raise RemoteProtocolError(f"CAR section at {pos} of {length} bytes is bad or truncated")
        info = unixfs.parse_cid(view[:end], at)
        yield CarBlock(bytes(view[at : info.end]), view[info.end : end], info.end)
        pos = end


@dataclass
class CarIndex:
    """Roots and, per block CID, where its data sits in the archive."""

    roots: list[bytes]
    blocks: dict[bytes, tuple[int, int]]  # cid -> (offset, length)
    data_bytes: int = 0


def index(buf: bytes | memoryview, verify: bool = True) -> CarIndex:
    """Read (and by default verify) a whole archive; duplicate blocks must be identical."""
    roots, start = read_header(buf)
    out = CarIndex(roots, {})
    for block in iter_blocks(buf, start):
        if verify:
            unixfs.verify_block(block.cid, block.data)
        if block.cid not in out.blocks:
            out.blocks[block.cid] = (block.offset, len(block.data))
            out.data_bytes += len(block.data)
    return out
