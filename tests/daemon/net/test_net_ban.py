"""A banned peer that dials again over real py-libp2p is closed as soon as its
connection is up, not at the connection manager's next tick."""

from __future__ import annotations

import trio
from netkit import two_hosts

from daemon.net.network import NetworkError


async def test_a_banned_peer_cannot_relink() -> None:
    async with two_hosts("/duckpeer/test-ban/v1") as (guard, banned):
        await banned.connect(guard.listen_addrs()[0])
        with trio.fail_after(10):
            while banned.peer_id not in guard.connected_peers():
                await trio.sleep(0.02)
        guard.ban(banned.peer_id)
        await guard.disconnect(banned.peer_id)
        with trio.fail_after(10):
            while banned.peer_id in guard.connected_peers():
                await trio.sleep(0.02)
        try:
            await banned.connect(guard.listen_addrs()[0])
        except NetworkError:  # refused is as good as closed
            pass
        with trio.fail_after(10):  # the notifee closes it; nothing else here would
            while banned.peer_id in guard.connected_peers():
                await trio.sleep(0.02)
        assert banned.peer_id in guard.banned
        guard.unban(banned.peer_id)
        await banned.connect(guard.listen_addrs()[0])
        with trio.fail_after(10):
            while banned.peer_id not in guard.connected_peers():
                await trio.sleep(0.02)
