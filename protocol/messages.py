"""Gossip and sync messages, and their versioned msgpack encoding.

Each message is a frozen dataclass. On the wire it is a msgpack map with ``v`` (wire
version), ``t`` (type tag) and the fields. :func:`decode` turns any bytes into one of
these messages or raises :class:`RemoteProtocolError`; nothing else escapes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol import codec
from protocol.codec import (
    expect,
    expect_int,
    expect_list_of,
    expect_map,
    expect_str,
    expect_vector,
)
from protocol.errors import RemoteProtocolError

WIRE_VERSION = 1


@dataclass(frozen=True)
class Announce:
    """Gossiped state of one peer: what it holds and where to reach it."""

    peer_id: str
    db_cid: str
    vector: Mapping[str, int]
    addrs: tuple[str, ...] = ()
    load: float = 0.0
    hlc: int = 0
    blocks: tuple[bytes, ...] = ()
    """The sender's own newest small changesets, pushed so peers skip a pull round trip."""
    # Revision 2 (all optional; a revision-1 announce has none of them):
    period_ms: int = 0
    """The sender's heartbeat period now (its next plain announce is due within it)."""
    base: str = ""
    """With ``blocks``: the sender's database CID before them (peers there reach ``db_cid``)."""
    leaving: bool = False
    """The sender is shutting down: forget it now rather than after a timeout."""
    gone: tuple[str, ...] = ()
    """Peers the sender lost and could not reach again (each should be checked)."""


MAX_PUSHED_BYTES = 64 << 10  # total size of Announce.blocks
MAX_PUSHED_BLOCKS = 64  # and their number
MAX_GONE = 16  # peers named in Announce.gone
ANNOUNCE_REVISION = 2  # the "rev" an announce with revision-2 fields carries


@dataclass(frozen=True)
class SyncRequest:
    """Opening frame of a sync stream: send me what I lack beyond ``have``."""

    have: Mapping[str, int]
    max_changesets: int = 0  # 0 = no limit


@dataclass(frozen=True)
class SyncBlock:
    """One changeset block, in the order the sender applied it."""

    block: bytes


@dataclass(frozen=True)
class SyncEnd:
    """Last frame of a sync response."""

    count: int
    db_cid: str
    vector: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncError:
    """The sender refuses or failed; ``reason`` is for logs."""

    reason: str


MAX_FRAGMENT_SQL = 100_000
MAX_PARTITIONS = 256
MAX_CHUNKS = 1024  # key-range chunks of a ``keys`` partitioning (bounds: one fewer)
Bound = int | float | str


@dataclass(frozen=True)
class QueryFragment:
    """A map fragment of a distributed query, gossiped to peers at ``db_cid``.

    ``assignments`` names which peer runs which partitions (gossip reaches everyone;
    peers not named ignore it). Each peer restricts ``sql`` to its partitions of the
    fact table by ``strategy`` and streams the partial results back to ``coordinator``
    before ``deadline_ms`` passes. Under ``keys``, ``bounds`` cut ``column`` into
    ``len(bounds) + 1`` chunks and ``owners[j]`` is the partition chunk ``j`` belongs to;
    the older strategies (``hash``, ``round_robin``, ``range``) leave ``owners`` empty.
    """

    query_id: str
    coordinator: str
    db_cid: str
    sql: str
    strategy: str
    partitions: int
    assignments: Mapping[str, tuple[int, ...]]
    column: str = ""
    bounds: tuple[Bound, ...] = ()
    deadline_ms: int = 30_000
    owners: tuple[int, ...] = ()


@dataclass(frozen=True)
class PartialResult:
    """One partition's map output (Arrow IPC stream bytes) on the result stream.

    ``scanned_rows`` / ``row_groups`` / ``row_groups_total`` say what the slice cost the
    sender: rows in the row groups its scan had to read, of how many (0 = not known).
    """

    query_id: str
    partition: int
    data: bytes
    rows: int = 0
    elapsed_ms: float = 0.0
    scanned_rows: int = 0
    row_groups: int = 0
    row_groups_total: int = 0


@dataclass(frozen=True)
class PartialFailed:
    """A peer could not run a partition (refused, wrong CID, error, time limit)."""

    query_id: str
    partition: int
    reason: str


@dataclass(frozen=True)
class Capacity:
    """What a fragment worker offers, sent on its query stream: CPU cores, the host's
    1-minute load average and its busy database slots (coordinators size slices by it)."""

    cores: int
    load: float = 0.0
    busy: float = 0.0


MAX_CORES = 65536

Message = (
    Announce | SyncRequest | SyncBlock | SyncEnd | SyncError | QueryFragment | PartialResult
    | PartialFailed | Capacity
)  # fmt: skip


def encode(msg: Message) -> bytes:
    """Encode a message to its versioned msgpack form."""
    tag, body = _TO_WIRE[type(msg)](msg)
    return codec.pack_tagged(tag, body, WIRE_VERSION)


def decode(data: bytes, max_size: int = codec.DEFAULT_MAX_MESSAGE) -> Message:
    """Decode bytes into a message; any defect raises RemoteProtocolError."""
    return codec.unpack_tagged(data, _FROM_WIRE, "message", max_size, WIRE_VERSION)


def _announce_to_wire(m: Announce) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "peer": m.peer_id,
        "cid": m.db_cid,
        "vv": dict(m.vector),
        "addrs": list(m.addrs),
        "load": m.load,
        "hlc": m.hlc,
        "blocks": list(m.blocks),
    }
    extra = {"per": m.period_ms, "base": m.base, "leaving": m.leaving, "gone": list(m.gone)}
    extra = {k: v for k, v in extra.items() if v}  # revision 1 peers ignore these keys
    if extra:
        body |= {"rev": ANNOUNCE_REVISION, **extra}
    return "announce", body


def _announce_from_wire(raw: dict[str, Any]) -> Announce:
    load = _number(raw.get("load", 0.0), "announce.load")
    expect_int(raw.get("rev", 1), "announce.rev", 1)  # later revisions add keys we skip
    return Announce(
        peer_id=expect_str(raw["peer"], "announce.peer", 128),
        db_cid=expect_str(raw["cid"], "announce.cid", 128),
        vector=expect_vector(raw["vv"], "announce.vv"),
        addrs=tuple(expect_list_of(raw.get("addrs", []), "announce.addrs", _addr, 32)),
        load=float(load),
        hlc=expect_int(raw.get("hlc", 0), "announce.hlc"),
        blocks=_pushed_blocks(raw.get("blocks", [])),
        period_ms=expect_int(raw.get("per", 0), "announce.per", 0, 1 << 40),
        base=expect_str(raw.get("base", ""), "announce.base", 128),
        leaving=_flag(raw.get("leaving", False), "announce.leaving"),
        gone=tuple(expect_list_of(raw.get("gone", []), "announce.gone", _peer, MAX_GONE)),
    )


def _flag(value: object, what: str) -> bool:
    return expect(value, bool, what)


def _peer(value: object, what: str) -> str:
    return expect_str(value, what, 128)


def _pushed_blocks(raw: object) -> tuple[bytes, ...]:
    blocks = tuple(expect_list_of(raw, "announce.blocks", _block, MAX_PUSHED_BLOCKS))
    if sum(len(b) for b in blocks) > MAX_PUSHED_BYTES:
        raise RemoteProtocolError(f"announce.blocks: more than {MAX_PUSHED_BYTES} bytes")
    return blocks


def _block(value: object, what: str) -> bytes:
    return expect(value, bytes, what)


def _addr(value: object, what: str) -> str:
    return expect_str(value, what, 512)


def _request_to_wire(m: SyncRequest) -> tuple[str, dict[str, Any]]:
    return "sync_req", {"have": dict(m.have), "max": m.max_changesets}


def _request_from_wire(raw: dict[str, Any]) -> SyncRequest:
    return SyncRequest(
        have=expect_vector(raw["have"], "sync_req.have"),
        max_changesets=expect_int(raw.get("max", 0), "sync_req.max"),
    )


def _block_to_wire(m: SyncBlock) -> tuple[str, dict[str, Any]]:
    return "block", {"b": m.block}


def _block_from_wire(raw: dict[str, Any]) -> SyncBlock:
    return SyncBlock(block=expect(raw["b"], bytes, "block.b"))


def _end_to_wire(m: SyncEnd) -> tuple[str, dict[str, Any]]:
    return "end", {"n": m.count, "cid": m.db_cid, "vv": dict(m.vector)}


def _end_from_wire(raw: dict[str, Any]) -> SyncEnd:
    return SyncEnd(
        count=expect_int(raw["n"], "end.n"),
        db_cid=expect_str(raw["cid"], "end.cid", 128),
        vector=expect_vector(raw.get("vv", {}), "end.vv"),
    )


def _error_to_wire(m: SyncError) -> tuple[str, dict[str, Any]]:
    return "error", {"reason": m.reason}


def _error_from_wire(raw: dict[str, Any]) -> SyncError:
    return SyncError(reason=expect_str(raw["reason"], "error.reason", 4096))


def _fragment_to_wire(m: QueryFragment) -> tuple[str, dict[str, Any]]:
    return "fragment", {
        "qid": m.query_id,
        "coord": m.coordinator,
        "cid": m.db_cid,
        "sql": m.sql,
        "strat": m.strategy,
        "n": m.partitions,
        "assign": {peer: list(parts) for peer, parts in m.assignments.items()},
        "col": m.column,
        "bounds": list(m.bounds),
        "deadline": m.deadline_ms,
        "owner": list(m.owners),
    }


def _fragment_from_wire(raw: dict[str, Any]) -> QueryFragment:
    n = expect_int(raw["n"], "fragment.n", 1, MAX_PARTITIONS)
    assign = expect_map(raw["assign"], "fragment.assign", 64)
    return QueryFragment(
        query_id=expect_str(raw["qid"], "fragment.qid", 64),
        coordinator=expect_str(raw["coord"], "fragment.coord", 128),
        db_cid=expect_str(raw["cid"], "fragment.cid", 128),
        sql=expect_str(raw["sql"], "fragment.sql", MAX_FRAGMENT_SQL),
        strategy=expect_str(raw["strat"], "fragment.strat", 32),
        partitions=n,
        assignments={
            expect_str(peer, "fragment.assign key", 128): tuple(
                expect_list_of(parts, f"fragment.assign[{peer}]", _partition(n), n)
            )
            for peer, parts in assign.items()
        },
        column=expect_str(raw.get("col", ""), "fragment.col", 128),
        bounds=tuple(
            expect_list_of(raw.get("bounds", []), "fragment.bounds", _bound, MAX_CHUNKS - 1)
        ),
        deadline_ms=expect_int(raw.get("deadline", 30_000), "fragment.deadline", 1, 3_600_000),
        owners=tuple(
            expect_list_of(raw.get("owner", []), "fragment.owner", _partition(n), MAX_CHUNKS)
        ),
    )


def _partition(n: int) -> Callable[[object, str], int]:
    def check(value: object, what: str) -> int:
        return expect_int(value, what, 0, n - 1)

    return check


def _bound(value: object, what: str) -> Bound:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RemoteProtocolError(f"{what}: expected a number or a string")
    if isinstance(value, str):
        return expect_str(value, what, 1024)
    if isinstance(value, int):
        return expect_int(value, what, -(1 << 63), (1 << 63) - 1)
    return value


def _partial_to_wire(m: PartialResult) -> tuple[str, dict[str, Any]]:
    return "partial", {
        "qid": m.query_id,
        "p": m.partition,
        "data": m.data,
        "rows": m.rows,
        "ms": m.elapsed_ms,
        "srows": m.scanned_rows,
        "rg": m.row_groups,
        "rgt": m.row_groups_total,
    }


def _partial_from_wire(raw: dict[str, Any]) -> PartialResult:
    elapsed = _number(raw.get("ms", 0.0), "partial.ms")  # NaN would skew capacities
    return PartialResult(
        query_id=expect_str(raw["qid"], "partial.qid", 64),
        partition=expect_int(raw["p"], "partial.p", 0, MAX_PARTITIONS - 1),
        data=expect(raw["data"], bytes, "partial.data"),
        rows=expect_int(raw.get("rows", 0), "partial.rows"),
        elapsed_ms=elapsed,
        scanned_rows=expect_int(raw.get("srows", 0), "partial.srows"),
        row_groups=expect_int(raw.get("rg", 0), "partial.rg"),
        row_groups_total=expect_int(raw.get("rgt", 0), "partial.rgt"),
    )


def _partial_failed_to_wire(m: PartialFailed) -> tuple[str, dict[str, Any]]:
    return "partial_failed", {"qid": m.query_id, "p": m.partition, "reason": m.reason}


def _partial_failed_from_wire(raw: dict[str, Any]) -> PartialFailed:
    return PartialFailed(
        query_id=expect_str(raw["qid"], "partial_failed.qid", 64),
        partition=expect_int(raw["p"], "partial_failed.p", 0, MAX_PARTITIONS - 1),
        reason=expect_str(raw["reason"], "partial_failed.reason", 4096),
    )


def _capacity_to_wire(m: Capacity) -> tuple[str, dict[str, Any]]:
    return "capacity", {"cores": m.cores, "load": m.load, "busy": m.busy}


def _capacity_from_wire(raw: dict[str, Any]) -> Capacity:
    return Capacity(
        cores=expect_int(raw["cores"], "capacity.cores", 1, MAX_CORES),
        load=_number(raw.get("load", 0.0), "capacity.load"),
        busy=_number(raw.get("busy", 0.0), "capacity.busy"),
    )


def _number(value: object, what: str) -> float:
    """A finite, non-negative number (an int is accepted)."""
    if not isinstance(value, float | int) or isinstance(value, bool):
        raise RemoteProtocolError(f"{what}: expected a number")
    number = float(value)
    if not 0.0 <= number < float("inf"):
        raise RemoteProtocolError(f"{what}: {value!r} is not a finite number >= 0")
    return number


_TO_WIRE: dict[type, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    Announce: _announce_to_wire,
    SyncRequest: _request_to_wire,
    SyncBlock: _block_to_wire,
    SyncEnd: _end_to_wire,
    SyncError: _error_to_wire,
    QueryFragment: _fragment_to_wire,
    PartialResult: _partial_to_wire,
    PartialFailed: _partial_failed_to_wire,
    Capacity: _capacity_to_wire,
}
_FROM_WIRE: dict[str, Callable[[dict[str, Any]], Message]] = {
    "announce": _announce_from_wire,
    "sync_req": _request_from_wire,
    "block": _block_from_wire,
    "end": _end_from_wire,
    "error": _error_from_wire,
    "fragment": _fragment_from_wire,
    "partial": _partial_from_wire,
    "partial_failed": _partial_failed_from_wire,
    "capacity": _capacity_from_wire,
}
