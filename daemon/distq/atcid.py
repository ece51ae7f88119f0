"""Running a partition query at exactly one database CID.

Every partition of a distributed query must read the same database state, or the
slices would not add up to the single-node result. The store publishes its database
CID just after the DuckDB transaction that changed it commits, so checking the CID
around a query leaves a gap: a query that starts in it reads the new rows under the
old CID. Here the query runs in one transaction that first reads the chain heads
(``store.heads``, written in the same transaction as the rows): they must equal the
heads behind the published CID, which must be the one asked for.

Time limits are kept by one watchdog thread for all partitions rather than a timer
thread per query (starting one costs about 0.5 ms, a sixth of a tiny fragment).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import duckdb

from daemon.store.database import Store, StoreError, read_arrow

if TYPE_CHECKING:
    import pyarrow as pa


BATCH_ROWS = 8192  # rows per Arrow batch read (the row cap is checked per batch)


class CidChanged(StoreError):
    """The store is not (or no longer) at the database CID the query must run at."""


def query_at(store: Store, db_cid: str, sql: str, max_rows: int, timeout: float) -> pa.Table:
    """``sql`` as an Arrow table, read at database CID ``db_cid``; CidChanged if the
    store is elsewhere, StoreError over ``max_rows``, InterruptException on timeout."""
    cur = store.cursor()
    try:
        with WATCHDOG.limit(cur, timeout):
            rows = cur.execute(
                "BEGIN TRANSACTION; SELECT origin, seq, cid FROM store.heads"
            ).fetchall()
            try:
                heads, published = store.state()
                if published != db_cid:
                    raise CidChanged("database CID differs from the coordinator's")
                if {origin: (seq, cid) for origin, seq, cid in rows} != heads:
                    raise CidChanged("database changed as the fragment started")
                return read_arrow(cur, sql, max_rows, BATCH_ROWS)
            finally:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK").fetchall()
    finally:
        cur.close()


class Watchdog:
    """Interrupts cursors whose time is up, from one thread started on first use."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, duckdb.DuckDBPyConnection]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def limit(self, cur: duckdb.DuckDBPyConnection, timeout: float) -> Iterator[None]:
        """Interrupt ``cur`` if the block is still running after ``timeout`` s."""
        ident = next(self._ids)
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="distq-watchdog",
                                                daemon=True)  # fmt: skip
                self._thread.start()
            if len(self._due) > 64 + 4 * len(self._live):  # drop what finished in time
                self._due = [d for d in self._due if d[1] in self._live]
                heapq.heapify(self._due)
            heapq.heappush(self._due, (time.monotonic() + timeout, ident, cur))
            self._live.add(ident)
            self._wake.notify()
        try:
            yield
        finally:
            with self._wake:
                self._live.discard(ident)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._due and self._due[0][1] not in self._live:
                    heapq.heappop(self._due)  # finished in time
                wait = self._due[0][0] - time.monotonic() if self._due else None
                if wait is None or wait > 0:
                    self._wake.wait(wait)
                    continue
                _, _, cur = heapq.heappop(self._due)
            with contextlib.suppress(duckdb.Error):  # it may just have finished
                cur.interrupt()


WATCHDOG = Watchdog()
