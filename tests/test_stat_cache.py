"""The stat cache after a checkout, and the racy-git rule."""

import os
import time

from rnstore.index import RACY_NS
from rnstore.index import Index, StatKey
from rnstore.repo import Repository


def make_workspace(tmp_path, n=60):
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    for i in range(n):
        (repo.root / f"f{i:03}.txt").write_text(f"version one {i}\n")
    time.sleep(2 * RACY_NS / 1e9)  # settled: `add` trusts their stat
    first = repo.snapshot("one").id
    for i in range(0, n, 2):
        (repo.root / f"f{i:03}.txt").write_text(f"version two {i}\n")
    time.sleep(2 * RACY_NS / 1e9)
    second = repo.snapshot("two").id
    return repo, first, second


def test_checkout_leaves_the_stat_cache_warm(tmp_path):
    repo, first, second = make_workspace(tmp_path)
    repo.checkout(first)
    index = repo.read_index()
    assert index.written_ns is not None
    settled = 0
    for entry in index:
        st = os.lstat(repo.root / os.fsdecode(entry.path))
        if max(st.st_mtime_ns, st.st_ctime_ns) < index.written_ns:
            settled += 1
            assert index.lookup_fresh(entry.path, StatKey.of(st)) is not None, entry.path
    assert settled > 0
    assert repo.status().clean


def test_an_entry_as_new_as_the_index_is_not_trusted(tmp_path):
    repo, first, second = make_workspace(tmp_path, n=4)
    index = repo.read_index()
    entry = next(iter(index))
    st = os.lstat(repo.root / os.fsdecode(entry.path))
    same_tick = Index(list(index), written_ns=max(st.st_mtime_ns, st.st_ctime_ns))
    assert same_tick.lookup_fresh(entry.path, StatKey.of(st)) is None
    later = Index(list(index), written_ns=max(st.st_mtime_ns, st.st_ctime_ns) + 1)
    assert entry.stat is not None  # hashed well after it settled (make_workspace sleeps)
    assert later.lookup_fresh(entry.path, StatKey.of(st)) is not None
