"""Workspace settings: one JSON file, known keys with defaults and parsers."""

from __future__ import annotations

import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import CorruptStoreError, InvalidValueError
from .fsutil import atomic_write, read_text_or_none
from .units import parse_duration, parse_percent, parse_size, parse_stored_duration


def _level(key: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            level = int(text)
        except ValueError:
            level = 0
        if not 1 <= level <= 22:
            raise InvalidValueError(f"{key} must be a whole number from 1 to 22, not '{text}'")
        return level
    return parse


def _count(text: str) -> int:
    if not str(text).isdigit():
        raise InvalidValueError(f"'{text}' is not a whole number")
    return int(text)


#: The most `pack.depth` may be: readers refuse longer chains (codec.MAX_CHAIN_DEPTH).
MAX_PACK_DEPTH = 50


def _depth(text: str) -> int:
    if not str(text).isdigit() or int(text) > MAX_PACK_DEPTH:
        raise InvalidValueError(f"pack.depth must be a whole number from 0 to {MAX_PACK_DEPTH}, not '{text}'")
    return int(text)


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise InvalidValueError(f"'{text}' is not true or false")


def _name(text: str) -> str:
    if not str(text).strip():
        raise InvalidValueError("user.name must not be empty")
    return str(text)


@dataclass(frozen=True)
class Setting:
    default: str
    parse: Callable[[str], Any]        # a new value (config KEY VALUE)
    help: str
    read: Callable[[str], Any] | None = None   # a stored value, when it differs from parse


SETTINGS: dict[str, Setting] = {
    "compression.level": Setting("3", _level("compression.level"),
                                 "zstd level for new objects, files over 4 MiB aside (1-22)"),
    # Level 1 compresses large files (checkpoints, logs, data) as well as
    # level 3 at about 1.7 times the speed (measured on the benchmark's
    # `big` tree), and they are where the time goes.
    "compression.large_level": Setting("1", _level("compression.large_level"),
                                       "zstd level for new files over 4 MiB (1-22)"),
    "limits.max_bytes": Setting("500MB", parse_size, "largest snapshot add/commit -a accepts"),
    "limits.max_files": Setting("200000", _count, "most files add/commit -a accepts"),
    "gc.prune": Setting("1h", parse_duration, "grace period: gc spares younger objects",
                        parse_stored_duration),
    "gc.interval": Setting("7d", parse_duration, "gc --auto runs when the last gc is older",
                           parse_stored_duration),
    "gc.auto": Setting("true", _bool, "start gc --auto in the background after commit and add"),
    "gc.auto_loose": Setting("1000", _count, "gc --auto runs when more loose objects are stored (0: never)"),
    "gc.auto_packs": Setting("20", _count, "gc --auto runs when more packs are stored (0: never)"),
    "gc.threshold": Setting("10", lambda text: parse_percent(text, "gc.threshold"),
                            "gc rewrites a pack only when at least this percent of it is garbage (0-100)"),
    "core.fsync": Setting("true", _bool, "make objects and refs durable before reporting"),
    "core.listing_cache": Setting("true", _bool, "list only the folders whose times changed "
                                  "(false where a file system leaves folder times as they were)"),
    "core.lock_wait": Setting("10m", parse_duration, "how long to wait for a held lock",
                              parse_stored_duration),
    "pack.deltas": Setting("true", _bool, "store packed blobs and trees as deltas against similar ones"),
    "pack.depth": Setting("50", _depth, f"longest chain of deltas a pack may hold (0-{MAX_PACK_DEPTH})"),
    "user.name": Setting("", _name, "recorded in every snapshot (default: login name)"),
}


def default_user() -> str:
    for variable in ("RNSTORE_USER", "USER", "LOGNAME"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"


#: Set by `init --objects`, read by every command, never by `config`.
OBJECTS_KEY = "core.objects"


class Config:
    """Raw values as strings in `<dotdir>/config`; typed on read."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        try:
            text = read_text_or_none(self.path)
        except UnicodeDecodeError:
            raise CorruptStoreError(f"config file {self.path} is unreadable: not UTF-8") from None
        if text is None:
            return {}
        try:
            values = json.loads(text)
            if not isinstance(values, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError) as exc:
            raise CorruptStoreError(f"config file {self.path} is unreadable: {exc}") from None
        return {str(k): str(v) for k, v in values.items()}

    def raw(self, key: str) -> str | None:
        return self.values.get(key)

    def get(self, key: str) -> Any:
        setting = _setting(key)
        value = self.values.get(key)
        if value is None:
            if key == "user.name":
                return default_user()
            return (setting.read or setting.parse)(setting.default)
        try:
            return (setting.read or setting.parse)(value)
        except InvalidValueError as exc:  # written by hand or by another program: say where
            raise InvalidValueError(f"{key} in {self.path}: {exc}",
                                    hints=[f"set it again: `rnstore config {key} VALUE`"]) from None

    def set(self, key: str, value: str, *, durable: bool = True) -> None:
        _setting(key).parse(value)
        self.values[key] = str(value)
        self.save(durable=durable)

    def save(self, *, durable: bool = True) -> None:
        data = json.dumps(self.values, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path, data.encode(), durable=durable)


def _setting(key: str) -> Setting:
    try:
        return SETTINGS[key]
    except KeyError:
        raise InvalidValueError(
            f"unknown config key '{key}'", hints=["keys: " + ", ".join(SETTINGS)]) from None
