"""Length-prefixed frames over any byte stream (libp2p stream or trio socket).

The stream adapters give both transports one small interface, so framing, timeouts
and size limits are written once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Protocol

import trio

from protocol.framing import FrameDecoder, encode_frame

READ_SIZE = 1 << 16


class StreamClosedError(Exception):
    """The other side closed or broke the stream before a whole frame arrived."""


class ByteStream(Protocol):
    """The minimum a transport stream offers."""

    async def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes``; b"" at end of stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Send all of ``data``."""
        ...

    async def close(self) -> None:
        """Close our side."""
        ...


class TrioByteStream:
    """Adapter for a ``trio.abc.Stream`` (Unix or TCP socket)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise StreamClosedError(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise StreamClosedError(str(exc)) from exc

    async def close(self) -> None:
        await self.stream.aclose()


class FramedStream:
    """Send and receive whole frames, with a size limit and a per-read deadline."""

    def __init__(
        self, stream: ByteStream, max_frame: int, read_timeout: float, min_rate: float = 0.0
    ) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self.read_timeout = read_timeout
        self.min_rate = min_rate  # bytes/s on average after the first read_timeout; 0 = off
        self._started = trio.current_time()
        self._decoder = FrameDecoder(max_frame)
        self.bytes_in = 0
        self.bytes_out = 0

    async def send(self, payload: bytes) -> None:
        """Send one frame."""
        await self.send_many([payload])

    async def send_many(self, payloads: list[bytes]) -> None:
        """Send several frames in one write (large writes are much faster on yamux)."""
        data = b"".join(encode_frame(p, self.max_frame) for p in payloads)
        self.bytes_out += len(data)
        await self.stream.write(data)

    async def send_chunked(self, payloads: Iterable[bytes], chunk: int) -> None:
        """Send frames in writes of about ``chunk`` bytes each (few, large writes)."""
        pending: list[bytes] = []
        size = 0
        for payload in payloads:
            pending.append(payload)
            size += len(payload)
            if size >= chunk:
                await self.send_many(pending)
                pending, size = [], 0
        if pending:
            await self.send_many(pending)

    async def receive(self) -> bytes | None:
        """Next frame, or None at a clean end of stream (between frames).

        Raises TooSlowError when the peer sends nothing for ``read_timeout`` seconds
        (or, with ``min_rate``, trickles: fewer than ``min_rate`` bytes per second on
        average once ``read_timeout`` has passed), RemoteProtocolError on an oversize
        frame, StreamClosedError mid-frame.
        """
        while (frame := self._decoder.next_frame()) is None:
            with trio.fail_after(self._allowance()):
                data = await self.stream.read(READ_SIZE)
            if not data:
                if self._decoder.pending:
                    raise StreamClosedError("stream ended in the middle of a frame")
                return None
            self.bytes_in += len(data)
            self._decoder.feed(data)
        return frame

    def _allowance(self) -> float:
        """Seconds the next read may take."""
        if not self.min_rate:
            return self.read_timeout
        allowed_until = self._started + self.read_timeout + self.bytes_in / self.min_rate
        return max(0.0, min(self.read_timeout, allowed_until - trio.current_time()))

    async def aclose(self) -> None:
        """Close the stream, ignoring a peer that already went away."""
        with contextlib.suppress(
            StreamClosedError, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            await self.stream.close()
