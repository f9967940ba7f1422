"""Paths in line output: quoted as git quotes them when they hold a control
character, `"` or `\\`, and never with `-z`, so that one line is one path.

The quoting is checked against git itself (`core.quotePath=false`) on the
same names, and end to end through a real `rnstore` subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import given, strategies as st

from rnstore.errors import InvalidValueError
from rnstore.quoting import quote_path, unquote_path
from rnstore.repo import Repository

from helpers.cli import run_cli

#: names that need quotes, and one that doesn't (UTF-8 stays as it is)
AWKWARD = [b"new\nline", b"tab\there", b'say "hi"', b"back\\slash", b"bell\x07\x1b[2J\x7f", b"caf\xc3\xa9.txt"]


def ok(result) -> bytes:
    assert result.returncode == 0, result.stderr
    return result.stdout


@given(st.binary(max_size=40))
def test_quoting_round_trips_and_a_quoted_path_is_one_line(path):
    quoted = quote_path(path)
    assert unquote_path(quoted) == path or path.startswith(b'"')  # an unquoted name starting '"' is quoted
    assert b"\n" not in quoted and b"\t" not in quoted
    assert unquote_path(quote_path(b'"' + path)) == b'"' + path


@pytest.mark.parametrize("bad", [b'"open', b'"bad \\q escape"', b'"inner " quote"', b'"\\4"'])
def test_a_badly_quoted_name_is_refused(bad):
    with pytest.raises(InvalidValueError):
        unquote_path(bad)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_quoting_matches_git_ls_files(tmp_path):
    names = [n for n in AWKWARD if b"\x1b" not in n] + [b"plain.txt"]
    for name in names:
        (tmp_path / name.decode("utf-8", "surrogateescape")).write_bytes(b"x")
    git = ["git", "-C", str(tmp_path), "-c", "core.quotePath=false"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    theirs = subprocess.run(git + ["ls-files"], check=True, capture_output=True).stdout.splitlines()
    assert sorted(theirs) == sorted(quote_path(name) for name in names)


@pytest.fixture
def awkward_workspace(tmp_path):
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    for name in AWKWARD:
        (repo.root / name.decode("utf-8", "surrogateescape")).write_bytes(name)
    ok(run_cli(["add", "."], repo.root))
    ok(run_cli(["commit", "-q", "-m", "awkward"], repo.root))
    return repo.root


def test_listings_quote_awkward_paths_and_z_does_not(awkward_workspace):
    ws = awkward_workspace
    expected = sorted(AWKWARD)
    quoted = sorted(quote_path(n) for n in AWKWARD)
    assert sorted(ok(run_cli(["ls-files"], ws)).splitlines()) == quoted
    assert sorted(ok(run_cli(["ls-files", "-z"], ws)).split(b"\0")[:-1]) == expected
    assert sorted(line.split(b"\t", 1)[1] for line in ok(run_cli(["ls-tree", "HEAD"], ws)).splitlines()) == quoted
    assert sorted(entry.split(b"\t", 1)[1] for entry in ok(run_cli(["ls-tree", "-z", "HEAD"], ws)).split(b"\0")[:-1]) == expected
    for name in AWKWARD:
        (ws / name.decode("utf-8", "surrogateescape")).write_bytes(b"changed")
    assert sorted(ok(run_cli(["status", "--porcelain"], ws)).splitlines()) == [b" M " + q for q in quoted]
    assert sorted(ok(run_cli(["status", "-z"], ws)).split(b"\0")[:-1]) == [b" M " + n for n in expected]
    assert sorted(ok(run_cli(["diff", "--name-status"], ws)).splitlines()) == [b"M\t" + q for q in quoted]
    assert sorted(ok(run_cli(["diff", "--name-only", "-z"], ws)).split(b"\0")[:-1]) == expected
    human = ok(run_cli(["status"], ws))
    assert b'"new\\nline"' in human and b"\x1b" not in human and b"\x07" not in human


def test_mktree_reads_back_what_ls_tree_prints_quoted_or_nul_ended(awkward_workspace):
    ws = awkward_workspace
    tree = json.loads(ok(run_cli(["log", "-n", "1", "--json"], ws)))[0]["tree"].encode()
    assert ok(run_cli(["mktree"], ws, input=ok(run_cli(["ls-tree", "HEAD"], ws)))).strip() == tree
    assert ok(run_cli(["mktree", "-z"], ws, input=ok(run_cli(["ls-tree", "-z", "HEAD"], ws)))).strip() == tree
    listing = ok(run_cli(["ls-tree", "HEAD"], ws)).replace(b'"new\\nline"', b'"new\\qline"')
    bad = run_cli(["mktree"], ws, input=listing)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_stat_counts_added_lines_that_start_with_plus_signs(tmp_path):
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    (repo.root / "c.c").write_text("int i;\n")
    ok(run_cli(["add", "."], repo.root))
    ok(run_cli(["commit", "-q", "-m", "c"], repo.root))
    (repo.root / "c.c").write_text("int i;\n++i;\n--i;\n")
    stat = ok(run_cli(["diff", "--stat"], repo.root)).decode()
    assert "2 insertions(+), 0 deletions(-)" in stat, stat
