"""Repacking under fire (FORMAT.md, "Repacking"):

- kill -9 of `gc` while it repacks, at seeded random moments (the crash
  lanes of test_torture_crash.py): each time the store has fresh loose
  objects and small packs to merge. After each kill every recorded snapshot
  is still live and readable, fsck is clean, and a second `gc` finishes the
  job: nothing loose is left, no object is stored twice, one pack remains
  (a gc run by hand is a full repack: every pack merged and the deltas
  chosen anew, so most of its time is repacking and most kills land there).
- readers and a writer racing repacks: `gc` in a loop that moves every
  object each time (gc.auto_packs 2: everything merged into one pack),
  beside `checkout --target` and `cat-file -p` processes, a reader in this
  process that keeps one Repository open (its pack listing and open packs
  go stale under it), and a writer committing: no read ever misses an
  object or gives other bytes, and every commit succeeds.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import threading

import pytest

from helpers.torture import (NOTES, STATS, checkout_exactly, commit, fsck_problems, gc_loop, init, make_tree, manifest,
                             manifest_diff, mutate, ok, read_beside, run)
from test_torture_crash import Lane, attempts_left, run_crash_lanes

pytestmark = pytest.mark.torture

#: kill moments at scale 1, over two lanes (each a gc, its checks and a second gc)
KILLS = 16
#: files of the workspace; each round adds loose objects and a pack
FILES = 600


def store_census(lane: Lane) -> tuple[int, int, int, int]:
    """(loose objects, packs, stored copies, distinct objects)."""
    store = lane.repo().store
    copies = list(store.stored_objects())
    loose = sum(1 for c in copies if not c.packed)
    packs = len({c.where for c in copies if c.packed})
    return loose, packs, len(copies), len({c.id for c in copies})


def repack_lane(lane: Lane) -> None:
    ws = lane.ws
    rng = lane.rng
    make_tree(ws, FILES, lane.seed)
    init(ws)
    ok(["config", "gc.auto", "false"], ws)  # the gc under test is the one killed
    # every gc merges every pack: most of a gc's time is repacking, where the kills land
    ok(["config", "gc.auto_packs", "2"], ws)
    lane.record(commit(ws, "base"), manifest(ws))

    def grow() -> None:
        """Work for a repack: a wide commit (a pack), small ones (loose
        objects), and a forgotten snapshot (garbage), through the library."""
        for changes in (70, 3):
            mutate(ws, rng, changes)
            expected = manifest(ws)
            result = lane.repo().snapshot(f"round {lane.iteration}")
            if not result.unchanged:
                lane.record(result.id, expected)
        (ws / "junk").mkdir()
        for i in range(20):
            (ws / "junk" / f"j{i}").write_bytes(rng.randbytes(rng.randint(1, 3000)))
        doomed = lane.repo().snapshot("garbage").id
        shutil.rmtree(ws / "junk")
        lane.repo().forget([doomed])

    grow()
    lane.measure(lambda: ok(["gc", "-q"], ws))
    while attempts_left(lane):
        lane.iteration += 1
        grow()
        args = ["gc", "--prune", "now", "-q"] if lane.iteration % 2 else ["gc", "-q"]
        killed, code, _, stderr = lane.kill_at_random(args)
        if not killed:
            if code != 0:
                lane.fail(f"an unkilled gc exits {code}: {stderr}")
            continue
        loose, packs, copies, distinct = store_census(lane)
        if copies > distinct:  # killed between publishing its pack and removing what it replaced
            lane.count("repack_killed_midway")
        elif any((ws / ".rnstore" / "objects" / "pack").glob(".tmp-*")):
            lane.count("repack_killed_writing")  # killed while writing its pack
        lane.after_kill()  # every snapshot live and readable, fsck clean, status works
        # a second gc finishes the job
        proc = run(["gc", "--prune", "now", "-q"], ws)
        if proc.returncode != 0:
            lane.fail(f"the gc after the kill exits {proc.returncode}: {proc.stderr}")
        loose, packs, copies, distinct = store_census(lane)
        if loose or copies != distinct:
            lane.fail(f"after a second gc: {loose} loose objects, {copies - distinct} objects stored twice")
        if packs != 1:
            store = lane.repo().store
            detail = {}
            for c in store.stored_objects():
                detail.setdefault(c.where[-20:], []).append(c.id)
            dry = lane.repo().gc(dry_run=True, prune="now")
            lane.fail(f"after a second gc: {packs} packs (gc.auto_packs 2 allows one): "
                      f"{ {k: len(v) for k, v in detail.items()} }; a third gc would delete {dry.deleted_objects}, "
                      f"repack {dry.repacked_objects}; bases {[store.delta_base(o) for v in detail.values() for o in v if len(v) < 20]}")
        lane.count("repack_second_gc")
        lane.check_store()
        lane.check_snapshots()
        mutate(ws, rng, 3)
        lane.commit_next(f"after kill {lane.iteration}")


def test_kill_gc_while_it_repacks(scratch):
    """kill -9 `gc` while it merges loose objects and small packs."""
    results = run_crash_lanes("repack", repack_lane, scratch, seeds=(31, 47), kills=KILLS)
    midway = sum(r["stats"].get("repack_killed_midway", 0) for r in results)
    writing = sum(r["stats"].get("repack_killed_writing", 0) for r in results)
    NOTES.append(f"crash repack: {writing} kills landed while gc wrote its new pack, {midway} after it "
                 "published it and before it removed all it replaced (objects stored twice)")


def test_readers_and_a_writer_racing_repacks(scratch):
    store = scratch / "store"
    ws = scratch / "ws"
    make_tree(ws, FILES, seed=41)
    init(ws, "--objects", store)
    ok(["config", "gc.auto", "false"], ws)
    ok(["config", "gc.auto_packs", "2"], ws)  # every gc merges every pack: every object moves
    rng = random.Random(43)
    snaps: dict[str, dict] = {}
    for k in range(3):
        mutate(ws, rng, 60)
        snaps[commit(ws, f"read {k}")] = manifest(ws)
    blobs = sorted({entry[2] for m in snaps.values() for entry in m.values() if entry[0] == "file"})
    writer_ws = scratch / "writer"  # a workspace of its own, committing into the same store
    stop = threading.Event()
    problems: list[str] = []
    gc_runs: list[int] = []
    written: dict[str, dict] = {}
    in_process_reads = [0]

    def writer() -> None:
        wrng = random.Random(44)
        shutil.copytree(ws, writer_ws, symlinks=True, ignore=shutil.ignore_patterns(".rnstore"))
        init(writer_ws, "--objects", store)
        ok(["config", "gc.auto", "false"], writer_ws)
        while not stop.is_set():
            mutate(writer_ws, wrng, wrng.choice((3, 80)))
            expected = manifest(writer_ws)
            proc = run(["commit", "-a", "-q", "-m", "racing"], writer_ws)
            if proc.returncode != 0:
                problems.append(f"a commit racing repacks exited {proc.returncode}: {proc.stderr}")
                return
            written[proc.stdout.decode().strip()] = expected

    def reader_in_process() -> None:
        """One Repository open throughout: its pack listing and the packs it
        opened go stale as gc replaces them."""
        from rnstore.repo import Repository
        repo = Repository.open(ws)
        while not stop.is_set():
            for oid in blobs:
                data = b"".join(repo.store.iter_blob(oid))
                if hashlib.sha256(data).hexdigest() != oid:
                    problems.append(f"in-process read of {oid} gave other bytes")
                    return
                in_process_reads[0] += 1
            stop.wait(0.05)  # the processes under test need the cores more
    def read_one(snap: str, expected: dict, reads: int) -> None:
        checkout_exactly(ws, snap, expected, scratch / "read-target", problems)
        oid = blobs[reads % len(blobs)]
        proc = run(["cat-file", "-p", oid], ws)
        if proc.returncode != 0 or hashlib.sha256(proc.stdout).hexdigest() != oid:
            problems.append(f"cat-file -p {oid} exited {proc.returncode}: {proc.stderr}")

    threads = [threading.Thread(target=gc_loop, args=(ws, stop, problems, gc_runs)),
               threading.Thread(target=writer), threading.Thread(target=reader_in_process)]
    reads = read_beside(threads, stop, snaps, read_one, problems)
    STATS["concurrent.readers"] += reads + 1
    STATS["concurrent.gc_runs"] += len(gc_runs)
    STATS["concurrent.writers"] += 1
    STATS["concurrent.commits"] += len(written)
    NOTES.append(f"repack races: {reads} checkouts/cat-files and {in_process_reads[0]} in-process blob "
                 f"reads beside {len(gc_runs)} repacking gc runs and {len(written)} commits")
    assert not problems, "\n".join(problems)
    assert gc_runs and written
    assert not fsck_problems(ws)
    for snap, expected in list(written.items())[-3:] + list(snaps.items()):
        target = scratch / "final"
        if target.exists():
            shutil.rmtree(target)
        ok(["checkout", snap, "--target", target, "-q"], ws)
        assert manifest(target) == expected, manifest_diff(expected, manifest(target))
