"""Running the CLI with stderr on a pseudo-terminal, as a user sees it
(test_progress_tty.py, test_habits.py)."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from helpers.cli import cli_env

#: Environment that would change how rich sees the terminal.
TERMINAL_VARIABLES = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                      "COLUMNS", "LINES", "CLICOLOR", "CLICOLOR_FORCE", "COLORTERM")


def run_on_pty(args, cwd: Path, env: dict[str, str] | None = None, *,
               interrupt_at: bytes | None = None):
    """Run `python -m rnstore ARGS` with stderr on a 120x40 pseudo-terminal
    (stdout a pipe); return (exit code, stdout, what the terminal received).
    With `interrupt_at`, send SIGINT as soon as the terminal has shown
    those bytes (the command may have finished by then)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    environment = cli_env()
    for name in TERMINAL_VARIABLES:
        environment.pop(name, None)
    environment["TERM"] = "xterm-256color"
    environment.update(env or {})
    try:
        proc = subprocess.Popen([sys.executable, "-m", "rnstore", *args], cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                                env=environment)
    finally:
        os.close(slave)
    received: list[bytes] = []
    shown = threading.Event()

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            received.append(data)
            if interrupt_at is not None and not shown.is_set() and interrupt_at in b"".join(received):
                shown.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if interrupt_at is not None:
            deadline = time.monotonic() + 120
            while not shown.wait(0.01) and proc.poll() is None and time.monotonic() < deadline:
                pass
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        stdout = proc.stdout.read()
        code = proc.wait(timeout=120)
        reader.join(timeout=30)
    finally:
        proc.stdout.close()
        os.close(master)
    terminal = b"".join(received)
    assert b"Traceback" not in terminal, terminal.decode("utf-8", "replace")
    return code, stdout, terminal
