"""push, fetch, pull and clone through a real S3 server on loopback (moto's,
started by the s3_server fixture), end to end through the CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.remote import SECRET, keys, race, tree_bytes, workspace_with_snapshot, write_files
from helpers.cli import cli_env, run_cli

from rnstore import Repository
from rnstore.errors import CorruptObjectError
from rnstore.remote import transfer
from rnstore.remote.backend import RemoteError, open_backend
from rnstore.remote.remote import Remote


@pytest.fixture
def s3(s3_server):
    """(server, bucket, URL of a fresh remote in it)."""
    bucket = s3_server.new_bucket()
    return s3_server, bucket, f"s3://{bucket}/team"


def cli(args, cwd, server, env=None, check=True):
    result = run_cli(args, cwd, env={**server.env, **(env or {})})
    assert SECRET not in result.out + result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


def make_workspace(path: Path, server, files: int = 50, seed: int = 0, url: str | None = None) -> Path:
    """workspace_with_snapshot's folder (made through the library: the CLI
    runs where the behaviour under test is)."""
    workspace_with_snapshot(path, files, seed, url)
    return path


def lib(path: Path) -> Repository:
    return Repository.open(path)


def commit(path: Path, name: str, data: bytes, message: str = "m") -> str:
    (path / name).parent.mkdir(parents=True, exist_ok=True)
    (path / name).write_bytes(data)
    return lib(path).snapshot(message).id


def pushed(path, server, *args, env=None):
    return json.loads(cli(["push", "--json", *args], path, server, env=env).stdout)


def test_round_trip(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=120)
    cli(["remote", "add", "origin", url], a, server)
    report = pushed(a, server, "origin")
    assert report["objects"] > 120 and report["bytes"] > 0
    assert [r["status"] for r in report["refs"]] == ["created"]
    result = cli(["clone", "--json", url, str(tmp_path / "b")], tmp_path, server)
    assert json.loads(result.stdout)["objects"] == report["objects"]
    assert tree_bytes(tmp_path / "b") == tree_bytes(a)
    b = lib(tmp_path / "b")
    assert b.fsck().ok
    assert b.log("origin/main").entries[0].id == lib(a).refs.resolve("refs/heads/main")


def test_pushes_are_packed_incremental_and_idempotent(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=600, url=url)
    report = transfer.push(lib(a), "origin")
    assert report.objects > 600 and report.packs == 1
    fs = server.client()
    first = keys(fs, bucket)
    # marker, HEAD, one pack and its index, one record, one ref version
    assert len(first) == 6, sorted(first)
    again = transfer.push(lib(a), "origin")
    assert again.objects == 0 and again.refs[0].status == "up-to-date"
    assert keys(fs, bucket) == first  # no key added, changed or left behind
    commit(a, "d3/f3.txt", b"changed\n")
    report = transfer.push(lib(a), "origin")
    new = set(keys(fs, bucket)) - set(first)
    assert report.packs == 1 and report.objects == 4  # blob, two trees, snapshot
    assert len(new) == 4, sorted(new)  # pack, index, record, ref version


def test_corrupt_remote_object_is_refused_and_nothing_enters(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, url=url)
    transfer.push(lib(a), "origin")
    Repository.clone(url, tmp_path / "b")
    commit(a, "d1/new.txt", b"new bytes " * 100)
    first_packs = {p for p in keys(server.client(), bucket) if p.endswith(".pack")}
    transfer.push(lib(a), "origin")
    fs = server.client()
    (second_pack,) = {p for p in keys(fs, bucket) if p.endswith(".pack")} - first_packs
    data = bytearray(fs.cat_file(second_pack))
    data[len(data) // 3] ^= 0xFF  # inside a frame: before the index and trailer
    fs.pipe_file(second_pack, bytes(data))

    b = tmp_path / "b"
    before = lib(b).refs.list()
    stored_before = set(lib(b).store)
    result = cli(["pull", "origin"], b, server, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: remote object ") and "corrupt" in result.stderr
    assert not (b / "d1" / "new.txt").exists()
    assert lib(b).refs.list() == before
    for oid in set(lib(b).store) - stored_before:  # whatever entered is verified good
        lib(b).store.verify(oid)
    clone = cli(["clone", url, str(tmp_path / "c")], tmp_path, server, check=False)
    assert clone.returncode == 1 and "corrupt" in clone.stderr
    assert not (tmp_path / "c").exists()


def test_truncated_pack_is_refused(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, url=url)
    transfer.push(lib(a), "origin")
    fs = server.client()
    pack = next(p for p in keys(fs, bucket) if p.endswith(".pack"))
    fs.pipe_file(pack, fs.cat_file(pack)[:1000])
    with pytest.raises(CorruptObjectError, match="corrupt"):
        Repository.clone(url, tmp_path / "b")


def _clone_and_commit(tmp_path, url, name, seed):
    path = tmp_path / name
    Repository.clone(url, path)
    commit(path, f"{name}.txt", random.Random(seed).randbytes(300), name)
    return path


def _run_all(commands, server):
    """Start every command at once; (exit code, stdout, stderr) of each."""
    procs = [subprocess.Popen([sys.executable, "-m", "rnstore", *args], cwd=cwd,
                              env=cli_env(server.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args, cwd in commands]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert b"Traceback" not in stderr
        assert SECRET.encode() not in stdout + stderr
        results.append((proc.returncode, stdout.decode(), stderr.decode()))
    return results


@pytest.mark.torture  # processes racing or killed: slow; CI runs them
def test_racing_pushes_to_one_branch_lose_no_update(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=10, url=url)
    transfer.push(lib(a), "origin")
    racers = [_clone_and_commit(tmp_path, url, f"r{i}", i) for i in range(4)]
    results = _run_all([(["push", "origin"], path) for path in racers], server)
    winners = [path for path, (code, _, _) in zip(racers, results) if code == 0]
    losers = [(code, err) for code, _, err in results if code != 0]
    assert len(winners) == 1, results
    assert all(code == 1 and "pull" in err for code, err in losers), losers
    remote_ref = Remote(open_backend(url)).ref("refs/heads/main")
    assert remote_ref.id == lib(winners[0]).refs.resolve("refs/heads/main")
    # A loser cannot fast-forward: pull never merges, and only --force
    # would replace the winner's snapshot.
    loser = next(p for p in racers if p != winners[0])
    with pytest.raises(transfer.CannotFastForwardError):
        transfer.pull(lib(loser), "origin")


def test_compare_and_swap_has_one_winner(s3):
    server, bucket, url = s3
    remote = Remote(open_backend(url))
    remote.ensure()
    start = remote.ref("refs/heads/race")
    wins = race(8, lambda i: remote.swap_ref(start, f"{i:064x}"))
    assert len(wins) == 1
    assert remote.ref("refs/heads/race").id == f"{wins[0]:064x}"


@pytest.mark.torture  # processes racing or killed: slow; CI runs them
def test_concurrent_pushes_of_different_tags(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=10, url=url)
    transfer.push(lib(a), "origin")
    pushers = []
    for i in range(4):
        path = _clone_and_commit(tmp_path, url, f"t{i}", 10 + i)
        lib(path).tag(f"v{i}")
        pushers.append(path)
    results = _run_all([(["push", "origin", f"v{i}"], path) for i, path in enumerate(pushers)], server)
    assert all(code == 0 for code, _, _ in results), results
    refs = Remote(open_backend(url)).refs()
    for i, path in enumerate(pushers):
        assert refs[f"refs/tags/v{i}"].id == lib(path).refs.resolve(f"refs/tags/v{i}")
    b = tmp_path / "b"
    Repository.clone(url, b)
    for i in range(4):
        lib(b).checkout(f"v{i}")
        assert (b / f"t{i}.txt").read_bytes() == (pushers[i] / f"t{i}.txt").read_bytes()


def test_tag_with_another_id_and_non_fast_forward_are_refused(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=5, url=url)
    lib(a).tag("v1")
    transfer.push(lib(a), "origin", ["main", "v1"])
    b = _clone_and_commit(tmp_path, url, "b", 1)
    lib(b).tag("v1", force=True)
    with pytest.raises(transfer.PushRefusedError, match="v1") as refused:
        transfer.push(lib(b), "origin", ["v1"])
    assert "force=True" in refused.value.hints[0]  # the API's word; the CLI says --force
    commit(a, "other.txt", b"other")
    transfer.push(lib(a), "origin")
    result = cli(["push", "--json", "origin"], b, server, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: push to origin refused for main\nhint: ")
    assert json.loads(result.stdout)["refs"][0]["status"] == "refused"
    forced = transfer.push(lib(b), "origin", ["main", "v1"], force=True)
    assert {r.status for r in forced.refs} == {"forced"}


def test_pull_fast_forwards_a_clean_workspace_and_leaves_changes_alone(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=5, url=url)
    transfer.push(lib(a), "origin")
    b = tmp_path / "b"
    Repository.clone(url, b)
    commit(a, "d0/f0.txt", b"from a\n")
    transfer.push(lib(a), "origin")
    result = transfer.pull(lib(b), "origin")
    assert (b / "d0" / "f0.txt").read_bytes() == b"from a\n"
    assert result.fast_forwarded == lib(a).refs.resolve("refs/heads/main")
    third = commit(a, "d0/f0.txt", b"third\n")
    transfer.push(lib(a), "origin")
    (b / "d0" / "f0.txt").write_bytes(b"my local edit\n")
    result = cli(["pull", "origin"], b, server, check=False)
    assert result.returncode == 1 and "uncommitted" in result.stderr
    assert (b / "d0" / "f0.txt").read_bytes() == b"my local edit\n"
    assert lib(b).refs.resolve("refs/remotes/origin/main") == third


@pytest.mark.torture  # processes racing or killed: slow; CI runs them
def test_push_killed_at_any_moment_is_retried_without_reuploading(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=1500, seed=7, url=url)
    fs = server.client()
    rng = random.Random(1234)
    for attempt, watch in enumerate(["packs/", "index/", None]):
        proc = subprocess.Popen([sys.executable, "-m", "rnstore", "push", "origin"], cwd=a,
                                env=cli_env(server.env), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if watch is None:
                time.sleep(rng.uniform(0.5, 2.0))
                break
            if any(f"/team/{watch}" in k for k in keys(fs, bucket)):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        commit(a, f"more{attempt}.txt", b"x%d" % attempt)
    indexed = set(Remote(open_backend(url)).load_index())
    report = transfer.push(lib(a), "origin")
    assert report.refs[0].status in ("created", "updated")
    everything = set(Remote(open_backend(url)).load_index())
    assert report.objects == len(everything - indexed)  # nothing indexed was sent again
    assert transfer.push(lib(a), "origin").objects == 0
    b = tmp_path / "b"
    Repository.clone(url, b)
    assert tree_bytes(b) == tree_bytes(a)


def test_unreachable_endpoint_fails_in_bounded_time_with_one_line(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=3, url=url)
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    start = time.monotonic()
    result = cli(["push", "origin"], a, server, check=False,
                 env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{dead}", "RNSTORE_REMOTE_TIMEOUT": "2"})
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and "gave up after 2 s" in lines[0]
    assert all(line.startswith("hint: ") for line in lines[1:])
    assert elapsed < 30


def test_missing_bucket_is_one_error(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=3)
    transfer.add_remote(lib(a), "origin", "s3://no-such-bucket-here/x")
    result = cli(["push", "origin"], a, server, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "bucket" in result.stderr
    assert len(result.stderr.splitlines()) <= 2
    with pytest.raises(RemoteError):
        Repository.clone("s3://no-such-bucket-here/x", tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_secrets_are_never_printed(tmp_path, s3):
    server, bucket, url = s3
    a = make_workspace(tmp_path / "a", server, files=3)
    cli(["remote", "add", "origin", url, "-o", "key=testing", "-o", f"secret={SECRET}",
         "-o", "endpoint_url=" + server.endpoint], a, server)
    listing = cli(["remote", "-v"], a, server).out
    assert "secret=***" in listing and server.endpoint in listing
    cli(["push", "origin"], a, server)
    cli(["fetch", "origin"], a, server)
    # failing: the error names the remote, never the key
    cli(["remote", "add", "broken", url, "-o", "key=testing", "-o", f"secret={SECRET}",
         "-o", "endpoint_url=http://127.0.0.1:9"], a, server)
    result = cli(["fetch", "broken"], a, server, check=False, env={"RNSTORE_REMOTE_TIMEOUT": "1"})
    assert result.returncode == 1 and result.stderr.startswith(f"error: {url}: ")
    password = "pw-" + SECRET
    result = cli(["remote", "add", "ssh", f"sftp://me:{password}@127.0.0.1/x"], a, server, check=False)
    assert password not in result.out + result.stderr
    if result.returncode == 0:
        assert password not in cli(["remote", "-v"], a, server).out
    assert (a / ".rnstore" / "remotes.json").stat().st_mode & 0o077 == 0


def test_the_readme_ci_recipe_works_against_the_loopback_server(tmp_path, s3):
    """README "Remotes": the CI recipe, verbatim but for the endpoint and
    bucket, run by bash in a fresh folder."""
    import re
    import stat
    server, bucket, url = s3
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme.split("## Remotes", 1)[1], re.S)
    recipe = next(block for block in blocks if "rnstore push" in block)  # after the loopback set-up
    assert "rnstore push" in recipe and "rnstore clone" in recipe
    recipe = recipe.replace("http://127.0.0.1:5000", server.endpoint).replace("ci-bucket", bucket)
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "rnstore").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rnstore "$@"\n')
    (shims / "rnstore").chmod(0o755 | stat.S_IXUSR)
    job = tmp_path / "job"
    job.mkdir()
    write_files(job, 30)
    env = cli_env({**server.env, "CI_JOB_ID": "42", "PATH": f"{shims}:{os.environ['PATH']}"})
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], cwd=job, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert tree_bytes(tmp_path / "review") == tree_bytes(job)


def test_a_large_file_is_streamed_in_one_request_and_kept_as_pushed(tmp_path, s3, monkeypatch):
    """A frame over LARGE_FRAME comes down streamed (S3: one ranged request
    read in pieces), is verified, and is stored as the pusher's frame, not
    compressed again; cut short, it is refused and nothing is stored."""
    server, bucket, url = s3
    monkeypatch.setattr(transfer, "LARGE_FRAME", 1 << 20)
    a = make_workspace(tmp_path / "a", server, files=3, url=url)
    lib(a).config.set("compression.large_level", "9", durable=False)
    big = random.Random(3).randbytes(3 << 20).hex().encode()  # compressible: levels differ
    oid = commit(a, "weights.bin", big)
    transfer.push(lib(a), "origin")
    blob = lib(a).store.get_tree(lib(a).store.get_snapshot(oid).tree).get(b"weights.bin").id
    frame = (lib(a).store.root / blob[:2] / blob[2:]).read_bytes()
    Repository.clone(url, tmp_path / "b")
    assert (tmp_path / "b" / "weights.bin").read_bytes() == big
    assert (lib(tmp_path / "b").store.root / blob[:2] / blob[2:]).read_bytes() == frame

    fs = server.client()
    (pack,) = [p for p in keys(fs, bucket) if p.endswith(".pack") and fs.size(p) > len(frame)]
    fs.pipe_file(pack, fs.cat_file(pack)[:len(frame) // 2])
    with pytest.raises(CorruptObjectError, match="truncated pack or a damaged index|corrupt"):
        Repository.clone(url, tmp_path / "c")
