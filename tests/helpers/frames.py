"""zstd frames made for tests."""

from __future__ import annotations

import io

import zstandard


def zeros_frame(header: bytes, zeros: int, *, content_size: int | None = None) -> bytes:
    """`header` followed by `zeros` zero bytes, compressed chunk by chunk so
    the test itself never holds the expanded bytes."""
    out = io.BytesIO()
    cctx = zstandard.ZstdCompressor(write_checksum=True, write_content_size=content_size is not None)
    size = -1 if content_size is None else content_size
    with cctx.stream_writer(out, size=size, closefd=False) as writer:
        writer.write(header)
        block = bytes(1 << 20)
        remaining = zeros
        while remaining:
            n = min(len(block), remaining)
            writer.write(block[:n])
            remaining -= n
    return out.getvalue()
