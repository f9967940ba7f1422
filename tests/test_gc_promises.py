"""gc keeps FORMAT.md's and SPEC's promises where it used not to:

- it deletes nothing while anything a root reaches is missing or
  unreadable, blobs included (a damaged pack hiding blobs stops it);
- a workspace deleted before any gc recorded its roots keeps protecting
  what it may have held for the grace period, counted from when gc first
  finds it gone, whatever the age of its objects."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from rnstore.errors import CorruptStoreError
from rnstore.packs import _TRAILER
from rnstore.repo import Repository
from helpers.porcelain import write_files
from helpers.space import HOUR, age, commit, make_repo, object_files, reachable, run


def every_stored_id(repo) -> set[str]:
    return {o.id for o in repo.store.stored_objects()}


def test_gc_refuses_when_a_damaged_pack_hides_blobs_a_root_reaches(tmp_path):
    repo = make_repo(tmp_path / "ws")
    write_files(repo.root, {f"f{i:03}.txt": f"file {i}\n" for i in range(80)})
    repo.add([repo.root])  # 80 blobs: one pack
    snap = repo.commit("m").id
    packs = list((repo.store_root / "objects" / "pack").glob("*.pack"))
    assert len(packs) == 1
    pack = packs[0]
    data = bytearray(pack.read_bytes())
    index_offset = _TRAILER.unpack(bytes(data[-_TRAILER.size:]))[0]
    data[index_offset + 40] ^= 0x01  # one byte of the index: the pack reads as damaged
    pack.write_bytes(bytes(data))
    garbage = repo.store.put("blob", b"nobody's\n")
    age([repo.store.path_for(garbage)], 2 * HOUR)
    files_before = sorted(p.name for p in (repo.store_root / "objects").rglob("*"))

    result = run(["gc", "--prune", "now"], cwd=repo.root)
    assert result.returncode == 1, result.stderr
    assert "gc deleted nothing" in result.stderr and "missing" in result.stderr
    assert sorted(p.name for p in (repo.store_root / "objects").rglob("*")) == files_before
    assert garbage in object_files(repo.store_root)
    # the library says the same (opened afresh: `repo` read the pack before it was damaged)
    with pytest.raises(CorruptStoreError, match="missing"):
        Repository.open(repo.root).gc(prune="now")
    assert garbage in object_files(repo.store_root) and snap in every_stored_id(repo)


def test_gc_refuses_when_a_blob_a_root_reaches_is_missing(tmp_path):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"a.txt": "a\n", "b.txt": "b\n"})
    blob = [oid for oid in reachable(repo, repo.refs.head()[1]) if repo.store.header(oid)[0] == "blob"][0]
    repo.store.path_for(blob).unlink()
    garbage = repo.store.put("blob", b"nobody's\n")
    age([repo.store.path_for(garbage)], 2 * HOUR)
    result = run(["gc", "--prune", "now"], cwd=repo.root)
    assert result.returncode == 1 and blob in result.stderr, result.stderr
    assert garbage in object_files(repo.store_root)


def test_a_workspace_deleted_before_any_gc_is_protected_for_the_grace_period_from_first_seen_gone(tmp_path):
    store = tmp_path / "store"
    a = make_repo(tmp_path / "a", objects=store)
    b = make_repo(tmp_path / "b", objects=store)
    commit(a, {"a.txt": "a\n"})
    b1 = commit(b, {"b.txt": "only in b\n" * 40, "sub/c.txt": "c\n"})
    b_objects = reachable(b, b1)
    # registered by an older version: no roots recorded at registration either
    registration = b.registration_path()
    registration.with_name(registration.name + ".roots").unlink(missing_ok=True)
    shutil.rmtree(b.root)  # before any gc read its roots
    # its objects are older than the grace period; its registration is recent
    age([p for p in (store / "objects").rglob("*") if p.is_file()], 2 * HOUR)

    first = run(["gc", "--json"], cwd=a.root)  # default grace: 1h
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["deleted_objects"] == 0
    assert b_objects <= set(object_files(store)), "deleted in the run that promised protection"
    assert "gone" in first.stderr
    assert a.gc().deleted_objects == 0  # still within the grace period
    # gone for longer than the grace period: released
    registration.with_name(registration.name + ".gone").write_text(f"{time.time() - 2 * HOUR}\n")
    assert a.gc().deleted_objects >= len(b_objects)
    assert not b_objects & set(object_files(store))


def test_a_new_registration_records_the_roots_the_workspace_holds(tmp_path):
    """A copy registers at its first command with the roots it already holds
    (its original's snapshots), so that gc protects them even if the copy
    is deleted before any gc reads it, whatever their age."""
    store = tmp_path / "store"
    a = make_repo(tmp_path / "a", objects=store)
    b = make_repo(tmp_path / "b", objects=store)
    b1 = commit(b, {"b.txt": "b\n" * 40})
    copy = tmp_path / "b-copy"
    shutil.copytree(b.root, copy, symlinks=True)
    shutil.rmtree(b.root)
    write_files(copy, {"new.txt": "n\n"})
    Repository.open(copy).add([copy])  # registers the copy
    registration = Repository.open(copy).registration_path()
    recorded = registration.with_name(registration.name + ".roots").read_text()
    assert f"s {b1}" in recorded
    age([p for p in (store / "objects").rglob("*") if p.is_file()], 2 * HOUR)
    shutil.rmtree(copy)
    a.gc()  # default grace: both gone, first seen now
    assert reachable(a, b1) <= set(object_files(store))
