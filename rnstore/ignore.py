"""`.rnignore` rules in gitignore semantics: the only user of pathspec.

A `.rnignore` in a folder applies to paths below that folder, matched
relative to it; deeper files are consulted after shallower ones, so a deeper
`!pattern` re-includes, as in git. `--exclude` patterns apply from the
workspace root, after every file. A folder that is ignored is not entered.

A line that is not a valid pattern (`\\` alone, `[z-a]`) is skipped with a
warning naming the file and line, as git does; with `strict` it is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .errors import InvalidValueError
from .fsutil import NotRegularFileError, open_regular

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

    def __init__(self, spec: pathspec.PathSpec, source: str = "", numbers: Sequence[int] = ()):
        self.spec = spec
        #: where the rules come from, and the line number of each pattern
        self.source, self.numbers = source, list(numbers)
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


    def explain(self, relative: str) -> tuple[bool, str] | None:
        """(ignored, "SOURCE:LINE: PATTERN") of the pattern deciding
        `relative`, or None when no pattern matches it."""
        result = self.spec.check_file(relative)
        index = getattr(result, "index", None)
        if result.include is None:
            return None
        if index is None:
            return result.include, self.source
        pattern = getattr(self.spec.patterns[index], "pattern", "") or ""
        if self.source.startswith("--"):
            return result.include, f"{self.source} {pattern}"
        line = self.numbers[index] if index < len(self.numbers) else "?"
        return result.include, f"{self.source}:{line}: {pattern}"


def _alternation(regexes: list[str]) -> str:
    return "(?:" + "|".join(f"(?:{r})" for r in regexes) + ")"


_ANY_DEPTH = "^(?:.+/)?"
_NAMED_GROUP = re.compile(r"\(\?P<[^>]+>")


#: The source of the patterns a command adds (`excludes`), as rules name it.
EXCLUDES = "--exclude"


def _compile(lines: Sequence[str], source: str = EXCLUDES,
             on_bad: Callable[[str], None] | None = None) -> _Rules | None:
    """The rules of `lines` (from `source`, a file name or --exclude). A bad
    pattern is passed to `on_bad` as "SOURCE:LINE: ..." and skipped;
    without `on_bad` it is an InvalidValueError."""
    numbered = [(number, line) for number, line in enumerate(lines, 1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        return None
    import pathspec  # compiled only when a rule file exists: most commands read none
    try:
        return _Rules(pathspec.GitIgnoreSpec.from_lines([line for _, line in numbered]),
                      source, [number for number, _ in numbered])
    except Exception:  # noqa: BLE001 - pathspec raises its own error, ValueError or re.error
        pass
    good = []
    for number, line in numbered:  # only when some line is bad: find which
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except Exception as exc:  # noqa: BLE001 - as above
            pattern = f"invalid pattern '{line[:200]}'"
            problem = (f"{pattern} in excludes" if source == EXCLUDES else f"{source}:{number}: {pattern}") \
                + f" ({_why(exc, line)})"
            if on_bad is None:
                raise InvalidValueError(problem, hints=["fix or remove the pattern"]) from None
            on_bad(problem + "; skipped")
            continue
        good.append((number, line))
    if not good:
        return None
    return _Rules(pathspec.GitIgnoreSpec.from_lines([line for _, line in good]),
                  source, [number for number, _ in good])


def _why(exc: Exception, line: str) -> str:
    if line.rstrip(" ").endswith("\\"):
        return "a trailing backslash escapes nothing"
    text = str(exc).split(" at position")[0]
    return "not gitignore syntax" if text.startswith("Invalid git pattern") else text


class IgnoreRules:
    """Answers "is this path ignored?" for a walk from the workspace root.

    `use_files` False (--no-ignore) disables every `.rnignore`; `extra`
    holds --exclude patterns, which always apply (a bad one is refused).
    A bad pattern in a `.rnignore` goes to `warn` and is skipped; with
    `strict` it is refused (InvalidValueError).
    """

    def __init__(self, root: Path, *, extra: Sequence[str] = (), use_files: bool = True,
                 warn: Callable[[str], None] | None = None, strict: bool = False):
        self.root = root
        self._root_b = os.fsencode(root)
        self.use_files = use_files
        self._on_bad = None if strict else (warn or (lambda line: None))
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
                    with open(open_regular(path), "rb") as fh:
                        text = fh.read().decode("utf-8", "surrogateescape")
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
                        NotRegularFileError):
                    text = None  # (a FIFO there is no rule file: never waited on)
                if text is not None:
                    name = os.fsdecode(os.path.join(folder, os.fsencode(IGNORE_FILE)))
                    rules = _compile(text.splitlines(), name, self._on_bad)
            self._files[folder] = rules
        return self._files[folder]

    def read_root_rules(self) -> None:
        """Read the root's rule file now: before a walk forks, so that its
        two processes do not each read it (and each warn of a bad pattern)."""
        self._chain(b"")

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

    def why_ignored(self, path: bytes) -> str | None:
        """The rule that ignores `path` or the first of its folders it
        ignores ("SOURCE:LINE: PATTERN", as `git check-ignore -v` says), or
        None when the path is not ignored."""
        parts = path.split(b"/")
        for depth in range(1, len(parts) + 1):
            sub = b"/".join(parts[:depth])
            is_dir = depth < len(parts) or os.path.isdir(os.path.join(self._root_b, sub))
            rule = self._deciding_rule(sub, is_dir)
            if rule is not None:
                return rule
        return None

    def _deciding_rule(self, path: bytes, is_dir: bool) -> str | None:
        folder, _, name = path.rpartition(b"/")
        if name in ALWAYS_EXCLUDED:
            return f"{os.fsdecode(name)} (always excluded)"
        suffix = "/" if is_dir else ""
        decided: tuple[bool, str] | None = None
        parts = path.split(b"/")
        for depth, rules in self._chain(folder):
            relative = os.fsdecode(b"/".join(parts[depth:]) if depth else path) + suffix
            decided = rules.explain(relative) or decided
        if self.extra is not None:
            decided = self.extra.explain(os.fsdecode(path) + suffix) or decided
        return decided[1] if decided is not None and decided[0] else None
