"""Memory-map images: one cell per page frame, coloured by what the page holds, laid out pageblock
by pageblock with each pageblock's migratetype shown as a strip above it.

Two sources, one picture:

* a simulated machine (:func:`memmap_from_machine`): :func:`classify_machine` reads the
  ``mem_map`` (``State.flags``, ``order``, ``pcpmt``, ``refcount``, ``mops``) and the pageblock
  bitmap the way ``get_pageblock_migratetype`` decodes it (Linux 6.1 include/linux/page-flags.h,
  mm/page_alloc.c);
* a snapshot of a real machine (:func:`memmap_from_snapshot`): ``/proc/kpageflags`` classified by
  :func:`fragsim.parsers.classify` (the kinds ``fragsim inspect`` reports), free pages given the
  order of the largest aligned all-free block around them (:func:`infer_free_order`), pageblock
  types from a page_owner dump when the snapshot has one.

Both become a :class:`MemMap` (a :class:`MapKind` per pfn, a migratetype per pageblock).
:func:`render` turns it into an RGB array: one square cell per page when the pages fit
``max_cells`` (each pageblock a tile of 2^ceil(o/2) x 2^floor(o/2) pages, pfns left to right, then
down), otherwise one small tile per pageblock drawn as a stacked bar of its page kinds
(aggregated mode). :func:`memmap_figure` adds titles and a legend with matplotlib (optional
extra ``fragsim[plot]``) for a PNG; an HTML report embeds :func:`render`'s array directly.

A run stores maps of its machine as it goes (:func:`memmap_frame`, a kind per pfn or, past
:data:`FRAME_MAX_PAGES`, kind counts per pageblock, in the results database);
:func:`frame_memmap` turns a stored frame back into a :class:`MemMap`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt

from fragsim.mm import internal as I
from fragsim.mm.mmzone import (
    MAX_ORDER,
    MIGRATE_RECLAIMABLE,
    MIGRATETYPE_NAMES,
    PB_MIGRATETYPE_MASK,
)
from fragsim.mm.page import (
    PG_anon,
    PG_buddy,
    PG_lru,
    PG_movable,
    PG_nopage,
    PG_offline,
    PG_pcp,
    PG_reserved,
    PG_slab,
    PG_swapbacked,
    PG_table,
    PG_tail,
    PG_unevictable,
)
from fragsim.parsers.kpageflags import PageKind, classify

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fragsim.analysis.inspect import Snapshot
    from fragsim.mm.machine import Machine
    from fragsim.results import MemMapFrame

__all__ = [
    "FRAME_MAX_PAGES",
    "KIND_COLOURS",
    "KIND_LABELS",
    "MIGRATETYPE_COLOURS",
    "UNKNOWN_MIGRATETYPE",
    "LegendEntry",
    "MapKind",
    "MemMap",
    "Rendered",
    "classify_kpageflags",
    "classify_machine",
    "frame_memmap",
    "infer_free_order",
    "kind_counts",
    "legend",
    "map_notes",
    "memmap_figure",
    "memmap_frame",
    "memmap_from_machine",
    "memmap_from_snapshot",
    "render",
    "write_png",
]


class MapKind(IntEnum):
    """What one page frame holds, as a memory map colours it. ``FREE_0 + order`` is a free page
    in a buddy block of that order."""

    FREE_0 = 0
    FREE_1 = 1
    FREE_2 = 2
    FREE_3 = 3
    FREE_4 = 4
    FREE_5 = 5
    FREE_6 = 6
    FREE_7 = 7
    FREE_8 = 8
    FREE_9 = 9
    FREE_10 = 10
    LRU_ANON = 11
    LRU_FILE = 12
    UNEVICTABLE = 13
    """PG_unevictable (mlocked, ramfs, ...): on the unevictable LRU list."""
    COMPOUND = 14
    """kpageflags only: transparent huge pages and hugetlb pages (head and tails)."""
    SLAB_UNMOVABLE = 15
    SLAB_RECLAIMABLE = 16
    SLAB = 17
    """kpageflags only: a slab page whose cache (unmovable or reclaimable) is not recorded."""
    ZSMALLOC = 18
    BALLOON = 19
    """Balloon (PageOffline) pages."""
    DRIVER_MOVABLE = 20
    """Other non-LRU movable pages (PG_movable), e.g. a GPU driver's."""
    PGTABLE = 21
    RESERVED = 22
    OTHER_KERNEL = 23
    HOLE = 24
    """No struct page backs the pfn (pfn_valid() false), or the range past the end of memory."""


NR_MAP_KINDS: Final = len(MapKind)
FREE_KINDS: Final = tuple(MapKind(o) for o in range(MAX_ORDER))

KIND_LABELS: Final[dict[MapKind, str]] = {
    **{MapKind(o): f"free, order {o}" for o in range(MAX_ORDER)},
    MapKind.LRU_ANON: "LRU anon",
    MapKind.LRU_FILE: "LRU file",
    MapKind.UNEVICTABLE: "unevictable",
    MapKind.COMPOUND: "THP / hugetlb",
    MapKind.SLAB_UNMOVABLE: "slab, unmovable",
    MapKind.SLAB_RECLAIMABLE: "slab, reclaimable",
    MapKind.SLAB: "slab",
    MapKind.ZSMALLOC: "zsmalloc",
    MapKind.BALLOON: "balloon / offline",
    MapKind.DRIVER_MOVABLE: "driver movable",
    MapKind.PGTABLE: "page tables",
    MapKind.RESERVED: "reserved",
    MapKind.OTHER_KERNEL: "other kernel",
    MapKind.HOLE: "hole (no page)",
}


def _grade(a: str, b: str, n: int) -> list[str]:
    """n colours from a to b (hex), evenly spaced."""
    ca = np.array([int(a[i : i + 2], 16) for i in (1, 3, 5)], float)
    cb = np.array([int(b[i : i + 2], 16) for i in (1, 3, 5)], float)
    return [
        "#" + "".join(f"{int(round(v)):02x}" for v in ca + (cb - ca) * i / (n - 1))
        for i in range(n)
    ]


#: Free pages are blues, darkest for order 0 (the most fragmented) and palest for order 10, so a
#: fragmented free area stands out from one large free block; used pages are warm or green.
KIND_COLOURS: Final[dict[MapKind, str]] = {
    **dict(zip(FREE_KINDS, _grade("#08306b", "#c6dbef", MAX_ORDER), strict=True)),
    MapKind.LRU_ANON: "#31a354",
    MapKind.LRU_FILE: "#a1d99b",
    MapKind.UNEVICTABLE: "#006d2c",
    MapKind.COMPOUND: "#66c2a4",
    MapKind.SLAB_UNMOVABLE: "#d62728",
    MapKind.SLAB_RECLAIMABLE: "#ff7f0e",
    MapKind.SLAB: "#e6550d",
    MapKind.ZSMALLOC: "#9467bd",
    MapKind.BALLOON: "#e377c2",
    MapKind.DRIVER_MOVABLE: "#bcbd22",
    MapKind.PGTABLE: "#8c564b",
    MapKind.RESERVED: "#525252",
    MapKind.OTHER_KERNEL: "#969696",
    MapKind.HOLE: "#000000",
}

UNKNOWN_MIGRATETYPE: Final = -1
#: Strip colours by MIGRATE_* (fragsim/mm/mmzone.py numbering), then "unknown".
MIGRATETYPE_COLOURS: Final[tuple[str, ...]] = (
    "#d62728",  # Unmovable
    "#2ca02c",  # Movable
    "#ff7f0e",  # Reclaimable
    "#7b4173",  # HighAtomic
    "#17becf",  # CMA
    "#000000",  # Isolate
    "#d9d9d9",  # unknown
)
_BACKGROUND: Final = "#ffffff"


def _rgb(hexes: Sequence[str]) -> npt.NDArray[np.uint8]:
    return np.array(
        [[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in hexes], dtype=np.uint8
    ).reshape(-1, 3)


_KIND_RGB: Final = _rgb([KIND_COLOURS[k] for k in MapKind])
_MT_RGB: Final = _rgb(MIGRATETYPE_COLOURS)
_BG_RGB: Final = _rgb([_BACKGROUND])[0]


# --------------------------------------------------------------------------------------------
# The data


@dataclass(frozen=True, slots=True)
class MemMap:
    """What a memory map shows: a :class:`MapKind` per pfn (from pfn 0) and a migratetype per
    pageblock (``MIGRATE_*``, or :data:`UNKNOWN_MIGRATETYPE`)."""

    kinds: npt.NDArray[np.uint8]
    pageblock_order: int
    pageblock_mt: npt.NDArray[np.int8]
    source: str
    """What was mapped: a machine profile or a snapshot directory."""
    driver_names: tuple[str, ...] = ()
    """Names of the drivers whose pages are :attr:`MapKind.DRIVER_MOVABLE`."""
    zones: tuple[tuple[str, int, int], ...] = ()
    """(name, start pfn, end pfn) of each populated zone."""
    notes: tuple[str, ...] = ()
    """How the kinds or migratetypes were derived, where it is not exact."""
    start_pfn: int = 0
    """The pfn of ``kinds[0]`` (a pageblock boundary; a stored run frame leaves out the pfns
    below the first zone)."""

    def counts(self) -> npt.NDArray[np.int64]:
        """Pages of every :class:`MapKind`, indexed by kind."""
        return np.bincount(self.kinds, minlength=NR_MAP_KINDS).astype(np.int64)

    def describe_zones(self) -> str | None:
        """``zones: DMA pfns 1-4095, ...`` (None when the zones are unknown)."""
        if not self.zones:
            return None
        return "zones: " + ", ".join(f"{n} pfns {a}-{b - 1}" for n, a, b in self.zones)

    def label(self, kind: MapKind) -> str:
        """The legend label of ``kind`` (driver names added to driver-movable pages)."""
        if kind is MapKind.DRIVER_MOVABLE and self.driver_names:
            return f"{KIND_LABELS[kind]} ({', '.join(self.driver_names)})"
        return KIND_LABELS[kind]


def kind_counts(kinds: npt.NDArray[np.uint8]) -> dict[MapKind, int]:
    """Pages of every kind present in ``kinds`` (kinds with no page left out)."""
    n = np.bincount(kinds, minlength=NR_MAP_KINDS)
    return {k: int(n[k]) for k in MapKind if n[k]}


# --------------------------------------------------------------------------------------------
# Classification of a simulated machine


def _driver_kind(ops: Any) -> MapKind:
    name = str(getattr(ops, "name", type(ops).__name__)).lower()
    if "zsmalloc" in name or name == "zs":
        return MapKind.ZSMALLOC
    if "balloon" in name:
        return MapKind.BALLOON
    return MapKind.DRIVER_MOVABLE


def _driver_name(ops: Any) -> str:
    return str(getattr(ops, "name", type(ops).__name__))


def classify_machine(m: Machine) -> npt.NDArray[np.uint8]:
    """The :class:`MapKind` of every pfn of a simulated machine, read from its ``mem_map``.

    Every block has its state on its first page: a free block is PG_buddy with its order, a
    block on a per-CPU list PG_pcp, an allocated block a head with a reference and its order,
    with the caller's PG_* flags on it. Each head's kind covers its whole 2^order block. Rules on
    the head, first match wins (the order of :func:`fragsim.parsers.classify`):
    PG_nopage -> hole; PG_buddy -> free of its order; PG_pcp -> free, order 0 (a per-CPU page
    cannot merge until drained); PG_offline -> balloon; PG_reserved -> reserved; PG_movable ->
    the driver's kind by its ``name`` (zsmalloc, balloon, else driver movable); PG_slab -> slab,
    reclaimable when the page's cached migratetype is MIGRATE_RECLAIMABLE (the allocation's
    migratetype, ``set_pcppage_migratetype``), else unmovable; PG_table -> page tables;
    PG_unevictable -> unevictable; PG_anon or PG_swapbacked -> LRU anon; PG_lru -> LRU file;
    anything else -> other kernel."""
    st = m.state
    flags = st.flags.astype(np.int64)
    n = flags.size
    pfn = np.arange(n, dtype=np.int64)

    def has(bits: int) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = (flags & bits) != 0
        return out

    special = has(PG_reserved | PG_nopage)
    head = (has(PG_buddy | PG_pcp) | special | (st.refcount > 0)) & ~has(PG_tail)
    order = np.where(special, 0, np.clip(st.order.astype(np.int64), 0, MAX_ORDER - 1))
    last = np.maximum.accumulate(np.where(head, pfn, -1))
    covered = (last >= 0) & (pfn < np.maximum(last, 0) + (1 << order[np.maximum(last, 0)]))

    lut = np.array(
        [MapKind.DRIVER_MOVABLE] + [_driver_kind(ops) for ops in m.movable_ops], np.uint8
    )
    mops = np.clip(st.mops.astype(np.int64), 0, lut.size - 1)
    reclaimable = st.pcpmt.astype(np.int64) == MIGRATE_RECLAIMABLE
    conds = [
        has(PG_nopage),
        has(PG_buddy),
        has(PG_pcp),
        has(PG_offline),
        has(PG_reserved),
        has(PG_movable),
        has(PG_slab) & reclaimable,
        has(PG_slab),
        has(PG_table),
        has(PG_unevictable),
        has(PG_anon | PG_swapbacked),
        has(PG_lru),
    ]
    choices = [
        np.full(n, MapKind.HOLE),
        MapKind.FREE_0 + order,
        np.full(n, MapKind.FREE_0),
        np.full(n, MapKind.BALLOON),
        np.full(n, MapKind.RESERVED),
        lut[mops].astype(np.int64),
        np.full(n, MapKind.SLAB_RECLAIMABLE),
        np.full(n, MapKind.SLAB_UNMOVABLE),
        np.full(n, MapKind.PGTABLE),
        np.full(n, MapKind.UNEVICTABLE),
        np.full(n, MapKind.LRU_ANON),
        np.full(n, MapKind.LRU_FILE),
    ]
    head_kind = np.select(conds, choices, default=MapKind.OTHER_KERNEL).astype(np.uint8)
    out = np.full(n, MapKind.OTHER_KERNEL, np.uint8)
    out[covered] = head_kind[last[covered]]
    return out


def memmap_from_machine(m: Machine, source: str | None = None) -> MemMap:
    """The memory map of a simulated machine, now."""
    st = m.state
    names = []
    for i, ops in enumerate(m.movable_ops):
        if _driver_kind(ops) is MapKind.DRIVER_MOVABLE and np.any(st.mops == i + 1):
            names.append(_driver_name(ops))
    zones = tuple(
        (m.zone_name(z), int(st.zs[z, I.ZF_START]), int(st.zs[z, I.ZF_END]))
        for z in m.populated_zones()
    )
    # get_pageblock_migratetype(): the low bits of the pageblock bitmap
    mt = (st.pb & PB_MIGRATETYPE_MASK).astype(np.int8)
    return MemMap(
        kinds=classify_machine(m),
        pageblock_order=int(m.pageblock_order),
        pageblock_mt=mt,
        source=source or f"simulated {m.profile.name}",
        driver_names=tuple(sorted(set(names))),
        zones=zones,
    )


# --------------------------------------------------------------------------------------------
# Classification of a real snapshot (kpageflags)

_FROM_PAGEKIND: Final[dict[PageKind, MapKind]] = {
    PageKind.NOPAGE: MapKind.HOLE,
    PageKind.BUDDY: MapKind.FREE_0,  # then by infer_free_order
    PageKind.RESERVED: MapKind.RESERVED,
    PageKind.SLAB: MapKind.SLAB,
    PageKind.PGTABLE: MapKind.PGTABLE,
    PageKind.OFFLINE: MapKind.BALLOON,
    PageKind.ZSMALLOC: MapKind.ZSMALLOC,
    PageKind.LRU_ANON: MapKind.LRU_ANON,
    PageKind.LRU_FILE: MapKind.LRU_FILE,
    PageKind.UNEVICTABLE: MapKind.UNEVICTABLE,
    PageKind.COMPOUND: MapKind.COMPOUND,
    PageKind.OTHER_KERNEL: MapKind.OTHER_KERNEL,
}
_PAGEKIND_LUT: Final = np.array(
    [_FROM_PAGEKIND[PageKind(v)] for v in range(max(PageKind) + 1)], np.uint8
)


def infer_free_order(free: npt.NDArray[np.bool_]) -> npt.NDArray[np.int8]:
    """For each free pfn, the order of the largest naturally aligned block of free pfns that
    holds it (at most MAX_ORDER - 1); -1 for pfns not free. Buddies merge whenever both halves
    are free, so this is the buddy order except where the kernel declined a merge (isolated or
    CMA pageblocks) or the snapshot caught a merge half done."""
    f = np.asarray(free, dtype=bool)
    top = 1 << (MAX_ORDER - 1)
    padded = np.zeros(-(-f.size // top) * top, bool)
    padded[: f.size] = f
    out = np.where(padded, 0, -1).astype(np.int8)
    for order in range(1, MAX_ORDER):
        size = 1 << order
        whole = np.repeat(padded.reshape(-1, size).all(axis=1), size)
        out[whole] = order
    return out[: f.size]


def classify_kpageflags(
    flags: npt.NDArray[np.uint64], counts: npt.NDArray[np.uint64] | None = None
) -> npt.NDArray[np.uint8]:
    """The :class:`MapKind` of every pfn of a kpageflags dump: :func:`fragsim.parsers.classify`'s
    kinds, free pages by :func:`infer_free_order`. Free pages on per-CPU lists carry no flag in
    kpageflags and show as other kernel pages."""
    pk = classify(flags, counts)
    kinds = _PAGEKIND_LUT[pk]
    free = pk == PageKind.BUDDY
    kinds[free] = (MapKind.FREE_0 + infer_free_order(free)[free]).astype(np.uint8)
    return kinds


def memmap_from_snapshot(snap: Snapshot) -> MemMap:
    """The memory map of a snapshot with kpageflags (``fragsim snapshot``). Pageblock types
    come from the page_owner dump when there is one (blocks with no record stay unknown)."""
    from fragsim.analysis.inspect import PAGEBLOCK_ORDER_DEFAULT
    from fragsim.errors import FragsimError

    if snap.kpageflags is None:
        raise FragsimError(
            f"{snap.path}: no kpageflags in the snapshot (it needs root: 'sudo fragsim snapshot')"
        )
    kinds = classify_kpageflags(snap.kpageflags, snap.kpagecount)
    pti = snap.pagetypeinfo
    pbo = pti.pageblock_order if pti is not None else PAGEBLOCK_ORDER_DEFAULT
    notes = [
        "free pages: buddy order inferred from the largest aligned all-free block "
        "(kpageflags marks free pages, not their order)",
        "free pages on per-CPU lists carry no flag and show as other kernel pages",
    ]
    if pti is None:
        notes.append(f"no pagetypeinfo: pageblock order taken as {pbo}")
    nblocks = -(-kinds.size // (1 << pbo))
    mt = np.full(nblocks, UNKNOWN_MIGRATETYPE, np.int8)
    if snap.page_owner:
        index = {name: i for i, name in enumerate(MIGRATETYPE_NAMES)}
        for r in snap.page_owner:
            if 0 <= r.block < nblocks and r.block_migratetype in index:
                mt[r.block] = index[r.block_migratetype]
        notes.append("pageblock types from page_owner (blocks without a record: unknown)")
    else:
        notes.append("pageblock types unknown: kpageflags has none (a page_owner dump would)")
    zones = tuple(
        (z.zone, z.start_pfn, z.start_pfn + z.spanned)
        for z in snap.zoneinfo or []
        if z.populated and z.start_pfn is not None
    )
    return MemMap(
        kinds=kinds,
        pageblock_order=pbo,
        pageblock_mt=mt,
        source=snap.path,
        zones=zones,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True, slots=True)
class Rendered:
    """A memory map drawn as pixels."""

    rgb: npt.NDArray[np.uint8]
    """(height, width, 3)."""
    mode: Literal["page", "pageblock"]
    """``page``: one cell per page; ``pageblock``: one stacked-bar tile per pageblock."""
    cell: int
    """Pixels per page side (page mode) or tile side (pageblock mode)."""
    columns: int
    """Pageblocks per row."""
    pageblock_order: int

    def describe(self) -> str:
        """One sentence saying how to read the image (for a legend)."""
        pb = 1 << self.pageblock_order
        strip = "the strip above each pageblock is its migratetype"
        if self.mode == "page":
            w, h = _tile_shape(self.pageblock_order)
            px = f"{self.cell}x{self.cell} pixels" if self.cell > 1 else "one pixel"
            return (
                f"one cell ({px}) per page; each pageblock ({pb} pages, order "
                f"{self.pageblock_order}) is a {w}x{h} tile, pfns left to right then down, "
                f"{self.columns} pageblocks per row; {strip}"
            )
        return (
            f"aggregated (more pages than pixels): each pageblock ({pb} pages) is one "
            f"{self.cell}x{self.cell} tile showing its page kinds as a stacked bar, top to "
            f"bottom in legend order, {self.columns} pageblocks per row; {strip}"
        )


def _tile_shape(pageblock_order: int) -> tuple[int, int]:
    """(width, height) in pages of one pageblock tile."""
    return 1 << ((pageblock_order + 1) // 2), 1 << (pageblock_order // 2)


def _columns(nblocks: int, tile_w: int, tile_h: int, aspect: float = 1.5) -> int:
    """Pageblocks per row that make the image about ``aspect`` times as wide as high."""
    c = math.sqrt(max(nblocks, 1) * aspect * tile_h / tile_w)
    return max(1, min(nblocks, int(round(c))))


def render(
    mm: MemMap,
    *,
    mode: Literal["auto", "page", "pageblock"] = "auto",
    max_cells: int = 1 << 20,
    target_pixels: int = 600_000,
    columns: int | None = None,
) -> Rendered:
    """Draw ``mm``: one cell per page when ``mode`` is ``page`` (or ``auto`` with at most
    ``max_cells`` pages), else one stacked-bar tile per pageblock. Cells are scaled up to about
    ``target_pixels`` (at most 8 pixels a side). Pageblocks are separated by a one-pixel
    background line, with their migratetype strip above."""
    pbo = mm.pageblock_order
    per = 1 << pbo
    npages = mm.kinds.size
    nb = max(1, -(-npages // per))
    if mode == "auto":
        mode = "page" if npages <= max_cells else "pageblock"
    gap = 1
    kinds = np.full(nb * per, NR_MAP_KINDS, np.uint8)  # past the end: background
    kinds[:npages] = mm.kinds
    palette = np.vstack([_KIND_RGB, _BG_RGB])
    mt = np.full(nb, UNKNOWN_MIGRATETYPE, np.int64)
    k = min(nb, mm.pageblock_mt.size)
    mt[:k] = mm.pageblock_mt[:k]
    strip_rgb = _MT_RGB[np.where((mt >= 0) & (mt < len(MIGRATETYPE_NAMES)), mt, -1)]

    if mode == "page":
        tw, th = _tile_shape(pbo)
        cell = int(max(1, min(8, math.isqrt(max(1, target_pixels // max(npages, 1))))))
        cells = palette[kinds.reshape(nb, th, tw)]
        cells = np.repeat(np.repeat(cells, cell, axis=1), cell, axis=2)
    elif mode == "pageblock":
        cell = 8 if nb <= 1 << 15 else 4 if nb <= 1 << 17 else 2
        th = tw = cell
        # stacked bar: pixel j of a tile shows the kind at quantile (j + 1/2) / cell^2 of the
        # block's pages sorted by kind
        nk = NR_MAP_KINDS + 1
        flat = np.repeat(np.arange(nb, dtype=np.int64) * nk, per) + kinds
        cnt = np.bincount(flat, minlength=nb * nk).reshape(nb, nk)
        cum = np.cumsum(cnt, axis=1)
        q = (np.arange(cell * cell) + 0.5) * per / (cell * cell)
        off = np.arange(nb)[:, None] * (per + 1)
        idx = np.searchsorted((cum + off).ravel(), (q[None, :] + off).ravel(), side="right")
        bar = idx.reshape(nb, -1) - np.arange(nb)[:, None] * cnt.shape[1]
        cells = palette[np.minimum(bar, NR_MAP_KINDS).reshape(nb, cell, cell)]
        cell = th
    else:
        raise ValueError(f"mode must be 'auto', 'page' or 'pageblock', not {mode!r}")

    ph, pw = cells.shape[1], cells.shape[2]
    strip = max(2, min(4, ph // 8))
    tile = np.empty((nb, strip + ph + gap, pw + gap, 3), np.uint8)
    tile[...] = _BG_RGB
    tile[:, :strip, :pw] = strip_rgb[:, None, None, :]
    tile[:, strip : strip + ph, :pw] = cells
    if mode == "page":
        cols = columns or _columns(nb, tw, th)
    else:
        cols = columns or _columns(nb, 1, 1)
    rows = -(-nb // cols)
    grid = np.empty((rows * cols, *tile.shape[1:]), np.uint8)
    grid[...] = _BG_RGB
    grid[:nb] = tile
    img = grid.reshape(rows, cols, *tile.shape[1:]).transpose(0, 2, 1, 3, 4)
    img = img.reshape(rows * tile.shape[1], cols * tile.shape[2], 3)
    out = np.empty((img.shape[0] + gap, img.shape[1] + gap, 3), np.uint8)
    out[...] = _BG_RGB
    out[gap:, gap:] = img
    return Rendered(rgb=out, mode=mode, cell=cell, columns=cols, pageblock_order=pbo)


# --------------------------------------------------------------------------------------------
# Legend and figure


@dataclass(frozen=True, slots=True)
class LegendEntry:
    """One legend line: a colour, its label, and the pages (or pageblocks) of each map."""

    label: str
    colour: str
    counts: tuple[int, ...]
    unit: Literal["pages", "pageblocks"]


def legend(maps: Sequence[MemMap]) -> list[LegendEntry]:
    """The kinds present in any of ``maps`` (pages of each), then the pageblock migratetypes
    present (pageblocks of each)."""
    counts = [m.counts() for m in maps]
    out = []
    for k in MapKind:
        c = tuple(int(x[k]) for x in counts)
        if any(c):
            out.append(LegendEntry(maps[0].label(k), KIND_COLOURS[k], c, "pages"))
    names = (*MIGRATETYPE_NAMES, "unknown")
    mts = [np.bincount(np.where(m.pageblock_mt < 0, 6, m.pageblock_mt), minlength=7) for m in maps]
    for i, name in enumerate(names):
        c = tuple(int(x[i]) for x in mts)
        if any(c):
            out.append(LegendEntry(f"pageblock: {name}", MIGRATETYPE_COLOURS[i], c, "pageblocks"))
    return out


def memmap_figure(
    maps: Sequence[MemMap],
    titles: Sequence[str] | None = None,
    *,
    mode: Literal["auto", "page", "pageblock"] = "auto",
    max_cells: int = 1 << 20,
) -> Figure:
    """A matplotlib figure of one or more memory maps side by side (e.g. before and after
    compaction), drawn pixel for pixel, with titles and one legend (kinds with their page
    counts per map, pageblock migratetypes, and how to read the image)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError as exc:
        from fragsim.errors import FragsimError

        raise FragsimError(
            f"a memory-map PNG needs matplotlib ({exc}): pip install 'fragsim[plot]'"
        ) from None

    if not maps:
        raise ValueError("memmap_figure needs at least one map")
    titles = list(titles) if titles is not None else [m.source for m in maps]
    if len(titles) != len(maps):
        raise ValueError(f"{len(titles)} titles for {len(maps)} maps")
    rendered = [render(m, mode=mode, max_cells=max_cells) for m in maps]
    entries = legend(maps)
    dpi = 100
    pad, title_h, line = 12, 28, 17
    col = 90  # legend count columns, pixels
    legend_w = 250 + col * len(maps) + 20
    heads = [_wrap(t, 13) for t in titles] if len(maps) > 1 else []
    head_lines = max((len(h) for h in heads), default=0)
    maps_w = sum(r.rgb.shape[1] for r in rendered) + pad * (len(maps) - 1)
    maps_h = max(r.rgb.shape[0] for r in rendered)
    desc = rendered[0].describe()
    notes = [desc, *map_notes(maps)]
    wrap = max(40, legend_w // 7)
    note_lines = sum(len(_wrap(n, wrap)) for n in notes)
    legend_h = (len(entries) + 2 + head_lines) * line + (note_lines + len(notes)) * 13
    width = pad + maps_w + pad + legend_w + pad
    height = pad + title_h + max(maps_h, legend_h) + pad
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")

    def at(x: float, y: float) -> tuple[float, float]:
        """Figure fraction of pixel (x, y) counted from the top left."""
        return x / width, 1 - y / height

    x = pad
    for r, t in zip(rendered, titles, strict=True):
        h, w = r.rgb.shape[:2]
        fig.figimage(r.rgb, xo=x, yo=height - pad - title_h - h, origin="upper")
        fig.text(*at(x, pad + title_h - 8), t, fontsize=11, weight="bold", va="bottom")
        x += w + pad
    lx = pad + maps_w + pad
    y = pad + title_h
    for i, h in enumerate(heads):
        fig.text(*at(lx + 250 + col * i, y - 6), "\n".join(h), fontsize=8, ha="right", va="top")
    y += line * head_lines
    for e in entries:
        fig.add_artist(
            Rectangle(
                at(lx, y + 6),
                12 / width,
                12 / height,
                facecolor=e.colour,
                edgecolor="k",
                linewidth=0.3,
                transform=fig.transFigure,
            )
        )
        fig.text(*at(lx + 18, y), e.label, fontsize=8.5, va="center")
        for i, c in enumerate(e.counts):
            fig.text(*at(lx + 250 + col * i, y), f"{c}", fontsize=8.5, ha="right", va="center")
        y += line
    y += 6
    for n in notes:
        for ln in _wrap(n, wrap):
            fig.text(*at(lx, y), ln, fontsize=7.5, va="center", color="#333333")
            y += 13
        y += 6
    return fig


def map_notes(maps: Sequence[MemMap]) -> list[str]:
    """The notes of ``maps`` and their zones, each once."""
    zones = (m.describe_zones() for m in maps)
    return list(dict.fromkeys([*(z for z in zones if z), *(n for m in maps for n in m.notes)]))


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def write_png(
    path: str | os.PathLike[str],
    maps: Sequence[MemMap],
    titles: Sequence[str] | None = None,
    *,
    mode: Literal["auto", "page", "pageblock"] = "auto",
) -> None:
    """Write :func:`memmap_figure` of ``maps`` as a PNG file."""
    fig = memmap_figure(maps, titles, mode=mode)
    fig.savefig(os.fspath(path), dpi=fig.dpi, format="png")


# --------------------------------------------------------------------------------------------
# Memory maps through a run (stored in the results database)

#: machines with more pages than this store per-pageblock kind counts, not a kind per page (the
#: same size at which :func:`render` switches to drawing pageblocks, so the picture is the same)
FRAME_MAX_PAGES: Final = 1 << 20


def memmap_frame(m: Machine, t_ns: int, *, max_pages: int = FRAME_MAX_PAGES) -> MemMapFrame:
    """The memory map of a simulated machine now, in the compact form a run stores
    (:class:`fragsim.results.MemMapFrame`): a kind per pfn from the first zone's pageblock on
    (``info["start_pfn"]``), or, for machines of more than ``max_pages`` pages, the pages of
    each kind per pageblock."""
    from fragsim.results import MemMapFrame

    mm = memmap_from_machine(m)
    pbo = mm.pageblock_order
    per = 1 << pbo
    # the pfns below the first zone hold no memory (an ARM machine's RAM starts at 1 or 2 GiB):
    # leave them out, from a pageblock boundary
    start = min((a for _, a, _ in mm.zones), default=0) // per * per
    info: dict[str, Any] = {"source": mm.source, "zones": [list(z) for z in mm.zones]}
    if start:
        info["start_pfn"] = start
    if mm.driver_names:
        info["driver_names"] = list(mm.driver_names)
    names = tuple(k.name for k in MapKind)
    kinds = mm.kinds[start:]
    npages = int(kinds.size)
    nb = -(-npages // per)
    mt = mm.pageblock_mt[start >> pbo :][:nb].astype(np.int8)
    if npages <= max_pages:
        return MemMapFrame(t_ns, "page", npages, pbo, names, kinds.copy(), mt, info)
    block = np.arange(npages, dtype=np.int64) >> pbo
    counts = np.bincount(block * NR_MAP_KINDS + kinds, minlength=nb * NR_MAP_KINDS)
    return MemMapFrame(
        t_ns,
        "pageblock",
        npages,
        pbo,
        names,
        counts.reshape(nb, NR_MAP_KINDS).astype(np.uint32),
        mt,
        info,
    )


def frame_memmap(f: MemMapFrame) -> MemMap:
    """The :class:`MemMap` of a stored frame. Kinds are matched by name (a kind this fragsim
    does not know becomes other kernel pages). A per-pageblock frame gives each pageblock its
    pages sorted by kind: exact in pageblock mode, which is how :func:`render` draws maps that
    big."""
    lut = np.array(
        [MapKind[n] if n in MapKind.__members__ else MapKind.OTHER_KERNEL for n in f.kinds],
        np.uint8,
    )
    notes: tuple[str, ...] = ()
    if f.resolution == "page":
        kinds = lut[f.data]
    else:
        counts = f.data.astype(np.int64)
        if int(counts.sum()) != f.npages:
            from fragsim.errors import FragsimError

            raise FragsimError(
                f"memory-map frame at {f.t_ns} ns: its pageblock counts add up to "
                f"{int(counts.sum())} pages, not {f.npages}"
            )
        kinds = np.repeat(np.tile(lut, counts.shape[0]), counts.ravel())
        notes = ("recorded per pageblock (pages of each kind), not per page",)
    zones = tuple((str(n), int(a), int(b)) for n, a, b in f.info.get("zones", []))
    start = int(f.info.get("start_pfn", 0))
    if start:
        notes += (f"pfns 0-{start - 1} (below the first zone, no memory) are not drawn",)
    return MemMap(
        kinds=kinds.astype(np.uint8),
        pageblock_order=f.pageblock_order,
        pageblock_mt=f.pageblock_mt.astype(np.int8),
        source=str(f.info.get("source", "simulated machine")),
        driver_names=tuple(f.info.get("driver_names", ())),
        zones=zones,
        notes=notes,
        start_pfn=start,
    )
