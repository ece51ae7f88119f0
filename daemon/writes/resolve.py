"""Open conflicts: list them, show one, and build the change that resolves one.

A resolution is an ordinary row change whose base is *every* head of the conflict, so
when it arrives anywhere it supersedes them all and the conflict closes on every peer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from daemon.writes.changes import WriteError, coerce
from protocol.changeset import Op, TableChanges, Version
from protocol.conflicts import conflict_id
from protocol.schema import TABLES

if TYPE_CHECKING:
    from daemon.store.database import Store


def list_conflicts(store: Store, table: str | None = None) -> list[dict[str, Any]]:
    """Every open conflict (optionally of one table), with all its versions."""
    sql = "SELECT tbl, pk, _hlc, _origin, op, data FROM store.conflict_heads"
    params: list[Any] = []
    if table is not None:
        sql += " WHERE tbl = ?"
        params.append(table)
    rows = store.cursor().execute(sql + " ORDER BY tbl, pk, _hlc, _origin", params)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for tbl, pk, hlc, origin, op, data in rows.fetchall():
        entry = out.setdefault((tbl, pk), {"id": conflict_id(tbl, pk), "table": tbl, "key": pk,
                                            "versions": []})  # fmt: skip
        entry["versions"].append(
            {
                "version": f"{hlc}:{origin}",
                "origin": origin,
                "hlc": hlc,
                "op": "delete" if op == Op.DELETE else "upsert",
                "values": None if data is None else json.loads(data),
            }
        )
    for entry in out.values():
        visible = max(entry["versions"], key=lambda v: (v["hlc"], v["origin"]))
        entry["visible"] = visible["version"]
    return list(out.values())


def find_conflict(store: Store, ident: str) -> dict[str, Any]:
    """A conflict by id, or by ``TABLE/KEY``; WriteError if there is none."""
    table, sep, key = ident.partition("/")
    wanted = table if sep and table in TABLES else None
    for entry in list_conflicts(store, wanted):
        if entry["id"] == ident or (sep and (entry["table"], entry["key"]) == (table, key)):
            return entry
    raise WriteError(f"no open conflict {ident!r}")


def resolve_change(
    store: Store,
    ident: str,
    take: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> TableChanges:
    """The change closing conflict ``ident``: one version taken whole (``take``: its origin,
    ``hlc`` or ``hlc:origin``), or the visible version with ``values`` set on top."""
    if (take is None) == (values is None):
        raise WriteError("resolve wants exactly one of take or values")
    entry = find_conflict(store, ident)
    table, schema = entry["table"], TABLES[entry["table"]]
    bases: tuple[Version, ...] = tuple(sorted((v["hlc"], v["origin"]) for v in entry["versions"]))
    chosen = _pick(entry, take if take is not None else entry["visible"])
    key = entry["key"]
    if values is None and chosen["op"] == "delete":
        return TableChanges(table, [schema.key], bytes([Op.DELETE]), [bases], [1], [[key]])
    row = dict(chosen["values"] or {schema.key: key})
    kinds = dict(schema.columns)
    for name, value in (values or {}).items():
        if name not in kinds or name == schema.key:
            raise WriteError(f"{table} has no settable column {name!r}")
        row[name] = coerce(kinds[name], value, name)
    names = list(schema.column_names)
    full = (1 << len(names)) - 1
    data = [[key if n == schema.key else row.get(n)] for n in names]
    return TableChanges(table, names, bytes([Op.UPSERT]), [bases], [full], data)


def _pick(entry: Mapping[str, Any], take: str) -> dict[str, Any]:
    versions = entry["versions"]
    for matcher in (
        lambda v: v["version"] == take,
        lambda v: str(v["hlc"]) == take,
        lambda v: v["origin"] == take,
    ):
        found = [v for v in versions if matcher(v)]
        if len(found) == 1:
            return dict(found[0])
        if len(found) > 1:
            raise WriteError(f"{take!r} matches several versions; give hlc:origin")
    raise WriteError(f"conflict {entry['id']} has no version {take!r}")
