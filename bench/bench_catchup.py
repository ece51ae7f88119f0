"""Full catch-up of an empty peer from a large database (MB/s).

peer0 alone gets ``--rows`` results through its control socket (``Client.ingest_columns``
in ``--chunk`` row chunks, one changeset each), then is restarted so that its database
is checkpointed (the daemon checkpoints on close; the size figure is the ``.duckdb``
file plus any ``.wal``). Then an empty peer1 starts with peer0 as its bootstrap peer and
we time until peer1's ``db_cid`` equals peer0's, polling ``status`` every 20 ms.

Reported: database size of peer0, bytes peer1 received on sync streams (its status
metric ``sync_bytes_in``), seconds from starting peer1 (process start, so daemon start-up
is included) and from peer1 answering on its socket, MB/s of database and MB/s on the
wire, and peer1's own database size afterwards.

Goal (issue): catch-up >= 70 MB/s of database.

    .venv/bin/python bench/bench_catchup.py            # 1,000,000 rows
    .venv/bin/python bench/bench_catchup.py --quick    # 200,000 rows
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
    db_files_bytes,
    ingest_rows,
    parse_quick,
    print_table,
)

from daemon.localcluster import ClusterError, LocalPeer

GOAL_MB_S = 70.0
MB = 1e6


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_catchup", "200,000 rows")
    p.add_argument("--rows", type=int, default=1_000_000, help="results on peer0 (default 1M)")
    p.add_argument("--chunk", type=int, default=50_000, help="rows per ingest call (default 50k)")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after seconds")
    p.add_argument(
        "--poll-ms",
        type=float,
        default=100.0,
        help="status poll interval on peer1 (default 100; polling costs it CPU)",
    )
    p.add_argument(
        "--no-split",
        action="store_true",
        help="skip the in-process apply of the same blocks (no network)",
    )
    return parse_quick(p, rows=200_000)


def fill(peer: LocalPeer, rows: int, chunk: int) -> float:
    """Ingest ``rows`` results on ``peer`` through the control socket; seconds taken."""
    with peer.client() as client:
        return ingest_rows(client, rows, chunk)


def wait_caught_up(
    peer: LocalPeer, cid: str, timeout: float, poll_s: float
) -> tuple[float, dict[str, Any]]:
    """Poll ``peer`` until its db_cid is ``cid``; (perf_counter at match, status)."""
    deadline = time.perf_counter() + timeout
    while True:
        status = peer.status()
        if status["db_cid"] == cid:
            return time.perf_counter(), status
        if time.perf_counter() > deadline:
            raise ClusterError(f"peer1 not caught up after {timeout} s: {status['rows']}")
        time.sleep(poll_s)


def apply_in_process(src_dir: Path, work: Path) -> dict[str, Any]:
    """Apply peer0's changeset blocks to an empty Store in process: catch-up minus network.

    Batches are formed like the sync client does (up to 16 MiB or 512 blocks).
    """
    from daemon.net import sync
    from daemon.store.database import Store
    from protocol import changeset as cs_codec

    print("in-process apply of the same blocks (no network)…", flush=True)
    source = Store(src_dir / "duckpeer.duckdb")
    try:
        t = time.perf_counter()
        blocks = [b for batch in source.missing_for({}) for b in batch]
        read_s = time.perf_counter() - t
    finally:
        source.close()
    t = time.perf_counter()
    for block in blocks:
        cs_codec.decode(block)
    decode_s = time.perf_counter() - t
    batches: list[list[bytes]] = [[]]
    size = 0
    for block in blocks:
        if batches[-1] and (
            size + len(block) > sync.APPLY_BATCH_BYTES
            or len(batches[-1]) >= sync.APPLY_BATCH_BLOCKS
        ):
            batches.append([])
            size = 0
        batches[-1].append(block)
        size += len(block)
    work.mkdir(parents=True, exist_ok=True)
    target = Store(work / "apply.duckdb")
    try:
        t = time.perf_counter()
        for batch in batches:
            target.apply_blocks(batch)
        apply_s = time.perf_counter() - t
        t = time.perf_counter()
        target._writer.execute("CHECKPOINT")
        checkpoint_s = time.perf_counter() - t
    finally:
        target.close()
    return {
        "blocks": len(blocks),
        "block_bytes": sum(len(b) for b in blocks),
        "read_blocks_s": round(read_s, 3),
        "decode_validate_s": round(decode_s, 3),
        "apply_s": round(apply_s, 3),
        "checkpoint_s": round(checkpoint_s, 3),
        "note": "apply_s includes decode+validate; decode_validate_s is measured apart too",
    }


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    src = LocalPeer("peer0", tmp / "p0").start()
    dst = LocalPeer("peer1", tmp / "p1")
    try:
        print(f"filling peer0 with {args.rows:,} rows…", flush=True)
        fill_s = fill(src, args.rows, args.chunk)
        before = db_files_bytes(src.data_dir)
        src.stop()  # close = CHECKPOINT; the file is then the whole database
        src.start()
        status0 = src.status()
        size0 = db_files_bytes(src.data_dir)
        print(f"peer0: {size0['total'] / MB:.0f} MB database; starting empty peer1…", flush=True)
        started = time.perf_counter()
        dst.start([src.listen_addr], timeout=60)
        ready = time.perf_counter()
        done, status1 = wait_caught_up(dst, status0["db_cid"], args.timeout, args.poll_ms / 1000)
    finally:
        dst.stop()
        src.stop()
    size1 = db_files_bytes(dst.data_dir)  # after close: checkpointed
    total = done - started
    after_ready = done - ready
    wire = status1["metrics"].get("sync_bytes_in", 0)
    split = None if args.no_split else apply_in_process(src.data_dir, tmp / "apply")
    return {
        "in_process_apply": split,
        "rows": args.rows,
        "changesets": status0["changesets"],
        "fill_s": round(fill_s, 3),
        "fill_rows_per_s": round(args.rows / fill_s),
        "peer0_db_before_checkpoint": before,
        "peer0_db": size0,
        "peer0_status_db_bytes": status0["db_bytes"],
        "peer1_db_after": size1,
        "sync_bytes_in": wire,
        "sync_changesets_in": status1["metrics"].get("sync_changesets_in", 0),
        "seconds_from_spawn": round(total, 3),
        "seconds_from_ready": round(after_ready, 3),
        "peer1_startup_s": round(ready - started, 3),
        "db_mb_per_s": round(size0["total"] / MB / total, 2),
        "duckdb_mb_per_s": round(size0["duckdb"] / MB / total, 2),
        "db_mb_per_s_from_ready": round(size0["total"] / MB / after_ready, 2),
        "wire_mb_per_s": round(wire / MB / total, 2),
        "rows_per_s": round(args.rows / total),
        "goal_mb_per_s": GOAL_MB_S,
    }


def report(res: dict[str, Any]) -> None:
    rows = [
        ["peer0 database (.duckdb + .wal + block log)", res["peer0_db"]["total"] / MB, ""],
        ["  of which DuckDB file + WAL", res["peer0_db"]["duckdb"] / MB, ""],
        [
            "  before checkpoint (.duckdb + .wal)",
            res["peer0_db_before_checkpoint"]["total"] / MB,
            "",
        ],
        ["bytes received on sync streams (peer1)", res["sync_bytes_in"] / MB, ""],
        ["peer1 database after catch-up", res["peer1_db_after"]["total"] / MB, ""],
        ["catch-up from spawning peer1", res["seconds_from_spawn"], "s"],
        ["catch-up from peer1 ready", res["seconds_from_ready"], "s"],
        ["database rate (from spawn)", res["db_mb_per_s"], "MB/s"],
        ["wire rate (from spawn)", res["wire_mb_per_s"], "MB/s"],
        ["rows/s", res["rows_per_s"], ""],
    ]
    print_table(
        f"catch-up of an empty peer: {res['rows']:,} rows in {res['changesets']} changesets",
        ["figure", "value (MB unless said)", "unit"],
        rows,
    )
    print(f"goal >= {GOAL_MB_S:.0f} MB/s of database: {res['db_mb_per_s']:.1f} MB/s")
    sp = res.get("in_process_apply")
    if sp:
        db_mb = res["peer0_db"]["total"] / MB
        print_table(
            "split: the same blocks applied in process to an empty Store (no daemon, no network)",
            ["step", "seconds", "MB/s of database"],
            [
                ["read blocks from peer0's log", sp["read_blocks_s"], db_mb / sp["read_blocks_s"]],
                [
                    "decode + validate all blocks",
                    sp["decode_validate_s"],
                    db_mb / sp["decode_validate_s"],
                ],
                ["Store.apply_blocks (incl. decode)", sp["apply_s"], db_mb / sp["apply_s"]],
            ],
        )


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dpcu-"))
