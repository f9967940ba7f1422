"""du: where the space goes - store totals, and what each live snapshot
holds alone.

One marking pass over the reachable graph (see reachability.Marker) records, for every
object, the one unit that reaches it or SHARED. A unit is one snapshot of one
workspace (live, named by refs, or both) or one workspace's index, so a
snapshot's `exclusive_bytes` - the stored bytes of objects reachable from it
and from no other root - is the sum over the objects it owns: what `forget`
plus deleting every ref naming it, then `gc --prune now`, would free.

Figures (all store-wide, over every workspace the store serves):

- objects, blobs, trees, snapshots: stored objects (store.stored_objects), by kind
- stored_bytes: their stored bytes (compressed frames)
- logical_bytes: sum of the sizes of the distinct blobs stored
- referenced_bytes: sum of the restore sizes of the distinct live snapshots
- unreachable_bytes: stored bytes of objects no root reaches
- reclaimable_bytes: what `gc --prune now` would free of those
  (gc.reclaimable_now; plain `gc` spares those within the grace period too):
  not the bases of deltas that stay, nor what lies in packs less than
  gc.threshold percent garbage, which gc leaves whole
- dedup_ratio: referenced_bytes / logical_bytes (1.0 when empty)
- compression_ratio: logical_bytes / stored bytes of the blobs (1.0 when empty)

The count is done in bulk (_count_in_bulk): each unit marks into sets, a
folder's files at once, and the store is listed as two lists; anything
unusual (an unreadable object, an id reached as two kinds) is counted by
the Marker instead, which says what is wrong. The answer is kept in the
workspace's `du-cache` under a key of everything it depends on (FORMAT.md,
"du's answer cache"), so that du on an unchanged store does not count again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from itertools import chain, compress, groupby, repeat
from operator import attrgetter, is_, itemgetter
from typing import Callable, Iterable

from .errors import CorruptStoreError, ObjectError
from .fsutil import atomic_write, open_state
from .reachability import (StoreLoader, collect_roots, mark_reachable, settle_cache, tree_entries_from_store,
                           walk_trees)
from .reachcache import ReachCache
from .objects import BLOB, SNAPSHOT, TREE, meta_count
from .progress import NO_PROGRESS, Progress
from .refs import TAGS, short_name
from .revparse import resolve_snapshot
from .views import WorkspaceView


@dataclass
class StoreUsage:
    objects: int = 0
    blobs: int = 0
    trees: int = 0
    snapshots: int = 0
    stored_bytes: int = 0
    logical_bytes: int = 0
    referenced_bytes: int = 0
    reclaimable_bytes: int = 0
    unreachable_bytes: int = 0
    blob_stored_bytes: int = 0
    unreachable_objects: int = 0
    live_snapshots: int = 0

    @property
    def dedup_ratio(self) -> float:
        return _ratio(self.referenced_bytes, self.logical_bytes)

    @property
    def compression_ratio(self) -> float:
        return _ratio(self.logical_bytes, self.blob_stored_bytes)

    @property
    def space_saving(self) -> float:
        """1 - stored / referenced: the share of the live snapshots' bytes
        that dedup and compression save (0 when nothing is referenced)."""
        if not self.referenced_bytes:
            return 0.0
        return 1.0 - self.stored_bytes / self.referenced_bytes

    def as_json(self) -> dict:
        return {
            "objects": self.objects, "blobs": self.blobs, "trees": self.trees,
            "snapshots": self.snapshots, "stored_bytes": self.stored_bytes,
            "logical_bytes": self.logical_bytes, "referenced_bytes": self.referenced_bytes,
            "reclaimable_bytes": self.reclaimable_bytes,
            "unreachable_bytes": self.unreachable_bytes,
            "dedup_ratio": round(self.dedup_ratio, 4),
            "compression_ratio": round(self.compression_ratio, 4),
            "blob_stored_bytes": self.blob_stored_bytes,
            "unreachable_objects": self.unreachable_objects,
            "live_snapshots": self.live_snapshots,
        }


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


@dataclass
class SnapshotUsage:
    id: str
    time: str
    message: str
    tags: list[str]
    files: int
    logical_bytes: int       # restore size: duplicates inside it counted each time
    exclusive_bytes: int     # stored bytes only it reaches
    live: bool = True

    def as_json(self) -> dict:
        return {"id": self.id, "time": self.time, "message": self.message, "tags": list(self.tags),
                "files": self.files, "logical_bytes": self.logical_bytes,
                "exclusive_bytes": self.exclusive_bytes, "live": self.live}


@dataclass
class DuStats:
    store: StoreUsage
    snapshots: list[SnapshotUsage] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"store": self.store.as_json(), "snapshots": [s.as_json() for s in self.snapshots]}


def _refuse(kind: str, oid: str, detail: str) -> None:
    raise CorruptStoreError(f"du cannot count: {detail}",
                            hints=["`rnstore fsck` lists the damage"])


def du(repo: WorkspaceView, revs: Iterable[str] = (), *, progress: Progress = NO_PROGRESS) -> DuStats:
    """Store totals and, for each live snapshot of this workspace (or each
    snapshot `revs` name), its restore size and exclusive stored bytes."""
    wanted = [resolve_snapshot(repo, rev) for rev in revs]
    # Shared: gc (exclusive) cannot delete what is being counted.
    with repo.store_lock(shared=True):
        scan = collect_roots(repo, _refuse, grace=float(repo.config.get("gc.prune")), now=time.time())
        tags: dict[str, list[str]] = {}
        for ref, oid in repo.refs.list(TAGS).items():
            tags.setdefault(oid, []).append(short_name(ref))
        journal = list(repo.journal)
        key = None if wanted else _answer_key(repo, scan.roots, tags, journal)
        if key is not None:
            answer = _cached_answer(repo, key[0])
            if answer is not None:
                return answer
        progress.start("du: reading trees", unit="object")
        try:
            try:
                counted = _count_in_bulk(repo, scan.roots, progress)
            except _Unusual:
                counted = _count_marked(repo, scan.roots, progress)
        finally:
            progress.finish()
        usage = counted.usage
        live_ids = set(compress(map(_ID, scan.roots), map("live snapshot".__eq__, map(_NAME, scan.roots))))
        usage.live_snapshots = len(live_ids)
        snapshots = counted.snapshots
        usage.referenced_bytes = sum(counted.tree_size(snapshots[oid].tree) or 0
                                     for oid in live_ids if oid in snapshots)

        journal_set = set(journal)
        listed = wanted or sorted(journal_set)
        files = counted.file_counts([snapshots[oid].tree for oid in listed if oid in snapshots])
        rows = []
        for oid in dict.fromkeys(listed):
            snapshot = snapshots.get(oid) or repo.store.get_snapshot(oid)
            tree_size = counted.tree_size(snapshot.tree)
            if tree_size is None:  # no root reaches it: not counted in the pass
                tree_size = repo.store.get_tree(snapshot.tree).total_size
            count = files.get(snapshot.tree)
            if count is None:
                count = meta_count(snapshot.meta, "files")
            rows.append(SnapshotUsage(
                oid, snapshot.time, snapshot.message, sorted(tags.get(oid, [])), count, tree_size,
                counted.exclusive.get(("snapshot", oid), 0), oid in journal_set))
        if not wanted:
            rows.sort(key=lambda r: (r.time, r.id), reverse=True)
        stats = DuStats(usage, rows)
        if key is not None and repo.store.listing_stamp() == key[1]:  # else it changed meanwhile
            _save_answer(repo, key[0], stats)
    return stats


# -- the answer cache ---------------------------------------------------------------

#: du's last answer, in the workspace's folder (FORMAT.md, "du's answer cache").
ANSWER_FILE = "du-cache"
_ANSWER_HEADER = b"rnstore du cache 1\n"
#: A larger file is not read (it would hold a million snapshots).
_MAX_ANSWER = 64 << 20
#: (kind, name, workspace, in_store) of a Root: a tuple slice, not four attribute lookups per index file
_ROOT_RUN = itemgetter(slice(1, 5))
_ID, _NAME = attrgetter("id"), attrgetter("name")
_SUBTREES, _SUBTREE_SIZES, _FILES, _FILE_SIZES = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3)


def _answer_key(repo: WorkspaceView, roots, tags: dict, journal: list) -> tuple[str, str] | None:
    """(key, listing stamp): the key names every input du's answer depends
    on - the roots of every workspace (the index's files, the journal,
    refs, HEAD, a gone workspace's last roots: all as read now), this
    workspace's tags and journal, its config (gc.threshold and the like
    decide what is reclaimable), and the store's listing stamp (every
    object file and pack). What an id names never changes. None when the
    store gives no listing stamp."""
    stamp = repo.store.listing_stamp()
    if stamp is None:
        return None
    digest = hashlib.sha256()
    runs = [(kind, name, str(workspace), in_store, len(list(run)))
            for (kind, name, workspace, in_store), run in groupby(roots, key=_ROOT_RUN)]
    head = [str(repo.store_root), str(repo.dotdir), sorted(repo.config.values.items()),
            sorted((oid, sorted(names)) for oid, names in tags.items()), sorted(journal), runs]
    digest.update(json.dumps(head).encode("utf-8", "surrogateescape"))
    digest.update("\n".join(map(_ID, roots)).encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(stamp.encode("utf-8", "surrogateescape"))
    return digest.hexdigest(), stamp


def _cached_answer(repo: WorkspaceView, key: str) -> DuStats | None:
    """The answer saved under `key`, or None (no file, another key, or a
    file that is not one whole answer: a miss, never an error)."""
    try:
        fd = open_state(repo.dotdir / ANSWER_FILE, os.O_RDONLY)
    except Exception:  # noqa: BLE001 - absent, a symlink, a FIFO, no permission: no answer
        return None
    try:
        data = os.read(fd, _MAX_ANSWER + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    parts = data.split(b"\n", 2)
    if len(data) > _MAX_ANSWER or len(parts) != 3 or parts[0] + b"\n" != _ANSWER_HEADER:
        return None
    sums, body = parts[1:]
    if sums[:65] != f"{key} ".encode() or sums[65:] != hashlib.sha256(body).hexdigest().encode():
        return None
    try:
        document = json.loads(body)
        return DuStats(StoreUsage(**document["store"]),
                       [SnapshotUsage(**row) for row in document["snapshots"]])
    except (ValueError, TypeError, KeyError):
        return None


def drop_answer(repo: WorkspaceView) -> None:
    """Remove this workspace's answer after gc changed the store: its key
    names the old listing, so it could never be used again and would only
    take room. Failures are ignored, as when saving."""
    try:
        os.unlink(repo.dotdir / ANSWER_FILE)
    except OSError:
        pass


def _save_answer(repo: WorkspaceView, key: str, stats: DuStats) -> None:
    """Replace the answer file (temporary file and rename; not fsynced: an
    answer lost in a crash is computed again). Failures are ignored: a
    workspace the user may only read, a full disk."""
    body = json.dumps({"store": asdict(stats.store), "snapshots": [asdict(row) for row in stats.snapshots]},
                      ensure_ascii=False).encode("utf-8", "surrogateescape")
    try:
        atomic_write(repo.dotdir / ANSWER_FILE,
                     [_ANSWER_HEADER, f"{key} {hashlib.sha256(body).hexdigest()}\n".encode(), body],
                     durable=False, shared=repo.group_shared)
    except OSError:
        pass


class _Unusual(Exception):
    """Something the bulk count does not handle (an object that cannot be
    read, one reached as two kinds, a cache naming objects the store lost):
    the marking pass counts instead, and says what is wrong."""


@dataclass
class _Counted:
    """What one pass over the reachable graph and the store's listing gives du."""
    usage: StoreUsage
    exclusive: dict          # unit -> stored bytes only it reaches
    snapshots: dict          # id -> Snapshot, for every snapshot reached
    subtrees: dict           # tree -> its sub-trees' ids, for every tree reached
    files_in: dict           # tree -> files and links it holds itself
    tree_size: Callable[[str], int | None]   # a tree's total size, None for a tree not reached

    def file_counts(self, tops) -> dict[str, int]:
        return _file_counts(self.subtrees, self.files_in, tops)


def _count_in_bulk(repo: WorkspaceView, roots, progress: Progress) -> _Counted:
    """The count without a Python step per stored or reached object: each
    unit marks into sets a level of trees at a time (their files at once),
    stopping at trees two units reach (all below them is shared), and the
    store is listed as two lists. Gives what _count_marked gives, or
    raises _Unusual."""
    cache = ReachCache.load(repo.store_root, shared=repo.group_shared)
    loader = StoreLoader(repo.store, cache, sizes=False)
    units: dict[tuple[str, str], tuple[list, list, list]] = {}  # unit -> its (snapshots, trees, blobs)
    for (kind, _, workspace, _), run in groupby(roots, key=_ROOT_RUN):  # an index's files: one run
        if kind not in (SNAPSHOT, TREE, BLOB):
            raise _Unusual
        if kind == SNAPSHOT:  # Root.unit
            for root in run:
                units.setdefault(("snapshot", root.id), ([], [], []))[0].append(root.id)
        else:
            units.setdefault((str(workspace), "index"), ([], [], []))[1 if kind == TREE else 2].extend(map(_ID, run))
    cached = cache.all_tree_entries()
    parsed = _Parsed(cached, loader)   # tree -> (sub-trees, files): (id, size) each
    seen_trees: set[str] = set()
    seen_blobs: set[str] = set()
    shared_trees: set[str] = set()      # reached by two units or more (a snapshot is its own unit's only)
    shared_blobs: set[str] = set()
    reached: dict = {}                  # snapshot unit -> (its trees, its blobs)
    try:
        for unit, (snapshot_ids, tree_ids, blob_ids) in units.items():
            level = set(tree_ids)
            for oid in snapshot_ids:
                snapshot = loader.snapshots.get(oid)
                if snapshot is None:
                    snapshot = loader.snapshots[oid] = loader._snapshot(oid)
                level.add(snapshot.tree)
            # not into trees two units reach: below those, everything is shared already
            trees, unit_blobs = walk_trees(level, parsed.__getitem__, stop=(shared_trees,))
            unit_blobs.update(blob_ids)
            before = len(seen_trees) + len(seen_blobs)
            shared_trees |= trees & seen_trees
            shared_blobs |= unit_blobs & seen_blobs
            seen_trees |= trees
            seen_blobs |= unit_blobs
            progress.advance(len(seen_trees) + len(seen_blobs) - before + len(snapshot_ids))
            if unit[0] == "snapshot":
                reached[unit] = (trees, unit_blobs)
    except ObjectError:
        raise _Unusual from None
    loader.from_cache |= seen_trees.intersection(cached)
    all_snapshots = set(loader.snapshots)
    if not (seen_trees.isdisjoint(seen_blobs) and all_snapshots.isdisjoint(seen_blobs)
            and all_snapshots.isdisjoint(seen_trees)):
        raise _Unusual  # an id reached as two kinds: the marker checks it as both
    # records are true whatever the store holds now: saved before it is listed
    cache.save(seen_trees | all_snapshots)

    store = repo.store
    ids, sizes = store.stored_copies()
    stored_size = dict(zip(ids, sizes))
    stored_ids = set(ids)
    if len(stored_size) != len(ids):
        raise _Unusual  # a copy in two places: the marker counts each
    if not loader.from_cache <= stored_ids:
        raise _Unusual  # the cache outlived objects the store lost: mark from the store
    usage = StoreUsage(objects=len(ids), stored_bytes=sum(sizes))
    stored_blobs = stored_ids & seen_blobs
    # the cache may hold trees no root reaches: the marker's count has not read them
    reached_trees = list(seen_trees)
    entries = list(map(parsed.__getitem__, reached_trees))
    blob_size = dict(zip(chain.from_iterable(map(_FILES, entries)),  # as trees list them
                         chain.from_iterable(map(_FILE_SIZES, entries))))
    usage.blobs = len(stored_blobs)
    if len(stored_blobs) == len(seen_blobs) == len(blob_size):  # every blob reached is stored, and in a tree
        usage.logical_bytes = sum(map(int, blob_size.values()))
    else:
        stored_blobs = list(stored_blobs)
        listed_sizes = list(map(blob_size.get, stored_blobs))
        usage.logical_bytes = sum(map(int, filter(None, listed_sizes)))
        for oid in compress(stored_blobs, map(is_, listed_sizes, repeat(None))):  # staged only: in no tree
            usage.logical_bytes += _header(store, oid)[1] or 0
    stored_trees = stored_ids & seen_trees
    stored_snapshots = stored_ids & all_snapshots
    usage.trees, usage.snapshots = len(stored_trees), len(stored_snapshots)
    unreachable = stored_ids - seen_trees
    unreachable -= seen_blobs
    unreachable -= all_snapshots
    # every stored copy is of a blob, a tree or a snapshot reached, or of none (the kinds are disjoint):
    # the reached blobs' bytes are what the others leave, summed over far fewer copies
    usage.blob_stored_bytes = usage.stored_bytes - sum(map(stored_size.__getitem__, chain(
        stored_trees, stored_snapshots, unreachable)))
    if unreachable:
        for oid in (oid for oid in ids if oid in unreachable):  # in the listing's order, as the marker's count
            size = stored_size[oid]
            usage.unreachable_objects += 1
            usage.unreachable_bytes += size
            kind, logical_size = _header(store, oid)
            if kind == BLOB:
                usage.blobs += 1
                usage.blob_stored_bytes += size
                usage.logical_bytes += logical_size or 0
            elif kind == TREE:
                usage.trees += 1
            elif kind == SNAPSHOT:
                usage.snapshots += 1
        stored = list(store.stored_objects())
        if [obj.id for obj in stored] != ids or [obj.size for obj in stored] != sizes:
            raise _Unusual  # changed since it was listed
        from .gc import reclaimable_now  # loads only when there is garbage
        reached_any = seen_trees | seen_blobs | all_snapshots
        usage.reclaimable_bytes = sum(obj.size for obj in reclaimable_now(repo, stored, reached_any))

    exclusive = {}
    for unit, (trees, blobs) in reached.items():
        alone = (trees - shared_trees) & stored_ids
        alone |= (blobs - shared_blobs) & stored_ids
        exclusive[unit] = sum(map(stored_size.__getitem__, alone)) + stored_size.get(unit[1], 0)
    subtrees = dict(zip(reached_trees, map(_SUBTREES, entries)))
    files_in = dict(zip(reached_trees, map(len, map(_FILES, entries))))

    def tree_size(tree: str) -> int | None:
        if tree not in seen_trees:
            return None
        entries = parsed[tree]
        return sum(map(int, chain(_SUBTREE_SIZES(entries), _FILE_SIZES(entries))))
    return _Counted(usage, exclusive, loader.snapshots, subtrees, files_in, tree_size)


class _Parsed(dict):
    """Tree -> its entries: the cache's, and those of the other trees read
    from the store as they are asked for (added to the cache)."""

    def __init__(self, cached: dict, loader: StoreLoader):
        super().__init__(cached)
        self.loader = loader

    def __missing__(self, tree: str):
        entries = self[tree] = tree_entries_from_store(self.loader, tree)
        return entries


def _count_marked(repo: WorkspaceView, roots, progress: Progress) -> _Counted:
    """The count by a Marker, object by object: for what _count_in_bulk
    leaves, with the marker's own checks and messages."""
    marker = mark_reachable(repo, roots, _refuse, progress)
    stored = list(repo.store.stored_objects())
    marker = settle_cache(repo, marker, {obj.id for obj in stored}, roots, _refuse)
    loader = marker.load
    usage = StoreUsage()
    exclusive: dict[tuple[str, str], int] = {}
    owner_of, kind_of, blob_size = marker.owner.get, marker.kind, loader.blob_size
    stored_bytes = unreachable = unreachable_bytes = blobs = blob_bytes = logical = trees = snapshots = 0
    for obj in stored:
        oid, size = obj.id, obj.size
        stored_bytes += size
        owner = owner_of(oid)
        if owner is None:
            unreachable += 1
            unreachable_bytes += size
            kind, logical_size = _header(repo.store, oid)
        else:
            exclusive[owner] = exclusive.get(owner, 0) + size
            kind = kind_of[oid]
            logical_size = blob_size.get(oid) if kind == BLOB else None
            if kind == BLOB and logical_size is None:  # staged only: not in any tree
                logical_size = _header(repo.store, oid)[1]
        if kind == BLOB:
            blobs += 1
            blob_bytes += size
            logical += logical_size or 0
        elif kind == TREE:
            trees += 1
        elif kind == SNAPSHOT:
            snapshots += 1
    usage.objects, usage.stored_bytes = len(stored), stored_bytes
    usage.unreachable_objects, usage.unreachable_bytes = unreachable, unreachable_bytes
    if unreachable:
        from .gc import reclaimable_now  # loads only when there is garbage
        usage.reclaimable_bytes = sum(obj.size for obj in reclaimable_now(repo, stored, marker))
    usage.blobs, usage.blob_stored_bytes, usage.logical_bytes = blobs, blob_bytes, logical
    usage.trees, usage.snapshots = trees, snapshots
    return _Counted(usage, exclusive, loader.snapshots, loader.subtrees, loader.files_in, loader.tree_size.get)


def _header(store, oid: str) -> tuple[str | None, int | None]:
    try:
        return store.header(oid)
    except ObjectError:
        return None, None


def _file_counts(subtrees: dict, files_in: dict, tops) -> dict[str, int]:
    """Files (and links) below each tree of `tops`, duplicates counted each
    time; each tree below counted once (post-order over the trees read)."""
    counts: dict[str, int] = {}
    for top in tops:
        if top in counts or top not in files_in:
            continue
        stack = [top]
        while stack:
            oid = stack[-1]
            if oid in counts:
                stack.pop()
                continue
            below = subtrees.get(oid, ())
            pending = [c for c in below if c not in counts and c in files_in]
            if pending:
                stack += pending
                continue
            stack.pop()
            counts[oid] = files_in[oid] + sum(map(counts.get, below, repeat(0)))
    return counts


__all__ = ["du", "DuStats", "StoreUsage", "SnapshotUsage"]
