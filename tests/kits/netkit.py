"""Two real py-libp2p hosts on loopback, for tests of the network adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from libp2p.crypto.ed25519 import create_new_key_pair

from daemon.net.network import Network, open_network

LOCAL = ["/ip4/127.0.0.1/tcp/0"]


@asynccontextmanager
async def two_hosts(topic: str) -> AsyncIterator[tuple[Network, Network]]:
    """Two hosts listening on loopback, subscribed to ``topic``, not connected."""
    async with (
        open_network(create_new_key_pair(), LOCAL, topic) as first,
        open_network(create_new_key_pair(), LOCAL, topic) as second,
    ):
        yield first, second
