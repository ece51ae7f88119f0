"""CARv1 archives and snapshot stream messages: round trips, tampering, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocol import car, snapmsg, unixfs
from protocol.errors import RemoteProtocolError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _archive(content: bytes = b"z" * 70_000 + bytes(range(256)) * 1000) -> tuple[bytes, bytes]:
    builder = unixfs.FileBuilder(chunk_size=65536)
    blocks = builder.write(content)
    root, rest = builder.finish()
    directory, node = unixfs.directory({"f.bin": root})
    body = b"".join(car.encode_block(b.cid, b.data) for b in [*blocks, *rest, node])
    return car.encode_header([directory.cid]) + body, directory.cid


def test_round_trip() -> None:
    data, root = _archive()
    index = car.index(data)
    assert index.roots == [root]
    get = lambda cid: bytes(data[index.blocks[cid][0] : sum(index.blocks[cid])])  # noqa: E731
    files = unixfs.read_directory(root, get(root))
    content = b"".join(unixfs.iter_file(get, files["f.bin"]))
    assert content == b"z" * 70_000 + bytes(range(256)) * 1000


def test_header_is_the_spec_form() -> None:
    cid = unixfs.make_cid(unixfs.RAW, b"x")
    header = car.encode_header([cid])
    # varint length, then dag-cbor map {"roots": [tag 42 CID], "version": 1}
    assert header[1:8] == bytes([0xA2, 0x65]) + b"roots"
    assert car.read_header(header) == ([cid], len(header))


def test_every_single_flipped_byte_in_a_block_is_refused() -> None:
    data, _ = _archive(b"abc" * 40_000)
    _, start = car.read_header(data)
    for pos in range(start, len(data), 997):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(RemoteProtocolError):
            car.index(bytes(bad))


def test_truncated_archive_is_refused() -> None:
    data, _ = _archive()
    with pytest.raises(RemoteProtocolError):
        car.index(data[:-10])


@SETTINGS
@given(st.data())
def test_mutated_archives_give_an_index_or_a_protocol_error(data: st.DataObject) -> None:
    archive = bytearray(_small_archive())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(archive) - 1))
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip":
            archive[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "insert":
            archive[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del archive[pos]
        else:
            del archive[pos:]
        if not archive:
            archive = bytearray(b"\x00")
    try:
        car.index(bytes(archive))
    except RemoteProtocolError:
        pass


@SETTINGS
@given(st.binary(max_size=300))
@example(b"\t{\x80\x00\x00\x00\x00\x00\x00\x00")  # a 2^63-byte string: OverflowError
def test_random_bytes_give_an_index_or_a_protocol_error(data: bytes) -> None:
    try:
        car.index(data)
    except RemoteProtocolError:
        pass


def _small_archive() -> bytes:
    blocks = [unixfs.Block(unixfs.make_cid(unixfs.RAW, d), d) for d in (b"one", b"two")]
    entry, node = unixfs.directory(
        {"a": unixfs.Entry(blocks[0].cid, 3, 3), "b": unixfs.Entry(blocks[1].cid, 3, 3)}
    )
    body = b"".join(car.encode_block(b.cid, b.data) for b in [*blocks, node])
    return car.encode_header([entry.cid]) + body


# -- snapshot stream messages ------------------------------------------------------------

CIDS = st.binary(max_size=8).map(lambda b: unixfs.cid_str(unixfs.make_cid(unixfs.RAW, b)))
VECTOR = st.dictionaries(st.text(max_size=20), st.integers(1, (1 << 63) - 1), max_size=4)
snap_messages = st.one_of(
    st.just(snapmsg.SnapQuery()),
    st.builds(
        snapmsg.SnapOffer,
        root=CIDS,
        db_cid=st.text(max_size=128),
        vector=VECTOR,
        blocks=st.integers(0, 1 << 40),
        size=st.integers(0, 1 << 50),
    ),
    st.builds(snapmsg.SnapWant, cids=st.lists(CIDS, min_size=1, max_size=5).map(tuple)),
    st.builds(snapmsg.SnapBlock, data=st.binary(max_size=300)),
    st.builds(snapmsg.SnapError, reason=st.text(max_size=100)),
)


@SETTINGS
@given(snap_messages)
def test_snapshot_messages_round_trip(msg: snapmsg.SnapMessage) -> None:
    assert snapmsg.decode(snapmsg.encode(msg)) == msg


@SETTINGS
@given(snap_messages.map(snapmsg.encode), st.data())
def test_snapshot_messages_mutated_decode_or_protocol_error(
    encoded: bytes, data: st.DataObject
) -> None:
    raw = bytearray(encoded)
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    for candidate in (bytes(raw), bytes(raw[:pos]), data.draw(st.binary(max_size=64))):
        try:
            snapmsg.decode(candidate)
        except RemoteProtocolError:
            pass


def test_snapshot_want_is_bounded() -> None:
    cid = unixfs.cid_str(unixfs.make_cid(unixfs.RAW, b"x"))
    too_many = snapmsg.encode(snapmsg.SnapWant(tuple([cid] * (snapmsg.MAX_WANT + 1))))
    with pytest.raises(RemoteProtocolError):
        snapmsg.decode(too_many)
