"""Per-message costs py-libp2p pays that a daemon need not (found with py-spy).

Two of them, both on every pubsub RPC a daemon receives:

* py-libp2p's Yamux sends a WINDOW_UPDATE frame (one more Noise-encrypted write) for
  the bytes of every read unless ``PY_YAMUX_RELEASE_ON_READ`` is off; with it off, the
  receive window is given back in go-yamux's way, once half of it is consumed.
* Every RPC carries the sender's signed peer record, and py-libp2p verifies its Ed25519
  signature each time. A record whose bytes equal the one already verified for that
  peer gives the same answer, so it is verified again only after ``RECHECK_S`` (which
  also refreshes its addresses' TTL in the peerstore, 2 h in py-libp2p).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

RECHECK_S = 600.0
MAX_REMEMBERED = 4096
YAMUX_ENV = {"PY_YAMUX_RELEASE_ON_READ": "0"}

Consume = Callable[[Any, Any, Any], bool]


def tune_yamux() -> None:
    """Window updates in halves of the window (an operator's own setting wins)."""
    for name, value in YAMUX_ENV.items():
        os.environ.setdefault(name, value)


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
