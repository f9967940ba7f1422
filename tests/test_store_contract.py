"""One contract, every object store implementation (DiskStore, MemoryStore):
objects, frames, inventory, and gc, du and fsck on a workspace using each."""

from __future__ import annotations

import hashlib
import io
import os
import ast
import threading
import time
from pathlib import Path

import pytest

import rnstore
from rnstore import codec, packs, store as store_module
from rnstore.errors import CorruptObjectError, InvalidValueError, MissingObjectError
from rnstore.objects import BLOB, SNAPSHOT, TREE, Snapshot, Tree, TreeEntry
from rnstore.repo import Repository
from rnstore.store import DiskStore, MemoryStore, ObjectStore, SizeChangedError

from helpers.library import age_copies as age

ABSENT = "0" * 64


class PackingStore(DiskStore):
    """A DiskStore that packs every object it can: each put is a batch of
    its own, published as a pack of one (the pack thresholds are lowered)."""

    def put(self, kind, payload):
        with self.batch():
            return super().put(kind, payload)


STORES = ["disk", "packed", "memory"]


def new_store(kind: str, root: Path) -> ObjectStore:
    if kind == "memory":
        return MemoryStore()
    root.mkdir(exist_ok=True)
    return PackingStore(root) if kind == "packed" else DiskStore(root)


@pytest.fixture(params=STORES)
def store(request, tmp_path, monkeypatch):
    if request.param == "packed":
        monkeypatch.setattr(packs, "MIN_OBJECTS", 1)
    return new_store(request.param, tmp_path / "objects")


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


def mtime_of(store, oid: str) -> float:
    [copy] = [c for c in store.stored_objects() if c.id == oid]
    return copy.mtime


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
    age(store, 10 * 86400)
    assert mtime_of(store, oid) < time.time() - 86400  # as it is now, not as first seen
    if isinstance(store, DiskStore):
        inode = store.file_of(oid).stat().st_ino
    else:
        frame = store.frames[oid]

    def no_writes():
        raise AssertionError("put of an existing object must not write it again")

    monkeypatch.setattr(store, "_new_temp", no_writes)
    assert store.put(BLOB, b"same bytes") == oid
    assert store.put_stream(io.BytesIO(b"same bytes"), 10) == oid
    assert mtime_of(store, oid) > time.time() - 86400  # freshened, as gc's grace period needs
    if isinstance(store, DiskStore):
        assert store.file_of(oid).stat().st_ino == inode
    else:
        assert store.frames[oid] is frame
    assert list(store.temp_files()) == []
    assert store.freshen(oid) is True


def test_put_existing_large_stream_freshens(store, small_threshold):
    data = os.urandom(200 << 10)
    oid = store.put_stream(io.BytesIO(data), len(data))
    age(store, 10 * 86400)
    assert store.put_stream(io.BytesIO(data), len(data)) == oid
    assert mtime_of(store, oid) > time.time() - 86400
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


def test_streamed_objects_use_large_level_and_others_level(tmp_path, small_threshold):
    """compression.large_level applies to what put_stream streams (over
    SMALL_FILE), compression.level to everything else: swapping the two
    levels swaps which object comes out smaller."""
    text = b"".join(b"step %d loss %.6f lr %g\n" % (i, 1 / (i + 1), i % 7) for i in range(8000))
    small, large = text[:60 << 10], text[:200 << 10]
    sizes = {}
    for level, large_level in ((19, 1), (1, 19)):
        for kind in STORES:
            store = new_store(kind, tmp_path / f"{kind}-{level}")
            store.level, store.large_level = level, large_level
            sizes[kind, level] = [len(store.read_frame(store.put_stream(io.BytesIO(data), len(data))))
                                  for data in (small, large)]
    for kind in STORES:
        assert sizes[kind, 19][0] < sizes[kind, 1][0], kind
        assert sizes[kind, 19][1] > sizes[kind, 1][1], kind


def test_a_workspace_store_takes_both_levels_from_its_config(tmp_path):
    repo = Repository.init(tmp_path / "ws")
    repo.config.set("compression.level", "7")
    repo.config.set("compression.large_level", "5")
    store = Repository.open(tmp_path / "ws").store
    assert (store.level, store.large_level) == (7, 5)


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
        from helpers.frames import zeros_frame
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
    [leftover] = store.temp_files()
    assert (leftover.where, leftover.size) == (str(root / ".tmp-object-123-abcd"), 4)
    store.delete_temp_files([leftover])
    assert list(store.temp_files()) == [] and list(store) == [oid]


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


# -- the contract itself -----------------------------------------------------------------

def test_every_store_implements_the_whole_contract():
    """The contract is the abstract methods plus the shared logic built on
    them: a store missing one cannot even be made."""
    required = {"has", "freshen", "delete", "__iter__", "stored_size",
                "stored_objects", "delete_stored", "temp_files", "delete_temp_files", "damaged_packs"}
    assert required <= ObjectStore.__abstractmethods__
    shared = {"read_frame", "add_frames", "get", "put", "put_stream", "open_object", "header", "verify",
              "ids_with_prefix", "batch"}
    assert shared <= set(dir(ObjectStore)) - ObjectStore.__abstractmethods__
    for cls in (DiskStore, MemoryStore):
        assert not cls.__abstractmethods__, cls

    class WithoutInventory(ObjectStore):  # objects, but no stored_objects() & co.
        has = freshen = delete = MemoryStore.has
        _open_frame = _new_temp = _publish = _discard = MemoryStore.has
    with pytest.raises(TypeError, match="stored_objects"):
        WithoutInventory()


def _store_attributes_used(path: Path) -> set[str]:
    """Attributes read off a store (store.x, repo.store.x) in
    a library module."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id == "store" or (
                isinstance(value, ast.Attribute) and value.attr == "store"
                and isinstance(value.value, ast.Name) and value.value.id == "repo"):
            used.add(node.attr)
    return used


def test_the_library_uses_only_the_contract():
    """gc, du, fsck and the rest call only what every store has: nothing
    that only DiskStore knows (its root, paths, packs)."""
    package = Path(rnstore.__file__).parent
    contract = {name for name in dir(ObjectStore) if not name.startswith("_")} | {"__iter__"}
    outside = {}
    for path in sorted(package.rglob("*.py")):
        if path.name in ("store.py", "packs.py") or "cli" in path.relative_to(package).parts:
            continue
        extra = _store_attributes_used(path) - contract
        if extra:
            outside[str(path.relative_to(package))] = sorted(extra)
    assert outside == {}
    assert "stored_objects" in _store_attributes_used(package / "gc.py")  # the scan sees uses


def test_missing_object_in_the_inventory(store):
    with pytest.raises(MissingObjectError) as info:
        store.stored_size(ABSENT)
    assert info.value.object_id == ABSENT
    with pytest.raises(MissingObjectError):
        store.read_frame(ABSENT)
    with pytest.raises(InvalidValueError):
        store.stored_size("not an id")
    with pytest.raises(InvalidValueError):
        store.read_frame("not an id")


def test_stored_objects_list_every_copy(store):
    ids = {store.put(BLOB, b"%d" % i) for i in range(10)}
    copies = list(store.stored_objects())
    assert {c.id for c in copies} == ids == set(store)
    for copy in copies:
        assert copy.size == store.stored_size(copy.id) == len(store.read_frame(copy.id))
        assert time.time() - 3600 < copy.mtime <= time.time() + 5
    doomed = [c for c in copies if c.id in sorted(ids)[:4]]
    store.delete_stored(doomed)
    assert set(store) == ids - {c.id for c in doomed}
    assert {c.id for c in store.stored_objects()} == set(store)
    for oid in sorted(ids)[4:]:
        assert store.get(oid)[1] in {b"%d" % i for i in range(10)}
    store.delete_stored([])


def test_read_frame_is_the_frame_as_stored(store):
    payload = os.urandom(5000)
    oid = store.put(BLOB, payload)
    frame = store.read_frame(oid)
    assert codec.FrameReader(io.BytesIO(frame), oid).read_all(1 << 20) == payload
    damaged = codec.compress(BLOB, b"other", 3)
    victim = sha(b"promised")
    plant(store, victim, damaged)
    assert store.read_frame(victim) == damaged  # as stored: not verified


@pytest.mark.parametrize("target_kind", STORES)
@pytest.mark.parametrize("count", [3, 200])
def test_add_frames_transfers_between_stores(store, target_kind, count, tmp_path, monkeypatch):
    """What a transfer does: frames read from one store, added to another."""
    ids = [store.put(BLOB, b"object %d" % i) for i in range(count)]
    ids.append(store.put_tree(Tree()))
    target = new_store(target_kind, tmp_path / "target")
    target.add_frames((oid, store.read_frame(oid)) for oid in ids)
    assert set(target) == set(ids)
    for oid in ids:
        assert target.read_frame(oid) == store.read_frame(oid)
        assert target.verify(oid) == store.verify(oid)
    if isinstance(target, DiskStore):
        packed = packs.list_packs(str(target.root / "pack"))
        loose = [c for c in target.stored_objects() if c.where not in packed]
        if count >= packs.MIN_OBJECTS:
            assert len(packed) == 1 and loose == []  # many: one pack
        elif not isinstance(target, PackingStore):
            assert packed == [] and len(loose) == len(ids)  # few: loose


def test_add_frames_freshens_what_is_there(store):
    oid = store.put(BLOB, b"already here")
    age(store, 10 * 86400)
    copies = [c for c in store.stored_objects() if c.id == oid]
    store.add_frames([(oid, store.read_frame(oid))])
    assert [c.id for c in store.stored_objects() if c.id == oid] == [oid]  # not stored twice
    assert mtime_of(store, oid) > copies[0].mtime + 86400
    with pytest.raises(InvalidValueError):
        store.add_frames([("not an id", b"")])


def test_temp_files_of_a_store_without_leftovers(store):
    store.put(BLOB, b"x")
    assert list(store.temp_files()) == []
    store.delete_temp_files([])


# -- gc, du and fsck on a workspace using each store -------------------------------------

@pytest.fixture(params=STORES)
def workspace(request, tmp_path, monkeypatch) -> Repository:
    """A workspace whose objects live in the store under test."""
    kind = request.param
    if kind == "packed":
        monkeypatch.setattr(packs, "MIN_OBJECTS", 1)
    made = []

    def open_store(repo: Repository) -> ObjectStore:
        made.append(new_store(kind, repo.store_root / "objects"))
        return made[-1]

    repo = Repository.init(tmp_path / "ws", default_ignore=False, store=open_store)
    assert repo.store is made[0]
    assert isinstance(repo.store, MemoryStore) == (kind == "memory")
    return repo


def write(repo: Repository, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (repo.root / name).write_bytes(data)


def two_snapshots(repo: Repository) -> tuple[str, str, str]:
    """A first snapshot holding a file only it has; a second without it.
    Returns (first snapshot, second snapshot, the first's own blob id)."""
    write(repo, {"kept.txt": b"kept\n", "gone.txt": b"only in the first\n"})
    first = repo.snapshot("first").id
    (repo.root / "gone.txt").unlink()
    write(repo, {"new.txt": b"new\n"})
    second = repo.snapshot("second").id
    return first, second, sha(b"only in the first\n")


def test_gc_on_every_store(workspace):
    repo = workspace
    first, second, only_first = two_snapshots(repo)
    repo.forget([first])
    before = set(repo.store)
    assert repo.gc().deleted_objects == 0  # all young: the grace period spares them
    stats = repo.gc(prune="1h", dry_run=True)
    assert stats.deleted_objects == 0 and stats.young_objects == 3  # snapshot, tree, blob
    age(repo.store, 2 * 3600)
    stats = repo.gc(prune="1h", dry_run=True)
    assert stats.deleted_objects == 3 and set(repo.store) == before
    stats = repo.gc(prune="1h")
    assert stats.deleted_objects == 3 and stats.freed_bytes > 0
    assert not repo.store.has(first) and not repo.store.has(only_first)
    assert len(before - set(repo.store)) == 3
    assert stats.reachable_objects == len(set(repo.store))
    out = repo.root.parent / "out"
    repo.checkout(second, target=out)
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt", "new.txt"]
    result = repo.fsck()
    assert result.ok and result.problems == []


def test_du_on_every_store(workspace):
    repo = workspace
    first, second, only_first = two_snapshots(repo)
    stats = repo.du()
    usage = stats.store
    assert usage.objects == len(set(repo.store))
    assert usage.stored_bytes == sum(repo.store.stored_size(oid) for oid in repo.store)
    assert (usage.blobs, usage.trees, usage.snapshots) == (3, 2, 2)
    assert usage.live_snapshots == 2 and usage.unreachable_objects == 0
    by_id = {row.id: row for row in stats.snapshots}
    assert by_id[first].exclusive_bytes >= repo.store.stored_size(only_first)
    repo.forget([first])
    usage = repo.du().store
    assert usage.unreachable_objects == 3 and usage.reclaimable_bytes > 0


def test_fsck_on_every_store(workspace):
    repo = workspace
    first, second, only_first = two_snapshots(repo)
    result = repo.fsck()
    assert result.ok and result.checked_objects == len(set(repo.store))
    # damage: a blob whose bytes no longer hash to its id, and a missing one
    kept = sha(b"kept\n")
    repo.store.delete(kept)
    plant(repo.store, kept, codec.compress(BLOB, b"tampered\n", 3))
    repo.store.delete(sha(b"new\n"))
    result = repo.fsck()
    assert not result.ok
    found = {(p.kind, p.id) for p in result.problems}
    assert ("hash mismatch", kept) in found
    assert ("missing", sha(b"new\n")) in found
    assert ("hash mismatch", kept) not in {(p.kind, p.id) for p in repo.fsck(quick=True).problems}


def test_repository_open_and_init_still_use_the_disk_store(tmp_path):
    repo = Repository.init(tmp_path / "ws")
    assert type(repo.store) is DiskStore and repo.store.root == tmp_path / "ws" / ".rnstore" / "objects"
    assert type(Repository.open(tmp_path / "ws").store) is DiskStore
    memory = MemoryStore()
    assert Repository.open(tmp_path / "ws", store=memory).store is memory


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
