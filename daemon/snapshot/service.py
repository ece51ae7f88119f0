"""Snapshots over libp2p: serve ours on ``/duckpeer/snapshot/1``, bootstrap from peers.

Server: a peer opens a stream and sends ``SnapQuery``; we answer ``SnapOffer`` for a
snapshot of our current state (exported on demand, cached until the database CID
changes), then serve ``SnapWant`` lists of block CIDs from that CAR file, packed into
large writes. Trust and the per-peer sync rate limit apply as on the sync stream.

Client (bootstrap): ask every candidate peer for its offer, pick the most advanced
snapshot, and fetch its blocks level by level (directory, file roots, inner nodes,
leaves) from every peer offering the same root in parallel: each worker takes the next
batch of CIDs from a shared queue, so a fast peer serves more and a failed peer's batch
goes back to the queue. Every block is checked against its CID as it arrives and
appended to a CAR file, which is then imported like ``peerctl snapshot import``.
Delta sync is held while this runs and resumes from the snapshot's vector.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import structlog
import trio

from daemon.net.framed import FramedStream, StreamClosedError
from daemon.net.network import Libp2pByteStream, NetworkError
from daemon.node import Node
from daemon.snapshot.archive import CarFileWriter, SnapshotError, SnapshotInfo, export_snapshot
from daemon.snapshot.archive import import_snapshot as load_snapshot
from protocol import snapmsg, unixfs
from protocol.errors import ProtocolError, RemoteProtocolError
from protocol.snapmsg import SnapBlock, SnapError, SnapOffer, SnapQuery, SnapWant

log = structlog.get_logger("snapshot")

PROTOCOL = "/duckpeer/snapshot/1"
WANT_BATCH = 32  # CIDs per request: 8 MiB of 256 KiB leaves
PIPELINE = 3  # wants in flight per peer
WRITE_CHUNK = 1 << 20
SETTLE = 1.0  # seconds to let the other bootstrap peers connect after the first
POLL_S = 0.1  # while the first peers connect
MAX_ALONE_POLL_S = 2.0  # with no peer at all (a bootstrap starts at most this late)
HELD_POLL_S = 30.0  # a store with rows checks for refused delta syncs this seldom
MAX_REFUSAL_POLL_S = 8.0  # an empty one at least this often


class BootstrapFailed(Exception):
    """No snapshot could be fetched and loaded; the message says why."""


class NoOffer(BootstrapFailed):
    """No connected peer offered a snapshot (none speaks the protocol, or all refused)."""


@dataclass
class Served:
    """The snapshot we currently serve, with where each block sits in its file."""

    info: SnapshotInfo
    blocks: dict[bytes, tuple[int, int]]
    made_at: float = field(default_factory=time.monotonic)
    durable: bool = True  # fsynced (an export made to serve a peer is not, at first)


class Snapshots:
    """One node's snapshot files: the latest export, reused while the CID holds."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.directory = node.config.data_dir / "snapshots"
        self.served: Served | None = None
        self._lock = trio.Lock()

    async def current(self, max_age: float = 0.0, durable: bool = True) -> Served:
        """A snapshot of the current state, exported now unless we have one; with
        ``max_age``, one that old or younger is good enough even if the database has
        changed since (a bootstrapping peer catches up the rest by delta), unless it is
        of an empty database: peers that started together ask each other for snapshots
        while still empty, and a newcomer must not be offered that. ``durable``: the
        file is on disk (fsynced) when this returns; serving peers need not wait."""
        async with self._lock:
            served = self.served
            fresh = served is not None and (
                served.info.db_cid == self.node.store.db_cid()
                or (bool(served.info.vector) and time.monotonic() - served.made_at <= max_age)
            )
            if served is None or not fresh:
                served = await self._export(durable)
            elif durable and not served.durable:
                await trio.to_thread.run_sync(_fsync, served.info.path)
                served.durable = True
            return served

    async def _export(self, durable: bool) -> Served:
        started = time.perf_counter()
        work = self.directory / "export.car"
        info = await self.node.read(lambda store: export_snapshot(store, work, durable))
        final = self.directory / f"{info.root}.car"
        os.replace(work, final)
        info.path = final
        self.adopt(info, durable)
        self.node.metrics.inc("snapshots_exported")
        log.info("snapshot exported", root=info.root, db_cid=info.db_cid, bytes=info.size,
                 seconds=round(time.perf_counter() - started, 3))  # fmt: skip
        assert self.served is not None
        return self.served

    def adopt(self, info: SnapshotInfo, durable: bool = True) -> None:
        """Serve ``info`` (a CAR file of our current state) from now on."""
        old, self.served = self.served, Served(info, info.index, durable=durable)
        if old is not None and old.info.path != info.path:
            old.info.path.unlink(missing_ok=True)  # streams serving it keep their fd


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


_REGISTRY: weakref.WeakKeyDictionary[Node, Snapshots] = weakref.WeakKeyDictionary()


def snapshots_of(node: Node) -> Snapshots:
    """The node's :class:`Snapshots` (created on first use)."""
    if node not in _REGISTRY:
        _REGISTRY[node] = Snapshots(node)
    return _REGISTRY[node]


# -- server ------------------------------------------------------------------------------


async def handle_snapshot_stream(node: Node, stream: Libp2pByteStream) -> None:
    """Serve one peer's snapshot session. Never raises: failures are logged and counted."""
    peer = stream.peer_id
    if not node.config.trusts(peer):
        node.metrics.inc("snapshot_untrusted")
        log.warning("snapshot request from untrusted peer refused", peer=peer)
        await stream.reset()
        return
    framed = FramedStream(stream, snapmsg.MAX_FRAME, node.config.sync_read_timeout)
    try:
        if node.sync_limiter.allow(peer):
            await _serve_session(node, framed, peer)
        else:
            node.metrics.inc("snapshot_rate_limited")
            await framed.send(snapmsg.encode(SnapError("rate limited")))
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("snapshot_serve_errors")
        log.warning("snapshot serve failed", peer=peer, error=f"{type(exc).__name__}: {exc}")
        await stream.reset()
    except (OSError, SnapshotError, duckdb.Error) as exc:  # our own export or file failed
        node.metrics.inc("snapshot_serve_errors")
        log.error("snapshot serve failed: local error", peer=peer, error=str(exc))
        await stream.reset()
    finally:
        await framed.aclose()


async def _serve_session(node: Node, framed: FramedStream, peer: str) -> None:
    first = await framed.receive()
    if first is None or not isinstance(snapmsg.decode(first), SnapQuery):
        raise RemoteProtocolError("expected a snapshot query")
    served = await snapshots_of(node).current(node.config.snapshot_max_age, durable=False)
    info = served.info
    history = not node.store.unservable({})  # an empty peer could catch up by delta
    offer = SnapOffer(info.root, info.db_cid, info.vector, info.blocks, info.size, history)
    fd = os.open(info.path, os.O_RDONLY)  # kept even if a newer export replaces the file
    try:
        await framed.send(snapmsg.encode(offer))
        sent = 0
        while (frame := await framed.receive()) is not None:
            want = snapmsg.decode(frame)
            if not isinstance(want, SnapWant):
                raise RemoteProtocolError(f"expected a want, got {type(want).__name__}")
            sent += await _send_blocks(framed, fd, served, want)
    finally:
        os.close(fd)
    node.metrics.inc("snapshot_blocks_out", sent)
    node.metrics.inc("snapshot_bytes_out", framed.bytes_out)
    log.info("served snapshot", peer=peer, root=info.root, blocks=sent, bytes=framed.bytes_out)


async def _send_blocks(framed: FramedStream, fd: int, served: Served, want: SnapWant) -> int:
    places = []
    for text in want.cids:
        place = served.blocks.get(unixfs.cid_from_str(text))
        if place is None:
            await framed.send(snapmsg.encode(SnapError(f"no block {text} in {served.info.root}")))
            raise RemoteProtocolError(f"peer wants a block we do not have: {text}")
        places.append(place)
    datas = await trio.to_thread.run_sync(lambda: [os.pread(fd, n, at) for at, n in places])
    await framed.send_chunked((snapmsg.encode(SnapBlock(d)) for d in datas), WRITE_CHUNK)
    return len(datas)


# -- client ------------------------------------------------------------------------------


@dataclass
class Session:
    """An open snapshot stream to one peer, after its offer."""

    peer: str
    stream: Libp2pByteStream
    framed: FramedStream
    offer: SnapOffer


@dataclass
class BootstrapResult:
    """What a bootstrap did."""

    root: str = ""
    db_cid: str = ""
    peers: list[str] = field(default_factory=list)
    blocks: int = 0
    bytes: int = 0
    fetch_s: float = 0.0
    load_s: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    skipped: str = ""  # why nothing was loaded, when nothing was

    def to_wire(self) -> dict[str, object]:
        """The control-API form."""
        return dict(self.__dict__)


async def open_session(node: Node, peer: str) -> Session:
    """Open a snapshot stream to ``peer`` and read its offer."""
    assert node.network is not None
    if not node.config.trusts(peer):
        raise BootstrapFailed(f"{peer} is not a trusted peer")
    try:
        stream = await node.network.open_stream(peer, PROTOCOL)
    except NetworkError as exc:
        raise BootstrapFailed(str(exc)) from exc
    framed = FramedStream(stream, snapmsg.MAX_FRAME, node.config.sync_read_timeout)
    try:
        await framed.send(snapmsg.encode(SnapQuery()))
        frame = await framed.receive()
        reply = snapmsg.decode(frame) if frame is not None else SnapError("stream closed")
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        await stream.reset()
        raise BootstrapFailed(f"{peer}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(reply, SnapOffer):
        await stream.reset()
        reason = reply.reason if isinstance(reply, SnapError) else type(reply).__name__
        raise BootstrapFailed(f"{peer} offers no snapshot: {reason}")
    return Session(peer, stream, framed, reply)


async def _offers(node: Node, peers: list[str]) -> list[Session]:
    sessions: list[Session] = []

    async def one(peer: str) -> None:
        try:
            sessions.append(await open_session(node, peer))
        except BootstrapFailed as exc:
            log.warning("no snapshot offer", peer=peer, error=str(exc))

    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(one, peer)
    return sessions


async def bootstrap(node: Node, peers: list[str], min_bytes: int = 0) -> BootstrapResult:
    """Load the most advanced snapshot ``peers`` offer into our (empty) store, unless it
    is smaller than ``min_bytes`` (then delta sync is about as fast and keeps history)."""
    sessions = await _offers(node, peers)
    if not sessions:
        raise NoOffer("no peer offered a snapshot")
    best = max(sessions, key=lambda s: (sum(s.offer.vector.values()), s.offer.root))
    chosen = [s for s in sessions if s.offer.root == best.offer.root]
    try:
        for s in sessions:
            if s.offer.root != best.offer.root:
                await s.framed.aclose()
        if not best.offer.vector:
            return BootstrapResult(skipped="peers hold an empty database")
        if best.offer.size < min_bytes and all(s.offer.history for s in chosen):
            return BootstrapResult(skipped=f"small database ({best.offer.size} bytes < "
                                           f"{min_bytes}): catching up by delta")  # fmt: skip
        return await _fetch_and_load(node, chosen)
    finally:
        for s in chosen:
            await s.framed.aclose()


async def _fetch_and_load(node: Node, sessions: list[Session]) -> BootstrapResult:
    offer = sessions[0].offer
    result = BootstrapResult(offer.root, offer.db_cid, [s.peer for s in sessions])
    directory = node.config.data_dir / "snapshots"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{offer.root}.car"
    out = CarFileWriter(path.with_name(path.name + ".partial"))
    started = time.perf_counter()
    try:
        await _fetch(node, sessions, unixfs.cid_from_str(offer.root), out, result)
        await trio.to_thread.run_sync(out.finish, unixfs.cid_from_str(offer.root))
    except OSError as exc:  # our disk
        out.abort()
        raise BootstrapFailed(f"cannot write {out.path}: {exc}") from exc
    except BaseException:
        out.abort()
        raise
    os.replace(out.path, path)
    result.fetch_s = time.perf_counter() - started
    started = time.perf_counter()
    try:
        info = await node.write(lambda store: load_snapshot(store, path, verify=False))
    except SnapshotError as exc:
        path.unlink(missing_ok=True)
        raise BootstrapFailed(str(exc)) from exc
    result.load_s = time.perf_counter() - started
    result.rows = info.rows
    info.index = out.offsets
    snapshots_of(node).adopt(info)  # the next new peer can fetch it from us too
    node.metrics.inc("snapshot_bootstraps")
    node.metrics.inc("snapshot_bootstrap_peers", len(sessions))
    return result


async def _fetch(
    node: Node, sessions: list[Session], root: bytes, out: CarFileWriter, result: BootstrapResult
) -> None:
    """Fetch the DAG under ``root`` level by level, every level from all sessions."""
    level = [root]
    seen: set[bytes] = set()
    offer = sessions[0].offer
    sink = _Sink(out, root, result, offer.blocks, offer.size)
    for _ in range(unixfs.MAX_DEPTH + 2):
        if not level:
            return
        seen.update(level)
        children = await _fetch_level(node, sessions, level, sink)
        level = list(dict.fromkeys(c for c in children if c not in seen))  # each block once
    raise BootstrapFailed("snapshot DAG is deeper than any we write")


@dataclass
class _Sink:
    """Where fetched blocks go: verified, appended to the CAR, children collected."""

    out: CarFileWriter
    root: bytes
    result: BootstrapResult
    max_blocks: int
    max_bytes: int
    lock: trio.Lock = field(default_factory=trio.Lock)

    async def put(self, cids: list[bytes], blocks: list[bytes]) -> list[bytes]:
        done, size = self.result, sum(map(len, blocks))
        if done.blocks + len(blocks) > self.max_blocks or done.bytes + size > self.max_bytes:
            raise RemoteProtocolError("snapshot is larger than its offer said")
        async with self.lock:
            found = await trio.to_thread.run_sync(
                _check_and_write, self.out, cids, blocks, self.root
            )
        done.blocks += len(blocks)
        done.bytes += size
        return found


async def _fetch_level(
    node: Node, sessions: list[Session], level: list[bytes], sink: _Sink
) -> list[bytes]:
    """Fetch one level's blocks from all sessions (shared queue); return their children.

    Each session keeps up to PIPELINE wants in flight, so the serving peer always has
    the next one queued. A session that fails is dropped (its batches go back to the
    queue); idle workers stay until no batch is in flight, so a returned batch always
    finds a taker."""
    children: list[bytes] = []
    size = max(1, min(WANT_BATCH, -(-len(level) // len(sessions))))  # spread small levels
    queue = deque(level[i : i + size] for i in range(0, len(level), size))
    state = _Level()

    async def worker(session: Session) -> None:
        sent: deque[list[bytes]] = deque()  # this session's wants, oldest first
        try:
            while queue or sent or state.in_flight:
                while queue and len(sent) < PIPELINE:
                    batch = queue.popleft()
                    sent.append(batch)
                    state.in_flight += 1
                    await _send_want(session, batch)
                if not sent:
                    await state.wait()
                    continue
                blocks = await _read_blocks(session, len(sent[0]))
                children.extend(await sink.put(sent[0], blocks))  # verified here
                sent.popleft()
                state.done()
        except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
            queue.extendleft(reversed(sent))
            state.in_flight -= len(sent)
            state.done(0)
            sessions.remove(session)
            node.metrics.inc("snapshot_fetch_errors")  # bad block, stream error, timeout
            log.warning("snapshot fetch from peer failed", peer=session.peer,
                        error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            await session.stream.reset()

    async with trio.open_nursery() as nursery:
        for session in list(sessions):
            nursery.start_soon(worker, session)
    if queue:
        raise BootstrapFailed("every peer failed while sending the snapshot")
    return children


@dataclass
class _Level:
    """Batches of one level sent but not delivered, and a wake-up for idle workers."""

    in_flight: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    async def wait(self) -> None:
        await self.changed.wait()

    def done(self, batches: int = 1) -> None:
        self.in_flight -= batches
        self.changed.set()
        self.changed = trio.Event()


async def _send_want(session: Session, batch: list[bytes]) -> None:
    want = SnapWant(tuple(unixfs.cid_str(c) for c in batch))
    await session.framed.send(snapmsg.encode(want))


async def _read_blocks(session: Session, count: int) -> list[bytes]:
    blocks = []
    for _ in range(count):
        frame = await session.framed.receive()
        if frame is None:
            raise RemoteProtocolError("stream ended in the middle of a want")
        msg = snapmsg.decode(frame)
        if isinstance(msg, SnapError):
            raise RemoteProtocolError(f"peer refused: {msg.reason}")
        if not isinstance(msg, SnapBlock):
            raise RemoteProtocolError(f"expected a block, got {type(msg).__name__}")
        blocks.append(msg.data)
    return blocks


def _check_and_write(
    out: CarFileWriter, cids: list[bytes], blocks: list[bytes], root: bytes
) -> list[bytes]:
    """Verify each block against the CID we asked for, append it, return its children.

    A block that does not match is a RemoteProtocolError (raised in the worker thread,
    so the bootstrap fails rather than loading anything unverified)."""
    children: list[bytes] = []
    for cid, data in zip(cids, blocks, strict=True):
        unixfs.verify_block(cid, data)
        if cid == root:
            children += unixfs.read_directory(cid, data).values()
        else:
            children += unixfs.file_children(cid, data)[0]
    out.add([unixfs.Block(c, d) for c, d in zip(cids, blocks, strict=True)])
    return children


# -- service -------------------------------------------------------------------------------


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve snapshots to peers; with ``bootstrap_snapshot`` and an empty store, load a
    peer's snapshot before delta sync starts (``node.sync_held`` until then)."""
    assert node.network is not None
    node.network.set_stream_handler(PROTOCOL, lambda s: handle_snapshot_stream(node, s))
    task_status.started()
    if node.sync_held:
        await bootstrap_on_start(node)
    await _bootstrap_when_history_is_missing(node)


async def _bootstrap_when_history_is_missing(node: Node) -> None:
    """An empty store whose delta sync was refused for missing history (the peer pruned
    it, or was bootstrapped itself) can only catch up from a snapshot: fetch one."""
    refused = node.metrics.get("sync_snapshot_required")
    wait = 1.0
    while True:
        # Only an empty store acts on a refusal, which comes soon after it starts pulling:
        # it looks every second at first, then ever less often (an idle daemon wakes less).
        await trio.sleep(HELD_POLL_S if node.store.heads_snapshot() else wait)
        wait = min(wait * 2, MAX_REFUSAL_POLL_S)
        now = node.metrics.get("sync_snapshot_required")
        if now == refused or node.store.heads_snapshot() or not node.config.bootstrap_snapshot:
            refused = now
            continue
        refused, wait = now, 1.0
        peers = [p for p in node.connected_peers() if node.config.trusts(p)]
        log.info("delta sync refused for missing history: bootstrapping from a snapshot")
        node.sync_held = True
        try:
            await _try_bootstrap(node, peers, min_bytes=0)
        except NoOffer:
            log.warning("delta history is missing and no peer offers a snapshot")
        finally:
            release(node)


async def bootstrap_on_start(node: Node) -> None:
    """Try to bootstrap until it works, the store fills by other means, or the wait
    (``bootstrap_snapshot_wait`` after the first peer connects) runs out; then release
    delta sync."""
    first_seen: float | None = None
    alone = POLL_S  # grows while no peer is connected, so a lone empty daemon stays idle
    try:
        while node.store.heads_snapshot() == {}:
            peers = [p for p in node.connected_peers() if node.config.trusts(p)]
            now = trio.current_time()
            if peers and first_seen is None:
                first_seen = now
            if first_seen is not None and now - first_seen > node.config.bootstrap_snapshot_wait:
                log.warning("no snapshot loaded in time; catching up by delta sync")
                return
            if first_seen is None:
                await trio.sleep(alone)
                alone = min(MAX_ALONE_POLL_S, alone * 1.5)
                continue
            if _settling(node, peers, now - first_seen):
                await trio.sleep(POLL_S)
                continue
            try:
                if await _try_bootstrap(node, peers):
                    return
            except NoOffer:
                # Nobody here serves snapshots: waiting out bootstrap_snapshot_wait would
                # only delay the delta sync that is the one way to catch up with them.
                log.info("no peer offers a snapshot; catching up by delta sync")
                return
            await trio.sleep(1.0)
    finally:
        release(node)


def _settling(node: Node, peers: list[str], waited: float) -> bool:
    """Give the other bootstrap peers a moment to connect, to fetch from all of them."""
    return len(peers) < len(node.config.bootstrap) and waited < SETTLE


async def _try_bootstrap(node: Node, peers: list[str], min_bytes: int | None = None) -> bool:
    floor = node.config.bootstrap_snapshot_min_bytes if min_bytes is None else min_bytes
    try:
        result = await bootstrap(node, peers, floor)
    except NoOffer:
        node.metrics.inc("snapshot_bootstrap_failures")
        raise
    except BootstrapFailed as exc:
        node.metrics.inc("snapshot_bootstrap_failures")
        log.warning("snapshot bootstrap failed", error=str(exc))
        return False
    if result.skipped:
        log.info("snapshot bootstrap skipped", reason=result.skipped)
    else:
        log.info("bootstrapped from snapshot", root=result.root, db_cid=result.db_cid,
                 peers=len(result.peers), bytes=result.bytes,
                 fetch_s=round(result.fetch_s, 3), load_s=round(result.load_s, 3))  # fmt: skip
    return True


def release(node: Node) -> None:
    """Let delta sync run again and pull from every connected peer."""
    node.sync_held = False
    node.notify_changed()
    for peer in node.connected_peers():
        if node.config.trusts(peer):
            node.request_sync(peer)
