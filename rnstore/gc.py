"""Garbage collection: delete what no root reaches (reachability.py) once it
is old enough, and the leftovers of crashed writers.

`gc.last` in the store root holds when the last gc ran (a Unix time;
`--auto` reads it). After a command that adds objects, `start_auto_gc`
starts `gc --auto` as a detached background process when gc.interval has
passed since then (since the store was made, before its first gc), or the
store holds more loose objects than gc.auto_loose or more packs than
gc.auto_packs, and gc.auto is not false; `gc --auto` checks again under the
store lock, so two never collect at once. Every gc repacks (repack.py).

The rules that make it safe:

1. Mark and sweep run under the store lock held exclusively. Writers hold it
   shared from their first object write to the ref, journal or index update
   that makes the objects reachable, so gc never sees half a publication.
2. A root that cannot be read - a corrupt ref, HEAD, index or config, an
   unreadable workspace, a missing or corrupt snapshot or tree that a root
   reaches - stops gc before it changes anything (CorruptStoreError naming
   it). Unreadable is never "references nothing". So does any object a root
   reaches that the store does not list, blobs included (a damaged pack
   hides every object in it), except what only a gone workspace's last
   seen roots name: that may have gone with it. Trees and snapshots may be
   read from the reachability cache (reachcache.py), whose records are
   checked against their ids; should the store have lost one of them,
   marking starts again from the store alone (reachability.settle_cache).
   Marking goes in bulk (reachability.mark_in_bulk, set operations a level
   of trees at a time); anything unusual (an object that cannot be read, a
   root that may be gone, an id reached as two kinds) is marked by the
   Marker instead, which reaches the same objects and names the damage.
3. Unreachable objects younger than the grace period are kept: a writer that
   finds an object already stored refreshes its mtime, so an object a
   running `add` is about to reference is young.
4. A registered workspace whose `.rnstore` folder is gone goes on protecting,
   for the grace period after gc first found it gone, the roots gc last read
   there (registry.py's `.roots`) and every object written or refreshed since
   then (it may have made them); the roots it held when it registered count
   as read then. When nothing was ever recorded (a registration made by an
   older version), every unreachable object (nothing is known of what it held). Then (at once with
   a grace of 0) its registration is removed and its objects are collected
   like any others.
5. Stale temporary files (`.tmp-*` in objects/ and its fan-out folders) older
   than the grace period are leftovers of crashed writers and are deleted.

What may go is not always worth deleting: a packed object goes by rewriting
its whole pack, so a pack whose collectable bytes are under gc.threshold
percent of it (10 by default, borg's `compact --threshold`) is left whole,
its garbage with it, until more of it is garbage or a repack merges it
(plan_sweep). gc reports those as kept garbage, never as freed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import compress, filterfalse, groupby
from operator import attrgetter, not_
from pathlib import Path
from typing import TYPE_CHECKING

from . import registry
from .errors import CorruptStoreError
from .fsutil import TMP_PREFIX, atomic_write, pid_alive, remove_quietly, temp_writer_pid
from .progress import NO_PROGRESS, Progress
from .repack import RepackPlan, plan_repack, repack
from .reachability import (BulkMarks, Marker, RootScan, WorkspaceState, collect_roots, mark_in_bulk,
                           mark_reachable, settle_cache)
from .plumbing import utc_iso
from .units import parse_duration, parse_percent
from .views import ObjectsView, WorkspaceView

if TYPE_CHECKING:  # store.py loads zstandard; gc.py is imported by every porcelain command
    from .store import OnDisk

LAST_RUN = "gc.last"
_ID, _WHERE, _SIZE = attrgetter("id"), attrgetter("where"), attrgetter("size")

@dataclass
class GcStats:
    dry_run: bool
    prune: float                    # the grace period in seconds
    deleted_objects: int = 0        # deleted (or, with dry_run, would be)
    freed_bytes: int = 0            # stored bytes of those objects
    kept_objects: int = 0
    reachable_objects: int = 0
    young_objects: int = 0          # unreachable but within the grace period (or rule 4)
    deleted_temp_files: int = 0
    freed_temp_bytes: int = 0
    workspaces: list[WorkspaceState] = field(default_factory=list)
    skipped: bool = False           # --auto: the last gc is recent enough
    last_run: float | None = None   # when the previous gc ran, if known
    packs_before: int = 0
    packs_after: int = 0            # (with dry_run: would be)
    loose_before: int = 0           # loose objects
    loose_after: int = 0
    repacked_objects: int = 0       # reached objects copied into the new pack
    merged_packs: int = 0           # packs merged into it
    threshold: float = 0.0          # gc.threshold: percent of a pack that must be garbage to rewrite it
    garbage_kept_objects: int = 0   # collectable, but left in packs under the threshold
    garbage_kept_bytes: int = 0

    @property
    def notes(self) -> list[str]:
        """Lines worth telling the user (on stderr)."""
        lines = []
        would = "would be " if self.dry_run else ""
        for ws in self.workspaces:
            if ws.state == "gone" and ws.released:
                lines.append(f"workspace {ws.root} is gone: its registration {would}removed and "
                             "its snapshots no longer protect objects")
            elif ws.state == "gone":
                since = _when(ws.gone_since) if ws.gone_since is not None else "now"
                lines.append(f"workspace {ws.root} is gone (first seen gone {since}); it protects "
                             "the objects it last held until it has been gone for the grace period")
            elif ws.state == "elsewhere":
                lines.append(f"workspace {ws.root} now uses another object store: its "
                             f"registration {would}removed")
        return lines

    def as_json(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "deleted_objects": self.deleted_objects,
            "freed_bytes": self.freed_bytes,
            "kept_objects": self.kept_objects,
            "prune": int(self.prune) if self.prune == int(self.prune) else self.prune,
            "reachable_objects": self.reachable_objects,
            "young_objects": self.young_objects,
            "deleted_temp_files": self.deleted_temp_files,
            "freed_temp_bytes": self.freed_temp_bytes,
            "skipped": self.skipped,
            "last_run": utc_iso(self.last_run),
            "packs_before": self.packs_before,
            "packs_after": self.packs_after,
            "loose_objects_before": self.loose_before,
            "loose_objects_after": self.loose_after,
            "repacked_objects": self.repacked_objects,
            "merged_packs": self.merged_packs,
            "threshold": int(self.threshold) if self.threshold == int(self.threshold) else self.threshold,
            "garbage_kept_objects": self.garbage_kept_objects,
            "garbage_kept_bytes": self.garbage_kept_bytes,
            "workspaces": [{"path": str(ws.root), "state": ws.state, "released": ws.released}
                           for ws in self.workspaces],
        }


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def grace_period(repo: WorkspaceView, prune: str | float | None) -> float:
    """--prune DURATION|now, or the gc.prune setting."""
    if prune is None:
        return float(repo.config.get("gc.prune"))
    if isinstance(prune, (int, float)):
        return max(0.0, float(prune))
    return parse_duration(prune)


def pack_threshold(repo: WorkspaceView, threshold: str | float | None) -> float:
    """--threshold PERCENT, or the gc.threshold setting."""
    if threshold is None:
        return float(repo.config.get("gc.threshold"))
    return parse_percent(str(threshold), "gc --threshold")


def last_run(repo: WorkspaceView) -> float | None:
    return registry.read_float(repo.store_root / LAST_RUN)


def _refuse(kind: str, oid: str, detail: str) -> None:
    raise CorruptStoreError(
        f"gc deleted nothing: {detail}",
        hints=["`rnstore fsck` lists the damage; gc runs once every root can be read"])


def gc(repo: WorkspaceView, *, dry_run: bool = False, prune: str | float | None = None, auto: bool = False,
       threshold: str | float | None = None, aggressive: bool = False,
       progress: Progress = NO_PROGRESS) -> GcStats:
    """Delete the objects no root reaches that are older than the grace
    period (`prune`, default the gc.prune setting; 0 or "now": any age), and
    stale temporary files. A pack is rewritten only when at least
    `threshold` percent of it goes (default the gc.threshold setting).
    With `auto`, do nothing unless the last gc of this store ran more than
    gc.interval ago. With `aggressive`, repack every pack and loose object
    into one pack, choosing the deltas anew (git gc --aggressive); otherwise
    only loose objects and small packs are merged. With `dry_run`, change
    nothing and report what would be deleted."""
    grace = grace_period(repo, prune)
    stats = GcStats(dry_run=dry_run, prune=grace, last_run=last_run(repo),
                    threshold=pack_threshold(repo, threshold))
    if auto and not _due(repo, stats.last_run):
        stats.skipped = True
        return stats
    with repo.store_lock(shared=False):
        stats.last_run = last_run(repo)
        if auto and not _due(repo, stats.last_run):  # another gc ran while we waited
            stats.skipped = True
            return stats
        now = time.time()
        scan = collect_roots(repo, _refuse, grace=grace, now=now)
        stats.workspaces = scan.workspaces
        progress.start("gc: marking", unit="object")
        try:
            marker = mark_in_bulk(repo, scan.roots, save=not dry_run)
            if marker is None:  # something unusual: the Marker marks, and says what
                marker = mark_reachable(repo, scan.roots, _refuse, progress, by_unit=False, save=not dry_run)
            else:
                progress.advance(len(marker))
        finally:
            progress.finish()
        stored = list(repo.store.stored_objects())
        stored_ids = set(map(_ID, stored))
        # the reachability cache is checked against the store before any mark counts
        marker = settle_cache(repo, marker, stored_ids, scan.roots, _refuse)
        stats.reachable_objects = len(marker)
        _refuse_missing(repo, marker, scan, stored_ids)
        # Everything could be read: from here on gc may change the store.
        if not dry_run:
            _update_registrations(repo, scan, now)
        stats.loose_before, stats.packs_before = _counts(repo)
        doomed, left = _sweep(repo, marker, scan, stats, stored, grace=grace, now=now, progress=progress)
        _repack(repo, marker, stats, stored, doomed, left, progress, full=aggressive, collectable=lambda obj: (
            obj.id not in marker and not _young(obj, scan, grace=grace, cutoff=now - grace)))
        if not dry_run:
            atomic_write(repo.store_root / LAST_RUN, f"{now:.3f}\n".encode(), durable=False,
                         shared=repo.group_shared)
    return stats


def _repack(repo: WorkspaceView, marker: Marker | BulkMarks, stats: GcStats, stored: list, doomed: list, left: list,
            progress: Progress, collectable, full: bool = False) -> None:
    """Consolidate loose objects and small packs (repack.py); with dry_run,
    count what it would do. `collectable(copy)`: whether the sweep would
    delete an unreachable copy but for a delta that needs it, or a pack
    under the threshold (`left`) that holds it (repack.py)."""
    store = repo.store
    most_packs = repo.config.get("gc.auto_packs")
    gone = {(o.id, o.where) for o in doomed}
    if stats.dry_run or not any(o.packed for o in doomed):  # no pack rewritten: the listing less what goes
        plan = _plan_after_sweep(store, stored, doomed, marker, most_packs, collectable, full=full)
    else:  # as the sweep left it (a rewritten pack has a new name)
        plan = plan_repack(store, list(store.stored_objects()), marker, most_packs=most_packs,
                           full=full, collectable=collectable)
    stats.merged_packs = len(plan.merged_packs)
    if plan.objects:  # the dead copies it removes with what it replaces were counted as kept by the sweep
        stats.deleted_objects += len(plan.collectable)
        stats.freed_bytes += sum(o.size for o in plan.collectable)
        stats.kept_objects -= len(plan.collectable)
        left_behind = {(o.id, o.where) for o in left}
        merged_garbage = [o for o in plan.collectable if (o.id, o.where) in left_behind]
        stats.garbage_kept_objects -= len(merged_garbage)
        stats.garbage_kept_bytes -= sum(o.size for o in merged_garbage)
    if stats.dry_run:
        stats.repacked_objects = len(plan.objects)
        moved = {o.where for o in plan.replaced if not o.packed} | {o.where for o in plan.redundant if not o.packed}
        stats.loose_after = stats.loose_before - len(moved)
        stats.packs_after = len(plan.kept_packs) + (1 if plan.objects else 0) + sum(
            1 for where in plan.merged_packs
            if any(o.where == where and o.id not in marker for o in stored if (o.id, o.where) not in gone))
        return
    if not plan.empty:
        repack(store, plan, kinds=marker.kind, deltas=repo.config.get("pack.deltas"),
               depth=repo.config.get("pack.depth"), level=repo.config.get("compression.level"),
               aggressive=full, progress=progress)
    stats.repacked_objects = len(plan.objects) - len(plan.skipped)
    stats.loose_after, stats.packs_after = _counts(repo)


def _plan_after_sweep(store, stored: list, doomed: list, reached, most_packs: int, collectable,
                      full: bool = False) -> RepackPlan:
    """The repack that follows a sweep deleting `doomed` from `stored`."""
    # (a copy is a named tuple: these are the very values listed in `stored`)
    return plan_repack(store, list(filterfalse(set(doomed).__contains__, stored)), reached,
                       most_packs=most_packs, full=full, collectable=collectable)


def reclaimable_now(repo: WorkspaceView, stored: list, reached) -> list:
    """The copies `gc --prune now` would delete, by its sweep and then its
    repack, as its dry run counts them (du's reclaimable bytes): not those
    it leaves in packs under gc.threshold. `reached`: what the roots reach
    (a Marker)."""
    store = repo.store
    unreachable = [obj for obj in stored if obj.id not in reached]
    doomed = plan_sweep(store, stored, unreachable, pack_threshold(repo, None))[0]
    plan = _plan_after_sweep(store, stored, doomed, reached, repo.config.get("gc.auto_packs"),
                             lambda obj: obj.id not in reached)
    return doomed + plan.collectable if plan.objects else doomed


def _counts(repo: ObjectsView) -> tuple[int, int]:
    """(loose objects, packs) in the store now."""
    return repo.store.loose_and_packs()


def _refuse_missing(repo: ObjectsView, marker: Marker | BulkMarks, scan: RootScan, stored: set[str]) -> None:
    """Rule 2 for what marking does not read: every object a root reaches
    must be stored (blobs are not opened while marking)."""
    missing = marker.owner.keys() - stored
    if missing:
        missing -= {r.id for r in scan.roots if r.name == "last seen roots"}  # may be gone
    missing = sorted(missing)
    if not missing:
        return
    damaged = repo.store.damaged_packs()
    why = ("; damaged: " + ", ".join(f"{path} ({reason})" for path, reason in sorted(damaged.items()))
           if damaged else "")
    listed = ", ".join(f"{marker.kind[oid]} {oid}" for oid in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    _refuse("missing", missing[0],
            f"{len(missing)} object{'s' if len(missing) != 1 else ''} that roots reach "
            f"{'are' if len(missing) != 1 else 'is'} missing: {listed}{more}{why}")


def start_auto_gc(repo: WorkspaceView) -> tuple[int, str] | None:
    """Start `rnstore gc --auto -q` in the background, detached (its own
    session, at low priority, no terminal), when it is due; (its pid, why it
    is due), or None when it is not due, gc.auto is false, or it could not be started. Never
    raises: the command that added objects has succeeded whatever happens."""
    try:
        if not repo.config.get("gc.auto"):
            return None
        previous = last_run(repo)
        if previous is None:  # never collected: count from when the store was made
            previous = os.stat(repo.store_root / registry.STORE_MARKER).st_mtime
        reason = _due(repo, previous)
        if reason is None:
            return None
        child = subprocess.Popen(
            [sys.executable, "-c", _LOW_PRIORITY_GC, "gc", "--auto", "-q"],
            cwd=repo.root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        child.returncode = 0  # never waited for: it outlives this process
        return child.pid, reason
    except Exception:  # noqa: BLE001 - a background gc is never worth failing a commit
        return None


#: The background gc's program: lowered priority (os.nice in the child
#: itself: Popen's preexec_fn is unsafe in a process that has threads).
_LOW_PRIORITY_GC = "import os, sys; os.nice(10); from rnstore.cli import main; main(sys.argv[1:])"


def _due(repo: WorkspaceView, previous: float | None) -> str | None:
    """Why gc --auto has work, or None: gc.interval has passed since the
    last gc, or the store holds more loose objects than gc.auto_loose or
    more packs than gc.auto_packs (0 turns either off)."""
    if previous is None or time.time() - previous > float(repo.config.get("gc.interval")):
        return "the last gc ran more than gc.interval ago"
    most_loose, most_packs = repo.config.get("gc.auto_loose"), repo.config.get("gc.auto_packs")
    loose, packs = repo.store.loose_and_packs(estimate=True)
    if most_loose and loose > most_loose:
        return f"the store holds more than {most_loose:,} loose objects (gc.auto_loose)"
    if most_packs and packs > most_packs:
        return f"the store holds more than {most_packs:,} packs (gc.auto_packs)"
    return None


def _update_registrations(repo: WorkspaceView, scan: RootScan, now: float) -> None:
    """Record the roots of every live workspace (rule 4 reads them if it goes
    away), mark newly gone ones, and drop the registrations of released or
    moved ones."""
    if not repo.shared_store:
        return
    by_workspace: dict[str, list[tuple[str, str]]] = {}
    for root in scan.roots:
        by_workspace.setdefault(str(root.workspace), []).append((root.kind, root.id))
    for ws in scan.workspaces:
        if ws.state == "here" and ws.registration is None:
            ws.registration = repo.register()
        registration = ws.registration
        if registration is None:
            continue
        if ws.state in ("here", "alive"):
            registry.record_roots(registration, by_workspace.get(str(ws.dotdir), []), durable=repo.durable,
                                  shared=repo.group_shared)
        elif ws.released or ws.state == "elsewhere":
            registry.unregister(registration)
        elif ws.gone_since is None:
            registry.mark_gone(registration, now, shared=repo.group_shared)


def _workspace_temp_files(repo: WorkspaceView, scan: RootScan) -> list[Path]:
    """Leftovers of atomic_write (index, HEAD, refs, config, registrations)
    in every workspace the store serves; the objects folder is the store's."""
    found = []
    folders = {ws.dotdir for ws in scan.workspaces if ws.state in ("here", "alive")}
    folders.add(repo.dotdir)
    for dotdir in sorted(folders):
        for folder, subfolders, files in os.walk(dotdir):
            found.extend(Path(folder, f) for f in files if f.startswith(TMP_PREFIX))
            # a temporary folder (a clone's .tmp-fetched-PID-*) goes whole, unread
            found.extend(Path(folder, d) for d in subfolders if d.startswith(TMP_PREFIX))
            subfolders[:] = [d for d in subfolders if d != "objects" and not d.startswith(TMP_PREFIX)]
    registrations = repo.store_root / registry.WORKSPACES
    if registrations.is_dir():
        found.extend(p for p in registrations.iterdir() if p.name.startswith(TMP_PREFIX))
    # These writers do not hold the store lock, so a temporary file whose
    # writer still runs may be in use, whatever its age.
    return [p for p in found if not _writer_alive(p.name)]


def _folder_size(path: Path) -> int:
    size = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return size


def _writer_alive(name: str) -> bool:
    pid = temp_writer_pid(name)
    return pid is not None and pid_alive(pid)


def _young(obj, scan: RootScan, *, grace: float, cutoff: float) -> bool:
    """An unreachable copy gc spares for its age (rules 3 and 4)."""
    return (grace > 0 and obj.mtime >= cutoff) or (
        scan.keep_newer_than is not None and obj.mtime >= scan.keep_newer_than)


def _sweep(repo: WorkspaceView, marker: Marker | BulkMarks, scan: RootScan, stats: GcStats, stored: list, *,
           grace: float, now: float, progress: Progress) -> tuple[list, list]:
    """Delete what no root reaches and is old enough; (what it deleted,
    what it left in packs under the threshold)."""
    store = repo.store
    cutoff = now - grace
    candidates = []
    young = 0
    reached = marker.owner  # a dict: membership without a method call per object
    # the unreached copies, picked in C loops (a store lists tens of thousands)
    for obj in compress(stored, map(not_, map(reached.__contains__, map(_ID, stored)))):
        if _young(obj, scan, grace=grace, cutoff=cutoff):
            young += 1
        else:
            candidates.append(obj)
    doomed, left = plan_sweep(store, stored, candidates, stats.threshold)
    stats.young_objects = young
    stats.kept_objects = len(stored) - len(doomed)
    stats.deleted_objects = len(doomed)
    stats.freed_bytes = sum(o.size for o in doomed)
    stats.garbage_kept_objects = len(left)
    stats.garbage_kept_bytes = sum(o.size for o in left)
    if doomed:
        progress.start("gc: deleting", len(doomed), stats.freed_bytes, unit="object")
    try:
        if not stats.dry_run:
            store.delete_stored(doomed)
        progress.advance(len(doomed), stats.freed_bytes)
        stale = [t for t in store.temp_files() if not (grace > 0 and t.mtime >= cutoff)]
        if not stats.dry_run:
            store.delete_temp_files(stale)
        stats.deleted_temp_files += len(stale)
        stats.freed_temp_bytes += sum(t.size for t in stale)
        for path in _workspace_temp_files(repo, scan):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if grace > 0 and st.st_mtime >= cutoff:
                continue
            folder = stat.S_ISDIR(st.st_mode)
            stats.deleted_temp_files += 1
            stats.freed_temp_bytes += _folder_size(path) if folder else st.st_size
            if not stats.dry_run:
                shutil.rmtree(path, ignore_errors=True) if folder else remove_quietly(path)
    finally:
        progress.finish()
    return doomed, left


def plan_sweep(store, stored: list[OnDisk], candidates: list[OnDisk],
               threshold: float) -> tuple[list[OnDisk], list[OnDisk]]:
    """Of `candidates`, unreachable copies among `stored` old enough to go:
    (those gc deletes, those it leaves in packs under `threshold`). A loose
    copy always goes. A pack is rewritten without its candidates only when
    they make at least `threshold` percent of its stored bytes, counted
    after sparing the bases of deltas that stay (FORMAT.md, Deltas), which
    never go; below that, the pack stays whole. So only the packs worth
    rewriting are read for their deltas' bases."""
    pack_bytes: dict[str, int] = {}   # of the packs holding candidates
    wanted = {obj.where for obj in candidates if obj.packed}
    if wanted:  # a run of copies at a time (a pack's are listed together), summed in C
        for where, copies in groupby(stored, key=_WHERE):
            if where in wanted:
                pack_bytes[where] = pack_bytes.get(where, 0) + sum(map(_SIZE, copies))
    left: list[OnDisk] = []

    def worth_it(copies: list[OnDisk]) -> bool:
        if not copies or not copies[0].packed:
            return True
        return sum(o.size for o in copies) * 100 >= threshold * pack_bytes.get(copies[0].where, 0)

    rewritten = []
    for copies in _by_where(candidates).values():
        (rewritten if worth_it(copies) else left).extend(copies)
    spared = set(store.needed_bases(rewritten)) if rewritten else set()
    doomed = []
    for copies in _by_where(obj for obj in rewritten if obj not in spared).values():
        (doomed if worth_it(copies) else left).extend(copies)
    return doomed, left


def _by_where(copies) -> dict[str, list[OnDisk]]:
    found: dict[str, list[OnDisk]] = {}
    for obj in copies:
        found.setdefault(obj.where, []).append(obj)
    return found


__all__ = ["gc", "GcStats", "grace_period", "last_run", "start_auto_gc"]
