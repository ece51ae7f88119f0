"""DuckDB's buffer cache, given back after bulk work.

DuckDB keeps every block it wrote or read cached until ``memory_limit`` (a quarter of
the machine by default) is reached. After an ingest of 10M results that is about 300 MB
of a daemon that then sits idle on a benchmark host; the blocks are on disk (or in the
WAL) and the OS page cache holds them anyway. Lowering ``memory_limit`` for a moment
makes DuckDB evict down to it; the configured limit is restored at once.
"""

from __future__ import annotations

import duckdb

from daemon.store.database import Store


def cached_bytes(store: Store) -> int:
    """Bytes DuckDB's buffer manager holds now (table blocks, WAL replay, spill)."""
    cur = store.cursor()
    try:
        row = cur.execute("SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()").fetchone()
    finally:
        cur.close()
    return int(row[0] or 0) if row else 0


def release(store: Store, keep: int) -> None:
    """Checkpoint, then evict cached blocks down to about ``keep`` bytes (DuckDB evicts
    what it can even when blocks pinned by a running query keep it above ``keep``).

    Checkpointed blocks are dropped from memory; uncheckpointed ones would be written to
    the temp directory to be evicted, hence the checkpoint first. Nothing happens when no
    limit is configured to return to."""
    if store.memory_limit is None:
        return
    cur = store.cursor()
    try:
        try:
            cur.execute("CHECKPOINT")
        except duckdb.Error:
            pass  # another transaction is open: DuckDB defers it, eviction still helps
        try:
            cur.execute(f"SET memory_limit = '{int(keep)}B'")
        except duckdb.OutOfMemoryException:
            pass  # "could not free up enough memory": it freed what it could
        finally:
            cur.execute(f"SET memory_limit = '{store.memory_limit}'")
    finally:
        cur.close()
