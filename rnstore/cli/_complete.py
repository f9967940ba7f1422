"""Shell completion of values: revisions (branches, tags, snapshot ids),
export formats, config keys and remote names. Each runs inside a TAB press: it never
raises and never prints."""

from __future__ import annotations

from ..config import SETTINGS
from ..refs import HEADS, short_name
from ..repo import Repository

#: export's --format values
FORMATS = ("zip", "tar", "tar.gz", "tar.zst", "dir")


def revisions(incomplete: str) -> list[str]:
    """Branches and tags first, then live snapshot ids (12 hex digits, or
    the whole id once the 12 typed are not enough)."""
    try:
        from ..history import list_tags  # loads the store and zstandard, which rev-parse must not
        repo = Repository.open()
        names = ["HEAD"] + [short_name(ref) for ref in repo.refs.list(HEADS)] + sorted(list_tags(repo))
        ids = sorted(repo.journal)
    except Exception:  # noqa: BLE001 - outside a workspace, or damaged: offer nothing
        return []
    found = [name for name in dict.fromkeys(names) if name.startswith(incomplete)]
    width = 64 if len(incomplete) >= 12 else 12
    found += [oid[:width] for oid in ids if oid.startswith(incomplete)]
    return found


def formats(incomplete: str) -> list[str]:
    return [name for name in FORMATS if name.startswith(incomplete)]


def config_keys(incomplete: str) -> list[str]:
    return [name for name in SETTINGS if name.startswith(incomplete)]


def remotes(incomplete: str) -> list[str]:
    """The workspace's remotes (push, fetch, pull, remote remove, --remote)."""
    try:
        from ..remote.settings import load  # only when a shell asks: rev-parse must not load it
        names = sorted(load(Repository.open().dotdir))
    except Exception:  # noqa: BLE001 - outside a workspace, or damaged: offer nothing
        return []
    return [name for name in names if name.startswith(incomplete)]
