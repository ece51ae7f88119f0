"""Shared fixtures: real duckpeerd clusters on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from kubokit import FakeKubo

from daemon.localcluster import LocalCluster


@pytest.fixture
def cluster3() -> Iterator[LocalCluster]:
    """Three real daemons, bootstrapped from the first."""
    with LocalCluster(3) as cluster:
        yield cluster


@pytest.fixture
def fake_kubo() -> Iterator[str]:
    FakeKubo.received, FakeKubo.status, FakeKubo.pin_error = [], 200, ""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKubo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()
