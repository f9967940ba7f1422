"""`rnstore diff`: snapshot against snapshot, and snapshot against workspace."""

from __future__ import annotations

import json
import os

import pytest

from helpers.porcelain import (assert_error, commit, new_workspace, ok, run_cli, run_parallel,
                                sha256, write_files)

OLD_A = "line 1\nline 2\nline 3\n"
NEW_A = "line 1\nline two\nline 3\nline 4\n"


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Snapshots OLD and NEW (tags), and a workspace changed after NEW."""
    ws = new_workspace(tmp_path_factory.mktemp("diff"))
    write_files(ws, {"a.txt": OLD_A, "b.txt": "gone\n", "bin.dat": b"\x00\x01old", "same.txt": "s\n"})
    os.symlink("a.txt", ws / "link")
    commit(run_cli, ws, "old", "-a")
    ok(run_cli(["tag", "OLD"], cwd=ws))
    write_files(ws, {"a.txt": NEW_A, "c.txt": "new\n", "bin.dat": b"\x00\x01new"})
    (ws / "b.txt").unlink()
    (ws / "link").unlink()
    write_files(ws, {"link": "now a file\n"})
    commit(run_cli, ws, "new", "-a")
    ok(run_cli(["tag", "NEW"], cwd=ws))
    # the workspace moves on: one change to a tracked file, one untracked file
    write_files(ws, {"c.txt": "new\nmore\n", "untracked.txt": "u\n"})
    return ws


def test_name_status_between_snapshots(two, run_cli):
    result = ok(run_cli(["diff", "OLD", "NEW", "--name-status"], cwd=two))
    assert result.stdout.splitlines() == [
        b"M\ta.txt", b"D\tb.txt", b"M\tbin.dat", b"A\tc.txt", b"T\tlink"]


def test_json_between_snapshots(two, run_cli):
    entries = json.loads(ok(run_cli(["diff", "OLD", "NEW", "--json"], cwd=two)).stdout)
    for entry in entries:
        assert set(entry) >= {"path", "status", "old", "new"}
    by_path = {e["path"]: (e["status"], e["old"], e["new"]) for e in entries}
    assert by_path == {
        "a.txt": ("M", sha256(OLD_A.encode()), sha256(NEW_A.encode())),
        "b.txt": ("D", sha256(b"gone\n"), None),
        "bin.dat": ("M", sha256(b"\x00\x01old"), sha256(b"\x00\x01new")),
        "c.txt": ("A", None, sha256(b"new\n")),
        "link": ("T", sha256(b"a.txt"), sha256(b"now a file\n")),
    }


def test_unified_text_between_snapshots(two, run_cli):
    text = ok(run_cli(["diff", "OLD", "NEW"], cwd=two)).out
    assert "-line 2\n" in text and "+line two\n" in text and "+line 4\n" in text
    assert "+new\n" in text and "-gone\n" in text
    assert "Binary files a/bin.dat and b/bin.dat differ" in text
    assert "same.txt" not in text


def test_stat_between_snapshots(two, run_cli):
    lines = ok(run_cli(["diff", "OLD", "NEW", "--stat"], cwd=two)).out.splitlines()
    rows = {line.split("|")[0].strip(): line.split("|")[1].strip() for line in lines[:-1]}
    assert rows["a.txt"].startswith("3 ") and rows["bin.dat"] == "Bin"  # 2 added, 1 removed
    assert rows["c.txt"].startswith("1 ") and rows["b.txt"].startswith("1 ")
    assert lines[-1].strip().startswith("5 files changed")


def test_snapshot_against_workspace(two, run_cli):
    # default: HEAD against the workspace, untracked files included
    head, entries, text = run_parallel(run_cli, [
        (["diff", "--name-status"], two), (["diff", "NEW", "--json"], two), (["diff", "OLD"], two)])
    assert ok(head).stdout.splitlines() == [b"M\tc.txt", b"A\tuntracked.txt"]
    assert {(e["path"], e["status"], e["new"]) for e in json.loads(ok(entries).stdout)} == {
        ("c.txt", "M", sha256(b"new\nmore\n")), ("untracked.txt", "A", sha256(b"u\n"))}
    text = ok(text).out
    assert "+more\n" in text and "-line 2\n" in text


def test_diff_bad_usage(two, run_cli):
    three, unknown = run_parallel(run_cli, [(["diff", "OLD", "NEW", "HEAD"], two),
                                            (["diff", "nosuchrev"], two)])
    assert_error(three, 2)
    assert_error(unknown, 2, "nosuchrev")


def test_a_line_ends_only_at_a_newline_as_in_git(tmp_path, run_cli):
    """A form feed, a lone carriage return or a Unicode line separator
    inside a line is part of it (git splits at \\n only): no line is cut
    in two, and no "No newline at end of file" lands mid-file."""
    ws = new_workspace(tmp_path / "ws")
    old = "page one\x0cpage two\nold\rstyle\nsep\u2028arator\n"
    write_files(ws, {"f.txt": old})
    commit(run_cli, ws, "one", "-a")
    write_files(ws, {"f.txt": old + "added\n"})
    text = ok(run_cli(["diff"], cwd=ws)).out
    assert "No newline" not in text
    assert [line for line in text.split("\n") if line[:1] in ("+", "-") and not line.startswith(("+++", "---"))] == [
        "+added"]
    stat = ok(run_cli(["diff", "--stat"], cwd=ws)).out.splitlines()
    assert stat[-1].strip() == "1 file changed, 1 insertion(+), 0 deletions(-)"
