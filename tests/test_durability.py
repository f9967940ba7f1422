"""FORMAT.md's write rules, checked on the calls a command really makes
(tests/_durability.py records them in process), and what a crash that kept
a name but not its data leaves for the next writer."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from rnstore import store as store_module
from rnstore.objects import BLOB
from rnstore.repo import Repository
from rnstore.store import DiskStore

from _durability import Layout, check_write_rules, record_durability
from helpers.porcelain import ok

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds through /proc")


def new_repo(tmp_path: Path) -> Repository:
    return Repository.init(tmp_path / "ws", default_ignore=False)


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def layout(repo: Repository) -> Layout:
    return Layout(repo.dotdir, repo.store_root / "objects")


def renamed_into(recorder, folder: Path) -> list[str]:
    prefix = str(folder.resolve()) + "/"
    return [e.path for _, e in recorder.ops("rename") if e.path.startswith(prefix)]


def assert_rules_kept(recorder, repo: Repository) -> None:
    problems = check_write_rules(recorder, layout(repo))
    assert problems == [], "\n".join(problems + [f"{i}: {e}" for i, e in enumerate(recorder.events)])


def test_a_commit_of_loose_objects_keeps_the_write_rules(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    write(repo.root, {"a.txt": b"a", "sub/b.txt": b"b"})
    recorder = record_durability(monkeypatch, tmp_path)
    snapshot = repo.snapshot("one").id
    objects = repo.store_root / "objects"
    # blobs, trees and the snapshot went loose; the journal and the branch named it
    assert len(renamed_into(recorder, objects)) == 5
    assert any(e.path.endswith(f"/snapshots/{snapshot}") for _, e in recorder.ops("create"))
    assert renamed_into(recorder, repo.dotdir / "refs" / "heads") == [str((repo.dotdir / "refs/heads/main").resolve())]
    assert_rules_kept(recorder, repo)


def test_a_commit_past_the_syncfs_threshold_keeps_the_write_rules(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "SYNCFS_THRESHOLD", 2)  # syncfs from 3 objects on
    repo = new_repo(tmp_path)
    write(repo.root, {"a.txt": b"a", "sub/b.txt": b"b"})
    recorder = record_durability(monkeypatch, tmp_path)
    repo.snapshot("one")
    assert len(recorder.ops("syncfs")) >= 2  # the data, then the renames
    assert_rules_kept(recorder, repo)


def test_a_commit_of_a_pack_keeps_the_write_rules(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    write(repo.root, {f"d/f{i:03}.txt": b"file %d\n" % i for i in range(80)})
    recorder = record_durability(monkeypatch, tmp_path)
    repo.snapshot("many")
    assert len(renamed_into(recorder, repo.store_root / "objects" / "pack")) == 1
    assert_rules_kept(recorder, repo)


def test_a_large_blob_streamed_in_keeps_the_write_rules(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    write(repo.root, {"big.bin": os.urandom(store_module.SMALL_FILE + 1)})
    recorder = record_durability(monkeypatch, tmp_path)
    repo.snapshot("big")
    assert_rules_kept(recorder, repo)


def test_put_outside_a_batch_keeps_the_write_rules(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    recorder = record_durability(monkeypatch, tmp_path)
    store = repo.store
    oid = store.put(BLOB, b"alone")
    big = os.urandom(store_module.SMALL_FILE + 1)
    (tmp_path / "big").write_bytes(big)
    assert store.put_file(tmp_path / "big")[0] == hashlib.sha256(big).hexdigest()
    assert len(renamed_into(recorder, repo.store_root / "objects")) == 2
    assert_rules_kept(recorder, repo)
    assert store.get(oid)[1] == b"alone"


def test_a_checkout_keeps_the_write_rules(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    write(repo.root, {"a.txt": b"one", "sub/b.txt": b"b"})
    first = repo.snapshot("one").id
    write(repo.root, {"a.txt": b"two", "c.txt": b"c"})
    repo.snapshot("two")
    recorder = record_durability(monkeypatch, tmp_path)
    repo.checkout(first)
    assert (repo.root / "a.txt").read_bytes() == b"one"
    assert str((repo.dotdir / "index").resolve()) in [e.path for _, e in recorder.ops("rename")]
    assert str((repo.dotdir / "HEAD").resolve()) in [e.path for _, e in recorder.ops("rename")]
    assert_rules_kept(recorder, repo)


def test_gc_rewriting_a_pack_keeps_the_write_rules(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    write(repo.root, {f"keep/f{i:03}.txt": b"keep %d\n" % i for i in range(70)})
    write(repo.root, {f"drop/f{i:03}.txt": b"drop %d\n" % i for i in range(70)})
    first = repo.snapshot("both").id
    for path in (repo.root / "drop").iterdir():
        path.unlink()
    (repo.root / "drop").rmdir()
    repo.snapshot("keep only")
    repo.forget([first])
    [old_pack] = (repo.store_root / "objects" / "pack").glob("*.pack")
    recorder = record_durability(monkeypatch, tmp_path)
    stats = repo.gc(prune="now")
    assert stats.deleted_objects > 70
    # the rewritten pack, and the repack's (the second snapshot's loose objects)
    new_packs = renamed_into(recorder, repo.store_root / "objects" / "pack")
    assert len(new_packs) == 2 and str(old_pack.resolve()) not in new_packs
    assert str(old_pack.resolve()) in [e.path for _, e in recorder.ops("unlink")]
    assert_rules_kept(recorder, repo)  # both durable before what they replace goes


# -- a crash that kept the name and lost the data ----------------------------------------

@pytest.mark.parametrize("size", [100, store_module.SMALL_FILE + 1], ids=["small", "streamed"])
@pytest.mark.parametrize("left", [0, 7, -1], ids=["empty", "head", "all-but-one-byte"])
def test_a_short_object_file_is_stored_again_not_trusted(tmp_path, size, left):
    root = tmp_path / "objects"
    root.mkdir()
    data = os.urandom(size)
    oid = DiskStore(root).put_file(_file(tmp_path, data))[0]
    path = root / oid[:2] / oid[2:]
    whole = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(whole[:left if left >= 0 else len(whole) + left])
    store = DiskStore(root)  # a new process: the fan-out folder is there
    if size <= store_module.SMALL_FILE:
        assert store.put(BLOB, data) == oid
    else:
        assert store.put_file(_file(tmp_path, data))[0] == oid
    assert path.read_bytes() == whole
    assert store.get(oid, limit=size)[1] == data


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "source"
    path.write_bytes(data)
    return path


def test_add_stores_again_a_blob_whose_file_a_crash_emptied(workspace, run_cli):
    (workspace / "a.txt").write_bytes(b"precious\n")
    oid = ok(run_cli(["hash-object", "-w", "a.txt"], cwd=workspace)).out.strip()
    path = workspace / ".rnstore" / "objects" / oid[:2] / oid[2:]
    os.chmod(path, 0o644)
    path.write_bytes(b"")
    ok(run_cli(["add", "a.txt"], cwd=workspace))
    ok(run_cli(["commit", "-m", "one"], cwd=workspace))
    assert ok(run_cli(["show", "HEAD:a.txt"], cwd=workspace)).stdout == b"precious\n"
    ok(run_cli(["fsck"], cwd=workspace))


def test_an_intact_object_is_refreshed_not_rewritten(tmp_path):
    root = tmp_path / "objects"
    root.mkdir()
    oid = DiskStore(root).put(BLOB, b"x" * 1000)
    path = root / oid[:2] / oid[2:]
    os.utime(path, (1_000_000, 1_000_000))
    inode = path.stat().st_ino
    assert DiskStore(root).put(BLOB, b"x" * 1000) == oid
    assert path.stat().st_ino == inode  # the same file, not stored again
    assert path.stat().st_mtime > time.time() - 60  # refreshed (rule 3)


def test_a_repack_makes_its_pack_durable_before_it_removes_what_it_replaces(tmp_path, monkeypatch):
    """FORMAT.md, "Repacking", rule 2: the new pack written under a
    temporary name, fsynced, renamed, its folder fsynced, and only then a
    replaced loose file or pack removed."""
    repo = new_repo(tmp_path)
    write(repo.root, {f"d/f{i:03}.txt": b"file %d\n" % i for i in range(80)})
    repo.snapshot("a pack")
    for i in range(5):
        write(repo.root, {f"small{i}.txt": b"small %d\n" % i})
        repo.snapshot(f"loose {i}")  # loose objects
    repo.config.set("gc.auto_packs", "2", durable=False)  # the pack is merged too
    repo = Repository.open(repo.root)
    pack_folder = str((repo.store_root / "objects" / "pack").resolve())
    recorder = record_durability(monkeypatch, tmp_path)
    stats = repo.gc()
    assert stats.repacked_objects > 80 and stats.packs_after == 1 and stats.loose_after == 0
    [(renamed_at, new_pack)] = [(at, e) for at, e in recorder.ops("rename") if e.path.startswith(pack_folder)]
    removed = [at for at, e in recorder.ops("unlink") if e.path.startswith(str(repo.store_root.resolve()))]
    assert len(removed) > 15  # the loose files and the old pack
    synced = [at for at, e in enumerate(recorder.events)
              if at > renamed_at and (e.op == "syncfs" or (e.op == "fsync" and e.path == pack_folder))]
    assert synced and synced[0] < min(removed), "a replaced copy went before the new pack was durable"
    assert_rules_kept(recorder, repo)
