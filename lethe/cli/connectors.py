"""`lethe connectors validate|list|test|sync|plan`: source systems' databases (connectors/)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlmodel import Session, col

from connectors.errors import MappingError
from connectors.mapping import ConnectorMapping, line_of, read_mapping
from lethe.cli.context import cli_context, console, err_console, fail
from policies.loader import read_policy_file, registry_dir
from records.db import unit_of_work, utc_now
from records.errors import DomainError
from retention import external
from retention.models import PurgeBatch

connectors_app = typer.Typer(
    help="Source systems' databases governed where the data lives (lethe.connector/1 mappings)."
)
ACTOR = "cli"


def register(app: typer.Typer) -> None:
    app.add_typer(connectors_app, name="connectors")


def _against_policies(path: Path, mapping: ConnectorMapping, policies_dir: Path) -> list[str]:
    """Art. 31(1)(c): each table's categories and fixed outcome are ones its processing record
    declares (the policy file `<reference>.yaml` of `policies_dir`, when there is one)."""
    text = path.read_text(encoding="utf-8")
    problems: list[str] = []

    def located(loc: list[str | int], reason: str) -> None:
        line = line_of(text, loc)
        where = f"{path.name}, line {line}" if line else path.name
        problems.append(f"{where}, field {'.'.join(str(p) for p in loc)}: {reason}")

    for i, table in enumerate(mapping.tables):
        reference = mapping.policy_of(table)
        policy_file = policies_dir / f"{reference}.yaml"
        if not policy_file.is_file():
            continue
        try:
            document = read_policy_file(policy_file).document
        except DomainError:
            continue
        if table.category not in {c.key for c in document.data_categories}:
            located(["tables", i, "category"], f"not a data category of {reference}")
        subject_category = mapping.subject_category_of(table)
        if subject_category and subject_category not in {
            c.key for c in document.subject_categories
        }:
            where: list[str | int] = (
                ["tables", i, "subject_category"]
                if table.subject_category
                else ["subject_category"]
            )
            located(where, f"not a subject category of {reference}")
        if table.outcome_value and table.outcome_value not in document.outcomes:
            located(["tables", i, "outcome_value"], f"not an outcome of {reference}")
    return problems


@connectors_app.command("validate")
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Mapping files (YAML).")],
    policies_dir: Annotated[
        Path | None,
        typer.Option(help="Policy files to check categories against (default: the registry)."),
    ] = None,
) -> None:
    """Check mapping files: each problem as `file, line N, field a.b: reason`; exit 1 if any."""
    bad = 0
    for path in paths:
        try:
            mapping = read_mapping(path)
        except MappingError as exc:
            bad += 1
            for e in exc.extra.get("errors") or [
                {"file": path.name, "line": None, "field": "", "reason": exc.detail}
            ]:
                where = f"{e['file']}, line {e['line']}" if e.get("line") else e["file"]
                err_console.print(f"{where}, field {e['field']}: {e['reason']}", soft_wrap=True)
            continue
        problems = _against_policies(path, mapping, policies_dir or registry_dir())
        if problems:
            bad += 1
            for problem in problems:
                err_console.print(problem, soft_wrap=True)
            continue
        order = " > ".join(mapping.erase_order())
        console.print(
            f"{path.name}: connector {mapping.name}, {len(mapping.tables)} table(s), "
            f"erased in the order {order}",
            soft_wrap=True,
        )
    if bad:
        raise typer.Exit(1)


@connectors_app.command("list")
def list_connectors() -> None:
    """The connectors of the registry (LETHE_CONNECTORS_DIR)."""
    with cli_context() as ctx:
        actions: external.ExternalActions = ctx.wiring.state["external_actions"]
        table = Table("name", "policy", "tables")
        for mapping in actions.registry:
            table.add_row(mapping.name, mapping.policy, ", ".join(t.name for t in mapping.tables))
        console.print(table)


@connectors_app.command("test")
def test(name: Annotated[str, typer.Argument(help="Connector name.")]) -> None:
    """Connect, check that every mapped table and column exists, count the rows."""
    with cli_context() as ctx:
        actions: external.ExternalActions = ctx.wiring.state["external_actions"]
        checks = actions.registry.source(name).check()
    table = Table("table", "rows", "missing")
    problems = 0
    for check in checks:
        problems += len(check.missing_columns)
        table.add_row(
            check.table,
            "-" if check.rows is None else str(check.rows),
            ", ".join(check.missing_columns) or "-",
        )
    console.print(table)
    if problems:
        fail(f"connector {name}: {problems} mapped table(s) or column(s) missing at the source")
    console.print(f"connector {name}: reachable, every mapped table and column exists")


@connectors_app.command("sync")
def sync(
    name: Annotated[str, typer.Argument(help="Connector name.")],
    batch_size: Annotated[
        int | None, typer.Option(min=1, max=50_000, help="Source rows per batch.")
    ] = None,
) -> None:
    """Index the source's rows as governed records (no payload copied), in keyset batches;
    rows added, changed and deleted at the source since the last sync are picked up."""
    with cli_context() as ctx:
        actions: external.ExternalActions = ctx.wiring.state["external_actions"]
        checks = {c.table: c.rows for c in actions.registry.source(name).check()}
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
        ) as progress:
            tasks = {t: progress.add_task(f"{name}.{t}", total=n) for t, n in checks.items()}
            result = external.sync(
                ctx.engine,
                registry=actions.registry,
                name=name,
                keyring=ctx.wiring.state["keyring"],
                actor=ACTOR,
                now=utc_now(),
                batch_size=batch_size,
                on_batch=lambda table, n: progress.advance(tasks[table], n),
            )
    table = Table("table", "new", "changed", "unchanged", "gone", "skipped")
    for t, c in result.tables.items():
        table.add_row(t, *(str(v) for v in (c.new, c.changed, c.unchanged, c.gone, c.skipped)))
    console.print(table)
    console.print(
        f"new {result.total('new')}, changed {result.total('changed')}, "
        f"gone {result.total('gone')}, skipped {result.total('skipped')}"
    )


def planned_sql(
    session: Session, run_id: uuid.UUID, actions: external.ExternalActions | None
) -> list[str]:
    """The SQL a dry run's planned deletions would send to the source systems (nothing runs)."""
    ids = [
        uuid.UUID(i)
        for text in session.execute(
            select(col(PurgeBatch.deleted_ids)).where(col(PurgeBatch.run_id) == run_id)
        ).scalars()
        for i in text.split(",")
        if i
    ]
    if not ids or actions is None:
        return []
    try:
        return external.dry_run_sql(session, record_ids=ids, actions=actions)
    except DomainError as exc:
        return [f"-- the source systems' SQL cannot be shown: {exc.detail}"]


@connectors_app.command("plan")
def plan(
    run_id: Annotated[str, typer.Argument(help="A dry run's id (lethe purge --dry-run).")],
) -> None:
    """The SQL a real run would send to the source systems for a dry run's planned deletions."""
    try:
        run = uuid.UUID(run_id)
    except ValueError:
        fail("run_id: not a UUID")
        return
    with cli_context() as ctx:
        actions: external.ExternalActions = ctx.wiring.state["external_actions"]
        with unit_of_work(ctx.engine, write=False) as session:
            statements = planned_sql(session, run, actions)
    for sql in statements:
        console.print(sql, soft_wrap=True, highlight=False)
    console.print(f"-- {len(statements)} statement(s); nothing was run")
