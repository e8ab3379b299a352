"""docs/API.md, the HTTP contract kept in the repository, names every route the app serves, and
names none it does not; the README sends readers to it and to nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lethe.app import create_app
from lethe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "API.md"
README = ROOT / "README.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Served by FastAPI itself rather than by a route of ours.
FRAMEWORK = {("GET", "/openapi.json"), ("GET", "/docs")}
DOCUMENTED = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^\s`?]*)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    data_dir = tmp_path_factory.mktemp("api-doc")
    app = create_app(Settings(data_dir=data_dir, scheduler="off"))
    paths = app.openapi()["paths"]
    return {
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method.upper() in METHODS
    }


def documented() -> set[tuple[str, str]]:
    return {(m, p) for m, p in DOCUMENTED.findall(API_DOC.read_text(encoding="utf-8"))}


def test_every_served_route_is_in_the_api_doc(served: set[tuple[str, str]]) -> None:
    missing = sorted(served - documented())
    assert missing == [], f"describe these routes in docs/API.md: {missing}"


def test_the_api_doc_names_no_route_the_app_does_not_serve(served: set[tuple[str, str]]) -> None:
    stale = sorted(documented() - served - FRAMEWORK)
    assert stale == [], f"docs/API.md names routes nobody serves: {stale}"


def test_the_api_doc_keeps_the_contracts_names() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    for name in ('rel="next"', "application/problem+json", "Retry-After", "limit", "after"):
        assert name in text


def test_the_readme_points_to_the_api_doc_and_outside_nothing() -> None:
    text = README.read_text(encoding="utf-8")
    assert "docs/API.md" in text
    targets = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r"`(\.\./[^`]*)`", text)
    outside = [t for t in targets if t.startswith(("../", "/", "http://", "https://"))]
    assert outside == [] and "../shared" not in text, outside
    for target in re.findall(r"`((?:docs|policies|tests|bench)/[^`\s]+)`", text):
        assert (ROOT / target).exists(), f"the README names {target}, which is not in the repo"
