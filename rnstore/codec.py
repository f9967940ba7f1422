"""The only user of zstandard: an object in, one zstd frame out, and back.

Decompressed, every stored object is a header line and a body::

    b"rn1 " KIND b" " REPR b" " SIZE b"\\n" BODY

KIND is blob, tree or snapshot; REPR is the body's representation:

- "raw": BODY is the payload itself, SIZE bytes long;
- "delta", with b" " BASE-ID after SIZE: BODY is a second zstd frame that
  decodes to the SIZE-byte payload with the payload of the object BASE-ID as
  a raw-content dictionary (zstd's "patch-from"; `zstd -d --patch-from=BASE`
  decodes it). Readers fetch the base through the store (store.py). Read,
  no longer written: see below.

A delta is now written as a *pack-local delta* (FORMAT.md, "Deltas"): in a
version 2 pack, a record of a kind byte, the payload's size, the distance
back to its base's record, and a magicless zstd frame. Out of its pack (a
frame being copied into another pack, read, or checked) it travels as a
*delta frame*: the same with the kind byte's high bit set and the base's raw
id in place of the distance (encode_delta). Only packs.py converts between
the two, since only a pack knows offsets.

A representation changes how the payload is stored, never an object's id,
which is always the SHA-256 of the payload. The zstd frame records its content
size and a checksum. Reading is bounded: a frame that decodes past its declared
size is corrupt, whatever it would expand to.
"""

from __future__ import annotations

import io
import os
import re
import threading
from typing import BinaryIO, Callable, Iterator

import zstandard

from .errors import CorruptObjectError
from .objects import KINDS, binary_tree, hex_tree

FORMAT_TAG = b"rn1"
RAW = b"raw"
DELTA = b"delta"
#: The longest header: a delta's ("rn1 snapshot delta SIZE BASE-ID\n") is 106 bytes.
HEADER_MAX = 128
CHUNK = 1 << 20
#: Trees and snapshots are read whole; past this a declared size is refused.
MAX_METADATA_SIZE = 256 << 20

#: Deltas are written and read only for payloads (and bases) up to this size:
#: rebuilding one holds its base and itself in memory.
DELTA_MAX_SIZE = 64 << 20
#: Readers refuse a chain of deltas longer than this (each one's base a
#: delta, down to a whole object) as corrupt: a loop included. Writers keep
#: to `pack.depth` (config.py), which may not exceed it.
MAX_CHAIN_DEPTH = 64
#: The kinds a delta may be: in a pack, any (a remote never holds deltas:
#: its snapshot records are whole frames); in the first form, which named
#: its kind in a header, blobs and trees only.
DELTA_KINDS = ("blob", "tree", "snapshot")
FIRST_FORM_DELTA_KINDS = ("blob", "tree")

#: The kind byte of a pack-local delta record, and of a delta frame (the
#: same with DETACHED set): never a zstd frame's first byte (0x28).
DELTA_CODES = {1: "blob", 2: "tree", 3: "snapshot", 4: "tree"}
_DELTA_CODE_OF = {"blob": 1, "tree": 2, "snapshot": 3}
#: A tree's delta made between the binary forms of the tree and its base
#: (objects.binary_tree: ids as 32 bytes, not 64 hex digits), 18% smaller;
#: only in a pack of version 3.
BINARY_TREE = 4
DETACHED = 0x80
#: A varint (LEB128) of at most this many bytes: 64 bits.
_VARINT_MAX = 10

_HEADER = re.compile(
    rb"rn1 (blob|tree|snapshot) (?:(raw) (0|[1-9][0-9]{0,19})|(delta) (0|[1-9][0-9]{0,19}) ([0-9a-f]{64}))\n\Z")
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


def encode_delta(kind: str, payload: bytes, base_id: str, base_payload: bytes, level: int) -> bytes:
    """A delta frame: the object's payload compressed against `base_payload`
    (the payload of the object `base_id`, which the caller has verified) as
    a raw-content dictionary, in a magicless zstd frame with its content
    size and without checksum (the rebuilt payload is hashed against its id),
    after the kind byte (DETACHED set), the size and the base's raw id.
    A tree whose payload and base have a binary form is compressed in that
    form (BINARY_TREE); its size stays the payload's.
    Only a pack stores it (as a record naming its base by distance,
    packs.py). The caller decides whether the delta is worth it (compare its
    length with compress()'s) and keeps FORMAT.md's rules: a delta is
    stored only in a pack, after its base in the same pack, within the
    chain depth."""
    if kind not in DELTA_KINDS:
        raise ValueError(f"a {kind} is never stored as a delta")
    if len(payload) > DELTA_MAX_SIZE or len(base_payload) > DELTA_MAX_SIZE:
        raise ValueError(f"deltas are limited to payloads and bases of {DELTA_MAX_SIZE} bytes")
    if len(base_id) != 64 or base_id.strip("0123456789abcdef"):
        raise ValueError(f"'{base_id}' is not an object id")
    code = _DELTA_CODE_OF[kind]
    source, dictionary = payload, base_payload
    if kind == "tree":
        binary, binary_base = binary_tree(payload), binary_tree(base_payload)
        if binary is not None and binary_base is not None:
            code, source, dictionary = BINARY_TREE, binary, binary_base
    inner = _delta_compressor(len(source), dictionary, level).compress(source)
    return bytes([code | DETACHED]) + encode_varint(len(payload)) + bytes.fromhex(base_id) + inner


def encode_varint(value: int) -> bytes:
    """LEB128: 7 bits a byte, least significant first, the high bit set on
    every byte but the last."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, offset after it) of the varint at `at`; ValueError when it
    runs past the end, past _VARINT_MAX bytes, or is not minimal (ends in a
    zero byte after others)."""
    value = shift = 0
    for position in range(at, min(len(data), at + _VARINT_MAX)):
        byte = data[position]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and position > at:
                raise ValueError("a varint that is not minimal")
            return value, position + 1
    raise ValueError("a varint cut short or too long")


def delta_parts(frame: bytes) -> tuple[str, int, bytes, int] | None:
    """(kind, size, raw base id, where the inner frame starts) of a delta
    frame; None when `frame` does not start with a delta frame's kind byte.
    ValueError when it does but is cut short."""
    kind = DELTA_CODES.get(frame[0] & ~DETACHED) if frame and frame[0] & DETACHED else None
    if kind is None:
        return None
    size, at = decode_varint(frame, 1)
    if len(frame) < at + 32:
        raise ValueError("a delta frame cut short in its base id")
    return kind, size, frame[at:at + 32], at + 32


def delta_record(frame: bytes, offset: int, base_offset: int) -> bytes:
    """The pack-local record of a delta frame written at `offset`, its base's
    record lying at `base_offset` (lower) in the same pack."""
    _, _, _, inner_at = delta_parts(frame)
    size_end = inner_at - 32
    return bytes([frame[0] & ~DETACHED]) + frame[1:size_end] + encode_varint(offset - base_offset) + frame[inner_at:]


def record_parts(record: bytes) -> tuple[int, int, int] | None:
    """(where the size varint ends, the distance back to the base, where the
    inner frame starts) of a pack-local delta record; None when `record` is
    not one (a whole frame). ValueError when it is cut short."""
    if not record or record[0] not in DELTA_CODES:
        return None
    _, size_end = decode_varint(record, 1)
    distance, inner_at = decode_varint(record, size_end)
    return size_end, distance, inner_at


def detached_frame(record: bytes, base_id: bytes) -> bytes:
    """The delta frame of a pack-local record whose base (found by its
    distance) has the raw id `base_id`."""
    size_end, _, inner_at = record_parts(record)
    return bytes([record[0] | DETACHED]) + record[1:size_end] + base_id + record[inner_at:]


def first_form_delta(frame: bytes) -> bytes:
    """A delta frame in the first form, which names its base by id on disk:
    for a delta whose pack is rewritten without its base (an object
    deleted by hand), so that it reads wherever its base is found, or
    reports it missing."""
    kind, size, base, inner_at = delta_parts(frame)
    header = b"%s %s %s %d %s\n" % (FORMAT_TAG, kind.encode(), DELTA, size, base.hex().encode())
    return _compressor(1).compress(header + ZSTD_MAGIC + frame[inner_at:])


def modern_delta(frame: bytes) -> bytes:
    """A delta frame of the first form (an "rn1 KIND delta SIZE BASE" header
    in a zstd frame) as a delta frame of today's: the same inner frame, less
    its magic number and checksum. Any other frame is returned as it is."""
    try:
        content = _decompressor().decompressobj().decompress(frame)
    except zstandard.ZstdError:
        return frame
    newline = content.find(b"\n", 0, HEADER_MAX)
    match = _HEADER.match(content[:newline + 1]) if newline >= 0 else None
    if match is None or not match.group(4):
        return frame
    inner = content[newline + 1:]
    if inner[:4] != ZSTD_MAGIC or len(inner) < 9:
        return frame
    magicless = inner[4:]
    if magicless[0] & 0x04:  # its checksum goes: the descriptor's flag cleared, the last 4 bytes dropped
        magicless = bytes([magicless[0] & ~0x04]) + magicless[1:-4]
    return (bytes([_DELTA_CODE_OF[match.group(1).decode()] | DETACHED]) + encode_varint(int(match.group(5)))
            + bytes.fromhex(match.group(6).decode()) + magicless)


def _delta_compressor(size: int, base: bytes, level: int) -> zstandard.ZstdCompressor:
    """A compressor whose window reaches back over the whole base, and whose
    match tables index all of it (zstd indexes only the last 8 << max(hashLog,
    chainLog) bytes of a dictionary): what `zstd --patch-from` does."""
    defaults = zstandard.ZstdCompressionParameters.from_level(level, source_size=size)
    window_log = max(defaults.window_log, (len(base) + size - 1).bit_length(), 10)
    table_log = max(6, (len(base) - 1).bit_length() - 3)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=size, window_log=min(window_log, _DELTA_WINDOW_LOG),
        hash_log=min(max(defaults.hash_log, table_log), 30),
        chain_log=min(max(defaults.chain_log, table_log), 30),
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_checksum=False, write_content_size=True, write_dict_id=False)
    return zstandard.ZstdCompressor(
        compression_params=params,
        dict_data=zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT))


#: A window covering a base and a payload of DELTA_MAX_SIZE each.
_DELTA_WINDOW_LOG = (2 * DELTA_MAX_SIZE - 1).bit_length()


def decode_delta(inner: bytes, size: int, base_payload: bytes, *, magicless: bool = True,
                 binary: bool = False) -> bytes:
    """The payload a delta's inner frame holds, rebuilt against its base's
    payload; ValueError when the frame is not one whole zstd frame (of
    today's deltas: magicless; of the first form: with its magic) that
    declares no other size than `size` and decodes to exactly that. With
    `binary` (BINARY_TREE), the frame holds the tree's binary form, made
    against its base's, and declares that form's size (at most `size`),
    and the payload rebuilt from it must be `size` bytes."""
    if len(base_payload) > DELTA_MAX_SIZE:
        raise ValueError(f"its base is over the delta limit of {DELTA_MAX_SIZE} bytes")
    if frame_length(lambda at, n: inner[at:at + n], len(inner), magicless=magicless) != len(inner):
        raise ValueError("the delta is not one whole zstd frame")
    if binary:
        base_payload = binary_tree(base_payload)
        if base_payload is None:
            raise ValueError("a tree delta in binary form whose base is no tree")
    form = zstandard.FORMAT_ZSTD1_MAGICLESS if magicless else zstandard.FORMAT_ZSTD1
    try:
        declared = zstandard.get_frame_parameters(inner, format=form).content_size
        if declared != size and not (binary and 0 <= declared <= size):
            raise ValueError("the delta's frame size disagrees with the object header")
        dctx = zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict(base_payload, dict_type=zstandard.DICT_TYPE_RAWCONTENT),
            max_window_size=1 << _DELTA_WINDOW_LOG, format=form)
        payload = dctx.decompress(inner, max_output_size=declared)
    except zstandard.ZstdError as exc:
        raise ValueError(f"zstd: {exc}") from None
    if binary:
        if len(payload) != declared:
            raise ValueError("the delta decodes to another size than its frame declares")
        payload = hex_tree(payload)
        if payload is None:
            raise ValueError("a tree delta in binary form that decodes to no tree")
    if len(payload) != size:
        raise ValueError("the delta decodes to another size than declared")
    return payload


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


def frame_length(read_at, size: int, *, magicless: bool = False) -> int | None:
    """The length of the zstd frame at the start of `size` bytes that
    `read_at(offset, n)` reads, found by walking its block headers without
    decoding anything; None when those bytes do not hold a whole frame
    (cut short, empty, or not zstd). Cheap: one small read per block.
    `magicless`: a frame without its magic number (zstd's magicless format)."""
    magic = 0 if magicless else len(ZSTD_MAGIC)
    head = read_at(0, magic + 2)
    if len(head) < magic + 2 or head[:magic] != ZSTD_MAGIC[:magic]:
        return None
    descriptor = head[magic]
    if descriptor & 0x08:  # the reserved bit
        return None
    single_segment = bool(descriptor & 0x20)
    content_size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    at = magic + 1 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03] + content_size_bytes
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
    body in bounded chunks. Never yields more than the declared size.

    A delta names its base (`base`); its payload is rebuilt when first
    read, with the base's payload that `load_base(base_id)` returns
    (verified: the store reads it as any object). Without `load_base` a
    delta cannot be read, and is corrupt where it is found. A delta frame
    (encode_delta) is read only from memory, as a pack hands it out: a
    file holding one is no object file."""

    def __init__(self, source: BinaryIO, object_id: str | None = None,
                 load_base: Callable[[str], bytes] | None = None):
        self.object_id = object_id
        self._load_base = load_base
        self._inner: bytes | None = None  # a delta frame's inner frame
        start = source.tell()
        head = source.read(18)
        if head[:1] and head[0] & DETACHED and not _is_file(source):
            source.seek(start)
            self._read_delta_frame(source.read())
            return
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
        header_len = newline + 1
        self._pending = first[header_len:]
        if match.group(2):
            self.base: str | None = None
            self.size = int(match.group(3))
            if params.content_size not in (zstandard.CONTENTSIZE_UNKNOWN, header_len + self.size):
                raise self._corrupt("frame size disagrees with the object header")
            self._remaining = self.size - len(self._pending)
        else:
            self.base = match.group(6).decode()
            self.size = int(match.group(5))
            if self.kind not in FIRST_FORM_DELTA_KINDS:
                raise self._corrupt(f"a {self.kind} stored as a delta")
            if self.size > DELTA_MAX_SIZE:
                raise self._corrupt(f"a delta of {self.size} bytes, over the limit of {DELTA_MAX_SIZE}")
            if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
                raise self._corrupt("a delta's frame does not record its size")
            # zstd never grows data by more than a block header per 128 KiB
            # block, and a frame header and checksum
            self._inner_size = params.content_size - header_len
            if not 0 < self._inner_size <= self.size + (self.size >> 10) + 64:
                raise self._corrupt("a delta's frame size is out of bounds")
            self._remaining = self._inner_size - len(self._pending)
        if self._remaining < 0:
            raise self._corrupt("object decodes past its declared size")

    def _read_delta_frame(self, frame: bytes) -> None:
        try:
            parts = delta_parts(frame)
        except ValueError as exc:
            raise self._corrupt(str(exc)) from None
        if parts is None:
            raise self._corrupt("not a zstd frame")
        self.kind, self.size, base, inner_at = parts
        self._binary = frame[0] & ~DETACHED == BINARY_TREE
        self.base = base.hex()
        if self.size > DELTA_MAX_SIZE:
            raise self._corrupt(f"a delta of {self.size} bytes, over the limit of {DELTA_MAX_SIZE}")
        self._inner = frame[inner_at:]
        # zstd never grows data by more than a block header per 128 KiB
        # block, and a frame header
        if not 0 < len(self._inner) <= self.size + (self.size >> 10) + 64:
            raise self._corrupt("a delta's frame size is out of bounds")

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
        """The payload, in chunks of at most CHUNK bytes (a delta's in one);
        checks the frame ends exactly at the declared size."""
        if self.base is not None:  # rebuilt whole in memory: handed out as one chunk
            yield self._rebuild()
            return
        yield from self._body()

    def _body(self) -> Iterator[bytes]:
        """What follows the header line, as stored; checks the frame ends
        exactly where the header and frame size say."""
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

    def _rebuild(self) -> bytes:
        """A delta's payload: its inner frame (of the first form: read whole,
        bounded by the outer frame's declared size) decoded against its
        base's payload."""
        magicless = self._inner is not None
        inner = self._inner if magicless else b"".join(self._body())
        if self._load_base is None:
            raise self._corrupt(f"a delta against {self.base}, which cannot be read here")
        base_payload = self._load_base(self.base) if magicless else self._load_base(self.base, first_form=True)
        try:
            return decode_delta(inner, self.size, base_payload, magicless=magicless,
                                binary=magicless and self._binary)
        except ValueError as exc:
            raise self._corrupt(str(exc)) from None


#: A frame header, a block header and the largest block: the header line
#: of an object is in its frame's first block.
_FIRST_BLOCK = 18 + 3 + (128 << 10)


def _is_file(source: BinaryIO) -> bool:
    try:
        source.fileno()
        return True
    except (AttributeError, io.UnsupportedOperation):
        return False


def frame_base(frame: bytes) -> str | None:
    """The base a frame is a delta against (None for a whole object), read
    from its header alone; CorruptObjectError when the frame does not
    decode that far. Cheap (gc asks it of every frame of a pack it
    rewrites): the first block only, and the full reader when in doubt."""
    if frame[:1] and frame[0] & DETACHED:
        return FrameReader(io.BytesIO(frame)).base
    try:
        content = _decompressor().decompressobj().decompress(frame[:_FIRST_BLOCK])
    except zstandard.ZstdError:
        content = b""
    newline = content.find(b"\n", 0, HEADER_MAX)
    match = _HEADER.match(content[:newline + 1]) if newline >= 0 else None
    if match is not None:
        return match.group(6).decode() if match.group(4) else None
    return FrameReader(io.BytesIO(frame)).base
