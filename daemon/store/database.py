"""The DuckDB store: replicated rows, the changeset log and chain heads.

All methods are synchronous and meant to run in worker threads. Writes (applying
changesets) must be serialized by the caller; reads use their own cursor and may run
concurrently with a write (DuckDB MVCC).

Applying a changeset, its rows, its log entry and the new chain head happen in one
DuckDB transaction: a crash leaves the state before or after it, never half.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from daemon.store import rowsql
from daemon.store.apply import BatchContext, NotNew, apply_batch
from daemon.store.blocklog import BlockLog
from daemon.store.lazy import lazy_module
from daemon.store.rowchanges import key_text
from daemon.store.running import RUNNING
from protocol import changeset as cs_codec
from protocol import codec
from protocol import hlc as hlc_clock
from protocol.changeset import Changeset, Decoded, TableChanges
from protocol.cid import database_cid
from protocol.conflicts import Strategy
from protocol.errors import RemoteProtocolError
from protocol.schema import TABLES

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


SCHEMA_VERSION = 1  # the replicated tables' columns (snapshots carry it)
STORE_VERSION = 4  # the last migration in migrations/ (this file's own layout)
Admit = Callable[[Changeset, bytes], "str | None"]
OnCommit = Callable[["Sequence[Decoded]", int], None]
POINT_LOOKUP_LIMIT = 256


LOAD_DIR = "snapshots/.load"  # next to the database file: Parquet that bulk loads read


def _connect(path: str, config: dict[str, Any], load_dir: Path) -> duckdb.DuckDBPyConnection:
    """Open the database with file access closed except for ``load_dir``.

    DuckDB takes ``allowed_directories`` only while external access is still on, so
    the connection opens with it on, is given the one directory, and then has it
    switched off and its configuration locked before anything else runs on it. A
    snapshot load reads its Parquet there with ``read_parquet`` (4x faster than
    inserting the same rows from Arrow, measured on 1M results). DuckDB lets such a
    directory be written too; it holds only a load's scratch files (replicated rows,
    which any query can read anyway, deleted after the load), never served CARs, and
    the query sandbox refuses file functions and COPY before DuckDB sees them.
    """
    closed = config.get("enable_external_access") is False
    con = duckdb.connect(path, config={**config, "enable_external_access": True})
    try:
        if closed:
            con.execute("SET allowed_directories = ?", [[str(load_dir) + "/"]])
            con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


class StoreError(Exception):
    """The store could not do what was asked."""


# What a write with values of the wrong type or range raises while it is applied; other
# errors during a local commit are failures of the store itself (disk, bugs, DuckDB).
def bad_value_errors() -> tuple[type[BaseException], ...]:
    """The exception types of a bad value (a function: pyarrow loads on first use)."""
    return (
        RemoteProtocolError,
        pa.ArrowException,
        duckdb.ConversionException,
        duckdb.ConstraintException,
    )


@dataclass
class ApplyResult:
    """Outcome of applying a batch of changeset blocks."""

    applied: int = 0
    duplicates: int = 0
    rows: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (cid, reason)
    conflicts: int = 0  # keys these changesets made concurrent (see daemon/store/conflicts.py)


class Store:
    """One duckpeer database file."""

    def __init__(
        self,
        path: Path | str,
        *,
        memory_limit: str | None = None,
        settings: Mapping[str, Any] | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        # Checkpoint every 256 MB of WAL rather than DuckDB's 16 MB: bulk writes then
        # write each row group once more instead of many times (~15 % faster ingest).
        config: dict[str, Any] = {"enable_external_access": False, "checkpoint_threshold": "256MB",
                                  # UUID and JSON columns leave as Arrow's uuid and json
                                  # types (snapshots: 16-byte UUIDs load without parsing)
                                  "arrow_lossless_conversion": True,
                                  # query cursors bound their own memory once locked;
                                  # the buffer cache is trimmed (daemon.store.buffercache)
                                  "allowed_configs": ["operator_memory_limit",
                                                      "memory_limit"]}  # fmt: skip
        if memory_limit:
            config["memory_limit"] = memory_limit
        config.update(settings or {})  # query limits (daemon.query.limits.store_settings)
        self.path = str(path)
        self.memory_limit: str | None = config.get("memory_limit")  # as configured
        self.clock_ms = clock_ms  # wall clock for the HLC (tests skew it)
        self.blocklog = BlockLog(Path(path).with_suffix(".blocks"))
        self.load_dir = Path(path).parent / LOAD_DIR
        self._con = _connect(self.path, config, self.load_dir)
        self._writer = self._con.cursor()
        try:
            self._migrate()
        except BaseException:
            self._con.close()
            self.blocklog.close()
            raise
        self.heads: dict[str, tuple[int, str]] = {}
        self.head_hlc: dict[str, int] = {}  # hlc of each origin's head changeset
        self.strategies: dict[str, Strategy] = {}  # conflict strategy per table; default latest
        self.history_floor: dict[str, int] = {}
        self._db_cid = ""
        self.hlc = 0
        self._applied_counter = 0
        self._last_conflicts = 0
        self._entry_tables: set[str] = set()
        self._state_lock = threading.Lock()
        # Called in the writer thread after each committed batch with its changesets
        # (local or remote) and the new applied count, before the new heads and CID are
        # published: derived state such as the knowledge graph follows from here.
        self.on_commit: list[OnCommit] = []
        # Tables where the batch the hooks are told about replaced or deleted rows (not
        # only inserted new keys): read by the hooks, set before they are called.
        self.replaced_tables: frozenset[str] = frozenset()
        self._load_state()

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint and close the database."""
        try:
            self._writer.execute("CHECKPOINT")
        finally:
            self._writer.close()
            self._con.close()
            self.blocklog.close()

    def _migrate(self) -> None:
        """Run the numbered migrations this data dir has not had, in one transaction.

        ``store.meta`` records the last one; data dirs from before it existed (no
        meta, but tables) had 001 and 002, and 002 is idempotent, so they rerun it.
        """
        cur = self._writer
        version = self._store_version()
        if version > STORE_VERSION:
            raise StoreError(f"{self.path} was written by a newer duckpeer (store version "
                             f"{version}, this one reads up to {STORE_VERSION})")  # fmt: skip
        folder = resources.files("daemon.store.migrations")
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
        todo = [n for n in names if int(n[:3]) > version]
        if not todo:
            return
        cur.execute("BEGIN")
        for name in todo:
            cur.execute(folder.joinpath(name).read_text())
        cur.execute(
            "CREATE TABLE IF NOT EXISTS store.meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
        )
        cur.execute("DELETE FROM store.meta WHERE key = 'store_version'")
        cur.execute("INSERT INTO store.meta VALUES ('store_version', ?)", [str(STORE_VERSION)])
        cur.execute("COMMIT")

    def _store_version(self) -> int:
        # fetchall, never fetchone, on the writer: DuckDB 2.0 refuses register() on a
        # connection with an unfinished result (every write failed after a restart)
        tables = {name for (name,) in self._writer.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'store'"
        ).fetchall()}  # fmt: skip
        if "heads" not in tables:
            return 0
        if "meta" not in tables:
            return 1
        rows = self._writer.execute(
            "SELECT value FROM store.meta WHERE key = 'store_version'"
        ).fetchall()
        return int(rows[0][0]) if rows else 1

    def _load_state(self) -> None:
        rows = self._writer.execute("SELECT origin, seq, cid, hlc FROM store.heads").fetchall()
        self.heads = {origin: (seq, cid) for origin, seq, cid, _ in rows}
        self.head_hlc = {origin: stamp for origin, _, _, stamp in rows}
        entries = self._writer.execute(
            "SELECT tbl FROM store.conflict_heads UNION SELECT tbl FROM store.pending_bases"
        ).fetchall()
        self._entry_tables = {t for (t,) in entries}
        self._db_cid = database_cid(self.heads)
        # First seq whose block we hold, where earlier ones are missing (a snapshot
        # import, or pruned: daemon/store/history.py)
        self.history_floor = self._history_floor()
        tombstoned = self._writer.execute("SELECT DISTINCT tbl FROM store.tombstones").fetchall()
        self._tombstone_tables = {t for (t,) in tombstoned}
        self.hlc = 0
        for *_, stamp in rows:
            self._observe(stamp)  # as when applied: a far-future clock is not adopted
        (top,) = self._writer.execute(
            "SELECT greatest(coalesce(max(applied), 0), (SELECT coalesce(max(value::BIGINT), 0)"
            " FROM store.meta WHERE key = 'applied')) FROM store.changesets"
        ).fetchall()
        self._applied_counter = top[0]  # the meta entry: what a pruned log no longer shows

    # -- state ---------------------------------------------------------------------

    def heads_snapshot(self) -> dict[str, tuple[int, str]]:
        """A consistent copy of the chain heads (safe from any thread)."""
        with self._state_lock:
            return dict(self.heads)

    def state(self) -> tuple[dict[str, tuple[int, str]], str]:
        """Chain heads and the database CID, consistent with each other."""
        with self._state_lock:
            return dict(self.heads), self._db_cid

    def vector(self) -> dict[str, int]:
        """Version vector: highest seq applied per origin."""
        return {origin: seq for origin, (seq, _) in self.heads_snapshot().items()}

    def db_cid(self) -> str:
        """CID of the current database state (recomputed once per applied batch)."""
        with self._state_lock:
            return self._db_cid

    def row_counts(self) -> dict[str, int]:
        """Live rows per replicated table."""
        names = list(TABLES)
        select = ", ".join(f"(SELECT count(*) FROM store.{n})" for n in names)
        row = self._con.cursor().execute(f"SELECT {select}").fetchone() or ()
        return dict(zip(names, row, strict=True))

    def applied_count(self) -> int:
        """Changesets applied to this store so far (the last ``applied`` position)."""
        with self._state_lock:
            return self._applied_counter

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the database (one per thread; close it when done)."""
        return self._con.cursor()

    def changeset_count(self) -> int:
        """Changesets in the log."""
        return sum(seq for seq, _ in self.heads.values())

    def size_bytes(self) -> int:
        """Bytes on disk: database file, its WAL and the block log."""
        total = self.blocklog.size_bytes()
        for name in (self.path, self.path + ".wal"):
            try:
                total += Path(name).stat().st_size
            except OSError:
                pass
        return total

    def bulk_load(self, load: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        """Run ``load(cursor)`` in one write transaction (rolled back if it raises), then
        reload heads, database CID and clock from the tables (snapshot import)."""
        self._run_transaction_fn(load)
        with self._state_lock:
            self._load_state()

    def transaction(self, fn: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        """Run ``fn(writer cursor)`` in one write transaction (writer thread only)."""
        self._run_transaction_fn(fn)

    def reload_history_floor(self) -> None:
        """Recompute, per origin, the first seq whose block the log holds (after pruning)."""
        floor = self._history_floor()
        with self._state_lock:
            self.history_floor = floor

    def _history_floor(self) -> dict[str, int]:
        floors = self._writer.execute(
            "SELECT h.origin, coalesce(min(c.seq), h.seq + 1) FROM store.heads h "
            "LEFT JOIN store.changesets c ON c.origin = h.origin GROUP BY h.origin, h.seq"
        ).fetchall()
        return {origin: f for origin, f in floors if f > 1}

    def _run_transaction_fn(self, fn: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        cur = self._writer
        cur.execute("BEGIN")
        try:
            fn(cur)
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.TransactionException):  # a failed COMMIT rolled back
                cur.execute("ROLLBACK")
            raise

    # -- local writes ----------------------------------------------------------------

    def commit_local(
        self,
        origin: str,
        tables: Sequence[TableChanges],
        sign: Callable[[bytes], bytes] | None = None,
    ) -> Decoded:
        """Turn row changes into our next changeset (signed with ``sign``), apply and log it."""
        tables = [self._rebased_on_tombstones(t) for t in tables]
        seq, prev = self.heads.get(origin, (0, None))
        own = self._writer.execute("SELECT hlc FROM store.heads WHERE origin = ?", [origin])
        last = max([self.hlc, *(h for (h,) in own.fetchall())])  # our chain never goes back
        # A change is ordered after every version it is based on, whatever our clock says
        # (a clock behind its base's would otherwise make the edit lose to what it edits).
        stamp = hlc_clock.tick(max(last, cs_codec.newest_base_hlc(tables)), self.clock_ms())
        cs = Changeset(origin, seq + 1, stamp, prev, list(tables))
        block = cs_codec.encode(cs)
        if len(block) > codec.MAX_BLOCK:  # peers could not receive it: refuse it here
            limit = codec.MAX_BLOCK >> 20
            raise StoreError(f"a changeset of {len(block)} bytes exceeds the protocol's "
                             f"{limit} MiB; write fewer rows at a time")  # fmt: skip
        if sign is not None:
            signature = sign(block)
            block = cs_codec.sign_block(block, signature)
            cs = dataclasses.replace(cs, signature=signature)
        item = Decoded(cs, cs_codec.cid_of(block), block)
        checked = ApplyResult()
        if not self._chain_checked([item], checked):  # our own chain: never refused
            raise RuntimeError(f"own changeset refused: {checked.rejected[0][1]}")
        try:
            self._transaction([item])
        except bad_value_errors() as exc:  # the caller's values; anything else is ours
            raise StoreError(f"bad value: {str(exc).splitlines()[0]}") from exc
        return item

    def _rebased_on_tombstones(self, table: TableChanges) -> TableChanges:
        """New rows whose key was deleted are based on the delete: re-creating a row after
        seeing it deleted is not concurrent with the delete."""
        if table.table not in self._tombstone_tables or all(b is not None for b in table.bases):
            return table
        kind = TABLES[table.table].columns[0][1]
        texts = [key_text(kind, k) for k in table.keys]
        fresh = [t for t, b in zip(texts, table.bases, strict=True) if b is None]
        cur = self._writer
        cur.register("new_keys", pa.table({"pk": pa.array(fresh, pa.string())}))
        try:
            found = cur.execute(
                "SELECT pk, _hlc, _origin FROM store.tombstones "
                "WHERE tbl = ? AND pk IN (SELECT pk FROM new_keys)",
                [table.table],
            ).fetchall()
        finally:
            cur.unregister("new_keys")
        if not found:
            return table
        deleted = {pk: (hlc, origin) for pk, hlc, origin in found}
        bases = [deleted.get(t) if b is None else b
                 for t, b in zip(texts, table.bases, strict=True)]  # fmt: skip
        return dataclasses.replace(table, bases=bases)

    def current_versions(self, table: str, keys: Sequence[Any]) -> dict[str, tuple[int, str]]:
        """Current (hlc, origin) per existing key (text form) among ``keys``."""
        if not keys:
            return {}
        key, kind = TABLES[table].key, rowsql.key_sql_type(table)
        select = f"SELECT CAST(t.{key} AS VARCHAR), t._hlc, t._origin FROM store.{table} t "
        cur = self._con.cursor()
        texts = [str(k) for k in keys]
        if len(texts) <= POINT_LOOKUP_LIMIT:  # IN-list: index point lookups, no scan
            marks = ", ".join(f"CAST(? AS {kind})" for _ in texts)
            rows = cur.execute(f"{select} WHERE t.{key} IN ({marks})", texts).fetchall()
        else:
            cur.register("wanted", pa.table({"k": pa.array(texts, pa.string())}))
            join = f"JOIN wanted w ON t.{key} = CAST(w.k AS {kind})"
            rows = cur.execute(select + join).fetchall()
        return {k: (h, o) for k, h, o in rows}

    def open_conflict_count(self) -> int:
        """Keys with open conflicts (several heads kept under ``manual``)."""
        row = (
            self.cursor()
            .execute("SELECT count(*) FROM (SELECT DISTINCT tbl, pk FROM store.conflict_heads)")
            .fetchall()
        )
        return int(row[0][0])

    def uuid7(self, n: int) -> list[str]:
        """``n`` fresh UUIDv7 strings, generated by DuckDB in bulk."""
        cur = self._con.cursor()
        rows = cur.execute("SELECT uuidv7()::VARCHAR FROM range(?)", [n]).fetchall()
        return [r[0] for r in rows]

    def read_row(self, table: str, key: Any) -> dict[str, Any] | None:
        """One row by primary key, with wire-typed values, or None."""
        schema = TABLES[table]
        cur = self._con.cursor()
        cols = ", ".join(rowsql.wire_select(name, kind) for name, kind in schema.columns)
        row = cur.execute(
            f"SELECT {cols} FROM store.{table} WHERE {schema.key} = "
            f"CAST(? AS {rowsql.key_sql_type(table)})",
            [str(key)],
        ).fetchone()
        return None if row is None else dict(zip(schema.column_names, row, strict=True))

    # -- remote changesets -------------------------------------------------------------

    def apply_blocks(self, blocks: Sequence[bytes], admit: Admit | None = None) -> ApplyResult:
        """Validate and apply changeset blocks received from a peer, in order.

        ``admit(changeset, block)`` may refuse a block (returning why) before it touches
        the database: the daemon checks trust and signatures there.
        """
        result = ApplyResult()
        items: list[Decoded] = []
        for block in blocks:
            cid = cs_codec.cid_of(block)
            try:
                cs = cs_codec.decode(block)
            except RemoteProtocolError as exc:
                result.rejected.append((cid, str(exc)))
                continue
            problem = admit(cs, block) if admit is not None else None
            if problem is None:
                items.append(Decoded(cs, cid, block))
            else:
                result.rejected.append((cid, problem))
        batch = self._apply_batch(items)
        batch.rejected[:0] = result.rejected
        return batch

    def _apply_batch(self, items: Sequence[Decoded]) -> ApplyResult:
        """Apply in one transaction; on a failure retry one by one to isolate it."""
        result = ApplyResult()
        fresh = self._chain_checked(items, result)
        if not fresh:
            return result
        try:
            self._transaction(fresh)
        except (duckdb.Error, pa.ArrowException, RemoteProtocolError) as exc:
            if len(fresh) == 1:
                result.rejected.append((fresh[0].cid, f"{type(exc).__name__}: {exc}"))
                return result
            for item in fresh:
                single = self._apply_batch([item])
                result.applied += single.applied
                result.rows += single.rows
                result.rejected += single.rejected
                result.conflicts += single.conflicts
            return result
        result.applied += len(fresh)
        result.rows += sum(i.changeset.row_count() for i in fresh)
        result.conflicts += self._last_conflicts
        return result

    def _chain_checked(self, items: Sequence[Decoded], result: ApplyResult) -> list[Decoded]:
        """Drop duplicates, refuse gaps and broken links; return what extends our chains."""
        heads = self.heads_snapshot()
        stamps = dict(self.head_hlc)
        fresh: list[Decoded] = []
        for item in items:
            cs = item.changeset
            seq, head = heads.get(cs.origin, (0, None))
            if cs.seq == seq and item.cid != head:
                # Same seq, other content: the origin forked its chain (or someone forged
                # it). Refused and reported; older seqs are not checked here (issue 8
                # adds signed heads).
                result.rejected.append((item.cid, f"{cs.origin}#{cs.seq}: fork of our head"))
                continue
            if cs.seq <= seq:
                result.duplicates += 1
                continue
            try:
                cs_codec.verify_link(cs, head, seq + 1)
            except RemoteProtocolError as exc:
                result.rejected.append((item.cid, str(exc)))
                continue
            if cs.hlc <= stamps.get(cs.origin, 0):  # conflict tracking relies on it
                result.rejected.append((item.cid, f"{cs.origin}#{cs.seq}: hlc went back"))
                continue
            problem = cs_codec.ordering_problem(cs)  # and on changes following their bases
            if problem is not None:
                result.rejected.append((item.cid, problem))
                continue
            heads[cs.origin] = (cs.seq, item.cid)
            stamps[cs.origin] = cs.hlc
            fresh.append(item)
        return fresh

    def _transaction(self, items: Sequence[Decoded]) -> None:
        try:
            ctx = self._run_transaction(items, optimistic=True)
        except (duckdb.ConstraintException, NotNew):  # a "new" row existed: the slow way
            ctx = self._run_transaction(items, optimistic=False)
        self._tombstone_tables = ctx.tombstone_tables
        self._entry_tables = ctx.with_entries
        self._last_conflicts = ctx.conflicts_found
        self.replaced_tables = frozenset(ctx.replaced)  # for the on_commit hooks
        heads = self.heads_snapshot()
        for item in items:
            heads[item.changeset.origin] = (item.changeset.seq, item.cid)
            self.head_hlc[item.changeset.origin] = item.changeset.hlc
        cid = database_cid(heads)  # pure Python, ~1 ms per origin: outside the lock
        for hook in self.on_commit:
            hook(items, self._applied_counter + len(items))
        with self._state_lock:
            self.heads, self._db_cid = heads, cid
            for item in items:
                self._observe(item.changeset.hlc)
            self._applied_counter += len(items)

    def _run_transaction(self, items: Sequence[Decoded], optimistic: bool) -> BatchContext:
        ctx = BatchContext(
            self._applied_counter + 1,
            self.blocklog,
            set(self._tombstone_tables),
            set(self.heads),
            optimistic=optimistic,
            strategies=dict(self.strategies),
            arrived_before=dict(self.head_hlc),
            with_entries=set(self._entry_tables),
        )
        self._run_transaction_fn(lambda cur: apply_batch(cur, items, ctx))
        return ctx

    def _observe(self, remote: int) -> None:
        now = self.clock_ms()
        try:
            self.hlc = hlc_clock.observe(self.hlc, remote, now)
        except RemoteProtocolError:
            pass  # a far-future clock is applied (for convergence) but not adopted

    # -- serving peers -------------------------------------------------------------------

    def missing_for(self, have: Mapping[str, int], batch: int = 64) -> Iterator[list[bytes]]:
        """Blocks a peer at ``have`` lacks, in our apply order, ``batch`` at a time."""
        heads = self.heads_snapshot()
        wanted = [
            (o, have.get(o, 0))
            for o, (seq, _) in heads.items()
            if seq > have.get(o, 0) and self.history_floor.get(o, 1) <= have.get(o, 0) + 1
        ]
        if not wanted:
            return
        where = " OR ".join("(origin = ? AND seq > ?)" for _ in wanted)
        params = [v for pair in wanted for v in pair]
        cur = self._con.cursor()
        places = cur.execute(
            f"SELECT seg, pos, size FROM store.changesets WHERE {where} ORDER BY applied", params
        ).fetchall()
        for start in range(0, len(places), batch):
            yield self.blocklog.read(places[start : start + batch])

    def unservable(self, have: Mapping[str, int]) -> list[str]:
        """Origins where a peer at ``have`` needs changesets older than our log holds
        (we were bootstrapped from a snapshot); :meth:`missing_for` skips them."""
        return sorted(o for o, floor in self.history_floor.items() if have.get(o, 0) + 1 < floor)

    # -- queries -------------------------------------------------------------------------

    def query(self, sql: str, max_rows: int, timeout: float) -> tuple[list[str], list[tuple]]:
        """Run an already-validated read-only query with a row cap and a deadline."""
        with interrupt_after(self._con.cursor(), timeout) as cur:
            cur.execute(sql)
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchmany(max_rows + 1)
        if len(rows) > max_rows:
            raise StoreError(f"result has more than {max_rows} rows (limit)")
        return columns, rows

    def query_arrow(self, sql: str, max_rows: int, timeout: float) -> pa.Table:
        """Like :meth:`query`, the result as an Arrow table (distributed-query partials)."""
        with interrupt_after(self._con.cursor(), timeout) as cur:
            return read_arrow(cur, sql, max_rows, 1 << 17)

    def column_names(self, sql: str) -> list[str]:
        """The output column names of an already-validated query, without running it."""
        cur = self._con.cursor()
        try:
            return list(cur.sql(sql).columns)
        finally:
            cur.close()


@contextlib.contextmanager
def interrupt_after(
    cur: duckdb.DuckDBPyConnection, timeout: float
) -> Iterator[duckdb.DuckDBPyConnection]:
    """``cur`` interrupted if still running after ``timeout`` s (or stopped by the memory
    guard: ``daemon.store.running``), and closed at the end."""
    try:
        with RUNNING.guard(cur, timeout):
            yield cur
    finally:
        cur.close()


def read_arrow(
    cur: duckdb.DuckDBPyConnection, sql: str, max_rows: int, batch_rows: int
) -> pa.Table:
    """Run ``sql`` on ``cur`` into an Arrow table, in batches of ``batch_rows``;
    StoreError as soon as it passes ``max_rows``."""
    batches, rows = [], 0
    reader = cur.sql(sql).to_arrow_reader(min(max_rows + 1, batch_rows))
    for batch in reader:
        rows += batch.num_rows
        if rows > max_rows:
            raise StoreError(f"result has more than {max_rows} rows (limit)")
        batches.append(batch)
    return pa.Table.from_batches(batches, reader.schema)
