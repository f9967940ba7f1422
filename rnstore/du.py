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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

from .errors import CorruptStoreError, ObjectError
from .gc import reclaimable_now
from .reachability import collect_roots, mark_reachable, settle_cache
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
        progress.start("du: reading trees", unit="object")
        try:
            marker = mark_reachable(repo, scan.roots, _refuse, progress)
        finally:
            progress.finish()
        stored = list(repo.store.stored_objects())
        marker = settle_cache(repo, marker, {obj.id for obj in stored}, scan.roots, _refuse)
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
            usage.reclaimable_bytes = sum(obj.size for obj in reclaimable_now(repo, stored, marker))
        usage.blobs, usage.blob_stored_bytes, usage.logical_bytes = blobs, blob_bytes, logical
        usage.trees, usage.snapshots = trees, snapshots

        live_ids = {r.id for r in scan.roots if r.name == "live snapshot"}
        usage.live_snapshots = len(live_ids)
        usage.referenced_bytes = sum(loader.tree_size.get(loader.snapshots[oid].tree, 0)
                                     for oid in live_ids if oid in loader.snapshots)

        tags: dict[str, list[str]] = {}
        for ref, oid in repo.refs.list(TAGS).items():
            tags.setdefault(oid, []).append(short_name(ref))
        journal = set(repo.journal)
        listed = wanted or sorted(journal)
        files = _file_counts(loader, [loader.snapshots[oid].tree for oid in listed if oid in loader.snapshots])
        rows = []
        for oid in dict.fromkeys(listed):
            snapshot = loader.snapshots.get(oid) or repo.store.get_snapshot(oid)
            tree_size = loader.tree_size.get(snapshot.tree)
            if tree_size is None:  # no root reaches it: not counted in the pass
                tree_size = repo.store.get_tree(snapshot.tree).total_size
            count = files.get(snapshot.tree)
            if count is None:
                count = meta_count(snapshot.meta, "files")
            rows.append(SnapshotUsage(
                oid, snapshot.time, snapshot.message, sorted(tags.get(oid, [])), count, tree_size,
                exclusive.get(("snapshot", oid), 0), oid in journal))
        if not wanted:
            rows.sort(key=lambda r: (r.time, r.id), reverse=True)
    return DuStats(usage, rows)


def _header(store, oid: str) -> tuple[str | None, int | None]:
    try:
        return store.header(oid)
    except ObjectError:
        return None, None


def _file_counts(loader, tops) -> dict[str, int]:
    """Files (and links) below each tree of `tops`, duplicates counted each
    time; each tree below counted once (post-order over what the loader read)."""
    counts: dict[str, int] = {}
    subtrees, files_in = loader.subtrees, loader.files_in
    for top in tops:
        if top in counts or top not in files_in:
            continue
        stack = [(top, False)]
        while stack:
            oid, expanded = stack.pop()
            if oid in counts:
                continue
            below = subtrees.get(oid, ())
            if not expanded:
                stack.append((oid, True))
                stack.extend((c, False) for c in below if c not in counts and c in files_in)
                continue
            counts[oid] = files_in[oid] + sum(counts.get(c, 0) for c in below)
    return counts


__all__ = ["du", "DuStats", "StoreUsage", "SnapshotUsage"]
