"""Issue 16: the habits git and restic users bring, safe defaults and the
rough edges a new user hits. Each test runs the CLI in a real subprocess."""

from __future__ import annotations

import inspect
import io
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import rnstore
import rnstore.errors
from rnstore import Repository
from rnstore.errors import InvalidValueError

from helpers.cli import cli_env
from helpers.porcelain import assert_error, commit, new_workspace, ok, run_parallel, write_files
from helpers.terminal import run_on_pty


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
        for line in text.splitlines():  # `cat-file` listed its argument as "KIND] OBJ"
            assert line.count("[") == line.count("]"), f"`rnstore {name} --help`: {line!r}"
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


# -- one unit system ------------------------------------------------------------------

DECIMAL_UNITS = re.compile(r"\d (kB|KB|MB|GB|TB)\b")


def test_sizes_are_understood_as_written_and_printed_in_binary_units(ws, run_cli):
    write_files(ws, {"f.bin": b"x" * 1010})
    ok(run_cli(["config", "limits.max_bytes", "1KB"], cwd=ws))  # 1,000 bytes
    refused = run_cli(["add", "."], cwd=ws)
    assert_error(refused, 1, "1010 B in 1 file, over limits.max_bytes (1KB = 1000 B)")
    assert "hint:       1010 B  f.bin" in refused.stderr and "--force" in refused.stderr, refused.stderr
    ok(run_cli(["config", "limits.max_bytes", "1KiB"], cwd=ws))  # 1,024 bytes
    assert "1010 B" in ok(run_cli(["add", "."], cwd=ws)).stderr
    assert ok(run_cli(["config", "limits.max_bytes"], cwd=ws)).out == "1KiB\n"  # kept as written
    ok(run_cli(["config", "limits.max_bytes", "2MB"], cwd=ws))
    write_files(ws, {"big.bin": os.urandom(2_050_000)})  # over 2 MB, under 2 MiB
    assert_error(run_cli(["add", "."], cwd=ws), 1,
                 "the snapshot would hold 2.0 MiB in 2 files, over limits.max_bytes (2MB = 1.9 MiB)")
    ok(run_cli(["config", "limits.max_bytes", "2MiB"], cwd=ws))
    summary = ok(run_cli(["add", "."], cwd=ws)).stderr
    assert "2.0 MiB" in summary, summary
    commit(run_cli, ws, "sizes")
    outputs = [ok(run_cli(args, cwd=ws)) for args in (["du"], ["gc"], ["log"], ["fsck"])]
    printed = "".join(r.out + r.stderr for r in outputs)
    assert "MiB" in printed and not DECIMAL_UNITS.search(printed), printed


def test_the_readme_states_the_unit_system():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "500MB = 500,000,000 bytes" in readme and "500MiB = 524,288,000 bytes" in readme
    assert "binary units" in readme


# -- fsck progress and Ctrl-C -----------------------------------------------------------


@pytest.fixture(scope="module")
def objects_to_check(tmp_path_factory):
    """A workspace of 600 incompressible files (60 MB): fsck reads for a while."""
    root = tmp_path_factory.mktemp("fsck") / "ws"
    new_workspace(root)
    for i in range(600):
        (root / f"d{i // 100}").mkdir(exist_ok=True)
        (root / f"d{i // 100}" / f"f{i:03}.bin").write_bytes(os.urandom(100_000))
    subprocess.run([sys.executable, "-m", "rnstore", "commit", "-a", "-q", "-m", "data"], cwd=root,
                   env=cli_env({"RNSTORE_PROGRESS": "0"}), check=True, capture_output=True)
    return root


def test_fsck_shows_one_bar_of_objects_with_a_real_eta(objects_to_check):
    code, _, terminal = run_on_pty(["fsck"], objects_to_check)
    assert code == 0, terminal
    text = terminal.decode("utf-8", "replace")
    assert "fsck: checking objects" in text and "/608 objects" in text, text[-600:]
    assert "following references" not in text  # no second, empty bar
    # bytes, speed, count and time left: the last frame, at the end
    assert re.search(r"(5\d\.\d)/\1 MiB [\d.]+ (B|KiB|MiB|GiB)/s 608/608 objects\S* \S*\d:\d\d:\d\d", text), \
        text[-600:]
    assert not DECIMAL_UNITS.search(text), text[-600:]
    assert text.endswith("fsck: 608 objects checked, no problems\r\n"), text[-300:]


def test_ctrl_c_erases_the_bar_and_says_what_was_interrupted(objects_to_check):
    """SIGINT as soon as fsck's bar shows: exit 130, the bar erased rather
    than left half drawn, and one line saying how far fsck got."""
    for _attempt in range(5):
        code, _, terminal = run_on_pty(["fsck"], objects_to_check, interrupt_at=b"fsck: checking objects")
        if code != 0:
            break
    else:
        pytest.fail("fsck finished before every SIGINT: make the fixture bigger")
    text = terminal.decode("utf-8", "replace")
    assert code == 130, text[-600:]
    erase = text.rindex("\x1b[2K")  # the bar's line cleared ...
    after = text[erase + len("\x1b[2K"):]
    # ... and then exactly one line
    assert re.fullmatch(r"error: interrupted: fsck: checking objects, [\d,]+ of 608 objects done\r\n",
                        after), repr(text[-400:])
    assert "━" not in after and "\x1b[1A" in text[erase - 10:erase], repr(text[-400:])


# -- JSON documents -------------------------------------------------------------------

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
TIME_KEYS = ("time", "last_run", "gone_since", "last_commit")


def _time_fields(document, where: str = ""):
    if isinstance(document, dict):
        for key, value in document.items():
            if key in TIME_KEYS:
                yield f"{where}.{key}", value
            yield from _time_fields(value, f"{where}.{key}")
    elif isinstance(document, list):
        for item in document:
            yield from _time_fields(item, f"{where}[]")


def test_every_json_time_field_is_iso_8601_utc(tmp_path, run_cli):
    store = tmp_path / "store"
    a, gone, remote = tmp_path / "a", tmp_path / "gone", tmp_path / "remote"
    for folder in (a, gone):
        folder.mkdir()
        ok(run_cli(["init", "-q", "--no-default-ignore", "--objects", str(store)], cwd=folder))
    write_files(a, {"x.txt": "x\n"})
    first = commit(run_cli, a, "first", "-a")
    write_files(a, {"x.txt": "x2\n"})
    commit(run_cli, a, "second", "-a")
    write_files(gone, {"g.txt": "g\n"})
    commit(run_cli, gone, "in gone", "-a")
    ok(run_cli(["gc", "-q"], cwd=a))
    shutil.rmtree(gone)
    ok(run_cli(["gc", "-q"], cwd=a))  # first sees it gone: gone_since is set
    ok(run_cli(["remote", "add", "origin", str(remote)], cwd=a))
    ok(run_cli(["push", "origin", "-q"], cwd=a))
    commands = [["log", "--json"], ["show", "--json"], ["snapshots", "--json"],
                ["snapshots", "--json", "--remote", "origin"], ["forget", "--json", "--dry-run", first],
                ["gc", "--json", "--dry-run"], ["du", "--json"], ["fsck", "--json"],
                ["tag", "--json", "v1"], ["tag", "--json"], ["workspaces", "--json"]]
    seen = {}
    for args in commands:
        document = json.loads(ok(run_cli(args, cwd=a)).stdout)
        for field, value in _time_fields(document, " ".join(args[:1])):
            seen[field] = value
            assert value is None or ISO_UTC.fullmatch(value), (args, field, value)
    for field in ("log[].time", "show.time", "snapshots[].time", "forget.forgotten[].time",
                  "gc.last_run", "du.snapshots[].time", "tag[].time", "workspaces[].gone_since",
                  "workspaces[].last_commit"):
        assert field in seen, (field, sorted(seen))
    assert any(value for field, value in seen.items() if field == "workspaces[].gone_since")


def test_tag_and_forget_print_json(ws, run_cli):
    write_files(ws, {"a.txt": "a\n"})
    first = commit(run_cli, ws, "first", "-a")
    write_files(ws, {"a.txt": "b\n"})
    commit(run_cli, ws, "second", "-a")
    bound = json.loads(ok(run_cli(["tag", "--json", "v1", first], cwd=ws)).stdout)
    assert bound == {"name": "v1", "id": first, "deleted": False}
    deleted = json.loads(ok(run_cli(["tag", "--json", "-d", "v1"], cwd=ws)).stdout)
    assert deleted == {"name": "v1", "id": first, "deleted": True}
    forgotten = json.loads(ok(run_cli(["forget", "--json", "--keep-last", "1"], cwd=ws)).stdout)
    assert [item["id"] for item in forgotten["forgotten"]] == [first]
    assert forgotten["kept"][0]["reasons"] == ["keep-last 1"]


# -- Python API: paths and words ----------------------------------------------------------


def test_api_result_paths_are_str_with_the_bytes_kept(tmp_path):
    from rnstore.diff import diff

    root = tmp_path / "exp"
    root.mkdir()
    odd = b"caf\xe9.txt"  # Latin-1, not UTF-8
    (root / os.fsdecode(odd)).write_bytes(b"one\n")
    (root / "plain.txt").write_text("plain\n")
    repo = Repository.init(root, default_ignore=False)
    added = repo.add(cwd=root)
    assert added.added == [os.fsdecode(odd), "plain.txt"] and all(type(p) is str for p in added.added)
    assert added.raw_added == [odd, b"plain.txt"]
    first = repo.commit("first")
    (root / os.fsdecode(odd)).write_bytes(b"two\n")
    (root / "new.txt").write_text("new\n")
    status = repo.status()
    [change] = status.unstaged
    assert (change.path, change.raw_path, change.status) == (os.fsdecode(odd), odd, "M")
    assert status.untracked == ["new.txt"] and status.raw_untracked == [b"new.txt"]
    [entry] = [e for e in diff(repo, None).entries if e.status == "M"]
    assert entry.path == os.fsdecode(odd) and entry.raw_path == odd
    assert os.fsencode(entry.path) == odd  # the str gives the bytes back, too
    restored = repo.checkout(first.id, target=tmp_path / "out")
    assert sorted(restored.written) == [os.fsdecode(odd), "plain.txt"]
    assert sorted(restored.raw_written) == [odd, b"plain.txt"]


def test_library_errors_name_api_keywords_and_the_cli_names_flags(ws, run_cli):
    write_files(ws, {"a.txt": "a\n"})
    commit(run_cli, ws, "first", "-a")
    ok(run_cli(["tag", "v1"], cwd=ws))
    write_files(ws, {"a.txt": "b\n"})
    commit(run_cli, ws, "second", "-a")
    repo = Repository.open(ws)
    for call, words, flag in [
            (lambda: repo.commit("again"), "allow_empty=True", "--allow-empty"),
            (lambda: repo.tag("v1", "HEAD"), "force=True", "--force"),
            (lambda: repo.forget(keep_last=0), "keep_last", "--keep-last")]:
        with pytest.raises(rnstore.errors.RnstoreError) as caught:
            call()
        text = " ".join([str(caught.value), *caught.value.hints])
        assert words in text and not re.search(r"(?<![\w`])--[a-z]", text), text
    assert_error(run_cli(["commit", "-m", "again"], cwd=ws), 1, "--allow-empty")
    error = assert_error(run_cli(["tag", "v1"], cwd=ws), 2, "--force")
    assert "force=True" not in error
    assert_error(run_cli(["forget", "--keep-last", "0"], cwd=ws), 2, "--keep-last")


def test_no_library_message_names_a_cli_flag():
    """Messages and hints raised by the library (rnstore/ minus cli/) name
    the API's keywords; only a whole command to run (in backquotes, such as
    `rnstore gc --prune now`) may carry flags."""
    import ast

    flag = re.compile(r"(?<![\w`-])--?[a-z][a-z-]*\b")
    package = Path(rnstore.__file__).parent
    found = []
    for source in package.rglob("*.py"):
        if "cli" in source.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            parts = list(node.args[:1]) if name.endswith("Error") else []
            parts += [kw.value for kw in node.keywords if kw.arg == "hints"]
            for part in parts:
                for text in ast.walk(part):
                    if isinstance(text, ast.Constant) and isinstance(text.value, str) \
                            and flag.search(re.sub(r"`[^`]*`", "", text.value)):
                        found.append(f"{source.name}:{text.lineno}: {text.value!r}")
    assert not found, "library messages naming CLI flags:\n" + "\n".join(found)


# -- completions of remote names; default ignore rules; the CI recipe ---------------------------------


def test_completion_offers_remote_names(ws, run_cli, tmp_path):
    ok(run_cli(["remote", "add", "origin", str(tmp_path / "r1")], cwd=ws))
    ok(run_cli(["remote", "add", "backup", str(tmp_path / "r2")], cwd=ws))
    for words in (("push", ""), ("fetch", ""), ("pull", ""), ("remote", "remove", ""),
                  ("gc", "--remote", ""), ("forget", "--remote", ""), ("snapshots", "--remote", "")):
        assert _complete(run_cli, ws, *words) == ["backup", "origin"], words
    assert _complete(run_cli, ws, "push", "or") == ["origin"]
    assert _complete(run_cli, ws, "remote", "add", "") == []  # a new name: nothing to offer
    assert _complete(run_cli, ws.parent, "push", "") == []


def test_default_rnignore_keeps_data_folders_out_but_not_small_fixtures(tmp_path, run_cli):
    ws = new_workspace(tmp_path / "ws", default_ignore=True)
    files = {f"{folder}/x.{ext}": "1" for folder in ("data", "datasets", "checkpoints")
             for ext in ("npy", "npz", "pkl", "parquet", "arrow", "onnx", "bin")}
    files.update({"train.py": "p", "tests/fixture.npy": "f", "model.pt": "m"})
    write_files(ws, files)
    short = ok(run_cli(["status", "-s", "--ignored"], cwd=ws)).stdout.splitlines()
    assert b"!! data/" in short and b"!! datasets/" in short and b"!! checkpoints/" in short, short
    assert b"!! model.pt" in short and b"?? tests/fixture.npy" in short and b"?? train.py" in short, short
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "`*.npy`, `*.npz`, `*.pkl`, `*.parquet`" in readme and "small fixtures" in readme


def test_the_readme_ci_recipe_exports_outside_the_workspace():
    """tests/test_shared_tags.py runs the recipe; here: its export target is
    not inside the job's folder, so it never lands in the next snapshot."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    recipe = readme.split("## In CI", 1)[1].split("```", 2)[1]
    [export] = [line for line in recipe.splitlines() if line.startswith("rnstore export")]
    assert '-o "$ARTIFACTS/' in export, export


def test_diff_stat_before_the_first_snapshot_shows_everything_added(ws, run_cli):
    write_files(ws, {"a.txt": "a\nb\n", "sub/c.txt": "c\n"})
    stat = ok(run_cli(["diff", "--stat"], cwd=ws)).out
    assert "a.txt" in stat and "sub/c.txt" in stat
    assert "2 files changed, 3 insertions(+), 0 deletions(-)" in stat, stat


@pytest.mark.parametrize("args", [["tag", "a\nb"], ["checkout", "x\x1b[2Jy"], ["x\x1b[2Jy"],
                                  ["log", "--meta", "a\x1bb"]])
def test_an_error_is_one_line_whatever_the_name_holds(tmp_path, run_cli, args):
    """A name with a newline split the `error:` line in two, and an escape
    sequence in one reached the terminal (clearing it, say): control
    characters in a message are shown escaped."""
    new_workspace(tmp_path / "ws")
    result = run_cli(args, cwd=tmp_path / "ws")
    assert_error(result, 2)
    assert "\x1b" not in result.stderr and ("\\n" in result.stderr or "\\x1b" in result.stderr), result.stderr


def test_a_hostile_remote_ref_name_reaches_the_terminal_escaped(tmp_path, run_cli):
    """A ref a remote holds under a name with an escape sequence was printed
    as it is by fetch and clone ("refused refs/heads/<ESC>[31mred")."""
    ws = new_workspace(tmp_path / "ws")
    commit(run_cli, ws, "one", "--allow-empty")
    ok(run_cli(["remote", "add", "origin", str(tmp_path / "remote")], cwd=ws))
    ok(run_cli(["push", "-q", "origin"], cwd=ws))
    version = tmp_path / "remote" / "refs" / "heads" / "main" / f"{1:020d}"
    hostile = tmp_path / "remote" / "refs" / "heads" / "\x1b[31mred" / version.name
    hostile.parent.mkdir()
    hostile.write_bytes(version.read_bytes())
    for args in (["fetch", "origin"], ["clone", str(tmp_path / "remote"), str(tmp_path / "clone")]):
        result = run_cli(args, cwd=ws)
        assert result.returncode == 0, result
        assert "refused     refs/heads/\\x1b[31mred" in result.out and "\x1b" not in result.out + result.stderr
