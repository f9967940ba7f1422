"""du's answer cache and its bulk count (du.py; FORMAT.md, "du's answer
cache"): whatever changed since the last du - files added, commits, forget,
gc, tags, a setting, another workspace of a shared store, an object file
replaced - du answers exactly what a count without the cache gives, and the
bulk count answers exactly what the marker's count gives."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from helpers.space import commit, make_repo
from helpers.porcelain import write_files
from rnstore import du as du_module
from rnstore.du import ANSWER_FILE
from rnstore.repo import Repository
from rnstore.store import DiskStore


def answer_file(repo: Repository) -> Path:
    return repo.dotdir / ANSWER_FILE


def cold(repo: Repository) -> dict:
    """du without its answer cache."""
    answer_file(repo).unlink(missing_ok=True)
    return Repository.open(repo.root).du().as_json()


def marked(repo: Repository, monkeypatch, revs=()) -> dict:
    """du counted by the marker, object by object (the bulk count refused)."""
    def refuse(*args, **kw):
        raise du_module._Unusual
    with monkeypatch.context() as patch:
        patch.setattr(du_module, "_count_in_bulk", refuse)
        answer_file(repo).unlink(missing_ok=True)
        return Repository.open(repo.root).du(revs).as_json()


def shared_pair(tmp_path: Path) -> tuple[Repository, Repository]:
    store = tmp_path / "store"
    return make_repo(tmp_path / "a", objects=store), make_repo(tmp_path / "b", objects=store)


def step(rng: random.Random, a: Repository, b: Repository, n: int) -> str:
    """One random change to the store or a workspace; its name."""
    ws = rng.choice([a, b])
    kind = rng.choice(["stage", "commit", "commit", "forget", "gc", "tag", "untag", "setting",
                       "remove", "replace loose", "checkout"])
    if kind == "stage":
        write_files(ws.root, {f"staged/{n}.txt": f"staged {n}\n" * rng.randint(1, 50)})
        Repository.open(ws.root).add([ws.root / "staged"])
    elif kind == "commit":
        files = {f"d{rng.randint(0, 3)}/f{rng.randint(0, 5)}.txt": f"{n} {rng.random()}\n" * rng.randint(1, 200)
                 for _ in range(rng.randint(1, 4))}
        files["same.txt"] = "in every snapshot of both workspaces\n" * 30
        commit(Repository.open(ws.root), files, f"c{n}")
    elif kind == "forget":
        live = sorted(Repository.open(ws.root).journal)
        if live:
            Repository.open(ws.root).forget([rng.choice(live)])
    elif kind == "gc":
        Repository.open(ws.root).gc(prune="now", threshold=rng.choice([None, "0"]))
    elif kind == "tag":
        repo = Repository.open(ws.root)
        if repo.refs.resolve("HEAD"):
            repo.tag(f"t{n}")
    elif kind == "untag":
        repo = Repository.open(ws.root)
        tags = sorted(repo.refs.list("refs/tags/"))
        if tags:
            repo.refs.delete(rng.choice(tags))
    elif kind == "setting":
        Repository.open(ws.root).config.set("gc.threshold", str(rng.choice([0, 10, 50, 100])), durable=False)
    elif kind == "remove":
        doomed = sorted(p for p in ws.root.rglob("*.txt") if ".rnstore" not in p.parts)
        if doomed:
            rng.choice(doomed).unlink()
            Repository.open(ws.root).commit(f"r{n}", all=True, allow_empty=True)
    elif kind == "replace loose":
        loose = sorted(p for p in (ws.store_root / "objects").glob("??/*") if len(p.name) == 62)
        if loose:
            # what a writer that loses a race does: its own frame of the payload, renamed over
            path = rng.choice(loose)
            shutil.copyfile(path, path.with_name("tmp-copy"))
            os.replace(path.with_name("tmp-copy"), path)
    elif kind == "checkout":  # HEAD and the index move; no object is written
        repo = Repository.open(ws.root)
        live = sorted(repo.journal)
        if live:
            repo.checkout(rng.choice(live), force=True)
    return kind


@pytest.mark.parametrize("seed", range(4))
def test_du_after_any_change_answers_as_a_cold_count_and_the_marker(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    a, b = shared_pair(tmp_path)
    commit(a, {"same.txt": "in every snapshot of both workspaces\n" * 30, "a.txt": "a\n"}, "first")
    for n in range(16):
        kind = step(rng, a, b, n)
        for ws in (a, b):
            warm = Repository.open(ws.root).du().as_json()  # from the answer the last du saved, if still valid
            assert warm == cold(ws), (seed, n, kind)
            assert warm == marked(ws, monkeypatch), (seed, n, kind)
            again = Repository.open(ws.root).du().as_json()
            assert answer_file(ws).is_file() and again == warm


def test_an_unchanged_store_is_answered_from_the_cache(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"x.txt": "x\n" * 100}, "one")
    first = repo.du().as_json()

    def no_count(*args, **kw):
        raise AssertionError("counted again")
    monkeypatch.setattr(du_module, "_count_in_bulk", no_count)
    monkeypatch.setattr(du_module, "_count_marked", no_count)
    assert Repository.open(repo.root).du().as_json() == first
    write_files(repo.root, {"y.txt": "y\n"})
    Repository.open(repo.root).add([repo.root / "y.txt"])  # a new root: counted again
    with pytest.raises(AssertionError, match="counted again"):
        Repository.open(repo.root).du()


@pytest.mark.parametrize("damage", ["truncated", "body changed", "key changed", "empty", "a folder"])
def test_a_damaged_answer_file_is_a_miss_and_is_written_again(tmp_path, damage):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"x.txt": "x\n" * 100, "d/y.txt": "y\n"}, "one")
    expected = repo.du().as_json()
    path = answer_file(repo)
    data = path.read_bytes()
    if damage == "truncated":  # as a crash could leave it, were it not renamed into place
        path.write_bytes(data[:-7])
    elif damage == "body changed":
        path.write_bytes(data.replace(b'"objects": ', b'"objects": 1'))
    elif damage == "key changed":
        head, rest = data.split(b"\n", 1)
        path.write_bytes(head + b"\n" + bytes([rest[0] ^ 1]) + rest[1:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()
    assert Repository.open(repo.root).du().as_json() == expected
    if damage != "a folder":
        assert path.read_bytes() == data  # the next du wrote it whole again


def test_no_answer_is_saved_when_the_store_changed_while_counting(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"x.txt": "x\n"}, "one")
    stamps = iter(["before", "after"])
    monkeypatch.setattr(DiskStore, "listing_stamp", lambda self: next(stamps))
    repo.du()
    assert not answer_file(repo).exists()


def test_a_setting_changes_what_du_counts_as_reclaimable(tmp_path):
    repo = make_repo(tmp_path / "ws")
    first = commit(repo, {f"f{i}.txt": f"{i} " * 4000 for i in range(80)}, "big, packed")
    commit(repo, {"f0.txt": "changed\n"}, "two")
    repo.forget([first])
    repo.config.set("gc.threshold", "100", durable=False)
    before = Repository.open(repo.root).du().as_json()["store"]
    assert before["reclaimable_bytes"] < before["unreachable_bytes"]  # the pack stays whole
    Repository.open(repo.root).config.set("gc.threshold", "0", durable=False)
    after = Repository.open(repo.root).du().as_json()
    assert after["store"]["reclaimable_bytes"] == after["store"]["unreachable_bytes"]
    assert after == cold(repo)


def test_switching_branches_moves_only_the_index_and_du_follows(tmp_path):
    """No object written, no root added: only the index's files change, and
    with them which snapshot's files the index protects alone."""
    repo = make_repo(tmp_path / "ws")
    old = commit(repo, {"x.txt": "old x\n" * 50, "y.txt": "y\n"}, "old")
    commit(repo, {"x.txt": "new x\n" * 50}, "new")
    repo.refs.update("refs/heads/other", old)
    before = Repository.open(repo.root).du().as_json()
    Repository.open(repo.root).checkout("other")
    after = Repository.open(repo.root).du().as_json()
    assert after != before and after == cold(repo)


def test_a_forgotten_snapshot_named_by_rev_is_counted_as_the_marker_counts_it(tmp_path, monkeypatch):
    """Its trees are still in the reachability cache (commit put them
    there), but no root reaches them: neither count may use them."""
    repo = make_repo(tmp_path / "ws")
    old = commit(repo, {"x.txt": "old\n" * 40, "d/e/f.txt": "deep\n"}, "old")
    commit(repo, {"x.txt": "new\n"}, "new")
    repo.forget([old])
    bulk = Repository.open(repo.root).du([old]).as_json()
    assert marked(repo, monkeypatch, [old]) == bulk
    assert bulk["snapshots"][0]["live"] is False and bulk["snapshots"][0]["files"] == 2


def test_gc_that_changes_the_store_drops_the_answer_it_made_stale(tmp_path):
    """The answer is keyed on the store's listing: after a gc that deletes
    or repacks, it could never be used again, so gc removes it (it only took
    room); a gc that changes nothing, or a dry run, leaves it."""
    repo = make_repo(tmp_path / "ws")
    first = commit(repo, {"x.txt": "x\n" * 100, "gone.txt": "gone\n" * 300}, "one")
    (repo.root / "gone.txt").unlink()
    commit(repo, {"x.txt": "x\n" * 100}, "two")
    repo.gc(prune="now")
    repo.du()
    assert answer_file(repo).is_file()
    Repository.open(repo.root).gc(prune="now", dry_run=True)
    Repository.open(repo.root).gc(prune="now")  # nothing to delete or repack
    assert answer_file(repo).is_file()
    Repository.open(repo.root).forget([first])
    stats = Repository.open(repo.root).gc(prune="now")
    assert stats.deleted_objects
    assert not answer_file(repo).exists()
    assert Repository.open(repo.root).du().as_json() == cold(repo)
