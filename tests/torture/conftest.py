"""The torture suite's fixtures, its --torture-scale option and its
end-of-run figures; its helpers (``make_tree``, ``manifest``, ``run``,
``spawn``, ``fsck_ok``, ``run_lanes``, ``STATS``, ...) are in
tests/helpers/torture.py.

Where things run: RNSTORE_TORTURE_TMP names the folder for scratch
workspaces; by default /dev/shm (tmpfs) when it is writable, so that the
many fsyncs of hundreds of crash runs do not dominate the budget (a
kill -9 sees the same system calls on any file system), else pytest's tmp.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from helpers import torture
from helpers.torture import NOTES, STATS, rmtree, scale

#: CPU seconds (this process and every child it waited for) per test.
CPU: dict[str, float] = {}


def pytest_addoption(parser):
    # Only honoured when tests/torture is named on the command line (pytest
    # reads options from conftest files it loads before collection).
    parser.addoption("--torture-scale", type=int, default=None,
                     help="multiply torture crash moments and iterations (default 1)")


def pytest_configure(config):
    try:
        torture.set_scale_option(config.getoption("torture_scale"))
    except ValueError:
        torture.set_scale_option(None)


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@pytest.fixture(autouse=True)
def _account_cpu(request):
    """CPU time is what the suite costs on an idle machine; wall time on a
    shared one says more about the neighbours."""
    start = _cpu_seconds()
    yield
    CPU[request.node.nodeid] = _cpu_seconds() - start


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not STATS:
        return
    s = STATS
    crash = {k[len("crash."):]: v for k, v in sorted(s.items()) if k.startswith("crash.")}
    signals = {k[len("sigint."):]: v for k, v in sorted(s.items()) if k.startswith("sigint.")}
    lines = [
        f"torture (scale {scale()}): {sum(crash.values())} crash points "
        f"({', '.join(f'{k} {v}' for k, v in crash.items()) or 'none'}), "
        f"{s['concurrent.writers']} concurrent writers "
        f"({s['concurrent.commits']} commits, {s['concurrent.gc_runs']} gc runs, "
        f"{s['concurrent.readers']} reader runs), "
        f"{s['corrupt.objects']} corrupted objects/roots, "
        f"{s['leftovers.planted']} planted crash leftovers, "
        f"{s['hostile.inputs']} hostile inputs, "
        f"{s['resources.scenarios']} resource scenarios, "
        f"{sum(signals.values())} SIGINTs ({', '.join(f'{k} {v}' for k, v in signals.items()) or 'none'}), "
        f"{s['checks.fsck']} fsck runs + {s['checks.incremental']} incremental store checks, "
        f"{s['checks.checkouts']} verified checkouts",
    ]
    lines += [f"torture: {note}" for note in NOTES]
    if CPU:
        heavy = sorted(CPU.items(), key=lambda kv: -kv[1])[:6]
        lines.append(f"torture: {sum(CPU.values()):.0f} CPU seconds in all (tests and their processes); "
                     "most: " + ", ".join(f"{name.split('::')[-1]} {seconds:.0f}" for name, seconds in heavy))
    terminalreporter.write_sep("-", "torture figures")
    for line in lines:
        terminalreporter.write_line(line)
    path = os.environ.get("RNSTORE_TORTURE_SUMMARY")
    if path:
        Path(path).write_text(json.dumps({"scale": scale(), "stats": dict(s), "notes": NOTES},
                                         indent=2) + "\n")


# -- where the scratch folders live --------------------------------------------------------

def _scratch_base() -> str | None:
    explicit = os.environ.get("RNSTORE_TORTURE_TMP")
    if explicit:
        return explicit
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        try:
            free = shutil.disk_usage("/dev/shm").free
        except OSError:
            return None
        if free > 3 << 30:
            return "/dev/shm"
    return None


@contextlib.contextmanager
def _scratch_folder(prefix: str, fallback: Callable[[], Path]) -> Iterator[Path]:
    """A fresh folder below the scratch base, removed after; `fallback()`
    (a pytest tmp folder, which pytest removes) when there is no base."""
    base = _scratch_base()
    if base is None:
        yield fallback()
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield folder
    finally:
        rmtree(folder)


@pytest.fixture
def scratch(tmp_path) -> Path:
    """A fresh folder for workspaces (tmpfs when available); removed after."""
    with _scratch_folder("rnstore-torture-", lambda: tmp_path) as folder:
        yield folder


@pytest.fixture(scope="session")
def session_scratch(tmp_path_factory) -> Path:
    with _scratch_folder("rnstore-torture-session-", lambda: tmp_path_factory.mktemp("torture")) as folder:
        yield folder
