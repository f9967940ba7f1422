"""Issue 16: the habits git and restic users bring, safe defaults and the
rough edges a new user hits. Each test runs the CLI in a real subprocess."""

from __future__ import annotations

import json
import os

import pytest

from _porcelain_helpers import (assert_error, commit, new_workspace, ok, write_files)


@pytest.fixture
def ws(tmp_path):
    return new_workspace(tmp_path / "ws")


# -- destructive defaults and wrong messages ------------------------------------------


def test_commit_with_only_unstaged_changes_says_nothing_is_staged(ws, run_cli):
    write_files(ws, {"a.txt": "a\n", "b.txt": "b\n"})
    commit(run_cli, ws, "first", "-a")
    write_files(ws, {"a.txt": "a2\n", "b.txt": "b2\n"})
    error = assert_error(run_cli(["commit", "-m", "second"], cwd=ws), 1, "`rnstore commit -a`",
                         "`rnstore add")
    assert "matches HEAD" not in error
    assert "nothing is staged" in error and "2 files are modified" in error, error

    (ws / "b.txt").write_text("b\n")
    error = assert_error(run_cli(["commit", "-m", "second"], cwd=ws), 1)
    assert "1 file is modified" in error, error


def test_commit_with_only_untracked_files_says_so(ws, run_cli):
    write_files(ws, {"a.txt": "a\n"})
    commit(run_cli, ws, "first", "-a")
    write_files(ws, {"new.txt": "n\n"})
    error = assert_error(run_cli(["commit", "-m", "second"], cwd=ws), 1, "`rnstore add")
    assert "1 file is untracked" in error, error


def test_commit_on_a_clean_workspace_still_says_it_matches_head(ws, run_cli):
    write_files(ws, {"a.txt": "a\n"})
    commit(run_cli, ws, "first", "-a")
    error = assert_error(run_cli(["commit", "-m", "again"], cwd=ws), 1)
    assert "workspace matches HEAD" in error and "modified" not in error


def test_checkout_rev_paths_refuses_to_discard_an_edited_file(ws, run_cli):
    write_files(ws, {"a.txt": "one\n", "b.txt": "b\n"})
    first = commit(run_cli, ws, "first", "-a")
    write_files(ws, {"a.txt": "two\n"})
    commit(run_cli, ws, "second", "-a")
    (ws / "a.txt").write_text("my edit\n")
    assert_error(run_cli(["checkout", first, "--", "a.txt"], cwd=ws), 1, "a.txt", "--force")
    assert (ws / "a.txt").read_text() == "my edit\n"
    ok(run_cli(["checkout", first, "--", "b.txt"], cwd=ws))  # an unedited path restores
    ok(run_cli(["checkout", first, "--force", "--", "a.txt"], cwd=ws))
    assert (ws / "a.txt").read_text() == "one\n"


def test_checkout_rev_paths_refuses_to_drop_a_staged_change(ws, run_cli):
    write_files(ws, {"a.txt": "one\n"})
    first = commit(run_cli, ws, "first", "-a")
    write_files(ws, {"a.txt": "two\n"})
    commit(run_cli, ws, "second", "-a")
    write_files(ws, {"a.txt": "staged\n"})
    ok(run_cli(["add", "a.txt"], cwd=ws))
    assert_error(run_cli(["checkout", first, "--", "a.txt"], cwd=ws), 1, "a.txt")
    assert (ws / "a.txt").read_text() == "staged\n"


def test_init_inside_a_workspace_refuses_unless_nested(ws, run_cli):
    inner = ws / "sub" / "inner"
    inner.mkdir(parents=True)
    assert_error(run_cli(["init"], cwd=inner), 2, str(ws), "--nested")
    assert not (inner / ".rnstore").exists()
    ok(run_cli(["init", "-q", "--nested"], cwd=inner))
    assert (inner / ".rnstore" / "HEAD").is_file()
    ok(run_cli(["init", "-q"], cwd=ws))  # the workspace itself: changes nothing, exit 0
    ok(run_cli(["init", "-q", str(ws)], cwd=inner.parent.parent.parent))
