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
from itertools import chain, groupby
from operator import attrgetter
from typing import TYPE_CHECKING, Callable, Container, Iterator, Mapping

from .errors import CorruptObjectError, MissingObjectError, ObjectError
from .objects import BLOB, MODE_TREE, SNAPSHOT, TREE
from .packs import MAX_FRAME
from .progress import NO_PROGRESS, Progress

_ID, _WHERE, _PACKED = attrgetter("id"), attrgetter("where"), attrgetter("packed")

if TYPE_CHECKING:  # store.py loads zstandard: gc.py (and so this) is imported by every porcelain command
    from .store import ObjectStore, OnDisk

#: Each pack kept is at least this many times all smaller packs together.
FACTOR = 2
#: The least zstd levels of a full repack (gc --aggressive), which spends
#: CPU for a smaller pack as git's does: every delta is computed again at
#: DELTA_LEVEL, every whole frame compressed again at WHOLE_LEVEL. Measured
#: on 100 releases of hypothesis (FORMAT.md, "Repacking"): deltas at 9
#: rather than 3, 21% smaller for 1.7x the CPU; whole frames at 15, 9%
#: smaller, 0.2 s for 250 objects. Deltas at 19 took 12x the CPU of 3.
AGGRESSIVE_DELTA_LEVEL = 9
AGGRESSIVE_WHOLE_LEVEL = 15


@dataclass
class RepackPlan:
    merged_packs: list[str] = field(default_factory=list)   # packs whose reached objects move
    kept_packs: list[str] = field(default_factory=list)     # packs left as they are
    objects: list[str] = field(default_factory=list)        # ids the new pack holds
    replaced: list[OnDisk] = field(default_factory=list)    # copies the new pack replaces
    redundant: list[OnDisk] = field(default_factory=list)   # copies of objects a kept pack holds
    skipped: list[str] = field(default_factory=list)        # reached objects no intact copy of was found
    collectable: list[OnDisk] = field(default_factory=list)  # dead bases the sweep spared in merged packs

    @property
    def empty(self) -> bool:
        return not self.objects and not self.redundant


def plan_repack(store: ObjectStore, stored: list[OnDisk], reached: Container[str], *,
                most_packs: int = 0, full: bool = False,
                collectable: Callable[[OnDisk], bool] | None = None) -> RepackPlan:
    """What a repack of these copies (stored_objects, after the sweep) does.
    With `full` (a gc the user runs, as `git gc` does), every pack is merged
    with the loose objects into one, and its deltas are chosen anew over all
    versions: chains the geometric rule left cut at a pack's edge are joined.
    With `most_packs` (gc.auto_packs), more packs are merged when needed so
    that at most half that many are left: gc --auto, which runs past that
    many, then always has room before it runs again. `collectable(copy)`
    tells an unreachable copy old enough to delete, which the sweep spared
    in a merged pack as the base of a delta: the repack moves that delta
    out, so the base goes after it (spared again if a delta that stays
    still needs it)."""
    plan = RepackPlan()
    if not store.keeps_packs:
        return plan
    packs: dict[str, list[OnDisk]] = {}
    loose: list[OnDisk] = []
    # a run of copies at a time (stored_objects lists a pack's together), in C loops
    for is_packed, run in groupby(stored, key=_PACKED):
        if is_packed:
            for where, copies in groupby(run, key=_WHERE):
                packs.setdefault(where, []).extend(copies)
        else:  # larger frames stay loose files (FORMAT.md, "Pack files")
            loose += [copy for copy in run if copy.size <= MAX_FRAME]
    # the loose objects the new pack takes (a copy of a packed object just goes); the packs' ids
    # are only looked up in the few loose ones, not made a set of their own
    also_packed = set(map(_ID, loose)).intersection(map(_ID, chain.from_iterable(packs.values())))
    moving = sum(1 for copy in loose if copy.id in reached and copy.id not in also_packed)
    counts = {where: len(copies) for where, copies in packs.items()}
    merged = list(counts) if full else _geometric_merge(moving, counts)
    if most_packs:
        kept = sorted(set(counts) - set(merged), key=lambda where: (counts[where], where))
        while kept and len(kept) + 1 > max(1, most_packs // 2):
            merged.append(kept.pop(0))
    if not moving and len(merged) < 2:
        merged = []  # one pack merged alone would only be copied
    plan.merged_packs = sorted(merged)
    plan.kept_packs = sorted(set(packs) - set(merged))
    candidates = [*loose, *chain.from_iterable(map(packs.__getitem__, plan.merged_packs))]
    in_kept = set(map(_ID, candidates)).intersection(map(_ID, chain.from_iterable(map(packs.__getitem__,
                                                                                 plan.kept_packs))))
    chosen: set[str] = set()
    for copy in candidates:
        if copy.id not in reached:
            if copy.packed and collectable is not None and collectable(copy):
                plan.collectable.append(copy)
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


def repack(store: ObjectStore, plan: RepackPlan, *, kinds: Mapping[str, str] | None = None,
           deltas: bool = False, depth: int = 0, level: int = 3, aggressive: bool = False,
           progress: Progress = NO_PROGRESS) -> str | None:
    """Carry out a plan: the new pack (durable first), then the copies it
    replaces and the redundant ones go. With `deltas`, blobs and trees are
    stored as deltas against another version of the same path (`kinds`:
    the kind of each reached object, from gc's mark), in chains of at most
    `depth`; frames written anew are compressed at `level`. `aggressive`
    (gc --aggressive) writes every frame anew, at least at the
    AGGRESSIVE levels. The new pack's place, or None."""
    order = delta_order(store, plan.objects, kinds or {}, depth) if deltas and depth else \
        [(oid, None) for oid in plan.objects]
    levels = Levels(max(level, AGGRESSIVE_DELTA_LEVEL), max(level, AGGRESSIVE_WHOLE_LEVEL), False) \
        if aggressive else Levels(level, level, True)
    progress.start("gc: repacking", len(order))
    try:
        written = store.repack(_frames(store, plan, order, levels, progress), plan.replaced,
                               dead=plan.collectable, max_depth=max(depth, 1))
    finally:
        progress.finish()
    if plan.redundant:
        store.delete_stored(plan.redundant)
    return written


def delta_order(store: ObjectStore, members: list[str], kinds: Mapping[str, str],
                depth: int, radix: int = 16) -> list[tuple[str, str | None]]:
    """(id, base or None) of every object in `members`, in the order they
    are written. For each path, its versions are numbered from the newest
    snapshot (0) to the oldest; version 0 is stored whole (a checkout of the
    latest snapshot reads no chain), and version i is a delta against the
    version base_index(i) newer: most against the next newer one, 1 in
    `radix` against the one `radix` newer, 1 in radix**2 against the one
    radix**2 newer, and so on, so that chains grow like the logarithm of the
    number of versions, not like the number. A version whose base's chain
    is already `depth` deep is stored whole, and numbering starts again
    from it. A base is always written before the deltas against it, and
    lies in the same pack."""
    wanted = set(members)
    versions = _versions_by_path(store, members, kinds, wanted)
    depth_of: dict[str, int] = {}
    order: list[tuple[str, str | None]] = []
    for chain in versions.values():
        start = 0  # where the numbering starts: a version stored whole
        for i, oid in enumerate(chain):
            if oid in depth_of:
                continue  # met earlier as a version of another path (so written earlier)
            base = chain[start + base_index(i - start, radix)] if i > start else None
            if base is not None and depth_of[base] < depth:
                order.append((oid, base))
                depth_of[oid] = depth_of[base] + 1
            else:
                order.append((oid, None))
                depth_of[oid] = 0
                start = i
    order += [(oid, None) for oid in members if oid not in depth_of]
    return order


def base_index(i: int, radix: int = 16) -> int:
    """The version (numbered from the newest, 0) that version i > 0 is a
    delta against: i with its lowest nonzero digit in base `radix` lowered
    by one. Its chain then holds as many deltas as i's digits add up to:
    with radix 2, popcount(i); with radix 16, at most 45 up to 4,095."""
    place = 1
    while i % (place * radix) == 0:
        place *= radix
    return i - place


def _versions_by_path(store: ObjectStore, members: list[str], kinds: Mapping[str, str],
                      wanted: set[str]) -> dict[tuple[bytes, str], list[str]]:
    """(path, kind) -> the distinct versions among `wanted`, newest first,
    over the snapshots being repacked, newest first. A folder not being
    repacked is not descended: it is unchanged since an earlier repack, and
    so is what it holds."""
    snapshots = []
    for oid in members:
        if kinds.get(oid) == SNAPSHOT:
            try:
                snapshots.append((store.get_snapshot(oid), oid))
            except ObjectError:
                continue  # gc checked every reached snapshot; a repack only loses a delta
    snapshots.sort(key=lambda found: found[0].time, reverse=True)
    # the snapshots themselves, newest first, as the versions of one path
    versions: dict[tuple[bytes, str], list[str]] = {(b"", SNAPSHOT): [oid for _, oid in snapshots]}
    visited: set[tuple[bytes, str]] = set()

    def add(path: bytes, kind: str, oid: str) -> None:
        chain = versions.setdefault((path, kind), [])
        if oid not in chain:
            chain.append(oid)

    for snapshot, _ in snapshots:
        stack = [(b"", snapshot.tree)]
        while stack:
            path, tree_id = stack.pop()
            if tree_id not in wanted or (path, tree_id) in visited:
                continue
            visited.add((path, tree_id))
            add(path, TREE, tree_id)
            try:
                entries = store.get_tree(tree_id).entries
            except ObjectError:
                continue
            for entry in entries:
                below = path + b"/" + entry.name
                if entry.mode == MODE_TREE:
                    stack.append((below, entry.id))
                elif entry.id in wanted:
                    add(below, BLOB, entry.id)
    return versions


#: Payloads of recent bases kept in memory (the next delta of a chain
#: needs the one before); an evicted base is read from the store again.
BASE_CACHE_BYTES = 64 << 20


@dataclass(frozen=True)
class Levels:
    """How a repack writes frames: zstd levels of deltas and whole frames,
    and whether a stored frame that fits (whole, or a delta against the
    base chosen) is copied as it is rather than compressed again."""
    delta: int
    whole: int
    reuse: bool


def _frames(store: ObjectStore, plan: RepackPlan, order: list[tuple[str, str | None]], levels: Levels,
            progress: Progress) -> Iterator[tuple[str, bytes]]:
    """Each object's frame, verified against its id: whole (its stored frame
    when that is whole), or a delta against its base when that is smaller.
    An object no intact copy of is found is left where it is (fsck names it)."""
    written: set[str] = set()
    cache: dict[str, bytes] = {}
    cached = 0
    for oid, base in order:
        try:
            frame, payload = _frame(store, oid, base if base in written else None, cache, levels)
        except (CorruptObjectError, MissingObjectError):
            plan.skipped.append(oid)
            continue
        if payload is not None:
            cache[oid] = payload
            cached += len(payload)
            while cached > BASE_CACHE_BYTES and cache:
                cached -= len(cache.pop(next(iter(cache))))
        written.add(oid)
        progress.advance(1, len(frame))
        yield oid, frame


def _frame(store: ObjectStore, oid: str, base: str | None, cache: dict[str, bytes],
           levels: Levels) -> tuple[bytes, bytes | None]:
    """(the frame to write, the payload when it was read: the base of the next delta)."""
    from . import codec
    if base is None:
        kind, frame = store.intact_frame(oid)
        if codec.frame_base(frame) is None and (levels.reuse or store.header(oid)[1] > codec.DELTA_MAX_SIZE):
            return frame, None
        kind, payload = store.get(oid, limit=codec.DELTA_MAX_SIZE)
        return codec.compress(kind, payload, levels.whole), payload
    kind, size = store.header(oid)
    if kind not in codec.DELTA_KINDS or size > codec.DELTA_MAX_SIZE:
        return _frame(store, oid, None, cache, levels)
    if levels.reuse and store.delta_base(oid) == base:  # stored against the same base already: kept as it is
        frame = store.intact_frame(oid)[1]
        if codec.frame_base(frame) == base:  # the intact copy, where there are several
            return codec.modern_delta(frame), None  # (a delta of the first form, less its fixed cost)
    kind, payload = store.get(oid, limit=codec.DELTA_MAX_SIZE)
    base_payload = cache.get(base)
    if base_payload is None:
        try:
            base_payload = store.get(base, limit=codec.DELTA_MAX_SIZE)[1]
        except (CorruptObjectError, MissingObjectError):
            return codec.compress(kind, payload, levels.whole), payload
    delta = codec.encode_delta(kind, payload, base, base_payload, levels.delta)
    whole = codec.compress(kind, payload, levels.whole)
    # in the pack the base's 32-byte id becomes a distance of a few bytes
    return (delta if len(delta) - 32 + 3 < len(whole) else whole), payload


__all__ = ["RepackPlan", "plan_repack", "repack", "delta_order", "base_index", "FACTOR"]
