"""Ed25519 signing in the C2SP `signed-note` format, with the key in a file outside the database.

Key file: one line, the Go `golang.org/x/mod/sumdb/note` signer-key format,
`PRIVATE+KEY+<name>+<hash8>+<base64(0x01 ‖ seed)>`, created with mode 0600 on first use.
Verifier key (what `GET /v1/audit/public-key` serves): `<name>+<hash8>+<base64(0x01 ‖ pub)>`.
The key hash is the first 4 bytes of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ pub).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash and a space begin every signature line


class NoteError(ValueError):
    """A malformed note, key or signature; the message says which (never the note text)."""


def key_hash(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError("a key name must be non-empty, without '+' or spaces")


class NoteSigner:
    """Signs checkpoints (and certificates) with one Ed25519 key kept in a file."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_hash = key_hash(name, self.public_key)

    @classmethod
    def load_or_create(cls, path: Path, name: str) -> NoteSigner:
        """Load the key at `path`; create it (mode 0600, parents 0700) if it does not exist."""
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            seed = Ed25519PrivateKey.generate().private_bytes_raw()
            pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
            material = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
            line = f"PRIVATE+KEY+{name}+{key_hash(name, pub).hex()}+{material}\n"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first: load theirs
            else:
                with os.fdopen(fd, "w", encoding="ascii") as handle:
                    handle.write(line)
        return cls.from_key_string(path.read_text(encoding="ascii").strip(), name)

    @classmethod
    def from_key_string(cls, text: str, name: str | None = None) -> NoteSigner:
        parts = text.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError("the signing key file is not a PRIVATE+KEY+name+hash+key line")
        key_name, hash_hex, material = parts[2], parts[3], base64.b64decode(parts[4])
        if name is not None and key_name != name:
            raise NoteError(
                f"the signing key file is for origin {key_name!r}, settings say {name!r}"
            )
        if len(material) != 33 or material[0] != ALG_ED25519:
            raise NoteError("the signing key file does not hold an Ed25519 key")
        signer = cls(key_name, Ed25519PrivateKey.from_private_bytes(material[1:]))
        if signer.key_hash.hex() != hash_hex:
            raise NoteError("the signing key file's key hash does not match its key")
        return signer

    def sign(self, data: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature of `data`."""
        return self._key.sign(data)

    def verifier_key(self) -> str:
        """`name+hash+base64(0x01 ‖ public key)`, the C2SP note verifier key."""
        material = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{material}"

    def sign_note(self, text: str) -> str:
        """`text` (ending in a newline) as a C2SP signed note with this key's signature."""
        if not text.endswith("\n") or "\n\n" in text:
            raise NoteError("note text must end in a newline and contain no blank line")
        sig = base64.b64encode(self.key_hash + self.sign(text.encode())).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {sig}\n"


@dataclass(frozen=True)
class Verifier:
    name: str
    key_hash: bytes
    public_key: Ed25519PublicKey

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key is name+hash+base64")
        name, hash_hex, material_b64 = parts
        try:
            material = base64.b64decode(material_b64, validate=True)
            hash_bytes = bytes.fromhex(hash_hex)
        except ValueError as exc:
            raise NoteError("the verifier key is not valid hex/base64") from exc
        if len(material) != 33 or material[0] != ALG_ED25519 or len(hash_bytes) != 4:
            raise NoteError("the verifier key is not an Ed25519 note key")
        if key_hash(name, material[1:]) != hash_bytes:
            raise NoteError("the verifier key's hash does not match its name and key")
        return cls(name, hash_bytes, Ed25519PublicKey.from_public_bytes(material[1:]))


def open_note(note: str, verifier: Verifier) -> str:
    """The text of `note` if it carries a valid signature by `verifier`; NoteError otherwise."""
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note (no blank line before the signatures)")
    text, sig_block = note[: split + 1], note[split + 2 :]
    found_key = False
    for line in sig_block.splitlines():
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("malformed signature line")
        name, _, sig_b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(sig_b64, validate=True)
        except ValueError as exc:
            raise NoteError("malformed signature encoding") from exc
        if len(raw) < 5:
            raise NoteError("malformed signature")
        if name != verifier.name or raw[:4] != verifier.key_hash:
            continue
        found_key = True
        try:
            verifier.public_key.verify(raw[4:], text.encode())
        except InvalidSignature as exc:
            raise NoteError("the note's signature does not verify") from exc
        return text
    if not found_key:
        raise NoteError("the note is not signed by the expected key")
    raise NoteError("the note's signature does not verify")  # pragma: no cover
