"""Run every duckpeer benchmark and print one table of figures against the issue's goals.

    .venv/bin/python bench/run_all.py            # full sizes (about 10 minutes on 2 cores)
    .venv/bin/python bench/run_all.py --quick    # small sizes (about 2 minutes)
    .venv/bin/python bench/run_all.py --only latency,ingest

Each benchmark runs as its own process and writes bench/results/<name>.json; this
script reads those files and writes bench/results/summary.json. Goals are reported,
never asserted: a miss is a figure, not a failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common
from _common import RESULTS_DIR, load_note, print_table, write_result

BENCHES = {
    "latency": "bench_latency.py",
    "delta": "bench_delta.py",
    "ingest": "bench_ingest.py",
    "catchup": "bench_catchup.py",
    "checkpoint": "bench_checkpoint.py",
    "conflicts": "bench_conflicts.py",
    "kg": "bench_kg.py",
    "cache": "bench_cache.py",
    "snapshot": "bench_snapshot.py",
    "monitor": "bench_monitor.py",
    "distq": "bench_distq.py",
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small sizes")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    return p.parse_args()


def run_one(script: str, quick: bool) -> tuple[int, float]:
    stale = RESULTS_DIR / f"{Path(script).stem}.json"
    stale.unlink(missing_ok=True)  # a failed run must not report an older file's figures
    cmd = [sys.executable, str(_common.BENCH_DIR / script), *(["--quick"] if quick else [])]
    print(
        f"\n===== {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True
    )
    started = time.perf_counter()
    code = subprocess.run(cmd, check=False).returncode
    return code, time.perf_counter() - started


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text())["results"] if path.exists() else None


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def figures(which: list[str]) -> list[list[Any]]:
    """Rows of (benchmark, figure, measured, goal, verdict) from the result files."""
    rows: list[list[Any]] = []
    if "latency" in which and (r := load("bench_latency")):
        both = r["all_peers"]
        rows.append(
            [
                "latency",
                "write->visible p50 ms (3 peers)",
                both["p50_ms"],
                "<= 50",
                verdict(both["p50_ms"] <= 50),
            ]
        )
        rows.append(
            [
                "latency",
                "write->visible p99 ms",
                both["p99_ms"],
                "<= 300",
                verdict(both["p99_ms"] <= 300),
            ]
        )
    if "delta" in which and (r := load("bench_delta")):
        rows.append(
            [
                "delta",
                f"apply 1k rows, {r['big']['results_rows']:,} vs "
                f"{r['small']['results_rows']:,} rows (ratio)",
                r["ratio_big_small"],
                "<= 1.5",
                verdict(r["ratio_big_small"] <= 1.5),
            ]
        )
        rows.append(
            [
                "delta",
                "  ratio incl. amortized auto-checkpoint",
                r.get("ratio_with_amortized_checkpoint"),
                "<= 1.5",
                verdict((r.get("ratio_with_amortized_checkpoint") or 0) <= 1.5),
            ]
        )
        fill = r["big"]["prefill"]
        rows.append(
            [
                "delta",
                f"bulk write (pre-fill, {fill.get('mode', 'auto')} checkpoints) rows/s",
                fill["rows_per_s"],
                "",
                "",
            ]
        )
    if "ingest" in which and (r := load("bench_ingest")):
        ing = r["ingest"]
        rows.append(
            [
                "ingest",
                f"peerctl ingest {r['rows']:,} rows, s",
                ing["seconds"],
                "<= 10 (1M)",
                verdict(1_000_000 / ing["rows_per_s"] <= 10),
            ]
        )
        if r["rows"] != 1_000_000:
            rows.append(
                [
                    "ingest",
                    "  extrapolated to 1M rows, s",
                    round(1_000_000 / ing["rows_per_s"], 1),
                    "<= 10",
                    "",
                ]
            )
        st = r["status"]["peerctl_status_e2e"]
        rows.append(
            [
                "status",
                "peerctl status p50 ms (e2e)",
                st["p50_ms"],
                "<= 100",
                verdict(st["p50_ms"] <= 100),
            ]
        )
    if "catchup" in which and (r := load("bench_catchup")):
        rows.append(
            [
                "catchup",
                f"empty peer catch-up, {r['rows']:,} rows, MB/s of db",
                r["db_mb_per_s"],
                ">= 70",
                verdict(r["db_mb_per_s"] >= 70),
            ]
        )
        if r.get("in_process_apply"):
            sp = r["in_process_apply"]
            rows.append(
                [
                    "catchup",
                    "  same blocks, Store.apply_blocks in process, MB/s",
                    round(r["peer0_db"]["total"] / 1e6 / sp["apply_s"], 2),
                    "",
                    "",
                ]
            )
    if "checkpoint" in which and (r := load("bench_checkpoint")):
        last = r["points"][-1]
        rows.append(
            [
                "checkpoint",
                f"CHECKPOINT after a 1-row write, {last['rows']:,} rows "
                f"({last['log_bytes'] / 1e6:.0f} MB log), ms",
                last["ckpt_after_commit_local_ms"],
                "",
                "",
            ]
        )
    if "conflicts" in which and (r := load("bench_conflicts")):
        for name, s in r["strategies"].items():
            rows.append(
                [
                    "conflicts",
                    f"{r['delta']:,}-change delta, 10 % vs 0 % concurrent, {name} (ratio)",
                    s["ratio"],
                    "",
                    "",
                ]
            )
    if "snapshot" in which and (r := load("bench_snapshot")):
        for size in r["sizes"]:
            db = size["db"]["total"] / 1e6
            rows.append(
                [
                    "snapshot",
                    f"{db:.0f} MB db: export / import MB/s",
                    f"{size['export_mb_per_s']} / {size['import_mb_per_s']}",
                    "",
                    "",
                ]
            )
            boot = size["bootstrap_2_peers"]["seconds_from_spawn"]
            goal = "<= 10 s (1 GB)" if db >= 900 else ""
            rows.append(["snapshot", "  bootstrap from 2 peers, s (MB/s)",
                         f"{boot} ({size['bootstrap_2_mb_per_s']})", goal,
                         verdict(boot <= 10) if goal else ""])  # fmt: skip
    if "kg" in which and (r := load("bench_kg")):
        rows += kg_figures(r)
    if "cache" in which and (r := load("bench_cache")):
        rows.extend(cache_figures(r))
    if "monitor" in which and (r := load("bench_monitor")):
        share = r["self_measured_share_pct"]
        rows.append(["monitor", "monitor CPU share at 1k rows/s, % (self-measured)", share,
                     "< 2", verdict(share is not None and share < 2)])  # fmt: skip
        rows.append(["monitor", "  A/B CPU per write, monitor on vs off, %",
                     r["ab_overhead_pct"], "< 2", verdict(r["ab_overhead_pct"] < 2)])  # fmt: skip
    if "distq" in which and (r := load("bench_distq")):
        over = r["overhead"]["overhead_ms"]
        rows.append(
            [
                "distq",
                "tiny query over 3 peers, overhead p50 ms",
                over["p50"],
                "<= 10",
                verdict(over["p50"] <= 10),
            ]
        )
        agg = r["aggregation"]
        rows.append(
            [
                "distq",
                f"{r['rows']:,}-row GROUP BY, single node / distributed (hash) s",
                f"{agg['single node']['median_s']} / {agg['hash']['median_s']}",
                "",
                "",
            ]
        )
    return rows


def kg_figures(r: dict[str, Any]) -> list[list[Any]]:
    """Rows for bench_kg: population, top-10 similar, incremental update."""
    rows: list[list[Any]] = []
    for label, goal in (("small", 0.5), ("big", 60.0)):
        p = r[f"populate_{label}"]
        full = p["results"] in (10_000, 1_000_000)
        ok = verdict(p["seconds"] <= goal) if full else ""
        rows.append(["kg", f"populate {p['results']:,} results, s", p["seconds"],
                     f"<= {goal}" if full else "", ok])  # fmt: skip
    t = r["top10"]
    rows.append(["kg", f"top-10 similar among {t['configs']:,} configs, p50 ms", t["p50_ms"],
                 "<= 20", verdict(t["p50_ms"] <= 20)])  # fmt: skip
    ins = r["incremental"]["insert"]
    rows.append(["kg", "kg flush after a 1k-row changeset, ms", ins["kg_flush_ms"], "", ""])
    return rows


def cache_figures(r: dict[str, Any]) -> list[list[Any]]:
    """Rows for bench_cache: cold vs cached (client and peerctl), dashboard hit rate."""
    agg, dash = r["aggregation"], r["dashboard"]
    cli = agg["cli"]
    return [
        ["cache", f"aggregation over {agg['rows']:,} rows, cold p50 ms (client)",
         agg["client_cold"]["p50_ms"], "~1000 (10M)", ""],
        ["cache", "  cached p50 ms (client, one connection)", agg["client_cached"]["p50_ms"],
         "", ""],
        ["cache", "  speed-up cold/cached (client)", agg["client_speedup_p50"], ">= 50",
         verdict(agg["client_speedup_p50"] >= 50)],
        ["cache", "  speed-up cold/cached (peerctl)", cli["speedup_p50"], "", ""],
        ["cache", "  peerctl cached p50 ms / status floor p50 ms",
         f"{cli['cached']['p50_ms']:.0f} / {cli['status_floor']['p50_ms']:.0f}", "", ""],
        ["cache", "dashboard replay hit rate", dash["with_cache"]["hit_rate"], "40-70 % (old)",
         ""],
        ["cache", "  replay speed-up (busy time)", dash["speedup_busy_time"], "1.3-1.7x (old)",
         ""],
    ]  # fmt: skip


def main() -> int:
    args = parse_args()
    which = args.only.split(",") if args.only else list(BENCHES)
    unknown = set(which) - set(BENCHES)
    if unknown:
        raise SystemExit(f"unknown benchmarks: {sorted(unknown)}")
    start_load = load_note()
    runs = {}
    for name in which:
        code, seconds = run_one(BENCHES[name], args.quick)
        runs[name] = {"exit_code": code, "seconds": round(seconds, 1)}
    rows = figures(which)
    print_table("duckpeer benchmarks vs goals", ["bench", "figure", "measured", "goal", ""], rows)
    print_table(
        "runs",
        ["bench", "exit", "seconds"],
        [[n, r["exit_code"], r["seconds"]] for n, r in runs.items()],
    )
    write_result(
        "summary",
        {"quick": args.quick, "only": which} | start_load,
        {
            "runs": runs,
            "figures": [
                dict(zip(["bench", "figure", "measured", "goal", "verdict"], row, strict=True))
                for row in rows
            ],
        },
    )
    return 0 if all(r["exit_code"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
