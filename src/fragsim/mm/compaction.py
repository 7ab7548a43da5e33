"""Memory compaction. Models mm/compaction.c of Linux 6.1.192: compact_control; the migration
scanner (isolate_migratepages with fast_find_migrateblock, isolate_migratepages_block) walking up
from the zone start and the free scanner (isolate_freepages with fast_isolate_freepages,
isolate_freepages_block) walking down from the zone end, with the zone's cached scanner
positions and the pageblock skip bits (set, and reset by __reset_isolation_suitable); the page
migration of mm/migrate.c (migrate_pages, 6.1.192: up to 10 passes) for LRU pages and, through
the movable_operations of fragsim/mm/migrate.py, for non-LRU movable pages; compaction_suitable,
__compact_finished, deferral, capture of the freed block for direct compaction (the check is in
__free_one_page), try_to_compact_pages / compact_zone_order for the allocator's slow path,
kcompactd with proactive compaction (the fragmentation score), and compact_memory.

The scanners and migration run compiled (compact_zone_run, a resumable state machine). A
driver with a compiled policy (State.drv) is decided there too; a Python driver's callbacks
make compact_zone_run return a request that compact_zone() serves and resumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fragsim.mm import migrate
from fragsim.mm._numba import njit
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import __GFP_FS, __GFP_IO, GFP_KERNEL
from fragsim.mm.internal import (
    ALLOC_CMA,
    ALLOC_WMARK_MASK,
    AUX_FREEPAGES,
    AUX_MIGRATEPAGES,
    AUX_RET,
    AUX_TMP,
    DRV_BATCH_NS,
    DRV_COMPILED,
    DRV_COST_NS,
    DRV_ISOLATE_BUSY,
    DRV_LAST_CALL,
    DRV_MIGRATE_EAGAIN,
    DRV_MIGRATE_EBUSY,
    DRV_NR_FAILED,
    DRV_NR_ISOLATED,
    DRV_NR_MIGRATED,
    DRV_PINNED,
    DRV_TIME_NS,
    ND_KCOMPACTD_AWAKE,
    ND_KCOMPACTD_HIGHEST_ZONEIDX,
    ND_KCOMPACTD_MAX_ORDER,
    ND_KSWAPD_AWAKE,
    ND_PROACTIVE_NEXT,
    P_AUX_SENT,
    P_CAPC_ORDER,
    P_CAPC_PAGE,
    P_CAPC_ZONE,
    P_COMPACT_UNEVICTABLE,
    P_COMPACTION_PROACTIVENESS,
    P_CONFIG_CMA,
    P_EXTFRAG_THRESHOLD,
    P_FS_MIGRATE_DIRTY,
    P_MIGRATE_CALL,
    P_MIGRATE_TIME_NS,
    P_NR_ZONE_TYPES,
    P_PAGEBLOCK_ORDER,
    P_RNG,
    P_TPOS,
    PIN_EAGAIN,
    PIN_EBUSY,
    PIN_ISOLATE_BUSY,
    TP_MM_COMPACTION_BEGIN,
    TP_MM_COMPACTION_DEFER_COMPACTION,
    TP_MM_COMPACTION_DEFER_RESET,
    TP_MM_COMPACTION_DEFERRED,
    TP_MM_COMPACTION_END,
    TP_MM_COMPACTION_FINISHED,
    TP_MM_COMPACTION_ISOLATE_FREEPAGES,
    TP_MM_COMPACTION_ISOLATE_MIGRATEPAGES,
    TP_MM_COMPACTION_KCOMPACTD_SLEEP,
    TP_MM_COMPACTION_KCOMPACTD_WAKE,
    TP_MM_COMPACTION_MIGRATEPAGES,
    TP_MM_COMPACTION_SUITABLE,
    TP_MM_COMPACTION_TRY_TO_COMPACT_PAGES,
    TP_MM_COMPACTION_WAKEUP_KCOMPACTD,
    TP_MM_MIGRATE_PAGES,
    VM_COMPACT_DAEMON_FREE_SCANNED,
    VM_COMPACT_DAEMON_MIGRATE_SCANNED,
    VM_COMPACT_DAEMON_WAKE,
    VM_COMPACT_FREE_SCANNED,
    VM_COMPACT_ISOLATED,
    VM_COMPACT_MIGRATE_SCANNED,
    VM_PGMIGRATE_FAIL,
    VM_PGMIGRATE_SUCCESS,
    ZF_BLOCKSKIP_FLUSH,
    ZF_BOOST,
    ZF_CACHED_FREE_PFN,
    ZF_CACHED_MIGRATE_PFN,
    ZF_COMPACT_CONSIDERED,
    ZF_COMPACT_DEFER_SHIFT,
    ZF_COMPACT_ORDER_FAILED,
    ZF_END,
    ZF_INIT_FREE_PFN,
    ZF_INIT_MIGRATE_PFN,
    ZF_MANAGED,
    ZF_NODE,
    ZF_NR_FREE_PAGES,
    ZF_PRESENT,
    ZF_START,
    ZF_WMARK_LOW,
    ZF_WMARK_MIN,
    State,
)
from fragsim.mm.migrate import IsolateMode, MigrateMode, MigrateReason, MigrateResult
from fragsim.mm.mmzone import (
    MAX_ORDER,
    MIGRATE_CMA,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    PAGE_ALLOC_COSTLY_ORDER,
    PB_MIGRATE_SKIP,
)
from fragsim.mm.page import (
    PG_anon,
    PG_buddy,
    PG_dirty,
    PG_head,
    PG_isolated,
    PG_lru,
    PG_movable,
    PG_nopage,
    PG_tail,
    PG_unevictable,
    PG_writeback,
)
from fragsim.mm.page_alloc import (
    __zone_watermark_ok,
    borrow_state,
    del_page_from_free_list,
    drain_pages_zone,
    find_suitable_fallback,
    free_list,
    free_the_page,
    get_pageblock_migratetype,
    list_add,
    list_add_tail,
    list_del,
    lruvec_add_folio,
    lruvec_del_folio,
    mod_zone_freepage_state,
    set_pageblock_migratetype,
    trace,
    wmark_pages,
)

COMPACT_CLUSTER_MAX = 32  # SWAP_CLUSTER_MAX
NR_MAX_MIGRATE_PAGES_RETRY = 10

# The kernel's enums, defined once in fragsim/mm/migrate.py, as plain ints for compiled code.
MIGRATE_ASYNC = int(MigrateMode.MIGRATE_ASYNC)
MIGRATE_SYNC_LIGHT = int(MigrateMode.MIGRATE_SYNC_LIGHT)
MIGRATE_SYNC = int(MigrateMode.MIGRATE_SYNC)
MR_COMPACTION = int(MigrateReason.MR_COMPACTION)
ISOLATE_UNEVICTABLE = int(IsolateMode.ISOLATE_UNEVICTABLE)
ISOLATE_ASYNC_MIGRATE = int(IsolateMode.ISOLATE_ASYNC_MIGRATE)

# enum compact_result (include/linux/compaction.h, 6.1)
COMPACT_NOT_SUITABLE_ZONE = 0
COMPACT_SKIPPED = 1
COMPACT_DEFERRED = 2
COMPACT_NO_SUITABLE_PAGE = 3
COMPACT_CONTINUE = 4
COMPACT_COMPLETE = 5
COMPACT_PARTIAL_SKIPPED = 6
COMPACT_CONTENDED = 7
COMPACT_SUCCESS = 8

# struct compact_control, as an int64 array: cc[CC_*]
CC_ZONE = 0
CC_ORDER = 1
CC_MODE = 2
CC_MIGRATE_PFN = 3
CC_FREE_PFN = 4
CC_NR_MIGRATEPAGES = 5
CC_NR_FREEPAGES = 6
CC_TOTAL_MIGRATE_SCANNED = 7
CC_TOTAL_FREE_SCANNED = 8
CC_WHOLE_ZONE = 9
CC_IGNORE_SKIP_HINT = 10
CC_IGNORE_BLOCK_SUITABLE = 11
CC_DIRECT_COMPACTION = 12
CC_RESCAN = 13
CC_CPU = 14  # the CPU whose pcp lists receive freed pages
CC_NR_MIGRATED = 15  # base pages migrated during this compact_zone()
# the resumable state of compact_zone_run() and its steps
CC_PHASE = 16
CC_WAITING = 17  # the CZ_* callback whose answer is awaited
CC_PFN = 18  # the page a callback is about
CC_DST = 19  # the destination of a migrate_page callback
CC_ANSWER = 20  # the callback's answer
CC_RET = 21  # compact_zone's result
CC_ERR = 22  # migrate_pages' result
CC_BLK_START = 23
CC_BLK_LOW = 24
CC_BLK_END = 25
CC_BLK_SCANNED = 26
CC_BLK_ISOLATED = 27
CC_BLK_VALID = 28  # 1 + valid_page, 0 for none
CC_BLK_MODE = 29
CC_LAST_MIGRATED = 30
CC_ITER_START = 31
CC_BATCH = 32
CC_CURSOR = 33
CC_MIG_PASS = 34
CC_MIG_RETRY = 35
CC_MIG_RETRY_PAGES = 36
CC_MIG_SUCC = 37
CC_MIG_FAILED = 38
CC_MIG_FAILED_PAGES = 39
CC_MIGRATETYPE = 40  # gfp_migratetype(cc->gfp_mask)
CC_ALLOC_FLAGS = 41
CC_HIGHEST_ZONEIDX = 42
CC_GFP = 43  # cc->gfp_mask
CC_SEARCH_ORDER = 44
CC_FAST_SEARCH_FAIL = 45
CC_FAST_START_PFN = 46
CC_PROACTIVE = 47  # cc->proactive_compaction
CC_UPDATE_CACHED = 48  # compact_zone()'s update_cached
CC_BLK_SKIP_ON_FAILURE = 49
CC_BLK_NEXT_SKIP = 50
CC_BLK_SKIP_UPDATED = 51
CC_CAPTURE = 52  # a capture_control is installed (direct compaction)
NR_CC = 53

FAST_START_DONE = 1 << 62  # ULONG_MAX in cc->fast_start_pfn: the fast search is over

PH_START, PH_LOOP, PH_SCAN, PH_MIGRATE, PH_PUTBACK, PH_END, PH_DONE = range(7)
# compact_zone_run() return codes
CZ_DONE = 0  # the result is in cc[CC_RET]
CZ_ISOLATE = 1  # isolate_movable_page(cc[CC_PFN]); answer 1 if isolated
CZ_MIGRATE = 2  # move_to_new_page(dst=cc[CC_DST], src=cc[CC_PFN]); answer the MigrateResult
CZ_PUTBACK = 3  # putback_movable_page(cc[CC_PFN]); no answer

# enum compact_priority (include/linux/compaction.h, 6.1)
COMPACT_PRIO_SYNC_FULL = 0
MIN_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_FULL
COMPACT_PRIO_SYNC_LIGHT = 1
MIN_COMPACT_COSTLY_PRIORITY = COMPACT_PRIO_SYNC_LIGHT
DEF_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_LIGHT
COMPACT_PRIO_ASYNC = 2
INIT_COMPACT_PRIORITY = COMPACT_PRIO_ASYNC

COMPACT_MAX_DEFER_SHIFT = 6  # do not skip compaction more than 64 times
EAGAIN = int(MigrateResult.EAGAIN)
EBUSY = int(MigrateResult.EBUSY)
ENOMEM = int(MigrateResult.ENOMEM)


@njit(inline="always")
def pageblock_start_pfn(s: State, pfn: int) -> int:
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    return (pfn >> pbo) << pbo


@njit(inline="always")
def pageblock_end_pfn(s: State, pfn: int) -> int:
    """pageblock_end_pfn(): ALIGN(pfn + 1, pageblock_nr_pages) (so an aligned pfn gives the end
    of the block that starts there)."""
    return pageblock_start_pfn(s, pfn) + (1 << s.prm[P_PAGEBLOCK_ORDER])


@njit(inline="always")
def block_start_pfn(pfn: int, order: int) -> int:
    return (pfn >> order) << order


@njit(inline="always")
def block_end_pfn(pfn: int, order: int) -> int:
    """block_end_pfn(): ALIGN(pfn + 1, 1 << order)."""
    return ((pfn >> order) + 1) << order


@njit(inline="always")
def aux_list(s: State, which: int) -> int:
    return s.prm[P_AUX_SENT] + which


@njit(inline="always")
def compact_scanners_met(s: State, cc: Any) -> bool:
    """compact_scanners_met(): the free scanner's pageblock is at or below the migration one."""
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    return (cc[CC_FREE_PFN] >> pbo) <= (cc[CC_MIGRATE_PFN] >> pbo)


@njit
def pageblock_pfn_to_page(s: State, z: int, start: int, end: int) -> bool:
    """__pageblock_pfn_to_page(): both ends of [start, end) valid and in zone z."""
    if start >= end:
        return False
    return s.zoneid[start] == z and s.zoneid[end - 1] == z


@njit(inline="always")
def get_pageblock_skip(s: State, pfn: int) -> bool:
    return (s.pb[pfn >> s.prm[P_PAGEBLOCK_ORDER]] & PB_MIGRATE_SKIP) != 0


@njit(inline="always")
def set_pageblock_skip(s: State, pfn: int) -> None:
    s.pb[pfn >> s.prm[P_PAGEBLOCK_ORDER]] |= PB_MIGRATE_SKIP


@njit(inline="always")
def clear_pageblock_skip(s: State, pfn: int) -> None:
    s.pb[pfn >> s.prm[P_PAGEBLOCK_ORDER]] &= ~PB_MIGRATE_SKIP


@njit(inline="always")
def isolation_suitable(s: State, cc: Any, pfn: int) -> bool:
    """isolation_suitable(): the pageblock's skip bit, unless skip hints are ignored."""
    if cc[CC_IGNORE_SKIP_HINT]:
        return True
    return not get_pageblock_skip(s, pfn)


# ---------------------------------------------------------------------------------------------
# deferral and the cached scanner positions
# ---------------------------------------------------------------------------------------------


@njit
def _defer_trace(s: State, tp: int, z: int, order: int) -> None:
    trace(
        s,
        tp,
        z,
        order,
        s.zs[z, ZF_COMPACT_ORDER_FAILED],
        s.zs[z, ZF_COMPACT_CONSIDERED],
        1 << s.zs[z, ZF_COMPACT_DEFER_SHIFT],
        0,
    )


@njit
def defer_compaction(s: State, z: int, order: int) -> None:
    """defer_compaction() (6.1): after a failed compaction, skip the next 1 << shift attempts
    (up to 64) for orders at or above the lowest order that failed."""
    s.zs[z, ZF_COMPACT_CONSIDERED] = 0
    s.zs[z, ZF_COMPACT_DEFER_SHIFT] += 1
    if order < s.zs[z, ZF_COMPACT_ORDER_FAILED]:
        s.zs[z, ZF_COMPACT_ORDER_FAILED] = order
    if s.zs[z, ZF_COMPACT_DEFER_SHIFT] > COMPACT_MAX_DEFER_SHIFT:
        s.zs[z, ZF_COMPACT_DEFER_SHIFT] = COMPACT_MAX_DEFER_SHIFT
    _defer_trace(s, TP_MM_COMPACTION_DEFER_COMPACTION, z, order)


@njit
def compaction_deferred(s: State, z: int, order: int) -> bool:
    """compaction_deferred() (6.1): True if this attempt is to be skipped."""
    defer_limit = 1 << s.zs[z, ZF_COMPACT_DEFER_SHIFT]
    if order < s.zs[z, ZF_COMPACT_ORDER_FAILED]:
        return False
    s.zs[z, ZF_COMPACT_CONSIDERED] += 1
    if s.zs[z, ZF_COMPACT_CONSIDERED] >= defer_limit:
        s.zs[z, ZF_COMPACT_CONSIDERED] = defer_limit
        return False
    _defer_trace(s, TP_MM_COMPACTION_DEFERRED, z, order)
    return True


@njit
def compaction_defer_reset(s: State, z: int, order: int, alloc_success: bool) -> None:
    """compaction_defer_reset() (6.1): after a compaction that succeeded (or should have)."""
    if alloc_success:
        s.zs[z, ZF_COMPACT_CONSIDERED] = 0
        s.zs[z, ZF_COMPACT_DEFER_SHIFT] = 0
    if order >= s.zs[z, ZF_COMPACT_ORDER_FAILED]:
        s.zs[z, ZF_COMPACT_ORDER_FAILED] = order + 1
    _defer_trace(s, TP_MM_COMPACTION_DEFER_RESET, z, order)


@njit
def compaction_restarting(s: State, z: int, order: int) -> bool:
    """compaction_restarting() (6.1): the deferral ran its full course (64 skips), so the skip
    bits are cleared before compacting again."""
    if order < s.zs[z, ZF_COMPACT_ORDER_FAILED]:
        return False
    shift = s.zs[z, ZF_COMPACT_DEFER_SHIFT]
    return shift == COMPACT_MAX_DEFER_SHIFT and s.zs[z, ZF_COMPACT_CONSIDERED] >= (1 << shift)


@njit
def reset_cached_positions(s: State, z: int) -> None:
    """reset_cached_positions(): both migration scanners at the zone start, the free scanner at
    the zone's last pageblock."""
    s.zs[z, ZF_CACHED_MIGRATE_PFN] = s.zs[z, ZF_START]
    s.zs[z, ZF_CACHED_MIGRATE_PFN + 1] = s.zs[z, ZF_START]
    s.zs[z, ZF_CACHED_FREE_PFN] = pageblock_start_pfn(s, s.zs[z, ZF_END] - 1)


@njit
def pageblock_skip_persistent(s: State, pfn: int) -> bool:
    """pageblock_skip_persistent(): part of a compound page of pageblock order or more (its
    head is then aligned to at least a pageblock)."""
    if not (s.flags[pfn] & (PG_head | PG_tail)):
        return False
    for k in range(s.prm[P_PAGEBLOCK_ORDER], MAX_ORDER):
        h = pfn & ~((1 << k) - 1)
        if (s.flags[h] & PG_head) and s.order[h] >= k:
            return True
    return False


@njit
def __reset_isolation_pfn(
    s: State, z: int, pfn: int, check_source: bool, check_target: bool
) -> bool:
    """__reset_isolation_pfn() (6.1): clear the block's skip bit if a sample of its pages (every
    2^PAGE_ALLOC_COSTLY_ORDER-th) finds an LRU page (a source) or a free page (a target)."""
    if s.zoneid[pfn] != z or (s.flags[pfn] & PG_nopage):
        return False
    if pageblock_skip_persistent(s, pfn):
        return False
    if check_source and check_target and not get_pageblock_skip(s, pfn):
        return True
    if not check_source and check_target and get_pageblock_migratetype(s, pfn) != MIGRATE_MOVABLE:
        return False
    p = max(pageblock_start_pfn(s, pfn), s.zs[z, ZF_START])
    end = min(pageblock_end_pfn(s, pfn) - 1, s.zs[z, ZF_END] - 1)
    if s.flags[end] & PG_nopage:
        return False
    while p <= end:
        if check_source and (s.flags[p] & PG_lru):
            clear_pageblock_skip(s, p)
            return True
        if check_target and (s.flags[p] & PG_buddy):
            clear_pageblock_skip(s, p)
            return True
        p += 1 << PAGE_ALLOC_COSTLY_ORDER
    return False


@njit
def __reset_isolation_suitable(s: State, z: int) -> None:
    """__reset_isolation_suitable() (6.1): after a direct compaction that met its scanners
    (compact_blockskip_flush), walk the zone from both ends clearing skip bits and put the
    cached scanner positions (and compact_init_*) at the first blocks worth scanning."""
    if not s.zs[z, ZF_BLOCKSKIP_FLUSH]:
        return
    s.zs[z, ZF_BLOCKSKIP_FLUSH] = 0
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    migrate_pfn = s.zs[z, ZF_START]
    free_pfn = s.zs[z, ZF_END] - 1
    reset_migrate = free_pfn
    reset_free = migrate_pfn
    source_set = False
    free_set = False
    while migrate_pfn < free_pfn:
        if __reset_isolation_pfn(s, z, migrate_pfn, True, source_set) and (
            migrate_pfn < reset_migrate
        ):
            source_set = True
            reset_migrate = migrate_pfn
            s.zs[z, ZF_INIT_MIGRATE_PFN] = reset_migrate
            s.zs[z, ZF_CACHED_MIGRATE_PFN] = reset_migrate
            s.zs[z, ZF_CACHED_MIGRATE_PFN + 1] = reset_migrate
        if __reset_isolation_pfn(s, z, free_pfn, free_set, True) and free_pfn > reset_free:
            free_set = True
            reset_free = free_pfn
            s.zs[z, ZF_INIT_FREE_PFN] = reset_free
            s.zs[z, ZF_CACHED_FREE_PFN] = reset_free
        migrate_pfn += nr
        free_pfn -= nr
    if reset_migrate >= reset_free:
        s.zs[z, ZF_CACHED_MIGRATE_PFN] = migrate_pfn
        s.zs[z, ZF_CACHED_MIGRATE_PFN + 1] = migrate_pfn
        s.zs[z, ZF_CACHED_FREE_PFN] = free_pfn


@njit
def test_and_set_skip(s: State, cc: Any, pfn: int) -> bool:
    """test_and_set_skip() (6.1): at a pageblock-aligned pfn, set the skip bit; True if it
    was already set (another scanner got here first)."""
    if cc[CC_IGNORE_SKIP_HINT]:
        return False
    if pfn & ((1 << s.prm[P_PAGEBLOCK_ORDER]) - 1):
        return False
    skip = get_pageblock_skip(s, pfn)
    if not skip:
        set_pageblock_skip(s, pfn)
    return skip


@njit
def update_cached_migrate(s: State, cc: Any, pfn: int) -> None:
    """update_cached_migrate() (6.1): where the async (and, unless async, the sync) migration
    scanner restarts next time: the end of the pageblock after ``pfn``'s start."""
    z = cc[CC_ZONE]
    pfn = pageblock_end_pfn(s, pfn)
    if pfn > s.zs[z, ZF_CACHED_MIGRATE_PFN]:
        s.zs[z, ZF_CACHED_MIGRATE_PFN] = pfn
    if cc[CC_MODE] != MIGRATE_ASYNC and pfn > s.zs[z, ZF_CACHED_MIGRATE_PFN + 1]:
        s.zs[z, ZF_CACHED_MIGRATE_PFN + 1] = pfn


@njit
def update_pageblock_skip(s: State, cc: Any, pfn: int) -> None:
    """update_pageblock_skip() (6.1): a free-scanned block gave nothing more: skip it, and the
    free scanner restarts below it."""
    set_pageblock_skip(s, pfn)
    z = cc[CC_ZONE]
    if pfn < s.zs[z, ZF_CACHED_FREE_PFN]:
        s.zs[z, ZF_CACHED_FREE_PFN] = pfn


# ---------------------------------------------------------------------------------------------
# the free scanner
# ---------------------------------------------------------------------------------------------


@njit
def __isolate_free_page(s: State, z: int, pfn: int, order: int) -> int:
    """__isolate_free_page() (mm/page_alloc.c, 6.1): take a free block off its list if the zone
    stays above the unboosted min watermark plus its size; a block of at least half a pageblock
    makes its mergeable pageblocks MOVABLE."""
    mt = get_pageblock_migratetype(s, pfn)
    if mt != MIGRATE_ISOLATE:
        mark = s.zs[z, ZF_WMARK_MIN] + (1 << order)
        if not __zone_watermark_ok(s, z, 0, mark, 0, ALLOC_CMA, s.zs[z, ZF_NR_FREE_PAGES]):
            return 0
        mod_zone_freepage_state(s, z, -(1 << order), mt)
    del_page_from_free_list(s, z, pfn, order)
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    if order >= pbo - 1:
        p = pfn
        while p < pfn + (1 << order) - 1:
            if get_pageblock_migratetype(s, p) < MIGRATE_PCPTYPES:
                set_pageblock_migratetype(s, p, MIGRATE_MOVABLE)
            p += 1 << pbo
    return 1 << order


@njit
def isolate_freepages_block(
    s: State, cc: Any, start_pfn: int, end_pfn: int, stride: int
) -> tuple[int, int]:
    """isolate_freepages_block() (not strict): isolate free buddy blocks of [start_pfn, end_pfn)
    onto cc->freepages (each still whole; split_map_pages splits them), stopping once as many
    pages are isolated as there are pages to migrate. Returns (pages isolated, where it
    stopped)."""
    z = cc[CC_ZONE]
    head = aux_list(s, AUX_FREEPAGES)
    nr_scanned = 0
    total_isolated = 0
    blockpfn = start_pfn
    while blockpfn < end_pfn:
        nr_scanned += 1
        f = s.flags[blockpfn]
        if f & (PG_head | PG_tail):  # PageCompound: skip the rest of the compound page
            if f & PG_head:
                blockpfn += (1 << s.order[blockpfn]) - 1
            blockpfn += stride
            continue
        if not (f & PG_buddy):
            blockpfn += stride
            continue
        order = int(s.order[blockpfn])
        isolated = __isolate_free_page(s, z, blockpfn, order)
        if isolated == 0:
            break
        s.order[blockpfn] = order  # set_page_private(page, order)
        nr_scanned += isolated - 1
        total_isolated += isolated
        cc[CC_NR_FREEPAGES] += isolated
        list_add_tail(s.nxt, s.prv, blockpfn, head)
        if cc[CC_NR_MIGRATEPAGES] <= cc[CC_NR_FREEPAGES]:
            blockpfn += isolated
            break
        blockpfn += isolated - 1 + stride
    if blockpfn > end_pfn:
        blockpfn = end_pfn
    trace(
        s, TP_MM_COMPACTION_ISOLATE_FREEPAGES, start_pfn, blockpfn, nr_scanned, total_isolated, 0, 0
    )
    cc[CC_TOTAL_FREE_SCANNED] += nr_scanned
    if total_isolated:
        s.vm[VM_COMPACT_ISOLATED] += total_isolated
    return total_isolated, blockpfn


@njit
def split_map_pages(s: State) -> None:
    """split_map_pages(): each isolated block becomes 2^order order-0 pages, each added at the
    head of a temporary list that is then spliced onto cc->freepages (so the highest pfn of the
    last block comes first)."""
    head = aux_list(s, AUX_FREEPAGES)
    tmp = aux_list(s, AUX_TMP)
    page = s.nxt[head]
    while page != head:
        nxt = s.nxt[page]
        list_del(s.nxt, s.prv, page)
        order = int(s.order[page])
        for p in range(page, page + (1 << order)):
            # post_alloc_hook(): the page is now allocated to compaction
            s.refcount[p] = 1
            s.order[p] = 0
            list_add(s.nxt, s.prv, p, tmp)
        page = nxt
    # list_splice(&tmp_list, list): tmp's entries go to the front of the (now empty) list
    while s.nxt[tmp] != tmp:
        p = s.prv[tmp]
        list_del(s.nxt, s.prv, p)
        list_add(s.nxt, s.prv, p, head)


@njit
def suitable_migration_target(s: State, cc: Any, pfn: int) -> bool:
    """suitable_migration_target(): not a free block of pageblock order or more; then any block
    with ignore_block_suitable, else MOVABLE or CMA pageblocks."""
    if (s.flags[pfn] & PG_buddy) and s.order[pfn] >= s.prm[P_PAGEBLOCK_ORDER]:
        return False
    if cc[CC_IGNORE_BLOCK_SUITABLE]:
        return True
    mt = get_pageblock_migratetype(s, pfn)
    return mt == MIGRATE_MOVABLE or mt == MIGRATE_CMA


@njit(inline="always")
def freelist_scan_limit(cc: Any) -> int:
    """freelist_scan_limit(): fewer free-list entries after each failed fast search."""
    return (COMPACT_CLUSTER_MAX >> min(63, cc[CC_FAST_SEARCH_FAIL])) + 1


@njit
def move_freelist_head(s: State, head: int, page: int) -> None:
    """move_freelist_head(): rotate the list so that ``page`` is first (the entries before it go
    to the tail)."""
    if s.nxt[head] != page:
        list_del(s.nxt, s.prv, head)
        list_add_tail(s.nxt, s.prv, head, page)


@njit
def move_freelist_tail(s: State, head: int, page: int) -> None:
    """move_freelist_tail(): rotate the list so that ``page`` is last."""
    if s.prv[head] != page:
        list_del(s.nxt, s.prv, head)
        list_add(s.nxt, s.prv, head, page)


@njit
def fast_isolate_around(s: State, cc: Any, pfn: int) -> None:
    """fast_isolate_around() (6.1): after the fast search took a block, isolate the rest of its
    pageblock (not for async direct compaction); skip the pageblock if still short."""
    if cc[CC_NR_FREEPAGES] >= cc[CC_NR_MIGRATEPAGES]:
        return
    if cc[CC_DIRECT_COMPACTION] and cc[CC_MODE] == MIGRATE_ASYNC:
        return
    z = cc[CC_ZONE]
    start_pfn = max(pageblock_start_pfn(s, pfn), s.zs[z, ZF_START])
    end_pfn = min(pageblock_end_pfn(s, pfn), s.zs[z, ZF_END])
    if not pageblock_pfn_to_page(s, z, start_pfn, end_pfn):
        return
    isolate_freepages_block(s, cc, start_pfn, end_pfn, 1)
    if cc[CC_NR_FREEPAGES] < cc[CC_NR_MIGRATEPAGES]:
        set_pageblock_skip(s, start_pfn)


@njit
def next_search_order(cc: Any, order: int) -> int:
    """next_search_order(): the next lower order, wrapping below 0 to cc->order - 1, and -1 once
    the search is back at search_order (which then moves down by one)."""
    order -= 1
    if order < 0:
        order = cc[CC_ORDER] - 1
    if order == cc[CC_SEARCH_ORDER]:
        cc[CC_SEARCH_ORDER] -= 1
        if cc[CC_SEARCH_ORDER] < 0:
            cc[CC_SEARCH_ORDER] = cc[CC_ORDER] - 1
        return -1
    return order


@njit
def fast_isolate_freepages(s: State, cc: Any) -> None:
    """fast_isolate_freepages() (6.1): for an order > 0, look for a free MOVABLE block below the
    request's order in the upper part of the zone (the top quarter of the scanners' distance, or
    the highest seen above the half) from the tails of the free lists, isolate it and the rest
    of its pageblock; the lists are rotated so the next search starts elsewhere. With no
    luck on the first search, the linear scan restarts at the highest free block seen."""
    if cc[CC_ORDER] <= 0:
        return
    z = cc[CC_ZONE]
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    limit = max(1, freelist_scan_limit(cc) >> 1)
    nr_scanned = 0
    highest = 0
    page = -1
    scan_start = False
    if cc[CC_FREE_PFN] >= s.zs[z, ZF_INIT_FREE_PFN]:
        limit = nr >> 1
        scan_start = True
    distance = cc[CC_FREE_PFN] - cc[CC_MIGRATE_PFN]
    low_pfn = pageblock_start_pfn(s, cc[CC_FREE_PFN] - (distance >> 2))
    min_pfn = pageblock_start_pfn(s, cc[CC_FREE_PFN] - (distance >> 1))
    if min_pfn > low_pfn:
        low_pfn = min_pfn
    cc[CC_SEARCH_ORDER] = min(cc[CC_ORDER] - 1, cc[CC_SEARCH_ORDER])
    order = cc[CC_SEARCH_ORDER]
    while page < 0 and order >= 0:
        if s.nr_free[z, order]:
            head = free_list(s, z, order, MIGRATE_MOVABLE)
            order_scanned = 0
            high_pfn = 0
            freepage = head
            p = s.prv[head]
            while p != head:  # list_for_each_entry_reverse
                freepage = p
                order_scanned += 1
                nr_scanned += 1
                if p >= highest:
                    highest = max(pageblock_start_pfn(s, p), s.zs[z, ZF_START])
                if p >= low_pfn:
                    cc[CC_FAST_SEARCH_FAIL] = 0
                    cc[CC_SEARCH_ORDER] = order
                    page = p
                    break
                if p >= min_pfn and p > high_pfn:
                    high_pfn = p
                    limit >>= 1
                if order_scanned >= limit:
                    break
                p = s.prv[p]
            if page < 0 and high_pfn:
                page = high_pfn
                freepage = page
            if freepage != head:
                move_freelist_head(s, head, freepage)
            if page >= 0:
                if __isolate_free_page(s, z, page, order):
                    s.order[page] = order
                    nr_isolated = 1 << order
                    nr_scanned += nr_isolated - 1
                    cc[CC_NR_FREEPAGES] += nr_isolated
                    list_add_tail(s.nxt, s.prv, page, aux_list(s, AUX_FREEPAGES))
                    s.vm[VM_COMPACT_ISOLATED] += nr_isolated
                else:
                    order = cc[CC_SEARCH_ORDER] + 1
                    page = -1
            if order_scanned >= limit:
                limit = max(1, limit >> 1)
        order = next_search_order(cc, order)
    if page < 0:
        cc[CC_FAST_SEARCH_FAIL] += 1
        if scan_start:
            if highest >= min_pfn:
                page = highest
                cc[CC_FREE_PFN] = highest
            elif cc[CC_DIRECT_COMPACTION]:
                end = min(pageblock_end_pfn(s, min_pfn), s.zs[z, ZF_END])
                if pageblock_pfn_to_page(s, z, min_pfn, end):
                    page = min_pfn
                cc[CC_FREE_PFN] = min_pfn
    if highest and highest >= s.zs[z, ZF_CACHED_FREE_PFN]:
        highest -= nr
        s.zs[z, ZF_CACHED_FREE_PFN] = highest
    cc[CC_TOTAL_FREE_SCANNED] += nr_scanned
    if page >= 0:
        fast_isolate_around(s, cc, page)


@njit
def isolate_freepages(s: State, cc: Any) -> None:
    """isolate_freepages() (6.1): fast_isolate_freepages first; if it found nothing, walk
    pageblocks down from cc->free_pfn to the migration scanner's block, isolating free pages
    until there are enough; the stride doubles up to COMPACT_CLUSTER_MAX over blocks that yield
    nothing; a block scanned to its end is skipped next time."""
    fast_isolate_freepages(s, cc)
    if cc[CC_NR_FREEPAGES]:
        split_map_pages(s)
        return
    z = cc[CC_ZONE]
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    isolate_start_pfn = cc[CC_FREE_PFN]
    block_start = pageblock_start_pfn(s, isolate_start_pfn)
    block_end = min(block_start + nr, s.zs[z, ZF_END])
    low_pfn = pageblock_end_pfn(s, cc[CC_MIGRATE_PFN])
    stride = COMPACT_CLUSTER_MAX if cc[CC_MODE] == MIGRATE_ASYNC else 1
    while block_start >= low_pfn:
        if (
            pageblock_pfn_to_page(s, z, block_start, block_end)
            and suitable_migration_target(s, cc, block_start)
            and isolation_suitable(s, cc, block_start)
        ):
            nr_isolated, isolate_start_pfn = isolate_freepages_block(
                s, cc, isolate_start_pfn, block_end, stride
            )
            if isolate_start_pfn == block_end:
                update_pageblock_skip(s, cc, block_start)
            if cc[CC_NR_FREEPAGES] >= cc[CC_NR_MIGRATEPAGES]:
                if isolate_start_pfn >= block_end:
                    isolate_start_pfn = block_start - nr
                break
            elif isolate_start_pfn < block_end:
                break
            if nr_isolated:
                stride = 1
            else:
                stride = min(COMPACT_CLUSTER_MAX, stride << 1)
        block_end = block_start
        block_start -= nr
        isolate_start_pfn = block_start
    cc[CC_FREE_PFN] = isolate_start_pfn
    split_map_pages(s)


@njit
def compaction_alloc(s: State, cc: Any) -> int:
    """compaction_alloc(): the next isolated free page, isolating more when none is left."""
    head = aux_list(s, AUX_FREEPAGES)
    if s.nxt[head] == head:
        isolate_freepages(s, cc)
        if s.nxt[head] == head:
            return -1
    page = s.nxt[head]
    list_del(s.nxt, s.prv, page)
    cc[CC_NR_FREEPAGES] -= 1
    return page


@njit(inline="always")
def compaction_free(s: State, cc: Any, page: int) -> None:
    """compaction_free(): a destination that was not used goes back on cc->freepages."""
    list_add(s.nxt, s.prv, page, aux_list(s, AUX_FREEPAGES))
    cc[CC_NR_FREEPAGES] += 1


@njit
def release_freepages(s: State, cc: Any) -> int:
    """release_freepages(): free every isolated page left (through the pcp lists); returns the
    highest pfn released."""
    head = aux_list(s, AUX_FREEPAGES)
    high_pfn = 0
    while s.nxt[head] != head:
        page = s.nxt[head]
        list_del(s.nxt, s.prv, page)
        if page > high_pfn:
            high_pfn = page
        free_the_page(s, page, 0, cc[CC_CPU])
    return high_pfn


@njit(inline="always")
def put_page(s: State, pfn: int, cpu: int) -> None:
    """put_page(): drop a reference; the last one frees the page (order from the page)."""
    s.refcount[pfn] -= 1
    if s.refcount[pfn] == 0:
        free_the_page(s, pfn, int(s.order[pfn]), cpu)


# ---------------------------------------------------------------------------------------------
# drivers' compiled policies (built-in drivers: no Python call per page)
# ---------------------------------------------------------------------------------------------


@njit(inline="always")
def drv_chance(s: State, ppm: int) -> bool:
    """A draw from the machine's deterministic generator: True with probability ppm / 10^6."""
    if ppm <= 0:
        return False
    if ppm >= 1_000_000:
        return True
    x = s.prm[P_RNG] * 6364136223846793005 + 1442695040888963407  # wraps (two's complement)
    s.prm[P_RNG] = x
    return ((x >> 33) & 0x7FFFFFFF) % 1_000_000 < ppm


@njit(inline="always")
def drv_row(s: State, pfn: int) -> int:
    return int(s.mops[pfn]) - 1


@njit
def drv_isolate_page(s: State, pfn: int) -> bool:
    """isolate_movable_page() for a page whose driver has a compiled policy: the driver says no
    while its device holds the page (pinned with PIN_ISOLATE_BUSY, or DRV_ISOLATE_BUSY); else
    the core takes a reference and sets PG_isolated."""
    d = drv_row(s, pfn)
    if s.drv[d, DRV_PINNED] == PIN_ISOLATE_BUSY and s.refcount[pfn] > 1:
        return False  # the device holds the page (pinned)
    if drv_chance(s, s.drv[d, DRV_ISOLATE_BUSY]):
        return False
    s.refcount[pfn] += 1
    s.flags[pfn] |= PG_isolated
    s.drv[d, DRV_NR_ISOLATED] += 1
    return True


@njit
def drv_charge(s: State, d: int, pages: int) -> None:
    """The driver's migration cost: DRV_BATCH_NS once per migrate_pages() call that asks it for
    a page, DRV_COST_NS per page moved."""
    t = pages * s.drv[d, DRV_COST_NS]
    if s.drv[d, DRV_LAST_CALL] != s.prm[P_MIGRATE_CALL]:
        s.drv[d, DRV_LAST_CALL] = s.prm[P_MIGRATE_CALL]
        t += s.drv[d, DRV_BATCH_NS]
    s.drv[d, DRV_TIME_NS] += t
    s.prm[P_MIGRATE_TIME_NS] += t


@njit
def drv_migrate_page(s: State, dst: int, src: int) -> int:
    """migrate_page for a compiled-policy driver: -EAGAIN or -EBUSY for a page it has pinned (its
    DRV_PINNED answer) or with the driver's probabilities, else MIGRATEPAGE_SUCCESS with what
    the driver would do: its reference and its ops move to ``dst`` (__SetPageMovable(dst),
    __ClearPageMovable(src)); the contents and the owner's handle move in migrate_page_move()."""
    d = drv_row(s, src)
    drv_charge(s, d, 0)
    pinned = s.refcount[src] > 2  # more than the driver's reference and the isolation's
    if pinned and s.drv[d, DRV_PINNED] == PIN_EAGAIN:
        s.drv[d, DRV_NR_FAILED] += 1
        return EAGAIN
    if pinned and s.drv[d, DRV_PINNED] == PIN_EBUSY:
        s.drv[d, DRV_NR_FAILED] += 1
        return EBUSY
    if drv_chance(s, s.drv[d, DRV_MIGRATE_EAGAIN]):
        s.drv[d, DRV_NR_FAILED] += 1
        return EAGAIN
    if drv_chance(s, s.drv[d, DRV_MIGRATE_EBUSY]):
        s.drv[d, DRV_NR_FAILED] += 1
        return EBUSY
    drv_charge(s, d, 1)
    s.drv[d, DRV_NR_MIGRATED] += 1
    s.refcount[dst] += 1
    s.refcount[src] -= 1
    s.mops[dst] = s.mops[src]
    s.flags[dst] |= PG_movable
    s.mops[src] = 0
    return 0


# ---------------------------------------------------------------------------------------------
# the migration scanner
# ---------------------------------------------------------------------------------------------


@njit(inline="always")
def isolate_success(s: State, cc: Any, pfn: int) -> None:
    """isolate_success: onto cc->migratepages (list_add) and counted."""
    list_add(s.nxt, s.prv, pfn, aux_list(s, AUX_MIGRATEPAGES))
    cc[CC_NR_MIGRATEPAGES] += 1
    cc[CC_BLK_ISOLATED] += 1


@njit
def putback_movable_pages_step(s: State, cc: Any) -> bool:
    """putback_movable_pages() (6.1), resumable: LRU pages go back on the LRU and lose the
    isolation reference; a compiled-policy driver's page is taken back by the core; a Python
    driver's page returns True with the pfn in cc[CC_PFN] (the caller makes the driver's
    putback_page call, clears PG_isolated and drops the reference)."""
    head = aux_list(s, AUX_MIGRATEPAGES)
    while s.nxt[head] != head:
        page = s.nxt[head]
        list_del(s.nxt, s.prv, page)
        if s.flags[page] & PG_isolated:
            d = drv_row(s, page)
            if d < 0 or s.drv[d, DRV_COMPILED]:  # released meanwhile, or decided here
                s.flags[page] &= ~PG_isolated
                put_page(s, page, cc[CC_CPU])
                continue
            cc[CC_PFN] = page
            return True
        if s.refcount[page] == 1:  # the owner let go meanwhile: ours was the last reference
            put_page(s, page, cc[CC_CPU])
            continue
        s.refcount[page] -= 1
        lruvec_add_folio(s, page, False)  # putback_lru_page()
    cc[CC_NR_MIGRATEPAGES] = 0
    return False


@njit
def isolate_fail(s: State, cc: Any, low_pfn: int) -> tuple[int, bool]:
    """The isolate_fail path of isolate_migratepages_block() (6.1) for async direct compaction
    (skip_on_failure): one page of this order-aligned block cannot be isolated, so the block
    cannot be freed: put back what was isolated and move to the next order-aligned block.
    Returns (low_pfn, True if a Python driver's putback is needed first: resume with
    CZ_PUTBACK)."""
    if not cc[CC_BLK_SKIP_ON_FAILURE]:
        return low_pfn, False
    if low_pfn < cc[CC_BLK_NEXT_SKIP]:
        low_pfn = cc[CC_BLK_NEXT_SKIP] - 1
        cc[CC_BLK_NEXT_SKIP] += 1 << cc[CC_ORDER]
    if cc[CC_BLK_ISOLATED]:
        cc[CC_BLK_ISOLATED] = 0
        cc[CC_NR_MIGRATEPAGES] = 0
        if putback_movable_pages_step(s, cc):
            return low_pfn, True
    return low_pfn, False


@njit
def isolate_migratepages_block(s: State, cc: Any) -> bool:
    """isolate_migratepages_block() (6.1), resumable: scans cc[CC_BLK_LOW] .. cc[CC_BLK_END].
    Skips free blocks and compound pages; takes LRU pages: anonymous ones only without extra
    references (a pin fails ``page_count - 1 > mapcount``), file pages only if the request may
    enter the filesystem (__GFP_FS), evictable unless ISOLATE_UNEVICTABLE, and in async mode not
    under writeback nor dirty unless the filesystem can migrate dirty pages. The first LRU
    isolation of the block sets its skip bit at an aligned pfn (test_and_set_skip) and aborts
    if another scanner had. A non-LRU movable page (``__PageMovable && !PageIsolated``) goes to
    its driver: a compiled policy answers here, a Python driver through the caller (returns
    True with CZ_ISOLATE or CZ_PUTBACK waiting). Async direct compaction gives up an
    order-aligned block at its first failure. Stops after COMPACT_CLUSTER_MAX pages unless
    rescanning. Returns False when the block scan is over (traced and counted).
    SIMPLIFICATION: an anonymous page is mapped once."""
    low_pfn = cc[CC_BLK_LOW]
    end_pfn = cc[CC_BLK_END]
    mode = cc[CC_BLK_MODE]
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    waiting = cc[CC_WAITING]
    cc[CC_WAITING] = 0
    if waiting == CZ_PUTBACK:  # resume the putback of a failed order-aligned block
        if putback_movable_pages_step(s, cc):
            cc[CC_WAITING] = CZ_PUTBACK
            return True
        cc[CC_NR_MIGRATEPAGES] = 0
        low_pfn += 1
    elif waiting == CZ_ISOLATE:  # the driver's answer for the page at low_pfn
        if cc[CC_ANSWER]:
            isolate_success(s, cc, low_pfn)
            low_pfn += 1
            if cc[CC_NR_MIGRATEPAGES] >= COMPACT_CLUSTER_MAX and not cc[CC_RESCAN]:
                end_pfn = low_pfn  # break out of the scan below
        else:
            low_pfn, putback = isolate_fail(s, cc, low_pfn)
            if putback:
                cc[CC_BLK_LOW] = low_pfn
                cc[CC_WAITING] = CZ_PUTBACK
                return True
            low_pfn += 1
    while low_pfn < end_pfn:
        if cc[CC_BLK_SKIP_ON_FAILURE] and low_pfn >= cc[CC_BLK_NEXT_SKIP]:
            if cc[CC_BLK_ISOLATED]:
                break
            cc[CC_BLK_NEXT_SKIP] = block_end_pfn(low_pfn, cc[CC_ORDER])
        cc[CC_BLK_SCANNED] += 1
        if not cc[CC_BLK_VALID] and (low_pfn & ((1 << pbo) - 1)) == 0:
            if not isolation_suitable(s, cc, low_pfn):
                low_pfn = end_pfn
                break
            cc[CC_BLK_VALID] = low_pfn + 1
        f = s.flags[low_pfn]
        if f & PG_buddy:
            o = int(s.order[low_pfn])
            if 0 < o < MAX_ORDER:
                low_pfn += (1 << o) - 1
            low_pfn += 1
            continue
        failed = False
        if f & (PG_head | PG_tail):  # PageCompound && !alloc_contig
            if f & PG_head:
                low_pfn += (1 << s.order[low_pfn]) - 1
            failed = True
        elif not (f & PG_lru):
            failed = True
            if (f & PG_movable) and not (f & PG_isolated) and s.refcount[low_pfn] > 0:
                d = drv_row(s, low_pfn)
                if d >= 0 and s.drv[d, DRV_COMPILED]:
                    if drv_isolate_page(s, low_pfn):
                        failed = False
                elif d >= 0:
                    cc[CC_BLK_LOW] = low_pfn
                    cc[CC_PFN] = low_pfn
                    cc[CC_WAITING] = CZ_ISOLATE
                    return True
        elif (f & PG_anon) and s.refcount[low_pfn] - 1 > 0:
            failed = True  # get_page_unless_zero(); page_count - 1 > mapcount: pinned
        elif not (f & PG_anon) and not (cc[CC_GFP] & __GFP_FS):
            failed = True  # a file page needs the filesystem
        elif not (mode & ISOLATE_UNEVICTABLE) and (f & PG_unevictable):
            failed = True
        elif (mode & ISOLATE_ASYNC_MIGRATE) and (f & PG_writeback):
            failed = True
        elif (
            (mode & ISOLATE_ASYNC_MIGRATE)
            and (f & PG_dirty)
            and not (f & PG_anon)
            and not s.prm[P_FS_MIGRATE_DIRTY]
        ):
            failed = True
        else:
            if not cc[CC_BLK_SKIP_UPDATED]:
                cc[CC_BLK_SKIP_UPDATED] = 1
                if test_and_set_skip(s, cc, low_pfn):
                    break  # isolate_abort: the page stays on the LRU
            # TestClearPageLRU; del_page_from_lru_list; onto cc->migratepages with our reference
            lruvec_del_folio(s, low_pfn)
            s.refcount[low_pfn] += 1
        if failed:
            low_pfn, putback = isolate_fail(s, cc, low_pfn)
            if putback:
                cc[CC_BLK_LOW] = low_pfn
                cc[CC_WAITING] = CZ_PUTBACK
                return True
            low_pfn += 1
            continue
        isolate_success(s, cc, low_pfn)
        low_pfn += 1
        if cc[CC_NR_MIGRATEPAGES] >= COMPACT_CLUSTER_MAX and not cc[CC_RESCAN]:
            break
    end_pfn = cc[CC_BLK_END]
    if low_pfn > end_pfn:
        low_pfn = end_pfn
    nr_isolated = cc[CC_BLK_ISOLATED]
    if low_pfn == end_pfn and (nr_isolated == 0 or cc[CC_RESCAN]):
        if cc[CC_BLK_VALID] and not cc[CC_BLK_SKIP_UPDATED]:
            set_pageblock_skip(s, cc[CC_BLK_VALID] - 1)
        update_cached_migrate(s, cc, low_pfn)
    trace(
        s,
        TP_MM_COMPACTION_ISOLATE_MIGRATEPAGES,
        cc[CC_BLK_START],
        low_pfn,
        cc[CC_BLK_SCANNED],
        nr_isolated,
        0,
        0,
    )
    cc[CC_TOTAL_MIGRATE_SCANNED] += cc[CC_BLK_SCANNED]
    if nr_isolated:
        s.vm[VM_COMPACT_ISOLATED] += nr_isolated
    cc[CC_MIGRATE_PFN] = low_pfn
    return False


@njit
def update_fast_start_pfn(cc: Any, pfn: int) -> None:
    """update_fast_start_pfn(): the lowest block the fast search picked."""
    if cc[CC_FAST_START_PFN] == FAST_START_DONE:
        return
    if not cc[CC_FAST_START_PFN]:
        cc[CC_FAST_START_PFN] = pfn
    cc[CC_FAST_START_PFN] = min(cc[CC_FAST_START_PFN], pfn)


@njit
def reinit_migrate_pfn(cc: Any) -> int:
    """reinit_migrate_pfn(): after a failed fast search, go back to the lowest block an earlier
    fast search picked, once."""
    if not cc[CC_FAST_START_PFN] or cc[CC_FAST_START_PFN] == FAST_START_DONE:
        return cc[CC_MIGRATE_PFN]
    cc[CC_MIGRATE_PFN] = cc[CC_FAST_START_PFN]
    cc[CC_FAST_START_PFN] = FAST_START_DONE
    return cc[CC_MIGRATE_PFN]


@njit
def fast_find_migrateblock(s: State, cc: Any) -> int:
    """fast_find_migrateblock() (6.1): for costly orders (not for unmovable direct requests, not
    when skip hints are ignored, only at a pageblock start), take as the next migration source
    the pageblock of a free MOVABLE block of order cc->order-1 .. PAGE_ALLOC_COSTLY_ORDER in the
    lower part of the zone (a block with free pages is likely to become free when its few used
    pages move); such a block is marked skip and rotated to its list's tail."""
    pfn = cc[CC_MIGRATE_PFN]
    z = cc[CC_ZONE]
    if cc[CC_IGNORE_SKIP_HINT]:
        return pfn
    if pfn != s.zs[z, ZF_START] and pfn != pageblock_start_pfn(s, pfn):
        return pfn
    if cc[CC_ORDER] <= PAGE_ALLOC_COSTLY_ORDER:
        return pfn
    if cc[CC_DIRECT_COMPACTION] and cc[CC_MIGRATETYPE] != MIGRATE_MOVABLE:
        return pfn
    limit = freelist_scan_limit(cc)
    nr_scanned = 0
    found_block = False
    distance = (cc[CC_FREE_PFN] - cc[CC_MIGRATE_PFN]) >> 1
    if cc[CC_MIGRATE_PFN] != s.zs[z, ZF_START]:
        distance >>= 2
    high_pfn = pageblock_start_pfn(s, cc[CC_MIGRATE_PFN] + distance)
    order = cc[CC_ORDER] - 1
    while order >= PAGE_ALLOC_COSTLY_ORDER and not found_block and nr_scanned < limit:
        if s.nr_free[z, order]:
            head = free_list(s, z, order, MIGRATE_MOVABLE)
            p = s.nxt[head]
            while p != head:
                nxt = s.nxt[p]
                if nr_scanned >= limit:
                    nr_scanned += 1
                    move_freelist_tail(s, head, p)
                    break
                nr_scanned += 1
                if p < high_pfn:
                    if get_pageblock_skip(s, p):
                        p = nxt
                        continue
                    move_freelist_tail(s, head, p)
                    update_fast_start_pfn(cc, p)
                    pfn = pageblock_start_pfn(s, p)
                    if pfn < s.zs[z, ZF_START]:
                        pfn = s.zs[z, ZF_START]
                    cc[CC_FAST_SEARCH_FAIL] = 0
                    found_block = True
                    set_pageblock_skip(s, p)
                    break
                p = nxt
        order -= 1
    cc[CC_TOTAL_MIGRATE_SCANNED] += nr_scanned
    if not found_block:
        cc[CC_FAST_SEARCH_FAIL] += 1
        pfn = reinit_migrate_pfn(cc)
    return pfn


@njit
def suitable_migration_source(s: State, cc: Any, pfn: int) -> bool:
    """suitable_migration_source() (6.1): not a pageblock-sized compound page; async direct
    compaction only scans blocks of the request's migratetype (MOVABLE or CMA for a movable
    request)."""
    if pageblock_skip_persistent(s, pfn):
        return False
    if cc[CC_MODE] != MIGRATE_ASYNC or not cc[CC_DIRECT_COMPACTION]:
        return True
    block_mt = get_pageblock_migratetype(s, pfn)
    if cc[CC_MIGRATETYPE] == MIGRATE_MOVABLE:
        return block_mt == MIGRATE_MOVABLE or block_mt == MIGRATE_CMA
    return block_mt == cc[CC_MIGRATETYPE]


@njit
def isolate_migratepages(s: State, cc: Any) -> bool:
    """isolate_migratepages() (6.1): from fast_find_migrateblock()'s pick (or cc->migrate_pfn),
    pageblock by pageblock up to the free scanner, start the scan of the first block that is
    not skipped and is a suitable source (an unsuitable one moves the cached position on).
    Returns False when no block is left to scan (then cc->migrate_pfn is past the free
    scanner)."""
    z = cc[CC_ZONE]
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    low_pfn = fast_find_migrateblock(s, cc)
    block_start = max(pageblock_start_pfn(s, low_pfn), s.zs[z, ZF_START])
    fast_find_block = low_pfn != cc[CC_MIGRATE_PFN] and not cc[CC_FAST_SEARCH_FAIL]
    block_end = pageblock_end_pfn(s, low_pfn)
    while block_end <= cc[CC_FREE_PFN]:
        if pageblock_pfn_to_page(s, z, block_start, min(block_end, s.zs[z, ZF_END])):
            aligned = (low_pfn & (nr - 1)) == 0
            if not (aligned and not fast_find_block and not isolation_suitable(s, cc, block_start)):
                if not suitable_migration_source(s, cc, block_start):
                    update_cached_migrate(s, cc, block_end)
                else:
                    cc[CC_MIGRATE_PFN] = low_pfn
                    cc[CC_BLK_START] = low_pfn
                    cc[CC_BLK_LOW] = low_pfn
                    cc[CC_BLK_END] = block_end
                    cc[CC_BLK_SCANNED] = 0
                    cc[CC_BLK_ISOLATED] = 0
                    cc[CC_BLK_VALID] = 0
                    cc[CC_BLK_SKIP_UPDATED] = 0
                    cc[CC_BLK_MODE] = (
                        ISOLATE_UNEVICTABLE if s.prm[P_COMPACT_UNEVICTABLE] else 0
                    ) | (ISOLATE_ASYNC_MIGRATE if cc[CC_MODE] != MIGRATE_SYNC else 0)
                    skip = cc[CC_DIRECT_COMPACTION] and cc[CC_MODE] == MIGRATE_ASYNC
                    cc[CC_BLK_SKIP_ON_FAILURE] = 1 if skip else 0
                    cc[CC_BLK_NEXT_SKIP] = block_end_pfn(low_pfn, cc[CC_ORDER]) if skip else 0
                    return True
        fast_find_block = False
        cc[CC_MIGRATE_PFN] = low_pfn = block_end
        block_start = block_end
        block_end += nr
    return False


# ---------------------------------------------------------------------------------------------
# migrate_pages with compaction_alloc / compaction_free
# ---------------------------------------------------------------------------------------------


@njit
def migrate_page_move(s: State, dst: int, src: int, handles: Any) -> None:
    """What stays with the page when it moves (migrate_folio, remove_migration_ptes): the
    destination takes the source's flags, owner and contents, and the owner's mapping (the
    handle table, fragsim's rmap) now points at the destination."""
    s.flags[dst] = s.flags[src] & ~PG_isolated
    if s.mops[dst] == 0:  # an LRU page; a driver has already marked its destination
        s.mops[dst] = s.mops[src]
    owner = s.owner[src]
    s.owner[dst] = owner
    s.order[dst] = 0
    if 0 <= owner < handles.shape[0] and handles[owner] == src:
        handles[owner] = dst


@njit
def migrate_result(s: State, cc: Any, src: int, dst: int, rc: int, handles: Any) -> None:
    """One page's outcome in migrate_pages(): success moves it (the driver's reference is on
    ``dst`` already; the core's reference on ``dst`` and the isolation reference on ``src`` are
    dropped, freeing ``src``); -EAGAIN keeps it on the list for the next pass; anything else is
    permanent: onto the return list, put back later. The unused destination goes back to
    cc->freepages."""
    cpu = cc[CC_CPU]
    if rc == 0:
        list_del(s.nxt, s.prv, src)
        migrate_page_move(s, dst, src, handles)
        put_page(s, dst, cpu)
        put_page(s, src, cpu)
        cc[CC_MIG_SUCC] += 1
    elif rc == EAGAIN:
        compaction_free(s, cc, dst)
        cc[CC_MIG_RETRY] += 1
        cc[CC_MIG_RETRY_PAGES] += 1
    else:
        list_del(s.nxt, s.prv, src)
        list_add_tail(s.nxt, s.prv, src, aux_list(s, AUX_RET))
        compaction_free(s, cc, dst)
        cc[CC_MIG_FAILED] += 1
        cc[CC_MIG_FAILED_PAGES] += 1


@njit
def migrate_lru_page(s: State, cc: Any, dst: int, src: int, handles: Any) -> int:
    """__unmap_and_move() + migrate_folio() (6.1) for an isolated LRU page: a page under
    writeback is -EBUSY unless MIGRATE_SYNC (which waits for it: the write completes); a file
    page with references beyond the page cache's and the isolation's is -EAGAIN
    (folio_migrate_mapping's refcount check); else it moves and goes back on the LRU."""
    if s.flags[src] & PG_writeback:
        if cc[CC_MODE] != MIGRATE_SYNC:
            return EBUSY
        s.flags[src] &= ~PG_writeback  # folio_wait_writeback()
    if not (s.flags[src] & PG_anon) and s.refcount[src] > 2:
        return EAGAIN
    list_del(s.nxt, s.prv, src)
    migrate_page_move(s, dst, src, handles)
    lruvec_add_folio(s, dst, False)  # folio_add_lru(dst)
    s.refcount[src] = 1  # the owner's reference went to the destination
    put_page(s, src, cc[CC_CPU])
    cc[CC_MIG_SUCC] += 1
    return 0


@njit
def migrate_pages_step(s: State, cc: Any, handles: Any) -> bool:
    """migrate_pages() / migrate_pages_batch() (6.1.192) with compaction_alloc and
    compaction_free, resumable (compaction's lists hold at most COMPACT_CLUSTER_MAX pages, so
    the 512-page batch cut never applies): up to 10 passes over cc->migratepages from its head
    while some page asked to retry (-EAGAIN); a page whose other references are gone (refcount
    1) is done; an LRU page moves by migrate_lru_page(); a non-LRU page goes to its driver
    (move_to_new_folio): a compiled policy answers here, a Python driver through the caller
    (returns True with src in cc[CC_PFN], dst in cc[CC_DST], resumed with the driver's result in
    cc[CC_ANSWER]). No destination is -ENOMEM, which aborts. Permanent failures stay on the list
    for putback. Counts pgmigrate_success/fail, traces mm_migrate_pages. Returns False when
    done; the result (pages not migrated, or -ENOMEM) is in cc[CC_ERR].
    SIMPLIFICATION: no lock races, so an isolated unpinned anonymous page always moves."""
    head = aux_list(s, AUX_MIGRATEPAGES)
    ret = aux_list(s, AUX_RET)
    cpu = cc[CC_CPU]
    aborted = False
    if cc[CC_WAITING] == CZ_MIGRATE:
        cc[CC_WAITING] = 0
        migrate_result(s, cc, cc[CC_PFN], cc[CC_DST], cc[CC_ANSWER], handles)
    while True:
        page = cc[CC_CURSOR]
        if page == head or page < 0:
            # end of a pass
            if cc[CC_MIG_RETRY] == 0 or cc[CC_MIG_PASS] + 1 >= NR_MAX_MIGRATE_PAGES_RETRY:
                break
            cc[CC_MIG_PASS] += 1
            cc[CC_MIG_RETRY] = 0
            cc[CC_MIG_RETRY_PAGES] = 0
            cc[CC_CURSOR] = s.nxt[head]
            continue
        cc[CC_CURSOR] = s.nxt[page]
        if s.refcount[page] == 1:  # freed under us
            list_del(s.nxt, s.prv, page)
            s.flags[page] &= ~PG_isolated
            put_page(s, page, cpu)
            cc[CC_MIG_SUCC] += 1
            continue
        dst = compaction_alloc(s, cc)
        if dst < 0:
            cc[CC_MIG_FAILED_PAGES] += 1 + cc[CC_MIG_RETRY_PAGES]
            aborted = True
            break
        if s.flags[page] & PG_isolated:  # a non-LRU movable page: its driver moves it
            d = drv_row(s, page)
            if d < 0:
                # move_to_new_folio(): the driver released it while isolated (its ops are
                # gone, it keeps a reference): success without a move; both core references
                # are dropped, which frees the destination
                s.flags[page] &= ~PG_isolated
                list_del(s.nxt, s.prv, page)
                put_page(s, page, cpu)
                put_page(s, dst, cpu)
                cc[CC_MIG_SUCC] += 1
                continue
            if s.drv[d, DRV_COMPILED]:
                rc = drv_migrate_page(s, dst, page)
                migrate_result(s, cc, page, dst, rc, handles)
                continue
            cc[CC_PFN] = page
            cc[CC_DST] = dst
            cc[CC_WAITING] = CZ_MIGRATE
            return True
        rc = migrate_lru_page(s, cc, dst, page, handles)
        if rc != 0:
            migrate_result(s, cc, page, dst, rc, handles)
    # whatever is left on the list after the passes failed; return the permanent failures
    if not aborted:
        cc[CC_MIG_FAILED] += cc[CC_MIG_RETRY]
        cc[CC_MIG_FAILED_PAGES] += cc[CC_MIG_RETRY_PAGES]
    while s.nxt[ret] != ret:
        p = s.nxt[ret]
        list_del(s.nxt, s.prv, p)
        list_add_tail(s.nxt, s.prv, p, head)
    left = count_list(s, head)
    cc[CC_ERR] = ENOMEM if aborted else left
    cc[CC_NR_MIGRATEPAGES] = left
    succ = cc[CC_MIG_SUCC]
    s.vm[VM_PGMIGRATE_SUCCESS] += succ
    s.vm[VM_PGMIGRATE_FAIL] += cc[CC_MIG_FAILED_PAGES]
    trace(
        s,
        TP_MM_MIGRATE_PAGES,
        succ,
        cc[CC_MIG_FAILED_PAGES],
        0,
        0,
        0,
        cc[CC_MODE] | (MR_COMPACTION << 8),
    )
    cc[CC_NR_MIGRATED] += succ
    return False


@njit
def count_list(s: State, head: int) -> int:
    n = 0
    p = s.nxt[head]
    while p != head:
        n += 1
        p = s.nxt[p]
    return n


# ---------------------------------------------------------------------------------------------
# when to compact, when to stop
# ---------------------------------------------------------------------------------------------


@njit
def fragmentation_index(s: State, z: int, order: int) -> int:
    """fragmentation_index() (mm/vmstat.c): see fragsim.mm.vmstat.fragmentation_index."""
    free_pages = 0
    total = 0
    suitable = 0
    for o in range(MAX_ORDER):
        blocks = s.nr_free[z, o]
        total += blocks
        free_pages += blocks << o
        if o >= order:
            suitable += blocks << (o - order)
    if total == 0:
        return 0
    if suitable:
        return -1000
    return 1000 - (1000 + free_pages * 1000 // (1 << order)) // total


@njit
def extfrag_for_order(s: State, z: int, order: int) -> int:
    """extfrag_for_order() (mm/vmstat.c, 6.1): the percentage of free memory in blocks smaller
    than the order."""
    free_pages = 0
    suitable = 0
    for o in range(MAX_ORDER):
        free_pages += s.nr_free[z, o] << o
        if o >= order:
            suitable += s.nr_free[z, o] << (o - order)
    if free_pages == 0:
        return 0
    return (free_pages - (suitable << order)) * 100 // free_pages


@njit
def fragmentation_score_zone(s: State, z: int) -> int:
    """fragmentation_score_zone(): extfrag_for_order(COMPACTION_HPAGE_ORDER), the pageblock
    order here (HPAGE_PMD_ORDER on THP kernels, the same on the modelled machines)."""
    return extfrag_for_order(s, z, s.prm[P_PAGEBLOCK_ORDER])


@njit
def fragmentation_score_node(s: State, node: int) -> int:
    """fragmentation_score_node() (6.1): zone scores weighted by present pages over the node's
    present pages + 1."""
    nzt = s.prm[P_NR_ZONE_TYPES]
    node_present = 0
    for i in range(nzt):
        node_present += s.zs[node * nzt + i, ZF_PRESENT]
    score = 0
    for i in range(nzt):
        z = node * nzt + i
        score += s.zs[z, ZF_PRESENT] * fragmentation_score_zone(s, z) // (node_present + 1)
    return score


@njit(inline="always")
def fragmentation_score_wmark(s: State, low: bool) -> int:
    """fragmentation_score_wmark(): low = max(100 - proactiveness, 5), high = low + 10 (<= 100)."""
    wmark_low = max(100 - s.prm[P_COMPACTION_PROACTIVENESS], 5)
    return wmark_low if low else min(wmark_low + 10, 100)


@njit
def __compact_finished(s: State, cc: Any) -> int:
    """__compact_finished() (6.1): when the scanners meet, reset the cached positions (and flag
    the skip bits for a flush after direct compaction): COMPLETE for a whole-zone pass, else
    PARTIAL_SKIPPED. Proactive compaction stops once the zone's fragmentation score is at or
    below the low watermark (or kswapd runs). compact_memory (order -1) continues; otherwise
    continue inside a pageblock, and at a boundary SUCCESS when a free block of the order exists
    for the request's migratetype (its own list, CMA for MOVABLE, or a fallback that could be
    claimed: find_suitable_fallback(only_stealable)), else NO_SUITABLE_PAGE."""
    z = cc[CC_ZONE]
    if compact_scanners_met(s, cc):
        reset_cached_positions(s, z)
        if cc[CC_DIRECT_COMPACTION]:
            s.zs[z, ZF_BLOCKSKIP_FLUSH] = 1
        return COMPACT_COMPLETE if cc[CC_WHOLE_ZONE] else COMPACT_PARTIAL_SKIPPED
    if cc[CC_PROACTIVE]:
        if s.nd[s.zs[z, ZF_NODE], ND_KSWAPD_AWAKE]:  # kswapd_is_running()
            return COMPACT_PARTIAL_SKIPPED
        if fragmentation_score_zone(s, z) > fragmentation_score_wmark(s, True):
            return COMPACT_CONTINUE
        return COMPACT_SUCCESS
    order = cc[CC_ORDER]
    if order < 0:
        return COMPACT_CONTINUE
    if cc[CC_MIGRATE_PFN] & ((1 << s.prm[P_PAGEBLOCK_ORDER]) - 1):
        return COMPACT_CONTINUE
    mt = cc[CC_MIGRATETYPE]
    for o in range(order, MAX_ORDER):
        head = free_list(s, z, o, mt)
        if s.nxt[head] != head:
            return COMPACT_SUCCESS
        if s.prm[P_CONFIG_CMA] and mt == MIGRATE_MOVABLE:
            head = free_list(s, z, o, MIGRATE_CMA)
            if s.nxt[head] != head:
                return COMPACT_SUCCESS
        fallback, _ = find_suitable_fallback(s, z, o, mt, True)
        if fallback != -1:
            return COMPACT_SUCCESS
    return COMPACT_NO_SUITABLE_PAGE


@njit
def __compaction_suitable(
    s: State, z: int, order: int, alloc_flags: int, highest_zoneidx: int, free: int
) -> int:
    """__compaction_suitable() (6.1) with ``free`` pages available: CONTINUE for
    compact_memory; SUCCESS if the allocation's watermark check already passes; SKIPPED unless
    free memory exceeds the min (low for costly orders) watermark plus compact_gap(order) =
    2 << order; for costly orders NOT_SUITABLE_ZONE when the fragmentation index is
    0..extfrag_threshold (the failure would be for lack of memory, not fragmentation)."""
    if order < 0:
        return COMPACT_CONTINUE
    mark = wmark_pages(s, z, alloc_flags & ALLOC_WMARK_MASK)
    if __zone_watermark_ok(s, z, order, mark, highest_zoneidx, alloc_flags, free):
        return COMPACT_SUCCESS
    if order > PAGE_ALLOC_COSTLY_ORDER:
        mark = s.zs[z, ZF_WMARK_LOW] + s.zs[z, ZF_BOOST]
    else:
        mark = s.zs[z, ZF_WMARK_MIN] + s.zs[z, ZF_BOOST]
    mark += 2 << order  # compact_gap()
    if not __zone_watermark_ok(s, z, 0, mark, highest_zoneidx, ALLOC_CMA, free):
        return COMPACT_SKIPPED
    if order > PAGE_ALLOC_COSTLY_ORDER:
        fragindex = fragmentation_index(s, z, order)
        if 0 <= fragindex <= s.prm[P_EXTFRAG_THRESHOLD]:
            return COMPACT_NOT_SUITABLE_ZONE
    return COMPACT_CONTINUE


@njit
def compaction_suitable(
    s: State, z: int, order: int, alloc_flags: int, highest_zoneidx: int
) -> int:
    """compaction_suitable() (6.1): __compaction_suitable() with the zone's free pages, traced;
    NOT_SUITABLE_ZONE is returned as SKIPPED."""
    ret = __compaction_suitable(
        s, z, order, alloc_flags, highest_zoneidx, s.zs[z, ZF_NR_FREE_PAGES]
    )
    trace(s, TP_MM_COMPACTION_SUITABLE, z, order, ret, 0, 0, 0)
    if ret == COMPACT_NOT_SUITABLE_ZONE:
        ret = COMPACT_SKIPPED
    return ret


@njit
def check_drain(s: State, cc: Any) -> None:
    """compact_zone()'s check_drain: once the migration scanner has left the order-aligned block
    it last migrated from, drain this CPU's pcp lists of the zone (lru_add_drain_cpu_zone ->
    drain_local_pages) so that the freed pages merge and compact_finished() can see them."""
    if cc[CC_ORDER] > 0 and cc[CC_LAST_MIGRATED]:
        current_block_start = block_start_pfn(cc[CC_MIGRATE_PFN], cc[CC_ORDER])
        if cc[CC_LAST_MIGRATED] < current_block_start:
            drain_pages_zone(s, cc[CC_ZONE], cc[CC_CPU])
            cc[CC_LAST_MIGRATED] = 0


# the fields of a compact_control its creator sets; compact_zone_run() resets the others
CC_INPUTS = (
    CC_ZONE,
    CC_ORDER,
    CC_MODE,
    CC_WHOLE_ZONE,
    CC_IGNORE_SKIP_HINT,
    CC_IGNORE_BLOCK_SUITABLE,
    CC_DIRECT_COMPACTION,
    CC_CPU,
    CC_MIGRATETYPE,
    CC_ALLOC_FLAGS,
    CC_HIGHEST_ZONEIDX,
    CC_GFP,
    CC_SEARCH_ORDER,
    CC_PROACTIVE,
    CC_CAPTURE,
)


@njit
def compact_zone_run(st: State, cc: Any, handles: Any) -> int:
    """compact_zone() (6.1) as a resumable state machine: compaction_suitable(); the skip bits
    flushed when compaction restarts after a full deferral; the scanners start at the zone's
    ends (whole zone) or at the cached positions; loop until compact_finished(): isolate a
    batch, migrate it, put back what failed (async direct compaction then skips the rest of the
    order-aligned block), drain the pcp lists when leaving a block, stop once a block was
    captured; then release the unused free pages (the free scanner's cached position moves up
    to them) and count compact_migrate_scanned / compact_free_scanned. Returns CZ_DONE (result
    in cc[CC_RET]) or a CZ_* request for a Python driver's callback, after which the caller
    calls it again."""
    s = borrow_state(st)
    z = cc[CC_ZONE]
    start_pfn = s.zs[z, ZF_START]
    end_pfn = s.zs[z, ZF_END]
    sync = 1 if cc[CC_MODE] != MIGRATE_ASYNC else 0
    while True:
        phase = cc[CC_PHASE]
        if phase == PH_START:
            ret = compaction_suitable(
                s, z, cc[CC_ORDER], cc[CC_ALLOC_FLAGS], cc[CC_HIGHEST_ZONEIDX]
            )
            if ret == COMPACT_SUCCESS or ret == COMPACT_SKIPPED:
                cc[CC_RET] = ret
                cc[CC_PHASE] = PH_DONE
                return CZ_DONE
            for f in range(NR_CC):
                if f not in CC_INPUTS:
                    cc[f] = 0
            if compaction_restarting(s, z, cc[CC_ORDER]):
                __reset_isolation_suitable(s, z)
            if cc[CC_WHOLE_ZONE]:
                cc[CC_MIGRATE_PFN] = start_pfn
                cc[CC_FREE_PFN] = pageblock_start_pfn(s, end_pfn - 1)
            else:
                cc[CC_MIGRATE_PFN] = s.zs[z, ZF_CACHED_MIGRATE_PFN + sync]
                cc[CC_FREE_PFN] = s.zs[z, ZF_CACHED_FREE_PFN]
                if cc[CC_FREE_PFN] < start_pfn or cc[CC_FREE_PFN] >= end_pfn:
                    cc[CC_FREE_PFN] = pageblock_start_pfn(s, end_pfn - 1)
                    s.zs[z, ZF_CACHED_FREE_PFN] = cc[CC_FREE_PFN]
                if cc[CC_MIGRATE_PFN] < start_pfn or cc[CC_MIGRATE_PFN] >= end_pfn:
                    cc[CC_MIGRATE_PFN] = start_pfn
                    s.zs[z, ZF_CACHED_MIGRATE_PFN] = start_pfn
                    s.zs[z, ZF_CACHED_MIGRATE_PFN + 1] = start_pfn
                if cc[CC_MIGRATE_PFN] <= s.zs[z, ZF_INIT_MIGRATE_PFN]:
                    cc[CC_WHOLE_ZONE] = 1
            cc[CC_UPDATE_CACHED] = (
                1
                if not sync and s.zs[z, ZF_CACHED_MIGRATE_PFN] == s.zs[z, ZF_CACHED_MIGRATE_PFN + 1]
                else 0
            )
            trace(
                s,
                TP_MM_COMPACTION_BEGIN,
                start_pfn,
                cc[CC_MIGRATE_PFN],
                cc[CC_FREE_PFN],
                end_pfn,
                sync,
                0,
            )
            cc[CC_PHASE] = PH_LOOP
        elif phase == PH_LOOP:
            # compact_finished(): trace, and NO_SUITABLE_PAGE means continue
            ret = __compact_finished(s, cc)
            trace(s, TP_MM_COMPACTION_FINISHED, z, cc[CC_ORDER], ret, 0, 0, 0)
            if ret == COMPACT_NO_SUITABLE_PAGE:
                ret = COMPACT_CONTINUE
            if ret != COMPACT_CONTINUE:
                cc[CC_RET] = ret
                cc[CC_PHASE] = PH_END
                continue
            iteration_start_pfn = cc[CC_MIGRATE_PFN]
            cc[CC_RESCAN] = (
                1
                if pageblock_start_pfn(s, cc[CC_LAST_MIGRATED])
                == pageblock_start_pfn(s, iteration_start_pfn)
                else 0
            )
            cc[CC_ITER_START] = iteration_start_pfn
            if isolate_migratepages(s, cc):
                cc[CC_PHASE] = PH_SCAN
            else:  # ISOLATE_NONE
                if cc[CC_UPDATE_CACHED]:
                    s.zs[z, ZF_CACHED_MIGRATE_PFN + 1] = s.zs[z, ZF_CACHED_MIGRATE_PFN]
                if compact_loop_end(s, cc):
                    continue
        elif phase == PH_SCAN:
            if isolate_migratepages_block(s, cc):
                return cc[CC_WAITING]
            if cc[CC_NR_MIGRATEPAGES] == 0:  # ISOLATE_NONE
                if cc[CC_UPDATE_CACHED]:
                    s.zs[z, ZF_CACHED_MIGRATE_PFN + 1] = s.zs[z, ZF_CACHED_MIGRATE_PFN]
                cc[CC_PHASE] = PH_LOOP
                compact_loop_end(s, cc)
                continue
            cc[CC_UPDATE_CACHED] = 0
            cc[CC_LAST_MIGRATED] = cc[CC_ITER_START]
            cc[CC_BATCH] = cc[CC_NR_MIGRATEPAGES]
            for f in (
                CC_MIG_PASS,
                CC_MIG_RETRY,
                CC_MIG_RETRY_PAGES,
                CC_MIG_SUCC,
                CC_MIG_FAILED,
                CC_MIG_FAILED_PAGES,
            ):
                cc[f] = 0
            s.prm[P_MIGRATE_CALL] += 1
            cc[CC_CURSOR] = s.nxt[aux_list(s, AUX_MIGRATEPAGES)]
            cc[CC_PHASE] = PH_MIGRATE
        elif phase == PH_MIGRATE:
            if migrate_pages_step(s, cc, handles):
                return CZ_MIGRATE
            migrated = cc[CC_MIG_SUCC]
            trace(s, TP_MM_COMPACTION_MIGRATEPAGES, migrated, cc[CC_BATCH] - migrated, 0, 0, 0, 0)
            if cc[CC_ERR]:
                cc[CC_PHASE] = PH_PUTBACK
            else:
                cc[CC_PHASE] = PH_LOOP
                compact_loop_end(s, cc)
        elif phase == PH_PUTBACK:
            if putback_movable_pages_step(s, cc):
                return CZ_PUTBACK
            if cc[CC_ERR] == ENOMEM and not compact_scanners_met(s, cc):
                cc[CC_RET] = COMPACT_CONTENDED
                cc[CC_PHASE] = PH_END
                continue
            if cc[CC_DIRECT_COMPACTION] and cc[CC_MODE] == MIGRATE_ASYNC:
                # the order-aligned block cannot be freed: skip the rest of it
                cc[CC_MIGRATE_PFN] = block_end_pfn(cc[CC_MIGRATE_PFN] - 1, cc[CC_ORDER])
                cc[CC_LAST_MIGRATED] = 0
            cc[CC_PHASE] = PH_LOOP
            compact_loop_end(s, cc)
        else:  # PH_END
            if cc[CC_NR_FREEPAGES] > 0:
                free_pfn = pageblock_start_pfn(s, release_freepages(s, cc))
                cc[CC_NR_FREEPAGES] = 0
                if free_pfn > s.zs[z, ZF_CACHED_FREE_PFN]:
                    s.zs[z, ZF_CACHED_FREE_PFN] = free_pfn
            s.vm[VM_COMPACT_MIGRATE_SCANNED] += cc[CC_TOTAL_MIGRATE_SCANNED]
            s.vm[VM_COMPACT_FREE_SCANNED] += cc[CC_TOTAL_FREE_SCANNED]
            trace(
                s,
                TP_MM_COMPACTION_END,
                start_pfn,
                cc[CC_MIGRATE_PFN],
                cc[CC_FREE_PFN],
                end_pfn,
                sync,
                cc[CC_RET],
            )
            cc[CC_PHASE] = PH_DONE
            return CZ_DONE


@njit
def compact_loop_end(s: State, cc: Any) -> bool:
    """The end of one compact_zone() iteration: check_drain, then stop with SUCCESS if a block
    was captured. Returns True if the loop ends."""
    check_drain(s, cc)
    if cc[CC_CAPTURE] and s.prm[P_CAPC_PAGE] >= 0:
        cc[CC_RET] = COMPACT_SUCCESS
        cc[CC_PHASE] = PH_END
        return True
    return False


def new_compact_control(
    zone: int = 0,
    order: int = -1,
    mode: int = MIGRATE_SYNC,
    migratetype: int = 0,
    alloc_flags: int = 0,
    highest_zoneidx: int = 0,
    whole_zone: bool = True,
    ignore_skip_hint: bool = True,
    gfp: int = GFP_KERNEL,
    direct_compaction: bool = False,
    ignore_block_suitable: bool = False,
    proactive: bool = False,
    cpu: int = 0,
) -> np.ndarray:
    """A struct compact_control for compact_zone_run()."""
    cc = np.zeros(NR_CC, np.int64)
    cc[CC_ZONE] = zone
    cc[CC_ORDER] = order
    cc[CC_SEARCH_ORDER] = max(order, 0)
    cc[CC_MODE] = mode
    cc[CC_MIGRATETYPE] = migratetype
    cc[CC_ALLOC_FLAGS] = alloc_flags
    cc[CC_HIGHEST_ZONEIDX] = highest_zoneidx
    cc[CC_WHOLE_ZONE] = int(whole_zone)
    cc[CC_IGNORE_SKIP_HINT] = int(ignore_skip_hint)
    cc[CC_IGNORE_BLOCK_SUITABLE] = int(ignore_block_suitable)
    cc[CC_DIRECT_COMPACTION] = int(direct_compaction)
    cc[CC_PROACTIVE] = int(proactive)
    cc[CC_GFP] = gfp
    cc[CC_CPU] = cpu
    return cc


def _flush(machine: Any) -> None:
    if machine.tracer is not None and machine.state.prm[P_TPOS]:
        machine.tracer.flush(machine)


def compact_zone(machine: Any, cc: np.ndarray) -> int:
    """Run compact_zone_run() to the end, making the Python drivers' callbacks it asks for
    through the movable_operations contract (fragsim/mm/migrate.py) and charging their cost.
    Returns the compact_result."""
    mode = migrate.MigrateMode(int(cc[CC_MODE]))
    st = machine.state
    while True:
        status = int(compact_zone_run(st, cc, machine.handles))
        _flush(machine)
        if status == CZ_DONE:
            return int(cc[CC_RET])
        pfn = int(cc[CC_PFN])
        d = int(st.mops[pfn]) - 1
        if status == CZ_ISOLATE:
            imode = migrate.IsolateMode(int(cc[CC_BLK_MODE]))
            ok = migrate.isolate_movable_page(machine, pfn, imode) == 0
            cc[CC_ANSWER] = 1 if ok else 0
            if ok:
                st.drv[d, DRV_NR_ISOLATED] += 1
        elif status == CZ_MIGRATE:
            rc = int(migrate.move_to_new_page(machine, int(cc[CC_DST]), pfn, mode))
            if d >= 0:
                drv_charge(st, d, 1 if rc == 0 else 0)
                st.drv[d, DRV_NR_MIGRATED if rc == 0 else DRV_NR_FAILED] += 1
            cc[CC_ANSWER] = rc
        else:  # CZ_PUTBACK
            migrate.putback_movable_page(machine, pfn)


def _run_compact_zone(machine: Any, cc: np.ndarray) -> int:
    ret = compact_zone(machine, cc)
    if machine.debug:
        check_invariants(machine)
    return ret


def compact_zone_order(
    machine: Any,
    z: int,
    order: int,
    gfp: int,
    prio: int,
    alloc_flags: int,
    highest_zoneidx: int,
    cpu: int = 0,
) -> tuple[int, int]:
    """compact_zone_order() (6.1): direct compaction of one zone, async at
    COMPACT_PRIO_ASYNC and sync-light otherwise, the whole zone ignoring skip hints and
    pageblock types at MIN_COMPACT_PRIORITY, with a capture_control installed (the first
    block of the order freed in this zone is taken for the caller). Returns (result, captured
    pfn or -1); a capture makes the result SUCCESS."""
    st = machine.state
    full = prio == MIN_COMPACT_PRIORITY
    cc = new_compact_control(
        z,
        order,
        MIGRATE_ASYNC if prio == COMPACT_PRIO_ASYNC else MIGRATE_SYNC_LIGHT,
        migratetype=machine.gfp_migratetype(gfp),
        alloc_flags=alloc_flags,
        highest_zoneidx=highest_zoneidx,
        whole_zone=full,
        ignore_skip_hint=full,
        ignore_block_suitable=full,
        gfp=gfp,
        direct_compaction=True,
        cpu=cpu,
    )
    cc[CC_CAPTURE] = 1
    st.prm[P_CAPC_ZONE] = z
    st.prm[P_CAPC_ORDER] = order
    st.prm[P_CAPC_PAGE] = -1
    try:
        # no invariant check here: a captured block is nobody's until prep_new_page
        ret = compact_zone(machine, cc)
    finally:
        captured = int(st.prm[P_CAPC_PAGE])
        st.prm[P_CAPC_ZONE] = -1
        st.prm[P_CAPC_PAGE] = -1
    if captured >= 0:
        ret = COMPACT_SUCCESS
    return ret, captured


def try_to_compact_pages(
    machine: Any,
    gfp: int,
    order: int,
    alloc_flags: int,
    nid: int,
    prio: int,
    cpu: int = 0,
) -> tuple[int, int]:
    """try_to_compact_pages() (6.1): compact each zone of the zonelist (skipping deferred zones
    unless at MIN_COMPACT_PRIORITY) until one reports SUCCESS (then compaction_defer_reset with
    alloc_success false); a sync attempt that met its scanners defers the zone. Returns (the
    highest compact_result seen, the captured pfn or -1)."""
    st = machine.state
    if not (gfp & __GFP_IO):  # gfp_compaction_allowed()
        return COMPACT_SKIPPED, -1
    machine.trace(TP_MM_COMPACTION_TRY_TO_COMPACT_PAGES, 0, order, gfp, prio)
    rc = COMPACT_SKIPPED
    hz = machine.gfp_zone(gfp)
    for z in machine.zonelist(gfp, nid):
        if prio > MIN_COMPACT_PRIORITY and compaction_deferred(st, z, order):
            rc = max(COMPACT_DEFERRED, rc)
            continue
        status, page = compact_zone_order(machine, z, order, gfp, prio, alloc_flags, hz, cpu)
        rc = max(status, rc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(st, z, order, False)
            _flush(machine)
            return rc, page
        if prio != COMPACT_PRIO_ASYNC and status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
            defer_compaction(st, z, order)
    _flush(machine)
    return rc, -1


def compact_node(machine: Any, nid: int) -> list[int]:
    """compact_node() (6.1): order -1, MIGRATE_SYNC, ignore skip hints, whole zone, GFP_KERNEL,
    for every populated zone of the node."""
    return [
        _run_compact_zone(machine, new_compact_control(z, order=-1, mode=MIGRATE_SYNC))
        for z in _node_zones(machine, nid, machine.nr_zone_types - 1)
    ]


def compact_nodes(machine: Any) -> list[int]:
    """compact_nodes(): what a write to /proc/sys/vm/compact_memory does."""
    out: list[int] = []
    for nid in range(machine.nr_nodes):
        out += compact_node(machine, nid)
    return out


def proactive_compact_node(machine: Any, nid: int) -> None:
    """proactive_compact_node() (6.1): order -1, MIGRATE_SYNC_LIGHT, whole zone, skip hints
    ignored, each zone until its fragmentation score falls to the low watermark."""
    for z in _node_zones(machine, nid, machine.nr_zone_types - 1):
        cc = new_compact_control(z, order=-1, mode=MIGRATE_SYNC_LIGHT, proactive=True)
        _run_compact_zone(machine, cc)


def _node_zones(machine: Any, nid: int, upto: int) -> list[int]:
    nzt = machine.nr_zone_types
    return [
        nid * nzt + i
        for i in range(upto + 1)
        if machine.state.zs[nid * nzt + i, ZF_MANAGED] > 0  # populated_zone()
    ]


def reset_isolation_suitable(machine: Any, nid: int) -> None:
    """reset_isolation_suitable() (6.1): flush the skip bits of each zone of the node that a
    direct compaction finished with its scanners met (compact_blockskip_flush)."""
    st = machine.state
    for z in _node_zones(machine, nid, machine.nr_zone_types - 1):
        if st.zs[z, ZF_BLOCKSKIP_FLUSH]:
            __reset_isolation_suitable(st, z)


def kcompactd_node_suitable(machine: Any, nid: int) -> bool:
    """kcompactd_node_suitable() (6.1): compaction_suitable() says CONTINUE for some zone up to
    kcompactd_highest_zoneidx at kcompactd_max_order."""
    st = machine.state
    order = int(st.nd[nid, ND_KCOMPACTD_MAX_ORDER])
    hz = int(st.nd[nid, ND_KCOMPACTD_HIGHEST_ZONEIDX])
    return any(
        compaction_suitable(st, z, order, 0, hz) == COMPACT_CONTINUE
        for z in _node_zones(machine, nid, hz)
    )


def kcompactd_do_work(machine: Any, nid: int) -> None:
    """kcompactd_do_work() (6.1): compact each zone up to kcompactd_highest_zoneidx for
    kcompactd_max_order, MIGRATE_SYNC_LIGHT with skip hints and cached positions; deferred or
    unsuitable zones are skipped; SUCCESS resets the deferral, a pass that met its scanners
    drains the pcp lists and defers. Counts compact_daemon_wake and the daemon's scanned
    pages."""
    st = machine.state
    order = int(st.nd[nid, ND_KCOMPACTD_MAX_ORDER])
    hz = int(st.nd[nid, ND_KCOMPACTD_HIGHEST_ZONEIDX])
    trace(
        st, TP_MM_COMPACTION_KCOMPACTD_WAKE, nid, order, nid * machine.nr_zone_types + hz, 0, 0, 0
    )
    st.vm[VM_COMPACT_DAEMON_WAKE] += 1
    for z in _node_zones(machine, nid, hz):
        if compaction_deferred(st, z, order):
            continue
        if compaction_suitable(st, z, order, 0, z % machine.nr_zone_types) != COMPACT_CONTINUE:
            continue
        cc = new_compact_control(
            z,
            order,
            MIGRATE_SYNC_LIGHT,
            highest_zoneidx=hz,
            whole_zone=False,
            ignore_skip_hint=False,
        )
        status = _run_compact_zone(machine, cc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(st, z, order, False)
        elif status in (COMPACT_PARTIAL_SKIPPED, COMPACT_COMPLETE):
            machine.drain_all_pages()
            defer_compaction(st, z, order)
        st.vm[VM_COMPACT_DAEMON_MIGRATE_SCANNED] += cc[CC_TOTAL_MIGRATE_SCANNED]
        st.vm[VM_COMPACT_DAEMON_FREE_SCANNED] += cc[CC_TOTAL_FREE_SCANNED]
    if st.nd[nid, ND_KCOMPACTD_MAX_ORDER] <= order:
        st.nd[nid, ND_KCOMPACTD_MAX_ORDER] = 0
    if st.nd[nid, ND_KCOMPACTD_HIGHEST_ZONEIDX] >= hz:
        st.nd[nid, ND_KCOMPACTD_HIGHEST_ZONEIDX] = machine.nr_zones(nid) - 1
    _flush(machine)


def should_proactive_compact_node(machine: Any, nid: int) -> bool:
    """should_proactive_compact_node() (6.1): proactiveness on, kswapd not running, and the
    node's fragmentation score above the high watermark."""
    st = machine.state
    if not st.prm[P_COMPACTION_PROACTIVENESS] or st.nd[nid, ND_KSWAPD_AWAKE]:
        return False
    return fragmentation_score_node(st, nid) > fragmentation_score_wmark(st, False)


HPAGE_FRAG_CHECK_INTERVAL_NS = 500 * 1_000_000  # HPAGE_FRAG_CHECK_INTERVAL_MSEC


def kcompactd(machine: Any, nid: int, now: int, trigger: bool = False) -> None:
    """One pass of kcompactd()'s loop (6.1) at simulated time ``now``. kcompactd wakes when
    wakeup_kcompactd() asked for it and kcompactd_node_suitable() holds (the wake-up is traced
    here), when its timeout expires (500 ms; none while compaction_proactiveness is 0), or when
    the proactiveness sysctl is written (``trigger``). Awake, it runs kcompactd_do_work() if
    work is requested (kcompactd_max_order > 0; not for a trigger), else the proactive check:
    compact the node when its fragmentation score is above the high watermark, and wait 64
    timeouts if that did not lower the score. The next timeout is kept in
    nd[ND_PROACTIVE_NEXT]."""
    st = machine.state
    woken = False
    if st.nd[nid, ND_KCOMPACTD_AWAKE]:
        st.nd[nid, ND_KCOMPACTD_AWAKE] = 0
        if kcompactd_node_suitable(machine, nid):
            zid = nid * machine.nr_zone_types + int(st.nd[nid, ND_KCOMPACTD_HIGHEST_ZONEIDX])
            order = int(st.nd[nid, ND_KCOMPACTD_MAX_ORDER])
            machine.trace(TP_MM_COMPACTION_WAKEUP_KCOMPACTD, nid, order, zid)
            woken = True
    timed_out = st.prm[P_COMPACTION_PROACTIVENESS] and now >= st.nd[nid, ND_PROACTIVE_NEXT]
    if not (woken or timed_out or trigger):
        return
    timeout = HPAGE_FRAG_CHECK_INTERVAL_NS
    if st.nd[nid, ND_KCOMPACTD_MAX_ORDER] > 0 and not trigger:
        kcompactd_do_work(machine, nid)
    elif should_proactive_compact_node(machine, nid):
        prev_score = fragmentation_score_node(st, nid)
        proactive_compact_node(machine, nid)
        if fragmentation_score_node(st, nid) >= prev_score:
            timeout <<= COMPACT_MAX_DEFER_SHIFT
    st.nd[nid, ND_PROACTIVE_NEXT] = now + timeout
    machine.trace(TP_MM_COMPACTION_KCOMPACTD_SLEEP, nid, 0)
    _flush(machine)


__all__ = [
    "COMPACT_COMPLETE",
    "COMPACT_CONTENDED",
    "COMPACT_CONTINUE",
    "COMPACT_DEFERRED",
    "COMPACT_PARTIAL_SKIPPED",
    "COMPACT_PRIO_ASYNC",
    "COMPACT_PRIO_SYNC_FULL",
    "COMPACT_PRIO_SYNC_LIGHT",
    "COMPACT_SKIPPED",
    "COMPACT_SUCCESS",
    "MIGRATE_ASYNC",
    "MIGRATE_SYNC",
    "MIGRATE_SYNC_LIGHT",
    "compact_node",
    "compact_nodes",
    "compact_zone",
    "compact_zone_order",
    "compact_zone_run",
    "compaction_defer_reset",
    "compaction_deferred",
    "compaction_restarting",
    "compaction_suitable",
    "defer_compaction",
    "fragmentation_score_node",
    "fragmentation_score_zone",
    "kcompactd",
    "kcompactd_do_work",
    "new_compact_control",
    "proactive_compact_node",
    "reset_isolation_suitable",
    "try_to_compact_pages",
]
