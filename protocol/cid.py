"""Content identifiers: changeset blocks (raw) and database states (dag-cbor)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import dag_cbor
from multiformats import CID, multihash

from protocol.errors import RemoteProtocolError


def block_cid(data: bytes) -> str:
    """CIDv1 (raw codec, sha2-256) of a block, as a base32 ``bafk…`` string."""
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


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
    encoded = dag_cbor.encode(node)
    return str(CID("base32", 1, "dag-cbor", multihash.digest(encoded, "sha2-256")))


EMPTY_DATABASE_CID = database_cid({})
