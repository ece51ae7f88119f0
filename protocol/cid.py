"""Content identifiers: changeset blocks (raw) and database states (dag-cbor)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import dag_cbor
from multiformats import CID

from protocol import unixfs
from protocol.errors import RemoteProtocolError

RAW, DAG_CBOR = 0x55, 0x71  # multicodec codes (one-byte varints)
_BLOCK_PREFIX = bytes((1, RAW, unixfs.SHA2_256, 32))  # CIDv1, raw, sha2-256 of 32 bytes


def _cidv1_base32(codec: int, data: bytes) -> str:
    """CIDv1 with a sha2-256 multihash in multibase base32, built by hand: the same
    string multiformats makes, without its per-call type validation (about 1 ms, on
    every block received)."""
    return unixfs.cid_str(unixfs.make_cid(codec, data))


def block_cid(data: bytes) -> str:
    """CIDv1 (raw codec, sha2-256) of a block, as a base32 ``bafk…`` string."""
    return _cidv1_base32(RAW, data)


@functools.lru_cache(maxsize=4096)
def parse_cid(text: str) -> CID:
    """Parse a CID string; malformed input is a remote protocol error.

    Cached: chain heads are parsed again for every database CID, and multiformats
    spends most of its time validating argument types.
    """
    try:
        return CID.decode(text)
    except (ValueError, LookupError, TypeError) as exc:  # LookupError: "b" gives IndexError
        raise RemoteProtocolError(f"bad CID {text[:80]!r}: {exc}") from exc


def check_cid(text: str) -> None:
    """Raise RemoteProtocolError unless ``text`` is a CID; a block CID (the common case:
    a changeset's ``prev``) is checked without multiformats (see ``_heads_dag_cbor``)."""
    if _block_cid_bytes(text) is None:
        parse_cid(text)


def database_cid(heads: Mapping[str, tuple[int, str]]) -> str:
    """CIDv1 (dag-cbor, sha2-256) of the canonical map ``{origin: [seq, head CID]}``.

    Two peers that hold the same changesets hold the same heads, hence the same CID.
    DAG-CBOR's canonical form sorts map keys, so insertion order does not matter.
    """
    encoded = _heads_dag_cbor(heads)
    if encoded is None:  # a head that is not a block CID: the general (slow) encoder
        node: dict[str, Any] = {o: [seq, parse_cid(head)] for o, (seq, head) in heads.items()}
        encoded = dag_cbor.encode(node)
    return _cidv1_base32(DAG_CBOR, encoded)


def _heads_dag_cbor(heads: Mapping[str, tuple[int, str]]) -> bytes | None:
    """The DAG-CBOR bytes of ``{origin: [seq, CID]}`` when every head is a block CID,
    written directly (None otherwise). ``dag_cbor.encode`` and multiformats' CID
    parsing cost about 1 ms per new head, and the exceptions multiformats raises and
    catches while validating argument types leave reference cycles through the
    caller's frames: a bulk commit's Arrow batches stayed alive until Python's next
    full garbage collection (1.5 GB during a 10M-row ingest)."""
    entries: list[tuple[bytes, bytes]] = []
    for origin, (seq, head) in heads.items():
        binary = _block_cid_bytes(head)
        if binary is None or type(seq) is not int or not 0 <= seq < 1 << 64:
            return None
        try:
            key = origin.encode("utf-8")
        except UnicodeEncodeError:
            return None
        link = b"\x00" + binary  # tag 42: a CID as bytes, behind the identity multibase
        value = b"\x82" + _cbor_head(0, seq) + b"\xd8\x2a" + _cbor_head(2, len(link)) + link
        entries.append((key, _cbor_head(3, len(key)) + key + value))
    entries.sort(key=lambda entry: (len(entry[0]), entry[0]))  # DAG-CBOR: length first
    return _cbor_head(5, len(entries)) + b"".join(encoded for _, encoded in entries)


@functools.lru_cache(maxsize=4096)  # heads change one at a time
def _block_cid_bytes(text: str) -> bytes | None:
    """The binary form of a canonical ``block_cid`` string, or None."""
    if len(text) != 59 or not text.startswith("bafkrei"):
        return None
    try:
        binary = unixfs.cid_from_str(text)
    except RemoteProtocolError:
        return None
    if len(binary) != 36 or binary[:4] != _BLOCK_PREFIX or unixfs.cid_str(binary) != text:
        return None  # another kind of CID, or not the canonical spelling (stray bits)
    return binary


def _cbor_head(major: int, value: int) -> bytes:
    """A CBOR item head: major type and argument, in the shortest form."""
    if value < 24:
        return bytes((major << 5 | value,))
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes((major << 5 | extra,)) + value.to_bytes(size, "big")
    raise ValueError(f"CBOR argument {value} does not fit 64 bits")


EMPTY_DATABASE_CID = database_cid({})
