#!/usr/bin/env python3
"""The library keeps its host's cycle collector on; does that cost the CLI its speed, or the library its memory?

    python tests/bench/library_bench.py [--tree medium] [--runs 3]

For each repetition, on a fresh hard-linked copy of the corpus tree (built by
run_bench's corpus builder when missing), a first snapshot and then a no-op
snapshot are taken three ways, each in its own process:

- `cli`: `rnstore init` + `rnstore commit -a` (the CLI pauses the cycle
  collector for its one command, see rnstore/alloc.py);
- `library`: `Repository.init(...).snapshot(...)` from Python with the
  collector on, as a notebook or a training loop calls it;
- `library, paused`: the same call wrapped in `alloc.cycle_collector_paused`.

It prints the median wall time and peak RSS of each, and the ratios
library / cli. This is a benchmark, not a test: it never fails because
something is slow.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import copy_tree, ensure_corpus, rmtree  # noqa: E402

LIBRARY = """
import sys
from rnstore import Repository
from rnstore.alloc import cycle_collector_paused
paused = sys.argv[2] == "paused"
def snapshot(message):
    repo = Repository.open(sys.argv[1])
    return repo.snapshot(message=message, allow_empty=True)
take = cycle_collector_paused(snapshot) if paused else snapshot
Repository.init(sys.argv[1])
take("first")
take("no-op")
"""

MODES = ("cli", "library", "library, paused")


def timed(argv: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {' '.join(argv)} failed: {proc.stderr.read().decode(errors='replace')}")
    return elapsed, usage.ru_maxrss * 1024


def run_mode(mode: str, tree: Path, work: Path) -> tuple[float, int]:
    copy_tree(tree, work, hardlink=True)
    try:
        if mode == "cli":
            rn = [sys.executable, "-m", "rnstore"]
            t_init, rss_init = timed(rn + ["init", "-q"], work)
            t_first, rss_first = timed(rn + ["commit", "-a", "-q", "-m", "first"], work)
            t_noop, rss_noop = timed(rn + ["commit", "-a", "-q", "--allow-empty", "-m", "no-op"], work)
            return t_init + t_first + t_noop, max(rss_init, rss_first, rss_noop)
        return timed([sys.executable, "-c", LIBRARY, str(work),
                      "paused" if mode.endswith("paused") else "on"], work)
    finally:
        rmtree(work)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default="medium", help="small, medium or big (default %(default)s)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    pb = Path(os.environ.get("PB", "/tmp/peerbench"))
    ensure_corpus(pb)
    tree = pb / "corpus" / args.tree
    work = pb / "work" / "library-bench"
    samples: dict[str, list[tuple[float, int]]] = {m: [] for m in MODES}
    for run in range(args.runs):
        for mode in MODES[run % len(MODES):] + MODES[:run % len(MODES)]:  # rotate the first
            samples[mode].append(run_mode(mode, tree, work))
    medians = {m: (statistics.median(t for t, _ in s), statistics.median(r for _, r in s))
               for m, s in samples.items()}
    cli_time, cli_rss = medians["cli"]
    print(f"first + no-op snapshot of {args.tree}, median of {args.runs} (machine: {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f})\n")
    print("| mode | time | vs cli | peak RSS | vs cli |\n|---|---|---|---|---|")
    for mode, (t, rss) in medians.items():
        print(f"| {mode} | {t:.2f} s | {t / cli_time:.2f}x | {rss / 2**20:.0f} MiB | {rss / cli_rss:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
