"""`lethe audit checkpoint|prove|public-key|export` as a DPO and an auditor use them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from audit_log import merkle, service, standalone_verify
from audit_log.signing import Verifier, open_note
from lethe.cli import app as cli_app
from lethe.settings import Settings
from records.db import unit_of_work

NOW = datetime(2026, 3, 27, 11, 0, tzinfo=UTC)


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    return CliRunner()


def _append(engine: Engine, count: int) -> list[str]:
    with unit_of_work(engine) as s:
        entries = [
            service.append(s, action="records.event.added", actor="cli", now=NOW, details={"i": i})
            for i in range(count)
        ]
    return [e.body for e in entries]


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_checkpoint_prove_and_public_key(runner: CliRunner, engine: Engine) -> None:
    bodies = _append(engine, 10)
    first = _ok(runner, "audit", "checkpoint")
    bodies += _append(engine, 7)
    second = _ok(runner, "audit", "checkpoint")
    assert _ok(runner, "audit", "checkpoint") == second  # unchanged log: same head
    verifier = Verifier.parse(_ok(runner, "audit", "public-key").strip())
    _, size1, root1 = open_note(first, verifier).splitlines()
    _, size2, root2 = open_note(second, verifier).splitlines()
    assert (size1, size2) == ("10", "17")

    inclusion = json.loads(_ok(runner, "audit", "prove", "--index", "3", "--size", "17"))
    merkle.verify_inclusion(
        3,
        17,
        merkle.hash_leaf(bodies[3].encode()),
        [base64.b64decode(p) for p in inclusion["proof"]],
        base64.b64decode(root2),
    )
    consistency = json.loads(_ok(runner, "audit", "prove", "--first", "10", "--second", "17"))
    merkle.verify_consistency(
        10,
        17,
        [base64.b64decode(p) for p in consistency["proof"]],
        base64.b64decode(root1),
        base64.b64decode(root2),
    )
    wrong = runner.invoke(cli_app, ["audit", "prove", "--index", "3"])
    assert wrong.exit_code == 1
    beyond = runner.invoke(cli_app, ["audit", "prove", "--index", "3", "--size", "99"])
    assert beyond.exit_code == 1 and "beyond the log" in beyond.output


def test_an_export_verifies_offline_and_verify_names_the_uncovered_tail(
    runner: CliRunner, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(engine, 299)
    with unit_of_work(engine) as s:  # separators JSON leaves raw must not split export lines
        service.append(s, action="a.b", actor="cli", now=NOW, details={"t": "x\u2028y\x85z"})
    _ok(runner, "audit", "checkpoint")
    _append(engine, 5)
    out = _ok(runner, "audit", "verify", "--witness-dir", str(tmp_path / "w"))
    assert "OK: 305 entries, 1 checkpoints" in out
    assert "the last 5 entries are not yet covered" in " ".join(out.split())
    export = tmp_path / "audit.jsonl"
    _ok(runner, "audit", "export", "--out", str(export))
    vkey = _ok(runner, "audit", "public-key").strip()
    assert standalone_verify.main([str(export), "--public-key", vkey]) == 0
    assert "OK: 305 entries, 1 checkpoints, newest size 300" in capsys.readouterr().out
    lines = export.read_text().split("\n")
    assert json.loads(lines[0])["checkpoints"] == 1 and "checkpoint" in json.loads(lines[1])
    assert json.loads(lines[2]) == {"index": 0, "body": json.loads(lines[2])["body"]}
    assert lines[-1] == "" and len(lines) == 1 + 1 + 305 + 1
