"""Retention on a remote: its live snapshots, forget and gc, safe beside
machines that push. FORMAT.md ("Remote gc") is the protocol; in short:

Roots are every ref's latest version and every snapshot record. A pack is
garbage when nothing a root reaches (the snapshot and its trees and blobs;
parents are not followed, as locally) is in it, and it is older than the
grace period. gc never deletes at once:

1. It marks from the roots, then writes a *plan* (gc/TOKEN.plan) naming the
   packs it condemns. A push that starts after the plan is visible treats
   those packs as absent (and never reuses their names), so it uploads what
   it needs again.
2. It lists the *pending pushes* (pushes/TOKEN, written by every push
   before it reads the remote's indexes, removed when its refs are written)
   and waits until each one that existed then is gone or stale (not
   refreshed for STALE seconds: its pusher died). Those pushes may
   have decided to reuse objects in condemned packs.
3. It reads the roots and indexes again and spares every condemned pack
   holding the only copy of an object they now reach.
4. It deletes each remaining pack's index, then the pack, then its plan.

A collector rewrites its plan every REFRESH seconds until it deletes it,
and deletes another's plan only once stale: two collectors may run at
once (scheduled jobs overlap; a gc may wait long for a push), and a push
must go on avoiding a live collector's packs. A crashed collector leaves
its plan; pushes keep avoiding those packs until a later gc, once the
plan is stale, removes it (having condemned them again if still garbage).
A crashed pusher's marker delays gc for at most STALE seconds.
Unreadable roots, snapshot records, trees or indexes stop gc before it
writes its plan: unreadable is never "references nothing".
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from ..views import WorkspaceView
from ..errors import CorruptObjectError, CorruptStoreError, InvalidValueError, ObjectError
from ..objects import MODE_TREE, SNAPSHOT, TREE, decode_snapshot, decode_tree
from ..forget import select
from ..packs import PackWriter
from ..progress import NO_PROGRESS
from ..refs import HEADS, TAGS
from ..store import MemoryStore
from ..units import parse_duration
from . import layout
from .backend import RemoteError
from .layout import Location
from .remote import STALE, PushMarker, Remote, RemoteRef
from .transfer import _ALL_KINDS, RefUpdate, TransferResult, _ranges, _read_range, _send_pack, open_remote

#: How often a collector rewrites its plan while it runs (well below STALE).
REFRESH = PushMarker.REFRESH
#: How often gc looks again while it waits for pushes to finish.
POLL = 0.5
#: A pack whose reachable frames make less than this share of its bytes is
#: rewritten with only those; above it, the pack is kept whole. A rewrite
#: downloads and uploads the live part to free the dead part: below half,
#: at most 2 bytes moved per byte freed (`remote_bench.py --rewrite-cost`).
REWRITE_BELOW = 0.5


# -- the live set -----------------------------------------------------------------------------

@dataclass
class RemoteSnapshot:
    id: str
    time: str
    message: str
    refs: list[str] = field(default_factory=list)


class RemoteSnapshots(list):
    """RemoteSnapshot entries, newest first; `damaged`: (id, why) of the
    records that could not be read (a listing names them, and goes on)."""

    def __init__(self, found=(), damaged=()):
        super().__init__(found)
        self.damaged: list[tuple[str, str]] = list(damaged)


class _RemoteRefs:
    """What forget() and revparse need of a RefStore, over a remote's refs."""

    def __init__(self, refs: dict[str, RemoteRef]):
        self._refs = {ref: state.id for ref, state in refs.items() if state.id is not None}

    def list(self, prefix: str = "refs/") -> dict[str, str]:
        return {ref: oid for ref, oid in sorted(self._refs.items()) if ref.startswith(prefix)}

    def resolve(self, ref: str) -> str | None:
        return self._refs.get(ref)

    def head(self) -> tuple[str | None, str | None]:
        return None, None


class _RemoteRecords:
    """What forget() needs of a Journal, over a remote's snapshot records."""

    def __init__(self, remote: Remote, ids: set[str]):
        self.remote, self.ids = remote, ids

    def __iter__(self):
        return iter(sorted(self.ids))

    def __contains__(self, oid: str) -> bool:
        return oid in self.ids

    def discard(self, oid: str) -> bool:
        self.remote.backend.delete(layout.SNAPSHOTS + oid)
        self.ids.discard(oid)
        return True


class RemoteView:
    """A remote's live set seen as a repository (refs, journal, a store of
    its snapshot records), so that the local forget's rules apply as they are."""

    def __init__(self, remote: Remote):
        self.remote = remote
        refs = remote.refs()
        self.refs = _RemoteRefs(refs)
        ids = remote.record_ids()
        self.store = MemoryStore()
        frames = remote._map(lambda oid: (oid, _get_or_none(remote, layout.SNAPSHOTS + oid)), sorted(ids))
        for oid, frame in frames:
            if frame is not None:
                self.store.frames[oid] = frame
        self.journal = _RemoteRecords(remote, {oid for oid, frame in frames if frame is not None})

    def snapshots(self) -> RemoteSnapshots:
        names: dict[str, list[str]] = {}
        for ref, oid in self.refs.list().items():
            names.setdefault(oid, []).append(ref[len(HEADS):] if ref.startswith(HEADS) else
                                             "tag " + ref[len(TAGS):] if ref.startswith(TAGS) else ref)
        found = RemoteSnapshots()
        for oid in self.journal:
            try:
                snapshot = self.store.get_snapshot(oid)
            except ObjectError as exc:  # one damaged record hides none of the others
                found.damaged.append((oid, str(exc)))
                continue
            found.append(RemoteSnapshot(oid, snapshot.time, snapshot.message, names.get(oid, [])))
        found.sort(key=lambda s: (s.time, s.id), reverse=True)
        return found


def _get_or_none(remote: Remote, key: str) -> bytes | None:
    try:
        return remote.backend.get(key)
    except FileNotFoundError:
        return None  # forgotten since the listing


def remote_snapshots(repo: WorkspaceView, name: str) -> RemoteSnapshots:
    """The snapshots a remote keeps alive (its records), newest first; the
    records that cannot be read in its `damaged`."""
    remote = open_remote(repo, name)
    remote.require()
    return RemoteView(remote).snapshots()


def forget_remote(repo: WorkspaceView, name: str, revs: Iterable[str] = (), **options):
    """The local forget's rules and report, applied to a remote's records
    (a forgotten snapshot's record is deleted; gc --remote frees the rest)."""
    remote = open_remote(repo, name)
    remote.require()
    view = RemoteView(remote)
    result = select(view, revs, **options)
    if not result.dry_run:
        remote._map(lambda item: view.journal.discard(item.id), result.removed)
    return result


def delete_refs(repo: WorkspaceView, name: str, refs: Iterable[str]):
    """push --delete: remove remote branches or tags by compare-and-swap."""
    remote = open_remote(repo, name)
    remote.require()
    current = remote.refs()
    result = TransferResult(name)
    for given in refs:
        candidates = [given] if given.startswith("refs/") else [HEADS + given, TAGS + given]
        ref = next((r for r in candidates if r in current and current[r].id is not None), None)
        if ref is None:
            raise InvalidValueError(f"the remote has no branch or tag named '{given}'")
        while True:
            state = remote.ref(ref)
            if state.id is None:
                result.refs.append(RefUpdate(ref, None, None, "up-to-date"))
                break
            if remote.swap_ref(state, None):
                result.refs.append(RefUpdate(ref, state.id, None, "deleted"))
                break
    return result


# -- gc ---------------------------------------------------------------------------------------

@dataclass
class RemoteGcStats:
    dry_run: bool
    prune: float
    deleted_packs: int = 0
    deleted_objects: int = 0
    freed_bytes: int = 0
    kept_packs: int = 0
    kept_objects: int = 0
    young_packs: int = 0          # garbage, but within the grace period
    spared_packs: int = 0         # condemned, then found needed by a push that ran meanwhile
    rewritten_packs: int = 0      # mostly garbage: what stays copied to a new pack
    deleted_ref_versions: int = 0
    waited_seconds: float = 0.0
    requests: int = 0

    def as_json(self) -> dict:
        return asdict(self)


def gc_remote(repo: WorkspaceView, name: str, *, dry_run: bool = False, prune: str | float | None = None,
              wait_for: Callable[[float], None] = time.sleep) -> RemoteGcStats:
    """Delete the packs no remote root reaches; see the module docstring."""
    if prune is None:
        grace = repo.config.get("gc.prune")
    elif isinstance(prune, (int, float)):
        grace = float(prune)
    else:
        grace = 0.0 if prune == "now" else parse_duration(prune)
    remote = open_remote(repo, name)
    remote.require()
    stats = RemoteGcStats(dry_run, grace)
    before = remote.backend.requests
    trees: dict[str, tuple] = {}
    # Roots before indexes: a pusher writes its indexes before the record
    # and ref naming them, so every object a root read here names is in an
    # index listed after it (unless it is really gone).
    roots = _roots(remote)
    by_pack = remote.load_pack_indexes(cached=False)
    reachable = _mark(remote, roots, _merged(by_pack), trees)
    now = _server_now(remote)
    garbage: dict[str, tuple[int, int]] = {}
    rewrite: dict[str, dict[str, Location]] = {}
    for pack, info in _pack_infos(remote).items():
        members = by_pack.get(pack, {})
        live = {oid: loc for oid, loc in members.items() if oid in reachable}
        live_bytes = sum(loc.length for loc in live.values())
        young = info.mtime is not None and now - info.mtime < grace
        if young and not live:
            stats.young_packs += 1
        elif young or (live and live_bytes >= REWRITE_BELOW * info.size):
            stats.kept_packs += 1
            stats.kept_objects += len(members)
        elif live:
            rewrite[pack] = live
            garbage[pack] = (info.size - live_bytes, len(members) - len(live))
            stats.kept_objects += len(live)
        else:
            garbage[pack] = (info.size, len(members))
    if dry_run:
        stats.deleted_packs = len(garbage)
        stats.deleted_objects = sum(n for _, n in garbage.values())
        stats.freed_bytes = sum(size for size, _ in garbage.values())
        stats.requests = remote.backend.requests - before
        return stats
    plan_key = f"{layout.PLANS}{int(now)}-{secrets.token_hex(8)}.plan"
    if rewrite:
        # the kept frames in new packs first: once the old packs are
        # condemned, these are their objects' copies
        _rewrite(remote, rewrite, condemned=set(garbage))
        stats.rewritten_packs = len(rewrite)
    if garbage:
        with _KeptFresh(remote, plan_key, json.dumps({"packs": sorted(garbage)}).encode() + b"\n") as plan:
            stats.waited_seconds = _wait_for_pushes(remote, plan_key, wait_for)
            _delete_garbage(remote, garbage, trees, stats, plan)
    stats.deleted_ref_versions = _trim_ref_versions(remote, now, grace)
    _delete_stale_plans(remote)
    stats.requests = remote.backend.requests - before
    return stats


def _delete_garbage(remote: Remote, garbage: dict[str, tuple[int, int]], trees: dict,
                    stats: RemoteGcStats, plan: "_KeptFresh") -> None:
    # Again, now that every push that might not have seen the plan is over:
    # a condemned pack holding the only copy of an object a root now
    # reaches is spared.
    roots = _roots(remote)
    by_pack = remote.load_pack_indexes(cached=False)
    reachable = _mark(remote, roots, _merged(by_pack), trees)
    elsewhere = {oid for pack, members in by_pack.items() if pack not in garbage for oid in members}
    needed = {pack for pack in garbage
              if any(oid in reachable and oid not in elsewhere for oid in by_pack.get(pack, {}))}
    for pack in sorted(garbage):
        if pack in needed:
            stats.spared_packs += 1
            continue
        plan.require_fresh()
        remote.backend.delete(layout.index_key(pack))
        remote.backend.delete(layout.pack_key(pack))
        size, count = garbage[pack]
        stats.deleted_packs += 1
        stats.deleted_objects += count
        stats.freed_bytes += size


class _KeptFresh:
    """A collector's plan: written on entry, rewritten every REFRESH seconds
    by a thread (so that no other collector takes it for a dead one's and
    removes it while pushes must still avoid its packs), deleted on a clean
    exit. Left behind by a crash, it goes stale."""

    def __init__(self, remote: Remote, key: str, data: bytes):
        self.remote, self.key, self.data = remote, key, data
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="rnstore-gc-plan", daemon=True)
        self._written = 0.0

    def __enter__(self):
        self.remote.backend.put(self.key, self.data)
        self._written = time.monotonic()
        self._thread.start()
        return self

    def _keep(self) -> None:
        while not self._stop.wait(REFRESH):
            try:
                self.remote.backend.put(self.key, self.data)
                self._written = time.monotonic()
            except Exception:
                pass  # require_fresh() stops the deletions if this lasts

    def require_fresh(self) -> None:
        """Delete nothing once the plan may have looked stale to another
        collector (which may then have removed it)."""
        if time.monotonic() - self._written > STALE - 2 * REFRESH:
            raise RemoteError(f"{self.remote.describe}: remote gc stopped: its plan could not be kept "
                              "fresh; the remaining packs were left for the next gc")

    def __exit__(self, kind, exc, tb):
        self._stop.set()
        self._thread.join()
        if kind is None:
            self.remote.backend.delete(self.key)
        return False


def _delete_stale_plans(remote: Remote, older_than: float = STALE) -> int:
    """Plans (and clock probes) that crashed collectors left, once stale; a
    live collector's plan is fresh, and stays. Returns how many went."""
    listing = remote.backend.list(layout.PLANS)
    if not listing:
        return 0
    now = _server_now(remote)
    stale = [key for key, info in listing.items() if info.mtime is not None and now - info.mtime >= older_than]
    for key in stale:
        remote.backend.delete(key)
    return len(stale)


def _rewrite(remote: Remote, rewrite: dict[str, dict[str, Location]], *, condemned: set[str]) -> None:
    """The live frames of each pack in `rewrite`, uploaded as a new pack,
    never under a name about to be condemned (a crashed rewrite's leftover
    pack, with no index, is garbage of this very run)."""
    with tempfile.TemporaryDirectory(prefix="rnstore-gc-") as folder:
        for number, (pack, live) in enumerate(sorted(rewrite.items())):
            writer = PackWriter(folder, f"{folder}/.tmp-{number}", fsync=False, eager=True)
            kinds = {}
            for item in _ranges(sorted(live.items())):
                for oid, frame, _ in _read_range(remote, item, frozenset())[0]:
                    writer.add(oid, frame)
                    kinds[oid] = live[oid].kind
            _send_pack(remote, writer.finish(), kinds, TransferResult(""), NO_PROGRESS,
                       _NoMarker(), condemned)


class _NoMarker:
    def refresh_if_due(self) -> None:
        pass


def _merged(by_pack: dict[str, dict[str, Location]]) -> dict[str, Location]:
    index: dict[str, Location] = {}
    for pack in sorted(by_pack):
        for oid, location in by_pack[pack].items():
            index.setdefault(oid, location)
    return index


def _pack_infos(remote: Remote):
    """Every pack (with or without an index: a crashed push's leftover)
    with its size and age."""
    found = {}
    for key, info in remote.backend.list(layout.PACKS).items():
        name = layout.pack_name_of(key, layout.PACKS, layout.PACK_SUFFIX)
        if name:
            found[name] = info
    return found


def _server_now(remote: Remote) -> float:
    """Now by the storage's clock (ages are compared with its timestamps)."""
    key = f"{layout.PLANS}clock-{secrets.token_hex(8)}"
    remote.backend.put(key, b"")
    info = remote.backend.stat(key)
    remote.backend.delete(key)
    return info.mtime if info is not None and info.mtime is not None else time.time()


def _wait_for_pushes(remote: Remote, plan_key: str, wait_for) -> float:
    """Wait until every push announced before the plan was written is over
    (or stale). Returns the seconds waited."""
    plan_time = remote.backend.stat(plan_key).mtime or time.time()
    listed = remote.backend.list(layout.PUSHES)
    waiting = {key for key, info in listed.items()
               if info.mtime is None or plan_time - info.mtime < STALE}
    # A marker whose time stays put while we wait STALE seconds was not
    # rewritten: its pusher died, whatever the time says. Else one dated
    # in the future (a writer's clock ahead, or a hand) held gc for ever.
    seen = {key: listed[key].mtime for key in waiting}
    unchanged = dict.fromkeys(waiting, 0.0)
    started = time.monotonic()
    while waiting:
        wait_for(POLL)
        now = _server_now(remote)
        current = remote.backend.list(layout.PUSHES)
        still = set()
        for key in waiting:
            mtime = current[key].mtime if key in current else None
            if key not in current or (mtime is not None and now - mtime >= STALE):
                continue
            if mtime is not None and mtime == seen[key]:
                unchanged[key] += POLL
                if unchanged[key] >= STALE:
                    continue
            else:
                seen[key], unchanged[key] = mtime, 0.0
            still.add(key)
        waiting = still
    return time.monotonic() - started


def _roots(remote: Remote) -> set[str]:
    """Every ref's latest id and every snapshot record."""
    refs = remote.refs()
    return {state.id for state in refs.values() if state.id is not None} | remote.record_ids()


def _mark(remote: Remote, roots: set[str], index: dict[str, Location], trees: dict) -> set[str]:
    """Every id a root reaches (snapshots and their trees and blobs). Trees
    are read from the packs in merged ranges, level by level, and kept in
    `trees` (by id: immutable) for the second marking."""
    reachable: set[str] = set()
    level = [(oid, SNAPSHOT) for oid in sorted(roots)]
    while level:
        todo = [(oid, kind) for oid, kind in level if oid not in reachable]
        reachable.update(oid for oid, _ in todo)
        absent = [oid for oid, _ in todo if oid not in trees and oid not in index]
        if absent:
            raise CorruptStoreError(
                f"remote gc stopped: object {absent[0]} that a remote root reaches is missing "
                f"from every pack index ({len(absent)} missing); nothing was deleted",
                hints=["push the affected snapshots again, or forget them with `forget --remote`"])
        wanted = [(oid, index[oid]) for oid, _ in todo if oid not in trees]
        for item in _ranges(wanted):
            try:
                for oid, _frame, payload in _read_range(remote, item, _ALL_KINDS)[0]:
                    trees[oid] = (index[oid].kind, payload)
            except CorruptObjectError as exc:
                raise CorruptStoreError(f"remote gc stopped: {exc}; nothing was deleted") from None
        level = []
        for oid, kind in todo:
            stored_kind, payload = trees[oid]
            try:
                if kind == SNAPSHOT:
                    level.append((decode_snapshot(payload).tree, TREE))
                    continue
                for entry in decode_tree(payload).entries:
                    if entry.mode == MODE_TREE:
                        level.append((entry.id, TREE))
                    else:
                        reachable.add(entry.id)
            except CorruptObjectError as exc:
                raise CorruptStoreError(f"remote gc stopped: object {oid} cannot be decoded: {exc}; "
                                        "nothing was deleted") from None
    return reachable


def _trim_ref_versions(remote: Remote, now: float, grace: float) -> int:
    """Every version of a ref but its latest, once older than the grace
    period (the latest is never deleted: numbering never restarts)."""
    listing = remote.backend.list(layout.REFS)
    latest: dict[str, int] = {}
    for key in listing:
        parsed = layout.parse_ref_key(key)
        if parsed is not None:
            latest[parsed[0]] = max(latest.get(parsed[0], -1), parsed[1])
    deleted = 0
    for key, info in listing.items():
        parsed = layout.parse_ref_key(key)
        if parsed is None or parsed[1] == latest[parsed[0]]:
            continue
        if info.mtime is not None and now - info.mtime < grace:
            continue
        remote.backend.delete(key)
        deleted += 1
    return deleted


__all__ = ["gc_remote", "forget_remote", "remote_snapshots", "RemoteSnapshots", "delete_refs", "RemoteGcStats",
           "RemoteSnapshot", "STALE"]
