"""`rnstore add`: what it stages, what it refuses, and what it never touches."""

from __future__ import annotations

import os
import shutil

import pytest

from helpers.porcelain import (assert_error, commit, hand_over, ls_files, ls_files_stage,
                                ls_tree, needs_unprivileged_runner, new_workspace, object_files,
                                ok, porcelain, run_parallel, run_unprivileged, sha256,
                                store_state, unprivileged_folder, write_files)


@pytest.fixture
def bare(tmp_path, run_cli):
    """A workspace without the default .rnignore."""
    return new_workspace(tmp_path)


def test_add_stages_additions_changes_and_deletions_under_path_only(bare, run_cli):
    write_files(bare, {"a/one": "1", "a/two": "2", "a/sub/three": "3", "b/one": "1", "top": "t"})
    commit(run_cli, bare, "first", "-a")

    write_files(bare, {"a/one": "1 changed", "a/new": "n", "b/one": "1 changed", "b/new": "n"})
    (bare / "a" / "two").unlink()
    shutil.rmtree(bare / "a" / "sub")
    (bare / "top").unlink()
    ok(run_cli(["add", "a"], cwd=bare))

    listing, status = run_parallel(run_cli, [(["ls-files", "-s"], bare),
                                             (["status", "--porcelain"], bare)])
    after = {line.split(b"\t")[1]: line.split(b" ")[1].decode()
             for line in ok(listing).stdout.splitlines()}
    assert after == {
        b"a/one": sha256(b"1 changed"), b"a/new": sha256(b"n"),
        b"b/one": sha256(b"1"),         # outside PATH: untouched
        b"top": sha256(b"t"),           # deleted, but outside PATH
    }
    assert set(ok(status).stdout.splitlines()) == {
        b"M  a/one", b"A  a/new", b"D  a/two", b"D  a/sub/three",
        b" M b/one", b" D top", b"?? b/new"}


def test_add_a_single_file_and_a_deleted_path(bare, run_cli):
    write_files(bare, {"x.txt": "x", "y.txt": "y"})
    ok(run_cli(["add", "x.txt"], cwd=bare))
    assert ls_files(run_cli, bare) == [b"x.txt"]
    commit(run_cli, bare)
    (bare / "x.txt").unlink()
    ok(run_cli(["add", "x.txt"], cwd=bare))  # a path that is gone stages its deletion
    assert ls_files(run_cli, bare) == []


def test_add_outside_the_workspace_is_bad_input(bare, run_cli, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert_error(run_cli(["add", str(elsewhere)], cwd=bare), 2, "outside")


def test_add_of_a_path_that_matches_nothing_fails(bare, run_cli):
    write_files(bare, {"train.py": "t"})
    result = run_cli(["add", "trian.py"], cwd=bare)
    assert_error(result, 2, "trian.py")


def test_add_of_an_explicitly_named_ignored_file_says_so(bare, run_cli):
    write_files(bare, {".rnignore": "*.log\n", "train.log": "l"})
    result = run_cli(["add", "train.log"], cwd=bare)
    assert "train.log" in result.stderr and ("warning:" in result.stderr or "error:" in result.stderr)


def test_same_size_edit_within_the_racy_window_is_detected(bare, run_cli):
    target = bare / "params.txt"
    target.write_bytes(b"lr=0.1\n")
    ok(run_cli(["add", "params.txt"], cwd=bare))
    stat = os.stat(target)
    target.write_bytes(b"lr=0.2\n")  # same size, at once: the same timestamp tick
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the same mtime
    assert porcelain(run_cli, bare) == [b"AM params.txt"]
    ok(run_cli(["add", "params.txt"], cwd=bare))
    assert ls_files_stage(run_cli, bare)[b"params.txt"] == ("100644", sha256(b"lr=0.2\n"))


def test_symlinks_are_stored_as_links_never_followed(bare, run_cli):
    write_files(bare, {"real/file.txt": "real", "code.py": "c"})
    os.symlink("real", bare / "dirlink")                 # to a folder: not entered
    os.symlink("code.py", bare / "filelink")
    os.symlink("/etc/passwd", bare / "outside")          # outside the workspace
    os.symlink("does/not/exist", bare / "dangling")
    ok(run_cli(["add", "."], cwd=bare))
    commit(run_cli, bare)
    tree = ls_tree(run_cli, bare)
    assert set(tree) == {b"real/file.txt", b"code.py", b"dirlink", b"filelink", b"outside", b"dangling"}
    for name, target in ((b"dirlink", b"real"), (b"filelink", b"code.py"),
                         (b"outside", b"/etc/passwd"), (b"dangling", b"does/not/exist")):
        assert tree[name] == ("120000", "blob", sha256(target)), name
    assert ok(run_cli(["show", "HEAD:outside"], cwd=bare)).stdout == b"/etc/passwd"


def test_fifo_is_skipped_with_a_warning(bare, run_cli):
    write_files(bare, {"code.py": "c"})
    os.mkfifo(bare / "pipe")
    result = ok(run_cli(["add", "."], cwd=bare))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "pipe" in warnings[0], result.stderr
    assert ls_files(run_cli, bare) == [b"code.py"]


def test_unreadable_file_fails_naming_it_unless_ignore_errors(run_cli):
    needs_unprivileged_runner()
    ws = unprivileged_folder()
    try:
        write_files(new_workspace(ws), {"code.py": "c", "sub/secret.txt": "s"})
        hand_over(ws)
        os.chmod(ws / "sub" / "secret.txt", 0)
        before = store_state(ws / ".rnstore", objects=False)

        failed = run_unprivileged(["add", "."], cwd=ws)
        assert_error(failed, 1, "sub/secret.txt", "--ignore-errors")
        assert store_state(ws / ".rnstore", objects=False) == before  # nothing staged

        passed = run_unprivileged(["add", ".", "--ignore-errors"], cwd=ws)
        assert passed.returncode == 0, passed.stderr
        assert any(line.startswith("warning:") and "sub/secret.txt" in line
                   for line in passed.stderr.splitlines()), passed.stderr
        assert run_unprivileged(["ls-files"], cwd=ws).stdout == b"code.py\n"
    finally:
        shutil.rmtree(ws)


def test_dry_run_changes_nothing(bare, run_cli):
    write_files(bare, {"keep": "k", "change": "c", "remove": "r"})
    ok(run_cli(["add", "."], cwd=bare))
    write_files(bare, {"change": "c2", "new": "n"})
    (bare / "remove").unlink()
    before = store_state(bare / ".rnstore")
    result = ok(run_cli(["add", "--dry-run", "."], cwd=bare))
    assert store_state(bare / ".rnstore") == before
    assert sorted(result.stdout.splitlines()) == [b"add new", b"delete remove", b"update change"]


def test_dry_run_lists_only_real_changes(bare, run_cli):
    """A touched but unchanged file is not listed (it was, before e8bbc05)."""
    write_files(bare, {"keep": "k", "change": "c"})
    ok(run_cli(["add", "."], cwd=bare))
    write_files(bare, {"change": "c2"})
    stat = os.stat(bare / "keep")
    os.utime(bare / "keep", ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))  # touched only
    result = ok(run_cli(["add", "--dry-run", "."], cwd=bare))
    assert result.stdout.splitlines() == [b"update change"]


LIMIT_FILES = {f"models/m{i}.bin": bytes(200 + 50 * i) for i in range(12)} | {"small.txt": b"s" * 10}


def _largest_named(stderr: str) -> tuple[set[str], set[str]]:
    named = {name for name in LIMIT_FILES if name in stderr}
    return named, set(LIMIT_FILES) - named


def test_max_bytes_stops_before_storing_anything(bare, run_cli):
    ok(run_cli(["config", "limits.max_bytes", "1000"], cwd=bare))
    write_files(bare, LIMIT_FILES)
    total = sum(len(v) for v in LIMIT_FILES.values())
    before = store_state(bare / ".rnstore")

    result = run_cli(["add", "."], cwd=bare)
    assert_error(result, 1, "5.6 KiB", "1000 B", "models/", ".rnignore", "--force")
    assert total == 5710  # 5.6 KiB
    named, unnamed = _largest_named(result.stderr)
    # the ten largest files are named; the three smallest are not
    assert named == {f"models/m{i}.bin" for i in range(2, 12)}, result.stderr
    assert store_state(bare / ".rnstore") == before  # nothing stored, index as it was

    # commit -a obeys the limit too, and makes no snapshot
    assert_error(run_cli(["commit", "-a", "-m", "too big"], cwd=bare), 1, "--force")
    assert store_state(bare / ".rnstore") == before

    ok(run_cli(["add", ".", "--force"], cwd=bare))
    assert len(ls_files(run_cli, bare)) == 13
    assert len(object_files(bare / ".rnstore")) == 13


def test_max_files_stops_before_storing_anything(bare, run_cli):
    ok(run_cli(["config", "limits.max_files", "3"], cwd=bare))
    write_files(bare, {f"f{i}.txt": f"{i}" for i in range(5)})
    before = store_state(bare / ".rnstore")
    result = run_cli(["add", "."], cwd=bare)
    assert_error(result, 1, "5 files", "3", ".rnignore", "--force")
    assert store_state(bare / ".rnstore") == before
    ok(run_cli(["add", ".", "--force"], cwd=bare))
    assert len(ls_files(run_cli, bare)) == 5
