"""Blocking client for the daemon's Unix control socket."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from typing import Any

from protocol import control
from protocol.control import ControlRequest
from protocol.errors import ProtocolError
from protocol.framing import FrameDecoder, frame_pieces

SYSTEM_SOCKET = "/run/duckpeer/control.sock"


class ClientError(Exception):
    """Base class for client failures; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class DaemonUnavailable(ClientError):
    """No daemon answers on the socket."""

    exit_code = 3


class RequestFailed(ClientError):
    """The daemon answered with an error; ``code`` is its stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = 2 if code in {"bad_request", "unknown_method"} else 1


MAX_FRAME = control.MAX_CONTROL_FRAME


def arrow_stream(table: Any) -> memoryview:
    """A pyarrow Table or RecordBatch as an Arrow IPC stream (pyarrow loads here), a
    view of Arrow's buffer: a chunk of tens of MB is not copied before it is sent."""
    import pyarrow as pa

    from protocol.columnar import stream_view

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    return stream_view(table)


def default_socket_path() -> str:
    """``$DUCKPEER_SOCKET``, else the systemd path if present, else the user data dir.

    (Plain strings and os.path, not pathlib: peerctl's start-up time is a goal.)
    """
    env = os.environ.get("DUCKPEER_SOCKET")
    if env:
        return env
    if os.path.exists(SYSTEM_SOCKET):
        return SYSTEM_SOCKET
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "duckpeer", "control.sock")


class Client:
    """One connection to a local duckpeerd. Usable as a context manager."""

    def __init__(
        self, socket_path: str | os.PathLike[str] | None = None, timeout: float = 300.0
    ) -> None:
        self.socket_path = os.fspath(socket_path) if socket_path else default_socket_path()
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(control.MAX_CONTROL_FRAME)
        self._ids = itertools.count(1)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (reopened on the next call)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.socket_path))
            except OSError as exc:
                sock.close()
                raise DaemonUnavailable(
                    f"cannot reach duckpeerd at {self.socket_path}: {exc.strerror or exc}"
                ) from exc
            self._sock = sock
            self._decoder = FrameDecoder(control.MAX_CONTROL_FRAME)
        return self._sock

    def call(self, method: str, **params: Any) -> Any:
        """Call a control method; return its result or raise ClientError."""
        self.send(method, **params)
        return self.receive()

    def send(self, method: str, **params: Any) -> None:
        """Send a request without waiting; pair each with one :meth:`receive` (in order).

        Keeping a request in flight lets the caller prepare the next one while the
        daemon works (``peerctl ingest`` overlaps reading the file with storing it).
        """
        request = ControlRequest(next(self._ids), method, params)
        sock = self._connect()
        try:
            for piece in frame_pieces(control.encode_request_pieces(request), MAX_FRAME):
                sock.sendall(piece)
        except OSError as exc:
            self.close()
            raise DaemonUnavailable(f"connection to duckpeerd failed: {exc}") from exc

    def receive(self) -> Any:
        """The result of the oldest request in flight, or raise ClientError."""
        sock = self._connect()
        try:
            response = control.decode_response(self._read_frame(sock))
        except (OSError, ProtocolError) as exc:
            self.close()
            raise DaemonUnavailable(f"connection to duckpeerd failed: {exc}") from exc
        if not response.ok:
            raise RequestFailed(response.error_code or "error", response.error or "failed")
        return response.result

    def stream(self, method: str, **params: Any) -> Iterator[Any]:
        """Call a method whose result is a stream (``watch``): yield each item until
        the daemon ends it. Closing the generator (or the client) ends the stream."""
        self.send(method, **params)
        sock = self._connect()
        try:
            while True:
                try:
                    response = control.decode_response(self._read_frame(sock))
                except (OSError, ProtocolError) as exc:
                    raise DaemonUnavailable(f"connection to duckpeerd failed: {exc}") from exc
                if not response.ok:
                    raise RequestFailed(response.error_code or "error", response.error or "")
                if not response.more:
                    return
                yield response.result
        finally:
            self.close()  # the daemon ends a stream when its connection closes

    def watch(self, sql: str) -> Iterator[dict[str, Any]]:
        """A live subscription: the query's rows (a ``snapshot`` event), then each change
        as writes arrive from any peer: ``added`` / ``changed`` / ``removed`` events with
        the ``row`` (and ``old`` row), the writers' peer ids in ``origins`` and the
        ``db_cid``; ``lagged`` and a fresh ``snapshot`` when it read too slowly."""
        for item in self.stream("watch", sql=sql):
            yield from item["events"]

    def _read_frame(self, sock: socket.socket) -> bytes:
        while (frame := self._decoder.next_frame()) is None:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionResetError("daemon closed the connection")
            self._decoder.feed(data)
        return frame

    # -- convenience API -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Peer id, database CID, version vector, addresses, peer count, row counts."""
        return self.call("status")  # type: ignore[no-any-return]

    def peers(self) -> list[dict[str, Any]]:
        """Known peers with their CIDs and how far behind either side is."""
        return self.call("peers")  # type: ignore[no-any-return]

    def connect(self, addr: str) -> str:
        """Dial a peer by multiaddr; returns its peer id."""
        return self.call("connect", addr=addr)["peer_id"]  # type: ignore[no-any-return]

    def sync(self, peer: str | None = None) -> dict[str, Any]:
        """Pull from all connected peers (or one) now."""
        return self.call("sync", peer=peer)  # type: ignore[no-any-return]

    def store_performance_result(
        self,
        *,
        model_name: str,
        hardware_type: str,
        throughput: float,
        latency: float,
        batch_size: int | None = None,
        precision: str | None = None,
        memory_mb: float | None = None,
        test_case: str | None = None,
        device_name: str | None = None,
        **extra: Any,
    ) -> str:
        """Record one benchmark result; returns its result id (a UUIDv7)."""
        fields = {
            "model_name": model_name,
            "hardware_type": hardware_type,
            "throughput": throughput,
            "latency": latency,
            "batch_size": batch_size,
            "precision": precision,
            "memory_mb": memory_mb,
            "test_case": test_case,
            "device_name": device_name,
            **extra,
        }
        record = {k: v for k, v in fields.items() if v is not None}
        return self.call("record", record=record)["result_id"]  # type: ignore[no-any-return]

    def ingest_columns(self, columns: dict[str, list[Any]]) -> dict[str, Any]:
        """Store a chunk of results given as ``{field: [values]}`` (one changeset)."""
        return self.call("ingest", records=columns)  # type: ignore[no-any-return]

    def ingest_arrow(self, table: Any) -> dict[str, Any]:
        """Store a chunk of results given as a ``pyarrow.Table`` (or RecordBatch) whose
        columns are the fields of :meth:`store_performance_result` (one changeset; up to
        500,000 rows). It travels as an Arrow IPC stream and is checked column-wise."""
        return self.call("ingest", arrow=arrow_stream(table))  # type: ignore[no-any-return]

    def query(self, sql: str, max_rows: int | None = None, cache: bool = True) -> dict[str, Any]:
        """Run a read-only SELECT; returns ``{"columns": [...], "rows": [[...]]}`` plus
        metadata: ``cache`` (hit / peer / miss / off), ``rewrites``, ``fingerprint``,
        ``db_cid``. The daemon answers from its result cache (or a peer's at the same
        database CID) when it can; ``cache=False`` always runs the query."""
        extra = {} if cache else {"cache": False}
        return self.call("query", sql=sql, max_rows=max_rows, **extra)  # type: ignore[no-any-return]

    def explain_cache(self, sql: str, max_rows: int | None = None) -> dict[str, Any]:
        """How ``sql`` is cached: fingerprint, normalized SQL, strategy, hits, cost."""
        return self.call("query_explain_cache", sql=sql, max_rows=max_rows)  # type: ignore[no-any-return]

    def analyze(self, sql: str) -> dict[str, Any]:
        """DuckDB's profile of ``sql`` (operators, time, rows) and suggestions."""
        return self.call("query_analyze", sql=sql)  # type: ignore[no-any-return]

    def cache_stats(self) -> dict[str, Any]:
        """Result cache counters: hits, misses, hit rate, bytes, entries."""
        return self.call("cache_stats")  # type: ignore[no-any-return]

    def cache_clear(self) -> dict[str, Any]:
        """Drop every cached result (needs write access)."""
        return self.call("cache_clear")  # type: ignore[no-any-return]

    def query_arrow(self, sql: str, max_rows: int | None = None) -> Any:
        """Run a read-only SELECT; the result as a ``pyarrow.Table``. It travels as
        compressed Arrow IPC in parts of up to 16 MiB (not through the result cache)."""
        import pyarrow as pa

        part = self.call("query_arrow", sql=sql, max_rows=max_rows)
        tables = [pa.ipc.open_stream(part["ipc"]).read_all()]
        while part["more"]:
            part = self.call("query_arrow_next", id=part["id"])
            tables.append(pa.ipc.open_stream(part["ipc"]).read_all())
        return pa.concat_tables(tables)

    def query_df(self, sql: str, max_rows: int | None = None) -> Any:
        """Run a read-only SELECT; the result as a pandas DataFrame (``pip install
        duckpeer[pandas]``); UUIDs become ``uuid.UUID`` values."""
        return self.query_arrow(sql, max_rows).to_pandas()

    def query_dicts(self, sql: str) -> list[dict[str, Any]]:
        """Run a read-only SELECT; rows as dicts."""
        result = self.query(sql)
        return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]

    def update(self, table: str, key: Any, values: dict[str, Any]) -> dict[str, Any]:
        """Change columns of one row (by primary key); replicates like any write."""
        return self.call("update", table=table, key=key, set=values)  # type: ignore[no-any-return]

    def delete(self, table: str, key: Any) -> dict[str, Any]:
        """Delete one row by primary key; replicates as a tombstone."""
        return self.call("delete", table=table, key=key)  # type: ignore[no-any-return]

    def conflicts(self, table: str | None = None) -> list[dict[str, Any]]:
        """Open conflicts (every concurrent version of each), optionally of one table."""
        return self.call("conflicts_list", table=table)["conflicts"]  # type: ignore[no-any-return]

    def conflict(self, ident: str) -> dict[str, Any]:
        """One open conflict by id or ``TABLE/KEY``."""
        return self.call("conflicts_show", id=ident)  # type: ignore[no-any-return]

    def resolve_conflict(
        self, ident: str, take: str | None = None, values: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Close a conflict by taking one version (origin, hlc or hlc:origin) or by setting
        ``values`` on the visible version; the resolution replicates to every peer."""
        return self.call(  # type: ignore[no-any-return]
            "conflicts_resolve", id=ident, take=take, values=values
        )

    # -- knowledge graph -------------------------------------------------------------------

    def populate_from_benchmarks(self) -> dict[str, Any]:
        """Rebuild the knowledge graph from the benchmark tables; returns time and sizes."""
        return self.call("kg_populate")  # type: ignore[no-any-return]

    def find_similar_benchmarks(
        self, node: str, top_k: int = 10, min_similarity: float = -1.0
    ) -> dict[str, Any]:
        """The configurations (or models) most similar to ``node``, best first.

        ``node`` is a configuration ``model|hardware|batch|precision`` or a model id,
        optionally prefixed ``config:`` / ``model:``.
        """
        return self.call(  # type: ignore[no-any-return]
            "kg_similar", node=node, top_k=top_k, min_similarity=min_similarity
        )

    def detect_performance_patterns(self, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """Hardware speed-ups, batch scaling, precision effects, outliers, regressions."""
        return self.call("kg_patterns", limit=limit)  # type: ignore[no-any-return]

    def create_hardware_compatibility_map(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{model: {hardware: {"status": ..., "reason": ..., ...}}}``."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for row in self.call("kg_compat"):
            model, hardware = row.pop("model_id"), row.pop("hardware_id")
            out.setdefault(model, {})[hardware] = row
        return out

    def knowledge_graph(self) -> dict[str, dict[str, list[Any]]]:
        """All nodes and edges of the knowledge graph, column-wise."""
        return self.call("kg_graph")  # type: ignore[no-any-return]

    def snapshot_export(self, path: str | None = None) -> dict[str, Any]:
        """Snapshot the database as a CAR (copied to ``path``, absolute, if given)."""
        return self.call("snapshot_export", path=path)  # type: ignore[no-any-return]

    def snapshot_import(self, path: str) -> dict[str, Any]:
        """Verify and load a snapshot CAR (absolute path) into the daemon's empty store."""
        return self.call("snapshot_import", path=path)  # type: ignore[no-any-return]

    def snapshot_prune(self) -> dict[str, Any]:
        """Drop the changeset blocks every known peer holds; compact the log now."""
        return self.call("snapshot_prune")  # type: ignore[no-any-return]

    def snapshot_bootstrap(self, peers: list[str] | None = None) -> dict[str, Any]:
        """Fetch the latest snapshot from connected peers (or ``peers``) and load it."""
        return self.call("snapshot_bootstrap", peers=peers)  # type: ignore[no-any-return]

    # -- monitor ---------------------------------------------------------------------------

    def record_metric(self, name: str, value: float, tags: dict[str, str] | None = None) -> None:
        """Record one value of a custom metric (summaries, trends, alerts, Prometheus)."""
        self.call("metrics_record", name=name, value=value, tags=tags or {})

    def metrics(self, name: str | None = None, window: str | float | None = None) -> dict[str, Any]:
        """Summaries (count, avg, min, max, p50/p95/p99, latest) and trends over a window."""
        return self.call("metrics", name=name, window=window)  # type: ignore[no-any-return]

    def metrics_history(self, names: list[str], window: str | float | None = None) -> list[Any]:
        """Raw ``(time, value)`` points of the named series."""
        return self.call("metrics_history", names=names, window=window)["series"]  # type: ignore[no-any-return]

    def alerts(self) -> dict[str, Any]:
        """Firing and pending alerts, rules and recent events."""
        return self.call("alerts")  # type: ignore[no-any-return]

    def health(self) -> dict[str, Any]:
        """``{"status": healthy|degraded|unhealthy, "reasons": [...]}``."""
        return self.call("health")  # type: ignore[no-any-return]

    def verify(self, timeout: float = 5.0) -> dict[str, Any]:
        """Convergence report: every reachable peer's CID and vector, who is behind."""
        return self.call("verify", timeout=timeout)  # type: ignore[no-any-return]

    # -- distributed queries ------------------------------------------------------------

    def execute_distributed_query(
        self,
        query: str,
        partition_strategy: str = "range",
        nodes: int | None = None,
        column: str | None = None,
        max_rows: int | None = None,
        explain: bool = False,
        equal_shares: bool = False,
    ) -> dict[str, Any]:
        """Run a SELECT as map fragments over peers at our database CID plus a reduce.

        Returns ``columns``, ``rows``, ``node_count``, ``execution_ms``, ``node_timings``
        (per peer: partitions, share, rows, ms, rows and row groups scanned, failures),
        ``distributed`` and, when the query ran on one node, ``reason``.
        ``partition_strategy``: range, round_robin or hash (key ranges of result_id
        sized by each peer's capacity; ``range`` on another ``column`` by quantiles).
        ``explain``: only say how it would be split (each partition's peer, share, SQL).
        ``equal_shares``: the same share for every node, whatever its capacity.
        """
        return self.call(  # type: ignore[no-any-return]
            "query_distributed",
            sql=query,
            strategy=partition_strategy,
            nodes=nodes,
            column=column,
            max_rows=max_rows,
            **({"explain": True} if explain else {}),
            **({"equal_shares": True} if equal_shares else {}),
        )

    def map_reduce(
        self,
        map_sql: str,
        reduce_sql: str,
        partition_strategy: str = "range",
        nodes: int | None = None,
        column: str | None = None,
        equal_shares: bool = False,
    ) -> dict[str, Any]:
        """A custom job: ``map_sql`` on every partition of performance_results, then
        ``reduce_sql`` over their union, a table named ``partials``."""
        return self.call(  # type: ignore[no-any-return]
            "mapreduce",
            map=map_sql,
            reduce=reduce_sql,
            strategy=partition_strategy,
            nodes=nodes,
            column=column,
            **({"equal_shares": True} if equal_shares else {}),
        )

    def get_cluster_status(self) -> dict[str, Any]:
        """Total and available nodes; per node load, database CID and replication lag."""
        return self.call("cluster_status")  # type: ignore[no-any-return]
