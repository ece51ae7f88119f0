"""The subscription service: the store's commit hook feeds the hub of watched queries.

The hook runs in the writer thread after every committed batch (local writes and
replicated changesets alike) and only notes which tables it touched and who wrote it;
the hub re-runs the affected queries in a reader thread, never in the writer's way.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import structlog
import trio

from daemon.node import Node
from daemon.query import cached
from daemon.query.lazysqlglot import exp
from daemon.query.limits import QueryLimits
from daemon.query.methods import to_wire
from daemon.query.sandbox import QueryRejected, validate_query
from daemon.store.database import Store, StoreError
from daemon.watch.hub import Hub, Result, Subscription, WatchError
from protocol.changeset import Decoded
from protocol.schema import TABLES

log = structlog.get_logger("watch")

WATCH_MAX_ROWS = 10_000  # a watched result is held in memory and diffed on every change


def watched_tables(sql: str) -> frozenset[str]:
    """The replicated tables a query reads; WatchError if it is not a valid query."""
    try:
        query = validate_query(sql)
    except QueryRejected as exc:
        raise WatchError(str(exc)) from exc
    return frozenset(t.name for t in query.find_all(exp.Table)) & frozenset(TABLES)


class Watches:
    """One daemon's live subscriptions (kept on ``node.watches`` by :func:`serve`)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.hub = Hub(self._evaluate)

    async def subscribe(self, sql: str) -> Subscription:
        """Watch ``sql``; the subscription starts with the current rows."""
        tables = watched_tables(sql)
        self.node.metrics.inc("watch_subscriptions")
        return await self.hub.subscribe(sql, tables)

    def unsubscribe(self, sub: Subscription) -> None:
        self.hub.unsubscribe(sub)

    async def _evaluate(self, sql: str) -> Result:
        limits = QueryLimits.of(self.node.config, WATCH_MAX_ROWS)

        def run(store: Store) -> cached.Executed:
            return cached.execute(store, sql, limits, to_wire)

        try:
            done = await self.node.read(run)
        except StoreError as exc:
            raise WatchError(f"{exc}; a watched query holds at most {WATCH_MAX_ROWS} rows") from exc
        except duckdb.Error as exc:
            raise WatchError(str(exc).splitlines()[0]) from exc
        self.node.metrics.inc("watch_evaluations")
        return Result(done.columns, [_frozen(row) for row in done.rows], done.db_cid)

    def on_commit(self, token: trio.lowlevel.TrioToken, items: Sequence[Decoded]) -> None:
        """Store hook (writer thread): tell the hub which tables changed, and who wrote."""
        if not self.hub.queries:
            return
        tables = {t.table for item in items for t in item.changeset.tables if len(t)}
        origins = {item.changeset.origin for item in items}
        try:
            token.run_sync_soon(self.hub.note_commit, tables, origins)
        except trio.RunFinishedError:
            pass  # shutting down


def _frozen(row: list[object]) -> tuple[object, ...]:
    """A wire row as a hashable tuple (nested lists become tuples)."""
    return tuple(_frozen(v) if isinstance(v, list) else v for v in row)  # type: ignore[arg-type]


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the hub; hooked to the store until cancelled."""
    watches = Watches(node)
    token = trio.lowlevel.current_trio_token()

    def hook(items: Sequence[Decoded], _applied: int) -> None:
        watches.on_commit(token, items)

    node.watches = watches
    node.store.on_commit.append(hook)
    try:
        task_status.started()
        await watches.hub.serve()
    finally:
        node.store.on_commit.remove(hook)
        node.watches = None
