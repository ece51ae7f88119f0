"""Content identifiers: changeset blocks (raw) and database states (dag-cbor)."""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

import dag_cbor
from multiformats import CID

from protocol.errors import RemoteProtocolError

RAW, DAG_CBOR = 0x55, 0x71  # multicodec codes (one-byte varints)
_SHA2_256 = b"\x12\x20"  # multihash code and digest length


def _cidv1_base32(codec: int, data: bytes) -> str:
    """CIDv1 with a sha2-256 multihash in multibase base32, built by hand: the same
    string multiformats makes, without its per-call type validation (about 1 ms, on
    every block received)."""
    binary = bytes((1, codec)) + _SHA2_256 + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")


def block_cid(data: bytes) -> str:
    """CIDv1 (raw codec, sha2-256) of a block, as a base32 ``bafk…`` string."""
    return _cidv1_base32(RAW, data)


@functools.lru_cache(maxsize=4096)
def parse_cid(text: str) -> CID:
    """Parse a CID string; malformed input is a remote protocol error.

    Cached: chain heads are parsed again for every database CID, and multiformats
    spends most of its time validating argument types.
    """
    try:
        return CID.decode(text)
    except (ValueError, LookupError, TypeError) as exc:  # LookupError: "b" gives IndexError
        raise RemoteProtocolError(f"bad CID {text[:80]!r}: {exc}") from exc


def database_cid(heads: Mapping[str, tuple[int, str]]) -> str:
    """CIDv1 (dag-cbor, sha2-256) of the canonical map ``{origin: [seq, head CID]}``.

    Two peers that hold the same changesets hold the same heads, hence the same CID.
    DAG-CBOR's canonical form sorts map keys, so insertion order does not matter.
    """
    node: dict[str, Any] = {origin: [seq, parse_cid(head)] for origin, (seq, head) in heads.items()}
    return _cidv1_base32(DAG_CBOR, dag_cbor.encode(node))


EMPTY_DATABASE_CID = database_cid({})
