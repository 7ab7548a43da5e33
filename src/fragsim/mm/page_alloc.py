"""The buddy page allocator. Models mm/page_alloc.c of Linux 6.1.192: free lists, expand,
__free_one_page, the fallback/steal rules, highatomic reserves, CMA, per-CPU page lists, the
watermark checks and the allocation fast path, compiled with numba. Every function names the kernel
function it models.

The hot path (a pcp hit on allocation, a pcp add on free) is written inline in ``run_events``;
everything else is a helper taking the borrowed ``State`` (fragsim/mm/_numba.py says why). The
slow path (``__alloc_pages_slowpath``), watermark set-up and the per-operation API are Python, in
fragsim/mm/machine.py, because they run rarely and later issues plug reclaim and compaction in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fragsim.mm._numba import borrow, njit
from fragsim.mm.gfp import (
    __GFP_ATOMIC,
    __GFP_COMP,
    __GFP_DIRECT_RECLAIM,
    __GFP_HIGH,
    __GFP_KSWAPD_RECLAIM,
    __GFP_NOMEMALLOC,
    GFP_MOVABLE_MASK,
    GFP_MOVABLE_SHIFT,
    GFP_ZONEMASK,
)
from fragsim.mm.internal import (
    ALLOC_CMA,
    ALLOC_CPUSET,
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS,
    ALLOC_NOFRAGMENT,
    ALLOC_NON_BLOCK,
    ALLOC_OOM,
    ALLOC_RESERVES,
    ALLOC_WMARK_HIGH,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MASK,
    ALLOC_WMARK_MIN,
    EV_ARG,
    EV_CPU,
    EV_FLAGS,
    EV_GFP,
    EV_NID,
    EV_OP,
    EV_ORDER,
    FPI_NONE,
    FPI_TO_TAIL,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LRU_UNEVICTABLE,
    MAX_NR_ZONES,
    ND_KCOMPACTD_AWAKE,
    ND_KCOMPACTD_HIGHEST_ZONEIDX,
    ND_KCOMPACTD_MAX_ORDER,
    ND_KSWAPD_AWAKE,
    ND_KSWAPD_FAILURES,
    ND_KSWAPD_HIGHEST_ZONEIDX,
    ND_KSWAPD_ORDER,
    ND_KSWAPD_WAKEUPS,
    NR_LRU_LISTS,
    OP_ALLOC,
    OP_DRAIN_ALL,
    OP_FREE_HANDLE,
    OP_FREE_PFN,
    OP_GET_PAGE_FROM_FREELIST,
    OP_PREP_NEW_PAGE,
    OP_UNRESERVE_HIGHATOMIC,
    P_BOOST_FACTOR,
    P_CAPC_ORDER,
    P_CAPC_PAGE,
    P_CAPC_ZONE,
    P_CONFIG_CMA,
    P_CPU,
    P_GFPZONE,
    P_GROUPING_DISABLED,
    P_LRU_SENT,
    P_NOW,
    P_NR_CPUS,
    P_NR_ONLINE_NODES,
    P_NR_PCP_LISTS,
    P_NR_ZONE_TYPES,
    P_PAGEBLOCK_ORDER,
    P_PCP_BATCH_SCALE_MAX,
    P_PCP_MAX_ORDER,
    P_PCP_THP,
    P_SEQ,
    P_TPOS,
    P_TRACE,
    P_ZONE_DMA32,
    P_ZONE_DMA32_IDX,
    P_ZONE_NORMAL_IDX,
    PCP_BATCH,
    PCP_COUNT,
    PCP_FREE_FACTOR,
    PCP_HIGH,
    RUN_DONE,
    RUN_EBADORDER,
    RUN_EHANDLE,
    RUN_ENOTALLOC,
    RUN_EOUTSIDE,
    RUN_EWRONGORDER,
    RUN_SLOWPATH,
    RUN_TRACE_FULL,
    TB_A,
    TB_B,
    TB_C,
    TB_D,
    TB_ID,
    TB_ORDER,
    TB_PFN,
    TB_TIME,
    TP_MM_PAGE_ALLOC,
    TP_MM_PAGE_ALLOC_EXTFRAG,
    TP_MM_PAGE_ALLOC_ZONE_LOCKED,
    TP_MM_PAGE_FREE,
    TP_MM_PAGE_PCPU_DRAIN,
    TP_MM_VMSCAN_WAKEUP_KSWAPD,
    VM_PGFREE,
    ZF_BOOST,
    ZF_END,
    ZF_FLAGS,
    ZF_FREE_SENT,
    ZF_LOWMEM_RESERVE,
    ZF_MANAGED,
    ZF_NODE,
    ZF_NR_FREE_CMA,
    ZF_NR_FREE_PAGES,
    ZF_NR_ISOLATE_PAGEBLOCK,
    ZF_NR_LRU,
    ZF_NR_RESERVED_HIGHATOMIC,
    ZF_PCP_SENT,
    ZF_PGALLOC,
    ZF_START,
    ZF_WMARK_HIGH,
    ZF_WMARK_LOW,
    ZF_WMARK_MIN,
    ZF_ZIDX,
    ZONE_BOOSTED_WATERMARK,
    ZONE_RECLAIM_ACTIVE,
    State,
)
from fragsim.mm.mmzone import (
    MAX_ORDER,
    MIGRATE_CMA,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
    PAGE_ALLOC_COSTLY_ORDER,
    PB_MIGRATE_SKIP,
    PB_MIGRATETYPE_MASK,
    PB_WAS_HIGHATOMIC,
)
from fragsim.mm.page import (
    PG_active,
    PG_buddy,
    PG_dirty,
    PG_head,
    PG_lru,
    PG_movable,
    PG_pcp,
    PG_reclaim,
    PG_referenced,
    PG_reserved,
    PG_swapbacked,
    PG_tail,
    PG_unevictable,
    PG_writeback,
    PG_young,
)

# fallbacks[] (mm/page_alloc.c, 6.1): two fallback types per pcp type, MIGRATE_TYPES ends a row.
FALLBACKS = np.array(
    [
        [MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE, MIGRATE_TYPES],
        [MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE, MIGRATE_TYPES],
        [MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_TYPES],
    ],
    dtype=np.int64,
)
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NO_PAGE = -1


@njit
def borrow_state(st: State) -> State:
    """The state with every array borrowed (fragsim/mm/_numba.py), for one compiled call."""
    return State(
        borrow(st.nxt),
        borrow(st.prv),
        borrow(st.flags),
        borrow(st.order),
        borrow(st.pcpmt),
        borrow(st.refcount),
        borrow(st.owner),
        borrow(st.zoneid),
        borrow(st.mops),
        borrow(st.pb),
        borrow(st.zs),
        borrow(st.nr_free),
        borrow(st.pcp),
        borrow(st.nd),
        borrow(st.vm),
        borrow(st.zonelist),
        borrow(st.prm),
        borrow(st.tbuf),
        borrow(st.drv),
    )


# ---------------------------------------------------------------------------------------------
# include/linux/list.h on the pfn-indexed link arrays
# ---------------------------------------------------------------------------------------------


@njit(inline="always")
def list_add(nxt: Any, prv: Any, node: int, head: int) -> None:
    """list_add(): insert after the head."""
    first = nxt[head]
    nxt[node] = first
    prv[node] = head
    prv[first] = node
    nxt[head] = node


@njit(inline="always")
def list_add_tail(nxt: Any, prv: Any, node: int, head: int) -> None:
    """list_add_tail(): insert before the head."""
    last = prv[head]
    nxt[node] = head
    prv[node] = last
    nxt[last] = node
    prv[head] = node


@njit(inline="always")
def list_del(nxt: Any, prv: Any, node: int) -> None:
    """list_del(): unlink; the node's own links are poisoned with -1."""
    n = nxt[node]
    p = prv[node]
    nxt[p] = n
    prv[n] = p
    nxt[node] = -1
    prv[node] = -1


# ---------------------------------------------------------------------------------------------
# the LRU lists (include/linux/mm_inline.h, mm/swap.c, isolate_lru_folios of mm/vmscan.c)
# ---------------------------------------------------------------------------------------------


@njit(inline="always")
def folio_lru_list(f: int) -> int:
    """folio_lru_list(): unevictable, else (in)active anon (PageSwapBacked) or file."""
    if f & PG_unevictable:
        return LRU_UNEVICTABLE
    lru = LRU_INACTIVE_ANON if f & PG_swapbacked else LRU_INACTIVE_FILE
    if f & PG_active:
        lru += 1
    return lru


@njit(inline="always")
def lru_head(s: State, nid: int, lru: int) -> int:
    return int(s.prm[P_LRU_SENT]) + nid * NR_LRU_LISTS + lru


@njit
def lruvec_add_folio(s: State, pfn: int, tail: bool) -> None:
    """lruvec_add_folio() (at the head) / lruvec_add_folio_tail(): onto the node's list for
    the page's flags, counted in the zone's NR_ZONE_LRU_BASE + lru, PG_lru set."""
    f = s.flags[pfn]
    lru = folio_lru_list(f)
    z = int(s.zoneid[pfn])
    head = lru_head(s, int(s.zs[z, ZF_NODE]), lru)
    if tail:
        list_add_tail(s.nxt, s.prv, pfn, head)
    else:
        list_add(s.nxt, s.prv, pfn, head)
    s.zs[z, ZF_NR_LRU + lru] += 1 << s.order[pfn]
    s.flags[pfn] = f | PG_lru


@njit
def lruvec_del_folio(s: State, pfn: int) -> None:
    """lruvec_del_folio() with the PG_lru clear of its callers (folio_test_clear_lru)."""
    f = s.flags[pfn]
    z = int(s.zoneid[pfn])
    list_del(s.nxt, s.prv, pfn)
    s.zs[z, ZF_NR_LRU + folio_lru_list(f)] -= 1 << s.order[pfn]
    s.flags[pfn] = f & ~PG_lru


@njit
def set_caller_flags(s: State, page: int, flags: int) -> None:
    """What the caller does to a new page (EV_FLAGS): set its page flags; PG_lru means
    lru_cache_add() (folio_add_lru: onto its LRU list's head).
    SIMPLIFICATION: no per-CPU lru_add batch (folio_batch): the page is on the list at once."""
    s.flags[page] |= flags & ~PG_lru
    if flags & PG_lru:
        lruvec_add_folio(s, page, False)


@njit
def isolate_lru_folios(
    s: State, nid: int, lru: int, nr_to_scan: int, reclaim_idx: int, out: Any
) -> tuple[int, int, int]:
    """isolate_lru_folios() (6.1): take up to ``nr_to_scan`` pages from the tail of the node's
    list ``lru`` into ``out`` (PG_lru cleared, a reference taken: folio_try_get); pages of zones
    above ``reclaim_idx`` are skipped and spliced back at the head. Returns (taken, scanned,
    skipped)."""
    head = lru_head(s, nid, lru)
    nzt = s.prm[P_NR_ZONE_TYPES]
    taken = 0
    scan = 0
    total_scan = 0
    nskip = 0
    skipped_first = -1
    while scan < nr_to_scan and s.prv[head] != head:
        page = int(s.prv[head])
        if page == skipped_first:
            break  # every page left is a skipped one
        nr = 1 << s.order[page]
        total_scan += nr
        if s.zoneid[page] % nzt > reclaim_idx:
            list_del(s.nxt, s.prv, page)
            list_add(s.nxt, s.prv, page, head)
            if skipped_first < 0:
                skipped_first = page
            nskip += nr
            continue
        scan += nr
        lruvec_del_folio(s, page)
        s.refcount[page] += 1
        out[taken] = page
        taken += 1
    return taken, total_scan, nskip


@njit
def move_folios_to_lru(s: State, pfns: Any, n: int, cpu: int) -> int:
    """move_folios_to_lru() (6.1): each isolated page, in order, back on the head of the list
    its flags name, dropping the isolation reference; a page whose last reference that was is
    freed. Returns the pages put back."""
    moved = 0
    for i in range(n):
        page = int(pfns[i])
        s.refcount[page] -= 1
        if s.refcount[page] == 0:
            s.refcount[page] = 1
            free_the_page(s, page, int(s.order[page]), cpu)
            continue
        lruvec_add_folio(s, page, False)
        moved += 1 << s.order[page]
    return moved


#: shrink_folio_list_decide's answers: back on the list as they are, activated, freed (a clean
#: file page), or an anonymous page to swap out (the caller asks the swap device)
FOLIO_KEEP, FOLIO_ACTIVATE, FOLIO_FREE, FOLIO_SWAP = 0, 1, 2, 3


@njit
def shrink_folio_list_decide(
    s: State, handles: Any, pfns: Any, n: int, flags_out: Any, action: Any
) -> int:
    """The decisions of shrink_folio_list() (6.1) for isolated pages, one each in ``action``
    and the page's new flags in ``flags_out`` (the caller writes them back); returns the dirty
    file pages left to the flusher (nr_vmscan_immediate_reclaim).

    * under writeback: PG_reclaim, activated;
    * folio_check_references(): the young bit is cleared (and PG_referenced); a young
      swap-backed page, or a young page seen before (PG_referenced), is activated; another
      young page is kept and marked referenced;
    * a page with references beyond its mapping and the isolation (pinned): try_to_unmap
      fails for anon (activated), __remove_mapping for file (kept);
    * a page allocated under no handle of the machine (no owner reclaim could tell) is kept;
    * a dirty file page is left to the flusher: PG_reclaim, activated;
    * an anonymous page goes to swap (FOLIO_SWAP), a clean file page is freed."""
    ndirty = 0
    nh = handles.shape[0]
    for i in range(n):
        page = int(pfns[i])
        f = int(s.flags[page])
        young = f & PG_young
        referenced = f & PG_referenced
        swapbacked = f & PG_swapbacked
        f &= ~(PG_young | PG_referenced)
        act = FOLIO_KEEP
        if f & PG_writeback:
            f |= PG_reclaim
            act = FOLIO_ACTIVATE
        elif young:
            if swapbacked or referenced:
                act = FOLIO_ACTIVATE
            else:
                f |= PG_referenced
        elif s.refcount[page] > 2:
            act = FOLIO_ACTIVATE if swapbacked else FOLIO_KEEP
        else:
            o = int(s.owner[page])
            if o < 0 or o >= nh or handles[o] != page:
                act = FOLIO_KEEP
            elif swapbacked:
                act = FOLIO_SWAP
            elif f & PG_dirty:
                f |= PG_reclaim
                act = FOLIO_ACTIVATE
                ndirty += 1
            else:
                act = FOLIO_FREE
        flags_out[i] = f
        action[i] = act
    return ndirty


@njit
def free_isolated_folios(s: State, pfns: Any, n: int, cpu: int) -> int:
    """free_unref_page_list() of reclaimed pages: their mapping and the isolation reference
    are gone (``__remove_mapping``); returns pages freed."""
    freed = 0
    for i in range(n):
        page = int(pfns[i])
        s.refcount[page] = 1
        freed += 1 << s.order[page]
        free_the_page(s, page, int(s.order[page]), cpu)
    return freed


@njit
def lru_rotate_reclaimable(s: State, pfns: Any, n: int) -> int:
    """folio_rotate_reclaimable() at the end of writeback (6.1): a page reclaim asked for
    (PG_reclaim), on an LRU list and clean, moves to the tail of its inactive list, losing
    PG_active. Returns the pages rotated (pgrotated)."""
    rotated = 0
    for i in range(n):
        page = int(pfns[i])
        f = s.flags[page]
        if not (f & PG_reclaim):
            continue
        s.flags[page] = f & ~PG_reclaim
        if (f & PG_lru) and not (f & (PG_dirty | PG_unevictable)):
            lruvec_del_folio(s, page)
            s.flags[page] &= ~PG_active
            lruvec_add_folio(s, page, True)
            rotated += 1 << s.order[page]
    return rotated


@njit
def lru_move(s: State, pfns: Any, n: int, set_flags: int, clear_flags: int) -> int:
    """Change the flags that choose the list of pages on an LRU list, moving each to its new
    list's head (folio_activate, deactivate_file_folio, folio_mark_accessed's activation).
    Pages not on an LRU list only get the flags. Returns the pages that changed list."""
    moved = 0
    for i in range(n):
        page = int(pfns[i])
        f = s.flags[page]
        nf = (f | set_flags) & ~clear_flags
        if not (f & PG_lru):
            s.flags[page] = nf
            continue
        if folio_lru_list(nf) == folio_lru_list(f):
            s.flags[page] = nf
            continue
        lruvec_del_folio(s, page)
        s.flags[page] = nf & ~PG_lru
        lruvec_add_folio(s, page, False)
        moved += 1 << s.order[page]
    return moved


# ---------------------------------------------------------------------------------------------
# tracepoints (include/trace/events/kmem.h)
# ---------------------------------------------------------------------------------------------


@njit(inline="always")
def trace(s: State, tp: int, pfn: int, order: int, a: int, b: int, c: int, d: int) -> None:
    """Record one tracepoint hit if that tracepoint is enabled (one check when it is not)."""
    if not (s.prm[P_TRACE] >> tp) & 1:
        return
    i = s.prm[P_TPOS]
    s.prm[P_SEQ] += 1
    if i >= s.tbuf.shape[0]:
        return  # counted as lost: P_SEQ - P_TPOS
    row = s.tbuf[i]
    row[TB_ID] = tp | (s.prm[P_CPU] << 16)
    row[TB_TIME] = s.prm[P_NOW]
    row[TB_PFN] = pfn
    row[TB_ORDER] = order
    row[TB_A] = a
    row[TB_B] = b
    row[TB_C] = c
    row[TB_D] = d
    s.prm[P_TPOS] = i + 1


# ---------------------------------------------------------------------------------------------
# pageblock bitmap (mm/page_alloc.c get/set_pfnblock_flags_mask)
# ---------------------------------------------------------------------------------------------


@njit(inline="always")
def get_pageblock_migratetype(s: State, pfn: int) -> int:
    return int(s.pb[pfn >> s.prm[P_PAGEBLOCK_ORDER]]) & PB_MIGRATETYPE_MASK


@njit(inline="always")
def set_pageblock_migratetype(s: State, pfn: int, mt: int) -> None:
    """set_pageblock_migratetype(): without mobility grouping, pcp types are stored UNMOVABLE."""
    if s.prm[P_GROUPING_DISABLED] and mt < MIGRATE_PCPTYPES:
        mt = MIGRATE_UNMOVABLE
    i = pfn >> s.prm[P_PAGEBLOCK_ORDER]
    keep = PB_MIGRATE_SKIP | PB_WAS_HIGHATOMIC
    if mt == MIGRATE_HIGHATOMIC:
        keep = PB_MIGRATE_SKIP
        mt |= PB_WAS_HIGHATOMIC
    s.pb[i] = (s.pb[i] & keep) | mt


# ---------------------------------------------------------------------------------------------
# free lists
# ---------------------------------------------------------------------------------------------


@njit(inline="always")
def free_list(s: State, z: int, order: int, mt: int) -> int:
    """Index of the list head of zone->free_area[order].free_list[mt]."""
    return s.zs[z, ZF_FREE_SENT] + order * MIGRATE_TYPES + mt


@njit(inline="always")
def add_to_free_list(s: State, z: int, pfn: int, order: int, mt: int, tail: bool) -> None:
    """add_to_free_list() / add_to_free_list_tail() with set_buddy_order()."""
    head = free_list(s, z, order, mt)
    if tail:
        list_add_tail(s.nxt, s.prv, pfn, head)
    else:
        list_add(s.nxt, s.prv, pfn, head)
    s.flags[pfn] |= PG_buddy
    s.order[pfn] = order
    s.nr_free[z, order] += 1


@njit(inline="always")
def del_page_from_free_list(s: State, z: int, pfn: int, order: int) -> None:
    list_del(s.nxt, s.prv, pfn)
    s.flags[pfn] &= ~PG_buddy
    s.nr_free[z, order] -= 1


@njit(inline="always")
def move_to_free_list(s: State, z: int, pfn: int, order: int, mt: int) -> None:
    """move_to_free_list(): list_move_tail onto the new type's list."""
    list_del(s.nxt, s.prv, pfn)
    list_add_tail(s.nxt, s.prv, pfn, free_list(s, z, order, mt))


@njit(inline="always")
def mod_zone_freepage_state(s: State, z: int, nr: int, mt: int) -> None:
    """__mod_zone_freepage_state(): NR_FREE_PAGES, and NR_FREE_CMA_PAGES for CMA."""
    s.zs[z, ZF_NR_FREE_PAGES] += nr
    if mt == MIGRATE_CMA:
        s.zs[z, ZF_NR_FREE_CMA] += nr


@njit(inline="always")
def find_buddy_page_pfn(s: State, pfn: int, order: int) -> int:
    """find_buddy_page_pfn(): the buddy's pfn if it is a free block of this order in the same
    zone (page_is_buddy()), else -1."""
    buddy = pfn ^ (1 << order)
    if buddy >= s.flags.shape[0]:
        return -1
    if not (s.flags[buddy] & PG_buddy):
        return -1
    if s.order[buddy] != order or s.zoneid[buddy] != s.zoneid[pfn]:
        return -1
    return buddy


@njit(inline="always")
def buddy_merge_likely(s: State, pfn: int, buddy_pfn: int, order: int) -> bool:
    """buddy_merge_likely() (6.1): is the buddy of the would-be parent free at order+1?"""
    if order >= MAX_ORDER - 2:
        return False
    higher = buddy_pfn & pfn
    return find_buddy_page_pfn(s, higher, order + 1) >= 0


@njit(inline="always")
def compaction_capture(s: State, pfn: int, order: int, mt: int) -> bool:
    """compaction_capture() (6.1): while a task compacts this zone directly for an order
    (current->capture_control), the first block of exactly that order its frees make is taken
    for it instead of going on a free list; never CMA or isolated blocks, nor a MOVABLE block
    below pageblock_order (so low orders do not pollute a movable pageblock)."""
    if s.prm[P_CAPC_PAGE] >= 0 or order != s.prm[P_CAPC_ORDER]:
        return False
    if mt == MIGRATE_CMA or mt == MIGRATE_ISOLATE:
        return False
    if order < s.prm[P_PAGEBLOCK_ORDER] and mt == MIGRATE_MOVABLE:
        return False
    s.prm[P_CAPC_PAGE] = pfn
    return True


@njit(inline="always")
def __free_one_page(s: State, z: int, pfn: int, order: int, mt: int, fpi: int) -> None:
    """__free_one_page() (6.1): merge with free buddies up to order MAX_ORDER-1; above
    pageblock_order stop at a non-mergeable type; never re-type; insert at the tail if
    FPI_TO_TAIL or buddy_merge_likely(), else at the head."""
    if mt != MIGRATE_ISOLATE:
        mod_zone_freepage_state(s, z, 1 << order, mt)
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    capc = s.prm[P_CAPC_ZONE] == z  # task_capc(zone): a direct compaction of this zone
    buddy_pfn = 0
    while order < MAX_ORDER - 1:
        if capc and compaction_capture(s, pfn, order, mt):
            mod_zone_freepage_state(s, z, -(1 << order), mt)
            return
        b = find_buddy_page_pfn(s, pfn, order)
        if b < 0:
            buddy_pfn = pfn ^ (1 << order)
            break
        buddy_pfn = b
        if order >= pbo:
            buddy_mt = get_pageblock_migratetype(s, b)
            if mt != buddy_mt and (mt >= MIGRATE_PCPTYPES or buddy_mt >= MIGRATE_PCPTYPES):
                break
        del_page_from_free_list(s, z, b, order)
        pfn = b & pfn
        order += 1
    if fpi & FPI_TO_TAIL:
        to_tail = True
    else:
        to_tail = buddy_merge_likely(s, pfn, buddy_pfn, order)
    add_to_free_list(s, z, pfn, order, mt, to_tail)


@njit(inline="always")
def expand(s: State, z: int, pfn: int, low: int, high: int, mt: int) -> None:
    """expand(): split a 2^high block, putting each upper half at the head of its list."""
    size = 1 << high
    while high > low:
        high -= 1
        size >>= 1
        add_to_free_list(s, z, pfn + size, high, mt, False)


@njit(inline="always")
def pcp_allowed_order(s: State, order: int) -> bool:
    """pcp_allowed_order(): orders <= 3, and pageblock_order with THP."""
    if order <= s.prm[P_PCP_MAX_ORDER]:
        return True
    return s.prm[P_PCP_THP] != 0 and order == s.prm[P_PAGEBLOCK_ORDER]


@njit(inline="always")
def order_to_pindex(s: State, mt: int, order: int) -> int:
    """order_to_pindex(): 3*order + mt, or the THP pair after the low-order lists."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (1 if mt == MIGRATE_MOVABLE else 0)
    return MIGRATE_PCPTYPES * order + mt


@njit(inline="always")
def pindex_to_order(s: State, pindex: int) -> int:
    if pindex >= NR_LOWORDER_PCP_LISTS:
        return int(s.prm[P_PAGEBLOCK_ORDER])
    return pindex // MIGRATE_PCPTYPES


@njit(inline="always")
def __rmqueue_smallest(s: State, z: int, order: int, mt: int) -> int:
    """__rmqueue_smallest(): the head block of the smallest non-empty list >= order, split."""
    for current_order in range(order, MAX_ORDER):
        head = free_list(s, z, current_order, mt)
        pfn = s.nxt[head]
        if pfn == head:
            continue
        del_page_from_free_list(s, z, pfn, current_order)
        expand(s, z, pfn, order, current_order, mt)
        s.pcpmt[pfn] = mt
        trace(
            s,
            TP_MM_PAGE_ALLOC_ZONE_LOCKED,
            pfn,
            order,
            mt,
            1 if (pcp_allowed_order(s, order) and mt < MIGRATE_PCPTYPES) else 0,
            0,
            0,
        )
        return pfn
    return NO_PAGE


@njit(inline="always")
def can_steal_fallback(s: State, order: int, start_mt: int) -> bool:
    """can_steal_fallback() (6.1)."""
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    if order >= pbo:
        return True
    return (
        order >= pbo // 2
        or start_mt == MIGRATE_RECLAIMABLE
        or start_mt == MIGRATE_UNMOVABLE
        or s.prm[P_GROUPING_DISABLED] != 0
    )


@njit
def boost_watermark(s: State, z: int) -> bool:
    """boost_watermark() (6.1)."""
    factor = s.prm[P_BOOST_FACTOR]
    if factor == 0:
        return False
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    if nr * 4 > s.zs[z, ZF_MANAGED]:
        return False
    high = s.zs[z, ZF_WMARK_HIGH]
    max_boost = (high // 10000) * factor + ((high % 10000) * factor) // 10000  # mult_frac
    if max_boost == 0:
        return False
    max_boost = max(nr, max_boost)
    s.zs[z, ZF_BOOST] = min(s.zs[z, ZF_BOOST] + nr, max_boost)
    return True


@njit(inline="always")
def zone_spans_pfn(s: State, z: int, pfn: int) -> bool:
    return s.zs[z, ZF_START] <= pfn < s.zs[z, ZF_END]


@njit
def move_freepages_block(s: State, z: int, pfn: int, mt: int) -> tuple[int, int]:
    """move_freepages_block(): move every free block of pfn's pageblock to the tail of mt's
    lists; returns (pages moved, pages that are PageLRU or __PageMovable)."""
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    start = (pfn >> pbo) << pbo
    end = start + (1 << pbo) - 1
    if not zone_spans_pfn(s, z, start):
        start = pfn
    if not zone_spans_pfn(s, z, end):
        return 0, 0
    moved = 0
    movable = 0
    p = start
    while p <= end:
        f = s.flags[p]
        if not (f & PG_buddy):
            if f & (PG_lru | PG_movable):
                movable += 1
            p += 1
            continue
        o = int(s.order[p])
        move_to_free_list(s, z, p, o, mt)
        p += 1 << o
        moved += 1 << o
    return moved, movable


@njit
def steal_suitable_fallback(
    s: State, z: int, pfn: int, alloc_flags: int, start_type: int, whole_block: bool
) -> None:
    """steal_suitable_fallback() (6.1): claim the whole pageblock when at least half of it is
    free or alike, else move only this block (and, when allowed, the block's other free pages)."""
    current_order = int(s.order[pfn])
    old_block_type = get_pageblock_migratetype(s, pfn)
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    if old_block_type == MIGRATE_HIGHATOMIC:
        move_to_free_list(s, z, pfn, current_order, start_type)
        return
    if current_order >= pbo:
        # change_pageblock_range()
        for i in range(1 << (current_order - pbo)):
            set_pageblock_migratetype(s, pfn + (i << pbo), start_type)
        move_to_free_list(s, z, pfn, current_order, start_type)
        return
    if boost_watermark(s, z) and (alloc_flags & ALLOC_KSWAPD):
        s.zs[z, ZF_FLAGS] |= ZONE_BOOSTED_WATERMARK
    if not whole_block:
        move_to_free_list(s, z, pfn, current_order, start_type)
        return
    free_pages, movable_pages = move_freepages_block(s, z, pfn, start_type)
    if start_type == MIGRATE_MOVABLE:
        alike_pages = movable_pages
    elif old_block_type == MIGRATE_MOVABLE:
        alike_pages = (1 << pbo) - (free_pages + movable_pages)
    else:
        alike_pages = 0
    if free_pages == 0:
        move_to_free_list(s, z, pfn, current_order, start_type)
        return
    if free_pages + alike_pages >= (1 << (pbo - 1)) or s.prm[P_GROUPING_DISABLED]:
        set_pageblock_migratetype(s, pfn, start_type)


@njit
def find_suitable_fallback(
    s: State, z: int, order: int, migratetype: int, only_stealable: bool
) -> tuple[int, bool]:
    """find_suitable_fallback() (6.1): (fallback type or -1, can_steal)."""
    if s.nr_free[z, order] == 0:
        return -1, False
    can_steal = False
    for i in range(3):
        fallback_mt = FALLBACKS[migratetype, i]
        if fallback_mt == MIGRATE_TYPES:
            break
        head = free_list(s, z, order, fallback_mt)
        if s.nxt[head] == head:
            continue
        if can_steal_fallback(s, order, migratetype):
            can_steal = True
        if not only_stealable:
            return fallback_mt, can_steal
        if can_steal:
            return fallback_mt, can_steal
    return -1, can_steal


@njit
def __rmqueue_fallback(s: State, z: int, order: int, start_mt: int, alloc_flags: int) -> bool:
    """__rmqueue_fallback() (6.1): take the largest block of a fallback type (the smallest one
    for MOVABLE requests that cannot steal), steal it and trace mm_page_alloc_extfrag."""
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    min_order = order
    if order < pbo and (alloc_flags & ALLOC_NOFRAGMENT):
        min_order = pbo
    current_order = MAX_ORDER - 1
    fallback_mt = -1
    can_steal = False
    found = False
    while current_order >= min_order:
        fallback_mt, can_steal = find_suitable_fallback(s, z, current_order, start_mt, False)
        if fallback_mt == -1:
            current_order -= 1
            continue
        if not can_steal and start_mt == MIGRATE_MOVABLE and current_order > order:
            # find_smallest
            current_order = order
            while current_order < MAX_ORDER:
                fallback_mt, can_steal = find_suitable_fallback(
                    s, z, current_order, start_mt, False
                )
                if fallback_mt != -1:
                    break
                current_order += 1
        found = True
        break
    if not found:
        return False
    page = s.nxt[free_list(s, z, current_order, fallback_mt)]
    steal_suitable_fallback(s, z, page, alloc_flags, start_mt, can_steal)
    trace(
        s,
        TP_MM_PAGE_ALLOC_EXTFRAG,
        page,
        order,
        current_order,
        start_mt,
        fallback_mt,
        1 if get_pageblock_migratetype(s, page) == start_mt else 0,
    )
    return True


@njit(inline="always")
def __rmqueue(s: State, z: int, order: int, mt: int, alloc_flags: int) -> int:
    """__rmqueue() (6.1): CMA balancing, the requested type, CMA, then fallback and retry."""
    if s.prm[P_CONFIG_CMA] and (alloc_flags & ALLOC_CMA):
        if s.zs[z, ZF_NR_FREE_CMA] > s.zs[z, ZF_NR_FREE_PAGES] // 2:
            page = __rmqueue_smallest(s, z, order, MIGRATE_CMA)
            if page != NO_PAGE:
                return page
    while True:
        page = __rmqueue_smallest(s, z, order, mt)
        if page != NO_PAGE:
            return page
        if alloc_flags & ALLOC_CMA:
            page = __rmqueue_smallest(s, z, order, MIGRATE_CMA)
            if page != NO_PAGE:
                return page
        if not __rmqueue_fallback(s, z, order, mt, alloc_flags):
            return NO_PAGE


@njit(inline="always")
def pcp_list(s: State, z: int, cpu: int, pindex: int) -> int:
    return s.zs[z, ZF_PCP_SENT] + cpu * s.prm[P_NR_PCP_LISTS] + pindex


@njit(inline="always")
def rmqueue_bulk(
    s: State, z: int, order: int, count: int, head: int, mt: int, alloc_flags: int
) -> int:
    """rmqueue_bulk(): take up to count blocks with __rmqueue(), each to the tail of the list."""
    i = 0
    while i < count:
        page = __rmqueue(s, z, order, mt, alloc_flags)
        if page == NO_PAGE:
            break
        list_add_tail(s.nxt, s.prv, page, head)
        s.flags[page] |= PG_pcp
        s.order[page] = order
        if s.pcpmt[page] == MIGRATE_CMA:
            s.zs[z, ZF_NR_FREE_CMA] -= 1 << order
        i += 1
    s.zs[z, ZF_NR_FREE_PAGES] -= i << order
    return i


@njit(inline="always")
def free_pcppages_bulk(s: State, z: int, cpu: int, count: int, pindex: int) -> None:
    """free_pcppages_bulk() (6.1): starting at pindex, empty one list from its tail (coldest)
    before moving round-robin to the next non-empty list."""
    pc = s.pcp[z, cpu]
    nlists = s.prm[P_NR_PCP_LISTS]
    count = min(pc[PCP_COUNT], count)
    min_pindex = 0
    max_pindex = nlists - 1
    pindex = pindex - 1
    isolated = s.zs[z, ZF_NR_ISOLATE_PAGEBLOCK] > 0
    base = pcp_list(s, z, cpu, 0)
    while count > 0:
        while True:
            pindex += 1
            if pindex > max_pindex:
                pindex = min_pindex
            head = base + pindex
            if s.nxt[head] != head:
                break
            if pindex == max_pindex:
                max_pindex -= 1
            if pindex == min_pindex:
                min_pindex += 1
        order = pindex_to_order(s, pindex)
        nr_pages = 1 << order
        while True:
            page = s.prv[head]
            mt = int(s.pcpmt[page])
            list_del(s.nxt, s.prv, page)
            s.flags[page] &= ~PG_pcp
            count -= nr_pages
            pc[PCP_COUNT] -= nr_pages
            if isolated:
                mt = get_pageblock_migratetype(s, page)
            __free_one_page(s, z, page, order, mt, FPI_NONE)
            trace(s, TP_MM_PAGE_PCPU_DRAIN, page, order, mt, 0, 0, 0)
            if count <= 0 or s.nxt[head] == head:
                break


@njit
def drain_pages_zone(s: State, z: int, cpu: int) -> None:
    """drain_pages_zone(): flush one CPU's pcp lists of a zone, batch << SCALE_MAX at a time."""
    pc = s.pcp[z, cpu]
    while pc[PCP_COUNT] > 0:
        to_drain = min(pc[PCP_COUNT], pc[PCP_BATCH] << s.prm[P_PCP_BATCH_SCALE_MAX])
        free_pcppages_bulk(s, z, cpu, to_drain, 0)


@njit
def drain_all_pages(s: State) -> None:
    """drain_all_pages(NULL): every zone's pcp lists on every CPU."""
    for cpu in range(s.prm[P_NR_CPUS]):
        for z in range(s.zs.shape[0]):
            drain_pages_zone(s, z, cpu)


@njit(inline="always")
def free_one_page(s: State, z: int, pfn: int, order: int, mt: int, fpi: int) -> None:
    """free_one_page() / __free_pages_ok(): straight to the buddy, re-reading the pageblock's
    type when the zone has isolated pageblocks."""
    if s.zs[z, ZF_NR_ISOLATE_PAGEBLOCK] > 0 or mt == MIGRATE_ISOLATE:
        mt = get_pageblock_migratetype(s, pfn)
    __free_one_page(s, z, pfn, order, mt, fpi)


@njit(inline="always")
def nr_pcp_free(pc: Any, high: int, batch: int, free_high: bool, scale_max: int) -> int:
    """nr_pcp_free() (6.1)."""
    if free_high:
        return int(pc[PCP_COUNT])
    if high < batch:
        return 1
    min_nr_free = batch
    max_nr_free = high - batch
    batch <<= pc[PCP_FREE_FACTOR]
    if batch < max_nr_free and pc[PCP_FREE_FACTOR] < scale_max:
        pc[PCP_FREE_FACTOR] += 1
    return max(min_nr_free, min(batch, max_nr_free))


@njit(inline="always")
def free_unref_page_commit_flush(s: State, z: int, cpu: int, order: int, pindex: int) -> None:
    """The tail of free_unref_page_commit(): flush when the list count reaches nr_pcp_high()."""
    pc = s.pcp[z, cpu]
    free_high = pc[PCP_FREE_FACTOR] != 0 and order != 0 and order <= PAGE_ALLOC_COSTLY_ORDER
    high = pc[PCP_HIGH]
    if high == 0 or free_high:
        high = 0
    elif s.zs[z, ZF_FLAGS] & ZONE_RECLAIM_ACTIVE:
        high = min(pc[PCP_BATCH] << 2, high)
    if pc[PCP_COUNT] >= high:
        n = nr_pcp_free(pc, high, pc[PCP_BATCH], free_high, s.prm[P_PCP_BATCH_SCALE_MAX])
        free_pcppages_bulk(s, z, cpu, n, pindex)


@njit(inline="always")
def zone_watermark_unusable_free(s: State, z: int, order: int, alloc_flags: int) -> int:
    """__zone_watermark_unusable_free() (6.1)."""
    unusable = (1 << order) - 1
    if not (alloc_flags & ALLOC_RESERVES):
        unusable += s.zs[z, ZF_NR_RESERVED_HIGHATOMIC]
    if s.prm[P_CONFIG_CMA] and not (alloc_flags & ALLOC_CMA):
        unusable += s.zs[z, ZF_NR_FREE_CMA]
    return unusable


@njit(inline="always")
def __zone_watermark_ok(
    s: State, z: int, order: int, mark: int, highest_zoneidx: int, alloc_flags: int, free: int
) -> bool:
    """__zone_watermark_ok() (6.1)."""
    mn = mark
    free -= zone_watermark_unusable_free(s, z, order, alloc_flags)
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & ALLOC_MIN_RESERVE:
            mn -= mn // 2
            if alloc_flags & ALLOC_NON_BLOCK:
                mn -= mn // 4
        if alloc_flags & ALLOC_OOM:
            mn -= mn // 2
    if free <= mn + s.zs[z, ZF_LOWMEM_RESERVE + highest_zoneidx]:
        return False
    if order == 0:
        return True
    for o in range(order, MAX_ORDER):
        if s.nr_free[z, o] == 0:
            continue
        for mt in range(MIGRATE_PCPTYPES):
            head = free_list(s, z, o, mt)
            if s.nxt[head] != head:
                return True
        if s.prm[P_CONFIG_CMA] and (alloc_flags & ALLOC_CMA):
            head = free_list(s, z, o, MIGRATE_CMA)
            if s.nxt[head] != head:
                return True
        if alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM):
            head = free_list(s, z, o, MIGRATE_HIGHATOMIC)
            if s.nxt[head] != head:
                return True
    return False


@njit(inline="always")
def wmark_pages(s: State, z: int, wmark: int) -> int:
    """wmark_pages(): the stored mark plus the boost."""
    return int(s.zs[z, ZF_WMARK_MIN + wmark] + s.zs[z, ZF_BOOST])


@njit(inline="always")
def zone_watermark_fast(
    s: State, z: int, order: int, mark: int, highest_zoneidx: int, alloc_flags: int, gfp: int
) -> bool:
    """zone_watermark_fast() (6.1), including the unboosted retry for __GFP_ATOMIC order 0."""
    free = s.zs[z, ZF_NR_FREE_PAGES]
    if order == 0:
        reserved = zone_watermark_unusable_free(s, z, 0, alloc_flags)
        usable = free - min(free, reserved)
        if usable > mark + s.zs[z, ZF_LOWMEM_RESERVE + highest_zoneidx]:
            return True
    if __zone_watermark_ok(s, z, order, mark, highest_zoneidx, alloc_flags, free):
        return True
    if (
        order == 0
        and (gfp & __GFP_ATOMIC)
        and s.zs[z, ZF_BOOST] != 0
        and (alloc_flags & ALLOC_WMARK_MASK) == ALLOC_WMARK_MIN
    ):
        mark = int(s.zs[z, ZF_WMARK_MIN])
        return __zone_watermark_ok(s, z, order, mark, highest_zoneidx, alloc_flags, free)
    return False


MAX_RECLAIM_RETRIES = 16  # mm/internal.h


@njit
def pgdat_balanced(s: State, node: int, order: int, highest_zoneidx: int) -> bool:
    """pgdat_balanced() (mm/vmscan.c, 6.1): some managed zone up to highest_zoneidx meets its
    high watermark (boost included) for the order; a node with no managed zone is balanced."""
    nzt = s.prm[P_NR_ZONE_TYPES]
    seen = False
    for i in range(highest_zoneidx + 1):
        z = node * nzt + i
        if s.zs[z, ZF_MANAGED] == 0:
            continue
        seen = True
        mark = wmark_pages(s, z, ALLOC_WMARK_HIGH)
        if __zone_watermark_ok(s, z, order, mark, highest_zoneidx, 0, s.zs[z, ZF_NR_FREE_PAGES]):
            return True
    return not seen


@njit
def pgdat_watermark_boosted(s: State, node: int, highest_zoneidx: int) -> bool:
    """pgdat_watermark_boosted() (mm/vmscan.c, 6.1)."""
    nzt = s.prm[P_NR_ZONE_TYPES]
    for i in range(highest_zoneidx + 1):
        z = node * nzt + i
        if s.zs[z, ZF_MANAGED] and s.zs[z, ZF_BOOST]:
            return True
    return False


@njit
def wakeup_kswapd(s: State, z: int, gfp: int, order: int, highest_zoneidx: int) -> None:
    """wakeup_kswapd() (mm/vmscan.c, 6.1): record the order and the highest zone index on the
    node; if kswapd sleeps and the node is hopeless (kswapd_failures >= MAX_RECLAIM_RETRIES) or
    balanced and not boosted, only ask kcompactd (for requests that cannot reclaim directly:
    memory may be plentiful but fragmented); else wake kswapd. kswapd and kcompactd then run
    when the machine runs its daemons (fragsim/mm/vmscan.py, fragsim/mm/compaction.py).
    The kcompactd request is wakeup_kcompactd()'s first half; kcompactd_node_suitable() is
    checked when kcompactd would run."""
    if s.zs[z, ZF_MANAGED] == 0:
        return
    node = s.zs[z, ZF_NODE]
    cur = s.nd[node, ND_KSWAPD_HIGHEST_ZONEIDX]
    if cur < 0 or cur < highest_zoneidx:
        s.nd[node, ND_KSWAPD_HIGHEST_ZONEIDX] = highest_zoneidx
    if s.nd[node, ND_KSWAPD_ORDER] < order:
        s.nd[node, ND_KSWAPD_ORDER] = order
    if s.nd[node, ND_KSWAPD_AWAKE]:  # !waitqueue_active(): kswapd is not sleeping
        return
    if s.nd[node, ND_KSWAPD_FAILURES] >= MAX_RECLAIM_RETRIES or (
        pgdat_balanced(s, node, order, highest_zoneidx)
        and not pgdat_watermark_boosted(s, node, highest_zoneidx)
    ):
        if not (gfp & __GFP_DIRECT_RECLAIM):
            wakeup_kcompactd(s, node, order, highest_zoneidx)
        return
    trace(s, TP_MM_VMSCAN_WAKEUP_KSWAPD, node, order, z, gfp, 0, 0)
    s.nd[node, ND_KSWAPD_AWAKE] = 1
    s.nd[node, ND_KSWAPD_WAKEUPS] += 1


@njit
def wakeup_kcompactd(s: State, node: int, order: int, highest_zoneidx: int) -> None:
    """wakeup_kcompactd() (mm/compaction.c, 6.1), first half: raise kcompactd_max_order, lower
    kcompactd_highest_zoneidx, and ask for kcompactd (kcompactd_node_suitable(), the wake-up
    and its mm_compaction_wakeup_kcompactd tracepoint come when the daemons run)."""
    if order == 0:
        return
    if s.nd[node, ND_KCOMPACTD_MAX_ORDER] < order:
        s.nd[node, ND_KCOMPACTD_MAX_ORDER] = order
    if s.nd[node, ND_KCOMPACTD_HIGHEST_ZONEIDX] > highest_zoneidx:
        s.nd[node, ND_KCOMPACTD_HIGHEST_ZONEIDX] = highest_zoneidx
    s.nd[node, ND_KCOMPACTD_AWAKE] = 1


@njit(inline="always")
def rmqueue_buddy(s: State, z: int, order: int, alloc_flags: int, mt: int) -> int:
    """rmqueue_buddy() (6.1): HIGHATOMIC first for ALLOC_HIGHATOMIC, then __rmqueue(), then
    HIGHATOMIC for ALLOC_OOM|ALLOC_NON_BLOCK."""
    page = NO_PAGE
    if alloc_flags & ALLOC_HIGHATOMIC:
        page = __rmqueue_smallest(s, z, order, MIGRATE_HIGHATOMIC)
    if page == NO_PAGE:
        page = __rmqueue(s, z, order, mt, alloc_flags)
        if page == NO_PAGE and (alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK)):
            page = __rmqueue_smallest(s, z, order, MIGRATE_HIGHATOMIC)
        if page == NO_PAGE:
            return NO_PAGE
    mod_zone_freepage_state(s, z, -(1 << order), int(s.pcpmt[page]))
    s.zs[z, ZF_PGALLOC] += 1 << order
    return page


@njit(inline="always")
def pcp_pop(s: State, z: int, cpu: int, order: int, mt: int, alloc_flags: int) -> int:
    """rmqueue_pcplist() / __rmqueue_pcplist() (6.1): refill an empty list with rmqueue_bulk()
    (batch, or max(batch >> order, 2)), then take the head."""
    pc = s.pcp[z, cpu]
    pc[PCP_FREE_FACTOR] >>= 1
    head = pcp_list(s, z, cpu, order_to_pindex(s, mt, order))
    if s.nxt[head] == head:
        batch = pc[PCP_BATCH]
        if batch > 1:
            batch = max(batch >> order, 2)
        alloced = rmqueue_bulk(s, z, order, batch, head, mt, alloc_flags)
        pc[PCP_COUNT] += alloced << order
        if s.nxt[head] == head:
            return NO_PAGE
    page = s.nxt[head]
    list_del(s.nxt, s.prv, page)
    s.flags[page] &= ~PG_pcp
    pc[PCP_COUNT] -= 1 << order
    s.zs[z, ZF_PGALLOC] += 1 << order
    return page


@njit(inline="always")
def rmqueue(s: State, z: int, cpu: int, order: int, gfp: int, alloc_flags: int, mt: int) -> int:
    """rmqueue() (6.1): pcp lists for pcp orders (skipped by a MOVABLE request without ALLOC_CMA
    on CMA kernels), else rmqueue_buddy(); then the ZONE_BOOSTED_WATERMARK kswapd wake-up."""
    page = NO_PAGE
    if pcp_allowed_order(s, order):
        if not s.prm[P_CONFIG_CMA] or (alloc_flags & ALLOC_CMA) or mt != MIGRATE_MOVABLE:
            page = pcp_pop(s, z, cpu, order, mt, alloc_flags)
    if page == NO_PAGE:
        page = rmqueue_buddy(s, z, order, alloc_flags, mt)
    if s.zs[z, ZF_FLAGS] & ZONE_BOOSTED_WATERMARK:
        s.zs[z, ZF_FLAGS] &= ~ZONE_BOOSTED_WATERMARK
        wakeup_kswapd(s, z, 0, 0, s.zs[z, ZF_ZIDX])
    return page


@njit
def reserve_highatomic_pageblock(s: State, z: int, pfn: int) -> None:
    """reserve_highatomic_pageblock() (6.1): up to managed/100 + one pageblock."""
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    max_managed = s.zs[z, ZF_MANAGED] // 100 + nr
    if s.zs[z, ZF_NR_RESERVED_HIGHATOMIC] >= max_managed:
        return
    mt = get_pageblock_migratetype(s, pfn)
    if mt < MIGRATE_PCPTYPES:
        s.zs[z, ZF_NR_RESERVED_HIGHATOMIC] += nr
        set_pageblock_migratetype(s, pfn, MIGRATE_HIGHATOMIC)
        move_freepages_block(s, z, pfn, MIGRATE_HIGHATOMIC)


@njit
def unreserve_highatomic_pageblock(
    s: State, nid: int, highest_zoneidx: int, migratetype: int, force: bool
) -> bool:
    """unreserve_highatomic_pageblock() (6.1)."""
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    zl = s.zonelist[nid, highest_zoneidx]
    for k in range(zl.shape[0]):
        z = zl[k]
        if z < 0:
            break
        if not force and s.zs[z, ZF_NR_RESERVED_HIGHATOMIC] <= nr:
            continue
        for order in range(MAX_ORDER):
            head = free_list(s, z, order, MIGRATE_HIGHATOMIC)
            page = s.nxt[head]
            if page == head:
                continue
            if get_pageblock_migratetype(s, page) == MIGRATE_HIGHATOMIC:
                s.zs[z, ZF_NR_RESERVED_HIGHATOMIC] -= min(nr, s.zs[z, ZF_NR_RESERVED_HIGHATOMIC])
            set_pageblock_migratetype(s, page, migratetype)
            moved, _ = move_freepages_block(s, z, page, migratetype)
            if moved:
                return True
    return False


@njit(inline="always")
def alloc_flags_nofragment(s: State, z: int, gfp: int) -> int:
    """alloc_flags_nofragment() (6.1): ALLOC_KSWAPD, plus ALLOC_NOFRAGMENT when the preferred zone
    is ZONE_NORMAL on a CONFIG_ZONE_DMA32 kernel (and, on NUMA, its node's DMA32 is populated)."""
    alloc_flags = ALLOC_KSWAPD if (gfp & __GFP_KSWAPD_RECLAIM) else 0
    if not s.prm[P_ZONE_DMA32] or z < 0:
        return alloc_flags
    if s.zs[z, ZF_ZIDX] != s.prm[P_ZONE_NORMAL_IDX]:
        return alloc_flags
    if s.prm[P_NR_ONLINE_NODES] > 1:
        dma32 = z - s.zs[z, ZF_ZIDX] + s.prm[P_ZONE_DMA32_IDX]
        if s.zs[dma32, ZF_MANAGED] == 0 and s.zs[dma32, ZF_END] == s.zs[dma32, ZF_START]:
            return alloc_flags
    return alloc_flags | ALLOC_NOFRAGMENT


@njit(inline="always")
def get_page_from_freelist(
    s: State,
    gfp: int,
    order: int,
    alloc_flags: int,
    nid: int,
    highest_zoneidx: int,
    mt: int,
    cpu: int,
) -> int:
    """get_page_from_freelist() (6.1): walk the zonelist, check zone_watermark_fast() at the
    requested mark, rmqueue(); reserve a highatomic block after an ALLOC_HIGHATOMIC success;
    retry once without ALLOC_NOFRAGMENT. Returns the pfn or -1.

    SIMPLIFICATION: no cpusets, no dirty limits, no node_reclaim."""
    zl = s.zonelist[nid, highest_zoneidx]
    while True:
        no_fallback = (alloc_flags & ALLOC_NOFRAGMENT) != 0
        restart = False
        preferred = zl[0]
        for k in range(zl.shape[0]):
            z = zl[k]
            if z < 0:
                break
            if no_fallback and s.prm[P_NR_ONLINE_NODES] > 1 and z != preferred:
                if s.zs[z, ZF_NODE] != s.zs[preferred, ZF_NODE]:
                    alloc_flags &= ~ALLOC_NOFRAGMENT
                    restart = True
                    break
            mark = wmark_pages(s, z, alloc_flags & ALLOC_WMARK_MASK)
            if not zone_watermark_fast(s, z, order, mark, highest_zoneidx, alloc_flags, gfp):
                if not (alloc_flags & ALLOC_NO_WATERMARKS):
                    continue
            page = rmqueue(s, z, cpu, order, gfp, alloc_flags, mt)
            if page != NO_PAGE:
                if alloc_flags & ALLOC_HIGHATOMIC:
                    reserve_highatomic_pageblock(s, z, page)
                return page
        if restart:
            continue
        if no_fallback:
            alloc_flags &= ~ALLOC_NOFRAGMENT
            continue
        return NO_PAGE


@njit(inline="always")
def prep_new_page(s: State, pfn: int, order: int, gfp: int, handle: int) -> None:
    """prep_new_page(): the block's head gets refcount 1, its order and the owner handle;
    with __GFP_COMP, prep_compound_page() marks the head PG_head and the rest PG_tail."""
    s.refcount[pfn] = 1
    s.order[pfn] = order
    s.owner[pfn] = handle
    if order > 0 and (gfp & __GFP_COMP):
        s.flags[pfn] |= PG_head
        for p in range(pfn + 1, pfn + (1 << order)):
            s.flags[p] |= PG_tail


@njit(inline="always")
def free_pages_prepare(s: State, pfn: int, order: int) -> None:
    """free_pages_prepare(): trace mm_page_free, drop the owner, clear the page flags
    (``page->flags &= ~PAGE_FLAGS_CHECK_AT_PREP``) and undo a compound page."""
    trace(s, TP_MM_PAGE_FREE, pfn, order, 0, 0, 0, 0)
    s.refcount[pfn] = 0
    s.owner[pfn] = -1
    f = s.flags[pfn]
    if f & PG_lru:  # __folio_put -> __page_cache_release: off the LRU
        lruvec_del_folio(s, pfn)
    s.flags[pfn] = 0
    s.mops[pfn] = 0  # page->mapping = NULL
    if f & PG_head:
        for p in range(pfn + 1, pfn + (1 << order)):
            s.flags[p] &= ~PG_tail


@njit(inline="always")
def fast_alloc_flags(s: State, gfp: int, mt: int, z: int) -> int:
    """__alloc_pages(): ALLOC_WMARK_LOW | gfp_to_alloc_flags_cma() | alloc_flags_nofragment()."""
    alloc_flags = ALLOC_WMARK_LOW | alloc_flags_nofragment(s, z, gfp)
    if s.prm[P_CONFIG_CMA] and mt == MIGRATE_MOVABLE:
        alloc_flags |= ALLOC_CMA
    return alloc_flags


@njit(inline="always")
def gfp_zone(s: State, gfp: int) -> int:
    """gfp_zone(): the zone index (in a node) of the highest zone the request may use."""
    return int(s.prm[P_GFPZONE + (gfp & GFP_ZONEMASK)])


@njit(inline="always")
def gfp_migratetype(s: State, gfp: int) -> int:
    if s.prm[P_GROUPING_DISABLED]:
        return MIGRATE_UNMOVABLE
    return (gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT


@njit(inline="always")
def check_free(s: State, pfn: int, order: int) -> int:
    """free_pages_check(): 0 if pfn is the head of an allocated block of this order."""
    if order < 0 or order >= MAX_ORDER:
        return RUN_EBADORDER
    if pfn < 0 or pfn >= s.flags.shape[0] or s.zoneid[pfn] < 0:
        return RUN_EOUTSIDE
    f = s.flags[pfn]
    if s.refcount[pfn] <= 0 or (f & (PG_buddy | PG_pcp | PG_reserved)):
        return RUN_ENOTALLOC
    if s.order[pfn] != order:
        return RUN_EWRONGORDER
    return 0


@njit(inline="always")
def free_the_page(s: State, pfn: int, order: int, cpu: int) -> None:
    """free_the_page() after the last reference is gone: free_pages_prepare(), then
    free_unref_page() (pcp orders; the pageblock's type cached in the page, HIGHATOMIC and CMA
    pages on the MOVABLE list, ISOLATE pageblocks straight to the buddy) or __free_pages_ok()."""
    free_pages_prepare(s, pfn, order)
    z = int(s.zoneid[pfn])
    s.vm[VM_PGFREE] += 1 << order  # free_unref_page_commit / __free_pages_ok
    mt = get_pageblock_migratetype(s, pfn)
    if pcp_allowed_order(s, order) and mt != MIGRATE_ISOLATE:
        s.pcpmt[pfn] = mt
        pcpmt = mt if mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
        pindex = order_to_pindex(s, pcpmt, order)
        head = pcp_list(s, z, cpu, pindex)
        list_add(s.nxt, s.prv, pfn, head)
        s.flags[pfn] |= PG_pcp
        s.order[pfn] = order
        pc = s.pcp[z, cpu]
        pc[PCP_COUNT] += 1 << order
        if order != 0 or pc[PCP_COUNT] >= pc[PCP_HIGH] or (s.zs[z, ZF_FLAGS] & ZONE_RECLAIM_ACTIVE):
            free_unref_page_commit_flush(s, z, cpu, order, pindex)
    else:
        free_one_page(s, z, pfn, order, mt, FPI_NONE)


@njit
def gfp_to_alloc_flags(s: State, gfp: int, order: int) -> int:
    """gfp_to_alloc_flags() (6.1.192): the min watermark and cpusets; __GFP_HIGH may dip into
    the reserves; kswapd is woken unless the caller cannot; a request that cannot reclaim
    (atomic) may go further below min (ALLOC_NON_BLOCK) and, at high orders with __GFP_HIGH,
    into the highatomic reserve; CMA for movable requests."""
    alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    if gfp & __GFP_HIGH:
        alloc_flags |= ALLOC_MIN_RESERVE
    if gfp & __GFP_KSWAPD_RECLAIM:
        alloc_flags |= ALLOC_KSWAPD
    if not (gfp & __GFP_DIRECT_RECLAIM):
        if not (gfp & __GFP_NOMEMALLOC):
            alloc_flags |= ALLOC_NON_BLOCK
            if order > 0 and (alloc_flags & ALLOC_MIN_RESERVE):
                alloc_flags |= ALLOC_HIGHATOMIC
        if alloc_flags & ALLOC_MIN_RESERVE:
            alloc_flags &= ~ALLOC_CPUSET
    if s.prm[P_CONFIG_CMA] and gfp_migratetype(s, gfp) == MIGRATE_MOVABLE:
        alloc_flags |= ALLOC_CMA
    return alloc_flags


@njit
def slowpath_first_attempt(
    s: State, gfp: int, order: int, nid: int, hz: int, mt: int, cpu: int
) -> int:
    """The start of __alloc_pages_slowpath() (6.1.192), compiled because most slow-path
    entries end here: __GFP_ATOMIC is dropped when the caller may reclaim, kswapd is woken on
    every zone of the zonelist (wake_all_kswapds) and the free lists are tried at the min
    watermark. Returns the page or NO_PAGE (then Machine.__alloc_pages_slowpath goes on from
    there)."""
    if (gfp & __GFP_ATOMIC) and (gfp & __GFP_DIRECT_RECLAIM):
        gfp &= ~__GFP_ATOMIC
    alloc_flags = gfp_to_alloc_flags(s, gfp, order)
    if alloc_flags & ALLOC_KSWAPD:
        for k in range(s.zonelist.shape[2]):
            z = s.zonelist[nid, hz, k]
            if z < 0:
                break
            wakeup_kswapd(s, int(z), gfp, order, hz)
    return get_page_from_freelist(s, gfp, order, alloc_flags, nid, hz, mt, cpu)


@njit
def run_events(st: State, ev: Any, start: int, handles: Any, out: Any) -> tuple[int, int]:
    """Process the event rows ev[start:] (fragsim/mm/internal.py EV_*/OP_*) in order.

    Allocations run __alloc_pages()'s fast path and the slow path's first attempt
    (slowpath_first_attempt); an allocation those cannot satisfy stops the batch with
    RUN_SLOWPATH so that the caller runs the rest of the slow path. ``handles`` maps a
    handle to the pfn of its block (-1: none); ``out[i]`` gets each event's resulting pfn.
    Returns (status, index of the event where processing stopped)."""
    s = borrow_state(st)
    n = ev.shape[0]
    tracing = s.prm[P_TRACE] != 0
    tmargin = s.tbuf.shape[0] // 2
    for i in range(start, n):
        if tracing and s.prm[P_TPOS] > tmargin:
            return RUN_TRACE_FULL, i
        op = ev[i, EV_OP]
        order = int(ev[i, EV_ORDER])
        cpu = int(ev[i, EV_CPU])
        s.prm[P_CPU] = cpu
        if op == OP_ALLOC or op == OP_GET_PAGE_FROM_FREELIST:
            if order < 0 or order >= MAX_ORDER:
                return RUN_EBADORDER, i
            gfp = int(ev[i, EV_GFP])
            nid = int(ev[i, EV_NID])
            hz = gfp_zone(s, gfp)
            mt = gfp_migratetype(s, gfp)
            z = s.zonelist[nid, hz, 0] if hz >= 0 else -1
            page = NO_PAGE
            if op == OP_GET_PAGE_FROM_FREELIST:
                if z >= 0:
                    page = get_page_from_freelist(
                        s, gfp, order, int(ev[i, EV_FLAGS]), nid, hz, mt, cpu
                    )
            elif z >= 0:
                alloc_flags = fast_alloc_flags(s, gfp, mt, z)
                # Inline the common case of get_page_from_freelist(): the preferred zone passes
                # the order-0 watermark test and its pcp list has a block.
                pindex = order_to_pindex(s, mt, order)
                head = pcp_list(s, z, cpu, pindex)
                if (
                    order == 0
                    and s.nxt[head] != head
                    and not (s.zs[z, ZF_FLAGS] & ZONE_BOOSTED_WATERMARK)
                    and (not s.prm[P_CONFIG_CMA] or mt != MIGRATE_MOVABLE)
                ):
                    free = s.zs[z, ZF_NR_FREE_PAGES]
                    reserved = zone_watermark_unusable_free(s, z, 0, alloc_flags)
                    usable = free - min(free, reserved)
                    mark = s.zs[z, ZF_WMARK_LOW] + s.zs[z, ZF_BOOST]
                    if usable > mark + s.zs[z, ZF_LOWMEM_RESERVE + hz]:
                        pc = s.pcp[z, cpu]
                        pc[PCP_FREE_FACTOR] >>= 1
                        page = s.nxt[head]
                        list_del(s.nxt, s.prv, page)
                        s.flags[page] &= ~PG_pcp
                        pc[PCP_COUNT] -= 1
                        s.zs[z, ZF_PGALLOC] += 1
                if page == NO_PAGE:
                    page = get_page_from_freelist(s, gfp, order, alloc_flags, nid, hz, mt, cpu)
            if page == NO_PAGE and op == OP_ALLOC and z >= 0:
                page = slowpath_first_attempt(s, gfp, order, nid, hz, mt, cpu)
            if page == NO_PAGE:
                if op == OP_ALLOC:
                    return RUN_SLOWPATH, i
                out[i] = NO_PAGE
                continue
            h = int(ev[i, EV_ARG])
            prep_new_page(s, page, order, gfp, h)
            if op == OP_ALLOC:
                set_caller_flags(s, page, int(ev[i, EV_FLAGS]))  # lru_cache_add() etc.
            if h >= 0:
                handles[h] = page
            out[i] = page
            if op == OP_ALLOC:
                trace(s, TP_MM_PAGE_ALLOC, page, order, mt, gfp, 0, 0)
        elif op == OP_FREE_HANDLE or op == OP_FREE_PFN:
            if op == OP_FREE_HANDLE:
                h = int(ev[i, EV_ARG])
                if h < 0 or h >= handles.shape[0]:
                    return RUN_EHANDLE, i
                pfn = int(handles[h])
                if pfn < 0:
                    out[i] = NO_PAGE
                    continue  # the allocation failed: nothing to free
                order = int(s.order[pfn])
                handles[h] = NO_PAGE
            else:
                pfn = int(ev[i, EV_ARG])
            err = check_free(s, pfn, order)
            if err != 0:
                return err, i
            if s.refcount[pfn] > 1:
                # put_page_testzero() failed: another reference (or a pin) keeps the block.
                # SIMPLIFICATION: __free_pages() would also free the tail parts of a
                # non-compound block here; fragsim keeps the whole block until the last put.
                s.refcount[pfn] -= 1
                out[i] = NO_PAGE
                continue
            free_the_page(s, pfn, order, cpu)
            out[i] = pfn
        elif op == OP_PREP_NEW_PAGE:  # a block compaction captured for this request
            page = int(ev[i, EV_FLAGS])
            h = int(ev[i, EV_ARG])
            prep_new_page(s, page, order, int(ev[i, EV_GFP]), h)
            if h >= 0:
                handles[h] = page
            out[i] = page
        elif op == OP_DRAIN_ALL:
            drain_all_pages(s)
        elif op == OP_UNRESERVE_HIGHATOMIC:
            gfp = int(ev[i, EV_GFP])
            hz = gfp_zone(s, gfp)
            ok = unreserve_highatomic_pageblock(
                s, int(ev[i, EV_NID]), hz, gfp_migratetype(s, gfp), order != 0
            )
            out[i] = 1 if ok else 0
    return RUN_DONE, n


@njit
def free_boot_range(st: State, z: int, start: int, end: int) -> None:
    """__free_pages_memory() (mm/memblock.c) + __free_pages_core(): free [start, end) at boot in
    the largest naturally aligned chunks, each with FPI_TO_TAIL onto its pageblock's list."""
    s = borrow_state(st)
    while start < end:
        order = MAX_ORDER - 1
        if start != 0:
            low = start & -start
            o = 0
            while (1 << o) < low:
                o += 1
            order = min(order, o)
        while start + (1 << order) > end:
            order -= 1
        for p in range(start, start + (1 << order)):
            s.refcount[p] = 0
            s.flags[p] &= ~PG_reserved
        mt = get_pageblock_migratetype(s, start)
        s.vm[VM_PGFREE] += 1 << order  # __free_pages_ok counts PGFREE
        __free_one_page(s, z, start, order, mt, FPI_TO_TAIL)
        start += 1 << order


@njit
def count_free_list(st: State, head: int, cap: int) -> int:
    """Length of one list, counting stops at cap (pagetypeinfo_showfree_print's 100000)."""
    n = 0
    p = st.nxt[head]
    while p != head and n < cap:
        n += 1
        p = st.nxt[p]
    return n


@njit
def list_pfns(st: State, head: int) -> Any:
    """The pfns on one list, head to tail."""
    n = count_free_list(st, head, 1 << 62)
    out = np.empty(n, np.int64)
    p = st.nxt[head]
    for i in range(n):
        out[i] = p
        p = st.nxt[p]
    return out


# ---------------------------------------------------------------------------------------------
# Placing blocks at given pfns: take_page_off_buddy (mm/page_alloc.c, 6.1), the pinned replay of a
# kernel trace (fragsim replay --mode pinned) and the snapshot loader (fragsim whatif)
# ---------------------------------------------------------------------------------------------


@njit(inline="always")
def break_down_buddy_pages(
    s: State, z: int, page: int, target: int, low: int, high: int, mt: int
) -> None:
    """break_down_buddy_pages() (6.1): split the free 2^high block at ``page`` down to the
    2^low block at ``target``, putting every half that does not hold the target at the head of
    mt's list (no debug guard pages)."""
    size = 1 << high
    while high > low:
        high -= 1
        size >>= 1
        if target >= page + size:
            current_buddy = page
            page = page + size
        else:
            current_buddy = page + size
        add_to_free_list(s, z, current_buddy, high, mt, False)


@njit(inline="always")
def take_block_off_buddy(s: State, pfn: int, order: int) -> bool:
    """take_page_off_buddy() (6.1) generalised to the aligned 2^order block at ``pfn``: find the
    free buddy block that contains it (stopping at an allocated block head, as the kernel stops
    at page_count() > 0), take it off its free list and break it down around the block, whose
    pages leave NR_FREE_PAGES. The kernel's version takes one page (order 0) for memory failure
    handling; the block comes back not as a free block but owned by the caller. A block not
    aligned to its order is refused."""
    if pfn & ((1 << order) - 1):
        return False
    z = int(s.zoneid[pfn])
    for o in range(order, MAX_ORDER):
        head = pfn & ~((1 << o) - 1)
        if s.zoneid[head] != z:
            return False
        f = s.flags[head]
        if (f & PG_buddy) and s.order[head] >= o:
            page_order = int(s.order[head])
            mt = get_pageblock_migratetype(s, head)
            del_page_from_free_list(s, z, head, page_order)
            break_down_buddy_pages(s, z, head, pfn, order, page_order, mt)
            if mt != MIGRATE_ISOLATE:
                mod_zone_freepage_state(s, z, -(1 << order), mt)
            return True
        if s.refcount[head] > 0 and not (f & (PG_buddy | PG_pcp)):
            return False
    return False


@njit
def take_page_off_buddy(st: State, pfn: int, order: int) -> bool:
    """take_block_off_buddy() callable from Python (one block)."""
    return take_block_off_buddy(borrow_state(st), pfn, order)


@njit
def place_blocks(
    st: State, pfns: Any, orders: Any, gfps: Any, flags: Any, hids: Any, handles: Any
) -> int:
    """Allocate block i at exactly pfns[i] (2^orders[i] pages, free in the buddy lists): take it
    off the buddy (take_block_off_buddy), prep_new_page() with gfps[i] (``__GFP_COMP`` makes a
    compound page) and owner handle hids[i] (handles[hids[i]] = pfn), then the caller's flags
    (set_caller_flags: PG_lru puts it on its LRU list). Returns -1, or the index of the first
    block that was not free."""
    s = borrow_state(st)
    for i in range(pfns.shape[0]):
        pfn = int(pfns[i])
        order = int(orders[i])
        if not take_block_off_buddy(s, pfn, order):
            return i
        h = int(hids[i])
        prep_new_page(s, pfn, order, int(gfps[i]), h)
        set_caller_flags(s, pfn, int(flags[i]))
        if h >= 0:
            handles[h] = pfn
    return -1


# Rows of a pinned replay (replay_pinned): int64 columns PE_*; ops PINNED_*
PE_OP, PE_PFN, PE_ORDER, PE_MT, PE_CPU, PE_A, PE_B = range(7)
NR_PE = 7
PINNED_ALLOC = 0  # mm_page_alloc: A = gfp, B = handle to record (or -1)
PINNED_FREE = 1  # mm_page_free
PINNED_REFILL = 2  # mm_page_alloc_zone_locked with percpu_refill=1 (rmqueue_bulk)
PINNED_DRAIN = 3  # mm_page_pcpu_drain (free_pcppages_bulk), MT = the page's pcp migratetype
PINNED_EXTFRAG = 4  # mm_page_alloc_extfrag: ORDER = fallback_order, MT = alloc_mt, A = ownership
PINNED_ISOLATE_FREE = 5  # mm_compaction_isolate_freepages: PFN = start, A = end, B = nr_taken
# replay_pinned's counters (its ``stats`` array)
PS_ALLOC_PCP = 0  # allocations found on a pcp list
PS_ALLOC_BUDDY = 1  # allocations taken off the buddy lists
PS_ALLOC_NOT_FREE = 2  # allocations of pfns the model holds allocated (released first)
PS_FREE_NOT_ALLOC = 3  # frees of pfns the model holds free (skipped)
PS_FREE_RESERVED = 4  # frees of reserved pages (skipped)
PS_DRAIN_NOT_PCP = 5  # drains of a block not on a pcp list (freed to the buddy if allocated)
PS_REFILL_NOT_FREE = 6  # refills of pfns not free in the buddy lists (released first)
PS_ISOLATED = 7  # pages taken by compaction's free scanner
PS_ISOLATE_SHORT = 8  # pages the free scanner took in the kernel but were not free here
PS_EXTFRAG = 9
PS_ORDER_MISMATCH = 10  # a pcp block or allocation of another order at the pfn
NR_PS = 11


@njit(inline="always")
def pcp_block_unlink(s: State, pfn: int) -> None:
    """Take the block at pfn off the pcp list it is on (the list head is found by walking the
    links both ways from the block: the kernel's pcp operations work at the list ends)."""
    npfn = s.flags.shape[0]
    a = pfn
    b = pfn
    head = -1
    steps = 0
    while head < 0 and steps < npfn:  # (bounded: a corrupted list must not hang the replay)
        steps += 1
        a = int(s.nxt[a])
        if a >= npfn:
            head = a
            break
        b = int(s.prv[b])
        if b >= npfn:
            head = b
    z = int(s.zoneid[pfn])
    cpu = (head - int(s.zs[z, ZF_PCP_SENT])) // int(s.prm[P_NR_PCP_LISTS])
    cpu = min(max(cpu, 0), int(s.prm[P_NR_CPUS]) - 1)
    list_del(s.nxt, s.prv, pfn)
    s.flags[pfn] &= ~PG_pcp
    s.pcp[z, cpu, PCP_COUNT] -= 1 << s.order[pfn]


@njit(inline="always")
def release_range(s: State, pfn: int, order: int, handles: Any) -> int:
    """Make [pfn, pfn + 2^order) hold no allocated block and no pcp block: the model's
    allocated blocks there are released (free_pages_prepare, the owner's handle cleared) and
    pcp blocks unlinked, without going to the free lists. Returns the pages found free in the
    buddy lists (left there), or -1 if a reserved page or a larger block is in the way."""
    end = pfn + (1 << order)
    # a larger free, allocated or pcp block that starts at or before pfn
    for o in range(order + 1, MAX_ORDER):
        h = pfn & ~((1 << o) - 1)
        f = s.flags[h]
        if (f & PG_buddy) and s.order[h] >= o and s.zoneid[h] == s.zoneid[pfn]:
            return 1 << order  # wholly inside a free buddy block
        if s.order[h] == o and (f & PG_pcp):
            return -1
        if s.order[h] == o and s.refcount[h] > 0 and not (f & (PG_buddy | PG_reserved)):
            return -1
    nfree = 0
    p = pfn
    while p < end:
        f = s.flags[p]
        o = int(s.order[p])
        if f & PG_reserved:
            return -1
        if f & PG_buddy:
            if p + (1 << o) > end:
                return -1
            nfree += 1 << o
            p += 1 << o
        elif f & PG_pcp:
            if p + (1 << o) > end:
                return -1
            pcp_block_unlink(s, p)
            p += 1 << o
        elif s.refcount[p] > 0:
            if p + (1 << o) > end:
                return -1
            h = int(s.owner[p])
            if h >= 0 and h < handles.shape[0] and handles[h] == p:
                handles[h] = NO_PAGE
            free_pages_prepare(s, p, o)
            p += 1 << o
        else:
            p += 1
    return nfree


@njit(inline="always")
def pinned_take(s: State, pfn: int, order: int, handles: Any, stats: Any) -> bool:
    """Make the block at pfn a block off every list (allocated, not yet prepped): from a pcp
    list, from the buddy lists, or, where the model disagrees with the kernel, by releasing
    what the model holds there first."""
    f = s.flags[pfn]
    if (f & PG_pcp) and s.order[pfn] == order:
        pcp_block_unlink(s, pfn)
        stats[PS_ALLOC_PCP] += 1
        return True
    if take_block_off_buddy(s, pfn, order):
        stats[PS_ALLOC_BUDDY] += 1
        return True
    stats[PS_ALLOC_NOT_FREE] += 1
    r = release_range(s, pfn, order, handles)
    if r < 0:
        stats[PS_ORDER_MISMATCH] += 1
        return False
    # the range now holds only free buddy blocks and unlisted pages: take the free ones
    z = int(s.zoneid[pfn])
    p = pfn
    while p < pfn + (1 << order):
        if s.flags[p] & PG_buddy:
            o = int(s.order[p])
            mt = get_pageblock_migratetype(s, p)
            del_page_from_free_list(s, z, p, o)
            if mt != MIGRATE_ISOLATE:
                mod_zone_freepage_state(s, z, -(1 << o), mt)
            p += 1 << o
        else:
            p += 1
    for q in range(pfn, pfn + (1 << order)):
        s.refcount[q] = 0
        s.order[q] = 0
    return True


@njit
def replay_pinned(st: State, ev: Any, handles: Any, stats: Any) -> None:
    """Replay the kernel's page-allocator events at the kernel's pfns (fragsim replay --mode
    pinned): ev rows PE_*/PINNED_*. Allocations take their block off the pcp list or the buddy
    lists (pinned_take), frees put it on the CPU's pcp list (pcp orders) or into the buddy
    (__free_one_page) without the model's own pcp flushes, because the trace records every
    pcp -> buddy move (mm_page_pcpu_drain) and buddy -> pcp move (mm_page_alloc_zone_locked with
    percpu_refill); fallback steals re-type pageblocks as mm_page_alloc_extfrag says; compaction's
    free scanner (mm_compaction_isolate_freepages: a range and a count, no pfns) takes the free
    blocks of its range in pfn order. Disagreements between the model and the kernel are
    counted in stats (PS_*), and the kernel's view wins."""
    s = borrow_state(st)
    pbo = int(s.prm[P_PAGEBLOCK_ORDER])
    ncpu = int(s.prm[P_NR_CPUS])
    npfn = s.flags.shape[0]
    for i in range(ev.shape[0]):
        op = ev[i, PE_OP]
        pfn = int(ev[i, PE_PFN])
        order = int(ev[i, PE_ORDER])
        if pfn < 0 or pfn + (1 << max(order, 0)) > npfn or s.zoneid[pfn] < 0:
            continue
        z = int(s.zoneid[pfn])
        cpu = int(ev[i, PE_CPU]) % ncpu
        if op == PINNED_ALLOC:
            if not pinned_take(s, pfn, order, handles, stats):
                continue
            h = int(ev[i, PE_B])
            prep_new_page(s, pfn, order, int(ev[i, PE_A]), h)
            if h >= 0:
                handles[h] = pfn
        elif op == PINNED_REFILL:
            if not take_block_off_buddy(s, pfn, order):
                stats[PS_REFILL_NOT_FREE] += 1
                if not pinned_take(s, pfn, order, handles, stats):
                    continue
            mt = int(ev[i, PE_MT])
            s.pcpmt[pfn] = mt
            s.order[pfn] = order
            s.refcount[pfn] = 0
            pindex = order_to_pindex(s, mt if mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE, order)
            list_add_tail(s.nxt, s.prv, pfn, pcp_list(s, z, cpu, pindex))
            s.flags[pfn] |= PG_pcp
            s.pcp[z, cpu, PCP_COUNT] += 1 << order
        elif op == PINNED_FREE or op == PINNED_DRAIN:
            f = s.flags[pfn]
            if op == PINNED_DRAIN and (f & PG_pcp) and s.order[pfn] == order:
                pcp_block_unlink(s, pfn)
                __free_one_page(s, z, pfn, order, int(ev[i, PE_MT]), FPI_NONE)
                continue
            if op == PINNED_DRAIN:
                stats[PS_DRAIN_NOT_PCP] += 1
            r = release_range(s, pfn, order, handles)
            if r < 0:
                stats[PS_FREE_RESERVED if (f & PG_reserved) else PS_ORDER_MISMATCH] += 1
                continue
            if r == 1 << order:
                stats[PS_FREE_NOT_ALLOC] += 1
                continue
            if r > 0:  # partly free already: take those pages back to free the whole block
                p = pfn
                while p < pfn + (1 << order):
                    if s.flags[p] & PG_buddy:
                        o = int(s.order[p])
                        mt0 = get_pageblock_migratetype(s, p)
                        del_page_from_free_list(s, z, p, o)
                        if mt0 != MIGRATE_ISOLATE:
                            mod_zone_freepage_state(s, z, -(1 << o), mt0)
                        p += 1 << o
                    else:
                        p += 1
            for q in range(pfn, pfn + (1 << order)):
                s.refcount[q] = 0
                s.flags[q] &= ~(PG_head | PG_tail)
            mt = get_pageblock_migratetype(s, pfn)
            if op == PINNED_FREE and pcp_allowed_order(s, order) and mt != MIGRATE_ISOLATE:
                s.pcpmt[pfn] = mt
                pindex = order_to_pindex(s, mt if mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE, order)
                list_add(s.nxt, s.prv, pfn, pcp_list(s, z, cpu, pindex))
                s.flags[pfn] |= PG_pcp
                s.order[pfn] = order
                s.pcp[z, cpu, PCP_COUNT] += 1 << order
            else:
                if op == PINNED_DRAIN:
                    mt = int(ev[i, PE_MT])
                __free_one_page(s, z, pfn, order, mt, FPI_NONE)
        elif op == PINNED_EXTFRAG:
            stats[PS_EXTFRAG] += 1
            mt = int(ev[i, PE_MT])
            if order >= pbo:
                head = pfn & ~((1 << order) - 1)
                for b in range(head, head + (1 << order), 1 << pbo):
                    set_pageblock_migratetype(s, b, mt)
                if (s.flags[pfn] & PG_buddy) and s.order[pfn] == order:
                    move_to_free_list(s, z, pfn, order, mt)
            elif ev[i, PE_A]:
                move_freepages_block(s, z, pfn, mt)
                set_pageblock_migratetype(s, pfn, mt)
            elif (s.flags[pfn] & PG_buddy) and s.order[pfn] == order:
                move_to_free_list(s, z, pfn, order, mt)
        elif op == PINNED_ISOLATE_FREE:
            end = min(int(ev[i, PE_A]), int(s.zs[z, ZF_END]))
            want = int(ev[i, PE_B])
            taken = 0
            p = pfn
            while p < end and taken < want:
                if not (s.flags[p] & PG_buddy):
                    p += 1
                    continue
                o = int(s.order[p])
                mt = get_pageblock_migratetype(s, p)
                del_page_from_free_list(s, z, p, o)
                if mt != MIGRATE_ISOLATE:
                    mod_zone_freepage_state(s, z, -(1 << o), mt)
                if o >= pbo - 1:  # __isolate_free_page: at least half a pageblock -> MOVABLE
                    for b in range(p, p + (1 << o), 1 << pbo):
                        bmt = get_pageblock_migratetype(s, b)
                        if (
                            bmt != MIGRATE_ISOLATE
                            and bmt != MIGRATE_CMA
                            and bmt != MIGRATE_HIGHATOMIC
                        ):
                            set_pageblock_migratetype(s, b, MIGRATE_MOVABLE)
                for q in range(p, p + (1 << o)):  # split_map_pages: order-0 pages, refcount 1
                    s.refcount[q] = 1
                    s.order[q] = 0
                    s.owner[q] = -1
                taken += 1 << o
                p += 1 << o
            stats[PS_ISOLATED] += taken
            if taken < want:
                stats[PS_ISOLATE_SHORT] += want - taken


__all__ = [
    "FALLBACKS",
    "MAX_NR_ZONES",
    "count_free_list",
    "free_boot_range",
    "list_pfns",
    "place_blocks",
    "replay_pinned",
    "run_events",
    "take_page_off_buddy",
]
