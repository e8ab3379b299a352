"""`lethe requests …`: data-subject requests for the staff.

`file` and `verify` let the staff file a request and confirm it with its code; `outbox` shows the
development outbox (no SMTP host), where the one-time code message of a request can be read on a
developer's machine. `reissue` is the audited way to unlock a request after too many wrong codes.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.table import Table
from sqlalchemy import select
from sqlmodel import col

from dsr import rights
from dsr import service as svc
from dsr.errors import InvalidRequestError, RequestNotFoundError
from dsr.models import DsrRequest, NotificationOutbox, RequestType
from dsr.schemas import RejectionGround
from lethe.cli.context import cli_context, console, err_console
from records.db import new_session, unit_of_work, utc_now
from records.http import Actor, Role
from records.types import INVALID_EMAIL, EmailAddress

requests_app = typer.Typer(
    help="Data-subject requests: file, verify, list, show, extend, process, reject, outbox."
)

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
        "locked": svc.is_locked(r),
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
        status = r.status
        if svc.is_locked(r) and status != "locked":
            status += " (code locked)"
        table.add_row(
            str(r.id), r.type, status, r.received_at.date().isoformat(), due, r.outcome or ""
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


_EMAIL = TypeAdapter(EmailAddress)


@requests_app.command("file")
def requests_file(
    type: Annotated[RequestType, typer.Option("--type", help="The right exercised.")],
    email: Annotated[str, typer.Option(help="The requester's e-mail address.")],
    details: Annotated[str | None, typer.Option(help="What the requester wrote.")] = None,
    changes: Annotated[
        str | None, typer.Option(help="Rectification/restriction: the changes as JSON.")
    ] = None,
    identity_verified: Annotated[
        bool,
        typer.Option(
            "--identity-verified", help="Identity was established otherwise: no code is sent."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Staff intake: file a request on the subject's behalf; prints its id and due date.

    Without --identity-verified the one-time code goes to the address (in development: the
    outbox, see `lethe requests outbox`).
    """
    try:
        address = str(_EMAIL.validate_python(email))
    except ValidationError:
        raise typer.BadParameter(INVALID_EMAIL, param_hint="--email") from None
    try:
        parsed = json.loads(changes) if changes else None
    except json.JSONDecodeError:
        raise typer.BadParameter("not valid JSON", param_hint="--changes") from None
    with cli_context() as ctx:
        if parsed is not None and not isinstance(parsed, dict):
            raise InvalidRequestError("`changes` is a JSON object")
        with unit_of_work(ctx.engine) as session:
            row = svc.file_request(
                session,
                config=ctx.wiring.state["dsr"],
                type=type,
                email=address,
                details=details,
                changes=parsed,
                actor=CLI_ACTOR,
                client_address=None,
                identity_verified=identity_verified,
                now=utc_now(),
            )
            data = {
                "id": str(row.id),
                "status": row.status,
                "received_at": row.received_at.isoformat(),
                "due_at": row.due_at.isoformat(),
            }
    if as_json:
        typer.echo(json.dumps(data))
        return
    # Plain lines (no wrapping): the id is copied into the next command.
    typer.echo(f"request {data['id']} ({data['status']}), due {data['due_at']}")
    if data["status"] == "awaiting_identity":
        typer.echo(
            "a one-time code was sent to the address: "
            f"lethe requests verify {data['id']} --code CODE"
        )


@requests_app.command("verify")
def requests_verify(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    code: Annotated[str, typer.Option(help="The one-time code the requester received.")],
) -> None:
    """Confirm a request with its one-time code (a wrong code counts, as over the API)."""
    failed: svc.CodeCheckFailed | None = None
    with cli_context() as ctx:
        config: svc.DsrConfig = ctx.wiring.state["dsr"]
        # The failed attempt is committed before the error is shown (the count must hold).
        with unit_of_work(ctx.engine) as session:
            try:
                row = svc.verify(
                    session, config=config, request_id=_id(request_id), code=code, now=utc_now()
                )
                status = row.status
            except svc.CodeCheckFailed as exc:
                failed = exc
    if failed is not None:
        left = failed.error.extra.get("attempts_left")
        suffix = f" ({left} attempt(s) left)" if left is not None else ""
        err_console.print(f"[bold red]error:[/] {failed.error.detail}{suffix}")
        raise typer.Exit(1)
    typer.echo(f"request {request_id} {status}")


@requests_app.command("reissue")
def requests_reissue(request_id: Annotated[str, typer.Argument(help="The request id.")]) -> None:
    """Unlock a request after too many wrong codes and send a fresh code (audited)."""
    with cli_context() as ctx, unit_of_work(ctx.engine) as session:
        row = svc.reissue_code(
            session,
            config=ctx.wiring.state["dsr"],
            request_id=_id(request_id),
            actor=CLI_ACTOR,
            now=utc_now(),
        )
        status = row.status
    typer.echo(f"request {request_id} {status}: a new code was sent")


OUTBOX_WARNING = (
    "DEVELOPMENT OUTBOX: messages are kept in the database instead of being sent because no "
    "SMTP host is set (LETHE_SMTP_HOST). They hold real addresses and one-time codes: never "
    "run without SMTP on real data subjects."
)


@requests_app.command("outbox")
def requests_outbox(
    request_id: Annotated[
        str | None, typer.Option("--request", help="Only the messages of this request.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="The most recent N messages.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Development only: the messages the outbox kept (one-time codes included), newest first."""
    with cli_context() as ctx:
        if ctx.settings.smtp_host:
            err_console.print(
                "[bold yellow]note:[/] LETHE_SMTP_HOST is set: messages are sent by SMTP and "
                "not kept here; only messages from before it was set can be listed."
            )
        else:
            err_console.print(f"[bold yellow]warning:[/] {OUTBOX_WARNING}")
        query = select(NotificationOutbox).order_by(
            col(NotificationOutbox.created_at).desc(), col(NotificationOutbox.id)
        )
        if request_id is not None:
            query = query.where(col(NotificationOutbox.request_id) == _id(request_id))
        with new_session(ctx.engine) as session:
            rows = list(session.execute(query.limit(limit)).scalars())
    if as_json:
        for m in rows:
            typer.echo(
                json.dumps(
                    {
                        "id": str(m.id),
                        "created_at": m.created_at.isoformat(),
                        "channel": m.channel,
                        "request_id": str(m.request_id) if m.request_id else None,
                        "to": m.recipient,
                        "subject": m.subject,
                        "body": m.body,
                    }
                )
            )
        return
    if not rows:
        console.print("the outbox is empty")
    for m in rows:
        console.rule(f"{m.created_at.isoformat(timespec='seconds')}  {m.channel}")
        console.print(f"request: {m.request_id or '-'}", markup=False, highlight=False)
        console.print(f"to:      {m.recipient}", markup=False, highlight=False)
        console.print(f"subject: {m.subject}", markup=False, highlight=False)
        console.print("")
        console.print(m.body, markup=False, highlight=False)
