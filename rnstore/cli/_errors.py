"""The one table from library exceptions to messages and exit codes."""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback

from ..errors import BadInputError, OperationInterrupted, RnstoreError
from ._output import close_progress_on_interrupt

EXIT_OK, EXIT_ACT, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141

#: First match wins: (exception class, exit code).
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (OperationInterrupted, EXIT_INTERRUPTED),
    (BadInputError, EXIT_USAGE),
    (RnstoreError, EXIT_ACT),
]


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
    ("in excludes", "in --exclude"),
]


def in_flags(text: str) -> str:
    """A library message as the command line says it."""
    for words, flag in FLAGS_FOR_API_WORDS:
        if words in text:
            text = re.sub(rf"(?<![\w-]){re.escape(words)}(?![\w=])", flag, text)
    return text


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
    lines = [f"error: {message}"] + [f"hint: {hint}" for hint in hints]
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except OSError:
        pass
    return code
