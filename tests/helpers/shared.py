"""Workspaces of one shared object store, made and committed to through the
CLI (test_shared_tags.py, test_store_view.py)."""

from __future__ import annotations

from pathlib import Path

from helpers.porcelain import ok, write_files
from helpers.space import run


def shared(tmp_path: Path, *names: str) -> tuple[Path, list[Path]]:
    store = tmp_path / "store"
    folders = []
    for name in names:
        folder = tmp_path / name
        folder.mkdir()
        ok(run(["init", "-q", "--no-default-ignore", "--objects", str(store)], cwd=folder))
        ok(run(["config", "core.fsync", "false"], cwd=folder))
        folders.append(folder)
    return store, folders


def commit(folder: Path, files: dict, message: str = "m") -> str:
    write_files(folder, files)
    return ok(run(["commit", "-a", "-q", "-m", message], cwd=folder)).out.strip()
