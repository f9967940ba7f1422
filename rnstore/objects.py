"""Object values, their canonical encodings and ids. No I/O here (hash_stream
reads only the stream it is given).

An object is a blob (file bytes), a tree (one directory) or a snapshot (a root
tree plus metadata). Its id is the lowercase hex SHA-256 of its payload: for a
blob the file's bytes, for a tree or snapshot the canonical encoding below.
Decoding validates everything and raises CorruptObjectError: a decoded object
re-encodes to exactly the bytes it came from, so one content has one id.

Tree payload::

    b"rntree 1\\n" + entry*          entries sorted by name bytes, no duplicates
    entry = MODE SP ID SP SIZE SP NAME NUL

MODE is one of 100644 100755 120000 040000; ID is 64 lowercase hex; SIZE is a
decimal without leading zeros: the byte size of a file or link target, and for
a sub-tree the total size of the files below it; NAME is any bytes except NUL
and "/", not empty, not "." or "..".

Snapshot payload::

    b"rnsnapshot 1\\n" + canonical JSON + b"\\n"

with keys tree, parents, time (UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ"), message and
meta (string keys to string values); canonical JSON is sorted keys, separators
"," and ":", non-ASCII kept as UTF-8.
"""

from __future__ import annotations

import hashlib
import json
import re
from binascii import Error as BinasciiError, hexlify, unhexlify
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Iterable, NamedTuple

from .errors import CorruptObjectError, InvalidValueError

BLOB, TREE, SNAPSHOT = "blob", "tree", "snapshot"
KINDS = (BLOB, TREE, SNAPSHOT)

MODE_FILE = "100644"
MODE_EXEC = "100755"
MODE_LINK = "120000"
MODE_TREE = "040000"
MODES = (MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE)

TREE_HEADER = b"rntree 1\n"
SNAPSHOT_HEADER = b"rnsnapshot 1\n"

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX64_BYTES = re.compile(rb"[0-9a-f]{64}\Z")
_DECIMAL = re.compile(rb"(0|[1-9][0-9]{0,19})\Z")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z", re.ASCII)  # ASCII digits only
#: a mode as stored (bytes) -> the one str of it that every decoder shares
MODES_BY_BYTES = {m.encode(): m for m in MODES}


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: hash_stream reads this much at a time.
HASH_CHUNK = 1 << 20


def hash_stream(source: BinaryIO) -> str:
    """The id of the blob whose bytes `source` gives, read to its end."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: source.read(HASH_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def is_object_id(text: str) -> bool:
    return bool(_HEX64.match(text))


def kind_of_mode(mode: str) -> str:
    return TREE if mode == MODE_TREE else BLOB


def check_name(name: bytes) -> None:
    """A tree entry name: one path component, never something that escapes."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise CorruptObjectError(f"invalid entry name {name!r} in tree")


class TreeEntry(NamedTuple):
    # A tuple, not a dataclass: trees of thousands of entries decode fast.
    name: bytes
    mode: str
    id: str
    size: int

    @property
    def kind(self) -> str:
        return kind_of_mode(self.mode)


@dataclass(frozen=True)
class Tree:
    entries: tuple[TreeEntry, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[TreeEntry]) -> "Tree":
        """Build a valid tree from entries in any order."""
        ordered = tuple(sorted(entries, key=lambda e: e.name))
        tree = cls(ordered)
        tree.validate()
        return tree

    def validate(self) -> None:
        previous = None
        for entry in self.entries:
            check_name(entry.name)
            if entry.mode not in MODES:
                raise CorruptObjectError(f"unknown mode {entry.mode!r} in tree")
            if not _HEX64.match(entry.id):
                raise CorruptObjectError(f"invalid object id {entry.id!r} in tree")
            if entry.size < 0:
                raise CorruptObjectError("negative size in tree")
            if previous is not None and entry.name <= previous:
                kind = "duplicate" if entry.name == previous else "unsorted"
                raise CorruptObjectError(f"{kind} entry {entry.name!r} in tree")
            previous = entry.name

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    def get(self, name: bytes) -> TreeEntry | None:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None

    def encode(self) -> bytes:
        return encode_tree_unchecked(self.entries)

    @property
    def id(self) -> str:
        return hash_bytes(self.encode())


def encode_tree_unchecked(entries: Iterable[TreeEntry]) -> bytes:
    """Encode entries as given, without validation. Tests use it to craft
    hostile trees; everything else goes through Tree.encode()."""
    parts = [TREE_HEADER]
    for e in entries:
        parts.append(b"%s %s %d %s\0" % (e.mode.encode(), e.id.encode(), e.size, e.name))
    return b"".join(parts)


def binary_tree(payload: bytes | memoryview, *, check: bool = True) -> bytes | None:
    """A tree payload in binary form: without its header, each entry's 64
    hex digits of id as their 32 bytes (zstd compresses hex digits poorly:
    the reachability cache's records and a pack's tree deltas store trees
    so, FORMAT.md). None if the payload is no tree, or (with `check`) if
    hex_tree would not rebuild it exactly from that form: a tree in the
    store need not be canonical (upper-case hex, a short entry). Without
    `check`, for payloads that parsed as trees already, a form that does
    not rebuild only costs its reader a hash that fails."""
    payload = bytes(payload)
    if not payload.startswith(TREE_HEADER):
        return None
    try:
        stored = b"".join([entry[:7] + unhexlify(entry[7:71]) + entry[71:] + b"\0"
                           for entry in payload[len(TREE_HEADER):].split(b"\0")[:-1]])
    except BinasciiError:
        return None
    return stored if not check or hex_tree(stored) == payload else None


#: A tree entry in binary form: "MODE " (six digits), the id's 32 bytes, then " SIZE NAME" NUL.
_BINARY_ENTRY = re.compile(rb"([0-9]{6} )(.{32})( [^\x00]*\x00)", re.S)


def hex_tree(stored: bytes | memoryview) -> bytes | None:
    """The tree payload that binary_tree made `stored` from; None if
    `stored` is not entries in that form from its first byte to its last
    (the caller still checks the payload against its id)."""
    found = _BINARY_ENTRY.findall(stored)
    payload = TREE_HEADER + b"".join([mode + hexlify(raw) + rest for mode, raw, rest in found])
    # each id grew by 32 bytes: anything else means bytes no entry matched (findall skips them)
    return payload if len(payload) == len(TREE_HEADER) + len(stored) + 32 * len(found) else None


def decode_tree(payload: bytes) -> Tree:
    if not payload.startswith(TREE_HEADER):
        if payload.startswith(b"rntree "):
            raise CorruptObjectError("unsupported tree format version")
        raise CorruptObjectError("not a tree")
    body = payload[len(TREE_HEADER):]
    if body and not body.endswith(b"\0"):
        raise CorruptObjectError("truncated tree entry")
    entries = []
    for record in body.split(b"\0")[:-1]:
        fields = record.split(b" ", 3)
        if len(fields) != 4:
            raise CorruptObjectError("malformed tree entry")
        mode_b, id_b, size_b, name = fields
        mode = MODES_BY_BYTES.get(mode_b)
        if mode is None:
            raise CorruptObjectError(f"unknown mode {mode_b!r} in tree")
        if not _HEX64_BYTES.match(id_b):
            raise CorruptObjectError("invalid object id in tree")
        if not _DECIMAL.match(size_b):
            raise CorruptObjectError("invalid size in tree")
        entries.append(TreeEntry(name, mode, id_b.decode(), int(size_b)))
    tree = Tree(tuple(entries))
    tree.validate()
    return tree


def _is_date(time: str) -> bool:
    """Whether digits in the time's format name an instant (not month 13)."""
    try:
        datetime.fromisoformat(time[:-1])
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Snapshot:
    tree: str
    parents: tuple[str, ...]
    time: str
    message: str
    meta: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if not _HEX64.match(self.tree):
            raise CorruptObjectError("invalid tree id in snapshot")
        for parent in self.parents:
            if not _HEX64.match(parent):
                raise CorruptObjectError("invalid parent id in snapshot")
        if not _TIME.match(self.time) or not _is_date(self.time):
            raise CorruptObjectError(f"invalid time {self.time!r} in snapshot")
        if not isinstance(self.message, str):
            raise CorruptObjectError("invalid message in snapshot")
        for key, value in self.meta.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise CorruptObjectError("snapshot metadata must map strings to strings")

    def encode(self) -> bytes:
        self.validate()
        document = {
            "meta": self.meta,
            "message": self.message,
            "parents": list(self.parents),
            "time": self.time,
            "tree": self.tree,
        }
        try:
            return SNAPSHOT_HEADER + canonical_json(document) + b"\n"
        except UnicodeEncodeError:
            raise InvalidValueError("snapshot message and metadata must be valid UTF-8") from None

    @property
    def id(self) -> str:
        return hash_bytes(self.encode())


def meta_count(meta: dict[str, str], key: str) -> int:
    """A count rnstore records in a snapshot's metadata (`files`, `bytes`);
    0 when absent or, written by another program, not a whole number of at
    most 20 digits (int() refuses longer strings)."""
    value = meta.get(key, "0")
    return int(value) if value.isdecimal() and len(value) <= 20 else 0


def canonical_json(document: object) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def decode_snapshot(payload: bytes) -> Snapshot:
    if not payload.startswith(SNAPSHOT_HEADER):
        if payload.startswith(b"rnsnapshot "):
            raise CorruptObjectError("unsupported snapshot format version")
        raise CorruptObjectError("not a snapshot")
    try:
        document = json.loads(payload[len(SNAPSHOT_HEADER):].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptObjectError(f"snapshot is not valid JSON: {exc}") from None
    except RecursionError:  # a JSON nested deeper than the parser's stack
        raise CorruptObjectError("snapshot is not valid JSON: nested too deeply") from None
    if not isinstance(document, dict) or set(document) != {
        "tree", "parents", "time", "message", "meta"
    }:
        raise CorruptObjectError("snapshot fields are not tree, parents, time, message, meta")
    if not isinstance(document["parents"], list) or not isinstance(document["meta"], dict):
        raise CorruptObjectError("malformed snapshot")
    try:
        snapshot = Snapshot(
            tree=document["tree"],
            parents=tuple(document["parents"]),
            time=document["time"],
            message=document["message"],
            meta=document["meta"],
        )
        encoded = snapshot.encode()
    except (TypeError, AttributeError, InvalidValueError):
        raise CorruptObjectError("malformed snapshot") from None
    if encoded != payload:
        raise CorruptObjectError("snapshot is not in canonical form")
    return snapshot


def parse_mode(text: str) -> str:
    """A mode as a user typed it (git accepts 40000 for 040000)."""
    mode = text.zfill(6)
    if mode not in MODES:
        raise InvalidValueError(f"unknown mode '{text}'")
    return mode


EMPTY_TREE_ID = hash_bytes(TREE_HEADER)
