"""RFC 9162 hashing and proofs: the transparency-dev/merkle vectors, and properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log import merkle
from audit_log.merkle import ProofError


def _vectors(shared_dir: Path, kind: str) -> list[Path]:
    root = shared_dir / "vectors" / "merkle" / "testdata" / kind
    if not root.is_dir():
        pytest.skip(f"Merkle vectors not found at {root}")
    files = sorted(root.rglob("*.json"))
    assert files, f"no vectors under {root}"
    return files


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _run_inclusion(case: dict[str, Any]) -> None:
    proof = [_b64(p) for p in case.get("proof") or []]
    merkle.verify_inclusion(
        case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"])
    )


def _run_consistency(case: dict[str, Any]) -> None:
    proof = [_b64(p) for p in case.get("proof") or []]
    merkle.verify_consistency(
        case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"])
    )


def test_every_inclusion_vector_gives_its_verdict(shared_dir: Path) -> None:
    files = _vectors(shared_dir, "inclusion")
    wrong = []
    for path in files:
        case = json.loads(path.read_text())
        try:
            _run_inclusion(case)
            failed = False
        except ProofError:
            failed = True
        if failed != case["wantErr"]:
            wrong.append(str(path.relative_to(path.parents[2])))
    assert wrong == []
    assert len(files) > 50


def test_every_consistency_vector_gives_its_verdict(shared_dir: Path) -> None:
    files = _vectors(shared_dir, "consistency")
    wrong = []
    for path in files:
        case = json.loads(path.read_text())
        try:
            _run_consistency(case)
            failed = False
        except ProofError:
            failed = True
        if failed != case["wantErr"]:
            wrong.append(str(path.relative_to(path.parents[2])))
    assert wrong == []
    assert len(files) > 50


def test_happy_path_vectors_are_proofs_we_generate(shared_dir: Path) -> None:
    """The vectors' trees use leaves "", 0x00, 0x10, …: regenerate their happy-path proofs."""
    leaves = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    hashes = [merkle.hash_leaf(x) for x in leaves]
    checked = 0
    for path in _vectors(shared_dir, "inclusion"):
        case = json.loads(path.read_text())
        if path.name != "happy-path.json" or case["treeSize"] > len(leaves):
            continue
        if _b64(case["leafHash"]) != hashes[case["leafIdx"]]:
            continue
        tree = hashes[: case["treeSize"]]
        assert merkle.root_of(tree) == _b64(case["root"])
        got = merkle.inclusion_proof(case["leafIdx"], case["treeSize"], _subtree(tree))
        assert [base64.b64encode(p).decode() for p in got] == (case["proof"] or [])
        checked += 1
    for path in _vectors(shared_dir, "consistency"):
        case = json.loads(path.read_text())
        if path.name != "happy-path.json" or case["size2"] > len(leaves):
            continue
        tree = hashes[: case["size2"]]
        if merkle.root_of(tree) != _b64(case["root2"]):
            continue
        got = merkle.consistency_proof(case["size1"], case["size2"], _subtree(tree))
        assert [base64.b64encode(p).decode() for p in got] == (case["proof"] or [])
        checked += 1
    assert checked >= 4


def _subtree(hashes: list[bytes]) -> merkle.SubtreeHash:
    return lambda start, end: _mth(hashes[start:end])


def _mth(hashes: list[bytes]) -> bytes:
    """The RFC 9162 definition, recursively, as an independent reference."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return merkle.hash_children(_mth(hashes[:k]), _mth(hashes[k:]))


def _leaves(n: int) -> list[bytes]:
    return [merkle.hash_leaf(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300))
def test_the_compact_range_root_is_the_rfc_root(n: int) -> None:
    hashes = _leaves(n)
    assert merkle.root_of(hashes) == _mth(hashes)


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.data())
def test_generated_inclusion_proofs_verify_and_tampering_fails(n: int, data: st.DataObject) -> None:
    hashes = _leaves(n)
    root = _mth(hashes)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = merkle.inclusion_proof(index, n, _subtree(hashes))
    merkle.verify_inclusion(index, n, hashes[index], proof, root)
    if n > 1:
        other = (index + 1) % n
        with pytest.raises(ProofError):
            merkle.verify_inclusion(other, n, hashes[index], proof, root)
    if proof:
        bad = list(proof)
        bad[data.draw(st.integers(0, len(bad) - 1))] = b"\xff" * 32
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, n, hashes[index], bad, root)


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.data())
def test_generated_consistency_proofs_verify_and_forks_fail(n: int, data: st.DataObject) -> None:
    hashes = _leaves(n)
    m = data.draw(st.integers(min_value=1, max_value=n))
    proof = merkle.consistency_proof(m, n, _subtree(hashes))
    merkle.verify_consistency(m, n, proof, _mth(hashes[:m]), _mth(hashes))
    forked = list(hashes)
    forked[m - 1] = merkle.hash_leaf(b"forged")
    if m < n:
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, proof, _mth(hashes[:m]), _mth(forked))
    with pytest.raises(ProofError):
        merkle.verify_consistency(m, n, proof, _mth(forked[:m]), _mth(hashes))


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_subtrees_appended_whole_give_the_same_root(n: int, data: st.DataObject) -> None:
    hashes = _leaves(n)
    cr = merkle.CompactRange()
    while cr.size < n:
        step = 1 << data.draw(st.integers(0, 6))
        if cr.size % step or cr.size + step > n:
            step = 1
        if step == 1:
            cr.append(hashes[cr.size])
        else:
            cr.append_subtree(_mth(hashes[cr.size : cr.size + step]), step)
    assert cr.root() == _mth(hashes)
