"""Hypothesis properties of the encodings and of the plumbing."""

from __future__ import annotations

import os
import random
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from rnstore import plumbing
from rnstore.index import Index, IndexEntry
from rnstore.objects import (
    BLOB, EMPTY_TREE_ID, MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, Snapshot, Tree, TreeEntry,
    decode_snapshot, decode_tree,
)
from rnstore.repo import Repository
from rnstore.store import DiskStore
from rnstore.trees import FlatEntry, build_tree

# -- strategies ----------------------------------------------------------------------------

#: Any bytes but "/" and NUL, and never "." or "..".
names = st.binary(min_size=1, max_size=24).map(
    lambda b: b.replace(b"/", b"_").replace(b"\0", b"~")).filter(lambda b: b not in (b".", b".."))
#: Names that sort around a folder "a" in interesting ways: as paths, "a b",
#: "a-b" and "a.b" come before "a/x" (' ', '-', '.' < '/'), "a0" and "ab" after.
short_names = st.sampled_from([b"a", b"a b", b"a-b", b"a.b", b"a0", b"ab", b"b", b"\xe9"])
ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
modes = st.sampled_from([MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE])
sizes = st.integers(min_value=0, max_value=10**19)
times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.replace(tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

tree_entries = st.lists(st.tuples(names, modes, ids, sizes), max_size=20,
                        unique_by=lambda t: t[0])


@given(tree_entries)
def test_tree_round_trip(entries):
    tree = Tree.from_entries(TreeEntry(*e) for e in entries)
    encoded = tree.encode()
    decoded = decode_tree(encoded)
    assert decoded == tree
    assert decoded.encode() == encoded
    assert [e.name for e in decoded.entries] == sorted(e[0] for e in entries)


@given(tree_entries, st.randoms(use_true_random=False))
def test_tree_id_ignores_entry_order(entries, rnd):
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert (Tree.from_entries(TreeEntry(*e) for e in entries).id
            == Tree.from_entries(TreeEntry(*e) for e in shuffled).id)


@given(tree=ids, parents=st.lists(ids, max_size=3), time=times, message=st.text(),
       meta=st.dictionaries(st.text(), st.text(), max_size=5))
def test_snapshot_round_trip(tree, parents, time, message, meta):
    snapshot = Snapshot(tree, tuple(parents), time, message, meta)
    encoded = snapshot.encode()
    decoded = decode_snapshot(encoded)
    assert decoded == snapshot
    assert decoded.encode() == encoded
    assert decoded.id == snapshot.id


# -- a tree's id does not depend on how the folder was made or listed -------------------

def folder_layouts():
    """A nested folder: {name: bytes (file) | (bytes, "x") | ("link", target) | dict}."""
    leaf = st.one_of(
        st.binary(max_size=64),
        st.tuples(st.binary(max_size=64), st.just("x")),
        st.tuples(st.just("link"), st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b)),
    )
    return st.recursive(
        leaf, lambda children: st.dictionaries(short_names | names.filter(lambda n: len(n) < 100),
                                               children, max_size=5),
        max_leaves=25).filter(lambda v: isinstance(v, dict))


def create(root: Path, layout: dict, order: list) -> None:
    """Create `layout` under `root`, visiting names in the order `order` picks."""
    for name in order(list(layout)):
        value = layout[name]
        path = os.path.join(os.fsencode(root), name)
        if isinstance(value, dict):
            os.mkdir(path)
            create(Path(os.fsdecode(path)), value, order)
        elif isinstance(value, tuple) and value[0] == "link":
            os.symlink(value[1], path)
        elif isinstance(value, tuple):
            with open(path, "wb") as fh:
                fh.write(value[0])
            os.chmod(path, 0o755)
        else:
            with open(path, "wb") as fh:
                fh.write(value)


def scan(store, root: bytes, prefix: bytes = b"") -> list[FlatEntry]:
    """A small folder walker (the real one belongs to the worktree module):
    files via store.put_file, links as their target, empty folders kept."""
    entries = []
    with os.scandir(root) as listing:
        children = list(listing)
    for child in children:
        path = prefix + child.name
        st_ = child.stat(follow_symlinks=False)
        if stat.S_ISLNK(st_.st_mode):
            target = os.readlink(child.path)
            entries.append(FlatEntry(path, MODE_LINK, store.put(BLOB, target), len(target)))
        elif stat.S_ISDIR(st_.st_mode):
            below = scan(store, child.path, path + b"/")
            entries.extend(below or [FlatEntry(path, MODE_TREE, EMPTY_TREE_ID, 0)])
        else:
            oid, size = store.put_file(Path(os.fsdecode(child.path)))
            mode = MODE_EXEC if st_.st_mode & 0o100 else MODE_FILE
            entries.append(FlatEntry(path, mode, oid, size))
    return entries


@settings(max_examples=40)
@given(layout=folder_layouts(), seed=st.integers(0, 2**32 - 1))
def test_tree_id_does_not_depend_on_creation_or_listing_order(layout, seed):
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "objects").mkdir()
        store = DiskStore(base / "objects", fsync=False)
        first, second = base / "one", base / "two"
        first.mkdir()
        second.mkdir()
        create(first, layout, sorted)
        create(second, layout, lambda names: rnd.sample(names, len(names)))
        listed_first = scan(store, os.fsencode(first))
        listed_second = scan(store, os.fsencode(second))
        rnd.shuffle(listed_first)
        rnd.shuffle(listed_second)
        assert sorted(listed_first) == sorted(listed_second)
        assert build_tree(store, listed_first) == build_tree(store, listed_second)
        # and the hash of a file is the hash `hash-object` prints
        for entry in listed_first:
            if entry.mode in (MODE_FILE, MODE_EXEC):
                path = os.path.join(os.fsencode(first), entry.path)
                assert plumbing.hash_object(None, os.fsdecode(path), write=False) == entry.id


# -- write-tree then ls-tree -r reproduces the index ----------------------------------

@pytest.fixture(scope="module")
def module_repo(tmp_path_factory) -> Repository:
    root = tmp_path_factory.mktemp("prop") / "ws"
    Repository.init(root, default_ignore=False).config.set("core.fsync", "false")
    return Repository.open(root)


def index_layouts():
    """Flat index entries that form a valid tree: no path below a file, and
    empty folders (040000, the empty tree) only where nothing lies below."""
    return folder_layouts().map(lambda layout: list(flatten(layout)))


def flatten(layout: dict, prefix: bytes = b""):
    for name, value in layout.items():
        path = prefix + name
        if isinstance(value, dict):
            below = list(flatten(value, path + b"/"))
            yield from below or [("dir", path, None)]
        elif isinstance(value, tuple) and value[0] == "link":
            yield ("link", path, value[1])
        elif isinstance(value, tuple):
            yield ("exec", path, value[0])
        else:
            yield ("file", path, value)


@given(items=index_layouts())
def test_write_tree_then_ls_tree_reproduces_the_index(module_repo, items):
    repo = module_repo
    entries = []
    for kind, path, data in items:
        if kind == "dir":
            entries.append(IndexEntry(path, MODE_TREE, EMPTY_TREE_ID, 0))
            continue
        mode = {"file": MODE_FILE, "exec": MODE_EXEC, "link": MODE_LINK}[kind]
        entries.append(IndexEntry(path, mode, repo.store.put(BLOB, data), len(data)))
    repo.write_index(Index(entries))
    tree = plumbing.write_tree(repo)
    listed = plumbing.ls_tree(repo, tree, recursive=True)
    expected = [(e.path, e.mode, e.id, e.size) for e in repo.read_index()]
    assert [(e.path, e.mode, e.id, e.size) for e in listed] == expected  # same order too
    assert all(e.kind == ("tree" if e.mode == MODE_TREE else "blob") for e in listed)
    # and read-tree brings the same index back
    plumbing.read_tree(repo, tree)
    assert [(e.path, e.mode, e.id, e.size) for e in repo.read_index()] == expected
