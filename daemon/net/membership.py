"""Who is in the cluster: members, their addresses and state, and who has left.

A member is a peer we have evidence of: its own (signed) announce, a sync exchange,
an open connection, or another member's list (``/duckpeer/members/1``). Evidence
refreshes ``seen_at`` (trio clock, so wall clocks hours apart do not matter) and
``last_seen`` (wall clock, for people). A member leaves ``Node.peers`` for
``Node.departed`` (kept an hour, with its last-seen time and why) when nothing was
heard of it for its timeout: at least ``member_timeout``, and three of the heartbeat
periods it announced (the period grows with the cluster), unless it is *suspect*:
then ``member_timeout`` alone. A member becomes suspect when

- it says it is leaving (its announce on shutdown);
- we lost our connection to it and could not dial it again;
- another member reports it ``gone`` (same reason) and we have no newer evidence of
  our own. A member that is alive hears that report too and announces at once, which
  clears the suspicion everywhere.

Any evidence from the member itself clears a suspicion; a departed member that shows
up again (on any address) is a member again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

import structlog
import trio

from daemon.net.adapter import NetworkError, PeerStream
from daemon.net.framed import FramedStream, StreamClosedError
from daemon.node import Node, PeerState
from protocol import membership
from protocol.errors import ProtocolError, RemoteProtocolError
from protocol.membership import Member, MembersBye, MembersQuery, MembersReply

log = structlog.get_logger("membership")

MAX_MEMBERS = 10_000  # beyond this, new members are refused (a flood of fresh keys)
DEPARTED_KEEP_S = 3600.0
MAX_DEPARTED = 1024
GONE_GRACE_S = 5.0  # our own evidence this recent outweighs another peer's "gone"
ASK_TIMEOUT = 5.0
SAMPLE = 64  # members sent in one reply


def now() -> float:
    """The clock timeouts are measured on (trio's: virtual in the simulator)."""
    return trio.current_time()


def heard(node: Node, peer_id: str, addrs: Iterable[str] = (), period: float = 0.0) -> PeerState:
    """Fresh evidence of ``peer_id``, with its addresses if we learned them."""
    state = node.peers.get(peer_id)
    if state is None:
        state = node.departed.pop(peer_id, None) or PeerState(peer_id)
        if state.left:
            log.info("member back", peer=peer_id, was=state.left)
            state.left = ""
        node.peers[peer_id] = state
    addrs = tuple(addrs)
    if addrs:
        state.addrs = addrs
    if period:
        state.period = period
    state.seen_at = now()
    state.last_seen = time.time()
    state.suspect = ""
    return state


def suspect(node: Node, peer_id: str, why: str) -> None:
    """``peer_id`` may be gone: let it time out after ``member_timeout``."""
    state = node.peers.get(peer_id)
    if state is not None and not state.suspect:
        state.suspect = why
        node.metrics.inc("members_suspected")
        log.info("member suspect", peer=peer_id, why=why)


def touch(node: Node, peer_id: str) -> None:
    """Evidence of a peer we may or may not know yet (a sync, a connection)."""
    if peer_id in node.peers or len(node.peers) < MAX_MEMBERS:
        heard(node, peer_id)


def admit(node: Node, peer_id: str) -> bool:
    """False when the table is full and ``peer_id`` is not in it (counted)."""
    if peer_id in node.peers or len(node.peers) < MAX_MEMBERS:
        return True
    node.metrics.inc("members_refused")
    return False


def depart(node: Node, peer_id: str, why: str) -> None:
    """Move a member to ``departed``."""
    state = node.peers.pop(peer_id, None)
    if state is None:
        return
    state.left = why
    node.departed[peer_id] = state
    node.metrics.inc("members_departed")
    log.info("member left", peer=peer_id, why=why)
    if len(node.departed) > MAX_DEPARTED:
        oldest = min(node.departed.values(), key=lambda s: s.seen_at)
        del node.departed[oldest.peer_id]


def timeout_of(node: Node, state: PeerState) -> float:
    """How long a member may stay silent before it counts as gone."""
    if state.suspect:
        return node.config.member_timeout
    return max(node.config.member_timeout, 3 * (state.period or node.announce_period))


def refresh(node: Node, connected: set[str]) -> None:
    """A member we hold a connection to is alive."""
    t, wall = now(), time.time()
    for peer_id in connected:
        state = node.peers.get(peer_id)
        if state is not None:
            state.seen_at, state.last_seen = t, wall


def expire(node: Node, connected: set[str]) -> None:
    """Members (not connected) whose timeout passed depart; old departures are
    forgotten."""
    t = now()
    for state in list(node.peers.values()):
        if state.peer_id not in connected and t - state.seen_at > timeout_of(node, state):
            depart(node, state.peer_id, "timed out")
    for state in list(node.departed.values()):
        if t - state.seen_at > DEPARTED_KEEP_S:
            del node.departed[state.peer_id]


def on_gone(node: Node, reporter: str, gone: Iterable[str], connected: set[str]) -> None:
    """``reporter`` says it lost these peers. We refute a report about ourselves; for
    others we believe it unless we have our own newer evidence."""
    t = now()
    for peer_id in gone:
        if peer_id == node.peer_id:
            node.metrics.inc("members_refuted")
            node.announce_soon()
            continue
        state = node.peers.get(peer_id)
        if state is None or peer_id in connected or t - state.seen_at < GONE_GRACE_S:
            continue
        suspect(node, peer_id, f"unreachable (reported by {reporter})")


def alive_sample(node: Node, exclude: str, limit: int = SAMPLE) -> list[Member]:
    """A random sample of members with addresses, for a ``members`` reply."""
    t = now()
    candidates = [s for s in node.peers.values() if s.addrs and s.peer_id != exclude]
    chosen = random.sample(candidates, min(limit, len(candidates)))
    return [
        Member(s.peer_id, s.addrs[: membership.MAX_ADDRS], _age_ms(t - s.seen_at)) for s in chosen
    ]


def _age_ms(seconds: float) -> int:
    return max(0, min(membership.MAX_AGE_MS, int(seconds * 1000)))


def learn(node: Node, members: Iterable[Member]) -> int:
    """Take in members another peer listed; returns how many were new to us."""
    t, new = now(), 0
    for m in members:
        if m.peer_id == node.peer_id or not m.addrs or not admit(node, m.peer_id):
            continue
        seen = t - m.age_ms / 1000
        known = node.peers.get(m.peer_id) or node.departed.get(m.peer_id)
        if known is not None and known.seen_at >= seen:
            continue  # what we know is as fresh
        if known is None and m.age_ms / 1000 > node.config.member_timeout:
            continue  # stale news of a stranger
        why = known.suspect if known is not None else ""
        state = heard(node, m.peer_id, m.addrs)
        state.seen_at, state.suspect = seen, why  # second-hand news clears no suspicion
        state.last_seen = time.time() - m.age_ms / 1000
        new += known is None
    return new


# -- /duckpeer/members/1 ----------------------------------------------------------------


async def handle_members_stream(node: Node, stream: PeerStream) -> None:
    """Answer one members query. Never raises."""
    if not node.config.trusts(stream.peer_id):
        node.metrics.inc("members_untrusted")
        await stream.reset()
        return
    framed = FramedStream(stream, membership.MAX_MEMBERS_MESSAGE, ASK_TIMEOUT)
    try:
        frame = await framed.receive()
        if frame is None:
            raise RemoteProtocolError("stream closed before a members query")
        query = membership.decode(frame)
        if isinstance(query, MembersBye):
            node.parting.add(stream.peer_id)  # the connection manager will not probe it
            return
        if not isinstance(query, MembersQuery):
            raise RemoteProtocolError(f"expected members_q, got {type(query).__name__}")
        addrs = [a for a in query.addrs if a.endswith(f"/p2p/{stream.peer_id}")]
        if addrs and admit(node, stream.peer_id):
            heard(node, stream.peer_id, addrs)  # so we can pass the newcomer on
        sample = alive_sample(node, stream.peer_id, min(query.max, SAMPLE))
        await framed.send(membership.encode(MembersReply(tuple(sample))))
        node.metrics.inc("members_served")
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("members_malformed")
        log.warning(
            "members query failed", peer=stream.peer_id, error=f"{type(exc).__name__}: {exc}"
        )
        await stream.reset()
    finally:
        await framed.aclose()


async def ask_members(node: Node, peer: str) -> list[Member]:
    """Ask ``peer`` for members it knows; [] on any failure (logged, counted)."""
    assert node.network is not None
    try:
        stream = await node.network.open_stream(peer, membership.PROTOCOL)
    except NetworkError as exc:
        log.debug("members ask failed", peer=peer, error=str(exc))
        return []
    framed = FramedStream(stream, membership.MAX_MEMBERS_MESSAGE, ASK_TIMEOUT)
    try:
        mine = tuple(node.network.listen_addrs()[: membership.MAX_ADDRS])
        await framed.send(membership.encode(MembersQuery(SAMPLE, mine)))
        frame = await framed.receive()
        if frame is None:
            raise RemoteProtocolError("stream closed before a members reply")
        reply = membership.decode(frame)
        if not isinstance(reply, MembersReply):
            raise RemoteProtocolError(f"expected members, got {type(reply).__name__}")
        return list(reply.members)
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("members_ask_errors")
        log.warning("members reply refused", peer=peer, error=f"{type(exc).__name__}: {exc}")
        await stream.reset()
        return []
    finally:
        await framed.aclose()


async def say_bye(node: Node, peer: str) -> None:
    """Tell ``peer`` we are about to close our connection on purpose (best effort)."""
    assert node.network is not None
    with trio.move_on_after(ASK_TIMEOUT):
        try:
            stream = await node.network.open_stream(peer, membership.PROTOCOL)
        except NetworkError:
            return
        framed = FramedStream(stream, membership.MAX_MEMBERS_MESSAGE, ASK_TIMEOUT)
        try:
            await framed.send(membership.encode(MembersBye()))
            await framed.receive()  # its end of the stream: the bye arrived
        except (ProtocolError, StreamClosedError, trio.TooSlowError):
            pass
        finally:
            await framed.aclose()


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Register the members protocol handler; the host serves it from then on."""
    assert node.network is not None
    node.network.set_stream_handler(membership.PROTOCOL, lambda s: handle_members_stream(node, s))
    task_status.started()
