"""The knowledge graph of models, hardware and results: derived, local, incremental.

:class:`KnowledgeGraph` keeps schema ``kg`` (see :mod:`daemon.kg.sql`) in step with the
replicated tables. The store calls :meth:`KnowledgeGraph.on_commit` after every
committed batch (local writes and replicated changesets alike) with the changesets it
applied; the graph only notes the keys they touched. :meth:`flush` (run by the kg
service in the writer thread, and before every kg query) folds the pending keys into
the graph in one transaction, so a burst of changesets costs one refresh. The touched
rows are re-read from the store: whatever a changeset did (insert, update, delete,
a lost last-writer-wins race), the graph ends as a full rebuild would.

``kg.meta`` records the layout version and up to which applied changeset the graph is
current; a graph of another layout, or one that fell behind (a crash between a commit
and its flush), is rebuilt on open.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import structlog

from daemon.kg import sql as kg_sql
from daemon.kg.index import SimilarityIndex
from daemon.store.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa

    from daemon.store.database import Store
    from protocol.changeset import Decoded, TableChanges
else:
    pa = lazy_module("pyarrow")

log = structlog.get_logger("kg")

# Tables whose changes move the graph, and how; the others (test_runs) do not.
REFRESHED = {
    "performance_results": kg_sql.refresh_results_statements,
    "hardware_compatibility": kg_sql.refresh_compat_statements,
}
VIEW_ONLY = {"models", "hardware_platforms"}  # read live by the views
SIMILAR_PER_MODEL = 3
SIMILAR_EDGE_MIN = 0.9
REBUILD_MIN_KEYS = 50_000
# Pending keys beyond which the graph stops collecting them and rebuilds at the next
# fold: what a long bulk load holds stays bounded (16 bytes per UUID key: 64 MB)
MAX_PENDING_KEYS = 4_000_000


class KnowledgeGraph:
    """Schema ``kg`` of one store plus the in-memory similarity index."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = SimilarityIndex()
        self._lock = threading.Lock()
        self._pending: dict[str, set[str]] = {}
        # keys of columnar (bulk) changes, kept as Arrow: no Python string per row, and a
        # bulk load big enough to rebuild the graph never converts them at all
        self._pending_arrow: dict[str, list[pa.ChunkedArray]] = {}
        self._pending_replaced: set[str] = set()  # tables whose pending batch replaced rows
        self._pending_applied = 0
        self._pending_count = 0
        self._overflow = False  # more than MAX_PENDING_KEYS: the next fold rebuilds
        self._flushing = False
        self.last_flush: dict[str, Any] = {}

    # -- lifecycle (writer thread) ------------------------------------------------------------

    def open(self) -> dict[str, Any] | None:
        """Create or catch up schema ``kg``; returns rebuild figures if it rebuilt."""
        cur = self.store.cursor()
        try:
            meta = self._meta(cur)
            if meta == (kg_sql.KG_VERSION, self.store.applied_count()):
                for view in kg_sql.VIEWS:  # views follow the code's current definition
                    cur.execute(view)
                return None
        finally:
            cur.close()
        return self.populate()

    def _meta(self, cur: duckdb.DuckDBPyConnection) -> tuple[int, int] | None:
        """(layout version, applied count) the graph was built for, if any."""
        try:
            row = cur.execute("SELECT version, applied FROM kg.meta").fetchone()
        except (duckdb.CatalogException, duckdb.BinderException):  # none, or an old layout
            return None
        return None if row is None else (int(row[0]), int(row[1]))

    def _rebuild_threshold(self) -> int:
        """Pending keys beyond which a rebuild beats the incremental refresh: a quarter
        of the results (each refresh statement scans the result tables anyway). The
        results are counted from the configurations' aggregates: counting the view
        scanned the whole results table on every fold."""
        cur = self.store.cursor()
        try:
            row = cur.execute("SELECT coalesce(sum(n_results), 0) FROM kg.configs").fetchone()
        finally:
            cur.close()
        return max(REBUILD_MIN_KEYS, (row[0] if row else 0) // 4)

    def populate(self, applied: int | None = None) -> dict[str, Any]:
        """Rebuild the whole graph from the replicated tables (``populate_from_benchmarks``)."""
        started = time.perf_counter()
        with self._lock:
            if applied is None:
                self._pending, applied = {}, self.store.applied_count()
                self._pending_arrow, self._pending_replaced = {}, set()
                self._pending_count, self._overflow = 0, False
        cur = self.store.cursor()
        try:
            old_layout = cur.execute(
                "SELECT count(*) FROM duckdb_tables() "
                "WHERE schema_name = 'kg' AND table_name = 'result_configs'"
            ).fetchall()[0][0]
            if old_layout:  # layout 1 kept it as a table; now it is a view
                cur.execute("DROP TABLE kg.result_configs")
            self._run(cur, kg_sql.populate_statements(), applied, edges_fresh=False)
            counts = self._counts(cur)
        finally:
            cur.close()
        self.index.invalidate(None)
        figures = {"seconds": round(time.perf_counter() - started, 3), **counts}
        log.info("knowledge graph rebuilt", **figures)
        return figures

    def _run(
        self, cur: duckdb.DuckDBPyConnection, statements: Sequence[str], applied: int,
        edges_fresh: bool,
    ) -> None:  # fmt: skip
        cur.execute("BEGIN")
        try:
            for sql in statements:
                cur.execute(sql)
            cur.execute("DELETE FROM kg.meta")
            cur.execute(
                "INSERT INTO kg.meta VALUES (?, ?, ?)", [kg_sql.KG_VERSION, applied, edges_fresh]
            )
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.TransactionException):
                cur.execute("ROLLBACK")
            raise

    def _counts(self, cur: duckdb.DuckDBPyConnection) -> dict[str, int]:
        row = cur.execute(
            "SELECT (SELECT count(*) FROM kg.result_configs), (SELECT count(*) FROM kg.configs),"
            " (SELECT count(*) FROM kg.nodes), (SELECT count(*) FROM kg.edges)"
        ).fetchone() or (0, 0, 0, 0)
        return dict(zip(("results", "configs", "nodes", "edges"), row, strict=True))

    # -- incremental updates ----------------------------------------------------------------

    def on_commit(self, items: Sequence[Decoded], applied: int) -> None:
        """Store hook (writer thread): remember the keys a committed batch touched.

        Runs before the store publishes the batch's CID, so whoever sees the new CID
        and then asks the graph finds these keys pending (and flushed first)."""
        with self._lock:
            for item in items:
                for table in item.changeset.tables:
                    if table.table in REFRESHED or table.table in VIEW_ONLY:
                        self._note(table)
            self._pending_replaced |= self.store.replaced_tables & set(REFRESHED)
            self._pending_applied = applied

    def _note(self, table: TableChanges) -> None:
        """Remember the keys of one table's changes (lock held)."""
        self._pending_count += len(table)
        if self._pending_count > MAX_PENDING_KEYS:
            self._overflow, self._pending, self._pending_arrow = True, {}, {}
        if self._overflow:
            return
        if table.arrow is not None:
            # a copy: the column of the changeset's own batch would keep the whole batch
            # (every column, ~200 bytes a result) alive until the next fold
            keys = table.arrow.column(0)
            self._pending_arrow.setdefault(table.table, []).append(
                pa.chunked_array([pa.concat_arrays(keys.chunks)], keys.type)
            )
        else:
            self._pending.setdefault(table.table, set()).update(map(str, table.keys))

    def pending_rows(self) -> int:
        """Keys waiting to be folded in."""
        with self._lock:
            return self._pending_count

    def has_pending(self) -> bool:
        """True when committed changes are not in the graph yet (or are being folded in)."""
        with self._lock:
            return self._pending_count > 0 or self._flushing

    def flush(self) -> dict[str, Any]:
        """Fold pending changes into the graph (writer thread); returns what it did."""
        with self._lock:
            pending, self._pending = self._pending, {}
            bulk, self._pending_arrow = self._pending_arrow, {}
            replaced, self._pending_replaced = self._pending_replaced, set()
            applied, rows = self._pending_applied, self._pending_count
            overflow, self._overflow, self._pending_count = self._overflow, False, 0
            self._flushing = rows > 0
        if not self._flushing:
            return {}
        try:
            if overflow:
                return self._rebuild(rows, applied)
            return self._flush(pending, bulk, replaced, applied, rows)
        finally:
            with self._lock:
                self._flushing = False

    def _flush(
        self,
        pending: dict[str, set[str]],
        bulk: dict[str, list[pa.ChunkedArray]],
        replaced: set[str],
        applied: int,
        rows: int,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        if rows > self._rebuild_threshold():
            return self._rebuild(rows, applied)  # a bulk load: rebuilding is cheaper
        cur = self.store.cursor()
        try:
            for table, chunks in bulk.items():
                pending.setdefault(table, set()).update(_key_texts(cur, chunks))
            touched_configs = self._apply(cur, pending, replaced, applied)
            # configurations whose family, modality or hardware type may have moved
            touched_configs += _configs_of(cur, pending)
        except duckdb.Error:
            with self._lock:  # give the keys back: the next flush (or a rebuild) retries
                for table, keys in pending.items():
                    self._pending.setdefault(table, set()).update(keys)
                    self._pending_count += len(keys)
                self._pending_replaced |= replaced
            raise
        finally:
            cur.close()
        # recomputed aggregates (rows replaced) may have dropped configurations: reload all
        self.index.invalidate(None if "performance_results" in replaced else touched_configs)
        self.last_flush = {
            "rows": rows,
            "configs": len(touched_configs),
            "ms": round((time.perf_counter() - started) * 1000, 3),
        }
        return self.last_flush

    def _rebuild(self, rows: int, applied: int) -> dict[str, Any]:
        figures = self.populate(applied)
        self.last_flush = {"rows": rows, "configs": figures["configs"], "rebuilt": True,
                           "ms": figures["seconds"] * 1000}  # fmt: skip
        return self.last_flush

    def _apply(
        self,
        cur: duckdb.DuckDBPyConnection,
        pending: dict[str, set[str]],
        replaced: set[str],
        applied: int,
    ) -> list[str]:
        """Run the refresh in one transaction; return the configuration ids it touched."""
        touched: list[str] = []
        cur.execute("BEGIN")
        try:
            for table, build in REFRESHED.items():
                if not pending.get(table):
                    continue
                keys = pa.table({"k": pa.array(sorted(pending[table]), pa.string())})
                cur.register("kg_keys", keys)
                for sql in build(table in replaced):
                    cur.execute(sql)
                cur.unregister("kg_keys")
                if table == "performance_results":
                    rows = cur.execute("SELECT config_id FROM kg_new").fetchall()
                    touched += [r[0] for r in rows]
            cur.execute("UPDATE kg.meta SET applied = ?, edges_fresh = false", [applied])
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.TransactionException):
                cur.execute("ROLLBACK")
            raise
        return touched

    # -- similar_performance edges ----------------------------------------------------------

    def edges_fresh(self) -> bool:
        """True when ``kg.similar_edges`` matches the current configurations."""
        cur = self.store.cursor()
        try:
            row = cur.execute("SELECT edges_fresh FROM kg.meta").fetchone()
            return bool(row and row[0]) and not self.has_pending()
        finally:
            cur.close()

    def refresh_similar_edges(self) -> int:
        """Recompute model ``similar_performance`` edges (writer thread); returns the count."""
        self.flush()
        cur = self.store.cursor()
        try:
            edges = self.index.similar_model_edges(cur, SIMILAR_PER_MODEL, SIMILAR_EDGE_MIN)
            table = pa.table(
                {
                    "src": pa.array([e[0] for e in edges], pa.string()),
                    "dst": pa.array([e[1] for e in edges], pa.string()),
                    "weight": pa.array([e[2] for e in edges], pa.float64()),
                }
            )
            cur.register("kg_edges_new", table)
            cur.execute("BEGIN")
            try:
                cur.execute("DELETE FROM kg.similar_edges")
                cur.execute("INSERT INTO kg.similar_edges SELECT * FROM kg_edges_new")
                cur.execute("UPDATE kg.meta SET edges_fresh = true")
                cur.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.TransactionException):
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.unregister("kg_edges_new")
        finally:
            cur.close()
        return len(edges)


def _configs_of(cur: duckdb.DuckDBPyConnection, pending: dict[str, set[str]]) -> list[str]:
    """Configuration ids of the models and hardware platforms in ``pending``."""
    out: list[str] = []
    for table, column in (("models", "model_id"), ("hardware_platforms", "hardware_id")):
        if pending.get(table):
            cur.register("kg_owner_keys", pa.table({"k": pa.array(sorted(pending[table]))}))
            try:
                rows = cur.execute(
                    f"SELECT config_id FROM kg.configs WHERE {column} IN "
                    "(SELECT k FROM kg_owner_keys)"
                ).fetchall()
            finally:
                cur.unregister("kg_owner_keys")
            out += [r[0] for r in rows]
    return out


def _key_texts(cur: duckdb.DuckDBPyConnection, chunks: list[pa.ChunkedArray]) -> list[str]:
    """Keys held as Arrow (UUIDs as 16 bytes) in their canonical text form."""
    cur.register("kg_bulk_keys", pa.table({"k": pa.chunked_array(
        [c for column in chunks for c in column.chunks], chunks[0].type)}))  # fmt: skip
    try:
        return [k for (k,) in cur.execute("SELECT CAST(k AS VARCHAR) FROM kg_bulk_keys").fetchall()]
    finally:
        cur.unregister("kg_bulk_keys")
