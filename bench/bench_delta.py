"""Cost of applying a 1,000-row delta into a big database vs a small one.

Two target stores (``daemon.store.database.Store``, in process, no network) are pre-filled with
results through the normal local write path (``writes.result_changes`` +
``Store.commit_local``, ``--chunk`` rows per changeset, origin ``bench-prefill``), then
closed (checkpoint) and reopened with the daemon's configuration. A separate source
store (origin ``bench-source``) produces the deltas: each is one changeset of
``--delta`` new results. Each delta block is applied to both targets, interleaved, with
``Store.apply_blocks`` (decode, validation, chain check, one DuckDB transaction), the
way a peer applies what sync hands it. A first small source changeset (which also
carries the model and hardware rows) is applied unmeasured as a warm-up.

Pre-fill modes (``--prefill-mode``):

* ``deferred`` (default): DuckDB's automatic checkpoint is pushed to the end of the
  pre-fill (``checkpoint_threshold`` raised for the pre-fill connection only; the delta
  phase reopens the store with the daemon's normal settings). Every row still goes
  through ``result_changes`` + ``commit_local``. 10M rows then take about 2 minutes.
* ``auto``: the daemon's own configuration, a checkpoint at (nearly) every 100k-row
  commit. This is the real bulk-write path; it slows down as the database grows
  (each checkpoint rewrites the changeset log's blobs) and 10M rows take ~13 minutes
  on 2 cores.

After the deltas, an explicit CHECKPOINT is timed on each target: DuckDB runs one
automatically whenever the WAL passes ``checkpoint_threshold`` (16 MiB), so that cost
is part of applying deltas too. The script reports it amortized per delta (checkpoint
time x WAL bytes per delta / threshold) next to the median apply time.

Goal (issue): median apply time big / small <= 1.5 (cost grows with the delta, not
the database). The pre-fill doubles as a bulk-write throughput figure (rows/s).

    .venv/bin/python bench/bench_delta.py                      # 10k vs 10M rows
    .venv/bin/python bench/bench_delta.py --quick              # 10k vs 1M rows
    .venv/bin/python bench/bench_delta.py --prefill-mode auto --big-rows 2000000
"""

from __future__ import annotations

import argparse
import statistics
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
    sample_chunks,
    sample_columns,
)

from daemon.store.database import Store
from daemon.writes.changes import result_changes
from protocol import changeset as cs_codec

GOAL_RATIO = 1.5
SOURCE, PREFILL = "bench-source", "bench-prefill"


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_delta", "big target of 1M rows")
    p.add_argument("--big-rows", type=int, default=10_000_000, help="big target (default 10M)")
    p.add_argument("--small-rows", type=int, default=10_000, help="small target (default 10k)")
    p.add_argument("--delta", type=int, default=1_000, help="rows per delta (default 1000)")
    p.add_argument("--repeats", type=int, default=5, help="deltas applied per target (default 5)")
    p.add_argument("--chunk", type=int, default=100_000, help="rows per pre-fill changeset")
    p.add_argument(
        "--prefill-mode",
        choices=["deferred", "auto"],
        default="deferred",
        help="checkpoints during the pre-fill (see above; default deferred)",
    )
    p.add_argument(
        "--keep", type=Path, help="build the stores here and keep them (else a temp dir)"
    )
    return parse_quick(p, big_rows=1_000_000)


def prefill(path: Path, rows: int, chunk: int, deferred: bool) -> dict[str, Any]:
    """Commit ``rows`` results in ``chunk``-row changesets, then close (checkpoint)."""
    with deferred_checkpoints(deferred):
        store = Store(path)
    chunk_s: list[float] = []
    started = time.perf_counter()
    done = 0
    try:
        for cols in sample_chunks(rows, chunk):
            t = time.perf_counter()
            changes, _ = result_changes(store, cols)
            store.commit_local(PREFILL, changes)
            chunk_s.append(time.perf_counter() - t)
            done += len(cols["model_name"])
            if len(chunk_s) % 10 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"  pre-fill {done:,}/{rows:,} rows ({rate:,.0f} rows/s)", flush=True)
        written = time.perf_counter() - started
    finally:
        t = time.perf_counter()
        store.close()  # CHECKPOINT: every target starts from a checkpointed file
        closed = time.perf_counter() - t
    k = max(1, len(chunk_s) // 10)
    total = written + closed
    return {
        "rows": rows,
        "mode": "deferred" if deferred else "auto",
        "commit_s": round(written, 3),
        "close_checkpoint_s": round(closed, 3),
        "seconds": round(total, 3),
        "rows_per_s": round(rows / total) if total else None,
        "chunks": len(chunk_s),
        "first_chunks_mean_s": round(statistics.fmean(chunk_s[:k]), 3),
        "last_chunks_mean_s": round(statistics.fmean(chunk_s[-k:]), 3),
        "file_bytes": path.stat().st_size,
    }


def make_deltas(source: Store, n: int, size: int) -> tuple[bytes, list[bytes]]:
    """A warm-up block (models, hardware, 10 results) and ``n`` blocks of ``size`` results."""
    changes, _ = result_changes(source, sample_columns(10, seed=1))
    warm = source.commit_local(SOURCE, changes).block
    blocks = []
    for i in range(n):
        changes, _ = result_changes(source, sample_columns(size, seed=100 + i))
        blocks.append(source.commit_local(SOURCE, changes).block)
    return warm, blocks


def apply_interleaved(
    targets: dict[str, Store], warm: bytes, blocks: list[bytes]
) -> dict[str, list[float]]:
    """Apply the warm-up unmeasured, then each delta to every target, alternating order."""
    for store in targets.values():
        _check(store.apply_blocks([warm]))
    times: dict[str, list[float]] = {label: [] for label in targets}
    order = list(targets)
    for i, block in enumerate(blocks):
        for label in order if i % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            result = targets[label].apply_blocks([block])
            times[label].append(time.perf_counter() - t)
            _check(result)
    return times


def _check(result: Any) -> None:
    if result.applied != 1 or result.rejected:
        raise SystemExit(f"delta not applied: {result}")


def wal_bytes(path: Path) -> int:
    wal = Path(f"{path}.wal")
    return wal.stat().st_size if wal.exists() else 0


def checkpoint_cost(store: Store, path: Path, wal_before: int, deltas: int) -> dict[str, Any]:
    """Time an explicit CHECKPOINT and amortize it over the WAL the deltas wrote."""
    threshold = store._writer.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
    wal_after = wal_bytes(path)
    t = time.perf_counter()
    store._writer.execute("CHECKPOINT")
    seconds = time.perf_counter() - t
    per_delta = max(0, wal_after - wal_before) / max(1, deltas)
    limit = _parse_bytes(str(threshold[0])) if threshold else 16 << 20
    return {
        "checkpoint_ms": round(seconds * 1000, 1),
        "wal_bytes_per_delta": round(per_delta),
        "checkpoint_threshold": str(threshold[0]) if threshold else None,
        "amortized_ms_per_delta": round(seconds * 1000 * per_delta / limit, 2),
    }


def _parse_bytes(text: str) -> int:
    units = {
        "B": 1,
        "KIB": 1 << 10,
        "MIB": 1 << 20,
        "GIB": 1 << 30,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
    }
    number, _, unit = text.strip().partition(" ")
    return int(float(number) * units.get(unit.strip().upper() or "B", 1))


def decode_ms(blocks: list[bytes]) -> float:
    """Median time to decode and validate one delta block (part of every apply)."""
    times = []
    for block in blocks:
        t = time.perf_counter()
        cs_codec.decode(block)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    base.mkdir(parents=True, exist_ok=True)
    for f in base.glob("*.duckdb*"):
        f.unlink()
    source = Store(base / "source.duckdb")
    warm, blocks = make_deltas(source, args.repeats, args.delta)
    source.close()
    out: dict[str, Any] = {"delta_rows": args.delta, "delta_block_bytes": len(blocks[0])}
    sizes = {"small": args.small_rows, "big": args.big_rows}
    paths = {label: base / f"{label}.duckdb" for label in sizes}
    fills = {}
    for label, rows in sizes.items():
        print(
            f"{label} target: pre-filling {rows:,} rows in {args.chunk:,}-row changesets "
            f"(checkpoints {args.prefill_mode})",
            flush=True,
        )
        fills[label] = prefill(paths[label], rows, args.chunk, args.prefill_mode == "deferred")
    stores = {label: Store(path) for label, path in paths.items()}  # the daemon's settings
    try:
        wal0 = {label: wal_bytes(path) for label, path in paths.items()}
        times = apply_interleaved(stores, warm, blocks)
        for label, store in stores.items():
            out[label] = {
                "prefill": fills[label],
                "apply_ms": [round(t * 1000, 3) for t in times[label]],
                "median_ms": round(statistics.median(times[label]) * 1000, 3),
                "min_ms": round(min(times[label]) * 1000, 3),
                "results_rows": store.row_counts()["performance_results"],
                "checkpoint": checkpoint_cost(store, paths[label], wal0[label], len(blocks) + 1),
            }
    finally:
        for store in stores.values():
            store.close()
    out["decode_median_ms"] = round(decode_ms(blocks), 3)
    out["ratio_big_small"] = round(out["big"]["median_ms"] / out["small"]["median_ms"], 3)
    with_ckpt = {
        label: out[label]["median_ms"] + out[label]["checkpoint"]["amortized_ms_per_delta"]
        for label in sizes
    }
    out["ratio_with_amortized_checkpoint"] = round(with_ckpt["big"] / with_ckpt["small"], 3)
    out["goal_ratio"] = GOAL_RATIO
    return out


def report(res: dict[str, Any]) -> None:
    rows = []
    for label in ("small", "big"):
        r = res[label]
        f, c = r["prefill"], r["checkpoint"]
        rows.append(
            [
                label,
                r["results_rows"],
                r["median_ms"],
                r["min_ms"],
                c["checkpoint_ms"],
                c["amortized_ms_per_delta"],
                f["seconds"],
                f["rows_per_s"],
                f["file_bytes"] / 1e6,
            ]
        )
    print_table(
        f"apply one {res['delta_rows']:,}-row delta "
        f"({res['delta_block_bytes'] / 1e3:.0f} kB block)",
        [
            "target",
            "rows",
            "median ms",
            "min ms",
            "checkpoint ms",
            "amortized ms/delta",
            "pre-fill s",
            "pre-fill rows/s",
            "file MB",
        ],
        rows,
    )
    print(
        f"ratio big/small: {res['ratio_big_small']:.2f} (goal <= {GOAL_RATIO}); with the "
        f"amortized checkpoint: {res['ratio_with_amortized_checkpoint']:.2f}; "
        f"decode+validate of one delta block: {res['decode_median_ms']:.1f} ms"
    )
    big = res["big"]["prefill"]
    print(
        f"big pre-fill ({big['mode']} checkpoints): chunk commit first "
        f"{big['first_chunks_mean_s']:.2f} s, "
        f"last {big['last_chunks_mean_s']:.2f} s ({big['chunks']} chunks); "
        f"close/checkpoint {big['close_checkpoint_s']:.1f} s"
    )


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dpdelta-"))
