"""Signed blocks: the unsigned bytes plus a 64-byte signature as a 7th element."""

from __future__ import annotations

import pytest

from protocol import changeset
from protocol.changeset import Changeset, TableChanges, sign_block, signed_payload
from protocol.errors import LocalProtocolError

ROWS = TableChanges("models", ["model_id"], bytes(1), [None], [1], [["m"]])
SIG = bytes(range(64))


def test_signed_block_decodes_and_yields_what_was_signed() -> None:
    unsigned = changeset.encode(Changeset("origin", 1, 5, None, [ROWS]))
    block = sign_block(unsigned, SIG)
    decoded = changeset.decode(block)
    assert decoded.signature == SIG and decoded.origin == "origin"
    assert signed_payload(block) == (unsigned, SIG)
    assert changeset.encode(decoded) == block  # a decoded signed block re-encodes the same
    assert signed_payload(unsigned) is None


def test_only_unsigned_blocks_and_64_byte_signatures_can_be_signed() -> None:
    unsigned = changeset.encode(Changeset("origin", 1, 5, None, [ROWS]))
    with pytest.raises(LocalProtocolError):
        sign_block(unsigned, b"short")
    with pytest.raises(LocalProtocolError):
        sign_block(sign_block(unsigned, SIG), SIG)
