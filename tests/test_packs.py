"""Pack files: when a batch packs, what a pack holds, and how readers, gc and
fsck treat packs (library and CLI end to end). FORMAT.md specifies the file;
`read_pack_by_the_spec` decodes it independently of rnstore/packs.py."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from pathlib import Path

import pytest
import zstandard

from rnstore import packs
from rnstore.errors import CorruptObjectError, MissingObjectError, StoreWriteError
from rnstore.objects import BLOB
from rnstore.store import DiskStore

from helpers.porcelain import assert_error, commit, new_workspace, ok, write_files

MANY = packs.MIN_OBJECTS + 6


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_pack_by_the_spec(path: Path) -> dict[str, bytes]:
    """id -> frame, decoding a pack as FORMAT.md describes it."""
    data = path.read_bytes()
    assert data.startswith(b"rnpack 1\n")
    index_offset, count, digest, end = struct.unpack(">QQ32s8s", data[-56:])
    assert end == b"rnpkend\n"
    index = data[index_offset:len(data) - 56]
    assert len(index) == count * 44
    assert hashlib.sha256(index).digest() == digest
    assert path.name == digest.hex() + ".pack"
    frames = {}
    ids = []
    for i in range(count):
        raw_id, offset, length = struct.unpack(">32sQI", index[i * 44:(i + 1) * 44])
        assert 9 <= offset and offset + length <= index_offset
        ids.append(raw_id)
        frames[raw_id.hex()] = data[offset:offset + length]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    return frames


def pack_files(objects: Path) -> list[Path]:
    return sorted((objects / "pack").glob("*.pack")) if (objects / "pack").is_dir() else []


def loose_files(objects: Path) -> list[Path]:
    return sorted(p for p in objects.glob("??/*") if not p.name.startswith(".tmp-"))


@pytest.fixture
def objects(tmp_path) -> Path:
    root = tmp_path / "objects"
    root.mkdir()
    return root


def test_a_large_batch_is_one_pack_that_reads_back(objects):
    store = DiskStore(objects)
    payloads = [b"file %d\n" % i * (i + 1) for i in range(MANY)]
    with store.batch():
        ids = [store.put(BLOB, p) for p in payloads]
        assert all(store.has(oid) for oid in ids)  # readable before the batch ends
        assert store.get(ids[3]) == (BLOB, payloads[3])
    assert loose_files(objects) == []
    [pack] = pack_files(objects)
    frames = read_pack_by_the_spec(pack)
    assert set(frames) == set(ids)
    for oid, payload in zip(ids, payloads):
        assert zstandard.ZstdDecompressor().decompress(frames[oid]) == \
            b"rn1 blob raw %d\n" % len(payload) + payload
    fresh = DiskStore(objects)  # another process, reading what was published
    assert sorted(fresh) == sorted(ids)
    assert all(fresh.get(oid) == (BLOB, p) for oid, p in zip(ids, payloads))
    assert fresh.stored_size(ids[0]) == len(frames[ids[0]])
    assert fresh.ids_with_prefix(ids[0][:5]) == [oid for oid in sorted(ids) if oid.startswith(ids[0][:5])]
    assert list(fresh.temp_files()) == []


def test_a_small_batch_stays_loose(objects):
    store = DiskStore(objects)
    with store.batch():
        ids = [store.put(BLOB, b"%d" % i) for i in range(packs.MIN_OBJECTS - 1)]
    assert pack_files(objects) == []
    assert sorted(p.parent.name + p.name for p in loose_files(objects)) == sorted(ids)
    assert list(objects.glob("pack/.tmp-*")) == []


def test_a_failed_batch_publishes_nothing(objects):
    store = DiskStore(objects)
    with pytest.raises(KeyboardInterrupt):
        with store.batch():
            for i in range(MANY):
                store.put(BLOB, b"%d" % i)
            raise KeyboardInterrupt
    assert pack_files(objects) == [] and loose_files(objects) == []
    assert list(store.temp_files()) == []
    assert not store.has(sha(b"1"))


def test_a_pack_published_by_another_writer_is_found(objects):
    reader = DiskStore(objects)
    assert list(reader) == []  # packs loaded (none yet)
    writer = DiskStore(objects)
    with writer.batch():
        ids = [writer.put(BLOB, b"other %d" % i) for i in range(MANY)]
    assert reader.has(ids[0])
    assert reader.get(ids[-1]) == (BLOB, b"other %d" % (MANY - 1))
    assert reader.freshen(ids[1])


def test_freshening_a_packed_object_touches_its_pack(objects):
    store = DiskStore(objects)
    with store.batch():
        ids = [store.put(BLOB, b"%d" % i) for i in range(MANY)]
    [pack] = pack_files(objects)
    os.utime(pack, (1_000_000_000, 1_000_000_000))
    later = DiskStore(objects)
    with later.batch():
        assert later.put(BLOB, b"5") == ids[5]  # stored already: not written again
    assert pack_files(objects) == [pack] and loose_files(objects) == []
    assert pack.stat().st_mtime > 1_000_000_000 + 86400


def test_delete_removes_packed_copies_and_keeps_the_rest(objects):
    store = DiskStore(objects)
    with store.batch():
        ids = [store.put(BLOB, b"%d" % i) for i in range(MANY)]
    store.delete(ids[0])
    assert not store.has(ids[0]) and not DiskStore(objects).has(ids[0])
    assert sorted(DiskStore(objects)) == sorted(ids[1:])
    [pack] = pack_files(objects)
    assert set(read_pack_by_the_spec(pack)) == set(ids[1:])
    for oid in ids[1:]:
        store.delete(oid)
    assert pack_files(objects) == []
    assert list(DiskStore(objects)) == []


def test_concurrent_puts_in_one_batch_store_each_object_once(objects):
    store = DiskStore(objects)
    payloads = [os.urandom(2000) for _ in range(200)]
    with store.batch():
        threads = [threading.Thread(target=lambda: [store.put(BLOB, p) for p in payloads])
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    [pack] = pack_files(objects)
    assert sorted(read_pack_by_the_spec(pack)) == sorted(sha(p) for p in payloads)


@pytest.mark.parametrize("damage", ["truncate", "trailer", "index"])
def test_a_damaged_pack_is_reported_not_trusted(objects, damage):
    store = DiskStore(objects)
    with store.batch():
        ids = [store.put(BLOB, b"%d" % i) for i in range(MANY)]
    [pack] = pack_files(objects)
    data = bytearray(pack.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    elif damage == "trailer":
        data[-1] ^= 0xFF
    else:
        data[-60] ^= 0x01  # the last index entry: caught by the index checksum
    pack.write_bytes(bytes(data))
    fresh = DiskStore(objects)
    with pytest.raises(MissingObjectError):
        fresh.get(ids[0])
    [(path, why)] = fresh.damaged_packs().items()
    assert path == str(pack) and why


def test_a_damaged_frame_inside_a_pack_is_a_corrupt_object(objects):
    store = DiskStore(objects)
    payloads = [os.urandom(500) for _ in range(MANY)]
    with store.batch():
        ids = [store.put(BLOB, p) for p in payloads]
    [pack] = pack_files(objects)
    frames = read_pack_by_the_spec(pack)
    data = bytearray(pack.read_bytes())
    at = data.index(frames[ids[7]]) + len(frames[ids[7]]) // 2
    data[at] ^= 0x40
    pack.write_bytes(bytes(data))
    fresh = DiskStore(objects)
    with pytest.raises(CorruptObjectError):
        fresh.get(ids[7])
    assert fresh.get(ids[8]) == (BLOB, payloads[8])


# -- end to end ----------------------------------------------------------------------------

def many_files(root: Path, count: int, tag: str) -> None:
    write_files(root, {f"{tag}/f{i:03d}.txt": f"{tag} {i}\n" for i in range(count)})


def test_commit_packs_its_blobs_and_trees_and_checks_out(tmp_path, run_cli):
    ws = new_workspace(tmp_path / "ws")
    many_files(ws, MANY, "a")
    many_files(ws, 3, "b")
    snap = commit(run_cli, ws, "first", "-a")
    objects = ws / ".rnstore" / "objects"
    [pack] = pack_files(objects)
    packed = read_pack_by_the_spec(pack)
    tree = json.loads(ok(run_cli(["ls-tree", "-r", "--json", "HEAD"], cwd=ws)).stdout)
    assert {e["id"] for e in tree} <= set(packed)  # blobs and folders in one pack
    assert [p.parent.name + p.name for p in loose_files(objects)] == [snap]  # the snapshot
    ok(run_cli(["checkout", "HEAD", "--target", str(tmp_path / "out")], cwd=ws))
    assert (tmp_path / "out" / "a" / "f005.txt").read_text() == "a 5\n"
    fsck = json.loads(ok(run_cli(["fsck", "--json"], cwd=ws)).stdout)
    assert fsck["problems"] == [] and fsck["checked_objects"] == len(tree) + 4  # + 3 trees, snapshot


def test_gc_rewrites_a_pack_without_what_no_root_reaches(tmp_path, run_cli):
    ws = new_workspace(tmp_path / "ws")
    many_files(ws, MANY, "keep")
    many_files(ws, MANY, "drop")
    first = commit(run_cli, ws, "both", "-a")
    objects = ws / ".rnstore" / "objects"
    [pack] = pack_files(objects)
    before = read_pack_by_the_spec(pack)
    for path in (ws / "drop").iterdir():
        path.unlink()
    (ws / "drop").rmdir()
    second = commit(run_cli, ws, "keep only", "-a")
    ok(run_cli(["forget", first], cwd=ws))
    dry = json.loads(ok(run_cli(["gc", "--prune", "now", "--dry-run", "--json"], cwd=ws)).stdout)
    assert pack_files(objects) == [pack]  # a dry run changes nothing
    mtime = pack.stat().st_mtime
    # gc --auto (due every time): a gc run by hand would merge the packs too (a full repack)
    ok(run_cli(["config", "gc.interval", "now"], cwd=ws))
    stats = json.loads(ok(run_cli(["gc", "--auto", "--prune", "now", "--json"], cwd=ws)).stdout)
    # the files, their folder and the root tree (packed), the snapshot (loose)
    assert stats["deleted_objects"] == dry["deleted_objects"] == MANY + 3
    # (the second snapshot's loose objects were repacked into a pack of their own)
    [rewritten] = [p for p in pack_files(objects) if set(read_pack_by_the_spec(p)) <= set(before)]
    after = read_pack_by_the_spec(rewritten)
    assert len(after) == len(before) - MANY - 2 and set(after) < set(before)
    assert rewritten.stat().st_mtime == mtime  # the survivors keep their age
    assert all(after[oid] == before[oid] for oid in after)  # frames copied, not recompressed
    fsck = json.loads(ok(run_cli(["fsck", "--json"], cwd=ws)).stdout)
    assert fsck["problems"] == []
    assert ok(run_cli(["show", f"{second}:keep/f003.txt"], cwd=ws)).stdout == b"keep 3\n"
    assert_error(run_cli(["show", f"{first}:drop/f003.txt"], cwd=ws), (1, 2))


def test_gc_spares_a_young_pack_and_removes_a_dead_one(tmp_path, run_cli):
    ws = new_workspace(tmp_path / "ws")
    many_files(ws, MANY, "x")
    ok(run_cli(["add", "x"], cwd=ws))
    objects = ws / ".rnstore" / "objects"
    [pack] = pack_files(objects)
    (ws / ".rnstore" / "index").unlink()  # nothing names the staged blobs now
    ok(run_cli(["gc", "--json"], cwd=ws))  # default grace period: young, kept
    assert pack_files(objects) == [pack]
    stats = json.loads(ok(run_cli(["gc", "--prune", "now", "--json"], cwd=ws)).stdout)
    assert stats["deleted_objects"] == MANY
    assert pack_files(objects) == []


def test_fsck_and_gc_name_a_damaged_pack(tmp_path, run_cli):
    ws = new_workspace(tmp_path / "ws")
    many_files(ws, MANY, "x")
    commit(run_cli, ws, "m", "-a")
    [pack] = pack_files(ws / ".rnstore" / "objects")
    pack.write_bytes(pack.read_bytes()[:-1])
    result = run_cli(["fsck"], cwd=ws)
    assert result.returncode == 1
    assert pack.name in result.out + result.stderr
    kept = pack.read_bytes()
    assert_error(run_cli(["gc", "--prune", "now"], cwd=ws), 1)
    assert pack.read_bytes() == kept  # gc refused: nothing deleted


def test_a_write_that_fails_half_way_costs_only_its_own_object(objects, monkeypatch):
    """A full disk mid-frame (a StoreWriteError, never blamed on the file
    being stored; a caller that goes on): every other object of the pack reads back."""
    import errno
    store = DiskStore(objects)
    payloads = [os.urandom(3000) for _ in range(MANY + 20)]
    real_pwrite = os.pwrite
    calls = {"n": 0}

    def pwrite_that_fills_the_disk_once(fd, data, offset):
        calls["n"] += 1
        if calls["n"] == MANY + 5:  # some frame after the file started
            real_pwrite(fd, bytes(data[: len(data) // 2]), offset)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(packs.os, "pwrite", pwrite_that_fills_the_disk_once)
    stored, failed = [], []
    with store.batch():
        for p in payloads:
            try:
                stored.append((store.put(BLOB, p), p))
            except StoreWriteError:
                failed.append(p)
    monkeypatch.undo()
    assert len(failed) == 1
    fresh = DiskStore(objects)
    assert fresh.damaged_packs() == {}
    for oid, p in stored:
        assert fresh.get(oid) == (BLOB, p)
    [pack] = pack_files(objects)
    assert set(read_pack_by_the_spec(pack)) == {oid for oid, _ in stored}


def test_an_index_out_of_id_order_is_damaged_even_with_a_right_checksum(objects):
    """Lookups bisect the ids: a pack whose index is not sorted (a writer's
    bug, checksummed as written) is refused, not half-searched."""
    store = DiskStore(objects)
    with store.batch():
        ids = [store.put(BLOB, b"%d" % i) for i in range(MANY)]
    [pack] = pack_files(objects)
    data = pack.read_bytes()
    index_offset, count, _, end = struct.unpack(">QQ32s8s", data[-56:])
    entries = [data[index_offset + i * 44:index_offset + (i + 1) * 44] for i in range(count)]
    entries[0], entries[1] = entries[1], entries[0]
    index = b"".join(entries)
    digest = hashlib.sha256(index).digest()
    forged = objects / "pack" / (digest.hex() + ".pack")
    forged.write_bytes(data[:index_offset] + index + struct.pack(">QQ32s8s", index_offset, count, digest, end))
    pack.unlink()
    fresh = DiskStore(objects)
    assert list(fresh.damaged_packs()) == [str(forged)]
    assert not fresh.has(ids[0])


def test_ids_that_share_their_leading_bytes_are_told_apart_in_a_pack(tmp_path):
    """A writer keys its frames by the leading bytes of their ids; ids that
    share them (made up here: SHA-256 gives none in practice) are kept,
    read back and listed in id order all the same."""
    folder = tmp_path / "pack"
    writer = packs.PackWriter(str(folder), str(tmp_path / "tmp-pack"), fsync=False, eager=True)
    shared = "ab" * 7
    ids = [shared + tail * 50 for tail in ("9", "1", "5")] + ["00" * 32, "ff" * 32]
    for number, oid in enumerate(ids):
        writer.add(oid, b"frame %d" % number)
    writer.add(ids[1], b"a second copy is not written")
    assert all(oid in writer for oid in ids) and shared + "2" * 50 not in writer
    assert [writer.read(oid) for oid in ids] == [b"frame %d" % n for n in range(len(ids))]
    assert writer.read(shared + "2" * 50) is None
    path = Path(writer.finish())
    assert read_pack_by_the_spec(path) == {oid: b"frame %d" % n for n, oid in enumerate(ids)}
    pack = packs.Pack.open(str(path))
    assert [pack.read(bytes.fromhex(oid)) for oid in ids] == [b"frame %d" % n for n in range(len(ids))]
    assert pack.read(bytes.fromhex(shared + "2" * 50)) is None


def test_lookups_agree_before_and_after_the_ids_are_listed(tmp_path, monkeypatch):
    """A pack's first lookups bisect its index bytes and later ones a list
    of its ids: both find every id, at its own frame, and miss the rest
    (below the first id, between two, above the last)."""
    monkeypatch.setattr(packs, "_LOOKUPS_BEFORE_LIST", 40)
    folder = tmp_path / "pack"
    writer = packs.PackWriter(str(folder), str(tmp_path / "tmp-pack"), fsync=False, eager=True)
    ids = sorted(sha(b"%d" % n) for n in range(100))
    for oid in ids:
        writer.add(oid, b"frame " + oid.encode())
    pack = packs.Pack.open(writer.finish())
    absent = ["00" * 32, "ff" * 32] + [oid[:-1] + ("0" if oid[-1] != "0" else "1") for oid in ids[::10]]
    for _ in range(2):  # 2 x 110 lookups: the first 40 on the bytes, then on the list
        assert [pack.read(bytes.fromhex(oid)) for oid in ids] == [b"frame " + oid.encode() for oid in ids]
        assert [pack.read(bytes.fromhex(oid)) for oid in absent if oid not in ids] == \
            [None] * len([oid for oid in absent if oid not in ids])
    assert pack._ids is not None and pack.count == 100
