"""The collector pause around bulk batches always gives the collector back."""

from __future__ import annotations

import gc

import pytest

from records.memory import collector_paused


def test_the_collector_is_paused_inside_and_resumed_after_nested_uses_and_errors() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("a batch failed")
        assert not gc.isenabled()  # the outer batch still runs
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
