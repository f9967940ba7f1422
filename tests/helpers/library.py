"""Staging and committing through the library, so that plumbing tests do
not depend on `add`."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from rnstore import plumbing
from rnstore.index import Index, IndexEntry
from rnstore.objects import MODE_EXEC, MODE_FILE, MODE_LINK
from rnstore.repo import Repository
from rnstore.store import MemoryStore


def stage(repo: Repository, files: Mapping[bytes | str, bytes | tuple[bytes, str]]) -> Index:
    """Store blobs for `files` (path -> bytes, or (bytes, mode)) and write
    them as the index, replacing what was there. Returns the index."""
    entries = []
    for path, value in files.items():
        data, mode = value if isinstance(value, tuple) else (value, MODE_FILE)
        assert mode in (MODE_FILE, MODE_EXEC, MODE_LINK)
        oid = repo.store.put("blob", data)
        raw = os.fsencode(path) if isinstance(path, str) else path
        entries.append(IndexEntry(raw, mode, oid, len(data)))
    index = Index(entries)
    with repo.lock():
        repo.write_index(index)
    return index


def commit_index(repo: Repository, message: str = "m", parents: Sequence[str] = (),
                 ref: str | None = "refs/heads/main") -> str:
    """write-tree + commit-tree (+ update-ref) through the plumbing library."""
    tree = plumbing.write_tree(repo)
    snapshot = plumbing.commit_tree(repo, tree, list(parents), message)
    if ref is not None:
        plumbing.update_ref(repo, ref, snapshot)
    return snapshot


def age_copies(store, seconds: float) -> None:
    """Make every stored copy of every object `seconds` older, as time
    passing would (any store)."""
    if isinstance(store, MemoryStore):
        for oid in store.mtimes:
            store.mtimes[oid] -= seconds
        return
    for where in {copy.where for copy in store.stored_objects()}:
        mtime = os.stat(where).st_mtime - seconds
        os.utime(where, (mtime, mtime))
