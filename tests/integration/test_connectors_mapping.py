"""Mapping files are validated with the file, line and field of each problem."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.errors import MappingError
from connectors.mapping import parse_mapping, read_mapping
from connectors.registry import PACKAGED, Registry, Secrets, source_url
from lethe.cli import app

GOOD = (PACKAGED / "eusurvey.yaml").read_text()


def errors_of(text: str) -> list[dict[str, object]]:
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, source="m.yaml")
    errors: list[dict[str, object]] = caught.value.extra["errors"]
    return errors


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_the_shipped_survey_mapping_is_valid_and_erases_children_first() -> None:
    mapping = read_mapping(PACKAGED / "eusurvey.yaml")
    assert mapping.policy == "DPR-EC-01488"
    assert mapping.erase_order() == ["attachment", "answer", "respondent"]


def test_a_password_in_the_url_is_refused_at_its_line() -> None:
    bad = GOOD.replace("postgresql+psycopg://eusurvey@", "postgresql+psycopg://eusurvey:s3cret@")
    [error] = errors_of(bad)
    assert error["field"] == "url" and error["line"] == line_of(bad, "url:")
    assert "secrets" in str(error["reason"]) and "s3cret" not in str(error["reason"])


def test_a_column_of_a_table_not_joined_is_located() -> None:
    bad = GOOD.replace("subject: {email: respondent.email}", "subject: {email: person.email}", 1)
    [error] = errors_of(bad)
    assert error["field"] == "tables.1"
    assert "person" in str(error["reason"])
    assert error["line"] == line_of(bad, "- name: answer")


def test_mask_without_columns_and_unknown_fields_are_located() -> None:
    bad = GOOD.replace("erasure: {action: delete}", "erasure: {action: mask}", 1).replace(
        "    category: application\n", "    category: application\n    colour: blue\n", 1
    )
    found = {(e["field"], e["line"]) for e in errors_of(bad)}
    assert ("tables.1.erasure", line_of(bad, "erasure: {action: mask}")) in found
    assert ("tables.1.colour", line_of(bad, "colour: blue")) in found


def test_duplicate_keys_and_a_cycle_are_refused() -> None:
    dup = GOOD.replace("policy: DPR-EC-01488\n", "policy: DPR-EC-01488\npolicy: X\n", 1)
    [error] = errors_of(dup)
    assert error["reason"] == "duplicate key" and error["line"] == line_of(dup, "policy: X")
    cycle = GOOD.replace(
        "    category: contact_details\n",
        "    category: contact_details\n    references: [attachment]\n",
        1,
    )
    assert any("cycle" in str(e["reason"]) for e in errors_of(cycle))


CANARY = "canary-7f3a@example.org"


def test_a_deep_aliased_or_nul_mapping_gets_the_policy_files_limits_without_its_content(
    tmp_path: Path,
) -> None:
    deep = GOOD + "extra: " + "[" * 50_000 + CANARY
    laughs = GOOD + f'a: &a ["{CANARY}", "{CANARY}"]\nb: &b [*a, *a]\nc: [*b, *b]\n'
    nul = GOOD.replace("title: EUSurvey", f'title: "{CANARY}\\0" #', 1)
    big = GOOD + "# " + "x" * 1_000_000 + "\n"
    expected = {
        "deep": "nested deeper than 32 levels",
        "laughs": "YAML aliases (*name) are not allowed",
        "nul": "NUL",
        "big": "file larger than 1000000 bytes",
    }
    for name, text in {"deep": deep, "laughs": laughs, "nul": nul, "big": big}.items():
        started = time.perf_counter()
        with pytest.raises(MappingError) as caught:
            parse_mapping(text, source="m.yaml")
        assert time.perf_counter() - started < 2, name
        [error] = caught.value.extra["errors"]
        assert expected[name] in str(error["reason"]), (name, error)
        assert error["field"] == "(document)" and error["file"] == "m.yaml"
        assert CANARY not in str(caught.value) and CANARY not in repr(error), name
    # The same limits on a file read from disk, and nothing of the file in the CLI's output.
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs)
    result = CliRunner().invoke(app, ["connectors", "validate", str(path)])
    assert result.exit_code == 1
    assert "aliases" in result.output and CANARY not in result.output


def test_cli_validate_prints_file_line_field_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("action: mask", "action: shred"))
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    runner = CliRunner()
    ok = runner.invoke(app, ["connectors", "validate", str(good)])
    assert ok.exit_code == 0 and "attachment > answer > respondent" in ok.output
    failed = runner.invoke(app, ["connectors", "validate", str(bad)])
    assert failed.exit_code == 1
    assert f"bad.yaml, line {line_of(GOOD, 'action: mask')}, field tables.0.erasure.action" in (
        failed.output
    )


def test_secrets_come_from_the_file_and_the_environment_wins(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text("eusurvey:\n  password: from-file\n  hash_key: k\n")
    mapping = parse_mapping(GOOD)
    from_file = Secrets.load(secrets_file, environ={})
    assert source_url(mapping, from_file).password == "from-file"
    env = Secrets.load(secrets_file, environ={"LETHE_CONNECTOR_EUSURVEY_PASSWORD": "from-env"})
    assert source_url(mapping, env).password == "from-env"
    registry = Registry(PACKAGED, Secrets.load(None, environ={}))
    assert registry.names() == ["eusurvey"]
    with pytest.raises(Exception, match="hash_key"):
        registry.hash_key("eusurvey")


def test_cli_validate_checks_categories_against_the_processing_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = GOOD.replace("category: contact_details", "category: shoe_size", 1).replace(
        "subject_category: candidate", "subject_category: visitor", 1
    )
    bad.write_text(text)
    result = CliRunner().invoke(app, ["connectors", "validate", str(bad)])
    assert result.exit_code == 1
    out = result.output.replace("\n", " ")
    assert (
        f"bad.yaml, line {line_of(text, 'shoe_size')}, field tables.0.category: "
        "not a data category of DPR-EC-01488"
    ) in out
    assert f"line {line_of(text, 'visitor')}, field subject_category" in out
