"""Pack files: many small objects in one file, written once, never changed.

Creating a file costs more than hashing and compressing a typical source
file (README, Performance), so a batch that stores many objects (a first
snapshot, say) appends their frames to one pack instead. A pack is
published by one rename, so readers see all of it or none of it::

    "rnpack 1\\n"   frame*   index   trailer

Each frame is exactly what a loose object file would hold. The index lists
(32-byte binary id, 8-byte offset, 4-byte length) per object, sorted by id;
the trailer is the index's offset, the object count, the SHA-256 of the
index, and b"rnpkend\\n". FORMAT.md specifies it.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
import os
import struct
import threading
from typing import Iterator

from .fsutil import TMP_PREFIX, NotRegularFileError, fsync_dir, make_folder, open_regular, remove_quietly, share

MAGIC = b"rnpack 1\n"
END = b"rnpkend\n"
_ENTRY = struct.Struct(">32sQI")
_LENGTH = struct.Struct(">40xI")  # an index entry's frame length alone
_TRAILER = struct.Struct(">QQ32s8s")
SUFFIX = ".pack"
#: A batch packs its objects once it holds this many, or this many bytes;
#: smaller batches keep them loose (a pack per `hash-object` would be silly).
MIN_OBJECTS = 64
MIN_BYTES = 8 << 20
#: Frames larger than this stay loose files.
MAX_FRAME = 4 << 20
#: A writer files its frames' ids in 2**_BUCKET_BITS buckets by their first
#: bits, as records of the first _KEY bytes of the id and a 4-byte slot.
_BUCKET_BITS = 12
_KEY = 7
_RECORD = _KEY + 4


class DamagedPackError(ValueError):
    """A pack file whose structure cannot be trusted; its objects are not read."""


class Pack:
    """A published pack, open for reading. The file stays open, so a pack
    that gc replaces meanwhile can still be read to the end."""

    def __init__(self, path: str, file, index: bytes, mtime: float):
        self.path = path
        self._file = file
        self._fd = file.fileno()
        self._index = index
        self.mtime = mtime
        # Sorted ids, searched by bisection: half the memory of a dict of
        # them, and a first snapshot's pack lists tens of thousands.
        self._ids = [index[at:at + 32] for at in range(0, len(index), _ENTRY.size)]

    @classmethod
    def open(cls, path: str) -> "Pack":
        """Raises DamagedPackError when the trailer or index do not add up,
        or an entry lies outside the frames (which could make a reader
        allocate gigabytes)."""
        try:
            file = open(open_regular(path, follow=False), "rb", buffering=0)
        except NotRegularFileError:
            raise DamagedPackError("not a regular file") from None
        try:
            st = os.fstat(file.fileno())
            if st.st_size < len(MAGIC) + _TRAILER.size:
                raise DamagedPackError("too short to be a pack")
            if os.pread(file.fileno(), len(MAGIC), 0) != MAGIC:
                raise DamagedPackError("does not start with 'rnpack 1'")
            trailer = os.pread(file.fileno(), _TRAILER.size, st.st_size - _TRAILER.size)
            offset, count, digest, end = _TRAILER.unpack(trailer)
            if end != END:
                raise DamagedPackError("bad trailer")
            if offset < len(MAGIC) or offset + count * _ENTRY.size + _TRAILER.size != st.st_size:
                raise DamagedPackError("index offset and object count disagree with the file size")
            index = os.pread(file.fileno(), count * _ENTRY.size, offset)
            if hashlib.sha256(index).digest() != digest:
                raise DamagedPackError("index checksum mismatch")
            pack = cls(path, file, index, st.st_mtime)
            if not all(map(operator.lt, pack._ids, itertools.islice(pack._ids, 1, None))):
                raise DamagedPackError("the index is not in strictly increasing id order")
            for slot, (_, at, length) in enumerate(_ENTRY.iter_unpack(index)):
                if at < len(MAGIC) or at + length > offset:
                    raise DamagedPackError(
                        f"index entry {slot} lies out of bounds (offset {at}, length {length}; "
                        f"frames lie from {len(MAGIC)} to {offset})")
            return pack
        except BaseException:
            file.close()
            raise

    @property
    def count(self) -> int:
        """How many objects the pack holds."""
        return len(self._ids)

    def _slot(self, raw_id: bytes) -> int | None:
        ids = self._ids
        slot = bisect.bisect_left(ids, raw_id)
        return slot if slot < len(ids) and ids[slot] == raw_id else None

    def __contains__(self, raw_id: bytes) -> bool:
        return self._slot(raw_id) is not None

    def _entry(self, slot: int) -> tuple[bytes, int, int]:
        return _ENTRY.unpack_from(self._index, slot * _ENTRY.size)

    def length(self, raw_id: bytes) -> int | None:
        slot = self._slot(raw_id)
        return None if slot is None else self._entry(slot)[2]

    def read(self, raw_id: bytes) -> bytes | None:
        """The stored frame, or None if this pack does not hold the object.
        A frame cut short reads short: the frame reader reports it corrupt."""
        slot = self._slot(raw_id)
        if slot is None:
            return None
        _, offset, length = self._entry(slot)
        return os.pread(self._fd, length, offset)

    def locations(self):
        """(raw id, offset, frame length) of every object, in id order."""
        for slot in range(len(self._ids)):
            yield self._entry(slot)

    def entries(self):
        """(raw id, frame length) of every object, in id order."""
        for slot in range(len(self._ids)):
            raw_id, _, length = self._entry(slot)
            yield raw_id, length

    def ids_and_lengths(self) -> tuple[list[str], list[int]]:
        """The hex ids and frame lengths of every object, in id order, in
        bulk: no tuple per object (du lists every object of the store)."""
        hexed, step = self._index.hex(), 2 * _ENTRY.size
        ids = [hexed[at:at + 64] for at in range(0, len(hexed), step)]
        return ids, [entry[0] for entry in _LENGTH.iter_unpack(self._index)]


def list_packs(folder: str) -> list[str]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(f"{folder}/{n}" for n in names if n.endswith(SUFFIX) and not n.startswith(TMP_PREFIX))


class PackWriter:
    """Collects one batch's small frames: in memory while there are few,
    appended to a temporary pack file once there are MIN_OBJECTS or
    MIN_BYTES of them. Thread-safe: the batch's workers add concurrently.
    Objects are named by their hex ids, the very strings the index keeps."""

    def __init__(self, folder: str, temp_name: str, *, fsync: bool, eager: bool = False,
                 shared: bool = False):
        self.folder = folder
        self._shared = shared  # a group-shared store (fsutil.share)
        self._temp_name = temp_name
        self._fsync = fsync
        self._eager = eager  # a pack from the first frame on, however few
        self._lock = threading.Lock()
        self._held: dict[str, bytes] = {}  # frames not yet in a file
        self._held_bytes = 0
        # A first snapshot of 200,000 files writes as many frames, so no
        # object per frame: its index entry goes to `_entries` (in writing
        # order), and a record of (_KEY bytes of its id, its slot in
        # `_entries`) to the bucket of the id's first _BUCKET_BITS bits; an id
        # whose key another already has goes to `_shared_key` (never seen
        # with SHA-256, but possible).
        self._buckets: list[bytearray | None] = [None] * (1 << _BUCKET_BITS)
        self._shared_key: dict[bytes, int] = {}
        self._entries = bytearray()
        self._fd = -1
        self._end = 0

    def _bucket_of(self, raw_id: bytes) -> int:
        return int.from_bytes(raw_id[:2], "big") >> (16 - _BUCKET_BITS)

    def _slot_of_key(self, bucket: bytearray, key: bytes) -> int | None:
        at = bucket.find(key)
        while at >= 0:
            if at % _RECORD == 0:
                return int.from_bytes(bucket[at + _KEY:at + _RECORD], "big")
            at = bucket.find(key, at + 1)
        return None

    def _slot(self, raw_id: bytes) -> int | None:
        bucket = self._buckets[self._bucket_of(raw_id)]
        if bucket is None:
            return None
        slot = self._slot_of_key(bucket, raw_id[:_KEY])
        if slot is None:
            return None
        at = slot * _ENTRY.size
        if self._entries[at:at + 32] == raw_id:
            return slot
        return self._shared_key.get(raw_id)

    def _add_slot(self, raw_id: bytes, offset: int, length: int) -> None:
        slot = self.count
        self._entries += _ENTRY.pack(raw_id, offset, length)
        number = self._bucket_of(raw_id)
        bucket = self._buckets[number]
        if bucket is None:
            bucket = self._buckets[number] = bytearray()
        elif self._slot_of_key(bucket, raw_id[:_KEY]) is not None:
            self._shared_key[raw_id] = slot
            return
        bucket += raw_id[:_KEY] + slot.to_bytes(_RECORD - _KEY, "big")

    @property
    def count(self) -> int:
        """How many frames are in the file."""
        return len(self._entries) // _ENTRY.size

    def __contains__(self, oid: str) -> bool:
        return oid in self._held or self._fd >= 0 and self._slot(bytes.fromhex(oid)) is not None

    def add(self, oid: str, frame: bytes) -> None:
        with self._lock:
            if self._fd >= 0:
                raw_id = bytes.fromhex(oid)
                if self._slot(raw_id) is None:
                    self._append(raw_id, frame)
                return
            if oid in self._held:
                return
            self._held[oid] = frame
            self._held_bytes += len(frame)
            if self._eager or len(self._held) >= MIN_OBJECTS or self._held_bytes >= MIN_BYTES:
                self._start_file()

    def add_many(self, frames: list[tuple[str, bytes]]) -> None:
        """add() of several frames with one write (a fetch's verified run of
        frames); a pack from the first call on, whatever `eager` says."""
        with self._lock:
            frames = list({oid: frame for oid, frame in frames if oid not in self}.items())
            if not frames:
                return
            if self._fd < 0:
                self._start_file()
            _writev_at(self._fd, [frame for _, frame in frames], self._end)
            for oid, frame in frames:  # only once written, as _append
                self._add_slot(bytes.fromhex(oid), self._end, len(frame))
                self._end += len(frame)

    def add_file(self, oid: str, source, length: int) -> None:
        """add() of a frame read from the file `source` in chunks (memory
        stays bounded however large the frame)."""
        with self._lock:
            if oid in self:
                return
            if self._fd < 0:
                self._start_file()
            start = self._end
            remaining = length
            while remaining:
                chunk = source.read(min(1 << 20, remaining))
                if not chunk:
                    raise ValueError(f"frame of {oid} is shorter than {length} bytes")
                _write_at(self._fd, chunk, self._end)
                self._end += len(chunk)
                remaining -= len(chunk)
            self._add_slot(bytes.fromhex(oid), start, length)

    def read(self, oid: str) -> bytes | None:
        with self._lock:
            frame = self._held.get(oid)
            if frame is not None:
                return frame
            slot = self._slot(bytes.fromhex(oid)) if self._fd >= 0 else None
            if slot is None:
                return None
            _, offset, length = _ENTRY.unpack_from(self._entries, slot * _ENTRY.size)
            return os.pread(self._fd, length, offset)

    def _start_file(self) -> None:
        make_folder(self.folder, shared=self._shared, parents=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self._temp_name, flags, 0o666)
        if self._shared:
            share(self._fd)
        _write_at(self._fd, MAGIC, 0)
        self._end = len(MAGIC)
        for oid, frame in list(self._held.items()):
            self._append(bytes.fromhex(oid), frame)
            del self._held[oid]  # only once written: a failed write leaves it held
        self._held_bytes = 0

    def _append(self, raw_id: bytes, frame: bytes) -> None:
        # At an explicit offset: a write that fails half-way (a full disk)
        # is overwritten by the next frame, not left in the way of it.
        _write_at(self._fd, frame, self._end)
        self._add_slot(raw_id, self._end, len(frame))
        self._end += len(frame)

    def held_frames(self) -> dict[str, bytes]:
        """What never reached a pack (a small batch): the caller stores these loose."""
        return self._held

    def finish(self) -> str | None:
        """Write the index and trailer, make the pack durable and publish it
        under its name; its path, or None when the batch stayed small."""
        if self._fd < 0:
            return None
        digest = hashlib.sha256()
        at = self._end
        for chunk in self._sorted_index():
            digest.update(chunk)
            _write_at(self._fd, chunk, at)
            at += len(chunk)
        count = self.count
        _write_at(self._fd, _TRAILER.pack(self._end, count, digest.digest(), END), at)
        os.ftruncate(self._fd, at + _TRAILER.size)  # past a failed write's bytes
        if self._fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        final = f"{self.folder}/{digest.hexdigest()}{SUFFIX}"
        os.replace(self._temp_name, final)
        if self._fsync:
            fsync_dir(self.folder)
        return final

    def _sorted_index(self) -> Iterator[bytes]:
        """The index entries in id order, a bucket at a time: no copy of the
        whole index, nor an object per entry, is held."""
        entries, size = self._entries, _ENTRY.size
        sharing: dict[int, list[int]] = {}  # bucket -> slots of ids in _shared_key
        for raw_id, slot in self._shared_key.items():
            sharing.setdefault(self._bucket_of(raw_id), []).append(slot)
        for number, bucket in enumerate(self._buckets):
            if bucket is None:
                continue
            # records sort by their keys, so in id order but for ids sharing a key
            slots = [int.from_bytes(record[_KEY:], "big")
                     for record in sorted(bucket[at:at + _RECORD] for at in range(0, len(bucket), _RECORD))]
            if number in sharing:
                slots = sorted(slots + sharing[number], key=lambda slot: entries[slot * size:slot * size + 32])
            yield b"".join([entries[slot * size:slot * size + size] for slot in slots])

    def abort(self) -> None:
        """Drop everything (the batch failed): nothing may name these objects."""
        self._held = {}
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            remove_quietly(self._temp_name)


def write_pack(folder: str, temp_name: str, frames, *, fsync: bool,
               shared: bool = False) -> str | None:
    """A pack of (hex id, frame) pairs, published; None when there are none
    (gc rewriting a pack keeps what stays this way)."""
    writer = PackWriter(folder, temp_name, fsync=fsync, eager=True, shared=shared)
    try:
        for oid, frame in frames:
            writer.add(oid, frame)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def _writev_at(fd: int, buffers: list[bytes], offset: int) -> None:
    """Write the buffers one after the other from `offset` (few system calls)."""
    views = [memoryview(b) for b in buffers if b]
    while views:
        batch = views[:512]  # IOV_MAX is 1024 on Linux
        written = os.pwritev(fd, batch, offset)
        offset += written
        while written and views:
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0] = views[0][written:]
                written = 0


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


__all__ = ["Pack", "PackWriter", "DamagedPackError", "list_packs", "write_pack", "MAX_FRAME", "SUFFIX"]
