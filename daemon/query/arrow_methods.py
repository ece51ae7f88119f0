"""``query_arrow``: a query's result as Arrow IPC, in parts (``Client.query_arrow``).

The query is checked like ``query`` (sandbox, row cap, deadline), then read with a
DuckDB record-batch reader held open between calls: ``query_arrow`` returns the first
part, ``query_arrow_next`` the following ones, each a complete Arrow IPC stream of at
most PART_BYTES (a control frame holds 64 MiB), zstd-compressed by Arrow itself. The
reader lives in one read transaction, so every part belongs to the same state. Open
readers are few (MAX_OPEN) and closed when done, on error, or after IDLE seconds.

Results are not cached (the result cache holds row lists for ``query``).
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import trio

from daemon.node import Node
from daemon.query.sandbox import QueryRejected, check_query
from daemon.store.database import Store
from protocol.control import ControlError, param

PART_BYTES = 16 << 20
MAX_OPEN = 4
IDLE = 60.0


@dataclass
class _Open:
    """One result being read: its cursor and reader, and how far it got."""

    cursor: duckdb.DuckDBPyConnection
    reader: Any  # pyarrow.RecordBatchReader
    max_rows: int
    rows: int = 0
    used: float = field(default_factory=time.monotonic)
    lock: trio.Lock = field(default_factory=trio.Lock)

    def close(self) -> None:
        self.cursor.close()


_OPEN: dict[str, _Open] = {}
_IDS = itertools.count(1)


async def query_arrow(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Run a read-only SELECT; the first part of its result as Arrow IPC."""
    sql = param(params, "sql", str)
    limit = node.config.query_max_rows
    max_rows = min(int(params.get("max_rows") or limit), limit)
    _expire()
    if len(_OPEN) >= MAX_OPEN:
        raise ControlError("unavailable", f"{MAX_OPEN} Arrow results are being read; try later")

    def start(store: Store) -> _Open:
        check_query(sql)
        cur = store.cursor()
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            reader = cur.sql(sql).to_arrow_reader(1 << 16)
        except BaseException:
            cur.close()
            raise
        return _Open(cur, reader, max_rows)

    try:
        opened = await node.read(start)
    except QueryRejected as exc:
        node.metrics.inc("queries_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    except duckdb.Error as exc:
        raise ControlError("bad_request", str(exc).splitlines()[0]) from exc
    ident = f"{next(_IDS)}-{secrets.token_hex(4)}"
    _OPEN[ident] = opened
    node.metrics.inc("queries")
    return await _part(node, ident)


async def query_arrow_next(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """The next part of a result started by ``query_arrow``."""
    ident = param(params, "id", str)
    if ident not in _OPEN:
        raise ControlError("bad_request", f"no Arrow result {ident!r} (finished or expired)")
    return await _part(node, ident)


async def _part(node: Node, ident: str) -> dict[str, Any]:
    opened = _OPEN[ident]
    timeout = node.config.query_timeout
    async with opened.lock:
        try:
            data, done = await node.read(lambda _s: _read_part(opened, timeout))
        except duckdb.InterruptException as exc:
            _close(ident)
            raise ControlError("timeout", f"query exceeded {timeout} s") from exc
        except (duckdb.Error, _TooManyRows) as exc:
            _close(ident)
            raise ControlError("bad_request", str(exc).splitlines()[0]) from exc
        opened.used = time.monotonic()
    if done:
        _close(ident)
    return {"id": ident, "ipc": data, "more": not done, "rows": opened.rows}


class _TooManyRows(Exception):
    """The result has more rows than the cap."""


def _read_part(opened: _Open, timeout: float) -> tuple[bytes, bool]:
    """Batches up to PART_BYTES as one compressed IPC stream; (bytes, reader exhausted)."""
    import pyarrow as pa

    timer = _Timer(opened.cursor, timeout)
    batches, size, done = [], 0, False
    try:
        while size < PART_BYTES:
            try:
                batch = opened.reader.read_next_batch()
            except StopIteration:
                done = True
                break
            opened.rows += batch.num_rows
            if opened.rows > opened.max_rows:
                raise _TooManyRows(f"result has more than {opened.max_rows} rows (limit)")
            batches.append(batch)
            size += batch.nbytes
    finally:
        timer.cancel()
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, opened.reader.schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes(), done


class _Timer:
    """Interrupt ``cursor`` if a part takes longer than ``timeout``."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, timeout: float) -> None:
        import threading

        self._timer = threading.Timer(timeout, cursor.interrupt)
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


def _close(ident: str) -> None:
    opened = _OPEN.pop(ident, None)
    if opened is not None:
        opened.close()


def _expire() -> None:
    now = time.monotonic()
    for ident, opened in list(_OPEN.items()):
        if now - opened.used > IDLE and not opened.lock.locked():
            _close(ident)


METHODS = {"query_arrow": query_arrow, "query_arrow_next": query_arrow_next}
