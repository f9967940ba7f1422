"""git's quoting of paths in line-oriented output.

A path is written as it is unless it holds a control character, a double
quote or a backslash: then it is written in double quotes with C escapes
(`\\n`, `\\t`, `\\"`, `\\\\`, `\\ooo` in octal), as git does, so that one
line is always one path and a script can read it back. Bytes past ASCII
are left as they are (git's `core.quotePath=false`): a UTF-8 name such as
`é.txt` stays readable. `-z` output is never quoted.
"""

from __future__ import annotations

import re

from .errors import InvalidValueError

_NEEDS_QUOTES = re.compile(rb'[\x00-\x1f"\\\x7f]')
_ESCAPES = {0x07: b"\\a", 0x08: b"\\b", 0x09: b"\\t", 0x0a: b"\\n", 0x0b: b"\\v",
            0x0c: b"\\f", 0x0d: b"\\r", 0x22: b'\\"', 0x5c: b"\\\\"}
_ESCAPE_OF_BYTE = [_ESCAPES.get(c) or (b"\\%03o" % c if c < 0x20 or c == 0x7f else bytes((c,)))
                   for c in range(256)]
_UNESCAPES = {escape[1]: code for code, escape in _ESCAPES.items()}


def quote_path(path: bytes) -> bytes:
    """`path` as a line of output shows it (see the module's text)."""
    if not _NEEDS_QUOTES.search(path):
        return path
    return b'"' + b"".join(_ESCAPE_OF_BYTE[c] for c in path) + b'"'


def quote_path_text(path: str) -> str:
    """quote_path for a path held as text (file-name decoded)."""
    if not _NEEDS_QUOTES.search(path.encode("utf-8", "surrogateescape")):
        return path
    return quote_path(path.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


def unquote_path(text: bytes) -> bytes:
    """The path a quoted name stands for; a name not starting with a double
    quote is taken as it is. Bad escapes are bad input."""
    if not text.startswith(b'"'):
        return text
    if len(text) < 2 or not text.endswith(b'"'):
        raise InvalidValueError(f"unterminated quoted name {text!r}")
    path = bytearray()
    body, i = text[1:-1], 0
    while i < len(body):
        c = body[i]
        if c == 0x22:
            raise InvalidValueError(f"unescaped double quote in quoted name {text!r}")
        if c != 0x5c:
            path.append(c)
            i += 1
            continue
        escape = body[i + 1:i + 2]
        if escape and escape[0] in _UNESCAPES:
            path.append(_UNESCAPES[escape[0]])
            i += 2
        elif re.fullmatch(rb"[0-3][0-7][0-7]", body[i + 1:i + 4]):
            path.append(int(body[i + 1:i + 4], 8))
            i += 4
        else:
            raise InvalidValueError(f"bad escape in quoted name {text!r}")
    return bytes(path)
