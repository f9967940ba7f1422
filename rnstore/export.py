"""export: a snapshot as an archive (zip, tar, tar.gz, tar.zst) or a folder.

Archives are deterministic: the same snapshot (and paths) gives the same
bytes every time, on any machine with the same zlib and zstd versions:

- entries in path order, each folder (with a trailing "/") before what it
  holds, folders included, so `tar -tf` lists them sorted;
- every entry's mtime is the snapshot's time; uid and gid 0, empty user and
  group names; modes 0644/0755 for files, 0755 for folders, 0777 for links;
- tar in GNU format (long names in GNU long-name records, names as raw
  bytes, so names that are not UTF-8 round-trip); no pax headers;
- gzip with mtime 0 and no file name in its header, level GZIP_LEVEL;
- zstd as one frame with a checksum at level ZSTD_LEVEL, single-threaded
  (zstd's multi-threaded format held 20-60 MB more
  memory on a 283 MB tree);
- zip: date from the snapshot's time (UTC), `create_system` 3 (Unix) with
  the Unix mode in `external_attr`, symlinks as S_IFLNK entries holding the
  target, names as raw bytes (the UTF-8 flag set when they are UTF-8).

Three threads share the work: one walks the trees and reads the small blobs
ahead (decompressing and hashing release the GIL), one writes the tar, and
one compresses it (zlib and zstd release the GIL too). The tar headers are written here, not with
tarfile: a TarInfo per entry cost more than reading the blobs.

Memory stays bounded: blobs are streamed in chunks, and each thread runs at
most a few MiB ahead of the next. Into a file, the archive
is written under a temporary name and renamed at the end, so a missing or
corrupt object leaves no output; each blob is verified as it streams. Into a
stream (`-o -`), each blob is verified before any of its bytes are written,
and a failure mid-way still raises.

The `dir` format is `checkout --target` (rnstore.checkout.materialise).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, NamedTuple

from .checkout import WHOLE_BLOB, materialise, whole_blob
from .errors import BadInputError, CorruptObjectError, InvalidValueError, ObjectError
from .fsutil import left_by_dead_process, remove_quietly, temp_name_for
from .objects import MODE_EXEC, MODE_LINK, MODE_TREE
from .trees import check_blob_size, check_link_target, shorten
from .progress import NO_PROGRESS, Progress
from .revparse import resolve_snapshot
from .trees import lookup
from .worktree import relative_pathspecs, under
from .views import WorkspaceView

FORMATS = ("zip", "tar", "tar.gz", "tar.zst", "dir")
_EXTENSIONS = ((".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar.zst", "tar.zst"),
               (".tzst", "tar.zst"), (".tar", "tar"), (".zip", "zip"))
GZIP_LEVEL = 6
ZSTD_LEVEL = 3


@dataclass
class ExportResult:
    snapshot: str
    format: str
    #: the file or folder written, or "-" for a stream
    output: str
    #: files and links written
    files: int
    folders: int
    bytes: int


def format_for(output: str | os.PathLike | None, format: str | None, *, stream: bool = False) -> str:
    """The format to write: `format` if given, else from OUT's extension;
    a tar for a stream."""
    if format is not None:
        if format not in FORMATS:
            raise InvalidValueError(f"unknown export format '{format}'",
                                    hints=[f"formats: {', '.join(FORMATS)}"])
        if stream and format == "dir":
            raise InvalidValueError("the dir format writes a folder: give the folder's name as the output, not a stream")
        return format
    if stream:
        return "tar"
    name = os.fsdecode(output).lower()
    for extension, fmt in _EXTENSIONS:
        if name.endswith(extension):
            return fmt
    raise InvalidValueError(
        f"cannot tell the archive format from '{os.fsdecode(output)}'",
        hints=["name it .zip, .tar, .tar.gz, .tgz, .tar.zst or .tzst, or pass "
               "format=NAME (zip, tar, tar.gz, tar.zst or dir)"])


def export(repo: WorkspaceView, rev: str, output: str | os.PathLike | BinaryIO, *, format: str | None = None,
           paths: Iterable[str | os.PathLike] | None = None, progress: Progress = NO_PROGRESS,
           cwd: Path | None = None) -> ExportResult:
    """Write snapshot `rev` (or only `paths`, relative to `cwd`) to `output`:
    a file name, a folder name for the dir format, or a writable binary
    stream (a tar unless `format` says tar.gz, tar.zst or zip)."""
    stream = output if hasattr(output, "write") else None
    fmt = format_for(None if stream else output, format, stream=stream is not None)
    snapshot_id = resolve_snapshot(repo, rev)
    paths = list(paths or [])
    prefixes = relative_pathspecs(repo.root, paths, cwd) if paths else None
    if fmt == "dir":
        materialise(repo, snapshot_id, Path(output), prefixes, progress=progress)
        # what the folder holds, counted as an archive counts it: the same
        # whether this run wrote every file or found them there already
        result = ExportResult(snapshot_id, fmt, os.fsdecode(output), 0, 0, 0)
        for entry in _walk(repo.store, repo.store.get_snapshot(snapshot_id).tree, prefixes):
            if entry.mode == MODE_TREE:
                result.folders += 1
                continue
            result.files += 1
            result.bytes += entry.size if entry.mode != MODE_LINK else 0
        return result

    snapshot = repo.store.get_snapshot(snapshot_id)
    mtime = _epoch(snapshot.time)
    _check_prefixes(repo.store, snapshot.tree, prefixes, snapshot_id)
    final = None if stream is not None else _check_output(Path(output))

    def entries() -> Iterator[_Entry]:
        return _walk(repo.store, snapshot.tree, prefixes)

    if progress is not NO_PROGRESS:
        files = total = 0
        for entry in entries():
            if entry.mode != MODE_TREE:
                files, total = files + 1, total + entry.size
        progress.start("export", files, total)
    result = ExportResult(snapshot_id, fmt, "-" if stream else os.fsdecode(output), 0, 0, 0)
    try:
        if stream is not None:
            _write_archive(repo.store, fmt, stream, entries(), mtime, result, progress,
                           verify_first=True)
            stream.flush()
            return result
        _remove_stale_temps(final)
        temp = temp_name_for(final)
        try:
            with open(temp, "xb") as fh:
                _write_archive(repo.store, fmt, fh, entries(), mtime, result, progress,
                               verify_first=False)
            os.replace(temp, final)
        except BaseException:
            remove_quietly(temp)
            raise
        return result
    finally:
        progress.finish()


def _remove_stale_temps(final: Path) -> None:
    """Temporary archives (`.tmp-NAME-PID-XXXXXXXX`) that a killed export to
    the same name left beside it."""
    pattern = re.compile(re.escape(temp_name_for(final).name.rsplit("-", 2)[0]) + r"-(\d+)-[0-9a-f]{8}\Z")
    try:
        names = os.listdir(final.parent)
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match and left_by_dead_process(final.parent / name, match.group(1)):
            remove_quietly(final.parent / name)


def _check_output(final: Path) -> Path:
    if final.is_dir():
        raise InvalidValueError(f"{final} is a folder",
                                hints=['give an archive name, or pass format="dir"'])
    if not final.absolute().parent.is_dir():
        raise InvalidValueError(f"the folder of {final} does not exist")
    return final.absolute()


# -- what goes in ---------------------------------------------------------------------


class _Entry(NamedTuple):
    path: bytes
    mode: str
    id: str
    size: int


def _sort_key(entry) -> bytes:
    return entry.name + b"/" if entry.mode == MODE_TREE else entry.name


def _walk_tree(store, tree_id: str, prefix: bytes) -> Iterator[_Entry]:
    """Everything below a tree, depth first in path order, without recursion
    (a crafted tree may nest deeper than Python's stack)."""
    stack: list[Iterator] = [iter(_read_tree(store, tree_id, prefix))]
    while stack:
        for entry, path in stack[-1]:
            yield _Entry(path, entry.mode, entry.id, entry.size)
            if entry.mode == MODE_TREE:
                stack.append(iter(_read_tree(store, entry.id, path + b"/")))
                break
        else:
            stack.pop()


def _read_tree(store, tree_id: str, prefix: bytes) -> list:
    try:
        tree = store.get_tree(tree_id)
    except ObjectError as exc:
        where = os.fsdecode(prefix) or "the root folder"
        raise exc.reworded(f"cannot export '{where}': {exc}", tree_id,
                           hints=["`rnstore fsck` lists damaged objects"]) from None
    return [(entry, prefix + entry.name) for entry in sorted(tree.entries, key=_sort_key)]


def _check_prefixes(store, tree: str, prefixes: list[bytes] | None, snapshot_id: str) -> None:
    for prefix in prefixes or []:
        if prefix and lookup(store, tree, prefix) is None:
            raise BadInputError(
                f"path '{os.fsdecode(prefix)}' is not in snapshot {snapshot_id[:12]}",
                hints=["`rnstore ls-tree -r REV` lists what it holds"])


def _walk(store, tree: str, prefixes: list[bytes] | None) -> Iterator[_Entry]:
    """Every entry (folders included) in path order, or only those below
    `prefixes` and the folders that lead to them."""
    if prefixes is None or b"" in prefixes:
        yield from _walk_tree(store, tree, b"")
        return
    roots = sorted(set(prefixes), key=lambda p: p + b"/")
    emitted: set[bytes] = set()
    for prefix in roots:
        if any(other != prefix and under(prefix, [other]) for other in roots):
            continue  # covered by a shorter prefix
        parts = prefix.split(b"/")
        for depth in range(1, len(parts)):
            folder = b"/".join(parts[:depth])
            if folder not in emitted:
                emitted.add(folder)
                entry = lookup(store, tree, folder)
                yield _Entry(folder, MODE_TREE, entry.id, entry.size)
        entry = lookup(store, tree, prefix)
        yield _Entry(prefix, entry.mode, entry.id, entry.size)
        if entry.mode == MODE_TREE:
            yield from _walk_tree(store, entry.id, prefix + b"/")


def _epoch(time_text: str) -> int:
    moment = datetime.strptime(time_text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


@contextlib.contextmanager
def _blob(store, entry: _Entry, verify_first: bool, read: bytes | ObjectError | None = None
          ) -> Iterator[tuple[int, Iterator[bytes]]]:
    """(size, chunks) of a blob. The chunks are verified: with
    `verify_first` before the first is handed out, otherwise by a hash check
    after the last (so the caller must read them all). A small blob is read
    whole, so verified first either way; `read` is its bytes (or the error
    reading them) when they were read ahead (_read_ahead)."""
    try:
        if read is not None:
            if isinstance(read, ObjectError):
                raise read
            yield len(read), iter((read,))
        elif entry.size <= WHOLE_BLOB:
            data = whole_blob(store, entry)
            yield len(data), iter((data,))
        elif verify_first:
            size = store.header(entry.id)[1]
            check_blob_size(size, entry)
            yield size, store.iter_blob(entry.id)
        else:
            with store.open_verified(entry.id) as reader:
                check_blob_size(reader.size, entry)
                yield reader.size, reader.chunks()
    except ObjectError as exc:
        raise exc.reworded(f"cannot export '{shorten(entry.path)}': {exc}", entry.id,
                           hints=["`rnstore fsck` lists damaged objects"]) from None


#: How far _read_ahead may run ahead of the archive, in bytes read; it hands
#: entries over in groups of up to AHEAD_GROUP (one lock per group, not per entry).
AHEAD_BYTES = 4 << 20
AHEAD_GROUP = 64
#: Seconds an abandoned export waits for its threads (daemons: they go with the process).
ABANDON_WAIT = 30.0


def _read_ahead(store, entries: Iterable[_Entry]) -> Iterator[tuple[_Entry, bytes | ObjectError | None]]:
    """The entries, each small blob with its bytes (verified), read on a
    thread of its own a bounded way ahead: decompressing and hashing release
    the GIL, so they run beside the writing of the archive. An error is
    raised, or handed out with its entry, in the entries' order."""
    import threading  # loaded for archives only
    from collections import deque
    ready = threading.Condition()
    groups: deque = deque()
    state = {"bytes": 0, "done": False, "stop": False}

    def hand_over(group: list, size: int) -> bool:
        with ready:
            while groups and state["bytes"] + size > AHEAD_BYTES and not state["stop"]:
                ready.wait(0.1)  # bounded: a Ctrl-C may cost the notify that ends the wait
            groups.append((group, size))
            state["bytes"] += size
            ready.notify_all()
            return not state["stop"]

    def read() -> None:
        group: list = []
        size = 0
        try:
            for entry in entries:
                data: bytes | ObjectError | None = None
                if entry.mode not in (MODE_TREE, MODE_LINK) and entry.size <= WHOLE_BLOB:
                    try:
                        data = whole_blob(store, entry)
                        size += len(data)
                    except ObjectError as exc:
                        data = exc
                group.append((entry, data))
                if len(group) >= AHEAD_GROUP or size >= AHEAD_BYTES // 4:
                    if not hand_over(group, size):
                        return
                    group, size = [], 0
            hand_over(group, size)
        except BaseException as exc:  # noqa: BLE001 - raised by the consuming thread, in order
            group.append((None, exc))
            hand_over(group, size)
        finally:
            with ready:
                state["done"] = True
                ready.notify_all()

    reader = threading.Thread(target=read, name="export-reader", daemon=True)
    reader.start()
    try:
        while True:
            with ready:
                while not groups and not state["done"]:
                    ready.wait()
                if not groups:
                    return
                group, size = groups.popleft()
                state["bytes"] -= size
                ready.notify_all()
            for entry, data in group:
                if entry is None:
                    raise data
                yield entry, data
    finally:
        with ready:
            state["stop"] = True
            ready.notify_all()
        reader.join(timeout=ABANDON_WAIT)


def _link_target(store, entry: _Entry) -> bytes:
    """A symlink's target, held to checkout's rules (check_link_target)."""
    try:
        target = b"".join(store.iter_blob(entry.id))
        check_link_target(target, entry)
    except ObjectError as exc:
        raise exc.reworded(f"cannot export '{shorten(entry.path)}': {exc}", entry.id,
                           hints=["`rnstore fsck` lists damaged objects"]) from None
    return target


class _ChunkReader:
    """A read() over verified chunks (a large blob fetched from a remote)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = iter(chunks)
        self._buffer = memoryview(next(self._chunks, b""))

    def read(self, size: int = -1) -> bytes:
        parts = []
        while size != 0:
            if not self._buffer:
                try:
                    self._buffer = memoryview(next(self._chunks))
                except StopIteration:
                    break
            take = self._buffer if size < 0 else self._buffer[:size]
            parts.append(take)
            self._buffer = self._buffer[len(take):]
            if size > 0:
                size -= len(take)
        return b"".join(parts)

    def finish(self, oid: str) -> None:
        """Read past the end, so that the hash check after the last chunk runs."""
        if self._buffer or any(self._chunks):
            raise CorruptObjectError(f"object {oid} is longer than its header says", oid)


# -- archive writers --------------------------------------------------------------------


def _write_archive(store, fmt: str, raw: BinaryIO, entries: Iterable[_Entry], mtime: int,
                   result: ExportResult, progress: Progress, *, verify_first: bool) -> None:
    if fmt == "zip":
        _write_zip(store, raw, entries, mtime, result, progress, verify_first)
        return
    sink, finish, abandon = _compressed(raw, fmt)
    out = _Batches(sink.write)
    try:
        _write_tar(store, out, entries, mtime, result, progress, verify_first)
        out.close()
    except BaseException:
        out.abandon()
        abandon()
        raise
    finish()


def _compressed(raw: BinaryIO, fmt: str):
    """A file object compressing into `raw`, the call that ends it (leaving
    `raw` open), and the call that drops it after a failure, writing nothing
    more (no trailer that would make a truncated archive look whole)."""
    if fmt == "tar":
        return raw, lambda: None, lambda: None
    if fmt == "tar.gz":
        import gzip  # loaded for the archive format asked for
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0)

        def abandon() -> None:
            gz.fileobj = None  # GzipFile.close() then writes nothing
        return gz, gz.close, abandon
    if fmt == "tar.zst":
        import zstandard  # loaded for the archive format asked for
        writer = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).stream_writer(
            raw, closefd=False)

        def finish() -> None:
            writer.flush(zstandard.FLUSH_FRAME)
            writer.close()
        return writer, finish, lambda: None
    raise InvalidValueError(f"unknown archive format '{fmt}'")


# -- tar ----------------------------------------------------------------------------------
#
# Written here rather than with tarfile: a TarInfo per entry (a copy, a dict,
# a checksum over a struct unpack) cost more than reading the blobs. The bytes
# are tarfile's GNU format, field for field (tests/test_export.py compares).

_BLOCK = 512
_RECORD = 20 * _BLOCK  # an archive ends on a whole record, as tar and tarfile write it
_NAME_FIELD = 100
_GNU_MAGIC = b"ustar  \0"
_LONG_LINK = b"././@LongLink"
_REGULAR, _LINK, _FOLDER, _LONG_NAME, _LONG_TARGET = b"0", b"2", b"5", b"L", b"K"
_ZEROS = bytes(_BLOCK)


def _number(value: int, digits: int) -> bytes:
    """A numeric field: octal, or GNU base-256 when it does not fit."""
    if 0 <= value < 8 ** (digits - 1):
        return b"%0*o\0" % (digits - 1, value)
    if not -256 ** (digits - 1) <= value < 256 ** (digits - 1):
        raise InvalidValueError(f"{value} does not fit in a tar header")
    first, value = (0o200, value) if value >= 0 else (0o377, 256 ** digits + value)
    return bytes([first]) + value.to_bytes(digits, "big")[1:]


def _header_block(name: bytes, perm: int, size: int, mtime: int, kind: bytes, target: bytes) -> bytes:
    block = b"".join((
        name[:_NAME_FIELD].ljust(_NAME_FIELD, b"\0"), _number(perm, 8), b"0000000\0", b"0000000\0",
        _number(size, 12), _number(mtime, 12), b"        ", kind,
        target[:_NAME_FIELD].ljust(_NAME_FIELD, b"\0"), _GNU_MAGIC)).ljust(_BLOCK, b"\0")
    return b"%s%06o\0%s" % (block[:148], sum(block), block[155:])


def _tar_header(name: bytes, perm: int, size: int, mtime: int, kind: bytes, target: bytes = b"") -> bytes:
    """An entry's header: GNU long-name (and long-target) records first when
    they do not fit in 100 bytes."""
    longs = b""
    for value, record in ((target, _LONG_TARGET), (name, _LONG_NAME)):
        if len(value) > _NAME_FIELD:
            longs += _header_block(_LONG_LINK, 0, len(value) + 1, 0, record, b"") + _padded(value + b"\0")
    return longs + _header_block(name, perm, size, mtime, kind, target)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % _BLOCK)


class _Batches:
    """Gathers the archive's many small pieces into writes of about BATCH
    bytes, handed to `write` on a thread of their own: compressing (zlib and
    zstd release the GIL) runs beside the reading of the next blobs. At most
    QUEUED batches wait, so memory stays bounded."""

    BATCH = 1 << 20
    QUEUED = 2
    POLL = 0.1  # seconds an idle writer waits before looking at the stop flag again

    def __init__(self, write):
        import queue
        import threading
        self._parts: list = []
        self._pending = 0
        self.offset = 0
        self._error: BaseException | None = None
        self._queue = queue.Queue(self.QUEUED)
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._drain, args=(write, queue.Empty), name="export-writer",
                                        daemon=True)
        self._writer.start()

    def _drain(self, write, empty) -> None:
        while not self._stop.is_set():
            try:
                batch = self._queue.get(timeout=self.POLL)
            except empty:
                continue
            if batch is None:
                return
            if self._error is None:
                try:
                    write(batch)
                except BaseException as exc:  # noqa: BLE001 - handed to the producing thread
                    self._error = exc

    def add(self, data) -> None:
        self._parts.append(data)
        self._pending += len(data)
        self.offset += len(data)
        if self._pending >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._error is not None:
            raise self._error
        if self._parts:
            self._queue.put(self._parts[0] if len(self._parts) == 1 else b"".join(self._parts))
            self._parts, self._pending = [], 0

    def close(self) -> None:
        """Write what is gathered and wait for the writes; raises their error."""
        self._flush()
        self._queue.put(None)
        self._writer.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Drop what is gathered; stop the writer after the write it is in.
        Not through the queue: a KeyboardInterrupt inside one of its calls
        may have left it half-updated (a Ctrl-C once left the writer waiting
        for ever on a queue that held its stop mark), and not waiting for
        ever: the writer is a daemon thread, gone with the process."""
        self._parts = []
        self._error = self._error or _Abandoned()
        self._stop.set()
        self._writer.join(timeout=ABANDON_WAIT)


class _Abandoned(Exception):
    pass


def _write_tar(store, out: _Batches, entries: Iterable[_Entry], mtime: int,
               result: ExportResult, progress: Progress, verify_first: bool) -> None:
    for entry, read in _read_ahead(store, entries):
        if entry.mode == MODE_TREE:
            out.add(_tar_header(entry.path + b"/", 0o755, 0, mtime, _FOLDER))
            result.folders += 1
            continue
        if entry.mode == MODE_LINK:
            out.add(_tar_header(entry.path, 0o777, 0, mtime, _LINK, _link_target(store, entry)))
        else:
            perm = 0o755 if entry.mode == MODE_EXEC else 0o644
            with _blob(store, entry, verify_first, read) as (size, chunks):
                first = next(chunks, b"")  # with verify_first, verified before the header
                out.add(_tar_header(entry.path, perm, size, mtime, _REGULAR))
                out.add(first)
                for chunk in chunks:  # read to the end: the hash check follows the last
                    out.add(chunk)
            out.add(bytes(-size % _BLOCK))
            result.bytes += size
        result.files += 1
        progress.advance(1, entry.size)
    out.add(_ZEROS * 2)
    out.add(bytes(-out.offset % _RECORD))


_raw_name_info = None


def _zip_info(path: bytes, date_time: tuple):
    """A zipfile.ZipInfo whose name is written as the raw bytes `path` (with
    the UTF-8 flag when they are UTF-8 and not ASCII), made by a Unix host."""
    global _raw_name_info
    if _raw_name_info is None:
        import zipfile  # loaded for the archive format asked for

        class RawNameInfo(zipfile.ZipInfo):
            __slots__ = ("raw_name",)

            # zipfile's undocumented hook for a name's bytes and flags, used for
            # the local header and the central directory alike; checked by
            # tests/test_pinned_dependencies.py for the Pythons pyproject.toml allows
            def _encodeFilenameFlags(self):  # noqa: N802 - overrides zipfile's
                try:
                    self.raw_name.decode("ascii")
                    return self.raw_name, self.flag_bits
                except UnicodeDecodeError:
                    pass
                try:
                    self.raw_name.decode("utf-8")
                    return self.raw_name, self.flag_bits | 0x800
                except UnicodeDecodeError:
                    return self.raw_name, self.flag_bits

        _raw_name_info = RawNameInfo
    info = _raw_name_info(path.decode("utf-8", "surrogateescape"), date_time)
    info.raw_name = path
    info.create_system = 3
    return info


def _zip_date(mtime: int) -> tuple:
    moment = datetime.fromtimestamp(mtime, timezone.utc)
    year = min(max(moment.year, 1980), 2107)
    if year != moment.year:
        return (year, 1, 1, 0, 0, 0)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _write_zip(store, raw: BinaryIO, entries: Iterable[_Entry], mtime: int,
               result: ExportResult, progress: Progress, verify_first: bool) -> None:
    import zipfile  # loaded for the archive format asked for
    date_time = _zip_date(mtime)
    archive = zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
    try:
        _add_zip_entries(store, archive, entries, date_time, result, progress, verify_first)
    except BaseException:
        archive.fp = None  # dropped without a central directory: no archive that looks whole
        raise
    archive.close()


def _add_zip_entries(store, archive, entries: Iterable[_Entry], date_time: tuple,
                     result: ExportResult, progress: Progress, verify_first: bool) -> None:
    import zipfile  # loaded for the archive format asked for
    for entry, read in _read_ahead(store, entries):
        if entry.mode == MODE_TREE:
            info = _zip_info(entry.path + b"/", date_time)
            info.external_attr = ((stat.S_IFDIR | 0o755) << 16) | 0x10
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, b"")
            result.folders += 1
            continue
        info = _zip_info(entry.path, date_time)
        if entry.mode == MODE_LINK:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, _link_target(store, entry))
        else:
            perm = 0o755 if entry.mode == MODE_EXEC else 0o644
            info.external_attr = (stat.S_IFREG | perm) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with _blob(store, entry, verify_first, read) as (size, chunks):
                info.file_size = size
                chunks = iter(chunks)
                first = next(chunks, b"")  # with verify_first, verified before the entry starts
                with archive.open(info, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as out:
                    out.write(first)
                    for chunk in chunks:  # read to the end: the hash check follows
                        out.write(chunk)
            result.bytes += size
        result.files += 1
        progress.advance(1, entry.size)


__all__ = ["ExportResult", "FORMATS", "export", "format_for"]
