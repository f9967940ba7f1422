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
            self._writer.flush(zstandard.FLUSH_FRAME)
            self._writer.close()
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from None


class FrameReader:
    """Reads one stored object from `source`: the header first, then the
    body in bounded chunks. Never yields more than the declared size."""

    def __init__(self, source: BinaryIO, object_id: str | None = None):
        self.object_id = object_id
        start = source.tell()
        head = source.read(18)
        source.seek(start)
        try:
            params = zstandard.get_frame_parameters(head)
        except zstandard.ZstdError:
            raise self._corrupt("not a zstd frame") from None
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
