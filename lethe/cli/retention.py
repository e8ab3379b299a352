"""`lethe holds place|release|list`, `lethe purge [--dry-run]`, `lethe report retention`."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from lethe.cli import connectors as connectors_cli
from lethe.cli.context import cli_context, console, err_console
from records.db import new_session, unit_of_work, utc_now
from records.http import Actor
from retention import holds, purge, report
from retention.errors import HoldNotFoundError
from retention.models import PurgeRun

holds_app = typer.Typer(help="Legal holds: they beat every expiry and every erasure.")
report_app = typer.Typer(help="Reports for the DPO.")

CLI_ACTOR = Actor(id="cli")


def register(app: typer.Typer) -> None:
    app.add_typer(holds_app, name="holds", no_args_is_help=True)
    app.add_typer(report_app, name="report", no_args_is_help=True)
    app.command("purge")(purge_command)


@holds_app.command("place")
def holds_place(
    reason: Annotated[str, typer.Option(help="Why the data must be kept (not shown in logs).")],
    subject: Annotated[str | None, typer.Option(help="Subject id.")] = None,
    policy: Annotated[str | None, typer.Option(help="Processing record reference.")] = None,
    context: Annotated[str | None, typer.Option(help="Context, e.g. a call reference.")] = None,
    record: Annotated[str | None, typer.Option(help="A single personal record id.")] = None,
    case_reference: Annotated[str | None, typer.Option(help="Case or file reference.")] = None,
) -> None:
    """Place a legal hold on exactly one scope; prints the hold id on the last line."""
    with cli_context() as ctx:
        scope = holds.Scope.parse(
            {"subject_id": subject, "policy": policy, "context": context, "record_id": record}
        )
        with unit_of_work(ctx.engine) as session:
            hold = holds.place_hold(
                session,
                scope=scope,
                reason=reason,
                case_reference=case_reference,
                actor=CLI_ACTOR,
                now=utc_now(),
            )
            hold_id = hold.id
    typer.echo(f"placed legal hold on {scope.kind.value}:", err=True)
    typer.echo(str(hold_id))


@holds_app.command("release")
def holds_release(
    hold_id: Annotated[str, typer.Argument(help="The hold id.")],
    reason: Annotated[str, typer.Option(help="Why the hold ends.")],
) -> None:
    """Release a hold; what it kept becomes eligible at the next run."""
    with cli_context() as ctx:
        try:
            parsed = uuid.UUID(hold_id)
        except ValueError:
            raise HoldNotFoundError(f"no legal hold {hold_id}") from None
        with unit_of_work(ctx.engine) as session:
            holds.release_hold(
                session, hold_id=parsed, reason=reason, actor=CLI_ACTOR, now=utc_now()
            )
    console.print(f"released legal hold {hold_id}")


@holds_app.command("list")
def holds_list(
    all_holds: Annotated[bool, typer.Option("--all", help="Released holds too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """List active legal holds."""
    with cli_context() as ctx, new_session(ctx.engine) as session:
        found = holds.list_holds(session, active=None if all_holds else True)
    if as_json:
        for h in found:
            typer.echo(
                json.dumps(
                    {
                        "id": str(h.id),
                        "scope": holds.scope_of(h).as_dict(),
                        "case_reference": h.case_reference,
                        "owner": h.owner,
                        "placed_at": h.placed_at.isoformat(),
                        "released_at": h.released_at.isoformat() if h.released_at else None,
                    }
                )
            )
        return
    table = Table("id", "scope", "case", "owner", "placed", "released")
    for h in found:
        scope = holds.scope_of(h)
        table.add_row(
            str(h.id),
            f"{scope.kind.value}:{scope.value}",
            h.case_reference or "",
            h.owner,
            h.placed_at.isoformat(timespec="seconds"),
            h.released_at.isoformat(timespec="seconds") if h.released_at else "",
        )
    console.print(table)


def _summary(run: PurgeRun, tally: dict[str, int]) -> str:
    parts = " ".join(f"{k}={v}" for k, v in tally.items())
    return f"run {run.id} {run.status}{' (dry run)' if run.dry_run else ''}: {parts}"


def _plan_table(run: PurgeRun, plan: dict[str, Any]) -> Table:
    table = Table(title=f"dry run {run.id}: planned, nothing was changed")
    table.add_column("processing record", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("action")
    table.add_column("would be")
    table.add_column("records", justify="right")
    for row in plan["rules"]:
        version = f" v{row['policy_version']}" if row["policy_version"] is not None else ""
        rule_version = f" v{row['rule_version']}" if row["rule_version"] is not None else ""
        table.add_row(
            row["policy"] + version,
            (row["rule_id"] or "-") + rule_version,
            row["action"] or "",
            row["outcome"].replace("_", " "),
            str(row["count"]),
        )
    return table


def purge_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; change nothing.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Dry run: the plan as JSON (with the record ids).")
    ] = False,
) -> None:
    """Run a disposition run now (or resume an interrupted one). Exit 2 when paused.

    With --dry-run nothing is changed: a table shows per processing record, rule version and
    action how many records the run would delete, anonymise, hand over or keep for a hold;
    --json adds the pseudonymous record ids (the first 100 per outcome, with the total).
    """
    with cli_context() as ctx:
        pctx: purge.PurgeContext = ctx.wiring.state["purge_context"]
        with (
            Progress(
                TextColumn("purging"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err_console if as_json else console,
            ) as progress,
        ):
            task = progress.add_task("purge", total=None)

            def advance(_run: PurgeRun, n: int) -> None:
                progress.advance(task, n)

            pctx.on_batch = advance
            last = purge.purge(
                ctx.engine,
                dry_run=dry_run,
                trigger="cli",
                actor=CLI_ACTOR,
                clock=utc_now,
                ctx=pctx,
            )
        with new_session(ctx.engine) as session:
            tally = purge.counts(session, last.id)
            line = _summary(last, tally)
            plan = purge.plan(session, last.id, tally=tally) if last.dry_run else None
            # connectors: what the run would send to the source systems
            sql = connectors_cli.planned_sql(session, last.id, pctx.external) if plan else []
    if plan is not None and as_json:
        body = {"id": str(last.id), "status": last.status, **plan, "source_sql": sql}
        typer.echo(json.dumps(body, indent=2))
        return
    console.print(line)
    if plan is not None:
        console.print(_plan_table(last, plan))
        kept = plan["records"]["skipped_hold"]["total"]
        if kept:
            console.print(f"{kept} due record(s) would be kept by a legal hold")
        console.print("record ids: lethe purge --dry-run --json, or GET /v1/purges/" + str(last.id))
        for statement in sql:
            console.print(statement, soft_wrap=True, highlight=False)
    if last.status == "paused":
        console.print(
            f"paused ({last.pause_reason}): a DPO must approve with "
            f"POST /v1/purges/{last.id}/approve"
        )
        raise typer.Exit(2)


@report_app.command("retention")
def report_retention(
    format: Annotated[str, typer.Option("--format", help="json, csv or html.")] = "json",
) -> None:
    """Per processing record and rule: held, due soon, overdue, kept by holds, unresolved."""
    if format not in ("json", "csv", "html"):
        raise typer.BadParameter("format must be json, csv or html")
    with cli_context() as ctx, new_session(ctx.engine) as session:
        data = report.build(session, now=utc_now())
    if format == "csv":
        typer.echo(report.to_csv(data), nl=False)
    elif format == "html":
        typer.echo(report.to_html(data))
    else:
        typer.echo(json.dumps(data, indent=2))
