"""Reading the workspace: walk it under the ignore rules, and turn what is
found into blobs. Names stay bytes end to end, so any POSIX name round-trips.
"""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

from .errors import InvalidValueError
from .fsutil import open_regular
from .ignore import ALWAYS_EXCLUDED, IGNORE_FILE
from .index import stat_key_if_settled, StatKey
from .objects import EMPTY_TREE_ID, MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, hash_bytes, hash_stream
from .store import ObjectStore


class Found(NamedTuple):
    """One entry found by a scan: a file, a symlink or an empty folder."""
    # A tuple, not a dataclass: a scan makes one per file.
    path: bytes            # relative, '/'-separated
    mode: str
    stat: StatKey          # not the os.stat_result: a scan holds one per file

    @property
    def size(self) -> int:
        return 0 if self.mode == MODE_TREE else self.stat.size


@dataclass
class Scan:
    found: list[Found] = field(default_factory=list)
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


def scan(root: Path, prefixes: list[bytes], rules, *, list_ignored: bool = False) -> Scan:
    """Everything under the given paths that the ignore rules keep (and,
    with `list_ignored`, what they hide, in Scan.hidden)."""
    result = Scan()
    root_b = os.fsencode(root)
    for prefix in sorted(set(prefixes)):
        if any(p != prefix and under(prefix, [p]) for p in prefixes):
            continue  # covered by a shorter prefix
        if prefix:
            if _ignored_on_the_way(rules, prefix):
                result.ignored.append(prefix)
                continue
            full = os.path.join(root_b, prefix)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                result.missing.append(prefix)  # a deletion, if the index has it
                continue
            except OSError as exc:
                result.unreadable.append((prefix, exc.strerror or str(exc)))
                continue
            if not stat.S_ISDIR(st.st_mode):
                _add_entry(result, prefix, st)
                continue
        _walk(root_b, prefix, rules, result, list_ignored)
    return result


def _ignored_on_the_way(rules, path: bytes) -> bool:
    parts = path.split(b"/")
    for depth in range(1, len(parts) + 1):
        sub = b"/".join(parts[:depth])
        is_dir = depth < len(parts) or os.path.isdir(os.path.join(os.fsencode(rules.root), sub))
        if rules.is_ignored(sub, is_dir):
            return True
    return False


def _add_entry(result: Scan, path: bytes, st: os.stat_result) -> None:
    st_mode = st.st_mode
    if stat.S_ISREG(st_mode):  # the common case first: once per file of every scan
        mode = MODE_EXEC if st_mode & stat.S_IXUSR else MODE_FILE
    else:
        mode = mode_of(st)
        if mode is None:
            result.skipped.append((path, _kind_name(st)))
            return
        if mode == MODE_TREE:
            return
    result.found.append(Found(path, mode, StatKey(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))


def _walk(root_b: bytes, folder: bytes, rules, result: Scan, list_ignored: bool = False) -> None:
    # The hot loop of every add, status and commit.
    is_ignored = rules.is_ignored
    rule_file = os.fsencode(IGNORE_FILE)
    stack = [folder]
    while stack:
        current = stack.pop()
        full = os.path.join(root_b, current) if current else root_b
        try:
            with os.scandir(full) as entries:
                listing = list(entries)
        except OSError as exc:
            result.unreadable.append((current, exc.strerror or str(exc)))
            continue
        if not any(entry.name == rule_file for entry in listing):
            rules.has_no_rule_file(current)
        prefix = current + b"/" if current else b""
        no_rules = rules.only_always_excluded(current)
        for entry in listing:
            name = entry.name
            if no_rules and name in ALWAYS_EXCLUDED:
                continue
            path = prefix + name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if not no_rules and is_ignored(path, is_dir):
                if list_ignored and name not in ALWAYS_EXCLUDED:
                    result.hidden.append(path + b"/" if is_dir else path)
                continue
            if is_dir:
                stack.append(path)
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                result.unreadable.append((path, exc.strerror or str(exc)))
                continue
            _add_entry(result, path, st)
        if current and not listing:
            try:
                result.found.append(Found(current, MODE_TREE, StatKey.of(os.lstat(full))))
            except OSError:
                pass


@dataclass(frozen=True)
class Stored:
    path: bytes
    mode: str
    id: str
    size: int
    stat: StatKey | None


def store_entry(store: ObjectStore, root: Path, found: Found) -> Stored:
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
    fd = open_regular(full, follow=False)  # a FIFO swapped in since the scan is refused
    with os.fdopen(fd, "rb") as fh:
        before = os.fstat(fd)
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
