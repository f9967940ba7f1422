"""`rnstore log` and `rnstore show`."""

from __future__ import annotations

import json

import pytest

from helpers.porcelain import (assert_error, commit, new_workspace, ok, run_cli, run_parallel,
                                write_files)

LOG_KEYS = {"id", "tree", "parents", "time", "message", "meta", "tags"}
BINARY = bytes(range(256)) * 3 + b"\x00\r\n\x1b[31m no trailing newline"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A workspace with three snapshots on main (the newest tagged v1) and
    one made by commit-tree that no ref names. Shared by the read-only tests
    below: (root, [first, second, third], side)."""
    ws = new_workspace(tmp_path_factory.mktemp("history"))
    ids = []
    for number, files in enumerate(({"a.txt": "one\n"},
                                    {"a.txt": "two\n", "data/model.bin": BINARY},
                                    {"b.txt": "b\n"}), start=1):
        write_files(ws, files)
        ids.append(commit(run_cli, ws, f"snapshot {number}\n\nbody line", "-a", "--meta", f"n={number}"))
    ok(run_cli(["tag", "v1"], cwd=ws))
    tree = json.loads(ok(run_cli(["log", "--json", "-n", "1", ids[0]], cwd=ws)).stdout)[0]["tree"]
    side = ok(run_cli(["commit-tree", tree, "-m", "side snapshot", "-p", ids[0]], cwd=ws)).out.strip()
    return ws, ids, side


def test_log_json_newest_first_with_promised_keys(history, run_cli):
    ws, (first, second, third), _ = history
    entries = json.loads(ok(run_cli(["log", "--json"], cwd=ws)).stdout)
    assert [e["id"] for e in entries] == [third, second, first]
    for entry in entries:
        assert LOG_KEYS <= set(entry), entry.keys()
        assert isinstance(entry["meta"], dict) and isinstance(entry["tags"], list)
    assert entries[0]["tags"] == ["v1"] and entries[1]["tags"] == []
    assert entries[0]["parents"] == [second] and entries[2]["parents"] == []
    assert entries[1]["message"] == "snapshot 2\n\nbody line"
    assert entries[1]["meta"]["n"] == "2"
    assert entries[0]["time"] >= entries[1]["time"] >= entries[2]["time"]


def test_log_n_and_rev(history, run_cli):
    ws, (first, second, third), _ = history
    limited, from_rev = (json.loads(ok(r).stdout) for r in run_parallel(run_cli, [
        (["log", "--json", "-n", "2"], ws), (["log", "--json", "HEAD~1"], ws)]))
    assert [e["id"] for e in limited] == [third, second]
    assert [e["id"] for e in from_rev] == [second, first]


def test_log_oneline(history, run_cli):
    ws, (first, second, third), _ = history
    lines = ok(run_cli(["log", "--oneline"], cwd=ws)).out.splitlines()
    assert len(lines) == 3
    for line, snapshot, number in zip(lines, (third, second, first), (3, 2, 1)):
        assert line.startswith(snapshot[:12]) and line.endswith(f"snapshot {number}"), line
    assert "v1" in lines[0]


def test_log_all_lists_every_live_snapshot_newest_first(history, run_cli):
    ws, (first, second, third), side = history
    default, everything, human = run_parallel(run_cli, [
        (["log", "--json"], ws), (["log", "--all", "--json"], ws), (["log", "--all"], ws)])
    assert side not in [e["id"] for e in json.loads(ok(default).stdout)]
    assert [e["id"] for e in json.loads(ok(everything).stdout)] == [side, third, second, first]
    human = ok(human).out
    assert human.index(side) < human.index(third) < human.index(first)
    assert "side snapshot" in human and "n=2" in human


def test_show_summary(history, run_cli):
    ws, (first, second, third), _ = history
    text, log, tagged = run_parallel(run_cli, [
        (["show", "HEAD~1"], ws), (["log", "--json", "-n", "1", "HEAD~1"], ws), (["show", "v1"], ws)])
    text = ok(text).out
    entry = json.loads(ok(log).stdout)[0]
    for needle in (second, entry["tree"], first, entry["time"], "snapshot 2", "body line", "n=2",
                   "user=tester"):
        assert needle in text, needle
    assert "v1" in ok(tagged).out


def test_show_file_bytes_exactly(history, run_cli):
    ws, (first, second, third), _ = history
    binary, one, two, listing = run_parallel(run_cli, [
        (["show", "HEAD:data/model.bin"], ws), (["show", f"{first[:8]}:a.txt"], ws),
        (["show", "v1~1:a.txt"], ws), (["show", "HEAD:data"], ws)])
    assert ok(binary).stdout == BINARY
    assert ok(one).stdout == b"one\n"
    assert ok(two).stdout == b"two\n"
    assert "model.bin" in ok(listing).out


def test_show_unknown_revision_exits_2(history, run_cli):
    ws, *_ = history
    revs = ["nosuchtag", "HEAD:missing.txt", "HEAD~9"]
    for rev, result in zip(revs, run_parallel(run_cli, [(["show", r], ws) for r in revs])):
        assert_error(result, 2)
        assert result.stdout == b"", rev


def test_log_on_an_empty_workspace(tmp_path, run_cli):
    """On an unborn branch `log` fails as `rev-parse HEAD` does (git: "your
    current branch 'main' does not have any commits yet"); `--all` lists
    nothing, as git's."""
    new_workspace(tmp_path, default_ignore=True)
    plain, as_json, head, every = run_parallel(run_cli, [
        (["log"], tmp_path), (["log", "--json"], tmp_path), (["rev-parse", "HEAD"], tmp_path),
        (["log", "--all", "--oneline"], tmp_path)])
    expected = assert_error(head, 2, "refs/heads/main has no snapshot yet")
    for result in (plain, as_json):
        assert assert_error(result, head.returncode) == expected
        assert result.stdout == b""
    assert ok(every).stdout == b""


def test_negative_max_count_is_rejected_or_means_no_limit(history, run_cli):
    ws, ids, side = history
    plain, every = run_parallel(run_cli, [(["log", "--json", "-n", "-1"], ws),
                                          (["log", "--all", "--json", "-n", "-1"], ws)])
    if plain.returncode == 2 or every.returncode == 2:  # rejected as bad usage
        assert_error(plain, 2)
        assert_error(every, 2)
        return
    assert len(json.loads(plain.stdout)) == 3          # or, as in git, no limit
    assert len(json.loads(every.stdout)) == 4


def test_a_bad_count_is_one_plain_error_line(history, run_cli):
    """`log -n -1` was read as `-n -n 1` (the `-N` shorthand took the
    value) and `-n abc` answered in pydantic's words ("Input should be a
    valid integer, unable to parse string as an integer")."""
    ws, _, _ = history
    cases = [(["log", "-n", "-1"], "must be 0 or more, not -1"),
             (["log", "--max-count", "-1"], "must be 0 or more, not -1"),
             (["log", "-n", "abc"], "'abc' is not a whole number"),
             (["log", "-n", "1.5"], "'1.5' is not a whole number"),
             (["forget", "--keep-last", "x", "--dry-run"], "'x' is not a whole number")]
    for (args, needle), result in zip(cases, run_parallel(run_cli, [(args, ws) for args, _ in cases])):
        line = assert_error(result, 2, needle)
        assert "Input should" not in result.stderr, (args, line)
    assert len(json.loads(ok(run_cli(["log", "--json", "-n", "2"], cwd=ws)).stdout)) == 2


def _workspace_with_snapshots(path, run_cli, count: int) -> list[str]:
    """A new workspace at `path` with `count` snapshots of one changing file; their ids."""
    new_workspace(path)
    ids = []
    for number in range(count):
        write_files(path, {"a.txt": f"{number}\n"})
        ids.append(commit(run_cli, path, f"snapshot {number}", "-a"))
    return ids


def _remove_object(ws, oid: str) -> None:
    """Removes a loose snapshot file (commit leaves snapshots loose until gc)."""
    (ws / ".rnstore" / "objects" / oid[:2] / oid[2:]).unlink()


def test_log_of_a_missing_head_or_a_missing_live_parent_is_damage_not_history(tmp_path, run_cli):
    """With HEAD's own snapshot gone, `log` printed nothing, warned "history
    ends at ...: that parent was forgotten and collected" and exited 0; a
    live parent gone (not forgotten) got the same note. Both are damage:
    exit 1, one `error:` line; a forgotten and collected parent stays a note."""
    ws = tmp_path / "ws"
    ids = _workspace_with_snapshots(ws, run_cli, 4)
    _remove_object(ws, ids[2])
    result = run_cli(["log", "--oneline"], cwd=ws)
    assert_error(result, 1, ids[2], "still live", "fsck")
    assert result.out.split()[0] == ids[3][:12] and "forgotten" not in result.stderr
    ok(run_cli(["forget", ids[1], ids[2]], cwd=ws))
    result = run_cli(["log", "--oneline"], cwd=ws)
    assert result.returncode == 0 and "forgotten and collected" in result.stderr, result
    _remove_object(ws, ids[3])
    for args in (["log"], ["log", "--json"], ["log", "--oneline"]):
        result = run_cli(args, cwd=ws)
        assert_error(result, 1, ids[3])
        assert result.stdout == b"" and "forgotten" not in result.stderr, result


def test_rev_parse_of_a_missing_live_parent_is_damage_not_history(tmp_path, run_cli):
    """`rev-parse HEAD~1` with the parent gone though still live said it was
    "forgotten and collected" (exit 2); it is damage (exit 1), as in log. A
    parent forgotten and collected keeps the note."""
    ws = tmp_path / "ws"
    ids = _workspace_with_snapshots(ws, run_cli, 3)
    _remove_object(ws, ids[1])
    result = run_cli(["rev-parse", "HEAD~1"], cwd=ws)
    assert_error(result, 1, ids[1], "still live", "fsck")
    assert "forgotten" not in result.stderr
    ok(run_cli(["forget", ids[1]], cwd=ws))
    result = run_cli(["rev-parse", "HEAD~1"], cwd=ws)
    assert_error(result, 2, "forgotten and collected")
