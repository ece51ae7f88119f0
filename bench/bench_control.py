"""``status`` while slow queries run: does the control plane still answer at once?

One real daemon holds ``--rows`` sample results. The reference is ``status`` on an idle
daemon; then ``--slow`` client threads each run slow queries back to back (half of them
CPU-bound aggregations over a self-join, half large results that the daemon converts
to Python objects, which holds the GIL), and ``status`` is timed again, side by side in
the same run. Each ``status`` opens a new control connection, as ``peerctl status``
does; the slow clients are processes of their own. Reported: p50/p95/p99/max of both,
the ratio of the p99s, and how many slow queries finished, failed or were refused.

Goal (issue 18): status p99 <= 200 ms with 5 slow queries running (it was 14.9 s).

    .venv/bin/python bench/bench_control.py            # 200k rows, 300 status calls
    .venv/bin/python bench/bench_control.py --quick    # 20k rows, 60 status calls
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import bench_main, bench_parser, ingest_rows, parse_quick, print_table, summary_ms

from daemon.localcluster import LocalCluster, wait_until
from peerctl.client import Client, ClientError

GOAL_P99_MS = 200.0
CPU_QUERY = (  # a self-join aggregation: seconds of DuckDB work, a small result
    "SELECT a.model_id, count(*), avg(a.throughput_items_per_second * b.average_latency_ms) "
    "FROM performance_results a JOIN performance_results b USING (hardware_id, batch_size) "
    "GROUP BY 1"
)
BIG_QUERY = "SELECT * FROM performance_results LIMIT {rows}"  # up to 100k rows, ~20 MB


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_control", "20k rows, 60 status calls")
    p.add_argument("--rows", type=int, default=200_000, help="sample results (default 200k)")
    p.add_argument("--calls", type=int, default=300, help="status calls per phase (default 300)")
    p.add_argument("--slow", type=int, default=5, help="concurrent slow queries (default 5)")
    p.add_argument("--workers", type=int, default=5, help="daemon query_workers (default 5)")
    p.add_argument("--gap-ms", type=float, default=20.0, help="pause between status calls")
    p.add_argument("--kind", choices=["both", "cpu", "big"], default="both",
                   help="slow queries: CPU-bound, large results, or half each")  # fmt: skip
    return parse_quick(p, rows=20_000, calls=60)


def time_status(socket: Path, calls: int, gap_s: float) -> list[float]:
    """Seconds per ``status``, each on a new connection (as ``peerctl status``)."""
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        with Client(socket, timeout=120) as client:
            client.status()
        out.append(time.perf_counter() - started)
        time.sleep(gap_s)
    return out


def slow_client(socket: str, sql: str, stop: Any, counts: Any) -> None:
    """One slow-query client (its own process: decoding large answers holds the GIL,
    which would stall the status timer if it shared a process with it)."""
    with Client(socket, timeout=600) as client:
        while not stop.is_set():
            try:
                client.query(sql, cache=False)
                key = 0
            except ClientError as exc:
                key = 2 if "busy" in str(exc) else 1
            with counts.get_lock():
                counts[key] += 1


class SlowLoad:
    """``n`` client processes running slow queries back to back until stopped."""

    def __init__(self, socket: Path, n: int, big_rows: int, kind: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self._counts = ctx.Array("i", 3)
        sqls = {"cpu": [CPU_QUERY], "big": [BIG_QUERY.format(rows=big_rows)]}.get(
            kind, [CPU_QUERY, BIG_QUERY.format(rows=big_rows)]
        )
        self.procs = [
            ctx.Process(target=slow_client,
                        args=(str(socket), sqls[i % len(sqls)], self.stop, self._counts))
            for i in range(n)
        ]  # fmt: skip

    @property
    def counts(self) -> dict[str, int]:
        """Slow queries finished, failed and refused as busy so far."""
        done, failed, busy = self._counts[:]
        return {"done": done, "failed": failed, "busy": busy}

    def __enter__(self) -> SlowLoad:
        for proc in self.procs:
            proc.start()
        wait_until(lambda: sum(self._counts[:]) >= len(self.procs) or time.sleep(0.5), 600,
                   "every slow client to be running")  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(timeout=600)


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    env = {"DUCKPEER_QUERY_WORKERS": str(args.workers), "DUCKPEER_QUERY_TIMEOUT": "600",
           "DUCKPEER_CACHE_ENABLED": "false"}  # fmt: skip
    with LocalCluster(1, base_dir=base / "c", env=env) as cluster:
        peer = cluster.peers[0]
        with peer.client() as client:
            ingest_rows(client, args.rows, 50_000)
            t0 = time.perf_counter()
            client.query(CPU_QUERY, cache=False)
            cpu_query_s = time.perf_counter() - t0
        gap = args.gap_ms / 1000
        idle = time_status(peer.socket, args.calls, gap)
        with SlowLoad(peer.socket, args.slow, min(args.rows, 100_000), args.kind) as load:
            loaded = time_status(peer.socket, args.calls, gap)
            counts = load.counts
    idle_s, loaded_s = summary_ms(idle), summary_ms(loaded)
    return {
        "rows": args.rows,
        "slow_queries": args.slow,
        "query_workers": args.workers,
        "kind": args.kind,
        "cpu_query_alone_s": round(cpu_query_s, 3),
        "status_idle": idle_s,
        "status_loaded": loaded_s,
        "ratio_p99_loaded_idle": round(loaded_s["p99_ms"] / idle_s["p99_ms"], 2),
        "slow_query_outcomes": counts,
        "goal_p99_ms": GOAL_P99_MS,
        "meets_goal": loaded_s["p99_ms"] <= GOAL_P99_MS,
    }


def report(r: dict[str, Any]) -> None:
    rows = [
        [name, s["n"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]]
        for name, s in (("idle", r["status_idle"]), ("5 slow queries", r["status_loaded"]))
    ]
    print_table(
        f"status, {r['rows']:,} rows, {r['slow_queries']} slow queries, "
        f"query_workers {r['query_workers']} (one CPU query alone: {r['cpu_query_alone_s']} s)",
        ["phase", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        rows,
    )
    verdict = "meets" if r["meets_goal"] else "MISSES"
    print(f"loaded / idle p99: {r['ratio_p99_loaded_idle']}x; goal p99 <= {GOAL_P99_MS} ms: "
          f"{verdict}; slow queries {r['slow_query_outcomes']}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "bench-control-"))
