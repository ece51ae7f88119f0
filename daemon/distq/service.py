"""Distributed-query service: fragments from gossip, partials from result streams."""

from __future__ import annotations

from functools import partial

import structlog
import trio

from daemon.distq.coordinator import coordinator
from daemon.distq.worker import (
    FRAME_OVERHEAD,
    PROTOCOL,
    RESULT_STREAM_IDLE,
    ResultStreams,
    handle_fragment,
)
from daemon.net.framed import FramedStream, StreamClosedError
from daemon.net.network import Libp2pByteStream
from daemon.node import Node
from protocol import messages
from protocol.errors import ProtocolError, RemoteProtocolError
from protocol.messages import PartialFailed, PartialResult, QueryFragment

log = structlog.get_logger("distq")
QUEUE = 64  # fragments waiting to start; more are dropped and counted


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run fragments peers assign to us; receive partials of our own queries."""
    assert node.network is not None
    send, receive = trio.open_memory_channel[tuple[str, QueryFragment]](QUEUE)

    def on_fragment(sender: str, fragment: QueryFragment) -> None:
        try:
            send.send_nowait((sender, fragment))
        except trio.WouldBlock:
            node.metrics.inc("fragments_dropped")

    node.gossip_handlers[QueryFragment] = on_fragment
    node.network.set_stream_handler(PROTOCOL, partial(handle_result_stream, node))
    streams = ResultStreams(node)
    task_status.started()
    async with trio.open_nursery() as nursery:
        async for sender, fragment in receive:
            nursery.start_soon(handle_fragment, node, sender, fragment, streams)


async def handle_result_stream(node: Node, stream: Libp2pByteStream) -> None:
    """Read partial results from a peer into the waiting query. Never raises."""
    if not node.config.trusts(stream.peer_id):
        node.metrics.inc("distq_untrusted")
        await stream.reset()
        return
    max_frame = node.config.distq_max_partial_bytes + FRAME_OVERHEAD
    framed = FramedStream(stream, max_frame, RESULT_STREAM_IDLE)
    coord = coordinator(node)
    try:
        while (frame := await framed.receive()) is not None:
            msg = messages.decode(frame, max_frame)
            if not isinstance(msg, PartialResult | PartialFailed):
                raise RemoteProtocolError(f"unexpected {type(msg).__name__} on a result stream")
            if not coord.deliver(stream.peer_id, msg):
                node.metrics.inc("distq_unexpected_partials")
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("distq_stream_errors")
        log.warning(
            "result stream failed", peer=stream.peer_id, error=f"{type(exc).__name__}: {exc}"
        )
        await stream.reset()
    finally:
        await framed.aclose()
