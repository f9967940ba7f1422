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
