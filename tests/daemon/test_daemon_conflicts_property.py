"""Property: replicas writing concurrently under each strategy end identical.

2 to 5 real stores edit, delete and insert a few shared keys, each based on what it
sees, while changesets move between them one origin at a time (so across origins they
arrive out of causal order), some twice, some only at the end. After a full exchange
every replica holds identical rows, tombstones, per-column versions, conflict sets and
database CID; no base is left pending; and the open conflicts are exactly the keys
whose versions-minus-bases has two or more members (the specification of a head).

Stores are opened once per strategy and every example works on its own keys.
"""

from __future__ import annotations

import itertools
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conflictkit import delete, exchange, insert_model, snapshot, update
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from daemon.rowchanges import row_changes
from daemon.store import Decoded, Store
from protocol import changeset as cs_codec
from protocol.conflicts import Strategy

REPLICAS = 5
COLUMNS = ("model_family", "modality", "source")

Step = tuple[str, int, int, int]  # (kind, replica, key or source, column or origin)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[Step], int]:
    n = draw(st.integers(2, REPLICAS))
    step = st.tuples(
        st.sampled_from(["write", "write", "deliver", "deliver", "redeliver"]),
        st.integers(0, n - 1),
        st.integers(0, 4),
        st.integers(0, 4),
    )
    return n, draw(st.lists(step, min_size=2, max_size=14)), draw(st.integers(0, 2**16))


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dp-conflicts-") as tmp:
        yield Path(tmp)


@pytest.mark.parametrize("strategy", list(Strategy))
def test_replicas_converge_whatever_the_order(folder: Path, strategy: Strategy) -> None:
    stores = [Store(folder / f"{strategy.value}{i}.duckdb") for i in range(REPLICAS)]
    for s in stores:
        s.strategies["models"] = strategy
    tags = itertools.count()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(scenario=scenarios())
    def check(scenario: tuple[int, list[Step], int]) -> None:
        n, steps, seed = scenario
        tag, rnd = f"x{next(tags)}", random.Random(seed)
        active = stores[:n]
        for kind, i, a, b in steps:
            if kind == "write":
                _write(active[i], f"R{i}", f"{tag}/k{a % 3}", COLUMNS[b % 3], rnd)
            else:
                _deliver(active[i], active[a % n], f"R{b % n}", kind == "redeliver")
        exchange(active)
        first = snapshot(stores[0], f"{tag}/%")
        event(f"open conflicts: {len(first['conflict_heads']) > 0}")
        for other in active[1:]:
            assert snapshot(other, f"{tag}/%") == first
        assert first["pending_bases"] == []
        expected = _open_conflicts(stores[0], tag) if strategy is Strategy.MANUAL else set()
        assert {(pk, (h, o)) for _, pk, h, o, *_ in first["conflict_heads"]} == expected

    try:
        check()
    finally:
        for s in stores:
            s.close()


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
