"""Control methods that write: record, ingest, update, delete, import_rows."""

from __future__ import annotations

import time
from typing import Any

import duckdb
import structlog

from daemon.node import Node
from daemon.store.blocklog import BlockLogError
from daemon.store.database import StoreError
from daemon.writes import bulk
from daemon.writes.changes import (
    WriteError,
    delete_change,
    import_change,
    result_changes,
    update_change,
)
from protocol.control import ControlError, param

log = structlog.get_logger("control")


async def record(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Store one benchmark result; returns its new result id."""
    fields = param(params, "record", dict)
    columnar = {k: [v] for k, v in fields.items()}
    out = await _write_results(node, columnar)
    return {"result_id": out["result_ids"][0], "cid": out["cid"]}


async def ingest(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Store a chunk of results, one changeset per chunk: ``arrow`` (an Arrow IPC stream,
    what peerctl sends: checked and built column-wise) or ``records`` (msgpack columns).
    ``begin`` alone stores nothing: it loads the Arrow path, which a caller asks for
    before it reads its file so that the daemon's import overlaps the caller's."""
    if params.get("begin") is True and len(params) == 1:
        await node.read(lambda _store: bulk.load())
        return {"rows": 0}
    if params.get("arrow") is not None:
        raw = param(params, "arrow", bytes)
        started = time.perf_counter()
        try:
            prepared = await node.read(lambda store: bulk.prepare(store, raw))
        except WriteError as exc:
            node.metrics.inc("writes_rejected")
            raise ControlError("bad_request", str(exc)) from exc
        ready = time.perf_counter()
        item = await commit(node, lambda store: bulk.changes(store, prepared))
        log.debug("ingest chunk", rows=prepared.rows, prepare_ms=round((ready - started) * 1e3),
                  commit_ms=round((time.perf_counter() - ready) * 1e3))  # fmt: skip
        return {"rows": prepared.rows, "cid": item.cid, "seq": item.changeset.seq}
    records = param(params, "records", dict)
    out = await _write_results(node, records)
    return {"rows": len(out["result_ids"]), "cid": out["cid"], "seq": out["seq"]}


async def _write_results(node: Node, records: dict[str, Any]) -> dict[str, Any]:
    ids: list[str] = []

    def build(store: Any) -> Any:
        changes, new_ids = result_changes(store, records)
        ids.extend(new_ids)
        return changes

    item = await commit(node, build)
    return {"result_ids": ids, "cid": item.cid, "seq": item.changeset.seq}


async def update(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Change columns of one row by primary key."""
    table, key = param(params, "table", str), params.get("key")
    values = param(params, "set", dict)
    item = await commit(node, lambda s: [update_change(s, table, key, values)])
    return {"cid": item.cid, "seq": item.changeset.seq}


async def delete(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Delete one row by primary key (a replicated tombstone)."""
    table, key = param(params, "table", str), params.get("key")
    item = await commit(node, lambda s: [delete_change(s, table, key)])
    return {"cid": item.cid, "seq": item.changeset.seq}


async def commit(node: Node, build: Any) -> Any:
    """Commit the row changes ``build(store)`` returns as our next changeset; write
    errors become ControlErrors (``bad_request`` for the caller's values, ``internal``
    for the store's own failures)."""
    try:
        return await node.commit_local(build)
    except WriteError as exc:
        node.metrics.inc("writes_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    except StoreError as exc:
        node.metrics.inc("writes_rejected")
        raise ControlError("bad_request", f"write refused: {exc}") from exc
    except (duckdb.Error, BlockLogError, OSError, RuntimeError) as exc:
        # the store failed, not the request: say so, log the cause
        node.metrics.inc("writes_failed")
        log.exception("write failed", error=f"{type(exc).__name__}: {exc}")
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ControlError("internal", f"write failed: {detail}") from exc


async def import_rows(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Store rows of one table with their own keys (``peerctl import-db``), skipping keys
    that already exist, so importing the same data twice adds nothing."""
    table = param(params, "table", str)
    columns = param(params, "columns", dict)
    try:
        change, skipped = await node.read(lambda s: import_change(s, table, columns))
    except (WriteError, duckdb.Error) as exc:
        node.metrics.inc("writes_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    if change is None:
        return {"table": table, "new": 0, "existing": skipped}
    await commit(node, lambda _store: [change])
    return {"table": table, "new": len(change), "existing": skipped}


METHODS = {
    "record": record,
    "ingest": ingest,
    "update": update,
    "delete": delete,
    "import_rows": import_rows,
}
