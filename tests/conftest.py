"""Shared fixtures: real duckpeerd clusters on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daemon.localcluster import LocalCluster


@pytest.fixture
def cluster3() -> Iterator[LocalCluster]:
    """Three real daemons, bootstrapped from the first."""
    with LocalCluster(3) as cluster:
        yield cluster
