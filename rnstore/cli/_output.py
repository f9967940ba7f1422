"""One output sink: results on stdout, everything else on stderr.

Progress bars come from rich and only when stderr is a terminal and the user
did not turn them off (-q, --no-progress, RNSTORE_PROGRESS=0). rich is
imported only then.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..progress import NO_PROGRESS


class Output:
    def __init__(self) -> None:
        self.quiet = False
        self.no_progress = False

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
        sys.stderr.write(f"warning: {text}\n")
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
    """Files, bytes, rate and ETA on stderr; imported rich only when used."""

    def __init__(self) -> None:
        self._bar = None
        self._task = None

    def start(self, description: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        from rich.console import Console  # rich loads only when a bar is drawn
        from rich.progress import (BarColumn, DownloadColumn, Progress,
                                   TextColumn, TimeRemainingColumn, TransferSpeedColumn)
        self.finish()
        self._files_total = total_files
        self._files_done = 0
        console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")))
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
            TransferSpeedColumn(), TextColumn("{task.fields[files]}"), TimeRemainingColumn(),
            console=console, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total_bytes, files=self._files_text())

    def _files_text(self) -> str:
        total = f"/{self._files_total:,}" if self._files_total is not None else ""
        return f"{self._files_done:,}{total} files"

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        if self._bar is None:
            return
        self._files_done += files
        self._bar.update(self._task, advance=nbytes, files=self._files_text())

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def print_tree(entries, *, long: bool, name_only: bool) -> None:
    """`ls-tree`'s lines (also `show` of a folder)."""
    lines = []
    for e in entries:
        if name_only:
            lines.append(e.path + b"\n")
        elif long:
            size = b"-" if e.kind == "tree" else b"%d" % e.size
            lines.append(b"%s %s %s %7s\t%s\n" % (e.mode.encode(), e.kind.encode(), e.id.encode(), size, e.path))
        else:
            lines.append(b"%s %s %s\t%s\n" % (e.mode.encode(), e.kind.encode(), e.id.encode(), e.path))
    out.bytes(b"".join(lines))


def tree_json(entries) -> list[dict]:
    """`ls-tree --json`'s document (also `show --json` of a folder)."""
    return [{"mode": e.mode, "type": e.kind, "id": e.id, "path": os.fsdecode(e.path),
             "size": e.size} for e in entries]
