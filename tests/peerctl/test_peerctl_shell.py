"""``--version`` and shell completion (argcomplete) for peerctl and duckpeerd."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})  # fmt: skip


@pytest.mark.parametrize(("module", "prog"), [("peerctl", "peerctl"), ("daemon", "duckpeerd")])
def test_version(module: str, prog: str) -> None:
    done = run(module, "--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"{prog} {version('duckpeer')}"


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nospace -o default -o bashdefault -F"), ("zsh", "#compdef peerctl"),
     ("fish", "complete --command peerctl")],
)  # fmt: skip
def test_completion_scripts(shell: str, marker: str) -> None:
    done = run("peerctl", "completion", shell)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout


def test_completion_completes_commands_and_flags(tmp_path: Path) -> None:
    out = tmp_path / "completions"

    def complete(line: str) -> list[str]:
        env = {"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
               "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}  # fmt: skip
        done = run("peerctl", env=env)
        assert done.returncode == 0, done.stderr
        return out.read_text().split()

    assert {"status", "sync"} <= set(complete("peerctl s"))
    assert "--distributed" in complete("peerctl query 'SELECT 1' --dis")
