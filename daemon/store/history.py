"""How long the changeset log keeps blocks: until every known peer holds them.

A peer keeps the blocks it applied so that it can serve them by delta sync. Once every
peer it knows holds a changeset, nobody will ask it for that one again, and the block
is dropped from the log (its rows stay in the tables). "Known" peers are those whose
announce we heard within ``retention`` seconds, remembered across restarts in
``store.known_peers``: a peer that is down keeps its changesets here until it is back,
or until it has been silent for the retention (measured on our own running time as
well, so a clock that jumps does not expire anyone).

Who asks later for a pruned changeset gets what we still hold and ``snapshot_required``
(daemon/net/sync.py): an empty peer bootstraps from a snapshot anyway; a non-empty one
that fell that far behind must be emptied and bootstrapped, or sync from a peer that
still has the history. A data dir that was never in contact with anyone prunes
everything: a newcomer then starts from a snapshot.

Then the segments: a segment whose live blocks fill less than half of it has them
copied to the current segment and is deleted; one with no live block is deleted. A
crash between the copy and the commit that points at the copies leaves dead bytes in
the current segment; one after the commit leaves an unreferenced segment, deleted at
the next pass. Deleted segments are only unlinked a pass later, so a sync reading the
old places finishes first.

All functions run in the writer thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from daemon.store.database import Store

MIN_COMPACT_BYTES = 1 << 20  # a current segment smaller than this is not rotated


@dataclass
class Pruned:
    """What one pass did."""

    changesets: int = 0
    block_bytes: int = 0
    moved_bytes: int = 0
    segments_removed: list[int] = field(default_factory=list)

    def to_wire(self) -> dict[str, object]:
        """The control-API / log form."""
        return dict(self.__dict__)


def remember(store: Store, seen: Mapping[str, tuple[Mapping[str, int], float]]) -> None:
    """Record, in one transaction, that each peer in ``seen`` announced its vector at its
    time (unix s): ``{peer: (vector, seen_at)}``."""
    if not seen:
        return
    params = {
        "peers": list(seen),
        "vectors": [json.dumps(dict(v), sort_keys=True) for v, _ in seen.values()],
        "seen": [float(at) for _, at in seen.values()],
    }

    def write(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute("DELETE FROM store.known_peers WHERE list_contains($peers, peer)",
                    {"peers": params["peers"]})  # fmt: skip
        cur.execute("INSERT INTO store.known_peers "
                    "SELECT unnest($peers), unnest($vectors), unnest($seen)", params)  # fmt: skip

    store.transaction(write)


def known(store: Store, now: float, retention: float, uptime: float) -> dict[str, dict[str, int]]:
    """Vectors of the peers that hold back pruning: heard from within ``retention``, or
    at any time if we have not been running for ``retention`` yet."""
    sql = "SELECT peer, vector, seen_at FROM store.known_peers"
    rows = store.cursor().execute(sql).fetchall()
    out = {}
    for peer, vector, seen_at in rows:
        if uptime < retention or now - seen_at <= retention:
            out[peer] = {str(o): int(s) for o, s in json.loads(vector).items()}
    return out


def floors(
    heads: Mapping[str, tuple[int, str]], peers: Mapping[str, Mapping[str, int]]
) -> dict[str, int]:
    """Per origin, the highest seq that every peer in ``peers`` holds (all of it: none)."""
    return {
        origin: min([v.get(origin, 0) for v in peers.values()], default=seq)
        for origin, (seq, _) in heads.items()
    }


def prune(store: Store, upto: Mapping[str, int]) -> Pruned:
    """Drop the log entries of changesets at or below ``upto[origin]``."""
    done = Pruned()
    floor = store.history_floor  # per origin, the first seq the log still holds
    dropped = {origin: seq for origin, seq in upto.items() if seq >= floor.get(origin, 1)}
    if not dropped:
        return done  # an idle daemon's pass ends here, without a transaction
    wanted = "(SELECT unnest($origins) AS origin, unnest($seqs) AS seq)"
    params = {"origins": list(dropped), "seqs": list(dropped.values())}

    def delete(cur: duckdb.DuckDBPyConnection) -> None:
        count, size = cur.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM store.changesets c "
            f"JOIN {wanted} u ON c.origin = u.origin AND c.seq <= u.seq",
            params,
        ).fetchall()[0]
        cur.execute(f"DELETE FROM store.changesets c USING {wanted} u "
                    "WHERE c.origin = u.origin AND c.seq <= u.seq", params)  # fmt: skip
        # the applied count is the highest ``applied`` of the log when the store opens;
        # with the log pruned that would go back (and the graph, behind it, be rebuilt)
        cur.execute("DELETE FROM store.meta WHERE key = 'applied'")
        cur.execute("INSERT INTO store.meta VALUES ('applied', ?)", [str(store.applied_count())])
        done.changesets, done.block_bytes = int(count), int(size)

    store.transaction(delete)
    store.reload_history_floor()
    return done


def compact(store: Store, done: Pruned, retired: dict[int, float], grace: float) -> Pruned:
    """Copy the live blocks out of mostly-dead segments and delete those segments.

    ``retired`` maps segments already emptied to when: they are unlinked once ``grace``
    seconds have passed (a sync may still read their old places)."""
    log = store.blocklog
    now = time.monotonic()
    _unlink_retired(store, done, retired, now - grace)
    live = dict(store.cursor().execute(
        "SELECT seg, sum(size) FROM store.changesets GROUP BY seg"
    ).fetchall())  # fmt: skip
    sizes = log.segments()
    current = sizes.get(log.current, 0)
    if current >= MIN_COMPACT_BYTES and live.get(log.current, 0) * 2 < current:
        log.rotate()
    for segment, size in sizes.items():
        if segment == log.current or segment in retired:
            continue
        if live.get(segment, 0) * 2 < size:
            done.moved_bytes += _move_out(store, segment)
            retired[segment] = now
    if grace <= 0:
        _unlink_retired(store, done, retired, now)
    return done


def _unlink_retired(store: Store, done: Pruned, retired: dict[int, float], before: float) -> None:
    for segment, since in list(retired.items()):
        if since <= before:
            store.blocklog.remove(segment)
            done.segments_removed.append(segment)
            del retired[segment]


def _move_out(store: Store, segment: int) -> int:
    """Copy a segment's live blocks to the current segment and point the log at them."""
    rows = (
        store.cursor()
        .execute(
            "SELECT origin, seq, pos, size FROM store.changesets WHERE seg = ? ORDER BY pos",
            [segment],
        )
        .fetchall()
    )
    if not rows:
        return 0
    blocks = store.blocklog.read([(segment, pos, size) for _, _, pos, size in rows])
    places = store.blocklog.append(blocks)  # fsynced before the log points at them
    params = {
        "origins": [r[0] for r in rows], "seqs": [r[1] for r in rows],
        "segs": [p[0] for p in places], "poss": [p[1] for p in places],
    }  # fmt: skip

    def repoint(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(
            "UPDATE store.changesets c SET seg = m.seg, pos = m.pos FROM (SELECT "
            "unnest($origins) AS origin, unnest($seqs) AS seq, unnest($segs)::INTEGER AS seg, "
            "unnest($poss) AS pos) m WHERE c.origin = m.origin AND c.seq = m.seq",
            params,
        )

    store.transaction(repoint)
    return sum(len(b) for b in blocks)
