"""``peerctl watch SQL``: the query's rows, then each change as writes arrive."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from peerctl.client import Client
from peerctl.output import print_table

MARKS = {"added": "+", "changed": "~", "removed": "-"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("watch", parents=[common],
                       help="a query's rows, then every change to them, live")  # fmt: skip
    p.set_defaults(run=cmd_watch)
    p.add_argument("sql")


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    """Print until Ctrl-C (exit 0) or until the daemon ends the stream."""
    try:
        columns: list[str] = []
        for event in client.watch(args.sql):
            if args.json:
                print(json.dumps(event, sort_keys=True, default=str), flush=True)
            else:
                columns = _print(event, columns)
    except KeyboardInterrupt:
        return 0
    return 0


def _print(event: dict[str, Any], columns: list[str]) -> list[str]:
    kind = event["event"]
    if kind == "snapshot":
        print_table(event["columns"], event["rows"])
        print(f"-- watching ({len(event['rows'])} rows at {event['db_cid'][:16]}…); Ctrl-C stops",
              flush=True)  # fmt: skip
        return list(event["columns"])
    if kind == "lagged":
        print(f"-- fell behind: {event['dropped']} changes skipped, rows follow again",
              file=sys.stderr, flush=True)  # fmt: skip
        return columns
    if kind == "error":
        print(f"-- the query failed: {event['error']}", file=sys.stderr, flush=True)
        return columns
    origins = ",".join(o[-8:] for o in event.get("origins", [])) or "?"
    cells = "  ".join(f"{c}={v}" for c, v in zip(columns, event["row"], strict=False))
    print(f"{MARKS.get(kind, '?')} {cells}   (from {origins})", flush=True)
    return columns
