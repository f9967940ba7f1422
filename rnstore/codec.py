"""The only user of zstandard: an object in, one zstd frame out, and back.

Decompressed, every stored object is a header line and a body::

    b"rn1 " KIND b" " REPR b" " SIZE b"\\n" BODY

KIND is blob, tree or snapshot; REPR is the body's representation (today only
"raw": BODY is the payload itself, SIZE bytes long). A later representation
(a chunk list for large files, say) changes REPR, never an object's id, which
is always the SHA-256 of the payload. The zstd frame records its content size
and a checksum. Reading is bounded: a frame that decodes past its declared size
is corrupt, whatever it would expand to.
"""

from __future__ import annotations

import io
import os
import re
import threading
from typing import BinaryIO, Iterator

import zstandard

from .errors import CorruptObjectError
from .objects import KINDS

FORMAT_TAG = b"rn1"
RAW = b"raw"
HEADER_MAX = 64
CHUNK = 1 << 20
#: Trees and snapshots are read whole; past this a declared size is refused.
MAX_METADATA_SIZE = 256 << 20

_HEADER = re.compile(rb"rn1 (blob|tree|snapshot) (raw) (0|[1-9][0-9]{0,19})\n\Z")
_local = threading.local()


def encode_header(kind: str, size: int) -> bytes:
    assert kind in KINDS
    return b"%s %s %s %d\n" % (FORMAT_TAG, kind.encode(), RAW, size)


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=True
        )
    return cctx


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx = getattr(_local, "decompressor", None)
    if dctx is None:
        dctx = _local.decompressor = zstandard.ZstdDecompressor()
    return dctx


def compress(kind: str, payload: bytes, level: int) -> bytes:
    """One whole object as one zstd frame."""
    return _compressor(level).compress(encode_header(kind, len(payload)) + payload)


class FrameWriter:
    """Streams one object of a known size into `out` as one zstd frame."""

    def __init__(self, out: BinaryIO, kind: str, size: int, level: int):
        header = encode_header(kind, size)
        self._writer = _compressor(level).stream_writer(
            out, size=len(header) + size, closefd=False
        )
        self._writer.write(header)

    def write(self, data: bytes) -> None:
        """Raises ValueError past the declared size."""
        try:
            self._writer.write(data)
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from None

    def close(self) -> None:
        """Ends the frame; raises ValueError if fewer or more bytes than
        declared were written (zstd checks the pledged size)."""
        try:
            # close() ends the frame itself: a flush(FLUSH_FRAME) first would
            # end it there and make close() write a second, empty frame.
            self._writer.close()
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from None


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The longest file tail accepted as the empty frame that rnstore
#: 0.1.0.dev0 wrote after every object streamed in (over 4 MiB): 13 bytes.
_LEGACY_TAIL_MAX = 32


def frame_length(read_at, size: int) -> int | None:
    """The length of the zstd frame at the start of `size` bytes that
    `read_at(offset, n)` reads, found by walking its block headers without
    decoding anything; None when those bytes do not hold a whole frame
    (cut short, empty, or not zstd). Cheap: one small read per block."""
    head = read_at(0, 6)
    if len(head) < 6 or head[:4] != ZSTD_MAGIC:
        return None
    descriptor = head[4]
    if descriptor & 0x08:  # the reserved bit
        return None
    single_segment = bool(descriptor & 0x20)
    content_size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03] + content_size_bytes
    checksum = 4 if descriptor & 0x04 else 0
    while True:
        block = read_at(at, 3)
        if len(block) < 3:
            return None
        value = int.from_bytes(block, "little")
        block_type = (value >> 1) & 0x03
        if block_type == 3:  # reserved
            return None
        at += 3 + (1 if block_type == 1 else value >> 3)  # an RLE block holds one byte
        if at > size:
            return None
        if value & 0x01:  # the last block
            break
    at += checksum
    return at if at <= size else None


def is_legacy_empty_frame(tail: bytes) -> bool:
    """The empty zstd frame that rnstore 0.1.0.dev0 once wrote after the frame
    of every streamed object; readers accept it (FORMAT.md)."""
    if not tail or len(tail) > _LEGACY_TAIL_MAX:
        return False
    if frame_length(lambda at, n: tail[at:at + n], len(tail)) != len(tail):
        return False
    try:
        return (zstandard.get_frame_parameters(tail).content_size == 0
                and _decompressor().decompress(tail) == b"")
    except zstandard.ZstdError:
        return False


class FrameReader:
    """Reads one stored object from `source`: the header first, then the
    body in bounded chunks. Never yields more than the declared size."""

    def __init__(self, source: BinaryIO, object_id: str | None = None):
        self.object_id = object_id
        start = source.tell()
        head = source.read(18)
        try:
            params = zstandard.get_frame_parameters(head)
        except zstandard.ZstdError:
            raise self._corrupt("not a zstd frame") from None
        self._check_one_frame(source, start)
        source.seek(start)
        self._reader = _decompressor().stream_reader(
            source, read_size=CHUNK, read_across_frames=False, closefd=False
        )
        first = self._read(HEADER_MAX)
        newline = first.find(b"\n")
        match = _HEADER.match(first[: newline + 1]) if newline >= 0 else None
        if match is None:
            raise self._corrupt("bad object header")
        self.kind = match.group(1).decode()
        self.size = int(match.group(3))
        header_len = newline + 1
        if params.content_size not in (zstandard.CONTENTSIZE_UNKNOWN, header_len + self.size):
            raise self._corrupt("frame size disagrees with the object header")
        self._pending = first[header_len:]
        self._remaining = self.size - len(self._pending)
        if self._remaining < 0:
            raise self._corrupt("object decodes past its declared size")

    def _check_one_frame(self, source: BinaryIO, start: int) -> None:
        """The file is exactly one whole frame (or that and the legacy empty
        frame): no bytes missing, none after it."""
        size = source.seek(0, 2) - start
        try:
            fd = source.fileno()
        except (AttributeError, io.UnsupportedOperation):  # in memory (a packed frame)
            fd = None

        def read_at(offset: int, n: int) -> bytes:
            if fd is not None:  # no buffer refilled per block header
                return os.pread(fd, n, start + offset)
            source.seek(start + offset)
            return source.read(n)

        length = frame_length(read_at, size)
        if length is None:
            raise self._corrupt("truncated object")
        if length != size and not is_legacy_empty_frame(read_at(length, size - length)):
            raise self._corrupt("more than one zstd frame, or bytes after the frame")

    def _corrupt(self, why: str) -> CorruptObjectError:
        name = f"object {self.object_id}" if self.object_id else "object"
        return CorruptObjectError(f"{name} is corrupt: {why}", self.object_id)

    def _read(self, n: int) -> bytes:
        try:
            return self._reader.read(n)
        except zstandard.ZstdError as exc:
            raise self._corrupt(f"zstd: {exc}") from None

    def chunks(self) -> Iterator[bytes]:
        """The body, in chunks of at most CHUNK bytes; checks the frame ends
        exactly at the declared size."""
        if self._pending:
            yield self._pending
            self._pending = b""
        while self._remaining > 0:
            data = self._read(min(CHUNK, self._remaining))
            if not data:
                raise self._corrupt("truncated object")
            self._remaining -= len(data)
            yield data
        if self._read(1):
            raise self._corrupt("object decodes past its declared size")

    def read_all(self, limit: int = MAX_METADATA_SIZE) -> bytes:
        if self.size > limit:
            raise self._corrupt(f"declared size {self.size} is over the limit of {limit}")
        return b"".join(self.chunks())
