"""Allocation-heavy work: one index entry, scan record and tree entry per file."""

from __future__ import annotations

import functools
import gc


def cycle_collector_paused(function):
    """Run `function` with CPython's cycle collector off (and back on after,
    if it was on). Building hundreds of thousands of small tuples makes the
    collector walk them again and again, a third of a no-op commit's time;
    none of them form cycles, and reference counting frees them as usual."""

    @functools.wraps(function)
    def paused(*args, **kwargs):
        if not gc.isenabled():
            return function(*args, **kwargs)
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            gc.enable()

    return paused
