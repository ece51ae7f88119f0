"""Control-socket methods: what ``peerctl`` and the Python client can ask the daemon."""

from __future__ import annotations

import datetime
import decimal
import importlib
import time
import uuid
from typing import Any

import duckdb
import structlog
import trio

from daemon.query import cached as querycache

from daemon.net import sync
from daemon.store.blocklog import BlockLogError
from daemon.control.server import ControlError, Handler
from daemon.net.gossip import current_announce
from daemon.net.network import NetworkError
from daemon.node import Node
from daemon.query.sandbox import QueryRejected, check_query
from daemon.store.database import Store, StoreError
from daemon.writes.changes import (
    WriteError,
    delete_change,
    import_change,
    result_changes,
    update_change,
)
from protocol import vv

log = structlog.get_logger("control")

# Method groups in their own modules; each has ``METHODS: dict[str, fn]`` where
# ``fn(node, params)`` is a coroutine returning msgpack-able data.
FEATURE_MODULES: tuple[str, ...] = (
    "daemon.writes.conflict_methods",
    "daemon.kg.methods",
    "daemon.query.cache_methods",
    "daemon.snapshot.methods",
    "daemon.monitor.methods",
    "daemon.distq.methods",
)


def make_handlers(node: Node) -> dict[str, Handler]:
    """The method table served on the control socket."""
    methods = {
        "status": status,
        "peers": peers,
        "connect": connect,
        "sync": sync_now,
        "record": record,
        "ingest": ingest,
        "query": query,
        "update": update,
        "delete": delete,
        "import_rows": import_rows,
    }
    for module in FEATURE_MODULES:
        methods.update(importlib.import_module(module).METHODS)

    def bind(fn: Any) -> Handler:
        async def call(params: dict[str, Any]) -> Any:
            node.metrics.inc("control_requests")
            return await fn(node, params)

        return call

    return {name: bind(fn) for name, fn in methods.items()}


def _param(params: dict[str, Any], name: str, kind: type, required: bool = True) -> Any:
    value = params.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ControlError("bad_request", f"parameter {name!r} must be a {kind.__name__}")
    return value


async def status(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Identity, database CID and vector, addresses, peers, row counts, counters."""
    announce = current_announce(node)
    rows = await node.read(lambda s: s.row_counts())
    return {
        "peer_id": node.peer_id,
        "db_cid": announce.db_cid,
        "version_vector": dict(announce.vector),
        "listen_addrs": list(announce.addrs),
        "peers": len(node.connected_peers()),
        "rows": rows,
        "changesets": sum(announce.vector.values()),
        "hlc": announce.hlc,
        "cluster": node.config.cluster,
        "data_dir": str(node.config.data_dir),
        "db_bytes": node.store.size_bytes(),
        "uptime_s": round(time.time() - node.started_at, 3),
        "metrics": node.metrics.snapshot(),
        "conflict_strategies": {t: s.value for t, s in node.store.strategies.items()},
        "conflicts_open": await node.read(lambda s: s.open_conflict_count()),
    }


async def peers(node: Node, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Known peers: connected or heard of by gossip, with how far apart we are."""
    mine = node.store.vector()
    connected = set(node.connected_peers())
    out = []
    for peer_id in sorted(connected | set(node.peers)):
        state = node.peers.get(peer_id)
        theirs = state.vector if state else {}
        out.append(
            {
                "peer_id": peer_id,
                "connected": peer_id in connected,
                "db_cid": state.db_cid if state else None,
                "version_vector": theirs,
                "they_lack": vv.missing_count(theirs, mine) if state else None,
                "we_lack": vv.missing_count(mine, theirs) if state else None,
                "addrs": list(state.addrs) if state else [],
                "load": state.load if state else None,
                "last_seen": state.last_seen if state else None,
            }
        )
    return out


async def connect(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Dial a peer by multiaddr and pull from it."""
    addr = _param(params, "addr", str)
    assert node.network is not None
    try:
        peer_id = await node.network.connect(addr)
    except NetworkError as exc:
        raise ControlError("unavailable", str(exc)) from exc
    node.request_sync(peer_id)
    return {"peer_id": peer_id}


async def sync_now(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Pull from every connected peer (or one) now; report what moved."""
    wanted = _param(params, "peer", str, required=False)
    targets = [wanted] if wanted else node.connected_peers()
    results = []
    for peer in targets:
        try:
            r = await sync.pull(node, peer)
        except sync.SyncFailed as exc:
            results.append({"peer": peer, "error": str(exc)})
            continue
        results.append(
            {
                "peer": peer,
                "received": r.received,
                "applied": r.applied,
                "bytes": r.bytes,
                "rejected": r.rejected,
                "conflicts": r.conflicts,
            }
        )
    if wanted and "error" not in results[0]:
        results[0]["pushed"] = await _push(node, wanted)
    return {
        "peers": results,
        "pulled": sum(r.get("applied", 0) for r in results),
        "conflicts": sum(r.get("conflicts", 0) for r in results),
        "db_cid": node.store.db_cid(),
    }


async def _push(node: Node, peer: str) -> int:
    """Announce now and wait (a few seconds at most) for ``peer`` to pull what it lacks;
    return how many of our changesets it took, as its gossiped vector shows."""
    mine = node.store.vector()

    def lacking() -> int:
        state = node.peers.get(peer)
        return vv.missing_count(mine, state.vector) if state else 0

    before = lacking()
    node.notify_changed()
    with trio.move_on_after(min(5.0, node.config.sync_read_timeout)):
        while lacking():
            await trio.sleep(0.02)
    return before - lacking()


async def record(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Store one benchmark result; returns its new result id."""
    fields = _param(params, "record", dict)
    columnar = {k: [v] for k, v in fields.items()}
    out = await _write_results(node, columnar)
    return {"result_id": out["result_ids"][0], "cid": out["cid"]}


async def ingest(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Store a chunk of results given column-wise; one changeset per chunk."""
    records = _param(params, "records", dict)
    out = await _write_results(node, records)
    return {"rows": len(out["result_ids"]), "cid": out["cid"], "seq": out["seq"]}


async def _write_results(node: Node, records: dict[str, Any]) -> dict[str, Any]:
    ids: list[str] = []

    def build(store: Any) -> Any:
        changes, new_ids = result_changes(store, records)
        ids.extend(new_ids)
        return changes

    item = await _commit(node, build)
    return {"result_ids": ids, "cid": item.cid, "seq": item.changeset.seq}


async def update(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Change columns of one row by primary key."""
    table, key = _param(params, "table", str), params.get("key")
    values = _param(params, "set", dict)
    item = await _commit(node, lambda s: [update_change(s, table, key, values)])
    return {"cid": item.cid, "seq": item.changeset.seq}


async def delete(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Delete one row by primary key (a replicated tombstone)."""
    table, key = _param(params, "table", str), params.get("key")
    item = await _commit(node, lambda s: [delete_change(s, table, key)])
    return {"cid": item.cid, "seq": item.changeset.seq}


async def _commit(node: Node, build: Any) -> Any:
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
    table = _param(params, "table", str)
    columns = _param(params, "columns", dict)
    try:
        change, skipped = await node.read(lambda s: import_change(s, table, columns))
    except (WriteError, duckdb.Error) as exc:
        node.metrics.inc("writes_rejected")
        raise ControlError("bad_request", str(exc)) from exc
    if change is None:
        return {"table": table, "new": 0, "existing": skipped}
    await _commit(node, lambda _store: [change])
    return {"table": table, "new": len(change), "existing": skipped}


async def query(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Run a read-only SELECT over the replicated tables (answered from the result cache
    when it holds this query at the current database CID)."""
    sql = _param(params, "sql", str)
    max_rows = min(
        int(params.get("max_rows") or node.config.query_max_rows), node.config.query_max_rows
    )
    cached = await querycache.lookup(node, sql, max_rows, params.get("cache") is not False)
    if cached is not None:
        return cached
    started = time.perf_counter()

    def run(store: Store) -> querycache.Executed:
        # Parsing and converting are CPU work: off the event loop, in the reader thread.
        check_query(sql)
        return querycache.execute(store, sql, max_rows, node.config.query_timeout, to_wire)

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
    return querycache.remember(node, sql, max_rows, result, done)


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
