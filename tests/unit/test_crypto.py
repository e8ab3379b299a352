"""Envelope encryption without a database: AEAD binding, key ids, KEK epochs, the key file."""

from __future__ import annotations

import json
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from records.crypto import (
    FORMAT_VERSION,
    Binding,
    DecryptionError,
    KekEpochDestroyedError,
    KeyFileError,
    Keyring,
    UnknownKeyError,
    key_id_of,
    open_sealed,
    seal,
)

T0 = datetime(2024, 3, 27, 11, 0, tzinfo=UTC)
ROW = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER_ROW = uuid.UUID("00000000-0000-4000-8000-000000000002")
SUBJECT = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
OTHER_SUBJECT = uuid.UUID("00000000-0000-4000-8000-0000000000bb")
KEY_ID = uuid.UUID("00000000-0000-4000-8000-00000000cccc")


def _sealed(plaintext: bytes = b"canary-cv-7f3a") -> tuple[bytes, bytes]:
    key = Keyring.new_data_key()
    return key, seal(key, KEY_ID, plaintext, Binding("personal_record", ROW, "payload", SUBJECT))


def test_a_sealed_value_opens_where_it_was_sealed() -> None:
    key, ct = _sealed()
    assert b"canary-cv-7f3a" not in ct
    assert ct[0] == FORMAT_VERSION
    assert key_id_of(ct) == KEY_ID
    assert (
        open_sealed(key, KEY_ID, ct, Binding("personal_record", ROW, "payload", SUBJECT))
        == b"canary-cv-7f3a"
    )


@pytest.mark.parametrize(
    "moved_to",
    [
        Binding("personal_record", OTHER_ROW, "payload", SUBJECT),
        Binding("personal_record", ROW, "identity", SUBJECT),
        Binding("personal_record", ROW, "payload", OTHER_SUBJECT),
        Binding("subject", ROW, "payload", SUBJECT),
    ],
    ids=["other-row", "other-column", "other-subject", "other-table"],
)
def test_a_ciphertext_moved_elsewhere_does_not_open(moved_to: Binding) -> None:
    key, ct = _sealed()
    with pytest.raises(DecryptionError, match="does not authenticate"):
        open_sealed(key, KEY_ID, ct, moved_to)


def test_a_wrong_key_id_is_a_clear_error() -> None:
    key, ct = _sealed()
    other = uuid.uuid4()
    with pytest.raises(UnknownKeyError, match=f"made with key {KEY_ID}.*key {other}"):
        open_sealed(key, other, ct, Binding("personal_record", ROW, "payload", SUBJECT))


def test_an_altered_ciphertext_or_an_unknown_format_fails() -> None:
    key, ct = _sealed()
    binding = Binding("personal_record", ROW, "payload", SUBJECT)
    flipped = ct[:-1] + bytes([ct[-1] ^ 1])
    with pytest.raises(DecryptionError):
        open_sealed(key, KEY_ID, flipped, binding)
    with pytest.raises(DecryptionError, match="format version"):
        open_sealed(key, KEY_ID, bytes([99]) + ct[1:], binding)
    with pytest.raises(DecryptionError):
        open_sealed(Keyring.new_data_key(), KEY_ID, ct, binding)


def test_the_key_file_is_created_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.json"
    ring = Keyring.load_or_create(path, now=T0)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    epoch, wrapped = ring.wrap(b"k" * 32, key_id=KEY_ID, subject_id=SUBJECT)
    again = Keyring.load_or_create(path)
    assert again.unwrap(wrapped, epoch=epoch, key_id=KEY_ID, subject_id=SUBJECT) == b"k" * 32
    assert again.blind_index("email", "a@b.eu") == ring.blind_index("email", "a@b.eu")


def test_a_wrapped_key_is_bound_to_its_subject_and_key_id(tmp_path: Path) -> None:
    ring = Keyring.load_or_create(tmp_path / "kek.json", now=T0)
    epoch, wrapped = ring.wrap(b"k" * 32, key_id=KEY_ID, subject_id=SUBJECT)
    with pytest.raises(DecryptionError):
        ring.unwrap(wrapped, epoch=epoch, key_id=KEY_ID, subject_id=OTHER_SUBJECT)
    with pytest.raises(DecryptionError):
        ring.unwrap(wrapped, epoch=epoch, key_id=uuid.uuid4(), subject_id=SUBJECT)


def test_an_unknown_epoch_is_a_clear_error(tmp_path: Path) -> None:
    ring = Keyring.load_or_create(tmp_path / "kek.json", now=T0)
    _, wrapped = ring.wrap(b"k" * 32, key_id=KEY_ID, subject_id=SUBJECT)
    with pytest.raises(UnknownKeyError, match="epoch 7 is not in the key file"):
        ring.unwrap(wrapped, epoch=7, key_id=KEY_ID, subject_id=SUBJECT)


def test_a_retired_epoch_unwraps_until_the_backup_window_has_passed(tmp_path: Path) -> None:
    ring = Keyring.load_or_create(tmp_path / "kek.json", now=T0)
    old_epoch, wrapped = ring.wrap(b"k" * 32, key_id=KEY_ID, subject_id=SUBJECT)
    assert ring.rotate(now=T0) == old_epoch + 1
    window = timedelta(days=35)

    early = T0 + timedelta(days=34)
    assert ring.destroy_expired(now=early, backup_window=window, in_use=set()) == []
    assert ring.unwrap(wrapped, epoch=old_epoch, key_id=KEY_ID, subject_id=SUBJECT) == b"k" * 32

    later = T0 + timedelta(days=35)
    assert ring.destroy_expired(now=later, backup_window=window, in_use={old_epoch}) == []
    assert ring.destroy_expired(now=later, backup_window=window, in_use=set()) == [old_epoch]
    with pytest.raises(KekEpochDestroyedError, match=f"epoch {old_epoch} was destroyed"):
        ring.unwrap(wrapped, epoch=old_epoch, key_id=KEY_ID, subject_id=SUBJECT)
    saved = json.loads((tmp_path / "kek.json").read_text())
    assert [e["key"] is None for e in saved["epochs"]] == [True, False]


def test_the_current_epoch_is_never_destroyed(tmp_path: Path) -> None:
    ring = Keyring.load_or_create(tmp_path / "kek.json", now=T0)
    far = T0 + timedelta(days=3650)
    assert ring.destroy_expired(now=far, backup_window=timedelta(days=1), in_use=set()) == []


def test_another_process_rotation_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    serving = Keyring.load_or_create(path, now=T0)
    cli = Keyring.load_or_create(path)
    new_epoch = cli.rotate(now=T0)
    _, wrapped = cli.wrap(b"k" * 32, key_id=KEY_ID, subject_id=SUBJECT)
    assert serving.unwrap(wrapped, epoch=new_epoch, key_id=KEY_ID, subject_id=SUBJECT) == b"k" * 32


def test_a_corrupt_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    path.write_text('{"format": "something-else"}')
    with pytest.raises(KeyFileError):
        Keyring.load_or_create(path)


def test_blind_indexes_are_purpose_keyed_and_truncated(tmp_path: Path) -> None:
    ring = Keyring.generate(index_bits=4)
    values = [f"user{i}@example.eu" for i in range(200)]
    buckets = {ring.blind_index("email", v) for v in values}
    # 200 values in 16 buckets: each bucket holds several subjects, never a unique match.
    assert buckets <= set(range(16))
    assert len(buckets) == 16
    assert ring.blind_index("email", "x@y.eu") == ring.blind_index("email", "x@y.eu")
    other = Keyring.generate(index_bits=4)
    assert [ring.blind_index("email", v) for v in values] != [
        other.blind_index("email", v) for v in values
    ]


@given(st.text(max_size=64), st.integers(min_value=1, max_value=31))
def test_a_blind_index_always_fits_its_bits(value: str, bits: int) -> None:
    ring = Keyring(path=None, epochs={}, current=1, index_root=b"r" * 32, index_bits=bits)
    assert 0 <= ring.blind_index("email", value) < 2**bits


@given(st.binary(max_size=2048))
def test_any_plaintext_round_trips(plaintext: bytes) -> None:
    key = Keyring.new_data_key()
    binding = Binding("personal_record", ROW, "payload", SUBJECT)
    assert open_sealed(key, KEY_ID, seal(key, KEY_ID, plaintext, binding), binding) == plaintext
