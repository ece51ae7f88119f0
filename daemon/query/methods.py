"""The control method ``query``, and how query values travel (``to_wire``)."""

from __future__ import annotations

import datetime
import decimal
import time
import uuid
from typing import Any

from daemon.node import Node
from daemon.query import cached
from daemon.query.limits import QUERY_ERRORS, QueryLimits, control_error
from daemon.query.sandbox import QueryRejected, check_query
from daemon.store.database import Store
from protocol.control import ControlError, param


async def query(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Run a read-only SELECT over the replicated tables (answered from the result cache
    when it holds this query at the current database CID)."""
    sql = param(params, "sql", str)
    limits = QueryLimits.of(node.config, max_rows_param(params))
    hit = await cached.lookup(node, sql, limits.max_rows, params.get("cache") is not False)
    if hit is not None:
        return hit
    started = time.perf_counter()

    def run(store: Store) -> cached.Executed:
        # Checking and converting are CPU work: off the event loop, in a query worker.
        check_query(sql)
        return cached.execute(store, sql, limits, to_wire)

    try:
        done = await node.query(run)
    except QUERY_ERRORS as exc:
        node.metrics.inc("queries_rejected" if isinstance(exc, QueryRejected) else "queries_failed")
        raise control_error(exc, limits) from exc
    node.metrics.inc("queries")
    elapsed_ms = (time.perf_counter() - started) * 1000
    node.metrics.observe("query_ms", elapsed_ms)
    result = {"columns": done.columns, "rows": done.rows, "elapsed_ms": round(elapsed_ms, 3)}
    return cached.remember(node, sql, limits.max_rows, result, done)


def max_rows_param(params: dict[str, Any]) -> int | None:
    """The optional ``max_rows`` parameter: a positive integer (capped by the config)."""
    value = param(params, "max_rows", int, required=False)
    if value is not None and value < 1:
        raise ControlError("bad_request", f"max_rows must be a positive integer, got {value}")
    return value  # type: ignore[no-any-return]


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
