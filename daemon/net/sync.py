"""Delta sync over ``/duckpeer/sync/1``: pull only the changesets we lack.

Client: open a stream (dialing the peer on demand), send ``SyncRequest(have=our
vector)``, read ``SyncBlock`` frames (applied in batches while reading continues)
until ``SyncEnd``, whose CID and vector update what we know of the peer.
Server: answer with the blocks the requester lacks, in our apply order (causal),
packed into large writes, then ``SyncEnd``. A request whose vector covers ours is
answered at once, without touching the store (that is what anti-entropy rounds cost),
and one whose vector holds something we lack makes us pull from the requester in
turn: each exchange moves changesets both ways, and tells each side the other's state.

Changesets we pulled are not announced (that would cost every peer a message per
peer); instead we *nudge* each connected peer not known to have them: a pull from it,
whose request shows it that we have more, so it pulls them from us, and so on over
the connection graph.

A pull fails (and the next one starts) when the peer sends nothing for
``sync_read_timeout`` or trickles below :data:`MIN_RATE` on average: a peer that
vanishes mid-sync holds the puller for at most that long.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import duckdb
import structlog
import trio

from daemon.net import connmgr, membership
from daemon.net.adapter import NetworkError, PeerStream
from daemon.net.framed import FramedStream, StreamClosedError
from daemon.node import Node
from daemon.store.blocklog import BlockLogError
from protocol import codec, messages, vv
from protocol.errors import ProtocolError, RemoteProtocolError
from protocol.messages import SyncBlock, SyncEnd, SyncError, SyncRequest

log = structlog.get_logger("sync")

PROTOCOL = "/duckpeer/sync/1"
FRAME_OVERHEAD = 1024  # a SyncBlock's own fields around the block
MAX_FRAME = codec.MAX_BLOCK + FRAME_OVERHEAD
APPLY_BATCH_BYTES = 16 << 20
APPLY_BATCH_BLOCKS = 512
WRITE_CHUNK = 1 << 20
SNAPSHOT_REQUIRED = "snapshot_required"
MIN_RATE = 16 << 10  # bytes/s a sync response must average after sync_read_timeout


@dataclass
class PullResult:
    """What one pull from one peer did."""

    peer: str
    received: int = 0
    applied: int = 0
    rejected: int = 0
    bytes: int = 0
    db_cid: str = ""
    conflicts: int = 0  # keys the pulled changesets made concurrent
    end: SyncEnd | None = None


class SyncFailed(Exception):
    """A pull did not complete; the message says why (for logs and ``peerctl sync``)."""


# -- server ------------------------------------------------------------------------------


async def handle_sync_stream(node: Node, stream: PeerStream) -> None:
    """Serve one sync request from a peer. Never raises: failures are logged and counted."""
    if not node.config.trusts(stream.peer_id):
        node.metrics.inc("sync_untrusted")
        log.warning("sync request from untrusted peer refused", peer=stream.peer_id)
        await stream.reset()
        return
    framed = FramedStream(stream, codec.DEFAULT_MAX_MESSAGE, node.config.sync_read_timeout)
    try:
        if node.sync_limiter.allow(stream.peer_id):
            await _serve(node, framed, stream.peer_id)
        else:
            node.metrics.inc("sync_rate_limited")
            log.warning("sync request over the rate limit refused", peer=stream.peer_id)
            await framed.send(messages.encode(SyncError("rate limited")))
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("sync_serve_errors")
        log.warning("sync serve failed", peer=stream.peer_id, error=f"{type(exc).__name__}: {exc}")
        await stream.reset()
    except (BlockLogError, duckdb.Error) as exc:  # our own storage failed: say so, keep running
        node.metrics.inc("sync_serve_errors")
        log.error("sync serve failed: local store error", peer=stream.peer_id, error=str(exc))
        await stream.reset()
    finally:
        await framed.aclose()


async def _serve(node: Node, framed: FramedStream, peer: str) -> None:
    first = await framed.receive()
    if first is None:
        raise RemoteProtocolError("stream closed before a request")
    request = messages.decode(first)
    if not isinstance(request, SyncRequest):
        await framed.send(messages.encode(SyncError("expected sync_req")))
        raise RemoteProtocolError(f"expected sync_req, got {type(request).__name__}")
    membership.touch(node, peer)
    mine = node.store.vector()
    _requested(node, peer, request.have, mine)
    if vv.lacks(mine, request.have):  # the requester has news for us: pull it in turn
        node.request_sync(peer)
    if not vv.lacks(request.have, mine):  # nothing to send: answer without the store
        await framed.send(messages.encode(SyncEnd(0, node.store.db_cid(), mine)))
        return
    framed.max_frame = MAX_FRAME
    sent = 0
    batches = node.store.missing_for(request.have)
    while True:
        batch = await node.read(lambda _s: next(batches, None))
        if batch is None:
            break
        await _send_blocks(framed, batch)
        sent += len(batch)
        if request.max_changesets and sent >= request.max_changesets:
            break
    missing = node.store.unservable(request.have)
    if missing:  # bootstrapped from a snapshot: older changesets are not kept here
        node.metrics.inc("sync_history_missing")
        reason = (f"{SNAPSHOT_REQUIRED}: changesets before our snapshot are not kept here "
                  f"for {len(missing)} origin(s); bootstrap from a snapshot "
                  "or sync from a peer with full history")  # fmt: skip
        await framed.send(messages.encode(SyncError(reason)))
    else:
        end = SyncEnd(sent, node.store.db_cid(), node.store.vector())
        await framed.send(messages.encode(end))
    node.metrics.inc("sync_changesets_out", sent)
    node.metrics.inc("sync_bytes_out", framed.bytes_out)
    log.debug("served sync", peer=peer, changesets=sent)


async def _send_blocks(framed: FramedStream, blocks: list[bytes]) -> None:
    await framed.send_chunked((messages.encode(SyncBlock(b)) for b in blocks), WRITE_CHUNK)


# -- client ------------------------------------------------------------------------------


async def pull(node: Node, peer: str) -> PullResult:
    """Pull what ``peer`` has and we lack. Raises SyncFailed."""
    assert node.network is not None
    if not node.config.trusts(peer):
        node.metrics.inc("sync_untrusted")
        raise SyncFailed(f"{peer} is not a trusted peer")
    if node.sync_held:
        raise SyncFailed("delta sync waits for the snapshot bootstrap")
    try:
        if not await connmgr.reach(node, peer):
            raise NetworkError(f"{peer} is not connected and could not be dialed")
        stream = await node.network.open_stream(peer, PROTOCOL)
    except NetworkError as exc:
        raise SyncFailed(str(exc)) from exc
    framed = FramedStream(stream, _max_frame(node), node.config.sync_read_timeout, MIN_RATE)
    result = PullResult(peer)
    try:
        await framed.send(messages.encode(SyncRequest(node.store.vector())))
        await _receive(node, framed, result)
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("sync_pull_errors")
        await stream.reset()
        raise SyncFailed(_describe(exc, node.config.sync_read_timeout)) from exc
    finally:
        await framed.aclose()
        result.bytes = framed.bytes_in
        node.metrics.inc("sync_changesets_in", result.received)
        node.metrics.inc("sync_bytes_in", framed.bytes_in)
    membership.touch(node, peer)
    if result.end is not None:
        _learned(node, peer, result.end)
    return result


def _max_frame(node: Node) -> int:
    """The configured block limit plus room for the frame's own fields, never above
    the protocol's maximum."""
    return min(node.config.max_block_bytes + FRAME_OVERHEAD, MAX_FRAME)


def _describe(exc: Exception, timeout: float) -> str:
    if isinstance(exc, trio.TooSlowError):
        return f"TooSlowError: peer sent nothing for {timeout} s, or too little since"
    return f"{type(exc).__name__}: {exc}"


def _requested(node: Node, peer: str, have: dict[str, int], mine: dict[str, int]) -> None:
    """A sync request states the requester's vector (and, if it equals ours, its CID)."""
    state = node.peers.get(peer)
    if state is not None:
        state.vector = dict(have)
        state.db_cid = node.store.db_cid() if have == mine else ""


def nudge(node: Node, source: str) -> None:
    """Ask every connected peer that, as far as we know, lacks some of what we hold to
    sync with us (we pull from it; its side then pulls from us)."""
    mine = node.store.vector()
    for peer in node.connected_peers():
        state = node.peers.get(peer)
        if (
            peer != source
            and node.config.trusts(peer)
            and (state is None or vv.lacks(state.vector, mine))
        ):
            node.request_sync(peer)
            node.metrics.inc("sync_nudges")


def _learned(node: Node, peer: str, end: SyncEnd) -> None:
    """A sync end is a fresh statement of the peer's state."""
    state = node.peers.get(peer)
    if state is not None and end.vector:
        state.db_cid, state.vector = end.db_cid, dict(end.vector)


async def _receive(node: Node, framed: FramedStream, result: PullResult) -> None:
    """Read and apply concurrently; what arrived before a failure is still applied."""
    send, receive = trio.open_memory_channel[list[bytes]](2)
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_apply_batches, node, receive, result)
        async with send:
            try:
                await _read_blocks(framed, send, result)
            except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
                failure = exc  # raised below, outside the nursery, unwrapped
    if failure is not None:
        raise failure


async def _read_blocks(
    framed: FramedStream, send: trio.MemorySendChannel[list[bytes]], result: PullResult
) -> None:
    batch: list[bytes] = []
    size = 0
    while True:
        frame = await framed.receive()
        if frame is None:
            raise RemoteProtocolError("stream ended before sync end")
        msg = messages.decode(frame, framed.max_frame)
        if isinstance(msg, SyncBlock):
            batch.append(msg.block)
            size += len(msg.block)
            result.received += 1
            if size >= APPLY_BATCH_BYTES or len(batch) >= APPLY_BATCH_BLOCKS:
                await send.send(batch)
                batch, size = [], 0
        elif isinstance(msg, SyncEnd):
            result.db_cid = msg.db_cid
            result.end = msg
            break
        elif isinstance(msg, SyncError):
            if batch:  # what arrived before the refusal is still applied
                await send.send(batch)
            raise RemoteProtocolError(f"peer refused: {msg.reason}")
        else:
            raise RemoteProtocolError(f"unexpected {type(msg).__name__} in sync response")
    if batch:
        await send.send(batch)


async def _apply_batches(
    node: Node, receive: trio.MemoryReceiveChannel[list[bytes]], result: PullResult
) -> None:
    async with receive:
        async for batch in receive:
            outcome = await node.apply_blocks(batch, result.peer)
            result.applied += outcome.applied
            result.rejected += len(outcome.rejected)
            result.conflicts += outcome.conflicts


# -- service -------------------------------------------------------------------------------


async def serve_sync(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run pulls one at a time: on request (announces, ``peerctl sync``) and on a timer."""
    assert node.network is not None
    node.network.set_stream_handler(PROTOCOL, lambda s: handle_sync_stream(node, s))
    task_status.started()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_anti_entropy, node)
        while True:
            for peer in await node.next_sync_batch():
                await pull_logged(node, peer)


async def pull_logged(node: Node, peer: str) -> PullResult | None:
    """Pull from a peer, logging instead of raising."""
    if node.sync_held:  # a snapshot bootstrap runs; it asks every peer for a pull after
        log.debug("pull deferred: snapshot bootstrap", peer=peer)
        return None
    log.debug("pull start", peer=peer)
    try:
        result = await pull(node, peer)
    except SyncFailed as exc:
        log.warning("sync pull failed", peer=peer, error=str(exc))
        if SNAPSHOT_REQUIRED in str(exc):  # the snapshot service bootstraps an empty store
            node.metrics.inc("sync_snapshot_required")
        return None
    if result.applied:
        nudge(node, peer)
    if result.received:
        log.info(
            "pulled",
            peer=peer,
            received=result.received,
            applied=result.applied,
            bytes=result.bytes,
        )
    return result


def next_anti_entropy_interval(current: float, changed: bool, base: float, ceiling: float) -> float:
    """The wait before the next anti-entropy round: ``base`` after the database changed,
    otherwise twice the last wait, up to ``ceiling`` (never below ``base``)."""
    return base if changed else min(max(base, ceiling), current * 2)


async def _anti_entropy(node: Node) -> None:
    """Exchange vectors with one random connected peer, in case gossip was lost: both
    sides then pull what the other has. Every ``anti_entropy_interval`` (jittered) after
    a change; while nothing changes the wait doubles up to ``anti_entropy_max_interval``,
    so an idle cluster costs little and a lost change is still found within that bound."""
    config = node.config
    interval = config.anti_entropy_interval
    while True:
        changed = await _wait_round(node, connmgr.jittered(interval))
        interval = next_anti_entropy_interval(
            interval, changed, config.anti_entropy_interval, config.anti_entropy_max_interval
        )
        peers = [p for p in node.connected_peers() if config.trusts(p)]
        if peers:
            node.metrics.inc("anti_entropy_rounds")
            node.request_sync(random.choice(peers))


async def _wait_round(node: Node, wait: float) -> bool:
    """Sleep ``wait`` s, cut to ``anti_entropy_interval`` if the database changes
    meanwhile; True if it changed."""
    deadline, changed = trio.current_time() + wait, False
    while trio.current_time() < deadline:
        with trio.move_on_at(deadline):
            await node.wait_changed()
            if not changed:
                changed = True
                sooner = trio.current_time() + connmgr.jittered(node.config.anti_entropy_interval)
                deadline = min(deadline, sooner)
    return changed
