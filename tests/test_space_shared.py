"""gc across a shared object store: every registered workspace's roots are
protected, a workspace whose folder is gone protects what it held for the
grace period, then (at once with --prune now) its registration goes and gc
says so; a tag in one workspace keeps another's snapshot alive."""

from __future__ import annotations

import json
import hashlib
import shutil
import time
from pathlib import Path

from rnstore.repo import Repository
from helpers.space import HOUR, age, commit, make_repo, object_files, reachable, run

def shared_pair(tmp_path: Path) -> tuple[Path, Repository, Repository]:
    store = tmp_path / "store"
    a = make_repo(tmp_path / "a", objects=store)
    b = make_repo(tmp_path / "b", objects=store)
    return store, a, b


def registration_of(repo: Repository) -> Path:
    return repo.registration_path()


def age_store(store: Path, seconds: float) -> None:
    """Everything in the store (objects, registrations, gc's notes) `seconds` old."""
    age([p for p in store.rglob("*") if p.is_file()], seconds)


def test_shared_store_keeps_every_workspaces_roots(tmp_path):
    store, a, b = shared_pair(tmp_path)
    common = "shared between workspaces\n" * 20
    a1 = commit(a, {"common.txt": common, "a.txt": "only a\n"})
    b1 = commit(b, {"common.txt": common, "b.txt": "only b\n"})
    b2 = commit(b, {"b.txt": "only b, second\n"})
    # identical files are stored once across both workspaces
    blob = hashlib.sha256(common.encode()).hexdigest()
    assert list(object_files(store)).count(blob) == 1
    garbage = a.store.put("blob", b"nobody's\n")
    age_store(store, 2 * HOUR)

    result = run(["gc", "--prune", "now", "--json"], cwd=a.root)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["deleted_objects"] == 1
    files = object_files(store)
    assert garbage not in files
    for repo, snapshot in ((a, a1), (b, b1), (b, b2)):
        assert reachable(repo, snapshot) <= set(files)
    # and from b: the same
    assert b.gc(prune="now").deleted_objects == 0
    # du from a counts b's snapshots in the store totals, lists only a's own
    du = a.du()
    assert [s.id for s in du.snapshots] == [a1]
    assert du.store.live_snapshots == 3 and du.store.reclaimable_bytes == 0
    assert a.fsck().ok and not a.fsck().dangling


def test_a_gone_workspace_protects_until_the_grace_period_then_is_released(tmp_path):
    store, a, b = shared_pair(tmp_path)
    # with deltas, gc's repack stores a's root tree and snapshot as deltas against b's newer
    # ones, which then stay as their bases: this test is about what the registration protects
    for repo in (a, b):
        assert run(["config", "pack.deltas", "false"], cwd=repo.root).returncode == 0
        repo.config.set("pack.deltas", "false", durable=False)
    commit(a, {"a.txt": "a\n"})
    b1 = commit(b, {"b.txt": "only in b\n" * 30, "sub/c": "c\n"})
    b_objects = reachable(b, b1)
    a.gc()  # reads b while it is alive and records its roots
    shutil.rmtree(b.root)
    age_store(store, 2 * HOUR)  # b's objects are old: only b's registration protects them

    first = run(["gc"], cwd=a.root)  # default grace: 1h
    assert first.returncode == 0, first.stderr
    assert str(b.root) in first.stderr and "gone" in first.stderr
    assert b_objects <= set(object_files(store))
    assert registration_of(b).exists()
    gone_marker = registration_of(b).with_name(registration_of(b).name + ".gone")
    assert gone_marker.exists()

    # still within the grace period: protected
    assert a.gc().deleted_objects == 0
    # gone for longer than the grace period: released, and gc says so
    gone_marker.write_text(f"{time.time() - 2 * HOUR}\n")
    result = run(["gc", "--json"], cwd=a.root)
    assert result.returncode == 0, result.stderr
    assert "registration removed" in result.stderr and str(b.root) in result.stderr
    stats = json.loads(result.stdout)
    assert stats["deleted_objects"] == len(b_objects)
    assert not b_objects & set(object_files(store))
    assert not registration_of(b).exists() and not gone_marker.exists()
    assert a.fsck().ok


def test_a_gone_workspace_never_seen_by_gc_protects_what_it_wrote(tmp_path):
    store, a, b = shared_pair(tmp_path)
    commit(a, {"a.txt": "a\n"})
    registration = registration_of(b)
    age([registration, registration.with_name(registration.name + ".roots")], 3 * HOUR)  # b registered 3h ago ...
    b1 = commit(b, {"b.txt": "b\n"})
    b_objects = reachable(b, b1)
    age([b.store.path_for(oid) for oid in b_objects], 2 * HOUR)  # ... committed 2h ago
    shutil.rmtree(b.root)
    stats = a.gc()
    assert any(ws.state == "gone" and not ws.released for ws in stats.workspaces)
    assert b_objects <= set(object_files(store))


def test_prune_now_releases_a_gone_workspace_at_once(tmp_path):
    store, a, b = shared_pair(tmp_path)
    commit(a, {"a.txt": "a\n"})
    b1 = commit(b, {"b.txt": "only in b\n"})
    b_objects = reachable(b, b1)
    shutil.rmtree(b.root)
    dry = run(["gc", "--prune", "now", "--dry-run"], cwd=a.root)
    assert dry.returncode == 0 and "would be removed" in dry.stderr
    assert registration_of(b).exists() and b_objects <= set(object_files(store))

    result = run(["gc", "--prune", "now"], cwd=a.root)
    assert result.returncode == 0, result.stderr
    assert f"workspace {b.root} is gone" in result.stderr
    assert not b_objects & set(object_files(store))
    assert not registration_of(b).exists()


def test_a_tag_in_one_workspace_keeps_anothers_snapshot_after_it_is_gone(tmp_path):
    store, a, b = shared_pair(tmp_path)
    commit(a, {"a.txt": "a\n"})
    b1 = commit(b, {"model.py": "handed on\n"}, "the one to keep")
    b2 = commit(b, {"model.py": "not kept\n"}, "dropped")
    tagged = run(["tag", "from-b", b1], cwd=a.root)
    assert tagged.returncode == 0, tagged.stderr
    doomed = reachable(a, b2) - reachable(a, b1)
    shutil.rmtree(b.root)
    assert a.gc(prune="now").deleted_objects == len(doomed)
    files = set(object_files(store))
    assert reachable(a, b1) <= files and b2 not in files
    assert run(["fsck"], cwd=a.root).returncode == 0
    du = a.du(["from-b"])
    assert du.snapshots[0].id == b1 and du.snapshots[0].tags == ["from-b"]
    assert not du.snapshots[0].live


def test_an_unreadable_registered_workspace_stops_gc(tmp_path):
    store, a, b = shared_pair(tmp_path)
    commit(a, {"a.txt": "a\n"})
    commit(b, {"b.txt": "b\n"})
    a.store.put("blob", b"garbage\n")
    (b.dotdir / "index").write_bytes(b"rnindex 1\nnot an index")
    before = object_files(store)
    result = run(["gc", "--prune", "now"], cwd=a.root)
    assert result.returncode == 1 and "index" in result.stderr and str(b.root) in result.stderr
    assert object_files(store) == before


def test_a_workspace_made_again_with_another_store_is_dropped(tmp_path):
    store, a, b = shared_pair(tmp_path)
    commit(a, {"a.txt": "a\n"})
    registration = registration_of(b)
    shutil.rmtree(b.root)
    Repository.init(b.root, default_ignore=False)  # now with its own store
    stats = a.gc(prune="now")
    assert any(ws.state == "elsewhere" for ws in stats.workspaces)
    assert any("another object store" in note for note in stats.notes)
    assert not registration.exists()
