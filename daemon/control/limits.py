"""Bounds of the control socket: connections, bytes held for them, time per frame.

Each connection may send a frame up to ``max_control_bytes``, so without a bound 20
connections each holding a partial 64 MiB frame took the daemon from 230 to 600 MB.
Now a frame's payload is read only once its declared length is reserved from one
:class:`Budget` shared by all connections (``control_max_buffered_bytes``), held
until its response is sent; a connection waits up to ``control_frame_timeout`` for
room, and a started frame must arrive whole within that time too. Between requests a
connection may idle for ``control_idle_timeout``. At most ``control_max_connections``
are served; one more is answered ``busy`` and closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from protocol.errors import RemoteProtocolError
from protocol.framing import HEADER

READ_SIZE = 1 << 16


@dataclass(frozen=True)
class ControlLimits:
    """What the control socket allows."""

    max_frame: int
    max_connections: int = 64
    max_buffered: int = 256 << 20
    idle_timeout: float = 3600.0
    frame_timeout: float = 10.0


class Budget:
    """Bytes that all connections together may hold for frames being read or handled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._freed = trio.Event()

    async def take(self, n: int) -> None:
        """Wait until ``n`` bytes are free and take them (the caller bounds the wait)."""
        if n > self.total:
            raise RemoteProtocolError(
                f"frame of {n} bytes exceeds control_max_buffered_bytes {self.total}"
            )
        while self.used + n > self.total:
            await self._freed.wait()
        self.used += n

    def give_back(self, n: int) -> None:
        """Return ``n`` bytes taken earlier."""
        self.used -= n
        self._freed.set()
        self._freed = trio.Event()


class FrameTooSlow(Exception):
    """A started frame did not arrive whole in time, or no room was free for it."""


class FrameReader:
    """Reads whole frames from one connection within the limits; ``reserved`` bytes of
    the budget stay taken for the last frame until :meth:`release`."""

    def __init__(self, stream: trio.abc.ReceiveStream, limits: ControlLimits, budget: Budget):
        self.stream, self.limits, self.budget = stream, limits, budget
        self.reserved = 0
        self._pending = bytearray()

    async def receive(self) -> bytearray | None:
        """The next frame (its own buffer), None at a clean end of stream between frames.

        Raises TooSlowError when idle too long between frames, FrameTooSlow for a frame
        that stalls, RemoteProtocolError for an oversize one, EndOfChannel mid-frame.
        """
        self.release()
        with trio.fail_after(self.limits.idle_timeout):
            if not await self._fill(1):
                return None
        try:
            with trio.fail_after(self.limits.frame_timeout):
                return await self._rest_of_frame()
        except trio.TooSlowError as exc:
            raise FrameTooSlow(
                f"frame not complete within {self.limits.frame_timeout} s (control_frame_timeout)"
            ) from exc

    def release(self) -> None:
        """Give the last frame's bytes back to the budget."""
        if self.reserved:
            self.budget.give_back(self.reserved)
            self.reserved = 0

    async def _rest_of_frame(self) -> bytearray:
        if not await self._fill(HEADER.size):
            raise trio.EndOfChannel("stream ended in a frame header")
        (length,) = HEADER.unpack_from(self._pending)
        if length > self.limits.max_frame:
            raise RemoteProtocolError(
                f"frame of {length} bytes exceeds limit {self.limits.max_frame}"
            )
        await self.budget.take(length)
        self.reserved = length
        # The payload is read straight into its own buffer: an ingest chunk of tens of
        # MB gathered in _pending, then sliced out, was copied twice more.
        frame = bytearray(length)
        have = min(len(self._pending) - HEADER.size, length)
        frame[:have] = self._pending[HEADER.size : HEADER.size + have]
        del self._pending[: HEADER.size + have]
        view = memoryview(frame)
        while have < length:
            got = await self._receive_into(view[have:])
            if not got:
                raise trio.EndOfChannel("stream ended in the middle of a frame")
            have += got
        return frame

    async def _receive_into(self, view: memoryview) -> int:
        """Read at most ``len(view)`` bytes into ``view``; 0 at end of stream."""
        sock = getattr(self.stream, "socket", None)
        if sock is not None:  # a trio.SocketStream: no intermediate bytes object
            return int(await sock.recv_into(view, min(len(view), 1 << 20)))
        data = await self.stream.receive_some(min(len(view), 1 << 20))
        view[: len(data)] = data
        return len(data)

    async def _fill(self, size: int) -> bool:
        """Read until ``size`` bytes are pending; False at end of stream."""
        while len(self._pending) < size:
            want = max(READ_SIZE, min(size - len(self._pending), 1 << 20))
            data = await self.stream.receive_some(want)
            if not data:
                return False
            self._pending += data
        return True
