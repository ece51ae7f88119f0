"""``peerctl ingest`` of a 1M-row CSV end to end, and ``peerctl status`` response time.

1. Writes a CSV of ``--rows`` sample results (columns model_name, hardware_type,
   device_name, batch_size, precision, throughput, latency, memory_mb) to a temp dir.
2. Starts one duckpeerd (LocalPeer) and times ``peerctl --socket S ingest FILE --json``
   as a subprocess, end to end (process start to exit).
3. Split (unless ``--no-split``): on a second, fresh daemon, runs the same steps as
   ``peerctl ingest`` in process and times them apart: the row count for the progress
   bar, reading+normalizing the CSV (``peerctl.records.read_chunks``), encoding the
   control requests, and the ``ingest`` calls (socket + daemon: validation, row
   changes, commit).
4. Times ``peerctl --socket S status --json`` ``--status-runs`` times as subprocesses,
   plus the parts: bare interpreter start, ``import peerctl.cli``, one in-process
   ``Client.status()`` round trip.

Goals (issue): 1M-row ingest <= 10 s; ``peerctl status`` <= 100 ms end to end.

    .venv/bin/python bench/bench_ingest.py             # 1,000,000 rows
    .venv/bin/python bench/bench_ingest.py --quick     # 100,000 rows
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import (
    bench_main,
    bench_parser,
    parse_quick,
    peerctl_command,
    print_table,
    summary_ms,
    write_results_csv,
)

from daemon.localcluster import LocalPeer
from peerctl.client import Client
from peerctl.records import count_rows, read_chunks
from protocol import control
from protocol.control import ControlRequest
from protocol.framing import encode_frame

GOAL_INGEST_S = 10.0
GOAL_STATUS_MS = 100.0


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_ingest", "100,000 rows, 10 status runs")
    p.add_argument("--rows", type=int, default=1_000_000, help="CSV rows (default 1,000,000)")
    p.add_argument("--chunk-size", type=int, help="peerctl --chunk-size (default: peerctl's)")
    p.add_argument("--status-runs", type=int, default=30, help="peerctl status runs (default 30)")
    p.add_argument("--no-split", action="store_true", help="skip the in-process time split")
    return parse_quick(p, rows=100_000, status_runs=10)


def timed_ingest(peer: LocalPeer, csv_path: Path, chunk_size: int | None) -> dict[str, Any]:
    """Run ``peerctl ingest`` as a subprocess and time it end to end."""
    cmd = [*peerctl_command(), "--socket", str(peer.socket), "ingest", str(csv_path), "--json"]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"peerctl ingest exited {proc.returncode}: {proc.stderr.strip()}")
    summary = json.loads(proc.stdout)
    return {"seconds": round(elapsed, 3), "peerctl_summary": summary}


def split_ingest(peer: LocalPeer, csv_path: Path, chunk_size: int | None) -> dict[str, Any]:
    """The steps of ``peerctl ingest``, in process, timed apart."""
    size = chunk_size or 50_000
    t = time.perf_counter()
    count_rows(csv_path)
    counting = time.perf_counter() - t
    reading = encoding = calling = 0.0
    rows = chunks = 0
    with Client(peer.socket, timeout=600) as client:
        it = read_chunks(csv_path, size)
        while True:
            t = time.perf_counter()
            chunk = next(it, None)
            reading += time.perf_counter() - t
            if chunk is None:
                break
            t = time.perf_counter()
            request = ControlRequest(0, "ingest", {"records": chunk.columns})
            encode_frame(control.encode_request(request), control.MAX_CONTROL_FRAME)
            encoding += time.perf_counter() - t
            t = time.perf_counter()
            rows += client.ingest_columns(chunk.columns)["rows"]
            calling += time.perf_counter() - t
            chunks += 1
    return {
        "rows": rows,
        "chunks": chunks,
        "count_rows_s": round(counting, 3),
        "read_normalize_s": round(reading, 3),
        "encode_request_s": round(encoding, 3),
        "ingest_calls_s": round(calling, 3),
        "note": "ingest_calls_s includes the client's own request encoding once more",
    }


def status_times(peer: LocalPeer, runs: int) -> dict[str, Any]:
    """``peerctl status --json`` end to end, and what it is made of."""
    cmd = [*peerctl_command(), "--socket", str(peer.socket), "status", "--json"]
    e2e = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        e2e.append(time.perf_counter() - t)
    bare, imports = [], []
    for _ in range(min(runs, 10)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import peerctl.cli"], check=True)
        imports.append(time.perf_counter() - t)
    calls = []
    with Client(peer.socket) as client:
        client.status()
        for _ in range(runs):
            t = time.perf_counter()
            client.status()
            calls.append(time.perf_counter() - t)
    return {
        "peerctl_status_e2e": summary_ms(e2e),
        "python_startup": summary_ms(bare),
        "python_import_peerctl_cli": summary_ms(imports),
        "client_status_call": summary_ms(calls),
        "goal_ms": GOAL_STATUS_MS,
    }


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    csv_path = tmp / "results.csv"
    print(f"writing {args.rows:,}-row CSV…", flush=True)
    gen_s = write_results_csv(csv_path, args.rows)
    out: dict[str, Any] = {
        "rows": args.rows,
        "csv_bytes": csv_path.stat().st_size,
        "csv_write_s": round(gen_s, 3),
    }
    peer = LocalPeer("ingest", tmp / "p0").start()
    try:
        print("peerctl ingest…", flush=True)
        ingest = timed_ingest(peer, csv_path, args.chunk_size)
        status = peer.status()
        ingest["rows_stored"] = status["rows"]["performance_results"]
        ingest["rows_per_s"] = round(args.rows / ingest["seconds"])
        ingest["db_bytes"] = status["db_bytes"]
        ingest["goal_s"] = GOAL_INGEST_S
        out["ingest"] = ingest
        print("peerctl status…", flush=True)
        out["status"] = status_times(peer, args.status_runs)
    finally:
        peer.stop()
    if not args.no_split:
        print("time split on a fresh daemon…", flush=True)
        fresh = LocalPeer("split", tmp / "p1").start()
        try:
            out["split"] = split_ingest(fresh, csv_path, args.chunk_size)
        finally:
            fresh.stop()
    return out


def report(res: dict[str, Any]) -> None:
    ing = res["ingest"]
    rows = [["peerctl ingest (subprocess, end to end)", ing["seconds"], ing["rows_per_s"]]]
    if "split" in res:
        sp = res["split"]
        for key, label in (
            ("count_rows_s", "  count rows (progress bar)"),
            ("read_normalize_s", "  read + normalize CSV"),
            ("encode_request_s", "  encode control requests"),
            ("ingest_calls_s", "  ingest calls (socket + daemon)"),
        ):
            rows.append([label, sp[key], ""])
    print_table(
        f"ingest of {res['rows']:,} rows ({res['csv_bytes'] / 1e6:.0f} MB CSV, "
        f"{ing['peerctl_summary']['changesets']} changesets)",
        ["step", "seconds", "rows/s"],
        rows,
    )
    print(f"goal <= {GOAL_INGEST_S:.0f} s: {ing['seconds']:.1f} s; stored {ing['rows_stored']:,}")
    st = res["status"]
    rows = [
        [label, s["n"], s["p50_ms"], s["p95_ms"], s["max_ms"]]
        for label, s in (
            ("peerctl status --json (e2e)", st["peerctl_status_e2e"]),
            ("  python -c pass", st["python_startup"]),
            ("  python -c 'import peerctl.cli'", st["python_import_peerctl_cli"]),
            ("  Client.status() round trip", st["client_status_call"]),
        )
    ]
    print_table("peerctl status (ms)", ["what", "n", "p50", "p95", "max"], rows)
    print(f"goal <= {GOAL_STATUS_MS:.0f} ms: p50 {st['peerctl_status_e2e']['p50_ms']:.0f} ms")


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dping-"))
