"""What an operation needs of a workspace, as protocols.

Operations receive the workspace (a `repo.Repository`) as an argument and
never import `repo` (see ARCHITECTURE.md). Each one declares the narrowest
view it uses, so its signature says which layers it touches:

- ObjectsView: objects only (the ObjectStore contract).
- HistoryView: objects and what names them: refs and the journal of live
  snapshots. Resolving a revision needs no more.
- WorkspaceView: the whole open workspace: its folders, settings, index
  and locks, and the shared store it may use.

Repository has every member of each; tests/test_views.py checks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from .config import Config
from .fsutil import FileLock
from .index import Index
from .refs import Journal, RefStore
from .tags import WorkspaceRefs

if TYPE_CHECKING:  # store.py loads zstandard: only commands that touch objects pay for it
    from .store import ObjectStore


class ObjectsView(Protocol):
    """Objects only."""

    @property
    def store(self) -> ObjectStore: ...


class HistoryView(ObjectsView, Protocol):
    """Objects, refs and the journal of live snapshots."""

    @property
    def refs(self) -> RefStore | WorkspaceRefs:
        """HEAD, branches and tags (a shared store's tags among them)."""
        ...

    @property
    def journal(self) -> Journal: ...

    notify: Callable[[str], None]  # warnings for the user (the CLI: stderr)


class WorkspaceView(HistoryView, Protocol):
    """An open workspace: everything but the operations themselves."""

    root: Path                 # the working folder
    dotdir: Path               # its .rnstore folder
    config: Config
    store_root: Path           # the folder holding the object store: dotdir, or a shared store
    shared_store: bool

    @property
    def durable(self) -> bool: ...

    def lock(self) -> FileLock: ...

    def store_lock(self, *, shared: bool) -> FileLock: ...

    def read_index(self) -> Index: ...

    def write_index(self, index: Index) -> None: ...

    @property
    def local_refs(self) -> RefStore:
        """The refs in this workspace's own folder only."""
        ...

    @property
    def store_tags(self) -> RefStore | None:
        """A shared store's tags; None with a store of its own."""
        ...

    def register(self) -> Path: ...

    def ensure_registered(self) -> None: ...

    def workspace_at(self, dotdir: Path) -> WorkspaceView:
        """Another workspace (one a shared store also serves), opened as this one is."""
        ...


__all__ = ["ObjectsView", "HistoryView", "WorkspaceView"]
