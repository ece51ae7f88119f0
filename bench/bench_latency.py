"""Write on A -> visible on B: replication latency in a 3-peer loopback cluster.

Records one result on peer0 (``Client.store_performance_result``) and polls peer1 and
peer2 over open control connections with
``SELECT count(*) FROM performance_results WHERE result_id = '<id>'`` until both see
it. The clock starts just before the record call, so the figure includes the local
commit, the announce (gossip), the delta pull and the apply on the receiver.

Goal (issue): p50 <= 50 ms, p99 <= 300 ms.

    .venv/bin/python bench/bench_latency.py            # 200 writes
    .venv/bin/python bench/bench_latency.py --quick    # 30 writes
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import bench_main, bench_parser, parse_quick, print_table, summary_ms

from daemon.localcluster import LocalCluster, wait_until
from peerctl.client import Client

GOAL = {"p50_ms": 50.0, "p99_ms": 300.0}


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_latency", "30 writes")
    p.add_argument("--iterations", type=int, default=200, help="measured writes (default 200)")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured writes first (default 5)")
    p.add_argument("--peers", type=int, default=3, help="cluster size, >= 2 (default 3)")
    p.add_argument("--gap-ms", type=float, default=10.0, help="pause between writes (default 10)")
    p.add_argument(
        "--poll-ms", type=float, default=0.0, help="sleep between polls; 0 = tight loop (default)"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="per-write visibility deadline, s")
    return parse_quick(p, iterations=30, warmup=3)


def one_write(
    writer: Client, readers: dict[str, Client], i: int, timeout: float, poll_s: float
) -> dict[str, Any]:
    """Record one result on the writer and wait until every reader sees it."""
    started = time.perf_counter()
    result_id = writer.store_performance_result(
        model_name="bert-base-uncased",
        hardware_type="cuda",
        device_name="A100",
        throughput=800.0 + i,
        latency=9.5,
        batch_size=8,
        precision="fp16",
    )
    acked = time.perf_counter()
    sql = f"SELECT count(*) FROM performance_results WHERE result_id = '{result_id}'"
    pending = dict(readers)
    seen: dict[str, float] = {}
    polls = 0
    deadline = started + timeout
    while pending:
        for name, client in list(pending.items()):
            polls += 1
            if client.query(sql)["rows"][0][0] == 1:
                seen[name] = time.perf_counter() - started
                del pending[name]
        if time.perf_counter() > deadline:
            break
        if poll_s and pending:
            time.sleep(poll_s)
    return {"ack": acked - started, "seen": seen, "missed": sorted(pending), "polls": polls}


def wait_mesh(cluster: LocalCluster, timeout: float = 30.0) -> None:
    """Every peer connected to another and all at the same CID."""
    wait_until(
        lambda: all(s["peers"] >= 1 for s in cluster.statuses()), timeout, "peers to connect"
    )
    cluster.wait_converged(timeout)


def run(args: argparse.Namespace, _workdir: Path) -> dict[str, Any]:
    with LocalCluster(args.peers) as cluster:
        wait_mesh(cluster)
        names = [p.name for p in cluster.peers[1:]]
        writer = cluster.peers[0].client()
        readers = {p.name: p.client() for p in cluster.peers[1:]}
        try:
            for i in range(args.warmup):
                one_write(writer, readers, -1 - i, args.timeout, args.poll_ms / 1000)
            samples = []
            started = time.perf_counter()
            for i in range(args.iterations):
                samples.append(one_write(writer, readers, i, args.timeout, args.poll_ms / 1000))
                if args.gap_ms:
                    time.sleep(args.gap_ms / 1000)
            wall = time.perf_counter() - started
            statuses = cluster.statuses()
        finally:
            writer.close()
            for c in readers.values():
                c.close()
    per_peer = {n: summary_ms([s["seen"][n] for s in samples if n in s["seen"]]) for n in names}
    all_seen = [max(s["seen"].values()) for s in samples if not s["missed"]]
    return {
        "per_peer": per_peer,
        "all_peers": summary_ms(all_seen),
        "write_ack": summary_ms([s["ack"] for s in samples]),
        "missed": sum(1 for s in samples if s["missed"]),
        "polls_per_write": round(sum(s["polls"] for s in samples) / max(1, len(samples)), 1),
        "wall_s": round(wall, 3),
        "sync_pulls": {
            st["peer_id"][-8:]: st["metrics"].get("sync_changesets_in", 0) for st in statuses
        },
        "goal": GOAL,
    }


def report(res: dict[str, Any]) -> None:
    rows = []
    for name, s in [
        *res["per_peer"].items(),
        ("both (max)", res["all_peers"]),
        ("write ack on peer0", res["write_ack"]),
    ]:
        rows.append([name, s["n"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]])
    print_table(
        "write on peer0 -> visible (ms, from before the record call)",
        ["receiver", "n", "p50", "p95", "p99", "max"],
        rows,
    )
    both = res["all_peers"]
    print(
        f"goal p50 <= {GOAL['p50_ms']:.0f} ms: {both['p50_ms']:.1f} ms; "
        f"goal p99 <= {GOAL['p99_ms']:.0f} ms: {both['p99_ms']:.1f} ms; "
        f"missed deadline: {res['missed']}; polls/write: {res['polls_per_write']}"
    )


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dplat-"))
