"""``/duckpeer/status/1``: answer and ask "what is your CID and version vector now?".

Used by ``peerctl verify``. A query is one small frame and the answer one frame; bad
or untrusted requests are counted and the stream reset, never raised.
"""

from __future__ import annotations

import secrets

import structlog
import trio

from daemon.net.adapter import NetworkError, PeerStream
from daemon.net.framed import FramedStream, StreamClosedError
from daemon.net.gossip import current_announce
from daemon.node import Node
from protocol import status
from protocol.errors import ProtocolError, RemoteProtocolError
from protocol.status import StatusQuery, StatusReply

log = structlog.get_logger("peerstatus")

ASK_TIMEOUT = 5.0


class StatusFailed(Exception):
    """A peer did not answer a status query; the message says why."""


def my_reply(node: Node, nonce: int) -> StatusReply:
    """Our state now, as a status reply."""
    announce = current_announce(node)
    return StatusReply(
        nonce, node.peer_id, announce.db_cid, dict(announce.vector), announce.hlc, announce.load
    )


async def handle_status_stream(node: Node, stream: PeerStream) -> None:
    """Answer one status query. Never raises."""
    if not node.config.trusts(stream.peer_id):
        node.metrics.inc("status_untrusted")
        await stream.reset()
        return
    framed = FramedStream(stream, status.MAX_STATUS_MESSAGE, ASK_TIMEOUT)
    try:
        frame = await framed.receive()
        if frame is None:
            raise RemoteProtocolError("stream closed before a status query")
        query = status.decode(frame)
        if not isinstance(query, StatusQuery):
            raise RemoteProtocolError(f"expected status_q, got {type(query).__name__}")
        await framed.send(status.encode(my_reply(node, query.nonce)))
        node.metrics.inc("status_served")
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("status_malformed")
        log.warning(
            "status query failed", peer=stream.peer_id, error=f"{type(exc).__name__}: {exc}"
        )
        await stream.reset()
    finally:
        await framed.aclose()


async def ask_status(node: Node, peer: str, timeout: float = ASK_TIMEOUT) -> StatusReply:
    """Ask ``peer`` for its state now. Raises StatusFailed."""
    assert node.network is not None
    nonce = secrets.randbits(62)
    try:
        stream = await node.network.open_stream(peer, status.PROTOCOL)
    except NetworkError as exc:
        raise StatusFailed(str(exc)) from exc
    framed = FramedStream(stream, status.MAX_STATUS_MESSAGE, timeout)
    try:
        await framed.send(status.encode(StatusQuery(nonce)))
        frame = await framed.receive()
        if frame is None:
            raise RemoteProtocolError("stream closed before a status reply")
        reply = status.decode(frame)
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("status_ask_errors")
        await stream.reset()
        raise StatusFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        await framed.aclose()
    if not isinstance(reply, StatusReply) or reply.nonce != nonce or reply.peer_id != peer:
        node.metrics.inc("status_ask_errors")
        raise StatusFailed("peer answered with a reply that is not for this query")
    return reply


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Register the status protocol handler; the host serves it from then on."""
    assert node.network is not None
    node.network.set_stream_handler(status.PROTOCOL, lambda s: handle_status_stream(node, s))
    task_status.started()
