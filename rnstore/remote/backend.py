"""The one narrow interface between rnstore and a remote's storage.

A Backend stores opaque byte strings under keys (slash-separated, relative
to the remote's prefix) and offers only what object storage offers
everywhere: get (whole or a byte range), put (overwrite), create (exclusive:
fails when the key exists; the compare-and-swap that ref updates are built
on), list by prefix, stat and delete. Nothing above this module knows which
service it talks to (as restic's `internal/backend` and kopia's `repo/blob`).

FsspecBackend is the one implementation, for every fsspec file system. A
local path (file:// or a plain path, a mounted share) gets atomic puts by
temporary file and rename, and exclusive creates by link(2), because a local
file is visible while it is written; object stores make an upload visible
whole by themselves and give exclusive create as If-None-Match.

RetryingBackend is the one place where transient failures (throttling,
timeouts, dropped connections) are retried, with exponential backoff and a
bound on the total time; every other error passes through at once.
"""

from __future__ import annotations

import errno
import os
import random
import re
import stat
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable

from ..errors import BadInputError, RnstoreError
from ..fsutil import TMP_PREFIX, fsync_dir

#: How long one call keeps retrying a transient failure before giving up.
DEFAULT_RETRY_SECONDS = 60.0
RETRY_ENV = "RNSTORE_REMOTE_TIMEOUT"
#: Network time-outs per request, passed to backends that take them.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30

#: URL scheme -> (pip extra, the fsspec protocol's package)
EXTRAS = {
    "s3": ("s3", "s3fs"), "s3a": ("s3", "s3fs"),
    "gs": ("gcs", "gcsfs"), "gcs": ("gcs", "gcsfs"),
    "az": ("azure", "adlfs"), "abfs": ("azure", "adlfs"), "abfss": ("azure", "adlfs"),
    "sftp": ("sftp", "sshfs"), "ssh": ("sftp", "sshfs"),
}


class RemoteError(RnstoreError):
    """The remote cannot be reached or refused a request (exit 1)."""


class ShortReadError(Exception):
    """A ranged read past the end of a key: the key is shorter than its
    index says (truncated), which no retry will change."""


class MissingExtraError(BadInputError):
    """The backend's optional dependency is not installed (exit 2)."""


@dataclass(frozen=True)
class KeyInfo:
    size: int
    mtime: float | None  # seconds since the epoch, by the storage's clock


#: get_range_into's largest piece in memory.
STREAM_PIECE = 8 << 20


class Backend:
    """Keys to bytes. Missing keys: get/get_range raise FileNotFoundError,
    stat returns None, delete does nothing."""

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the key."""
        raise NotImplementedError

    def get_range_into(self, key: str, start: int, end: int, out: BinaryIO,
                       advance: Callable[[int], None] = lambda nbytes: None) -> None:
        """Write bytes [start, end) of the key into `out` in pieces of at
        most STREAM_PIECE bytes (memory stays bounded), calling `advance`
        with each piece's size; ShortReadError if the key ends first."""
        for at in range(start, end, STREAM_PIECE):
            data = self.get_range(key, at, min(at + STREAM_PIECE, end))
            out.write(data)
            advance(len(data))

    def put(self, key: str, data: bytes) -> None:
        """Store (or replace) the key; readers see all of it or nothing."""
        raise NotImplementedError

    def put_file(self, key: str, local_path: str) -> None:
        """put() of a local file's bytes, streamed."""
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> bool:
        """Store the key only if it does not exist (atomically); False if it did."""
        raise NotImplementedError

    def list(self, prefix: str) -> dict[str, KeyInfo]:
        """Every key below the folder `prefix` (recursively)."""
        raise NotImplementedError

    def stat(self, key: str) -> KeyInfo | None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError


class FsspecBackend(Backend):
    def __init__(self, fs, root: str, *, local: bool, native_create: bool = False,
                 ranged_cat: bool = True):
        self.fs = fs
        # sshfs's cat_file ignores start and end and returns the whole key:
        # ranges over SFTP are read from an open file instead
        self.ranged_cat = ranged_cat
        self.root = root.rstrip("/")
        self.local = local
        # s3fs implements pipe_file(mode="create") as If-None-Match; fsspec's
        # generic one is "exists, then write", no compare-and-swap, so the
        # others open the key with mode "xb" (O_EXCL over SFTP)
        self.native_create = native_create

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def get(self, key: str) -> bytes:
        if self.local:
            return _read_local_key(self._path(key))
        if self._s3:
            # one request: s3fs's cat_file asks for the key's size first (a HEAD)
            import fsspec.asyn

            body = self._s3_get(key)["Body"]
            try:
                return fsspec.asyn.sync(self.fs.loop, body.read)
            finally:
                body.close()
        return self.fs.cat_file(self._path(key))

    @property
    def _s3(self) -> bool:
        return self.native_create and hasattr(self.fs, "call_s3")

    def _s3_get(self, key: str, **options) -> dict:
        """S3's get_object response for the key (its body still to read)."""
        bucket, path, _ = self.fs.split_path(self._path(key))
        return self.fs.call_s3("get_object", Bucket=bucket, Key=path, **options)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        try:
            if self.local:
                data = _read_local_key(self._path(key), start, end)
            elif self.ranged_cat:
                data = self.fs.cat_file(self._path(key), start=start, end=end)
            else:
                data = self._read_open_range(key, start, end)
        except OSError as exc:
            if exc.errno == errno.EINVAL and "range" in str(exc).lower():  # HTTP 416
                raise ShortReadError(f"{key}: shorter than {end} bytes") from None
            raise
        if len(data) != end - start:
            raise ShortReadError(f"{key}: shorter than {end} bytes")
        return data

    def _read_open_range(self, key: str, start: int, end: int) -> bytes:
        with self.fs.open(self._path(key), "rb") as file:
            file.seek(start)
            pieces, wanted = [], end - start
            while wanted > 0:  # a read may return less than asked
                piece = file.read(wanted)
                if not piece:
                    break
                pieces.append(piece)
                wanted -= len(piece)
        return b"".join(pieces)

    def get_range_into(self, key, start, end, out, advance=lambda nbytes: None):
        if not self._s3:
            return super().get_range_into(key, start, end, out, advance)
        # S3: one request, its body read in pieces, rather than a request
        # per piece (a range request costs a round trip, and some servers
        # read the whole key to answer each one)
        import fsspec.asyn

        try:
            response = self._s3_get(key, Range=f"bytes={start}-{end - 1}")
        except OSError as exc:
            if exc.errno == errno.EINVAL and "range" in str(exc).lower():  # HTTP 416
                raise ShortReadError(f"{key}: shorter than {end} bytes") from None
            raise
        body = response["Body"]
        try:
            remaining = end - start
            while remaining:
                data = fsspec.asyn.sync(self.fs.loop, body.read, min(1 << 20, remaining))
                if not data:
                    raise ShortReadError(f"{key}: shorter than {end} bytes")
                out.write(data)
                advance(len(data))
                remaining -= len(data)
        finally:
            body.close()

    def put(self, key: str, data: bytes) -> None:
        if self.local:
            self._local_write(key, lambda fh: fh.write(data), exclusive=False)
        else:
            self.fs.pipe_file(self._path(key), data)

    def put_file(self, key: str, local_path: str) -> None:
        if self.local:
            def copy(fh):
                with open(local_path, "rb") as source:
                    while chunk := source.read(1 << 20):
                        fh.write(chunk)
            self._local_write(key, copy, exclusive=False)
        elif self._s3:
            # s3fs's put_file reads a file under its multipart size into
            # memory (and the request copies it again): a pack streamed from
            # its file keeps a push's memory flat, in the same one request
            bucket, path, _ = self.fs.split_path(self._path(key))
            with open(local_path, "rb") as source:
                self.fs.call_s3("put_object", Bucket=bucket, Key=path, Body=source)
        else:
            self.fs.put_file(local_path, self._path(key))

    def create(self, key: str, data: bytes) -> bool:
        try:
            if self.local:
                self._local_write(key, lambda fh: fh.write(data), exclusive=True)
            elif self.native_create:
                self.fs.pipe_file(self._path(key), data, mode="create")
            else:
                path = self._path(key)
                self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                try:
                    with self.fs.open(path, "xb") as fh:
                        fh.write(data)
                except Exception as exc:
                    # SFTP (version 3) answers a lost O_EXCL race with a bare "Failure"
                    if not isinstance(exc, FileExistsError) and self.fs.exists(path):
                        return False
                    raise
        except FileExistsError:
            return False
        return True

    def _local_write(self, key: str, write: Callable, *, exclusive: bool) -> None:
        final = self._path(key)
        folder = os.path.dirname(final)
        self._check_inside(folder)  # before makedirs, which would follow a link too
        os.makedirs(folder, exist_ok=True)
        temp = f"{folder}/{TMP_PREFIX}{os.getpid()}-{random.getrandbits(48):012x}"
        try:
            with open(temp, "xb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                os.link(temp, final)  # fails if `final` exists: the compare-and-swap
                os.unlink(temp)
            else:
                os.replace(temp, final)
            fsync_dir(folder)
        finally:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass

    def list(self, prefix: str) -> dict[str, KeyInfo]:
        base = self._path(prefix.rstrip("/"))
        self.fs.invalidate_cache(base)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            if self.local:
                return {}
            raise
        strip = len(self.root) + 1
        keys = {}
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            key = path[strip:] if path.startswith(self.root + "/") else path
            name = key.rsplit("/", 1)[-1]
            if self.local and name.startswith(".tmp-"):
                continue  # a local writer's temporary file
            keys[key] = _key_info(info)
        return keys

    def stat(self, key: str) -> KeyInfo | None:
        path = self._path(key)
        self.fs.invalidate_cache(path)
        try:
            return _key_info(self.fs.info(path))
        except FileNotFoundError:
            return None

    def _check_inside(self, folder: str) -> None:
        """A symbolic link planted in a shared folder (`refs/heads/x ->
        ~/somewhere`) never makes a write or a delete land outside the remote."""
        root = os.path.realpath(self.root)
        real = os.path.realpath(folder)
        if real != root and not real.startswith(root + os.sep):
            raise OSError(errno.EINVAL, "a symbolic link leads out of the remote", folder)

    def delete(self, key: str) -> None:
        if self.local:
            self._check_inside(os.path.dirname(self._path(key)))
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass


def _read_local_key(path: str, start: int = 0, end: int | None = None) -> bytes:
    """A key of a remote on a local path or share. A FIFO, device or folder
    in its place (another program's) is refused, never waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    with open(fd, "rb") as fh:
        fh.seek(start)
        return fh.read() if end is None else fh.read(end - start)


def _key_info(info: dict) -> KeyInfo:
    mtime = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    return KeyInfo(int(info.get("size") or 0), float(mtime) if mtime is not None else None)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: throttling, time-outs, dropped or refused connections.
    Missing keys, existing keys (a lost race) and refusals are answers."""
    if isinstance(exc, (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                        NotADirectoryError)):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError, EOFError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.EBUSY, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET,
                             errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, None)
    name = type(exc).__name__
    return any(word in name for word in ("Connection", "Timeout", "Endpoint", "Throttl",
                                         "ClientPayload", "ServerDisconnected", "IncompleteRead"))


class RetryingBackend(Backend):
    """Retries transient failures of any call, with exponential backoff and
    jitter, for at most `retry_for` seconds; then raises RemoteError."""

    def __init__(self, inner: Backend, describe: str, *, retry_for: float | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.inner = inner
        self.describe = describe  # the remote's URL, password masked
        if retry_for is None:
            retry_for = float(os.environ.get(RETRY_ENV) or DEFAULT_RETRY_SECONDS)
        self.retry_for = retry_for
        self._sleep = sleep
        self.requests = 0

    def _call(self, what: str, key: str, call: Callable):
        deadline = time.monotonic() + self.retry_for
        delay = 0.2
        while True:
            self.requests += 1
            try:
                return call()
            except (FileNotFoundError, FileExistsError, ShortReadError):
                raise
            except PermissionError as exc:
                raise RemoteError(f"{self.describe}: access denied ({what} {key}): {_brief(exc)}",
                                  hints=["check the credentials the backend uses (AWS_*, "
                                         "GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*, ssh)"]) from None
            except Exception as exc:
                if not is_transient(exc):
                    raise RemoteError(f"{self.describe}: {what} {key} failed: {_brief(exc)}") from None
                if time.monotonic() + delay > deadline:
                    raise RemoteError(
                        f"{self.describe}: unreachable or failing, gave up after "
                        f"{self.retry_for:g} s: {_brief(exc)}",
                        hints=[f"{RETRY_ENV}=SECONDS sets how long to retry"]) from None
                self._sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 10.0)

    def get(self, key):
        return self._call("get", key, lambda: self.inner.get(key))

    def get_range(self, key, start, end):
        return self._call("get", key, lambda: self.inner.get_range(key, start, end))

    def get_range_into(self, key, start, end, out, advance=lambda nbytes: None):
        at = out.tell()

        def attempt():  # a retry starts the range again, over what a failed one wrote
            out.seek(at)
            out.truncate()
            self.inner.get_range_into(key, start, end, out, advance)
        self._call("get", key, attempt)

    def put(self, key, data):
        return self._call("put", key, lambda: self.inner.put(key, data))

    def put_file(self, key, local_path):
        return self._call("put", key, lambda: self.inner.put_file(key, local_path))

    def create(self, key, data):
        return self._call("create", key, lambda: self.inner.create(key, data))

    def list(self, prefix):
        return self._call("list", prefix, lambda: self.inner.list(prefix))

    def stat(self, key):
        return self._call("stat", key, lambda: self.inner.stat(key))

    def delete(self, key):
        return self._call("delete", key, lambda: self.inner.delete(key))


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def split_url(url: str) -> tuple[str, str]:
    """(scheme, the rest); a plain path has scheme 'file'."""
    if "://" in url:
        scheme, rest = url.split("://", 1)
        return scheme.lower(), rest
    return "file", url


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    scheme, rest = split_url(url)
    if "://" not in url:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        authority = f"{userinfo}@{host}"
    return f"{scheme}://{authority}{slash}{path}"


def _backend_defaults(scheme: str) -> dict:
    # Object stores: fsspec's listings cache off (another machine changes
    # the remote between two looks, and a cached listing also answers
    # info() without asking). sshfs passes every option on to asyncssh.
    if scheme in ("s3", "s3a"):
        return {"use_listings_cache": False,
                "config_kwargs": {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                                  "retries": {"max_attempts": 1}}}
    if scheme in ("sftp", "ssh"):
        return {"connect_timeout": CONNECT_TIMEOUT}
    return {"use_listings_cache": False}


#: Set by the CLI (lean_service_models): botocore decodes its models into plain dicts.
_lean_models = False


def lean_service_models() -> None:
    """Have botocore, when an S3 remote first loads it, decode its service
    models (S3's API and endpoint rules: ~12 MB in memory) into plain dicts
    rather than an OrderedDict for every JSON object: the same order (dicts
    keep it), ~4 MB less, and a faster first client. It patches a module of
    botocore's, so the CLI asks for it, for its own process; a library
    caller's botocore is left as it is."""
    global _lean_models
    _lean_models = True


def _use_lean_models() -> None:
    try:
        from botocore import loaders
    except ImportError:
        return
    if getattr(loaders, "OrderedDict", None) is not None:  # the name its JSON decoding uses
        loaders.OrderedDict = dict


def open_backend(url: str, options: dict[str, str] | None = None, *,
                 retry_for: float | None = None) -> RetryingBackend:
    """The backend for a remote URL; MissingExtraError when its fsspec
    package is not installed."""
    scheme, rest = split_url(url)
    describe = mask_url(url)
    if scheme == "file":
        path = os.path.abspath(os.path.expanduser(rest))
        try:
            from fsspec.implementations.local import LocalFileSystem  # optional extra: loaded when used
            fs = LocalFileSystem()
        except ImportError:
            fs = _PlainLocalFileSystem()
        return RetryingBackend(FsspecBackend(fs, path, local=True), describe, retry_for=retry_for)
    if scheme not in EXTRAS:  # fsspec knows more (ftp, http, zip, memory): none keeps a remote's promises
        raise BadInputError(f"unsupported remote URL scheme '{scheme}://' in {describe}",
                            hints=["use s3://, gs://, az://, sftp://, file:// or a path"])
    extra, package = EXTRAS[scheme]
    try:
        import fsspec  # optional extra: loaded when used
        from fsspec.core import url_to_fs
    except ImportError:
        raise _missing(extra, "fsspec") from None
    merged = _merged(_backend_defaults(scheme), _typed(options or {}))
    _check_options(scheme, merged, describe)
    if _lean_models and scheme in ("s3", "s3a"):
        _use_lean_models()
    try:
        # fsspec's instance cache keeps one client (and its connections) per process
        fs, root = url_to_fs(url, **merged)
    except ImportError:
        raise _missing(extra, package or scheme) from None
    except ValueError as exc:
        raise BadInputError(f"cannot use remote {describe}: {_brief(exc)}") from None
    except TypeError as exc:
        raise BadInputError(f"bad option for remote {describe}: {_brief(exc)}") from None
    if scheme in ("s3", "s3a") and hasattr(fs, "retries"):
        fs.retries = 1  # s3fs's own retry loop; RetryingBackend is the one that retries
    if not root.strip("/"):
        raise BadInputError(f"remote URL {describe} names no bucket or folder")
    del fsspec
    return RetryingBackend(FsspecBackend(fs, root, local=False, native_create=scheme in ("s3", "s3a"),
                                         ranged_cat=scheme not in ("sftp", "ssh")),
                           describe, retry_for=retry_for)


#: options whose values are always text: names, passwords and keys
_CREDENTIAL_WORDS = re.compile(r"pass|user|secret|token|key|credential|account|login", re.I)


def _typed(options: dict[str, str]) -> dict:
    """-o values are strings; the few that backends expect typed are
    converted, and a dotted key (client_kwargs.region_name) is nested."""
    typed: dict = {}
    for key, value in options.items():
        low = value.lower()
        whole = value.isascii() and value.isdigit()  # ('²'.isdigit() too, which int() refuses)
        converted = low == "true" if low in ("true", "false") else int(value) if whole else value
        *outer, last = key.split(".")
        if _CREDENTIAL_WORDS.search(last):
            converted = value  # a password of digits (or "true") is still a password
        if "" in (*outer, last):
            raise BadInputError(f"backend option '{key}' is not KEY or KEY.SUBKEY")
        into = typed
        for part in outer:
            into = into.setdefault(part, {})
            if not isinstance(into, dict):
                raise BadInputError(f"backend option '{key}' nests under '{part}', which is given a value")
        if isinstance(into.get(last), dict):
            raise BadInputError(f"backend option '{key}' is given both a value and nested options")
        into[last] = converted
    return typed


def _merged(defaults: dict, options: dict) -> dict:
    """The options over the defaults, nested options merged key by key."""
    merged = dict(defaults)
    for key, value in options.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both else value
    return merged


#: Top-level options an S3 remote takes besides S3FileSystem's own: s3fs
#: hands the rest to aiobotocore's AioSession, which takes only these.
_S3_SESSION_OPTIONS = {"profile", "session_vars", "event_hooks", "include_builtin_handlers"}
#: Options every fsspec file system takes (its listings cache and instance cache).
_FSSPEC_OPTIONS = {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache"}


def _check_options(scheme: str, options: dict, describe: str) -> None:
    """A wrong -o option as one clear error naming it, at `remote add`,
    not as a TypeError from inside the backend at the first request. Types
    are judged by the backend's own defaults: a flag takes true or false,
    a count a whole number, `*_kwargs` nested options (KEY.SUBKEY=VALUE)."""
    import inspect
    from fsspec import get_filesystem_class
    try:
        parameters = inspect.signature(get_filesystem_class(scheme).__init__).parameters
    except (ImportError, ValueError, TypeError):
        return  # url_to_fs says what is missing
    for key, value in options.items():
        parameter = parameters.get(key)
        if parameter is None or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            if scheme in ("s3", "s3a") and key not in _S3_SESSION_OPTIONS | _FSSPEC_OPTIONS:
                raise BadInputError(f"unknown option '{key}' for remote {describe}",
                                    hints=["S3 options: s3fs.S3FileSystem's (endpoint_url, anon, "
                                           "client_kwargs.region_name, config_kwargs.KEY, ...)"])
            continue
        default = parameter.default
        nested = key.endswith("_kwargs") or isinstance(default, dict)
        if nested != isinstance(value, dict):
            raise BadInputError(
                f"option '{key}' of remote {describe} takes " + (
                    f"nested options ({key}.KEY=VALUE)" if nested else "a value, not nested options"))
        if isinstance(default, bool) and not isinstance(value, bool):
            raise BadInputError(f"option '{key}' of remote {describe} takes true or false, not '{value}'")
        if type(default) is int and type(value) is not int:
            raise BadInputError(f"option '{key}' of remote {describe} takes a whole number, not '{value}'")


def _missing(extra: str | None, package: str) -> MissingExtraError:
    pip = f"pip install 'rnstore[{extra}]'" if extra else f"pip install {package}"
    return MissingExtraError(f"this remote needs the Python package '{package}', which is not installed",
                             hints=[f"install it: {pip}"])


class _PlainLocalFileSystem:
    """Enough of fsspec's LocalFileSystem for a plain-path remote, so a
    mounted share works without fsspec installed."""

    def cat_file(self, path, start=None, end=None):
        with open(path, "rb") as fh:
            if start is None:
                return fh.read()
            fh.seek(start)
            return fh.read(end - start)

    def invalidate_cache(self, path=None):
        pass

    def find(self, base, detail=True):
        found = {}
        for folder, _dirs, files in os.walk(base):
            for name in files:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                found[path] = {"type": "file", "size": st.st_size, "mtime": st.st_mtime}
        return found

    def info(self, path):
        st = os.stat(path)
        return {"type": "file", "size": st.st_size, "mtime": st.st_mtime}

    def rm_file(self, path):
        os.unlink(path)


__all__ = ["Backend", "FsspecBackend", "RetryingBackend", "KeyInfo", "RemoteError", "ShortReadError",
           "MissingExtraError", "open_backend", "mask_url", "split_url"]
