"""Real duckpeerd processes on loopback: used by ``duckpeerd demo``, tests and benchmarks.

Each peer is a separate OS process with its own data dir, listening on an ephemeral
loopback port and controlled through its own Unix socket. Waiting is always on a
condition with a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerctl.client import Client, ClientError

FAST_TIMERS = {
    "DUCKPEER_ANNOUNCE_INTERVAL": "1.0",
    "DUCKPEER_ANNOUNCE_CLUSTER_RATE": "10.0",  # up to 10 peers: a heartbeat every second
    "DUCKPEER_ANTI_ENTROPY_INTERVAL": "3.0",
    "DUCKPEER_ANTI_ENTROPY_MAX_INTERVAL": "6.0",
}


class ClusterError(Exception):
    """A peer did not start, stop or converge in time."""


def wait_until(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    """Poll ``condition`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


class LocalPeer:
    """One duckpeerd process."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.socket = data_dir / "control.sock"
        self.log_path = data_dir / "daemon.log"
        self.env = {**os.environ, **FAST_TIMERS, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.bootstrap: list[str] = []
        self.port = 0

    def start(self, bootstrap: list[str] | None = None, timeout: float = 30.0) -> LocalPeer:
        """Start the process and wait until its control socket answers."""
        self.spawn(bootstrap)
        return self.wait_ready(timeout)

    def spawn(self, bootstrap: list[str] | None = None) -> None:
        """Start the process without waiting for it."""
        if bootstrap is not None:
            self.bootstrap = bootstrap
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "daemon",
            "--data-dir", str(self.data_dir),
            "--listen", f"/ip4/127.0.0.1/tcp/{self.port}",
            "--control-socket", str(self.socket),
        ]  # fmt: skip
        for addr in self.bootstrap:
            cmd += ["--bootstrap", addr]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=self.env)
        log.close()

    def wait_ready(self, timeout: float = 30.0) -> LocalPeer:
        """Wait until the control socket answers; remember the port for restarts."""
        wait_until(self._ready, timeout, f"{self.name} to answer on {self.socket}")
        if not self.port:  # keep the same port across restarts so peers can redial
            self.port = int(self.listen_addr.split("/tcp/")[1].split("/")[0])
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ClusterError(
                f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
            )
        try:
            self.status()
        except ClientError:
            return False
        return True

    def client(self) -> Client:
        """A new control-socket client (close it, or use it as a context manager)."""
        return Client(self.socket, timeout=120.0)

    def call(self, method: str, **params: Any) -> Any:
        """One control call on a fresh connection."""
        with self.client() as client:
            return client.call(method, **params)

    def status(self) -> dict[str, Any]:
        """The peer's ``status``."""
        return self.call("status")  # type: ignore[no-any-return]

    @property
    def listen_addr(self) -> str:
        """The first listen multiaddr, with /p2p/<peer id>."""
        return self.status()["listen_addrs"][0]  # type: ignore[no-any-return]

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait()
            raise ClusterError(f"{self.name} ignored SIGTERM for {timeout} s") from exc

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class LocalCluster:
    """N peers on loopback, all bootstrapping from the first. A context manager."""

    def __init__(
        self,
        size: int = 3,
        base_dir: Path | None = None,
        keep: bool = False,
        env: dict[str, str] | None = None,
        start_wave: int = 0,
        start_timeout: float = 30.0,
    ) -> None:
        """``start_wave`` > 0 starts the peers after the first that many at a time (50
        Python daemons importing at once on 2 cores take minutes to answer);
        ``start_timeout`` is how long each wave may take to answer."""
        self.start_wave, self.start_timeout = start_wave, start_timeout
        self._own_dir = base_dir is None
        # short paths: Unix socket paths are limited to 108 bytes
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="dp-"))
        self.keep = keep
        self.peers = [LocalPeer(f"peer{i}", self.base_dir / f"p{i}", env) for i in range(size)]

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the first peer, then the others bootstrapping from it."""
        if not self.peers:
            return
        first = self.peers[0].start(timeout=self.start_timeout)
        seed = [first.listen_addr]
        rest = self.peers[1:]
        wave = self.start_wave or len(rest) or 1
        for at in range(0, len(rest), wave):
            for peer in rest[at : at + wave]:
                peer.spawn(seed)
            for peer in rest[at : at + wave]:
                peer.wait_ready(self.start_timeout)

    def close(self) -> None:
        """Stop every peer; remove the temporary directory unless ``keep``."""
        for peer in self.peers:
            try:
                peer.stop()
            except ClusterError:
                pass
        if self._own_dir and not self.keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def statuses(self) -> list[dict[str, Any]]:
        """Status of every running peer."""
        return [p.status() for p in self.peers if p.running]

    def converged(self, peers: list[LocalPeer] | None = None) -> bool:
        """True when all (given) peers report the same database CID and row counts."""
        try:
            states = [p.status() for p in (peers or self.peers)]
        except ClientError:
            return False
        return (
            len({s["db_cid"] for s in states}) == 1
            and len({tuple(sorted(s["rows"].items())) for s in states}) == 1
        )

    def wait_converged(self, timeout: float = 30.0, peers: list[LocalPeer] | None = None) -> None:
        """Block until :meth:`converged`, or raise ClusterError."""
        wait_until(lambda: self.converged(peers), timeout, "peers to converge", poll=0.01)
