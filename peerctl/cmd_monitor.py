"""``peerctl metrics | alerts | health | top | verify | report``: the performance monitor.

Exit codes beyond the usual: ``health`` exits 1 when the daemon is unhealthy (and,
with ``--strict``, when degraded); ``verify`` exits 1 when the reachable peers have not
converged or two peers diverge.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from peerctl.client import Client
from peerctl.output import print_json, print_table
from peerctl.usage import float_in

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the monitor's subcommands."""
    p = sub.add_parser(
        "metrics",
        parents=[common],
        help="metric summaries and trends; 'metrics record NAME VALUE' stores a custom value",
    )
    p.add_argument("args", nargs="*", metavar="NAME | record NAME VALUE")
    p.add_argument("--window", default="1h", help="summary window (30s, 15m, 1h, 2d)")
    p.add_argument("--tag", action="append", default=[], metavar="K=V", help="with record")
    p.set_defaults(run=cmd_metrics)
    p = sub.add_parser("alerts", parents=[common], help="firing and pending alerts, rules")
    p.set_defaults(run=cmd_alerts)
    p = sub.add_parser("health", parents=[common], help="healthy / degraded / unhealthy")
    p.add_argument("--strict", action="store_true", help="exit 1 when degraded too")
    p.set_defaults(run=cmd_health)
    p = sub.add_parser("top", parents=[common], help="live dashboard: peers, rates, alerts")
    p.add_argument("--interval", type=float_in(0.05, 3600), default=1.0,
                   help="refresh every N seconds")  # fmt: skip
    p.add_argument("--once", action="store_true", help="draw one frame and exit")
    p.set_defaults(run=cmd_top)
    p = sub.add_parser("verify", parents=[common], help="ask every peer for CID and vector")
    p.add_argument("--timeout", type=float_in(0, 60, low_open=True), default=5.0,
                   help="per-peer answer deadline, s")  # fmt: skip
    p.set_defaults(run=cmd_verify)
    p = sub.add_parser("report", parents=[common], help="HTML report with charts")
    p.add_argument("--out", default="report.html", help="HTML file to write")
    p.add_argument("--png-dir", help="also write each chart as a PNG here")
    p.add_argument("--window", default="6h", help="metrics history to chart")
    p.set_defaults(run=cmd_report)


def _usage(message: str) -> int:
    print(f"peerctl: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_metrics(client: Client, args: argparse.Namespace) -> int:
    if args.args[:1] == ["record"]:
        return _record(client, args)
    if len(args.args) > 1:
        return _usage("metrics takes at most one NAME (or: metrics record NAME VALUE)")
    if args.tag:
        return _usage("--tag goes with 'metrics record'")
    result = client.metrics(args.args[0] if args.args else None, args.window)
    if args.json:
        print_json(result)
        return EXIT_OK
    rows = [_summary_row(s) for s in result["series"]]
    print_table(["metric", "tags", "count", "avg", "min", "max", "p50", "p95", "p99",
                 "latest", "trend"], rows)  # fmt: skip
    if not result["enabled"]:
        print("(monitor disabled: [metrics] enabled = false)")
    return EXIT_OK


def _summary_row(series: dict[str, Any]) -> list[Any]:
    s, t = series["summary"], series["trend"]
    tags = ",".join(f"{k}={v}" for k, v in series["tags"].items())
    trend = t["trend"] if t["change_pct"] is None else f"{t['trend']} ({t['change_pct']:+.1f}%)"
    if s is None:
        return [series["name"], tags, 0, None, None, None, None, None, None, None, trend]
    return [series["name"], tags, s["count"], s["avg"], s["min"], s["max"], s["p50"], s["p95"],
            s["p99"], s["latest"], trend]  # fmt: skip


def _record(client: Client, args: argparse.Namespace) -> int:
    if len(args.args) != 3:
        return _usage("usage: peerctl metrics record NAME VALUE [--tag K=V ...]")
    _, name, text = args.args
    try:
        value = float(text)
    except ValueError:
        return _usage(f"VALUE must be a number, got {text!r}")
    if not math.isfinite(value):
        return _usage("VALUE must be finite")
    tags = {}
    for item in args.tag:
        key, sep, val = item.partition("=")
        if not sep or not key:
            return _usage(f"--tag wants K=V, got {item!r}")
        tags[key] = val
    client.record_metric(name, value, tags)
    if args.json:
        print_json({"name": name, "value": value, "tags": tags})
    return EXIT_OK


def cmd_alerts(client: Client, args: argparse.Namespace) -> int:
    result = client.alerts()
    if args.json:
        print_json(result)
        return EXIT_OK
    active = result["firing"] + result["pending"]
    if active:
        print_table(
            ["state", "severity", "alert", "tags", "value", "since"],
            [[a["state"], a["severity"], a["name"],
              ",".join(f"{k}={v}" for k, v in a["tags"].items()), a["value"],
              _ago(a["firing_since"] or a["pending_since"])] for a in active],
        )  # fmt: skip
    else:
        print(f"no alerts firing ({len(result['rules'])} rules)")
    return EXIT_OK


def _ago(t: float | None) -> str:
    return "" if t is None else f"{max(0.0, time.time() - t):.0f}s ago"


def cmd_health(client: Client, args: argparse.Namespace) -> int:
    result = client.health()
    if args.json:
        print_json(result)
    else:
        print(result["status"])
        for reason in result["reasons"]:
            print(f"  - {reason}")
    bad = {"unhealthy", "degraded"} if args.strict else {"unhealthy"}
    return EXIT_FAILED if result["status"] in bad else EXIT_OK


def cmd_top(client: Client, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from peerctl.dashboard import render

    if args.interval <= 0:
        return _usage("--interval must be positive")
    if args.json:
        print_json(client.call("monitor_snapshot"))
        return EXIT_OK
    console = Console()
    if args.once:
        console.print(render(client.call("monitor_snapshot")))
        return EXIT_OK
    with Live(render(client.call("monitor_snapshot")), console=console, screen=False) as live:
        while True:
            time.sleep(args.interval)
            live.update(render(client.call("monitor_snapshot")))


def cmd_verify(client: Client, args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= 60:
        return _usage("--timeout must be in (0, 60] seconds")
    report = client.verify(args.timeout)
    if args.json:
        print_json(report)
    else:
        _print_verify(report)
    return EXIT_OK if report["converged"] else EXIT_FAILED


def _print_verify(report: dict[str, Any]) -> None:
    rows = []
    for p in report["peers"]:
        behind = ", ".join(f"…{o[-8:]}:{n}" for o, n in sorted((p["behind"] or {}).items()))
        rows.append([p["peer_id"], p["source"], p["db_cid"], p["changesets"],
                     p["behind_total"], behind, p["error"] or ""])  # fmt: skip
    print_table(["peer", "source", "db_cid", "changesets", "behind", "behind by origin", "error"],
                rows)  # fmt: skip
    for d in report["divergent"]:
        print(f"DIVERGENCE: same version vector, different CIDs: {d['peers']}")
    verdict = "converged" if report["converged"] else "NOT converged"
    print(f"{verdict}: {report['reachable']} reachable, "
          f"{len(report['unreachable'])} known only from gossip; "
          f"union holds {report['target_changesets']} changesets")  # fmt: skip


def cmd_report(client: Client, args: argparse.Namespace) -> int:
    from pathlib import Path

    from peerctl.report import check_writable, gather, write_report

    out = Path(args.out)
    png_dir = Path(args.png_dir) if args.png_dir else None
    problem = check_writable(out, png_dir)
    if problem:
        return _usage(problem)
    data = gather(client, args.window)
    charts = write_report(data, out, png_dir)
    summary = {"out": str(out), "charts": [c.slug for c in charts], "bytes": out.stat().st_size,
               "png_dir": str(png_dir) if png_dir else None}  # fmt: skip
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {out} ({len(charts)} charts, {summary['bytes']:,} bytes)")
        if png_dir:
            print(f"wrote {len(charts)} PNG files to {png_dir}")
    return EXIT_OK
