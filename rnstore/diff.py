"""diff: what changed between two snapshots, or a snapshot and the workspace."""

from __future__ import annotations

import difflib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import InvalidValueError
from .objects import MODE_LINK, MODE_TREE
from .quoting import quote_path_text
from .revparse import resolve_tree
from .staging import compare, ignore_rules, workspace_entries
from .trees import iter_tree, text_paths
from .worktree import relative_pathspecs, scan, under
from .views import HistoryView, ObjectsView, WorkspaceView

#: Blobs larger than this are not diffed line by line.
TEXT_DIFF_LIMIT = 4 << 20


@text_paths
@dataclass(frozen=True)
class DiffEntry:
    raw_path: bytes      # as named on disk
    status: str          # A, M, D or T
    old: str | None
    new: str | None
    old_mode: str | None
    new_mode: str | None

    def as_json(self) -> dict:
        return {"path": self.path, "status": self.status,
                "old": self.old, "new": self.new}


@dataclass
class Diff:
    entries: list[DiffEntry]
    #: where the new side lives: None for a snapshot, the root for the workspace
    workspace: object = None


def _tree_side(repo: HistoryView, rev: str) -> dict[bytes, tuple[str, str]]:
    tree = resolve_tree(repo, rev)
    return {e.path: (e.mode, e.id) for e in iter_tree(repo.store, tree)}


def _workspace_side(repo: WorkspaceView, excludes: Iterable[str],
                    no_ignore: bool) -> dict[bytes, tuple[str, str]]:
    """The workspace as `commit -a` would see it: tracked and untracked."""
    found = scan(repo.root, [b""], ignore_rules(repo, excludes, no_ignore))
    side = workspace_entries(repo, repo.read_index(), found)
    return {path: entry for path, entry in side.items() if entry[1] != "unreadable"}


def diff(repo: WorkspaceView, old_rev: str | None = None, new_rev: str | None = None, *,
         cached: bool = False, paths: Iterable[str | os.PathLike] | None = None,
         cwd: Path | None = None, excludes: Iterable[str] = (), no_ignore: bool = False) -> Diff:
    """What changed from `old_rev` (default HEAD; before the first
    snapshot, nothing: everything is added) to `new_rev`, or to the index
    (`cached`), or to the workspace. `paths` (relative to `cwd`) limit it."""
    if cached and new_rev is not None:
        raise InvalidValueError("compare the index with one revision, not two")
    if old_rev is None:
        head = repo.refs.head()[1]
        old = _tree_side(repo, head) if head is not None else {}
    else:
        old = _tree_side(repo, old_rev)
    workspace = None
    if cached:
        new = {e.path: (e.mode, e.id) for e in repo.read_index()}
    elif new_rev is None:
        new = _workspace_side(repo, excludes, no_ignore)
        workspace = repo.root
    else:
        new = _tree_side(repo, new_rev)
    if paths:
        prefixes = relative_pathspecs(repo.root, list(paths), cwd)
        old = {p: e for p, e in old.items() if under(p, prefixes)}
        new = {p: e for p, e in new.items() if under(p, prefixes)}
    return _compare_sides(old, new, workspace)


def diff_trees(repo: ObjectsView, old_tree: str | None, new_tree: str) -> Diff:
    """What changed from one tree (None: nothing) to another."""
    old = {e.path: (e.mode, e.id) for e in iter_tree(repo.store, old_tree)} if old_tree else {}
    new = {e.path: (e.mode, e.id) for e in iter_tree(repo.store, new_tree)}
    return _compare_sides(old, new, None)


def _compare_sides(old: dict[bytes, tuple[str, str]], new: dict[bytes, tuple[str, str]],
                   workspace) -> Diff:
    entries = []
    for change in compare(old, new):
        before, after = old.get(change.raw_path), new.get(change.raw_path)
        entries.append(DiffEntry(change.raw_path, change.status,
                                 before[1] if before else None, after[1] if after else None,
                                 before[0] if before else None, after[0] if after else None))
    return Diff(entries, workspace)


def _content(repo: ObjectsView, entry_id: str | None, mode: str | None, path: bytes,
             workspace) -> bytes | None:
    """The bytes of one side, or None when it is absent, a folder or too big."""
    if entry_id is None or mode == MODE_TREE:
        return b""
    if workspace is not None and mode is not None:
        full = os.path.join(os.fsencode(workspace), path)
        if mode == MODE_LINK:
            return os.readlink(full)
        if os.path.getsize(full) > TEXT_DIFF_LIMIT:
            return None
        with open(full, "rb") as fh:
            return fh.read()
    kind, size = repo.store.header(entry_id)
    if size > TEXT_DIFF_LIMIT:
        return None
    return repo.store.get(entry_id, kind)[1]


def _as_lines(data: bytes | None) -> list[str] | None:
    """The text's lines, each with its "\\n" (None: binary). A line ends at
    "\\n" only, as in git: str.splitlines would also cut at a form feed,
    a lone "\\r" or U+2028, and the diff would say "No newline" there."""
    if data is None or b"\0" in data:
        return None
    try:
        return [line.decode("utf-8") for line in io.BytesIO(data)]
    except UnicodeDecodeError:
        return None


def unified(repo: ObjectsView, result: Diff, entry: DiffEntry) -> tuple[list[str] | None, int, int]:
    """A unified diff of one entry as text lines (None: binary), and the
    counts of added and removed lines."""
    path = entry.path
    old = _as_lines(_content(repo, entry.old, entry.old_mode, entry.raw_path, None))
    new_workspace = result.workspace if entry.new is not None else None
    new = _as_lines(_content(repo, entry.new, entry.new_mode, entry.raw_path, new_workspace))
    if old is None or new is None:
        return None, 0, 0
    lines = list(difflib.unified_diff(
        old, new, fromfile=quote_path_text(f"a/{path}") if entry.old else "/dev/null",
        tofile=quote_path_text(f"b/{path}") if entry.new else "/dev/null"))
    body = lines[2:]  # after the ---/+++ header: a changed line may itself start "++" or "--"
    added = sum(1 for line in body if line.startswith("+"))
    removed = sum(1 for line in body if line.startswith("-"))
    return lines, added, removed
