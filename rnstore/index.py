"""The staging area and its stat cache.

Each entry maps a path to (mode, id, size) and the stat fields seen when the
file was hashed: size, mtime_ns, ctime_ns and inode. A file whose stat still
matches is not read again.

The racy-git rule, twice over: an entry is trusted only if the file was last
changed strictly before the index file was written (a change in the same
timestamp tick as the write could leave the stat as it was); and `add`
records a file modified within RACY_NS of the moment it hashed it without
stat fields ("smudged"), since it could change again within that tick after
being read. Checkout, which writes the files itself, records their stat.

The file (`<dotdir>/index`, "The index" in FORMAT.md) holds the entries as
columns of fixed-size fields, sorted by path, and so does memory: a few
arrays for the whole index instead of several objects per entry (an index
of 200,000 entries loads in milliseconds and takes tens of megabytes, not
hundreds). Changes made in memory wait in a small overlay until the next
write or sweep folds them in. Versions 1 and 2 (text) are still read. The
file is replaced atomically under the workspace lock.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import struct
import sys
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple

from .errors import CorruptStoreError
from .fsutil import RACY_NS, atomic_write, open_state, settled_before  # noqa: F401 (RACY_NS: the stat cache's rule, named here)
from .objects import MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, MODES_BY_BYTES, is_object_id
from .trees import all_safe_paths, build_sorted_tree, is_safe_path

HEADER = b"rnindex 3\n"
#: read, never written: the text formats, with folder lines (2) and without (1)
HEADER_V2 = b"rnindex 2\n"
HEADER_V1 = b"rnindex 1\n"
_FOLDER = b"tree"
#: entries, folders, then the byte lengths of the two path areas
_COUNTS = struct.Struct("<IIQQ")
_ID = 32  # bytes of a raw SHA-256
_CHECKSUM = 32
#: the mode byte: a code per mode, plus _SMUDGED when the stat fields are void
_CODES = {MODE_FILE: 1, MODE_EXEC: 2, MODE_LINK: 3, MODE_TREE: 4}
_MODE_OF_CODE = (None, MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE)
_SMUDGED = 0x80
_MODE_BYTES = bytes([*_CODES.values(), *(code | _SMUDGED for code in _CODES.values())])
_TREE_CODES = (_CODES[MODE_TREE], _CODES[MODE_TREE] | _SMUDGED)
_LITTLE = sys.byteorder == "little"
_PATHS_PER_CHUNK = 4096


class StatKey(NamedTuple):
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> "StatKey":
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class Found(NamedTuple):
    """One entry found by a scan: a file, a symlink or an empty folder."""
    path: bytes            # relative, '/'-separated
    mode: str
    stat: StatKey          # not the os.stat_result: a scan may hold one per file

    @property
    def size(self) -> int:
        return 0 if self.mode == MODE_TREE else self.stat.size


class FoundList:
    """Found entries held as columns (a path, a mode and four integers
    each): the first snapshot of 200,000 files holds them all at once."""
    __slots__ = ("paths", "modes", "times", "sizes", "inos")

    def __init__(self) -> None:
        self.paths: list[bytes] = []
        self.modes: list[str] = []  # the four mode strings, shared
        self.sizes, self.inos = array("Q"), array("Q")
        self.times = array("q")  # mtime and ctime

    def append(self, path: bytes, mode: str, key: StatKey) -> None:
        self.paths.append(path)
        self.modes.append(mode)
        self.sizes.append(key[0])
        self.times.extend(key[1:3])
        self.inos.append(key[3])

    def extend(self, other: "FoundList") -> None:
        self.paths += other.paths
        self.modes += other.modes
        self.sizes += other.sizes
        self.times += other.times
        self.inos += other.inos

    def __len__(self) -> int:
        return len(self.paths)

    def sort(self) -> None:
        """In path order (a no-op, bar one pass, when already so)."""
        paths = self.paths
        if all(map(bytes.__lt__, paths, paths[1:])):
            return
        order = sorted(range(len(paths)), key=paths.__getitem__)
        self.paths = [paths[k] for k in order]
        self.modes = [self.modes[k] for k in order]
        self.sizes = array("Q", (self.sizes[k] for k in order))
        self.inos = array("Q", (self.inos[k] for k in order))
        self.times = array("q", (t for k in order for t in self.times[2 * k:2 * k + 2]))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self.paths)))]
        return Found(self.paths[i], self.modes[i],
                     StatKey(self.sizes[i], self.times[2 * i], self.times[2 * i + 1], self.inos[i]))

    def __iter__(self) -> Iterator[Found]:
        for i in range(len(self.paths)):
            yield self[i]


class IndexEntry(NamedTuple):
    path: bytes
    mode: str
    id: str
    size: int
    stat: StatKey | None = None


def stat_key_if_settled(st: os.stat_result, hashed_at_ns: int | None = None) -> StatKey | None:
    """The stat key to cache for a file hashed at `hashed_at_ns`, or None when
    the file changed too recently to trust its timestamps (racy git)."""
    now = time.time_ns() if hashed_at_ns is None else hashed_at_ns
    if not settled_before(max(st.st_mtime_ns, st.st_ctime_ns), now):
        return None
    return StatKey.of(st)


class _Columns:
    """Entries as parallel columns: the paths, a mode byte each, 32 raw id
    bytes each, and four integer arrays (the stat fields are 0 when
    smudged). Appending and slicing stay in C."""
    __slots__ = ("paths", "modes", "ids", "sizes", "mtimes", "ctimes", "inos")

    def __init__(self) -> None:
        self.paths: list[bytes] = []
        self.modes = bytearray()
        self.ids = bytearray()
        self.sizes, self.inos = array("Q"), array("Q")
        self.mtimes, self.ctimes = array("q"), array("q")

    def __len__(self) -> int:
        return len(self.paths)

    def entry(self, i: int) -> IndexEntry:
        code, size = self.modes[i], self.sizes[i]
        stat = None if code & _SMUDGED else StatKey(size, self.mtimes[i], self.ctimes[i], self.inos[i])
        return IndexEntry(self.paths[i], _MODE_OF_CODE[code & ~_SMUDGED],
                          self.ids[_ID * i:_ID * i + _ID].hex(), size, stat)

    def append(self, entry: IndexEntry) -> None:
        code = _CODES[entry.mode]
        self.paths.append(entry.path)
        self.ids += bytes.fromhex(entry.id)
        self.sizes.append(entry.size)
        stat = entry.stat
        if stat is None:
            self.modes.append(code | _SMUDGED)
            self.mtimes.append(0), self.ctimes.append(0), self.inos.append(0)
        else:
            self.modes.append(code)
            self.mtimes.append(stat.mtime_ns), self.ctimes.append(stat.ctime_ns)
            self.inos.append(stat.ino)

    def copy_from(self, other: "_Columns", start: int, stop: int) -> None:
        """Append `other`'s entries start..stop-1."""
        if start >= stop:
            return
        self.paths += other.paths[start:stop]
        self.modes += other.modes[start:stop]
        self.ids += other.ids[_ID * start:_ID * stop]
        for name in ("sizes", "mtimes", "ctimes", "inos"):
            getattr(self, name).extend(getattr(other, name)[start:stop])

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The columns as the file lays them out (little-endian)."""
        yield bytes(self.modes)
        yield bytes(self.ids)
        for column in (self.sizes, self.mtimes, self.ctimes, self.inos):
            if not _LITTLE:
                column = array(column.typecode, column)
                column.byteswap()
            yield memoryview(column).cast("B")


@dataclass
class Sweep:
    """A walk of the workspace against the index (see Index.sweep)."""
    #: found files whose entry is there but cannot vouch for them
    changed: FoundList = field(default_factory=FoundList)
    #: found files the index does not hold
    untracked: FoundList = field(default_factory=FoundList)
    #: paths of entries the walk did not see, within its reach
    gone: list[bytes] = field(default_factory=list)
    #: entries the walk saw unchanged, and those out of its reach: how many
    #: files (empty folders left out) and their bytes
    kept_files: int = 0
    kept_bytes: int = 0
    unchanged: int = 0


class _EntriesView(Mapping):
    """The index as a read-only mapping path -> IndexEntry, built on demand."""

    def __init__(self, index: "Index"):
        self._index = index

    def __getitem__(self, path: bytes) -> IndexEntry:
        entry = self._index.get(path)
        if entry is None:
            raise KeyError(path)
        return entry

    def get(self, path, default=None):
        entry = self._index.get(path)
        return default if entry is None else entry

    def __contains__(self, path) -> bool:
        return self._index.get(path) is not None

    def __iter__(self) -> Iterator[bytes]:
        return (e.path for e in self._index)

    def __len__(self) -> int:
        return len(self._index)

    def values(self):  # type: ignore[override]
        return iter(self._index)

    def items(self):  # type: ignore[override]
        return ((e.path, e) for e in self._index)


class Index:
    def __init__(self, entries: Iterable[IndexEntry] = (), written_ns: int | None = None,
                 trees: dict[bytes, tuple[str, int]] | None = None):
        self._base = _Columns()
        for entry in sorted({e.path: e for e in entries}.values()):
            self._base.append(entry)
        #: changes since the columns were built: path -> row of _added, or -1 (removed)
        self._changes: dict[bytes, int] = {}
        self._added = _Columns()
        self._length = len(self._base)
        #: the mtime of the index file this was read from (None: never written)
        self.written_ns = written_ns
        #: folder path (b"" the root) -> (tree id, total size) that the
        #: entries below it encode to; only folders nothing changed in since
        self.trees: dict[bytes, tuple[str, int]] = dict(trees or {})
        #: read from an older version of the file: worth writing anew
        self.outdated = False

    @classmethod
    def _of_columns(cls, columns: _Columns, trees: dict[bytes, tuple[str, int]]) -> "Index":
        index = cls(trees=trees)
        index._base, index._length = columns, len(columns)
        return index

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[IndexEntry]:
        self._fold()
        base = self._base
        for i in range(len(base)):
            yield base.entry(i)

    def file_ids(self) -> list[str]:
        """The ids of every entry but empty folders', in order, without
        making an IndexEntry each (du and gc mark them: the index is a root)."""
        self._fold()
        base = self._base
        hexed = base.ids.hex()
        ids = [hexed[at:at + 2 * _ID] for at in range(0, len(hexed), 2 * _ID)]
        if any(code in base.modes for code in _TREE_CODES):
            ids = [oid for oid, code in zip(ids, base.modes) if code not in _TREE_CODES]
        return ids

    @property
    def entries(self) -> Mapping[bytes, IndexEntry]:
        """The entries by path (read-only: change them with set and remove)."""
        return _EntriesView(self)

    def _base_row(self, path: bytes) -> int:
        paths = self._base.paths
        i = bisect.bisect_left(paths, path)
        return i if i < len(paths) and paths[i] == path else -1

    def get(self, path: bytes) -> IndexEntry | None:
        row = self._changes.get(path)
        if row is not None:
            return self._added.entry(row) if row >= 0 else None
        row = self._base_row(path)
        return self._base.entry(row) if row >= 0 else None

    def holds(self, path: bytes) -> bool:
        """Whether an entry is at `path` or below it."""
        self._fold()
        paths = self._base.paths
        for key in (path, path + b"/"):  # "a/b" sorts after "a.txt"
            i = bisect.bisect_left(paths, key)
            if i < len(paths) and (paths[i] == path or paths[i].startswith(path + b"/")):
                return True
        return False

    def set(self, entry: IndexEntry) -> IndexEntry | None:
        """Add or replace the entry at entry.path; the one it replaced."""
        before = self.get(entry.path)
        if before is None:
            self._length += 1
        if before is None or before[1:4] != entry[1:4]:  # (mode, id, size); not the stat
            self._forget_trees_above(entry.path)
        self._changes[entry.path] = len(self._added)
        self._added.append(entry)
        return before

    def update_sorted(self, entries: Iterable[IndexEntry]) -> None:
        """set() for many entries given in path order (as a sweep finds
        them), merged in one pass: no overlay entry per file, which counts
        when a first snapshot stages 200,000."""
        self._fold()
        base, rows = self._base, _Columns()
        for entry in entries:
            row = self._base_row(entry.path)
            if row < 0:
                self._length += 1
            if row < 0 or base.entry(row)[1:4] != entry[1:4]:  # (mode, id, size); not the stat
                self._forget_trees_above(entry.path)
            rows.append(entry)
        paths = rows.paths
        if not all(map(bytes.__lt__, paths, paths[1:])):  # not in order after all: one by one
            self._length -= sum(1 for path in paths if self._base_row(path) < 0)
            for i in range(len(rows)):
                self.set(rows.entry(i))
            return
        if not base:
            self._base = rows
            return
        merged, start = _Columns(), 0
        for k, path in enumerate(paths):
            i = bisect.bisect_left(base.paths, path, start)
            merged.copy_from(base, start, i)
            start = i + 1 if i < len(base) and base.paths[i] == path else i
            merged.copy_from(rows, k, k + 1)
        merged.copy_from(base, start, len(base))
        self._base = merged

    def remove(self, path: bytes) -> None:
        if self.get(path) is not None:
            self._changes[path] = -1
            self._length -= 1
            self._forget_trees_above(path)

    def _fold(self) -> None:
        """Merge the overlay of changes into the sorted columns."""
        if not self._changes:
            return
        base, added, merged = self._base, self._added, _Columns()
        start = 0
        for path, row in sorted(self._changes.items()):
            i = bisect.bisect_left(base.paths, path, start)
            merged.copy_from(base, start, i)
            start = i + 1 if i < len(base.paths) and base.paths[i] == path else i
            if row >= 0:
                merged.copy_from(added, row, row + 1)
        merged.copy_from(base, start, len(base))
        self._base, self._changes, self._added = merged, {}, _Columns()

    def drop_shadowed_folders(self) -> None:
        """An empty-folder entry goes once something is below it."""
        self._fold()
        base = self._base
        folders = [i for code in _TREE_CODES for i in _positions(base.modes, code)]
        for i in folders:
            folder = base.paths[i] + b"/"
            # the paths below `folder` sort right after `folder/`
            below = bisect.bisect_left(base.paths, folder)
            if below < len(base) and base.paths[below].startswith(folder):
                self.remove(base.paths[i])

    @property
    def tree_id(self) -> str | None:
        """The root tree id the entries encode to, when still known."""
        known = self.trees.get(b"")
        return known[0] if known else None

    def _forget_trees_above(self, path: bytes) -> None:
        trees = self.trees
        if not trees:
            return
        trees.pop(path, None)  # an empty folder's own entry
        while path:
            path = path.rpartition(b"/")[0]
            trees.pop(path, None)

    def lookup_fresh(self, path: bytes, key: StatKey) -> IndexEntry | None:
        """The entry if the stat cache says the file is unchanged: its stat
        matches `key`, and it was last changed strictly before the index
        file was written (git's racy rule: a change in the same timestamp
        tick as the index write could leave the stat as it was)."""
        entry = self.get(path)
        if entry is None:
            return None
        cached, written_ns = entry[4], self.written_ns  # entry.stat
        if cached != key or written_ns is None:  # (a smudged entry's stat is None)
            return None
        return entry if cached[1] < written_ns and cached[2] < written_ns else None

    def sweep(self, found: Iterable[tuple[bytes, str, os.stat_result]],
              in_reach: Callable[[bytes], bool] | None = None,
              rows: tuple[int, int] | None = None) -> Sweep:
        """Walk `found` (path, mode, lstat result) in path-byte order, as
        worktree.scan yields it, alongside the sorted entries: one pass,
        nothing kept per unchanged file. A file is unchanged when its entry
        has its mode and a stat cache that vouches for it (lookup_fresh's
        rule). Entries passed over are gone if `in_reach` (None: all are)
        says the walk covered them, and otherwise kept. `rows` (start,
        stop) limits the sweep to those entries, for a walk of the paths
        they hold (see halves)."""
        self._fold()
        result = Sweep()
        changed, untracked, gone = result.changed, result.untracked, result.gone
        base = self._base
        paths, modes, sizes = base.paths, base.modes, base.sizes
        mtimes, ctimes, inos = base.mtimes, base.ctimes, base.inos
        codes = _CODES
        first, count = (0, len(paths)) if rows is None else rows
        # no stat is trusted from an index never written (or written in the future)
        written = -(1 << 63) if self.written_ns is None else self.written_ns
        dropped: list[int] = []  # rows not kept: changed, or gone
        outside, i = 0, first
        # The hot loop of every status and commit -a: locals and plain
        # comparisons, the common case first; a no-op makes no object per file.
        for path, mode, st in found:
            if i >= count or paths[i] != path:
                while i < count and paths[i] < path:  # entries the walk did not see
                    if in_reach is None or in_reach(paths[i]):
                        gone.append(paths[i])
                        dropped.append(i)
                    else:
                        outside += 1
                    i += 1
                if i >= count or paths[i] != path:
                    untracked.append(path, mode, StatKey.of(st))
                    continue
            mtime, ctime = mtimes[i], ctimes[i]
            if not (modes[i] == codes[mode] and sizes[i] == st.st_size and mtime == st.st_mtime_ns
                    and ctime == st.st_ctime_ns and inos[i] == st.st_ino
                    and mtime < written and ctime < written):
                changed.append(path, mode, StatKey.of(st))
                dropped.append(i)
            i += 1
        for i in range(i, count):
            if in_reach is None or in_reach(paths[i]):
                gone.append(paths[i])
                dropped.append(i)
            else:
                outside += 1
        result.unchanged = count - first - outside - len(dropped)
        files, total = self.totals()
        for i in dropped:
            if modes[i] not in _TREE_CODES:
                files, total = files - 1, total - sizes[i]
        result.kept_files, result.kept_bytes = files, total
        return result

    def halves(self) -> tuple[bytes, int] | None:
        """Where to split a walk of the whole workspace in two of about as
        many entries: a key of the root folder (a name, with "/" after a
        folder's) and the first entry at or after it, which sort alike; None
        when one side would be empty."""
        self._fold()
        paths = self._base.paths
        if len(paths) < 2:
            return None
        top, slash, _ = paths[len(paths) // 2].partition(b"/")
        key = top + slash
        row = bisect.bisect_left(paths, key)
        return (key, row) if 0 < row < len(paths) else None

    def build_tree(self, store, *, base: str | None = None) -> str:
        """Store the trees for the entries (trees.build_sorted_tree, with
        `base`); the root tree id. The folder ids are brought up to date."""
        self._fold()
        base_columns = self._base
        modes, ids, sizes = base_columns.modes, base_columns.ids, base_columns.sizes

        def entry_at(i: int) -> tuple[str, str, int]:
            return _MODE_OF_CODE[modes[i] & ~_SMUDGED], ids[_ID * i:_ID * i + _ID].hex(), sizes[i]

        return build_sorted_tree(store, base_columns.paths, entry_at, base=base, known=self.trees)

    def totals(self) -> tuple[int, int]:
        """Files (empty folders left out) and their bytes."""
        self._fold()
        base = self._base
        folders = sum(base.modes.count(code) for code in _TREE_CODES)
        return len(base) - folders, sum(base.sizes)

    # -- file format ----------------------------------------------------------------

    def encode(self) -> bytes:
        return b"".join(bytes(chunk) for chunk in self._encoded_chunks())

    def _encoded_chunks(self) -> Iterator[bytes | memoryview]:
        """The file's bytes in chunks (the columns, the paths a few thousand
        at a time), with the checksum last: no copy of the whole file."""
        self._fold()
        base = self._base
        folders = sorted(self.trees)
        paths_size = sum(map(len, base.paths)) + len(base)
        folder_paths_size = sum(map(len, folders)) + len(folders)
        digest = hashlib.sha256()

        def pieces() -> Iterator[bytes | memoryview]:
            yield HEADER + _COUNTS.pack(len(base), len(folders), paths_size, folder_paths_size)
            yield from base.chunks()
            yield from _joined_paths(base.paths)
            yield b"".join(bytes.fromhex(self.trees[path][0]) for path in folders)
            sizes = array("Q", (self.trees[path][1] for path in folders))
            if not _LITTLE:
                sizes.byteswap()
            yield memoryview(sizes).cast("B")
            yield from _joined_paths(folders)

        for chunk in pieces():
            digest.update(chunk)
            yield chunk
        yield digest.digest()

    @classmethod
    def decode(cls, data: bytes, where: str = "index") -> "Index":
        import io
        return cls._read(io.BytesIO(data), len(data), where)

    @classmethod
    def _read(cls, fh: BinaryIO, size: int, where: str) -> "Index":
        def corrupt(why: str) -> CorruptStoreError:
            return CorruptStoreError(
                f"the index ({where}) is corrupt: {why}",
                hints=["`rnstore read-tree HEAD` rebuilds it from the last snapshot"])

        header = fh.read(len(HEADER))
        if header in (HEADER_V1, HEADER_V2):
            return _decode_text(header + fh.read(), corrupt)
        if header != HEADER:
            raise corrupt("bad header")
        digest = hashlib.sha256(header)

        def read(length: int) -> bytes:
            piece = fh.read(length)
            if len(piece) != length:
                raise corrupt("truncated")
            digest.update(piece)
            return piece

        count, folder_count, paths_size, folder_paths_size = _COUNTS.unpack(read(_COUNTS.size))
        expected = (len(HEADER) + _COUNTS.size + count * (1 + _ID + 32) + paths_size
                    + folder_count * (_ID + 8) + folder_paths_size + _CHECKSUM)
        if size != expected:  # checked before anything that big is read
            raise corrupt("checksum mismatch" if size > expected else "truncated")
        columns = _Columns()
        columns.modes = bytearray(read(count))
        columns.ids = bytearray(read(_ID * count))
        for column in (columns.sizes, columns.mtimes, columns.ctimes, columns.inos):
            column.frombytes(read(8 * count))
            if not _LITTLE:
                column.byteswap()
        paths_area = read(paths_size)
        folder_ids = read(_ID * folder_count)
        folder_sizes = array("Q")
        folder_sizes.frombytes(read(8 * folder_count))
        if not _LITTLE:
            folder_sizes.byteswap()
        folder_paths_area = read(folder_paths_size)
        if fh.read(_CHECKSUM + 1) != digest.digest():
            raise corrupt("checksum mismatch")
        if columns.modes.translate(None, _MODE_BYTES):
            raise corrupt("bad record: unknown mode")
        paths = _split_paths(paths_area, count)
        folders = _split_paths(folder_paths_area, folder_count)
        if paths is None or folders is None:
            raise corrupt("bad record: the path areas do not hold the counted paths")
        del paths_area, folder_paths_area
        # Paths follow the tree-name rules: one that escapes (../x, /x)
        # would make a checkout delete or write outside the workspace.
        for listed in (paths, [p for p in folders if p]):
            if not all_safe_paths(listed):
                bad = next(p for p in listed if not is_safe_path(p))
                raise corrupt(f"bad record: the path {bad[:80]!r} is not a valid relative path")
        # sorted, each once: a sweep walks them alongside the workspace
        if not all(map(bytes.__lt__, paths, paths[1:])):
            raise corrupt("bad record: the paths are not sorted, or one is there twice")
        columns.paths = paths
        trees = {path: (folder_ids[_ID * k:_ID * k + _ID].hex(), folder_sizes[k])
                 for k, path in enumerate(folders)}
        return cls._of_columns(columns, trees)

    @classmethod
    def load(cls, path: Path) -> "Index":
        try:
            fd = open_state(path, os.O_RDONLY)
        except FileNotFoundError:
            return cls()
        with open(fd, "rb") as fh:
            st = os.fstat(fd)
            index = cls._read(fh, st.st_size, str(path))
        index.written_ns = st.st_mtime_ns
        return index

    def write(self, path: Path, *, durable: bool = True) -> None:
        atomic_write(path, self._encoded_chunks(), durable=durable)


def _positions(data: bytes | bytearray, value: int) -> Iterator[int]:
    at = data.find(value)
    while at >= 0:
        yield at
        at = data.find(value, at + 1)


def _joined_paths(paths: list[bytes]) -> Iterator[bytes]:
    """Each path followed by a NUL, a few thousand paths a chunk."""
    for start in range(0, len(paths), _PATHS_PER_CHUNK):
        yield b"\0".join(paths[start:start + _PATHS_PER_CHUNK]) + b"\0"


def _split_paths(area: bytes, count: int) -> list[bytes] | None:
    """`count` NUL-terminated paths, or None when the area holds another
    number (or bytes after the last NUL)."""
    if not count:
        return [] if not area else None
    if area[-1:] != b"\0" or area.count(b"\0") != count:
        return None
    return area[:-1].split(b"\0")


def _decode_text(data: bytes, corrupt: Callable[[str], CorruptStoreError]) -> Index:
    """Versions 1 and 2: a text record per entry (see FORMAT.md)."""
    footer = data[-65:]
    if len(data) < len(HEADER) + 65 or footer[-1:] != b"\n" or \
            hashlib.sha256(memoryview(data)[:-65]).hexdigest().encode() != footer[:-1]:
        raise corrupt("checksum mismatch")
    entries = []
    trees: dict[bytes, tuple[str, int]] = {}
    # Split the whole file, not a copy of its body: the header leads the
    # first piece and the checksum is the last, which holds no NUL.
    records = data.split(b"\0")
    records[0] = records[0][len(HEADER):]
    if records[-1] != footer:
        raise corrupt("truncated record")
    folder_prefix = _FOLDER + b" " if data.startswith(HEADER_V2) else None  # v1: none
    try:
        for record in records[:-1]:
            if folder_prefix is not None and record.startswith(folder_prefix):
                _, oid, size, path = record.split(b" ", 3)
                if not is_object_id(oid.decode()) or int(size) < 0:
                    raise ValueError(record[:80])
                trees[path] = (oid.decode(), int(size))
                continue
            mode, oid, size_b, mtime, ctime, ino, path = record.split(b" ", 6)
            mode_s, oid_s = MODES_BY_BYTES.get(mode), oid.decode()
            if mode_s is None or not is_object_id(oid_s):
                raise ValueError(record[:80])
            size = int(size_b)
            if size < 0:
                raise ValueError(record[:80])
            stat = None
            if mtime != b"-":
                stat = StatKey(size, int(mtime), int(ctime), int(ino))
                if stat.ino < 0:
                    raise ValueError(record[:80])
            entries.append(IndexEntry(path, mode_s, oid_s, size, stat))
    except ValueError as exc:
        raise corrupt(f"bad record {exc}") from None
    paths = [e.path for e in entries] + [p for p in trees if p]
    if not all_safe_paths(paths):
        bad = next(p for p in paths if not is_safe_path(p))
        raise corrupt(f"bad record: the path {bad[:80]!r} is not a valid relative path")
    try:
        index = Index(entries, trees=trees)
    except OverflowError:  # a number too large for the columns
        raise corrupt("bad record: a number out of range") from None
    index.outdated = True
    return index
