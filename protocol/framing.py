"""Length-prefixed frames over a byte stream, sans-IO.

A frame is a 4-byte big-endian length followed by that many payload bytes. The
decoder is fed whatever bytes arrive, in any split, and yields whole payloads; a
declared length above the limit is a protocol error before any payload is buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from protocol.errors import LocalProtocolError, RemoteProtocolError

HEADER = struct.Struct(">I")


def encode_frame(payload: bytes, max_size: int) -> bytes:
    """Prefix ``payload`` with its length."""
    if len(payload) > max_size:
        raise LocalProtocolError(f"frame of {len(payload)} bytes exceeds limit {max_size}")
    return HEADER.pack(len(payload)) + payload


def frame_pieces(
    pieces: Iterable[bytes | memoryview], max_size: int, coalesce: int = 64 << 10
) -> list[bytes | memoryview]:
    """``pieces`` of one payload as a frame, still in pieces (their concatenation is
    :func:`encode_frame` of the joined payload): runs of small pieces are joined, large
    ones kept as they are, so a sender writes few pieces and copies no large one."""
    out: list[bytes | memoryview] = []
    small = bytearray()
    total = 0
    for piece in pieces:
        total += len(piece)
        if len(piece) < coalesce:
            small += piece
            continue
        if small:
            out.append(bytes(small))
            small.clear()
        out.append(piece)
    if small:
        out.append(bytes(small))
    if total > max_size:
        raise LocalProtocolError(f"frame of {total} bytes exceeds limit {max_size}")
    return [HEADER.pack(total), *out]


class FrameDecoder:
    """Incremental decoder: ``feed(bytes)``, then ``next_frame()`` until it returns None."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet returned as a frame."""
        return len(self._buffer)

    def next_frame(self) -> bytes | None:
        """Return the next whole payload, or None if more bytes are needed."""
        if len(self._buffer) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buffer)
        if length > self.max_size:
            raise RemoteProtocolError(f"frame of {length} bytes exceeds limit {self.max_size}")
        end = HEADER.size + length
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        return payload
