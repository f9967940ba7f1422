"""Repacking: gc consolidates loose objects and small packs into one new
pack, as `git gc` does, so that a lookup searches a bounded number of packs
however long the history (FORMAT.md, "Repacking").

Which packs are merged follows git's `repack --geometric=2`: packs sorted
by object count, the smallest are merged with every loose object until each
pack left is at least twice as large as everything smaller than it (the new
pack included). A store of N packed objects then has at most
floor(log2(N)) + 1 packs after a gc, and a repack rewrites few objects:
the large old packs are left alone, and each object is copied about log2(N)
times in its life.

What moves: the objects a root reaches (gc's mark). Unreachable objects
still within the grace period stay where they are, with their own mtimes
(moved into a new pack they would look new and outlive their grace
period); a merged pack that holds some is rewritten with only those, as
gc's sweep does. A copy of a reached object that a kept pack already holds
(left by a repack killed before it removed what it replaced) is removed.

Runs under the exclusive store lock, after gc's sweep: no writer is
between its first object and the ref that names it meanwhile (gc.py, rule
1), and readers that race it find every object (store.py, DiskStore).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Container, Iterator

from .errors import CorruptObjectError, MissingObjectError
from .packs import MAX_FRAME
from .progress import NO_PROGRESS, Progress
from .store import ObjectStore, OnDisk

#: Each pack kept is at least this many times all smaller packs together.
FACTOR = 2


@dataclass
class RepackPlan:
    merged_packs: list[str] = field(default_factory=list)   # packs whose reached objects move
    kept_packs: list[str] = field(default_factory=list)     # packs left as they are
    objects: list[str] = field(default_factory=list)        # ids the new pack holds
    replaced: list[OnDisk] = field(default_factory=list)    # copies the new pack replaces
    redundant: list[OnDisk] = field(default_factory=list)   # copies of objects a kept pack holds
    skipped: list[str] = field(default_factory=list)        # reached objects no intact copy of was found

    @property
    def empty(self) -> bool:
        return not self.objects and not self.redundant


def plan_repack(store: ObjectStore, stored: list[OnDisk], reached: Container[str]) -> RepackPlan:
    """What a repack of these copies (stored_objects, after the sweep) does."""
    plan = RepackPlan()
    if not store.keeps_packs:
        return plan
    packs: dict[str, list[OnDisk]] = {}
    loose: list[OnDisk] = []
    for copy in stored:
        if copy.packed:
            packs.setdefault(copy.where, []).append(copy)
        elif copy.size <= MAX_FRAME:  # larger frames stay loose files (FORMAT.md, "Pack files")
            loose.append(copy)
    merged = _geometric_merge(len(loose), {where: len(copies) for where, copies in packs.items()})
    if not loose and len(merged) < 2:
        merged = []  # one pack merged alone would only be copied
    plan.merged_packs = sorted(merged)
    plan.kept_packs = sorted(set(packs) - set(merged))
    in_kept = {copy.id for where in plan.kept_packs for copy in packs[where]}
    chosen: set[str] = set()
    for copy in [*loose, *(c for where in plan.merged_packs for c in packs[where])]:
        if copy.id not in reached:
            continue  # unreachable but young: stays where it is, with its own mtime
        if copy.id in in_kept:
            plan.redundant.append(copy)
            continue
        plan.replaced.append(copy)
        if copy.id not in chosen:
            chosen.add(copy.id)
            plan.objects.append(copy.id)
    return plan


def _geometric_merge(loose: int, counts: dict[str, int]) -> list[str]:
    """The packs to merge with `loose` objects so that every pack kept holds
    at least FACTOR times the objects of all smaller ones, the new pack
    included: the smallest packs, up to the largest one that breaks that."""
    ordered = sorted(counts, key=lambda where: (counts[where], where))
    below = loose
    cut = 0
    for position, where in enumerate(ordered):
        if counts[where] < FACTOR * below:
            cut = position + 1
        below += counts[where]
    return ordered[:cut]


def repack(store: ObjectStore, plan: RepackPlan, progress: Progress = NO_PROGRESS) -> str | None:
    """Carry out a plan: the new pack (durable first), then the copies it
    replaces and the redundant ones go. The new pack's place, or None."""
    progress.start("gc: repacking", len(plan.objects))
    try:
        written = store.repack(_frames(store, plan, progress), plan.replaced)
    finally:
        progress.finish()
    if plan.redundant:
        store.delete_stored(plan.redundant)
    return written


def _frames(store: ObjectStore, plan: RepackPlan, progress: Progress) -> Iterator[tuple[str, bytes]]:
    """Each object's frame, verified against its id; an object no intact
    copy of is found is left where it is (fsck names it)."""
    for oid in plan.objects:
        try:
            _, frame = store.intact_frame(oid)
        except (CorruptObjectError, MissingObjectError):
            plan.skipped.append(oid)
            continue
        progress.advance(1, len(frame))
        yield oid, frame


__all__ = ["RepackPlan", "plan_repack", "repack", "FACTOR"]
