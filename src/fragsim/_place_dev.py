"""DEV ONLY: to be appended to fragsim/mm/page_alloc.py."""
from __future__ import annotations
from typing import Any
from fragsim.mm._numba import njit
from fragsim.mm.page_alloc import *  # noqa
from fragsim.mm.page_alloc import (borrow_state, add_to_free_list, get_pageblock_migratetype, del_page_from_free_list,
  mod_zone_freepage_state, prep_new_page, set_caller_flags, list_del, list_add, list_add_tail, free_pages_prepare,
  order_to_pindex, pcp_list, pcp_allowed_order, __free_one_page, set_pageblock_migratetype, move_to_free_list,
  move_freepages_block, NO_PAGE, FPI_NONE, MAX_ORDER, MIGRATE_ISOLATE, MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_MOVABLE,
  MIGRATE_PCPTYPES, PG_buddy, PG_pcp, PG_reserved, PG_head, PG_tail, P_PAGEBLOCK_ORDER, P_NR_PCP_LISTS, ZF_PCP_SENT,
  ZF_END, PCP_COUNT, State)
from fragsim.mm.internal import P_NR_CPUS

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
    handling; the block comes back not as a free block but owned by the caller."""
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


# Rows of a pinned replay (replay_pinned): int64 columns PE_*; ops PIN_*
PE_OP, PE_PFN, PE_ORDER, PE_MT, PE_CPU, PE_A, PE_B = range(7)
NR_PE = 7
PIN_ALLOC = 0  # mm_page_alloc: A = gfp, B = handle to record (or -1)
PIN_FREE = 1  # mm_page_free
PIN_REFILL = 2  # mm_page_alloc_zone_locked with percpu_refill=1 (rmqueue_bulk)
PIN_DRAIN = 3  # mm_page_pcpu_drain (free_pcppages_bulk), MT = the page's pcp migratetype
PIN_EXTFRAG = 4  # mm_page_alloc_extfrag: ORDER = fallback_order, MT = alloc_mt, A = ownership
PIN_ISOLATE_FREE = 5  # mm_compaction_isolate_freepages: PFN = start, A = end, B = nr_taken
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
def release_range(s: State, pfn: int, order: int, handles: Any, stats: Any) -> int:
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
    r = release_range(s, pfn, order, handles, stats)
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
    pinned): ev rows PE_*/PIN_*. Allocations take their block off the pcp list or the buddy
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
        if op == PIN_ALLOC:
            if not pinned_take(s, pfn, order, handles, stats):
                continue
            h = int(ev[i, PE_B])
            prep_new_page(s, pfn, order, int(ev[i, PE_A]), h)
            if h >= 0:
                handles[h] = pfn
        elif op == PIN_REFILL:
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
        elif op == PIN_FREE or op == PIN_DRAIN:
            f = s.flags[pfn]
            if op == PIN_DRAIN and (f & PG_pcp) and s.order[pfn] == order:
                pcp_block_unlink(s, pfn)
                __free_one_page(s, z, pfn, order, int(ev[i, PE_MT]), FPI_NONE)
                continue
            if op == PIN_DRAIN:
                stats[PS_DRAIN_NOT_PCP] += 1
            r = release_range(s, pfn, order, handles, stats)
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
            if op == PIN_FREE and pcp_allowed_order(s, order) and mt != MIGRATE_ISOLATE:
                s.pcpmt[pfn] = mt
                pindex = order_to_pindex(s, mt if mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE, order)
                list_add(s.nxt, s.prv, pfn, pcp_list(s, z, cpu, pindex))
                s.flags[pfn] |= PG_pcp
                s.order[pfn] = order
                s.pcp[z, cpu, PCP_COUNT] += 1 << order
            else:
                if op == PIN_DRAIN:
                    mt = int(ev[i, PE_MT])
                __free_one_page(s, z, pfn, order, mt, FPI_NONE)
        elif op == PIN_EXTFRAG:
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
        elif op == PIN_ISOLATE_FREE:
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
                        if bmt != MIGRATE_ISOLATE and bmt != MIGRATE_CMA and bmt != MIGRATE_HIGHATOMIC:
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


import fragsim.mm.page_alloc as _pa  # noqa: E402

for _n in ("take_page_off_buddy", "place_blocks", "replay_pinned", "PE_OP", "PE_PFN", "PE_ORDER", "PE_MT",
           "PE_CPU", "PE_A", "PE_B", "NR_PE", "PIN_ALLOC", "PIN_FREE", "PIN_REFILL", "PIN_DRAIN", "PIN_EXTFRAG",
           "PIN_ISOLATE_FREE", "NR_PS"):
    setattr(_pa, _n, globals()[_n])
for _n in [k for k in list(globals()) if k.startswith("PS_")]:
    setattr(_pa, _n, globals()[_n])
