"""What rnstore changes in the process that uses it: the CLI's `main` and
`run` set the SIGINT handler and pause the cycle collector for one command;
importing the CLI, or calling the library, changes neither."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import pytest

from rnstore.progress import Progress
from rnstore.repo import Repository


def test_importing_the_cli_leaves_the_sigint_handler_alone():
    script = textwrap.dedent("""
        import signal
        def ours(signum, frame):
            pass
        signal.signal(signal.SIGINT, ours)
        import rnstore.cli, rnstore.cli.app
        assert signal.getsignal(signal.SIGINT) is ours, signal.getsignal(signal.SIGINT)
        print("kept")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "kept"), proc.stderr


def test_main_sets_the_sigint_handler(tmp_path):
    """The other half: a command-line process exits 130 on Ctrl-C while it
    starts (main's handler) and turns SIGINT into KeyboardInterrupt while
    it runs (run's)."""
    script = textwrap.dedent("""
        import signal, sys
        import rnstore.cli
        seen = []
        real_signal = signal.signal
        def recording(signum, handler):
            seen.append(handler)
            return real_signal(signum, handler)
        signal.signal = recording
        try:
            rnstore.cli.main(["rev-parse", "--help"])
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        names = [getattr(h, "__name__", repr(h)) for h in seen]
        assert names == ["_interrupted_outside_the_command", "_interrupt_the_command",
                         "_interrupted_outside_the_command"], names
        print("set")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert (proc.returncode, proc.stdout.strip().splitlines()[-1:]) == (0, ["set"]), proc.stderr


class CollectorWatch(Progress):
    """A progress receiver that notes whether the cycle collector is on
    each time the library reports."""

    def __init__(self):
        self.states: list[bool] = []

    def start(self, description, total_files=None, total_bytes=None, *, unit="file"):
        self.states.append(gc.isenabled())

    def advance(self, files=0, nbytes=0):
        self.states.append(gc.isenabled())


def test_library_calls_keep_the_cycle_collector_on(tmp_path):
    """A notebook or a training loop calling the library keeps cycle
    collection while the call runs (the CLI pauses it, in run())."""
    ws = tmp_path / "ws"
    for i in range(40):
        path = ws / f"d{i % 3}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n")
    repo = Repository.init(ws, default_ignore=False)
    assert gc.isenabled()
    watch = CollectorWatch()
    first = repo.snapshot("first", progress=watch).id
    (ws / "d0" / "f0.txt").write_text("changed\n")
    repo.add([ws], progress=watch)
    repo.commit("second", progress=watch)
    repo.checkout(first, target=tmp_path / "out", progress=watch)
    repo.fsck(progress=watch)
    repo.du(progress=watch)
    repo.gc(prune="now", progress=watch)
    assert watch.states and all(watch.states), watch.states
    assert gc.isenabled()


@pytest.mark.parametrize("filename, function", [
    ("<frozen importlib._bootstrap>", "_get_module_lock"),
    (os.path.join(os.path.dirname(os.__file__), "_weakrefset.py"), "_remove"),  # a thread object collected
    ("anywhere.py", "__del__"),
])
def test_a_ctrl_c_inside_an_import_or_a_callback_is_raised_again_outside_it(filename, function):
    """Inside the import machinery, a weakref callback or a __del__, a
    KeyboardInterrupt is printed and dropped ("Exception ignored in ...";
    an export once ran on after Ctrl-C so); the command's handler raises it
    again, a moment later, in ordinary code. The frame stands in for one of
    those. The SIGINT comes again 1 s later here (10 ms in the product), a
    wide margin over a loaded machine's pauses between the two prints."""
    script = textwrap.dedent(f"""
        import signal, time
        import rnstore.cli
        from rnstore.cli import _interrupt_the_command
        rnstore.cli._RETRY_SECONDS = 1.0
        signal.signal(signal.SIGINT, _interrupt_the_command)
        source = "def {function}(handler, signal, sys):\\n    handler(signal.SIGINT, sys._getframe())\\n"
        space = {{}}
        exec(compile(source, {filename!r}, "exec"), space)
        import sys
        space[{function!r}](_interrupt_the_command, signal, sys)
        print("not raised inside the import")
        try:
            time.sleep(30)
        except KeyboardInterrupt:
            print("raised after it")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == ["not raised inside the import", "raised after it"], proc.stderr


def test_a_ctrl_c_while_the_process_exits_prints_no_traceback(tmp_path):
    """Once the command is done, a SIGINT that lands while the interpreter
    exits (joining threads, running atexit hooks) ends it with 130 and no
    traceback. atexit stands in for that moment, deterministically."""
    script = textwrap.dedent("""
        import atexit, os, signal, sys
        import rnstore.cli
        atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))
        rnstore.cli.main(["hash-object", "--stdin"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], input=b"data\n", capture_output=True,
                          cwd=tmp_path, timeout=60)
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert len(proc.stdout.strip()) == 64  # the work was done and printed first


def test_a_ctrl_c_while_the_handler_is_switched_back_prints_no_traceback(tmp_path):
    """signal.signal is Python code: a SIGINT can land inside it, under the
    handler being replaced. main() switches again until it is done."""
    script = textwrap.dedent("""
        import signal, sys
        import rnstore.cli
        real_signal = signal.signal
        calls = []
        def interrupted_once(signum, handler):
            calls.append(handler)
            if len(calls) == 3:  # main's switch after the command
                raise KeyboardInterrupt
            return real_signal(signum, handler)
        signal.signal = interrupted_once
        try:
            rnstore.cli.main(["hash-object", "--stdin"])
        except SystemExit as exit:
            assert signal.getsignal(signal.SIGINT).__name__ == "_interrupted_outside_the_command"
            print("exit", exit.code)
    """)
    proc = subprocess.run([sys.executable, "-c", script], input=b"data\n", capture_output=True,
                          cwd=tmp_path, timeout=60)
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr, stderr
    assert proc.stdout.decode().splitlines()[-1:] == ["exit 0"], (proc.stdout, stderr)
