"""Helpers shared by the porcelain end-to-end tests (tests/test_porcelain_*.py,
test_ignore.py, test_progress_tty.py, test_completions.py, test_checkout.py,
test_export.py): building folders, taking byte-exact pictures of them, and
checking the CLI's `error:` convention. The CLI itself runs through
helpers.cli's `run_cli` (a real subprocess), re-exported here with
`cli_env` and `CliResult`.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

import pytest

from helpers.cli import CliResult, cli_env, run_cli  # noqa: F401 - re-exported

HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
OBJECT_NAME = re.compile(rb"\A[0-9a-f]{62}\Z")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_files(root: Path, files: Mapping[str, bytes | str]) -> None:
    """Create `files` (relative path -> content) below `root`."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def folder_state(root: Path | str, *, mtimes: bool = False, skip=()) -> dict[bytes, tuple]:
    """Everything below `root`, byte-exact: path -> ("dir", perms) |
    ("file", perms, bytes[, mtime_ns]) | ("link", target). Nothing is followed;
    folders named in `skip` (bytes) are left out, with what they hold."""
    state: dict[bytes, tuple] = {}
    base = os.fsencode(root)
    for folder, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in dirs + files:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, base)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    entry = ("file", stat.S_IMODE(st.st_mode), fh.read())
                state[rel] = entry + ((st.st_mtime_ns,) if mtimes else ())
            else:
                state[rel] = ("special", stat.S_IFMT(st.st_mode))
    return state


def object_files(store_root: Path | str) -> dict[bytes, bytes]:
    """Every object file below `store_root` (fan-out name -> bytes)."""
    found = {}
    for folder, _dirs, files in os.walk(os.fsencode(store_root)):
        for name in files:
            if OBJECT_NAME.match(name):
                full = os.path.join(folder, name)
                with open(full, "rb") as fh:
                    found[os.path.basename(folder) + name] = fh.read()
    return found


def object_path(store_root: Path, oid: str) -> Path:
    return store_root / "objects" / oid[:2] / oid[2:]


def ok(result, *, stdout_empty: bool = False):
    """Assert a CliResult succeeded; return it."""
    assert result.returncode == 0, f"exit {result.returncode}\nstderr:\n{result.stderr}\nstdout:\n{result.out}"
    if stdout_empty:
        assert result.stdout == b"", result.out
    return result


def assert_error(result, code: int | tuple[int, ...], *needles: str) -> str:
    """Assert the command failed with `code` and one `error:` line (hints,
    warnings and `waiting` notices allowed); return the error line."""
    codes = (code,) if isinstance(code, int) else code
    assert result.returncode in codes, (
        f"exit {result.returncode}, expected {codes}\nstderr:\n{result.stderr}\nstdout:\n{result.out}")
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, f"expected one `error:` line:\n{result.stderr}"
    assert "╭" not in result.stderr and "─" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in stderr:\n{result.stderr}"
    return errors[0]


def failed(result, code: int, *needles: str) -> str:
    """assert_error, returning all of stderr."""
    assert_error(result, code, *needles)
    return result.stderr


def ls_files(run_cli, cwd: Path) -> list[bytes]:
    return ok(run_cli(["ls-files"], cwd=cwd)).stdout.splitlines()


def ls_files_stage(run_cli, cwd: Path) -> dict[bytes, tuple[str, str]]:
    """`ls-files -s` as path -> (mode, id)."""
    entries = {}
    for line in ok(run_cli(["ls-files", "-s"], cwd=cwd)).stdout.splitlines():
        info, path = line.split(b"\t", 1)
        mode, oid, _stage = info.decode().split(" ")
        entries[path] = (mode, oid)
    return entries


def ls_tree(run_cli, cwd: Path, rev: str = "HEAD") -> dict[bytes, tuple[str, str, str]]:
    """`ls-tree -r --json REV` as path bytes -> (mode, type, id)."""
    listing = json.loads(ok(run_cli(["ls-tree", "-r", "--json", rev], cwd=cwd)).stdout)
    return {os.fsencode(e["path"]): (e["mode"], e["type"], e["id"]) for e in listing}


def porcelain(run_cli, cwd: Path, *args: str) -> list[bytes]:
    return ok(run_cli(["status", "--porcelain", *args], cwd=cwd)).stdout.splitlines()


def commit(run_cli, cwd: Path, message: str = "m", *args: str) -> str:
    result = ok(run_cli(["commit", "-m", message, *args], cwd=cwd))
    snapshot = result.out.strip()
    assert HEX64.match(snapshot), result.out
    return snapshot


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)


def run_parallel(run_cli, calls, workers: int = 2):
    """Run independent CLI calls [(args, cwd[, env])] two at a time (the
    machines running this suite have two cores); results in order."""
    def one(call):
        args, cwd, *rest = call
        return run_cli(args, cwd=cwd, env=rest[0] if rest else None)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, calls))


SETPRIV = shutil.which("setpriv")
NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def unprivileged_folder(prefix: str = "rnstore-unpriv-") -> Path:
    """A fresh folder in /tmp that the unprivileged runner can use (pytest's
    tmp_path lives below a 0700 folder of root's). The caller removes it."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(folder, 0o755)
    return folder


def hand_over(root: Path) -> None:
    """Give everything below `root` to the unprivileged user (when root)."""
    if not IS_ROOT:
        return
    os.chown(root, NOBODY, NOBODY, follow_symlinks=False)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), NOBODY, NOBODY, follow_symlinks=False)


def run_unprivileged(args, cwd: Path, env=None):
    """`python -m rnstore ARGS` where file permissions apply: as root (how
    this suite runs in CI), with privileges dropped to uid/gid 65534 through
    setpriv; otherwise as ourselves. Same result and traceback check as
    helpers.cli.run_cli."""
    environment = cli_env(env)
    environment["HOME"] = str(cwd)
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    prefix = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if IS_ROOT else []
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "rnstore", *args],
        cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, env=environment, timeout=120)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    return CliResult(proc.returncode, proc.stdout, stderr)


def needs_unprivileged_runner() -> None:
    """Skip when running as root without setpriv (chmod 000 does not stop
    root, and without setpriv we cannot become another user), or when uid
    65534 cannot run this interpreter and import rnstore (a checkout or
    virtual env below a private home folder)."""
    if not IS_ROOT:
        return
    if SETPRIV is None:
        pytest.skip("running as root and setpriv is unavailable: cannot drop privileges, "
                    "so no file can be made unreadable")
    problem = _unprivileged_problem()
    if problem:
        pytest.skip(f"uid {NOBODY} cannot run rnstore here ({problem}), so no file can be "
                    "made unreadable to the command under test")


@functools.lru_cache(maxsize=1)
def _unprivileged_problem() -> str:
    try:
        proc = subprocess.run(
            [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             sys.executable, "-c", "import rnstore.cli"],
            cwd="/", capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    except OSError as exc:
        return str(exc)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["failed"])[-1]


def store_state(dotdir: Path, *, objects: bool = True) -> dict[bytes, tuple]:
    """folder_state of a `.rnstore` folder (with mtimes) minus its lock files,
    which any command may create; without `objects`, minus the object store."""
    return {path: entry for path, entry in folder_state(dotdir, mtimes=True).items()
            if not path.endswith(b"lock") and (objects or not path.startswith(b"objects"))}


_TEMPLATES: dict[bool, Path] = {}


def new_workspace(root: Path, *, default_ignore: bool = False) -> Path:
    """Make `root` a fresh workspace, exactly as `rnstore init
    [--no-default-ignore]` leaves it, by copying one the CLI made once per
    session (init itself is tested in test_porcelain_init.py; a process
    start saved per test keeps the suite fast). Returns `root`."""
    template = _TEMPLATES.get(default_ignore)
    if template is None or not (template / ".rnstore" / "HEAD").is_file():
        # (made again if something cleaned /tmp under a long session)
        folder = Path(tempfile.mkdtemp(prefix="rnstore-template-"))
        atexit.register(shutil.rmtree, folder, True)
        ok(run_cli(["init", "-q"] + ([] if default_ignore else ["--no-default-ignore"]), cwd=folder))
        _TEMPLATES[default_ignore] = folder
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(_TEMPLATES[default_ignore], root, symlinks=True, dirs_exist_ok=True)
    return root


def picture(root: Path, *, skip=(b".rnstore",)) -> dict[bytes, tuple]:
    """Everything below `root`, nothing followed: path -> ("dir",) |
    ("file", executable, bytes) | ("link", target)."""
    state = {}
    for path, entry in folder_state(root, skip=skip).items():
        if entry[0] == "dir":
            state[path] = ("dir",)
        elif entry[0] == "file":
            state[path] = ("file", bool(entry[1] & stat.S_IXUSR), entry[2])
        else:
            state[path] = entry
    return state
