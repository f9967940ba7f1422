"""`checkout --target DIR --force` leaves exactly the snapshot in DIR
(removing and listing what it does not have); without --force such a DIR
is refused, listed. `--skip-missing` restores every intact file when
objects are missing or corrupt, lists the others by full path and id, and
exits 1."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.porcelain import assert_error, commit, new_workspace, object_path, ok, picture, write_files


def snapshot(tmp_path: Path, run_cli) -> tuple[Path, str]:
    ws = tmp_path / "ws"
    new_workspace(ws)
    write_files(ws, {"a.txt": "a\n", "src/b.py": "b\n", "src/deep/c.py": "c\n"})
    return ws, commit(run_cli, ws, "m", "-a", "-q")


def test_target_force_leaves_exactly_the_snapshot(tmp_path, run_cli):
    ws, snap = snapshot(tmp_path, run_cli)
    target = tmp_path / "out"
    write_files(target, {"a.txt": "a\n", "stale.txt": "old\n", "src/old.py": "x\n",
                         "gone/deeper/f": "f\n", ".rnstore/keep": "never touched\n"})
    (target / "empty-extra").mkdir()
    os.symlink("a.txt", target / "link-extra")
    before = picture(target, skip=())
    refused = run_cli(["checkout", snap, "--target", str(target)], cwd=ws)
    assert_error(refused, 1, "stale.txt", "src/old.py", "gone/deeper/f", "link-extra", "--force")
    assert picture(target, skip=()) == before  # nothing written

    result = ok(run_cli(["checkout", snap, "--target", str(target), "--force"], cwd=ws))
    for name in ("stale.txt", "src/old.py", "gone/deeper/f", "link-extra"):
        assert f"removed '{name}'" in result.stderr
    expected = tmp_path / "expected"
    ok(run_cli(["checkout", snap, "--target", str(expected)], cwd=ws))
    assert picture(target) == picture(expected)
    assert (target / ".rnstore" / "keep").read_text() == "never touched\n"
    assert not (target / "empty-extra").exists() and not (target / "gone").exists()


def test_target_force_with_paths_touches_only_those_paths(tmp_path, run_cli):
    ws, snap = snapshot(tmp_path, run_cli)
    target = tmp_path / "out"
    write_files(target, {"src/old.py": "x\n", "elsewhere.txt": "stays\n"})
    ok(run_cli(["checkout", snap, "--target", str(target), "--force", "--", "src"], cwd=ws))
    assert not (target / "src" / "old.py").exists()
    assert (target / "elsewhere.txt").read_text() == "stays\n"
    assert (target / "src" / "deep" / "c.py").read_text() == "c\n"


def test_library_target_force_reports_removed(tmp_path, run_cli):
    from rnstore.repo import Repository
    ws, snap = snapshot(tmp_path, run_cli)
    target = tmp_path / "out"
    write_files(target, {"x/y": "1"})
    result = Repository.open(ws).checkout(snap, target=target, force=True)
    assert result.removed == ["x/y"] and not (target / "x").exists()


def damage(ws: Path, run_cli, snap: str) -> tuple[str, str]:
    """Remove b.py's object and corrupt c.py's; their ids."""
    ids = {}
    for line in ok(run_cli(["ls-tree", "-r", snap], cwd=ws)).out.splitlines():
        meta, path = line.split("\t")
        ids[path] = meta.split()[2]
    store = ws / ".rnstore"
    object_path(store, ids["src/b.py"]).unlink()
    corrupt = object_path(store, ids["src/deep/c.py"])
    data = bytearray(corrupt.read_bytes())
    data[-6] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    return ids["src/b.py"], ids["src/deep/c.py"]


def test_skip_missing_restores_every_intact_file_and_lists_the_rest(tmp_path, run_cli):
    ws, snap = snapshot(tmp_path, run_cli)
    missing, corrupt = damage(ws, run_cli, snap)
    target = tmp_path / "out"
    refused = run_cli(["checkout", snap, "--target", str(target)], cwd=ws)
    assert_error(refused, 1, "--skip-missing")
    assert "pull" not in refused.stderr
    assert not target.exists() or not any(target.iterdir())

    result = run_cli(["checkout", snap, "--target", str(target), "--skip-missing"], cwd=ws)
    assert_error(result, 1, "not restored")
    assert f"missing: {target / 'src' / 'b.py'} ({missing})" in result.stderr
    assert f"corrupt: {target / 'src' / 'deep' / 'c.py'} ({corrupt})" in result.stderr
    assert (target / "a.txt").read_text() == "a\n"
    assert not (target / "src" / "b.py").exists() and not (target / "src" / "deep" / "c.py").exists()


def test_skip_missing_in_the_workspace(tmp_path, run_cli):
    ws, snap = snapshot(tmp_path, run_cli)
    missing, _ = damage(ws, run_cli, snap)
    for name in ("a.txt", "src/b.py", "src/deep/c.py"):
        (ws / name).unlink()
    result = run_cli(["checkout", "--force", "--skip-missing", snap, "--", "."], cwd=ws)
    assert_error(result, 1)
    assert f"missing: {ws / 'src' / 'b.py'} ({missing})" in result.stderr
    assert (ws / "a.txt").read_text() == "a\n"


def test_skip_missing_lists_a_folder_whose_tree_is_missing(tmp_path, run_cli):
    ws, snap = snapshot(tmp_path, run_cli)
    tree = ok(run_cli(["rev-parse", f"{snap}:src/deep"], cwd=ws)).out.strip()
    object_path(ws / ".rnstore", tree).unlink()
    target = tmp_path / "out"
    write_files(target, {"src/deep/mine.txt": "unknown: kept\n", "stale.txt": "x\n"})
    result = run_cli(["checkout", snap, "--target", str(target), "--skip-missing", "--force"], cwd=ws)
    assert_error(result, 1, "not restored")
    assert f"missing: {target / 'src' / 'deep'} ({tree})" in result.stderr
    assert (target / "a.txt").read_text() == "a\n" and (target / "src" / "b.py").read_text() == "b\n"
    assert (target / "src" / "deep" / "mine.txt").exists()  # what it should hold is unknown: left alone
    assert not (target / "stale.txt").exists()
    # in the workspace: files below the unreadable folder are left as they are
    switched = run_cli(["checkout", "--force", "--skip-missing", snap], cwd=ws)
    assert_error(switched, 1)
    assert (ws / "src" / "deep" / "c.py").read_text() == "c\n"


def test_an_empty_folder_the_snapshot_lacks_is_extra_as_a_file_is(tmp_path, run_cli):
    """Snapshots hold empty folders, so a target's empty folder that REV
    lacks is an entry REV does not have: without --force it was removed
    silently (`0 deleted`, exit 0); now it is a conflict, and --force
    removes and lists it (the deepest of nested ones names them all)."""
    ws, snap = snapshot(tmp_path, run_cli)
    target = tmp_path / "out"
    ok(run_cli(["checkout", snap, "--target", str(target)], cwd=ws))
    for folder in ("empty-extra", "src/new-empty", "a/b/c"):
        (target / folder).mkdir(parents=True)
    before = picture(target, skip=())
    refused = run_cli(["checkout", snap, "--target", str(target)], cwd=ws)
    assert_error(refused, 1, "not in the snapshot: empty-extra", "not in the snapshot: src/new-empty",
                 "not in the snapshot: a/b/c", "--force")
    assert "not in the snapshot: a/b\n" not in refused.stderr
    assert picture(target, skip=()) == before  # nothing removed

    result = ok(run_cli(["checkout", snap, "--target", str(target), "--force"], cwd=ws))
    for name in ("empty-extra", "src/new-empty", "a/b/c"):
        assert f"removed '{name}'" in result.stderr
    expected = tmp_path / "expected"
    ok(run_cli(["checkout", snap, "--target", str(expected)], cwd=ws))
    assert picture(target) == picture(expected)


def test_a_link_in_the_way_of_a_folder_is_replaced_not_reported_as_extra(tmp_path, run_cli):
    """A symlink where REV has the folder `src` was replaced, but reported as
    `removed 'src' (not in the snapshot)`: REV has `src`. It is counted as
    replaced, and what the link pointed at is never touched."""
    ws, snap = snapshot(tmp_path, run_cli)
    elsewhere = tmp_path / "elsewhere"
    write_files(elsewhere, {"keep.txt": "keep\n"})
    target = tmp_path / "out"
    target.mkdir()
    os.symlink(elsewhere, target / "src")
    refused = run_cli(["checkout", snap, "--target", str(target)], cwd=ws)
    assert "not in the snapshot: src" not in assert_error(refused, 1, "symlink: src") + refused.stderr
    result = ok(run_cli(["checkout", snap, "--target", str(target), "--force"], cwd=ws))
    assert "removed 'src'" not in result.stderr and "1 replaced" in result.stderr, result.stderr
    expected = tmp_path / "expected"
    ok(run_cli(["checkout", snap, "--target", str(expected)], cwd=ws))
    assert picture(target) == picture(expected)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
