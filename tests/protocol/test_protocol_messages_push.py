"""Announce may push the sender's newest small changesets; the total is bounded."""

from __future__ import annotations

import pytest

from protocol import messages
from protocol.errors import RemoteProtocolError
from protocol.messages import MAX_PUSHED_BLOCKS, MAX_PUSHED_BYTES, Announce


def test_pushed_blocks_round_trip() -> None:
    announce = Announce("peer", "bafy", {"peer": 2}, blocks=(b"one", b"two"))
    assert messages.decode(messages.encode(announce)) == announce


def test_pushed_blocks_over_the_limit_are_refused() -> None:
    announce = Announce("peer", "bafy", {"peer": 1}, blocks=(b"x" * (MAX_PUSHED_BYTES + 1),))
    with pytest.raises(RemoteProtocolError, match=r"announce\.blocks"):
        messages.decode(messages.encode(announce))


def test_pushed_blocks_must_be_bytes() -> None:
    raw = messages.encode(Announce("peer", "bafy", {}, blocks=(b"ok",))).replace(
        b"\xc4\x02ok", b"\xa2ok"
    )
    with pytest.raises(RemoteProtocolError):
        messages.decode(raw)


def test_more_than_64_pushed_blocks_are_refused() -> None:
    blocks = tuple(b"x" for _ in range(MAX_PUSHED_BLOCKS + 1))
    with pytest.raises(RemoteProtocolError):
        messages.decode(messages.encode(Announce("p", "bafy", {"p": 1}, blocks=blocks)))
