"""trees.py: flat path listings to nested trees and back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from rnstore.errors import InvalidValueError
from rnstore.index import Index, IndexEntry, StatKey
from rnstore.objects import EMPTY_TREE_ID, MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, Tree, TreeEntry
from rnstore.store import MemoryStore
from rnstore.trees import BackgroundPuts, FlatEntry, build_tree, iter_tree, lookup, split_path


@pytest.fixture
def store():
    return MemoryStore()


def blob(store, data: bytes) -> str:
    return store.put("blob", data)


def flat(store, path: bytes, data: bytes, mode: str = MODE_FILE) -> FlatEntry:
    return FlatEntry(path, mode, blob(store, data), len(data))


def test_build_nested(store):
    entries = [flat(store, b"a/b/c.txt", b"ccc"), flat(store, b"a/d", b"dd", MODE_EXEC),
               flat(store, b"top", b"t"), FlatEntry(b"empty", MODE_TREE, EMPTY_TREE_ID, 0)]
    root = build_tree(store, entries)
    tree = store.get_tree(root)
    assert [(e.name, e.mode) for e in tree.entries] == [
        (b"a", MODE_TREE), (b"empty", MODE_TREE), (b"top", MODE_FILE)]
    assert tree.total_size == 6
    a = store.get_tree(tree.get(b"a").id)
    assert tree.get(b"a").size == 5
    assert a.get(b"d").mode == MODE_EXEC
    assert store.get_tree(a.get(b"b").id).get(b"c.txt").size == 3
    assert tree.get(b"empty").id == EMPTY_TREE_ID


def test_build_empty(store):
    assert build_tree(store, []) == EMPTY_TREE_ID
    assert store.get_tree(EMPTY_TREE_ID) == Tree()


def test_build_is_order_independent(store):
    entries = [flat(store, p, p) for p in (b"x/1", b"x/2", b"y", b"a.txt", b"a/z", b"x/y/z")]
    ids = {build_tree(store, order) for order in (entries, entries[::-1], sorted(entries))}
    assert len(ids) == 1


@pytest.mark.parametrize("path", [b"", b"/abs", b"a//b", b"a/", b"../x", b"a/../../b",
                                  b"a/./b", b".", b"..", b"a/..", b"nul\0byte"])
def test_build_refuses_escaping_paths(store, path):
    with pytest.raises(InvalidValueError):
        build_tree(store, [FlatEntry(path, MODE_FILE, blob(store, b"x"), 1)])


def test_build_refuses_file_and_folder_at_one_path(store):
    x = blob(store, b"x")
    for entries in ([FlatEntry(b"a", MODE_FILE, x, 1), FlatEntry(b"a/b", MODE_FILE, x, 1)],
                    [FlatEntry(b"a/b", MODE_FILE, x, 1), FlatEntry(b"a", MODE_FILE, x, 1)],
                    [FlatEntry(b"a", MODE_FILE, x, 1), FlatEntry(b"a", MODE_TREE, EMPTY_TREE_ID, 0)],
                    [FlatEntry(b"a", MODE_TREE, EMPTY_TREE_ID, 0), FlatEntry(b"a", MODE_FILE, x, 1)]):
        with pytest.raises(InvalidValueError):
            build_tree(store, entries)


def test_empty_folder_entry_with_children_is_just_a_folder(store):
    x = blob(store, b"x")
    with_marker = build_tree(store, [FlatEntry(b"d", MODE_TREE, EMPTY_TREE_ID, 0),
                                     FlatEntry(b"d/f", MODE_FILE, x, 1)])
    assert with_marker == build_tree(store, [FlatEntry(b"d/f", MODE_FILE, x, 1)])


def test_split_path():
    assert split_path(b"a/b/c") == [b"a", b"b", b"c"]
    with pytest.raises(InvalidValueError):
        split_path(b"a/../b")


def test_iter_tree_recursive_lists_leaves_in_path_order(store):
    """'a.txt' < 'a/x' as paths ('.' < '/'), though the tree 'a' sorts
    before the name 'a.txt'; empty folders are leaves named without '/'."""
    entries = [flat(store, b"a/x", b"1"), flat(store, b"a.txt", b"2"), flat(store, b"a-b", b"3"),
               flat(store, b"b/c/d", b"4"), flat(store, b"b/c.d", b"5"),
               FlatEntry(b"e", MODE_TREE, EMPTY_TREE_ID, 0), flat(store, b"e.txt", b"6"),
               flat(store, b"f", b"7", MODE_LINK)]
    root = build_tree(store, entries)
    listed = list(iter_tree(store, root))
    assert [e.path for e in listed] == sorted(e.path for e in entries)
    assert sorted(listed) == sorted(entries)


def test_iter_tree_one_level(store):
    root = build_tree(store, [flat(store, b"a/x", b"1"), flat(store, b"a.txt", b"2")])
    listed = list(iter_tree(store, root, recursive=False))
    assert [(e.path, e.mode) for e in listed] == [(b"a", MODE_TREE), (b"a.txt", MODE_FILE)]
    assert listed[0].size == 1


def test_iter_tree_prefix(store):
    root = build_tree(store, [flat(store, b"a/x", b"1")])
    assert [e.path for e in iter_tree(store, root, b"top/")] == [b"top/a/x"]


def test_lookup(store):
    root = build_tree(store, [flat(store, b"a/b/c", b"ccc"), flat(store, b"f", b"ff")])
    assert lookup(store, root, b"a/b/c").size == 3
    assert lookup(store, root, b"a/b").mode == MODE_TREE
    assert lookup(store, root, b"/a/b/") == lookup(store, root, b"a/b")
    assert lookup(store, root, b"") == TreeEntry(b"", MODE_TREE, root, 5)
    assert lookup(store, root, b"a/nope") is None
    assert lookup(store, root, b"f/below-a-file") is None
    with pytest.raises(InvalidValueError):
        lookup(store, root, b"a/../f")


# -- folders the index already knows (cache-tree) ----------------------------------------

FOLDERS = [b"", b"a", b"a/b", b"a/b/c", b"d"]
LEAVES = [folder + b"/" + name if folder else name for folder in FOLDERS for name in (b"x", b"y")]
operations = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from(LEAVES), st.binary(max_size=3),
              st.sampled_from([MODE_FILE, MODE_EXEC, MODE_LINK])),
    st.tuples(st.just("touch"), st.sampled_from(LEAVES)),  # a new stat, same content
    st.tuples(st.just("empty"), st.sampled_from([f for f in FOLDERS if f])),
    st.tuples(st.just("remove"), st.sampled_from(LEAVES + FOLDERS[1:])),
    st.tuples(st.just("commit"))), max_size=40)


def stage_op(store, index: Index, op: tuple, stamp: int) -> bool:
    """Apply one of `operations` to `index`; True for "commit" (the caller's)."""
    if op[0] == "write":
        _, path, data, mode = op
        index.set(IndexEntry(path, mode, blob(store, data), len(data)))
    elif op[0] == "touch" and index.get(op[1]) is not None:
        index.set(index.get(op[1])._replace(stat=StatKey(1, 2, 3, stamp)))
    elif op[0] == "empty":
        index.set(IndexEntry(op[1], MODE_TREE, EMPTY_TREE_ID, 0))
    elif op[0] == "remove":
        index.remove(op[1])
    return op[0] == "commit"


@settings(max_examples=300, deadline=None)
@given(operations)
def test_known_folders_build_what_a_fresh_build_does(ops):
    """Whatever was staged since, a build that reuses the index's folder
    ids gives the id a build from nothing gives, and every tree it names is
    in the store."""
    store = MemoryStore()
    index = Index()
    base = None
    for op in ops:
        if stage_op(store, index, op, len(ops)):
            base = build_tree(store, index.entries.values(), base=base, known=index.trees)
            assert base == build_tree(MemoryStore(), index.entries.values())
            assert sorted(iter_tree(store, base)) == sorted(
                iter_tree(store, build_tree(store, index.entries.values())))
            index = Index.decode(index.encode())  # as the next command reads it


def test_a_known_folder_that_base_lacks_is_stored(store):
    """Folder ids in the index are no proof that the trees are stored: one
    that HEAD's tree does not hold is encoded and stored again."""
    index = Index([IndexEntry(b"a/f", MODE_FILE, blob(store, b"f"), 1)])
    root = build_tree(MemoryStore(), index.entries.values(), known=index.trees)  # another store
    assert set(index.trees) == {b"", b"a"}
    assert build_tree(store, index.entries.values(), base=None, known=index.trees) == root
    assert [e.path for e in iter_tree(store, root)] == [b"a/f"]


def test_a_wrong_folder_id_is_never_written_into_a_tree(store):
    """Folder ids must be exact; if one were wrong (a bug), a build that
    checks it against its entries rebuilds everything from nothing."""
    entries = [FlatEntry(b"a/b/f", MODE_FILE, blob(store, b"f"), 1), flat(store, b"top", b"t")]
    right = build_tree(MemoryStore(), entries)
    wrong = {b"": ("e" * 64, 2), b"a": ("e" * 64, 1), b"a/b": ("e" * 64, 1)}
    assert build_tree(store, entries, known=wrong) == right
    assert wrong[b""][0] == right
    assert [e.path for e in iter_tree(store, right)] == [b"a/b/f", b"top"]


def test_a_wrong_folder_id_beside_a_stale_one_rebuilds_from_nothing(store):
    """Base {a/x, b/y}; b/y has changed since. The known ids say `a` is
    something bogus and `b` is still base's b. Checking `a` against its
    entries shows the ids cannot be trusted: the whole tree is encoded
    again, so the stale id of `b` never reaches the root tree."""
    base_entries = [flat(store, b"a/x", b"x"), flat(store, b"b/y", b"y")]
    base = build_tree(store, base_entries)
    base_b = store.get_tree(base).get(b"b")
    entries = [base_entries[0], flat(store, b"b/y", b"y changed")]
    right = build_tree(MemoryStore(), entries)
    assert right != base
    known = {b"a": ("e" * 64, 1), b"b": (base_b.id, base_b.size)}
    assert build_tree(store, entries, base=base, known=known) == right
    assert known[b""][0] == right and known[b"b"][0] == store.get_tree(right).get(b"b").id
    assert [(e.path, e.id) for e in iter_tree(store, right, recursive=True)] == [
        (e.path, e.id) for e in entries]


@settings(max_examples=300, deadline=None)
@given(operations)
def test_the_index_builds_what_build_tree_does(ops):
    """Index.build_tree (a sorted build that skips folders its ids vouch
    for) gives build_tree's id from nothing, and stores every tree it names."""
    store = MemoryStore()
    index = Index()
    base = None
    for op in ops:
        if stage_op(store, index, op, len(ops)):
            fresh = build_tree(MemoryStore(), index.entries.values())
            base = index.build_tree(store, base=base)
            assert base == fresh
            assert [e.path for e in iter_tree(store, base)] == [
                e.path for e in iter_tree(store, build_tree(store, index.entries.values()))]
            index = Index.decode(index.encode())  # as the next command reads it


def test_the_index_build_rebuilds_from_nothing_on_a_wrong_folder_id(store):
    """As build_tree: a known id that its entries contradict is never written."""
    base_entries = [flat(store, b"a/x", b"x"), flat(store, b"b/y", b"y")]
    base = build_tree(store, base_entries)
    base_b = store.get_tree(base).get(b"b")
    entries = [base_entries[0], flat(store, b"b/y", b"y changed")]
    right = build_tree(MemoryStore(), entries)
    index = Index([IndexEntry(*e) for e in entries],
                  trees={b"a": ("e" * 64, 1), b"b": (base_b.id, base_b.size)})
    assert index.build_tree(store, base=base) == right
    assert index.trees[b""][0] == right


def test_the_index_build_refuses_a_file_with_entries_below_it(store):
    index = Index([IndexEntry(b"a", MODE_FILE, blob(store, b"f"), 1),
                   IndexEntry(b"a/b", MODE_FILE, blob(store, b"f"), 1)])
    with pytest.raises(InvalidValueError):
        index.build_tree(store)


def _many_folders(store, count: int) -> list[FlatEntry]:
    return [flat(store, b"d%03d/f%d/x" % (i, i % 3), b"payload %d" % i) for i in range(count)]


def test_background_puts_build_what_a_plain_store_does(store):
    entries = _many_folders(store, 3 * BackgroundPuts.SYNC_PUTS)  # past the synchronous puts
    plain = MemoryStore()
    for e in entries:
        blob(plain, store.get(e.id)[1])
    expected = build_tree(plain, entries)
    with BackgroundPuts(store) as background:
        root = build_tree(background, entries)
    assert root == expected
    assert [(e.path, e.id) for e in iter_tree(store, root)] == [(e.path, e.id) for e in entries]


class _FailingStore(MemoryStore):
    def __init__(self, fail_after: int):
        super().__init__()
        self.left = fail_after

    def put(self, kind, payload):
        if kind == "tree":
            self.left -= 1
            if self.left < 0:
                raise OSError(28, "No space left on device")
        return super().put(kind, payload)


@pytest.mark.parametrize("fail_after", [3, BackgroundPuts.SYNC_PUTS + 5])
def test_a_background_put_that_fails_fails_the_build(fail_after):
    store = _FailingStore(fail_after)
    entries = _many_folders(store, 3 * BackgroundPuts.SYNC_PUTS)
    with pytest.raises(OSError, match="No space"):
        with BackgroundPuts(store) as background:
            build_tree(background, entries)


def test_a_failing_build_stops_the_thread_even_when_its_queue_lost_a_wakeup(store):
    """A Ctrl-C inside one of the queue's calls can leave the thread waiting
    without the wake-up a put owes it; leaving the block on an error must
    stop it all the same, without the queue (export once hung so)."""
    import threading
    import time

    outcome = []

    def build_and_fail():
        try:
            with BackgroundPuts(store) as background:
                for i in range(BackgroundPuts.SYNC_PUTS + 1):  # the thread starts
                    background.put("tree", b"%d" % i)
                waiters = background._queue.not_empty._waiters
                deadline = time.monotonic() + 30
                while not waiters and time.monotonic() < deadline:  # it waits for a run of puts
                    time.sleep(0.01)
                waiters.clear()  # what an interrupted put can leave: nobody wakes it
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            outcome.append(background._thread.is_alive())

    builder = threading.Thread(target=build_and_fail, daemon=True)
    builder.start()
    builder.join(60)
    assert not builder.is_alive() and outcome == [False]
