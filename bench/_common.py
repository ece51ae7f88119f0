"""Shared helpers for the duckpeer benchmarks: statistics, tables, JSON results, paths.

Benchmarks never assert on time. Each prints a small table and writes
``bench/results/<name>.json`` with the figures, the parameters and the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

if str(ROOT) not in sys.path:  # run as `python bench/x.py` without the editable install too
    sys.path.insert(0, str(ROOT))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean in milliseconds of a list of durations in seconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
        "min_ms": round(min(ms), 3) if ms else float("nan"),
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else float("nan"),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(line)
    for row in cells:
        print(
            "  ".join(
                c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True)
            )
        )
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-.") and text != "-"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import duckdb

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "network": "loopback",
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "source_digest": source_digest(),
    }


def source_digest() -> str:
    """Short sha256 of the project's Python sources: which code the figures belong to."""
    digest = hashlib.sha256()
    for package in ("protocol", "daemon", "peerctl"):
        for path in sorted((ROOT / package).rglob("*.py")) + sorted(
            (ROOT / package).rglob("*.sql")
        ):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load_note() -> dict[str, Any]:
    """The 1-minute load average now, with a warning when the machine is busy.

    Other work on a 2-core machine (tests, builds) skews every figure; the JSON keeps
    the load so a reader can tell.
    """
    load = os.getloadavg()[0]
    if load > 0.7:
        print(f"note: 1-min load average is {load:.2f} before the run; figures may be skewed")
    probe = cpu_probe_ms()
    print(f"note: CPU probe {probe} ms (5M-step Python loop; lower is faster)")
    return {"loadavg_1m_at_start": round(load, 2), "cpu_probe_ms": probe}


def cpu_probe_ms(n: int = 5_000_000) -> float:
    """Best of three runs of a fixed pure-Python loop, in ms: how fast this machine's
    cores are today (shared VMs differ by 2x from day to day), to compare absolute
    figures across runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(n):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def write_result(name: str, params: dict[str, Any], results: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (or ``<name>.json`` for an absolute name)
    and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    doc = {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": params,
        "results": results,
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"\nwrote {shown}")
    return path


def peerctl_command() -> list[str]:
    """The ``peerctl`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "peerctl"
    if script.exists():
        return [str(script)]
    found = shutil.which("peerctl")
    return [found] if found else [sys.executable, "-m", "peerctl"]


def db_files_bytes(data_dir: Path) -> dict[str, int]:
    """Size of a peer's database: DuckDB file, its WAL and the block log.

    ``total`` is all three (what a peer that catches up must rebuild); ``duckdb`` is
    the DuckDB file and WAL alone.
    """
    db = data_dir / "duckpeer.duckdb"
    wal = data_dir / "duckpeer.duckdb.wal"
    blocks = sum(p.stat().st_size for p in (data_dir / "duckpeer.blocks").glob("*.log"))

    def size(p: Path) -> int:
        return p.stat().st_size if p.exists() else 0

    duck = size(db) + size(wal)
    return {"db_file": size(db), "wal_file": size(wal), "block_log": blocks, "duckdb": duck,
            "total": duck + blocks}  # fmt: skip


CSV_FIELDS = (
    "model_name",
    "hardware_type",
    "device_name",
    "batch_size",
    "precision",
    "throughput",
    "latency",
    "memory_mb",
)


def write_results_csv(path: Path, rows: int, seed: int = 7, block: int = 100_000) -> float:
    """Write ``rows`` sample_results-like rows as CSV; returns seconds taken."""
    from daemon.demo import sample_results

    started = time.perf_counter()
    base = sample_results(min(rows, block), seed)
    cols = [base[f] for f in CSV_FIELDS]
    # format floats once per block; later blocks reuse the same sample rows
    text_rows = [
        (m, h, d, str(b), p, f"{t:.4f}", f"{lat:.4f}", f"{mem:.1f}")
        for m, h, d, b, p, t, lat, mem in zip(*cols, strict=True)
    ]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_FIELDS)
        left = rows
        while left > 0:
            take = min(left, len(text_rows))
            writer.writerows(text_rows[:take])
            left -= take
    return time.perf_counter() - started


def sample_columns(rows: int, seed: int = 7, block: int = 100_000) -> dict[str, list[Any]]:
    """sample_results() columns for ``rows`` rows (generated once per block, repeated)."""
    from daemon.demo import sample_results

    base = sample_results(min(rows, block), seed)
    if rows <= block:
        return base
    reps, rest = divmod(rows, block)
    return {k: v * reps + v[:rest] for k, v in base.items()}


@contextlib.contextmanager
def deferred_checkpoints(enabled: bool) -> Iterator[None]:
    """Stores opened inside get a huge ``checkpoint_threshold`` (Store locks its config).

    Only for building big benchmark databases fast: every row still goes through
    ``result_changes`` + ``commit_local``; DuckDB just does not checkpoint until the
    store is closed or asked to.
    """
    if not enabled:
        yield
        return
    import duckdb

    original: Any = duckdb.connect

    def connect(database: Any, *args: Any, config: dict[str, Any] | None = None, **kw: Any) -> Any:
        kw["config"] = {**(config or {}), "checkpoint_threshold": "1TB"}
        return original(database, *args, **kw)

    setattr(duckdb, "connect", connect)  # noqa: B010  (Store calls duckdb.connect)
    try:
        yield
    finally:
        setattr(duckdb, "connect", original)  # noqa: B010


def bench_parser(doc: str | None, name: str, quick: str) -> argparse.ArgumentParser:
    """A parser with what every benchmark takes: ``--quick`` (``quick`` says what it
    shrinks to) and ``--name`` (of the results file, default ``name``)."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--name", default=name, help="results file name")
    return p


def parse_quick(p: argparse.ArgumentParser, **quick: Any) -> argparse.Namespace:
    """Parse; with ``--quick``, cap each named numeric argument at its quick value
    (others are set to it)."""
    args = p.parse_args()
    if args.quick:
        for key, value in quick.items():
            now = getattr(args, key)
            numeric = isinstance(value, int | float) and isinstance(now, int | float)
            setattr(args, key, min(now, value) if numeric else value)
    return args


def sample_chunks(rows: int, chunk: int) -> Iterator[dict[str, list[Any]]]:
    """``rows`` sample results as column dicts of at most ``chunk`` rows (one sample
    block reused, so generating them costs nothing measurable)."""
    data = sample_columns(min(rows, chunk))
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        yield data if n == len(data["model_name"]) else {k: v[:n] for k, v in data.items()}


def ingest_rows(client: Any, rows: int, chunk: int) -> float:
    """Ingest ``rows`` sample results through a control-socket client; seconds taken."""
    started = time.perf_counter()
    for cols in sample_chunks(rows, chunk):
        client.ingest_columns(cols)
    return time.perf_counter() - started


def bench_main(
    parse_args: Callable[[], Any],
    run: Callable[[Any, Path], dict[str, Any]],
    report: Callable[[dict[str, Any]], None],
    prefix: str,
) -> int:
    """The shared shape of every benchmark: parse, run in a temp dir, print, write JSON.

    ``args.keep`` (when a script has it) names a directory to keep instead.
    """
    args = parse_args()
    load = load_note()
    keep = getattr(args, "keep", None)
    if keep:
        res = run(args, Path(keep))
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            res = run(args, Path(tmp))
    report(res)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    params.pop("name", None)
    write_result(args.name, params | load, res)
    return 0


def wait_cid(peer: Any, cid: str, timeout: float) -> float:
    """perf_counter when the LocalPeer ``peer`` reaches ``cid`` (polled every 50 ms)."""
    from daemon.localcluster import ClusterError
    from peerctl.client import ClientError

    deadline = time.perf_counter() + timeout
    while True:
        try:
            if peer.status()["db_cid"] == cid:
                return time.perf_counter()
        except ClientError:  # busy loading: answer later
            pass
        if time.perf_counter() > deadline:
            raise ClusterError(f"{peer.name} did not reach {cid} in {timeout} s")
        time.sleep(0.05)
