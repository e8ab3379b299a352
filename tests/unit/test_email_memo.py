"""A bulk import validates each distinct address once (the run's memo), and the memo changes
nothing of what a line means: the same normalised address, the same refusals."""

from __future__ import annotations

import io
import json
from typing import Any

import email_validator
import pytest

from records import types
from records.schemas import ImportLine
from retention import ingest
from retention.ingest import LineError


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The addresses email-validator is asked about."""
    calls: list[str] = []

    def counting(value: str, **kwargs: Any) -> Any:
        calls.append(value)
        return email_validator.validate_email(value, **kwargs)

    monkeypatch.setattr(types, "validate_email", counting)
    return calls


def _line(email: str, n: int) -> str:
    return json.dumps(
        {
            "subject": {"email": email},
            "policy": "DPR-EC-01488",
            "category": "application",
            "collected_at": "2024-03-20T09:30:00+01:00",
            "payload": {"n": n},
        }
    )


def test_an_import_validates_each_address_once_and_normalises_every_line(
    validations: list[str],
) -> None:
    text = "\n".join(
        [_line("Jane.Canary@EXAMPLE.org", n) for n in range(5)]
        + [_line("other.canary@example.org", 9), _line("not an address", 10)] * 2
    )
    parsed = list(ingest.read_lines(io.StringIO(text), fmt="ndjson"))
    lines = [p for _, p in parsed if isinstance(p, ImportLine)]
    errors = [p for _, p in parsed if isinstance(p, LineError)]
    assert [line.subject.email for line in lines if line.subject] == (
        ["Jane.Canary@example.org"] * 5 + ["other.canary@example.org"] * 2
    )
    # the invalid address is refused on both of its lines, with the fixed reason
    assert len(errors) == 2 and all(types.INVALID_EMAIL in e.message() for e in errors)
    # one validation per distinct valid address; a refusal is not remembered
    assert sorted(validations) == sorted(
        ["Jane.Canary@EXAMPLE.org", "other.canary@example.org", "not an address", "not an address"]
    )


def test_without_a_memo_every_line_is_validated(validations: list[str]) -> None:
    for n in range(3):
        assert isinstance(ingest.parse_ndjson_line(n, _line("jane@example.org", n)), ImportLine)
    assert len(validations) == 3
