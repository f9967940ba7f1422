"""Helpers of the space tests (test_space_*.py): workspaces made through the
library, the store's object files, ages, and an independent reachability
walk; the commands under test run through helpers.cli's run_cli."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from helpers.cli import run_cli
from helpers.porcelain import write_files
from rnstore.fsutil import TMP_PREFIX
from rnstore.packs import DamagedPackError, Pack
from rnstore.repo import Repository

HOUR = 3600


def run(args, cwd, **kw):
    """`rnstore ARGS` in a real subprocess (see helpers.cli.run_cli)."""
    return run_cli(args, cwd=cwd, **kw)


def make_repo(path: Path, **kw) -> Repository:
    """A workspace without fsync (tests make many) and without a default .rnignore."""
    Repository.init(path, default_ignore=False, **kw)
    Repository.open(path).config.set("core.fsync", "false", durable=False)
    return Repository.open(path)


def commit(repo: Repository, files: dict[str, str | bytes], message: str = "m") -> str:
    write_files(repo.root, files)
    return repo.commit(message, all=True).id


def object_files(store_root: Path) -> dict[str, bytes]:
    """Every object stored under objects/, loose or packed (gc packs them):
    id -> the bytes of its frame."""
    found = {}
    for folder in sorted((store_root / "objects").glob("??")):
        for path in folder.iterdir():
            if len(path.name) == 62 and not path.name.startswith(TMP_PREFIX):
                found[folder.name + path.name] = path.read_bytes()
    for path in sorted((store_root / "objects" / "pack").glob("*.pack")):
        try:
            pack = Pack.open(str(path))
        except DamagedPackError:  # (a test damaged it): its objects are no longer stored
            continue
        found.update((raw_id.hex(), pack.read(raw_id)) for raw_id, _ in pack.entries())
    return found


def disk_bytes(store_root: Path) -> int:
    return sum(len(b) for b in object_files(store_root).values())


def age(paths, seconds: float) -> None:
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


def age_objects(repo: Repository, seconds: float) -> None:
    """Make every object look `seconds` old (its loose file, or its pack)."""
    age({repo.store.file_of(oid) for oid in object_files(repo.store_root)}, seconds)


def cli_json(args, cwd) -> dict:
    result = run([*args, "--json"], cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def reachable(repo: Repository, snapshot_id: str) -> set[str]:
    """Objects a snapshot reaches, found independently of rnstore.gc."""
    found = {snapshot_id}
    stack = [repo.store.get_snapshot(snapshot_id).tree]
    while stack:
        tree_id = stack.pop()
        found.add(tree_id)
        for entry in repo.store.get_tree(tree_id).entries:
            if entry.mode == "040000":
                stack.append(entry.id)
            else:
                found.add(entry.id)
    return found
