"""No personal data in what is really written: log lines, error bodies. Canary values throughout."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from fastapi import Depends
from fastapi.testclient import TestClient
from pydantic import BaseModel, EmailStr

from lethe.app import create_app
from lethe.logging import configure_logging
from lethe.settings import Settings
from records.http import public

CANARY_EMAIL = "canary.zebulon@example.org"
CANARY_NAME = "Zebulon Canaryfield"


class Person(BaseModel):
    email: EmailStr
    name: str
    age: int


def _app_with_probe_routes(settings: Settings) -> TestClient:
    app = create_app(settings)
    log = structlog.get_logger("probe")

    @app.post("/probe/ok", dependencies=[Depends(public)])
    def ok(person: Person) -> dict[str, str]:
        log.info(
            "probe.received", email=person.email, name=person.name, note=f"from {person.email}"
        )
        return {"status": "ok"}

    @app.post("/probe/fail", dependencies=[Depends(public)])
    def fail(person: Person) -> dict[str, str]:
        raise RuntimeError(f"boom while handling {person.email}")

    return TestClient(app, raise_server_exceptions=False)


class Probe:
    def __init__(self, settings: Settings) -> None:
        self.client = _app_with_probe_routes(settings)
        # The app's own chain, pointed at a buffer instead of stderr: what is rendered is real.
        self.output = io.StringIO()
        configure_logging(settings.log_level, settings.log_format, stream=self.output)


@pytest.fixture
def probe(settings: Settings) -> Probe:
    return Probe(settings)


def _lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_a_successful_request_logs_no_canary(probe: Probe) -> None:
    with probe.client as c:
        response = c.post("/probe/ok", json={"email": CANARY_EMAIL, "name": CANARY_NAME, "age": 3})
    assert response.status_code == 200
    err = probe.output.getvalue()
    lines = _lines(err)
    assert any(line["event"] == "probe.received" for line in lines)
    ours = [line for line in lines if str(line["event"]).startswith(("probe", "http"))]
    assert ours and all("request_id" in line for line in ours)
    assert CANARY_EMAIL not in err and CANARY_NAME not in err


def test_a_failing_request_logs_and_answers_no_canary(probe: Probe) -> None:
    with probe.client as c:
        crashed = c.post("/probe/fail", json={"email": CANARY_EMAIL, "name": CANARY_NAME, "age": 3})
        invalid = c.post("/probe/ok", json={"email": CANARY_EMAIL, "name": CANARY_NAME, "age": "x"})
    err = probe.output.getvalue()
    assert crashed.status_code == 500
    assert crashed.headers["content-type"] == "application/problem+json"
    assert invalid.status_code == 422
    assert [e["field"] for e in invalid.json()["errors"]] == ["age"]
    for text in (crashed.text, invalid.text, err):
        assert CANARY_EMAIL not in text
        assert CANARY_NAME not in text
    error_lines = [line for line in _lines(err) if line["event"] == "http.unexpected_error"]
    assert error_lines and "exception" in error_lines[0]
    assert "locals" not in json.dumps(error_lines[0])
