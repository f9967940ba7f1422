"""The one table from library exceptions to messages and exit codes."""

from __future__ import annotations

import errno
import os
import sys
import traceback

from ..errors import BadInputError, OperationInterrupted, RnstoreError
from ._output import close_progress_on_interrupt, in_flags, printable

EXIT_OK, EXIT_ACT, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141

#: First match wins: (exception class, exit code).
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (OperationInterrupted, EXIT_INTERRUPTED),
    (BadInputError, EXIT_USAGE),
    (RnstoreError, EXIT_ACT),
]


def exit_code_for(exc: BaseException) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_ACT


def message_for(exc: BaseException) -> tuple[str, list[str], int]:
    """(message, hints, exit code) for any exception that reaches the CLI."""
    if isinstance(exc, (KeyboardInterrupt, OperationInterrupted)):
        work = close_progress_on_interrupt()  # and say what the bar had done
        return f"interrupted: {work}" if work else "interrupted", [], EXIT_INTERRUPTED
    if isinstance(exc, RnstoreError):
        return in_flags(str(exc)), [in_flags(hint) for hint in exc.hints], exit_code_for(exc)
    if isinstance(exc, OSError):
        where = f": {os.fsdecode(exc.filename)}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return f"no space left to write{where}", ["free some space and run the command again; nothing committed was lost"], EXIT_ACT
        if exc.errno == errno.ENOENT:
            return f"{reason}{where}", [], EXIT_USAGE
        return f"{reason}{where}", [], EXIT_ACT
    if isinstance(exc, RecursionError):
        return "folders nested too deeply to process", [], EXIT_ACT
    return f"internal error: {type(exc).__name__}: {exc}", [
        "this is a bug in rnstore; RNSTORE_DEBUG=1 shows the traceback"], EXIT_ACT


def report(exc: BaseException) -> int:
    """Print one `error:` line (and hints) on stderr; return the exit code."""
    message, hints, code = message_for(exc)
    if os.environ.get("RNSTORE_DEBUG") == "1":
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    lines = [f"error: {printable(message)}"] + [f"hint: {printable(hint)}" for hint in hints]
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except OSError:
        pass
    return code
