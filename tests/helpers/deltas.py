"""A store holding deltas, made the way a repack makes one: every object
of a workspace rewritten into one pack, each version of a path stored as a
delta against the next newer version of that path (the newest whole, as git
does), then the old copies deleted."""

from __future__ import annotations

from rnstore import codec
from rnstore.objects import MODE_TREE


def versions_by_path(repo) -> dict[str, list[tuple[str, str]]]:
    """path -> [(kind, id)] of its distinct versions, oldest first, over every
    snapshot of the log ("" is the root tree)."""
    by_path: dict[str, list[tuple[str, str]]] = {}
    for entry in reversed(list(repo.log(all=True))):
        stack = [("", repo.store.get_snapshot(entry.id).tree)]
        while stack:
            path, tree_id = stack.pop()
            seen = by_path.setdefault(path, [])
            if ("tree", tree_id) not in seen:
                seen.append(("tree", tree_id))
            for item in repo.store.get_tree(tree_id).entries:
                name = f"{path}/{item.name.decode()}"
                if item.mode == MODE_TREE:
                    stack.append((name, item.id))
                elif ("blob", item.id) not in by_path.setdefault(name, []):
                    by_path[name].append(("blob", item.id))
    return by_path


def deltify(repo, *, depth: int = 10) -> tuple[str, int]:
    """Rewrite every object of the workspace's store into one pack, with
    deltas; (the pack's place, how many frames are deltas)."""
    store = repo.store
    frames: list[tuple[str, bytes]] = []
    written: set[str] = set()
    deltas = 0
    for chain in versions_by_path(repo).values():
        base = None
        run = 0
        for kind, oid in reversed(chain):  # newest first: whole, older ones deltas of newer
            if oid in written:
                continue
            payload = store.get(oid, kind)[1]
            if base is None or run >= depth:
                frames.append((oid, codec.compress(kind, payload, 3)))
                run = 0
            else:
                frames.append((oid, codec.encode_delta(kind, payload, base[0], base[1], 3)))
                run += 1
                deltas += 1
            written.add(oid)
            base = (oid, payload)
    for oid in sorted(set(store) - written):
        frames.append((oid, store.read_frame(oid, whole=True)))
    where = store.write_pack(frames, max_depth=depth)
    store.delete_stored([copy for copy in store.stored_objects() if copy.where != where])
    return where, deltas


def encode_legacy_delta(kind: str, payload: bytes, base_id: str, base_payload: bytes, level: int = 3) -> bytes:
    """A delta frame of the first form, which rnstore wrote before pack-local
    deltas and still reads: one zstd frame holding "rn1 KIND delta SIZE
    BASE-ID\\n" and an inner zstd frame (magic, content size, checksum)
    that decodes against the base's payload. Written here with zstandard
    alone, as FORMAT.md describes it, so that tests can make stores of that
    form."""
    import zstandard
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(payload), window_log=max(10, (len(base_payload) + len(payload)).bit_length()),
        write_checksum=True, write_content_size=True, write_dict_id=False)
    inner = zstandard.ZstdCompressor(
        compression_params=params,
        dict_data=zstandard.ZstdCompressionDict(base_payload, dict_type=zstandard.DICT_TYPE_RAWCONTENT),
    ).compress(payload)
    header = b"rn1 %s delta %d %s\n" % (kind.encode(), len(payload), base_id.encode())
    return zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True).compress(header + inner)
