"""The gossip validator: every message is checked before it is delivered or relayed.

It runs inside the pubsub layer (py-libp2p's topic validator, or the in-memory
transport's), once per distinct message, on every peer the message reaches. A message
it refuses is not handed to us and not forwarded, so junk stops at the first honest
peer instead of reaching (and being counted by) everyone.

Refused: over the per-sender rate, from an untrusted sender, undecodable or over the
size limit, not a gossip message type, or an announce for another peer. Each refusal
adds to the sender's junk score (rate-limited messages a tenth as much); the score
decays with a half-life of :data:`HALF_LIFE_S`, and a sender reaching
:data:`JUNK_LIMIT` is banned for ``gossip_ban_seconds``: its gossip is dropped, as
sender or relay, and its connections closed (logged with the peer, counted as
``gossip_banned_peers``). The sender is the peer that signed the message, so an
honest relay of someone else's junk is never punished for it.

Semantic checks of feature messages (a query fragment's SQL, say) stay with the
feature's handler.
"""

from __future__ import annotations

import math

import structlog
import trio

from daemon.node import Node
from protocol import messages
from protocol.errors import RemoteProtocolError
from protocol.messages import Announce, QueryFragment

log = structlog.get_logger("gossip")

JUNK_LIMIT = 20.0
HALF_LIFE_S = 60.0
RATE_WEIGHT = 0.1
GOSSIP_TYPES = (Announce, QueryFragment)


class GossipCheck:
    """A validator bound to one node (``check(sender, forwarder, data) -> bool``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.junk: dict[str, tuple[float, float]] = {}  # sender -> (score, at)

    def __call__(self, sender: str, forwarder: str, data: bytes) -> bool:
        node = self.node
        if sender == node.peer_id:
            return True
        if sender in node.banned:
            node.metrics.inc("gossip_banned")
            return False
        if not node.gossip_limiter.allow(sender):
            node.metrics.inc("gossip_rate_limited")
            self.score(sender, RATE_WEIGHT, "over the gossip rate")
            return False
        if not node.config.trusts(sender):
            node.metrics.inc("gossip_untrusted")
            log.debug("gossip from untrusted peer refused", peer=sender)
            return False
        problem = self.problem(sender, data)
        if problem is not None:
            self.score(sender, 1.0, problem)
            return False
        return True

    def problem(self, sender: str, data: bytes) -> str | None:
        """Why this message must not be delivered or relayed (counted), or None."""
        node = self.node
        try:
            message = messages.decode(data, node.config.max_gossip_bytes)
        except RemoteProtocolError as exc:
            node.metrics.inc("gossip_malformed")
            return f"malformed: {exc}"
        if not isinstance(message, GOSSIP_TYPES):
            node.metrics.inc("gossip_unexpected")
            return f"{type(message).__name__} is not a gossip message"
        if isinstance(message, Announce) and message.peer_id != sender:
            node.metrics.inc("gossip_spoofed")
            return f"announce for another peer ({message.peer_id[:64]})"
        return None

    def score(self, sender: str, weight: float, why: str) -> None:
        """Add to ``sender``'s junk score; ban it at the limit."""
        t = trio.current_time()
        score, at = self.junk.get(sender, (0.0, t))
        before = score * math.pow(0.5, (t - at) / HALF_LIFE_S)
        score = before + weight
        self.junk[sender] = (score, t)
        if weight >= 1.0 and math.floor(before) < 1 <= score:  # first junk in a while
            log.warning("gossip refused", peer=sender, why=why)
        else:
            log.debug("gossip refused", peer=sender, why=why)
        if score >= JUNK_LIMIT:
            self.ban(sender, why)
        if len(self.junk) > 10_000:  # forget senders whose score has decayed away
            self.junk = {k: v for k, v in self.junk.items() if t - v[1] < 8 * HALF_LIFE_S}

    def ban(self, sender: str, why: str) -> None:
        """Cut ``sender`` off for ``gossip_ban_seconds``."""
        node = self.node
        node.banned[sender] = trio.current_time() + node.config.gossip_ban_seconds
        self.junk.pop(sender, None)
        node.metrics.inc("gossip_banned_peers")
        if node.connections is not None:  # its links are closed on the next tick: now
            node.connections.poke()
        log.warning(
            "peer banned for junk gossip",
            peer=sender,
            last=why,
            seconds=node.config.gossip_ban_seconds,
        )
        if node.network is not None:
            node.network.ban(sender)


def lift_bans(node: Node) -> None:
    """End the bans whose time is up."""
    t = trio.current_time()
    for peer, until in list(node.banned.items()):
        if until <= t:
            del node.banned[peer]
            if node.network is not None:
                node.network.unban(peer)
            log.info("gossip ban lifted", peer=peer)
