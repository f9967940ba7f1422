"""Reading the workspace: walk it under the ignore rules, and turn what is
found into blobs. Names stay bytes end to end, so any POSIX name round-trips.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import sys
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from .errors import CorruptStoreError, InvalidValueError
from .fsutil import atomic_write, open_regular_stat, open_state, settled_before
from .ignore import ALWAYS_EXCLUDED, IGNORE_FILE
from .index import Found, StatKey, stat_key_if_settled
from .objects import EMPTY_TREE_ID, MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, hash_bytes, hash_stream
from .store import ObjectStore


@dataclass
class Scan:
    #: every file and link found, as (path, mode, lstat result), in
    #: path-byte order (the index's): a one-pass iterator, so a walk of
    #: 200,000 files holds none of them; the lists below are complete
    #: once it is exhausted
    found: Iterator[tuple[bytes, str, os.stat_result]] = field(default_factory=lambda: iter(()))
    #: empty folders found (apart: a folder is known empty only once listed)
    empty_folders: list[Found] = field(default_factory=list)
    #: (path, why) of sockets, FIFOs and devices, which are never stored
    skipped: list[tuple[bytes, str]] = field(default_factory=list)
    #: (path, error) of files and folders that could not be read
    unreadable: list[tuple[bytes, str]] = field(default_factory=list)
    #: paths asked for by name that the ignore rules exclude
    ignored: list[bytes] = field(default_factory=list)
    #: paths asked for by name that do not exist
    missing: list[bytes] = field(default_factory=list)
    #: with list_ignored: what the rules hide (a hidden folder once, with a "/")
    hidden: list[bytes] = field(default_factory=list)
    #: folder listings read and recorded (NO_LISTINGS: none)
    listings: "ListingCache" = field(default_factory=lambda: NO_LISTINGS)


def mode_of(st: os.stat_result) -> str | None:
    if stat.S_ISREG(st.st_mode):
        return MODE_EXEC if st.st_mode & stat.S_IXUSR else MODE_FILE
    if stat.S_ISLNK(st.st_mode):
        return MODE_LINK
    if stat.S_ISDIR(st.st_mode):
        return MODE_TREE
    return None


def _kind_name(st: os.stat_result) -> str:
    if stat.S_ISFIFO(st.st_mode):
        return "FIFO"
    if stat.S_ISSOCK(st.st_mode):
        return "socket"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "device file"
    return "special file"


def relative_pathspecs(root: Path, paths: Iterable[str | os.PathLike], cwd: Path | None = None) -> list[bytes]:
    """User paths (relative to `cwd`) as '/'-separated paths relative to the
    workspace root; b"" is the whole workspace."""
    cwd = Path.cwd() if cwd is None else cwd
    root_b = os.fsencode(os.path.normpath(root))
    result = []
    for path in paths:
        absolute = os.path.normpath(os.path.join(os.fsencode(cwd), os.fsencode(path)))
        if absolute == root_b:
            result.append(b"")
        elif absolute.startswith(root_b.rstrip(b"/") + b"/"):
            result.append(absolute[len(root_b.rstrip(b"/")) + 1:])
        else:
            raise InvalidValueError(f"'{os.fsdecode(path)}' is outside the workspace {root}")
    return result


def under(path: bytes, prefixes: list[bytes]) -> bool:
    """Whether `path` is one of `prefixes` or lies below one (b"" is all)."""
    for prefix in prefixes:
        if not prefix or path == prefix or path.startswith(prefix + b"/"):
            return True
    return False


def scan(root: Path, prefixes: list[bytes], rules, *, list_ignored: bool = False,
         listings: "ListingCache | None" = None,
         root_keys: tuple[bytes | None, bytes | None] = (None, None)) -> Scan:
    """Everything under the given paths that the ignore rules keep (and,
    with `list_ignored`, what they hide, in Scan.hidden). The walk happens
    as Scan.found is consumed; it reads an unchanged folder's names from
    `listings` instead of listing it, and records the folders it lists.
    A walk of the whole workspace may be limited to the root folder's keys
    from root_keys[0] (included) to root_keys[1] (excluded; None: no bound):
    a name, with "/" after a folder's."""
    result = Scan()
    if listings is not None:
        result.listings = listings
        listings.whole_walk = b"" in prefixes
    root_b = os.fsencode(root)
    starts: list[tuple[bytes, bytes, os.stat_result | None]] = []  # (sort key, path, lstat of a file)
    for prefix in sorted(set(prefixes)):
        if any(p != prefix and under(prefix, [p]) for p in prefixes):
            continue  # covered by a shorter prefix
        if not prefix:
            starts.append((b"", b"", None))
            continue
        if _ignored_on_the_way(rules, prefix):
            result.ignored.append(prefix)
            continue
        try:
            st = os.lstat(os.path.join(root_b, prefix))
        except FileNotFoundError:
            result.missing.append(prefix)  # a deletion, if the index has it
            continue
        except OSError as exc:
            result.unreadable.append((prefix, exc.strerror or str(exc)))
            continue
        if stat.S_ISDIR(st.st_mode):
            starts.append((prefix + b"/", prefix, None))  # where its files sort
        else:
            starts.append((prefix, prefix, st))
    starts.sort()
    if len(starts) == 1 and starts[0][2] is None:
        result.found = _walk(root_b, starts[0][1], rules, result, list_ignored, root_keys)
    else:
        result.found = _found_under(root_b, starts, rules, result, list_ignored)
    return result


def _found_under(root_b: bytes, starts, rules, result: Scan, list_ignored: bool):
    for _, path, st in starts:
        if st is None:
            yield from _walk(root_b, path, rules, result, list_ignored)
            continue
        mode = _mode_or_skip(result, path, st)
        if mode is not None:
            yield path, mode, st


def _ignored_on_the_way(rules, path: bytes) -> bool:
    parts = path.split(b"/")
    for depth in range(1, len(parts) + 1):
        sub = b"/".join(parts[:depth])
        is_dir = depth < len(parts) or os.path.isdir(os.path.join(os.fsencode(rules.root), sub))
        if rules.is_ignored(sub, is_dir):
            return True
    return False


def _mode_or_skip(result: Scan, path: bytes, st: os.stat_result) -> str | None:
    """The mode to store `st` as; None for a folder (walked, not stored) and
    for special files (listed in result.skipped)."""
    st_mode = st.st_mode
    if stat.S_ISREG(st_mode):  # the common case first: once per file of every scan
        return MODE_EXEC if st_mode & stat.S_IXUSR else MODE_FILE
    mode = mode_of(st)
    if mode is None:
        result.skipped.append((path, _kind_name(st)))
        return None
    return None if mode == MODE_TREE else mode


_SLASH = ord("/")


def _walk(root_b: bytes, folder: bytes, rules, result: Scan, list_ignored: bool = False,
          keys: tuple[bytes | None, bytes | None] = (None, None)
          ) -> Iterator[tuple[bytes, str, os.stat_result]]:
    """(path, mode, lstat result) of each file and link below `folder`, in
    path-byte order: each listing is sorted with a folder's name as
    "name/", which is where the paths below it sort. `keys` bounds the
    keys taken from `folder` itself (see scan)."""
    # The hot loop of every add, status and commit.
    S_ISREG, S_IXUSR = stat.S_ISREG, stat.S_IXUSR
    top = _listing(root_b, folder, rules, result, list_ignored)
    low, high = keys
    if low is not None or high is not None:
        top = [(key, st) for key, st in top
               if (low is None or key >= low) and (high is None or key < high)]
    stack = [(iter(top), folder + b"/" if folder else b"")]
    while stack:
        entries, prefix = stack[-1]
        for key, st in entries:
            if st is None:  # a folder ("name/"): walk it now, then come back
                path = prefix + key[:-1]
                stack.append((iter(_listing(root_b, path, rules, result, list_ignored)), prefix + key))
                break
            path = prefix + key
            st_mode = st.st_mode
            if S_ISREG(st_mode):
                yield path, MODE_EXEC if st_mode & S_IXUSR else MODE_FILE, st
            else:
                mode = _mode_or_skip(result, path, st)
                if mode is not None:
                    yield path, mode, st
        else:
            stack.pop()


def _listing(root_b: bytes, current: bytes, rules, result: Scan, list_ignored: bool
             ) -> list[tuple[bytes, os.stat_result | None]]:
    """A folder's entries the rules keep, sorted by key: the name, with
    "/" after a folder's; with the lstat result of each file and link
    (None for a folder)."""
    full = os.path.join(root_b, current) if current else root_b
    try:  # lstat by name in the open folder: no path resolved again per file
        folder_fd = os.open(full, _FOLDER_FLAGS)
    except OSError:
        folder_fd = None
    try:
        kept = _kept_keys(full, current, folder_fd, rules, result, list_ignored)
        prefix = current + b"/" if current else b""
        stats = []
        for key in kept:
            if key[-1] == _SLASH:
                stats.append((key, None))
                continue
            try:
                st = os.lstat(key, dir_fd=folder_fd) if folder_fd is not None else \
                    os.lstat(os.path.join(full, key))
            except FileNotFoundError:
                continue
            except OSError as exc:
                result.unreadable.append((prefix + key, exc.strerror or str(exc)))
                continue
            stats.append((key, st))
        return stats
    finally:
        if folder_fd is not None:
            os.close(folder_fd)


_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def _kept_keys(full: bytes, current: bytes, folder_fd: int | None, rules, result: Scan,
               list_ignored: bool) -> list[bytes]:
    """_listing's keys, before their lstat: the folder's names from the
    listing cache when it vouches for them, else from the folder."""
    listings = result.listings
    keys = folder_st = None
    if folder_fd is not None and listings.active:
        try:
            folder_st = os.fstat(folder_fd)  # before the listing: a change after it shows next time
            keys = listings.lookup(current, folder_st)
        except OSError:
            pass
    if keys is None:
        keys = _listed_keys(full, current, result)
        if keys is not None and folder_st is not None:
            listings.record(current, folder_st, keys)
    if keys is None:
        return []
    if current and not keys:
        try:
            result.empty_folders.append(Found(current, MODE_TREE, StatKey.of(os.lstat(full))))
        except OSError:
            pass
        return []
    if _RULE_FILE not in keys:
        rules.has_no_rule_file(current)
    if rules.only_always_excluded(current):
        # The common case, at C speed: no rule applies here.
        if ALWAYS_EXCLUDED_KEYS.isdisjoint(keys):
            return keys
        return [key for key in keys if key not in ALWAYS_EXCLUDED_KEYS]
    prefix = current + b"/" if current else b""
    is_ignored = rules.is_ignored
    kept = []
    for key in keys:
        is_dir = key[-1] == _SLASH
        name = key[:-1] if is_dir else key
        if is_ignored(prefix + name, is_dir):
            if list_ignored and name not in ALWAYS_EXCLUDED:
                result.hidden.append(prefix + key)
            continue
        kept.append(key)
    return kept


#: ALWAYS_EXCLUDED as keys: a folder's name with its "/"
ALWAYS_EXCLUDED_KEYS = frozenset({*ALWAYS_EXCLUDED, *(name + b"/" for name in ALWAYS_EXCLUDED)})


def _listed_keys(full: bytes, current: bytes, result: Scan) -> list[bytes] | None:
    """The folder's names as sorted keys ("name/" for a folder), as listed
    now; None (and an entry in result.unreadable) when it cannot be."""
    try:
        with os.scandir(full) as entries:
            listing = list(entries)
    except OSError as exc:
        result.unreadable.append((current, exc.strerror or str(exc)))
        return None
    try:
        keys = [entry.name + b"/" if entry.is_dir(follow_symlinks=False) else entry.name
                for entry in listing]
    except OSError:  # is_dir had to lstat a name that went away: the careful loop
        keys = []
        for entry in listing:
            try:
                keys.append(entry.name + b"/" if entry.is_dir(follow_symlinks=False) else entry.name)
            except OSError:
                keys.append(entry.name)
    keys.sort()
    return keys


class ListingCache:
    """Folder listings recorded by earlier walks, so that a folder that did
    not change is not listed again (git's untracked cache, before any
    ignore rule: "The listing cache" in FORMAT.md). A cache: when it is
    missing, damaged or written by another version, every folder is listed.

    A folder's names are trusted only when its mtime, ctime and inode are
    those seen just before it was listed, and both times lie strictly
    before the cache file was written and RACY_NS before the walk that
    listed it began (a folder changed within one timestamp tick of its
    listing could keep its stat; such a folder is listed every time until
    it settles). Any entry created, removed or renamed in a folder changes
    the folder's mtime and ctime."""

    active = True

    def __init__(self, path: Path | None = None):
        self.path = path
        #: folder -> ((mtime, ctime, inode), its keys each followed by a NUL):
        #: one bytes object a folder, not one a name (a first snapshot of
        #: 200,000 files records them all)
        self._folders: dict[bytes, tuple[tuple[int, int, int], bytes]] = {}
        self._written_ns = -(1 << 63)  # nothing read: nothing trusted
        #: a walk began: folders that may have changed since RACY_NS before it are not recorded
        self.walk_began_ns = time.time_ns()
        self.whole_walk = False  # the walk covered every folder: unvisited ones are gone
        self._visited: set[bytes] = set()
        self._changed = False
        #: what this walk recorded: folder -> its entry, or None (dropped)
        self._learned: dict[bytes, tuple[tuple[int, int, int], bytes] | None] = {}

    @classmethod
    def load(cls, path: Path) -> "ListingCache":
        cache = cls(path)
        try:
            fd = open_state(path, os.O_RDONLY)
        except (OSError, CorruptStoreError):  # absent, or a symlink or FIFO in its place: no cache
            return cache
        try:
            st = os.fstat(fd)
            if st.st_size > _LISTINGS_MAX_BYTES:
                return cache
            with open(fd, "rb", closefd=False) as fh:
                data = fh.read()
        except OSError:
            return cache
        finally:
            os.close(fd)
        folders = _decode_listings(data)
        if folders is not None:
            cache._folders, cache._written_ns = folders, st.st_mtime_ns
        return cache

    def lookup(self, folder: bytes, st: os.stat_result) -> list[bytes] | None:
        """The keys recorded for `folder` if its stat `st` vouches for them."""
        self._visited.add(folder)
        known = self._folders.get(folder)
        if known is None:
            return None
        (mtime, ctime, ino), keys = known
        written = self._written_ns
        if (st.st_mtime_ns, st.st_ctime_ns, st.st_ino) == (mtime, ctime, ino) \
                and mtime < written and ctime < written:
            names = keys[:-1].split(b"\0") if keys else []
            # the walk sweeps them alongside the index in one pass: a key out
            # of order (or twice) in a hostile file would make a file look deleted
            if all(map(bytes.__lt__, names, names[1:])):
                return names
        return None

    def record(self, folder: bytes, st: os.stat_result, keys: list[bytes]) -> None:
        """Remember the keys just listed for `folder`, whose stat `st` was
        taken before the listing; not if it changed too recently."""
        self._visited.add(folder)
        if not settled_before(max(st.st_mtime_ns, st.st_ctime_ns), self.walk_began_ns):
            self._learn(folder, None)
            return
        self._learn(folder, ((st.st_mtime_ns, st.st_ctime_ns, st.st_ino),
                             b"\0".join(keys) + b"\0" if keys else b""))

    def _learn(self, folder: bytes, entry: tuple[tuple[int, int, int], bytes] | None) -> None:
        if entry is None:
            if self._folders.pop(folder, None) is None:
                return
        else:
            self._folders[folder] = entry
        self._learned[folder] = entry
        self._changed = True

    def learned(self) -> tuple[set[bytes], dict]:
        """What this walk saw and recorded, for another process's cache."""
        return self._visited, self._learned

    def merge(self, learned: tuple[set[bytes], dict]) -> None:
        """Take in what learned() gave in another process."""
        visited, recorded = learned
        self._visited |= visited
        for folder, entry in recorded.items():
            self._learn(folder, entry)

    def save(self) -> None:
        """Write the cache if the walk learned something (quietly not, when
        the folder cannot be written: it is only a cache)."""
        if self.path is None:
            return
        if self.whole_walk:
            gone = self._folders.keys() - self._visited
            for folder in gone:
                del self._folders[folder]
            self._changed = self._changed or bool(gone)
        if not self._changed:
            return
        try:
            atomic_write(self.path, _encode_listings(self._folders), durable=False)
        except OSError:
            return
        self._changed = False


class _NoListings(ListingCache):
    active = False

    def save(self) -> None:
        pass


NO_LISTINGS = _NoListings()

#: the cache's file in the workspace's dot folder
LISTINGS_FILE = "listings"
LISTINGS_HEADER = b"rnlistings 1\n"
#: folders, then the byte lengths of the folder paths and of the names
_LISTING_COUNTS = struct.Struct("<IQQ")
_LISTINGS_MAX_BYTES = 1 << 30


def _encode_listings(folders: dict[bytes, tuple[tuple[int, int, int], bytes]]) -> Iterator[bytes]:
    """The file's bytes in chunks, the checksum last (FORMAT.md)."""
    order = sorted(folders)
    stats = array("q")
    inos, lengths = array("Q"), array("Q")
    for folder in order:
        (mtime, ctime, ino), keys = folders[folder]
        stats.extend((mtime, ctime))
        inos.append(ino)
        lengths.append(len(keys))
    paths = b"".join(folder + b"\0" for folder in order)
    names = b"".join(folders[folder][1] for folder in order)
    columns = []
    for column in (stats, inos, lengths):
        if sys.byteorder != "little":
            column.byteswap()
        columns.append(column.tobytes())
    digest = hashlib.sha256()
    for chunk in (LISTINGS_HEADER + _LISTING_COUNTS.pack(len(order), len(paths), len(names)),
                  *columns, paths, names):
        digest.update(chunk)
        yield chunk
    yield digest.digest()


def _valid_keys(area: bytes) -> bool:
    """Whether every NUL-terminated key in `area` is a valid tree entry
    name, with a "/" after it or not (searches at C speed): a key such as
    "../x" would send the walk out of its folder."""
    framed = b"\0" + area
    return (area[-1:] in (b"", b"\0") and b"\0\0" not in framed and b"\0/" not in framed
            and area.count(b"/") == area.count(b"/\0")
            and not any(bad in framed for bad in (b"\0.\0", b"\0..\0", b"\0./\0", b"\0../\0")))


def _decode_listings(data: bytes) -> dict[bytes, tuple[tuple[int, int, int], bytes]] | None:
    """The listings in `data`, or None when it is not a whole, valid file."""
    head = len(LISTINGS_HEADER) + _LISTING_COUNTS.size
    if not data.startswith(LISTINGS_HEADER) or len(data) < head + 32:
        return None
    count, paths_size, names_size = _LISTING_COUNTS.unpack_from(data, len(LISTINGS_HEADER))
    if len(data) != head + 32 * count + paths_size + names_size + 32:
        return None
    if hashlib.sha256(memoryview(data)[:-32]).digest() != data[-32:]:
        return None
    at = head
    stats, inos, lengths = array("q"), array("Q"), array("Q")
    for column, size in ((stats, 16 * count), (inos, 8 * count), (lengths, 8 * count)):
        column.frombytes(data[at:at + size])
        if sys.byteorder != "little":
            column.byteswap()
        at += size
    area = data[at + paths_size:at + paths_size + names_size]
    if not _valid_keys(area):
        return None
    paths = data[at:at + paths_size].split(b"\0")
    if paths.pop() != b"" or len(paths) != count or sum(lengths) != names_size:
        return None
    folders = {}
    start = 0
    for k, folder in enumerate(paths):
        end = start + lengths[k]
        if end > start and area[end - 1] != 0:  # a folder's keys end where a key does
            return None
        folders[folder] = ((stats[2 * k], stats[2 * k + 1], inos[k]), area[start:end])
        start = end
    return folders


_RULE_FILE = os.fsencode(IGNORE_FILE)


class Stored(NamedTuple):  # a tuple: one is made per file stored or hashed
    path: bytes
    mode: str
    id: str
    size: int
    stat: StatKey | None


def store_entry(store: ObjectStore, root: Path | bytes, found: Found) -> Stored:
    """Store one found file or link as a blob. A file that changes while it
    is read is read again, so the stored bytes always match the id; a file
    replaced by another kind of entry meanwhile is read as what it is now."""
    full = os.path.join(os.fsencode(root), found.path)
    if found.mode == MODE_LINK:
        target = os.readlink(full)
        st = os.lstat(full)
        oid = store.put("blob", target)
        return Stored(found.path, MODE_LINK, oid, len(target), stat_key_if_settled(st))
    if found.mode == MODE_TREE:
        return Stored(found.path, MODE_TREE, EMPTY_TREE_ID, 0, None)
    oid, st = store.put_regular_file(full, follow_symlinks=False)
    mode = MODE_EXEC if st.st_mode & stat.S_IXUSR else MODE_FILE
    key = stat_key_if_settled(st, time.time_ns())
    if key == found.stat:
        key = found.stat  # the scan's tuple, not a copy: the index keeps one per file
    return Stored(found.path, mode, oid, st.st_size, key)


def hash_entry(root: Path, found: Found) -> Stored:
    """Like store_entry, but only hashes: nothing is written."""
    full = os.path.join(os.fsencode(root), found.path)
    if found.mode == MODE_LINK:
        target = os.readlink(full)
        return Stored(found.path, MODE_LINK, hash_bytes(target), len(target), None)
    if found.mode == MODE_TREE:
        return Stored(found.path, MODE_TREE, EMPTY_TREE_ID, 0, None)
    fd, before = open_regular_stat(full, follow=False)  # a FIFO swapped in since the scan is refused
    with os.fdopen(fd, "rb") as fh:
        oid = hash_stream(fh)
        after = os.fstat(fd)
    key = None
    if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
        key = stat_key_if_settled(before, time.time_ns())
    mode = MODE_EXEC if before.st_mode & stat.S_IXUSR else MODE_FILE
    return Stored(found.path, mode, oid, before.st_size, key)


WORKERS = min(4, os.cpu_count() or 1)


def parallel_map(function, items: list, workers: int = WORKERS):
    """`function` over `items` on a thread pool (hashing, compression and file
    I/O release the GIL), results in order. Yields (item, result, error)."""

    def attempt(item):
        try:
            return item, function(item), None
        except OSError as exc:
            return item, None, exc

    def run(some: list) -> list:
        return [attempt(item) for item in some]

    if workers <= 1 or len(items) < 2:
        for item in items:
            yield attempt(item)
        return

    # Items go to the workers in runs: a future per file costs as much as
    # hashing a small one. Runs stay short enough to spread a short list.
    size = max(1, min(32, len(items) // (workers * 8)))
    pending: deque = deque()
    # imported here: a status with nothing to hash loads no thread pool (nor logging)
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for start in range(0, len(items), size):
            pending.append(pool.submit(run, items[start:start + size]))
            if len(pending) >= workers * 4:  # a bounded window keeps memory flat
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
