"""gc's marking in bulk (reachability.mark_in_bulk): it reaches exactly what
the Marker reaches, whatever the reachability cache holds, and leaves
anything unusual to the Marker, which says what is wrong."""

from __future__ import annotations

import struct

import pytest
import zstandard

from helpers.space import HOUR, age_objects, commit, make_repo, object_files, reachable
from rnstore.errors import CorruptStoreError
from rnstore.objects import SNAPSHOT, TREE, hex_tree
from rnstore.reachability import Root, collect_roots, mark_in_bulk, mark_reachable
from rnstore.reachcache import CACHE_FILE, HEADER_2, ReachCache
from rnstore.repo import Repository


def _never(kind, oid, detail):
    raise AssertionError(detail)


def scenario(tmp_path) -> tuple[Repository, dict]:
    """Live, tagged and forgotten snapshots, a detached HEAD, a staged file
    and the same file in two folders."""
    repo = make_repo(tmp_path / "ws")
    same = "the same bytes\n" * 20
    first = commit(repo, {"a/x.txt": "x1\n", "a/b/deep.txt": same, "keep.txt": "keep\n"}, "first")
    tagged = commit(repo, {"a/x.txt": "x2\n", "src/only/unique.txt": "tagged only\n", "c/deep.txt": same}, "second")
    repo.tag("v1", tagged)
    (repo.root / "src" / "only" / "unique.txt").unlink()
    live = commit(repo, {"a/b/deep.txt": "deeper\n"}, "live")
    repo.forget([first])
    (repo.root / "staged.txt").write_text("staged, never committed\n")
    repo.add([repo.root / "staged.txt"])
    age_objects(repo, 2 * HOUR)
    return repo, {"first": first, "tagged": tagged, "live": live}


def both_marks(repo: Repository):
    scan = collect_roots(repo, _never, grace=HOUR, now=0)
    return (mark_in_bulk(repo, scan.roots, save=False),
            mark_reachable(repo, scan.roots, _never, by_unit=False, save=False))


def _drop_cache(repo):
    (repo.store_root / CACHE_FILE).unlink()


def _keep_half(repo):
    """A cache holding every other record: the rest is read from the store."""
    cache = ReachCache.load(repo.store_root)
    kept = set(sorted(cache._stored)[::2])
    cache._new = {}
    cache.rejected = 1  # so that save rewrites it
    cache.save(kept)


def _swap_payloads(repo):
    """Two tree records swap payloads: neither hashes to its id any more.
    In version 2, whose records name their id (a record of version 3 is
    named by its own hash, so it cannot lie so); readers go on reading it."""
    cache = ReachCache.load(repo.store_root)
    assert cache.version == 3
    records = [(kind, oid, hex_tree(stored) if kind == TREE else stored)
               for oid, (kind, stored) in cache._stored.items()]
    a, b = [n for n, (kind, _, _) in enumerate(records) if kind == TREE][:2]
    records[a], records[b] = (TREE, records[a][1], records[b][2]), (TREE, records[b][1], records[a][2])
    body = b"".join((b"t" if kind == TREE else b"s") + bytes.fromhex(oid) + struct.pack(">I", len(payload)) + payload
                    for kind, oid, payload in records)
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(body)
    (repo.store_root / CACHE_FILE).write_bytes(HEADER_2 + struct.pack(">I", len(frame)) + frame)
    lying = ReachCache.load(repo.store_root)
    assert not lying.damaged and len(lying) == len(records)
    assert lying.tree_entries(records[a][1]) is None and lying.rejected == 1  # found out as it is used


@pytest.mark.parametrize("cache", ["as commits left it", "none", "half", "lying records"])
def test_bulk_marks_reach_what_the_marker_reaches(tmp_path, cache):
    repo, snaps = scenario(tmp_path)
    {"as commits left it": lambda r: None, "none": _drop_cache, "half": _keep_half,
     "lying records": _swap_payloads}[cache](repo)
    bulk, marker = both_marks(repo)
    assert bulk is not None
    assert bulk.kind == marker.kind
    assert set(bulk.owner) == set(marker.owner) and len(bulk) == len(marker)
    staged = {e.id for e in repo.read_index()}
    assert set(bulk.kind) == reachable(repo, snaps["tagged"]) | reachable(repo, snaps["live"]) | staged
    assert snaps["first"] not in bulk
    # what it took from the cache is the caller's to check against the store (settle_cache)
    assert bulk.load.from_cache <= {oid for oid, kind in bulk.kind.items() if kind in (TREE, SNAPSHOT)}
    if cache == "none":
        assert not bulk.load.from_cache


def test_gc_deletes_exactly_what_no_root_reaches(tmp_path):
    repo, snaps = scenario(tmp_path)
    bulk, _ = both_marks(repo)
    stats = repo.gc(prune="now", threshold=0)
    assert set(object_files(repo.store_root)) == set(bulk.kind)
    assert stats.reachable_objects == len(bulk)
    assert repo.fsck().ok


def test_a_gone_workspaces_roots_are_left_to_the_marker(tmp_path):
    repo, snaps = scenario(tmp_path)
    scan = collect_roots(repo, _never, grace=HOUR, now=0)
    roots = [*scan.roots, Root("0" * 64, SNAPSHOT, "last seen roots", repo.dotdir)]
    assert mark_in_bulk(repo, roots, save=False) is None  # it may be missing: the Marker excuses that


def test_a_ref_naming_a_tree_is_left_to_the_marker(tmp_path):
    repo, snaps = scenario(tmp_path)
    tree = repo.store.get_snapshot(snaps["live"]).tree
    (repo.dotdir / "refs" / "tags" / "odd").write_text(tree + "\n")
    scan = collect_roots(repo, _never, grace=HOUR, now=0)
    assert mark_in_bulk(repo, scan.roots, save=False) is None
    with pytest.raises(CorruptStoreError, match="gc deleted nothing"):
        repo.gc(prune="now")
    assert set(object_files(repo.store_root)) >= reachable(repo, snaps["live"])


def test_a_missing_tree_stops_gc_with_the_markers_words(tmp_path):
    repo, snaps = scenario(tmp_path)
    _drop_cache(repo)
    repo.gc(prune="now", threshold=0)  # everything packed: then the tree goes from its pack
    tree = repo.store.get_tree(repo.store.get_snapshot(snaps["tagged"]).tree).get(b"src").id
    before = set(object_files(repo.store_root))
    repo.store.delete(tree)
    _drop_cache(repo)
    scan = collect_roots(repo, lambda *a: None, grace=HOUR, now=0)
    assert mark_in_bulk(repo, scan.roots, save=False) is None
    with pytest.raises(CorruptStoreError, match=f"tree {tree}.*missing"):
        repo.gc(prune="now")
    assert set(object_files(repo.store_root)) == before - {tree}
