"""The cycle-collector pause the CLI runs its commands under, and the other
process-wide choices a CLI process makes and a library leaves to its host.

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


#: glibc's mallopt() parameter for the most malloc arenas (M_ARENA_MAX).
_M_ARENA_MAX = -8


def one_malloc_arena() -> None:
    """Have every thread allocate from glibc's main malloc arena. A transfer
    decodes and writes on several threads; with an arena each, the memory a
    thread freed stays in its arena, counted in the peak RSS, where the
    next thread cannot reuse it (a clone of 28,620 files: ~10 MB). For a
    CLI process only, like the collector pause; nothing where there is no
    glibc."""
    import ctypes
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass


_walks_may_fork = False


def let_walks_fork() -> None:
    """Let a walk of a large workspace fork a second process to walk half of
    it (staging.py). For a CLI process only: a library caller's process
    (its threads, its memory) is not ours to fork."""
    global _walks_may_fork
    _walks_may_fork = True


def walks_may_fork() -> bool:
    return _walks_may_fork
