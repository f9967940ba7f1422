"""`rnstore add`: what it stages, what it refuses, and what it never touches."""

from __future__ import annotations

import os
import shutil

import pytest

from helpers.porcelain import (assert_error, commit, hand_over, ls_files, ls_files_stage,
                                ls_tree, needs_unprivileged_runner, new_workspace, object_files,
                                ok, porcelain, run_parallel, run_unprivileged, sha256,
                                store_state, unprivileged_folder, write_files)


@pytest.fixture
def bare(tmp_path, run_cli):
    """A workspace without the default .rnignore."""
    return new_workspace(tmp_path)


def test_add_stages_additions_changes_and_deletions_under_path_only(bare, run_cli):
    write_files(bare, {"a/one": "1", "a/two": "2", "a/sub/three": "3", "b/one": "1", "top": "t"})
    commit(run_cli, bare, "first", "-a")

    write_files(bare, {"a/one": "1 changed", "a/new": "n", "b/one": "1 changed", "b/new": "n"})
    (bare / "a" / "two").unlink()
    shutil.rmtree(bare / "a" / "sub")
    (bare / "top").unlink()
    ok(run_cli(["add", "a"], cwd=bare))

    listing, status = run_parallel(run_cli, [(["ls-files", "-s"], bare),
                                             (["status", "--porcelain"], bare)])
    after = {line.split(b"\t")[1]: line.split(b" ")[1].decode()
             for line in ok(listing).stdout.splitlines()}
    assert after == {
        b"a/one": sha256(b"1 changed"), b"a/new": sha256(b"n"),
        b"b/one": sha256(b"1"),         # outside PATH: untouched
        b"top": sha256(b"t"),           # deleted, but outside PATH
    }
    assert set(ok(status).stdout.splitlines()) == {
        b"M  a/one", b"A  a/new", b"D  a/two", b"D  a/sub/three",
        b" M b/one", b" D top", b"?? b/new"}


def test_add_a_single_file_and_a_deleted_path(bare, run_cli):
    write_files(bare, {"x.txt": "x", "y.txt": "y"})
    ok(run_cli(["add", "x.txt"], cwd=bare))
    assert ls_files(run_cli, bare) == [b"x.txt"]
    commit(run_cli, bare)
    (bare / "x.txt").unlink()
    ok(run_cli(["add", "x.txt"], cwd=bare))  # a path that is gone stages its deletion
    assert ls_files(run_cli, bare) == []


def test_add_outside_the_workspace_is_bad_input(bare, run_cli, tmp_path_factory):
    write_files(bare, {"inside.txt": "in"})
    ok(run_cli(["add", "inside.txt"], cwd=bare))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    write_files(elsewhere, {"outside.txt": "out"})
    before = store_state(bare / ".rnstore")
    for args in (["add", str(elsewhere)], ["add", str(elsewhere / "outside.txt")],
                 ["add", "inside.txt", str(elsewhere)], ["add", "../" + elsewhere.name]):
        result = run_cli(args, cwd=bare)
        assert result.returncode == 2, (args, result.stderr)
        assert store_state(bare / ".rnstore") == before, args  # nothing staged, nothing stored
    assert ls_files(run_cli, bare) == [b"inside.txt"]
    assert sha256(b"out") not in {oid.decode() for oid in object_files(bare / ".rnstore")}


def test_add_of_a_path_that_matches_nothing_fails(bare, run_cli):
    write_files(bare, {"train.py": "t"})
    result = run_cli(["add", "trian.py"], cwd=bare)
    assert_error(result, 2, "trian.py")


def test_add_of_an_explicitly_named_ignored_file_says_so(bare, run_cli):
    write_files(bare, {".rnignore": "*.log\n", "train.log": "l"})
    result = ok(run_cli(["add", "train.log"], cwd=bare))
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [
        "warning: 'train.log' is ignored by .rnignore and was not staged (--no-ignore stages it)"]
    assert ls_files(run_cli, bare) == []
    ok(run_cli(["add", "--no-ignore", "train.log"], cwd=bare))
    assert ls_files(run_cli, bare) == [b"train.log"]


def _index_as_if_edited_after_hashing(ws, path: str, hashed: bytes, *, written_ns: int) -> None:
    """The index `add` would have left had it hashed `hashed` and the file
    then changed to its present bytes with no change to its stat (within one
    timestamp tick): the file's present stat, the old id, and an index file
    written at `written_ns`."""
    from rnstore.index import Index, IndexEntry, StatKey
    from rnstore.repo import Repository
    repo = Repository.open(ws)
    st = os.lstat(ws / path)
    repo.write_index(Index([IndexEntry(os.fsencode(path), "100644", sha256(hashed), len(hashed),
                                       StatKey.of(st))]))
    os.utime(repo.index_path, ns=(written_ns, written_ns))


def test_same_size_edit_within_the_racy_window_is_detected(bare, run_cli):
    """git's racy rule: a stat that matches is trusted only if the file last
    changed before the index was written. Here the stat matches exactly (the
    edit fell in the tick of the hashing) and the index was written in that
    same tick: only the racy rule makes status and add read the file."""
    target = bare / "params.txt"
    target.write_bytes(b"lr=0.2\n")
    st = os.lstat(target)
    changed = max(st.st_mtime_ns, st.st_ctime_ns)
    _index_as_if_edited_after_hashing(bare, "params.txt", b"lr=0.1\n", written_ns=changed)
    assert porcelain(run_cli, bare) == [b"AM params.txt"]
    ok(run_cli(["add", "params.txt"], cwd=bare))
    assert ls_files_stage(run_cli, bare)[b"params.txt"] == ("100644", sha256(b"lr=0.2\n"))


def test_a_matching_stat_older_than_the_index_is_trusted(bare, run_cli):
    """The counterpart of the racy rule (and the proof that the test above
    depends on it): the same index written a second later is believed, as
    the stat cache is meant to be, and the file is not read."""
    target = bare / "params.txt"
    target.write_bytes(b"lr=0.2\n")
    st = os.lstat(target)
    later = max(st.st_mtime_ns, st.st_ctime_ns) + 10**9
    _index_as_if_edited_after_hashing(bare, "params.txt", b"lr=0.1\n", written_ns=later)
    assert porcelain(run_cli, bare) == [b"A  params.txt"]


def test_symlinks_are_stored_as_links_never_followed(bare, run_cli):
    write_files(bare, {"real/file.txt": "real", "code.py": "c"})
    os.symlink("real", bare / "dirlink")                 # to a folder: not entered
    os.symlink("code.py", bare / "filelink")
    os.symlink("/etc/passwd", bare / "outside")          # outside the workspace
    os.symlink("does/not/exist", bare / "dangling")
    ok(run_cli(["add", "."], cwd=bare))
    commit(run_cli, bare)
    tree = ls_tree(run_cli, bare)
    assert set(tree) == {b"real/file.txt", b"code.py", b"dirlink", b"filelink", b"outside", b"dangling"}
    for name, target in ((b"dirlink", b"real"), (b"filelink", b"code.py"),
                         (b"outside", b"/etc/passwd"), (b"dangling", b"does/not/exist")):
        assert tree[name] == ("120000", "blob", sha256(target)), name
    assert ok(run_cli(["show", "HEAD:outside"], cwd=bare)).stdout == b"/etc/passwd"


def test_fifo_is_skipped_with_a_warning(bare, run_cli):
    write_files(bare, {"code.py": "c"})
    os.mkfifo(bare / "pipe")
    result = ok(run_cli(["add", "."], cwd=bare))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "pipe" in warnings[0], result.stderr
    assert ls_files(run_cli, bare) == [b"code.py"]


def test_unreadable_file_fails_naming_it_unless_ignore_errors(run_cli):
    needs_unprivileged_runner()
    ws = unprivileged_folder()
    try:
        write_files(new_workspace(ws), {"code.py": "c", "sub/secret.txt": "s"})
        hand_over(ws)
        os.chmod(ws / "sub" / "secret.txt", 0)
        before = store_state(ws / ".rnstore", objects=False)

        failed = run_unprivileged(["add", "."], cwd=ws)
        assert_error(failed, 1, "sub/secret.txt", "--ignore-errors")
        assert store_state(ws / ".rnstore", objects=False) == before  # nothing staged

        passed = run_unprivileged(["add", ".", "--ignore-errors"], cwd=ws)
        assert passed.returncode == 0, passed.stderr
        assert any(line.startswith("warning:") and "sub/secret.txt" in line
                   for line in passed.stderr.splitlines()), passed.stderr
        assert run_unprivileged(["ls-files"], cwd=ws).stdout == b"code.py\n"
    finally:
        shutil.rmtree(ws)


def test_dry_run_changes_nothing(bare, run_cli):
    write_files(bare, {"keep": "k", "change": "c", "remove": "r"})
    ok(run_cli(["add", "."], cwd=bare))
    write_files(bare, {"change": "c2", "new": "n"})
    (bare / "remove").unlink()
    before = store_state(bare / ".rnstore")
    result = ok(run_cli(["add", "--dry-run", "."], cwd=bare))
    assert store_state(bare / ".rnstore") == before
    assert sorted(result.stdout.splitlines()) == [b"add new", b"delete remove", b"update change"]


def test_dry_run_lists_only_real_changes(bare, run_cli):
    """A touched but unchanged file is not listed (it was, before e8bbc05)."""
    write_files(bare, {"keep": "k", "change": "c"})
    ok(run_cli(["add", "."], cwd=bare))
    write_files(bare, {"change": "c2"})
    stat = os.stat(bare / "keep")
    os.utime(bare / "keep", ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))  # touched only
    result = ok(run_cli(["add", "--dry-run", "."], cwd=bare))
    assert result.stdout.splitlines() == [b"update change"]


LIMIT_FILES = {f"models/m{i}.bin": bytes(200 + 50 * i) for i in range(12)} | {"small.txt": b"s" * 10}


def _largest_named(stderr: str) -> tuple[set[str], set[str]]:
    named = {name for name in LIMIT_FILES if name in stderr}
    return named, set(LIMIT_FILES) - named


def test_max_bytes_stops_before_storing_anything(bare, run_cli):
    ok(run_cli(["config", "limits.max_bytes", "1000"], cwd=bare))
    write_files(bare, LIMIT_FILES)
    total = sum(len(v) for v in LIMIT_FILES.values())
    before = store_state(bare / ".rnstore")

    result = run_cli(["add", "."], cwd=bare)
    assert_error(result, 1, "5.6 KiB", "1000 B", "models/", ".rnignore", "--force")
    assert total == 5710  # 5.6 KiB
    named, unnamed = _largest_named(result.stderr)
    # the ten largest files are named; the three smallest are not
    assert named == {f"models/m{i}.bin" for i in range(2, 12)}, result.stderr
    assert store_state(bare / ".rnstore") == before  # nothing stored, index as it was

    # commit -a obeys the limit too, and makes no snapshot
    assert_error(run_cli(["commit", "-a", "-m", "too big"], cwd=bare), 1, "--force")
    assert store_state(bare / ".rnstore") == before

    ok(run_cli(["add", ".", "--force"], cwd=bare))
    assert len(ls_files(run_cli, bare)) == 13
    assert len(object_files(bare / ".rnstore")) == 13


def test_max_files_stops_before_storing_anything(bare, run_cli):
    ok(run_cli(["config", "limits.max_files", "3"], cwd=bare))
    write_files(bare, {f"f{i}.txt": f"{i}" for i in range(5)})
    before = store_state(bare / ".rnstore")
    result = run_cli(["add", "."], cwd=bare)
    assert_error(result, 1, "5 files", "3", ".rnignore", "--force")
    assert store_state(bare / ".rnstore") == before
    ok(run_cli(["add", ".", "--force"], cwd=bare))
    assert len(ls_files(run_cli, bare)) == 5


# -- files that change as add reads them ---------------------------------------------------

def test_a_file_that_changes_while_add_reads_it_is_read_again(tmp_path, monkeypatch):
    """The file changes (same size) just after add has read it: the stat
    taken after the read differs, so add reads it again and stages what
    the file holds now, never the bytes it held before."""
    import time
    from rnstore.index import RACY_NS
    from rnstore.repo import Repository
    from rnstore.store import DiskStore
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    target = repo.root / "params.txt"
    target.write_bytes(b"lr=0.1\n")
    time.sleep(3 * RACY_NS / 1e9)  # settled: one read is enough, unless it changes
    real_put = DiskStore.put
    edits = []

    def put_then_edit(self, kind, payload):
        oid = real_put(self, kind, payload)
        if payload == b"lr=0.1\n" and not edits:
            target.write_bytes(b"lr=0.2\n")  # a writer, right after our read
            edits.append(oid)
        return oid

    monkeypatch.setattr(DiskStore, "put", put_then_edit)
    result = repo.add(["params.txt"], cwd=repo.root)
    assert edits and result.added == ["params.txt"]
    entry = repo.read_index().get(b"params.txt")
    assert entry.id == sha256(b"lr=0.2\n")
    assert entry.stat is None or entry.stat.mtime_ns == os.lstat(target).st_mtime_ns


def test_add_smudges_a_file_that_changed_as_it_was_hashed(bare, run_cli):
    """A file whose last change is within RACY_NS of its hashing is staged
    without stat fields (FORMAT.md: smudged), so the next look reads
    it again: it may change again within the same timestamp tick."""
    import time
    from rnstore.index import Index
    write_files(bare, {"settled.txt": "old", "fresh.txt": "new"})
    old = time.time_ns() - 10**10
    os.utime(bare / "settled.txt", ns=(old, old))
    soon = time.time_ns() + 30 * 10**9  # changed "now" by the time add hashes it, however slow
    os.utime(bare / "fresh.txt", ns=(soon, soon))
    time.sleep(3 * 0.1)  # the ctime that utime just set settles too (RACY_NS is 0.1 s)
    ok(run_cli(["add", "."], cwd=bare))
    index = Index.load(bare / ".rnstore" / "index")
    assert index.get(b"fresh.txt").stat is None
    assert index.get(b"settled.txt").stat is not None
    raw = (bare / ".rnstore" / "index").read_bytes()
    count = int.from_bytes(raw[10:14], "little")
    modes = raw[34:34 + count]  # FORMAT.md: a mode byte per entry, 0x80 set when smudged
    paths = [e.path for e in index]
    assert modes[paths.index(b"fresh.txt")] == 0x81 and modes[paths.index(b"settled.txt")] == 0x01


def test_a_change_that_no_stat_shows_is_caught_by_a_second_read(tmp_path, monkeypatch):
    """A write under way as add reads a file changes its bytes without
    changing its stat (the times were set when the write began). Writes
    through a shared mapping to pages already dirty do the same, and that
    is how this test changes the file right after add's first read: add
    reads a file that changed just before it was read a second time, sees
    the bytes differ, and stages what the file holds now."""
    import mmap
    import time
    from rnstore.repo import Repository
    from rnstore.store import DiskStore
    repo = Repository.init(tmp_path / "ws", default_ignore=False)
    target = repo.root / "weights.bin"
    size = 4 * mmap.PAGESIZE
    target.write_bytes(b"a" * size)
    fd = os.open(target, os.O_RDWR)
    mapping = mmap.mmap(fd, size)
    try:
        mapping[:] = b"b" * size  # every page dirty: later writes to them set no times
        # "changed just now" however long add takes to get to it (a loaded machine)
        soon = time.time_ns() + 60 * 10**9
        os.utime(target, ns=(soon, soon))
        real_put = DiskStore.put
        edits = []

        def put_then_write_through_the_mapping(self, kind, payload):
            oid = real_put(self, kind, payload)
            if payload == b"b" * size and not edits:
                mapping[:] = b"c" * size
                edits.append(oid)
            return oid

        monkeypatch.setattr(DiskStore, "put", put_then_write_through_the_mapping)
        repo.add(["weights.bin"], cwd=repo.root)
    finally:
        mapping.close()
        os.close(fd)
    assert edits
    assert repo.read_index().get(b"weights.bin").id == sha256(b"c" * size)
