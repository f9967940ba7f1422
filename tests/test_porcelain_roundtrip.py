"""A property: whatever small tree a workspace holds (any byte names,
executable bits, symlinks, empty folders), `commit -a` then a restore gives
it back exactly.

The restore is `checkout REV --target DIR` when the CLI has `checkout`;
otherwise the tree is rebuilt from `ls-tree -r --json` and `cat-file blob`.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from helpers.porcelain import HEX64, new_workspace, ok, run_cli, run_parallel

RESERVED = {b".", b"..", b".rnstore", b".rnignore"}

names = st.one_of(
    st.binary(min_size=1, max_size=6),                       # mostly not UTF-8
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6).map(os.fsencode),
).map(lambda name: name.replace(b"/", b"_").replace(b"\0", b"_")).filter(lambda n: n not in RESERVED)

files = st.tuples(st.just("file"), st.binary(max_size=64), st.booleans())
links = st.tuples(st.just("link"), st.binary(min_size=1, max_size=24).map(lambda t: t.replace(b"\0", b"_")))
trees = st.recursive(
    st.dictionaries(names, st.one_of(files, links), max_size=3),
    lambda children: st.dictionaries(names, st.one_of(files, links, children), max_size=3),
    max_leaves=6)


def materialise(folder: bytes, tree: dict) -> None:
    for name, node in tree.items():
        path = os.path.join(folder, name)
        if isinstance(node, dict):
            os.mkdir(path)
            materialise(path, node)
        elif node[0] == "file":
            with open(path, "wb") as fh:
                fh.write(node[1])
            os.chmod(path, 0o755 if node[2] else 0o644)
        else:
            os.symlink(node[1], path)


def picture(root: bytes, skip: frozenset = frozenset({b".rnstore"})) -> dict[bytes, tuple]:
    """What a snapshot promises to keep: path -> (mode, bytes or link
    target); empty folders as leaves."""
    found: dict[bytes, tuple] = {}
    for folder, dirs, names_ in os.walk(root):
        if folder == root:
            dirs[:] = [d for d in dirs if d not in skip]
        rel = os.path.relpath(folder, root)
        if folder != root and not dirs and not names_:
            found[rel] = ("040000", b"")
        for name in names_ + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            path = os.path.relpath(full, root)
            st_ = os.lstat(full)
            if stat.S_ISLNK(st_.st_mode):
                found[path] = ("120000", os.readlink(full))
            else:
                with open(full, "rb") as fh:
                    found[path] = ("100755" if st_.st_mode & stat.S_IXUSR else "100644", fh.read())
    return found


def restore_by_checkout(run_cli, ws: Path, snapshot: str, target: Path) -> dict[bytes, tuple]:
    ok(run_cli(["checkout", snapshot, "--target", str(target)], cwd=ws))
    return picture(os.fsencode(target), skip=frozenset())


def restore_by_plumbing(run_cli, ws: Path, snapshot: str) -> dict[bytes, tuple]:
    listing = json.loads(ok(run_cli(["ls-tree", "-r", "--json", snapshot], cwd=ws)).stdout)
    blobs = sorted({e["id"] for e in listing if e["type"] == "blob"})
    contents = dict(zip(blobs, (ok(r).stdout for r in run_parallel(
        run_cli, [(["cat-file", "blob", oid], ws) for oid in blobs]))))
    return {os.fsencode(e["path"]): (e["mode"], contents.get(e["id"], b"")) for e in listing}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_commit_then_restore_reproduces_any_small_tree(tree):
    with tempfile.TemporaryDirectory(prefix="rnstore-roundtrip-") as scratch:
        ws = Path(scratch) / "ws"
        ws.mkdir()
        materialise(os.fsencode(ws), tree)
        expected = picture(os.fsencode(ws))
        new_workspace(ws)  # a copy of one `rnstore init` made
        result = run_cli(["commit", "-a", "-q", "-m", "property"], cwd=ws)
        if not expected:
            assert result.returncode == 1  # nothing to commit
            return
        snapshot = ok(result).out.strip()
        assert HEX64.match(snapshot)
        assert restore_by_checkout(run_cli, ws, snapshot, Path(scratch) / "restored") == expected


FIXED_TREE = {
    b"caf\xc3\xa9.txt": ("file", b"utf-8 name\n", False),
    b"latin1-\xe9\xff": ("file", b"not utf-8 name\n", True),
    b"run.sh": ("file", b"#!/bin/sh\necho hi\n", True),
    b"empty": {},
    b"nested": {b"deeper": {b"also-empty": {}}, b"link-up": ("link", b"../run.sh")},
    b"dangling": ("link", b"nowhere/\xfe"),
}


def test_plumbing_restore_of_a_fixed_tree(tmp_path, run_cli):
    """Restoring through the plumbing (ls-tree + cat-file), on a tree with
    every kind of entry, agrees with `checkout --target`."""
    ws = tmp_path / "ws"
    ws.mkdir()
    materialise(os.fsencode(ws), FIXED_TREE)
    expected = picture(os.fsencode(ws))
    assert len(expected) == 7
    new_workspace(ws)
    snapshot = ok(run_cli(["commit", "-a", "-q", "-m", "fixed"], cwd=ws)).out.strip()
    assert restore_by_plumbing(run_cli, ws, snapshot) == expected
    assert restore_by_checkout(run_cli, ws, snapshot, tmp_path / "restored") == expected
