"""`lethe requests …` against the same database and key files as the API."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from typer.testing import CliRunner

from lethe.cli import app as cli
from lethe.settings import Settings
from tests.conftest import KeyFactory
from tests.integration.test_requests import CANARY_EMAIL, T0, keyring_of, make_candidate

runner = CliRunner()


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))


def _staff_request(client: TestClient, headers: dict[str, str], type_: str) -> str:
    response = client.post(
        "/v1/requests",
        json={"type": type_, "email": CANARY_EMAIL, "identity_verified": True},
        headers=headers,
    )
    assert response.status_code == 202
    rid: str = response.json()["id"]
    return rid


def test_staff_list_extend_process_and_reject_from_the_cli(
    client: TestClient, engine: object, auth_headers: KeyFactory, env: None
) -> None:
    make_candidate(client.app.state.engine, keyring_of(client))  # type: ignore[attr-defined]
    headers = auth_headers("controller")
    with freeze_time(T0):
        erasure = _staff_request(client, headers, "erasure")
        access = _staff_request(client, headers, "access")
        listed = runner.invoke(cli, ["requests", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        assert {json.loads(line)["id"] for line in listed.stdout.splitlines()} == {
            erasure,
            access,
        }
        extended = runner.invoke(
            cli, ["requests", "extend", access, "--months", "1", "--reason", "many systems"]
        )
        assert extended.exit_code == 0, extended.output
        shown = json.loads(runner.invoke(cli, ["requests", "show", access]).stdout)
        assert shown["extended_months"] == 1
        processed = runner.invoke(cli, ["requests", "process", erasure])
        assert processed.exit_code == 0, processed.output
        assert json.loads(processed.stdout)["status"] == "completed"
        rejected = runner.invoke(
            cli,
            ["requests", "reject", access, "--ground", "excessive", "--reason", "tenth this week"],
        )
        assert rejected.exit_code == 0, rejected.output
        assert (
            json.loads(runner.invoke(cli, ["requests", "show", access]).stdout)["outcome"]
            == "rejected"
        )


def test_unknown_request_is_one_error_line_and_exit_1(env: None, engine: object) -> None:
    result = runner.invoke(cli, ["requests", "show", "not-a-uuid"])
    assert result.exit_code == 1
    assert "no request" in result.stderr
