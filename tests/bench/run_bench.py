#!/usr/bin/env python3
"""Benchmark rnstore against git, restic and borg on the shared peer-benchmark corpus.

One command from a clean clone (see tests/bench/README.md):

    python tests/bench/run_bench.py [--trees medium,big] [--runs 3] [--peers git,restic,borg] [--quick]

What it does, in order:

1. builds the corpus with `bash tests/bench/make_corpus.sh` under $PB (default
   /tmp/peerbench) when it is missing or incomplete (waits for a build already running);
2. installs missing peers with apt-get (restic, borgbackup; hyperfine and zstd when missing);
   a peer that cannot be installed is skipped with a note;
3. times rnstore and every peer, interleaved (within each repetition, each operation runs for every
   tool in turn, and the starting tool rotates between repetitions), each tool on its own copy of
   the tree with a fresh store per repetition, warm page cache, `sync` before each timed command:
   first snapshot, no-op snapshot, snapshot after `gen.py edit`, full restore into an empty folder,
   then du, export to .tar.zst, forget half the snapshots + gc; plus start-up time of
   `rnstore --version` / `rnstore rev-parse HEAD` against a hello-world typer app (hyperfine);
4. verifies every restore and export against the tree it came from (path, type, size, sha256,
   exec bit, symlink target): a mismatch is printed loudly and the figure is marked INVALID;
5. prints Markdown tables (median (min-max) seconds, rnstore/peer ratios, peak RSS, CPU time,
   store sizes) and writes every sample as JSON (default /tmp/rnstore-bench.json).

This is a benchmark, not a test: it never fails because something is slow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS_TOOLS = Path(__file__).resolve().parent  # make_corpus.sh and gen.py, kept beside this script
ALL_TREES = ("small", "medium", "big")
EDITABLE_TREES = ("small", "medium")  # gen.py edit is meant for medium; small gets it in --quick
KNOWN_PEERS = ("git", "restic", "borg", "borg-zstd")
BIG_SIZES = {"ckpt_epoch1.bin": 400 * 2**20, "ckpt_epoch2.bin": 400 * 2**20,
             "train_full.log": 200 * 2**20}
EXPECTED_FILES = {"small": 307, "medium": 28620, "big": 3}
OPS = ("first", "noop", "edit", "restore", "restore_tmpfs", "du", "du-again", "export", "export_tmpfs",
       "forget", "gc")
OP_LABEL = {
    "first": "first snapshot", "noop": "no-op snapshot", "edit": "snapshot after edit",
    "restore": "full restore, disk: min (median)", "du": "du / stats", "du-again": "du / stats, again",
    "export": "export .tar.zst",
    "forget": "forget 1st snapshot", "gc": "gc / prune",
    "restore_tmpfs": "full restore, tmpfs", "export_tmpfs": "export .tar.zst, tmpfs",
}
#: what --only may name: the snapshots always run (they make the store every later operation reads)
SELECTABLE_OPS = ("restore", "du", "du-again", "export", "gc")
#: Rows whose cell is min (median) and whose ratio compares minima: the disk
#: restore, where the kernel's write-back after large deletes adds noise to
#: some runs only (issue 14).
MIN_FIRST = {"restore"}
EXCLUDE_TOP = (".rnstore", ".git")
#: trees generated on demand (`gen.py many`), timed for scale only: first snapshot, no-op, status
SCALE_TREES = {"many": 200_000}
OPS += ("status",)
OP_LABEL["status"] = "status (clean)"

NOTES: list[str] = []


def notes_section() -> list[str]:
    """The report's closing "Notes:" lines: every note once, in order; none without notes."""
    if not NOTES:
        return []
    return ["", "Notes:", ""] + [f"- {n}" for n in dict.fromkeys(NOTES)]


def note(msg: str) -> None:
    NOTES.append(msg)
    print(f"note: {msg}", file=sys.stderr, flush=True)


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!!! {msg}\n{bar}\n", file=sys.stderr, flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- running commands

class Runner:
    """Runs commands with their output in a log file; times them with os.wait4's rusage."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        logdir.mkdir(parents=True, exist_ok=True)
        self.n = 0
        # Peak RSS: a process's ru_maxrss includes the image it had before exec (Linux keeps the
        # old mm's high-water mark), i.e. this ~20 MB Python. GNU time forks from a small image,
        # so its %M is the command's own peak; without it, wait4's figure is an upper bound.
        self.time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

    def run(self, cmd, cwd, env, *, ok=(0,), stdout_file: Path | None = None, label="cmd") -> dict:
        """Run `cmd` (argv list, or str for bash), return wall time, rc and rusage."""
        self.n += 1
        logf = self.logdir / f"{self.n:05d}-{label}.log"
        argv = ["bash", "-o", "pipefail", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        shown = shlex.join(argv) if not isinstance(cmd, str) else cmd
        rssf = self.logdir / f"{self.n:05d}.rss"
        if self.time:
            argv = [self.time, "-f", "%M", "-o", str(rssf), *argv]
        with open(logf, "wb") as err:
            out = open(stdout_file, "wb") if stdout_file else err
            try:
                t0 = time.perf_counter()
                p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=err, start_new_session=True)
                try:
                    _, status, ru = os.wait4(p.pid, 0)
                except BaseException:  # interrupted: take the command (and its pipeline) down too
                    os.killpg(p.pid, signal.SIGKILL)
                    os.wait4(p.pid, 0)
                    p.returncode = -9
                    raise
                wall = time.perf_counter() - t0
            finally:
                if out is not err:
                    out.close()
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        maxrss, how = ru.ru_maxrss, "wait4"
        if self.time:
            try:
                maxrss, how = int(rssf.read_text().split()[-1]), "time"
                rssf.unlink()
            except (OSError, ValueError, IndexError):
                pass
        res = {"wall": wall, "rc": rc, "ok": rc in ok, "maxrss_kb": maxrss, "rss_from": how,
               "cpu": ru.ru_utime + ru.ru_stime, "user": ru.ru_utime, "sys": ru.ru_stime,
               "cmd": shown, "log": str(logf)}
        if not res["ok"]:
            tail = logf.read_bytes()[-1500:].decode(errors="replace")
            res["error"] = tail
        return res

    def quiet(self, cmd, cwd=None, env=None, ok=(0,), label="setup") -> dict:
        r = self.run(cmd, cwd, env, ok=ok, label=label)
        if not r["ok"]:
            raise RuntimeError(f"`{r['cmd']}` in {cwd} exited {r['rc']}:\n{r.get('error', '')}")
        return r


def capture(argv, **kw) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, errors="replace", **kw)
    except OSError as exc:
        return 127, str(exc)
    return p.returncode, (p.stdout + p.stderr).strip()


# --------------------------------------------------------------------------- file-system helpers

def rmtree(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.exists():
        subprocess.run(["rm", "-rf", "--", str(p)], check=True)


def copy_tree(src: Path, dst: Path, hardlink: bool) -> None:
    rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # resolved: a corpus tree that is a symlink (a $PB borrowing another's corpus) would be copied
    # as the link, and every tool would then write and `gen.py edit` in the corpus itself
    subprocess.run(["cp", "-al" if hardlink else "-a", str(src.resolve()), str(dst)], check=True)


def store_size(paths: list[Path]) -> dict:
    """Apparent bytes (sum of st_size of non-directories) and allocated bytes (st_blocks*512
    of everything, directories included, like `du`); hard links counted once."""
    apparent = allocated = files = 0
    seen = set()
    for top in paths:
        if not top.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames + ([""] if dirpath == str(top) else []):
                p = os.path.join(dirpath, name) if name else dirpath
                st = os.lstat(p)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                allocated += st.st_blocks * 512
                if not stat.S_ISDIR(st.st_mode):
                    apparent += st.st_size
                    files += 1
    return {"apparent": apparent, "allocated": allocated, "files": files}


def sha256_file(p: str) -> str:
    with open(p, "rb") as f:
        if hasattr(hashlib, "file_digest"):
            return hashlib.file_digest(f, "sha256").hexdigest()
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
        return h.hexdigest()


def manifest(root: Path) -> dict:
    """{relpath: entry} for files and symlinks, plus empty directories; .rnstore/.git at the
    top are left out. Entry: ('f', size, sha256, exec) | ('l', target) | ('d',) | ('o', mode)."""
    out: dict[str, tuple] = {}
    root_s = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(root_s):
        rel = os.path.relpath(dirpath, root_s)
        if rel == b".":
            dirnames[:] = [d for d in dirnames if os.fsdecode(d) not in EXCLUDE_TOP]
        for d in list(dirnames):
            if os.path.islink(os.path.join(dirpath, d)):
                dirnames.remove(d)
                filenames.append(d)
        if not dirnames and not filenames and rel != b".":
            out[os.fsdecode(rel)] = ("d",)
        for name in filenames:
            p = os.path.join(dirpath, name)
            r = os.fsdecode(os.path.normpath(os.path.join(rel, name)))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[r] = ("l", os.fsdecode(os.readlink(p)))
            elif stat.S_ISREG(st.st_mode):
                out[r] = ("f", st.st_size, sha256_file(p), bool(st.st_mode & stat.S_IXUSR))
            else:
                out[r] = ("o", stat.S_IFMT(st.st_mode))
    return out


def tar_manifest(archive: Path, expected: dict) -> dict:
    """manifest() of a .tar.zst, read as a stream (no extraction). Names are made relative to the
    folder the archive holds the tree under (restic's dump keeps the absolute path)."""
    import tarfile
    raw: dict[str, tuple] = {}
    dirs: set[str] = set()
    proc = subprocess.Popen(["zstd", "-dcq", str(archive)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for m in tf:
                name = m.name
                while name.startswith("./"):
                    name = name[2:]
                name = name.strip("/")
                if not name or name == ".":
                    continue
                if m.isdir():
                    dirs.add(name)
                elif m.issym():
                    raw[name] = ("l", m.linkname)
                elif m.islnk():
                    target = m.linkname
                    while target.startswith("./"):
                        target = target[2:]
                    raw[name] = raw.get(target.strip("/"), ("o", "hardlink to missing " + target))
                elif m.isfile():
                    h = hashlib.sha256()
                    f = tf.extractfile(m)
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                    raw[name] = ("f", m.size, h.hexdigest(), bool(m.mode & stat.S_IXUSR))
                else:
                    raw[name] = ("o", m.type)
    finally:
        proc.stdout.close()
        proc.wait()
    prefix = ""
    probe = next((k for k, v in sorted(expected.items()) if v[0] == "f"), None)
    if probe is not None and probe not in raw:
        hit = next((n for n in raw if n.endswith("/" + probe)), None)
        if hit:
            prefix = hit[: len(hit) - len(probe)]
    out = {}
    for n, e in raw.items():
        out[n[len(prefix):] if prefix and n.startswith(prefix) else n] = e
    rel_dirs = {d[len(prefix):] for d in dirs if not prefix or d.startswith(prefix)} - {""}
    parents = set()
    for n in list(out) + list(rel_dirs):
        parts = n.split("/")
        parents.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for d in rel_dirs - parents:
        out[d] = ("d",)
    return {n: e for n, e in out.items() if n.split("/")[0] not in EXCLUDE_TOP}


def compare(expected: dict, got: dict, *, empty_dirs_optional=False) -> list[str]:
    probs = []
    for path in sorted(expected.keys() | got.keys()):
        e, g = expected.get(path), got.get(path)
        if e == g:
            continue
        if empty_dirs_optional and e == ("d",) and g is None:
            continue
        if e is None:
            probs.append(f"extra: {path} {g[:2] if g else ''}")
        elif g is None:
            probs.append(f"missing: {path}")
        else:
            what = []
            if e[0] != g[0]:
                what.append(f"type {e[0]}!={g[0]}")
            elif e[0] == "f":
                if e[1] != g[1]:
                    what.append(f"size {e[1]}!={g[1]}")
                if e[2] != g[2]:
                    what.append("sha256 differs")
                if e[3] != g[3]:
                    what.append(f"exec {e[3]}!={g[3]}")
            elif e[0] == "l":
                what.append(f"link {e[1]!r}!={g[1]!r}")
            probs.append(f"differs: {path}: {', '.join(what) or 'other'}")
    return probs


def verify(expected: dict, out_dir: Path, *, empty_dirs_optional=False) -> tuple[bool, list[str], str]:
    """Compare `out_dir` with `expected`; when it does not match and holds exactly one folder,
    look inside it (restic restores and tars keep the absolute path of the backed-up folder)."""
    d = out_dir
    best: tuple[list[str], Path] | None = None
    for _ in range(12):
        probs = compare(expected, manifest(d), empty_dirs_optional=empty_dirs_optional)
        if not probs:
            return True, [], str(d)
        if best is None or len(probs) < len(best[0]):
            best = (probs, d)
        kids = [k for k in d.iterdir() if k.name not in EXCLUDE_TOP] if d.is_dir() else []
        if len(kids) == 1 and kids[0].is_dir() and not kids[0].is_symlink():
            d = kids[0]
            continue
        break
    return False, best[0], str(best[1])


# --------------------------------------------------------------------------- tools

class Tool:
    name = "?"
    label = "?"
    stores_empty_dirs = True
    creates_target = False  # restores into a folder it creates (else: into an empty one made for it)

    def __init__(self, work: Path, env: dict):
        self.work = work / self.name
        self.env = dict(env)
        self.tree: Path | None = None

    @property
    def store(self) -> Path:
        return self.work / "store"

    def reset(self) -> None:
        rmtree(self.work)
        self.work.mkdir(parents=True)

    def store_paths(self) -> list[Path]:
        return [self.store]

    def supports(self, op: str) -> str | None:
        """None if the operation runs, else why it is skipped."""
        return None

    def version(self) -> str:
        return "?"

    # each returns (cmd, cwd, accepted exit codes)
    def setup(self, r: Runner) -> None: ...
    def snapshot(self, op: str, n: int): ...
    def restore(self, target: Path): ...
    def du(self): ...
    def export(self, out: Path): ...
    def forget(self, r: Runner): ...
    def gc(self): ...

    def status(self):
        """`status` of a clean workspace, or None where the tool has none."""
        return None


class Rnstore(Tool):
    name = "rnstore"
    label = "rnstore"
    creates_target = True

    def __init__(self, work, env, exe: str):
        super().__init__(work, env)
        self.exe = exe
        self.features = {}
        for cmd in ("checkout", "export", "du", "forget", "gc"):
            rc, _ = capture([exe, cmd, "--help"], env=env)
            self.features[cmd] = rc == 0
        if self.features["gc"]:
            rc, text = capture([exe, "gc", "--help"], env=env)
            self.features["gc"] = "--prune" in text

    def version(self):
        return capture([self.exe, "--version"], env=self.env)[1]

    def store_paths(self):
        return [self.tree / ".rnstore"]

    def supports(self, op):
        need = {"restore": "checkout", "export": "export", "du": "du", "forget": "forget",
                "gc": "gc"}.get(op)
        if need and not self.features[need]:
            what = f"`rnstore {need}" + (" --prune`" if need == "gc" else "`")
            return f"{what} is not available yet (`rnstore {need} --help` failed)"
        if op in ("forget", "gc") and not (self.features["forget"] and self.features["gc"]):
            return "`rnstore forget` / `rnstore gc --prune now` not available yet"
        return None

    def setup(self, r):
        rn = self.exe
        r.quiet([rn, "init", "--no-default-ignore", "-q"], self.tree, self.env)
        # big is 1 GB, over the default 500 MB snapshot limit: raise it (setup, untimed)
        r.quiet([rn, "config", "limits.max_bytes", "1TB"], self.tree, self.env)
        r.quiet([rn, "config", "limits.max_files", "100000000"], self.tree, self.env)

    def snapshot(self, op, n):
        # exit 1 = "nothing to commit": the expected, successful outcome of the no-op
        return [self.exe, "commit", "-a", "-m", f"m{n}", "-q"], self.tree, (0, 1) if op == "noop" else (0,)

    def restore(self, target):
        return [self.exe, "checkout", "HEAD", "--target", str(target), "-q"], self.tree, (0,)

    def du(self):
        return [self.exe, "du"], self.tree, (0,)

    def export(self, out):
        return [self.exe, "export", "HEAD", "-o", str(out)], self.tree, (0,)

    def forget(self, r):
        rc, first = capture([self.exe, "rev-parse", "HEAD~1"], cwd=self.tree, env=self.env)
        if rc != 0:
            raise RuntimeError(f"rnstore rev-parse HEAD~1: {first}")
        return [self.exe, "forget", first.split()[0]], self.tree, (0,)

    def gc(self):
        return [self.exe, "gc", "--prune", "now"], self.tree, (0,)

    def status(self):
        return [self.exe, "status"], self.tree, (0,)


class Git(Tool):
    name = "git"
    label = "git"
    stores_empty_dirs = False  # git does not track empty folders

    def __init__(self, work, env):
        super().__init__(work, env)
        self.env.update(GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
                        GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid",
                        GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")

    def version(self):
        return capture(["git", "--version"])[1]

    def _env(self):
        self.env["GIT_DIR"] = str(self.store)
        self.env["GIT_WORK_TREE"] = str(self.tree)

    def setup(self, r):
        self._env()
        r.quiet(["git", "init", "-q"], self.tree, self.env)
        # no detached background `git gc --auto` repacking during the other tools' timings
        r.quiet(["git", "config", "gc.auto", "0"], self.tree, self.env)
        # `git archive` would rewrite export-subst files (matplotlib's .git_archival.txt) and drop
        # export-ignore ones; info/attributes outranks the tree's .gitattributes
        (self.store / "info").mkdir(parents=True, exist_ok=True)
        (self.store / "info" / "attributes").write_text("* -export-subst -export-ignore\n")

    def snapshot(self, op, n):
        # -f: also add the files matplotlib's .gitignore names, so git stores the same files
        # exit 1 on the no-op = "nothing to commit"
        return "git add -A -f . && git commit -qm m", self.tree, (0, 1) if op == "noop" else (0,)

    def restore(self, target):
        return ["git", f"--work-tree={target}", "checkout", "-f", "HEAD", "--", "."], target, (0,)

    def status(self):
        return ["git", "status"], self.tree, (0,)

    def du(self):
        return ["git", "count-objects", "-v"], self.tree, (0,)

    def export(self, out):
        return f"git archive --format=tar HEAD | zstd -q -3 -f -o {shlex.quote(str(out))}", self.tree, (0,)

    full_gc = False  # --git-gc

    def supports(self, op):
        if op == "forget":
            return "git has no forget (history is kept)"
        if op == "gc" and not self.full_gc:
            return ("`git gc --prune=now` is a full delta repack (minutes here, not comparable); "
                    "--git-gc times it")
        return None

    def gc(self):
        return ["git", "gc", "--prune=now", "-q"], self.tree, (0,)


class Restic(Tool):
    name = "restic"
    label = "restic"

    def __init__(self, work, env):
        super().__init__(work, env)
        self.env.update(RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=str(self.store),
                        RESTIC_CACHE_DIR=str(self.work / "cache"))

    def version(self):
        return capture(["restic", "version"])[1]

    def setup(self, r):
        r.quiet(["restic", "init", "-q"], self.tree, self.env)

    def snapshot(self, op, n):
        return ["restic", "backup", "-q", "--compression", "auto", "."], self.tree, (0,)

    def restore(self, target):
        return ["restic", "restore", "latest", "--target", str(target), "-q"], target, (0,)

    def du(self):
        return ["restic", "stats", "--mode", "raw-data", "-q"], self.tree, (0,)

    def export(self, out):
        return f"restic dump -q latest / | zstd -q -3 -f -o {shlex.quote(str(out))}", self.tree, (0,)

    def forget(self, r):
        rc, text = capture(["restic", "snapshots", "--json", "-q"], env=self.env)
        snaps = sorted(json.loads(text), key=lambda s: s["time"])
        return ["restic", "forget", "-q", snaps[0]["id"]], self.tree, (0,)

    def gc(self):
        return ["restic", "prune", "-q"], self.tree, (0,)


class Borg(Tool):
    name = "borg"
    label = "borg (lz4)"
    compression: list[str] = []

    def __init__(self, work, env):
        super().__init__(work, env)
        self.env.update(BORG_REPO=str(self.store), BORG_BASE_DIR=str(self.work / "base"),
                        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        self.n = 0

    def version(self):
        return capture(["borg", "--version"])[1]

    def setup(self, r):
        self.n = 0
        r.quiet(["borg", "init", "-e", "none"], self.tree, self.env)

    def snapshot(self, op, n):
        self.n = n
        return ["borg", "create", *self.compression, f"::s{n}", "."], self.tree, (0,)

    def restore(self, target):
        return ["borg", "extract", f"::s{self.n}"], target, (0,)

    def du(self):
        return ["borg", "info"], self.tree, (0,)

    def export(self, out):
        return (["borg", "export-tar", "--tar-filter", "zstd -q -3", f"::s{self.n}", str(out)],
                self.tree, (0,))

    def forget(self, r):
        return ["borg", "delete", "::s1"], self.tree, (0,)

    def gc(self):
        return ["borg", "compact"], self.tree, (0,)


class BorgZstd(Borg):
    name = "borg-zstd"
    label = "borg (zstd,3)"
    compression = ["-C", "zstd,3"]


# --------------------------------------------------------------------------- setup: corpus, peers

def running_corpus_builds() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if b"make_corpus.sh" in cmd and b"run_bench" not in cmd:
                pids.append(int(d.name))
    return pids


def corpus_complete(pb: Path) -> bool:
    big = pb / "corpus" / "big"
    if not all((pb / "corpus" / t).is_dir() for t in ALL_TREES):
        return False
    try:
        return all((big / n).stat().st_size == s for n, s in BIG_SIZES.items())
    except OSError:
        return False


def ensure_scale_tree(pb: Path, tree: str) -> Path:
    """$PB/corpus/TREE, generated with `gen.py many` when missing or incomplete."""
    target = pb / "corpus" / tree
    files = SCALE_TREES[tree]
    if sum(len(f) for _, _, f in os.walk(target)) != files:
        log(f"corpus: generating {target} ({files:,} files) with gen.py many ...")
        rmtree(target)
        subprocess.run([sys.executable, str(CORPUS_TOOLS / "gen.py"), "many", str(target), str(files)],
                       check=True, stdout=sys.stderr)
    return target


def ensure_corpus(pb: Path) -> None:
    pids = running_corpus_builds()
    if pids:
        log(f"waiting for the corpus build already running (pid {', '.join(map(str, pids))}) ...")
        while running_corpus_builds():
            time.sleep(5)
    if corpus_complete(pb):
        log(f"corpus: {pb}/corpus (present)")
    else:
        script = CORPUS_TOOLS / "make_corpus.sh"
        if not script.is_file():
            sys.exit(f"error: corpus missing under {pb} and {script} not found")
        log(f"corpus: building with `bash {script}` into {pb} (a few minutes) ...")
        subprocess.run(["bash", str(script)], env={**os.environ, "PB": str(pb)}, check=True,
                       stdout=sys.stderr)
        if not corpus_complete(pb):
            sys.exit("error: corpus build finished but the corpus is incomplete")
    for t in ALL_TREES:
        n = sum(len(f) for _, _, f in os.walk(pb / "corpus" / t))
        if n != EXPECTED_FILES[t]:
            note(f"corpus/{t} has {n} files, the bench README says {EXPECTED_FILES[t]}")


def apt_install(pkgs: list[str]) -> None:
    if not pkgs:
        return
    if not shutil.which("apt-get"):
        note(f"apt-get not found; cannot install {' '.join(pkgs)}")
        return
    if os.geteuid() != 0:
        note(f"not root; cannot apt-get install {' '.join(pkgs)}")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing: apt-get install -y {' '.join(pkgs)}")
    rc = subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if rc != 0:
        log("apt-get install failed; running apt-get update once and retrying")
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        rc = subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        if rc != 0:  # one at a time, so one missing package does not block the others
            for p in pkgs:
                subprocess.run(["apt-get", "install", "-y", "-q", p], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure_tools(peers: list[str], want_hyperfine: bool) -> list[str]:
    binary = {"git": ("git", "git"), "restic": ("restic", "restic"),
              "borg": ("borg", "borgbackup"), "borg-zstd": ("borg", "borgbackup")}
    missing = sorted({binary[p][1] for p in peers if not shutil.which(binary[p][0])})
    if not shutil.which("zstd"):
        missing.append("zstd")
    if want_hyperfine and not shutil.which("hyperfine"):
        missing.append("hyperfine")
    if not os.access("/usr/bin/time", os.X_OK):
        missing.append("time")  # GNU time: peak RSS of the command alone
    apt_install(missing)
    ok = []
    for p in peers:
        if shutil.which(binary[p][0]):
            ok.append(p)
        else:
            note(f"peer {p} skipped: `{binary[p][0]}` is not installed and could not be installed")
    if not shutil.which("zstd"):
        note("zstd CLI missing: exports cannot be verified and peers' exports fail")
    return ok


def find_rnstore(arg: str | None, pb: Path) -> str:
    if arg:
        return arg
    cand = Path(sys.executable).parent / "rnstore"
    if cand.exists():
        return str(cand)
    found = shutil.which("rnstore")
    if found:
        return found
    venv = pb / "rnstore-venv"
    log(f"rnstore not found: installing this checkout into {venv} (pip install -e)")
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", str(REPO)], check=True)
    return str(venv / "bin" / "rnstore")


def install_rev(rev: str, pb: Path) -> tuple[str, str]:
    """Install rnstore as committed at `rev` (git archive), or a frozen copy of the working tree
    for rev "worktree", into its own venv under $PB, so edits made to the checkout while the
    benchmark runs do not change what is measured. Returns (executable, description)."""
    if rev == "worktree":
        dest = pb / "rnstore-worktree"
        rc, head = capture(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"])
        desc = f"working tree on {head} as copied at {time.strftime('%H:%M:%S')}"
        rmtree(dest)
        (dest / "src").mkdir(parents=True)
        files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-co", "--exclude-standard",
                                "--", "pyproject.toml", "README.md", "LICENSE", "rnstore"],
                               capture_output=True, check=True).stdout
        files = b"".join(f + b"\0" for f in files.split(b"\0") if f and os.path.lexists(REPO / os.fsdecode(f)))
        subprocess.run(["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", "-"], input=files,
                       stdout=open(dest / "src.tar", "wb"), check=True)
        subprocess.run(["tar", "-xf", str(dest / "src.tar"), "-C", str(dest / "src")], check=True)
    else:
        rc, sha = capture(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"])
        if rc != 0:
            sys.exit(f"error: --rev {rev}: {sha}")
        desc = f"{sha[:12]} (--rev {rev})"
        dest = pb / f"rnstore-{sha[:12]}"
        if (dest / "venv" / "bin" / "rnstore").exists():
            return str(dest / "venv" / "bin" / "rnstore"), desc
        rmtree(dest)
        (dest / "src").mkdir(parents=True)
        subprocess.run(f"git -C {shlex.quote(str(REPO))} archive {sha} | tar -x -C {shlex.quote(str(dest / 'src'))}",
                       shell=True, check=True)
    log(f"installing rnstore {desc} into {dest}/venv ...")
    subprocess.run([sys.executable, "-m", "venv", str(dest / "venv")], check=True)
    subprocess.run([str(dest / "venv" / "bin" / "pip"), "install", "-q", str(dest / "src")], check=True)
    return str(dest / "venv" / "bin" / "rnstore"), desc


def python_of(exe: str) -> str:
    """The interpreter a console script runs with (its shebang), else this one."""
    try:
        with open(exe, "rb") as f:
            first = f.readline().decode().strip()
        if first.startswith("#!") and "python" in first:
            return first[2:].split()[0]
    except (OSError, UnicodeDecodeError):
        pass
    return sys.executable


def machine_info(tools: dict, rn_python: str) -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
        "python": capture([rn_python, "-c", "import sys; print(sys.version.split()[0])"])[1],
        "rnstore_python": rn_python,
        "tools": {name: t.version() for name, t in tools.items()},
        "hyperfine": capture(["hyperfine", "--version"])[1] if shutil.which("hyperfine") else None,
        "zstd": capture(["zstd", "-V"])[1] if shutil.which("zstd") else None,
    }
    info["loadavg_start"] = os.getloadavg()
    rc, commit = capture(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = capture(["git", "-C", str(REPO), "status", "--porcelain", "--", "rnstore"])[1]
    info["rnstore_commit"] = (commit + (" + uncommitted changes in rnstore/" if dirty else "")) if rc == 0 else "?"
    return info


# --------------------------------------------------------------------------- the benchmark

class Bench:
    def __init__(self, args, pb: Path, tools: list[Tool], runner: Runner):
        self.args = args
        self.pb = pb
        self.tools = tools
        self.r = runner
        # results[tree][op][tool] = list of samples
        self.results: dict = {}
        self.sizes: dict = {}  # sizes[tree][tool] = {"snapshots": [..], "after_gc": [..]}
        self.skipped: dict = {}
        self.catfile: dict | None = None  # catfile_batch()'s figures

    def sample(self, tree, op, tool: Tool, res: dict) -> None:
        self.results.setdefault(tree, {}).setdefault(op, {}).setdefault(tool.name, []).append(res)

    def timed(self, tree, op, tool: Tool, spec, rep) -> dict:
        cmd, cwd, ok = spec
        os.sync()  # earlier writes (copies, other tools) are not flushed during this timing
        res = self.r.run(cmd, cwd, tool.env, ok=ok, label=f"{tree}-{op}-{tool.name}")
        res["rep"] = rep
        res["valid"] = res["ok"]
        if not res["ok"]:
            loud(f"{tool.name} {op} on {tree} FAILED (exit {res['rc']}): {res['cmd']}\n{res.get('error', '')}")
        self.sample(tree, op, tool, res)
        log(f"  {tree:6} {op:8} {tool.name:9} {res['wall']:8.3f} s  rss {res['maxrss_kb'] / 1024:7.1f} MB"
            f"  cpu {res['cpu']:7.2f} s  rc {res['rc']}" + ("" if res["ok"] else "  FAILED"))
        return res

    def skip(self, tree, op, tool: Tool, why: str) -> None:
        key = (tree, op, tool.name)
        if key not in self.skipped:
            self.skipped[key] = why
            note(f"{tool.name} {op} on {tree} skipped: {why}")

    def invalidate(self, res: dict, tool: Tool, what: str, probs: list[str]) -> None:
        res["valid"] = False
        res["verify_problems"] = probs[:20]
        res["verify_problem_count"] = len(probs)
        loud(f"VERIFICATION FAILED: {tool.name} {what}: {len(probs)} problem(s); the figure is INVALID\n"
             + "\n".join("    " + p for p in probs[:10]))

    def run_tree(self, tree: str, rep: int) -> None:
        if tree in SCALE_TREES:
            self.run_scale_tree(tree, rep)
            return
        src = self.pb / "corpus" / tree
        order = self.tools[rep % len(self.tools):] + self.tools[:rep % len(self.tools)]
        editable = tree in EDITABLE_TREES
        log(f"\n== {tree}, repetition {rep + 1}/{self.args.runs}, order: {', '.join(t.name for t in order)}")
        alive = self.fresh_copies(order, tree, src, hardlink=not editable)

        n = 0
        for op in ("first", "noop", "edit") if editable else ("first", "noop"):
            n += 1
            if op == "edit":
                for t in alive:
                    # gen.py edit walks everything under DIR: move the store (.rnstore) out of the
                    # way, or it would append lines to object files, and so that every tool's copy
                    # gets exactly the same edit
                    moved = []
                    for d in EXCLUDE_TOP:
                        if (t.tree / d).exists():
                            (t.tree / d).rename(t.work / f"{d}.aside")
                            moved.append(d)
                    try:
                        self.r.quiet([sys.executable, str(CORPUS_TOOLS / "gen.py"), "edit", str(t.tree)],
                                     None, None, label="gen-edit")
                    finally:
                        for d in moved:
                            (t.work / f"{d}.aside").rename(t.tree / d)
            for t in list(alive):
                res = self.timed(tree, op, t, t.snapshot(op, n), rep)
                if not res["ok"]:
                    alive.remove(t)
        self.time_status(tree, rep, alive)
        for t in alive:
            self.sizes.setdefault(tree, {}).setdefault(t.name, {}).setdefault(
                "snapshots", []).append(store_size(t.store_paths()))

        expected = {}
        for t in alive:  # what every later restore/export must reproduce
            expected[t.name] = manifest(t.tree)

        if self.wanted("restore"):
            for _ in range(self.repeats("restore")):
                self.restore(tree, rep, alive, expected)
            self.restore_tmpfs(tree, rep, alive, expected)
        self.du(tree, rep, alive)
        if self.wanted("export"):
            self.export(tree, rep, alive, expected)
            self.export_tmpfs(tree, rep, alive, expected)
        if editable and self.wanted("gc"):
            self.gc(tree, rep, alive)
        for t in order:
            rmtree(t.work)

    def fresh_copies(self, tools: list[Tool], tree: str, src: Path, *, hardlink: bool) -> list[Tool]:
        """Untimed: each tool's private copy of the tree and a fresh store; the tools set up."""
        alive = []
        for t in tools:
            t.reset()
            t.tree = t.work / tree
            copy_tree(src, t.tree, hardlink=hardlink)
            try:
                t.setup(self.r)
                alive.append(t)
            except RuntimeError as exc:
                loud(f"{t.name} setup failed on {tree}: {exc}")
        os.sync()
        return alive

    def time_status(self, tree, rep, alive) -> None:
        """`status` of the clean workspace the snapshots left, for the tools that have one."""
        for t in alive:
            spec = t.status()
            if spec is None:
                self.skip(tree, "status", t, "no status command")
            else:
                self.timed(tree, "status", t, spec, rep)

    def run_scale_tree(self, tree: str, rep: int) -> None:
        """A generated tree of SCALE_TREES[tree] small files (rnstore's default file limit):
        first snapshot, no-op, status; peak RSS shows in the RSS table."""
        src = ensure_scale_tree(self.pb, tree)
        order = self.tools[rep % len(self.tools):] + self.tools[:rep % len(self.tools)]
        log(f"\n== {tree}, repetition {rep + 1}/{self.args.runs}, order: {', '.join(t.name for t in order)}")
        for t in order:
            if t.name not in ("rnstore", "git"):
                self.skip(tree, "first", t, "timed on the scale tree for rnstore and git only")
        alive = self.fresh_copies([t for t in order if t.name in ("rnstore", "git")], tree, src,
                                  hardlink=True)  # never edited
        for n, op in enumerate(("first", "noop"), 1):
            for t in list(alive):
                if not self.timed(tree, op, t, t.snapshot(op, n), rep)["ok"]:
                    alive.remove(t)
        self.time_status(tree, rep, alive)
        for t in order:
            rmtree(t.work)

    def wanted(self, op: str) -> bool:
        return not self.args.only or op in self.args.only

    def du(self, tree, rep, alive) -> None:
        """`du` on the store the snapshots made, then again: a tool may keep what the first run
        read (rnstore's reachability cache, borg's chunks cache), as in everyday use."""
        for op in ("du", "du-again"):
            if not self.wanted(op):
                continue
            for t in alive:
                why = t.supports("du")
                if why:
                    self.skip(tree, op, t, why)
                else:
                    self.timed(tree, op, t, t.du(), rep)

    def restore(self, tree, rep, alive, expected, *, op="restore", under: Path | None = None) -> None:
        for t in alive:
            why = t.supports("restore")
            if why:
                self.skip(tree, op, t, why)
                continue
            target = (under / t.name if under else t.work) / "restore"
            rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not t.creates_target:
                target.mkdir()
            res = self.timed(tree, op, t, t.restore(target), rep)
            if res["ok"]:
                ok, probs, root = verify(expected[t.name], target,
                                         empty_dirs_optional=not t.stores_empty_dirs)
                res["verified_root"] = root
                if not ok:
                    self.invalidate(res, t, f"restore of {tree}", probs)
            rmtree(target)

    def export(self, tree, rep, alive, expected, *, op="export", under: Path | None = None) -> None:
        for t in alive:
            why = t.supports("export")
            if why:
                self.skip(tree, op, t, why)
                continue
            out = (under / t.name if under else t.work) / "export.tar.zst"
            out.parent.mkdir(parents=True, exist_ok=True)
            res = self.timed(tree, op, t, t.export(out), rep)
            if res["ok"]:
                res["export_bytes"] = out.stat().st_size if out.exists() else None
                try:
                    got = tar_manifest(out, expected[t.name])
                    probs = compare(expected[t.name], got, empty_dirs_optional=not t.stores_empty_dirs)
                except Exception as exc:  # noqa: BLE001 - an unreadable archive is a failed export
                    probs = [f"cannot read the archive: {exc!r}"]
                if probs:
                    self.invalidate(res, t, f"export of {tree}", probs)
            rmtree(out)

    # ------------------------------------------------------------------ tmpfs (issue 14)

    def repeats(self, op: str) -> int:
        """Runs of `op` per repetition: the restores run --restore-runs times in all."""
        return -(-self.args.restore_runs // self.args.runs) if op.startswith("restore") else 1

    def tmpfs(self) -> Path | None:
        """A fresh folder on the tmpfs (--tmpfs), or None (noted) when there is none: restores
        and exports there measure each tool's own work, without the disk's noise."""
        where = Path(self.args.tmpfs)
        rc, kind = capture(["stat", "-f", "-c", "%T", str(where)])
        if rc != 0 or kind.strip() not in ("tmpfs", "ramfs"):
            note(f"--tmpfs {where} is not a tmpfs ({kind.strip() or 'missing'}): tmpfs rows skipped")
            return None
        return Path(tempfile.mkdtemp(prefix="rnstore-bench-", dir=where))

    def restore_tmpfs(self, tree, rep, alive, expected) -> None:
        base = self.tmpfs()
        if base is None:
            return
        try:
            for _ in range(self.repeats("restore_tmpfs")):
                self.restore(tree, rep, alive, expected, op="restore_tmpfs", under=base)
        finally:
            rmtree(base)

    def export_tmpfs(self, tree, rep, alive, expected) -> None:
        base = self.tmpfs()
        if base is None:
            return
        try:
            self.export(tree, rep, alive, expected, op="export_tmpfs", under=base)
        finally:
            rmtree(base)

    def gc(self, tree, rep, alive) -> None:
        for t in alive:
            why_f, why_g = t.supports("forget"), t.supports("gc")
            if why_f and why_g:
                self.skip(tree, "gc", t, why_g)
                continue
            if why_f:
                self.skip(tree, "forget", t, why_f)
            else:
                try:
                    spec = t.forget(self.r)
                except (RuntimeError, ValueError, KeyError, IndexError) as exc:
                    loud(f"{t.name} forget on {tree}: {exc}")
                    continue
                if not self.timed(tree, "forget", t, spec, rep)["ok"]:
                    continue
            if why_g:
                self.skip(tree, "gc", t, why_g)
                continue
            if self.timed(tree, "gc", t, t.gc(), rep)["ok"]:
                self.sizes[tree][t.name].setdefault("after_gc", []).append(store_size(t.store_paths()))

    # ------------------------------------------------------------------ start-up

    def startup(self, rn: Rnstore, rn_python: str) -> dict:
        work = self.pb / "work" / "startup"
        rmtree(work)
        ws = work / "small"
        copy_tree(self.pb / "corpus" / "small", ws, hardlink=True)
        self.r.quiet([rn.exe, "init", "--no-default-ignore", "-q"], ws, rn.env)
        self.r.quiet([rn.exe, "commit", "-a", "-m", "m", "-q"], ws, rn.env)
        hello = work / "hello_typer.py"
        hello.write_text('import typer\napp = typer.Typer()\n\n\n@app.command()\n'
                         'def main(name: str = "world"):\n    print(f"hello {name}")\n\n\napp()\n')
        cmds = {
            "rnstore --version": [rn.exe, "--version"],
            "rnstore rev-parse HEAD": [rn.exe, "rev-parse", "HEAD"],
            "hello-world typer app": [rn_python, str(hello)],
            "python -c pass": [rn_python, "-c", "pass"],
        }
        if "git" in {t.name for t in self.tools}:
            g = Git(work, rn.env)
            g.tree = ws
            g.work.mkdir(parents=True, exist_ok=True)
            g.setup(self.r)
            self.r.quiet(g.snapshot("first", 1)[0], ws, g.env)
            cmds["git rev-parse HEAD"] = ["git", f"--git-dir={g.store}", "rev-parse", "HEAD"]
        out: dict = {}
        env = {**rn.env, "GIT_DIR": "", "GIT_WORK_TREE": ""}
        env = {k: v for k, v in env.items() if v}
        for name, argv in cmds.items():  # one run each for the exit code and peak RSS
            res = self.r.run(argv, ws, env, label="startup")
            out[name] = {"rc": res["rc"], "maxrss_kb": res["maxrss_kb"], "cmd": shlex.join(argv)}
            if not res["ok"]:
                loud(f"start-up command failed: {shlex.join(argv)}\n{res.get('error', '')}")
        runs = 3 if self.args.quick else 30
        if shutil.which("hyperfine") and capture(["hyperfine", "-N", "--help"])[0] == 0:
            jf = work / "hyperfine.json"
            argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--style", "basic",
                    "--export-json", str(jf)]
            for name, cmd in cmds.items():
                argv += ["-n", name, shlex.join(cmd)]
            r = self.r.run(argv, ws, env, label="hyperfine")
            if r["ok"]:
                for res in json.loads(jf.read_text())["results"]:
                    times = res["times"]
                    out[res["command"]].update(method="hyperfine", runs=len(times), times=times)
            else:
                note(f"hyperfine failed ({r.get('error', '')[-200:]}); timing with a loop instead")
        for name, cmd in cmds.items():
            if "times" in out[name]:
                continue
            times = []
            for _ in range(3):
                self.r.run(cmd, ws, env, label="startup-warm")
            for _ in range(max(runs, 10)):
                times.append(self.r.run(cmd, ws, env, label="startup")["wall"])
            out[name].update(method="loop", runs=len(times), times=times)
        for name, v in out.items():
            ts = v["times"]
            log(f"  startup {name:26} median {statistics.median(ts) * 1000:7.1f} ms  "
                f"min {min(ts) * 1000:7.1f}  max {max(ts) * 1000:7.1f}  rss {v['maxrss_kb'] / 1024:6.1f} MB")
        rmtree(work)
        return out


# --------------------------------------------------------------------------- cat-file --batch

CATFILE_OBJECTS = 10_000


def _batch_objects(output: bytes) -> list[tuple[bytes, int, bytes]]:
    """(id, size, content) of each object in `cat-file --batch` output."""
    found, at = [], 0
    while at < len(output):
        end = output.index(b"\n", at)
        oid, kind, size = output[at:end].split(b" ")
        start = end + 1
        found.append((oid, int(size), output[start:start + int(size)]))
        at = start + int(size) + 1
    return found


def catfile_batch(pb: Path, r: Runner, rn: Rnstore, tree: str, runs: int) -> dict:
    """`cat-file --batch` over the same CATFILE_OBJECTS blobs of `tree` (evenly spread over its
    sorted paths), ids on stdin from a file, output to /dev/null: rnstore against git with its
    objects loose (as its first commit leaves them) and packed (`git repack -adq`). Each tool
    commits the tree first, untimed. One untimed run each writes the output to a file, and the
    contents (sizes and bytes, in order) must be the same for every tool, else INVALID.
    Interleaved, rotating the starting tool; medians of `runs`."""
    work = pb / "work" / "catfile"
    rmtree(work)
    rn_tree, git_tree = work / "rnstore-tree", work / "git-tree"
    # a private copy, so that both tools commit the same bytes whatever happens to the corpus
    # meanwhile; the second is hard links to it (neither tool writes into the files)
    copy_tree(pb / "corpus" / tree, rn_tree, hardlink=False)
    copy_tree(rn_tree, git_tree, hardlink=True)
    r.quiet([rn.exe, "init", "--no-default-ignore", "-q"], rn_tree, rn.env)
    r.quiet([rn.exe, "config", "limits.max_files", "100000000"], rn_tree, rn.env)
    r.quiet([rn.exe, "commit", "-a", "-m", "m", "-q"], rn_tree, rn.env)
    git = Git(work, rn.env)
    git.tree = git_tree
    git.work.mkdir(parents=True, exist_ok=True)
    git.setup(r)
    r.quiet(git.snapshot("first", 1)[0], git_tree, git.env)
    packed = work / "git-packed.git"
    subprocess.run(["cp", "-a", str(git.store), str(packed)], check=True)
    r.quiet(["git", "repack", "-adq"], git_tree, {**git.env, "GIT_DIR": str(packed)})

    rc, listing = capture([rn.exe, "ls-tree", "-r", "--json", "HEAD"], cwd=rn_tree, env=rn.env)
    if rc != 0:
        raise RuntimeError(f"rnstore ls-tree: {listing[-500:]}")
    ours = {e["path"]: e["id"] for e in json.loads(listing) if e["mode"] in ("100644", "100755")}
    raw = subprocess.run(["git", "ls-tree", "-r", "-z", "HEAD"], cwd=git_tree, env=git.env,
                         capture_output=True, check=True).stdout
    theirs = {}
    for record in raw.split(b"\0"):
        if record:
            meta, path = record.split(b"\t", 1)
            mode, _, oid = meta.split(b" ")
            if mode in (b"100644", b"100755"):
                theirs[os.fsdecode(path)] = oid.decode()
    paths = sorted(set(ours) & set(theirs))
    count = min(CATFILE_OBJECTS, len(paths))
    chosen = [paths[i * len(paths) // count] for i in range(count)]
    ids = {"rnstore": work / "rnstore.ids", "git": work / "git.ids"}
    ids["rnstore"].write_text("".join(ours[p] + "\n" for p in chosen))
    ids["git"].write_text("".join(theirs[p] + "\n" for p in chosen))
    q = shlex.quote
    commands = {  # (shell command, cwd, env)
        "rnstore": (f"{q(rn.exe)} cat-file --batch < {q(str(ids['rnstore']))}", rn_tree, rn.env),
        "git": (f"git cat-file --batch < {q(str(ids['git']))}", git_tree, git.env),
        "git-packed": (f"git cat-file --batch < {q(str(ids['git']))}", git_tree,
                       {**git.env, "GIT_DIR": str(packed)}),
    }
    out: dict = {"tree": tree, "objects": count, "runs": {name: [] for name in commands}, "problems": []}
    reference = None
    for name, (cmd, cwd, env) in commands.items():  # untimed: what each one prints
        dump = work / f"{name}.out"
        res = r.run(f"{cmd} > {q(str(dump))}", cwd, env, label=f"catfile-{name}-verify")
        if not res["ok"]:
            out["problems"].append(f"{name} failed (exit {res['rc']}): {res.get('error', '')[-300:]}")
            continue
        objects = [(size, content) for _, size, content in _batch_objects(dump.read_bytes())]
        out["bytes"] = sum(size for size, _ in objects)
        if reference is None:
            reference = objects
        elif objects != reference:
            out["problems"].append(f"{name} printed other contents than rnstore")
        rmtree(dump)
    if out["problems"]:
        loud("cat-file --batch INVALID: " + "; ".join(out["problems"]))
    names = list(commands)
    for rep in range(runs):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            cmd, cwd, env = commands[name]
            res = r.run(f"{cmd} > /dev/null", cwd, env, label=f"catfile-{name}")
            out["runs"][name].append({"wall": res["wall"], "cpu": res["cpu"], "rc": res["rc"],
                                      "maxrss_kb": res["maxrss_kb"], "cmd": res["cmd"]})
            log(f"  cat-file --batch {name:10} {res['wall']:7.3f} s  cpu {res['cpu']:6.2f} s  rc {res['rc']}")
    rmtree(work)
    return out


def catfile_report(catfile: dict) -> list[str]:
    """The cat-file --batch table: seconds, CPU and rnstore's ratio to each git."""
    L = ["", f"`cat-file --batch` over {catfile['objects']:,} blobs of {catfile['tree']} "
         f"({catfile.get('bytes', 0) / 1e6:.0f} MB of contents; ids on stdin, output to /dev/null; "
         f"seconds, median (min–max) of {len(catfile['runs']['rnstore'])}):", "",
         "| tool | wall | CPU | peak RSS MB | rnstore / tool |", "|---|---|---|---|---|"]
    label = {"rnstore": "rnstore", "git": "git (loose objects, as committed)",
             "git-packed": "git (packed: `git repack -adq`)"}
    ok = {n: [x for x in v if x["rc"] == 0] for n, v in catfile["runs"].items()}
    ours = statistics.median(x["wall"] for x in ok["rnstore"]) if ok["rnstore"] else None
    for name, runs in ok.items():
        if not runs:
            L.append(f"| {label[name]} | FAILED | — | — | — |")
            continue
        walls = [x["wall"] for x in runs]
        median = statistics.median(walls)
        ratio = f"{ours / median:.2f}" if ours and name != "rnstore" else "—"
        L.append(f"| {label[name]} | {fmt_s(median)} ({fmt_s(min(walls))}–{fmt_s(max(walls))}) | "
                 f"{fmt_s(statistics.median(x['cpu'] for x in runs))} | "
                 f"{max(x['maxrss_kb'] for x in runs) / 1024:.0f} | {ratio} |")
    if catfile["problems"]:
        L.append("")
        L.append("**INVALID**: " + "; ".join(catfile["problems"]))
    return L


# --------------------------------------------------------------------------- report

def fmt_s(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def summarize(samples: list[dict]) -> dict:
    good = [s for s in samples if s["valid"]]
    out = {"n": len(samples), "n_valid": len(good), "invalid": len(samples) - len(good)}
    if good:
        w = [s["wall"] for s in good]
        out.update(median=statistics.median(w), min=min(w), max=max(w),
                   cpu=statistics.median(s["cpu"] for s in good),
                   rss_mb=max(s["maxrss_kb"] for s in good) / 1024)
    return out


def cell(sm: dict | None) -> str:
    if not sm:
        return "—"
    if not sm.get("n_valid"):
        return "**INVALID**" if sm["n"] else "—"
    c = fmt_s(sm["median"])
    if sm["n_valid"] > 1:
        c += f" ({fmt_s(sm['min'])}–{fmt_s(sm['max'])})"
    if sm["invalid"]:
        c += f" **{sm['invalid']} INVALID**"
    return c


def cell_min_first(sm: dict | None) -> str:
    """min (median), for the rows in MIN_FIRST."""
    if not sm or not sm.get("n_valid"):
        return cell(sm)
    c = fmt_s(sm["min"]) + (f" ({fmt_s(sm['median'])})" if sm["n_valid"] > 1 else "")
    return c + (f" **{sm['invalid']} INVALID**" if sm["invalid"] else "")


def mb(b: float) -> str:
    return f"{b / 1e6:.1f}"


def report(bench: Bench, info: dict, startup: dict | None, args) -> str:
    tools = bench.tools
    names = [t.name for t in tools]
    label = {t.name: t.label for t in tools}
    peers = [n for n in names if n != "rnstore"]
    L = []
    L.append(f"Machine: {info['nproc']} cores, {info['cpu']}, {info['memory']}, Linux {info['kernel']}, "
             f"Python {info['python']}; {info['tools'].get('rnstore', '?')} "
             f"(commit {info['rnstore_commit']}); "
             + "; ".join(dict.fromkeys(v for k, v in info["tools"].items() if k != "rnstore")))
    if info.get("loadavg_end"):
        L.append("")
        L.append("Load average (1/5/15 min) at start: " + " ".join(f"{x:.2f}" for x in info["loadavg_start"])
                 + ", at end: " + " ".join(f"{x:.2f}" for x in info["loadavg_end"])
                 + " (other work on the machine shows up as noise; see min–max).")
    L.append("")
    L.append(f"Warm page cache, each tool on its own copy of the tree with a fresh store per run, "
             f"`sync` before each timed command, tools interleaved. Seconds, median (min–max) of "
             f"{args.runs} run(s); ratio = rnstore median / peer median (< 1: rnstore faster).")
    summaries: dict = {}
    for tree, ops in bench.results.items():
        L.append("")
        L.append(f"**{tree}**")
        L.append("")
        head = ["operation", *[label[n] for n in names], *[f"rnstore/{n}" for n in peers]]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for op in OPS:
            if op not in ops:
                continue
            sm = {n: summarize(ops[op][n]) if n in ops[op] else None for n in names}
            summaries.setdefault(tree, {})[op] = sm
            show, key = (cell_min_first, "min") if op in MIN_FIRST else (cell, "median")
            row = [OP_LABEL[op], *[show(sm[n]) for n in names]]
            for p in peers:
                a, b = sm.get("rnstore"), sm.get(p)
                if a and b and a.get("n_valid") and b.get("n_valid") and b[key] > 0:
                    row.append(f"{a[key] / b[key]:.2f}")
                else:
                    row.append("—")
            L.append("| " + " | ".join(row) + " |")
        # peak RSS and CPU
        L.append("")
        L.append(f"Peak RSS (MB, max over runs) / CPU time (user+sys s, median) on {tree}:")
        L.append("")
        L.append("| operation | " + " | ".join(label[n] for n in names) + " |")
        L.append("|---|" + "---|" * len(names))
        for op in OPS:
            if op not in ops:
                continue
            row = [OP_LABEL[op]]
            for n in names:
                s = summaries[tree][op].get(n)
                row.append(f"{s['rss_mb']:.0f} / {fmt_s(s['cpu'])}" if s and s.get("n_valid") else "—")
            L.append("| " + " | ".join(row) + " |")
        if tree in bench.sizes:
            L.append("")
            L.append(f"Store size on {tree}, apparent / allocated MB (median over runs):")
            L.append("")
            L.append("| when | " + " | ".join(label[n] for n in names) + " |")
            L.append("|---|" + "---|" * len(names))
            for when, what in (("snapshots", "after the snapshots"), ("after_gc", "after forget + gc")):
                row = [what]
                for n in names:
                    v = bench.sizes[tree].get(n, {}).get(when)
                    if v:
                        row.append(f"{mb(statistics.median(x['apparent'] for x in v))} / "
                                   f"{mb(statistics.median(x['allocated'] for x in v))}")
                    else:
                        row.append("—")
                if any(c != "—" for c in row[1:]):
                    L.append("| " + " | ".join(row) + " |")
    if startup:
        L.append("")
        L.append("Start-up, small workspace (ms; "
                 + ("hyperfine" if any(v.get("method") == "hyperfine" for v in startup.values()) else "loop")
                 + f", {next(iter(startup.values()))['runs']} runs):")
        L.append("")
        L.append("| command | median | min–max | peak RSS MB |")
        L.append("|---|---|---|---|")
        for name, v in startup.items():
            ts = v["times"]
            L.append(f"| `{name}` | {statistics.median(ts) * 1000:.1f} | "
                     f"{min(ts) * 1000:.1f}–{max(ts) * 1000:.1f} | {v['maxrss_kb'] / 1024:.0f} |")
    if getattr(bench, "catfile", None):
        L += catfile_report(bench.catfile)
    L += notes_section()
    bench.summaries = summaries
    return "\n".join(L)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", default=None, help="comma list of small,medium,big (default medium,big), "
                                                  "or many (200,000 generated files: first, no-op, status)")
    ap.add_argument("--runs", type=int, default=None, help="repetitions (default 3)")
    ap.add_argument("--peers", default=None,
                    help="comma list of git,restic,borg,borg-zstd (default git,restic,borg); '' for none")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: small tree, 1 run, rnstore + git (explicit --trees/--runs/--peers win)")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    ap.add_argument("--no-catfile", action="store_true", help="skip the cat-file --batch row")
    ap.add_argument("--json", default="/tmp/rnstore-bench.json", help="raw results (default %(default)s)")
    ap.add_argument("--markdown", default=None, help="also write the tables to this file")
    ap.add_argument("--rnstore", default=None, help="rnstore executable (default: next to this python, "
                                                    "else on PATH, else installed into $PB/rnstore-venv)")
    ap.add_argument("--rev", default=None,
                    help="benchmark rnstore as committed at this git revision, or 'worktree' for a frozen "
                         "copy of the working tree (installed into its own venv under $PB), instead of "
                         "the installed rnstore")
    ap.add_argument("--git-gc", action="store_true", help="also time `git gc --prune=now` (a full repack)")
    ap.add_argument("--only", default=None,
                    help=f"comma list of {','.join(SELECTABLE_OPS)}: time only these after the snapshots "
                         "(default: all)")
    ap.add_argument("--keep-logs", action="store_true", help="keep $PB/work/logs (command outputs)")
    ap.add_argument("--tmpfs", default="/dev/shm",
                    help="a tmpfs for the restore and export rows without the disk (default %(default)s)")
    ap.add_argument("--restore-runs", type=int, default=None,
                    help="restores (disk and tmpfs) per tool in all, spread over the repetitions "
                         "(default 5; 1 with --quick); the disk row shows min (median)")
    args = ap.parse_args(argv)
    quick = ("small", 1, "git") if args.quick else ("medium,big", 3, "git,restic,borg")
    args.trees = quick[0] if args.trees is None else args.trees
    args.runs = quick[1] if args.runs is None else args.runs
    args.peers = quick[2] if args.peers is None else args.peers
    args.restore_runs = (1 if args.quick else 5) if args.restore_runs is None else args.restore_runs
    trees = [t for t in args.trees.split(",") if t]
    args.only = [op for op in (args.only or "").split(",") if op]
    for op in args.only:
        if op not in SELECTABLE_OPS:
            ap.error(f"unknown operation {op!r} for --only (one of {', '.join(SELECTABLE_OPS)})")
    peers = [p for p in args.peers.split(",") if p]
    for t in trees:
        if t not in ALL_TREES and t not in SCALE_TREES:
            ap.error(f"unknown tree {t!r}")
    for p in peers:
        if p not in KNOWN_PEERS:
            ap.error(f"unknown peer {p!r}")

    def _term(signum, frame):  # run the clean-up in `finally` on kill as on Ctrl-C;
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second kill must not cut it short
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)

    pb = Path(os.environ.get("PB", "/tmp/peerbench")).absolute()
    pb.mkdir(parents=True, exist_ok=True)
    # one benchmark at a time per $PB: runs share $PB/work and $PB/rnstore-*, and would also
    # slow each other down
    import fcntl
    lock = open(pb / "bench.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        log(f"waiting for the benchmark already running on {pb} ({lock.read().strip() or '?'}) ...")
        fcntl.flock(lock, fcntl.LOCK_EX)
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}: {shlex.join(sys.argv)}\n")
    lock.flush()
    ensure_corpus(pb)
    peers = ensure_tools(peers, want_hyperfine=not args.no_startup)
    rev_sha = None
    if args.rev:
        exe, rev_sha = install_rev(args.rev, pb)
    else:
        exe = find_rnstore(args.rnstore, pb)
    rn_python = python_of(exe)
    rc, where = capture([rn_python, "-c", "import rnstore; print(rnstore.__file__)"])
    if not args.rev and (rc != 0 or not Path(where).resolve().is_relative_to(REPO.resolve())):
        note(f"the rnstore benchmarked ({exe}) is not this checkout's ({REPO}): it imports {where}")

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RNSTORE_", "GIT_", "RESTIC_", "BORG_"))
           # as users run it: bytecode cached (else every start compiles rnstore), stdout buffered
           and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}
    env.update(RNSTORE_PROGRESS="0", NO_COLOR="1", LC_ALL="C.UTF-8", RNSTORE_USER="bench")
    work = pb / "work"
    rmtree(work)
    for t in ALL_TREES:  # leftovers of an interrupted run must not sit in the corpus
        for d in EXCLUDE_TOP:
            if (pb / "corpus" / t / d).exists():
                rmtree(pb / "corpus" / t / d)
    runner = Runner(work / "logs")
    rn = Rnstore(work, env, exe)
    Git.full_gc = args.git_gc
    cls = {"git": Git, "restic": Restic, "borg": Borg, "borg-zstd": BorgZstd}
    tools: list[Tool] = [rn] + [cls[p](work, env) for p in peers]
    info = machine_info({t.name: t for t in tools}, rn_python)
    if rev_sha:
        info["rnstore_commit"] = rev_sha
    log("machine: " + json.dumps(info))
    if args.runs > 1 and not args.quick:
        note("page cache is warm: each tree is read once before timing (copies are made untimed)")

    bench = Bench(args, pb, tools, runner)
    t0 = time.time()
    startup = None

    def emit(final: bool) -> str:
        info["loadavg_end"] = os.getloadavg()
        text = report(bench, info, startup, args)
        doc = {"machine": info, "args": vars(args), "pb": str(pb), "elapsed_s": time.time() - t0,
               "complete": final, "notes": list(dict.fromkeys(NOTES)), "results": bench.results,
               "summaries": bench.summaries, "store_sizes": bench.sizes, "startup": startup,
               "catfile": bench.catfile,
               "skipped": [{"tree": k[0], "op": k[1], "tool": k[2], "why": v}
                           for k, v in bench.skipped.items()],
               "markdown": text}
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str))
        if args.markdown:
            Path(args.markdown).write_text(text + "\n")
        return text

    try:
        if not args.no_startup:  # first: short, and a long run stopped later still has it
            try:
                startup = bench.startup(rn, rn_python)
            except RuntimeError as exc:
                loud(f"start-up timings failed: {exc}")
        if not args.no_catfile and "git" in peers:  # short too: before the trees
            catfile_tree = "medium" if "medium" in trees or not args.quick else trees[0]
            try:
                bench.catfile = catfile_batch(pb, runner, rn, catfile_tree, 1 if args.quick else 5)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                loud(f"cat-file --batch timings failed: {exc}")
        for tree in trees:
            if tree in SCALE_TREES:
                manifest(ensure_scale_tree(pb, tree))  # warm, as the others
            else:
                manifest(pb / "corpus" / tree)  # warm the page cache with the source tree
            for rep in range(args.runs):
                bench.run_tree(tree, rep)
                emit(final=False)  # a long run stopped later still leaves its results
    except KeyboardInterrupt:
        loud("interrupted: reporting what was measured so far")
        note("the run was interrupted: figures cover the repetitions done before (the last may be partial)")
    finally:
        for t in tools:
            if t.work.exists():
                rmtree(t.work)
    text = emit(final=True)
    print()
    print(text)
    log(f"\nraw results: {args.json}")
    if not args.keep_logs:
        rmtree(work)
    invalid = sum(s["invalid"] for ops in bench.summaries.values() for sm in ops.values()
                  for s in sm.values() if s)
    if invalid:
        loud(f"{invalid} figure(s) INVALID (failed command or failed verification); see above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
