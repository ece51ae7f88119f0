"""The sync client's reading side, over in-memory streams (no sockets)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from daemon.net import sync
from daemon.net.framed import FramedStream, TrioByteStream
from protocol import messages
from protocol.errors import RemoteProtocolError
from protocol.messages import SyncBlock, SyncError

TIMEOUT = 30.0


async def test_blocks_before_a_refusal_are_still_handed_over() -> None:
    """A server that sends some blocks and then ``snapshot_required``: the blocks it did
    send are applied, not dropped with the unfinished batch (found writing SPEC.md)."""
    a, b = trio.testing.memory_stream_pair()
    server = FramedStream(TrioByteStream(a), sync.MAX_FRAME, TIMEOUT)
    client = FramedStream(TrioByteStream(b), sync.MAX_FRAME, TIMEOUT)
    send, receive = trio.open_memory_channel[list[bytes]](10)
    for block in (b"one", b"two"):
        await server.send(messages.encode(SyncBlock(block)))
    await server.send(messages.encode(SyncError("snapshot_required: ...")))
    result = sync.PullResult("peer")
    with pytest.raises(RemoteProtocolError, match="snapshot_required"):
        await sync._read_blocks(client, send, result)
    assert receive.receive_nowait() == [b"one", b"two"]
    assert result.received == 2


def test_anti_entropy_backs_off_while_nothing_changes() -> None:
    step = sync.next_anti_entropy_interval
    waits, wait = [], 10.0
    for _ in range(5):
        wait = step(wait, False, 10.0, 60.0)
        waits.append(wait)
    assert waits == [20.0, 40.0, 60.0, 60.0, 60.0]  # bounded: a loss is found within 60 s
    assert step(60.0, True, 10.0, 60.0) == 10.0  # a change: back to the base
    assert step(10.0, False, 10.0, 5.0) == 10.0  # a ceiling below the base is the base


class _Changes:
    """What ``_wait_round`` needs of a node: its change event and the base interval."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.config = type("C", (), {"anti_entropy_interval": 10.0})()

    async def wait_changed(self) -> None:
        await self.event.wait()

    def change(self) -> None:
        self.event.set()
        self.event = trio.Event()


def test_a_change_cuts_a_long_anti_entropy_wait() -> None:
    async def main() -> None:
        quiet = _Changes()
        start = trio.current_time()
        assert not await sync._wait_round(quiet, 60.0)  # type: ignore[arg-type]
        assert trio.current_time() - start == pytest.approx(60.0)

        busy = _Changes()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def write_at_5() -> None:
                await trio.sleep(5.0)
                busy.change()

            nursery.start_soon(write_at_5)
            assert await sync._wait_round(busy, 60.0)  # type: ignore[arg-type]
        assert 5.0 + 8.0 <= trio.current_time() - start <= 5.0 + 12.0  # base ± 20 %

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
