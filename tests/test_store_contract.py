"""One contract, every object store implementation (DiskStore, MemoryStore)."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from rnstore import codec, packs, store as store_module
from rnstore.errors import CorruptObjectError, InvalidValueError, MissingObjectError
from rnstore.objects import BLOB, SNAPSHOT, TREE, Snapshot, Tree, TreeEntry
from rnstore.store import DiskStore, MemoryStore, SizeChangedError

ABSENT = "0" * 64


class PackingStore(DiskStore):
    """A DiskStore that packs every object it can: each put is a batch of
    its own, published as a pack of one (the pack thresholds are lowered)."""

    def put(self, kind, payload):
        with self.batch():
            return super().put(kind, payload)


@pytest.fixture(params=["disk", "packed", "memory"])
def store(request, tmp_path, monkeypatch):
    if request.param == "memory":
        return MemoryStore()
    root = tmp_path / "objects"
    root.mkdir()
    if request.param == "packed":
        monkeypatch.setattr(packs, "MIN_OBJECTS", 1)
        return PackingStore(root)
    return DiskStore(root)


@pytest.fixture
def small_threshold(monkeypatch):
    """Make 'large' mean > 64 KiB and 'buffered' <= 100 KiB, so the streaming
    paths run on small payloads (reads still go in codec.CHUNK pieces,
    shrunk to 16 KiB here)."""
    monkeypatch.setattr(store_module, "SMALL_FILE", 64 << 10)
    monkeypatch.setattr(store_module, "BUFFERED_BLOB", 100 << 10)
    monkeypatch.setattr(codec, "CHUNK", 16 << 10)


def plant(store, oid: str, frame: bytes) -> None:
    """Put raw frame bytes under an id, bypassing every check."""
    if isinstance(store, PackingStore):
        folder = str(store.root / "pack")
        packs.write_pack(folder, f"{folder}/.tmp-plant", [(oid, frame)], fsync=False)
    elif isinstance(store, DiskStore):
        path = store.path_for(oid)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(frame)
    else:
        store.frames[oid] = frame


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- has / get / put / iterate / delete ----------------------------------------------------

def test_put_get_has(store):
    oid = store.put(BLOB, b"hello\n")
    assert oid == sha(b"hello\n")
    assert store.has(oid)
    assert not store.has(ABSENT)
    assert store.get(oid) == (BLOB, b"hello\n")
    assert store.get(oid, BLOB) == (BLOB, b"hello\n")
    assert store.header(oid) == (BLOB, 6)
    assert store.verify(oid) == (BLOB, 6)
    assert store.stored_size(oid) > 0


def test_put_tree_and_snapshot(store):
    blob = store.put(BLOB, b"x")
    tree = Tree.from_entries([TreeEntry(b"x", "100644", blob, 1)])
    tree_id = store.put_tree(tree)
    assert tree_id == tree.id
    assert store.get_tree(tree_id) == tree
    snapshot = Snapshot(tree_id, (), "2024-05-01T12:00:00.000000Z", "m", {"k": "v"})
    snapshot_id = store.put_snapshot(snapshot)
    assert snapshot_id == snapshot.id
    assert store.get_snapshot(snapshot_id) == snapshot
    assert store.header(tree_id)[0] == TREE
    assert store.header(snapshot_id)[0] == SNAPSHOT


def test_payload_is_decoded_as_asked(store):
    blob = store.put(BLOB, b"just bytes")
    with pytest.raises(CorruptObjectError):
        store.get_tree(blob)
    with pytest.raises(CorruptObjectError):
        store.get_snapshot(blob)
    tree = store.put_tree(Tree())
    with pytest.raises(CorruptObjectError):
        store.get_snapshot(tree)


@pytest.mark.parametrize("first", [BLOB, TREE])
def test_a_file_whose_bytes_are_a_tree_shares_its_id(store, first):
    """Ids hash the payload only: a file holding b"rntree 1\n" IS the empty
    tree's id. Whichever is stored first, both readings must work."""
    tree = Tree()
    if first == BLOB:
        oid = store.put(BLOB, tree.encode())
        assert store.put_tree(tree) == oid
    else:
        oid = store.put_tree(tree)
        assert store.put(BLOB, tree.encode()) == oid
    assert oid == tree.id
    assert store.header(oid)[0] == first
    assert store.get_tree(oid) == tree
    assert b"".join(store.iter_blob(oid)) == tree.encode()


def test_empty_blob(store):
    oid = store.put(BLOB, b"")
    assert oid == sha(b"")
    assert store.get(oid) == (BLOB, b"")
    assert b"".join(store.iter_blob(oid)) == b""


def test_iterate_and_delete(store):
    ids = {store.put(BLOB, b"%d" % i) for i in range(20)}
    assert set(store) == ids
    victim = sorted(ids)[0]
    store.delete(victim)
    assert not store.has(victim)
    assert set(store) == ids - {victim}
    with pytest.raises(MissingObjectError):
        store.get(victim)
    store.delete(victim)  # deleting an absent object is not an error
    assert set(store) == ids - {victim}


def test_iterate_empty(store):
    assert list(store) == []


def test_ids_with_prefix(store):
    ids = sorted(store.put(BLOB, b"%d" % i) for i in range(50))
    for oid in ids[:5]:
        for length in (0, 1, 2, 3, 4, 7, 64):
            prefix = oid[:length]
            assert store.ids_with_prefix(prefix) == [i for i in ids if i.startswith(prefix)]
    assert store.ids_with_prefix(ABSENT[:6]) == [i for i in ids if i.startswith(ABSENT[:6])]


def test_invalid_ids_are_refused(store):
    for bad in ("", "abc", "A" * 64, "g" * 64, "../" + "a" * 61):
        with pytest.raises(InvalidValueError):
            store.has(bad)
        with pytest.raises((InvalidValueError, MissingObjectError)):
            store.get(bad)


def test_missing_object(store):
    with pytest.raises(MissingObjectError) as info:
        store.get(ABSENT)
    assert info.value.object_id == ABSENT
    for call in (store.header, store.verify, store.get_tree, store.get_snapshot):
        with pytest.raises(MissingObjectError):
            call(ABSENT)
    with pytest.raises(MissingObjectError):
        list(store.iter_blob(ABSENT))
    assert store.freshen(ABSENT) is False


# -- put of an existing object ----------------------------------------------------------

def test_put_existing_writes_nothing(store, monkeypatch):
    oid = store.put(BLOB, b"same bytes")
    if isinstance(store, DiskStore):
        path = store.file_of(oid)
        os.utime(path, (1_000_000_000, 1_000_000_000))
        inode = path.stat().st_ino
    else:
        frame = store.frames[oid]

    def no_writes():
        raise AssertionError("put of an existing object must not write it again")

    monkeypatch.setattr(store, "_new_temp", no_writes)
    assert store.put(BLOB, b"same bytes") == oid
    assert store.put_stream(io.BytesIO(b"same bytes"), 10) == oid
    if isinstance(store, DiskStore):
        st = path.stat()
        assert st.st_ino == inode
        assert st.st_mtime > 1_000_000_000 + 86400  # freshened, as gc's grace period needs
        assert list(store.temp_files()) == []
    else:
        assert store.frames[oid] is frame
    assert store.freshen(oid) is True


def test_put_existing_large_stream_freshens(store, small_threshold):
    data = os.urandom(200 << 10)
    oid = store.put_stream(io.BytesIO(data), len(data))
    if isinstance(store, DiskStore):
        os.utime(store.file_of(oid), (1_000_000_000, 1_000_000_000))
    assert store.put_stream(io.BytesIO(data), len(data)) == oid
    if isinstance(store, DiskStore):
        assert store.file_of(oid).stat().st_mtime > 1_000_000_000 + 86400
        assert list(store.temp_files()) == []
    assert b"".join(store.iter_blob(oid)) == data


# -- streaming ---------------------------------------------------------------------------

@pytest.mark.parametrize("size_kib", [0, 1, 64, 65, 100, 101, 300])
def test_put_stream_round_trips(store, small_threshold, size_kib):
    data = os.urandom(size_kib << 10)
    oid = store.put_stream(io.BytesIO(data), len(data))
    assert oid == sha(data)
    chunks = list(store.iter_blob(oid))
    assert b"".join(chunks) == data
    assert all(len(c) <= max(store_module.BUFFERED_BLOB, codec.CHUNK) for c in chunks)
    assert store.header(oid) == (BLOB, len(data))
    assert store.verify(oid) == (BLOB, len(data))


def test_put_stream_of_a_larger_than_small_file_payload_unpatched(store):
    """The real threshold, once: one payload just over SMALL_FILE."""
    data = os.urandom(1 << 16) * ((store_module.SMALL_FILE >> 16) + 1)
    oid = store.put_stream(io.BytesIO(data), len(data))
    assert oid == sha(data)
    assert b"".join(store.iter_blob(oid)) == data


@pytest.mark.parametrize("size_kib", [10, 200])
@pytest.mark.parametrize("delta", [-1, +1, -1000])
def test_size_changed(store, small_threshold, size_kib, delta):
    actual = os.urandom(size_kib << 10)
    announced = len(actual) - delta
    with pytest.raises(SizeChangedError):
        store.put_stream(io.BytesIO(actual), announced)
    assert list(store) == []
    if isinstance(store, DiskStore):
        assert list(store.temp_files()) == []


def test_put_file_rereads_a_file_that_changes(store, small_threshold, tmp_path):
    path = tmp_path / "growing"
    path.write_bytes(b"a" * (200 << 10))
    original_put_stream = store.put_stream
    calls = []

    def put_stream_while_file_grows(source, size, kind=BLOB):
        calls.append(size)
        if len(calls) == 1:  # the file grows after its size was taken
            with open(path, "ab") as fh:
                fh.write(b"b" * 10)
        return original_put_stream(source, size, kind)

    store.put_stream = put_stream_while_file_grows
    oid, size = store.put_file(path)
    assert len(calls) == 2
    assert size == (200 << 10) + 10
    assert oid == sha(path.read_bytes())
    assert b"".join(store.iter_blob(oid)) == path.read_bytes()


def test_put_file(store, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"content\n")
    assert store.put_file(path) == (sha(b"content\n"), 8)


# -- corruption ----------------------------------------------------------------------------

def test_hash_mismatch(store, small_threshold):
    victim = sha(b"what the id promises")
    plant(store, victim, codec.compress(BLOB, b"other content", 3))
    assert store.has(victim)
    assert store.header(victim) == (BLOB, 13)  # the header alone is not verified
    for call in (store.get, store.verify):
        with pytest.raises(CorruptObjectError, match="hash mismatch") as info:
            call(victim)
        assert info.value.object_id == victim
    with pytest.raises(CorruptObjectError):
        list(store.iter_blob(victim))
    # unverified reads are possible on request (fsck --quick, say)
    assert store.get(victim, verify=False) == (BLOB, b"other content")


def test_hash_mismatch_of_a_large_blob_leaks_nothing(store, small_threshold):
    data = os.urandom(300 << 10)
    victim = sha(b"something else")
    plant(store, victim, codec.compress(BLOB, data, 1))
    handed_out = []
    with pytest.raises(CorruptObjectError):
        for chunk in store.iter_blob(victim):
            handed_out.append(chunk)
    assert handed_out == []


def test_hash_mismatch_of_a_tree(store):
    tree = Tree()
    victim = sha(b"not the empty tree")
    plant(store, victim, codec.compress(TREE, tree.encode(), 3))
    with pytest.raises(CorruptObjectError):
        store.get_tree(victim)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "bomb"])
def test_corrupt_frames(store, damage):
    payload = os.urandom(3000)
    oid = sha(payload)
    frame = codec.compress(BLOB, payload, 3)
    if damage == "truncate":
        frame = frame[: len(frame) // 2]
    elif damage == "flip":
        frame = bytearray(frame)
        frame[len(frame) // 2] ^= 0x40
        frame = bytes(frame)
    elif damage == "garbage":
        frame = b"this is not zstd at all"
    elif damage == "empty":
        frame = b""
    else:  # declares 3000 bytes, expands to 50 MB
        from test_codec import zeros_frame
        frame = zeros_frame(b"rn1 blob raw 3000\n", 50 << 20)
    plant(store, oid, frame)
    for call in (store.get, store.verify):
        with pytest.raises(CorruptObjectError):
            call(oid)
    with pytest.raises(CorruptObjectError):
        list(store.iter_blob(oid))


def test_corrupt_tree_payload(store):
    payload = b"rntree 1\n100644 " + b"a" * 64 + b" 01 x\0"
    oid = sha(payload)
    plant(store, oid, codec.compress(TREE, payload, 3))
    with pytest.raises(CorruptObjectError) as info:
        store.get_tree(oid)
    assert oid in str(info.value)


# -- disk specifics ------------------------------------------------------------------------

def test_disk_layout(tmp_path):
    root = tmp_path / "objects"
    root.mkdir()
    store = DiskStore(root)
    oid = store.put(BLOB, b"hello\n")
    path = root / oid[:2] / oid[2:]
    assert path.is_file()
    assert store.path_for(oid) == path
    import zstandard
    assert zstandard.ZstdDecompressor().decompress(path.read_bytes()) == b"rn1 blob raw 6\nhello\n"
    assert sorted(p.name for p in root.iterdir()) == [oid[:2]]


def test_disk_iteration_skips_leftovers(tmp_path):
    root = tmp_path / "objects"
    root.mkdir()
    store = DiskStore(root)
    oid = store.put(BLOB, b"x")
    (root / ".tmp-object-123-abcd").write_bytes(b"half")
    (root / "zz").mkdir()
    (root / oid[:2] / "short").write_bytes(b"")
    (root / "README").write_bytes(b"")
    assert list(store) == [oid]
    assert [p.name for p in store.temp_files()] == [".tmp-object-123-abcd"]


def test_disk_batch_publishes_every_object(tmp_path):
    root = tmp_path / "objects"
    root.mkdir()
    store = DiskStore(root)
    with store.batch():
        ids = [store.put(BLOB, b"%d" % i) for i in range(store_module.SYNCFS_THRESHOLD + 5)]
        with store.batch():
            ids.append(store.put(BLOB, b"nested"))
    assert all(store.has(i) for i in ids)
    assert not store._pending


def test_disk_concurrent_puts_of_one_object(tmp_path):
    root = tmp_path / "objects"
    root.mkdir()
    stores = [DiskStore(root) for _ in range(4)]
    data = os.urandom(1 << 16)
    results = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.put(BLOB, data))) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {sha(data)}
    assert stores[0].get(sha(data)) == (BLOB, data)
    assert list(stores[0].temp_files()) == []


def test_disk_store_without_fsync(tmp_path):
    root = tmp_path / "objects"
    root.mkdir()
    store = DiskStore(root, fsync=False)
    oid = store.put(BLOB, b"x")
    assert store.get(oid) == (BLOB, b"x")


def test_disk_missing_root_iterates_empty(tmp_path):
    assert list(DiskStore(Path(tmp_path / "nowhere"))) == []


# -- frames as stored: read_frame / add_frames (remote transfers) ---------------------------

def test_read_frame_and_add_frames_round_trip(store, tmp_path):
    ids = [store.put(BLOB, b"frame %d\n" % i) for i in range(3)]
    frames = [(oid, store.read_frame(oid)) for oid in ids]
    assert all(codec.FrameReader(io.BytesIO(f), oid).read_all() for oid, f in frames)
    other = DiskStore(tmp_path / "other")
    other.add_frames(frames)
    assert [other.get(oid) for oid in ids] == [store.get(oid) for oid in ids]
    other.add_frames(frames)  # already stored: nothing changes
    assert sorted(other) == sorted(ids)


def test_read_frame_of_a_missing_object(store):
    with pytest.raises(MissingObjectError):
        store.read_frame(ABSENT)


def test_add_frames_packs_many(tmp_path):
    source = MemoryStore()
    ids = [source.put(BLOB, b"many %d\n" % i) for i in range(packs.MIN_OBJECTS + 1)]
    target = DiskStore(tmp_path / "objects")
    target.add_frames((oid, source.read_frame(oid)) for oid in ids)
    assert len(packs.list_packs(str(tmp_path / "objects" / "pack"))) == 1
    assert not list(target._loose_ids())
    assert all(target.verify(oid) == (BLOB, len(source.get(oid)[1])) for oid in ids)
