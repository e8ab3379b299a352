"""Entry bodies are canonical JSON: one string per value, whatever the inputs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log import canonical, service, standalone_verify
from audit_log.errors import AuditDetailsError

text = st.text(alphabet=st.characters(exclude_characters="@"), max_size=20)
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, 2**62),
    action=text.filter(bool),
    actor=text.filter(bool),
    target=st.none() | text,
    subject=st.none() | st.uuids(),
    details=st.none() | st.dictionaries(text, json_values, max_size=5),
    moment=st.datetimes(timezones=st.just(UTC)),
)
def test_the_fast_body_is_the_canonical_encoding(
    index: int,
    action: str,
    actor: str,
    target: str | None,
    subject: uuid.UUID | None,
    details: dict[str, Any] | None,
    moment: datetime,
) -> None:
    body = service.entry_body(
        index=index,
        action=action,
        actor=actor,
        now=moment,
        subject_id=subject,
        target=target,
        details=details,
    )
    value = json.loads(body)
    assert canonical.dumps(value) == body
    assert canonical.is_canonical(body)
    assert value["index"] == index and value["details"] == (details or {})
    assert value["subject"] == (str(subject) if subject else None)
    assert datetime.fromisoformat(value["at"]) == moment


def test_times_are_utc_with_microseconds_whatever_the_zone() -> None:
    brussels = timezone(timedelta(hours=1))
    moment = datetime(2024, 3, 27, 12, 0, tzinfo=brussels)
    assert service.format_time(moment) == "2024-03-27T11:00:00.000000Z"
    with pytest.raises(AuditDetailsError):
        service.format_time(datetime(2024, 3, 27, 12, 0))


@pytest.mark.parametrize(
    "body", ['{"b":1,"a":2}', '{"a": 1}', '{"a":1.5}', '{"a":"\\u00e9"}', "[1"]
)
def test_non_canonical_bodies_are_recognised(body: str) -> None:
    assert not canonical.is_canonical(body)


@pytest.mark.parametrize(
    "forged",
    ['{"index":1,"v":1,"x":1.5}', '{"index":1,"v":1,"x":NaN}', '{"v":1,"index":1}', "[1]"],
)
def test_the_offline_verifier_flags_bodies_that_are_not_canonical(forged: str) -> None:
    good = service.entry_body(
        index=0,
        action="a.b",
        actor="cli",
        now=datetime(2026, 1, 1, tzinfo=UTC),
        subject_id=None,
        target=None,
        details=None,
    )
    checker = standalone_verify.TreeChecker(())
    checker.feed([(0, good), (1, forged)], last=True)
    assert checker.problems == ["entry 1: body is not canonical JSON"]
