"""Explain a high-order allocation failure from a snapshot of a real machine (``fragsim inspect``).

Models the checks Linux 6.1 makes before and after compaction, applied to the files of a
snapshot directory (``fragsim snapshot``, or any directory holding ``buddyinfo`` and friends):

* ``mm/vmstat.c``: ``fill_contig_page_info``, ``__fragmentation_index``, ``unusable_free_index``
  (the pure functions of :mod:`fragsim.mm.vmstat`);
* ``mm/page_alloc.c: __zone_watermark_ok`` -> :func:`zone_watermark_ok`;
* ``mm/compaction.c: __compaction_suitable`` / ``compaction_suitable`` ->
  :func:`compaction_suitable`: the order-0 watermark test against ``(low if order > 3 else min)
  + compact_gap(order)`` (``compact_gap`` = ``2 << order``), then, for costly orders only, the
  fragmentation index against ``vm.extfrag_threshold``;
* ``mm/vmstat.c: pagetypeinfo_showmixedcount_print`` (mixed pageblocks from a page_owner dump).

For every populated zone and every order >= 1 the report gives the zone's free pages against the
free blocks of that order, the unusable and fragmentation indices and a :class:`Verdict`:

1. ``succeeds now``: ``__zone_watermark_ok(zone, order, min_wmark, highest_zoneidx, 0)`` passes:
   free pages minus ``2^order - 1`` (and the highatomic reserve and free CMA pages, which a
   GFP_KERNEL caller may not use) stay above ``min + lowmem_reserve[highest_zoneidx]`` and a free
   block of at least that order sits on an Unmovable, Movable or Reclaimable free list;
2. ``likely after compaction``: ``compaction_suitable`` returns ``COMPACT_CONTINUE``;
3. ``fails for lack of memory``: it returns ``COMPACT_SKIPPED`` (order-0 watermark plus gap
   fails: reclaim first) or ``COMPACT_NOT_SUITABLE_ZONE`` (costly order whose fragmentation
   index is in ``[0, extfrag_threshold]``: the failure is attributed to lack of memory).

The allocation modelled is a GFP_KERNEL one: ``highest_zoneidx`` = ZONE_NORMAL, no ``ALLOC_CMA``,
no access to reserves. With kpageflags the report also says which kinds of pages
(:class:`fragsim.parsers.PageKind`) hold the aligned order-``pageblock_order`` and order-3 blocks
of each zone that compaction could not empty, and estimates mixed pageblocks.

SIMPLIFICATION: the files of a snapshot are read one after the other on a running machine;
buddyinfo, zoneinfo, pagetypeinfo and kpageflags can disagree by what happened in between.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fragsim.errors import FragsimError, ParseError
from fragsim.mm.vmstat import fill_contig_page_info, fragmentation_index, unusable_free_index
from fragsim.parsers import (
    BuddyInfoRow,
    PageKind,
    PageOwnerRecord,
    PageTypeInfo,
    ZoneInfo,
    classify,
    parse_buddyinfo,
    parse_page_owner,
    parse_pagetypeinfo,
    parse_zoneinfo,
    read_kpagecount,
    read_kpageflags,
)
from fragsim.parsers._io import read_input, split_lines

__all__ = [
    "BlockObstacles",
    "CompactResult",
    "InspectReport",
    "MixedBlocks",
    "OrderReport",
    "Snapshot",
    "Verdict",
    "ZoneObstacles",
    "ZoneReport",
    "block_obstacles",
    "compaction_suitable",
    "format_report",
    "inspect_snapshot",
    "load_snapshot",
    "parse_vm_sysctl",
    "zone_watermark_ok",
]

PAGE_ALLOC_COSTLY_ORDER: Final = 3
EXTFRAG_THRESHOLD_DEFAULT: Final = 500
"""``sysctl_extfrag_threshold`` (mm/compaction.c, 6.1)."""
PAGEBLOCK_ORDER_DEFAULT: Final = 9
"""x86-64 ``pageblock_order`` (HPAGE_PMD_ORDER), used when the snapshot has no pagetypeinfo."""
PCPTYPES: Final = ("Unmovable", "Movable", "Reclaimable")
"""The free lists ``__zone_watermark_ok`` scans for a high-order block (``MIGRATE_PCPTYPES``)."""
OBSTACLE_ORDER: Final = 3
"""The non-pageblock order whose aligned blocks the obstacle analysis also reports."""


# --------------------------------------------------------------------------------------------
# Loading a snapshot directory


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The parsed files of one snapshot directory; None where a file is absent."""

    path: str
    buddyinfo: list[BuddyInfoRow]
    pagetypeinfo: PageTypeInfo | None = None
    zoneinfo: list[ZoneInfo] | None = None
    vm_sysctl: Mapping[str, str] = field(default_factory=dict)
    """``/proc/sys/vm`` name -> value text (``extfrag_threshold`` -> ``"500"``)."""
    kpageflags: npt.NDArray[np.uint64] | None = None
    kpagecount: npt.NDArray[np.uint64] | None = None
    page_owner: list[PageOwnerRecord] | None = None
    kernel_release: str | None = None
    files: tuple[str, ...] = ()
    """The files read, in reading order."""
    skipped: Mapping[str, str] = field(default_factory=dict)
    """file -> why the capture skipped it (from ``manifest.json``)."""


def parse_vm_sysctl(text: str, path: str = "<vm_sysctl>") -> dict[str, str]:
    """Parse ``/proc/sys/vm`` values written as ``/proc/sys/vm/NAME:VALUE`` (fragsim snapshot, the
    oracle's ``vm_sysctl``) or ``vm.NAME = VALUE`` (``sysctl -a``) lines; others are ignored
    only when blank."""
    out: dict[str, str] = {}
    prefix = "/proc/sys/vm/"
    for lineno, raw in enumerate(split_lines(text), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if line.startswith(prefix) and ":" in line:
            name, value = line[len(prefix) :].split(":", 1)
        elif line.startswith("vm.") and "=" in line:
            name, value = line[3:].split("=", 1)
        else:
            raise ParseError(
                path,
                lineno,
                f"expected '/proc/sys/vm/NAME:VALUE' or 'vm.NAME = VALUE', got {line[:80]!r}",
            )
        name = name.strip()
        if not name or "/" in name:
            raise ParseError(path, lineno, f"bad sysctl name {name!r}")
        out[name] = value.strip()
    return out


def _text(path: str) -> str:
    data, _ = read_input(path, os.path.basename(path))
    return data.decode("utf-8", errors="replace")


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot directory. ``buddyinfo`` is required; every other file is optional
    (``pagetypeinfo``, ``zoneinfo``, ``vm_sysctl``, ``kernel-release``, ``kpageflags[.gz]``,
    ``kpagecount[.gz]``, ``page_owner[.gz]``, ``manifest.json``). Malformed files raise
    :class:`ParseError` naming the file and the line."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FragsimError(
            f"{root}: not a snapshot directory (make one with 'fragsim snapshot OUTDIR')"
        )

    def find(name: str) -> str | None:
        for cand in (name, name + ".gz"):
            full = os.path.join(root, cand)
            if os.path.isfile(full):
                return full
        return None

    skipped: dict[str, str] = {}
    manifest = os.path.join(root, "manifest.json")
    files: list[str] = []
    if os.path.isfile(manifest):
        try:
            with open(manifest, encoding="utf-8") as fh:
                doc = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ParseError(manifest, exc.lineno, f"invalid JSON: {exc.msg}") from None
        entries = doc.get("skipped", []) if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise ParseError(manifest, None, "expected an object with a 'skipped' list")
        for e in entries:
            if isinstance(e, dict) and "file" in e:
                skipped[str(e["file"])] = str(e.get("reason", "skipped"))
        files.append(manifest)

    bpath = find("buddyinfo")
    if bpath is None:
        present = sorted(os.listdir(root))
        why = f" (the capture skipped it: {skipped['buddyinfo']})" if "buddyinfo" in skipped else ""
        raise FragsimError(
            f"{root}: not a usable snapshot: missing buddyinfo (a copy of /proc/buddyinfo){why}, "
            "the minimum 'fragsim inspect' needs; the directory holds: "
            + (", ".join(present) if present else "nothing")
        )
    files.append(bpath)
    buddy = parse_buddyinfo(_text(bpath), bpath)

    def parsed(name: str) -> str | None:
        p = find(name)
        if p is not None:
            files.append(p)
        return p

    pti = zi = None
    if (p := parsed("pagetypeinfo")) is not None:
        pti = parse_pagetypeinfo(_text(p), p)
    if (p := parsed("zoneinfo")) is not None:
        zi = parse_zoneinfo(_text(p), p)
    sysctl: dict[str, str] = {}
    if (p := parsed("vm_sysctl")) is not None:
        sysctl = parse_vm_sysctl(_text(p), p)
    release = None
    if (p := parsed("kernel-release")) is not None:
        release = (_text(p).strip().splitlines() or [""])[0].strip() or None
    flags = counts = None
    if (p := parsed("kpageflags")) is not None:
        flags = read_kpageflags(p)
        if (p := parsed("kpagecount")) is not None:
            counts = read_kpagecount(p)
            if counts.shape != flags.shape:
                raise ParseError(p, None, f"{counts.size} pfns, but kpageflags has {flags.size}")
    owner = None
    if (p := parsed("page_owner")) is not None:
        owner = parse_page_owner(_text(p), p)
    return Snapshot(
        path=root,
        buddyinfo=buddy,
        pagetypeinfo=pti,
        zoneinfo=zi,
        vm_sysctl=sysctl,
        kpageflags=flags,
        kpagecount=counts,
        page_owner=owner,
        kernel_release=release,
        files=tuple(files),
        skipped=skipped,
    )


# --------------------------------------------------------------------------------------------
# Watermark and compaction checks


class Verdict(StrEnum):
    """What an allocation of one order in one zone would do (see the module docstring)."""

    SUCCEEDS_NOW = "succeeds now"
    LIKELY_AFTER_COMPACTION = "likely after compaction"
    FAILS_LACK_OF_MEMORY = "fails for lack of memory"


class CompactResult(StrEnum):
    """The values of ``enum compact_result`` that ``compaction_suitable`` returns (6.1)."""

    COMPACT_SUCCESS = "COMPACT_SUCCESS"
    COMPACT_CONTINUE = "COMPACT_CONTINUE"
    COMPACT_SKIPPED = "COMPACT_SKIPPED"
    COMPACT_NOT_SUITABLE_ZONE = "COMPACT_NOT_SUITABLE_ZONE"


def compact_gap(order: int) -> int:
    """compact_gap(): free pages compaction wants beyond the watermark (2 << order)."""
    return 2 << order


def zone_watermark_ok(
    free_pages: int,
    order: int,
    mark: int,
    lowmem_reserve: int,
    free_list_nonempty: Sequence[bool],
    *,
    nr_reserved_highatomic: int = 0,
    nr_free_cma: int = 0,
    alloc_cma: bool = False,
) -> bool:
    """__zone_watermark_ok() without reserve access: True when ``free_pages`` minus the pages
    the caller cannot use stays above ``mark + lowmem_reserve`` and, for order > 0, some
    ``free_list_nonempty[o]`` (o >= order: a usable free list of that order has a block) holds."""
    free = free_pages - ((1 << order) - 1) - nr_reserved_highatomic
    if not alloc_cma:
        free -= nr_free_cma
    if free <= mark + lowmem_reserve:
        return False
    if order == 0:
        return True
    return any(free_list_nonempty[order:])


def compaction_suitable(
    order: int,
    free_pages: int,
    min_wmark: int,
    low_wmark: int,
    lowmem_reserve: int,
    free_list_nonempty: Sequence[bool],
    fragindex: int,
    *,
    extfrag_threshold: int = EXTFRAG_THRESHOLD_DEFAULT,
    nr_reserved_highatomic: int = 0,
    nr_free_cma: int = 0,
) -> CompactResult:
    """compaction_suitable(zone, order, ALLOC_WMARK_MIN, highest_zoneidx) of Linux 6.1:
    ``COMPACT_SUCCESS`` when the allocation's own watermark check already passes,
    ``COMPACT_SKIPPED`` when the order-0 check (with ALLOC_CMA) against
    ``(low if costly else min) + compact_gap(order)`` fails, ``COMPACT_NOT_SUITABLE_ZONE`` for a
    costly order whose ``fragindex`` (thousandths) is in ``[0, extfrag_threshold]``, else
    ``COMPACT_CONTINUE``."""
    if zone_watermark_ok(
        free_pages,
        order,
        min_wmark,
        lowmem_reserve,
        free_list_nonempty,
        nr_reserved_highatomic=nr_reserved_highatomic,
        nr_free_cma=nr_free_cma,
    ):
        return CompactResult.COMPACT_SUCCESS
    mark = (low_wmark if order > PAGE_ALLOC_COSTLY_ORDER else min_wmark) + compact_gap(order)
    if not zone_watermark_ok(
        free_pages,
        0,
        mark,
        lowmem_reserve,
        free_list_nonempty,
        nr_reserved_highatomic=nr_reserved_highatomic,
        nr_free_cma=nr_free_cma,
        alloc_cma=True,
    ):
        return CompactResult.COMPACT_SKIPPED
    if order > PAGE_ALLOC_COSTLY_ORDER and 0 <= fragindex <= extfrag_threshold:
        return CompactResult.COMPACT_NOT_SUITABLE_ZONE
    return CompactResult.COMPACT_CONTINUE


_VERDICT = {
    CompactResult.COMPACT_SUCCESS: Verdict.SUCCEEDS_NOW,
    CompactResult.COMPACT_CONTINUE: Verdict.LIKELY_AFTER_COMPACTION,
    CompactResult.COMPACT_SKIPPED: Verdict.FAILS_LACK_OF_MEMORY,
    CompactResult.COMPACT_NOT_SUITABLE_ZONE: Verdict.FAILS_LACK_OF_MEMORY,
}


def _thousandths(v: int) -> str:
    """A thousandths value as the kernel prints it (``%d.%03d``: -1000 -> -1.000)."""
    sign = "-" if v < 0 else ""
    return f"{sign}{abs(v) // 1000}.{abs(v) % 1000:03d}"


# --------------------------------------------------------------------------------------------
# kpageflags: what holds aligned blocks

KIND_NAMES: Final[dict[PageKind, str]] = {
    PageKind.NOPAGE: "holes (no page)",
    PageKind.BUDDY: "free pages",
    PageKind.RESERVED: "reserved pages",
    PageKind.SLAB: "slab pages",
    PageKind.PGTABLE: "page-table pages",
    PageKind.OFFLINE: "balloon/offline pages",
    PageKind.ZSMALLOC: "zsmalloc pages",
    PageKind.LRU_ANON: "anonymous LRU pages",
    PageKind.LRU_FILE: "file LRU pages",
    PageKind.UNEVICTABLE: "unevictable pages",
    PageKind.COMPOUND: "compound/THP pages",
    PageKind.OTHER_KERNEL: "other kernel pages",
}
"""Plain-language names of the page kinds, as the report prints them."""

_NKINDS = max(k.value for k in PageKind) + 1
_BIT = {k: 1 << k.value for k in PageKind}
_KINDS = list(PageKind)  # the THP alias is not iterated
_MOVABLE_ALLOC = (
    PageKind.LRU_ANON,
    PageKind.LRU_FILE,
    PageKind.COMPOUND,
    PageKind.UNEVICTABLE,
    PageKind.ZSMALLOC,
    PageKind.OFFLINE,
)
"""Kinds allocated with __GFP_MOVABLE (gfp_migratetype MIGRATE_MOVABLE)."""
_UNMOVABLE_ALLOC = (PageKind.SLAB, PageKind.PGTABLE, PageKind.OTHER_KERNEL)
"""Kinds allocated without __GFP_MOVABLE. Reserved pages are not allocations and are skipped,
as pagetypeinfo_showmixedcount_print skips them."""


def _mask(kinds: Sequence[PageKind]) -> int:
    m = 0
    for k in kinds:
        m |= _BIT[k]
    return m


def movable_kinds(*, nonlru_movable: bool, compact_unevictable_allowed: bool) -> set[PageKind]:
    """Kinds that do not stop compaction from emptying a block (free pages included).

    LRU pages migrate; unevictable (mlocked) ones only with ``vm.compact_unevictable_allowed``;
    zsmalloc and balloon pages only through the non-LRU movable page framework
    (``nonlru_movable``). 6.1's ``isolate_migratepages_block`` skips every compound page outside
    ``alloc_contig_range``, so compound/THP pages are obstacles, as are slab, page tables,
    reserved pages, other kernel pages and holes."""
    kinds = {PageKind.BUDDY, PageKind.LRU_ANON, PageKind.LRU_FILE}
    if compact_unevictable_allowed:
        kinds.add(PageKind.UNEVICTABLE)
    if nonlru_movable:
        kinds |= {PageKind.ZSMALLOC, PageKind.OFFLINE}
    return kinds


def _block_masks(
    kinds: npt.NDArray[np.uint8], start_pfn: int, end_pfn: int, order: int
) -> tuple[int, npt.NDArray[np.uint16]]:
    """(first pfn, OR of 1 << kind over each aligned order-``order`` block wholly inside
    ``[start_pfn, end_pfn)`` and inside the kpageflags array)."""
    size = 1 << order
    first = -(-start_pfn // size) * size
    last = (min(end_pfn, kinds.size) // size) * size
    if last <= first:
        return first, np.zeros(0, np.uint16)
    bits = np.left_shift(np.uint16(1), kinds[first:last].astype(np.uint16))
    return first, np.bitwise_or.reduce(bits.reshape(-1, size), axis=1)


@dataclass(frozen=True, slots=True)
class BlockObstacles:
    """What holds the aligned order-``order`` blocks of one pfn range.

    ``free + compactable + sum(sole.values()) + several == blocks``."""

    order: int
    nonlru_movable: bool
    """True: zsmalloc and balloon pages counted as movable (non-LRU movable framework on)."""
    blocks: int
    """Aligned blocks wholly inside the range that hold at least one page."""
    holes: int
    """Aligned blocks that are all holes (no struct page), not in ``blocks``."""
    free: int
    """Blocks whose every page is a free buddy page."""
    compactable: int
    """Blocks holding only free and movable pages."""
    sole: dict[str, int]
    """Obstacle kind -> blocks in which it is the only obstacle, most blocks first."""
    several: int
    """Blocks held by two or more obstacle kinds."""
    present: dict[str, int]
    """Obstacle kind -> blocks it appears in (with or without other obstacles)."""


def block_obstacles(
    kinds: npt.NDArray[np.uint8],
    start_pfn: int,
    end_pfn: int,
    order: int,
    movable: set[PageKind] | frozenset[PageKind],
    *,
    nonlru_movable: bool = False,
) -> BlockObstacles:
    """Classify every aligned order-``order`` block of ``[start_pfn, end_pfn)`` by the page kinds
    (``classify`` output, one per pfn) in it that are not in ``movable``."""
    _, masks = _block_masks(np.asarray(kinds, dtype=np.uint8), start_pfn, end_pfn, order)
    hole = np.uint16(_BIT[PageKind.NOPAGE])
    holes = int(np.count_nonzero(masks == hole))
    masks = masks[masks != hole]
    obstacle_bits = np.uint16(((1 << _NKINDS) - 1) & ~_mask(sorted(movable)))
    obst = masks & obstacle_bits
    free = int(np.count_nonzero(masks == np.uint16(_BIT[PageKind.BUDDY])))
    clear = int(np.count_nonzero(obst == 0))
    single = np.count_nonzero((obst != 0) & ((obst & (obst - np.uint16(1))) == 0))
    sole: dict[str, int] = {}
    present: dict[str, int] = {}
    for k in _KINDS:
        if k in movable:
            continue
        b = np.uint16(_BIT[k])
        n_sole = int(np.count_nonzero(obst == b))
        n_any = int(np.count_nonzero(obst & b))
        if n_sole:
            sole[k.name.lower()] = n_sole
        if n_any:
            present[k.name.lower()] = n_any
    return BlockObstacles(
        order=order,
        nonlru_movable=nonlru_movable,
        blocks=int(masks.size),
        holes=holes,
        free=free,
        compactable=clear - free,
        sole=dict(sorted(sole.items(), key=lambda kv: (-kv[1], kv[0]))),
        several=int(obst.size - clear - single),
        present=dict(sorted(present.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


@dataclass(frozen=True, slots=True)
class ZoneObstacles:
    """The obstacle analysis of one zone's pfn range (or of all pfns without zoneinfo)."""

    node: int | None
    zone: str
    start_pfn: int
    end_pfn: int
    kinds: dict[str, int]
    """Pages of every kind in the range (pfns beyond the kpageflags dump are not counted)."""
    no_flag_pages: int
    """Pages without a single kpageflags bit (counted as other kernel pages): allocated without
    a telling flag, free on a per-cpu list, or (in holes of some kernels) never initialised."""
    absent_pages: int | None
    """zoneinfo's spanned - present: holes inside the zone's span."""
    by_order: tuple[BlockObstacles, ...]
    """For each order: framework off, then framework on."""


# --------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True, slots=True)
class OrderReport:
    """One zone, one order."""

    order: int
    free_blocks: int
    """Order-``order`` blocks the free lists can give without compaction
    (``free_blocks_suitable`` of fill_contig_page_info)."""
    usable_pages: int
    """``free_blocks << order``: free pages in blocks of at least this order."""
    unusable_index: int
    """unusable_free_index() in thousandths: 0 => all free memory usable at this order,
    1000 => none of it."""
    fragmentation_index: int
    """__fragmentation_index() in thousandths: -1000 => a block of this order is free; towards 0
    => a failure would be for lack of memory; towards 1000 => because of fragmentation."""
    watermark_ok: bool
    compaction_suitable: CompactResult
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class MixedBlocks:
    """Pageblocks holding allocations of another migratetype than the block's."""

    source: str
    """``pagetypeinfo`` (the kernel's page_owner count), ``page_owner`` (recounted from the dump)
    or ``kpageflags`` (an estimate)."""
    estimate: bool
    total: int
    by_type: dict[str, int] | None
    note: str


@dataclass(frozen=True, slots=True)
class ZoneReport:
    """One populated zone (a buddyinfo line) with its checks."""

    node: int
    zone: str
    nr_free: tuple[int, ...]
    free_pages: int
    """Free pages in the buddy lists (buddyinfo)."""
    nr_free_pages: int
    """NR_FREE_PAGES as the checks read it: zoneinfo's ``pages free``, else ``free_pages``."""
    watermarks_known: bool
    """False without zoneinfo: min/low/high and the reserve are taken as 0."""
    min: int
    low: int
    high: int
    boost: int | None
    lowmem_reserve: int
    """lowmem_reserve[highest_zoneidx] (zoneinfo ``protection``)."""
    nr_reserved_highatomic: int
    """HighAtomic pageblocks x pages per block (pagetypeinfo), else 0."""
    nr_free_cma: int
    pcp_pages: int | None
    """Free pages on per-cpu lists (zoneinfo pagesets): free, but in no buddy list."""
    start_pfn: int | None
    spanned: int | None
    free_lists_from: str
    """Where the per-order "a free block exists" test looked: ``pagetypeinfo`` (the
    Unmovable/Movable/Reclaimable lists) or ``buddyinfo`` (every list, an approximation)."""
    orders: tuple[OrderReport, ...]
    pageblocks: dict[str, int] | None
    """Pageblocks per migratetype (pagetypeinfo)."""
    mixed: MixedBlocks | None


@dataclass(frozen=True, slots=True)
class InspectReport:
    """Everything ``fragsim inspect`` prints."""

    source: str
    kernel_release: str | None
    files: tuple[str, ...]
    skipped: dict[str, str]
    highest_zone: str
    extfrag_threshold: int
    extfrag_threshold_source: str
    compact_unevictable_allowed: bool
    pageblock_order: int
    zones: tuple[ZoneReport, ...]
    obstacles: tuple[ZoneObstacles, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (enums as their text)."""
        d: dict[str, Any] = asdict(self)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _sysctl_int(snap: Snapshot, name: str) -> int | None:
    raw = snap.vm_sysctl.get(name)
    if raw is None:
        return None
    try:
        return int(raw.split()[0])
    except (ValueError, IndexError):
        raise ParseError(
            os.path.join(snap.path, "vm_sysctl"), None, f"{name}: expected an integer, got {raw!r}"
        ) from None


def _zone_index(zoneinfo: list[ZoneInfo] | None, node: int, name: str) -> int | None:
    if zoneinfo is None:
        return None
    names = [z.zone for z in zoneinfo if z.node == node]
    return names.index(name) if name in names else None


def _order_reason(
    order: int,
    res: CompactResult,
    *,
    known: bool,
    eff_free: int,
    free_cma_ok: int,
    min_w: int,
    low_w: int,
    reserve: int,
    block_order: int | None,
    lists: str,
    fragindex: int,
    threshold: int,
) -> str:
    """One line saying why the checks came out as they did. ``eff_free``: free pages the
    allocation may use, less 2^order - 1; ``free_cma_ok``: those compaction's order-0 check
    counts (ALLOC_CMA)."""
    gap = compact_gap(order)
    if res is CompactResult.COMPACT_SUCCESS:
        if not known:
            return f"order-{block_order} block free (no zoneinfo: watermarks not checked)"
        return (
            f"{eff_free} usable free > min {min_w} + reserve {reserve}; "
            f"order-{block_order} block free"
        )
    if known and eff_free <= min_w + reserve:
        why = f"{eff_free} usable free <= min {min_w} + reserve {reserve}"
    else:
        why = f"no free block of order >= {order} on the {lists} lists"
    costly = order > PAGE_ALLOC_COSTLY_ORDER
    w_name, w = ("low", low_w) if costly else ("min", min_w)
    need = f"{w_name} {w} + gap {gap} + reserve {reserve}" if known else f"gap {gap}"
    if res is CompactResult.COMPACT_SKIPPED:
        return f"{why}; {free_cma_ok} free <= {need}: reclaim first"
    if res is CompactResult.COMPACT_NOT_SUITABLE_ZONE:
        return (
            f"{why}; fragindex {_thousandths(fragindex)} <= extfrag_threshold "
            f"{_thousandths(threshold)}: lack of memory"
        )
    if fragindex == -1000:
        tail = "a block of this order is free, but not usable by this allocation"
    elif costly:
        tail = f"fragindex {_thousandths(fragindex)} > {_thousandths(threshold)}"
    else:
        tail = "order <= 3: fragindex not consulted"
    return f"{why}; {free_cma_ok} free > {need}; {tail}"


def _mixed_from_page_owner(records: list[PageOwnerRecord], start: int, end: int) -> dict[str, int]:
    """pagetypeinfo_showmixedcount_print() recounted from a page_owner dump: blocks, per block
    migratetype (CMA counted as Movable), holding an allocation of another migratetype."""
    seen: dict[int, str] = {}
    for r in records:
        if start <= r.pfn < end and r.block not in seen and r.migratetype != r.block_migratetype:
            seen[r.block] = "Movable" if r.block_migratetype == "CMA" else r.block_migratetype
    out: dict[str, int] = {}
    for mt in seen.values():
        out[mt] = out.get(mt, 0) + 1
    return out


def _mixed_estimate(
    kinds: npt.NDArray[np.uint8],
    start: int,
    end: int,
    pageblock_order: int,
    blocks_by_type: Mapping[str, int] | None,
) -> MixedBlocks:
    """A lower bound of mixed pageblocks from kpageflags, which does not record block types:
    a block holding both movable and unmovable allocations is mixed whatever its type; when
    pagetypeinfo's block counts cover the same blocks, pigeonhole on them too (more blocks hold
    unmovable allocations than there are non-Movable blocks => the rest are mixed)."""
    _, masks = _block_masks(kinds, start, end, pageblock_order)
    masks = masks[masks != np.uint16(_BIT[PageKind.NOPAGE])]
    has_mov = (masks & np.uint16(_mask(_MOVABLE_ALLOC))) != 0
    has_unmov = (masks & np.uint16(_mask(_UNMOVABLE_ALLOC))) != 0
    both = int(np.count_nonzero(has_mov & has_unmov))
    bound = both
    note = (
        "estimate from kpageflags: pageblocks holding both movable allocations (LRU, THP, "
        "zsmalloc, balloon) and unmovable ones (slab, page tables, other kernel)"
    )
    if blocks_by_type is not None:
        n_mov = sum(v for k, v in blocks_by_type.items() if k in ("Movable", "CMA"))
        n_other = sum(blocks_by_type.values()) - n_mov
        # pagetypeinfo also counts the partial blocks at the zone's two ends
        if 0 <= n_mov + n_other - masks.size <= 2:
            x = int(np.count_nonzero(has_unmov))
            y = int(np.count_nonzero(has_mov))
            bound = max(both, x - n_other, y - n_mov)
            if bound > both:
                note += (
                    f", or more: {x} blocks hold unmovable allocations for {n_other} "
                    f"non-Movable blocks, {y} hold movable ones for {n_mov} Movable blocks"
                )
    note += "; free pages on per-cpu lists look like unmovable other kernel pages"
    return MixedBlocks("kpageflags", True, bound, None, note)


def inspect_snapshot(
    snap: Snapshot,
    *,
    highest_zone: str = "Normal",
    extfrag_threshold: int | None = None,
) -> InspectReport:
    """Run every check on a snapshot. ``highest_zone`` names the allocation's highest zone
    (ZONE_NORMAL for GFP_KERNEL); ``extfrag_threshold`` overrides the snapshot's sysctl."""
    notes: list[str] = []
    if extfrag_threshold is not None:
        threshold, t_src = extfrag_threshold, "given"
    elif (t := _sysctl_int(snap, "extfrag_threshold")) is not None:
        threshold, t_src = t, "vm_sysctl"
    else:
        threshold, t_src = EXTFRAG_THRESHOLD_DEFAULT, "default"
    cua = _sysctl_int(snap, "compact_unevictable_allowed")
    unevictable_ok = True if cua is None else cua != 0
    pti = snap.pagetypeinfo
    pb_order = pti.pageblock_order if pti is not None else PAGEBLOCK_ORDER_DEFAULT
    if pti is None:
        notes.append(
            f"no pagetypeinfo: pageblock order taken as {pb_order}; the free-block test uses "
            "buddyinfo (all free lists, HighAtomic/CMA/Isolate included)"
        )
    zi_by_key = {(z.node, z.zone): z for z in snap.zoneinfo or []}
    if snap.zoneinfo is None:
        notes.append("no zoneinfo: watermarks, lowmem reserve and pfn ranges unknown (taken as 0)")

    kinds = None
    if snap.kpageflags is not None:
        kinds = classify(snap.kpageflags, snap.kpagecount)

    zones: list[ZoneReport] = []
    for row in snap.buddyinfo:
        key = (row.node, row.zone)
        nr_free = np.asarray(row.nr_free, dtype=np.int64)
        zi = zi_by_key.get(key)
        free_lists_from = "buddyinfo"
        nonempty = [n > 0 for n in row.nr_free]
        highatomic = 0
        blocks_by_type: dict[str, int] | None = None
        if pti is not None and key in pti.blocks:
            free_lists_from = "pagetypeinfo"
            pcp_lists = [
                pti.free[(row.node, row.zone, mt)].counts
                for mt in PCPTYPES
                if (row.node, row.zone, mt) in pti.free
            ]
            nonempty = [
                any(o < len(c) and c[o] > 0 for c in pcp_lists) for o in range(len(row.nr_free))
            ]
            blocks_by_type = dict(pti.blocks[key])
            highatomic = blocks_by_type.get("HighAtomic", 0) * pti.pages_per_block
        if zi is not None:
            zidx = _zone_index(snap.zoneinfo, row.node, row.zone)
            hidx = _zone_index(snap.zoneinfo, row.node, highest_zone)
            cls = max(zidx or 0, hidx if hidx is not None else zidx or 0)
            reserve = zi.protection[cls] if cls < len(zi.protection) else 0
            free_cnt, min_w, low_w, high_w = zi.pages_free, zi.min, zi.low, zi.high
            cma = zi.stats.get("nr_free_cma", 0)
        else:
            reserve = min_w = low_w = high_w = cma = 0
            free_cnt = row.free_pages
        lists = "Unmovable/Movable/Reclaimable" if free_lists_from == "pagetypeinfo" else "free"
        orders: list[OrderReport] = []
        for order in range(1, len(row.nr_free)):
            info = fill_contig_page_info(nr_free, order)
            fi = fragmentation_index(nr_free, order)
            res = compaction_suitable(
                order,
                free_cnt,
                min_w,
                low_w,
                reserve,
                nonempty,
                fi,
                extfrag_threshold=threshold,
                nr_reserved_highatomic=highatomic,
                nr_free_cma=cma,
            )
            eff = free_cnt - ((1 << order) - 1) - highatomic - cma
            block_order = next((o for o in range(order, len(nonempty)) if nonempty[o]), None)
            orders.append(
                OrderReport(
                    order=order,
                    free_blocks=info.free_blocks_suitable,
                    usable_pages=info.free_blocks_suitable << order,
                    unusable_index=unusable_free_index(nr_free, order),
                    fragmentation_index=fi,
                    watermark_ok=res is CompactResult.COMPACT_SUCCESS,
                    compaction_suitable=res,
                    verdict=_VERDICT[res],
                    reason=_order_reason(
                        order,
                        res,
                        known=zi is not None,
                        eff_free=eff,
                        free_cma_ok=free_cnt - highatomic,
                        min_w=min_w,
                        low_w=low_w,
                        reserve=reserve,
                        block_order=block_order,
                        lists=lists,
                        fragindex=fi,
                        threshold=threshold,
                    ),
                )
            )
        mixed = None
        if pti is not None and pti.mixed_blocks is not None and key in pti.mixed_blocks:
            by = dict(pti.mixed_blocks[key])
            mixed = MixedBlocks("pagetypeinfo", False, sum(by.values()), by, "page_owner count")
        elif snap.page_owner is not None and zi is not None and zi.start_pfn is not None:
            by = _mixed_from_page_owner(snap.page_owner, zi.start_pfn, zi.start_pfn + zi.spanned)
            mixed = MixedBlocks(
                "page_owner", False, sum(by.values()), by, "recounted from the page_owner dump"
            )
        elif kinds is not None and zi is not None and zi.start_pfn is not None:
            mixed = _mixed_estimate(
                kinds, zi.start_pfn, zi.start_pfn + zi.spanned, pb_order, blocks_by_type
            )
        zones.append(
            ZoneReport(
                node=row.node,
                zone=row.zone,
                nr_free=row.nr_free,
                free_pages=row.free_pages,
                nr_free_pages=free_cnt,
                watermarks_known=zi is not None,
                min=min_w,
                low=low_w,
                high=high_w,
                boost=zi.boost if zi is not None else None,
                lowmem_reserve=reserve,
                nr_reserved_highatomic=highatomic,
                nr_free_cma=cma,
                pcp_pages=zi.pcp_count if zi is not None else None,
                start_pfn=zi.start_pfn if zi is not None else None,
                spanned=zi.spanned if zi is not None else None,
                free_lists_from=free_lists_from,
                orders=tuple(orders),
                pageblocks=blocks_by_type,
                mixed=mixed,
            )
        )

    obstacles: list[ZoneObstacles] = []
    if kinds is not None:
        assert snap.kpageflags is not None
        ranges: list[tuple[int | None, str, int, int, int | None]] = [
            (z.node, z.zone, z.start_pfn, z.start_pfn + z.spanned, z.spanned - z.present)
            for z in snap.zoneinfo or []
            if z.populated and z.start_pfn is not None
        ]
        if not ranges:
            ranges = [(None, "(all pfns)", 0, int(kinds.size), None)]
            notes.append("no zone pfn ranges (zoneinfo start_pfn): kpageflags analysed whole")
        orders_ob = [pb_order] + ([OBSTACLE_ORDER] if OBSTACLE_ORDER != pb_order else [])
        for node, zname, start, end, absent in ranges:
            counts = np.bincount(kinds[start : min(end, kinds.size)], minlength=_NKINDS)
            no_flag = int(np.count_nonzero(snap.kpageflags[start : min(end, kinds.size)] == 0))
            per: list[BlockObstacles] = []
            for order in orders_ob:
                for nonlru in (False, True):
                    mv = movable_kinds(
                        nonlru_movable=nonlru, compact_unevictable_allowed=unevictable_ok
                    )
                    per.append(block_obstacles(kinds, start, end, order, mv, nonlru_movable=nonlru))
            obstacles.append(
                ZoneObstacles(
                    node=node,
                    zone=zname,
                    start_pfn=start,
                    end_pfn=end,
                    kinds={k.name.lower(): int(counts[k.value]) for k in _KINDS},
                    no_flag_pages=no_flag,
                    absent_pages=absent,
                    by_order=tuple(per),
                )
            )
            if end > kinds.size:
                notes.append(
                    f"zone {zname}: pfns {kinds.size}-{end - 1} are beyond the kpageflags dump"
                )
    return InspectReport(
        source=snap.path,
        kernel_release=snap.kernel_release,
        files=tuple(os.path.basename(f) for f in snap.files),
        skipped=dict(snap.skipped),
        highest_zone=highest_zone,
        extfrag_threshold=threshold,
        extfrag_threshold_source=t_src,
        compact_unevictable_allowed=unevictable_ok,
        pageblock_order=pb_order,
        zones=tuple(zones),
        obstacles=tuple(obstacles),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Plain text


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.0f}%" if d else "-"


def _kind_label(name: str) -> str:
    return KIND_NAMES[PageKind[name.upper()]]


def _format_obstacles(zo: ZoneObstacles, pb_order: int) -> list[str]:
    where = "all pfns" if zo.node is None else f"Node {zo.node}, zone {zo.zone}"
    out = [
        f"== What holds high-order blocks: {where}, pfns {zo.start_pfn}-{zo.end_pfn - 1} "
        "(kpageflags)",
        "   pages: " + ", ".join(f"{_kind_label(k)} {v}" for k, v in zo.kinds.items() if v),
    ]
    if zo.no_flag_pages:
        absent = f"; the zone has {zo.absent_pages} absent pages" if zo.absent_pages else ""
        out.append(
            f"   {zo.no_flag_pages} of the other kernel pages carry no flag at all (kernel "
            f"allocations without a telling flag, per-cpu free pages, uninitialised pages{absent})"
        )
    nonlru = zo.kinds.get("zsmalloc", 0) + zo.kinds.get("offline", 0)
    zone_txt = "" if zo.node is None else f" of zone {zo.zone}"
    for bo in zo.by_order:
        what = "pageblocks" if bo.order == pb_order else f"order-{bo.order} blocks"
        if bo.nonlru_movable:
            if not nonlru:
                continue
            head = f"order {bo.order}, non-LRU movable framework on (zsmalloc, balloon movable)"
        else:
            head = f"order {bo.order}" + (
                ", non-LRU movable framework off (zsmalloc, balloon pinned)" if nonlru else ""
            )
        holes = f" (and {bo.holes} all holes)" if bo.holes else ""
        out.append(
            f"-- {head}: {bo.blocks} {what}{holes}: {bo.free} wholly free, {bo.compactable} "
            f"compaction can empty, {sum(bo.sole.values())} held by one kind of page, "
            f"{bo.several} by several"
        )
        for k, n in bo.sole.items():
            label = _kind_label(k)
            out.append(
                f"   {label[0].upper()}{label[1:]} are the only obstacle in {n} of {bo.blocks} "
                f"{what} ({_pct(n, bo.blocks)}){zone_txt} (present in {bo.present.get(k, 0)})"
            )
    return out


def format_report(r: InspectReport) -> str:
    """The plain-text report of ``fragsim inspect``."""
    out: list[str] = [f"fragsim inspect {r.source}"]
    if r.kernel_release:
        out.append(f"kernel {r.kernel_release}")
    out.append("files: " + " ".join(r.files))
    for f, why in r.skipped.items():
        out.append(f"not captured: {f} ({why})")
    out.append(
        f"allocation checked: GFP_KERNEL (highest zone {r.highest_zone}, min watermark, no CMA, "
        f"no reserves); extfrag_threshold {r.extfrag_threshold} ({r.extfrag_threshold_source}); "
        f"compact_unevictable_allowed {int(r.compact_unevictable_allowed)}"
    )
    for n in r.notes:
        out.append(f"note: {n}")
    for z in r.zones:
        out.append("")
        head = f"== Node {z.node}, zone {z.zone}: {z.free_pages} pages free in buddyinfo"
        if z.watermarks_known:
            head += f", {z.nr_free_pages} in zoneinfo"
        out.append(head)
        if z.watermarks_known:
            extra = []
            if z.pcp_pages:
                extra.append(f"{z.pcp_pages} free on per-cpu lists")
            if z.nr_reserved_highatomic:
                extra.append(f"highatomic reserve {z.nr_reserved_highatomic}")
            if z.nr_free_cma:
                extra.append(f"free CMA {z.nr_free_cma}")
            span = (
                f"pfns {z.start_pfn}-{z.start_pfn + z.spanned - 1}; "
                if z.start_pfn is not None and z.spanned
                else ""
            )
            out.append(
                f"   {span}watermarks min {z.min} low {z.low} high {z.high}"
                + (f" (boost {z.boost})" if z.boost else "")
                + f", lowmem reserve {z.lowmem_reserve}"
                + "".join(f", {e}" for e in extra)
            )
        out.append(
            f"{'order':>5} {'free blocks':>11} {'in pages':>9} {'unusable':>8} {'fragindex':>9}  "
            f"{'verdict':<24}  why"
        )
        for o in z.orders:
            out.append(
                f"{o.order:>5} {o.free_blocks:>11} {o.usable_pages:>9} "
                f"{_thousandths(o.unusable_index):>8} {_thousandths(o.fragmentation_index):>9}  "
                f"{o.verdict.value:<24}  {o.reason}"
            )
        if z.pageblocks is not None:
            total = sum(z.pageblocks.values())
            out.append(
                f"   pageblocks ({total}): "
                + ", ".join(f"{k} {v}" for k, v in z.pageblocks.items())
            )
        if z.mixed is not None:
            if z.mixed.by_type is not None:
                by = ", ".join(f"{k} {v}" for k, v in z.mixed.by_type.items())
                out.append(f"   mixed pageblocks: {z.mixed.total} ({by}; {z.mixed.note})")
            else:
                out.append(f"   mixed pageblocks: at least {z.mixed.total} ({z.mixed.note})")
        elif z.pageblocks is not None:
            out.append(
                "   mixed pageblocks: unknown (no page_owner section in pagetypeinfo, "
                "no page_owner dump, no kpageflags)"
            )
    if r.obstacles:
        out.append("")
        out.append(
            "Obstacles: free, LRU (anon, file) and, with compact_unevictable_allowed, "
            "unevictable pages do not stop compaction; slab, page tables, reserved, compound/THP "
            "(6.1 compaction skips compound pages), other kernel pages and holes do; zsmalloc "
            "and balloon pages only without the non-LRU movable framework."
        )
    for zo in r.obstacles:
        out.append("")
        out.extend(_format_obstacles(zo, r.pageblock_order))
    return "\n".join(out) + "\n"
