"""The kernel's views of memory, byte for byte in Linux 6.1's formats. Models mm/vmstat.c
(frag_show_print, pagetypeinfo_show*, zoneinfo_show_print, vmstat_show, unusable_show_print,
extfrag_show_print, fill_contig_page_info, __fragmentation_index, unusable_free_index) and
include/linux/vm_event_item.h (Linux 6.1.192, the x86-64 Debian config of the oracle guest).

Counters fragsim does not model yet print 0 (later issues fill them in); their names and order are
the kernel's, so a simulated file can be diffed against a real one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.mmzone import MAX_ORDER, MIGRATE_CMA, MIGRATETYPE_NAMES
from fragsim.mm.page import (
    PG_anon,
    PG_dirty,
    PG_isolated,
    PG_lru,
    PG_mapped,
    PG_movable,
    PG_swapbacked,
    PG_writeback,
)

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = [
    "ContigPageInfo",
    "buddyinfo",
    "extfrag_index",
    "fill_contig_page_info",
    "format_buddyinfo",
    "format_extfrag_index",
    "format_pagetypeinfo",
    "format_unusable_index",
    "free_area_rows",
    "fragmentation_index",
    "pagetypeinfo",
    "unusable_free_index",
    "unusable_index",
    "vmstat",
    "vmstat_counters",
    "zoneinfo",
]

PAGETYPEINFO_CAP = 100000  # pagetypeinfo_showfree_print stops counting a list here (>= 5.6)

# enum zone_stat_item, node_stat_item and vm_event_item names in /proc/vmstat order (6.1.192).
ZONE_STAT_ITEMS = (
    "nr_free_pages nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file "
    "nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_bounce "
    "nr_zspages nr_free_cma"
).split()
NUMA_EVENT_ITEMS = "numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other".split()
NODE_STAT_ITEMS = (
    "nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable "
    "nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file "
    "workingset_nodes workingset_refault_anon workingset_refault_file workingset_activate_anon "
    "workingset_activate_file workingset_restore_anon workingset_restore_file "
    "workingset_nodereclaim nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback "
    "nr_writeback_temp nr_shmem nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages "
    "nr_file_pmdmapped nr_anon_transparent_hugepages nr_vmscan_write nr_vmscan_immediate_reclaim "
    "nr_dirtied nr_written nr_throttled_written nr_kernel_misc_reclaimable nr_foll_pin_acquired "
    "nr_foll_pin_released nr_kernel_stack nr_page_table_pages nr_sec_page_table_pages "
    "nr_swapcached pgpromote_success pgpromote_candidate"
).split()
_ZONE_LC = ("dma", "dma32", "normal", "highmem", "movable", "device")
#: zone_stat_items read from State (the others are Machine.zone_stat gauges)
_ZONE_LRU_ITEMS = (
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
    "nr_zone_unevictable",
)
_NODE_LRU_ITEMS = (
    "nr_inactive_anon",
    "nr_active_anon",
    "nr_inactive_file",
    "nr_active_file",
    "nr_unevictable",
)
#: zone_stat_items and node_stat_items computed from State (the others are Machine gauges)
ZONE_STATS_IN_STATE = ("nr_free_pages", "nr_free_cma", *_ZONE_LRU_ITEMS)
NODE_STATS_IN_STATE = (
    *_NODE_LRU_ITEMS,
    "nr_anon_pages",
    "nr_file_pages",
    "nr_shmem",
    "nr_mapped",
    "nr_dirty",
    "nr_writeback",
)


def _lc(zone_name: str) -> str:
    """The lower-case zone suffix of per-zone vm events (``pgalloc_dma32``)."""
    return _ZONE_LC[("DMA", "DMA32", "Normal", "HighMem", "Movable", "Device").index(zone_name)]


def _vm_event_items(zone_types: tuple[str, ...]) -> list[str]:
    per_zone = [_lc(t) for t in zone_types]
    return (
        "pgpgin pgpgout pswpin pswpout".split()
        + [f"pgalloc_{z}" for z in per_zone]
        + [f"allocstall_{z}" for z in per_zone]
        + [f"pgskip_{z}" for z in per_zone]
        + (
            "pgfree pgactivate pgdeactivate pglazyfree pgfault pgmajfault pglazyfreed pgrefill "
            "pgreuse pgsteal_kswapd pgsteal_direct pgdemote_kswapd pgdemote_direct pgscan_kswapd "
            "pgscan_direct pgscan_direct_throttle pgscan_anon pgscan_file pgsteal_anon "
            "pgsteal_file zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal "
            "kswapd_low_wmark_hit_quickly kswapd_high_wmark_hit_quickly pageoutrun pgrotated "
            "drop_pagecache drop_slab oom_kill numa_pte_updates numa_huge_pte_updates "
            "numa_hint_faults numa_hint_faults_local numa_pages_migrated pgmigrate_success "
            "pgmigrate_fail thp_migration_success thp_migration_fail thp_migration_split "
            "compact_migrate_scanned compact_free_scanned compact_isolated compact_stall "
            "compact_fail compact_success compact_daemon_wake compact_daemon_migrate_scanned "
            "compact_daemon_free_scanned htlb_buddy_alloc_success htlb_buddy_alloc_fail "
            "unevictable_pgs_culled unevictable_pgs_scanned unevictable_pgs_rescued "
            "unevictable_pgs_mlocked unevictable_pgs_munlocked unevictable_pgs_cleared "
            "unevictable_pgs_stranded thp_fault_alloc thp_fault_fallback "
            "thp_fault_fallback_charge thp_collapse_alloc thp_collapse_alloc_failed "
            "thp_file_alloc thp_file_fallback thp_file_fallback_charge thp_file_mapped "
            "thp_split_page thp_split_page_failed thp_deferred_split_page thp_split_pmd "
            "thp_scan_exceed_none_pte thp_scan_exceed_swap_pte thp_scan_exceed_share_pte "
            "thp_split_pud thp_zero_page_alloc thp_zero_page_alloc_failed thp_swpout "
            "thp_swpout_fallback balloon_inflate balloon_deflate balloon_migrate swap_ra "
            "swap_ra_hit ksm_swpin_copy cow_ksm zswpin zswpout direct_map_level2_splits "
            "direct_map_level3_splits"
        ).split()
    )


def vm_event_names(m: Machine) -> frozenset[str]:
    """The vm_event_item names of this machine's /proc/vmstat."""
    names = _EVENT_NAMES.get(m.profile.zone_types)
    if names is None:
        names = _EVENT_NAMES[m.profile.zone_types] = frozenset(
            _vm_event_items(m.profile.zone_types)
        )
    return names


_EVENT_NAMES: dict[tuple[str, ...], frozenset[str]] = {}


def _zones(m: Machine, populated: bool) -> list[int]:
    return [z for z in range(m.state.zs.shape[0]) if not populated or m.state.zs[z, I.ZF_MANAGED]]


def _migratetypes(m: Machine) -> list[int]:
    """Internal migratetype ids the profile's kernel has, in its numbering order."""
    return [mt for mt in range(len(MIGRATETYPE_NAMES)) if mt != MIGRATE_CMA or m.profile.config_cma]


def _zname(m: Machine, z: int) -> str:
    return m.zone_name(z)


def _node(m: Machine, z: int) -> int:
    return int(m.state.zs[z, I.ZF_NODE])


#: one zone's free blocks per order: (node id, zone name, nr_free[order])
FreeAreaRow = tuple[int, str, "list[int] | np.ndarray"]


def free_area_rows(m: Machine) -> list[FreeAreaRow]:
    """Every populated zone's ``free_area[order].nr_free``, in /proc order."""
    return [(_node(m, z), _zname(m, z), m.state.nr_free[z]) for z in _zones(m, True)]


def buddyinfo(m: Machine) -> str:
    """/proc/buddyinfo of a machine."""
    return format_buddyinfo(free_area_rows(m))


def format_buddyinfo(rows: list[FreeAreaRow]) -> str:
    """frag_show_print(): free blocks per order, one line per populated zone."""
    out = []
    for node, zname, nr_free in rows:
        counts = "".join(f"{int(n):6d} " for n in nr_free)
        out.append(f"Node {node}, zone {zname:>8s} {counts}\n")
    return "".join(out)


def pagetypeinfo(m: Machine) -> str:
    """/proc/pagetypeinfo (pagetypeinfo_show) of a machine."""
    st = m.state
    mts = _migratetypes(m)
    capped = m.kernel.pagetypeinfo_cap
    cap = PAGETYPEINFO_CAP if capped else 1 << 62
    free_rows = []
    block_rows = []
    for z in _zones(m, True):
        counts = []
        for mt in mts:
            row = []
            for o in range(MAX_ORDER):
                head = int(st.zs[z, I.ZF_FREE_SENT]) + o * len(MIGRATETYPE_NAMES) + mt
                row.append(pa.count_free_list(st, head, cap))
            counts.append(row)
        free_rows.append((_node(m, z), _zname(m, z), counts))
        bc = pageblock_counts(m, z)
        block_rows.append((_node(m, z), _zname(m, z), [int(bc[mt]) for mt in mts]))
    return format_pagetypeinfo(
        m.pageblock_order,
        [MIGRATETYPE_NAMES[mt] for mt in mts],
        free_rows,
        block_rows,
        cap=capped,
    )


def format_pagetypeinfo(
    pageblock_order: int,
    mt_names: list[str],
    free_rows: list[tuple[int, str, list[list[int]]]],
    block_rows: list[tuple[int, str, list[int]]],
    nr_orders: int = MAX_ORDER,
    cap: bool = True,
) -> str:
    """pagetypeinfo_showfree_print + pagetypeinfo_showblockcount_print: free list lengths per
    (zone, migratetype, order), a count that reached 100000 printed as >100000 (``cap``, 5.5+),
    then pageblocks per migratetype."""
    out = [
        f"Page block order: {pageblock_order}\n",
        f"Pages per block:  {1 << pageblock_order}\n",
        "\n",
        f"{'Free pages count per migrate type at order':<43s} ",
        "".join(f"{o:6d} " for o in range(nr_orders)),
        "\n",
    ]
    for node, zname, counts in free_rows:
        for name, row in zip(mt_names, counts, strict=True):
            out.append(f"Node {node:4d}, zone {zname:>8s}, type {name:>12s} ")
            marks = [">" if cap and n >= PAGETYPEINFO_CAP else "" for n in row]
            out.append("".join(f"{mk}{n:6d} " for mk, n in zip(marks, row, strict=True)))
            out.append("\n")
    out.append(f"\n{'Number of blocks type ':<23s}")
    out.append("".join(f"{name:>12s} " for name in mt_names))
    out.append("\n")
    for node, zname, bc in block_rows:
        out.append(f"Node {node}, zone {zname:>8s} ")
        out.append("".join(f"{n:12d} " for n in bc))
        out.append("\n")
    return "".join(out)


def pageblock_counts(m: Machine, z: int) -> np.ndarray:
    """pagetypeinfo_showblockcount_print(): pageblocks by type, stepping from zone_start_pfn."""
    st = m.state
    start, end = int(st.zs[z, I.ZF_START]), int(st.zs[z, I.ZF_END])
    pfns = np.arange(start, end, 1 << m.pageblock_order)
    pfns = pfns[st.zoneid[pfns] == z]
    mts = st.pb[pfns >> m.pageblock_order] & 0x7
    return np.bincount(mts, minlength=8)


def _stat_threshold(m: Machine, z: int) -> int:
    """calculate_normal_threshold() (mm/vmstat.c)."""
    mem = int(m.state.zs[z, I.ZF_MANAGED]) >> (27 - 12)
    thr = 2 * m.nr_cpus.bit_length() * (1 + mem.bit_length())
    return min(125, thr)


def zoneinfo(m: Machine) -> str:
    """/proc/zoneinfo (zoneinfo_show_print), every zone of every node; per-node and per-zone
    statistics that fragsim does not model yet print 0."""
    st = m.state
    zs = st.zs
    out = []
    first_populated: dict[int, int] = {}
    for z in _zones(m, True):
        first_populated.setdefault(_node(m, z), z)
    for z in range(zs.shape[0]):
        node = _node(m, z)
        out.append(f"Node {node}, zone {_zname(m, z):>8s}")
        if first_populated.get(node) == z:
            out.append("\n  per-node stats")
            computed = node_state_stats(m, node)
            for name in NODE_STAT_ITEMS:
                val = m.node_stat[node][name] + computed.get(name, 0)
                out.append(f"\n      {name:<12s} {val}")
        boost = int(zs[z, I.ZF_BOOST])
        out.append(f"\n  pages free     {zs[z, I.ZF_NR_FREE_PAGES]}")
        if m.kernel.watermark_boost:  # the boost line came with watermark boosting (5.0)
            out.append(f"\n        boost    {boost}")
        out.append(
            f"\n        min      {zs[z, I.ZF_WMARK_MIN] + boost}"
            f"\n        low      {zs[z, I.ZF_WMARK_LOW] + boost}"
            f"\n        high     {zs[z, I.ZF_WMARK_HIGH] + boost}"
            f"\n        spanned  {zs[z, I.ZF_SPANNED]}"
            f"\n        present  {zs[z, I.ZF_PRESENT]}"
            f"\n        managed  {zs[z, I.ZF_MANAGED]}"
            f"\n        cma      {zs[z, I.ZF_CMA_PAGES]}"
        )
        lr = zs[z, I.ZF_LOWMEM_RESERVE : I.ZF_LOWMEM_RESERVE + m.nr_zone_types]
        out.append("\n        protection: (" + ", ".join(str(int(v)) for v in lr) + ")")
        if zs[z, I.ZF_MANAGED] == 0:
            out.append("\n")
            continue
        stats = dict(m.zone_stat[z])
        stats.update(zone_state_stats(m, z))
        for name in ZONE_STAT_ITEMS:
            out.append(f"\n      {name:<12s} {int(stats.get(name, 0))}")
        for name in NUMA_EVENT_ITEMS:
            out.append(f"\n      {name:<12s} 0")
        out.append("\n  pagesets")
        thr = _stat_threshold(m, z)
        for cpu in range(m.nr_cpus):
            pc = st.pcp[z, cpu]
            out.append(
                f"\n    cpu: {cpu}"
                f"\n              count: {pc[I.PCP_COUNT]}"
                f"\n              high:  {pc[I.PCP_HIGH]}"
                f"\n              batch: {pc[I.PCP_BATCH]}"
                f"\n  vm stats threshold: {thr}"
            )
        out.append(f"\n  node_unreclaimable:  0\n  start_pfn:           {zs[z, I.ZF_START]}\n")
    return "".join(out)


def zone_state_stats(m: Machine, z: int) -> dict[str, int]:
    """The zone_stat_items fragsim reads from State: free pages and the LRU counts."""
    zs = m.state.zs
    v = {
        "nr_free_pages": int(zs[z, I.ZF_NR_FREE_PAGES]),
        "nr_free_cma": int(zs[z, I.ZF_NR_FREE_CMA]),
    }
    for lru, name in enumerate(_ZONE_LRU_ITEMS):
        v[name] = int(zs[z, I.ZF_NR_LRU + lru])
    return v


def node_state_stats(m: Machine, nid: int) -> dict[str, int]:
    """The node_stat_items fragsim reads from State: the LRU lists, and the page counts
    that follow from page flags (nr_anon_pages, nr_mapped, nr_file_pages, nr_shmem,
    nr_dirty, nr_writeback), computed over the node's pages."""
    st = m.state
    nzt = m.nr_zone_types
    zones = range(nid * nzt, (nid + 1) * nzt)
    v = {}
    for lru, name in enumerate(_NODE_LRU_ITEMS):
        v[name] = int(sum(st.zs[z, I.ZF_NR_LRU + lru] for z in zones))
    start = int(min(st.zs[z, I.ZF_START] for z in zones))
    end = int(max(st.zs[z, I.ZF_END] for z in zones))
    f = st.flags[start:end]
    used = st.refcount[start:end] > 0
    anon = used & ((f & PG_anon) != 0)
    lru_file = used & ((f & (PG_lru | PG_isolated)) != 0) & ~anon & ((f & PG_movable) == 0)
    v["nr_anon_pages"] = int(np.count_nonzero(anon))
    v["nr_file_pages"] = int(np.count_nonzero(lru_file))
    v["nr_shmem"] = int(np.count_nonzero(lru_file & ((f & PG_swapbacked) != 0)))
    v["nr_mapped"] = int(np.count_nonzero(lru_file & ((f & PG_mapped) != 0)))
    v["nr_dirty"] = int(np.count_nonzero(lru_file & ((f & PG_dirty) != 0)))
    v["nr_writeback"] = int(np.count_nonzero(used & ((f & PG_writeback) != 0)))
    return v


def vmstat_counters(m: Machine) -> dict[str, int]:
    """Every /proc/vmstat item in the kernel's order, with fragsim's values (0 where unmodelled)."""
    st = m.state
    zs = st.zs
    v: dict[str, int] = {}
    pop = _zones(m, False)
    for name in ZONE_STAT_ITEMS:
        v[name] = sum(m.zone_stat[z][name] for z in pop)
    for z in pop:
        for name, n in zone_state_stats(m, z).items():
            v[name] += n
    for name in NUMA_EVENT_ITEMS:
        v[name] = 0
    for name in NODE_STAT_ITEMS:
        v[name] = sum(ns[name] for ns in m.node_stat)
    for nid in range(m.nr_nodes):
        for name, n in node_state_stats(m, nid).items():
            v[name] += n
    dirty = dirty_thresholds(m)
    v["nr_dirty_threshold"], v["nr_dirty_background_threshold"] = dirty
    for name in _vm_event_items(m.profile.zone_types):
        v[name] = 0
    for z in range(zs.shape[0]):
        v[f"pgalloc_{_lc(_zname(m, z))}"] += int(zs[z, I.ZF_PGALLOC])
    v["pgfree"] = int(st.vm[I.VM_PGFREE])
    for idx, name in I.VM_NAMES.items():
        v[name] = int(st.vm[idx])
    for name, n in m.vm_events.items():
        v[name] += n
    for zi, n in enumerate(m.allocstall):
        v[f"allocstall_{_lc(m.profile.zone_types[zi])}"] = n
    return v


def dirty_thresholds(m: Machine) -> tuple[int, int]:
    """global_dirty_limits() with vm_dirty_ratio 20 and dirty_background_ratio 10 over
    global_dirtyable_memory() (free pages minus totalreserve_pages; no file LRU yet)."""
    zs = m.state.zs
    reserve = 0
    for z in range(zs.shape[0]):
        lr = int(zs[z, I.ZF_LOWMEM_RESERVE : I.ZF_LOWMEM_RESERVE + m.nr_zone_types].max())
        reserve += min(lr + int(zs[z, I.ZF_WMARK_HIGH]), int(zs[z, I.ZF_MANAGED]))
    dirtyable = max(int(zs[:, I.ZF_NR_FREE_PAGES].sum()) - reserve, 0)
    thresh = dirtyable * 20 // 100
    bg = dirtyable * 10 // 100
    return thresh, bg


def vmstat(m: Machine) -> str:
    """/proc/vmstat (vmstat_show), ending with the deprecated ``nr_unstable 0``."""
    return "".join(f"{k} {v}\n" for k, v in vmstat_counters(m).items()) + "nr_unstable 0\n"


class ContigPageInfo(NamedTuple):
    """struct contig_page_info."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def fill_contig_page_info(nr_free: np.ndarray, suitable_order: int) -> ContigPageInfo:
    """fill_contig_page_info(): from a zone's free blocks per order (all migratetypes)."""
    free_pages = total = suitable = 0
    for order in range(len(nr_free)):
        blocks = int(nr_free[order])
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(free_pages, total, suitable)


def fragmentation_index(nr_free: np.ndarray, order: int) -> int:
    """__fragmentation_index(), in thousandths: 0 => an allocation of this order would fail for
    lack of memory, 1000 => it would fail because of fragmentation, -1000 => it would succeed
    (a free block of this order exists)."""
    info = fill_contig_page_info(nr_free, order)
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    requested = 1 << order
    return 1000 - (1000 + info.free_pages * 1000 // requested) // info.free_blocks_total


def unusable_free_index(nr_free: np.ndarray, order: int) -> int:
    """unusable_free_index(), in thousandths: the share of free memory that is in blocks too
    small for this order (0 => all of it usable, 1000 => none, or nothing is free)."""
    info = fill_contig_page_info(nr_free, order)
    if not info.free_pages:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def _c_div(a: int, b: int) -> tuple[int, int]:
    q = abs(a) // b * (1 if a >= 0 else -1)
    return q, a - q * b


def unusable_index(m: Machine) -> str:
    """debugfs extfrag/unusable_index of a machine."""
    return format_unusable_index(free_area_rows(m))


def format_unusable_index(rows: list[FreeAreaRow]) -> str:
    """unusable_show_print(): unusable_free_index per order as ``%d.%03d``."""
    out = []
    for node, zname, nr_free in rows:
        out.append(f"Node {node}, zone {zname:>8s} ")
        for order in range(len(nr_free)):
            q, r = _c_div(unusable_free_index(np.asarray(nr_free), order), 1000)
            out.append(f"{q}.{r:03d} ")
        out.append("\n")
    return "".join(out)


def extfrag_index(m: Machine) -> str:
    """debugfs extfrag/extfrag_index of a machine."""
    return format_extfrag_index(free_area_rows(m))


def format_extfrag_index(rows: list[FreeAreaRow]) -> str:
    """extfrag_show_print(): __fragmentation_index per order as ``%2d.%03d``."""
    out = []
    for node, zname, nr_free in rows:
        out.append(f"Node {node}, zone {zname:>8s} ")
        for order in range(len(nr_free)):
            q, r = _c_div(fragmentation_index(np.asarray(nr_free), order), 1000)
            out.append(f"{q:2d}.{r:03d} ")
        out.append("\n")
    return "".join(out)
