"""Control-socket callers: SO_PEERCRED credentials and the read/write policy."""

from __future__ import annotations

import os
import socket

import pytest

from daemon.config import ConfigError
from daemon.control.peercred import Access, Credentials, make_authorizer, peer_credentials

ME, MY_GROUP = 1000, 1000


def caller(uid: int, gid: int, *groups: int) -> Credentials:
    return Credentials(pid=1, uid=uid, gid=gid, groups=frozenset({gid, *groups}))


def test_peer_credentials_of_a_socketpair_are_ours() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        creds = peer_credentials(a)
    assert (creds.pid, creds.uid, creds.gid) == (os.getpid(), os.geteuid(), os.getegid())
    assert os.getegid() in creds.groups


def test_root_own_user_and_group_members_get_in_others_do_not() -> None:
    authorize = make_authorizer(None, uid=ME, gid=MY_GROUP)
    assert authorize(caller(0, 0)) is Access.WRITE
    assert authorize(caller(ME, 5)) is Access.WRITE
    assert authorize(caller(2000, 2000, MY_GROUP)) is Access.WRITE  # supplementary group
    assert authorize(caller(2000, 2000)) is Access.NONE


def test_write_group_limits_writes_to_its_members() -> None:
    import grp

    writers = grp.getgrgid(0).gr_name  # a group that exists everywhere: root's
    authorize = make_authorizer(writers, uid=ME, gid=MY_GROUP)
    assert authorize(caller(2000, MY_GROUP)) is Access.READ
    assert authorize(caller(2000, MY_GROUP, 0)) is Access.WRITE
    assert authorize(caller(ME, MY_GROUP)) is Access.WRITE  # the daemon's own user


def test_unknown_write_group_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a group"):
        make_authorizer("no-such-group-duckpeer")
