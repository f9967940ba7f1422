"""Remote retention against the real S3 server on loopback: forget --remote,
gc --remote, push --delete, snapshots --remote, and gc beside pushers."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers.remote import SECRET, keys, tree_bytes, write_files
from helpers.cli import cli_env, run_cli

from rnstore import Repository
from rnstore.errors import CorruptStoreError
from rnstore.remote import collect, layout, transfer
from rnstore.remote.backend import open_backend
from rnstore.remote.remote import Remote


@pytest.fixture
def s3(s3_server):
    bucket = s3_server.new_bucket()
    return s3_server, bucket, f"s3://{bucket}/ci"


def cli(args, cwd, server, check=True):
    result = run_cli(args, cwd, env=server.env)
    assert SECRET not in result.out + result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


def replace_files(root: Path, seed: int, files: int = 20, size: int = 3000) -> None:
    for folder in root.glob("d*"):
        shutil.rmtree(folder)
    write_files(root, files, seed=seed, prefix=f"s{seed}_", size=size)


def pack_bytes(fs, bucket: str) -> int:
    return sum(fs.info(k)["size"] for k in keys(fs, bucket) if k.endswith(".pack"))


def test_gc_after_forgetting_half_frees_their_bytes_and_kept_tags_clone(tmp_path, s3):
    server, bucket, url = s3
    root = tmp_path / "a"
    repo = Repository.init(root, default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    contents = {}
    for i in range(6):
        replace_files(root, i)
        repo.snapshot(f"run {i}")
        repo.tag(f"run{i}")
        contents[f"run{i}"] = tree_bytes(root)
        transfer.push(repo, "origin", ["main", f"run{i}"])
    fs = server.client()
    before = pack_bytes(fs, bucket)
    listing = cli(["snapshots", "--remote", "origin"], root, server)
    assert len(listing.out.splitlines()) == 6 and "run 5" in listing.out.splitlines()[0]
    result = cli(["forget", "--remote", "origin", "--keep-last", "3"], root, server)
    assert result.out.count("forget") == 3
    cli(["push", "origin", "--delete", "run0", "run1", "run2"], root, server)
    dry = json.loads(cli(["gc", "--remote", "origin", "--prune", "now", "--dry-run", "--json"],
                         root, server).stdout)
    assert dry["deleted_packs"] >= 3 and pack_bytes(fs, bucket) == before
    stats = json.loads(cli(["gc", "--remote", "origin", "--prune", "now", "--json"], root, server).stdout)
    after = pack_bytes(fs, bucket)
    assert stats["freed_bytes"] == before - after
    assert after < before * 0.6  # three of six snapshots' files are gone
    assert not [k for k in keys(fs, bucket) if "/gc/" in k]
    clone = tmp_path / "b"
    Repository.clone(url, clone)
    cloned = Repository.open(clone)
    assert cloned.fsck().ok
    for tag in ("run3", "run4", "run5"):
        cloned.checkout(tag)
        assert tree_bytes(clone) == contents[tag]
    assert len(collect.remote_snapshots(repo, "origin")) == 3


_PUSHER = textwrap.dedent("""
    import shutil, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from helpers.remote import write_files
    from rnstore import Repository
    from rnstore.remote import collect, transfer
    root, me, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    repo = Repository.open(root)
    previous = None
    for n in range(rounds):
        # alternate between two contents: each push reuses the objects of
        # a snapshot forgotten (and maybe being collected) a moment ago
        for folder in root.glob("d*"):
            shutil.rmtree(folder)
        write_files(root, 8, seed=(n % 2) * 1000 + int(me[1:]), prefix=me, size=2000)
        (root / "round.txt").write_text(f"{{me}} {{n}}")
        snap = repo.snapshot(f"{{me}} {{n}}").id
        tag = f"{{me}}-{{n}}"
        repo.tag(tag)
        transfer.push(repo, "origin", [me, tag])
        if previous is not None:
            collect.delete_refs(repo, "origin", [previous[0]])
            collect.forget_remote(repo, "origin", [previous[1]])
        previous = (tag, snap)
    print(previous[0])
""")

_COLLECTOR = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from rnstore import Repository
    from rnstore.remote import collect
    repo = Repository.open(Path(sys.argv[1]))
    stop = Path(sys.argv[2])
    runs = deleted = 0
    parent = os.getppid()
    # until told, or until the test is gone (a killed run leaves no collector behind)
    while not stop.exists() and os.getppid() == parent:
        stats = collect.gc_remote(repo, "origin", prune="now")
        runs += 1
        deleted += stats.deleted_packs
    print(runs, deleted)
""")


def test_a_forgotten_parent_kept_in_a_live_pack_does_not_break_clone_or_fetch(tmp_path, s3):
    """gc keeps a pack whole when most of it is live, so a forgotten
    snapshot's own frame can outlive its files. A fetch follows a parent
    only when the remote keeps it live (a record or a ref), as gc's roots:
    the four-pushers race found this, made here without a race."""
    server, bucket, url = s3
    root = tmp_path / "a"
    repo = Repository.init(root, default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    replace_files(root, 1)
    first = repo.snapshot("first").id
    repo.tag("first")
    transfer.push(repo, "origin", ["first"])           # pack 1: first's files, tree, snapshot
    middle = repo.snapshot("middle", allow_empty=True).id   # first's tree: its files in pack 1
    replace_files(root, 3, size=20000)
    last = repo.snapshot("last").id
    transfer.push(repo, "origin", ["main"])             # pack 2: last's and middle's objects
    collect.forget_remote(repo, "origin", [first, middle])
    collect.delete_refs(repo, "origin", ["first"])
    stats = collect.gc_remote(repo, "origin", prune="now")
    assert stats.deleted_packs >= 1
    index = Remote(open_backend(url)).load_index()
    assert middle in index   # kept: it shares the mostly live pack with last
    clone = tmp_path / "b"
    Repository.clone(url, clone)
    cloned = Repository.open(clone)
    assert cloned.refs.resolve("refs/heads/main") == last
    assert tree_bytes(clone) == tree_bytes(root)
    assert cloned.fsck().ok
    assert [entry.id for entry in cloned.log()] == [last]   # history ends where the remote's does
    transfer.fetch(repo, "origin")                      # a store holding the parents fetches too


class _TrimmedAfterListing:
    """A real local remote's backend, where a pusher moves a ref and a
    collector trims its old version right after the first listing of
    refs: the interleaving the four-pushers race hit (a read of a version
    listed a moment before)."""

    def __init__(self, inner, remote: Remote, ref: str):
        self.inner, self.remote, self.ref, self.fired = inner, remote, ref, False

    def list(self, prefix):
        found = self.inner.list(prefix)
        if prefix == layout.REFS and not self.fired:
            self.fired = True
            old = self.remote.ref(self.ref)
            assert self.remote.swap_ref(old, None)
            self.remote.backend.delete(layout.ref_version_key(old.ref, old.version))
        return found

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_ref_version_trimmed_between_listing_and_reading_is_read_again(tmp_path):
    url = str(tmp_path / "share")
    repo = Repository.init(tmp_path / "a", default_ignore=False)
    write_files(tmp_path / "a", 3)
    repo.snapshot("one")
    repo.tag("t1")
    transfer.add_remote(repo, "origin", url)
    transfer.push(repo, "origin", ["main", "t1"])
    other = Remote(open_backend(url))
    racing = Remote(_TrimmedAfterListing(open_backend(url), other, "refs/tags/t1"))
    refs = racing.refs()
    assert refs["refs/tags/t1"].id is None and refs["refs/tags/t1"].version == 2
    assert refs["refs/heads/main"].id == repo.refs.resolve("refs/heads/main")


def test_a_damaged_gc_plan_stops_pushes_with_a_hint_until_gc_removes_it(tmp_path):
    url = str(tmp_path / "share")
    repo = Repository.init(tmp_path / "a", default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    replace_files(tmp_path / "a", 1)
    repo.snapshot("one")
    transfer.push(repo, "origin")
    remote = Remote(open_backend(url))
    remote.backend.put(layout.PLANS + "crashed.plan", b'{"packs": [')  # torn
    replace_files(tmp_path / "a", 2)
    repo.snapshot("two")
    with pytest.raises(CorruptStoreError, match="damaged") as refused:
        transfer.push(repo, "origin")
    assert any("gc --remote" in hint and "15 minutes" in hint for hint in refused.value.hints)
    assert collect._delete_stale_plans(remote, older_than=0) == 1  # what gc does once it is stale
    transfer.push(repo, "origin")


def test_a_second_collector_leaves_a_running_collectors_plan(tmp_path):
    """Two collectors at once (scheduled jobs overlap): the one that ends
    first must not remove the other's plan, or pushes starting then would
    reuse packs the other is about to delete."""
    url = str(tmp_path / "share")
    repo = Repository.init(tmp_path / "a", default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    replace_files(tmp_path / "a", 1)
    old = repo.snapshot("old").id
    transfer.push(repo, "origin")
    replace_files(tmp_path / "a", 2)
    repo.snapshot("new")
    transfer.push(repo, "origin")
    collect.forget_remote(repo, "origin", [old])
    remote = Remote(open_backend(url))
    remote.backend.put(layout.PUSHES + "a-push-in-progress", b"{}")  # both collectors wait for it
    seen = {}

    def second_collector_runs(seconds):
        if seen:
            return
        first_plan = set(remote.backend.list(layout.PLANS))
        assert len(first_plan) == 1
        stats = collect.gc_remote(repo, "origin", prune="now",
                                  wait_for=lambda s: remote.backend.delete(layout.PUSHES + "a-push-in-progress"))
        seen["second"] = stats.deleted_packs
        assert set(remote.backend.list(layout.PLANS)) == first_plan   # still there
        seen["condemned"] = remote.condemned_packs()                   # what a push now avoids

    first = collect.gc_remote(repo, "origin", prune="now", wait_for=second_collector_runs)
    assert seen["second"] >= 1 and seen["condemned"]
    assert first.deleted_packs == seen["second"]   # the same garbage, deleted twice: idempotent
    assert not remote.backend.list(layout.PLANS)   # each removed its own plan
    clone = tmp_path / "b"
    Repository.clone(url, clone)
    assert tree_bytes(clone) == tree_bytes(tmp_path / "a")


@pytest.mark.torture  # processes racing or killed: slow; CI runs them
def test_four_pushers_and_a_collector_lose_nothing(tmp_path, s3):
    server, bucket, url = s3
    base = tmp_path / "base"
    repo = Repository.init(base, default_ignore=False)
    write_files(base, 5)
    repo.snapshot("base")
    transfer.add_remote(repo, "origin", url)
    transfer.push(repo, "origin")
    pushers = []
    for i in range(4):
        path = tmp_path / f"p{i}"
        Repository.clone(url, path)
        clone = Repository.open(path)
        clone.refs.update(f"refs/heads/p{i}", clone.refs.resolve("refs/heads/main"), None)
        clone.refs.set_head_symbolic(f"refs/heads/p{i}")
        pushers.append(path)
    (tmp_path / "pusher.py").write_text(_PUSHER.format(tests=str(Path(__file__).parent)))
    (tmp_path / "collector.py").write_text(_COLLECTOR)
    stop = tmp_path / "stop"
    env = cli_env(server.env)
    collector = subprocess.Popen([sys.executable, str(tmp_path / "collector.py"), str(base), str(stop)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "pusher.py"), str(path), f"p{i}", "6"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i, path in enumerate(pushers)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    stop.touch()
    gc_out, gc_err = collector.communicate(timeout=300)
    assert collector.returncode == 0, gc_err.decode()[-3000:]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err.decode()[-3000:]
    runs, deleted = map(int, gc_out.split())
    assert runs >= 2 and deleted >= 1  # the collector really ran beside the pushers
    # every ref on the remote clones and verifies
    refs = {ref: state.id for ref, state in Remote(open_backend(url)).refs().items() if state.id}
    assert {f"refs/tags/p{i}-5" for i in range(4)} <= set(refs)
    clone = tmp_path / "check"
    Repository.clone(url, clone)
    checked = Repository.open(clone)
    assert checked.fsck().ok
    for ref, oid in refs.items():
        checked.checkout(oid)
        if ref.startswith("refs/tags/p"):
            me, n = ref[len("refs/tags/"):].split("-")
            assert (clone / "round.txt").read_text() == f"{me} {n}"


@pytest.mark.torture  # processes racing or killed: slow; CI runs them
def test_a_killed_gc_leaves_a_remote_that_pushes_clones_and_collects(tmp_path, s3):
    server, bucket, url = s3
    root = tmp_path / "a"
    repo = Repository.init(root, default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    rng = random.Random(18)
    for i in range(8):
        replace_files(root, i, files=30)
        repo.snapshot(f"run {i}")
        transfer.push(repo, "origin")
    collect.forget_remote(repo, "origin", keep_last=1)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "rnstore", "gc", "--remote", "origin", "--prune", "now"],
                                cwd=root, env=cli_env(server.env), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        replace_files(root, 100 + attempt, files=10)
        repo.snapshot(f"after kill {attempt}")
        transfer.push(repo, "origin")
        clone = tmp_path / f"c{attempt}"
        Repository.clone(url, clone)
        assert tree_bytes(clone) == tree_bytes(root)
    stats = collect.gc_remote(repo, "origin", prune="now")
    assert stats.spared_packs == 0
    fs = server.client()
    # the killed runs' plans stay until stale (a live collector's look the
    # same), then go
    left = [k for k in keys(fs, bucket) if "/gc/" in k]
    assert collect._delete_stale_plans(Remote(open_backend(url)), older_than=0) == len(left)
    assert not [k for k in keys(fs, bucket) if "/gc/" in k]
    Repository.clone(url, tmp_path / "final")
    assert tree_bytes(tmp_path / "final") == tree_bytes(root)
    assert Repository.open(tmp_path / "final").fsck().ok


def test_gc_deletes_nothing_when_an_index_or_a_snapshot_cannot_be_read(tmp_path, s3):
    server, bucket, url = s3
    root = tmp_path / "a"
    repo = Repository.init(root, default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    for i in range(3):
        replace_files(root, i)
        repo.snapshot(f"run {i}")
        transfer.push(repo, "origin")
    collect.forget_remote(repo, "origin", keep_last=1)
    fs = server.client()
    before = keys(fs, bucket)
    # an index this workspace has cached (it read it while pushing): gc must
    # still see that the remote's copy is damaged
    cached = {p.stem for p in (root / ".rnstore" / "remotes" / "origin" / "index").iterdir()}
    index = sorted(k for k in before if k.endswith(".idx") and Path(k).stem in cached)[0]
    good = fs.cat_file(index)
    fs.pipe_file(index, good[:-5] + b"xxxxx")
    result = cli(["gc", "--remote", "origin", "--prune", "now"], root, server, check=False)
    assert result.returncode == 1 and "damaged" in result.stderr
    assert set(keys(fs, bucket)) == set(before)
    fs.pipe_file(index, good)
    # a record whose snapshot no pack holds: refused as well
    fs.pipe_file(f"{bucket}/ci/{layout.SNAPSHOTS}{'ab' * 32}", b"")
    with pytest.raises(CorruptStoreError, match="nothing was deleted"):
        collect.gc_remote(repo, "origin", prune="now")
    assert set(keys(fs, bucket)) - set(before) == {f"{bucket}/ci/{layout.SNAPSHOTS}{'ab' * 32}"}


def test_gc_waits_for_a_push_that_started_before_its_plan(tmp_path, s3):
    """A push announced before the plan may reuse condemned objects: gc
    waits for it, then spares the packs its refs now need."""
    server, bucket, url = s3
    root = tmp_path / "a"
    repo = Repository.init(root, default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    replace_files(root, 1)
    first = repo.snapshot("one").id
    repo.tag("one")
    transfer.push(repo, "origin", ["one"])
    collect.delete_refs(repo, "origin", ["one"])
    collect.forget_remote(repo, "origin", [first])
    remote = Remote(open_backend(url))
    marker = remote.begin_push()  # a push that has read the indexes and reuses "one"'s objects
    waited = []

    def meanwhile(seconds):
        waited.append(seconds)
        if len(waited) == 2:  # the push finishes while gc waits: its ref names "one" again
            assert remote.swap_ref(remote.ref("refs/tags/again"), first)
            marker.end()

    stats = collect.gc_remote(repo, "origin", prune="now", wait_for=meanwhile)
    assert len(waited) >= 2 and stats.spared_packs == 1 and stats.deleted_packs == 0
    Repository.clone(url, tmp_path / "b")
    clone = Repository.open(tmp_path / "b")
    clone.checkout("again")
    assert clone.fsck().ok


def test_snapshots_remote_lists_the_others_and_names_a_damaged_record(tmp_path, s3):
    server, bucket, url = s3
    root = tmp_path / "a"
    repo = Repository.init(root, default_ignore=False)
    transfer.add_remote(repo, "origin", url)
    ids = []
    for i in range(3):
        replace_files(root, i, files=2)
        ids.append(repo.snapshot(f"run {i}").id)
        transfer.push(repo, "origin")
    server.client().pipe(f"{bucket}/ci/{layout.SNAPSHOTS}{ids[1]}", b"not a snapshot frame")
    listing = cli(["snapshots", "--remote", "origin"], root, server, check=False)
    assert listing.returncode == 1
    assert [line[:12] for line in listing.out.splitlines()] == [ids[2][:12], ids[0][:12]]
    assert f"warning: snapshot record {ids[1]} on origin cannot be read" in listing.stderr
    assert "Traceback" not in listing.stderr
    found = collect.remote_snapshots(repo, "origin")
    assert [s.id for s in found] == [ids[2], ids[0]] and [oid for oid, _ in found.damaged] == [ids[1]]
