"""Deltas between versions (FORMAT.md, Deltas): an object stored as a zstd
frame compressed against its base's payload, rebuilt and verified on every
read, on every store; checked against the `zstd` CLI as an independent
decoder; chains bounded on write and on read."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from rnstore import codec, packs
from rnstore.errors import BrokenDeltaError, CorruptObjectError, MissingObjectError
from rnstore.objects import MODE_FILE, TreeEntry, encode_tree_unchecked
from rnstore.store import MEMORY, DiskStore, MemoryStore, ObjectStore

STORES = ["disk", "memory"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_store(kind: str, root: Path) -> ObjectStore:
    if kind == "memory":
        return MemoryStore()
    root.mkdir(exist_ok=True)
    return DiskStore(root)


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    return new_store(request.param, tmp_path / "objects")


def versions(count: int, *, seed: bytes = b"") -> list[bytes]:
    """`count` versions of a text file, each a small edit of the one before."""
    import random
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(400)]
    lines = [b" ".join(rng.choices(words, k=8)) + b"\n" for _ in range(300)]
    out = []
    for version in range(count):
        lines[(version * 37) % len(lines)] = b"edited in version %d\n" % version
        if version % 3 == 0:
            lines.insert(version % 50, b"inserted in version %d\n" % version)
        out.append(b"".join(lines))
    return out


def chain_frames(payloads: list[bytes], *, kind: str = "blob") -> list[tuple[str, bytes]]:
    """The first payload whole, each next one a delta against the one before:
    a chain of len(payloads) - 1 deltas, bases first."""
    frames = [(sha(payloads[0]), codec.compress(kind, payloads[0], 3))]
    for base, payload in zip(payloads, payloads[1:]):
        frames.append((sha(payload), codec.encode_delta(kind, payload, sha(base), base, 3)))
    return frames


# -- the codec -------------------------------------------------------------------------------

def test_a_delta_frame_names_its_base_and_holds_a_magicless_frame():
    """Out of its pack a delta travels as a delta frame: kind byte (high bit
    set), size, the base's raw id, then a zstd frame without magic number,
    checksum (the id check stands in for it)."""
    import zstandard
    base, payload = versions(2)
    frame = codec.encode_delta("blob", payload, sha(base), base, 3)
    size = codec.encode_varint(len(payload))
    assert frame[:1 + len(size) + 32] == b"\x81" + size + bytes.fromhex(sha(base))
    inner = frame[1 + len(size) + 32:]
    params = zstandard.get_frame_parameters(inner, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    assert (params.content_size, params.has_checksum) == (len(payload), False)
    assert codec.decode_delta(inner, len(payload), base) == payload
    assert codec.frame_base(frame) == sha(base)
    assert codec.frame_base(codec.compress("blob", payload, 3)) is None
    assert len(frame) < len(codec.compress("blob", payload, 3)) / 4
    tree = codec.encode_delta("tree", payload, sha(base), base, 3)
    assert tree[0] == 0x82 and tree[1:] == frame[1:]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2 ** 35 + 7, 2 ** 64 - 1])
def test_varints_round_trip_and_refuse_what_is_not_minimal(value):
    encoded = codec.encode_varint(value)
    assert codec.decode_varint(b"x" + encoded + b"y", 1) == (value, 1 + len(encoded))
    with pytest.raises(ValueError):
        codec.decode_varint(encoded[:-1], 0)
    with pytest.raises(ValueError, match="minimal" if len(encoded) < 10 else "too long"):
        codec.decode_varint(encoded[:-1] + bytes([encoded[-1] | 0x80, 0]), 0)


def test_oversized_payloads_are_never_deltas_and_snapshots_only_pack_local_ones(monkeypatch):
    assert codec.encode_delta("snapshot", b"x", "0" * 64, b"y", 3)[0] == 0x83
    monkeypatch.setattr(codec, "DELTA_MAX_SIZE", 10)
    with pytest.raises(ValueError, match="limited"):
        codec.encode_delta("blob", b"x" * 11, "0" * 64, b"y", 3)
    with pytest.raises(ValueError, match="not an object id"):
        codec.encode_delta("blob", b"x", "0" * 63, b"y", 3)


def _zstd(*args: str, cwd: Path) -> bytes:
    return subprocess.run(["zstd", "-q", *args], cwd=cwd, check=True, capture_output=True).stdout


needs_zstd_cli = pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd CLI is not installed")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def edited(base: bytes, edits) -> bytes:
    payload = base
    for at, cut, insert in edits:
        at = min(at, len(payload))
        payload = payload[:at] + insert + payload[at + cut:]
    return payload


@settings(max_examples=30, deadline=None)
@given(first=st.binary(max_size=3000), steps=st.lists(st.tuples(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 40), st.binary(max_size=40)), max_size=4),
    st.integers(0, 1000), st.sampled_from(["blob", "tree"])), min_size=1, max_size=8),
    level=st.sampled_from([1, 3, 9]))
def test_an_independent_decoder_reads_every_object_of_a_pack(tmp_path_factory, first, steps, level):
    """Versions each an edit of an earlier one, stored as deltas against a
    random earlier version (or whole) by the store's own writer: the pack
    file decodes, object by object, by a reader written from FORMAT.md with
    zstd's own decoder (test_object_conformance)."""
    payloads = [first]
    frames = [(sha(first), codec.compress("blob", first, level))]
    kinds = {sha(first): "blob"}
    for edits, pick, kind in steps:
        base = payloads[pick % len(payloads)]
        payload = edited(base, edits)
        if sha(payload) in kinds:
            continue
        kinds[sha(payload)] = kind
        payloads.append(payload)
        frames.append((sha(payload), codec.encode_delta(kind, payload, sha(base), base, level)
                       if pick % 3 else codec.compress(kind, payload, level)))
    from test_object_conformance import read_pack_by_the_spec
    store = DiskStore(tmp_path_factory.mktemp("objects"))
    where = store.write_pack(frames)
    deltas = any(frame[0] & codec.DETACHED for _, frame in frames)
    assert Path(where).read_bytes()[:9] == (b"rnpack 2\n" if deltas else b"rnpack 1\n")
    decoded = {oid: (kind, payload) for oid, (kind, payload, _) in read_pack_by_the_spec(Path(where)).items()}
    assert decoded == {sha(p): (kinds[sha(p)], p) for p in payloads}
    for payload in payloads:
        assert store.get(sha(payload))[1] == payload


@needs_zstd_cli
def test_the_zstd_cli_decodes_a_pack_local_delta_given_its_magic(tmp_path):
    """The worked example of FORMAT.md: the record's inner frame, with the
    4 bytes of zstd's magic number put back, is a frame `zstd -d
    --patch-from=BASE` decodes; a 6 MiB file with a few edits is a small
    delta, within a window of 2^27."""
    import random
    import zstandard
    rng = random.Random(5)
    base = rng.randbytes(6 << 20)
    payload = base[:1 << 20] + b"an insertion" + base[1 << 20:4 << 20] + base[(4 << 20) + 99:]
    store = DiskStore(tmp_path / "objects")
    where = store.write_pack([(sha(base), codec.compress("blob", base, 3)),
                              (sha(payload), codec.encode_delta("blob", payload, sha(base), base, 3))])
    (entry,) = [e for e in packs.Pack.open(where).locations() if e[0].hex() == sha(payload)]
    record = Path(where).read_bytes()[entry[1]:entry[1] + entry[2]]
    assert record[0] == 1 and entry[2] < 64 << 10
    size_end = codec.decode_varint(record, 1)[1]
    inner_at = codec.decode_varint(record, size_end)[1]
    assert codec.decode_varint(record, size_end)[0] == entry[1] - 9  # back to the base, the first record
    (tmp_path / "inner.zst").write_bytes(ZSTD_MAGIC + record[inner_at:])
    (tmp_path / "base").write_bytes(base)
    assert zstandard.get_frame_parameters(ZSTD_MAGIC + record[inner_at:]).window_size <= 1 << 27
    assert _zstd("-dc", "--long=27", "--patch-from=base", "inner.zst", cwd=tmp_path) == payload


@needs_zstd_cli
def test_the_zstd_cli_decodes_a_small_pack_local_delta(tmp_path):
    base, payload = versions(2)
    inner = codec.encode_delta("blob", payload, sha(base), base, 3)[1 + len(codec.encode_varint(len(payload))) + 32:]
    (tmp_path / "inner.zst").write_bytes(ZSTD_MAGIC + inner)
    (tmp_path / "base").write_bytes(base)
    assert _zstd("-dc", "--patch-from=base", "inner.zst", cwd=tmp_path) == payload


@settings(max_examples=50)
@given(payloads=st.lists(st.binary(max_size=2000), min_size=2, max_size=6))
def test_chains_round_trip_in_memory(payloads):
    store = MemoryStore()
    distinct = list(dict.fromkeys(payloads))  # a chain never holds an object twice
    store.write_pack(chain_frames(distinct))
    for payload in payloads:
        assert store.get(sha(payload))[1] == payload
        assert store.verify(sha(payload)) == ("blob", len(payload))


def outer(content: bytes, *, content_size: bool = True) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(write_checksum=True, write_content_size=content_size).compress(content)


def hostile_frames() -> dict[str, tuple[str, bytes]]:
    """why -> (id, frame) of delta frames of the first form (still read) a
    reader must refuse, against the base `versions(2)[0]`, stored beside them."""
    import zstandard
    from helpers.deltas import encode_legacy_delta
    base, payload = versions(2)
    good = encode_legacy_delta("blob", payload, sha(base), base, 3)
    inner = codec._decompressor().decompress(good).split(b"\n", 1)[1]
    header = b"rn1 blob delta %d %s\n" % (len(payload), sha(base).encode())
    bomb = zstandard.ZstdCompressor(write_content_size=True, write_checksum=True).compress(
        payload + bytes(1 << 20))
    return {
        "over the limit": (sha(payload), outer(b"rn1 blob delta %d %s\n" % (
            codec.DELTA_MAX_SIZE + 1, sha(base).encode()) + inner)),
        "a snapshot stored as a delta": (sha(payload), outer(header.replace(b"blob", b"snapshot") + inner)),
        "does not record its size": (sha(payload), outer(header + inner, content_size=False)),
        "not one whole zstd frame": (sha(payload), outer(header + inner + b"junk")),
        "out of bounds": (sha(payload[:100]), outer(  # an inner frame far larger than the payload
            b"rn1 blob delta 100 %s\n" % sha(base).encode() + codec.compress("blob", os.urandom(4096), 3))),
        "frame size disagrees": (sha(payload), outer(header + bomb)),  # would expand far past SIZE
        "decodes to another size|frame size disagrees": (sha(payload), outer(header + zstandard.ZstdCompressor(
            write_content_size=True, write_checksum=True).compress(payload[:-1]))),
    }


@pytest.mark.parametrize("why", sorted(hostile_frames()))
def test_hostile_delta_frames_are_corrupt(why):
    base = versions(2)[0]
    oid, frame = hostile_frames()[why]
    store = MemoryStore()
    store.frames[sha(base)] = codec.compress("blob", base, 3)
    store.frames[oid] = frame
    with pytest.raises(CorruptObjectError, match=why):
        store.get(oid)
    with pytest.raises(CorruptObjectError):
        store.verify(oid)


# -- reading through a store -------------------------------------------------------------------

def test_every_read_rebuilds_a_delta(store):
    payloads = versions(4)
    where = store.write_pack(chain_frames(payloads))
    assert where == MEMORY if isinstance(store, MemoryStore) else where.endswith(".pack")
    newest = sha(payloads[-1])
    assert store.delta_base(newest) == sha(payloads[-2])
    assert store.delta_base(sha(payloads[0])) is None
    assert store.header(newest) == ("blob", len(payloads[-1]))
    assert store.get(newest)[1] == payloads[-1]
    assert b"".join(store.iter_blob(newest)) == payloads[-1]
    assert store.verify(newest) == ("blob", len(payloads[-1]))
    with store.open_verified(newest) as reader:
        assert b"".join(reader.chunks()) == payloads[-1]
    assert store.has(newest) and sha(payloads[0]) in set(store)


def test_a_tree_may_be_a_delta(store, tmp_path):
    from rnstore.objects import Tree, TreeEntry
    trees = [Tree.from_entries([TreeEntry(b"f%03d" % i, "100644", sha(b"%d %d" % (i, v)), i)
                                for i in range(50)]) for v in range(2)]
    payloads = [t.encode() for t in trees]
    store.write_pack(chain_frames(payloads, kind="tree"))
    assert store.get_tree(trees[1].id) == trees[1]


def test_a_delta_whose_rebuilt_payload_does_not_hash_to_its_id_is_corrupt(store):
    base, payload = versions(2)
    frame = codec.encode_delta("blob", payload + b"!", sha(base), base, 3)
    store.write_pack([(sha(base), codec.compress("blob", base, 3)), (sha(payload), frame)])
    with pytest.raises(CorruptObjectError, match="hash mismatch"):
        store.get(sha(payload))
    with pytest.raises(CorruptObjectError, match="hash mismatch"):
        store.verify(sha(payload))


def test_a_delta_against_the_wrong_base_is_corrupt(store):
    """The inner frame decodes against another base's bytes: zstd's checksum
    or the id check refuses it, never wrong bytes handed out."""
    base, payload = versions(2)
    other = versions(1, seed=b"other")[0]
    frame = codec.encode_delta("blob", payload, sha(other), base, 3)  # names `other`, made from `base`
    store.write_pack([(sha(other), codec.compress("blob", other, 3)), (sha(payload), frame)])
    with pytest.raises(CorruptObjectError):
        store.get(sha(payload))


def test_a_missing_base_names_the_culprit(store):
    payloads = versions(4)
    store.write_pack(chain_frames(payloads))
    store.delete(sha(payloads[0]))
    with pytest.raises(BrokenDeltaError) as info:
        store.get(sha(payloads[-1]))
    error = info.value
    assert error.object_id == sha(payloads[-1])
    assert error.base == sha(payloads[-2])
    assert error.culprit == sha(payloads[0]) and error.culprit_missing
    assert f"needs {sha(payloads[0])}, which is missing" in str(error)
    with pytest.raises(BrokenDeltaError, match=f"its delta base {sha(payloads[0])} is missing"):
        store.verify(sha(payloads[1]))
    assert store.header(sha(payloads[-1])) == ("blob", len(payloads[-1]))  # the header needs no base


def damage(store: ObjectStore, oid: str) -> None:
    """Flip a byte in the middle of the object's stored frame, where it lies."""
    if isinstance(store, MemoryStore):
        frame = bytearray(store.frames[oid])
        frame[len(frame) // 2] ^= 0xff
        store.frames[oid] = bytes(frame)
        return
    for path in packs.list_packs(store._pack_folder):
        for raw_id, offset, length in packs.Pack.open(path).locations():
            if raw_id.hex() == oid:
                with open(path, "r+b") as fh:
                    fh.seek(offset + length // 2)
                    byte = fh.read(1)
                    fh.seek(offset + length // 2)
                    fh.write(bytes([byte[0] ^ 0xff]))
                return
    raise AssertionError(f"{oid} is in no pack")


def test_a_corrupt_base_names_the_culprit(store):
    payloads = versions(3)
    store.write_pack(chain_frames(payloads))
    damage(store, sha(payloads[0]))
    with pytest.raises(BrokenDeltaError) as info:
        store.get(sha(payloads[2]))
    assert info.value.culprit == sha(payloads[0]) and not info.value.culprit_missing
    assert "is corrupt" in str(info.value)


def test_reading_every_version_rebuilds_each_base_once(store, monkeypatch):
    """fsck, a repack or the trees of a long history read many versions: a
    verified base is kept (bounded), not rebuilt for every delta above it."""
    payloads = versions(30)
    store.write_pack(chain_frames(payloads))
    decoded = []
    real = codec.decode_delta
    monkeypatch.setattr(codec, "decode_delta", lambda *a, **k: decoded.append(1) or real(*a, **k))
    for payload in payloads:
        assert store.get(sha(payload))[1] == payload
    assert len(decoded) <= 2 * len(payloads)  # without the cache: 1 + 2 + ... + 29
    store.delete(sha(payloads[0]))  # what is deleted is no base any more
    with pytest.raises(BrokenDeltaError):
        store.get(sha(payloads[5]))


# -- chain depth -------------------------------------------------------------------------------

def test_chains_at_the_read_limit_are_read_and_longer_ones_refused(monkeypatch):
    """A chain of MAX_CHAIN_DEPTH deltas reads; one more is corrupt, and so
    is a chain that loops, without unbounded recursion."""
    payloads = versions(codec.MAX_CHAIN_DEPTH + 2)
    store = MemoryStore()
    frames = chain_frames(payloads)
    store.write_pack(frames[:-1])
    assert store.get(sha(payloads[-2]))[1] == payloads[-2]  # 64 deltas deep
    with pytest.raises(ValueError, match="over the limit of 64"):
        store.write_pack(frames)  # writers refuse it
    store.frames[frames[-1][0]] = frames[-1][1]  # as another program might write it
    with pytest.raises(CorruptObjectError, match="longer than 64") as info:
        store.get(sha(payloads[-1]))  # its bases were read (and kept) just before
    assert info.value.object_id == sha(payloads[-1])
    cold = MemoryStore()
    cold.frames.update(store.frames)
    with pytest.raises(CorruptObjectError, match="longer than 64"):
        cold.get(sha(payloads[-1]))  # nothing read before
    for payload in payloads[:-1]:
        assert cold.get(sha(payload))[1] == payload


def test_a_chain_that_loops_is_corrupt():
    a, b = versions(2)
    store = MemoryStore()
    store.frames[sha(a)] = codec.encode_delta("blob", a, sha(b), b, 3)
    store.frames[sha(b)] = codec.encode_delta("blob", b, sha(a), a, 3)
    with pytest.raises(CorruptObjectError, match="loops"):
        store.get(sha(a))
    store.frames[sha(a)] = codec.encode_delta("blob", a, sha(a), b, 3)  # its own base
    with pytest.raises(CorruptObjectError, match="loops"):
        store.get(sha(a))


def test_write_pack_keeps_the_depth_limit_and_the_base_first_rule(store):
    payloads = versions(5)
    frames = chain_frames(payloads)
    with pytest.raises(ValueError, match="over the limit of 3"):
        store.write_pack(frames, max_depth=3)
    with pytest.raises(ValueError, match="not earlier in the same pack"):
        store.write_pack([frames[1], frames[0]])
    for payload in payloads:  # nothing was published
        assert not store.has(sha(payload))
    assert store.write_pack(frames, max_depth=4) is not None
    assert store.write_pack([]) is None


# -- frames leaving their pack ---------------------------------------------------------------

def test_read_frame_whole_rebuilds_a_delta(store):
    payloads = versions(2)
    store.write_pack(chain_frames(payloads))
    newest = sha(payloads[1])
    assert codec.frame_base(store.read_frame(newest)) == sha(payloads[0])
    whole = store.read_frame(newest, whole=True)
    assert codec.frame_base(whole) is None
    other = MemoryStore()
    other.add_frames([(newest, whole)])
    assert other.get(newest)[1] == payloads[1]


def test_add_frames_refuses_a_delta(store):
    payloads = versions(2)
    frames = chain_frames(payloads)
    with pytest.raises(ValueError, match="only write_pack"):
        store.add_frames(frames)


# -- a workspace whose store holds deltas ------------------------------------------------------

def history(path: Path, commits: int = 6):
    """A workspace with `commits` snapshots of a few files edited a little each time."""
    from rnstore import Repository
    repo = Repository.init(path, default_ignore=False)
    texts = {name: versions(commits, seed=name.encode()) for name in ("a.txt", "src/b.py", "src/c.py")}
    for number in range(commits):
        for name, text in texts.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(text[number])
        repo.snapshot(f"version {number}")
    return repo


def test_a_deltified_workspace_reads_checks_out_and_passes_fsck(tmp_path):
    from helpers.deltas import deltify
    from helpers.remote import tree_bytes
    repo = history(tmp_path / "ws")
    before = tree_bytes(repo.root)
    where, deltas = deltify(repo, depth=3)
    assert deltas >= 10
    assert [c.where for c in repo.store.stored_objects()] == [where] * len(set(repo.store))
    result = repo.fsck()
    assert result.ok and not result.problems, result.problems
    oldest = list(repo.log())[-1].id
    repo.checkout(oldest)
    repo.checkout("main")
    assert tree_bytes(repo.root) == before


def test_push_sends_whole_frames_and_a_clone_reads_them(tmp_path):
    """A remote never holds a delta: push rebuilds each one whole."""
    from helpers.deltas import deltify
    from helpers.remote import tree_bytes
    from rnstore import Repository
    from rnstore.remote import transfer
    repo = history(tmp_path / "a")
    deltify(repo, depth=3)
    url = str(tmp_path / "share")
    transfer.add_remote(repo, "origin", url)
    pushed = transfer.push(repo, "origin")
    assert pushed.objects == len(set(repo.store))
    for pack_file in (tmp_path / "share" / "packs").iterdir():
        pack = packs.Pack.open(str(pack_file))
        for raw_id, _ in pack.entries():
            assert codec.frame_base(pack.read(raw_id)) is None
    Repository.clone(url, tmp_path / "b")
    assert tree_bytes(tmp_path / "b") == tree_bytes(tmp_path / "a")
    clone = Repository.open(tmp_path / "b")
    assert clone.fsck().ok
    # and a fetch into the store holding deltas reads what it has through them
    (tmp_path / "b" / "a.txt").write_bytes(b"changed in the clone\n")
    clone.snapshot("in the clone")
    transfer.push(clone, "origin")
    transfer.pull(repo, "origin")
    assert (tmp_path / "a" / "a.txt").read_bytes() == b"changed in the clone\n"
    assert repo.fsck().ok


# -- gc keeps bases ------------------------------------------------------------------------------

@pytest.fixture(params=STORES)
def workspace(request, tmp_path):
    """A workspace whose objects live in the store under test."""
    from rnstore import Repository
    kind = request.param
    return Repository.init(tmp_path / "ws", default_ignore=False,
                           store=lambda repo: new_store(kind, repo.store_root / "objects"))


def repack_as(repo, frames: list[tuple[str, bytes]]) -> str:
    """Every object in one new pack: `frames` first, the rest whole; the old copies deleted."""
    store = repo.store
    given = {oid for oid, _ in frames}
    rest = [(oid, store.read_frame(oid, whole=True)) for oid in sorted(set(store) - given)]
    where = store.write_pack([*frames, *rest])
    store.delete_stored([copy for copy in store.stored_objects() if copy.where != where])
    return where


def test_gc_keeps_the_dead_base_of_a_kept_delta(workspace):
    """A newer version no root reaches any more is the base of an older one
    a snapshot keeps: gc keeps it (and says so in its counts), drops what
    else is dead in the pack, and the delta still reads."""
    from helpers.library import age_copies
    repo = workspace
    older, newer, dead = versions(3)
    (repo.root / "f.txt").write_bytes(older)
    repo.snapshot("the older version")
    for payload in (newer, dead):
        repo.store.put("blob", payload)  # stored, reached by nothing
    repack_as(repo, [(sha(newer), codec.compress("blob", newer, 3)),
                     (sha(older), codec.encode_delta("blob", older, sha(newer), newer, 3)),
                     (sha(dead), codec.compress("blob", dead, 3))])
    age_copies(repo.store, 2 * 3600)
    dry = repo.gc(prune="1h", dry_run=True)
    assert dry.deleted_objects == 1
    stats = repo.gc(prune="1h")
    assert (stats.deleted_objects, stats.kept_objects) == (1, dry.kept_objects)
    assert stats.freed_bytes == dry.freed_bytes
    assert not repo.store.has(sha(dead))
    assert repo.store.has(sha(newer))
    assert repo.store.get(sha(older))[1] == older
    result = repo.fsck()
    assert result.ok and result.problems == [], result.problems  # the base is no dangling object
    assert repo.gc(prune="now").deleted_objects == 0


def test_delete_stored_keeps_bases_down_the_chain(store):
    """Three versions, the oldest reached: the two newer ones are its base
    and its base's base, and stay."""
    payloads = versions(4)
    frames = chain_frames(payloads)  # payloads[i + 1] is a delta against payloads[i]
    where = store.write_pack(frames)
    copies = {c.id: c for c in store.stored_objects()}
    doomed = [copies[sha(p)] for p in payloads[:3]]  # all but the last delta
    assert set(store.needed_bases(doomed)) == set(doomed)
    store.delete_stored(doomed)
    assert store.get(sha(payloads[3]))[1] == payloads[3]
    store.delete_stored([copies[sha(payloads[3])]])  # the delta goes: nothing needs the rest
    store.delete_stored([c for c in store.stored_objects()])
    assert list(store) == []
    assert where is not None


def test_a_rewritten_pack_keeps_bases_before_their_deltas(tmp_path):
    """gc rewrites a pack in the order its frames lie, not by id: a delta
    never comes before its base in the new pack."""
    store = DiskStore(tmp_path / "objects")
    payloads = versions(12)
    frames = chain_frames(payloads)
    extra = b"dead weight\n"
    store.write_pack([(sha(extra), codec.compress("blob", extra, 3)), *frames])
    (copy,) = [c for c in store.stored_objects() if c.id == sha(extra)]
    store.delete_stored([copy])
    (path,) = packs.list_packs(store._pack_folder)
    order = [raw.hex() for raw, _, _ in sorted(packs.Pack.open(path).locations(), key=lambda e: e[1])]
    assert order == [oid for oid, _ in frames]
    for payload in payloads:
        assert store.get(sha(payload))[1] == payload


# -- fsck on broken chains ---------------------------------------------------------------------

def deltified(tmp_path):
    """A workspace with history, repacked with deltas; (repo, a whole object
    some deltas are stored against, every delta whose chain needs it)."""
    from helpers.deltas import deltify
    repo = history(tmp_path / "ws", commits=6)
    deltify(repo, depth=3)
    bases = {oid: repo.store.delta_base(oid) for oid in repo.store}
    needing: dict[str, set[str]] = {}
    for oid in bases:
        base = bases[oid]
        while base is not None:
            if bases[base] is None:
                needing.setdefault(base, set()).add(oid)
            base = bases[base]
    culprit = max(sorted(needing), key=lambda oid: len(needing[oid]))
    assert len(needing[culprit]) >= 2
    return repo, culprit, needing[culprit]


def test_fsck_names_a_missing_base_and_every_delta_needing_it(tmp_path, run_cli):
    import json
    repo, culprit, needing = deltified(tmp_path)
    repo.store.delete(culprit)
    for quick in (False, True):
        result = repo.fsck(quick=quick)
        assert not result.ok
        problems = {p.id: p for p in result.problems}
        assert problems[culprit].kind == "missing"
        assert set(problems[culprit].dependents) == needing
        assert "delta base of" in problems[culprit].detail
        for oid in needing:
            assert problems[oid].kind == "corrupt", problems[oid]
            assert culprit in problems[oid].detail
    cli = run_cli(["fsck"], cwd=repo.root)
    assert cli.returncode == 1
    out = cli.stdout.decode()
    assert f"missing blob {culprit}: the delta base of {len(needing)} objects" in out
    for oid in needing:
        assert f"  needed by delta {oid}" in out
    cli = run_cli(["fsck", "--json"], cwd=repo.root)
    assert cli.returncode == 1
    found = {p["id"]: p for p in json.loads(cli.stdout)["problems"]}
    assert sorted(found[culprit]["dependents"]) == sorted(needing)


def test_fsck_names_a_corrupt_base_and_every_delta_needing_it(tmp_path, run_cli):
    import json
    repo, culprit, needing = deltified(tmp_path)
    damage(repo.store, culprit)
    result = repo.fsck()
    problems = {p.id: p for p in result.problems}
    assert problems[culprit].kind in ("corrupt", "hash mismatch")
    assert set(problems[culprit].dependents) == needing
    for oid in needing:
        assert problems[oid].kind == "corrupt" and culprit in problems[oid].detail
    cli = run_cli(["fsck", "--json"], cwd=repo.root)
    found = {p["id"]: p for p in json.loads(cli.stdout)["problems"]}
    assert sorted(found[culprit]["dependents"]) == sorted(needing)


# -- settings ----------------------------------------------------------------------------------

def test_pack_settings_have_defaults_and_bounds(tmp_path, run_cli):
    from rnstore import Repository
    from rnstore.config import MAX_PACK_DEPTH
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    assert repo.config.get("pack.deltas") is True and repo.config.get("pack.depth") == 50
    assert MAX_PACK_DEPTH < codec.MAX_CHAIN_DEPTH  # what writers may write, readers read
    assert run_cli(["config", "pack.depth", "20"], cwd=repo.root).returncode == 0
    assert run_cli(["config", "pack.deltas", "false"], cwd=repo.root).returncode == 0
    bad = run_cli(["config", "pack.depth", str(MAX_PACK_DEPTH + 1)], cwd=repo.root)
    assert bad.returncode == 2 and f"from 0 to {MAX_PACK_DEPTH}" in bad.stderr
    assert run_cli(["config", "pack.deltas", "maybe"], cwd=repo.root).returncode == 2
    reopened = Repository.open(repo.root)
    assert (reopened.config.get("pack.depth"), reopened.config.get("pack.deltas")) == (20, False)


def test_a_delta_found_on_a_remote_is_refused_and_nothing_stored(tmp_path):
    """Remotes never hold deltas; one written there by another program
    (its base in the same pack or not) is a corrupt remote object: a fetch
    reads each frame on its own, and stores nothing."""
    from rnstore import Repository
    from rnstore.remote import layout, transfer
    repo = history(tmp_path / "a", commits=2)
    url = tmp_path / "share"
    transfer.add_remote(repo, "origin", str(url))
    transfer.push(repo, "origin")
    (pack_file,) = (url / "packs").iterdir()
    name = pack_file.name[:-len(".pack")]
    kinds = {oid: location.kind for oid, location in
             layout.decode_index((url / "index" / f"{name}.idx").read_bytes(), name).items()}
    pack = packs.Pack.open(str(pack_file))
    frames = {raw.hex(): pack.read(raw) for raw, _ in pack.entries()}
    old, new = versions(2, seed=b"a.txt")
    assert sha(old) in frames and sha(new) in frames
    frames[sha(old)] = codec.encode_delta("blob", old, sha(new), new, 3)
    order = [sha(new), *(oid for oid in frames if oid != sha(new))]
    rewritten = packs.write_pack(str(tmp_path / "tmp"), str(tmp_path / "tmp" / ".tmp-pack"),
                                 [(oid, frames[oid]) for oid in order], fsync=False)
    new_name = Path(rewritten).name[:-len(".pack")]
    entries = [(raw, at, length, kinds[raw.hex()])
               for raw, at, length in packs.Pack.open(rewritten).locations()]
    pack_file.unlink()
    (url / "index" / f"{name}.idx").unlink()
    Path(rewritten).rename(url / "packs" / f"{new_name}.pack")
    (url / "index" / f"{new_name}.idx").write_bytes(layout.encode_index(entries))
    with pytest.raises(CorruptObjectError, match=f"remote object {sha(old)} .*is corrupt"):
        Repository.clone(str(url), tmp_path / "b")
    b = Repository.init(tmp_path / "c", default_ignore=False)
    transfer.add_remote(b, "origin", str(url))
    with pytest.raises(CorruptObjectError, match=f"remote object {sha(old)} .*is corrupt"):
        transfer.fetch(b, "origin")
    assert list(b.store) == [] and b.refs.list() == {}


# -- pack-local deltas: the record, hostile records, versions -----------------------------------

def local_pack(tmp_path: Path, records: list[tuple[str, bytes]], magic: bytes = packs.MAGIC_2) -> DiskStore:
    """A store whose one pack holds these records exactly as given (as
    another program might write them), with a valid index and trailer."""
    import struct
    body = bytearray(magic)
    entries = []
    for oid, record in records:
        entries.append((bytes.fromhex(oid), len(body), len(record)))
        body += record
    index = b"".join(struct.pack(">32sQI", *entry) for entry in sorted(entries))
    digest = hashlib.sha256(index).digest()
    body += index + struct.pack(">QQ32s8s", len(body), len(entries), digest, b"rnpkend\n")
    (tmp_path / "objects" / "pack").mkdir(parents=True, exist_ok=True)
    (tmp_path / "objects" / "pack" / f"{digest.hex()}.pack").write_bytes(bytes(body))
    return DiskStore(tmp_path / "objects")


def record(code: int, size: int, distance: int, inner: bytes) -> bytes:
    return bytes([code]) + codec.encode_varint(size) + codec.encode_varint(distance) + inner


def inner_of(frame: bytes) -> bytes:
    return frame[codec.delta_parts(frame)[3]:]


def hostile_records() -> dict[str, tuple[str, list[tuple[str, bytes]]]]:
    """why -> (id of the delta, records of a version 2 pack) a reader must refuse."""
    import zstandard
    base, payload = versions(2)
    whole = codec.compress("blob", base, 3)
    inner = inner_of(codec.encode_delta("blob", payload, sha(base), base, 3))
    at = len(packs.MAGIC_2) + len(whole)  # where the delta's record starts
    delta = sha(payload)

    def params(**kw):
        return zstandard.ZstdCompressionParameters.from_level(
            3, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_dict_id=False, **kw)

    def compress(data: bytes, **kw) -> bytes:
        dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        return zstandard.ZstdCompressor(compression_params=params(**kw), dict_data=dictionary).compress(data)

    def pack(rec: bytes, oid: str = delta) -> list[tuple[str, bytes]]:
        return [(sha(base), whole), (oid, rec)]
    return {
        "where no object of pack": (delta, pack(record(1, len(payload), len(whole) - 1, inner))),
        "lies 0 bytes back": (delta, pack(record(1, len(payload), 0, inner))),
        "lies .* bytes back": (delta, pack(record(1, len(payload), at, inner))),  # before the magic
        "not a zstd frame": (delta, pack(b"\x04" + record(1, len(payload), len(whole), inner)[1:])),
        "not minimal": (delta, pack(b"\x01" + codec.encode_varint(len(payload))[:-1]
                                    + bytes([codec.encode_varint(len(payload))[-1] | 0x80, 0])
                                    + codec.encode_varint(len(whole) + 1) + inner)),
        "over the limit": (delta, pack(record(1, codec.DELTA_MAX_SIZE + 1, len(whole), inner))),
        "not one whole zstd frame": (delta, pack(record(1, len(payload), len(whole), inner + b"junk"))),
        "out of bounds": (sha(payload[:10]), pack(record(1, 10, len(whole), compress(os.urandom(4096))),
                                                  sha(payload[:10]))),
        "frame size disagrees": (sha(payload[:-1]), pack(record(1, len(payload) - 1, len(whole), inner),
                                                         sha(payload[:-1]))),
        "frame size disagrees ": (delta, pack(record(1, len(payload), len(whole), compress(
            payload, write_content_size=False)))),
        "hash mismatch": (delta, pack(record(1, len(payload), len(whole), compress(payload[:-1] + b"?")))),
        "cut short": (delta, pack(b"\x01" + codec.encode_varint(len(payload)) + b"\x80")),
    }


@pytest.mark.parametrize("why", sorted(hostile_records()))
def test_hostile_pack_local_records_are_corrupt(tmp_path, why):
    oid, records = hostile_records()[why]
    store = local_pack(tmp_path, records)
    with pytest.raises(CorruptObjectError, match=why.strip()):
        store.get(oid)
    with pytest.raises(CorruptObjectError):
        store.verify(oid)
    base = records[0][0]
    assert store.get(base)[1] == versions(2)[0]  # the rest of the pack reads


def test_a_version_1_pack_holds_no_pack_local_delta(tmp_path):
    """The same record in a pack that says version 1 is a corrupt object,
    never read as a delta; a version this reader does not know is a damaged
    pack (what a reader predating version 2 does with one)."""
    base, payload = versions(2)
    whole = codec.compress("blob", base, 3)
    rec = record(1, len(payload), len(whole), inner_of(codec.encode_delta("blob", payload, sha(base), base, 3)))
    good = local_pack(tmp_path / "v2", [(sha(base), whole), (sha(payload), rec)])
    assert good.get(sha(payload))[1] == payload
    old = local_pack(tmp_path / "v1", [(sha(base), whole), (sha(payload), rec)], magic=packs.MAGIC)
    with pytest.raises(CorruptObjectError, match="not a zstd frame"):
        old.get(sha(payload))
    assert old.get(sha(base))[1] == base
    future = local_pack(tmp_path / "v4", [(sha(base), whole)], magic=b"rnpack 4\n")
    with pytest.raises(MissingObjectError):
        future.get(sha(base))
    assert list(future.damaged_packs().values()) == ["does not start with 'rnpack 1', 'rnpack 2' or 'rnpack 3'"]


def tree_versions(n: int) -> list[bytes]:
    """n versions of a folder of 40 files, one file changed each time."""
    entries = {f"f{i:02}.py".encode(): sha(b"%d" % i) for i in range(40)}
    found = []
    for v in range(n):
        entries[f"f{v % 40:02}.py".encode()] = sha(b"version %d" % v)
        found.append(encode_tree_unchecked([TreeEntry(name, MODE_FILE, oid, 10 + v)
                                            for name, oid in sorted(entries.items())]))
    return found


def test_a_tree_delta_in_binary_form_is_read_only_from_a_version_3_pack(tmp_path):
    """A tree's delta is made between binary forms (code 4), and smaller
    than between hex ids; its pack says version 3. The same record in a
    version 2 pack is a corrupt object, never read as a delta."""
    base, payload = tree_versions(2)
    whole = codec.compress("tree", base, 3)
    frame = codec.encode_delta("tree", payload, sha(base), base, 3)
    assert frame[0] == 0x84
    hex_inner = codec._delta_compressor(len(payload), base, 3).compress(payload)
    assert len(inner_of(frame)) < len(hex_inner)
    rec = record(4, len(payload), len(whole), inner_of(frame))
    good = local_pack(tmp_path / "v3", [(sha(base), whole), (sha(payload), rec)], magic=packs.MAGIC_3)
    assert good.get(sha(payload)) == ("tree", payload)
    old = local_pack(tmp_path / "v2", [(sha(base), whole), (sha(payload), rec)])
    with pytest.raises(CorruptObjectError, match="not a zstd frame"):
        old.get(sha(payload))
    store = DiskStore(tmp_path / "objects")
    where = store.write_pack([(sha(base), whole), (sha(payload), frame)])
    assert Path(where).read_bytes()[:9] == b"rnpack 3\n"
    assert store.get(sha(payload)) == ("tree", payload)
    # a blob's delta and a tree that has no binary form keep their codes, and the pack version 2
    odd = b"rntree 1\n100644 " + b"A" * 64 + b" 1 a\0"  # upper-case hex: no binary form
    assert codec.encode_delta("tree", odd, sha(base), base, 3)[0] == 0x82
    where = store.write_pack([(sha(base), whole), (sha(odd), codec.encode_delta("tree", odd, sha(base), base, 3))])
    assert Path(where).read_bytes()[:9] == b"rnpack 2\n"


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 6), st.binary(max_size=4), st.integers(0, 10 ** 6), st.integers(0, 3))
def test_a_damaged_binary_tree_delta_is_refused_or_reads_true(tmp_path_factory, n, junk, at, cut):
    """Whatever the damage to a binary tree delta's inner frame, a read
    gives the true payload or raises CorruptObjectError."""
    trees = tree_versions(n)
    base, payload = trees[-1], trees[0]
    inner = inner_of(codec.encode_delta("tree", payload, sha(base), base, 3))
    at %= len(inner) + 1
    damaged = inner[:at] + junk + inner[at + cut:]
    folder = tmp_path_factory.mktemp("damaged")
    whole = codec.compress("tree", base, 3)
    pack = local_pack(folder, [(sha(base), whole), (sha(payload), record(4, len(payload), len(whole), damaged))],
                      magic=packs.MAGIC_3)
    try:
        assert pack.get(sha(payload)) == ("tree", payload)
    except CorruptObjectError:
        pass


def test_a_pack_without_deltas_stays_version_1(tmp_path):
    store = DiskStore(tmp_path / "objects")
    payloads = versions(3)
    where = store.write_pack([(sha(p), codec.compress("blob", p, 3)) for p in payloads])
    assert Path(where).read_bytes()[:9] == b"rnpack 1\n"
    where = store.write_pack(chain_frames(payloads))
    assert Path(where).read_bytes()[:9] == b"rnpack 2\n"


def test_a_pack_local_delta_costs_a_few_bytes_more_than_its_inner_frame(tmp_path):
    """The fixed cost of a delta: the kind byte, two short varints and the
    frame header of a magicless frame without checksum (the first form
    cost about 100 bytes more)."""
    from helpers.deltas import encode_legacy_delta
    base, payload = versions(2)
    store = DiskStore(tmp_path / "objects")
    where = store.write_pack(chain_frames([base, payload]))
    lengths = {raw.hex(): length for raw, length in packs.Pack.open(where).entries()}
    inner = inner_of(codec.encode_delta("blob", payload, sha(base), base, 3))
    assert lengths[sha(payload)] - len(inner) <= 1 + 3 + 3
    assert len(encode_legacy_delta("blob", payload, sha(base), base, 3)) - lengths[sha(payload)] >= 90


def test_a_chain_at_the_depth_limit_reads_from_a_pack_and_a_longer_one_is_refused(tmp_path):
    """pack.depth's most (50) is written and read back from a version 2
    pack; write_pack refuses one more; a chain of 65 written by another
    program is refused on read, and what lies below it still reads."""
    from rnstore.config import MAX_PACK_DEPTH
    payloads = versions(codec.MAX_CHAIN_DEPTH + 2)
    frames = chain_frames(payloads)
    store = DiskStore(tmp_path / "a")
    store.write_pack(frames[:MAX_PACK_DEPTH + 1], max_depth=MAX_PACK_DEPTH)
    assert store.get(sha(payloads[MAX_PACK_DEPTH]))[1] == payloads[MAX_PACK_DEPTH]
    with pytest.raises(ValueError, match=f"over the limit of {MAX_PACK_DEPTH}"):
        DiskStore(tmp_path / "b").write_pack(frames[:MAX_PACK_DEPTH + 2], max_depth=MAX_PACK_DEPTH)
    crafted = DiskStore(tmp_path / "c")
    packs.write_pack(crafted._pack_folder, crafted._temp_name(crafted._pack_folder), frames, fsync=False)
    with pytest.raises(CorruptObjectError, match="longer than 64"):
        crafted.get(sha(payloads[-1]))
    assert crafted.get(sha(payloads[-2]))[1] == payloads[-2]


def test_a_store_of_first_form_deltas_reads_and_gc_aggressive_makes_them_pack_local(tmp_path):
    """Deltas as development builds wrote them (an `rn1 blob delta` frame)
    keep reading, pass fsck, and a full repack rewrites them as pack-local
    deltas against the same bases, smaller by their fixed cost."""
    from helpers.deltas import encode_legacy_delta
    from test_object_conformance import read_pack_by_the_spec
    repo = history(tmp_path / "ws", commits=6)
    store = repo.store
    newest_first = list(reversed(versions(6, seed=b"a.txt")))
    frames = [(sha(newest_first[0]), codec.compress("blob", newest_first[0], 3))]
    frames += [(sha(older), encode_legacy_delta("blob", older, sha(newer), newer, 3))
               for newer, older in zip(newest_first, newest_first[1:])]
    repack_as(repo, frames)
    (old_pack,) = packs.list_packs(store._pack_folder)
    assert Path(old_pack).read_bytes()[:9] == b"rnpack 1\n"
    for payload in newest_first:
        assert store.get(sha(payload))[1] == payload
    assert repo.fsck().ok
    before = {raw.hex(): length for raw, length in packs.Pack.open(old_pack).entries()}
    (repo.root / "new.txt").write_bytes(b"a loose object, so that the pack is merged\n")
    repo.snapshot("one more")
    repo.gc(aggressive=True)
    (new_pack,) = packs.list_packs(store._pack_folder)
    after = {raw.hex(): length for raw, length in packs.Pack.open(new_pack).entries()}
    for newer, older in zip(newest_first, newest_first[1:]):
        assert DiskStore(store.root).delta_base(sha(older)) == sha(newer)
        assert after[sha(older)] < before[sha(older)] - 80
    found = read_pack_by_the_spec(Path(new_pack))
    assert {oid: payload for oid, (_, payload, _) in found.items() if oid in after} == \
        {oid: store.get(oid)[1] for oid in after}
    assert repo.fsck().ok


def test_a_delta_whose_base_is_outside_its_pack_is_corrupt(tmp_path):
    """FORMAT.md: a delta's base is in its pack. A delta of the first form
    can name a base elsewhere (a crafted store): readers refuse it as
    corrupt, naming the base, so fsck reports it and gc, which follows
    bases within a pack only, deletes nothing a readable object needs."""
    from helpers.deltas import encode_legacy_delta
    base, payload = versions(2)
    store = DiskStore(tmp_path / "objects")
    store.put("blob", base)  # loose
    packs.write_pack(store._pack_folder, store._temp_name(store._pack_folder),
                     [(sha(payload), encode_legacy_delta("blob", payload, sha(base), base, 3)),
                      (sha(b"x"), codec.compress("blob", b"x", 3))], fsync=False)
    with pytest.raises(CorruptObjectError, match=f"its delta base {sha(base)} is not in its pack"):
        store.get(sha(payload))
    assert store.get(sha(base))[1] == base
    loose = DiskStore(tmp_path / "loose")
    loose.put("blob", base)
    path = loose.path_for(sha(payload))
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(encode_legacy_delta("blob", payload, sha(base), base, 3))
    with pytest.raises(CorruptObjectError, match="a loose object file is a delta"):
        loose.get(sha(payload))


def test_fsck_names_a_delta_whose_base_is_outside_its_pack(tmp_path, run_cli):
    import json
    from helpers.deltas import encode_legacy_delta
    repo = history(tmp_path / "ws", commits=2)
    old, new = versions(2, seed=b"a.txt")
    repo.store.put("blob", new)
    rest = [(oid, repo.store.read_frame(oid, whole=True)) for oid in sorted(set(repo.store) - {sha(old), sha(new)})]
    store = repo.store
    where = packs.write_pack(store._pack_folder, store._temp_name(store._pack_folder),
                             [(sha(old), encode_legacy_delta("blob", old, sha(new), new, 3)), *rest], fsync=False)
    repo.store.delete_stored([c for c in repo.store.stored_objects() if c.where != where and c.id != sha(new)])
    cli = run_cli(["fsck", "--json"], cwd=repo.root)
    assert cli.returncode == 1
    found = {p["id"]: p for p in json.loads(cli.stdout)["problems"]}
    assert found[sha(old)]["kind"] == "corrupt"
    assert "is not in its pack" in found[sha(old)]["detail"]


def test_fsck_rebuilds_each_large_base_of_a_chain_about_once(tmp_path, monkeypatch):
    """Bases over the cache's entry limit (4 MiB) were rebuilt once per
    delta above them: fsck of a pack with a chain of 39 deltas of 64 MiB
    (a hostile one, or 39 versions of a compressible file after
    `gc --aggressive`) took 97 s of wall time and 79 s of CPU, for 780
    rebuilds. Read from the base up, each is rebuilt a few times at most."""
    from rnstore.fsck import fsck
    from rnstore.repo import Repository
    size, count = 5 << 20, 12
    payload = bytearray(os.urandom(1 << 12) + bytes(size - (1 << 12)))
    records, offsets = [], []
    previous = None
    at = len(packs.MAGIC_2)
    for i in range(count):
        payload[100 + i] ^= 0xFF
        current = bytes(payload)
        if previous is None:
            rec = codec.compress("blob", current, 1)
        else:
            inner = inner_of(codec.encode_delta("blob", current, sha(previous), previous, 1))
            rec = record(1, len(current), at - offsets[-1], inner)
        records.append((sha(current), rec))
        offsets.append(at)
        at += len(rec)
        previous = current
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    local_pack(tmp_path / "built", records)
    (repo.store.root / "pack").mkdir(exist_ok=True)
    for pack in (tmp_path / "built" / "objects" / "pack").iterdir():
        shutil.copy(pack, repo.store.root / "pack" / pack.name)
    decoded = []
    real = codec.decode_delta
    monkeypatch.setattr(codec, "decode_delta", lambda *a, **kw: decoded.append(1) or real(*a, **kw))
    import rnstore.fsck
    monkeypatch.setattr(rnstore.fsck, "parallel_map", functools.partial(rnstore.fsck.parallel_map, workers=2))
    result = fsck(Repository.open(tmp_path / "ws"))
    assert result.ok and result.checked_objects == count
    # about 3 a delta on 2 threads (each keeps its last large base); it was 1 + 2 + ... + 11 = 66
    assert len(decoded) <= 44, len(decoded)
