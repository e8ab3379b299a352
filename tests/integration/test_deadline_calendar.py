"""The app's default institution calendar is the European Commission's: what a data subject is
told as the deadline rolls past the Commission's closures unless holidays are configured."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from freezegun import freeze_time

from lethe.app import create_app
from lethe.settings import Settings


def _due(settings: Settings, received: datetime) -> datetime:
    with freeze_time(received), TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/requests", json={"type": "access", "email": "canary-7f3a@example.org"}
        )
    assert response.status_code == 202
    return datetime.fromisoformat(response.json()["due_at"])


def test_a_request_received_before_easter_2025_is_due_after_the_commission_closure(
    settings: Settings,
) -> None:
    # one month is Maundy Thursday 17 April; Good Friday, the weekend and Easter Monday follow
    due = _due(settings, datetime(2025, 3, 17, 10, tzinfo=UTC))
    assert due == datetime(2025, 4, 22, 22, 0, tzinfo=UTC)


def test_a_deadline_on_24_december_2026_rolls_into_january(settings: Settings) -> None:
    due = _due(settings, datetime(2026, 11, 24, 10, tzinfo=UTC))
    assert due == datetime(2027, 1, 4, 23, 0, tzinfo=UTC)  # end of Monday 4 January 2027


def test_configured_holidays_replace_the_commission_calendar(settings: Settings) -> None:
    custom = settings.model_copy(update={"holidays": [datetime(2026, 12, 28).date()]})
    due = _due(custom, datetime(2026, 11, 24, 10, tzinfo=UTC))
    assert due == datetime(2026, 12, 24, 23, 0, tzinfo=UTC)
