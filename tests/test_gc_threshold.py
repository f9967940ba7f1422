"""gc.threshold (gc.py's plan_sweep, FORMAT.md "Repacking"): gc rewrites a
pack to drop its garbage only when at least that percent of the pack goes;
below it the pack stays whole, and gc, its dry run, du and fsck all say so
with the same figures. What gc says it freed is what the store lost."""

from __future__ import annotations

import random

import pytest

from helpers.space import HOUR, age_objects, cli_json, commit, disk_bytes, make_repo, object_files, run
from rnstore.repo import Repository


def pack_names(repo: Repository) -> list[str]:
    return sorted(p.name for p in (repo.store_root / "objects" / "pack").glob("*.pack"))


def stored_bytes(repo: Repository) -> int:
    return sum(obj.size for obj in repo.store.stored_objects())


def noise(seed: int, size: int) -> bytes:
    """Bytes zstd cannot shrink, so that stored sizes are what the test means."""
    return random.Random(seed).randbytes(size)


def forgotten_file(tmp_path, garbage_size: int) -> tuple[Repository, str]:
    """One big snapshot packed by a gc (40 files of 4 KB), then `one.bin`
    changed and the first snapshot forgotten: its old version, of
    `garbage_size` bytes, with the first snapshot's object and root tree,
    is the pack's garbage. Everything aged past the grace period. Returns
    (repo, id of that old version)."""
    repo = make_repo(tmp_path / "ws")
    files = {f"f{i:02}.bin": noise(i, 4096) for i in range(40)}
    files["one.bin"] = noise(100, garbage_size)
    first = commit(repo, files, "first")
    repo.gc()
    assert len(pack_names(repo)) == 1 and not repo.store.loose_and_packs()[0]
    old = repo.store.get_tree(repo.store.get_snapshot(first).tree).get(b"one.bin").id
    commit(repo, {"one.bin": noise(101, 100)}, "second")
    repo.forget([first])
    age_objects(repo, 2 * HOUR)
    return repo, old


def test_a_pack_under_the_threshold_stays_whole_and_says_so(tmp_path):
    repo, old = forgotten_file(tmp_path, 2000)  # about 1% of the pack
    packs = pack_names(repo)
    du = cli_json(["du"], repo.root)["store"]
    assert du["unreachable_bytes"] > 0 and du["reclaimable_bytes"] == 0
    dry = cli_json(["gc", "--prune", "now", "--dry-run"], repo.root)
    before = stored_bytes(repo)
    real = cli_json(["gc", "--prune", "now"], repo.root)
    for report in (dry, real):
        assert report["deleted_objects"] == 0 and report["freed_bytes"] == 0
        # the old tree and snapshot of "first" are garbage too; all of it in the big pack
        assert report["garbage_kept_objects"] >= 1 and report["garbage_kept_bytes"] >= 2000
        assert report["threshold"] == 10
    assert {k: v for k, v in dry.items() if k not in ("dry_run", "last_run")} == \
        {k: v for k, v in real.items() if k not in ("dry_run", "last_run")}
    assert set(packs) <= set(pack_names(repo)) and repo.store.has(old)  # not rewritten
    assert stored_bytes(repo) == before
    assert du["unreachable_bytes"] == real["garbage_kept_bytes"]
    fsck = repo.fsck()
    assert fsck.ok and old in {p.id for p in fsck.dangling}
    text = run(["gc", "--prune", "now"], cwd=repo.root)
    assert text.returncode == 0 and "in packs less than 10% garbage (gc.threshold)" in text.stderr


def test_threshold_zero_frees_everything_and_frees_what_it_says(tmp_path):
    repo, old = forgotten_file(tmp_path, 2000)
    before, disk_before = stored_bytes(repo), disk_bytes(repo.store_root)
    dry = repo.gc(prune="now", threshold=0, dry_run=True)
    stats = repo.gc(prune="now", threshold="0")
    assert stats.deleted_objects == dry.deleted_objects > 0 and stats.freed_bytes == dry.freed_bytes
    assert stats.garbage_kept_objects == 0 and not repo.store.has(old)
    assert before - stored_bytes(repo) == stats.freed_bytes
    assert disk_bytes(repo.store_root) < disk_before
    assert repo.fsck().ok and not repo.fsck().dangling


def test_a_pack_over_the_threshold_is_rewritten_and_gc_frees_what_du_predicted(tmp_path):
    repo, old = forgotten_file(tmp_path, 40_000)  # about 20% of the pack
    predicted = repo.du().store.reclaimable_bytes
    packs = pack_names(repo)
    before = stored_bytes(repo)
    dry = repo.gc(prune="now", dry_run=True)
    stats = repo.gc(prune="now")
    assert stats.freed_bytes == dry.freed_bytes == predicted > 40_000
    assert before - stored_bytes(repo) == stats.freed_bytes
    assert stats.garbage_kept_objects == 0 and not repo.store.has(old)
    assert not set(packs) & set(pack_names(repo))  # rewritten without its garbage
    assert repo.du().store.reclaimable_bytes == repo.du().store.unreachable_bytes == 0
    assert not repo.fsck().dangling


def test_the_threshold_is_a_setting_and_an_option(tmp_path):
    repo, old = forgotten_file(tmp_path, 20_000)  # about 10% of the pack
    assert repo.config.get("gc.threshold") == 10
    repo.config.set("gc.threshold", "50%", durable=False)
    assert repo.gc(prune="now", dry_run=True).garbage_kept_objects > 0
    assert cli_json(["gc", "--prune", "now", "--dry-run", "--threshold", "1"], repo.root)["deleted_objects"] > 0
    assert repo.du().store.reclaimable_bytes == 0  # du reads the setting gc would use
    for bad in ("101", "5x", "ten"):
        result = run(["config", "gc.threshold", bad], cwd=repo.root)
        assert result.returncode != 0 and result.stderr.startswith("error: gc.threshold must be a percentage")
        assert "Traceback" not in result.stderr
        result = run(["gc", "--threshold", bad], cwd=repo.root)
        assert result.returncode != 0 and result.stderr.startswith("error: gc --threshold must be a percentage")
    assert repo.store.has(old)


def test_a_pack_whose_garbage_is_all_of_it_goes_whatever_the_threshold(tmp_path):
    repo = make_repo(tmp_path / "ws")
    with repo.store.batch():
        garbage = [repo.store.put("blob", noise(i, 1000)) for i in range(5)]
    commit(repo, {"keep.txt": "kept\n"})
    age_objects(repo, 2 * HOUR)
    stats = repo.gc(prune="now", threshold=100)
    assert stats.deleted_objects == 5 and not any(repo.store.has(oid) for oid in garbage)
    assert set(object_files(repo.store_root)) and repo.fsck().ok


@pytest.mark.parametrize("threshold", [0, 10])
def test_loose_garbage_always_goes(tmp_path, threshold):
    repo = make_repo(tmp_path / "ws")
    commit(repo, {"keep.txt": "kept\n"})
    loose = repo.store.put("blob", b"loose garbage\n")
    age_objects(repo, 2 * HOUR)
    stats = repo.gc(prune="now", threshold=threshold)
    assert stats.deleted_objects == 1 and not repo.store.has(loose)


def test_garbage_left_in_a_pack_the_repack_merges_goes_with_it_as_the_dry_run_and_du_say(tmp_path):
    repo, old = forgotten_file(tmp_path, 2000)  # under the threshold: the big pack is left whole
    repo.config.set("pack.deltas", "false", durable=False)  # frames copied as they are: bytes compare
    # enough new loose objects that the repack merges the big pack (FORMAT.md, Repacking)
    commit(repo, {f"new{i:02}.bin": noise(200 + i, 1000) for i in range(60)}, "many new files")
    age_objects(repo, 2 * HOUR)
    predicted = repo.du().store.reclaimable_bytes
    dry = cli_json(["gc", "--prune", "now", "--dry-run"], repo.root)
    before = stored_bytes(repo)
    real = cli_json(["gc", "--prune", "now"], repo.root)
    repo = Repository.open(repo.root)  # as the gc left the store (this process's copy keeps its packs open)
    assert real["merged_packs"] >= 1 and real["garbage_kept_objects"] == 0 and not repo.store.has(old)
    for key in ("deleted_objects", "freed_bytes", "kept_objects", "garbage_kept_objects", "garbage_kept_bytes"):
        assert dry[key] == real[key], key
    assert real["freed_bytes"] == predicted > 2000
    assert before - stored_bytes(repo) == real["freed_bytes"]
    assert repo.fsck().ok and not repo.fsck().dangling
