#!/usr/bin/env python3
"""How deep may a chain of deltas be? Store size against read time, by depth.

    python tests/bench/delta_depth.py [--releases 50] [--depths 0,1,2,5,10,20,50] [--runs 5]

Takes the last RELEASES source releases of a real project (hypothesis, from
PyPI: consecutive versions of the same files), stores every distinct version
of every file in one pack per depth, the way a repack does it (each path's
newest version whole, each older one a delta against the next newer one, a
chain restarting whole after DEPTH deltas; depth 0 stores everything whole),
and reports per depth: the pack's size, and the median time to read (rebuild
and verify) every file of the newest release and of the oldest one.

This is a benchmark, not a test: it never fails because something is slow.
The sdists are kept in $RNSTORE_BENCH_CACHE (default /tmp/rnstore-delta-bench).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from rnstore import codec
from rnstore.repack import base_index
from rnstore.store import DiskStore

PROJECT = "hypothesis"
#: --layout -> the radix of repack.base_index (chain: each version against the next newer one)
RADIX = {"tree": 2, "hex": 16}


def download(releases: int, folder: Path) -> list[Path]:
    """The last `releases` sdists of PROJECT, oldest first (cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    index = json.load(urllib.request.urlopen(f"https://pypi.org/pypi/{PROJECT}/json", timeout=60))
    found = []
    for files in index["releases"].values():
        for entry in files:
            if entry["packagetype"] == "sdist" and entry["filename"].endswith(".tar.gz") \
                    and not entry["yanked"]:
                found.append((entry["upload_time_iso_8601"], entry["filename"],
                              urllib.parse.urljoin(f"https://pypi.org/pypi/{PROJECT}/json", entry["url"])))
    paths = []
    for _, name, url in sorted(found)[-releases:]:
        path = folder / name
        if not path.exists():
            with urllib.request.urlopen(url, timeout=120) as response:
                path.write_bytes(response.read())
        paths.append(path)
    return paths


def release_files(sdist: Path) -> dict[str, bytes]:
    """path (without the top folder) -> bytes of every regular file."""
    files = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.isfile():
                files[member.name.split("/", 1)[-1]] = tar.extractfile(member).read()
    return files


def pack_frames(releases: list[dict[str, bytes]], depth: int, layout: str = "chain"
                ) -> tuple[list[tuple[str, bytes]], int]:
    """Every distinct version of every path: newest whole, older ones deltas
    of the next newer one, at most `depth` deltas per chain; (frames in
    writing order, how many are deltas)."""
    by_path: dict[str, list[bytes]] = {}
    for files in releases:
        for path, data in files.items():
            versions = by_path.setdefault(path, [])
            if not versions or versions[-1] != data:
                versions.append(data)
    frames, written, deltas = [], set(), 0
    for versions in by_path.values():
        # newest first; chain: each against the one before it here; tree and hex: version i
        # against version repack.base_index(i, 2 or 16) (depth = i's digits in that base, added up)
        chain: list[tuple[str, bytes, int]] = []  # (id, payload, depth) since the last whole one
        for data in reversed(versions):
            oid = hashlib.sha256(data).hexdigest()
            if oid in written:
                continue
            written.add(oid)
            i = len(chain)
            frame, my_depth = None, 0
            if chain and len(data) <= codec.DELTA_MAX_SIZE:
                radix = RADIX.get(layout)
                base_id, base_data, base_depth = chain[base_index(i, radix)] if radix else chain[-1]
                if base_depth < depth:
                    frame = codec.encode_delta("blob", data, base_id, base_data, 3)
                    if len(frame) >= len(codec.compress("blob", data, 3)):
                        frame = None  # not worth it
                    my_depth = base_depth + 1
            if frame is None:
                frame, chain, my_depth = codec.compress("blob", data, 3), [], 0
            else:
                deltas += 1
            chain.append((oid, data, my_depth))
            frames.append((oid, frame))
    return frames, deltas


def read_release(store_root: Path, files: dict[str, bytes]) -> float:
    """Seconds to read and verify every file of a release from a store
    opened afresh (no cache carried over)."""
    store = DiskStore(store_root)
    ids = [hashlib.sha256(data).hexdigest() for data in files.values()]
    started = time.perf_counter()
    for oid in ids:
        store.get(oid, "blob")
    return time.perf_counter() - started


def read_everything(store_root: Path, ids: list[str]) -> float:
    """Seconds to read and verify every object, newest versions first, as
    fsck or a repack does, through one store."""
    store = DiskStore(store_root)
    started = time.perf_counter()
    for oid in ids:
        store.get(oid, "blob")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=50)
    parser.add_argument("--depths", default="0,1,2,5,10,20,50")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layout", choices=["chain", "tree", "hex"], default="chain",
                        help="chain: each version against the next newer one; tree: version i "
                             "(newest = 0) against version i - lowbit(i), so depth grows as log2; "
                             "hex: against i less its lowest nonzero hex digit's place (what a repack does)")
    args = parser.parse_args()
    cache = Path(os.environ.get("RNSTORE_BENCH_CACHE", "/tmp/rnstore-delta-bench"))
    sdists = download(args.releases, cache)
    releases = [release_files(path) for path in sdists]
    distinct = {hashlib.sha256(d).hexdigest() for files in releases for d in files.values()}
    raw = sum(len(d) for d in {hashlib.sha256(d).hexdigest(): d
                               for files in releases for d in files.values()}.values())
    print(f"{len(releases)} releases of {PROJECT} ({sdists[0].name} .. {sdists[-1].name}): "
          f"{len(distinct):,} distinct files, {raw / 1e6:.1f} MB; "
          f"{sum(p.stat().st_size for p in sdists) / 1e6:.1f} MB of sdists; load {os.getloadavg()[0]:.1f}")
    print()
    print("| depth | deltas | pack MB | newest read s | oldest read s | newest / depth 0 "
          "| oldest / depth 0 | all objects read s |")
    print("|---|---|---|---|---|---|---|---|")
    baseline = None
    with tempfile.TemporaryDirectory(prefix="rnstore-delta-depth-") as tmp:
        for depth in [int(d) for d in args.depths.split(",")]:
            root = Path(tmp) / f"depth{depth}"
            root.mkdir()
            frames, deltas = pack_frames(releases, depth, args.layout)
            store = DiskStore(root, fsync=False)
            where = store.write_pack(frames, max_depth=max(depth, 0))
            size = os.path.getsize(where)
            newest, oldest, everything = [], [], []
            for _ in range(args.runs):  # interleaved, so load hits both alike
                newest.append(read_release(root, releases[-1]))
                oldest.append(read_release(root, releases[0]))
                everything.append(read_everything(root, [oid for oid, _ in frames]))
            row = (statistics.median(newest), statistics.median(oldest))
            baseline = baseline or row
            print(f"| {depth} | {deltas:,} | {size / 1e6:.2f} | {row[0]:.3f} | {row[1]:.3f} "
                  f"| {row[0] / baseline[0]:.2f} | {row[1] / baseline[1]:.2f} "
                  f"| {statistics.median(everything):.3f} |", flush=True)


if __name__ == "__main__":
    main()
