"""gc and du on one workspace: dedup, exact freeing, refusal on unreadable
roots, the grace period, --dry-run, --auto and leftovers of crashed writers.

Set-up goes through the library (fast); the commands under test run through
real subprocesses as well as through the Python API."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from helpers.porcelain import write_files
from helpers.space import (HOUR, age, age_objects, cli_json, commit, disk_bytes, make_repo, object_files,
                           reachable, run)
from rnstore.errors import CorruptStoreError
from rnstore.fsutil import TMP_PREFIX
from rnstore.reachcache import CACHE_FILE
from rnstore.repo import Repository


# -- dedup ----------------------------------------------------------------------------------

def test_one_file_in_three_snapshots_and_two_paths_is_one_object(tmp_path):
    repo = make_repo(tmp_path / "ws")
    same = b"the same bytes\n" * 100
    commit(repo, {"a.txt": same, "deep/er/b.txt": same, "x": "1"})
    commit(repo, {"x": "2"})
    commit(repo, {"x": "3", "c.txt": same})
    blob = hashlib.sha256(same).hexdigest()
    files = object_files(repo.store_root)
    assert blob in files
    assert sum(1 for oid in files if oid == blob) == 1
    assert len(list((repo.store_root / "objects" / blob[:2]).glob(blob[2:]))) == 1

    stats = repo.du()
    # stored once, referenced 2 + 2 + 3 times
    assert stats.store.logical_bytes == len(same) + 3
    assert stats.store.referenced_bytes == 7 * len(same) + 3
    assert stats.store.dedup_ratio == pytest.approx((7 * len(same) + 3) / (len(same) + 3))
    assert [s.files for s in stats.snapshots] == [4, 3, 3]
    assert all(s.logical_bytes >= 2 * len(same) for s in stats.snapshots)


# -- forget + gc frees exactly the exclusive objects, and du agrees --------------------------

def test_forget_then_gc_frees_exactly_the_exclusive_bytes_du_predicted(tmp_path):
    repo = make_repo(tmp_path / "ws")
    ws = repo.root
    # gc's repack would store the kept versions of run.py as deltas, freeing more than du predicts
    assert run(["config", "pack.deltas", "false"], cwd=ws).returncode == 0
    shared = "kept in every snapshot\n" * 50
    s1 = commit(repo, {"common.txt": shared, "run.py": "v1\n" * 40, "out/log": "one\n"}, "one")
    s2 = commit(repo, {"run.py": "v2 only here\n" * 60, "out/log": "two\n" * 9}, "two")
    s3 = commit(repo, {"run.py": "v3\n" * 70, "out/log": "three\n"}, "three")

    before = cli_json(["du"], ws)
    assert before["store"]["stored_bytes"] == disk_bytes(repo.store_root)
    assert before["store"]["reclaimable_bytes"] == 0
    assert set(before["store"]) >= {"objects", "blobs", "trees", "snapshots", "stored_bytes",
                                    "logical_bytes", "referenced_bytes", "reclaimable_bytes",
                                    "dedup_ratio", "compression_ratio"}
    rows = {row["id"]: row for row in before["snapshots"]}
    assert [row["id"] for row in before["snapshots"]] == [s3, s2, s1]
    for row in before["snapshots"]:
        assert set(row) >= {"id", "time", "message", "tags", "files", "logical_bytes", "exclusive_bytes"}
    exclusive = rows[s2]["exclusive_bytes"]
    only_s2 = reachable(repo, s2) - reachable(repo, s1) - reachable(repo, s3)
    files = object_files(repo.store_root)
    assert exclusive == sum(len(files[oid]) for oid in only_s2) > 0

    result = run(["forget", s2[:10]], cwd=ws)
    assert result.returncode == 0, result.stderr
    assert s2[:12] in result.out
    middle = cli_json(["du"], ws)
    assert middle["store"]["reclaimable_bytes"] == exclusive
    assert [row["id"] for row in middle["snapshots"]] == [s3, s1]

    on_disk = disk_bytes(repo.store_root)
    gc = cli_json(["gc", "--prune", "now"], ws)
    assert gc["dry_run"] is False
    assert gc["freed_bytes"] == exclusive
    assert gc["deleted_objects"] == len(only_s2)
    assert gc["prune"] == 0
    assert disk_bytes(repo.store_root) == on_disk - exclusive
    assert set(object_files(repo.store_root)) == set(files) - only_s2

    after = cli_json(["du"], ws)
    assert after["store"]["stored_bytes"] == on_disk - exclusive == disk_bytes(repo.store_root)
    assert after["store"]["reclaimable_bytes"] == 0
    for snapshot in (s1, s3):
        for oid in reachable(repo, snapshot):
            repo.store.verify(oid)
    # log from HEAD ends at the collected parent, with a note, and fsck is clean
    log = run(["log", "--oneline"], cwd=ws)
    assert log.returncode == 0 and s2[:12] in log.stderr
    assert run(["fsck"], cwd=ws).returncode == 0


def test_a_forgotten_snapshot_named_by_a_tag_or_detached_head_is_kept(tmp_path):
    repo = make_repo(tmp_path / "ws")
    s1 = commit(repo, {"f": "one\n"})
    repo.tag("keep-me", s1)
    commit(repo, {"f": "two\n"})
    result = run(["forget", "keep-me"], cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert "still kept by tag keep-me" in result.out + result.stderr
    assert s1 not in set(repo.journal)
    stats = repo.gc(prune="now")
    assert stats.deleted_objects == 0
    assert reachable(repo, s1) <= set(object_files(repo.store_root))
    # a detached HEAD is a root as well
    s3 = commit(repo, {"f": "three\n"})
    repo.refs.update("HEAD", s3, follow_head=False)  # detach at s3
    repo.refs.update("refs/heads/main", s1)
    repo.forget([s3])
    assert s3 not in set(repo.journal)
    assert repo.gc(prune="now").deleted_objects == 0
    assert reachable(repo, s3) <= set(object_files(repo.store_root))


def test_staged_but_uncommitted_files_are_kept(tmp_path):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"a": "a\n"})
    write_files(repo.root, {"new.txt": "staged, not committed\n"})
    repo.add(["new.txt"], cwd=repo.root)
    blob = hashlib.sha256(b"staged, not committed\n").hexdigest()
    assert repo.gc(prune="now").deleted_objects == 0
    assert blob in object_files(repo.store_root)


# -- grace period, dry run, temporary files, --auto --------------------------------------------

def _garbage(repo: Repository, count: int = 3) -> list[str]:
    """Unreachable blobs, as a crashed `add` would leave."""
    return [repo.store.put("blob", f"garbage {n}\n".encode()) for n in range(count)]


def test_grace_period_spares_young_unreachable_objects(tmp_path):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"a": "a\n"})
    old = _garbage(repo)
    age([repo.store.path_for(oid) for oid in old], 2 * HOUR)
    young = repo.store.put("blob", b"written a moment ago\n")
    stats = repo.gc()  # default gc.prune = 1h
    assert stats.deleted_objects == 3 and stats.young_objects == 1
    files = object_files(repo.store_root)
    assert young in files and not set(old) & set(files)
    # a longer grace period keeps what is younger than it
    again = _garbage(repo)
    age([repo.store.path_for(oid) for oid in again], 2 * HOUR)
    assert repo.gc(prune="3h").deleted_objects == 0
    assert repo.gc(prune="90m").deleted_objects == 3


def test_dry_run_deletes_nothing_and_reports_what_gc_would(tmp_path):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"a": "a\n"})
    garbage = _garbage(repo)
    temp = repo.store.root / f"{TMP_PREFIX}object-1-dead"
    temp.write_bytes(b"half an object")
    before = object_files(repo.store_root)
    dry = cli_json(["gc", "--dry-run", "--prune", "now"], repo.root)
    assert dry["dry_run"] is True and dry["deleted_objects"] == 3
    assert object_files(repo.store_root) == before and temp.exists()
    assert not (repo.store_root / "gc.last").exists()
    real = repo.gc(prune="now")
    assert (real.deleted_objects, real.freed_bytes) == (dry["deleted_objects"], dry["freed_bytes"])
    assert not set(garbage) & set(object_files(repo.store_root))


def test_stale_temporary_files_go_and_young_ones_stay(tmp_path):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"a": "a\n"})
    fanout = next(p for p in repo.store.root.glob("??"))
    stale = [repo.store.root / f"{TMP_PREFIX}object-11-aaaa", fanout / f"{TMP_PREFIX}object-12-bbbb"]
    young = [repo.store.root / f"{TMP_PREFIX}object-13-cccc", fanout / f"{TMP_PREFIX}object-14-dddd"]
    for path in stale + young:
        path.write_bytes(b"x" * 10)
    age(stale, 2 * HOUR)
    result = run(["gc", "--json"], cwd=repo.root)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["deleted_temp_files"] == 2 and document["freed_temp_bytes"] == 20
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in young)
    assert repo.gc(prune="now").deleted_temp_files == 2
    assert not any(p.exists() for p in young)


def test_auto_runs_only_when_the_interval_has_passed(tmp_path):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"a": "a\n"})
    first = cli_json(["gc", "--auto"], repo.root)
    assert first["skipped"] is False
    assert (repo.store_root / "gc.last").exists()
    _garbage(repo)
    age_objects(repo, 2 * HOUR)
    second = run(["gc", "--auto", "--prune", "now"], cwd=repo.root)
    assert second.returncode == 0 and "nothing to do" in second.stderr
    assert repo.gc(auto=True, prune="now").skipped
    assert len(object_files(repo.store_root)) == 6  # 3 of the commit + 3 garbage
    # eight days later (gc.interval defaults to 7d)
    (repo.store_root / "gc.last").write_text(f"{time.time() - 8 * 86400}\n")
    stats = repo.gc(auto=True, prune="now")
    assert not stats.skipped and stats.deleted_objects == 3
    # a shorter interval from the config
    repo.config.set("gc.interval", "1s", durable=False)
    (repo.store_root / "gc.last").write_text(f"{time.time() - 5}\n")
    assert not Repository.open(repo.root).gc(auto=True).skipped


def test_gc_output_is_one_summary_line_and_quiet_prints_nothing(tmp_path):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"a": "a\n"})
    _garbage(repo)
    result = run(["gc", "--prune", "now"], cwd=repo.root)
    assert result.returncode == 0
    assert result.stdout == b""
    assert result.stderr.count("\n") == 1 and "deleted 3 objects" in result.stderr
    quiet = run(["gc", "-q", "--no-progress"], cwd=repo.root)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"", "")
    bad = run(["gc", "--prune", "soon"], cwd=repo.root)
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


# -- unreadable roots: gc deletes nothing ----------------------------------------------------

def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def _corrupt_live_snapshot(repo, snaps):
    _flip(repo.store.path_for(snaps["live"]))


def _corrupt_tree(repo, snaps):
    tree = repo.store.get_snapshot(snaps["live"]).tree
    sub = next(e.id for e in repo.store.get_tree(tree).entries if e.mode == "040000")
    _flip(repo.store.path_for(sub))


def _missing_tree(repo, snaps):
    tree = repo.store.get_snapshot(snaps["live"]).tree
    os.unlink(repo.store.path_for(tree))


def _corrupt_index(repo, snaps):
    data = bytearray(repo.index_path.read_bytes())
    data[20] ^= 0x01
    repo.index_path.write_bytes(bytes(data))


def _corrupt_ref(repo, snaps):
    (repo.dotdir / "refs" / "tags" / "v1").write_text("not an id\n")


def _corrupt_head(repo, snaps):
    (repo.dotdir / "HEAD").write_text("garbage\n")


def _head_names_an_invalid_ref(repo, snaps):
    (repo.dotdir / "HEAD").write_text("ref: refs/heads/../../evil\n")


def _ref_not_text(repo, snaps):
    (repo.dotdir / "refs" / "tags" / "v1").write_bytes(b"\xff\xfe\n")


def _ref_to_missing_snapshot(repo, snaps):
    os.unlink(repo.store.path_for(snaps["tagged"]))


@pytest.mark.parametrize("damage", [
    _corrupt_live_snapshot, _corrupt_tree, _missing_tree, _corrupt_index, _corrupt_ref,
    _corrupt_head, _head_names_an_invalid_ref, _ref_not_text, _ref_to_missing_snapshot,
], ids=lambda f: f.__name__.strip("_"))
def test_gc_deletes_nothing_when_a_root_cannot_be_read(tmp_path, damage):
    repo = make_repo(tmp_path / "ws")
    tagged = commit(repo, {"src/a.py": "a = 1\n", "b": "b\n"}, "tagged")
    repo.tag("v1", tagged)
    forgotten = commit(repo, {"src/a.py": "a = 2\n"}, "forgotten")
    live = commit(repo, {"src/a.py": "a = 3\n", "src/sub/c": "c\n"}, "live")
    repo.refs.update("refs/heads/main", tagged)  # `live` is only in the journal now
    repo.forget([forgotten])
    _garbage(repo)
    age_objects(repo, 2 * HOUR)
    # Without the reachability cache, where commit left checked copies of its
    # trees and snapshots (test_reachcache.py: gc may then run on them)
    (repo.store_root / CACHE_FILE).unlink()
    damage(repo, {"tagged": tagged, "forgotten": forgotten, "live": live})
    before = object_files(repo.store_root)

    result = run(["gc", "--prune", "now"], cwd=repo.root)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: gc deleted nothing")
    assert object_files(repo.store_root) == before
    with pytest.raises(CorruptStoreError):
        Repository.open(repo.root).gc(prune="now")
    with pytest.raises(CorruptStoreError):
        Repository.open(repo.root).gc()
    assert object_files(repo.store_root) == before
    assert not (repo.store_root / "gc.last").exists()


def test_a_missing_parent_does_not_stop_gc(tmp_path):
    repo = make_repo(tmp_path / "ws")
    first = commit(repo, {"f": "1\n"})
    commit(repo, {"f": "2\n"})
    repo.forget([first])
    assert repo.gc(prune="now").deleted_objects == 3
    assert first not in object_files(repo.store_root)
    assert repo.gc(prune="now").deleted_objects == 0
    assert repo.fsck().ok


# -- du --------------------------------------------------------------------------------------

def test_du_table_and_rev_selection(tmp_path):
    repo = make_repo(tmp_path / "ws")
    s1 = commit(repo, {"a": "x" * 1000}, "first run")
    repo.tag("paper", s1)
    s2 = commit(repo, {"a": "y" * 1000}, "second run")
    table = run(["du"], cwd=repo.root)
    assert table.returncode == 0, table.stderr
    text = table.out
    for word in ("first run", "second run", "paper", s1[:12], s2[:12], "dedup", "compression",
                 "space saving", "%"):
        assert word in text, word
    only = cli_json(["du", "paper"], repo.root)
    assert [row["id"] for row in only["snapshots"]] == [s1]
    assert only["snapshots"][0]["tags"] == ["paper"]
    assert only["snapshots"][0]["logical_bytes"] == 1000
    # s1 is tagged and live: one unit; its blob, tree and snapshot are its own
    assert only["snapshots"][0]["exclusive_bytes"] == sum(
        len(object_files(repo.store_root)[oid]) for oid in reachable(repo, s1))
    unknown = run(["du", "nope"], cwd=repo.root)
    assert unknown.returncode == 2


def test_du_refuses_when_a_root_is_corrupt(tmp_path):
    repo = make_repo(tmp_path / "ws")
    snapshot = commit(repo, {"a": "a\n"})
    (repo.store_root / CACHE_FILE).unlink()  # commit's checked copy of the tree would stand in for it
    _flip(repo.store.path_for(repo.store.get_snapshot(snapshot).tree))
    result = run(["du", "--json"], cwd=repo.root)
    assert result.returncode == 1 and result.stderr.startswith("error:")
