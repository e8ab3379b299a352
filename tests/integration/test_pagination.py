"""List routes page with `limit` and a keyset cursor (`Link: rel="next"`); bad filters are 422."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from policies import service as policies
from policies.loader import registry_dir
from records.db import unit_of_work
from tests.conftest import KeyFactory

CANARY_EMAIL = "canary-7f3a@example.org"
CANARY_NAME = "Canary Pager Qv17"
NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def walk(client: TestClient, url: str, headers: dict[str, str]) -> list[list[Any]]:
    """Every page of a list, following `Link: rel="next"` until it stops."""
    pages: list[list[Any]] = []
    next_url: str | None = url
    while next_url is not None:
        response = client.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        assert isinstance(response.json(), list)
        pages.append(response.json())
        link = response.headers.get("link")
        match = NEXT.match(link) if link else None
        assert link is None or match is not None, link
        next_url = match.group("url") if match else None
        assert len(pages) < 50, "the pages never end"
    return pages


def place_holds(client: TestClient, dpo: dict[str, str], n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = client.post(
            "/v1/holds",
            json={"scope": {"policy": "DPR-EC-01488"}, "reason": f"case {i}"},
            headers=dpo,
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


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


def test_holds_come_page_by_page_each_once_in_order(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    dpo = auth_headers("dpo")
    placed = place_holds(client, dpo, 5)
    pages = walk(client, "/v1/holds?active=true&limit=2", dpo)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [h["id"] for p in pages for h in p] == [
        h["id"] for h in client.get("/v1/holds?active=true", headers=dpo).json()
    ]
    assert sorted(h["id"] for p in pages for h in p) == sorted(placed)
    # the filter travels with the cursor: a released hold is not on the later pages
    released = pages[2][0]["id"]
    client.post(f"/v1/holds/{released}/release", json={"reason": "closed"}, headers=dpo)
    assert released not in {
        h["id"] for p in walk(client, "/v1/holds?active=true&limit=2", dpo) for h in p
    }


def test_a_full_last_page_has_no_next_link(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    dpo = auth_headers("dpo")
    place_holds(client, dpo, 2)
    response = client.get("/v1/holds?limit=2", headers=dpo)
    assert len(response.json()) == 2 and "link" not in response.headers
    first = client.get("/v1/holds?limit=1", headers=dpo)
    assert NEXT.match(first.headers["link"])


def test_a_subjects_records_page_and_decrypt(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    ingest = auth_headers("ingest")
    subject = client.post(
        "/v1/subjects", json={"email": CANARY_EMAIL, "name": CANARY_NAME}, headers=ingest
    ).json()["id"]
    for day in range(1, 6):
        response = client.post(
            "/v1/records",
            json={
                "subject_id": subject,
                "policy": "DPR-EC-01488",
                "category": "application",
                "subject_category": "candidate",
                "context": "EC/2024/CNECT/443651",
                "outcome": "not_selected",
                "collected_at": f"2024-03-{day:02d}T09:30:00+01:00",
                "payload": {"n": day},
            },
            headers=ingest,
        )
        assert response.status_code == 201, response.text
    pages = walk(client, f"/v1/subjects/{subject}/records?limit=3", auth_headers("controller"))
    assert [[r["payload"]["n"] for r in p] for p in pages] == [[1, 2, 3], [4, 5]]

    found = client.get(
        "/v1/subjects", params={"email": CANARY_EMAIL, "limit": 1}, headers=auth_headers("dpo")
    )
    assert [s["id"] for s in found.json()] == [subject] and "link" not in found.headers


def test_policies_and_their_versions_page(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    auditor = auth_headers("auditor")
    pages = walk(client, "/v1/policies?limit=1", auditor)
    assert [p[0]["reference"] for p in pages] == ["DPR-EC-01488"]
    versions = walk(client, "/v1/policies/DPR-EC-01488/versions?limit=1", auditor)
    assert [[v["version"] for v in p] for p in versions] == [[1]]


def test_requests_page_by_due_date(client: TestClient, auth_headers: KeyFactory) -> None:
    controller = auth_headers("controller")
    for i in range(3):
        response = client.post(
            "/v1/requests",
            json={"type": "access", "email": f"canary-{i}-7f3a@example.org"},
            headers=controller,
        )
        assert response.status_code == 202, response.text
    pages = walk(client, "/v1/requests?type=access&limit=2", controller)
    assert [len(p) for p in pages] == [2, 1]
    rows = [r for p in pages for r in p]
    assert [(r["due_at"], r["id"]) for r in rows] == sorted((r["due_at"], r["id"]) for r in rows)


def test_audit_entries_point_to_the_next_range(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    dpo = auth_headers("dpo")
    place_holds(client, dpo, 3)
    first = client.get("/v1/audit/entries?start=0&end=2", headers=dpo)
    assert [e["index"] for e in first.json()] == [0, 1]
    assert first.headers["link"] == '</v1/audit/entries?start=2&end=4>; rel="next"'
    last = client.get("/v1/audit/entries?start=0", headers=dpo)
    assert "link" not in last.headers


@pytest.mark.parametrize(
    "url",
    [
        "/v1/holds?limit=0",
        "/v1/holds?limit=1001",
        "/v1/holds?limit=ten",
        "/v1/holds?after=not-a-cursor",
        "/v1/holds?after=W10",  # base64url of [] : the wrong shape
        "/v1/holds?after=WyJub3QgYSB0aW1lIiwiMSJd",  # ["not a time","1"]
        "/v1/holds?active=2",
        "/v1/holds?activ=true",
        "/v1/requests?status=open-ish",
        "/v1/requests?type=deletion",
        "/v1/requests?overdue=maybe",
        "/v1/requests?statsu=verified",
        "/v1/policies?limit=-1",
        "/v1/audit/entries?begin=3",
    ],
)
def test_invalid_filters_and_pages_are_422_problems(
    client: TestClient, auth_headers: KeyFactory, url: str
) -> None:
    response = client.get(url, headers=auth_headers("dpo"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert "not-a-cursor" not in response.text and "open-ish" not in response.text


def test_a_cursor_of_another_list_cannot_widen_the_filter(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    dpo = auth_headers("dpo")
    place_holds(client, dpo, 2)
    link = client.get("/v1/holds?limit=1", headers=dpo).headers["link"]
    cursor = link.split("after=")[1].split(">")[0].split("&")[0]
    response = client.get(f"/v1/requests?after={cursor}", headers=auth_headers("controller"))
    # a hold's (placed_at, id) decodes as a request's (due_at, id): a position, not a leak
    assert response.status_code == 200 and response.json() == []


def test_an_unknown_query_parameter_is_named_only_when_it_looks_like_a_name(
    client: TestClient, auth_headers: KeyFactory
) -> None:
    """A mistyped filter is named so the caller can fix it; a parameter name that is a value
    (an address sent as a key) is not echoed."""
    dpo = auth_headers("dpo")
    typo = client.get("/v1/holds", params={"activ": "true"}, headers=dpo)
    assert typo.status_code == 422 and "activ" in typo.json()["detail"]
    for url in ("/v1/holds", "/v1/audit/entries"):
        response = client.get(url, params={CANARY_EMAIL: "1", CANARY_NAME: "1"}, headers=dpo)
        assert response.status_code == 422, response.text
        assert CANARY_EMAIL not in response.text and "canary" not in response.text.lower()
