"""protocol/SPEC.md: every example decodes with our codecs into the type it names.

Each example is a ```diag <codec> <Type>``` block (JSON plus h'..' byte strings and //
comments) followed by a ```hex <codec> <Type> [cid=...]``` block. For msgpack codecs the
hex must decode into <Type>, re-encode to the same bytes, and equal the diag value
packed; other codecs are checked against their own decoders. The changeset examples
must also pass what a receiver checks (chain links, clock, bases, signatures).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dag_cbor
import pytest
from multiformats import CID, multibase

from protocol import (
    cachemsg,
    car,
    changeset,
    codec,
    columnar,
    control,
    framing,
    membership,
    messages,
    snapmsg,
    status,
    unixfs,
)
from protocol.cid import EMPTY_DATABASE_CID, database_cid
from protocol.errors import RemoteProtocolError
from protocol.schema import TABLES, ColType

SPEC = Path(__file__).resolve().parents[2] / "protocol" / "SPEC.md"
FENCE = re.compile(r"^```(\S+)([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    codec: str
    type_name: str
    attrs: dict[str, str]
    diag: Any
    data: bytes
    line: int

    @property
    def label(self) -> str:
        return f"line{self.line}-{self.codec}-{self.type_name}"


# -- the diagnostic notation ------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s+|//[^\n]*|(?P<punct>[{}\[\]:,])|(?P<str>"(?:[^"\\]|\\.)*")|h'(?P<hex>[0-9a-fA-F\s]*)'
    |(?P<num>-?(?:0|[1-9]\d*)(?P<frac>\.\d+)?(?P<exp>[eE][+-]?\d+)?)|(?P<word>true|false|null)""",
    re.VERBOSE,
)
_WORDS = {"true": True, "false": False, "null": None}


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"diag: cannot read {text[pos : pos + 20]!r}")
        pos = m.end()
        if m.group("punct"):
            out.append(("p", m.group("punct")))
        elif m.group("str") is not None:
            out.append(("v", json.loads(m.group("str"))))
        elif m.group("hex") is not None:
            out.append(("v", bytes.fromhex("".join(m.group("hex").split()))))
        elif m.group("num") is not None:
            real = m.group("frac") or m.group("exp")
            out.append(("v", float(m.group("num")) if real else int(m.group("num"))))
        elif m.group("word"):
            out.append(("v", _WORDS[m.group("word")]))
    return out


def parse_diag(text: str) -> Any:
    """JSON with h'hex' byte strings and // comments, as Python values."""
    tokens = _tokens(text)
    value, end = _value(tokens, 0)
    if end != len(tokens):
        raise ValueError("diag: trailing tokens")
    return value


def _value(tokens: list[tuple[str, Any]], i: int) -> tuple[Any, int]:
    kind, tok = tokens[i]
    if kind == "v":
        return tok, i + 1
    if tok == "[":
        items: list[Any] = []
        i += 1
        while tokens[i] != ("p", "]"):
            item, i = _value(tokens, i)
            items.append(item)
            if tokens[i] == ("p", ","):
                i += 1
        return items, i + 1
    if tok == "{":
        mapping: dict[Any, Any] = {}
        i += 1
        while tokens[i] != ("p", "}"):
            key, i = _value(tokens, i)
            assert tokens[i] == ("p", ":"), "diag: expected ':'"
            mapping[key], i = _value(tokens, i + 1)
            if tokens[i] == ("p", ","):
                i += 1
        return mapping, i + 1
    raise ValueError(f"diag: unexpected {tok!r}")


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (1 != 1.0 != True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- reading the spec ----------------------------------------------------------------------


def load_examples() -> list[Example]:
    text = SPEC.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        if m.group(1) in ("diag", "hex"):
            line = text.count("\n", 0, m.start()) + 1
            blocks.append((m.group(1), m.group(2).split(), m.group(3), line))
    examples = []
    pending: tuple[list[str], Any] | None = None
    for kind, words, body, line in blocks:
        if kind == "diag":
            assert pending is None, f"line {line}: two diag blocks in a row"
            pending = (words, parse_diag(body))
            continue
        assert pending is not None, f"line {line}: hex block without its diag block"
        assert pending[0] == words[:2], f"line {line}: hex {words} follows diag {pending[0]}"
        assert re.fullmatch(r"[0-9a-f\s]*", body), f"line {line}: not a hex dump"
        attrs = dict(w.split("=", 1) for w in words[2:])
        examples.append(Example(words[0], words[1], attrs, pending[1], bytes.fromhex(body), line))
        pending = None
    assert pending is None, "diag block without its hex block at the end"
    return examples


EXAMPLES = load_examples()


def by(codec_name: str) -> list[Example]:
    return [e for e in EXAMPLES if e.codec == codec_name]


# -- decoding --------------------------------------------------------------------------------

Codec = tuple[Callable[[bytes], Any], Callable[[Any], bytes]]
MSGPACK: dict[str, Codec] = {
    "messages": (messages.decode, messages.encode),
    "changeset": (changeset.decode, changeset.encode),
    "snapmsg": (snapmsg.decode, snapmsg.encode),
    "cachemsg": (cachemsg.decode, cachemsg.encode),
    "status": (status.decode, status.encode),
    "membership": (membership.decode, membership.encode),
    "control.ControlRequest": (control.decode_request, control.encode_request),
    "control.ControlResponse": (control.decode_response, control.encode_response),
}
TYPES = {
    "messages": {
        "Announce", "QueryFragment", "SyncRequest", "SyncBlock", "SyncEnd", "SyncError",
        "PartialResult", "PartialFailed", "Capacity",
    },
    "changeset": {"Changeset"},
    "snapmsg": {"SnapQuery", "SnapOffer", "SnapWant", "SnapBlock", "SnapError"},
    "cachemsg": {"CacheGet", "CacheFound", "CacheMissing"},
    "status": {"StatusQuery", "StatusReply"},
    "membership": {"MembersQuery", "MembersReply", "MembersBye"},
    "control": {"ControlRequest", "ControlResponse"},
}  # fmt: skip
CODEC_OF_TYPE = {t: c for c, types in TYPES.items() for t in types}


def msgpack_codec(codec_name: str, type_name: str) -> Codec:
    return MSGPACK.get(codec_name) or MSGPACK[f"{codec_name}.{type_name}"]


def check_msgpack(codec_name: str, type_name: str, diag: Any, data: bytes) -> Any:
    decode, encode = msgpack_codec(codec_name, type_name)
    message = decode(data)
    assert type(message).__name__ == type_name
    assert encode(message) == data, "re-encoding the decoded message changes its bytes"
    assert codec.pack(diag) == data, "the diag value does not encode to the hex bytes"
    assert same(codec.unpack(data, len(data)), diag)
    return message


def check_cid(example: Example, multicodec: str) -> None:
    text = example.attrs.get("cid")
    if text is None:
        return
    cid = CID.decode(text)
    assert text.startswith("b") and cid.version == 1 and cid.codec.name == multicodec
    assert cid.hashfun.name == "sha2-256"
    assert cid.raw_digest == hashlib.sha256(example.data).digest()
    assert str(CID("base32", 1, multicodec, cid.digest)) == text


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.label)
def test_example_decodes_to_the_type_it_names(example: Example) -> None:
    if example.codec in MSGPACK or example.codec == "control":
        assert example.type_name in TYPES[example.codec]
        check_msgpack(example.codec, example.type_name, example.diag, example.data)
        check_cid(example, "raw")
    elif example.codec == "frame":
        decoder = framing.FrameDecoder(1 << 20)
        decoder.feed(example.data)
        payload = decoder.next_frame()
        assert payload is not None and decoder.pending == 0
        assert example.data[:4] == len(payload).to_bytes(4, "big")
        check_msgpack(CODEC_OF_TYPE[example.type_name], example.type_name, example.diag, payload)
    elif example.codec == "dag-cbor":
        assert example.type_name == "DatabaseState"
        heads = {origin: (seq, head) for origin, (seq, head) in example.diag.items()}
        assert database_cid(heads) == example.attrs["cid"]
        decoded: Any = dag_cbor.decode(example.data)
        assert isinstance(decoded, dict)
        assert {o: [s, c.encode("base32")] for o, (s, c) in decoded.items()} == example.diag
        check_cid(example, "dag-cbor")
    elif example.codec == "dag-pb":
        assert example.type_name == "Directory"
        cid = unixfs.cid_from_str(example.attrs["cid"])
        entries = unixfs.read_directory(cid, example.data)
        assert {name: unixfs.cid_str(c) for name, c in entries.items()} == example.diag
        check_cid(example, "dag-pb")
    elif example.codec == "car" and example.type_name == "Header":
        roots, end = car.read_header(example.data)
        assert end == len(example.data) and example.diag["version"] == 1
        assert [unixfs.cid_str(r) for r in roots] == example.diag["roots"]
        assert car.encode_header(roots) == example.data
    elif example.codec == "car" and example.type_name == "Block":
        (block,) = car.iter_blocks(example.data, 0)
        assert unixfs.cid_str(block.cid) == example.diag["cid"]
        assert bytes(block.data) == example.diag["data"]
        unixfs.verify_block(block.cid, block.data)
    else:
        pytest.fail(f"unknown example kind {example.codec} {example.type_name}")


def test_every_message_type_has_an_example() -> None:
    shown = {(e.codec, e.type_name) for e in EXAMPLES}
    wanted = {(c, t) for c, types in TYPES.items() for t in types}
    wanted |= {("frame", "SyncRequest"), ("dag-cbor", "DatabaseState"), ("dag-pb", "Directory")}
    wanted |= {("car", "Header"), ("car", "Block")}
    assert wanted <= shown, f"no example for {sorted(wanted - shown)}"


def test_a_broken_example_would_fail() -> None:
    example = next(e for e in EXAMPLES if e.type_name == "Announce")
    assert example.data[:4] == b"\x89\xa1v\x01"  # map of 9, "v": 1
    with pytest.raises(RemoteProtocolError):  # another wire version
        check_msgpack(
            "messages", "Announce", example.diag, example.data[:3] + b"\x02" + example.data[4:]
        )
    with pytest.raises(RemoteProtocolError):  # truncated
        check_msgpack("messages", "Announce", example.diag, example.data[:-1])
    with pytest.raises(AssertionError):  # a diag that says something else
        check_msgpack("messages", "Announce", {**example.diag, "load": 2.0}, example.data)


# -- what the text states ---------------------------------------------------------------------


def test_stated_constants_hold() -> None:
    text = SPEC.read_text(encoding="utf-8")
    assert f"`{EMPTY_DATABASE_CID}`" in text
    assert f"{codec.MAX_BLOCK >> 20} MiB" in text
    assert f"{messages.MAX_PUSHED_BYTES >> 10} KiB" in text
    assert f"1 … {snapmsg.MAX_WANT} CID" in text
    assert f"str ≤ {messages.MAX_FRAGMENT_SQL}" in text
    assert f"int `1 … {messages.MAX_PARTITIONS}`" in text
    assert f"2 … {changeset.MAX_BASES} pairs" in text
    assert f"`FORMAT_VERSION`, MUST be `{changeset.FORMAT_VERSION}`" in text
    assert f"`FORMAT_COLUMNAR` `{changeset.FORMAT_COLUMNAR}`" in text
    assert f"at most {columnar.MAX_RAW_BYTES >> 20} MiB" in text
    assert f"at most {columnar.MAX_BATCHES} record batches" in text


TYPE_LETTERS = {
    ColType.TEXT: "T", ColType.INT: "I", ColType.FLOAT: "F", ColType.BOOL: "B",
    ColType.JSON: "J", ColType.TIMESTAMP: "TS", ColType.UUID: "U",
}  # fmt: skip


def test_table_of_replicated_columns_matches_the_schema() -> None:
    text = SPEC.read_text(encoding="utf-8")
    for name, table in TABLES.items():
        (row,) = re.findall(rf"^\| `{name}` \| (.*) \|$", text, re.MULTILINE)
        stated = [tuple(cell.strip().split(" ")) for cell in row.split(",")]
        assert stated == [(f"`{c}`", TYPE_LETTERS[k]) for c, k in table.columns], name


def _signed_changesets() -> list[Example]:
    return [e for e in by("changeset") if len(e.diag) == 7]


def test_changeset_examples_form_valid_chains() -> None:
    """Every example block extends its origin's chain the way a receiver checks (6.8)."""
    blocks = by("changeset")
    cids = {e.attrs["cid"]: changeset.decode(e.data) for e in blocks}
    signed = [changeset.decode(e.data) for e in _signed_changesets()]
    assert len(signed) >= 3
    for cs in signed:
        if cs.seq == 1:
            assert cs.prev is None and cs.hlc >= 1
            continue
        assert cs.prev is not None, "a later seq names its predecessor"
        before = cids[cs.prev]
        assert (before.origin, before.seq) == (cs.origin, cs.seq - 1)
        assert cs.hlc > before.hlc, "hlc grows along a chain"
    for cs in signed:
        for table in cs.tables:
            for base in table.bases:
                for version in changeset.base_versions(base):
                    assert version < cs.version, "every change is later than its bases"


def test_signed_example_is_the_unsigned_example_plus_a_signature() -> None:
    unsigned = [e for e in by("changeset") if len(e.diag) == 6]
    assert unsigned
    for plain in unsigned:
        (signed,) = [e for e in _signed_changesets() if e.diag[:6] == plain.diag]
        payload = changeset.signed_payload(signed.data)
        assert payload is not None and payload[0] == plain.data
        assert signed.data == b"\x97" + plain.data[1:] + b"\xc4\x40" + payload[1]


def test_signatures_verify_with_the_key_inside_the_origin_peer_id() -> None:
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    for example in _signed_changesets():
        cs = changeset.decode(example.data)
        identity = multibase.decode("z" + cs.origin)
        assert identity[:6] == bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]), "Ed25519 peer id"
        key = ed25519.Ed25519PublicKey.from_public_bytes(identity[6:])
        payload = changeset.signed_payload(example.data)
        assert payload is not None
        key.verify(payload[1], payload[0])  # raises InvalidSignature


def test_database_cid_example_names_the_example_chain_heads() -> None:
    (state,) = by("dag-cbor")
    heads = {e.attrs["cid"]: changeset.decode(e.data) for e in _signed_changesets()}
    for origin, (seq, head) in state.diag.items():
        cs = heads[head]
        assert (cs.origin, cs.seq) == (origin, seq)
    announced = [e.diag["cid"] for e in by("messages") if e.type_name == "Announce"]
    assert state.attrs["cid"] in announced


def test_pushed_blocks_are_example_blocks_of_the_sender() -> None:
    pushes = [e for e in by("messages") if e.type_name == "Announce" and e.diag["blocks"]]
    assert pushes
    known = {e.data for e in _signed_changesets()}
    for example in pushes:
        for block in example.diag["blocks"]:
            assert block in known
            assert changeset.decode(block).origin == example.diag["peer"]


def test_columnar_example_holds_the_rows_the_text_states() -> None:
    """C#1 (6.10): its Arrow stream decodes to the table above it, wire-typed."""
    (example,) = [e for e in _signed_changesets() if e.diag[0] == changeset.FORMAT_COLUMNAR]
    cs = changeset.decode(example.data)
    (table,) = cs.tables
    assert table.arrow is not None and table.arrow.num_rows == 3
    text = SPEC.read_text(encoding="utf-8")
    section = text[text.index("### 6.10") : text.index("## 7.")]
    stated = re.findall(r"^\| `([0-9a-f-]{36})` \| `([^`]+)` \| `([^`]+)` \| (\w+) \| ([\d.]+) \|$",
                        section, re.MULTILINE)  # fmt: skip
    assert len(stated) == 3
    rows = list(table.rows())
    for row, (key, model, hardware, batch, throughput) in zip(rows, stated, strict=True):
        assert row["result_id"] == key and row["model_id"] == model
        assert row["hardware_id"] == hardware
        assert row["batch_size"] == (None if batch == "null" else int(batch))
        assert row["throughput_items_per_second"] == float(throughput)
        assert row["created_at"] == 1750000000000000
    assert table.arrow.schema == columnar.wire_schema(table.table, table.columns)
