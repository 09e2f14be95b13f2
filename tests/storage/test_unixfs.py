"""Pure UnixFS/dag-pb/CID code: codecs, the balanced layout, reading a DAG back."""

from __future__ import annotations

import hashlib

import pytest
from _storage_support import payload
from hypothesis import given, settings
from hypothesis import strategies as st

from mbds_py.storage import unixfs
from mbds_py.storage.errors import ContentMismatchError, InvalidCIDError, UnsupportedContentError
from mbds_py.storage.unixfs import (
    CID,
    DAG_PB,
    RAW,
    DagBuilder,
    DataType,
    PBLink,
    PBNode,
    UnixFSData,
    b58decode,
    b58encode,
    cid_of,
    decode_pbnode,
    decode_unixfs,
    decode_varint,
    encode_pbnode,
    encode_unixfs,
    encode_varint,
    import_bytes,
    iter_file,
    parse_cid,
    verify_content,
)

EMPTY_FILE_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"  # Kubo: `ipfs add` of an empty file
HELLO_WORLD_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # Kubo: `echo "hello world" | ipfs add`
HELLO_WORLD_CID_V1 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"


# ---------------------------------------------------------------------------------------------
# a straight port of go-unixfs importer/balanced.Layout, used as the reference model
# ---------------------------------------------------------------------------------------------


def _reference_layout(data: bytes, chunk_size: int, max_links: int) -> str:
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    pos = 0

    def leaf() -> tuple[bytes, int, int]:  # (multihash, tsize, filesize)
        nonlocal pos
        chunk = chunks[pos]
        pos += 1
        block = encode_pbnode(PBNode((), encode_unixfs(UnixFSData(DataType.FILE, chunk, len(chunk)))))
        return unixfs.sha256_multihash(block), len(block), len(chunk)

    def node_of(children: list[tuple[bytes, int, int]]) -> tuple[bytes, int, int]:
        filesize = sum(c[2] for c in children)
        block = encode_pbnode(PBNode(
            tuple(PBLink(mh, "", tsize) for mh, tsize, _ in children),
            encode_unixfs(UnixFSData(DataType.FILE, None, filesize, tuple(c[2] for c in children)))))
        return unixfs.sha256_multihash(block), len(block) + sum(c[1] for c in children), filesize

    def fill(depth: int, first: tuple[bytes, int, int] | None) -> tuple[bytes, int, int]:
        children = [first] if first else []
        while len(children) < max_links and pos < len(chunks):
            children.append(leaf() if depth == 1 else fill(depth - 1, None))
        return node_of(children)

    if not chunks:
        block = encode_pbnode(PBNode((), encode_unixfs(UnixFSData(DataType.FILE, None, 0))))
        return str(CID.v0(unixfs.sha256_multihash(block)))
    root = leaf()
    depth = 1
    while pos < len(chunks):
        root = fill(depth, root)
        depth += 1
    return str(CID.v0(root[0]))


# ---------------------------------------------------------------------------------------------
# codecs
# ---------------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trips(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == (value, len(encoded))


@pytest.mark.parametrize("raw,expected", [(b"", "truncated varint"), (b"\x80", "truncated varint"),
                                          (b"\xff" * 10 + b"\x01", "varint longer than 64 bits"),
                                          (b"\x80\x00", "non-minimal varint")])
def test_decode_varint_rejects_truncated_oversized_and_non_minimal(raw: bytes, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        decode_varint(raw)


@given(st.binary(max_size=64))
def test_base58_round_trips(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_base58_keeps_leading_zero_bytes() -> None:
    assert b58encode(b"\0\0\x01") == "112"
    assert b58decode("112") == b"\0\0\x01"


def test_b58decode_rejects_characters_outside_the_alphabet() -> None:
    with pytest.raises(ValueError, match="invalid base58 character '0'"):
        b58decode("Qm0")


def test_pbnode_encodes_links_before_data_and_round_trips() -> None:
    node = PBNode((PBLink(b"\x12\x20" + bytes(32), "", 7), PBLink(b"\x12\x20" + bytes([1]) * 32, None, None)),
                  b"payload")
    encoded = encode_pbnode(node)
    assert encoded[0] == 0x12  # field 2 (Links) comes first, as dag-pb requires
    assert decode_pbnode(encoded) == node


def test_decode_pbnode_rejects_data_before_links() -> None:
    link = encode_pbnode(PBNode((PBLink(b"\x12\x20" + bytes(32), "", 1),)))
    with pytest.raises(ValueError, match="link after data"):
        decode_pbnode(encode_pbnode(PBNode((), b"x")) + link)


def test_unixfs_data_round_trips() -> None:
    msg = UnixFSData(DataType.FILE, None, 300, (100, 200))
    assert decode_unixfs(encode_unixfs(msg)) == msg


def test_empty_file_block_is_kubos_exact_bytes() -> None:
    result = import_bytes(b"")
    assert [block.data for block in result.blocks] == [bytes.fromhex("0a0408021800")]
    assert result.cid == EMPTY_FILE_CID
    assert result.size == 6


# ---------------------------------------------------------------------------------------------
# CIDs
# ---------------------------------------------------------------------------------------------


def test_hello_world_has_kubos_cid() -> None:
    assert cid_of(b"hello world\n") == HELLO_WORLD_CID


def test_cid_v1_text_names_the_same_block_as_v0() -> None:
    v0, v1 = parse_cid(HELLO_WORLD_CID), parse_cid(HELLO_WORLD_CID_V1)
    assert v1.version == 1 and v1.codec == DAG_PB
    assert v0.same_content(v1)
    assert str(CID(1, DAG_PB, v0.multihash)) == HELLO_WORLD_CID_V1
    assert str(parse_cid("/ipfs/" + HELLO_WORLD_CID)) == HELLO_WORLD_CID


@pytest.mark.parametrize("text", [
    "", "Qm", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5O",  # 'O' is not base58
    "hello", "zQmT78", "bnotbase32!", HELLO_WORLD_CID + "/a",
])
def test_parse_cid_rejects_malformed_text_naming_it(text: str) -> None:
    with pytest.raises(InvalidCIDError) as info:
        parse_cid(text)
    assert repr(text) in str(info.value)


# ---------------------------------------------------------------------------------------------
# the balanced layout
# ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(size=st.integers(min_value=0, max_value=200), chunk_size=st.integers(min_value=1, max_value=5),
       max_links=st.integers(min_value=2, max_value=4))
def test_builder_matches_go_balanced_layout(size: int, chunk_size: int, max_links: int) -> None:
    data = payload(size)
    builder = DagBuilder(chunk_size=chunk_size, max_links=max_links)
    builder.update(data)
    assert builder.finish().cid == _reference_layout(data, chunk_size, max_links)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=0, max_value=3 * unixfs.CHUNK_SIZE + 10),
       cuts=st.lists(st.integers(min_value=0, max_value=3 * unixfs.CHUNK_SIZE + 10), max_size=5))
def test_builder_result_does_not_depend_on_how_input_is_split(size: int, cuts: list[int]) -> None:
    data = payload(size, seed=1)
    bounds = sorted({0, size, *(min(c, size) for c in cuts)})
    builder = DagBuilder(keep_blocks=False)
    for lo, hi in zip(bounds, bounds[1:]):
        builder.update(data[lo:hi])
    assert builder.finish().cid == cid_of(data)


def test_file_of_174_chunks_plus_one_byte_gets_a_second_level() -> None:
    data = payload(2 * 174 + 1)
    builder = DagBuilder(chunk_size=2)
    builder.update(data)
    result = builder.finish()
    root = decode_pbnode(result.blocks[-1].data)
    assert len(root.links) == 2  # full subtree of 174 leaves + subtree with the last byte
    assert decode_unixfs(root.data).blocksizes == (348, 1)


def test_blocks_are_listed_children_first_root_last() -> None:
    result = import_bytes(payload(3 * unixfs.CHUNK_SIZE))
    assert len(result.blocks) == 4
    assert result.blocks[-1].cid == result.root
    for block in result.blocks:
        assert hashlib.sha256(block.data).digest() == block.cid.digest


# ---------------------------------------------------------------------------------------------
# reading back
# ---------------------------------------------------------------------------------------------


def _getter(blocks: dict[bytes, bytes]):
    return lambda cid: blocks[cid.multihash]


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=0, max_value=60), offset=st.integers(min_value=0, max_value=70),
       length=st.one_of(st.none(), st.integers(min_value=0, max_value=70)))
def test_iter_file_returns_the_requested_range(size: int, offset: int, length: int | None) -> None:
    data = payload(size, seed=2)
    builder = DagBuilder(chunk_size=3, max_links=2)  # deep trees from small inputs
    builder.update(data)
    result = builder.finish()
    blocks = {block.cid.multihash: block.data for block in result.blocks}
    got = b"".join(iter_file(_getter(blocks), result.root, offset, length))
    assert got == data[offset:None if length is None else offset + length]


def test_iter_file_rejects_a_child_whose_size_disagrees_with_its_parent() -> None:
    first = import_bytes(b"abc")
    parent = PBNode((PBLink(first.root.to_bytes(), "", first.size),),
                    encode_unixfs(UnixFSData(DataType.FILE, None, 4, (4,))))
    encoded = encode_pbnode(parent)
    root = CID.v0(unixfs.sha256_multihash(encoded))
    blocks = {root.multihash: encoded, first.root.multihash: first.blocks[0].data}
    with pytest.raises(ContentMismatchError, match="is corrupt"):
        b"".join(iter_file(_getter(blocks), root))


def test_iter_file_refuses_a_directory() -> None:
    encoded = encode_pbnode(PBNode((), encode_unixfs(UnixFSData(DataType.DIRECTORY))))
    root = CID.v0(unixfs.sha256_multihash(encoded))
    with pytest.raises(UnsupportedContentError, match="directory"):
        list(iter_file(_getter({root.multihash: encoded}), root))


def test_iter_file_serves_raw_blocks() -> None:
    data = b"raw leaf"
    raw = CID(1, RAW, unixfs.sha256_multihash(data))
    assert b"".join(iter_file(_getter({raw.multihash: data}), raw)) == data


# ---------------------------------------------------------------------------------------------
# verify_content
# ---------------------------------------------------------------------------------------------


def test_verify_content_accepts_matching_bytes_in_either_cid_version() -> None:
    verify_content(HELLO_WORLD_CID, b"hello world\n")
    verify_content(HELLO_WORLD_CID_V1, b"hello world\n")


def test_verify_content_raises_naming_the_cid_on_tampered_bytes() -> None:
    with pytest.raises(ContentMismatchError) as info:
        verify_content(HELLO_WORLD_CID, b"hello world!")
    assert info.value.cid == HELLO_WORLD_CID
    assert HELLO_WORLD_CID in str(info.value)


def test_verify_content_checks_raw_cids_by_plain_hash() -> None:
    raw = str(CID(1, RAW, unixfs.sha256_multihash(b"x")))
    verify_content(raw, b"x")
    with pytest.raises(ContentMismatchError, match=raw):
        verify_content(raw, b"y")
