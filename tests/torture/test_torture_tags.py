"""Store-wide tags under concurrency: 8 workspaces of one shared store
create, move and delete tags at once (their own and each other's) while a
9th runs `gc --prune now` in a loop. Each snapshot is forgotten right after
it is tagged, so only its store tag keeps it alive. No tag is lost, no
deleted tag comes back, and every tagged snapshot checks out exactly."""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.torture import (NOTES, STATS, fsck_problems, gc_looping, init, make_tree, manifest,
                             materialise_matches, mutate, run, scale)

pytestmark = pytest.mark.torture

WRITERS = 8
ROUNDS = 2


def test_store_tags_by_eight_workspaces_beside_a_gc_loop(scratch):
    store = scratch / "store"
    workspaces = []
    for i in range(WRITERS + 1):
        ws = scratch / f"ws{i}"
        make_tree(ws, 15, seed=300 + i, links=False)
        init(ws, "--objects", store)
        workspaces.append(ws)
    gc_ws = workspaces.pop()
    rounds = ROUNDS * scale()
    problems: list[str] = []
    lock = threading.Lock()
    created: dict[str, tuple[str, dict, Path]] = {}   # tag -> (snapshot, manifest, workspace)
    deleted: set[str] = set()
    gone_before: list[str] = []                       # own tags found deleted already
    latest: list[str] = []                            # every snapshot `latest` was moved to

    def step(number: int, args: list[str], ws: Path, allowed=(0,)):
        proc = run(args, ws)
        if proc.returncode not in allowed:
            problems.append(f"writer {number}: rnstore {' '.join(args)} exited {proc.returncode}: "
                            f"{proc.stderr}")
            return None
        return proc

    def writer(number: int) -> None:
        ws = workspaces[number]
        rng = random.Random(number)
        for k in range(rounds):
            mutate(ws, rng, 3)
            expected = manifest(ws)
            proc = step(number, ["commit", "-a", "-q", "-m", f"w{number} r{k}"], ws)
            if proc is None:
                return
            snap = proc.stdout.decode().strip()
            name = f"w{number}-r{k}"
            if step(number, ["tag", name, snap], ws) is None:
                return
            with lock:
                created[name] = (snap, expected, ws)
            # only the store's tag keeps it now
            if step(number, ["forget", "-q", snap], ws) is None:
                return
            if step(number, ["tag", "-f", "latest", snap], ws) is not None:
                with lock:
                    latest.append(snap)
            # every other round: its previous tag goes, deleted by itself and by
            # the workspace before it at once (one of them wins; exit 2 for the other)
            if k % 2 == 1:
                own = f"w{number}-r{k - 1}"
                other = f"w{(number + 1) % WRITERS}-r{k - 1}"
                for name in (own, other):
                    proc = step(number, ["tag", "-d", name], ws, allowed=(0, 2))
                    if proc is not None:
                        with lock:
                            if proc.returncode == 0:
                                deleted.add(name)
                            elif name == own:
                                gone_before.append(own)

    with gc_looping(gc_ws, problems) as gc_runs, ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))
    assert not problems, "\n".join(problems)

    listed = {t["name"]: t["id"] for t in json.loads(run(["tag", "--json"], gc_ws).stdout)}
    kept = {name: value for name, value in created.items() if name not in deleted}
    lost = sorted(set(kept) - set(listed))
    assert not lost, f"tags lost: {lost}"
    vanished = sorted(set(gone_before) - deleted)
    assert not vanished, f"tags gone that nobody deleted: {vanished}"
    back = sorted(set(listed) & deleted)
    assert not back, f"deleted tags came back: {back}"
    assert set(listed) == set(kept) | {"latest"}
    assert listed["latest"] in latest
    for name, (snap, expected, ws) in kept.items():
        assert listed[name] == snap, name
        problem = materialise_matches(gc_ws, snap, expected, scratch / "verify")
        assert problem is None, f"tag {name}: {problem}"
    assert not fsck_problems(gc_ws)
    STATS["concurrent.writers"] += WRITERS
    STATS["concurrent.commits"] += len(created)
    STATS["concurrent.gc_runs"] += len(gc_runs)
    NOTES.append(f"store tags: {WRITERS} workspaces made {len(created)} tags, deleted {len(deleted)} "
                 f"and moved `latest` {len(latest)} times beside {len(gc_runs)} gc --prune now runs")
