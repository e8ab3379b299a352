"""C2SP signed notes with Ed25519: interoperable with the Go reference, key file created 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from audit_log import standalone_verify
from audit_log.signing import NoteError, NoteSigner, Verifier, open_note

# The example of golang.org/x/mod/sumdb/note's documentation (Ed25519 signatures are
# deterministic, so signing the same text with the same key gives the same note).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdng"
    "otpRZb6KE6RyyBwJnAM=\n"
)


def test_notes_match_the_go_reference() -> None:
    signer = NoteSigner.from_key_string(GO_SKEY)
    assert signer.verifier_key() == GO_VKEY
    assert signer.sign_note(GO_TEXT) == GO_TEXT + "\n" + GO_SIG
    assert open_note(GO_TEXT + "\n" + GO_SIG, Verifier.parse(GO_VKEY)) == GO_TEXT


def test_the_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.key"
    first = NoteSigner.load_or_create(path, "lethe.example/audit")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = NoteSigner.load_or_create(path, "lethe.example/audit")
    assert second.verifier_key() == first.verifier_key()
    assert first.verifier_key().startswith("lethe.example/audit+")
    with pytest.raises(NoteError, match="origin"):
        NoteSigner.load_or_create(path, "another.example/audit")


def test_an_edited_or_foreign_note_is_refused(tmp_path: Path) -> None:
    signer = NoteSigner.load_or_create(tmp_path / "k", "lethe.example/audit")
    other = NoteSigner.load_or_create(tmp_path / "o", "lethe.example/audit")
    note = signer.sign_note(
        "lethe.example/audit\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    )
    verifier = Verifier.parse(signer.verifier_key())
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note.replace("\n3\n", "\n4\n"), verifier)
    with pytest.raises(NoteError, match="not signed by the expected key"):
        open_note(other.sign_note("lethe.example/audit\n3\nAA==\n"), verifier)
    # the standalone verifier reads the same notes
    checkpoint = standalone_verify.open_checkpoint(note, signer.verifier_key())
    assert (checkpoint.origin, checkpoint.size) == ("lethe.example/audit", 3)


def test_raw_signatures_verify_with_the_published_key(tmp_path: Path) -> None:
    signer = NoteSigner.load_or_create(tmp_path / "k", "lethe.example/audit")
    signature = signer.sign(b"certificate of disposition")
    Verifier.parse(signer.verifier_key()).public_key.verify(
        signature, b"certificate of disposition"
    )
