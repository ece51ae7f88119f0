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
