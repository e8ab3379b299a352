"""Envelope encryption: a data key per subject, wrapped by key-encryption-key (KEK) epochs.

- Data keys are AES-256-GCM keys, one per subject, random. They are stored only wrapped
  (AES-256-GCM under the current KEK epoch, the wrap bound to the key id, the subject and the
  epoch). Erasure destroys the wrapped key (crypto-shredding).
- Ciphertext = version (1 byte) ‖ key id (16 bytes, the data key's UUID) ‖ nonce (12 bytes) ‖
  ciphertext+tag. The associated data binds table, row id, column and subject, so a ciphertext
  copied to another row, column or subject does not decrypt.
- The KEK file lives outside the database (JSON, mode 0600, created on first use). It holds the
  KEK epochs and one separate root secret from which keys for single purposes are derived with
  HKDF (blind indexes, payload hashes); those never rotate, so look-ups survive KEK rotation.
- Backup guarantee: a copy of the database taken before an erasure still holds the subject's
  wrapped data key, and it stays decryptable for as long as the KEK epoch that wrapped it exists.
  `rotate()` rewraps the live keys under a new epoch; once the backup window has passed the old
  epoch is destroyed (`destroy_expired`) and every older copy of that key becomes unreadable.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from records.db import utc_now
from records.errors import DomainError

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1
FILE_FORMAT = "lethe-kek/1"
KEY_ID_LEN = 16
NONCE_LEN = 12
HEADER_LEN = 1 + KEY_ID_LEN + NONCE_LEN
DEFAULT_INDEX_BITS = 12


class CryptoError(DomainError):
    status = 500
    code = "decryption-failed"
    title = "Decryption failed"


class DecryptionError(CryptoError):
    """The ciphertext does not authenticate here: moved, altered, or the wrong key."""


class UnknownKeyError(CryptoError):
    code = "unknown-key"
    title = "Unknown key"


class KeyDestroyedError(DomainError):
    """The data key (or the KEK epoch that wrapped it) was destroyed: the data is erased."""

    status = 410
    code = "key-destroyed"
    title = "Data erased"


class KekEpochDestroyedError(KeyDestroyedError):
    pass


class KeyFileError(DomainError):
    status = 500
    code = "key-file"
    title = "Key file unusable"


@dataclass(frozen=True)
class Binding:
    """What a ciphertext is bound to (the AEAD associated data)."""

    table: str
    row_id: uuid.UUID
    column: str
    subject_id: uuid.UUID

    def associated_data(self) -> bytes:
        parts = (f"lethe/{FORMAT_VERSION}", self.table, str(self.row_id), self.column)
        return "\x1f".join((*parts, str(self.subject_id))).encode()


def seal(data_key: bytes, key_id: uuid.UUID, plaintext: bytes, binding: Binding) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    body = AESGCM(data_key).encrypt(nonce, plaintext, binding.associated_data())
    return bytes([FORMAT_VERSION]) + key_id.bytes + nonce + body


def key_id_of(ciphertext: bytes) -> uuid.UUID:
    if len(ciphertext) < HEADER_LEN + 16 or ciphertext[0] != FORMAT_VERSION:
        raise DecryptionError("ciphertext has an unknown format version")
    return uuid.UUID(bytes=bytes(ciphertext[1 : 1 + KEY_ID_LEN]))


def open_sealed(data_key: bytes, key_id: uuid.UUID, ciphertext: bytes, binding: Binding) -> bytes:
    found = key_id_of(ciphertext)
    if found != key_id:
        raise UnknownKeyError(
            f"ciphertext of {binding.table}.{binding.column} {binding.row_id} was made with "
            f"key {found}, not with this subject's key {key_id}"
        )
    nonce = bytes(ciphertext[1 + KEY_ID_LEN : HEADER_LEN])
    try:
        return AESGCM(data_key).decrypt(
            nonce, bytes(ciphertext[HEADER_LEN:]), binding.associated_data()
        )
    except InvalidTag as exc:
        raise DecryptionError(
            f"ciphertext of {binding.table}.{binding.column} {binding.row_id} does not "
            "authenticate: it was altered or belongs to another row, column or subject"
        ) from exc


@dataclass
class KekEpoch:
    epoch: int
    key: bytes | None  # None once destroyed
    created_at: datetime
    retired_at: datetime | None = None
    destroyed_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "key": base64.b64encode(self.key).decode() if self.key is not None else None,
            "created_at": self.created_at.isoformat(),
            "retired_at": self.retired_at.isoformat() if self.retired_at else None,
            "destroyed_at": self.destroyed_at.isoformat() if self.destroyed_at else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KekEpoch:
        def when(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        created = when(raw["created_at"])
        assert created is not None
        return cls(
            epoch=int(raw["epoch"]),
            key=base64.b64decode(raw["key"]) if raw.get("key") else None,
            created_at=created,
            retired_at=when(raw.get("retired_at")),
            destroyed_at=when(raw.get("destroyed_at")),
        )


def _hkdf(root: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"lethe/{purpose}".encode()
    ).derive(root)


class Keyring:
    """The KEK epochs and the purpose-derived keys. Thread-safe; reloads when another process
    rotated the file (an unknown epoch triggers one re-read)."""

    DEK_PURPOSE: ClassVar[bytes] = b"lethe/dek/1"

    def __init__(
        self,
        *,
        path: Path | None,
        epochs: dict[int, KekEpoch],
        current: int,
        index_root: bytes,
        index_bits: int = DEFAULT_INDEX_BITS,
    ) -> None:
        if not 1 <= index_bits <= 31:
            raise KeyFileError("index_bits must be between 1 and 31")
        self.path = path
        self._epochs = epochs
        self._current = current
        self.index_bits = index_bits
        self._index_root = index_root
        self._lock = threading.RLock()
        self._purpose_keys: dict[str, bytes] = {}
        self._mtime = self._file_mtime()
        self._checked_at = time.monotonic()

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def generate(
        cls, *, path: Path | None = None, now: datetime | None = None, index_bits: int = 12
    ) -> Keyring:
        created = now or utc_now()
        epoch = KekEpoch(epoch=1, key=AESGCM.generate_key(bit_length=256), created_at=created)
        return cls(
            path=path,
            epochs={1: epoch},
            current=1,
            index_root=secrets.token_bytes(32),
            index_bits=index_bits,
        )

    @classmethod
    def load_or_create(
        cls, path: Path, *, now: datetime | None = None, index_bits: int = DEFAULT_INDEX_BITS
    ) -> Keyring:
        """Read the KEK file, or create it (mode 0600) on first use."""
        path = Path(path)
        if not path.exists():
            ring = cls.generate(path=path, now=now, index_bits=index_bits)
            try:
                _write_new(path, ring._to_json())
                log.info("records.kek.created", epoch=1)
                return ring
            except FileExistsError:
                pass  # another process created it first: read theirs
        return cls._read(path)

    @classmethod
    def _read(cls, path: Path) -> Keyring:
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                log.warning("records.kek.file_permissions_too_open", mode=oct(mode))
            raw = json.loads(path.read_text())
            if raw.get("format") != FILE_FORMAT:
                raise KeyFileError("the key-encryption-key file has an unknown format")
            epochs = {e.epoch: e for e in (KekEpoch.from_json(x) for x in raw["epochs"])}
            return cls(
                path=path,
                epochs=epochs,
                current=int(raw["current"]),
                index_root=base64.b64decode(raw["index_root"]),
                index_bits=int(raw.get("index_bits", DEFAULT_INDEX_BITS)),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise KeyFileError("the key-encryption-key file cannot be read") from exc

    def _to_json(self) -> dict[str, Any]:
        return {
            "format": FILE_FORMAT,
            "current": self._current,
            "index_bits": self.index_bits,
            "index_root": base64.b64encode(self._index_root).decode(),
            "epochs": [self._epochs[n].to_json() for n in sorted(self._epochs)],
        }

    def _file_mtime(self) -> int | None:
        if self.path is None:
            return None
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def reload(self) -> None:
        if self.path is None:
            return
        fresh = Keyring._read(self.path)
        with self._lock:
            self._epochs = fresh._epochs
            self._current = fresh._current
            self._mtime = self._file_mtime()

    def _follow_file(self) -> None:
        """Pick up a rotation made by another process (at most one stat a second), so new data
        keys are wrapped under the current epoch everywhere."""
        if self.path is None or time.monotonic() - self._checked_at < 1.0:
            return
        self._checked_at = time.monotonic()
        if self._file_mtime() != self._mtime:
            self.reload()

    def _save(self) -> None:
        if self.path is not None:
            _replace(self.path, self._to_json())
            self._mtime = self._file_mtime()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialise changes of the file between processes (rotation, destruction)."""
        with self._lock:
            if self.path is None:
                yield
                return
            lock_path = self.path.with_name(self.path.name + ".lock")
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self.reload()
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    # --- epochs ------------------------------------------------------------------------------

    @property
    def current_epoch(self) -> int:
        return self._current

    def epochs(self) -> list[KekEpoch]:
        with self._lock:
            return [self._epochs[n] for n in sorted(self._epochs)]

    def rotate(self, *, now: datetime) -> int:
        """Start a new epoch; the previous one is retired now (still usable until destroyed)."""
        with self._file_lock():
            old = self._epochs[self._current]
            new_number = max(self._epochs) + 1
            self._epochs[new_number] = KekEpoch(
                epoch=new_number, key=AESGCM.generate_key(bit_length=256), created_at=now
            )
            if old.retired_at is None:
                old.retired_at = now
            self._current = new_number
            self._save()
        log.info("records.kek.epoch_started", epoch=new_number, retired=old.epoch)
        return new_number

    def destroy_expired(
        self, *, now: datetime, backup_window: timedelta, in_use: set[int]
    ) -> list[int]:
        """Destroy retired epochs older than the backup window that no live key still uses."""
        destroyed: list[int] = []
        with self._file_lock():
            for epoch in self._epochs.values():
                if (
                    epoch.epoch != self._current
                    and epoch.key is not None
                    and epoch.retired_at is not None
                    and epoch.retired_at + backup_window <= now
                    and epoch.epoch not in in_use
                ):
                    epoch.key = None
                    epoch.destroyed_at = now
                    destroyed.append(epoch.epoch)
            if destroyed:
                self._save()
        for number in destroyed:
            log.info("records.kek.epoch_destroyed", epoch=number)
        return destroyed

    def _epoch_key(self, number: int) -> bytes:
        with self._lock:
            epoch = self._epochs.get(number)
        if epoch is None:
            self.reload()  # another process may have rotated
            with self._lock:
                epoch = self._epochs.get(number)
        if epoch is None:
            raise UnknownKeyError(f"key-encryption-key epoch {number} is not in the key file")
        if epoch.key is None:
            raise KekEpochDestroyedError(
                f"key-encryption-key epoch {number} was destroyed; keys it wrapped are erased"
            )
        return epoch.key

    # --- data keys ---------------------------------------------------------------------------

    @staticmethod
    def new_data_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def _wrap_ad(self, key_id: uuid.UUID, subject_id: uuid.UUID, epoch: int) -> bytes:
        return self.DEK_PURPOSE + key_id.bytes + subject_id.bytes + epoch.to_bytes(4, "big")

    def wrap(
        self, data_key: bytes, *, key_id: uuid.UUID, subject_id: uuid.UUID
    ) -> tuple[int, bytes]:
        """Wrap under the current epoch; returns (epoch, nonce ‖ ciphertext+tag)."""
        self._follow_file()
        epoch = self._current
        nonce = os.urandom(NONCE_LEN)
        body = AESGCM(self._epoch_key(epoch)).encrypt(
            nonce, data_key, self._wrap_ad(key_id, subject_id, epoch)
        )
        return epoch, nonce + body

    def unwrap(
        self, wrapped: bytes, *, epoch: int, key_id: uuid.UUID, subject_id: uuid.UUID
    ) -> bytes:
        kek = self._epoch_key(epoch)
        try:
            return AESGCM(kek).decrypt(
                bytes(wrapped[:NONCE_LEN]),
                bytes(wrapped[NONCE_LEN:]),
                self._wrap_ad(key_id, subject_id, epoch),
            )
        except InvalidTag as exc:
            raise DecryptionError(
                f"data key {key_id} does not unwrap under epoch {epoch}: altered or moved"
            ) from exc

    # --- purpose keys ------------------------------------------------------------------------

    def purpose_key(self, purpose: str) -> bytes:
        """A key for one purpose only, derived from the file's root secret with HKDF."""
        key = self._purpose_keys.get(purpose)
        if key is None:
            key = _hkdf(self._index_root, purpose)
            self._purpose_keys[purpose] = key
        return key

    def blind_index(self, kind: str, value: str) -> int:
        """A truncated keyed hash: `index_bits` bits, so one value matches a few subjects.

        Truncation is deliberate: the index narrows the search, decryption decides.
        """
        digest = hmac.new(
            self.purpose_key(f"blind-index/{kind}/1"), value.encode(), hashlib.sha256
        ).digest()
        return int.from_bytes(digest[:4], "big") >> (32 - self.index_bits)

    def payload_mac(self, canonical: bytes) -> str:
        return hmac.new(self.purpose_key("payload-hash/1"), canonical, hashlib.sha256).hexdigest()


def _write_new(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(content, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())


def _replace(path: Path, content: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    _write_new(tmp, content)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
