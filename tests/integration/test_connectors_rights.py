"""Access, erasure and rectification reach the subject's rows in the source system, live."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine

from dsr.service import DsrConfig
from retention import external
from tests.conftest import KeyFactory
from tests.integration.test_connectors_support import CALL, SOURCES, SourceDb, make_source
from tests.integration.test_dsr_rights import link_of, process
from tests.integration.test_requests import (
    CANARY_EMAIL,
    CANARY_NAME,
    T0,
    audit_bodies,
    file_and_verify,
    frozen,
    keyring_of,
    load_policy,
)

__all__ = ["frozen"]
ANSWER = "canary-answer-5521: ten years of survey design"


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest) -> Iterator[SourceDb]:
    yield from make_source(request.param)


def arrange(client: TestClient, engine: Engine, src: SourceDb, tmp_path: Path) -> None:
    """The subject's respondent row, two answers with an attachment each, and another person."""
    load_policy(engine)
    submitted = datetime(2024, 3, 20, 10, 0)
    with src.engine.begin() as conn:
        conn.execute(
            src.respondent.insert(),
            [
                {
                    "id": 7,
                    "email": CANARY_EMAIL,
                    "full_name": CANARY_NAME,
                    "external_ref": "EXT-7",
                    "call_ref": CALL,
                    "outcome": "not_selected",
                    "submitted_at": submitted,
                },
                {
                    "id": 8,
                    "email": "someone-else@example.org",
                    "full_name": "Someone Else",
                    "external_ref": "EXT-8",
                    "call_ref": CALL,
                    "outcome": "not_selected",
                    "submitted_at": submitted,
                },
            ],
        )
        conn.execute(
            src.answer.insert(),
            [
                {
                    "id": 70,
                    "respondent_id": 7,
                    "question": "q1",
                    "answer_text": ANSWER,
                    "saved_at": submitted,
                },
                {
                    "id": 71,
                    "respondent_id": 7,
                    "question": "q2",
                    "answer_text": "yes",
                    "saved_at": submitted,
                },
                {
                    "id": 80,
                    "respondent_id": 8,
                    "question": "q1",
                    "answer_text": "other",
                    "saved_at": submitted,
                },
            ],
        )
        conn.execute(
            src.attachment.insert(),
            [
                {
                    "id": 700,
                    "answer_id": 70,
                    "filename": "cv.pdf",
                    "content": b"%PDF",
                    "uploaded_at": submitted,
                },
            ],
        )
    actions = src.actions(tmp_path)
    external.sync(
        engine,
        registry=actions.registry,
        name="eusurvey",
        keyring=keyring_of(client),
        actor="test",
        now=T0,
    )
    config: DsrConfig = client.app.state.dsr  # type: ignore[attr-defined]
    client.app.state.dsr = dataclasses.replace(config, external=actions)  # type: ignore[attr-defined]


def package(client: TestClient, engine: Engine, headers: dict[str, str]) -> dict[str, Any]:
    rid = file_and_verify(client, engine, "access")
    assert process(client, rid, headers)["outcome"] == "completed"
    response = client.get(link_of(engine, rid, "json"))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_access_package_reads_the_external_rows_live(
    client: TestClient,
    engine: Engine,
    auth_headers: KeyFactory,
    frozen: Any,
    source: SourceDb,
    tmp_path: Path,
) -> None:
    arrange(client, engine, source, tmp_path)
    body = package(client, engine, auth_headers("controller"))
    data = sorted((r["data"] for r in body["records"]), key=lambda d: (len(d), str(d["id"])))
    assert len(data) == 4  # the respondent row, two answers, one attachment
    texts = {d.get("answer_text") for d in data}
    assert ANSWER in texts and "other" not in texts
    respondent = next(d for d in data if "full_name" in d)
    assert respondent["full_name"] == CANARY_NAME and respondent["email"] == CANARY_EMAIL
    assert all(r["source"] == "read live from eusurvey" for r in body["records"])

    # Live: a change at the source shows in the next package without a sync.
    with source.engine.begin() as conn:
        conn.execute(update(source.answer).where(source.answer.c.id == 71).values(answer_text="no"))
    again = package(client, engine, auth_headers("controller"))
    assert "no" in {r["data"].get("answer_text") for r in again["records"]}
    trail = "\n".join(audit_bodies(engine))
    assert ANSWER not in trail and CANARY_EMAIL not in trail

    # The records API holds no copy: it says where the data lives.
    subject_id = body["subject_id"]
    listed = client.get(f"/v1/subjects/{subject_id}/records", headers=auth_headers("dpo"))
    assert listed.status_code == 200, listed.text
    locations = sorted(
        (r["payload"]["external_location"]["table"], r["payload"]["external_location"]["key"])
        for r in listed.json()
    )
    assert locations == [
        ("answer", "[70]"),
        ("answer", "[71]"),
        ("attachment", "[700]"),
        ("respondent", "[7]"),
    ]
    assert ANSWER not in listed.text


def test_erasure_deletes_and_masks_the_subjects_rows_at_the_source(
    client: TestClient,
    engine: Engine,
    auth_headers: KeyFactory,
    frozen: Any,
    source: SourceDb,
    tmp_path: Path,
) -> None:
    arrange(client, engine, source, tmp_path)
    rid = file_and_verify(client, engine, "erasure")
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "completed", answered
    assert [a["id"] for a in source.rows(source.answer)] == [80]
    assert source.rows(source.attachment) == []
    people = {p["id"]: p for p in source.rows(source.respondent)}
    assert people[7]["email"].startswith("lethe-hmac:") and people[7]["full_name"] is None
    assert people[8]["email"] == "someone-else@example.org"


def test_erasure_keeps_and_names_what_the_source_refused(
    client: TestClient,
    engine: Engine,
    auth_headers: KeyFactory,
    frozen: Any,
    source: SourceDb,
    tmp_path: Path,
) -> None:
    arrange(client, engine, source, tmp_path)
    with source.engine.begin() as conn:
        conn.execute(source.review_note.insert(), [{"id": 1, "answer_id": 71, "note": "n"}])
    rid = file_and_verify(client, engine, "erasure")
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "partial", answered
    assert [a["id"] for a in source.rows(source.answer)] == [71, 80]
    assert "source system" in str(answered["outcome_details"])


def test_rectification_writes_the_field_at_the_source(
    client: TestClient,
    engine: Engine,
    auth_headers: KeyFactory,
    frozen: Any,
    source: SourceDb,
    tmp_path: Path,
) -> None:
    arrange(client, engine, source, tmp_path)
    rid = file_and_verify(client, engine, "rectification", changes={"answer_text": "corrected"})
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "completed", answered
    texts = {a["id"]: a["answer_text"] for a in source.rows(source.answer)}
    assert texts == {70: "corrected", 71: "corrected", 80: "other"}
    assert "corrected" not in "\n".join(audit_bodies(engine))
