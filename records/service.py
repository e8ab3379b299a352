"""Store, encrypt, find and delete subjects and their records. No policy, no audit: the use-cases
that also compute due dates and write the audit trail live in `retention.ingest`.

Everything takes the caller's session and never commits (STYLE: commit once at the boundary).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Boolean,
    String,
    and_,
    any_,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from records.crypto import (
    Binding,
    KeyDestroyedError,
    Keyring,
    UnknownKeyError,
    key_id_of,
    open_sealed,
    seal,
)
from records.errors import ConflictError, InvalidInputError, NotFoundError
from records.models import (
    RULE_RESTRICTION_GROUND,
    BusinessEvent,
    DataKey,
    PersonalRecord,
    RecordStatus,
    Subject,
)
from records.pagination import Keyset

log = structlog.get_logger(__name__)

EMAIL = "email"
EXTERNAL_ID = "external_id"


class SubjectNotFoundError(NotFoundError):
    code = "subject-not-found"
    title = "Subject not found"


class RecordNotFoundError(NotFoundError):
    code = "record-not-found"
    title = "Record not found"


class RecordConflictError(ConflictError):
    code = "record-conflict"
    title = "Record id already used with another body"


class SubjectErasedError(ConflictError):
    code = "subject-erased"
    title = "Subject erased"


class SubjectIdentityConflictError(ConflictError):
    """An e-mail or external id already bound otherwise. `detail` names the field, never the
    value: the caller sent the value, and the problem body must not echo personal data."""

    code = "subject-identity-conflict"
    title = "Identity conflicts with a stored subject"


def normalise_email(email: str) -> str:
    return email.strip().lower()


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8 (for MACs and fingerprints)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


@dataclass(frozen=True)
class Identity:
    email: str
    name: str | None = None
    external_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "name": self.name,
            "external_id": self.external_id,
            "attributes": self.attributes,
        }


@dataclass(frozen=True)
class Due:
    """What the policy evaluation decided for a record; `due_at` None while untriggered."""

    due_at: datetime | None = None
    rule_id: str | None = None
    rule_version: int | None = None
    action: str | None = None
    handover_to: str | None = None
    # The deciding rule says `restrict_processing` (storage only until the action).
    restricted: bool = False


# Above this many values an SQLite `IN` list is sent as one JSON array instead of one
# parameter per value (SQLite builds before 3.32 allow 999 parameters per statement).
SQLITE_LIST_PARAMETERS = 900


def one_of(session: Session, column: Any, values: Iterable[Any]) -> Any:
    """`column IN values` with one parameter, not thousands (bulk import asks for a thousand
    ids at a time, a purge batch for tens of thousands): on PostgreSQL `column = ANY(array)`;
    on SQLite a long list is one JSON array read by `json_each`, its values in the column's
    stored form."""
    listed = list(values)
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        return column == any_(bindparam(None, listed, type_=pg.ARRAY(column.type)))
    if dialect.name != "sqlite" or len(listed) <= SQLITE_LIST_PARAMETERS:
        return column.in_(listed)
    process = column.type.bind_processor(dialect)
    stored = [process(v) for v in listed] if process is not None else listed
    if not all(v is None or isinstance(v, str | int | float) for v in stored):
        return column.in_(listed)  # a stored form JSON does not carry as is (datetimes)
    return column.in_(
        select(literal_column("value")).select_from(
            func.json_each(bindparam(None, json.dumps(stored), type_=String()))
        )
    )


def bulk_insert(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows in the session's transaction: `COPY … FROM STDIN` on PostgreSQL (one
    stream instead of a statement per row), one executemany elsewhere. Every row has the same
    keys, and datetimes are aware (the COPY path bypasses the column types)."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    raw = connection.connection.driver_connection
    assert raw is not None
    quoted = ", ".join(f'"{c}"' for c in columns)
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


# --- data keys ---------------------------------------------------------------------------------


class KeyCache:
    """Unwrapped data keys by subject, for the length of one unit of work or batch."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._keys: dict[uuid.UUID, tuple[uuid.UUID, bytes]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        # A cache is a tool, not a collection: an empty one passed in (`cache or KeyCache()`)
        # must be used and filled, not silently replaced by a fresh one.
        return True

    def put(self, subject_id: uuid.UUID, key_id: uuid.UUID, data_key: bytes) -> None:
        self._keys[subject_id] = (key_id, data_key)

    def get(self, session: Session, subject_id: uuid.UUID) -> tuple[uuid.UUID, bytes]:
        cached = self._keys.get(subject_id)
        if cached is not None:
            return cached
        key = session.scalars(select(DataKey).where(col(DataKey.subject_id) == subject_id)).first()
        if key is None:
            raise UnknownKeyError(f"subject {subject_id} has no data key")
        if key.wrapped_key is None or key.kek_epoch is None:
            raise KeyDestroyedError(f"the data key of subject {subject_id} was destroyed")
        plain = self.keyring.unwrap(
            key.wrapped_key, epoch=key.kek_epoch, key_id=key.id, subject_id=subject_id
        )
        self._keys[subject_id] = (key.id, plain)
        return key.id, plain

    def prefetch(self, session: Session, subject_ids: Iterable[uuid.UUID]) -> None:
        """Unwrap the data keys of many subjects with one query (destroyed keys are skipped:
        `get` then raises KeyDestroyedError for them)."""
        missing = {s for s in subject_ids if s not in self._keys}
        if not missing:
            return
        rows = session.execute(
            select(
                col(DataKey.subject_id),
                col(DataKey.id),
                col(DataKey.wrapped_key),
                col(DataKey.kek_epoch),
            ).where(one_of(session, col(DataKey.subject_id), missing))
        ).all()
        for subject_id, key_id, wrapped, epoch in rows:
            if wrapped is None or epoch is None:
                continue
            plain = self.keyring.unwrap(wrapped, epoch=epoch, key_id=key_id, subject_id=subject_id)
            self._keys[subject_id] = (key_id, plain)

    def forget(self, subject_id: uuid.UUID) -> None:
        self._keys.pop(subject_id, None)


# --- subjects ----------------------------------------------------------------------------------


def exact_key(keyring: Keyring, kind: str, value: str) -> str:
    """The full keyed HMAC of a normalised e-mail or external id, for the unique indexes that
    make one address one live subject. The truncated blind index cannot be unique (it is meant
    to collide); this one reveals equality only, and only to whoever holds the key file, which
    also unwraps every data key."""
    return hmac.new(
        keyring.purpose_key(f"subject-key/{kind}/1"), value.encode(), hashlib.sha256
    ).hexdigest()


def _identity_columns(keyring: Keyring, identity: Identity) -> dict[str, Any]:
    ext = identity.external_id
    return {
        "email_index": keyring.blind_index(EMAIL, identity.email),
        "external_id_index": keyring.blind_index(EXTERNAL_ID, ext) if ext else None,
        "email_key": exact_key(keyring, EMAIL, identity.email),
        "external_id_key": exact_key(keyring, EXTERNAL_ID, ext) if ext else None,
    }


@dataclass(frozen=True)
class NewSubject:
    """Rows of a new subject and its data key, ready for one bulk INSERT each."""

    id: uuid.UUID
    subject_row: dict[str, Any]
    key_row: dict[str, Any]
    key_id: uuid.UUID
    data_key: bytes


def new_subject_rows(
    keyring: Keyring,
    *,
    email: str,
    name: str | None = None,
    external_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    now: datetime,
    subject_id: uuid.UUID | None = None,
) -> NewSubject:
    """A new subject with a fresh data key: identity sealed, blind indexes computed."""
    email_norm = normalise_email(email)
    if not email_norm or "@" not in email_norm:
        raise InvalidInputError("email: not an e-mail address")
    sid = subject_id or uuid.uuid4()
    plain = keyring.new_data_key()
    key_id = uuid.uuid4()
    epoch, wrapped = keyring.wrap(plain, key_id=key_id, subject_id=sid)
    identity = Identity(
        email=email_norm,
        name=name,
        external_id=external_id.strip() if external_id else None,
        attributes=attributes or {},
    )
    sealed = seal(
        plain, key_id, canonical_json(identity.to_json()), Binding("subject", sid, "identity", sid)
    )
    return NewSubject(
        id=sid,
        subject_row={
            "id": sid,
            "identity": sealed,
            **_identity_columns(keyring, identity),
            "created_at": now,
            "updated_at": now,
            "erased_at": None,
        },
        key_row={
            "id": key_id,
            "subject_id": sid,
            "wrapped_key": wrapped,
            "kek_epoch": epoch,
            "created_at": now,
            "rewrapped_at": None,
            "destroyed_at": None,
        },
        key_id=key_id,
        data_key=plain,
    )


def create_subject(
    session: Session,
    *,
    keyring: Keyring,
    email: str,
    name: str | None = None,
    external_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    now: datetime,
    cache: KeyCache | None = None,
) -> Subject:
    new = new_subject_rows(
        keyring, email=email, name=name, external_id=external_id, attributes=attributes, now=now
    )
    subject = Subject(**new.subject_row)
    session.add(subject)
    session.flush()
    session.add(DataKey(**new.key_row))
    session.flush()
    if cache is not None:
        cache.put(new.id, new.key_id, new.data_key)
    return subject


def get_subject(session: Session, subject_id: uuid.UUID) -> Subject:
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise SubjectNotFoundError(f"no subject {subject_id}")
    return subject


def read_identity(
    session: Session, *, keyring: Keyring, subject: Subject, cache: KeyCache | None = None
) -> Identity:
    if subject.identity is None:
        raise KeyDestroyedError(f"subject {subject.id} was erased")
    cache = cache or KeyCache(keyring)
    key_id, plain = cache.get(session, subject.id)
    raw = json.loads(
        open_sealed(
            plain, key_id, subject.identity, Binding("subject", subject.id, "identity", subject.id)
        )
    )
    return Identity(
        email=raw["email"],
        name=raw.get("name"),
        external_id=raw.get("external_id"),
        attributes=raw.get("attributes") or {},
    )


@dataclass(frozen=True)
class SubjectMatch:
    """A live subject whose e-mail or external id is exactly the one asked for, with the exact
    keys it holds: enough to compare identities (same address? same external id?) without
    decrypting them."""

    id: uuid.UUID
    created_at: datetime
    email_key: str
    external_id_key: str | None


def _keyed_matches(session: Session, *, kind: str, keys: Iterable[str]) -> list[SubjectMatch]:
    column = col(Subject.email_key) if kind == EMAIL else col(Subject.external_id_key)
    rows = session.execute(
        select(
            col(Subject.id),
            col(Subject.created_at),
            col(Subject.email_key),
            col(Subject.external_id_key),
        ).where(one_of(session, column, keys), col(Subject.erased_at).is_(None))
    ).all()
    return [SubjectMatch(r[0], r[1], r[2], r[3]) for r in rows if r[2] is not None]


def _unkeyed_matches(
    session: Session, *, keyring: Keyring, kind: str, buckets: Iterable[int]
) -> list[SubjectMatch]:
    """Live subjects stored before 0007 that `lethe subjects merge-duplicates` has not keyed
    yet, in these blind-index buckets: they hold only the truncated index, so these candidates
    (and only they) are decrypted and their keys computed in memory. None once the command has
    run: the probe then meets no row."""
    column = col(Subject.email_index) if kind == EMAIL else col(Subject.external_id_index)
    rows = session.execute(
        select(
            col(Subject.id),
            col(Subject.created_at),
            col(Subject.identity),
            col(DataKey.id),
            col(DataKey.wrapped_key),
            col(DataKey.kek_epoch),
        )
        .join(DataKey, col(DataKey.subject_id) == col(Subject.id))
        .where(
            col(Subject.email_key).is_(None),
            col(Subject.erased_at).is_(None),
            one_of(session, column, buckets),
        )
    ).all()
    found: list[SubjectMatch] = []
    for subject_id, created_at, identity, key_id, wrapped, epoch in rows:
        if identity is None or wrapped is None or epoch is None:
            continue
        plain = keyring.unwrap(wrapped, epoch=epoch, key_id=key_id, subject_id=subject_id)
        raw = json.loads(
            open_sealed(
                plain, key_id, identity, Binding("subject", subject_id, "identity", subject_id)
            )
        )
        ext = raw.get("external_id")
        found.append(
            SubjectMatch(
                subject_id,
                created_at,
                exact_key(keyring, EMAIL, raw["email"]),
                exact_key(keyring, EXTERNAL_ID, ext) if ext else None,
            )
        )
    return found


def _matches(
    session: Session, *, keyring: Keyring, kind: str, wanted: dict[str, int]
) -> dict[str, list[SubjectMatch]]:
    """Exact key → the live subjects that hold it, oldest first. `wanted` maps each exact key
    to its blind-index bucket (for the subjects not keyed yet)."""
    if not wanted:
        return {}
    found: dict[str, list[SubjectMatch]] = {}
    for match in _keyed_matches(session, kind=kind, keys=wanted.keys()) + _unkeyed_matches(
        session, keyring=keyring, kind=kind, buckets=set(wanted.values())
    ):
        key = match.email_key if kind == EMAIL else match.external_id_key
        if key is not None and key in wanted:
            found.setdefault(key, []).append(match)
    for matches in found.values():
        matches.sort(key=lambda m: (m.created_at, m.id))
    return found


def _wanted(keyring: Keyring, kind: str, values: Iterable[str]) -> dict[str, tuple[str, int]]:
    """Normalised value → (exact key, bucket)."""
    return {v: (exact_key(keyring, kind, v), keyring.blind_index(kind, v)) for v in values if v}


def find_subject_matches(
    session: Session,
    *,
    keyring: Keyring,
    email: str | None = None,
    external_id: str | None = None,
) -> list[SubjectMatch]:
    """Live subjects whose e-mail (or external id) is exactly this one, oldest first: one query
    on the exact key's unique index, nothing decrypted (but subjects not keyed since 0007)."""
    if (email is None) == (external_id is None):
        raise InvalidInputError("give exactly one of email or external_id")
    if email is not None:
        kind, value = EMAIL, normalise_email(email)
    else:
        assert external_id is not None
        kind, value = EXTERNAL_ID, external_id.strip()
    if not value:
        return []
    key = exact_key(keyring, kind, value)
    found = _matches(
        session, keyring=keyring, kind=kind, wanted={key: keyring.blind_index(kind, value)}
    )
    return found.get(key, [])


def same_email(session: Session, *, keyring: Keyring, subject: Subject) -> list[SubjectMatch]:
    """The live subjects of `subject`'s e-mail, itself included, oldest first. A keyed subject
    is looked up by its stored key and bucket, without decrypting its identity."""
    if subject.email_key is None or subject.email_index is None:
        email = read_identity(session, keyring=keyring, subject=subject).email
        return find_subject_matches(session, keyring=keyring, email=email)
    found = _matches(
        session, keyring=keyring, kind=EMAIL, wanted={subject.email_key: subject.email_index}
    )
    return found.get(subject.email_key, [])


def find_subjects(
    session: Session,
    *,
    keyring: Keyring,
    email: str | None = None,
    external_id: str | None = None,
) -> list[tuple[Subject, Identity]]:
    """`find_subject_matches` with the identities decrypted, for callers that show them
    (GET /v1/subjects): only the matches are decrypted, one key unwrap each."""
    matches = find_subject_matches(session, keyring=keyring, email=email, external_id=external_id)
    if not matches:
        return []
    by_id = subjects_by_ids(session, [m.id for m in matches])
    cache = KeyCache(keyring)
    cache.prefetch(session, by_id)
    return [
        (by_id[m.id], read_identity(session, keyring=keyring, subject=by_id[m.id], cache=cache))
        for m in matches
        if m.id in by_id
    ]


def find_subjects_by_emails(
    session: Session, *, keyring: Keyring, emails: Iterable[str]
) -> dict[str, list[SubjectMatch]]:
    """Many e-mails at once (bulk import): one query on the exact keys, nothing decrypted.
    Returns normalised e-mail → the live subjects of it, oldest first."""
    wanted = _wanted(keyring, EMAIL, {normalise_email(e) for e in emails})
    found = _matches(
        session, keyring=keyring, kind=EMAIL, wanted={k: b for k, b in wanted.values()}
    )
    return {e: found[k] for e, (k, _) in wanted.items() if k in found}


def find_subjects_by_external_ids(
    session: Session, *, keyring: Keyring, external_ids: Iterable[str]
) -> dict[str, list[SubjectMatch]]:
    """Many external ids at once (bulk import): external id → the live subjects that hold it
    (their `email_key` says whether it is bound to another address), nothing decrypted."""
    wanted = _wanted(keyring, EXTERNAL_ID, {e.strip() for e in external_ids if e})
    found = _matches(
        session, keyring=keyring, kind=EXTERNAL_ID, wanted={k: b for k, b in wanted.values()}
    )
    return {e: found[k] for e, (k, _) in wanted.items() if k in found}


@dataclass(frozen=True)
class Resolved:
    """The one live subject of an e-mail: `created` when this call made it, `filled` the
    identity fields it added to a stored subject (an external id it did not have)."""

    subject: Subject
    created: bool
    filled: tuple[str, ...] = ()


def _check_compatible(
    session: Session, *, keyring: Keyring, email: str, external_id: str | None
) -> SubjectMatch | None:
    """The live subject of `email` (the oldest, where the old ingest made several), or None;
    a conflict when the e-mail or the external id is bound otherwise. Compared by exact keys:
    nothing is decrypted."""
    by_email = find_subject_matches(session, keyring=keyring, email=email)
    if external_id is not None:
        wanted = exact_key(keyring, EXTERNAL_ID, external_id)
        held = by_email[0].external_id_key if by_email else None
        if held is not None and held != wanted:
            raise SubjectIdentityConflictError(
                "a subject with this e-mail address has another external_id"
            )
        mail = exact_key(keyring, EMAIL, email)
        for match in find_subject_matches(session, keyring=keyring, external_id=external_id):
            if match.email_key != mail:
                raise SubjectIdentityConflictError(
                    "this external_id belongs to a subject with another e-mail address"
                )
    return by_email[0] if by_email else None


def resolve_subject(
    session: Session,
    *,
    keyring: Keyring,
    email: str,
    name: str | None = None,
    external_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    now: datetime,
    cache: KeyCache | None = None,
) -> Resolved:
    """The live subject of this e-mail, created if there is none: one address, one subject.

    The stored identity is kept as it is (a name or attributes sent again do not overwrite it;
    rectification does that), except that a missing external id is filled in, and a subject
    stored before 0007 gets its exact keys: only then is the identity decrypted (to seal it
    again). A lost race with a concurrent ingest meets the unique index and resolves to the
    winner.
    """
    email_norm = normalise_email(email)
    ext = external_id.strip() if external_id else None
    found = _check_compatible(session, keyring=keyring, email=email_norm, external_id=ext)
    if found is not None:
        subject = get_subject(session, found.id)
        fill = ext is not None and found.external_id_key is None
        if fill or subject.email_key is None:
            identity = read_identity(session, keyring=keyring, subject=subject, cache=cache)
            if fill:
                identity = Identity(
                    email=identity.email,
                    name=identity.name,
                    external_id=ext,
                    attributes=identity.attributes,
                )
            set_identity(
                session, keyring=keyring, subject=subject, identity=identity, now=now, cache=cache
            )
        return Resolved(subject=subject, created=False, filled=("external_id",) if fill else ())
    try:
        with session.begin_nested():
            subject = create_subject(
                session,
                keyring=keyring,
                email=email_norm,
                name=name,
                external_id=ext,
                attributes=attributes,
                now=now,
                cache=cache,
            )
    except IntegrityError:
        found = _check_compatible(session, keyring=keyring, email=email_norm, external_id=ext)
        if found is None:
            raise SubjectIdentityConflictError(
                "the e-mail address or external_id is bound to another subject"
            ) from None
        return Resolved(subject=get_subject(session, found.id), created=False)
    return Resolved(subject=subject, created=True)


def set_identity(
    session: Session,
    *,
    keyring: Keyring,
    subject: Subject,
    identity: Identity,
    now: datetime,
    cache: KeyCache | None = None,
) -> None:
    """Seal a new identity on a live subject and recompute its indexes; a conflict when the
    e-mail or external id is another live subject's."""
    if subject.erased_at is not None:
        raise SubjectErasedError(f"subject {subject.id} is erased")
    email = normalise_email(identity.email)
    if not email or "@" not in email:
        raise InvalidInputError("email: not an e-mail address")
    ext = identity.external_id.strip() if identity.external_id else None
    identity = Identity(
        email=email, name=identity.name, external_id=ext, attributes=identity.attributes
    )
    for other in find_subject_matches(session, keyring=keyring, email=email):
        if other.id != subject.id:
            raise SubjectIdentityConflictError("the e-mail address belongs to another data subject")
    if ext is not None:
        for other in find_subject_matches(session, keyring=keyring, external_id=ext):
            if other.id != subject.id:
                raise SubjectIdentityConflictError("the external_id belongs to another subject")
    cache = cache or KeyCache(keyring)
    key_id, plain = cache.get(session, subject.id)
    subject.identity = seal(
        plain,
        key_id,
        canonical_json(identity.to_json()),
        Binding("subject", subject.id, "identity", subject.id),
    )
    for column, value in _identity_columns(keyring, identity).items():
        setattr(subject, column, value)
    subject.updated_at = now
    session.add(subject)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        session.refresh(subject)  # drop the refused change, or the final flush repeats it
        raise SubjectIdentityConflictError(
            "the e-mail address or external_id belongs to another subject"
        ) from None


@dataclass(frozen=True)
class Merged:
    survivor_id: uuid.UUID
    merged_ids: tuple[uuid.UUID, ...]
    records: int
    # identity fields of a duplicate that disagreed with the survivor's and were not kept
    dropped_fields: tuple[str, ...] = ()


def merge_subjects(
    session: Session,
    *,
    keyring: Keyring,
    survivor_id: uuid.UUID,
    duplicate_ids: Sequence[uuid.UUID],
    now: datetime,
) -> Merged:
    """Move the duplicates' records to the survivor and delete the duplicates.

    The associated data of a payload binds its subject, so each payload is re-encrypted under
    the survivor's data key. The survivor's identity wins; fields it lacks come from the
    duplicates. Rows of upper layers that name a duplicate (holds, requests) must be re-pointed
    by the caller first.
    """
    cache = KeyCache(keyring)
    survivor = get_subject(session, survivor_id)
    identity = read_identity(session, keyring=keyring, subject=survivor, cache=cache)
    key_id, data_key = cache.get(session, survivor_id)
    moved = 0
    dropped: set[str] = set()
    for dup_id in duplicate_ids:
        if dup_id == survivor_id:
            continue
        dup = get_subject(session, dup_id)
        if dup.identity is not None:
            other = read_identity(session, keyring=keyring, subject=dup, cache=cache)
            if other.external_id and identity.external_id not in (None, other.external_id):
                dropped.add("external_id")
            if other.name and identity.name not in (None, other.name):
                dropped.add("name")
            identity = Identity(
                email=identity.email,
                name=identity.name or other.name,
                external_id=identity.external_id or other.external_id,
                attributes={**other.attributes, **identity.attributes},
            )
        for batch in iter_record_batches(session, subject_id=dup_id, batch_size=500):
            for record in batch:
                if record.payload is not None:
                    dup_key_id, dup_key = cache.get(session, dup_id)
                    plain = open_sealed(
                        dup_key, dup_key_id, record.payload, payload_binding(record.id, dup_id)
                    )
                    record.payload = seal(
                        data_key, key_id, plain, payload_binding(record.id, survivor_id)
                    )
                record.subject_id = survivor_id
                record.updated_at = now
                session.add(record)
                moved += 1
        session.flush()
        for key in session.scalars(select(DataKey).where(col(DataKey.subject_id) == dup_id)):
            session.delete(key)
        session.delete(dup)
        session.flush()
        cache.forget(dup_id)
    # The duplicates are gone, so their e-mail and external id are free for the survivor.
    set_identity(
        session, keyring=keyring, subject=survivor, identity=identity, now=now, cache=cache
    )
    merged = tuple(d for d in duplicate_ids if d != survivor_id)
    log.info("records.subject.merged", subject_id=str(survivor_id), merged=len(merged))
    return Merged(
        survivor_id=survivor_id,
        merged_ids=merged,
        records=moved,
        dropped_fields=tuple(sorted(dropped)),
    )


def subjects_missing_keys(
    session: Session, *, after: tuple[datetime, uuid.UUID] | None = None, limit: int = 500
) -> list[Subject]:
    """Live subjects stored before 0007 (no exact e-mail key yet), oldest first."""
    stmt = select(Subject).where(col(Subject.erased_at).is_(None), col(Subject.email_key).is_(None))
    if after is not None:
        stmt = stmt.where(
            (col(Subject.created_at) > after[0])
            | ((col(Subject.created_at) == after[0]) & (col(Subject.id) > after[1]))
        )
    return list(
        session.scalars(stmt.order_by(col(Subject.created_at), col(Subject.id)).limit(limit)).all()
    )


def destroy_subject_key(session: Session, *, subject_id: uuid.UUID, now: datetime) -> DataKey:
    """Crypto-shred a subject: its data key, identity ciphertext and blind indexes go.

    Every payload encrypted under the key becomes unreadable at once; older database copies
    stay readable only until the KEK epoch that wrapped the key is destroyed.
    """
    subject = get_subject(session, subject_id)
    key = session.scalars(select(DataKey).where(col(DataKey.subject_id) == subject_id)).first()
    if key is None:
        raise UnknownKeyError(f"subject {subject_id} has no data key")
    key.wrapped_key = None
    key.kek_epoch = None
    if key.destroyed_at is None:
        key.destroyed_at = now
    subject.identity = None
    subject.email_index = None
    subject.external_id_index = None
    subject.email_key = None
    subject.external_id_key = None
    if subject.erased_at is None:
        subject.erased_at = now
    subject.updated_at = now
    session.add(key)
    session.add(subject)
    session.flush()
    log.info("records.key.destroyed", subject_id=str(subject_id), key_id=str(key.id))
    return key


# --- records -----------------------------------------------------------------------------------


def record_fingerprint(keyring: Keyring, meta: dict[str, Any], payload: bytes) -> str:
    """A keyed hash of a record's canonical body (its fields and its canonical payload): same
    id + same body is a replay, else a conflict. Keyed so the stored hash says nothing about a
    low-entropy payload."""
    return keyring.payload_mac(canonical_json(meta) + b"\n" + payload)


def payload_binding(record_id: uuid.UUID, subject_id: uuid.UUID) -> Binding:
    return Binding("personal_record", record_id, "payload", subject_id)


def build_record(
    *,
    record_id: uuid.UUID,
    subject_id: uuid.UUID,
    key_id: uuid.UUID,
    data_key: bytes,
    policy: str,
    policy_version: int | None,
    category: str,
    collected_at: datetime,
    payload: dict[str, Any],
    payload_hash: str,
    due: Due,
    now: datetime,
    subject_category: str | None = None,
    context: str | None = None,
    outcome: str | None = None,
    source: str | None = None,
) -> PersonalRecord:
    return PersonalRecord(
        id=record_id,
        subject_id=subject_id,
        policy=policy,
        policy_version=policy_version,
        category=category,
        subject_category=subject_category,
        context=context,
        outcome=outcome,
        source=source,
        collected_at=collected_at,
        payload=seal(
            data_key, key_id, canonical_json(payload), payload_binding(record_id, subject_id)
        ),
        payload_hash=payload_hash,
        due_at=due.due_at,
        rule_id=due.rule_id,
        rule_version=due.rule_version,
        action=due.action,
        handover_to=due.handover_to,
        status=RecordStatus.active.value,
        restricted_at=now if due.restricted else None,
        restriction_ground=RULE_RESTRICTION_GROUND if due.restricted else None,
        created_at=now,
        updated_at=now,
    )


def put_record(
    session: Session,
    *,
    keyring: Keyring,
    subject_id: uuid.UUID,
    policy: str,
    policy_version: int | None,
    category: str,
    collected_at: datetime,
    payload: dict[str, Any],
    payload_hash: str,
    due: Due,
    now: datetime,
    record_id: uuid.UUID | None = None,
    subject_category: str | None = None,
    context: str | None = None,
    outcome: str | None = None,
    source: str | None = None,
    cache: KeyCache | None = None,
) -> tuple[PersonalRecord, bool]:
    """Store a record; returns (record, created). A replayed id with the same body returns the
    stored record (created False); with another body it is a conflict."""
    if record_id is not None:
        existing = session.get(PersonalRecord, record_id)
        if existing is not None:
            if existing.payload_hash != payload_hash:
                raise RecordConflictError(f"record {record_id} exists with another body")
            return existing, False
    subject = get_subject(session, subject_id)
    if subject.erased_at is not None:
        raise SubjectErasedError(f"subject {subject_id} is erased; no new data may be stored")
    cache = cache or KeyCache(keyring)
    key_id, plain = cache.get(session, subject_id)
    record = build_record(
        record_id=record_id or uuid.uuid4(),
        subject_id=subject_id,
        key_id=key_id,
        data_key=plain,
        policy=policy,
        policy_version=policy_version,
        category=category,
        collected_at=collected_at,
        payload=payload,
        payload_hash=payload_hash,
        due=due,
        now=now,
        subject_category=subject_category,
        context=context,
        outcome=outcome,
        source=source,
    )
    session.add(record)
    session.flush()
    return record, True


def get_record(session: Session, record_id: uuid.UUID) -> PersonalRecord:
    record = session.get(PersonalRecord, record_id)
    if record is None:
        raise RecordNotFoundError(f"no record {record_id}")
    return record


def decrypt_payload(
    session: Session,
    *,
    keyring: Keyring,
    record: PersonalRecord,
    cache: KeyCache | None = None,
) -> dict[str, Any]:
    if record.payload is None:
        raise KeyDestroyedError(f"the payload of record {record.id} was erased")
    cache = cache or KeyCache(keyring)
    key_id, plain = cache.get(session, record.subject_id)
    data: dict[str, Any] = json.loads(
        open_sealed(plain, key_id, record.payload, payload_binding(record.id, record.subject_id))
    )
    return data


SUBJECT_RECORD_ORDER = Keyset(col(PersonalRecord.collected_at), col(PersonalRecord.id))


def records_of_subject(
    session: Session,
    subject_id: uuid.UUID,
    *,
    after: tuple[Any, ...] | None = None,
    limit: int | None = None,
) -> list[PersonalRecord]:
    stmt = select(PersonalRecord).where(col(PersonalRecord.subject_id) == subject_id)
    return list(session.scalars(SUBJECT_RECORD_ORDER.apply(stmt, after=after, limit=limit)).all())


def iter_record_batches(
    session: Session,
    *,
    context: str | None = None,
    subject_id: uuid.UUID | None = None,
    policy: str | None = None,
    batch_size: int = 1000,
) -> Iterator[list[PersonalRecord]]:
    """Records matching the filters, in id order, `batch_size` at a time (keyset pagination).

    Each batch is expunged from the session before the next one is read, so memory stays flat
    however many records match; flush your changes to a batch before asking for the next.
    """
    last: uuid.UUID | None = None
    while True:
        stmt = select(PersonalRecord)
        if context is not None:
            stmt = stmt.where(col(PersonalRecord.context) == context)
        if subject_id is not None:
            stmt = stmt.where(col(PersonalRecord.subject_id) == subject_id)
        if policy is not None:
            stmt = stmt.where(col(PersonalRecord.policy) == policy)
        if last is not None:
            stmt = stmt.where(col(PersonalRecord.id) > last)
        stmt = stmt.order_by(col(PersonalRecord.id)).limit(batch_size)
        batch = list(session.scalars(stmt).all())
        if not batch:
            return
        yield batch
        session.flush()
        for record in batch:
            session.expunge(record)
        last = batch[-1].id
        if len(batch) < batch_size:
            return


def set_due_many(
    session: Session, updates: Sequence[tuple[uuid.UUID, Due]], *, now: datetime
) -> int:
    """Write due fields of many records in one executemany.

    The rule's restriction follows the new decision, but only where the record is unrestricted
    or restricted by its rule: a restriction the subject asked for stays until dsr lifts it."""
    if not updates:
        return 0
    table = PersonalRecord.__table__  # type: ignore[attr-defined]
    by_rule = or_(
        table.c.restriction_ground.is_(None),
        table.c.restriction_ground == RULE_RESTRICTION_GROUND,
    )
    wanted = bindparam("b_restricted", type_=Boolean())
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            due_at=bindparam("b_due_at"),
            rule_id=bindparam("b_rule_id"),
            rule_version=bindparam("b_rule_version"),
            action=bindparam("b_action"),
            handover_to=bindparam("b_handover_to"),
            updated_at=bindparam("b_updated_at"),
            restricted_at=case(
                (
                    and_(by_rule, wanted),
                    func.coalesce(table.c.restricted_at, bindparam("b_updated_at")),
                ),
                (by_rule, null()),
                else_=table.c.restricted_at,
            ),
            restriction_ground=case(
                (and_(by_rule, wanted), literal(RULE_RESTRICTION_GROUND)),
                (by_rule, null()),
                else_=table.c.restriction_ground,
            ),
        )
        .execution_options(synchronize_session=False)
    )
    session.connection().execute(
        stmt,
        [
            {
                "b_id": record_id,
                "b_due_at": due.due_at,
                "b_rule_id": due.rule_id,
                "b_rule_version": due.rule_version,
                "b_action": due.action,
                "b_handover_to": due.handover_to,
                "b_updated_at": now,
                "b_restricted": due.restricted,
            }
            for record_id, due in updates
        ],
    )
    return len(updates)


def delete_record(session: Session, *, record_id: uuid.UUID) -> None:
    record = get_record(session, record_id)
    session.delete(record)
    session.flush()


# --- events ------------------------------------------------------------------------------------


def add_event(
    session: Session,
    *,
    type: str,
    context: str,
    occurred_at: datetime,
    actor: str,
    now: datetime,
) -> BusinessEvent:
    if occurred_at.tzinfo is None:
        raise InvalidInputError("occurred_at: a timestamp with an offset is required")
    event = BusinessEvent(
        type=type, context=context, occurred_at=occurred_at, recorded_at=now, actor=actor
    )
    session.add(event)
    session.flush()
    return event


def latest_event(session: Session, *, type: str, context: str) -> BusinessEvent | None:
    """The event currently in force for (type, context): the last one recorded (a correction is
    a new event)."""
    return session.scalars(
        select(BusinessEvent)
        .where(col(BusinessEvent.type) == type, col(BusinessEvent.context) == context)
        .order_by(col(BusinessEvent.recorded_at).desc(), col(BusinessEvent.id).desc())
        .limit(1)
    ).first()


def events_for_context(session: Session, context: str) -> list[BusinessEvent]:
    return list(
        session.scalars(
            select(BusinessEvent)
            .where(col(BusinessEvent.context) == context)
            .order_by(col(BusinessEvent.recorded_at), col(BusinessEvent.id))
        ).all()
    )


# --- key-encryption-key epochs -----------------------------------------------------------------


@dataclass(frozen=True)
class RewrapResult:
    epoch: int
    rewrapped: int
    last_id: uuid.UUID | None


def rewrap_batch(
    session: Session,
    *,
    keyring: Keyring,
    now: datetime,
    after: uuid.UUID | None = None,
    batch_size: int = 1000,
) -> RewrapResult:
    """Rewrap up to `batch_size` live data keys not yet under the current epoch.

    Call in a loop (one transaction per batch) until `rewrapped` is 0: resumable after a crash.
    """
    epoch = keyring.current_epoch
    stmt = (
        select(DataKey)
        .where(col(DataKey.wrapped_key).is_not(None), col(DataKey.kek_epoch) != epoch)
        .order_by(col(DataKey.id))
        .limit(batch_size)
    )
    if after is not None:
        stmt = stmt.where(col(DataKey.id) > after)
    keys = list(session.scalars(stmt).all())
    last: uuid.UUID | None = None
    for key in keys:
        assert key.wrapped_key is not None and key.kek_epoch is not None
        plain = keyring.unwrap(
            key.wrapped_key, epoch=key.kek_epoch, key_id=key.id, subject_id=key.subject_id
        )
        new_epoch, wrapped = keyring.wrap(plain, key_id=key.id, subject_id=key.subject_id)
        key.wrapped_key = wrapped
        key.kek_epoch = new_epoch
        key.rewrapped_at = now
        session.add(key)
        last = key.id
    session.flush()
    for key in keys:
        session.expunge(key)
    return RewrapResult(epoch=epoch, rewrapped=len(keys), last_id=last)


def epochs_in_use(session: Session) -> set[int]:
    rows = session.execute(
        select(col(DataKey.kek_epoch))
        .where(col(DataKey.wrapped_key).is_not(None))
        .group_by(col(DataKey.kek_epoch))
    ).all()
    return {int(r[0]) for r in rows if r[0] is not None}


def destroy_expired_epochs(
    session: Session, *, keyring: Keyring, now: datetime, backup_window: timedelta
) -> list[int]:
    """Destroy retired KEK epochs past the backup window that no live data key still uses."""
    return keyring.destroy_expired(
        now=now, backup_window=backup_window, in_use=epochs_in_use(session)
    )


def count_live_keys(session: Session) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(DataKey).where(col(DataKey.wrapped_key).is_not(None))
        ).scalar_one()
    )


def subjects_by_ids(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Subject]:
    wanted = list(ids)
    if not wanted:
        return {}
    rows = session.scalars(select(Subject).where(col(Subject.id).in_(wanted))).all()
    return {s.id: s for s in rows}


__all__ = [
    "Due",
    "Identity",
    "KeyCache",
    "Merged",
    "RecordConflictError",
    "RecordNotFoundError",
    "Resolved",
    "SubjectErasedError",
    "SubjectIdentityConflictError",
    "SubjectMatch",
    "SubjectNotFoundError",
    "key_id_of",
]
