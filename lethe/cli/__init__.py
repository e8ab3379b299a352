"""`lethe …`: the command line. Settings are built here, per invocation, never at import."""

from __future__ import annotations

import typer

from lethe.cli import audit as audit_cli
from lethe.cli import connectors as connectors_cli
from lethe.cli import core
from lethe.cli import policies as policies_cli
from lethe.cli import records as records_cli
from lethe.cli import requests as requests_cli
from lethe.cli import retention as retention_cli
from lethe.cli import subjects as subjects_cli

app = typer.Typer(
    name="lethe",
    help="Lethe: retention and data-subject rights under the GDPR and Regulation (EU) 2018/1725.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
core.register(app)
policies_cli.register(app)
records_cli.register(app)
audit_cli.register(app)
retention_cli.register(app)
requests_cli.register(app)
subjects_cli.register(app)
connectors_cli.register(app)


def main() -> None:
    app()
