"""A state machine over add / commit / tag / forget / checkout, with a
gc --prune now after every step: after every gc, everything reachable from a live snapshot, a tag, a branch,
HEAD or the index is still stored and verifies, and fsck is clean.

The check walks the roots itself (not through rnstore.gc), so a marking bug
cannot hide behind the same bug in the check."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from rnstore import plumbing
from rnstore.errors import NothingToCommitError
from rnstore.objects import MODE_TREE
from rnstore.reachability import collect_roots, mark_in_bulk, mark_reachable
from rnstore.repo import Repository

try:
    from rnstore.checkout import checkout as _checkout
except ImportError:  # written by another engineer; read-tree stands in for it
    _checkout = None

NAMES = ["a.txt", "b.txt", "dir/c.txt", "dir/sub/d.txt"]
CONTENTS = [b"", b"same\n", b"same\n" * 200, b"other\n", b"third version\n" * 30]
TAGS = ["t1", "t2"]


def expected_roots(repo: Repository) -> tuple[set[str], set[str]]:
    """(snapshot ids, blob ids) that must survive gc, read without rnstore.gc."""
    snapshots = set(repo.journal) | set(repo.refs.list().values())
    head = repo.refs.head()[1]
    if head is not None:
        snapshots.add(head)
    blobs = {e.id for e in repo.read_index() if e.mode != MODE_TREE}
    return snapshots, blobs


def _never(kind, oid, detail):
    raise AssertionError(detail)


def check_all_present(repo: Repository) -> None:
    snapshots, blobs = expected_roots(repo)
    store = repo.store
    seen: set[str] = set()
    stack = []
    for snapshot_id in snapshots:
        store.verify(snapshot_id)
        stack.append(store.get_snapshot(snapshot_id).tree)
    while stack:
        tree_id = stack.pop()
        if tree_id in seen:
            continue
        seen.add(tree_id)
        store.verify(tree_id)
        for entry in store.get_tree(tree_id).entries:
            if entry.mode == MODE_TREE:
                stack.append(entry.id)
            else:
                blobs.add(entry.id)
    for blob in blobs:
        store.verify(blob)


class SpaceMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="rnstore-space-"))
        Repository.init(self.tmp / "ws", default_ignore=False)
        Repository.open(self.tmp / "ws").config.set("core.fsync", "false", durable=False)
        self.repo = Repository.open(self.tmp / "ws")
        self._made: list[str] = []

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def snapshots(self) -> list[str]:
        """Snapshots that exist now (live or named), oldest first. Rules pick
        from lists by a drawn position, never by id: ids hold the clock, so
        drawing from them would make Hypothesis' data depend on the time."""
        snapshots, _ = expected_roots(self.repo)
        return [oid for oid in self.made() if oid in snapshots]

    def made(self) -> list[str]:
        return self._made

    def _commit(self, message: str) -> None:
        try:
            self._made.append(self.repo.commit(message, all=True).id)
        except NothingToCommitError:
            pass  # the files already held exactly that

    def live(self) -> list[str]:
        journal = set(self.repo.journal)
        return [oid for oid in self.made() if oid in journal]

    def _write(self, name: str, content: bytes) -> None:
        path = self.repo.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    @initialize(first=st.sampled_from(CONTENTS), second=st.sampled_from(CONTENTS))
    def two_snapshots(self, first, second):
        self._write("a.txt", first)
        self._commit("first")
        self._write("b.txt", second + b"!")  # always a change
        self._commit("second")

    @rule(name=st.sampled_from(NAMES), content=st.sampled_from(CONTENTS), number=st.integers(0, 9))
    def commit_change(self, name, content, number):
        self._write(name, content + b"%d" % number)
        self._commit("m")

    @rule(name=st.sampled_from(NAMES), content=st.sampled_from(CONTENTS))
    def stage_only(self, name, content):
        """Staged and not committed: the index is the only root of the blob."""
        self._write(name, content + b"staged")
        self.repo.add([self.repo.root / name], cwd=self.repo.root)

    @rule(name=st.sampled_from(NAMES))
    def delete_and_commit(self, name):
        (self.repo.root / name).unlink(missing_ok=True)
        self._commit("m")

    @precondition(lambda self: self.snapshots())
    @rule(tag=st.sampled_from(TAGS), which=st.integers(0, 20))
    def tag(self, tag, which):
        snapshots = self.snapshots()
        self.repo.tag(tag, snapshots[which % len(snapshots)], force=True)

    @precondition(lambda self: self.repo.refs.list("refs/tags/"))
    @rule(which=st.integers(0, 20))
    def untag(self, which):
        from rnstore.history import delete_tag
        refs = sorted(self.repo.refs.list("refs/tags/"))
        delete_tag(self.repo, refs[which % len(refs)][len("refs/tags/"):])

    @precondition(lambda self: list(self.repo.journal))
    @rule(which=st.integers(0, 20))
    def forget_one(self, which):
        live = self.live()
        self.repo.forget([live[which % len(live)]])

    @precondition(lambda self: list(self.repo.journal))
    @rule(n=st.integers(1, 3))
    def forget_keep_last(self, n):
        self.repo.forget(keep_last=n)

    @precondition(lambda self: self.snapshots())
    @rule(which=st.integers(0, 20))
    def checkout(self, which):
        snapshots = self.snapshots()
        target = snapshots[which % len(snapshots)]
        if _checkout is not None:
            _checkout(self.repo, target, force=True)
        else:
            plumbing.read_tree(self.repo, target)

    @precondition(lambda self: self.snapshots())
    @rule(which=st.integers(0, 20))
    def detach_head(self, which):
        snapshots = self.snapshots()
        self.repo.refs.update("HEAD", snapshots[which % len(snapshots)], follow_head=False)

    @invariant()
    def gc_keeps_every_root(self):
        """gc --prune now after every step: the step's garbage goes, every
        root's objects stay and verify, and fsck finds nothing wrong.
        threshold 0: every pack holding garbage is rewritten (the default
        leaves packs under 10% garbage whole, test_gc_threshold.py).
        Before it, gc's marking in bulk reaches what the Marker reaches."""
        scan = collect_roots(self.repo, _never, grace=0, now=0)
        bulk = mark_in_bulk(self.repo, scan.roots, save=False)
        assert bulk is not None
        assert bulk.kind == mark_reachable(self.repo, scan.roots, _never, by_unit=False, save=False).kind
        self.repo.gc(prune="now", threshold=0)
        check_all_present(self.repo)
        result = self.repo.fsck(quick=True)
        assert result.ok, result.problems
        assert not result.dangling, result.dangling


SpaceMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestSpaceMachine = SpaceMachine.TestCase
