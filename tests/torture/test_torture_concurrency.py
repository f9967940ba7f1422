"""Many processes at once: commits into a shared store beside a gc loop,
commits racing in one workspace, readers beside gc, and an `add` with a gc
slipped in before it writes the index.

Every command is a real `rnstore` process; the threads here only start
them and wait. Nothing is asserted about timing: a process that has to
wait for a lock waits (core.lock_wait), and every run must end with exit 0
or a clean exit 1, never a traceback.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.torture import (NOTES, STATS, checkout_exactly, commit, fsck_problems, gc_loop, gc_looping, init, make_tree, manifest,
                             materialise_matches, mutate, ok, out, read_beside, run, scale)

pytestmark = pytest.mark.torture

WRITERS = 8
COMMITS_PER_WRITER = 4


def shared_content(k: int) -> bytes:
    """Files every workspace holds the same copy of (one store object),
    appearing and disappearing: gc may collect one while a writer stores
    it again."""
    return random.Random(1000 + k).randbytes(700)


def test_shared_store_writers_beside_gc_loop(scratch):
    """8 workspaces on one object store commit in parallel (forgetting every
    other snapshot, so gc has work) while a 9th process runs
    `gc --prune now` in a loop: every id a commit printed and that was not
    forgotten checks out exactly, and fsck is clean."""
    store = scratch / "store"
    commits = COMMITS_PER_WRITER * scale()
    workspaces = []
    for i in range(WRITERS + 1):
        ws = scratch / f"ws{i}"
        make_tree(ws, 40, seed=100 + i, links=i % 2 == 0)
        init(ws, "--objects", store)
        workspaces.append(ws)
    gc_ws = workspaces.pop()
    problems: list[str] = []
    printed: list[tuple[Path, str, dict]] = []
    forgotten: set[str] = set()
    lock = threading.Lock()

    def writer(number: int) -> None:
        ws = workspaces[number]
        rng = random.Random(number)
        previous = None
        for k in range(commits):
            mutate(ws, rng, 4)
            common = ws / "common"
            common.mkdir(exist_ok=True)
            for j in range(3):
                shared = common / f"shared{(k + j) % 5}.bin"
                shared.write_bytes(shared_content((k + j) % 5))
            stale = common / f"shared{(k + 3) % 5}.bin"
            if stale.exists():
                stale.unlink()
            expected = manifest(ws)
            proc = run(["commit", "-a", "-q", "-m", f"w{number} c{k}"], ws)
            if proc.returncode != 0:
                problems.append(f"writer {number} commit {k} exited {proc.returncode}: {proc.stderr}")
                return
            snap = proc.stdout.decode().strip()
            with lock:
                printed.append((ws, snap, expected))
            if previous is not None and k % 2 == 1:
                ok(["forget", "-q", previous], ws)
                with lock:
                    forgotten.add(previous)
            previous = snap

    with gc_looping(gc_ws, problems) as gc_runs, ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))
    STATS["concurrent.writers"] += WRITERS
    STATS["concurrent.commits"] += len(printed)
    STATS["concurrent.gc_runs"] += len(gc_runs)
    NOTES.append(f"shared store: {WRITERS} writers made {len(printed)} commits "
                 f"({len(forgotten)} forgotten) beside {len(gc_runs)} gc --prune now runs")
    assert not problems, "\n".join(problems)

    for ws, snap, expected in printed:
        if snap in forgotten:
            continue
        problem = materialise_matches(ws, snap, expected, scratch / "verify")
        assert problem is None, problem
    # one of them through the CLI, and the store as a whole
    ws, snap, expected = next(p for p in reversed(printed) if p[1] not in forgotten)
    ok(["checkout", snap, "--target", scratch / "cli-verify", "-q"], ws)
    assert manifest(scratch / "cli-verify") == expected
    for ws in workspaces[:2] + [gc_ws]:
        assert not fsck_problems(ws)


def test_parallel_commits_in_one_workspace(scratch):
    """4 processes commit -a in one workspace: each exits 0 (printing an id)
    or 1 ("nothing to commit": another commit took its change); every
    printed id is in the history of HEAD; nothing is lost."""
    ws = scratch / "ws"
    make_tree(ws, 200, seed=3)
    init(ws)
    commit(ws, "base")
    rounds = 5 * scale()
    problems: list[str] = []
    printed: list[str] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        for k in range(rounds):
            (ws / f"writer{number}.txt").write_bytes(f"writer {number} round {k}\n".encode())
            proc = run(["commit", "-a", "-q", "-m", f"w{number} r{k}"], ws)
            if proc.returncode == 0:
                with lock:
                    printed.append(proc.stdout.decode().strip())
            elif proc.returncode != 1 or "nothing to commit" not in proc.stderr:
                problems.append(f"writer {number} round {k}: exit {proc.returncode}: {proc.stderr}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(writer, range(4)))
    STATS["concurrent.writers"] += 4
    STATS["concurrent.commits"] += len(printed)
    assert not problems, "\n".join(problems)
    assert len(set(printed)) == len(printed), "two commits printed the same id"
    history = {entry["id"] for entry in json.loads(out(["log", "--json"], ws))}
    lost = [snap for snap in printed if snap not in history]
    assert not lost, f"printed ids missing from the history of HEAD: {lost}"
    live = {entry["id"] for entry in json.loads(out(["log", "--all", "--json"], ws))}
    assert set(printed) <= live
    # the last state of every writer's file is in HEAD after one more commit
    proc = run(["commit", "-a", "-q", "-m", "final"], ws)
    assert proc.returncode in (0, 1), proc.stderr
    head = out(["rev-parse", "HEAD"], ws)
    ok(["checkout", head, "--target", scratch / "verify", "-q"], ws)
    assert manifest(scratch / "verify") == manifest(ws)
    assert not fsck_problems(ws)


def test_readers_beside_gc(scratch):
    """checkout --target and export of live snapshots, beside a gc loop and
    a workspace that keeps making and forgetting snapshots in the same
    store: readers never fail, and always give the exact content."""
    store = scratch / "store"
    reader_ws = scratch / "reader"
    make_tree(reader_ws, 300, seed=21)
    init(reader_ws, "--objects", store)
    rng = random.Random(5)
    snaps = {}
    for k in range(3):
        mutate(reader_ws, rng, 60)
        snaps[commit(reader_ws, f"r{k}")] = manifest(reader_ws)
    references = {}
    for snap in snaps:
        output = scratch / f"ref-{snap[:8]}.tar.zst"
        ok(["export", snap, "-o", output, "-q"], reader_ws)
        references[snap] = output.read_bytes()
    churn_ws = scratch / "churn"
    make_tree(churn_ws, 100, seed=22)
    init(churn_ws, "--objects", store)
    gc_ws = scratch / "gc"
    gc_ws.mkdir()
    init(gc_ws, "--objects", store)

    stop = threading.Event()
    problems: list[str] = []
    gc_runs: list[int] = []

    def churn() -> None:
        churn_rng = random.Random(9)
        while not stop.is_set():
            # the same files as the reader's snapshots, committed and forgotten:
            # shared objects become unreachable from here while the reader holds them
            for path, entry in list(snaps.values())[churn_rng.randrange(3)].items():
                if entry[0] == "file" and churn_rng.random() < 0.2:
                    source = reader_ws / path
                    if source.is_file():
                        dest = churn_ws / "copy" / path
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(source, dest)
            mutate(churn_ws, churn_rng, 10)
            proc = run(["commit", "-a", "-q", "-m", "churn"], churn_ws)
            if proc.returncode == 0:
                ok(["forget", "-q", proc.stdout.decode().strip()], churn_ws)
            elif proc.returncode != 1:
                problems.append(f"churn commit exited {proc.returncode}: {proc.stderr}")
            shutil.rmtree(churn_ws / "copy", ignore_errors=True)

    def read_one(snap: str, expected: dict, reads: int) -> None:
        checkout_exactly(reader_ws, snap, expected, scratch / "read-target", problems)
        output = scratch / "read.tar.zst"
        proc = run(["export", snap, "-o", output, "-q"], reader_ws)
        if proc.returncode != 0:
            problems.append(f"export {snap[:12]} exited {proc.returncode}: {proc.stderr}")
        elif output.read_bytes() != references[snap]:
            problems.append(f"export {snap[:12]} differs from the reference archive")

    threads = [threading.Thread(target=gc_loop, args=(gc_ws, stop, problems, gc_runs)),
               threading.Thread(target=churn)]
    reads = read_beside(threads, stop, snaps, read_one, problems)
    STATS["concurrent.readers"] += reads
    STATS["concurrent.gc_runs"] += len(gc_runs)
    STATS["concurrent.writers"] += 1
    NOTES.append(f"readers: {reads} checkouts/exports beside {len(gc_runs)} gc runs")
    assert not problems, "\n".join(problems)
    assert not fsck_problems(reader_ws)


def test_gc_between_add_storing_and_index_write(scratch, monkeypatch):
    """`rnstore add` while a `gc --prune now` runs: the gc is slipped in at
    the one moment that matters (after add stored its blobs, before it
    writes the index), deterministically, by running it from inside
    Repository.write_index. Spec: gc cannot delete an object a concurrent
    add is about to reference."""
    from rnstore.repo import Repository
    ws = scratch / "ws"
    make_tree(ws, 30, seed=4)
    init(ws)
    commit(ws, "base")
    for i in range(5):
        (ws / f"new{i}.txt").write_bytes(f"brand new content {i}\n".encode())
    original = Repository.write_index
    ran = []

    def write_index_after_gc(self, index):
        if not ran:
            ran.append(run(["gc", "--prune", "now", "-q"], ws, timeout=120))
        return original(self, index)

    # add holds the store lock (shared) until the index is written, so the
    # gc must wait; a short lock_wait makes it give up instead of hanging.
    assert run(["config", "core.lock_wait", "2s"], ws).returncode == 0
    monkeypatch.setattr(Repository, "write_index", write_index_after_gc)
    Repository.open(ws).add(["."], cwd=ws)
    monkeypatch.setattr(Repository, "write_index", original)
    STATS["concurrent.gc_runs"] += 1
    assert ran and ran[0].returncode == 1, ran and ran[0].stderr
    assert "store lock" in ran[0].stderr.decode() if isinstance(ran[0].stderr, bytes) else ran[0].stderr
    problems = fsck_problems(ws)
    assert not problems, f"gc deleted blobs that add was about to reference: {problems}"
    proc = run(["commit", "-q", "-m", "after add"], ws)
    assert proc.returncode == 0, proc.stderr
