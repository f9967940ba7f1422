"""Shared fixtures: workspaces made by the library or by the CLI, a CLI runner
that runs `python -m rnstore` in a real subprocess, and helpers that stage
files through the library (so plumbing tests do not depend on `add`).

Hypothesis profiles: "dev" (default) and "ci" (selected when CI is set);
both without deadlines, since tests touch real folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import pytest
from hypothesis import HealthCheck, settings

from rnstore.index import Index, IndexEntry
from rnstore.objects import MODE_EXEC, MODE_FILE, MODE_LINK
from rnstore.repo import Repository

# tests/conftest.py and tests/torture/conftest.py are both top-level modules
# named "conftest", and pytest imports the torture one later. So that test
# modules and helpers always get this one: it is also `testkit` (a name
# nothing shadows), and `conftest` is pointed back here once collection is
# over (helpers that import it lazily, at test time, get this module).
_THIS_MODULE = sys.modules[__name__]
sys.modules.setdefault("testkit", _THIS_MODULE)


def pytest_collection_finish(session):
    sys.modules["conftest"] = _THIS_MODULE


settings.register_profile(
    "dev", deadline=None, max_examples=50,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, max_examples=50, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

#: Environment variables that would make a test depend on its caller.
_SCRUBBED = ("RNSTORE_DIR", "RNSTORE_OBJECTS", "RNSTORE_DEBUG", "RNSTORE_PROGRESS", "RNSTORE_USER")


class CliResult(NamedTuple):
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def out(self) -> str:
        """stdout as text (for results that are text)."""
        return self.stdout.decode("utf-8", "surrogateescape")


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    base.update({"NO_COLOR": "1", "RNSTORE_USER": "tester", "PYTHONHASHSEED": "0"})
    base.update(env or {})
    return base


def run_cli(args: Sequence[str | bytes], cwd: str | os.PathLike, input: bytes | None = None,
            env: Mapping[str, str] | None = None) -> CliResult:
    """Run `python -m rnstore ARGS` in `cwd`; stdout as bytes, stderr as text.
    Fails the test if stderr ever carries a Python traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "rnstore", *args], cwd=cwd, input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True, env=cli_env(env), timeout=120)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    return CliResult(proc.returncode, proc.stdout, stderr)


@pytest.fixture(name="run_cli")
def run_cli_fixture():
    """`run_cli(args, cwd, input=None, env=None)` -> CliResult(returncode, stdout bytes, stderr text)."""
    return run_cli


@pytest.fixture
def repo(tmp_path) -> Repository:
    """A fresh workspace made through the library (no default .rnignore)."""
    return Repository.init(tmp_path / "ws", default_ignore=False)


@pytest.fixture(scope="session")
def _cli_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template") / "ws"
    root.mkdir()
    result = run_cli(["init"], cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / ".rnstore" / "HEAD").is_file()
    return root


@pytest.fixture
def workspace(tmp_path, _cli_template) -> Path:
    """A fresh workspace made by `rnstore init` in a subprocess; its root.
    (`init` runs once per session; each test gets its own copy.)"""
    root = tmp_path / "ws"
    shutil.copytree(_cli_template, root, symlinks=True)
    return root


# -- staging through the library ---------------------------------------------------------

def stage(repo: Repository, files: Mapping[bytes | str, bytes | tuple[bytes, str]]) -> Index:
    """Store blobs for `files` (path -> bytes, or (bytes, mode)) and write
    them as the index, replacing what was there. Returns the index."""
    entries = []
    for path, value in files.items():
        data, mode = value if isinstance(value, tuple) else (value, MODE_FILE)
        assert mode in (MODE_FILE, MODE_EXEC, MODE_LINK)
        oid = repo.store.put("blob", data)
        raw = os.fsencode(path) if isinstance(path, str) else path
        entries.append(IndexEntry(raw, mode, oid, len(data)))
    index = Index(entries)
    with repo.lock():
        repo.write_index(index)
    return index


def commit_index(repo: Repository, message: str = "m", parents: Sequence[str] = (),
                 ref: str | None = "refs/heads/main") -> str:
    """write-tree + commit-tree (+ update-ref) through the plumbing library."""
    from rnstore import plumbing
    tree = plumbing.write_tree(repo)
    snapshot = plumbing.commit_tree(repo, tree, list(parents), message)
    if ref is not None:
        plumbing.update_ref(repo, ref, snapshot)
    return snapshot


@pytest.fixture(name="stage")
def stage_fixture():
    return stage


@pytest.fixture(name="commit_index")
def commit_index_fixture():
    return commit_index


# -- a real S3 server on loopback, for tests/test_remote_*.py -----------------------------
from _remote_helpers import s3_server  # noqa: E402,F401 - registers the session fixture
