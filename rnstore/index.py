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

File format (`<dotdir>/index`)::

    b"rnindex 1\\n" + record* + SHA256-HEX-OF-ALL-BEFORE + b"\\n"
    record = MODE SP ID SP SIZE SP MTIME SP CTIME SP INODE SP PATH NUL

records sorted by path; MTIME, CTIME and INODE are "-" when smudged. The
file is replaced atomically under the workspace lock.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import time
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from .errors import CorruptStoreError
from .fsutil import RACY_NS, atomic_write, open_state
from .objects import MODE_TREE, MODES_BY_BYTES, is_object_id
from .trees import all_safe_paths, is_safe_path

HEADER = b"rnindex 2\n"
#: read, never written: the same without folder lines
HEADER_V1 = b"rnindex 1\n"
_FOLDER = b"tree"
_RECORDS_PER_CHUNK = 1024  # about 150 KB: few writes, little memory


class StatKey(NamedTuple):
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> "StatKey":
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class IndexEntry(NamedTuple):
    # A tuple, not a dataclass: an index of 200,000 entries loads fast.
    path: bytes
    mode: str
    id: str
    size: int
    stat: StatKey | None = None


def stat_key_if_settled(st: os.stat_result, hashed_at_ns: int | None = None) -> StatKey | None:
    """The stat key to cache for a file hashed at `hashed_at_ns`, or None when
    the file changed too recently to trust its timestamps (racy git)."""
    now = time.time_ns() if hashed_at_ns is None else hashed_at_ns
    if max(st.st_mtime_ns, st.st_ctime_ns) >= now - RACY_NS:
        return None
    return StatKey.of(st)


class Index:
    def __init__(self, entries: Iterable[IndexEntry] = (), written_ns: int | None = None,
                 trees: dict[bytes, tuple[str, int]] | None = None):
        self.entries: dict[bytes, IndexEntry] = {e.path: e for e in entries}
        #: the mtime of the index file this was read from (None: never written)
        self.written_ns = written_ns
        #: folder path (b"" the root) -> (tree id, total size) that the
        #: entries below it encode to; only folders nothing changed in since
        self.trees: dict[bytes, tuple[str, int]] = dict(trees or {})

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[IndexEntry]:
        for path in sorted(self.entries):
            yield self.entries[path]

    def get(self, path: bytes) -> IndexEntry | None:
        return self.entries.get(path)

    def set(self, entry: IndexEntry) -> None:
        before = self.entries.get(entry.path)
        if before is None or before[1:4] != entry[1:4]:  # (mode, id, size); not the stat
            self._forget_trees_above(entry.path)
        self.entries[entry.path] = entry

    def remove(self, path: bytes) -> None:
        if self.entries.pop(path, None) is not None:
            self._forget_trees_above(path)

    def drop_shadowed_folders(self) -> None:
        """An empty-folder entry goes once something is below it."""
        folders = [path for path, e in self.entries.items() if e.mode == MODE_TREE]
        if not folders:
            return
        paths = sorted(self.entries)
        for folder in folders:
            # the paths below `folder` sort right after `folder/`
            position = bisect.bisect_right(paths, folder + b"/")
            if position < len(paths) and paths[position].startswith(folder + b"/"):
                self.remove(folder)

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
        # Once per file on every add, status and commit: indexes, not names.
        entry = self.entries.get(path)
        if entry is None:
            return None
        cached, written_ns = entry[4], self.written_ns  # entry.stat
        if cached != key or written_ns is None:  # (a smudged entry's stat is None)
            return None
        return entry if cached[1] < written_ns and cached[2] < written_ns else None

    # -- file format ----------------------------------------------------------------

    def encode(self) -> bytes:
        return b"".join(self._encoded_chunks())

    def _encoded_chunks(self) -> Iterator[bytes]:
        """The file's bytes in chunks of about a thousand records: `write`
        streams them, so neither a bytes object per entry nor the whole file
        is ever held at once (the index of a large tree is megabytes)."""
        digest = hashlib.sha256()
        records = self._records()
        while chunk := b"".join(itertools.islice(records, _RECORDS_PER_CHUNK)):
            digest.update(chunk)
            yield chunk
        yield digest.hexdigest().encode() + b"\n"

    def _records(self) -> Iterator[bytes]:
        yield HEADER
        for e in self:
            if e.stat is None:
                stat = b"- - -"
            else:
                stat = b"%d %d %d" % (e.stat.mtime_ns, e.stat.ctime_ns, e.stat.ino)
            yield b"%s %s %d %s %s\0" % (e.mode.encode(), e.id.encode(), e.size, stat, e.path)
        for path in sorted(self.trees):
            tree_id, size = self.trees[path]
            yield b"%s %s %d %s\0" % (_FOLDER, tree_id.encode(), size, path)

    @classmethod
    def decode(cls, data: bytes, where: str = "index") -> "Index":
        def corrupt(why: str) -> CorruptStoreError:
            return CorruptStoreError(
                f"the index ({where}) is corrupt: {why}",
                hints=["`rnstore read-tree HEAD` rebuilds it from the last snapshot"])

        if not data.startswith((HEADER, HEADER_V1)):
            raise corrupt("bad header")
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
        folder_prefix = _FOLDER + b" " if data.startswith(HEADER) else None  # v1: none
        try:
            for record in records[:-1]:
                if folder_prefix is not None and record.startswith(folder_prefix):
                    _, oid, size, path = record.split(b" ", 3)
                    if not is_object_id(oid.decode()) or int(size) < 0:
                        raise ValueError(record[:80])
                    trees[path] = (oid.decode(), int(size))
                    continue
                mode, oid, size_b, mtime, ctime, ino, path = record.split(b" ", 6)
                # One str per mode and one int per size, not one per entry:
                # an index holds tens of thousands.
                mode_s, oid_s = MODES_BY_BYTES.get(mode), oid.decode()
                if mode_s is None or not is_object_id(oid_s):
                    raise ValueError(record[:80])
                size = int(size_b)
                stat = None
                if mtime != b"-":
                    stat = StatKey(size, int(mtime), int(ctime), int(ino))
                entries.append(IndexEntry(path, mode_s, oid_s, size, stat))
        except ValueError as exc:
            raise corrupt(f"bad record {exc}") from None
        # Paths follow the tree-name rules: one that escapes (../x, /x)
        # would make a checkout delete or write outside the workspace.
        paths = [e.path for e in entries] + [p for p in trees if p]
        if not all_safe_paths(paths):
            bad = next(p for p in paths if not is_safe_path(p))
            raise corrupt(f"bad record: the path {bad[:80]!r} is not a valid relative path")
        return cls(entries, trees=trees)

    @classmethod
    def load(cls, path: Path) -> "Index":
        try:
            fd = open_state(path, os.O_RDONLY)
        except FileNotFoundError:
            return cls()
        with open(fd, "rb") as fh:
            written_ns = os.fstat(fd).st_mtime_ns
            data = fh.read()
        index = cls.decode(data, str(path))
        index.written_ns = written_ns
        return index

    def write(self, path: Path, *, durable: bool = True) -> None:
        atomic_write(path, self._encoded_chunks(), durable=durable)
