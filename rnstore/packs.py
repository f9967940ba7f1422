"""Pack files: many small objects in one file, written once, never changed.

Creating a file costs more than hashing and compressing a typical source
file (README, Performance), so a batch that stores many objects (a first
snapshot, say) appends their frames to one pack instead. A pack is
published by one rename, so readers see all of it or none of it::

    "rnpack 1\\n"   frame*   index   trailer

Each frame is exactly what a loose object file would hold, or (in a pack
that starts "rnpack 2" or "rnpack 3") a pack-local delta: a record naming
its base by the distance back to the base's record (codec.py); version 3
may hold tree deltas made in the trees' binary form (codec.BINARY_TREE).
Records are handed out, and
taken in, as frames naming their base by id (codec.encode_delta), so that
frames move between packs. The index lists (32-byte binary id, 8-byte
offset, 4-byte length) per object, sorted by id; the trailer is the index's
offset, the object count, the SHA-256 of the index, and b"rnpkend\\n".
FORMAT.md specifies it.
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

from . import codec
from .errors import CorruptObjectError
from .fsutil import TMP_PREFIX, NotRegularFileError, fsync_dir, make_folder, open_regular, remove_quietly, share

MAGIC = b"rnpack 1\n"
#: A pack holding pack-local deltas; one without keeps MAGIC, which readers
#: that predate version 2 still read.
MAGIC_2 = b"rnpack 2\n"
#: A pack holding a tree delta in binary form (codec.BINARY_TREE), which
#: readers of version 2 would take for a corrupt object: they see a damaged pack instead.
MAGIC_3 = b"rnpack 3\n"
_VERSIONS = {MAGIC: 1, MAGIC_2: 2, MAGIC_3: 3}
END = b"rnpkend\n"
_ENTRY = struct.Struct(">32sQI")
_LENGTH = struct.Struct(">40xI")  # an index entry's frame length alone
_TRAILER = struct.Struct(">QQ32s8s")
#: the index entry's id alone, and its place alone
_ID_ONLY = struct.Struct(">32s12x")
_PLACE = struct.Struct(">32xQI")
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
#: Listing a pack's 200,000 ids costs as much as some 4,000 bisections of
#: its index bytes; a few hundred lookups are answered that way first.
_LOOKUPS_BEFORE_LIST = 256


class DamagedPackError(ValueError):
    """A pack file whose structure cannot be trusted; its objects are not read."""


class Pack:
    """A published pack, open for reading. The file stays open, so a pack
    that gc replaces meanwhile can still be read to the end."""

    def __init__(self, path: str, file, index: bytes, mtime: float, version: int, *, checksum: str = ""):
        self.path = path
        self._file = file
        self._fd = file.fileno()
        self._index = index
        self.mtime = mtime
        self._count = len(index) // _ENTRY.size
        # The first lookups bisect the index bytes: a status or a no-op
        # commit looks up a handful of ids in a pack of 200,000. Past
        # _LOOKUPS_BEFORE_LIST, the ids are listed once (a bisection of
        # the list is faster than one of the bytes), as a restore needs.
        self._ids: list[bytes] | None = None
        self._lookups = 0
        self.version = version
        self.checksum = checksum  # of the index: the file's name, in a pack as written
        self._by_offset: tuple[list[int], list[int]] | None = None  # offsets sorted, their slots

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
            magic = os.pread(file.fileno(), len(MAGIC), 0)
            if magic not in _VERSIONS:
                raise DamagedPackError("does not start with 'rnpack 1', 'rnpack 2' or 'rnpack 3'")
            trailer = os.pread(file.fileno(), _TRAILER.size, st.st_size - _TRAILER.size)
            offset, count, digest, end = _TRAILER.unpack(trailer)
            if end != END:
                raise DamagedPackError("bad trailer")
            if offset < len(MAGIC) or offset + count * _ENTRY.size + _TRAILER.size != st.st_size:
                raise DamagedPackError("index offset and object count disagree with the file size")
            index = os.pread(file.fileno(), count * _ENTRY.size, offset)
            if hashlib.sha256(index).digest() != digest:
                raise DamagedPackError("index checksum mismatch")
            _check_index(index, offset)
            return cls(path, file, index, st.st_mtime, _VERSIONS[magic], checksum=digest.hex())
        except BaseException:
            file.close()
            raise

    @property
    def count(self) -> int:
        """How many objects the pack holds."""
        return self._count

    def _slot(self, raw_id: bytes) -> int | None:
        ids = self._ids
        if ids is None:
            self._lookups += 1
            if self._lookups <= _LOOKUPS_BEFORE_LIST:
                return self._slot_in_index(raw_id)
            ids = self._ids = _listed_ids(self._index)
        slot = bisect.bisect_left(ids, raw_id)
        return slot if slot < len(ids) and ids[slot] == raw_id else None

    def _slot_in_index(self, raw_id: bytes) -> int | None:
        index, size = self._index, _ENTRY.size
        low, high = 0, self._count
        while low < high:
            middle = (low + high) // 2
            at = middle * size
            if index[at:at + 32] < raw_id:
                low = middle + 1
            else:
                high = middle
        at = low * size
        return low if low < self._count and index[at:at + 32] == raw_id else None

    def __contains__(self, raw_id: bytes) -> bool:
        return self._slot(raw_id) is not None

    def _entry(self, slot: int) -> tuple[bytes, int, int]:
        return _ENTRY.unpack_from(self._index, slot * _ENTRY.size)

    def length(self, raw_id: bytes) -> int | None:
        slot = self._slot(raw_id)
        return None if slot is None else self._entry(slot)[2]

    def read(self, raw_id: bytes) -> bytes | None:
        """The stored frame, or None if this pack does not hold the object.
        A frame cut short reads short: the frame reader reports it corrupt.
        A pack-local delta comes out as a delta frame naming its base by id;
        CorruptObjectError when its base cannot be found that way."""
        slot = self._slot(raw_id)
        if slot is None:
            return None
        _, offset, length = self._entry(slot)
        record = os.pread(self._fd, length, offset)
        if self.version >= 2 and record[:1] and record[0] in codec.DELTA_CODES \
                and (record[0] != codec.BINARY_TREE or self.version >= 3):
            return self._detached(raw_id, offset, record)
        return record

    def _detached(self, raw_id: bytes, offset: int, record: bytes) -> bytes:
        try:
            _, distance, _ = codec.record_parts(record)
        except ValueError as exc:
            raise CorruptObjectError(f"object {raw_id.hex()} is corrupt: {exc}", raw_id.hex()) from None
        base = self._id_at(offset - distance) if distance > 0 else None
        if base is None:
            raise CorruptObjectError(
                f"object {raw_id.hex()} is corrupt: its delta base lies {distance} bytes back, "
                f"where no object of pack {self.path} starts", raw_id.hex())
        return codec.detached_frame(record, base)

    def _id_at(self, offset: int) -> bytes | None:
        """The id of the object whose record starts at `offset`."""
        if self._by_offset is None:  # built once, when the first delta is read
            order = sorted(range(self._count), key=lambda slot: self._entry(slot)[1])
            self._by_offset = ([self._entry(slot)[1] for slot in order], order)
        offsets, slots = self._by_offset
        at = bisect.bisect_left(offsets, offset)
        return self._entry(slots[at])[0] if at < len(offsets) and offsets[at] == offset else None

    def locations(self):
        """(raw id, offset, frame length) of every object, in id order."""
        return _ENTRY.iter_unpack(self._index)

    def entries(self):
        """(raw id, frame length) of every object, in id order."""
        for raw_id, _, length in _ENTRY.iter_unpack(self._index):
            yield raw_id, length

    def ids_and_lengths(self) -> tuple[list[str], list[int]]:
        """The hex ids and frame lengths of every object, in id order, in
        bulk: no tuple per object (du lists every object of the store)."""
        hexed, step = self._index.hex(), 2 * _ENTRY.size
        ids = [hexed[at:at + 64] for at in range(0, len(hexed), step)]
        return ids, [entry[0] for entry in _LENGTH.iter_unpack(self._index)]


def _listed_ids(index: bytes) -> list[bytes]:
    return list(map(operator.itemgetter(0), _ID_ONLY.iter_unpack(index)))


def _check_index(index: bytes, frames_end: int) -> None:
    """Raise DamagedPackError unless the ids are in strictly increasing
    order and every entry lies among the frames; in C loops, without a
    list of 200,000 ids."""
    first = operator.itemgetter(0)
    if not all(itertools.starmap(operator.lt, itertools.pairwise(map(first, _ID_ONLY.iter_unpack(index))))):
        raise DamagedPackError("the index is not in strictly increasing id order")
    if not index:
        return
    if min(map(first, _PLACE.iter_unpack(index))) >= len(MAGIC) and \
            max(itertools.starmap(operator.add, _PLACE.iter_unpack(index))) <= frames_end:
        return
    for slot, (at, length) in enumerate(_PLACE.iter_unpack(index)):  # which one, for the message
        if at < len(MAGIC) or at + length > frames_end:
            raise DamagedPackError(
                f"index entry {slot} lies out of bounds (offset {at}, length {length}; "
                f"frames lie from {len(MAGIC)} to {frames_end})")


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
        self._local_deltas = False  # a pack-local delta was written: the pack is version 2
        self._binary_trees = False  # and one of them a tree in binary form: version 3

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
            for oid, frame in frames:
                if frame[:1] and frame[0] & codec.DETACHED:
                    raise ValueError(f"object {oid} is a delta: add() stores it, after its base")
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
            record = os.pread(self._fd, length, offset)
            if self._local_deltas and record[:1] and record[0] in codec.DELTA_CODES:
                base_offset = offset - codec.record_parts(record)[1]
                base = next(raw for raw, at, _ in _ENTRY.iter_unpack(self._entries) if at == base_offset)
                return codec.detached_frame(record, base)
            return record

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
        if frame[:1] and frame[0] & codec.DETACHED:  # a delta frame: stored as a pack-local record
            frame = self._local_record(raw_id, frame)
        # At an explicit offset: a write that fails half-way (a full disk)
        # is overwritten by the next frame, not left in the way of it.
        _write_at(self._fd, frame, self._end)
        self._add_slot(raw_id, self._end, len(frame))
        self._end += len(frame)

    def _local_record(self, raw_id: bytes, frame: bytes) -> bytes:
        """The record of a delta frame written at the end: its base, which
        MUST be in this pack already, named by the distance back to it."""
        try:
            parts = codec.delta_parts(frame)
        except ValueError as exc:
            raise ValueError(f"object {raw_id.hex()}: {exc}") from None
        if parts is None:
            raise ValueError(f"object {raw_id.hex()}: not an object frame")
        slot = self._slot(parts[2])
        if slot is None:
            raise ValueError(f"object {raw_id.hex()} is a delta against {parts[2].hex()}, "
                             "which is not earlier in the same pack")
        self._local_deltas = True
        self._binary_trees = self._binary_trees or frame[0] & ~codec.DETACHED == codec.BINARY_TREE
        return codec.delta_record(frame, self._end, _ENTRY.unpack_from(self._entries, slot * _ENTRY.size)[1])

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
        if self._local_deltas:
            _write_at(self._fd, MAGIC_3 if self._binary_trees else MAGIC_2, 0)
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


__all__ = ["Pack", "PackWriter", "DamagedPackError", "list_packs", "write_pack", "MAX_FRAME", "SUFFIX",
           "MAGIC", "MAGIC_2", "MAGIC_3"]
