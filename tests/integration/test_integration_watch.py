"""Live subscriptions between real daemons: writes on any peer reach a watcher on
another as added / changed / removed events; many watchers are cheap; a watcher that
does not read is told it lagged and never holds up replication."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from daemon.demo import sample_results
from daemon.localcluster import LocalCluster, LocalPeer, wait_until
from peerctl.client import Client

pytestmark = pytest.mark.slow

SQL = ("SELECT result_id, model_id, test_case FROM performance_results "
       "WHERE model_id = 'watched' ORDER BY result_id")  # fmt: skip


class Watcher:
    """A client.watch() read in a thread; events land in a queue."""

    def __init__(self, peer: LocalPeer, sql: str = SQL) -> None:
        self.client = Client(peer.socket, timeout=120)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stream = self.client.watch(sql)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.stream:
                self.events.put(event)
        except Exception as exc:  # the test closed the connection under the reader
            self.events.put({"event": "closed", "error": str(exc)})

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as c:
        yield c


def record(peer: LocalPeer, model: str = "watched") -> str:
    with peer.client() as client:
        return client.store_performance_result(model_name=model, hardware_type="cuda",
                                               throughput=1.0, latency=1.0)  # fmt: skip


def test_changes_from_any_peer_arrive_as_events(cluster: LocalCluster) -> None:
    a, b, c = cluster.peers
    first = record(a)
    cluster.wait_converged(timeout=30)
    watcher = Watcher(a)
    try:
        snapshot = watcher.next()
        assert snapshot["event"] == "snapshot" and [r[0] for r in snapshot["rows"]] == [first]
        b_id, c_id = b.status()["peer_id"], c.status()["peer_id"]
        rid = record(b)  # written elsewhere, replicated to a, seen by the watcher
        added = watcher.next()
        assert added["event"] == "added" and added["row"][0] == rid
        assert added["origins"] == [b_id]
        record(b, "unwatched")  # touches the table, not the rows: nothing to say
        wait_until(lambda: c.status()["rows"]["performance_results"] == 3, 30, "c to catch up")
        c.call("update", table="performance_results", key=rid, set={"test_case": "edited"})
        changed = watcher.next()
        assert changed["event"] == "changed" and changed["row"][2] == "edited"
        assert changed["old"][2] == "default" and changed["origins"] == [c_id]
        c.call("delete", table="performance_results", key=first)
        removed = watcher.next()
        assert removed["event"] == "removed" and removed["row"][0] == first
        assert watcher.events.empty()
    finally:
        watcher.close()


def test_many_watchers_share_one_evaluation_and_a_slow_one_lags(cluster: LocalCluster) -> None:
    a, b, _ = cluster.peers
    watchers = [Watcher(a) for _ in range(40)]
    slow = Client(a.socket, timeout=120)
    # wide rows, so that what the kernel's socket buffers hold is a few hundred events
    slow_stream = slow.watch("SELECT result_id, repeat(model_id, 300) FROM performance_results")
    try:
        assert next(slow_stream)["event"] == "snapshot"  # then it stops reading
        for w in watchers:
            assert w.next()["event"] == "snapshot"
        before = a.status()["metrics"]["watch_evaluations"]
        with b.client() as client:
            for start in range(0, 3000, 500):  # 3,000 added rows: far past a buffer
                client.ingest_columns({k: v[start : start + 500]
                                       for k, v in sample_results(3000).items()})  # fmt: skip
        rid = record(b)
        for w in watchers:  # every fast watcher sees the write, the slow one held nobody up
            assert w.next()["row"][0] == rid
        evaluations = a.status()["metrics"]["watch_evaluations"] - before
        assert evaluations <= 2 * 8  # per commit, per distinct query; not per watcher
        cluster.wait_converged(timeout=30)
        kinds, rows = [], 0
        for event in slow_stream:  # now it reads: told it lagged, then a fresh snapshot
            kinds.append(event["event"])
            if event["event"] == "snapshot":
                rows = len(event["rows"])
            elif event["event"] == "added" and "snapshot" in kinds:
                rows += 1
            if rows == 3001:
                break
        assert "lagged" in kinds and kinds.index("lagged") < kinds.index("snapshot", 1)
    finally:
        for w in watchers:
            w.close()
        slow.close()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_peerctl_watch_prints_json_lines_until_ctrl_c(cluster: LocalCluster) -> None:
    a, b, _ = cluster.peers
    command = [sys.executable, "-m", "peerctl", "--socket", str(a.socket), "watch", SQL, "--json"]
    # Ctrl-C as at a terminal: a runner started in the background (``cmd &``) ignores
    # SIGINT, and a child inherits that, so peerctl would never see it.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=_default_sigint) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            assert json.loads(proc.stdout.readline())["event"] == "snapshot"
            rid = record(b)
            event = json.loads(proc.stdout.readline())
            assert event["event"] == "added" and event["row"][0] == rid
        finally:
            proc.send_signal(signal.SIGINT)
            # drain both pipes: a child blocked writing to a full pipe cannot exit
            out, err = proc.communicate(timeout=30)
        later = [json.loads(line)["event"] for line in out.splitlines()]
        assert proc.returncode == 0 and err == "", (proc.returncode, err[-2000:], later[:20])
