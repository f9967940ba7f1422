"""Repacking figures (issue 13, items 2 and 3): how an object lookup costs
with the number of packs, and what `gc` does to a store of many commits.

    python tests/bench/repack_bench.py [--commits 300] [--files-per-commit 70] [--runs 5]

1. Lookup cost against pack count: a store of P packs of 64 objects each
   (P = 1 .. 300), then `has()` of ids that are absent (a miss: every pack
   searched, then the folder looked at again) and of packed ids (a hit),
   in one process with the packs loaded. Microseconds per lookup, median
   of --runs.
2. A workspace of --commits commits, each changing --files-per-commit
   files (>= 64 makes each commit a pack, as a CI store of big commits
   gets; fewer stay loose): packs, loose objects and lookup cost before
   and after `gc`, and the time of that gc (the repack).

Run it with another rnstore on PYTHONPATH (`PYTHONPATH=/path/to/old`) for
the figures before a change. Library calls in this one process: the
figures are of the store, not of process start-up.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rnstore.repo import Repository
from rnstore.store import DiskStore


def lookup_us(store: DiskStore, ids: list[str], runs: int) -> float:
    """Median over `runs` of the mean microseconds of one has() per id."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for oid in ids:
            store.has(oid)
        samples.append((time.perf_counter() - start) / len(ids) * 1e6)
    return statistics.median(samples)


def absent_ids(n: int) -> list[str]:
    return [hashlib.sha256(b"absent %d" % i).hexdigest() for i in range(n)]


def packs_table(base: Path, runs: int) -> None:
    print("packs  objects  miss us/lookup  hit us/lookup")
    for count in (1, 5, 10, 20, 50, 100, 300):
        root = base / f"packs{count}"
        store = DiskStore(root, fsync=False)
        stored = []
        for p in range(count):
            with store.batch():
                for i in range(64):
                    stored.append(store.put("blob", b"pack %d object %d" % (p, i)))
        reader = DiskStore(root, fsync=False)  # a fresh process's view
        reader.has(stored[0])
        time.sleep(0.2)  # past the folder's racy window: its listing can be trusted
        miss = lookup_us(reader, absent_ids(2000), runs)
        hit = lookup_us(reader, stored[::max(1, len(stored) // 2000)], runs)
        print(f"{count:5d}  {len(stored):7d}  {miss:14.1f}  {hit:13.1f}")
        shutil.rmtree(root)


def store_counts(objects: Path) -> tuple[int, int]:
    packs = len(list((objects / "pack").glob("*.pack"))) if (objects / "pack").is_dir() else 0
    loose = sum(1 for p in objects.glob("??/*") if len(p.name) == 62)
    return packs, loose


def commits_table(base: Path, commits: int, files: int, runs: int) -> None:
    ws = base / "ws"
    ws.mkdir()
    Repository.init(ws, default_ignore=False)
    repo = Repository.open(ws)
    repo.config.set("core.fsync", "false", durable=False)
    repo.config.set("gc.auto", "false", durable=False)
    (ws / "src").mkdir()
    width = max(files, 1) * 3
    for i in range(width):
        (ws / "src" / f"f{i:04d}.py").write_text(f"# file {i}\n" + "x = 1\n" * 50)
    start = time.perf_counter()
    for c in range(commits):
        for k in range(files):
            i = (c * files + k) % width
            path = ws / "src" / f"f{i:04d}.py"
            path.write_text(path.read_text() + f"y{c} = {c}\n")
        Repository.open(ws).commit(f"commit {c}", all=True)
    made = time.perf_counter() - start
    objects = ws / ".rnstore" / "objects"
    ids = [oid for oid in Repository.open(ws).store][:2000]

    def lookups() -> tuple[float, float]:
        store = Repository.open(ws).store
        store.has(ids[0])
        time.sleep(0.2)
        return lookup_us(store, absent_ids(2000), runs), lookup_us(store, ids, runs)

    def sizes() -> tuple[int, int]:
        files = [f.stat() for f in objects.rglob("*") if f.is_file()]
        return sum(st.st_size for st in files), sum(st.st_blocks * 512 for st in files)

    before = store_counts(objects), lookups(), sizes()
    start, cpu = time.perf_counter(), time.process_time()
    stats = Repository.open(ws).gc()
    repack_s, repack_cpu = time.perf_counter() - start, time.process_time() - cpu
    after = store_counts(objects), lookups(), sizes()
    print(f"{commits} commits of {files} changed files each ({made:.1f} s to make)")
    print("         packs  loose   miss us  hit us   apparent bytes  allocated bytes")
    for name, ((packs, loose), (miss, hit), (size, allocated)) in (("before", before), ("after", after)):
        print(f"{name:7s} {packs:6d} {loose:6d} {miss:9.1f} {hit:7.1f} {size:16,d} {allocated:16,d}")
    print(f"gc (mark, sweep, repack): {repack_s:.2f} s, {repack_cpu:.2f} s of CPU; "
          f"repacked {getattr(stats, 'repacked_objects', '?')} objects")
    start = time.perf_counter()
    Repository.open(ws).gc()
    print(f"a second gc (nothing to repack): {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--files-per-commit", type=int, default=70)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-packs-table", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="rnstore-repack-bench-"))
    try:
        print(f"load: {os.getloadavg()[0]:.1f} (1 min average) on {os.cpu_count()} cores")
        if not args.skip_packs_table:
            packs_table(base, args.runs)
        commits_table(base, args.commits, args.files_per_commit, args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
