"""Append-only files holding changeset blocks; DuckDB keeps only where each block is.

Blocks used to live in a BLOB column, and every DuckDB checkpoint rewrote the row
group holding them: about 10 ms per MB of log at every checkpoint (bench_checkpoint).
Here a block is written once, at the end of the current segment file, and fsynced
before the transaction that references it commits. A crash in between leaves
unreferenced bytes at the end of a segment, never a reference to missing bytes.

Pruned blocks (daemon/store/history.py) leave dead bytes behind: a segment whose live
blocks fill less than half of it has them copied to the current segment and is then
deleted, and a segment with none is deleted outright.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

SEGMENT_BYTES = 64 << 20
Location = tuple[int, int, int]  # (segment, offset, length)


class BlockLogError(Exception):
    """A referenced block cannot be read back (missing or truncated segment)."""


class BlockLog:
    """Segments ``blocks/000001.log``, ``000002.log``… under a directory."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        segments = sorted(int(p.stem) for p in directory.glob("*.log") if p.stem.isdigit())
        self._segment = segments[-1] if segments else 1
        self._fd = self._open_for_append(self._segment)
        self._lock = threading.Lock()

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:06d}.log"

    def _open_for_append(self, segment: int) -> int:
        return os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def append(self, blocks: list[bytes]) -> list[Location]:
        """Write blocks at the end of the log, fsync, and return where they are."""
        with self._lock:
            offset = os.fstat(self._fd).st_size
            if offset >= self.segment_bytes:
                os.close(self._fd)
                self._segment += 1
                self._fd = self._open_for_append(self._segment)
                offset = 0
            locations = []
            for block in blocks:
                locations.append((self._segment, offset, len(block)))
                offset += len(block)
            data = b"".join(blocks) if len(blocks) > 1 else blocks[0]
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
            return locations

    def read(self, locations: list[Location]) -> list[bytes]:
        """Read blocks back (any thread)."""
        out: list[bytes] = []
        fds: dict[int, int] = {}
        try:
            for segment, offset, length in locations:
                if segment not in fds:
                    try:
                        fds[segment] = os.open(self._path(segment), os.O_RDONLY)
                    except FileNotFoundError as exc:
                        raise BlockLogError(f"segment {self._path(segment)} is missing") from exc
                data = os.pread(fds[segment], length, offset)
                if len(data) != length:
                    raise BlockLogError(f"segment {segment} is truncated at {offset}")
                out.append(data)
        finally:
            for fd in fds.values():
                os.close(fd)
        return out

    def size_bytes(self) -> int:
        """Bytes in all segments."""
        return sum(p.stat().st_size for p in self.directory.glob("*.log"))

    @property
    def current(self) -> int:
        """The segment new blocks go to."""
        return self._segment

    def segments(self) -> dict[int, int]:
        """Every segment on disk with its size in bytes."""
        out = {}
        for path in self.directory.glob("*.log"):
            if path.stem.isdigit():
                out[int(path.stem)] = path.stat().st_size
        return out

    def rotate(self) -> None:
        """Start a new current segment (the old one is then only read, or deleted)."""
        with self._lock:
            os.close(self._fd)
            self._segment += 1
            self._fd = self._open_for_append(self._segment)

    def remove(self, segment: int) -> None:
        """Delete a segment no block references any more (never the current one)."""
        if segment == self._segment:
            raise BlockLogError("the current segment cannot be removed")
        self._path(segment).unlink(missing_ok=True)

    def close(self) -> None:
        """Close the append handle."""
        with self._lock:
            os.close(self._fd)
