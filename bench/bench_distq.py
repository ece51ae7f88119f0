"""Distributed queries over a 3-peer loopback cluster: coordination overhead and a big
aggregation, single node vs distributed.

1. Overhead: ``SELECT COUNT(*)`` over a small table, alternately as a local query and
   as a distributed one (3 partitions, one per peer). Overhead = distributed minus
   local execution time (both measured inside the coordinator daemon), per pair.
   Goal (issue): <= 10 ms (the earlier system claimed 10-50 ms, with simulated peers).
2. Aggregation: ``--rows`` results (default 10M) ingested on peer0 through the normal
   ingest path and replicated to the others; a GROUP BY aggregation run single-node
   and distributed with each partition strategy.

Every peer holds a full replica, so a partition is a filter over the whole table: on
this 2-core machine three daemons share two cores, and the figures say what that costs.

    .venv/bin/python bench/bench_distq.py            # 10M rows (slow: ingest + replication)
    .venv/bin/python bench/bench_distq.py --quick    # 200k rows, 40 overhead pairs
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import bench_main, bench_parser, parse_quick, percentile, print_table, sample_columns

from daemon.localcluster import LocalCluster, wait_until
from peerctl.client import Client, RequestFailed

GOAL_OVERHEAD_MS = 10.0
TINY_SQL = "SELECT COUNT(*) FROM performance_results"
AGG_SQL = (
    "SELECT model_id, hardware_id, precision, COUNT(*) AS n, "
    "AVG(throughput_items_per_second) AS tput, MAX(average_latency_ms) AS worst "
    "FROM performance_results GROUP BY ALL"
)
CHUNK = 50_000
# A partition of a 10M-row round_robin sorts the whole table on each peer: give queries
# and peers time (the defaults, 30 s and 30 s, are for interactive use).
LONG_QUERIES = {"DUCKPEER_QUERY_TIMEOUT": "600", "DUCKPEER_DISTQ_DEADLINE": "600"}


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_distq", "200k rows, 40 pairs")
    p.add_argument("--rows", type=int, default=10_000_000, help="rows for the aggregation")
    p.add_argument("--tiny-rows", type=int, default=1000, help="rows for the overhead part")
    p.add_argument("--pairs", type=int, default=200, help="local/distributed pairs measured")
    p.add_argument("--repeats", type=int, default=2, help="runs of each big aggregation")
    return parse_quick(p, rows=200_000, pairs=40, repeats=2)


def ingest(client: Client, rows: int, offset: int = 0) -> float:
    """Ingest ``rows`` sample results in chunks (one changeset each); seconds taken."""
    started = time.perf_counter()
    base = sample_columns(min(rows, 100_000), seed=7 + offset)
    left, in_flight = rows, 0
    while left > 0:
        take = min(CHUNK, left)
        start = (rows - left) % len(base["model_name"])
        chunk = {k: (v[start:] + v)[:take] for k, v in base.items()}
        client.send("ingest", records=chunk)  # one chunk stored while the next is built
        in_flight += 1
        if in_flight > 1:
            client.receive()
            in_flight -= 1
        left -= take
    for _ in range(in_flight):
        client.receive()
    return time.perf_counter() - started


def wait_ready(cluster: LocalCluster, timeout: float) -> float:
    """Converged, and the coordinator sees every peer at its CID; seconds waited."""
    started = time.perf_counter()
    cluster.wait_converged(timeout)
    size = len(cluster.peers)
    wait_until(lambda: cluster.peers[0].call("cluster_status")["query_nodes"] == size,
               timeout, "every peer at the coordinator's CID")  # fmt: skip
    return time.perf_counter() - started


def overhead(client: Client, pairs: int) -> dict[str, Any]:
    """Alternate local and distributed runs of a tiny query."""
    for _ in range(5):  # warm up plans, streams, caches
        client.query(TINY_SQL)
        client.execute_distributed_query(TINY_SQL)
    local, dist, e2e, diffs = [], [], [], []
    for _ in range(pairs):
        lo = client.query(TINY_SQL)["elapsed_ms"]
        started = time.perf_counter()
        d = client.execute_distributed_query(TINY_SQL)
        e2e.append((time.perf_counter() - started) * 1000)
        assert d["distributed"] and d["rows"] == client.query(TINY_SQL)["rows"]
        local.append(lo)
        dist.append(d["execution_ms"])
        diffs.append(d["execution_ms"] - lo)
    return {
        "local_ms": _stats(local),
        "distributed_ms": _stats(dist),
        "distributed_e2e_ms": _stats(e2e),
        "overhead_ms": _stats(diffs),
        "node_count": d["node_count"],
    }


def _stats(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p99": round(percentile(ms, 99), 2),
        "mean": round(statistics.fmean(ms), 2),
    }


def aggregation(client: Client, repeats: int) -> dict[str, Any]:
    """The big GROUP BY single-node and distributed; medians of ``repeats`` runs."""
    expected = sorted(map(str, client.query(AGG_SQL)["rows"]))
    out: dict[str, Any] = {}
    runs = [("single node", lambda: client.query(AGG_SQL))] + [
        (s, lambda s=s: client.execute_distributed_query(AGG_SQL, partition_strategy=s))
        for s in ("hash", "round_robin", "range")
    ]
    for label, fn in runs:
        times, timings = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            try:
                res = fn()
            except RequestFailed as exc:
                out[label] = {"error": str(exc)}
                print(f"  {label}: failed: {exc}", flush=True)
                break
            times.append(time.perf_counter() - started)
            timings = res.get("node_timings", [])
            assert len(res["rows"]) == len(expected)
        if not times:
            continue
        out[label] = {
            "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times],
            "node_ms": [round(t["ms"], 1) for t in timings],
        }
        print(f"  {label}: {out[label]}", flush=True)
    return out


def run(args: argparse.Namespace, _workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with LocalCluster(3, env=LONG_QUERIES) as cluster:
        client = cluster.peers[0].client()
        try:
            ingest(client, args.tiny_rows)
            wait_ready(cluster, 60)
            res["overhead"] = overhead(client, args.pairs)
            print(f"  overhead: {res['overhead']['overhead_ms']}", flush=True)
            res["ingest_s"] = round(ingest(client, args.rows - args.tiny_rows, offset=1), 1)
            print(f"  ingested {args.rows:,} rows in {res['ingest_s']} s", flush=True)
            res["replicate_wait_s"] = round(wait_ready(cluster, 3600), 1)
            print(f"  replicated after {res['replicate_wait_s']} s more", flush=True)
            res["rows"] = args.rows
            res["aggregation"] = aggregation(client, args.repeats)
        finally:
            client.close()
    res["goal_overhead_ms"] = GOAL_OVERHEAD_MS
    return res


def report(res: dict[str, Any]) -> None:
    o = res["overhead"]
    print_table(
        f"tiny query over {o['node_count']} peers (ms, measured in the coordinator)",
        ["what", "n", "p50", "p99", "mean"],
        [[k, v["n"], v["p50"], v["p99"], v["mean"]] for k, v in o.items() if isinstance(v, dict)],
    )
    print(
        f"coordination overhead p50 {o['overhead_ms']['p50']} ms "
        f"(goal <= {GOAL_OVERHEAD_MS:.0f} ms), p99 {o['overhead_ms']['p99']} ms"
    )
    print_table(
        f"aggregation over {res['rows']:,} rows (ingest {res['ingest_s']} s, "
        f"replication wait {res['replicate_wait_s']} s)",
        ["how", "median s", "runs s", "per-node ms"],
        [
            [k, v.get("median_s"), v.get("runs_s", v.get("error")), v.get("node_ms")]
            for k, v in res["aggregation"].items()
        ],
    )


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dpdistq-"))
