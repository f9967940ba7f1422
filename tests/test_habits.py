"""Issue 16: the habits git and restic users bring, safe defaults and the
rough edges a new user hits. Each test runs the CLI in a real subprocess."""

from __future__ import annotations

import inspect
import io
import json
import os
import pty
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import rnstore
from rnstore import Repository
from rnstore.errors import InvalidValueError

from helpers.cli import cli_env
from helpers.porcelain import assert_error, commit, new_workspace, ok, run_parallel, write_files


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
    ok(run_cli(["init", "-q", "../sibling"], cwd=ws))  # beside the workspace, not inside it
    assert (ws.parent / "sibling" / ".rnstore" / "HEAD").is_file()


def test_checkout_dashdash_path_restores_from_the_index(ws, run_cli):
    write_files(ws, {"a.txt": "committed\n", "b.txt": "b\n"})
    commit(run_cli, ws, "first", "-a")
    write_files(ws, {"a.txt": "staged\n"})
    ok(run_cli(["add", "a.txt"], cwd=ws))
    write_files(ws, {"a.txt": "edited\n", "b.txt": "b edited\n"})
    head_before = ok(run_cli(["rev-parse", "HEAD"], cwd=ws)).out
    result = ok(run_cli(["checkout", "--", "a.txt"], cwd=ws))
    assert "from the index" in result.stderr
    assert (ws / "a.txt").read_text() == "staged\n"  # the index's version, as git does
    assert (ws / "b.txt").read_text() == "b edited\n"  # not named: untouched
    assert ok(run_cli(["rev-parse", "HEAD"], cwd=ws)).out == head_before
    status = ok(run_cli(["status", "--porcelain"], cwd=ws)).stdout.splitlines()
    assert status == [b"M  a.txt", b" M b.txt"], status
    assert_error(run_cli(["checkout", "--", "nope.txt"], cwd=ws), 2, "nope.txt")
    assert_error(run_cli(["checkout"], cwd=ws), 2)


# -- help and suggestions -------------------------------------------------------------


def _all_commands(run_cli, cwd) -> list[str]:
    text = ok(run_cli(["--help"], cwd=cwd)).out
    names, listing = [], False
    for line in text.splitlines():
        if line and not line.startswith(" "):
            listing = line.endswith(":") and line != "Options:"
        elif listing and line.startswith("  ") and not line.startswith("   "):
            names.append(line.split()[0])
    return names


ARTEFACTS = ("<bool>", "<list", "<str>", "<int>", "{", "}", "[[", "]...", "╭", "│")


def test_every_commands_help_shows_flags_as_flags(tmp_path, run_cli):
    names = _all_commands(run_cli, tmp_path)
    assert {"init", "add", "commit", "checkout", "diff", "log", "gc", "cat-file"} <= set(names)
    top = ok(run_cli(["--help"], cwd=tmp_path)).out
    assert top.index("  commit ") < top.index("  cat-file "), "porcelain before plumbing"
    results = run_parallel(run_cli, [([name, "--help"], tmp_path) for name in names])
    for name, result in zip(names, results):
        text = ok(result).out
        assert text.startswith(f"Usage: rnstore {name}"), text
        for artefact in ARTEFACTS:
            assert artefact not in text, f"`rnstore {name} --help` shows {artefact!r}:\n{text}"
    checkout = ok(run_cli(["checkout", "--help"], cwd=tmp_path)).out
    assert "-f, --force " in checkout and "[-- PATH...]" in checkout.splitlines()[0], checkout


def test_help_command_prints_a_commands_help(tmp_path, run_cli):
    assert ok(run_cli(["help", "commit"], cwd=tmp_path)).out == \
        ok(run_cli(["commit", "--help"], cwd=tmp_path)).out.replace("rnstore commit", "rnstore commit")
    assert "Commands:" in ok(run_cli(["help"], cwd=tmp_path)).out
    assert_error(run_cli(["help", "nosuch"], cwd=tmp_path), 2, "nosuch")


@pytest.mark.parametrize("typo, proposed", [
    ("restore", "checkout -- PATH"), ("stat", "status"), ("comit", "commit"), ("chekout", "checkout")])
def test_did_you_mean_proposes_only_what_does_the_same(tmp_path, run_cli, typo, proposed):
    error = assert_error(run_cli([typo], cwd=tmp_path), 2)
    assert f"`rnstore {proposed}`" in error, error
    assert "read-tree" not in error


def test_did_you_mean_stays_silent_rather_than_guess(tmp_path, run_cli):
    error = assert_error(run_cli(["rebase"], cwd=tmp_path), 2, "rebase")
    assert "did you mean" not in error.lower(), error


def test_hints_name_only_commands_that_exist(tmp_path, run_cli):
    """Every `rnstore WORD` a message, hint or help of the package names is
    a command `rnstore --help` lists (or a git habit's equivalent)."""
    commands = set(_all_commands(run_cli, tmp_path))
    package = Path(rnstore.__file__).parent
    named = {}
    for source in package.rglob("*.py"):
        for word in re.findall(r"`rnstore ([a-z][a-z-]*)", source.read_text()):
            named.setdefault(word, source.name)
    unknown = {word: where for word, where in named.items() if word not in commands}
    assert not unknown, f"hints name commands that do not exist: {unknown}"
    assert {"add", "commit", "fsck"} <= set(named)


# -- status ---------------------------------------------------------------------------


def test_status_short_paths_are_relative_to_the_current_folder(ws, run_cli):
    write_files(ws, {"top.txt": "t", "sub/a.txt": "a", "sub/deep/b.txt": "b"})
    commit(run_cli, ws, "first", "-a")
    write_files(ws, {"top.txt": "t2", "sub/a.txt": "a2", "sub/new.txt": "n"})
    ok(run_cli(["add", "sub/a.txt"], cwd=ws))
    assert ok(run_cli(["status", "-s"], cwd=ws / "sub")).stdout.splitlines() == [
        b"M  a.txt", b" M ../top.txt", b"?? new.txt"]
    assert ok(run_cli(["status", "--short"], cwd=ws / "sub" / "deep")).stdout.splitlines() == [
        b"M  ../a.txt", b" M ../../top.txt", b"?? ../new.txt"]
    # --porcelain stays root-relative, for scripts (as git's)
    assert ok(run_cli(["status", "--porcelain"], cwd=ws / "sub")).stdout.splitlines() == [
        b"M  sub/a.txt", b" M top.txt", b"?? sub/new.txt"]
    human = ok(run_cli(["status"], cwd=ws / "sub")).out
    assert "modified:   a.txt" in human and "modified:   ../top.txt" in human, human


def test_status_ignored_lists_what_rnignore_hides(ws, run_cli):
    write_files(ws, {".rnignore": "data/\n*.log\n", "a.py": "a", "data/x.csv": "x",
                     "run.log": "l", "sub/b.log": "b"})
    commit(run_cli, ws, "first", "-a")
    plain = ok(run_cli(["status", "-s"], cwd=ws)).stdout
    assert plain == b"", plain
    assert ok(run_cli(["status", "-s", "--ignored"], cwd=ws)).stdout.splitlines() == [
        b"!! data/", b"!! run.log", b"!! sub/b.log"]
    human = ok(run_cli(["status", "--ignored"], cwd=ws / "sub")).out
    assert "Ignored files:" in human and "  ../data/" in human and "  b.log" in human, human
    document = json.loads(ok(run_cli(["status", "--json", "--ignored"], cwd=ws)).stdout)
    assert document["ignored"] == ["data/", "run.log", "sub/b.log"]


def test_a_tracked_file_now_ignored_is_not_shown_as_deleted(ws, run_cli):
    write_files(ws, {"a.py": "a", "results/out.csv": "1,2"})
    commit(run_cli, ws, "first", "-a")
    write_files(ws, {".rnignore": "# outputs\nresults/\n"})
    human = ok(run_cli(["status"], cwd=ws)).out
    assert "deleted" not in human, human
    assert "now ignored:" in human and "results/out.csv" in human and ".rnignore:2: results/" in human, human
    document = json.loads(ok(run_cli(["status", "--json"], cwd=ws)).stdout)
    assert document["now_ignored"] == [{"path": "results/out.csv", "rule": ".rnignore:2: results/"}]
    assert document["unstaged"] == []
    (ws / "results" / "out.csv").unlink()  # gone from disk: a deletion again
    human = ok(run_cli(["status"], cwd=ws)).out
    assert "deleted:    results/out.csv" in human, human


# -- log and diff ---------------------------------------------------------------------


@pytest.fixture
def history(ws, run_cli):
    """Four snapshots: lr runs touching train.py and data.cfg differently."""
    ids = []
    for number, (files, meta, message) in enumerate([
            ({"train.py": "v1\n", "cfg/data.cfg": "d1\n"}, "lr=0.1", "baseline run"),
            ({"train.py": "v2\n"}, "lr=0.05", "Lower LR"),
            ({"cfg/data.cfg": "d2\n"}, "lr=0.05", "new data"),
            ({"notes.md": "n\n"}, "lr=0.2", "notes only")]):
        write_files(ws, files)
        ids.append(commit(run_cli, ws, message, "-a", "--meta", meta, "--meta", f"run={number}"))
    return ws, ids


def _oneline_ids(result) -> list[str]:
    return [line.split()[0] for line in ok(result).out.splitlines()]


def test_log_filters_by_count_message_meta_and_path(history, run_cli):
    ws, ids = history
    short = [i[:12] for i in ids]
    assert _oneline_ids(run_cli(["log", "--oneline", "-2"], cwd=ws)) == short[:1:-1]
    assert _oneline_ids(run_cli(["log", "--oneline", "--grep", "lr"], cwd=ws)) == [short[1]]
    assert _oneline_ids(run_cli(["log", "--oneline", "--meta", "lr=0.05"], cwd=ws)) == [short[2], short[1]]
    assert _oneline_ids(run_cli(["log", "--oneline", "--meta", "lr=0.05", "--meta", "run=1"],
                                cwd=ws)) == [short[1]]
    assert _oneline_ids(run_cli(["log", "--oneline", "--", "train.py"], cwd=ws)) == [short[1], short[0]]
    assert _oneline_ids(run_cli(["log", "--oneline", "--", "data.cfg"], cwd=ws / "cfg")) == \
        [short[2], short[0]]
    assert _oneline_ids(run_cli(["log", "--oneline", "-1", "--", "cfg"], cwd=ws)) == [short[2]]
    listed = json.loads(ok(run_cli(["log", "--json", "--meta", "lr=0.2"], cwd=ws)).stdout)
    assert [e["id"] for e in listed] == [ids[3]]


def test_log_stat_lists_the_files_each_snapshot_changed(history, run_cli):
    ws, ids = history
    text = ok(run_cli(["log", "--stat", "-2"], cwd=ws)).out
    first, second = text.split("snapshot ")[1:]
    assert "notes.md | " in first and "1 file changed, 1 insertion(+), 0 deletions(-)" in first
    assert "cfg/data.cfg | " in second and "notes.md" not in second, text


def test_diff_cached_paths_name_only_and_no_commit(ws, run_cli):
    write_files(ws, {"a.txt": "a\n", "sub/b.txt": "b\n"})
    # no snapshot yet: everything is added
    assert ok(run_cli(["diff", "--name-status"], cwd=ws)).stdout.splitlines() == [
        b"A\ta.txt", b"A\tsub/b.txt"]
    commit(run_cli, ws, "first", "-a")
    write_files(ws, {"a.txt": "a2\n", "sub/b.txt": "b2\n", "c.txt": "c\n"})
    ok(run_cli(["add", "a.txt"], cwd=ws))
    for flag in ("--cached", "--staged"):
        assert ok(run_cli(["diff", flag, "--name-only"], cwd=ws)).stdout == b"a.txt\n"
    assert ok(run_cli(["diff", "--name-only"], cwd=ws)).stdout.splitlines() == [
        b"a.txt", b"c.txt", b"sub/b.txt"]
    assert ok(run_cli(["diff", "--name-only", "--", "b.txt"], cwd=ws / "sub")).stdout == b"sub/b.txt\n"
    text = ok(run_cli(["diff", "--cached"], cwd=ws)).out
    assert "-a\n" in text and "+a2\n" in text and "b2" not in text, text
    stat = ok(run_cli(["diff", "--stat", "--", "sub"], cwd=ws)).out
    assert "sub/b.txt" in stat and "1 file changed" in stat, stat


# -- export ---------------------------------------------------------------------------


def test_export_without_output_streams_a_tar_to_a_pipe(ws, run_cli, tmp_path):
    write_files(ws, {"a.txt": "a\n", "sub/b.txt": "b\n"})
    snapshot = commit(run_cli, ws, "first", "-a")
    result = ok(run_cli(["export", snapshot], cwd=ws))
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
        assert sorted(archive.getnames()) == ["a.txt", "sub", "sub/b.txt"]
    assert result.stdout == ok(run_cli(["export", snapshot, "-o", "-"], cwd=ws)).stdout
    only = ok(run_cli(["export", snapshot, "--", "sub"], cwd=ws)).stdout
    with tarfile.open(fileobj=io.BytesIO(only)) as archive:
        assert "a.txt" not in archive.getnames() and "sub/b.txt" in archive.getnames()


def test_export_refuses_a_terminal(ws, run_cli):
    write_files(ws, {"a.txt": "a\n"})
    commit(run_cli, ws, "first", "-a")
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "rnstore", "export", "HEAD"], cwd=ws,
                              stdout=terminal, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              env=cli_env(), timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == 2
    assert b"error: refusing to write an archive to a terminal" in proc.stderr, proc.stderr


# -- Python API -----------------------------------------------------------------------


def test_api_methods_take_explicit_keywords():
    for name in ("add", "status", "commit", "snapshot", "log", "tag", "checkout", "export",
                 "forget", "gc", "du", "fsck"):
        parameters = inspect.signature(getattr(Repository, name)).parameters.values()
        assert not any(p.kind is p.VAR_KEYWORD for p in parameters), f"Repository.{name} takes **options"
    assert "meta" in inspect.signature(Repository.snapshot).parameters


def test_api_snapshot_meta_dict_unchanged_and_iterable_log(tmp_path):
    root = tmp_path / "exp"
    root.mkdir()
    (root / "train.py").write_text("print(1)\n")
    repo = Repository.init(root, default_ignore=False)
    first = repo.snapshot("launch", meta={"lr": 0.1, "warm": True})
    assert not first.unchanged
    again = repo.snapshot("launch again", meta={"lr": 0.1})
    assert again.unchanged and again.id == first.id and again.files == 1
    (root / "train.py").write_text("print(2)\n")
    second = repo.snapshot("changed", meta=["lr=0.05"])
    assert not second.unchanged and second.parent == first.id
    assert [entry.id for entry in repo.log()] == [second.id, first.id]
    assert len(repo.log(meta={"lr": 0.1})) == 1
    [entry] = repo.log(meta={"warm": True})
    assert entry.snapshot.meta["lr"] == "0.1" and entry.snapshot.meta["warm"] == "true"
    with pytest.raises(InvalidValueError) as caught:
        repo.commit("x", meta=["novalue"], allow_empty=True)
    assert "--meta" not in str(caught.value)  # API words, not CLI flags


def test_json_on_show_config_and_ls_files(ws, run_cli):
    write_files(ws, {"a.txt": "abc", "sub/b.txt": "b"})
    snapshot = commit(run_cli, ws, "first", "-a", "--meta", "lr=0.1")
    shown = json.loads(ok(run_cli(["show", "--json"], cwd=ws)).stdout)
    [logged] = json.loads(ok(run_cli(["log", "--json"], cwd=ws)).stdout)
    assert shown == logged and shown["id"] == snapshot and shown["meta"]["lr"] == "0.1"
    blob = json.loads(ok(run_cli(["show", "--json", "HEAD:a.txt"], cwd=ws)).stdout)
    assert blob["type"] == "blob" and blob["size"] == 3
    folder = json.loads(ok(run_cli(["show", "--json", "HEAD:sub"], cwd=ws)).stdout)
    assert [e["path"] for e in folder] == ["b.txt"]
    settings = json.loads(ok(run_cli(["config", "--json"], cwd=ws)).stdout)
    assert "limits.max_bytes" in settings and "gc.prune" in settings
    assert json.loads(ok(run_cli(["config", "--json", "gc.prune"], cwd=ws)).stdout) == \
        {"gc.prune": settings["gc.prune"]}
    files = json.loads(ok(run_cli(["ls-files", "--json"], cwd=ws)).stdout)
    assert [(f["path"], f["size"]) for f in files] == [("a.txt", 3), ("sub/b.txt", 1)]
    assert all(len(f["id"]) == 64 and f["mode"] == "100644" for f in files)


# -- plurals and counts ---------------------------------------------------------------


def test_add_counts_files_not_empty_folders_and_says_plurals_right(ws, run_cli):
    write_files(ws, {"a.txt": "a"})
    (ws / "empty").mkdir()
    summary = ok(run_cli(["add", "."], cwd=ws)).stderr
    assert "staged 1 added, 0 modified, 0 deleted, 1 empty folder added; the index holds 1 file," \
        in summary, summary
    (ws / "empty").rmdir()
    summary = ok(run_cli(["add", "."], cwd=ws)).stderr
    assert "0 deleted, 1 empty folder removed; the index holds 1 file," in summary, summary
    first = commit(run_cli, ws, "one", "-a")
    write_files(ws, {"a.txt": "changed"})
    commit(run_cli, ws, "two", "-a")
    (ws / "a.txt").write_text("edited")
    error = assert_error(run_cli(["checkout", first], cwd=ws), 1)
    assert "1 path " in error and "path(s)" not in error, error


# -- completions ----------------------------------------------------------------------


def _complete(run_cli, cwd, *words: str) -> list[str]:
    line = " ".join(("rnstore",) + words)
    result = run_cli([], cwd=cwd, env={"_RNSTORE_COMPLETE": "complete_bash", "COMP_WORDS": line,
                                      "COMP_CWORD": str(len(words))})
    return ok(result).out.split()


def test_completion_offers_revisions_formats_config_keys_and_porcelain_first(ws, run_cli):
    write_files(ws, {"a.txt": "a"})
    snapshot = commit(run_cli, ws, "first", "-a")
    ok(run_cli(["tag", "paper-v1"], cwd=ws))
    revisions = _complete(run_cli, ws, "checkout", "")
    assert {"HEAD", "main", "paper-v1", snapshot[:12]} <= set(revisions), revisions
    assert _complete(run_cli, ws, "log", "pap") == ["paper-v1"]
    assert _complete(run_cli, ws, "diff", snapshot[:6]) == [snapshot[:12]]
    assert _complete(run_cli, ws, "export", "HEAD", "--format", "tar.") == ["tar.gz", "tar.zst"]
    assert _complete(run_cli, ws, "config", "limits.") == ["limits.max_bytes", "limits.max_files"]
    commands = _complete(run_cli, ws, "")
    assert commands.index("commit") < commands.index("cat-file") < len(commands)
    assert _complete(run_cli, ws.parent, "checkout", "") == []  # outside a workspace: nothing


def test_gc_json_last_run_is_iso_utc(ws, run_cli):
    ok(run_cli(["gc", "-q"], cwd=ws))
    document = json.loads(ok(run_cli(["gc", "--json", "-q"], cwd=ws)).stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", document["last_run"]), document
