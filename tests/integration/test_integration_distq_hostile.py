"""Hostile query fragments and result streams against a real daemon: refused, counted,
and the daemon keeps working. The hostile side is an in-process libp2p host."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import msgpack
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from daemon.distq.links import PROTOCOL
from daemon.distq.reduce import from_ipc
from daemon.localcluster import LocalCluster, LocalPeer
from daemon.net.framed import FramedStream
from daemon.net.network import Libp2pByteStream, Network, open_network
from protocol import messages
from protocol.framing import encode_frame
from protocol.messages import PartialResult, QueryFragment

pytestmark = pytest.mark.slow
TOPIC = "/duckpeer/default/v1"
COUNT_SQL = "SELECT COUNT(*) AS n FROM performance_results"


@pytest.fixture
async def evil() -> AsyncIterator[Network]:
    async with open_network(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"], TOPIC) as network:
        yield network


@pytest.fixture
def daemon_peer() -> Iterator[LocalPeer]:
    with LocalCluster(1) as cluster:
        peer = cluster.peers[0]
        peer.call(
            "ingest",
            records={
                "model_name": ["m"] * 5,
                "hardware_type": ["cpu"] * 5,
                "throughput": [1.0] * 5,
                "latency": [2.0] * 5,
            },
        )
        yield peer


async def status(peer: LocalPeer) -> dict:  # type: ignore[type-arg]
    assert peer.running, f"daemon exited with {peer.proc.returncode if peer.proc else None}"
    return await trio.to_thread.run_sync(peer.status)  # type: ignore[no-any-return]


def fragment(target: str, cid: str, sql: str, coordinator: str, **over: object) -> bytes:
    fields: dict = {"strategy": "hash", "partitions": 1, "assignments": {target: (0,)}}  # type: ignore[type-arg]
    fields.update(over)
    return messages.encode(QueryFragment("q-" + sql[:8], coordinator, cid, sql, **fields))


async def test_hostile_fragments_are_refused_and_counted(
    evil: Network, daemon_peer: LocalPeer
) -> None:
    state = await status(daemon_peer)
    target, cid, me = state["peer_id"], state["db_cid"], evil.peer_id
    received: list[PartialResult] = []

    async def collect(stream: Libp2pByteStream) -> None:
        framed = FramedStream(stream, 1 << 22, 10.0)
        while (frame := await framed.receive()) is not None:
            msg = messages.decode(frame, 1 << 22)
            if isinstance(msg, PartialResult):
                received.append(msg)

    evil.set_stream_handler(PROTOCOL, collect)
    await evil.connect(daemon_peer.listen_addr)
    refused = [
        fragment(target, cid, "DELETE FROM performance_results", me),
        fragment(target, cid, "SELECT * FROM read_csv('/etc/passwd')", me),
        fragment(target, cid, COUNT_SQL + " WHERE getenv('HOME') IS NOT NULL", me),
        fragment(target, cid, "SELECT * FROM models", me),  # not a fragment of the fact table
        fragment(target, cid, COUNT_SQL, "12D3KooWSomeoneElse"),  # spoofed coordinator
        fragment(target, cid, COUNT_SQL, me, strategy="range", column="metrics; --"),
    ]
    malformed = [
        msgpack.packb({"v": 1, "t": "fragment", "qid": "x", "n": "many"}),
        msgpack.packb({"v": 1, "t": "fragment", "qid": "x", "sql": "S" * 200_000}),
    ]
    with trio.fail_after(60):
        while True:
            for payload in [*refused, *malformed, fragment(target, cid, COUNT_SQL, me)]:
                await evil.publish(payload)
            metrics = (await status(daemon_peer))["metrics"]
            if (
                metrics.get("fragments_refused", 0) >= 6
                and metrics.get("gossip_malformed", 0) >= 2
                and received
            ):
                break
            await trio.sleep(0.2)
    # The one valid fragment ran, sandboxed, and its partial came back as Arrow.
    assert from_ipc(received[0].data, 10).to_pylist() == [{"n": 5}]
    after = await status(daemon_peer)
    assert after["rows"]["performance_results"] == 5 and after["db_cid"] == cid


async def test_junk_on_result_stream_is_counted(evil: Network, daemon_peer: LocalPeer) -> None:
    await evil.connect(daemon_peer.listen_addr)
    target = (await status(daemon_peer))["peer_id"]
    stream = await evil.open_stream(target, PROTOCOL)
    unexpected = messages.encode(PartialResult("no-such-query", 0, b"arrow?"))
    await stream.write(encode_frame(unexpected, 1 << 20) + encode_frame(b"\xc1junk", 1 << 20))
    with trio.fail_after(30):
        while True:
            metrics = (await status(daemon_peer))["metrics"]
            if metrics.get("distq_unexpected_partials") and metrics.get("distq_stream_errors"):
                break
            await trio.sleep(0.1)
    result = await trio.to_thread.run_sync(
        lambda: daemon_peer.call("query_distributed", sql=COUNT_SQL)
    )
    assert result["rows"] == [[5]]
