"""Moved, copied (`cp -a`) and rsync'd workspaces of a shared store keep
their snapshots when gc runs from another workspace: with `--prune now`, and
at the grace boundary (a gone path's protection has run out).

Each workspace re-registers where it stands on its next root-creating
command; a copy is told apart from its original (two registrations), a
move leaves its old path to gc as gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers.torture import STATS, commit, fsck_ok, init, make_tree, manifest, ok, out

pytestmark = pytest.mark.torture

HOUR = 3600


def relocate(how: str, source: Path, dest: Path) -> None:
    if how == "mv":
        os.rename(source, dest)
    elif how == "cp -a":
        subprocess.run(["cp", "-a", str(source), str(dest)], check=True)
    elif shutil.which("rsync"):
        subprocess.run(["rsync", "-a", f"{source}/", f"{dest}/"], check=True)
    else:  # what `rsync -a` leaves: the same bytes, modes, mtimes and links
        shutil.copytree(source, dest, symlinks=True, copy_function=shutil.copy2)


def age_store(store: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in store.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def checks_out(ws: Path, snap: str, expected: dict, scratch: Path) -> None:
    target = scratch / f"check-{ws.name}-{snap[:8]}"
    ok(["checkout", snap, "--target", target], ws)
    assert manifest(target) == expected, f"{snap[:12]} of {ws.name} differs"
    shutil.rmtree(target)
    STATS["checks.checkouts"] += 1


@pytest.mark.parametrize("grace", ["prune now", "grace boundary"])
@pytest.mark.parametrize("how", ["mv", "cp -a", "rsync"])
def test_relocated_workspace_keeps_its_snapshots_through_gc_from_elsewhere(scratch, how, grace):
    store = scratch / "store"
    a = init(scratch / "a", "--objects", store)
    make_tree(a, 10, seed=1)
    commit(a, "a")
    b = init(scratch / "b", "--objects", store)
    make_tree(b, 30, seed=2)
    b1 = commit(b, "b1")
    expected = {b1: manifest(b)}
    if grace == "grace boundary":
        ok(["gc"], a)  # b's roots recorded while it stands at b
    moved = scratch / "b-elsewhere"
    relocate(how, b, moved)
    (moved / "new.txt").write_bytes(os.urandom(2000))
    b2 = commit(moved, "after the move")
    expected[b2] = manifest(moved)
    # and the original of a copy goes on: its own new snapshot
    survivors = {moved: [b1, b2]}
    if how != "mv":
        (b / "orig.txt").write_bytes(os.urandom(2000))
        b3 = commit(b, "original, after the copy")
        expected[b3] = manifest(b)
        survivors[b] = [b1, b3]
    age_store(store, 2 * HOUR)  # every object older than any grace period
    if grace == "prune now":
        for _ in range(2):
            ok(["gc", "--prune", "now"], a)
    else:
        ok(["gc"], a)  # default grace: an hour
        for gone in (store / "workspaces").glob("*.gone"):
            gone.write_text(f"{time.time() - 2 * HOUR}\n")  # gone for longer than the grace period
        ok(["gc"], a)
        ok(["gc"], a)
    for ws, snaps in survivors.items():
        for snap in snaps:
            checks_out(ws, snap, expected[snap], scratch)
        fsck_ok(ws)
    if how != "mv":  # a copy and its original: two workspaces, two ids
        ids = {(ws / ".rnstore" / "workspace-id").read_bytes().split(b"\n")[0] for ws in survivors}
        assert len(ids) == 2
        listed = out(["gc", "--dry-run", "--json"], a)
        assert str(moved) in listed and str(b) in listed
