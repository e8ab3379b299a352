"""One-time codes: exactly N wrong codes, resend keeps the count, locked shows as locked, TTL.

With `LETHE_OTP_MAX_ATTEMPTS=3` the first, second and third wrong codes are answered 400 (the
third locks the request); every later code, the right one included, is 429.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from dsr import service as svc
from dsr.models import DsrRequest
from lethe.app import create_app
from lethe.settings import Settings
from records.db import new_session, unit_of_work, utc_now
from tests.conftest import KeyFactory
from tests.integration.test_requests import (
    CANARY_EMAIL,
    T0,
    audit_bodies,
    keyring_of,
    make_candidate,
    outbox,
)

N = 3


@pytest.fixture
def frozen() -> Iterator[Any]:
    with freeze_time(T0) as f:
        yield f


@pytest.fixture
def app_client(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, frozen: Any
) -> Iterator[TestClient]:
    monkeypatch.setenv("LETHE_OTP_MAX_ATTEMPTS", str(N))
    monkeypatch.setenv("LETHE_OTP_TTL_MINUTES", "10")
    configured = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        scheduler="off",
        smtp_host=None,
    )
    assert configured.otp_max_attempts == N
    with TestClient(create_app(configured), raise_server_exceptions=False) as client:
        yield client


def _codes(engine: Engine, rid: str) -> list[str]:
    found = (re.search(r"confirmation code is (\d{6})", m.body) for m in outbox(engine, rid))
    return [m.group(1) for m in found if m]


def _wrong(right: str) -> str:
    return "000000" if right != "000000" else "111111"


def _file(client: TestClient) -> str:
    response = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})
    assert response.status_code == 202, response.text
    rid: str = response.json()["id"]
    return rid


def _verify(client: TestClient, rid: str, code: str) -> Any:
    return client.post(f"/v1/requests/{rid}/verify", json={"code": code})


def test_exactly_n_wrong_codes_are_answered_then_even_the_right_code_is_429(
    app_client: TestClient, engine: Engine, auth_headers: KeyFactory
) -> None:
    make_candidate(engine, keyring_of(app_client))
    rid = _file(app_client)
    right = _codes(engine, rid)[-1]
    answers = [_verify(app_client, rid, _wrong(right)) for _ in range(N)]
    assert [a.status_code for a in answers] == [400] * N
    assert [a.json()["attempts_left"] for a in answers] == [2, 1, 0]
    assert "locked" in answers[-1].json()["detail"]
    refused = _verify(app_client, rid, right)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert CANARY_EMAIL not in refused.text
    staff = app_client.get(f"/v1/requests/{rid}", headers=auth_headers("controller")).json()
    assert staff["status"] == "locked" and staff["locked"] is True
    assert any('"dsr.request.locked"' in b for b in audit_bodies(engine))
    assert all(CANARY_EMAIL not in b for b in audit_bodies(engine))


def test_n_minus_one_wrong_codes_leave_the_right_code_working(
    app_client: TestClient, engine: Engine
) -> None:
    rid = _file(app_client)
    right = _codes(engine, rid)[-1]
    for _ in range(N - 1):
        assert _verify(app_client, rid, _wrong(right)).status_code == 400
    verified = _verify(app_client, rid, right)
    assert verified.status_code == 200 and verified.json() == {"status": "verified"}


def test_a_resend_keeps_the_wrong_code_count(app_client: TestClient, engine: Engine) -> None:
    rid = _file(app_client)
    first = _codes(engine, rid)[-1]
    for _ in range(N - 1):
        assert _verify(app_client, rid, _wrong(first)).status_code == 400
    assert app_client.post(f"/v1/requests/{rid}/resend").status_code == 202
    second = _codes(engine, rid)[-1]
    last = _verify(app_client, rid, _wrong(second))
    assert last.status_code == 400 and last.json()["attempts_left"] == 0
    assert _verify(app_client, rid, second).status_code == 429
    # a locked request gets no new code from the public side either
    assert app_client.post(f"/v1/requests/{rid}/resend").status_code == 429
    assert len(_codes(engine, rid)) == 2


def test_resend_is_rate_limited(
    settings: Settings, engine: Engine, frozen: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limited = settings.model_copy(update={"intake_rate_per_hour": 3})
    with TestClient(create_app(limited)) as client:
        rid = _file(client)
        answers = [client.post(f"/v1/requests/{rid}/resend").status_code for _ in range(3)]
        assert answers == [202, 202, 429]
        assert len(_codes(engine, rid)) == 3
        frozen.tick(timedelta(hours=1, seconds=1))
        assert client.post(f"/v1/requests/{rid}/resend").status_code == 202


def test_a_code_lives_its_ttl_and_an_expired_code_does_not_count(
    app_client: TestClient, engine: Engine, frozen: Any
) -> None:
    early = _file(app_client)
    frozen.tick(timedelta(minutes=10) - timedelta(seconds=1))
    assert _verify(app_client, early, _codes(engine, early)[-1]).status_code == 200

    rid = _file(app_client)
    code = _codes(engine, rid)[-1]
    frozen.tick(timedelta(minutes=10))  # exactly the TTL: expired
    for _ in range(N + 1):  # more than N tries: an expired code uses up no attempt
        expired = _verify(app_client, rid, code)
        assert expired.status_code == 400
        assert "expired" in expired.json()["detail"]
        assert expired.json()["attempts_left"] == N
    assert app_client.post(f"/v1/requests/{rid}/resend").status_code == 202
    assert _verify(app_client, rid, _codes(engine, rid)[-1]).json() == {"status": "verified"}


def test_locked_shows_in_the_status_and_the_staff_lists(
    app_client: TestClient, engine: Engine, auth_headers: KeyFactory
) -> None:
    rid = _file(app_client)
    other = _file(app_client)
    right = _codes(engine, rid)[-1]
    for _ in range(N):
        _verify(app_client, rid, _wrong(right))
    controller = auth_headers("controller")
    status = app_client.get(f"/v1/requests/{rid}/status", headers=controller).json()
    assert status["status"] == "locked" and status["locked"] is True
    # the public status page takes no more codes either
    assert app_client.get(f"/v1/requests/{rid}/status", params={"code": right}).status_code == 429
    listed = app_client.get(
        "/v1/requests", params={"status": "locked"}, headers=auth_headers("dpo")
    ).json()
    assert [r["id"] for r in listed] == [rid]
    everything = {r["id"]: r for r in app_client.get("/v1/requests", headers=controller).json()}
    assert everything[rid]["locked"] is True
    assert everything[other]["locked"] is False
    assert everything[other]["status"] == "awaiting_identity"


def test_wrong_codes_on_the_status_page_count_too(app_client: TestClient, engine: Engine) -> None:
    rid = _file(app_client)
    right = _codes(engine, rid)[-1]
    for _ in range(N - 1):
        assert (
            app_client.get(f"/v1/requests/{rid}/status", params={"code": _wrong(right)}).status_code
            == 400
        )
    assert _verify(app_client, rid, _wrong(right)).status_code == 400
    assert _verify(app_client, rid, right).status_code == 429


def test_only_the_staff_unlock_a_request_and_it_is_audited(
    app_client: TestClient, engine: Engine, auth_headers: KeyFactory
) -> None:
    rid = _file(app_client)
    right = _codes(engine, rid)[-1]
    for _ in range(N):
        _verify(app_client, rid, _wrong(right))
    assert app_client.post(f"/v1/requests/{rid}/reissue").status_code == 401
    assert (
        app_client.post(f"/v1/requests/{rid}/reissue", headers=auth_headers("dpo")).status_code
        == 403
    )
    reissued = app_client.post(f"/v1/requests/{rid}/reissue", headers=auth_headers("controller"))
    assert reissued.status_code == 202 and reissued.json() == {"status": "awaiting_identity"}
    fresh = _codes(engine, rid)[-1]
    assert len(_codes(engine, rid)) == 2
    trail = [b for b in audit_bodies(engine) if '"dsr.request.code_reissued"' in b]
    assert len(trail) == 1 and '"was_locked":true' in trail[0]
    assert _verify(app_client, rid, fresh).json() == {"status": "verified"}
    again = app_client.post(f"/v1/requests/{rid}/reissue", headers=auth_headers("controller"))
    assert again.status_code == 409


def test_wrong_codes_on_a_verified_request_lock_its_status_page_only(
    app_client: TestClient, engine: Engine, auth_headers: KeyFactory
) -> None:
    rid = _file(app_client)
    right = _codes(engine, rid)[-1]
    assert _verify(app_client, rid, right).status_code == 200
    for _ in range(N):
        wrong = app_client.get(f"/v1/requests/{rid}/status", params={"code": _wrong(right)})
        assert wrong.status_code == 400
    assert app_client.get(f"/v1/requests/{rid}/status", params={"code": right}).status_code == 429
    staff = app_client.get(f"/v1/requests/{rid}", headers=auth_headers("controller")).json()
    assert staff["status"] == "verified" and staff["locked"] is True


@pytest.mark.postgres_only
def test_two_wrong_codes_at_once_both_count(client: TestClient, engine: Engine) -> None:
    """A guess checked while another is still uncommitted waits for its count instead of
    overwriting it with the stale one it read (else parallel guesses would cost one attempt)."""
    rid = uuid.UUID(_file(client))
    wrong = _wrong(_codes(engine, str(rid))[-1])
    config = client.app.state.dsr  # type: ignore[attr-defined]
    first_counted = threading.Event()
    refused: list[int] = []

    def guess(first: bool) -> None:
        if not first:
            first_counted.wait(5)
        with unit_of_work(engine) as s:
            try:
                svc.verify(s, config=config, request_id=rid, code=wrong, now=utc_now())
            except svc.CodeCheckFailed as failed:
                refused.append(failed.error.status)
            if first:
                first_counted.set()
                time.sleep(0.5)  # the second guess reads the request now, before this commits

    threads = [threading.Thread(target=guess, args=(f,)) for f in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert refused == [400, 400]
    with new_session(engine) as s:
        row = s.get(DsrRequest, rid)
        assert row is not None and row.otp_attempts == 2
