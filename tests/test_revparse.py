"""revparse.py: names, id prefixes, ancestry and paths to object ids."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from rnstore.errors import AmbiguousRevisionError, InvalidValueError, UnknownRevisionError
from rnstore.objects import EMPTY_TREE_ID, MODE_TREE, Snapshot, Tree
from rnstore.revparse import (
    MIN_PREFIX, resolve_entry, resolve_snapshot, resolve_tree, rev_parse,
)
from rnstore.trees import FlatEntry, build_tree


def make_snapshot(repo, files: dict[bytes, bytes], parents=(), message="m", second=0) -> str:
    entries = [FlatEntry(p, "100644", repo.store.put("blob", d), len(d)) for p, d in files.items()]
    tree = build_tree(repo.store, entries)
    snapshot = Snapshot(tree, tuple(parents), f"2024-05-01T12:00:{second:02d}.000000Z", message, {})
    oid = repo.store.put_snapshot(snapshot)
    repo.journal.add(oid)
    return oid


@pytest.fixture
def history(repo):
    """s0 <- s1 <- s2 (main), with a merge m of s2 and side; tags v1 -> s1."""
    s0 = make_snapshot(repo, {b"f": b"0"}, second=0)
    s1 = make_snapshot(repo, {b"f": b"1", b"dir/a.txt": b"a1"}, [s0], second=1)
    s2 = make_snapshot(repo, {b"f": b"2", b"dir/a.txt": b"a2", b"caf\xe9": b"c"}, [s1], second=2)
    side = make_snapshot(repo, {b"side": b"s"}, [s0], second=3)
    merge = make_snapshot(repo, {b"f": b"m"}, [s2, side], second=4)
    repo.refs.update("refs/heads/main", s2)
    repo.refs.update("refs/heads/merged", merge)
    repo.refs.update("refs/tags/v1", s1)
    return dict(s0=s0, s1=s1, s2=s2, side=side, merge=merge)


def test_head_branch_tag_full_ref(repo, history):
    assert rev_parse(repo, "HEAD") == history["s2"]
    assert rev_parse(repo, "main") == history["s2"]
    assert rev_parse(repo, "refs/heads/main") == history["s2"]
    assert rev_parse(repo, "v1") == history["s1"]
    assert rev_parse(repo, "refs/tags/v1") == history["s1"]


def test_detached_head(repo, history):
    repo.refs.update("HEAD", history["s0"], follow_head=False)
    assert rev_parse(repo, "HEAD") == history["s0"]
    assert rev_parse(repo, "main") == history["s2"]


def test_branch_shadows_tag_of_same_name(repo, history):
    repo.refs.update("refs/tags/main", history["s0"])
    assert rev_parse(repo, "main") == history["s2"]
    assert rev_parse(repo, "refs/tags/main") == history["s0"]


def test_full_id_and_prefixes(repo, history):
    s1 = history["s1"]
    assert rev_parse(repo, s1) == s1
    assert rev_parse(repo, s1.upper()) == s1
    # every prefix from MIN_PREFIX on that is unique resolves
    others = set(repo.store) - {s1}
    for length in range(MIN_PREFIX, 65):
        if not any(o.startswith(s1[:length]) for o in others):
            assert rev_parse(repo, s1[:length]) == s1


def test_a_full_id_names_its_object_before_any_ref(repo, history):
    """As in git, a full object id is that object, even where a branch
    has the same name (it costs no ref look-up per id: cat-file --batch);
    a full-length name that is no object's id is still a ref name."""
    repo.refs.update("refs/heads/" + history["s1"], history["s0"])
    assert rev_parse(repo, history["s1"]) == history["s1"]
    unstored = "ab" * 32
    repo.refs.update("refs/heads/" + unstored, history["s2"])
    assert rev_parse(repo, unstored) == history["s2"]


def test_prefix_also_reaches_blobs_and_trees(repo, history):
    blob = hashlib.sha256(b"a2").hexdigest()
    assert rev_parse(repo, blob[:12]) == blob
    tree = repo.store.get_snapshot(history["s2"]).tree
    assert rev_parse(repo, tree[:12]) == tree


@pytest.mark.parametrize("prefix", ["a", "ab", "abc", "0"])
def test_short_prefix_is_refused(repo, history, prefix):
    with pytest.raises(UnknownRevisionError, match="at least 4"):
        rev_parse(repo, prefix)


def test_unknown_revisions(repo, history):
    for rev in ("nope", "0000", "0" * 64, "feature", "refs/heads/nope", "HEAD~9", "v1~5",
                "main:nope", "main:f/below", "main:dir/../f", "s2", "HEAD^3", "merged^3"):
        with pytest.raises(UnknownRevisionError):
            rev_parse(repo, rev)


def test_empty_name(repo):
    with pytest.raises(UnknownRevisionError):
        rev_parse(repo, "")


def test_unborn_head(repo):
    with pytest.raises(UnknownRevisionError, match="no snapshot yet"):
        rev_parse(repo, "HEAD")


def test_ancestry(repo, history):
    h = history
    assert rev_parse(repo, "HEAD~") == h["s1"]
    assert rev_parse(repo, "HEAD~1") == h["s1"]
    assert rev_parse(repo, "HEAD~2") == h["s0"]
    assert rev_parse(repo, "HEAD^") == h["s1"]
    assert rev_parse(repo, "HEAD^^") == h["s0"]
    assert rev_parse(repo, "HEAD^~1") == h["s0"]
    assert rev_parse(repo, "HEAD~0") == h["s2"]
    assert rev_parse(repo, "HEAD^0") == h["s2"]
    assert rev_parse(repo, "v1^") == h["s0"]
    assert rev_parse(repo, f"{h['s2'][:10]}~2") == h["s0"]
    assert rev_parse(repo, "merged^1") == h["s2"]
    assert rev_parse(repo, "merged^2") == h["side"]
    assert rev_parse(repo, "merged^2~1") == h["s0"]


@pytest.mark.parametrize("rev", ["HEAD~x", "HEAD~1x", "HEAD^-1", "HEAD~~x"])
def test_malformed_suffixes(repo, history, rev):
    with pytest.raises(InvalidValueError):
        rev_parse(repo, rev)


def test_ancestry_of_a_non_snapshot(repo, history):
    tree = repo.store.get_snapshot(history["s2"]).tree
    with pytest.raises(InvalidValueError, match="tree"):
        rev_parse(repo, f"{tree}~1")


def test_paths(repo, history):
    store = repo.store
    a2 = hashlib.sha256(b"a2").hexdigest()
    assert rev_parse(repo, "HEAD:dir/a.txt") == a2
    assert rev_parse(repo, "HEAD:/dir/a.txt") == a2
    assert rev_parse(repo, "HEAD~1:dir/a.txt") == hashlib.sha256(b"a1").hexdigest()
    assert rev_parse(repo, "HEAD:caf\udce9") == hashlib.sha256(b"c").hexdigest()  # non-UTF-8, as argv gives it
    dir_id = rev_parse(repo, "HEAD:dir")
    assert store.get_tree(dir_id).get(b"a.txt").id == a2
    root = store.get_snapshot(history["s2"]).tree
    assert rev_parse(repo, "HEAD:") == root
    tree = repo.store.get_snapshot(history["s2"]).tree
    assert rev_parse(repo, f"{tree[:8]}:dir/a.txt") == a2  # a tree works as well


def test_resolve_helpers(repo, history):
    assert resolve_snapshot(repo, "main") == history["s2"]
    with pytest.raises(InvalidValueError):
        resolve_snapshot(repo, "HEAD:dir")
    root = repo.store.get_snapshot(history["s2"]).tree
    assert resolve_tree(repo, "HEAD") == root
    assert resolve_tree(repo, "HEAD:dir") == rev_parse(repo, "HEAD:dir")
    with pytest.raises(InvalidValueError):
        resolve_tree(repo, "HEAD:f")
    entry = resolve_entry(repo, "HEAD:dir/a.txt")
    assert (entry.mode, entry.size) == ("100644", 2)
    root_entry = resolve_entry(repo, "HEAD")
    assert (root_entry.mode, root_entry.id, root_entry.size) == (MODE_TREE, root, 1 + 2 + 1)
    assert resolve_entry(repo, "HEAD:").id == root


def colliding_blobs(length: int = MIN_PREFIX) -> tuple[bytes, bytes]:
    """Two small payloads whose ids share their first `length` hex digits."""
    seen: dict[str, bytes] = {}
    for i in itertools.count():
        data = b"collide %d" % i
        prefix = hashlib.sha256(data).hexdigest()[:length]
        if prefix in seen:
            return seen[prefix], data
        seen[prefix] = data


def test_ambiguous_prefix_lists_candidates(repo):
    first, second = colliding_blobs()
    ids = sorted(repo.store.put("blob", d) for d in (first, second))
    common = next(n for n in range(64) if ids[0][n] != ids[1][n])  # shared digits
    assert common >= MIN_PREFIX
    prefix = ids[0][:MIN_PREFIX]
    with pytest.raises(AmbiguousRevisionError) as info:
        rev_parse(repo, prefix)
    assert sorted(info.value.candidates) == ids
    assert all(oid in " ".join(info.value.hints) for oid in ids)
    assert prefix in str(info.value)
    # one more digit than they share makes the prefix unique
    assert rev_parse(repo, ids[0][:common + 1]) == ids[0]
    assert rev_parse(repo, ids[1][:common + 1]) == ids[1]


def test_ambiguity_message_lists_at_most_ten():
    candidates = [("%04x" % 0xabcd) + "%060d" % i for i in range(12)]
    error = AmbiguousRevisionError("abcd", candidates)
    assert "12 objects match" in str(error)
    assert error.candidates == candidates
    assert all(c in error.hints[0] for c in candidates[:10])
    assert candidates[10] not in error.hints[0] and "..." in error.hints[0]


def test_empty_tree_resolves(repo):
    repo.store.put_tree(Tree())
    assert rev_parse(repo, EMPTY_TREE_ID[:6]) == EMPTY_TREE_ID


def test_a_file_holding_the_empty_tree_encoding_does_not_hide_the_tree(repo):
    """Ids hash payloads only: a blob b"rntree 1\\n" stored first IS the empty
    tree. Naming that id as a tree-ish must still work."""
    from rnstore import plumbing
    assert repo.store.put("blob", b"rntree 1\n") == EMPTY_TREE_ID
    assert repo.store.header(EMPTY_TREE_ID)[0] == "blob"
    assert resolve_tree(repo, EMPTY_TREE_ID) == EMPTY_TREE_ID
    assert plumbing.ls_tree(repo, EMPTY_TREE_ID[:8]) == []
    line = f"040000 tree {EMPTY_TREE_ID}\tempty\n"
    tree = plumbing.mktree(repo, [line])
    assert repo.store.get_tree(tree).get(b"empty").id == EMPTY_TREE_ID
    snapshot = plumbing.commit_tree(repo, EMPTY_TREE_ID, [], "empty")
    assert repo.store.get_snapshot(snapshot).tree == EMPTY_TREE_ID


@pytest.mark.parametrize("data", [b"just a file", b"rntree 1\nnot an entry", b""])
def test_a_blob_is_not_a_tree_ish(repo, data):
    oid = repo.store.put("blob", data)
    with pytest.raises(InvalidValueError, match="blob"):
        resolve_tree(repo, oid)
