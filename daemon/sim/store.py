"""A small in-memory changeset store with the interface the network code uses.

It keeps each origin's chain of real changeset blocks (signed, checked for signature
and chain links like the DuckDB store) and computes the real database CID, but holds
no rows: the simulator is about who has which changeset when, not about tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence

from daemon.store.database import ApplyResult
from protocol import changeset as cs_codec
from protocol import hlc as hlc_clock
from protocol.changeset import Changeset, Decoded, Op, TableChanges
from protocol.cid import database_cid
from protocol.errors import RemoteProtocolError

Admit = Callable[[Changeset, bytes], str | None]


class MemStore:
    """Chains of changeset blocks per origin, in apply order."""

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self.clock_ms = clock_ms
        self.heads: dict[str, tuple[int, str]] = {}
        self.log: list[tuple[str, int, bytes]] = []  # (origin, seq, block), apply order
        self.hlc = 0
        self.strategies: dict[str, object] = {}
        self.history_floor: dict[str, int] = {}
        self.on_append: Callable[[str, int], None] | None = None  # (origin, seq): measuring
        self._db_cid = database_cid({})

    # -- what the node and the network read ----------------------------------------------

    def heads_snapshot(self) -> dict[str, tuple[int, str]]:
        return dict(self.heads)

    def state(self) -> tuple[dict[str, tuple[int, str]], str]:
        return dict(self.heads), self._db_cid

    def vector(self) -> dict[str, int]:
        return {origin: seq for origin, (seq, _) in self.heads.items()}

    def db_cid(self) -> str:
        return self._db_cid

    def missing_for(self, have: Mapping[str, int], batch: int = 64) -> Iterator[list[bytes]]:
        """Blocks a peer at ``have`` lacks, in our apply order."""
        wanted = [block for origin, seq, block in self.log if seq > have.get(origin, 0)]
        for start in range(0, len(wanted), batch):
            yield wanted[start : start + batch]

    def unservable(self, have: Mapping[str, int]) -> list[str]:
        return []

    # -- writes ---------------------------------------------------------------------------

    def commit_local(
        self, origin: str, tables: Sequence[TableChanges], sign: Callable[[bytes], bytes] | None
    ) -> Decoded:
        seq, prev = self.heads.get(origin, (0, None))
        self.hlc = hlc_clock.tick(self.hlc, self.clock_ms())
        cs = Changeset(origin, seq + 1, self.hlc, prev, list(tables))
        block = cs_codec.encode(cs)
        if sign is not None:
            signature = sign(block)
            block = cs_codec.sign_block(block, signature)
            cs = dataclasses.replace(cs, signature=signature)
        item = Decoded(cs, cs_codec.cid_of(block), block)
        self._append(item)
        self._db_cid = database_cid(self.heads)
        return item

    def apply_blocks(self, blocks: Sequence[bytes], admit: Admit | None = None) -> ApplyResult:
        """Append the blocks that extend their origin's chain at our head."""
        result = ApplyResult()
        for block in blocks:
            cid = cs_codec.cid_of(block)
            try:
                cs = cs_codec.decode(block)
            except RemoteProtocolError as exc:
                result.rejected.append((cid, str(exc)))
                continue
            seq, prev = self.heads.get(cs.origin, (0, None))
            if cs.seq <= seq:
                result.duplicates += 1
                continue
            problem = admit(cs, block) if admit is not None else None
            if problem is None and (cs.seq != seq + 1 or cs.prev != prev):
                problem = f"does not extend the chain of {cs.origin} at seq {seq}"
            if problem is not None:
                result.rejected.append((cid, problem))
                continue
            self._append(Decoded(cs, cid, block))
            self.hlc = hlc_clock.observe(self.hlc, cs.hlc, self.clock_ms())
            result.applied += 1
            result.rows += cs.row_count()
        if result.applied:
            self._db_cid = database_cid(self.heads)
        return result

    def _append(self, item: Decoded) -> None:
        origin, seq = item.changeset.origin, item.changeset.seq
        self.heads[origin] = (seq, item.cid)
        self.log.append((origin, seq, item.block))
        if self.on_append is not None:
            self.on_append(origin, seq)


def one_model(name: str) -> TableChanges:
    """A tiny write: one new row in ``models``."""
    columns = ["model_id", "model_name"]
    return TableChanges("models", columns, bytes([Op.UPSERT]), [None], [0b11], [[name], [name]])
