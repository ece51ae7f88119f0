"""/duckpeer/status/1 over in-memory streams: answers, malformed and untrusted queries
(counted, stream reset), and replies that do not belong to the query."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from daemon.config import Config
from daemon.net.peerstatus import StatusFailed, ask_status, handle_status_stream
from daemon.node import Node
from daemon.store.database import Store
from protocol import status
from protocol.framing import FrameDecoder, encode_frame
from protocol.status import StatusQuery, StatusReply


class FakeStream:
    """A libp2p stream stand-in: reads from a script of bytes, records writes."""

    def __init__(self, incoming: bytes, peer_id: str = "PeerX") -> None:
        self.incoming = incoming
        self.peer_id = peer_id
        self.written = b""
        self.was_reset = False

    async def read(self, max_bytes: int) -> bytes:
        data, self.incoming = self.incoming[:max_bytes], self.incoming[max_bytes:]
        return data

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        self.was_reset = True


def frames(data: bytes) -> list[bytes]:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(data)
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    return out


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    store = Store(tmp_path / "db.duckdb")
    yield Node(Config(data_dir=tmp_path), store, "12D3KooMe")
    store.close()


async def test_answers_a_query_with_our_state(node: Node) -> None:
    stream = FakeStream(encode_frame(status.encode(StatusQuery(42)), 1 << 20))
    await handle_status_stream(node, stream)  # type: ignore[arg-type]
    (reply,) = [status.decode(f) for f in frames(stream.written)]
    assert isinstance(reply, StatusReply)
    assert (reply.nonce, reply.peer_id) == (42, "12D3KooMe")
    assert reply.db_cid == node.store.db_cid() and dict(reply.vector) == {}
    assert node.metrics.get("status_served") == 1


@pytest.mark.parametrize(
    "incoming",
    [
        b"",  # closed before a query
        encode_frame(b"\xc1garbage", 1 << 20),
        encode_frame(status.encode(StatusReply(1, "x", "c", {})), 1 << 20),  # wrong type
        b"\x00\x00\x00\x10abc",  # cut mid-frame
    ],
)
async def test_bad_queries_are_counted_and_reset(node: Node, incoming: bytes) -> None:
    stream = FakeStream(incoming)
    await handle_status_stream(node, stream)  # type: ignore[arg-type]
    assert stream.was_reset and stream.written == b""
    assert node.metrics.get("status_malformed") == 1


async def test_untrusted_peer_refused(node: Node) -> None:
    node.config = replace(node.config, trusted_peers=("SomeoneElse",))
    stream = FakeStream(encode_frame(status.encode(StatusQuery(1)), 1 << 20))
    await handle_status_stream(node, stream)  # type: ignore[arg-type]
    assert stream.was_reset and node.metrics.get("status_untrusted") == 1


class FakeNetwork:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.stream: FakeStream | None = None

    async def open_stream(self, peer_id: str, protocol: str) -> FakeStream:
        assert protocol == status.PROTOCOL
        self.stream = FakeStream(b"", peer_id)
        original = self.stream.write

        async def write(data: bytes) -> None:  # answer once the query is written
            await original(data)
            (query,) = [status.decode(f) for f in frames(data)]
            reply = self.answer(query, peer_id)
            assert self.stream is not None
            self.stream.incoming = encode_frame(reply, 1 << 20) if reply else b""

        self.stream.write = write  # type: ignore[method-assign]
        return self.stream


async def test_ask_status_checks_the_reply(node: Node) -> None:
    def good(q: StatusQuery, peer: str) -> bytes:
        return status.encode(StatusReply(q.nonce, peer, "cidP", {"a": 2}, 7, 0.5))

    node.network = FakeNetwork(good)  # type: ignore[assignment]
    reply = await ask_status(node, "PeerP")
    assert (reply.peer_id, reply.db_cid, dict(reply.vector)) == ("PeerP", "cidP", {"a": 2})

    def stale(q: StatusQuery, peer: str) -> bytes:
        return status.encode(StatusReply(q.nonce + 1, peer, "cidP", {}))

    node.network = FakeNetwork(stale)  # type: ignore[assignment]
    with pytest.raises(StatusFailed, match="not for this query"):
        await ask_status(node, "PeerP")

    def impostor(q: StatusQuery, peer: str) -> bytes:
        return status.encode(StatusReply(q.nonce, "Other", "cidP", {}))

    node.network = FakeNetwork(impostor)  # type: ignore[assignment]
    with pytest.raises(StatusFailed):
        await ask_status(node, "PeerP")

    node.network = FakeNetwork(lambda q, p: b"\xc1")  # type: ignore[assignment]
    with pytest.raises(StatusFailed, match="RemoteProtocolError"):
        await ask_status(node, "PeerP")
    assert node.metrics.get("status_ask_errors") == 3
