"""One output sink: results on stdout, everything else on stderr.

Progress bars come from rich and only when stderr is a terminal and the user
did not turn them off (-q, --no-progress, RNSTORE_PROGRESS=0). rich is
imported only then.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from ..progress import NO_PROGRESS
from ..quoting import quote_path
from ..units import format_size, format_size_of


#: The library's errors name the API's keyword arguments; the command line
#: names its flags instead. (API words, flag), longest first.
FLAGS_FOR_API_WORDS: list[tuple[str, str]] = [
    ("allow_empty=True", "--allow-empty"),
    ("ignore_errors=True", "--ignore-errors"),
    ("skip_missing=True", "--skip-missing"),
    ("keep_within=DURATION", "--keep-within DURATION"),
    ("keep_last=N", "--keep-last N"),
    ("keep_last", "--keep-last"),
    ("nested=True", "--nested"),
    ("force=True", "--force"),
    ("target=FOLDER", "--target DIR"),
    ('format="dir"', "--format dir"),
    ("format=NAME", "--format NAME"),
    ("a backend option is", "-o takes"),
    ("takes no backend options", "takes no -o options"),
    ("in excludes", "in --exclude"),
]


#: Control characters: in a message they could end its line, or move the
#: cursor or clear the screen (a hostile remote's ref names, a typed name).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with each control character shown as its escape (`\\n`, `\\x1b`)."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def in_flags(text: str) -> str:
    """A library message as the command line says it."""
    for words, flag in FLAGS_FOR_API_WORDS:
        if words in text:
            text = re.sub(rf"(?<![\w-]){re.escape(words)}(?![\w=])", flag, text)
    return text


class Output:
    def __init__(self) -> None:
        self.quiet = False
        self.no_progress = False
        #: the stage whose bar is drawn now (RichProgress), and what an interrupted one had done
        self.progress_stage = None
        self.interrupted_work: str | None = None

    # -- stdout: results ---------------------------------------------------------

    def bytes(self, data: bytes) -> None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)

    def line(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            self.bytes(text + b"\n")
        else:
            self.bytes(os.fsencode(text) + b"\n")

    def json(self, document: Any) -> None:
        self.bytes(json.dumps(document, indent=2).encode() + b"\n")

    # -- stderr: summaries, warnings, progress --------------------------------

    def summary(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def warn(self, text: str) -> None:
        sys.stderr.write(f"warning: {printable(text)}\n")
        sys.stderr.flush()

    def notice(self, text: str) -> None:
        """A line the library reports while it works (waiting for a lock)."""
        sys.stderr.write(f"{text}\n")
        sys.stderr.flush()

    @property
    def progress_enabled(self) -> bool:
        return (
            not self.quiet
            and not self.no_progress
            and os.environ.get("RNSTORE_PROGRESS", "1") != "0"
            and sys.stderr.isatty()
        )


out = Output()


def first_line(message: str | None) -> str:
    """A message's first line (a snapshot's subject); "" for none."""
    return message.splitlines()[0] if message else ""


def progress(quiet: bool = False, no_progress: bool = False):
    """A Progress receiver for one command, after its -q and --no-progress:
    a rich bar on a terminal, else one that ignores everything."""
    out.quiet = out.quiet or quiet
    out.no_progress = out.no_progress or no_progress
    if not out.progress_enabled:
        return NO_PROGRESS
    return RichProgress()


class RichProgress:
    """A stage's bar on stderr: done and total bytes, speed, count and ETA,
    every size in format_size's binary units. A stage without totals shows
    counts only, no bar. rich is imported only when a bar is drawn.

    Interrupted (Ctrl-C), the bar is erased, not left half drawn, and
    `out.interrupted_work` says what was done, for the one error line."""

    def __init__(self) -> None:
        self._bar = None
        self._task = None

    def start(self, description: str, total_files: int | None = None,
              total_bytes: int | None = None, *, unit: str = "file") -> None:
        from rich.console import Console  # rich loads only when a bar is drawn
        from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
        self.finish()
        self._description, self._unit = description, unit
        self._files_total, self._files_done = total_files, 0
        self._bytes_total, self._bytes_done = total_bytes, 0
        # the bar measures bytes when their total is known, else the count
        total = total_bytes if total_bytes is not None else total_files
        self._by_bytes = total_bytes is not None
        column = _text_column()
        columns = [column(lambda task: self._description)]
        if total is not None:
            columns += [BarColumn(), column(self._amount_text), column(self._speed_text),
                        column(self._count_text), TimeRemainingColumn()]
        else:
            columns += [column(self._count_text), TimeElapsedColumn()]
        console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")))
        self._bar = Progress(*columns, console=console, transient=False)
        out.progress_stage = self  # before the bar shows: a Ctrl-C from now on erases it
        self._task = self._bar.add_task(description, total=total)
        self._bar.start()

    def _amount_text(self, task) -> str:
        if self._by_bytes:
            return format_size_of(self._bytes_done, self._bytes_total)
        return ""

    def _speed_text(self, task) -> str:
        speed = task.finished_speed or task.speed
        if speed is None:
            return "?"
        return f"{format_size(speed)}/s" if self._by_bytes else f"{speed:,.0f} {self._unit}s/s"

    def _count_text(self, task) -> str:
        total = f"/{self._files_total:,}" if self._files_total is not None else ""
        return f"{self._files_done:,}{total} {self._unit}s"

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        if self._bar is None:
            return
        self._files_done += files
        self._bytes_done += nbytes
        self._bar.update(self._task, advance=nbytes if self._by_bytes else files)

    def finish(self) -> None:
        """Close the bar: at the end of a stage it stays on the screen;
        on Ctrl-C it is erased (the error line says what was done)."""
        if self._bar is None:
            return
        bar, self._bar = self._bar, None
        if out.progress_stage is self:
            out.progress_stage = None
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):  # called in a finally: clause
            self.interrupt(bar)
        else:
            bar.stop()

    def interrupt(self, bar=None) -> None:
        bar = bar or self._bar
        self._bar = None
        out.interrupted_work = self._work_done()
        if bar is not None:
            bar.live.transient = True  # erase the bar rather than leave it half drawn
            bar.stop()

    def _work_done(self) -> str:
        """'fsck: checking objects, 1,234 of 5,000 objects done'."""
        units = self._unit if self._files_done == 1 and self._files_total is None else self._unit + "s"
        if self._files_total is not None:
            return f"{self._description}, {self._files_done:,} of {self._files_total:,} {units} done"
        if self._bytes_total is not None:
            return f"{self._description}, {format_size_of(self._bytes_done, self._bytes_total)} done"
        return f"{self._description}, {self._files_done:,} {units} done"


def _text_column():
    """A rich column that shows what a function of the task returns."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class FunctionColumn(ProgressColumn):
        def __init__(self, text) -> None:
            super().__init__()
            self._text = text

        def render(self, task) -> Text:
            return Text(self._text(task))

    return FunctionColumn


def close_progress_on_interrupt() -> str | None:
    """On Ctrl-C: erase a bar still drawn; what the interrupted stage had
    done, if a bar showed one."""
    if out.progress_stage is not None:
        out.progress_stage.interrupt()
        out.progress_stage = None
    return out.interrupted_work


def path_entries(paths, *, nul: bool = False, heads=None) -> bytes:
    """Entries ending in a path, each after its head (`-z`: ended by NUL,
    the path as it is; else one a line, the path quoted as git does)."""
    heads = heads if heads is not None else [b""] * len(paths)
    if nul:
        return b"".join(head + path + b"\0" for head, path in zip(heads, paths))
    return b"".join(head + quote_path(path) + b"\n" for head, path in zip(heads, paths))


def print_tree(entries, *, long: bool, name_only: bool, nul: bool = False) -> None:
    """`ls-tree`'s lines (also `show` of a folder)."""
    heads = []
    for e in entries:
        if name_only:
            heads.append(b"")
        elif long:
            size = b"-" if e.kind == "tree" else b"%d" % e.size
            heads.append(b"%s %s %s %7s\t" % (e.mode.encode(), e.kind.encode(), e.id.encode(), size))
        else:
            heads.append(b"%s %s %s\t" % (e.mode.encode(), e.kind.encode(), e.id.encode()))
    out.bytes(path_entries([e.path for e in entries], nul=nul, heads=heads))


def tree_json(entries) -> list[dict]:
    """`ls-tree --json`'s document (also `show --json` of a folder)."""
    return [{"mode": e.mode, "type": e.kind, "id": e.id, "path": os.fsdecode(e.path),
             "size": e.size} for e in entries]
