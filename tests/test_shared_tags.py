"""Tags in a shared object store belong to the store: every workspace sees,
resolves, moves and deletes the same tags, and a tag keeps its snapshot
alive through the deletion of the workspace that made it and any number of
`gc --prune now`. The README's CI recipe is run as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import zstandard

from helpers.porcelain import assert_error, ok, write_files
from helpers.shared import commit, shared
from helpers.space import HOUR, age, object_files, run

README = Path(__file__).resolve().parent.parent / "README.md"


def ci_recipe() -> tuple[str, str]:
    """The shell block under README's "In CI" heading: what every job runs,
    and what a later job runs to get a snapshot back."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## In CI", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README's In CI section has no sh block"
    every_job, later = match.group(1).split("\n\n", 1)
    return every_job, later


def rnstore_on_path(tmp_path: Path) -> str:
    """A PATH on which `rnstore` runs this checkout's rnstore."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "rnstore"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rnstore "$@"\n')
    shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def test_readme_ci_recipe_keeps_every_tagged_snapshot_through_workspace_deletion_and_gc(tmp_path):
    store = tmp_path / "cache" / "rnstore"
    recipe, later_recipe = ci_recipe()
    assert "/cache/rnstore" in recipe and "rnstore tag" in recipe
    script = recipe.replace("/cache/rnstore", str(store))
    env = {"PATH": rnstore_on_path(tmp_path), "RNSTORE_PROGRESS": "0"}
    jobs = {}
    for job in ("101", "102", "103"):
        folder = tmp_path / f"job-{job}"
        files = {"train.py": f"print('job {job}')\n", "common/lib.py": "shared = 1\n" * 50,
                 f"only-{job}.bin": os.urandom(3000)}
        write_files(folder, files)
        artifacts = tmp_path / "artifacts" / job
        artifacts.mkdir(parents=True)
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=folder, capture_output=True, timeout=300,
                              env={**os.environ, **env, "CI_JOB_ID": job, "CI_BRANCH": "main",
                                   "ARTIFACTS": str(artifacts)})
        assert proc.returncode == 0, proc.stderr.decode()
        assert "Traceback" not in proc.stderr.decode()
        exported = artifacts / "code.tar.zst"
        assert exported.is_file(), "the recipe exports outside the workspace"
        jobs[job] = {name.encode(): content.encode() if isinstance(content, str) else content
                     for name, content in files.items()}
        shutil.rmtree(folder)  # the job's workspace goes with the job
    assert object_files(store) or list((store / "objects" / "pack").iterdir())
    # everything is old, and gc runs again and again from a later job
    age([p for p in store.rglob("*") if p.is_file()], 3 * HOUR)
    later = tmp_path / "later"
    later.mkdir()
    ok(run(["init", "-q", "--objects", str(store)], cwd=later))
    for _ in range(3):
        result = ok(run(["gc", "--prune", "now"], cwd=later))
    assert "gone" in result.stderr or "removed" in result.stderr or result.returncode == 0
    listing = ok(run(["tag"], cwd=later)).out
    # the recipe's own "later job" lines, for job 102
    proc = subprocess.run(["bash", "-e", "-c", later_recipe.replace("1234", "102")], cwd=later,
                          capture_output=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr.decode()
    assert (later / "restored" / "train.py").read_text() == "print('job 102')\n"
    assert "build-101" in proc.stdout.decode() and "build-103" in proc.stdout.decode()
    for job, files in jobs.items():
        assert f"build-{job}" in listing
        target = tmp_path / "restored" / job
        ok(run(["checkout", f"build-{job}", "--target", str(target)], cwd=later))
        for name, content in files.items():
            assert (target / os.fsdecode(name)).read_bytes() == content
        # the export the job shipped holds the same files
        with open(tmp_path / "artifacts" / job / "code.tar.zst", "rb") as raw:
            with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
                with tarfile.open(fileobj=stream, mode="r|") as archive:
                    shipped = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}
        shipped.pop(".rnignore")  # written by the recipe's `init`
        assert {k.encode(): v for k, v in shipped.items()} == files
    assert ok(run(["fsck"], cwd=later)).returncode == 0


def test_store_wide_tags_are_seen_moved_and_deleted_from_another_workspace(tmp_path):
    store, (a, b) = shared(tmp_path, "a", "b")
    a1 = commit(a, {"x": "one\n"}, "first in a")
    a2 = commit(a, {"x": "two\n"}, "second in a")
    ok(run(["tag", "release", a1], cwd=a))
    # b sees the tag, resolves it, lists it with its time and maker
    assert ok(run(["rev-parse", "release"], cwd=b)).out.split() == [a1]
    listing = json.loads(ok(run(["tag", "--json"], cwd=b)).stdout)
    assert [(t["name"], t["id"], t["workspace"]) for t in listing] == [("release", a1, str(a))]
    assert listing[0]["time"].startswith("20")
    line = ok(run(["tag"], cwd=b)).out
    assert line.split()[:2] == ["release", a1[:12]] and str(a) in line
    assert ok(run(["tag", "-l", "rel*"], cwd=b)).out.split()[0] == "release"
    assert ok(run(["tag", "-l", "nothing*"], cwd=b)).out == ""
    # taken by another snapshot: refused without -f, from any workspace
    before = (store / "refs" / "tags" / "release").read_bytes()
    assert_error(run(["tag", "release", a2], cwd=b), 2, "release", "-f")
    assert (store / "refs" / "tags" / "release").read_bytes() == before
    ok(run(["tag", "release", a1], cwd=b))  # binding it again to the same snapshot is fine
    ok(run(["tag", "-f", "release", a2], cwd=b))
    assert ok(run(["rev-parse", "release"], cwd=a)).out.split() == [a2]
    # no tag in the workspace itself; the store holds it
    assert not list((a / ".rnstore" / "refs" / "tags").iterdir())
    # log in a shows the tag on its snapshot; log --all in b lists it
    entries = json.loads(ok(run(["log", "--json"], cwd=a)).stdout)
    assert [e["tags"] for e in entries] == [["release"], []]
    assert [e["id"] for e in json.loads(ok(run(["log", "--all", "--json"], cwd=b)).stdout)] == [a2]
    ok(run(["tag", "-d", "release"], cwd=b))
    assert_error(run(["rev-parse", "release"], cwd=a), 2)
    assert ok(run(["tag"], cwd=a)).out == ""


def test_tag_refuses_head_and_branch_names(tmp_path):
    store, (a,) = shared(tmp_path, "a")
    commit(a, {"x": "1\n"})
    for bad in ("HEAD", "main", "a~1", "a^", "a:b", "-x"):
        result = run(["tag", "--", bad] if bad.startswith("-") else ["tag", bad], cwd=a)
        assert_error(result, 2)
    assert not list((store / "refs" / "tags").iterdir())


def test_a_tag_hands_ownership_on_when_the_maker_is_gone(tmp_path):
    store, (a, b) = shared(tmp_path, "a", "b")
    kept = commit(b, {"model.py": "handed on\n"}, "keep me")
    dropped = commit(b, {"model.py": "not kept\n"}, "drop me")
    ok(run(["tag", "handed-on", kept], cwd=a))
    shutil.rmtree(b)
    ok(run(["gc", "--prune", "now"], cwd=a))
    ok(run(["gc", "--prune", "now"], cwd=a))
    target = tmp_path / "out"
    ok(run(["checkout", "handed-on", "--target", str(target)], cwd=a))
    assert (target / "model.py").read_text() == "handed on\n"
    assert_error(run(["show", dropped], cwd=a), (1, 2))
    assert ok(run(["fsck"], cwd=a)).returncode == 0


def test_a_damaged_store_tag_stops_gc(tmp_path):
    store, (a,) = shared(tmp_path, "a")
    commit(a, {"x": "1\n"})
    ok(run(["tag", "v1"], cwd=a))
    (store / "refs" / "tags" / "v1").write_text("not an id\n")
    garbage = ok(run(["hash-object", "-w", "--stdin"], cwd=a, input=b"garbage\n")).out.strip()
    result = run(["gc", "--prune", "now"], cwd=a)
    assert_error(result, 1, "refs/tags/v1")
    assert garbage in object_files(store) or result.returncode == 1


def test_library_tags_in_a_shared_store(tmp_path):
    from rnstore.repo import Repository
    store = tmp_path / "store"
    a = Repository.init(tmp_path / "a", objects=store, default_ignore=False)
    b = Repository.init(tmp_path / "b", objects=store, default_ignore=False)
    write_files(a.root, {"f": "x\n"})
    snap = a.commit("m", all=True).id
    assert a.tag("v1") == snap
    assert Repository.open(b.root).log(all=True).entries[0].id == snap
    assert (store / "refs" / "tags" / "v1").read_text() == snap + "\n"
