"""Which rule binds a record, and when: the pure evaluation on DPR-EC-01488 and edge cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.calendar import CalendarError
from policies.document import PolicyDocument
from policies.evaluate import Decision, KnownEvent, PolicyVersion, evaluate
from policies.loader import parse_policy, registry_dir

CALL = "EC/2024/CNECT/443651"
OTHER_CALL = "EC/2024/CNECT/443650"
COLLECTED = datetime(2024, 3, 20, 9, 15, tzinfo=UTC)
CLOSED = datetime(2024, 3, 27, 11, 0, tzinfo=UTC)  # 27 March 2024, 12:00 CET
# 1 year after the closing day, Reg. 1182/71: expiry of 27 March 2025 = 28 March 00:00 CET.
CLOSED_PLUS_1Y = datetime(2025, 3, 27, 23, 0, tzinfo=UTC)
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def doc() -> PolicyDocument:
    path = registry_dir() / "DPR-EC-01488.yaml"
    return parse_policy(Path(path).read_text(), source=path.name).document


def closed(
    at: datetime = CLOSED, *, recorded: datetime | None = None, context: str = CALL
) -> KnownEvent:
    return KnownEvent("call.closed", context, at, recorded or at)


def run(
    doc: PolicyDocument,
    *,
    category: str = "application",
    subject_category: str | None = "candidate",
    outcome: str | None = "not_selected",
    context: str | None = CALL,
    events: Sequence[KnownEvent] = (),
    fields: Mapping[str, datetime] | None = None,
    now: datetime = NOW,
    collected_at: datetime = COLLECTED,
    **kw: Any,
) -> Decision:
    return evaluate(
        doc,
        version=3,
        category=category,
        subject_category=subject_category,
        outcome=outcome,
        source=None,
        context=context,
        collected_at=collected_at,
        fields=fields or {},
        events=events,
        now=now,
        **kw,
    )


def test_non_selected_candidate_is_deleted_one_year_after_the_call_closes(
    doc: PolicyDocument,
) -> None:
    d = run(doc, events=[closed()])
    assert (d.rule_id, d.action, d.due_at) == ("non-selected-candidates", "delete", CLOSED_PLUS_1Y)
    assert d.rule_version == 3
    assert d.direction == "max"
    assert d.untriggered_alarm_at is None


def test_no_trigger_yet_means_no_due_date_but_an_alarm(doc: PolicyDocument) -> None:
    d = run(doc, events=[])
    assert d.rule_id == "non-selected-candidates"
    assert d.due_at is None
    assert d.action == "delete"
    # two years after collection on 20 March 2024: expiry of 20 March 2026 (CET)
    assert d.untriggered_alarm_at == datetime(2026, 3, 20, 23, 0, tzinfo=UTC)
    assert "not fired" in d.reason


def test_an_event_of_another_call_does_not_trigger(doc: PolicyDocument) -> None:
    d = run(doc, events=[closed(context=OTHER_CALL)])
    assert d.due_at is None


def test_a_record_without_context_is_not_triggered_by_a_context_less_event(
    doc: PolicyDocument,
) -> None:
    stray = KnownEvent("call.closed", None, CLOSED, CLOSED)
    assert run(doc, context=None, events=[stray]).due_at is None


def test_a_trigger_in_the_future_gives_a_due_date_already(doc: PolicyDocument) -> None:
    future_close = datetime(2024, 9, 30, 10, 0, tzinfo=UTC)
    d = run(doc, events=[closed(future_close, recorded=NOW)], now=NOW)
    assert d.due_at == datetime(2025, 9, 30, 22, 0, tzinfo=UTC)  # 1 Oct 2025 00:00 CEST
    assert "future" in d.reason


def test_a_corrected_trigger_replaces_the_original_even_when_earlier(doc: PolicyDocument) -> None:
    wrong = closed(
        datetime(2024, 4, 27, 11, tzinfo=UTC), recorded=datetime(2024, 4, 27, tzinfo=UTC)
    )
    fixed = closed(CLOSED, recorded=datetime(2024, 5, 2, tzinfo=UTC))
    assert run(doc, events=[fixed, wrong]).due_at == CLOSED_PLUS_1Y
    # before the correction was recorded, the original applied
    before = run(doc, events=[fixed, wrong], now=datetime(2024, 4, 30, tzinfo=UTC))
    assert before.due_at == datetime(2025, 4, 27, 22, 0, tzinfo=UTC)


def test_the_most_specific_rule_wins_not_invited_is_storage_only(doc: PolicyDocument) -> None:
    d = run(doc, outcome="not_invited", events=[closed()])
    # both the non-selected rule and the not-invited rule match; the narrower one binds
    assert d.rule_id == "not-invited-candidates"
    assert d.restricted is True
    assert d.due_at == CLOSED_PLUS_1Y
    assert run(doc, outcome="not_selected", events=[closed()]).restricted is False


def test_invited_and_selected_candidates_are_handed_over_to_dpr_02054(
    doc: PolicyDocument,
) -> None:
    for outcome in ("invited", "selected"):
        d = run(doc, outcome=outcome, events=[closed()])
        assert (d.action, d.handover_to) == ("handover", "DPR-02054")
        assert d.rule_id == "invited-or-selected-candidates"
        # P0D from collection: due at the expiry of the collection day
        assert d.due_at == datetime(2024, 3, 20, 23, 0, tzinfo=UTC)


def test_a_candidate_without_an_outcome_goes_to_review_a_year_after_closure(
    doc: PolicyDocument,
) -> None:
    d = run(doc, outcome=None, events=[closed()])
    assert (d.rule_id, d.action, d.due_at) == (
        "candidates-without-outcome",
        "review",
        CLOSED_PLUS_1Y,
    )


def test_special_category_health_data_follows_the_candidate_rules(doc: PolicyDocument) -> None:
    d = run(doc, category="special_needs_health", events=[closed()])
    assert (d.rule_id, d.due_at) == ("non-selected-candidates", CLOSED_PLUS_1Y)


def test_survey_answers_wait_for_the_questionnaire_with_an_alarm(doc: PolicyDocument) -> None:
    d = run(doc, category="survey_answers", subject_category=None, outcome=None)
    assert d.rule_id == "survey-specific-data"
    assert d.due_at is None
    assert d.untriggered_alarm_at == datetime(2026, 3, 20, 23, 0, tzinfo=UTC)
    ended = KnownEvent("questionnaire.closed", CALL, CLOSED, CLOSED)
    d = run(doc, category="survey_answers", subject_category=None, outcome=None, events=[ended])
    assert d.due_at == datetime(2024, 3, 27, 23, 0, tzinfo=UTC)
    assert d.untriggered_alarm_at is None


def test_external_accounts_slide_with_activity(doc: PolicyDocument) -> None:
    created = datetime(2023, 1, 10, 8, 0, tzinfo=UTC)
    account = "eusurvey-account:7d0c"
    active = KnownEvent("account.activity", account, datetime(2024, 5, 2, 7, tzinfo=UTC), NOW)
    someone_else = KnownEvent(
        "account.activity", "eusurvey-account:99aa", datetime(2024, 5, 20, tzinfo=UTC), NOW
    )
    kw: dict[str, Any] = {
        "category": "user_account",
        "subject_category": "external_user",
        "outcome": None,
        "context": account,
        "collected_at": created,
    }
    assert run(doc, **kw).due_at == datetime(2025, 1, 10, 23, 0, tzinfo=UTC)
    assert run(doc, events=[active, someone_else], **kw).due_at == datetime(
        2026, 5, 2, 22, 0, tzinfo=UTC
    )
    later = KnownEvent(
        "account.activity",
        "account",
        datetime(2024, 7, 1, tzinfo=UTC),
        datetime(2024, 7, 1, tzinfo=UTC),
    )
    # an activity not yet known at `now` does not count
    assert run(doc, events=[active, later], **kw).due_at == datetime(2026, 5, 2, 22, 0, tzinfo=UTC)


def test_eu_staff_accounts_are_kept_while_staff_then_reviewed(doc: PolicyDocument) -> None:
    kw: dict[str, Any] = {
        "category": "user_account",
        "subject_category": "eu_staff_user",
        "outcome": None,
        "context": "eusurvey-account:51b2",
    }
    assert run(doc, **kw).due_at is None
    left = KnownEvent(
        "staff.left", "eusurvey-account:51b2", datetime(2024, 5, 31, 15, tzinfo=UTC), NOW
    )
    colleague = KnownEvent(
        "staff.left", "eusurvey-account:0e4f", datetime(2024, 4, 2, tzinfo=UTC), NOW
    )
    assert run(doc, events=[colleague], **kw).due_at is None
    d = run(doc, events=[left, colleague], **kw)
    assert (d.action, d.due_at) == ("review", datetime(2024, 5, 31, 22, 0, tzinfo=UTC))


def test_analytics_are_deleted_by_the_device_after_13_months(doc: PolicyDocument) -> None:
    d = run(doc, category="analytics", subject_category="external_user", outcome=None)
    assert (d.enforced_by, d.action) == ("external", "delete")
    assert d.due_at == datetime(2025, 4, 20, 22, 0, tzinfo=UTC)


def test_session_cookies_go_when_the_session_ends_not_after_13_months(
    doc: PolicyDocument,
) -> None:
    kw: dict[str, Any] = {"category": "session_cookies", "outcome": None, "context": "session:7c1e"}
    waiting = run(doc, **kw)
    assert (waiting.rule_id, waiting.due_at) == ("session-cookies", None)
    ended = KnownEvent(
        "session.ended", "session:7c1e", datetime(2024, 3, 20, 9, 40, tzinfo=UTC), NOW
    )
    d = run(doc, events=[ended], **kw)
    assert (d.enforced_by, d.action) == ("external", "delete")
    assert d.due_at == datetime(2024, 3, 20, 23, 0, tzinfo=UTC)  # the end of that day, Brussels


def test_local_storage_goes_once_the_answers_are_saved(doc: PolicyDocument) -> None:
    kw: dict[str, Any] = {"category": "local_storage", "outcome": None, "context": "survey-443651"}
    saved = KnownEvent(
        "answers.saved", "survey-443651", datetime(2024, 3, 21, 14, 0, tzinfo=UTC), NOW
    )
    d = run(doc, events=[saved], **kw)
    assert (d.rule_id, d.enforced_by, d.action) == ("local-storage-drafts", "external", "delete")
    assert d.due_at == datetime(2024, 3, 21, 23, 0, tzinfo=UTC)


def test_sysper_applications_are_handed_over_to_dpr_ec_01230(doc: PolicyDocument) -> None:
    d = run(doc, category="sysper_application", outcome=None)
    assert (d.action, d.handover_to) == ("handover", "DPR-EC-01230")


def test_data_no_rule_covers_is_kept_and_says_so(doc: PolicyDocument) -> None:
    d = run(doc, category="user_account", subject_category="candidate")
    assert (d.rule_id, d.action, d.due_at) == (None, "keep", None)
    assert "no rule" in d.reason


def test_every_rule_of_the_registry_binds_some_record(doc: PolicyDocument) -> None:
    staff_left = KnownEvent("staff.left", CALL, CLOSED, CLOSED)
    cases: list[dict[str, Any]] = [
        {"outcome": "not_selected"},
        {"outcome": "not_invited"},
        {"outcome": "invited"},
        {"outcome": None},
        {"category": "survey_answers", "outcome": None},
        {
            "category": "user_account",
            "subject_category": "eu_staff_user",
            "events": [staff_left, closed()],
        },
        {"category": "user_account", "subject_category": "external_user"},
        {"category": "analytics"},
        {"category": "session_cookies"},
        {"category": "local_storage"},
        {"category": "sysper_application"},
    ]
    bound = {run(doc, **{"events": [closed()], **case}).rule_id for case in cases}
    assert bound == {rule.id for rule in doc.rules}


# --- resolution between rules, on small documents ---


def _policy(reference: str, rules: list[dict[str, Any]], **extra: Any) -> PolicyDocument:
    return PolicyDocument.model_validate(
        {
            "reference": reference,
            "title": "test record",
            "controller": {"name": "Unit X"},
            "dpo": {"name": "DPO"},
            "legal_basis": [{"key": "art_5_1_a", "article": "EUDPR Art. 5(1)(a)"}],
            "purposes": [{"key": "p", "description": "testing"}],
            "subject_categories": [{"key": "candidate", "description": "c"}],
            "data_categories": [
                {"key": "application", "description": "a"},
                {"key": "identity", "description": "i"},
            ],
            "rules": rules,
            **extra,
        }
    )


def _rule(rule_id: str, offset: str, **over: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "applies_to": {"data_categories": ["application"]},
        "trigger": {"kind": "event", "event": "call.closed"},
        "offset": offset,
        "action": {"kind": "delete"},
        "mandate": "a sentence of the statement",
    }
    rule.update(over)
    return rule


def test_equally_specific_rules_the_earliest_due_wins() -> None:
    doc = _policy("DPR-TEST-00001", [_rule("two-years", "P2Y"), _rule("six-months", "P6M")])
    d = run(doc, events=[closed()])
    assert d.rule_id == "six-months"
    assert d.due_at == datetime(2024, 9, 27, 22, 0, tzinfo=UTC)


def test_a_triggered_rule_beats_an_equally_specific_untriggered_one() -> None:
    doc = _policy(
        "DPR-TEST-00001",
        [
            _rule("on-close", "P1M"),
            _rule("by-field", "P1M", trigger={"kind": "field", "field": "decided_at"}),
        ],
    )
    assert run(doc, events=[]).rule_id == "on-close"
    decided = {"decided_at": datetime(2024, 4, 1, tzinfo=UTC)}
    assert run(doc, events=[], fields=decided).rule_id == "by-field"


def test_a_minimum_obligation_from_another_record_postpones_the_deletion() -> None:
    main = _policy("DPR-TEST-00001", [_rule("one-year", "P1Y")])
    audit = _policy(
        "DPR-TEST-00002",
        [
            _rule(
                "keep-for-audit",
                "P5Y",
                direction="min",
                action={"kind": "review"},
                applies_to={"data_categories": ["application"], "policies": ["DPR-TEST-00001"]},
            )
        ],
    )
    d = run(main, events=[closed()], obligations=[PolicyVersion(audit, 7)])
    assert d.due_at == datetime(2029, 3, 27, 22, 0, tzinfo=UTC)  # 28 March 2029 is in CEST
    assert d.action == "delete"  # the maximum's action, once the minimum has run out
    assert (d.rule_id, d.rule_version, d.policy_reference) == (
        "keep-for-audit",
        7,
        "DPR-TEST-00002",
    )
    assert d.direction == "min"
    # the obligation names another record's data only: it does not reach identity data
    other = run(main, category="identity", events=[closed()], obligations=[PolicyVersion(audit, 7)])
    assert other.rule_id is None


def test_a_minimum_that_has_not_started_keeps_the_data() -> None:
    main = _policy("DPR-TEST-00001", [_rule("one-year", "P1Y")])
    audit = _policy(
        "DPR-TEST-00002",
        [
            _rule(
                "keep-after-audit-opens",
                "P1Y",
                direction="min",
                trigger={"kind": "event", "event": "audit.opened", "match": "any"},
                applies_to={"policies": ["DPR-TEST-00001"]},
            )
        ],
    )
    d = run(main, events=[closed()], obligations=[PolicyVersion(audit, 1)])
    assert d.due_at is None
    assert d.rule_id == "keep-after-audit-opens"
    assert "minimum" in d.reason


def test_a_shorter_minimum_does_not_change_the_maximum() -> None:
    doc = _policy(
        "DPR-TEST-00001",
        [_rule("one-year", "P1Y"), _rule("keep-a-month", "P1M", direction="min")],
    )
    d = run(doc, events=[closed()])
    assert (d.rule_id, d.due_at) == ("one-year", CLOSED_PLUS_1Y)
    assert d.constrained_by == ("DPR-TEST-00001#keep-a-month",)


def test_naive_datetimes_are_refused() -> None:
    doc = _policy("DPR-TEST-00001", [_rule("one-year", "P1Y")])
    with pytest.raises(CalendarError, match="timezone-aware"):
        run(doc, collected_at=datetime(2024, 1, 1))


# --- properties ---

_instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
_events = st.lists(
    st.builds(
        KnownEvent,
        type=st.sampled_from(["call.closed", "questionnaire.closed"]),
        context=st.sampled_from([CALL, OTHER_CALL]),
        occurred_at=_instants,
        recorded_at=_instants,
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    events=_events,
    outcome=st.sampled_from([None, "not_selected", "not_invited", "invited", "selected"]),
    now=_instants,
    order=st.randoms(use_true_random=False),
)
def test_the_decision_does_not_depend_on_the_order_events_are_passed(
    doc: PolicyDocument,
    events: list[KnownEvent],
    outcome: str | None,
    now: datetime,
    order: Any,
) -> None:
    shuffled = list(events)
    order.shuffle(shuffled)
    a = run(doc, outcome=outcome, events=events, now=now)
    b = run(doc, outcome=outcome, events=shuffled, now=now)
    assert (a.rule_id, a.due_at, a.action) == (b.rule_id, b.due_at, b.action)
    if a.due_at is not None and a.triggered_at is not None:
        # the period ends after the trigger (P0D ends with the trigger's own day)
        assert a.due_at > a.triggered_at
