"""forget: drop snapshots from the live set (the journal). Nothing is deleted
here; `gc` later frees what no root reaches any more.

Which snapshots go, as in restic:

- `REV...`: those snapshots.
- keep rules: every live snapshot of this workspace that no rule keeps.
  `keep_last=N` keeps the N newest; `keep_within=D` keeps those made within
  D of the newest snapshot's time (not of now: a workspace left alone for a
  year keeps its last runs). Rules combine by union.
- both: the named ones (even if a rule would keep them) and those no rule keeps.
- neither: refused (InvalidValueError) - forgetting everything by accident
  is worse than typing a rule.

A forgotten snapshot still named by a branch, a tag or a detached HEAD stays
reachable, so gc keeps its objects; the result says which refs keep it.

The result also says what the forget frees: per snapshot and in total, the
objects (and their stored bytes) that no root reaches once the snapshots are
forgotten, which the next `gc --prune now` deletes, and, per snapshot, what
stays because a tag, a branch or another snapshot (of any workspace of the
store) still reaches it. It is counted by marking every root of the store
(reachability.py) under the store lock held shared, as du does, through
the reachability cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from .errors import CorruptStoreError, InvalidValueError, ObjectError
from .objects import is_object_id
from .reachability import ANY_ROOT, Marker, StoreLoader, collect_roots
from .reachcache import ReachCache
from .refs import HEADS, TAGS, short_name
from .revparse import resolve_snapshot
from .units import parse_duration
from .views import HistoryView, ObjectsView, WorkspaceView


@dataclass
class ForgetItem:
    id: str
    time: str | None          # None when the snapshot object cannot be read
    message: str | None
    reasons: list[str] = field(default_factory=list)
    #: refs that keep a forgotten snapshot reachable: "tag v1", "branch main", "HEAD"
    still_named_by: list[str] = field(default_factory=list)
    #: objects (stored bytes) it reaches that no root reaches once it is forgotten
    #: (some may be shared with other snapshots forgotten with it)
    freed_objects: int = 0
    freed_bytes: int = 0
    #: objects (stored bytes) it reaches that other roots keep
    kept_objects: int = 0
    kept_bytes: int = 0

    def as_json(self) -> dict:
        return {"id": self.id, "time": self.time, "message": self.message, "reasons": self.reasons,
                "still_named_by": self.still_named_by, "freed_objects": self.freed_objects,
                "freed_bytes": self.freed_bytes, "kept_objects": self.kept_objects,
                "kept_bytes": self.kept_bytes}


@dataclass
class ForgetResult:
    dry_run: bool
    removed: list[ForgetItem] = field(default_factory=list)
    kept: list[ForgetItem] = field(default_factory=list)
    #: ids given as REV that were not live (already forgotten, or another workspace's)
    not_live: list[str] = field(default_factory=list)
    #: everything the forget makes collectable (shared between forgotten snapshots included)
    freed_objects: int = 0
    freed_bytes: int = 0
    #: what could not be read while counting (the counts then leave it out)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"dry_run": self.dry_run, "forgotten": [i.as_json() for i in self.removed],
                "kept": [i.as_json() for i in self.kept], "not_live": self.not_live,
                "freed_objects": self.freed_objects, "freed_bytes": self.freed_bytes,
                "problems": self.problems}


def forget(repo: HistoryView, revs: Iterable[str] = (), *, keep_last: int | None = None,
           keep_within: str | float | None = None, dry_run: bool = False) -> ForgetResult:
    """Drop snapshots from the live set; see the module docstring."""
    result = select(repo, revs, keep_last=keep_last, keep_within=keep_within, dry_run=dry_run)
    # shared: no gc runs between counting and forgetting
    with repo.store_lock(shared=True):
        if result.removed:
            _count_freed(repo, result)
        if not dry_run:
            for item in result.removed:
                repo.journal.discard(item.id)
    return result


def select(repo: HistoryView, revs: Iterable[str] = (), *, keep_last: int | None = None,
           keep_within: str | float | None = None, dry_run: bool = False) -> ForgetResult:
    """Which live snapshots the REVs and keep rules forget, and which they
    keep; changes nothing. `repo` needs only `journal` (the live ids),
    `refs` and a `store` holding the snapshots, so a remote's live set
    (remote/collect.py) follows the very same rules."""
    revs = list(revs)
    if not revs and keep_last is None and keep_within is None:
        raise InvalidValueError(
            "forget needs snapshots to forget or a keep rule",
            hints=["`rnstore forget REV...` forgets those; keep_last=N or "
                   "keep_within=DURATION forgets what the rules do not keep"])
    if keep_last is not None and keep_last < 1:
        raise InvalidValueError(f"keep_last takes a number of at least 1, not {keep_last}")
    within = None
    within_text = None
    if keep_within is not None:
        if isinstance(keep_within, (int, float)):
            within, within_text = float(keep_within), f"{keep_within:g}s"
        else:
            within, within_text = parse_duration(keep_within), str(keep_within)

    live = list(repo.journal)
    live_set = set(live)
    result = ForgetResult(dry_run)
    named: dict[str, None] = {}
    for rev in revs:
        oid = _resolve(repo, rev, live_set)
        if oid in live_set:
            named[oid] = None
        elif oid not in result.not_live:
            result.not_live.append(oid)

    items = {oid: _item(repo, oid) for oid in live}
    doomed: dict[str, list[str]] = {oid: ["named"] for oid in named}
    if keep_last is not None or within is not None:
        unreadable = [i.id for i in items.values() if i.time is None]
        if unreadable:
            raise CorruptStoreError(
                f"keep rules need every live snapshot's time, and snapshot {unreadable[0]} "
                "cannot be read", hints=["forget it by its full id first; `rnstore fsck` lists the damage"])
        ordered = sorted(items.values(), key=lambda i: (i.time or "", i.id), reverse=True)
        newest = timestamp_of(ordered[0].time) if ordered and ordered[0].time else None
        for position, item in enumerate(ordered):
            if keep_last is not None and position < keep_last:
                item.reasons.append(f"keep-last {keep_last}")
            if within is not None and newest is not None and item.time is not None \
                    and timestamp_of(item.time) >= newest - within:
                item.reasons.append(f"keep-within {within_text}")
            if not item.reasons:
                doomed.setdefault(item.id, ["kept by no rule"])
    names = _names(repo)
    for oid in live:
        item = items[oid]
        if oid in doomed:
            item.reasons = doomed[oid]
            item.still_named_by = names.get(oid, [])
            result.removed.append(item)
        elif keep_last is not None or within is not None:
            result.kept.append(item)
    result.removed.sort(key=_newest_first, reverse=True)
    result.kept.sort(key=_newest_first, reverse=True)
    return result


def _count_freed(repo: WorkspaceView, result: ForgetResult) -> None:
    """Fill in what forgetting `result.removed` frees and what stays. Trees
    and snapshots are read through the reachability cache (reachcache.py),
    as du and gc read them; should the store have lost one the cache stood
    in for, everything is counted again from the store alone."""
    going = {item.id for item in result.removed}
    scan_problems: list[str] = []
    scan = collect_roots(repo, lambda kind, oid, detail: scan_problems.append(detail),
                         grace=float(repo.config.get("gc.prune")), now=time.time())
    sizes: dict[str, int] = {}
    for obj in repo.store.stored_objects():
        sizes[obj.id] = sizes.get(obj.id, 0) + obj.size
    cache = ReachCache.load(repo.store_root, shared=repo.group_shared)
    counted = _count(repo, scan, going, sizes, StoreLoader(repo.store, cache, sizes=False))
    if counted is None:  # the cache named objects the store has lost
        counted = _count(repo, scan, going, sizes, StoreLoader(repo.store))
    else:
        cache.save(counted[0])
    per_item, freed, problems = counted[1:]
    result.problems += scan_problems + problems
    for item in result.removed:
        item.freed_objects, item.freed_bytes, item.kept_objects, item.kept_bytes = per_item[item.id]
    result.freed_objects = len(freed)
    result.freed_bytes = sum(sizes[oid] for oid in freed)


def _count(repo: WorkspaceView, scan, going: set[str], sizes: dict[str, int], loader: StoreLoader):
    """(the trees and snapshots read, id -> (freed objects, freed bytes,
    kept objects, kept bytes) of each forgotten snapshot, everything freed,
    problems); None if a tree or snapshot the loader's cache stood in for
    is not stored."""
    problems: list[str] = []

    def on_error(oid: str, kind: str, exc) -> None:
        problems.append(f"{kind} {oid} cannot be read: {exc}")

    staying = Marker(loader)
    for root in scan.roots:
        forgotten = root.name == "live snapshot" and root.workspace == repo.dotdir and root.id in going
        if not forgotten:
            staying.mark(ANY_ROOT, root.id, root.kind, on_error)
    per_item: dict[str, tuple[int, int, int, int]] = {}
    freed: set[str] = set()
    for oid in going:
        reach = Marker(loader)
        reach.children = staying.children  # each tree is read once, whoever reaches it
        reach.mark(ANY_ROOT, oid, "snapshot", on_error)
        freed_objects = freed_bytes = kept_objects = kept_bytes = 0
        for reached in reach.owner:
            size = sizes.get(reached)
            if size is None:
                continue  # not stored: nothing to free
            if reached in staying:
                kept_objects += 1
                kept_bytes += size
            else:
                freed_objects += 1
                freed_bytes += size
                freed.add(reached)
        per_item[oid] = (freed_objects, freed_bytes, kept_objects, kept_bytes)
    if not all(oid in sizes for oid in loader.from_cache):
        return None
    return set(staying.children), per_item, freed, problems


def _newest_first(item: ForgetItem) -> tuple[str, str]:
    """A sort key; with reverse=True, newest first."""
    return item.time or "", item.id


def _resolve(repo: HistoryView, rev: str, live: set[str]) -> str:
    """A REV to a snapshot id. A full id in the journal is taken as it is, so
    a live snapshot whose object is lost can still be forgotten."""
    if is_object_id(rev.lower()) and rev.lower() in live:
        return rev.lower()
    return resolve_snapshot(repo, rev)


def _item(repo: ObjectsView, oid: str) -> ForgetItem:
    try:
        snapshot = repo.store.get_snapshot(oid)
    except ObjectError:
        return ForgetItem(oid, None, None)
    return ForgetItem(oid, snapshot.time, snapshot.message)


def timestamp_of(text: str) -> float:
    """A snapshot's time ('2026-11-24T03:59:37.123456Z') as a Unix time."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def _names(repo: HistoryView) -> dict[str, list[str]]:
    """snapshot id -> the refs naming it, as users say them."""
    names: dict[str, list[str]] = {}
    for ref, oid in repo.refs.list().items():
        if ref.startswith(TAGS):
            label = f"tag {short_name(ref)}"
        elif ref.startswith(HEADS):
            label = f"branch {short_name(ref)}"
        else:
            label = ref
        names.setdefault(oid, []).append(label)
    branch, head = repo.refs.head()
    if branch is None and head is not None:
        names.setdefault(head, []).append("HEAD")
    return names


__all__ = ["forget", "ForgetResult", "ForgetItem"]
