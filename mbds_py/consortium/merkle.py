"""OpenZeppelin-compatible Merkle tree (``StandardMerkleTree`` layout, ``MerkleProof`` verification).

Leaves are 32-byte hashes (already double-hashed by the caller, see
:func:`mbds_py.consortium.blocks.item_leaf`); leaves are sorted, inner nodes hash
the sorted pair (``Hashes.commutativeKeccak256``), and the tree is the array-backed
complete binary tree of ``@openzeppelin/merkle-tree``. A proof verifies on-chain
with ``MerkleProof.verify(proof, root, leaf)``.
"""

from __future__ import annotations

from typing import Sequence

from eth_utils import keccak


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a <= b else keccak(b + a)


class MerkleTree:
    """A tree over a set of leaves; proofs in O(log n) after an O(n) build."""

    def __init__(self, leaves: Sequence[bytes]):
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        if any(len(leaf) != 32 for leaf in leaves):
            raise ValueError("Merkle leaves are 32-byte hashes")
        ordered = sorted(leaves)
        size = 2 * len(ordered) - 1
        tree: list[bytes] = [b""] * size
        for i, leaf in enumerate(ordered):
            tree[size - 1 - i] = leaf
        for i in range(size - 1 - len(ordered), -1, -1):
            tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
        self._tree = tree
        self._position = {leaf: size - 1 - i for i, leaf in enumerate(ordered)}

    @property
    def root(self) -> bytes:
        return self._tree[0]

    def proof(self, leaf: bytes) -> list[bytes]:
        """Sibling path of ``leaf`` (KeyError if it is not in the tree)."""
        node = self._position[leaf]
        path = []
        while node > 0:
            path.append(self._tree[node + 1 if node % 2 == 1 else node - 1])
            node = (node - 1) // 2
        return path


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over the leaves; 32 zero bytes for no leaves (an empty block)."""
    return MerkleTree(leaves).root if leaves else bytes(32)


def process_proof(proof: Sequence[bytes], leaf: bytes) -> bytes:
    computed = leaf
    for node in proof:
        computed = hash_pair(computed, node)
    return computed


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """``MerkleProof.verify``."""
    return process_proof(proof, leaf) == root


__all__ = ["MerkleTree", "hash_pair", "merkle_root", "process_proof", "verify"]
