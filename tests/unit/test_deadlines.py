"""Request deadlines on the institution's calendar: one month from receipt, the extension rule
(the earlier of 1+n months from receipt and n months from the original deadline's end, each under
Reg. 1182/71) and the European Commission's holidays as the default calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dsr.deadlines import InstitutionCalendar, load_holidays
from policies.calendar import extended_deadline, one_month_from_receipt, shipped_holidays
from records.errors import InvalidInputError

TZ = "Europe/Brussels"
NO_HOLIDAYS = InstitutionCalendar(tz=TZ)
COMMISSION = InstitutionCalendar(tz=TZ, holidays=shipped_holidays("european-commission"))


def end_of(day: date) -> datetime:
    """The instant a deadline on `day` expires: 00:00 Brussels time of the next day, in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), ZoneInfo(TZ)).astimezone(UTC)


def extend(cal: InstitutionCalendar, received: datetime, months: int) -> datetime:
    return cal.extended(received, cal.due(received), months=months)


# --- the extension: the earlier of the two periods -------------------------------------------


def test_received_31_january_extended_by_two_months_ends_28_april_not_30_april() -> None:
    received = datetime(2025, 1, 31, 9, tzinfo=UTC)
    assert NO_HOLIDAYS.due(received) == end_of(date(2025, 2, 28))  # month end clamps
    # 3 months from receipt: 30 April; 2 months from the end of 28 February: 28 April.
    assert NO_HOLIDAYS.due(received, months=3) == end_of(date(2025, 4, 30))
    assert extend(NO_HOLIDAYS, received, 2) == end_of(date(2025, 4, 28))


def test_received_31_january_extended_by_one_month_ends_28_march() -> None:
    received = datetime(2025, 1, 31, 9, tzinfo=UTC)
    assert extend(NO_HOLIDAYS, received, 1) == datetime(2025, 3, 28, 23, 0, tzinfo=UTC)


def test_leap_year_29_february_is_the_original_end_and_the_extensions_follow_it() -> None:
    received = datetime(2024, 1, 31, 9, tzinfo=UTC)
    assert NO_HOLIDAYS.due(received) == end_of(date(2024, 2, 29))
    assert extend(NO_HOLIDAYS, received, 2) == end_of(date(2024, 4, 29))  # not 30 April
    # 29 March 2024 (a Friday) rather than 31 March (a Sunday, rolled to Monday 1 April)
    assert extend(NO_HOLIDAYS, received, 1) == datetime(2024, 3, 29, 23, 0, tzinfo=UTC)


def test_leap_year_extension_over_easter_rolls_on_the_commission_calendar() -> None:
    # 29 March 2024 is Good Friday and 1 April Easter Monday for Commission staff: both periods
    # end on Tuesday 2 April.
    received = datetime(2024, 1, 31, 9, tzinfo=UTC)
    assert extend(COMMISSION, received, 1) == end_of(date(2024, 4, 2))


def test_an_original_deadline_rolled_past_easter_makes_receipt_the_earlier_count() -> None:
    # Received 17 March 2025: one month is Maundy Thursday 17 April, rolled to Tuesday 22 April.
    received = datetime(2025, 3, 17, 10, tzinfo=UTC)
    original = COMMISSION.due(received)
    assert original == end_of(date(2025, 4, 22))
    # 2 months from receipt: Saturday 17 May, rolled to Monday 19 May; 1 month from 22 April:
    # 22 May. The earlier one counts.
    assert COMMISSION.extended(received, original, months=1) == end_of(date(2025, 5, 19))


def test_the_extended_deadline_rolls_past_a_holiday() -> None:
    # Received 9 April 2025: one month is 9 May (Schuman Declaration), rolled to Monday 12 May.
    # Extended by one: 2 months from receipt is Whit Monday 9 June, rolled to Tuesday 10 June,
    # earlier than 12 June.
    received = datetime(2025, 4, 9, 10, tzinfo=UTC)
    assert COMMISSION.due(received) == end_of(date(2025, 5, 12))
    assert extend(COMMISSION, received, 1) == end_of(date(2025, 6, 10))
    assert extend(NO_HOLIDAYS, received, 1) == end_of(date(2025, 6, 9))


def test_the_extension_never_ends_before_the_original_deadline() -> None:
    for day in range(1, 32):
        received = datetime(2025, 1, day, 12, tzinfo=UTC)
        original = COMMISSION.due(received)
        for months in (1, 2):
            extended = COMMISSION.extended(received, original, months=months)
            assert original < extended <= COMMISSION.due(received, months=1 + months)


def test_extended_deadline_refuses_a_naive_original_deadline() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        extended_deadline(datetime(2025, 1, 31, tzinfo=UTC), datetime(2025, 3, 1), months=1, tz=TZ)


# --- the Commission's calendar as the default ------------------------------------------------


def test_with_nothing_configured_the_commission_holidays_are_the_calendar() -> None:
    holidays = load_holidays([], None)
    assert holidays == shipped_holidays("european-commission")
    assert {date(2025, 4, 17), date(2025, 4, 18), date(2025, 4, 21)} <= holidays


def test_configured_holidays_replace_the_default(tmp_path: Path) -> None:
    assert load_holidays([date(2025, 6, 30)], None) == {date(2025, 6, 30)}
    empty = tmp_path / "none.txt"
    empty.write_text("# this institution has no holidays\n")
    assert load_holidays([], empty) == frozenset()


def test_a_holidays_file_adds_its_dates_and_names_a_bad_line(tmp_path: Path) -> None:
    listed = tmp_path / "holidays.txt"
    listed.write_text("2025-06-30  # closure\n\n# none in July\n2025-08-15\n")
    assert load_holidays([date(2025, 1, 2)], listed) == {
        date(2025, 1, 2),
        date(2025, 6, 30),
        date(2025, 8, 15),
    }
    listed.write_text("2025-06-30\n30/06/2025\n")
    with pytest.raises(InvalidInputError, match="holidays file line 2 is not an ISO date"):
        load_holidays([], listed)


def test_a_request_received_before_easter_2025_is_due_after_the_easter_closure() -> None:
    cal = InstitutionCalendar(tz=TZ, holidays=load_holidays([], None))
    received = datetime(2025, 3, 17, 10, tzinfo=UTC)
    # 17 April (Maundy Thursday), 18 (Good Friday), weekend, 21 (Easter Monday): due 22 April.
    assert cal.due(received) == datetime(2025, 4, 22, 22, 0, tzinfo=UTC)
    assert one_month_from_receipt(received, tz=TZ) == datetime(2025, 4, 17, 22, 0, tzinfo=UTC)


def test_a_deadline_on_24_december_2026_rolls_to_the_first_working_day_of_january() -> None:
    cal = InstitutionCalendar(tz=TZ, holidays=load_holidays([], None))
    received = datetime(2026, 11, 24, 10, tzinfo=UTC)
    # 24-31 December: end-of-year days; 1 January 2027: New Year's Day; then a weekend.
    assert cal.due(received) == datetime(2027, 1, 4, 23, 0, tzinfo=UTC)
    assert NO_HOLIDAYS.due(received) == datetime(2026, 12, 24, 23, 0, tzinfo=UTC)
