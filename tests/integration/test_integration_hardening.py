"""Hostile input against real daemons: the SQL corpus (local and as fragments from a
peer), memory under heavy queries, partial control frames, peerctl on odd input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
from hostile_sql import BENIGN, HOSTILE
from libp2p.crypto.ed25519 import create_new_key_pair

from daemon.distq.links import PROTOCOL
from daemon.localcluster import LocalCluster, LocalPeer
from daemon.net.framed import FramedStream
from daemon.net.network import Libp2pByteStream, Network, open_network
from peerctl.client import RequestFailed
from protocol import messages
from protocol.framing import HEADER
from protocol.messages import PartialResult, QueryFragment

pytestmark = pytest.mark.slow
TOPIC = "/duckpeer/default/v1"
MIB = 1 << 20
ROWS = 3000


def ingest(peer: LocalPeer, rows: int) -> None:
    from daemon.demo import sample_results

    peer.call("ingest", records=sample_results(rows, 3))


@pytest.fixture(scope="module")
def bounded() -> Iterator[LocalPeer]:
    env = {"DUCKPEER_MEMORY_LIMIT": "256MiB", "DUCKPEER_MEMORY_MARGIN": "512MiB",
           "DUCKPEER_QUERY_MEMORY_LIMIT": "64MiB", "DUCKPEER_CONTROL_MAX_BUFFERED_BYTES": "64MiB",
           "DUCKPEER_CONTROL_FRAME_TIMEOUT": "2", "DUCKPEER_CACHE_ENABLED": "false"}  # fmt: skip
    with LocalCluster(1, env=env) as cluster:
        peer = cluster.peers[0]
        ingest(peer, ROWS)
        yield peer


def vm(peer: LocalPeer, field: str) -> int:
    """A /proc/<pid>/status figure of the daemon, bytes (VmRSS, VmHWM = peak RSS)."""
    assert peer.proc is not None
    for line in Path(f"/proc/{peer.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def test_hostile_sql_is_refused_by_a_real_daemon(bounded: LocalPeer) -> None:
    for name, sql in HOSTILE.items():
        with pytest.raises(RequestFailed) as info:
            bounded.call("query", sql=sql, cache=False)
        assert info.value.code == "bad_request", name
        assert "\n" not in str(info.value)
    for sql in BENIGN:
        assert isinstance(bounded.call("query", sql=sql)["rows"], list)
    assert bounded.status()["metrics"]["queries_rejected"] >= len(HOSTILE)


HEAVY = [
    # DuckDB-accounted: hash tables, sorts, aggregates over a 9M-row self-join
    "SELECT count(*) FROM (SELECT a.result_id, b.result_id, md5(a.model_id || b.result_id) h "
    "FROM performance_results a, performance_results b ORDER BY h)",
    "SELECT count(*) FROM (SELECT md5(a.result_id || b.result_id) h, count(*) "
    "FROM performance_results a, performance_results b GROUP BY h)",
    "SELECT length(string_agg(a.model_id || b.model_id, ',')) "
    "FROM performance_results a, performance_results b",
    "SELECT len(list(a.result_id)) FROM performance_results a, performance_results b",
    # values as large as the size bound allows, in every row of the join
    "SELECT sum(length(concat(" + ", ".join(["a.model_id"] * 200) + "))) "
    "FROM performance_results a, performance_results b",
]


def test_rss_stays_under_memory_limit_plus_margin(bounded: LocalPeer) -> None:
    bound = (256 + 512) * MIB
    outcomes: list[str] = []

    def run(sql: str) -> None:
        try:
            bounded.call("query", sql=sql, cache=False)
            outcomes.append("ok")
        except RequestFailed as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=run, args=(sql,)) for sql in HEAVY]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert len(outcomes) == len(HEAVY)
    assert set(outcomes) <= {"ok", "resource_limit", "timeout", "busy"}, outcomes
    peak = vm(bounded, "VmHWM")
    assert peak <= bound, f"peak RSS {peak / MIB:.0f} MiB above {bound / MIB:.0f} MiB"
    assert bounded.call("query", sql="SELECT count(*) FROM performance_results")["rows"] == [[ROWS]]


def test_partial_control_frames_do_not_grow_the_daemon(bounded: LocalPeer) -> None:
    before = vm(bounded, "VmRSS")
    conns = []
    for _ in range(20):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(bounded.socket))
        sock.setblocking(False)
        try:  # declare 60 MiB, send what the socket takes, then stall
            sock.send(HEADER.pack(60 * MIB) + b"\x00" * (8 * MIB))
        except BlockingIOError:
            pass
        conns.append(sock)
    status = bounded.status()  # the control plane answers meanwhile
    assert status["peer_id"]
    grown = vm(bounded, "VmRSS") - before
    for sock in conns:  # every stalled frame is given up on (frame timeout: 2 s)
        sock.setblocking(True)
        sock.settimeout(60)
        try:
            while sock.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            pass
        sock.close()
    assert grown < 64 * MIB, f"grew by {grown / MIB:.0f} MiB"
    assert bounded.status()["metrics"]["control_malformed"] >= 20


def test_peerctl_on_odd_input_against_a_real_daemon(bounded: LocalPeer, tmp_path: Path) -> None:
    peerctl = [sys.executable, "-m", "peerctl", "--socket", str(bounded.socket)]
    binary = tmp_path / "x.csv"
    binary.write_bytes(bytes(range(256)) * 10)
    cases = [
        (["query", "SELECT 1", "--max-rows", "-5"], 2),
        (["query", HOSTILE["scoped-cte-databases"]], 2),
        (["query", "SELECT current_setting('memory_limit')"], 2),
        (["record", "--model", "m", "--hardware", "h", "--throughput", "1", "--latency", "1",
          "--batch-size", "-3"], 2),
        (["ingest", str(binary)], 2),
        (["report", "--out", "/proc/nope/r.html"], 2),
        (["update", "models", "nope", "--set", "model_family=x"], 2),
    ]  # fmt: skip
    for argv, code in cases:
        done = subprocess.run([*peerctl, *argv], capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == code, (argv, done.returncode, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = subprocess.run([*peerctl, "sync", "--peer", "x"], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert "Traceback" not in done.stderr and "peerctl: x:" in done.stderr
    assert "x:" not in done.stdout


@pytest.fixture
async def evil() -> AsyncIterator[Network]:
    async with open_network(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"], TOPIC) as network:
        yield network


async def test_hostile_fragments_from_a_peer_are_refused(evil: Network, bounded: LocalPeer) -> None:
    state = await trio.to_thread.run_sync(bounded.status)
    target, cid, me = state["peer_id"], state["db_cid"], evil.peer_id
    received: list[PartialResult] = []

    async def collect(stream: Libp2pByteStream) -> None:
        framed = FramedStream(stream, 1 << 22, 30.0)
        while (frame := await framed.receive()) is not None:
            msg = messages.decode(frame, 1 << 22)
            if isinstance(msg, PartialResult):
                received.append(msg)

    def fragment(qid: str, sql: str) -> bytes:
        return messages.encode(QueryFragment(qid, me, cid, sql, "hash", 1, {target: (0,)}))

    evil.set_stream_handler(PROTOCOL, collect)
    await evil.connect(bounded.listen_addr)
    hostile = {f"h{i}": sql for i, sql in enumerate(HOSTILE.values())}
    refused: set[str] = set()

    def refused_ids() -> set[str]:
        found = set()
        for line in bounded.log_path.read_text().splitlines():
            if '"fragment refused"' in line:
                found.add(json.loads(line).get("query"))
        return found

    with trio.fail_after(120):
        while not (set(hostile) <= refused and received):
            for qid, sql in hostile.items():
                if qid not in refused:
                    await evil.publish(fragment(qid, sql))
                    await trio.sleep(0.03)  # within the per-peer gossip rate
            await evil.publish(fragment("ok", "SELECT count(*) AS n FROM performance_results"))
            await trio.sleep(0.5)
            refused = await trio.to_thread.run_sync(refused_ids)
    assert {p.query_id for p in received} == {"ok"}  # only the valid one was answered
    after = await trio.to_thread.run_sync(bounded.status)
    assert after["db_cid"] == cid and after["rows"]["performance_results"] == ROWS
