"""Smoke tests of the benchmark harness (run_bench.py --quick: small tree, 1 run, rnstore + git;
long_history.py --commits 20: rnstore alone).

Skipped unless RNSTORE_BENCH=1: it builds the shared corpus if missing (minutes) and may
apt-get install tools, so CI never runs it. It checks that every timed command succeeded and
every restore/export verified; it never asserts on time.

    RNSTORE_BENCH=1 pytest -m bench tests/bench
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(os.environ.get("RNSTORE_BENCH") != "1",
                       reason="benchmark harness smoke test: set RNSTORE_BENCH=1 to run"),
]

SCRIPT = Path(__file__).with_name("run_bench.py")
LONG_HISTORY = Path(__file__).with_name("long_history.py")


def test_quick_run(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert "| operation |" in proc.stdout  # the Markdown table
    samples = doc["results"]["small"]
    for op in ("first", "noop", "edit"):
        assert {"rnstore", "git"} <= set(samples[op]), op
    bad = [(op, tool, s["cmd"], s.get("error") or s.get("verify_problems"))
           for op, tools in samples.items() for tool, ss in tools.items() for s in ss if not s["valid"]]
    assert not bad, bad
    # git always restores; rnstore's restore is there once `rnstore checkout` exists
    assert samples["restore"]["git"][0]["valid"]
    assert doc["store_sizes"]["small"]["rnstore"]["snapshots"][0]["apparent"] > 0
    assert doc["startup"]["rnstore --version"]["times"]


def test_long_history_short_run(tmp_path):
    """20 releases (downloaded into /tmp/rnstore-long-cache the first time), rnstore alone."""
    out = tmp_path / "long.json"
    proc = subprocess.run([sys.executable, str(LONG_HISTORY), "--commits", "20", "--peers", "", "--runs", "1",
                           "--verify-every", "5", "--work", str(tmp_path / "work"), "--json", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["complete"]
    commits = doc["commits"]["rnstore"]
    assert len(commits) == 20 and all(s["ok"] for s in commits), [s.get("error") for s in commits]
    checks = doc["verified"]["rnstore"]
    assert [c["snapshot"] for c in checks] == [1, 5, 10, 15, 20]
    assert all(c["ok"] for c in checks), checks
    assert doc["store_sizes"]["rnstore:after_gc"]["allocated"] > 0
    assert "| target |" in proc.stdout
