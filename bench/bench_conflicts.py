"""Cost of applying a 10k-change delta with 10 % conflicting changes vs none, per strategy.

A target store (``daemon.store.database.Store``, in process, no network) holds ``--rows`` models
written by origin ``seed``. Origin ``left`` edits every one of ``--delta`` rows (one
column each, based on the seed's version, one changeset); origin ``right`` edits
``--conflict-pct`` % of those same rows concurrently (another column, same base).

* 0 %: the target applies ``left``'s delta alone.
* 10 %: the target has applied ``right``'s edits first, so 10 % of ``left``'s delta is
  concurrent with what it holds and goes through conflict handling.

Both cases run on fresh copies of the same pre-filled store, ``--repeat`` times; the
figure is the median apply time (decode, chain check, one transaction) and the ratio
10 % / 0 %, for each strategy (latest, merge, manual) on the ``models`` table.

    .venv/bin/python bench/bench_conflicts.py            # 10k rows, 10k-change delta
    .venv/bin/python bench/bench_conflicts.py --quick    # 2k rows, 2k-change delta
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from _common import bench_main, bench_parser, parse_quick, print_table

from daemon.store.database import Store
from protocol.changeset import Changeset, Op, TableChanges, cid_of, encode
from protocol.conflicts import Strategy

SEED_HLC, LEFT_HLC, RIGHT_HLC = 1_000 << 16, 3_000 << 16, 2_000 << 16


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_conflicts", "2,000 rows and changes, 3 repeats")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--delta", type=int, default=10_000)
    p.add_argument("--conflict-pct", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--keep", type=Path)
    return parse_quick(p, rows=2_000, delta=2_000, repeat=3)


def _block(origin: str, hlc: int, table: TableChanges) -> bytes:
    return encode(Changeset(origin, 1, hlc, None, [table]))


def _edits(keys: list[str], column: str, tag: str) -> TableChanges:
    n = len(keys)
    base = (SEED_HLC, "seed")
    return TableChanges("models", ["model_id", column], bytes([Op.UPSERT]) * n, [base] * n,
                        [0b11] * n, [keys, [f"{tag}-{i}" for i in range(n)]])  # fmt: skip


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    keys = [f"model-{i:07d}" for i in range(args.rows)]
    seed = _block("seed", SEED_HLC, TableChanges(
        "models", ["model_id", "model_name", "model_family"], bytes([Op.UPSERT]) * len(keys),
        [None] * len(keys), [0b111] * len(keys), [keys, keys, ["f0"] * len(keys)]))  # fmt: skip
    touched = keys[: args.delta]
    left = _block("left", LEFT_HLC, _edits(touched, "model_family", "left"))
    n_conflicts = int(len(touched) * args.conflict_pct / 100)
    right = _block("right", RIGHT_HLC, _edits(touched[:n_conflicts], "modality", "right"))
    template = tmp / "template.duckdb"
    store = Store(template)
    assert store.apply_blocks([seed]).applied == 1
    store.close()
    out: dict[str, Any] = {"rows": args.rows, "delta": len(touched), "conflicting": n_conflicts,
                           "left_cid": cid_of(left), "strategies": {}}  # fmt: skip
    for strategy in Strategy:
        times: dict[str, list[float]] = {"clean": [], "conflicting": []}
        found = 0
        for i in range(args.repeat):
            for case in ("clean", "conflicting"):
                path = tmp / f"{strategy.value}-{case}-{i}.duckdb"
                shutil.copy(template, path)
                target = Store(path)
                target.strategies["models"] = strategy
                if case == "conflicting":
                    assert target.apply_blocks([right]).applied == 1
                started = time.perf_counter()
                result = target.apply_blocks([left])
                times[case].append(time.perf_counter() - started)
                assert result.applied == 1, result.rejected
                if case == "conflicting":
                    found = result.conflicts
                target.close()
                path.unlink()
                shutil.rmtree(path.with_suffix(".blocks"), ignore_errors=True)
        clean, conflicting = (statistics.median(times[c]) for c in ("clean", "conflicting"))
        out["strategies"][strategy.value] = {
            "clean_ms": round(clean * 1000, 1),
            "conflicting_ms": round(conflicting * 1000, 1),
            "ratio": round(conflicting / clean, 2),
            "conflicts_found": found,
        }
    return out


def report(res: dict[str, Any]) -> None:
    rows = [
        [name, r["clean_ms"], r["conflicting_ms"], r["ratio"], r["conflicts_found"]]
        for name, r in res["strategies"].items()
    ]
    print_table(
        f"apply a {res['delta']}-change delta into {res['rows']} rows "
        f"({res['conflicting']} concurrent vs none)",
        ["strategy", "0 % ms", "10 % ms", "ratio", "conflicts found"],
        rows,
    )


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dp-bench-conflicts-"))
