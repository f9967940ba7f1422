"""`-o` options on a remote that takes none: a local folder's."""

from __future__ import annotations

import pytest

from helpers.cli import run_cli
from helpers.remote import workspace_with_snapshot


@pytest.mark.parametrize("url", ["{share}", "file://{share}"])
def test_an_option_on_a_local_folder_remote_is_refused(tmp_path, url):
    """Any -o option (misspelt, or meant for another backend) on a local
    folder was recorded and then ignored at every push and fetch."""
    workspace_with_snapshot(tmp_path / "a")
    url = url.format(share=tmp_path / "share")
    added = run_cli(["remote", "add", "-o", "auto_mkdir=maybe", "origin", url], tmp_path / "a")
    assert added.returncode == 2, added.stderr
    assert added.stderr.splitlines()[0] == (
        f"error: remote {url} is a local folder, which takes no -o options (given: auto_mkdir)")
    assert run_cli(["remote"], tmp_path / "a").out == ""
    assert run_cli(["remote", "add", "origin", url], tmp_path / "a").returncode == 0


def test_a_digit_that_is_no_decimal_digit_is_one_error(tmp_path):
    """'²'.isdigit() is true but int('²') fails: the value was taken for a
    whole number, and `remote add` ended in an internal error."""
    pytest.importorskip("s3fs")
    workspace_with_snapshot(tmp_path / "a")
    added = run_cli(["remote", "add", "-o", "max_concurrency=²", "origin", "s3://b/p"], tmp_path / "a")
    assert added.returncode == 2, added.stderr
    assert added.stderr.splitlines()[0] == (
        "error: option 'max_concurrency' of remote s3://b/p takes a whole number, not '²'")


def test_a_password_or_user_name_of_digits_stays_text():
    """Values that look like numbers or flags are typed for the backend
    (ports, timeouts, flags), but never a credential's: `-o password=123456`
    reached the SSH client as an int, `-o username=007` as 7."""
    from rnstore.remote.backend import _typed
    typed = _typed({"password": "123456", "username": "007", "passphrase": "true",
                    "client_kwargs.aws_secret_access_key": "42", "port": "2222", "use_ssl": "false"})
    assert typed == {"password": "123456", "username": "007", "passphrase": "true",
                     "client_kwargs": {"aws_secret_access_key": "42"}, "port": 2222, "use_ssl": False}
