"""The peer side of a distributed query: run our partitions of a fragment.

A fragment arrives twice, on gossip and down the query link from its coordinator
(daemon/distq/links.py); the first copy runs, the other is dropped
(:class:`FragmentInbox`). It is checked like any local query (sandbox: one read-only
SELECT over our tables, external access off) plus its partitioning, run only at the
database CID it names (daemon/distq/atcid.py), with the configured row cap, time limit
and size limit, and each partial result goes back up the query link with what the
slice scanned (rows and row groups, from our own zone maps). Refused fragments are
logged and counted, never answered.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import duckdb
import structlog
import trio

from daemon.distq.atcid import CidChanged, query_at
from daemon.distq.keymap import KeyMaps
from daemon.distq.keyspace import key_ranges
from daemon.distq.plan import FACT_KEY, NotSplittable
from daemon.distq.reduce import to_ipc
from daemon.distq.slices import KEYS, Partitioning, fragment_sql
from daemon.node import Node
from daemon.query.sandbox import QueryRejected, check_query
from daemon.store.database import Store, StoreError
from daemon.store.lazy import lazy_module
from protocol.messages import PartialFailed, PartialResult, QueryFragment

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


log = structlog.get_logger("distq")

SEEN = 4096  # fragments remembered for deduplication
CID_GRACE = 1.0  # seconds a peer behind the fragment's CID waits to catch up
Scan = tuple[int, int, int]  # rows, row groups read, row groups


class FragmentRefused(Exception):
    """The fragment fails the sandbox or its partitioning is invalid."""


def partitioning_of(fragment: QueryFragment) -> Partitioning:
    """The fragment's partitioning as the planner's type."""
    return Partitioning(
        fragment.strategy, fragment.partitions, fragment.column, fragment.bounds, fragment.owners
    )


def check_fragment(fragment: QueryFragment, parts: tuple[int, ...]) -> list[str]:
    """The SQL of each of our partitions, each validated; FragmentRefused otherwise."""
    part = partitioning_of(fragment)
    try:
        check_query(fragment.sql)
        sqls = [fragment_sql(fragment.sql, part, i) for i in parts]
        for sql in sqls:
            check_query(sql)
    except (QueryRejected, NotSplittable) as exc:
        raise FragmentRefused(str(exc)) from exc
    return sqls


_checked: dict[tuple[str, Partitioning, tuple[int, ...]], list[str]] = {}
CACHE_SIZE = 512


async def checked_sqls(fragment: QueryFragment, parts: tuple[int, ...]) -> list[str]:
    """:func:`check_fragment`, remembered: a repeated fragment skips the thread hop."""
    key = (fragment.sql, partitioning_of(fragment), parts)
    sqls = _checked.get(key)
    if sqls is None:
        sqls = await trio.to_thread.run_sync(check_fragment, fragment, parts)
        if len(_checked) >= CACHE_SIZE:
            _checked.clear()
        _checked[key] = sqls
    return sqls


def my_partitions(node: Node, fragment: QueryFragment) -> tuple[int, ...]:
    """The partitions ``fragment`` gives this node, each once."""
    return tuple(dict.fromkeys(fragment.assignments.get(node.peer_id, ())))


Queued = tuple[QueryFragment, tuple[int, ...]]


class FragmentInbox:
    """Deduplicates the gossip and link copies of fragments and queues them to run."""

    def __init__(self, node: Node, send: trio.MemorySendChannel[Queued]) -> None:
        self.node = node
        self._send = send
        self._seen: OrderedDict[tuple[object, ...], None] = OrderedDict()

    def offer(self, sender: str, fragment: QueryFragment, allow: Callable[[], bool]) -> None:
        """A fragment from ``sender`` (gossip or link); queued once if it names us.
        ``allow()`` is asked only for a first copy (rate limits)."""
        parts = my_partitions(self.node, fragment)
        if not parts:
            return
        node = self.node
        if fragment.coordinator != sender:
            node.metrics.inc("fragments_refused")
            log.warning("fragment refused", peer=sender, query=fragment.query_id,
                        reason=f"coordinator {fragment.coordinator} is not the sender")  # fmt: skip
            return
        key = (sender, parts, *_identity(fragment))
        if key in self._seen:
            node.metrics.inc("fragments_duplicate")
            return
        if not allow():
            node.metrics.inc("fragments_rate_limited")
            return
        self._seen[key] = None
        if len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        try:
            self._send.send_nowait((fragment, parts))
        except trio.WouldBlock:
            node.metrics.inc("fragments_dropped")


Reply = Callable[[PartialResult | PartialFailed], Awaitable[None]]


def _identity(f: QueryFragment) -> tuple[object, ...]:
    """What tells fragments apart (its two copies are equal; the assignments of a
    reassignment differ only in who runs it, which ``parts`` already says)."""
    return (f.query_id, f.db_cid, f.sql, f.strategy, f.partitions, f.column, f.bounds,
            f.owners, f.deadline_ms)  # fmt: skip


async def run_fragment(
    node: Node, fragment: QueryFragment, parts: tuple[int, ...], keymaps: KeyMaps, reply: Reply
) -> None:
    """Run our partitions of ``fragment``, calling ``reply`` with each answer as it is
    ready; a refused fragment is never answered."""
    node.metrics.inc("fragments_received")
    try:
        sqls = await checked_sqls(fragment, parts)
    except FragmentRefused as exc:
        node.metrics.inc("fragments_refused")
        log.warning("fragment refused", peer=fragment.coordinator, query=fragment.query_id,
                    reason=str(exc))  # fmt: skip
        return
    if node.config.distq_fragment_delay:
        await trio.sleep(node.config.distq_fragment_delay)
    await _caught_up(node, fragment)

    async def one(partition: int, sql: str) -> None:
        await reply(await _run_partition(node, fragment, partition, sql, keymaps))

    async with trio.open_nursery() as nursery:
        for partition, sql in zip(parts, sqls, strict=True):
            nursery.start_soon(one, partition, sql)


async def _caught_up(node: Node, fragment: QueryFragment) -> None:
    """Give a peer a moment to reach the fragment's CID (a write still on its way)."""
    with trio.move_on_after(min(CID_GRACE, fragment.deadline_ms / 2000)):
        while node.store.db_cid() != fragment.db_cid:
            await node.wait_changed()


async def _run_partition(
    node: Node, fragment: QueryFragment, partition: int, sql: str, keymaps: KeyMaps
) -> PartialResult | PartialFailed:
    config = node.config
    timeout = min(config.query_timeout, fragment.deadline_ms / 1000)
    part = partitioning_of(fragment)
    started = time.perf_counter()

    def run(store: Store) -> tuple[bytes, int, Scan]:
        table: pa.Table = query_at(store, fragment.db_cid, sql, config.query_max_rows, timeout)
        data = to_ipc(table)
        if len(data) > config.distq_max_partial_bytes:
            raise StoreError(f"partial result larger than {config.distq_max_partial_bytes} bytes")
        return data, table.num_rows, scan_of(store, keymaps, fragment.db_cid, part, partition)

    try:
        data, rows, (scanned, groups, total) = await node.query(run)
    except (CidChanged, StoreError, duckdb.Error) as exc:
        node.metrics.inc("fragments_failed")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return PartialFailed(fragment.query_id, partition, reason)
    node.metrics.inc("fragments_run")
    elapsed = round((time.perf_counter() - started) * 1000, 3)
    return PartialResult(fragment.query_id, partition, data, rows, elapsed, scanned, groups, total)


def scan_of(store: Store, keymaps: KeyMaps, db_cid: str, part: Partitioning, index: int) -> Scan:
    """What slice ``index`` reads here by our zone maps: (rows, row groups, of total);
    zeros where they do not tell (a slice on another column)."""
    if part.strategy == KEYS and part.column != FACT_KEY:
        return 0, 0, 0
    keymap = keymaps.at(store, db_cid)
    if part.strategy != KEYS:  # a hash or row-number slice reads every row group
        return keymap.scan([(None, None)])
    return keymap.scan(key_ranges(part, index))
