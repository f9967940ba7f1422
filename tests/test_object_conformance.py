"""Object files as FORMAT.md specifies them, read by a decoder written from
FORMAT.md alone (zstd's own decoder, no rnstore code): large blobs, which
are streamed into their frame, were the ones that broke the spec."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
import zstandard

from helpers.porcelain import ok

HEADER = re.compile(rb"rn1 (blob|tree|snapshot) (raw) (0|[1-9][0-9]{0,19})\n")


def read_object_by_the_spec(path: Path, oid: str) -> tuple[str, bytes]:
    """(kind, payload) of an object file; fails on anything FORMAT.md's
    "Object files" section makes a reader refuse."""
    data = path.read_bytes()
    params = zstandard.get_frame_parameters(data)
    assert params.has_checksum, "the frame records a content checksum"
    assert params.content_size != zstandard.CONTENTSIZE_UNKNOWN, "the frame records its content size"
    assert params.dict_id == 0, "no dictionary"
    dobj = zstandard.ZstdDecompressor().decompressobj()
    content = dobj.decompress(data)
    assert dobj.eof, "the frame ends"
    assert dobj.unused_data == b"", "the file is exactly one zstd frame"
    assert len(content) == params.content_size
    match = HEADER.match(content)
    assert match is not None, content[:64]
    kind, size = match.group(1).decode(), int(match.group(3))
    payload = content[match.end():]
    assert len(payload) == size
    assert hashlib.sha256(payload).hexdigest() == oid
    return kind, payload


def blob_of(size: int) -> bytes:
    """`size` bytes that compress (a random MiB repeated), so that 64 MiB
    stay quick to compress and decompress."""
    unit = hashlib.shake_256(b"conformance").digest(1 << 20)
    return (unit * (size // len(unit) + 1))[:size]


@pytest.mark.parametrize("mib", [5, 64])
def test_a_large_blob_is_one_frame_a_spec_reader_decodes(workspace, run_cli, mib):
    data = blob_of(mib << 20)
    (workspace / "big.bin").write_bytes(data)
    oid = ok(run_cli(["hash-object", "-w", "big.bin"], cwd=workspace)).out.strip()
    assert oid == hashlib.sha256(data).hexdigest()
    path = workspace / ".rnstore" / "objects" / oid[:2] / oid[2:]
    assert read_object_by_the_spec(path, oid) == ("blob", data)


def test_a_blob_stored_by_add_is_one_frame_a_spec_reader_decodes(workspace, run_cli):
    data = blob_of(5 << 20)
    (workspace / "big.bin").write_bytes(data)
    ok(run_cli(["add", "big.bin"], cwd=workspace))
    oid = hashlib.sha256(data).hexdigest()
    path = workspace / ".rnstore" / "objects" / oid[:2] / oid[2:]
    assert read_object_by_the_spec(path, oid) == ("blob", data)


#: The empty frame rnstore 0.1.0.dev0 once appended to every object over 4 MiB.
LEGACY_EMPTY_FRAME = bytes.fromhex("28b52ffd240001000099e9d851")


def test_an_object_written_with_the_old_trailing_empty_frame_still_reads(workspace, run_cli):
    data = blob_of(5 << 20)
    (workspace / "big.bin").write_bytes(data)
    oid = ok(run_cli(["hash-object", "-w", "big.bin"], cwd=workspace)).out.strip()
    path = workspace / ".rnstore" / "objects" / oid[:2] / oid[2:]
    os.chmod(path, 0o644)
    with open(path, "ab") as fh:
        fh.write(LEGACY_EMPTY_FRAME)
    assert ok(run_cli(["cat-file", "blob", oid], cwd=workspace)).stdout == data
    assert ok(run_cli(["cat-file", "-s", oid], cwd=workspace)).out == f"{len(data)}\n"
    ok(run_cli(["fsck"], cwd=workspace))
    with open(path, "ab") as fh:
        fh.write(LEGACY_EMPTY_FRAME)  # two of them: not what any rnstore wrote
    assert run_cli(["cat-file", "blob", oid], cwd=workspace).returncode == 1


DELTA_HEADER = re.compile(rb"rn1 (blob|tree) delta (0|[1-9][0-9]{0,19}) ([0-9a-f]{64})\n")


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, offset after) of an unsigned LEB128 varint."""
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        shift += 7
        at += 1
        if not byte & 0x80:
            return value, at


def read_pack_by_the_spec(path: Path) -> dict[str, tuple[str, bytes, int]]:
    """id -> (kind, payload, depth) of every object of a pack file, read as
    FORMAT.md's "Pack files" and "Deltas" sections say (zstd's own decoder,
    no rnstore code): whole frames, deltas of the first form and pack-local
    deltas; fails on anything they make a reader refuse or a writer avoid."""
    import struct
    data = path.read_bytes()
    assert data[:9] in (b"rnpack 1\n", b"rnpack 2\n", b"rnpack 3\n") and data.endswith(b"rnpkend\n")
    index_at, count, checksum = struct.unpack(">QQ32s", data[-56:-8])
    index = data[index_at:index_at + 44 * count]
    assert hashlib.sha256(index).digest() == checksum and path.name == checksum.hex() + ".pack"
    assert index_at + 44 * count + 56 == len(data)
    frames = {}
    for at in range(0, len(index), 44):
        raw_id, offset, length = struct.unpack(">32sQI", index[at:at + 44])
        frames[raw_id.hex()] = (offset, data[offset:offset + length])
    at_offset = {offset: oid for oid, (offset, _) in frames.items()}
    objects: dict[str, tuple[str, bytes, int]] = {}
    local = binary = 0

    def rebuilt(inner: bytes, size: int, base: str, offset: int, *, binary_form: bool = False) -> tuple[bytes, int]:
        assert frames[base][0] < offset, "a delta's base lies before it in the same pack"
        base_kind, base_payload, base_depth = read(base)
        inner_params = zstandard.get_frame_parameters(inner)
        assert inner_params.dict_id == 0 and inner_params.window_size <= 1 << 27
        if binary_form:  # both in their binary form; the frame declares that form's size
            assert base_kind == "tree"
            base_payload = tree_to_binary(base_payload)
            assert 0 <= inner_params.content_size <= size
        else:
            assert inner_params.content_size == size
        dictionary = zstandard.ZstdCompressionDict(base_payload, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        payload = zstandard.ZstdDecompressor(dict_data=dictionary).decompress(inner)
        if binary_form:
            payload = tree_from_binary(payload)
            assert len(payload) == size
        return payload, base_depth + 1

    def read(oid: str) -> tuple[str, bytes, int]:
        nonlocal local, binary
        if oid not in objects:
            offset, frame = frames[oid]
            if frame[0] in (1, 2, 3, 4):  # a pack-local delta
                assert data[:9] in (b"rnpack 2\n", b"rnpack 3\n"), "pack-local deltas only in a version 2 or 3 pack"
                assert frame[0] != 4 or data[:9] == b"rnpack 3\n", "a binary tree delta only in a version 3 pack"
                local += 1
                binary += frame[0] == 4
                kind = {1: "blob", 2: "tree", 3: "snapshot", 4: "tree"}[frame[0]]
                size, at = _varint(frame, 1)
                distance, at = _varint(frame, at)
                assert distance > 0
                inner = b"\x28\xb5\x2f\xfd" + frame[at:]  # its magic number put back
                assert not zstandard.get_frame_parameters(inner).has_checksum, "writers leave it out"
                payload, depth = rebuilt(inner, size, at_offset[offset - distance], offset,
                                         binary_form=frame[0] == 4)
                objects[oid] = (kind, payload, depth)
                assert hashlib.sha256(payload).hexdigest() == oid
                return objects[oid]
            params = zstandard.get_frame_parameters(frame)
            assert params.has_checksum and params.content_size != zstandard.CONTENTSIZE_UNKNOWN
            dobj = zstandard.ZstdDecompressor().decompressobj()
            content = dobj.decompress(frame)
            assert dobj.eof and dobj.unused_data == b"" and len(content) == params.content_size
            whole, delta = HEADER.match(content), DELTA_HEADER.match(content)
            if whole:
                kind, depth, payload = whole.group(1).decode(), 0, content[whole.end():]
            else:
                assert delta is not None, content[:128]
                kind, size, base = delta.group(1).decode(), int(delta.group(2)), delta.group(3).decode()
                inner = content[delta.end():]
                assert zstandard.get_frame_parameters(inner).has_checksum
                payload, depth = rebuilt(inner, size, base, offset)
            assert hashlib.sha256(payload).hexdigest() == oid
            objects[oid] = (kind, payload, depth)
        return objects[oid]

    for oid in frames:
        read(oid)
    assert (data[:9] != b"rnpack 1\n") == (local > 0), "version 2 or 3 exactly when a pack-local delta is there"
    assert (data[:9] == b"rnpack 3\n") == (binary > 0), "version 3 exactly when a binary tree delta is there"
    return objects


def tree_to_binary(payload: bytes) -> bytes:
    """A tree payload's binary form, as FORMAT.md "Deltas" says: no header,
    each entry's 64 hex digits of id as the 32 bytes they spell."""
    assert payload.startswith(b"rntree 1\n") and payload.endswith(b"\0") or payload == b"rntree 1\n"
    out = b""
    for entry in payload[9:].split(b"\0")[:-1]:
        mode, oid, rest = entry.split(b" ", 2)
        assert len(mode) == 6 and re.fullmatch(rb"[0-9a-f]{64}", oid)
        out += mode + b" " + bytes.fromhex(oid.decode()) + b" " + rest + b"\0"
    return out


def tree_from_binary(form: bytes) -> bytes:
    """The tree payload a binary form spells, read entry by entry from its first byte."""
    out, at = b"rntree 1\n", 0
    while at < len(form):
        mode, raw, space = form[at:at + 7], form[at + 7:at + 39], form[at + 39:at + 40]
        assert mode[:6].isdigit() and mode[6:] == b" " and len(raw) == 32 and space == b" "
        end = form.index(b"\0", at + 39)
        out += mode + raw.hex().encode() + form[at + 39:end + 1]
        at = end + 1
    return out


def test_a_pack_with_deltas_is_what_a_spec_reader_decodes(tmp_path):
    from helpers.deltas import deltify
    from rnstore import Repository
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    unit = hashlib.shake_256(b"versions").digest(20000)
    for version in range(8):
        (repo.root / "data.bin").write_bytes(unit[:5000 * version] + b"v%d" % version + unit[5000 * version:])
        (repo.root / "notes.txt").write_bytes(b"note %d\n" % version * 100)
        repo.snapshot(f"version {version}")
    where, deltas = deltify(repo, depth=3)
    found = read_pack_by_the_spec(Path(where))
    assert set(found) == set(repo.store)
    depths = [depth for _, _, depth in found.values()]
    assert sum(1 for d in depths if d) == deltas >= 10 and max(depths) == 3
    for oid, (kind, payload, _) in found.items():
        assert repo.store.get(oid)[1] == payload
