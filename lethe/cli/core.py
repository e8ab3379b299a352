"""serve, worker, db upgrade, keys create."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe import auth, migrate
from lethe.cli.context import cli_context, console
from lethe.settings import Settings
from records.db import unit_of_work, utc_now

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and encryption keys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")


def serve() -> None:
    """Serve the API (and run the scheduler unless LETHE_SCHEDULER=off)."""
    import uvicorn

    from lethe.app import create_app

    settings = Settings()
    app = create_app(settings)
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and
    # hand the app a forged client address; Lethe reads it itself (LETHE_TRUSTED_PROXIES).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


def worker() -> None:
    """Run the scheduled jobs alone (purge, checkpoints, key epochs, deadline alerts)."""
    from lethe.worker import run_worker

    run_worker(Settings())


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the configured database to head."""
    with cli_context() as ctx:
        migrate.upgrade(ctx.settings.effective_database_url, revision)
        console.print(f"database at [bold]{revision}[/]")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="controller, dpo, ingest or auditor.")],
    name: Annotated[str, typer.Option(help="What the key is for (not a person's name).")],
) -> None:
    """Create an API key. The key is printed once, alone on the last line."""
    with cli_context() as ctx, unit_of_work(ctx.engine) as session:
        row, key = auth.create_key(session, role=role, name=name, now=utc_now())
        role_name = row.role
    typer.echo(f"created {role_name} key {row.id}; store it now, it is not shown again:", err=True)
    typer.echo(key)
