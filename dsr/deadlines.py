"""Request deadlines on the institution's calendar (EUDPR Art. 14(3), GDPR Art. 12(3)).

The arithmetic (Reg. 1182/71 month addition, working-day roll) is `policies.calendar`'s; this
module only holds the institution's calendar: its time zone and its holidays. With no holidays
configured, the calendar is the European Commission's (shipped in `policies/calendars/`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from policies import calendar

DUE_SOON_DAYS = 7


@dataclass(frozen=True)
class InstitutionCalendar:
    tz: str = "Europe/Brussels"
    holidays: frozenset[date] = field(default_factory=frozenset)

    def due(self, received_at: datetime, *, months: int = 1) -> datetime:
        """`months` months from receipt; the day of receipt does not count; rolled forward."""
        return calendar.one_month_from_receipt(
            received_at, tz=self.tz, holidays=self.holidays, months=months
        )

    def extended(
        self, received_at: datetime, original_due_at: datetime, *, months: int
    ) -> datetime:
        """The deadline extended by `months`: the earlier of `1 + months` months from receipt
        and `months` months from the end of the original deadline."""
        return calendar.extended_deadline(
            received_at, original_due_at, months=months, tz=self.tz, holidays=self.holidays
        )


def load_holidays(holidays: Iterable[date], holidays_file: Path | None) -> frozenset[date]:
    """The configured dates plus one ISO date a line from `holidays_file` (`#` comments).

    Nothing configured at all: the European Commission's public holidays for its staff in
    Brussels (`policies/calendars/european-commission.txt`), the calendar of the shipped
    registry's controller. Configuring either setting replaces it entirely.
    """
    days = set(holidays)
    if holidays_file is None and not days:
        return calendar.shipped_holidays(calendar.DEFAULT_INSTITUTION_CALENDAR)
    if holidays_file is not None:
        days |= calendar.parse_holidays(
            holidays_file.read_text(encoding="utf-8"), source="holidays file"
        )
    return frozenset(days)
