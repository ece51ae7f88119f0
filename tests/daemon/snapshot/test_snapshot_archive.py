"""daemon.snapshot.archive: export -> import round trips, tampering, refusals, delta afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from storekit import D, chain, dump, models

from daemon.snapshot.archive import (
    CarFileWriter,
    SnapshotError,
    SnapshotReader,
    export_snapshot,
    import_snapshot,
)
from daemon.store.database import Store
from daemon.writes import changes as writes
from protocol import car, unixfs

RECORDS = {
    "model_name": ["bert-base-uncased", "gpt2", "bert-base-uncased"],
    "hardware_type": ["cuda", "cpu", "cuda"],
    "device_name": ["A100", None, "A100"],
    "throughput": [812.5, 40, 790.0],
    "latency": [9.8, 120.0, 10.1],
    "batch_size": [8, None, 16],
    "precision": ["fp16", None, "fp16"],
}


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Store]:
    """A store with results, a second origin's chain with a delete (tombstone)."""
    s = Store(tmp_path / "src.duckdb")
    s.commit_local("peerA", writes.result_changes(s, RECORDS)[0])
    s.commit_local("peerA", writes.result_changes(s, RECORDS)[0])
    blocks = chain("peerB", [(10, [models((0, "m1", "one"), (0, "m2", "two"))]),
                             (20, [models((D, "m1", None))])])  # fmt: skip
    assert s.apply_blocks(blocks).applied == 2
    yield s
    s.close()


def _fresh(tmp_path: Path, name: str) -> Store:
    return Store(tmp_path / f"{name}.duckdb")


def test_round_trip_gives_identical_rows_cid_and_vector(source: Store, tmp_path: Path) -> None:
    info = export_snapshot(source, tmp_path / "snap.car")
    assert info.db_cid == source.db_cid()
    assert info.rows["performance_results"] == 6 and info.rows["tombstones"] == 1
    target = _fresh(tmp_path, "dst")
    try:
        loaded = import_snapshot(target, tmp_path / "snap.car")
        assert loaded.root == info.root
        assert target.db_cid() == source.db_cid()
        assert target.vector() == source.vector() == {"peerA": 2, "peerB": 2}
        assert dump(target) == dump(source)  # rows with _hlc/_origin, and tombstones
        assert target.hlc >= 20
    finally:
        target.close()


def test_car_root_is_the_unixfs_directory_of_the_files(source: Store, tmp_path: Path) -> None:
    info = export_snapshot(source, tmp_path / "snap.car")
    with SnapshotReader(tmp_path / "snap.car") as snap:
        assert unixfs.cid_str(snap.root) == info.root
        assert sorted(snap.files) == sorted(
            ["manifest.json", "tombstones.parquet"]
            + [f"{t}.parquet" for t in info.rows if t != "tombstones"]
        )
        manifest = json.loads(snap.read_file("manifest.json"))
        assert manifest["db_cid"] == source.db_cid()
        assert manifest["schema_version"] == 1
        assert snap.read_file("models.parquet")[:4] == b"PAR1"


def test_same_state_gives_same_snapshot_cid(source: Store, tmp_path: Path) -> None:
    first = export_snapshot(source, tmp_path / "a.car")
    second_store = _fresh(tmp_path, "copy")
    try:
        import_snapshot(second_store, tmp_path / "a.car")
        again = export_snapshot(second_store, tmp_path / "b.car")
    finally:
        second_store.close()
    assert again.root == first.root
    assert (tmp_path / "a.car").read_bytes() == (tmp_path / "b.car").read_bytes()


def test_a_car_with_one_flipped_byte_is_refused(source: Store, tmp_path: Path) -> None:
    export_snapshot(source, tmp_path / "snap.car")
    data = bytearray((tmp_path / "snap.car").read_bytes())
    _, start = car.read_header(bytes(data))
    for pos in (start + 40, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x04
        (tmp_path / "bad.car").write_bytes(bad)
        target = _fresh(tmp_path, f"bad{pos}")
        try:
            with pytest.raises(SnapshotError):
                import_snapshot(target, tmp_path / "bad.car")
            assert target.vector() == {} and sum(target.row_counts().values()) == 0
        finally:
            target.close()


def test_import_into_a_non_empty_store_is_refused_and_changes_nothing(
    source: Store, tmp_path: Path
) -> None:
    export_snapshot(source, tmp_path / "snap.car")
    target = _fresh(tmp_path, "busy")
    try:
        target.commit_local("peerC", [models((0, "mine", "x"))])
        before = dump(target), target.db_cid()
        with pytest.raises(SnapshotError, match="not empty"):
            import_snapshot(target, tmp_path / "snap.car")
        assert (dump(target), target.db_cid()) == before
    finally:
        target.close()


def test_delta_continues_after_import_and_old_history_is_reported(
    source: Store, tmp_path: Path
) -> None:
    export_snapshot(source, tmp_path / "snap.car")
    target = _fresh(tmp_path, "dst")
    try:
        import_snapshot(target, tmp_path / "snap.car")
        source.commit_local("peerA", writes.result_changes(source, RECORDS)[0])
        delta = [b for batch in source.missing_for(target.vector()) for b in batch]
        assert len(delta) == 1
        assert target.apply_blocks(delta).applied == 1
        assert target.db_cid() == source.db_cid() and dump(target) == dump(source)
        # The loaded peer holds only changesets after the snapshot.
        assert target.unservable({}) == ["peerA", "peerB"]
        assert [b for batch in target.missing_for({}) for b in batch] == []
        assert target.unservable(source.vector()) == []
        assert [b for batch in target.missing_for({"peerA": 2, "peerB": 2}) for b in batch] == delta
    finally:
        target.close()


def test_not_a_car_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.car").write_bytes(b"\x05hello world")
    target = _fresh(tmp_path, "dst")
    try:
        with pytest.raises(SnapshotError):
            import_snapshot(target, tmp_path / "junk.car")
        with pytest.raises(SnapshotError, match="cannot open"):
            import_snapshot(target, tmp_path / "missing.car")
    finally:
        target.close()


def test_empty_store_snapshot_round_trips(tmp_path: Path) -> None:
    empty = _fresh(tmp_path, "empty")
    target = _fresh(tmp_path, "dst")
    try:
        info = export_snapshot(empty, tmp_path / "e.car")
        import_snapshot(target, tmp_path / "e.car")
        assert target.db_cid() == empty.db_cid() == info.db_cid
    finally:
        empty.close()
        target.close()


def _repack(src: Path, dst: Path, edit: dict[str, object]) -> None:
    """A well-formed CAR (every hash valid) of ``src``'s files with manifest fields changed."""
    with SnapshotReader(src) as snap:
        files = {name: snap.read_file(name) for name in snap.files}
    manifest = json.loads(files["manifest.json"]) | edit
    files["manifest.json"] = json.dumps(manifest).encode()
    out = CarFileWriter(dst)
    entries = {}
    for name, data in files.items():
        entries[name], blocks = unixfs.file_blocks(data)
        out.add(blocks)
    root, node = unixfs.directory(entries)
    out.add([node])
    out.finish(root.cid)


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        ({"db_cid": "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"}, "database CID"),
        ({"version_vector": {"peerA": 9, "peerB": 2}}, "version vector"),
        ({"schema_version": 99}, "unsupported snapshot"),
        ({"tables": {}}, "tables"),
    ],
)
def test_a_forged_manifest_with_valid_hashes_is_refused(
    source: Store, tmp_path: Path, edit: dict[str, object], error: str
) -> None:
    export_snapshot(source, tmp_path / "snap.car")
    _repack(tmp_path / "snap.car", tmp_path / "forged.car", edit)
    target = _fresh(tmp_path, "dst")
    try:
        with pytest.raises(SnapshotError, match=error):
            import_snapshot(target, tmp_path / "forged.car")
        assert target.vector() == {}
    finally:
        target.close()


def test_rows_that_do_not_match_the_manifest_roll_back(source: Store, tmp_path: Path) -> None:
    export_snapshot(source, tmp_path / "snap.car")
    with SnapshotReader(tmp_path / "snap.car") as snap:
        tables = json.loads(snap.read_file("manifest.json"))["tables"]
    tables["models"]["rows"] += 1
    _repack(tmp_path / "snap.car", tmp_path / "forged.car", {"tables": tables})
    target = _fresh(tmp_path, "dst")
    try:
        with pytest.raises(SnapshotError, match="models"):
            import_snapshot(target, tmp_path / "forged.car")
        assert target.vector() == {} and sum(target.row_counts().values()) == 0
    finally:
        target.close()


def test_conflict_bookkeeping_travels_in_the_snapshot(tmp_path: Path) -> None:
    """Open conflicts (manual) and per-column versions (merge) survive export/import, so a
    peer bootstrapped from a snapshot resolves and merges like the others."""
    from conflictkit import exchange, insert_model, snapshot, update, with_strategy

    from daemon.writes.resolve import list_conflicts
    from protocol.conflicts import Strategy

    a, b = _fresh(tmp_path, "a"), _fresh(tmp_path, "b")
    for s in (a, b):
        with_strategy(s, Strategy.MANUAL)
        with_strategy(s, Strategy.MERGE, "hardware_platforms")
    insert_model(a, "A", "m", model_name="m")
    exchange([a, b])
    update(a, "A", "m", modality="text")
    update(b, "B", "m", modality="vision")
    exchange([a, b])
    export_snapshot(a, tmp_path / "c.car")
    c = with_strategy(with_strategy(_fresh(tmp_path, "c"), Strategy.MANUAL), Strategy.MERGE,
                      "hardware_platforms")  # fmt: skip
    try:
        import_snapshot(c, tmp_path / "c.car")
        assert list_conflicts(c) == list_conflicts(a) != []
        assert snapshot(c) == snapshot(a)
    finally:
        for s in (a, b, c):
            s.close()


def test_a_snapshot_file_reads_at_random_offsets_without_loading_it_whole() -> None:
    """``SnapshotReader.open_file``'s view over CAR blocks: a deep DAG of small leaves
    (chunks of 7 bytes, 3 links per node) reads back any range, like the bytes."""
    import io
    import random

    from daemon.snapshot.archive import _FileView
    from protocol import unixfs

    data = bytes(random.Random(5).randrange(256) for _ in range(1000))
    builder = unixfs.FileBuilder(chunk_size=7, max_links=3)
    blocks = builder.write(data)
    root, rest = builder.finish()
    blocks += rest
    buffer, where = bytearray(), {}
    for block in blocks:
        where[block.cid] = (len(buffer), len(block.data))
        buffer += block.data
    view = memoryview(bytes(buffer))
    get = lambda cid: bytes(view[where[cid][0] : sum(where[cid])])  # noqa: E731
    leaves = unixfs.file_leaves(get, lambda cid: where[cid][1], root.cid)
    assert sum(n for _, n in leaves) == len(data) and len(leaves) == 143
    file = _FileView(view, [where[cid] for cid, _ in leaves])
    rng = random.Random(9)
    for _ in range(200):
        start, size = rng.randrange(len(data) + 5), rng.randrange(60)
        file.seek(start)
        assert file.read(size) == data[start : start + size]
    file.seek(-10, io.SEEK_END)
    assert file.read() == data[-10:]
