"""Extracts the memory sections of an Android bugreport (``dumpstate`` text output).

``dumpstate`` copies kernel files into sections of the form::

    ------ BUDDYINFO (/proc/buddyinfo) ------
    Node 0, zone   Normal    812    403 ...
    ------ 0.002s was the duration of 'BUDDYINFO' ------

Older versions end a section with ``[BUDDYINFO: 0.002s elapsed]`` instead, and some sections
are followed directly by the next ``------ ... ------`` header. A file that dumpstate could not
read leaves a ``*** /proc/pagetypeinfo: Permission denied``-style line instead of content.

The BUDDYINFO and PAGETYPEINFO sections are parsed with :mod:`fragsim.parsers.procfs`
(``/proc/buddyinfo`` and ``/proc/pagetypeinfo`` of the device's kernel, Android common kernels
4.x-6.x); errors name the bugreport file and the line inside it. ``read_bugreport`` also opens
the ``bugreport-*.zip`` produced by ``adb bugreport`` (the main ``bugreport-*.txt`` inside).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fragsim.errors import ParseError
from fragsim.parsers._io import split_lines
from fragsim.parsers.procfs import BuddyInfoRow, PageTypeInfo, parse_buddyinfo, parse_pagetypeinfo

__all__ = [
    "BugreportMemory",
    "BugreportSection",
    "bugreport_sections",
    "parse_bugreport",
    "read_bugreport",
]


@dataclass(frozen=True, slots=True)
class BugreportSection:
    """One ``------ TITLE (source) ------`` section of a bugreport."""

    title: str
    source: str | None
    """The command or file in parentheses, e.g. ``/proc/buddyinfo``."""
    lineno: int
    """1-based line of the first content line (the line after the header)."""
    lines: tuple[str, ...]
    """Content lines, without the header and the end marker; trailing blank lines dropped."""

    @property
    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    @property
    def error(self) -> str | None:
        """dumpstate's ``*** ...`` message when the file could not be read, else None."""
        content = [line for line in self.lines if line.strip()]
        if content and all(line.lstrip().startswith("***") for line in content):
            return " ".join(line.strip().lstrip("*").strip() for line in content)
        return None


@dataclass(frozen=True, slots=True)
class BugreportMemory:
    """The parsed memory sections of a bugreport; None where a section is missing or unreadable."""

    buddyinfo: list[BuddyInfoRow] | None
    pagetypeinfo: PageTypeInfo | None
    sections: dict[str, BugreportSection]
    """Every section found, by title (the first one when a title repeats)."""
    errors: dict[str, str]
    """Title -> dumpstate's message, for the wanted sections it could not read."""


_T = TypeVar("_T")

_HEADER_RE = re.compile(r"^------ (.*?)(?: \((.*)\))? ------\s*$")
_DURATION_RE = re.compile(r"^------ .*was the duration of .* ------\s*$")
_ELAPSED_RE = re.compile(r"^\[[^\]]*: [^\]]*elapsed\]\s*$")


def bugreport_sections(text: str) -> list[BugreportSection]:
    """Split a bugreport into its ``------ TITLE (source) ------`` sections, in file order."""
    out: list[BugreportSection] = []
    title: str | None = None
    source: str | None = None
    first = 0
    body: list[str] = []

    def close() -> None:
        if title is None:
            return
        while body and not body[-1].strip():
            body.pop()
        out.append(BugreportSection(title, source, first, tuple(body)))

    for lineno, raw in enumerate(split_lines(text), start=1):
        line = raw.rstrip("\r")
        if _DURATION_RE.match(line) or _ELAPSED_RE.match(line):
            close()
            title = None
            body = []
            continue
        m = _HEADER_RE.match(line)
        if m is not None:
            close()
            title, source = m.group(1).strip(), m.group(2)
            first = lineno + 1
            body = []
            continue
        if title is not None:
            body.append(line)
    close()
    return out


def _reparse(section: BugreportSection, path: str, parse: Callable[[str, str], _T]) -> _T:
    try:
        return parse(section.text, path)
    except ParseError as exc:
        lineno = None if exc.lineno is None else exc.lineno + section.lineno - 1
        where = f"in section {section.title}: {exc.msg}"
        raise ParseError(path, lineno if lineno is not None else section.lineno, where) from None


def parse_bugreport(text: str, path: str = "<bugreport>") -> BugreportMemory:
    """Find and parse the BUDDYINFO and PAGETYPEINFO sections of a bugreport's text."""
    sections: dict[str, BugreportSection] = {}
    for sec in bugreport_sections(text):
        sections.setdefault(sec.title, sec)
    errors: dict[str, str] = {}

    def wanted(title: str, source: str) -> BugreportSection | None:
        sec = sections.get(title)
        if sec is None:
            # Tolerate renamed titles: find the section by its source file.
            sec = next((s for s in sections.values() if s.source == source), None)
        if sec is None:
            return None
        if sec.error is not None:
            errors[title] = sec.error
            return None
        if not any(line.strip() for line in sec.lines):
            errors[title] = "empty section"
            return None
        return sec

    bsec = wanted("BUDDYINFO", "/proc/buddyinfo")
    psec = wanted("PAGETYPEINFO", "/proc/pagetypeinfo")
    buddy = None if bsec is None else _reparse(bsec, path, parse_buddyinfo)
    pti = None if psec is None else _reparse(psec, path, parse_pagetypeinfo)
    return BugreportMemory(buddy, pti, sections, errors)


def read_bugreport(src: str | os.PathLike[str]) -> BugreportMemory:
    """Read a bugreport ``.txt`` or the ``.zip`` of ``adb bugreport`` and parse it."""
    path = os.fspath(src)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [
                n
                for n in zf.namelist()
                if n.endswith(".txt") and os.path.basename(n).startswith("bugreport")
            ]
            if not names:
                raise ParseError(path, None, "zip holds no bugreport-*.txt")
            name = max(names, key=lambda n: zf.getinfo(n).file_size)
            data = zf.read(name)
        return parse_bugreport(data.decode("utf-8", errors="replace"), f"{path}!{name}")
    with open(path, encoding="utf-8", errors="replace") as fh:
        return parse_bugreport(fh.read(), path)
