"""``peerctl cache stats|clear`` and the cache / analysis flags of ``peerctl query``:
``--explain-cache`` (how the query is cached), ``--analyze`` (DuckDB's profile with
suggestions) and ``--no-cache`` (always run it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from peerctl.client import Client
from peerctl.output import print_fields, print_json, print_table

EXIT_OK = 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cache`` and extend ``query`` with its flags."""
    p = sub.add_parser("cache", parents=[common], help="result cache: stats or clear")
    p.add_argument("action", choices=["stats", "clear"])
    p.set_defaults(run=cmd_cache)
    query = sub.choices["query"]
    plain: Callable[[Client, argparse.Namespace], int] = query.get_default("run")
    mode = query.add_mutually_exclusive_group()
    mode.add_argument("--explain-cache", action="store_true", help="how the query is cached")
    mode.add_argument("--analyze", action="store_true", help="profile it and suggest fixes")
    mode.add_argument("--no-cache", action="store_true", help="run it even if cached")
    query.set_defaults(run=lambda client, args: cmd_query(client, args, plain))


def cmd_cache(client: Client, args: argparse.Namespace) -> int:
    """``peerctl cache stats`` / ``peerctl cache clear``."""
    if args.action == "clear":
        result = client.cache_clear()
        print_json(result) if args.json else print(f"removed {result['removed']} entries")
        return EXIT_OK
    stats = client.cache_stats()
    if args.json:
        print_json(stats)
    else:
        print_fields([(k, _pct(v) if k == "hit_rate" else v) for k, v in stats.items()])
    return EXIT_OK


def cmd_query(
    client: Client, args: argparse.Namespace, plain: Callable[[Client, argparse.Namespace], int]
) -> int:
    """``peerctl query`` with the cache and analysis flags."""
    if args.explain_cache:
        return _explain(client, args)
    if args.analyze:
        return _analyze(client, args)
    if not args.no_cache:
        return plain(client, args)
    result = client.query(args.sql, args.max_rows, cache=False)
    if args.json:
        print_json([dict(zip(result["columns"], row, strict=True)) for row in result["rows"]])
    else:
        print_table(result["columns"], result["rows"])
        print(f"({len(result['rows'])} rows, {result['elapsed_ms']} ms, not cached)")
    return EXIT_OK


def _explain(client: Client, args: argparse.Namespace) -> int:
    info = client.explain_cache(args.sql, args.max_rows)
    if args.json:
        print_json(info)
        return EXIT_OK
    keys = ("fingerprint", "normalized_sql", "strategy", "requests", "hits", "runs", "cost_ms",
            "cached_at_current_cid", "entry_bytes", "cached_cids", "db_cid",
            "peers_at_same_cid")  # fmt: skip
    fields = [(k, info[k]) for k in keys]
    fields.append(("rewrites", ", ".join(info["rewrites"]) or "-"))
    if info["rewritten_sql"]:
        fields.append(("rewritten_sql", info["rewritten_sql"]))
    print_fields(fields)
    return EXIT_OK


def _analyze(client: Client, args: argparse.Namespace) -> int:
    report = client.analyze(args.sql)
    if args.json:
        print_json(report)
        return EXIT_OK
    rows = [
        [
            "  " * op["depth"] + op["name"],
            op["table"] or "",
            f"{op['ms']:.3f}",
            _pct(op["share"]),
            op["rows"],
        ]
        for op in report["operators"]
    ]
    print_table(["operator", "table", "ms", "share", "rows"], rows)
    print(f"{report['total_ms']} ms wall clock, {report['operator_ms']} ms of operator time "
          f"(share is of that), {report['rows_scanned']:,} rows scanned")  # fmt: skip
    for line in report["suggestions"] or ["no suggestions: nothing in the profile stands out"]:
        print(f"- {line}")
    return EXIT_OK


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"
