"""Parsing and printing sizes and durations as users write them."""

from __future__ import annotations

import re

from .errors import InvalidValueError

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*\Z", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
                 "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}

_DURATION_PART = re.compile(r"(\d+)(s|m|h|d|w|y)")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_size(text: str) -> int:
    """'500MB', '1.5GiB', '1000' -> bytes, as written: SI prefixes are
    decimal (500MB = 500 * 10^6, also '500M'), binary ones say so with an
    'i' (500MiB = 500 * 2^20). Sizes are printed in binary units only."""
    match = _SIZE.match(str(text))
    if not match:
        raise InvalidValueError(f"'{text}' is not a size (examples: 500MB, 2GiB, 1000)")
    unit = (match.group(2) or "").lower().rstrip("b")
    return int(float(match.group(1)) * _SIZE_FACTORS[unit])


_DURATION_HINT = "give a unit: 30s, 15m, 2h, 7d or 2w (or now)"


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h', '7d', '2w', '1y', '1d12h', or 'now' -> seconds.
    A bare number is refused: is 30 seconds, minutes or days?"""
    text = str(text).strip()
    if text == "now":
        return 0.0
    if text.isdigit():
        raise InvalidValueError(f"'{text}' is a duration without a unit",
                                hints=[f"{_DURATION_HINT}, e.g. {text}m or {text}d"])
    position, total = 0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += int(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise InvalidValueError(f"'{text}' is not a duration", hints=[f"{_DURATION_HINT}, e.g. 30m or 7d"])
    return float(total)


def parse_stored_duration(text: str) -> float:
    """A duration from a config file: versions before units were required
    stored bare numbers of seconds, which still read as such."""
    text = str(text).strip()
    return float(text) if text.isdigit() else parse_duration(text)


_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%?\s*\Z")


def parse_percent(text: str, what: str = "the value") -> float:
    """'10', '10%', '2.5' -> a percentage from 0 to 100."""
    match = _PERCENT.match(str(text))
    if not match or float(match.group(1)) > 100:
        raise InvalidValueError(f"{what} must be a percentage from 0 to 100, not '{text}'")
    return float(match.group(1))


_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def _binary_unit(n: float) -> tuple[float, str]:
    """The divisor and unit format_size shows `n` bytes in."""
    divisor = 1
    for unit in _BINARY_UNITS:
        if abs(n) < 1024 * divisor or unit == _BINARY_UNITS[-1]:
            return divisor, unit
        divisor *= 1024
    raise AssertionError("unreachable")


def format_size(n: float) -> str:
    """Bytes as every size rnstore prints: binary units (1 KiB = 1,024
    bytes), whatever units a size was given in: '537 B', '1.5 MiB'."""
    divisor, unit = _binary_unit(n)
    return f"{n:.0f} B" if unit == "B" else f"{n / divisor:.1f} {unit}"


def format_size_of(done: float, total: float) -> str:
    """'12.3/28.6 MiB': part of a total, in the total's unit."""
    divisor, unit = _binary_unit(total)
    if unit == "B":
        return f"{done:.0f}/{total:.0f} B"
    return f"{done / divisor:.1f}/{total / divisor:.1f} {unit}"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """'1 file', '2 files', '1,024 files'."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"
