"""fsck: check every object and every reference, and name each problem with
git's words.

- `hash mismatch`: an object decompresses but its bytes do not hash to its id.
- `corrupt`: an object that does not decode (bad zstd frame, bad header,
  truncated, a tree or snapshot that is not in canonical form, a tree entry
  whose recorded size disagrees with the object), one copy of an object
  stored twice that is damaged while the other is intact (readers use the
  intact one; the detail names both), or a root that cannot be
  read (HEAD, a ref, the index, a workspace's config); for those `id` is the
  name (e.g. `refs/tags/v1`, `HEAD`, `the index`), not an object id.
- `missing`: an object that a root, or a tree or snapshot a root reaches,
  names but that is not stored.
- A delta (FORMAT.md, Deltas) whose chain of bases reaches an object that
  is missing or corrupt is `corrupt`, and that object is reported too
  (`missing`, or as whatever is wrong with it) with every object that
  depends on it (`dependents`), however far up the chain.
- `dangling`: a stored object no root reaches: what `gc --prune now` would
  delete, unless it lies in a pack less than gc.threshold percent garbage,
  which gc leaves whole (gc.py). The base of a delta that something reaches is not dangling (gc
  keeps it). Listed, but not a failure (as in git), and missing references from
  dangling objects are not reported: a gc interrupted half-way leaves exactly
  such leftovers, and the next gc removes them.

A snapshot's parents are history, not liveness: a missing parent is not a
problem. Every problem but `dangling` makes `ok` false (the CLI exits 1).

Order of work: the roots are read first, then the objects listed, so an
object written by a concurrent commit can only show up as dangling, never as
missing. The store lock is held shared, so no gc deletes anything meanwhile.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

from . import codec
from .errors import BrokenDeltaError, MissingObjectError, ObjectError
from .reachability import ANY_ROOT, Marker, collect_roots, problem_kind, reason
from .worktree import parallel_map
from .objects import BLOB, MODE_TREE, SNAPSHOT, TREE, decode_snapshot, decode_tree, is_object_id
from .progress import NO_PROGRESS, Progress
from .views import WorkspaceView

MISSING, HASH_MISMATCH, CORRUPT, DANGLING = "missing", "hash mismatch", "corrupt", "dangling"
_ORDER = {MISSING: 0, HASH_MISMATCH: 1, CORRUPT: 2, DANGLING: 3}


@dataclass(frozen=True)
class Problem:
    kind: str            # missing, hash mismatch, corrupt, dangling
    id: str              # an object id, or the name of what is broken
    detail: str = ""
    type: str | None = None   # blob, tree or snapshot when known
    #: for a missing or damaged object: "SNAPSHOT:path" in every snapshot a root reaches that holds it
    paths: tuple[str, ...] = ()
    #: for a missing or damaged object that deltas are stored against: every such delta, down the chains
    dependents: tuple[str, ...] = ()

    @property
    def fatal(self) -> bool:
        return self.kind != DANGLING

    def as_json(self) -> dict:
        return {"kind": self.kind, "id": self.id, "detail": self.detail, "type": self.type,
                "paths": list(self.paths), "dependents": list(self.dependents)}


@dataclass
class FsckResult:
    checked_objects: int
    problems: list[Problem] = field(default_factory=list)
    quick: bool = False

    @property
    def ok(self) -> bool:
        return not any(p.fatal for p in self.problems)

    @property
    def dangling(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == DANGLING]

    def as_json(self) -> dict:
        return {"checked_objects": self.checked_objects,
                "problems": [p.as_json() for p in self.problems],
                "ok": self.ok, "quick": self.quick}


class _AlreadyReported(ObjectError):
    pass


def fsck(repo: WorkspaceView, *, quick: bool = False, progress: Progress = NO_PROGRESS) -> FsckResult:
    """Check every stored object (with `quick`, headers and the decoding of
    trees and snapshots, without hashing blob contents) and every root."""
    problems: list[Problem] = []
    reported: set[str] = set()

    def report(kind: str, oid: str, detail: str, type_: str | None = None) -> None:
        if oid not in reported:
            reported.add(oid)
            problems.append(Problem(kind, oid, detail, type_))

    with repo.store_lock(shared=True):
        scan = collect_roots(repo, report, grace=float(repo.config.get("gc.prune")), now=time.time())
        store = repo.store
        listed: dict[str, int] = {}
        for name in store:
            if not is_object_id(name):
                report(CORRUPT, name, "a stored object whose name is not an object id")
                continue
            try:
                listed[name] = store.stored_size(name)
            except MissingObjectError:  # deleted since it was listed
                continue
        for path, why in store.damaged_packs().items():
            report(CORRUPT, os.path.basename(path), f"pack {path} cannot be read: {why}")
        for path, name in store.misnamed_packs().items():  # its objects read: each is verified by id
            report(CORRUPT, os.path.basename(path), f"pack {path} is misnamed: its index's checksum names "
                                                    f"it {name}")
        checked = _check_objects(store, listed, quick, report, progress)
        kinds, sizes, decoded, failed, chains = checked
        dependents = _broken_chains(listed, chains, failed, report)

        def load(oid: str, kind: str):
            if oid not in listed:
                raise _AlreadyReported("missing", oid)  # reported by whoever named it
            if oid in failed:
                raise _AlreadyReported("already reported", oid)
            value = decoded.get(oid)
            if kinds[oid] != kind:
                # stored under another kind's header: the payload decides
                value = (store.get_snapshot if kind == SNAPSHOT else store.get_tree)(oid)
            if kind == SNAPSHOT:
                if value.tree not in listed:
                    report(MISSING, value.tree, f"the tree of snapshot {oid}", TREE)
                return ((value.tree, TREE),)
            below = []
            for entry in value.entries:
                child_kind = TREE if entry.mode == MODE_TREE else BLOB
                below.append((entry.id, child_kind))
                if entry.id not in listed:
                    report(MISSING, entry.id, f"referenced by tree {oid} as "
                           f"'{entry.name.decode('utf-8', 'replace')}'", child_kind)
                elif entry.id not in failed:
                    actual = _size_of(entry.id, child_kind, kinds, sizes, decoded)
                    if actual is not None and actual != entry.size:
                        report(CORRUPT, oid, f"entry '{entry.name.decode('utf-8', 'replace')}' records "
                               f"{entry.size} bytes but {child_kind} {entry.id} holds {actual}", TREE)
            return tuple(below)

        def on_error(oid: str, kind: str, exc: ObjectError, root) -> None:
            if isinstance(exc, _AlreadyReported):
                return
            stored_as = kinds.get(oid)
            if oid == root.id and stored_as not in (None, kind) and problem_kind(exc) == CORRUPT:
                # HEAD, a ref or the journal naming a tree or a blob: the
                # root is what is wrong, not the object
                name = f"snapshots/{oid}" if root.name == "live snapshot" else root.name
                report(CORRUPT, name, f"{root.label} names {oid}, a {stored_as}, not a {kind}", kind)
                return
            report(problem_kind(exc), oid, reason(exc, oid), kind)

        # Following references reads the trees and snapshots decoded above,
        # in memory: quick, so it shows no bar of its own.
        marker = Marker(load)
        for root in scan.roots:
            if root.id in listed:
                marker.mark(ANY_ROOT, root.id, root.kind, functools.partial(on_error, root=root))
            elif root.name != "last seen roots":
                report(MISSING, root.id, f"named by {root.label}", root.kind)
        needed = _bases_of_reached(marker, chains.bases)
        for oid in listed:
            if oid in marker or oid in needed:
                continue
            if oid in failed:
                continue  # reported as corrupt already; gc would delete it
            problems.append(Problem(DANGLING, oid, "no root reaches it", kinds.get(oid)))
        damaged = {p.id for p in problems if p.fatal and is_object_id(p.id)}
        if damaged:
            where = _paths_of(damaged, {r.id for r in scan.roots if r.kind == SNAPSHOT}, decoded)
            problems = [Problem(p.kind, p.id, p.detail, p.type, tuple(where.get(p.id, ())),
                                tuple(sorted(dependents.get(p.id, ()))))
                        for p in problems]
    problems.sort(key=lambda p: (_ORDER.get(p.kind, 9), p.id))
    return FsckResult(len(listed), problems, quick)


@dataclass
class _Chains:
    """What fsck learns of deltas while it reads every object."""
    bases: dict[str, str] = field(default_factory=dict)       # delta -> its base
    kinds: dict[str, str] = field(default_factory=dict)       # delta -> its kind
    own_failures: set[str] = field(default_factory=set)       # failed, and not because of a base


def _chain_culprit(oid: str, listed, bases: dict[str, str], own_failures: set[str]) -> str | None:
    """The first object down `oid`'s chain of delta bases that is missing
    or damaged on its own account; None when the chain is sound (or loops,
    which reading the delta reports)."""
    seen = {oid}
    base = bases.get(oid)
    while base is not None and base not in seen:
        if base not in listed or base in own_failures:
            return base
        seen.add(base)
        base = bases.get(base)
    return None


def _chain_shape_trouble(oid: str, bases: dict[str, str]) -> str | None:
    """Why `oid`'s chain cannot be rebuilt whatever its objects hold: it
    loops, or holds more deltas than readers follow (codec.MAX_CHAIN_DEPTH)."""
    seen = {oid}
    base = bases.get(oid)
    while base is not None:
        if base in seen:
            return f"its chain of delta bases loops through {base}"
        if base in bases and len(seen) >= codec.MAX_CHAIN_DEPTH:
            return f"its chain of delta bases is longer than {codec.MAX_CHAIN_DEPTH}"
        seen.add(base)
        base = bases.get(base)
    return None


def _broken_chains(listed, chains: _Chains, failed: set[str], report) -> dict[str, set[str]]:
    """culprit -> every delta whose chain needs it, for each missing or
    damaged base; reports the missing ones, and the deltas that reading did
    not already report (fsck --quick does not rebuild blobs)."""
    dependents: dict[str, set[str]] = {}
    for oid in sorted(chains.bases):
        trouble = _chain_shape_trouble(oid, chains.bases)
        if trouble is not None:  # found by reading, but for blobs under --quick
            if oid not in failed:
                failed.add(oid)
                report(CORRUPT, oid, trouble, chains.kinds.get(oid))
            continue
        culprit = _chain_culprit(oid, listed, chains.bases, chains.own_failures)
        if culprit is None:
            continue
        dependents.setdefault(culprit, set()).add(oid)
        if oid not in failed:
            failed.add(oid)
            what = "missing" if culprit not in listed else "corrupt"
            report(CORRUPT, oid, f"its chain of delta bases needs {culprit}, which is {what}",
                   chains.kinds.get(oid))
    for culprit, needing in sorted(dependents.items()):
        if culprit not in listed:
            count = len(needing)
            report(MISSING, culprit, f"the delta base of {count} object{'s' if count != 1 else ''}",
                   chains.kinds.get(min(needing)))
    return dependents


def _bases_of_reached(marker, bases: dict[str, str]) -> set[str]:
    """Every object down the chains of delta bases of reached objects: gc
    keeps them, so they are not dangling."""
    needed: set[str] = set()
    for oid in bases:
        if oid not in marker:
            continue
        base = bases.get(oid)
        while base is not None and base not in needed and base not in marker:
            needed.add(base)
            base = bases.get(base)
    return needed


def _paths_of(damaged: set[str], snapshots: set[str], decoded: dict) -> dict[str, list[str]]:
    """Where each damaged object sits: "SNAPSHOT:path" in every snapshot
    among `snapshots` that holds it, from the snapshots and trees that
    decoded (`decoded`: id -> Snapshot or Tree)."""
    below: dict[str, tuple[tuple[str, str], ...]] = {}  # tree -> (relative path, damaged id)
    names: dict[str, list[tuple[str, str, bool]]] = {}
    for oid, value in decoded.items():
        entries = getattr(value, "entries", None)
        if entries is not None:
            names[oid] = [(e.name.decode("utf-8", "replace"), e.id, e.mode == MODE_TREE) for e in entries]

    def damaged_below(top: str) -> tuple[tuple[str, str], ...]:
        stack = [(top, False)]
        while stack:  # post-order without recursion: trees may nest a thousand deep
            tree, ready = stack.pop()
            if tree in below:
                continue
            entries = names.get(tree)
            if entries is None:
                below[tree] = ()
                continue
            pending = [oid for _, oid, is_tree in entries if is_tree and oid not in below]
            if pending and not ready:
                stack.append((tree, True))
                stack.extend((oid, False) for oid in pending)
                continue
            found = []
            for name, oid, is_tree in entries:
                if oid in damaged:
                    found.append((name, oid))
                if is_tree:
                    found.extend((f"{name}/{path}", hit) for path, hit in below.get(oid, ()))
            below[tree] = tuple(found)
        return below[top]

    where: dict[str, list[str]] = {}
    for snap in sorted(snapshots):
        tree = getattr(decoded.get(snap), "tree", None)
        if tree is None:
            continue
        if tree in damaged:
            where.setdefault(tree, []).append(f"{snap}:")
        for path, hit in damaged_below(tree):
            where.setdefault(hit, []).append(f"{snap}:{path}")
    return where


def _size_of(oid: str, kind: str, kinds, sizes, decoded) -> int | None:
    """What a tree entry's size should be: a blob's byte size, a sub-tree's
    total size (None when it cannot be told without reading more)."""
    if kind == BLOB:
        return sizes.get(oid)
    value = decoded.get(oid)
    if kinds.get(oid) == TREE and value is not None:
        return value.total_size
    return None


def _check_objects(store, listed: dict[str, int], quick: bool, report, progress: Progress):
    """Read every object (in parallel): kinds, payload sizes, decoded trees
    and snapshots, and the ids that failed."""
    kinds: dict[str, str] = {}
    sizes: dict[str, int] = {}
    decoded: dict = {}
    failed: set[str] = set()
    chains = _Chains()

    def check(oid: str):
        kind = None
        try:
            kind, size = store.header(oid)
            base = store.delta_base(oid)
            if base is not None:
                chains.bases[oid], chains.kinds[oid] = base, kind
            value = None
            if kind == BLOB:
                if not quick:
                    store.verify(oid)
            else:
                payload = store.get(oid, kind, verify=not quick)[1]
                value = decode_tree(payload) if kind == TREE else decode_snapshot(payload)
            return kind, size, value, None, store.damaged_copies(oid, quick)
        except ObjectError as exc:
            return kind, None, None, exc, ()

    ids = store.in_read_order(listed)  # a chain of deltas read from its base up: each base rebuilt once
    # the total is known before the first read: the bar's ETA is real
    progress.start("fsck: checking objects", len(ids), sum(listed.values()), unit="object")
    try:
        for oid, result, error in _in_order(store, parallel_map(check, ids)):
            progress.advance(1, listed[oid])
            if error is not None:  # an OSError reading the file
                failed.add(oid)
                report(CORRUPT, oid, f"cannot be read: {error.strerror or error}")
                continue
            kind, size, value, exc, damaged_copies = result
            for where, why in damaged_copies:  # beside an intact copy, which readers use
                report(CORRUPT, oid, f"the copy in {where} is damaged: {why}", kind)
            if exc is not None:
                failed.add(oid)
                if problem_kind(exc) == MISSING:  # deleted since it was listed
                    continue
                broken_chain = isinstance(exc, BrokenDeltaError)
                if not broken_chain:
                    chains.own_failures.add(oid)
                report(problem_kind(exc), oid, reason(exc, oid), kind if broken_chain else None)
                continue
            kinds[oid], sizes[oid] = kind, size
            if value is not None:
                decoded[oid] = value
    finally:
        progress.finish()
    return kinds, sizes, decoded, failed, chains


def _in_order(store, results):
    with store.reading_in_order():
        yield from results


__all__ = ["fsck", "FsckResult", "Problem", "MISSING", "HASH_MISMATCH", "CORRUPT", "DANGLING"]
