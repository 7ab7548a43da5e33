"""Parser for ``/sys/kernel/debug/page_owner`` (``mm/page_owner.c: print_page_owner``).

Reads the Linux 6.1.192 record format::

    Page allocated via order %u, mask %#x(%pGg), pid %d, tgid %d (%s), ts %llu ns, free_ts %llu ns
    PFN %lu type %s Block %lu type %s Flags %pGp
     <stack frame, one per line, each starting with a space>
    [Page has been migrated, last migrate reason: %s]
    [Slab cache page]
    [Charged %sto %smemcg %s]
    <empty line>

and the variants of other kernels: no ``pid``/``ts``/``free_ts`` (4.x-5.10), no ``tgid`` or no
``(%s)`` comm (5.11-6.0), no ``free_ts`` (>= 6.9), and ``PFN 0x%lx`` in hex (newer kernels).
The ``Flags`` value is kept as the integer plus the decoded text between the parentheses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fragsim.errors import ParseError
from fragsim.parsers._io import split_lines

__all__ = ["PageOwnerRecord", "parse_page_owner"]


@dataclass(frozen=True, slots=True)
class PageOwnerRecord:
    """One allocated block as page_owner prints it."""

    lineno: int
    """1-based line of the record's 'Page allocated via' line."""
    order: int
    gfp_mask: int
    gfp_flags: str
    """The decoded gfp names, e.g. ``GFP_HIGHUSER_MOVABLE|__GFP_COMP``."""
    pfn: int
    migratetype: str
    """Migratetype derived from the allocation's gfp mask."""
    block: int
    """pfn >> pageblock_order."""
    block_migratetype: str
    """The pageblock's migratetype at read time."""
    page_flags: int
    page_flags_text: str
    pid: int | None = None
    tgid: int | None = None
    comm: str | None = None
    ts_ns: int | None = None
    free_ts_ns: int | None = None
    stack: tuple[str, ...] = ()
    """Stack frames, leading space stripped (``get_page_from_freelist+0x.../0x...``)."""
    migrate_reason: str | None = None
    memcg: tuple[str, ...] = ()
    """The optional memcg lines (``Slab cache page``, ``Charged ... memcg ...``)."""

    @property
    def nr_pages(self) -> int:
        """Pages in the block (2**order)."""
        return 1 << self.order

    @property
    def mixed(self) -> bool:
        """True when the allocation's migratetype differs from its pageblock's."""
        return self.migratetype != self.block_migratetype


_HEAD_RE = re.compile(
    r"^Page allocated via order (\d+), mask (0x[0-9a-fA-F]+|0)\((.*?)\)"
    r"(?:, pid (-?\d+)(?:, tgid (-?\d+))?(?: \((.*)\))?, ts (\d+) ns(?:, free_ts (\d+) ns)?)?"
    r"\s*$"
)
_PFN_RE = re.compile(
    r"^PFN (0x[0-9a-fA-F]+|\d+) type (\S+) Block (\d+) type (\S+) "
    r"Flags (0x[0-9a-fA-F]+|\d+)(?:\((.*)\))?\s*$"
)
_MIGRATED_PREFIX = "Page has been migrated, last migrate reason: "
_MEMCG_RE = re.compile(r"^(Slab cache page|Charged .*memcg .*)\s*$")


def parse_page_owner(text: str, path: str = "<page_owner>") -> list[PageOwnerRecord]:
    """Parse a page_owner dump into records, in file order."""
    records: list[PageOwnerRecord] = []
    lines = split_lines(text)
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i].rstrip("\r")
        if not line.strip():
            i += 1
            continue
        start = i + 1
        m = _HEAD_RE.match(line)
        if m is None:
            raise ParseError(
                path,
                start,
                f"expected 'Page allocated via order N, mask 0x...(...)...', got {line[:80]!r}",
            )
        i += 1
        if i >= n:
            raise ParseError(path, i, "record ends before its 'PFN ... Flags ...' line")
        line2 = lines[i].rstrip("\r")
        m2 = _PFN_RE.match(line2)
        if m2 is None:
            raise ParseError(
                path,
                i + 1,
                f"expected 'PFN N type T Block N type T Flags 0x...(...)', got {line2[:80]!r}",
            )
        i += 1
        stack: list[str] = []
        while i < n and lines[i][:1] in (" ", "\t"):
            frame = lines[i].strip()
            if not frame:
                raise ParseError(path, i + 1, "expected a stack frame, got a blank indented line")
            stack.append(frame)
            i += 1
        reason: str | None = None
        memcg: list[str] = []
        while i < n and lines[i].strip():
            extra = lines[i].rstrip("\r")
            if extra.startswith(_MIGRATED_PREFIX) and reason is None and not memcg:
                reason = extra[len(_MIGRATED_PREFIX) :].strip()
                if not reason:
                    raise ParseError(path, i + 1, "expected a migrate reason name")
            elif _MEMCG_RE.match(extra):
                memcg.append(extra.strip())
            else:
                raise ParseError(
                    path,
                    i + 1,
                    "expected a stack frame (' ...'), 'Page has been migrated, "
                    f"last migrate reason: ...', a memcg line or an empty line, got {extra[:80]!r}",
                )
            i += 1
        pfn_txt = m2.group(1)
        flags_txt = m2.group(5)
        records.append(
            PageOwnerRecord(
                lineno=start,
                order=int(m.group(1)),
                gfp_mask=int(m.group(2), 0),
                gfp_flags=m.group(3),
                pfn=int(pfn_txt, 0) if pfn_txt.startswith("0x") else int(pfn_txt),
                migratetype=m2.group(2),
                block=int(m2.group(3)),
                block_migratetype=m2.group(4),
                page_flags=int(flags_txt, 16) if flags_txt.startswith("0x") else int(flags_txt),
                page_flags_text=m2.group(6) or "",
                pid=None if m.group(4) is None else int(m.group(4)),
                tgid=None if m.group(5) is None else int(m.group(5)),
                comm=m.group(6),
                ts_ns=None if m.group(7) is None else int(m.group(7)),
                free_ts_ns=None if m.group(8) is None else int(m.group(8)),
                stack=tuple(stack),
                migrate_reason=reason,
                memcg=tuple(memcg),
            )
        )
    return records
