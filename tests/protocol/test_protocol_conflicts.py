"""The conflict rules alone: any delivery order gives the same heads and merged rows.

A model of replicas (no database): writers edit, delete and resolve a few keys based on
what they see; every replica receives every change in its own random order (each
origin's changes in order, origins interleaved, batches of random size, duplicates).
All replicas must end with the heads the specification names (versions no change was
based on) and with the same merged rows, equal to per-column last-writer-wins.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.changeset import Version
from protocol.conflicts import NO_VERSION, Arrival, MergedRow, advance_heads

COLUMNS = ("a", "b", "c")


@dataclass(frozen=True)
class Change:
    key: str
    version: Version
    bases: tuple[Version, ...]
    delete: bool
    values: tuple[tuple[str, Any], ...]


class Replica:
    """Heads, pending bases and merged rows of every key, as a daemon keeps them."""

    def __init__(self) -> None:
        self.heads: dict[str, frozenset[Version]] = {}
        self.pending: dict[str, frozenset[Version]] = {}
        self.rows: dict[str, MergedRow] = {}
        self.applied: dict[str, int] = {}  # origin -> largest hlc applied
        self.seen: set[Change] = set()

    def apply(self, batch: list[Change]) -> None:
        fresh = [c for c in dict.fromkeys(batch) if c not in self.seen]
        for key in {c.key for c in fresh}:
            mine = [c for c in fresh if c.key == key]
            arrivals = [Arrival(c.version, c.bases) for c in mine]
            self.heads[key], self.pending[key] = advance_heads(
                self.heads.get(key, frozenset()), self.pending.get(key, frozenset()),
                arrivals, self.applied,
            )  # fmt: skip
            row = self.rows.setdefault(key, MergedRow((NO_VERSION, False)))
            for c in mine:
                if c.delete:
                    row.delete(c.version, COLUMNS)
                else:
                    row.upsert(c.version, dict(c.values))
        for c in fresh:
            self.applied[c.version[1]] = max(self.applied.get(c.version[1], 0), c.version[0])
        self.seen.update(fresh)

    def state(self) -> tuple[Any, ...]:
        rows = {k: (r.exists, r.values(COLUMNS)) for k, r in self.rows.items()}
        return dict(self.heads), {k: p for k, p in self.pending.items() if p}, rows


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[list[Change]], int]:
    """Per origin, its changes in order; writers see a random causal subset of others."""
    n = draw(st.integers(2, 5))
    writer = Replica()  # what the writers collectively may have seen
    chains: list[list[Change]] = [[] for _ in range(n)]
    known: list[Replica] = [Replica() for _ in range(n)]
    clock = 0
    for _ in range(draw(st.integers(1, 12))):
        i = draw(st.integers(0, n - 1))
        # the writer first learns some of what others wrote (a causal prefix per origin)
        for j in range(n):
            if j != i and draw(st.booleans()):
                known[i].apply(chains[j][: draw(st.integers(0, len(chains[j])))])
        clock = max([clock, *known[i].applied.values()]) + draw(st.integers(1, 2))
        key = f"k{draw(st.integers(0, 2))}"
        heads = sorted(known[i].heads.get(key, frozenset()))
        resolve = len(heads) > 1 and draw(st.booleans())
        bases = tuple(heads) if resolve else tuple(heads[-1:])
        column = draw(st.sampled_from(COLUMNS))
        change = Change(key, (clock, f"o{i}"), bases, draw(st.integers(0, 4)) == 0,
                        ((column, f"o{i}@{clock}"),))  # fmt: skip
        chains[i].append(change)
        known[i].apply([change])
        writer.apply([change])
    return chains, draw(st.integers(0, 2**32))


def deliver(chains: list[list[Change]], rnd: random.Random) -> Replica:
    """One replica receiving everything in a random order that keeps each chain's order."""
    replica = Replica()
    cursors = [0] * len(chains)
    sent: list[Change] = []
    while any(c < len(chain) for c, chain in zip(cursors, chains, strict=True)):
        batch: list[Change] = []
        for _ in range(rnd.randint(1, 3)):
            open_ = [j for j, chain in enumerate(chains) if cursors[j] < len(chain)]
            if not open_:
                break
            j = rnd.choice(open_)
            batch.append(chains[j][cursors[j]])
            cursors[j] += 1
        if sent and rnd.random() < 0.3:
            batch.append(rnd.choice(sent))  # a duplicate
        sent += batch
        replica.apply(batch)
    return replica


@settings(max_examples=600, deadline=None)
@given(history=histories())
def test_every_delivery_order_ends_in_the_specified_state(
    history: tuple[list[list[Change]], int],
) -> None:
    chains, seed = history
    rnd = random.Random(seed)
    replicas = [deliver(chains, rnd) for _ in range(3)]
    states = [r.state() for r in replicas]
    assert states[0] == states[1] == states[2]
    everything = [c for chain in chains for c in chain]
    heads, pending, rows = states[0]
    assert pending == {}
    for key in {c.key for c in everything}:
        mine = [c for c in everything if c.key == key]
        spec_heads = {c.version for c in mine} - {b for c in mine for b in c.bases}
        assert heads[key] == spec_heads
        exists, values = rows[key]
        last = max(mine, key=lambda c: c.version)
        assert exists == (last.version, not last.delete)
        for column in COLUMNS:
            writes = [c for c in mine if c.delete or column in dict(c.values)]
            top = max(writes, key=lambda c: c.version) if writes else None
            want = None if top is None or top.delete else dict(top.values)[column]
            assert values[column] == want
