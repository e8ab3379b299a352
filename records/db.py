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
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine, make_url
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


DEFAULT_BUSY_TIMEOUT = 10.0


def make_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 5,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
) -> Engine:
    """The engine for `url`. SQL parameters are never logged (`hide_parameters`).

    `busy_timeout` (seconds) bounds how long a statement waits for another writer's lock: the
    SQLite busy timeout, PostgreSQL's `lock_timeout`. Past it the statement fails with an error
    that `is_busy_error` recognises (the API answers 503 with Retry-After, not 500).
    """
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    millis = max(1, round(busy_timeout * 1000))
    if is_sqlite(url):
        # check_same_thread off: FastAPI runs sync routes in a thread pool; one connection
        # is never shared between threads at once because each session checks one out.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout}
        if ":memory:" not in url:
            kwargs["poolclass"] = NullPool
    else:
        kwargs["pool_size"] = pool_size
        kwargs["pool_pre_ping"] = True
        if url.startswith("postgresql"):
            # Keep any `options` the URL carries (connect_args would replace them).
            given = make_url(url).query.get("options")
            given = " ".join(given) if isinstance(given, tuple) else given
            options = f"-c lock_timeout={millis}"
            kwargs["connect_args"] = {"options": f"{given} {options}" if given else options}
    engine = create_engine(url, **kwargs)
    if is_sqlite(url):
        _configure_sqlite(engine, busy_timeout_ms=millis)
    return engine


# SQLSTATEs that mean "busy, try again", not "wrong": lock_timeout, serialization failure,
# deadlock, too many connections, server starting or shutting down.
BUSY_SQLSTATES = frozenset({"55P03", "40001", "40P01", "53300", "57P03"})
# SQLITE_BUSY, SQLITE_LOCKED (primary result codes; extended codes keep them in the low byte).
_SQLITE_BUSY_CODES = frozenset({5, 6})


def is_busy_error(exc: BaseException) -> bool:
    """True when `exc` means the database is busy (a lock held too long, no connection free),
    so the same request may succeed a moment later."""
    if isinstance(exc, sa_exc.TimeoutError):  # the connection pool had no connection to give
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate in BUSY_SQLSTATES
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_BUSY_CODES
    message = str(orig).lower()
    return "database is locked" in message or "database table is locked" in message


def busy_code(exc: BaseException) -> str:
    """A short name of the busy condition for logs and metrics (never the SQL or its values)."""
    if isinstance(exc, sa_exc.TimeoutError):
        return "pool_timeout"
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate
    name = getattr(orig, "sqlite_errorname", None)
    return name if isinstance(name, str) else "SQLITE_BUSY"


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN, so BEGIN IMMEDIATE works when asked for.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
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
