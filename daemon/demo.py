"""``duckpeerd demo``: three real peers on loopback converge while you watch."""

from __future__ import annotations

import random
import signal
import socket
import time
from types import FrameType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from daemon.localcluster import ClusterError, LocalCluster, LocalPeer

MODELS = [
    ("bert-base-uncased", "bert"), ("t5-small", "t5"), ("llama-7b", "llama"),
    ("vit-base-patch16-224", "vit"), ("whisper-tiny", "whisper"), ("clip-vit-base", "clip"),
]  # fmt: skip
HARDWARE = [("cpu", "Xeon 8380"), ("cuda", "A100"), ("cuda", "RTX 4090"), ("rocm", "MI250"),
            ("mps", "M2 Max"), ("openvino", "Arc A770")]  # fmt: skip


def sample_results(n: int, seed: int = 7) -> dict[str, list]:
    """``n`` plausible benchmark results, column-wise."""
    rng = random.Random(seed)
    cols: dict[str, list] = {k: [] for k in (
        "model_name", "model_family", "hardware_type", "device_name", "batch_size",
        "precision", "throughput", "latency", "memory_mb")}  # fmt: skip
    for _ in range(n):
        model, family = rng.choice(MODELS)
        hw, device = rng.choice(HARDWARE)
        batch = rng.choice([1, 2, 4, 8, 16, 32])
        speed = {"cpu": 1, "cuda": 12, "rocm": 9, "mps": 4, "openvino": 3}[hw]
        throughput = speed * batch * rng.uniform(20, 60) / (1 + batch / 16)
        for key, value in zip(cols, (model, family, hw, device, batch,
                                     rng.choice(["fp32", "fp16", "int8"]), throughput,
                                     1000 * batch / throughput, rng.uniform(200, 16000)),
                              strict=True):  # fmt: skip
            cols[key].append(value)
    return cols


def _table(cluster: LocalCluster, started: float) -> tuple[Table, bool]:
    statuses = cluster.statuses()
    cids = {s["db_cid"] for s in statuses}
    done = len(cids) == 1 and len(statuses) == len(cluster.peers)
    title = "converged" if done else "syncing"
    table = Table(title=f"duckpeer demo: {title} ({time.monotonic() - started:.2f} s)")
    for col in ("peer", "peer id", "results", "models", "hardware", "changesets", "db cid"):
        table.add_column(col)
    for peer, s in zip(cluster.peers, statuses, strict=False):
        rows = s["rows"]
        table.add_row(peer.name, s["peer_id"][-10:], str(rows["performance_results"]),
                      str(rows["models"]), str(rows["hardware_platforms"]),
                      str(s["changesets"]), s["db_cid"][:12] + "…" + s["db_cid"][-8:])  # fmt: skip
    return table, done


def run_demo(once: bool, results: int, timeout: float, web: bool = True) -> int:
    """Start three peers, write results on the first, show convergence live (with the
    web dashboard on the first peer, on a free loopback port, unless ``web`` is off)."""
    console = Console()
    signal.signal(signal.SIGTERM, _interrupt)  # stop the peers on SIGTERM as on Ctrl-C
    console.print("[bold]starting three duckpeerd processes on loopback…[/bold]")
    cluster = LocalCluster(3)
    dashboard = None
    if web:
        dashboard = f"127.0.0.1:{_free_port()}"
        cluster.peers[0].env["DUCKPEER_WEB_LISTEN"] = dashboard
    try:
        with cluster:
            console.print(f"data dirs under {cluster.base_dir}")
            writer = cluster.peers[0]
            started = time.monotonic()
            with writer.client() as client:
                data = sample_results(results)
                for start in range(0, results, 250):
                    client.ingest_columns({k: v[start : start + 250] for k, v in data.items()})
                client.store_performance_result(
                    model_name="bert-base-uncased",
                    hardware_type="cuda",
                    device_name="A100",
                    throughput=812.5,
                    latency=9.8,
                    batch_size=8,
                )
            url = f"http://{dashboard}/" if dashboard else None
            return _watch(console, cluster, started, once, timeout, url)
    except ClusterError as exc:
        console.print(f"[red]demo failed: {exc}[/red]")
        return 1
    except KeyboardInterrupt:
        console.print("stopped")
        return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


WRITE_EVERY_S = 3.0  # a new result on a random peer, so the replication stays visible


def how_to_talk(cluster: LocalCluster, dashboard: str | None = None) -> Text:
    """The lines under the table: how to reach the demo peers from another terminal."""
    socket = cluster.peers[1].socket if len(cluster.peers) > 1 else cluster.peers[0].socket
    lines = [
        "Talk to the demo peers from another terminal:",
        f"  export DUCKPEER_SOCKET={socket}",
        "  peerctl status",
        '  peerctl query "SELECT model_id, count(*) FROM performance_results GROUP BY 1"',
        "  peerctl record --model my-model --hardware cpu --throughput 120 --latency 8.3",
        f"A new result is written on a random peer every {WRITE_EVERY_S:g} s; Ctrl-C stops all.",
    ]
    if dashboard:
        lines.append(f"Dashboard: {dashboard}")
    return Text("\n".join(lines) + "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _watch(
    console: Console,
    cluster: LocalCluster,
    started: float,
    once: bool,
    timeout: float,
    dashboard: str | None = None,
) -> int:
    converged_at = None
    rng = random.Random()
    next_write = time.monotonic() + WRITE_EVERY_S
    if not console.is_terminal:  # a file or pipe sees the live table only when it stops
        console.print(how_to_talk(cluster, dashboard))
    with Live(console=console, refresh_per_second=10) as live:
        while True:
            table, done = _table(cluster, started)
            live.update(Group(table, how_to_talk(cluster, dashboard)))
            if done and converged_at is None:
                converged_at = time.monotonic() - started
                if once:
                    break
            if converged_at is None and time.monotonic() - started > timeout:
                console.print(f"[red]not converged after {timeout} s[/red]")
                return 1
            if converged_at is not None and time.monotonic() >= next_write:
                _write_one(rng.choice(cluster.peers), rng)
                next_write = time.monotonic() + WRITE_EVERY_S
            time.sleep(0.1)
    console.print(
        f"[green]all three peers hold the same database CID after {converged_at:.2f} s[/green]"
    )
    return 0


def _write_one(peer: LocalPeer, rng: random.Random) -> None:
    """One fresh result on ``peer`` (what a benchmark run would record)."""
    row = {k: v[0] for k, v in sample_results(1, seed=rng.randrange(1 << 30)).items()}
    with peer.client() as client:
        client.ingest_columns({k: [v] for k, v in row.items()})
