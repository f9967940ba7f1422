"""`.rnignore` rules in gitignore semantics: the only user of pathspec.

A `.rnignore` in a folder applies to paths below that folder, matched
relative to it; deeper files are consulted after shallower ones, so a deeper
`!pattern` re-includes, as in git. `--exclude` patterns apply from the
workspace root, after every file. A folder that is ignored is not entered.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pathspec

IGNORE_FILE = ".rnignore"
#: Never stored, whatever the rules say.
ALWAYS_EXCLUDED = {b".rnstore"}


def _compile(lines: Sequence[str]) -> pathspec.PathSpec | None:
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


class IgnoreRules:
    """Answers "is this path ignored?" for a walk from the workspace root.

    `use_files` False (--no-ignore) disables every `.rnignore`; `extra`
    holds --exclude patterns, which always apply.
    """

    def __init__(self, root: Path, *, extra: Sequence[str] = (), use_files: bool = True):
        self.root = root
        self.use_files = use_files
        self.extra = _compile(list(extra))
        self._specs: dict[bytes, pathspec.PathSpec | None] = {}

    def _spec_for(self, folder: bytes) -> pathspec.PathSpec | None:
        """The compiled `.rnignore` of a folder (relative path, b"" = root)."""
        if folder not in self._specs:
            spec = None
            if self.use_files:
                path = os.path.join(os.fsencode(self.root), folder, os.fsencode(IGNORE_FILE))
                try:
                    with open(path, "rb") as fh:
                        text = fh.read().decode("utf-8", "surrogateescape")
                    spec = _compile(text.splitlines())
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
                    spec = None
            self._specs[folder] = spec
        return self._specs[folder]

    def is_ignored(self, path: bytes, is_dir: bool) -> bool:
        """`path` is relative to the root, '/'-separated; its parent folders
        are assumed not ignored (the walk does not enter ignored folders)."""
        name = path.rsplit(b"/", 1)[-1]
        if name in ALWAYS_EXCLUDED:
            return True
        suffix = "/" if is_dir else ""
        verdict = None
        parts = path.split(b"/")
        for depth in range(len(parts)):
            folder = b"/".join(parts[:depth])
            spec = self._spec_for(folder)
            if spec is None:
                continue
            relative = os.fsdecode(b"/".join(parts[depth:])) + suffix
            result = spec.check_file(relative).include
            if result is not None:
                verdict = result
        if self.extra is not None:
            result = self.extra.check_file(os.fsdecode(path) + suffix).include
            if result is not None:
                verdict = result
        return bool(verdict)
