"""Control methods for open conflicts: list, show, resolve (see daemon/writes/resolve.py)."""

from __future__ import annotations

from typing import Any

from daemon.node import Node
from daemon.writes.changes import WriteError
from daemon.writes.methods import commit
from daemon.writes.resolve import find_conflict, list_conflicts, resolve_change
from protocol.control import ControlError, param
from protocol.schema import TABLES


async def conflicts_list(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Open conflicts (optionally of one table) and the strategy of every table."""
    table = param(params, "table", str, required=False)
    if table is not None and table not in TABLES:
        raise ControlError("bad_request", f"unknown table {table!r}")
    found = await node.read(lambda s: list_conflicts(s, table))
    return {
        "conflicts": found,
        "strategies": {t: s.value for t, s in node.store.strategies.items()},
    }


async def conflicts_show(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """One conflict by id or ``TABLE/KEY``, with every concurrent version."""
    ident = param(params, "id", str)
    try:
        return await node.read(lambda s: find_conflict(s, ident))
    except WriteError as exc:
        raise ControlError("not_found", str(exc)) from exc


async def conflicts_resolve(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Resolve a conflict by taking one version or setting values; replicates like any write."""
    ident = param(params, "id", str)
    take = param(params, "take", str, required=False)
    values = param(params, "values", dict, required=False)
    item = await commit(node, lambda s: [resolve_change(s, ident, take, values)])
    return {"id": ident, "cid": item.cid, "seq": item.changeset.seq}


METHODS = {
    "conflicts_list": conflicts_list,
    "conflicts_show": conflicts_show,
    "conflicts_resolve": conflicts_resolve,
}
