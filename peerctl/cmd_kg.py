"""``peerctl kg``: similar configurations, patterns, compatibility, export."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from peerctl.client import Client
from peerctl.output import print_json, print_table
from peerctl.usage import float_in, int_in


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``peerctl kg {similar,patterns,compat,export,rebuild}``."""
    kg = sub.add_parser("kg", help="knowledge graph of models, hardware and results")
    kgsub = kg.add_subparsers(dest="kg_command", required=True, parser_class=type(kg))
    p = kgsub.add_parser("similar", parents=[common], help="most similar configurations/models")
    p.add_argument("node", help="model|hardware|batch|precision, or a model id")
    p.add_argument("--top-k", type=int_in(1, 10_000), default=10)
    p.add_argument("--min-similarity", type=float_in(-1.0, 1.0), default=-1.0)
    p.set_defaults(run=cmd_similar)
    p = kgsub.add_parser("patterns", parents=[common], help="speed-ups, scaling, regressions")
    p.add_argument("--limit", type=int_in(1, 100_000), default=20, help="rows per pattern kind")
    p.set_defaults(run=cmd_patterns)
    p = kgsub.add_parser("compat", parents=[common], help="model x hardware compatibility")
    p.set_defaults(run=cmd_compat)
    p = kgsub.add_parser("export", parents=[common], help="write the graph (GraphML or JSON)")
    p.add_argument("--format", choices=["graphml", "json"], default="graphml")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(run=cmd_export)
    p = kgsub.add_parser("rebuild", parents=[common], help="rebuild the graph from the tables")
    p.set_defaults(run=cmd_rebuild)


def _usage(message: str) -> None:
    from peerctl.usage import UsageError

    raise UsageError(message)


def cmd_similar(client: Client, args: argparse.Namespace) -> int:
    if args.top_k < 1:
        _usage("--top-k must be positive")
    if not -1.0 <= args.min_similarity <= 1.0:
        _usage("--min-similarity must be in [-1, 1]")
    result = client.find_similar_benchmarks(args.node, args.top_k, args.min_similarity)
    if args.json:
        print_json(result)
        return 0
    print(f"{result['node']} ({result['kind']}), {result['configs']} configurations")
    columns = ["node", "similarity"]
    if result["kind"] == "config":
        columns += ["throughput", "latency_ms", "memory_mb", "n_results"]
    print_table(columns, [[m.get(c) for c in columns] for m in result["matches"]])
    return 0


def cmd_patterns(client: Client, args: argparse.Namespace) -> int:
    if args.limit < 1:
        _usage("--limit must be positive")
    found = client.detect_performance_patterns(args.limit)
    if args.json:
        print_json(found)
        return 0
    for kind, rows in found.items():
        print(f"\n{kind.replace('_', ' ')} ({len(rows)})")
        if rows:
            print_table(list(rows[0]), [list(r.values()) for r in rows])
    return 0


def cmd_compat(client: Client, args: argparse.Namespace) -> int:
    rows = client.call("kg_compat")
    if args.json:
        print_json(client.create_hardware_compatibility_map())
        return 0
    columns = ["model_id", "hardware_id", "status", "reason", "evidence", "results", "tests"]
    print_table(columns, [[r.get(c) for c in columns] for r in rows])
    return 0


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    from peerctl import kg_export

    graph = client.knowledge_graph()
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "graphml":
            kg_export.write_graphml(graph, out)
        else:
            print_json(kg_export.node_link(graph), out)
    finally:
        if args.output:
            out.close()
    if args.output:
        counts = {"nodes": len(graph["nodes"]["id"]), "edges": len(graph["edges"]["src"])}
        if args.json:
            print_json({"file": args.output, **counts})
        else:
            print(f"wrote {counts['nodes']} nodes and {counts['edges']} edges to {args.output}",
                  file=sys.stderr)  # fmt: skip
    return 0


def cmd_rebuild(client: Client, args: argparse.Namespace) -> int:
    figures = client.populate_from_benchmarks()
    if args.json:
        print_json(figures)
    else:
        print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0
