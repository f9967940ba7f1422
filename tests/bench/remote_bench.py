#!/usr/bin/env python3
"""Remotes benchmark: rnstore push / clone / incremental push against restic
backup / restore / incremental backup, both into one S3 server on loopback
(moto's, started here). Prints times, ratios, new keys and peak RSS.

    python tests/bench/remote_bench.py [--tree medium] [--corpus /tmp/peerbench/corpus]
    python tests/bench/remote_bench.py --gc-cost 1000    # gc --remote on 1,000 pushed snapshots
    python tests/bench/remote_bench.py --rewrite-cost    # what rewriting a partly live pack costs

Needs the benchmark corpus (bash tests/bench/make_corpus.sh), restic
(apt-get install restic) and moto[server] + s3fs (pip install -e '.[test]').
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto() -> tuple[int, subprocess.Popen]:
    """A moto S3 server on a free loopback port, accepting connections."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port, server
        except OSError:
            time.sleep(0.1)


def timed(args, cwd, env) -> tuple[float, int, float]:
    """(seconds, peak RSS in MB, CPU seconds: user + system) of one
    command, which must succeed."""
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, args))}\n{proc.stderr[-3000:]}")
    rss_kb, user, system = proc.stderr.strip().splitlines()[-1].split()
    return elapsed, int(rss_kb) // 1024, round(float(user) + float(system), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", default="medium")
    parser.add_argument("--corpus", default=os.environ.get("PB", "/tmp/peerbench") + "/corpus")
    parser.add_argument("--json", default="/tmp/rnstore-remote-bench.json")
    parser.add_argument("--tmpfs", default="/dev/shm",
                        help="also clone and restore into this tmpfs, which measures each tool's own "
                             "work without the disk's (default %(default)s; '' to skip)")
    options = parser.parse_args()
    source = Path(options.corpus) / options.tree
    if not source.is_dir():
        raise SystemExit(f"no corpus at {source}: run bash tests/bench/make_corpus.sh")
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed: apt-get install restic")
    port, server = start_moto()
    endpoint = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="rnstore-remote-bench-"))
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "benchsecret", "AWS_DEFAULT_REGION": "us-east-1",
               "RESTIC_PASSWORD": "bench", "RNSTORE_PROGRESS": "0"}
        os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                               "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        import s3fs
        fs = s3fs.S3FileSystem(use_listings_cache=False)
        fs.mkdir("rnstore-bench")
        fs.mkdir("restic-bench")
        rn = [sys.executable, "-m", "rnstore"]
        results: dict[str, dict] = {}

        ws = work / "rn"
        shutil.copytree(source, ws, symlinks=True)
        subprocess.run([*rn, "init", "-q", "--no-default-ignore"], cwd=ws, env=env, check=True)
        results["rnstore commit"] = dict(zip(("s", "rss_mb", "cpu_s"), timed([*rn, "commit", "-a", "-q", "--force", "-m", "1"], ws, env)))
        subprocess.run([*rn, "remote", "add", "origin", "s3://rnstore-bench/b"], cwd=ws, env=env, check=True)
        results["rnstore push"] = dict(zip(("s", "rss_mb", "cpu_s"), timed([*rn, "push", "-q", "origin"], ws, env)))
        first_keys = set(fs.find("rnstore-bench"))
        results["rnstore push"]["keys"] = len(first_keys)
        results["rnstore clone"] = dict(zip(("s", "rss_mb", "cpu_s"), timed(
            [*rn, "clone", "-q", "s3://rnstore-bench/b", str(work / "rn-clone")], work, env)))
        shallow = Path(tempfile.mkdtemp(prefix="rnstore-remote-bench-", dir=options.tmpfs)) if options.tmpfs else None
        if shallow is not None:
            results["rnstore clone (tmpfs)"] = dict(zip(("s", "rss_mb", "cpu_s"), timed(
                [*rn, "clone", "-q", "s3://rnstore-bench/b", str(shallow / "rn-clone")], work, env)))
            shutil.rmtree(shallow / "rn-clone")
        # gen.py edit walks everything under DIR: the workspace's .rnstore goes aside meanwhile
        (ws / ".rnstore").rename(work / "rnstore.aside")
        subprocess.run([sys.executable, str(HERE / "gen.py"), "edit", str(ws)], check=True)
        (work / "rnstore.aside").rename(ws / ".rnstore")
        results["rnstore commit (edit)"] = dict(zip(("s", "rss_mb", "cpu_s"), timed([*rn, "commit", "-a", "-q", "--force", "--allow-empty", "-m", "2"], ws, env)))
        results["rnstore push (edit)"] = dict(zip(("s", "rss_mb", "cpu_s"), timed([*rn, "push", "-q", "origin"], ws, env)))
        results["rnstore push (edit)"]["new_keys"] = len(set(fs.find("rnstore-bench")) - first_keys)

        rs = work / "restic"
        shutil.copytree(source, rs, symlinks=True)
        repo = ["restic", "-q", "-r", f"s3:{endpoint}/restic-bench"]
        subprocess.run([*repo, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
        results["restic backup"] = dict(zip(("s", "rss_mb", "cpu_s"), timed([*repo, "backup", "--compression", "auto", "."], rs, env)))
        first_restic = set(fs.find("restic-bench"))
        results["restic restore"] = dict(zip(("s", "rss_mb", "cpu_s"), timed(
            [*repo, "restore", "latest", "--target", str(work / "restic-restore")], work, env)))
        if shallow is not None:
            results["restic restore (tmpfs)"] = dict(zip(("s", "rss_mb", "cpu_s"), timed(
                [*repo, "restore", "latest", "--target", str(shallow / "restic-restore")], work, env)))
            shutil.rmtree(shallow)
        subprocess.run([sys.executable, str(HERE / "gen.py"), "edit", str(rs)], check=True)
        results["restic backup (edit)"] = dict(zip(("s", "rss_mb", "cpu_s"), timed(
            [*repo, "backup", "--compression", "auto", "."], rs, env)))
        results["restic backup (edit)"]["new_keys"] = len(set(fs.find("restic-bench")) - first_restic)

        ratios = {
            "first push / restic backup": results["rnstore push"]["s"] / results["restic backup"]["s"],
            "commit + first push / restic backup": (results["rnstore commit"]["s"] + results["rnstore push"]["s"])
            / results["restic backup"]["s"],
            "clone / restic restore": results["rnstore clone"]["s"] / results["restic restore"]["s"],
            **({"clone / restic restore, both into a tmpfs": results["rnstore clone (tmpfs)"]["s"]
                / results["restic restore (tmpfs)"]["s"]} if shallow is not None else {}),
            "incremental push / restic backup (edit)": results["rnstore push (edit)"]["s"]
            / results["restic backup (edit)"]["s"],
            "commit + incremental push / restic backup (edit)":
                (results["rnstore commit (edit)"]["s"] + results["rnstore push (edit)"]["s"])
                / results["restic backup (edit)"]["s"],
        }
        for name, row in results.items():
            extra = "".join(f"  {k}={v}" for k, v in row.items() if k not in ("s", "rss_mb", "cpu_s"))
            print(f"{name:<28} {row['s']:7.2f} s  CPU {row['cpu_s']:6.2f} s  peak RSS {row['rss_mb']:4d} MB{extra}")
        for name, value in ratios.items():
            print(f"{name:<50} {value:5.2f}x")
        Path(options.json).write_text(json.dumps({"tree": options.tree, "results": results,
                                                  "ratios": ratios}, indent=2))
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__" and "--gc-cost" not in sys.argv and "--rewrite-cost" not in sys.argv:
    main()


class _LoopbackS3:
    """A moto server, its credentials in os.environ, and a scratch folder;
    removed on exit. One per process: fsspec keeps one client (one
    endpoint) per process."""

    def __enter__(self):
        sys.path.insert(0, str(HERE.parent))
        self.port, self.server = start_moto()
        self.work = Path(tempfile.mkdtemp(prefix="rnstore-remote-cost-"))
        os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}", "AWS_ACCESS_KEY_ID": "bench",
                           "AWS_SECRET_ACCESS_KEY": "benchsecret", "AWS_DEFAULT_REGION": "us-east-1"})
        return self

    def bucket(self, name: str) -> str:
        import s3fs
        s3fs.S3FileSystem(use_listings_cache=False).mkdir(name)
        return name

    def __exit__(self, *exc):
        self.server.kill()
        self.server.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def rewrite_cost(fractions=(0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9), files: int = 400, size: int = 8000) -> None:
    """gc --remote on one pack of which `fraction` is still live, rewritten
    (threshold forced to 1.0) or kept whole: seconds, requests and bytes
    moved per byte freed. This is what REWRITE_BELOW in remote/collect.py
    rests on."""
    from rnstore import Repository
    from rnstore.remote import collect, transfer
    print("live | rewrite: s, requests, MB moved, MB freed, moved/freed | keep whole: s, requests")
    with _LoopbackS3() as s3:
        for number, fraction in enumerate(fractions):
            bucket = s3.bucket(f"rewrite-{number}")
            ws = s3.work / f"ws{number}"
            repo = Repository.init(ws, default_ignore=False)
            for i in range(files):
                (ws / f"f{i:04}.bin").write_bytes(os.urandom(size))
            transfer.add_remote(repo, "origin", f"s3://{bucket}/r")
            first = repo.snapshot("all").id
            transfer.push(repo, "origin")
            for i in range(int(files * fraction), files):
                (ws / f"f{i:04}.bin").unlink()
            repo.snapshot("part")
            transfer.push(repo, "origin")
            collect.forget_remote(repo, "origin", [first])
            figures = []
            for threshold in (0.0, 1.0):  # keep whole, then rewrite
                collect.REWRITE_BELOW = threshold
                start = time.monotonic()
                stats = collect.gc_remote(repo, "origin", prune="now")
                figures.append((time.monotonic() - start, stats))
            (keep_s, kept), (rewrite_s, rewritten) = figures
            assert rewritten.rewritten_packs >= 1 and kept.rewritten_packs == 0, (rewritten, kept)
            moved = 2 * fraction * files * size  # the live frames, downloaded and uploaded
            print(f"{fraction:4.2f} | {rewrite_s:5.2f} s {rewritten.requests:4} req "
                  f"{moved / 1e6:5.2f} MB {rewritten.freed_bytes / 1e6:5.2f} MB "
                  f"{moved / max(rewritten.freed_bytes, 1):5.2f} | {keep_s:5.2f} s {kept.requests:4} req")


def gc_cost(count: int) -> None:
    """What `gc --remote` costs on a bucket holding `count` pushed snapshots
    (each one file changed in a 200-file tree), half of them forgotten."""
    import random
    sys.path.insert(0, str(HERE.parent))
    from helpers.remote import write_files
    from rnstore import Repository
    from rnstore.remote import collect, transfer
    port, server = start_moto()
    work = Path(tempfile.mkdtemp(prefix="rnstore-gc-cost-"))
    try:
        os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
                           "AWS_SECRET_ACCESS_KEY": "benchsecret", "AWS_DEFAULT_REGION": "us-east-1"})
        import s3fs
        s3fs.S3FileSystem(use_listings_cache=False).mkdir("gc-cost")
        repo = Repository.init(work / "ws", default_ignore=False)
        write_files(work / "ws", 200, size=2000)
        transfer.add_remote(repo, "origin", "s3://gc-cost/b")
        rng = random.Random(0)
        start = time.monotonic()
        for n in range(count):
            # one file rewritten each time (a metrics log, say): a forgotten
            # snapshot leaves nothing any other needs
            (work / "ws" / "d0" / "f0.txt").write_bytes(rng.randbytes(3000))
            repo.snapshot(f"run {n}")
            transfer.push(repo, "origin")
        pushing = time.monotonic() - start
        collect.forget_remote(repo, "origin", keep_last=count // 2)
        start = time.monotonic()
        stats = collect.gc_remote(repo, "origin", prune="now")
        first = time.monotonic() - start
        start = time.monotonic()
        again = collect.gc_remote(repo, "origin", prune="now")
        second = time.monotonic() - start
        print(f"{count} pushes: {pushing:.1f} s; gc --remote after forgetting half: {first:.1f} s, "
              f"{stats.requests} requests, {stats.deleted_packs} packs deleted, {stats.kept_packs} kept; "
              f"a second gc: {second:.1f} s, {again.requests} requests")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__" and "--gc-cost" in sys.argv:
    gc_cost(int(sys.argv[sys.argv.index("--gc-cost") + 1]))
if __name__ == "__main__" and "--rewrite-cost" in sys.argv:
    rewrite_cost()
