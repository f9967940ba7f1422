"""`rnstore tag` and `rnstore config`."""

from __future__ import annotations

import json

import pytest

from helpers.porcelain import (assert_error, commit, new_workspace, ok, run_parallel, store_state,
                                write_files)

KEYS = ["compression.level", "compression.large_level", "limits.max_bytes", "limits.max_files", "gc.prune", "gc.interval", "gc.auto",
        "gc.auto_loose", "gc.auto_packs", "gc.threshold", "core.fsync", "core.listing_cache", "core.lock_wait", "pack.deltas", "pack.depth", "user.name"]


@pytest.fixture
def two_snapshots(tmp_path, run_cli):
    new_workspace(tmp_path)
    write_files(tmp_path, {"a": "1"})
    first = commit(run_cli, tmp_path, "first", "-a", "-q")
    write_files(tmp_path, {"a": "2"})
    second = commit(run_cli, tmp_path, "second", "-a", "-q")
    return tmp_path, first, second


def names(listing) -> list[str]:
    """The tag names of a `tag` listing (NAME  ID  TIME  WORKSPACE lines)."""
    return [line.split()[0] for line in ok(listing).out.splitlines()]


def rev(run_cli, ws, *names):
    return ok(run_cli(["rev-parse", *names], cwd=ws)).out.split()


def test_tag_list_bind_move_delete(two_snapshots, run_cli):
    ws, first, second = two_snapshots
    assert ok(run_cli(["tag"], cwd=ws)).stdout == b""
    ok(run_cli(["tag", "v1"], cwd=ws), stdout_empty=True)          # HEAD by default
    ok(run_cli(["tag", "v0", "HEAD~1"], cwd=ws), stdout_empty=True)
    ok(run_cli(["tag", "paper/final", first[:10]], cwd=ws))
    listing, ids = run_parallel(run_cli, [(["tag"], ws), (["rev-parse", "v1", "v0"], ws)])
    assert names(listing) == ["paper/final", "v0", "v1"]
    assert ok(ids).out.split() == [second, first]

    ok(run_cli(["tag", "-f", "v1", "v0"], cwd=ws))                 # move
    assert rev(run_cli, ws, "v1") == [first]
    ok(run_cli(["tag", "-d", "v1"], cwd=ws), stdout_empty=True)   # unbind
    listing, gone, again, log = run_parallel(run_cli, [
        (["tag"], ws), (["rev-parse", "v1"], ws), (["tag", "-d", "v1"], ws), (["log", "--json"], ws)])
    assert names(listing) == ["paper/final", "v0"]
    assert_error(gone, 2)
    assert_error(again, 2, "v1")
    # log shows the remaining tags on their snapshot
    entries = json.loads(ok(log).stdout)
    assert [sorted(e["tags"]) for e in entries] == [[], ["paper/final", "v0"]]


def test_binding_an_existing_tag_without_force_fails(two_snapshots, run_cli):
    """Observed exit code: 2 (InvalidValueError); the brief allows 1 or 2."""
    ws, first, second = two_snapshots
    ok(run_cli(["tag", "v1", "HEAD~1"], cwd=ws))
    before = store_state(ws / ".rnstore")
    result = run_cli(["tag", "v1", "HEAD"], cwd=ws)
    assert_error(result, (1, 2), "v1", "-f")
    assert result.returncode == 2
    assert store_state(ws / ".rnstore") == before
    assert rev(run_cli, ws, "v1") == [first]


def test_tag_bad_input_exits_2(tmp_path, run_cli):
    new_workspace(tmp_path, default_ignore=True)
    assert_error(run_cli(["tag", "v1"], cwd=tmp_path), 2)      # no snapshot yet
    write_files(tmp_path, {"a": "a"})
    commit(run_cli, tmp_path, "m", "-a", "-q")
    results = run_parallel(run_cli, [
        (["tag", "bad name"], tmp_path), (["tag", "a..b"], tmp_path),
        (["tag", "v1", "nosuchrev"], tmp_path), (["tag", "-d", "never"], tmp_path)])
    for result in results:
        assert_error(result, 2)
    assert ok(run_cli(["tag"], cwd=tmp_path)).stdout == b""


def test_config_read_set_list(tmp_path, run_cli):
    new_workspace(tmp_path, default_ignore=True)
    assert ok(run_cli(["config", "limits.max_bytes"], cwd=tmp_path)).out == "500MB\n"
    ok(run_cli(["config", "limits.max_bytes", "2GB"], cwd=tmp_path), stdout_empty=True)
    ok(run_cli(["config", "user.name", "Ada Lovelace"], cwd=tmp_path))
    reads = run_parallel(run_cli, [(["config", "limits.max_bytes"], tmp_path),
                                   (["config"], tmp_path)])
    assert ok(reads[0]).out == "2GB\n"
    listing = dict(line.split("=", 1) for line in ok(reads[1]).out.splitlines())
    assert list(listing) == KEYS
    assert listing["limits.max_bytes"] == "2GB" and listing["user.name"] == "Ada Lovelace"
    assert listing["compression.level"] == "3" and listing["core.fsync"] == "true"
    # the setting is used: user.name goes into new snapshots
    write_files(tmp_path, {"a": "a"})
    commit(run_cli, tmp_path, "m", "-a", "-q")
    entry = json.loads(ok(run_cli(["log", "--json"], cwd=tmp_path)).stdout)[0]
    assert entry["meta"]["user"] == "Ada Lovelace"


def test_config_bad_value_or_unknown_key_exits_2(tmp_path, run_cli):
    new_workspace(tmp_path, default_ignore=True)
    config_before = (tmp_path / ".rnstore" / "config").read_bytes()
    results = run_parallel(run_cli, [
        (["config", "compression.level", "99"], tmp_path),
        (["config", "limits.max_bytes", "lots"], tmp_path),
        (["config", "limits.max_files", "-5"], tmp_path),
        (["config", "core.fsync", "maybe"], tmp_path),
        (["config", "gc.prune", "soon"], tmp_path),
        (["config", "no.such.key", "1"], tmp_path),
        (["config", "no.such.key"], tmp_path),
        (["config", "core.objects", "/tmp/elsewhere"], tmp_path),
    ])
    for result in results:
        assert_error(result, 2)
        assert result.stdout == b""
    assert "no.such.key" in results[-2].stderr
    assert (tmp_path / ".rnstore" / "config").read_bytes() == config_before


@pytest.mark.parametrize("key, value, said", [
    ("limits.max_bytes", "-5MB", "'-5MB' is not a size"), ("limits.max_files", "-3", "'-3'"),
    ("gc.prune", "-1h", "'-1h' is not a duration"), ("compression.level", "-1", "compression.level"),
    ("gc.threshold", "-.5", "gc.threshold")])
def test_config_judges_a_negative_value_as_a_value(tmp_path, run_cli, key, value, said):
    """`config limits.max_bytes -5MB` said "No such option: -5", and
    `config gc.prune -1h` printed the help (`-h`) and exited 0."""
    new_workspace(tmp_path, default_ignore=True)
    config_before = (tmp_path / ".rnstore" / "config").read_bytes()
    for args in (["config", key, value], ["config", key, value, "--json"]):
        error = assert_error(run_cli(args, cwd=tmp_path), 2, said)
        assert "option" not in error, error
    assert (tmp_path / ".rnstore" / "config").read_bytes() == config_before
    ok(run_cli(["config", "--json", key], cwd=tmp_path))


def test_tag_never_binds_moves_or_deletes_a_branch(two_snapshots, run_cli):
    """`tag -d refs/heads/main` deleted the current branch ("Deleted tag
    refs/heads/main"), and `tag refs/heads/x` made a branch; a tag named
    by a full id could never be named (the id wins). Each is refused."""
    ws, first, second = two_snapshots
    before = ok(run_cli(["show-ref"], cwd=ws)).out
    for args in (["tag", "-d", "refs/heads/main"], ["tag", "-f", "refs/heads/main", first],
                 ["tag", "refs/heads/x"], ["tag", "refs/remotes/origin/main"]):
        assert_error(run_cli(args, cwd=ws), 2, "is not a tag: tags are refs/tags/NAME")
    assert_error(run_cli(["tag", first], cwd=ws), 2, "is an object id")
    assert ok(run_cli(["show-ref"], cwd=ws)).out == before
    assert ok(run_cli(["rev-parse", "main"], cwd=ws)).out.strip() == second
    ok(run_cli(["tag", "refs/tags/v2", first], cwd=ws))  # the full name of a tag is still a tag
    assert ok(run_cli(["rev-parse", "v2"], cwd=ws)).out.strip() == first
    ok(run_cli(["tag", "-d", "refs/tags/v2"], cwd=ws))


def test_a_tag_named_like_an_id_prefix_wins_with_a_warning(two_snapshots, run_cli):
    """A tag `abcd12` bound to one snapshot while another's id starts with
    abcd12: the tag wins, as in git, but that was silent; now binding it and
    every use of the name warn (git: "refname is ambiguous"), and stdout
    keeps only the answer."""
    ws, first, second = two_snapshots
    name = first[:6]
    tagged = run_cli(["tag", name, second], cwd=ws)
    assert tagged.returncode == 0 and f"'{name}' is ambiguous" in tagged.stderr, tagged
    for args in (["rev-parse", name], ["log", "--oneline", "-n", "1", name]):
        result = run_cli(args, cwd=ws)
        assert result.returncode == 0 and result.out.startswith(second[:12]), result
        assert f"'{name}' is ambiguous" in result.stderr and first[:12] in result.stderr, result.stderr
    assert ok(run_cli(["rev-parse", first[:7]], cwd=ws)).out.strip() == first
    own = second[:6]  # a tag named by the start of its own snapshot's id shadows nothing
    ok(run_cli(["tag", own, second], cwd=ws))
    result = run_cli(["rev-parse", own], cwd=ws)
    assert result.out.strip() == second and "ambiguous" not in result.stderr, result
