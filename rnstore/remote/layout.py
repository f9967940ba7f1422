"""What a remote holds under its prefix, and the encodings of its small files.
FORMAT.md ("Remotes") is the specification; this module is its code.

    rnstore-remote                  marker, created once: "rnstore remote 1\\n"
    HEAD                            "ref: refs/heads/NAME\\n", the default branch (created once)
    packs/NAME.pack                 frames, in the local pack format (packs.py)
    index/NAME.idx                  which objects packs/NAME.pack holds, where, of which kind
    snapshots/ID                    a live snapshot's record: its frame
    refs/heads/BRANCH/VERSION       a ref version; the highest VERSION is the ref's value
    refs/tags/TAG/VERSION
    pushes/TOKEN                    a push in progress (for remote gc)
    gc/TOKEN.plan                   a collector's condemned packs (for remote gc)

Nothing is ever changed in place: every key is created once (ref versions
and markers by exclusive create), and only gc deletes.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Iterator

from ..errors import CorruptStoreError
from ..objects import BLOB, SNAPSHOT, TREE, is_object_id

MARKER = "rnstore-remote"
MARKER_TEXT = b"rnstore remote 1\n"
HEAD = "HEAD"
PACKS = "packs/"
INDEX = "index/"
SNAPSHOTS = "snapshots/"
REFS = "refs/"
PUSHES = "pushes/"
PLANS = "gc/"
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".idx"

INDEX_MAGIC = b"rnidx 1\n"
_INDEX_ENTRY = struct.Struct(">32sQIc")
KIND_CODES = {BLOB: b"b", TREE: b"t", SNAPSHOT: b"s"}
KINDS_BY_CODE = {v: k for k, v in KIND_CODES.items()}
#: No index entry may reach past this offset (a sanity bound; whether an
#: entry lies inside its pack is known only when the pack is read).
MAX_PACK_SIZE = 1 << 48
_VERSION = re.compile(r"\d{20}\Z")
_PACK_NAME = re.compile(r"[0-9a-f]{64}\Z")


def pack_key(name: str) -> str:
    return f"{PACKS}{name}{PACK_SUFFIX}"


def index_key(name: str) -> str:
    return f"{INDEX}{name}{INDEX_SUFFIX}"


def pack_name_of(key: str, folder: str, suffix: str) -> str | None:
    """'packs/NAME.pack' -> NAME (None for anything else)."""
    if not key.startswith(folder) or not key.endswith(suffix):
        return None
    name = key[len(folder):-len(suffix)]
    return name if _PACK_NAME.match(name) else None


# -- pack indexes --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)  # one per remote object: no __dict__ each
class Location:
    pack: str
    offset: int
    length: int
    kind: str


def encode_index(entries: list[tuple[bytes, int, int, str]]) -> bytes:
    """(raw id, offset, length, kind) sorted by id -> the index file, which
    ends with the SHA-256 of everything before it."""
    body = INDEX_MAGIC + b"".join(_INDEX_ENTRY.pack(raw, offset, length, KIND_CODES[kind])
                                  for raw, offset, length, kind in sorted(entries))
    return body + hashlib.sha256(body).digest()


def decode_index(data: bytes, pack: str) -> dict[str, Location]:
    """id -> Location; CorruptStoreError when the file does not add up."""
    return {raw.hex(): Location(pack, offset, length, kind)
            for raw, offset, length, kind in index_entries(data, pack)}


def index_entries(data: bytes, pack: str) -> Iterator[tuple[bytes, int, int, str]]:
    """(raw id, offset, length, kind) of each entry of an index file;
    CorruptStoreError when the file does not add up: before any entry, or
    at an entry out of bounds when the iteration reaches it."""
    body, digest = data[:-32], data[-32:]
    if (not body.startswith(INDEX_MAGIC) or hashlib.sha256(body).digest() != digest
            or (len(body) - len(INDEX_MAGIC)) % _INDEX_ENTRY.size):
        raise CorruptStoreError(f"remote index {index_key(pack)} is damaged")
    entries = memoryview(body)[len(INDEX_MAGIC):]
    if bytes(entries[_INDEX_ENTRY.size - 1::_INDEX_ENTRY.size]).translate(None, b"".join(KINDS_BY_CODE)):
        raise CorruptStoreError(f"remote index {index_key(pack)} is damaged: unknown kind")
    return _checked_entries(entries, pack)


def index_entry(data: bytes, row: int) -> tuple[bytes, int, int, str]:
    """Entry `row` (from 0) of an index file that index_entries() checked."""
    raw, offset, length, code = _INDEX_ENTRY.unpack_from(data, len(INDEX_MAGIC) + row * _INDEX_ENTRY.size)
    return raw, offset, length, KINDS_BY_CODE[code]


def _checked_entries(entries: memoryview, pack: str) -> Iterator[tuple[bytes, int, int, str]]:
    for raw, offset, length, code in _INDEX_ENTRY.iter_unpack(entries):
        if length == 0 or offset + length > MAX_PACK_SIZE:  # hostile: no pack is that large
            raise CorruptStoreError(f"remote index {index_key(pack)} is damaged: it places "
                                    f"{raw.hex()} at {length} bytes from offset {offset}")
        yield raw, offset, length, KINDS_BY_CODE[code]


# -- refs --------------------------------------------------------------------------------------

#: Ref versions are 20 digits: a writer past the last one would create a key no reader lists.
LAST_VERSION = 10 ** 20 - 1


def ref_version_key(ref: str, version: int) -> str:
    if version > LAST_VERSION:  # only another program's ref can get there
        raise CorruptStoreError(f"remote ref {ref} is at its last version ({LAST_VERSION}); "
                                "it cannot move")
    return f"{ref}/{version:020d}"


def parse_ref_key(key: str) -> tuple[str, int] | None:
    """'refs/heads/main/00000000000000000003' -> ('refs/heads/main', 3)."""
    ref, _, version = key.rpartition("/")
    if not ref.startswith(REFS) or not _VERSION.match(version):
        return None
    return ref, int(version)


def encode_ref(new: str | None, previous: str | None, who: str) -> bytes:
    return json.dumps({"id": new, "previous": previous, "by": who}, sort_keys=True).encode() + b"\n"


def decode_ref(data: bytes, key: str) -> str | None:
    """The id a ref version holds (None: the ref was deleted)."""
    try:
        document = json.loads(data)
        value = document["id"]
    except (ValueError, KeyError, TypeError, RecursionError):
        value = False
    if value is not None and not (isinstance(value, str) and is_object_id(value)):
        raise damaged_ref(key)
    return value


#: A ref version takes about 200 bytes; a reader refuses one over this
#: size unread (a hostile remote cannot make it hold gigabytes).
REF_VERSION_LIMIT = 64 << 10


def damaged_ref(key: str, why: str = "") -> CorruptStoreError:
    # rnstore never writes one (a version is created whole), so nothing tells
    # what the ref should be: the user decides, and no command guesses
    ref = key.rpartition("/")[0]
    return CorruptStoreError(
        f"remote ref {key} is damaged{f' ({why})' if why else ''}: which snapshot {ref} names is "
        "unknown, so push, fetch and clone stop here", hints=[
            f"delete that key on the remote: {ref} then names what its previous version "
            "named (or is gone, if it had none); then push it again from a workspace that "
            "has the right snapshot"])


__all__ = ["Location", "encode_index", "decode_index", "index_entries", "index_entry", "ref_version_key",
           "parse_ref_key", "encode_ref", "decode_ref", "pack_key", "index_key"]
