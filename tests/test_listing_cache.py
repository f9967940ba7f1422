"""The listing cache (git's untracked cache): a folder whose stat did not
change is not listed again, and the cache never hides a change."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from rnstore.index import RACY_NS
from rnstore.repo import Repository
from rnstore.staging import ignore_rules
from rnstore.worktree import LISTINGS_FILE, ListingCache, _decode_listings, _encode_listings, scan

from helpers.cli import run_cli


def settle() -> None:
    time.sleep(2 * RACY_NS / 1e9)


def workspace(tmp_path) -> Repository:
    """A snapshot of a few folders, settled, and a status that recorded
    every folder's listing."""
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    for folder in ("a", "a/deep", "b", "c"):
        (repo.root / folder).mkdir()
        for name in ("one.txt", "two.txt"):
            (repo.root / folder / name).write_text(f"{folder}/{name}\n")
    (repo.root / "top.txt").write_text("top\n")
    settle()
    repo.snapshot("one")
    settle()
    assert repo.status().clean
    return repo


def recorded(repo: Repository) -> set[bytes]:
    return set(ListingCache.load(repo.dotdir / LISTINGS_FILE)._folders)


def status_of(repo: Repository) -> tuple[list, list]:
    status = repo.status()
    return ([(c.raw_path, c.status) for c in status.unstaged], status.raw_untracked)


def test_a_status_records_every_settled_folder(tmp_path):
    repo = workspace(tmp_path)
    assert recorded(repo) == {b"", b"a", b"a/deep", b"b", b"c"}


def test_the_walk_takes_an_unchanged_folders_names_from_the_cache(tmp_path):
    """The cache is used: names it holds for an unchanged folder are what
    the walk sees (here one that is not there: a lie the stat allows)."""
    repo = workspace(tmp_path)
    cache = ListingCache.load(repo.dotdir / LISTINGS_FILE)
    stat_key, keys = cache._folders[b"b"]
    cache._folders[b"b"] = (stat_key, keys + b"zz-only-in-the-cache.txt\0")
    os.utime(repo.dotdir / LISTINGS_FILE)  # written later still: trusted
    found = scan(repo.root, [b""], ignore_rules(repo), listings=cache)
    assert b"b/zz-only-in-the-cache.txt" not in [p for p, _, _ in found.found]  # lstat finds nothing
    assert cache.lookup(b"b", os.lstat(repo.root / "b")) is not None


def test_a_new_file_in_a_recorded_folder_is_seen(tmp_path):
    repo = workspace(tmp_path)
    (repo.root / "b" / "new.txt").write_text("new\n")
    assert status_of(repo) == ([], [b"b/new.txt"])
    assert repo.snapshot("two").files == 10


def test_a_new_file_is_seen_though_the_folders_mtime_is_set_back(tmp_path):
    """utime can put a folder's mtime back, not its ctime."""
    repo = workspace(tmp_path)
    before = os.lstat(repo.root / "a")
    (repo.root / "a" / "new.txt").write_text("new\n")
    os.utime(repo.root / "a", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert status_of(repo) == ([], [b"a/new.txt"])


def test_a_new_file_made_at_once_after_the_listing_is_seen(tmp_path):
    """Status lists, then a file appears in the same instant: the next
    status sees it, however fine or coarse the clock."""
    repo = workspace(tmp_path)
    for round_ in range(5):
        name = f"c/quick{round_}.txt"
        (repo.root / "c" / "x").write_text("x\n")
        os.unlink(repo.root / "c" / "x")  # the folder changes just now...
        repo.status()  # ...is listed in the same tick (not recorded: not settled)
        (repo.root / name).write_text("quick\n")
        assert os.fsencode(name) in status_of(repo)[1]


def test_a_folder_replaced_by_a_file_and_back_is_seen(tmp_path):
    repo = workspace(tmp_path)
    shutil.rmtree(repo.root / "b")
    (repo.root / "b").write_text("now a file\n")
    unstaged, untracked = status_of(repo)
    assert unstaged == [(b"b/one.txt", "D"), (b"b/two.txt", "D")] and untracked == [b"b"]
    settle()
    repo.status()
    os.unlink(repo.root / "b")
    (repo.root / "b").mkdir()
    (repo.root / "b" / "three.txt").write_text("three\n")
    unstaged, untracked = status_of(repo)
    assert unstaged == [(b"b/one.txt", "D"), (b"b/two.txt", "D")] and untracked == [b"b/three.txt"]


def test_a_file_replaced_by_a_folder_and_a_rename_are_seen(tmp_path):
    repo = workspace(tmp_path)
    os.unlink(repo.root / "c" / "one.txt")
    (repo.root / "c" / "one.txt").mkdir()
    (repo.root / "c" / "one.txt" / "inner").write_text("inner\n")
    os.rename(repo.root / "a" / "deep" / "two.txt", repo.root / "a" / "deep" / "three.txt")
    unstaged, untracked = status_of(repo)
    assert unstaged == [(b"a/deep/two.txt", "D"), (b"c/one.txt", "D")]
    assert untracked == [b"a/deep/three.txt", b"c/one.txt/inner"]


def test_a_folder_removed_and_made_again_at_once_is_seen(tmp_path):
    """A new folder in the old one's place, even with its inode, has new times."""
    repo = workspace(tmp_path)
    shutil.rmtree(repo.root / "a" / "deep")
    (repo.root / "a" / "deep").mkdir()
    (repo.root / "a" / "deep" / "one.txt").write_text("a/deep/one.txt\n")
    (repo.root / "a" / "deep" / "other.txt").write_text("other\n")
    unstaged, untracked = status_of(repo)
    assert unstaged == [(b"a/deep/two.txt", "D")] and untracked == [b"a/deep/other.txt"]


def test_a_file_replaced_in_the_same_tick_is_seen(tmp_path):
    """The listing cache leaves the files' own stat cache (racy rule) alone."""
    repo = workspace(tmp_path)
    path = repo.root / "a" / "one.txt"
    st = os.lstat(path)
    path.write_text("A/ONE.TXT\n")  # as many bytes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert status_of(repo) == ([(b"a/one.txt", "M")], [])


def test_rules_apply_to_a_cached_listing_afresh(tmp_path):
    """The cache holds a folder's names before any ignore rule: a new
    --exclude hides a name, and dropping it shows the name again."""
    repo = workspace(tmp_path)
    (repo.root / "c" / "log.tmp").write_text("log\n")
    settle()
    assert status_of(repo)[1] == [b"c/log.tmp"]  # recorded with log.tmp
    assert repo.status(excludes=["*.tmp"]).raw_untracked == []
    assert status_of(repo)[1] == [b"c/log.tmp"]
    (repo.root / ".rnignore").write_text("*.tmp\n")
    assert status_of(repo)[1] == [b".rnignore"]


def test_a_changed_folder_is_listed_until_it_settles():
    cache = ListingCache()
    now = time.time_ns()

    class Stat:
        st_mtime_ns, st_ctime_ns, st_ino = now, now, 7

    cache.record(b"x", Stat, [b"f"])
    assert b"x" not in cache._folders  # changed within RACY_NS of the walk: not recorded

    class Settled:
        st_mtime_ns, st_ctime_ns, st_ino = now - 3 * RACY_NS, now - 3 * RACY_NS, 7

    cache.record(b"x", Settled, [b"f", b"g/"])
    assert cache._folders[b"x"][1] == b"f\0g/\0"
    cache._written_ns = Settled.st_ctime_ns  # a cache written in that very tick vouches for nothing
    assert cache.lookup(b"x", Settled) is None
    cache._written_ns = now
    assert cache.lookup(b"x", Settled) == [b"f", b"g/"]
    cache.record(b"x", Settled, [])
    assert cache.lookup(b"x", Settled) == []


def test_a_folder_on_a_coarse_clock_is_recorded_only_once_its_whole_tick_is_past():
    """A time on a whole second (FAT, some network file systems) stands for
    any change up to 2 s later: a folder listed within that tick of the walk
    could change again after its listing and keep the same times."""
    cache = ListingCache()
    settle = cache.walk_began_ns - RACY_NS
    tick = (settle // 1_000_000_000 - 1) * 1_000_000_000  # 1-2 s before the settle point

    class Coarse:
        st_mtime_ns, st_ctime_ns, st_ino = tick, tick, 7

    cache.record(b"x", Coarse, [b"f"])
    assert b"x" not in cache._folders

    class Older:
        st_mtime_ns, st_ctime_ns, st_ino = tick - 2_000_000_000, tick - 2_000_000_000, 7

    cache.record(b"x", Older, [b"f"])
    assert cache._folders[b"x"][1] == b"f\0"


def test_the_file_round_trips_and_damage_is_ignored(tmp_path):
    folders = {b"": ((1, 2, 3), b"a\0b/\0\xff\0"), b"b": ((4, 5, 6), b""), b"b/c": ((7, 8, 9), b"x\0")}
    data = b"".join(_encode_listings(folders))
    assert _decode_listings(data) == folders
    for damaged in (data[:-1], data + b"\0", data[:20] + bytes([data[20] ^ 1]) + data[21:], b"", b"rnlistings 2\n"):
        assert _decode_listings(damaged) is None
    escaping = {b"": ((1, 2, 3), b"../../etc/\0")}
    assert _decode_listings(b"".join(_encode_listings(escaping))) is None
    # lengths that part the keys inside a key
    split_inside = {b"": ((1, 2, 3), b"ab"), b"x": ((4, 5, 6), b"c\0")}
    assert _decode_listings(b"".join(_encode_listings(split_inside))) is None


def test_a_damaged_cache_file_changes_nothing(tmp_path):
    repo = workspace(tmp_path)
    (repo.root / "b" / "new.txt").write_text("new\n")
    path = repo.dotdir / LISTINGS_FILE
    path.write_bytes(path.read_bytes()[:-5])
    assert status_of(repo) == ([], [b"b/new.txt"])
    path.write_bytes(b"garbage")
    proc = run_cli(["status", "--porcelain"], cwd=repo.root)
    assert proc.returncode == 0 and proc.stdout == b"?? b/new.txt\n", proc.stderr


@pytest.mark.parametrize("keys", [b"two.txt\0one.txt\0", b"one.txt\0one.txt\0two.txt\0"])
def test_keys_out_of_order_are_not_used(tmp_path, keys):
    """A whole file (its checksum right) whose folder's keys are not
    sorted, or name a file twice, and whose stat holds: the walk sweeps
    the keys alongside the index in one pass, so a key out of order made
    a tracked file look deleted (and `add` drop it from the index). Such
    a folder is listed again."""
    repo = workspace(tmp_path)
    cache = ListingCache.load(repo.dotdir / LISTINGS_FILE)
    stat_key, _ = cache._folders[b"b"]
    cache._folders[b"b"] = (stat_key, keys)
    cache._changed = True
    cache.save()
    assert ListingCache.load(repo.dotdir / LISTINGS_FILE)._folders[b"b"][1] == keys  # written as it is
    assert status_of(repo) == ([], [])
    repo.add([repo.root])
    assert [e.path for e in repo.read_index() if e.path.startswith(b"b/")] == [b"b/one.txt", b"b/two.txt"]


def test_an_add_of_one_folder_keeps_the_others_records_and_sees_its_changes(tmp_path):
    repo = workspace(tmp_path)
    (repo.root / "a" / "deep" / "new.txt").write_text("new\n")
    (repo.root / "b" / "new.txt").write_text("new\n")
    result = repo.add([repo.root / "a"])
    assert result.raw_added == [b"a/deep/new.txt"]
    assert {b"", b"b", b"c"} <= recorded(repo)  # not walked: kept
    assert status_of(repo) == ([], [b"b/new.txt"])


@pytest.mark.parametrize("setting", ["false", "true"])
def test_the_setting_turns_it_off(tmp_path, setting):
    repo = workspace(tmp_path)
    os.unlink(repo.dotdir / LISTINGS_FILE)
    repo.config.set("core.listing_cache", setting)
    repo.status()
    assert (repo.dotdir / LISTINGS_FILE).exists() == (setting == "true")


def test_commit_all_uses_and_keeps_it(tmp_path):
    repo = workspace(tmp_path)
    (repo.root / "a" / "deep" / "new.txt").write_text("new\n")
    proc = run_cli(["commit", "-a", "-m", "two", "-q"], cwd=repo.root)
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(repo.root / "c")
    proc = run_cli(["commit", "-a", "-m", "three", "-q"], cwd=repo.root)
    assert proc.returncode == 0, proc.stderr
    assert [e.path for e in repo.read_index()] == [
        b"a/deep/new.txt", b"a/deep/one.txt", b"a/deep/two.txt", b"a/one.txt", b"a/two.txt",
        b"b/one.txt", b"b/two.txt", b"top.txt"]
    assert b"c" not in recorded(repo)  # a whole walk drops the folders it no longer saw


# -- a walk split over two processes (staging.scan_and_sweep) --------------------------

@pytest.fixture
def split_walks(monkeypatch):
    """Every whole walk forks, as the CLI's do past SPLIT_WALK_ENTRIES; the
    forks are counted."""
    import rnstore.alloc
    import rnstore.staging
    forks = []
    real_fork = os.fork

    def fork():
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(rnstore.alloc, "_walks_may_fork", True)
    monkeypatch.setattr(rnstore.staging, "SPLIT_WALK_ENTRIES", 1)
    monkeypatch.setattr(os, "fork", fork)
    return forks


def busy_workspace(tmp_path) -> Repository:
    """Changes of every kind on both sides of the split, and at the root."""
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    for folder in ("a", "b", "c", "d", "e", "f"):
        for sub in ("x", "y"):
            (repo.root / folder / sub).mkdir(parents=True)
            for name in ("one.txt", "two.txt", "three.txt"):
                (repo.root / folder / sub / name).write_text(f"{folder}/{sub}/{name}\n")
    (repo.root / "a.txt").write_text("root file\n")
    (repo.root / "g.txt").write_text("root file\n")
    settle()
    repo.snapshot("one")
    settle()
    repo.status()  # the listing cache, recorded
    (repo.root / "a" / "x" / "new.txt").write_text("new\n")
    (repo.root / "f" / "y" / "new.txt").write_text("new\n")
    (repo.root / "b" / "x" / "one.txt").write_text("changed\n")
    (repo.root / "e" / "y" / "two.txt").write_text("changed too\n")
    os.unlink(repo.root / "c" / "x" / "three.txt")
    shutil.rmtree(repo.root / "f" / "x")
    (repo.root / "d" / "empty").mkdir()
    (repo.root / "e" / "empty").mkdir()
    os.mkfifo(repo.root / "e" / "fifo")
    (repo.root / "h.log").write_text("ignored\n")  # hidden names at the root, on both sides
    (repo.root / "0.log").write_text("ignored\n")
    (repo.root / "zz").mkdir()
    (repo.root / "zz" / "new.txt").write_text("new\n")
    (repo.root / ".rnignore").write_text("*.log\n")
    return repo


def status_fields(status) -> tuple:
    return ([(c.raw_path, c.status) for c in status.unstaged], status.raw_untracked, status.raw_ignored)


def test_a_split_walk_sees_what_one_walk_sees(tmp_path, split_walks):
    repo = busy_workspace(tmp_path)
    split_walks.clear()
    split = status_fields(repo.status(ignored=True))
    assert len(split_walks) == 1
    import rnstore.alloc
    rnstore.alloc._walks_may_fork = False
    assert status_fields(repo.status(ignored=True)) == split
    assert split[0] == [(b"b/x/one.txt", "M"), (b"c/x/three.txt", "D"), (b"e/y/two.txt", "M"),
                        (b"f/x/one.txt", "D"), (b"f/x/three.txt", "D"), (b"f/x/two.txt", "D")]
    assert split[1] == [b".rnignore", b"a/x/new.txt", b"d/empty", b"e/empty", b"f/y/new.txt", b"zz/new.txt"]
    assert split[2] == [b"0.log", b"h.log"]


def test_a_split_add_stages_what_one_add_stages(tmp_path, split_walks):
    repo = busy_workspace(tmp_path)
    split_walks.clear()
    result = repo.add([repo.root])
    assert len(split_walks) == 1
    assert (sorted(result.raw_added), sorted(result.raw_modified), sorted(result.raw_deleted)) == (
        [b".rnignore", b"a/x/new.txt", b"d/empty", b"e/empty", b"f/y/new.txt", b"zz/new.txt"],
        [b"b/x/one.txt", b"e/y/two.txt"],
        [b"c/x/three.txt", b"f/x/one.txt", b"f/x/three.txt", b"f/x/two.txt"])
    assert [path for path, _ in result.raw_skipped] == [b"e/fifo"]
    assert (result.files, result.unchanged) == (38, 32)
    assert repo.status().clean is False and repo.status().staged


def test_a_split_walk_whose_child_fails_is_walked_whole_here(tmp_path, split_walks, monkeypatch):
    import rnstore.staging
    parent = os.getpid()
    real = rnstore.staging._scan_parts

    def failing_in_the_child(found):
        if os.getpid() != parent:
            raise MemoryError("the child fails")
        return real(found)

    monkeypatch.setattr(rnstore.staging, "_scan_parts", failing_in_the_child)
    repo = busy_workspace(tmp_path)
    split_walks.clear()
    split = status_fields(repo.status())
    assert len(split_walks) == 1
    monkeypatch.setattr(rnstore.staging, "SPLIT_WALK_ENTRIES", 10**9)
    assert status_fields(repo.status()) == split


@pytest.mark.torture
def test_the_cli_splits_a_large_walk_and_sees_every_change(tmp_path):
    """End to end past SPLIT_WALK_ENTRIES: status and commit -a through the
    CLI (which lets walks fork) agree with a walk in one process."""
    import rnstore.staging
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    repo.config.set("limits.max_files", "1000000")
    per_folder = 500
    folders = rnstore.staging.SPLIT_WALK_ENTRIES // per_folder + 2
    for k in range(folders):
        folder = repo.root / f"d{k:03}"
        folder.mkdir()
        for i in range(per_folder):
            (folder / f"f{i}").write_bytes(b"")
    settle()
    assert run_cli(["commit", "-a", "-m", "one", "-q"], cwd=repo.root).returncode == 0
    settle()
    assert run_cli(["status", "--porcelain"], cwd=repo.root).stdout == b""
    (repo.root / "d000" / "new").write_text("new\n")
    (repo.root / f"d{folders - 1:03}" / "f7").write_text("changed\n")
    os.unlink(repo.root / f"d{folders // 2:03}" / "f3")
    proc = run_cli(["status", "--porcelain"], cwd=repo.root)
    assert proc.stdout.splitlines() == [f" D d{folders // 2:03}/f3".encode(), f" M d{folders - 1:03}/f7".encode(),
                                        b"?? d000/new"], proc.stderr
    assert status_of(repo) == ([(f"d{folders // 2:03}/f3".encode(), "D"), (f"d{folders - 1:03}/f7".encode(), "M")],
                               [b"d000/new"])
    assert run_cli(["commit", "-a", "-m", "two", "-q"], cwd=repo.root).returncode == 0
    assert repo.status().clean and repo.read_index().totals()[0] == folders * per_folder


def test_a_split_walk_warns_of_a_bad_root_pattern_once(tmp_path, split_walks):
    """Both processes of a split walk list the root: its .rnignore is read
    before the fork, so a bad pattern there is said once, not twice."""
    busy_workspace(tmp_path)
    (tmp_path / "ws" / ".rnignore").write_text("*.log\nfoo\\\n")
    said = tmp_path / "said.txt"

    def notify(line: str) -> None:
        with open(said, "a") as fh:  # the child's lines too
            fh.write(line + "\n")

    repo = Repository.open(tmp_path / "ws", notify=notify)
    split_walks.clear()
    status = repo.status()
    assert len(split_walks) == 1 and b"zz/new.txt" in status.raw_untracked
    assert said.read_text().splitlines() == [
        "warning: .rnignore:2: invalid pattern 'foo\\' (a trailing backslash escapes nothing); skipped"]
