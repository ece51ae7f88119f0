"""Distributed-query service: query links, fragments from gossip and links, partials
back, and the background re-cluster of the fact table."""

from __future__ import annotations

import sys

import structlog
import trio

from daemon.distq import recluster
from daemon.distq.capacity import local_capacity
from daemon.distq.coordinator import coordinator
from daemon.distq.keymap import KeyMaps
from daemon.distq.links import PROTOCOL, Links
from daemon.distq.worker import FragmentInbox, run_fragment
from daemon.net.framed import StreamClosedError
from daemon.net.network import NetworkError
from daemon.node import Node
from daemon.ratelimit import RateLimiter
from protocol import messages
from protocol.messages import Capacity, PartialFailed, PartialResult, QueryFragment

log = structlog.get_logger("distq")
QUEUE = 64  # fragments waiting to start; more are dropped and counted


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run fragments peers assign to us; receive partials of our own queries."""
    assert node.network is not None
    if node.config.distq_switch_interval:
        # A fragment's DuckDB thread needs the GIL back after every call; with Python's
        # 5 ms default it waits behind py-libp2p on the event loop (about a fifth of a
        # tiny distributed query's time on the test machine).
        sys.setswitchinterval(node.config.distq_switch_interval)
    coord = coordinator(node)
    links = Links(node, lambda: _capacity(node))
    coord.send_down = links.send_down
    links.on_partial = coord.deliver
    links.on_capacity = coord.capacity.told
    send, receive = trio.open_memory_channel[tuple[QueryFragment, tuple[int, ...]]](QUEUE)
    inbox = FragmentInbox(node, send)
    limiter = RateLimiter(node.config.gossip_per_peer_per_second, 100)  # link copies
    node.gossip_handlers[QueryFragment] = lambda sender, fragment: inbox.offer(
        sender,
        fragment,
        lambda: True,  # gossip.py has rate-limited the sender already
    )
    links.on_fragment = lambda sender, fragment: inbox.offer(
        sender, fragment, lambda: limiter.allow(sender)
    )
    node.network.set_stream_handler(PROTOCOL, links.handle)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(links.serve, nursery)
        if node.config.recluster:
            nursery.start_soon(recluster.serve_recluster, node)
        task_status.started()
        async for fragment, parts in receive:
            nursery.start_soon(_answer, node, coord.keymaps, links, fragment, parts, nursery)


def _capacity(node: Node) -> Capacity:
    told = local_capacity(node.load())
    if node.config.distq_advertised_cores:  # tests: a peer claiming cores it lacks
        return Capacity(node.config.distq_advertised_cores, told.load, told.busy)
    return told


async def _answer(
    node: Node,
    keymaps: KeyMaps,
    links: Links,
    fragment: QueryFragment,
    parts: tuple[int, ...],
    nursery: trio.Nursery,
) -> None:
    """Run our partitions of ``fragment`` and send each answer up. Never raises."""

    async def reply(answer: PartialResult | PartialFailed) -> None:
        try:
            await links.send_up(fragment.coordinator, messages.encode(answer), nursery)
        except (NetworkError, StreamClosedError, trio.TooSlowError) as exc:
            node.metrics.inc("fragments_unanswered")
            log.warning("fragment result not delivered", query=fragment.query_id, error=str(exc))

    await run_fragment(node, fragment, parts, keymaps, reply)
