"""Load a real machine's page-level snapshot into the simulator and ask "what if these pages were
movable?" (``fragsim whatif``). Models nothing new in the kernel: it builds the snapshot's state
with the machine's own mechanisms and runs 6.1's ``compact_memory`` (mm/compaction.c) on it.

Loading (:func:`load_machine`), from a snapshot directory with ``zoneinfo`` and ``kpageflags``:

1. The machine's layout comes from zoneinfo (nodes, zone types in the kernel's order, each
   populated zone's ``start_pfn`` and ``spanned``), with kpageflags' ``NOPAGE`` runs as holes
   and its ``RESERVED`` runs as memblock-reserved ranges; ``pageblock_order`` from pagetypeinfo
   (else 9), the number of CPUs from zoneinfo's pagesets, ``min_free_kbytes``,
   ``compact_unevictable_allowed``, ``extfrag_threshold`` and ``compaction_proactiveness`` from
   ``vm_sysctl`` when captured. It boots as any profile does (everything else free).
2. Every other pfn is classified as ``fragsim inspect`` does it (:func:`fragsim.parsers.classify`)
   and each allocated page is placed at its pfn with :func:`fragsim.mm.page_alloc.place_blocks`
   (``take_page_off_buddy`` of mm/page_alloc.c, generalised to a block), then given what its kind
   has in the kernel: LRU pages go on their LRU list (anon/file/unevictable, active when
   kpageflags says so), slab pages get PG_slab, page tables PG_table, balloon pages PG_offline,
   transparent/hugetlb huge pages become compound blocks of their order (6.1's compaction skips
   them). A kind named in ``movable`` becomes non-LRU movable (``__SetPageMovable`` with a
   movable_operations whose compiled policy always migrates): the kernel with that kind movable.
   Every page has one owner handle, so its kind follows it when compaction moves it.
3. Pageblock migratetypes (kpageflags has none). Rule: a pageblock's *unmovable weight* is its
   number of slab, page-table and other-kernel pages (reserved pages do not count: memmap_init
   leaves their blocks MOVABLE). With pagetypeinfo, in each zone the ``Unmovable + Reclaimable +
   HighAtomic`` blocks with the highest weight (ties: lower pfn first) get those types, in that
   order of weight after sorting by slab share for Reclaimable (the reclaimable caches are slab),
   and the rest are Movable, so the per-type counts equal pagetypeinfo's (Isolate and CMA blocks
   are counted as Movable: fragsim does not model isolation here). Without pagetypeinfo a block is
   Unmovable when its weight exceeds its movable pages (LRU, THP, zsmalloc, balloon), else Movable.
   Free blocks are then moved to their pageblock's list (``move_freepages_block``).

SIMPLIFICATIONS (also in docs/design.md):

* Free pages on per-CPU lists have no kpageflags bit: they are placed as allocated "other kernel"
  pages (compaction cannot move either). So the placed free blocks equal buddyinfo where the
  snapshot was quiet; the difference per order is reported.
* Compound pages other than THP/hugetlb (large kmalloc, multi-page slabs) are placed as order-0
  pages (they are obstacles either way); kinds made movable are order-0 pages, as the kernel's
  non-LRU movable pages are.
* A slab page's cache is unknown, so "slab movable" makes every slab page movable.
* After ``compact_memory`` the per-CPU lists are drained (``drain_all_pages``) before the report,
  as the next drain would do: 6.1's compact_memory leaves the freed pages there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fragsim.analysis.inspect import (
    KIND_NAMES,
    BlockObstacles,
    Snapshot,
    block_obstacles,
    load_snapshot,
    movable_kinds,
)
from fragsim.errors import FragsimError
from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE
from fragsim.mm.mmzone import (
    MAX_ORDER,
    MIGRATE_HIGHATOMIC,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
)
from fragsim.mm.page import (
    PG_active,
    PG_anon,
    PG_dirty,
    PG_lru,
    PG_mapped,
    PG_mlocked,
    PG_offline,
    PG_slab,
    PG_swapbacked,
    PG_table,
    PG_unevictable,
)
from fragsim.parsers import PageKind, classify
from fragsim.parsers.kpageflags import (
    KPF_ACTIVE,
    KPF_ANON,
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_DIRTY,
    KPF_MLOCKED,
    KPF_MMAP,
    KPF_SWAPBACKED,
)
from fragsim.profiles import MachineProfile, NodeSpec, ZoneSpec

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = [
    "KIND_ALIASES",
    "LoadedSnapshot",
    "WhatifReport",
    "add_whatif_parser",
    "cmd_whatif",
    "format_whatif",
    "load_machine",
    "machine_kinds",
    "parse_kinds",
    "profile_from_snapshot",
    "whatif",
]

#: ``--movable`` names: PageKind names as ``inspect`` prints them (lower case), and aliases
KIND_ALIASES: dict[str, PageKind] = {k.name.lower(): k for k in PageKind}
KIND_ALIASES.update(
    {
        "balloon": PageKind.OFFLINE,
        "offline/balloon": PageKind.OFFLINE,
        "balloon/offline": PageKind.OFFLINE,
        "page tables": PageKind.PGTABLE,
        "other kernel": PageKind.OTHER_KERNEL,
        "unknown kernel": PageKind.OTHER_KERNEL,
        "pagetable": PageKind.PGTABLE,
        "page-table": PageKind.PGTABLE,
        "kernel": PageKind.OTHER_KERNEL,
        "other": PageKind.OTHER_KERNEL,
        "unknown": PageKind.OTHER_KERNEL,
        "unknown-kernel": PageKind.OTHER_KERNEL,
        "unknown_kernel": PageKind.OTHER_KERNEL,
        "thp": PageKind.COMPOUND,
    }
)
#: kinds that ``--movable`` can switch (the others are free, holes, reserved, or always movable)
SWITCHABLE = (
    PageKind.ZSMALLOC,
    PageKind.OFFLINE,
    PageKind.SLAB,
    PageKind.PGTABLE,
    PageKind.OTHER_KERNEL,
)
_ALWAYS_MOVABLE = (PageKind.LRU_ANON, PageKind.LRU_FILE, PageKind.UNEVICTABLE)


def parse_kinds(text: str) -> frozenset[PageKind]:
    """``--movable`` value: comma-separated kind names (``none`` for no kind). LRU kinds are
    accepted and change nothing (they are movable anyway); free pages, holes, reserved pages and
    compound pages cannot be made movable (6.1's compaction skips compound pages)."""
    out: set[PageKind] = set()
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name or name == "none":
            continue
        k = KIND_ALIASES.get(name)
        if k is None:
            known = ", ".join(sorted({k.name.lower() for k in SWITCHABLE} | {"balloon", "none"}))
            raise FragsimError(f"--movable: unknown page kind {raw.strip()!r}; known: {known}")
        if k in _ALWAYS_MOVABLE:
            continue
        if k not in SWITCHABLE:
            raise FragsimError(
                f"--movable: {name!r} pages cannot be made movable (free pages, holes, reserved "
                "pages and compound/THP pages, which 6.1's compaction skips whole)"
            )
        out.add(k)
    return frozenset(out)


def _kinds_label(kinds: frozenset[PageKind]) -> str:
    return ",".join(k.name.lower() for k in sorted(kinds)) or "none"


# --------------------------------------------------------------------------------------------
# The machine's layout


def _runs(mask: npt.NDArray[np.bool_], lo: int, hi: int) -> list[tuple[int, int]]:
    """[a, b) runs of True in mask[lo:hi], as pfns."""
    m = mask[lo:hi].astype(np.int8)
    if m.size == 0:
        return []
    edges = np.flatnonzero(np.diff(np.r_[0, m, 0]))
    return [(lo + int(a), lo + int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


def _require(snap: Snapshot, what: str) -> tuple[npt.NDArray[np.uint64], list[Any]]:
    if snap.kpageflags is None:
        why = snap.skipped.get("kpageflags")
        raise FragsimError(
            f"{snap.path}: {what} needs kpageflags (a copy of /proc/kpageflags, raw or .gz; "
            "'fragsim snapshot' captures it as root)"
            + (f"; the capture skipped it: {why}" if why else "")
        )
    if snap.zoneinfo is None or not any(
        z.populated and z.start_pfn is not None for z in snap.zoneinfo
    ):
        raise FragsimError(
            f"{snap.path}: {what} needs zoneinfo with start_pfn lines (a copy of /proc/zoneinfo): "
            "the zones' pfn ranges make the machine's layout"
        )
    return snap.kpageflags, snap.zoneinfo


def profile_from_snapshot(snap: Snapshot) -> MachineProfile:
    """A machine profile with the snapshot's layout (see the module docstring, step 1)."""
    flags, zoneinfo = _require(snap, "loading a snapshot")
    kinds = classify(flags, snap.kpagecount)
    nodes_n = max(z.node for z in zoneinfo) + 1
    zone_types = tuple(z.zone for z in zoneinfo if z.node == 0)
    nopage = kinds == PageKind.NOPAGE
    reserved = kinds == PageKind.RESERVED
    nodes = []
    for nid in range(nodes_n):
        specs, holes, res = [], [], []
        for z in zoneinfo:
            if z.node != nid or not z.populated or z.start_pfn is None:
                continue
            a, b = z.start_pfn, z.start_pfn + z.spanned
            specs.append(ZoneSpec(z.zone, a, b))
            top = min(b, kinds.size)
            holes += _runs(nopage, a, top)
            if top < b:
                holes.append((top, b))  # beyond the dump: unknown, kept out of the machine
            res += _runs(reserved, a, top)
        nodes.append(NodeSpec(zones=tuple(specs), holes=tuple(holes), reserved=tuple(res)))
    pti = snap.pagetypeinfo
    first = next(z for z in zoneinfo if z.populated)
    nr_cpus = max(1, len(first.pagesets))
    mfk = snap.vm_sysctl.get("min_free_kbytes")
    return MachineProfile(
        name=f"snapshot:{os.path.basename(os.path.normpath(snap.path))}",
        nodes=tuple(nodes),
        zone_types=zone_types,
        pageblock_order=pti.pageblock_order if pti is not None else 9,
        nr_cpus=nr_cpus,
        config_zone_dma32="DMA32" in zone_types,
        min_free_kbytes=int(mfk.split()[0]) if mfk else None,
    )


# --------------------------------------------------------------------------------------------
# Pageblock types


_UNMOV_WEIGHT = (PageKind.SLAB, PageKind.PGTABLE, PageKind.OTHER_KERNEL)
_MOV_WEIGHT = (
    PageKind.LRU_ANON,
    PageKind.LRU_FILE,
    PageKind.UNEVICTABLE,
    PageKind.COMPOUND,
    PageKind.ZSMALLOC,
    PageKind.OFFLINE,
)


def infer_pageblock_types(
    kinds: npt.NDArray[np.uint8],
    start_pfn: int,
    end_pfn: int,
    pageblock_order: int,
    counts: dict[str, int] | None,
) -> dict[int, int]:
    """Pageblock index -> migratetype for the blocks pagetypeinfo counts in one zone (every
    ``pageblock_nr_pages`` from ``zone_start_pfn``), by the rule of the module docstring."""
    size = 1 << pageblock_order
    blocks = [pfn >> pageblock_order for pfn in range(start_pfn, end_pfn, size)]
    unmov = np.zeros(len(blocks), np.int64)
    slab = np.zeros(len(blocks), np.int64)
    mov = np.zeros(len(blocks), np.int64)
    for i, b in enumerate(blocks):
        k = kinds[b * size : min((b + 1) * size, kinds.size)]
        unmov[i] = np.isin(k, _UNMOV_WEIGHT).sum()
        slab[i] = (k == PageKind.SLAB).sum()
        mov[i] = np.isin(k, _MOV_WEIGHT).sum()
    out = {b: MIGRATE_MOVABLE for b in blocks}
    if counts is None:
        for i, b in enumerate(blocks):
            if unmov[i] > mov[i]:
                out[b] = MIGRATE_UNMOVABLE
        return out
    n_u = counts.get("Unmovable", 0)
    n_r = counts.get("Reclaimable", 0)
    n_h = counts.get("HighAtomic", 0)
    w, sl = unmov.tolist(), slab.tolist()
    ranked = sorted(range(len(blocks)), key=lambda i: (-w[i], blocks[i]))
    chosen = ranked[: n_u + n_r + n_h]
    # Reclaimable: the chosen blocks with the highest slab share; HighAtomic: the lightest of the
    # others (atomic high-order allocations are few); Unmovable: the rest
    by_slab = sorted(chosen, key=lambda i: (-(sl[i] / max(w[i], 1)), blocks[i]))
    recl = set(by_slab[:n_r])
    rest = [i for i in chosen if i not in recl]
    high = set(rest[len(rest) - n_h :]) if n_h else set()
    for i in chosen:
        out[blocks[i]] = (
            MIGRATE_RECLAIMABLE
            if i in recl
            else MIGRATE_HIGHATOMIC
            if i in high
            else MIGRATE_UNMOVABLE
        )
    return out


# --------------------------------------------------------------------------------------------
# Loading


class SnapshotPages:
    """The movable_operations of a page kind made movable (``--movable``): a compiled policy
    that always isolates and migrates, so compaction moves the page and its owner handle."""

    def __init__(self, kind: PageKind) -> None:
        from fragsim.mm.migrate import CompiledPolicy

        self.name = f"snapshot-{kind.name.lower()}"
        self.policy = CompiledPolicy()

    def isolate_page(self, page: Any, mode: Any) -> bool:
        return True

    def migrate_page(self, dst: Any, src: Any, mode: Any) -> Any:
        from fragsim.mm.migrate import MigrateResult

        return MigrateResult.MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Any) -> None:
        return None


@dataclass
class LoadedSnapshot:
    """A machine holding a snapshot's pages (:func:`load_machine`)."""

    machine: Machine
    kinds: npt.NDArray[np.uint8]
    """The snapshot's kind per pfn (classify)."""
    handle_kind: npt.NDArray[np.uint8]
    """Kind of the pages each machine handle owns (a handle follows its page when it moves)."""
    movable: frozenset[PageKind]
    blocks_placed: int
    pageblock_types: dict[int, int]
    notes: list[str] = field(default_factory=list)


def _compound_orders(
    flags: npt.NDArray[np.uint64], heads: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Order of each compound head (its following tail pages + 1 as a power of two, aligned),
    -1 where it is not one."""
    tail = (flags & np.uint64(1 << KPF_COMPOUND_TAIL)) != 0
    out = np.full(heads.size, -1, np.int64)
    for i, h in enumerate(heads.tolist()):
        n = 1
        while h + n < tail.size and tail[h + n] and n < (1 << (MAX_ORDER - 1)):
            n += 1
        o = n.bit_length() - 1
        if (1 << o) == n and h % n == 0 and o > 0:
            out[i] = o
    return out


def load_machine(
    snap: Snapshot, movable: frozenset[PageKind] = frozenset(), *, debug: bool = False
) -> LoadedSnapshot:
    """Boot a machine with the snapshot's layout and place every allocated page of the
    snapshot at its pfn (module docstring)."""
    from fragsim.mm import page_alloc as pa
    from fragsim.mm.machine import Machine
    from fragsim.mm.migrate import SetPagesMovable

    flags, zoneinfo = _require(snap, "loading a snapshot")
    prof = profile_from_snapshot(snap)
    m = Machine(prof, debug=False)
    for name in ("compact_unevictable_allowed", "extfrag_threshold", "compaction_proactiveness"):
        raw = snap.vm_sysctl.get(name)
        if raw is not None and raw.split() and raw.split()[0].lstrip("-").isdigit():
            m.sysctl(name, int(raw.split()[0]))  # the snapshot's vm tunables
    st = m.state
    kinds = classify(flags, snap.kpagecount)
    n = min(kinds.size, m.max_pfn)
    inzone = st.zoneid[:n] >= 0
    alloc = inzone & ~np.isin(kinds[:n], (PageKind.BUDDY, PageKind.NOPAGE, PageKind.RESERVED))
    pfns = np.flatnonzero(alloc).astype(np.int64)
    order = np.zeros(pfns.size, np.int64)
    # THP / hugetlb: one compound block per head
    k = kinds[pfns]
    is_head = (k == PageKind.COMPOUND) & ((flags[pfns] & np.uint64(1 << KPF_COMPOUND_HEAD)) != 0)
    corder = _compound_orders(flags, pfns[is_head])
    order[np.flatnonzero(is_head)] = np.maximum(corder, 0)
    covered = np.zeros(kinds.size, bool)
    for h, o in zip(pfns[is_head][corder > 0].tolist(), corder[corder > 0].tolist(), strict=True):
        covered[h + 1 : h + (1 << o)] = True
    keep = ~covered[pfns]
    pfns, order, k = pfns[keep], order[keep], k[keep]
    f = flags[pfns]

    def has(bit: int) -> npt.NDArray[np.bool_]:
        r: npt.NDArray[np.bool_] = (f & np.uint64(1 << bit)) != 0
        return r

    pg = np.zeros(pfns.size, np.int64)
    gfp = np.full(pfns.size, GFP_KERNEL, np.int64)
    lru = np.isin(k, (PageKind.LRU_ANON, PageKind.LRU_FILE, PageKind.UNEVICTABLE))
    gfp[lru] = GFP_HIGHUSER_MOVABLE
    pg[lru] |= PG_lru
    pg[lru & has(KPF_ACTIVE) & (k != PageKind.UNEVICTABLE)] |= PG_active
    pg[lru & has(KPF_ANON)] |= PG_anon
    pg[lru & (has(KPF_ANON) | has(KPF_SWAPBACKED))] |= PG_swapbacked
    pg[lru & has(KPF_MMAP)] |= PG_mapped
    pg[lru & has(KPF_DIRTY) & ~has(KPF_ANON)] |= PG_dirty
    pg[k == PageKind.UNEVICTABLE] |= PG_unevictable
    pg[(k == PageKind.UNEVICTABLE) & has(KPF_MLOCKED)] |= PG_mlocked
    thp = k == PageKind.COMPOUND
    gfp[thp & (order > 0)] = GFP_TRANSHUGE
    pg[thp & (order > 0)] |= PG_lru | PG_anon | PG_swapbacked | PG_mapped
    gfp[thp & (order == 0)] = GFP_HIGHUSER_MOVABLE  # a lone tail/head without its folio
    for kind, bit in (
        (PageKind.SLAB, PG_slab),
        (PageKind.PGTABLE, PG_table),
        (PageKind.OFFLINE, PG_offline),
    ):
        if kind not in movable:
            pg[k == kind] |= bit
    mov = np.isin(k, sorted(movable))
    gfp[mov] = GFP_HIGHUSER_MOVABLE
    hids = m.alloc_handles(pfns.size)
    bad = pa.place_blocks(st, pfns, order, gfp, pg, hids, m.handles)
    if bad >= 0:
        p = int(pfns[bad])
        raise FragsimError(
            f"{snap.path}: cannot place pfn {p} (kind {PageKind(int(k[bad])).name.lower()}, order "
            f"{int(order[bad])}): not free in the booted machine"
        )
    handle_kind = np.full(m.handles.shape[0], PageKind.OTHER_KERNEL, np.uint8)
    handle_kind[hids] = k
    for kind in sorted(movable):
        sel = pfns[k == kind]
        if sel.size:
            SetPagesMovable(m, sel, SnapshotPages(kind))
    # pageblock types
    pti = snap.pagetypeinfo
    pbo = m.pageblock_order
    types: dict[int, int] = {}
    notes: list[str] = []
    for z in zoneinfo:
        if not z.populated or z.start_pfn is None:
            continue
        counts = None
        if pti is not None and (z.node, z.zone) in pti.blocks:
            counts = dict(pti.blocks[(z.node, z.zone)])
            odd = {t: v for t, v in counts.items() if t in ("Isolate", "CMA") and v}
            if odd:
                notes.append(f"zone {z.zone}: {odd} pageblocks loaded as Movable")
        zt = infer_pageblock_types(kinds, z.start_pfn, z.start_pfn + z.spanned, pbo, counts)
        zid = m.zone_id(z.node, z.zone)
        for b, mt in zt.items():
            pfn = max(b << pbo, z.start_pfn)
            if mt == MIGRATE_HIGHATOMIC:
                pa.reserve_highatomic_pageblock(st, zid, pfn)
            else:
                pa.set_pageblock_migratetype(st, pfn, mt)
        types.update(zt)
    for z in zoneinfo:
        if not z.populated or z.start_pfn is None:
            continue
        zid = m.zone_id(z.node, z.zone)
        for b in range(z.start_pfn >> pbo, -(-(z.start_pfn + z.spanned) // (1 << pbo))):
            pfn = max(b << pbo, z.start_pfn)
            pa.move_freepages_block(st, zid, pfn, int(st.pb[b]) & 7)
    if debug:
        from fragsim.mm.debug import check_invariants

        check_invariants(m)
        m.debug = True
    return LoadedSnapshot(m, kinds, handle_kind, movable, int(pfns.size), types, notes)


def machine_kinds(m: Machine, handle_kind: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The kind of every pfn of the machine now: free (buddy or pcp), holes, reserved, or the
    kind of the handle that owns the block (other kernel for pages without an owner)."""
    from fragsim.mm.page import PG_buddy, PG_nopage, PG_pcp, PG_reserved

    st = m.state
    out = np.full(st.flags.shape[0], PageKind.OTHER_KERNEL, np.uint8)
    heads = np.flatnonzero(
        ((st.flags & (PG_buddy | PG_pcp)) != 0)
        | ((st.refcount > 0) & ((st.flags & PG_reserved) == 0))
    )
    order = st.order[heads].astype(np.int64)
    own = st.owner[heads].astype(np.int64)
    free = (st.flags[heads] & (PG_buddy | PG_pcp)) != 0
    kind = np.where(
        free,
        PageKind.BUDDY,
        np.where(
            (own >= 0) & (own < handle_kind.size),
            handle_kind[np.clip(own, 0, handle_kind.size - 1)],
            PageKind.OTHER_KERNEL,
        ),
    ).astype(np.uint8)
    # paint each block's kind over its 2^order pages (difference array on the kind index)
    start = np.zeros(st.flags.shape[0] + 1, np.int64)
    np.add.at(start, heads, kind.astype(np.int64) + 1)
    np.add.at(start, heads + (np.int64(1) << order), -(kind.astype(np.int64) + 1))
    painted = np.cumsum(start)[:-1]
    out[painted > 0] = (painted[painted > 0] - 1).astype(np.uint8)
    out[(st.flags & PG_reserved) != 0] = PageKind.RESERVED
    out[(st.flags & PG_nopage) != 0] = PageKind.NOPAGE
    return out


# --------------------------------------------------------------------------------------------
# The what-if


@dataclass(frozen=True, slots=True)
class ZoneVariant:
    """One zone after compact_memory under one movability assumption."""

    movable: str
    nr_free_after: tuple[int, ...]
    obstacles: tuple[BlockObstacles, ...]
    """Obstacle analysis of the after state (pageblock order, then order 3)."""


@dataclass(frozen=True, slots=True)
class ZoneWhatif:
    node: int
    zone: str
    start_pfn: int
    end_pfn: int
    nr_free_snapshot: tuple[int, ...]
    """buddyinfo of the snapshot (the kernel's count)."""
    nr_free_placed: tuple[int, ...]
    """Free blocks per order of the loaded machine before compaction."""
    variants: tuple[ZoneVariant, ...]


@dataclass(frozen=True, slots=True)
class WhatifReport:
    source: str
    pageblock_order: int
    blocks_placed: int
    variants: tuple[str, ...]
    migrated: tuple[tuple[int, int], ...]
    """Per variant: (pgmigrate_success, pgmigrate_fail) of the compact_memory, all zones."""
    zones: tuple[ZoneWhatif, ...]
    notes: tuple[str, ...]


def whatif(
    snap: Snapshot,
    variants: Sequence[frozenset[PageKind]] = (frozenset(),),
    *,
    debug: bool = False,
    maps: list[tuple[str, Any]] | None = None,
) -> WhatifReport:
    """For each movability assumption: load the snapshot, run ``compact_memory``, drain the
    per-CPU lists, and analyse the free blocks and the obstacles per zone. ``maps``, when given,
    receives (title, fragsim.viz.memmap.MemMap) of the loaded state and of each after state."""
    from fragsim.mm import internal as I

    _require(snap, "whatif")
    results = []
    notes: list[str] = []
    for mv in variants:
        ld = load_machine(snap, mv, debug=debug)
        m = ld.machine
        placed = m.state.nr_free.copy()
        before_vm = m.state.vm.copy()
        if maps is not None and not maps:
            from fragsim.viz.memmap import memmap_from_machine

            maps.append(("loaded snapshot", memmap_from_machine(m)))
        m.compact_memory()
        m.drain_all_pages()
        if maps is not None:
            from fragsim.viz.memmap import memmap_from_machine

            maps.append(
                (f"after compact_memory, movable {_kinds_label(mv)}", memmap_from_machine(m))
            )
        if debug:
            from fragsim.mm.debug import check_invariants

            check_invariants(m)
        kinds_after = machine_kinds(m, ld.handle_kind)
        cua = snap.vm_sysctl.get("compact_unevictable_allowed", "1").split()[0] != "0"
        mk = movable_kinds(nonlru_movable=False, compact_unevictable_allowed=cua) | set(mv)
        results.append(
            (mv, ld, placed, m.state.nr_free.copy(), m.state.vm - before_vm, kinds_after, mk)
        )
        notes += [n for n in ld.notes if n not in notes]
    zones = []
    assert snap.zoneinfo is not None
    buddy = {(r.node, r.zone): r.nr_free for r in snap.buddyinfo}
    pbo = results[0][1].machine.pageblock_order
    for z in snap.zoneinfo:
        if not z.populated or z.start_pfn is None:
            continue
        a, b = z.start_pfn, z.start_pfn + z.spanned
        vs = []
        for mv, ld, _placed, after, _dvm, kinds_after, mk in results:
            zid = ld.machine.zone_id(z.node, z.zone)
            obs = tuple(
                block_obstacles(kinds_after, a, b, o, frozenset(mk), nonlru_movable=bool(mv))
                for o in ([pbo, 3] if pbo != 3 else [pbo])
            )
            vs.append(
                ZoneVariant(
                    movable=_kinds_label(mv),
                    nr_free_after=tuple(int(x) for x in after[zid]),
                    obstacles=obs,
                )
            )
        zid0 = results[0][1].machine.zone_id(z.node, z.zone)
        zones.append(
            ZoneWhatif(
                node=z.node,
                zone=z.zone,
                start_pfn=a,
                end_pfn=b,
                nr_free_snapshot=tuple(buddy.get((z.node, z.zone), ())),
                nr_free_placed=tuple(int(x) for x in results[0][2][zid0]),
                variants=tuple(vs),
            )
        )
    return WhatifReport(
        source=snap.path,
        pageblock_order=pbo,
        blocks_placed=results[0][1].blocks_placed,
        variants=tuple(_kinds_label(mv) for mv in variants),
        migrated=tuple(
            (int(res[4][I.VM_PGMIGRATE_SUCCESS]), int(res[4][I.VM_PGMIGRATE_FAIL]))
            for res in results
        ),
        zones=tuple(zones),
        notes=tuple(notes),
    )


def _blocks_at_least(nr_free: Sequence[int], order: int) -> int:
    """Free blocks of order >= ``order``, counted in order-``order`` units."""
    return sum(n << (o - order) for o, n in enumerate(nr_free) if o >= order)


def format_whatif(r: WhatifReport) -> str:
    """The plain-text report of ``fragsim whatif``."""
    out = [
        f"fragsim whatif {r.source}",
        f"{r.blocks_placed} allocated blocks placed at their pfns; compact_memory, then the "
        "per-cpu lists drained; movable kinds: " + " | ".join(r.variants),
    ]
    for label, (ok, failed) in zip(r.variants, r.migrated, strict=True):
        out.append(
            f"movable {label}: compact_memory migrated {ok} pages, {failed} failed "
            "(pgmigrate_success, pgmigrate_fail)"
        )
    out += [f"note: {n}" for n in r.notes]
    for z in r.zones:
        out.append("")
        out.append(
            f"== Node {z.node}, zone {z.zone} (pfns {z.start_pfn}-{z.end_pfn - 1}): free blocks "
            "of order >= N, in order-N blocks"
        )
        head = f"{'order':>5} {'snapshot':>9} {'placed':>8}"
        for v in z.variants:
            head += f" {'after ' + v.movable:>{max(14, len(v.movable) + 7)}}"
        out.append(head)
        for o in range(1, MAX_ORDER):
            if o >= len(z.nr_free_placed):
                break
            snap_n = _blocks_at_least(z.nr_free_snapshot, o) if z.nr_free_snapshot else "-"
            line = f"{o:>5} {snap_n:>9} {_blocks_at_least(z.nr_free_placed, o):>8}"
            for v in z.variants:
                w = max(14, len(v.movable) + 7)
                line += f" {_blocks_at_least(v.nr_free_after, o):>{w}}"
            out.append(line)
        for v in z.variants:
            out.append(f"-- after compact_memory, movable {v.movable}: what holds aligned blocks")
            for bo in v.obstacles:
                what = "pageblocks" if bo.order == r.pageblock_order else f"order-{bo.order} blocks"
                out.append(
                    f"   order {bo.order}: {bo.blocks} {what}: {bo.free} wholly free, "
                    f"{bo.compactable} hold only movable pages, {sum(bo.sole.values())} held by "
                    f"one kind, {bo.several} by several"
                )
                for k, n in list(bo.sole.items())[:6]:
                    out.append(
                        f"      {KIND_NAMES[PageKind[k.upper()]]}: the only obstacle in {n} "
                        f"(present in {bo.present.get(k, 0)})"
                    )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# CLI


def add_whatif_parser(sub: Any) -> argparse.ArgumentParser:
    """``fragsim whatif SNAPSHOT [--movable KIND[,KIND...]]``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "whatif", help="compact a real snapshot with more page kinds movable (before -> after)"
    )
    p.add_argument("snapshot", metavar="SNAPSHOT", help="a snapshot with kpageflags and zoneinfo")
    p.add_argument(
        "--movable",
        action="append",
        metavar="KIND[,KIND...]",
        help="page kinds to treat as movable (zsmalloc, offline/balloon, slab, pgtable, "
        "other_kernel); repeat for more variants; 'none' (the baseline) is always run",
    )
    p.add_argument("--html", metavar="FILE", help="also write the memory maps as an HTML report")
    p.add_argument("--debug", action="store_true", help="check every invariant (slow)")
    p.set_defaults(func=cmd_whatif)
    return p


def cmd_whatif(args: argparse.Namespace) -> int:
    variants: list[frozenset[PageKind]] = [frozenset()]
    for text in args.movable or []:
        v = parse_kinds(text)
        if v not in variants:
            variants.append(v)
    snap = load_snapshot(args.snapshot)
    maps: list[tuple[str, Any]] | None = [] if args.html else None
    rep = whatif(snap, variants, debug=args.debug, maps=maps)
    text = format_whatif(rep)
    sys.stdout.write(text)
    if args.html and maps:
        from fragsim.viz.reports import memmap_html

        html = memmap_html(
            f"fragsim whatif {args.snapshot}",
            [mm for _, mm in maps],
            [t for t, _ in maps],
            compare=(1, len(maps) - 1) if len(maps) > 2 else None,
            compare_title="After compact_memory: baseline and the last variant",
            texts=[("fragsim whatif", text)],
            texts_title="Report",
        )
        html.write(args.html)
        print(f"fragsim whatif: wrote {args.html}", file=sys.stderr)
    return 0
