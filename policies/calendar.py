"""Calendar arithmetic for retention periods and legal deadlines.

A retention period is a *calendar* duration (years, months, weeks, days), never a `timedelta`:
one year after 2024-02-29 is not 365 or 366 days, it is a date in 2025. Two conventions:

- `Convention.regulation_1182_71` (the default; Regulation (EEC, Euratom) No 1182/71, Art. 3):
  the day of the event does not count; the period ends with the expiry of the last hour of the
  day bearing the same date as the day of the event (same weekday for weeks); when that date does
  not exist in the last month, the period ends with that month's last day. The instant returned is
  that expiry: 00:00 local time of the following day, in UTC.

      >>> from datetime import datetime, UTC
      >>> period_end(datetime(2024, 2, 29, 10, tzinfo=UTC), CalendarDuration.parse("P1Y"),
      ...            tz="Europe/Brussels")
      datetime.datetime(2025, 2, 28, 23, 0, tzinfo=datetime.timezone.utc)

- `Convention.anniversary`: the same local wall time on the same (clamped) date.

Local times are resolved strictly in a named IANA zone: a wall time that does not exist (spring
forward) or exists twice (fall back) raises, never guesses. `roll_to_working_day`,
`one_month_from_receipt` and `extended_deadline` serve request deadlines (EUDPR Art. 14(3),
GDPR Art. 12(3)); `shipped_holidays` reads the institution calendars shipped in
`policies/calendars/` (one ISO date a line), e.g. the European Commission's.
"""

from __future__ import annotations

import calendar as _stdcal
import enum
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from records.errors import InvalidInputError

__all__ = [
    "DEFAULT_INSTITUTION_CALENDAR",
    "AmbiguousLocalTimeError",
    "CalendarDuration",
    "CalendarError",
    "Convention",
    "NonexistentLocalTimeError",
    "UnknownTimezoneError",
    "add_duration",
    "add_months",
    "extended_deadline",
    "is_working_day",
    "one_month_from_receipt",
    "parse_holidays",
    "period_end",
    "period_end_date",
    "resolve_local",
    "roll_to_working_day",
    "shipped_calendars",
    "shipped_holidays",
    "zone",
]


class CalendarError(InvalidInputError, ValueError):
    """A calendar value that cannot be used. A ValueError too, so pydantic validators report it."""

    code = "calendar"
    title = "Invalid calendar value"


class NonexistentLocalTimeError(CalendarError):
    code = "nonexistent-local-time"
    title = "Local time does not exist"


class AmbiguousLocalTimeError(CalendarError):
    code = "ambiguous-local-time"
    title = "Local time is ambiguous"


class UnknownTimezoneError(CalendarError):
    code = "unknown-timezone"
    title = "Unknown time zone"


class Convention(enum.StrEnum):
    regulation_1182_71 = "regulation_1182_71"
    anniversary = "anniversary"


_ISO = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?")


@dataclass(frozen=True)
class CalendarDuration:
    """Years, months, weeks and days, kept apart. ISO 8601 text: `P1Y`, `P13M`, `P2W`, `P1Y6M`.

    >>> CalendarDuration.parse("P13M").isoformat()
    'P13M'
    >>> add_duration(date(2024, 1, 31), CalendarDuration(months=1))
    datetime.date(2024, 2, 29)
    """

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        for name in ("years", "months", "weeks", "days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CalendarError(f"duration {name} must be a non-negative integer")

    @classmethod
    def parse(cls, text: str) -> CalendarDuration:
        """Parse the date part of an ISO 8601 duration; times (`PT1H`) and fractions are refused."""
        if not isinstance(text, str):
            raise CalendarError("a duration is an ISO 8601 string such as P1Y")
        match = _ISO.fullmatch(text.strip().upper())
        if match is None or text.strip().upper() == "P":
            raise CalendarError(
                f"{text!r} is not a calendar duration: use ISO 8601 years, months, weeks, "
                "days such as P1Y, P13M, P2W, P30D (no hours)"
            )
        y, m, w, d = (int(g) if g else 0 for g in match.groups())
        return cls(years=y, months=m, weeks=w, days=d)

    def isoformat(self) -> str:
        parts = [
            f"{v}{unit}"
            for v, unit in (
                (self.years, "Y"),
                (self.months, "M"),
                (self.weeks, "W"),
                (self.days, "D"),
            )
            if v
        ]
        return "P" + ("".join(parts) if parts else "0D")

    def __str__(self) -> str:
        return self.isoformat()

    @property
    def total_months(self) -> int:
        return self.years * 12 + self.months

    @property
    def total_days(self) -> int:
        """Days of the week and day part only (months are not days)."""
        return self.weeks * 7 + self.days

    @property
    def is_zero(self) -> bool:
        return self.total_months == 0 and self.total_days == 0


def add_months(d: date, months: int) -> date:
    """`d` plus `months` calendar months; a day past the month's end clamps to its last day."""
    index = d.year * 12 + (d.month - 1) + months
    year, month0 = divmod(index, 12)
    if year < 1 or year > 9999:
        raise CalendarError("date out of range")
    last = _stdcal.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(d.day, last))


def add_duration(d: date, duration: CalendarDuration) -> date:
    """Months and years first, clamped in one step (2024-02-29 + P1Y1M = 2025-03-29), then days."""
    return add_months(d, duration.total_months) + timedelta(days=duration.total_days)


def zone(name: str | ZoneInfo) -> ZoneInfo:
    """The named IANA zone; an unknown name is a clear error, not UTC."""
    if isinstance(name, ZoneInfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezoneError(f"unknown IANA time zone {name!r}") from exc


def resolve_local(wall: datetime, tz: str | ZoneInfo) -> datetime:
    """The aware instant of naive wall time `wall` in `tz`, refusing gaps and overlaps.

    Europe/Brussels: 2025-03-30 02:30 does not exist (clocks jump 02:00 → 03:00);
    2025-10-26 02:30 happens twice (03:00 → 02:00). Both raise.
    """
    if wall.tzinfo is not None:
        raise CalendarError("resolve_local takes a naive wall time")
    zi = zone(tz)
    first = wall.replace(tzinfo=zi, fold=0)
    second = wall.replace(tzinfo=zi, fold=1)
    if first.utcoffset() != second.utcoffset():
        # In a gap, the round trip through UTC changes the wall time; in an overlap it does not.
        if first.astimezone(UTC).astimezone(zi).replace(tzinfo=None) != wall:
            raise NonexistentLocalTimeError(
                f"local time {wall.isoformat()} does not exist in {zi.key} (clocks move forward)"
            )
        raise AmbiguousLocalTimeError(
            f"local time {wall.isoformat()} happens twice in {zi.key} (clocks move back)"
        )
    return first


def _aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise CalendarError(f"{what} must be timezone-aware")
    return at


def period_end_date(start: datetime, duration: CalendarDuration, *, tz: str | ZoneInfo) -> date:
    """The last day of the period (Reg. 1182/71 Art. 3(2)(c)), by the calendar of `tz`."""
    local_day = _aware(start, "start").astimezone(zone(tz)).date()
    return add_duration(local_day, duration)


def is_working_day(d: date, holidays: Collection[date] = ()) -> bool:
    return d.weekday() < 5 and d not in holidays


def roll_to_working_day(d: date, holidays: Collection[date] = ()) -> date:
    """`d` if it is a working day, else the next one (Reg. 1182/71 Art. 3(4))."""
    for _ in range(3660):  # ten years of holidays would be a configuration error
        if is_working_day(d, holidays):
            return d
        d += timedelta(days=1)
    raise CalendarError("no working day found within ten years; check the holiday list")


def period_end(
    start: datetime,
    duration: CalendarDuration,
    *,
    tz: str | ZoneInfo,
    convention: Convention = Convention.regulation_1182_71,
    holidays: Collection[date] | None = None,
) -> datetime:
    """The instant (aware, UTC) at which a period starting at `start` expires.

    Reg. 1182/71: the expiry of the last day, i.e. 00:00 local of the day after; with
    `holidays` given, a last day falling on a weekend or holiday rolls to the next working day.
    Anniversary: the same local wall time on the end date; a wall time that does not exist
    or is ambiguous that day raises.
    """
    zi = zone(tz)
    start = _aware(start, "start")
    if convention is Convention.anniversary:
        local = start.astimezone(zi)
        end_day = add_duration(local.date(), duration)
        if holidays is not None:
            end_day = roll_to_working_day(end_day, holidays)
        wall = datetime.combine(end_day, local.time().replace(tzinfo=None))
        return resolve_local(wall, zi).astimezone(UTC)
    end_day = period_end_date(start, duration, tz=zi)
    if holidays is not None:
        end_day = roll_to_working_day(end_day, holidays)
    return resolve_local(datetime.combine(end_day + timedelta(days=1), time(0)), zi).astimezone(UTC)


ONE_MONTH = CalendarDuration(months=1)


def one_month_from_receipt(
    received_at: datetime,
    *,
    tz: str | ZoneInfo,
    holidays: Collection[date] = (),
    months: int = 1,
) -> datetime:
    """Deadline of a data-subject request: `months` months from receipt under Reg. 1182/71.

    The day of receipt does not count, the month end clamps, and a last day on a weekend or
    holiday rolls to the next working day; the deadline is the expiry of that day (UTC).

    >>> from datetime import datetime, UTC
    >>> one_month_from_receipt(datetime(2025, 1, 31, 9, tzinfo=UTC), tz="Europe/Brussels")
    datetime.datetime(2025, 2, 28, 23, 0, tzinfo=datetime.timezone.utc)
    """
    return period_end(
        received_at,
        CalendarDuration(months=months),
        tz=tz,
        holidays=holidays,
    )


def extended_deadline(
    received_at: datetime,
    original_due_at: datetime,
    *,
    months: int,
    tz: str | ZoneInfo,
    holidays: Collection[date] = (),
) -> datetime:
    """The deadline of a request extended by `months` months (EUDPR Art. 14(3): "extended by two
    further months"): the earlier of `1 + months` months from receipt and `months` months from
    the end of the original deadline, each under Reg. 1182/71 (month ends clamp, the last day
    rolls to the next working day). The earlier one is the one the subject can rely on.

    Month-end clamping is why the two differ: received 31 January 2025, the original deadline
    ends on 28 February; three months from receipt is 30 April, two months from 28 February is
    28 April, so the extended deadline is the end of 28 April.

    >>> from datetime import datetime, UTC
    >>> received = datetime(2025, 1, 31, 9, tzinfo=UTC)
    >>> original = one_month_from_receipt(received, tz="Europe/Brussels")
    >>> extended_deadline(received, original, months=2, tz="Europe/Brussels")
    datetime.datetime(2025, 4, 28, 22, 0, tzinfo=datetime.timezone.utc)
    """
    zi = zone(tz)
    from_receipt = one_month_from_receipt(received_at, tz=zi, holidays=holidays, months=1 + months)
    # The original deadline is the expiry of its last day (00:00 local of the day after); that
    # last day is the "event" of the further period and does not count (Art. 3(1)).
    original_end = _aware(original_due_at, "original_due_at").astimezone(zi)
    last_day = (original_end - timedelta(microseconds=1)).date()
    end_day = roll_to_working_day(add_months(last_day, months), holidays)
    from_original = resolve_local(
        datetime.combine(end_day + timedelta(days=1), time(0)), zi
    ).astimezone(UTC)
    return min(from_receipt, from_original)


# --- institution calendars shipped with Lethe -------------------------------------------------

DEFAULT_INSTITUTION_CALENDAR = "european-commission"
_CALENDARS = Path(__file__).resolve().parent / "calendars"
_CALENDAR_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def parse_holidays(text: str, *, source: str) -> frozenset[date]:
    """One ISO date (YYYY-MM-DD) a line; `#` starts a comment; blank lines are skipped."""
    days: set[date] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        try:
            days.add(date.fromisoformat(value))
        except ValueError as exc:
            raise CalendarError(f"{source} line {number} is not an ISO date (YYYY-MM-DD)") from exc
    return frozenset(days)


def shipped_calendars() -> list[str]:
    """Names of the calendars in `policies/calendars/` (`european-commission`, …)."""
    return sorted(p.stem for p in _CALENDARS.glob("*.txt"))


def shipped_holidays(name: str) -> frozenset[date]:
    """The holidays of a shipped calendar; an unknown name is a CalendarError.

    >>> date(2025, 4, 18) in shipped_holidays("european-commission")  # Good Friday
    True
    """
    if not _CALENDAR_NAME.match(name) or name not in shipped_calendars():
        raise CalendarError(
            f"unknown calendar {name!r}; shipped: {', '.join(shipped_calendars()) or 'none'}"
        )
    path = _CALENDARS / f"{name}.txt"
    return parse_holidays(path.read_text(encoding="utf-8"), source=path.name)
