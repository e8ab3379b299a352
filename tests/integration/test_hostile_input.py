"""Hostile input over HTTP: every answer is a problem below 500 that does not echo what was sent.

Size, depth, NUL bytes, lone surrogates, years 9999, Unix numbers, NaN, booleans spelled as text
and 2**70 in a path: a 413 or a 422 (or a 404), quickly, on both databases, and nothing stored.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dsr.models import DsrRequest
from lethe.app import create_app
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records.db import unit_of_work
from records.models import BusinessEvent, PersonalRecord, Subject
from retention.models import LegalHold
from tests.conftest import KeyFactory

CANARY = "canary-7f3a@example.org"
CALL = "EC/2024/CNECT/443651"
ROLES = ("dpo", "controller", "ingest", "auditor")
MiB = 1024 * 1024


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s,
            path_or_text=registry_dir() / "DPR-EC-01488.yaml",
            actor="test",
            now=datetime(2024, 1, 1, tzinfo=UTC),
        )
    return engine


def _subject(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post(
        "/v1/subjects", json={"email": "someone@example.eu", "name": "Someone"}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _record(subject_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject_id": subject_id,
        "policy": "DPR-EC-01488",
        "category": "application",
        "subject_category": "candidate",
        "context": CALL,
        "outcome": "not_selected",
        "collected_at": "2024-03-20T09:30:00+01:00",
        "payload": {"cv": "a cv"},
    }
    body.update(overrides)
    return body


def _count(engine: Engine, table: Any) -> int:
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())


def _refused(response: Any, *statuses: int) -> None:
    """A problem with one of `statuses` that does not carry the canary back."""
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json")
    assert CANARY not in response.text
    assert "canary" not in response.text.lower()


def _raw(client: TestClient, path: str, body: bytes | str, headers: dict[str, str]) -> Any:
    content = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return client.post(
        path, content=content, headers={**headers, "Content-Type": "application/json"}
    )


# --- size --------------------------------------------------------------------------------------


def test_a_10_mb_public_request_is_413_and_stores_nothing(
    client: TestClient, engine: Engine
) -> None:
    body = {"type": "rectification", "email": "a@example.eu", "changes": {"cv": CANARY * 700_000}}
    response = client.post("/v1/requests", json=body)
    _refused(response, 413)
    assert response.json()["type"].endswith("/payload-too-large")
    assert _count(engine, DsrRequest) == 0


def test_free_text_and_changes_are_bounded_field_by_field_under_the_body_limit(
    client: TestClient, engine: Engine
) -> None:
    too_long = {"type": "rectification", "email": "a@example.eu", "changes": {"cv": "x" * 20_000}}
    too_many = {
        "type": "rectification",
        "email": "a@example.eu",
        "changes": {f"field_{i}": "x" for i in range(201)},
    }
    details = {"type": "access", "email": "a@example.eu", "details": "x" * 4001}
    for body in (too_long, too_many, details):
        _refused(client.post("/v1/requests", json=body), 422)
    assert _count(engine, DsrRequest) == 0
    fine = {"type": "rectification", "email": "a@example.eu", "changes": {"cv": "x" * 5_000}}
    assert client.post("/v1/requests", json=fine).status_code == 202


@pytest.mark.parametrize(
    "path",
    ["/v1/records", "/v1/subjects", "/v1/events", "/v1/holds", "/v1/purges", "/v1/policies"],
)
def test_a_10_mb_body_is_413_on_every_route(
    client: TestClient, auth_headers: KeyFactory, path: str
) -> None:
    blob = b'{"x": "' + CANARY.encode() * (10 * MiB // len(CANARY)) + b'"}'
    _refused(_raw(client, path, blob, auth_headers("dpo")), 413)


def test_a_chunked_body_without_length_is_counted(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"email": "x@example.eu", "name": "'
        for _ in range(20):
            yield CANARY.encode() * (MiB // len(CANARY) // 8)
        yield b'"}'

    response = client.post(
        "/v1/subjects",
        content=chunks(),
        headers={**auth_headers("ingest"), "Content-Type": "application/json"},
    )
    _refused(response, 413)
    assert _count(engine, Subject) == 0


def test_the_import_has_its_own_larger_limit_counted_as_it_streams(
    settings: Settings, auth_headers: KeyFactory, loaded: Engine
) -> None:
    settings.max_import_bytes = 2 * MiB
    app = create_app(settings)
    headers = {**auth_headers("ingest"), "Content-Type": "application/x-ndjson"}
    line = json.dumps(
        {**_record("", subject={"email": "a@example.eu"}), "payload": {"cv": "x" * 5000}}
    ).replace('"subject_id": "", ', "")

    def stream(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield (line + "\n").encode()

    with TestClient(app, raise_server_exceptions=False) as c:
        # 1.5 MiB: over the JSON routes' limit, under the import's.
        fine = c.post("/v1/imports", content=stream(300), headers=headers)
        assert fine.status_code == 200, fine.text
        assert fine.json()["failed"] == []
        before = _count(loaded, PersonalRecord)
        big = c.post("/v1/imports", content=stream(600), headers=headers)
        _refused(big, 413)
        declared = c.post(
            "/v1/imports",
            content=b"{}\n",
            headers={**headers, "Content-Length": str(3 * MiB)},
        )
        _refused(declared, 413)
    assert _count(loaded, PersonalRecord) == before


# --- depth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", ["[" * 100_000, '{"a":' * 100_000, '{"payload":' + "[" * 40 + "]" * 40 + "}"]
)
def test_deeply_nested_json_is_a_fast_422(
    client: TestClient, auth_headers: KeyFactory, shape: str
) -> None:
    started = time.perf_counter()
    response = _raw(client, "/v1/records", shape, auth_headers("ingest"))
    assert time.perf_counter() - started < 2
    _refused(response, 422)
    assert "nested deeper" in response.json()["detail"]


def test_a_payload_nested_past_the_limit_is_a_422_even_inside_an_import_line(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    line = _record(str(uuid.uuid4()), payload={"deep": deep})
    response = client.post(
        "/v1/imports",
        content=json.dumps(line) + "\n",
        headers={**auth_headers("ingest"), "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200
    assert [f["line"] for f in response.json()["failed"]] == [1]
    assert _count(loaded, PersonalRecord) == 0


def test_hostile_import_lines_fail_one_by_one_and_the_good_line_lands(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    headers = auth_headers("ingest")
    subject_id = _subject(client, headers)
    good = json.dumps(_record(subject_id))
    lines = [
        good.replace(CALL, CANARY + "\\u0000"),
        good.replace(CALL, CANARY + "\\ud800"),
        good.replace('"a cv"', "NaN"),
        good.replace('"2024-03-20T09:30:00+01:00"', '"9999-12-31T23:59:59Z"'),
        good.replace('"2024-03-20T09:30:00+01:00"', "1711533600"),
        good.replace('"a cv"', str(2**70)),
        good,
    ]
    response = client.post(
        "/v1/imports",
        content="\n".join(lines).encode(),
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 1
    assert [f["line"] for f in response.json()["failed"]] == [1, 2, 3, 4, 5, 6]
    assert CANARY not in response.text
    assert _count(loaded, PersonalRecord) == 1


def test_a_deep_or_aliased_policy_file_is_a_422_without_its_content(
    client: TestClient, auth_headers: KeyFactory
) -> None:
    headers = {**auth_headers("dpo"), "Content-Type": "application/yaml"}
    deep = "reference: " + "[" * 50_000 + CANARY
    laughs = f'a: &a ["{CANARY}", "{CANARY}"]\nb: &b [*a, *a]\nc: [*b, *b]\n'
    nul = f'reference: "{CANARY}\\0"\n'
    for text in (deep, laughs, nul):
        started = time.perf_counter()
        response = client.post("/v1/policies", content=text.encode(), headers=headers)
        assert time.perf_counter() - started < 2
        _refused(response, 422)


# --- strings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800", "\\udfff tail"])
def test_nul_and_lone_surrogates_are_422_in_fields_and_payloads(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, bad: str
) -> None:
    headers = auth_headers("ingest")
    subject_id = _subject(client, headers)
    cases = [
        ("/v1/subjects", f'{{"email": "x@example.eu", "name": "{CANARY}{bad}"}}'),
        ("/v1/subjects", f'{{"email": "x@example.eu", "attributes": {{"k{bad}": 1}}}}'),
        (
            "/v1/events",
            f'{{"type": "call.closed", "context": "{CANARY}{bad}", '
            '"occurred_at": "2024-03-27T12:00:00+01:00"}',
        ),
        ("/v1/records", json.dumps(_record(subject_id, context="@@")).replace("@@", CANARY + bad)),
        (
            "/v1/records",
            json.dumps(_record(subject_id, payload={"cv": "@@"})).replace("@@", CANARY + bad),
        ),
        (
            "/v1/requests",
            f'{{"type": "access", "email": "a@example.eu", "details": "{CANARY}{bad}"}}',
        ),
    ]
    for path, body in cases:
        _refused(_raw(client, path, body, headers), 422)
    dpo = auth_headers("dpo")
    hold = f'{{"scope": {{"context": "{CANARY}{bad}"}}, "reason": "r"}}'
    _refused(_raw(client, "/v1/holds", hold, dpo), 422)
    assert _count(loaded, PersonalRecord) == 0
    assert _count(loaded, BusinessEvent) == 0
    assert _count(loaded, LegalHold) == 0
    assert _count(loaded, Subject) == 1


@pytest.mark.parametrize("bad", ["%00", "%ED%A0%80", "%FF"])
def test_nul_and_broken_utf8_in_paths_and_queries_are_422(
    client: TestClient, auth_headers: KeyFactory, bad: str
) -> None:
    headers = auth_headers("controller")
    for url in (
        f"/v1/policies/DPR{bad}",
        f"/v1/policies/DPR{bad}/versions",
        f"/v1/subjects?email=a{bad}@example.eu",
        f"/v1/requests?status=open{bad}",
    ):
        _refused(client.get(url, headers=headers), 422)


# --- times, numbers, booleans ------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        1711533600,
        "1711533600",
        "2024-03-27T12:00:00",
        "2024-03-27",
        "27/03/2024 12:00",
    ],
)
def test_timestamps_are_rfc_3339_with_an_offset_in_a_sane_range(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, when: object
) -> None:
    headers = auth_headers("ingest")
    event = {"type": "call.closed", "context": CALL, "occurred_at": when}
    _refused(client.post("/v1/events", json=event, headers=headers), 422)
    subject_id = _subject(client, headers)
    record = _record(subject_id, collected_at=when)
    _refused(client.post("/v1/records", json=record, headers=headers), 422)
    disclosure = {"record_ids": [str(uuid.uuid4())], "recipient": "r", "disclosed_at": when}
    _refused(client.post("/v1/disclosures", json=disclosure, headers=headers), 422)
    assert _count(loaded, BusinessEvent) == 0
    assert _count(loaded, PersonalRecord) == 0


def test_an_event_late_in_the_range_is_stored_and_recomputes_without_overflow(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    headers = auth_headers("ingest")
    subject_id = _subject(client, headers)
    stored = client.post("/v1/records", json=_record(subject_id), headers=headers)
    assert stored.status_code == 201, stored.text
    late = {"type": "call.closed", "context": CALL, "occurred_at": "2199-12-31T23:59:59Z"}
    response = client.post("/v1/events", json=late, headers=headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_422(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, number: str
) -> None:
    headers = auth_headers("ingest")
    subject_id = _subject(client, headers)
    body = json.dumps(_record(subject_id, payload={"score": "@@"})).replace('"@@"', number)
    _refused(_raw(client, "/v1/records", body, headers), 422)
    attrs = f'{{"email": "b@example.eu", "attributes": {{"n": {number}}}}}'
    _refused(_raw(client, "/v1/subjects", attrs, headers), 422)
    assert _count(loaded, PersonalRecord) == 0


@pytest.mark.parametrize("value", ["true", "yes", 1, "1", None])
def test_booleans_are_json_booleans(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, value: object
) -> None:
    staff = auth_headers("controller")
    body = {"type": "access", "email": "a@example.eu", "identity_verified": value}
    _refused(client.post("/v1/requests", json=body, headers=staff), 422)
    purge = client.post("/v1/purges", json={"dry_run": value}, headers=auth_headers("dpo"))
    _refused(purge, 422)
    assert _count(engine, DsrRequest) == 0


@pytest.mark.parametrize("huge", [2**63, 2**70, -(2**70)])
def test_huge_integers_in_paths_and_queries_are_422_or_404(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, huge: int
) -> None:
    auditor = auth_headers("auditor")
    for url in (
        f"/v1/audit/entries?start={huge}",
        f"/v1/audit/entries?start=0&end={huge}",
        f"/v1/audit/proofs/inclusion?index={huge}&size={huge}",
        f"/v1/audit/proofs/consistency?first=1&second={huge}",
        f"/v1/audit/proofs/consistency?first={huge}&second={huge}",
    ):
        _refused(client.get(url, headers=auditor), 422, 404)
    for version in (huge, 2**31):  # the column is a 32-bit INTEGER on PostgreSQL
        found = client.get(f"/v1/policies/DPR-EC-01488/versions/{version}", headers=auditor)
        _refused(found, 422, 404)
    payload = _record(_subject(client, auth_headers("ingest")), payload={"n": huge * 2**10})
    _refused(client.post("/v1/records", json=payload, headers=auth_headers("ingest")), 422)


# --- declared categories and existing hold targets ---------------------------------------------


def test_an_undeclared_data_category_is_a_422_over_the_api_and_in_an_import(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    headers = auth_headers("ingest")
    subject_id = _subject(client, headers)
    for wrong in ({"category": "shoe_size"}, {"subject_category": "alien"}):
        response = client.post("/v1/records", json=_record(subject_id, **wrong), headers=headers)
        _refused(response, 422)
        assert next(iter(wrong)) in response.json()["detail"]
    lines = "\n".join(
        json.dumps(_record(subject_id, **line))
        for line in ({"category": "shoe_size"}, {}, {"subject_category": "alien"})
    )
    imported = client.post(
        "/v1/imports",
        content=lines.encode(),
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["imported"] == 1
    assert [(f["line"], f["error"].split(":")[0]) for f in imported.json()["failed"]] == [
        (1, "category"),
        (3, "subject_category"),
    ]
    assert _count(loaded, PersonalRecord) == 1


def test_a_hold_on_a_target_that_does_not_exist_is_a_422(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    dpo = auth_headers("dpo")
    unknown = [
        {"subject_id": str(uuid.uuid4())},
        {"record_id": str(uuid.uuid4())},
        {"policy": "DPR-NOWHERE-1"},
        {"context": "EC/1999/NOWHERE/0"},
    ]
    for scope in unknown:
        response = client.post("/v1/holds", json={"scope": scope, "reason": "r"}, headers=dpo)
        _refused(response, 422)
    assert _count(loaded, LegalHold) == 0
    subject_id = _subject(client, auth_headers("ingest"))
    record = client.post("/v1/records", json=_record(subject_id), headers=auth_headers("ingest"))
    known = [
        {"subject_id": subject_id},
        {"record_id": record.json()["id"]},
        {"policy": "DPR-EC-01488"},
        {"context": CALL},
    ]
    for scope in known:
        response = client.post("/v1/holds", json={"scope": scope, "reason": "r"}, headers=dpo)
        assert response.status_code == 201, response.text


# --- the sweep: every route, every role, a handful of hostile inputs -----------------------------

HOSTILE_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b"\xff\xfe",
    b'{"a": NaN}',
    f'"{CANARY}\\u0000"'.encode(),
    f'{{"x": "{CANARY}\\ud800"}}'.encode(),
    ("[" * 5000).encode(),
    json.dumps({"id": 2**70, "email": CANARY, "occurred_at": "9999-12-31T23:59:59Z"}).encode(),
    json.dumps({CANARY: 1, "scope": {CANARY: 1}, "subject": {CANARY: 1}}).encode(),
    json.dumps(
        {
            "type": "rectification",
            "email": CANARY,
            "subject_id": CANARY,
            "scope": {"context": CANARY},
            "reason": CANARY,
            "record_ids": [CANARY],
            "recipient": CANARY,
            "dry_run": "true",
            "months": 2**64,
            "code": CANARY,
            "upheld": "yes",
            "changes": {CANARY: CANARY},
        }
    ).encode(),
]

# The first value passes path validation, so the hostile bodies reach the route behind it.
PATH_VALUES = ["00000000-0000-0000-0000-000000000000", "0", str(2**70), "%00", CANARY]
# Values the route's own validation must refuse, and bytes the edge refuses before any route.
QUERY = (
    f"?email={CANARY}&start={2**70}&end=-1&index={2**64}&size=x&first=0&second=NaN"
    f"&active=maybe&type={CANARY}&code={CANARY}&token={CANARY}&format={CANARY}"
    f"&filename={CANARY * 20}&limit={2**70}&after={CANARY}&months={2**64}"
)
BROKEN_QUERY = "?external_id=%00&overdue=%ED%A0%80&status=%FF"


def _routes(settings: Settings) -> list[tuple[str, str]]:
    # The OpenAPI document lists every operation of every included router (with FastAPI 0.165
    # `app.routes` holds included routers, not their routes).
    paths: dict[str, dict[str, Any]] = create_app(settings).openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


def _fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def test_every_route_answers_hostile_input_below_500_without_echo(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, settings: Settings
) -> None:
    routes = _routes(settings)
    assert len(routes) > 20
    headers_by_role = [{}, *(auth_headers(r) for r in ROLES)]
    failures: list[str] = []
    seen: dict[int, int] = {}
    for method, template in routes:
        media = "application/x-ndjson" if template == "/v1/imports" else "application/json"
        for n, value in enumerate(PATH_VALUES):
            url = _fill(template, value)
            bodies = HOSTILE_BODIES if n == 0 else [b"{}"]
            for headers in headers_by_role:
                if method == "GET":
                    attempts = [
                        client.get(url + query, headers=headers)
                        for query in ("", QUERY, BROKEN_QUERY)
                    ]
                else:
                    attempts = [
                        client.request(
                            method,
                            url + query,
                            content=body,
                            headers={**headers, "Content-Type": media},
                        )
                        for body in bodies
                        for query in ("", BROKEN_QUERY)
                    ]
                for response in attempts:
                    seen[response.status_code] = seen.get(response.status_code, 0) + 1
                    problem = response.headers.get("content-type", "")
                    if response.status_code >= 500 or (
                        response.status_code >= 400 and "problem+json" not in problem
                    ):
                        failures.append(f"{method} {url}: {response.status_code}")
                    elif response.status_code >= 400 and CANARY in response.text:
                        failures.append(f"{method} {url}: echoes the canary")
            if "{" not in template:
                break
    assert failures == [], sorted(set(failures))
    # The sweep got past authentication and into validation, not only 401s and 403s.
    assert seen.get(422, 0) > 500 and seen.get(404, 0) > 50, seen
