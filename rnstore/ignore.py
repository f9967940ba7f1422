"""`.rnignore` rules in gitignore semantics: the only user of pathspec.

A `.rnignore` in a folder applies to paths below that folder, matched
relative to it; deeper files are consulted after shallower ones, so a deeper
`!pattern` re-includes, as in git. `--exclude` patterns apply from the
workspace root, after every file. A folder that is ignored is not entered.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # loaded when a rule is compiled: most commands read no rules
    import pathspec  # compiled only when a rule file exists: most commands read none

IGNORE_FILE = ".rnignore"
#: Never stored, whatever the rules say.
ALWAYS_EXCLUDED = {b".rnstore"}


class _Rules:
    """One compiled rule file. Most paths match none of its patterns, so one
    combined regular expression answers "nothing matches" in one search;
    only a path it matches is checked pattern by pattern, where the last
    matching pattern decides, as gitignore says."""

    def __init__(self, spec: pathspec.PathSpec):
        self.spec = spec
        self.prefilter = True
        # A pattern without a slash matches a name at any depth; pathspec
        # spells it "^(?:.+/)?NAME", which backtracks. All of them together
        # as "(?:^|/)(?:NAME1|NAME2|...)" say the same in one quick search.
        by_name, by_path = [], []
        try:
            for pattern in spec.patterns:
                if pattern.include is None or pattern.regex is None:
                    continue
                regex = _NAMED_GROUP.sub("(?:", pattern.regex.pattern)
                if regex.startswith(_ANY_DEPTH):
                    by_name.append(regex[len(_ANY_DEPTH):])
                else:
                    by_path.append(regex)
            self.by_name = re.compile("(?:^|/)" + _alternation(by_name)) if by_name else None
            self.by_path = re.compile(_alternation(by_path)) if by_path else None
        except (AttributeError, re.error):
            self.prefilter = False  # pathspec changed its internals: check every pattern

    def verdict(self, relative: str) -> bool | None:
        """`relative` is the path below the rule file's folder, with a
        trailing "/" for a folder."""
        if self.prefilter and not (
                (self.by_name is not None and self.by_name.search(relative))
                or (self.by_path is not None and self.by_path.search(relative))):
            return None
        return self.spec.check_file(relative).include


def _alternation(regexes: list[str]) -> str:
    return "(?:" + "|".join(f"(?:{r})" for r in regexes) + ")"


_ANY_DEPTH = "^(?:.+/)?"
_NAMED_GROUP = re.compile(r"\(\?P<[^>]+>")


def _compile(lines: Sequence[str]) -> _Rules | None:
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    import pathspec  # compiled only when a rule file exists: most commands read none
    return _Rules(pathspec.GitIgnoreSpec.from_lines(lines))


class IgnoreRules:
    """Answers "is this path ignored?" for a walk from the workspace root.

    `use_files` False (--no-ignore) disables every `.rnignore`; `extra`
    holds --exclude patterns, which always apply.
    """

    def __init__(self, root: Path, *, extra: Sequence[str] = (), use_files: bool = True):
        self.root = root
        self._root_b = os.fsencode(root)
        self.use_files = use_files
        self.extra = _compile(list(extra))
        self._files: dict[bytes, _Rules | None] = {}
        self._chains: dict[bytes, tuple[tuple[int, _Rules], ...]] = {}

    def _rules_in(self, folder: bytes) -> _Rules | None:
        """The compiled `.rnignore` of a folder (relative path, b"" = root)."""
        if folder not in self._files:
            rules = None
            if self.use_files:
                path = os.path.join(self._root_b, folder, os.fsencode(IGNORE_FILE))
                try:
                    with open(path, "rb") as fh:
                        text = fh.read().decode("utf-8", "surrogateescape")
                    rules = _compile(text.splitlines())
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
                    rules = None
            self._files[folder] = rules
        return self._files[folder]

    def has_no_rule_file(self, folder: bytes) -> None:
        """The walk listed `folder` and found no `.rnignore` in it: spare
        `_rules_in` the attempt to open one."""
        self._files.setdefault(folder, None)

    def _chain(self, folder: bytes) -> tuple[tuple[int, _Rules], ...]:
        """The rule files that apply inside `folder`, outermost first, each
        with the number of path components its folder has."""
        chain = self._chains.get(folder)
        if chain is None:
            if folder:
                parent = folder.rsplit(b"/", 1)[0] if b"/" in folder else b""
                chain = self._chain(parent)
                depth = folder.count(b"/") + 1
            else:
                chain, depth = (), 0
            own = self._rules_in(folder)
            if own is not None:
                chain = chain + ((depth, own),)
            self._chains[folder] = chain
        return chain

    def only_always_excluded(self, folder: bytes) -> bool:
        """Whether no rule applies inside `folder`, so that only
        ALWAYS_EXCLUDED names are ignored there (the walk's fast path)."""
        return self.extra is None and not self._chain(folder)

    def is_ignored(self, path: bytes, is_dir: bool) -> bool:
        """`path` is relative to the root, '/'-separated; its parent folders
        are assumed not ignored (the walk does not enter ignored folders)."""
        folder, _, name = path.rpartition(b"/")
        if name in ALWAYS_EXCLUDED:
            return True
        suffix = "/" if is_dir else ""
        verdict = None
        chain = self._chain(folder)
        if chain:
            parts = path.split(b"/")
            for depth, rules in chain:
                relative = os.fsdecode(b"/".join(parts[depth:]) if depth else path) + suffix
                result = rules.verdict(relative)
                if result is not None:
                    verdict = result
        if self.extra is not None:
            result = self.extra.verdict(os.fsdecode(path) + suffix)
            if result is not None:
                verdict = result
        return bool(verdict)
