"""`lethe requests list|show|extend|process|reject`: data-subject requests for the staff."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from dsr import rights
from dsr import service as svc
from dsr.errors import RequestNotFoundError
from dsr.models import DsrRequest
from dsr.schemas import RejectionGround
from lethe.cli.context import cli_context, console
from records.db import new_session, unit_of_work, utc_now
from records.http import Actor, Role

requests_app = typer.Typer(help="Data-subject requests: list, show, extend, process, reject.")

# The CLI acts as the controller's staff (whoever may run it holds the database and key files).
CLI_ACTOR = Actor(id="cli", role=Role.controller)


def register(app: typer.Typer) -> None:
    app.add_typer(requests_app, name="requests", no_args_is_help=True)


def _id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise RequestNotFoundError(f"no request {text}") from None


def _summary(r: DsrRequest, now: Any) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "type": r.type,
        "status": r.status,
        "channel": r.channel,
        "subject_id": str(r.subject_id) if r.subject_id else None,
        "received_at": r.received_at.isoformat(),
        "original_due_at": r.original_due_at.isoformat(),
        "due_at": r.due_at.isoformat(),
        "overdue": svc.is_overdue(r, now),
        "extended_months": r.extended_months,
        "extension_reason": r.extension_reason,
        "outcome": r.outcome,
        "outcome_details": r.outcome_details,
        "closed_at": r.closed_at.isoformat() if r.closed_at else None,
    }


@requests_app.command("list")
def requests_list(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Only this request type.")] = None,
    overdue: Annotated[bool, typer.Option(help="Only open requests past their due date.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Requests by due date (earliest first)."""
    now = utc_now()
    with cli_context() as ctx, new_session(ctx.engine) as session:
        rows = svc.list_requests(session, status=status, type=type, overdue=overdue, now=now)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(_summary(r, now)))
        return
    table = Table(title=f"{len(rows)} request(s)")
    for column in ("id", "type", "status", "received", "due", "outcome"):
        table.add_column(column)
    for r in rows:
        due = r.due_at.date().isoformat() + (" OVERDUE" if svc.is_overdue(r, now) else "")
        table.add_row(
            str(r.id), r.type, r.status, r.received_at.date().isoformat(), due, r.outcome or ""
        )
    console.print(table)


@requests_app.command("show")
def requests_show(request_id: Annotated[str, typer.Argument(help="The request id.")]) -> None:
    """One request as JSON: dates, status, outcome and its recipients' notices."""
    now = utc_now()
    with cli_context() as ctx, new_session(ctx.engine) as session:
        row = svc.get_request(session, _id(request_id))
        data = _summary(row, now)
        data["notices"] = [
            {"recipient": n.recipient, "status": n.status, "reason": n.reason}
            for n in svc.notices_of(session, row.id)
        ]
    typer.echo(json.dumps(data, indent=2))


@requests_app.command("extend")
def requests_extend(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    months: Annotated[int, typer.Option(min=1, max=2, help="One or two months.")],
    reason: Annotated[str, typer.Option(help="Why more time is needed (sent to the subject).")],
) -> None:
    """Extend the deadline once, before the original deadline; the subject is told."""
    with cli_context() as ctx, unit_of_work(ctx.engine) as session:
        row = svc.extend(
            session,
            config=ctx.wiring.state["dsr"],
            request_id=_id(request_id),
            months=months,
            reason=reason,
            actor=CLI_ACTOR,
            now=utc_now(),
        )
        due = row.due_at.isoformat()
    console.print(f"request {request_id} now due {due}")


@requests_app.command("process")
def requests_process(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    upheld: Annotated[
        bool | None,
        typer.Option("--upheld/--not-upheld", help="Objections: the assessment, once made."),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Objections: the assessment's reason.")] = None,
) -> None:
    """Carry out a verified request and record its outcome."""
    with cli_context() as ctx, unit_of_work(ctx.engine) as session:
        row = rights.process(
            session,
            config=ctx.wiring.state["dsr"],
            request_id=_id(request_id),
            actor=CLI_ACTOR,
            upheld=upheld,
            reason=reason,
            now=utc_now(),
        )
        status, details = row.status, row.outcome_details
    typer.echo(json.dumps({"id": request_id, "status": status, "outcome_details": details}))


@requests_app.command("reject")
def requests_reject(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    ground: Annotated[RejectionGround, typer.Option(help="The legal ground of the refusal.")],
    reason: Annotated[str, typer.Option(help="The reasons (sent to the subject).")],
) -> None:
    """Refuse a request with its ground; the subject is told of the EDPS and judicial remedy."""
    with cli_context() as ctx, unit_of_work(ctx.engine) as session:
        rights.reject(
            session,
            config=ctx.wiring.state["dsr"],
            request_id=_id(request_id),
            reason=reason,
            ground=ground.value,
            actor=CLI_ACTOR,
            now=utc_now(),
        )
    console.print(f"request {request_id} rejected ({ground.value})")
