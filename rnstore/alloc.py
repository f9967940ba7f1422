"""The cycle-collector pause the CLI runs its commands under.

A command builds an index entry, a scan record and a tree entry per file:
hundreds of thousands of small tuples, none in a cycle, that the collector
would walk again and again (README, Performance). A short-lived CLI process
can turn it off; the library leaves it alone, since a notebook or a
training loop calling `repo.snapshot()` must keep cycle collection on every
thread. Such a caller may wrap its own calls with `cycle_collector_paused`.
"""

from __future__ import annotations

import functools
import gc


def cycle_collector_paused(function):
    """Run `function` with CPython's cycle collector off (and back on after,
    if it was on). Reference counting frees acyclic objects as usual."""

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
