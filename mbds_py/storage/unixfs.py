"""UnixFS import with the CIDs Kubo's default ``ipfs add`` gives.

Kubo's defaults, reproduced here byte for byte:

- fixed-size chunks of 262144 bytes (``--chunker=size-262144``);
- balanced DAG, at most 174 links per node (``--trickle=false``);
- leaves are dag-pb nodes holding UnixFS ``File`` data (``--raw-leaves=false``);
- dag-pb (0x70) blocks addressed by sha2-256 multihashes, CIDv0 (base58btc ``Qm…``).

This module is pure: no I/O, no network.  It also holds the small codecs that
the format needs (varint, protobuf fields for PBNode/PBLink and UnixFS Data,
base58btc, base32, multihash, CID) and a reader (:func:`iter_file`) that
walks a stored DAG back into bytes.

Specs: https://ipld.io/specs/codecs/dag-pb/spec/ ,
https://github.com/ipfs/specs/blob/main/UNIXFS.md ,
https://github.com/multiformats/cid .
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mbds_py.storage.errors import ContentMismatchError, InvalidCIDError, UnsupportedContentError

__all__ = [
    "CHUNK_SIZE",
    "CID",
    "DAG_PB",
    "MAX_LINKS",
    "RAW",
    "SHA2_256",
    "Block",
    "DagBuilder",
    "DataType",
    "FileNode",
    "ImportResult",
    "PBLink",
    "PBNode",
    "UnixFSData",
    "b58decode",
    "b58encode",
    "cid_of",
    "cid_of_file",
    "decode_file_node",
    "decode_pbnode",
    "decode_unixfs",
    "decode_varint",
    "encode_pbnode",
    "encode_unixfs",
    "encode_varint",
    "file_size",
    "import_bytes",
    "iter_file",
    "parse_cid",
    "sha256_multihash",
    "verify_content",
]

CHUNK_SIZE = 262144
"""Bytes per leaf, Kubo's ``size-262144`` chunker."""
MAX_LINKS = 174
"""Links per internal node of Kubo's balanced layout."""
SHA2_256 = 0x12
"""Multicodec code of sha2-256 in a multihash."""
DAG_PB = 0x70
"""Multicodec code of dag-pb blocks."""
RAW = 0x55
"""Multicodec code of raw blocks (CIDv1 ``bafk…`` with ``--raw-leaves``)."""

_SHA256_LEN = 32

# ---------------------------------------------------------------------------------
# varint and protobuf wire format
# ---------------------------------------------------------------------------------

_WT_VARINT = 0
_WT_LEN = 2


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats use it."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode one unsigned varint at ``pos``; return ``(value, next_pos)``.

    Rejects truncated varints, values over 64 bits and non-minimal encodings.
    """
    value = 0
    shift = 0
    start = pos
    end = len(buf)
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 64:
            raise ValueError("varint longer than 64 bits")
    if value >= 1 << 64:
        raise ValueError("varint longer than 64 bits")
    if pos - start > 1 and buf[pos - 1] == 0:
        raise ValueError("non-minimal varint")
    return value, pos


def _key(field_no: int, wire_type: int) -> bytes:
    return encode_varint((field_no << 3) | wire_type)


def _len_field(field_no: int, payload: bytes | memoryview) -> bytes:
    return _key(field_no, _WT_LEN) + encode_varint(len(payload)) + bytes(payload)


def _varint_field(field_no: int, value: int) -> bytes:
    return _key(field_no, _WT_VARINT) + encode_varint(value)


def _iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field_no, wire_type, value)``; length-delimited values as memoryviews."""
    view = memoryview(buf)
    pos = 0
    end = len(view)
    while pos < end:
        key, pos = decode_varint(view, pos)
        field_no, wire_type = key >> 3, key & 7
        if field_no == 0:
            raise ValueError("protobuf field number 0")
        if wire_type == _WT_VARINT:
            value, pos = decode_varint(view, pos)
            yield field_no, wire_type, value
        elif wire_type == _WT_LEN:
            length, pos = decode_varint(view, pos)
            if pos + length > end:
                raise ValueError("length-delimited field runs past the end")
            yield field_no, wire_type, view[pos:pos + length]
            pos += length
        elif wire_type == 1:  # fixed64
            if pos + 8 > end:
                raise ValueError("truncated fixed64 field")
            yield field_no, wire_type, int.from_bytes(view[pos:pos + 8], "little")
            pos += 8
        elif wire_type == 5:  # fixed32
            if pos + 4 > end:
                raise ValueError("truncated fixed32 field")
            yield field_no, wire_type, int.from_bytes(view[pos:pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")


# ---------------------------------------------------------------------------------
# base58btc, base32, multihash, CID
# ---------------------------------------------------------------------------------

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Bitcoin base58 (multibase ``z`` without the prefix)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    out = []
    while num:
        num, rem = divmod(num, 58)
        out.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; ``ValueError`` on a character outside the alphabet."""
    num = 0
    for ch in text:
        try:
            num = num * 58 + _B58_INDEX[ch]
        except KeyError:
            raise ValueError(f"invalid base58 character {ch!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def _b32encode_lower(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _b32decode_lower(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    return base64.b32decode(padded)


def sha256_multihash(data: bytes | memoryview) -> bytes:
    """The sha2-256 multihash of ``data``: ``0x12 0x20`` followed by the digest."""
    return b"\x12\x20" + hashlib.sha256(data).digest()


def _split_multihash(mh: bytes) -> tuple[int, bytes]:
    code, pos = decode_varint(mh, 0)
    length, pos = decode_varint(mh, pos)
    digest = mh[pos:]
    if len(digest) != length:
        raise ValueError(f"multihash digest is {len(digest)} bytes, header says {length}")
    return code, digest


@dataclass(frozen=True, slots=True)
class CID:
    """A content identifier: version, content codec and multihash.

    ``str(cid)`` is base58btc for version 0 and base32 (``b…``) for version 1.
    Two CIDs name the same bytes when ``codec`` and ``multihash`` agree.
    """

    version: int
    codec: int
    multihash: bytes

    def __post_init__(self) -> None:
        if self.version == 0 and (self.codec != DAG_PB or not self.multihash.startswith(b"\x12\x20")):
            raise InvalidCIDError("CIDv0 must be dag-pb with a sha2-256 multihash")
        if self.version not in (0, 1):
            raise InvalidCIDError(f"unsupported CID version {self.version}")

    @classmethod
    def v0(cls, multihash: bytes) -> CID:
        """The CIDv0 of a dag-pb block with this sha2-256 multihash."""
        return cls(0, DAG_PB, multihash)

    @property
    def hash_code(self) -> int:
        """Multihash function code (0x12 = sha2-256)."""
        return _split_multihash(self.multihash)[0]

    @property
    def digest(self) -> bytes:
        """The raw digest inside the multihash."""
        return _split_multihash(self.multihash)[1]

    def to_bytes(self) -> bytes:
        """Binary CID, as it appears in a dag-pb link."""
        if self.version == 0:
            return self.multihash
        return encode_varint(1) + encode_varint(self.codec) + self.multihash

    def same_content(self, other: CID) -> bool:
        """True if both name the same block (ignores version and text encoding)."""
        return self.codec == other.codec and self.multihash == other.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return b58encode(self.multihash)
        return "b" + _b32encode_lower(self.to_bytes())


def _cid_from_bytes(raw: bytes) -> CID:
    if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
        return CID.v0(bytes(raw))
    try:
        version, pos = decode_varint(raw, 0)
        codec, pos = decode_varint(raw, pos)
        multihash = bytes(raw[pos:])
        _split_multihash(multihash)
    except ValueError as exc:
        raise InvalidCIDError(f"malformed binary CID: {exc}") from None
    if version != 1:
        raise InvalidCIDError(f"unsupported CID version {version}")
    return CID(1, codec, multihash)


def parse_cid(text: str | CID) -> CID:
    """Parse a CIDv0 (``Qm…``) or a base32 CIDv1 (``b…``); ``/ipfs/`` prefixes are accepted.

    Raises :class:`InvalidCIDError` (a ``ValueError``) naming the input otherwise.
    """
    if isinstance(text, CID):
        return text
    original = text
    text = text.strip()
    if text.startswith("/ipfs/"):
        text = text[len("/ipfs/"):]
    if "/" in text:
        raise InvalidCIDError(f"{original!r}: only plain CIDs are served, not paths inside a DAG")
    try:
        if len(text) == 46 and text.startswith("Qm"):
            raw = b58decode(text)
            if len(raw) != 34 or raw[:2] != b"\x12\x20":
                raise ValueError("not a sha2-256 multihash")
            return CID.v0(raw)
        if text.startswith("b") and len(text) > 1:
            return _cid_from_bytes(_b32decode_lower(text[1:]))
    except (ValueError, base64.binascii.Error) as exc:
        raise InvalidCIDError(f"{original!r} is not a valid CID: {exc}") from None
    raise InvalidCIDError(
        f"{original!r} is not a CID this node understands; "
        "use a CIDv0 ('Qm…') or a base32 CIDv1 ('b…')"
    )


# ---------------------------------------------------------------------------------
# dag-pb: PBNode / PBLink
# ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PBLink:
    """A dag-pb link: binary CID of the child, name, cumulative size of the child's DAG."""

    hash: bytes
    name: str | None = ""
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A dag-pb node: links then opaque data (UnixFS ``Data`` for files)."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def _encode_pblink(link: PBLink) -> bytes:
    out = _len_field(1, link.hash)
    if link.name is not None:
        out += _len_field(2, link.name.encode("utf-8"))
    if link.tsize is not None:
        out += _varint_field(3, link.tsize)
    return out


def encode_pbnode(node: PBNode) -> bytes:
    """Canonical dag-pb bytes: links (field 2) first, then data (field 1)."""
    parts = [_len_field(2, _encode_pblink(link)) for link in node.links]
    if node.data is not None:
        parts.append(_len_field(1, node.data))
    return b"".join(parts)


def _decode_pblink(buf: memoryview) -> PBLink:
    hash_: bytes | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    for field_no, wire_type, value in _iter_fields(buf):
        if field_no <= last:
            raise ValueError("PBLink fields out of order or repeated")
        last = field_no
        if field_no == 1 and wire_type == _WT_LEN:
            hash_ = bytes(value)
        elif field_no == 2 and wire_type == _WT_LEN:
            name = bytes(value).decode("utf-8")
        elif field_no == 3 and wire_type == _WT_VARINT:
            tsize = value
        else:
            raise ValueError(f"unexpected PBLink field {field_no} (wire type {wire_type})")
    if hash_ is None:
        raise ValueError("PBLink without Hash")
    return PBLink(hash_, name, tsize)


def decode_pbnode(block: bytes | memoryview) -> PBNode:
    """Strict dag-pb decoding (links before data, no unknown fields)."""
    links: list[PBLink] = []
    data: bytes | None = None
    for field_no, wire_type, value in _iter_fields(block):
        if wire_type != _WT_LEN:
            raise ValueError(f"unexpected PBNode wire type {wire_type}")
        if field_no == 2:
            if data is not None:
                raise ValueError("PBNode link after data")
            links.append(_decode_pblink(value))
        elif field_no == 1:
            if data is not None:
                raise ValueError("PBNode with two data fields")
            data = bytes(value)
        else:
            raise ValueError(f"unexpected PBNode field {field_no}")
    return PBNode(tuple(links), data)


# ---------------------------------------------------------------------------------
# UnixFS Data
# ---------------------------------------------------------------------------------


class DataType(enum.IntEnum):
    """UnixFS ``Data.DataType``."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """The UnixFS fields a file needs; others are tolerated on decode and dropped."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()


def encode_unixfs(msg: UnixFSData) -> bytes:
    """Encode in field order, as go-unixfs does (proto2, unpacked ``blocksizes``)."""
    out = [_varint_field(1, int(msg.type))]
    if msg.data is not None:
        out.append(_len_field(2, msg.data))
    if msg.filesize is not None:
        out.append(_varint_field(3, msg.filesize))
    out.extend(_varint_field(4, size) for size in msg.blocksizes)
    return b"".join(out)


def decode_unixfs(buf: bytes | memoryview) -> UnixFSData:
    """Decode UnixFS ``Data``; ``ValueError`` if malformed."""
    type_: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    for field_no, wire_type, value in _iter_fields(buf):
        if field_no == 1 and wire_type == _WT_VARINT:
            type_ = value
        elif field_no == 2 and wire_type == _WT_LEN:
            data = bytes(value)
        elif field_no == 3 and wire_type == _WT_VARINT:
            filesize = value
        elif field_no == 4 and wire_type == _WT_VARINT:
            blocksizes.append(value)
        elif field_no == 4 and wire_type == _WT_LEN:  # packed, tolerated
            pos = 0
            while pos < len(value):
                size, pos = decode_varint(value, pos)
                blocksizes.append(size)
        # hashType, fanout, mode, mtime: not needed to read a file
    if type_ is None:
        raise ValueError("UnixFS Data without Type")
    try:
        dtype = DataType(type_)
    except ValueError:
        raise ValueError(f"unknown UnixFS type {type_}") from None
    return UnixFSData(dtype, data, filesize, tuple(blocksizes))


# ---------------------------------------------------------------------------------
# Import (bytes -> blocks)
# ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """One encoded block and its CID."""

    cid: CID
    data: bytes


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Result of importing one file.

    ``size`` is the cumulative DAG size (Kubo's ``Size`` in ``add`` output),
    ``filesize`` the number of content bytes.  ``blocks`` lists every block,
    children before parents, the root last (empty if blocks were not kept).
    """

    root: CID
    size: int
    filesize: int
    blocks: tuple[Block, ...] = ()

    @property
    def cid(self) -> str:
        """The root CID as text."""
        return str(self.root)


@dataclass(slots=True)
class _Link:
    multihash: bytes
    tsize: int
    filesize: int


@dataclass(slots=True)
class DagBuilder:
    """Incremental balanced-DAG importer; feed bytes with :meth:`update`, then :meth:`finish`.

    Produces the same DAG as go-unixfs ``balanced.Layout`` over a size
    chunker: full subtrees are closed as soon as they hold ``max_links``
    children, and the last partial subtree is wrapped on finish.
    """

    chunk_size: int = CHUNK_SIZE
    max_links: int = MAX_LINKS
    keep_blocks: bool = True
    _buffer: bytearray = field(default_factory=bytearray)
    _levels: list[list[_Link]] = field(default_factory=lambda: [[]])
    _blocks: list[Block] = field(default_factory=list)
    _filesize: int = 0
    _finished: bool = False

    def __post_init__(self) -> None:
        if self.chunk_size <= 0 or self.max_links < 2:
            raise ValueError("chunk_size must be positive and max_links at least 2")

    def update(self, data: bytes | memoryview) -> None:
        """Feed more file bytes."""
        if self._finished:
            raise RuntimeError("DagBuilder.update after finish")
        view = memoryview(data).cast("B")
        if self._buffer:  # top up the pending partial chunk first
            need = self.chunk_size - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) < self.chunk_size:
                return
            self._leaf(memoryview(bytes(self._buffer)))
            self._buffer.clear()
        whole = len(view) - len(view) % self.chunk_size
        for start in range(0, whole, self.chunk_size):  # whole chunks straight from the input
            self._leaf(view[start:start + self.chunk_size])
        self._buffer += view[whole:]

    def finish(self) -> ImportResult:
        """Flush the last chunk, close the open subtrees and return the root."""
        if self._finished:
            raise RuntimeError("DagBuilder.finish called twice")
        self._finished = True
        if self._buffer:
            self._leaf(memoryview(bytes(self._buffer)))
            self._buffer.clear()
        levels = self._levels
        if not any(levels):  # empty file: one leaf without data
            root = self._emit(encode_pbnode(PBNode((), encode_unixfs(UnixFSData(DataType.FILE, None, 0)))))
            return self._result(root)
        depth = 0
        while True:
            higher = any(levels[d] for d in range(depth + 1, len(levels)))
            if not higher and len(levels[depth]) == 1:
                return self._result(levels[depth][0])
            if levels[depth]:
                # a partial subtree under a taller tree, or several roots: wrap them
                self._close(depth)
            depth += 1

    # -- internals --------------------------------------------------------------------

    def _result(self, root: _Link) -> ImportResult:
        return ImportResult(CID.v0(root.multihash), root.tsize, root.filesize, tuple(self._blocks))

    def _emit(self, encoded: bytes) -> _Link:
        mh = sha256_multihash(encoded)
        if self.keep_blocks:
            self._blocks.append(Block(CID.v0(mh), encoded))
        return _Link(mh, len(encoded), 0)

    def _leaf(self, chunk: memoryview) -> None:
        size = len(chunk)
        unixfs = b"\x08\x02" + _len_field(2, chunk) + _varint_field(3, size)
        link = self._emit(_len_field(1, unixfs))
        link.filesize = size
        self._filesize += size
        self._push(0, link)

    def _push(self, depth: int, link: _Link) -> None:
        levels = self._levels
        levels[depth].append(link)
        if len(levels[depth]) == self.max_links:
            self._close(depth)

    def _close(self, depth: int) -> None:
        """Wrap the links pending at ``depth`` into one node one level up."""
        links = self._levels[depth]
        self._levels[depth] = []
        if depth + 1 == len(self._levels):
            self._levels.append([])
        filesize = sum(link.filesize for link in links)
        node = PBNode(
            tuple(PBLink(link.multihash, "", link.tsize) for link in links),
            encode_unixfs(UnixFSData(DataType.FILE, None, filesize,
                                     tuple(link.filesize for link in links))),
        )
        parent = self._emit(encode_pbnode(node))
        parent.tsize += sum(link.tsize for link in links)
        parent.filesize = filesize
        self._push(depth + 1, parent)


def import_bytes(data: bytes | memoryview, *, keep_blocks: bool = True) -> ImportResult:
    """Import ``data`` as Kubo's default ``ipfs add`` does; return the root and blocks."""
    builder = DagBuilder(keep_blocks=keep_blocks)
    builder.update(data)
    return builder.finish()


def cid_of(data: bytes | memoryview) -> str:
    """The CIDv0 Kubo's default ``ipfs add`` prints for ``data``."""
    return str(import_bytes(data, keep_blocks=False).root)


def cid_of_file(path: str, *, read_size: int = 4 * CHUNK_SIZE) -> str:
    """Like :func:`cid_of` for a file on disk, streaming it."""
    builder = DagBuilder(keep_blocks=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(read_size):
            builder.update(chunk)
    return str(builder.finish().root)


def verify_content(cid: str | CID, data: bytes | memoryview) -> None:
    """Check that ``data`` is what ``cid`` names; raise :class:`ContentMismatchError` if not.

    dag-pb CIDs are checked by re-importing with Kubo's default settings; raw
    CIDs by hashing the bytes.  Content added with other settings (raw leaves,
    another chunker, trickle) cannot be re-derived and is refused the same way.
    """
    parsed = parse_cid(cid)
    if parsed.codec == RAW and parsed.multihash.startswith(b"\x12\x20"):
        if sha256_multihash(data) == parsed.multihash:
            return
        raise ContentMismatchError(f"content served for {cid} does not hash to it", cid=str(cid))
    if parsed.codec != DAG_PB or not parsed.multihash.startswith(b"\x12\x20"):
        raise ContentMismatchError(
            f"cannot verify {cid}: only sha2-256 dag-pb and raw CIDs can be checked", cid=str(cid))
    computed = import_bytes(data, keep_blocks=False).root
    if computed.multihash != parsed.multihash:
        raise ContentMismatchError(
            f"content served for {cid} ({len(data)} bytes) imports to {computed}: it was "
            "tampered with, truncated, or added with non-default settings "
            "(raw leaves, another chunker or layout)",
            cid=str(cid),
        )


# ---------------------------------------------------------------------------------
# Export (blocks -> bytes)
# ---------------------------------------------------------------------------------

GetBlock = Callable[[CID], bytes]
"""Returns the verified bytes of a block; raises ``NotFoundError`` if absent."""


@dataclass(frozen=True, slots=True)
class FileNode:
    """One decoded block of a file: its own bytes, its children and the content size under it."""

    data: bytes
    children: tuple[tuple[CID, int], ...]  # (cid, content bytes under it)
    size: int


def decode_file_node(cid: CID, block: bytes) -> FileNode:
    """Decode a file block (dag-pb UnixFS File/Raw, or a raw block) and check its sizes."""
    if cid.codec == RAW:
        return FileNode(block, (), len(block))
    if cid.codec != DAG_PB:
        raise UnsupportedContentError(f"{cid} has codec 0x{cid.codec:x}; only dag-pb and raw files are served")
    try:
        node = decode_pbnode(block)
        if node.data is None:
            raise ValueError("dag-pb node without UnixFS data")
        unixfs = decode_unixfs(node.data)
    except ValueError as exc:
        raise ContentMismatchError(f"block {cid} is corrupt: not a valid UnixFS node ({exc})", cid=str(cid)) from None
    if unixfs.type not in (DataType.FILE, DataType.RAW):
        raise UnsupportedContentError(
            f"{cid} is a UnixFS {unixfs.type.name.lower()}, not a file; only files are served")
    if len(unixfs.blocksizes) != len(node.links):
        raise ContentMismatchError(
            f"block {cid} is corrupt: {len(node.links)} links but {len(unixfs.blocksizes)} block sizes", cid=str(cid))
    data = unixfs.data or b""
    children = []
    for link, size in zip(node.links, unixfs.blocksizes):
        try:
            children.append((_cid_from_bytes(link.hash), size))
        except InvalidCIDError as exc:
            raise ContentMismatchError(f"block {cid} is corrupt: it links to a malformed CID ({exc})", cid=str(cid)) from None
    size = len(data) + sum(unixfs.blocksizes)
    if unixfs.filesize is not None and unixfs.filesize != size:
        raise ContentMismatchError(
            f"block {cid} is corrupt: it declares {unixfs.filesize} bytes but its parts hold {size}", cid=str(cid))
    return FileNode(data, tuple(children), size)


def file_size(get_block: GetBlock, cid: str | CID) -> int:
    """Content bytes of the file at ``cid`` (reads only the root block)."""
    parsed = parse_cid(cid)
    return decode_file_node(parsed, get_block(parsed)).size


def iter_file(get_block: GetBlock, cid: str | CID, offset: int = 0,
              length: int | None = None) -> Iterator[memoryview]:
    """Yield the content of the file at ``cid`` from ``offset``, at most ``length`` bytes.

    Subtrees outside the range are skipped using the UnixFS block sizes.  A
    child whose content disagrees with its parent's size record raises
    :class:`ContentMismatchError`.
    """
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must be non-negative")
    parsed = parse_cid(cid)
    end = None if length is None else offset + length
    yield from _walk(get_block, parsed, None, offset, end)


def _walk(get_block: GetBlock, cid: CID, expected: int | None, start: int,
          end: int | None) -> Iterator[memoryview]:
    node = decode_file_node(cid, get_block(cid))
    if expected is not None and node.size != expected:
        raise ContentMismatchError(
            f"block {cid} is corrupt: it holds {node.size} bytes, its parent says {expected}", cid=str(cid))
    pos = 0
    pieces: Iterable[tuple[CID | None, int]] = [(None, len(node.data))] + list(node.children)
    for child, size in pieces:
        lo, hi = pos, pos + size
        pos = hi
        if hi <= start or size == 0:
            continue
        if end is not None and lo >= end:
            break
        rel_start = max(start - lo, 0)
        rel_end = size if end is None else min(end - lo, size)
        if child is None:
            yield memoryview(node.data)[rel_start:rel_end]
        else:
            yield from _walk(get_block, child, size, rel_start, rel_end)
