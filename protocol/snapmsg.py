"""Messages of the snapshot stream ``/duckpeer/snapshot/1``, versioned msgpack.

The client opens a stream and sends ``SnapQuery``; the server answers ``SnapOffer``
(its latest snapshot: root CID, the database CID and vector it captures, block count
and bytes) or ``SnapError``. The client then sends ``SnapWant`` lists of block CIDs
on the same stream; the server answers each with one ``SnapBlock`` per CID, in order.
:func:`decode` returns one of these or raises :class:`RemoteProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol import codec, unixfs
from protocol.codec import expect, expect_int, expect_list_of, expect_str, expect_vector
from protocol.errors import RemoteProtocolError

WIRE_VERSION = 1
MAX_WANT = 256  # CIDs per SnapWant (64 MiB of 256 KiB chunks)
MAX_FRAME = unixfs.MAX_BLOCK + 1024  # one SnapBlock


@dataclass(frozen=True)
class SnapQuery:
    """What is your latest snapshot?"""


@dataclass(frozen=True)
class SnapOffer:
    """The server's snapshot of its current state."""

    root: str
    db_cid: str
    vector: Mapping[str, int] = field(default_factory=dict)
    blocks: int = 0
    size: int = 0  # bytes of the CAR file (an upper bound of the block data)
    history: bool = False  # the server holds every changeset of ``vector``: delta works too


@dataclass(frozen=True)
class SnapWant:
    """Send me these blocks (CID strings), in this order."""

    cids: tuple[str, ...]


@dataclass(frozen=True)
class SnapBlock:
    """One block; the receiver checks it against the CID it asked for."""

    data: bytes


@dataclass(frozen=True)
class SnapError:
    """The server refuses or failed; ``reason`` is for logs."""

    reason: str


SnapMessage = SnapQuery | SnapOffer | SnapWant | SnapBlock | SnapError


def encode(msg: SnapMessage) -> bytes:
    """Encode a message to its versioned msgpack form."""
    tag, body = _TO_WIRE[type(msg)](msg)
    return codec.pack_tagged(tag, body, WIRE_VERSION)


def decode(data: bytes, max_size: int = MAX_FRAME) -> SnapMessage:
    """Decode bytes into a message; any defect raises RemoteProtocolError."""
    return codec.unpack_tagged(data, _FROM_WIRE, "snapshot message", max_size, WIRE_VERSION)


def _cid(value: object, what: str) -> str:
    text = expect_str(value, what, 128)
    unixfs.cid_from_str(text)
    return text


def _offer_from_wire(raw: dict[str, Any]) -> SnapOffer:
    return SnapOffer(
        root=_cid(raw["root"], "offer.root"),
        db_cid=expect_str(raw["cid"], "offer.cid", 128),
        vector=expect_vector(raw["vv"], "offer.vv"),
        blocks=expect_int(raw["n"], "offer.n"),
        size=expect_int(raw["size"], "offer.size"),
        history=expect(raw.get("hist", False), bool, "offer.hist"),
    )


def _want_from_wire(raw: dict[str, Any]) -> SnapWant:
    cids = expect_list_of(raw["cids"], "want.cids", _cid, MAX_WANT)
    if not cids:
        raise RemoteProtocolError("want.cids: empty")
    return SnapWant(tuple(cids))


_TO_WIRE: dict[type, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    SnapQuery: lambda m: ("query", {}),
    SnapOffer: lambda m: (
        "offer",
        {"root": m.root, "cid": m.db_cid, "vv": dict(m.vector), "n": m.blocks, "size": m.size}
        | ({"hist": True} if m.history else {}),
    ),
    SnapWant: lambda m: ("want", {"cids": list(m.cids)}),
    SnapBlock: lambda m: ("blk", {"d": m.data}),
    SnapError: lambda m: ("error", {"reason": m.reason}),
}
_FROM_WIRE: dict[str, Callable[[dict[str, Any]], SnapMessage]] = {
    "query": lambda raw: SnapQuery(),
    "offer": _offer_from_wire,
    "want": _want_from_wire,
    "blk": lambda raw: SnapBlock(expect(raw["d"], bytes, "blk.d")),
    "error": lambda raw: SnapError(expect_str(raw["reason"], "error.reason", 4096)),
}
