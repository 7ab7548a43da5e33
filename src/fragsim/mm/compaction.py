"""Memory compaction. Models mm/compaction.c of Linux 6.1.192: compact_control, the migration
scanner (isolate_migratepages, isolate_migratepages_block) walking up from the zone start, the free
scanner (isolate_freepages, isolate_freepages_block) walking down from the zone end, isolated free
pages split to order 0 (split_map_pages), compaction_alloc / release_freepages, pageblock skip
bits, __compact_finished and compact_zone, with the page migration of mm/migrate.c
(migrate_pages, 6.1.192: batches of up to 512 base pages, up to 10 passes) for LRU pages.

This first part covers full compaction (``/proc/sys/vm/compact_memory``: order -1, MIGRATE_SYNC,
the whole zone, skip hints ignored) of LRU pages. SIMPLIFICATION (this issue's next steps): the
non-LRU movable_operations framework, fast_find_migrateblock / fast_isolate_freepages, deferral,
compaction_suitable for order > 0, capture, direct compaction, kcompactd and proactive
compaction are not here yet; __PageMovable pages are treated as not isolatable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fragsim.mm._numba import njit
from fragsim.mm.internal import (
    ALLOC_CMA,
    ALLOC_WMARK_MASK,
    AUX_FREEPAGES,
    AUX_MIGRATEPAGES,
    AUX_RET,
    AUX_TMP,
    P_AUX_SENT,
    P_COMPACT_UNEVICTABLE,
    P_CONFIG_CMA,
    P_EXTFRAG_THRESHOLD,
    P_PAGEBLOCK_ORDER,
    P_TPOS,
    TP_MM_COMPACTION_BEGIN,
    TP_MM_COMPACTION_DEFER_COMPACTION,
    TP_MM_COMPACTION_DEFER_RESET,
    TP_MM_COMPACTION_DEFERRED,
    TP_MM_COMPACTION_END,
    TP_MM_COMPACTION_FINISHED,
    TP_MM_COMPACTION_ISOLATE_FREEPAGES,
    TP_MM_COMPACTION_ISOLATE_MIGRATEPAGES,
    TP_MM_COMPACTION_MIGRATEPAGES,
    TP_MM_COMPACTION_SUITABLE,
    TP_MM_MIGRATE_PAGES,
    VM_COMPACT_FREE_SCANNED,
    VM_COMPACT_ISOLATED,
    VM_COMPACT_MIGRATE_SCANNED,
    VM_PGMIGRATE_FAIL,
    VM_PGMIGRATE_SUCCESS,
    ZF_BOOST,
    ZF_COMPACT_CONSIDERED,
    ZF_COMPACT_DEFER_SHIFT,
    ZF_COMPACT_ORDER_FAILED,
    ZF_END,
    ZF_MANAGED,
    ZF_NODE,
    ZF_NR_FREE_PAGES,
    ZF_START,
    ZF_WMARK_LOW,
    ZF_WMARK_MIN,
    State,
)
from fragsim.mm.migrate import IsolateMode, MigrateMode, MigrateReason
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
    PG_buddy,
    PG_head,
    PG_isolated,
    PG_lru,
    PG_movable,
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
CC_BLK_VALID = 28
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
NR_CC = 43

PH_START, PH_LOOP, PH_SCAN, PH_MIGRATE, PH_PUTBACK, PH_END, PH_DONE = range(7)
# compact_zone_run() return codes
CZ_DONE = 0  # the result is in cc[CC_RET]
CZ_ISOLATE = 1  # isolate_movable_page(cc[CC_PFN]); answer 1 if isolated
CZ_MIGRATE = 2  # move_to_new_page(dst=cc[CC_DST], src=cc[CC_PFN]); answer the MigrateResult
CZ_PUTBACK = 3  # putback_movable_page(cc[CC_PFN]); no answer


@njit(inline="always")
def pageblock_start_pfn(s: State, pfn: int) -> int:
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    return (pfn >> pbo) << pbo


@njit(inline="always")
def pageblock_end_pfn(s: State, pfn: int) -> int:
    return pageblock_start_pfn(s, pfn) + (1 << s.prm[P_PAGEBLOCK_ORDER])


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
def isolation_suitable(s: State, cc: Any, pfn: int) -> bool:
    """isolation_suitable(): the pageblock's skip bit, unless skip hints are ignored."""
    if cc[CC_IGNORE_SKIP_HINT]:
        return True
    return not (s.pb[pfn >> s.prm[P_PAGEBLOCK_ORDER]] & PB_MIGRATE_SKIP)


@njit(inline="always")
def set_pageblock_skip(s: State, pfn: int) -> None:
    s.pb[pfn >> s.prm[P_PAGEBLOCK_ORDER]] |= PB_MIGRATE_SKIP


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


@njit
def isolate_freepages(s: State, cc: Any) -> None:
    """isolate_freepages() (6.1, without fast_isolate_freepages): walk pageblocks down from
    cc->free_pfn to the migration scanner's block, isolating free pages until there are enough;
    the stride doubles up to COMPACT_CLUSTER_MAX over blocks that yield nothing."""
    z = cc[CC_ZONE]
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    isolate_start_pfn = cc[CC_FREE_PFN]
    block_start_pfn = pageblock_start_pfn(s, isolate_start_pfn)
    block_end_pfn = min(block_start_pfn + nr, s.zs[z, ZF_END])
    low_pfn = pageblock_end_pfn(s, cc[CC_MIGRATE_PFN])
    stride = COMPACT_CLUSTER_MAX if cc[CC_MODE] == MIGRATE_ASYNC else 1
    while block_start_pfn >= low_pfn:
        if (
            pageblock_pfn_to_page(s, z, block_start_pfn, block_end_pfn)
            and suitable_migration_target(s, cc, block_start_pfn)
            and isolation_suitable(s, cc, block_start_pfn)
        ):
            nr_isolated, isolate_start_pfn = isolate_freepages_block(
                s, cc, isolate_start_pfn, block_end_pfn, stride
            )
            if isolate_start_pfn == block_end_pfn:  # update_pageblock_skip()
                set_pageblock_skip(s, block_start_pfn)
            if cc[CC_NR_FREEPAGES] >= cc[CC_NR_MIGRATEPAGES]:
                if isolate_start_pfn >= block_end_pfn:
                    isolate_start_pfn = block_start_pfn - nr
                break
            elif isolate_start_pfn < block_end_pfn:
                break
            if nr_isolated:
                stride = 1
            else:
                stride = min(COMPACT_CLUSTER_MAX, stride << 1)
        block_end_pfn = block_start_pfn
        block_start_pfn -= nr
        isolate_start_pfn = block_start_pfn
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


@njit(inline="always")
def isolate_success(s: State, cc: Any, pfn: int) -> None:
    """isolate_success: onto cc->migratepages (list_add) and counted."""
    list_add(s.nxt, s.prv, pfn, aux_list(s, AUX_MIGRATEPAGES))
    cc[CC_NR_MIGRATEPAGES] += 1
    cc[CC_BLK_ISOLATED] += 1


@njit
def isolate_migratepages_block(s: State, cc: Any) -> bool:
    """isolate_migratepages_block() (6.1), resumable: scans cc[CC_BLK_LOW] .. cc[CC_BLK_END].
    Skips free blocks and compound pages; takes LRU pages with no extra reference (a pin fails
    ``page_count - 1 > mapcount``), evictable unless ISOLATE_UNEVICTABLE, not under writeback in
    async mode; a non-LRU movable page (``__PageMovable && !PageIsolated``) goes to its driver
    (isolate_movable_page): the scan returns True with the pfn in cc[CC_PFN] and resumes with the
    answer in cc[CC_ANSWER]. Stops after COMPACT_CLUSTER_MAX pages unless rescanning. Returns
    False when the block scan is over (traced and counted).
    SIMPLIFICATION: no LRU lists yet (PG_lru marks an LRU page), mapcount is 1."""
    low_pfn = cc[CC_BLK_LOW]
    end_pfn = cc[CC_BLK_END]
    mode = cc[CC_BLK_MODE]
    pbo = s.prm[P_PAGEBLOCK_ORDER]
    aborted = False
    if cc[CC_WAITING] == CZ_ISOLATE:  # the driver's answer for the page at low_pfn
        cc[CC_WAITING] = 0
        if cc[CC_ANSWER]:
            isolate_success(s, cc, low_pfn)
            low_pfn += 1
            if cc[CC_NR_MIGRATEPAGES] >= COMPACT_CLUSTER_MAX and not cc[CC_RESCAN]:
                end_pfn = low_pfn  # break out of the scan below
        else:
            low_pfn += 1
    while low_pfn < end_pfn:
        cc[CC_BLK_SCANNED] += 1
        if not cc[CC_BLK_VALID] and (low_pfn & ((1 << pbo) - 1)) == 0:
            if not isolation_suitable(s, cc, low_pfn):
                low_pfn = end_pfn
                aborted = True
                break
            cc[CC_BLK_VALID] = 1
        f = s.flags[low_pfn]
        if f & PG_buddy:
            o = int(s.order[low_pfn])
            if 0 < o < MAX_ORDER:
                low_pfn += (1 << o) - 1
            low_pfn += 1
            continue
        if f & PG_head:  # PageCompound && !alloc_contig
            low_pfn += 1 << s.order[low_pfn]
            continue
        if f & PG_tail:
            low_pfn += 1
            continue
        if not (f & PG_lru):
            if (f & PG_movable) and not (f & PG_isolated):
                if s.refcount[low_pfn] > 0 and s.mops[low_pfn] > 0:
                    cc[CC_BLK_LOW] = low_pfn
                    cc[CC_PFN] = low_pfn
                    cc[CC_WAITING] = CZ_ISOLATE
                    return True
            low_pfn += 1
            continue
        # get_page_unless_zero(); anonymous pages with extra references (pins) fail
        if s.refcount[low_pfn] - 1 > 0:
            low_pfn += 1
            continue
        if not (mode & ISOLATE_UNEVICTABLE) and (f & PG_unevictable):
            low_pfn += 1
            continue
        if (mode & ISOLATE_ASYNC_MIGRATE) and (f & PG_writeback):
            low_pfn += 1
            continue
        # TestClearPageLRU; del_page_from_lru_list; onto cc->migratepages with our reference
        s.flags[low_pfn] &= ~PG_lru
        s.refcount[low_pfn] += 1
        isolate_success(s, cc, low_pfn)
        low_pfn += 1
        if cc[CC_NR_MIGRATEPAGES] >= COMPACT_CLUSTER_MAX and not cc[CC_RESCAN]:
            break
    end_pfn = cc[CC_BLK_END]
    if low_pfn > end_pfn:
        low_pfn = end_pfn
    nr_isolated = cc[CC_BLK_ISOLATED]
    # the first isolation sets skip_updated (test_and_set_skip), so only a block that gave
    # nothing gets its skip bit here
    if not aborted and low_pfn == end_pfn and nr_isolated == 0 and cc[CC_BLK_VALID]:
        set_pageblock_skip(s, pageblock_start_pfn(s, cc[CC_BLK_START]))
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
def isolate_migratepages(s: State, cc: Any) -> bool:
    """isolate_migratepages() (6.1): from cc->migrate_pfn, pageblock by pageblock up to the free
    scanner, start the scan of the first suitable block (fast_find_migrateblock returns
    cc->migrate_pfn when skip hints are ignored, as for compact_memory). Returns False when no
    block is left (ISOLATE_NONE)."""
    z = cc[CC_ZONE]
    nr = 1 << s.prm[P_PAGEBLOCK_ORDER]
    low_pfn = cc[CC_MIGRATE_PFN]
    block_start_pfn = max(pageblock_start_pfn(s, low_pfn), s.zs[z, ZF_START])
    block_end_pfn = pageblock_end_pfn(s, low_pfn)
    while block_end_pfn <= cc[CC_FREE_PFN]:
        if pageblock_pfn_to_page(s, z, block_start_pfn, min(block_end_pfn, s.zs[z, ZF_END])):
            aligned = (low_pfn & (nr - 1)) == 0
            if not (aligned and not isolation_suitable(s, cc, block_start_pfn)):
                # suitable_migration_source(): every block for sync or non-direct compaction
                cc[CC_MIGRATE_PFN] = low_pfn
                cc[CC_BLK_START] = low_pfn
                cc[CC_BLK_LOW] = low_pfn
                cc[CC_BLK_END] = block_end_pfn
                cc[CC_BLK_SCANNED] = 0
                cc[CC_BLK_ISOLATED] = 0
                cc[CC_BLK_VALID] = 0
                cc[CC_BLK_MODE] = (ISOLATE_UNEVICTABLE if s.prm[P_COMPACT_UNEVICTABLE] else 0) | (
                    ISOLATE_ASYNC_MIGRATE if cc[CC_MODE] != MIGRATE_SYNC else 0
                )
                return True
        cc[CC_MIGRATE_PFN] = low_pfn = block_end_pfn
        block_start_pfn = block_end_pfn
        block_end_pfn += nr
    return False


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


@njit(inline="always")
def compaction_free(s: State, cc: Any, page: int) -> None:
    """compaction_free(): a destination that was not used goes back on cc->freepages."""
    list_add(s.nxt, s.prv, page, aux_list(s, AUX_FREEPAGES))
    cc[CC_NR_FREEPAGES] += 1


@njit
def migrate_pages_step(s: State, cc: Any, handles: Any) -> bool:
    """migrate_pages() / migrate_pages_batch() (6.1.192) with compaction_alloc and
    compaction_free, resumable (compaction's lists hold at most COMPACT_CLUSTER_MAX pages, so
    the 512-page batch cut never applies): up to 10 passes over cc->migratepages from its head
    while some page asked to retry (-EAGAIN); an LRU page with no pin always moves; a page whose
    other references are gone (refcount 1) is done; a non-LRU page goes to its driver
    (move_to_new_folio): returns True with src in cc[CC_PFN], dst in cc[CC_DST], resumed with the
    driver's result in cc[CC_ANSWER]. No destination is -ENOMEM, which aborts. Permanent failures
    stay on the list for putback. Counts pgmigrate_success/fail, traces mm_migrate_pages.
    Returns False when done; the result (pages not migrated, or -ENOMEM) is in cc[CC_ERR].
    SIMPLIFICATION: no lock or writeback races, so an isolated unpinned LRU page never gets
    -EAGAIN."""
    head = aux_list(s, AUX_MIGRATEPAGES)
    ret = aux_list(s, AUX_RET)
    cpu = cc[CC_CPU]
    aborted = False
    if cc[CC_WAITING] == CZ_MIGRATE:
        cc[CC_WAITING] = 0
        src = cc[CC_PFN]
        dst = cc[CC_DST]
        rc = cc[CC_ANSWER]
        if rc == 0:  # MIGRATEPAGE_SUCCESS: the driver moved its data to dst
            list_del(s.nxt, s.prv, src)
            migrate_page_move(s, dst, src, handles)
            put_page(s, dst, cpu)  # the core's reference; the driver holds its own
            put_page(s, src, cpu)  # the isolation reference: the source is freed
            cc[CC_MIG_SUCC] += 1
        elif rc == -11:  # -EAGAIN: stays on the list for the next pass
            compaction_free(s, cc, dst)
            cc[CC_MIG_RETRY] += 1
            cc[CC_MIG_RETRY_PAGES] += 1
        else:  # permanent: onto the return list, put back by the caller
            list_del(s.nxt, s.prv, src)
            list_add_tail(s.nxt, s.prv, src, ret)
            compaction_free(s, cc, dst)
            cc[CC_MIG_FAILED] += 1
            cc[CC_MIG_FAILED_PAGES] += 1
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
            cc[CC_PFN] = page
            cc[CC_DST] = dst
            cc[CC_WAITING] = CZ_MIGRATE
            return True
        list_del(s.nxt, s.prv, page)
        migrate_page_move(s, dst, page, handles)
        s.flags[dst] |= PG_lru  # putback_lru_page(newpage)
        s.refcount[page] = 1  # the owner's reference went to the destination
        put_page(s, page, cpu)
        cc[CC_MIG_SUCC] += 1
    # whatever is left on the list after the passes failed; return the permanent failures
    if not aborted:
        cc[CC_MIG_FAILED] += cc[CC_MIG_RETRY]
        cc[CC_MIG_FAILED_PAGES] += cc[CC_MIG_RETRY_PAGES]
    while s.nxt[ret] != ret:
        p = s.nxt[ret]
        list_del(s.nxt, s.prv, p)
        list_add_tail(s.nxt, s.prv, p, head)
    left = count_list(s, head)
    cc[CC_ERR] = -12 if aborted else left
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
def putback_movable_pages_step(s: State, cc: Any) -> bool:
    """putback_movable_pages() (6.1), resumable: LRU pages go back on the LRU and lose the
    isolation reference; a non-LRU movable page goes to its driver (putback_page): returns True
    with the pfn in cc[CC_PFN] (the caller clears PG_isolated and drops the reference)."""
    head = aux_list(s, AUX_MIGRATEPAGES)
    while s.nxt[head] != head:
        page = s.nxt[head]
        list_del(s.nxt, s.prv, page)
        if s.flags[page] & PG_isolated:
            cc[CC_PFN] = page
            return True
        s.flags[page] |= PG_lru
        s.refcount[page] -= 1
    cc[CC_NR_MIGRATEPAGES] = 0
    return False


@njit
def count_list(s: State, head: int) -> int:
    n = 0
    p = s.nxt[head]
    while p != head:
        n += 1
        p = s.nxt[p]
    return n


@njit
def __compact_finished(s: State, cc: Any) -> int:
    """__compact_finished() (6.1, without proactive compaction): COMPLETE (whole zone) or
    PARTIAL_SKIPPED when the scanners meet; CONTINUE for compact_memory (order -1) or while the
    migration scanner is inside a pageblock; SUCCESS when a free block of the order exists for
    the request's migratetype (its own list, CMA for MOVABLE, or a fallback that could be
    claimed: find_suitable_fallback(only_stealable)); else NO_SUITABLE_PAGE."""
    if compact_scanners_met(s, cc):
        return COMPACT_COMPLETE if cc[CC_WHOLE_ZONE] else COMPACT_PARTIAL_SKIPPED
    order = cc[CC_ORDER]
    if order < 0:
        return COMPACT_CONTINUE
    if cc[CC_MIGRATE_PFN] & ((1 << s.prm[P_PAGEBLOCK_ORDER]) - 1):
        return COMPACT_CONTINUE
    z = cc[CC_ZONE]
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
def compaction_suitable(
    s: State, z: int, order: int, alloc_flags: int, highest_zoneidx: int
) -> int:
    """compaction_suitable() (6.1): CONTINUE for compact_memory; SUCCESS if the allocation's
    watermark check already passes; SKIPPED unless free memory exceeds the min (low for costly
    orders) watermark plus compact_gap(order) = 2 << order; for costly orders SKIPPED (traced
    as not_suitable_zone) when the fragmentation index is 0..extfrag_threshold, i.e. the
    failure would be for lack of memory, not fragmentation."""
    if order < 0:
        ret = COMPACT_CONTINUE
    else:
        mark = wmark_pages(s, z, alloc_flags & ALLOC_WMARK_MASK)
        free = s.zs[z, ZF_NR_FREE_PAGES]
        if __zone_watermark_ok(s, z, order, mark, highest_zoneidx, alloc_flags, free):
            ret = COMPACT_SUCCESS
        else:
            if order > PAGE_ALLOC_COSTLY_ORDER:
                mark = s.zs[z, ZF_WMARK_LOW] + s.zs[z, ZF_BOOST]
            else:
                mark = s.zs[z, ZF_WMARK_MIN] + s.zs[z, ZF_BOOST]
            mark += 2 << order  # compact_gap()
            if not __zone_watermark_ok(s, z, 0, mark, highest_zoneidx, ALLOC_CMA, free):
                ret = COMPACT_SKIPPED
            else:
                ret = COMPACT_CONTINUE
                if order > PAGE_ALLOC_COSTLY_ORDER:
                    fragindex = fragmentation_index(s, z, order)
                    if 0 <= fragindex <= s.prm[P_EXTFRAG_THRESHOLD]:
                        ret = COMPACT_NOT_SUITABLE_ZONE
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
        order = cc[CC_ORDER]
        current_block_start = (cc[CC_MIGRATE_PFN] >> order) << order
        if cc[CC_LAST_MIGRATED] < current_block_start:
            drain_pages_zone(s, cc[CC_ZONE], cc[CC_CPU])
            cc[CC_LAST_MIGRATED] = 0


@njit
def compact_zone_run(st: State, cc: Any, handles: Any) -> int:
    """compact_zone() (6.1) for a whole-zone pass, as a resumable state machine: scanners start
    at the zone's ends; loop until __compact_finished(): isolate a batch, migrate it, put back
    what failed; then release the unused free pages and count compact_migrate_scanned /
    compact_free_scanned. Returns CZ_DONE (result in cc[CC_RET]) or a CZ_* request for a
    driver callback, after which the caller calls it again."""
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
                if f not in (
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
                ):
                    cc[f] = 0
            cc[CC_MIGRATE_PFN] = start_pfn
            cc[CC_FREE_PFN] = pageblock_start_pfn(s, end_pfn - 1)
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
                == (pageblock_start_pfn(s, iteration_start_pfn))
                else 0
            )
            cc[CC_ITER_START] = iteration_start_pfn
            cc[CC_PHASE] = PH_SCAN if isolate_migratepages(s, cc) else PH_LOOP
        elif phase == PH_SCAN:
            if isolate_migratepages_block(s, cc):
                return CZ_ISOLATE
            if cc[CC_NR_MIGRATEPAGES] == 0:  # ISOLATE_NONE
                check_drain(s, cc)
                cc[CC_PHASE] = PH_LOOP
                continue
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
                check_drain(s, cc)
                cc[CC_PHASE] = PH_LOOP
        elif phase == PH_PUTBACK:
            if putback_movable_pages_step(s, cc):
                return CZ_PUTBACK
            if cc[CC_ERR] == -12 and not compact_scanners_met(s, cc):
                cc[CC_RET] = COMPACT_CONTENDED
                cc[CC_PHASE] = PH_END
            else:
                check_drain(s, cc)
                cc[CC_PHASE] = PH_LOOP
        else:  # PH_END
            if cc[CC_NR_FREEPAGES] > 0:
                release_freepages(s, cc)
                cc[CC_NR_FREEPAGES] = 0
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


def new_compact_control(
    zone: int = 0,
    order: int = -1,
    mode: int = MIGRATE_SYNC,
    migratetype: int = 0,
    alloc_flags: int = 0,
    highest_zoneidx: int = 0,
    whole_zone: bool = True,
    ignore_skip_hint: bool = True,
) -> np.ndarray:
    """A struct compact_control for compact_zone_run()."""
    cc = np.zeros(NR_CC, np.int64)
    cc[CC_ZONE] = zone
    cc[CC_ORDER] = order
    cc[CC_MODE] = mode
    cc[CC_MIGRATETYPE] = migratetype
    cc[CC_ALLOC_FLAGS] = alloc_flags
    cc[CC_HIGHEST_ZONEIDX] = highest_zoneidx
    cc[CC_WHOLE_ZONE] = int(whole_zone)
    cc[CC_IGNORE_SKIP_HINT] = int(ignore_skip_hint)
    return cc


__all__ = [
    "COMPACT_COMPLETE",
    "COMPACT_CONTENDED",
    "COMPACT_CONTINUE",
    "COMPACT_PARTIAL_SKIPPED",
    "COMPACT_SKIPPED",
    "COMPACT_SUCCESS",
    "MIGRATE_ASYNC",
    "MIGRATE_SYNC",
    "MIGRATE_SYNC_LIGHT",
    "compact_node",
    "compact_nodes",
    "compact_zone",
    "compact_zone_run",
    "compaction_defer_reset",
    "compaction_deferred",
    "compaction_restarting",
    "compaction_suitable",
    "defer_compaction",
    "new_compact_control",
]


COMPACT_MAX_DEFER_SHIFT = 6  # do not skip compaction more than 64 times


def _defer_trace(machine: Any, tp: int, z: int, order: int) -> None:
    zs = machine.state.zs
    machine.trace(
        tp,
        z,
        order,
        int(zs[z, ZF_COMPACT_ORDER_FAILED]),
        int(zs[z, ZF_COMPACT_CONSIDERED]),
        1 << int(zs[z, ZF_COMPACT_DEFER_SHIFT]),
    )


def defer_compaction(machine: Any, z: int, order: int) -> None:
    """defer_compaction() (6.1): after a failed compaction, skip the next 1 << shift attempts
    (up to 64) for orders at or above the lowest order that failed."""
    zs = machine.state.zs
    zs[z, ZF_COMPACT_CONSIDERED] = 0
    zs[z, ZF_COMPACT_DEFER_SHIFT] += 1
    if order < zs[z, ZF_COMPACT_ORDER_FAILED]:
        zs[z, ZF_COMPACT_ORDER_FAILED] = order
    if zs[z, ZF_COMPACT_DEFER_SHIFT] > COMPACT_MAX_DEFER_SHIFT:
        zs[z, ZF_COMPACT_DEFER_SHIFT] = COMPACT_MAX_DEFER_SHIFT
    _defer_trace(machine, TP_MM_COMPACTION_DEFER_COMPACTION, z, order)


def compaction_deferred(machine: Any, z: int, order: int) -> bool:
    """compaction_deferred() (6.1): True if this attempt is to be skipped."""
    zs = machine.state.zs
    defer_limit = 1 << int(zs[z, ZF_COMPACT_DEFER_SHIFT])
    if order < zs[z, ZF_COMPACT_ORDER_FAILED]:
        return False
    zs[z, ZF_COMPACT_CONSIDERED] += 1
    if zs[z, ZF_COMPACT_CONSIDERED] >= defer_limit:
        zs[z, ZF_COMPACT_CONSIDERED] = defer_limit
        return False
    _defer_trace(machine, TP_MM_COMPACTION_DEFERRED, z, order)
    return True


def compaction_defer_reset(machine: Any, z: int, order: int, alloc_success: bool) -> None:
    """compaction_defer_reset() (6.1): after a compaction that succeeded (or should have)."""
    zs = machine.state.zs
    if alloc_success:
        zs[z, ZF_COMPACT_CONSIDERED] = 0
        zs[z, ZF_COMPACT_DEFER_SHIFT] = 0
    if order >= zs[z, ZF_COMPACT_ORDER_FAILED]:
        zs[z, ZF_COMPACT_ORDER_FAILED] = order + 1
    _defer_trace(machine, TP_MM_COMPACTION_DEFER_RESET, z, order)


def compaction_restarting(machine: Any, z: int, order: int) -> bool:
    """compaction_restarting() (6.1): the deferral ran its full course (64 skips), so the skip
    bits are cleared before compacting again."""
    zs = machine.state.zs
    if order < zs[z, ZF_COMPACT_ORDER_FAILED]:
        return False
    shift = int(zs[z, ZF_COMPACT_DEFER_SHIFT])
    return shift == COMPACT_MAX_DEFER_SHIFT and zs[z, ZF_COMPACT_CONSIDERED] >= 1 << shift


def compact_node(machine: Any, nid: int) -> list[int]:
    """compact_node() (6.1): order -1, MIGRATE_SYNC, ignore skip hints, whole zone, GFP_KERNEL,
    for every populated zone of the node; reset_cached_positions is implicit (whole zone)."""
    results = []
    st = machine.state
    for z in range(st.zs.shape[0]):
        if st.zs[z, ZF_NODE] != nid or st.zs[z, ZF_MANAGED] == 0:  # populated_zone()
            continue
        cc = new_compact_control(z, order=-1, mode=MIGRATE_SYNC)  # gfp_mask GFP_KERNEL
        results.append(int(_run_compact_zone(machine, cc)))
    return results


def compact_zone(machine: Any, cc: np.ndarray) -> int:
    """Run compact_zone_run() to the end, making the driver callbacks it asks for through the
    movable_operations contract (fragsim/mm/migrate.py). Returns the compact_result."""
    from fragsim.mm import migrate

    mode = migrate.MigrateMode(int(cc[CC_MODE]))
    while True:
        status = int(compact_zone_run(machine.state, cc, machine.handles))
        if machine.tracer is not None and machine.state.prm[P_TPOS]:
            machine.tracer.flush(machine)
        if status == CZ_DONE:
            return int(cc[CC_RET])
        pfn = int(cc[CC_PFN])
        if status == CZ_ISOLATE:
            imode = migrate.IsolateMode(int(cc[CC_BLK_MODE]))
            cc[CC_ANSWER] = 1 if migrate.isolate_movable_page(machine, pfn, imode) == 0 else 0
        elif status == CZ_MIGRATE:
            cc[CC_ANSWER] = int(migrate.move_to_new_page(machine, int(cc[CC_DST]), pfn, mode))
        else:  # CZ_PUTBACK
            migrate.putback_movable_page(machine, pfn)


def _run_compact_zone(machine: Any, cc: np.ndarray) -> int:
    ret = compact_zone(machine, cc)
    if machine.debug:
        from fragsim.mm.debug import check_invariants

        check_invariants(machine)
    return ret


def compact_nodes(machine: Any) -> list[int]:
    """compact_nodes(): what a write to /proc/sys/vm/compact_memory does."""
    out: list[int] = []
    for nid in range(machine.nr_nodes):
        out += compact_node(machine, nid)
    return out
