"""The peer side of a distributed query: run our partitions of a gossiped fragment.

A fragment is checked like any local query (sandbox: one read-only SELECT over our
tables, external access off) plus its partitioning, run only at the database CID
it names, with the configured row cap, time limit and size limit, and its partial
results go back to the coordinator over a direct ``/duckpeer/query/1`` stream.
Refused fragments are logged and counted, never answered.
"""

from __future__ import annotations

import time

import duckdb
import pyarrow as pa
import structlog
import trio

from daemon.distq.plan import NotSplittable, Partitioning, partition_sql
from daemon.distq.reduce import to_ipc
from daemon.net.framed import FramedStream, StreamClosedError
from daemon.net.network import NetworkError
from daemon.node import Node
from daemon.query.sandbox import QueryRejected, check_query
from daemon.store.database import Store, StoreError
from protocol import messages
from protocol.messages import PartialFailed, PartialResult, QueryFragment

log = structlog.get_logger("distq")

PROTOCOL = "/duckpeer/query/1"
FRAME_OVERHEAD = 4096
RESULT_STREAM_IDLE = 600.0  # an idle result stream is closed by the coordinator after this


class FragmentRefused(Exception):
    """The fragment fails the sandbox or its partitioning is invalid."""


def partitioning_of(fragment: QueryFragment) -> Partitioning:
    """The fragment's partitioning as the planner's type."""
    return Partitioning(fragment.strategy, fragment.partitions, fragment.column, fragment.bounds)


def check_fragment(fragment: QueryFragment, parts: tuple[int, ...]) -> list[str]:
    """The SQL of each of our partitions, each validated; FragmentRefused otherwise."""
    part = partitioning_of(fragment)
    try:
        check_query(fragment.sql)
        sqls = [partition_sql(fragment.sql, part, i) for i in parts]
        for sql in sqls:
            check_query(sql)
    except (QueryRejected, NotSplittable) as exc:
        raise FragmentRefused(str(exc)) from exc
    return sqls


_checked: dict[tuple[str, Partitioning, tuple[int, ...]], list[str]] = {}
CACHE_SIZE = 512


async def _checked_sqls(fragment: QueryFragment, parts: tuple[int, ...]) -> list[str]:
    """:func:`check_fragment`, remembered: a repeated fragment skips the thread hop."""
    key = (fragment.sql, partitioning_of(fragment), parts)
    sqls = _checked.get(key)
    if sqls is None:
        sqls = await trio.to_thread.run_sync(check_fragment, fragment, parts)
        if len(_checked) >= CACHE_SIZE:
            _checked.clear()
        _checked[key] = sqls
    return sqls


async def handle_fragment(
    node: Node, sender: str, fragment: QueryFragment, streams: ResultStreams
) -> None:
    """Run the partitions ``fragment`` assigns to us and stream them back. Never raises."""
    parts = tuple(dict.fromkeys(fragment.assignments.get(node.peer_id, ())))
    if not parts:
        return
    node.metrics.inc("fragments_received")
    try:
        if fragment.coordinator != sender:
            raise FragmentRefused(f"coordinator {fragment.coordinator} is not the sender")
        sqls = await _checked_sqls(fragment, parts)
    except FragmentRefused as exc:
        node.metrics.inc("fragments_refused")
        log.warning("fragment refused", peer=sender, query=fragment.query_id, reason=str(exc))
        return
    if node.config.distq_fragment_delay:
        await trio.sleep(node.config.distq_fragment_delay)
    try:
        await _answer(node, fragment, dict(zip(parts, sqls, strict=True)), streams)
    except (NetworkError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("fragments_unanswered")
        log.warning("fragment result not delivered", query=fragment.query_id, error=str(exc))


async def _answer(
    node: Node, fragment: QueryFragment, sqls: dict[int, str], streams: ResultStreams
) -> None:
    async with trio.open_nursery() as nursery:
        for partition, sql in sqls.items():
            nursery.start_soon(_run_and_send, node, fragment, partition, sql, streams)


async def _run_and_send(
    node: Node, fragment: QueryFragment, partition: int, sql: str, streams: ResultStreams
) -> None:
    reply = await _run_partition(node, fragment, partition, sql)
    await streams.send(fragment.coordinator, messages.encode(reply))


class ResultStreams:
    """One long-lived result stream per coordinator, reused across queries: opening a
    libp2p stream costs protocol negotiation round trips on every query otherwise."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._streams: dict[str, FramedStream] = {}
        self._locks: dict[str, trio.Lock] = {}

    async def send(self, peer: str, payload: bytes) -> None:
        """Send one frame to ``peer``, reopening the stream once if it broke."""
        async with self._locks.setdefault(peer, trio.Lock()):
            framed = self._streams.get(peer)
            if framed is not None:
                try:
                    await framed.send(payload)
                    return
                except StreamClosedError:
                    await self.drop(peer)
            framed = await self._open(peer)
            try:
                await framed.send(payload)
            except StreamClosedError:
                await self.drop(peer)
                raise

    async def _open(self, peer: str) -> FramedStream:
        assert self.node.network is not None
        stream = await self.node.network.open_stream(peer, PROTOCOL)
        limit = self.node.config.distq_max_partial_bytes + FRAME_OVERHEAD
        framed = self._streams[peer] = FramedStream(stream, limit, RESULT_STREAM_IDLE)
        return framed

    async def drop(self, peer: str) -> None:
        """Forget (and close) the stream to ``peer``."""
        framed = self._streams.pop(peer, None)
        if framed is not None:
            await framed.aclose()


async def _run_partition(
    node: Node, fragment: QueryFragment, partition: int, sql: str
) -> PartialResult | PartialFailed:
    config = node.config
    timeout = min(config.query_timeout, fragment.deadline_ms / 1000)
    started = time.perf_counter()

    def run(store: Store) -> tuple[bytes, int]:
        if store.db_cid() != fragment.db_cid:
            raise StoreError("database CID differs from the coordinator's")
        table: pa.Table = store.query_arrow(sql, config.query_max_rows, timeout)
        if store.db_cid() != fragment.db_cid:
            raise StoreError("database changed while the fragment ran")
        data = to_ipc(table)
        if len(data) > config.distq_max_partial_bytes:
            raise StoreError(f"partial result larger than {config.distq_max_partial_bytes} bytes")
        return data, table.num_rows

    try:
        data, rows = await node.query(run)
    except (StoreError, duckdb.Error) as exc:
        node.metrics.inc("fragments_failed")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return PartialFailed(fragment.query_id, partition, reason)
    node.metrics.inc("fragments_run")
    elapsed = (time.perf_counter() - started) * 1000
    return PartialResult(fragment.query_id, partition, data, rows, round(elapsed, 3))
