"""The reachability cache (rnstore/reachcache.py, FORMAT.md "The reachability
cache"): du and gc give the same answers with it, without it, and with a
cache that is damaged, stale, hostile or written by racing processes; above
all, no cache can make gc delete an object a root reaches.

Set-up goes through the library; du and gc run as real subprocesses and
through the library. The cache files are written here byte by byte from
FORMAT.md, not with the module under test."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from helpers.cli import cli_env
from helpers.space import HOUR, age_objects, cli_json, commit, make_repo, object_files, reachable, run
from rnstore.du import ANSWER_FILE
from rnstore.errors import CorruptStoreError
from rnstore.objects import MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, TreeEntry, decode_tree, encode_tree_unchecked
from rnstore.reachability import collect_roots, mark_reachable
from rnstore.reachcache import (CACHE_FILE, MAX_BLOCKS, ReachCache, append_records, binary_tree, hex_tree,
                               parse_tree_entries, stored_tree_entries)
from rnstore.repo import Repository

HEADER = b"rnstore reachability cache 3\n"
HEADER_2 = b"rnstore reachability cache 2\n"


def record(kind: bytes, oid: str, payload: bytes) -> bytes:
    """A record of version 2 (KIND ID LENGTH PAYLOAD): the lies below are
    told in version 2, which readers go on reading."""
    return kind + bytes.fromhex(oid) + struct.pack(">I", len(payload)) + payload


def record_3(kind: bytes, payload: bytes) -> bytes:
    """A record of version 3 (KIND LENGTH STORED), written from FORMAT.md."""
    if kind == b"t":
        assert payload.startswith(b"rntree 1\n")
        stored = b""
        for entry in payload[len(b"rntree 1\n"):].split(b"\0")[:-1]:
            mode, oid, rest = entry.split(b" ", 2)
            stored += mode + b" " + bytes.fromhex(oid.decode()) + b" " + rest + b"\0"
    else:
        stored = payload
    return kind + struct.pack(">I", len(stored)) + stored


def tree_from_stored(stored: bytes) -> bytes | None:
    """The tree payload a version 3 record's STORED rebuilds, entry by entry
    (FORMAT.md), or None: an independent decoder of reachcache.hex_tree's format."""
    payload, at = b"rntree 1\n", 0
    while at < len(stored):
        mode, raw = stored[at:at + 6], stored[at + 7:at + 39]
        if not (len(mode) == 6 and mode.isdigit() and stored[at + 6:at + 7] == b" " and len(raw) == 32
                and stored[at + 39:at + 40] == b" "):
            return None
        end = stored.find(b"\0", at + 39)
        if end < 0:
            return None
        payload += mode + b" " + raw.hex().encode() + stored[at + 39:end + 1]
        at = end + 1
    return payload


def block(records: bytes, *, content_size: bool = True) -> bytes:
    """LENGTH FRAME: one zstd frame holding these records."""
    frame = zstandard.ZstdCompressor(write_content_size=content_size).compress(records)
    return struct.pack(">I", len(frame)) + frame


def contents(path: Path | bytes) -> list[bytes]:
    """The decompressed blocks of a sound cache file (either version), or of its bytes (FORMAT.md's grammar)."""
    data = path if isinstance(path, bytes) else path.read_bytes()
    assert data[:len(HEADER)] in (HEADER, HEADER_2)
    at, found = len(HEADER), []
    while at < len(data):
        length = struct.unpack(">I", data[at:at + 4])[0]
        frame = data[at + 4:at + 4 + length]
        assert len(frame) == length
        found.append(zstandard.ZstdDecompressor().decompress(frame))
        at += 4 + length
    return found


def read_records(path: Path | bytes) -> list[tuple[bytes, str, bytes]]:
    """The (kind, id, payload) records of a sound cache file, or of its
    bytes; in version 3, the id is the payload's SHA-256."""
    data = path if isinstance(path, bytes) else path.read_bytes()
    found = []
    for content in contents(data):
        at = 0
        while at < len(content):
            if data.startswith(HEADER_2):
                kind, raw = content[at:at + 1], content[at + 1:at + 33]
                length = struct.unpack(">I", content[at + 33:at + 37])[0]
                found.append((kind, raw.hex(), content[at + 37:at + 37 + length]))
                at += 37 + length
                continue
            kind, length = content[at:at + 1], struct.unpack(">I", content[at + 1:at + 5])[0]
            stored = content[at + 5:at + 5 + length]
            payload = tree_from_stored(stored) if kind == b"t" else stored
            assert payload is not None
            found.append((kind, sha(payload), payload))
            at += 5 + length
        assert at == len(content)
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_path(repo: Repository) -> Path:
    return repo.store_root / CACHE_FILE


def scenario(tmp_path: Path) -> tuple[Repository, dict]:
    """Three snapshots, the first forgotten, objects old enough to go, a
    staged file; `src/only` is a folder (tree) only the tagged snapshot
    holds, with a file only it holds: the index does not protect them."""
    repo = make_repo(tmp_path / "ws")
    forgotten = commit(repo, {"a/x.txt": "x1\n", "a/b/deep.txt": "deep\n", "keep.txt": "keep\n"}, "first")
    tagged = commit(repo, {"a/x.txt": "x2\n", "src/only/unique.txt": "only the tagged snapshot\n",
                           "src/other.txt": "other\n"}, "second")
    repo.tag("v1", tagged)
    (repo.root / "src" / "only" / "unique.txt").unlink()
    (repo.root / "src" / "only").rmdir()
    live = commit(repo, {"a/b/deep.txt": "deeper\n"}, "live")
    repo.forget([forgotten])
    (repo.root / "staged.txt").write_text("staged, never committed\n")
    repo.add([repo.root / "staged.txt"])
    age_objects(repo, 2 * HOUR)
    return repo, {"forgotten": forgotten, "tagged": tagged, "live": live}


def live_objects(repo: Repository, snaps: dict) -> set[str]:
    """What the roots reach, found independently of rnstore's marking."""
    staged = {e.id for e in repo.read_index()}
    return reachable(repo, snaps["tagged"]) | reachable(repo, snaps["live"]) | staged


def subtree(repo: Repository, snapshot: str, *path: bytes) -> str:
    tree = repo.store.get_snapshot(snapshot).tree
    for name in path:
        tree = repo.store.get_tree(tree).get(name).id
    return tree


def du_json(repo: Repository) -> dict:
    """du as it marks: without its answer cache, which would answer an
    unchanged store without reading trees at all."""
    (repo.dotdir / ANSWER_FILE).unlink(missing_ok=True)
    return cli_json(["du"], repo.root)


# -- same answers ----------------------------------------------------------------------------

def test_du_and_gc_answer_the_same_with_and_without_the_cache(tmp_path):
    repo, snaps = scenario(tmp_path)
    assert cache_path(repo).is_file()  # commit wrote its trees there
    cache_path(repo).unlink()
    cold = du_json(repo)
    assert cache_path(repo).is_file()  # du leaves what it read for the next run
    cached = {oid for _, oid, _ in read_records(cache_path(repo))}
    assert subtree(repo, snaps["tagged"], b"src", b"only") in cached and snaps["live"] in cached
    assert du_json(repo) == cold
    assert repo.du().as_json() == cold
    # gc --dry-run: the same report, and it writes nothing (not even the cache)
    before = cache_path(repo).read_bytes()
    with_cache = cli_json(["gc", "--dry-run", "--prune", "now"], repo.root)
    cache_path(repo).unlink()
    without = cli_json(["gc", "--dry-run", "--prune", "now"], repo.root)
    assert not cache_path(repo).exists()
    assert with_cache == without and with_cache["deleted_objects"] > 0
    cache_path(repo).write_bytes(before)

    live = live_objects(repo, snaps)
    stats = repo.gc(prune="now")
    assert set(object_files(repo.store_root)) == live
    assert stats.deleted_objects == without["deleted_objects"]
    # gc keeps in the cache what is still reached, and nothing else
    assert {oid for _, oid, _ in read_records(cache_path(repo))} <= live
    assert repo.fsck().ok
    assert du_json(repo)["store"]["reclaimable_bytes"] == 0


# -- a cache that lies -----------------------------------------------------------------------

def _drop_entry(payload: bytes, name: bytes) -> bytes:
    tree = decode_tree(payload)
    return encode_tree_unchecked([e for e in tree.entries if e.name != name])


def _lies(repo: Repository, snaps: dict) -> dict[str, bytes]:
    """Cache files that say `src/only` holds nothing, in every way a file can."""
    only = subtree(repo, snaps["tagged"], b"src", b"only")
    src = subtree(repo, snaps["tagged"], b"src")
    honest = [(kind, oid, payload) for kind, oid, payload in read_records(cache_path(repo))]
    rest = b"".join(record(k, o, p) for k, o, p in honest if o not in (only, src))

    def with_(*records: bytes) -> bytes:
        return HEADER_2 + block(b"".join(records) + rest)

    only_payload = next(p for _, o, p in honest if o == only)
    src_payload = next(p for _, o, p in honest if o == src)
    all_records = b"".join(record(k, o, p) for k, o, p in honest)
    whole = HEADER_2 + block(all_records)
    rest_3 = b"".join(record_3(k, p) for k, o, p in honest if o not in (only, src))
    all_3 = b"".join(record_3(k, p) for k, o, p in honest)
    whole_3 = HEADER + block(all_3)
    return {
        # the tree's own payload with the entry left out, under its id
        "entry dropped": with_(record(b"t", only, _drop_entry(only_payload, b"unique.txt"))),
        # the parent without the folder: the whole folder would go
        "folder dropped": with_(record(b"t", src, _drop_entry(src_payload, b"only"))),
        "empty tree": with_(record(b"t", only, b"rntree 1\n")),
        "another tree": with_(record(b"t", only, src_payload)),
        "not a tree": with_(record(b"t", only, b"garbage")),
        "named a snapshot": with_(record(b"s", only, only_payload)),
        # the lie first, the truth after it: the first record of an id counts
        "lie before truth": with_(record(b"t", only, b"rntree 1\n"), record(b"t", only, only_payload)),
        # the lie in a later block: still the first record of its id
        "lie in a second block": HEADER_2 + block(rest) + block(record(b"t", only, b"rntree 1\n")),
        "truncated": whole[:len(whole) * 2 // 3],
        "length past the end": whole + struct.pack(">I", 0xFFFFFFFF) + b"\x28\xb5\x2f\xfd",
        "record past its block": HEADER_2 + block(all_records + b"t" + bytes(32) + struct.pack(">I", 99)),
        "not zstd": HEADER_2 + struct.pack(">I", 10) + b"0123456789" + block(all_records),
        "no content size": HEADER_2 + block(all_records, content_size=False),
        "unknown kind": HEADER_2 + block(b"x" + all_records[1:]),
        "bad header": b"rnstore reachability cache 9\n" + whole[len(HEADER_2):],
        # version 3: a record names no id, so a changed payload is another
        # object's record, and the true one is missing from the file
        "v3 entry dropped": HEADER + block(record_3(b"t", _drop_entry(only_payload, b"unique.txt")) + rest_3),
        "v3 folder dropped": HEADER + block(record_3(b"t", _drop_entry(src_payload, b"only")) + rest_3),
        "v3 not binary": HEADER + block(b"t" + struct.pack(">I", 7) + b"garbage" + all_3),
        "v3 id cut short": HEADER + block(_cut_id(record_3(b"t", only_payload)) + all_3),
        "v3 truncated": whole_3[:len(whole_3) * 2 // 3],
        "v3 record past its block": HEADER + block(all_3 + b"t" + struct.pack(">I", 99)),
        "v3 unknown kind": HEADER + block(b"x" + all_3[1:]),
        "v3 header, v2 records": HEADER + block(all_records),
        # the first version's layout: records, uncompressed
        "version 1": b"rnstore reachability cache 1\n" + all_records,
        "garbage": os.urandom(4096),
        "empty": b"",
    }


def _cut_id(record_3: bytes) -> bytes:
    """A version 3 tree record whose first entry's id lost a byte (its LENGTH follows)."""
    stored = record_3[5:]
    stored = stored[:7] + stored[8:]
    return b"t" + struct.pack(">I", len(stored)) + stored


LIES = ["entry dropped", "folder dropped", "empty tree", "another tree", "not a tree", "named a snapshot",
        "lie before truth", "lie in a second block", "truncated", "length past the end", "record past its block",
        "not zstd", "no content size", "unknown kind", "bad header", "v3 entry dropped", "v3 folder dropped",
        "v3 not binary", "v3 id cut short", "v3 truncated", "v3 record past its block", "v3 unknown kind",
        "v3 header, v2 records", "version 1", "garbage", "empty"]


@pytest.mark.parametrize("lie", LIES)
def test_a_lying_cache_cannot_make_gc_delete_a_reachable_object(tmp_path, lie):
    repo, snaps = scenario(tmp_path)
    du_json(repo)  # an honest cache to start from
    live = live_objects(repo, snaps)
    expected_du = repo.du().as_json()
    lying = _lies(repo, snaps)[lie]
    cache_path(repo).write_bytes(lying)

    # du reads through the lie to the same figures (it only costs work),
    # and replaces the file with the truth
    assert du_json(repo) == expected_du
    repaired = ReachCache.load(repo.store_root)
    assert not repaired.damaged and len(repaired) == len(read_records(cache_path(repo)))
    assert all(hashlib.sha256(p).hexdigest() == o for _, o, p in read_records(cache_path(repo)))
    cache_path(repo).write_bytes(lying)
    result = run(["gc", "--prune", "now"], cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert set(object_files(repo.store_root)) == live
    assert repo.fsck().ok
    out = repo.root.parent / "out"
    repo.checkout(snaps["tagged"], target=out)
    assert (out / "src" / "only" / "unique.txt").read_text() == "only the tagged snapshot\n"


@pytest.mark.parametrize("lie", ["entry dropped", "folder dropped"])
def test_a_lying_cache_through_the_library_too(tmp_path, lie):
    repo, snaps = scenario(tmp_path)
    du_json(repo)
    live = live_objects(repo, snaps)
    assert sha(b"only the tagged snapshot\n") not in {e.id for e in repo.read_index()}
    cache_path(repo).write_bytes(_lies(repo, snaps)[lie])
    assert repo.gc(prune="now", dry_run=True).deleted_objects == len(object_files(repo.store_root)) - len(live)
    repo.gc(prune="now")
    assert set(object_files(repo.store_root)) == live


# -- a stale cache ---------------------------------------------------------------------------

def test_a_cache_naming_trees_gc_has_deleted_is_not_trusted(tmp_path):
    """A cache from before a gc names trees that are gone. When a root
    reaches them again (the snapshot restored, say), du and gc answer as
    they would without a cache: they refuse, naming what is missing."""
    repo = make_repo(tmp_path / "ws")
    old = commit(repo, {"gone/inner/f.txt": "only in the old snapshot\n", "k.txt": "k\n"}, "old")
    commit(repo, {"k.txt": "k2\n"}, "new")
    (repo.root / "gone").rename(repo.root.parent / "gone-aside")
    repo.commit("without gone", all=True)
    du_json(repo)
    stale = cache_path(repo).read_bytes()
    old_snapshot = repo.store.get_snapshot(old)
    for snapshot in list(repo.journal):
        if snapshot != repo.refs.resolve("HEAD"):
            repo.forget([snapshot])
    assert repo.gc(prune="now").deleted_objects > 0
    assert not repo.store.has(old_snapshot.tree)
    # the old snapshot comes back (its object only), the cache from before the gc too
    assert repo.store.put_snapshot(old_snapshot) == old
    repo.journal.add(old)
    cache_path(repo).write_bytes(stale)

    with_cache = run(["gc", "--prune", "now"], cwd=repo.root)
    assert with_cache.returncode == 1 and with_cache.stderr.startswith("error: gc deleted nothing")
    assert old_snapshot.tree in with_cache.stderr
    du_stale = run(["du"], cwd=repo.root)
    assert du_stale.returncode == 1 and "du cannot count" in du_stale.stderr
    cache_path(repo).write_bytes(stale)
    with pytest.raises(CorruptStoreError):
        repo.du()
    cache_path(repo).unlink()
    without = run(["gc", "--prune", "now"], cwd=repo.root)
    assert (without.returncode, without.stderr) == (with_cache.returncode, with_cache.stderr)


# -- damage, crashes and races ---------------------------------------------------------------

def test_a_torn_append_is_ignored_and_the_next_run_rewrites_the_cache(tmp_path):
    repo, snaps = scenario(tmp_path)
    first = cache_path(repo).read_bytes()
    du_json(repo)
    assert cache_path(repo).read_bytes() == first  # commits recorded all du reads: nothing to write
    commit(repo, {"more/new.txt": "new\n"}, "later")
    grown = cache_path(repo).read_bytes()
    assert grown.startswith(first) and len(contents(grown)) == len(contents(first)) + 1  # one block appended
    expected = du_json(repo)
    cache_path(repo).write_bytes(grown[:-5])  # a crash in the middle of the append
    damaged = ReachCache.load(repo.store_root)
    assert damaged.damaged and len(damaged) == len(read_records(first))
    assert du_json(repo) == expected
    repaired = ReachCache.load(repo.store_root)
    assert not repaired.damaged and repaired.blocks == 1  # rewritten whole
    assert {oid for _, oid, _ in read_records(cache_path(repo))} >= {
        subtree(repo, repo.refs.resolve("HEAD"), b"more")}


def test_many_appended_blocks_are_made_one(tmp_path):
    repo, snaps = scenario(tmp_path)
    records = read_records(cache_path(repo))
    for kind, oid, payload in records * (MAX_BLOCKS // len(records) + 1):  # duplicates too
        append_records(repo.store_root, [({b"t": "tree", b"s": "snapshot"}[kind], oid, payload)])
    assert len(contents(cache_path(repo))) > MAX_BLOCKS
    expected = repo.du().as_json()
    assert len(contents(cache_path(repo))) == 1
    assert repo.du().as_json() == expected


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_something_else_in_place_of_the_cache_is_no_cache(tmp_path, kind):
    repo, snaps = scenario(tmp_path)
    expected = repo.du().as_json()
    target = tmp_path / "elsewhere"
    target.write_bytes(b"not to be touched\n")
    cache_path(repo).unlink()
    if kind == "symlink":
        cache_path(repo).symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(cache_path(repo))
    else:
        cache_path(repo).mkdir()
    assert du_json(repo) == expected  # no hang on the FIFO, nothing followed
    result = run(["gc", "--prune", "now"], cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert set(object_files(repo.store_root)) == live_objects(repo, snaps)
    assert target.read_bytes() == b"not to be touched\n"


def test_racing_du_gc_and_commits_leave_only_true_records(tmp_path):
    """du (store lock shared) appends and rewrites while commits run and gc
    (exclusive) compacts: whatever interleaving, every record the file ends
    with is whole and true, and the answers are those without a cache."""
    repo, snaps = scenario(tmp_path)
    env = cli_env(None)
    procs = []
    for i in range(3):
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _DU_LOOP, str(repo.root), "6"], env=env, stderr=subprocess.PIPE))
    procs.append(subprocess.Popen(
        [sys.executable, "-c", _COMMIT_LOOP, str(repo.root), "6"], env=env, stderr=subprocess.PIPE))
    procs.append(subprocess.Popen(
        [sys.executable, "-c", _GC_LOOP, str(repo.root), "3"], env=env, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    cache = ReachCache.load(repo.store_root)
    assert not cache.damaged
    for kind, oid, payload in read_records(cache_path(repo)):
        assert hashlib.sha256(payload).hexdigest() == oid
    with_cache = repo.du().as_json()
    cache_path(repo).unlink()
    assert repo.du().as_json() == with_cache


_DU_LOOP = """
import sys
from rnstore.repo import Repository
for _ in range(int(sys.argv[2])):
    Repository.open(sys.argv[1]).du()
"""

_COMMIT_LOOP = """
import sys
from pathlib import Path
from rnstore.repo import Repository
root = Path(sys.argv[1])
for i in range(int(sys.argv[2])):
    (root / "loop" / str(i)).mkdir(parents=True)
    (root / "loop" / str(i) / "f.txt").write_text(f"commit {i}\\n")
    Repository.open(root).commit(f"loop {i}", all=True)
"""

_GC_LOOP = """
import sys
from rnstore.repo import Repository
for _ in range(int(sys.argv[2])):
    Repository.open(sys.argv[1]).gc(prune="1h")
"""


# -- the tree parser ---------------------------------------------------------------------------

_names = st.binary(min_size=1, max_size=12).filter(lambda n: b"\0" not in n and b"/" not in n
                                                   and n not in (b".", b".."))
_entries = st.lists(st.tuples(_names, st.sampled_from([MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE]),
                              st.binary(min_size=32, max_size=32).map(bytes.hex),
                              st.integers(0, 10 ** 12)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(_entries)
def test_the_parser_reads_every_tree_as_decode_tree_does(entries):
    by_name = {name: TreeEntry(name, mode, oid, size) for name, mode, oid, size in entries}
    payload = encode_tree_unchecked(sorted(by_name.values()))
    tree = decode_tree(payload)
    subtrees, files = parse_tree_entries(payload)
    assert sorted(subtrees) == sorted((e.id, str(e.size)) for e in tree.entries if e.mode == MODE_TREE)
    assert sorted(files) == sorted((e.id, str(e.size)) for e in tree.entries if e.mode != MODE_TREE)


@settings(max_examples=300, deadline=None)
@given(_entries, st.integers(0, 10 ** 6), st.binary(min_size=1, max_size=3))
def test_the_parser_never_reads_fewer_entries_than_a_damaged_payload_holds(entries, at, junk):
    """Whatever the bytes, a parse either fails or gives exactly one entry
    per NUL-terminated record, with that record's own mode, id and size."""
    payload = encode_tree_unchecked([TreeEntry(n, m, i, s) for n, m, i, s in entries])
    at %= len(payload) + 1
    damaged = payload[:at] + junk + payload[at:]
    parsed = parse_tree_entries(damaged)
    if parsed is None:
        return
    records = damaged[len(b"rntree 1\n"):].split(b"\0")[:-1]
    fields = [r.split(b" ", 3) for r in records]
    expected = sorted((i.decode(), s.decode()) for m, i, s, _ in fields)
    assert sorted(parsed[0] + parsed[1]) == expected
    assert len(parsed[0]) == sum(m == b"040000" for m, *_ in fields)


def test_names_that_look_like_entries_are_names(tmp_path):
    fake = b"x\n100644 " + b"a" * 64 + b" 5 y"
    payload = encode_tree_unchecked(sorted([
        TreeEntry(fake, MODE_FILE, "b" * 64, 1),
        TreeEntry(b"sub dir", MODE_TREE, "c" * 64, 7),
    ]))
    assert decode_tree(payload)
    assert parse_tree_entries(payload) == ([("c" * 64, "7")], [("b" * 64, "1")])


def test_a_tree_damaged_in_the_store_after_du_is_kept_and_left_to_fsck(tmp_path):
    """The cache holds a checked copy of the tree, so gc knows exactly what
    it references and deletes only what no root reaches; the damaged copy
    is reachable, so gc keeps it, and fsck names it. Without the cache, gc
    cannot read the tree and refuses, as before."""
    repo, snaps = scenario(tmp_path)
    du_json(repo)
    only = subtree(repo, snaps["tagged"], b"src", b"only")
    path = repo.store.path_for(only)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    live = live_objects_without(repo, snaps, only)
    cache = cache_path(repo).read_bytes()

    cache_path(repo).unlink()
    refused = run(["gc", "--prune", "now"], cwd=repo.root)
    assert refused.returncode == 1 and refused.stderr.startswith("error: gc deleted nothing")
    cache_path(repo).write_bytes(cache)
    result = run(["gc", "--prune", "now"], cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert set(object_files(repo.store_root)) == live
    assert only in {p.id for p in repo.fsck().problems if p.fatal}


def live_objects_without(repo: Repository, snaps: dict, damaged_tree: str) -> set[str]:
    """live_objects, with one tree's entries taken from the cache's copy (it is damaged in the store)."""
    payload = next(p for _, o, p in read_records(cache_path(repo)) if o == damaged_tree)
    below = {e.id for e in decode_tree(payload).entries}
    found = {damaged_tree} | below
    for snapshot in (snaps["tagged"], snaps["live"]):
        stack = [repo.store.get_snapshot(snapshot).tree]
        found.add(snapshot)
        while stack:
            tree = stack.pop()
            found.add(tree)
            if tree == damaged_tree:
                continue
            for entry in repo.store.get_tree(tree).entries:
                (stack.append if entry.mode == MODE_TREE else found.add)(entry.id)
    return found | {e.id for e in repo.read_index()}


# -- what commit writes ------------------------------------------------------------------------

def all_trees(repo: Repository, snapshot: str) -> set[str]:
    found, stack = set(), [repo.store.get_snapshot(snapshot).tree]
    while stack:
        tree = stack.pop()
        found.add(tree)
        stack += [e.id for e in repo.store.get_tree(tree).entries if e.mode == MODE_TREE]
    return found


def test_commit_records_its_trees_and_du_gc_and_forget_read_none_from_the_store(tmp_path):
    repo = make_repo(tmp_path / "ws")
    first = commit(repo, {"a/b/c.txt": "c\n", "a/d.txt": "d\n", "e.txt": "e\n"}, "first")
    second = commit(repo, {"a/b/c.txt": "c2\n"}, "second")
    recorded = {oid for _, oid, _ in read_records(cache_path(repo))}
    assert all_trees(repo, first) | all_trees(repo, second) | {first, second} <= recorded
    scan = collect_roots(repo, _never, grace=HOUR, now=0)
    for by_unit in (True, False):
        marker = mark_reachable(repo, scan.roots, _never, by_unit=by_unit, save=False)
        assert marker.load.from_cache == all_trees(repo, first) | all_trees(repo, second) | {first, second}
    # the answers are those without a cache
    cached = repo.du().as_json()
    forgotten = repo.forget([first], dry_run=True).as_json()
    cache_path(repo).unlink()
    assert repo.du().as_json() == cached
    assert repo.forget([first], dry_run=True).as_json() == forgotten


def _never(kind, oid, detail):
    raise AssertionError(detail)


def test_records_commit_wrote_for_trees_gc_deleted_are_not_trusted(tmp_path):
    """Commit's records outlive the trees when the file is put back from
    before a gc: a root reaching those trees again makes du, gc and forget
    answer exactly as without a cache (refuse, or count them missing)."""
    repo = make_repo(tmp_path / "ws")
    old = commit(repo, {"gone/inner/f.txt": "only in the old snapshot\n", "k.txt": "k\n"}, "old")
    (repo.root / "gone").rename(repo.root.parent / "gone-aside")
    repo.commit("without gone", all=True)
    as_committed = cache_path(repo).read_bytes()  # written by the two commits alone
    assert subtree(repo, old, b"gone") in {oid for _, oid, _ in read_records(as_committed)}
    old_snapshot = repo.store.get_snapshot(old)
    repo.forget([old])
    age_objects(repo, 2 * HOUR)
    assert repo.gc(prune="now", threshold=0).deleted_objects > 0
    assert not repo.store.has(subtree_id := old_snapshot.tree)
    assert repo.store.put_snapshot(old_snapshot) == old
    repo.journal.add(old)
    cache_path(repo).write_bytes(as_committed)
    with_cache = run(["gc", "--prune", "now"], cwd=repo.root)
    assert with_cache.returncode == 1 and subtree_id in with_cache.stderr
    cache_path(repo).write_bytes(as_committed)
    with pytest.raises(CorruptStoreError):
        repo.du()
    cache_path(repo).write_bytes(as_committed)
    stale_forget = repo.forget([old], dry_run=True)
    cache_path(repo).unlink()
    assert repo.forget([old], dry_run=True).as_json() == stale_forget.as_json()
    cache_path(repo).unlink(missing_ok=True)
    without = run(["gc", "--prune", "now"], cwd=repo.root)
    assert (without.returncode, without.stderr) == (with_cache.returncode, with_cache.stderr)


def test_the_cache_is_compressed(tmp_path):
    """Versions of a folder share most of their entries: the file holds a
    fraction of the payloads' bytes."""
    repo = make_repo(tmp_path / "ws")
    files = {f"src/m{i:03}.py": f"module {i}\n" for i in range(200)}
    commit(repo, files, "first")
    for n in range(5):
        commit(repo, {f"src/m{n:03}.py": f"changed {n}\n"}, f"edit {n}")
    cache_path(repo).unlink()
    du_json(repo)  # one block of every tree and snapshot
    payloads = sum(len(p) for _, _, p in read_records(cache_path(repo)))
    assert len(contents(cache_path(repo))) == 1 and cache_path(repo).stat().st_size * 3 < payloads


def test_a_commit_records_at_most_max_recorded_bytes_and_du_reads_the_rest(tmp_path, monkeypatch):
    import rnstore.reachcache as reachcache
    monkeypatch.setattr(reachcache, "MAX_RECORDED", 200)
    repo = make_repo(tmp_path / "ws")
    snapshot = commit(repo, {f"d{i}/f.txt": f"{i}\n" for i in range(10)}, "wide")
    recorded = {oid for kind, oid, _ in read_records(cache_path(repo)) if kind == b"t"}
    assert 0 < len(recorded) < len(all_trees(repo, snapshot))
    cached = repo.du().as_json()
    assert {oid for _, oid, _ in read_records(cache_path(repo))} >= all_trees(repo, snapshot)
    cache_path(repo).unlink()
    assert repo.du().as_json() == cached


def test_a_few_repeated_records_do_not_make_du_rewrite_the_cache(tmp_path):
    """A commit records every tree it writes, some already recorded: du
    leaves such a file as it is until repeats and unreached records
    outnumber the records it uses."""
    repo, snaps = scenario(tmp_path)
    du_json(repo)
    records = read_records(cache_path(repo))
    kind, oid, payload = records[0]
    append_records(repo.store_root, [({b"t": "tree", b"s": "snapshot"}[kind], oid, payload)])
    before = cache_path(repo).read_bytes()
    expected = du_json(repo)
    assert cache_path(repo).read_bytes() == before
    for _ in range(len(records)):
        append_records(repo.store_root, [({b"t": "tree", b"s": "snapshot"}[kind], oid, payload)])
    assert du_json(repo) == expected
    rewritten = [oid for _, oid, _ in read_records(cache_path(repo))]
    assert len(contents(cache_path(repo))) == 1 and len(rewritten) == len(set(rewritten)) > 1


# -- version 3's form, and version 2 still read -------------------------------------------------

def test_a_cache_of_version_2_is_read_and_the_next_du_writes_version_3(tmp_path):
    repo, snaps = scenario(tmp_path)
    du_json(repo)
    honest = read_records(cache_path(repo))
    version_2 = HEADER_2 + block(b"".join(record(k, o, p) for k, o, p in honest))
    cache_path(repo).write_bytes(version_2)
    old = ReachCache.load(repo.store_root)
    assert (old.version, old.damaged, old.rejected, len(old)) == (2, False, 0, len(honest))
    scan = collect_roots(repo, _never, grace=HOUR, now=0)
    marker = mark_reachable(repo, scan.roots, _never, save=False)
    assert set(marker.children) == marker.load.from_cache  # every tree and snapshot from the old file
    expected = du_json(repo)
    assert cache_path(repo).read_bytes().startswith(HEADER)  # rewritten in version 3, the same records
    rewritten = read_records(cache_path(repo))  # what du reached, as the old file said it
    assert set(rewritten) <= set(honest) and {o for _, o, _ in rewritten} == set(marker.children)
    assert len(cache_path(repo).read_bytes()) < len(version_2)
    cache_path(repo).write_bytes(version_2)
    commit(repo, {"later.txt": "later\n"}, "later")  # a commit appends to version 3 only: it makes the file anew
    assert cache_path(repo).read_bytes().startswith(HEADER)
    assert du_json(repo)["store"]["objects"] == expected["store"]["objects"] + 3


_stored_entries = st.lists(st.tuples(_names, st.sampled_from([MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE]),
                                     st.binary(min_size=32, max_size=32), st.integers(0, 10 ** 12)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(_stored_entries)
def test_binary_trees_round_trip_and_match_an_independent_decoder(entries):
    by_name = {name: TreeEntry(name, mode, raw.hex(), size) for name, mode, raw, size in entries}
    payload = encode_tree_unchecked(sorted(by_name.values()))
    stored = binary_tree(payload)
    assert stored == record_3(b"t", payload)[5:]  # what FORMAT.md says a writer stores
    assert hex_tree(stored) == tree_from_stored(stored) == payload


@settings(max_examples=500, deadline=None)
@given(_stored_entries, st.integers(0, 10 ** 6), st.binary(min_size=0, max_size=3), st.integers(0, 3))
def test_damaged_binary_trees_rebuild_what_an_independent_decoder_does_or_nothing(entries, at, junk, cut):
    """Whatever the bytes, hex_tree rebuilds either nothing or exactly what
    FORMAT.md's entry-by-entry reading gives (whose hash then decides)."""
    payload = encode_tree_unchecked([TreeEntry(n, m, r.hex(), s) for n, m, r, s in entries])
    stored = binary_tree(payload)
    at %= len(stored) + 1
    damaged = stored[:at] + junk + stored[at + cut:]
    rebuilt = hex_tree(damaged)
    independent = tree_from_stored(damaged)
    assert rebuilt == independent or (rebuilt is None and independent is not None
                                      and not independent_entries_parse(independent))


def independent_entries_parse(payload: bytes) -> bool:
    """Whether every entry of a rebuilt payload has six digits of mode,
    and " SIZE " of digits after its id, as hex_tree asks."""
    for entry in payload[len(b"rntree 1\n"):].split(b"\0")[:-1]:
        if not (entry[:6].isdigit() and len(entry) > 71):
            return False
    return True


def test_binary_tree_refuses_what_is_no_tree():
    assert binary_tree(b"garbage") is None
    assert binary_tree(b"rntree 1\n100644 " + b"z" * 64 + b" 1 a\0") is None
    assert binary_tree(b"rntree 1\n") == b"" and hex_tree(b"") == b"rntree 1\n"


_raw_entries = st.lists(st.tuples(  # mostly sound: the rest is each way an entry can be refused
    st.sampled_from([b"040000", b"100644", b"100755", b"120000"] * 6 + [b"000000", b"04000", b"1006440"]),
    st.sampled_from([32] * 12 + [31, 33]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.sampled_from([b"0", b"7", b"1234", b"1" * 20] * 12 + [b"01", b"", b"-1", b"1" * 21, b"12a"]),
    st.binary(max_size=6).filter(lambda name: b"\0" not in name) | st.binary(max_size=3)), max_size=6)


@settings(max_examples=500, deadline=None)
@given(_raw_entries, st.binary(max_size=4), st.binary(max_size=4), st.integers(0, 10 ** 6),
       st.just(b"") | st.binary(min_size=1, max_size=3))
def test_stored_trees_read_directly_as_rebuilding_then_parsing_reads_them(entries, before, after, at, junk):
    """stored_tree_entries takes a version 3 tree exactly when hex_tree
    rebuilds a payload that parse_tree_entries takes, with its hash as the
    id and the same entries in the same order; whatever the bytes around it."""
    stored = b"".join(mode + b" " + raw + b" " + size + b" " + name + b"\0" for mode, raw, size, name in entries)
    at %= len(stored) + 1
    stored = stored[:at] + junk + stored[at:]
    content = before + stored + after
    got = stored_tree_entries(content, len(before), len(before) + len(stored))
    payload = tree_from_stored(stored)
    pairs = parse_tree_entries(payload) if payload is not None else None
    if pairs is None:
        assert got is None
        return
    oid, (sub_ids, sub_sizes, file_ids, file_sizes) = got
    assert oid == sha(payload)
    assert list(zip(sub_ids, map(int, sub_sizes))) == [(i, int(n)) for i, n in pairs[0]]
    assert list(zip(file_ids, map(int, file_sizes))) == [(i, int(n)) for i, n in pairs[1]]
