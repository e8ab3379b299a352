"""Disposition runs: what goes, what stays, what is written about it."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log.models import AuditEntry
from audit_log.signing import NoteSigner
from records import service as records
from records.crypto import Keyring
from records.db import unit_of_work
from records.http import Actor, Role
from records.models import DataKey, PersonalRecord, Subject
from retention import certificate, holds, purge
from retention.models import PurgeRun, RunStatus

CANARY_EMAIL = "canary-7f3a@example.org"
CANARY_NAME = "Canary Zebedee Quux"
T0 = datetime(2025, 3, 27, 11, 0, tzinfo=UTC)
DPO = Actor(id="key:test-dpo", role=Role.dpo)
POLICY = "DPR-EC-01488"
CALL = "EC/2024/CNECT/443651"


def make_keyring() -> Keyring:
    return Keyring.generate(now=T0)


def make_subject(session: Session, keyring: Keyring, *, n: int = 0) -> Subject:
    return records.create_subject(
        session,
        keyring=keyring,
        email=f"{n}-{CANARY_EMAIL}",
        name=CANARY_NAME,
        now=T0,
    )


def make_record(
    session: Session,
    keyring: Keyring,
    subject: Subject,
    *,
    due_at: datetime | None,
    action: str = "delete",
    policy: str = POLICY,
    context: str | None = CALL,
    outcome: str = "not_selected",
    handover_to: str | None = None,
    policy_version: int | None = 1,
) -> PersonalRecord:
    record, _ = records.put_record(
        session,
        keyring=keyring,
        subject_id=subject.id,
        policy=policy,
        policy_version=policy_version,
        category="application",
        collected_at=T0 - timedelta(days=30),
        payload={"name": CANARY_NAME, "email": CANARY_EMAIL},
        payload_hash=uuid.uuid4().hex,
        due=records.Due(
            due_at=due_at,
            rule_id="not-selected" if action != "handover" else "invited",
            rule_version=1,
            action=action,
            handover_to=handover_to,
        ),
        now=T0,
        context=context,
        outcome=outcome,
    )
    return record


def make_ctx(tmp_path: Path, **config: int | float) -> purge.PurgeContext:
    signer = NoteSigner.load_or_create(tmp_path / "audit.key", "lethe.test/audit")
    return purge.PurgeContext(config=purge.PurgeConfig(**config), signer=signer)  # type: ignore[arg-type]


def run_purge(
    engine: Engine, ctx: purge.PurgeContext, *, now: datetime, dry_run: bool = False
) -> PurgeRun:
    return purge.purge(
        engine, dry_run=dry_run, trigger="manual", actor=DPO, clock=lambda: now, ctx=ctx
    )


def certificate_of(session: Session, run: PurgeRun) -> dict[str, Any]:
    stored = session.get(PurgeRun, run.id)
    assert stored is not None and stored.certificate is not None
    value: dict[str, Any] = json.loads(stored.certificate)
    return value


def remaining(engine: Engine) -> set[uuid.UUID]:
    with Session(engine) as s:
        return set(s.execute(select(col(PersonalRecord.id))).scalars())


def test_due_records_go_and_the_others_stay(engine: Engine, tmp_path: Path) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        due = [make_record(s, keyring, subject, due_at=T0 + timedelta(days=i)) for i in range(3)]
        later = make_record(s, keyring, subject, due_at=T0 + timedelta(days=40))
        untriggered = make_record(s, keyring, subject, due_at=None)
    run = run_purge(engine, make_ctx(tmp_path, batch_size=2), now=T0 + timedelta(days=5))
    assert run.status == RunStatus.completed
    assert remaining(engine) == {later.id, untriggered.id}
    with Session(engine) as s:
        assert purge.counts(s, run.id)["deleted"] == 3
        cert = certificate_of(s, run)
    assert sorted(cert["destroyed"]) == sorted(str(r.id) for r in due)
    assert cert["counts"]["deleted"] == 3
    with Session(engine) as s:
        batches = [
            json.loads(body)["details"]
            for body in s.execute(
                select(col(AuditEntry.body)).where(
                    col(AuditEntry.action) == "retention.batch.purged"
                )
            ).scalars()
        ]
    assert len(batches) == 2  # three due records in batches of two
    assert sorted(i for b in batches for i in b["deleted"]) == sorted(str(r.id) for r in due)


def test_the_subject_key_is_destroyed_only_when_nothing_remains(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        gone = make_subject(s, keyring, n=1)
        stays = make_subject(s, keyring, n=2)
        make_record(s, keyring, gone, due_at=T0)
        make_record(s, keyring, stays, due_at=T0)
        make_record(s, keyring, stays, due_at=T0 + timedelta(days=365))
    run = run_purge(engine, make_ctx(tmp_path), now=T0 + timedelta(days=1))
    with Session(engine) as s:
        keys = {k.subject_id: k for k in s.execute(select(DataKey)).scalars()}
        assert keys[gone.id].wrapped_key is None and keys[gone.id].destroyed_at is not None
        assert keys[stays.id].wrapped_key is not None
        erased = s.get(Subject, gone.id)
        assert erased is not None and erased.identity is None
        cert = certificate_of(s, run)
    assert cert["subject_keys_destroyed"] == [str(gone.id)]


def test_a_hold_keeps_the_record_and_its_release_lets_the_next_run_take_it(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        held = make_record(s, keyring, subject, due_at=T0)
        other = make_record(s, keyring, make_subject(s, keyring, n=3), due_at=T0)
        hold = holds.place_hold(
            s,
            scope=holds.Scope.parse({"subject_id": str(subject.id)}),
            reason="litigation",
            case_reference="T-123/25",
            actor=DPO,
            now=T0,
        )
    ctx = make_ctx(tmp_path)
    first = run_purge(engine, ctx, now=T0 + timedelta(days=1))
    assert remaining(engine) == {held.id}
    with Session(engine) as s:
        tally = purge.counts(s, first.id)
        cert = certificate_of(s, first)
    assert tally["skipped_hold"] == 1 and tally["deleted"] == 1
    assert cert["skipped_hold"] == [{"record_id": str(held.id), "kept_by": [str(hold.id)]}]
    assert str(other.id) in cert["destroyed"]

    second = run_purge(engine, ctx, now=T0 + timedelta(days=2))
    assert remaining(engine) == {held.id}
    with unit_of_work(engine) as s:
        holds.release_hold(s, hold_id=hold.id, reason="case closed", actor=DPO, now=T0)
    third = run_purge(engine, ctx, now=T0 + timedelta(days=3))
    assert remaining(engine) == set()
    with Session(engine) as s:
        assert purge.counts(s, second.id)["skipped_hold"] == 1
        assert purge.counts(s, third.id)["deleted"] == 1


def test_holds_on_policy_context_and_record_scopes_keep_their_records(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        a = make_record(s, keyring, make_subject(s, keyring, n=1), due_at=T0, policy="DPR-A")
        b = make_record(s, keyring, make_subject(s, keyring, n=2), due_at=T0, context="CTX-B")
        c = make_record(s, keyring, make_subject(s, keyring, n=3), due_at=T0)
        d = make_record(s, keyring, make_subject(s, keyring, n=4), due_at=T0)
        for scope in ({"policy": "DPR-A"}, {"context": "CTX-B"}, {"record_id": str(c.id)}):
            holds.place_hold(
                s,
                scope=holds.Scope.parse(scope),
                reason="audit",
                case_reference=None,
                actor=DPO,
                now=T0,
            )
    run_purge(engine, make_ctx(tmp_path), now=T0 + timedelta(days=1))
    assert remaining(engine) == {a.id, b.id, c.id}
    assert d.id not in remaining(engine)


def test_a_restriction_on_art_20_1_b_or_c_grounds_acts_as_a_hold(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        grounds = ["art20_1_b", "Art. 20(1)(c)", "art20_1_a", None]
        made = []
        for n, ground in enumerate(grounds):
            r = make_record(s, keyring, make_subject(s, keyring, n=n), due_at=T0)
            if ground is not None:
                r.restricted_at = T0
                r.restriction_ground = ground
                s.add(r)
            made.append(r)
    run_purge(engine, make_ctx(tmp_path), now=T0 + timedelta(days=1))
    assert remaining(engine) == {made[0].id, made[1].id}


def test_a_dry_run_writes_nothing_but_the_plan(engine: Engine, tmp_path: Path) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        kept = [make_record(s, keyring, subject, due_at=T0) for _ in range(3)]
    with Session(engine) as s:
        audit_before = s.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    run = run_purge(engine, make_ctx(tmp_path), now=T0 + timedelta(days=1), dry_run=True)
    assert run.status == RunStatus.planned and run.dry_run
    assert remaining(engine) == {r.id for r in kept}
    with Session(engine) as s:
        assert purge.counts(s, run.id)["deleted"] == 3
        key = s.execute(select(DataKey)).scalars().one()
        assert key.wrapped_key is not None
        audit_after = s.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    # the run's creation and its plan's completion, nothing per record
    assert audit_after - audit_before == 2


def test_anonymise_review_and_unresolved_handover(engine: Engine, tmp_path: Path) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        anon = make_record(s, keyring, subject, due_at=T0, action="anonymise")
        review = make_record(s, keyring, subject, due_at=T0, action="review")
        handed = make_record(
            s, keyring, subject, due_at=T0, action="handover", handover_to="DPR-02054"
        )
    run = run_purge(engine, make_ctx(tmp_path), now=T0 + timedelta(days=1))
    with Session(engine) as s:
        a = s.get(PersonalRecord, anon.id)
        r = s.get(PersonalRecord, review.id)
        h = s.get(PersonalRecord, handed.id)
        assert a is not None and a.payload is None and a.status == "anonymised"
        assert r is not None and r.status == "review" and r.due_at is None
        assert h is not None and h.status == "handed_over" and h.policy == "DPR-02054"
        assert h.due_at is None and h.payload is not None
        tally = purge.counts(s, run.id)
        key = s.execute(select(DataKey)).scalars().one()
    assert (tally["anonymised"], tally["review"], tally["handed_over"]) == (1, 1, 1)
    assert key.wrapped_key is not None  # the handed-over record still needs it


def test_a_large_run_pauses_until_a_dpo_approves(engine: Engine, tmp_path: Path) -> None:
    keyring = make_keyring()
    ctx = make_ctx(tmp_path, anomaly_floor=3, anomaly_factor=2.0)
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        make_record(s, keyring, subject, due_at=T0)
        make_record(s, keyring, subject, due_at=T0)
    assert run_purge(engine, ctx, now=T0 + timedelta(hours=1)).status == RunStatus.completed
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring, n=5)
        many = [make_record(s, keyring, subject, due_at=T0 + timedelta(days=1)) for _ in range(5)]
    paused = run_purge(engine, ctx, now=T0 + timedelta(days=2))
    assert paused.status == RunStatus.paused and paused.pause_reason == "volume"
    assert {r.id for r in many} <= remaining(engine)
    # the next scheduled night does not stack a second paused run
    assert run_purge(engine, ctx, now=T0 + timedelta(days=3)).id == paused.id
    with unit_of_work(engine) as s:
        purge.approve_run(s, run_id=paused.id, actor=DPO, now=T0 + timedelta(days=3))
    done = purge.execute(engine, paused.id, clock=lambda: T0 + timedelta(days=3), ctx=ctx)
    assert done.status == RunStatus.completed
    assert remaining(engine) == set()


def test_a_hold_placed_while_a_run_is_in_progress_keeps_its_records(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        first = make_subject(s, keyring, n=1)
        late = make_subject(s, keyring, n=2)
        early = [make_record(s, keyring, first, due_at=T0) for _ in range(2)]
        kept = [make_record(s, keyring, late, due_at=T0 + timedelta(days=1)) for _ in range(2)]
    ctx = make_ctx(tmp_path, batch_size=2)
    placed: list[uuid.UUID] = []

    def place_hold_after_first_batch(run: PurgeRun, _n: int) -> None:
        if placed:
            return
        with unit_of_work(engine) as s:
            hold = holds.place_hold(
                s,
                scope=holds.Scope.parse({"subject_id": str(late.id)}),
                reason="new complaint",
                case_reference=None,
                actor=DPO,
                now=T0,
            )
            placed.append(hold.id)

    ctx.on_batch = place_hold_after_first_batch
    run = run_purge(engine, ctx, now=T0 + timedelta(days=2))
    assert placed
    assert remaining(engine) == {r.id for r in kept}
    with Session(engine) as s:
        tally = purge.counts(s, run.id)
    assert tally["deleted"] == len(early) and tally["skipped_hold"] == len(kept)


def test_certificates_are_signed_chained_and_free_of_personal_data(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    ctx = make_ctx(tmp_path)
    with unit_of_work(engine) as s:
        make_record(s, keyring, make_subject(s, keyring), due_at=T0)
    runs = [run_purge(engine, ctx, now=T0 + timedelta(days=d)) for d in (1, 2)]
    runs.append(run_purge(engine, ctx, now=T0 + timedelta(days=3), dry_run=True))
    assert ctx.signer is not None
    public = Ed25519PublicKey.from_public_bytes(ctx.signer.public_key)
    previous = None
    with Session(engine) as s:
        for n, run in enumerate(runs):
            stored = s.get(PurgeRun, run.id)
            assert stored is not None and stored.certificate and stored.signature
            served = certificate.signed(stored, verifier_key=ctx.signer.verifier_key())
            public.verify(base64.b64decode(served["signature"]), served["body"].encode())
            assert served["certificate"]["sequence"] == n
            assert served["certificate"]["previous_sha256"] == previous
            previous = served["sha256"]
            assert CANARY_EMAIL not in stored.certificate and "Zebedee" not in stored.certificate
        assert certificate.chain_problems(s) == []
        bodies = " ".join(s.execute(select(col(AuditEntry.body))).scalars())
    assert CANARY_EMAIL not in bodies and "Zebedee" not in bodies


def test_records_due_at_the_same_instant_are_paged_past_a_held_one(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        made = [make_record(s, keyring, make_subject(s, keyring, n=n), due_at=T0) for n in range(5)]
        held = sorted(made, key=lambda r: r.id.hex)[1]
        holds.place_hold(
            s,
            scope=holds.Scope.parse({"record_id": str(held.id)}),
            reason="appeal",
            case_reference=None,
            actor=DPO,
            now=T0,
        )
    run = run_purge(engine, make_ctx(tmp_path, batch_size=2), now=T0 + timedelta(days=1))
    assert run.status == RunStatus.completed
    assert remaining(engine) == {held.id}
