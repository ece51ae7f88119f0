"""daemon.query.share: two in-process nodes share cached results over memory streams."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from cachekit import call, make_node

from daemon.net.framed import TrioByteStream
from daemon.node import Node, PeerState
from daemon.query import share
from protocol.framing import encode_frame

AGG = "SELECT model_id, count(*), max(batch_size) FROM performance_results GROUP BY 1 ORDER BY 1"
A_ID, B_ID = "12D3KooWPeerA", "12D3KooWPeerB"
OPEN: list[Node] = []


class FakeStream(TrioByteStream):
    """One end of an in-memory stream, with the Libp2pByteStream interface."""

    def __init__(self, stream: trio.testing.StapledStream, peer_id: str) -> None:
        super().__init__(stream)
        self.stapled, self.peer_id = stream, peer_id

    async def close(self) -> None:
        await self.stapled.send_stream.aclose()  # half-close, like a libp2p stream

    async def reset(self) -> None:
        await self.stream.aclose()


class FakeNetwork:
    """Streams to one other in-process node, served by its cache handler."""

    def __init__(self, me: str, other: Node, nursery: trio.Nursery) -> None:
        self.me, self.other, self.nursery = me, other, nursery

    def connected_peers(self) -> list[str]:
        return [self.other.peer_id]

    async def open_stream(self, peer_id: str, protocol: str) -> FakeStream:
        assert protocol == share.PROTOCOL and peer_id == self.other.peer_id
        ours, theirs = trio.testing.memory_stream_pair()
        server = FakeStream(theirs, self.me)
        self.nursery.start_soon(share.handle_cache_stream, self.other, server)
        return FakeStream(ours, peer_id)


def pair(tmp_path: Path, nursery: trio.Nursery, **config: Any) -> tuple[Node, Node]:
    """Nodes A (500 rows) and B (the same changesets, so the same CID), B wired to A."""
    a = make_node(tmp_path / "a", cache_cheap_ms=0.0, **config)
    a.peer_id = A_ID
    b = make_node(tmp_path / "b", rows=0, cache_cheap_ms=0.0, **config)
    b.peer_id = B_ID
    for blocks in a.store.missing_for({}):
        b.store.apply_blocks(blocks)
    assert a.store.db_cid() == b.store.db_cid()
    b.network = FakeNetwork(B_ID, a, nursery)  # type: ignore[assignment]
    b.peers[A_ID] = PeerState(A_ID, db_cid=a.store.db_cid(), last_seen=time.time())
    OPEN.extend((a, b))
    return a, b


async def test_a_peer_at_the_same_cid_answers_a_miss(tmp_path: Path, nursery: trio.Nursery) -> None:
    a, b = pair(tmp_path, nursery)
    from_a = await call(a, "query", sql=AGG)
    shared = await call(b, "query", sql=AGG.lower())
    assert shared["cache"] == "peer" and shared["rows"] == from_a["rows"]
    assert shared["columns"] == from_a["columns"]
    assert b.metrics.get("cache_peer_hits") == 1 and a.metrics.get("cache_share_served") == 1
    assert (await call(b, "query", sql=AGG))["cache"] == "hit"  # kept locally too
    assert (await call(b, "query_explain_cache", sql=AGG))["runs"] == 0  # B never ran it


async def test_no_peer_at_our_cid_means_running_it(tmp_path: Path, nursery: trio.Nursery) -> None:
    a, b = pair(tmp_path, nursery)
    await call(a, "query", sql=AGG)
    b.peers[A_ID].db_cid = "bafy-some-other-state"
    assert (await call(b, "query", sql=AGG))["cache"] == "miss"
    assert a.metrics.get("cache_share_served") == 0


async def test_a_peer_miss_falls_back_to_running(tmp_path: Path, nursery: trio.Nursery) -> None:
    _, b = pair(tmp_path, nursery)
    result = await call(b, "query", sql=AGG)
    assert result["cache"] == "miss" and result["rows"]
    assert b.metrics.get("cache_peer_misses") == 1


async def test_untrusted_peers_are_neither_asked_nor_answered(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    a, b = pair(tmp_path, nursery, trusted_peers=("12D3KooWSomeoneElse",))
    await call(a, "query", sql=AGG)
    assert (await call(b, "query", sql=AGG))["cache"] == "miss"
    assert a.metrics.get("cache_share_served") == 0
    key = share.CacheKey(
        (await call(a, "query", sql=AGG))["fingerprint"], a.store.db_cid(), 1_000_000
    )
    assert await share.ask(b, A_ID, key) is None  # asked anyway: A resets the stream
    assert a.metrics.get("cache_share_refused") == 1


async def test_rate_limited_and_malformed_requests(tmp_path: Path, nursery: trio.Nursery) -> None:
    a, b = pair(tmp_path, nursery, cache_share_per_second=0.001)
    fp = (await call(a, "query", sql=AGG))["fingerprint"]
    key = share.CacheKey(fp, a.store.db_cid(), 1_000_000)
    answers = [await share.ask(b, A_ID, key) for _ in range(45)]  # burst of 40
    assert answers[0] is not None and answers[-1] is None
    assert a.metrics.get("cache_share_rate_limited") >= 1
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as inner:
        inner.start_soon(share.handle_cache_stream, a, FakeStream(theirs, B_ID))
        await ours.send_all(encode_frame(b"\x93not a cache message", 1024))
    assert a.metrics.get("cache_share_errors") == 1


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().store.close()


class SilentNetwork(FakeNetwork):
    """A peer that accepts the stream and never answers."""

    async def open_stream(self, peer_id: str, protocol: str) -> FakeStream:
        ours, theirs = trio.testing.memory_stream_pair()
        self.held = theirs  # keep the other end open, unread
        return FakeStream(ours, peer_id)


async def test_a_silent_peer_costs_one_timeout(tmp_path: Path, nursery: trio.Nursery) -> None:
    a, b = pair(tmp_path, nursery, cache_share_timeout=0.3)
    b.network = SilentNetwork(B_ID, a, nursery)  # type: ignore[assignment]
    with trio.fail_after(10):
        result = await call(b, "query", sql=AGG)
    assert result["cache"] == "miss" and result["rows"]
    assert b.metrics.get("cache_peer_misses") == 1
    other = await call(b, "query", sql=AGG.replace("max(", "min("))  # not asked again
    assert other["cache"] == "miss" and b.metrics.get("cache_peer_misses") == 1
