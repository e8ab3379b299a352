"""What every command needs: settings, an engine, the wiring; and one error style."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from audit_log.jobs import Checkpointer
from lethe.logging import configure_logging
from lethe.settings import Settings
from lethe.wiring import Wiring, build_wiring
from records.db import is_busy_error, make_engine
from records.errors import DomainError

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliContext:
    settings: Settings
    engine: Engine
    wiring: Wiring


@contextmanager
def cli_context() -> Iterator[CliContext]:
    """Settings from the environment, logging to stderr, an engine; domain errors → exit 1."""
    settings = Settings()
    configure_logging(
        settings.log_level if settings.log_level != "INFO" else "WARNING", settings.log_format
    )
    settings.ensure_data_dir()
    engine = make_engine(
        settings.effective_database_url, busy_timeout=settings.database_busy_timeout_seconds
    )
    wiring = build_wiring(settings, engine, CollectorRegistry())
    # A command that appended to the audit trail (import, purge, holds…) leaves it signed.
    checkpointer: Checkpointer = wiring.state["checkpointer"]
    if settings.checkpoint_freshness_seconds > 0:
        checkpointer.watch()
    try:
        yield CliContext(settings=settings, engine=engine, wiring=wiring)
    except DomainError as exc:
        err_console.print(f"[bold red]error:[/] {exc.detail}")
        raise typer.Exit(1) from exc
    except (DBAPIError, PoolTimeoutError) as exc:
        if not is_busy_error(exc):
            raise
        # Batched commands (import, purge, rotate-kek) keep what they committed: run it again.
        err_console.print(
            "[bold red]error:[/] the database stayed busy (another writer held its lock); "
            "run the command again"
        )
        raise typer.Exit(1) from exc
    finally:
        if checkpointer.pending:
            checkpointer.run_once()
        checkpointer.unwatch()
        engine.dispose()


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    sys.stderr.flush()
    raise typer.Exit(code)
