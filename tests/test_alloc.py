"""cycle_collector_paused: off while the work runs, restored after, even on error."""

import gc

import pytest

from rnstore.alloc import cycle_collector_paused


@cycle_collector_paused
def state(fail: bool = False) -> bool:
    if fail:
        raise RuntimeError("boom")
    return gc.isenabled()


def test_the_collector_is_off_inside_and_back_on_after():
    assert gc.isenabled()
    assert state() is False
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        state(fail=True)
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off():
    gc.disable()
    try:
        assert state() is False
        assert not gc.isenabled()
    finally:
        gc.enable()
