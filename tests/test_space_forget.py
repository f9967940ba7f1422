"""forget: explicit snapshots, --keep-last, --keep-within (relative to the
newest snapshot, as restic), their combination, --dry-run, and refs that keep
a forgotten snapshot reachable."""

from __future__ import annotations

import pytest

from rnstore import plumbing
from rnstore.errors import InvalidValueError, UnknownRevisionError
from rnstore.objects import Snapshot
from rnstore.repo import Repository
from helpers.space import commit, make_repo, run


def snapshot_at(repo: Repository, time: str, message: str) -> str:
    """A live snapshot with a chosen time (commit-tree stamps the clock)."""
    tree = plumbing.write_tree(repo)
    snapshot = Snapshot(tree, (), time, message, {})
    return plumbing.store_snapshot(repo, snapshot)


@pytest.fixture
def dated(tmp_path):
    """Five live snapshots a day apart, newest last; HEAD on none of them."""
    repo = make_repo(tmp_path / "ws")
    (repo.root / "f").write_text("f\n")
    repo.add(["f"], cwd=repo.root)
    ids = [snapshot_at(repo, f"2026-01-0{day}T12:00:00.000000Z", f"day {day}") for day in range(1, 6)]
    return repo, ids


def live(repo) -> set[str]:
    return set(repo.journal)


def test_forget_needs_revs_or_a_rule(dated):
    repo, ids = dated
    with pytest.raises(InvalidValueError):
        repo.forget()
    result = run(["forget"], cwd=repo.root)
    assert result.returncode == 2 and result.stderr.startswith("error: forget needs")
    assert live(repo) == set(ids)
    assert run(["forget", "--keep-last", "0"], cwd=repo.root).returncode == 2
    assert run(["forget", "--keep-within", "soon"], cwd=repo.root).returncode == 2
    with pytest.raises(UnknownRevisionError):
        repo.forget(["no-such-thing"])


def test_keep_last(dated):
    repo, ids = dated
    result = repo.forget(keep_last=2)
    assert {i.id for i in result.removed} == set(ids[:3])
    assert [i.id for i in result.kept] == [ids[4], ids[3]]
    assert all(i.reasons == ["keep-last 2"] for i in result.kept)
    assert live(repo) == set(ids[3:])


def test_keep_within_counts_from_the_newest_snapshot(dated):
    repo, ids = dated
    # the newest is day 5: 2 days back reaches day 3 exactly (kept: it is within)
    result = repo.forget(keep_within="2d", dry_run=True)
    assert {i.id for i in result.kept} == set(ids[2:])
    assert live(repo) == set(ids)  # dry run
    out = run(["forget", "--keep-within", "36h"], cwd=repo.root)
    assert out.returncode == 0, out.stderr
    assert live(repo) == set(ids[3:])
    assert "keep-within 36h" in out.out


def test_rules_combine_and_named_snapshots_go_even_if_a_rule_keeps_them(dated):
    repo, ids = dated
    result = repo.forget([ids[4]], keep_last=1, keep_within="1d")
    # rules keep day 5 (last 1) and days 4, 5 (within 1d); day 5 is named, so it goes
    assert {i.id for i in result.kept} == {ids[3]}
    assert live(repo) == {ids[3]}
    assert "keep-within 1d" in result.kept[0].reasons


def test_dry_run_changes_nothing(dated):
    repo, ids = dated
    result = run(["forget", "--keep-last", "1", "--dry-run"], cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert result.out.count("would forget") == 4 and "would be forgotten" in result.stderr
    assert live(repo) == set(ids)


def test_explicit_revs_and_refs_that_still_name_them(tmp_path):
    repo = make_repo(tmp_path / "ws")
    s1 = commit(repo, {"a": "1\n"}, "one")
    s2 = commit(repo, {"a": "2\n"}, "two")
    repo.tag("v1", s1)
    result = run(["forget", "v1", "HEAD"], cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert live(repo) == set()
    assert "still kept by tag v1" in result.stderr
    assert "still kept by branch main" in result.stderr
    # forgetting again: nothing live to drop, said so, still exit 0
    again = run(["forget", s2], cwd=repo.root)
    assert again.returncode == 0 and "not a live snapshot" in again.stderr
    # nothing is collected: both are still named
    assert repo.gc(prune="now").deleted_objects == 0


def test_a_live_snapshot_whose_object_is_lost_can_be_forgotten_by_full_id(dated):
    import os
    repo, ids = dated
    os.unlink(repo.store.path_for(ids[0]))
    result = repo.forget([ids[0]])
    assert [i.id for i in result.removed] == [ids[0]] and result.removed[0].time is None
    assert ids[0] not in live(repo)
