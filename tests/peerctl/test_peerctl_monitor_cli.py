"""peerctl monitor commands: argument errors are exit 2 before any daemon is asked;
no daemon is exit 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerctl.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["metrics", "record", "x", "lots"],
        ["metrics", "record", "x", "nan"],
        ["metrics", "record", "x"],
        ["metrics", "record", "x", "1", "--tag", "novalue"],
        ["metrics", "a", "b"],
        ["metrics", "a", "--tag", "k=v"],
        ["top", "--interval", "0"],
        ["verify", "--timeout", "0"],
    ],
)
def test_usage_errors(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", str(tmp_path / "none.sock"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peerctl: ") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["health"], ["verify"], ["alerts"], ["top", "--once"]])
def test_no_daemon(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", str(tmp_path / "none.sock"), *argv]) == 3
    assert "cannot reach duckpeerd" in capsys.readouterr().err
