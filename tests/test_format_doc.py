"""rnstore/FORMAT.md stays true: its `console` examples are run again,
command by command, in one fresh folder, and its snapshot examples are
rebuilt through the library."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rnstore import codec, objects
from rnstore.index import HEADER as INDEX_HEADER
from rnstore.objects import Snapshot
from rnstore.repo import STORE_FORMAT

from helpers.cli import cli_env

DOC = Path(__file__).resolve().parents[1] / "rnstore" / "FORMAT.md"  # the source tree's
TEXT = DOC.read_text(encoding="utf-8")

TREE = "a46a26487aec0dc71fce5fe8bf82cfc21082394d682cccda7c5f594974b846ba"
FIRST = Snapshot(TREE, (), "2024-05-01T12:00:00.000000Z", "run 42",
                 {"user": "ada", "host": "lab1", "rnstore_version": "0.1.0", "files": "2",
                  "bytes": "12", "lr": "0.001"})
SECOND = Snapshot(TREE, (FIRST.id,), "2024-05-01T12:30:00.000000Z", "run 43 \u2013 caf\u00e9", {})
#: (snapshot, the id the document gives for it)
SNAPSHOTS = [
    (FIRST, "5cd7c49310e675f4c6ec06b3a342c2cade8cfb4ebed556d5b389a082ab9354b3"),
    (SECOND, "d34f13c35f29e79029d6c38a5cf7a93e70cf6d2c9b0a24debd5a47d70287089a"),
]


def fenced_blocks(info: str) -> list[str]:
    return re.findall(r"^```" + re.escape(info) + r"\n(.*?)^```$", TEXT, re.S | re.M)


def session() -> list[tuple[str, list[str]]]:
    """Every `$ command` of the console blocks with the lines it prints."""
    steps: list[tuple[str, list[str]]] = []
    for block in fenced_blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                assert steps, f"output before any command: {line!r}"
                steps[-1][1].append(line)
    return steps


def normalise(lines: list[str]) -> list[str]:
    """Runs of blanks are one space (tabs in the document survive editors
    that expand them; od pads with spaces), trailing blanks go."""
    result = [re.sub(r"[ \t]+", " ", line).rstrip() for line in lines]
    while result and not result[-1]:
        result.pop()
    return result


#: `zstd -dc [--patch-from=BASE] [FILE]` and `zstd -q [--patch-from=BASE] IN -o OUT`.
ZSTD_SHIM = """
import sys, zstandard
args = sys.argv[1:]
base = [a.split("=", 1)[1] for a in args if a.startswith("--patch-from=")]
rest = [a for a in args if not a.startswith("-")]
kw = {}
if base:
    data = open(base[0], "rb").read()
    kw["dict_data"] = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
if "-dc" in args:
    source = open(rest[0], "rb").read() if rest else sys.stdin.buffer.read()
    sys.stdout.buffer.write(zstandard.ZstdDecompressor(**kw).decompress(source))
else:
    source, out = args[args.index("-o") - 1], args[args.index("-o") + 1]
    cctx = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True, **kw)
    open(out, "wb").write(cctx.compress(open(source, "rb").read()))
"""


@pytest.fixture(scope="module")
def shims(tmp_path_factory) -> Path:
    """`rnstore` on PATH runs this interpreter's rnstore; the few `zstd`
    commands the document uses are provided when the zstd tool is not
    installed."""
    folder = tmp_path_factory.mktemp("bin")
    scripts = {"rnstore": f'#!/bin/sh\nexec "{sys.executable}" -m rnstore "$@"\n'}
    if shutil.which("zstd") is None:
        scripts["zstd"] = f"#!{sys.executable}\n" + ZSTD_SHIM
    for name, body in scripts.items():
        path = folder / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def test_the_document_has_examples():
    steps = session()
    assert len(steps) >= 20
    assert steps[0][0] == "rnstore init -q"
    commands = " ".join(command for command, _ in steps)
    for needed in ("hash-object", "cat-file tree", "mktree", "read-tree", "od -c .rnstore/index",
                   "sha256sum", "zstd -dc"):
        assert needed in commands


def test_console_examples_still_hold(tmp_path, shims):
    env = cli_env({"PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}", "LC_ALL": "C"})
    folder = tmp_path / "example"
    folder.mkdir()
    for command, expected in session():
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=folder, env=env,
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, (command, proc.stderr.decode())
        assert "Traceback" not in proc.stderr.decode()
        got = proc.stdout.decode("utf-8", "replace").splitlines()
        assert normalise(got) == normalise(expected), f"$ {command}"


@pytest.mark.parametrize("snapshot,documented_id", SNAPSHOTS)
def test_snapshot_examples(snapshot, documented_id):
    payload = snapshot.encode()
    assert snapshot.id == documented_id == hashlib.sha256(payload).hexdigest()
    assert objects.decode_snapshot(payload) == snapshot
    shown = [b for b in fenced_blocks("text") if b.startswith("rnsnapshot 1\n")]
    assert payload.decode() in shown
    assert f"`{documented_id}`" in TEXT


def test_snapshot_example_size():
    assert f"those {len(FIRST.encode())} bytes" in TEXT


def test_snapshot_examples_name_the_example_tree():
    made = [out for command, out in session() if "rnstore mktree" in command and "docs" in command]
    assert made == [[TREE]]


def test_constants_the_document_quotes():
    assert f"`{codec.FORMAT_TAG.decode()}`" in TEXT
    assert "`rntree 1`" in TEXT and objects.TREE_HEADER == b"rntree 1\n"
    assert "`rnsnapshot 1`" in TEXT and objects.SNAPSHOT_HEADER == b"rnsnapshot 1\n"
    assert "`rnindex 3`" in TEXT and INDEX_HEADER == b"rnindex 3\n"
    assert f"`{STORE_FORMAT.strip()}`" in TEXT
    for mode in objects.MODES:
        assert f"`{mode}`" in TEXT
    assert objects.EMPTY_TREE_ID in TEXT
    assert f"{codec.MAX_METADATA_SIZE >> 20} MiB" in TEXT
    from rnstore.store import BUFFERED_BLOB
    assert f"{BUFFERED_BLOB >> 20} MiB" in TEXT
    from rnstore.index import RACY_NS
    assert f"within {RACY_NS // 10**6} ms of being hashed" in TEXT
    # Deltas
    from rnstore.config import MAX_PACK_DEPTH, SETTINGS
    assert f"deeper than {codec.MAX_CHAIN_DEPTH}" in TEXT
    assert f"default {SETTINGS['pack.depth'].default},\n  at most {MAX_PACK_DEPTH}" in TEXT
    assert f"over {codec.DELTA_MAX_SIZE >> 20} MiB" in TEXT
    assert f"at most 2^{codec._DELTA_WINDOW_LOG} bytes" in TEXT
    assert codec.FIRST_FORM_DELTA_KINDS == ("blob", "tree") and 'delta-kind  = "blob" / "tree"' in TEXT
    assert codec.DELTA_CODES == {1: "blob", 2: "tree", 3: "snapshot", 4: "tree"} and codec.BINARY_TREE == 4
    assert "delta-code  = %x01 / %x02 / %x03 / %x04  ; 1: a blob, 2: a tree, 3: a snapshot,\n" \
        "                                  ; 4: a tree in binary form (version 3 only)" in TEXT
    from rnstore import packs, reachcache
    assert packs.MAGIC_3 == b"rnpack 3\n" and '"rnpack 3" LF' in TEXT
    assert reachcache.HEADER == b"rnstore reachability cache 3\n" and 'b"rnstore reachability cache 3\\n"' in TEXT


def test_the_config_section_names_every_key():
    """"Config" lists the known keys; `gc.threshold` was missing from it."""
    from rnstore.config import OBJECTS_KEY, SETTINGS
    section = TEXT.split("\n## Config\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z]+\.[a-z_]+)`", section))
    assert listed == set(SETTINGS) | {OBJECTS_KEY}, listed ^ (set(SETTINGS) | {OBJECTS_KEY})
