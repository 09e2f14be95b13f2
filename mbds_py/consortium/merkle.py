"""Merkle trees of consortium items: the private chain's OpenZeppelin-compatible tree (``mbds_py.pbft.merkle``)
with leaf lookup by value and an all-zero root for an empty block.

Leaves are domain-separated from inner nodes as in OpenZeppelin's StandardMerkleTree: a leaf is
the double hash of its 96-byte encoding (:func:`item_leaf`), an inner node the hash of 64 bytes, so
no inner node can pose as a leaf. Trees are built from these hashed leaves; a proof is checked
only from the item's fields (:func:`verify_item`, ``ConsortiumIndex.verifyItem``), never from a
32-byte value taken as the leaf.
"""

from __future__ import annotations

from typing import Sequence

from eth_utils import keccak

from ..pbft.merkle import hash_pair, make_tree, process_proof


def item_leaf(slip_hash: bytes, index: int, item_hash: bytes) -> bytes:
    """``ConsortiumIndex.itemLeaf``: ``keccak256(keccak256(abi.encode(slipHash, index, itemHash)))``."""
    if len(slip_hash) != 32 or len(item_hash) != 32 or not 0 <= index < 2**256:
        raise ValueError("an item leaf needs a 32-byte slip hash, a uint256 index and a 32-byte item hash")
    return keccak(keccak(slip_hash + index.to_bytes(32, "big") + item_hash))


def verify_item(proof: Sequence[bytes], root: bytes, slip_hash: bytes, index: int, item_hash: bytes) -> bool:
    """``ConsortiumIndex.verifyItem`` off chain: the leaf is hashed here from the item, never taken raw."""
    return process_proof(proof, item_leaf(slip_hash, index, item_hash)) == root


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


__all__ = ["MerkleTree", "hash_pair", "item_leaf", "merkle_root", "process_proof", "verify_item"]
