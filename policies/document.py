"""The policy file format: one processing record (EUDPR Art. 31(1)(a)-(g)) and its retention rules.

A policy file is YAML, read with a safe loader and validated by `PolicyDocument`; its JSON Schema
is `policy_json_schema()` (`lethe policies schema`). Unknown keys are refused, so a misspelt field
is an error rather than a silently ignored rule. Excerpt:

    format: lethe.policy/1
    reference: DPR-EC-01488
    rules:
      - id: non-selected-candidates
        applies_to: {subject_categories: [candidate], outcomes: [not_selected]}
        trigger: {kind: event, event: call.closed}
        offset: P1Y
        timezone: Europe/Brussels
        direction: max
        action: {kind: delete}
        mandate: "Data of non-selected candidates … is stored for 1 year after …"
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from policies.calendar import (
    CalendarDuration,
    Convention,
    add_duration,
    add_months,
    shipped_calendars,
    zone,
)
from records.types import MAX_INSTANT, MAX_PERIOD_YEARS

FORMAT = "lethe.policy/1"
REFERENCE_PATTERN = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+(\.[0-9]+)?$"
KEY_PATTERN = r"^[a-z][a-z0-9_]*$"
CROSS_REFERENCE_SEPARATOR = " | "
EVENT_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"

Key = Annotated[str, Field(pattern=KEY_PATTERN, max_length=64)]
Reference = Annotated[str, Field(pattern=REFERENCE_PATTERN, max_length=64)]
EventType = Annotated[str, Field(pattern=EVENT_PATTERN, max_length=100)]


def _duration(value: Any) -> CalendarDuration:
    if isinstance(value, CalendarDuration):
        return value
    if not isinstance(value, str):
        raise ValueError("a duration is an ISO 8601 string such as P1Y")
    return CalendarDuration.parse(value)


# The latest day an accepted instant can fall on, and that day plus the longest period: a rule
# whose period runs past it from there could not compute its due date (or would compute one that
# every later calculation refuses), so the file is refused at load, not each record at ingest.
_LATEST_START = MAX_INSTANT.date()
_LATEST_END = add_months(_LATEST_START, MAX_PERIOD_YEARS * 12)


def _bounded(value: CalendarDuration) -> CalendarDuration:
    # Counted before any date arithmetic: P9999999999D must not overflow on the way to the check.
    too_long = (
        value.total_months > MAX_PERIOD_YEARS * 12
        or value.total_days > (_LATEST_END - _LATEST_START).days
        or add_duration(_LATEST_START, value) > _LATEST_END
    )
    if too_long:
        raise ValueError(f"a period is at most {MAX_PERIOD_YEARS} years (P{MAX_PERIOD_YEARS}Y)")
    return value


Duration = Annotated[
    CalendarDuration,
    BeforeValidator(_duration),
    AfterValidator(_bounded),
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?$",
            "description": (
                "ISO 8601 calendar duration (years, months, weeks, days), e.g. P1Y; "
                f"at most {MAX_PERIOD_YEARS} years"
            ),
            "examples": ["P1Y", "P13M", "P2Y", "P0D"],
        }
    ),
]


def _timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a time zone is an IANA name such as Europe/Brussels")
    zone(value)
    return value


TimeZoneName = Annotated[
    str,
    BeforeValidator(_timezone),
    WithJsonSchema({"type": "string", "description": "IANA time zone, e.g. Europe/Brussels"}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    # Fields added to `lethe.policy/1` after files were loaded under it: left out of the content
    # hash while unused, so that an unchanged file keeps its hash (no new version, no rule-change
    # pause of the purge) after an upgrade. See `canonical_dict`.
    LATE_FIELDS: ClassVar[frozenset[str]] = frozenset()


class Party(_Strict):
    """A controller, DPO, processor or authority; contacts are functional mailboxes."""

    name: str = Field(min_length=1)
    entity: str | None = None
    contact: str | None = None
    role: str | None = None


def _calendar_name(value: Any) -> str:
    if not isinstance(value, str) or value not in shipped_calendars():
        known = ", ".join(shipped_calendars())
        raise ValueError(f"unknown calendar {value!r}; shipped calendars: {known}")
    return value


CalendarName = Annotated[
    str,
    BeforeValidator(_calendar_name),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A calendar shipped in policies/calendars/, e.g. european-commission",
            "examples": ["european-commission"],
        }
    ),
]


class Controller(Party):
    """A controller; `calendar` names its working-day calendar (public holidays), the one its
    data-subject request deadlines roll on (Reg. 1182/71 Art. 3(4))."""

    LATE_FIELDS: ClassVar[frozenset[str]] = frozenset({"calendar"})

    calendar: CalendarName | None = Field(
        None, description="Shipped holiday calendar of the controller, e.g. european-commission."
    )


class Service(_Strict):
    """A tool or service the processing runs on that is the controller's institution's own
    (e.g. the Commission's EUSurvey and Europa Analytics for a Commission record). Not a
    processor under EUDPR Art. 29: an organisation processing on the controller's behalf goes
    under `processors`."""

    name: str = Field(min_length=1)
    operator: str = Field(min_length=1, description="Who runs it, e.g. European Commission.")
    role: str | None = None
    mandate: str | None = Field(None, description="The sentence of the statement naming it.")


class LegalBasis(_Strict):
    key: Key
    article: str = Field(min_length=1, description="The provision, e.g. EUDPR Art. 5(1)(a).")
    description: str | None = None
    dpv: str | None = Field(None, description="DPV term, e.g. dpv:PublicInterest.")


class Purpose(_Strict):
    key: Key
    description: str = Field(min_length=1)


class SubjectCategory(_Strict):
    key: Key
    description: str = Field(min_length=1)


class DataCategory(_Strict):
    LATE_FIELDS: ClassVar[frozenset[str]] = frozenset({"ground", "ground_note"})

    key: Key
    description: str = Field(min_length=1)
    special: bool = False
    special_ground: str | None = Field(
        None,
        description=(
            "EUDPR Art. 10(2) / GDPR Art. 9(2) ground as the statement gives it; required when "
            "special, unless `ground: unstated`."
        ),
    )
    ground: Literal["stated", "unstated"] | None = Field(
        None,
        description=(
            "`unstated`: the statement gives no Art. 10(2) ground for this special category. "
            "None is invented; the gap is flagged to the DPO. Default for a special category "
            "with special_ground: stated."
        ),
    )
    ground_note: str | None = Field(
        None, description="Why the ground is unstated, quoting the statement."
    )
    pd: list[Annotated[str, Field(pattern=r"^pd:[A-Z][A-Za-z]+$")]] = Field(
        default_factory=list, description="DPV-PD 2.x terms, e.g. pd:Name, pd:BirthDate."
    )
    source: str | None = None

    @model_validator(mode="after")
    def _special_needs_ground(self) -> DataCategory:
        if not self.special:
            if self.ground is not None or self.special_ground or self.ground_note:
                raise ValueError(
                    "special_ground, ground and ground_note are for special categories only"
                )
            return self
        if self.ground == "unstated":
            if self.special_ground:
                raise ValueError("a ground marked unstated takes no special_ground")
            return self
        if not self.special_ground:
            raise ValueError(
                "a special category needs special_ground (EUDPR Art. 10(2)), or `ground: "
                "unstated` when the statement gives none (never an invented ground)"
            )
        return self

    @property
    def ground_unstated(self) -> bool:
        return self.special and self.ground == "unstated"


class Recipient(_Strict):
    key: Key
    description: str = Field(min_length=1)
    kind: Literal["internal", "institution", "processor", "third_party"] = "internal"
    data_categories: list[Key] = Field(default_factory=list)
    subject_outcomes: list[Key] = Field(default_factory=list)


class Transfer(_Strict):
    recipient: str
    country: str
    safeguard: str


class RelatedRecord(_Strict):
    reference: Reference
    title: str | None = None
    relation: Literal["handover", "retention", "separate_processing", "see_also"] = "see_also"
    description: str | None = None


class Rights(_Strict):
    """Which data-subject rights apply (EUDPR Arts 17-24). Portability needs consent or contract:
    under Art. 22(3) it does not apply to Art. 5(1)(a) processing."""

    access: bool = True
    rectification: bool = True
    erasure: bool = True
    restriction: bool = True
    objection: bool = True
    portability: bool = False
    notes: str | None = None


class TriggerKind(enum.StrEnum):
    event = "event"
    field = "field"
    sliding = "sliding"


class Trigger(_Strict):
    """When the period starts.

    - `event`: the latest-recorded business event of type `event` (a correction is a newer
      event); `match: context` requires the event's context to equal the record's context.
    - `field`: the record's `collected_at` or a named datetime attribute.
    - `sliding`: the latest of `field` and every `reset_events` event (inactivity periods).
    """

    kind: TriggerKind
    event: EventType | None = None
    field: Key | None = None
    reset_events: list[EventType] = Field(default_factory=list)
    match: Literal["context", "any"] = "context"

    @model_validator(mode="after")
    def _consistent(self) -> Trigger:
        if self.kind is TriggerKind.event:
            if not self.event:
                raise ValueError("an event trigger names its event (e.g. call.closed)")
            if self.field or self.reset_events:
                raise ValueError("an event trigger takes no field or reset_events")
        elif self.kind is TriggerKind.field:
            if not self.field:
                raise ValueError("a field trigger names its field (e.g. collected_at)")
            if self.event or self.reset_events:
                raise ValueError("a field trigger takes no event or reset_events")
        else:
            if not self.reset_events:
                raise ValueError("a sliding trigger lists the reset_events that restart it")
            if self.event:
                raise ValueError("a sliding trigger takes reset_events, not event")
        return self

    @property
    def base_field(self) -> str:
        return self.field or "collected_at"

    def describe(self) -> str:
        if self.kind is TriggerKind.event:
            return f"event {self.event}"
        if self.kind is TriggerKind.field:
            return f"field {self.field}"
        return f"latest of {self.base_field} and {', '.join(self.reset_events)}"


class ActionKind(enum.StrEnum):
    delete = "delete"
    anonymise = "anonymise"
    review = "review"
    handover = "handover"


class Action(_Strict):
    kind: ActionKind
    handover_to: Reference | None = None

    @model_validator(mode="after")
    def _handover_target(self) -> Action:
        if self.kind is ActionKind.handover and not self.handover_to:
            raise ValueError("a handover names the record it hands over to (handover_to)")
        if self.kind is not ActionKind.handover and self.handover_to:
            raise ValueError("handover_to is only for action kind handover")
        return self


class Direction(enum.StrEnum):
    max = "max"  # storage limitation: act by the due date
    min = "min"  # an obligation to keep until the due date


class AppliesTo(_Strict):
    """Which data a rule governs. An empty list means any value; every listed dimension must match.

    `policies` lets a rule of one record bind data governed by another (a minimum obligation);
    empty means the record's own data.
    """

    subject_categories: list[Key] = Field(default_factory=list)
    data_categories: list[Key] = Field(default_factory=list)
    outcomes: list[Key] = Field(default_factory=list)
    sources: list[Key] = Field(default_factory=list)
    contexts: list[str] = Field(default_factory=list)
    policies: list[Reference] = Field(default_factory=list)

    def specificity(self) -> tuple[int, int]:
        """More constrained dimensions first, then fewer alternatives (higher is more specific)."""
        dims = [self.subject_categories, self.data_categories, self.outcomes, self.sources]
        dims.append(self.contexts)
        constrained = [d for d in dims if d]
        return (len(constrained), -sum(len(d) for d in constrained))


class RetentionRule(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)]
    applies_to: AppliesTo
    trigger: Trigger
    offset: Duration
    timezone: TimeZoneName = "Europe/Brussels"
    convention: Convention = Convention.regulation_1182_71
    direction: Direction = Direction.max
    action: Action
    enforced_by: Literal["lethe", "external"] = "lethe"
    mandate: str = Field(
        min_length=10, description="The sentence of the privacy statement this rule encodes."
    )
    notes: str | None = None
    review_if_untriggered_after: Duration | None = Field(
        None, description="Alarm if the trigger has not fired this long after collection."
    )
    restrict_processing: bool = Field(
        False, description="Storage only until the action: the data is not processed further."
    )


class DpoFlag(_Strict):
    """A gap in the record that the DPO must look at (nothing is filled in by guessing)."""

    code: Literal["special_category_ground_unstated"]
    field: str = Field(description="Where in the file, e.g. data_categories.special_needs_health.")
    detail: str


class PolicyDocument(_Strict):
    """One processing record: EUDPR Art. 31(1)(a)-(g), its legal basis, rights and rules."""

    LATE_FIELDS: ClassVar[frozenset[str]] = frozenset({"services"})

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        json_schema_extra={
            "$id": "https://lethe.dev/schemas/policy-1.json",
            "title": "Lethe processing record (policy file)",
        },
    )

    format: Literal["lethe.policy/1"] = "lethe.policy/1"
    reference: Reference
    title: str = Field(min_length=1)
    description: str | None = None
    # (a) controller, joint controllers, DPO
    controller: Controller
    joint_controllers: list[Controller] = Field(default_factory=list)
    dpo: Party
    supervisory_authority: Party | None = None
    processors: list[Party] = Field(default_factory=list)
    services: list[Service] = Field(
        default_factory=list,
        description="The controller's institution's own services (not processors).",
    )
    legal_basis: list[LegalBasis] = Field(min_length=1)
    # (b) purposes
    purposes: list[Purpose] = Field(min_length=1)
    # (c) data subjects and personal data
    subject_categories: list[SubjectCategory] = Field(min_length=1)
    data_categories: list[DataCategory] = Field(min_length=1)
    # (d) recipients, (e) transfers
    recipients: list[Recipient] = Field(default_factory=list)
    transfers: list[Transfer] = Field(default_factory=list)
    # (f) time limits for erasure
    rules: list[RetentionRule] = Field(default_factory=list)
    # (g) security measures
    security_measures: list[str] = Field(default_factory=list)
    related_records: list[RelatedRecord] = Field(default_factory=list)
    rights: Rights = Field(default_factory=Rights)
    outcomes: list[Key] = Field(default_factory=list, description="Outcome values rules use.")
    events: list[EventType] = Field(default_factory=list, description="Event types rules use.")

    @model_validator(mode="after")
    def _cross_references(self) -> PolicyDocument:
        problems = cross_reference_problems(self)
        if problems:
            raise ValueError(
                CROSS_REFERENCE_SEPARATOR.join(f"@{path}: {why}" for path, why in problems)
            )
        return self

    def data_category(self, key: str) -> DataCategory | None:
        return next((d for d in self.data_categories if d.key == key), None)

    def dpo_flags(self) -> list[DpoFlag]:
        """Gaps the statement leaves that the DPO must resolve, e.g. a special category whose
        Art. 10(2) ground the statement does not give (`ground: unstated`)."""
        return [
            DpoFlag(
                code="special_category_ground_unstated",
                field=f"data_categories.{d.key}",
                detail=(
                    f"special category {d.key} has no EUDPR Art. 10(2) ground in the statement; "
                    "none is assumed"
                ),
            )
            for d in self.data_categories
            if d.ground_unstated
        ]

    def canonical_dict(self) -> dict[str, Any]:
        """The JSON form whose hash is the version's content hash: `model_dump(mode="json")`
        without late fields (`LATE_FIELDS`) left at their defaults."""
        data = self.model_dump(mode="json")
        _prune_late_fields(self, data)
        return data

    def referenced_records(self) -> list[str]:
        """Other processing records this one names (related records and handover targets)."""
        refs = [r.reference for r in self.related_records]
        for rule in self.rules:
            if rule.action.handover_to:
                refs.append(rule.action.handover_to)
            refs.extend(rule.applies_to.policies)
        seen: dict[str, None] = {}
        for ref in refs:
            if ref != self.reference:
                seen.setdefault(ref, None)
        return list(seen)


def _prune_late_fields(model: BaseModel, data: dict[str, Any]) -> None:
    late: frozenset[str] = getattr(type(model), "LATE_FIELDS", frozenset())
    for name, info in type(model).model_fields.items():
        if name not in data:
            continue
        value = getattr(model, name)
        if name in late and value == info.get_default(call_default_factory=True):
            del data[name]
        elif isinstance(value, BaseModel):
            _prune_late_fields(value, data[name])
        elif isinstance(value, list):
            for item, dumped in zip(value, data[name], strict=True):
                if isinstance(item, BaseModel):
                    _prune_late_fields(item, dumped)


def cross_reference_problems(doc: PolicyDocument) -> list[tuple[str, str]]:
    """Keys that must be unique and names rules use that the document must declare."""
    problems: list[tuple[str, str]] = []
    for name, items in (
        ("legal_basis", [b.key for b in doc.legal_basis]),
        ("purposes", [p.key for p in doc.purposes]),
        ("subject_categories", [s.key for s in doc.subject_categories]),
        ("data_categories", [d.key for d in doc.data_categories]),
        ("recipients", [r.key for r in doc.recipients]),
        ("rules", [r.id for r in doc.rules]),
    ):
        for i, key in enumerate(items):
            if key in items[:i]:
                problems.append((f"{name}.{i}", f"duplicate {key}"))
    subjects = {s.key for s in doc.subject_categories}
    data = {d.key for d in doc.data_categories}
    outcomes = set(doc.outcomes)
    events = set(doc.events)
    for i, rule in enumerate(doc.rules):
        where = f"rules.{i}.applies_to"
        if not rule.applies_to.policies or doc.reference in rule.applies_to.policies:
            for key in rule.applies_to.subject_categories:
                if key not in subjects:
                    problems.append((f"{where}.subject_categories", f"unknown category {key}"))
            for key in rule.applies_to.data_categories:
                if key not in data:
                    problems.append((f"{where}.data_categories", f"unknown category {key}"))
            for key in rule.applies_to.outcomes:
                if outcomes and key not in outcomes:
                    problems.append((f"{where}.outcomes", f"{key} is not listed in outcomes"))
        used = [rule.trigger.event] if rule.trigger.event else []
        for ev in used + rule.trigger.reset_events:
            if events and ev not in events:
                problems.append((f"rules.{i}.trigger", f"event {ev} is not listed in events"))
    for i, rule in enumerate(doc.rules):
        if rule.action.handover_to == doc.reference:
            problems.append(
                (f"rules.{i}.action.handover_to", "a record cannot hand over to itself")
            )
    for i, recipient in enumerate(doc.recipients):
        for key in recipient.data_categories:
            if key not in data:
                problems.append((f"recipients.{i}.data_categories", f"unknown category {key}"))
    return problems


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the policy file format."""
    schema = PolicyDocument.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


_REF_RE = re.compile(REFERENCE_PATTERN)


def is_reference(text: str) -> bool:
    return bool(_REF_RE.match(text))
