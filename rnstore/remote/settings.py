"""A workspace's remotes: `<dotdir>/remotes.json`, name -> URL and backend
options. The file may hold credentials given with -o, so it is private to
its owner (0600) and nothing shows its values unmasked."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptStoreError, InvalidValueError
from ..fsutil import atomic_write
from .backend import mask_url

FILE = "remotes.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: Option keys whose values are shown; every other value is masked.
_SHOWN_OPTIONS = {"endpoint_url", "region_name", "region", "anon", "username", "port", "host",
                  "account_name", "project", "requester_pays", "use_ssl", "profile"}


@dataclass
class RemoteSettings:
    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)

    def describe(self, verbose: bool = False) -> str:
        text = mask_url(self.url)
        if verbose and self.options:
            shown = " ".join(f"{k}={mask_url(v) if k in _SHOWN_OPTIONS else '***'}"
                             for k, v in sorted(self.options.items()))
            text += f"  ({shown})"
        return text


def check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise InvalidValueError(f"'{name}' is not a valid remote name",
                                hints=["letters, digits, '.', '_' and '-', starting with a letter or digit"])


def parse_options(pairs) -> dict[str, str]:
    options = {}
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise InvalidValueError(f"a backend option is KEY=VALUE, not '{pair.split('=')[0]}...'")
        options[key.strip()] = value
    return options


def load(dotdir: Path) -> dict[str, RemoteSettings]:
    path = dotdir / FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        remotes = {}
        for name, value in document.get("remotes", {}).items():
            remotes[name] = RemoteSettings(name, str(value["url"]),
                                           {str(k): str(v) for k, v in (value.get("options") or {}).items()})
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptStoreError(f"{path} is unreadable: {exc}") from None
    except (AttributeError, KeyError, TypeError):  # valid JSON of another shape
        raise CorruptStoreError(f"{path} is unreadable: not a list of remotes with their URLs") from None
    return remotes


def save(dotdir: Path, remotes: dict[str, RemoteSettings], *, durable: bool = True) -> None:
    document = {"remotes": {r.name: {"url": r.url, "options": r.options}
                            for r in sorted(remotes.values(), key=lambda r: r.name)}}
    path = dotdir / FILE
    atomic_write(path, (json.dumps(document, indent=2) + "\n").encode(), durable=durable, mode=0o600)


def get(dotdir: Path, name: str) -> RemoteSettings:
    remotes = load(dotdir)
    try:
        return remotes[name]
    except KeyError:
        known = ", ".join(sorted(remotes)) or "none"
        raise InvalidValueError(f"no remote named '{name}'",
                                hints=[f"remotes: {known}; `rnstore remote add NAME URL` adds one"]) from None
