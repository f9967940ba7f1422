"""The walk in path-byte order, the sweep of it against the index, the
racy-git rule there, and an old (version 2) index in a workspace."""

from __future__ import annotations

import hashlib
import os
import time

from rnstore.index import HEADER, RACY_NS, Index, IndexEntry, StatKey
from rnstore.objects import MODE_FILE, MODE_LINK
from rnstore.repo import Repository
from rnstore.staging import ignore_rules
from rnstore.worktree import scan

from helpers.cli import run_cli

A = "a" * 64
#: names whose order as paths differs from their order as names ("a" the
#: folder sorts as "a/", after "a.txt", "a-b", "a b"), and non-ASCII bytes
TRICKY = [b"a/x", b"a/y/z", b"a.txt", b"a-b", b"a b", b"a0", b"ab/c", b"b", b"\xc3\xa9t\xc3\xa9", b"\xff",
          b"Z", b"a/y.txt", b"a/y-1/q", b"a/y0"]


def make_tree(root, paths=TRICKY) -> None:
    for path in paths:
        full = os.path.join(os.fsencode(root), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as fh:
            fh.write(path)


def found_paths(repo: Repository) -> list[bytes]:
    return [path for path, _, _ in scan(repo.root, [b""], ignore_rules(repo)).found]


def test_the_walk_yields_path_byte_order(tmp_path):
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    make_tree(repo.root)
    os.symlink("a", repo.root / "a-link")
    first = found_paths(repo)
    assert first == sorted(TRICKY + [b"a-link"])
    assert found_paths(repo) == first  # and the same every time


def test_prefixes_walk_in_path_byte_order_too(tmp_path):
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    make_tree(repo.root)
    found = scan(repo.root, [b"a", b"a.txt", b"ab", b"a-b"], ignore_rules(repo)).found
    paths = [path for path, _, _ in found]
    assert paths == sorted(p for p in TRICKY if p.startswith((b"a/", b"ab/")) or p in (b"a.txt", b"a-b"))


def test_a_fresh_snapshot_sweeps_unchanged(tmp_path):
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    make_tree(repo.root)
    time.sleep(2 * RACY_NS / 1e9)  # settled: add trusts their stat
    repo.snapshot("one")
    sweep = repo.read_index().sweep(scan(repo.root, [b""], ignore_rules(repo)).found)
    assert (sweep.unchanged, len(sweep.changed), len(sweep.untracked), sweep.gone) == (len(TRICKY), 0, 0, [])
    assert sweep.kept_files == len(TRICKY) and sweep.kept_bytes == sum(map(len, TRICKY))


class FakeStat:
    def __init__(self, size, mtime, ctime, ino, mode=0o100644):
        self.st_size, self.st_mtime_ns, self.st_ctime_ns, self.st_ino, self.st_mode = size, mtime, ctime, ino, mode


def sweep_one(entry_stat: StatKey | None, seen: FakeStat, written_ns: int | None):
    index = Index([IndexEntry(b"f", MODE_FILE, A, 3, entry_stat)], written_ns=written_ns)
    return index.sweep([(b"f", MODE_FILE, seen)])


def test_the_sweep_trusts_only_a_settled_identical_stat():
    key = StatKey(3, 1_000, 2_000, 7)
    same = FakeStat(3, 1_000, 2_000, 7)
    assert sweep_one(key, same, 2_001).unchanged == 1
    # git's racy rule: changed in the very tick the index was written, or later
    for written in (2_000, 1_000, 1_500, None):
        assert len(sweep_one(key, same, written).changed) == 1, written
    for other in (FakeStat(4, 1_000, 2_000, 7), FakeStat(3, 1_001, 2_000, 7), FakeStat(3, 1_000, 1_999, 7),
                  FakeStat(3, 1_000, 2_000, 8)):
        assert len(sweep_one(key, other, 10**9).changed) == 1
    assert len(sweep_one(None, same, 10**9).changed) == 1  # smudged
    index = Index([IndexEntry(b"f", MODE_FILE, A, 3, key)], written_ns=10**9)
    assert len(index.sweep([(b"f", MODE_LINK, same)]).changed) == 1  # another kind now


def test_an_edit_in_the_same_second_is_seen(tmp_path):
    """Snapshot, then rewrite a file at once with as many bytes: its stat
    may look the same to a coarse clock, but status and the next snapshot
    see the change (the entry is smudged, or as new as the index)."""
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    (repo.root / "f.txt").write_bytes(b"one")
    (repo.root / "g.txt").write_bytes(b"two")
    first = repo.snapshot("one")
    st = os.lstat(repo.root / "f.txt")
    (repo.root / "f.txt").write_bytes(b"ONE")
    os.utime(repo.root / "f.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # the same mtime, too
    assert [(c.raw_path, c.status) for c in repo.status().unstaged] == [(b"f.txt", "M")]
    second = repo.snapshot("two")
    assert not second.unchanged and second.id != first.id
    assert repo.store.get_snapshot(second.id).tree != repo.store.get_snapshot(first.id).tree


def version_2_bytes(index: Index) -> bytes:
    """The index as rnstore wrote it before version 3 (FORMAT.md)."""
    body = [b"rnindex 2\n"]
    for e in index:
        stat = b"- - -" if e.stat is None else b"%d %d %d" % e.stat[1:]
        body.append(b"%s %s %d %s %s\0" % (e.mode.encode(), e.id.encode(), e.size, stat, e.path))
    for path in sorted(index.trees):
        tree_id, size = index.trees[path]
        body.append(b"tree %s %d %s\0" % (tree_id.encode(), size, path))
    data = b"".join(body)
    return data + hashlib.sha256(data).hexdigest().encode() + b"\n"


def test_a_workspace_with_a_version_2_index_keeps_working(tmp_path):
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    make_tree(repo.root)
    time.sleep(2 * RACY_NS / 1e9)
    first = repo.snapshot("one")
    index_file = repo.dotdir / "index"
    written = os.stat(index_file).st_mtime_ns
    old = version_2_bytes(repo.read_index())
    index_file.write_bytes(old)
    os.utime(index_file, ns=(written, written))
    assert Index.load(index_file).outdated
    proc = run_cli(["status", "--porcelain"], cwd=repo.root)
    assert proc.returncode == 0 and proc.stdout == b"", proc.stderr
    (repo.root / "b").write_bytes(b"changed")
    second = repo.snapshot("two")  # rewritten in the new version on this write
    assert second.id != first.id
    assert index_file.read_bytes().startswith(HEADER)
    assert repo.status().clean
    proc = run_cli(["commit", "-a", "-m", "x", "-q"], cwd=repo.root)
    assert proc.returncode == 1 and "nothing to commit" in proc.stderr
