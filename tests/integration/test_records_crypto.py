"""Envelope encryption in the database: binding, crypto-shredding, KEK epochs and backups."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col

from records import service as records
from records.crypto import (
    DecryptionError,
    KekEpochDestroyedError,
    KeyDestroyedError,
    Keyring,
    UnknownKeyError,
)
from records.db import make_engine, unit_of_work
from records.models import DataKey, PersonalRecord, Subject

NOW = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)
WINDOW = timedelta(days=35)
CANARY_EMAIL = "canary.shred-91@example.eu"
CANARY_NAME = "Canary Shredded Name Qv"
CANARY_CV = "CANARY-SHRED-CV-5b7e"


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.load_or_create(tmp_path / "kek.json", now=NOW)


def _store(
    engine: Engine, keyring: Keyring, email: str = CANARY_EMAIL, cv: str = CANARY_CV
) -> tuple[uuid.UUID, uuid.UUID]:
    with unit_of_work(engine) as s:
        subject = records.create_subject(s, keyring=keyring, email=email, name=CANARY_NAME, now=NOW)
        record, _ = records.put_record(
            s,
            keyring=keyring,
            subject_id=subject.id,
            policy="DPR-EC-01488",
            policy_version=1,
            category="application",
            collected_at=NOW,
            payload={"cv": cv},
            payload_hash="0" * 64,
            due=records.Due(),
            now=NOW,
        )
        return subject.id, record.id


def _read(engine: Engine, keyring: Keyring, record_id: uuid.UUID) -> dict[str, object]:
    with Session(engine) as s:
        return records.decrypt_payload(s, keyring=keyring, record=records.get_record(s, record_id))


def test_a_payload_moved_to_another_record_of_the_subject_fails(
    engine: Engine, keyring: Keyring
) -> None:
    subject_id, first = _store(engine, keyring)
    with unit_of_work(engine) as s:
        second, _ = records.put_record(
            s,
            keyring=keyring,
            subject_id=subject_id,
            policy="DPR-EC-01488",
            policy_version=1,
            category="identity",
            collected_at=NOW,
            payload={"x": 1},
            payload_hash="1" * 64,
            due=records.Due(),
            now=NOW,
        )
        moved = s.get(PersonalRecord, first)
        assert moved is not None
        s.execute(
            update(PersonalRecord)
            .where(col(PersonalRecord.id) == second.id)
            .values(payload=moved.payload)
        )
    assert _read(engine, keyring, first) == {"cv": CANARY_CV}
    with pytest.raises(DecryptionError, match="another row, column or subject"):
        _read(engine, keyring, second.id)


def test_a_payload_moved_to_another_subject_fails_with_the_key_id(
    engine: Engine, keyring: Keyring
) -> None:
    _, mine = _store(engine, keyring)
    _, theirs = _store(engine, keyring, email="other@example.eu", cv="other")
    with unit_of_work(engine) as s:
        source = s.get(PersonalRecord, mine)
        assert source is not None
        s.execute(
            update(PersonalRecord)
            .where(col(PersonalRecord.id) == theirs)
            .values(payload=source.payload)
        )
    with pytest.raises(UnknownKeyError, match="not with this subject's key"):
        _read(engine, keyring, theirs)


def test_an_identity_moved_into_a_payload_column_fails(engine: Engine, keyring: Keyring) -> None:
    subject_id, record_id = _store(engine, keyring)
    with unit_of_work(engine) as s:
        subject = s.get(Subject, subject_id)
        assert subject is not None
        s.execute(
            update(PersonalRecord)
            .where(col(PersonalRecord.id) == record_id)
            .values(payload=subject.identity)
        )
    with pytest.raises(DecryptionError):
        _read(engine, keyring, record_id)


def test_after_erasure_the_payload_is_gone_with_a_clear_error(
    engine: Engine, keyring: Keyring
) -> None:
    subject_id, record_id = _store(engine, keyring)
    with unit_of_work(engine) as s:
        records.destroy_subject_key(s, subject_id=subject_id, now=NOW)
    with pytest.raises(KeyDestroyedError, match="destroyed"):
        _read(engine, keyring, record_id)
    with Session(engine) as s:
        assert records.find_subjects(s, keyring=keyring, email=CANARY_EMAIL) == []
        with pytest.raises(records.SubjectErasedError):
            records.put_record(
                s,
                keyring=keyring,
                subject_id=subject_id,
                policy="DPR-EC-01488",
                policy_version=1,
                category="application",
                collected_at=NOW,
                payload={},
                payload_hash="2" * 64,
                due=records.Due(),
                now=NOW,
            )


def _snapshot(engine: Engine, record_id: uuid.UUID) -> tuple[PersonalRecord, DataKey]:
    """A backup as an attacker with the database would hold it: the rows, detached."""
    with Session(engine, expire_on_commit=False) as s:
        record = s.get(PersonalRecord, record_id)
        assert record is not None
        key = s.scalars(select(DataKey).where(col(DataKey.subject_id) == record.subject_id)).one()
        s.expunge_all()
    return record, key


def _decrypt_from_backup(keyring: Keyring, record: PersonalRecord, key: DataKey) -> bytes:
    assert key.wrapped_key is not None and key.kek_epoch is not None and record.payload
    from records.crypto import open_sealed

    plain = keyring.unwrap(
        key.wrapped_key, epoch=key.kek_epoch, key_id=key.id, subject_id=key.subject_id
    )
    return open_sealed(
        plain, key.id, record.payload, records.payload_binding(record.id, record.subject_id)
    )


def test_a_backup_decrypts_until_the_epoch_that_wrapped_its_key_is_destroyed(
    engine: Engine, keyring: Keyring
) -> None:
    """The backup guarantee (README "Trust model"): erasure reaches old copies once the
    key-encryption-key epoch that wrapped the erased key is destroyed after the backup window."""
    subject_id, record_id = _store(engine, keyring)
    _, survivor_id = _store(engine, keyring, email="survivor@example.eu", cv="kept")
    backup = _snapshot(engine, record_id)

    with unit_of_work(engine) as s:
        records.destroy_subject_key(s, subject_id=subject_id, now=NOW)
    # Erased in the live system, still readable from the backup with today's key file.
    with pytest.raises(KeyDestroyedError):
        _read(engine, keyring, record_id)
    assert b"CANARY-SHRED-CV" in _decrypt_from_backup(keyring, *backup)

    rotated_at = NOW + timedelta(days=1)
    keyring.rotate(now=rotated_at)
    with unit_of_work(engine) as s:
        result = records.rewrap_batch(s, keyring=keyring, now=rotated_at)
    assert result.rewrapped == 1  # the survivor's key only; the erased one has none left
    with unit_of_work(engine) as s:
        assert records.rewrap_batch(s, keyring=keyring, now=rotated_at).rewrapped == 0

    with unit_of_work(engine) as s:
        early = records.destroy_expired_epochs(
            s, keyring=keyring, now=rotated_at + WINDOW - timedelta(seconds=1), backup_window=WINDOW
        )
    assert early == []
    assert b"CANARY-SHRED-CV" in _decrypt_from_backup(keyring, *backup)

    with unit_of_work(engine) as s:
        destroyed = records.destroy_expired_epochs(
            s, keyring=keyring, now=rotated_at + WINDOW, backup_window=WINDOW
        )
    assert destroyed == [backup[1].kek_epoch]
    with pytest.raises(KekEpochDestroyedError):
        _decrypt_from_backup(keyring, *backup)
    # The live data of other subjects was rewrapped and stays readable.
    assert _read(engine, keyring, survivor_id) == {"cv": "kept"}
    # A keyring read from the file again agrees.
    fresh = Keyring.load_or_create(keyring.path) if keyring.path else keyring
    with pytest.raises(KekEpochDestroyedError):
        _decrypt_from_backup(fresh, *backup)


def test_an_epoch_still_wrapping_live_keys_is_not_destroyed(
    engine: Engine, keyring: Keyring
) -> None:
    _, record_id = _store(engine, keyring)
    old = keyring.current_epoch
    keyring.rotate(now=NOW)  # rotated, but nobody rewrapped the keys yet
    with unit_of_work(engine) as s:
        destroyed = records.destroy_expired_epochs(
            s, keyring=keyring, now=NOW + WINDOW * 2, backup_window=WINDOW
        )
    assert old not in destroyed
    assert _read(engine, keyring, record_id) == {"cv": CANARY_CV}


def test_a_sqlite_file_copy_taken_before_erasure_follows_the_same_rule(
    engine: Engine, keyring: Keyring, backend: str, database_url: str, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("copies the SQLite file")
    subject_id, record_id = _store(engine, keyring)
    db_path = Path(make_url(database_url).database or "")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    copy = tmp_path / "backup.db"
    shutil.copyfile(db_path, copy)

    with unit_of_work(engine) as s:
        records.destroy_subject_key(s, subject_id=subject_id, now=NOW)
    backup_engine = make_engine(f"sqlite:///{copy}")
    try:
        assert _read(backup_engine, keyring, record_id) == {"cv": CANARY_CV}
        keyring.rotate(now=NOW)
        with unit_of_work(engine) as s:
            records.rewrap_batch(s, keyring=keyring, now=NOW)
            records.destroy_expired_epochs(
                s, keyring=keyring, now=NOW + WINDOW, backup_window=WINDOW
            )
        with pytest.raises(KekEpochDestroyedError):
            _read(backup_engine, keyring, record_id)
    finally:
        backup_engine.dispose()


def test_after_erasure_and_a_checkpoint_nothing_is_left_in_the_sqlite_file(
    engine: Engine, keyring: Keyring, backend: str, database_url: str
) -> None:
    if backend != "sqlite":
        pytest.skip("reads the SQLite file bytes")
    subject_id, record_id = _store(engine, keyring)
    db_path = Path(make_url(database_url).database or "")
    with Session(engine) as s:
        key = s.scalars(select(DataKey).where(col(DataKey.subject_id) == subject_id)).one()
        wrapped = key.wrapped_key
        subject = s.get(Subject, subject_id)
        assert subject is not None and subject.identity is not None
        identity = subject.identity
    assert wrapped is not None

    def raw() -> bytes:
        data = db_path.read_bytes()
        wal = db_path.with_name(db_path.name + "-wal")
        return data + (wal.read_bytes() if wal.exists() else b"")

    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    before = raw()
    assert wrapped in before and identity in before  # the test can see them when present

    with unit_of_work(engine) as s:
        records.delete_record(s, record_id=record_id)
        records.destroy_subject_key(s, subject_id=subject_id, now=NOW)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    after = raw()
    assert wrapped not in after
    assert identity not in after
    for canary in (CANARY_EMAIL, CANARY_NAME, CANARY_CV):
        assert canary.encode() not in after
    with sqlite3.connect(db_path) as raw_conn:
        assert raw_conn.execute("SELECT count(*) FROM personal_record").fetchone() == (0,)
    with Session(engine) as s:
        rows = s.execute(text("SELECT wrapped_key, destroyed_at FROM data_key")).all()
    assert [r[0] for r in rows] == [None]


def test_a_key_cache_passed_in_empty_is_filled_and_used(
    engine: Engine, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, record_id = _store(engine, keyring)
    unwraps: list[uuid.UUID] = []
    real = keyring.unwrap

    def counting(wrapped: bytes, **kwargs: object) -> bytes:
        unwraps.append(kwargs["subject_id"])  # type: ignore[arg-type]
        return real(wrapped, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(keyring, "unwrap", counting)
    cache = records.KeyCache(keyring)
    with Session(engine) as s:
        record = records.get_record(s, record_id)
        for _ in range(3):
            assert records.decrypt_payload(s, keyring=keyring, record=record, cache=cache)
    assert len(cache) == 1 and len(unwraps) == 1
