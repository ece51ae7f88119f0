"""Changeset signatures: each origin signs every block with its libp2p Ed25519 key.

A block is signed over its unsigned bytes, which include ``prev``, the CID of the
origin's previous block; so one valid signature on a head vouches for the whole chain
before it. A receiver checks the signature against the public key inside the
origin's peer id (12D3KooW… ids inline the key), so nobody can write in another
peer's name, and a tampered or re-linked block fails.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from libp2p.crypto.keys import KeyPair, PublicKey
from libp2p.peer.id import ID

from protocol.changeset import Changeset, signed_payload

Signer = Callable[[bytes], bytes]


def signer(key_pair: KeyPair) -> Signer:
    """Sign bytes with our private key."""
    return key_pair.private_key.sign  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1024)
def _public_key(origin: str) -> PublicKey | None:
    try:
        return ID.from_base58(origin).extract_public_key()  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError):
        return None


def signature_problem(cs: Changeset, block: bytes) -> str | None:
    """None when ``block`` carries a valid signature by ``cs.origin``; else what is wrong."""
    signed = signed_payload(block)
    if signed is None:
        return "changeset is not signed"
    key = _public_key(cs.origin)
    if key is None:
        return f"origin {cs.origin!r} is not a peer id with an inline public key"
    payload, signature = signed
    try:
        valid = key.verify(payload, signature)
    except (ValueError, TypeError):
        valid = False
    return None if valid else "signature does not match the origin's key"
