"""Which retention rule binds a personal-data record, and when it falls due. Pure: no database.

The retention engine calls `evaluate` when a record is stored, when an event arrives for its
context, and when a rule changes; it stores `due_at`, `rule_id` and `rule_version`.

Resolution (DESIGN §5 rule 2):
1. A rule matches when every dimension it lists (subject category, data category, outcome,
   source, context) holds the record's value; an empty list matches anything.
2. Among maximums the most specific wins (more constrained dimensions, then fewer
   alternatives), then the earliest due; an untriggered rule counts as due never.
3. Minimums — this record's or another record's rules naming this one in
   `applies_to.policies` — win over maximums: the maximum's action waits for the latest minimum,
   and a minimum that has not started yet keeps the data (no due date).

Triggers: an `event` trigger takes the most recently *recorded* matching event (so a correction,
which is a newer event, replaces the original even if it moves the date back); events recorded
after `now` are not yet known. A `field` trigger reads `collected_at` or `fields[name]`. A
`sliding` trigger starts at the latest of its field and its reset events. A trigger whose event
lies in the future still yields a due date: the date is known, only the event is not past.

    >>> decision = evaluate(doc, version=3, category="application", subject_category="candidate",
    ...     outcome="not_selected", source=None, context="EC/2024/CNECT/443651",
    ...     collected_at=t0, fields={}, events=[closed], now=t1)          # doctest: +SKIP
    >>> decision.rule_id, decision.due_at, decision.action                # doctest: +SKIP
    ('non-selected-candidates', datetime(2025, 3, 27, 23, 0, tzinfo=UTC), 'delete')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from policies.calendar import CalendarError, period_end
from policies.document import AppliesTo, Direction, PolicyDocument, RetentionRule, TriggerKind

__all__ = ["Decision", "KnownEvent", "PolicyVersion", "evaluate", "matches"]


@dataclass(frozen=True)
class KnownEvent:
    """A business event as the retention engine knows it. `recorded_at` orders corrections."""

    type: str
    context: str | None
    occurred_at: datetime
    recorded_at: datetime


@dataclass(frozen=True)
class PolicyVersion:
    """Another processing record whose rules may bind this record's data (minimum obligations)."""

    document: PolicyDocument
    version: int


@dataclass(frozen=True)
class Decision:
    """The outcome for one record.

    `action` is `delete`, `anonymise`, `review`, `handover` (to `handover_to`) or `keep` (no rule
    applies, or a minimum obligation has not started). `due_at` is None while untriggered; then
    `untriggered_alarm_at`, if set, is when a DPO must look at it. `enforced_by == "external"`:
    another system acts (e.g. the subject's browser); Lethe only records the date.
    """

    rule_id: str | None
    rule_version: int
    due_at: datetime | None
    action: str
    handover_to: str | None
    direction: str | None
    untriggered_alarm_at: datetime | None
    reason: str
    policy_reference: str | None = None
    triggered_at: datetime | None = None
    enforced_by: str = "lethe"
    restricted: bool = False
    constrained_by: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Candidate:
    rule: RetentionRule
    reference: str
    version: int
    triggered_at: datetime | None
    due_at: datetime | None
    alarm_at: datetime | None
    future: bool

    @property
    def label(self) -> str:
        return f"{self.reference}#{self.rule.id}"


def matches(
    applies_to: AppliesTo,
    *,
    category: str,
    subject_category: str | None,
    outcome: str | None,
    source: str | None,
    context: str | None,
) -> bool:
    for allowed, value in (
        (applies_to.subject_categories, subject_category),
        (applies_to.data_categories, category),
        (applies_to.outcomes, outcome),
        (applies_to.sources, source),
        (applies_to.contexts, context),
    ):
        if allowed and value not in allowed:
            return False
    return True


def _same_context(match: str, event_context: str | None, record_context: str | None) -> bool:
    # A record without a context is never triggered by context: a context-less event must not
    # reach every context-less record.
    return match == "any" or (record_context is not None and event_context == record_context)


def _trigger_instant(
    rule: RetentionRule,
    *,
    context: str | None,
    collected_at: datetime,
    fields: Mapping[str, datetime],
    events: Sequence[KnownEvent],
    now: datetime,
) -> datetime | None:
    trigger = rule.trigger
    known = [e for e in events if e.recorded_at <= now]

    def field_value(name: str) -> datetime | None:
        return collected_at if name == "collected_at" else fields.get(name)

    if trigger.kind is TriggerKind.event:
        hits = [
            e
            for e in known
            if e.type == trigger.event and _same_context(trigger.match, e.context, context)
        ]
        if not hits:
            return None
        latest = max(hits, key=lambda e: (e.recorded_at, e.occurred_at))
        return latest.occurred_at
    if trigger.kind is TriggerKind.field:
        return field_value(trigger.base_field)
    starts = [field_value(trigger.base_field)]
    starts += [
        e.occurred_at
        for e in known
        if e.type in trigger.reset_events and _same_context(trigger.match, e.context, context)
    ]
    present = [s for s in starts if s is not None]
    return max(present) if present else None


def _aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise CalendarError(f"{name} must be timezone-aware")


def evaluate(
    policy: PolicyDocument,
    *,
    version: int,
    category: str,
    subject_category: str | None,
    outcome: str | None,
    source: str | None,
    context: str | None,
    collected_at: datetime,
    fields: Mapping[str, datetime],
    events: Sequence[KnownEvent],
    now: datetime,
    obligations: Sequence[PolicyVersion] = (),
) -> Decision:
    """The binding rule for a record governed by `policy` (at `version`) and its due instant."""
    _aware(collected_at, "collected_at")
    _aware(now, "now")
    for name, value in fields.items():
        _aware(value, f"fields[{name}]")

    sources: list[tuple[RetentionRule, str, int]] = [
        (rule, policy.reference, version)
        for rule in policy.rules
        if not rule.applies_to.policies or policy.reference in rule.applies_to.policies
    ]
    for other in obligations:
        if other.document.reference == policy.reference:
            continue
        sources += [
            (rule, other.document.reference, other.version)
            for rule in other.document.rules
            if policy.reference in rule.applies_to.policies
        ]

    candidates: list[_Candidate] = []
    for rule, reference, rule_version in sources:
        if not matches(
            rule.applies_to,
            category=category,
            subject_category=subject_category,
            outcome=outcome,
            source=source,
            context=context,
        ):
            continue
        start = _trigger_instant(
            rule,
            context=context,
            collected_at=collected_at,
            fields=fields,
            events=events,
            now=now,
        )
        due = (
            period_end(start, rule.offset, tz=rule.timezone, convention=rule.convention)
            if start is not None
            else None
        )
        alarm = None
        if start is None and rule.review_if_untriggered_after is not None:
            alarm = period_end(
                collected_at,
                rule.review_if_untriggered_after,
                tz=rule.timezone,
                convention=rule.convention,
            )
        candidates.append(
            _Candidate(
                rule=rule,
                reference=reference,
                version=rule_version,
                triggered_at=start,
                due_at=due,
                alarm_at=alarm,
                future=start is not None and start > now,
            )
        )

    maxima = [c for c in candidates if c.rule.direction is Direction.max]
    minima = [c for c in candidates if c.rule.direction is Direction.min]

    if not candidates:
        return Decision(
            rule_id=None,
            rule_version=version,
            due_at=None,
            action="keep",
            handover_to=None,
            direction=None,
            untriggered_alarm_at=None,
            reason=f"no rule of {policy.reference} applies to category {category}",
            policy_reference=policy.reference,
        )

    def by_specificity_then_due(c: _Candidate) -> tuple[int, int, int, float]:
        spec = c.rule.applies_to.specificity()
        due = c.due_at.timestamp() if c.due_at is not None else float("inf")
        return (-spec[0], -spec[1], 0 if c.due_at is not None else 1, due)

    binding_max = min(maxima, key=by_specificity_then_due) if maxima else None
    pending_min = [c for c in minima if c.due_at is None]
    latest_min = max(
        (c for c in minima if c.due_at is not None),
        key=lambda c: c.due_at or now,
        default=None,
    )
    mins = tuple(c.label for c in minima)

    if binding_max is None:
        # Only minimums: act when the last of them expires (or keep while one has not started).
        chosen = pending_min[0] if pending_min else latest_min
        assert chosen is not None
        return _decision(chosen, reason=_why(chosen, "minimum obligation"), constrained_by=mins)

    if pending_min:
        blocker = pending_min[0]
        return Decision(
            rule_id=blocker.rule.id,
            rule_version=blocker.version,
            due_at=None,
            action=binding_max.rule.action.kind.value,
            handover_to=binding_max.rule.action.handover_to,
            direction=Direction.min.value,
            untriggered_alarm_at=blocker.alarm_at,
            reason=(
                f"{binding_max.label} is held back by minimum obligation {blocker.label}, "
                f"whose trigger ({blocker.rule.trigger.describe()}) has not fired"
            ),
            policy_reference=blocker.reference,
            triggered_at=None,
            enforced_by=binding_max.rule.enforced_by,
            restricted=binding_max.rule.restrict_processing,
            constrained_by=mins,
        )
    if (
        latest_min is not None
        and binding_max.due_at is not None
        and latest_min.due_at is not None
        and latest_min.due_at > binding_max.due_at
    ):
        return Decision(
            rule_id=latest_min.rule.id,
            rule_version=latest_min.version,
            due_at=latest_min.due_at,
            action=binding_max.rule.action.kind.value,
            handover_to=binding_max.rule.action.handover_to,
            direction=Direction.min.value,
            untriggered_alarm_at=None,
            reason=(
                f"{binding_max.label} would be due earlier, but minimum obligation "
                f"{latest_min.label} keeps the data until its end"
            ),
            policy_reference=latest_min.reference,
            triggered_at=latest_min.triggered_at,
            enforced_by=binding_max.rule.enforced_by,
            restricted=binding_max.rule.restrict_processing,
            constrained_by=mins,
        )
    return _decision(
        binding_max, reason=_why(binding_max, "most specific maximum"), constrained_by=mins
    )


def _why(c: _Candidate, what: str) -> str:
    if c.due_at is None:
        return f"{what} {c.label}: trigger ({c.rule.trigger.describe()}) has not fired yet"
    when = " (trigger in the future)" if c.future else ""
    return f"{what} {c.label}: {c.rule.offset} after {c.rule.trigger.describe()}{when}"


def _decision(c: _Candidate, *, reason: str, constrained_by: tuple[str, ...]) -> Decision:
    return Decision(
        rule_id=c.rule.id,
        rule_version=c.version,
        due_at=c.due_at,
        action=c.rule.action.kind.value,
        handover_to=c.rule.action.handover_to,
        direction=c.rule.direction.value,
        untriggered_alarm_at=c.alarm_at,
        reason=reason,
        policy_reference=c.reference,
        triggered_at=c.triggered_at,
        enforced_by=c.rule.enforced_by,
        restricted=c.rule.restrict_processing,
        constrained_by=constrained_by,
    )
