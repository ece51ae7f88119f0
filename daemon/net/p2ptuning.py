"""Per-message costs py-libp2p pays that a daemon need not (found with py-spy and a
trio instrument timing task steps).

Two of them, both on every pubsub RPC a daemon receives:

* py-libp2p's Yamux sends a WINDOW_UPDATE frame (one more Noise-encrypted write) for
  the bytes of every read unless ``PY_YAMUX_RELEASE_ON_READ`` is off; and even with it
  off, its "partial slack" rule still sent one for every other small read (and
  over-credited the window by the bytes read). :func:`tune_yamux` gives the receive
  window back in go-yamux's way: once half of it is consumed, with py-libp2p's
  window auto-tuning kept.
* Every RPC carries the sender's signed peer record, and py-libp2p verifies its Ed25519
  signature each time. A record whose bytes equal the one already verified for that
  peer gives the same answer, so it is verified again only after ``RECHECK_S`` (which
  also refreshes its addresses' TTL in the peerstore, 2 h in py-libp2p).

And three more. Yamux pings every connection every 30 s to measure its RTT (only
window auto-tuning uses it); now every :data:`RTT_EVERY_S`. It also wakes every 30 s
per connection to sweep the bookkeeping of closed streams (0.4 wake-ups a second with
12 links, of an idle daemon's 2.5-2.9); now every :data:`SWEEP_EVERY_S`. py-libp2p's
auto-connector dials peers from its peerstore every 30 s towards the midpoint of the
connection watermarks (32 for ours), whatever ``min_connections`` says; our connection
manager trims back to ``connections_max``, so two managers fought: about one new
connection (Noise, Yamux, identify, a gossipsub stream, a query link) per daemon per
minute in an idle 20-daemon cluster. :func:`no_auto_connect` leaves connections to ours.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

RECHECK_S = 600.0
RTT_EVERY_S = 120.0
SWEEP_EVERY_S = 300.0
MAX_REMEMBERED = 4096
YAMUX_ENV = {"PY_YAMUX_RELEASE_ON_READ": "0"}

Consume = Callable[[Any, Any, Any], bool]


_py_libp2p_release: Any = None  # YamuxStream's own window release, kept on first tuning
_grow_divisor = 2  # py-libp2p's PY_YAMUX_* tuning, read once (it calls getenv per read)
_grow_always = False


def tune_yamux() -> None:
    """Window updates in halves of the window, RTT pings every :data:`RTT_EVERY_S`. An
    operator's ``PY_YAMUX_RELEASE_ON_READ=1`` wins: py-libp2p's own release then runs."""
    global _py_libp2p_release, _grow_divisor, _grow_always
    from libp2p.stream_muxer.yamux import yamux

    for name, value in YAMUX_ENV.items():
        os.environ.setdefault(name, value)
    yamux.RTT_MEASURE_INTERVAL = RTT_EVERY_S  # type: ignore[misc]
    yamux._STALE_STREAM_SWEEP_INTERVAL = SWEEP_EVERY_S  # type: ignore[misc]
    _grow_divisor = yamux._yamux_batch_threshold_divisor()
    _grow_always = yamux._yamux_disable_hysteresis()
    stream = yamux.YamuxStream
    if _py_libp2p_release is None:
        _py_libp2p_release = stream._auto_tune_and_send_window_update
    release_on_read = yamux._yamux_release_on_read()
    stream._auto_tune_and_send_window_update = (  # type: ignore[method-assign]
        _py_libp2p_release if release_on_read else _release_in_halves
    )


async def _release_in_halves(stream: Any, *, bytes_read: int = 0) -> None:
    """go-yamux's ``sendWindowUpdate``: credit the sender once the bytes read since the
    last update reach half the (auto-tuned) window; ``bytes_read`` is implied by the
    window and the buffer."""
    increment = 0
    async with stream.window_lock:
        buffered = len(stream.conn.stream_buffers.get(stream.stream_id, b""))
        unused = stream.target_recv_window - (stream.recv_window + buffered)
        threshold = 0 if _grow_always else stream.target_recv_window // _grow_divisor
        if unused > 0 and unused >= threshold:
            increment = stream._grow_to_delta(buffered) + stream._apply_autotune_epoch(buffered)
            stream._pending_recv_release = 0
    if increment > 0:
        await stream.send_window_update(increment, skip_lock=True)


class VerifiedRecords:
    """``maybe_consume_signed_record`` that skips a record it has already verified."""

    def __init__(
        self,
        consume: Consume,
        recheck_s: float = RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consume = consume
        self._recheck_s = recheck_s
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self.verified = 0
        self.skipped = 0

    def __call__(self, msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        key = peer_id.to_bytes() + b"\0" + msg.senderRecord
        now = self._clock()
        when = self._seen.get(key)
        if when is not None and now - when < self._recheck_s:
            self.skipped += 1
            return True
        self.verified += 1
        ok = self._consume(msg, host, peer_id)
        if ok:
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > MAX_REMEMBERED:
                self._seen.popitem(last=False)
        return ok


async def _no_dials() -> None:
    """py-libp2p's ``AutoConnector.maybe_connect``, switched off."""


def no_auto_connect(swarm: Any) -> None:
    """Stop py-libp2p's auto-connector from dialing (its timer and disconnect hook
    still call ``maybe_connect``; it now returns at once)."""
    swarm.auto_connector.maybe_connect = _no_dials


_installed: VerifiedRecords | None = None


def remember_verified_records() -> VerifiedRecords:
    """Install :class:`VerifiedRecords` where py-libp2p's pubsub calls the check (once)."""
    global _installed
    if _installed is None:
        from libp2p.pubsub import gossipsub, pubsub, utils

        _installed = VerifiedRecords(utils.maybe_consume_signed_record)
        pubsub.maybe_consume_signed_record = _installed  # type: ignore[assignment]
        gossipsub.maybe_consume_signed_record = _installed  # type: ignore[assignment]
    return _installed
