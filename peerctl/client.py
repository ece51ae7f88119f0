"""Blocking client for the daemon's Unix control socket."""

from __future__ import annotations

import itertools
import os
import socket
from typing import Any

from protocol import control
from protocol.control import ControlRequest
from protocol.errors import ProtocolError
from protocol.framing import FrameDecoder, encode_frame

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
            sock.sendall(encode_frame(control.encode_request(request), control.MAX_CONTROL_FRAME))
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

    def query(self, sql: str, max_rows: int | None = None) -> dict[str, Any]:
        """Run a read-only SELECT; returns ``{"columns": [...], "rows": [[...]]}``."""
        return self.call("query", sql=sql, max_rows=max_rows)  # type: ignore[no-any-return]

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

    # -- distributed queries ------------------------------------------------------------

    def execute_distributed_query(
        self,
        query: str,
        partition_strategy: str = "hash",
        nodes: int | None = None,
        column: str | None = None,
        max_rows: int | None = None,
    ) -> dict[str, Any]:
        """Run a SELECT as map fragments over peers at our database CID plus a reduce.

        Returns ``columns``, ``rows``, ``node_count``, ``execution_ms``, ``node_timings``
        (per peer: partitions, rows, ms, failures), ``distributed`` and, when the query
        ran on one node, ``reason``. ``partition_strategy``: hash, round_robin or range
        (on ``column``, by quantiles).
        """
        return self.call(  # type: ignore[no-any-return]
            "query_distributed",
            sql=query,
            strategy=partition_strategy,
            nodes=nodes,
            column=column,
            max_rows=max_rows,
        )

    def map_reduce(
        self,
        map_sql: str,
        reduce_sql: str,
        partition_strategy: str = "hash",
        nodes: int | None = None,
        column: str | None = None,
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
        )

    def get_cluster_status(self) -> dict[str, Any]:
        """Total and available nodes; per node load, database CID and replication lag."""
        return self.call("cluster_status")  # type: ignore[no-any-return]
