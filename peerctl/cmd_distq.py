"""``peerctl query --distributed``, ``peerctl mapreduce`` and ``peerctl cluster``."""

from __future__ import annotations

import argparse
from typing import Any

from peerctl.client import Client
from peerctl.output import print_fields, print_json, print_table
from peerctl.usage import int_in

STRATEGIES = ("range", "round_robin", "hash")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the distributed flags to ``query``, and the ``mapreduce`` / ``cluster`` commands."""
    query = sub.choices["query"]
    plain_query = query.get_default("run")
    _add_partition_flags(query)
    help_text = "split into map fragments run by peers at our database CID"
    query.add_argument("--distributed", action="store_true", help=help_text)
    explain_text = "with --distributed: show each partition's peer, share and SQL"
    query.add_argument("--explain", action="store_true", help=explain_text)

    def run_query(client: Client, args: argparse.Namespace) -> int:
        if args.distributed:
            return cmd_query_distributed(client, args)
        if args.partition or args.nodes or args.column or args.explain or args.equal_shares:
            from peerctl.usage import UsageError

            raise UsageError("--partition, --nodes, --column, --explain and --equal-shares "
                             "need --distributed")  # fmt: skip
        return plain_query(client, args)  # type: ignore[no-any-return]

    query.set_defaults(run=run_query)
    p = sub.add_parser("mapreduce", parents=[common], help="custom map SQL + reduce SQL job")
    p.set_defaults(run=cmd_mapreduce)
    p.add_argument("--map", required=True, help="SQL run on every partition of the results")
    p.add_argument("--reduce", required=True, help="SQL over the map outputs (table partials)")
    _add_partition_flags(p)
    p = sub.add_parser("cluster", parents=[common], help="nodes, load, CID, replication lag")
    p.set_defaults(run=cmd_cluster)


def _add_partition_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partition", choices=STRATEGIES, help="how rows are split (default range)")
    p.add_argument("--equal-shares", action="store_true",
                   help="the same share for every node, whatever its capacity")  # fmt: skip
    p.add_argument(
        "--nodes", type=int_in(1, 256), help="number of partitions (default: every peer)"
    )
    p.add_argument("--column", help="column of a range partitioning")


def cmd_query_distributed(client: Client, args: argparse.Namespace) -> int:
    result = client.execute_distributed_query(
        args.sql, args.partition or "range", args.nodes, args.column, args.max_rows,
        explain=args.explain, equal_shares=args.equal_shares,
    )  # fmt: skip
    if args.explain:
        return cmd_explain(result, args)
    return cmd_result(result, args)


def cmd_explain(result: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json or not result.get("explain"):
        print_json(result)
        return 0
    print_table(["partition", "peer_id", "share", "sql"],
                [[f["partition"], f["peer_id"], f["share"], f["sql"]]
                 for f in result["fragments"]])  # fmt: skip
    print(f"reduce: {result['reduce_sql']}")
    return 0


def cmd_mapreduce(client: Client, args: argparse.Namespace) -> int:
    result = client.map_reduce(args.map, args.reduce, args.partition or "range", args.nodes,
                               args.column, args.equal_shares)  # fmt: skip
    return cmd_result(result, args)


def cmd_result(result: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        print_json({**_meta(result), "rows": rows})
    else:
        print_table(result["columns"], result["rows"])
        print(_summary(result))
    return 0


def _meta(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("distributed", "reason", "strategy", "partitions", "node_count", "execution_ms",
            "failovers", "attempts", "phases_ms", "partitioning", "node_timings",
            "db_cid")  # fmt: skip
    return {k: result.get(k) for k in keys}


def _summary(result: dict[str, Any]) -> str:
    rows = len(result["rows"])
    if not result["distributed"]:
        return f"({rows} rows, {result['execution_ms']} ms, one node: {result['reason']})"
    failovers = f", {result['failovers']} partitions reassigned" if result["failovers"] else ""
    replans = result.get("attempts", 1) - 1
    replanned = f", planned again {replans}x after writes" if replans else ""
    timings = result.get("node_timings", [])
    read = sum(t.get("row_groups_scanned", 0) for t in timings)
    groups = max((t.get("row_groups_total", 0) for t in timings), default=0)
    scanned = f", {read} row groups read of {groups} per replica" if groups else ""
    return (
        f"({rows} rows, {result['execution_ms']} ms, distributed over "
        f"{result['node_count']} nodes, {result['partitions']} {result['strategy']} "
        f"partitions{scanned}{failovers}{replanned})"
    )


def cmd_cluster(client: Client, args: argparse.Namespace) -> int:
    status = client.get_cluster_status()
    if args.json:
        print_json(status)
        return 0
    print_fields(
        [
            ("db_cid", status["db_cid"]),
            ("total_nodes", status["total_nodes"]),
            ("available_nodes", status["available_nodes"]),
            ("query_nodes", status["query_nodes"]),
        ]
    )
    rows = [
        [n["peer_id"] + (" (self)" if n["self"] else ""), n["available"], n["load"],
         n["same_cid"], n["behind"], n["ahead"], n["last_seen_s"]]
        for n in status["nodes"]
    ]  # fmt: skip
    print_table(["peer_id", "available", "load", "same_cid", "behind", "ahead", "seen_s_ago"],
                rows)  # fmt: skip
    layout = status.get("clustering")
    if layout:
        print(f"this replica: {layout['row_groups']} row groups, key-range scans read "
              f"{layout['amplification']}x the row groups a sorted table needs")  # fmt: skip
    return 0
