"""Record ids grow with time, so a purge batch deletes rows stored side by side."""

from __future__ import annotations

import uuid

import pytest
from freezegun import freeze_time

from records import ids


def test_ids_are_version_7_and_increase_within_one_millisecond() -> None:
    with freeze_time("2026-12-02 12:00:00"):
        made = [ids.uuid7() for _ in range(10_000)]  # more than the 4096 a millisecond holds
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_follow_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ids made earlier in this process, at the real (later) time, would hold the counter
    # ahead of a clock frozen in the past: ids never go backwards within a process.
    monkeypatch.setattr(ids, "_last_ms", 0)
    with freeze_time("2026-12-02 12:00:00"):
        earlier = ids.uuid7()
    with freeze_time("2026-12-02 12:00:01"):
        later = ids.uuid7()
    assert earlier < later
    assert later.int >> 80 == 1_796_212_801_000  # the Unix time in milliseconds comes first


def test_ids_never_go_backwards_when_the_clock_does() -> None:
    with freeze_time("2026-12-02 12:00:01"):
        later_clock = ids.uuid7()
    with freeze_time("2026-12-02 12:00:00"):
        earlier_clock = ids.uuid7()
    assert later_clock < earlier_clock


def test_a_ranked_id_sorts_by_rank_first() -> None:
    low = [ids.ranked(0) for _ in range(100)]
    high = ids.ranked(1)
    assert high.bytes[0] == 1
    assert max(low) < high
    assert low == sorted(low)
    with pytest.raises(ValueError):
        ids.ranked(256)
