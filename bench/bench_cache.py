"""Result cache: cold vs cached for a big aggregation with percentiles, and the hit rate
of a replayed dashboard workload interleaved with writes.

Part 1: a store of ``--rows`` results (default 10M) is built in process through the
normal local write path (``result_changes`` + ``Store.commit_local``, 100k-row
changesets, checkpoints deferred to the end as in bench_delta), then timed three ways
on the aggregation below (108 groups, percentiles):

* plain DuckDB on the same file (read-only connection, before the daemon starts);
* a real ``duckpeerd`` through the Python client on one connection: cold (``cache=False``:
  runs every time) vs cached (a hit at the current CID), medians;
* ``peerctl query`` as a subprocess: cold (``--no-cache``) vs cached; ``peerctl status``
  is shown as the floor (process start-up + one round trip).

Part 2: a second daemon with ``--workload-rows`` results replays a dashboard: panels
(6 query templates, some with a parameter, written with varying case and spacing as
different clients would) asked in random order with ``--think-ms`` between them, and a
100-row ingest every ``--write-every`` queries (a new CID each time). The same sequence
is replayed with the cache off. Reported: hit rate (local + peer hits / queries),
prefetches, and the speed-up of the whole replay.

    .venv/bin/python bench/bench_cache.py            # 10M rows, 1M-row workload
    .venv/bin/python bench/bench_cache.py --quick    # 1M rows, 200k-row workload
"""

from __future__ import annotations

import argparse
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import (
    bench_main,
    bench_parser,
    deferred_checkpoints,
    parse_quick,
    peerctl_command,
    print_table,
    sample_chunks,
    sample_columns,
    summary_ms,
)

from daemon.localcluster import LocalPeer
from daemon.store.database import Store
from daemon.writes.changes import result_changes
from peerctl.client import Client

AGG = """
SELECT model_id, hardware_id, precision, count(*) AS n,
       avg(average_latency_ms) AS mean_ms,
       quantile_cont(average_latency_ms, 0.5) AS p50_ms,
       quantile_cont(average_latency_ms, 0.95) AS p95_ms,
       quantile_cont(average_latency_ms, 0.99) AS p99_ms,
       max(throughput_items_per_second) AS best_throughput
FROM performance_results
GROUP BY ALL ORDER BY model_id, hardware_id, precision
"""
PANELS: list[tuple[str, list[Any], int]] = [  # (template, parameter choices, weight)
    ("SELECT model_id, count(*) AS runs, avg(throughput_items_per_second) AS tput "
     "FROM performance_results GROUP BY model_id ORDER BY model_id", [None], 4),
    ("SELECT hardware_id, quantile_cont(average_latency_ms, 0.5) AS p50, "
     "quantile_cont(average_latency_ms, 0.9) AS p90 FROM performance_results "
     "GROUP BY hardware_id ORDER BY hardware_id", [None], 4),
    ("SELECT hardware_id, batch_size, max(throughput_items_per_second) AS best "
     "FROM performance_results WHERE model_id = '{}' GROUP BY ALL ORDER BY best DESC LIMIT 10",
     ["bert-base-uncased", "llama-7b", "whisper-tiny"], 3),
    ("SELECT precision, count(*) AS n, avg(memory_peak_mb) AS mem FROM performance_results "
     "WHERE batch_size = {} GROUP BY precision ORDER BY precision", [1, 8, 32], 2),
    ("SELECT result_id, model_id, hardware_id, throughput_items_per_second "
     "FROM performance_results ORDER BY created_at DESC, result_id LIMIT 20", [None], 2),
    ("SELECT model_id, quantile_cont(average_latency_ms, 0.9) AS p90 FROM performance_results "
     "WHERE hardware_id = '{}' GROUP BY model_id ORDER BY model_id",
     ["cuda:A100", "cpu:Xeon 8380"], 2),
]  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_cache", "1M rows, 200k-row workload")
    p.add_argument("--rows", type=int, default=10_000_000, help="rows for part 1 (10M)")
    p.add_argument("--workload-rows", type=int, default=1_000_000, help="rows for part 2 (1M)")
    p.add_argument("--cold-repeats", type=int, default=5)
    p.add_argument("--hot-repeats", type=int, default=200)
    p.add_argument("--cli-repeats", type=int, default=10)
    p.add_argument("--workload-queries", type=int, default=400)
    p.add_argument("--write-every", type=int, default=25, help="queries between writes")
    p.add_argument("--think-ms", type=float, default=20.0, help="pause between queries")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--keep", type=Path, help="build the stores here and keep them (reused)")
    return parse_quick(
        p, rows=1_000_000, workload_rows=200_000, workload_queries=200, hot_repeats=100
    )


def build_store(data_dir: Path, rows: int, chunk: int = 100_000) -> float:
    """A store of ``rows`` results at ``data_dir/duckpeer.duckdb``; returns seconds.

    A store already there (``--keep`` of an earlier run) is reused if it has ``rows``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if (data_dir / "duckpeer.duckdb").exists():
        store = Store(data_dir / "duckpeer.duckdb")
        have = store.row_counts()["performance_results"]
        store.close()
        if have >= rows:
            print(f"  reusing {data_dir} ({have:,} rows)")
            return 0.0
        raise SystemExit(f"{data_dir} holds {have:,} rows, not {rows:,}: use another --keep")
    started = time.perf_counter()
    with deferred_checkpoints(True):
        store = Store(data_dir / "duckpeer.duckdb")
    try:
        done = 0
        for cols in sample_chunks(rows, chunk):
            store.commit_local("bench-prefill", result_changes(store, cols)[0])
            done += len(cols["model_name"])
            if done % 1_000_000 == 0:
                print(f"  built {done:,}/{rows:,} rows", flush=True)
    finally:
        store.close()
    return time.perf_counter() - started


def plain_duckdb(path: Path, repeats: int) -> dict[str, Any]:
    """The aggregation on the same file with plain DuckDB (no daemon)."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    times = []
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            con.execute(AGG).fetchall()
            times.append(time.perf_counter() - t)
    finally:
        con.close()
    return summary_ms(times)


def timed(fn: Any, repeats: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def part1(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    data_dir = base / "big"
    built = build_store(data_dir, args.rows)
    plain = plain_duckdb(data_dir / "duckpeer.duckdb", args.cold_repeats)
    peer = LocalPeer("bench-cache", data_dir).start(timeout=300)
    try:
        with Client(peer.socket, timeout=600) as client:
            first = client.query(AGG)
            cold, out_cold = timed(lambda: client.query(AGG, cache=False), args.cold_repeats)
            hot, out_hot = timed(lambda: client.query(AGG), args.hot_repeats)
            assert out_hot["cache"] == "hit" and out_hot["rows"] == out_cold["rows"]
        cli = cli_times(peer, args.cli_repeats)
    finally:
        peer.stop()
    cold_s, hot_s = summary_ms(cold), summary_ms(hot)
    return {
        "rows": args.rows,
        "build_s": round(built, 1),
        "groups": len(out_hot["rows"]),
        "plain_duckdb": plain,
        "client_first_miss_ms": first["elapsed_ms"],
        "client_cold": cold_s,
        "client_cached": hot_s,
        "client_speedup_p50": round(cold_s["p50_ms"] / hot_s["p50_ms"], 1),
        "cli": cli,
    }


def cli_times(peer: LocalPeer, repeats: int) -> dict[str, Any]:
    base = [*peerctl_command(), "--socket", str(peer.socket)]

    def run(*args: str) -> None:
        subprocess.run([*base, *args], check=True, capture_output=True)

    cached, _ = timed(lambda: run("query", "--json", AGG), repeats)
    cold, _ = timed(lambda: run("query", "--json", "--no-cache", AGG), max(3, repeats // 3))
    floor, _ = timed(lambda: run("status", "--json"), repeats)
    out = {
        "cold": summary_ms(cold),
        "cached": summary_ms(cached),
        "status_floor": summary_ms(floor),
    }
    out["speedup_p50"] = round(out["cold"]["p50_ms"] / out["cached"]["p50_ms"], 1)
    return out


def respell(sql: str, rng: random.Random) -> str:
    """The same query as another client might write it (case and spacing)."""
    words = sql.split(" ")
    out = [w.upper() if w.isalpha() and rng.random() < 0.3 else w for w in words]
    return rng.choice([" ", "  ", "\n  "]).join(out)


def workload(args: argparse.Namespace) -> list[str | None]:
    """The replayed sequence: query texts, and None for a write."""
    rng = random.Random(args.seed)
    weights = [w for _, _, w in PANELS]
    seq: list[str | None] = []
    for i in range(args.workload_queries):
        if i and i % args.write_every == 0:
            seq.append(None)
        template, choices, _ = rng.choices(PANELS, weights)[0]
        value = rng.choice(choices)
        sql = template.format(value) if value is not None else template
        seq.append(respell(sql, rng) if rng.random() < 0.5 else sql)
    return seq


def replay(client: Client, seq: list[str | None], cache: bool, think: float) -> dict[str, Any]:
    times, outcomes = [], {"hit": 0, "peer": 0, "miss": 0, "off": 0}
    started = time.perf_counter()
    for i, sql in enumerate(seq):
        if sql is None:
            client.ingest_columns(sample_columns(100, seed=1000 + i))
            continue
        t = time.perf_counter()
        out = client.query(sql, cache=cache)
        times.append(time.perf_counter() - t)
        outcomes[out.get("cache", "off")] += 1
        time.sleep(think)
    total = time.perf_counter() - started - think * len(times)
    queries = len(times)
    return {"queries": queries, "outcomes": outcomes, "busy_s": round(total, 3),
            "hit_rate": round((outcomes["hit"] + outcomes["peer"]) / queries, 4),
            "latency": summary_ms(times)}  # fmt: skip


def part2(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    data_dir = base / "dash"
    build_store(data_dir, args.workload_rows)
    seq = workload(args)
    peer = LocalPeer("bench-dash", data_dir).start(timeout=300)
    try:
        with Client(peer.socket, timeout=600) as client:
            for sql in dict.fromkeys(q for q in seq if q is not None):  # warm DuckDB's buffers
                client.query(sql, cache=False)
            client.cache_clear()  # and start both replays from an empty cache
            cached = replay(client, seq, True, args.think_ms / 1000)
            stats = client.cache_stats()
            uncached = replay(client, seq, False, args.think_ms / 1000)
    finally:
        peer.stop()
    return {
        "rows": args.workload_rows,
        "writes": seq.count(None),
        "with_cache": cached,
        "without_cache": uncached,
        "cache_stats": stats,
        "speedup_busy_time": round(uncached["busy_s"] / cached["busy_s"], 2),
        "mean_latency_reduction": round(
            1 - cached["latency"]["mean_ms"] / uncached["latency"]["mean_ms"], 3
        ),
    }


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    return {"aggregation": part1(args, base), "dashboard": part2(args, base)}


def report(res: dict[str, Any]) -> None:
    agg, cli, dash = res["aggregation"], res["aggregation"]["cli"], res["dashboard"]
    rows = [
        ["plain DuckDB (no daemon)", agg["plain_duckdb"]["p50_ms"], ""],
        ["client: first ask (miss)", agg["client_first_miss_ms"], ""],
        ["client: cold (cache off)", agg["client_cold"]["p50_ms"], ""],
        ["client: cached", agg["client_cached"]["p50_ms"], f"{agg['client_speedup_p50']}x"],
        ["peerctl: cold (--no-cache)", cli["cold"]["p50_ms"], ""],
        ["peerctl: cached", cli["cached"]["p50_ms"], f"{cli['speedup_p50']}x"],
        ["peerctl status (start-up floor)", cli["status_floor"]["p50_ms"], ""],
    ]
    print_table(f"aggregation with percentiles over {agg['rows']:,} rows ({agg['groups']} groups), "
                "p50 ms", ["path", "p50 ms", "speed-up"], rows)  # fmt: skip
    w, wo = dash["with_cache"], dash["without_cache"]
    print_table(
        f"dashboard replay: {w['queries']} queries, {dash['writes']} writes, "
        f"{dash['rows']:,} rows",
        ["", "hit rate", "mean ms", "p95 ms", "busy s"],
        [
            ["with cache", w["hit_rate"], w["latency"]["mean_ms"], w["latency"]["p95_ms"],
             w["busy_s"]],
            ["without cache", "-", wo["latency"]["mean_ms"], wo["latency"]["p95_ms"],
             wo["busy_s"]],
        ],
    )  # fmt: skip
    print(f"speed-up of the replay: {dash['speedup_busy_time']}x; prefetched "
          f"{dash['cache_stats']['prefetched']} results")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dp-bench-cache-"))
