"""Reachability: the roots of every workspace a store serves, and what they
reach. gc deletes the rest; du counts it; fsck checks it.

Roots are, for every workspace that uses the store: its live snapshots (the
journal), every ref, a detached HEAD and every index entry; and a shared
store's own tags (tags.py), roots of the store itself. A shared store
lists the workspaces that use it (registry.py); a workspace with its own
store has only itself. A registered workspace whose folder is gone protects,
for the grace period after gc first found it gone, the roots gc last read
there (gc.py, rule 4). Marking follows snapshot -> root tree -> sub-trees and
blobs. Parent links are history, not liveness: they are not followed, so a
forgotten parent is collected like anything else.

A root that cannot be read goes to the caller's `on_problem`: gc refuses to
run, fsck lists it. Unreadable is never "references nothing". Each tree is
read once per run, however many snapshots share it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from . import registry
from .errors import CorruptObjectError, CorruptStoreError, InvalidValueError, MissingObjectError, ObjectError
from .objects import BLOB, MODE_TREE, SNAPSHOT, TREE, Snapshot, decode_snapshot, decode_tree
from .reachcache import ReachCache, TreeEntries
from .progress import NO_PROGRESS, Progress
from .refs import valid_ref_name
from .views import WorkspaceView

# -- roots ------------------------------------------------------------------------------

class Root(NamedTuple):
    """One object a workspace holds on to. (A named tuple, not a dataclass:
    a workspace's index makes one per file, tens of thousands.)"""
    id: str
    kind: str            # SNAPSHOT for journal, refs and HEAD; BLOB or TREE for the index
    name: str            # "live snapshot", "refs/tags/v1", "HEAD", "index", "last seen roots"
    workspace: Path      # the workspace's .rnstore folder, or the shared store's root for its tags
    in_store: bool = False   # a tag of the shared store itself

    @property
    def unit(self) -> tuple[str, str]:
        """What du counts exclusive bytes for: one snapshot (whether live,
        named by refs, by store tags or all of these), or one workspace's index."""
        return ("snapshot", self.id) if self.kind == SNAPSHOT else (str(self.workspace), "index")

    @property
    def label(self) -> str:
        if self.in_store:
            return f"{self.name} of the store {self.workspace}"
        where = self.workspace.parent
        if self.name == "live snapshot":
            return f"live snapshot {self.id[:12]} of {where}"
        if self.name == "index":
            return f"the index of {where}"
        return f"{self.name} of {where}"


@dataclass
class WorkspaceState:
    """A workspace the store serves, as gc found it."""
    dotdir: Path
    registration: Path | None      # None: the workspace gc runs in, unregistered
    state: str                     # "here", "alive", "gone", "elsewhere"
    gone_since: float | None = None
    released: bool = False         # gone past the grace period: protects nothing

    @property
    def root(self) -> Path:
        return self.dotdir.parent


@dataclass
class RootScan:
    roots: list[Root] = field(default_factory=list)
    workspaces: list[WorkspaceState] = field(default_factory=list)
    #: unreachable objects at least this recent are kept (gone workspaces, rule 4)
    keep_newer_than: float | None = None


#: What reading a root raises when it is damaged: CorruptStoreError for bad
#: content, InvalidValueError for a HEAD naming an invalid ref, ValueError
#: (UnicodeDecodeError) for bytes that are not text, OSError for the rest.
_UNREADABLE = (CorruptStoreError, InvalidValueError, ValueError, OSError)

ProblemSink = Callable[[str, str, str], None]
"""on_problem(kind, id, detail): kind is 'missing', 'corrupt' or 'hash mismatch'."""


def problem_kind(exc: BaseException) -> str:
    if isinstance(exc, MissingObjectError):
        return "missing"
    if isinstance(exc, CorruptObjectError) and "hash mismatch" in str(exc):
        return "hash mismatch"
    return "corrupt"


def workspace_roots(ws: WorkspaceView, on_problem: ProblemSink) -> list[Root]:
    """The roots of one open workspace (a Repository). Each part that cannot
    be read (HEAD, a ref, the journal, the index) goes to `on_problem`."""
    dotdir, where = ws.dotdir, ws.root
    roots: list[Root] = []

    def failed(name: str, exc: BaseException) -> None:
        on_problem("corrupt", name, f"{name} of {where} cannot be read: {_why(exc)}")

    try:
        roots += [Root(oid, SNAPSHOT, "live snapshot", dotdir) for oid in ws.journal]
    except OSError as exc:
        failed("the journal (snapshots/)", exc)
    roots += ref_roots(ws.local_refs, dotdir, failed)
    try:
        branch, head = ws.local_refs.head()
        if branch is None and head is not None:
            roots.append(Root(head, SNAPSHOT, "HEAD", dotdir))
    except _UNREADABLE as exc:
        failed("HEAD", exc)
    try:
        # An empty folder's entry names the empty tree, which is stored
        # only when a tree is written: a marker, not a reference.
        ids = ws.read_index().file_ids()
        # tuple.__new__ as Root._make does, without a Python call per file (tens of thousands)
        roots += map(tuple.__new__, repeat(Root), zip(ids, repeat(BLOB), repeat("index"), repeat(dotdir),
                                                     repeat(False)))
    except _UNREADABLE as exc:
        failed("the index", exc)
    return roots


def ref_roots(refs, owner: Path, failed: Callable[[str, BaseException], None], *,
              in_store: bool = False) -> list[Root]:
    """A Root for every ref file below `refs.dotdir`/refs; each one that
    cannot be read goes to `failed(name, exc)`."""
    roots = []
    try:
        # Refs one by one, so that each broken one is named; os.walk would
        # skip an unreadable folder silently, so it raises here instead.
        for folder, dirs, files in os.walk(refs.dotdir / "refs", onerror=_raise):
            dirs.sort()
            for name in sorted(files):
                ref = Path(folder, name).relative_to(refs.dotdir).as_posix()
                if name.startswith(".") or not valid_ref_name(ref):
                    continue  # temporary files; nothing rnstore writes as a ref
                try:
                    oid = refs.resolve(ref)
                except _UNREADABLE as exc:
                    failed(ref, exc)
                    continue
                if oid is not None:
                    roots.append(Root(oid, SNAPSHOT, ref, owner, in_store))
    except OSError as exc:
        if not (in_store and isinstance(exc, FileNotFoundError)):  # a store has no refs/ until its first tag
            failed("refs/", exc)
    return roots


def store_roots(repo: WorkspaceView, on_problem: ProblemSink) -> list[Root]:
    """The roots of a shared store itself: its tags."""
    if repo.store_tags is None:
        return []

    def failed(name: str, exc: BaseException) -> None:
        on_problem("corrupt", name, f"{name} of the store {repo.store_root} cannot be read: {_why(exc)}")

    return ref_roots(repo.store_tags, repo.store_root, failed, in_store=True)


def _raise(exc: OSError) -> None:
    raise exc


def collect_roots(repo: WorkspaceView, on_problem: ProblemSink, *, grace: float, now: float) -> RootScan:
    """The roots of every workspace the store serves. Problems go to
    `on_problem` (gc raises there; fsck lists them and goes on). Reads only."""
    scan = RootScan()
    here = WorkspaceState(repo.dotdir, None, "here")
    scan.workspaces.append(here)
    scan.roots += workspace_roots(repo, on_problem)
    if not repo.shared_store:
        return scan
    scan.roots += store_roots(repo, on_problem)
    for registration in registry.registrations(repo.store_root):
        try:
            dotdir = registry.registered_dotdir(registration)
        except CorruptStoreError as exc:
            on_problem("corrupt", str(registration), str(exc))
            continue
        except OSError as exc:
            on_problem("corrupt", str(registration), f"cannot read the registration {registration}: {_why(exc)}")
            continue
        if registry.same_folder(dotdir, repo.dotdir):
            here.registration = registration
            continue
        ws = WorkspaceState(dotdir, registration, "alive")
        scan.workspaces.append(ws)
        try:
            os.stat(dotdir / "HEAD")
        except (FileNotFoundError, NotADirectoryError):
            ws.state = "gone"
        except OSError as exc:
            on_problem("corrupt", str(dotdir), f"cannot read the workspace {dotdir.parent}: {_why(exc)}")
            continue
        if ws.state == "gone":
            _gone(ws, scan, on_problem, grace=grace, now=now)
            continue
        try:
            other = repo.workspace_at(dotdir)
        except _UNREADABLE as exc:
            on_problem("corrupt", str(dotdir), f"cannot read the workspace {dotdir.parent}: {_why(exc)}")
            continue
        if not other.shared_store or not registry.same_folder(other.store_root, repo.store_root):
            ws.state = "elsewhere"  # it was made again with another store
            continue
        scan.roots += workspace_roots(other, on_problem)
    return scan


def _gone(ws: WorkspaceState, scan: RootScan, on_problem: ProblemSink, *, grace: float, now: float) -> None:
    """gc.py's rule 4: a gone workspace protects what gc last saw there, for a while."""
    ws.gone_since = registry.gone_since(ws.registration)
    since = now if ws.gone_since is None else ws.gone_since
    if grace <= 0 or now - since >= grace:
        ws.released = True
        return
    try:
        roots, seen_at = registry.last_seen_roots(ws.registration)
    except CorruptStoreError as exc:
        on_problem("corrupt", str(ws.registration), str(exc))
        return
    except OSError as exc:
        on_problem("corrupt", str(ws.registration), f"cannot read the roots of {ws.root}: {_why(exc)}")
        return
    scan.roots += [Root(oid, kind, "last seen roots", ws.dotdir) for kind, oid in roots]
    if seen_at is None:
        # gc never read what it held, and its objects may be of any age (a
        # snapshot of files other workspaces stored long ago): every
        # unreachable object stays until the grace period has run out
        seen_at = float("-inf")
    if scan.keep_newer_than is None or seen_at < scan.keep_newer_than:
        scan.keep_newer_than = seen_at


def reason(exc: BaseException, oid: str) -> str:
    """An object error's message without the "object ID is corrupt" prefix."""
    text = str(exc)
    for prefix in (f"object {oid} is corrupt: ", f"object {oid} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


# -- marking -------------------------------------------------------------------------------

#: The owner of an object reached from more than one unit.
SHARED = ("", "shared")

Children = tuple[tuple[str, str], ...]


class Marker:
    """Marks what roots reach, remembering for each object which unit reached
    it (or SHARED when several did). An object is descended at most twice: by
    its first unit, and again when a second unit turns it SHARED (everything
    below a SHARED object is SHARED too, so a third unit stops there). That
    keeps marking linear however many snapshots share a tree, and gives du
    each snapshot's exclusive objects in the same pass."""

    def __init__(self, load: Callable[[str, str], Children]):
        self.load = load
        self.owner: dict[str, tuple[str, str]] = {}
        self.kind: dict[str, str] = {}
        self.children: dict[str, Children] = {}
        self.failed: set[str] = set()
        #: (id, kind) -> unit, for an object reached as a second kind (rare)
        self._other_kinds: dict[tuple[str, str], tuple[str, str]] = {}

    def __contains__(self, oid: str) -> bool:
        return oid in self.owner

    def __len__(self) -> int:
        return len(self.owner)

    def mark(self, unit: tuple[str, str], oid: str, kind: str,
             on_error: Callable[[str, str, ObjectError], None]) -> int:
        """Mark everything `oid` reaches for `unit`; the number of objects
        newly reached. Objects that cannot be loaded go to `on_error`."""
        before = len(self.owner)
        owner, kinds, children = self.owner, self.kind, self.children
        stack = [(oid, kind)]
        while stack:
            oid, kind = stack.pop()
            first_kind = kinds.get(oid)
            if first_kind is not None and kind != first_kind and kind != BLOB:
                # Reached as another kind than before (HEAD or a tag naming a
                # tree): it must decode as that kind too, so it is checked once.
                self._mark_as_other_kind(unit, oid, kind, on_error, stack)
                continue
            current = owner.get(oid)
            if current is not None and (current == unit or current == SHARED):
                continue
            owner[oid] = unit if current is None else SHARED
            kinds.setdefault(oid, kind)
            if kind == BLOB:
                continue
            below = children.get(oid)
            if below is None:
                if oid in self.failed:
                    continue
                try:
                    below = self.load(oid, kind)
                except ObjectError as exc:
                    self.failed.add(oid)
                    on_error(oid, kind, exc)
                    continue
                children[oid] = below
            self._mark_below(unit, below, stack)
        return len(self.owner) - before

    def _mark_below(self, unit: tuple[str, str], below: Iterable[tuple[str, str]], stack: list) -> None:
        """Blobs (most children) are marked here, as the loop of mark() would
        (they reach nothing); the rest go on `stack`."""
        owner, kinds = self.owner, self.kind
        for child, child_kind in below:
            if child_kind != BLOB:
                stack.append((child, child_kind))
                continue
            current = owner.get(child)
            if current is None:
                owner[child] = unit
                kinds[child] = BLOB
            elif current != unit and current != SHARED:
                owner[child] = SHARED

    def mark_blobs(self, unit: tuple[str, str], ids: Iterable[str]) -> int:
        """mark() for many blobs at once (the index's)."""
        before = len(self.owner)
        self._mark_below(unit, zip(ids, repeat(BLOB)), [])
        return len(self.owner) - before

    def _mark_as_other_kind(self, unit, oid: str, kind: str, on_error, stack: list) -> None:
        key = (oid, kind)
        current = self._other_kinds.get(key)
        if current is not None and (current == unit or current == SHARED):
            return
        self._other_kinds[key] = unit if current is None else SHARED
        owner = self.owner.get(oid)
        if owner is not None and owner != unit and owner != SHARED:
            self.owner[oid] = SHARED
        try:
            below = self.load(oid, kind)
        except ObjectError as exc:
            if current is None:
                on_error(oid, kind, exc)
            return
        stack.extend(below)


class StoreLoader:
    """Loads snapshots and trees for a Marker, keeping what du needs: each
    snapshot, each tree's total size and each blob's size (with `sizes`).

    With a `cache` (reachcache.ReachCache), a tree or snapshot whose cached
    payload hashes to its id is parsed from there; any other is read from
    the store, decoded (CorruptObjectError as the store would raise it) and
    added to the cache. `from_cache` holds the ids taken from the cache:
    their presence in the store is the caller's to check."""

    def __init__(self, store, cache: ReachCache | None = None, *, sizes: bool = True):
        self.store = store
        self.cache = cache
        self.sizes = sizes
        self.snapshots: dict = {}
        self.tree_size: dict[str, int] = {}
        self.blob_size: dict[str, int] = {}
        #: with `sizes`: each tree's sub-trees, and how many files and links it holds itself
        self.subtrees: dict[str, tuple[str, ...]] = {}
        self.files_in: dict[str, int] = {}
        self.from_cache: set[str] = set()

    def __call__(self, oid: str, kind: str) -> Children:
        if kind == SNAPSHOT:
            snapshot = self._snapshot(oid)
            self.snapshots[oid] = snapshot
            return ((snapshot.tree, TREE),)
        cache = self.cache
        entries = cache.tree_entries(oid) if cache is not None else None
        if entries is None:
            return self._tree_from_store(oid)
        self.from_cache.add(oid)
        sub_ids, sub_sizes, file_ids, file_sizes = entries
        if self.sizes:
            file_sizes = tuple(map(int, file_sizes))
            self.tree_size[oid] = sum(map(int, sub_sizes)) + sum(file_sizes)
            self.blob_size.update(zip(file_ids, file_sizes))
            self.subtrees[oid] = tuple(sub_ids)
            self.files_in[oid] = len(file_ids)
        return (*zip(sub_ids, repeat(TREE)), *zip(file_ids, repeat(BLOB)))

    def _tree_from_store(self, oid: str) -> Children:
        tree = self._from_store(oid, TREE, decode_tree)
        if not self.sizes:
            return tuple([(e.id, TREE if e.mode == MODE_TREE else BLOB) for e in tree.entries])
        below, subtrees, blob_size = [], [], self.blob_size
        for entry in tree.entries:
            if entry.mode == MODE_TREE:
                below.append((entry.id, TREE))
                subtrees.append(entry.id)
            else:
                below.append((entry.id, BLOB))
                blob_size[entry.id] = entry.size
        self.tree_size[oid] = tree.total_size
        self.subtrees[oid] = tuple(subtrees)
        self.files_in[oid] = len(below) - len(subtrees)
        return tuple(below)

    def _snapshot(self, oid: str) -> Snapshot:
        cache = self.cache
        payload = cache.payload(SNAPSHOT, oid) if cache is not None else None
        if payload is not None:
            try:
                snapshot = decode_snapshot(payload)
            except CorruptObjectError:
                pass  # hashes to its id but does not decode: the store says what it is
            else:
                self.from_cache.add(oid)
                return snapshot
        return self._from_store(oid, SNAPSHOT, decode_snapshot)

    def _from_store(self, oid: str, kind: str, decode):
        """Read and decode an object from the store (errors as the store's
        get_tree and get_snapshot raise them), adding it to the cache."""
        payload = self.store.get(oid, kind)[1]
        try:
            value = decode(payload)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"object {oid} is corrupt: {reason(exc, oid)}", oid) from None
        if self.cache is not None:
            self.cache.add(kind, oid, payload)
        return value


#: The one unit gc marks with: it needs no owners, only what is reached.
ANY_ROOT = ("", "any root")


def mark_roots(marker: Marker, roots: Iterable[Root], on_problem: ProblemSink,
               progress: Progress = NO_PROGRESS, *, by_unit: bool = True) -> None:
    """Mark what `roots` reach; with `by_unit` False all count as one unit
    (each object is then read once; gc needs no more)."""
    blobs: list[str] = []   # consecutive blob roots of one unit (an index's), marked together
    blob_unit = None
    blob_workspace = None   # the workspace of those: the same one, the same unit
    for root in roots:
        if root.kind == BLOB:
            if root.workspace is not blob_workspace or not blobs:
                unit = root.unit if by_unit else ANY_ROOT
                if unit != blob_unit and blobs:
                    progress.advance(marker.mark_blobs(blob_unit, blobs))
                    blobs = []
                blob_unit, blob_workspace = unit, root.workspace
            blobs.append(root.id)
            continue
        unit = root.unit if by_unit else ANY_ROOT
        if blobs:
            progress.advance(marker.mark_blobs(blob_unit, blobs))
            blobs = []

        def on_error(oid: str, kind: str, exc: ObjectError, root=root) -> None:
            if root.name == "last seen roots" and isinstance(exc, MissingObjectError):
                return  # what a gone workspace held may have gone with it
            what = "it" if oid == root.id else f"{kind} {oid}, which it reaches,"
            on_problem(problem_kind(exc), oid, f"{root.label} cannot be read: {what} is "
                       + ("missing" if isinstance(exc, MissingObjectError) else f"corrupt: {reason(exc, oid)}"))
        progress.advance(marker.mark(unit, root.id, root.kind, on_error))
    if blobs:
        progress.advance(marker.mark_blobs(blob_unit, blobs))


def mark_reachable(repo: WorkspaceView, roots: list[Root], on_problem: ProblemSink,
                   progress: Progress = NO_PROGRESS, *, by_unit: bool = True, cached: bool = True,
                   save: bool = True) -> Marker:
    """Mark what `roots` reach (mark_roots), reading trees and snapshots
    through the store's reachability cache (reachcache.py) unless `cached`
    is False, then (with `save`) write the cache and let its memory go. Its
    StoreLoader is `marker.load`; with `by_unit` False (gc) it keeps no
    sizes. Before relying on the marks, call `settle_cache`."""
    cache = ReachCache.load(repo.store_root, shared=repo.group_shared) if cached else None
    marker = Marker(StoreLoader(repo.store, cache, sizes=by_unit))
    mark_roots(marker, roots, on_problem, progress, by_unit=by_unit)
    if cache is not None and save:
        # records are true whatever the store holds now: saved before it is listed
        cache.save(set(marker.children))
    return marker


_SUBTREES, _FILES = itemgetter(0), itemgetter(2)
_ROOT_ID, _ROOT_KIND, _ROOT_NAME = attrgetter("id"), attrgetter("kind"), attrgetter("name")


def walk_trees(level: set[str], entries_of: Callable[[str], TreeEntries],
               stop: Iterable[set[str]] = ()) -> tuple[set[str], set[str]]:
    """(the trees, the files and links) reached from the trees `level`, one
    level of the graph at a time, each step over all its trees at once (set
    operations, no Python step per object); `entries_of(tree)` gives a
    tree's entries. A tree in one of the `stop` sets is not entered."""
    trees: set[str] = set()
    files: set[str] = set()
    while level:
        level -= trees
        for skip in stop:
            level -= skip
        trees |= level
        entries = list(map(entries_of, level))
        files.update(chain.from_iterable(map(_FILES, entries)))
        level = set(chain.from_iterable(map(_SUBTREES, entries)))
    return trees, files


def tree_entries_from_store(loader: StoreLoader, tree: str) -> TreeEntries:
    """(sub-tree ids, their sizes, file and link ids, their sizes) of a
    tree, read from the store (and added to the loader's cache)."""
    sub_ids, sub_sizes, file_ids, file_sizes = [], [], [], []
    for entry in loader._from_store(tree, TREE, decode_tree).entries:
        if entry.mode == MODE_TREE:
            sub_ids.append(entry.id)
            sub_sizes.append(entry.size)
        else:
            file_ids.append(entry.id)
            file_sizes.append(entry.size)
    return sub_ids, sub_sizes, file_ids, file_sizes


class BulkMarks:
    """What gc reads of a Marker - membership, each object's kind (`kind`,
    and `owner` for its keys) and the loader's `from_cache` - from a
    marking done in bulk (mark_in_bulk)."""

    def __init__(self, kind: dict[str, str], load: StoreLoader):
        self.kind = kind
        self.owner = kind  # its keys: every object is ANY_ROOT's
        self.load = load

    def __contains__(self, oid: str) -> bool:
        return oid in self.kind

    def __len__(self) -> int:
        return len(self.kind)


def mark_in_bulk(repo: WorkspaceView, roots: list[Root], *, save: bool = True) -> BulkMarks | None:
    """What `roots` reach, all as one unit (gc's marking), by walk_trees
    through the reachability cache; then, with `save`, the cache is written
    as mark_reachable writes it. None when anything is unusual - a root
    that may be missing (a gone workspace's), one of another kind, an
    object that cannot be read, an id reached as two kinds: the Marker
    marks then, and says what is wrong. Otherwise it reaches what a Marker
    reaches: both follow the same entries of the same trees."""
    if not {*map(_ROOT_KIND, roots)} <= {SNAPSHOT, BLOB} or "last seen roots" in map(_ROOT_NAME, roots):
        return None
    cache = ReachCache.load(repo.store_root, shared=repo.group_shared)
    loader = StoreLoader(repo.store, cache, sizes=False)
    from_store: set[str] = set()

    def entries_of(tree: str) -> TreeEntries:
        entries = cache.tree_entries(tree)
        if entries is None:
            from_store.add(tree)
            entries = tree_entries_from_store(loader, tree)
        return entries

    try:
        for oid in {root.id for root in roots if root.kind == SNAPSHOT}:
            loader.snapshots[oid] = loader._snapshot(oid)
        trees, blobs = walk_trees({snapshot.tree for snapshot in loader.snapshots.values()}, entries_of)
    except ObjectError:
        return None
    blobs.update(compress(map(_ROOT_ID, roots), map(BLOB.__eq__, map(_ROOT_KIND, roots))))  # C loops: an index's
    snapshots = set(loader.snapshots)
    if not (trees.isdisjoint(blobs) and snapshots.isdisjoint(blobs) and snapshots.isdisjoint(trees)):
        return None
    loader.from_cache |= trees - from_store
    if save:  # records are true whatever the store holds now: saved before it is listed
        cache.save(trees | snapshots)
    kind = dict.fromkeys(blobs, BLOB)
    kind.update(dict.fromkeys(trees, TREE))
    kind.update(dict.fromkeys(snapshots, SNAPSHOT))
    return BulkMarks(kind, loader)


def settle_cache(repo: WorkspaceView, marker: Marker | BulkMarks, stored: set[str], roots: list[Root],
                 on_problem: ProblemSink) -> Marker | BulkMarks:
    """Once the store is listed (`stored`, listed after marking): `marker`
    if every tree and snapshot the cache stood in for is stored; else the
    cache named objects the store has lost, and the roots are marked again
    from the store alone, so that what follows is exactly what it would be
    without a cache (damage found, or a gone workspace's missing objects
    excused)."""
    loader = marker.load
    if loader.from_cache <= stored:
        return marker
    return mark_reachable(repo, roots, on_problem, by_unit=loader.sizes, cached=False)


__all__ = ["Root", "RootScan", "WorkspaceState", "Marker", "StoreLoader", "collect_roots", "mark_roots",
           "mark_reachable", "settle_cache", "walk_trees", "tree_entries_from_store", "mark_in_bulk", "BulkMarks",
           "workspace_roots", "store_roots", "ref_roots", "problem_kind", "reason", "SHARED", "ANY_ROOT"]
