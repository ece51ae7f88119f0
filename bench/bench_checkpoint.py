"""What a DuckDB CHECKPOINT costs as the changeset log grows (diagnostic).

DuckDB checkpoints automatically when the WAL passes ``checkpoint_threshold``
(16 MiB by default): in the daemon that is after nearly every large commit (ingest
chunk, sync batch) and after every ~60 small ones. This script grows one Store with
``--chunk``-row changesets (``result_changes`` + ``commit_local``, automatic
checkpoints deferred so that the growth itself is fast) and, at a few sizes, times a
CHECKPOINT after each of:

* a 1-row ``commit_local`` (what every real write does: rows + log + heads);
* a 1-row INSERT into ``store.performance_results`` only (bench-only SQL);
* a 1-row INSERT into ``store.changesets`` only (bench-only SQL).

When the changeset blocks were a BLOB column, the cost tracked the log's size (about
10 ms per MB): every checkpoint rewrote the log. Since the blocks moved to the block
log (daemon/store/blocklog.py) DuckDB holds only their locations; this script shows the cost
no longer grows with the log.

    .venv/bin/python bench/bench_checkpoint.py            # up to 3M rows
    .venv/bin/python bench/bench_checkpoint.py --quick    # up to 1M rows
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import (
    bench_main,
    bench_parser,
    deferred_checkpoints,
    parse_quick,
    print_table,
    sample_columns,
)

from daemon.store.database import Store
from daemon.writes.changes import result_changes

ORIGIN = "bench-checkpoint"


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_checkpoint", "steps 1,5,10")
    p.add_argument("--chunk", type=int, default=100_000, help="rows per changeset (default 100k)")
    p.add_argument("--steps", default="1,5,10,20,30", help="chunks at which to measure")
    return parse_quick(p, steps="1,5,10")


def timed_checkpoint(store: Store) -> float:
    t = time.perf_counter()
    store._writer.execute("CHECKPOINT")
    return time.perf_counter() - t


def measure(store: Store) -> dict[str, Any]:
    cur = store._writer
    one = sample_columns(1, seed=3)
    store.commit_local(ORIGIN, result_changes(store, one)[0])
    after_commit = timed_checkpoint(store)
    cur.execute(
        "INSERT INTO store.performance_results (result_id, _hlc, _origin) "
        "VALUES (uuidv7(), 1, 'bench-sql')"
    )
    after_rows = timed_checkpoint(store)
    cur.execute(
        "INSERT INTO store.changesets SELECT 'bench-sql', seq, 1, 'bench-' || seq, NULL, 0, "
        "-seq, 0, 0, 1 FROM (SELECT coalesce(max(seq), 0) + 1 AS seq FROM store.changesets "
        "WHERE origin = 'bench-sql')"
    )
    after_log = timed_checkpoint(store)
    log = cur.execute("SELECT count(*), sum(size) FROM store.changesets").fetchone()
    return {
        "rows": store.row_counts()["performance_results"],
        "log_blocks": log[0] if log else 0,
        "log_bytes": (log[1] or 0) if log else 0,
        "file_bytes": store.size_bytes(),
        "ckpt_after_commit_local_ms": round(after_commit * 1000, 1),
        "ckpt_after_results_row_ms": round(after_rows * 1000, 1),
        "ckpt_after_log_row_ms": round(after_log * 1000, 1),
    }


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    steps = sorted({int(s) for s in args.steps.split(",") if s})
    with deferred_checkpoints(True):
        store = Store(base / "ckpt.duckdb")
    data = sample_columns(args.chunk)
    points = []
    done = 0
    try:
        for target in steps:
            while done < target:
                store.commit_local(ORIGIN, result_changes(store, data)[0])
                done += 1
            timed_checkpoint(store)  # flush the growth, then measure from a clean state
            point = measure(store)
            points.append(point)
            print(
                f"  {point['rows']:,} rows: checkpoint after a 1-row write "
                f"{point['ckpt_after_commit_local_ms']:.0f} ms",
                flush=True,
            )
    finally:
        store.close()
    return {"chunk": args.chunk, "points": points}


def report(res: dict[str, Any]) -> None:
    print_table(
        "CHECKPOINT time (ms) after one small change, by database size",
        [
            "result rows",
            "log MB",
            "file MB",
            "after commit_local",
            "after results row",
            "after log row",
        ],
        [
            [
                p["rows"],
                p["log_bytes"] / 1e6,
                p["file_bytes"] / 1e6,
                p["ckpt_after_commit_local_ms"],
                p["ckpt_after_results_row_ms"],
                p["ckpt_after_log_row_ms"],
            ]
            for p in res["points"]
        ],
    )


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dpckpt-"))
