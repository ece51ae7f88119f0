"""Cache sharing over ``/duckpeer/cache/1``: ask a peer at the same CID for a result.

On a local miss, :func:`fetch` asks connected, trusted peers whose last announce named
the same database CID (least loaded first, at most :data:`MAX_ASKED`), each within
``cache_share_timeout``; a peer that timed out or answered garbage is left alone for
:data:`QUIET_SECONDS`. An answer is accepted only for the exact fingerprint and CID
asked (the request names both; the server answers from that key only) and only from a
trusted peer: a trusted peer could hand us a wrong result, exactly as it could hand us
a wrong changeset, which is why ``trusted_peers`` matters (README, security).

The server (:func:`handle_cache_stream`) answers from its cache without running
anything: an entry at any CID it still holds, so a peer that has not caught up yet can
still be answered. Untrusted peers are refused; each peer is rate limited.
"""

from __future__ import annotations

import structlog
import trio

from daemon.net.framed import FramedStream, StreamClosedError
from daemon.net.network import Libp2pByteStream, NetworkError
from daemon.node import Node
from daemon.query.cachestate import CachedResult, cache_state, encoded_size
from daemon.query.resultcache import CacheKey
from protocol import cachemsg
from protocol.cachemsg import CacheFound, CacheGet, CacheMissing
from protocol.errors import ProtocolError, RemoteProtocolError

log = structlog.get_logger("cacheshare")

PROTOCOL = "/duckpeer/cache/1"
MAX_REQUEST = 1024
MAX_ASKED = 2
QUIET_SECONDS = 30.0  # a peer that timed out or answered garbage is not asked for this long


# -- server --------------------------------------------------------------------------------


async def handle_cache_stream(node: Node, stream: Libp2pByteStream) -> None:
    """Answer one cache request. Never raises: failures are logged and counted."""
    if not node.config.trusts(stream.peer_id) or not node.config.cache_share:
        node.metrics.inc("cache_share_refused")
        await stream.reset()
        return
    framed = FramedStream(stream, MAX_REQUEST, node.config.cache_share_timeout)
    try:
        frame = await framed.receive()
        if frame is None:
            raise RemoteProtocolError("stream closed before a request")
        request = cachemsg.decode(frame, MAX_REQUEST)
        if not isinstance(request, CacheGet):
            raise RemoteProtocolError(f"expected get, got {type(request).__name__}")
        answer = _answer(node, stream.peer_id, request)
        framed.max_frame = cachemsg.MAX_RESULT_BYTES
        await framed.send(cachemsg.encode(answer))
    except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
        node.metrics.inc("cache_share_errors")
        log.warning(
            "cache request failed", peer=stream.peer_id, error=f"{type(exc).__name__}: {exc}"
        )
        await stream.reset()
    finally:
        await framed.aclose()


def _answer(node: Node, peer: str, request: CacheGet) -> CacheFound | CacheMissing:
    state = cache_state(node)
    if not state.share_limiter.allow(peer):
        node.metrics.inc("cache_share_rate_limited")
        return CacheMissing("rate limited")
    entry = state.cache.peek(CacheKey(request.fingerprint, request.db_cid, request.max_rows))
    if entry is None:
        return CacheMissing("not cached")
    if entry.size > node.config.cache_share_max_bytes:
        return CacheMissing("too large to share")
    state.served += 1
    node.metrics.inc("cache_share_served")
    value = entry.value
    return CacheFound(
        tuple(value.columns), tuple(tuple(r) for r in value.rows), entry.cost_ms, value.rewrites
    )


# -- client --------------------------------------------------------------------------------


async def fetch(node: Node, key: CacheKey) -> CachedResult | None:
    """A result for ``key`` from a peer at the same CID (cached locally too), or None."""
    if not node.config.cache_share or node.network is None:
        return None
    quiet = cache_state(node).quiet_until
    now = trio.current_time()
    for peer in [p for p in same_cid_peers(node, key.db_cid) if quiet.get(p, 0.0) <= now][
        :MAX_ASKED
    ]:
        found = await ask(node, peer, key)
        if found is not None:
            return _adopt(node, key, found)
    return None


def same_cid_peers(node: Node, db_cid: str) -> list[str]:
    """Connected, trusted peers whose last announce named ``db_cid``, least loaded first."""
    connected = set(node.connected_peers())
    peers = [
        s for p, s in node.peers.items()
        if p in connected and s.db_cid == db_cid and node.config.trusts(p)
    ]  # fmt: skip
    return [s.peer_id for s in sorted(peers, key=lambda s: s.load)]


async def ask(node: Node, peer: str, key: CacheKey) -> CacheFound | None:
    """One request to one peer within ``cache_share_timeout``; None on a miss or any
    failure (logged, counted)."""
    assert node.network is not None
    stream: Libp2pByteStream | None = None
    answer: cachemsg.CacheMessage | None = None
    failed = False
    with trio.move_on_after(node.config.cache_share_timeout) as scope:
        try:
            stream = await node.network.open_stream(peer, PROTOCOL)
            answer = await _exchange(node, stream, key)
        except NetworkError as exc:
            log.debug("cache ask failed", peer=peer, error=str(exc))
        except (ProtocolError, StreamClosedError, trio.TooSlowError) as exc:
            failed = True
            node.metrics.inc("cache_share_errors")
            log.warning("cache answer refused", peer=peer, error=f"{type(exc).__name__}: {exc}")
    if failed or scope.cancelled_caught:  # a broken or silent peer is not asked for a while
        cache_state(node).quiet_until[peer] = trio.current_time() + QUIET_SECONDS
    if stream is not None:  # outside the (maybe expired) deadline: close or abort it
        with trio.move_on_after(1.0):
            await (stream.reset() if failed or scope.cancelled_caught else stream.close())
    return _count(node, answer)


async def _exchange(
    node: Node, stream: Libp2pByteStream, key: CacheKey
) -> cachemsg.CacheMessage | None:
    limit = node.config.cache_share_max_bytes + 1024
    framed = FramedStream(stream, limit, node.config.cache_share_timeout)
    await framed.send(cachemsg.encode(CacheGet(*key)))
    frame = await framed.receive()
    return cachemsg.decode(frame, limit) if frame is not None else None


def _count(node: Node, answer: cachemsg.CacheMessage | None) -> CacheFound | None:
    state = cache_state(node)
    if isinstance(answer, CacheFound):
        state.peer_hits += 1
        node.metrics.inc("cache_peer_hits")
        return answer
    state.peer_misses += 1
    node.metrics.inc("cache_peer_misses")
    return None


def _adopt(node: Node, key: CacheKey, found: CacheFound) -> CachedResult:
    columns, rows = list(found.columns), [list(r) for r in found.rows]
    value = CachedResult(columns, rows, "", found.rewrites)  # "": names of the peer's spelling
    cache_state(node).cache.put(key, value, encoded_size(columns, rows), found.cost_ms)
    return value


# -- service -------------------------------------------------------------------------------


async def serve(
    node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``/duckpeer/cache/1`` (the handler runs per stream; nothing else to run)."""
    assert node.network is not None
    node.network.set_stream_handler(PROTOCOL, lambda s: handle_cache_stream(node, s))
    task_status.started()
