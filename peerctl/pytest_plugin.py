"""pytest plugin: record every pytest-benchmark result in the local duckpeerd.

Installed with duckpeer (entry point ``pytest11``); off unless asked for::

    pytest --duckpeer                 # or DUCKPEER_RECORD=1 in the environment
    pytest --duckpeer --duckpeer-socket /run/duckpeer/control.sock

At the end of the session the benchmarks that pytest-benchmark measured are mapped
like ``peerctl ingest --format pytest-benchmark`` maps its JSON (peerctl/formats/
pytest_benchmark.py) and stored as one changeset; if no daemon answers they wait in
the recorder's buffer file (peerctl/recorder.py) for the next result that gets through.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from peerctl.client import Client, ClientError, DaemonUnavailable
from peerctl.formats import pytest_benchmark
from peerctl.formats.common import FormatError
from peerctl.recorder import buffer_result, send_pending


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("duckpeer")
    group.addoption("--duckpeer", action="store_true", default=False,
                    help="record pytest-benchmark results in the local duckpeerd")  # fmt: skip
    group.addoption("--duckpeer-socket", default=None, help="duckpeerd control socket")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--duckpeer") or os.environ.get("DUCKPEER_RECORD") == "1")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not _enabled(config):
        return
    records = collect(config)
    message = store(records, config.getoption("--duckpeer-socket")) if records else None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if message and reporter is not None:
        reporter.write_line(f"duckpeer: {message}")


def collect(config: pytest.Config) -> list[dict[str, Any]]:
    """The session's benchmark results as record fields (none without pytest-benchmark)."""
    session = getattr(config, "_benchmarksession", None)  # pytest-benchmark's own state
    if session is None:
        return []
    machine = config.hook.pytest_benchmark_generate_machine_info(config=config)
    commit = config.hook.pytest_benchmark_generate_commit_info(config=config)
    context = pytest_benchmark._context({"machine_info": machine, "commit_info": commit})
    out = []
    for bench in session.benchmarks:
        if bench.has_error:
            continue
        entry = bench.as_dict(include_data=False)
        try:
            out.append(pytest_benchmark.record_fields(entry, context, entry["fullname"]))
        except FormatError:
            continue
    return out


def store(records: list[dict[str, Any]], socket: str | None) -> str:
    """Send the records as one ingest (or buffer them); a line for the terminal."""
    rows = [{k: v for k, v in r.items() if v is not None} for r in records]
    names = sorted({k for r in rows for k in r})
    try:
        with Client(socket, timeout=60.0) as client:
            flushed = send_pending(client)
            stored = client.ingest_columns({n: [r.get(n) for r in rows] for n in names})["rows"]
    except DaemonUnavailable:
        for row in rows:
            buffer_result(row)
        return f"no daemon answers; {len(rows)} results buffered for later"
    except ClientError as exc:
        return f"results not recorded: {exc}"
    return f"recorded {stored} benchmark results" + (f" (+{flushed} buffered)" if flushed else "")
