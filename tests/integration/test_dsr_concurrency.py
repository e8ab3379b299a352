"""Two people acting on one request at once (issue 10): the second waits for the first and then
sees what the first did, as if they had acted one after the other.

PostgreSQL only: there a read does not wait for an uncommitted write, so a status checked
before the row is locked can be stale. On SQLite every writer transaction begins with `BEGIN
IMMEDIATE` and the two cannot overlap at all.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dsr import rights
from dsr import service as svc
from dsr.models import DsrRequest, RequestStatus, RequestType
from records.db import new_session, unit_of_work, utc_now
from records.errors import DomainError
from records.http import Actor, Role
from tests.conftest import KeyFactory
from tests.integration.test_dsr_rights import process
from tests.integration.test_requests import (
    CANARY_EMAIL,
    audit_bodies,
    code_of,
    file_and_verify,
    keyring_of,
    load_policy,
    make_candidate,
    outbox,
)

pytestmark = pytest.mark.postgres_only

ALICE = Actor(id="key:test-alice", role=Role.controller)
BOB = Actor(id="key:test-bob", role=Role.controller)

Action = Callable[[Session], object]


def _race(engine: Engine, first: Action, second: Action) -> list[object]:
    """Run `first`, then `second` while `first`'s transaction is still open (it commits half a
    second later). Returns what each answered: "ok", or the refusal's HTTP status."""
    first_done = threading.Event()
    answers: dict[int, object] = {}

    def run(n: int, action: Action) -> None:
        if n == 1:
            first_done.wait(5)
        try:
            with unit_of_work(engine) as s:
                action(s)
                if n == 0:
                    first_done.set()
                    time.sleep(0.5)  # the second reads the request now, before this commits
            answers[n] = "ok"
        except DomainError as refused:
            answers[n] = refused.status
        except svc.CodeCheckFailed as failed:
            answers[n] = failed.error.status
        finally:
            first_done.set()

    threads = [threading.Thread(target=run, args=(n, a)) for n, a in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    return [answers.get(0), answers.get(1)]


def _config(client: TestClient) -> svc.DsrConfig:
    config: svc.DsrConfig = client.app.state.dsr  # type: ignore[attr-defined]
    return config


def _row(engine: Engine, rid: str) -> DsrRequest:
    with new_session(engine) as s:
        row = s.get(DsrRequest, uuid.UUID(rid))
        assert row is not None
        return row


def _trail(engine: Engine, action: str, rid: str) -> list[str]:
    return [
        b for b in audit_bodies(engine) if f'"action":"{action}"' in b and f"dsr_request:{rid}" in b
    ]


def _process(client: TestClient, rid: str, actor: Actor) -> Action:
    def act(s: Session) -> object:
        return rights.process(
            s, config=_config(client), request_id=uuid.UUID(rid), actor=actor, now=utc_now()
        )

    return act


def _reject(client: TestClient, rid: str, actor: Actor) -> Action:
    def act(s: Session) -> object:
        return rights.reject(
            s,
            config=_config(client),
            request_id=uuid.UUID(rid),
            reason="manifestly unfounded",
            ground="manifestly_unfounded",
            actor=actor,
            now=utc_now(),
        )

    return act


def _candidate_request(client: TestClient, engine: Engine, type_: str, **extra: Any) -> str:
    load_policy(engine)
    make_candidate(engine, keyring_of(client), records_count=2)
    return file_and_verify(client, engine, type_, **extra)


def test_two_staff_processing_one_request_carry_it_out_once(
    client: TestClient, engine: Engine
) -> None:
    rid = _candidate_request(client, engine, "access")
    answers = _race(engine, _process(client, rid, ALICE), _process(client, rid, BOB))
    assert answers == ["ok", 409]
    assert len(_trail(engine, "dsr.request.processing", rid)) == 1
    assert len(_trail(engine, "dsr.request.closed", rid)) == 1
    assert sum("your data" in m.subject for m in outbox(engine, rid)) == 1


def test_a_request_being_processed_is_not_rejected_meanwhile(
    client: TestClient, engine: Engine
) -> None:
    rid = _candidate_request(client, engine, "access")
    answers = _race(engine, _process(client, rid, ALICE), _reject(client, rid, BOB))
    assert answers == ["ok", 409]
    row = _row(engine, rid)
    assert row.status == RequestStatus.completed.value and row.outcome == "completed"


def test_two_refusals_at_once_refuse_once(client: TestClient, engine: Engine) -> None:
    rid = _candidate_request(client, engine, "erasure")
    answers = _race(engine, _reject(client, rid, ALICE), _reject(client, rid, BOB))
    assert answers == ["ok", 409]
    assert len(_trail(engine, "dsr.request.closed", rid)) == 1
    assert sum("refused" in m.subject for m in outbox(engine, rid)) == 1


def test_two_extensions_at_once_extend_once(client: TestClient, engine: Engine) -> None:
    rid = _candidate_request(client, engine, "access")

    def extend(months: int, actor: Actor) -> Action:
        def act(s: Session) -> object:
            return svc.extend(
                s,
                config=_config(client),
                request_id=uuid.UUID(rid),
                months=months,
                reason="many records",
                actor=actor,
                now=utc_now(),
            )

        return act

    assert _race(engine, extend(1, ALICE), extend(2, BOB)) == ["ok", 409]
    assert _row(engine, rid).extended_months == 1
    assert len(_trail(engine, "dsr.request.extended", rid)) == 1


def test_lifting_twice_at_once_announces_then_lifts(
    client: TestClient, engine: Engine, auth_headers: KeyFactory
) -> None:
    """Art. 20(3): the first call tells the subject, the next lifts; two at once are the two."""
    rid = _candidate_request(client, engine, "restriction", changes={"ground": "b"})
    process(client, rid, auth_headers("controller"))

    def lift(actor: Actor) -> Action:
        def act(s: Session) -> object:
            return rights.lift_restriction(
                s, config=_config(client), request_id=uuid.UUID(rid), actor=actor, now=utc_now()
            )

        return act

    assert _race(engine, lift(ALICE), lift(BOB)) == ["ok", "ok"]
    assert len(_trail(engine, "dsr.restriction.lift_announced", rid)) == 1
    details = _row(engine, rid).outcome_details or {}
    assert details.get("records_lifted") == 2


def _filed(client: TestClient, engine: Engine) -> tuple[str, str]:
    response = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})
    assert response.status_code == 202, response.text
    rid: str = response.json()["id"]
    return rid, code_of(engine, rid)


def _verify(client: TestClient, rid: str, code: str) -> Action:
    def act(s: Session) -> object:
        return svc.verify(
            s, config=_config(client), request_id=uuid.UUID(rid), code=code, now=utc_now()
        )

    return act


def test_the_right_code_sent_twice_at_once_verifies_once(
    client: TestClient, engine: Engine
) -> None:
    rid, code = _filed(client, engine)
    assert _race(engine, _verify(client, rid, code), _verify(client, rid, code)) == ["ok", "ok"]
    assert len(_trail(engine, "dsr.request.verified", rid)) == 1


def test_a_code_reissued_while_the_request_is_verified_does_not_undo_it(
    client: TestClient, engine: Engine
) -> None:
    rid, code = _filed(client, engine)

    def reissue(s: Session) -> object:
        return svc.reissue_code(
            s, config=_config(client), request_id=uuid.UUID(rid), actor=ALICE, now=utc_now()
        )

    assert _race(engine, _verify(client, rid, code), reissue) == ["ok", 409]
    row = _row(engine, rid)
    assert row.status == RequestStatus.verified.value
    assert _trail(engine, "dsr.request.code_reissued", rid) == []


def test_a_code_resent_while_the_request_is_verified_is_refused(
    client: TestClient, engine: Engine
) -> None:
    rid, code = _filed(client, engine)

    def resend(s: Session) -> object:
        return svc.resend_code(
            s,
            config=_config(client),
            request_id=uuid.UUID(rid),
            client_address=None,
            now=utc_now(),
        )

    assert _race(engine, _verify(client, rid, code), resend) == ["ok", 409]
    # the code the requester verified with still opens the status page
    status = client.get(f"/v1/requests/{rid}/status", params={"code": code})
    assert status.status_code == 200, status.text


def test_two_intakes_at_once_from_one_address_keep_the_hourly_limit(
    client: TestClient, engine: Engine
) -> None:
    config = dataclasses.replace(_config(client), intake_rate_per_hour=1)

    def intake(s: Session) -> object:
        return svc.file_request(
            s,
            config=config,
            type=RequestType.access,
            email=CANARY_EMAIL,
            details=None,
            changes=None,
            actor=None,
            client_address="203.0.113.7",
            now=utc_now(),
        )

    assert _race(engine, intake, intake) == ["ok", 429]
    with new_session(engine) as s:
        filed = s.execute(select(func.count()).select_from(DsrRequest)).scalar_one()
    assert filed == 1
