"""Automatic gc: after `commit`, `add` and `pull`, when gc.interval has passed since
the store's last gc, rnstore starts `gc --auto` detached in the background
and says so in one stderr line; not when the last gc is recent, nor with
gc.auto=false. The command itself is neither delayed nor failed.

Each test waits for the background gc it started (by its pid, and for
gc.last), so that none outlives the test."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from helpers.porcelain import commit, new_workspace, ok, write_files

DAY = 86400


def last_gc(ws: Path) -> float | None:
    try:
        return float((ws / ".rnstore" / "gc.last").read_text())
    except FileNotFoundError:
        return None


def finished(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has finished
    except FileNotFoundError:
        return True


def wait_for_background_gc(stderr: str, ws: Path, previous: float | None, timeout: float = 120) -> None:
    match = re.search(r"started in the background \(pid (\d+)", stderr)
    assert match, stderr
    pid = int(match.group(1))
    deadline = time.monotonic() + timeout
    while not finished(pid):
        assert time.monotonic() < deadline, "the background gc did not finish"
        time.sleep(0.05)
    now = last_gc(ws)
    assert now is not None and (previous is None or now > previous)


def test_an_old_last_gc_starts_gc_auto_in_the_background(tmp_path, run_cli):
    ws = tmp_path / "ws"
    new_workspace(ws)
    write_files(ws, {"a": "1"})
    commit(run_cli, ws, "first", "-a", "-q")
    old = time.time() - 8 * DAY  # gc.interval defaults to 7d
    (ws / ".rnstore" / "gc.last").write_text(f"{old}\n")
    write_files(ws, {"a": "2"})
    result = ok(run_cli(["commit", "-a", "-m", "second"], cwd=ws))
    assert len(result.out.split()) == 1  # stdout: the id alone
    lines = [line for line in result.stderr.splitlines() if "gc --auto" in line]
    assert len(lines) == 1 and "background" in lines[0]
    wait_for_background_gc(result.stderr, ws, old)
    # and after `add`, with a short interval
    ok(run_cli(["config", "gc.interval", "1s"], cwd=ws))
    before = last_gc(ws)
    time.sleep(1.1)
    write_files(ws, {"b": "3"})
    added = ok(run_cli(["add", "b"], cwd=ws))
    wait_for_background_gc(added.stderr, ws, before)
    assert ok(run_cli(["fsck"], cwd=ws)).returncode == 0


def test_a_recent_gc_or_gc_auto_false_starts_nothing(tmp_path, run_cli):
    ws = tmp_path / "ws"
    new_workspace(ws)
    write_files(ws, {"a": "1"})
    first = ok(run_cli(["commit", "-a", "-m", "first"], cwd=ws))
    assert "gc --auto" not in first.stderr  # a new store counts from when it was made
    recent = time.time() - 3600
    (ws / ".rnstore" / "gc.last").write_text(f"{recent}\n")
    write_files(ws, {"a": "2"})
    assert "gc --auto" not in ok(run_cli(["commit", "-a", "-m", "second"], cwd=ws)).stderr
    old = time.time() - 30 * DAY
    (ws / ".rnstore" / "gc.last").write_text(f"{old}\n")
    ok(run_cli(["config", "gc.auto", "false"], cwd=ws))
    write_files(ws, {"a": "3"})
    result = ok(run_cli(["commit", "-a", "-m", "third"], cwd=ws))
    assert "gc --auto" not in result.stderr
    time.sleep(0.5)
    assert last_gc(ws) == old


def test_the_background_gc_never_fails_the_command(tmp_path, run_cli):
    """A store whose gc would refuse (a corrupt ref): the commit still succeeds."""
    ws = tmp_path / "ws"
    new_workspace(ws)
    write_files(ws, {"a": "1"})
    commit(run_cli, ws, "first", "-a", "-q")
    (ws / ".rnstore" / "refs" / "heads" / "broken").write_text("not an id\n")
    old = time.time() - 8 * DAY
    (ws / ".rnstore" / "gc.last").write_text(f"{old}\n")
    write_files(ws, {"a": "2"})
    result = ok(run_cli(["commit", "-a", "-m", "second"], cwd=ws))
    match = re.search(r"pid (\d+)", result.stderr)
    assert match, result.stderr
    deadline = time.monotonic() + 120
    while not finished(int(match.group(1))):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert last_gc(ws) == old  # it refused, and said nothing to anyone
    os.unlink(ws / ".rnstore" / "refs" / "heads" / "broken")


def test_pull_starts_gc_auto_too(tmp_path, run_cli):
    """pull adds objects, as commit does: an old last gc starts one."""
    source, remote, ws = tmp_path / "source", tmp_path / "remote", tmp_path / "ws"
    new_workspace(source)
    write_files(source, {"a": "1"})
    commit(run_cli, source, "first", "-a", "-q")
    ok(run_cli(["remote", "add", "origin", str(remote)], cwd=source))
    ok(run_cli(["push", "origin", "-q"], cwd=source))
    ok(run_cli(["clone", str(remote), str(ws), "-q"], cwd=tmp_path))
    write_files(source, {"a": "2"})
    commit(run_cli, source, "second", "-a", "-q")
    ok(run_cli(["push", "origin", "-q"], cwd=source))
    old = time.time() - 8 * DAY
    (ws / ".rnstore" / "gc.last").write_text(f"{old}\n")
    pulled = ok(run_cli(["pull", "origin"], cwd=ws))
    wait_for_background_gc(pulled.stderr, ws, old)
    assert (ws / "a").read_text() == "2"
