"""Snapshot export, import and bootstrap of 10 MB, 100 MB and 1 GB databases (MB/s).

For each size, peer0 gets results through its control socket (``ingest`` in 50k-row
chunks) and is restarted so its database is checkpointed; the size is the DuckDB file
plus the block log (as in bench_catchup). Then, with real daemons on loopback:

* export: ``snapshot_export`` on peer0 (a fresh export: Parquet + UnixFS + CAR file);
* import: ``snapshot_import`` of that CAR into an empty daemon (verify every block,
  load, check the CID);
* bootstrap: a new empty daemon with ``bootstrap_snapshot`` and both peers (peer0 and
  the imported one, which offer the same snapshot CID) as bootstrap peers, timed from
  process start until its database CID equals peer0's; and the same from peer0 alone.
  Both serving peers have exported already (their snapshot is cached), so this is
  fetch + verify + load (+ daemon start-up, listed apart).

MB/s are of the database size. Compare with bench_catchup (delta catch-up, 24-33 MB/s).

    .venv/bin/python bench/bench_snapshot.py                 # 10, 100, 1000 MB
    .venv/bin/python bench/bench_snapshot.py --quick         # 10 MB
    .venv/bin/python bench/bench_snapshot.py --sizes 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import (
    bench_main,
    bench_parser,
    db_files_bytes,
    ingest_rows,
    parse_quick,
    print_table,
    wait_cid,
)

from daemon.localcluster import LocalPeer

MB = 1e6
BYTES_PER_ROW = 200  # database bytes per result row (bench_catchup: 198 MB for 1M rows)


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_snapshot", "10 MB only")
    p.add_argument("--sizes", default="10,100,1000", help="database sizes in MB (approx.)")
    p.add_argument("--chunk", type=int, default=50_000, help="rows per ingest call")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after seconds")
    p.add_argument("--keep", help="work in this directory and keep it (daemon logs)")
    return parse_quick(p, sizes="10")


def fill(peer: LocalPeer, rows: int, chunk: int) -> None:
    with peer.client() as client:
        ingest_rows(client, rows, chunk)


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def bootstrap_from(
    name: str, tmp: Path, sources: list[LocalPeer], cid: str, timeout: float
) -> dict[str, Any]:
    peer = LocalPeer(
        name,
        tmp / name,
        {"DUCKPEER_BOOTSTRAP_SNAPSHOT": "1", "DUCKPEER_BOOTSTRAP_SNAPSHOT_MIN_BYTES": "0"},
    )
    started = time.perf_counter()
    peer.spawn([s.listen_addr for s in sources])
    try:
        peer.wait_ready(60)
        ready = time.perf_counter()
        done = wait_cid(peer, cid, timeout)
        metrics = peer.status()["metrics"]
    finally:
        peer.stop()
    split = _logged_split(peer.log_path)
    return {
        "fetch_s": split.get("fetch_s"),
        "load_s": split.get("load_s"),
        "fetched_bytes": split.get("bytes"),
        "peers": len(sources),
        "seconds_from_spawn": round(done - started, 3),
        "seconds_from_ready": round(done - ready, 3),
        "startup_s": round(ready - started, 3),
        "snapshot_bootstraps": metrics.get("snapshot_bootstraps", 0),
        "sync_changesets_in": metrics.get("sync_changesets_in", 0),
    }


def _logged_split(log: Path) -> dict[str, Any]:
    """fetch_s / load_s / bytes from the daemon's "bootstrapped from snapshot" log line."""
    for line in log.read_text().splitlines():
        if '"bootstrapped from snapshot"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    return {}


def one_size(size_mb: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rows = size_mb * int(MB) // BYTES_PER_ROW
    work = tmp / f"{size_mb}mb"
    src = LocalPeer("peer0", work / "p0").start()
    imp = LocalPeer("imported", work / "p1")
    try:
        print(f"\n[{size_mb} MB] filling peer0 with {rows:,} rows…", flush=True)
        fill(src, rows, args.chunk)
        src.stop()  # close = CHECKPOINT
        src.start()
        size = db_files_bytes(src.data_dir)
        cid = src.status()["db_cid"]
        car = work / "snapshot.car"
        export_s, exported = timed(lambda: src.call("snapshot_export", path=str(car)))
        print(f"  exported {exported['bytes'] / MB:.1f} MB CAR in {export_s:.2f} s", flush=True)
        imp.start()
        import_s, _ = timed(lambda: imp.call("snapshot_import", path=str(car)))
        assert imp.status()["db_cid"] == cid
        print(f"  imported in {import_s:.2f} s", flush=True)
        imp.call("snapshot_export")  # the second peer has its snapshot ready, like peer0
        both = bootstrap_from("boot2", work, [src, imp], cid, args.timeout)
        print(f"  bootstrap from 2 peers: {both['seconds_from_spawn']:.2f} s", flush=True)
        single = bootstrap_from("boot1", work, [src], cid, args.timeout)
        print(f"  bootstrap from 1 peer:  {single['seconds_from_spawn']:.2f} s", flush=True)
    finally:
        imp.stop()
        src.stop()
    db_mb = size["total"] / MB
    return {
        "size_mb_target": size_mb,
        "rows": rows,
        "db": size,
        "car_bytes": exported["bytes"],
        "car_blocks": exported["blocks"],
        "export_s": round(export_s, 3),
        "import_s": round(import_s, 3),
        "bootstrap_2_peers": both,
        "bootstrap_1_peer": single,
        "export_mb_per_s": round(db_mb / export_s, 1),
        "import_mb_per_s": round(db_mb / import_s, 1),
        "bootstrap_2_mb_per_s": round(db_mb / both["seconds_from_spawn"], 1),
        "bootstrap_1_mb_per_s": round(db_mb / single["seconds_from_spawn"], 1),
    }


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    return {"sizes": [one_size(s, args, tmp) for s in sizes]}


def report(res: dict[str, Any]) -> None:
    rows = []
    for r in res["sizes"]:
        db = r["db"]["total"] / MB
        b2, b1 = r["bootstrap_2_peers"], r["bootstrap_1_peer"]
        rows.append([f"{db:.0f} MB ({r['rows']:,} rows)", r["car_bytes"] / MB,
                     r["export_s"], r["export_mb_per_s"], r["import_s"], r["import_mb_per_s"],
                     b2["seconds_from_spawn"], r["bootstrap_2_mb_per_s"],
                     b1["seconds_from_spawn"], r["bootstrap_1_mb_per_s"],
                     b2["startup_s"], b2.get("fetch_s"), b2.get("load_s")])  # fmt: skip
    print_table(
        "snapshot export / import / bootstrap (MB/s of database; bootstrap from process start)",
        ["database", "CAR MB", "export s", "MB/s", "import s", "MB/s",
         "boot 2 peers s", "MB/s", "boot 1 peer s", "MB/s", "start-up s", "fetch s", "load s"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dp-bench-snapshot-"))
