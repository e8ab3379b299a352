"""Strict input that answers without repeating it: e-mail refusals are one fixed reason on every
route, form and command; keys the client made up are not named back in the import report;
boolean queries are `true` or `false`; a policy period that no date could carry is refused at
load; length reasons of text count characters. On both databases."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from dsr.models import DsrRequest
from lethe.cli import app as cli
from lethe.logging import configure_logging
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records.db import unit_of_work
from records.models import PersonalRecord, Subject
from records.types import INVALID_EMAIL
from tests.conftest import KeyFactory

# Each is refused by email-validator with a message quoting part of it: a whole domain label
# (`... invalid (Codepoint U+2603 at position 7 of 'canary☃-4412' not allowed)`), a character.
BAD_ADDRESSES = [
    "canary-4412@canary\u2603-4412.org",
    "canary-4412@example.org\u2603",
    "canary-4412@canary_4412.org",
    "canary-4412@example.org>canary-4412",
    "Canary 4412 <canary-4412@example.org> canary-4412",
    "canary-4412@canary-4412",
]
CALL = "EC/2024/CNECT/443651"
REGISTRY_FILE = registry_dir() / "DPR-EC-01488.yaml"
runner = CliRunner()


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=REGISTRY_FILE, actor="test", now=datetime(2024, 1, 1, tzinfo=UTC)
        )
    return engine


@pytest.fixture
def logs(client: TestClient, settings: Settings) -> io.StringIO:
    """What the app really writes to its log, from here on."""
    out = io.StringIO()
    configure_logging(settings.log_level, settings.log_format, stream=out)
    return out


@pytest.fixture
def cli_env(settings: Settings, loaded: Engine, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LETHE_SCHEDULER", "off")
    return settings


def _count(engine: Engine, table: Any) -> int:
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())


def _clean(text: str) -> None:
    # Not "4412" alone: request ids in the log are hex and may hold it by chance.
    assert "canary" not in text.lower(), text[:500]
    assert "\u2603" not in text and "'_'" not in text and "'>'" not in text, text[:500]


def _line(**overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "subject": {"email": "someone@example.eu", "name": "Someone"},
        "policy": "DPR-EC-01488",
        "category": "application",
        "subject_category": "candidate",
        "context": CALL,
        "outcome": "not_selected",
        "collected_at": "2024-03-20T09:30:00+01:00",
        "payload": {"cv": "a cv"},
    }
    line.update(overrides)
    return line


def _import(client: TestClient, headers: dict[str, str], lines: list[dict[str, Any]]) -> Any:
    response = client.post(
        "/v1/imports",
        content="\n".join(json.dumps(line) for line in lines).encode(),
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    return response.json()


# --- 1. e-mail refusals are a fixed reason -----------------------------------------------------


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_refused_address_is_one_fixed_reason_over_the_api_and_in_no_log(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, logs: io.StringIO, address: str
) -> None:
    staff = auth_headers("controller")
    answers = [
        client.post("/v1/requests", json={"type": "access", "email": address}),
        client.post(
            "/v1/requests",
            json={"type": "access", "email": address, "identity_verified": True},
            headers=staff,
        ),
        client.post("/v1/subjects", json={"email": address}, headers=auth_headers("ingest")),
    ]
    for response in answers:
        assert response.status_code == 422, response.text
        assert response.json()["errors"] == [{"field": "email", "reason": INVALID_EMAIL}]
        _clean(response.text)
    report = _import(client, auth_headers("ingest"), [_line(subject={"email": address}), _line()])
    assert report["imported"] == 1
    assert report["failed"] == [{"line": 1, "error": f"subject.email: {INVALID_EMAIL}"}]
    _clean(json.dumps(report))
    assert _count(loaded, DsrRequest) == 0
    assert _count(loaded, Subject) == 1
    written = logs.getvalue()
    assert written.strip(), "the app logged nothing: the log check would prove nothing"
    _clean(written)


def test_the_same_address_is_accepted_for_a_subject_and_a_request(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    # One type: an address the register takes is one the requester can use, and vice versa.
    address = "Canary.Accepted-4412@Example.EU"
    made = client.post("/v1/subjects", json={"email": address}, headers=auth_headers("ingest"))
    assert made.status_code == 201, made.text
    filed = client.post("/v1/requests", json={"type": "access", "email": address})
    assert filed.status_code == 202, filed.text
    found = client.get(
        "/v1/subjects", params={"email": address.lower()}, headers=auth_headers("controller")
    )
    assert [s["id"] for s in found.json()] == [made.json()["id"]]


@pytest.mark.parametrize("address", BAD_ADDRESSES[:3])
def test_the_privacy_centre_form_refuses_an_address_without_repeating_it(
    client: TestClient, engine: Engine, logs: io.StringIO, address: str
) -> None:
    home = client.get("/privacy")
    token = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert token is not None
    response = client.post(
        "/privacy/requests",
        data={"type": "access", "email": address, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 422
    assert "valid e-mail address" in response.text
    _clean(response.text)
    _clean(logs.getvalue())
    assert _count(engine, DsrRequest) == 0


@pytest.mark.parametrize("address", BAD_ADDRESSES[:3])
def test_the_cli_refuses_an_address_without_repeating_it(
    cli_env: Settings, engine: Engine, tmp_path: Path, address: str
) -> None:
    filed = runner.invoke(cli, ["requests", "file", "--type", "access", "--email", address])
    assert filed.exit_code == 2, filed.output
    assert INVALID_EMAIL in filed.output
    _clean(filed.output)
    path = tmp_path / "lines.ndjson"
    path.write_text(json.dumps(_line(subject={"email": address})) + "\n")
    errors = tmp_path / "errors.csv"
    imported = runner.invoke(cli, ["import", str(path), "--errors", str(errors)])
    assert imported.exit_code == 1, imported.output
    assert errors.read_text().splitlines()[1:] == [f"1,subject.email,{INVALID_EMAIL}"]
    _clean(imported.output + errors.read_text())
    assert _count(engine, DsrRequest) == 0


# --- 2. keys the client made up are not named back -----------------------------------------------


def test_an_import_report_names_an_undeclared_key_generically(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    lines = [
        {**_line(), "canary_4412_ssn": "x"},
        _line(subject={"email": "someone@example.eu", "Canary-4412 Maiden Name": "x"}),
        _line(),
    ]
    report = _import(client, auth_headers("ingest"), lines)
    assert report["imported"] == 1
    assert [f["error"].split(":")[0] for f in report["failed"]] == [
        "(undeclared field)",
        "subject.(undeclared field)",
    ]
    _clean(json.dumps(report))
    assert _count(loaded, PersonalRecord) == 1


def test_the_cli_import_report_names_an_undeclared_key_generically(
    cli_env: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "lines.ndjson"
    path.write_text(json.dumps({**_line(), "canary_4412_ssn": "x"}) + "\n")
    errors = tmp_path / "errors.csv"
    result = runner.invoke(cli, ["import", str(path), "--errors", str(errors)])
    assert result.exit_code == 1, result.output
    [row] = errors.read_text().splitlines()[1:]
    assert row.startswith("1,(undeclared field),")
    _clean(result.output + errors.read_text())


# --- 3. boolean queries are true or false --------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "no", "1", "0", "on", "off", "True", "FALSE", "t"])
def test_a_boolean_query_is_true_or_false_only(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, value: str
) -> None:
    staff = auth_headers("controller")
    for url in (f"/v1/holds?active={value}", f"/v1/requests?overdue={value}"):
        response = client.get(url, headers=staff)
        assert response.status_code == 422, (url, response.text)
        [error] = response.json()["errors"]
        assert error["field"] in ("query.active", "query.overdue")
        assert error["reason"] == "Input should be true or false"


def test_true_and_false_still_filter(client: TestClient, auth_headers: KeyFactory) -> None:
    staff = auth_headers("controller")
    for value in ("true", "false"):
        assert client.get(f"/v1/holds?active={value}", headers=staff).status_code == 200
        assert client.get(f"/v1/requests?overdue={value}", headers=staff).status_code == 200


# --- 4. a period no date could carry is refused at load -----------------------------------------


def test_a_policy_period_past_the_longest_is_refused_with_its_line_over_the_api(
    client: TestClient, auth_headers: KeyFactory
) -> None:
    text = REGISTRY_FILE.read_text().replace("offset: P13M", "offset: P9000Y")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "offset: P9000Y" in row)
    response = client.post(
        "/v1/policies",
        content=text.encode(),
        headers={**auth_headers("dpo"), "Content-Type": "application/yaml"},
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["line"], error["field"]) == (line, "rules.7.offset")
    assert "at most 100 years" in error["reason"]
    listed = client.get("/v1/policies", headers=auth_headers("dpo")).json()
    assert listed == []


# --- 5. length reasons of text count characters -------------------------------------------------


def test_a_length_reason_of_optional_text_counts_characters(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    headers = auth_headers("ingest")
    response = client.post(
        "/v1/subjects", json={"email": "a@example.eu", "name": "x" * 501}, headers=headers
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "name", "reason": "String should have at most 500 characters"}
    ]
    report = _import(client, headers, [_line(context="x" * 201)])
    assert report["failed"] == [
        {"line": 1, "error": "context: String should have at most 200 characters"}
    ]


def test_a_malformed_id_is_refused_without_quoting_its_characters(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    # Pydantic's own reason quotes the first wrong character ("found `☃` at 1").
    headers = auth_headers("ingest")
    line = {key: value for key, value in _line().items() if key != "subject"}
    response = client.post(
        "/v1/records", json={**line, "subject_id": "\u2603canary"}, headers=headers
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "subject_id", "reason": "Input should be a valid UUID"}
    ]
    report = _import(client, headers, [{**line, "subject_id": "\u2603canary"}])
    assert report["failed"] == [{"line": 1, "error": "subject_id: Input should be a valid UUID"}]
    _clean(response.text + json.dumps(report))
