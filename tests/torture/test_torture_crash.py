"""kill -9 at random moments: commit -a, a workspace checkout, export, gc.

Each command runs in independent lanes (forked workers, so both cores
work); a lane repeats: prepare, start the command, wait a seeded random
delay between 5 ms and the command's typical duration (measured at the
start of the lane; a quarter of the moments anywhere in that span, the
rest after the CLI's start-up, while the command works: see
helpers.torture.random_moment), SIGKILL it, then check:

- the store is consistent: fsck finds no problem but dangling objects (if
  it does, `gc --prune now` may tidy first: "clean after gc at most");
- every snapshot recorded so far is live, still has its tree, and (one per
  kill, rotating, and all of them at the end of the lane, through
  `rnstore checkout SNAP --target DIR`) checks out byte-identical;
- HEAD and the index are usable: `status` works;
- the next `commit -a` works, and its snapshot is exactly the workspace;
- for a workspace checkout: every path holds its old or its new content,
  or is absent; nothing else is ever there.

Most checks run in the lane's process, to save interpreter start-ups:
the store check is helpers.torture.StoreChecker (fsck's checks, incremental: new
objects are verified, roots re-read, new trees walked), status and the
next commit go through the library functions the CLI calls. Every
DEEP_EVERY-th kill and the end of each lane use the CLI itself
(`rnstore fsck`, `status`, `commit -a`, `checkout SNAP --target DIR`
compared byte for byte). The commands killed are always real CLI
processes.

Temporary files that killed processes leave are counted per lane (those
in objects/ must be gone after the final `gc --prune now`); whether each
kind of leftover is removed is checked deterministically by
test_leftovers_of_killed_writers_are_removed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers.torture import (NOTES, STATS, StoreChecker, assert_manifest, build_two_snapshots, commit,
                             copy_tree, finished, fsck_problems, init, kill_group, lane_violations,
                             make_tree, manifest, manifest_diff, mutate, ok, random_moment, run,
                             run_lanes, scale, spawn, startup_seconds, temp_leftovers)

pytestmark = pytest.mark.torture

#: Kill moments per command at scale 1 (split over the lanes).
KILLS = int(os.environ.get("RNSTORE_TORTURE_KILLS", "50"))  # (a knob for development)
LANES = 2
#: Every this many kills (and at the end) the checks go through the CLI.
DEEP_EVERY = 10
#: Files of the commit workload.
COMMIT_FILES = 2000

# -- the shared lane machinery ---------------------------------------------------------


class Violation(AssertionError):
    pass


def tree_manifest(repo, snapshot_id: str) -> dict:
    """A snapshot as manifest() shows a folder: {path: (type, mode, sha or target)}."""
    from rnstore.objects import MODE_LINK, MODE_TREE
    from rnstore.trees import iter_tree
    result = {}
    for entry in iter_tree(repo.store, repo.store.get_snapshot(snapshot_id).tree):
        path = os.fsdecode(entry.path)
        if entry.mode == MODE_TREE:
            result[path] = ("dir", "040000", "")
        elif entry.mode == MODE_LINK:
            target = b"".join(repo.store.iter_blob(entry.id))
            result[path] = ("link", "120000", os.fsdecode(target))
        else:
            result[path] = ("file", entry.mode, entry.id)
    return result


class Lane:
    def __init__(self, config: dict):
        self.config = config
        self.kind = config["kind"]
        self.seed = config["seed"]
        self.rng = random.Random(self.seed)
        self.base = Path(config["base"])
        self.base.mkdir(parents=True, exist_ok=True)
        self.ws = self.base / "ws"
        self.kills_wanted = config["kills"]
        self.kills = 0
        self.completed = 0
        self.iteration = 0
        self.delay = 0.0
        self.typical = 0.0
        self.startup = 0.0
        #: snapshot id -> (tree id, manifest)
        self.snaps: dict[str, tuple[str, dict]] = {}
        self.stats: dict[str, int] = {}
        self.violations: list[str] = []
        self.rotation = 0
        self.notes: list[str] = []
        self.checker = StoreChecker()

    # -- helpers --------------------------------------------------------------------

    def repo(self):
        from rnstore.repo import Repository
        return Repository.open(self.ws)

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def where(self) -> str:
        return (f"[{self.kind} lane seed={self.seed} iteration={self.iteration} "
                f"kill #{self.kills} after {self.delay * 1000:.0f} ms of ~{self.typical * 1000:.0f} ms]")

    def fail(self, message: str) -> None:
        raise Violation(f"{self.where()} {message}")

    def kill_at_random(self, args: list, cwd: Path | None = None) -> tuple[bool, int, bytes, str]:
        """Start `rnstore ARGS`, SIGKILL it after a random delay. (killed,
        returncode, stdout, stderr)."""
        self.delay = random_moment(self.rng, self.startup, self.typical)
        proc = spawn(args, cwd or self.ws)
        start = time.monotonic()
        try:
            proc.wait(timeout=self.delay)
        except subprocess.TimeoutExpired:
            pass
        killed = kill_group(proc)
        if not killed:  # it finished first: learn how long the command takes
            self.typical = (self.typical + (time.monotonic() - start)) / 2
        code, stdout, stderr = finished(proc)
        if "Traceback" in stderr:
            self.fail(f"traceback from rnstore {' '.join(map(str, args))}:\n{stderr}")
        if killed:
            self.kills += 1
            self.count(f"crash.{self.kind}")
            if self.delay > self.startup:
                self.count(f"crash_after_startup.{self.kind}")
        else:
            self.completed += 1
            self.count(f"crash_completed.{self.kind}")
        return killed, code, stdout, stderr

    def measure(self, function) -> None:
        """The typical duration of the command killed (run once, whole), and
        how long the CLI takes to start (rev-parse: imports, no work)."""
        start = time.monotonic()
        function()
        self.typical = time.monotonic() - start
        self.startup = startup_seconds(self.ws)

    # -- checks ---------------------------------------------------------------------

    def deep(self) -> bool:
        return self.kills % DEEP_EVERY == 0

    def check_store(self, deep: bool | None = None) -> None:
        deep = self.deep() if deep is None else deep
        if deep:
            problems = [f"{p['kind']} {p['id']}: {p['detail']}" for p in fsck_problems(self.ws)]
        else:
            self.count("checks.incremental")
            problems = self.checker.check(self.repo())
        if problems:
            # "fsck is clean, after gc --prune now at most"
            run(["gc", "--prune", "now", "-q"], self.ws)
            again = [f"{p['kind']} {p['id']}: {p['detail']}" for p in fsck_problems(self.ws)]
            if again:
                self.fail(f"fsck finds problems after the kill (and after gc --prune now): {again[:5]}")
            self.count("crash_fsck_needed_gc")
            self.notes.append(f"{self.where()} fsck clean only after gc: {problems[:3]}")

    def check_status(self, deep: bool | None = None) -> None:
        deep = self.deep() if deep is None else deep
        if deep:
            proc = run(["status", "--porcelain"], self.ws)
            if proc.returncode != 0:
                self.fail(f"status exits {proc.returncode}: {proc.stderr}")
        else:
            from rnstore.staging import status
            try:
                status(self.repo())
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                self.fail(f"status fails: {type(exc).__name__}: {exc}")

    def check_snapshots(self, deep: bool | None = None) -> None:
        """Every recorded snapshot is live with its tree; one (rotating)
        checks out byte-identical."""
        deep = self.deep() if deep is None else deep
        repo = self.repo()
        live = set(repo.journal)
        for snap, (tree, _) in self.snaps.items():
            if snap not in live:
                self.fail(f"snapshot {snap} is no longer live")
            try:
                now = repo.store.get_snapshot(snap).tree
            except Exception as exc:  # noqa: BLE001
                self.fail(f"snapshot {snap} cannot be read: {exc}")
            if now != tree:
                self.fail(f"snapshot {snap} has tree {now}, was {tree}")
        if not self.snaps or not (deep or self.config.get("checkout_each_kill")):
            return
        ids = sorted(self.snaps)
        snap = ids[self.rotation % len(ids)]
        self.rotation += 1
        self.checkout_exact(snap, cli=deep)

    def checkout_exact(self, snap: str, cli: bool) -> None:
        target = self.base / "verify"
        if target.exists():
            shutil.rmtree(target)
        expected = self.snaps[snap][1]
        if cli:
            ok(["checkout", snap, "--target", target, "-q"], self.ws)
        else:
            from rnstore.checkout import materialise
            materialise(self.repo(), snap, target)
        self.count("checks.checkouts")
        actual = manifest(target)
        if actual != expected:
            self.fail(f"checkout of {snap} differs:\n{manifest_diff(expected, actual)}")
        shutil.rmtree(target)

    def record(self, snap: str, expected: dict) -> None:
        """A new snapshot: it must hold exactly `expected` (the workspace)."""
        repo = self.repo()
        actual = tree_manifest(repo, snap)
        if actual != expected:
            self.fail(f"snapshot {snap} does not hold the workspace:\n{manifest_diff(expected, actual)}")
        self.snaps[snap] = (repo.store.get_snapshot(snap).tree, expected)

    def commit_next(self, message: str) -> str | None:
        """The next `commit -a` works: exit 0 with a snapshot that is the
        workspace, or exit 1 "nothing to commit" when HEAD already is."""
        expected = manifest(self.ws)
        if not self.deep():  # through the library function the CLI calls
            from rnstore.errors import NothingToCommitError
            try:
                snap = self.repo().commit(message, all=True).id
            except NothingToCommitError:
                head = self.repo().refs.head()[1]
                self.record(head, expected)
                return None
            except Exception as exc:  # noqa: BLE001 - the finding
                self.fail(f"the next commit -a fails: {type(exc).__name__}: {exc}")
            self.record(snap, expected)
            return snap
        proc = run(["commit", "-a", "-q", "-m", message], self.ws)
        if proc.returncode == 0:
            snap = proc.stdout.decode().strip()
            self.record(snap, expected)
            return snap
        if proc.returncode == 1 and "nothing to commit" in proc.stderr:
            head = self.repo().refs.head()[1]
            self.record(head, expected)  # the crashed commit finished: HEAD is the workspace
            return None
        self.fail(f"the next commit -a exits {proc.returncode}: {proc.stderr}")

    def after_kill(self) -> None:
        self.check_store()
        self.check_snapshots()
        self.check_status()

    def finish(self) -> None:
        """End of lane: every check through the CLI, every snapshot checked
        out; then a full gc, after which nothing may be left over."""
        self.check_store(deep=True)
        self.check_status(deep=True)
        ids = list(self.snaps)  # in the order they were made: the first and the last, and two more
        chosen = {ids[0], ids[-1], *self.rng.sample(ids, min(2, len(ids)))}
        for snap in sorted(chosen):
            self.checkout_exact(snap, cli=True)
        ok(["gc", "--prune", "now", "-q"], self.ws)
        if fsck_problems(self.ws):
            self.fail("fsck finds problems after the final gc")
        self.leftovers = [os.path.relpath(p, self.base) for p in temp_leftovers(self.ws)]
        in_store = [p for p in self.leftovers if "/objects/" in p]
        if in_store:
            self.fail(f"gc --prune now left temporary files in the store: {in_store}")

    def result(self) -> dict:
        self.stats.setdefault(f"crash.{self.kind}", 0)
        return {"stats": self.stats, "violations": self.violations, "notes": self.notes,
                "leftovers": getattr(self, "leftovers", []), "kills": self.kills,
                "completed": self.completed, "typical_ms": round(self.typical * 1000)}


def lane_main(body):
    """Wrap a lane body: a Violation ends the lane and is reported."""
    def main(config: dict) -> dict:
        lane = Lane(config)
        try:
            body(lane)
            lane.finish()
        except Violation as exc:
            lane.violations.append(str(exc))
        except AssertionError as exc:
            lane.violations.append(f"{lane.where()} {exc}")
        return lane.result()
    return main


def run_crash_lanes(kind: str, body, scratch: Path, seeds=(11, 23), kills: int = KILLS) -> list[dict]:
    kills = kills * scale()
    per_lane = [kills // LANES + (1 if i < kills % LANES else 0) for i in range(LANES)]
    configs = [{"kind": kind, "seed": seeds[i % len(seeds)] + 1000 * (i // len(seeds)),
                "base": str(scratch / f"lane{i}"), "kills": per_lane[i]} for i in range(LANES)]
    results = run_lanes(lane_main(body), configs)
    left = [f for r in results for f in r.get("leftovers", [])]
    if left:
        NOTES.append(f"crash {kind}: after the final gc, {len(left)} temporary file(s) of killed "
                     f"processes remain outside objects/: {sorted(left)[:4]}")
    for r in results:
        NOTES.extend(r.get("notes", [])[:3])
    summary = ", ".join(f"{r.get('kills')} kills ({r['stats'].get(f'crash_after_startup.{kind}', 0)} after "
                        f"start-up) + {r.get('completed')} completed runs (typical {r.get('typical_ms')} ms)"
                        for r in results)
    NOTES.append(f"crash {kind}: {summary}")
    violations = lane_violations(results)
    assert not violations, "\n\n".join(violations)
    assert sum(r.get("kills", 0) for r in results) >= kills, summary
    return results


def attempts_left(lane: Lane) -> bool:
    return lane.kills < lane.kills_wanted and lane.iteration < lane.kills_wanted * 6


# -- commit -a ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def commit_template(session_scratch) -> Path:
    """A workspace of COMMIT_FILES small files with its first snapshot."""
    ws = session_scratch / "commit-template"
    make_tree(ws, COMMIT_FILES, seed=5)
    init(ws)
    commit(ws, "base")
    return ws


def commit_lane(lane: Lane) -> None:
    copy_tree(Path(lane.config["template"]), lane.ws)
    repo = lane.repo()
    head = repo.refs.head()[1]
    lane.record(head, manifest(lane.ws))

    mutate(lane.ws, lane.rng, 60)
    expected = manifest(lane.ws)
    lane.measure(lambda: lane.record(commit(lane.ws, "calibrate"), expected))
    while attempts_left(lane):
        lane.iteration += 1
        mutate(lane.ws, lane.rng, 150)
        if lane.rng.random() < 0.3:  # a renamed folder: many paths move at once
            folders = sorted(p for p in lane.ws.iterdir() if p.is_dir() and p.name != ".rnstore")
            if folders:
                victim = lane.rng.choice(folders)
                victim.rename(victim.with_name(victim.name + f"r{lane.iteration}"))
        killed, code, stdout, stderr = lane.kill_at_random(["commit", "-a", "-q", "-m", f"killed {lane.iteration}"])
        if not killed:
            if code != 0:
                lane.fail(f"an unkilled commit -a exits {code}: {stderr}")
            lane.record(stdout.decode().strip(), manifest(lane.ws))
            continue
        lane.after_kill()
        lane.commit_next(f"after kill {lane.iteration}")


def test_kill_commit(scratch, commit_template):
    """kill -9 `commit -a` of a 2000-file workspace at random moments."""
    def body(lane):
        lane.config.setdefault("template", str(commit_template))
        commit_lane(lane)
    run_crash_lanes("commit", body, scratch)


# -- workspace checkout -------------------------------------------------------------------


def checkout_lane(lane: Lane) -> None:
    snap_a, man_a, snap_b, man_b = build_two_snapshots(lane.ws, lane.seed, lane.config["files"])
    lane.record(snap_a, man_a)
    lane.record(snap_b, man_b)
    sides = {snap_a: man_a, snap_b: man_b}
    current = snap_b

    def switch():
        ok(["checkout", "-q", snap_a], lane.ws)
        ok(["checkout", "-q", snap_b], lane.ws)
    lane.measure(switch)
    lane.typical /= 2
    while attempts_left(lane):
        lane.iteration += 1
        goal = snap_a if current == snap_b else snap_b
        killed, code, _, stderr = lane.kill_at_random(["checkout", "-q", goal])
        if not killed:
            if code != 0:
                lane.fail(f"an unkilled checkout exits {code}: {stderr}")
            assert_manifest(sides[goal], lane.ws, f"completed checkout of {goal[:12]}")
            current = goal
            continue
        # every path holds its old content, its new content, or nothing
        on_disk = manifest(lane.ws)
        old, new = sides[current], sides[goal]
        for path, entry in on_disk.items():
            if entry[0] == "dir":
                continue  # an empty folder on the way (created or emptied)
            if entry != old.get(path) and entry != new.get(path):
                lane.fail(f"'{path}' holds {entry}: neither the old {old.get(path)} "
                          f"nor the new {new.get(path)}")
        lane.after_kill()
        lane.commit_next(f"after kill {lane.iteration}")
        # finish the interrupted checkout: it must give exactly the goal
        if lane.deep():
            ok(["checkout", "-q", "--force", goal], lane.ws)
        else:
            from rnstore.checkout import checkout
            checkout(lane.repo(), goal, force=True)
        actual = manifest(lane.ws)
        if actual != new:
            lane.fail(f"checkout --force {goal[:12]} after the crash leaves:\n{manifest_diff(new, actual)}")
        current = goal


def test_kill_workspace_checkout(scratch):
    """kill -9 `checkout SNAP` between two snapshots that differ in many files."""
    def body(lane):
        lane.config.setdefault("files", 1500)
        checkout_lane(lane)
    run_crash_lanes("checkout", body, scratch)


# -- export -------------------------------------------------------------------------------


def export_lane(lane: Lane) -> None:
    ws = lane.ws
    make_tree(ws, lane.config["files"], lane.seed, max_size=8192)
    rng = random.Random(lane.seed)
    for i in range(8):  # a few larger files: the archive takes a while to write
        (ws / f"large{i}.bin").write_bytes(rng.randbytes(1 << 20) * 3)
    init(ws)
    snap = commit(ws, "big")
    lane.record(snap, manifest(ws))
    output = lane.base / "out.tar.zst"
    reference = lane.base / "reference.tar.zst"

    def export_once():
        ok(["export", snap, "-o", reference, "-q"], ws)
    lane.measure(export_once)
    expected = reference.read_bytes()
    while attempts_left(lane):
        lane.iteration += 1
        if output.exists():
            output.unlink()
        killed, code, _, stderr = lane.kill_at_random(["export", snap, "-o", output, "-q"])
        if not killed:
            if code != 0:
                lane.fail(f"an unkilled export exits {code}: {stderr}")
        if output.exists() and output.read_bytes() != expected:
            lane.fail("the archive at the output name is not the complete archive")
        if killed:
            lane.after_kill()
            (ws / "touched.txt").write_bytes(b"%d\n" % lane.iteration)
            lane.commit_next(f"after kill {lane.iteration}")
            if lane.deep():
                ok(["export", snap, "-o", output, "-q"], ws)
                if output.read_bytes() != expected:
                    lane.fail("an export after the crash differs from the reference")
    # leftovers beside the output count as leftovers of the lane
    lane.output_leftovers = [p.name for p in lane.base.iterdir() if p.name.startswith(".tmp-")]


def test_kill_export(scratch):
    """kill -9 `export SNAP -o out.tar.zst` of a ~30 MB, 800-file snapshot."""
    def body(lane):
        lane.config.setdefault("files", 800)
        export_lane(lane)
        for name in getattr(lane, "output_leftovers", []):
            lane.count("export_temp_left_beside_output")
    results = run_crash_lanes("export", body, scratch)
    left = sum(r["stats"].get("export_temp_left_beside_output", 0) for r in results)
    if left:
        NOTES.append(f"export: {left} temporary archive(s) left beside the output by kill -9 "
                     "(a killed process cannot clean up; the next export to that name removes "
                     "those of dead processes once they are a minute old)")


# -- checkout --target --------------------------------------------------------------------


def target_lane(lane: Lane) -> None:
    """A new target folder is staged whole beside where it goes and renamed
    into place: after a kill it is absent or complete, never partial. An
    existing empty target gets its new folders whole: each path in it holds
    its content or is absent. The staging folders that kills leave are
    removed by the next checkout there once their process is gone."""
    ws = lane.ws
    make_tree(ws, lane.config["files"], lane.seed, max_size=8192)
    rng = random.Random(lane.seed)
    for i in range(4):  # a few larger files, streamed: the checkout takes a while
        (ws / f"large{i}.bin").write_bytes(rng.randbytes(1 << 20) * 5)
    init(ws)
    snap = commit(ws, "base")
    expected = manifest(ws)
    lane.record(snap, expected)
    target = lane.base / "restored"

    def restore_once():
        ok(["checkout", snap, "--target", target, "-q"], ws)
        shutil.rmtree(target)
    lane.measure(restore_once)
    while attempts_left(lane):
        lane.iteration += 1
        if target.exists():
            shutil.rmtree(target)
        existing = lane.rng.random() < 0.3
        if existing:
            target.mkdir()
        killed, code, _, stderr = lane.kill_at_random(["checkout", snap, "--target", target, "-q"])
        if not killed and code != 0:
            lane.fail(f"an unkilled checkout --target exits {code}: {stderr}")
        if not target.exists():
            if not killed or existing:
                lane.fail("the target folder is gone")
            lane.count("target_absent_after_kill")
            continue
        actual = manifest(target, skip=())
        staging = [p for p in actual if p.startswith(".tmp-checkout-")]
        if existing and killed:  # each path holds its content or is absent
            for path, entry in actual.items():
                if entry != expected.get(path) and not path.startswith(".tmp-checkout-") \
                        and entry[0] != "dir":
                    lane.fail(f"'{path}' holds {entry}, not {expected.get(path)}")
            lane.count("existing_target_partial" if len(actual) - len(staging) < len(expected)
                       else "existing_target_complete")
            continue
        if staging or actual != expected:
            lane.fail(f"the target folder is there but not complete:\n{manifest_diff(expected, actual)}")
        if killed:
            lane.count("target_complete_after_kill")
    # the leftovers of killed runs: removed by the next run once their process is gone
    for folder in (lane.base, target):
        for name in os.listdir(folder) if folder.exists() else []:
            if name.startswith(".tmp-checkout-"):
                lane.count("staging_left_by_kill")
                age(folder / name)
    ok(["checkout", snap, "--target", target, "-q", "--force"], ws)
    if manifest(target) != expected:
        lane.fail("the checkout after the kills is not exact")
    left = [name for folder in (lane.base, target) for name in os.listdir(folder)
            if name.startswith(".tmp-checkout-")]
    if left:
        lane.fail(f"the next checkout left the staging folders of killed runs: {left}")


def test_kill_target_checkout(scratch):
    """kill -9 `checkout SNAP --target DIR` of a ~25 MB, 800-file snapshot into
    a new folder (and, a third of the time, an existing empty one)."""
    def body(lane):
        lane.config.setdefault("files", 800)
        target_lane(lane)
    results = run_crash_lanes("target", body, scratch)
    counts = {key: sum(r["stats"].get(key, 0) for r in results)
              for key in ("target_absent_after_kill", "target_complete_after_kill",
                          "existing_target_partial", "existing_target_complete", "staging_left_by_kill")}
    NOTES.append(f"checkout --target: {counts}")


# -- gc -----------------------------------------------------------------------------------


def gc_lane(lane: Lane) -> None:
    ws = lane.ws
    make_tree(ws, lane.config["files"], lane.seed)
    init(ws)
    lane.record(commit(ws, "base"), manifest(ws))
    rng = lane.rng

    def make_garbage():
        # made through the library: the setup is not what is under test
        junk = ws / "junk"
        junk.mkdir()
        for i in range(lane.config["garbage"]):
            (junk / f"j{i}").write_bytes(rng.randbytes(rng.randint(1, 2000)))
        (junk / "sub").mkdir()
        (junk / "sub" / "deep").write_bytes(rng.randbytes(100))
        doomed = lane.repo().snapshot("garbage").id
        shutil.rmtree(junk)
        mutate(ws, rng, 5)
        expected = manifest(ws)
        keep = lane.repo().snapshot("keep").id
        lane.record(keep, expected)
        lane.repo().forget([doomed])

    make_garbage()
    lane.measure(lambda: ok(["gc", "--prune", "now", "-q"], ws))
    while attempts_left(lane):
        lane.iteration += 1
        make_garbage()
        killed, code, _, stderr = lane.kill_at_random(["gc", "--prune", "now", "-q"])
        if not killed:
            if code != 0:
                lane.fail(f"an unkilled gc exits {code}: {stderr}")
            continue
        lane.after_kill()
        mutate(ws, rng, 3)
        lane.commit_next(f"after kill {lane.iteration}")


def test_kill_gc(scratch):
    """kill -9 `gc --prune now` with forgotten snapshots to collect."""
    def body(lane):
        lane.config.setdefault("files", 300)
        lane.config.setdefault("garbage", 800)
        gc_lane(lane)
    run_crash_lanes("gc", body, scratch)


# -- leftovers ------------------------------------------------------------------------------


def dead_pid() -> int:
    """A process id that no process has now (a child that has exited)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def age(path: Path, seconds: float = 7200) -> None:
    """Make a planted leftover look as old as a real one would be."""
    then = time.time() - seconds
    for folder, dirs, files in os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]:
        for name in files + dirs:
            os.utime(os.path.join(folder, name), (then, then), follow_symlinks=False)
    os.utime(path, (then, then), follow_symlinks=False)


#: What a process killed in the middle of writing leaves, where, and what
#: should remove it: (path below the scratch folder, folder?, the commands
#: that run next).
LEFTOVER_KINDS = {
    "object being written": ("ws/.rnstore/objects/ab/.tmp-{pid}-140000000000000-7", False, [["gc", "--prune", "now"]]),
    "large object being written": ("ws/.rnstore/objects/.tmp-{pid}-140000000000000-8", False, [["gc", "--prune", "now"]]),
    "pack being written": ("ws/.rnstore/objects/pack/.tmp-{pid}-140000000000000-9", False, [["gc", "--prune", "now"]]),
    "index being replaced": ("ws/.rnstore/.tmp-index-{pid}-0badcafe", False,
                             [["commit", "-a", "-m", "next"], ["gc", "--prune", "now"]]),
    "branch being moved": ("ws/.rnstore/refs/heads/.tmp-main-{pid}-0badcafe", False,
                           [["commit", "-a", "-m", "next"], ["gc", "--prune", "now"]]),
    "workspace checkout staging": ("ws/.rnstore/.tmp-checkout-{pid}-abcd1234", True,
                                   [["checkout", "-q", "HEAD"], ["gc", "--prune", "now"]]),
    "target checkout staging": ("target/.tmp-checkout-{pid}-abcd1234", True,
                                [["checkout", "HEAD", "--target", "{scratch}/target", "-q"]]),
    "archive being exported": ("out/.tmp-x.tar.zst-{pid}-0badcafe", False,
                               [["export", "HEAD", "-o", "{scratch}/out/x.tar.zst", "-q"]]),
}


@pytest.mark.parametrize("kind", list(LEFTOVER_KINDS))
def test_leftovers_of_killed_writers_are_removed(scratch, kind):
    """Spec: kill -9 leaves nothing but "unreferenced leftovers that gc
    removes"; a killed export or target checkout leaves a temporary beside
    its output, which the next run to the same place removes. Planted
    exactly as a killed process leaves them (its pid gone, two hours old)."""
    ws = scratch / "ws"
    make_tree(ws, 20, seed=2)
    init(ws)
    commit(ws, "base")
    ok(["checkout", "HEAD", "--target", scratch / "target", "-q"], ws)
    (scratch / "out").mkdir()
    pattern, is_folder, commands = LEFTOVER_KINDS[kind]
    leftover = scratch / pattern.format(pid=dead_pid())
    leftover.parent.mkdir(parents=True, exist_ok=True)
    if is_folder:
        leftover.mkdir()
        (leftover / "0").write_bytes(b"staged file\n" * 1000)
    else:
        leftover.write_bytes(b"half-written\n" * 1000)
    age(leftover)
    for command in commands:
        proc = run([c.format(scratch=scratch) for c in command], ws)
        assert proc.returncode in (0, 1), proc.stderr
    STATS["leftovers.planted"] += 1
    assert not leftover.exists(), f"{leftover.relative_to(scratch)} is still there after {commands}"
    assert not fsck_problems(ws)
