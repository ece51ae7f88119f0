"""Per-query resource limits, and the errors a query that hits one gets.

- Memory: DuckDB's ``memory_limit`` for the whole database (default: a quarter of the
  machine's memory, ``daemon.config``), and each query cursor's
  ``operator_memory_limit`` (``query_memory_limit``) for its sorts and hash tables,
  beyond which it spills to ``<data_dir>/duckpeer.tmp`` (at most ``max_temp_bytes``)
  or fails. What DuckDB does not account for is bounded statically
  (``daemon.query.sizes``) and by the memory guard (``daemon.query.guard``).
- Results: at most ``query_max_rows`` rows and ``query_max_result_bytes`` bytes, no
  value above ``query_max_value_bytes``; fetched and converted in chunks, so an
  oversize result stops early and the conversion (which holds the GIL) never blocks
  the event loop for long.
- Time: ``query_timeout`` (``daemon.store.running``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from daemon.config import Config
from daemon.node import PYTHON_WORK, QueryBusy
from daemon.query.rejected import QueryRejected
from daemon.store.database import Store, StoreError
from daemon.store.running import QueryStopped
from protocol.control import ControlError

FETCH_ROWS = 2048  # one DuckDB vector: converting it holds the GIL for well under 1 ms
VALUE_OVERHEAD = 9  # msgpack header of a value, rounded up


class ResultTooLarge(StoreError):
    """The result has more rows, bytes or larger values than the limits allow."""


@dataclass(frozen=True)
class QueryLimits:
    """What one query may use."""

    max_rows: int
    max_bytes: int
    max_value_bytes: int
    timeout: float
    memory_bytes: int

    @classmethod
    def of(cls, config: Config, max_rows: int | None = None) -> QueryLimits:
        """The configured limits, with a row cap no larger than the configured one."""
        rows = config.query_max_rows if max_rows is None else min(max_rows, config.query_max_rows)
        return cls(
            rows,
            config.query_max_result_bytes,
            min(config.query_max_value_bytes, config.query_max_result_bytes),
            config.query_timeout,
            config.query_memory_bytes,
        )


def store_settings(config: Config) -> dict[str, Any]:
    """DuckDB settings of the daemon's database that bound every query."""
    return {
        "memory_limit": f"{config.memory_limit_bytes}B",
        "temp_directory": str(temp_directory(config)),
        "max_temp_directory_size": f"{config.max_temp_bytes}B",
    }


def temp_directory(config: Config) -> Path:
    """Where DuckDB spills (inside the data dir: the service may write only there)."""
    return config.data_dir / "duckpeer.tmp"


def query_cursor(store: Store, limits: QueryLimits) -> duckdb.DuckDBPyConnection:
    """A new cursor whose sorts and hash tables are bounded by ``limits.memory_bytes``."""
    cur = store.cursor()
    cur.execute(f"SET operator_memory_limit = '{limits.memory_bytes}B'")
    return cur


def fetch_rows(
    cur: duckdb.DuckDBPyConnection, limits: QueryLimits, convert: Callable[[Any], Any]
) -> list[list[Any]]:
    """The rows of the query running on ``cur``, converted, within ``limits``."""
    rows: list[list[Any]] = []
    size = 0
    while True:
        with PYTHON_WORK:  # one slice at a time (see daemon.node)
            chunk = cur.fetchmany(FETCH_ROWS)
            if len(rows) + len(chunk) > limits.max_rows:
                raise ResultTooLarge(f"result has more than {limits.max_rows} rows (limit)")
            for raw in chunk:
                row = [convert(v) for v in raw]
                size += sum(value_size(v, limits.max_value_bytes) for v in row)
                rows.append(row)
        if not chunk:
            break
        if size > limits.max_bytes:
            raise ResultTooLarge(
                f"result larger than {limits.max_bytes} bytes (query_max_result_bytes)"
            )
    return rows


def value_size(value: Any, max_value_bytes: int) -> int:
    """About the msgpack size of a converted value; ResultTooLarge above the value limit."""
    if isinstance(value, str | bytes):
        size = len(value)
    elif isinstance(value, list):
        size = sum(value_size(v, max_value_bytes) for v in value)
    elif isinstance(value, dict):
        size = sum(value_size(k, max_value_bytes) + value_size(v, max_value_bytes)
                   for k, v in value.items())  # fmt: skip
    else:
        return VALUE_OVERHEAD
    if size > max_value_bytes:
        raise ResultTooLarge(
            f"a result value is larger than {max_value_bytes} bytes (query_max_value_bytes)"
        )
    return size + VALUE_OVERHEAD


def control_error(exc: BaseException, limits: QueryLimits) -> ControlError:
    """The control-socket error for a query that failed with ``exc``."""
    if isinstance(exc, QueryRejected):
        return ControlError("bad_request", str(exc))
    if isinstance(exc, QueryBusy):
        return ControlError("busy", str(exc))
    if isinstance(exc, QueryStopped):
        return ControlError("resource_limit", str(exc))
    if isinstance(exc, duckdb.InterruptException):
        return ControlError("timeout", f"query exceeded {limits.timeout} s (query_timeout)")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return ControlError("resource_limit", f"query ran out of memory: {_first_line(exc)}")
    return ControlError("bad_request", _first_line(exc))


QUERY_ERRORS = (QueryRejected, StoreError, duckdb.Error)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
