"""``/duckpeer/status/1``: ask a peer for its database CID and version vector, now.

One request frame, one reply frame. Gossip already carries the same facts, but an
announce can be seconds old; ``peerctl verify`` wants a fresh answer from each peer.
On the wire: a msgpack map with ``v`` (wire version), ``t`` (``status_q`` or
``status``) and the fields. :func:`decode` returns a message or raises
:class:`RemoteProtocolError`, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol import codec
from protocol.codec import expect_int, expect_map, expect_str, expect_vector
from protocol.errors import RemoteProtocolError

WIRE_VERSION = 1
PROTOCOL = "/duckpeer/status/1"
MAX_STATUS_MESSAGE = 1 << 20
MAX_NONCE = (1 << 63) - 1


@dataclass(frozen=True)
class StatusQuery:
    """Tell me your state; ``nonce`` is echoed in the reply."""

    nonce: int


@dataclass(frozen=True)
class StatusReply:
    """A peer's state at the moment it answered."""

    nonce: int
    peer_id: str
    db_cid: str
    vector: Mapping[str, int]
    hlc: int = 0
    load: float = 0.0


StatusMessage = StatusQuery | StatusReply


def encode(msg: StatusMessage) -> bytes:
    """Encode a status message to its versioned msgpack form."""
    if isinstance(msg, StatusQuery):
        body: dict[str, Any] = {"t": "status_q", "nonce": msg.nonce}
    else:
        body = {
            "t": "status",
            "nonce": msg.nonce,
            "peer": msg.peer_id,
            "cid": msg.db_cid,
            "vv": dict(msg.vector),
            "hlc": msg.hlc,
            "load": msg.load,
        }
    return codec.pack({"v": WIRE_VERSION, **body})


def decode(data: bytes, max_size: int = MAX_STATUS_MESSAGE) -> StatusMessage:
    """Decode bytes into a status message; any defect raises RemoteProtocolError."""
    raw = expect_map(codec.unpack(data, max_size), "status message", 16)
    if raw.get("v") != WIRE_VERSION:
        raise RemoteProtocolError(f"unsupported status wire version {raw.get('v')!r}")
    tag = raw.get("t")
    try:
        if tag == "status_q":
            return StatusQuery(expect_int(raw["nonce"], "status_q.nonce", 0, MAX_NONCE))
        if tag == "status":
            return _reply(raw)
    except KeyError as exc:
        raise RemoteProtocolError(f"{tag}: missing field {exc}") from exc
    raise RemoteProtocolError(f"unknown status message type {tag!r}")


def _reply(raw: dict[str, Any]) -> StatusReply:
    load = raw.get("load", 0.0)
    if not isinstance(load, float | int) or isinstance(load, bool):
        raise RemoteProtocolError("status.load: expected a number")
    return StatusReply(
        nonce=expect_int(raw["nonce"], "status.nonce", 0, MAX_NONCE),
        peer_id=expect_str(raw["peer"], "status.peer", 128),
        db_cid=expect_str(raw["cid"], "status.cid", 128),
        vector=expect_vector(raw["vv"], "status.vv"),
        hlc=expect_int(raw.get("hlc", 0), "status.hlc"),
        load=float(load),
    )
