"""Calendar arithmetic: Regulation 1182/71 periods, month ends, leap days, DST, working days."""

from __future__ import annotations

import calendar as stdcal
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.calendar import (
    AmbiguousLocalTimeError,
    CalendarDuration,
    CalendarError,
    Convention,
    NonexistentLocalTimeError,
    UnknownTimezoneError,
    add_duration,
    add_months,
    is_working_day,
    one_month_from_receipt,
    parse_holidays,
    period_end,
    period_end_date,
    resolve_local,
    roll_to_working_day,
    shipped_calendars,
    shipped_holidays,
    zone,
)

BRU = ZoneInfo("Europe/Brussels")
P1Y = CalendarDuration.parse("P1Y")

dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))
month_counts = st.integers(min_value=0, max_value=600)


# --- the duration type ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P1Y", CalendarDuration(years=1)),
        ("P13M", CalendarDuration(months=13)),
        ("P2Y", CalendarDuration(years=2)),
        ("P2W", CalendarDuration(weeks=2)),
        ("P1Y6M", CalendarDuration(years=1, months=6)),
        ("P0D", CalendarDuration()),
        ("p30d", CalendarDuration(days=30)),
    ],
)
def test_iso_durations_parse_to_their_calendar_parts(text: str, expected: CalendarDuration) -> None:
    assert CalendarDuration.parse(text) == expected


@pytest.mark.parametrize("text", ["P", "PT1H", "P1.5Y", "1Y", "P-1Y", "P1M1Y", "", "P1DT2H"])
def test_durations_with_times_fractions_or_bad_order_are_refused(text: str) -> None:
    with pytest.raises(CalendarError, match="not a calendar duration"):
        CalendarDuration.parse(text)


def test_thirteen_months_stay_thirteen_months_not_a_year_and_a_month() -> None:
    assert CalendarDuration.parse("P13M").isoformat() == "P13M"
    assert str(CalendarDuration()) == "P0D"


def test_a_negative_part_is_refused() -> None:
    with pytest.raises(CalendarError, match="non-negative"):
        CalendarDuration(months=-1)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 500))
def test_printing_then_parsing_gives_the_same_duration(y: int, m: int, w: int, d: int) -> None:
    duration = CalendarDuration(years=y, months=m, weeks=w, days=d)
    assert CalendarDuration.parse(duration.isoformat()) == duration


# --- month arithmetic (properties) ---------------------------------------------------------


@given(dates, month_counts)
def test_adding_months_moves_exactly_that_many_calendar_months(d: date, months: int) -> None:
    end = add_months(d, months)
    assert (end.year * 12 + end.month) - (d.year * 12 + d.month) == months


@given(dates, month_counts)
def test_adding_months_keeps_the_day_or_clamps_to_the_month_end(d: date, months: int) -> None:
    end = add_months(d, months)
    last = stdcal.monthrange(end.year, end.month)[1]
    assert end.day == min(d.day, last)


@given(dates, dates, month_counts)
def test_adding_months_preserves_order(a: date, b: date, months: int) -> None:
    if a <= b:
        assert add_months(a, months) <= add_months(b, months)


@given(dates, st.integers(0, 300), st.integers(0, 300))
def test_months_added_in_two_steps_never_pass_one_step(d: date, a: int, b: int) -> None:
    # Clamping only loses days: Jan 31 +1M +1M is Mar 29 (2024), +2M is Mar 31.
    two_steps = add_months(add_months(d, a), b)
    one_step = add_months(d, a + b)
    assert two_steps <= one_step
    assert (two_steps.year, two_steps.month) == (one_step.year, one_step.month)


@given(dates, month_counts)
def test_a_year_is_twelve_months(d: date, years: int) -> None:
    years %= 50
    assert add_duration(d, CalendarDuration(years=years)) == add_months(d, 12 * years)


# --- explicit month-end and leap-day cases ---------------------------------------------------


@pytest.mark.parametrize(
    ("start", "duration", "end"),
    [
        (date(2024, 2, 29), "P1Y", date(2025, 2, 28)),
        (date(2024, 2, 29), "P4Y", date(2028, 2, 29)),
        (date(2024, 2, 29), "P1Y1M", date(2025, 3, 29)),
        (date(2024, 1, 31), "P1M", date(2024, 2, 29)),
        (date(2023, 1, 31), "P1M", date(2023, 2, 28)),
        (date(2024, 3, 31), "P1M", date(2024, 4, 30)),
        (date(2024, 8, 31), "P13M", date(2025, 9, 30)),
        (date(2024, 12, 31), "P2M", date(2025, 2, 28)),
        (date(2024, 2, 28), "P1Y", date(2025, 2, 28)),
        (date(2024, 3, 27), "P2W", date(2024, 4, 10)),
        (date(2024, 12, 31), "P1D", date(2025, 1, 1)),
    ],
)
def test_month_ends_and_leap_days(start: date, duration: str, end: date) -> None:
    assert add_duration(start, CalendarDuration.parse(duration)) == end


# --- Regulation 1182/71 periods ----------------------------------------------------------------


def test_one_year_from_a_leap_day_ends_with_the_28th_of_february() -> None:
    start = datetime(2024, 2, 29, 15, 0, tzinfo=BRU)
    assert period_end_date(start, P1Y, tz=BRU) == date(2025, 2, 28)
    # the period ends with the expiry of 28 February: 1 March 00:00 Brussels (CET, UTC+1)
    assert period_end(start, P1Y, tz=BRU) == datetime(2025, 2, 28, 23, 0, tzinfo=UTC)


def test_the_day_of_the_event_does_not_count_whatever_the_hour() -> None:
    # Call EC/2024/CNECT/443651 closed on 27 March 2024 at 12:00 CET.
    closed = datetime(2024, 3, 27, 11, 0, tzinfo=UTC)
    early = datetime(2024, 3, 27, 0, 0, 1, tzinfo=BRU)
    late = datetime(2024, 3, 27, 23, 59, tzinfo=BRU)
    expected = datetime(2025, 3, 27, 23, 0, tzinfo=UTC)  # 28 March 00:00 CET
    assert period_end(closed, P1Y, tz=BRU) == expected
    assert period_end(early, P1Y, tz=BRU) == expected
    assert period_end(late, P1Y, tz=BRU) == expected


def test_the_local_calendar_decides_the_day_not_utc() -> None:
    # 23:30 UTC on 31 Dec is already 1 Jan in Brussels.
    start = datetime(2024, 12, 31, 23, 30, tzinfo=UTC)
    assert period_end_date(start, CalendarDuration(days=1), tz="Europe/Brussels") == date(
        2025, 1, 2
    )
    assert period_end_date(start, CalendarDuration(days=1), tz="UTC") == date(2025, 1, 1)


def test_a_period_ending_in_summer_time_ends_at_local_midnight() -> None:
    start = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    assert period_end(start, P1Y, tz=BRU) == datetime(2025, 7, 1, 22, 0, tzinfo=UTC)


@given(
    st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(0, 30),
    st.integers(0, 60),
    st.integers(0, 400),
)
def test_periods_end_at_a_local_midnight_after_the_event_day(
    start: datetime, years: int, months: int, days: int
) -> None:
    duration = CalendarDuration(years=years, months=months, days=days)
    end = period_end(start, duration, tz=BRU)
    local = end.astimezone(BRU)
    assert (local.hour, local.minute, local.second) == (0, 0, 0)
    assert local.date() == add_duration(start.astimezone(BRU).date(), duration) + timedelta(days=1)
    assert end > start
    assert end.tzinfo is UTC


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(CalendarError, match="timezone-aware"):
        period_end(datetime(2024, 1, 1), P1Y, tz=BRU)


# --- time zones and the two DST changes in Europe/Brussels -------------------------------------


def test_an_unknown_time_zone_is_a_clear_error() -> None:
    with pytest.raises(UnknownTimezoneError, match="Europe/Bruxelles"):
        zone("Europe/Bruxelles")


def test_spring_forward_a_wall_time_in_the_gap_does_not_exist() -> None:
    with pytest.raises(NonexistentLocalTimeError, match="does not exist"):
        resolve_local(datetime(2025, 3, 30, 2, 30), "Europe/Brussels")


def test_fall_back_a_wall_time_in_the_overlap_is_ambiguous() -> None:
    with pytest.raises(AmbiguousLocalTimeError, match="happens twice"):
        resolve_local(datetime(2025, 10, 26, 2, 30), "Europe/Brussels")


def test_wall_times_around_the_changes_resolve_to_the_right_offset() -> None:
    before = resolve_local(datetime(2025, 3, 30, 1, 59), BRU)
    after = resolve_local(datetime(2025, 3, 30, 3, 0), BRU)
    assert before.utcoffset() == timedelta(hours=1)
    assert after.utcoffset() == timedelta(hours=2)
    assert after.astimezone(UTC) - before.astimezone(UTC) == timedelta(minutes=1)
    autumn = resolve_local(datetime(2025, 10, 26, 3, 0), BRU)
    assert autumn.utcoffset() == timedelta(hours=1)


def test_anniversary_keeps_the_wall_time_across_a_dst_change() -> None:
    start = datetime(2025, 1, 15, 12, 0, tzinfo=BRU)  # CET
    end = period_end(start, CalendarDuration(months=6), tz=BRU, convention=Convention.anniversary)
    assert end.astimezone(BRU).replace(tzinfo=None) == datetime(2025, 7, 15, 12, 0)
    assert end == datetime(2025, 7, 15, 10, 0, tzinfo=UTC)  # CEST


def test_anniversary_landing_in_the_spring_gap_is_an_error() -> None:
    start = datetime(2024, 3, 30, 2, 30, tzinfo=BRU)
    with pytest.raises(NonexistentLocalTimeError):
        period_end(start, CalendarDuration(days=365), tz=BRU, convention=Convention.anniversary)


def test_anniversary_landing_in_the_autumn_overlap_is_an_error() -> None:
    start = datetime(2024, 10, 26, 2, 30, tzinfo=BRU)
    with pytest.raises(AmbiguousLocalTimeError):
        period_end(start, P1Y, tz=BRU, convention=Convention.anniversary)


def test_regulation_periods_across_dst_changes_still_end_at_midnight() -> None:
    spring = period_end(datetime(2025, 3, 29, 12, tzinfo=BRU), CalendarDuration(days=1), tz=BRU)
    autumn = period_end(datetime(2025, 10, 25, 12, tzinfo=BRU), CalendarDuration(days=1), tz=BRU)
    assert spring == datetime(2025, 3, 30, 22, 0, tzinfo=UTC)  # 31 Mar 00:00 CEST
    assert autumn == datetime(2025, 10, 26, 23, 0, tzinfo=UTC)  # 27 Oct 00:00 CET


# --- working days and request deadlines ---


def test_roll_moves_past_weekends_and_holidays() -> None:
    easter_monday = date(2025, 4, 21)
    assert roll_to_working_day(date(2025, 4, 19), {easter_monday}) == date(2025, 4, 22)
    assert roll_to_working_day(date(2025, 4, 22), {easter_monday}) == date(2025, 4, 22)
    assert roll_to_working_day(date(2025, 4, 19)) == date(2025, 4, 21)
    assert not is_working_day(easter_monday, {easter_monday})


def test_roll_through_a_christmas_closure() -> None:
    closure = {date(2025, 12, d) for d in range(24, 32)} | {date(2026, 1, 1), date(2026, 1, 2)}
    assert roll_to_working_day(date(2025, 12, 24), closure) == date(2026, 1, 5)


def test_one_month_from_receipt_clamps_and_ends_at_midnight() -> None:
    received = datetime(2025, 1, 31, 16, 0, tzinfo=BRU)
    # 28 Feb 2025 is a Friday: the deadline is the expiry of that day.
    assert one_month_from_receipt(received, tz=BRU) == datetime(2025, 2, 28, 23, 0, tzinfo=UTC)


def test_one_month_from_receipt_rolls_to_the_next_working_day() -> None:
    received = datetime(2025, 4, 19, 10, 0, tzinfo=BRU)  # Saturday; 19 May is a Monday
    assert one_month_from_receipt(received, tz=BRU) == datetime(2025, 5, 19, 22, 0, tzinfo=UTC)
    # 1 May 2025 (Thursday) is a holiday: a request of 1 April ends with 2 May.
    got = one_month_from_receipt(
        datetime(2025, 4, 1, 9, tzinfo=BRU), tz=BRU, holidays={date(2025, 5, 1)}
    )
    assert got == datetime(2025, 5, 2, 22, 0, tzinfo=UTC)


def test_three_months_from_receipt_for_an_extended_request() -> None:
    received = datetime(2024, 11, 30, 10, 0, tzinfo=BRU)
    got = one_month_from_receipt(received, tz=BRU, months=3)
    assert got == datetime(2025, 2, 28, 23, 0, tzinfo=UTC)  # 28 Feb 2025 is a Friday


# --- the shipped calendar of the European Commission (staff in Brussels) ----------------------

EC = "european-commission"


def _easter_days(easter: date) -> set[date]:
    """Maundy Thursday, Good Friday, Easter Monday, Ascension and the day after, Whit Monday."""
    return {easter + timedelta(days=n) for n in (-3, -2, 1, 39, 40, 50)}


@pytest.mark.parametrize(
    "easter", [date(2024, 3, 31), date(2025, 4, 20), date(2026, 4, 5), date(2027, 3, 28)]
)
def test_the_commission_calendar_has_each_years_easter_and_ascension_days(easter: date) -> None:
    assert _easter_days(easter) <= shipped_holidays(EC)


@pytest.mark.parametrize("year", [2024, 2025, 2026, 2027])
def test_the_commission_calendar_has_the_fixed_days_and_the_end_of_year_closure(
    year: int,
) -> None:
    holidays = shipped_holidays(EC)
    fixed = [(1, 1), (1, 2), (5, 1), (5, 9), (7, 21), (8, 15), (11, 1), (11, 2)]
    fixed += [(12, d) for d in range(24, 32)]
    for month, day in fixed:
        d = date(year, month, day)
        # the decisions list weekday holidays only; a weekend is no working day anyway
        assert (d in holidays) == (d.weekday() < 5), d
    assert all(d.weekday() < 5 for d in holidays)
    assert {d.year for d in holidays} == {2024, 2025, 2026, 2027}


def test_the_commission_calendar_keeps_belgian_only_days_out() -> None:
    holidays = shipped_holidays(EC)
    assert date(2025, 11, 11) not in holidays  # Armistice Day: a Belgian holiday, not the EU's
    assert date(2025, 6, 23) not in holidays  # Luxembourg National Day: staff in Luxembourg
    assert len([d for d in holidays if d.year == 2025]) == 18


def test_the_commission_calendar_is_listed_and_an_unknown_one_is_refused() -> None:
    assert EC in shipped_calendars()
    with pytest.raises(CalendarError, match="unknown calendar 'atlantis'"):
        shipped_holidays("atlantis")
    with pytest.raises(CalendarError):
        shipped_holidays("../registry/DPR-EC-01488")


def test_a_holiday_list_names_the_line_that_is_not_a_date() -> None:
    assert parse_holidays("# c\n2025-01-01  # New Year\n\n", source="x.txt") == {date(2025, 1, 1)}
    with pytest.raises(CalendarError, match=r"x\.txt line 2 is not an ISO date"):
        parse_holidays("2025-01-01\n1 May 2025\n", source="x.txt")
