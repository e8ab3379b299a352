#!/usr/bin/env python3
"""Offline verifier of a Lethe audit export (`lethe audit export`); stdlib + `cryptography`.

    python standalone_verify.py EXPORT.jsonl --public-key 'name+hash+base64' [--witness-dir DIR]

Same checks and verdicts as `lethe audit verify`, which runs this code over the database.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import reduce
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EXPORT_FORMAT, CHUNK = "lethe-audit-export/1", 256
WITNESS_FILE, WITNESS_KEY_FILE = "checkpoint", "public-key"  # files in the witness directory
_sha = hashlib.sha256
EMPTY_ROOT = _sha(b"").digest()
_canonical = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
Rows = list[tuple[int, str]]  # (index, body) in index order


class VerifyError(Exception): ...  # stops verification at once (unreadable input, bad key)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str


def parse_verifier_key(vkey: str) -> tuple[str, bytes, Ed25519PublicKey]:
    name, _, rest = vkey.strip().partition("+")
    key_hash_hex, _, material_b64 = rest.partition("+")
    try:
        material = base64.b64decode(material_b64, validate=True)
        key_hash = bytes.fromhex(key_hash_hex)
    except ValueError as exc:
        raise VerifyError("the public key is not name+hash+base64") from exc
    if len(material) != 33 or material[0] != 1 or len(key_hash) != 4:
        raise VerifyError("the public key is not an Ed25519 note verifier key")
    if hashlib.sha256(name.encode() + b"\n" + material).digest()[:4] != key_hash:
        raise VerifyError("the public key's hash does not match its name and key")
    return name, key_hash, Ed25519PublicKey.from_public_bytes(material[1:])


def open_checkpoint(note: str, vkey: str) -> Checkpoint:
    """The checkpoint in `note` if signed by `vkey`; ValueError with the reason otherwise."""
    name, key_hash, public_key = parse_verifier_key(vkey)
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise ValueError("is not a signed note")
    text, signed = note[: split + 1], False
    for line in note[split + 2 :].splitlines():
        sig_name, _, sig_b64 = line.removeprefix("\u2014 ").partition(" ")
        try:
            raw = base64.b64decode(sig_b64, validate=True)
        except ValueError as exc:
            raise ValueError("has a malformed signature") from exc
        if not line.startswith("\u2014 ") or sig_name != name or raw[:4] != key_hash:
            continue
        try:
            public_key.verify(raw[4:], text.encode())
        except InvalidSignature as exc:
            raise ValueError("has a signature that does not verify (edited?)") from exc
        signed = True
    if not signed:
        raise ValueError(f"is not signed by the key {name}+{key_hash.hex()}")
    lines = text.split("\n")
    try:
        size, root = int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (IndexError, ValueError) as exc:
        raise ValueError("is not a tlog-checkpoint body") from exc
    if size < 0 or len(root) != 32 or str(size) != lines[1]:
        raise ValueError("is not a tlog-checkpoint body")
    return Checkpoint(lines[0], size, root, note)


def _fold(hashes: list[bytes]) -> bytes:  # perfect subtrees, largest first -> root
    return reduce(lambda h, left: _sha(b"\x01" + left + h).digest(), hashes[-2::-1], hashes[-1])


class TreeChecker:
    """Streams entries in index order: dense index, canonical bodies, roots at wanted sizes."""

    def __init__(self, wanted: Iterable[int], *, canonical: bool = True) -> None:
        self.wanted, self.canonical = set(wanted), canonical
        self.roots, self.problems = {0: EMPTY_ROOT}, list[str]()
        self.size = 0  # entries seen
        self.chunk_roots: list[bytes] = []  # hash of each full 256-leaf chunk, in order
        # the frontier: perfect subtree hashes and their sizes, largest first
        self._hashes, self._sizes = list[bytes](), list[int]()
        self._pending, self._next = Rows(), 0  # rows not hashed yet, index expected next
        self._sorted: list[int] | None = None  # wanted sizes still to reach, largest first

    def feed(self, rows: Iterable[tuple[int, str]], *, last: bool = False) -> None:
        """Add rows in index order; `last=True` once at the end hashes the final partial chunk."""
        (pending := self._pending).extend(rows)
        end = len(pending) if last else len(pending) - len(pending) % CHUNK
        for start in range(0, end, CHUNK):
            self._chunk(pending[start : start + CHUNK])
        del pending[:end]

    def _chunk(self, rows: list[tuple[int, str]]) -> None:
        start, idxs = self.size, [i for i, _ in rows]
        if idxs != list(range(self._next, self._next + len(rows))):
            for want, i in zip([self._next, *(j + 1 for j in idxs)], idxs, strict=False):
                if i != want:
                    gap = f"is missing (next is {i})" if i > want else f"is out of order ({i})"
                    self.problems.append(f"entry {want} {gap}")
        self._next = idxs[-1] + 1
        leaves = [_sha(b"\x00" + b.encode()).digest() for _, b in rows]
        if self.canonical:
            self._check_bodies(rows)
        if self._sorted is None:
            self._sorted = sorted(self.wanted, reverse=True)
        while self._sorted and self._sorted[-1] <= start + len(rows):
            if (s := self._sorted.pop()) > start:
                self.roots[s] = _fold([*self._hashes, _tree(leaves[: s - start])])
        if len(rows) == CHUNK:
            self.chunk_roots.append(_tree(leaves))
            self._push(self.chunk_roots[-1], CHUNK)
        else:
            for h in leaves:
                self._push(h, 1)
        self.size = start + len(rows)

    def _push(self, h: bytes, count: int) -> None:
        hashes, sizes = self._hashes, self._sizes
        while sizes and sizes[-1] == count:
            h = _sha(b"\x01" + hashes.pop() + h).digest()
            count += sizes.pop()
        hashes.append(h)
        sizes.append(count)

    def _check_bodies(self, rows: list[tuple[int, str]]) -> None:
        for i, body in rows:
            try:
                value = json.loads(body, parse_float=Decimal)  # floats fail to re-encode
                ok = isinstance(value, dict) and _canonical(value) == body
            except (ValueError, TypeError):
                ok = False
            if not ok:
                self.problems.append(f"entry {i}: body is not canonical JSON")
            elif value.get("index") != i or value.get("v") != 1:
                self.problems.append(f"entry {i}: its body says index {value.get('index')}")


def _tree(leaves: list[bytes]) -> bytes:
    hashes, rest = list[bytes](), leaves
    while rest:
        k = 1 << (len(rest).bit_length() - 1)
        level = rest[:k]
        while len(level) > 1:
            it = iter(level)
            level = [_sha(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=True)]
        hashes.append(level[0])
        rest = rest[k:]
    return _fold(hashes)


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    entries: int = 0
    checkpoints: int = 0
    newest: Checkpoint | None = None


def _witnessed(witness_dir: Path | None, vkey: str) -> Checkpoint | None:
    if witness_dir is None:
        return None  # no witness: rewrites re-signed with the real key go unnoticed
    if (pin := witness_dir / WITNESS_KEY_FILE).exists() and pin.read_text().strip() != vkey.strip():
        raise VerifyError("the public key differs from the one pinned in the witness directory")
    try:
        return open_checkpoint((witness_dir / WITNESS_FILE).read_text(), vkey)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise VerifyError(f"the witnessed checkpoint {exc}") from exc


def verify(
    entries: Iterable[Iterable[tuple[int, str]]],
    notes: list[str],
    vkey: str,
    *,
    origin: str | None = None,
    witness_dir: Path | None = None,
    checker: TreeChecker | None = None,
) -> Report:
    """Verify batches of (index, body) and signed checkpoint notes against `vkey`."""
    report, witnessed = Report(), _witnessed(witness_dir, vkey)
    add, by_size = report.problems.append, dict[int, Checkpoint]()
    for n, note in enumerate(notes, 1):
        try:
            cp = open_checkpoint(note, vkey)
        except ValueError as exc:
            add(f"checkpoint #{n} {exc}")
            continue
        if origin is not None and cp.origin != origin:
            add(f"checkpoint #{n} has origin {cp.origin!r}, not {origin!r}")
        if cp.size in by_size and by_size[cp.size].root != cp.root:
            add(f"fork: two checkpoints of size {cp.size} with different roots")
        by_size.setdefault(cp.size, cp)
        report.checkpoints += 1
    tc = checker or TreeChecker(())
    tc.wanted |= set(by_size) | ({witnessed.size} if witnessed else set())
    for batch in entries:
        tc.feed(batch)
    tc.feed((), last=True)
    report.problems.extend(tc.problems)
    report.entries = tc.size
    for size, cp in sorted(by_size.items()):
        if size > tc.size:
            add(f"checkpoint of size {size} but the log has only {tc.size} entries (truncated)")
        elif tc.roots[size] != cp.root:
            add(f"checkpoint of size {size}: entries before it were changed (root mismatch)")
    report.newest = by_size[max(by_size)] if by_size else None
    newest = report.newest.size if report.newest else 0
    if witnessed is not None and newest < witnessed.size:
        add(f"the newest checkpoint is older than the witnessed size {witnessed.size} (deleted)")
    elif witnessed is not None and tc.roots.get(witnessed.size) != witnessed.root:
        add(f"the log does not extend the witnessed size {witnessed.size} (history rewritten)")
    return report


def update_witness(witness_dir: Path, report: Report, vkey: str) -> None:
    """Record the newest verified checkpoint (and pin the key); only after a success."""
    if report.problems:
        raise VerifyError("refusing to update the witness after a failed verification")
    witness_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (witness_dir / WITNESS_KEY_FILE).exists():
        (witness_dir / WITNESS_KEY_FILE).write_text(vkey.strip() + "\n")
    if report.newest is not None:
        (tmp := witness_dir / (WITNESS_FILE + ".tmp")).write_text(report.newest.note)
        os.replace(tmp, witness_dir / WITNESS_FILE)


def read_export(handle: TextIO) -> tuple[dict[str, Any], list[str], Iterator[Rows]]:
    """Header and checkpoints; then the entries, streamed in batches (exports can be large)."""
    header = json.loads(handle.readline() or "{}")
    if header.get("format") != EXPORT_FORMAT:
        raise VerifyError(f"not a {EXPORT_FORMAT} file")
    notes = [str(json.loads(handle.readline())["checkpoint"]) for _ in range(header["checkpoints"])]
    chunks = iter(lambda: list(islice(handle, 9999)), [])
    return (
        header,
        notes,
        ([(int(e["index"]), e["body"]) for e in map(json.loads, c)] for c in chunks),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Lethe audit export offline.")
    parser.add_argument("export", type=Path)
    parser.add_argument("--public-key", required=True, help="verifier key string, or its file")
    parser.add_argument("--witness-dir", type=Path)
    args = parser.parse_args(argv)
    key = Path(args.public_key)
    vkey = key.read_text().strip() if key.is_file() else args.public_key
    try:
        parse_verifier_key(vkey)
        with args.export.open(encoding="utf-8") as handle:  # ASCII JSON lines ending in "\n"
            header, notes, batches = read_export(handle)
            origin = str(header["origin"]) if "origin" in header else None
            report = verify(batches, notes, vkey, origin=origin, witness_dir=args.witness_dir)
    except (VerifyError, OSError, ValueError, KeyError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    if report.problems:
        print("\n".join(f"FAILED: {p}" for p in report.problems), file=sys.stderr)
        return 1
    if args.witness_dir is not None:
        update_witness(args.witness_dir, report, vkey)
    newest = report.newest.size if report.newest else 0
    print(f"OK: {report.entries} entries, {report.checkpoints} checkpoints, newest size {newest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
