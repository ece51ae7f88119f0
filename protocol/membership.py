"""``/duckpeer/members/1``: ask a peer for some of the cluster's members and addresses.

A peer that has just joined knows only its bootstrap peers; it asks one of them for a
sample of the members it knows, so it can open its few connections to random peers
instead of waiting for their (slow, cluster-size dependent) heartbeat announces.
One request frame, one reply frame. The same stream also carries a ``bye``: a peer
about to close a connection because it holds too many says so first (one frame, no
reply), so the other side does not take the closed connection for a failure. On the
wire: a msgpack map with ``v`` (wire version), ``t`` (``members_q``, ``members`` or
``bye``) and the fields. :func:`decode` returns a message or raises
:class:`RemoteProtocolError`, nothing else.

Ages, not timestamps: ``age_ms`` is how long ago the answering peer last had news of
the member, by its own monotonic clock, so wall clocks that are hours apart do not
matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import codec
from protocol.codec import expect_int, expect_list, expect_list_of, expect_map, expect_str
from protocol.errors import RemoteProtocolError

WIRE_VERSION = 1
PROTOCOL = "/duckpeer/members/1"
MAX_MEMBERS = 256  # members in one reply
MAX_ADDRS = 8  # addresses per member
MAX_AGE_MS = (1 << 31) - 1
MAX_MEMBERS_MESSAGE = 256 << 10


@dataclass(frozen=True)
class MembersQuery:
    """Send me up to ``max`` members you know (not counting yourself); ``addrs`` are the
    asker's own listen addresses, so the answering peer can pass it on to the next."""

    max: int
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Member:
    """One member as the answering peer knows it."""

    peer_id: str
    addrs: tuple[str, ...]
    age_ms: int


@dataclass(frozen=True)
class MembersReply:
    """Some members the answering peer considers alive, with their addresses."""

    members: tuple[Member, ...]


@dataclass(frozen=True)
class MembersBye:
    """I am closing our connection on purpose (I hold more than my limit)."""


MembersMessage = MembersQuery | MembersReply | MembersBye


def encode(msg: MembersMessage) -> bytes:
    """Encode a members message to its versioned msgpack form."""
    if isinstance(msg, MembersQuery):
        body: dict[str, Any] = {"t": "members_q", "max": msg.max, "addrs": list(msg.addrs)}
    elif isinstance(msg, MembersBye):
        body = {"t": "bye"}
    else:
        rows = [[m.peer_id, list(m.addrs), m.age_ms] for m in msg.members]
        body = {"t": "members", "members": rows}
    return codec.pack({"v": WIRE_VERSION, **body})


def decode(data: bytes, max_size: int = MAX_MEMBERS_MESSAGE) -> MembersMessage:
    """Decode bytes into a members message; any defect raises RemoteProtocolError."""
    raw = expect_map(codec.unpack(data, max_size), "members message", 16)
    if raw.get("v") != WIRE_VERSION:
        raise RemoteProtocolError(f"unsupported members wire version {raw.get('v')!r}")
    tag = raw.get("t")
    try:
        if tag == "members_q":
            return MembersQuery(
                expect_int(raw["max"], "members_q.max", 1, MAX_MEMBERS),
                tuple(expect_list_of(raw.get("addrs", []), "members_q.addrs", _addr, MAX_ADDRS)),
            )
        if tag == "members":
            rows = expect_list_of(raw["members"], "members.members", _member, MAX_MEMBERS)
            return MembersReply(tuple(rows))
        if tag == "bye":
            return MembersBye()
    except KeyError as exc:
        raise RemoteProtocolError(f"{tag}: missing field {exc}") from exc
    raise RemoteProtocolError(f"unknown members message type {tag!r}")


def _member(value: object, what: str) -> Member:
    row = expect_list(value, what, 3)
    if len(row) != 3:
        raise RemoteProtocolError(f"{what}: expected [peer, addrs, age_ms]")
    return Member(
        peer_id=expect_str(row[0], f"{what}.peer", 128),
        addrs=tuple(expect_list_of(row[1], f"{what}.addrs", _addr, MAX_ADDRS)),
        age_ms=expect_int(row[2], f"{what}.age_ms", 0, MAX_AGE_MS),
    )


def _addr(value: object, what: str) -> str:
    return expect_str(value, what, 512)
