"""`.rnignore` rules, `--exclude` and `--no-ignore`, end to end through the CLI."""

from __future__ import annotations

import os
import shutil

import pytest

from helpers.porcelain import (hand_over, ls_files, needs_unprivileged_runner, new_workspace, ok,
                                porcelain, run_parallel, run_unprivileged, unprivileged_folder,
                                write_files)


@pytest.fixture
def bare(tmp_path, run_cli):
    """A workspace without the default .rnignore."""
    return new_workspace(tmp_path)


def staged(run_cli, ws) -> set[bytes]:
    return set(ls_files(run_cli, ws))


def test_nested_rnignore_applies_below_its_folder_only(bare, run_cli):
    write_files(bare, {
        "sub/.rnignore": "*.tmp\n/anchored.txt\n",
        "sub/a.tmp": "x", "sub/deep/b.tmp": "x",                  # ignored by sub/.rnignore
        "sub/anchored.txt": "x",                                  # anchored to sub/
        "sub/deep/anchored.txt": "kept: / anchors to sub/, not below",
        "top.tmp": "kept: above sub/", "other/c.tmp": "kept: a sibling",
        "anchored.txt": "kept: above sub/", "sub/keep.py": "kept",
    })
    ok(run_cli(["add", "."], cwd=bare))
    assert staged(run_cli, bare) == {
        b"sub/.rnignore", b"sub/deep/anchored.txt", b"top.tmp", b"other/c.tmp",
        b"anchored.txt", b"sub/keep.py"}


def test_negation_reincludes(bare, run_cli):
    write_files(bare, {
        ".rnignore": "*.log\n!keep.log\n",
        "x.log": "x", "keep.log": "k", "sub/y.log": "y", "sub/keep.log": "k",
        "nested/.rnignore": "!important.log\n", "nested/important.log": "i", "important.log": "i",
    })
    ok(run_cli(["add", "."], cwd=bare))
    assert staged(run_cli, bare) == {
        b".rnignore", b"keep.log", b"sub/keep.log", b"nested/.rnignore", b"nested/important.log"}


def test_ignored_folder_is_not_entered(bare, run_cli):
    # as in git, a file cannot be re-included when its folder is excluded:
    # the walk never looks inside data/
    write_files(bare, {".rnignore": "data/\n!data/keep.txt\n", "data/keep.txt": "k",
                       "data/big.bin": "b", "code.py": "c"})
    ok(run_cli(["add", "."], cwd=bare))
    assert ok(run_cli(["status", "--porcelain"], cwd=bare)).stdout == b"A  .rnignore\nA  code.py\n"


def test_ignored_unreadable_folder_is_pruned_not_read(run_cli):
    """An ignored folder that cannot be listed does not fail `add`: the
    walk prunes it before listing it."""
    needs_unprivileged_runner()
    ws = unprivileged_folder()
    try:
        write_files(new_workspace(ws), {".rnignore": "secret/\n", "secret/inner.txt": "s", "code.py": "c"})
        hand_over(ws)
        os.chmod(ws / "secret", 0)
        result = run_unprivileged(["add", "."], cwd=ws)
        assert result.returncode == 0, result.stderr
        assert "secret" not in result.stderr
        listed = run_unprivileged(["ls-files"], cwd=ws)
        assert listed.stdout.splitlines() == [b".rnignore", b"code.py"]
        # control: without the rule the folder is read, and that fails, naming it
        failed = run_unprivileged(["add", ".", "--no-ignore"], cwd=ws)
        assert failed.returncode == 1 and "secret" in failed.stderr, failed.stderr
    finally:
        if (ws / "secret").exists():
            os.chmod(ws / "secret", 0o755)
        shutil.rmtree(ws)


def test_exclude_is_repeatable_and_for_one_command(bare, run_cli):
    write_files(bare, {"a.bin": "x", "tmp/t.txt": "t", "keep.txt": "k", "sub/b.bin": "x"})
    ok(run_cli(["add", ".", "--exclude", "*.bin", "--exclude", "tmp/"], cwd=bare))
    assert staged(run_cli, bare) == {b"keep.txt"}
    # status honours --exclude too, and the next command without it sees everything
    excluded, everything = run_parallel(run_cli, [
        (["status", "--porcelain", "--exclude", "*.bin", "--exclude", "tmp/"], bare),
        (["status", "--porcelain"], bare)])
    assert ok(excluded).stdout.splitlines() == [b"A  keep.txt"]
    assert set(ok(everything).stdout.splitlines()) == {
        b"A  keep.txt", b"?? a.bin", b"?? sub/b.bin", b"?? tmp/t.txt"}


def test_no_ignore_bypasses_rnignore_but_never_stores_rnstore(tmp_path, run_cli):
    new_workspace(tmp_path, default_ignore=True)  # default .rnignore: *.log, data/
    write_files(tmp_path, {"train.log": "l", "data/d.csv": "d", "code.py": "c",
                           "sub/.rnstore/x": "a folder named .rnstore is never stored"})
    ok(run_cli(["add", ".", "--no-ignore"], cwd=tmp_path))
    files = staged(run_cli, tmp_path)
    assert files == {b".rnignore", b"train.log", b"data/d.csv", b"code.py"}
    # naming .rnstore explicitly stores nothing from it either (saying so is fine)
    result = run_cli(["add", ".rnstore", "--no-ignore"], cwd=tmp_path)
    assert result.returncode == 0 or result.stderr.startswith("error: "), result.stderr
    assert staged(run_cli, tmp_path) == files


def test_rnignore_rules_apply_to_status_and_commit_all(bare, run_cli):
    write_files(bare, {".rnignore": "*.ckpt\ncache/\n", "model.ckpt": "m", "cache/c": "c", "a.py": "a"})
    assert set(porcelain(run_cli, bare)) == {b"?? .rnignore", b"?? a.py"}
    ok(run_cli(["commit", "-a", "-m", "m"], cwd=bare))
    listing = ok(run_cli(["ls-tree", "-r", "--name-only", "HEAD"], cwd=bare)).stdout
    assert listing.splitlines() == [b".rnignore", b"a.py"]
