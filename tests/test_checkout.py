"""checkout: the three forms (switch, `-- PATH`, `--target`), conflicts,
damaged objects and symlinks that must never be written through.

Snapshots are made through the library (fast); the behaviour users see is
checked through the CLI in real subprocesses (exit codes, one `error:` line).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rnstore import codec
from rnstore.checkout import checkout
from rnstore.errors import BadInputError, ConflictError, CorruptObjectError, MissingObjectError
from rnstore.index import RACY_NS
from rnstore.objects import MODE_FILE, MODE_TREE, Snapshot, Tree, TreeEntry
from rnstore.repo import Repository
from helpers.porcelain import failed, ok, picture

NON_UTF8 = b"caf\xe9.txt"


class Link(str):
    """A symlink to create, with this target."""


DIR = object()  # an empty folder


def build(root: Path, spec: dict) -> None:
    """Create `spec` below `root`: path -> bytes | (bytes, 0o755) | Link | DIR."""
    base = os.fsencode(root)
    for name, value in spec.items():
        full = os.path.join(base, os.fsencode(name))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if value is DIR:
            os.makedirs(full, exist_ok=True)
        elif isinstance(value, Link):
            os.symlink(value, full)
        else:
            data, perm = value if isinstance(value, tuple) else (value, 0o644)
            with open(full, "wb") as fh:
                fh.write(data)
            os.chmod(full, perm)


def snapshot_of(repo: Repository, message: str = "m") -> str:
    repo.add(["."], cwd=repo.root)
    return repo.commit(message, allow_empty=True).id


def dotdir_state(repo: Repository) -> tuple[bytes, bytes]:
    return (repo.dotdir / "HEAD").read_bytes(), (repo.dotdir / "index").read_bytes()


def porcelain(run_cli, root: Path) -> bytes:
    return ok(run_cli(["status", "--porcelain"], cwd=root)).stdout


def object_file(repo: Repository, oid: str) -> Path:
    return repo.store.path_for(oid)


def blob_id(repo: Repository, data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


BASE = {
    "README.md": b"# experiment\n",
    "train.py": (b"#!/usr/bin/env python\nprint('train')\n", 0o755),
    "src/model.py": b"class Model: pass\n",
    "src/deep/er/leaf.txt": b"leaf\n",
    "link-rel": Link("src/model.py"),
    "link-abs": Link("/etc/hostname"),
    "empty": DIR,
    "nested/empty/folder": DIR,
    NON_UTF8.decode("utf-8", "surrogateescape"): b"non-utf8 name\n",
    "big.bin": bytes(range(256)) * 12_000,  # 3 MB: several chunks
}


@pytest.fixture
def ws(tmp_path) -> Repository:
    """A workspace without fsync (durability is not what these tests check)."""
    Repository.init(tmp_path / "ws", default_ignore=False).config.set("core.fsync", "false")
    return Repository.open(tmp_path / "ws")


# -- --target: round trip and safety ---------------------------------------------------


def test_target_round_trip_is_byte_exact(run_cli, ws, tmp_path):
    build(ws.root, BASE)
    snap = snapshot_of(ws)
    out = tmp_path / "out" / "new"
    result = run_cli(["checkout", snap[:10], "--target", str(out), "--no-progress"], cwd=ws.root)
    ok(result)
    assert picture(out) == picture(ws.root)
    assert os.readlink(out / "link-abs") == "/etc/hostname"
    assert (out / os.fsdecode(NON_UTF8)).read_bytes() == b"non-utf8 name\n"
    assert os.stat(out / "train.py").st_mode & 0o111 == 0o111
    assert not os.stat(out / "README.md").st_mode & 0o111
    assert len(result.stderr.strip().splitlines()) == 1  # one summary line
    assert "Checked out" in result.stderr
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]
    # workspace, HEAD and index untouched
    assert ws.status().clean


def test_target_refuses_differing_files_skips_identical_and_force_overwrites(run_cli, ws, tmp_path):
    build(ws.root, {"a.txt": b"A\n", "b.txt": b"B\n", "sub/c.txt": b"C\n"})
    snap = snapshot_of(ws)
    out = tmp_path / "out"
    build(out, {"a.txt": b"A\n", "b.txt": b"local\n", "extra.txt": b"mine\n"})
    a_stat = os.stat(out / "a.txt")
    before = picture(out)

    err = failed(run_cli(["checkout", snap, "--target", str(out)], cwd=ws.root), 1, "b.txt", "extra.txt")
    assert "a.txt" not in err.replace("extra.txt", "")
    assert picture(out) == before  # nothing written, not even sub/

    ok(run_cli(["checkout", snap, "--target", str(out), "--force"], cwd=ws.root))
    assert (out / "b.txt").read_bytes() == b"B\n"
    assert (out / "sub" / "c.txt").read_bytes() == b"C\n"
    assert not (out / "extra.txt").exists()  # not in the snapshot: removed with --force
    after = os.stat(out / "a.txt")
    assert (after.st_ino, after.st_mtime_ns) == (a_stat.st_ino, a_stat.st_mtime_ns)  # skipped

    result = checkout(ws, snap, target=out)
    assert result.written == [] and sorted(result.skipped) == ["a.txt", "b.txt", "sub/c.txt"]


def test_target_never_writes_through_a_planted_symlink(run_cli, ws, tmp_path):
    build(ws.root, {"sub/file.txt": b"payload\n", "top.txt": b"top\n"})
    snap = snapshot_of(ws)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"precious\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "sub")                     # a folder's place
    os.symlink(outside / "victim.txt", out / "top.txt")  # a file's place

    failed(run_cli(["checkout", snap, "--target", str(out)], cwd=ws.root), 1, "sub", "top.txt")
    assert sorted(os.listdir(outside)) == ["victim.txt"]

    ok(run_cli(["checkout", snap, "--target", str(out), "--force"], cwd=ws.root))
    assert sorted(os.listdir(outside)) == ["victim.txt"]
    assert (outside / "victim.txt").read_bytes() == b"precious\n"
    assert not os.path.islink(out / "sub") and not os.path.islink(out / "top.txt")
    assert (out / "sub" / "file.txt").read_bytes() == b"payload\n"
    assert (out / "top.txt").read_bytes() == b"top\n"


def test_a_snapshot_symlink_is_never_followed_by_a_later_checkout(ws, tmp_path):
    """Snapshot 1 has `d -> outside`; snapshot 2 has a folder `d/`. Checking
    out 1 then 2 (into the workspace or a target) replaces the link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    build(ws.root, {"d": Link(str(outside)), "keep.txt": b"k\n"})
    first = snapshot_of(ws, "link")
    os.unlink(ws.root / "d")
    build(ws.root, {"d/inside.txt": b"inside\n"})
    second = snapshot_of(ws, "folder")

    checkout(ws, first)
    assert os.readlink(ws.root / "d") == str(outside)
    checkout(ws, second)
    assert os.listdir(outside) == []
    assert (ws.root / "d" / "inside.txt").read_bytes() == b"inside\n"
    assert ws.status().clean

    out = tmp_path / "out"
    checkout(ws, first, target=out)
    checkout(ws, second, target=out, force=True)
    assert os.listdir(outside) == []
    assert (out / "d" / "inside.txt").read_bytes() == b"inside\n"


def test_a_crafted_rnstore_entry_is_never_written(ws, tmp_path):
    store = ws.store
    evil_head = store.put("blob", b"ref: refs/heads/evil\n")
    good = store.put("blob", b"fine\n")
    dot = store.put_tree(Tree.from_entries([TreeEntry(b"HEAD", MODE_FILE, evil_head, 21)]))
    root = store.put_tree(Tree.from_entries([
        TreeEntry(b".rnstore", MODE_TREE, dot, 21), TreeEntry(b"ok.txt", MODE_FILE, good, 5)]))
    from rnstore.plumbing import store_snapshot, utc_now
    snap = store_snapshot(ws, Snapshot(root, (), utc_now(), "evil", {}))
    head_before = (ws.dotdir / "HEAD").read_bytes()

    result = checkout(ws, snap, force=True)
    assert result.excluded == [".rnstore/HEAD"]
    assert (ws.dotdir / "HEAD").read_bytes() != b"ref: refs/heads/evil\n"
    assert (ws.root / "ok.txt").read_bytes() == b"fine\n"
    out = tmp_path / "out"
    checkout(ws, snap, target=out)
    assert not (out / ".rnstore").exists()
    assert head_before.startswith(b"ref: ")


# -- switching the workspace -----------------------------------------------------------


@pytest.fixture
def two_snapshots(ws):
    """Snapshot `old` then `new` on main; untracked and ignored files around."""
    build(ws.root, {
        ".rnignore": b"*.log\n",
        "keep.txt": b"same\n",
        "change.txt": b"v1\n",
        "gone.txt": b"only in old\n",
        "old/deep/file.txt": b"old folder\n",
        "link": Link("keep.txt"),
    })
    old = snapshot_of(ws, "old")
    os.unlink(ws.root / "gone.txt")
    os.unlink(ws.root / "old" / "deep" / "file.txt")
    os.rmdir(ws.root / "old" / "deep")
    os.rmdir(ws.root / "old")
    build(ws.root, {
        "change.txt": b"v2, longer\n",
        "new/dir/file.txt": b"new folder\n",
        "run.sh": (b"#!/bin/sh\n", 0o755),
    })
    os.unlink(ws.root / "link")
    os.symlink("change.txt", ws.root / "link")
    new = snapshot_of(ws, "new")
    build(ws.root, {"untracked.txt": b"mine\n", "debug.log": b"ignored\n",
                    "new/untracked-here.txt": b"mine too\n"})
    return ws, old, new


def test_switch_writes_deletes_moves_head_and_leaves_status_clean(run_cli, two_snapshots):
    ws, old, new = two_snapshots
    result = run_cli(["checkout", old[:12], "--no-progress"], cwd=ws.root)
    ok(result)
    assert "detached" in result.stderr and len(result.stderr.splitlines()) == 1
    assert (ws.dotdir / "HEAD").read_text().strip() == old
    state = picture(ws.root)
    assert state[b"change.txt"] == ("file", False, b"v1\n")
    assert state[b"gone.txt"] == ("file", False, b"only in old\n")
    assert state[b"old/deep/file.txt"] == ("file", False, b"old folder\n")
    assert state[b"link"] == ("link", b"keep.txt")
    assert b"run.sh" not in state and b"new/dir" not in state  # emptied folder removed
    assert state[b"new/untracked-here.txt"] == ("file", False, b"mine too\n")  # kept with its folder
    assert state[b"untracked.txt"] == ("file", False, b"mine\n")
    assert state[b"debug.log"] == ("file", False, b"ignored\n")
    assert porcelain(run_cli, ws.root) == b"?? new/untracked-here.txt\n?? untracked.txt\n"

    result = run_cli(["checkout", "main"], cwd=ws.root)
    ok(result)
    assert "Switched to branch 'main'" in result.stderr
    assert (ws.dotdir / "HEAD").read_text() == "ref: refs/heads/main\n"
    state = picture(ws.root)
    assert state[b"change.txt"] == ("file", False, b"v2, longer\n")
    assert state[b"run.sh"] == ("file", True, b"#!/bin/sh\n")
    assert state[b"link"] == ("link", b"change.txt")
    assert b"gone.txt" not in state and b"old" not in state  # old/deep and old removed
    assert porcelain(run_cli, ws.root) == b"?? new/untracked-here.txt\n?? untracked.txt\n"


def test_switch_to_a_tag_detaches_and_a_branch_attaches(ws, two_snapshots):
    ws, old, new = two_snapshots
    ws.tag("v1", old)
    result = checkout(ws, "v1")
    assert result.branch is None and result.head_moved
    assert ws.refs.head() == (None, old)
    ws.refs.update("refs/heads/feature", old)
    result = checkout(ws, "feature")
    assert ws.refs.head() == ("refs/heads/feature", old)
    assert result.written == [] and result.deleted == []  # same snapshot: nothing to do
    checkout(ws, "main")
    assert ws.refs.head() == ("refs/heads/main", new)
    assert ws.status().clean is False  # only the untracked files
    assert not ws.status().staged and not ws.status().unstaged


def test_index_stat_cache_stays_warm_for_unchanged_files(two_snapshots):
    ws, old, new = two_snapshots
    # past the racy window, add records keep.txt's stat (else whether the
    # index holds one depends on how fast the snapshots above were made)
    time.sleep(2 * RACY_NS / 1e9)
    ws.add(["keep.txt"], cwd=ws.root)
    before = ws.read_index().get(b"keep.txt")
    assert before.stat is not None
    checkout(ws, old)
    after = ws.read_index().get(b"keep.txt")
    assert after == before  # an unchanged file keeps its entry, stat included
    written = ws.read_index().get(b"change.txt")
    assert (written.id, written.size) == (blob_id(ws, b"v1\n"), 3)


def test_conflicts_change_nothing_and_force_proceeds(run_cli, two_snapshots):
    ws, old, new = two_snapshots
    (ws.root / "change.txt").write_bytes(b"uncommitted work\n")
    (ws.root / "gone.txt").write_bytes(b"untracked, in the way\n")
    before, dot_before = picture(ws.root), dotdir_state(ws)

    err = failed(run_cli(["checkout", old], cwd=ws.root), 1, "change.txt", "gone.txt", "--force")
    assert "Traceback" not in err
    assert picture(ws.root) == before and dotdir_state(ws) == dot_before

    with pytest.raises(ConflictError) as caught:
        checkout(ws, old)
    assert sorted(caught.value.paths) == ["change.txt", "gone.txt"]

    ok(run_cli(["checkout", old, "--force"], cwd=ws.root))
    assert (ws.root / "change.txt").read_bytes() == b"v1\n"
    assert (ws.root / "gone.txt").read_bytes() == b"only in old\n"
    assert porcelain(run_cli, ws.root) == b"?? new/untracked-here.txt\n?? untracked.txt\n"


def test_an_identical_untracked_file_is_no_conflict(two_snapshots):
    ws, old, new = two_snapshots
    (ws.root / "gone.txt").write_bytes(b"only in old\n")
    result = checkout(ws, old)
    assert "gone.txt" in result.skipped
    assert ws.read_index().get(b"gone.txt") is not None


def test_staged_changes_and_deleted_tracked_files_conflict(two_snapshots):
    ws, old, new = two_snapshots
    (ws.root / "keep.txt").write_bytes(b"staged edit\n")
    ws.add(["keep.txt"], cwd=ws.root)
    (ws.root / "keep.txt").write_bytes(b"same\n")  # workspace matches both snapshots again
    with pytest.raises(ConflictError) as caught:
        checkout(ws, old)
    assert caught.value.paths == ["keep.txt"]
    # a tracked file that was edited where REV deletes it
    checkout(ws, "main", force=True)
    (ws.root / "run.sh").write_bytes(b"#!/bin/sh\necho edited\n")
    with pytest.raises(ConflictError) as caught:
        checkout(ws, old)
    assert caught.value.paths == ["run.sh"]
    assert (ws.root / "run.sh").exists()


def test_untracked_files_in_a_folder_where_a_file_goes_conflict(ws):
    build(ws.root, {"thing": b"a file\n"})
    first = snapshot_of(ws)
    os.unlink(ws.root / "thing")
    build(ws.root, {"thing/tracked.txt": b"t\n"})
    snapshot_of(ws)
    (ws.root / "thing" / "untracked.txt").write_bytes(b"mine\n")
    with pytest.raises(ConflictError) as caught:
        checkout(ws, first)
    assert caught.value.paths == ["thing/untracked.txt"]
    os.unlink(ws.root / "thing" / "untracked.txt")
    checkout(ws, first)  # only tracked content there: the folder goes, the file comes
    assert (ws.root / "thing").read_bytes() == b"a file\n"
    assert ws.status().clean


def test_a_planted_symlink_in_the_workspace_is_never_written_through(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    build(ws.root, {"data/file.txt": b"tracked\n"})
    snap = snapshot_of(ws)
    (ws.root / "data" / "file.txt").unlink()
    (ws.root / "data").rmdir()
    os.symlink(outside, ws.root / "data")
    with pytest.raises(ConflictError) as caught:
        checkout(ws, snap)
    assert caught.value.paths == ["data"]
    checkout(ws, snap, force=True)
    assert os.listdir(outside) == []
    assert not os.path.islink(ws.root / "data")
    assert (ws.root / "data" / "file.txt").read_bytes() == b"tracked\n"


@pytest.mark.parametrize("swapped", ["data", "data/deep"])
def test_a_folder_swapped_for_a_symlink_after_planning_is_never_written_through(
        ws, tmp_path, monkeypatch, swapped):
    """The plan saw real folders; between planning and writing (here: once
    the blobs are staged, through a hook around the staging step) a folder
    is replaced by a symlink to somewhere else. Folders are opened one
    component at a time with O_NOFOLLOW, so the write is refused."""
    import rnstore.checkout as checkout_module
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "deep").mkdir()
    build(ws.root, {"data/deep/old.txt": b"old\n"})
    first = snapshot_of(ws)
    build(ws.root, {"data/deep/new.txt": b"new\n", "data/deep/old.txt": b"changed\n"})
    second = snapshot_of(ws)
    checkout(ws, first)
    assert not (ws.root / "data" / "deep" / "new.txt").exists()
    real_stage_all = checkout_module._stage_all

    def stage_all_then_swap(*args, **kwargs):
        staged = real_stage_all(*args, **kwargs)
        folder = ws.root / swapped
        folder.rename(tmp_path / "moved-away")
        os.symlink(outside / swapped.partition("/")[2] if "/" in swapped else outside, folder)
        return staged

    monkeypatch.setattr(checkout_module, "_stage_all", stage_all_then_swap)
    head_before = dotdir_state(ws)
    with pytest.raises(ConflictError) as caught:
        checkout(ws, second)
    assert caught.value.paths == [swapped]
    assert sorted(p.relative_to(outside).as_posix() for p in outside.rglob("*")) == ["deep"]
    assert dotdir_state(ws) == head_before  # neither the index nor HEAD moved


# -- checkout REV -- PATH --------------------------------------------------------------


def test_restore_paths_only_touches_them_and_keeps_head(run_cli, two_snapshots):
    ws, old, new = two_snapshots
    (ws.root / "change.txt").write_bytes(b"edit 1\n")
    (ws.root / "keep.txt").write_bytes(b"edit 2\n")
    (ws.root / "new" / "dir" / "file.txt").unlink()
    head_before = (ws.dotdir / "HEAD").read_bytes()

    # an edit to a named path stops it (issue 16): nothing changes
    refused = run_cli(["checkout", "HEAD", "--", "change.txt", "new"], cwd=ws.root)
    assert refused.returncode == 1 and "modified: change.txt" in refused.stderr, refused.stderr
    assert (ws.root / "change.txt").read_bytes() == b"edit 1\n"
    assert not (ws.root / "new" / "dir" / "file.txt").exists()
    result = run_cli(["checkout", "HEAD", "--force", "--", "change.txt", "new"], cwd=ws.root)
    ok(result)
    assert "HEAD unchanged" in result.stderr
    assert (ws.root / "change.txt").read_bytes() == b"v2, longer\n"
    assert (ws.root / "new" / "dir" / "file.txt").read_bytes() == b"new folder\n"
    assert (ws.root / "keep.txt").read_bytes() == b"edit 2\n"  # not named: left alone
    assert (ws.root / "new" / "untracked-here.txt").exists()
    assert (ws.dotdir / "HEAD").read_bytes() == head_before
    assert porcelain(run_cli, ws.root) == b" M keep.txt\n?? new/untracked-here.txt\n?? untracked.txt\n"

    # from an older snapshot, relative to a subfolder: staged against HEAD
    (ws.root / "keep.txt").write_bytes(b"same\n")
    os.makedirs(ws.root / "old")
    ok(run_cli(["checkout", old, "--", "../gone.txt", "deep"], cwd=ws.root / "old"))
    assert (ws.root / "gone.txt").read_bytes() == b"only in old\n"
    assert (ws.root / "old" / "deep" / "file.txt").read_bytes() == b"old folder\n"
    assert porcelain(run_cli, ws.root) == (
        b"A  gone.txt\nA  old/deep/file.txt\n?? new/untracked-here.txt\n?? untracked.txt\n")
    assert (ws.dotdir / "HEAD").read_bytes() == head_before


def test_restore_folder_deletes_tracked_files_rev_lacks(two_snapshots):
    ws, old, new = two_snapshots
    checkout(ws, old, ["."], cwd=ws.root)  # no-overlay: like `git restore -s old .`
    assert not (ws.root / "run.sh").exists()
    assert not (ws.root / "new" / "dir").exists()
    assert ws.refs.head()[1] == new
    staged = {c.path: c.status for c in ws.status().staged}
    assert staged["run.sh"] == "D" and staged["gone.txt"] == "A"


def test_restore_of_a_path_rev_lacks_is_bad_input(run_cli, two_snapshots):
    ws, old, new = two_snapshots
    failed(run_cli(["checkout", old, "--", "run.sh"], cwd=ws.root), 2, "run.sh")
    with pytest.raises(BadInputError):
        checkout(ws, old, ["nope"], cwd=ws.root)
    failed(run_cli(["checkout", "no-such-rev"], cwd=ws.root), 2)


# -- damaged objects -------------------------------------------------------------------


def _damaged(ws, how: str) -> tuple[str, str, bytes]:
    build(ws.root, {"a.txt": b"first\n", "data/big.txt": b"x" * 5000})
    first = snapshot_of(ws, "first")
    payload = b"second version of the big file\n" * 100
    build(ws.root, {"data/big.txt": payload, "data/new.txt": b"new\n"})
    second = snapshot_of(ws, "second")
    checkout(ws, first)
    path = object_file(ws, blob_id(ws, payload))
    os.chmod(path, 0o644)
    if how == "missing":
        path.unlink()
    else:  # a valid frame whose content does not hash to the id
        path.write_bytes(codec.compress("blob", payload.replace(b"second", b"SECOND"), 3))
    return first, second, payload


@pytest.mark.parametrize("how", ["missing", "corrupt"])
def test_a_damaged_blob_fails_naming_the_path_and_changes_nothing(run_cli, ws, tmp_path, how):
    first, second, payload = _damaged(ws, how)
    before, dot_before = picture(ws.root), dotdir_state(ws)
    failed(run_cli(["checkout", second], cwd=ws.root), 1, "data/big.txt", how)
    assert picture(ws.root) == before and dotdir_state(ws) == dot_before
    assert not [n for n in os.listdir(ws.dotdir) if n.startswith(".tmp-")]

    out = tmp_path / "out"
    failed(run_cli(["checkout", second, "--target", str(out)], cwd=ws.root), 1, "data/big.txt")
    leftovers = picture(out) if out.exists() else {}
    assert b"data/big.txt" not in leftovers and not [p for p in leftovers if b".tmp-" in p]

    with pytest.raises(MissingObjectError if how == "missing" else CorruptObjectError):
        checkout(ws, second, force=True)
    assert (ws.root / "data" / "big.txt").read_bytes() == b"x" * 5000


# -- the API ---------------------------------------------------------------------------


def test_repository_checkout_method_and_result(two_snapshots):
    ws, old, new = two_snapshots
    result = ws.checkout(old)
    assert result.form == "switch" and result.snapshot == old
    assert sorted(result.written) == ["change.txt", "gone.txt", "link", "old/deep/file.txt"]
    assert sorted(result.deleted) == ["new/dir/file.txt", "run.sh"]
    assert result.files_written == 4 and result.files_deleted == 2
    assert result.bytes_written == len(b"v1\n") + len(b"only in old\n") + len(b"keep.txt") + len(b"old folder\n")


def test_an_empty_folder_entry_is_created_and_removed(ws):
    build(ws.root, {"keep.txt": b"k\n", "cache": DIR})
    with_folder = snapshot_of(ws)
    os.rmdir(ws.root / "cache")
    without = snapshot_of(ws)
    checkout(ws, with_folder)
    assert (ws.root / "cache").is_dir()
    checkout(ws, without)
    assert not (ws.root / "cache").exists()
    assert ws.status().clean


def test_a_workspace_checkout_waits_for_the_workspace_lock(ws):
    """A second process holding the workspace lock makes checkout wait."""
    build(ws.root, {"a.txt": b"a\n"})
    snap = snapshot_of(ws)
    from rnstore.errors import LockTimeoutError
    other = Repository.open(ws.root)
    import subprocess
    import sys
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, fcntl, os; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
         str(ws.dotdir / "lock")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        other.__dict__["lock_wait"] = 0.2
        with pytest.raises(LockTimeoutError):
            checkout(other, snap, force=True)
    finally:
        holder.kill()
        holder.wait()
    checkout(other, snap, force=True)


def test_a_killed_checkouts_staging_folder_is_removed_by_the_next(ws):
    build(ws.root, {"a.txt": b"a\n"})
    snap = snapshot_of(ws)
    stale = ws.dotdir / ".tmp-checkout-deadbeef"
    stale.mkdir()
    (stale / "0").write_bytes(b"half a file")
    checkout(ws, snap)
    assert not stale.exists()


def test_deep_folders_go_through_descriptors_without_recursion(ws, tmp_path):
    """150 folders deep: more than the descriptors kept open, written and
    compared again one component at a time."""
    blob = ws.store.put("blob", b"deep\n")
    tree = ws.store.put_tree(Tree.from_entries([TreeEntry(b"f", MODE_FILE, blob, 5)]))
    for _ in range(150):
        tree = ws.store.put_tree(Tree.from_entries([TreeEntry(b"d", MODE_TREE, tree, 5)]))
    from rnstore.plumbing import store_snapshot, utc_now
    snap = store_snapshot(ws, Snapshot(tree, (), utc_now(), "deep", {}))
    out = tmp_path / "out"
    result = checkout(ws, snap, target=out)
    assert result.written == ["d/" * 150 + "f"]
    assert (out / ("d/" * 150 + "f")).read_bytes() == b"deep\n"
    assert checkout(ws, snap, target=out).skipped == ["d/" * 150 + "f"]


def dead_pid() -> int:
    import subprocess
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_killed_target_checkouts_staging_folder_is_removed_when_its_process_is_gone(ws, tmp_path):
    build(ws.root, {"a.txt": b"a\n"})
    snap = snapshot_of(ws)
    out = tmp_path / "out"
    old = out / f".tmp-checkout-{dead_pid()}-abcd1234"
    young = out / f".tmp-checkout-{dead_pid()}-young123"
    alive = out / f".tmp-checkout-{os.getpid()}-alive123"
    for folder in (old, young, alive):
        folder.mkdir(parents=True)
    os.utime(old, (1_000_000_000, 1_000_000_000))
    checkout(ws, snap, target=out)
    assert not old.exists() and young.exists() and alive.exists()


# -- writing whole new folders at once (issue 14 item 5) --------------------------------


def staging_leftovers(*folders: Path) -> list[str]:
    return [name for folder in folders if folder.exists() for name in os.listdir(folder)
            if name.startswith(".tmp-")]


def test_a_new_target_folder_appears_whole_with_the_mode_a_new_folder_gets(ws, tmp_path):
    build(ws.root, BASE)
    snap = snapshot_of(ws)
    out = tmp_path / "parent" / "new"
    old_mask = os.umask(0o027)
    try:
        result = checkout(ws, snap, target=out)
    finally:
        os.umask(old_mask)
    assert picture(out) == picture(ws.root)
    assert os.stat(out).st_mode & 0o777 == 0o750  # not the staging folder's private 0700
    leaves = {os.fsencode(name): value for name, value in BASE.items() if value is not DIR}
    assert result.raw_written == sorted(leaves)
    assert sorted(result.raw_folders) == [b"empty", b"nested/empty/folder"]
    assert result.bytes_written == sum(len(v if isinstance(v, (bytes, str)) else v[0])
                                       for v in leaves.values())
    assert staging_leftovers(out, out.parent) == []


def test_a_damaged_object_leaves_no_new_target_folder_and_nothing_beside_it(ws, tmp_path):
    first, second, payload = _damaged(ws, "corrupt")
    out = tmp_path / "out"
    with pytest.raises(CorruptObjectError):
        checkout(ws, second, target=out)
    assert not out.exists() and staging_leftovers(tmp_path) == []


def test_skip_missing_leaves_no_part_of_a_damaged_large_file_in_a_new_folder(ws, tmp_path):
    from rnstore.checkout import WHOLE_BLOB
    large = os.urandom(WHOLE_BLOB + 12345)  # streamed, not read whole: checked after its last byte
    build(ws.root, {"data/large.bin": large, "data/ok.txt": b"fine\n", "top.txt": b"top\n"})
    snap = snapshot_of(ws)
    path = object_file(ws, blob_id(ws, large))
    os.chmod(path, 0o644)
    damaged = bytearray(large)
    damaged[-1] ^= 1
    path.write_bytes(codec.compress("blob", bytes(damaged), 3))
    for out in (tmp_path / "fresh", tmp_path / "existing"):
        if out.name == "existing":
            out.mkdir()  # an empty folder: "data" is new in it, staged whole
        result = checkout(ws, snap, target=out, skip_missing=True)
        assert [(p, why) for p, _, why in result.raw_missing] == [(b"data/large.bin", "corrupt")]
        assert sorted(os.listdir(out / "data")) == ["ok.txt"] and (out / "top.txt").exists()
        assert staging_leftovers(out, tmp_path) == []


def test_new_folders_in_a_workspace_checkout_keep_the_stat_cache_exact(ws):
    build(ws.root, {"keep.txt": b"keep\n"})
    old = snapshot_of(ws, "old")
    build(ws.root, {"fresh/a.txt": b"a\n", "fresh/deep/b.txt": b"b\n", "fresh/link": Link("a.txt"),
                    "other/c.txt": (b"#!/bin/sh\n", 0o755), "d.txt": b"d\n"})
    new = snapshot_of(ws, "new")
    checkout(ws, old)
    assert sorted(os.listdir(ws.root)) == [".rnstore", "keep.txt"]
    time.sleep(2 * RACY_NS / 1e9)  # the index written after the files does not distrust them
    result = checkout(ws, new)
    assert sorted(result.raw_written) == [b"d.txt", b"fresh/a.txt", b"fresh/deep/b.txt", b"fresh/link",
                                      b"other/c.txt"]
    assert os.readlink(ws.root / "fresh" / "link") == "a.txt"
    assert os.stat(ws.root / "other" / "c.txt").st_mode & 0o111
    index = ws.read_index()
    for path in result.raw_written:
        entry = index.get(path)
        st = os.lstat(os.path.join(os.fsencode(ws.root), path))
        assert entry.stat is None or entry.stat == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    assert ws.status().clean
    assert staging_leftovers(ws.dotdir, ws.root) == []


def test_an_existing_empty_target_gets_its_new_folders_whole(run_cli, ws, tmp_path):
    build(ws.root, BASE)
    snap = snapshot_of(ws)
    out = tmp_path / "out"
    out.mkdir()
    ok(run_cli(["checkout", snap, "--target", str(out), "-q"], cwd=ws.root))
    assert picture(out) == picture(ws.root)
    assert checkout(ws, snap, target=out).skipped  # the next run finds it all in place


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_whose_tracked_files_are_already_gone_goes_when_the_goal_lacks_it(run_cli, ws, force):
    """A checkout interrupted after its deletions (Ctrl-C) leaves the folders
    it emptied; the next checkout to a snapshot without them removes them,
    as it would have (the SIGINT torture test found the folders left)."""
    (ws.root / "keep.txt").write_text("keep\n")
    old = ws.snapshot("old").id
    build(ws.root, {"new0/a.txt": b"a", "new0/deeper/b.txt": b"b"})
    ws.snapshot("new")
    (ws.root / "new0" / "a.txt").unlink()
    (ws.root / "new0" / "deeper" / "b.txt").unlink()  # what the interrupted checkout had done
    args = ["checkout", "-q", old] + (["--force"] if force else [])
    ok(run_cli(args, ws.root))
    assert not (ws.root / "new0").exists()
    assert (ws.root / "keep.txt").read_text() == "keep\n"
