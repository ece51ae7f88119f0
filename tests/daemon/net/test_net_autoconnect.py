"""py-libp2p's auto-connector does not dial peers behind our connection manager's back
(it used to aim at 32 connections and fight the trim, idle)."""

from __future__ import annotations

import multiaddr
import trio
from libp2p.peer.id import ID
from netkit import two_hosts


async def test_a_peer_known_to_the_peerstore_is_not_dialed_by_py_libp2p() -> None:
    async with two_hosts("/duckpeer/test-autoconnect/v1") as (ours, known):
        host = ours._host
        addr = multiaddr.Multiaddr(known.listen_addrs()[0].rsplit("/p2p/", 1)[0])
        host.get_peerstore().add_addrs(ID.from_base58(known.peer_id), [addr], 3600)  # type: ignore[attr-defined]
        swarm = host.get_network()  # type: ignore[attr-defined]
        with trio.fail_after(10):
            await swarm.auto_connector.maybe_connect()
        assert known.peer_id not in ours.connected_peers()
        assert not swarm.auto_connector._in_flight_dials
        await ours.connect(known.listen_addrs()[0])  # dialing ourselves still works
        assert known.peer_id in ours.connected_peers()
