"""Reachability and garbage collection: what the roots reach, and deleting
the rest once it is old enough.

Roots are, for every workspace that uses the store: its live snapshots (the
journal), every ref, a detached HEAD and every index entry. A shared store
lists the workspaces that use it in `<store>/workspaces/`; a workspace with
its own store has only itself. Marking follows snapshot -> root tree ->
sub-trees and blobs. Parent links are history, not liveness: they are not
followed, so a forgotten parent is collected like anything else.

Files gc keeps in the store root::

    gc.last                   when the last gc ran (a Unix time; --auto reads it)
    workspaces/<key>          a registration: the workspace's .rnstore path
    workspaces/<key>.roots    the roots gc last read there, "KIND ID" lines
    workspaces/<key>.gone     when gc first found that workspace gone (Unix time)

The rules that make it safe:

1. Mark and sweep run under the store lock held exclusively. Writers hold it
   shared from their first object write to the ref, journal or index update
   that makes the objects reachable, so gc never sees half a publication.
2. A root that cannot be read - a corrupt ref, HEAD, index or config, an
   unreadable workspace, a missing or corrupt snapshot or tree that a root
   reaches - stops gc before it changes anything (CorruptStoreError naming
   it). Unreadable is never "references nothing". A missing blob stops
   nothing: nothing can hide below a blob.
3. Unreachable objects younger than the grace period are kept: a writer that
   finds an object already stored refreshes its mtime, so an object a
   running `add` is about to reference is young.
4. A registered workspace whose `.rnstore` folder is gone goes on protecting,
   for the grace period after gc first found it gone, the roots gc last read
   there (`.roots`) and every object written or refreshed since then (it may
   have made them). Then (at once with a grace of 0) its registration is
   removed and its objects are collected like any others.
5. Stale temporary files (`.tmp-*` in objects/ and its fan-out folders) older
   than the grace period are leftovers of crashed writers and are deleted.

Each tree is read once per run, however many snapshots share it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .alloc import cycle_collector_paused
from .errors import CorruptObjectError, CorruptStoreError, InvalidValueError, MissingObjectError, ObjectError
from .fsutil import TMP_PREFIX, atomic_write, remove_quietly
from .objects import BLOB, MODE_TREE, SNAPSHOT, TREE, is_object_id
from .progress import NO_PROGRESS, Progress

LAST_RUN = "gc.last"
WORKSPACES = "workspaces"
ROOTS_SUFFIX = ".roots"
GONE_SUFFIX = ".gone"
_KIND_LETTER = {SNAPSHOT: "s", TREE: "t", BLOB: "b"}
_LETTER_KIND = {v: k for k, v in _KIND_LETTER.items()}


# -- roots ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Root:
    """One object a workspace holds on to."""
    id: str
    kind: str            # SNAPSHOT for journal, refs and HEAD; BLOB or TREE for the index
    name: str            # "live snapshot", "refs/tags/v1", "HEAD", "index", "last seen roots"
    workspace: Path      # the workspace's .rnstore folder

    @property
    def unit(self) -> tuple[str, str]:
        """What du counts exclusive bytes for: one snapshot of one workspace
        (whether live, named by refs or both), or one workspace's index."""
        return (str(self.workspace), self.id if self.kind == SNAPSHOT else "index")

    @property
    def label(self) -> str:
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


def workspace_roots(ws, on_problem: ProblemSink) -> list[Root]:
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
    try:
        # Refs one by one, so that each broken one is named; os.walk would
        # skip an unreadable folder silently, so it raises here instead.
        for folder, dirs, files in os.walk(dotdir / "refs", onerror=_raise):
            dirs.sort()
            for name in sorted(files):
                ref = Path(folder, name).relative_to(dotdir).as_posix()
                if name.startswith(".") or not _valid_ref(ref):
                    continue  # temporary files; nothing rnstore writes as a ref
                try:
                    oid = ws.refs.resolve(ref)
                except _UNREADABLE as exc:
                    failed(ref, exc)
                    continue
                if oid is not None:
                    roots.append(Root(oid, SNAPSHOT, ref, dotdir))
    except OSError as exc:
        failed("refs/", exc)
    try:
        branch, head = ws.refs.head()
        if branch is None and head is not None:
            roots.append(Root(head, SNAPSHOT, "HEAD", dotdir))
    except _UNREADABLE as exc:
        failed("HEAD", exc)
    try:
        for entry in ws.read_index():
            # An empty folder's entry names the empty tree, which is stored
            # only when a tree is written: a marker, not a reference.
            if entry.mode != MODE_TREE:
                roots.append(Root(entry.id, BLOB, "index", dotdir))
    except _UNREADABLE as exc:
        failed("the index", exc)
    return roots


def _valid_ref(ref: str) -> bool:
    from .refs import check_ref_name
    try:
        check_ref_name(ref)
        return True
    except InvalidValueError:
        return False


def _raise(exc: OSError) -> None:
    raise exc


def registrations(store_root: Path) -> list[Path]:
    """Registration files of a shared store, sorted."""
    folder = store_root / WORKSPACES
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(folder / n for n in names if len(n) == 32 and all(c in "0123456789abcdef" for c in n))


def _read_float(path: Path) -> float | None:
    try:
        return float(path.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def collect_roots(repo, on_problem: ProblemSink, *, grace: float, now: float) -> RootScan:
    """The roots of every workspace the store serves. Problems go to
    `on_problem` (gc raises there; fsck lists them and goes on). Reads only."""
    scan = RootScan()
    here = WorkspaceState(repo.dotdir, None, "here")
    scan.workspaces.append(here)
    scan.roots += workspace_roots(repo, on_problem)
    if not repo.shared_store:
        return scan
    from .repo import Repository
    for registration in registrations(repo.store_root):
        try:
            text = registration.read_bytes()
        except OSError as exc:
            on_problem("corrupt", str(registration), f"cannot read the registration {registration}: {_why(exc)}")
            continue
        dotdir = Path(os.fsdecode(text.rstrip(b"\n")))
        if not text.strip() or not dotdir.is_absolute():
            on_problem("corrupt", str(registration), f"the registration {registration} is corrupt")
            continue
        if _same_folder(dotdir, repo.dotdir):
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
            other = Repository(dotdir.parent, dotdir)
        except _UNREADABLE as exc:
            on_problem("corrupt", str(dotdir), f"cannot read the workspace {dotdir.parent}: {_why(exc)}")
            continue
        if not other.shared_store or not _same_folder(other.store_root, repo.store_root):
            ws.state = "elsewhere"  # it was made again with another store
            continue
        scan.roots += workspace_roots(other, on_problem)
    return scan


def _gone(ws: WorkspaceState, scan: RootScan, on_problem: ProblemSink, *, grace: float, now: float) -> None:
    """Rule 4: a gone workspace protects what gc last saw there, for a while."""
    registration = ws.registration
    ws.gone_since = _read_float(registration.with_name(registration.name + GONE_SUFFIX))
    since = now if ws.gone_since is None else ws.gone_since
    if grace <= 0 or now - since >= grace:
        ws.released = True
        return
    roots_file = registration.with_name(registration.name + ROOTS_SUFFIX)
    try:
        lines = roots_file.read_text(encoding="ascii").splitlines()
        seen_at = os.stat(roots_file).st_mtime
    except FileNotFoundError:
        lines = []
        seen_at = os.stat(registration).st_mtime
    except (OSError, UnicodeDecodeError) as exc:
        on_problem("corrupt", str(roots_file), f"cannot read {roots_file}: {_why(exc)}")
        return
    for line in lines:
        letter, _, oid = line.partition(" ")
        if letter not in _LETTER_KIND or not is_object_id(oid):
            on_problem("corrupt", str(roots_file), f"{roots_file} is corrupt")
            return
        scan.roots.append(Root(oid, _LETTER_KIND[letter], "last seen roots", ws.dotdir))
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
            stack.extend(below)
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
    """Loads snapshots and trees from the store for a Marker, keeping what du
    needs: each snapshot, each tree's total size and each blob's size."""

    def __init__(self, store):
        self.store = store
        self.snapshots: dict = {}
        self.tree_size: dict[str, int] = {}
        self.blob_size: dict[str, int] = {}

    def __call__(self, oid: str, kind: str) -> Children:
        if kind == SNAPSHOT:
            snapshot = self.store.get_snapshot(oid)
            self.snapshots[oid] = snapshot
            return ((snapshot.tree, TREE),)
        tree = self.store.get_tree(oid)
        self.tree_size[oid] = tree.total_size
        below = []
        for entry in tree.entries:
            if entry.mode == MODE_TREE:
                below.append((entry.id, TREE))
            else:
                below.append((entry.id, BLOB))
                self.blob_size[entry.id] = entry.size
        return tuple(below)


#: The one unit gc marks with: it needs no owners, only what is reached.
ANY_ROOT = ("", "any root")


def mark_roots(marker: Marker, roots: Iterable[Root], on_problem: ProblemSink,
               progress: Progress = NO_PROGRESS, *, by_unit: bool = True) -> None:
    """Mark what `roots` reach; with `by_unit` False all count as one unit
    (each object is then read once; gc needs no more)."""
    for root in roots:
        def on_error(oid: str, kind: str, exc: ObjectError, root=root) -> None:
            if root.name == "last seen roots" and isinstance(exc, MissingObjectError):
                return  # what a gone workspace held may have gone with it
            what = "it" if oid == root.id else f"{kind} {oid}, which it reaches,"
            on_problem(problem_kind(exc), oid, f"{root.label} cannot be read: {what} is "
                       + ("missing" if isinstance(exc, MissingObjectError) else f"corrupt: {reason(exc, oid)}"))
        unit = root.unit if by_unit else ANY_ROOT
        progress.advance(marker.mark(unit, root.id, root.kind, on_error))


# -- the objects on disk --------------------------------------------------------------------

# -- gc ---------------------------------------------------------------------------------------

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
            "last_run": self.last_run,
            "workspaces": [{"path": str(ws.root), "state": ws.state, "released": ws.released}
                           for ws in self.workspaces],
        }


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def grace_period(repo, prune: str | float | None) -> float:
    """--prune DURATION|now, or the gc.prune setting."""
    if prune is None:
        return float(repo.config.get("gc.prune"))
    if isinstance(prune, (int, float)):
        return max(0.0, float(prune))
    from .units import parse_duration
    return parse_duration(prune)


def last_run(repo) -> float | None:
    return _read_float(repo.store_root / LAST_RUN)


def _refuse(kind: str, oid: str, detail: str) -> None:
    raise CorruptStoreError(
        f"gc deleted nothing: {detail}",
        hints=["`rnstore fsck` lists the damage; gc runs once every root can be read"])


@cycle_collector_paused
def gc(repo, *, dry_run: bool = False, prune: str | float | None = None, auto: bool = False,
       progress: Progress = NO_PROGRESS) -> GcStats:
    """Delete the objects no root reaches that are older than the grace
    period (`prune`, default the gc.prune setting; 0 or "now": any age), and
    stale temporary files. With `auto`, do nothing unless the last gc of this
    store ran more than gc.interval ago. With `dry_run`, change nothing and
    report what would be deleted."""
    grace = grace_period(repo, prune)
    stats = GcStats(dry_run=dry_run, prune=grace, last_run=last_run(repo))
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
        marker = Marker(StoreLoader(repo.store))
        progress.start("gc: marking")
        try:
            mark_roots(marker, scan.roots, _refuse, progress, by_unit=False)
        finally:
            progress.finish()
        stats.reachable_objects = len(marker)
        # Everything could be read: from here on gc may change the store.
        if not dry_run:
            _update_registrations(repo, scan, now)
        _sweep(repo, marker, scan, stats, grace=grace, now=now, progress=progress)
        if not dry_run:
            atomic_write(repo.store_root / LAST_RUN, f"{now:.3f}\n".encode(), durable=False,
                         shared=repo.group_shared)
    return stats


def _due(repo, previous: float | None) -> bool:
    if previous is None:
        return True
    return time.time() - previous > float(repo.config.get("gc.interval"))


def _update_registrations(repo, scan: RootScan, now: float) -> None:
    """Record the roots of every live workspace (rule 4 reads them if it goes
    away), mark newly gone ones, and drop the registrations of released or
    moved ones."""
    if not repo.shared_store:
        return
    by_workspace: dict[str, list[Root]] = {}
    for root in scan.roots:
        by_workspace.setdefault(str(root.workspace), []).append(root)
    for ws in scan.workspaces:
        if ws.state == "here" and ws.registration is None:
            repo.register()
            ws.registration = repo.registration_path()
        registration = ws.registration
        if registration is None:
            continue
        gone_file = registration.with_name(registration.name + GONE_SUFFIX)
        roots_file = registration.with_name(registration.name + ROOTS_SUFFIX)
        if ws.state in ("here", "alive"):
            lines = sorted({f"{_KIND_LETTER[r.kind]} {r.id}\n" for r in by_workspace.get(str(ws.dotdir), [])})
            atomic_write(roots_file, "".join(lines).encode(), durable=repo.durable,
                         shared=repo.group_shared)
            remove_quietly(gone_file)
        elif ws.released or ws.state == "elsewhere":
            remove_quietly(registration)
            remove_quietly(roots_file)
            remove_quietly(gone_file)
        elif ws.gone_since is None:
            atomic_write(gone_file, f"{now:.3f}\n".encode(), durable=False,
                         shared=repo.group_shared)


def _workspace_temp_files(repo, scan: RootScan) -> list[Path]:
    """Leftovers of atomic_write (index, HEAD, refs, config, registrations)
    in every workspace the store serves; the objects folder is the store's."""
    found = []
    folders = {ws.dotdir for ws in scan.workspaces if ws.state in ("here", "alive")}
    folders.add(repo.dotdir)
    for dotdir in sorted(folders):
        for folder, subfolders, files in os.walk(dotdir):
            subfolders[:] = [d for d in subfolders if d != "objects"]
            found.extend(Path(folder, f) for f in files if f.startswith(TMP_PREFIX))
    registrations = repo.store_root / "workspaces"
    if registrations.is_dir():
        found.extend(p for p in registrations.iterdir() if p.name.startswith(TMP_PREFIX))
    # These writers do not hold the store lock, so a temporary file whose
    # writer still runs may be in use, whatever its age.
    return [p for p in found if not _writer_alive(p.name)]


def _writer_alive(name: str) -> bool:
    """fsutil.temp_name_for puts the writer's pid second to last."""
    parts = name.split("-")
    if len(parts) < 3 or not parts[-2].isdigit():
        return False
    pid = int(parts[-2])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _sweep(repo, marker: Marker, scan: RootScan, stats: GcStats, *, grace: float, now: float,
           progress: Progress) -> None:
    store = repo.store
    cutoff = now - grace
    doomed = []
    kept = 0
    for obj in store.stored_objects():
        if obj.id in marker:
            kept += 1
        elif (grace > 0 and obj.mtime >= cutoff) or (
                scan.keep_newer_than is not None and obj.mtime >= scan.keep_newer_than):
            kept += 1
            stats.young_objects += 1
        else:
            doomed.append(obj)
    stats.kept_objects = kept
    stats.deleted_objects = len(doomed)
    stats.freed_bytes = sum(o.size for o in doomed)
    if doomed:
        progress.start("gc: deleting", len(doomed), stats.freed_bytes)
    try:
        if not stats.dry_run:
            store.delete_stored(doomed)
        progress.advance(len(doomed), stats.freed_bytes)
        for path in [*store.temp_files(), *_workspace_temp_files(repo, scan)]:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if grace > 0 and st.st_mtime >= cutoff:
                continue
            stats.deleted_temp_files += 1
            stats.freed_temp_bytes += st.st_size
            if not stats.dry_run:
                remove_quietly(path)
    finally:
        progress.finish()


__all__ = ["gc", "GcStats", "Root", "RootScan", "WorkspaceState", "Marker", "StoreLoader",
           "collect_roots", "mark_roots", "workspace_roots", "SHARED"]
