"""The bootstrap client's block fetching, in process over memory streams: blocks come
from every peer, a peer sending a block that does not match its CID is dropped and its
batch fetched from the others, and when every peer lies the bootstrap fails cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from daemon.metrics.counters import Metrics
from daemon.net.framed import FramedStream, TrioByteStream
from daemon.snapshot.archive import CarFileWriter
from daemon.snapshot.service import BootstrapFailed, BootstrapResult, Session, _fetch
from protocol import car, snapmsg, unixfs
from protocol.snapmsg import SnapBlock, SnapOffer, SnapWant


class ResettableStream(TrioByteStream):
    async def reset(self) -> None:
        await self.stream.aclose()


def _dag() -> tuple[bytes, dict[bytes, bytes]]:
    builder = unixfs.FileBuilder(chunk_size=1024)
    chunks = [i.to_bytes(2, "big") * 512 for i in range(10)]
    blocks = builder.write(b"".join([*chunks, chunks[0]]))  # 11 links, 10 distinct leaves
    entry, rest = builder.finish()
    small, small_blocks = unixfs.file_blocks(b"manifest")
    root, node = unixfs.directory({"a.parquet": entry, "manifest.json": small})
    return root.cid, {b.cid: b.data for b in [*blocks, *rest, *small_blocks, node]}


async def _serve(stream: trio.abc.Stream, store: dict[bytes, bytes], lie: bool) -> None:
    framed = FramedStream(TrioByteStream(stream), snapmsg.MAX_FRAME, 10)
    try:
        while (frame := await framed.receive()) is not None:
            want = snapmsg.decode(frame)
            assert isinstance(want, SnapWant)
            for text in want.cids:
                data = store[unixfs.cid_from_str(text)]
                await framed.send(snapmsg.encode(SnapBlock(data + b"!" if lie else data)))
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        pass  # the client dropped us


async def _run(tmp_path: Path, liars: list[bool]) -> tuple[Any, BootstrapResult, Metrics]:
    root, store = _dag()
    offer = SnapOffer(unixfs.cid_str(root), "db", {"o": 1}, len(store), 1 << 20)
    node: Any = type("FakeNode", (), {"metrics": Metrics()})()
    result = BootstrapResult()
    out = CarFileWriter(tmp_path / "fetched.car")
    async with trio.open_nursery() as nursery:
        sessions = []
        for i, lie in enumerate(liars):
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(_serve, server, store, lie)
            stream: Any = ResettableStream(client)
            framed = FramedStream(stream, snapmsg.MAX_FRAME, 10)
            sessions.append(Session(f"peer{i}", stream, framed, offer))
        failure: BootstrapFailed | None = None
        try:
            await _fetch(node, sessions, root, out, result)
            out.finish(root)
        except BootstrapFailed as exc:
            out.abort()
            failure = exc
        finally:
            for s in sessions:
                await s.framed.aclose()
    if failure is not None:
        raise failure
    return root, result, node.metrics


async def test_blocks_from_all_peers_and_a_liar_is_dropped(tmp_path: Path) -> None:
    root, result, metrics = await _run(tmp_path, [False, True, False])
    assert metrics.get("snapshot_fetch_errors") == 1
    index = car.index((tmp_path / "fetched.car").read_bytes(), verify=True)
    assert index.roots == [root] and len(index.blocks) == result.blocks == 13


async def test_when_every_peer_lies_the_fetch_fails(tmp_path: Path) -> None:
    with pytest.raises(BootstrapFailed, match="every peer failed"):
        await _run(tmp_path, [True, True])
