"""A real S3 server on loopback for the remote tests: moto's server in its
own process (`python -m moto.server`), started once per session on a free
port and stopped at the end. No client is mocked: rnstore's s3fs talks HTTP
to it, as it would to AWS, MinIO or R2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

#: A fake secret the tests look for in every output.
SECRET = "rnstoreTestSecret0123456789abcdefXYZ"


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]

    def client(self):
        """An s3fs file system on the server, for the tests' own looks."""
        import s3fs
        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key="testing", secret=SECRET,
                                 skip_instance_cache=True, use_listings_cache=False)

    def new_bucket(self) -> str:
        name = f"rn-{uuid.uuid4().hex[:16]}"
        self.client().mkdir(name)
        return name


def listening(port: int, proc: subprocess.Popen, seconds: float) -> bool:
    """Wait until something accepts connections on the loopback port; False
    if `proc` exits or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install -e '.[test]')")
    pytest.importorskip("s3fs", reason="the S3 tests need s3fs (pip install -e '.[test]')")
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        if not listening(port, proc, 60):
            pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
        endpoint = f"http://127.0.0.1:{port}"
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
               "AWS_EC2_METADATA_DISABLED": "true"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # for library calls made in the test process
        yield S3Server(endpoint, env)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    finally:
        proc.kill()
        proc.wait()


def race(count: int, attempt) -> list[int]:
    """Run attempt(i) for i in range(count) in threads released at once; the
    i whose attempt returned true."""
    import threading
    barrier = threading.Barrier(count)
    wins = []

    def run(i):
        barrier.wait()
        if attempt(i):
            wins.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wins


def workspace_with_snapshot(path: Path, files: int = 20, seed: int = 0, url: str | None = None):
    """A workspace (made through the library) with one snapshot of `files`
    files, and remote `origin` at `url` if given; its Repository."""
    from rnstore import Repository
    from rnstore.remote import transfer
    repo = Repository.init(path, default_ignore=False)
    write_files(path, files, seed=seed)
    repo.snapshot("first")
    if url is not None:
        transfer.add_remote(repo, "origin", url)
    return repo


def write_files(root: Path, count: int, *, size: int = 200, seed: int = 0, prefix: str = "f") -> None:
    """`count` files spread over a few folders, with deterministic distinct contents."""
    import random
    rng = random.Random(seed)
    for i in range(count):
        path = root / f"d{i % 10}" / f"{prefix}{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{prefix}{i} ".encode() + rng.randbytes(size))


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root but .rnstore, path -> bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".rnstore" not in p.relative_to(root).parts}


def keys(fs, bucket: str) -> dict[str, str]:
    """Every key in the bucket with its ETag."""
    fs.invalidate_cache()
    return {path: info.get("ETag", "") for path, info in fs.find(bucket, detail=True).items()}
