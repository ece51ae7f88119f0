"""The gossip listener keeps reading while the writer is busy (issue 13: py-libp2p drops
what does not fit in the subscription's 32-message buffer, and the listener used to
apply pushed changesets inline, so a slow writer made it drop announces)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
import trio.testing
from storekit import U, chain, models

from daemon.config import Config
from daemon.net import gossip
from daemon.net.network import GossipMessage
from daemon.node import Node
from daemon.store.database import ApplyResult, Store
from protocol import messages
from protocol.messages import Announce

SENDERS = [f"12D3KooWPeer{i}" for i in range(8)]


class FakeNetwork:
    """The listener's view of the network: a topic to read, nobody connected."""

    def __init__(self, incoming: trio.MemoryReceiveChannel[GossipMessage]) -> None:
        self._incoming = incoming

    async def messages(self) -> AsyncIterator[GossipMessage]:
        async for msg in self._incoming:
            yield msg

    def connected_peers(self) -> list[str]:
        return list(SENDERS)  # so announces lead to pulls, not dials

    def listen_addrs(self) -> list[str]:
        return []


async def test_the_reader_never_waits_for_a_busy_writer(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    # bootstrap off: an empty store would otherwise hold pushes until a snapshot loads
    node = Node(Config(data_dir=tmp_path, bootstrap_snapshot=False), store, "12D3KooWMe")
    send, receive = trio.open_memory_channel[GossipMessage](0)  # unbuffered: send = read
    node.network = FakeNetwork(receive)  # type: ignore[assignment]
    writer_free, applied = trio.Event(), []

    async def held_writer(blocks: list[bytes], peer: str) -> ApplyResult:
        await writer_free.wait()
        applied.append(peer)
        return ApplyResult()

    node.apply_blocks = held_writer  # type: ignore[method-assign]
    total = 500
    first = {s: chain(s, [(1 << 40, [models((U, s, "x"))])])[0] for s in SENDERS}
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(gossip.serve_listener, node)
            with trio.fail_after(10):  # every message read although the writer is held
                for i in range(total):
                    sender = SENDERS[i % len(SENDERS)]
                    announce = Announce(sender, "bafyx", {sender: i + 1}, blocks=(first[sender],))
                    await send.send(GossipMessage(sender, messages.encode(announce)))
            await trio.testing.wait_all_tasks_blocked()  # the last one handled too
            metrics: dict[str, Any] = node.metrics.snapshot()
            assert metrics["announces_received"] == total
            assert metrics["gossip_push_deferred"] >= total - gossip.PUSH_QUEUE - 1
            assert node.sync_wanted == set(SENDERS)  # deferred pushes became pulls
            writer_free.set()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    finally:
        store.close()
