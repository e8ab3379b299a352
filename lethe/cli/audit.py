"""`lethe audit verify|checkpoint|export|prove|public-key`: the audit trail from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from audit_log import checkpoints, proofs, service
from audit_log import verify as audit_verify
from audit_log.signing import NoteSigner
from lethe.cli.context import CliContext, cli_context, console, err_console, fail
from records.db import new_session, unit_of_work, utc_now

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this domain's commands to `app`."""
    app.add_typer(audit_app, name="audit")


def _signer(ctx: CliContext) -> NoteSigner:
    signer: NoteSigner = ctx.wiring.state["audit_signer"]
    return signer


@audit_app.command("verify")
def verify(
    witness_dir: Annotated[
        Path,
        typer.Option(
            help="The DPO's directory keeping the last verified checkpoint (and the pinned key)."
        ),
    ],
) -> None:
    """Verify the whole trail; exit 0 only if it is intact and extends the witnessed checkpoint."""
    with cli_context() as ctx, new_session(ctx.engine) as session:
        signer = _signer(ctx)
        total = service.size(session)
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        ) as bar:
            task = bar.add_task("entries", total=total)
            report = audit_verify.verify_database(
                session,
                verifier_key=signer.verifier_key(),
                origin=signer.name,
                witness_dir=witness_dir,
                progress=lambda n: bar.advance(task, n),
            )
    if report.problems:
        for problem in report.problems:
            err_console.print(f"[bold red]FAILED:[/] {problem}", soft_wrap=True)
        raise typer.Exit(1)
    newest = report.newest.size if report.newest else 0
    console.print(
        f"OK: {report.entries} entries, {report.checkpoints} checkpoints verified; "
        f"witness now at size {newest}"
    )
    if report.entries > newest:
        console.print(
            f"note: the last {report.entries - newest} entries are not yet covered by a signed "
            "checkpoint (run `lethe audit checkpoint`, then verify again to cover them)"
        )


@audit_app.command("checkpoint")
def checkpoint(
    force: Annotated[
        bool, typer.Option(help="Sign a new head even if the log did not grow.")
    ] = False,
) -> None:
    """Sign a checkpoint of the current log and print it (a C2SP signed note)."""
    with cli_context() as ctx, unit_of_work(ctx.engine) as session:
        made = checkpoints.make_checkpoint(session, signer=_signer(ctx), now=utc_now(), force=force)
        note = made.note
    typer.echo(note, nl=False)


@audit_app.command("export")
def export(
    out: Annotated[
        Path | None, typer.Option(help="File to write (default: standard output).")
    ] = None,
) -> None:
    """Write entries and checkpoints as JSON lines for `standalone_verify.py`."""
    with cli_context() as ctx, new_session(ctx.engine) as session:
        signer = _signer(ctx)
        if out is None:
            count = audit_verify.export(
                session, sys.stdout, verifier_key=signer.verifier_key(), origin=signer.name
            )
        else:
            with out.open("w", encoding="utf-8") as handle:
                count = audit_verify.export(
                    session, handle, verifier_key=signer.verifier_key(), origin=signer.name
                )
    err_console.print(f"exported {count} entries")


@audit_app.command("prove")
def prove(
    index: Annotated[int | None, typer.Option(help="Inclusion: the entry's index.")] = None,
    size: Annotated[int | None, typer.Option(help="Inclusion: the tree size.")] = None,
    first: Annotated[int | None, typer.Option(help="Consistency: the older size.")] = None,
    second: Annotated[int | None, typer.Option(help="Consistency: the newer size.")] = None,
) -> None:
    """Print an inclusion proof (--index, --size) or a consistency proof (--first, --second)."""
    with cli_context() as ctx, new_session(ctx.engine) as session:
        if index is not None and size is not None and first is None and second is None:
            result = proofs.inclusion(session, index=index, size=size).model_dump()
        elif first is not None and second is not None and index is None and size is None:
            result = proofs.consistency(session, first=first, second=second).model_dump()
        else:
            fail("give --index and --size, or --first and --second")
    typer.echo(json.dumps(result, indent=2))


@audit_app.command("public-key")
def public_key() -> None:
    """Print the note verifier key auditors check checkpoints with."""
    with cli_context() as ctx:
        typer.echo(_signer(ctx).verifier_key())
