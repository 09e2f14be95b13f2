"""Merkle trees of consortium items: the private chain's OpenZeppelin-compatible tree (``mbds_py.pbft.merkle``)
with leaf lookup by value and an all-zero root for an empty block.

Leaves are 32-byte hashes (already double-hashed by the caller, see
:func:`mbds_py.consortium.blocks.item_leaf`); they are sorted, inner nodes hash the
sorted pair, and a proof verifies on-chain with ``MerkleProof.verify(proof, root, leaf)``.
"""

from __future__ import annotations

from typing import Sequence

from ..pbft.merkle import hash_pair, make_tree, process_proof, verify


class MerkleTree:
    """A tree over a set of leaves; proofs in O(log n) after an O(n) build."""

    def __init__(self, leaves: Sequence[bytes]):
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        ordered = sorted(leaves)
        self._tree = make_tree(ordered)  # raises a ValueError for a leaf that is not 32 bytes
        size = len(self._tree)
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


__all__ = ["MerkleTree", "hash_pair", "merkle_root", "process_proof", "verify"]
