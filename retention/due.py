"""Due dates: the policy evaluation applied to stored records.

`Evaluator` caches, for one unit of work, the policy versions, the known events per context
and the decisions themselves (a decision depends on the record's dimensions and, only when a
matching rule is triggered by a field, on `collected_at`), so bulk ingest and event
recomputation evaluate each distinct case once. `recompute_for_event` walks the records an
event can trigger in keyset batches and writes only the due fields that changed.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select
from sqlmodel import Session, col

from policies import service as policies
from policies.calendar import Convention
from policies.document import PolicyDocument, TriggerKind
from policies.errors import PolicyNotFoundError
from policies.evaluate import Decision, KnownEvent, PolicyVersion, evaluate, matches
from records import service as records
from records.errors import InvalidInputError
from records.models import RULE_RESTRICTION_GROUND, BusinessEvent, PersonalRecord, RecordStatus

DEFAULT_BATCH = 1000

_DecisionKey = tuple[str, int, str, str | None, str | None, str | None, str | None, bool, Any]


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class UnknownPolicyError(InvalidInputError):
    code = "unknown-policy"
    title = "Unknown processing record"


def due_of(decision: Decision) -> records.Due:
    return records.Due(
        due_at=decision.due_at,
        rule_id=decision.rule_id,
        rule_version=decision.rule_version,
        action=decision.action,
        handover_to=decision.handover_to,
        restricted=decision.restricted,
    )


def _known(event: BusinessEvent) -> KnownEvent:
    return KnownEvent(
        type=event.type,
        context=event.context,
        occurred_at=event.occurred_at,
        recorded_at=event.recorded_at,
    )


def _trigger_types(document: PolicyDocument, *, match: str | None = None) -> set[str]:
    found: set[str] = set()
    for rule in document.rules:
        trigger = rule.trigger
        if match is not None and trigger.match != match:
            continue
        if trigger.event:
            found.add(trigger.event)
        found.update(trigger.reset_events)
    return found


class RecordFacts(Protocol):
    """What a record's rule is decided on: a stored record, a row of one, or an ingest body."""

    @property
    def policy(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def subject_category(self) -> str | None: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def context(self) -> str | None: ...
    @property
    def collected_at(self) -> datetime: ...


class Evaluator:
    """Decisions for records, with every input read once per unit of work."""

    def __init__(self, session: Session, *, now: datetime) -> None:
        self.session = session
        self.now = now
        self._versions: dict[tuple[str, int | None], tuple[int, PolicyDocument]] = {}
        self._current: list[tuple[int, PolicyDocument]] | None = None
        self._events: dict[str | None, list[KnownEvent]] = {}
        self._any_events: list[KnownEvent] | None = None
        self._decisions: dict[_DecisionKey, tuple[Decision, records.Due]] = {}
        self._needs_collected_at: dict[tuple[Any, ...], tuple[str, ...] | None] = {}

    # --- inputs ------------------------------------------------------------------------------

    def policy(self, reference: str, version: int | None = None) -> tuple[int, PolicyDocument]:
        """The version to evaluate under: `version` if given, else the current one."""
        key = (reference, version)
        found = self._versions.get(key)
        if found is None:
            try:
                if version is None:
                    row, document = policies.current(self.session, reference)
                else:
                    row, document = policies.get_version(self.session, reference, version)
            except PolicyNotFoundError as exc:
                raise UnknownPolicyError(
                    f"policy: no processing record {reference} in the registry"
                ) from exc
            found = (row.version, document)
            self._versions[key] = found
        return found

    def current_documents(self) -> list[tuple[int, PolicyDocument]]:
        if self._current is None:
            self._current = [
                (row.version, doc) for row, doc in policies.current_documents(self.session)
            ]
        return self._current

    def obligations(self, reference: str) -> list[PolicyVersion]:
        """Other records' rules that name `reference` (minimum obligations across records)."""
        return [
            PolicyVersion(document=doc, version=version)
            for version, doc in self.current_documents()
            if doc.reference != reference
            and any(reference in rule.applies_to.policies for rule in doc.rules)
        ]

    def _any_types(self) -> set[str]:
        types: set[str] = set()
        for _, doc in self.current_documents():
            types |= _trigger_types(doc, match="any")
        return types

    def events(self, context: str | None) -> list[KnownEvent]:
        """Events of the record's context, plus the deciding events of `match: any` triggers."""
        found = self._events.get(context)
        if found is None:
            found = []
            if context is not None:
                found = [
                    _known(e)
                    for e in self.session.scalars(
                        select(BusinessEvent).where(col(BusinessEvent.context) == context)
                    )
                ]
            self._events[context] = found
        if self._any_events is None:
            self._any_events = []
            for event_type in sorted(self._any_types()):
                # An event trigger takes the latest recorded; a sliding one the latest occurred.
                base = select(BusinessEvent).where(col(BusinessEvent.type) == event_type)
                for order in (col(BusinessEvent.recorded_at), col(BusinessEvent.occurred_at)):
                    hit = self.session.scalars(base.order_by(order.desc()).limit(1)).first()
                    if hit is not None:
                        self._any_events.append(_known(hit))
        return found + self._any_events

    def trim(self, limit: int) -> None:
        if len(self._decisions) > limit:
            self._decisions.clear()
        if len(self._needs_collected_at) > limit:
            self._needs_collected_at.clear()

    def forget_events(self) -> None:
        self._events.clear()
        self._any_events = None
        self._decisions.clear()

    # --- decisions ---------------------------------------------------------------------------

    def _collected_at_key(
        self,
        document: PolicyDocument,
        version: int,
        dims: tuple[Any, ...],
        *,
        with_alarm: bool,
    ) -> tuple[str, ...] | None:
        """How the decision depends on `collected_at`: None (not at all), () (on the instant),
        or the time zones whose local date is all that matters.

        Under the Reg. 1182/71 convention a period ends at the end of a local day, so records
        collected on the same local day share their due date (and the decision cache entry)."""
        key = (document.reference, version, with_alarm, *dims)
        if key in self._needs_collected_at:
            cached: tuple[str, ...] | None = self._needs_collected_at[key]
            return cached
        category, subject_category, outcome, source, context = dims
        rules = list(document.rules)
        for other in self.obligations(document.reference):
            rules += [
                r for r in other.document.rules if document.reference in r.applies_to.policies
            ]
        zones: set[str] = set()
        exact = False
        for rule in rules:
            if not matches(
                rule.applies_to,
                category=category,
                subject_category=subject_category,
                outcome=outcome,
                source=source,
                context=context,
            ):
                continue
            uses_field = rule.trigger.kind in (TriggerKind.field, TriggerKind.sliding)
            if with_alarm and rule.review_if_untriggered_after is not None:
                exact = True
            if uses_field:
                if rule.convention is Convention.regulation_1182_71:
                    zones.add(rule.timezone)
                else:
                    exact = True
        if with_alarm and zones:
            exact = True  # the full decision also reports the trigger instant
        result: tuple[str, ...] | None = () if exact else (tuple(sorted(zones)) or None)
        self._needs_collected_at[key] = result
        return result

    def decide(
        self,
        *,
        policy: str,
        policy_version: int | None = None,
        category: str,
        subject_category: str | None,
        outcome: str | None,
        source: str | None,
        context: str | None,
        collected_at: datetime,
    ) -> tuple[int, Decision]:
        """The full decision (its `untriggered_alarm_at` included) for one record."""
        version, decision, _ = self._decide(
            policy=policy,
            policy_version=policy_version,
            category=category,
            subject_category=subject_category,
            outcome=outcome,
            source=source,
            context=context,
            collected_at=collected_at,
            with_alarm=True,
        )
        return version, decision

    def decide_due(
        self,
        *,
        policy: str,
        policy_version: int | None = None,
        category: str,
        subject_category: str | None,
        outcome: str | None,
        source: str | None,
        context: str | None,
        collected_at: datetime,
    ) -> tuple[int, records.Due]:
        """Only the stored due fields: shared by every record with the same dimensions unless a
        matching rule is triggered by a field (bulk ingest and event recomputation use this)."""
        version, _, due = self._decide(
            policy=policy,
            policy_version=policy_version,
            category=category,
            subject_category=subject_category,
            outcome=outcome,
            source=source,
            context=context,
            collected_at=collected_at,
            with_alarm=False,
        )
        return version, due

    def decide_record(
        self, record: RecordFacts, *, policy_version: int | None = None
    ) -> tuple[int, records.Due]:
        """The due fields of one record (its rule, due date, action and whether the rule
        restricts it), under `policy_version` (a stored record keeps the version it was stored
        under) or the current version; ingest, event recomputation and dsr all ask this.
        `UnknownPolicyError` when the processing record is not in the registry."""
        return self.decide_due(
            policy=record.policy,
            policy_version=policy_version,
            category=record.category,
            subject_category=record.subject_category,
            outcome=record.outcome,
            source=record.source,
            context=record.context,
            collected_at=record.collected_at,
        )

    def _decide(
        self,
        *,
        policy: str,
        policy_version: int | None,
        category: str,
        subject_category: str | None,
        outcome: str | None,
        source: str | None,
        context: str | None,
        collected_at: datetime,
        with_alarm: bool,
    ) -> tuple[int, Decision, records.Due]:
        version, document = self.policy(policy, policy_version)
        dims = (category, subject_category, outcome, source, context)
        how = self._collected_at_key(document, version, dims, with_alarm=with_alarm)
        moment: Any = None
        if how == ():
            moment = collected_at
        elif how is not None:
            moment = tuple(collected_at.astimezone(_zone(tz)).date() for tz in how)
        key: _DecisionKey = (policy, version, *dims, with_alarm, moment)
        cached = self._decisions.get(key)
        if cached is None:
            decision = evaluate(
                document,
                version=version,
                category=category,
                subject_category=subject_category,
                outcome=outcome,
                source=source,
                context=context,
                collected_at=collected_at,
                fields={},
                events=self.events(context),
                now=self.now,
                obligations=self.obligations(policy),
            )
            cached = self._decisions[key] = (decision, due_of(decision))
        return version, cached[0], cached[1]


# --- recomputation on an event -------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Records of `policy` an event can trigger; `context` None means every context."""

    policy: str
    context: str | None


def scopes_for_event(evaluator: Evaluator, event: BusinessEvent) -> list[Scope]:
    by_policy: dict[str, str | None] = {}
    any_context: set[str] = set()
    for _, doc in evaluator.current_documents():
        for rule in doc.rules:
            trigger = rule.trigger
            if event.type != trigger.event and event.type not in trigger.reset_events:
                continue
            governed = rule.applies_to.policies or [doc.reference]
            for reference in governed:
                if trigger.match == "any":
                    any_context.add(reference)
                else:
                    by_policy[reference] = event.context
    for reference in any_context:
        by_policy[reference] = None
    return [Scope(policy=p, context=c) for p, c in sorted(by_policy.items())]


_COLUMNS = (
    col(PersonalRecord.id),
    col(PersonalRecord.policy),
    col(PersonalRecord.policy_version),
    col(PersonalRecord.category),
    col(PersonalRecord.subject_category),
    col(PersonalRecord.outcome),
    col(PersonalRecord.source),
    col(PersonalRecord.context),
    col(PersonalRecord.collected_at),
    col(PersonalRecord.due_at),
    col(PersonalRecord.rule_id),
    col(PersonalRecord.rule_version),
    col(PersonalRecord.action),
    col(PersonalRecord.handover_to),
    col(PersonalRecord.restriction_ground),
)


def _scope_batches(session: Session, scope: Scope, batch_size: int) -> Iterator[list[Any]]:
    last: uuid.UUID | None = None
    while True:
        conditions = [
            col(PersonalRecord.policy) == scope.policy,
            col(PersonalRecord.status) == RecordStatus.active.value,
        ]
        if scope.context is not None:
            conditions.append(col(PersonalRecord.context) == scope.context)
        if last is not None:
            conditions.append(col(PersonalRecord.id) > last)
        stmt = select(*_COLUMNS).where(and_(*conditions)).order_by(col(PersonalRecord.id))
        rows = list(session.execute(stmt.limit(batch_size)).all())
        if not rows:
            return
        yield rows
        last = rows[-1].id
        if len(rows) < batch_size:
            return


def recompute_for_event(
    session: Session, *, event: BusinessEvent, now: datetime, batch_size: int = DEFAULT_BATCH
) -> int:
    """Re-evaluate every active record `event` can trigger; returns how many due fields changed.

    Records are read as plain rows `batch_size` at a time (keyset on id) and written back with
    one executemany per batch: memory stays flat for an event touching millions of records.
    Each record keeps the policy version it was stored under (a rule change is a separate,
    explicit recomputation).
    """
    evaluator = Evaluator(session, now=now)
    changed = 0
    for scope in scopes_for_event(evaluator, event):
        for rows in _scope_batches(session, scope, batch_size):
            updates: list[tuple[uuid.UUID, records.Due]] = []
            for row in rows:
                _, due = evaluator.decide_record(row, policy_version=row.policy_version)
                before = records.Due(
                    due_at=row.due_at,
                    rule_id=row.rule_id,
                    rule_version=row.rule_version,
                    action=row.action,
                    handover_to=row.handover_to,
                    # A restriction the subject asked for hides the rule's: rewriting the row
                    # then is harmless (`set_due_many` keeps the subject's ground).
                    restricted=row.restriction_ground == RULE_RESTRICTION_GROUND,
                )
                if due != before:
                    updates.append((row.id, due))
            changed += records.set_due_many(session, updates, now=now)
    return changed
