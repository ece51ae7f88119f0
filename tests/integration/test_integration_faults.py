"""Hostile peers and bad input against a real daemon: it logs, counts and keeps serving.

The hostile side is an in-process libp2p host built with the daemon's own network
adapter; the daemon under test is a real duckpeerd process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from daemon.localcluster import LocalCluster, LocalPeer
from daemon.net import sync
from daemon.net.framed import FramedStream, StreamClosedError
from daemon.net.network import Libp2pByteStream, Network, open_network
from protocol import messages
from protocol.framing import HEADER, encode_frame
from protocol.messages import Announce, SyncBlock, SyncEnd, SyncError, SyncRequest

pytestmark = pytest.mark.slow
TOPIC = "/duckpeer/default/v1"


async def wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a blocking condition from trio with a deadline."""
    with trio.fail_after(timeout):
        while not await trio.to_thread.run_sync(condition):
            await trio.sleep(0.05)


EVIL_KEY = create_new_key_pair()


def signed(unsigned: bytes, key: object = EVIL_KEY) -> bytes:
    """Sign a hand-built block as the hostile peer (or with another key)."""
    from protocol.changeset import sign_block

    return sign_block(unsigned, key.private_key.sign(unsigned))  # type: ignore[attr-defined]


@pytest.fixture
async def evil() -> AsyncIterator[Network]:
    async with open_network(EVIL_KEY, ["/ip4/127.0.0.1/tcp/0"], TOPIC) as network:
        yield network


@pytest.fixture
def daemon_peer() -> LocalPeer:
    with LocalCluster(1, env={"DUCKPEER_SYNC_READ_TIMEOUT": "1.5"}) as cluster:
        yield cluster.peers[0]


async def acall(target: LocalPeer, method: str, **params: object) -> dict:  # type: ignore[type-arg]
    """A control call from trio without blocking the in-process libp2p host."""
    return await trio.to_thread.run_sync(lambda: target.call(method, **params))


def metric(peer: LocalPeer, name: str) -> int:
    return int(peer.status()["metrics"].get(name, 0))


async def test_malformed_gossip_is_dropped_and_counted(
    evil: Network, daemon_peer: LocalPeer
) -> None:
    await evil.connect(daemon_peer.listen_addr)
    payloads = [
        b"\xff\x00garbage",
        msgpack.packb({"v": 99, "t": "announce"}),
        msgpack.packb({"v": 1, "t": "announce", "peer": 5}),
        messages.encode(Announce("someone-else", "bafy", {"x": 1})),  # spoofed sender
        b"\x00" * 900_000,
    ]
    await wait_for(lambda: daemon_peer.status()["peers"] >= 1)
    with trio.fail_after(30):
        while metric(daemon_peer, "gossip_malformed") + metric(daemon_peer, "gossip_spoofed") < 4:
            for payload in payloads:
                await evil.publish(payload)
            await trio.sleep(0.2)
    assert daemon_peer.running
    daemon_peer.call(
        "record",
        record={"model_name": "m", "hardware_type": "h", "throughput": 1.0, "latency": 1.0},
    )
    assert daemon_peer.status()["rows"]["performance_results"] == 1


async def _hang_after_partial_frame(stream: Libp2pByteStream) -> None:
    await stream.read(65536)  # the request
    await stream.write(HEADER.pack(1000) + b"partial")
    await trio.sleep_forever()


async def test_peer_hanging_mid_stream_times_out(evil: Network, daemon_peer: LocalPeer) -> None:
    evil.set_stream_handler(sync.PROTOCOL, _hang_after_partial_frame)
    await acall(daemon_peer, "connect", addr=evil.listen_addrs()[0])
    result = await acall(daemon_peer, "sync")
    evil_result = next(p for p in result["peers"] if p["peer"] == evil.peer_id)
    assert "TooSlowError" in evil_result["error"]
    assert metric(daemon_peer, "sync_pull_errors") >= 1
    assert daemon_peer.status()["db_cid"].startswith("bafy")  # still serving


def _serve_blocks(blocks: list[bytes]):  # type: ignore[no-untyped-def]
    async def handler(stream: Libp2pByteStream) -> None:
        await stream.read(65536)
        frames = [messages.encode(SyncBlock(b)) for b in blocks]
        frames.append(messages.encode(SyncEnd(len(blocks), "bafy")))
        await stream.write(b"".join(encode_frame(f, 1 << 26) for f in frames))
        await stream.close()

    return handler


async def test_bad_changesets_are_rejected_not_applied(
    evil: Network, daemon_peer: LocalPeer
) -> None:
    from protocol import changeset
    from protocol.changeset import Changeset, TableChanges

    def block(seq: int, prev: str | None, hlc: int, throughput: object) -> bytes:
        rows = TableChanges(
            "performance_results",
            ["result_id", "throughput_items_per_second"],
            bytes(1),
            [None],
            [3],
            [["01890000-0000-7000-8000-000000000001"], [throughput]],
        )
        return signed(changeset.encode(Changeset(evil.peer_id, seq, hlc, prev, [rows])))

    good = block(1, None, 1 << 40, 1.0)
    forged = block(3, changeset.cid_of(good), 2 << 40, 2.0)  # seq gap
    wrong_type = block(2, changeset.cid_of(good), 2 << 40, "fast")
    evil.set_stream_handler(sync.PROTOCOL, _serve_blocks([b"\x93junk", forged, wrong_type]))
    await acall(daemon_peer, "connect", addr=evil.listen_addrs()[0])
    await acall(daemon_peer, "sync", peer=evil.peer_id)
    status = await acall(daemon_peer, "status")
    assert status["metrics"]["changesets_rejected"] >= 3
    assert status["rows"]["performance_results"] == 0
    assert evil.peer_id not in status["version_vector"]


async def test_oversize_sync_frame_is_refused(evil: Network, daemon_peer: LocalPeer) -> None:
    async def oversize(stream: Libp2pByteStream) -> None:
        await stream.read(65536)
        await stream.write(HEADER.pack(sync.MAX_FRAME + 1))
        await trio.sleep_forever()

    evil.set_stream_handler(sync.PROTOCOL, oversize)
    await acall(daemon_peer, "connect", addr=evil.listen_addrs()[0])
    result = await acall(daemon_peer, "sync", peer=evil.peer_id)
    assert "exceeds limit" in result["peers"][0]["error"]
    assert daemon_peer.running


def test_corrupt_config_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = [unclosed\n")
    for config in (bad, tmp_path / "missing.toml"):
        proc = subprocess.run(
            [sys.executable, "-m", "daemon", "--config", str(config), "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, env=os.environ,
        )  # fmt: skip
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("duckpeerd: ")


def test_bad_csv_rows_are_skipped_and_reported(daemon_peer: LocalPeer, tmp_path: Path) -> None:
    csv = tmp_path / "results.csv"
    csv.write_text(
        "model,hardware,throughput,latency,batch_size\n"
        "bert-base,cuda,100.5,9.5,8\n"
        "t5-small,cpu,not-a-number,50,1\n"
        "vit,cuda,80,12,4\n"
        "llama-7b,cuda,20,40,1,extra\n"
        ",cuda,1,1,1\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "peerctl", "--socket", str(daemon_peer.socket), "ingest", str(csv)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 4
    assert "line 3" in proc.stderr and "line 5" in proc.stderr and "line 6" in proc.stderr
    assert "ingested 2 rows" in proc.stdout
    assert daemon_peer.status()["rows"]["performance_results"] == 2


def test_malformed_control_frames_do_not_hurt(daemon_peer: LocalPeer) -> None:
    import socket

    for junk in (HEADER.pack(10) + b"\xc1" * 10, HEADER.pack(0xFFFFFFFF), b"\x00\x00"):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(daemon_peer.socket))
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)
    assert daemon_peer.status()["metrics"]["control_malformed"] >= 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_caller_with_a_foreign_uid_is_refused(daemon_peer: LocalPeer) -> None:
    for path in (daemon_peer.data_dir.parent, daemon_peer.data_dir):
        path.chmod(0o755)
    daemon_peer.socket.chmod(0o666)  # let the kernel through: SO_PEERCRED must refuse
    script = (
        "import os, sys\n"
        "from peerctl.client import Client, RequestFailed\n"  # import while still root
        "os.setgid(65534); os.setgroups([]); os.setuid(65534)\n"
        "try:\n"
        f"    Client({str(daemon_peer.socket)!r}).status()\n"
        "except RequestFailed as exc:\n"
        "    print(exc.code); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "forbidden", proc.stderr
    assert daemon_peer.status()["metrics"]["control_refused"] >= 1


async def test_untrusted_peer_data_never_lands_until_trusted_by_sighup(
    evil: Network, tmp_path: Path
) -> None:
    from protocol import changeset
    from protocol.changeset import Changeset, TableChanges

    config = tmp_path / "duckpeer.toml"
    someone_else = ID.from_pubkey(create_new_key_pair().public_key)
    config.write_text(f'trusted_peers = ["{someone_else}"]\n')
    rows = TableChanges("models", ["model_id", "model_name"], bytes(1), [None], [3], [["m"], ["m"]])
    block = signed(changeset.encode(Changeset(evil.peer_id, 1, 1 << 40, None, [rows])))
    evil.set_stream_handler(sync.PROTOCOL, _serve_blocks([block]))
    with LocalCluster(1, env={"DUCKPEER_CONFIG": str(config)}) as cluster:
        peer = cluster.peers[0]
        await acall(peer, "connect", addr=evil.listen_addrs()[0])
        await evil.publish(messages.encode(Announce(evil.peer_id, "bafy", {evil.peer_id: 1})))
        result = await acall(peer, "sync", peer=evil.peer_id)
        assert "not a trusted peer" in result["peers"][0]["error"]
        status = await acall(peer, "status")
        assert status["rows"]["models"] == 0 and status["metrics"]["sync_untrusted"] >= 1

        config.write_text(f'trusted_peers = ["{evil.peer_id}"]\n')
        assert peer.proc is not None
        peer.proc.send_signal(signal.SIGHUP)
        with trio.fail_after(30):  # our pull or the one the released bootstrap starts
            while (await acall(peer, "status"))["rows"]["models"] != 1:
                await acall(peer, "sync", peer=evil.peer_id)
                await trio.sleep(0.1)
        assert peer.running  # reloaded, not restarted


async def test_tampered_or_foreign_signed_changesets_are_refused(
    evil: Network, daemon_peer: LocalPeer
) -> None:
    from protocol import changeset
    from protocol.changeset import Changeset, TableChanges

    rows = TableChanges("models", ["model_id", "model_name"], bytes(1), [None], [3], [["m"], ["m"]])
    unsigned = changeset.encode(Changeset(evil.peer_id, 1, 1 << 40, None, [rows]))
    good = signed(unsigned)
    tampered = good.replace(b"\xa1m", b"\xa1x", 1)  # same length, other model name
    foreign = signed(unsigned, create_new_key_pair())  # signed, but not by the origin
    served = [unsigned, tampered, foreign]
    evil.set_stream_handler(sync.PROTOCOL, _serve_blocks(served))
    await acall(daemon_peer, "connect", addr=evil.listen_addrs()[0])
    await acall(daemon_peer, "sync", peer=evil.peer_id)
    status = await acall(daemon_peer, "status")
    assert status["metrics"]["changesets_rejected"] >= 3
    assert status["rows"]["models"] == 0
    served[:] = [good]  # the genuine block goes through the same path
    assert (await acall(daemon_peer, "sync", peer=evil.peer_id))["pulled"] == 1
    assert (await acall(daemon_peer, "status"))["rows"]["models"] == 1


async def test_sync_request_flood_is_limited_and_others_still_served(
    evil: Network, daemon_peer: LocalPeer
) -> None:
    await evil.connect(daemon_peer.listen_addr)
    peer_id = (await acall(daemon_peer, "status"))["peer_id"]
    refused = 0
    for _ in range(40):  # far above 5/s with bursts of 20
        stream = await evil.open_stream(peer_id, sync.PROTOCOL)
        framed = FramedStream(stream, 1 << 20, 10.0)
        await framed.send(messages.encode(SyncRequest({})))
        reply = messages.decode(await framed.receive() or b"")
        refused += isinstance(reply, SyncError)
        await framed.aclose()
    assert refused >= 10
    status = await acall(daemon_peer, "status")
    assert status["metrics"]["sync_rate_limited"] == refused


async def test_lost_block_log_segment_fails_that_sync_only(
    evil: Network, daemon_peer: LocalPeer
) -> None:
    await acall(daemon_peer, "record", record={"model_name": "m", "hardware_type": "h",
                                               "throughput": 1.0, "latency": 1.0})  # fmt: skip
    for segment in (daemon_peer.data_dir / "duckpeer.blocks").glob("*.log"):
        segment.unlink()  # an operator's mistake, or a failing disk
    await evil.connect(daemon_peer.listen_addr)
    peer_id = (await acall(daemon_peer, "status"))["peer_id"]
    framed = FramedStream(await evil.open_stream(peer_id, sync.PROTOCOL), 1 << 26, 10.0)
    await framed.send(messages.encode(SyncRequest({})))
    received = []
    with contextlib.suppress(StreamClosedError):  # py-libp2p shows a reset as EOF or error
        while (frame := await framed.receive()) is not None:
            received.append(messages.decode(frame, 1 << 26))
    assert received == []  # no block and no SyncEnd: a puller counts this sync as failed
    status = await acall(daemon_peer, "status")
    assert status["metrics"]["sync_serve_errors"] >= 1
    assert status["rows"]["performance_results"] == 1  # the rows themselves are intact
