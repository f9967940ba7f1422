#!/usr/bin/env python3
"""Long-history benchmark: replay the last N releases of a real project into one workspace.

One command from a clean clone (see tests/bench/README.md):

    python tests/bench/long_history.py [--commits 1000] [--runs 3] [--peers git,restic,borg]

The history is the project `hypothesis` as published on PyPI: it makes a release for every pull
request it merges, so its consecutive sdists are its first-parent history (one merged PR each).
The last N sdists up to --until (default 6.170.27, so the history does not move when new releases
come out) are downloaded once into a cache folder, checked against PyPI's sha256 digests, and
replayed in version order:

1. each release replaces the working files of one workspace per tool (files the release lacks are
   deleted; a file is rewritten only when its bytes or exec bit changed, as `git checkout` does);
   then rnstore (`commit -a -q -m VERSION`), rnstore with `pack.deltas false` (when this build has
   deltas), git (`add -A -f . && commit`), restic (`backup`, one snapshot per release) and borg
   (`create`, one archive per release) each take one snapshot, timed, tools in rotating order;
   after each rnstore commit, `rnstore gc --auto -q` runs (timed apart) and the packs are counted;
2. then: `log`, `du` (--runs times), `gc` and `fsck` (once), `git gc` and `git gc --aggressive`,
   checkout of the newest and of the oldest snapshot into a fresh --target folder (--runs times);
3. every --verify-every'th snapshot (and the first and the last) is checked out and compared with
   the release it came from, byte for byte (path, type, size, sha256, exec bit, symlink target);
4. prints Markdown tables (store sizes apparent/allocated and ratios, median times, the issue's
   targets met or missed) and writes every sample as JSON (default /tmp/rnstore-long.json).

This is a benchmark, not a test: it never fails because something is slow or big.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402 - the shared harness: runner, tools, sizes, manifests
from run_bench import NOTES, capture, fmt_s, log, loud, manifest, compare, note, notes_section, rmtree, store_size  # noqa: E402

PROJECT = "hypothesis"
INDEX_URL = f"https://pypi.org/pypi/{PROJECT}/json"
#: The newest release replayed by default: pinned, so that reruns replay the same history.
UNTIL = "6.170.27"
KNOWN_PEERS = ("git", "restic", "borg")
KEEP_TOP = (".rnstore", ".git")  # never touched when a release replaces the working files


# --------------------------------------------------------------------------- the history

def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def load_index(cache: Path, until: str) -> dict:
    """PyPI's JSON for the project, from the cache when it already lists `until`."""
    path = cache / f"{PROJECT}.json"
    if path.exists():
        doc = json.loads(path.read_text())
        if until in doc.get("releases", {}):
            return doc
    log(f"downloading {INDEX_URL} ...")
    with urllib.request.urlopen(INDEX_URL, timeout=60) as resp:
        data = resp.read()
    doc = json.loads(data)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return doc


def pick_releases(doc: dict, until: str, n: int) -> list[dict]:
    """The last `n` sdists up to and including `until`, oldest first. Versions that are not plain
    numbers (pre-releases) are left out: the project's main line is what is replayed."""
    if until not in doc["releases"]:
        sys.exit(f"error: {PROJECT} has no release {until!r} on PyPI")
    out, skipped = [], []
    for version, files in doc["releases"].items():
        sdists = [f for f in files if f["packagetype"] == "sdist" and not f.get("yanked")]
        if not sdists:
            continue
        if not re.fullmatch(r"\d+(\.\d+)*", version):
            skipped.append(version)
            continue
        f = sdists[0]
        out.append({"version": version, "filename": f["filename"], "sha256": f["digests"]["sha256"],
                    "size": f["size"], "uploaded": f["upload_time_iso_8601"],
                    # PyPI gives this URL relative to the JSON document's
                    "url": urllib.parse.urljoin(INDEX_URL, f["url"])})
    if skipped:
        note(f"left out {len(skipped)} release(s) that are not plain version numbers: {', '.join(skipped[:5])}")
    out.sort(key=lambda r: version_key(r["version"]))
    out = [r for r in out if version_key(r["version"]) <= version_key(until)]
    return out[-n:]


def sha256_of(path: Path) -> str:
    return rb.sha256_file(str(path))


def download(releases: list[dict], cache: Path) -> None:
    """Each sdist into the cache (once), verified against PyPI's sha256; a bad copy is fetched
    again, a bad download is an error."""
    def fetch(rel: dict) -> str | None:
        dest = cache / rel["filename"]
        if dest.exists() and sha256_of(dest) == rel["sha256"]:
            return None
        tmp = cache / f".{rel['filename']}.{os.getpid()}.part"
        for attempt in range(3):
            try:
                with urllib.request.urlopen(rel["url"], timeout=120) as resp, open(tmp, "wb") as out:
                    shutil.copyfileobj(resp, out, 1 << 20)
            except OSError as exc:
                if attempt == 2:
                    raise RuntimeError(f"cannot download {rel['url']}: {exc}") from exc
                time.sleep(2)
                continue
            if sha256_of(tmp) == rel["sha256"]:
                os.replace(tmp, dest)
                return rel["filename"]
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{rel['url']}: sha256 differs from PyPI's digest after 3 tries")

    cache.mkdir(parents=True, exist_ok=True)
    missing = [r for r in releases if not (cache / r["filename"]).exists()]
    if missing:
        log(f"downloading {len(missing)} sdist(s) into {cache} ...")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = [x for x in pool.map(fetch, releases) if x]
    log(f"history: {len(releases)} sdists in {cache} (sha256 verified; {len(got)} downloaded now)")


def extract(archive: Path, dest: Path) -> None:
    """The release's files into `dest` (the sdist's top folder, hypothesis-VERSION/, stripped)."""
    rmtree(dest)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", str(archive), "--strip-components=1", "--no-same-owner",
                    "-C", str(dest)], check=True)


def replace_files(src: Path, dst: Path) -> dict:
    """Make `dst` hold what `src` holds (KEEP_TOP entries of `dst` aside). A file is rewritten,
    with a new inode and mtime, only when its bytes, type or exec bit changed; what `src` lacks
    is deleted. Returns counts of added, changed and deleted files."""
    want = {}
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            r = os.path.normpath(os.path.join(rel, name))
            st = os.lstat(p)
            want[r] = ("l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f", p, st)
    counts = {"added": 0, "changed": 0, "deleted": 0}
    # delete, deepest first, what the release lacks or holds as another type
    for dirpath, dirnames, filenames in os.walk(dst, topdown=False):
        rel = os.path.relpath(dirpath, dst)
        if rel.split(os.sep)[0] in KEEP_TOP:
            continue
        top = rel == "."
        for name in filenames + dirnames:
            if top and name in KEEP_TOP:
                continue
            r = os.path.normpath(os.path.join(rel, name))
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
            if r in want and want[r][0] == kind:
                continue
            if kind == "d":
                rmtree(Path(p))
            else:
                os.unlink(p)
                counts["deleted"] += 1
    for r in sorted(want):
        kind, p, st = want[r]
        d = os.path.join(dst, r)
        if kind == "d":
            os.makedirs(d, exist_ok=True)
            continue
        try:
            have = os.lstat(d)
        except FileNotFoundError:
            have = None
        if kind == "l":
            target = os.readlink(p)
            if have is not None and os.readlink(d) == target:
                continue
            tmp = d + ".replace-tmp"
            os.symlink(target, tmp)
            os.replace(tmp, d)
        else:
            if (have is not None and have.st_size == st.st_size
                    and bool(have.st_mode & stat.S_IXUSR) == bool(st.st_mode & stat.S_IXUSR)
                    and _same_bytes(p, d)):
                continue
            tmp = d + ".replace-tmp"
            shutil.copyfile(p, tmp)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.replace(tmp, d)
        counts["changed" if have is not None else "added"] += 1
    return counts


def _same_bytes(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


# --------------------------------------------------------------------------- tools

class Rnstore(rb.Rnstore):
    """rnstore on the replayed workspace; `deltas=False` is the same with `pack.deltas false`."""

    def __init__(self, work, env, exe, *, deltas: bool):
        super().__init__(work, env, exe)
        self.deltas = deltas
        if not deltas:
            self.name = "rnstore-nodelta"
            self.work = work / self.name
        self.label = "rnstore" if deltas else "rnstore, no deltas"
        self.ids: list[str] = []

    def setup(self, r):
        super().setup(r)
        # gc --auto runs in the foreground after each commit instead (timed apart, see replay)
        if r.run([self.exe, "config", "gc.auto", "false"], self.tree, self.env, label="setup")["rc"] != 0:
            note("`rnstore config gc.auto false` failed: commits may start gc --auto in the background")
        if not self.deltas:
            res = r.run([self.exe, "config", "pack.deltas", "false"], self.tree, self.env, label="setup")
            if res["rc"] != 0:
                raise RuntimeError("`rnstore config pack.deltas false` failed")

    def commit(self, version: str):
        return [self.exe, "commit", "-a", "-q", "-m", version], self.tree, (0,)

    def pack_count(self) -> dict:
        pack = self.tree / ".rnstore" / "objects" / "pack"
        packs = len(list(pack.glob("*.pack"))) if pack.is_dir() else 0
        files = len(list(pack.iterdir())) if pack.is_dir() else 0
        loose = sum(len(os.listdir(d)) for d in (self.tree / ".rnstore" / "objects").iterdir()
                    if d.is_dir() and len(d.name) == 2)
        return {"packs": packs, "pack_folder_files": files, "loose": loose}


class Git(rb.Git):
    def commit(self, version: str):
        return f"git add -A -f . && git commit -q -m {shlex.quote(version)}", self.tree, (0,)

    def pack_paths(self) -> list[Path]:
        return [self.store / "objects" / "pack"]


class Restic(rb.Restic):
    def commit(self, version: str):
        return ["restic", "backup", "-q", "--compression", "auto", "--tag", version, "."], self.tree, (0,)


class Borg(rb.Borg):
    def commit(self, version: str):
        return ["borg", "create", f"::{version}", "."], self.tree, (0,)


def rnstore_setting(exe: str, key: str, env: dict, cwd: Path) -> str | None:
    rc, text = capture([exe, "config", key], cwd=cwd, env=env)
    return text.strip() if rc == 0 else None


# --------------------------------------------------------------------------- the benchmark

class LongBench:
    def __init__(self, args, work: Path, cache: Path, releases: list[dict], tools: list, runner: rb.Runner):
        self.args = args
        self.work = work
        self.cache = cache
        self.releases = releases
        self.tools = tools
        self.r = runner
        self.commits: dict[str, list[dict]] = {}    # tool -> one sample per release
        self.gc_auto: dict[str, list[dict]] = {}    # rnstore tool -> one sample per release
        self.ops: dict[str, dict[str, list[dict]]] = {}  # op -> tool -> samples
        self.sizes: dict[str, dict] = {}             # label -> store_size
        self.changes: list[dict] = []
        self.verified: dict[str, list[dict]] = {}
        self.settings: dict = {}
        self.done = 0

    def timed(self, tool, spec, what: str, *, stdout_file: Path | None = None) -> dict:
        cmd, cwd, ok = spec
        os.sync()  # earlier writes (the new release, other tools) are not flushed during this timing
        res = self.r.run(cmd, cwd, tool.env, ok=ok, stdout_file=stdout_file, label=f"{what}-{tool.name}")
        res["valid"] = res["ok"]
        if not res["ok"]:
            loud(f"{tool.name} {what} FAILED (exit {res['rc']}): {res['cmd']}\n{res.get('error', '')}")
        return res

    def op(self, name: str, tool, spec, **kw) -> dict:
        res = self.timed(tool, spec, name, **kw)
        self.ops.setdefault(name, {}).setdefault(tool.name, []).append(res)
        log(f"  {name:22} {tool.name:16} {res['wall']:8.3f} s  rss {res['maxrss_kb'] / 1024:6.1f} MB"
            + ("" if res["ok"] else "  FAILED"))
        return res

    # ------------------------------------------------------------------ replay

    def setup(self) -> None:
        alive = []
        for t in self.tools:
            t.reset()
            t.tree = t.work / "ws"
            t.tree.mkdir(parents=True)
            try:
                t.setup(self.r)
                alive.append(t)
            except RuntimeError as exc:
                if isinstance(t, Rnstore) and not t.deltas:
                    self.settings["deltas"] = "not available in this build"
                    note("deltas: not available in this build (`rnstore config pack.deltas false` fails): "
                         "rnstore's store is the store without deltas")
                else:
                    loud(f"{t.name} setup failed: {exc}")
                rmtree(t.work)
        self.tools = alive

    def replay(self) -> None:
        stage = self.work / "release"
        n = len(self.releases)
        t0 = time.time()
        for i, rel in enumerate(self.releases, 1):
            extract(self.cache / rel["filename"], stage)
            counts = None
            for t in self.tools:
                c = replace_files(stage, t.tree)
                counts = counts or c
            self.changes.append({"version": rel["version"], **counts})
            k = i % len(self.tools)
            order = self.tools[k:] + self.tools[:k]
            line = []
            for t in list(order):
                out = self.work / "commit.out"
                res = self.timed(t, t.commit(rel["version"]), "commit", stdout_file=out)
                res["version"] = rel["version"]
                self.commits.setdefault(t.name, []).append(res)
                line.append(f"{t.name} {res['wall']:.2f}")
                if not res["ok"]:
                    self.tools.remove(t)
                    continue
                if isinstance(t, Rnstore):
                    first = (out.read_text().split() or [""])[0]
                    if not re.fullmatch(r"[0-9a-f]{64}", first):
                        first = capture([t.exe, "rev-parse", "HEAD"], cwd=t.tree, env=t.env)[1].split()[0]
                    t.ids.append(first)
                    g = self.r.run([t.exe, "gc", "--auto", "-q"], t.tree, t.env, label=f"gc-auto-{t.name}")
                    g.update(t.pack_count())
                    g["valid"] = g["ok"]
                    if not g["ok"]:
                        loud(f"{t.name} gc --auto FAILED (exit {g['rc']}) after {rel['version']}:\n"
                             + g.get("error", ""))
                    self.gc_auto.setdefault(t.name, []).append(g)
            self.done = i
            eta = (time.time() - t0) / i * (n - i)
            log(f"[{i}/{n}] {rel['version']:10} +{counts['added']} ~{counts['changed']} -{counts['deleted']}  "
                + "  ".join(line) + f"  (eta {eta / 60:.0f} min, load {os.getloadavg()[0]:.1f})")
        rmtree(stage)

    # ------------------------------------------------------------------ after the replay

    def measure_sizes(self, when: str) -> None:
        for t in self.tools:
            if when == "after_gc" and not isinstance(t, Rnstore):
                continue
            self.sizes[f"{t.name}:{when}"] = whole = store_size(t.store_paths())
            if isinstance(t, Rnstore):
                # apart: the objects alone, and the store less the reachability cache (a cache
                # du and gc rebuild; its size is another change's, judged apart)
                self.sizes[f"{t.name}:{when}:objects"] = store_size([t.tree / ".rnstore" / "objects"])
                caches = {}
                for name in ("reachability-cache", "du-cache"):  # du's answer cache: left by the du before
                    try:
                        st = os.lstat(t.tree / ".rnstore" / name)
                        caches[name] = {"apparent": st.st_size, "allocated": st.st_blocks * 512, "files": 1}
                    except FileNotFoundError:
                        caches[name] = {"apparent": 0, "allocated": 0, "files": 0}
                    self.sizes[f"{t.name}:{when}:{name}"] = caches[name]
                cache = caches["reachability-cache"]
                self.sizes[f"{t.name}:{when}:no-reachcache"] = {k: whole[k] - cache[k] for k in whole}
                self.sizes[f"{t.name}:{when}:no-caches"] = {k: whole[k] - cache[k] - caches["du-cache"][k]
                                                            for k in whole}

    def reads(self) -> None:
        rns = [t for t in self.tools if isinstance(t, Rnstore)]
        for rep in range(self.args.runs):
            order = rns[rep % len(rns):] + rns[:rep % len(rns)] if rns else []
            for t in order:
                self.op("log", t, ([t.exe, "log"], t.tree, (0,)), stdout_file=self.work / "log.out")
            for t in order:
                self.op("du", t, ([t.exe, "du"], t.tree, (0,)), stdout_file=self.work / "du.out")

    def gc(self) -> None:
        for t in self.tools:
            if isinstance(t, Rnstore):
                self.op("gc", t, ([t.exe, "gc", "--aggressive", "-q"], t.tree, (0,)))
                self.settings.setdefault("packs_after_gc", {})[t.name] = t.pack_count()
        self.measure_sizes("after_gc")
        for t in self.tools:
            if isinstance(t, Rnstore):
                self.op("fsck", t, ([t.exe, "fsck"], t.tree, (0,)), stdout_file=self.work / "fsck.out")
        for t in self.tools:
            if isinstance(t, Git):
                for name, argv in (("git gc", ["git", "gc", "-q"]),
                                   ("git gc --aggressive", ["git", "gc", "--aggressive", "-q"])):
                    if self.op(name, t, (argv, t.tree, (0,)))["ok"]:
                        self.sizes[f"git:{name}"] = store_size(t.store_paths())
                        self.sizes[f"git:{name}:pack"] = store_size(t.pack_paths())

    def checkouts(self) -> None:
        rns = [t for t in self.tools if isinstance(t, Rnstore) and t.ids]
        for rep in range(self.args.runs):
            order = rns[rep % len(rns):] + rns[:rep % len(rns)] if rns else []
            for which in ("newest", "oldest"):
                for t in order:
                    rev = t.ids[-1] if which == "newest" else t.ids[0]
                    target = self.work / "target"
                    rmtree(target)
                    self.op(f"checkout {which}", t,
                            ([t.exe, "checkout", rev, "--target", str(target), "-q"], t.tree, (0,)))
                    rmtree(target)

    def verify(self) -> None:
        n = len(self.releases)
        every = self.args.verify_every
        picks = sorted({1, n, *range(every, n + 1, every)})
        stage, target = self.work / "release", self.work / "target"
        for k in picks:
            rel = self.releases[k - 1]
            extract(self.cache / rel["filename"], stage)
            expected = manifest(stage)
            for t in self.tools:
                if not isinstance(t, Rnstore) or len(t.ids) < k:
                    continue
                rmtree(target)
                res = self.r.run([t.exe, "checkout", t.ids[k - 1], "--target", str(target), "-q"],
                                 t.tree, t.env, label=f"verify-{t.name}")
                if res["ok"]:
                    probs = compare(expected, manifest(target))
                else:
                    probs = [f"checkout failed: {res.get('error', '')}"]
                self.verified.setdefault(t.name, []).append(
                    {"snapshot": k, "version": rel["version"], "ok": not probs, "problems": probs[:20]})
                if probs:
                    loud(f"VERIFICATION FAILED: {t.name} snapshot {k} ({rel['version']}): {len(probs)} problem(s)\n"
                         + "\n".join("    " + p for p in probs[:10]))
        rmtree(stage)
        rmtree(target)
        for name, checks in self.verified.items():
            bad = [c for c in checks if not c["ok"]]
            log(f"verified {name}: {len(checks) - len(bad)}/{len(checks)} snapshots match their release byte for byte")


# --------------------------------------------------------------------------- report

def med(samples: list[dict], key: str = "wall") -> float | None:
    good = [s[key] for s in samples if s.get("valid")]
    return statistics.median(good) if good else None


def spread(samples: list[dict]) -> str:
    good = [s["wall"] for s in samples if s.get("valid")]
    if not good:
        return "**FAILED**" if samples else "—"
    c = fmt_s(statistics.median(good))
    if len(good) > 1:
        c += f" ({fmt_s(min(good))}–{fmt_s(max(good))})"
    if len(good) < len(samples):
        c += f" **{len(samples) - len(good)} FAILED**"
    return c


def windows(n: int) -> tuple[range, range]:
    """Commits 1-100 and 901-1000 for 1,000; the first and last 10% for other lengths."""
    w = max(1, n // 10)
    return range(0, w), range(n - w, n)


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def build_report(b: LongBench, info: dict, args) -> tuple[str, dict]:
    L: list[str] = []
    rels = b.releases[: b.done] if b.done else b.releases
    n = b.done
    names = [t.name for t in b.tools]
    label = {t.name: t.label for t in b.tools}
    versions = [f"{info['tools'].get('rnstore', '?')} (commit {info['rnstore_commit']})",
                *dict.fromkeys(v for k, v in info["tools"].items() if not k.startswith("rnstore"))]
    L.append(f"Machine: {info['nproc']} cores, {info['cpu']}, {info['memory']}, Linux {info['kernel']}, "
             f"Python {info['python']}; " + "; ".join(versions))
    if info.get("loadavg_end"):
        L.append("")
        L.append("Load average (1/5/15 min) at start: " + " ".join(f"{x:.2f}" for x in info["loadavg_start"])
                 + ", at end: " + " ".join(f"{x:.2f}" for x in info["loadavg_end"])
                 + " (other work on the machine shows up as noise).")
    total = sum(c["added"] + c["changed"] for c in b.changes)
    L.append("")
    L.append(f"History: {n} consecutive releases of `{PROJECT}` from PyPI sdists, {rels[0]['version']} "
             f"({rels[0]['uploaded'][:10]}) to {rels[n - 1]['version']} ({rels[n - 1]['uploaded'][:10]}), "
             f"replayed in version order (the project releases on every merged pull request, so its "
             f"releases are its first-parent history); {total} file versions written "
             f"({sum(c['changed'] for c in b.changes[1:])} changed, {sum(c['added'] for c in b.changes[1:])} added, "
             f"{sum(c['deleted'] for c in b.changes)} deleted after the first). One snapshot per release "
             f"and tool; deltas: {b.settings.get('deltas', '?')}.")

    # ---- sizes
    sz = b.sizes
    rn_key = "rnstore:after_gc" if "rnstore:after_gc" in sz else "rnstore:snapshots"
    rn_alloc = sz.get(rn_key, {}).get("allocated")
    rows = [("rnstore, before gc", "rnstore:snapshots"), ("rnstore, after `gc`", "rnstore:after_gc"),
            ("rnstore, after `gc`, less reachability-cache", "rnstore:after_gc:no-reachcache"),
            ("rnstore, after `gc`, less both caches (reachability-cache, du-cache)", "rnstore:after_gc:no-caches"),
            ("rnstore, after `gc`: reachability-cache", "rnstore:after_gc:reachability-cache"),
            ("rnstore, after `gc`: du-cache (du's answer, from the `du` before gc)", "rnstore:after_gc:du-cache"),
            ("rnstore, after `gc`: objects/", "rnstore:after_gc:objects"),
            ("rnstore, no deltas, before gc", "rnstore-nodelta:snapshots"),
            ("rnstore, no deltas, after `gc`", "rnstore-nodelta:after_gc"),
            ("git, no gc (loose objects)", "git:snapshots"), ("git after `git gc` (whole .git)", "git:git gc"),
            ("git after `git gc`: objects/pack", "git:git gc:pack"),
            ("git after `git gc --aggressive` (whole .git)", "git:git gc --aggressive"),
            ("git after `git gc --aggressive`: objects/pack", "git:git gc --aggressive:pack"),
            ("restic (`--compression auto`)", "restic:snapshots"), ("borg (lz4)", "borg:snapshots")]
    L.append("")
    L.append(f"Store after {n} snapshots, MB (10^6 bytes); ratio = rnstore after gc / this (allocated):")
    L.append("")
    L.append("| store | apparent | allocated | files | rnstore/this |")
    L.append("|---|---|---|---|---|")
    for what, key in rows:
        v = sz.get(key)
        if not v:
            continue
        r = ratio(rn_alloc, v["allocated"])
        L.append(f"| {what} | {rb.mb(v['apparent'])} | {rb.mb(v['allocated'])} | {v['files']} | "
                 f"{'' if r is None else f'{r:.2f}'} |")

    # ---- times
    first_w, last_w = windows(n)
    table_tools = names
    head = ["operation", *[label[x] for x in table_tools]]
    L.append("")
    L.append(f"Seconds, median (min–max); commits: median over the window; reads: {args.runs} run(s):")
    L.append("")
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))

    def window(name: str, w: range) -> list[dict]:
        cs = b.commits.get(name, [])[:n]
        return [cs[i] for i in w if i < len(cs)]

    commit_med = {x: (med(window(x, first_w)), med(window(x, last_w))) for x in table_tools}
    for w in (first_w, last_w):
        L.append(f"| commit {w.start + 1}–{w.stop} | " + " | ".join(spread(window(x, w)) for x in table_tools) + " |")
    growth = {x: ratio(commit_med[x][1], commit_med[x][0]) for x in table_tools}
    L.append("| last / first window | "
             + " | ".join("—" if growth[x] is None else f"{growth[x]:.2f}" for x in table_tools) + " |")
    # CPU time (user + sys) moves less than wall time when other work loads the machine
    commit_cpu = {x: (med(window(x, first_w), "cpu"), med(window(x, last_w), "cpu")) for x in table_tools}
    L.append("| commit CPU time, first → last window | " + " | ".join(
        "—" if None in commit_cpu[x] else f"{fmt_s(commit_cpu[x][0])} → {fmt_s(commit_cpu[x][1])}"
        for x in table_tools) + " |")
    cpu_growth = {x: ratio(commit_cpu[x][1], commit_cpu[x][0]) for x in table_tools}
    L.append("| last / first window, CPU time | "
             + " | ".join("—" if cpu_growth[x] is None else f"{cpu_growth[x]:.2f}" for x in table_tools) + " |")
    peak = {x: max((s["maxrss_kb"] for s in b.commits.get(x, [])), default=None) for x in table_tools}
    L.append("| peak RSS of a commit, MB | "
             + " | ".join("—" if peak[x] is None else f"{peak[x] / 1024:.0f}" for x in table_tools) + " |")
    if b.gc_auto:
        L.append("| `gc --auto` after each commit | " + " | ".join(
            spread(b.gc_auto[x]) if x in b.gc_auto else "—" for x in table_tools) + " |")
    for op in ("log", "du", "gc", "fsck", "checkout newest", "checkout oldest", "git gc", "git gc --aggressive"):
        if op not in b.ops:
            continue
        L.append(f"| `{op}` | " + " | ".join(spread(b.ops[op].get(x, [])) if x in b.ops[op] else "—"
                                             for x in table_tools) + " |")

    # ---- packs
    packs = {}
    for name, gs in sorted(b.gc_auto.items(), key=lambda kv: names.index(kv[0]) if kv[0] in names else 99):
        counts = [g["packs"] for g in gs[:n]]
        if not counts:
            continue
        half = len(counts) // 2
        packs[name] = {"max": max(counts), "at": counts.index(max(counts)) + 1, "final": counts[-1],
                       "max_first_half": max(counts[:half] or counts), "max_second_half": max(counts[half:]),
                       "loose_final": gs[len(counts) - 1]["loose"],
                       "after_gc": b.settings.get("packs_after_gc", {}).get(name)}
        p = packs[name]
        L.append("")
        L.append(f"{label[name]}: packs in .rnstore/objects/pack after `gc --auto`: max {p['max']} (after commit "
                 f"{p['at']}), {p['final']} after the last commit, with {p['loose_final']} loose objects"
                 + (f"; after `gc`: {p['after_gc']['packs']} pack(s), {p['after_gc']['loose']} loose"
                    if p["after_gc"] else "") + ".")

    # ---- verification
    L.append("")
    for name, checks in b.verified.items():
        bad = [c for c in checks if not c["ok"]]
        L.append(f"Verification, {label.get(name, name)}: snapshots {', '.join(str(c['snapshot']) for c in checks)} "
                 f"checked out (after gc) and compared with their release: "
                 + ("all match byte for byte." if not bad else
                    f"**{len(bad)} DIFFER: {', '.join(str(c['snapshot']) for c in bad)}**"))

    # ---- targets
    def alloc(key):
        return sz.get(key, {}).get("allocated")
    tg: list[tuple[str, str, bool | None]] = []
    rn_bare = alloc(f"{rn_key}:no-reachcache")

    def against(peer_key: str) -> tuple[float | None, str]:
        r = ratio(rn_alloc, alloc(peer_key))
        if r is None:
            return None, "—"
        bare = ratio(rn_bare, alloc(peer_key))
        neither = ratio(alloc(f"{rn_key}:no-caches"), alloc(peer_key))
        text = f"{r:.2f}x"
        if bare is not None:
            text += f" ({bare:.2f}x less the reachability cache" \
                + ("" if neither is None else f", {neither:.2f}x less both caches") + ")"
        return r, text
    r_git, fig = against("git:git gc:pack")
    tg.append(("store <= 1.0x `git gc`'s pack (allocated)", fig, None if r_git is None else r_git <= 1.0))
    r_agg, fig = against("git:git gc --aggressive:pack")
    if r_agg is not None:
        tg.append(("(for reference) against `git gc --aggressive`'s pack", fig, None))
    for peer in ("restic", "borg"):
        r, fig = against(f"{peer}:snapshots")
        tg.append((f"store <= 0.2x {peer} (allocated)", fig, None if r is None else r <= 0.2))
    a, z = commit_med.get("rnstore", (None, None))
    r = ratio(z, a)
    fig = "—" if r is None else f"{r:.2f}x ({fmt_s(z)} s vs {fmt_s(a)} s)"
    if r is not None and cpu_growth.get("rnstore") is not None:
        fig += f"; CPU time {cpu_growth['rnstore']:.2f}x"
    others = [f"{label[x]} {growth[x]:.2f}x" for x in table_tools if x != "rnstore" and growth[x] is not None]
    if r is not None and others:
        fig += "; wall time over the same windows: " + ", ".join(others)
    tg.append((f"median commit {last_w.start + 1}–{last_w.stop} <= 1.1x commits {first_w.start + 1}–{first_w.stop}",
               fig, None if r is None else r <= 1.1))
    p = packs.get("rnstore")
    if p:
        bound = b.settings.get("gc.auto_packs")
        if bound is None:  # nothing in this build consolidates packs: the count grows with history
            tg.append(("pack count after `gc --auto` bounded",
                       f"max {p['max']}; this build states no bound (no gc.auto_packs setting)", False))
        else:
            tg.append((f"pack count after `gc --auto` bounded by gc.auto_packs={bound}",
                       f"max {p['max']} (after commit {p['at']})",
                       bound.isdigit() and (int(bound) == 0 or p["max"] <= int(bound))))
    for which, limit in (("newest", 1.0), ("oldest", 1.5)):
        x = med(b.ops.get(f"checkout {which}", {}).get("rnstore", []))
        y = med(b.ops.get(f"checkout {which}", {}).get("rnstore-nodelta", []))
        r = ratio(x, y)
        noise = 0.1 if limit == 1.0 else 0.0
        want = "no slower than without deltas (within 10%)" if limit == 1.0 else f"<= {limit}x without deltas"
        if r is None:
            fig = "— (no store without deltas to compare)" if x is not None else "—"
        else:
            fig = f"{r:.2f}x ({fmt_s(x)} s vs {fmt_s(y)} s)"
        tg.append((f"checkout of the {which} snapshot {want}", fig, None if r is None else r <= limit + noise))
    L.append("")
    L.append("Targets of issue 13 (one run):")
    L.append("")
    L.append("| target | figure | |")
    L.append("|---|---|---|")
    for what, fig, ok in tg:
        L.append(f"| {what} | {fig} | {verdict(ok)} |")
    L += notes_section()
    summary = {"commit_medians": commit_med, "commit_cpu_medians": commit_cpu, "packs": packs,
               "targets": [{"target": w, "figure": f, "met": ok} for w, f, ok in tg]}
    return "\n".join(L), summary


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=1000, help="releases replayed (default %(default)s)")
    ap.add_argument("--until", default=UNTIL, help=f"newest {PROJECT} release replayed (default %(default)s)")
    ap.add_argument("--runs", type=int, default=3,
                    help="repetitions of log, du and the checkouts (default %(default)s); the replay runs once")
    ap.add_argument("--peers", default="git,restic,borg", help="comma list of git,restic,borg; '' for none")
    ap.add_argument("--no-nodelta", action="store_true",
                    help="leave out rnstore with pack.deltas false (its sizes and checkout times)")
    ap.add_argument("--verify-every", type=int, default=50,
                    help="check out every K'th snapshot (and the first and last) and compare (default %(default)s)")
    ap.add_argument("--json", default="/tmp/rnstore-long.json", help="raw results (default %(default)s)")
    ap.add_argument("--markdown", default=None, help="also write the tables to this file")
    ap.add_argument("--rnstore", default=None, help="rnstore executable (default: next to this python, "
                                                    "else on PATH, else installed into WORK/rnstore-venv)")
    ap.add_argument("--cache", default="/tmp/rnstore-long-cache",
                    help="download cache for the sdists, kept between runs (default %(default)s)")
    ap.add_argument("--work", default="/tmp/rnstore-long", help="work folder (default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the stores and command logs in WORK")
    args = ap.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in KNOWN_PEERS:
            ap.error(f"unknown peer {p!r}")
    if args.commits < 2:
        ap.error("--commits must be at least 2")

    def _term(signum, frame):  # run the clean-up in `finally` on kill as on Ctrl-C
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)

    work, cache = Path(args.work).absolute(), Path(args.cache).absolute()
    work.mkdir(parents=True, exist_ok=True)
    import fcntl
    lock = open(work / "bench.lock", "a+")  # one run per work folder: they would share it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"waiting for the benchmark already running on {work} ...")
        fcntl.flock(lock, fcntl.LOCK_EX)

    cache.mkdir(parents=True, exist_ok=True)
    releases = pick_releases(load_index(cache, args.until), args.until, args.commits)
    if len(releases) < args.commits:
        note(f"only {len(releases)} releases up to {args.until}: replaying those")
    download(releases, cache)

    peers = rb.ensure_tools(peers, want_hyperfine=False)
    exe = rb.find_rnstore(args.rnstore, work)
    rn_python = rb.python_of(exe)
    # from "/": in this checkout, the folder rnstore/ would shadow what `exe` imports
    rc, where = capture([rn_python, "-c", "import rnstore; print(rnstore.__file__)"], cwd="/")
    own_build = rc == 0 and Path(where).resolve().is_relative_to(rb.REPO.resolve())
    if not own_build:
        note(f"the rnstore benchmarked ({exe}) is not this checkout's ({rb.REPO}): it imports {where}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RNSTORE_", "GIT_", "RESTIC_", "BORG_"))}
    env.update(RNSTORE_PROGRESS="0", NO_COLOR="1", LC_ALL="C.UTF-8", RNSTORE_USER="bench")
    runs = work / "run"
    rmtree(runs)
    runner = rb.Runner(runs / "logs")
    cls = {"git": Git, "restic": Restic, "borg": Borg}
    tools = [Rnstore(runs, env, exe, deltas=True),
             *([] if args.no_nodelta else [Rnstore(runs, env, exe, deltas=False)]),
             *[cls[p](runs, env) for p in peers]]
    info = rb.machine_info({t.name: t for t in tools}, rn_python)
    if not own_build:
        info["rnstore_commit"] = f"not this checkout's: {where}"
    log("machine: " + json.dumps(info))

    bench = LongBench(args, runs, cache, releases, tools, runner)
    t0 = time.time()
    summary: dict = {}

    def emit(final: bool) -> str:
        nonlocal summary
        info["loadavg_end"] = os.getloadavg()
        text, summary = build_report(bench, info, args) if bench.done >= 2 else ("(fewer than 2 commits replayed)", {})
        doc = {"machine": info, "args": vars(args), "elapsed_s": time.time() - t0, "complete": final,
               "notes": list(dict.fromkeys(NOTES)), "history": bench.releases[: bench.done],
               "changes": bench.changes, "settings": bench.settings, "commits": bench.commits,
               "gc_auto": bench.gc_auto, "ops": bench.ops, "store_sizes": bench.sizes,
               "verified": bench.verified, "summary": summary, "markdown": text}
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str))
        if args.markdown:
            Path(args.markdown).write_text(text + "\n")
        return text

    try:
        bench.setup()
        rn = next((t for t in bench.tools if t.name == "rnstore"), None)
        if rn is None:
            sys.exit("error: rnstore setup failed; see above")
        if "deltas" not in bench.settings:
            bench.settings["deltas"] = f"pack.deltas={rnstore_setting(exe, 'pack.deltas', env, rn.tree)}"
            depth = rnstore_setting(exe, "pack.depth", env, rn.tree)
            if depth is not None:
                bench.settings["deltas"] += f", pack.depth={depth}"
        bench.settings["gc.auto_packs"] = rnstore_setting(exe, "gc.auto_packs", env, rn.tree)
        bench.replay()
        bench.measure_sizes("snapshots")
        emit(final=False)
        bench.reads()
        bench.gc()
        bench.checkouts()
        bench.verify()
    except KeyboardInterrupt:
        loud("interrupted: reporting what was measured so far")
        note(f"the run was interrupted after {bench.done} of {len(releases)} commits")
    finally:
        if not args.keep:
            rmtree(runs)
    text = emit(final=True)
    print()
    print(text)
    log(f"\nraw results: {args.json}")
    bad = [c for checks in bench.verified.values() for c in checks if not c["ok"]]
    failed = [s for ss in bench.commits.values() for s in ss if not s["ok"]]
    if bad or failed:
        loud(f"{len(bad)} snapshot(s) differ from their release, {len(failed)} commit(s) failed; see above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
