"""Property: random histories, delivered in any causal interleaving with duplicates, converge.

Every origin's chain is delivered in order, but origins are interleaved at random, blocks
are re-delivered, and batches are cut at random. All stores must end with identical rows,
tombstones, vectors and database CID, and the rows must be the last-writer-wins model:
per key, the change with the largest (hlc, origin) decides.

Opening a DuckDB store costs far more than applying a few changesets, so the stores are
opened once per test and every example works in its own namespace of keys and origins
(origins keep their relative order, so tie-breaks are unchanged). Stores therefore hold
the union of all examples, which every store must still agree on after each example.
"""

from __future__ import annotations

import itertools
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.store.database import Store
from protocol.changeset import Changeset, Op, TableChanges, cid_of, encode
from protocol.cid import database_cid

U, D = Op.UPSERT, Op.DELETE
KEYS = ("k0", "k1", "k2")
ORIGINS = ("alpha", "beta", "gamma")

# (origin, [(hlc, [(op, key)])]) per origin; values are derived from (origin, seq).
Spec = dict[str, list[tuple[int, list[tuple[int, str]]]]]


@st.composite
def histories(draw: st.DrawFn) -> Spec:
    n_origins = draw(st.integers(2, 3))
    spec: Spec = {}
    for origin in ORIGINS[:n_origins]:
        stamp, chain = 0, []
        for _ in range(draw(st.integers(1, 2))):
            stamp += draw(st.integers(1, 2))  # small steps: hlc ties across origins are common
            ops = draw(
                st.lists(
                    st.tuples(st.sampled_from([U, U, D]), st.sampled_from(KEYS)),
                    min_size=1,
                    max_size=3,
                    unique_by=lambda t: t[1],
                )
            )
            chain.append((stamp, ops))
        spec[origin] = chain
    return spec


def build(spec: Spec, tag: str) -> tuple[dict[str, list[bytes]], dict[str, Any]]:
    """Blocks per origin, and the expected LWW outcome per key."""
    blocks: dict[str, list[bytes]] = {}
    changes: dict[str, list[tuple[tuple[int, str], int, str | None]]] = {}
    for origin, chain in spec.items():
        name, prev, out = f"{origin}.{tag}", None, []
        for seq, (stamp, ops) in enumerate(chain, start=1):
            keys = [f"{tag}/{key}" for _, key in ops]
            values = [None if op == D else f"{name}#{seq}" for op, _ in ops]
            table = TableChanges(
                "models",
                ["model_id", "model_name"],
                bytes(op for op, _ in ops),
                [None] * len(ops),
                [3] * len(ops),
                [keys, values],
            )
            block = encode(Changeset(name, seq, stamp, prev, [table]))
            prev = cid_of(block)
            out.append(block)
            for (op, _), key, value in zip(ops, keys, values, strict=True):
                changes.setdefault(key, []).append(((stamp, name), op, value))
        blocks[origin] = out
    expected: dict[str, Any] = {"rows": [], "tombstones": []}
    for key in sorted(changes):
        (stamp, name), op, value = max(changes[key], key=lambda c: c[0])
        if op == U:
            expected["rows"].append((key, value, stamp, name))
        else:
            expected["tombstones"].append(("models", key, stamp, name))
    return blocks, expected


def deliveries(blocks: dict[str, list[bytes]], rnd: random.Random) -> list[list[bytes]]:
    """A causal interleaving of the chains with re-deliveries, cut into random batches."""
    pending = {origin: list(chain) for origin, chain in blocks.items()}
    sent: list[bytes] = []
    sequence: list[bytes] = []
    while any(pending.values()):
        if sent and rnd.random() < 0.25:
            sequence.append(rnd.choice(sent))
            continue
        origin = rnd.choice(sorted(o for o, chain in pending.items() if chain))
        block = pending[origin].pop(0)
        sent.append(block)
        sequence.append(block)
    if rnd.random() < 0.3:
        sequence += sent  # a full anti-entropy round re-sends everything
    batches = []
    while sequence:
        size = rnd.randint(1, 4)
        batches.append(sequence[:size])
        sequence = sequence[size:]
    return batches


def state(store: Store, tag: str) -> dict[str, Sequence[tuple[Any, ...]]]:
    _, rows = store.query(
        "SELECT model_id, model_name, _hlc, _origin FROM store.models "
        f"WHERE model_id LIKE '{tag}/%' ORDER BY 1",
        100,
        10.0,
    )
    _, tombs = store.query(
        f"SELECT * FROM store.tombstones WHERE pk LIKE '{tag}/%' ORDER BY ALL", 100, 10.0
    )
    return {"rows": rows, "tombstones": tombs}


def test_random_histories_converge_in_any_interleaving() -> None:
    with tempfile.TemporaryDirectory(prefix="dp-conv-") as tmp:
        stores = [Store(Path(tmp) / f"s{i}.duckdb") for i in range(2)]
        tags = itertools.count()
        heads: dict[str, tuple[int, str]] = {}  # of every example so far

        @settings(
            max_examples=25,  # ~0.25 s each: 2 stores x ~4 changesets x ~30 ms of DuckDB
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(spec=histories(), seeds=st.lists(st.integers(0, 2**32), min_size=2, max_size=2))
        def check(spec: Spec, seeds: list[int]) -> None:
            tag = f"t{next(tags)}"
            blocks, expected = build(spec, tag)
            distinct = sum(len(chain) for chain in blocks.values())
            for store, seed in zip(stores, seeds, strict=True):
                applied = duplicates = delivered = 0
                for batch in deliveries(blocks, random.Random(seed)):
                    result = store.apply_blocks(batch)
                    delivered += len(batch)
                    assert result.rejected == []
                    applied += result.applied
                    duplicates += result.duplicates
                assert (applied, duplicates) == (distinct, delivered - distinct)
                assert state(store, tag) == expected
            for origin, chain in blocks.items():
                heads[f"{origin}.{tag}"] = (len(chain), cid_of(chain[-1]))
            assert stores[0].heads_snapshot() == stores[1].heads_snapshot() == heads
            assert stores[0].db_cid() == stores[1].db_cid() == database_cid(heads)

        try:
            check()
        finally:
            for store in stores:
                store.close()


def test_fresh_stores_converge_to_identical_dumps_and_cid() -> None:
    """Fresh stores (no shared history): whole-database dumps and CIDs are identical."""
    spec: Spec = {
        "alpha": [(1, [(U, "k0"), (D, "k1")]), (3, [(U, "k1"), (U, "k2")])],
        "beta": [(1, [(D, "k0"), (U, "k1")]), (2, [(D, "k2")])],
        "gamma": [(3, [(U, "k2"), (D, "k0")])],
    }
    blocks, expected = build(spec, "fresh")
    dumps = set()
    with tempfile.TemporaryDirectory(prefix="dp-fresh-") as tmp:
        for i, seed in enumerate([1, 2, 3]):
            store = Store(Path(tmp) / f"{i}.duckdb")
            try:
                for batch in deliveries(blocks, random.Random(seed)):
                    assert store.apply_blocks(batch).rejected == []
                assert state(store, "fresh") == expected
                everything = [
                    store.query(f"SELECT * FROM store.{t} ORDER BY ALL", 1000, 10.0)[1]
                    for t in ("models", "tombstones", "heads", "changesets")
                ]
                # The apply order ("applied") and where a block sits in the block log
                # (seg, pos) legitimately differ; compare the block bytes instead.
                everything[-1] = sorted(
                    (*row[:6], *store.blocklog.read([row[7:10]])) for row in everything[-1]
                )
                dumps.add((repr(everything), store.db_cid()))
            finally:
                store.close()
    assert len(dumps) == 1
