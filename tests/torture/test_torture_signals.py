"""SIGINT (Ctrl-C) during add, commit -a, a workspace checkout, export and
gc, at seeded random moments (helpers.torture.random_moment: mostly while the
command works, a quarter anywhere from 5 ms on):

- exit code 130 (or death by SIGINT while the interpreter shuts down,
  which a shell also reports as 130), no traceback on stderr;
- no `.tmp-*` file or folder left anywhere in the workspace, its store or
  the export's folder (searched recursively): counted for the summary
  here, asserted by the deterministic test below;
- the store is consistent: fsck finds no problem (dangling objects are
  fine), and the workspace is usable (the next command works).

One lane per command, in forked workers, two at a time. A SIGINT that
lands while CPython itself imports `site` ("Fatal Python error:
init_import_site") or finds and imports the `rnstore` package (a
traceback with no rnstore frame but the package's `__init__.py`) is counted
apart, not failed: no Python program can handle a signal before its first
line runs, and a library does not install handlers.
Separate tests simulate, deterministically, the two moments random
signals only hit now and then: right after a temporary is created, and
while the CLI imports its modules.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import rnstore

from helpers.torture import (NOTES, STATS, build_two_snapshots, commit, finished, fsck_problems, init,
                             lane_violations, make_tree, manifest, manifest_diff, mutate, ok,
                             random_moment, run, run_lanes, scale, spawn, startup_seconds,
                             temp_leftovers)

pytestmark = pytest.mark.torture

MOMENTS = 4  # per command at scale 1


def new_files(ws: Path, rng: random.Random, count: int, tag: str) -> None:
    folder = ws / f"batch-{tag}"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        (folder / f"f{i}.txt").write_bytes(rng.randbytes(rng.randint(1, 3000)))


RNSTORE_SOURCE = Path(rnstore.__file__).resolve().parent


def interrupted_before_rnstore_ran(stderr: str) -> bool:
    """A KeyboardInterrupt traceback none of whose frames is rnstore's own
    code: the signal came while CPython was still finding or importing the
    `rnstore` package (runpy, importlib, the editable install's finder),
    before the first line that could install a handler. The package's own
    `__init__.py` (and the `_version.py` it imports), which runpy imports
    before `__main__.py`, count as not-yet-running too: a library leaves
    SIGINT to its host. So do the `__main__.py` lines inside its `try`
    (test_sigint_while_starting covers that moment)."""
    if not stderr.rstrip().endswith("KeyboardInterrupt"):
        return False
    for match in re.finditer(r'^ *File "([^"]+)", line (\d+)', stderr, re.MULTILINE):
        path, line = Path(match.group(1)), int(match.group(2))
        if not path.is_relative_to(RNSTORE_SOURCE):
            continue
        package_import = path.parent == RNSTORE_SOURCE and path.name in ("__init__.py", "_version.py")
        if not (package_import or (path.name == "__main__.py" and line <= 3)):
            return False
    return True


def test_interrupted_before_rnstore_ran_tells_cpython_from_rnstore():
    cpython = ('Traceback (most recent call last):\n  File "<frozen runpy>", line 189, in _run_module_as_main\n'
               '  File "/venv/site-packages/__editable___rnstore_0_1_finder.py", line 20, in find_spec\n'
               'KeyboardInterrupt\n')
    ours = cpython.replace("KeyboardInterrupt", f'  File "{RNSTORE_SOURCE / "store.py"}", line 9, in put\n'
                                                "KeyboardInterrupt")
    assert interrupted_before_rnstore_ran(cpython)
    assert not interrupted_before_rnstore_ran(ours)
    package = cpython.replace("KeyboardInterrupt", f'  File "{RNSTORE_SOURCE / "__init__.py"}", line 9, in <module>\n'
                                                   "KeyboardInterrupt")
    assert interrupted_before_rnstore_ran(package)
    cli = cpython.replace("KeyboardInterrupt", f'  File "{RNSTORE_SOURCE / "cli" / "__init__.py"}", line 9, in <module>\n'
                                               "KeyboardInterrupt")
    assert not interrupted_before_rnstore_ran(cli)
    assert not interrupted_before_rnstore_ran(cpython.replace("KeyboardInterrupt", "OSError: boom"))


class SigintLane:
    def __init__(self, config: dict):
        self.config = config
        self.command = config["command"]
        self.rng = random.Random(config["seed"])
        self.base = Path(config["base"])
        self.base.mkdir(parents=True, exist_ok=True)
        self.ws = self.base / "ws"
        self.violations: list[str] = []
        self.stats: dict[str, int] = {}
        self.startup = 0.0
        self.typical = 0.0
        self.leftovers: list[str] = []

    def interrupt(self, args: list, tag: str) -> tuple[bool, int, str]:
        delay = random_moment(self.rng, self.startup, self.typical)
        proc = spawn(args, self.ws)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        sent = proc.poll() is None
        if sent:
            os.kill(proc.pid, signal.SIGINT)
        code, _, stderr = finished(proc)
        where = f"[{self.command} seed={self.config['seed']} {tag}, SIGINT after {delay * 1000:.0f} ms]"
        if "Traceback" in stderr:
            if "init_import_site" in stderr:
                # CPython itself, importing `site` before any rnstore code runs:
                # "Fatal Python error: init_import_site" - not rnstore's to handle
                self.stats["sigint_cpython_site"] = self.stats.get("sigint_cpython_site", 0) + 1
                return False, code, stderr
            if interrupted_before_rnstore_ran(stderr):
                self.stats["sigint_before_rnstore"] = self.stats.get("sigint_before_rnstore", 0) + 1
                return False, code, stderr
            raise AssertionError(f"{where} traceback:\n{stderr}")
        if sent and code == 0:
            sent = False  # it finished as the signal came
        if sent:
            self.stats[f"sigint.{self.command}"] = self.stats.get(f"sigint.{self.command}", 0) + 1
            # 130, or death by SIGINT when the signal lands while the
            # interpreter shuts down (a shell reports that as 130 too)
            if code not in (130, -signal.SIGINT):
                raise AssertionError(f"{where} exit {code}, expected 130: {stderr}")
            self.stats[f"sigint_exit_{code}"] = self.stats.get(f"sigint_exit_{code}", 0) + 1
        elif code != 0:
            raise AssertionError(f"{where} finished with exit {code}: {stderr}")
        left = temp_leftovers(self.base)
        if left:
            # A SIGINT that lands right after a temporary is created leaves
            # it (test_interrupt_right_after_a_temporary_is_created shows it
            # deterministically); counted here, and tidied for the next round.
            self.stats["sigint_leftovers"] = self.stats.get("sigint_leftovers", 0) + len(left)
            self.leftovers.extend(os.path.relpath(p, self.base) for p in left)
            for path in left:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        from rnstore.fsck import fsck
        from rnstore.repo import Repository
        problems = [p for p in fsck(Repository.open(self.ws)).problems if p.fatal]
        if problems:
            raise AssertionError(f"{where} fsck: {problems[:5]}")
        return sent, code, stderr

    def measure(self, function) -> float:
        start = time.monotonic()
        function()
        return time.monotonic() - start


def sigint_lane(config: dict) -> dict:
    lane = SigintLane(config)
    command, ws, rng = lane.command, lane.ws, lane.rng
    moments = config["moments"]
    try:
        if command == "checkout":
            snap_a, man_a, snap_b, man_b = build_two_snapshots(ws, config["seed"], 600)
            sides = {snap_a: man_a, snap_b: man_b}
            current = snap_b
        else:
            make_tree(ws, 300, config["seed"])
            init(ws)
            commit(ws, "base")
        lane.startup = startup_seconds(ws)

        def prepare(k: int) -> list:
            if command in ("add", "commit"):
                new_files(ws, rng, 1500, f"{k}")
                return ["add", "."] if command == "add" else ["commit", "-a", "-q", "-m", f"k{k}"]
            if command == "export":
                if k == 0:
                    for i in range(3):
                        (ws / f"large{i}.bin").write_bytes(rng.randbytes(3 << 20))
                    commit(ws, "large")
                (lane.base / "out").mkdir(exist_ok=True)
                return ["export", "HEAD", "-o", lane.base / "out" / "x.tar.zst", "-q"]
            if command == "gc":  # garbage made through the library: not what is under test
                from rnstore.repo import Repository
                new_files(ws, rng, 4000, "junk")
                junk = Repository.open(ws).snapshot(f"junk {k}").id
                shutil.rmtree(ws / "batch-junk")
                Repository.open(ws).snapshot(f"clean {k}")
                Repository.open(ws).forget([junk])
                return ["gc", "--prune", "now", "-q"]
            goal = snap_a if current == snap_b else snap_b
            return ["checkout", "-q", goal]

        def tidy(k: int, args: list, interrupted: bool) -> None:
            nonlocal current
            if command == "checkout":
                goal = args[-1]
                ok(["checkout", "-q", "--force", goal], ws)
                actual = manifest(ws)
                if actual != sides[goal]:
                    raise AssertionError(f"checkout --force after SIGINT: {manifest_diff(sides[goal], actual)}")
                current = goal
            elif command in ("add", "commit"):
                ok(["status", "--porcelain"], ws)
                proc = run(["commit", "-a", "-q", "-m", f"tidy {k}"], ws)
                if proc.returncode not in (0, 1):
                    raise AssertionError(f"commit after SIGINT exits {proc.returncode}: {proc.stderr}")
                shutil.rmtree(ws / f"batch-{k}")  # the next batch replaces it
            elif command == "export":
                (lane.base / "out" / "x.tar.zst").unlink(missing_ok=True)

        args = prepare(0)
        lane.typical = lane.measure(lambda: ok(args, ws))
        tidy(0, args, False)
        done = attempts = 0
        while done < moments and attempts < moments * 5:
            attempts += 1
            args = prepare(attempts)
            interrupted, _, _ = lane.interrupt(args, f"moment {attempts}")
            done += interrupted
            tidy(attempts, args, interrupted)
        problems = fsck_problems(ws)
        if problems:
            raise AssertionError(f"fsck at the end: {problems}")
        lane.stats[f"sigint_tried.{command}"] = attempts
    except AssertionError as exc:
        lane.violations.append(str(exc))
    return {"stats": lane.stats, "violations": lane.violations, "leftovers": lane.leftovers}


def test_sigint_during_work(scratch):
    commands = ["add", "commit", "checkout", "export", "gc"]
    configs = [{"command": c, "seed": 500 + i, "base": str(scratch / c), "moments": MOMENTS * scale()}
               for i, c in enumerate(commands)]
    results = run_lanes(sigint_lane, configs)
    violations = lane_violations(results)
    NOTES.append("SIGINT: " + ", ".join(
        f"{c} {r['stats'].get(f'sigint.{c}', 0)}/{r['stats'].get(f'sigint_tried.{c}', 0)}"
        for c, r in zip(commands, results)) + " (interrupted/tried)")
    left = [f"{c}: {f}" for c, r in zip(commands, results) for f in r.get("leftovers", [])]
    if left:
        NOTES.append(f"SIGINT: {len(left)} temporary file(s) left by interrupted commands: {left[:4]}")
    assert not violations, "\n\n".join(violations)
    for c, r in zip(commands, results):
        assert r["stats"].get(f"sigint.{c}", 0) >= MOMENTS * scale(), (c, r["stats"])


@pytest.mark.parametrize("where", [
    "object file", "index", "checkout staging folder", "exported archive"])
def test_interrupt_right_after_a_temporary_is_created(scratch, monkeypatch, where):
    """Ctrl-C delivered while the process is in the system call that creates
    a temporary file: CPython raises KeyboardInterrupt as soon as that call
    returns. Simulated deterministically, in-process, by raising it right
    after the real call (the random SIGINT test meets this moment now and
    then). Nothing may be left behind."""
    from rnstore.repo import Repository
    ws = scratch / "ws"
    make_tree(ws, 30, seed=12)
    init(ws)
    first = commit(ws, "first")
    mutate(ws, random.Random(13), 10)
    commit(ws, "second")
    repo = Repository.open(ws)
    real_open = os.open

    def open_then_interrupt(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if flags & os.O_CREAT and os.path.basename(os.fsdecode(path)).startswith(".tmp-"):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    real_mkdir = os.mkdir

    def mkdir_then_interrupt(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        if os.path.basename(os.fsdecode(path)).startswith(".tmp-"):
            raise KeyboardInterrupt

    if where == "checkout staging folder":
        monkeypatch.setattr(os, "mkdir", mkdir_then_interrupt)
    elif where == "exported archive":
        import builtins
        real_builtin_open = builtins.open

        def builtin_open_then_interrupt(file, mode="r", *args, **kw):
            handle = real_builtin_open(file, mode, *args, **kw)
            if "x" in mode and os.path.basename(os.fsdecode(file)).startswith(".tmp-"):
                handle.close()
                raise KeyboardInterrupt
            return handle
        monkeypatch.setattr(builtins, "open", builtin_open_then_interrupt)
    else:
        monkeypatch.setattr(os, "open", open_then_interrupt)
    STATS["sigint.simulated"] += 1
    with pytest.raises(KeyboardInterrupt):
        if where == "object file":
            repo.store.put("blob", b"content the store has not seen")
        elif where == "index":
            repo.write_index(repo.read_index())
        elif where == "checkout staging folder":
            from rnstore.checkout import checkout
            checkout(repo, first)
        else:
            repo.export("HEAD", scratch / "x.tar.zst")
    monkeypatch.undo()
    assert not temp_leftovers(scratch), temp_leftovers(scratch)


@pytest.mark.parametrize("module", ["rnstore.cli", "typer"])
def test_sigint_while_starting(scratch, module):
    """Ctrl-C while the CLI imports `module`: exit 130 or death by SIGINT,
    never a traceback. Simulated deterministically: an import hook raises
    KeyboardInterrupt when `module` is first imported (which is what the
    signal handler does at that moment). A random-moment version of this
    found the traceback now and then."""
    ws = scratch / "ws"
    make_tree(ws, 10, seed=14)
    init(ws)
    script = scratch / "interrupted_import.py"
    script.write_text(f"""
import runpy, sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            raise KeyboardInterrupt
        return None
sys.meta_path.insert(0, Interrupt())
sys.argv = ["rnstore", "status"]
runpy.run_module("rnstore", run_name="__main__", alter_sys=True)
""")
    import sys
    from helpers.torture import cli_env
    proc = subprocess.run([sys.executable, str(script)], cwd=ws, capture_output=True, env=cli_env(),
                          timeout=120)
    STATS["sigint.startup"] += 1
    stderr = proc.stderr.decode()
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, stderr)
    assert "Traceback" not in stderr, stderr
