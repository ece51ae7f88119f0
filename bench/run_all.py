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
