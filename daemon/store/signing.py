"""Changeset signatures: each origin signs every block with its libp2p Ed25519 key.

A block is signed over its unsigned bytes, which include ``prev``, the CID of the
origin's previous block; so one valid signature on a head vouches for the whole chain
before it. A receiver checks the signature against the public key inside the
origin's peer id (12D3KooW… ids inline the key), so nobody can write in another
peer's name, and a tampered or re-linked block fails.

Signing and checking go through OpenSSL (the ``cryptography`` package) rather than
py-libp2p's PyNaCl keys: Ed25519 signatures are deterministic, so the bytes are the
same, and OpenSSL hashes a multi-megabyte columnar block about four times faster.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.peer.id import ID

from protocol.changeset import Changeset, signed_payload

Signer = Callable[[bytes], bytes]


def signer(key_pair: KeyPair) -> Signer:
    """Sign bytes with our private key."""
    if key_pair.private_key.get_type() != KeyType.Ed25519:
        return key_pair.private_key.sign  # type: ignore[no-any-return]
    seed = key_pair.private_key.to_bytes()[:32]
    return Ed25519PrivateKey.from_private_bytes(seed).sign


@functools.lru_cache(maxsize=1024)
def _public_key(origin: str) -> Ed25519PublicKey | None:
    try:
        key = ID.from_base58(origin).extract_public_key()
        if key is None or key.get_type() != KeyType.Ed25519:
            return None
        return Ed25519PublicKey.from_public_bytes(key.to_bytes())
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
        key.verify(signature, payload)
    except InvalidSignature:
        return "signature does not match the origin's key"
    return None
