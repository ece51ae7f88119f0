"""py-libp2p per-message savings: a signed peer record already verified is not verified
again (until the recheck time), and Yamux releases its window in halves."""

from __future__ import annotations

import os

import pytest
import trio
from netkit import two_hosts

from daemon.net import p2ptuning
from daemon.net.network import Libp2pByteStream
from daemon.net.p2ptuning import VerifiedRecords


class _Rpc:
    def __init__(self, record: bytes | None) -> None:
        self.senderRecord = record

    def HasField(self, name: str) -> bool:
        return name == "senderRecord" and self.senderRecord is not None


class _Peer:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def to_bytes(self) -> bytes:
        return self.raw


class _Consume:
    def __init__(self, answer: bool = True) -> None:
        self.calls = 0
        self.answer = answer

    def __call__(self, msg: object, host: object, peer: object) -> bool:
        self.calls += 1
        return self.answer


def test_a_record_already_verified_is_not_verified_again() -> None:
    consume, now = _Consume(), [100.0]
    records = VerifiedRecords(consume, recheck_s=600, clock=lambda: now[0])
    alice = _Peer(b"alice")
    assert records(_Rpc(b"rec1"), None, alice)
    assert records(_Rpc(b"rec1"), None, alice)
    assert consume.calls == 1 and records.skipped == 1
    assert records(_Rpc(b"rec2"), None, alice)  # a new record of the same peer
    assert consume.calls == 2
    assert records(_Rpc(b"rec1"), None, _Peer(b"bob"))  # same bytes, another peer
    assert consume.calls == 3
    now[0] += 601  # after the recheck time it is verified again
    assert records(_Rpc(b"rec1"), None, alice)
    assert consume.calls == 4


def test_a_refused_record_is_checked_every_time() -> None:
    consume = _Consume(answer=False)
    records = VerifiedRecords(consume)
    for _ in range(3):
        assert not records(_Rpc(b"forged"), None, _Peer(b"mallory"))
    assert consume.calls == 3 and records.skipped == 0


def test_an_rpc_without_a_record_is_accepted_unchecked() -> None:
    consume = _Consume()
    assert VerifiedRecords(consume)(_Rpc(None), None, _Peer(b"x"))
    assert consume.calls == 0


def test_remembered_records_are_bounded() -> None:
    records = VerifiedRecords(_Consume())
    for i in range(p2ptuning.MAX_REMEMBERED + 10):
        records(_Rpc(b"r"), None, _Peer(str(i).encode()))
    assert len(records._seen) == p2ptuning.MAX_REMEMBERED


def test_installed_where_pubsub_calls_it() -> None:
    from libp2p.pubsub import gossipsub, pubsub

    installed = p2ptuning.remember_verified_records()
    assert p2ptuning.remember_verified_records() is installed
    assert pubsub.maybe_consume_signed_record is installed
    assert gossipsub.maybe_consume_signed_record is installed


def test_yamux_tuning_keeps_an_operators_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PY_YAMUX_RELEASE_ON_READ", raising=False)
    p2ptuning.tune_yamux()
    assert os.environ["PY_YAMUX_RELEASE_ON_READ"] == "0"
    monkeypatch.setenv("PY_YAMUX_RELEASE_ON_READ", "1")
    p2ptuning.tune_yamux()
    assert os.environ["PY_YAMUX_RELEASE_ON_READ"] == "1"
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    assert YamuxStream._auto_tune_and_send_window_update is not p2ptuning._release_in_halves
    monkeypatch.setenv("PY_YAMUX_RELEASE_ON_READ", "0")
    p2ptuning.tune_yamux()
    assert YamuxStream._auto_tune_and_send_window_update is p2ptuning._release_in_halves


async def test_small_reads_send_no_window_updates_and_bulk_still_flows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """100 small messages are credited by no WINDOW_UPDATE (they use far less than half
    the window); 3 MB, twelve windows' worth, still arrive whole (credit in halves)."""
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    updates: list[int] = []
    send_update = YamuxStream.send_window_update

    async def counted(stream: YamuxStream, increment: int, skip_lock: bool = False) -> None:
        updates.append(increment)
        await send_update(stream, increment, skip_lock)

    monkeypatch.setattr(YamuxStream, "send_window_update", counted)
    received: list[bytes] = []
    done = trio.Event()

    async def reader(stream: Libp2pByteStream) -> None:
        while chunk := await stream.read(65536):
            received.append(chunk)
        done.set()

    async with two_hosts("/duckpeer/test-yamux/v1") as (sender, receiver):
        receiver.set_stream_handler("/duckpeer/test-window/1", reader)
        await sender.connect(receiver.listen_addrs()[0])
        stream = await sender.open_stream(receiver.peer_id, "/duckpeer/test-window/1")
        for _ in range(100):
            await stream.write(b"x" * 200)
        with trio.fail_after(10):
            while sum(map(len, received)) < 100 * 200:
                await trio.sleep(0.01)
        assert updates == []
        await stream.write(bytes(3 * 1024 * 1024))
        await stream.close()
        with trio.fail_after(30):
            await done.wait()
    assert sum(map(len, received)) == 100 * 200 + 3 * 1024 * 1024
    assert updates and min(updates) >= 128 * 1024
