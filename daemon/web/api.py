"""What the dashboard shows, as JSON: read-only calls of the daemon's control methods.

Every value comes from a read method of the control registry (``status``, ``peers``,
``query`` through the sandbox, ``conflicts_list``, ``kg_*``), so the page can see
nothing that ``peerctl`` could not, and can change nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from daemon.control.registry import methods
from daemon.control.server import WRITE_METHODS
from daemon.node import Node
from protocol.control import ControlError

RECENT_SQL = (
    "SELECT CAST(result_id AS VARCHAR) AS result_id, model_id, hardware_id, batch_size, "
    "precision, throughput_items_per_second AS throughput, average_latency_ms AS latency_ms, "
    "created_at FROM performance_results ORDER BY created_at DESC, result_id DESC LIMIT 50"
)
CONFIGS_SQL = (
    "SELECT model_id, hardware_id, count(*) AS n FROM performance_results "
    "GROUP BY ALL ORDER BY n DESC, model_id, hardware_id LIMIT 200"
)
MAX_POINTS = 5000
PEER_FIELDS = ("peer_id", "connected", "db_cid", "we_lack", "they_lack", "last_seen")


class Api:
    """The dashboard's data, from one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        table = methods()
        self._methods = {n: fn for n, fn in table.items() if n not in WRITE_METHODS}

    async def call(self, name: str, **params: Any) -> Any:
        method: Callable[[Node, dict[str, Any]], Awaitable[Any]] = self._methods[name]
        self.node.metrics.inc("web_requests")
        return await method(self.node, params)

    async def overview(self) -> dict[str, Any]:
        """Peers and convergence, row counts, open conflicts."""
        status = await self.call("status")
        peers = await self.call("peers")
        conflicts = (await self.call("conflicts_list"))["conflicts"]
        cids = {status["db_cid"]} | {p["db_cid"] for p in peers if p["db_cid"]}
        return {
            "peer_id": status["peer_id"],
            "db_cid": status["db_cid"],
            "rows": status["rows"],
            "changesets": status["changesets"],
            "peers": [{k: p[k] for k in PEER_FIELDS} for p in peers],
            "converged": len(cids) == 1,
            "conflicts": conflicts,
        }

    async def query(self, sql: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("query", sql=sql, max_rows=MAX_POINTS)
        return {"columns": result["columns"], "rows": result["rows"]}

    async def recent(self) -> dict[str, Any]:
        return await self.query(RECENT_SQL)

    async def configs(self) -> dict[str, Any]:
        return await self.query(CONFIGS_SQL)

    async def series(self, model: str, hardware: str) -> dict[str, Any]:
        """Throughput and latency over time of one model on one hardware, with the
        results the knowledge graph flags as regressions."""
        sql = (
            "SELECT epoch_ms(created_at) AS t, throughput_items_per_second AS throughput, "
            "average_latency_ms AS latency_ms, CAST(result_id AS VARCHAR) AS result_id "
            f"FROM performance_results WHERE model_id = {_literal(model)} "
            f"AND hardware_id = {_literal(hardware)} ORDER BY created_at, result_id"
        )
        points = await self.query(sql)
        regressions = await self.regressions()
        flagged = {r["result_id"]: r["metric"] for r in regressions
                   if r["model_id"] == model and r["hardware_id"] == hardware}  # fmt: skip
        return {**points, "regressions": flagged}

    async def regressions(self) -> list[dict[str, Any]]:
        try:
            found = await self.call("kg_patterns", limit=200)
        except ControlError:  # the graph is still being built at start-up
            return []
        return list(found.get("regressions", []))

    async def similar(self, node_id: str) -> dict[str, Any]:
        return await self.call("kg_similar", node=node_id, top_k=10)  # type: ignore[no-any-return]

    async def compat(self) -> list[dict[str, Any]]:
        return await self.call("kg_compat")  # type: ignore[no-any-return]


def _literal(text: str) -> str:
    """A SQL string literal (the query still goes through the sandbox)."""
    return "'" + text.replace("'", "''") + "'"
