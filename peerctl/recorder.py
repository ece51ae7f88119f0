"""Record a benchmark from code: time a block, read the hardware, store the result.

    from peerctl import benchmark

    with benchmark("bert-base-uncased", batch_size=8, precision="fp16") as run:
        model(batch)                     # timed
    print(run.latency_ms, run.result_id)

    @benchmark("resnet50", batch_size=32)
    def step(): ...                      # every call is timed and recorded

Results go to the local daemon through its control socket. When no daemon answers,
they are appended to a local buffer file (one JSON object a line) and sent with the
next result that does get through, or by :func:`flush_pending`; nothing is lost
because the daemon was restarting.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from peerctl.client import Client, DaemonUnavailable

F = TypeVar("F", bound=Callable[..., Any])
MAX_BUFFERED = 100_000  # results kept while the daemon is away


def buffer_path() -> Path:
    """Where results wait for the daemon (``DUCKPEER_BUFFER``, else the XDG state dir)."""
    if os.environ.get("DUCKPEER_BUFFER"):
        return Path(os.environ["DUCKPEER_BUFFER"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "duckpeer" / "pending-results.jsonl"


def detect_hardware() -> tuple[str, str]:
    """(hardware_type, device_name) of this process: the CUDA device if PyTorch is
    already imported and has one, else the CPU's model name."""
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):  # a broken CUDA set-up is still a CPU host
            if torch.cuda.is_available():
                return "cuda", str(torch.cuda.get_device_name(torch.cuda.current_device()))
    return "cpu", _cpu_name()


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


@dataclass
class Run:
    """One timed block and what became of it."""

    fields: dict[str, Any]
    latency_ms: float = 0.0
    result_id: str | None = None  # None: buffered until the daemon answers
    buffered: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # goes into ``metrics``


class benchmark:
    """Time a block (``with``) or each call of a function (decorator) and record it."""

    def __init__(
        self,
        model: str,
        *,
        hardware: str | None = None,
        device: str | None = None,
        batch_size: int = 1,
        items: int | None = None,
        precision: str | None = None,
        memory_mb: float | None = None,
        test_case: str | None = None,
        socket: str | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive integer")
        detected = detect_hardware() if hardware is None else (hardware, device)
        self.fields: dict[str, Any] = {
            "model_name": model,
            "hardware_type": detected[0],
            "device_name": device or detected[1],
            "batch_size": batch_size,
            "precision": precision,
            "memory_mb": memory_mb,
            "test_case": test_case,
        }
        self.items = items if items is not None else batch_size
        self.socket = socket
        self._open: list[contextlib.AbstractContextManager[Run]] = []

    @contextlib.contextmanager
    def _timed(self) -> Iterator[Run]:
        run = Run(dict(self.fields))
        started = time.perf_counter()
        yield run
        elapsed = time.perf_counter() - started
        run.latency_ms = elapsed * 1000.0
        fields = {**run.fields, "latency": run.latency_ms,
                  "throughput": self.items / elapsed if elapsed > 0 else 0.0}  # fmt: skip
        if run.extra:
            fields["metrics"] = json.dumps(run.extra, sort_keys=True, default=str)
        run.result_id = record(fields, self.socket)
        run.buffered = run.result_id is None

    def __enter__(self) -> Run:
        context = self._timed()
        self._open.append(context)
        return context.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        # a block that raised is not recorded: the exception leaves _timed at its yield
        return self._open.pop().__exit__(*exc)

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._timed():
                return fn(*args, **kwargs)

        return timed  # type: ignore[return-value]


def record(fields: dict[str, Any], socket: str | None = None) -> str | None:
    """Store one result (record fields); its id, or None when it was buffered."""
    clean = {k: v for k, v in fields.items() if v is not None}
    try:
        with Client(socket, timeout=30.0) as client:
            result_id = client.store_performance_result(**clean)
            send_pending(client)
            return str(result_id)
    except DaemonUnavailable:
        buffer_result(clean)
        return None


def flush_pending(socket: str | None = None) -> int:
    """Send buffered results to the daemon; how many went (DaemonUnavailable if away)."""
    with Client(socket, timeout=60.0) as client:
        return send_pending(client)


def send_pending(client: Client) -> int:
    """Send the buffered results through ``client`` as one ingest; how many went."""
    path = buffer_path()
    if not path.exists():
        return 0
    with _locked(path) as handle:
        lines = [json.loads(line) for line in handle.read().splitlines() if line.strip()]
        if lines:
            names = sorted({k for r in lines for k in r})
            client.ingest_columns({n: [r.get(n) for r in lines] for n in names})
        handle.seek(0)
        handle.truncate()
    return len(lines)


def buffer_result(fields: dict[str, Any]) -> None:
    """Keep one result (record fields) in the buffer file until a daemon answers."""
    path = buffer_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path) as handle:
        waiting = sum(1 for _ in handle)
        if waiting >= MAX_BUFFERED:
            raise DaemonUnavailable(f"no daemon, and {waiting} results already wait in {path}")
        handle.write(json.dumps(fields, sort_keys=True) + "\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    """The buffer file, opened for reading and appending, under an exclusive lock (other
    processes of the same benchmark run may record at the same time)."""
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
