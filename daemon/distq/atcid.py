"""Running a partition query at exactly one database CID.

Every partition of a distributed query must read the same database state, or the
slices would not add up to the single-node result. The store publishes its database
CID just after the DuckDB transaction that changed it commits, so checking the CID
around a query leaves a gap: a query that starts in it reads the new rows under the
old CID. Here the query runs in one transaction that first reads the chain heads
(``store.heads``, written in the same transaction as the rows): they must equal the
heads behind the published CID, which must be the one asked for.
"""

from __future__ import annotations

import contextlib

import duckdb
import pyarrow as pa

from daemon.store.database import Store, StoreError, interrupt_after


class CidChanged(StoreError):
    """The store is not (or no longer) at the database CID the query must run at."""


def query_at(store: Store, db_cid: str, sql: str, max_rows: int, timeout: float) -> pa.Table:
    """``sql`` as an Arrow table, read at database CID ``db_cid``; CidChanged if the
    store is elsewhere, StoreError over ``max_rows``, InterruptException on timeout."""
    with interrupt_after(store.cursor(), timeout) as cur:
        cur.execute("BEGIN TRANSACTION").fetchall()
        try:
            rows = cur.execute("SELECT origin, seq, cid FROM store.heads").fetchall()
            heads, published = store.state()
            if published != db_cid:
                raise CidChanged("database CID differs from the coordinator's")
            if {origin: (seq, cid) for origin, seq, cid in rows} != heads:
                raise CidChanged("database changed as the fragment started")
            return _read(cur, sql, max_rows)
        finally:
            with contextlib.suppress(duckdb.Error):
                cur.execute("ROLLBACK").fetchall()


def _read(cur: duckdb.DuckDBPyConnection, sql: str, max_rows: int) -> pa.Table:
    batches, rows = [], 0
    reader = cur.sql(sql).to_arrow_reader(min(max_rows + 1, 1 << 17))
    for batch in reader:
        rows += batch.num_rows
        if rows > max_rows:
            raise StoreError(f"result has more than {max_rows} rows (limit)")
        batches.append(batch)
    return pa.Table.from_batches(batches, reader.schema)
