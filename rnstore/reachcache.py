"""The reachability cache: the payloads of the trees and snapshots that
commit wrote and du, gc and forget last read, so that du, gc and forget
need not read, decompress and decode every tree of every snapshot again.

One file, `reachability-cache` in the store root (FORMAT.md, "The
reachability cache")::

    b"rnstore reachability cache 3\n"
    block*    block = LENGTH FRAME
              LENGTH: 4 bytes, big-endian; FRAME: one zstd frame, its content
              size in its header, holding record*
    record    = KIND LENGTH STORED
              KIND: b"t" (tree) or b"s" (snapshot); LENGTH: 4 bytes, big-endian;
              STORED: a snapshot's payload, or a tree's without its header and
              with each entry's id as 32 bytes instead of 64 hex digits

A record names no id: its id is the SHA-256 of the payload it rebuilds,
which a reader computes anyway to check it. Version 2 (records KIND ID
LENGTH PAYLOAD, payloads as they are) is still read. Over 1,000 releases of
a project, version 3 takes about two thirds of version 2's bytes: zstd
compresses hex digits poorly, and a binary id repeats its 32 bytes where
the parent tree names it, which zstd finds.

It is not authoritative, and nothing depends on it being right:

- A record is used only once its payload hashes to its id (in version 3
  its id is that hash), so it can only say what the object itself says (an
  id names one payload). A damaged,
  truncated, stale or hostile file can cost a reader work, never make it
  see fewer references than the store holds: it cannot make gc delete a
  live object. A tree whose entries do not all parse is not used either.
- Whether the object is still stored is not the cache's to say: gc refuses
  when an object it marked is not stored (rule 2), du likewise.
- Anything unreadable (no file, bad header, a block that does not
  decompress, a record running past the end of its block) is a cache
  without those records, never an error; the next writer rewrites it whole.

Writers: commit appends one block with the trees it wrote and its snapshot
(append_records). du, gc and forget, after marking, replace the file
atomically (temporary file and rename) with one block of exactly what
their marking reached, when they read something from the store, found a
damaged file or one of version 2, more than 16 blocks, or more records they did not reach
than records they did; nothing
is fsynced, since a cache lost in a crash is only work to redo. Appends
and replacements may race (du holds the store lock shared): a record lost
that way is read from the store next time.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from binascii import hexlify
from itertools import chain, compress
from operator import not_
from pathlib import Path
from typing import Iterable, Sequence

from .fsutil import atomic_write, open_state
from .objects import SNAPSHOT, TREE, TREE_HEADER, binary_tree, hex_tree

CACHE_FILE = "reachability-cache"
HEADER = b"rnstore reachability cache 3\n"
#: The version before: records name their id, and tree payloads keep their hex ids (still read).
HEADER_2 = b"rnstore reachability cache 2\n"
_KIND_BYTE = {TREE: b"t", SNAPSHOT: b"s"}
_BYTE_KIND = {b"t"[0]: TREE, b"s"[0]: SNAPSHOT}
_RECORD_HEAD = struct.Struct(">c32sI")     # version 2's record head: KIND ID LENGTH
_RECORD_HEAD_3 = struct.Struct(">cI")      # version 3's: KIND LENGTH (the id is the payload's SHA-256)
_BLOCK_HEAD = struct.Struct(">I")
#: A cache file larger than this is not read (it would only be a hostile one).
MAX_CACHE = 1 << 30
#: Nor are more records than this, decompressed, in all its blocks.
MAX_RECORDS = 1 << 31
#: A block may declare up to this much content whatever its frame's size;
#: past it, at most MAX_RATIO times its frame. Ids (random bytes) keep honest blocks
#: far below that ratio, and a 64 KiB file claiming 2 GiB of zeros (a
#: decompression bomb) would otherwise be decompressed in memory whole.
PLAIN_BLOCK = 256 << 20
MAX_RATIO = 64
#: Blocks a writer leaves as they are; past that it makes them one (each compresses better together).
MAX_BLOCKS = 16
#: zstd level of the blocks: hex ids and names compress as well at 1 as at 3, twice as fast.
LEVEL = 1

#: Tree entries, each anchored at the NUL that ends the entry before it (the
#: parser puts one before the first): NAME holds no NUL, so a match starts
#: only where an entry does. Sub-trees and the rest (files, links) apart;
#: the payload is read as latin-1, so that ids come out as str.
_SUBTREE = re.compile("\x00040000 ([0-9a-f]{64}) (0|[1-9][0-9]{0,19}) ")
_FILE = re.compile("\x00(?:100644|100755|120000) ([0-9a-f]{64}) (0|[1-9][0-9]{0,19}) ")

#: A tree entry in binary form (version 3's STORED), as a reader takes it:
#: one of the four modes, the id's 32 bytes, then " SIZE NAME" NUL with SIZE
#: as _SUBTREE and _FILE read it. Matched from the record's first byte, each
#: match ends at the first NUL after the id (NAME holds none), so the matches
#: cover STORED whole exactly when hex_tree rebuilds a payload whose every
#: entry parse_tree_entries takes.
_STORED_ENTRY = re.compile(rb"(040000 |100644 |100755 |120000 )(.{32})( (0|[1-9][0-9]{0,19}) [^\x00]*\x00)", re.S)
_STORED_SUBTREE = b"040000 "
_EMPTY_TREE = ((), (), (), ())

TreeEntries = tuple[Sequence[str], Sequence, Sequence[str], Sequence]
"""(sub-tree ids, their sizes, file and link ids, their sizes) of a tree;
a size is an int or its decimal digits (str or bytes): int() reads each."""

TreePairs = tuple[list[tuple[str, str]], list[tuple[str, str]]]
"""(sub-trees, files and links) of a tree: (id, size as decimal text) each."""

Record = tuple[str, str, bytes]
"""(kind, id, payload) of one record."""


def parse_tree_entries(payload: bytes) -> TreePairs | None:
    """The entries of a tree payload, or None if one of them does not parse:
    every NUL but the last starts a match of one pattern or the other, so
    as many matches as entries means every entry matched from its start."""
    if not payload.startswith(TREE_HEADER) or (len(payload) > len(TREE_HEADER) and payload[-1] != 0):
        return None
    text = "\x00" + payload[len(TREE_HEADER):].decode("latin-1")
    subtrees, files = _SUBTREE.findall(text), _FILE.findall(text)
    return (subtrees, files) if len(subtrees) + len(files) == text.count("\x00") - 1 else None


def _columns(pairs: TreePairs) -> TreeEntries:
    subtrees, files = pairs
    sub_ids, sub_sizes = zip(*subtrees) if subtrees else ((), ())
    file_ids, file_sizes = zip(*files) if files else ((), ())
    return sub_ids, sub_sizes, file_ids, file_sizes


def stored_tree_entries(content: bytes, start: int, end: int) -> tuple[str, TreeEntries] | None:
    """(id, entries) of the tree whose version 3 STORED is content[start:end],
    or None where hex_tree(STORED) would rebuild nothing or a payload that
    parse_tree_entries refuses: the id is the SHA-256 of the payload rebuilt,
    without building an entry or a text per entry (du and gc read every
    tree of the cache so)."""
    found = _STORED_ENTRY.findall(content, start, end)
    if not found:
        return (_EMPTY_TREE_ID, _EMPTY_TREE) if start == end else None
    modes, raws, rests, sizes = zip(*found)
    hexes = list(map(hexlify, raws))
    body = b"".join(chain.from_iterable(zip(modes, hexes, rests)))
    # each id grew by 32 bytes: anything else means bytes no entry matched (findall skips them)
    if len(body) != end - start + 32 * len(found):
        return None
    digest = _TREE_HEADER_HASHED.copy()
    digest.update(body)
    ids = list(map(bytes.decode, hexes))
    if _STORED_SUBTREE not in modes:
        return digest.hexdigest(), ((), (), ids, sizes)
    is_subtree = list(map(_STORED_SUBTREE.__eq__, modes))
    is_file = list(map(not_, is_subtree))
    return digest.hexdigest(), (list(compress(ids, is_subtree)), list(compress(sizes, is_subtree)),
                                list(compress(ids, is_file)), list(compress(sizes, is_file)))


_TREE_HEADER_HASHED = hashlib.sha256(TREE_HEADER)
_EMPTY_TREE_ID = hashlib.sha256(TREE_HEADER).hexdigest()


class ReachCache:
    """The records of one cache file, checked as they are read (version 3:
    a tree is parsed then too) or used (version 2), and the records to add."""

    def __init__(self, path: Path, data: bytes = b"", *, shared: bool = False):
        self.path = path
        self.shared = shared
        #: version 3: id -> (kind, STORED) of each record, its id the hash of the payload it rebuilds
        self._stored: dict[str, tuple[str, bytes]] = {}
        #: version 3: id -> entries of each tree record (those that parse: the others are rejected)
        self._trees: dict[str, TreeEntries] = {}
        #: version 2: the records of every block, decompressed, one after another
        self._data = memoryview(b"")
        #: version 2: id -> (kind, start, end) of its payload in _data, checked as it is used
        self._where: dict[str, tuple[str, int, int]] = {}
        self._checked: set[str] = set()
        self.rejected = 0          # records whose payload did not hash to their id, or did not parse
        self.damaged = False       # a bad header, a block that does not decompress, a record running past its end
        self.duplicates = 0
        self.blocks = 0
        self.version = 3           # of the file read (2: rewritten in version 3 by the next save)
        self._new: dict[str, tuple[str, bytes]] = {}
        self._parse(memoryview(data))

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

    def _parse(self, data: memoryview) -> None:
        if not data:
            return
        version = {HEADER: 3, HEADER_2: 2}.get(bytes(data[:len(HEADER)]))
        if version is None:
            self.damaged = True
            return
        self.version = version
        import zstandard  # as codec.py's users: zstd where it is used (test_architecture)
        contents, total = [], 0
        at, end = len(HEADER), len(data)
        decompress = zstandard.ZstdDecompressor().decompress
        while at < end:
            if at + _BLOCK_HEAD.size > end:
                self.damaged = True
                break
            length = _BLOCK_HEAD.unpack_from(data, at)[0]
            frame = data[at + _BLOCK_HEAD.size:at + _BLOCK_HEAD.size + length]
            at += _BLOCK_HEAD.size + length
            try:
                if len(frame) < length:
                    raise zstandard.ZstdError("truncated")
                declared = zstandard.frame_content_size(frame)
                if declared < 0 or total + declared > MAX_RECORDS \
                        or declared > max(PLAIN_BLOCK, MAX_RATIO * length):
                    raise zstandard.ZstdError("no content size, or too large")
                content = decompress(frame)
            except (zstandard.ZstdError, MemoryError):  # no room for it: no cache, as if damaged
                self.damaged = True
                break
            total += len(content)
            if version == 3:
                whole = self._index_version_3(content)
            else:
                whole = self._index_records(content, total - len(content))
                contents.append(content)
            if not whole:
                self.damaged = True
                break
            self.blocks += 1
        if contents:
            self._data = memoryview(b"".join(contents)) if len(contents) != 1 else memoryview(contents[0])

    def _index_version_3(self, content: bytes) -> bool:
        """Read one version 3 block's records: each tree parsed and its id
        computed (stored_tree_entries; one that does not rebuild or parse
        is rejected, as a record that does not hash to its id), each
        snapshot's id its payload's hash; False if a record is unknown or
        runs past the block's end (those before it are kept)."""
        at, end = 0, len(content)
        head, head_size, sha256 = _RECORD_HEAD_3.unpack_from, _RECORD_HEAD_3.size, hashlib.sha256
        stored, trees, tree_of = self._stored, self._trees, stored_tree_entries
        while at < end:
            if at + head_size > end:
                return False
            kind_byte, length = head(content, at)
            start = at + head_size
            kind = _BYTE_KIND.get(kind_byte[0])
            if kind is None or start + length > end:
                return False
            at = start + length
            if kind == TREE:
                parsed = tree_of(content, start, at)
                if parsed is None:
                    self.rejected += 1
                    continue
                oid, entries = parsed
                if oid in stored:
                    self.duplicates += 1
                    continue
                trees[oid] = entries
            else:
                oid = sha256(content[start:at]).hexdigest()
                if oid in stored:
                    self.duplicates += 1
                    continue
            stored[oid] = (kind, content[start:at])
        return True

    def _index_records(self, content: bytes, base: int) -> bool:
        """Note where each record of one version 2 block lies (at `base` in
        _data); False if one is unknown or runs past the block's end (those
        before it are kept)."""
        at, end, where = 0, len(content), self._where
        head, head_size = _RECORD_HEAD.unpack_from, _RECORD_HEAD.size
        while at < end:
            if at + head_size > end:
                return False
            kind_byte, raw_id, length = head(content, at)
            start = at + head_size
            kind = _BYTE_KIND.get(kind_byte[0])
            if kind is None or start + length > end:
                return False
            oid = raw_id.hex()
            if oid in where:
                self.duplicates += 1
            else:
                where[oid] = (kind, base + start, base + start + length)
            at = start + length
        return True

    def __len__(self) -> int:
        return len(self._where) + len(self._stored)

    def payload(self, kind: str, oid: str) -> bytes | None:
        """The cached payload of object `oid` of `kind`, once it is known to
        hash to `oid`; None if there is none (or it does not)."""
        record = self._stored.get(oid)
        if record is not None:  # version 3: its id is its hash
            if record[0] != kind:
                return None
            return hex_tree(record[1]) if kind == TREE else record[1]
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
        entries = self._trees.get(oid)
        if entries is not None or not self._where:
            return entries
        payload = self.payload(TREE, oid)
        if payload is None:
            return None
        pairs = parse_tree_entries(payload)
        if pairs is None:
            del self._where[oid]
            self.rejected += 1
            return None
        return _columns(pairs)

    def all_tree_entries(self) -> dict[str, TreeEntries]:
        """tree_entries() of every tree the cache holds, in one pass (du
        reads nearly all of them): the trees whose payload does not hash to
        their id or does not parse are left out, as tree_entries leaves
        them. The caller does not change the dict."""
        if not self._where:
            return self._trees
        found: dict[str, TreeEntries] = {}
        data, where, checked, sha256 = self._data, self._where, self._checked, hashlib.sha256
        for oid, (kind, start, end) in list(where.items()):
            if kind != TREE:
                continue
            payload = data[start:end].tobytes()
            pairs = parse_tree_entries(payload) if oid in checked or sha256(payload).hexdigest() == oid else None
            if pairs is None:
                del where[oid]
                self.rejected += 1
                continue
            checked.add(oid)
            found[oid] = _columns(pairs)
        return found

    def add(self, kind: str, oid: str, payload: bytes) -> None:
        """A payload read from the store (and decoded there): saved by `save`."""
        if oid not in self._where and oid not in self._stored:
            self._new[oid] = (kind, payload)

    def save(self, used: set[str]) -> None:
        """Replace the file with one block of the records of `used` (what
        this run reached), old and added, when this run added any, found the
        file damaged or of version 2, a record rejected, more than MAX_BLOCKS
        blocks (commits append one each), or more records unreached (or repeated: a commit
        records a tree it wrote again) than reached. Failures are ignored:
        the cache is an optimisation (a store the user may only read, a full disk)."""
        try:
            live = sum(map(used.__contains__, self._where)) + sum(map(used.__contains__, self._stored))
            if self._new or self.damaged or self.rejected or self.blocks > MAX_BLOCKS or self.version < 3 \
                    or len(self) - live + self.duplicates > live:
                data = self._data
                kept = [(kind, _stored_form(kind, data[start:end])) for oid, (kind, start, end) in self._where.items()
                        if oid in used]
                kept += [record for oid, record in self._stored.items() if oid in used]
                kept += [(kind, _stored_form(kind, payload)) for oid, (kind, payload) in self._new.items()
                         if oid in used]
                if kept or self.blocks:
                    atomic_write(self.path, [HEADER, _block(kept)], durable=False, shared=self.shared)
        except OSError:
            pass
        finally:  # written or not, it is no longer needed: its memory goes back at once
            self._data, self._where, self._new, self._stored, self._trees = memoryview(b""), {}, {}, {}, {}


#: Payload bytes a commit keeps for the cache; the trees past that are read
#: from the store by the next du, gc or forget (a commit's peak memory stays bounded).
MAX_RECORDED = 8 << 20


class RecordingStore:
    """A store as commit's tree building sees it: each tree put through it
    is noted as a record (`records`), for append_records, up to MAX_RECORDED
    bytes of payloads."""

    def __init__(self, store):
        self._store = store
        self.records: list[Record] = []
        self._recorded = 0

    def put(self, kind: str, payload: bytes) -> str:
        oid = self._store.put(kind, payload)
        if kind == TREE and self._recorded + len(payload) <= MAX_RECORDED:
            self.records.append((TREE, oid, payload))
            self._recorded += len(payload)
        return oid

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def append_records(store_root: Path, records: Iterable[Record], *, shared: bool = False) -> None:
    """Add these records (commit's: the trees it wrote and its snapshot) as
    one block at the end of the cache, or as a new file when there is none
    or it is not of this version. Never raises: the cache is an
    optimisation, and the command that wrote the objects has succeeded."""
    records = list(records)
    if not records:
        return
    path = store_root / CACHE_FILE
    try:
        block = _block([(kind, _stored_form(kind, payload)) for kind, _oid, payload in records])
        try:
            fd = open_state(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            fd = None
        if fd is not None:
            try:
                if os.pread(fd, len(HEADER), 0) == HEADER:
                    _write_all(fd, block)  # one write in practice: racing appenders interleave whole blocks
                    return
            finally:
                os.close(fd)
        # A new file is made whole by rename, so that no reader sees it without its header.
        atomic_write(path, [HEADER, block], durable=False, shared=shared)
    except Exception:  # noqa: BLE001 - a symlink or FIFO in its place, a full disk, a read-only store
        pass


def _stored_form(kind: str, payload: bytes | memoryview) -> bytes | None:
    """A record's STORED for this payload: a tree's in binary form (None
    if it has none: it would not be used), a snapshot's as it is. Every
    tree here parsed already (commit encoded it, du and gc decoded or
    parsed it), so its form is not checked again: one that did not rebuild
    would only fail its reader's hash."""
    return binary_tree(payload, check=False) if kind == TREE else bytes(payload)


def _block(records: Iterable[tuple[str, bytes | None]]) -> bytes:
    """LENGTH FRAME for these (kind, STORED) records, in version 3's form
    (no id: it is the payload's SHA-256); a STORED of None is left out."""
    import zstandard
    pack = _RECORD_HEAD_3.pack
    parts = []
    for kind, stored in records:
        if stored is not None:
            parts += (pack(_KIND_BYTE[kind], len(stored)), stored)
    frame = zstandard.ZstdCompressor(level=LEVEL, write_content_size=True).compress(b"".join(parts))
    return _BLOCK_HEAD.pack(len(frame)) + frame


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


__all__ = ["ReachCache", "RecordingStore", "CACHE_FILE", "append_records", "parse_tree_entries",
           "stored_tree_entries", "TreeEntries"]
