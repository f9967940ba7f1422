"""index.py: the staging area file, its checksum, and the racy-git rule."""

from __future__ import annotations

import hashlib
import os
import struct
import time

import pytest

from rnstore.errors import CorruptStoreError
from rnstore.index import HEADER, RACY_NS, Index, IndexEntry, StatKey, stat_key_if_settled
from rnstore.objects import EMPTY_TREE_ID, MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE

A, B = "a" * 64, "b" * 64


def sample() -> Index:
    return Index([
        IndexEntry(b"z.txt", MODE_FILE, A, 3, StatKey(3, 1_700_000_000_123456789, 1_700_000_001_000000001, 42)),
        IndexEntry(b"bin/run", MODE_EXEC, B, 10),
        IndexEntry(b"caf\xe9 with space.txt", MODE_FILE, A, 0, StatKey(0, 0, 0, 0)),
        IndexEntry(b"link", MODE_LINK, B, 7),
        IndexEntry(b"empty/dir", MODE_TREE, EMPTY_TREE_ID, 0),
    ])


def test_round_trip():
    index = sample()
    data = index.encode()
    decoded = Index.decode(data)
    assert list(decoded) == list(index)
    assert decoded.encode() == data


def test_file_round_trip(tmp_path):
    path = tmp_path / "index"
    sample().write(path)
    assert list(Index.load(path)) == list(sample())
    assert [p.name for p in tmp_path.iterdir()] == ["index"]


def test_missing_file_is_an_empty_index(tmp_path):
    assert len(Index.load(tmp_path / "index")) == 0


def test_exact_encoding():
    index = Index([IndexEntry(b"b", MODE_FILE, A, 3, StatKey(3, 11, -22, 33)),
                   IndexEntry(b"a", MODE_EXEC, B, 5)])
    index.trees.update({b"": (A, 8), b"sub dir": (B, 0)})
    body = (b"rnindex 3\n"
            + struct.pack("<IIQQ", 2, 2, len(b"a\0b\0"), len(b"\0sub dir\0"))
            + bytes([0x82, 0x01])                       # modes: 100755 smudged, 100644
            + bytes.fromhex(B) + bytes.fromhex(A)        # ids
            + struct.pack("<2Q", 5, 3)                   # sizes
            + struct.pack("<2q", 0, 11) + struct.pack("<2q", 0, -22)  # mtimes, ctimes
            + struct.pack("<2Q", 0, 33)                  # inodes
            + b"a\0b\0"                                  # paths
            + bytes.fromhex(A) + bytes.fromhex(B) + struct.pack("<2Q", 8, 0)  # folders
            + b"\0sub dir\0")
    assert index.encode() == body + hashlib.sha256(body).digest()
    assert Index.decode(index.encode()).trees == index.trees


def v2_text(entries: list[bytes], folders: list[bytes] = ()) -> bytes:
    return with_checksum(b"rnindex 2\n" + b"".join(r + b"\0" for r in [*entries, *folders]))


def test_version_2_is_read_and_written_as_version_3():
    data = v2_text([b"100755 " + B.encode() + b" 5 - - - a", b"100644 " + A.encode() + b" 3 11 22 33 b"],
                   [b"tree " + A.encode() + b" 8 ", b"tree " + B.encode() + b" 0 sub dir"])
    index = Index.decode(data)
    assert list(index) == [IndexEntry(b"a", MODE_EXEC, B, 5), IndexEntry(b"b", MODE_FILE, A, 3, StatKey(3, 11, 22, 33))]
    assert index.trees == {b"": (A, 8), b"sub dir": (B, 0)}
    assert index.outdated  # worth writing anew
    again = Index.decode(index.encode())
    assert index.encode().startswith(HEADER) and list(again) == list(index) and not again.outdated


def test_version_1_without_folder_lines_is_read():
    body = b"rnindex 1\n" + b"100644 " + A.encode() + b" 3 11 22 33 b\0"
    index = Index.decode(with_checksum(body))
    assert [e.path for e in index] == [b"b"] and index.trees == {}
    assert index.encode().startswith(HEADER)


@pytest.mark.parametrize("line", [b"tree " + b"x" * 64 + b" 3 a", b"tree " + A.encode() + b" -1 a",
                                  b"tree " + A.encode() + b" 3"])
def test_malformed_folder_line_is_corrupt(line):
    with pytest.raises(CorruptStoreError):
        Index.decode(v2_text([], [line]))


def test_a_change_forgets_the_folders_above_it_and_only_those():
    index = Index([IndexEntry(b"a/b/f", MODE_FILE, A, 1), IndexEntry(b"a/g", MODE_FILE, A, 1),
                   IndexEntry(b"c/h", MODE_FILE, A, 1), IndexEntry(b"e", MODE_TREE, EMPTY_TREE_ID, 0)])
    known = {b"": (A, 3), b"a": (A, 2), b"a/b": (A, 1), b"c": (B, 1), b"e": (EMPTY_TREE_ID, 0)}
    index.trees.update(known)
    index.set(IndexEntry(b"a/b/f", MODE_FILE, A, 1, StatKey(1, 5, 5, 5)))  # a new stat only
    assert index.trees == known
    index.set(IndexEntry(b"a/b/f", MODE_FILE, B, 1))
    assert set(index.trees) == {b"c", b"e"}
    index.trees.update(known)
    index.remove(b"e")
    assert set(index.trees) == {b"a", b"a/b", b"c"}
    index.remove(b"nothing/there")
    assert set(index.trees) == {b"a", b"a/b", b"c"}
    index.set(IndexEntry(b"c/new", MODE_EXEC, A, 1))
    assert set(index.trees) == {b"a", b"a/b"}


def test_entries_iterate_sorted_by_path_bytes():
    index = sample()
    paths = [e.path for e in index]
    assert paths == sorted(paths)
    first = next(iter(index))
    assert (first.path, first.mode, first.id, first.size) == (b"bin/run", MODE_EXEC, B, 10)


def test_set_get_remove():
    index = Index()
    index.set(IndexEntry(b"a", MODE_FILE, A, 1))
    index.set(IndexEntry(b"a", MODE_FILE, B, 2))
    assert len(index) == 1 and index.get(b"a").id == B
    index.remove(b"a")
    index.remove(b"a")
    assert index.get(b"a") is None and len(index) == 0


def test_empty_index_encodes():
    data = Index().encode()
    body = HEADER + bytes(24)
    assert data == body + hashlib.sha256(body).digest()
    assert len(Index.decode(data)) == 0


def test_changes_wait_in_an_overlay_and_fold_in_order():
    index = sample()
    index.set(IndexEntry(b"a-new", MODE_FILE, A, 1))
    index.remove(b"link")
    index.set(IndexEntry(b"z.txt", MODE_FILE, B, 4))
    assert index.get(b"link") is None and index.get(b"z.txt").id == B and len(index) == 5
    assert b"a-new" in index.entries and b"link" not in index.entries
    paths = [e.path for e in index]
    assert paths == sorted(paths) and b"a-new" in paths and b"link" not in paths
    assert list(Index.decode(index.encode())) == list(index)


def test_update_sorted_is_set_for_many():
    index, other = sample(), sample()
    new = [IndexEntry(b"bin/run", MODE_EXEC, A, 10), IndexEntry(b"m", MODE_FILE, B, 2),
           IndexEntry(b"zz", MODE_LINK, A, 1, StatKey(1, 2, 3, 4))]
    index.update_sorted(new)
    for entry in new:
        other.set(entry)
    assert list(index) == list(other) and len(index) == len(other) == 7
    index.update_sorted(reversed(new))  # out of order: still right, one by one
    assert list(index) == list(other)


def test_holds_a_path_or_what_lies_below_it():
    index = Index([IndexEntry(b"a.txt", MODE_FILE, A, 1), IndexEntry(b"a/b", MODE_FILE, A, 1)])
    assert index.holds(b"a") and index.holds(b"a/b") and index.holds(b"a.txt")
    assert not index.holds(b"a/c") and not index.holds(b"b") and not index.holds(b"a.t")


# -- damage --------------------------------------------------------------------------------

def test_checksum_mismatch():
    data = bytearray(sample().encode())
    position = data.index(b"bin/run")
    data[position] = ord("B")
    with pytest.raises(CorruptStoreError, match="checksum"):
        Index.decode(bytes(data))


def test_every_truncation_is_detected():
    data = sample().encode()
    for length in range(len(data)):
        with pytest.raises(CorruptStoreError):
            Index.decode(data[:length])


def test_every_single_byte_flip_is_detected():
    data = sample().encode()
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        with pytest.raises(CorruptStoreError):
            Index.decode(bytes(damaged))


def test_appended_bytes_are_detected():
    with pytest.raises(CorruptStoreError):
        Index.decode(sample().encode() + b"x")


def with_checksum(body: bytes) -> bytes:
    return body + hashlib.sha256(body).hexdigest().encode() + b"\n"


@pytest.mark.parametrize("record", [
    b"100600 " + A.encode() + b" 3 - - - a",          # unknown mode
    b"100644 " + A[:-1].encode() + b" 3 - - - a",     # short id
    b"100644 " + A.encode() + b" x - - - a",          # bad size
    b"100644 " + A.encode() + b" -3 - - - a",         # negative size
    b"100644 " + A.encode() + b" 3 1 2 a",            # missing field
    b"100644 " + A.encode() + b" 3 1 x 3 a",          # bad stat field
    b"100644 " + A.encode() + b" 3 1 2 -3 a",         # negative inode
    b"100644 " + A.encode() + b" 3 " + b"9" * 30 + b" 2 3 a",  # out of range
    b"100644 " + A.encode() + b" 3 - - - ",           # empty path
    b"100644 \xff" + A.encode()[1:] + b" 3 - - - a",  # not ASCII
])
def test_malformed_version_2_records_with_a_valid_checksum(record):
    with pytest.raises(CorruptStoreError):
        Index.decode(v2_text([record]))


def test_version_2_record_without_terminator():
    with pytest.raises(CorruptStoreError):
        Index.decode(with_checksum(b"rnindex 2\n" + b"100644 " + A.encode() + b" 3 - - - a"))


def rechecked(data: bytes) -> bytes:
    """`data` (version 3) with its checksum made right again."""
    body = data[:-32]
    return body + hashlib.sha256(body).digest()


def damaged(index: Index, offset_of, value: bytes) -> bytes:
    data = bytearray(index.encode())
    at = offset_of(bytes(data))
    data[at:at + len(value)] = value
    return rechecked(bytes(data))


MODES_AT = len(HEADER) + 24


@pytest.mark.parametrize("damage", [
    lambda d: damaged(sample(), lambda _: MODES_AT, b"\x05"),          # unknown mode
    lambda d: damaged(sample(), lambda _: MODES_AT, b"\x00"),          # no mode
    lambda d: damaged(sample(), lambda b: b.index(b"bin/run"), b"z"),  # out of order
    lambda d: damaged(sample(), lambda b: b.index(b"bin/run\0"), b"bin/ru\0"),  # a NUL too many
    lambda d: damaged(sample(), lambda b: b.index(b"bin/run\0") + 3, b"//"),   # an empty component
    lambda d: damaged(Index([IndexEntry(b"b", MODE_FILE, A, 1), IndexEntry(b"c", MODE_FILE, A, 1)]),
                      lambda b: b.index(b"b\0c\0"), b"c"),              # a path twice
    lambda d: damaged(sample(), lambda _: len(HEADER), b"\x06"),       # a count the sizes contradict
])
def test_malformed_version_3_with_a_valid_checksum(damage):
    with pytest.raises(CorruptStoreError):
        Index.decode(damage(None))


def test_record_without_terminator():
    data = bytearray(Index([IndexEntry(b"a", MODE_FILE, A, 1)]).encode())
    path_end = data.index(b"a\0", MODES_AT + 1 + 32 + 32)
    data[path_end + 1] = ord("b")  # the NUL that ends the only path
    with pytest.raises(CorruptStoreError):
        Index.decode(rechecked(bytes(data)))


@pytest.mark.parametrize("data", [b"", b"rnindex 3\n", b"rnindex 2\n", b"RNINDEX 2\n" + b"0" * 65])
def test_bad_header(data):
    with pytest.raises(CorruptStoreError):
        Index.decode(data)


def test_unknown_version_is_refused():
    body = b"rnindex 4\n" + bytes(24)
    with pytest.raises(CorruptStoreError):
        Index.decode(body + hashlib.sha256(body).digest())


def test_load_names_the_file_and_hints(tmp_path):
    path = tmp_path / "index"
    path.write_bytes(b"garbage")
    with pytest.raises(CorruptStoreError) as info:
        Index.load(path)
    assert str(path) in str(info.value)
    assert any("read-tree" in h for h in info.value.hints)


# -- the stat cache and the racy-git rule ----------------------------------------------

def test_stat_key_of_a_file_modified_just_now_is_none(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"fresh")
    assert stat_key_if_settled(path.stat()) is None


def test_stat_key_depends_on_hashing_time(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    st = path.stat()
    changed = max(st.st_mtime_ns, st.st_ctime_ns)
    assert stat_key_if_settled(st, changed) is None
    assert stat_key_if_settled(st, changed + RACY_NS) is None
    key = stat_key_if_settled(st, changed + RACY_NS + 1)
    assert key == StatKey(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def test_a_time_on_a_whole_second_stands_for_its_whole_coarse_tick(tmp_path):
    """FAT stamps a change with its 2 s tick's start, and some network file
    systems with the second's: a file hashed 1.5 s after such a time may
    have changed after it was hashed and kept the time."""
    (tmp_path / "f").write_bytes(b"x")
    st = os.lstat(tmp_path / "f")
    second = 1_700_000_000 * 1_000_000_000
    coarse = os.stat_result(tuple(st)[:7] + (1_700_000_000,) * 3 + (1_700_000_000.0,) * 3 + (second,) * 3)
    assert stat_key_if_settled(coarse, second + 1_500_000_000) is None
    assert stat_key_if_settled(coarse, second + 2_000_000_000 + RACY_NS + 1) is not None
    fine = os.stat_result(tuple(st)[:7] + (1_700_000_000,) * 3 + (1_700_000_000.0,) * 3 + (second + 1,) * 3)
    assert stat_key_if_settled(fine, second + 1_500_000_000) is not None


def test_old_mtime_but_new_ctime_is_still_racy(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    # utime itself changes ctime: the file changed just now after all
    assert stat_key_if_settled(path.stat()) is None


def settled_entry(path, oid=A) -> IndexEntry:
    st = os.lstat(path)
    key = stat_key_if_settled(st, time.time_ns() + 10 * RACY_NS)
    assert key is not None
    return IndexEntry(os.fsencode(path.name), MODE_FILE, oid, st.st_size, key)


def test_lookup_fresh_matches_only_an_identical_stat(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    entry = settled_entry(path)
    key = StatKey.of(os.lstat(path))
    # as if the index had been written a second after the file last changed
    index = Index([entry], written_ns=max(key.mtime_ns, key.ctime_ns) + 10**9)
    assert index.lookup_fresh(b"f", key) == entry
    assert index.lookup_fresh(b"other", key) is None
    for field, value in [("size", key.size + 1), ("mtime_ns", key.mtime_ns + 1),
                         ("ctime_ns", key.ctime_ns - 1), ("ino", key.ino + 1)]:
        assert index.lookup_fresh(b"f", key._replace(**{field: value})) is None, field


def test_real_rewrite_invalidates_the_cache(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    index = Index([settled_entry(path)])
    path.write_bytes(b"xyz")  # same size, same second
    assert index.lookup_fresh(b"f", StatKey.of(os.lstat(path))) is None


def test_smudged_entry_never_matches(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    st = path.stat()
    index = Index([IndexEntry(b"f", MODE_FILE, A, 3, stat_key_if_settled(st))])
    assert index.get(b"f").stat is None
    assert index.lookup_fresh(b"f", StatKey.of(st)) is None


def test_stat_key_survives_the_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    entry = settled_entry(path)
    index_path = tmp_path / "index"
    Index([entry]).write(index_path)
    assert Index.load(index_path).get(b"f").stat == entry.stat
    # as if written within the file's own timestamp tick: racy, not trusted
    same_tick = max(entry.stat.mtime_ns, entry.stat.ctime_ns)
    os.utime(index_path, ns=(same_tick, same_tick))
    written_then = Index.load(index_path)
    assert written_then.written_ns == same_tick
    assert written_then.lookup_fresh(b"f", StatKey.of(os.lstat(path))) is None
    later = os.stat(index_path).st_mtime_ns + 10**9
    os.utime(index_path, ns=(later, later))  # as if written a second later
    assert Index.load(index_path).lookup_fresh(b"f", StatKey.of(os.lstat(path))) == entry


def test_a_folder_entry_goes_once_something_is_below_it():
    """Empty-folder entries shadowed by an entry below them go; folders
    whose names only share a prefix (`a` and `a-b/x`, `ab/y`) stay."""
    def folder(path: bytes) -> IndexEntry:
        return IndexEntry(path, MODE_TREE, EMPTY_TREE_ID, 0)

    index = Index([folder(b"a"), IndexEntry(b"a-b/x", MODE_FILE, A, 1), IndexEntry(b"ab/y", MODE_FILE, A, 1),
                   folder(b"c"), folder(b"c/d"), folder(b"c/d/e"),
                   folder(b"f"), IndexEntry(b"f/g/h", MODE_LINK, B, 3), folder(b"z")])
    index.drop_shadowed_folders()
    assert sorted(index.entries) == [b"a", b"a-b/x", b"ab/y", b"c/d/e", b"f/g/h", b"z"]
