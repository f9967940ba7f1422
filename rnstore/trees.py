"""Between flat path lists and nested trees: build, flatten, look up.

A flat entry is (path, mode, id, size) with `path` as '/'-separated bytes.
An empty folder is a flat entry of mode 040000 whose id is the empty tree.
"""

from __future__ import annotations

import bisect
import functools
import os
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple

from .errors import CorruptObjectError, InvalidValueError, MissingObjectError
from .objects import EMPTY_TREE_ID, MODE_TREE, TREE, TREE_HEADER, Tree, TreeEntry, check_name, hash_bytes

if TYPE_CHECKING:  # store imports codec, hence zstandard: keep it off the import path
    from .store import ObjectStore


#: Longer paths cannot be written on POSIX (PATH_MAX); a tree that holds
#: one was crafted, not snapshotted.
MAX_PATH = 4096


#: The longest symlink target symlink(2) accepts (PATH_MAX less its NUL).
MAX_LINK_TARGET = MAX_PATH - 1


def shorten(name: bytes | str, limit: int = 120) -> str:
    """A name for a message: decoded, and cut in the middle when long (a
    crafted name can be 70 KB; nobody reads that in an error)."""
    text = os.fsdecode(name) if isinstance(name, bytes) else name
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...({len(text) - limit} more)...{text[-(limit // 2):]}"


def check_link_target(target: bytes, entry: FlatEntry) -> None:
    """A symlink blob that checkout and export may write: not empty, no NUL
    (tar would cut it there), not longer than symlink(2) accepts, and as
    long as its tree entry says."""
    why = ("is empty" if not target else "holds a NUL byte" if b"\0" in target
           else f"is {len(target):,} bytes, more than a symlink can hold ({MAX_LINK_TARGET:,})"
           if len(target) > MAX_LINK_TARGET else None)
    if why is None and len(target) != entry.size:
        why = f"is {len(target)} bytes but its tree entry records {entry.size} (size mismatch)"
    if why is not None:
        raise CorruptObjectError(f"object {entry.id} is not a valid symlink target: it {why}",
                                 entry.id)


def check_blob_size(size: int, entry: FlatEntry) -> None:
    """A blob must be as long as its tree entry says (fsck checks the same)."""
    if size != entry.size:
        raise CorruptObjectError(f"object {entry.id} holds {size} bytes but its tree entry records "
                                 f"{entry.size} (size mismatch)", entry.id)


class FlatEntry(NamedTuple):
    path: bytes
    mode: str
    id: str
    size: int


def text_paths(cls):
    """A class decorator for results: each `raw_NAME` field of bytes paths
    gets a `NAME` property of `str` paths. os.fsdecode, so a name that is
    not UTF-8 keeps its bytes as surrogate escapes (os.fsencode gives them
    back; the raw field holds them as named on disk). One path, a list, a
    set, or (path, ...) tuples, whose other items are kept."""
    for raw_field in getattr(cls, "__annotations__", {}):
        if raw_field.startswith("raw_"):
            setattr(cls, raw_field[4:], property(
                functools.partial(_decoded, raw_field=raw_field),
                doc=f"{raw_field[4:]} as str (bytes in {raw_field})"))
    return cls


def _decoded(result, raw_field: str):
    raw = getattr(result, raw_field)
    if isinstance(raw, bytes):
        return os.fsdecode(raw)
    text = [(os.fsdecode(item[0]), *item[1:]) if isinstance(item, tuple) else os.fsdecode(item)
            for item in raw]
    return set(text) if isinstance(raw, (set, frozenset)) else text


def split_path(path: bytes) -> list[bytes]:
    """A relative path's components; refuses anything that could escape."""
    parts = path.split(b"/")
    for part in parts:
        _check_part(part, path)
    return parts


def is_safe_path(path: bytes) -> bool:
    """Whether split_path accepts `path` (every component a valid tree
    name), without building the list."""
    return all_safe_paths([path])


def all_safe_paths(paths: list[bytes]) -> bool:
    """Whether split_path accepts every one of `paths` (which hold no NUL):
    three searches over them all at C speed, for the index's thousands."""
    # Framed by "/" and parted by NUL, a path breaks the rules exactly when
    # "//" (an empty component), "/./" or "/../" appears.
    if not paths:
        return True
    framed = b"/\0/" + b"/\0/".join(paths) + b"/\0/"
    return b"//" not in framed and b"/./" not in framed and b"/../" not in framed


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
        return _build(store, root, b"", known, base)[0]
    except _StaleFolderId:
        known.clear()  # a bug, not damage; never write a tree from a wrong id
        return _build(store, root, b"", known, base)[0]


class _StaleFolderId(Exception):
    """A folder id in `known` differs from what its entries encode to."""


def _check_part(part: bytes, path: bytes) -> None:
    try:
        check_name(part)
    except CorruptObjectError:
        raise InvalidValueError(f"invalid path {path!r}") from None


def _build(store: ObjectStore, node: dict, path: bytes, known: dict[bytes, tuple[str, int]],
           base_id: str | None, reuse: bool = True) -> tuple[str, int]:
    """Encode a nested listing bottom-up, storing each folder that differs
    from its counterpart in `base_id` as soon as it is encoded (so no
    encoding is kept longer), and recording each folder's (id, size) in
    `known`. With `reuse`, a folder already in `known` that `base_id`
    holds too is neither encoded nor stored."""
    if reuse and path in known:
        tree_id, size = known[path]
        if tree_id == base_id:
            return tree_id, size
        # A known folder that `base` does not hold: its trees may never have
        # been stored, or been collected since. Encode and store it all.
        rebuilt = _build(store, node, path, known, base_id, reuse=False)
        if rebuilt[0] != tree_id:
            raise _StaleFolderId(path)
        return rebuilt
    base_subtrees = _subtrees(store, base_id)
    entries = []
    for name, child in node.items():
        if isinstance(child, dict):
            child_id, child_size = _build(store, child, path + b"/" + name if path else name, known,
                                          base_subtrees.get(name), reuse)
            entries.append(TreeEntry(name, MODE_TREE, child_id, child_size))
        else:
            entries.append(TreeEntry(name, child.mode, child.id, child.size))
    return _store_folder(store, entries, path, known, base_id)


def _store_folder(store: ObjectStore, entries: Iterable[TreeEntry], path: bytes,
                  known: dict[bytes, tuple[str, int]], base_id: str | None) -> tuple[str, int]:
    """Encode a folder's entries, record its (id, size) in `known`, and
    store it unless `base_id` is the same tree."""
    tree = Tree.from_entries(entries)
    payload = tree.encode()
    tree_id = hash_bytes(payload)
    known[path] = (tree_id, tree.total_size)
    if tree_id != base_id:
        store.put(TREE, payload)
    return tree_id, tree.total_size


def build_sorted_tree(store: ObjectStore, paths: list[bytes], entry_at: Callable[[int], tuple[str, str, int]],
                      *, base: str | None = None, known: dict[bytes, tuple[str, int]] | None = None) -> str:
    """build_tree for a listing already sorted by path bytes (the index's):
    `paths`, and `entry_at(i)` giving (mode, id, size) of paths[i]. The
    entries below a folder are a contiguous run there, so a folder that
    `known` and `base` both vouch for is skipped whole (a bisect, not a
    visit per file), and nothing is built for the others but their own
    listings: a snapshot after a small edit touches what changed."""
    if known and base is not None and known.get(b"", ("",))[0] == base:
        return base
    known = {} if known is None else known
    try:
        return _build_run(store, paths, entry_at, b"", 0, len(paths), known, base)[0]
    except _StaleFolderId:
        known.clear()  # a bug, not damage; never write a tree from a wrong id
        return _build_run(store, paths, entry_at, b"", 0, len(paths), known, base)[0]


def _build_run(store: ObjectStore, paths: list[bytes], entry_at, path: bytes, lo: int, hi: int,
               known: dict[bytes, tuple[str, int]], base_id: str | None, reuse: bool = True
               ) -> tuple[str, int]:
    """_build for the folder `path`, whose entries are paths[lo:hi]."""
    if reuse and path in known:
        tree_id, size = known[path]
        if tree_id == base_id:
            return tree_id, size
        rebuilt = _build_run(store, paths, entry_at, path, lo, hi, known, base_id, reuse=False)
        if rebuilt[0] != tree_id:
            raise _StaleFolderId(path)
        return rebuilt
    base_subtrees = _subtrees(store, base_id)
    prefix = path + b"/" if path else b""
    skip = len(prefix)
    entries: dict[bytes, TreeEntry | None] = {}  # None: an empty folder, unless filled
    i = lo
    while i < hi:
        rest = paths[i][skip:]
        slash = rest.find(b"/")
        if slash < 0:
            if rest in entries:
                raise InvalidValueError(f"{paths[i]!r} is both a file and a folder")
            mode, oid, size = entry_at(i)
            entries[rest] = None if mode == MODE_TREE else TreeEntry(rest, mode, oid, size)
            i += 1
            continue
        name = rest[:slash]
        if entries.get(name) is not None:
            raise InvalidValueError(f"{paths[i]!r} lies below a file")
        # the paths below "name/" end where "name0" would sort ("0" follows "/")
        end = bisect.bisect_left(paths, prefix + name + b"0", i, hi)
        child = _build_run(store, paths, entry_at, prefix + name, i, end, known,
                           base_subtrees.get(name), reuse)
        entries[name] = TreeEntry(name, MODE_TREE, *child)
        i = end
    for name, entry in entries.items():
        if entry is None:
            child = _build_run(store, paths, entry_at, prefix + name, hi, hi, known,
                               base_subtrees.get(name), reuse)
            entries[name] = TreeEntry(name, MODE_TREE, *child)
    return _store_folder(store, entries.values(), path, known, base_id)


_SUBTREE = MODE_TREE.encode() + b" "


def _subtrees(store: ObjectStore, tree_id: str | None) -> dict[bytes, str]:
    """name -> id of the folders in a tree ({} for none, or a damaged one).
    Only the folder records are parsed: the store checked the payload
    against its id, and an id read here is only ever compared with
    another (a commit after a small edit reads hundreds of these)."""
    if tree_id is None:
        return {}
    try:
        payload = store.get(tree_id, TREE)[1]
    except (MissingObjectError, CorruptObjectError):
        return {}  # a damaged base only costs us the shortcut
    if not payload.startswith(TREE_HEADER):
        return {}
    subtrees = {}
    for record in payload[len(TREE_HEADER):].split(b"\0"):
        if record.startswith(_SUBTREE):
            fields = record.split(b" ", 3)
            if len(fields) != 4:
                return {}  # malformed: no shortcut either
            subtrees[fields[3]] = fields[1].decode("ascii", "replace")
    return subtrees


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


class BackgroundPuts:
    """A store, as tree building sees it, whose puts past the first
    SYNC_PUTS run on one background thread: the id is computed at once (the
    parent folder needs it), the compression and the write overlap with the
    encoding of the next folders. A first snapshot writes a tree per folder
    after its files, with the other core idle. Use as a context manager
    inside the store's batch: leaving waits for every put and raises the
    first error one raised."""

    #: a snapshot that writes fewer trees (a small edit) starts no thread
    SYNC_PUTS = 64
    #: puts handed over together: one wake-up of the thread per run, not per tree
    RUN = 32
    POLL = 0.1  # seconds an idle thread waits before it looks at the stop flag again
    ABANDON_WAIT = 30.0

    def __init__(self, store):
        self._store = store
        self._puts = 0
        self._queue = None
        self._thread = None
        self._error: BaseException | None = None
        self._stop = False
        self._run_of_puts: list[tuple[str, bytes]] = []

    def put(self, kind: str, payload: bytes) -> str:
        if self._error is not None:
            raise self._error
        if self._puts < self.SYNC_PUTS:
            self._puts += 1
            return self._store.put(kind, payload)
        if self._thread is None:
            import queue
            import threading
            self._queue = queue.Queue(maxsize=16)  # a bounded backlog: memory stays flat
            self._thread = threading.Thread(target=self._run, args=(queue.Empty,), name="rnstore-trees",
                                            daemon=True)
            self._thread.start()
        self._run_of_puts.append((kind, payload))
        if len(self._run_of_puts) >= self.RUN:
            self._queue.put(self._run_of_puts)
            self._run_of_puts = []
        return hash_bytes(payload)

    def _run(self, empty) -> None:
        while not self._stop:
            try:
                puts = self._queue.get(timeout=self.POLL)
            except empty:
                continue
            if puts is None:
                return
            for kind, payload in puts:
                if self._error is not None or self._stop:
                    break
                try:
                    self._store.put(kind, payload)
                except BaseException as exc:  # raised in the caller's thread, at its next put or at exit
                    self._error = exc

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def __enter__(self) -> "BackgroundPuts":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._thread is not None and exc_type is not None:
            # failing anyway: the backlog is dropped, and the thread told so by
            # a flag, not through the queue, which a Ctrl-C inside one of its
            # calls may have left half-updated (export once hung so); nor
            # waited for without end: a daemon thread goes with the process
            self._stop = True
            self._thread.join(timeout=self.ABANDON_WAIT)
        elif self._thread is not None:
            if self._run_of_puts:
                self._queue.put(self._run_of_puts)
            self._queue.put(None)
            self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error
