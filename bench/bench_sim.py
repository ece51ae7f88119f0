"""The cluster simulator as N grows: the daemon's real gossip, announce, sync, membership
and connection code on the in-memory transport, in virtual time (daemon/sim).

For each N: peers join over ``--spread`` s; the figures, all in *virtual* seconds:

- settle: until every peer holds its target number of connections;
- writes: one small write on a random peer at a time; time until every peer holds it
  (p50/p99), gossip rounds (the most hops its announce took), share delivered by push;
- idle: after ``--warm`` s (the first heartbeats' periods still grow), messages and
  bytes each peer receives per second (median, max), over ``--window`` s, and the
  ratio of the per-peer message rate to the smallest N's (flat = O(1));
- partition: split in two halves for ``--partition`` s with writes on both sides, heal:
  time to one database CID, bytes and dials per peer during the heal;
- churn (``--churn`` s, off with 0): a peer stops every 10 s (half crash), a stopped one
  comes back (half on a new address), a write every 5 s: misses, time to converge.

Wall time is printed too (it measures the simulator, not the daemon).

    .venv/bin/python bench/bench_sim.py            # N = 100, 300, 1000 (tens of minutes)
    .venv/bin/python bench/bench_sim.py --quick    # N = 50, 100, shorter phases
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
import trio
from _common import bench_main, bench_parser, parse_quick, print_table

from daemon.logs import configure_logging
from daemon.sim import scenarios
from daemon.sim.cluster import SimCluster, SimSettings


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_sim", "N = 50, 100; 3 writes; short phases")
    p.add_argument("--sizes", default="100,300,1000", help="cluster sizes (default 100,300,1000)")
    p.add_argument("--writes", type=int, default=10, help="measured writes per N (default 10)")
    p.add_argument("--spread", type=float, default=20.0, help="join spread, virtual s")
    p.add_argument("--warm", type=float, default=600.0, help="virtual s before the idle window")
    p.add_argument("--window", type=float, default=120.0, help="idle window, virtual s")
    p.add_argument("--partition", type=float, default=60.0, help="partition length, virtual s")
    p.add_argument("--churn", type=float, default=300.0, help="churn phase, virtual s (0 = off)")
    p.add_argument("--latency-ms", default="5,50", help="one-way link latency range, ms")
    p.add_argument("--loss", type=float, default=0.01, help="gossip loss per link (default 1 %%)")
    p.add_argument("--seed", type=int, default=15)
    args = parse_quick(
        p, writes=3, warm=400.0, window=120.0, partition=20.0, churn=60.0, spread=5.0
    )
    if args.quick and args.sizes == "100,300,1000":
        args.sizes = "50,100"
    return args


def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every phase on one fresh cluster of ``n`` peers."""
    random.seed(args.seed)
    lo, hi = (float(x) / 1000 for x in args.latency_ms.split(","))
    cluster = SimCluster(n, SimSettings(latency=(lo, hi), loss=args.loss, seed=args.seed))
    wall = time.perf_counter()

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"n": n}
        async with trio.open_nursery() as nursery:
            out["settle_s"] = await scenarios.settle(cluster, nursery, spread=args.spread)
            out["degree_max"] = max(scenarios.degrees(cluster))
            out["writes"] = (await scenarios.writes(cluster, args.writes, seed=args.seed)).summary()
            await trio.sleep(args.warm)
            out["idle"] = dataclasses.asdict(await scenarios.traffic(cluster, args.window))
            heal = await scenarios.partition_heal(cluster, args.partition)
            out["partition"] = dataclasses.asdict(heal)
            if args.churn:
                out["churn"] = dataclasses.asdict(await scenarios.churn(cluster, args.churn))
            out["one_cid"] = cluster.converged()
            nursery.cancel_scope.cancel()
        return out

    out = scenarios.run(main)
    out["wall_s"] = round(time.perf_counter() - wall, 1)
    print(f"N={n}: done in {out['wall_s']} s wall", flush=True)
    return out


def run(args: argparse.Namespace, _workdir: Path) -> dict[str, Any]:
    configure_logging("error")  # thousands of peers' info lines would swamp the figures
    sizes = [int(x) for x in args.sizes.split(",")]
    runs = [one_size(n, args) for n in sizes]
    base = runs[0]["idle"]["gossip_in_median"] or 1.0
    for r in runs:
        r["idle"]["gossip_in_ratio_to_smallest"] = round(r["idle"]["gossip_in_median"] / base, 2)
    return {"runs": runs}


def report(res: dict[str, Any]) -> None:
    runs = res["runs"]
    print_table(
        "simulated cluster: convergence after a write (virtual seconds)",
        ["N", "settle s", "deg max", "writes", "missing", "p50 s", "p99 s", "rounds", "push %"],
        [
            [
                r["n"], r["settle_s"], r["degree_max"], r["writes"]["writes"],
                r["writes"]["missing"], r["writes"]["everywhere_p50_s"],
                r["writes"]["everywhere_p99_s"], r["writes"]["rounds_max"],
                100 * r["writes"]["by_push_share"],
            ]
            for r in runs
        ],
    )  # fmt: skip
    print_table(
        "idle, per peer per second (median / max over peers)",
        ["N", "msgs in", "msgs in max", "ratio", "bytes", "bytes max", "streams"],
        [
            [
                r["n"], r["idle"]["gossip_in_median"], r["idle"]["gossip_in_max"],
                r["idle"]["gossip_in_ratio_to_smallest"], r["idle"]["bytes_median"],
                r["idle"]["bytes_max"], r["idle"]["streams_median"],
            ]
            for r in runs
        ],
    )  # fmt: skip
    print_table(
        "partition into halves, writes on both, heal",
        ["N", "partition s", "heal s", "bytes/peer", "dials/peer", "one CID", "wall s"],
        [
            [
                r["n"], r["partition"]["partition_s"], r["partition"]["heal_s"],
                r["partition"]["bytes_per_peer"], r["partition"]["dials_per_peer"],
                r["one_cid"], r["wall_s"],
            ]
            for r in runs
        ],
    )  # fmt: skip
    churned = [r for r in runs if "churn" in r]
    if churned:
        print_table(
            "churn: a peer stops every 10 s, one comes back (half on a new address)",
            ["N", "stops", "moved", "writes", "missing", "p99 s", "converged s", "members"],
            [
                [
                    r["n"], r["churn"]["stops"], r["churn"]["restarts_new_address"],
                    r["churn"]["writes"]["writes"], r["churn"]["writes"]["missing"],
                    r["churn"]["writes"]["everywhere_p99_s"], r["churn"]["converged_after_s"],
                    r["churn"]["members_median"],
                ]
                for r in churned
            ],
        )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dp-bench-sim-"))
