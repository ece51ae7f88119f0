"""Real daemons as the cluster grows: idle CPU and memory per daemon, write -> visible on
all, misses, distinct database CIDs (issue 15).

For each N, a fresh loopback cluster of N ``duckpeerd`` processes (all bootstrapping
from the first, like ``LocalCluster``) with the *default* timers (announce interval 3 s,
cluster heartbeat rate 0.1/s, anti-entropy 10 s; ``--fast-timers`` uses the test
cluster's shorter ones):

1. start, wait until every daemon has a connection and all hold one CID, then let
   them idle ``--settle`` s (startup work is not idle cost). With ``--steady`` the
   settle also covers the heartbeat ramp: a daemon's heartbeat period may at most
   double from one announce to the next (members time it out after three periods),
   so a cluster started all at once announces faster than its steady rate for the
   first ``1.2 * (2 + 20 + 40 + ...)`` s, up to its target period N / 0.1 s (about 6
   minutes at N = 20, 12 at N = 50);
2. idle CPU: utime + stime from /proc/<pid>/stat of every daemon over ``--window`` s,
   as % of one core: median and max over daemons, and the median's ratio to the
   smallest N's (CPU seconds stay meaningful on a loaded machine; a flat ratio means
   the idle cost does not grow with N); RSS (VmRSS) median, max and total; connections
   per daemon;
3. ``--writes`` writes, each on a random daemon, one at a time ``--gap`` s apart: time
   from before the record call until every other daemon has the row, as each daemon's
   live subscription (``Client.watch``) reports it (``--observe poll``: a query on
   every daemon every ``--poll-ms`` instead, which itself loads the cores), p50/p99; a
   write not everywhere within ``--timeout`` s is a miss. The first write waits until
   every subscription is up (until 2026-12-04 it did not, and its time held the
   subscriptions' set-up on all N daemons at once);
4. distinct database CIDs once every write was seen (or after ``--timeout`` s);
5. what bounded links cost a distributed query: from ``--coordinators`` random
   daemons, ``--dq-runs`` runs each of a tiny distributed query with no ``--nodes``
   limit (it uses every connected peer at our CID, never dials one): how many peers took
   part against N and against the coordinator's connections, and its time (p50/p99)
   beside the same query run locally.

    .venv/bin/python bench/bench_scale.py            # N = 3, 20, 50 (about 15 minutes)
    .venv/bin/python bench/bench_scale.py --quick    # N = 3, 10, shorter windows
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _common import bench_main, bench_parser, parse_quick, percentile, print_table

from daemon.localcluster import ClusterError, LocalCluster, LocalPeer, wait_until
from peerctl.client import Client, ClientError

GOAL = {"idle_cpu_pct": 0.3, "p50_ms": 500.0, "p99_ms": 2000.0, "missing": 0, "cids": 1}
DEFAULT_TIMERS = {
    "DUCKPEER_ANNOUNCE_INTERVAL": "3.0",
    "DUCKPEER_ANNOUNCE_CLUSTER_RATE": "0.1",
    "DUCKPEER_ANTI_ENTROPY_INTERVAL": "10.0",
    "DUCKPEER_ANTI_ENTROPY_MAX_INTERVAL": "60.0",  # LocalCluster's FAST_TIMERS set 6 s
    # Every daemon here dials from 127.0.0.1: the per-IP inbound budget (10/s) is for one
    # host's flood, and at N = 50 it kept refusing the last joiners' bootstrap dials.
    "DUCKPEER_CONNECTIONS_PER_IP_PER_SECOND": "0",
}
TICKS = os.sysconf("SC_CLK_TCK")
START_WAVE = 10  # daemons started at once (50 at once did not answer within 30 s)


def parse_args() -> argparse.Namespace:
    p = bench_parser(__doc__, "bench_scale", "N = 3, 10; 10 writes; 20 s windows")
    p.add_argument("--sizes", default="3,20,50", help="cluster sizes (default 3,20,50)")
    p.add_argument("--settle", type=float, default=30.0, help="idle s before measuring")
    p.add_argument(
        "--steady",
        action="store_true",
        help="settle past the heartbeat ramp (steady-state idle; long)",
    )
    p.add_argument("--window", type=float, default=60.0, help="idle CPU window, s")
    p.add_argument("--writes", type=int, default=30, help="writes per N (default 30)")
    p.add_argument("--gap", type=float, default=1.0, help="s between writes (default 1)")
    p.add_argument("--timeout", type=float, default=30.0, help="s before a write is a miss")
    p.add_argument("--observe", choices=("watch", "poll"), default="watch",
                   help="how arrivals are seen: each daemon's live subscription (default) "
                   "or a query on every daemon every --poll-ms")  # fmt: skip
    p.add_argument("--poll-ms", type=float, default=10.0, help="pause between poll rounds")
    p.add_argument("--fast-timers", action="store_true", help="the test cluster's timers")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--coordinators", type=int, default=3, help="daemons that coordinate")
    p.add_argument("--dq-runs", type=int, default=20, help="distributed queries each")
    p.add_argument("--keep", help="work in this directory and keep it (the daemons' logs)")
    args = parse_quick(p, settle=10.0, window=20.0, writes=10)
    if args.quick and args.sizes == "3,20,50":
        args.sizes = "3,10"
    return args


def ramp_seconds(n: int) -> float:
    """How long a cluster of ``n`` started at once announces faster than it will (see
    step 1): the first beat at 2 s, then periods doubling from 20 s to N / rate."""
    rate = float(DEFAULT_TIMERS["DUCKPEER_ANNOUNCE_CLUSTER_RATE"])
    target = max(float(DEFAULT_TIMERS["DUCKPEER_ANNOUNCE_INTERVAL"]), n / rate)
    ramp, period = 2.0, 20.0
    while period < target:
        ramp += period
        period *= 2
    return 1.2 * ramp  # periods are jittered by up to 20 %


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pid(peer: LocalPeer) -> int:
    assert peer.proc is not None
    return peer.proc.pid


def wait_ready(cluster: LocalCluster, timeout: float) -> float:
    """Every daemon connected to another, one CID; seconds it took."""
    started = time.monotonic()
    wait_until(
        lambda: all(s["peers"] >= 1 for s in cluster.statuses()), timeout, "peers to connect", 0.5
    )
    cluster.wait_converged(timeout)
    return time.monotonic() - started


def idle(cluster: LocalCluster, window: float) -> dict[str, Any]:
    """CPU % of one core per daemon over ``window`` s, RSS, connections."""
    pids = [_pid(p) for p in cluster.peers]
    before = [cpu_seconds(pid) for pid in pids]
    started = time.monotonic()
    time.sleep(window)  # the measurement window itself, not a wait for a condition
    seconds = time.monotonic() - started
    cpu = [100 * (cpu_seconds(pid) - b) / seconds for pid, b in zip(pids, before, strict=True)]
    rss = [rss_mb(pid) for pid in pids]
    conns = [s["peers"] for s in cluster.statuses()]
    return {
        "window_s": round(seconds, 1),
        "cpu_pct_median": round(statistics.median(cpu), 3),
        "cpu_pct_max": round(max(cpu), 3),
        "cpu_pct": [round(c, 3) for c in cpu],
        "rss_mb_median": round(statistics.median(rss), 1),
        "rss_mb_max": round(max(rss), 1),
        "rss_mb_total": round(sum(rss), 1),
        "connections_median": statistics.median(conns),
        "connections_max": max(conns),
    }


def one_write(
    clients: list[Client], writer: int, i: int, timeout: float, poll_s: float
) -> float | None:
    """Record on ``clients[writer]``; seconds until every other daemon has the row
    (polled with a query on each)."""
    started = time.perf_counter()
    result_id = clients[writer].store_performance_result(
        model_name=f"scale-{i}", hardware_type="cuda", throughput=1.0 + i, latency=2.0
    )
    sql = f"SELECT count(*) FROM performance_results WHERE result_id = '{result_id}'"
    pending = [c for j, c in enumerate(clients) if j != writer]
    while pending:
        pending = [c for c in pending if c.query(sql)["rows"][0][0] != 1]
        if not pending:
            break
        if time.perf_counter() - started > timeout:
            return None
        time.sleep(poll_s)
    return time.perf_counter() - started


class Arrivals:
    """When each daemon's live subscription (``Client.watch``) saw each result: the
    daemons tell us, nobody polls them (19 pollers every 10 ms load the very cores the
    daemons replicate on)."""

    def __init__(self, peers: list[LocalPeer]) -> None:
        self.seen: dict[tuple[int, str], float] = {}
        self.subscribed: set[int] = set()
        self.lock = threading.Lock()
        self.clients = [p.client() for p in peers]
        for i, client in enumerate(self.clients):
            threading.Thread(target=self._follow, args=(i, client), daemon=True).start()

    def _follow(self, i: int, client: Client) -> None:
        try:
            for event in client.watch("SELECT result_id FROM performance_results"):
                if event.get("event") == "snapshot":  # the subscription is up
                    with self.lock:
                        self.subscribed.add(i)
                elif event.get("event") == "added":
                    with self.lock:
                        self.seen.setdefault((i, str(event["row"][0])), time.perf_counter())
        except ClientError:
            pass  # the cluster is stopping

    def wait_subscribed(self, timeout: float) -> None:
        """Until every daemon has set up its subscription (the first watch on a daemon
        loads the query parser and runs the query: that cost is not a write's)."""
        wait_until(lambda: len(self.subscribed) == len(self.clients), timeout, "subscriptions")

    def everywhere(self, result_id: str, but: int) -> float | None:
        """The last arrival of ``result_id`` on the daemons other than ``but``, if all."""
        with self.lock:
            times = [self.seen.get((i, result_id)) for i in range(len(self.clients)) if i != but]
        return None if None in times else max(t for t in times if t is not None)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def watched_write(
    clients: list[Client], arrivals: Arrivals, writer: int, i: int, timeout: float
) -> float | None:
    """Record on ``clients[writer]``; seconds until every other daemon's subscription
    saw the row."""
    started = time.perf_counter()
    result_id = clients[writer].store_performance_result(
        model_name=f"scale-{i}", hardware_type="cuda", throughput=1.0 + i, latency=2.0
    )
    try:
        last = wait_until(lambda: arrivals.everywhere(result_id, writer), timeout, "arrivals",
                          0.002)  # fmt: skip
    except ClusterError:
        return None
    return float(last) - started


def writes(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    """``args.writes`` writes on random daemons; time to visible everywhere."""
    rng = random.Random(args.seed)
    clients = [p.client() for p in cluster.peers]
    arrivals = Arrivals(cluster.peers) if args.observe == "watch" else None
    try:
        if arrivals is not None:
            arrivals.wait_subscribed(args.timeout)
        seen = []
        for i in range(args.writes):
            writer = rng.randrange(len(clients))
            if arrivals is not None:
                seen.append(watched_write(clients, arrivals, writer, i, args.timeout))
            else:
                seen.append(one_write(clients, writer, i, args.timeout, args.poll_ms / 1000))
            time.sleep(args.gap)  # the pacing between writes, not a wait for a condition
    finally:
        for c in clients:
            c.close()
        if arrivals is not None:
            arrivals.close()
    done = [s * 1000 for s in seen if s is not None]
    try:
        cluster.wait_converged(args.timeout)
    except ClusterError:
        pass  # counted below
    return {
        "writes": len(seen),
        "missing": len(seen) - len(done),
        "p50_ms": round(percentile(done, 50), 1) if done else None,
        "p99_ms": round(percentile(done, 99), 1) if done else None,
        "max_ms": round(max(done), 1) if done else None,
        "distinct_cids": len({s["db_cid"] for s in cluster.statuses()}),
    }


DQ_SQL = "SELECT count(*) FROM performance_results"


def distributed(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Tiny distributed queries from a few daemons: participants and time."""
    rng = random.Random(args.seed + 1)
    chosen = rng.sample(range(len(cluster.peers)), min(args.coordinators, len(cluster.peers)))
    used, links, dist_ms, local_ms = [], [], [], []
    for i in chosen:
        with cluster.peers[i].client() as client:
            client.execute_distributed_query(DQ_SQL)  # warm: plan, links, capacity
            for _ in range(args.dq_runs):
                local_ms.append(client.query(DQ_SQL, cache=False)["elapsed_ms"])
                d = client.execute_distributed_query(DQ_SQL)
                used.append(d["node_count"])
                dist_ms.append(d["execution_ms"])
            links.append(client.status()["peers"])
    return {
        "coordinators": len(chosen),
        "nodes_used_median": statistics.median(used),
        "nodes_used_min": min(used),
        "nodes_used_max": max(used),
        "coordinator_links_median": statistics.median(links),
        "distributed_p50_ms": round(percentile(dist_ms, 50), 1),
        "distributed_p99_ms": round(percentile(dist_ms, 99), 1),
        "local_p50_ms": round(percentile(local_ms, 50), 2),
    }


def one_size(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every measurement on one fresh cluster of ``n`` daemons."""
    env = None if args.fast_timers else DEFAULT_TIMERS
    started = time.monotonic()
    cluster = LocalCluster(n, base_dir=workdir / f"n{n}", env=env, start_wave=START_WAVE,
                           start_timeout=120.0)  # fmt: skip
    with cluster:
        ready_s = wait_ready(cluster, 60.0 + 3.0 * n)
        settle = max(args.settle, ramp_seconds(n)) if args.steady else args.settle
        time.sleep(settle)  # let startup work finish: it is not idle cost
        out: dict[str, Any] = {"n": n, "ready_s": round(ready_s, 1), "settle_s": settle}
        out["idle"] = idle(cluster, args.window)
        try:
            if args.writes > 0:  # 0: an idle-only run
                out["writes"] = writes(cluster, args)
        except ClientError as exc:
            out["writes"] = {"error": str(exc)}
        try:
            if args.coordinators > 0 and args.dq_runs > 0:
                out["distributed"] = distributed(cluster, args)
        except ClientError as exc:
            out["distributed"] = {"error": str(exc)}
        try:
            statuses = cluster.statuses()
            out["members_median"] = statistics.median(s.get("members", 0) for s in statuses)
        except ClientError as exc:  # a daemon died: say so, keep the other sizes' figures
            out["members_median"] = None
            out["error"] = str(exc)
            print(f"N={n}: {exc}", flush=True)
    out["wall_s"] = round(time.monotonic() - started, 1)
    print(f"N={n}: done in {out['wall_s']} s; load {os.getloadavg()[0]:.2f}", flush=True)
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    runs, failed = [], []
    for n in (int(x) for x in args.sizes.split(",")):
        try:
            runs.append(one_size(n, args, workdir))
        except ClusterError as exc:  # keep the other sizes' figures; the logs say more
            failed.append({"n": n, "error": str(exc)})
            print(f"N={n}: failed: {exc}", flush=True)
    base = runs[0]["idle"]["cpu_pct_median"] if runs else float("nan")
    for r in runs:
        r["idle"]["cpu_ratio_to_smallest"] = round(r["idle"]["cpu_pct_median"] / base, 2)
    return {"runs": runs, "failed": failed, "goal": GOAL, "loadavg_at_end": os.getloadavg()}


def report(res: dict[str, Any]) -> None:
    runs = res["runs"]
    print_table(
        "idle daemons (CPU % of one core over the window; RSS MB)",
        ["N", "cpu median", "cpu max", "ratio", "rss median", "rss max", "rss total", "conns"],
        [
            [
                r["n"], r["idle"]["cpu_pct_median"], r["idle"]["cpu_pct_max"],
                r["idle"]["cpu_ratio_to_smallest"], r["idle"]["rss_mb_median"],
                r["idle"]["rss_mb_max"], r["idle"]["rss_mb_total"],
                f"{r['idle']['connections_median']:g}/{r['idle']['connections_max']}",
            ]
            for r in runs
        ],
    )  # fmt: skip
    print_table(
        "write on a random daemon -> visible on all others",
        ["N", "writes", "missing", "p50 ms", "p99 ms", "max ms", "distinct CIDs", "members"],
        [
            [
                r["n"], w.get("writes"), w.get("missing"), w.get("p50_ms"), w.get("p99_ms"),
                w.get("max_ms"), w.get("distinct_cids"), r["members_median"],
            ]
            for r in runs
            if (w := r.get("writes", {}))
        ],
    )  # fmt: skip
    dq = [(r["n"], r.get("distributed", {})) for r in runs]
    print_table(
        "tiny distributed query, no --nodes limit (peers used; its time beside a local run)",
        ["N", "used median", "used min-max", "coordinator links", "p50 ms", "p99 ms",
         "local p50 ms"],
        [
            [
                n, d.get("nodes_used_median"),
                f"{d.get('nodes_used_min')}-{d.get('nodes_used_max')}",
                d.get("coordinator_links_median"), d.get("distributed_p50_ms"),
                d.get("distributed_p99_ms"), d.get("local_p50_ms"),
            ]
            for n, d in dq
        ],
    )  # fmt: skip
    for f in res.get("failed", []):
        print(f"N={f['n']} failed: {f['error']}")
    print(
        f"goals: idle <= {GOAL['idle_cpu_pct']} % median, not growing with N; "
        f"p50 <= {GOAL['p50_ms']:.0f} ms, p99 <= {GOAL['p99_ms']:.0f} ms, none missing, one CID"
    )


if __name__ == "__main__":
    raise SystemExit(bench_main(parse_args, run, report, "dp-scale-"))
