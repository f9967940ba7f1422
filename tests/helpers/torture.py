"""The torture suite's helpers: real `rnstore` processes on real folders
(tests/torture/conftest.py has its fixtures and its summary).

- ``make_tree(dir, n_files, seed)``: a reproducible folder of small files,
  links, exec bits and empty folders.
- ``manifest(dir)``: {relpath: (type, mode, sha256 or link target)}.
- ``run(args, cwd)``: one CLI run; fails the test on a Python traceback.
- ``spawn(args, cwd)``: a CLI process in its own process group, to kill.
- ``fsck_ok(ws)``: `rnstore fsck --json` finds nothing but dangling objects.
- ``run_lanes(fn, configs)``: independent lanes of a crash or concurrency
  experiment in forked worker processes (true parallelism on both cores).
- ``STATS``: the figures the run gathers; printed at the end of the session.

Size knob: RNSTORE_TORTURE_SCALE (or ``--torture-scale`` when tests/torture
is named on the command line), default 1 (CI size), multiplies crash
moments and iterations.
"""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from helpers import cli
from rnstore.checkout import materialise
from rnstore.repo import Repository

#: Figures gathered during the run (crash points, writers, ...), printed by
#: the torture conftest's summary. Lanes in worker processes return theirs.
STATS: collections.Counter = collections.Counter()
#: Notes for the summary: (figure, text).
NOTES: list[str] = []

_scale_option: int | None = None


def scale() -> int:
    """RNSTORE_TORTURE_SCALE (or --torture-scale), at least 1."""
    if _scale_option is not None:
        return max(1, _scale_option)
    try:
        return max(1, int(os.environ.get("RNSTORE_TORTURE_SCALE", "1")))
    except ValueError:
        return 1


def set_scale_option(value: int | None) -> None:
    """--torture-scale, when given (the torture conftest passes it on)."""
    global _scale_option
    _scale_option = value


def rmtree(folder: Path) -> None:
    """Remove a folder, whatever modes a test left in it."""
    def onerror(function, path, excinfo):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            function(path)
        except OSError:
            pass
    shutil.rmtree(folder, onerror=onerror)


# -- running the CLI -----------------------------------------------------------------------

RNSTORE = [sys.executable, "-m", "rnstore"]


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """helpers.cli's environment, as user "torture" and without progress bars."""
    return cli.cli_env({"RNSTORE_USER": "torture", "RNSTORE_PROGRESS": "0", **(env or {})})


def _args(args: Sequence[str | bytes | os.PathLike]) -> list:
    return [*RNSTORE, *[a if isinstance(a, bytes) else os.fspath(a) for a in args]]


def no_traceback(stderr: str, what: str = "") -> None:
    assert "Traceback" not in stderr, f"traceback from {what}:\n{stderr}"


def run(args: Sequence, cwd: str | os.PathLike, *, env: Mapping[str, str] | None = None,
        input: bytes | None = None, timeout: float = 600, expect: int | Iterable[int] | None = None,
        preexec_fn: Callable | None = None, prefix: Sequence[str] = (),
        stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """Run `rnstore ARGS` in `cwd` (stdout bytes, stderr text). Fails on a
    traceback, and on an exit code not in `expect` when given."""
    proc = subprocess.run(
        [*prefix, *_args(args)], cwd=cwd, input=input,
        stdin=None if input is not None else subprocess.DEVNULL, stdout=stdout,
        stderr=subprocess.PIPE, env=cli_env(env), timeout=timeout, preexec_fn=preexec_fn)
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    no_traceback(proc.stderr, f"rnstore {' '.join(map(str, args))}")
    if expect is not None:
        allowed = {expect} if isinstance(expect, int) else set(expect)
        assert proc.returncode in allowed, (
            f"rnstore {' '.join(map(str, args))} exited {proc.returncode} (expected {sorted(allowed)})\n"
            f"stderr:\n{proc.stderr}")
    return proc


def ok(args: Sequence, cwd, **kw) -> subprocess.CompletedProcess:
    """run() that must exit 0."""
    return run(args, cwd, expect=0, **kw)


def out(args: Sequence, cwd, **kw) -> str:
    """stdout of a run that must exit 0, stripped."""
    return ok(args, cwd, **kw).stdout.decode().strip()


def spawn(args: Sequence, cwd, *, env: Mapping[str, str] | None = None, stdout=None,
          stderr=None, preexec_fn: Callable | None = None) -> subprocess.Popen:
    """Start `rnstore ARGS` in its own process group (kill it with kill_group).
    stdout/stderr default to temporary files (a pipe could fill and block)."""
    out_file = stdout if stdout is not None else tempfile.TemporaryFile()
    err_file = stderr if stderr is not None else tempfile.TemporaryFile()
    proc = subprocess.Popen(
        _args(args), cwd=cwd, env=cli_env(env), stdin=subprocess.DEVNULL,
        stdout=out_file, stderr=err_file,
        start_new_session=preexec_fn is None, preexec_fn=preexec_fn)
    proc.out_file = out_file if stdout is None else proc.stdout
    proc.err_file = err_file if stderr is None else proc.stderr
    return proc


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> bool:
    """Send `sig` to the process (and its group); True if it was still running."""
    if proc.poll() is not None:
        return False
    try:
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def finished(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, bytes, str]:
    """Wait for a spawned process: (returncode, stdout, stderr)."""
    proc.wait(timeout=timeout)
    result = []
    for stream in (getattr(proc, "out_file", proc.stdout), getattr(proc, "err_file", proc.stderr)):
        if stream is None or not hasattr(stream, "read"):
            result.append(b"")
            continue
        if stream.seekable():
            stream.seek(0)
        result.append(stream.read())
        stream.close()
    return proc.returncode, result[0], result[1].decode("utf-8", "replace")


def init(ws: Path, *extra: str) -> Path:
    ws.mkdir(parents=True, exist_ok=True)
    ok(["init", "-q", "--no-default-ignore", *extra], ws)
    return ws


def commit(ws: Path, message: str = "m", *extra: str) -> str:
    """`commit -a` that must succeed; the printed id."""
    snap = out(["commit", "-a", "-q", "-m", message, *extra], ws)
    assert len(snap) == 64, snap
    return snap


def fsck_problems(ws: Path, *, env=None) -> list[dict]:
    """Problems other than dangling that `rnstore fsck --json` reports."""
    proc = run(["fsck", "--json", "-q"], ws, env=env)
    STATS["checks.fsck"] += 1
    document = json.loads(proc.stdout or b"{}")
    fatal = [p for p in document.get("problems", []) if p["kind"] != "dangling"]
    assert (proc.returncode == 0) == (not fatal), (proc.returncode, fatal, proc.stderr)
    return fatal


def fsck_ok(ws: Path, *, env=None) -> None:
    problems = fsck_problems(ws, env=env)
    assert not problems, f"fsck found problems in {ws}: {problems}"


# -- folders and manifests -----------------------------------------------------------------

def make_tree(root: Path, n_files: int, seed: int, *, max_size: int = 2048, links: bool = True,
              empty_dirs: bool = True, exec_bits: bool = True, fanout: int = 40) -> dict:
    """Fill `root` with `n_files` small files in nested folders, a few
    symlinks and empty folders, reproducibly from `seed`. Returns manifest."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    folders = [""]
    for i in range(max(1, n_files // 25)):
        parent = rng.choice(folders) if len(folders) < fanout else rng.choice(folders[1:])
        if parent.count("/") >= 3:
            parent = ""
        folders.append(f"{parent}/d{i:03d}".lstrip("/"))
    for folder in folders[1:]:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        folder = rng.choice(folders)
        path = root / folder / f"f{i:05d}.{rng.choice(['txt', 'py', 'bin', 'cfg'])}"
        size = rng.choice([0, rng.randint(1, 64), rng.randint(1, max_size), rng.randint(1, max_size)])
        path.write_bytes(rng.randbytes(size))
        if exec_bits and rng.random() < 0.05:
            path.chmod(0o755)
    if links:
        for i in range(max(1, n_files // 200)):
            folder = rng.choice(folders)
            target = rng.choice(["../x", "f00000.txt", "nowhere/at/all", "d000"])
            os.symlink(target, root / folder / f"link{i:03d}")
    if empty_dirs:
        for i in range(max(1, n_files // 500)):
            (root / rng.choice(folders) / f"empty{i:02d}").mkdir(exist_ok=True)
    return manifest(root)


def sha256_file(path: str | bytes) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(root: Path, *, skip: Iterable[str] = (".rnstore",)) -> dict[str, tuple]:
    """{relpath: (type, mode, sha256 or link target)} of everything below
    `root` (never following links): files ("file", "100644"|"100755", sha256),
    links ("link", "120000", target) and empty folders ("dir", "040000", "").
    Top-level names in `skip` are left out."""
    result: dict[str, tuple] = {}
    root_b = os.fsencode(root)
    skip_b = {os.fsencode(s) for s in skip}
    stack = [b""]
    while stack:
        current = stack.pop()
        full = os.path.join(root_b, current) if current else root_b
        with os.scandir(full) as listing:
            entries = list(listing)
        if current and not entries:
            result[os.fsdecode(current)] = ("dir", "040000", "")
        for entry in entries:
            if not current and entry.name in skip_b:
                continue
            rel = current + b"/" + entry.name if current else entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)
            elif stat.S_ISLNK(st.st_mode):
                result[os.fsdecode(rel)] = ("link", "120000", os.fsdecode(os.readlink(entry.path)))
            elif stat.S_ISREG(st.st_mode):
                mode = "100755" if st.st_mode & stat.S_IXUSR else "100644"
                result[os.fsdecode(rel)] = ("file", mode, sha256_file(entry.path))
            else:
                result[os.fsdecode(rel)] = ("other", oct(st.st_mode), "")
    return result


def manifest_diff(expected: dict, actual: dict, limit: int = 10) -> str:
    lines = []
    for path in sorted(expected.keys() | actual.keys()):
        if expected.get(path) != actual.get(path):
            lines.append(f"  {path}: expected {expected.get(path)}, found {actual.get(path)}")
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


def assert_manifest(expected: dict, root: Path, what: str = "") -> None:
    actual = manifest(root)
    assert actual == expected, f"{what or root} differs:\n{manifest_diff(expected, actual)}"


def checkout_matches(ws: Path, snap: str, expected: dict, target: Path) -> None:
    """`checkout SNAP --target DIR` gives exactly `expected`."""
    if target.exists():
        rmtree(target)
    ok(["checkout", snap, "--target", target, "-q"], ws)
    STATS["checks.checkouts"] += 1
    assert_manifest(expected, target, f"checkout of {snap[:12]}")


def temp_leftovers(*roots: Path) -> list[str]:
    """Every `.tmp-*` name below the roots (recursively)."""
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                if name.startswith(".tmp-"):
                    found.append(os.path.join(folder, name))
    return found


def copy_tree(source: Path, dest: Path) -> Path:
    """A fast exact copy (cp -a keeps modes, links and timestamps)."""
    subprocess.run(["cp", "-a", str(source), str(dest)], check=True)
    return dest


def mutate(root: Path, rng: random.Random, n_changes: int) -> None:
    """Change `n_changes` files of a folder (rewrite, delete, add, chmod)."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".rnstore"]
        files += [os.path.join(folder, n) for n in names
                  if not os.path.islink(os.path.join(folder, n))]
    rng.shuffle(files)
    for path in files[:n_changes]:
        action = rng.random()
        if action < 0.7:
            with open(path, "wb") as fh:
                fh.write(rng.randbytes(rng.randint(0, 3000)))
        elif action < 0.8:
            os.unlink(path)
        elif action < 0.9:
            with open(path + f".new{rng.randint(0, 10**6)}", "wb") as fh:
                fh.write(rng.randbytes(rng.randint(0, 500)))
        else:
            os.chmod(path, os.stat(path).st_mode ^ 0o100)


def build_two_snapshots(ws: Path, seed: int, n_files: int) -> tuple[str, dict, str, dict]:
    """A workspace with snapshots A and B that differ in most paths: content,
    deletions, additions, exec bits, and folder <-> file swaps.
    The workspace is left at B."""
    rng = random.Random(seed)
    make_tree(ws, n_files, seed)
    init(ws)
    man_a = manifest(ws)
    snap_a = commit(ws, "A")
    mutate(ws, rng, n_files // 2)
    folders = sorted(p for p in ws.iterdir() if p.is_dir() and p.name != ".rnstore")
    # a folder becomes a file, a file becomes a folder
    shutil.rmtree(folders[0])
    folders[0].write_bytes(b"was a folder\n")
    files = sorted(p for p in ws.iterdir() if p.is_file() and not p.is_symlink())
    if files:
        files[0].unlink()
        (files[0]).mkdir()
        (files[0] / "now-a-folder.txt").write_bytes(b"x" * 100)
    for i in range(n_files // 10):
        sub = ws / f"new{i % 7}"
        sub.mkdir(exist_ok=True)
        (sub / f"n{i}.txt").write_bytes(rng.randbytes(rng.randint(0, 4000)))
    man_b = manifest(ws)
    snap_b = commit(ws, "B")
    return snap_a, man_a, snap_b, man_b


# -- random moments and an incremental store check ------------------------------------------

def startup_seconds(ws: Path, runs: int = 3) -> float:
    """How long the CLI takes to start and do nothing much (rev-parse):
    the fastest of a few runs."""
    best = float("inf")
    for _ in range(runs):
        start = time.monotonic()
        ok(["rev-parse", "HEAD"], ws)
        best = min(best, time.monotonic() - start)
    return best


def random_moment(rng: random.Random, startup: float, typical: float) -> float:
    """A delay between ~5 ms and the command's typical duration: a quarter
    of the moments anywhere in that span (start-up included), the rest
    while the command works (after the interpreter has started and
    imported rnstore), where the moments that matter are."""
    typical = max(typical, 0.01)
    start = min(startup, 0.8 * typical)
    if rng.random() < 0.25:
        return rng.uniform(0.005, typical)
    return rng.uniform(start, typical)


class StoreChecker:
    """What fsck checks, for what changed since the last check, through the
    library's own readers (an independent, incremental second opinion):

    - every object (loose or packed) that is new (or was replaced) since the last check
      decompresses and hashes to its name; a tree or snapshot also decodes;
    - objects checked before are unchanged (same inode and size, or same
      pack and size), and no pack file is damaged;
    - every root (HEAD, refs, the journal of live snapshots, the index) can
      be read, and nothing reachable from one is missing. Trees already
      walked are not walked again, unless objects were deleted since.

    Returns a list of problems (empty: clean, dangling objects allowed)."""

    def __init__(self):
        self.seen: dict[str, tuple] = {}
        self.walked: set[str] = set()

    def check(self, repo) -> list[str]:
        from rnstore.errors import ObjectError
        from rnstore.reachability import workspace_roots
        from rnstore.objects import BLOB, MODE_TREE, SNAPSHOT, TREE
        store = repo.store
        problems: list[str] = []
        current: dict[str, tuple] = {}
        for obj in store.stored_objects():
            if obj.where != str(store.path_for(obj.id)):  # packed
                current[obj.id] = (obj.where, obj.size)
                continue
            try:
                st = os.stat(obj.where)
            except FileNotFoundError:
                continue
            current[obj.id] = (st.st_ino, st.st_size)
        problems.extend(f"damaged pack {path}: {why}" for path, why in store.damaged_packs().items())
        if any(oid not in current for oid in self.seen):
            self.walked.clear()  # something was deleted: walk everything again
        for oid, key in current.items():
            if self.seen.get(oid) == key:
                continue
            try:
                kind, _ = store.verify(oid)
                if kind == TREE:
                    store.get_tree(oid)
                elif kind == SNAPSHOT:
                    store.get_snapshot(oid)
            except ObjectError as exc:
                problems.append(f"object {oid}: {exc}")
                continue
            self.seen[oid] = key
        self.seen = {oid: key for oid, key in self.seen.items() if oid in current}

        def on_problem(kind: str, name: str, detail: str) -> None:
            problems.append(f"{kind} {name}: {detail}")
        stack = [(root.id, root.kind, root.label) for root in workspace_roots(repo, on_problem)]
        while stack:
            oid, kind, where = stack.pop()
            if oid in self.walked:
                continue
            if oid not in current:
                problems.append(f"missing {kind} {oid} ({where})")
                continue
            if kind == BLOB:
                continue
            self.walked.add(oid)
            try:
                if kind == SNAPSHOT:
                    stack.append((store.get_snapshot(oid).tree, TREE, f"tree of {oid[:12]}"))
                else:
                    for entry in store.get_tree(oid).entries:
                        stack.append((entry.id, TREE if entry.mode == MODE_TREE else BLOB,
                                      f"'{entry.name.decode('utf-8', 'replace')}' in tree {oid[:12]}"))
            except ObjectError as exc:
                problems.append(f"{kind} {oid}: {exc}")
        return problems


# -- lanes in worker processes ----------------------------------------------------------

def run_lanes(function: Callable[[dict], dict], configs: list[dict],
              workers: int | None = None) -> list[dict]:
    """Run `function(config)` for each config in a forked worker process (at
    most `workers` at once, default 2, so both cores work). `function`
    returns a dict with "violations" (a list of strings) and any figures in
    "stats"; STATS gathers the figures and whatever the lane added to STATS.
    Results come back in order; a lane that raises becomes a violation."""
    context = multiprocessing.get_context("fork")
    workers = workers or min(len(configs), 2)

    def child(config, conn):
        before = collections.Counter(STATS)
        try:
            result = function(config)
        except BaseException:  # noqa: BLE001 - reported to the parent
            result = {"violations": [f"lane {config} raised:\n{traceback.format_exc()}"]}
        stats = collections.Counter(result.get("stats", {}))
        stats.update(STATS - before)
        result["stats"] = dict(stats)
        conn.send(result)
        conn.close()

    results: list[dict | None] = [None] * len(configs)
    pending = list(enumerate(configs))
    running: list = []
    while pending or running:
        while pending and len(running) < workers:
            number, config = pending.pop(0)
            parent_end, child_end = context.Pipe(duplex=False)
            process = context.Process(target=child, args=(config, child_end))
            process.start()
            child_end.close()
            running.append((number, process, parent_end))
        ready = multiprocessing.connection.wait([conn for _, _, conn in running])
        for item in [r for r in running if r[2] in ready]:
            running.remove(item)
            number, process, conn = item
            try:
                results[number] = conn.recv()
            except EOFError:
                results[number] = {"violations": [f"lane {configs[number]} died"]}
            process.join()
    for result in results:
        STATS.update(result.get("stats", {}))
    return results


def lane_violations(results: list[dict]) -> list[str]:
    return [v for r in results for v in r.get("violations", [])]


def timed(function: Callable, *args, **kw):
    start = time.monotonic()
    value = function(*args, **kw)
    return value, time.monotonic() - start


# -- checks beside a gc loop ----------------------------------------------------------------

def materialise_matches(ws: Path, snap: str, expected: dict, target: Path) -> str | None:
    """None if the library's checkout of `snap` into `target` gives exactly
    `expected`; else what is wrong."""
    if target.exists():
        shutil.rmtree(target)
    try:
        materialise(Repository.open(ws), snap, target)
    except Exception as exc:  # noqa: BLE001 - the finding
        return f"{snap[:12]} of {ws.name} cannot be checked out: {type(exc).__name__}: {exc}"
    actual = manifest(target)
    shutil.rmtree(target)
    if actual != expected:
        return f"{snap[:12]} of {ws.name} differs:\n{manifest_diff(expected, actual)}"
    STATS["checks.checkouts"] += 1
    return None


def checkout_exactly(ws: Path, snap: str, expected: dict, target: Path, problems: list[str]) -> None:
    """`checkout SNAP --target TARGET` (TARGET emptied first) must exit 0 and
    give exactly the manifest `expected`; what goes wrong goes to `problems`."""
    if target.exists():
        shutil.rmtree(target)
    proc = run(["checkout", snap, "--target", target, "-q"], ws)
    if proc.returncode != 0:
        problems.append(f"checkout {snap[:12]} exited {proc.returncode}: {proc.stderr}")
    elif manifest(target) != expected:
        problems.append(f"checkout {snap[:12]} differs:\n{manifest_diff(expected, manifest(target))}")


def gc_loop(ws: Path, stop: threading.Event, problems: list[str], runs: list[int]) -> None:
    while not stop.is_set():
        proc = run(["gc", "--prune", "now", "-q"], ws)
        if proc.returncode != 0:
            problems.append(f"gc exited {proc.returncode}: {proc.stderr}")
            return
        runs.append(1)


def read_beside(threads: list[threading.Thread], stop: threading.Event, snaps: Mapping[str, dict],
                read_one: Callable[[str, dict, int], None], problems: list[str]) -> int:
    """Start `threads`, then call read_one(snap, expected, reads so far) for
    every snapshot, 2 × scale() rounds over, until a problem is found; the
    threads are stopped and joined whatever happens. Each call counts as two
    reads; returns how many were made."""
    for thread in threads:
        thread.start()
    reads = 0
    try:
        for _ in range(2 * scale()):
            for snap, expected in snaps.items():
                read_one(snap, expected, reads)
                reads += 2
                if problems:
                    return reads
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return reads


@contextmanager
def gc_looping(ws: Path, problems: list[str]):
    """`gc --prune now` in a loop in `ws` while the block runs, then once
    more; yields the list of runs (one item per run)."""
    stop = threading.Event()
    runs: list[int] = []
    thread = threading.Thread(target=gc_loop, args=(ws, stop, problems, runs))
    thread.start()
    try:
        yield runs
    finally:
        stop.set()
        thread.join()
    ok(["gc", "--prune", "now", "-q"], ws)
    runs.append(1)
