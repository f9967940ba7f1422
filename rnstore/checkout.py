"""checkout: make files on disk match a snapshot.

Three forms share one materialiser:

- ``checkout(repo, REV)``: the workspace's tracked files, the index and HEAD
  (a branch name attaches HEAD to it; ``HEAD`` leaves it as it is; anything
  else detaches it). Untracked and ignored files are left alone.
- ``checkout(repo, REV, paths)``: only those paths (files or folders), in the
  workspace and the index; HEAD stays. Tracked entries below the paths are
  restored (tracked files absent from REV there are deleted). Uncommitted
  changes to them (edited on disk, or staged) stop it unless `force`.
- ``checkout(repo, None, paths)``: those paths from the index, as
  `git checkout -- PATH` does: edits on disk are discarded (that is what it
  is for); the index and HEAD stay.
- ``checkout(repo, REV, target=DIR)``: REV (or its paths) into any folder;
  the workspace, index and HEAD are untouched.

It works in three steps, so that a refusal or a damaged object changes
nothing:

1. plan: compare what is on disk with the snapshot (and in the workspace with
   the index and HEAD). Conflicts stop here: uncommitted changes, untracked
   entries in the way, differing files in a target folder.
2. stage: every file and link to write is fetched from the store into a
   private staging folder (beside the index for the workspace, inside DIR for
   a target), its content verified against its id on the way. A missing or
   corrupt object stops here; the staging folder is removed.
3. apply: remove what goes, remove the folders that this emptied, create
   folders, then rename each staged file into place.

Before step 2, every folder the checkout will write into (or create a
folder in) is checked for write permission: a read-only folder stops the
checkout with nothing changed. A write that still fails in step 3 (the
permissions changed since) does not stop the others; the workspace form
then finishes consistently: the index and HEAD move to the snapshot, and
the paths that could not be written keep what they held (status shows them
as changes) and are named in the error.

A checkout killed in step 2 or 3 leaves its staging folder
(`.tmp-checkout-PID-*`); the next workspace checkout removes those beside the
index, the next checkout into the same target those whose process is gone.

Safety: nothing is written or removed through a path; every operation goes
through safefs.py's directory descriptors, opened one component at a time
with O_NOFOLLOW, so a symlink in the folder (planted, or checked out from a
snapshot such as ``link -> /etc``) is never followed. A symlink where the
snapshot has a folder or a file is an entry in the way, replaced only with
`force`. Entries named ``.rnstore`` are never written (they are never stored
by `add`; a tree holding one was crafted), and are reported as excluded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import (BadInputError, ConflictError, CorruptObjectError, InvalidValueError,
                     MissingObjectError, NotWritableError, ObjectError, RefConflictError)
from .fsutil import TMP_PREFIX, left_by_dead_process
from .index import Index, IndexEntry, StatKey
from .objects import BLOB, MODE_EXEC, MODE_LINK, MODE_TREE, Tree, decode_tree
from .progress import NO_PROGRESS, Progress
from .refs import HEAD, HEADS, check_ref_name
from .revparse import resolve_snapshot
from .safefs import (O_CLOEXEC, O_DIR, O_NEW, Dirs, add_ancestors, ancestors, place, prune, remove_folder, rmdir_quietly,
                     split, write_all)
from .staging import head_entries
from .trees import MAX_PATH, FlatEntry, check_blob_size, check_link_target, lookup, shorten, text_paths
from .units import plural
from .worktree import Found, hash_entry, mode_of, parallel_map, relative_pathspecs, under
from .views import HistoryView, ObjectsView, WorkspaceView

PROTECTED = b".rnstore"
#: How many conflicting paths an error lists before "and N more".
LISTED = 50



@text_paths
@dataclass
class CheckoutResult:
    """What a checkout did. Paths are `str` (written, deleted, ...); the
    raw_ fields hold them as bytes, exactly as named on disk."""
    snapshot: str
    #: the folder written into (the workspace root, or DIR)
    root: Path
    #: "switch" (checkout REV), "paths" (checkout REV -- PATH...), "index"
    #: (checkout -- PATH...) or "target"
    form: str
    #: files and links written
    raw_written: list[bytes] = field(default_factory=list)
    #: empty folders of the snapshot created
    raw_folders: list[bytes] = field(default_factory=list)
    #: tracked entries removed because REV does not have them
    raw_deleted: list[bytes] = field(default_factory=list)
    #: entries already identical, left as they were
    raw_skipped: list[bytes] = field(default_factory=list)
    #: untracked entries (or differing ones in a target) removed with `force`
    raw_replaced: list[bytes] = field(default_factory=list)
    #: snapshot entries never written (named .rnstore)
    raw_excluded: list[bytes] = field(default_factory=list)
    #: entries in a target folder that the snapshot does not have, removed with `force`
    raw_removed: list[bytes] = field(default_factory=list)
    #: with `skip_missing`: (path, object id, why) of each file not restored
    raw_missing: list[tuple[bytes, str, str]] = field(default_factory=list)
    bytes_written: int = 0
    #: after a switch: the branch ref HEAD is attached to, or None (detached)
    branch: str | None = None
    head_moved: bool = False


    @property
    def files_written(self) -> int:
        return len(self.raw_written)

    @property
    def files_deleted(self) -> int:
        return len(self.raw_deleted)

    @property
    def files_skipped(self) -> int:
        return len(self.raw_skipped)


def checkout(repo: WorkspaceView, rev: str | None, paths: Iterable[str | os.PathLike] | None = None, *,
             target: str | os.PathLike | None = None, force: bool = False,
             skip_missing: bool = False, progress: Progress = NO_PROGRESS,
             cwd: Path | None = None, fetched: "FetchedBlobs | None" = None) -> CheckoutResult:
    """Make the workspace (or `target`) match snapshot `rev`; see the module
    docstring for the three forms. `paths` are relative to `cwd` (default:
    the current folder) and must lie in the workspace. Raises ConflictError
    (nothing changed) unless `force`, BadInputError for a path REV does not
    have, MissingObjectError/CorruptObjectError naming the affected paths;
    with `skip_missing`, files whose objects are missing or corrupt are
    left out and listed in the result's `missing` instead. `fetched`: blobs
    a clone has just verified, moved into place rather than read again, and
    its trees, decoded from memory rather than read from the store."""
    paths = list(paths or [])
    prefixes = relative_pathspecs(repo.root, paths, cwd) if paths else None
    if rev is None:
        if prefixes is None:
            raise InvalidValueError("give a revision, or paths to restore from the index")
        if target is not None:
            raise InvalidValueError("a target folder needs a revision to write")
        with repo.lock():
            _remove_stale_staging(repo.dotdir, locked=True)
            return _restore_from_index(repo, prefixes, force, progress)
    if target is not None:
        snapshot_id = resolve_snapshot(repo, rev)
        return materialise(repo, snapshot_id, Path(target), prefixes, force=force,
                           skip_missing=skip_missing, progress=progress)
    with repo.lock():
        repo.ensure_registered()
        _remove_stale_staging(repo.dotdir, locked=True)
        snapshot_id = resolve_snapshot(repo, rev)
        if prefixes is not None:
            return _restore_paths(repo, snapshot_id, prefixes, force, progress, skip_missing)
        return _switch(repo, rev, snapshot_id, force, progress, skip_missing, fetched)


def materialise(repo: ObjectsView, snapshot_id: str, target: Path, prefixes: list[bytes] | None = None, *,
                force: bool = False, skip_missing: bool = False, progress: Progress = NO_PROGRESS,
                form: str = "target") -> CheckoutResult:
    """A snapshot (or the entries below `prefixes`) into the folder `target`,
    created if missing. Differing entries already there, and entries the
    snapshot does not have (below `prefixes`), are a ConflictError unless
    `force`, which removes them (listed in the result's `removed`): the
    folder then holds exactly the snapshot. Identical ones are skipped."""
    tree = repo.store.get_snapshot(snapshot_id).tree
    unreadable: list[tuple[bytes, str, str]] | None = [] if skip_missing else None
    entries, excluded = _select(repo.store, tree, prefixes, snapshot_id, unreadable)
    desired: dict[bytes, FlatEntry | None] = {e.path: e for e in entries}
    root = Path(target).absolute()
    if root.exists() and not root.is_dir():
        raise InvalidValueError(f"{target} exists and is not a folder")
    plan = _plan(root, desired, {}, None, force=force, in_the_way="differs")
    extra_files, extra_folders = _extras(root, desired, prefixes,
                                         unknown=[path for path, _, _ in unreadable or ()])
    # an empty folder is content (snapshots hold them): one REV lacks is
    # extra as a file is; a folder holding extra entries is named by them
    holding: set[bytes] = set()
    for path in extra_files + extra_folders:
        add_ancestors(path, holding)
    removed = sorted(extra_files + [folder for folder in extra_folders if folder not in holding])
    if not force:
        plan.conflicts.extend((path, "not in the snapshot") for path in removed)
    if plan.conflicts:
        raise _conflict_error(plan.conflicts, target=True)
    plan.unlink.extend(extra_files)
    plan.rmdir.extend(extra_folders)
    _remove_stale_staging(root.parent, locked=False)  # a missing root is staged beside it (_execute)
    _remove_stale_staging(root, locked=False)
    result = CheckoutResult(snapshot_id, root, form, raw_excluded=excluded, raw_removed=removed,
                            raw_missing=list(unreadable or ()))
    try:
        _execute(repo, plan, root, root, result, force, progress, for_index=False,
                 skip_missing=skip_missing)
    except _WritesFailed as failed:
        raise failed.finished("") from None
    return result


def _extras(root: Path, desired: dict[bytes, FlatEntry | None], prefixes: list[bytes] | None, *,
            unknown: list[bytes] = ()) -> tuple[list[bytes], list[bytes]]:
    """What a target folder holds below `prefixes` that the snapshot does
    not: (files, links and special files; folders, deepest first). Entries
    named .rnstore, staging folders of a checkout and what is below the
    `unknown` folders (whose trees cannot be read) are never counted."""
    if not os.path.lexists(root):
        return [], []
    needed: set[bytes] = set()
    for path, entry in desired.items():
        add_ancestors(path, needed)
        if entry is not None and entry.mode == MODE_TREE:
            needed.add(path)
    files: list[bytes] = []
    folders: list[bytes] = []
    top = os.fsencode(root)
    stack = [b""] if prefixes is None or b"" in prefixes else list(prefixes)
    unknown = set(unknown)
    while stack:
        current = stack.pop()
        if current in unknown:
            continue
        try:
            st = os.lstat(os.path.join(top, current) if current else top)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not stat.S_ISDIR(st.st_mode):
            if current not in desired and current not in needed:  # in the way of a folder: the plan replaces it
                files.append(current)
            continue
        if current and current not in needed and current not in desired:
            folders.append(current)
        try:
            names = os.listdir(os.path.join(top, current) if current else top)
        except OSError:
            continue
        for name in names:
            if name == PROTECTED or (not current and name.startswith(os.fsencode(STAGING_PREFIX))):
                continue
            stack.append(current + b"/" + name if current else name)
    folders.sort(key=lambda p: p.count(b"/"), reverse=True)
    return sorted(files), folders


STAGING_PREFIX = TMP_PREFIX + "checkout-"


def _remove_stale_staging(folder: Path, *, locked: bool) -> None:
    """Staging folders (`.tmp-checkout-PID-...`) that a killed checkout left.
    Beside the index (`locked`: workspace checkouts stage there only under
    the workspace lock, which we hold) every one is stale; in a target
    folder, only those of a process that is gone."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(STAGING_PREFIX):
            continue
        pid = name[len(STAGING_PREFIX):].split("-", 1)[0]
        if locked or left_by_dead_process(folder / name, pid):
            shutil.rmtree(folder / name, ignore_errors=True)


def _plan_snapshot(repo: WorkspaceView, snapshot_id: str, prefixes: list[bytes] | None, force: bool,
                   skip_missing: bool, fetched: "FetchedBlobs | None" = None
                   ) -> tuple[Index, dict[bytes, FlatEntry | None], list[bytes], "_Plan", CheckoutResult]:
    """What making the files under `prefixes` (every file when None) match
    the snapshot takes: the index read, each path's desired entry (None:
    delete it), the folders whose content cannot be known (skip_missing),
    and the plan. Local changes in the way raise ConflictError unless
    `force`; nothing is written yet."""
    tree = repo.store.get_snapshot(snapshot_id).tree
    unreadable: list[tuple[bytes, str, str]] | None = [] if skip_missing else None
    trees = repo.store if fetched is None else fetched.trees_over(repo.store)
    entries, excluded = _select(trees, tree, prefixes, snapshot_id, unreadable)
    if fetched is not None:
        fetched.trees.clear()  # read: not held through the writes
    unknown = [path for path, _, _ in unreadable or ()]  # folders whose content cannot be known
    index = repo.read_index()
    desired: dict[bytes, FlatEntry | None] = {e.path: e for e in entries}
    for entry in index:
        if entry.path not in desired and (prefixes is None or under(entry.path, prefixes)) \
                and not _protected(entry.path) and not under(entry.path, unknown):
            desired[entry.path] = None
    guard = None if force else head_entries(repo, repo.refs.head()[1])
    plan = _plan(repo.root, desired, index.entries, guard, force=force)
    if plan.conflicts:
        raise _conflict_error(plan.conflicts)
    result = CheckoutResult(snapshot_id, repo.root, "paths" if prefixes is not None else "switch",
                            raw_excluded=excluded, raw_missing=list(unreadable or ()))
    return index, desired, unknown, plan, result


def _switch(repo: WorkspaceView, rev: str, snapshot_id: str, force: bool, progress: Progress,
            skip_missing: bool = False, fetched: "FetchedBlobs | None" = None) -> CheckoutResult:
    branch_ref, head = repo.refs.head()
    attach = _branch_named(repo, rev)
    index, desired, unknown, plan, result = _plan_snapshot(repo, snapshot_id, None, force, skip_missing,
                                                           fetched)
    placed, failed = _execute_keeping_going(repo, plan, result, force, progress, skip_missing, fetched)
    untouched = Index(e for e in index if under(e.path, unknown))  # left as they were
    repo.write_index(_new_index(untouched, desired, index.entries, plan, placed))
    if attach is not None:
        result.branch = attach
        if attach != branch_ref:
            repo.refs.set_head_symbolic(attach)
            result.head_moved = True
    elif rev == HEAD:
        result.branch = branch_ref  # HEAD itself: stays as it is
    else:
        if branch_ref is not None or head != snapshot_id:
            repo.refs.update(HEAD, snapshot_id, follow_head=False)
            result.head_moved = True
    if failed:
        raise failed.finished(f"; HEAD and the index moved to {snapshot_id[:12]}, so those paths "
                              f"show as changes in `rnstore status`")
    return result


def fast_forward(repo: WorkspaceView, snapshot_id: str, *, expected: str | None,
                 progress: Progress = NO_PROGRESS) -> CheckoutResult:
    """Move the current branch from `expected` to `snapshot_id` and make the
    files match, as a checkout from HEAD would: local changes in the way are
    a ConflictError and nothing moves (pull's fast-forward)."""
    with repo.lock():
        branch_ref, head = repo.refs.head()
        if branch_ref is None or head != expected:
            raise RefConflictError(f"HEAD moved while pulling (now {head or 'nothing'})",
                                   hints=["run the command again"])
        result = _switch(repo, HEAD, snapshot_id, False, progress)
        repo.refs.update(branch_ref, snapshot_id, expected=expected)
        result.head_moved = True
        return result


def _restore_paths(repo: WorkspaceView, snapshot_id: str, prefixes: list[bytes], force: bool,
                   progress: Progress, skip_missing: bool = False) -> CheckoutResult:
    index, desired, _, plan, result = _plan_snapshot(repo, snapshot_id, prefixes, force, skip_missing)
    placed, failed = _execute_keeping_going(repo, plan, result, force, progress, skip_missing)
    kept = Index(e for e in index if e.path not in desired and e.path not in plan.untrack)
    repo.write_index(_new_index(kept, desired, index.entries, plan, placed))
    if failed:
        raise failed.finished("; the index records the snapshot's entries, so those paths show "
                              "as changes in `rnstore status`")
    return result


def _restore_from_index(repo: WorkspaceView, prefixes: list[bytes], force: bool,
                        progress: Progress) -> CheckoutResult:
    """The staged version of each tracked entry below `prefixes`, on disk."""

    index = repo.read_index()
    desired: dict[bytes, FlatEntry | None] = {
        e.path: FlatEntry(e.path, e.mode, e.id, e.size)
        for e in index if under(e.path, prefixes) and not _protected(e.path)}
    for prefix in prefixes:
        if not any(under(path, [prefix]) for path in desired):
            raise BadInputError(
                f"pathspec '{os.fsdecode(prefix)}' did not match any file in the index",
                hints=["`rnstore ls-files` lists what the index holds"])
    # No guard: discarding edits is what it is for. An untracked entry in
    # the way of a tracked file is still a conflict unless `force`.
    plan = _plan(repo.root, desired, index.entries, None, force=force)
    if plan.conflicts:
        raise _conflict_error(plan.conflicts)
    snapshot = repo.refs.head()[1] or ""
    result = CheckoutResult(snapshot, repo.root, "index")
    placed, failed = _execute_keeping_going(repo, plan, result, force, progress, False)
    kept = Index(e for e in index if e.path not in desired)
    repo.write_index(_new_index(kept, desired, index.entries, plan, placed))
    if failed:
        raise failed.finished("")
    return result


def _execute_keeping_going(repo: WorkspaceView, plan: "_Plan", result: CheckoutResult, force: bool,
                           progress: Progress, skip_missing: bool, fetched: "FetchedBlobs | None" = None
                           ) -> tuple["_Placed", "_WritesFailed | None"]:
    """_execute in the workspace: writes that fail (after the writability
    check passed) are returned, so that the caller finishes the index and
    HEAD consistently before it reports them."""
    try:
        return _execute(repo, plan, repo.root, repo.dotdir, result, force, progress,
                        skip_missing=skip_missing, fetched=fetched), None
    except _WritesFailed as failed:
        return failed.placed, failed


class _WritesFailed(Exception):
    """Some writes of the apply step failed; the others were done."""

    def __init__(self, failures: list[tuple[bytes, OSError]], placed: "_Placed"):
        super().__init__("writes failed")
        self.failures = failures
        self.placed = placed

    def finished(self, how: str) -> NotWritableError:
        shown = ", ".join(f"'{shorten(path)}' ({exc.strerror or exc})" for path, exc in self.failures[:5])
        more = f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
        return NotWritableError(
            f"checkout could not write {shown}{more}; everything else was written{how}",
            [os.fsdecode(p) for p, _ in self.failures],
            hints=["fix the permissions, then `rnstore checkout HEAD -- PATH` writes them"])


def _branch_named(repo: HistoryView, rev: str) -> str | None:
    """The branch ref `rev` names, if it names one (checkout attaches HEAD)."""
    if rev == HEAD:
        return None
    ref = rev if rev.startswith(HEADS) else HEADS + rev
    try:
        check_ref_name(ref)
        return ref if repo.refs.resolve(ref) is not None else None
    except InvalidValueError:
        return None


def _new_index(base: Index, desired: dict[bytes, FlatEntry | None],
               tracked: dict[bytes, IndexEntry], plan: "_Plan",
               placed: "_Placed") -> Index:
    """`base` plus the desired entries, with the stat cache warm wherever the
    file on disk is known to hold exactly that content. The entries go in
    in path order, merged in one pass: no overlay entry per path (a
    clone's index holds every file)."""
    def entries() -> Iterator[IndexEntry]:
        for path in sorted(path for path, wanted in desired.items() if wanted is not None):
            wanted = desired[path]
            if wanted.mode == MODE_TREE:
                yield IndexEntry(path, MODE_TREE, wanted.id, 0)
                continue
            before = tracked.get(path)
            if path in placed:
                key = placed[path]  # we wrote it; the index write's time guards it
            elif path in plan.known:
                key = plan.known[path]  # hashed while planning: identical
            elif before is not None and (before.mode, before.id) == (wanted.mode, wanted.id):
                key = before.stat  # identical by the stat cache (or not compared: None)
            else:
                key = None
            yield IndexEntry(path, wanted.mode, wanted.id, wanted.size, key)

    base.update_sorted(entries())
    base.drop_shadowed_folders()
    return base


# -- selecting snapshot entries --------------------------------------------------------


def _protected(path: bytes) -> bool:
    return PROTECTED in path.split(b"/")


def _select(store, tree: str, prefixes: list[bytes] | None, snapshot_id: str,
            unreadable: list[tuple[bytes, str, str]] | None = None) -> tuple[list[FlatEntry], list[bytes]]:
    """The snapshot's leaves (files, links, empty folders) below `prefixes`
    (None: all), and the paths excluded because a component is .rnstore.
    With `unreadable`, see _leaves."""
    if prefixes is None or b"" in prefixes:
        found = _leaves(store, tree, b"", unreadable)
    else:
        found = []
        roots = sorted(set(prefixes))
        for prefix in roots:
            if any(other != prefix and under(prefix, [other]) for other in roots):
                continue  # covered by a shorter prefix
            entry = lookup(store, tree, prefix)
            if entry is None:
                raise BadInputError(
                    f"path '{os.fsdecode(prefix)}' is not in snapshot {snapshot_id[:12]}",
                    hints=["`rnstore ls-tree -r REV` lists what it holds"])
            if entry.mode != MODE_TREE:
                found.append(FlatEntry(prefix, entry.mode, entry.id, entry.size))
                continue
            below = _leaves(store, entry.id, prefix + b"/", unreadable)
            found.extend(below or [FlatEntry(prefix, MODE_TREE, entry.id, 0)])
    kept = [e for e in found if not _protected(e.path)]
    excluded = [e.path for e in found if _protected(e.path)]
    return kept, excluded


def _leaves(store, tree_id: str, prefix: bytes,
            unreadable: list[tuple[bytes, str, str]] | None = None) -> list[FlatEntry]:
    """Files, links and empty folders below a tree, like trees.iter_tree,
    but without recursion: a crafted tree may nest deeper than Python's
    stack (the paths then fail cleanly with "File name too long"). With
    `unreadable` (skip_missing), a sub-folder whose tree is missing or
    corrupt is recorded there as (path, id, why) and left out."""
    found: list[FlatEntry] = []
    stack = [(tree_id, prefix)]
    while stack:
        current, base = stack.pop()
        try:
            entries = store.get_tree(current).entries
        except ObjectError as exc:
            if unreadable is not None and base != prefix:
                unreadable.append((base[:-1], current, _why_damaged(exc)))
                continue
            where = os.fsdecode(base[:-1]) or "the root folder"
            raise exc.reworded(f"cannot check out '{where}': {exc}", current,
                               hints=["`rnstore fsck` lists damaged objects"]) from None
        if not entries and base != prefix:
            found.append(FlatEntry(base[:-1], MODE_TREE, current, 0))
        for entry in entries:
            if len(base) + len(entry.name) >= MAX_PATH:
                raise CorruptObjectError(
                    f"tree {current} holds a path of over {MAX_PATH} bytes, more than any "
                    f"file system allows: {(base + entry.name)[:60]!r}...", current)
            if entry.mode == MODE_TREE:
                stack.append((entry.id, base + entry.name + b"/"))
            else:
                found.append(FlatEntry(base + entry.name, entry.mode, entry.id, entry.size))
    return found


# -- plan ------------------------------------------------------------------------------


class _Disk:
    """What is below a root, read with lstat and never through a symlink: a
    path below something that is not a real folder is blocked by it."""

    def __init__(self, root: Path):
        self.root = os.fsencode(root)
        self._folders: dict[bytes, os.stat_result | None] = {}

    def lstat(self, path: bytes) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(self.root, path))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _folder(self, path: bytes) -> os.stat_result | None:
        if path not in self._folders:
            self._folders[path] = self.lstat(path)
        return self._folders[path]

    def probe(self, path: bytes) -> tuple[bytes | None, os.stat_result | None]:
        """(blocker, stat): the first ancestor that exists and is not a real
        folder, or None; the entry's own lstat, or None if absent or blocked."""
        parts = path.split(b"/")
        for depth in range(1, len(parts)):
            ancestor = b"/".join(parts[:depth])
            st = self._folder(ancestor)
            if st is None:
                return None, None
            if not stat.S_ISDIR(st.st_mode):
                return ancestor, None
        return None, self.lstat(path)


_UNKNOWN = "?"  # an id that matches nothing: sizes already tell it differs


@dataclass
class _Plan:
    writes: list[FlatEntry] = field(default_factory=list)     # files and links
    folders: list[bytes] = field(default_factory=list)        # empty folders to create
    unlink: list[bytes] = field(default_factory=list)         # non-folders to remove first
    clear: list[bytes] = field(default_factory=list)          # folders in the way of a file
    rmdir: list[bytes] = field(default_factory=list)          # tracked empty folders that go
    vanished: list[bytes] = field(default_factory=list)       # tracked files already gone: their folders may go
    needed: set[bytes] = field(default_factory=set)           # folders that must exist after
    deleted: list[bytes] = field(default_factory=list)
    replaced: list[bytes] = field(default_factory=list)
    skipped: list[bytes] = field(default_factory=list)
    conflicts: list[tuple[bytes, str]] = field(default_factory=list)
    #: settled stat keys of identical files hashed while planning (warm index)
    known: dict[bytes, StatKey | None] = field(default_factory=dict)
    #: tracked paths outside the scope removed as obstacles (dropped from the index)
    untrack: set[bytes] = field(default_factory=set)


def _plan(root: Path, desired: dict[bytes, FlatEntry | None],
          tracked: dict[bytes, IndexEntry], guard: dict[bytes, tuple[str, str]] | None, *,
          force: bool, in_the_way: str = "untracked") -> _Plan:
    """Decide every operation; touch nothing.

    `desired` maps each path in scope to its snapshot entry, or None for a
    tracked entry that goes. `tracked` is the index (empty for a target).
    `guard` (HEAD's entries) turns on the uncommitted-changes check of a
    switch; without it, tracked entries in scope are restored unconditionally.
    """
    disk = _Disk(root)
    plan = _Plan()
    blockers: set[bytes] = set()
    have = _current(root, disk, desired, tracked, plan, blockers)

    for path in sorted(desired):
        wanted, before, current = desired[path], tracked.get(path), have[path]
        if wanted is None:
            _plan_removal(plan, path, before, current, guard)
            continue
        if guard is not None and before is not None:
            staged = (before.mode, before.id)
            if staged != guard.get(path) and staged != (wanted.mode, wanted.id):
                plan.conflicts.append((path, "staged"))
        kind = current[0]
        if kind == wanted.mode and (kind == MODE_TREE or current[1] == wanted.id):
            plan.skipped.append(path)
            continue
        if kind == MODE_TREE:
            plan.clear.append(path)  # a folder where a file goes: its content decides
        elif kind is not None:
            if before is None:
                plan.conflicts.append((path, "symlink" if kind == MODE_LINK else in_the_way))
                plan.replaced.append(path)
            elif guard is not None and current != (before.mode, before.id):
                plan.conflicts.append((path, "modified"))
            if wanted.mode == MODE_TREE:
                plan.unlink.append(path)
        if wanted.mode == MODE_TREE:
            plan.folders.append(path)
        else:
            plan.writes.append(wanted)

    removed = set(plan.unlink)
    for blocker in sorted(blockers - removed):
        st = disk.lstat(blocker)
        if st is None:
            continue
        if stat.S_ISLNK(st.st_mode):
            why = "symlink"
        else:
            why = "tracked outside the paths" if blocker in tracked else in_the_way
        plan.conflicts.append((blocker, why))
        plan.unlink.append(blocker)
        plan.replaced.append(blocker)
        if blocker in tracked:
            plan.untrack.add(blocker)
        removed.add(blocker)
    for folder in plan.clear:
        leftovers = _contents(disk.root, folder, removed)
        plan.conflicts.extend((path, in_the_way) for path in leftovers)
        if leftovers:
            plan.replaced.append(folder)
    for entry in plan.writes:
        add_ancestors(entry.path, plan.needed)
    for path, wanted in desired.items():
        if wanted is not None and wanted.mode == MODE_TREE:
            add_ancestors(path, plan.needed)
            plan.needed.add(path)
    if force:
        plan.conflicts = []
    return plan


def _current(root: Path, disk: _Disk, desired: dict[bytes, FlatEntry | None],
             tracked: dict[bytes, IndexEntry], plan: _Plan,
             blockers: set[bytes]) -> dict[bytes, tuple[str | None, str]]:
    """What each path holds now, as (mode, id): mode None when absent (or
    below a non-folder, which is added to `blockers` when something must be
    written below it), MODE_TREE for a folder, "other" for a special file.
    Files are hashed only when the stat cache cannot answer and the size
    matches what they are compared with; otherwise the id is _UNKNOWN."""
    have: dict[bytes, tuple[str | None, str]] = {}
    to_hash: list[Found] = []
    for path, wanted in desired.items():
        blocker, st = disk.probe(path)
        if blocker is not None and wanted is not None:
            blockers.add(blocker)
        if st is None:
            have[path] = (None, "")
            continue
        mode = mode_of(st) or "other"
        have[path] = (mode, _UNKNOWN)
        if mode in ("other", MODE_TREE):
            continue
        before = tracked.get(path)
        if before is not None and before.mode == mode and before.stat is not None \
                and before.stat == StatKey.of(st):
            have[path] = (mode, before.id)  # the stat cache holds
        elif st.st_size in {e.size for e in (wanted, before) if e is not None and e.mode == mode}:
            to_hash.append(Found(path, mode, StatKey.of(st)))
    for found, stored, error in parallel_map(lambda f: hash_entry(root, f), to_hash):
        if error is None and stored.mode == found.mode:
            have[found.path] = (found.mode, stored.id)
            plan.known[found.path] = stored.stat
        else:
            have[found.path] = (found.mode, "unreadable")
    return have


def _plan_removal(plan: _Plan, path: bytes, before: IndexEntry, have: tuple[str | None, str],
                  guard: dict[bytes, tuple[str, str]] | None) -> None:
    """A tracked entry that REV does not have (in scope)."""
    if have[0] is None:
        if before.mode != MODE_TREE:
            plan.vanished.append(path)  # (an interrupted checkout's deletion)
        return
    if have[0] == MODE_TREE:
        if before.mode == MODE_TREE:
            plan.rmdir.append(path)  # a tracked empty folder: goes if still empty
        return  # a folder where a file was tracked holds untracked work: left alone
    if guard is not None:
        if have != (before.mode, before.id):
            plan.conflicts.append((path, "modified"))
        elif guard.get(path) != (before.mode, before.id):
            plan.conflicts.append((path, "staged"))
    plan.unlink.append(path)
    plan.deleted.append(path)


def _contents(root: bytes, folder: bytes, removed: set[bytes], limit: int = LISTED) -> list[bytes]:
    """Non-folders below `folder` that are not about to be removed."""
    found: list[bytes] = []
    stack = [folder]
    while stack and len(found) < limit:
        current = stack.pop()
        try:
            with os.scandir(os.path.join(root, current)) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            found.append(current)
            continue
        for entry in entries:
            path = current + b"/" + os.fsencode(entry.name)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(path)
            elif path not in removed:
                found.append(path)
    return found


def _conflict_error(conflicts: list[tuple[bytes, str]], *, target: bool = False) -> ConflictError:
    seen: dict[bytes, str] = {}
    for path, why in conflicts:
        seen.setdefault(path, why)
    paths = sorted(seen)
    listed = [f"{seen[p]}: {os.fsdecode(p)}" for p in paths[:LISTED]]
    if len(paths) > LISTED:
        listed.append(f"... and {len(paths) - LISTED} more")
    if target:
        message = (f"{plural(len(paths), 'path')} in the target folder "
                   f"{'differs' if len(paths) == 1 else 'differ'} from the snapshot; nothing was written")
        way_out = "remove them, choose another folder, or pass force=True to overwrite them"
    else:
        message = (f"checkout would overwrite or delete {plural(len(paths), 'path')} with uncommitted "
                   f"changes or untracked content; nothing was changed")
        way_out = "commit your changes (`rnstore commit -a`) or move them away, or pass force=True to discard them"
    return ConflictError(message, [os.fsdecode(p) for p in paths], hints=listed + [way_out])


# -- stage and apply -------------------------------------------------------------------


def _execute(repo: ObjectsView, plan: _Plan, root: Path, staging_parent: Path, result: CheckoutResult,
             force: bool, progress: Progress, *, for_index: bool = True,
             skip_missing: bool = False, fetched: "FetchedBlobs | None" = None) -> "_Placed":
    """Stage every write (verified), then apply the plan. Returns the stat key
    of each path written, for the index (none without `for_index`). With
    `skip_missing`, a write whose object is missing or corrupt is dropped
    and listed in `result.raw_missing`; otherwise nothing is changed.

    A root that does not exist yet is staged whole beside where it goes
    (in its parent) and renamed into place at the end: a crash leaves no
    root at all, or the complete one."""
    total = sum(e.size for e in plan.writes)
    stage_path = None
    stage_fd = root_fd = None
    fresh = not os.path.lexists(root)
    if fresh:
        staging_parent = root.parent
        _check_parent_writable(root)
    else:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC)
        try:
            _check_writable(plan, root_fd)
        except BaseException:
            os.close(root_fd)
            raise
    progress.start("checkout", len(plan.writes), total)
    placed = _Placed(len(plan.writes))
    try:
        if plan.writes or fresh:
            # Named before it exists, so Ctrl-C right after mkdir still removes it.
            stage_path = os.path.join(
                staging_parent, f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
            os.mkdir(stage_path, 0o700)  # private while it fills: nothing can be planted inside
            stage_fd = os.open(stage_path, O_DIR)
            layout = _Layout(plan, root, os.fstat(stage_fd).st_dev, fresh)
            layout.make_folders(stage_fd)
            damaged = _stage_all(repo.store, plan.writes, layout.names, stage_fd, progress,
                                 skip_missing=skip_missing,
                                 placed=placed if for_index and layout.in_place_after_rename else None,
                                 fetched=fetched)
            result.raw_missing.extend((path, exc.object_id or entry_id, _why_damaged(exc))
                                      for path, entry_id, exc in damaged)
        result.raw_missing.sort()
        skip = {path for path, _, _ in result.raw_missing}
        if fresh:
            os.fchmod(stage_fd, _new_folder_mode())
            try:
                os.rename(stage_path, root)  # the whole tree at once
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise
                raise ConflictError(f"{root} appeared while the checkout was writing; nothing was "
                                    f"written", [str(root)],
                                    hints=["run the checkout again to write into it"]) from None
            stage_path = None
            _all_placed(plan, result, skip, placed if for_index else None)
        else:
            _apply(plan, root_fd, stage_fd, force, result, for_index, placed, skip,
                   layout if plan.writes else None)
    finally:
        for fd in (stage_fd, root_fd):
            if fd is not None:
                os.close(fd)
        if stage_path is not None:
            shutil.rmtree(stage_path, ignore_errors=True)
        progress.finish()
    result.raw_deleted = plan.deleted
    result.raw_skipped = plan.skipped
    result.raw_replaced = sorted(set(plan.replaced))
    return placed


class _Layout:
    """Where each write is staged. A folder the checkout creates (absent
    now, in a real folder on the staging folder's file system) is staged
    whole: its files are written under their own names and the folder is
    renamed into place in one step, so a file inside costs no temporary
    name and no rename of its own, and a crash leaves the folder absent or
    complete. Every other write is staged as a numbered file and renamed
    into place alone. With `fresh` the root itself is new: the staging
    folder becomes the root.

    The staging folder is private (0700) and holds only folders made here
    until the files are written, so writing through relative paths below
    it cannot meet a symlink: links are made last, as leaves."""

    def __init__(self, plan: "_Plan", root: Path, staging_dev: int, fresh: bool):
        self.fresh = fresh
        #: each new folder staged whole -> its name in the staging folder
        self.tops: dict[bytes, bytes] = {}
        #: folders to make in the staging folder, parents first
        self.folders: list[bytes] = []
        #: per write (as plan.writes): its name in the staging folder
        self.names: list[bytes] = []
        #: per write: the new folder it is staged in (None: a numbered file)
        self.top_of: list[bytes | None] = []
        wanted = sorted(set(plan.needed).union(plan.folders))
        if fresh:
            self.tops[b""] = b""
            self.folders = wanted
            self.names = [entry.path for entry in plan.writes]
            self.top_of = [b""] * len(plan.writes)
            return
        disk = _Disk(root)
        for folder in wanted:
            top = self.top_above(folder)
            if top is not None:
                self.folders.append(self.tops[top] + folder[len(top):])
                continue
            parent = split(folder)[0]
            where = disk._folder(parent) if parent else disk.lstat(b"")
            if where is None or not stat.S_ISDIR(where.st_mode) or where.st_dev != staging_dev:
                continue  # made by the apply step, if needed
            if disk.lstat(folder) is None:
                self.tops[folder] = b"d%d" % len(self.tops)
                self.folders.append(self.tops[folder])
        # A staged name may be a few bytes longer than the path ("d12" for
        # "a"): a folder holding a path that would then be too long for the
        # kernel is made by the apply step instead.
        too_long = {self.top_above(entry.path) for entry in plan.writes
                    if len(entry.path) >= MAX_PATH - 24}
        too_long.update(self.top_above(path) for path in plan.folders if len(path) >= MAX_PATH - 24)
        if too_long - {None}:
            self.tops = {top: name for top, name in self.tops.items() if top not in too_long}
            self.folders = [self.tops[top] + folder[len(top):] for folder in wanted
                            for top in [folder if folder in self.tops else self.top_above(folder)]
                            if top is not None]
        for number, entry in enumerate(plan.writes):
            top = self.top_above(entry.path)
            self.top_of.append(top)
            self.names.append(b"%d" % number if top is None
                              else self.tops[top] + entry.path[len(top):])

    def top_above(self, path: bytes) -> bytes | None:
        if self.tops:
            for folder in ancestors(path):
                if folder in self.tops:
                    return folder
        return None

    @property
    def in_place_after_rename(self) -> bool:
        """Whether some writes keep their staged inode's stat (inside a folder
        renamed whole); numbered files are stat'ed after their own rename."""
        return bool(self.tops)

    def make_folders(self, stage_fd: int) -> None:
        for name in self.folders:
            if name:
                os.mkdir(name, 0o777, dir_fd=stage_fd)

    def inside(self, folder: bytes) -> bool:
        """Whether `folder` comes with a folder staged whole (is one, or is below one)."""
        return folder in self.tops or self.top_above(folder) is not None


def _new_folder_mode() -> int:
    """The mode mkdir gives a new folder under the umask, for the staging
    folder that becomes one (made 0700 while it fills)."""
    try:
        with open("/proc/self/status", "rb") as status:  # reading the umask without setting it
            for line in status:
                if line.startswith(b"Umask:"):
                    return 0o777 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o777 & ~mask


def _check_parent_writable(root: Path) -> None:
    """A new root is staged in its parent (made if missing): that must be writable."""
    parent = root.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise NotWritableError(
            f"cannot check out into {root}: the folder {parent} is not writable; nothing was changed",
            [str(parent)], hints=["make it writable (chmod u+w), or choose another target folder"])


def _all_placed(plan: "_Plan", result: CheckoutResult, skip: set[bytes], placed: "_Placed | None") -> None:
    """The result of a fresh root renamed into place: every write but `skip`
    (each in `placed`, whose stat keys _stage_all kept, when given)."""
    written = []
    for number, entry in enumerate(plan.writes):
        if entry.path in skip:
            continue
        written.append(entry.path)
        result.bytes_written += entry.size
        if placed is not None:
            placed.add(entry.path, number)
    result.raw_written = sorted(written)
    result.raw_folders = sorted(plan.folders)


class _Placed:
    """The stat key of each file or link the checkout put in place, by
    path, for the index: the writes' numbers by path, and the stat fields
    of each write in two arrays. A clone writes one per file, where a
    StatKey of four integers came to ~200 bytes, the largest part of its
    peak memory."""
    __slots__ = ("_numbers", "_sizes_inos", "_times")

    def __init__(self, writes: int):
        self._numbers: dict[bytes, int] = {}
        self._sizes_inos = array("Q", bytes(16 * writes))  # size and inode of write k at 2k, 2k + 1
        self._times = array("q", bytes(16 * writes))  # its mtime and ctime

    def keep(self, number: int, st: os.stat_result) -> None:
        """The stat key of write `number` (from any thread: one item each)."""
        self._sizes_inos[2 * number] = st.st_size
        self._sizes_inos[2 * number + 1] = st.st_ino
        self._times[2 * number] = st.st_mtime_ns
        self._times[2 * number + 1] = st.st_ctime_ns

    def add(self, path: bytes, number: int) -> None:
        """Write `number`, whose stat key was kept, is in place at `path`."""
        self._numbers[path] = number

    def __contains__(self, path: bytes) -> bool:
        return path in self._numbers

    def __len__(self) -> int:
        return len(self._numbers)

    def __getitem__(self, path: bytes) -> StatKey:
        at = 2 * self._numbers[path]
        return StatKey(self._sizes_inos[at], self._times[at], self._times[at + 1], self._sizes_inos[at + 1])


def _check_writable(plan: "_Plan", root_fd: int) -> None:
    """Every folder the apply step writes into (or creates a folder in)
    must be writable: checked first, so that a read-only folder stops the
    checkout before anything changed."""
    folders = {split(path)[0] for path in (*plan.unlink, *plan.clear)}
    folders.update(split(entry.path)[0] for entry in plan.writes)
    folders.update(split(path)[0] for path in (*plan.folders, *plan.needed))
    dirs = Dirs(root_fd)
    refused: list[tuple[bytes, str]] = []
    checked: set[bytes] = set()
    absent: set[bytes] = set()  # a clone's thousands of new folders: each looked for once at most
    try:
        for folder in sorted(folders):
            existing = folder
            while existing and (existing in absent or split(existing)[0] in absent
                                or dirs.open(existing) is None):
                absent.add(existing)
                existing = split(existing)[0]  # made by the checkout: its parent is written
            if existing in checked:
                continue
            checked.add(existing)
            if existing:
                parent, name = split(existing)
                allowed = os.access(name, os.W_OK | os.X_OK, dir_fd=dirs.open(parent),
                                    effective_ids=os.access in os.supports_effective_ids,
                                    follow_symlinks=False)
            else:
                allowed = os.access(f"/proc/self/fd/{root_fd}", os.W_OK | os.X_OK) \
                    if os.path.exists(f"/proc/self/fd/{root_fd}") else True
            if not allowed:
                refused.append((existing, "read-only"))
    finally:
        dirs.close()
    if refused:
        shown = ", ".join(f"'{shorten(path) or '.'}/'" for path, _ in refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        raise NotWritableError(
            f"cannot check out: the folder(s) {shown}{more} are not writable, and the checkout "
            f"writes there; nothing was changed", [os.fsdecode(p) for p, _ in refused],
            hints=["make them writable (chmod u+w), or check out into another folder with target=FOLDER"])


def _why_damaged(exc: ObjectError) -> str:
    return "missing" if isinstance(exc, MissingObjectError) else "corrupt"


def _stage_all(store, writes: list[FlatEntry], names: list[bytes], stage_fd: int, progress: Progress, *,
               skip_missing: bool = False, placed: "_Placed | None" = None,
               fetched: "FetchedBlobs | None" = None) -> list[tuple[bytes, str, ObjectError]]:
    """Stage every write under its name in `names` (files on a few threads,
    then links). Returns, with `skip_missing`, the (path, id, error) of
    those whose objects are missing or corrupt instead of failing. The
    stat key of each staged entry goes to `placed` when given."""

    def fetch(number: int):
        try:
            st = _fetch(store, writes[number], stage_fd, names[number], placed is not None, fetched)
        except ObjectError as exc:
            return exc
        if st is not None:
            placed.keep(number, st)
        return None

    damaged: list[tuple[bytes, str, ObjectError]] = []
    failed: OSError | None = None
    files = [n for n, entry in enumerate(writes) if entry.mode != MODE_LINK]
    links = [n for n, entry in enumerate(writes) if entry.mode == MODE_LINK]
    for batch, workers in ((files, STAGE_WORKERS), (links, 1)):
        for number, problem, error in parallel_map(fetch, batch, workers=workers):
            entry = writes[number]
            progress.advance(1, entry.size)
            if problem is not None:
                damaged.append((entry.path, entry.id, problem))
            elif error is not None and failed is None:
                failed = error
    if failed is not None:
        raise failed
    if damaged and not skip_missing:
        raise _object_error([(path, exc) for path, _, exc in damaged])
    return sorted(damaged, key=lambda item: item[0])


#: Threads staging files: decompression, hashing and writing release the GIL.
STAGE_WORKERS = min(4, os.cpu_count() or 1)
#: Blobs up to this size are read whole, verified in memory, and written in one go.
WHOLE_BLOB = 4 << 20


def whole_blob(store, entry: FlatEntry) -> bytes:
    """A small blob's bytes (an intact copy, where several are stored),
    verified against its id and its tree entry's size."""
    data = store.get(entry.id, BLOB, limit=max(entry.size, WHOLE_BLOB))[1]
    check_blob_size(len(data), entry)
    return data


def _fetch(store, entry: FlatEntry, stage_fd: int, name: bytes, want_stat: bool,
           fetched: "FetchedBlobs | None" = None) -> os.stat_result | None:
    """Write one blob into the staging folder, verified against its id; a
    failure leaves nothing under `name`. With `want_stat`, its lstat."""
    if entry.mode == MODE_LINK:
        target = b"".join(store.iter_blob(entry.id))
        check_link_target(target, entry)
        os.symlink(target, name, dir_fd=stage_fd)
        return os.stat(name, dir_fd=stage_fd, follow_symlinks=False) if want_stat else None
    moved = fetched.move(entry, stage_fd, name) if fetched is not None else None
    if moved is not None:
        return moved if want_stat else None
    data = whole_blob(store, entry) if entry.size <= WHOLE_BLOB else None
    fd = os.open(name, O_NEW, 0o755 if entry.mode == MODE_EXEC else 0o644, dir_fd=stage_fd)
    try:
        if data is not None:
            write_all(fd, data)
        else:
            with store.open_verified(entry.id) as reader:  # an intact copy, where there are several
                check_blob_size(reader.size, entry)
                for chunk in reader.chunks():  # the hash check follows the last chunk
                    write_all(fd, chunk)
        return os.fstat(fd) if want_stat else None
    except BaseException:
        os.unlink(name, dir_fd=stage_fd)  # a partial file: never renamed into place with its folder
        raise
    finally:
        os.close(fd)


#: A clone's FetchedBlobs folder in `.rnstore` (one left behind means the
#: clone was killed: gc removes it, a clone into that folder again refuses).
FETCHED_PREFIX = TMP_PREFIX + "fetched-"


class FetchedBlobs:
    """Blobs a clone's fetch has just verified against their ids, written
    out as files named by id in a private folder of the workspace's
    `.rnstore`: the clone's checkout moves each into place (one rename)
    instead of reading it back from the store, decompressing and hashing
    it a second time. A blob that several paths name is moved once; the
    other paths, and whatever is not here, are written from the store as
    usual. `close` removes what was not used.

    `trees` takes the payloads of the trees (and snapshots) the fetch
    verified, by id: the checkout's plan decodes them from there instead
    of reading the store's copies back."""

    def __init__(self, folder: Path):
        self.trees: dict[str, bytes] = {}
        self.folder = folder
        os.mkdir(folder, 0o700)
        self._fd = os.open(folder, O_DIR)
        self._exec_mode = _new_folder_mode() & 0o755  # what O_NEW with 0o755 gives under the umask

    @contextlib.contextmanager
    def receive(self, oid: str) -> Iterator[Callable[[bytes], None]]:
        """A function taking the blob's payload in chunks while the fetch
        verifies it (from the fetch's threads); the file is dropped if the
        block raises. Nothing here is read before the whole fetch passed."""
        try:
            fd = os.open(oid, O_NEW, 0o644, dir_fd=self._fd)
        except FileExistsError:  # in two remote packs: written once
            yield lambda chunk: None
            return
        try:
            yield lambda chunk: write_all(fd, chunk)
        except BaseException:
            os.unlink(oid, dir_fd=self._fd)
            raise
        finally:
            os.close(fd)

    def move(self, entry: FlatEntry, stage_fd: int, name: bytes) -> os.stat_result | None:
        """Stage the blob of `entry` under `name`: its lstat there. None when
        it is not here (or moved already, or its size disagrees with the
        entry's: then the store's copy says what is wrong)."""
        try:
            os.rename(entry.id, name, src_dir_fd=self._fd, dst_dir_fd=stage_fd)
        except OSError:
            return None
        st = os.stat(name, dir_fd=stage_fd, follow_symlinks=False)
        if st.st_size != entry.size:
            os.unlink(name, dir_fd=stage_fd)
            return None
        if entry.mode == MODE_EXEC:
            os.chmod(name, self._exec_mode, dir_fd=stage_fd)  # a regular file in a private folder
            st = os.stat(name, dir_fd=stage_fd, follow_symlinks=False)
        return st

    def trees_over(self, store) -> "_FetchedTrees":
        """A source of trees (get_tree) reading `trees` first, then `store`."""
        return _FetchedTrees(self.trees, store)

    def close(self) -> None:
        self.trees.clear()
        os.close(self._fd)
        shutil.rmtree(self.folder, ignore_errors=True)


class _FetchedTrees:
    """get_tree() from payloads a fetch verified against their ids, or from
    the store for any other tree."""

    def __init__(self, payloads: dict[str, bytes], store):
        self._payloads, self._store = payloads, store

    def get_tree(self, oid: str) -> Tree:
        payload = self._payloads.get(oid)
        if payload is None:
            return self._store.get_tree(oid)
        try:
            return decode_tree(payload)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"object {oid} is corrupt: {exc}", oid) from None


def _object_error(damaged: list[tuple[bytes, ObjectError]]) -> ObjectError:
    corrupt = any(isinstance(exc, CorruptObjectError) for _, exc in damaged)
    shown = ", ".join(f"'{shorten(path)}' ({exc})" for path, exc in damaged[:5])
    more = f" and {len(damaged) - 5} more" if len(damaged) > 5 else ""
    cls = CorruptObjectError if corrupt else MissingObjectError
    return cls(f"cannot check out {shown}{more}; nothing was changed",
               damaged[0][1].object_id,
               hints=["`rnstore fsck` lists every damaged object and the files that hold it",
                      "skip_missing=True restores every intact file and lists the missing ones"])


def _apply(plan: _Plan, root_fd: int, stage_fd: int | None, force: bool,
           result: CheckoutResult, for_index: bool, placed: _Placed, skip: set[bytes] = frozenset(),
           layout: _Layout | None = None) -> None:
    """Apply the plan, leaving out the writes in `skip`. An operation that
    fails with an OSError does not stop the others: they are all reported
    at the end (_WritesFailed), each named by its path. Folders staged
    whole (`layout`) are renamed into place where the plan creates them;
    `placed` holds the stat keys of the files staged in them, and takes
    every write put in place (with `for_index`)."""
    dirs = Dirs(root_fd)
    failures: list[tuple[bytes, OSError]] = []
    try:
        gone: list[bytes] = []

        def unlink_file(fd: int, name: bytes, path: bytes) -> bool:
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                return False  # became a folder since the plan: left alone
            os.unlink(name, dir_fd=fd)
            return True

        def clear_folder(fd: int, name: bytes, path: bytes) -> bool:
            dirs.forget(path)
            remove_folder(fd, name, force)
            return True

        for paths, remove in ((plan.unlink, unlink_file), (plan.clear, clear_folder)):
            for path in paths:
                parent, name = split(path)
                try:
                    fd = dirs.open(parent)
                    if fd is not None and remove(fd, name, path):
                        gone.append(path)
                except FileNotFoundError:
                    gone.append(path)  # gone already (an interrupted checkout): its folder may go
                except OSError as exc:
                    failures.append((path, exc))
        for path in plan.rmdir:
            if path in plan.needed:
                continue
            parent, name = split(path)
            fd = dirs.open(parent)
            if fd is not None and rmdir_quietly(dirs, fd, path, name):
                gone.append(path)
        prune(dirs, gone + plan.vanished, plan.needed)
        created = set()
        moved: dict[bytes, bool] = {}  # each folder staged whole: whether it is in place
        for folder in [*sorted(plan.needed), *plan.folders]:
            try:
                if layout is not None and folder in layout.tops:
                    if folder not in moved:
                        moved[folder] = False
                        parent, name = split(folder)
                        # never over a file or link that appeared since the plan (ENOTDIR)
                        os.rename(layout.tops[folder], name, src_dir_fd=stage_fd,
                                  dst_dir_fd=dirs.open(parent, create=True))
                        moved[folder] = True
                elif layout is None or not layout.inside(folder):
                    dirs.open(folder, create=True)
                elif not moved.get(layout.top_above(folder)):
                    continue  # its folder could not be moved into place
                if folder in plan.folders:
                    created.add(folder)
            except OSError as exc:
                failures.append((folder, exc))
        written = []
        for number, entry in enumerate(plan.writes):
            if entry.path in skip:
                continue  # its object is missing or corrupt (skip_missing)
            top = layout.top_of[number] if layout is not None else None
            if top is not None:
                if not moved.get(top):
                    continue  # its folder could not be moved into place (a failure named it)
                if for_index:
                    placed.add(entry.path, number)
            else:
                parent, name = split(entry.path)
                try:
                    fd = dirs.open(parent, create=True)
                    place(stage_fd, b"%d" % number, fd, name)
                    if for_index:
                        placed.keep(number, os.stat(name, dir_fd=fd, follow_symlinks=False))
                        placed.add(entry.path, number)
                except OSError as exc:
                    failures.append((entry.path, exc))
                    continue
            written.append(entry.path)
            result.bytes_written += entry.size
        result.raw_written = sorted(written)
        result.raw_folders = sorted(created)
    finally:
        dirs.close()
    if failures:
        raise _WritesFailed(failures, placed)


__all__ = ["CheckoutResult", "checkout", "materialise"]
