"""Optional persistence of the monitor's time series (``[metrics] persist = true``).

Points go to their own DuckDB file, ``<data_dir>/metrics.duckdb``, never to the
replicated database: they are local, and can enter no changeset and no CID. The
monitor flushes new points every ``persist_interval`` and on shutdown, reloads the
last ``retention`` on start, and prunes older points.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from daemon.metrics.timeseries import SeriesKey, SeriesStore

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS samples "
    "(name VARCHAR NOT NULL, tags VARCHAR NOT NULL, t DOUBLE NOT NULL, v DOUBLE NOT NULL)"
)


def collect(store: SeriesStore, since: float, until: float) -> list[tuple[str, str, float, float]]:
    """Every point with ``since < t <= until`` as rows (run where the store is written)."""
    rows = []
    for (name, tags), ring in store.series.items():
        tag_text = json.dumps(dict(tags), sort_keys=True)
        rows += [(name, tag_text, t, v) for t, v in ring.points(since) if since < t <= until]
    return rows


class HistoryFile:
    """One DuckDB connection, used from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con = duckdb.connect(str(path))
        self._con.execute(SCHEMA)

    def close(self) -> None:
        """Close the file."""
        self._con.close()

    def write(self, rows: list[tuple[str, str, float, float]]) -> None:
        """Store rows from :func:`collect`."""
        if rows:
            self._con.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)", rows)

    def load(self, store: SeriesStore, since: float) -> int:
        """Put points newer than ``since`` back into ``store``, oldest first (before the
        sampler starts)."""
        rows = self._con.execute(
            "SELECT name, tags, t, v FROM samples WHERE t > ? ORDER BY t", [since]
        ).fetchall()
        for name, tag_text, t, v in rows:
            key: SeriesKey = (name, tuple(sorted(json.loads(tag_text).items())))
            store.add(key, t, v)
        return len(rows)

    def prune(self, before: float) -> None:
        """Drop points older than ``before``."""
        self._con.execute("DELETE FROM samples WHERE t < ?", [before])
