"""The control method ``query``, and how query values travel (``to_wire``)."""

from __future__ import annotations

import datetime
import decimal
import time
import uuid
from typing import Any

import duckdb

from daemon.node import Node
from daemon.query import cached
from daemon.query.sandbox import QueryRejected, check_query
from daemon.store.database import Store, StoreError
from protocol.control import ControlError, param


async def query(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Run a read-only SELECT over the replicated tables (answered from the result cache
    when it holds this query at the current database CID)."""
    sql = param(params, "sql", str)
    max_rows = min(
        int(params.get("max_rows") or node.config.query_max_rows), node.config.query_max_rows
    )
    hit = await cached.lookup(node, sql, max_rows, params.get("cache") is not False)
    if hit is not None:
        return hit
    started = time.perf_counter()

    def run(store: Store) -> cached.Executed:
        # Parsing and converting are CPU work: off the event loop, in the reader thread.
        check_query(sql)
        return cached.execute(store, sql, max_rows, node.config.query_timeout, to_wire)

    try:
        done = await node.read(run)
    except QueryRejected as exc:
        node.metrics.inc("queries_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    except duckdb.InterruptException as exc:
        raise ControlError("timeout", f"query exceeded {node.config.query_timeout} s") from exc
    except (duckdb.Error, StoreError) as exc:
        raise ControlError("bad_request", str(exc).splitlines()[0]) from exc
    node.metrics.inc("queries")
    elapsed_ms = (time.perf_counter() - started) * 1000
    node.metrics.observe("query_ms", elapsed_ms)
    result = {"columns": done.columns, "rows": done.rows, "elapsed_ms": round(elapsed_ms, 3)}
    return cached.remember(node, sql, max_rows, result, done)


def to_wire(value: Any) -> Any:
    """A query value as something msgpack and JSON can carry."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


METHODS = {"query": query}
