"""push and clone over SFTP, against a real sshd on loopback that the test
starts (skipped, with the reason, where sshd or the [sftp] extra is missing).
The client finds its key and the server's host key where ssh keeps them
(~/.ssh), as a user's would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from helpers.remote import listening, race, tree_bytes, workspace_with_snapshot
from helpers.cli import run_cli

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if SSHD is None:
        pytest.skip("no sshd here (apt-get install openssh-server)")
    pytest.importorskip("sshfs", reason="the SFTP test needs the [sftp] extra (pip install 'rnstore[sftp]')")
    if shutil.which("ssh-keygen") is None:
        pytest.skip("no ssh-keygen here")
    root = tmp_path_factory.mktemp("sshd")
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")],
                   check=True)
    (root / "authorized_keys").write_text((home / ".ssh" / "id_ed25519.pub").read_text())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host_key = (root / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    config = root / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root / 'host_key'}
PidFile {root / 'sshd.pid'}
AuthorizedKeysFile {root / 'authorized_keys'}
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
""")
    try:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder, when root
    except OSError:
        pass
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(root / "sshd.log", "wb"))
    try:
        if not listening(port, proc, 20):
            pytest.skip(f"sshd did not start here: {(root / 'sshd.log').read_text()[-500:]}")
        import getpass
        yield {"port": port, "home": home, "user": getpass.getuser(), "root": root}
    finally:
        proc.kill()
        proc.wait()


def test_push_and_clone_over_sftp(tmp_path, sshd):
    env = {"HOME": str(sshd["home"])}
    target = tmp_path / "over-ssh"
    url = f"sftp://{sshd['user']}@127.0.0.1:{sshd['port']}{target}"
    workspace_with_snapshot(tmp_path / "a", files=40)
    added = run_cli(["remote", "add", "origin", url], tmp_path / "a", env=env)
    assert added.returncode == 0, added.stderr
    pushed = run_cli(["push", "origin"], tmp_path / "a", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert (target / "rnstore-remote").is_file() and list((target / "packs").iterdir())
    cloned = run_cli(["clone", url, str(tmp_path / "b")], tmp_path, env=env)
    assert cloned.returncode == 0, cloned.stderr
    assert tree_bytes(tmp_path / "b") == tree_bytes(tmp_path / "a")
    again = run_cli(["push", "--json", "origin"], tmp_path / "a", env=env)
    assert again.returncode == 0 and '"objects": 0' in again.out


def test_exclusive_create_over_sftp_has_one_winner(tmp_path, sshd, monkeypatch):
    from rnstore.remote.backend import open_backend
    monkeypatch.setenv("HOME", str(sshd["home"]))
    backend = open_backend(f"sftp://{sshd['user']}@127.0.0.1:{sshd['port']}{tmp_path / 'r'}")
    backend.put("refs/heads/x/.keep", b"")  # the folder
    wins = race(6, lambda i: backend.create("refs/heads/x/00000000000000000001", b"%d" % i))
    assert len(wins) == 1
    assert backend.get("refs/heads/x/00000000000000000001") == b"%d" % wins[0]


def test_ranged_reads_over_sftp_return_the_range(tmp_path, sshd, monkeypatch):
    """sshfs's cat_file ignores start and end; a range must still be exactly
    the range (every fetch reads frames by range), also across the pieces a
    large frame is streamed in, and a read past the end is a short read."""
    from rnstore.remote.backend import STREAM_PIECE, ShortReadError, open_backend
    monkeypatch.setenv("HOME", str(sshd["home"]))
    backend = open_backend(f"sftp://{sshd['user']}@127.0.0.1:{sshd['port']}{tmp_path / 'r'}")
    data = os.urandom(STREAM_PIECE + 300_000)
    backend.put("packs/p.pack", data)
    assert backend.get_range("packs/p.pack", 1000, 1100) == data[1000:1100]
    out = tmp_path / "out"
    with open(out, "wb") as file:
        backend.get_range_into("packs/p.pack", 7, len(data) - 5, file)
    assert out.read_bytes() == data[7:-5]
    with pytest.raises(ShortReadError):
        backend.get_range("packs/p.pack", len(data) - 10, len(data) + 10)
