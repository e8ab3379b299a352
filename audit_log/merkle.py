"""RFC 9162 Merkle tree hashing (SHA-256): roots, inclusion and consistency proofs.

Leaf hash H(0x00 ‖ data), node hash H(0x01 ‖ left ‖ right); the tree of n > 1 leaves splits at
k, the largest power of two smaller than n. Proof generation takes a `subtree(start, end)`
function returning the hash of leaves [start, end), so the same code serves an in-memory list
and the database (stored subtrees). Verification follows transparency-dev/merkle exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

SubtreeHash = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof that does not verify, or arguments no proof can exist for."""


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than n (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return CompactRange.from_leaf_hashes(leaf_hashes).root()


class CompactRange:
    """The right frontier of a growing tree: perfect subtree hashes, largest first.

    `append` costs amortised one node hash; `root()` folds the frontier in O(log n).
    """

    __slots__ = ("hashes", "size", "sizes")

    def __init__(self) -> None:
        self.size = 0
        self.hashes: list[bytes] = []
        self.sizes: list[int] = []

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> CompactRange:
        cr = cls()
        for h in leaf_hashes:
            cr.append(h)
        return cr

    def append(self, leaf_hash: bytes) -> None:
        hashes, sizes = self.hashes, self.sizes
        h, s = leaf_hash, 1
        while sizes and sizes[-1] == s:
            h = hashlib.sha256(b"\x01" + hashes.pop() + h).digest()
            s += sizes.pop()
        hashes.append(h)
        sizes.append(s)
        self.size += 1

    def append_subtree(self, subtree_hash: bytes, count: int) -> None:
        """Append a perfect subtree of `count` (a power of two) leaves aligned at `self.size`."""
        if count & (count - 1) or self.size % count:
            raise ValueError("a subtree must be a power of two aligned at the current size")
        hashes, sizes = self.hashes, self.sizes
        h, s = subtree_hash, count
        while sizes and sizes[-1] == s:
            h = hashlib.sha256(b"\x01" + hashes.pop() + h).digest()
            s += sizes.pop()
        hashes.append(h)
        sizes.append(s)
        self.size += count

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = hashlib.sha256(b"\x01" + left + h).digest()
        return h


# ---------------------------------------------------------------- proof generation (RFC 9162)


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(first: int, second: int, subtree: SubtreeHash) -> list[bytes]:
    """PROOF(first, D[0:second]) (RFC 9162 §2.1.4.1); empty when first == second."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    proof: list[bytes] = []
    start, end, m, complete = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(subtree(start, end))
            break
        k = split_point(n)
        if m <= k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
            m -= k
            complete = False
    proof.reverse()
    return proof


# ---------------------------------------------------------- verification (transparency-dev)


def _decomp_inclusion(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = hash_children(seed, h) if (index >> i) & 1 == 0 else hash_children(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = hash_children(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = hash_children(h, seed)
    return seed


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    if index >= size or index < 0:
        raise ProofError(f"index {index} is beyond a tree of size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash has {len(leaf_hash)} bytes, want {HASH_SIZE}")
    inner, border = _decomp_inclusion(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {inner + border}")
    res = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(res, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `proof` shows leaf `index` in the tree of `size` with `root`."""
    if root_from_inclusion_proof(index, size, leaf_hash, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise ProofError unless `proof` shows the tree (size1, root1) is a prefix of (size2, root2).

    A check from the empty tree proves nothing and is refused, as the public vectors require.
    """
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == 0:
        raise ProofError("a consistency check from the empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise ProofError("size1 = size2, but the proof is not empty")
        if root1 != root2:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("empty proof")
    inner, border = _decomp_inclusion(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    seed, start = proof[0], 1
    if size1 == 1 << shift:
        seed, start = root1, 0
    if len(proof) != start + inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {start + inner + border}")
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if hash1 != root1:
        raise ProofError("consistency proof does not lead to the first root")
    hash2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if hash2 != root2:
        raise ProofError("consistency proof does not lead to the second root")
