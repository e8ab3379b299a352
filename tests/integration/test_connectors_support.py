"""Source databases for the connector tests: a survey tool's schema on the machine's real
PostgreSQL and MariaDB servers (respondents, answers, attachments with foreign keys).

Each test gets its own database with a unique name, dropped afterwards; Lethe's own test
databases are never touched. A server that cannot be reached skips the test with a message,
unless CI is set (then the test fails).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg  # noqa: F401  (loaded before a test freezes the clock: its C module checks datetime)
import pymysql  # type: ignore[import-untyped]  # noqa: F401
import pytest
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from connectors.mapping import ConnectorMapping, parse_mapping
from connectors.registry import Registry, Secrets
from retention.external import ExternalActions

SOURCES = ["postgresql", "mariadb"]
ADMIN_URLS = {
    "postgresql": os.environ.get(
        "LETHE_TEST_SOURCE_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    ),
    "mariadb": os.environ.get(
        "LETHE_TEST_SOURCE_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}
CALL = "EC/2024/CNECT/443651"
CANARY = "canary-7f3a@example.org"
HASH_KEY = "test-hash-key-not-a-secret"

MAPPING_TEXT = (
    Path(__file__).resolve().parents[2] / "connectors/registry/eusurvey.yaml"
).read_text()


def survey_schema() -> tuple[MetaData, Table, Table, Table, Table]:
    md = MetaData()
    respondent = Table(
        "respondent",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("email", String(320), nullable=True),
        Column("full_name", String(200), nullable=True),
        Column("external_ref", String(100), nullable=True),
        Column("call_ref", String(100), nullable=False),
        Column("outcome", String(40), nullable=True),
        Column("submitted_at", DateTime(), nullable=False),
    )
    answer = Table(
        "answer",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("respondent_id", Integer, ForeignKey("respondent.id"), nullable=False),
        Column("question", String(100), nullable=False),
        Column("answer_text", Text(), nullable=True),
        Column("saved_at", DateTime(), nullable=False),
    )
    attachment = Table(
        "attachment",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("answer_id", Integer, ForeignKey("answer.id"), nullable=False),
        Column("filename", String(200), nullable=False),
        Column("content", LargeBinary(), nullable=True),
        Column("uploaded_at", DateTime(), nullable=False),
    )
    # A table of the tool that Lethe does not govern, referring to answers: a delete of an
    # answer it refers to breaks its foreign key (the failure tests use it).
    review_note = Table(
        "review_note",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("answer_id", Integer, ForeignKey("answer.id"), nullable=False),
        Column("note", String(200), nullable=False),
    )
    return md, respondent, answer, attachment, review_note


@dataclass
class SourceDb:
    kind: str
    url: str
    engine: Engine
    respondent: Table
    answer: Table
    attachment: Table
    review_note: Table

    def mapping(self, **overrides: Any) -> ConnectorMapping:
        text_ = MAPPING_TEXT.replace(
            "url: postgresql+psycopg://eusurvey@127.0.0.1:5432/eusurvey", f"url: {self.url}"
        )
        mapping = parse_mapping(text_, source="eusurvey.yaml")
        return mapping.model_copy(update=overrides) if overrides else mapping

    def registry(self, tmp_path: Path) -> Registry:
        secrets = Secrets(by_connector={"eusurvey": {"hash_key": HASH_KEY}}, environ={})
        registry = Registry(tmp_path / "no-registry", secrets)
        registry.add(self.mapping())
        return registry

    def actions(self, tmp_path: Path) -> ExternalActions:
        return ExternalActions(self.registry(tmp_path))

    def count(self, table: Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table.name}")).scalar_one())

    def rows(self, table: Table) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(table.select().order_by(table.c.id))]


def add_candidates(
    src: SourceDb,
    outcomes: list[str],
    *,
    submitted: datetime,
    first_id: int = 1,
    answers_each: int = 2,
) -> None:
    """Respondents with answers, each answer with one attachment (ids from `first_id`)."""
    people, answers, files = [], [], []
    for n, outcome in enumerate(outcomes, start=first_id):
        people.append(
            {
                "id": n,
                "email": f"cand{n}-{CANARY}",
                "full_name": f"Candidate {n}",
                "external_ref": f"EXT-{n}",
                "call_ref": CALL,
                "outcome": outcome,
                "submitted_at": submitted.replace(tzinfo=None),
            }
        )
        for a in range(answers_each):
            aid = n * 100 + a
            answers.append(
                {
                    "id": aid,
                    "respondent_id": n,
                    "question": f"q{a}",
                    "answer_text": f"motivation of {CANARY} #{n}",
                    "saved_at": submitted.replace(tzinfo=None),
                }
            )
            files.append(
                {
                    "id": aid * 10,
                    "answer_id": aid,
                    "filename": f"cv-{n}-{a}.pdf",
                    "content": b"%PDF canary",
                    "uploaded_at": submitted.replace(tzinfo=None),
                }
            )
    with src.engine.begin() as conn:
        conn.execute(src.respondent.insert(), people)
        if answers:
            conn.execute(src.answer.insert(), answers)
            conn.execute(src.attachment.insert(), files)


def _unreachable(kind: str, exc: Exception) -> None:
    message = f"{kind} source server not reachable at {ADMIN_URLS[kind]} ({type(exc).__name__})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def make_source(kind: str) -> Iterator[SourceDb]:
    """A fresh source database with the survey schema on the `kind` server; dropped after."""
    name = f"lethe_src_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(ADMIN_URLS[kind])
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as exc:
        admin.dispose()
        _unreachable(kind, exc)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    md, respondent, answer, attachment, review_note = survey_schema()
    try:
        md.create_all(engine)
        yield SourceDb(kind, url, engine, respondent, answer, attachment, review_note)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


def capture_logs() -> io.StringIO:
    """The app's own log chain (redaction included), pointed at a buffer: what is written."""
    from lethe.logging import configure_logging

    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)
    return buffer
