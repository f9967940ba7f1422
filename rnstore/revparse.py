"""Revision names to object ids.

    REV      = BASE SUFFIX* [":" PATH]
    BASE     = full id | hex prefix (>= 4) | HEAD | branch | tag | refs/...
    SUFFIX   = "~" [N] | "^" [N]

A full object id names that object, if it is stored. Other names are
looked up as refs first (HEAD, refs/heads/X, refs/tags/X, refs/remotes/X
as fetched from a remote, the full ref), then as an id prefix over all
objects, as in git.
"""

from __future__ import annotations

import os
import re

from .errors import (AmbiguousRevisionError, CorruptObjectError, InvalidValueError, MissingObjectError,
                     UnknownRevisionError)
from .objects import BLOB, MODE_TREE, SNAPSHOT, TREE, TREE_HEADER, TreeEntry, is_object_id
from .refs import HEAD, HEADS, REMOTES, TAGS
from .trees import lookup
from .views import HistoryView, ObjectsView

MIN_PREFIX = 4
_HEX = re.compile(r"[0-9a-f]+\Z")
_SUFFIX = re.compile(r"([~^])(\d*)")


def _unknown(rev: str, why: str = "") -> UnknownRevisionError:
    return UnknownRevisionError(
        f"unknown revision '{rev}'" + (f": {why}" if why else ""),
        hints=["`rnstore log --all --oneline` lists snapshots; `rnstore show-ref` lists refs"])


def resolve_name(repo: HistoryView, name: str) -> str:
    """A ref name or an id (prefix) to a full object id."""
    if not name:
        raise _unknown(name, "empty name")
    if name == HEAD:
        branch, oid = repo.refs.head()
        if oid is None:
            raise _unknown(name, f"{branch or 'HEAD'} has no snapshot yet")
        return oid
    lowered = name.lower()
    full_id = is_object_id(lowered)
    if full_id and repo.store.has(lowered):
        return lowered  # as in git, before any ref of that name (and no ref read per id)
    refs = (name,) if name.startswith("refs/") else (HEADS + name, TAGS + name, REMOTES + name)
    for ref in refs:
        try:
            oid = repo.refs.resolve(ref)
        except InvalidValueError:  # not a valid ref name: maybe an id prefix
            continue
        if oid is not None:
            warn_if_shadowing(repo, name, ref, oid)
            return oid
    if _HEX.match(lowered):
        if full_id:
            raise _unknown(name, "no such object")
        if len(lowered) < MIN_PREFIX:
            raise _unknown(name, f"an id prefix needs at least {MIN_PREFIX} hex digits")
        candidates = repo.store.ids_with_prefix(lowered)
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise AmbiguousRevisionError(name, candidates)
    raise _unknown(name)


def warn_if_shadowing(repo: HistoryView, name: str, ref: str, oid: str) -> None:
    """`name`, which resolved to `ref` (at `oid`), wins over the objects
    whose ids it starts (a tag `cafe`), as in git; like git, say so: the
    user may have meant an id."""
    lowered = name.lower()
    if not (_HEX.match(lowered) and MIN_PREFIX <= len(lowered) < 64):
        return
    others = [candidate for candidate in repo.store.ids_with_prefix(lowered) if candidate != oid]
    if others:
        repo.notify(f"warning: '{name}' is ambiguous: it names {ref} ({oid[:12]}), used here, and starts "
                    f"the id of {len(others)} other object{'s' if len(others) != 1 else ''} "
                    f"({others[0][:12]}); give more digits to name an object")


def _split(rev: str) -> tuple[str, list[tuple[str, int]], str | None]:
    spec, path = (rev.split(":", 1) + [None])[:2] if ":" in rev else (rev, None)
    cut = min([i for i in (spec.find("~"), spec.find("^")) if i >= 0], default=len(spec))
    base, suffix_text = spec[:cut], spec[cut:]
    suffixes = []
    position = 0
    for match in _SUFFIX.finditer(suffix_text):
        if match.start() != position:
            break
        count = int(match.group(2)) if match.group(2) else 1
        suffixes.append((match.group(1), count))
        position = match.end()
    if position != len(suffix_text):
        raise InvalidValueError(f"malformed revision '{rev}'")
    return base, suffixes, path


def peel_to_snapshot(repo: ObjectsView, oid: str, rev: str) -> str:
    kind = repo.store.header(oid)[0]
    if kind != SNAPSHOT:
        raise InvalidValueError(f"'{rev}' names a {kind}, not a snapshot")
    return oid


def rev_parse(repo: HistoryView, rev: str) -> str:
    """Any revision to an object id (for REV:path, the entry's id)."""
    base, suffixes, path = _split(rev)
    oid = resolve_name(repo, base)
    for kind, count in suffixes:
        oid = peel_to_snapshot(repo, oid, rev)
        if kind == "~":
            for _ in range(count):
                oid = _parent(repo, oid, 1, rev)
        elif count:  # "^N" is the Nth parent; "^0" the snapshot itself
            oid = _parent(repo, oid, count, rev)
    if path is None:
        return oid
    entry = resolve_path(repo, oid, path, rev)
    return entry.id


def _parent(repo: ObjectsView, oid: str, number: int, rev: str) -> str:
    parents = repo.store.get_snapshot(oid).parents
    if len(parents) < number:
        raise _unknown(rev, f"snapshot {oid[:12]} has no parent {number}")
    parent = parents[number - 1]
    if not repo.store.has(parent):
        journal = getattr(repo, "journal", None)  # a HistoryView's: the live snapshots
        if journal is not None and parent in journal:
            raise MissingObjectError(f"snapshot {parent}, the parent of {oid[:12]}, is missing, though it "
                                     "is still live: the store is damaged", parent,
                                     hints=["`rnstore fsck` lists the damage"])
        raise UnknownRevisionError(
            f"unknown revision '{rev}': snapshot {parent[:12]}, the parent of {oid[:12]}, "
            "was forgotten and collected",
            hints=["`rnstore log` shows the history that is left"])
    return parent


def tree_of(repo: ObjectsView, oid: str, rev: str) -> str:
    """A snapshot's root tree, or a tree itself."""
    kind = repo.store.header(oid)[0]
    if kind == SNAPSHOT:
        return repo.store.get_snapshot(oid).tree
    if kind == TREE or (kind == BLOB and is_stored_tree(repo.store, oid)):
        return oid
    raise InvalidValueError(f"'{rev}' names a {kind}, not a snapshot or tree")


def is_stored_tree(store, oid: str) -> bool:
    """Whether an object stored as a blob is also a valid tree: ids hash the
    payload only, so a file holding exactly a tree's encoding (say the empty
    tree's, b"rntree 1\\n") has that tree's id, and was stored first."""
    with store.open_object(oid, verify=False) as reader:
        if not next(iter(reader.chunks()), b"").startswith(TREE_HEADER):
            return False
    try:
        store.get_tree(oid)
    except CorruptObjectError:
        return False
    return True


def resolve_path(repo: ObjectsView, oid: str, path: str, rev: str) -> TreeEntry:
    tree_id = tree_of(repo, oid, rev)
    try:
        entry = lookup(repo.store, tree_id, os.fsencode(path))
    except (InvalidValueError, CorruptObjectError) as exc:
        if isinstance(exc, CorruptObjectError):
            raise
        raise _unknown(rev, str(exc)) from None
    if entry is None:
        raise _unknown(rev, f"path '{path}' is not in it")
    return entry


def resolve_snapshot(repo: HistoryView, rev: str) -> str:
    return peel_to_snapshot(repo, rev_parse(repo, rev), rev)


def resolve_tree(repo: HistoryView, rev: str) -> str:
    """A revision that names a snapshot or a tree (TREE-ISH) to a tree id."""
    oid = rev_parse(repo, rev)
    return tree_of(repo, oid, rev)


def resolve_entry(repo: HistoryView, rev: str) -> TreeEntry:
    """REV or REV:path to an entry with its mode (a root tree for REV)."""
    base_rev, _, path = rev.partition(":")
    if ":" not in rev:
        tree_id = resolve_tree(repo, rev)
        return TreeEntry(b"", MODE_TREE, tree_id, repo.store.get_tree(tree_id).total_size)
    return resolve_path(repo, rev_parse(repo, base_rev), path, rev)
