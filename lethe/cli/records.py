"""`lethe import`, `lethe events add`, `lethe demo`, `lethe keys rotate-kek|destroy-expired`."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Literal

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from lethe.cli.context import CliContext, cli_context, console, err_console, fail
from lethe.cli.core import keys_app
from records import service as records
from records.crypto import Keyring
from records.db import unit_of_work, utc_now
from retention import demo as demo_data
from retention import ingest

events_app = typer.Typer(help="Business events (call.closed, …) that start retention periods.")
ACTOR = "cli"
SHOWN_ERRORS = 50


def register(app: typer.Typer) -> None:
    app.command("import")(import_file)
    app.add_typer(events_app, name="events")
    app.command("demo")(demo)
    keys_app.command("rotate-kek")(rotate_kek)
    keys_app.command("rotate", help="Alias of rotate-kek.")(rotate_kek)
    keys_app.command("destroy-expired")(destroy_expired)


def _say(message: str) -> None:
    console.print(message, soft_wrap=True)


def _keyring(ctx: CliContext) -> Keyring:
    keyring: Keyring = ctx.wiring.state["keyring"]
    return keyring


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


# --- import --------------------------------------------------------------------------------------


class _Rollback(Exception):
    pass


def _counting(fh: IO[str], progress: Progress, task: TaskID) -> Iterator[str]:
    for line in fh:
        progress.advance(task, len(line.encode("utf-8")))
        yield line


def _report(failures: list[ingest.LineError], errors_file: Path | None) -> None:
    if not failures:
        return
    table = Table(title=f"{len(failures)} line(s) failed", show_lines=False)
    table.add_column("line", justify="right")
    table.add_column("field")
    table.add_column("reason")
    for failure in failures[:SHOWN_ERRORS]:
        table.add_row(str(failure.line), failure.field or "-", failure.reason)
    err_console.print(table)
    if len(failures) > SHOWN_ERRORS and errors_file is None:
        err_console.print(f"… {len(failures) - SHOWN_ERRORS} more; use --errors FILE for all")
    if errors_file is not None:
        with errors_file.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "field", "reason"])
            writer.writerows((f.line, f.field, f.reason) for f in failures)
        err_console.print(f"error report written to {errors_file}", soft_wrap=True)


def import_file(
    path: Annotated[Path, typer.Argument(help="NDJSON (one record a line) or CSV file.")],
    fmt: Annotated[
        Literal["auto", "ndjson", "csv"],
        typer.Option("--format", help="auto: by the file extension (.csv is CSV)."),
    ] = "auto",
    all_or_nothing: Annotated[
        bool, typer.Option("--all-or-nothing", help="One transaction: any bad line, no import.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=50_000, help="Lines per batch.")] = 1000,
    errors_file: Annotated[
        Path | None, typer.Option("--errors", help="Write every failed line (CSV) here.")
    ] = None,
) -> None:
    """Import records (a subject inline as `subject` or by `subject_id`), in batches.

    Good lines are kept and bad ones reported by line number, field and reason (never a value);
    exit status 1 when any line failed. CSV columns: the record fields, `subject.email`,
    `subject.name`, `subject.external_id`, and `payload` (a JSON object) or `payload.<key>`.
    """
    if not path.is_file():
        fail(f"no file {path}")
    kind = fmt if fmt != "auto" else ("csv" if path.suffix.lower() == ".csv" else "ndjson")
    failures: list[ingest.LineError] = []
    imported = 0
    now = utc_now()
    with cli_context() as ctx, _progress() as progress:
        keyring = _keyring(ctx)
        task = progress.add_task(f"importing {path.name}", total=path.stat().st_size)
        with path.open(encoding="utf-8", newline="" if kind == "csv" else None) as fh:
            lines = ingest.read_lines(_counting(fh, progress, task), fmt=kind)
            batches = ingest.batched(lines, batch_size)
            if all_or_nothing:
                try:
                    with unit_of_work(ctx.engine) as session:
                        state = ingest.ImportState(session, keyring=keyring, now=now)
                        for batch in batches:
                            result = ingest.import_batch(
                                session, state=state, lines=batch, actor=ACTOR, now=now
                            )
                            imported += result.imported
                            failures += result.failures
                        if failures:
                            raise _Rollback
                except _Rollback:
                    imported = 0
            else:
                # One short transaction per batch: other writers (the API's public intake,
                # holds) get the lock between batches instead of waiting out the import.
                with unit_of_work(ctx.engine, write=False) as session:
                    state = ingest.ImportState(session, keyring=keyring, now=now)
                for batch in batches:
                    result = ingest.import_batch_committed(
                        ctx.engine, state=state, lines=batch, actor=ACTOR, now=now
                    )
                    imported += result.imported
                    failures += result.failures
    _report(failures, errors_file)
    if all_or_nothing and failures:
        fail(f"nothing imported: {len(failures)} line(s) failed (--all-or-nothing)")
    _say(f"imported {imported} record(s); {len(failures)} line(s) failed")
    if failures:
        raise typer.Exit(1)


# --- events --------------------------------------------------------------------------------------


@events_app.command("add")
def events_add(
    event_type: Annotated[str, typer.Option("--type", help="e.g. call.closed")],
    context: Annotated[str, typer.Option(help="e.g. EC/2024/CNECT/443651")],
    occurred_at: Annotated[
        str, typer.Option(help="RFC 3339 with an offset, e.g. 2024-03-27T12:00:00+01:00")
    ],
) -> None:
    """Record a business event and recompute the due dates of the records it triggers."""
    try:
        when = datetime.fromisoformat(occurred_at)
    except ValueError:
        fail("--occurred-at: not an RFC 3339 timestamp")
        return
    if when.tzinfo is None:
        fail("--occurred-at: give an offset (e.g. +01:00 or Z); naive times are refused")
    with cli_context() as ctx, unit_of_work(ctx.engine) as session:
        event = ingest.record_event(
            session, type=event_type, context=context, occurred_at=when, actor=ACTOR, now=utc_now()
        )
        event_id, affected = event.id, event.affected_records
    _say(f"event {event_id} recorded; {affected} record(s) got a new due date")


# --- demo ----------------------------------------------------------------------------------------


def demo(
    candidates: Annotated[int, typer.Option(min=1, help="How many candidates.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 1488,
    batch_size: Annotated[int, typer.Option(min=1, help="Lines per transaction.")] = 1000,
) -> None:
    """Load a realistic DPR-EC-01488 data set: call EC/2024/CNECT/443651 and its candidates."""
    with cli_context() as ctx, _progress() as progress:
        estimate = int(candidates * 4.33)
        task = progress.add_task("loading candidates", total=estimate)
        result = demo_data.run_demo(
            ctx.engine,
            keyring=_keyring(ctx),
            candidates=candidates,
            now=utc_now(),
            batch_size=batch_size,
            seed=seed,
            on_batch=lambda n: progress.advance(task, n),
        )
        progress.update(task, total=result.records + result.failed, completed=result.records)
    _say(
        f"{result.candidates} candidates, {result.records} records imported "
        f"({result.failed} failed); call.closed for {demo_data.CALL} set "
        f"{result.affected_by_call_closed} due date(s)"
    )
    if result.failed:
        raise typer.Exit(1)


# --- key-encryption-key epochs -----------------------------------------------------------------


def rotate_kek(
    batch_size: Annotated[int, typer.Option(min=1, help="Data keys per transaction.")] = 1000,
) -> None:
    """Start a new key-encryption-key epoch and rewrap every live data key under it.

    The old epoch stays (backups need it) until `lethe keys destroy-expired` runs after the
    backup window (LETHE_KEK_BACKUP_WINDOW_DAYS).
    """
    with cli_context() as ctx, _progress() as progress:
        with unit_of_work(ctx.engine, write=False) as session:
            total = records.count_live_keys(session)
        task = progress.add_task("rewrapping data keys", total=total)
        epoch, rewrapped = ingest.run_kek_rotation(
            ctx.engine,
            keyring=_keyring(ctx),
            actor=ACTOR,
            now=utc_now(),
            batch_size=batch_size,
            on_batch=lambda n: progress.advance(task, n),
        )
    _say(f"key-encryption-key epoch {epoch} is current; {rewrapped} data key(s) rewrapped")


def destroy_expired() -> None:
    """Destroy retired key-encryption-key epochs older than the backup window.

    After this, database copies older than the window no longer decrypt erased subjects' data.
    """
    with cli_context() as ctx:
        window = timedelta(days=ctx.settings.kek_backup_window_days)
        with unit_of_work(ctx.engine) as session:
            destroyed = ingest.destroy_expired_epochs(
                session, keyring=_keyring(ctx), backup_window=window, actor=ACTOR, now=utc_now()
            )
    if destroyed:
        _say(f"destroyed key-encryption-key epoch(s): {', '.join(map(str, destroyed))}")
    else:
        _say("no epoch is past the backup window (or one still wraps live keys)")
