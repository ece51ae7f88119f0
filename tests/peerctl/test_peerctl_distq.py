"""peerctl distributed-query flags and commands: usage errors without a daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peerctl.cli import EXIT_UNREACHABLE, EXIT_USAGE, main


@pytest.fixture(autouse=True)
def _no_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("DUCKPEER_SOCKET", str(tmp_path / "absent.sock"))
    yield


@pytest.mark.parametrize(
    "argv",
    [
        ["query", "SELECT 1", "--partition", "hash"],  # needs --distributed
        ["query", "SELECT 1", "--distributed", "--partition", "zigzag"],
        ["query", "SELECT 1", "--distributed", "--nodes", "many"],
        ["mapreduce", "--map", "SELECT 1"],  # --reduce missing
        ["cluster", "extra"],
    ],
)
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("peerctl: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["query", "SELECT 1", "--distributed"],
        ["mapreduce", "--map", "SELECT 1", "--reduce", "SELECT 1"],
        ["cluster", "--json"],
        ["query", "SELECT 1"],  # the plain query still works as before
    ],
)
def test_no_daemon(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_UNREACHABLE
    assert "cannot reach duckpeerd" in capsys.readouterr().err
