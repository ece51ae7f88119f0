"""The bulk path against plain DuckDB, same CSV, same run: load, bytes on disk, catch-up, RSS.

For each size (default 1M and 10M rows) a CSV of sample results is written with
``write_results_csv`` (rows unique up to 1M, then repeating), and each figure is taken
for plain DuckDB and for duckpeer one after the other:

* load: ``CREATE TABLE ... AS SELECT * FROM read_csv(...)`` + CHECKPOINT in a fresh
  DuckDB file (a subprocess, from process start; ``enable_progress_bar = false``, as in
  every plain step: drawing the bar cost a third of the 10M-row load), vs ``peerctl
  ingest FILE`` against a running daemon (a subprocess, from process start to exit).
* bytes on disk: that DuckDB file, vs the daemon's data dir (DuckDB file, WAL, block
  log) after ``peerctl snapshot prune`` (no other peer is known, so the log keeps
  nothing) and a clean stop. Also against a plain DuckDB table of the very rows the
  daemon holds (with their result ids, created_at, ...), copied out of its file.
* catch-up of a new empty host: COPY TO Parquet + copy the file + CREATE TABLE AS
  read_parquet, vs a new empty daemon started with the loaded one as bootstrap peer,
  from process start until its database CID equals the source's (the source exports
  its snapshot on demand: it was just restarted).
* RSS of the loaded daemon: after the ingest (idle 2 s and 15 s), and after a restart
  with the rows (idle 3 s); of an empty daemon, idle 3 s after start. /proc VmRSS and VmHWM.

Goals (issue 16): load <= 2x, bytes <= 1.5x, catch-up <= 3x; RSS with 10M results
<= 400 MB, empty <= 150 MB.

    .venv/bin/python bench/bench_bulk.py                  # 1M and 10M rows
    .venv/bin/python bench/bench_bulk.py --quick          # 100k rows
    .venv/bin/python bench/bench_bulk.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import (
    bench_main,
    bench_parser,
    db_files_bytes,
    parse_quick,
    peerctl_command,
    print_table,
    wait_cid,
    write_results_csv,
)

from daemon.localcluster import LocalPeer

MB = 1e6
GOALS = {"load": 2.0, "bytes": 1.5, "catchup": 3.0}
SETTLE_S = 15.0  # RSS right after a large ingest is ~4x what it is 5-15 s later


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_bulk", "100,000 rows")
    p.add_argument("--rows", default="1000000,10000000", help="sizes, comma-separated")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after seconds")
    p.add_argument("--keep", help="work in this directory and keep it")
    return parse_quick(p, rows="100000")


# -- plain DuckDB ------------------------------------------------------------------------------


def plain(code: str) -> float:
    """Run DuckDB ``code`` in a fresh interpreter; seconds from process start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import duckdb\n" + code], check=True)
    return time.perf_counter() - started


def connect(db: Path, read_only: bool = False) -> str:
    """The code that opens ``db`` the way every plain-side step does: no progress bar."""
    return (
        f"con = duckdb.connect({str(db)!r}, read_only={read_only})\n"
        "con.execute('SET enable_progress_bar = false')\n"
    )


def plain_load(csv: Path, db: Path) -> float:
    return plain(
        connect(db) + 'con.execute("CREATE TABLE performance_results AS SELECT * FROM '
        f'read_csv({str(csv)!r})")\n'
        "con.execute('CHECKPOINT')\ncon.close()"
    )


def plain_catchup(db: Path, work: Path) -> dict[str, float]:
    """COPY TO Parquet, copy the file to the new host's dir, load it there."""
    src, dst = work / "export.parquet", work / "host2" / "copy.parquet"
    dst.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    export = plain(
        connect(db, read_only=True)
        + f'con.execute("COPY performance_results TO {str(src)!r} (FORMAT parquet)")'
    )
    shutil.copyfile(src, dst)
    load = plain(
        connect(dst.parent / "new.duckdb")
        + f'con.execute("CREATE TABLE performance_results AS SELECT * FROM '
        f"read_parquet({str(dst)!r})\")\ncon.execute('CHECKPOINT')"
    )
    return {"seconds": round(time.perf_counter() - started, 3), "export_s": round(export, 3),
            "load_s": round(load, 3), "parquet_bytes": src.stat().st_size}  # fmt: skip


def same_rows_bytes(data_dir: Path, work: Path) -> int:
    """A plain DuckDB table of the rows the (stopped) daemon holds, in a fresh file."""
    target = work / "same_rows.duckdb"
    plain(
        connect(target)
        + f'con.execute("ATTACH {str(data_dir / "duckpeer.duckdb")!r} AS src (READ_ONLY)")\n'
        "con.execute('CREATE TABLE performance_results AS "
        "SELECT * FROM src.main.performance_results')\n"
        "con.execute('DETACH src')\ncon.execute('CHECKPOINT')"
    )
    return target.stat().st_size


# -- duckpeer ------------------------------------------------------------------------------------


def rss(peer: LocalPeer) -> dict[str, float]:
    """VmRSS and VmHWM of the daemon process, MB."""
    assert peer.proc is not None
    fields = {}
    for line in Path(f"/proc/{peer.proc.pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) * 1024 / MB, 1)
    return fields


def ingest(peer: LocalPeer, csv: Path) -> dict[str, Any]:
    cmd = [*peerctl_command(), "--socket", str(peer.socket), "ingest", str(csv), "--json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"peerctl ingest exited {proc.returncode}: {proc.stderr.strip()}")
    return {"seconds": round(seconds, 3), "summary": json.loads(proc.stdout)}


def catchup(source: LocalPeer, work: Path, cid: str, timeout: float) -> dict[str, Any]:
    peer = LocalPeer("newhost", work / "newhost")
    started = time.perf_counter()
    peer.spawn([source.listen_addr])
    try:
        done = wait_cid(peer, cid, timeout)
        metrics = peer.status()["metrics"]
    finally:
        peer.stop()
    logged = {}
    for line in peer.log_path.read_text().splitlines():
        if '"bootstrapped from snapshot"' in line:
            logged = json.loads(line)
    return {"seconds": round(done - started, 3), "fetch_s": logged.get("fetch_s"),
            "load_s": logged.get("load_s"), "snapshot_bytes": logged.get("bytes"),
            "snapshot_bootstraps": metrics.get("snapshot_bootstraps", 0),
            "sync_changesets_in": metrics.get("sync_changesets_in", 0)}  # fmt: skip


def empty_rss(work: Path) -> dict[str, float]:
    peer = LocalPeer("empty", work / "empty").start()
    try:
        time.sleep(3)
        return rss(peer)
    finally:
        peer.stop()


def one_size(rows: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "results.csv"
    print(f"\n[{rows:,} rows] writing the CSV…", flush=True)
    write_results_csv(csv, rows, block=min(rows, 1_000_000))
    out: dict[str, Any] = {"rows": rows, "csv_bytes": csv.stat().st_size}
    plain_db = work / "plain.duckdb"
    print("  plain DuckDB read_csv…", flush=True)
    out["plain_load_s"] = round(plain_load(csv, plain_db), 3)
    out["plain_bytes"] = plain_db.stat().st_size
    source = LocalPeer("source", work / "source").start()
    try:
        print("  peerctl ingest…", flush=True)
        out["ingest"] = ingest(source, csv)
        time.sleep(2)
        out["rss_after_ingest"] = rss(source)
        time.sleep(SETTLE_S - 2)
        out["rss_settled"] = rss(source)
        out["before_prune"] = db_files_bytes(source.data_dir)
        out["prune"] = source.call("snapshot_prune")
        source.stop()
        out["duckpeer_bytes"] = db_files_bytes(source.data_dir)
        out["same_rows_bytes"] = same_rows_bytes(source.data_dir, work)
        source.start()
        time.sleep(3)
        out["rss_restarted"] = rss(source)
        cid = source.status()["db_cid"]
        print("  plain catch-up (Parquet copy)…", flush=True)
        out["plain_catchup"] = plain_catchup(plain_db, work)
        print("  new empty daemon catches up…", flush=True)
        out["catchup"] = catchup(source, work, cid, args.timeout)
    finally:
        source.stop()
    out["ratios"] = {
        "load": round(out["ingest"]["seconds"] / out["plain_load_s"], 2),
        "bytes": round(out["duckpeer_bytes"]["total"] / out["plain_bytes"], 2),
        "bytes_vs_same_rows": round(out["duckpeer_bytes"]["total"] / out["same_rows_bytes"], 2),
        "catchup": round(out["catchup"]["seconds"] / out["plain_catchup"]["seconds"], 2),
    }
    return out


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sizes = [int(s) for s in str(args.rows).split(",") if s]
    results = [one_size(n, args, tmp / f"{n}") for n in sizes]
    return {"sizes": results, "empty_rss": empty_rss(tmp / "empty"), "goals": GOALS}


def report(res: dict[str, Any]) -> None:
    for r in res["sizes"]:
        ratio = r["ratios"]
        rows = [
            ["load the CSV (s)", r["plain_load_s"], r["ingest"]["seconds"], ratio["load"],
             f"<= {GOALS['load']}x"],
            ["bytes on disk (MB)", r["plain_bytes"] / MB, r["duckpeer_bytes"]["total"] / MB,
             ratio["bytes"], f"<= {GOALS['bytes']}x"],
            ["  vs a plain table of the same stored rows", r["same_rows_bytes"] / MB,
             r["duckpeer_bytes"]["total"] / MB, ratio["bytes_vs_same_rows"], ""],
            ["  before pruning the log (MB)", "", r["before_prune"]["total"] / MB, "", ""],
            ["new empty host catch-up (s)", r["plain_catchup"]["seconds"],
             r["catchup"]["seconds"], ratio["catchup"], f"<= {GOALS['catchup']}x"],
            ["daemon RSS after ingest / HWM (MB)", "",
             f"{r['rss_after_ingest']['VmRSS']} / {r['rss_after_ingest']['VmHWM']}", "", ""],
            [f"  {SETTLE_S:.0f} s after the ingest (MB)", "", r["rss_settled"]["VmRSS"], "", ""],
            ["daemon RSS restarted with the rows (MB)", "", r["rss_restarted"]["VmRSS"], "",
             "<= 400 (10M)"],
        ]  # fmt: skip
        print_table(f"{r['rows']:,} rows ({r['csv_bytes'] / MB:.0f} MB CSV): plain DuckDB vs "
                    "duckpeer, same run", ["what", "plain DuckDB", "duckpeer", "ratio", "goal"],
                    rows)  # fmt: skip
        c = r["catchup"]
        print(
            f"catch-up split: fetch {c['fetch_s']} s, load {c['load_s']} s, "
            f"{c['snapshot_bootstraps']} snapshot bootstrap(s)"
        )
    e = res["empty_rss"]
    print(f"\nempty daemon RSS {e['VmRSS']} MB (HWM {e['VmHWM']}); goal <= 150 MB")


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dp-bulk-"))
