"""Between flat path lists and nested trees: build, flatten, look up.

A flat entry is (path, mode, id, size) with `path` as '/'-separated bytes.
An empty folder is a flat entry of mode 040000 whose id is the empty tree.
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple

from .errors import CorruptObjectError, InvalidValueError
from .objects import MODE_TREE, Tree, TreeEntry, check_name
from .store import ObjectStore


class FlatEntry(NamedTuple):
    path: bytes
    mode: str
    id: str
    size: int


def split_path(path: bytes) -> list[bytes]:
    """A relative path's components; refuses anything that could escape."""
    parts = path.split(b"/")
    for part in parts:
        try:
            check_name(part)
        except CorruptObjectError:
            raise InvalidValueError(f"invalid path {path!r}") from None
    return parts


def build_tree(store: ObjectStore, entries: Iterable[FlatEntry]) -> str:
    """Store the trees for a flat listing; returns the root tree id."""
    root: dict = {}
    for entry in entries:
        *folders, name = split_path(entry.path)
        node = root
        for folder in folders:
            child = node.setdefault(folder, {})
            if not isinstance(child, dict):
                raise InvalidValueError(f"{entry.path!r} lies below a file")
            node = child
        if entry.mode == MODE_TREE:
            existing = node.setdefault(name, {})
            if not isinstance(existing, dict):
                raise InvalidValueError(f"{entry.path!r} is both a file and a folder")
            continue
        if isinstance(node.get(name), dict):
            raise InvalidValueError(f"{entry.path!r} is both a file and a folder")
        node[name] = entry
    return _store_node(store, root)[0]


def _store_node(store: ObjectStore, node: dict) -> tuple[str, int]:
    entries = []
    for name, child in node.items():
        if isinstance(child, dict):
            child_id, size = _store_node(store, child)
            entries.append(TreeEntry(name, MODE_TREE, child_id, size))
        else:
            entries.append(TreeEntry(name, child.mode, child.id, child.size))
    tree = Tree.from_entries(entries)
    return store.put_tree(tree), tree.total_size


def iter_tree(store: ObjectStore, tree_id: str, prefix: bytes = b"",
              recursive: bool = True) -> Iterator[FlatEntry]:
    """Entries below a tree in path order. Recursively, only files, links
    and empty folders are listed; otherwise one level, folders included."""
    tree = store.get_tree(tree_id)
    for entry in tree.entries:
        path = prefix + entry.name
        if entry.mode == MODE_TREE and recursive:
            before = 0
            for before, item in enumerate(iter_tree(store, entry.id, path + b"/"), 1):
                yield item
            if before == 0:
                yield FlatEntry(path, MODE_TREE, entry.id, 0)
        else:
            yield FlatEntry(path, entry.mode, entry.id, entry.size)


def lookup(store: ObjectStore, tree_id: str, path: bytes) -> TreeEntry | None:
    """The entry at `path` below a tree, or None. An empty path is the tree."""
    path = path.strip(b"/")
    if not path:
        tree = store.get_tree(tree_id)
        return TreeEntry(b"", MODE_TREE, tree_id, tree.total_size)
    current = tree_id
    entry = None
    for part in split_path(path):
        if entry is not None and entry.mode != MODE_TREE:
            return None
        entry = store.get_tree(current).get(part)
        if entry is None:
            return None
        current = entry.id
    return entry
