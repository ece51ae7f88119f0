"""UnixFS files and directories: known CIDs, kubo's balanced layout, strict decoding."""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID

from protocol import dagpb, unixfs
from protocol.dagpb import DataType, PBLink, PBNode, UnixFSData
from protocol.errors import RemoteProtocolError

EMPTY_DIR_V1 = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def test_empty_directory_has_the_well_known_cid() -> None:
    entry, block = unixfs.directory({})
    assert unixfs.cid_str(entry.cid) == EMPTY_DIR_V1
    assert block.data == bytes.fromhex("0a020801")


def test_empty_file_node_matches_the_well_known_cidv0() -> None:
    # QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH is the dag-pb empty UnixFS file
    meta = dagpb.encode_unixfs(UnixFSData(DataType.FILE, None, 0))
    data = dagpb.encode_node(PBNode((), meta))
    assert data == bytes.fromhex("0a0408021800")
    expected = CID.decode("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
    assert bytes(expected.raw_digest) == hashlib.sha256(data).digest()


def test_small_file_is_its_raw_leaf() -> None:
    # kubo: ipfs add --cid-version=1 --raw-leaves of a file <= 256 KiB is the raw block
    entry, blocks = unixfs.file_blocks(b"hello")
    hello = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert unixfs.cid_str(entry.cid) == hello
    assert len(blocks) == 1 and entry.tsize == 5
    full, blocks = unixfs.file_blocks(b"a" * unixfs.CHUNK_SIZE)
    assert len(blocks) == 1 and unixfs.parse_cid(full.cid).codec == unixfs.RAW


def test_two_chunk_file_node_layout() -> None:
    data = bytes(range(256)) * 1025  # 262400 bytes: one full chunk + 256 bytes
    entry, blocks = unixfs.file_blocks(data)
    root = blocks[-1]
    assert root.cid == entry.cid and unixfs.parse_cid(root.cid).codec == unixfs.DAG_PB
    node = dagpb.decode_node(root.data)
    assert node.data is not None
    meta = dagpb.decode_unixfs(node.data)
    assert meta == UnixFSData(DataType.FILE, None, len(data), (262144, 256))
    assert [link.name for link in node.links] == ["", ""]
    assert [link.tsize for link in node.links] == [262144, 256]
    assert entry.tsize == len(root.data) + len(data)
    # Hand-made canonical bytes: links (Hash, Name "", Tsize) before Data.
    leaf0 = unixfs.make_cid(unixfs.RAW, data[:262144])
    first = bytes([0x12, 2 + 36 + 2 + 4]) + b"\x0a\x24" + leaf0 + b"\x12\x00\x18\x80\x80\x10"
    assert root.data.startswith(first)


def _reference_shape(n: int, max_links: int) -> Any:
    """go-unixfs balanced.Layout, transcribed: leaf 0, then ever deeper full roots."""
    queue = deque(range(n))
    root: Any = queue.popleft()
    depth = 1

    def fill(node: list[Any], depth: int) -> None:
        while len(node) < max_links and queue:
            if depth == 1:
                node.append(queue.popleft())
            else:
                child: list[Any] = []
                fill(child, depth - 1)
                node.append(tuple(child))

    while queue:
        node = [root]
        fill(node, depth)
        root, depth = tuple(node), depth + 1
    return root


def _built_shape(n: int, chunk: int, max_links: int) -> Any:
    builder = unixfs.FileBuilder(chunk, max_links)
    content = b"".join(i.to_bytes(chunk, "big") for i in range(n))
    half = len(content) // 2
    blocks = builder.write(content[:half]) + builder.write(content[half:])
    root, rest = builder.finish()
    store = {b.cid: b.data for b in blocks + rest}
    assert b"".join(unixfs.iter_file(store.__getitem__, root.cid)) == content
    return _shape(store, root.cid)


def _shape(store: dict[bytes, bytes], cid: bytes) -> Any:
    children, _ = unixfs.file_children(cid, store[cid])
    if not children:
        return int.from_bytes(store[cid], "big")
    return tuple(_shape(store, c) for c in children)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 10, 12, 27, 28, 40])
def test_balanced_layout_matches_go_unixfs(n: int) -> None:
    assert _built_shape(n, 4, 3) == _reference_shape(n, 3)


def test_balanced_layout_with_kubo_fanout() -> None:
    assert _built_shape(175, 2, 174) == _reference_shape(175, 174)


def test_directory_links_sorted_with_cumulative_sizes() -> None:
    b_entry, _ = unixfs.file_blocks(b"bbb")
    a_entry, _ = unixfs.file_blocks(b"x" * 300_000)
    entry, block = unixfs.directory({"b.txt": b_entry, "a.parquet": a_entry})
    node = dagpb.decode_node(block.data)
    assert [link.name for link in node.links] == ["a.parquet", "b.txt"]
    assert entry.tsize == len(block.data) + a_entry.tsize + 3
    assert unixfs.read_directory(entry.cid, block.data) == {
        "a.parquet": a_entry.cid,
        "b.txt": b_entry.cid,
    }


def test_cid_text_round_trip_and_hash_check() -> None:
    entry, _ = unixfs.file_blocks(b"data")
    assert unixfs.cid_from_str(unixfs.cid_str(entry.cid)) == entry.cid
    unixfs.verify_block(entry.cid, b"data")
    with pytest.raises(RemoteProtocolError, match="hash mismatch"):
        unixfs.verify_block(entry.cid, b"date")


def test_dagpb_refuses_noncanonical_order() -> None:
    link = dagpb.encode_link(PBLink(unixfs.make_cid(unixfs.RAW, b"x"), "", 1))
    data_first = b"\x0a\x02\x08\x01" + b"\x12" + bytes([len(link)]) + link
    with pytest.raises(RemoteProtocolError):
        dagpb.decode_node(data_first)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoders_raise_only_protocol_errors(data: bytes) -> None:
    fake_pb = unixfs.make_cid(unixfs.DAG_PB, data)
    for fn in (
        lambda: dagpb.decode_node(data),
        lambda: dagpb.decode_unixfs(data),
        lambda: unixfs.parse_cid(data, 0, whole=True),
        lambda: unixfs.read_directory(fake_pb, data),
        lambda: unixfs.file_children(fake_pb, data),
        lambda: unixfs.cid_from_str("b" + data.decode("latin-1")),
    ):
        try:
            fn()
        except RemoteProtocolError:
            pass
