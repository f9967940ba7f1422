"""Findings from trying remotes from outside (as a new user, and with
hostile remote contents): each test fails on the code before its fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.remote import workspace_with_snapshot

from rnstore import Repository
from rnstore.errors import CorruptStoreError
from rnstore.remote import transfer
from rnstore.remote.backend import open_backend
from rnstore.remote.remote import Remote


def test_fetch_json_lists_refs_already_up_to_date_as_push_does(tmp_path):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    a.tag("v1")
    transfer.push(a, "origin", ["main", "v1"])
    b = workspace_with_snapshot(tmp_path / "b", seed=3, url=url)
    first = run_cli(["fetch", "--json", "origin"], tmp_path / "b")
    assert first.returncode == 0, first.stderr
    again = run_cli(["fetch", "--json", "origin"], tmp_path / "b")
    assert again.returncode == 0, again.stderr
    main = a.refs.resolve("refs/heads/main")
    assert [(r["ref"], r["status"], r["old"], r["new"]) for r in json.loads(again.stdout)["refs"]] == [
        ("refs/remotes/origin/main", "up-to-date", main, main), ("refs/tags/v1", "up-to-date", main, main)]
    pushed = run_cli(["push", "--json", "origin", "main"], tmp_path / "a")
    assert [r["status"] for r in json.loads(pushed.stdout)["refs"]] == ["up-to-date"]
    assert b.refs.resolve("refs/remotes/origin/main") == main


@pytest.mark.parametrize("option, needle", [
    ("client_kwargs=eu-west-1", "option 'client_kwargs' of remote s3://b/p takes nested options "
                                "(client_kwargs.KEY=VALUE)"),
    ("config_kwargs=5", "option 'config_kwargs' of remote s3://b/p takes nested options"),
    ("no_such_option=5", "unknown option 'no_such_option' for remote s3://b/p"),
    ("anon=maybe", "option 'anon' of remote s3://b/p takes true or false, not 'maybe'"),
    ("max_concurrency=x", "option 'max_concurrency' of remote s3://b/p takes a whole number, not 'x'"),
    ("client_kwargs..x=1", "backend option 'client_kwargs..x' is not KEY or KEY.SUBKEY"),
])
def test_a_wrong_s3_option_is_one_error_naming_it_and_nothing_is_recorded(tmp_path, option, needle):
    """Such options were recorded, then every push failed with botocore's
    TypeError text ("AioSession.__init__() got an unexpected keyword
    argument 'client_kwargs.region_name'", "'str' object has no attribute 'copy'")."""
    pytest.importorskip("s3fs")
    workspace_with_snapshot(tmp_path / "a")
    result = run_cli(["remote", "add", "-o", option, "origin", "s3://b/p"], tmp_path / "a")
    assert result.returncode == 2 and result.stderr.splitlines()[0].startswith(f"error: {needle}"), result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert run_cli(["remote"], tmp_path / "a").out == ""


def test_nested_s3_options_reach_the_backend(tmp_path, s3_server):
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/team"
    workspace_with_snapshot(tmp_path / "a")
    env = s3_server.env
    for option in ("client_kwargs.region_name=eu-west-1", "config_kwargs.read_timeout=30"):
        added = run_cli(["remote", "add", "-o", option, option.split(".")[0], url], tmp_path / "a", env=env)
        assert added.returncode == 0, added.stderr
    for name in ("client_kwargs", "config_kwargs"):
        pushed = run_cli(["push", name], tmp_path / "a", env=env)
        assert pushed.returncode == 0, pushed.stderr
    backend = open_backend(url, {"client_kwargs.region_name": "eu-west-1", "config_kwargs.read_timeout": "30"})
    config = backend.inner.fs.config_kwargs  # merged with rnstore's own timeouts, not in their place
    assert config["read_timeout"] == 30 and "connect_timeout" in config


def test_a_clone_of_a_remote_with_only_tags_says_nothing_was_checked_out(tmp_path):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    tagged = a.tag("v1")
    transfer.push(a, "origin", ["v1"])
    result = run_cli(["clone", url, "b"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("warning: the remote has no branch, only tags (v1): nothing was checked out, and main has "
            "no snapshot yet; `rnstore checkout v1` checks out a tag") in result.stderr.splitlines()
    as_json = run_cli(["clone", "--json", url, "c"], tmp_path)
    assert "only tags (v1)" in json.loads(as_json.stdout)["warnings"][0]
    assert run_cli(["checkout", "v1"], tmp_path / "b").returncode == 0
    assert Repository.open(tmp_path / "b").refs.head()[1] == tagged


def test_a_clone_of_an_empty_remote_says_so(tmp_path):
    url = str(tmp_path / "share")
    Remote(open_backend(url)).ensure()
    result = run_cli(["clone", url, "b"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("warning: the remote is empty: nothing was checked out, and main has no snapshot yet"
            in result.stderr.splitlines())


def test_a_damaged_ref_version_says_how_to_recover_and_the_advice_works(tmp_path):
    url = tmp_path / "share"
    a = workspace_with_snapshot(tmp_path / "a", url=str(url))
    transfer.push(a, "origin")
    (tmp_path / "a" / "new.txt").write_text("new\n")
    second = a.snapshot("second")
    transfer.push(a, "origin")
    damaged = url / "refs" / "heads" / "main" / "00000000000000000003"
    damaged.write_bytes(b'{"id": "not an id"}\n')   # another program's, or bit rot: rnstore writes whole
    for args, cwd in ((["push", "origin"], tmp_path / "a"), (["fetch", "origin"], tmp_path / "a"),
                      (["clone", str(url), "c"], tmp_path)):
        result = run_cli(args, cwd)
        assert result.returncode == 1, result.stderr
        assert result.stderr.splitlines()[0].startswith(
            "error: remote ref refs/heads/main/00000000000000000003 is damaged"), result.stderr
        assert result.stderr.splitlines()[1].startswith("hint: delete that key on the remote"), result.stderr
    damaged.unlink()   # as the hint says: the ref names its previous version's snapshot again
    clone = run_cli(["clone", str(url), "c"], tmp_path)
    assert clone.returncode == 0, clone.stderr
    assert Repository.open(tmp_path / "c").refs.head()[1] == second.id


def _dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def _leave_a_killed_clones_folder(workspace, age: float = 0) -> Path:
    """What `clone` killed with kill -9 leaves: its fetch's private folder
    in .rnstore, named with its (now dead) pid, holding verified blobs."""
    leftover = workspace / ".rnstore" / f".tmp-fetched-{_dead_pid()}-beef0123"
    leftover.mkdir()
    (leftover / ("ab" * 32)).write_bytes(b"x" * 100)
    if age:
        for path in (leftover / ("ab" * 32), leftover):
            os.utime(path, (time.time() - age, time.time() - age))
    return leftover


def test_gc_removes_the_folder_a_killed_clone_left_once_its_writer_is_gone(tmp_path):
    url = str(tmp_path / "share")
    transfer.push(workspace_with_snapshot(tmp_path / "a", url=url), "origin")
    assert run_cli(["clone", "-q", url, "b"], tmp_path).returncode == 0
    old = _leave_a_killed_clones_folder(tmp_path / "b", age=3 * 3600)
    live = tmp_path / "b" / ".rnstore" / f".tmp-fetched-{os.getpid()}-beef0123"   # a clone still running
    live.mkdir()
    result = run_cli(["gc", "--json", "--prune", "now"], tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["freed_temp_bytes"] == 100
    assert not old.exists() and live.is_dir()


def test_a_clone_into_a_killed_clones_folder_says_so_and_changes_nothing(tmp_path):
    url = str(tmp_path / "share")
    transfer.push(workspace_with_snapshot(tmp_path / "a", url=url), "origin")
    half = tmp_path / "b"
    Repository.init(half, default_ignore=False)
    transfer.add_remote(Repository.open(half), "origin", url)
    leftover = _leave_a_killed_clones_folder(half)
    before = sorted(p.name for p in (half / ".rnstore").iterdir())
    result = run_cli(["clone", url, "b"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: b holds a clone that did not finish (it was killed); nothing was changed",
        "hint: if nothing in it is yours, remove it (`rm -rf b`) and clone again"]
    assert sorted(p.name for p in (half / ".rnstore").iterdir()) == before and leftover.is_dir()
    shutil.rmtree(half)
    assert run_cli(["clone", "-q", url, "b"], tmp_path).returncode == 0


def test_branches_main_and_main_slash_x_on_one_remote(tmp_path):
    """A push of `main/x` beside the remote's `main` used to succeed, and then
    every fetch and clone of the remote failed (exit 2: "cannot create
    refs/remotes/origin/main/x"). Now such a push is refused, and a remote
    that holds both anyway (another program's, or an older push) is fetched
    and cloned, the clashing ref listed as refused."""
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    transfer.push(a, "origin")
    other = Repository.init(tmp_path / "b", branch="main/x", default_ignore=False)
    (tmp_path / "b" / "x.txt").write_text("x\n")
    other.snapshot("x")
    transfer.add_remote(other, "origin", url)
    refused = run_cli(["push", "origin"], tmp_path / "b")
    assert refused.returncode == 1
    assert "hint: the remote has main: a branch or tag cannot also be a folder of others" in refused.stderr
    assert not (tmp_path / "share" / "refs" / "heads" / "main" / "x").exists()
    # as another program (or an older rnstore) leaves it: its objects pushed under a tag
    other.tag("tx")
    transfer.push(other, "origin", ["tx"])
    Remote(open_backend(url)).swap_ref(transfer.RemoteRef("refs/heads/main/x", 0, None),
                                       other.refs.resolve("refs/heads/main/x"))
    fetched = run_cli(["fetch", "--json", "origin"], tmp_path / "a")
    assert fetched.returncode == 0, fetched.stderr
    statuses = {r["ref"]: r["status"] for r in json.loads(fetched.stdout)["refs"]}
    assert statuses == {"refs/remotes/origin/main": "up-to-date", "refs/remotes/origin/main/x": "refused",
                        "refs/tags/tx": "created"}
    cloned = run_cli(["clone", url, "c"], tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    assert Repository.open(tmp_path / "c").refs.head() == ("refs/heads/main", a.refs.resolve("refs/heads/main"))


def test_a_remote_tag_on_a_tree_is_named_with_the_way_out(tmp_path):
    """It stopped every clone and fetch with "object ... is corrupt: not a
    snapshot", which named neither the ref nor what to do."""
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    transfer.push(a, "origin")
    tree = a.store.get_snapshot(a.refs.resolve("refs/heads/main")).tree
    Remote(open_backend(url)).swap_ref(transfer.RemoteRef("refs/tags/t1", 0, None), tree)
    for args, cwd in ((["clone", url, "c"], tmp_path), (["fetch", "origin"], tmp_path / "a")):
        result = run_cli(args, cwd)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"error: remote ref refs/tags/t1 names {tree}, which is not a snapshot",
            "hint: nothing was recorded; if that ref should not be there, `rnstore push --delete origin t1` "
            "removes it, and the others can be fetched"]
    assert run_cli(["push", "--delete", "origin", "t1"], tmp_path / "a").returncode == 0
    assert run_cli(["clone", "-q", url, "c"], tmp_path).returncode == 0


def test_a_remote_ref_whose_name_is_too_long_for_a_local_file_is_skipped(tmp_path):
    """An object store (or a remote folder) takes names no local ref file
    can have (its temporary file adds about 20 bytes to the name): one such
    ref stopped every fetch and clone with "File name too long"."""
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    transfer.push(a, "origin")
    long = "refs/heads/" + "b" * 240
    Remote(open_backend(url)).swap_ref(transfer.RemoteRef(long, 0, None), a.refs.resolve("refs/heads/main"))
    result = run_cli(["clone", "--json", url, "c"], tmp_path)
    assert result.returncode == 0, result.stderr
    refs = {r["ref"]: (r["status"], r["reason"]) for r in json.loads(result.stdout)["refs"]}
    assert refs["refs/remotes/origin/" + "b" * 240] == (
        "refused", "its name is too long for this file system; skipped")
    assert refs["refs/remotes/origin/main"][0] == "created"
    assert (tmp_path / "c" / "d0").is_dir()


def test_a_huge_remote_head_or_ref_version_is_never_read(tmp_path, monkeypatch):
    """A hostile remote's HEAD or ref version of hundreds of MB was read
    whole into memory (a 300 MB HEAD: a clone peaked at 648 MB)."""
    url = tmp_path / "share"
    a = workspace_with_snapshot(tmp_path / "a", url=str(url))
    transfer.push(a, "origin")
    (url / "HEAD").write_bytes(b"ref: refs/heads/main\n" + b" " * (1 << 20))
    version = url / "refs" / "heads" / "main" / "00000000000000000002"
    version.write_bytes(json.dumps({"id": None, "previous": None, "by": "x" * (1 << 20)}).encode())
    from rnstore.remote.backend import FsspecBackend
    real_get = FsspecBackend.get
    read = []
    monkeypatch.setattr(FsspecBackend, "get", lambda self, key: read.append(key) or real_get(self, key))
    with pytest.raises(CorruptStoreError, match=r"main/00000000000000000002 is damaged \(1048\d+ bytes"):
        Remote(open_backend(str(url))).refs()
    assert Remote(open_backend(str(url))).default_branch() is None
    assert "HEAD" not in read and not any(key.endswith("00000000000000000002") for key in read)
    version.unlink()
    assert Repository.clone(str(url), tmp_path / "c").refs[0].status == "created"
    assert Repository.open(tmp_path / "c").refs.head()[0] == "refs/heads/main"
