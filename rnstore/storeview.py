"""The store-wide view: every snapshot the store keeps alive (restic's
`snapshots`) and every workspace registered in it (`workspaces`).

Both read the roots gc would protect (reachability.collect_roots) under the
store lock held shared, so no gc changes the store meanwhile. A workspace or
root that cannot be read does not stop the view: it is reported in
`problems` (gc and fsck are the ones that refuse).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from .errors import InvalidValueError, ObjectError
from .forget import timestamp_of as _timestamp
from .objects import SNAPSHOT
from .plumbing import parse_meta, utc_iso
from .reachability import Marker, Root, StoreLoader, collect_roots
from .refs import TAGS, short_name
from .units import parse_duration
from .views import ObjectsView, WorkspaceView


@dataclass
class SnapshotInfo:
    id: str
    time: str | None
    workspace: str | None        # the workspace holding it (or, kept by tags alone, that made it)
    host: str | None
    message: str | None
    meta: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    #: what keeps it alive: "live in PATH", "branch main of PATH", "tag v1", ...
    kept_by: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"id": self.id, "time": self.time, "workspace": self.workspace, "host": self.host,
                "tags": self.tags, "message": self.message, "meta": self.meta, "kept_by": self.kept_by}


@dataclass
class WorkspaceInfo:
    path: str
    state: str                    # "alive", "gone" or "elsewhere" (now uses another store)
    gone_since: float | None     # Unix time (ISO 8601 UTC in as_json, as every time field)
    last_commit: str | None       # the time of its newest snapshot
    snapshots: int                # snapshots it keeps alive
    exclusive_bytes: int          # stored bytes no other workspace and no tag keeps alive
    current: bool = False         # the workspace the command ran in

    def as_json(self) -> dict:
        return {"path": self.path, "state": self.state, "gone_since": utc_iso(self.gone_since),
                "last_commit": self.last_commit, "snapshots": self.snapshots,
                "exclusive_bytes": self.exclusive_bytes, "current": self.current}


@dataclass
class StoreView:
    snapshots: list[SnapshotInfo] = field(default_factory=list)
    workspaces: list[WorkspaceInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _scan(repo: WorkspaceView, problems: list[str]):
    def on_problem(kind: str, oid: str, detail: str) -> None:
        problems.append(detail)
    return collect_roots(repo, on_problem, grace=float(repo.config.get("gc.prune")), now=time.time())


def _keeper(root: Root) -> tuple[str | None, str]:
    """(workspace path or None for the store, how the root keeps its snapshot)."""
    if root.in_store:
        return None, f"tag {short_name(root.name)}"
    where = str(root.workspace.parent)
    if root.name == "live snapshot":
        return where, f"live in {where}"
    if root.name == "last seen roots":
        return where, f"held by {where} (gone)"
    if root.name == "HEAD":
        return where, f"HEAD of {where}"
    kind = "tag" if root.name.startswith(TAGS) else "branch"
    return where, f"{kind} {short_name(root.name)} of {where}"


def store_snapshots(repo: WorkspaceView, *, tags: Iterable[str] = (), meta: Iterable[str] = (),
                    workspace: str | os.PathLike | None = None, since: str | None = None,
                    until: str | None = None) -> StoreView:
    """Every snapshot the store keeps alive, newest first, filtered: by tag
    (any of `tags`), by every `meta` K=V pair, by the workspace holding it,
    and by time (`since`/`until`: an ISO date or time in UTC, or a duration
    ago such as 7d)."""
    wanted_meta = parse_meta(meta)
    wanted_tags = set(tags)
    after = _moment(since, "--since") if since else None
    before = _moment(until, "--until") if until else None
    where = str(Path(workspace).absolute()) if workspace is not None else None
    view = StoreView()
    with repo.store_lock(shared=True):
        scan = _scan(repo, view.problems)
        found: dict[str, SnapshotInfo] = {}
        holders: dict[str, list[str]] = {}
        for root in scan.roots:
            if root.kind != SNAPSHOT:
                continue
            info = found.get(root.id)
            if info is None:
                info = found[root.id] = _info(repo, root.id, view.problems)
            path, how = _keeper(root)
            if how not in info.kept_by:
                info.kept_by.append(how)
            if root.in_store:
                info.tags.append(short_name(root.name))
            elif path is not None:
                holders.setdefault(root.id, []).append(path)
        tag_roots = {r.id: r for r in scan.roots if r.name.startswith(TAGS) and not r.in_store}
        for oid, root in tag_roots.items():  # a store without shared tags: the workspace's own
            if short_name(root.name) not in found[oid].tags:
                found[oid].tags.append(short_name(root.name))
    for oid, info in found.items():
        held = holders.get(oid)
        if held:
            info.workspace = held[0]
        info.tags.sort()
        info.kept_by.sort()
    rows = [i for i in found.values()
            if (not wanted_tags or wanted_tags & set(i.tags))
            and all(i.meta.get(k) == v for k, v in wanted_meta.items())
            and (where is None or where in holders.get(i.id, []) or i.workspace == where)
            and (after is None or (i.time is not None and _timestamp(i.time) >= after))
            and (before is None or (i.time is not None and _timestamp(i.time) <= before))]
    rows.sort(key=lambda i: (i.time or "", i.id), reverse=True)
    view.snapshots = rows
    return view


def _info(repo: ObjectsView, oid: str, problems: list[str]) -> SnapshotInfo:
    try:
        snap = repo.store.get_snapshot(oid)
    except ObjectError as exc:
        problems.append(f"snapshot {oid} cannot be read: {exc}")
        return SnapshotInfo(oid, None, None, None, None)
    meta = dict(snap.meta)
    return SnapshotInfo(oid, snap.time, meta.get("workspace"), meta.get("host"), snap.message, meta)


def store_workspaces(repo: WorkspaceView) -> StoreView:
    """Every workspace registered in the store (or, with a store of its
    own, this one): alive or gone since when, its newest snapshot, how many
    snapshots it keeps alive, and the stored bytes only it keeps alive."""
    view = StoreView()
    with repo.store_lock(shared=True):
        scan = _scan(repo, view.problems)
        loader = StoreLoader(repo.store)
        marker = Marker(loader)

        def on_problem(kind: str, oid: str, detail: str) -> None:
            view.problems.append(detail)

        for root in scan.roots:
            unit = ("store", "tags") if root.in_store else (str(root.workspace), "workspace")
            marker.mark(unit, root.id, root.kind, lambda o, k, e: on_problem("", o, f"{k} {o}: {e}"))
        exclusive: dict[str, int] = {}
        for obj in repo.store.stored_objects():
            owner = marker.owner.get(obj.id)
            if owner is not None and owner[1] == "workspace":
                exclusive[owner[0]] = exclusive.get(owner[0], 0) + obj.size
        for ws in scan.workspaces:
            mine = [r for r in scan.roots if not r.in_store and r.workspace == ws.dotdir and r.kind == SNAPSHOT]
            ids = {r.id for r in mine if r.name in ("live snapshot", "last seen roots")}
            times = [loader.snapshots[oid].time for oid in ids if oid in loader.snapshots]
            state = "alive" if ws.state in ("here", "alive") else ws.state
            view.workspaces.append(WorkspaceInfo(
                str(ws.root), state, ws.gone_since, max(times) if times else None, len(ids),
                exclusive.get(str(ws.dotdir), 0), current=ws.state == "here"))
    view.workspaces.sort(key=lambda w: w.path)
    return view


def _moment(text: str, option: str) -> float:
    """An ISO date or time (UTC unless it says otherwise), or a duration ago."""
    text = text.strip()
    try:
        return time.time() - parse_duration(text)
    except InvalidValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValueError(f"{option} '{text}' is neither a date nor a duration",
                                hints=["e.g. 2026-12-01, 2026-12-01T14:30 (UTC) or 7d (ago)"]) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


__all__ = ["store_snapshots", "store_workspaces", "StoreView", "SnapshotInfo", "WorkspaceInfo"]
