"""The command-line interface: a thin typer layer over the library.

`main` answers `--version` before importing typer, maps every error to one
`error:` line and an exit code (see _errors.py), and never shows a traceback
unless RNSTORE_DEBUG=1. Importing this package changes nothing in the
process: the SIGINT handler, the allocator and the cycle collector are set
by `main` and `run`, for a command-line process only.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from .._version import __version__
from ..alloc import cycle_collector_paused, let_walks_fork


def _interrupted_outside_the_command(signum, frame):
    """Ctrl-C before the command starts or after it ended: nothing to clean
    up, and no KeyboardInterrupt to surface as a traceback."""
    os._exit(130)


def _interrupt_the_command(signum, frame):
    """Python's KeyboardInterrupt, except where it would be lost or do harm:
    inside the import machinery (a module left half imported), a weakref
    callback or a __del__ (the interpreter prints "Exception ignored" and
    drops it: a thread object collected during an export did so). There
    SIGINT is sent again a moment later, until it lands in rnstore's own
    code."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib") or code.co_name == "__del__" \
                or code.co_filename.endswith(_CALLBACK_FILES):
            again = threading.Timer(_RETRY_SECONDS, os.kill, (os.getpid(), signal.SIGINT))
            again.daemon = True
            again.start()
            return
        frame = frame.f_back
    raise KeyboardInterrupt


_RETRY_SECONDS = 0.01
#: the standard library's weakref callbacks (WeakSet, WeakValueDictionary...)
_CALLBACK_FILES = ("_weakrefset.py", os.sep + "weakref.py")


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGINT, _interrupted_outside_the_command)
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        sys.stdout.write(f"rnstore {__version__}\n")
        sys.exit(0)
    _keep_large_buffers_out_of_the_heap()
    let_walks_fork()
    code = 130
    try:
        code = run(args)  # turns SIGINT into KeyboardInterrupt while the command runs
    except KeyboardInterrupt:  # landed after run() handled its errors
        pass
    finally:
        # the interpreter's exit (joining threads, atexit) is no place for a
        # KeyboardInterrupt; one may land while the handler is switched
        # (signal.signal is Python code), so switch until it is done
        while True:
            try:
                signal.signal(signal.SIGINT, _interrupted_outside_the_command)
                break
            except KeyboardInterrupt:
                pass
    sys.exit(code)


def _keep_large_buffers_out_of_the_heap() -> None:
    """glibc gives a buffer of 128 KiB or more its own mapping, returned when
    freed, but raises that threshold to the size of each such buffer freed.
    Workers read files of up to 4 MiB whole, so the threshold soon reaches
    megabytes and freed file buffers stay resident in the threads' heaps.
    Fixed thresholds keep buffers over 1 MiB in mappings, and the 1 MiB
    chunks of streaming reads in the heap, which is trimmed only past 4 MiB
    free: any lower, and every chunk of a streamed export is mapped or
    trimmed again (README, Performance, has the figures). The CLI only: a
    library does not set its host's allocator."""
    try:
        import ctypes  # only to tune a command's allocator: --version answers without it
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, (1 << 20) + (64 << 10))
        libc.mallopt(_M_TRIM_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):
        pass  # not glibc: its own allocator, its own rules


_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def _accept_click_completion_order() -> None:
    """click spells the completion request `bash_complete`, typer
    `complete_bash`; answer both."""
    value = os.environ.get("_RNSTORE_COMPLETE", "")
    for shell in ("bash", "zsh", "fish"):
        if value.startswith(shell + "_"):
            os.environ["_RNSTORE_COMPLETE"] = f"{value[len(shell) + 1:]}_{shell}"


@cycle_collector_paused  # one short-lived command: see alloc.py; a library caller keeps its own
def run(args: list[str]) -> int:
    _accept_click_completion_order()
    try:
        from .app import build_command  # everything heavy loads inside the try
        command = build_command(args)
        # From here on a Ctrl-C interrupts the command (KeyboardInterrupt: it
        # cleans up, exit 130). Before, under main's handler, it ends the
        # process at once: nothing is written yet, and a KeyboardInterrupt
        # inside an import can surface as an "Exception ignored" traceback.
        signal.signal(signal.SIGINT, _interrupt_the_command)
        result = command.main(args=args, prog_name="rnstore", standalone_mode=False)
        _flush_stdout()
        return result if isinstance(result, int) else 0
    except BaseException as exc:  # noqa: BLE001 - this is the one place that handles all
        return _handle(exc)


def _flush_stdout() -> None:
    sys.stdout.flush()


def _handle(exc: BaseException) -> int:
    try:
        from ._errors import EXIT_PIPE, report  # traceback and all: only on an error
    except KeyboardInterrupt:
        return 130
    if isinstance(exc, BrokenPipeError) or (
            isinstance(exc, OSError) and getattr(exc, "errno", None) == 32):
        _silence_stdout()
        return EXIT_PIPE
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    typer = sys.modules.get("typer")  # not loaded yet: the error cannot be typer's
    if typer is not None:
        # typer's public classes; every click exception typer vendors is a
        # TyperException (tests/test_cli_dependencies.py checks, for the
        # typer versions pyproject.toml allows)
        if isinstance(exc, typer.Exit):
            return exc.exit_code
        if isinstance(exc, typer.Abort):  # click's name for a KeyboardInterrupt in a command
            return report(KeyboardInterrupt())
        if isinstance(exc, typer.TyperException):
            if getattr(exc, "possibilities", None) and getattr(exc, "option_name", None):
                # an unknown option: click proposes anything alike, keep the close ones
                from ._command import close_names  # loads typer's click, which start-up must not
                exc.possibilities = close_names(exc.option_name, exc.possibilities)
            ctx = getattr(exc, "ctx", None)  # a usage error names its command
            if type(exc).__name__ == "NoArgsIsHelpError":
                # bare `rnstore`: git prints its usage and command list; so
                # do we, on stderr under the error line (its message is the help)
                sys.stderr.write(f"error: missing command\n{exc.format_message().rstrip()}\n")
                return exc.exit_code
            from ._output import printable  # light: the error path alone needs it
            message = printable(exc.format_message().strip()) or "missing command"
            sys.stderr.write(f"error: {message}\n")
            if ctx is not None:
                sys.stderr.write(f"hint: see `{ctx.command_path} --help`\n")
            return exc.exit_code  # a usage error's is EXIT_USAGE
    return report(exc)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
