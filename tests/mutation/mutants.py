"""The mutants: one small change each to a rule that FORMAT.md, SPEC.md or
the code's own comments promise, and the tests that must catch it.

Each mutant replaces `old` (which must occur exactly once in `path`) with
`new`. `tests` are the pytest arguments that must fail once it is applied
(and pass without it). Issue 17 lists most of these rules.
"""

from __future__ import annotations

from typing import NamedTuple


class Mutant(NamedTuple):
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


DURABILITY = ("tests/test_durability.py",)

MUTANTS = [
    # -- durability ordering (FORMAT.md, rules 1, 2, 4, 5) -------------------------------
    Mutant("loose object not fsynced before its rename (outside a batch)", "rnstore/store.py",
           "        if self.fsync:\n            _fsync_file(temp_token)\n", "", DURABILITY),
    Mutant("loose object fsynced after its rename, not before", "rnstore/store.py",
           "        if self.fsync:\n            _fsync_file(temp_token)\n"
           "        self._rename_into_place(temp_token, oid)\n",
           "        self._rename_into_place(temp_token, oid)\n"
           "        if self.fsync:\n            _fsync_file(self._path(oid))\n", DURABILITY),
    Mutant("a batch's loose objects not fsynced before their renames", "rnstore/store.py",
           "                for temp in pending.values():\n                    _fsync_file(temp)\n",
           "                pass\n", DURABILITY),
    Mutant("a large batch's syncfs after the renames, not before", "rnstore/store.py",
           "            if many:\n                sync_filesystem(self.root)\n            else:",
           "            if many:\n                pass\n            else:", DURABILITY),
    Mutant("a batch's fan-out folders not fsynced after the renames", "rnstore/store.py",
           "            fsync_dir(folder)\n        fsync_dir(self._root)\n\n    def _drop_pending",
           "            pass\n        fsync_dir(self._root)\n\n    def _drop_pending", DURABILITY),
    Mutant("loose object's folder not fsynced (outside a batch)", "rnstore/store.py",
           "            fsync_dir(os.path.dirname(self._path(oid)))\n", "", DURABILITY),
    Mutant("pack not fsynced before its rename", "rnstore/packs.py",
           "        if self._fsync:\n            os.fsync(self._fd)\n", "", DURABILITY),
    Mutant("pack folder not fsynced after the rename", "rnstore/packs.py",
           "        if self._fsync:\n            fsync_dir(self.folder)\n", "", DURABILITY),
    Mutant("gc's rewritten pack not made durable before the old one goes", "rnstore/store.py",
           "self._temp_name(self._pack_folder), kept,\n                                   fsync=self.fsync)",
           "self._temp_name(self._pack_folder), kept,\n                                   fsync=False)",
           DURABILITY),
    Mutant("write_new_file never fsyncs", "rnstore/fsutil.py",
           "        if durable:\n            os.fsync(fd)\n", "", DURABILITY),
    Mutant("atomic_write does not fsync the parent folder", "rnstore/fsutil.py",
           "    if durable:\n        fsync_dir(path.parent)\n", "", DURABILITY),
    Mutant("journal entry not made durable", "rnstore/refs.py",
           "        os.close(fd)\n        if self.durable:\n            fsync_dir(self.folder)\n",
           "        os.close(fd)\n", DURABILITY),
    Mutant("put trusts a short object file (quick path)", "rnstore/store.py",
           "        if codec.frame_length(lambda at, n: os.pread(fd, n, at), size) is None:\n"
           "            return False\n", "",
           ("tests/test_durability.py",)),

    # -- object files (FORMAT.md, "Object files") ---------------------------------------
    Mutant("a streamed object ends with a second, empty frame", "rnstore/codec.py",
           "            self._writer.close()\n",
           "            self._writer.flush(zstandard.FLUSH_FRAME)\n            self._writer.close()\n",
           ("tests/test_object_conformance.py", "tests/test_codec.py")),
    Mutant("readers accept bytes after the frame", "rnstore/codec.py",
           "        if length != size and not is_legacy_empty_frame(read_at(length, size - length)):",
           "        if False:", ("tests/test_codec.py", "tests/test_object_conformance.py")),
    Mutant("readers accept a frame cut short", "rnstore/codec.py",
           "        if length is None:\n            raise self._corrupt(\"truncated object\")\n",
           "", ("tests/test_codec.py",)),
    Mutant("frame content size not checked against the header", "rnstore/codec.py",
           "        if params.content_size not in (zstandard.CONTENTSIZE_UNKNOWN, header_len + self.size):\n"
           "            raise self._corrupt(\"frame size disagrees with the object header\")\n", "",
           ("tests/test_plumbing_cli.py", "-k", "content_size_disagrees")),

    # -- canonical decoding -----------------------------------------------------------
    Mutant("cat-file prints a tree or snapshot without decoding it", "rnstore/plumbing.py",
           "    decoded = repo.store.get_tree(info.id) if info.kind == TREE else repo.store.get_snapshot(info.id)\n"
           "    return iter([decoded.encode()])\n",
           "    return iter([repo.store.get(info.id, info.kind)[1]])\n",
           ("tests/test_plumbing_cli.py", "-k", "non_canonical")),

    # -- trees, checkout --------------------------------------------------------------
    Mutant("trees._StaleFolderId removed", "rnstore/trees.py",
           "        if rebuilt[0] != tree_id:\n            raise _StaleFolderId(path)\n", "",
           ("tests/test_trees.py",)),
    Mutant("checkout opens folders without O_NOFOLLOW", "rnstore/safefs.py",
           "O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | O_CLOEXEC",
           "O_DIR = os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC",
           ("tests/test_checkout.py", "-k", "swapped")),
    Mutant("iter_tree without the path-length check", "rnstore/trees.py",
           "        if len(path) >= MAX_PATH:\n", "        if False:\n",
           ("tests/torture/test_torture_hostile.py", "-m", "torture", "-k", "deep_tree")),
    Mutant("checkout._leaves without the path-length check", "rnstore/checkout.py",
           "            if len(base) + len(entry.name) >= MAX_PATH:\n", "            if False:\n",
           ("tests/torture/test_torture_hostile.py", "-m", "torture", "-k", "deep_tree")),

    # -- the stat cache and reading files (FORMAT.md, "The index") ---------------------
    # (twice: through `add` and `status`, and by the index's own tests)
    *(Mutant(f"racy rule removed: a stat as new as the index is trusted ({where})",
             "rnstore/index.py",
             "        return entry if cached[1] < written_ns and cached[2] < written_ns else None\n",
             "        return entry\n", tests)
      for where, tests in (("add", ("tests/test_porcelain_add.py", "-k", "racy")),
                           ("index", ("tests/test_index.py", "-k", "survives_the_file")))),
    Mutant("the stat cache never kept: every entry smudged", "rnstore/index.py",
           "    if max(st.st_mtime_ns, st.st_ctime_ns) >= now - RACY_NS:\n",
           "    if True:\n",
           ("tests/test_stat_cache.py",)),
    Mutant("store_entry records the stat without the racy smudge", "rnstore/worktree.py",
           "        key = stat_key_if_settled(before, time.time_ns())\n        if key == found.stat:",
           "        key = StatKey.of(before)\n        if key == found.stat:",
           ("tests/test_porcelain_add.py", "-k", "smudges")),
    Mutant("store_entry keeps a file that changed while it was read", "rnstore/worktree.py",
           "            unchanged = _same_change(os.fstat(fd), before)\n",
           "            unchanged = True\n",
           ("tests/test_porcelain_add.py", "-k", "changes_while")),
    Mutant("store_entry reads a just-changed file only once", "rnstore/worktree.py",
           "                unchanged = _hash_fd(fd, size) == oid and _same_change(os.fstat(fd), before)\n",
           "                pass\n",
           ("tests/test_porcelain_add.py", "-k", "no_stat_shows")),
]
