"""``pipx install .`` gives both commands, in an environment of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_pipx_install_gives_peerctl_and_duckpeerd(tmp_path: Path) -> None:
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
           "PIPX_MAN_DIR": str(tmp_path / "man")}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "pipx", "install", str(ROOT)], env=env,
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for command in ("peerctl", "duckpeerd"):
        binary = tmp_path / "bin" / command
        version = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                                 timeout=60)  # fmt: skip
        assert version.returncode == 0 and version.stdout.startswith(f"{command} "), version
    status = subprocess.run([str(tmp_path / "bin" / "peerctl"), "--socket",
                             str(tmp_path / "none.sock"), "status"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert status.returncode == 3 and "cannot reach duckpeerd" in status.stderr
