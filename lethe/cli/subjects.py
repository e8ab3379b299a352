"""`lethe subjects merge-duplicates`: one e-mail, one subject, for data stored before 0007."""

from __future__ import annotations

import typer

from dsr import identity as person
from lethe.cli.context import cli_context, console
from records.crypto import Keyring
from records.db import unit_of_work, utc_now

subjects_app = typer.Typer(help="Data subjects: one e-mail address, one subject.")
ACTOR = "cli"


def register(app: typer.Typer) -> None:
    app.add_typer(subjects_app, name="subjects")


@subjects_app.command("merge-duplicates")
def merge_duplicates() -> None:
    """Give subjects stored before the hardening migration their unique e-mail key, merging
    those that share an e-mail into the oldest (records re-encrypted under its key, holds and
    requests re-pointed, audited). Run once after `lethe db upgrade`; rerunning is harmless."""
    with cli_context() as ctx:
        keyring: Keyring = ctx.wiring.state["keyring"]
        with unit_of_work(ctx.engine) as session:
            report = person.merge_duplicates(session, keyring=keyring, actor=ACTOR, now=utc_now())
    console.print(
        f"{report.subjects_checked} subject(s) checked; {report.subjects_merged} duplicate(s) "
        f"merged into {len(set(report.survivors))} subject(s); "
        f"{report.external_id_conflicts} external id conflict(s) left for review",
        soft_wrap=True,
    )
