"""``peerctl ingest``: read a file in Arrow chunks and store them, two at a time.

Chunks alternate between two connections to the daemon, so that while it commits one
chunk (the writer thread) it already checks and compresses the next one (a reader
thread), and meanwhile this process parses the chunk after. Each chunk is one changeset;
the daemon answers each connection in order, and the rows stored are summed from the
answers.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from peerctl.client import Client, arrow_stream
from peerctl.output import Progress
from peerctl.records import count_rows, read_chunks

LANES = 2


class _NoPandas:
    """An import finder that makes ``import pandas`` fail as if it were not installed:
    pyarrow imports pandas, when present, on its first conversion (most of a second),
    and reading a file into Arrow never needs it."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("peerctl ingest does not use pandas", name=name)


def skip_pandas() -> None:
    """For the CLI process only (a library caller may well use pandas)."""
    if not any(isinstance(f, _NoPandas) for f in sys.meta_path) and "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


def ingest_file(client: Client, path: Path, chunk_size: int) -> dict[str, Any]:
    """Store the records of ``path``; returns rows, bad rows (with their lines), changesets.

    Raises RecordFileError when the file cannot be read at all. The progress bar is on
    stderr when that is a terminal."""
    started = time.perf_counter()
    bar = Progress(None, f"ingest {path.name}")
    bar.count_total(lambda: count_rows(path))
    lanes = [client] + [Client(client.socket_path, client.timeout) for _ in range(LANES - 1)]
    waiting: deque[Client] = deque()  # lanes with a request in flight, oldest first
    stored, changesets, bad = 0, 0, []
    chunks = read_chunks(path, chunk_size)  # a file we cannot read fails here, first
    try:
        lanes[-1].send("ingest", begin=True)  # the daemon loads pyarrow while we do
        waiting.append(lanes[-1])
        for chunk in chunks:
            bad.extend(chunk.bad)
            if chunk.rows:
                if len(waiting) == LANES:
                    stored += waiting.popleft().receive()["rows"]
                lane = next(c for c in lanes if c not in waiting)
                lane.send("ingest", arrow=arrow_stream(chunk.table))
                waiting.append(lane)
                changesets += 1
            bar.advance(chunk.rows + len(chunk.bad))
        while waiting:
            stored += waiting.popleft().receive()["rows"]
    finally:
        for lane in lanes[1:]:
            lane.close()
    bar.finish()
    return {
        "rows": stored,
        "bad_rows": len(bad),
        "changesets": changesets,
        "seconds": round(time.perf_counter() - started, 3),
        "errors": bad[:20],
    }
