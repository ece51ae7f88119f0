"""Hostile peers on the snapshot stream against a real daemon: garbage, unknown blocks
and lying servers are refused, counted and logged; the daemon keeps serving and loads
nothing unverified."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from daemon.demo import sample_results
from daemon.localcluster import LocalCluster, LocalPeer
from daemon.net.framed import FramedStream, StreamClosedError
from daemon.net.network import Libp2pByteStream, Network, open_network
from daemon.snapshot.service import PROTOCOL
from protocol import snapmsg, unixfs
from protocol.snapmsg import SnapBlock, SnapError, SnapOffer, SnapQuery, SnapWant

pytestmark = pytest.mark.slow
TOPIC = "/duckpeer/default/v1"


@pytest.fixture
async def evil() -> AsyncIterator[Network]:
    async with open_network(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"], TOPIC) as network:
        yield network


async def acall(target: LocalPeer, method: str, **params: object) -> dict:  # type: ignore[type-arg]
    return await trio.to_thread.run_sync(lambda: target.call(method, **params))


async def wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not await trio.to_thread.run_sync(condition):
            await trio.sleep(0.05)


async def _session(evil: Network, peer_id: str) -> FramedStream:
    return FramedStream(await evil.open_stream(peer_id, PROTOCOL), snapmsg.MAX_FRAME, 20.0)


async def test_garbage_and_unknown_blocks_are_refused_and_serving_goes_on(
    evil: Network,
) -> None:
    with LocalCluster(1) as cluster:
        (peer,) = cluster.peers
        await acall(peer, "ingest", records=sample_results(200, 5))
        await evil.connect(peer.listen_addr)
        peer_id = (await acall(peer, "status"))["peer_id"]

        framed = await _session(evil, peer_id)  # not a message at all
        await framed.send(b"\x93garbage")
        with contextlib.suppress(StreamClosedError):
            assert await framed.receive() is None
        await framed.aclose()

        framed = await _session(evil, peer_id)  # a block the snapshot does not hold
        await framed.send(snapmsg.encode(SnapQuery()))
        offer = snapmsg.decode(await framed.receive() or b"")
        assert isinstance(offer, SnapOffer)
        stranger = unixfs.cid_str(unixfs.make_cid(unixfs.RAW, b"not in it"))
        await framed.send(snapmsg.encode(SnapWant((stranger,))))
        assert isinstance(snapmsg.decode(await framed.receive() or b""), SnapError)
        await framed.aclose()

        framed = await _session(evil, peer_id)  # and an honest request still works
        await framed.send(snapmsg.encode(SnapQuery()))
        offer = snapmsg.decode(await framed.receive() or b"")
        assert isinstance(offer, SnapOffer)
        await framed.send(snapmsg.encode(SnapWant((offer.root,))))
        block = snapmsg.decode(await framed.receive() or b"")
        assert isinstance(block, SnapBlock)
        root = unixfs.cid_from_str(offer.root)
        unixfs.verify_block(root, block.data)
        assert "manifest.json" in unixfs.read_directory(root, block.data)
        await framed.aclose()

        await wait_for(lambda: peer.status()["metrics"].get("snapshot_serve_errors", 0) >= 2)


async def test_a_lying_snapshot_server_loads_nothing(evil: Network, tmp_path: object) -> None:
    entry, blocks = unixfs.file_blocks(b"x" * 600_000)
    root, node = unixfs.directory({"manifest.json": entry})
    store = {b.cid: b.data for b in [*blocks, node]}

    async def lying_server(stream: Libp2pByteStream) -> None:
        framed = FramedStream(stream, snapmsg.MAX_FRAME, 20.0)
        with contextlib.suppress(Exception):
            await framed.receive()
            offer = SnapOffer(unixfs.cid_str(root.cid), "bafyfake", {"o": 1}, 10, 1 << 22)
            await framed.send(snapmsg.encode(offer))
            while (frame := await framed.receive()) is not None:
                want = snapmsg.decode(frame)
                assert isinstance(want, SnapWant)
                for text in want.cids:  # every block one byte off
                    data = bytearray(store[unixfs.cid_from_str(text)])
                    data[-1] ^= 1
                    await framed.send(snapmsg.encode(SnapBlock(bytes(data))))
        await framed.aclose()

    evil.set_stream_handler(PROTOCOL, lying_server)
    env = {
        "DUCKPEER_BOOTSTRAP_SNAPSHOT": "1",
        "DUCKPEER_BOOTSTRAP_SNAPSHOT_WAIT": "3",
        "DUCKPEER_BOOTSTRAP_SNAPSHOT_MIN_BYTES": "0",
    }
    with LocalCluster(0) as cluster:
        peer = LocalPeer("victim", cluster.base_dir / "victim", env)
        cluster.peers.append(peer)
        peer.start([evil.listen_addrs()[0]])
        await wait_for(lambda: peer.status()["metrics"].get("snapshot_bootstrap_failures", 0))
        status = await acall(peer, "status")
        assert status["metrics"]["snapshot_fetch_errors"] >= 1
        assert status["version_vector"] == {} and sum(status["rows"].values()) == 0
        assert not list((peer.data_dir / "snapshots").glob("*.car"))  # nothing kept
