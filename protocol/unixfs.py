"""UnixFS files and directories as IPFS builds them, sans-IO.

Files are cut into fixed 256 KiB chunks stored as raw leaves (CIDv1, codec ``raw``),
linked by DAG-PB/UnixFS ``File`` nodes in a balanced DAG of at most 174 links per node:
kubo's defaults for ``ipfs add --cid-version=1 --raw-leaves``. A file of one chunk is
its raw leaf. Directories are DAG-PB nodes with UnixFS ``Directory`` data and links
sorted by name. Every CID is CIDv1 with a sha2-256 multihash, so any IPFS
implementation that imports the same files gets the same CIDs.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from protocol import dagpb
from protocol.dagpb import DataType, PBLink, PBNode, UnixFSData, decode_uvarint, encode_uvarint
from protocol.errors import RemoteProtocolError

RAW = 0x55
DAG_PB = 0x70
DAG_CBOR = 0x71
SHA2_256 = 0x12
CHUNK_SIZE = 262144
MAX_LINKS = 174
MAX_DEPTH = 8  # 174**8 chunks of 256 KiB is far beyond any file we read
MAX_BLOCK = 2 << 20  # the usual IPFS block limit (bitswap)


@dataclass(frozen=True)
class Block:
    """A block and its binary CID."""

    cid: bytes
    data: bytes


@dataclass(frozen=True)
class Entry:
    """A file or directory root: CID, cumulative DAG size (``Tsize``), content size."""

    cid: bytes
    tsize: int
    size: int


def make_cid(codec: int, data: bytes | memoryview) -> bytes:
    """Binary CIDv1 of ``data`` with a sha2-256 multihash."""
    digest = hashlib.sha256(data).digest()
    return bytes([1]) + encode_uvarint(codec) + bytes([SHA2_256, 32]) + digest


def cid_str(cid: bytes) -> str:
    """Base32 (``b…``) text form of a binary CIDv1."""
    return "b" + base64.b32encode(cid).decode().lower().rstrip("=")


def cid_from_str(text: str) -> bytes:
    """Binary form of a base32 CIDv1 string; anything else is a RemoteProtocolError."""
    if not text.startswith("b") or len(text) > 200:
        raise RemoteProtocolError(f"not a base32 CIDv1: {text[:80]!r}")
    body = text[1:].upper()
    try:
        cid = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise RemoteProtocolError(f"bad CID {text[:80]!r}: {exc}") from exc
    parse_cid(cid, 0, whole=True)
    return cid


@dataclass(frozen=True)
class CidInfo:
    """Parsed fields of a CID."""

    version: int
    codec: int
    hash_code: int
    digest: bytes
    end: int  # position after the CID in the buffer it was read from


def parse_cid(buf: bytes | memoryview, pos: int = 0, whole: bool = False) -> CidInfo:
    """Parse a binary CID (v0 or v1) at ``pos``; ``whole`` demands it ends the buffer."""
    if len(buf) - pos >= 34 and buf[pos] == SHA2_256 and buf[pos + 1] == 32:
        info = CidInfo(0, DAG_PB, SHA2_256, bytes(buf[pos + 2 : pos + 34]), pos + 34)
    else:
        version, at = decode_uvarint(buf, pos)
        if version != 1:
            raise RemoteProtocolError(f"unsupported CID version {version}")
        codec, at = decode_uvarint(buf, at)
        code, at = decode_uvarint(buf, at)
        length, at = decode_uvarint(buf, at)
        if length > 128 or at + length > len(buf):
            raise RemoteProtocolError("CID digest runs past the end")
        info = CidInfo(1, codec, code, bytes(buf[at : at + length]), at + length)
    if whole and info.end != len(buf):
        raise RemoteProtocolError("trailing bytes after CID")
    return info


def verify_block(cid: bytes, data: bytes | memoryview) -> CidInfo:
    """Check that ``data`` hashes to ``cid`` (sha2-256 only); return the parsed CID."""
    info = parse_cid(cid, 0, whole=True)
    if info.hash_code != SHA2_256 or len(info.digest) != 32:
        raise RemoteProtocolError(f"unsupported multihash 0x{info.hash_code:x} in {cid_str(cid)}")
    if hashlib.sha256(data).digest() != info.digest:
        raise RemoteProtocolError(f"block {cid_str(cid)}: hash mismatch")
    return info


# -- writing ---------------------------------------------------------------------------


@dataclass
class _Child:
    cid: bytes
    tsize: int
    size: int


class FileBuilder:
    """Chunk a file fed in pieces into raw leaves and a balanced DAG.

    ``write`` returns the blocks completed so far; ``finish`` returns the root entry and
    the remaining blocks. Blocks come out children first, so a CAR written in this order
    can be streamed.
    """

    def __init__(self, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> None:
        self.chunk_size = chunk_size
        self.max_links = max_links
        self._pending = bytearray()
        self._levels: list[list[_Child]] = [[]]
        self._out: list[Block] = []
        self._leaves = 0

    def write(self, data: bytes | memoryview) -> list[Block]:
        """Add file content; return the blocks it completed."""
        self._pending += data
        while len(self._pending) >= self.chunk_size:
            self._leaf(bytes(self._pending[: self.chunk_size]))
            del self._pending[: self.chunk_size]
        return self._take()

    def finish(self) -> tuple[Entry, list[Block]]:
        """Flush the last chunk and build the upper levels; (root entry, last blocks)."""
        if self._pending or self._leaves == 0:
            self._leaf(bytes(self._pending))
            self._pending.clear()
        level = 0
        while True:
            items = self._levels[level]
            above = any(self._levels[level + 1 :])
            if not above and len(items) == 1:
                root = items[0]
                return Entry(root.cid, root.tsize, root.size), self._take()
            if items:
                self._levels[level] = []
                self._push(level + 1, self._node(items))
            level += 1

    def _take(self) -> list[Block]:
        out, self._out = self._out, []
        return out

    def _leaf(self, chunk: bytes) -> None:
        cid = make_cid(RAW, chunk)
        self._out.append(Block(cid, chunk))
        self._leaves += 1
        self._push(0, _Child(cid, len(chunk), len(chunk)))

    def _push(self, level: int, child: _Child) -> None:
        while len(self._levels) <= level:
            self._levels.append([])
        self._levels[level].append(child)
        if len(self._levels[level]) == self.max_links:  # full: one node a level up
            items, self._levels[level] = self._levels[level], []
            self._push(level + 1, self._node(items))

    def _node(self, children: list[_Child]) -> _Child:
        size = sum(c.size for c in children)
        meta = UnixFSData(DataType.FILE, None, size, tuple(c.size for c in children))
        links = tuple(PBLink(c.cid, "", c.tsize) for c in children)
        data = dagpb.encode_node(PBNode(links, dagpb.encode_unixfs(meta)))
        cid = make_cid(DAG_PB, data)
        self._out.append(Block(cid, data))
        return _Child(cid, len(data) + sum(c.tsize for c in children), size)


def file_blocks(data: bytes) -> tuple[Entry, list[Block]]:
    """All blocks of a file held in memory (root last)."""
    builder = FileBuilder()
    blocks = builder.write(data)
    root, rest = builder.finish()
    return root, blocks + rest


def directory(entries: Mapping[str, Entry]) -> tuple[Entry, Block]:
    """A UnixFS directory node linking ``entries`` (sorted by name, as the spec asks)."""
    for name in entries:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"bad file name {name!r}")
    names = sorted(entries, key=lambda n: n.encode())
    links = tuple(PBLink(entries[n].cid, n, entries[n].tsize) for n in names)
    data = dagpb.encode_node(PBNode(links, dagpb.encode_unixfs(UnixFSData(DataType.DIRECTORY))))
    cid = make_cid(DAG_PB, data)
    tsize = len(data) + sum(entries[n].tsize for n in names)
    return Entry(cid, tsize, sum(entries[n].size for n in names)), Block(cid, data)


# -- reading ---------------------------------------------------------------------------


def read_directory(cid: bytes, data: bytes) -> dict[str, bytes]:
    """Names and child CIDs of a UnixFS directory block (hostile input)."""
    node = _unixfs_node(cid, data)
    meta = _meta(node)
    if meta.type is not DataType.DIRECTORY:
        raise RemoteProtocolError(f"{cid_str(cid)} is not a directory")
    out: dict[str, bytes] = {}
    for link in node.links:
        if not link.name or "/" in link.name or link.name in out:
            raise RemoteProtocolError(f"directory {cid_str(cid)}: bad entry name {link.name!r}")
        parse_cid(link.hash, 0, whole=True)
        out[link.name] = link.hash
    return out


def file_children(cid: bytes, data: bytes) -> tuple[list[bytes], int]:
    """Child CIDs of a file node and its declared size; a raw leaf has no children."""
    info = parse_cid(cid, 0, whole=True)
    if info.codec == RAW:
        return [], len(data)
    node = _unixfs_node(cid, data)
    meta = _meta(node)
    if meta.type not in (DataType.FILE, DataType.RAW) or meta.data:
        raise RemoteProtocolError(f"{cid_str(cid)}: not a file node this reader supports")
    if len(meta.blocksizes) != len(node.links):
        raise RemoteProtocolError(f"{cid_str(cid)}: blocksizes do not match links")
    if meta.filesize != sum(meta.blocksizes):
        raise RemoteProtocolError(f"{cid_str(cid)}: filesize does not match blocksizes")
    for link in node.links:
        parse_cid(link.hash, 0, whole=True)
    return [link.hash for link in node.links], meta.filesize


def iter_file(get: Callable[[bytes], bytes], root: bytes) -> Iterator[bytes]:
    """The content of the file at ``root``, chunk by chunk, blocks from ``get(cid)``.

    Sizes declared by nodes are checked against what the leaves hold.
    """
    yield from _walk(get, root, 0)


def file_leaves(
    get: Callable[[bytes], bytes], size_of: Callable[[bytes], int], root: bytes
) -> list[tuple[bytes, int]]:
    """The raw leaves of the file at ``root`` in order, with their sizes (``size_of``),
    reading only the inner nodes: random access without reading the content. Declared
    sizes are checked against the leaves, as :func:`iter_file` does."""
    out: list[tuple[bytes, int]] = []
    _leaves(get, size_of, root, 0, out)
    return out


def _leaves(
    get: Callable[[bytes], bytes],
    size_of: Callable[[bytes], int],
    cid: bytes,
    depth: int,
    out: list[tuple[bytes, int]],
) -> int:
    if depth > MAX_DEPTH:
        raise RemoteProtocolError("file DAG deeper than supported")
    if parse_cid(cid, 0, whole=True).codec == RAW:
        out.append((cid, size_of(cid)))
        return out[-1][1]
    children, size = file_children(cid, get(cid))
    if not children:
        raise RemoteProtocolError(f"{cid_str(cid)}: file node without children")
    seen = sum(_leaves(get, size_of, child, depth + 1, out) for child in children)
    if seen != size:
        raise RemoteProtocolError(f"{cid_str(cid)}: declares {size} bytes, holds {seen}")
    return seen


def _walk(get: Callable[[bytes], bytes], cid: bytes, depth: int) -> Iterator[bytes]:
    if depth > MAX_DEPTH:
        raise RemoteProtocolError("file DAG deeper than supported")
    data = get(cid)
    children, size = file_children(cid, data)
    if not children:
        if parse_cid(cid).codec != RAW:
            raise RemoteProtocolError(f"{cid_str(cid)}: file node without children")
        yield data
        return
    seen = 0
    for child in children:
        for piece in _walk(get, child, depth + 1):
            seen += len(piece)
            yield piece
    if seen != size:
        raise RemoteProtocolError(f"{cid_str(cid)}: declares {size} bytes, holds {seen}")


def _unixfs_node(cid: bytes, data: bytes) -> PBNode:
    if parse_cid(cid, 0, whole=True).codec != DAG_PB:
        raise RemoteProtocolError(f"{cid_str(cid)}: expected a dag-pb node")
    return dagpb.decode_node(data)


def _meta(node: PBNode) -> UnixFSData:
    if node.data is None:
        raise RemoteProtocolError("dag-pb node without UnixFS data")
    return dagpb.decode_unixfs(node.data)
