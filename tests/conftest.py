"""Shared fixtures. One `database_url` fixture parametrised over SQLite and PostgreSQL.

PostgreSQL runs when LETHE_TEST_DATABASE_URL is set (CI always sets it). Each test gets a fresh
database cloned from a template migrated once per session: a copied file on SQLite, `CREATE
DATABASE … TEMPLATE` on PostgreSQL. Tests that need no database do not pay for one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from lethe import auth, migrate
from lethe.app import create_app
from lethe.settings import Settings
from records.db import make_engine, unit_of_work, utc_now

PG_URL = os.environ.get("LETHE_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _pg_admin_engine() -> Engine:
    assert PG_URL
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", hide_parameters=True)


def _pg_url_for(dbname: str) -> str:
    assert PG_URL
    return make_url(PG_URL).set(database=dbname).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"lethe_tmpl_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    migrate.upgrade(_pg_url_for(name))
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "sqlite" and request.node.get_closest_marker("postgres_only"):
        pytest.skip("needs PostgreSQL")
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "lethe.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    tmpl: str = request.getfixturevalue("pg_template")
    name = f"lethe_t_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{tmpl}"'))
    try:
        yield _pg_url_for(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "var",
        scheduler="off",
        log_format="json",
        smtp_host=None,
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    settings.ensure_data_dir()
    eng = make_engine(settings.effective_database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session for arranging and inspecting; commit explicitly when the app must see it."""
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


KeyFactory = Callable[[str], dict[str, str]]


@pytest.fixture
def auth_headers(engine: Engine) -> KeyFactory:
    """`auth_headers("dpo")` → headers carrying a fresh key of that role."""
    cache: dict[str, dict[str, str]] = {}

    def make(role: str) -> dict[str, str]:
        if role not in cache:
            with unit_of_work(engine) as s:
                _, key = auth.create_key(s, role=role, name=f"test-{role}", now=utc_now())
            cache[role] = {"Authorization": f"Bearer {key}"}
        return cache[role]

    return make


@pytest.fixture
def shared_dir() -> Path:
    """`../shared` beside the checkout (seeds, vectors); tests skip with a message if absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared folder not found at {SHARED}")
    return SHARED
