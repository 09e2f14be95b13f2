"""OpenZeppelin-compatible Merkle tree: published vectors, a hand-derived one, proofs."""

import random

import pytest
from eth_abi import encode as abi_encode

from mbds_py.pbft.crypto import keccak256
from mbds_py.pbft.errors import EmptyMerkleTree, InvalidProof
from mbds_py.pbft.merkle import hash_pair, make_tree, merkle_proof, merkle_root, process_proof, standard_leaf, verify
from mbds_py.pbft.types import SlipEnvelope, slip_leaf


def h(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str.removeprefix("0x"))


def test_root_matches_openzeppelin_readme_vector():
    # @openzeppelin/merkle-tree README: two (address, uint256) values.
    a = standard_leaf(["address", "uint256"], ["0x1111111111111111111111111111111111111111", 5000000000000000000])
    b = standard_leaf(["address", "uint256"], ["0x2222222222222222222222222222222222222222", 2500000000000000000])
    assert a == h("eb02c421cfa48976e66dfb29120745909ea3a0f843456c263cf8f1253483e283")
    assert b == h("b92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc")
    assert merkle_root([a, b]) == h("d4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77")
    assert merkle_proof([a, b], 0) == [b]


def test_tree_layout_matches_a_standard_v1_dump():
    # A StandardMerkleTree.dump() of three (address, uint256) values, as published.
    leaves = [standard_leaf(["address", "uint256"], ["0x80d628ff4AC2aFf620C3474663F1e559234bbE0c", i]) for i in range(3)]
    tree = make_tree(sorted(leaves))
    assert [x.hex() for x in tree] == [
        "0fecce441c7468f17e3fe4a5f211b77a15b27c9ab3d33317df385dfbe5487034",
        "636ab2686ee3036244cf3d6b5574e051e4b20a3577b008975dbcca6dde2897d2",
        "d90245da324d7908326a3d56a9659741551a4603c397bf4dd373976bd85660e7",
        "36fb17c97ec80bb961ff0adff1af4a2a34847ecc40653c162e327117a76e3ec9",
        "1867c4ebd455913e429523a5c2d4b3a79f58068b5a25af911956245ed03a659d",
    ]
    # dump "treeIndex" of values 0, 1, 2 is 4, 3, 2
    assert (tree[4], tree[3], tree[2]) == tuple(leaves)


def test_three_leaf_root_derived_by_hand():
    # Leaves a < b < c after sorting.  makeMerkleTree puts them reversed at the
    # end: tree = [root, n1, c, b, a]; n1 = H(sorted(b, a)); root = H(sorted(n1, c)).
    a, b, c = sorted(keccak256(bytes([i])) for i in range(3))
    n1 = keccak256(min(a, b) + max(a, b))
    root = keccak256(min(n1, c) + max(n1, c))
    assert merkle_root([c, a, b]) == root
    assert merkle_proof([c, a, b], 1) == [b, c]  # a: sibling b, then c
    assert merkle_proof([c, a, b], 0) == [n1]  # c: sibling n1
    # MerkleProof.processProof folds with the commutative hash
    assert process_proof([b, c], a) == hash_pair(hash_pair(a, b), c) == root


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 33, 128])
def test_every_proof_verifies_and_a_wrong_leaf_does_not(n):
    rng = random.Random(n)
    leaves = [rng.randbytes(32) for _ in range(n)]
    root = merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        proof = merkle_proof(leaves, i)
        assert verify(proof, root, leaf)
        assert not verify(proof, root, keccak256(leaf))


def test_root_is_independent_of_leaf_order_by_default():
    leaves = [keccak256(bytes([i])) for i in range(6)]
    assert merkle_root(leaves) == merkle_root(list(reversed(leaves)))
    assert merkle_root(leaves, sort_leaves=False) != merkle_root(list(reversed(leaves)), sort_leaves=False)


def test_single_leaf_root_is_the_leaf():
    leaf = keccak256(b"x")
    assert merkle_root([leaf]) == leaf and merkle_proof([leaf], 0) == []


def test_empty_tree_raises_empty_merkle_tree():
    with pytest.raises(EmptyMerkleTree):
        merkle_root([])


def test_bad_leaf_or_index_raises_invalid_proof():
    with pytest.raises(InvalidProof):
        merkle_root([b"short"])
    with pytest.raises(InvalidProof):
        merkle_proof([keccak256(b"x")], 1)


def test_slip_leaf_is_the_standard_leaf_of_bytes32_and_bytes():
    for payload in (b"", b"a", b"x" * 32, b"y" * 33, bytes(range(100))):
        s = SlipEnvelope(keccak256(payload), payload)
        expected = keccak256(keccak256(abi_encode(["bytes32", "bytes"], [s.slip_id, payload])))
        assert slip_leaf(s) == expected == standard_leaf(["bytes32", "bytes"], [s.slip_id, payload])
