"""commit, log and tag: making snapshots and naming them."""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .errors import (InvalidValueError, MissingObjectError, NothingToCommitError, ObjectError,
                     RefConflictError, UnknownRevisionError)
from .objects import SNAPSHOT, Snapshot, is_object_id, meta_count
from .plumbing import meta_text, parse_meta, snapshot_meta, store_snapshot, utc_now, write_tree
from .progress import NO_PROGRESS, Progress
from .refs import HEADS, TAGS, short_name, tag_ref
from .revparse import resolve_snapshot, warn_if_shadowing
from .staging import AddResult, stage, status
from .trees import BackgroundPuts, lookup
from .units import plural
from .views import HistoryView, WorkspaceView
from .worktree import relative_pathspecs


@dataclass
class CommitResult:
    id: str
    tree: str
    parent: str | None
    branch: str | None
    files: int
    bytes: int
    added: AddResult | None = None
    #: snapshot() on unchanged code: no new snapshot, `id` is the current one
    unchanged: bool = False


def commit(repo: WorkspaceView, message: str, *, all: bool = False, meta: Mapping | Iterable[str] = (),
           allow_empty: bool = False, progress: Progress = NO_PROGRESS,
           add_options: dict | None = None) -> CommitResult:
    """Make a snapshot from the index (with `all`, stage the whole workspace
    first) and move the current branch, or HEAD when detached."""
    extra = parse_meta(meta)
    # The store lock is held (shared) from the first object written to the
    # ref update, so a concurrent gc cannot collect the new trees in between.
    with repo.lock(), repo.store_lock(shared=True):
        repo.ensure_registered()
        staged = None
        index = repo.read_index()
        # One batch for the new blobs and trees: one pack, durable before
        # the index names them.
        with repo.store.batch():
            if all:
                staged = stage(repo, index, [repo.root], progress=progress, cwd=repo.root,
                               **(add_options or {}))
            branch_ref, head = repo.refs.head()
            # HEAD's tree is a root, and the store lock is held until the new
            # snapshot is named: folders unchanged since HEAD need no rewriting.
            base = repo.store.get_snapshot(head).tree if head is not None else None
            known_before = dict(index.trees)
            from .reachcache import RecordingStore  # loads zstandard, as the store already has
            trees = RecordingStore(repo.store)  # for the reachability cache
            with BackgroundPuts(trees) as store:
                tree_id = write_tree(repo, index, base=base, store=store)
        if (staged is not None and staged.index_changed) or index.trees != known_before \
                or index.outdated:
            repo.write_index(index)
        if head is not None:
            unchanged = repo.store.get_snapshot(head).tree == tree_id
        else:
            unchanged = len(index) == 0
        if not unchanged or allow_empty:
            return _store_commit(repo, index, tree_id, head, branch_ref, message, extra, staged, trees.records)
    # outside the locks: status refreshes the index under the workspace lock
    raise _nothing_to_commit(repo, head, all)


def _store_commit(repo: WorkspaceView, index, tree_id: str, head: str | None, branch_ref: str | None,
                  message: str, extra: dict, staged: AddResult | None, trees: list = ()) -> CommitResult:
    """The snapshot of `tree_id`, and HEAD's branch moved to it (the caller
    holds the workspace and store locks). `trees`: the (kind, id, payload)
    records of the trees written, for the reachability cache, so that the
    next du, gc or forget need not read them back."""
    files = index.totals()[0]
    snapshot = Snapshot(tree_id, (head,) if head else (), utc_now(), message,
                        snapshot_meta(repo, tree_id, extra, files=files))
    snapshot_id = store_snapshot(repo, snapshot)
    repo.refs.update("HEAD", snapshot_id, expected=head)
    from .reachcache import append_records
    append_records(repo.store_root, [*trees, (SNAPSHOT, snapshot_id, snapshot.encode())], shared=repo.group_shared)
    return CommitResult(snapshot_id, tree_id, head,
                        branch_ref[len(HEADS):] if branch_ref else None,
                        files, int(snapshot.meta["bytes"]), staged)


def _nothing_to_commit(repo: WorkspaceView, head: str | None, staged_all: bool) -> NothingToCommitError:
    """Say what git says: whether anything waits in the workspace, unstaged."""
    waiting = []
    if not staged_all:
        pending = status(repo)
        modified = sum(1 for c in pending.unstaged if c.status != "D")
        deleted = len(pending.unstaged) - modified
        for count, what in ((modified, "modified"), (deleted, "deleted"),
                            (len(pending.raw_untracked), "untracked")):
            if count:
                waiting.append(f"{plural(count, 'file')} {'is' if count == 1 else 'are'} {what}")
    if waiting:
        return NothingToCommitError(
            f"nothing to commit: nothing is staged, {', '.join(waiting)}",
            hints=["`rnstore add PATH` stages them, or `rnstore commit -a` stages everything and commits"])
    return NothingToCommitError(
        "nothing to commit, " + ("the workspace matches HEAD" if head else "the workspace is empty"),
        hints=["allow_empty=True commits anyway"])


def snapshot(repo: WorkspaceView, message: str, **kw) -> CommitResult:
    """Stage everything and commit, in one call. When nothing changed since
    HEAD, HEAD's snapshot comes back marked `unchanged` (no error)."""
    try:
        return commit(repo, message, all=True, **kw)
    except NothingToCommitError:
        branch_ref, head = repo.refs.head()
        if head is None:
            raise
        current = repo.store.get_snapshot(head)
        return CommitResult(head, current.tree, current.parents[0] if current.parents else None,
                            branch_ref[len(HEADS):] if branch_ref else None,
                            meta_count(current.meta, "files"), meta_count(current.meta, "bytes"),
                            unchanged=True)


# -- log --------------------------------------------------------------------------------

@dataclass
class LogEntry:
    id: str
    snapshot: Snapshot
    tags: list[str] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        s = self.snapshot
        return {"id": self.id, "tree": s.tree, "parents": list(s.parents), "time": s.time,
                "message": s.message, "meta": dict(s.meta), "tags": list(self.tags)}


@dataclass
class Log:
    entries: list[LogEntry]
    #: parents that are gone (forgotten and collected): history ends there
    missing_parents: list[str] = field(default_factory=list)
    #: parents that are gone though still live or named by a ref: damage (fsck)
    lost_parents: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def names_by_id(repo: HistoryView) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    tags: dict[str, list[str]] = {}
    branches: dict[str, list[str]] = {}
    for ref, oid in repo.refs.list().items():
        if ref.startswith(TAGS):
            tags.setdefault(oid, []).append(short_name(ref))
        elif ref.startswith(HEADS):
            branches.setdefault(oid, []).append(short_name(ref))
    return tags, branches


def log(repo: WorkspaceView, rev: str | None = None, *, limit: int | None = None, all: bool = False,
        grep: str | None = None, meta: dict | Iterable[str] | None = None,
        paths: Iterable[str | os.PathLike] | None = None, cwd: Path | None = None) -> Log:
    """History from `rev` (default HEAD), newest first; with `all`, every
    live snapshot and every tagged one (in a shared store, the store's
    tags), newest first. Only snapshots whose message contains `grep`
    (case-insensitive), whose metadata holds every `meta` pair (a dict, or
    "KEY=VALUE" strings), and that changed one of `paths` (relative to
    `cwd`) against their first parent are listed; `limit` counts those."""
    tags, branches = names_by_id(repo)
    keep = _snapshot_filter(repo, grep, meta, paths, cwd)

    def entry(oid: str, snap: Snapshot) -> LogEntry:
        return LogEntry(oid, snap, tags.get(oid, []), branches.get(oid, []))

    if all:
        wanted = dict.fromkeys([*repo.journal, *sorted(tags)])
        snapshots = [(oid, repo.store.get_snapshot(oid)) for oid in wanted]
        snapshots.sort(key=lambda item: (item[1].time, item[0]), reverse=True)
        entries = [entry(oid, snap) for oid, snap in snapshots if keep(snap)]
        return Log(entries[:limit] if limit is not None else entries)

    # an unborn branch is an error, as `rev-parse HEAD` says (git: "your
    # current branch does not have any commits yet")
    start = resolve_snapshot(repo, "HEAD" if rev is None else rev)
    result = Log([])
    seen = {start}
    queue: list = []

    def push(oid: str, snap: Snapshot | None = None) -> None:
        if snap is None:
            try:
                snap = repo.store.get_snapshot(oid)
            except MissingObjectError:
                live = oid in repo.journal or oid in tags or oid in branches
                (result.lost_parents if live else result.missing_parents).append(oid)
                return
        # newest first: a max-heap on time
        heapq.heappush(queue, (-_time_key(snap.time), oid, snap))

    push(start, repo.store.get_snapshot(start))  # where history starts is no parent: missing is damage
    while queue and (limit is None or len(result.entries) < limit):
        _, oid, snap = heapq.heappop(queue)
        if keep(snap):
            result.entries.append(entry(oid, snap))
        for parent in snap.parents:
            if parent not in seen:
                seen.add(parent)
                push(parent)
    return result


def _snapshot_filter(repo: WorkspaceView, grep: str | None, meta, paths, cwd: Path | None):
    """A predicate on snapshots for log's filters (True for all without any)."""
    needle = grep.casefold() if grep else None
    pairs = {str(k): meta_text(v) for k, v in meta.items()} if isinstance(meta, Mapping) \
        else _parse_filter_pairs(meta or ())
    prefixes = relative_pathspecs(repo.root, list(paths), cwd) if paths else None

    def at(tree: str | None, prefix: bytes):
        if tree is None:
            return None
        found = lookup(repo.store, tree, prefix)
        return None if found is None else (found.mode, found.id)

    def changed(snap: Snapshot) -> bool:
        parent_tree = None
        if snap.parents:
            try:
                parent_tree = repo.store.get_snapshot(snap.parents[0]).tree
            except MissingObjectError:
                parent_tree = None  # a forgotten parent: the snapshot counts as adding PATH
        return any(at(snap.tree, p) != at(parent_tree, p) for p in prefixes)

    def keep(snap: Snapshot) -> bool:
        if needle is not None and needle not in snap.message.casefold():
            return False
        if any(k not in snap.meta or meta_text(snap.meta[k]) != v for k, v in pairs.items()):
            return False
        return prefixes is None or changed(snap)

    return keep


def _parse_filter_pairs(pairs: Iterable[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise InvalidValueError(f"a metadata filter is KEY=VALUE, not '{pair}'")
        result[key] = value
    return result


def _time_key(time_text: str) -> int:
    """'2026-11-24T03:59:37.123456Z' -> 20261124035937123456, sortable."""
    return int("".join(c for c in time_text if c.isdigit()))


# -- tag ----------------------------------------------------------------------------------

def list_tags(repo: HistoryView) -> dict[str, str]:
    return {short_name(ref): oid for ref, oid in repo.refs.list(TAGS).items()}


@dataclass
class TagInfo:
    name: str
    id: str
    time: str | None            # the snapshot's time; None if it cannot be read
    workspace: str | None       # the workspace that made the snapshot, if known
    message: str | None = None

    def as_json(self) -> dict:
        return {"name": self.name, "id": self.id, "time": self.time,
                "workspace": self.workspace, "message": self.message}


def describe_tags(repo: HistoryView, pattern: str | None = None) -> list[TagInfo]:
    """The tags (matching the glob `pattern`), with their snapshot's time
    and the workspace that made it, sorted by name."""
    found = []
    for name, oid in list_tags(repo).items():
        if pattern is not None and not fnmatchcase(name, pattern):
            continue
        try:
            snap = repo.store.get_snapshot(oid)
        except ObjectError:
            found.append(TagInfo(name, oid, None, None))
            continue
        found.append(TagInfo(name, oid, snap.time, snap.meta.get("workspace"), snap.message))
    return found


def check_tag_name(repo: HistoryView, name: str) -> str:
    """The ref a new tag takes; refuses HEAD, branch names and revision syntax."""
    ref = tag_ref(name)
    short = short_name(ref)
    if short == "HEAD" or short.startswith("-"):
        raise InvalidValueError(f"'{name}' cannot be a tag name")
    if is_object_id(short):
        raise InvalidValueError(f"'{short}' is an object id: it would always name that object, never the tag")
    if repo.refs.resolve(HEADS + short) is not None:
        raise InvalidValueError(f"'{short}' is a branch: a tag of that name would be ambiguous")
    return ref


def tag(repo: WorkspaceView, name: str, rev: str = "HEAD", *, force: bool = False) -> str:
    """Bind `name` to a snapshot; with `force`, move it if it exists. In a
    shared store the tag is the store's (tags.py)."""
    ref = check_tag_name(repo, name)
    # held shared so that gc cannot collect the snapshot before it is named
    with repo.store_lock(shared=True):
        repo.ensure_registered()
        target = resolve_snapshot(repo, rev)
        if force:  # whatever another workspace did meanwhile: -f moves it
            repo.refs.update(ref, target)
        else:
            _bind_tag(repo, name, ref, target)
    warn_if_shadowing(repo, name, ref, target)
    return target


def _bind_tag(repo: WorkspaceView, name: str, ref: str, target: str) -> None:
    current = repo.refs.resolve(ref)
    # (a tag made here before tags lived in the store is bound there now)
    in_store = repo.store_tags is None or repo.store_tags.resolve(ref) is not None
    if current in (None, target) and (current is None or not in_store):
        try:  # compare and swap: another workspace may bind it first
            repo.refs.update(ref, target, expected=current)
        except RefConflictError:
            current = repo.refs.resolve(ref)
    if current not in (None, target):
        raise InvalidValueError(
            f"tag '{name}' already names another snapshot ({current[:12]})",
            hints=["pass force=True to move it"])


def delete_tag(repo: HistoryView, name: str) -> str:
    ref = tag_ref(name)
    current = repo.refs.resolve(ref)
    if current is None:
        raise UnknownRevisionError(f"tag '{name}' does not exist")
    repo.refs.delete(ref, expected=current)
    return current
