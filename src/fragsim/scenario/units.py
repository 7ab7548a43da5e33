"""Sizes and durations as scenario files write them: ``"256MiB"``, ``"1d12h"``, ``"10min"``.

Models nothing of the kernel. The rules:

* **Sizes** are bytes: an integer, or a string of a number and a unit. ``B``; ``KiB``, ``MiB``,
  ``GiB``, ``TiB`` (powers of 1024); ``K``/``KB``, ``M``/``MB``, ``G``/``GB``, ``T``/``TB``
  are the same binary multiples (as ``free -k`` and the kernel's ``memparse()`` mean them, not
  SI's powers of 1000). Units are case-insensitive; a fraction is allowed if the result is a
  whole number of bytes (``"1.5GiB"``).
* **Durations** are nanoseconds of simulated time: an integer, or a string of one or more
  number-and-unit parts, largest first or not (``"1d12h"``, ``"1h 30min"``, ``"0.5s"``). Units:
  ``ns``, ``us``, ``ms``, ``s``, ``min``, ``h``, ``d``. ``m`` is not a unit (minutes or
  milliseconds?). The total must be a whole number of nanoseconds.

Each parser raises ``ValueError`` with what it expected; the scenario loader turns that into a
``ConfigError`` naming the file and key.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = [
    "DURATION_UNITS",
    "SIZE_UNITS",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

#: size unit (lower case) -> bytes
SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}

#: duration unit -> nanoseconds, largest first (the order format_duration uses)
DURATION_UNITS: dict[str, int] = {
    "d": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "min": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "ns": 1,
}

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SIZE = re.compile(rf"^\s*{_NUMBER}\s*([a-z]*)\s*$", re.IGNORECASE)
_DURATION_PART = re.compile(rf"\s*{_NUMBER}\s*([a-z]+)\s*", re.IGNORECASE)


def parse_size(value: int | str) -> int:
    """Bytes from an integer or a string such as ``"256MiB"`` (see the module docstring)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'expected a size (bytes, or a string such as "256MiB"), got {value!r}')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    m = _SIZE.match(value)
    if m is None or m.group(2).lower() not in SIZE_UNITS | {"": 1}:
        raise ValueError(
            f'expected a size such as "4096", "64KiB", "256MiB" or "1GiB" '
            f"(units B, KiB, MiB, GiB, TiB; K/KB, M/MB, G/GB, T/TB mean the same), got {value!r}"
        )
    n = Fraction(m.group(1)) * SIZE_UNITS.get(m.group(2).lower(), 1)
    if n.denominator != 1:
        raise ValueError(f"size {value!r} is not a whole number of bytes")
    return int(n)


def parse_duration(value: int | str) -> int:
    """Nanoseconds from an integer or a string such as ``"1d12h"`` (see the module docstring)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'expected a duration (ns, or a string such as "10min"), got {value!r}')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return value
    total = Fraction(0)
    pos = 0
    for m in _DURATION_PART.finditer(value):
        if m.start() != pos or m.group(2).lower() not in DURATION_UNITS:
            break
        total += Fraction(m.group(1)) * DURATION_UNITS[m.group(2).lower()]
        pos = m.end()
    else:
        if pos == len(value) and pos > 0:
            if total.denominator != 1:
                raise ValueError(f"duration {value!r} is not a whole number of nanoseconds")
            return int(total)
    raise ValueError(
        f'expected a duration such as "500ms", "10min", "3d" or "1d12h" '
        f"(units ns, us, ms, s, min, h, d), got {value!r}"
    )


def format_duration(ns: int) -> str:
    """The shortest exact string for ``ns`` nanoseconds, largest units first (``"1d12h"``,
    ``"10min"``, ``"1s500ms"``, ``"0s"``); ``parse_duration`` reads it back exactly."""
    if ns < 0:
        raise ValueError(f"a duration cannot be negative, got {ns}")
    if ns == 0:
        return "0s"
    parts = []
    for unit, mult in DURATION_UNITS.items():
        q, ns = divmod(ns, mult)
        if q:
            parts.append(f"{q}{unit}")
    return "".join(parts)


def format_size(n: int) -> str:
    """``n`` bytes in the largest binary unit that divides it exactly (``"256MiB"``,
    ``"1536KiB"``, ``"100B"``); ``parse_size`` reads it back exactly."""
    if n < 0:
        raise ValueError(f"a size cannot be negative, got {n}")
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B"
