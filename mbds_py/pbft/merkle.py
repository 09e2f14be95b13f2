"""OpenZeppelin-compatible Merkle trees (``@openzeppelin/merkle-tree`` + ``MerkleProof.sol``).

Layout and hashing follow ``StandardMerkleTree``: a leaf is the double hash
``keccak256(bytes.concat(keccak256(abi.encode(values))))`` (see
:func:`standard_leaf`), inner nodes hash the *sorted* pair, leaves are sorted by
hash by default, and the tree is the array-backed complete binary tree of
``makeMerkleTree``.  A proof from :func:`merkle_proof` verifies on-chain with
``MerkleProof.verify(proof, root, leaf)``.
"""

from __future__ import annotations

from typing import Sequence

from .crypto import keccak256
from .errors import EmptyMerkleTree, InvalidProof


def hash_pair(a: bytes, b: bytes) -> bytes:
    """``Hashes.commutativeKeccak256``: keccak256 of the two nodes in ascending order."""
    return keccak256(a + b) if a <= b else keccak256(b + a)


def standard_leaf(types: Sequence[str], values: Sequence[object]) -> bytes:
    """``StandardMerkleTree`` leaf: ``keccak256(keccak256(abi.encode(values)))``."""
    from eth_abi import encode as abi_encode  # heavy import, only needed here

    return keccak256(keccak256(abi_encode(list(types), list(values))))


def _check_leaves(leaves: Sequence[bytes]) -> None:
    if not leaves:
        raise EmptyMerkleTree("cannot build a Merkle tree without leaves")
    for leaf in leaves:
        if len(leaf) != 32:
            raise InvalidProof(f"a Merkle leaf is 32 bytes, got {len(leaf)}")


def _ordered(leaves: Sequence[bytes], sort_leaves: bool) -> list[bytes]:
    return sorted(leaves) if sort_leaves else list(leaves)


def make_tree(leaves: Sequence[bytes]) -> list[bytes]:
    """``makeMerkleTree``: array tree of ``2n-1`` nodes, root at 0, leaves reversed at the end."""
    _check_leaves(leaves)
    size = 2 * len(leaves) - 1
    tree: list[bytes] = [b""] * size
    for i, leaf in enumerate(leaves):
        tree[size - 1 - i] = leaf
    for i in range(size - 1 - len(leaves), -1, -1):
        tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
    return tree


def merkle_root(leaves: Sequence[bytes], *, sort_leaves: bool = True) -> bytes:
    """Root over leaf hashes, as ``StandardMerkleTree.of(...).root`` (``sort_leaves`` default true)."""
    return make_tree(_ordered(leaves, sort_leaves))[0]


def merkle_proof(leaves: Sequence[bytes], index: int, *, sort_leaves: bool = True) -> list[bytes]:
    """Sibling path proving ``leaves[index]`` (index into the caller's, unsorted, list)."""
    _check_leaves(leaves)
    if not 0 <= index < len(leaves):
        raise InvalidProof(f"leaf index {index} out of range for {len(leaves)} leaves")
    ordered = _ordered(leaves, sort_leaves)
    position = ordered.index(leaves[index]) if sort_leaves else index
    tree = make_tree(ordered)
    node = len(tree) - 1 - position
    proof = []
    while node > 0:
        proof.append(tree[node + 1 if node % 2 == 1 else node - 1])
        node = (node - 1) // 2
    return proof


def process_proof(proof: Sequence[bytes], leaf: bytes) -> bytes:
    """``MerkleProof.processProof``: fold the proof into the leaf with the sorted-pair hash."""
    computed = leaf
    for node in proof:
        computed = hash_pair(computed, node)
    return computed


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """``MerkleProof.verify(proof, root, leaf)``."""
    return process_proof(proof, leaf) == root


__all__ = [
    "hash_pair",
    "make_tree",
    "merkle_proof",
    "merkle_root",
    "process_proof",
    "standard_leaf",
    "verify",
]
