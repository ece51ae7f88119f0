"""Fixtures of the peerctl tests: no test talks to a daemon it did not start."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (``sun_path`` holds 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dpcli-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_daemon(monkeypatch: pytest.MonkeyPatch, sock_dir: Path) -> None:
    """Point peerctl at a socket nobody listens on, whatever the environment says."""
    monkeypatch.setenv("DUCKPEER_SOCKET", str(sock_dir / "absent.sock"))
    monkeypatch.delenv("PEERCTL_DEBUG", raising=False)
