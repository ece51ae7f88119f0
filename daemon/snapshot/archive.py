"""Database snapshots: Parquet per table + a manifest, as a UnixFS directory in a CARv1.

Layout of a snapshot (the CAR's single root is the directory)::

    manifest.json                 format, schema version, database CID, version vector,
                                  chain heads, and per file its table and row count
    <table>.parquet               the five replicated tables with _hlc and _origin,
                                  ordered by primary key
    tombstones.parquet            deleted keys with the delete's version
    conflict_heads.parquet        open conflicts, pending_bases.parquet and
    pending_bases.parquet         cell_versions.parquet: the conflict bookkeeping
    cell_versions.parquet         (daemon/store/conflicts.py, daemon/store/merge.py)

Rows are exported from one read transaction, so tables and heads belong to the same
state; ordering by key and fixed writer settings make two peers at the same database
CID produce the same snapshot CID, so a new peer can fetch one snapshot from several.

The changeset log does not travel: a peer loaded from a snapshot holds the rows, the
tombstones and the chain heads (so its database CID and version vector equal the
exporter's and delta sync continues from there), and keeps changesets from then on.
It cannot serve older changesets; sync tells a peer that asks for them so
(``snapshot_required``). A snapshot loads only into an empty store.

All functions here are blocking and run in worker threads.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import io
import itertools
import json
import mmap
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from daemon.store.database import SCHEMA_VERSION, Store
from daemon.store.lazy import lazy_module
from protocol import car, unixfs
from protocol.cid import database_cid
from protocol.errors import RemoteProtocolError
from protocol.schema import TABLES

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")


FORMAT = "duckpeer-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST = 16 << 20
ROW_GROUP = 122_880  # rows per Parquet row group (DuckDB's row group size)
COMPRESSION = "zstd"
# table -> ORDER BY columns; the store's own tables, tombstones and conflict bookkeeping
ORDER = {name: schema.key for name, schema in TABLES.items()} | {
    "tombstones": "tbl, pk",
    "conflict_heads": "tbl, pk, _hlc, _origin",
    "pending_bases": "tbl, pk, _hlc, _origin",
    "cell_versions": "tbl, pk, col",
}


class SnapshotError(Exception):
    """A snapshot cannot be written, read or loaded; the message says why."""


@dataclass
class SnapshotInfo:
    """What a snapshot holds and where its CAR file is."""

    root: str
    db_cid: str
    vector: dict[str, int]
    path: Path
    blocks: int = 0
    size: int = 0  # bytes of the CAR file
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)  # name -> bytes
    index: dict[bytes, tuple[int, int]] = field(default_factory=dict, repr=False)  # for serving

    def to_wire(self) -> dict[str, Any]:
        """The control-API form."""
        return {
            "root": self.root,
            "db_cid": self.db_cid,
            "version_vector": self.vector,
            "path": str(self.path),
            "blocks": self.blocks,
            "bytes": self.size,
            "rows": self.rows,
            "files": self.files,
        }


# -- writing ---------------------------------------------------------------------------


class CarFileWriter:
    """Write a CARv1 file whose single root is known only at the end.

    The header is written first with a placeholder root of the same length (every
    root here is a CIDv1 dag-pb sha2-256 CID) and rewritten in :meth:`finish`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._placeholder = car.encode_header([unixfs.make_cid(unixfs.DAG_PB, b"")])
        self._fh = path.open("wb")
        self._fh.write(self._placeholder)
        self.offsets: dict[bytes, tuple[int, int]] = {}  # cid -> (data offset, length)
        self.blocks = 0

    def add(self, blocks: list[unixfs.Block]) -> None:
        """Append blocks not written yet."""
        for block in blocks:
            if block.cid not in self.offsets:
                self._fh.write(car.block_prefix(block.cid, len(block.data)))
                self.offsets[block.cid] = (self._fh.tell(), len(block.data))
                self._fh.write(block.data)
                self.blocks += 1

    def finish(self, root: bytes, durable: bool = True) -> int:
        """Write the real header, fsync (if ``durable``), close; return the file size."""
        header = car.encode_header([root])
        if len(header) != len(self._placeholder):
            raise SnapshotError("snapshot root is not a CIDv1 dag-pb sha2-256 CID")
        size = self._fh.tell()
        self._fh.seek(0)
        self._fh.write(header)
        self._fh.flush()
        if durable:
            os.fsync(self._fh.fileno())
        self._fh.close()
        return size

    def abort(self) -> None:
        """Close and delete the partial file."""
        self._fh.close()
        self.path.unlink(missing_ok=True)


class _UnixFSSink:
    """A write-only file object that chunks what Parquet writes into UnixFS blocks."""

    def __init__(self, out: CarFileWriter) -> None:
        self._out = out
        self._builder = unixfs.FileBuilder()
        self._pos = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self._out.add(self._builder.write(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def finish(self) -> unixfs.Entry:
        root, blocks = self._builder.finish()
        self._out.add(blocks)
        return root


def export_snapshot(store: Store, path: Path, durable: bool = True) -> SnapshotInfo:
    """Write the store's current state as a snapshot CAR at ``path`` (atomically).

    ``durable=False`` skips the fsync (a third of an export of 1M results): for a CAR
    that is only served to peers, who check every block's hash, and that is never read
    again after a restart."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    out = CarFileWriter(tmp)
    cur = store.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")  # one consistent state for heads and every table
        info = _export(cur, out, path)
        cur.execute("COMMIT")
        info.size = out.finish(unixfs.cid_from_str(info.root), durable)
        info.index = out.offsets
    except BaseException:
        out.abort()
        raise
    finally:
        cur.close()
    tmp.replace(path)
    return info


def _export(cur: duckdb.DuckDBPyConnection, out: CarFileWriter, path: Path) -> SnapshotInfo:
    heads = cur.execute("SELECT origin, seq, cid, hlc FROM store.heads ORDER BY origin").fetchall()
    entries: dict[str, unixfs.Entry] = {}
    tables: dict[str, dict[str, Any]] = {}
    for name, order in ORDER.items():
        entry, rows = _export_table(cur, name, order, out)
        entries[f"{name}.parquet"] = entry
        tables[name] = {"file": f"{name}.parquet", "rows": rows}
    db_cid = database_cid({o: (s, c) for o, s, c, _ in heads})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "db_cid": db_cid,
        "version_vector": {o: s for o, s, _, _ in heads},
        "heads": {o: [s, c, h] for o, s, c, h in heads},
        "tables": tables,
    }
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    entries[MANIFEST], blocks = unixfs.file_blocks(text)
    out.add(blocks)
    root, node = unixfs.directory(entries)
    out.add([node])
    return SnapshotInfo(
        root=unixfs.cid_str(root.cid),
        db_cid=db_cid,
        vector=manifest["version_vector"],  # type: ignore[arg-type]
        path=path,
        blocks=out.blocks,
        rows={name: t["rows"] for name, t in tables.items()},
        files={name: e.size for name, e in entries.items()},
    )


def _export_table(
    cur: duckdb.DuckDBPyConnection, name: str, order: str, out: CarFileWriter
) -> tuple[unixfs.Entry, int]:
    reader = cur.sql(f"SELECT * FROM store.{name} ORDER BY {order}").to_arrow_reader(ROW_GROUP)
    sink = _UnixFSSink(out)
    rows = 0
    groups = _regroup(reader, ROW_GROUP)
    # One helper thread scans and regroups row group i + 1 while Parquet encodes row
    # group i (both release the GIL); the generator is only ever advanced by that thread,
    # one step at a time.
    with (
        concurrent.futures.ThreadPoolExecutor(1, "snapshot-scan") as pool,
        pq.ParquetWriter(
            sink, reader.schema, compression=COMPRESSION, use_dictionary=_labels(reader.schema)
        ) as writer,
    ):
        pending = pool.submit(next, groups, None)
        while (group := pending.result()) is not None:
            pending = pool.submit(next, groups, None)
            writer.write_table(group, row_group_size=ROW_GROUP)
            rows += group.num_rows
    return sink.finish(), rows


def _labels(schema: pa.Schema) -> list[str]:
    """The columns to dictionary-encode: the string ones (model, hardware, precision,
    origin: few distinct values). Parquet's dictionary attempt on a column of mostly
    distinct values (UUIDs, measured doubles, HLCs) hashes every value before falling
    back to plain pages; it took a quarter of a 10M-row export and made the file
    bigger (41.0 MB against 31.5 MB for 1.2M results, zstd either way)."""
    return [
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]


def _regroup(reader: pa.RecordBatchReader, size: int) -> Iterator[pa.Table]:
    """Tables of exactly ``size`` rows (the last one shorter), whatever the batches,
    so that row groups, hence bytes, do not depend on how DuckDB batched the scan."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending, reader.schema)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, count = rest.to_batches(), rest.num_rows
    if count or not pending:
        yield pa.Table.from_batches(pending, reader.schema)


# -- reading ---------------------------------------------------------------------------


class SnapshotReader:
    """An opened, fully verified snapshot CAR (memory-mapped). A context manager."""

    def __init__(self, path: Path, verify: bool = True) -> None:
        self._verify = verify
        try:
            self._fh = path.open("rb")
        except OSError as exc:
            raise SnapshotError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            size = os.fstat(self._fh.fileno()).st_size
            if size == 0:
                raise SnapshotError(f"{path} is empty")
            self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            self.path, self.size = path, size
            self._view = memoryview(self._map)
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        try:
            # every block, before anything (a CAR we fetched was verified block by block)
            self.index = car.index(self._view, verify=self._verify)
            if len(self.index.roots) != 1:
                raise SnapshotError("a snapshot CAR has exactly one root")
            self.root = self.index.roots[0]
            self.files = unixfs.read_directory(self.root, self.get(self.root))
            self.manifest = _parse_manifest(self.read_file(MANIFEST))
        except RemoteProtocolError as exc:
            raise SnapshotError(f"{self.path}: {exc}") from exc

    def get(self, cid: bytes) -> bytes:
        """A block's data by binary CID."""
        where = self.index.blocks.get(cid)
        if where is None:
            raise RemoteProtocolError(f"block {unixfs.cid_str(cid)} is not in the archive")
        return bytes(self._view[where[0] : where[0] + where[1]])

    def read_file(self, name: str) -> bytes:
        """A whole file of the snapshot directory."""
        if name not in self.files:
            raise RemoteProtocolError(f"snapshot has no {name}")
        return b"".join(unixfs.iter_file(self.get, self.files[name]))

    def open_file(self, name: str) -> _FileView:
        """A file of the snapshot directory as a seekable binary file, read from the
        mapped CAR block by block (a 100 MB Parquet file is never in memory whole)."""
        if name not in self.files:
            raise RemoteProtocolError(f"snapshot has no {name}")

        def size_of(cid: bytes) -> int:
            where = self.index.blocks.get(cid)
            if where is None:
                raise RemoteProtocolError(f"block {unixfs.cid_str(cid)} is not in the archive")
            return where[1]

        leaves = unixfs.file_leaves(self.get, size_of, self.files[name])
        return _FileView(self._view, [self.index.blocks[cid] for cid, _ in leaves])

    def info(self) -> SnapshotInfo:
        """Summary from the manifest."""
        m = self.manifest
        return SnapshotInfo(
            root=unixfs.cid_str(self.root),
            db_cid=m["db_cid"],
            vector=m["version_vector"],
            path=self.path,
            blocks=len(self.index.blocks),
            size=self.size,
            rows={name: t["rows"] for name, t in m["tables"].items()},
            index=self.index.blocks,
        )

    def close(self) -> None:
        """Release the mapping and the file."""
        with contextlib.suppress(AttributeError, BufferError):
            self._view.release()
        with contextlib.suppress(AttributeError, BufferError):
            self._map.close()
        self._fh.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FileView(io.RawIOBase):
    """Read-only, seekable view of a file whose pieces are (offset, length) in ``view``."""

    def __init__(self, view: memoryview, pieces: list[tuple[int, int]]) -> None:
        super().__init__()
        self._view, self._pieces = view, pieces
        self._starts = list(itertools.accumulate((n for _, n in pieces), initial=0))
        self.size, self._pos = self._starts[-1], 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        piece = bisect.bisect_right(self._starts, self._pos) - 1
        while done < len(out) and self._pos < self.size:
            offset, length = self._pieces[piece]
            skip = self._pos - self._starts[piece]
            n = min(length - skip, len(out) - done)
            out[done : done + n] = self._view[offset + skip : offset + skip + n]
            done, self._pos, piece = done + n, self._pos + n, piece + 1
        return done


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    """Validate the manifest of an untrusted snapshot."""
    if len(raw) > MAX_MANIFEST:
        raise RemoteProtocolError("manifest too large")
    try:
        m = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"manifest is not JSON: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise RemoteProtocolError("not a duckpeer snapshot (manifest format)")
    if m.get("format_version") != FORMAT_VERSION or m.get("schema_version") != SCHEMA_VERSION:
        raise RemoteProtocolError(
            f"unsupported snapshot format {m.get('format_version')!r} / "
            f"schema {m.get('schema_version')!r} (this daemon: {FORMAT_VERSION} / {SCHEMA_VERSION})"
        )
    heads = _heads(m.get("heads"))
    if m.get("version_vector") != {o: s for o, (s, _, _) in heads.items()}:
        raise RemoteProtocolError("manifest: version vector does not match the heads")
    if m.get("db_cid") != database_cid({o: (s, c) for o, (s, c, _) in heads.items()}):
        raise RemoteProtocolError("manifest: database CID does not match the heads")
    tables = m.get("tables")
    if not isinstance(tables, dict) or set(tables) != set(ORDER):
        raise RemoteProtocolError(f"manifest: tables must be {sorted(ORDER)}")
    for name, t in tables.items():
        ok = isinstance(t, dict) and t.get("file") == f"{name}.parquet"
        if not ok or not isinstance(t.get("rows"), int) or t["rows"] < 0:
            raise RemoteProtocolError(f"manifest: bad entry for table {name}")
    m["heads"] = heads
    return m


def _heads(raw: object) -> dict[str, tuple[int, str, int]]:
    if not isinstance(raw, dict):
        raise RemoteProtocolError("manifest: heads must be a map")
    out = {}
    for origin, head in raw.items():
        if not (isinstance(head, list) and len(head) == 3 and isinstance(head[1], str)):
            raise RemoteProtocolError(f"manifest: bad head for {origin!r}")
        seq, cid, hlc = head
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, hlc)) or seq < 1:
            raise RemoteProtocolError(f"manifest: bad head for {origin!r}")
        out[origin] = (seq, cid, hlc)
    return out


# -- loading ---------------------------------------------------------------------------


def import_snapshot(store: Store, path: Path, verify: bool = True) -> SnapshotInfo:
    """Verify every block of the CAR at ``path`` (``verify=False``: they were, on arrival),
    then load it into ``store`` (empty) in one transaction, one Parquet row group per
    statement; refused and rolled back if anything does not match the manifest."""
    with SnapshotReader(path, verify) as snap:
        info = snap.info()
        try:
            files = {name: snap.open_file(f"{name}.parquet") for name in ORDER}
            scratch = store.load_dir  # ours, whoever made the CAR
            scratch.mkdir(parents=True, exist_ok=True)
            store.bulk_load(lambda cur: _load(cur, snap.manifest, files, scratch))
        except duckdb.Error as exc:
            raise SnapshotError(f"loading {path} failed: {str(exc).splitlines()[0]}") from exc
        except (pa.ArrowException, RemoteProtocolError, OSError) as exc:
            raise SnapshotError(f"{path}: {exc}") from exc
    if store.db_cid() != info.db_cid:
        raise SnapshotError(f"loaded state {store.db_cid()} is not the manifest's {info.db_cid}")
    return info


def _load(
    cur: duckdb.DuckDBPyConnection,
    manifest: dict[str, Any],
    files: dict[str, _FileView],
    scratch: Path,
) -> None:
    _require_empty(cur)
    for name, file in files.items():
        with _unpacked(file, scratch / f".{name}.parquet.load") as parquet:
            _load_table(cur, name, parquet, manifest["tables"][name]["rows"])
    heads = [(o, s, c, h) for o, (s, c, h) in manifest["heads"].items()]
    if heads:
        cur.executemany("INSERT INTO store.heads VALUES (?, ?, ?, ?)", heads)


@contextlib.contextmanager
def _unpacked(file: _FileView, path: Path) -> Iterator[Path]:
    """The file copied out of the CAR to ``path`` (the store's ``load_dir``, the one
    directory its DuckDB may read), removed afterwards."""
    with path.open("wb") as out:
        shutil.copyfileobj(file, out, 1 << 20)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _load_table(cur: duckdb.DuckDBPyConnection, name: str, parquet: Path, rows: int) -> None:
    """One table, by DuckDB's own Parquet reader (in parallel, in file order, so the
    rows keep the exporter's key order)."""
    source = "read_parquet('" + str(parquet).replace("'", "''") + "')"
    want = [
        r[0]
        for r in cur.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'store' "
            "AND table_name = ? ORDER BY column_index",
            [name],
        ).fetchall()
    ]
    have = [r[0] for r in cur.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    if have != want:
        raise SnapshotError(f"{name}.parquet: columns {have} != {want}")
    cur.execute(f"INSERT INTO store.{name} SELECT * FROM {source}")
    (count,) = cur.execute(f"SELECT count(*) FROM store.{name}").fetchone() or (0,)
    if count != rows:
        raise SnapshotError(f"{name}: {count} rows loaded, manifest says otherwise")


def _require_empty(cur: duckdb.DuckDBPyConnection) -> None:
    parts = [f"(SELECT count(*) FROM store.{t})" for t in [*ORDER, "heads", "changesets"]]
    (total,) = cur.execute(f"SELECT {' + '.join(parts)}").fetchone() or (0,)
    if total:
        raise SnapshotError(
            "the store is not empty: a snapshot loads only into an empty store "
            "(start the daemon on an empty data dir, then import)"
        )
