"""Page reclaim: kswapd, direct reclaim, the LRU scan and the slab shrinkers. Models mm/vmscan.c
of Linux 6.1.192 without MGLRU (CONFIG_LRU_GEN off, as in Debian's and most Android 6.1 builds)
and without memory cgroups: kswapd(), balance_pgdat(), kswapd_shrink_node(),
kswapd_try_to_sleep(), try_to_free_pages() / do_try_to_free_pages() / shrink_zones(),
shrink_node() with prepare_scan_count(), get_scan_count() (swappiness and the anon/file cost
balance), shrink_lruvec(), shrink_active_list(), shrink_inactive_list() /
shrink_folio_list(), should_continue_reclaim(), zone_reclaimable_pages() and do_shrink_slab().

The LRU lists themselves are compiled (fragsim/mm/page_alloc.py: lruvec_add_folio,
isolate_lru_folios, move_folios_to_lru); the decisions for a batch of isolated pages are NumPy
masks over their flags. Evicting a page tells its owner through the machine's per-handle tables:
``Machine.handles[h]`` becomes -1, ``Machine.shadow[h]`` holds the workingset shadow entry and,
for an anonymous page, ``Machine.swap_entry[h]`` its swap slot (fragsim/mm/workingset.py reads
them back at the refault).

SIMPLIFICATIONS (docs/design.md, "Reclaim"):
* A page's accessed state is two bits: PG_young (a mapping's pte accessed bit, which
  folio_referenced() reads and clears: anon pages and mmap()ed file pages, PG_mapped) and
  PG_referenced (the kernel's flag). One mapping per page; no VM_EXEC protection of mapped
  executable file pages on the active list.
* Swap is one device (``Machine.swapon``), written synchronously (zram: SWP_SYNCHRONOUS_IO), so
  a swapped-out page is freed in the same pass, as the kernel does for zram. No swap cache.
* Dirty file pages are written by the flusher (``writeback``, run by ``Machine.advance``), never
  by reclaim (6.1 kswapd writes file pages only in a corner case); reclaim marks them PG_reclaim
  and activates them, and the end of their writeback rotates them to the inactive tail.
* No reclaim throttling (reclaim_throttle, too_many_isolated), no NR_ISOLATED_* counts, no
  PGDAT_DIRTY/PGDAT_WRITEBACK-driven waits; pages a shrinker frees count as reclaimed slab
  (reclaim_state) whatever they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fragsim.mm import compaction, workingset
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.gfp import __GFP_FS, __GFP_IO, GFP_KERNEL
from fragsim.mm.mmzone import PAGE_ALLOC_COSTLY_ORDER
from fragsim.mm.page import (
    PG_active,
    PG_anon,
    PG_dirty,
    PG_swapbacked,
    PG_workingset,
    PG_writeback,
    PG_young,
)
from fragsim.mm.swap import EVICTABLE, get_nr_swap_pages, lru_note_cost, lru_size
from fragsim.mm.vmstat import _lc as vmstat_zone_suffix

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = [
    "Lruvec",
    "ScanControl",
    "balance_pgdat",
    "kswapd",
    "kswapd_shrink_node",
    "prepare_kswapd_sleep",
    "shrink_node",
    "shrink_slab",
    "try_to_free_pages",
    "writeback",
    "zone_reclaimable_pages",
]

DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32
DEFAULT_SEEKS = 2
SHRINK_BATCH = 128
DIRTY_WRITEBACK_NS = 5 * 10**9  # vm.dirty_writeback_centisecs = 500
DEACTIVATE_ANON = 1
DEACTIVATE_FILE = 2


@dataclass
class Lruvec:
    """The reclaim state of a node's lruvec (struct lruvec, 6.1): the anon/file reclaim costs
    (lru_note_cost), the non-resident age (workingset), the refault counts snapshot at the end
    of the last reclaim (snapshot_refaults), and each shrinker's deferred work."""

    anon_cost: int = 0
    file_cost: int = 0
    nonresident_age: int = 0
    refaults: list[int] = field(default_factory=lambda: [0, 0])
    nr_deferred: dict[int, int] = field(default_factory=dict)


@dataclass
class ScanControl:
    """struct scan_control (6.1), the fields global reclaim uses."""

    gfp_mask: int
    order: int
    reclaim_idx: int
    nr_to_reclaim: int = SWAP_CLUSTER_MAX
    priority: int = DEF_PRIORITY
    may_writepage: bool = True
    may_unmap: bool = True
    may_swap: bool = True
    kswapd: bool = False
    may_deactivate: int = 0
    force_deactivate: bool = False
    skipped_deactivate: bool = False
    cache_trim_mode: bool = False
    file_is_tiny: bool = False
    compaction_ready: bool = False
    anon_cost: int = 0
    file_cost: int = 0
    nr_scanned: int = 0
    nr_reclaimed: int = 0


class _Reclaiming:
    """Reclaim's context: PF_MEMALLOC (its own allocations, e.g. zram's, may use the reserves
    and never recurse into reclaim) and no daemons run by the batches it issues."""

    def __init__(self, m: Machine) -> None:
        self.m = m

    def __enter__(self) -> None:
        self.saved = self.m.pf_memalloc
        self.m.pf_memalloc = True
        self.m._depth += 1

    def __exit__(self, *exc: object) -> None:
        self.m.pf_memalloc = self.saved
        self.m._depth -= 1


# ---------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------


def _node_zones(m: Machine, nid: int, upto: int | None = None) -> range:
    nzt = m.nr_zone_types
    top = nzt - 1 if upto is None else upto
    return range(nid * nzt, nid * nzt + top + 1)


def can_reclaim_anon_pages(m: Machine) -> bool:
    """can_reclaim_anon_pages(): swap space is left (get_nr_swap_pages() > 0)."""
    return get_nr_swap_pages(m) > 0


def zone_reclaimable_pages(m: Machine, z: int) -> int:
    """zone_reclaimable_pages() (6.1): the zone's file LRU pages, plus its anon ones when
    there is swap space."""
    zs = m.state.zs
    nr = int(zs[z, I.ZF_NR_LRU + I.LRU_INACTIVE_FILE] + zs[z, I.ZF_NR_LRU + I.LRU_ACTIVE_FILE])
    if can_reclaim_anon_pages(m):
        nr += int(zs[z, I.ZF_NR_LRU + I.LRU_INACTIVE_ANON] + zs[z, I.ZF_NR_LRU + I.LRU_ACTIVE_ANON])
    return nr


def inactive_is_low(m: Machine, nid: int, inactive_lru: int) -> bool:
    """inactive_is_low() (6.1): inactive * inactive_ratio < active, with inactive_ratio =
    int_sqrt(10 * size in GiB), 1 under 1 GiB."""
    inactive = lru_size(m, nid, inactive_lru)
    active = lru_size(m, nid, inactive_lru + 1)
    gb = (inactive + active) >> 18
    ratio = math.isqrt(10 * gb) if gb else 1
    return inactive * ratio < active


# ---------------------------------------------------------------------------------------------
# the LRU scan
# ---------------------------------------------------------------------------------------------


def _isolate(
    m: Machine, nid: int, lru: int, nr_to_scan: int, sc: ScanControl
) -> npt.NDArray[np.int64]:
    out = np.empty(max(nr_to_scan, 1), np.int64)
    taken, scanned, skipped = pa.isolate_lru_folios(
        m.state, nid, lru, nr_to_scan, sc.reclaim_idx, out
    )
    sc.nr_scanned += scanned
    if skipped:
        # SIMPLIFICATION: pgskip_<zone> counts all skipped pages against the first zone above
        # reclaim_idx (the kernel counts each skipped page's own zone)
        zi = min(sc.reclaim_idx + 1, m.nr_zone_types - 1)
        m.count_vm_event(f"pgskip_{vmstat_zone_suffix(m.profile.zone_types[zi])}", skipped)
    return out[:taken]


def shrink_active_list(m: Machine, nid: int, nr_to_scan: int, sc: ScanControl, lru: int) -> None:
    """shrink_active_list() (6.1): take pages from the active list's tail; each goes to the
    inactive list (PG_workingset set), its young bit cleared (folio_referenced). Counts
    pgrefill and pgdeactivate."""
    pfns = _isolate(m, nid, lru, nr_to_scan, sc)
    m.count_vm_event("pgrefill", len(pfns))
    if not len(pfns):
        return
    st = m.state
    st.flags[pfns] = (st.flags[pfns] & ~(PG_active | PG_young)) | PG_workingset
    moved = pa.move_folios_to_lru(st, pfns, len(pfns), 0)
    m.count_vm_event("pgdeactivate", moved)


def shrink_inactive_list(m: Machine, nid: int, nr_to_scan: int, sc: ScanControl, lru: int) -> int:
    """shrink_inactive_list() + shrink_folio_list() (6.1) for a batch from the inactive list's
    tail: under writeback -> PG_reclaim, activated; folio_check_references(): a young
    swap-backed page, or a young page seen before (PG_referenced), is activated, another young
    page kept (and marked referenced), an unmapped referenced file page only reclaimed if clean;
    anon pages go to swap (add_to_swap; no space: activated), dirty file pages are left to the
    flusher (PG_reclaim, activated), pages with extra references (pinned) cannot be unmapped
    (activated) or removed from the page cache (kept), and a page allocated under no handle of
    the machine (no owner reclaim could tell) is kept; the rest are evicted with a shadow entry
    and freed. Returns pages reclaimed."""
    st = m.state
    pfns = _isolate(m, nid, lru, nr_to_scan, sc)
    n = len(pfns)
    file = lru == I.LRU_INACTIVE_FILE
    who = "kswapd" if sc.kswapd else "direct"
    m.count_vm_event(f"pgscan_{who}", n)
    m.count_vm_event("pgscan_file" if file else "pgscan_anon", n)
    if not n:
        return 0
    f = np.empty(n, np.int64)
    action = np.empty(n, np.int64)
    ndirty = pa.shrink_folio_list_decide(st, m.handles, pfns, n, f, action)
    if ndirty:
        m.mod_node_page_state(nid, "nr_vmscan_immediate_reclaim", int(ndirty))
    activate = action == pa.FOLIO_ACTIVATE
    anon = action == pa.FOLIO_SWAP
    evict = action == pa.FOLIO_FREE
    nr_pageout = 0
    if anon.any():
        idx = np.flatnonzero(anon)
        slots = _add_to_swap(m, sc, len(idx))
        ok = slots >= 0
        activate[idx[~ok]] = True
        evict[idx[ok]] = True
        owners = st.owner[pfns[idx[ok]]].astype(np.int64)
        m.swap_entry[owners] = slots[ok]
        nr_pageout = int(ok.sum())
        m.count_vm_event("pswpout", nr_pageout)
    f[activate] |= PG_active
    m.count_vm_event("pgactivate", int(activate.sum()))
    st.flags[pfns] = f
    gone = pfns[evict]
    if len(gone):
        owners = st.owner[gone].astype(np.int64)
        m.shadow[owners] = workingset.workingset_eviction(m, nid, f[evict])
        m.handles[owners] = -1
        freed = pa.free_isolated_folios(st, gone, len(gone), 0)
        m.nr_events += len(gone)  # the page allocator's frees (mm_page_free), not a batch's rows
    else:
        freed = 0
    back = pfns[~evict]
    pa.move_folios_to_lru(st, back, len(back), 0)
    if nr_pageout:
        lru_note_cost(m, nid, False, nr_pageout)
    m.count_vm_event(f"pgsteal_{who}", freed)
    m.count_vm_event("pgsteal_file" if file else "pgsteal_anon", freed)
    return freed


def _add_to_swap(m: Machine, sc: ScanControl, count: int) -> npt.NDArray[np.int64]:
    """add_to_swap() + pageout() to the swap device for ``count`` anonymous pages: slots, -1
    where there was none (no swap, no __GFP_IO, or the device is full)."""
    if m.swap is None or not (sc.gfp_mask & __GFP_IO) or not sc.may_writepage:
        return np.full(count, -1, np.int64)
    with _Reclaiming(m):
        return np.asarray(m.swap.swap_out(count), np.int64)


def shrink_list(m: Machine, nid: int, lru: int, nr_to_scan: int, sc: ScanControl) -> int:
    """shrink_list() (6.1)."""
    if lru in (I.LRU_ACTIVE_ANON, I.LRU_ACTIVE_FILE):
        if sc.may_deactivate & (DEACTIVATE_FILE if lru == I.LRU_ACTIVE_FILE else DEACTIVATE_ANON):
            shrink_active_list(m, nid, nr_to_scan, sc, lru)
        else:
            sc.skipped_deactivate = True
        return 0
    return shrink_inactive_list(m, nid, nr_to_scan, sc, lru)


def get_scan_count(m: Machine, nid: int, sc: ScanControl) -> list[int]:
    """get_scan_count() (6.1): how many pages of each evictable list to scan at this priority:
    file only without swap (or when trimming the page cache), anon only when the file LRU is
    tiny, equal at priority 0, otherwise in the ratio of swappiness to 200 - swappiness,
    weighted by the reclaim costs."""
    swappiness = m.swappiness
    balance = "fract"
    if not sc.may_swap or not can_reclaim_anon_pages(m):
        balance = "file"
    elif not sc.priority and swappiness:
        balance = "equal"
    elif sc.file_is_tiny:
        balance = "anon"
    elif sc.cache_trim_mode:
        balance = "file"
    fraction = [0, 0]
    denominator = 1
    if balance == "fract":
        total = sc.anon_cost + sc.file_cost
        anon_cost = total + sc.anon_cost
        file_cost = total + sc.file_cost
        total = anon_cost + file_cost
        ap = swappiness * (total + 1) // (anon_cost + 1)
        fp = (200 - swappiness) * (total + 1) // (file_cost + 1)
        fraction = [ap, fp]
        denominator = ap + fp
    nr = [0] * I.NR_LRU_LISTS
    for lru in EVICTABLE:
        file = lru >= I.LRU_INACTIVE_FILE
        scan = lru_size(m, nid, lru, sc.reclaim_idx) >> sc.priority
        if balance == "fract":
            scan = scan * fraction[file] // denominator if denominator else 0
        elif balance in ("file", "anon") and (balance == "file") != file:
            scan = 0
        nr[lru] = scan
    return nr


def shrink_lruvec(m: Machine, nid: int, sc: ScanControl) -> None:
    """shrink_lruvec() (6.1): scan the lists in SWAP_CLUSTER_MAX steps; once enough is
    reclaimed (kswapd, or below DEF_PRIORITY), stop the smaller of anon/file and scale the other
    to the same proportion; then age the active anon list if the inactive one is low."""
    nr = get_scan_count(m, nid, sc)
    targets = list(nr)
    proportional = not sc.kswapd and sc.priority == DEF_PRIORITY
    nr_reclaimed = 0
    while nr[I.LRU_INACTIVE_ANON] or nr[I.LRU_ACTIVE_FILE] or nr[I.LRU_INACTIVE_FILE]:
        for lru in EVICTABLE:
            if nr[lru]:
                step = min(nr[lru], SWAP_CLUSTER_MAX)
                nr[lru] -= step
                nr_reclaimed += shrink_list(m, nid, lru, step, sc)
        if nr_reclaimed < sc.nr_to_reclaim or proportional:
            continue
        nr_file = nr[I.LRU_INACTIVE_FILE] + nr[I.LRU_ACTIVE_FILE]
        nr_anon = nr[I.LRU_INACTIVE_ANON] + nr[I.LRU_ACTIVE_ANON]
        if not nr_file or not nr_anon:
            break
        if nr_file > nr_anon:
            target = targets[I.LRU_INACTIVE_ANON] + targets[I.LRU_ACTIVE_ANON] + 1
            lru = I.LRU_INACTIVE_ANON
            percentage = nr_anon * 100 // target
        else:
            target = targets[I.LRU_INACTIVE_FILE] + targets[I.LRU_ACTIVE_FILE] + 1
            lru = I.LRU_INACTIVE_FILE
            percentage = nr_file * 100 // target
        nr[lru] = nr[lru + 1] = 0
        lru = I.LRU_INACTIVE_FILE if lru == I.LRU_INACTIVE_ANON else I.LRU_INACTIVE_ANON
        for x in (lru, lru + 1):
            scanned = targets[x] - nr[x]
            nr[x] = targets[x] * (100 - percentage) // 100
            nr[x] -= min(nr[x], scanned)
    sc.nr_reclaimed += nr_reclaimed
    if can_reclaim_anon_pages(m) and inactive_is_low(m, nid, I.LRU_INACTIVE_ANON):
        shrink_active_list(m, nid, SWAP_CLUSTER_MAX, sc, I.LRU_ACTIVE_ANON)


def prepare_scan_count(m: Machine, nid: int, sc: ScanControl) -> None:
    """prepare_scan_count() (6.1): the costs; may the active lists be deactivated (new
    refaults since the last snapshot, or the inactive list is low); cache-trim mode (plenty of
    inactive file pages and no need to deactivate file); is the file LRU tiny."""
    lv = m.lruvecs[nid]
    sc.anon_cost = lv.anon_cost
    sc.file_cost = lv.file_cost
    ns = m.node_stat[nid]
    if sc.force_deactivate:
        sc.may_deactivate = DEACTIVATE_ANON | DEACTIVATE_FILE
    else:
        for bit, name, i, inactive in (
            (DEACTIVATE_ANON, "workingset_activate_anon", 0, I.LRU_INACTIVE_ANON),
            (DEACTIVATE_FILE, "workingset_activate_file", 1, I.LRU_INACTIVE_FILE),
        ):
            if ns[name] != lv.refaults[i] or inactive_is_low(m, nid, inactive):
                sc.may_deactivate |= bit
            else:
                sc.may_deactivate &= ~bit
    file = lru_size(m, nid, I.LRU_INACTIVE_FILE)
    sc.cache_trim_mode = bool(file >> sc.priority) and not (sc.may_deactivate & DEACTIVATE_FILE)
    zs = m.state.zs
    zones = [z for z in _node_zones(m, nid) if zs[z, I.ZF_MANAGED]]
    free = int(sum(zs[z, I.ZF_NR_FREE_PAGES] for z in zones))
    total_high = int(sum(zs[z, I.ZF_WMARK_HIGH] for z in zones))
    file = lru_size(m, nid, I.LRU_ACTIVE_FILE) + lru_size(m, nid, I.LRU_INACTIVE_FILE)
    anon = lru_size(m, nid, I.LRU_INACTIVE_ANON)
    sc.file_is_tiny = (
        file + free <= total_high
        and not (sc.may_deactivate & DEACTIVATE_ANON)
        and bool(anon >> sc.priority)
    )


def in_reclaim_compaction(sc: ScanControl) -> bool:
    return bool(
        (sc.gfp_mask & __GFP_IO)
        and sc.order
        and (sc.order > PAGE_ALLOC_COSTLY_ORDER or sc.priority < DEF_PRIORITY - 2)
    )


def should_continue_reclaim(m: Machine, nid: int, nr_reclaimed: int, sc: ScanControl) -> bool:
    """should_continue_reclaim() (6.1): reclaim for compaction goes on until a zone is
    suitable for compaction, while it makes progress and inactive pages remain."""
    if not in_reclaim_compaction(sc) or not nr_reclaimed:
        return False
    st = m.state
    for z in _node_zones(m, nid, sc.reclaim_idx):
        if not st.zs[z, I.ZF_MANAGED]:
            continue
        r = compaction.compaction_suitable(st, z, sc.order, 0, sc.reclaim_idx)
        if r in (compaction.COMPACT_SUCCESS, compaction.COMPACT_CONTINUE):
            return False
    inactive = lru_size(m, nid, I.LRU_INACTIVE_FILE)
    if can_reclaim_anon_pages(m):
        inactive += lru_size(m, nid, I.LRU_INACTIVE_ANON)
    return inactive > 2 << sc.order


def shrink_node(m: Machine, nid: int, sc: ScanControl) -> None:
    """shrink_node() (6.1): prepare_scan_count, shrink_lruvec, shrink_slab (its freed pages
    count as reclaimed), repeated while should_continue_reclaim; a pass that reclaimed resets
    kswapd_failures."""
    st = m.state
    while True:
        nr_reclaimed = sc.nr_reclaimed
        prepare_scan_count(m, nid, sc)
        shrink_lruvec(m, nid, sc)
        sc.nr_reclaimed += shrink_slab(m, sc.gfp_mask, nid, sc.priority)
        progress = sc.nr_reclaimed - nr_reclaimed
        if not should_continue_reclaim(m, nid, progress, sc):
            break
    if progress:
        st.nd[nid, I.ND_KSWAPD_FAILURES] = 0


def shrink_slab(m: Machine, gfp: int, nid: int, priority: int) -> int:
    """shrink_slab() / do_shrink_slab() (6.1) over the registered shrinkers: each scans
    ``freeable >> priority`` * 4 / seeks objects plus its deferred work, in batches of 128,
    capped at twice what it has; unfinished work is deferred. Needs __GFP_FS. Returns the pages
    the shrinkers freed (reclaim_state->reclaimed_slab)."""
    if not m.shrinkers or not (gfp & __GFP_FS):
        return 0
    lv = m.lruvecs[nid]
    freed_before = int(m.state.vm[I.VM_PGFREE])
    for i, sh in enumerate(m.shrinkers):
        freeable = int(sh.count_objects(nid))
        if freeable <= 0:
            continue
        seeks = int(getattr(sh, "seeks", DEFAULT_SEEKS))
        nr = lv.nr_deferred.pop(i, 0)
        if seeks:
            delta = (freeable >> priority) * 4 // seeks
        else:
            delta = freeable // 2
        total_scan = min((nr >> priority) + delta, 2 * freeable)
        batch = int(getattr(sh, "batch", 0)) or SHRINK_BATCH
        scanned = 0
        while total_scan >= batch or total_scan >= freeable:
            nr_to_scan = min(batch, total_scan)
            sh.scan_objects(nid, nr_to_scan)
            m.count_vm_event("slabs_scanned", nr_to_scan)
            total_scan -= nr_to_scan
            scanned += nr_to_scan
            if nr_to_scan == 0:
                break
        next_deferred = min(max(nr + delta - scanned, 0), 2 * freeable)
        if next_deferred:
            lv.nr_deferred[i] = next_deferred
    return int(m.state.vm[I.VM_PGFREE]) - freed_before


# ---------------------------------------------------------------------------------------------
# direct reclaim and kswapd
# ---------------------------------------------------------------------------------------------


def compaction_ready(m: Machine, z: int, sc: ScanControl) -> bool:
    """compaction_ready() (6.1): compaction would succeed, or has enough free memory above
    the high watermark plus compact_gap to work with."""
    st = m.state
    r = compaction.compaction_suitable(st, z, sc.order, 0, sc.reclaim_idx)
    if r == compaction.COMPACT_SUCCESS:
        return True
    if r == compaction.COMPACT_SKIPPED:
        return False
    mark = int(st.zs[z, I.ZF_WMARK_HIGH]) + (2 << sc.order)
    free = int(st.zs[z, I.ZF_NR_FREE_PAGES])
    return bool(pa.__zone_watermark_ok(st, z, 0, mark, sc.reclaim_idx, 0, free))


def try_to_free_pages(m: Machine, gfp: int, order: int, nid: int) -> int:
    """try_to_free_pages() / do_try_to_free_pages() / shrink_zones() (6.1): direct reclaim of
    SWAP_CLUSTER_MAX pages at falling priorities over the request's zonelist, each node once;
    a costly order stops early where compaction is ready. Returns pages reclaimed (1 if only
    compaction became ready). The allocstall count is the caller's."""
    sc = ScanControl(
        gfp_mask=gfp, order=order, reclaim_idx=m.gfp_zone(gfp), nr_to_reclaim=SWAP_CLUSTER_MAX
    )
    initial = sc.priority
    zonelist = m.zonelist(gfp, nid)
    with _Reclaiming(m):
        while True:
            while sc.priority >= 0:
                sc.nr_scanned = 0
                done_nodes: set[int] = set()
                for z in zonelist:
                    if z % m.nr_zone_types > sc.reclaim_idx:
                        continue
                    if (
                        sc.order > PAGE_ALLOC_COSTLY_ORDER
                        and m.state.zs[z, I.ZF_MANAGED]
                        and compaction_ready(m, z, sc)
                    ):
                        sc.compaction_ready = True
                        continue
                    zn = z // m.nr_zone_types
                    if zn in done_nodes:
                        continue
                    done_nodes.add(zn)
                    shrink_node(m, zn, sc)
                if sc.nr_reclaimed >= sc.nr_to_reclaim or sc.compaction_ready:
                    break
                if sc.priority < DEF_PRIORITY - 2:
                    sc.may_writepage = True
                sc.priority -= 1
            for zn in {z // m.nr_zone_types for z in zonelist}:
                snapshot_refaults(m, zn)
            if sc.nr_reclaimed:
                return sc.nr_reclaimed
            if sc.compaction_ready:
                return 1
            if sc.skipped_deactivate:
                sc.priority = initial
                sc.force_deactivate = True
                sc.skipped_deactivate = False
                continue
            return 0


def snapshot_refaults(m: Machine, nid: int) -> None:
    """snapshot_refaults(): remember the activation counts reclaim has seen."""
    ns = m.node_stat[nid]
    m.lruvecs[nid].refaults = [ns["workingset_activate_anon"], ns["workingset_activate_file"]]


def kswapd_age_node(m: Machine, nid: int, sc: ScanControl) -> None:
    """kswapd_age_node() (6.1): with swap, deactivate active anon pages while the inactive
    anon list is low."""
    if can_reclaim_anon_pages(m) and inactive_is_low(m, nid, I.LRU_INACTIVE_ANON):
        shrink_active_list(m, nid, SWAP_CLUSTER_MAX, sc, I.LRU_ACTIVE_ANON)


def kswapd_shrink_node(m: Machine, nid: int, sc: ScanControl) -> bool:
    """kswapd_shrink_node() (6.1): reclaim the sum over the zones up to reclaim_idx of
    max(high watermark, SWAP_CLUSTER_MAX); once twice the request (compact_gap) is reclaimed,
    check watermarks at order 0 only. True if it scanned as much as it wanted to reclaim."""
    zs = m.state.zs
    sc.nr_to_reclaim = sum(
        max(int(zs[z, I.ZF_WMARK_HIGH]), SWAP_CLUSTER_MAX)
        for z in _node_zones(m, nid, sc.reclaim_idx)
        if zs[z, I.ZF_MANAGED]
    )
    shrink_node(m, nid, sc)
    if sc.order and sc.nr_reclaimed >= 2 << sc.order:
        sc.order = 0
    return sc.nr_scanned >= sc.nr_to_reclaim


def balance_pgdat(m: Machine, nid: int, order: int, highest_zoneidx: int) -> int:
    """balance_pgdat() (6.1): reclaim at falling priorities (DEF_PRIORITY .. 1) until the node
    is balanced for the order; a boosted watermark makes kswapd reclaim the boost even when
    balanced (without swapping or writing, and restarting without it when that is not enough).
    The priority falls when a pass scanned less than it wanted or reclaimed nothing.
    Afterwards the boosts taken at the start are removed and kcompactd is woken for
    pageblock_order; a run that reclaimed nothing counts a kswapd failure. Returns the order
    reclaim ended with (0 once twice the request was reclaimed).
    ``Machine.hooks.kswapd_reclaim``, if set, replaces kswapd_shrink_node (it gets the machine,
    node, order and highest zone index, and returns pages reclaimed)."""
    st = m.state
    m.count_vm_event("pageoutrun")
    zones = [z for z in _node_zones(m, nid, highest_zoneidx) if st.zs[z, I.ZF_MANAGED]]
    boosts = {z: int(st.zs[z, I.ZF_BOOST]) for z in zones}
    nr_boost_reclaim = sum(boosts.values())
    boosted = nr_boost_reclaim > 0
    sc = ScanControl(gfp_mask=GFP_KERNEL, order=order, reclaim_idx=highest_zoneidx, kswapd=True)
    hook = m.hooks.kswapd_reclaim
    with _Reclaiming(m):
        while True:  # restart:
            sc.priority = DEF_PRIORITY
            restart = False
            while sc.priority >= 1:
                before = sc.nr_reclaimed
                raise_priority = True
                balanced = pa.pgdat_balanced(st, nid, sc.order, highest_zoneidx)
                if not balanced and nr_boost_reclaim:
                    nr_boost_reclaim = 0
                    restart = True
                    break
                if not nr_boost_reclaim and balanced:
                    break
                if nr_boost_reclaim and sc.priority == DEF_PRIORITY - 2:
                    raise_priority = False
                sc.may_writepage = not nr_boost_reclaim
                sc.may_swap = not nr_boost_reclaim
                kswapd_age_node(m, nid, sc)
                if sc.priority < DEF_PRIORITY - 2:
                    sc.may_writepage = True
                sc.nr_scanned = 0
                if hook is not None:
                    got = int(hook(m, nid, sc.order, highest_zoneidx))
                    sc.nr_reclaimed += got
                    if sc.order and sc.nr_reclaimed >= 2 << sc.order:
                        sc.order = 0
                    if got:
                        raise_priority = False
                elif kswapd_shrink_node(m, nid, sc):
                    raise_priority = False
                got = sc.nr_reclaimed - before
                nr_boost_reclaim -= min(nr_boost_reclaim, got)
                if nr_boost_reclaim and not got:
                    break
                if raise_priority or not got:
                    sc.priority -= 1
            else:
                if not sc.nr_reclaimed:
                    st.nd[nid, I.ND_KSWAPD_FAILURES] += 1
            if not restart:
                break
    if sc.nr_reclaimed:
        st.nd[nid, I.ND_KSWAPD_FAILURES] = 0
    if boosted:
        for z, b in boosts.items():
            if b:
                st.zs[z, I.ZF_BOOST] -= min(int(st.zs[z, I.ZF_BOOST]), b)
        pa.wakeup_kcompactd(st, nid, m.pageblock_order, highest_zoneidx)
    snapshot_refaults(m, nid)
    return sc.order


def prepare_kswapd_sleep(m: Machine, nid: int, order: int, highest_zoneidx: int) -> bool:
    """prepare_kswapd_sleep() (6.1): a hopeless node, or a balanced one."""
    st = m.state
    if st.nd[nid, I.ND_KSWAPD_FAILURES] >= pa.MAX_RECLAIM_RETRIES:
        return True
    return bool(pa.pgdat_balanced(st, nid, order, highest_zoneidx))


def kswapd(m: Machine, nid: int) -> None:
    """One wake-up of kswapd() (6.1): take the requested order and highest zone, reset them,
    balance_pgdat(); then kswapd_try_to_sleep(): if balance_pgdat dropped to order 0 after
    reclaiming, try to sleep with the allocation's order, else (the loop's next round, the
    order read back as 0) with order 0; a node that can sleep has the skip bits of a finished
    direct compaction flushed (reset_isolation_suitable) and kcompactd woken for that order."""
    st = m.state
    st.nd[nid, I.ND_KSWAPD_AWAKE] = 0
    order = max(int(st.nd[nid, I.ND_KSWAPD_ORDER]), 0)
    hz = int(st.nd[nid, I.ND_KSWAPD_HIGHEST_ZONEIDX])
    if hz < 0:
        hz = m.nr_zone_types - 1
    st.nd[nid, I.ND_KSWAPD_ORDER] = 0
    st.nd[nid, I.ND_KSWAPD_HIGHEST_ZONEIDX] = -1
    reclaim_order = balance_pgdat(m, nid, order, hz)
    alloc_order = order
    if reclaim_order >= alloc_order:
        alloc_order = reclaim_order = 0
    if prepare_kswapd_sleep(m, nid, reclaim_order, hz):
        compaction.reset_isolation_suitable(m, nid)
        pa.wakeup_kcompactd(st, nid, alloc_order, hz)


# ---------------------------------------------------------------------------------------------
# the flusher
# ---------------------------------------------------------------------------------------------


def writeback(m: Machine) -> None:
    """The flusher threads (wb_workfn, fs/fs-writeback.c) as one step: pages whose writeback
    was under way complete (folio_end_writeback: a page reclaim asked for rotates to its
    inactive list's tail, pgrotated), then every dirty file page starts writeback
    (nr_written). ``Machine.advance`` runs it once every dirty_writeback_centisecs (5 s).
    SIMPLIFICATION: no dirty_expire interval and no throttling of dirtiers: each flusher
    period writes every dirty page, and a write takes one period."""
    st = m.state
    now = m.now
    if now < m.next_writeback_ns:
        return
    m.next_writeback_ns = now + DIRTY_WRITEBACK_NS
    fl = st.flags
    busy = np.flatnonzero(fl & (PG_writeback | PG_dirty))  # one pass over mem_map
    if not len(busy):
        return
    f = fl[busy]
    done = busy[(f & PG_writeback) != 0]
    if len(done):
        fl[done] &= ~PG_writeback
        rotated = pa.lru_rotate_reclaimable(st, done, len(done))
        if rotated:
            m.count_vm_event("pgrotated", rotated)
    dirty = busy[((f & PG_dirty) != 0) & ((f & (PG_anon | PG_swapbacked)) == 0)]
    if len(dirty):
        fl[dirty] = (fl[dirty] & ~PG_dirty) | PG_writeback
        nids = m.pfn_to_nid(dirty)
        for nid in range(m.nr_nodes):
            n = int(np.count_nonzero(nids == nid))
            if n:
                m.mod_node_page_state(nid, "nr_written", n)
