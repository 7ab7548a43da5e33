"""Parsers for the text files of procfs and debugfs that describe free memory.

Reads, as printed by Linux 6.1 (``mm/vmstat.c``, ``fs/proc/meminfo.c``) and tolerant of the
layout changes of other kernel versions:

* ``/proc/buddyinfo`` (``frag_show_print``: ``"Node %d, zone %8s "`` then ``"%6lu "`` per order);
* ``/proc/pagetypeinfo`` (``pagetypeinfo_showfree_print``, ``pagetypeinfo_showblockcount_print``
  and, with page_owner, ``pagetypeinfo_showmixedcount_print``; the ``>100000`` capped counts of
  kernels >= 5.6);
* ``/proc/zoneinfo`` (``zoneinfo_show_print``: per-node stats, ``pages free``, ``boost`` (>= 5.0),
  ``min/low/high``, ``promo`` (>= 6.2, memory tiering), ``spanned/present/managed/cma``,
  ``protection``, zone stats, pagesets (``high_min``/``high_max`` of >= 6.7 are kept as extra
  fields), ``node_unreclaimable`` and ``start_pfn``; unpopulated zones stop after ``protection``);
* ``/proc/vmstat`` (``vmstat_show``: ``"%s %lu"`` per item);
* ``/proc/meminfo`` (``meminfo_proc_show``: ``"%-16s%8lu kB"``, and the ``HugePages_*`` counts
  without unit);
* debugfs ``extfrag/unusable_index`` (``"%d.%03d "``) and ``extfrag/extfrag_index``
  (``"%2d.%03d "``), values kept as integer thousandths.

Every function takes the file's text and the path used in error messages. A malformed line
raises :class:`fragsim.errors.ParseError` with the 1-based line number; no data line is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from fragsim.errors import ParseError
from fragsim.parsers._io import split_lines

__all__ = [
    "BuddyInfoRow",
    "ExtfragRow",
    "FreeCounts",
    "PageTypeInfo",
    "Pageset",
    "ZoneInfo",
    "parse_buddyinfo",
    "parse_extfrag",
    "parse_meminfo",
    "parse_pagetypeinfo",
    "parse_vmstat",
    "parse_zoneinfo",
]

PAGETYPEINFO_CAP = 100000
"""The count at which ``pagetypeinfo`` stops counting a free list (printed ``>100000``)."""


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its newline)."""
    for i, line in enumerate(split_lines(text), start=1):
        yield i, line.rstrip("\r")


# --------------------------------------------------------------------------------------------
# /proc/buddyinfo


@dataclass(frozen=True, slots=True)
class BuddyInfoRow:
    """One line of ``/proc/buddyinfo``: free blocks per order of one zone."""

    node: int
    zone: str
    nr_free: tuple[int, ...]
    """``free_area[order].nr_free`` (blocks, not pages) for order 0, 1, ...."""

    @property
    def free_pages(self) -> int:
        """Free pages in the buddy lists of this zone (sum of nr_free << order)."""
        return sum(n << order for order, n in enumerate(self.nr_free))


_BUDDY_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)((?:\s+\d+)+)\s*$")


def parse_buddyinfo(text: str, path: str = "<buddyinfo>") -> list[BuddyInfoRow]:
    """Parse ``/proc/buddyinfo``; any number of orders, the same on every line."""
    rows: list[BuddyInfoRow] = []
    norders: int | None = None
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        m = _BUDDY_RE.match(line)
        if m is None:
            raise ParseError(
                path, lineno, f"expected 'Node N, zone NAME  n0 n1 ...', got {line[:80]!r}"
            )
        counts = tuple(int(x) for x in m.group(3).split())
        if norders is None:
            norders = len(counts)
        elif len(counts) != norders:
            raise ParseError(
                path,
                lineno,
                f"expected {norders} per-order counts like the first line, got {len(counts)}",
            )
        rows.append(BuddyInfoRow(int(m.group(1)), m.group(2), counts))
    if not rows:
        raise ParseError(path, None, "expected at least one 'Node N, zone NAME ...' line")
    return rows


# --------------------------------------------------------------------------------------------
# /proc/pagetypeinfo


@dataclass(frozen=True, slots=True)
class FreeCounts:
    """Free blocks of one (node, zone, migratetype) per order, as pagetypeinfo prints them."""

    counts: tuple[int, ...]
    """Blocks per order; a capped count (``>100000``) is stored as 100000."""
    capped: tuple[bool, ...]
    """True where the kernel printed ``>100000`` (counting stopped at the cap)."""


@dataclass(frozen=True, slots=True)
class PageTypeInfo:
    """Contents of ``/proc/pagetypeinfo``."""

    pageblock_order: int
    pages_per_block: int
    nr_orders: int
    migratetypes: tuple[str, ...]
    """Migratype names in the kernel's id order, as printed in the block-count header."""
    free: Mapping[tuple[int, str, str], FreeCounts]
    """(node, zone, migratetype name) -> free blocks per order."""
    blocks: Mapping[tuple[int, str], Mapping[str, int]]
    """(node, zone) -> migratetype name -> number of pageblocks of that type."""
    mixed_blocks: Mapping[tuple[int, str], Mapping[str, int]] | None = None
    """The page_owner-only "Number of mixed blocks" section, or None when absent."""

    def zones(self) -> list[tuple[int, str]]:
        """(node, zone) pairs in file order."""
        return list(self.blocks)


_PTI_ORDER_RE = re.compile(r"^Page block order:\s*(\d+)\s*$")
_PTI_PPB_RE = re.compile(r"^Pages per block:\s*(\d+)\s*$")
_PTI_FREEHDR_RE = re.compile(r"^Free pages count per migrate type at order((?:\s+\d+)+)\s*$")
_PTI_FREE_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+),\s*type\s+(\S+)((?:\s+>?\d+)+)\s*$")
_PTI_BLKHDR_RE = re.compile(r"^Number of (blocks type|mixed blocks)((?:\s+\S+)+)\s*$")
_PTI_BLK_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)((?:\s+\d+)+)\s*$")


def parse_pagetypeinfo(text: str, path: str = "<pagetypeinfo>") -> PageTypeInfo:
    """Parse ``/proc/pagetypeinfo`` (one repetition of all sections per node with memory)."""
    pb_order: int | None = None
    ppb: int | None = None
    orders: tuple[int, ...] | None = None
    mtypes: tuple[str, ...] | None = None
    free: dict[tuple[int, str, str], FreeCounts] = {}
    blocks: dict[tuple[int, str], dict[str, int]] = {}
    mixed: dict[tuple[int, str], dict[str, int]] | None = None
    section = ""  # "", "free", "blocks", "mixed"
    sect_types: tuple[str, ...] = ()
    free_types: list[str] = []

    for lineno, line in _lines(text):
        if not line.strip():
            continue
        if m := _PTI_ORDER_RE.match(line):
            value = int(m.group(1))
            if pb_order is not None and value != pb_order:
                raise ParseError(path, lineno, f"pageblock order {value} differs from {pb_order}")
            pb_order = value
            section = ""
            continue
        if m := _PTI_PPB_RE.match(line):
            value = int(m.group(1))
            if ppb is not None and value != ppb:
                raise ParseError(path, lineno, f"pages per block {value} differs from {ppb}")
            ppb = value
            continue
        if m := _PTI_FREEHDR_RE.match(line):
            hdr = tuple(int(x) for x in m.group(1).split())
            if hdr != tuple(range(len(hdr))):
                raise ParseError(path, lineno, f"expected order numbers 0, 1, ..., got {hdr}")
            if orders is not None and hdr != orders:
                raise ParseError(path, lineno, "order header differs from the first node's")
            orders = hdr
            section = "free"
            continue
        if m := _PTI_BLKHDR_RE.match(line):
            names = tuple(m.group(2).split())
            if m.group(1) == "blocks type":
                if mtypes is not None and names != mtypes:
                    raise ParseError(path, lineno, "migratetype names differ from the first node's")
                mtypes = names
                section = "blocks"
            else:
                section = "mixed"
                if mixed is None:
                    mixed = {}
            sect_types = names
            continue
        if section == "free" and (m := _PTI_FREE_RE.match(line)):
            assert orders is not None
            toks = m.group(4).split()
            if len(toks) != len(orders):
                raise ParseError(
                    path, lineno, f"expected {len(orders)} per-order counts, got {len(toks)}"
                )
            capped = tuple(t.startswith(">") for t in toks)
            counts = tuple(int(t.lstrip(">")) for t in toks)
            key = (int(m.group(1)), m.group(2), m.group(3))
            if key in free:
                raise ParseError(path, lineno, f"duplicate free-count row for {key}")
            free[key] = FreeCounts(counts, capped)
            if m.group(3) not in free_types:
                free_types.append(m.group(3))
            continue
        if section in ("blocks", "mixed") and (m := _PTI_BLK_RE.match(line)):
            vals = [int(x) for x in m.group(3).split()]
            if len(vals) != len(sect_types):
                raise ParseError(
                    path, lineno, f"expected {len(sect_types)} block counts, got {len(vals)}"
                )
            zkey = (int(m.group(1)), m.group(2))
            target = blocks if section == "blocks" else mixed
            assert target is not None
            if zkey in target:
                raise ParseError(path, lineno, f"duplicate block-count row for {zkey}")
            target[zkey] = dict(zip(sect_types, vals, strict=True))
            continue
        expected = {
            "": "'Page block order:', 'Pages per block:' or a section header",
            "free": "'Node N, zone NAME, type TYPE  n0 n1 ...' or a section header",
            "blocks": "'Node N, zone NAME  count ...' or a section header",
            "mixed": "'Node N, zone NAME  count ...' or a section header",
        }[section]
        raise ParseError(path, lineno, f"expected {expected}, got {line[:80]!r}")

    if pb_order is None or ppb is None:
        raise ParseError(path, None, "missing 'Page block order:' / 'Pages per block:' lines")
    if orders is None:
        raise ParseError(path, None, "missing 'Free pages count per migrate type' section")
    if mtypes is None:
        raise ParseError(path, None, "missing 'Number of blocks type' section")
    if ppb != 1 << pb_order:
        raise ParseError(path, None, f"pages per block {ppb} is not 2^{pb_order}")
    return PageTypeInfo(
        pageblock_order=pb_order,
        pages_per_block=ppb,
        nr_orders=len(orders),
        migratetypes=mtypes,
        free=free,
        blocks=blocks,
        mixed_blocks=mixed,
    )


# --------------------------------------------------------------------------------------------
# /proc/zoneinfo


@dataclass(frozen=True, slots=True)
class Pageset:
    """One CPU's per-cpu page list of a zone (``pagesets`` in zoneinfo)."""

    cpu: int
    count: int
    high: int
    batch: int
    vm_stats_threshold: int | None = None
    extra: Mapping[str, int] = field(default_factory=dict)
    """Other ``name: value`` lines (``high_min``, ``high_max`` in >= 6.7)."""


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """One zone of ``/proc/zoneinfo``. Watermarks are the printed (boosted) values."""

    node: int
    zone: str
    pages_free: int
    min: int
    low: int
    high: int
    spanned: int
    present: int
    managed: int
    protection: tuple[int, ...]
    boost: int | None = None
    """Absent before Linux 5.0."""
    promo: int | None = None
    """Only printed by kernels with memory tiering (>= 6.2); absent in 6.1."""
    cma: int | None = None
    node_stats: Mapping[str, int] | None = None
    """The per-node stats, printed with the node's first populated zone only."""
    stats: Mapping[str, int] = field(default_factory=dict)
    """Zone stats and NUMA counters (``nr_free_pages`` ...); empty for unpopulated zones."""
    pagesets: tuple[Pageset, ...] = ()
    node_unreclaimable: int | None = None
    start_pfn: int | None = None
    extra: Mapping[str, int] = field(default_factory=dict)
    """Other header lines (e.g. ``scanned`` of old kernels) and zone-level ``name: value``."""

    @property
    def populated(self) -> bool:
        """True when the zone has present pages (the kernel prints its stats)."""
        return self.present > 0

    @property
    def pcp_count(self) -> int:
        """Pages on all CPUs' per-cpu lists (free, but not in buddyinfo)."""
        return sum(p.count for p in self.pagesets)


_ZI_NODE_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)\s*$")
_ZI_KV_RE = re.compile(r"^\s+([A-Za-z_][\w()]*)\s+(-?\d+)\s*$")
_ZI_COLON_RE = re.compile(r"^\s+([A-Za-z_][\w ]*?):\s*(-?\d+)\s*$")
_ZI_PROT_RE = re.compile(r"^\s+protection:\s*\(\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\)\s*$")
_ZI_PAGESFREE_RE = re.compile(r"^\s+pages free\s+(\d+)\s*$")
_ZI_HEADER_KEYS = frozenset(
    {"boost", "min", "low", "high", "promo", "scanned", "spanned", "present", "managed", "cma"}
)
_ZI_REQUIRED = ("min", "low", "high", "spanned", "present", "managed")


class _ZoneBuilder:
    """Accumulates one zone's lines; `build` validates and freezes it."""

    def __init__(self, node: int, zone: str, lineno: int) -> None:
        self.node = node
        self.zone = zone
        self.lineno = lineno
        self.state = "start"  # start, node_stats, header, stats, pagesets, tail
        self.node_stats: dict[str, int] | None = None
        self.pages_free: int | None = None
        self.header: dict[str, int] = {}
        self.protection: tuple[int, ...] | None = None
        self.stats: dict[str, int] = {}
        self.pagesets: list[Pageset] = []
        self.pcp: dict[str, int] | None = None
        self.pcp_lineno = 0
        self.tail: dict[str, int] = {}

    def close_pageset(self, path: str) -> None:
        if self.pcp is None:
            return
        p = self.pcp
        for key in ("count", "high", "batch"):
            if key not in p:
                raise ParseError(path, self.pcp_lineno, f"pageset of cpu {p['cpu']} lacks {key}")
        extra = {k: v for k, v in p.items() if k not in ("cpu", "count", "high", "batch", "thr")}
        self.pagesets.append(
            Pageset(p["cpu"], p["count"], p["high"], p["batch"], p.get("thr"), extra)
        )
        self.pcp = None

    def build(self, path: str) -> ZoneInfo:
        self.close_pageset(path)
        if self.pages_free is None:
            raise ParseError(path, self.lineno, f"zone {self.zone} has no 'pages free' line")
        for key in _ZI_REQUIRED:
            if key not in self.header:
                raise ParseError(path, self.lineno, f"zone {self.zone} has no '{key}' line")
        if self.protection is None:
            raise ParseError(path, self.lineno, f"zone {self.zone} has no 'protection:' line")
        h = self.header
        extra = {k: v for k, v in h.items() if k not in _ZI_HEADER_KEYS or k == "scanned"}
        tail = dict(self.tail)
        nu = tail.pop("node_unreclaimable", None)
        sp = tail.pop("start_pfn", None)
        extra.update(tail)
        return ZoneInfo(
            node=self.node,
            zone=self.zone,
            pages_free=self.pages_free,
            min=h["min"],
            low=h["low"],
            high=h["high"],
            spanned=h["spanned"],
            present=h["present"],
            managed=h["managed"],
            protection=self.protection,
            boost=h.get("boost"),
            promo=h.get("promo"),
            cma=h.get("cma"),
            node_stats=self.node_stats,
            stats=self.stats,
            pagesets=tuple(self.pagesets),
            node_unreclaimable=nu,
            start_pfn=sp,
            extra=extra,
        )


def parse_zoneinfo(text: str, path: str = "<zoneinfo>") -> list[ZoneInfo]:
    """Parse ``/proc/zoneinfo`` into one :class:`ZoneInfo` per zone, in file order."""
    zones: list[ZoneInfo] = []
    z: _ZoneBuilder | None = None

    def bad(lineno: int, line: str, what: str) -> ParseError:
        return ParseError(path, lineno, f"expected {what}, got {line[:80]!r}")

    for lineno, line in _lines(text):
        if not line.strip():
            continue
        if m := _ZI_NODE_RE.match(line):
            if z is not None:
                zones.append(z.build(path))
            z = _ZoneBuilder(int(m.group(1)), m.group(2), lineno)
            continue
        if z is None:
            raise bad(lineno, line, "'Node N, zone NAME'")
        stripped = line.strip()
        if stripped == "per-node stats":
            if z.state != "start" or z.node_stats is not None:
                raise bad(lineno, line, "'per-node stats' right after the zone line only")
            z.node_stats = {}
            z.state = "node_stats"
            continue
        if m := _ZI_PAGESFREE_RE.match(line):
            if z.state not in ("start", "node_stats"):
                raise bad(lineno, line, "'pages free' once, before the watermarks")
            z.pages_free = int(m.group(1))
            z.state = "header"
            continue
        if m := _ZI_PROT_RE.match(line):
            if z.state not in ("header", "stats") or z.protection is not None:
                raise bad(lineno, line, "one 'protection:' line after 'pages free'")
            z.protection = tuple(int(x) for x in m.group(1).split(","))
            z.state = "stats"
            continue
        if stripped == "pagesets":
            if z.state not in ("header", "stats"):
                raise bad(lineno, line, "'pagesets' after the zone stats")
            z.state = "pagesets"
            continue
        if m := _ZI_KV_RE.match(line):
            name, value = m.group(1), int(m.group(2))
            if z.state == "node_stats":
                assert z.node_stats is not None
                target = z.node_stats
            elif z.state == "header" and name in _ZI_HEADER_KEYS:
                target = z.header
            elif z.state in ("header", "stats"):
                # Old kernels print the zone stats before 'protection:'.
                z.state = "stats"
                target = z.stats
            else:
                raise bad(lineno, line, f"a '{name}' counter inside the zone stats only")
            if name in target:
                raise ParseError(path, lineno, f"duplicate '{name}' in zone {z.zone}")
            target[name] = value
            continue
        if m := _ZI_COLON_RE.match(line):
            name, value = m.group(1), int(m.group(2))
            if z.state == "pagesets":
                if name == "cpu":
                    z.close_pageset(path)
                    z.pcp = {"cpu": value}
                    z.pcp_lineno = lineno
                    continue
                if z.pcp is None:
                    raise bad(lineno, line, "'cpu: N' before pageset fields")
                if name == "vm stats threshold":
                    name = "thr"
                    target = z.pcp
                elif name in (
                    "node_unreclaimable",
                    "start_pfn",
                    "all_unreclaimable",
                    "prev_priority",
                    "inactive_ratio",
                ):
                    z.close_pageset(path)
                    z.state = "tail"
                    target = z.tail
                elif line.startswith("    ") and not line.startswith("  vm"):
                    target = z.pcp
                else:
                    z.close_pageset(path)
                    z.state = "tail"
                    target = z.tail
            elif z.state in ("tail", "stats", "header"):
                z.state = "tail"
                target = z.tail
            else:
                raise bad(lineno, line, "zone fields after 'pages free'")
            if name in target:
                raise ParseError(path, lineno, f"duplicate '{name}' in zone {z.zone}")
            target[name] = value
            continue
        raise bad(lineno, line, "'name value', 'name: value' or 'protection: (...)'")
    if z is not None:
        zones.append(z.build(path))
    if not zones:
        raise ParseError(path, None, "expected at least one 'Node N, zone NAME' line")
    return zones


# --------------------------------------------------------------------------------------------
# /proc/vmstat, /proc/meminfo

_VMSTAT_RE = re.compile(r"^([A-Za-z_][\w]*)\s+(-?\d+)\s*$")
_MEMINFO_RE = re.compile(r"^([A-Za-z_][\w()]*):\s+(\d+)(\s+kB)?\s*$")


def parse_vmstat(text: str, path: str = "<vmstat>") -> dict[str, int]:
    """Parse ``/proc/vmstat`` into an ordered ``name -> value`` dict (file order kept)."""
    out: dict[str, int] = {}
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        m = _VMSTAT_RE.match(line)
        if m is None:
            raise ParseError(path, lineno, f"expected 'name value', got {line[:80]!r}")
        if m.group(1) in out:
            raise ParseError(path, lineno, f"duplicate item {m.group(1)!r}")
        out[m.group(1)] = int(m.group(2))
    if not out:
        raise ParseError(path, None, "expected at least one 'name value' line")
    return out


def parse_meminfo(text: str, path: str = "<meminfo>") -> dict[str, int]:
    """Parse ``/proc/meminfo``: ``key -> value`` as printed (kB, or a count for HugePages_*)."""
    out: dict[str, int] = {}
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        m = _MEMINFO_RE.match(line)
        if m is None:
            raise ParseError(path, lineno, f"expected 'Key:  value [kB]', got {line[:80]!r}")
        if m.group(1) in out:
            raise ParseError(path, lineno, f"duplicate key {m.group(1)!r}")
        out[m.group(1)] = int(m.group(2))
    if not out:
        raise ParseError(path, None, "expected at least one 'Key: value' line")
    return out


# --------------------------------------------------------------------------------------------
# debugfs extfrag/{unusable_index,extfrag_index}


@dataclass(frozen=True, slots=True)
class ExtfragRow:
    """One line of ``extfrag/unusable_index`` or ``extfrag/extfrag_index``."""

    node: int
    zone: str
    values: tuple[int, ...]
    """Per order, in thousandths: ``0.734`` -> 734, ``-1.000`` -> -1000."""


_EXTFRAG_RE = re.compile(r"^Node\s+(\d+),\s*zone\s+(\S+)((?:\s+-?\d+\.\d{3})+)\s*$")


def parse_extfrag(text: str, path: str = "<extfrag>") -> list[ExtfragRow]:
    """Parse debugfs ``extfrag/unusable_index`` or ``extfrag/extfrag_index``."""
    rows: list[ExtfragRow] = []
    norders: int | None = None
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        m = _EXTFRAG_RE.match(line)
        if m is None:
            raise ParseError(
                path, lineno, f"expected 'Node N, zone NAME  d.ddd ...', got {line[:80]!r}"
            )
        values = []
        for tok in m.group(3).split():
            neg = tok.startswith("-")
            whole, frac = tok.lstrip("-").split(".")
            v = int(whole) * 1000 + int(frac)
            values.append(-v if neg else v)
        if norders is None:
            norders = len(values)
        elif len(values) != norders:
            raise ParseError(
                path,
                lineno,
                f"expected {norders} per-order values like the first line, got {len(values)}",
            )
        rows.append(ExtfragRow(int(m.group(1)), m.group(2), tuple(values)))
    if not rows:
        raise ParseError(path, None, "expected at least one 'Node N, zone NAME ...' line")
    return rows
