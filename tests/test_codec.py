"""codec.py: one object, one zstd frame; bounded, strict reading."""

from __future__ import annotations

import io
import tracemalloc

import pytest
import zstandard

from rnstore import codec
from rnstore.errors import CorruptObjectError

from helpers.frames import zeros_frame

PAYLOAD = b"hello world\n" * 40


def read(frame: bytes, limit: int = codec.MAX_METADATA_SIZE) -> tuple[str, bytes]:
    reader = codec.FrameReader(io.BytesIO(frame), "ab" * 32)
    return reader.kind, reader.read_all(limit)


def raw_frame(data: bytes, *, content_size: bool = True, checksum: bool = True) -> bytes:
    """A zstd frame of arbitrary decompressed bytes (header included by the caller)."""
    cctx = zstandard.ZstdCompressor(write_checksum=checksum, write_content_size=content_size)
    if content_size:
        return cctx.compress(data)
    out = io.BytesIO()
    with cctx.stream_writer(out, closefd=False) as writer:
        writer.write(data)
    return out.getvalue()


# -- writing and reading -------------------------------------------------------------

@pytest.mark.parametrize("kind", ["blob", "tree", "snapshot"])
def test_round_trip(kind):
    frame = codec.compress(kind, PAYLOAD, 3)
    assert read(frame) == (kind, PAYLOAD)


def test_frame_is_one_zstd_frame_with_size_and_checksum():
    frame = codec.compress("blob", PAYLOAD, 3)
    params = zstandard.get_frame_parameters(frame)
    assert params.content_size == len(b"rn1 blob raw 480\n") + len(PAYLOAD)
    assert params.has_checksum
    assert zstandard.ZstdDecompressor().decompress(frame) == b"rn1 blob raw 480\n" + PAYLOAD


def test_header_encoding():
    assert codec.encode_header("blob", 0) == b"rn1 blob raw 0\n"
    assert codec.encode_header("snapshot", 12345) == b"rn1 snapshot raw 12345\n"


def test_empty_payload():
    assert read(codec.compress("blob", b"", 3)) == ("blob", b"")


@pytest.mark.parametrize("level", [1, 19])
def test_levels_do_not_change_content(level):
    assert read(codec.compress("blob", PAYLOAD, level))[1] == PAYLOAD


def test_frame_writer_streams_exactly_the_declared_size():
    out = io.BytesIO()
    writer = codec.FrameWriter(out, "blob", 5 * 1000, 3)
    for _ in range(5):
        writer.write(b"x" * 1000)
    writer.close()
    assert read(out.getvalue()) == ("blob", b"x" * 5000)


@pytest.mark.parametrize("written", [4999, 5001])
def test_frame_writer_refuses_a_wrong_size(written):
    writer = codec.FrameWriter(io.BytesIO(), "blob", 5000, 3)
    with pytest.raises(ValueError):
        writer.write(b"x" * written)
        writer.close()


def one_zstd_frame(data: bytes) -> bool:
    """Whether `data` is exactly one zstd frame, by zstd's own decoder."""
    dobj = zstandard.ZstdDecompressor().decompressobj()
    dobj.decompress(data)
    return dobj.eof and dobj.unused_data == b""


def test_a_streamed_object_is_exactly_one_frame():
    out = io.BytesIO()
    writer = codec.FrameWriter(out, "blob", 5000, 3)
    writer.write(b"x" * 5000)
    writer.close()
    assert one_zstd_frame(out.getvalue())
    assert codec.frame_length(lambda at, n: out.getvalue()[at:at + n], len(out.getvalue())) \
        == len(out.getvalue())


#: What FrameWriter.close() appended to every streamed object in 0.1.0.dev0.
LEGACY_EMPTY_FRAME = bytes.fromhex("28b52ffd240001000099e9d851")


def test_the_legacy_trailing_empty_frame_is_accepted_and_nothing_else():
    assert codec.is_legacy_empty_frame(LEGACY_EMPTY_FRAME)
    frame = codec.compress("blob", PAYLOAD, 3)
    assert read(frame + LEGACY_EMPTY_FRAME) == ("blob", PAYLOAD)
    for tail in (LEGACY_EMPTY_FRAME * 2, LEGACY_EMPTY_FRAME + b"x", LEGACY_EMPTY_FRAME[:-1],
                 raw_frame(b"x"), b"\0" * 13):
        with pytest.raises(CorruptObjectError):
            read(frame + tail)


def test_frame_length_walks_blocks_of_every_type():
    payloads = [b"", b"a" * 100_000, bytes(range(256)) * 2000, PAYLOAD]  # RLE, raw, compressed
    for payload in payloads:
        for frame in (codec.compress("blob", payload, 1), raw_frame(payload, content_size=False),
                      raw_frame(payload, checksum=False)):
            read_at = lambda at, n: frame[at:at + n]  # noqa: E731
            assert codec.frame_length(read_at, len(frame)) == len(frame)
            assert codec.frame_length(read_at, len(frame) + 9) == len(frame)
            for cut in (0, 5, len(frame) // 2, len(frame) - 1):
                assert codec.frame_length(lambda at, n: frame[:cut][at:at + n], cut) is None


def test_chunks_are_bounded():
    payload = bytes(range(256)) * (3 * codec.CHUNK // 256 + 7)
    reader = codec.FrameReader(io.BytesIO(codec.compress("blob", payload, 1)))
    chunks = list(reader.chunks())
    assert b"".join(chunks) == payload
    assert max(map(len, chunks)) <= codec.CHUNK


# -- hostile input ----------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"", b"hello world", b"rn1 blob raw 5\nhello", b"\x28\xb5\x2f", b"\x28\xb5\x2f\xfd",
    b"\x28\xb5\x2f\xfd" + b"\xff" * 20, b"\0" * 64,
])
def test_not_a_zstd_file(data):
    with pytest.raises(CorruptObjectError):
        read(data)


@pytest.mark.parametrize("decompressed", [
    b"rn2 blob raw 5\nhello",              # unknown format tag
    b"rn1 blob zst 5\nhello",              # unknown representation
    b"rn1 commit raw 5\nhello",            # unknown kind
    b"rn1 blob raw 05\nhello",             # non-canonical size
    b"rn1 blob raw -5\nhello",
    b"rn1 blob raw 5 \nhello",
    b"rn1  blob raw 5\nhello",
    b"rn1 blob raw 5\rhello",
    b"rn1 blob raw 5",                     # no newline
    b"rn1 blob raw " + b"9" * 21 + b"\n",  # size past 20 digits
    b"rn1 blob raw 5" + b" " * 80 + b"\nhello",  # header past HEADER_MAX
    b"",
])
def test_bad_object_headers(decompressed):
    with pytest.raises(CorruptObjectError):
        read(raw_frame(decompressed))


@pytest.mark.parametrize("decompressed", [
    b"rn1 blob raw 6\nhello",               # shorter than declared
    b"rn1 blob raw 4\nhello",               # longer than declared
    b"rn1 blob raw 0\nx",
])
def test_body_must_match_declared_size(decompressed):
    for content_size in (True, False):
        with pytest.raises(CorruptObjectError):
            read(raw_frame(decompressed, content_size=content_size))


def test_frame_content_size_must_agree_with_header():
    frame = bytearray(codec.compress("blob", b"hello", 3))
    # The single-byte frame content size field follows magic (4) and descriptor (1).
    params = zstandard.get_frame_parameters(bytes(frame))
    assert params.content_size == 20
    frame[5] = 21
    with pytest.raises(CorruptObjectError):
        read(bytes(frame))


def test_truncated_frames():
    frame = codec.compress("blob", PAYLOAD, 3)
    checksum = 4
    for length in range(len(frame) - checksum):
        with pytest.raises(CorruptObjectError):
            read(frame[:length])


def test_a_frame_cut_inside_its_checksum_is_refused():
    # zstd's own reader does not notice a frame cut inside its 4-byte
    # checksum; walking the block headers does.
    frame = codec.compress("blob", PAYLOAD, 3)
    for length in range(len(frame) - 4, len(frame)):
        with pytest.raises(CorruptObjectError, match="truncated"):
            read(frame[:length])


def test_flipped_bytes_never_yield_wrong_bytes():
    frame = codec.compress("blob", PAYLOAD, 3)
    detected = 0
    for position in range(len(frame)):
        for bit in (0, 3, 7):
            damaged = bytearray(frame)
            damaged[position] ^= 1 << bit
            try:
                kind, payload = read(bytes(damaged))
            except CorruptObjectError:
                detected += 1
                continue
            assert (kind, payload) == ("blob", PAYLOAD), (position, bit)
    # Only a flip of an unused header bit may go unnoticed.
    assert detected >= 3 * len(frame) - 3


def test_flipped_byte_in_body_is_caught_by_zstd_checksum():
    payload = bytes(range(256)) * 4  # incompressible enough to be stored near raw
    frame = bytearray(codec.compress("blob", payload, 1))
    frame[len(frame) // 2] ^= 0x01
    with pytest.raises(CorruptObjectError):
        read(bytes(frame))


def test_trailing_frame_is_refused():
    frame = codec.compress("blob", b"hello", 3)
    with pytest.raises(CorruptObjectError):
        read(frame + frame)
    with pytest.raises(CorruptObjectError):
        read(frame + b"junk after the frame")


def _read_bounded(frame: bytes) -> int:
    """Decode `frame`, returning the peak of Python allocations meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(CorruptObjectError):
            reader = codec.FrameReader(io.BytesIO(frame), "ab" * 32)
            for _ in reader.chunks():
                pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("declared", [10, 5000])
def test_bomb_without_content_size(declared):
    """A header declaring a few bytes, then 100 MB of zeros."""
    frame = zeros_frame(b"rn1 blob raw %d\n" % declared, 100 << 20)
    assert len(frame) < 100_000
    assert _read_bounded(frame) < 8 << 20


def test_bomb_with_forged_content_size():
    """The frame header and the object header both claim 5000 bytes; the
    frame really holds 100 MB."""
    header = b"rn1 blob raw 5000\n"
    real = zeros_frame(header, 100 << 20, content_size=len(header) + (100 << 20))
    assert zstandard.get_frame_parameters(real).content_size == len(header) + (100 << 20)
    descriptor = real[4]
    assert descriptor >> 6 == 2  # a 4-byte content size field
    start = 5 + (0 if descriptor & 0x20 else 1)  # after the window descriptor, if any
    forged = real[:start] + (len(header) + 5000).to_bytes(4, "little") + real[start + 4:]
    assert zstandard.get_frame_parameters(forged).content_size == len(header) + 5000
    assert _read_bounded(forged) < 8 << 20


def test_metadata_read_refuses_huge_declared_size():
    frame = raw_frame(b"rn1 tree raw %d\n" % (codec.MAX_METADATA_SIZE + 1), content_size=False)
    reader = codec.FrameReader(io.BytesIO(frame))
    with pytest.raises(CorruptObjectError, match="over the limit"):
        reader.read_all()


def test_read_all_limit():
    frame = codec.compress("blob", PAYLOAD, 3)
    with pytest.raises(CorruptObjectError):
        read(frame, limit=len(PAYLOAD) - 1)
    assert read(frame, limit=len(PAYLOAD))[1] == PAYLOAD


def test_error_names_the_object():
    with pytest.raises(CorruptObjectError) as info:
        codec.FrameReader(io.BytesIO(b"junk"), "cd" * 32)
    assert info.value.object_id == "cd" * 32
    assert "cd" * 32 in str(info.value)
