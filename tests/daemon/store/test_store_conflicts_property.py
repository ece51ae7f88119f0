"""Property: replicas writing concurrently under each strategy end identical.

2 to 5 real stores edit, delete and insert a few shared keys, each based on what it
sees, with wall clocks skewed by up to two hours either way, while changesets move
between them one origin at a time (so across origins they arrive out of causal order),
some twice, some only at the end. After a full exchange every replica holds identical
rows, tombstones, per-column versions, conflict sets and database CID; no base is left
pending; and the open conflicts are exactly the keys whose versions-minus-bases has two
or more members (the specification of a head). The same set of changesets applied to
fresh stores in other batchings (all at once, one at a time, random interleavings of the
origins cut into random batches) gives exactly the same state.

Stores are opened once per strategy; every example works on its own keys and origins.
"""

from __future__ import annotations

import itertools
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conflictkit import delete, exchange, insert_model, snapshot, update
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from daemon.store.database import Store
from daemon.store.rowchanges import row_changes
from protocol import changeset as cs_codec
from protocol.changeset import Decoded
from protocol.conflicts import Strategy

REPLICAS = 5
COLUMNS = ("model_family", "modality", "source")
SKEWS_MS = (0, 0, -30_000, 30_000, -3_600_000, 3_600_000, -7_200_000, 7_200_000)

Step = tuple[str, int, int, int]  # (kind, replica, key or source, column or origin)


Scenario = tuple[int, list[Step], int, list[int]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(2, REPLICAS))
    step = st.tuples(
        st.sampled_from(["write", "write", "deliver", "deliver", "redeliver"]),
        st.integers(0, n - 1),
        st.integers(0, 4),
        st.integers(0, 4),
    )
    skews = draw(st.lists(st.sampled_from(SKEWS_MS), min_size=n, max_size=n))
    return n, draw(st.lists(step, min_size=2, max_size=14)), draw(st.integers(0, 2**16)), skews


T0_MS = 1_790_000_000_000  # a fixed "now": the runs are repeatable


def skewed(clock: Iterator[int], offset_ms: int) -> Callable[[], int]:
    """A replica's wall clock: a shared clock that ticks 1 ms per reading, plus a skew."""
    return lambda: next(clock) + offset_ms


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dp-conflicts-") as tmp:
        yield Path(tmp)


@pytest.mark.parametrize("strategy", list(Strategy))
def test_replicas_converge_whatever_the_order(folder: Path, strategy: Strategy) -> None:
    stores = [Store(folder / f"{strategy.value}{i}.duckdb") for i in range(REPLICAS)]
    rebatched = [Store(folder / f"{strategy.value}-batched{i}.duckdb") for i in range(3)]
    for s in stores + rebatched:
        s.strategies["models"] = strategy
    tags = itertools.count()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(scenario=scenarios())
    # An edit from a clock an hour behind, then a second edit by the same writer: before
    # changes were stamped above their bases, a peer given them one at a time saw no
    # conflict where one given both at once saw one.
    @example(scenario=(3, [("write", 0, 1, 0), ("deliver", 1, 0, 0), ("write", 1, 1, 0),
                           ("write", 1, 1, 1)], 0, [0, -3_600_000, 0]))  # fmt: skip
    # An insert of a key that another replica had inserted and deleted: the receiver of
    # the insert took the fast path for new rows (it only noticed live rows, not
    # tombstones) and missed the conflict that every other replica recorded.
    @example(scenario=(5, [("deliver", 0, 0, 1), ("deliver", 1, 0, 3), ("write", 2, 4, 4),
                           ("write", 1, 3, 1), ("deliver", 2, 4, 3), ("deliver", 3, 2, 2),
                           ("redeliver", 3, 0, 4), ("write", 4, 0, 0), ("write", 2, 2, 2),
                           ("deliver", 0, 1, 4), ("write", 1, 0, 0)], 83,
                       [-3_600_000, -3_600_000, 0, 30_000, 3_600_000]))  # fmt: skip
    def check(scenario: Scenario) -> None:
        n, steps, seed, skews = scenario
        tag, rnd = f"x{next(tags)}", random.Random(seed)
        active = stores[:n]
        clock = itertools.count(T0_MS)
        for store, skew in zip(active, skews, strict=True):
            store.clock_ms = skewed(clock, skew)
        for kind, i, a, b in steps:
            if kind == "write":
                _write(active[i], f"{tag}R{i}", f"{tag}/k{a % 3}", COLUMNS[b % 3], rnd)
            else:
                _deliver(active[i], active[a % n], f"{tag}R{b % n}", kind == "redeliver")
        exchange(active)
        first = snapshot(stores[0], f"{tag}/%")
        event(f"open conflicts: {len(first['conflict_heads']) > 0}")
        for other in active[1:]:
            assert snapshot(other, f"{tag}/%") == first
        assert first["pending_bases"] == []
        expected = _open_conflicts(stores[0], tag) if strategy is Strategy.MANUAL else set()
        assert {(pk, (h, o)) for _, pk, h, o, *_ in first["conflict_heads"]} == expected
        chains = _chains(stores[0], tag)
        for store, batches in zip(rebatched, _batchings(chains, rnd), strict=True):
            for batch in batches:
                assert store.apply_blocks(batch).rejected == []
            assert _state(store, tag) == _state(stores[0], tag)

    try:
        check()
    finally:
        for s in stores + rebatched:
            s.close()


def _chains(store: Store, tag: str) -> dict[str, list[bytes]]:
    """This example's changesets, per origin in chain order."""
    out: dict[str, list[bytes]] = {}
    for batch in store.missing_for({}):
        for block in batch:
            origin = cs_codec.decode(block).origin
            if origin.startswith(f"{tag}R"):
                out.setdefault(origin, []).append(block)
    return out


def _batchings(chains: dict[str, list[bytes]], rnd: random.Random) -> list[list[list[bytes]]]:
    """The same changesets three ways: one batch, one block a batch, and a random
    interleaving of the origins (each origin's chain in order) cut into random batches."""
    queues = [list(c) for c in chains.values()]
    merged: list[bytes] = []
    while any(queues):
        merged.append(rnd.choice([q for q in queues if q]).pop(0))
    inner = range(1, len(merged))
    cuts = sorted(rnd.sample(inner, min(len(inner), rnd.randint(0, 4))))
    pieces = [merged[a:b] for a, b in zip([0, *cuts], [*cuts, len(merged)], strict=True)]
    in_order = [b for c in chains.values() for b in c]
    return [[in_order], [[b] for b in in_order], pieces]


def _state(store: Store, tag: str) -> dict[str, object]:
    """Rows, tombstones and conflict bookkeeping of this example's keys (the CID covers
    every example's origins, so it is compared on the replicas, not here)."""
    state = snapshot(store, f"{tag}/%")
    del state["cid"]
    return state


def _write(store: Store, origin: str, key: str, column: str, rnd: random.Random) -> None:
    """Insert the key if this replica lacks it, else edit or (sometimes) delete it."""
    visible = store.read_row("models", key) is not None
    if not visible:
        insert_model(store, origin, key, model_name=key, **{column: f"{origin}-{rnd.random()}"})
    elif rnd.random() < 0.25:
        delete(store, origin, key)
    else:
        update(store, origin, key, **{column: f"{origin}-{rnd.random():.6f}"})


def _deliver(into: Store, source: Store, origin: str, again: bool) -> None:
    """A prefix of one origin's chain (or a re-send of what ``into`` already holds)."""
    have = into.vector()
    if again:
        have = {o: 0 for o in have}
    blocks = [
        blk
        for batch in source.missing_for(have)
        for blk in batch
        if cs_codec.decode(blk).origin == origin
    ]
    if blocks:
        result = into.apply_blocks(blocks[: max(1, len(blocks) // 2 + 1)])
        assert result.rejected == [], result.rejected


def _open_conflicts(store: Store, tag: str) -> set[tuple[str, tuple[int, str]]]:
    """The specification: per key, versions no change was based on, where 2 or more."""
    versions: dict[str, set[tuple[int, str]]] = {}
    bases: dict[str, set[tuple[int, str]]] = {}
    items = [Decoded(cs_codec.decode(b), "", b) for batch in store.missing_for({}) for b in batch]
    for change in row_changes(items, "models"):
        if change.key.startswith(f"{tag}/"):
            versions.setdefault(change.key, set()).add(change.version)
            bases.setdefault(change.key, set()).update(change.bases)
    out = set()
    for key, seen in versions.items():
        heads = seen - bases[key]
        if len(heads) > 1:
            out |= {(key, v) for v in heads}
    return out
