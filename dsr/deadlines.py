"""Request deadlines on the institution's calendar (EUDPR Art. 14(3), GDPR Art. 12(3)).

The arithmetic (Reg. 1182/71 month addition, working-day roll) is `policies.calendar`'s; this
module only holds the institution's calendar: its time zone and its holidays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from dsr.errors import InvalidRequestError
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


def load_holidays(holidays: Iterable[date], holidays_file: Path | None) -> frozenset[date]:
    """The configured dates plus one ISO date a line from `holidays_file` (`#` comments)."""
    days = set(holidays)
    if holidays_file is not None:
        for number, line in enumerate(holidays_file.read_text().splitlines(), start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                days.add(date.fromisoformat(text))
            except ValueError as exc:
                raise InvalidRequestError(
                    f"holidays file line {number} is not an ISO date (YYYY-MM-DD)"
                ) from exc
    return frozenset(days)
