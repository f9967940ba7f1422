"""Shared fixtures: workspaces made by the library or by the CLI, a CLI runner
that runs `python -m rnstore` in a real subprocess, and helpers that stage
files through the library (so plumbing tests do not depend on `add`). The
helpers themselves live in the `helpers` package (tests/helpers/), which
test modules import by name: pyproject.toml puts tests/ on pytest's path.

Hypothesis profiles: "dev" (default) and "ci" (selected when CI is set);
both without deadlines, since tests touch real folders.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from helpers.cli import run_cli
from helpers.library import commit_index, stage
from rnstore.repo import Repository

settings.register_profile(
    "dev", deadline=None, max_examples=50,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, max_examples=50, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


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


@pytest.fixture(name="stage")
def stage_fixture():
    return stage


@pytest.fixture(name="commit_index")
def commit_index_fixture():
    return commit_index


# -- a real S3 server on loopback, for tests/test_remote_*.py -----------------------------
from helpers.remote import s3_server  # noqa: E402,F401 - registers the session fixture
