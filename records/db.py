"""Persistence kernel: one engine factory, aware-UTC datetimes, one unit of work.

Both backends must mean the same thing (STYLE §8): SQLite gets foreign keys, WAL, secure_delete
and a busy timeout on every connection; datetimes are stored as UTC and always come back aware.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine


def utc_now() -> datetime:
    """The one clock. Only the HTTP clock dependency and job runners call it."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on SQLite and PostgreSQL alike. Naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass an aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite has no time zone: store UTC wall time so string order is time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, echo: bool = False, pool_size: int = 5) -> Engine:
    """The engine for `url`. SQL parameters are never logged (`hide_parameters`)."""
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if is_sqlite(url):
        # check_same_thread off: FastAPI runs sync routes in a thread pool; one connection
        # is never shared between threads at once because each session checks one out.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if ":memory:" not in url:
            kwargs["poolclass"] = NullPool
    else:
        kwargs["pool_size"] = pool_size
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if is_sqlite(url):
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN, so BEGIN IMMEDIATE works when asked for.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


IMMEDIATE = "lethe_sqlite_immediate"


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer.

    On SQLite this is `BEGIN IMMEDIATE`: the write lock is taken before the first read, so two
    writers never both read the same "next audit index" and a WAL snapshot never has to be
    upgraded (SQLITE_BUSY_SNAPSHOT). On PostgreSQL it only begins; writers that must serialise
    take a transaction advisory lock. Does nothing when the transaction has already begun.
    """
    if session.in_transaction():
        return
    session.connection(execution_options={IMMEDIATE: True})


def new_session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """One transaction: commit once at the end, or roll back on any error.

    Jobs and CLI commands use this; HTTP requests get the same through `records.http`.
    """
    with new_session(engine) as session:
        if write:
            begin_write(session)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
