"""The Merkle tree over `audit_entry`, with completed subtrees stored for incremental heads.

`extend_subtrees` (run at checkpoint time, under the writer lock) hashes only the leaves added
since the last run, in chunks of 256, and stores every completed aligned subtree of 256 leaves
or more. `TreeReader.subtree(start, end)` then answers any RFC 9162 node from at most
O(log n) stored hashes plus fewer than 256 leaf hashes per uncovered edge, which is all that
roots, inclusion proofs and consistency proofs need.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, insert, select
from sqlmodel import Session, col

from audit_log import merkle
from audit_log.models import AuditEntry, AuditSubtree

MIN_LEVEL = 8
CHUNK = 1 << MIN_LEVEL
_READ_BATCH = 64 * CHUNK


def covered_size(session: Session) -> int:
    """Leaves covered by stored level-8 subtrees (a multiple of 256)."""
    last = session.execute(
        select(func.max(col(AuditSubtree.start))).where(col(AuditSubtree.level) == MIN_LEVEL)
    ).scalar_one_or_none()
    return 0 if last is None else int(last) + CHUNK


def _leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
    rows = session.execute(
        select(col(AuditEntry.leaf_hash))
        .where(col(AuditEntry.idx) >= start, col(AuditEntry.idx) < end)
        .order_by(col(AuditEntry.idx))
    ).scalars()
    hashes = [bytes(h) for h in rows]
    if len(hashes) != end - start:
        raise merkle.ProofError(f"the log has no entries for the whole range {start}..{end - 1}")
    return hashes


def _perfect_root(hashes: list[bytes]) -> bytes:
    sha = hashlib.sha256
    level = hashes
    while len(level) > 1:
        it = iter(level)
        level = [sha(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=True)]
    return level[0]


def extend_subtrees(session: Session, size: int) -> int:
    """Store the completed subtrees of the first `size` leaves; returns how many were added.

    Call under the audit writer lock (`service.lock_writer`) so two runs never race.
    """
    covered = covered_size(session)
    target = size - size % CHUNK
    if target <= covered:
        return 0
    known: dict[tuple[int, int], bytes] = {}
    rows: list[dict[str, object]] = []

    def sibling(level: int, start: int) -> bytes:
        if (level, start) not in known:
            stored = session.get(AuditSubtree, (level, start))
            if stored is None:
                raise merkle.ProofError(f"stored subtree {level}/{start} is missing")
            known[(level, start)] = bytes(stored.hash)
        return known[(level, start)]

    for batch_start in range(covered, target, _READ_BATCH):
        batch_end = min(batch_start + _READ_BATCH, target)
        leaves = _leaf_hashes(session, batch_start, batch_end)
        for offset in range(0, len(leaves), CHUNK):
            start, level = batch_start + offset, MIN_LEVEL
            h = _perfect_root(leaves[offset : offset + CHUNK])
            known[(level, start)] = h
            rows.append({"level": level, "start": start, "hash": h})
            while (start >> level) & 1:  # a right child completes its parent
                start -= 1 << level
                h = hashlib.sha256(b"\x01" + sibling(level, start) + h).digest()
                level += 1
                known[(level, start)] = h
                rows.append({"level": level, "start": start, "hash": h})
    for i in range(0, len(rows), 1000):
        session.execute(insert(AuditSubtree), rows[i : i + 1000])
    return len(rows)


class TreeReader:
    """RFC 9162 subtree hashes from the stored subtrees and leaf hashes of one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.covered = covered_size(session)
        self._cache: dict[tuple[int, int], bytes] = {}

    def subtree(self, start: int, end: int) -> bytes:
        n = end - start
        if n <= 0:
            return merkle.EMPTY_ROOT
        if (start, end) in self._cache:
            return self._cache[(start, end)]
        if n & (n - 1) == 0 and n >= CHUNK and end <= self.covered and start % n == 0:
            stored = self.session.get(AuditSubtree, (n.bit_length() - 1, start))
            if stored is None:
                raise merkle.ProofError(f"stored subtree for {start}..{end - 1} is missing")
            h = bytes(stored.hash)
        elif n <= CHUNK:
            h = merkle.root_of(_leaf_hashes(self.session, start, end))
        else:
            k = merkle.split_point(n)
            h = merkle.hash_children(self.subtree(start, start + k), self.subtree(start + k, end))
        self._cache[(start, end)] = h
        return h

    def root(self, size: int) -> bytes:
        return self.subtree(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(index, size, self.subtree)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return merkle.consistency_proof(first, second, self.subtree)
