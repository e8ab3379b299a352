"""`lethe requests …` against the same database and key files as the API."""

from __future__ import annotations

import json
import re
from datetime import timedelta

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


def _code_in(text: str) -> str:
    found = re.search(r"confirmation code is (\d{6})", text)
    assert found, "no code in the outbox output"
    return found.group(1)


def test_file_read_the_code_in_the_outbox_and_verify_from_the_cli(
    env: None, engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    with freeze_time(T0):
        filed = runner.invoke(
            cli, ["requests", "file", "--type", "access", "--email", CANARY_EMAIL, "--json"]
        )
        assert filed.exit_code == 0, filed.output
        receipt = json.loads(filed.stdout)
        rid = receipt["id"]
        assert receipt["status"] == "awaiting_identity"
        # 31 January 2025 + one month: 28 February, end of day in Brussels
        assert receipt["due_at"] == "2025-02-28T23:00:00+00:00"
        other = runner.invoke(
            cli, ["requests", "file", "--type", "erasure", "--email", "someone@example.org"]
        )
        assert other.exit_code == 0 and "due 2025-02-28" in other.stdout

        box = runner.invoke(cli, ["requests", "outbox", "--request", rid])
        assert box.exit_code == 0, box.output
        assert "DEVELOPMENT OUTBOX" in box.stderr and "LETHE_SMTP_HOST" in box.stderr
        assert "someone@example.org" not in box.stdout  # --request filters
        code = _code_in(box.stdout)
        everything = runner.invoke(cli, ["requests", "outbox", "--json"])
        assert {json.loads(line)["request_id"] for line in everything.stdout.splitlines()} == {
            rid,
            json.loads(
                runner.invoke(
                    cli, ["requests", "list", "--json", "--type", "erasure"]
                ).stdout.splitlines()[0]
            )["id"],
        }

        wrong = "000000" if code != "000000" else "111111"
        refused = runner.invoke(cli, ["requests", "verify", rid, "--code", wrong])
        assert refused.exit_code == 1
        assert "wrong" in refused.stderr and "4 attempt(s) left" in refused.stderr
        verified = runner.invoke(cli, ["requests", "verify", rid, "--code", code])
        assert verified.exit_code == 0, verified.output
        assert "verified" in verified.stdout
        shown = json.loads(runner.invoke(cli, ["requests", "show", rid]).stdout)
        assert shown["status"] == "verified" and shown["locked"] is False


def test_a_locked_request_shows_as_locked_and_the_staff_reissue_a_code(
    env: None, engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETHE_OTP_MAX_ATTEMPTS", "2")
    with freeze_time(T0) as frozen:
        rid = json.loads(
            runner.invoke(
                cli, ["requests", "file", "--type", "access", "--email", CANARY_EMAIL, "--json"]
            ).stdout
        )["id"]
        code = _code_in(runner.invoke(cli, ["requests", "outbox", "--request", rid]).stdout)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(2):
            assert runner.invoke(cli, ["requests", "verify", rid, "--code", wrong]).exit_code == 1
        locked = runner.invoke(cli, ["requests", "verify", rid, "--code", code])
        assert locked.exit_code == 1 and "locked" in locked.stderr
        shown = json.loads(runner.invoke(cli, ["requests", "show", rid]).stdout)
        assert shown["status"] == "locked" and shown["locked"] is True
        listed = runner.invoke(cli, ["requests", "list", "--status", "locked"])
        assert rid[:8] in listed.stdout and "locked" in listed.stdout
        frozen.tick(timedelta(minutes=1))
        reissued = runner.invoke(cli, ["requests", "reissue", rid])
        assert reissued.exit_code == 0, reissued.output
        fresh = _code_in(runner.invoke(cli, ["requests", "outbox", "--request", rid]).stdout)
        final = runner.invoke(cli, ["requests", "verify", rid, "--code", fresh])
        assert final.exit_code == 0, final.output


def test_cli_intake_refuses_a_bad_address_without_echoing_it(env: None, engine: object) -> None:
    result = runner.invoke(
        cli, ["requests", "file", "--type", "access", "--email", "not-an-address-canary-91"]
    )
    assert result.exit_code == 2
    assert "not-an-address-canary-91" not in result.output
