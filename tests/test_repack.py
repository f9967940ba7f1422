"""Repacking (issue 13, items 2 and 3): gc consolidates loose objects and
small packs into one pack, with deltas between versions of a path; gc
--auto runs past gc.auto_loose / gc.auto_packs; a lookup searches a bounded
number of packs and re-lists the pack folder only when it changed; readers
that race a repack find every object. Library and CLI end to end; the kill
-9 and racing-process cases are in tests/torture/test_torture_repack.py."""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import pytest

from rnstore import codec, packs, repack as repack_module
from rnstore import store as store_module
from rnstore.repack import _geometric_merge, base_index, delta_order
from rnstore.repo import Repository
from rnstore.store import DiskStore

from helpers.library import age_copies
from helpers.porcelain import ok
from helpers.space import HOUR, cli_json, commit, make_repo, run

MANY = packs.MIN_OBJECTS + 6


def pack_paths(repo: Repository) -> list[Path]:
    folder = repo.store_root / "objects" / "pack"
    return sorted(folder.glob("*.pack")) if folder.is_dir() else []


def loose_ids(repo: Repository) -> list[str]:
    objects = repo.store_root / "objects"
    return sorted(p.parent.name + p.name for p in objects.glob("??/*") if len(p.name) == 62)


#: Lines that zstd alone compresses poorly (seeded), as source code is to it.
LINES = [random.Random(n).randbytes(30).hex() + "\n" for n in range(200)]


def history(repo: Repository, commits: int, *, wide: int = 0) -> list[str]:
    """`commits` snapshots of a file that grows a line each time (and, with
    `wide`, that many more files changed per commit: a pack each)."""
    snaps = []
    for i in range(commits):
        files = {"notes.txt": "".join(LINES[:40 + i])}
        files.update({f"wide/f{k:03d}": f"commit {i} file {k}\n" for k in range(wide)})
        snaps.append(commit(repo, files, f"commit {i}"))
    return snaps


def every_payload(repo: Repository) -> dict[str, bytes]:
    return {oid: repo.store.get(oid, limit=1 << 30)[1] for oid in repo.store}


# -- which packs are merged ---------------------------------------------------------------

def test_geometric_merge_keeps_each_pack_twice_all_smaller_ones():
    assert _geometric_merge(0, {}) == []
    assert _geometric_merge(5, {"big": 10_000}) == []  # the loose objects make a pack of their own
    assert _geometric_merge(0, {"a": 64, "b": 64, "big": 10_000}) == ["a", "b"]
    assert _geometric_merge(100, {"a": 64, "b": 300, "big": 10_000}) == ["a", "b"]
    assert _geometric_merge(0, {"a": 1, "b": 2, "c": 4, "d": 8}) == ["a", "b", "c", "d"]
    assert _geometric_merge(0, {"a": 1, "b": 3, "c": 9, "d": 27}) == []


def auto_gc(repo: Repository):
    """gc --auto, due every time: the geometric rule (a gc the user runs merges every pack)."""
    repo.config.set("gc.interval", "now", durable=False)
    stats = repo.gc(auto=True)
    assert not stats.skipped
    return stats


def test_pack_count_after_repeated_gc_stays_within_the_bound(tmp_path):
    """Forty commits, each its own pack, a gc --auto after every one: never
    more than floor(log2(objects)) + 1 packs after a gc, and all readable."""
    repo = make_repo(tmp_path / "ws")
    snaps = []
    for i in range(40):
        files = {f"wide{i}/f{k:03d}": f"{i} {k}\n" for k in range(MANY)} if i % 2 else {f"small{i}": f"{i}\n"}
        snaps.append(commit(repo, files))
        stats = auto_gc(repo)
        objects = len(list(repo.store))
        assert stats.packs_after == len(pack_paths(repo))
        assert stats.packs_after <= math.floor(math.log2(objects)) + 1, (i, stats.packs_after, objects)
        assert stats.loose_after == len(loose_ids(repo)) == 0
    assert repo.fsck().ok
    assert 1 < len(pack_paths(repo)) < 8
    assert repo.gc(aggressive=True).packs_after == 1  # gc --aggressive merges them all
    assert repo.fsck().ok


# -- consolidation ---------------------------------------------------------------------------

def test_gc_packs_loose_objects_and_small_packs_into_one(tmp_path):
    repo = make_repo(tmp_path / "ws")
    repo.config.set("pack.deltas", "false", durable=False)
    history(repo, 3, wide=MANY)  # three packs
    history(repo, 20)  # loose objects
    before = every_payload(repo)
    assert len(pack_paths(repo)) == 3 and len(loose_ids(repo)) > 40
    stats = repo.gc()
    assert (stats.packs_before, stats.loose_before) == (3, len(before) - 3 * (MANY + 3))
    assert stats.packs_after == 1 and stats.loose_after == 0 and stats.merged_packs == 3
    assert stats.repacked_objects == len(before) and stats.deleted_objects == 0
    assert loose_ids(repo) == [] and len(pack_paths(repo)) == 1
    assert every_payload(repo) == before
    assert repo.fsck().ok
    again = repo.gc()  # nothing left to do
    assert again.repacked_objects == 0 and again.packs_after == again.packs_before == 1


def test_unreachable_young_objects_stay_where_they_are_and_dead_ones_go(tmp_path):
    repo = make_repo(tmp_path / "ws")
    repo.config.set("pack.deltas", "false", durable=False)
    keep = history(repo, 2, wide=MANY)[-1]
    young = repo.store.put("blob", b"a young unreferenced blob\n")
    old = repo.store.put("blob", b"an old unreferenced blob\n")
    young_file, old_file = repo.store.path_for(young), repo.store.path_for(old)
    os.utime(old_file, (time.time() - 2 * HOUR,) * 2)
    young_mtime = young_file.stat().st_mtime
    stats = repo.gc()
    assert stats.deleted_objects == 1 and not old_file.exists()
    assert young_file.exists() and young_file.stat().st_mtime == young_mtime  # its own age
    assert loose_ids(repo) == [young]
    assert stats.young_objects == 1 and stats.loose_after == 1
    assert repo.store.get_snapshot(keep)
    # a young unreachable object in a merged pack stays, in a pack that keeps its age
    with repo.store.batch():
        in_pack = [repo.store.put("blob", b"packed garbage %d\n" % i) for i in range(MANY)]
    commit(repo, {"more": "x\n"})
    repo.gc()
    holders = {repo.store.file_of(oid) for oid in in_pack}
    assert len(holders) == 1 and holders.pop().name.endswith(".pack")
    age_copies(repo.store, 2 * HOUR)
    repo.gc()
    assert not any(repo.store.has(oid) for oid in in_pack + [young])
    assert repo.fsck().ok


def test_a_copy_a_kept_pack_already_holds_is_removed(tmp_path):
    """What a repack killed after publishing its pack leaves: loose copies
    of packed objects. The next gc removes them."""
    repo = make_repo(tmp_path / "ws")
    history(repo, 2, wide=MANY)
    repo.gc()
    [pack] = pack_paths(repo)
    frames = {oid: repo.store.read_frame(oid, whole=True) for oid in repo.store}
    for oid, frame in list(frames.items())[:10]:
        path = repo.store.path_for(oid)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(frame)
    assert len(loose_ids(repo)) == 10
    stats = repo.gc()
    assert loose_ids(repo) == [] and pack_paths(repo) == [pack] and stats.repacked_objects == 0
    assert repo.fsck().ok


# -- deltas ----------------------------------------------------------------------------------

def test_repack_stores_the_newest_version_whole_and_older_ones_as_deltas(tmp_path):
    repo = make_repo(tmp_path / "ws")
    repo.config.set("pack.depth", "2", durable=False)
    snaps = history(repo, 12)
    before = every_payload(repo)
    loose_bytes = sum(repo.store.stored_size(oid) for oid in before)
    repo.gc()
    assert every_payload(repo) == before and repo.fsck().ok
    store = repo.store
    newest_first = [next(e.id for e in store.get_tree(store.get_snapshot(s).tree).entries)
                    for s in reversed(snaps)]
    bases = [store.delta_base(oid) for oid in newest_first]
    # each against the next newer; a base already pack.depth deep: whole, and its own chain starts
    v = newest_first
    assert bases == [None, v[0], v[1], None, v[3], v[4], None, v[6], v[7], None, v[9], v[10]]
    packed_bytes = sum(store.stored_size(oid) for oid in before)
    assert packed_bytes < loose_bytes * 0.6, (packed_bytes, loose_bytes)
    out = ok(run(["show", f"{snaps[0]}:notes.txt"], cwd=repo.root)).stdout
    assert out == before[newest_first[-1]]


def test_snapshots_become_deltas_and_leave_the_store_whole(tmp_path):
    """The snapshots of a history are the versions of one more path: the
    newest whole, older ones pack-local deltas; log still lists them all,
    and a push rebuilds them whole (a remote never holds a delta)."""
    from rnstore.remote import transfer
    repo = make_repo(tmp_path / "ws")
    snaps = history(repo, 6)
    repo.gc(aggressive=True)
    store = repo.store
    assert [store.delta_base(s) for s in reversed(snaps)] == [None, *reversed(snaps[1:])]
    assert [entry.id for entry in repo.log()] == list(reversed(snaps))
    assert repo.fsck().ok
    transfer.add_remote(repo, "origin", str(tmp_path / "share"))
    transfer.push(repo, "origin")
    for pack_file in (tmp_path / "share" / "packs").iterdir():
        pack = packs.Pack.open(str(pack_file))
        assert all(codec.frame_base(pack.read(raw)) is None for raw, _ in pack.entries())
    Repository.clone(str(tmp_path / "share"), tmp_path / "clone")
    assert [entry.id for entry in Repository.open(tmp_path / "clone").log()] == list(reversed(snaps))


def test_gc_aggressive_compresses_every_frame_again_and_gc_copies_them(tmp_path):
    """A blob stored at zstd level 1 keeps its frame through a plain gc,
    and is written again at AGGRESSIVE_WHOLE_LEVEL by gc --aggressive."""
    repo = make_repo(tmp_path / "ws")
    repo.config.set("compression.level", "1", durable=False)
    text = "".join(LINES) * 3
    first = commit(repo, {f"f{k:03d}": text + str(k) for k in range(MANY)}, "one")
    blob = next(e.id for e in repo.store.get_tree(repo.store.get_snapshot(first).tree).entries)
    level_1 = repo.store.read_frame(blob)
    commit(repo, {"extra.txt": "a loose object\n"}, "two")
    repo.gc()
    assert repo.store.read_frame(blob) == level_1
    commit(repo, {"extra.txt": "another one\n"}, "three")
    repo.gc(aggressive=True)
    again = repo.store.read_frame(blob)
    assert codec.frame_base(again) is None and again != level_1
    assert again == codec.compress("blob", repo.store.get(blob)[1], repack_module.AGGRESSIVE_WHOLE_LEVEL)


def test_chains_grow_like_the_log_of_the_versions():
    for radix, most in ((2, 12), (4, 18), (16, 45)):
        depths = [0]
        for i in range(1, 4096):
            base = base_index(i, radix)
            assert 0 <= base < i
            depths.append(depths[base] + 1)
        assert max(depths) == most  # the digits of 4095 in that base, added up
        # most versions are deltas against the next newer one
        neighbours = sum(1 for i in range(1, 4096) if base_index(i, radix) == i - 1)
        assert neighbours >= 4095 * (radix - 1) // radix
    assert [base_index(i, 2) for i in range(1, 9)] == [0, 0, 2, 0, 4, 4, 6, 0]
    assert [base_index(i) for i in (1, 15, 16, 17, 32, 256, 257, 272)] == [0, 14, 0, 16, 16, 0, 256, 256]


def _marked(repo):
    """A Marker over everything the repository's roots reach, and those ids, sorted."""
    from rnstore.reachability import Marker, StoreLoader, collect_roots, mark_roots
    marker = Marker(StoreLoader(repo.store))
    scan = collect_roots(repo, lambda *a: None, grace=0, now=time.time())
    mark_roots(marker, scan.roots, lambda *a: None, by_unit=False)
    return marker, sorted(marker.owner)


def test_delta_order_keeps_chains_within_the_depth_with_log_shaped_bases(tmp_path):
    repo = make_repo(tmp_path / "ws")
    history(repo, 40)
    marker, members = _marked(repo)
    for radix, depth, deepest in ((2, 50, 5), (2, 3, 3), (16, 50, 16), (16, 5, 5)):
        order = delta_order(repo.store, members, marker.kind, depth, radix)
        depth_of = {}
        for oid, base in order:
            depth_of[oid] = 0 if base is None else depth_of[base] + 1
        assert max(depth_of.values()) == deepest, (radix, depth)


def test_pack_deltas_false_stores_every_object_whole(tmp_path):
    repo = make_repo(tmp_path / "ws")
    repo.config.set("pack.deltas", "false", durable=False)
    history(repo, 8)
    repo.gc()
    assert all(repo.store.delta_base(oid) is None for oid in repo.store)


def test_delta_order_puts_every_base_before_its_deltas_and_cuts_chains(tmp_path):
    repo = make_repo(tmp_path / "ws")
    history(repo, 9)
    marker, members = _marked(repo)
    for depth in (1, 3, 50):
        order = delta_order(repo.store, members, marker.kind, depth)
        assert sorted(oid for oid, _ in order) == members
        seen, depth_of = set(), {}
        for oid, base in order:
            assert base is None or base in seen
            depth_of[oid] = 0 if base is None else depth_of[base] + 1
            assert depth_of[oid] <= depth
            seen.add(oid)
        assert max(depth_of.values()) == min(depth, 8)  # 9 versions: the oldest 8 deltas down (radix 16)


# -- gc --auto thresholds ----------------------------------------------------------------------

def loose_objects(repo: Repository, count: int) -> list[str]:
    """`count` loose objects no root reaches (young: gc keeps them), of fixed
    contents, so that gc --auto's estimate of them is the same on every run."""
    return [repo.store.put("blob", b"loose object %d\n" % i) for i in range(count)]


def test_gc_auto_runs_past_the_loose_and_pack_thresholds(tmp_path):
    repo = make_repo(tmp_path / "ws")
    history(repo, 2)
    repo.gc()  # gc.last is now: gc.interval has not passed
    loose_objects(repo, 600)
    estimate = repo.store.loose_and_packs(estimate=True)[0]
    assert 400 <= estimate <= 800  # 16 of the 256 fan-out folders, times 16
    assert repo.store.loose_and_packs() == (600, 1)
    assert repo.gc(auto=True).skipped  # below gc.auto_loose (1000) and gc.auto_packs (20)
    repo.config.set("gc.auto_loose", "300", durable=False)
    stats = Repository.open(repo.root).gc(auto=True)
    assert not stats.skipped and stats.loose_before == 600
    assert stats.loose_after == 600  # unreachable and young: they stay loose
    # packs
    history(repo, 3, wide=MANY)
    repo.config.set("gc.auto_loose", "0", durable=False)  # 0: never
    assert Repository.open(repo.root).gc(auto=True).skipped
    repo.config.set("gc.auto_packs", "3", durable=False)
    stats = Repository.open(repo.root).gc(auto=True)
    assert not stats.skipped and stats.packs_before == 4 and stats.packs_after == 1


def test_gc_leaves_at_most_half_of_gc_auto_packs(tmp_path):
    repo = make_repo(tmp_path / "ws")
    repo.config.set("pack.deltas", "false", durable=False)
    # packs of growing size, which the geometric rule alone would all keep
    for i, width in enumerate((MANY, 3 * MANY, 9 * MANY)):
        commit(repo, {f"w{i}/f{k:04d}": f"{i} {k}\n" for k in range(width)})
    auto_gc(repo)  # (the three snapshots make a fourth pack)
    assert len(pack_paths(repo)) == 4
    repo.config.set("gc.auto_packs", "4", durable=False)
    assert auto_gc(Repository.open(repo.root)).packs_after == 2


def test_a_commit_past_a_threshold_starts_gc_auto_in_the_background(tmp_path, run_cli):
    repo = make_repo(tmp_path / "ws")
    history(repo, 1)
    repo.gc()
    junk = loose_objects(repo, 600)
    repo.config.set("gc.auto_loose", "300", durable=False)
    (repo.root / "new.txt").write_text("new\n")
    result = ok(run_cli(["commit", "-a", "-m", "more"], cwd=repo.root))
    line = [line for line in result.stderr.splitlines() if "gc --auto" in line]
    assert len(line) == 1 and "more than 300 loose objects (gc.auto_loose)" in line[0], result.stderr
    pid = int(line[0].split("(pid ")[1].split(";")[0])
    deadline = time.monotonic() + 120
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert loose_ids(repo) == sorted(junk)  # the commit's objects packed; the young junk stays


# -- the CLI report --------------------------------------------------------------------------

def test_gc_reports_packs_and_loose_objects_before_and_after(tmp_path):
    repo = make_repo(tmp_path / "ws")
    history(repo, 4)
    loose = len(loose_ids(repo))
    dry = cli_json(["gc", "--dry-run"], repo.root)
    assert (dry["packs_before"], dry["packs_after"]) == (0, 1)
    assert (dry["loose_objects_before"], dry["loose_objects_after"]) == (loose, 0)
    assert dry["repacked_objects"] == loose and len(loose_ids(repo)) == loose  # nothing changed
    result = ok(run(["gc"], cwd=repo.root))
    assert result.stdout == b""
    assert result.stderr.strip() == (f"gc: deleted 0 objects (0 B); kept {loose}; repacked {loose} objects "
                                     f"(packs 0 -> 1, loose objects {loose} -> 0)")
    document = cli_json(["gc"], repo.root)
    assert (document["packs_before"], document["packs_after"], document["repacked_objects"]) == (1, 1, 0)
    assert "repacked" not in ok(run(["gc"], cwd=repo.root)).stderr  # nothing to say


# -- lookups ----------------------------------------------------------------------------------

def test_a_miss_lists_the_pack_folder_only_when_it_changed(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "ws")
    history(repo, 3, wide=MANY)
    store = DiskStore(repo.store_root / "objects", fsync=False)
    listings = []
    real = store_module.list_packs
    monkeypatch.setattr(store_module, "list_packs", lambda folder: listings.append(folder) or real(folder))
    absent = [f"{i:064x}" for i in range(200)]
    assert not store.has(absent[0])
    time.sleep(0.25)  # past the folder's racy window
    assert not store.has(absent[1])
    first = len(listings)
    assert not any(store.has(oid) for oid in absent[2:])
    assert len(listings) == first  # 198 misses, no listing
    writer = DiskStore(repo.store_root / "objects", fsync=False)
    with writer.batch():
        new = [writer.put("blob", b"new %d" % i) for i in range(MANY)]
    written = len(listings)  # (the writer lists the folder too)
    assert all(store.has(oid) for oid in new)  # the folder changed: listed again, once
    assert len(listings) == written + 1


def test_a_reader_that_loaded_the_packs_before_a_repack_finds_every_object(tmp_path):
    repo = make_repo(tmp_path / "ws")
    history(repo, 3, wide=MANY)
    history(repo, 3)
    reader = DiskStore(repo.store_root / "objects", fsync=False)
    ids = sorted(reader)
    reader.get(ids[0])  # its pack listing is now the old one
    repo.gc()
    for oid in ids:  # loose files gone, packs replaced: found in the new pack
        assert reader.has(oid)
        reader.verify(oid)


def test_a_pack_that_vanishes_while_listed_makes_the_listing_start_again(tmp_path, monkeypatch):
    """A reader lists the folder, a repack publishes its pack and removes
    the old ones, then the reader opens what it listed: it lists again."""
    repo = make_repo(tmp_path / "ws")
    history(repo, 2, wide=MANY)
    ids = sorted(repo.store)
    stale = store_module.list_packs(str(repo.store_root / "objects" / "pack"))
    history(repo, 2, wide=MANY)
    repo.gc()
    assert not any(os.path.exists(p) for p in stale)
    real = store_module.list_packs
    calls = []

    def listing(folder):
        calls.append(folder)
        return stale if len(calls) == 1 else real(folder)

    monkeypatch.setattr(store_module, "list_packs", listing)
    reader = DiskStore(repo.store_root / "objects", fsync=False)
    assert all(reader.has(oid) for oid in ids)
    assert len(calls) == 2


# -- FORMAT.md and README ------------------------------------------------------------------

def test_format_and_readme_document_repacking_and_its_settings():
    root = Path(__file__).resolve().parents[1]
    fmt = (root / "rnstore" / "FORMAT.md").read_text()
    section = fmt.split("## Repacking", 1)[1].split("\n## ", 1)[0]
    for needle in ("MUST", "durable", "gc.auto_loose", "gc.auto_packs", "log2", "same pack",
                   "newest", "retry", "pack.depth"):
        assert needle in section, needle
    readme = (root / "README.md").read_text()
    for needle in ("gc.auto_loose", "gc.auto_packs", "repack"):
        assert needle in readme, needle
    from rnstore.config import SETTINGS
    assert SETTINGS["gc.auto_loose"].default in section and SETTINGS["gc.auto_packs"].default in section


def test_a_dead_base_in_a_merged_pack_goes_with_the_repack(tmp_path):
    """The newest snapshot forgotten: its file, the base of the older
    versions' deltas, is dead but spared by the sweep while they need it; the repack
    moves them out and deletes it in the same gc, not one gc later."""
    from rnstore import plumbing
    repo = make_repo(tmp_path / "ws")
    repo.config.set("gc.auto_packs", "2", durable=False)  # every pack merged
    snaps = history(repo, 3)
    repo.gc()
    store = repo.store
    def notes(snap):
        return next(e.id for e in store.get_tree(store.get_snapshot(snap).tree).entries if e.name == b"notes.txt")
    newest, older = notes(snaps[-1]), notes(snaps[-2])
    assert store.delta_base(older) == newest
    repo.forget([snaps[-1]])
    plumbing.update_ref(repo, "refs/heads/main", snaps[-2])
    # loose objects (a repack merges the pack), the file back as the kept snapshot has it
    commit(repo, {"other.txt": "something new\n", "notes.txt": "".join(LINES[:41])})
    stats = Repository.open(repo.root).gc(prune="now")
    assert not Repository.open(repo.root).store.has(newest)
    assert stats.packs_after == 1 and stats.deleted_objects >= 3
    assert Repository.open(repo.root).fsck().ok
    assert every_payload(Repository.open(repo.root))
