"""Distributed queries that split the work (issue 17): coordination overhead, what each
fragment costs against the single-node query, and how clustering keeps slices prunable.

1. Coordination: ``SELECT COUNT(*)`` over 1,000 rows, alternately as a local query and
   distributed over 3 peers; overhead = distributed minus local execution time (both
   measured inside the coordinator daemon), per pair. Goal: p50 <= 10 ms.
2. Split: ``--rows`` results (default 10M) ingested on peer0 of a 4-peer cluster and
   replicated. For N = 2, 3, 4 and each strategy (range, round_robin, hash), side by
   side in one run: the single-node GROUP BY alone; each of the N fragments the
   coordinator plans, run alone one after the other on peer0 (what N idle hosts would
   each spend); slowest fragment / single (goal <= 1.3/N); the speedup N hosts would
   give, single / (slowest fragment + coordination p50) (goal >= 0.75 N); and the wall
   time measured here, N daemons sharing this machine's cores, with the shares the
   capacity model chose here. Plus what each node's slice read (rows, row groups of the
   replica) from ``node_timings``.
3. Clustering (in process, no daemons): a replica applies 50k-row changesets of two
   writers interleaved, one writer's clock two hours behind. Row groups a 1/3 key slice
   reads and its GROUP BY time against the whole table, before and after a re-cluster
   pass (daemon/store/cluster.py), and the pass's own time.

Absolute times on a shared machine are inflated; ratios are measured side by side.

    .venv/bin/python bench/bench_distq.py            # 10M rows, 2M-row clustering part
    .venv/bin/python bench/bench_distq.py --quick    # 200k rows, 40 pairs, 500k clustering
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import (
    bench_main,
    bench_parser,
    ingest_rows,
    parse_quick,
    percentile,
    print_table,
    sample_chunks,
)

from daemon.distq.keymap import KeyMaps
from daemon.distq.keyspace import STRATEGIES, key_ranges
from daemon.distq.plan import plan_query
from daemon.distq.recluster import layout, recluster_pass
from daemon.distq.slices import Partitioning, fragment_sql, slice_condition
from daemon.localcluster import LocalCluster, wait_until
from daemon.store.database import Store
from daemon.writes.changes import result_changes
from peerctl.client import Client

GOAL_OVERHEAD_MS = 10.0
TINY_SQL = "SELECT COUNT(*) FROM performance_results"
AGG_SQL = (
    "SELECT model_id, hardware_id, precision, COUNT(*) AS n, "
    "AVG(throughput_items_per_second) AS tput, MAX(average_latency_ms) AS worst "
    "FROM performance_results GROUP BY ALL"
)
CHUNK = 50_000
PEERS = 4
# A 10M-row single-node query under load can outlast the interactive defaults (30 s).
LONG_QUERIES = {"DUCKPEER_QUERY_TIMEOUT": "600", "DUCKPEER_DISTQ_DEADLINE": "600"}


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_distq", "200k rows, 40 pairs, 500k clustering rows")
    p.add_argument("--rows", type=int, default=10_000_000, help="rows for the split part")
    p.add_argument("--tiny-rows", type=int, default=1000, help="rows for the overhead part")
    p.add_argument("--pairs", type=int, default=200, help="local/distributed pairs measured")
    p.add_argument("--repeats", type=int, default=3, help="runs of each timed query (median)")
    p.add_argument("--cluster-rows", type=int, default=2_000_000, help="clustering part rows")
    p.add_argument("--parts", default="overhead,split,cluster", help="which parts to run")
    return parse_quick(p, rows=200_000, pairs=40, repeats=2, cluster_rows=500_000)


# -- 1. coordination ------------------------------------------------------------------------


def overhead(client: Client, pairs: int) -> dict[str, Any]:
    """Alternate local and distributed runs of a tiny query over 3 peers."""
    for _ in range(10):  # warm up plans, links, caches, the capacity model
        client.query(TINY_SQL, cache=False)
        client.execute_distributed_query(TINY_SQL, nodes=3)
    local, dist, diffs, phases = [], [], [], []
    for _ in range(pairs):
        lo = client.query(TINY_SQL, cache=False)["elapsed_ms"]
        d = client.execute_distributed_query(TINY_SQL, nodes=3)
        assert d["distributed"] and d["node_count"] == 3, d["node_timings"]
        local.append(lo)
        dist.append(d["execution_ms"])
        diffs.append(d["execution_ms"] - lo)
        phases.append(d["phases_ms"])
    return {
        "local_ms": _stats(local),
        "distributed_ms": _stats(dist),
        "overhead_ms": _stats(diffs),
        "phases_ms_p50": {k: round(statistics.median(p[k] for p in phases), 2) for k in phases[0]},
    }


def _stats(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50": round(percentile(ms, 50), 2), "p99": round(percentile(ms, 99), 2),
            "mean": round(statistics.fmean(ms), 2)}  # fmt: skip


# -- 2. the split ---------------------------------------------------------------------------


def median_ms(fn: Any, repeats: int) -> float:
    return round(statistics.median(fn() for _ in range(repeats)), 1)


def single_ms(client: Client, repeats: int) -> float:
    return median_ms(lambda: client.query(AGG_SQL, cache=False)["elapsed_ms"], repeats)


def split(client: Client, n: int, strategy: str, repeats: int, coord_ms: float) -> dict[str, Any]:
    """One N and strategy: single node, fragments alone, and the real distributed run."""
    run = lambda: client.execute_distributed_query(AGG_SQL, strategy, nodes=n)  # noqa: E731
    for _ in range(2):  # caches and the capacity model settle
        run()
    single = single_ms(client, repeats)
    # N idle hosts alike would get equal shares; here the daemons share this machine's
    # cores and the capacity model may have learned otherwise (reported as shares_here).
    plan = client.execute_distributed_query(AGG_SQL, strategy, nodes=n, explain=True,
                                            equal_shares=True)  # fmt: skip
    here = client.execute_distributed_query(AGG_SQL, strategy, nodes=n, explain=True)
    alone = [median_ms(lambda f=f: client.query(f["sql"], cache=False)["elapsed_ms"], repeats)
             for f in plan["fragments"]]  # fmt: skip
    walls, last = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        last = run()
        walls.append((time.perf_counter() - started) * 1000)
        assert last["distributed"] and last["failovers"] == 0, last["node_timings"]
    assert last is not None
    slowest = max(alone)
    reads = [
        {"share": t["share"], "ms": t["ms"], "scanned_rows": t["scanned_rows"],
         "row_groups": f"{t['row_groups_scanned']}/{t['row_groups_total']}"}
        for t in last["node_timings"]
    ]  # fmt: skip
    return {
        "single_ms": single,
        "fragments_alone_ms": alone,
        "shares": [f["share"] for f in plan["fragments"]],
        "shares_here": [f["share"] for f in here["fragments"]],
        "chunks": plan["partitioning"]["chunks"],
        "slowest_over_single": round(slowest / single, 3),
        "goal_ratio": round(1.3 / n, 3),
        "speedup_n_hosts": round(single / (slowest + coord_ms), 2),
        "goal_speedup": round(0.75 * n, 2),
        "wall_here_ms": round(statistics.median(walls), 1),
        "execution_here_ms": last["execution_ms"],
        "node_reads": reads,
    }


def wait_ready(cluster: LocalCluster, timeout: float) -> float:
    """Converged, and the coordinator sees every peer at its CID; seconds waited."""
    started = time.perf_counter()
    cluster.wait_converged(timeout)
    wait_until(lambda: cluster.peers[0].call("cluster_status")["query_nodes"] == PEERS,
               timeout, "every peer at the coordinator's CID")  # fmt: skip
    return time.perf_counter() - started


# -- 3. clustering --------------------------------------------------------------------------

HOUR_MS = 3_600_000


def v7(ms: int, counter: int) -> str:
    """A UUIDv7 for ``ms`` (the counter where the random bits go: keys stay unique)."""
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0x2 << 62) | counter))


def skewed_replica(workdir: Path, rows: int) -> Store:
    """A replica that applied two writers' changesets interleaved, as they arrived; the
    second writer's clock (and so its UUIDv7 keys) is two hours behind."""
    writers = [Store(workdir / f"w{i}.duckdb") for i in range(2)]
    replica = Store(workdir / "replica.duckdb")
    now = int(time.time() * 1000)
    for i, cols in enumerate(sample_chunks(rows, CHUNK)):
        w = i % 2
        changes, _ = result_changes(writers[w], cols)
        base = now + i * 1000 - (2 * HOUR_MS if w else 0)
        keys = [v7(base + r // 50, i * CHUNK + r) for r in range(len(cols["model_name"]))]
        changes = [dataclasses.replace(c, data=[keys, *c.data[1:]])
                   if c.table == "performance_results" else c for c in changes]  # fmt: skip
        item = writers[w].commit_local(f"writer{w}", changes)
        replica.apply_blocks([item.block])
    for w in writers:
        w.close()
    return replica


def middle_third(store: Store) -> Partitioning:
    """Three key ranges of exactly a third of the rows each (exact quantiles, so the
    slice holds the same rows before and after a re-cluster)."""
    cuts = store.query(
        "SELECT quantile_disc(result_id, [1/3, 2/3])::VARCHAR[] FROM performance_results",
        1, 600.0)[1][0][0]  # fmt: skip
    return Partitioning("keys", 3, "result_id", tuple(cuts), (0, 1, 2))


def slice_cost(store: Store, part: Partitioning, repeats: int) -> dict[str, Any]:
    """Row groups the middle third of the rows reads, by our zone-map count and by
    DuckDB's profile, and its GROUP BY time against the whole table's."""
    keymap = KeyMaps().at(store, store.db_cid())
    map_sql = plan_query(AGG_SQL).map_sql
    fragment = fragment_sql(map_sql, part, 1)
    rows, groups, total = keymap.scan(key_ranges(part, 1))
    profile = store.query("EXPLAIN ANALYZE " + fragment, 10, 600.0)[1][0][1]
    found = re.search(r"Row Groups Scanned: (\d+) / (\d+)", profile)

    def timed(sql: str) -> float:
        started = time.perf_counter()
        store.query(sql, 1_000_000, 600.0)
        return (time.perf_counter() - started) * 1000

    whole = median_ms(lambda: timed(map_sql), repeats)
    third = median_ms(lambda: timed(fragment), repeats)
    return {
        "row_groups_read": groups,
        "row_groups_total": total,
        "row_groups_read_duckdb": int(found.group(1)) if found else None,
        "rows_read": rows,
        "whole_ms": whole,
        "third_ms": third,
        "third_over_whole": round(third / whole, 3),
        "amplification": layout(store).to_dict()["amplification"],
        "condition": slice_condition(part, 1)[:60] + "...",
    }


def clustering(rows: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dpcluster-") as tmp:
        store = skewed_replica(Path(tmp), rows)
        try:
            part = middle_third(store)
            before = slice_cost(store, part, repeats)
            print(f"  clustering before: {before}", flush=True)
            started = time.perf_counter()
            moved, _ = recluster_pass(store)
            pass_s = round(time.perf_counter() - started, 1)
            after = slice_cost(store, part, repeats)
            print(f"  clustering after ({moved:,} rows moved in {pass_s} s): {after}", flush=True)
        finally:
            store.close()
    return {"rows": rows, "before": before, "after": after, "moved_rows": moved, "pass_s": pass_s}


# -- the run --------------------------------------------------------------------------------


def run(args: argparse.Namespace, _workdir: Path) -> dict[str, Any]:
    parts = set(args.parts.split(","))
    res: dict[str, Any] = {"goal_overhead_ms": GOAL_OVERHEAD_MS}
    if parts & {"overhead", "split"}:
        with LocalCluster(PEERS, env=LONG_QUERIES) as cluster:
            client = cluster.peers[0].client()
            try:
                _cluster_parts(client, cluster, args, parts, res)
            finally:
                client.close()
    if "cluster" in parts:
        res["clustering"] = clustering(args.cluster_rows, args.repeats)
    return res


def _cluster_parts(client: Client, cluster: LocalCluster, args: argparse.Namespace,
                   parts: set[str], res: dict[str, Any]) -> None:  # fmt: skip
    ingest_rows(client, args.tiny_rows, CHUNK)
    wait_ready(cluster, 120)
    coord_ms = 0.0
    if "overhead" in parts:
        res["overhead"] = overhead(client, args.pairs)
        coord_ms = res["overhead"]["overhead_ms"]["p50"]
        print(f"  overhead: {res['overhead']['overhead_ms']} {res['overhead']['phases_ms_p50']}",
              flush=True)  # fmt: skip
    if "split" not in parts:
        return
    res["ingest_s"] = round(ingest_rows(client, args.rows - args.tiny_rows, CHUNK), 1)
    res["replicate_wait_s"] = round(wait_ready(cluster, 7200), 1)
    print(f"  ingested {args.rows:,} rows in {res['ingest_s']} s, replicated "
          f"{res['replicate_wait_s']} s later", flush=True)  # fmt: skip
    res["rows"] = args.rows
    res["coordination_ms_used"] = coord_ms
    for _ in range(3):  # the replicas settle (re-cluster check, caches) before timing
        single_ms(client, 1)
    res["split"] = {}
    for n in (2, 3, 4):
        for strategy in STRATEGIES:
            got = split(client, n, strategy, args.repeats, coord_ms)
            res["split"][f"{n}/{strategy}"] = got
            print(f"  N={n} {strategy}: {got}", flush=True)


def report(res: dict[str, Any]) -> None:
    if "overhead" in res:
        o = res["overhead"]
        print_table(
            "tiny query over 3 peers (ms, measured in the coordinator)",
            ["what", "n", "p50", "p99", "mean"],
            [[k, v["n"], v["p50"], v["p99"], v["mean"]] for k, v in o.items() if "p50" in v],
        )
        print(f"coordination overhead p50 {o['overhead_ms']['p50']} ms (goal <= "
              f"{GOAL_OVERHEAD_MS:.0f} ms); phases p50 {o['phases_ms_p50']}")  # fmt: skip
    if "split" in res:
        rows = [
            [key, v["single_ms"], "/".join(f"{m:.0f}" for m in v["fragments_alone_ms"]),
             v["slowest_over_single"], v["goal_ratio"], v["speedup_n_hosts"], v["goal_speedup"],
             v["wall_here_ms"], " ".join(r["row_groups"] for r in v["node_reads"])]
            for key, v in res["split"].items()
        ]  # fmt: skip
        coord = res["coordination_ms_used"]
        print_table(
            f"GROUP BY over {res['rows']:,} rows, N peers (coordination {coord} ms in the speedup)",
            ["N/strategy", "single ms", "fragments alone ms", "slowest/single", "goal <=",
             "speedup N hosts", "goal >=", "wall here ms", "row groups read per node"],
            rows,
        )  # fmt: skip
    if "clustering" in res:
        c = res["clustering"]
        print_table(
            f"1/3 key slice of a replica with a writer 2 h behind ({c['rows']:,} rows; "
            f"re-cluster moved {c['moved_rows']:,} rows in {c['pass_s']} s)",
            ["when", "row groups read", "DuckDB's count", "rows read", "slice / whole time",
             "amplification"],
            [[w, f"{c[w]['row_groups_read']}/{c[w]['row_groups_total']}",
              c[w]["row_groups_read_duckdb"], c[w]["rows_read"], c[w]["third_over_whole"],
              c[w]["amplification"]] for w in ("before", "after")],
        )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dpdistq-"))
