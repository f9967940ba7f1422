"""forget reports what it frees (matching what gc then deletes); fsck names
each damaged object's path in every snapshot that holds it; show, log and
checkout of a forgotten and collected parent say exactly that."""

from __future__ import annotations

import json

from helpers.porcelain import assert_error, commit, new_workspace, object_path, ok, write_files


def three_snapshots(ws, run_cli):
    new_workspace(ws)
    write_files(ws, {"common.txt": "kept by all\n" * 50, "one.bin": "1" * 3000})
    s1 = commit(run_cli, ws, "one", "-a", "-q")
    write_files(ws, {"two.bin": "2" * 5000})
    s2 = commit(run_cli, ws, "two", "-a", "-q")
    (ws / "one.bin").unlink()
    (ws / "two.bin").unlink()
    write_files(ws, {"three.txt": "3\n"})
    s3 = commit(run_cli, ws, "three", "-a", "-q")
    return s1, s2, s3


def test_forget_report_matches_what_gc_then_deletes(tmp_path, run_cli):
    ws = tmp_path / "ws"
    s1, s2, s3 = three_snapshots(ws, run_cli)
    ok(run_cli(["tag", "keep-one", s1], cwd=ws))
    dry = json.loads(ok(run_cli(["forget", s1, s2, "--dry-run", "--json"], cwd=ws)).stdout)
    report = json.loads(ok(run_cli(["forget", s1, s2, "--json"], cwd=ws)).stdout)
    assert dry["freed_objects"] == report["freed_objects"] and dry["dry_run"] and not report["dry_run"]
    items = {i["id"]: i for i in report["forgotten"]}
    assert set(items) == {s1, s2}
    # s1 is tagged: everything it reaches stays
    assert items[s1]["freed_objects"] == 0 and items[s1]["kept_objects"] > 0
    assert items[s1]["still_named_by"] == ["tag keep-one"]
    # s2 frees itself, its root tree and two.bin; common.txt and one.bin stay (the tag, s3)
    assert items[s2]["freed_objects"] == 3 and items[s2]["kept_objects"] >= 2
    assert report["freed_objects"] == 3 and report["freed_bytes"] == items[s2]["freed_bytes"] > 0
    gc = json.loads(ok(run_cli(["gc", "--prune", "now", "--json"], cwd=ws)).stdout)
    assert (gc["deleted_objects"], gc["freed_bytes"]) == (report["freed_objects"], report["freed_bytes"])
    human = ok(run_cli(["forget", s3, "--dry-run"], cwd=ws))
    assert "frees" in human.out and "would free" in human.stderr


def test_fsck_names_the_path_of_a_damaged_object_in_every_snapshot(tmp_path, run_cli):
    ws = tmp_path / "ws"
    s1, s2, s3 = three_snapshots(ws, run_cli)
    blob = ok(run_cli(["rev-parse", f"{s1}:common.txt"], cwd=ws)).out.strip()
    object_path(ws / ".rnstore", blob).unlink()
    result = run_cli(["fsck", "--json"], cwd=ws)
    assert result.returncode == 1
    problem = [p for p in json.loads(result.stdout)["problems"] if p["id"] == blob][0]
    assert problem["paths"] == sorted(f"{s}:common.txt" for s in (s1, s2, s3))
    human = run_cli(["fsck"], cwd=ws)
    for s in (s1, s2, s3):
        assert f"in {s}:common.txt" in human.out


def test_a_forgotten_and_collected_parent_is_named_as_such(tmp_path, run_cli):
    ws = tmp_path / "ws"
    s1, s2, s3 = three_snapshots(ws, run_cli)
    ok(run_cli(["forget", s2], cwd=ws))
    ok(run_cli(["gc", "--prune", "now"], cwd=ws))
    for args in (["show", "HEAD~1"], ["log", "HEAD~1"], ["checkout", "HEAD~1"],
                 ["checkout", "HEAD~1", "--target", str(tmp_path / "out")]):
        result = run_cli(args, cwd=ws)
        assert_error(result, 2, "forgotten and collected", s2[:12])
        assert "is missing" not in result.stderr
    log = ok(run_cli(["log", "--oneline"], cwd=ws))
    assert "forgotten and collected" in log.stderr and s2[:12] in log.stderr
