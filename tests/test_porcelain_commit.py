"""`rnstore commit`: output contract, metadata, empty commits, concurrency."""

from __future__ import annotations

import json
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

import rnstore
from helpers.porcelain import (HEX64, assert_error, commit, ls_tree, new_workspace, ok, run_parallel,
                                write_files)


@pytest.fixture
def bare(tmp_path, run_cli):
    return new_workspace(tmp_path / "ws")


def log_json(run_cli, ws, *args):
    return json.loads(ok(run_cli(["log", "--json", *args], cwd=ws)).stdout)


def test_commit_prints_the_id_alone_and_a_summary_on_stderr(bare, run_cli):
    write_files(bare, {"a.txt": "a\n"})
    ok(run_cli(["add", "."], cwd=bare))
    result = ok(run_cli(["commit", "-m", "first run"], cwd=bare))
    assert HEX64.match(result.out[:-1]) and result.out.endswith("\n") and len(result.stdout) == 65
    snapshot = result.out.strip()
    assert ok(run_cli(["rev-parse", "HEAD"], cwd=bare)).out.strip() == snapshot
    summary = result.stderr.splitlines()
    assert len(summary) == 1 and snapshot[:12] in summary[0] and "first run" in summary[0], result.stderr

    write_files(bare, {"b.txt": "b\n"})
    quiet = ok(run_cli(["commit", "-q", "-a", "-m", "second"], cwd=bare))
    assert quiet.stderr == ""
    assert HEX64.match(quiet.out.strip()) and len(quiet.stdout) == 65


def test_commit_all_stages_the_whole_workspace_from_a_subfolder(bare, run_cli):
    write_files(bare, {"a.txt": "a", "sub/b.txt": "b", "other/c.txt": "c"})
    ok(run_cli(["commit", "-a", "-m", "all"], cwd=bare / "sub"))
    assert set(ls_tree(run_cli, bare)) == {b"a.txt", b"sub/b.txt", b"other/c.txt"}
    (bare / "a.txt").unlink()
    write_files(bare, {"sub/b.txt": "b2"})
    ok(run_cli(["commit", "-a", "-m", "deletions too"], cwd=bare / "other"))
    assert set(ls_tree(run_cli, bare)) == {b"sub/b.txt", b"other/c.txt"}


def test_commit_records_metadata(bare, run_cli):
    write_files(bare, {"a.txt": "12345", "sub/b.txt": "123"})
    snapshot = commit(run_cli, bare, "with meta", "-a", "--meta", "lr=0.1",
                      "--meta", "note=a b=c", "-q")
    log, bad = run_parallel(run_cli, [
        (["log", "--json"], bare),
        (["commit", "--allow-empty", "-m", "x", "--meta", "novalue"], bare)])
    assert_error(bad, 2)
    [entry] = json.loads(ok(log).stdout)
    assert entry["id"] == snapshot and entry["message"] == "with meta"
    meta = entry["meta"]
    assert meta["lr"] == "0.1" and meta["note"] == "a b=c"
    assert meta["user"] == "tester"                      # RNSTORE_USER, set by run_cli
    assert meta["host"] == socket.gethostname()
    assert meta["rnstore_version"] == rnstore.__version__
    assert str(meta["files"]) == "2" and str(meta["bytes"]) == "8"
    assert "git_commit" not in meta                      # not inside a git repository


def test_commit_records_the_git_commit_of_the_workspace(tmp_path, run_cli):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "README").write_text("git\n")
    subprocess.run([*git, "-C", str(tmp_path), "add", "README"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-q", "-m", "c"], check=True)
    git_head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    new_workspace(tmp_path / "exp")
    write_files(tmp_path / "exp", {"a.txt": "a"})
    commit(run_cli, tmp_path / "exp", "m", "-a")
    [entry] = log_json(run_cli, tmp_path / "exp")
    assert entry["meta"]["git_commit"] == git_head


def test_nothing_to_commit_exits_1(bare, run_cli):
    result = run_cli(["commit", "-m", "empty"], cwd=bare)
    assert_error(result, 1, "nothing to commit")
    assert result.stdout == b""
    write_files(bare, {"a.txt": "a"})
    first = commit(run_cli, bare, "first", "-a")
    result = run_cli(["commit", "-a", "-m", "again"], cwd=bare)
    assert_error(result, 1, "nothing to commit")
    assert result.stdout == b""
    assert ok(run_cli(["rev-parse", "HEAD"], cwd=bare)).out.strip() == first


def test_allow_empty(bare, run_cli):
    write_files(bare, {"a.txt": "a"})
    first = commit(run_cli, bare, "first", "-a")
    second = commit(run_cli, bare, "empty", "--allow-empty")
    assert second != first
    newest, oldest = log_json(run_cli, bare)
    assert (newest["id"], newest["parents"], oldest["id"]) == (second, [first], first)
    assert newest["tree"] == oldest["tree"]


def test_concurrent_commits_lose_no_snapshot(bare, run_cli):
    """Four processes, each `add` its own file then `commit`, at once. Each
    exits 0 (or 1: another commit already took its file) without a
    traceback; every printed id is in the history; the last snapshot holds
    every file."""
    names = [f"worker{i}.txt" for i in range(4)]
    write_files(bare, {name: name * 10 for name in names})

    def worker(name):
        added = run_cli(["add", name], cwd=bare)
        committed = run_cli(["commit", "-q", "-m", name], cwd=bare)
        return added, committed

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(worker, names))
    for added, _ in results:
        assert added.returncode == 0, added.stderr
    _check_no_lost_snapshot(run_cli, bare, [committed for _, committed in results], names)


def test_concurrent_commit_all_loses_no_snapshot(bare, run_cli):
    """Four `commit -a` at once, each after writing its own file."""
    names = [f"job{i}.txt" for i in range(4)]
    write_files(bare, {name: name * 10 for name in names})
    results = run_parallel(run_cli, [(["commit", "-a", "-q", "-m", name], bare) for name in names],
                           workers=4)
    _check_no_lost_snapshot(run_cli, bare, results, names)


def _check_no_lost_snapshot(run_cli, ws, commits, names):
    ids = []
    for committed in commits:
        assert committed.returncode in (0, 1), committed.stderr
        if committed.returncode == 0:
            assert HEX64.match(committed.out.strip()) and len(committed.stdout) == 65
            ids.append(committed.out.strip())
        else:
            assert_error(committed, 1, "nothing to commit")
    assert ids
    log, tree = run_parallel(run_cli, [(["log", "--json"], ws),
                                       (["ls-tree", "-r", "--name-only", "HEAD"], ws)])
    assert sorted(entry["id"] for entry in json.loads(ok(log).stdout)) == sorted(ids)
    assert ok(tree).stdout.splitlines() == sorted(name.encode() for name in names)


def test_commits_that_reuse_the_index_folder_ids_match_a_full_rebuild(bare, run_cli):
    """commit encodes only the folders that changed since the index last
    built them; `write-tree` (plumbing) encodes everything from nothing.
    After each kind of change they agree, and `status` is clean."""
    write_files(bare, {"a/b/c/deep.txt": "1\n", "a/b/side.txt": "s\n", "a/top.txt": "t\n",
                       "other/x.txt": "x\n", "root.txt": "r\n"})
    (bare / "empty").mkdir()
    ok(run_cli(["commit", "-a", "-q", "-m", "first"], cwd=bare))
    changes = [
        lambda: (bare / "a/b/c/deep.txt").write_text("2\n"),                      # a deep edit
        lambda: (bare / "a/b/c/new.txt").write_text("n\n"),                       # an addition
        lambda: (bare / "other/x.txt").unlink(),                                  # a folder emptied
        lambda: (bare / "empty/filled.txt").write_text("f\n"),                    # an empty folder filled
        lambda: (bare / "a/top.txt").chmod(0o755),                                # a mode change
        lambda: (bare / "a/b/side.txt").write_text("s\n"),                        # a touch, same bytes
    ]
    for number, change in enumerate(changes):
        change()
        result = run_cli(["commit", "-a", "-q", "-m", f"change {number}"], cwd=bare)
        assert result.returncode in (0, 1), result.stderr  # the touch changes nothing
        tree = ok(run_cli(["rev-parse", "HEAD:"], cwd=bare)).out.strip()
        assert ok(run_cli(["write-tree"], cwd=bare)).out.strip() == tree, number
        assert ok(run_cli(["status", "--porcelain"], cwd=bare)).out == "", number
