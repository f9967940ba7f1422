"""objects.py: canonical encodings, ids, and strict decoding."""

from __future__ import annotations

import hashlib
import json

import pytest

from rnstore.errors import CorruptObjectError, InvalidValueError
from rnstore.objects import (
    EMPTY_TREE_ID, MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, SNAPSHOT_HEADER, TREE_HEADER,
    Snapshot, Tree, TreeEntry, canonical_json, decode_snapshot, decode_tree,
    encode_tree_unchecked, hash_bytes, is_object_id, parse_mode,
)

A = "a" * 64
B = "b" * 64
C = "c" * 64
TIME = "2024-05-01T12:00:00.000000Z"


def entry(name: bytes, mode: str = MODE_FILE, oid: str = A, size: int = 3) -> TreeEntry:
    return TreeEntry(name, mode, oid, size)


def raw_tree(*records: bytes) -> bytes:
    return TREE_HEADER + b"".join(r + b"\0" for r in records)


def record(name: bytes, mode: bytes = b"100644", oid: bytes = A.encode(), size: bytes = b"3") -> bytes:
    return b"%s %s %s %s" % (mode, oid, size, name)


# -- ids ---------------------------------------------------------------------------------

def test_hash_bytes_is_sha256_hex():
    assert hash_bytes(b"hello\n") == hashlib.sha256(b"hello\n").hexdigest()
    assert hash_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("text,ok", [
    (A, True), ("0123456789abcdef" * 4, True), ("A" * 64, False), (A[:-1], False),
    (A + "a", False), (A + "\n", False), ("g" * 64, False), ("", False),
])
def test_is_object_id(text, ok):
    assert is_object_id(text) is ok


def test_empty_tree_id():
    assert EMPTY_TREE_ID == hashlib.sha256(b"rntree 1\n").hexdigest()
    assert Tree().id == EMPTY_TREE_ID


# -- trees -----------------------------------------------------------------------------

def test_tree_encoding_is_exact():
    tree = Tree.from_entries([entry(b"b.txt", MODE_EXEC, B, 10), entry(b"a", MODE_TREE, A, 0)])
    assert tree.encode() == (
        b"rntree 1\n"
        + b"040000 " + A.encode() + b" 0 a\0"
        + b"100755 " + B.encode() + b" 10 b.txt\0")
    assert tree.id == hashlib.sha256(tree.encode()).hexdigest()


def test_tree_from_entries_sorts_by_name_bytes():
    names = [b"\xff", b"B", b"a", b"a.txt", b"a-b", b"\xc3\xa9"]
    tree = Tree.from_entries(entry(n) for n in names)
    assert [e.name for e in tree.entries] == sorted(names)
    assert Tree.from_entries(entry(n) for n in reversed(names)).id == tree.id


def test_tree_round_trip_with_odd_names():
    names = [b"caf\xe9.txt", b"with space", b"tab\there", b"new\nline", b"-", b"...", b".hidden"]
    tree = Tree.from_entries(
        [entry(n, mode, oid, size) for n, mode, oid, size in zip(
            names, [MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE, MODE_FILE, MODE_FILE, MODE_FILE],
            [A, B, C, A, B, C, A], range(0, 7000, 1000))])
    decoded = decode_tree(tree.encode())
    assert decoded == tree
    assert decoded.encode() == tree.encode()


def test_tree_total_size_and_get():
    tree = Tree.from_entries([entry(b"x", size=5), entry(b"y", size=7)])
    assert tree.total_size == 12
    assert tree.get(b"y").size == 7
    assert tree.get(b"z") is None


def test_empty_tree_round_trip():
    assert decode_tree(TREE_HEADER) == Tree()


@pytest.mark.parametrize("name", [b"", b".", b"..", b"a/b", b"/", b"a\0b", b"\0"])
def test_from_entries_refuses_bad_names(name):
    with pytest.raises(CorruptObjectError):
        Tree.from_entries([entry(name)])


@pytest.mark.parametrize("name", [b"", b".", b"..", b"a/b", b"/etc", b"../x"])
def test_decode_refuses_bad_names(name):
    with pytest.raises(CorruptObjectError):
        decode_tree(raw_tree(record(name)))


def test_decode_refuses_nul_in_name():
    # A NUL ends the record, so the remainder is a malformed record.
    with pytest.raises(CorruptObjectError):
        decode_tree(TREE_HEADER + record(b"a\0b") + b"\0")


@pytest.mark.parametrize("payload,why", [
    (raw_tree(record(b"b"), record(b"a")), "unsorted"),
    (raw_tree(record(b"a"), record(b"a")), "duplicate"),
    (raw_tree(record(b"a", mode=b"100664")), "unknown mode"),
    (raw_tree(record(b"a", mode=b"40000")), "unknown mode"),
    (raw_tree(record(b"a", mode=b"0100644")), "unknown mode"),
    (raw_tree(record(b"a", size=b"01")), "invalid size"),
    (raw_tree(record(b"a", size=b"00")), "invalid size"),
    (raw_tree(record(b"a", size=b"-1")), "invalid size"),
    (raw_tree(record(b"a", size=b"+1")), "invalid size"),
    (raw_tree(record(b"a", size=b"")), "invalid size"),
    (raw_tree(record(b"a", size=b"1" * 21)), "invalid size"),
    (raw_tree(record(b"a", oid=A.upper().encode())), "invalid object id"),
    (raw_tree(record(b"a", oid=A[:-1].encode())), "invalid object id"),
    (raw_tree(b"100644 " + A.encode() + b" 3"), "malformed"),
    (raw_tree(b"100644  " + A.encode() + b" 3 a"), "invalid object id"),
    (TREE_HEADER + record(b"a"), "truncated"),
    (b"rntree 2\n" + record(b"a") + b"\0", "version"),
    (b"rntree 1 \n", "version"),
    (b"RNTREE 1\n", "not a tree"),
    (b"rnsnapshot 1\n{}\n", "not a tree"),
    (b"", "not a tree"),
])
def test_decode_tree_rejects(payload, why):
    with pytest.raises(CorruptObjectError, match=why):
        decode_tree(payload)


def test_encode_tree_unchecked_makes_hostile_trees_that_decode_refuses():
    hostile = encode_tree_unchecked([entry(b".."), entry(b"a")])
    with pytest.raises(CorruptObjectError):
        decode_tree(hostile)


def test_validate_refuses_bad_values():
    for bad in (Tree((entry(b"a", mode="100600"),)), Tree((entry(b"a", oid="x"),)),
                Tree((entry(b"a", size=-1),)), Tree((entry(b"b"), entry(b"a")))):
        with pytest.raises(CorruptObjectError):
            bad.validate()


@pytest.mark.parametrize("text,mode", [
    ("100644", MODE_FILE), ("100755", MODE_EXEC), ("120000", MODE_LINK), ("040000", MODE_TREE),
    ("40000", MODE_TREE)])
def test_parse_mode(text, mode):
    assert parse_mode(text) == mode


@pytest.mark.parametrize("text", ["644", "100600", "", "tree", "0040000"])
def test_parse_mode_rejects(text):
    with pytest.raises(InvalidValueError):
        parse_mode(text)


# -- snapshots -------------------------------------------------------------------------

def snapshot(**kw) -> Snapshot:
    values = dict(tree=A, parents=(B,), time=TIME, message="run 42", meta={"user": "ada"})
    values.update(kw)
    return Snapshot(**values)


def test_snapshot_encoding_is_exact():
    snap = snapshot(message="café", meta={"z": "1", "a": "é"})
    assert snap.encode() == (
        b'rnsnapshot 1\n{"message":"caf\xc3\xa9","meta":{"a":"\xc3\xa9","z":"1"},'
        b'"parents":["' + B.encode() + b'"],"time":"2024-05-01T12:00:00.000000Z",'
        b'"tree":"' + A.encode() + b'"}\n')
    assert snap.id == hashlib.sha256(snap.encode()).hexdigest()


def test_snapshot_round_trip():
    snap = snapshot(message="line 1\nline \"2\"\t\\ \u2603 \U0001f600", parents=(B, C),
                    meta={"k e y": "v\u00e9", "": ""})
    assert decode_snapshot(snap.encode()) == snap


def test_snapshot_id_depends_on_every_field():
    base = snapshot()
    variants = [snapshot(tree=C), snapshot(parents=()), snapshot(parents=(B, C)),
                snapshot(time="2024-05-01T12:00:00.000001Z"), snapshot(message="run 43"),
                snapshot(meta={"user": "bob"}), snapshot(meta={})]
    ids = {base.id, *(v.id for v in variants)}
    assert len(ids) == len(variants) + 1


def canonical(document) -> bytes:
    return SNAPSHOT_HEADER + canonical_json(document) + b"\n"


GOOD = {"tree": A, "parents": [B], "time": TIME, "message": "m", "meta": {"k": "v"}}


def test_canonical_good_document_decodes():
    assert decode_snapshot(canonical(GOOD)) == Snapshot(A, (B,), TIME, "m", {"k": "v"})


@pytest.mark.parametrize("payload", [
    # not canonical JSON
    SNAPSHOT_HEADER + json.dumps(GOOD).encode() + b"\n",                       # spaces
    SNAPSHOT_HEADER + json.dumps(GOOD, separators=(",", ":")).encode() + b"\n",  # key order
    SNAPSHOT_HEADER + canonical_json(GOOD) + b"\n\n",                          # trailing
    SNAPSHOT_HEADER + canonical_json(GOOD),                                    # no newline
    SNAPSHOT_HEADER + b" " + canonical_json(GOOD) + b"\n",                     # leading space
    canonical({**GOOD, "message": "é"}).replace(b"\xc3\xa9", b"\\u00e9"),    # escaped non-ASCII
    canonical({**GOOD, "message": "a/b"}).replace(b"a/b", b"a\\/b"),          # escaped slash
    canonical(GOOD).replace(b'"meta"', b'"meta":{},"meta"', 1),                # duplicate key
])
def test_decode_snapshot_rejects_non_canonical(payload):
    with pytest.raises(CorruptObjectError):
        decode_snapshot(payload)


@pytest.mark.parametrize("change", [
    {"tree": A.upper()}, {"tree": A[:-1]}, {"tree": 1}, {"tree": None},
    {"parents": [B[:10]]}, {"parents": B}, {"parents": [1]}, {"parents": None},
    {"time": "2024-05-01T12:00:00Z"}, {"time": "2024-05-01 12:00:00.000000Z"},
    {"time": "\u0662\u0660\u0662\u0664-05-01T12:00:00.000000Z"},  # Arabic-Indic digits
    {"time": 1714564800},
    {"message": 1}, {"message": None}, {"message": ["m"]},
    {"meta": {"k": 1}}, {"meta": {"k": None}}, {"meta": []}, {"meta": "k=v"},
    {"message": "\ud800"},  # a lone surrogate cannot be UTF-8
])
def test_decode_snapshot_rejects_bad_fields(change):
    document = {**GOOD, **change}
    payload = SNAPSHOT_HEADER + json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8", "surrogatepass") + b"\n"
    with pytest.raises(CorruptObjectError):
        decode_snapshot(payload)


@pytest.mark.parametrize("payload", [
    canonical({k: v for k, v in GOOD.items() if k != "meta"}),
    canonical({**GOOD, "extra": "x"}),
    canonical([GOOD]),
    SNAPSHOT_HEADER + b"{not json}\n",
    SNAPSHOT_HEADER + b"\xff\n",
    b"rnsnapshot 2\n" + canonical_json(GOOD) + b"\n",
    b"rnsnapshot\n" + canonical_json(GOOD) + b"\n",
    TREE_HEADER,
    b"",
])
def test_decode_snapshot_rejects_malformed(payload):
    with pytest.raises(CorruptObjectError):
        decode_snapshot(payload)


def test_unknown_snapshot_version_is_named():
    with pytest.raises(CorruptObjectError, match="version"):
        decode_snapshot(b"rnsnapshot 2\n" + canonical_json(GOOD) + b"\n")


def test_encode_refuses_invalid_snapshot():
    with pytest.raises(CorruptObjectError):
        snapshot(time="yesterday").encode()
    with pytest.raises(InvalidValueError):
        snapshot(message="\udcff").encode()
