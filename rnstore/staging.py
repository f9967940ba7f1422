"""add and status: the workspace against the index and HEAD."""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .alloc import walks_may_fork
from .config import SETTINGS
from .errors import InvalidValueError, LimitExceededError, LockTimeoutError, UnreadableFileError
from .ignore import IgnoreRules
from .index import Found, FoundList, Index, IndexEntry, Sweep
from .objects import MODE_LINK, MODE_TREE
from .progress import NO_PROGRESS, Progress
from .trees import iter_tree, text_paths
from .units import format_size, plural
from .worktree import (LISTINGS_FILE, NO_LISTINGS, ListingCache, Scan, hash_entry, parallel_map,
                       relative_pathspecs, scan, store_entry, under)
from .views import ObjectsView, WorkspaceView


@text_paths
@dataclass
class AddResult:
    """What add staged. Paths are `str` (added, modified, ...); the raw_
    fields hold them as bytes, exactly as named on disk."""
    raw_added: list[bytes] = field(default_factory=list)
    raw_modified: list[bytes] = field(default_factory=list)
    raw_deleted: list[bytes] = field(default_factory=list)
    unchanged: int = 0
    #: (path, why) of entries never stored (sockets, FIFOs, devices)
    raw_skipped: list[tuple[bytes, str]] = field(default_factory=list)
    #: (path, error) of what could not be read (only with ignore_errors)
    raw_unreadable: list[tuple[bytes, str]] = field(default_factory=list)
    #: paths named explicitly that the ignore rules exclude (not staged)
    raw_ignored: list[bytes] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    dry_run: bool = False
    #: whether the index needs writing (also when only stat data changed)
    index_changed: bool = False
    #: the paths of added, modified and deleted that are empty folders, not files
    raw_folders: set[bytes] = field(default_factory=set)


    @property
    def changed(self) -> bool:
        return bool(self.raw_added or self.raw_modified or self.raw_deleted)


def ignore_rules(repo: WorkspaceView, excludes: Iterable[str] = (), no_ignore: bool = False,
                 strict_ignore: bool = False) -> IgnoreRules:
    """The rules for a scan; a bad .rnignore pattern is reported through
    repo.notify and skipped, or refused with `strict_ignore`."""
    return IgnoreRules(repo.root, extra=list(excludes), use_files=not no_ignore,
                       warn=lambda line: repo.notify(f"warning: {line}"), strict=strict_ignore)


def _check_limits(repo: WorkspaceView, files: int, total: int,
                  planned: Callable[[], dict[bytes, tuple[str, int]]]) -> None:
    """`files` and `total` bytes against the limits; past one, the error
    lists the largest of `planned()` (path -> (mode, size))."""
    max_bytes = repo.config.get("limits.max_bytes")
    max_files = repo.config.get("limits.max_files")
    if total <= max_bytes and files <= max_files:
        return
    if total > max_bytes:
        message = (f"the snapshot would hold {format_size(total)} in {plural(files, 'file')}, "
                   f"over limits.max_bytes ({_as_written(repo, 'limits.max_bytes', max_bytes)})")
    else:
        message = (f"the snapshot would hold {plural(files, 'file')}, over limits.max_files "
                   f"({max_files:,})")
    sizes = {p: size for p, (mode, size) in planned().items() if mode != MODE_TREE}
    folders: dict[bytes, int] = defaultdict(int)
    counts: dict[bytes, int] = defaultdict(int)
    for path, size in sizes.items():
        if b"/" in path:
            top = path.split(b"/", 1)[0] + b"/"
            folders[top] += size
            counts[top] += 1
    hints = ["largest files:"]
    for path, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:10]:
        hints.append(f"  {format_size(size):>10}  {os.fsdecode(path)}")
    if folders:
        hints.append("largest folders:")
        for path, size in sorted(folders.items(), key=lambda kv: -kv[1])[:10]:
            hints.append(f"  {format_size(size):>10}  {os.fsdecode(path)} ({plural(counts[path], 'file')})")
    hints.append("add what should not be stored to .rnignore, or pass force=True to store it anyway")
    raise LimitExceededError(message, hints=hints)


def _as_written(repo: WorkspaceView, key: str, size: int) -> str:
    """A size setting as the user wrote it and in the units sizes are
    printed in: '500MB = 476.8 MiB'."""
    written = repo.config.raw(key) or SETTINGS[key].default
    shown = format_size(size)
    same = written.replace(" ", "") in (shown.replace(" ", ""), str(size))
    return shown if same else f"{written} = {shown}"


def add(repo: WorkspaceView, paths: Iterable[str | os.PathLike] = (".",), *, dry_run: bool = False,
        force: bool = False, excludes: Iterable[str] = (), no_ignore: bool = False,
        ignore_errors: bool = False, progress: Progress = NO_PROGRESS,
        cwd: Path | None = None, strict_ignore: bool = False) -> AddResult:
    """Stage additions, changes and deletions under `paths`."""
    # The store lock (shared) lasts until the index, a root, names the new
    # blobs: a gc in between would find them unreferenced.
    with repo.lock(), repo.store_lock(shared=True):
        if not dry_run:
            repo.ensure_registered()
        index = repo.read_index()
        result = stage(repo, index, paths, dry_run=dry_run, force=force, excludes=excludes,
                       no_ignore=no_ignore, ignore_errors=ignore_errors, progress=progress,
                       cwd=cwd, strict_ignore=strict_ignore)
        if result.index_changed:
            repo.write_index(index)
    return result


def stage(repo: WorkspaceView, index: Index, paths: Iterable[str | os.PathLike], *, dry_run: bool = False,
          force: bool = False, excludes: Iterable[str] = (), no_ignore: bool = False,
          ignore_errors: bool = False, progress: Progress = NO_PROGRESS,
          cwd: Path | None = None, strict_ignore: bool = False) -> AddResult:
    """`add` on an index in memory (the caller holds the workspace lock and
    writes the index when `index_changed`)."""
    prefixes = relative_pathspecs(repo.root, list(paths) or ["."], cwd)
    rules = ignore_rules(repo, excludes, no_ignore, strict_ignore)
    everything = b"" in prefixes
    found, sweep = scan_and_sweep(repo, index, prefixes, rules,
                                  in_reach=None if everything else (lambda path: under(path, prefixes)))
    unmatched = [p for p in found.missing if not index.holds(p)]
    if unmatched:
        raise InvalidValueError(
            f"pathspec '{os.fsdecode(unmatched[0])}' did not match any files",
            hints=["check the spelling; `rnstore status` lists what is there"])
    result = AddResult(raw_skipped=found.skipped, raw_ignored=found.ignored, dry_run=dry_run)
    if found.unreadable and not ignore_errors:
        raise _unreadable_error(found.unreadable)
    result.raw_unreadable.extend(found.unreadable)
    to_store, deleted, files, total = _compare(repo, index, sweep, found, force, result)
    listings = found.listings
    del found, sweep  # a record per changed file: only those to store are kept while storing

    if dry_run:
        # Hash (without storing) what the stat cache cannot vouch for,
        # so only real changes are listed.
        for f, seen_now, error in parallel_map(lambda f: hash_entry(repo.root, f), to_store):
            before = index.get(f.path)
            if before is None:
                result.raw_added.append(f.path)
            elif error is not None or (before.mode, before.id) != (seen_now.mode, seen_now.id):
                result.raw_modified.append(f.path)
        result.raw_deleted = deleted
        result.files, result.bytes = files, total
        return result

    result.raw_folders.update(path for path, mode in zip(to_store.paths, to_store.modes) if mode == MODE_TREE)
    result.raw_folders.update(p for p in deleted if index.get(p).mode == MODE_TREE)
    _store_all(repo, index, to_store, result, ignore_errors, progress)
    for path in deleted:
        index.remove(path)
    result.raw_deleted = deleted
    index.drop_shadowed_folders()
    result.files, result.bytes = index.totals()
    result.index_changed = bool(result.changed or to_store or index.outdated)
    listings.save()  # only now: a refused, failed or dry run changes nothing, not even a cache
    return result


def _compare(repo: WorkspaceView, index: Index, sweep: Sweep, found: Scan, force: bool,
             result: AddResult) -> tuple[FoundList, list[bytes], int, int]:
    """The sweep of the workspace against the index, settled: what to store
    (the stat cache cannot vouch for it), the paths deleted, and the files
    and bytes the snapshot would hold, checked against the limits unless
    `force`. Counts the unchanged in `result`."""
    protected = [p for p, _ in found.unreadable]
    files, total = sweep.kept_files, sweep.kept_bytes
    deleted = []
    for path in sweep.gone:
        if protected and under(path, protected):  # unreadable now: left as it was
            entry = index.get(path)
            if entry.mode != MODE_TREE:
                files, total = files + 1, total + entry.size
        else:
            deleted.append(path)
    to_store = sweep.changed
    to_store.extend(sweep.untracked)  # in path order again below: the index merges them so
    result.unchanged = sweep.unchanged
    # Empty folders sort apart from the walk (see Scan.empty_folders).
    empty = {f.path: f for f in found.empty_folders}
    if empty:
        deleted = [path for path in deleted if path not in empty]
        for f in found.empty_folders:
            entry = index.get(f.path)
            if entry is not None and entry.mode == MODE_TREE:
                result.unchanged += 1
            else:
                to_store.append(*f)
    to_store.sort()
    for mode, size in zip(to_store.modes, to_store.sizes):
        if mode != MODE_TREE:  # (an empty folder's stat size is the folder's)
            files, total = files + 1, total + size

    def planned() -> dict[bytes, tuple[str, int]]:
        gone = set(deleted)
        view = {e.path: (e.mode, e.size) for e in index if e.path not in gone}
        view.update((f.path, (f.mode, f.size)) for f in to_store)
        return view

    if not force:
        _check_limits(repo, files, total, planned)
    return to_store, sorted(deleted), files, total


def _store_all(repo: WorkspaceView, index: Index, to_store: FoundList, result: AddResult,
               ignore_errors: bool, progress: Progress) -> None:
    store = repo.store
    progress.start("add", len(to_store),
                   sum(size for mode, size in zip(to_store.modes, to_store.sizes) if mode != MODE_TREE))
    failures: list[tuple[bytes, str]] = []

    root = os.fsencode(repo.root)  # once, not per file

    def stored_entries() -> Iterator[IndexEntry]:  # in to_store's order, the path order
        for found, stored, error in parallel_map(lambda f: store_entry(store, root, f), to_store):
            progress.advance(1, found.size)
            if error is not None:
                if isinstance(error, FileNotFoundError):
                    continue  # vanished since the scan: the next add sees it gone
                failures.append((found.path, error.strerror or str(error)))
                continue
            before = index.get(found.path)
            if before is None:
                result.raw_added.append(found.path)
            elif (before.mode, before.id) != (stored.mode, stored.id):
                result.raw_modified.append(found.path)
            else:
                result.unchanged += 1
            yield IndexEntry(stored.path, stored.mode, stored.id, stored.size, stored.stat)

    try:
        with repo.store_lock(shared=True), store.batch():
            index.update_sorted(stored_entries())
            if failures and not ignore_errors:
                raise _unreadable_error(failures)
    finally:
        progress.finish()
    result.raw_unreadable.extend(failures)


def _unreadable_error(problems: list[tuple[bytes, str]]) -> UnreadableFileError:
    first = ", ".join(f"{os.fsdecode(p)} ({why})" for p, why in problems[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    return UnreadableFileError(
        f"cannot read {first}{more}",
        hints=["fix the permissions, add the paths to .rnignore, or pass ignore_errors=True to skip them"])


# -- status ------------------------------------------------------------------------------

@text_paths
@dataclass(frozen=True)
class Change:
    raw_path: bytes  # as named on disk
    status: str  # A, M, D or T


@text_paths
@dataclass
class Status:
    """Paths are `str` (untracked, ...); the raw_ fields hold them as bytes,
    and each Change its raw_path."""
    branch: str | None
    head: str | None
    staged: list[Change] = field(default_factory=list)
    unstaged: list[Change] = field(default_factory=list)
    raw_untracked: list[bytes] = field(default_factory=list)
    #: tracked paths still on disk that a rule now ignores: (path, rule);
    #: the next `add` of their folder drops them from the index
    raw_now_ignored: list[tuple[bytes, str]] = field(default_factory=list)
    #: with ignored=True: what the rules hide (a hidden folder once, ending in "/")
    raw_ignored: list[bytes] = field(default_factory=list)


    @property
    def clean(self) -> bool:
        return not (self.staged or self.unstaged or self.raw_untracked or self.raw_now_ignored)


def _kind(mode: str) -> str:
    return "link" if mode == MODE_LINK else "tree" if mode == MODE_TREE else "file"


def compare(old: dict[bytes, tuple[str, str]], new: dict[bytes, tuple[str, str]]) -> list[Change]:
    """Changes from `old` to `new`, both path -> (mode, id), sorted by path."""
    changes = []
    for path in sorted(old.keys() | new.keys()):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        if before is None:
            changes.append(Change(path, "A"))
        elif after is None:
            changes.append(Change(path, "D"))
        elif _kind(before[0]) != _kind(after[0]):
            changes.append(Change(path, "T"))
        else:
            changes.append(Change(path, "M"))
    return changes


def head_entries(repo: ObjectsView, head: str | None) -> dict[bytes, tuple[str, str]]:
    if head is None:
        return {}
    tree = repo.store.get_snapshot(head).tree
    return {e.path: (e.mode, e.id) for e in iter_tree(repo.store, tree)}


@dataclass
class _Workspace:
    """The workspace against the index, as status and diff need it."""
    #: tracked paths whose content differs from the index: path -> (mode, id);
    #: the id is "unreadable" for a file that could not be read
    modified: dict[bytes, tuple[str, str]]
    #: tracked paths not found
    gone: list[bytes]
    #: untracked entries found (files, links and empty folders)
    untracked: list[Found]
    #: index entries whose stat can be refreshed because only their timestamps changed
    refreshed: list[IndexEntry]


def _against_index(repo: WorkspaceView, index: Index, found: Scan, sweep: Sweep | None = None) -> _Workspace:
    """Sweep the workspace against the index (unless `sweep` is that
    sweep, done), hashing only what the stat cache cannot vouch for."""
    if sweep is None:
        sweep = index.sweep(found.found)
    untracked = list(sweep.untracked)
    gone, to_hash = sweep.gone, list(sweep.changed)
    empty = {f.path: f for f in found.empty_folders}
    if empty:  # they sort apart from the walk (see Scan.empty_folders)
        gone = [path for path in gone if path not in empty]
        for f in found.empty_folders:
            entry = index.get(f.path)
            if entry is None:
                untracked.append(f)
            elif entry.mode != MODE_TREE:
                to_hash.append(f)
    del sweep
    modified: dict[bytes, tuple[str, str]] = {}
    refreshed = []
    for f, stored, error in parallel_map(lambda f: hash_entry(repo.root, f), to_hash):
        entry = index.get(f.path)
        if error is not None:
            modified[f.path] = (f.mode, "unreadable")
        elif (entry.mode, entry.id) != (stored.mode, stored.id):
            modified[f.path] = (stored.mode, stored.id)
        elif stored.stat is not None:
            refreshed.append(IndexEntry(entry.path, entry.mode, entry.id, entry.size, stored.stat))
    return _Workspace(modified, gone, untracked, refreshed)


def workspace_entries(repo: WorkspaceView, index: Index, found: Scan
                      ) -> dict[bytes, tuple[str, str]]:
    """The workspace as path -> (mode, id), as `commit -a` would see it,
    trusting the stat cache where it holds and hashing the rest (an
    unreadable file's id is "unreadable")."""
    seen = _against_index(repo, index, found)
    gone = set(seen.gone)
    current = {e.path: (e.mode, e.id) for e in index if e.path not in gone}
    current.update(seen.modified)
    for f, stored, error in parallel_map(lambda f: hash_entry(repo.root, f), seen.untracked):
        current[f.path] = (f.mode, "unreadable") if error is not None else (stored.mode, stored.id)
    return current


def status(repo: WorkspaceView, *, excludes: Iterable[str] = (), no_ignore: bool = False,
           ignored: bool = False, strict_ignore: bool = False) -> Status:
    """Staged, unstaged and untracked paths; with `ignored`, also what the
    ignore rules hide."""
    branch_ref, head = repo.refs.head()
    branch = branch_ref[len("refs/heads/"):] if branch_ref else None
    index = repo.read_index()
    rules = ignore_rules(repo, excludes, no_ignore, strict_ignore)
    found, sweep = scan_and_sweep(repo, index, [b""], rules, list_ignored=ignored)
    found.listings.save()
    seen = _against_index(repo, index, found, sweep)
    del sweep
    result = Status(branch, head)
    if head is not None and index.tree_id == repo.store.get_snapshot(head).tree:
        result.staged = []  # the index still builds HEAD's tree: no need to read it all
    else:
        result.staged = compare(head_entries(repo, head), {e.path: (e.mode, e.id) for e in index})
    changes = [(path, "D") for path in seen.gone]
    for path, (mode, _) in seen.modified.items():
        changes.append((path, "T" if _kind(mode) != _kind(index.get(path).mode) else "M"))
    result.unstaged = [Change(path, why) for path, why in sorted(changes)]
    _separate_now_ignored(repo, rules, result)
    result.raw_untracked = sorted(f.path for f in seen.untracked)
    result.raw_ignored = sorted(found.hidden)
    if seen.refreshed:
        _refresh_index(repo, seen.refreshed)
    return result


#: a walk of fewer entries is not split: on `medium` (28,620 files) the fork,
#: the root listed twice and the halves joined cost more time than they save
SPLIT_WALK_ENTRIES = 50_000


def scan_and_sweep(repo: WorkspaceView, index: Index, prefixes: list[bytes], rules, *,
                   list_ignored: bool = False, in_reach: Callable[[bytes], bool] | None = None
                   ) -> tuple[Scan, Sweep]:
    """scan() the workspace (with its listing cache) and sweep it against
    the index. A walk of a whole large workspace is split in two at a
    folder of the root, when the CLI allows it (alloc.walks_may_fork): a
    forked process walks the second half while this one walks the first.
    The lstat of every file is most of a walk's time, and a process of
    its own is the only way Python makes that parallel (git's
    core.preloadIndex uses threads)."""
    listings = listing_cache(repo)
    halves = _halves(index, prefixes)
    if halves is None:
        found = scan(repo.root, prefixes, rules, list_ignored=list_ignored, listings=listings)
        return found, index.sweep(found.found, in_reach)
    key, row = halves

    def upper_half() -> tuple[Scan, Sweep]:
        found = scan(repo.root, [b""], rules, list_ignored=list_ignored, listings=listings,
                     root_keys=(key, None))
        return found, index.sweep(found.found, rows=(row, len(index)))

    import pickle  # only for a split walk
    rules.read_root_rules()  # both halves list the root
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: walk the upper half, send it back, and leave without cleaning up
        code = 1
        try:
            os.close(reader)
            found, sweep = upper_half()
            payload = pickle.dumps((_scan_parts(found), found.listings.learned(), sweep),
                                   protocol=pickle.HIGHEST_PROTOCOL)
            with open(writer, "wb") as out:
                out.write(payload)
            code = 0
        except BaseException:  # noqa: BLE001 - the parent walks this half itself
            pass
        finally:
            os._exit(code)
    os.close(writer)
    upper = None
    try:
        found = scan(repo.root, [b""], rules, list_ignored=list_ignored, listings=listings,
                     root_keys=(None, key))
        sweep = index.sweep(found.found, rows=(0, row))
        with open(reader, "rb") as child:
            reader = None
            payload = child.read()
        _, status = os.waitpid(pid, 0)
        pid = None
        if status == 0 and payload:
            upper = pickle.loads(payload)
    finally:
        if reader is not None:
            os.close(reader)
        if pid is not None:  # interrupted: the child goes too
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(pid, 0)
    if upper is None:  # the child failed: this half too, here
        other, other_sweep = upper_half()
        upper = (_scan_parts(other), other.listings.learned(), other_sweep)
    parts, learned, upper_sweep = upper
    _join_scans(found, parts, key)
    listings.merge(learned)
    return found, _join_sweeps(index, sweep, upper_sweep)


def _halves(index: Index, prefixes: list[bytes]) -> tuple[bytes, int] | None:
    import threading  # (loaded already wherever a fork is possible)
    if prefixes != [b""] or len(index) < SPLIT_WALK_ENTRIES or not walks_may_fork() \
            or not hasattr(os, "fork") or (os.cpu_count() or 1) < 2 or threading.active_count() != 1:
        return None
    return index.halves()


_SCAN_LISTS = ("empty_folders", "skipped", "unreadable", "hidden")


def _scan_parts(found: Scan) -> tuple[list, ...]:
    return tuple(getattr(found, name) for name in _SCAN_LISTS)


def _join_scans(lower: Scan, parts: tuple[list, ...], key: bytes) -> None:
    """Add the upper half's lists to the lower half's scan, in path order.
    Both listed the root: what each said of root names outside its half goes."""
    def path_of(item) -> bytes:
        return item if isinstance(item, bytes) else item[0]

    for name, upper in zip(_SCAN_LISTS, parts):
        mine = getattr(lower, name)
        mine[:] = [item for item in mine if path_of(item) < key or path_of(item) == b""]
        mine.extend(item for item in upper if path_of(item) >= key)


def _join_sweeps(index: Index, lower: Sweep, upper: Sweep) -> Sweep:
    lower.changed.extend(upper.changed)
    lower.untracked.extend(upper.untracked)
    lower.gone.extend(upper.gone)
    lower.unchanged += upper.unchanged
    # each half counted the whole index's totals less what it dropped
    files, total = index.totals()
    lower.kept_files += upper.kept_files - files
    lower.kept_bytes += upper.kept_bytes - total
    return lower


def listing_cache(repo: WorkspaceView) -> ListingCache:
    """The workspace's folder listings (see ListingCache), unless the
    config turns them off."""
    if not repo.config.get("core.listing_cache"):
        return NO_LISTINGS
    return ListingCache.load(repo.dotdir / LISTINGS_FILE)


def _separate_now_ignored(repo: WorkspaceView, rules, result: Status) -> None:
    """A tracked path the scan did not see because a rule now hides it is
    not deleted while it is still on disk: move it to `now_ignored`."""
    root = os.fsencode(repo.root)
    kept = []
    for change in result.unstaged:
        rule = None
        if change.status == "D" and os.path.lexists(os.path.join(root, change.raw_path)):
            rule = rules.why_ignored(change.raw_path)
        if rule is None:
            kept.append(change)
        else:
            result.raw_now_ignored.append((change.raw_path, rule))
    result.unstaged = kept


def _refresh_index(repo: WorkspaceView, refreshed: list[IndexEntry]) -> None:
    """Save stat information learned while hashing, so the next status is
    fast. Skipped quietly when another process holds the workspace lock."""
    lock = repo.lock()
    lock.wait = 0
    try:
        with lock:
            index = repo.read_index()
            for entry in refreshed:
                current = index.get(entry.path)
                if current is not None and (current.mode, current.id) == (entry.mode, entry.id):
                    index.set(entry)
            repo.write_index(index)
    except LockTimeoutError:
        pass
