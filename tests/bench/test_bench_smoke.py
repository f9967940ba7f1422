"""Smoke test of the benchmark harness (run_bench.py --quick: small tree, 1 run, rnstore + git).

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
