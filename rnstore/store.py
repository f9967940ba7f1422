"""Object stores: the one contract every store keeps, and its implementations.

An object is stored as one frame (codec.py: a zstd frame whose header names
the kind and size). A store keeps frames under their ids and knows nothing
of trees, refs or workspaces. ObjectStore is the whole contract that
staging, checkout, reachability, gc, du, fsck and transfers use, with the
rules every store shares (encoding, streaming, verified reads); a store
implements the abstract methods, which decide only where frames live:

- DiskStore: loose objects at objects/<2 hex>/<62 hex>, one frame per file,
  and pack files under objects/pack/ (packs.py), which a batch writes when it
  stores many small objects. The real one.
- MemoryStore: frames in a dict, for tests and throwaway use.

Both keep the same contract, which tests/test_store_contract.py runs against
each (gc, du and fsck included): a missing object raises MissingObjectError,
an invalid id InvalidValueError, and damage CorruptObjectError, from every store.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import errno
import functools
import hashlib
import io
import itertools
import os
import threading
import time
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple

from . import codec
from .errors import (BrokenDeltaError, CorruptObjectError, InvalidValueError, MissingObjectError,
                     StoreWriteError)
from .fsutil import (TMP_PREFIX, NotRegularFileError, fsync_dir, make_folder, open_regular,
                     open_regular_stat, remove_quietly, settled_before, share, sync_filesystem, write_new_file)
from .objects import (BLOB, KINDS, SNAPSHOT, TREE, Snapshot, Tree, decode_snapshot, decode_tree,
                      is_object_id)
from .packs import MAX_FRAME, SUFFIX as PACK_SUFFIX, DamagedPackError, Pack, PackWriter, list_packs, write_pack

#: Files up to this size are read, hashed and compressed in memory.
SMALL_FILE = 4 << 20
#: Blobs up to this size are verified in memory before cat-file/show hands
#: them out; larger ones are verified in a first pass, then streamed.
BUFFERED_BLOB = 16 << 20
#: More pending objects than this are made durable with one syncfs(2).
SYNCFS_THRESHOLD = 64
#: How often a file that keeps changing while it is read is read again.
READ_ATTEMPTS = 5


def _read_up_to(fd: int, limit: int) -> bytes:
    """Read until EOF or `limit` bytes, whichever comes first."""
    chunks = []
    while limit > 0:
        chunk = os.read(fd, limit)
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _same_change(st: os.stat_result, before: os.stat_result) -> bool:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == \
        (before.st_size, before.st_mtime_ns, before.st_ctime_ns)


def _hash_fd(fd: int, size: int) -> str | None:
    """The SHA-256 of the first `size` bytes of an open file; None if it
    has fewer, or more."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(codec.CHUNK, size - offset), offset)
        if not chunk:
            return None
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest() if not os.pread(fd, 1, size) else None


class SizeChangedError(Exception):
    """The source gave more or fewer bytes than announced (it changed while
    being read); the caller reads it again."""


class OnDisk(NamedTuple):
    """One stored copy of an object (stored_objects), for gc and du. (A
    named tuple, not a dataclass: a store lists one per object, and gc makes
    them all at once, in bulk.)"""
    id: str
    size: int        # stored bytes of the frame
    mtime: float     # when it was stored or last freshened (a packed copy: its pack's)
    where: str       # which copy: a loose file's or a pack's path, or MEMORY
    packed: bool = False  # `where` is a pack (holding other objects too), not a file of its own


@dataclass(frozen=True)
class TempFile:
    """A leftover of a writer that crashed, or that still runs (temp_files)."""
    where: str
    size: int
    mtime: float


class ObjectStore(abc.ABC):
    """The contract. A store implements the abstract methods; everything
    else is shared logic built on them. Ids given to any method are
    validated (InvalidValueError); a missing object raises
    MissingObjectError wherever one is read."""

    def __init__(self, *, level: int = 3, large_level: int = 1):
        self.level = level
        self.large_level = large_level  # for what put_stream streams (over SMALL_FILE)
        self._bases = _BaseCache()

    # -- what a store implements: objects --------------------------------------------

    @abc.abstractmethod
    def has(self, oid: str) -> bool:
        """Whether the object is stored."""

    @abc.abstractmethod
    def freshen(self, oid: str) -> bool:
        """Mark an existing object as recently used (gc spares young
        objects); False if it is absent."""

    @abc.abstractmethod
    def _open_frame(self, oid: str, copy: int = 0) -> BinaryIO:
        """A seekable binary file of the stored frame (of its `copy`-th stored
        copy: an object stored twice can be read from either);
        MissingObjectError if absent."""

    def copies(self, oid: str) -> int:
        """How many stored copies of the object there are."""
        return 1 if self.has(oid) else 0

    @abc.abstractmethod
    def _new_temp(self) -> tuple[BinaryIO, object]:
        """A file to write one frame into, and a token naming it for
        _publish or _discard."""

    @abc.abstractmethod
    def _publish(self, temp_token: object, oid: str) -> None:
        """Make the finished temp frame the object `oid` (atomically)."""

    @abc.abstractmethod
    def _discard(self, temp_token: object) -> None:
        """Drop an unfinished temp frame."""

    @abc.abstractmethod
    def delete(self, oid: str) -> None:
        """Remove every stored copy of the object; no error if it is absent."""

    # -- what a store implements: inventory, for reachability, gc, du and fsck ------

    @abc.abstractmethod
    def __iter__(self) -> Iterator[str]:
        """Every stored object's id once. On a damaged store a name that is
        not an object id may show up: fsck reports it."""

    @abc.abstractmethod
    def stored_size(self, oid: str) -> int:
        """Stored bytes of the object's frame; MissingObjectError if absent."""

    @abc.abstractmethod
    def stored_objects(self) -> Iterator[OnDisk]:
        """Every stored copy of every object (an object stored twice, by
        racing writers, is listed twice). Names that are not object ids are
        left out, and left alone."""

    def stored_copies(self) -> tuple[list[str], list[int]]:
        """(ids, stored sizes) of every copy stored_objects lists, in the
        same order, as two lists: du needs no more."""
        copies = list(self.stored_objects())
        return [c.id for c in copies], [c.size for c in copies]

    def listing_stamp(self) -> str | None:
        """A text that changes whenever what stored_objects lists may have
        changed (ids, sizes, which copies), for caches of answers computed
        from it; None when the store has no cheap one."""
        return None

    @abc.abstractmethod
    def delete_stored(self, doomed: Iterable[OnDisk]) -> None:
        """Delete these copies (as stored_objects listed them). For gc, under
        the exclusive store lock."""

    @abc.abstractmethod
    def temp_files(self) -> Iterator[TempFile]:
        """Leftovers of writers that crashed (or are still running)."""

    @abc.abstractmethod
    def delete_temp_files(self, leftovers: Iterable[TempFile]) -> None:
        """Delete these leftovers (as temp_files listed them); one that is
        gone already is no error."""

    @abc.abstractmethod
    def damaged_packs(self) -> dict[str, str]:
        """Containers of objects that cannot be read at all (where -> why):
        their objects are not listed. fsck reports them."""

    def in_read_order(self, ids: Iterable[str]) -> list[str]:
        """`ids` in an order that reads chains of deltas from the bottom up
        (each pack's objects by offset: a base lies before its deltas)."""
        return sorted(ids)

    @contextlib.contextmanager
    def reading_in_order(self) -> Iterator[None]:
        """Around reads of many objects in_read_order (fsck): large delta
        bases are kept, one a thread, so each is rebuilt about once."""
        with self._bases.keeping_large():
            yield

    def misnamed_packs(self) -> dict[str, str]:
        """Packs whose file name is not their index's checksum (where -> the
        name it should have): their objects read as any, each verified
        against its id; fsck reports them."""
        return {}

    #: Whether the store keeps packs that gc may consolidate (repack).
    keeps_packs = False

    def loose_and_packs(self, *, estimate: bool = False) -> tuple[int, int]:
        """(loose objects, packs). With `estimate` (gc --auto, checked after
        every commit), cheaply: the loose objects small enough to pack,
        counted in a sample of the store and scaled up, as git does."""
        return 0, 0

    def repack(self, frames: Iterable[tuple[str, bytes]], replaced: Iterable[OnDisk], *,
               dead: Iterable[OnDisk] = (), max_depth: int = codec.MAX_CHAIN_DEPTH) -> str | None:
        """Store the (id, verified frame) pairs as one new pack (as
        write_pack does: deltas after their bases), durable before anything
        else changes, then delete the `replaced` copies of objects it holds
        and the `dead` copies, which gc may delete (FORMAT.md, "Repacking");
        the new pack's place, or None when there were no frames or the store
        keeps no packs (nothing is changed)."""
        return None

    # -- shared logic ---------------------------------------------------------------

    def ids_with_prefix(self, prefix: str) -> list[str]:
        """The stored ids that start with `prefix`, sorted."""
        return sorted(oid for oid in self if oid.startswith(prefix))

    @staticmethod
    def _check_id(oid: str) -> None:
        if not is_object_id(oid):
            raise InvalidValueError(f"'{oid}' is not an object id")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around the store's own writes: an OSError there is the store's
        (StoreWriteError), never blamed on the file being stored."""
        yield

    def put(self, kind: str, payload: bytes) -> str:
        oid = hashlib.sha256(payload).hexdigest()
        if self.freshen(oid):
            return oid
        self._put_frame(oid, codec.compress(kind, payload, self.level))
        return oid

    def put_tree(self, tree: Tree) -> str:
        return self.put(TREE, tree.encode())

    def put_snapshot(self, snapshot: Snapshot) -> str:
        return self.put(SNAPSHOT, snapshot.encode())

    def put_stream(self, source: BinaryIO, size: int, kind: str = BLOB) -> str:
        """Store exactly `size` bytes read from `source`, hashing and
        compressing in one pass over fixed-size chunks (memory stays bounded).
        Raises SizeChangedError if the source has more or fewer bytes."""
        if size <= SMALL_FILE:
            data = source.read(size + 1)
            if len(data) != size:
                raise SizeChangedError()
            return self.put(kind, data)
        digest = hashlib.sha256()
        with self._temp_frame() as (out, finish):
            with self._writing():
                writer = codec.FrameWriter(out, kind, size, self.large_level)
            remaining = size
            while remaining > 0:
                chunk = source.read(min(codec.CHUNK, remaining))
                if not chunk:
                    raise SizeChangedError()
                digest.update(chunk)
                with self._writing():
                    writer.write(chunk)
                remaining -= len(chunk)
            if source.read(1):
                raise SizeChangedError()
            with self._writing():
                writer.close()
            oid = digest.hexdigest()
            finish(None if self.freshen(oid) else oid)
        return oid

    def put_fetched_frame(self, oid: str, fill: Callable[[BinaryIO], None],
                          verify: Callable[[BinaryIO], None]) -> bool:
        """Store a frame that `fill(out)` writes (a download) straight into
        the store's own temporary file, published as `oid` only once
        `verify(frame)` has read it back from that file and returned;
        anything raised drops it, and nothing is stored. A large fetched
        frame is so written once, not downloaded into one file and then
        copied into another, and never compressed again. False (and
        `fill` not called) when the object is stored already."""
        self._check_id(oid)
        if self.freshen(oid):
            return False
        with self._temp_frame() as (out, finish):
            fill(_StoreWrites(out, self._writing))
            with self._writing():
                out.flush()
            with self._reread_temp(out) as frame:
                verify(frame)
            finish(oid)
        return True

    def _reread_temp(self, out: BinaryIO) -> BinaryIO:
        """A reader of what was written so far to a temporary frame."""
        return io.BytesIO(out.getvalue())

    @contextlib.contextmanager
    def _temp_frame(self) -> Iterator[tuple[BinaryIO, Callable[[str | None], None]]]:
        """A temporary file to write one frame into, and `finish`: finish(oid)
        closes it and makes it the object `oid`, finish(None) drops it. An
        exception inside drops it too."""
        with self._writing():
            out, token = self._new_temp()
        finished = False

        def finish(oid: str | None) -> None:
            nonlocal finished
            with self._writing():
                out.close()
                if oid is None:
                    self._discard(token)
                else:
                    self._publish(token, oid)
            finished = True

        try:
            yield out, finish
        except BaseException:
            out.close()
            if not finished:
                self._discard(token)
            raise

    def put_file(self, path: str | bytes | os.PathLike) -> tuple[str, int]:
        """Store a file's bytes (following symlinks); (id, size). See put_regular_file."""
        oid, before = self.put_regular_file(path)
        return oid, before.st_size

    def put_regular_file(self, path: str | bytes | os.PathLike, *,
                         follow_symlinks: bool = True) -> tuple[str, os.stat_result]:
        """Store a file's bytes; (id, its stat as read). A file that changes
        while it is read (it gives more or fewer bytes than its size, or its
        size or times differ after) is read again, up to READ_ATTEMPTS times,
        and one changed within RACY_NS before the read must give the same
        bytes twice (a write sets the times as it starts, so no stat shows
        one under way): the stored bytes always match the id. A file that
        never holds still is an OSError, and so is anything but a regular
        file (a FIFO is refused, not waited on); without `follow_symlinks`
        (a file a walk found), so is a symlink."""
        for _ in range(READ_ATTEMPTS):
            started = time.time_ns()
            fd, before = open_regular_stat(path, follow=follow_symlinks)
            try:
                try:
                    oid = self._put_open_file(fd, before.st_size)
                except SizeChangedError:
                    continue
                unchanged = _same_change(os.fstat(fd), before)
                if unchanged and not settled_before(max(before.st_mtime_ns, before.st_ctime_ns), started):
                    unchanged = _hash_fd(fd, before.st_size) == oid and _same_change(os.fstat(fd), before)
            finally:
                os.close(fd)
            if unchanged:
                return oid, before
        raise OSError(errno.EAGAIN, "kept changing while it was read", path)

    def _put_open_file(self, fd: int, size: int) -> str:
        if size <= SMALL_FILE:  # whole, with plain reads: no file object per small file
            data = os.read(fd, size + 1)
            # Exactly `size` bytes at once: no read for the end of the file,
            # as a file that grew since has another size in the fstat after.
            if 0 < len(data) < size:  # a short read: the rest, or the end
                data += _read_up_to(fd, size + 1 - len(data))
            if len(data) != size:
                raise SizeChangedError()
            return self.put(BLOB, data)
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as fh:
            return self.put_stream(fh, size)

    @contextlib.contextmanager
    def open_object(self, oid: str, *, verify: bool = True, copy: int = 0,
                    chain: tuple[str, ...] = ()) -> Iterator[codec.FrameReader]:
        """Yields a reader whose .chunks() streams the payload; with `verify`,
        the last chunk is followed by a hash check (CorruptObjectError).
        It reads one stored copy (`copy`): see open_verified and _any_copy
        for readers that fall back to an intact copy. A delta is rebuilt from
        its base, read (and verified) like any object; `chain` holds the
        deltas being rebuilt that led here, to bound the chain."""
        fh = self._open_frame(oid, copy)
        try:
            yield (_VerifiedFrameReader if verify else codec.FrameReader)(
                fh, oid, functools.partial(self._delta_base, oid, chain))
        finally:
            fh.close()

    def _delta_base(self, oid: str, chain: tuple[str, ...], base: str, *, first_form: bool = False) -> bytes:
        """The verified payload of `base`, which the delta `oid` needs; a
        base that cannot be read makes the delta corrupt (BrokenDeltaError,
        naming the first object down the chain that is missing or corrupt).
        A delta of the `first_form` names its base by id, and so could name
        one outside its pack, which is corrupt (FORMAT.md, Deltas); a
        pack-local delta cannot."""
        if first_form:
            self._check_first_form_base(oid, base)
        chain = (*chain, oid)
        if base in chain:
            raise _ChainError(f"object {oid} is corrupt: its chain of delta bases loops "
                              f"through {base}", oid)
        if len(chain) > codec.MAX_CHAIN_DEPTH:
            raise self._too_deep(oid)
        cached = self._bases.get(base)
        if cached is not None:
            payload, base_depth = cached
        else:
            try:
                self._bases.rebuilt.last = None
                payload = self.get(base, verify=True, limit=codec.DELTA_MAX_SIZE, chain=chain)[1]
            except _ChainError as exc:  # the whole chain is at fault, reported from its top
                raise _ChainError(f"object {oid} is corrupt: {reason_of(exc, exc.object_id)}",
                                  oid) from None
            except BrokenDeltaError as exc:
                raise self._broken(oid, base, exc.culprit, exc.culprit_missing) from None
            except MissingObjectError:
                raise self._broken(oid, base, base, True) from None
            except CorruptObjectError:
                raise self._broken(oid, base, base, False) from None
            last = getattr(self._bases.rebuilt, "last", None)  # set when `base` is a delta itself
            base_depth = last[1] if last is not None and last[0] == base else 0
            self._bases.add(base, payload, base_depth)
        if len(chain) + base_depth > codec.MAX_CHAIN_DEPTH:  # a chain cached part-way down
            raise self._too_deep(oid)
        self._bases.rebuilt.last = (oid, base_depth + 1)
        return payload

    def _check_first_form_base(self, oid: str, base: str) -> None:
        """Raises CorruptObjectError unless a pack holds the delta `oid` and
        its `base` both (a store that keeps no packs: no rule)."""

    @staticmethod
    def _too_deep(oid: str) -> CorruptObjectError:
        return _ChainError(f"object {oid} is corrupt: its chain of delta bases is longer "
                           f"than {codec.MAX_CHAIN_DEPTH}", oid)

    @staticmethod
    def _broken(oid: str, base: str, culprit: str, missing: bool) -> BrokenDeltaError:
        what = "missing" if missing else "corrupt"
        needs = f"delta base {culprit}" if culprit == base else \
            f"chain of delta bases (through {base}) needs {culprit}, which"
        return BrokenDeltaError(f"object {oid} is corrupt: its {needs} is {what}",
                                oid, base=base, culprit=culprit, culprit_missing=missing)

    def delta_base(self, oid: str) -> str | None:
        """The object the stored copy of `oid` is a delta against (None when
        it is stored whole), from the frame's header alone."""
        return self._any_copy(oid, lambda copy: self._read_header(oid, copy).base)

    def _read_header(self, oid: str, copy: int) -> codec.FrameReader:
        with self.open_object(oid, verify=False, copy=copy) as reader:
            return reader

    @contextlib.contextmanager
    def open_verified(self, oid: str) -> Iterator[codec.FrameReader]:
        """Like open_object(verify=True), for streaming a blob somewhere in
        one pass; where several copies are stored, an intact one is found
        (verified whole) first, so a corrupt first copy falls back."""
        copy = 0
        if self.copies(oid) > 1:
            copy = self._any_copy(oid, lambda c: (self._verify_copy(oid, c), c)[1])
        with self.open_object(oid, verify=True, copy=copy) as reader:
            yield reader

    def _any_copy(self, oid: str, read):
        """read(copy) on the first stored copy that is not corrupt. Most
        objects have one copy: the others are counted only after a failure."""
        try:
            return read(0)
        except CorruptObjectError as first:
            failure = first
        for copy in range(1, self.copies(oid)):
            try:
                return read(copy)
            except (CorruptObjectError, MissingObjectError):
                continue
        raise failure

    def header(self, oid: str) -> tuple[str, int]:
        """(kind, size) from the header, without reading the body (nor, for
        a delta, its base)."""
        def read(copy: int) -> tuple[str, int]:
            reader = self._read_header(oid, copy)
            return reader.kind, reader.size
        return self._any_copy(oid, read)

    def get(self, oid: str, kind: str | None = None, *, verify: bool = True,
            limit: int = codec.MAX_METADATA_SIZE, chain: tuple[str, ...] = ()) -> tuple[str, bytes]:
        """A whole object in memory (kind, payload); for trees, snapshots and
        small blobs. `kind` is what the caller will decode the payload as.

        An id is the hash of the payload alone, so a file whose bytes are a
        tree's encoding has that tree's id, and whichever was stored first
        names the kind in the frame header. The payload is the same either
        way, so a header of another kind is no error: decoding decides."""
        def read(copy: int) -> tuple[str, bytes]:
            with self.open_object(oid, verify=verify, copy=copy, chain=chain) as reader:
                return reader.kind, reader.read_all(limit)
        return self._any_copy(oid, read)

    def get_tree(self, oid: str) -> Tree:
        try:
            return decode_tree(self.get(oid, TREE)[1])
        except CorruptObjectError as exc:
            raise _named(exc, oid) from None

    def get_snapshot(self, oid: str) -> Snapshot:
        try:
            return decode_snapshot(self.get(oid, SNAPSHOT)[1])
        except CorruptObjectError as exc:
            raise _named(exc, oid) from None

    def iter_blob(self, oid: str) -> Iterator[bytes]:
        """A blob's bytes in chunks, each handed out only once the whole blob
        is known to hash to `oid` (small blobs are buffered, large ones
        verified in a first pass), so a corrupt blob never leaks out as data."""
        kind, size = self.header(oid)  # any kind: see get()
        if size <= BUFFERED_BLOB:
            yield self.get(oid, BLOB, limit=BUFFERED_BLOB)[1]
            return
        copy = self._any_copy(oid, lambda c: (self._verify_copy(oid, c), c)[1])
        with self.open_object(oid, verify=True, copy=copy) as reader:
            yield from reader.chunks()

    def verify(self, oid: str) -> tuple[str, int]:
        """Decompress and hash an object (an intact copy of it, where it is
        stored more than once); (kind, size) or CorruptObjectError."""
        return self._any_copy(oid, lambda copy: self._verify_copy(oid, copy))

    def _verify_copy(self, oid: str, copy: int) -> tuple[str, int]:
        with self.open_object(oid, verify=True, copy=copy) as reader:
            for _ in reader.chunks():
                pass
            return reader.kind, reader.size

    def damaged_copies(self, oid: str, quick: bool = False) -> list[tuple[str, str]]:
        """For an object stored more than once: (where, why) of each copy
        that is corrupt, when another is intact (fsck reports them)."""
        return []

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Inside a batch, objects are made durable together when it ends
        (one sync instead of one per object). Nothing may reference them
        durably before then."""
        yield

    # -- frames as they are stored (for transfers between stores) ------------------

    def intact_frame(self, oid: str) -> tuple[str, bytes]:
        """(kind, frame) of a stored copy verified whole against its id (an
        intact one, where a copy is corrupt; a delta is rebuilt from its base
        to be verified), for a repack."""
        def read(copy: int) -> tuple[str, bytes]:
            with self._open_frame(oid, copy) as fh:
                frame = fh.read()
            reader = _VerifiedFrameReader(io.BytesIO(frame), oid, functools.partial(self._delta_base, oid, ()))
            for _ in reader.chunks():
                pass
            return reader.kind, frame
        return self._any_copy(oid, read)

    def read_frame(self, oid: str, *, whole: bool = False) -> bytes:
        """The stored frame exactly as stored (not decoded, not verified),
        for a transfer or a repack; MissingObjectError if absent. With
        `whole`, a delta is rebuilt (verified) and compressed whole instead:
        a frame that leaves its pack (a push, a loose copy) never needs a
        base it might not find there."""
        with self._open_frame(oid) as fh:
            frame = fh.read()
        if whole and _base_or_none(frame) is not None:
            kind, payload = self.get(oid, limit=codec.DELTA_MAX_SIZE)
            return codec.compress(kind, payload, self.level)
        return frame

    def add_frames(self, frames: Iterable[tuple[str, bytes]]) -> None:
        """Store (id, frame) pairs the caller has verified, as one batch: one
        pack when many, loose when few. Objects already stored are
        freshened, not written again. Durable when it returns (inside an
        enclosing batch(): when that batch ends). Whole frames only: a
        delta is stored by write_pack, with its base."""
        with self.batch():
            for oid, frame in frames:
                self._check_id(oid)
                if _base_or_none(frame) is not None:
                    raise ValueError(f"object {oid} is a delta: only write_pack stores deltas")
                if not self._stored_already(oid):
                    self._put_frame(oid, frame)

    @contextlib.contextmanager
    def verified_pack(self) -> Iterator[Callable[[list[tuple[str, bytes]]], None]]:
        """A function storing lists of (id, frame) pairs, callable from any
        thread, for whole frames of at most packs.MAX_FRAME bytes that the
        caller has verified (a fetch's). They are published together, as one
        new pack, durable, when the block ends, and dropped when it raises.
        Cheaper than add_frames by frame: one write per list, no header read."""
        frames: dict[str, bytes] = {}
        lock = threading.Lock()

        def add(more: list[tuple[str, bytes]]) -> None:
            with lock:
                frames.update((oid, bytes(frame)) for oid, frame in more)
        yield add
        self.add_frames(frames.items())

    def write_pack(self, frames: Iterable[tuple[str, bytes]], *,
                   max_depth: int = codec.MAX_CHAIN_DEPTH) -> str | None:
        """Store (id, frame) pairs the caller has verified as one new pack
        (written even when the objects are stored already: a repack then
        removes the old copies), durable when it returns; where it is (as
        OnDisk.where names it), or None when `frames` is empty. Frames may
        be deltas (codec.encode_delta): each delta's base MUST come earlier
        in `frames`, and no chain of deltas may be longer than `max_depth`
        (FORMAT.md, Deltas). A frame breaking that raises ValueError, and
        nothing is published. Frames are copied as given, in that order."""
        depths: dict[str, int] = {}

        def checked() -> Iterator[tuple[str, bytes]]:
            for oid, frame in frames:
                self._check_id(oid)
                base = codec.frame_base(frame)
                if base is None:
                    depths[oid] = 0
                elif base not in depths:
                    raise ValueError(f"object {oid} is a delta against {base}, "
                                     "which is not earlier in the same pack")
                elif depths[base] >= max_depth:
                    raise ValueError(f"object {oid} is a delta against {base}: a chain of "
                                     f"{depths[base] + 1} deltas, over the limit of {max_depth}")
                else:
                    depths[oid] = depths[base] + 1
                yield oid, frame

        with self._writing():
            return self._write_pack(checked())

    def _write_pack(self, frames: Iterator[tuple[str, bytes]]) -> str | None:
        """Publish these frames as one pack (write_pack checked them)."""
        raise NotImplementedError

    def needed_bases(self, doomed: Iterable[OnDisk]) -> list[OnDisk]:
        """The copies among `doomed` that a delta which stays needs, as its
        base or further down its chain, in the same container (a delta's base
        lies in its pack: FORMAT.md). gc keeps them (delete_stored does)."""
        by_where: dict[str, dict[str, OnDisk]] = {}
        for obj in doomed:
            by_where.setdefault(obj.where, {})[obj.id] = obj
        spared: list[OnDisk] = []
        for where, copies in by_where.items():
            bases = self._delta_bases_in(where)
            keep: set[str] = set()
            for oid, base in bases.items():
                if oid in copies:
                    continue
                while base in copies and base not in keep:
                    keep.add(base)
                    base = bases.get(base)
            spared.extend(copies[oid] for oid in sorted(keep))
        return spared

    def _delta_bases_in(self, where: str) -> dict[str, str]:
        """delta id -> its base, of every delta in the container `where`."""
        return {}

    def _stored_already(self, oid: str) -> bool:
        return self.freshen(oid)

    def _put_frame(self, oid: str, frame: bytes) -> None:
        with self._temp_frame() as (out, finish):
            with self._writing():
                out.write(frame)
            finish(oid)


class _BaseCache:
    """The payloads of the latest delta bases read (verified: an id names
    one payload forever), with the depth of their own chains, so that
    reading many versions of a file (fsck, a repack, the trees of a long
    history) rebuilds each base once, not once per delta above it, and a
    chain too deep is refused whatever was read before. Bounded in bytes;
    thread-safe. `rebuilt.last` is (id, depth) of the delta this thread
    last rebuilt, which tells the reader of a base how deep its chain went."""

    LIMIT = 32 << 20
    #: a larger payload is not kept: it would push out many smaller ones
    ENTRY_LIMIT = 4 << 20

    def __init__(self):
        self._payloads: collections.OrderedDict[str, tuple[bytes, int]] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.rebuilt = threading.local()
        self._keep_large = 0  # inside keeping_large()

    def get(self, oid: str) -> tuple[bytes, int] | None:
        """(payload, depth of its chain: 0 when stored whole), if kept."""
        large = getattr(self.rebuilt, "large", None) if self._keep_large else None
        if large is not None and large[0] == oid:
            return large[1]
        with self._lock:
            found = self._payloads.get(oid)
            if found is not None:
                self._payloads.move_to_end(oid)
            return found

    def add(self, oid: str, payload: bytes, depth: int) -> None:
        if len(payload) > self.ENTRY_LIMIT:
            if self._keep_large:
                self.rebuilt.large = (oid, (payload, depth))  # replaces this thread's last one
            return
        with self._lock:
            if oid in self._payloads:
                return
            self._payloads[oid] = (payload, depth)
            self._bytes += len(payload)
            while self._bytes > self.LIMIT:
                _, (dropped, _) = self._payloads.popitem(last=False)
                self._bytes -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._payloads.clear()
            self._bytes = 0

    @contextlib.contextmanager
    def keeping_large(self) -> Iterator[None]:
        """Meanwhile, each thread keeps the last base it read that is too
        large for the cache: a reader going up chains in pack order (a
        delta after its base) then rebuilds each large base about once,
        not once per delta above it (fsck of 40 versions of a 64 MiB
        file). Memory: one such payload (at most codec.DELTA_MAX_SIZE) a
        reading thread, until it ends (this one's: dropped at the end)."""
        self._keep_large += 1
        try:
            yield
        finally:
            self._keep_large -= 1
            self.rebuilt.large = None


class _ChainError(CorruptObjectError):
    """A chain of deltas that loops or is too long: corrupt as a whole."""


class _VerifiedFrameReader(codec.FrameReader):
    """The last chunk is followed by a check that the payload hashes to the
    id. (A subclass, not a wrapped method: that made a reference cycle per
    object read, which only the cycle collector frees.)"""

    def chunks(self) -> Iterator[bytes]:
        digest = hashlib.sha256()
        for chunk in super().chunks():
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != self.object_id:
            raise CorruptObjectError(f"object {self.object_id} is corrupt: hash mismatch",
                                     self.object_id)


def _base_or_none(frame: bytes) -> str | None:
    """The base a stored frame is a delta against; None for a whole frame,
    and for one too damaged to tell (readers report it)."""
    try:
        return codec.frame_base(frame)
    except CorruptObjectError:
        return None


def reason_of(exc: CorruptObjectError, oid: str) -> str:
    """An object error's message without its "object ID is corrupt: " prefix."""
    return str(exc).replace(f"object {oid} is corrupt: ", "")


def _named(exc: CorruptObjectError, oid: str) -> CorruptObjectError:
    message = str(exc)
    if oid not in message:
        message = f"object {oid} is corrupt: {message}"
    return CorruptObjectError(message, oid)


_temp_counter = itertools.count()


class DiskStore(ObjectStore):
    """Objects as loose files at <root>/<2 hex>/<62 hex>, each one zstd
    frame, and in pack files under <root>/pack/ (see packs.py): a batch that
    writes many small objects packs them."""

    def __init__(self, root: Path, *, level: int = 3, large_level: int = 1, fsync: bool = True,
                 group_shared: bool = False):
        super().__init__(level=level, large_level=large_level)
        self.root = Path(root)
        self.group_shared = group_shared
        self._root = str(self.root)  # the hot paths format strings, not Paths
        self._pack_folder = f"{self._root}/pack"
        self.fsync = fsync
        self._batch_depth = 0
        # A batch's loose objects: written and closed under a temporary name,
        # renamed into place only once flush() has made them durable.
        self._pending: dict[str, str] = {}  # id -> temporary file
        self._pending_lock = threading.Lock()
        self._packs: dict[str, Pack] | None = None  # loaded on first need
        self._packs_stale = False  # we published a pack since
        self._listing: tuple[tuple[int, int] | None, int] | None = None  # (folder stamp, when listed)
        self._damaged: dict[str, str] = {}
        self._packs_lock = threading.Lock()
        self._writer: PackWriter | None = None
        self._freshened_packs: set[str] = set()
        self._fanouts: set[str] | None = None
        self._pack_bases: dict[str, dict[str, str]] = {}  # pack -> its deltas' bases

    def _path(self, oid: str) -> str:
        """The file of an id we computed ourselves (no validation)."""
        return f"{self._root}/{oid[:2]}/{oid[2:]}"

    def _checked_path(self, oid: str) -> str:
        """The file of an id given to us (validated); a str, not a Path:
        the hot paths make one per object."""
        self._check_id(oid)
        return self._path(oid)

    def path_for(self, oid: str) -> Path:
        """Where the object's loose file is (or would be)."""
        return Path(self._checked_path(oid))

    def file_of(self, oid: str) -> Path:
        """The file holding the object: its loose file, or else its pack
        (MissingObjectError if neither)."""
        path = self.path_for(oid)
        if path.exists():
            return path
        pack = self._find_pack(oid)
        if pack is None:
            raise MissingObjectError(f"object {oid} is missing", oid)
        return Path(pack.path)

    # -- packs ---------------------------------------------------------------------

    def _load_packs(self, *, if_changed: bool = False) -> dict[str, Pack]:
        """The published packs, read again from disk: packs that appeared
        are opened, packs that are gone are dropped. With `if_changed`, the
        folder is listed again only when its mtime says it may have changed
        since the last listing (a miss then costs one stat, however many
        packs there are)."""
        with self._packs_lock:
            if if_changed and self._packs is not None and not self._packs_stale and self._listing_current():
                return self._packs
            known = self._packs or {}
            while True:
                stamp = self._folder_stamp()
                listed_at = time.time_ns()
                current: dict[str, Pack] = {}
                vanished = False
                for path in list_packs(self._pack_folder):
                    pack = known.get(path)
                    if pack is None:
                        try:
                            pack = Pack.open(path)
                        except FileNotFoundError:
                            # Replaced by a repack between the listing and
                            # the open: its replacement was published before
                            # it went, so a new listing shows it.
                            vanished = True
                            continue
                        except (DamagedPackError, OSError) as exc:
                            self._damaged[path] = str(exc)
                            continue
                    current[path] = pack
                if not vanished:
                    break
                known = {**known, **current}
            # The largest packs first: they hold most objects, so most hits end early.
            ordered = dict(sorted(current.items(), key=lambda item: -item[1].count))
            self._packs, self._packs_stale = ordered, False
            self._listing = (stamp, listed_at)
            return ordered

    def _folder_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._pack_folder)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _listing_current(self) -> bool:
        """Whether the pack folder is unchanged since it was last listed: its
        mtime is the same and was already older than the listing by more
        than the clock's granularity (an mtime set in the very moment of the
        listing could hide a later change in the same tick)."""
        if self._listing is None:
            return False
        stamp, listed_at = self._listing
        if stamp is None or stamp != self._folder_stamp():
            return False
        return settled_before(stamp[1], listed_at)

    def _pack_of(self, oid: str, *, reload: bool = False) -> Pack | None:
        """The pack holding `oid` among those loaded (loading them the first
        time). `reload` is for after a miss among those: the pack folder is
        looked at again, and only packs that appeared since are searched."""
        raw = bytes.fromhex(oid)
        for pack in self._unsearched_packs(reload):
            if raw in pack:
                return pack
        return None

    def _packs_holding(self, oid: str, *, reload: bool = False) -> list[Pack]:
        raw = bytes.fromhex(oid)
        return [pack for pack in self._unsearched_packs(reload) if raw in pack]

    def _unsearched_packs(self, reload: bool) -> list[Pack]:
        searched = self._packs if reload and not self._packs_stale else None
        packs = self._fresh_packs(reload)
        if searched is None:
            return list(packs.values())
        if packs is searched:  # the folder is as it was: a miss is a miss
            return []
        return [pack for path, pack in packs.items() if searched.get(path) is not pack]

    def _find_pack(self, oid: str) -> Pack | None:
        """Like _pack_of, looking again on a miss: another process may have
        published a pack (or gc replaced one) since the packs were loaded."""
        return self._pack_of(oid) or self._pack_of(oid, reload=True)

    def _fresh_packs(self, reload: bool) -> dict[str, Pack]:
        """The loaded packs; with `reload` (after a miss), the folder listed
        again when it changed since the last listing."""
        packs = self._packs
        if packs is None or self._packs_stale:
            return self._load_packs()
        if reload:
            return self._load_packs(if_changed=True)
        return packs

    def damaged_packs(self) -> dict[str, str]:
        """Pack files that cannot be read (path -> why), as of the last look."""
        self._load_packs()
        return dict(self._damaged)

    def in_read_order(self, ids: Iterable[str]) -> list[str]:
        wanted = set(ids)
        ordered = []
        for pack in self._load_packs().values():
            for raw, _, _ in sorted(pack.locations(), key=itemgetter(1)):
                oid = raw.hex()
                if oid in wanted:
                    ordered.append(oid)
                    wanted.discard(oid)
        return ordered + sorted(wanted)

    def misnamed_packs(self) -> dict[str, str]:
        return {path: pack.checksum + PACK_SUFFIX for path, pack in self._load_packs().items()
                if os.path.basename(path) != pack.checksum + PACK_SUFFIX}

    # -- frame primitives ------------------------------------------------------------

    def has(self, oid: str) -> bool:
        path = self._checked_path(oid)
        if self._writer is not None and oid in self._writer or oid in self._pending:
            return True
        return os.path.exists(path) or self._find_pack(oid) is not None

    def freshen(self, oid: str) -> bool:
        return self._refresh(oid, quick=False)

    def _refresh(self, oid: str, *, quick: bool) -> bool:
        """freshen(); `quick` (for put) may miss an object another process
        stored since we last looked, which is then stored once more."""
        # Refreshing the mtime of an object we are about to reference is what
        # keeps a concurrent gc (which spares young objects) from deleting it.
        # A packed object's mtime is its pack's.
        writer = self._writer
        if writer is not None and oid in writer or oid in self._pending:
            return True
        if not quick or oid[:2] in self._known_fanouts():
            try:
                if _refresh_whole_file(self._path(oid)):
                    return True
            except PermissionError:  # another user's object, not writable by us
                return self._rewrite(oid)
        for reload in (False, True):
            pack = self._pack_of(oid, reload=reload)
            if pack is None:
                if quick:
                    return False
                continue
            if pack.path in self._freshened_packs:
                return True
            try:
                os.utime(pack.path)
            except FileNotFoundError:  # replaced by gc since we loaded it: look again
                continue
            except PermissionError:
                return self._rewrite(oid)
            if self._batch_depth:  # once per pack and batch is enough
                self._freshened_packs.add(pack.path)
            return True
        return False

    def _rewrite(self, oid: str) -> bool:
        """Freshen an object whose file we may not utime (another user's, in
        a shared store whose files are not group-writable): store a copy of
        its frame as our own new file, as git rewrites such an object. The
        copy is young, so gc's grace period protects it; gc keeps one of the
        two copies and drops the other. False if the frame cannot be read
        (the caller then stores the object as new)."""
        try:
            frame = self.read_frame(oid, whole=True)  # a loose copy is never a delta
        except (OSError, MissingObjectError, CorruptObjectError):
            return False
        self._put_frame(oid, frame)
        return True

    def _known_fanouts(self) -> set[str]:
        """The fan-out folders seen (listed once, then those we create): a
        new store's objects all go to packs, and a failed utime per object
        would cost more than storing it."""
        if self._fanouts is None:
            try:
                self._fanouts = {n for n in os.listdir(self._root) if len(n) == 2}
            except FileNotFoundError:
                self._fanouts = set()
        return self._fanouts

    def _open_frame(self, oid: str, copy: int = 0) -> BinaryIO:
        path = self._checked_path(oid)
        if copy:
            sources = self._sources(oid)
            if copy >= len(sources):
                raise MissingObjectError(f"object {oid} is missing", oid)
            where = sources[copy]
            if isinstance(where, Pack):
                return io.BytesIO(where.read(bytes.fromhex(oid)))
            if where is None:
                return io.BytesIO(self._writer.read(oid))
            return self._open_loose(oid, where)
        writer = self._writer
        frame = writer.read(oid) if writer is not None else None
        if frame is None:
            pack = self._pack_of(oid, reload=False)
            frame = pack.read(bytes.fromhex(oid)) if pack is not None else None
        if frame is not None:
            return io.BytesIO(frame)
        try:
            return self._open_loose(oid, self._pending.get(oid, path))
        except FileNotFoundError:
            pass
        pack = self._pack_of(oid, reload=True)
        if pack is None:
            raise MissingObjectError(f"object {oid} is missing", oid)
        return io.BytesIO(pack.read(bytes.fromhex(oid)))

    @staticmethod
    def _open_loose(oid: str, path: str) -> BinaryIO:
        """A loose object's file: a FIFO or device there is corrupt, never a hang."""
        try:
            return open(open_regular(path, follow=False), "rb")
        except NotRegularFileError:
            raise CorruptObjectError(f"object {oid} is corrupt: {path} is not a regular file",
                                     oid) from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise CorruptObjectError(f"object {oid} is corrupt: {path} is a symlink", oid) from None

    def _sources(self, oid: str) -> list:
        """Where the stored copies are, in the order _open_frame reads them:
        None (this batch's writer), Packs, the loose path (a str)."""
        sources: list = []
        writer = self._writer
        if writer is not None and oid in writer:
            sources.append(None)
        sources += self._packs_holding(oid)
        path = self._pending.get(oid, self._path(oid))  # (a batch's object not yet renamed)
        if os.path.lexists(path):
            sources.append(path)
        if not sources:
            sources += self._packs_holding(oid, reload=True)
        return sources

    def copies(self, oid: str) -> int:
        self._check_id(oid)
        return len(self._sources(oid))

    def damaged_copies(self, oid: str, quick: bool = False) -> list[tuple[str, str]]:
        sources = self._sources(oid)
        if len(sources) < 2:
            return []
        damaged, intact = [], []
        for copy, where in enumerate(sources):
            if isinstance(where, Pack):
                name = f"pack {where.path}"
            else:
                name = "this batch" if where is None else f"the loose file {where}"
            try:
                if quick:
                    with self.open_object(oid, verify=False, copy=copy) as reader:
                        reader.kind
                else:
                    self._verify_copy(oid, copy)
                intact.append(name)
            except CorruptObjectError as exc:
                damaged.append((name, reason_of(exc, oid)))
        if not intact:
            return []  # no copy is intact: the object itself is reported
        return [(name, f"{why}; an intact copy in {intact[0]} is used") for name, why in damaged]

    def _check_first_form_base(self, oid: str, base: str) -> None:
        holding = self._packs_holding(oid)
        if not holding:
            raise CorruptObjectError(f"object {oid} is corrupt: a loose object file is a delta", oid)
        raw_base = bytes.fromhex(base)
        if any(raw_base in pack for pack in holding):
            return
        if not self.has(base):
            raise self._broken(oid, base, base, True)
        raise CorruptObjectError(f"object {oid} is corrupt: its delta base {base} is not in its "
                                 f"pack {holding[0].path}", oid)

    def _temp_name(self, folder: str) -> str:
        return f"{folder}/{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{next(_temp_counter)}"

    def put(self, kind: str, payload: bytes) -> str:
        # The hot path of every add: plain os calls.
        oid = hashlib.sha256(payload).hexdigest()
        if self._refresh(oid, quick=True):
            return oid
        self._put_frame(oid, codec.compress(kind, payload, self.level))
        return oid

    def _stored_already(self, oid: str) -> bool:
        # as put(): a miss does not read the pack folder again (an object
        # another process stored meanwhile is then stored once more)
        return self._refresh(oid, quick=True)

    def _put_frame(self, oid: str, frame: bytes) -> None:
        # In a batch, to the batch's pack; otherwise (or too big for a pack)
        # to a temporary file in the object's own folder and one rename.
        writer = self._writer
        try:  # what _writing() does, without a context manager per object
            if writer is not None and len(frame) <= MAX_FRAME:
                writer.add(oid, frame)
            else:
                self._put_loose(oid, frame)
        except StoreWriteError:
            raise
        except OSError as exc:
            raise self._write_error(exc) from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except StoreWriteError:
            raise
        except OSError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: OSError) -> StoreWriteError:
        """The StoreWriteError an OSError while writing to the store becomes."""
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            message = f"no space left to write to the object store {self.root}{where}"
            hints = ["free some space and run the command again; nothing committed was lost"]
        else:
            message = f"cannot write to the object store {self.root}: {exc.strerror or exc}{where}"
            hints = ["in a store shared by a team, every member needs write access to it: "
                     "`rnstore init --objects PATH --shared=group` sets that up"]
        return StoreWriteError(message, hints=hints)

    def _put_loose(self, oid: str, frame: bytes) -> None:
        folder = f"{self._root}/{oid[:2]}"
        temp = self._temp_name(folder)
        try:  # from naming the temporary file on, so Ctrl-C anywhere removes it
            write_new_file(temp, frame, make_parent=True, shared=self.group_shared)
            self._publish(temp, oid)
        except BaseException:
            remove_quietly(temp)
            raise

    def _new_temp(self):
        path = self._temp_name(self._root)
        try:
            out = open(path, "xb")
            if self.group_shared:
                share(out.fileno())
            return out, path
        except BaseException:  # Ctrl-C between creating and returning it
            remove_quietly(path)
            raise

    def _reread_temp(self, out):
        return open(out.name, "rb")

    def _publish(self, temp_token, oid: str) -> None:
        # Durable, then renamed (FORMAT.md, rule 2): a file system may
        # persist a new name before the data, and a crash in between would
        # leave a short file at the final name. In a batch, flush() does
        # this for all of the batch's objects at once.
        if self.fsync and self._batch_depth:
            with self._pending_lock:
                if oid in self._pending:
                    remove_quietly(temp_token)
                else:
                    self._pending[oid] = temp_token
            return
        if self.fsync:
            _fsync_file(temp_token)
        self._rename_into_place(temp_token, oid)
        if self.fsync:
            fsync_dir(os.path.dirname(self._path(oid)))
            fsync_dir(self._root)

    def _rename_into_place(self, temp: str, oid: str) -> None:
        final = self._path(oid)
        try:
            os.replace(temp, final)
        except FileNotFoundError:
            make_folder(os.path.dirname(final), shared=self.group_shared, parents=True)
            os.replace(temp, final)
        self._known_fanouts().add(oid[:2])

    def _discard(self, temp_token) -> None:
        remove_quietly(temp_token)

    def delete(self, oid: str) -> None:
        self._check_id(oid)
        raw = bytes.fromhex(oid)
        self._delete_copies([OnDisk(oid, 0, 0.0, self._path(oid)), *(
            OnDisk(oid, 0, pack.mtime, path, packed=True)
            for path, pack in self._load_packs().items() if raw in pack)])

    def _loose_ids(self) -> Iterator[str]:
        try:
            fanouts = os.scandir(self.root)
        except FileNotFoundError:
            return
        with fanouts:
            for fanout in fanouts:
                if len(fanout.name) != 2 or not fanout.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(fanout.path) as entries:
                    for entry in entries:
                        if len(entry.name) == 62 and not entry.name.startswith(TMP_PREFIX):
                            yield fanout.name + entry.name

    def __iter__(self) -> Iterator[str]:
        """Every stored id once, loose or packed."""
        seen: set[str] = set()
        for oid in self._loose_ids():
            seen.add(oid)
            yield oid
        for pack in self._load_packs().values():
            for raw_id, _ in pack.entries():
                oid = raw_id.hex()
                if oid not in seen:
                    seen.add(oid)
                    yield oid

    def ids_with_prefix(self, prefix: str) -> list[str]:
        if len(prefix) < 2:
            return super().ids_with_prefix(prefix)
        folder = self.root / prefix[:2]
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        rest = prefix[2:]
        found = {prefix[:2] + n for n in names if len(n) == 62 and n.startswith(rest)}
        for pack in self._load_packs().values():
            found.update(oid for oid in (raw.hex() for raw, _ in pack.entries())
                         if oid.startswith(prefix))
        return sorted(found)

    def stored_size(self, oid: str) -> int:
        try:
            return os.stat(self._checked_path(oid)).st_size
        except FileNotFoundError:
            pack = self._find_pack(oid)
            if pack is None:
                raise MissingObjectError(f"object {oid} is missing", oid) from None
            return pack.length(bytes.fromhex(oid))

    def stored_objects(self) -> Iterator[OnDisk]:
        """Loose files first, then packed frames (the packs are read once
        the loose files are listed). The copies of a pack are passed on in
        C loops, not through a generator: gc lists every copy of the store."""
        return itertools.chain.from_iterable(self._stored_parts())

    def _stored_parts(self) -> Iterator[Iterable[OnDisk]]:
        yield self._loose_stored()
        for path, pack in self._load_packs().items():
            mtime = _current_mtime(path, pack)
            ids, lengths = pack.ids_and_lengths()
            # tuple.__new__ as OnDisk._make does, without a Python call per object
            yield map(tuple.__new__, itertools.repeat(OnDisk), zip(
                ids, lengths, itertools.repeat(mtime), itertools.repeat(path), itertools.repeat(True)))

    def _loose_stored(self) -> Iterator[OnDisk]:
        for oid in self._loose_ids():
            if not is_object_id(oid):
                continue
            path = self._path(oid)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            yield OnDisk(oid, st.st_size, st.st_mtime, path)

    def stored_copies(self) -> tuple[list[str], list[int]]:
        ids, sizes = [], []
        for oid in self._loose_ids():
            if not is_object_id(oid):
                continue
            try:
                sizes.append(os.stat(self._path(oid)).st_size)
            except FileNotFoundError:
                continue
            ids.append(oid)
        for pack in self._load_packs().values():
            more_ids, more_sizes = pack.ids_and_lengths()
            ids += more_ids
            sizes += more_sizes
        return ids, sizes

    def listing_stamp(self) -> str | None:
        """Name, size, inode and ctime of every loose object file and every
        pack: a file replaced (even by one of the same name and size) gets a
        new ctime, and a pack's name is the digest of its content."""
        parts = []
        try:
            tops = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return ""
        for top in tops:
            if not (len(top.name) == 2 or top.name == "pack") or not top.is_dir(follow_symlinks=False):
                continue
            try:
                with os.scandir(top.path) as entries:
                    for entry in entries:
                        if entry.name.startswith(TMP_PREFIX):
                            continue
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        parts.append(f"{top.name}/{entry.name} {st.st_size} {st.st_ino} {st.st_ctime_ns}")
            except FileNotFoundError:
                continue
        parts.sort()
        return "\n".join(parts)

    def delete_stored(self, doomed: Iterable[OnDisk]) -> None:
        """Loose files are removed; a pack loses its copies by being
        rewritten without them (keeping its mtime), or is removed when
        nothing in it stays. A copy somewhere else is left alone, and so is
        the base of a delta that stays (needed_bases)."""
        doomed = list(doomed)
        spared = set(self.needed_bases(doomed))
        self._delete_copies([obj for obj in doomed if obj not in spared])

    def _delta_bases_in(self, where: str) -> dict[str, str]:
        known = self._pack_bases.get(where)
        if known is not None:
            return known
        pack = (self._packs or {}).get(where)
        if pack is None:  # a loose file: never a delta
            return {}
        bases = {}
        for raw_id, _ in pack.entries():
            try:
                base = _base_or_none(pack.read(raw_id))
            except CorruptObjectError:  # a delta whose base is not where it says: corrupt, and fsck says so
                continue
            if base is not None:
                bases[raw_id.hex()] = base
        # a pack never changes (its name is its index's hash): gc asks twice
        self._pack_bases[where] = bases
        return bases

    @contextlib.contextmanager
    def verified_pack(self) -> Iterator[Callable[[list[tuple[str, bytes]]], None]]:
        existed = os.path.isdir(self._pack_folder)
        writer = PackWriter(self._pack_folder, self._temp_name(self._pack_folder), fsync=self.fsync,
                            eager=True, shared=self.group_shared)

        def add(frames: list[tuple[str, bytes]]) -> None:
            for oid, frame in frames:
                self._check_id(oid)
                if len(frame) > MAX_FRAME:
                    raise ValueError(f"object {oid}: a frame of {len(frame)} bytes is stored loose")
            with self._writing():
                writer.add_many(frames)
        try:
            yield add
            with self._writing():
                if writer.finish() is not None:
                    if self.fsync and not existed:
                        fsync_dir(self._root)  # the pack folder's own entry
                    self._packs_stale = True
        except BaseException:
            writer.abort()
            raise

    def _write_pack(self, frames: Iterator[tuple[str, bytes]]) -> str | None:
        existed = os.path.isdir(self._pack_folder)
        path = write_pack(self._pack_folder, self._temp_name(self._pack_folder), frames,
                          fsync=self.fsync, shared=self.group_shared)
        if self.fsync and not existed and path is not None:
            fsync_dir(self._root)  # the pack folder's own entry
        self._packs_stale = True
        return path

    def _delete_copies(self, doomed: Iterable[OnDisk]) -> None:
        """delete_stored without sparing anything."""
        self._bases.clear()  # what is deleted reads as missing from now on
        by_pack: dict[str, set[bytes]] = {}
        fanouts = set()
        for obj in doomed:
            if obj.where == self._path(obj.id):
                remove_quietly(obj.where)
                fanouts.add(obj.id[:2])
            else:
                by_pack.setdefault(obj.where, set()).add(bytes.fromhex(obj.id))
        for fanout in sorted(fanouts):
            try:
                os.rmdir(f"{self._root}/{fanout}")  # only succeeds when empty
            except OSError:
                pass
        packs = self._packs or {}
        for path, raw_ids in by_pack.items():
            pack = packs.get(path)
            if pack is None:
                continue
            mtime = _current_mtime(path, pack)
            # read frame by frame while writing: memory stays flat however big
            # the pack; in the order they lie, so that bases stay before deltas
            kept = ((raw_id.hex(), _without_gone_base(pack.read(raw_id), raw_ids)) for raw_id, _, _ in
                    sorted(pack.locations(), key=lambda location: location[1]) if raw_id not in raw_ids)
            rewritten = write_pack(self._pack_folder, self._temp_name(self._pack_folder), kept,
                                   fsync=self.fsync, shared=self.group_shared)
            if rewritten is not None:
                os.utime(rewritten, (mtime, mtime))
            if rewritten != path:
                remove_quietly(path)
        if by_pack:
            self._load_packs()

    keeps_packs = True

    def loose_and_packs(self, *, estimate: bool = False) -> tuple[int, int]:
        """The estimate counts the loose objects of 16 of the 256 fan-out
        folders (one listing each, and a stat per object there: frames too
        large for a pack stay loose and are not counted) times 16: about
        25% off at 1000 loose objects, and cheap however many there are."""
        packs = len(list_packs(self._pack_folder))
        if not estimate:
            return sum(1 for _ in self._loose_ids()), packs
        small = 0
        for fanout in _SAMPLED_FANOUTS:
            try:
                names = os.listdir(f"{self._root}/{fanout}")
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                if len(name) != 62 or name.startswith(TMP_PREFIX):
                    continue
                try:
                    small += os.stat(f"{self._root}/{fanout}/{name}").st_size <= MAX_FRAME
                except FileNotFoundError:
                    pass
        return small * (256 // len(_SAMPLED_FANOUTS)), packs

    def repack(self, frames: Iterable[tuple[str, bytes]], replaced: Iterable[OnDisk], *,
               dead: Iterable[OnDisk] = (), max_depth: int = codec.MAX_CHAIN_DEPTH) -> str | None:
        """write_pack() makes the new pack durable (written under a temporary
        name, fsynced, renamed into place, its folder fsynced) before any
        replaced copy is touched: a crash at any moment leaves every object
        readable (at worst twice). Replaced loose files are then removed, and
        replaced packs rewritten without the objects (or removed when nothing
        else stays in them), as gc's sweep does."""
        final = self.write_pack(frames, max_depth=max_depth)
        if final is None:
            return None
        new = self._load_packs().get(final)
        if new is None:  # cannot happen short of another process deleting it
            raise StoreWriteError(f"the new pack {final} vanished as it was written")
        doomed = [copy for copy in replaced if copy.where != final and bytes.fromhex(copy.id) in new]
        doomed += [copy for copy in dead if copy.where != final]
        with self._writing():
            self.delete_stored(doomed)
        return final

    def temp_files(self) -> Iterator[TempFile]:
        """Temporary files in objects/, its fan-out folders and pack/."""
        folders = [self.root, *sorted(p for p in self.root.glob("??") if p.is_dir())]
        folders.append(Path(self._pack_folder))
        for folder in folders:
            for path in folder.glob(TMP_PREFIX + "*"):
                try:
                    st = os.stat(path)
                except FileNotFoundError:  # its writer finished meanwhile
                    continue
                yield TempFile(str(path), st.st_size, st.st_mtime)

    def delete_temp_files(self, leftovers: Iterable[TempFile]) -> None:
        for leftover in leftovers:
            if os.path.basename(leftover.where).startswith(TMP_PREFIX):
                remove_quietly(leftover.where)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        outermost = self._batch_depth == 0
        if outermost:
            self._writer = PackWriter(self._pack_folder, self._temp_name(self._pack_folder),
                                      fsync=self.fsync, shared=self.group_shared)
        self._batch_depth += 1
        try:
            yield
            if outermost:
                with self._writing():
                    self._publish_batch()
        except BaseException:
            if outermost:
                self._writer.abort()
                self._drop_pending()
            raise
        finally:
            self._batch_depth -= 1
            if outermost:
                self._writer = None
                self._freshened_packs.clear()
        if outermost:
            self.flush()

    def _publish_batch(self) -> None:
        """The batch's pack, or (a small batch) its frames as loose files,
        which join the objects flush() makes durable."""
        writer = self._writer
        if writer.finish() is not None:
            if self.fsync:
                fsync_dir(self._root)  # the pack folder's own entry
            self._packs_stale = True  # loaded on next need, once the writer is gone
        for oid, frame in writer.held_frames().items():
            self._put_loose(oid, frame)

    def flush(self) -> None:
        """Make the batch's loose objects durable under their temporary
        names, rename them into place, then make the renames durable."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        many = len(pending) > SYNCFS_THRESHOLD
        try:
            if many:
                sync_filesystem(self.root)
            else:
                for temp in pending.values():
                    _fsync_file(temp)
            for oid, temp in pending.items():
                self._rename_into_place(temp, oid)
        except BaseException:
            for temp in pending.values():  # those renamed already are gone from these names
                remove_quietly(temp)
            raise
        if many:
            sync_filesystem(self.root)
            return
        for folder in sorted({os.path.dirname(self._path(oid)) for oid in pending}):
            fsync_dir(folder)
        fsync_dir(self._root)

    def _drop_pending(self) -> None:
        """A failed batch: its objects were never renamed into place."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for temp in pending.values():
            remove_quietly(temp)


def _without_gone_base(frame: bytes, gone: set[bytes]) -> bytes:
    """A frame to copy into a pack rewritten without the objects `gone`: a
    delta whose base is among them (deleted by hand: gc spares bases) is
    written in the first form, which names its base by id, so that it is
    read wherever its base is found, or reported with it missing."""
    parts = codec.delta_parts(frame) if frame[:1] and frame[0] & codec.DETACHED else None
    if parts is not None and parts[2] in gone:
        return codec.first_form_delta(frame)
    return frame


def _refresh_whole_file(path: str) -> bool:
    """Refresh the mtime of a loose object file, if there is one and it
    holds a whole zstd frame: a file cut short (by a crash, on a file system
    that kept the name but not the data) is no stored object, and storing
    the object again replaces it. Costs a read per zstd block, not a decode."""
    try:
        fd = open_regular(path, follow=False)  # a FIFO there is no object: never waited on
    except (FileNotFoundError, NotRegularFileError):
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink is no object either
            return False
        raise
    try:
        size = os.fstat(fd).st_size
        if codec.frame_length(lambda at, n: os.pread(fd, n, at), size) is None:
            return False
        os.utime(fd)
        return True
    finally:
        os.close(fd)


def _current_mtime(path: str, pack: Pack) -> float:
    """A pack's mtime as it is now: a writer (maybe in another process) that
    found an object in it since it was opened has freshened it."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:  # replaced since: it is read through the open file
        return pack.mtime


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: The fan-out folders gc --auto counts loose objects in (DiskStore.loose_and_packs).
_SAMPLED_FANOUTS = [f"{n:02x}" for n in range(0x07, 0x100, 0x10)]

#: Where MemoryStore's copies are (OnDisk.where).
MEMORY = "memory"


class MemoryStore(ObjectStore):
    """Frames in a dict: the same contract as DiskStore, nothing on disk."""

    def __init__(self, *, level: int = 3, large_level: int = 1):
        super().__init__(level=level, large_level=large_level)
        self.frames: dict[str, bytes] = {}
        self.mtimes: dict[str, float] = {}  # when stored or freshened, as gc reads an mtime

    def has(self, oid: str) -> bool:
        self._check_id(oid)
        return oid in self.frames

    def freshen(self, oid: str) -> bool:
        if not self.has(oid):
            return False
        self.mtimes[oid] = time.time()
        return True

    def _open_frame(self, oid: str, copy: int = 0) -> BinaryIO:
        self._check_id(oid)
        if copy:
            raise MissingObjectError(f"object {oid} is missing", oid)
        try:
            return io.BytesIO(self.frames[oid])
        except KeyError:
            raise MissingObjectError(f"object {oid} is missing", oid) from None

    def _new_temp(self):
        buffer = _KeepOnClose()
        return buffer, buffer

    def _publish(self, temp_token, oid: str) -> None:
        self.frames[oid] = temp_token.kept
        self.mtimes[oid] = time.time()

    def _discard(self, temp_token) -> None:
        pass

    def delete(self, oid: str) -> None:
        self._check_id(oid)
        self._bases.clear()
        self.frames.pop(oid, None)
        self.mtimes.pop(oid, None)

    def _write_pack(self, frames: Iterator[tuple[str, bytes]]) -> str | None:
        # checked whole before any is stored: nothing is published on an error
        frames = list(frames)
        now = time.time()
        for oid, frame in frames:
            self.frames[oid] = frame
            self.mtimes[oid] = now
        return MEMORY if frames else None

    def _delta_bases_in(self, where: str) -> dict[str, str]:
        if where != MEMORY:
            return {}
        bases = {}
        for oid, frame in list(self.frames.items()):
            base = _base_or_none(frame)
            if base is not None:
                bases[oid] = base
        return bases

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.frames))

    def stored_size(self, oid: str) -> int:
        self._check_id(oid)
        try:
            return len(self.frames[oid])
        except KeyError:
            raise MissingObjectError(f"object {oid} is missing", oid) from None

    def stored_objects(self) -> Iterator[OnDisk]:
        for oid, frame in list(self.frames.items()):
            yield OnDisk(oid, len(frame), self.mtimes.get(oid, 0.0), MEMORY)

    def delete_stored(self, doomed: Iterable[OnDisk]) -> None:
        doomed = list(doomed)
        spared = set(self.needed_bases(doomed))
        self._bases.clear()
        for obj in doomed:
            if obj.where == MEMORY and obj not in spared:
                self.frames.pop(obj.id, None)
                self.mtimes.pop(obj.id, None)

    def temp_files(self) -> Iterator[TempFile]:
        return iter(())  # a crashed writer leaves nothing in memory

    def delete_temp_files(self, leftovers: Iterable[TempFile]) -> None:
        pass

    def damaged_packs(self) -> dict[str, str]:
        return {}


class _StoreWrites:
    """The part of a store's temporary file that a download writes through
    (what RetryingBackend.get_range_into needs, to start a range again):
    its failures are the store's (StoreWriteError), not the download's."""

    def __init__(self, out: BinaryIO, writing: Callable):
        self._out = out
        self._store_writing = writing

    def write(self, data) -> int:
        with self._store_writing():
            return self._out.write(data)

    def tell(self) -> int:
        return self._out.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._out.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        with self._store_writing():
            return self._out.truncate(size)


class _KeepOnClose(io.BytesIO):
    kept = b""

    def close(self) -> None:
        if not self.closed:
            self.kept = self.getvalue()
        super().close()


__all__ = ["ObjectStore", "DiskStore", "MemoryStore", "OnDisk", "TempFile", "SizeChangedError", "KINDS"]
