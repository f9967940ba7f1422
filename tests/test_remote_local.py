"""Remotes on a local path (file:// or a plain path: a mounted share), the
commands around them, and the pieces (layout, backend) on their own."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from helpers.remote import race, tree_bytes, workspace_with_snapshot
from helpers.cli import run_cli

from rnstore import Repository
from rnstore.errors import CorruptObjectError, CorruptStoreError, InvalidValueError
from rnstore.objects import MODE_TREE
from rnstore.remote import backend, layout, transfer
from rnstore.remote.backend import (RemoteError, RetryingBackend, mask_url,
                                    open_backend)
from rnstore.remote.remote import Remote


@pytest.mark.parametrize("form", ["file-url", "plain-path"])
def test_round_trip_through_a_local_remote(tmp_path, form):
    target = tmp_path / "share" / "team"
    url = f"file://{target}" if form == "file-url" else str(target)
    a = workspace_with_snapshot(tmp_path / "a", files=80, url=url)
    pushed = transfer.push(a, "origin")
    assert pushed.packs == 1 and pushed.objects > 80
    assert not [p for p in target.rglob("*") if p.name.startswith(".tmp-")]
    assert not list((target / "pushes").iterdir())
    clone = Repository.clone(url, tmp_path / "b")
    assert clone.objects == pushed.objects
    assert tree_bytes(tmp_path / "b") == tree_bytes(tmp_path / "a")
    b = Repository.open(tmp_path / "b")
    assert b.fsck().ok
    assert transfer.push(a, "origin").objects == 0


def test_cli_remote_add_list_remove_and_remote_branches_as_revisions(tmp_path):
    a = workspace_with_snapshot(tmp_path / "a")
    share = tmp_path / "share"
    assert run_cli(["remote", "add", "origin", str(share)], tmp_path / "a").returncode == 0
    again = run_cli(["remote", "add", "origin", str(share)], tmp_path / "a")
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = run_cli(["remote", "add", "-bad", str(share)], tmp_path / "a")
    assert bad.returncode == 2
    result = run_cli(["push", "--json", "origin"], tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["refs"][0]["status"] == "created"
    b = workspace_with_snapshot(tmp_path / "b", seed=1)
    transfer.add_remote(b, "share", str(share))
    result = run_cli(["fetch", "share"], tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert "refs/remotes/share/main" in result.out
    log = run_cli(["log", "--oneline", "share/main"], tmp_path / "b")
    assert log.returncode == 0 and a.refs.resolve("refs/heads/main")[:12] in log.out
    assert run_cli(["remote"], tmp_path / "b").out == "share\n"
    assert run_cli(["remote", "remove", "share"], tmp_path / "b").returncode == 0
    assert run_cli(["remote"], tmp_path / "b").out == ""
    assert b.refs.resolve("refs/remotes/share/main") is None
    missing = run_cli(["push", "share"], tmp_path / "b")
    assert missing.returncode == 2 and "no remote named 'share'" in missing.stderr


def test_missing_backend_extra_is_exit_2_with_the_pip_command(tmp_path):
    pytest.importorskip("fsspec")
    workspace_with_snapshot(tmp_path / "a")
    for url, extra, package in [("gs://bucket/x", "gcs", "gcsfs"), ("az://container/x", "azure", "adlfs"),
                                ("sftp://me@127.0.0.1/x", "sftp", "sshfs")]:
        try:
            __import__(package)
            continue  # installed here: nothing to test for this one
        except ImportError:
            pass
        result = run_cli(["remote", "add", "x", url], tmp_path / "a")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"error: this remote needs the Python package '{package}', which is not installed",
            f"hint: install it: pip install 'rnstore[{extra}]'"]


def test_fetch_of_a_folder_that_is_no_remote(tmp_path):
    a = workspace_with_snapshot(tmp_path / "a", url=str(tmp_path / "nothing"))
    with pytest.raises(RemoteError, match="holds no rnstore remote"):
        transfer.fetch(a, "origin")
    result = run_cli(["clone", str(tmp_path / "nothing"), "c"], tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("error: ")
    assert not (tmp_path / "c").exists()


def test_clone_inside_a_workspace_needs_nested(tmp_path):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    transfer.push(a, "origin")
    refused = run_cli(["clone", url, "inner"], tmp_path / "a")
    assert refused.returncode == 2 and "is inside the workspace" in refused.stderr
    assert "--nested" in refused.stderr and not (tmp_path / "a" / "inner").exists()
    nested = run_cli(["clone", "-q", "--nested", url, "inner"], tmp_path / "a")
    assert nested.returncode == 0, nested.stderr
    assert (tmp_path / "a" / "inner" / ".rnstore").is_dir()


def test_quiet_transfers_print_only_refused_refs(tmp_path):
    share = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=share)
    quiet = run_cli(["push", "-q", "origin"], tmp_path / "a")
    assert quiet.returncode == 0 and quiet.out == "" and quiet.stderr == ""
    assert run_cli(["push", "origin"], tmp_path / "a").out.startswith("up-to-date")
    clone = run_cli(["clone", "-q", share, str(tmp_path / "b")], tmp_path)
    assert clone.returncode == 0 and clone.out == "" and clone.stderr == ""
    b = workspace_with_snapshot(tmp_path / "c", seed=3, url=share)   # another history: refused
    refused = run_cli(["push", "-q", "origin"], tmp_path / "c")
    assert refused.returncode == 1 and refused.out.startswith("refused") and "error:" in refused.stderr
    assert b.refs.resolve("refs/heads/main") != a.refs.resolve("refs/heads/main")


def test_fetch_selected_refs_and_tags(tmp_path):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    a.tag("v1")
    (tmp_path / "a" / "x.txt").write_bytes(b"x")
    a.snapshot("second")
    transfer.push(a, "origin", ["main", "v1"])
    b = workspace_with_snapshot(tmp_path / "b", seed=3, url=url)
    b.tag("v1")  # another snapshot under the same name: kept, reported
    result = transfer.fetch(b, "origin", ["v1"])
    assert [(r.ref, r.status) for r in result.refs] == [("refs/tags/v1", "refused")]
    assert b.refs.resolve("refs/tags/v1") != a.refs.resolve("refs/tags/v1")
    assert b.refs.resolve("refs/remotes/origin/main") is None
    transfer.fetch(b, "origin")
    assert b.refs.resolve("refs/remotes/origin/main") == a.refs.resolve("refs/heads/main")


def test_corrupt_frame_in_a_local_remote_stores_nothing(tmp_path):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    transfer.push(a, "origin")
    (pack,) = (tmp_path / "share" / "packs").iterdir()
    data = bytearray(pack.read_bytes())
    data[len(data) // 4] ^= 0x55
    pack.write_bytes(bytes(data))
    b = Repository.init(tmp_path / "b", default_ignore=False)
    transfer.add_remote(b, "origin", url)
    with pytest.raises(CorruptObjectError, match="remote object .* is corrupt"):
        transfer.fetch(b, "origin")
    for oid in b.store:
        b.store.verify(oid)
    assert b.refs.list() == {}


def test_pull_on_an_unborn_branch_and_a_detached_head(tmp_path):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", url=url)
    transfer.push(a, "origin")
    b = Repository.init(tmp_path / "b", default_ignore=False)
    transfer.add_remote(b, "origin", url)
    result = transfer.pull(b, "origin")
    assert result.fast_forwarded == a.refs.resolve("refs/heads/main")
    assert tree_bytes(tmp_path / "b") == tree_bytes(tmp_path / "a")
    b.checkout(result.fast_forwarded)  # detach
    with pytest.raises(InvalidValueError, match="detached"):
        transfer.pull(b, "origin")


# -- the pieces -------------------------------------------------------------------------------

def test_mask_url_hides_passwords_only():
    assert mask_url("sftp://me:hunter2@host/path") == "sftp://me:***@host/path"
    assert mask_url("sftp://me@host/path") == "sftp://me@host/path"
    assert mask_url("s3://bucket/prefix") == "s3://bucket/prefix"
    assert mask_url("/plain/path") == "/plain/path"


def test_index_encoding_round_trips_and_detects_damage():
    entries = [(bytes([i]) * 32, 9 + i * 10, 10, kind) for i, kind in enumerate(["blob", "tree", "snapshot"])]
    data = layout.encode_index(entries)
    decoded = layout.decode_index(data, "p" * 64)
    assert decoded[(b"\x01" * 32).hex()] == layout.Location("p" * 64, 19, 10, "tree")
    damaged = bytearray(data)
    damaged[20] ^= 1
    with pytest.raises(CorruptStoreError):
        layout.decode_index(bytes(damaged), "p" * 64)


def test_ref_keys():
    key = layout.ref_version_key("refs/heads/a/b", 3)
    assert key == "refs/heads/a/b/00000000000000000003"
    assert layout.parse_ref_key(key) == ("refs/heads/a/b", 3)
    assert layout.parse_ref_key("refs/heads/a/b") is None


def test_exclusive_create_on_a_local_path_has_one_winner(tmp_path):
    backend = open_backend(str(tmp_path / "r"))
    wins = race(8, lambda i: backend.create("refs/heads/x/00000000000000000001", b"%d" % i))
    assert len(wins) == 1
    assert backend.get("refs/heads/x/00000000000000000001") == b"%d" % wins[0]
    assert not [n for n in os.listdir(tmp_path / "r" / "refs" / "heads" / "x") if n.startswith(".tmp")]


class FlakyThenFine:
    """A backend whose first `failures` calls fail like a throttled S3."""

    def __init__(self, failures, error):
        self.failures, self.error, self.calls = failures, error, 0

    def get(self, key):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return b"ok"


def test_retries_transient_errors_with_backoff_and_gives_up_in_bounded_time():
    slept = []
    flaky = FlakyThenFine(3, OSError(16, "SlowDown: please reduce your request rate"))  # EBUSY
    backend = RetryingBackend(flaky, "s3://b/p", retry_for=60, sleep=slept.append)
    assert backend.get("k") == b"ok" and flaky.calls == 4 and len(slept) == 3
    assert slept[0] < slept[2]
    never = RetryingBackend(FlakyThenFine(10**9, ConnectionRefusedError(111, "refused")), "s3://b/p",
                            retry_for=0.5)
    with pytest.raises(RemoteError, match="gave up after 0.5 s"):
        never.get("k")
    answer = RetryingBackend(FlakyThenFine(1, FileNotFoundError("k")), "s3://b/p", retry_for=60,
                             sleep=slept.append)
    with pytest.raises(FileNotFoundError):
        answer.get("k")  # an answer, not a failure: no retry
    denied = RetryingBackend(FlakyThenFine(1, PermissionError("Access Denied")), "s3://b/p", retry_for=60)
    with pytest.raises(RemoteError, match="access denied"):
        denied.get("k")


def test_a_ref_version_that_is_damaged_is_reported(tmp_path):
    remote = Remote(open_backend(str(tmp_path / "r")))
    remote.ensure()
    remote.backend.create("refs/heads/main/00000000000000000001", b"not json")
    with pytest.raises(CorruptStoreError, match="refs/heads/main/00000000000000000001"):
        remote.refs()


def test_a_large_file_travels_in_bounded_memory_and_is_verified(tmp_path, monkeypatch):
    import tracemalloc
    monkeypatch.setattr(transfer, "LARGE_FRAME", 1 << 20, raising=False)
    monkeypatch.setattr(backend, "STREAM_PIECE", 1 << 20)
    url = str(tmp_path / "share")
    Repository.init(tmp_path / "a", default_ignore=False).config.set("compression.large_level", "9", durable=False)
    repo = Repository.open(tmp_path / "a")  # a level the clone would not choose: its frame tells
    big = random_bytes(12 << 20, seed=5).hex().encode()  # compressible, so levels differ
    (tmp_path / "a" / "weights.bin").write_bytes(big)
    (tmp_path / "a" / "small.txt").write_bytes(b"small")
    repo.snapshot("big")
    transfer.add_remote(repo, "origin", url)
    tracemalloc.start()
    try:
        transfer.push(repo, "origin")
        _, pushing = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        Repository.clone(url, tmp_path / "b")
        _, cloning = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "b" / "weights.bin").read_bytes() == big
    assert pushing < 12 << 20 and cloning < 12 << 20, (pushing, cloning)  # the file is 24 MiB
    weights = repo.store.get_tree(repo.store.get_snapshot(repo.refs.resolve("refs/heads/main")).tree).get(
        b"weights.bin").id
    assert _loose_frame(Repository.open(tmp_path / "b"), weights) == _loose_frame(repo, weights), \
        "the fetched frame was compressed again, not kept"

    pack = max((tmp_path / "share" / "packs").iterdir(), key=lambda p: p.stat().st_size)  # the large file's
    with open(pack, "r+b") as fh:
        fh.seek(pack.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    c = Repository.init(tmp_path / "c", default_ignore=False)
    transfer.add_remote(c, "origin", url)
    with pytest.raises(CorruptObjectError, match="corrupt"):
        transfer.fetch(c, "origin")
    head = repo.refs.resolve("refs/heads/main")
    weights = repo.store.get_tree(repo.store.get_snapshot(head).tree).get(b"weights.bin")
    assert not c.store.has(weights.id)
    # the frame was written into the store's own temporary file, then refused: none is left
    assert not [p.name for p in c.store.root.rglob(".tmp-*")]


def _loose_frame(repo, oid: str) -> bytes:
    return (repo.store.root / oid[:2] / oid[2:]).read_bytes()


def random_bytes(size: int, seed: int) -> bytes:
    import random
    return random.Random(seed).randbytes(size)


def _fetch_into_new_store(tmp_path, url, name="b"):
    """A fetch of every ref into an empty store (what a clone does); the
    repository, and the error it raised."""
    b = Repository.init(tmp_path / name, default_ignore=False)
    transfer.add_remote(b, "origin", url)
    try:
        transfer.fetch(b, "origin")
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return b, exc
    return b, None


def _store_files(repo) -> list[str]:
    """Every file in the store's folder (packs, loose objects, temporary files)."""
    root = repo.store.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and p.name != "rnstore-store")


def test_a_clone_reads_each_pack_once_and_stores_it_as_one_pack(tmp_path, monkeypatch):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", files=120, url=url)
    pushed = transfer.push(a, "origin")
    read = []
    real = RetryingBackend.get_range
    monkeypatch.setattr(RetryingBackend, "get_range",
                        lambda self, key, start, end: read.append(end - start) or real(self, key, start, end))
    monkeypatch.setattr(transfer, "READ_LIMIT", 4096)  # many ranges, stored as they arrive
    b, error = _fetch_into_new_store(tmp_path, url)
    assert error is None
    (pack,) = (tmp_path / "share" / "packs").iterdir()
    assert sum(read) < pack.stat().st_size  # frames read once, never the index or trailer
    assert len(read) > 5
    assert [p.split("/")[0] for p in _store_files(b)] == ["pack"]
    assert sorted(b.store) == sorted(a.store) and len(list(b.store)) == pushed.objects
    assert b.fsck().ok


def test_a_clone_moves_the_blobs_its_fetch_verified_into_place(tmp_path, monkeypatch):
    """A clone writes each blob its fetch verified once, and its checkout
    moves those files into place instead of reading the store again: same
    files, modes and links as the pusher's, a blob named by two paths
    written twice (never hard-linked), nothing left beside the index."""
    from rnstore import checkout
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", files=40, url=url)
    (tmp_path / "a" / "twin-1.txt").write_bytes(b"same bytes\n")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "twin-2.txt").write_bytes(b"same bytes\n")
    (tmp_path / "a" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (tmp_path / "a" / "run.sh").chmod(0o755)
    (tmp_path / "a" / "empty").write_bytes(b"")
    os.symlink("run.sh", tmp_path / "a" / "link")
    a.snapshot("more")
    transfer.push(a, "origin")
    moved, from_store = [], []
    real_move, real_whole = checkout.FetchedBlobs.move, checkout.whole_blob
    monkeypatch.setattr(checkout.FetchedBlobs, "move", lambda self, entry, *rest: moved.append(
        entry.path) or real_move(self, entry, *rest))
    monkeypatch.setattr(checkout, "whole_blob", lambda store, entry: from_store.append(
        entry.path) or real_whole(store, entry))
    Repository.clone(url, tmp_path / "b")
    assert tree_bytes(tmp_path / "b") == tree_bytes(tmp_path / "a")
    assert os.readlink(tmp_path / "b" / "link") == "run.sh"
    assert (tmp_path / "b" / "run.sh").stat().st_mode & 0o777 == (tmp_path / "a" / "run.sh").stat().st_mode & 0o777
    assert (tmp_path / "b" / "twin-1.txt").stat().st_ino != (tmp_path / "b" / "sub" / "twin-2.txt").stat().st_ino
    assert len(moved) == len(tree_bytes(tmp_path / "a")) - 1  # every file but the link
    assert len(from_store) == 1 and from_store[0] in (b"twin-1.txt", b"sub/twin-2.txt")  # the second twin
    assert not [p.name for p in (tmp_path / "b" / ".rnstore").iterdir() if p.name.startswith(".tmp")]
    b = Repository.open(tmp_path / "b")
    assert b.fsck().ok
    # the index holds each file's own stat key, as the clone's checkout kept it
    index = b.read_index()
    assert len(index) == len(tree_bytes(tmp_path / "a"))
    for entry in index:
        st = os.lstat(os.path.join(os.fsencode(tmp_path / "b"), entry.path))
        assert entry.stat == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino), entry.path
    status = b.status()
    assert not status.staged and not status.unstaged and not status.untracked


def test_a_corrupt_frame_late_in_a_clone_stores_nothing_of_what_came_before(tmp_path, monkeypatch):
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", files=120, url=url)
    transfer.push(a, "origin")
    (pack,) = (tmp_path / "share" / "packs").iterdir()
    index = layout.decode_index((tmp_path / "share" / "index" / (pack.stem + ".idx")).read_bytes(),
                                pack.stem)
    last = max(index.values(), key=lambda location: location.offset)
    data = bytearray(pack.read_bytes())
    data[last.offset + last.length // 2] ^= 0x55  # in the last frame: every other range comes first
    pack.write_bytes(bytes(data))
    monkeypatch.setattr(transfer, "READ_LIMIT", 4096)
    b, error = _fetch_into_new_store(tmp_path, url)
    assert isinstance(error, CorruptObjectError) and "remote object" in str(error)
    assert list(b.store) == [] and _store_files(b) == []  # no pack, no temporary file
    assert b.refs.list() == {}
    with pytest.raises(CorruptObjectError):
        Repository.clone(url, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def _pushed_with_its_index(tmp_path):
    """A workspace `a` pushed to a share: (a, url, the share's one index
    file, its entries, a's head)."""
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", files=30, url=url)
    transfer.push(a, "origin")
    (index_file,) = (tmp_path / "share" / "index").iterdir()
    entries = layout.decode_index(index_file.read_bytes(), index_file.stem)
    return a, url, index_file, entries, a.refs.resolve("refs/heads/main")


@pytest.mark.parametrize("what", ["blob", "tree"])
def test_a_clone_of_a_remote_missing_an_object_its_ref_needs_records_no_ref(tmp_path, what):
    a, url, index_file, entries, head = _pushed_with_its_index(tmp_path)
    subtree = a.store.get_tree(a.store.get_snapshot(head).tree).entries[0].id
    missing = subtree if what == "tree" else next(e.id for e in a.store.get_tree(subtree).entries)
    kept = sorted((bytes.fromhex(oid), loc.offset, loc.length, loc.kind)
                  for oid, loc in entries.items() if oid != missing)
    index_file.write_bytes(layout.encode_index(kept))
    b, error = _fetch_into_new_store(tmp_path, url)
    assert isinstance(error, RemoteError) and f"missing object {missing} " in str(error)
    assert b.refs.list() == {}


def test_a_clone_decodes_the_trees_its_fetch_verified_and_reads_none_back(tmp_path, monkeypatch):
    """The closure check and the checkout's plan decode the trees from the
    payloads the fetch verified: the store is never asked for a tree."""
    from rnstore.store import ObjectStore
    url = str(tmp_path / "share")
    a = workspace_with_snapshot(tmp_path / "a", files=60, url=url)
    transfer.push(a, "origin")
    read = []
    real = ObjectStore.get_tree
    monkeypatch.setattr(ObjectStore, "get_tree", lambda self, oid: read.append(oid) or real(self, oid))
    Repository.clone(url, tmp_path / "b")
    assert read == []
    assert tree_bytes(tmp_path / "b") == tree_bytes(tmp_path / "a")
    assert Repository.open(tmp_path / "b").fsck().ok


def test_a_clone_reads_a_tree_the_remote_index_calls_a_blob_from_the_store(tmp_path):
    """A tree whose bytes were first pushed as a file is a blob in the
    remote's index: its payload is not kept, and the clone reads it from
    the store instead, for the closure check and for the checkout."""
    a, url, index_file, entries, head = _pushed_with_its_index(tmp_path)
    subtree = next(e.id for e in a.store.get_tree(a.store.get_snapshot(head).tree).entries
                   if e.mode == MODE_TREE)
    assert entries[subtree].kind == "tree"
    index_file.write_bytes(layout.encode_index(sorted(
        (bytes.fromhex(oid), loc.offset, loc.length, "blob" if oid == subtree else loc.kind)
        for oid, loc in entries.items())))
    Repository.clone(url, tmp_path / "b")
    assert tree_bytes(tmp_path / "b") == tree_bytes(tmp_path / "a")
    assert Repository.open(tmp_path / "b").fsck().ok


def test_verified_frames_from_several_threads_make_one_pack_or_nothing(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from rnstore import codec
    from rnstore.store import DiskStore, MemoryStore
    frames = {}
    for n in range(200):
        payload = b"object %d " % n * (n + 1)
        frames[__import__("hashlib").sha256(payload).hexdigest()] = codec.compress("blob", payload, 3)
    items = sorted(frames.items())
    runs = [items[i:i + 7] for i in range(0, len(items), 7)]
    for store in (DiskStore(tmp_path / "objects"), MemoryStore()):
        with store.verified_pack() as add, ThreadPoolExecutor(4) as pool:
            list(pool.map(add, [[(oid, memoryview(frame)) for oid, frame in run] for run in runs]
                          + [runs[0]]))  # a run twice: stored once
        assert sorted(store) == sorted(frames)
        for oid in frames:
            store.verify(oid)
    assert len(list((tmp_path / "objects" / "pack").iterdir())) == 1
    failing = DiskStore(tmp_path / "other")
    with pytest.raises(RuntimeError):
        with failing.verified_pack() as add:
            add(runs[0])
            raise RuntimeError("a later frame was corrupt")
    assert list(failing) == [] and not [p for p in (tmp_path / "other").rglob("*") if p.is_file()]


def test_a_push_does_not_recreate_records_the_remotes_retention_removed(tmp_path):
    from helpers.remote import write_files
    from rnstore.refs import HEADS
    from rnstore.remote import collect
    root, url = tmp_path / "a", str(tmp_path / "remote")
    repo = Repository.init(root, default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    ids = []
    for i in range(3):
        for old in root.glob("d*"):
            shutil.rmtree(old)
        write_files(root, 3, seed=i, prefix=f"s{i}_")
        ids.append(repo.snapshot(f"run {i}").id)
        transfer.push(repo, "origin")
    collect.forget_remote(repo, "origin", keep_last=1)
    collect.gc_remote(repo, "origin", prune="now")
    remote = transfer.open_remote(repo, "origin")
    assert remote.record_ids() == {ids[2]}
    # a branch from a forgotten snapshot, pushed from the machine that still holds its history
    repo.refs.update(HEADS + "feature", ids[1], None)
    repo.checkout("feature")
    (root / "new.txt").write_text("feature work")
    feature = repo.snapshot("feature").id
    transfer.push(repo, "origin", ["feature"])
    assert remote.record_ids() == {ids[2], feature}
    clone = tmp_path / "b"
    Repository.clone(url, clone)
    cloned = Repository.open(clone)
    cloned.checkout("origin/feature")
    assert (clone / "new.txt").read_text() == "feature work" and cloned.fsck().ok
    # naming a forgotten snapshot brings it back: the user asked for it
    repo.tag("again", ids[0])
    transfer.push(repo, "origin", ["again"])
    assert remote.record_ids() == {ids[2], feature, ids[0]}


def _rewrite_remote_index(remote_dir, change) -> None:
    """Apply `change` to the first entry of each kind in the remote's one
    index, signed again as a hostile writer would."""
    import hashlib
    import struct
    entry = struct.Struct(">32sQIc")
    index = next((remote_dir / "index").glob("*.idx"))
    body = index.read_bytes()[len(layout.INDEX_MAGIC):-32]
    entries = [entry.unpack_from(body, at) for at in range(0, len(body), entry.size)]
    first = {}
    for number, item in enumerate(entries):
        first.setdefault(item[3], number)
    for number in first.values():
        entries[number] = change(*entries[number])
    data = layout.INDEX_MAGIC + b"".join(entry.pack(*item) for item in entries)
    index.write_bytes(data + hashlib.sha256(data).digest())


@pytest.mark.parametrize("damage, message", [
    ("past the end", "past the pack's end"),
    ("far past the end", "is damaged: it places"),
    ("empty", "is damaged: it places"),
])
def test_a_hostile_index_is_refused_clearly_and_stores_nothing(tmp_path, damage, message):
    url = tmp_path / "remote"
    repo = workspace_with_snapshot(tmp_path / "a", url=str(url))
    transfer.push(repo, "origin")
    size = next((url / "packs").glob("*.pack")).stat().st_size
    _rewrite_remote_index(url, {
        "past the end": lambda raw, offset, length, kind: (raw, size - length // 2, length, kind),
        "far past the end": lambda raw, offset, length, kind: (raw, 1 << 63, length, kind),
        "empty": lambda raw, offset, length, kind: (raw, offset, 0, kind),
    }[damage])
    clone = run_cli(["clone", str(url), str(tmp_path / "b")], tmp_path)
    assert clone.returncode == 1 and message in clone.stderr, clone.stderr
    assert clone.stderr.startswith("error: ") and "Traceback" not in clone.stderr
    assert not (tmp_path / "b").exists()
    other = Repository.init(tmp_path / "c", default_ignore=False)
    transfer.add_remote(other, "origin", str(url))
    with pytest.raises((CorruptObjectError, CorruptStoreError), match=message):
        transfer.fetch(other, "origin", ["main"])
    assert list(other.store) == [] and other.refs.list("refs/remotes/") == {}


def test_remote_v_masks_a_password_inside_a_shown_option_value():
    """`-o endpoint_url=http://user:pw@host` was shown as given by `remote -v`
    (endpoint_url is a shown option); its password is masked now, as in
    the remote's own URL."""
    from rnstore.remote.settings import RemoteSettings
    settings = RemoteSettings("origin", "s3://me:hunter2@bucket/prefix",
                              {"endpoint_url": "http://minio:s3cr3t@10.0.0.5:9000", "region_name": "eu",
                               "secret": "TOPSECRET"})
    shown = settings.describe(verbose=True)
    assert "hunter2" not in shown and "s3cr3t" not in shown and "TOPSECRET" not in shown, shown
    assert "endpoint_url=http://minio:***@10.0.0.5:9000" in shown and "region_name=eu" in shown, shown


@pytest.mark.parametrize("url", ["ftp://host/x", "http://host/x", "zip://x", "memory://x", "github://o/r"])
def test_a_url_scheme_rnstore_does_not_support_is_refused_at_once(workspace, run_cli, url):
    """fsspec knows many more schemes than the remotes rnstore supports:
    `remote add` accepted `memory://x` and `http://...` (a push then failed
    with NotImplementedError), `zip://x` said "Is a directory", `ftp://`
    tried to connect. Each is bad input now, and nothing is recorded."""
    result = run_cli(["remote", "add", "origin", url], cwd=workspace)
    assert result.returncode == 2 and "unsupported remote URL scheme" in result.stderr, result
    assert result.stderr.count("error:") == 1 and not (workspace / ".rnstore" / "remotes.json").exists()
    clone = run_cli(["clone", url, str(workspace.parent / "clone")], cwd=workspace.parent)
    assert clone.returncode == 2 and "unsupported remote URL scheme" in clone.stderr, clone


def test_lean_service_models_are_the_cli_s_choice_only(tmp_path):
    """An S3 backend opened by the library leaves botocore as it is; once
    the CLI has asked for lean models, botocore decodes its S3 model into
    plain dicts (which keep the order). A fresh interpreter: the patch is
    process-wide, and botocore caches what it loaded."""
    import subprocess
    import sys
    script = """
import collections
from botocore import loaders
from rnstore.remote import backend
backend.open_backend("s3://some-bucket/library")
assert loaders.OrderedDict is collections.OrderedDict
backend.lean_service_models()
backend.open_backend("s3://some-bucket/cli")
assert loaders.OrderedDict is dict
model = loaders.Loader().load_service_model("s3", "service-2")
assert type(model) is dict and type(model["shapes"]) is dict
print("ok")
"""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
