"""systemd's notify protocol: READY=1, STATUS=..., WATCHDOG=1 over $NOTIFY_SOCKET.

A dozen lines, so written here: the PyPI ``sdnotify`` package has not been released
since 2017 and ``systemd-python`` needs libsystemd headers to build. Outside systemd
(no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import socket

import structlog
import trio

log = structlog.get_logger("sdnotify")


class Notifier:
    """Sends notify datagrams to the socket systemd named in the environment."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path  # abstract namespace
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval = int(usec) / 1e6 / 2 if watched and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with Type=notify."""
        return bool(self.address)

    def notify(self, *lines: str) -> None:
        """Send ``KEY=value`` lines in one datagram; failures are logged, never raised."""
        if not self.enabled:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto("\n".join(lines).encode(), self.address)
            except OSError as exc:
                log.warning("sd_notify failed", error=str(exc))

    async def serve_watchdog(self) -> None:
        """Ping the watchdog from the trio loop: if the loop hangs, pings stop."""
        if self.watchdog_interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await trio.sleep(self.watchdog_interval)
