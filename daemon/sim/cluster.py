"""A simulated cluster: peers that run the daemon's network services in memory.

Each :class:`SimPeer` is a real :class:`~daemon.node.Node` (with store access made
inline, so virtual time stays exact) whose network is a
:class:`~daemon.net.memnet.MemNetwork`, running the same services ``daemon/app.py``
starts: sync and anti-entropy, the gossip listener (behind the same validator) and
announcer, membership, the connection manager and bootstrap. Peers can be stopped
(gracefully, with a leaving announce, or as a crash), restarted (on the same or a new
address, with their store), partitioned and written to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from daemon.config import Config
from daemon.net import bootstrap, connmgr, gossip, membership, sync
from daemon.net.gossipcheck import GossipCheck
from daemon.net.memnet import MemFabric, MemNetwork
from daemon.node import Node
from daemon.sim.store import MemStore, one_model
from daemon.store.signing import signer

T = TypeVar("T")

SEEDS = 3

SERVICES: tuple[Callable[..., Awaitable[None]], ...] = (
    sync.serve_sync,
    gossip.serve_listener,
    gossip.serve_announcer,
    membership.serve,
    connmgr.serve,
    bootstrap.serve_bootstrap,
)


class SimNode(Node):
    """A Node whose store calls run inline, after a fixed virtual cost per write."""

    apply_cost = 0.002

    async def write(self, fn: Callable[[Any], T]) -> T:
        await trio.sleep(self.apply_cost)
        result = fn(self.store)
        self.notify_changed()
        return result

    async def write_derived(self, fn: Callable[[Any], T]) -> T:
        await trio.sleep(self.apply_cost)
        return fn(self.store)

    async def read(self, fn: Callable[[Any], T]) -> T:
        await trio.lowlevel.checkpoint()
        return fn(self.store)


@dataclass
class SimSettings:
    """The world and the daemons' settings."""

    latency: tuple[float, float] = (0.001, 0.010)
    loss: float = 0.0
    seed: int = 0
    apply_cost: float = 0.002
    config: dict[str, Any] = field(default_factory=dict)  # Config fields, e.g. rates


@dataclass
class SimPeer:
    """One simulated daemon: identity and store survive restarts; the node does not."""

    index: int
    key_pair: KeyPair
    peer_id: str
    store: MemStore
    addr: str
    node: SimNode | None = None
    scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)
    restarts: int = 0

    @property
    def online(self) -> bool:
        """True while its services run."""
        return self.node is not None


def _address(index: int, restarts: int) -> str:
    return f"/ip4/10.{index >> 8 & 255}.{index & 255}.{1 + restarts % 250}/tcp/4001"


class SimCluster:
    """N simulated peers on one fabric (see the module docstring)."""

    def __init__(self, size: int, settings: SimSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        s = self.settings
        self.fabric = MemFabric(latency=s.latency, loss=s.loss, seed=s.seed)
        self.peers = [self._make_peer(i) for i in range(size)]
        self.by_id = {p.peer_id: p for p in self.peers}
        self.rng = random.Random(s.seed)
        self.reached: dict[tuple[str, int], dict[str, float]] = {}  # (origin, seq) -> peer -> t
        self._nursery: trio.Nursery | None = None

    def _make_peer(self, index: int) -> SimPeer:
        seed = hashlib.sha256(f"duckpeer sim {self.settings.seed} {index}".encode()).digest()
        key_pair = create_new_key_pair(seed)  # the same peer ids (and links) every run
        peer_id = str(ID.from_pubkey(key_pair.public_key))
        store = MemStore(lambda: int(trio.current_time() * 1000) + 1_700_000_000_000)
        peer = SimPeer(index, key_pair, peer_id, store, _address(index, 0))
        store.on_append = lambda origin, seq: self._appended(peer, origin, seq)
        return peer

    def _appended(self, peer: SimPeer, origin: str, seq: int) -> None:
        watch = self.reached.get((origin, seq))
        if watch is not None:
            watch.setdefault(peer.peer_id, trio.current_time())

    def config(self, bootstrap_from: Sequence[SimPeer]) -> Config:
        """The daemon configuration of a peer joining through ``bootstrap_from``."""
        addrs = tuple(f"{p.addr}/p2p/{p.peer_id}" for p in bootstrap_from)
        return dataclasses.replace(
            Config(data_dir=Path("/nonexistent/sim")),
            bootstrap=addrs,
            bootstrap_snapshot=False,  # no snapshots in the simulator: catch up by delta
            **self.settings.config,
        )

    # -- life cycle --------------------------------------------------------------------------

    def online(self) -> list[SimPeer]:
        """Peers whose services run."""
        return [p for p in self.peers if p.online]

    async def start(
        self, nursery: trio.Nursery, peers: Sequence[SimPeer] | None = None, spread: float = 0.0
    ) -> None:
        """Start ``peers`` (default all), each bootstrapping from a peer already online,
        their starts spread evenly over ``spread`` seconds."""
        self._nursery = nursery
        if not self.fabric.serving:
            nursery.start_soon(self.fabric.serve)
            await trio.lowlevel.checkpoint()
        chosen = list(self.peers if peers is None else peers)
        for i, peer in enumerate(chosen):
            seeds = self._seeds(peer)
            await nursery.start(self._run, peer, seeds)
            if spread and i < len(chosen) - 1:
                await trio.sleep(spread / len(chosen))

    def _seeds(self, peer: SimPeer) -> list[SimPeer]:
        """Up to :data:`SEEDS` random online peers to bootstrap from (as an operator
        lists a few bootstrap addresses; one seed for a thousand joiners would sit at
        its connection cap), or the first other peer when none is online yet."""
        online = [p for p in self.online() if p is not peer]
        if not online:
            return [p for p in self.peers if p is not peer][:1]
        return self.rng.sample(online, min(SEEDS, len(online)))

    async def restart(self, peer: SimPeer, new_address: bool = False) -> None:
        """Start a stopped peer again (with its store), maybe on a new address."""
        assert self._nursery is not None and not peer.online
        if new_address:
            peer.restarts += 1
            peer.addr = _address(peer.index, peer.restarts)
        await self._nursery.start(self._run, peer, self._seeds(peer))

    async def _run(
        self, peer: SimPeer, seeds: Sequence[SimPeer], *, task_status: trio.TaskStatus[None]
    ) -> None:
        node = SimNode(self.config(seeds), peer.store, peer.peer_id, signer(peer.key_pair))  # type: ignore[arg-type]
        node.apply_cost = self.settings.apply_cost
        net = MemNetwork(self.fabric, peer.peer_id, peer.addr)
        net.on_drop = lambda: node.metrics.inc("gossip_dropped")
        peer.stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                peer.scope = scope
                async with net.running():
                    node.network = net
                    net.set_validator(GossipCheck(node))
                    async with trio.open_nursery() as services:
                        for service in SERVICES:
                            await services.start(service, node)
                        peer.node = node
                        task_status.started()
        finally:
            peer.node, peer.scope = None, None
            peer.stopped.set()

    async def stop(self, peer: SimPeer, graceful: bool = True) -> None:
        """Stop a peer: with a leaving announce, or at once as a crash would."""
        if peer.node is None or peer.scope is None:
            return
        if graceful:
            await gossip.announce_leaving(peer.node)
        peer.scope.cancel()
        await peer.stopped.wait()

    # -- writes and measurements --------------------------------------------------------------

    async def write(self, peer: SimPeer, name: str) -> tuple[str, int]:
        """Commit one small changeset on ``peer``; watch where it arrives and when."""
        assert peer.node is not None
        seq = peer.store.vector().get(peer.peer_id, 0) + 1
        self.reached[(peer.peer_id, seq)] = {}
        await peer.node.commit_local(lambda _store: [one_model(name)])
        return peer.peer_id, seq

    def holders(self, change: tuple[str, int]) -> set[str]:
        """Online peers that hold ``change``."""
        origin, seq = change
        return {p.peer_id for p in self.online() if p.store.vector().get(origin, 0) >= seq}

    async def wait_everywhere(self, change: tuple[str, int], timeout: float) -> bool:
        """Wait until every online peer holds ``change``; False at the timeout."""
        with trio.move_on_after(timeout):
            while len(self.holders(change)) < len(self.online()):
                await trio.sleep(0.05)
            return True
        return False

    def converged(self) -> bool:
        """Every online peer at the same database CID."""
        return len({p.store.db_cid() for p in self.online()}) <= 1

    async def wait_converged(self, timeout: float, poll: float = 0.25) -> float | None:
        """Seconds until :meth:`converged` (polled), None at the timeout."""
        start = trio.current_time()
        with trio.move_on_after(timeout):
            while not self.converged():
                await trio.sleep(poll)
            return trio.current_time() - start
        return None
