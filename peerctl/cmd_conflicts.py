"""``peerctl conflicts list | show ID | resolve ID (--take V | --values JSON)``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from peerctl.client import Client
from peerctl.output import print_fields, print_json, print_table
from peerctl.usage import UsageError

EXIT_OK, EXIT_USAGE = 0, 2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``conflicts`` command group."""
    p = sub.add_parser("conflicts", parents=[common], help="open conflicts and their resolution")
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    q = actions.add_parser("list", parents=[common], help="open conflicts and table strategies")
    q.add_argument("--table")
    q.set_defaults(run=cmd_list)
    q = actions.add_parser("show", parents=[common], help="every version of one conflict")
    q.add_argument("id", help="conflict id or TABLE/KEY")
    q.set_defaults(run=cmd_show)
    q = actions.add_parser("resolve", parents=[common], help="close a conflict everywhere")
    q.add_argument("id", help="conflict id or TABLE/KEY")
    how = q.add_mutually_exclusive_group(required=True)
    how.add_argument("--take", metavar="ORIGIN_OR_VERSION", help="keep this version whole")
    how.add_argument("--values", metavar="JSON", help='set columns, e.g. \'{"modality": "text"}\'')
    q.set_defaults(run=cmd_resolve)


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    """Print open conflicts, one line each."""
    result = client.call("conflicts_list", table=args.table)
    if args.json:
        print_json(result)
        return EXIT_OK
    rows = [
        [c["id"], c["table"], c["key"], len(c["versions"]),
         ", ".join(v["origin"][-8:] + ("(del)" if v["op"] == "delete" else "")
                   for v in c["versions"])]
        for c in result["conflicts"]
    ]  # fmt: skip
    print_table(["id", "table", "key", "versions", "origins"], rows)
    strategies = ", ".join(f"{t}={s}" for t, s in sorted(result["strategies"].items()))
    print(f"({len(rows)} open; strategies: {strategies})")
    return EXIT_OK


def cmd_show(client: Client, args: argparse.Namespace) -> int:
    """Print every version of one conflict with its values."""
    conflict = client.conflict(args.id)
    if args.json:
        print_json(conflict)
        return EXIT_OK
    print_fields([("id", conflict["id"]), ("table", conflict["table"]),
                  ("key", conflict["key"]), ("visible", conflict["visible"])])  # fmt: skip
    for v in conflict["versions"]:
        values = "deleted" if v["op"] == "delete" else json.dumps(v["values"], sort_keys=True)
        print(f"  {v['version']}  {values}")
    return EXIT_OK


def cmd_resolve(client: Client, args: argparse.Namespace) -> int:
    """Resolve by ``--take`` or ``--values``; prints the resolving changeset's CID."""
    values = None
    if args.values is not None:
        try:
            values = json.loads(args.values)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--values is not JSON: {exc.msg}") from exc
        if not isinstance(values, dict):
            raise UsageError("--values wants a JSON object of column: value")
    result = client.resolve_conflict(args.id, take=args.take, values=values)
    print_json(result) if args.json else print(result["cid"])
    return EXIT_OK
