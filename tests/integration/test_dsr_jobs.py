"""The daily deadline alert: overdue and soon-due requests, ids only, one summary e-mail."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dsr.jobs import DEADLINE_ALERT_JOB, deadline_alerts
from dsr.models import DsrIntakeHit
from dsr.notifier import OutboxNotifier
from tests.integration.test_requests import CANARY_EMAIL, outbox


def test_deadline_alert_lists_overdue_and_soon_due_requests(
    client: TestClient, engine: Engine
) -> None:
    with freeze_time(datetime(2025, 1, 27, 9, tzinfo=UTC)):
        early = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})
    with freeze_time(datetime(2025, 2, 10, 9, tzinfo=UTC)):
        late = client.post("/v1/requests", json={"type": "erasure", "email": CANARY_EMAIL})
    with freeze_time(datetime(2025, 1, 2, 9, tzinfo=UTC)):
        far = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})
    now = datetime(2025, 2, 24, 9, tzinfo=UTC)  # the 2 January one is overdue since 3 February
    counts = deadline_alerts(engine, OutboxNotifier(), now, alert_to="controller@lethe.test")
    assert counts == {"overdue": 1, "due_soon": 1}
    [summary] = [m for m in outbox(engine) if m.recipient == "controller@lethe.test"]
    assert far.json()["id"] in summary.body and early.json()["id"] in summary.body
    assert late.json()["id"] not in summary.body
    assert CANARY_EMAIL not in summary.body
    assert "1 overdue" in summary.subject


def test_deadline_alert_is_a_scheduled_job(client: TestClient) -> None:
    assert DEADLINE_ALERT_JOB in client.app.state.scheduler.jobs  # type: ignore[attr-defined]


def test_deadline_job_drops_intake_counters_older_than_the_window(
    client: TestClient, engine: Engine
) -> None:
    with freeze_time(datetime(2025, 1, 6, 9, tzinfo=UTC)):
        client.post("/v1/requests", json={"type": "access", "email": "old@example.org"})
    with freeze_time(datetime(2025, 1, 6, 11, tzinfo=UTC)):
        client.post("/v1/requests", json={"type": "access", "email": "new@example.org"})
    deadline_alerts(engine, OutboxNotifier(), datetime(2025, 1, 6, 11, 30, tzinfo=UTC))
    with Session(engine) as s:
        hits = list(s.execute(select(DsrIntakeHit)).scalars())
    assert len(hits) == 2  # the 11:00 request's address and e-mail buckets only
    assert all(h.at == datetime(2025, 1, 6, 11, tzinfo=UTC) for h in hits)
