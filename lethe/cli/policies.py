"""`lethe policies validate|load|list|show|export|schema`: the registry of processing records."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lethe.cli.context import cli_context, console, err_console
from policies import dpv, loader, service
from policies.document import policy_json_schema
from policies.errors import PolicyFileError
from policies.schemas import PolicyRead
from records.db import unit_of_work, utc_now

policies_app = typer.Typer(help="The registry of processing records (policy files).")


def register(app: typer.Typer) -> None:
    """Add this domain's commands to `app`."""
    app.add_typer(policies_app, name="policies", no_args_is_help=True)


class ExportFormat(StrEnum):
    json = "json"
    dpv = "dpv"


PathArg = Annotated[
    Path | None,
    typer.Argument(help="A policy file or a folder of them; default: the shipped registry."),
]


def _parse_all(path: Path | None) -> list[loader.ParsedPolicy]:
    """Parse every file first, so that one bad file stops the load before anything is written."""
    files = loader.policy_files(path or loader.registry_dir())
    if not files:
        raise PolicyFileError(f"{(path or loader.registry_dir()).name}: no policy files found")
    parsed, failed = [], False
    for file in files:
        try:
            parsed.append(loader.read_policy_file(file))
        except PolicyFileError as exc:
            failed = True
            for error in exc.extra.get("errors") or [{"file": file.name, "reason": exc.detail}]:
                line = f", line {error['line']}" if error.get("line") else ""
                field = f", field {error['field']}" if error.get("field") else ""
                err_console.print(f"[bold red]error:[/] {error['file']}{line}{field}: ", end="")
                err_console.print(error["reason"], markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)
    return parsed


@policies_app.command("validate")
def validate(path: PathArg = None) -> None:
    """Check policy files against the schema without loading them."""
    try:
        parsed = _parse_all(path)
    except PolicyFileError as exc:
        err_console.print(f"[bold red]error:[/] {exc.detail}")
        raise typer.Exit(1) from exc
    for item in parsed:
        console.print(
            f"[green]ok[/] {item.source_name}: {item.document.reference}, "
            f"{len(item.document.rules)} rules, sha256 {item.content_hash[:12]}"
        )


@policies_app.command("load")
def load(path: PathArg = None) -> None:
    """Load the shipped registry, or the files at PATH, as new versions where they changed."""
    with cli_context() as ctx:
        parsed = _parse_all(path)
        with unit_of_work(ctx.engine) as session:
            now = utc_now()
            results = [
                service.load_parsed(session, parsed=item, actor="cli", now=now) for item in parsed
            ]
            known = service.known_references(session)
            unresolved = {
                item.document.reference: service.unresolved_references(item.document, known)
                for item in parsed
            }
            flags = {item.document.reference: item.document.dpo_flags() for item in parsed}
    for result in results:
        state = "loaded" if result.created else "unchanged"
        console.print(f"{result.reference} version {result.version}: {state}")
        if unresolved[result.reference]:
            console.print(f"  unresolved references: {', '.join(unresolved[result.reference])}")
        for flag in flags[result.reference]:
            console.print(f"  flagged to the DPO: {flag.field}: {flag.detail}", highlight=False)


@policies_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """The processing records in the registry and their current versions."""
    with cli_context() as ctx, unit_of_work(ctx.engine, write=False) as session:
        summaries = service.list_policies(session)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "reference": s.reference,
                        "title": s.title,
                        "version": s.version,
                        "content_hash": s.content_hash,
                        "unresolved_references": s.unresolved_references,
                        "dpo_flags": [f.model_dump() for f in s.dpo_flags],
                    }
                    for s in summaries
                ],
                indent=2,
            )
        )
        return
    table = Table("reference", "version", "title", "unresolved references", "flagged to the DPO")
    for s in summaries:
        table.add_row(
            s.reference,
            str(s.version),
            s.title,
            ", ".join(s.unresolved_references),
            ", ".join(f.field for f in s.dpo_flags),
        )
    console.print(table)


def _read(reference: str, version: int | None) -> tuple[PolicyRead, dict[str, Any]]:
    with cli_context() as ctx, unit_of_work(ctx.engine, write=False) as session:
        if version is None:
            row, document = service.current(session, reference)
        else:
            row, document = service.get_version(session, reference, version)
        known = service.known_references(session)
        read = PolicyRead.of(
            row, document, unresolved=service.unresolved_references(document, known)
        )
        jsonld = dpv.to_jsonld(document, version=row.version, content_hash=row.content_hash)
    return read, jsonld


VersionOpt = Annotated[int | None, typer.Option(help="A given version; default: the current.")]


@policies_app.command("show")
def show(reference: str, version: VersionOpt = None) -> None:
    """One processing record: who, why, what, and its retention rules."""
    read, _ = _read(reference, version)
    console.print(f"[bold]{read.reference}[/] version {read.version}: {read.title}")
    console.print(f"controller: {read.controller.name}", markup=False, highlight=False)
    if read.controller.calendar:
        console.print(f"calendar: {read.controller.calendar}")
    if read.processors:
        names = "; ".join(p.name for p in read.processors)
        console.print(f"processors: {names}", markup=False, highlight=False)
    if read.services:
        names = "; ".join(f"{s.name} ({s.operator})" for s in read.services)
        console.print(f"own services (not processors): {names}", markup=False, highlight=False)
    console.print(f"legal basis: {'; '.join(b.article for b in read.legal_basis)}")
    rights = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in read.rights.items())
    console.print(f"rights: {rights}")
    if read.unresolved_references:
        console.print(f"unresolved references: {', '.join(read.unresolved_references)}")
    for flag in read.dpo_flags:
        console.print(
            f"[bold yellow]flagged to the DPO:[/] {flag.field}: {flag.detail}", highlight=False
        )
    console.print(f"\n[bold]{len(read.rules)} retention rules[/]")
    for rule in read.rules:
        applies = " x ".join(
            "/".join(values)
            for values in (
                rule.applies_to.subject_categories,
                rule.applies_to.data_categories,
                rule.applies_to.outcomes,
            )
            if values
        )
        action = rule.action.kind.value + (
            f" -> {rule.action.handover_to}" if rule.action.handover_to else ""
        )
        console.print(f"\n[bold]{rule.id}[/] ({rule.direction.value}, by {rule.enforced_by})")
        console.print(f"  applies to: {applies or 'any data of this record'}")
        console.print(f"  {action} {rule.offset} after {rule.trigger.describe()} ({rule.timezone})")
        if rule.review_if_untriggered_after is not None:
            console.print(
                f"  alarm if untriggered {rule.review_if_untriggered_after} after collection"
            )
        if rule.restrict_processing:
            console.print("  storage only until then (no further processing)")
        console.print(f"  mandate: {rule.mandate}", markup=False, highlight=False)


@policies_app.command("export")
def export(
    reference: str,
    format: Annotated[ExportFormat, typer.Option("--format", help="json or dpv (JSON-LD).")] = (
        ExportFormat.json
    ),
    version: VersionOpt = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
) -> None:
    """Export a processing record as JSON or as W3C DPV 2.x JSON-LD."""
    read, jsonld = _read(reference, version)
    body = jsonld if format is ExportFormat.dpv else read.model_dump(mode="json")
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}")


@policies_app.command("schema")
def schema(
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of the policy file format."""
    text = json.dumps(policy_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
