"""The reachability cache: the payloads of the trees and snapshots that du
and gc last read, so that their next run need not read, decompress and
decode every tree of every snapshot again.

One file, `reachability-cache` in the store root (FORMAT.md, "The
reachability cache")::

    b"rnstore reachability cache 1\\n"
    record*   record = KIND ID LENGTH PAYLOAD
              KIND: b"t" (tree) or b"s" (snapshot); ID: the 32 bytes of the
              object id; LENGTH: 4 bytes, big-endian; PAYLOAD: the object's payload

It is not authoritative, and nothing depends on it being right:

- A record is used only once its payload hashes to its id, so it can only
  say what the object itself says (an id names one payload). A damaged,
  truncated, stale or hostile file can cost a reader work, never make it
  see fewer references than the store holds: it cannot make gc delete a
  live object. A tree whose entries do not all parse is not used either.
- Whether the object is still stored is not the cache's to say: gc refuses
  when an object it marked is not stored (rule 2), du likewise.
- Anything unreadable (no file, bad header, a record running past the end)
  is a cache without those records, never an error; the next writer
  rewrites it whole.

Writers: du and gc, after marking, add the trees and snapshots they had to
read from the store. They append when the file is sound and mostly live,
else replace it atomically (temporary file and rename) with exactly what
their marking reached; nothing is fsynced, since a cache lost in a crash is
only work to redo. Appends and replacements may race (du holds the store
lock shared): a record lost that way is read from the store next time.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

from .fsutil import atomic_write, open_state
from .objects import SNAPSHOT, TREE, TREE_HEADER

CACHE_FILE = "reachability-cache"
HEADER = b"rnstore reachability cache 1\n"
_KIND_BYTE = {TREE: b"t", SNAPSHOT: b"s"}
_BYTE_KIND = {b"t"[0]: TREE, b"s"[0]: SNAPSHOT}
_RECORD_HEAD = struct.Struct(">c32sI")
#: A cache larger than this is not read (it would only be a hostile one).
MAX_CACHE = 1 << 31

#: Tree entries, each anchored at the NUL that ends the entry before it (the
#: parser puts one before the first): NAME holds no NUL, so a match starts
#: only where an entry does. Sub-trees and the rest (files, links) apart;
#: the payload is read as latin-1, so that ids come out as str.
_SUBTREE = re.compile("\x00040000 ([0-9a-f]{64}) (0|[1-9][0-9]{0,19}) ")
_FILE = re.compile("\x00(?:100644|100755|120000) ([0-9a-f]{64}) (0|[1-9][0-9]{0,19}) ")

TreeEntries = tuple[list[tuple[str, str]], list[tuple[str, str]]]
"""(sub-trees, files and links) of a tree: (id, size as decimal text) each."""


def parse_tree_entries(payload: bytes) -> TreeEntries | None:
    """The entries of a tree payload, or None if one of them does not parse:
    every NUL but the last starts a match of one pattern or the other, so
    as many matches as entries means every entry matched from its start."""
    if not payload.startswith(TREE_HEADER) or (len(payload) > len(TREE_HEADER) and payload[-1] != 0):
        return None
    text = "\x00" + payload[len(TREE_HEADER):].decode("latin-1")
    subtrees, files = _SUBTREE.findall(text), _FILE.findall(text)
    return (subtrees, files) if len(subtrees) + len(files) == text.count("\x00") - 1 else None


class ReachCache:
    """The records of one cache file, checked as they are used, and the
    records to add."""

    def __init__(self, path: Path, data: bytes = b"", *, shared: bool = False):
        self.path = path
        self.shared = shared
        self._data = memoryview(data)
        #: id -> (kind, start, end) of its payload in the file
        self._where: dict[str, tuple[str, int, int]] = {}
        self._checked: set[str] = set()
        self.rejected = 0          # records whose payload did not hash to their id, or did not parse
        self.damaged = False       # a bad header, or a record running past the end
        self.duplicates = 0
        self._new: dict[str, tuple[str, bytes]] = {}
        self._parse()

    @classmethod
    def load(cls, store_root: Path, *, shared: bool = False) -> "ReachCache":
        """The cache of the store at `store_root`: empty if it is absent or unreadable."""
        path = store_root / CACHE_FILE
        try:
            fd = open_state(path, os.O_RDONLY)
        except FileNotFoundError:
            return cls(path, shared=shared)
        except Exception:  # noqa: BLE001 - a symlink, a FIFO, no permission: no cache
            cache = cls(path, shared=shared)
            cache.damaged = True
            return cache
        try:
            size = os.fstat(fd).st_size
            data = b"" if size > MAX_CACHE else _read_all(fd, size)
        except OSError:
            data = b""
        finally:
            os.close(fd)
        cache = cls(path, data, shared=shared)
        if size > MAX_CACHE:
            cache.damaged = True
        return cache

    def _parse(self) -> None:
        data = self._data
        if not data:
            return
        if data[:len(HEADER)] != HEADER:
            self.damaged = True
            return
        at, end, where = len(HEADER), len(data), self._where
        head, head_size = _RECORD_HEAD.unpack_from, _RECORD_HEAD.size
        while at < end:
            if at + head_size > end:
                self.damaged = True
                return
            kind_byte, raw_id, length = head(data, at)
            start = at + head_size
            kind = _BYTE_KIND.get(kind_byte[0])
            if kind is None or start + length > end:
                self.damaged = True
                return
            oid = raw_id.hex()
            if oid in where:
                self.duplicates += 1
            else:
                where[oid] = (kind, start, start + length)
            at = start + length

    def __len__(self) -> int:
        return len(self._where)

    def payload(self, kind: str, oid: str) -> bytes | None:
        """The cached payload of object `oid` of `kind`, once it is known to
        hash to `oid`; None if there is none (or it does not)."""
        found = self._where.get(oid)
        if found is None or found[0] != kind:
            return None
        payload = self._data[found[1]:found[2]].tobytes()
        if oid not in self._checked:
            if hashlib.sha256(payload).hexdigest() != oid:
                del self._where[oid]
                self.rejected += 1
                return None
            self._checked.add(oid)
        return payload

    def tree_entries(self, oid: str) -> TreeEntries | None:
        """The entries of tree `oid` from its checked payload, or None."""
        payload = self.payload(TREE, oid)
        if payload is None:
            return None
        entries = parse_tree_entries(payload)
        if entries is None:
            del self._where[oid]
            self.rejected += 1
        return entries

    def add(self, kind: str, oid: str, payload: bytes) -> None:
        """A payload read from the store (and decoded there): saved by `save`."""
        if oid not in self._where:
            self._new[oid] = (kind, payload)

    def save(self, used: set[str]) -> None:
        """Write what was added: appended when the file is sound (no record
        rejected) and at least half of it is in `used` (what this run
        reached), else the file is replaced by the records of `used` alone. Failures are ignored: the
        cache is an optimisation (a store the user may only read, a full disk)."""
        live = sum(1 for oid in self._where if oid in used)
        dead = len(self._where) - live + self.duplicates + self.rejected
        try:
            if self._data and not self.damaged and not self.rejected and dead <= live:
                if self._new:
                    self._append()
                return
            if not self._new and not dead and not self.damaged:
                return  # absent, and nothing to say
            kept = [(kind, oid, self._data[start:end]) for oid, (kind, start, end) in self._where.items()
                    if oid in used]
            kept += [(kind, oid, payload) for oid, (kind, payload) in self._new.items() if oid in used]
            atomic_write(self.path, _chunks(kept), durable=False, shared=self.shared)
        except OSError:
            pass
        finally:  # written or not, it is no longer needed: its memory goes back at once
            self._data, self._where, self._new = memoryview(b""), {}, {}

    def _append(self) -> None:
        # Only to a file that exists: a new one is made whole by rename, so
        # that no reader sees it without its header.
        fd = open_state(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            data = memoryview(b"".join(_chunks([(kind, oid, payload) for oid, (kind, payload)
                                                in self._new.items()], header=False)))
            while data:  # one write in practice: appenders racing interleave whole records
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)



#: Records are written in pieces of about this size: few writes, no second copy of the whole file.
_WRITE_CHUNK = 1 << 20


def _chunks(records, *, header: bool = True):
    """The file's bytes (with `header`, from its start) for (kind, id, payload) records."""
    pack = _RECORD_HEAD.pack
    parts, size = ([HEADER], len(HEADER)) if header else ([], 0)
    for kind, oid, payload in records:
        parts += (pack(_KIND_BYTE[kind], bytes.fromhex(oid), len(payload)), payload)
        size += len(payload)
        if size >= _WRITE_CHUNK:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


__all__ = ["ReachCache", "CACHE_FILE", "parse_tree_entries"]
