"""`rnstore status`: human, `--porcelain` (git's `XY path`) and `--json`."""

from __future__ import annotations

import json
import os

import pytest

from helpers.porcelain import commit, new_workspace, ok, porcelain, run_parallel, write_files


@pytest.fixture
def committed(tmp_path, run_cli):
    """A bare workspace with one snapshot of five files."""
    new_workspace(tmp_path)
    write_files(tmp_path, {"mod_staged": "1", "mod_both": "1", "mod_work": "1",
                           "gone_staged": "1", "gone_work": "1", "typechange": "1"})
    head = commit(run_cli, tmp_path, "first", "-a")
    return tmp_path, head


def _change_everything(ws, run_cli):
    write_files(ws, {"mod_staged": "2", "mod_both": "2", "added": "new", "added_then_mod": "a"})
    (ws / "gone_staged").unlink()
    (ws / "typechange").unlink()
    os.symlink("mod_work", ws / "typechange")
    ok(run_cli(["add", "mod_staged", "mod_both", "added", "added_then_mod", "gone_staged",
                "typechange"], cwd=ws))
    write_files(ws, {"mod_both": "3!", "mod_work": "2", "added_then_mod": "ab", "untracked": "u",
                     "dir/untracked2": "u"})
    (ws / "gone_work").unlink()


def test_porcelain_is_gits_short_format(committed, run_cli):
    ws, _ = committed
    _change_everything(ws, run_cli)
    assert porcelain(run_cli, ws) == [
        b"A  added",
        b"AM added_then_mod",
        b"D  gone_staged",
        b" D gone_work",
        b"MM mod_both",
        b"M  mod_staged",
        b" M mod_work",
        b"T  typechange",
        b"?? dir/untracked2",
        b"?? untracked",
    ]


def test_json_keys_and_letters(committed, run_cli):
    ws, head = committed
    _change_everything(ws, run_cli)
    doc = json.loads(ok(run_cli(["status", "--json"], cwd=ws)).stdout)
    assert set(doc) == {"branch", "head", "staged", "unstaged", "untracked", "now_ignored"}
    assert doc["branch"] == "main" and doc["head"] == head
    for entry in doc["staged"] + doc["unstaged"]:
        assert set(entry) == {"path", "status"}
    assert {(e["path"], e["status"]) for e in doc["staged"]} == {
        ("added", "A"), ("added_then_mod", "A"), ("gone_staged", "D"), ("mod_both", "M"),
        ("mod_staged", "M"), ("typechange", "T")}
    assert {(e["path"], e["status"]) for e in doc["unstaged"]} == {
        ("added_then_mod", "M"), ("gone_work", "D"), ("mod_both", "M"), ("mod_work", "M")}
    assert sorted(doc["untracked"]) == ["dir/untracked2", "untracked"]


def test_json_before_the_first_snapshot_and_when_detached(tmp_path, run_cli):
    ok(run_cli(["init", "--no-default-ignore", "--branch", "dev"], cwd=tmp_path))
    write_files(tmp_path, {"a": "a"})
    doc = json.loads(ok(run_cli(["status", "--json"], cwd=tmp_path)).stdout)
    assert doc == {"branch": "dev", "head": None, "staged": [], "unstaged": [], "untracked": ["a"],
                   "now_ignored": []}
    head = commit(run_cli, tmp_path, "m", "-a")
    # detach HEAD (repo.py documents HEAD as "ref: ..." or a snapshot id)
    (tmp_path / ".rnstore" / "HEAD").write_text(head + "\n")
    doc = json.loads(ok(run_cli(["status", "--json"], cwd=tmp_path)).stdout)
    assert doc == {"branch": None, "head": head, "staged": [], "unstaged": [], "untracked": [],
                   "now_ignored": []}


def test_clean_after_commit(committed, run_cli):
    ws, _ = committed
    short, human = run_parallel(run_cli, [(["status", "--porcelain"], ws), (["status"], ws)])
    assert ok(short).stdout == b""
    human = ok(human).out
    assert "On branch main" in human and "nothing to commit" in human
    write_files(ws, {"mod_work": "changed"})
    human = ok(run_cli(["status"], cwd=ws)).out
    assert "modified:" in human and "mod_work" in human and "nothing to commit" not in human
