"""The policy registry through its service, its HTTP API and its CLI, on both databases."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from audit_log.models import AuditEntry
from lethe.cli import app as cli_app
from lethe.settings import Settings
from policies import service
from policies.errors import PolicyFileError, PolicyNotFoundError
from policies.loader import registry_dir
from records.db import unit_of_work
from tests.conftest import KeyFactory

REGISTRY_FILE = registry_dir() / "DPR-EC-01488.yaml"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)

STUB_02054 = """
reference: DPR-02054
title: Selection and recruitment of contract staff
controller: {name: HR.B.3}
dpo: {name: Data Protection Officer of the European Commission}
legal_basis: [{key: eudpr_5_1_a, article: "Regulation (EU) 2018/1725, Art. 5(1)(a)"}]
purposes: [{key: recruitment, description: Recruit contract staff.}]
subject_categories: [{key: candidate, description: Candidates handed over by DG CNECT.}]
data_categories: [{key: application, description: CV and application.}]
rules:
  - id: recruitment-files
    applies_to: {data_categories: [application]}
    trigger: {kind: field, field: collected_at}
    offset: P5Y
    action: {kind: review}
    mandate: A test stand-in for the retention sentence of DPR-02054.
"""


def _audit_entries(session: Session, action: str) -> list[AuditEntry]:
    return list(
        session.exec(
            select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.idx))
        )
    )


def _load_registry(engine: Engine, *, now: datetime = T0) -> service.LoadResult:
    with unit_of_work(engine) as s:
        return service.load_policy_file(s, path_or_text=REGISTRY_FILE, actor="test", now=now)


# --- service ---


def test_loading_makes_version_one_and_an_audit_entry_without_personal_data(
    engine: Engine, session: Session
) -> None:
    result = _load_registry(engine)
    assert (result.reference, result.version, result.created) == ("DPR-EC-01488", 1, True)
    entries = _audit_entries(session, "policies.policy.loaded")
    assert len(entries) == 1
    body = json.loads(entries[0].body)
    assert body["details"] == {
        "reference": "DPR-EC-01488",
        "version": 1,
        "content_hash": result.content_hash,
        "rules": 11,
    }
    # the file holds functional mailboxes; none of them reaches the trail
    assert "@" not in entries[0].body


def test_loading_the_same_file_twice_makes_no_new_version(engine: Engine, session: Session) -> None:
    first = _load_registry(engine)
    again = _load_registry(engine, now=T1)
    assert (again.version, again.created, again.content_hash) == (1, False, first.content_hash)
    assert len(service.versions(session, "DPR-EC-01488")) == 1
    assert len(_audit_entries(session, "policies.policy.loaded")) == 1


def test_a_changed_file_makes_a_new_version_and_the_old_one_stays(
    engine: Engine, session: Session
) -> None:
    _load_registry(engine)
    changed = REGISTRY_FILE.read_text().replace("offset: P13M", "offset: P12M")
    with unit_of_work(engine) as s:
        result = service.load_policy_file(s, path_or_text=changed, actor="test", now=T1)
    assert (result.version, result.created) == (2, True)
    row, document = service.current(session, "DPR-EC-01488")
    assert row.version == 2
    assert next(r for r in document.rules if r.id == "analytics-on-device").offset.months == 12
    _, old = service.get_version(session, "DPR-EC-01488", 1)
    assert next(r for r in old.rules if r.id == "analytics-on-device").offset.months == 13
    assert [e.target for e in _audit_entries(session, "policies.policy.loaded")] == [
        "policy:DPR-EC-01488",
        "policy:DPR-EC-01488",
    ]


def test_an_unknown_reference_is_not_found(session: Session) -> None:
    with pytest.raises(PolicyNotFoundError):
        service.current(session, "DPR-EC-99999")


def test_a_bad_file_writes_nothing(engine: Engine, session: Session) -> None:
    bad = REGISTRY_FILE.read_text().replace("offset: P1Y", "offset: one year", 1)
    with pytest.raises(PolicyFileError), unit_of_work(engine) as s:
        service.load_policy_file(s, path_or_text=bad, actor="test", now=T0)
    assert service.list_policies(session) == []
    assert _audit_entries(session, "policies.policy.loaded") == []


def test_unresolved_references_resolve_once_the_other_record_is_loaded(engine: Engine) -> None:
    _load_registry(engine)
    with unit_of_work(engine) as s:
        [summary] = service.list_policies(s)
        assert summary.unresolved_references == ["DPR-02054", "DPR-EC-01230"]
        service.load_policy_file(s, path_or_text=STUB_02054, actor="test", now=T1)
    with unit_of_work(engine, write=False) as s:
        by_ref = {p.reference: p for p in service.list_policies(s)}
    assert by_ref["DPR-EC-01488"].unresolved_references == ["DPR-EC-01230"]
    assert by_ref["DPR-02054"].unresolved_references == []


def test_two_first_loads_at_once_make_one_version(engine: Engine, session: Session) -> None:
    barrier = threading.Barrier(2)
    results: list[service.LoadResult] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            barrier.wait()
            with unit_of_work(engine) as s:
                results.append(
                    service.load_policy_file(s, path_or_text=STUB_02054, actor="test", now=T0)
                )
        except BaseException as exc:  # the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.created for r in results) == [False, True]
    assert [v.version for v in service.versions(session, "DPR-02054")] == [1]


# --- HTTP ---


def test_dpo_posts_a_policy_file_and_gets_201_then_200_when_unchanged(
    client: TestClient, auth_headers: KeyFactory
) -> None:
    text = REGISTRY_FILE.read_text()
    first = client.post(
        "/v1/policies",
        content=text.encode(),
        headers={**auth_headers("dpo"), "Content-Type": "application/yaml"},
    )
    assert first.status_code == 201
    assert first.json()["version"] == 1
    again = client.post(
        "/v1/policies",
        content=text.encode(),
        headers={**auth_headers("dpo"), "Content-Type": "application/yaml"},
    )
    assert again.status_code == 200
    assert again.json() == {**first.json(), "created": False}


def test_only_the_dpo_may_post_a_policy(client: TestClient, auth_headers: KeyFactory) -> None:
    for role in ("controller", "ingest", "auditor"):
        response = client.post(
            "/v1/policies",
            content=REGISTRY_FILE.read_bytes(),
            headers={**auth_headers(role), "Content-Type": "application/yaml"},
        )
        assert response.status_code == 403, role
    assert client.post("/v1/policies", content=b"x: 1").status_code == 401


def test_a_bad_file_is_a_422_problem_with_file_line_and_field(
    client: TestClient, auth_headers: KeyFactory
) -> None:
    bad = REGISTRY_FILE.read_text().replace("offset: P13M", "offset: thirteen months")
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "thirteen months" in t)
    response = client.post(
        "/v1/policies",
        content=bad.encode(),
        headers={**auth_headers("dpo"), "Content-Type": "application/yaml"},
        params={"filename": "DPR-EC-01488.yaml"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert f"DPR-EC-01488.yaml, line {line}, field rules.7.offset" in problem["detail"]
    assert problem["errors"][0]["line"] == line
    assert problem["errors"][0]["field"] == "rules.7.offset"
    assert client.get("/v1/policies", headers=auth_headers("dpo")).json() == []


def test_a_policy_sent_as_json_is_refused_with_415(
    client: TestClient, auth_headers: KeyFactory
) -> None:
    response = client.post("/v1/policies", json={"reference": "x"}, headers=auth_headers("dpo"))
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"


def test_an_oversized_policy_is_refused_with_413(
    client: TestClient, auth_headers: KeyFactory
) -> None:
    response = client.post(
        "/v1/policies",
        content=b"# padding\n" * 200_000,
        headers={**auth_headers("dpo"), "Content-Type": "application/yaml"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_any_staff_role_lists_policies_with_unresolved_references(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    result = _load_registry(engine)
    for role in ("controller", "dpo", "ingest", "auditor"):
        response = client.get("/v1/policies", headers=auth_headers(role))
        assert response.status_code == 200, role
    [item] = response.json()
    assert item == {
        "reference": "DPR-EC-01488",
        "title": (
            "Use of EU Survey for the selection procedure for the AI Office for contract agents"
        ),
        "version": 1,
        "content_hash": result.content_hash,
        "loaded_at": item["loaded_at"],
        "unresolved_references": ["DPR-02054", "DPR-EC-01230"],
        # the statement gives no Art. 10(2) ground for the special-needs health data
        "dpo_flags": [
            {
                "code": "special_category_ground_unstated",
                "field": "data_categories.special_needs_health",
                "detail": (
                    "special category special_needs_health has no EUDPR Art. 10(2) ground in "
                    "the statement; none is assumed"
                ),
            }
        ],
    }


def test_get_policy_returns_the_current_version_in_the_contract_shape(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    _load_registry(engine)
    body = client.get("/v1/policies/DPR-EC-01488", headers=auth_headers("controller")).json()
    assert {
        "reference",
        "title",
        "version",
        "controller",
        "dpo",
        "legal_basis",
        "purposes",
        "subject_categories",
        "data_categories",
        "recipients",
        "rights",
        "related_records",
        "rules",
    } <= body.keys()
    assert body["rights"] == {
        "access": True,
        "rectification": True,
        "erasure": True,
        "restriction": True,
        "objection": True,
        "portability": False,
    }
    health = next(d for d in body["data_categories"] if d["key"] == "special_needs_health")
    assert health["special"] is True
    assert (health["ground"], health["special_ground"]) == ("unstated", None)
    assert [f["field"] for f in body["dpo_flags"]] == ["data_categories.special_needs_health"]
    assert body["processors"] == []
    assert [(s["name"], s["operator"]) for s in body["services"]] == [
        ("EUSurvey", "European Commission"),
        ("Europa Analytics", "European Commission"),
    ]
    assert body["controller"]["calendar"] == "european-commission"
    rules = {r["id"]: r for r in body["rules"]}
    non_selected = rules["non-selected-candidates"]
    assert non_selected["offset"] == "P1Y"
    assert non_selected["timezone"] == "Europe/Brussels"
    assert non_selected["direction"] == "max"
    assert non_selected["action"]["kind"] == "delete"
    assert non_selected["trigger"]["event"] == "call.closed"
    assert non_selected["enforced_by"] == "lethe"
    assert "1 year after the closure" in non_selected["mandate"]
    handover = rules["invited-or-selected-candidates"]["action"]
    assert handover == {"kind": "handover", "handover_to": "DPR-02054"}
    assert rules["analytics-on-device"]["enforced_by"] == "external"
    assert rules["analytics-on-device"]["offset"] == "P13M"
    cookies = rules["session-cookies"]
    assert (cookies["trigger"]["event"], cookies["offset"], cookies["enforced_by"]) == (
        "session.ended",
        "P0D",
        "external",
    )
    assert rules["local-storage-drafts"]["trigger"]["event"] == "answers.saved"
    assert {r["reference"]: r["resolved"] for r in body["related_records"]} == {
        "DPR-02054": False,
        "DPR-EC-01230": False,
    }


def test_an_unknown_policy_is_a_404_problem(client: TestClient, auth_headers: KeyFactory) -> None:
    response = client.get("/v1/policies/DPR-EC-00000", headers=auth_headers("dpo"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_versions_list_every_load(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    _load_registry(engine)
    changed = REGISTRY_FILE.read_text().replace("offset: P13M", "offset: P12M")
    posted = client.post(
        "/v1/policies",
        content=changed.encode(),
        headers={**auth_headers("dpo"), "Content-Type": "application/yaml"},
    )
    assert posted.status_code == 201
    versions = client.get(
        "/v1/policies/DPR-EC-01488/versions", headers=auth_headers("auditor")
    ).json()
    assert [(v["version"], v["current"]) for v in versions] == [(1, False), (2, True)]
    assert versions[1]["loaded_by"].startswith("key:")
    old = client.get("/v1/policies/DPR-EC-01488/versions/1", headers=auth_headers("dpo")).json()
    assert {r["id"]: r["offset"] for r in old["rules"]}["analytics-on-device"] == "P13M"


def test_dpv_export_is_json_ld(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    _load_registry(engine)
    response = client.get("/v1/policies/DPR-EC-01488/dpv", headers=auth_headers("auditor"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    body = response.json()
    assert body["@type"] == "dpv:Process"
    assert len(body["dpv:hasStorageCondition"]) == 11
    assert "dpv:hasDataProcessor" not in body


# --- CLI ---


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    return CliRunner()


def test_cli_load_list_show_export(cli_env: CliRunner, tmp_path: Path) -> None:
    loaded = cli_env.invoke(cli_app, ["policies", "load"])
    assert loaded.exit_code == 0, loaded.output
    assert "DPR-EC-01488 version 1: loaded" in loaded.output
    again = cli_env.invoke(cli_app, ["policies", "load"])
    assert "DPR-EC-01488 version 1: unchanged" in again.output
    listed = cli_env.invoke(cli_app, ["policies", "list", "--json"])
    assert json.loads(listed.output)[0]["unresolved_references"] == ["DPR-02054", "DPR-EC-01230"]
    assert [f["field"] for f in json.loads(listed.output)[0]["dpo_flags"]] == [
        "data_categories.special_needs_health"
    ]
    shown = cli_env.invoke(cli_app, ["policies", "show", "DPR-EC-01488"])
    assert shown.exit_code == 0 and "portability no" in shown.output
    assert "flagged to the DPO: data_categories.special_needs_health" in shown.output
    assert "own services (not processors): EUSurvey (European Commission)" in shown.output
    assert "processors:" not in shown.output.replace("(not processors):", "")
    out = tmp_path / "dpv.jsonld"
    exported = cli_env.invoke(
        cli_app, ["policies", "export", "DPR-EC-01488", "--format", "dpv", "--output", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    assert json.loads(out.read_text())["dct:conformsTo"] == "https://w3id.org/dpv/2.0"
    as_json = cli_env.invoke(cli_app, ["policies", "export", "DPR-EC-01488"])
    assert json.loads(as_json.output)["rules"][0]["offset"] == "P1Y"


def test_cli_refuses_a_bad_file_with_its_line_and_loads_nothing(
    cli_env: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "DPR-EC-01488.yaml"
    text = REGISTRY_FILE.read_text().replace("offset: P13M", "offset: P13X")
    bad.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "P13X" in t)
    validated = cli_env.invoke(cli_app, ["policies", "validate", str(bad)])
    assert validated.exit_code == 1
    assert f"DPR-EC-01488.yaml, line {line}, field rules.7.offset" in validated.output
    loaded = cli_env.invoke(cli_app, ["policies", "load", str(tmp_path)])
    assert loaded.exit_code == 1
    listed = cli_env.invoke(cli_app, ["policies", "list", "--json"])
    assert json.loads(listed.output) == []


def test_cli_show_of_an_unknown_record_fails_in_one_line(cli_env: CliRunner) -> None:
    result = cli_env.invoke(cli_app, ["policies", "show", "DPR-EC-00000"])
    assert result.exit_code == 1
    assert "no processing record DPR-EC-00000" in result.output


def test_cli_schema_prints_the_json_schema(cli_env: CliRunner) -> None:
    result = cli_env.invoke(cli_app, ["policies", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "Lethe processing record (policy file)"


def test_the_retention_report_flags_the_unstated_ground_to_the_dpo(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    _load_registry(engine)
    body = client.get("/v1/reports/retention", headers=auth_headers("dpo")).json()
    assert [(f["policy"], f["field"]) for f in body["dpo_flags"]] == [
        ("DPR-EC-01488", "data_categories.special_needs_health")
    ]
    page = client.get("/v1/reports/retention?format=html", headers=auth_headers("auditor")).text
    assert "Flagged to the DPO" in page and "special_needs_health" in page
