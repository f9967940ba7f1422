"""Tags that live in a shared object store.

A workspace with its own store keeps its tags in `.rnstore/refs/tags/`. A
workspace that uses a shared store (`init --objects`) keeps only its branches
and HEAD; its tags are the store's, at `<store>/refs/tags/NAME`, the same
ref files (one id and a newline), changed by compare-and-swap under
`<store>/tags.lock`. Every workspace of the store sees, resolves, moves and
deletes the same tags, and gc counts them as roots of the store itself, so a
tag outlives the workspace that made it.

Tags that a shared workspace made before tags moved to the store stay in its
`.rnstore/refs/tags/`: they still resolve (a store tag of the same name wins),
are listed, and keep their snapshots alive while the workspace exists.
`rnstore tag -f NAME NAME` binds one in the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .fsutil import FileLock
from .refs import ANY, TAGS, RefStore

TAGS_LOCK = "tags.lock"


def store_tag_refs(store_root: Path, lock: Callable[[], FileLock], *, durable: bool,
                   group_shared: bool = False) -> RefStore:
    """The tags of a shared store, as a RefStore rooted at the store."""
    return RefStore(store_root, lock, durable=durable, group_shared=group_shared)


class WorkspaceRefs:
    """A shared-store workspace's refs as commands see them: HEAD and
    branches from the workspace, tags from the store (see the module
    docstring). Anything else is the workspace's RefStore's."""

    def __init__(self, local: RefStore, store_tags: RefStore):
        self.local = local
        self.store_tags = store_tags

    def __getattr__(self, name):  # head, symbolic_head, set_head_symbolic, dotdir, ...
        return getattr(self.local, name)

    def read_raw(self, ref: str) -> str | None:
        return self._store_tag_first(ref, "read_raw")

    def resolve(self, ref: str) -> str | None:
        return self._store_tag_first(ref, "resolve")

    def _store_tag_first(self, ref: str, method: str) -> str | None:
        """A tag the store holds wins over the workspace's own; every other
        ref is the workspace's."""
        if ref.startswith(TAGS):
            value = getattr(self.store_tags, method)(ref)
            if value is not None:
                return value
        return getattr(self.local, method)(ref)

    def list(self, prefix: str = "refs/") -> dict[str, str]:
        found = self.local.list(prefix)
        # (a store made before tags lived there has no refs/ until its first tag)
        if (TAGS.startswith(prefix) or prefix.startswith(TAGS)) and (self.store_tags.dotdir / "refs").is_dir():
            found.update(self.store_tags.list(prefix))
        return dict(sorted(found.items()))

    def update(self, ref: str, new_id: str, expected: object = ANY, *, follow_head: bool = True) -> None:
        if ref.startswith(TAGS):
            if expected is not ANY and self.store_tags.resolve(ref) is None:
                # moving a tag made here before tags lived in the store: the
                # store has none of that name yet, whatever the old one held
                expected = None if self.local.resolve(ref) == expected else expected
            self.store_tags.update(ref, new_id, expected)
            return
        self.local.update(ref, new_id, expected, follow_head=follow_head)

    def delete(self, ref: str, expected: object = ANY) -> None:
        if ref.startswith(TAGS) and self.store_tags.resolve(ref) is not None:
            self.store_tags.delete(ref, expected)
            return
        self.local.delete(ref, expected)


__all__ = ["WorkspaceRefs", "store_tag_refs", "TAGS_LOCK"]
