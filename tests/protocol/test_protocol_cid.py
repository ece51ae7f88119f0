"""Content identifiers of blocks (raw) and database states (dag-cbor)."""

from __future__ import annotations

import hashlib
from typing import Any

import dag_cbor
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiformats import CID

from protocol import cid
from protocol.errors import RemoteProtocolError

SETTINGS = settings(max_examples=300, deadline=None)
# multiformats is pure Python (~1 ms per CID parse), so database CIDs are costly to build.
DB_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEAD_CIDS = st.binary(max_size=32).map(cid.block_cid)
SEQS = st.integers(min_value=1, max_value=(1 << 63) - 1)
HEADS = st.dictionaries(st.text(min_size=1, max_size=40), st.tuples(SEQS, HEAD_CIDS), max_size=5)


def _check_dag_cbor_cid(text: str) -> CID:
    assert text.startswith("bafy")
    assert text == text.lower()
    parsed = CID.decode(text)
    assert parsed.version == 1
    assert parsed.codec.name == "dag-cbor"
    assert parsed.hashfun.name == "sha2-256"
    assert parsed.base.name == "base32"
    assert str(parsed) == text
    return parsed


@SETTINGS
@given(st.binary(max_size=512))
def test_block_cid_is_raw_sha256(data: bytes) -> None:
    text = cid.block_cid(data)
    assert text.startswith("bafkrei")
    parsed = CID.decode(text)
    assert parsed.version == 1
    assert parsed.codec.name == "raw"
    assert parsed.hashfun.name == "sha2-256"
    assert parsed.raw_digest == hashlib.sha256(data).digest()
    assert cid.parse_cid(text) == parsed
    assert cid.block_cid(data) == text


def test_block_cid_known_value() -> None:
    # sha2-256 of the empty string, raw codec: a well-known CID.
    assert cid.block_cid(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@DB_SETTINGS
@given(HEADS, st.randoms(use_true_random=False))
def test_database_cid_independent_of_insertion_order(
    heads: dict[str, tuple[int, str]], rnd: object
) -> None:
    items = list(heads.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    shuffled = dict(items)
    reversed_heads = dict(reversed(items))
    assert cid.database_cid(shuffled) == cid.database_cid(heads)
    assert cid.database_cid(reversed_heads) == cid.database_cid(heads)


@DB_SETTINGS
@given(HEADS)
def test_database_cid_format(heads: dict[str, tuple[int, str]]) -> None:
    text = cid.database_cid(heads)
    parsed = _check_dag_cbor_cid(text)
    # The digest is over the canonical dag-cbor map {origin: [seq, CID]}.
    node: dict[str, Any] = {o: [seq, CID.decode(head)] for o, (seq, head) in heads.items()}
    assert parsed.raw_digest == hashlib.sha256(dag_cbor.encode(node)).digest()
    decoded = dag_cbor.decode(dag_cbor.encode(node))
    assert isinstance(decoded, dict)
    assert set(decoded) == set(heads)


@DB_SETTINGS
@given(HEADS.filter(bool), st.data())
def test_database_cid_changes_with_any_seq_or_head(
    heads: dict[str, tuple[int, str]], data: st.DataObject
) -> None:
    before = cid.database_cid(heads)
    origin = data.draw(st.sampled_from(sorted(heads)))
    seq, head = heads[origin]

    new_seq = data.draw(SEQS.filter(lambda s: s != seq))
    assert cid.database_cid({**heads, origin: (new_seq, head)}) != before

    new_head = data.draw(HEAD_CIDS.filter(lambda h: h != head))
    assert cid.database_cid({**heads, origin: (seq, new_head)}) != before

    fresh = data.draw(st.text(min_size=1, max_size=40).filter(lambda o: o not in heads))
    assert cid.database_cid({**heads, fresh: (seq, head)}) != before

    fewer = {o: v for o, v in heads.items() if o != origin}
    assert cid.database_cid(fewer) != before


def test_empty_database_cid() -> None:
    assert cid.database_cid({}) == cid.EMPTY_DATABASE_CID
    parsed = _check_dag_cbor_cid(cid.EMPTY_DATABASE_CID)
    assert parsed.raw_digest == hashlib.sha256(dag_cbor.encode({})).digest()
    assert cid.database_cid({"o": (1, cid.block_cid(b"x"))}) != cid.EMPTY_DATABASE_CID


def test_database_cid_rejects_bad_head() -> None:
    with pytest.raises(RemoteProtocolError):
        cid.database_cid({"o": (1, "not-a-cid")})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "b",  # multibase prefix alone (used to raise IndexError)
        "z",
        "u",
        "m",
        "\x00",
        "x",
        "Qm",
        "Qm!!",
        "bafy",
        "bafy!!!!",
        "bafkreiabc",
        "baaaa",
        "bé",
        "f01",
        "f0155",
        "f01551220",
        "not a cid at all",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk",  # truncated
    ],
)
def test_parse_cid_garbage_raises_remote_error(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        cid.parse_cid(text)


PREFIXES = st.sampled_from(
    ["", "b", "B", "f", "F", "z", "Qm", "m", "u", "k", "bafy", "bafk", "f01"]
)
ALPHABET = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz234567=0189ABCXYZ!é\x00 "), max_size=60
)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=80), st.builds(str.__add__, PREFIXES, ALPHABET)))
def test_parse_cid_fuzz(text: str) -> None:
    try:
        parsed = cid.parse_cid(text)
    except RemoteProtocolError:
        return
    assert isinstance(parsed, CID)


@SETTINGS
@given(st.binary(max_size=64), st.data())
def test_parse_cid_of_mutated_valid_cid(data: bytes, draw: st.DataObject) -> None:
    text = cid.block_cid(data)
    pos = draw.draw(st.integers(0, len(text) - 1))
    char = draw.draw(st.characters(codec="utf-8", exclude_characters="\ud800"))
    mutated = text[:pos] + char + text[pos + 1 :]
    truncated = text[: draw.draw(st.integers(0, len(text)))]
    for candidate in (mutated, truncated):
        try:
            cid.parse_cid(candidate)
        except RemoteProtocolError:
            pass


@given(st.binary(max_size=2048))
def test_hand_made_cids_are_the_ones_multiformats_makes(data: bytes) -> None:
    from multiformats import multihash

    raw = CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))
    cbor = CID("base32", 1, "dag-cbor", multihash.digest(data, "sha2-256"))
    assert cid.block_cid(data) == str(raw)
    assert cid._cidv1_base32(cid.DAG_CBOR, data) == str(cbor)
    assert cid.parse_cid(cid.block_cid(data)) == raw


MANY_HEADS = st.dictionaries(
    st.text(min_size=1, max_size=40), st.tuples(SEQS, HEAD_CIDS), min_size=20, max_size=30
)


@DB_SETTINGS
@given(st.one_of(HEADS, MANY_HEADS))
def test_hand_written_dag_cbor_is_what_dag_cbor_writes(heads: dict[str, tuple[int, str]]) -> None:
    # keys past 23 bytes and maps past 23 entries take longer CBOR heads; keys of equal
    # length sort by their bytes
    node: dict[str, Any] = {o: [seq, CID.decode(head)] for o, (seq, head) in heads.items()}
    assert cid._heads_dag_cbor(heads) == dag_cbor.encode(node)


def test_heads_that_are_not_block_cids_take_the_general_encoder() -> None:
    other = cid._cidv1_base32(cid.DAG_CBOR, b"x")  # a CID, but not a raw block's
    block = cid.block_cid(b"x")
    for heads in ({"o": (1, other)}, {"o": (1, block.upper())}, {"o": (2**64, block)}):
        assert cid._heads_dag_cbor(heads) is None
    node: dict[str, Any] = {"o": [1, CID.decode(other)]}
    assert cid.database_cid({"o": (1, other)}) == cid._cidv1_base32(
        cid.DAG_CBOR, dag_cbor.encode(node)
    )


def test_check_cid_accepts_cids_and_refuses_the_rest() -> None:
    cid.check_cid(cid.block_cid(b"x"))
    cid.check_cid(cid._cidv1_base32(cid.DAG_CBOR, b"x"))  # not a block CID: multiformats
    for bad in ("", "bafkrei", cid.block_cid(b"x")[:-1], "not-a-cid"):
        with pytest.raises(RemoteProtocolError):
            cid.check_cid(bad)
