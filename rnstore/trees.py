"""Between flat path lists and nested trees: build, flatten, look up.

A flat entry is (path, mode, id, size) with `path` as '/'-separated bytes.
An empty folder is a flat entry of mode 040000 whose id is the empty tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple

from .errors import CorruptObjectError, InvalidValueError, MissingObjectError
from .objects import EMPTY_TREE_ID, MODE_TREE, TREE, Tree, TreeEntry, check_name, hash_bytes

if TYPE_CHECKING:  # store imports codec, hence zstandard: keep it off the import path
    from .store import ObjectStore


#: Longer paths cannot be written on POSIX (PATH_MAX); a tree that holds
#: one was crafted, not snapshotted.
MAX_PATH = 4096


class FlatEntry(NamedTuple):
    path: bytes
    mode: str
    id: str
    size: int


def split_path(path: bytes) -> list[bytes]:
    """A relative path's components; refuses anything that could escape."""
    parts = path.split(b"/")
    for part in parts:
        _check_part(part, path)
    return parts


def build_tree(store: ObjectStore, entries: Iterable[FlatEntry], *, base: str | None = None,
               known: dict[bytes, tuple[str, int]] | None = None) -> str:
    """Store the trees for a flat listing; returns the root tree id.

    `base` is a tree that a root reaches (HEAD's): a folder identical to
    its counterpart there is neither written nor refreshed, so a snapshot
    that changes little writes little. `known` (the index's folder ids,
    updated in place) maps a folder path to the (id, size) its entries
    encode to: such a folder is not encoded again when `base` holds the
    same id, and is otherwise encoded and stored as usual."""
    if known and base is not None and known.get(b"", ("",))[0] == base:
        return base  # nothing changed since the index last built `base`
    root: dict = {}
    for entry in entries:
        parts = entry.path.split(b"/")
        node = root
        for folder in parts[:-1]:
            child = node.get(folder)
            if child is None:
                _check_part(folder, entry.path)
                child = node[folder] = {}
            elif not isinstance(child, dict):
                raise InvalidValueError(f"{entry.path!r} lies below a file")
            node = child
        name = parts[-1]
        existing = node.get(name)
        if existing is None:
            _check_part(name, entry.path)
        if entry.mode == MODE_TREE:
            if existing is None:
                node[name] = {}
            elif not isinstance(existing, dict):
                raise InvalidValueError(f"{entry.path!r} is both a file and a folder")
            continue
        if isinstance(existing, dict):
            raise InvalidValueError(f"{entry.path!r} is both a file and a folder")
        node[name] = entry
    known = {} if known is None else known
    try:
        _store_changed(store, _encode(root, b"", known), base, known)
    except _StaleFolderId:
        known.clear()  # a bug, not damage; never write a tree from a wrong id
        _store_changed(store, _encode(root, b"", known), base, known)
    return known[b""][0]


class _StaleFolderId(Exception):
    """A folder id in `known` differs from what its entries encode to."""


def _check_part(part: bytes, path: bytes) -> None:
    try:
        check_name(part)
    except CorruptObjectError:
        raise InvalidValueError(f"invalid path {path!r}") from None


class _Built(NamedTuple):
    id: str
    size: int
    path: bytes
    node: dict
    payload: bytes | None  # None: taken from `known`, not encoded
    subtrees: dict


def _encode(node: dict, path: bytes, known: dict[bytes, tuple[str, int]], reuse: bool = True) -> _Built:
    """Encode a nested listing bottom-up, in memory, recording each folder's
    id in `known`; with `reuse`, a folder already there is not encoded."""
    if reuse and path in known:
        tree_id, size = known[path]
        return _Built(tree_id, size, path, node, None, {})
    entries, subtrees = [], {}
    for name, child in node.items():
        if isinstance(child, dict):
            built = subtrees[name] = _encode(child, path + b"/" + name if path else name, known, reuse)
            entries.append(TreeEntry(name, MODE_TREE, built.id, built.size))
        else:
            entries.append(TreeEntry(name, child.mode, child.id, child.size))
    tree = Tree.from_entries(entries)
    payload = tree.encode()
    built = _Built(hash_bytes(payload), tree.total_size, path, node, payload, subtrees)
    known[path] = (built.id, built.size)
    return built


def _store_changed(store: ObjectStore, built: _Built, base_id: str | None,
                   known: dict[bytes, tuple[str, int]]) -> None:
    if built.id == base_id:
        return
    if built.payload is None:
        # A known folder that `base` does not hold: its trees may never have
        # been stored, or been collected since. Encode and store it all.
        rebuilt = _encode(built.node, built.path, known, reuse=False)
        if rebuilt.id != built.id:
            raise _StaleFolderId(built.path)
        built = rebuilt
    base_subtrees: dict[bytes, str] = {}
    if base_id is not None:
        try:
            base_subtrees = {e.name: e.id for e in store.get_tree(base_id).entries
                             if e.mode == MODE_TREE}
        except (MissingObjectError, CorruptObjectError):
            base_subtrees = {}  # a damaged base only costs us the shortcut
    for name, child in built.subtrees.items():
        _store_changed(store, child, base_subtrees.get(name), known)
    store.put(TREE, built.payload)


def iter_tree(store: ObjectStore, tree_id: str, prefix: bytes = b"",
              recursive: bool = True) -> Iterator[FlatEntry]:
    """Entries below a tree in path order. Recursively, only files, links
    and empty folders are listed; otherwise one level, folders included."""
    if not recursive:
        for entry in store.get_tree(tree_id).entries:
            yield FlatEntry(prefix + entry.name, entry.mode, entry.id, entry.size)
        return
    # An explicit stack, not recursion: a stored tree may nest arbitrarily deep.
    pending = [iter(_in_path_order(store.get_tree(tree_id).entries))]
    prefixes = [prefix]
    while pending:
        entry = next(pending[-1], None)
        if entry is None:
            pending.pop()
            prefixes.pop()
            continue
        path = prefixes[-1] + entry.name
        if len(path) >= MAX_PATH:
            raise CorruptObjectError(
                f"tree {tree_id} holds a path of over {MAX_PATH} bytes, more than any "
                f"file system allows: {path[:60]!r}...", tree_id)
        if entry.mode == MODE_TREE and entry.id != EMPTY_TREE_ID:
            pending.append(iter(_in_path_order(store.get_tree(entry.id).entries)))
            prefixes.append(path + b"/")
        elif entry.mode == MODE_TREE:
            yield FlatEntry(path, MODE_TREE, entry.id, 0)
        else:
            yield FlatEntry(path, entry.mode, entry.id, entry.size)


def _in_path_order(entries) -> list[TreeEntry]:
    # Trees sort by entry name, but "a/x" comes after "a.txt" in path order
    # ('/' > '.'): a non-empty folder sorts as if named "a/".
    return sorted(entries, key=lambda e: e.name + b"/"
                  if e.mode == MODE_TREE and e.id != EMPTY_TREE_ID else e.name)


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
