"""Who is on the other end of the control socket (SO_PEERCRED), and what they may do.

The socket file is mode 0660, so the kernel already keeps out users outside the
daemon's group; this check is the second wall and the place where writes can be
limited to one group (``control_write_group``).
"""

from __future__ import annotations

import grp
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from daemon.config import ConfigError

_UCRED = struct.Struct("3i")  # pid, uid, gid


class Access(Enum):
    """What a caller may do."""

    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class Credentials:
    """The connecting process, as the kernel reports it."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]


def peer_credentials(sock: socket.socket) -> Credentials:
    """SO_PEERCRED of a connected Unix socket, plus the caller's supplementary groups."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return Credentials(pid, uid, gid, frozenset({gid, *_supplementary_groups(pid)}))


def _supplementary_groups(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return [int(g) for g in line.split()[1:]]
    except (OSError, ValueError):
        pass  # the caller exited, or /proc is hidden: judge by its primary gid only
    return []


Authorizer = Callable[[Credentials], Access]


def make_authorizer(
    write_group: str | None, uid: int | None = None, gid: int | None = None
) -> Authorizer:
    """Root, our own user and members of our group may read; writes need ``write_group``
    membership when it is set (root and our own user always may)."""
    own_uid = os.geteuid() if uid is None else uid
    own_gid = os.getegid() if gid is None else gid
    try:
        writers = grp.getgrnam(write_group).gr_gid if write_group else None
    except KeyError as exc:
        raise ConfigError(f"control_write_group {write_group!r} is not a group here") from exc

    def authorize(caller: Credentials) -> Access:
        if caller.uid in (0, own_uid):
            return Access.WRITE
        if own_gid not in caller.groups:
            return Access.NONE
        return Access.WRITE if writers is None or writers in caller.groups else Access.READ

    return authorize
