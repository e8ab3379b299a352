"""The service's own surface: health, readiness, metrics, errors, authentication."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import Depends
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from lethe.app import create_app
from lethe.settings import Settings
from records.http import Role, public, requires
from tests.conftest import KeyFactory
from tests.routes import api_routes


def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_readyz_is_ready_with_a_database(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_database_does_not_answer(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        data_dir=tmp_path,
        scheduler="off",
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        response = c.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


def test_v1_without_a_key_is_401_problem(client: TestClient) -> None:
    response = client.get("/v1/policies")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == 401


def test_v1_with_a_wrong_key_is_401(client: TestClient) -> None:
    response = client.get("/v1/policies", headers={"Authorization": "Bearer lethe_nope_nope"})
    assert response.status_code == 401


def test_unknown_path_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/no/such/path")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_metrics_count_requests_by_route_template_not_raw_path(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/v1/records/4b4e1c80-0000-4000-8000-000000000001")
    text = client.get("/metrics").text
    assert 'route="/healthz"' in text
    assert "4b4e1c80-0000-4000-8000-000000000001" not in text


def _declares_access(route: APIRoute) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call is public or isinstance(dep.call, requires):
            return True
        stack.extend(dep.dependencies)
    return False


def test_every_route_declares_its_roles_or_is_public(settings: Settings) -> None:
    app = create_app(settings)
    routes = api_routes(app)
    # the /v1 routers are walked into, not just the app's own routes
    assert len([r for r in routes if r.path.startswith("/v1/")]) > 30
    undeclared = [f"{sorted(r.methods or ())} {r.path}" for r in routes if not _declares_access(r)]
    assert undeclared == []
    # the walk itself would notice an undeclared route
    app.add_api_route("/v1/undeclared", lambda: None)
    added = [r for r in api_routes(app) if r.path == "/v1/undeclared"]
    assert not _declares_access(added[0])


def test_a_key_of_the_wrong_role_is_403(settings: Settings, auth_headers: KeyFactory) -> None:
    app = create_app(settings)

    @app.get("/v1/dpo-only", dependencies=[Depends(requires(Role.dpo))])
    def dpo_only() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app, raise_server_exceptions=False) as c:
        wrong = c.get("/v1/dpo-only", headers=auth_headers("ingest"))
        right = c.get("/v1/dpo-only", headers=auth_headers("dpo"))
    assert wrong.status_code == 403
    assert wrong.headers["content-type"] == "application/problem+json"
    assert right.status_code == 200
