"""Hand-computed allocator states (Linux 6.1 mm/page_alloc.c), and bad input.

Every expected list below was worked out by hand from the 6.1 source, not read off the
simulator: the free lists as {(order, migratetype): [pfns head to tail]}, nr_free, the pageblock
types and the counters. Machines are small flat zones (one Normal zone starting at pfn 0,
pageblock_order 9, MAX_ORDER 11) with one CPU and no THP pcp lists unless said otherwise.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fragsim.errors import AllocatorError
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import (
    __GFP_RECLAIMABLE,
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
)
from fragsim.mm.machine import Machine
from fragsim.mm.mmzone import MIGRATE_HIGHATOMIC, MIGRATE_TYPES, MIGRATETYPE_NAMES
from fragsim.profiles import MachineProfile, NodeSpec, ZoneSpec

U, M, R, HA = "Unmovable", "Movable", "Reclaimable", "HighAtomic"
MOV = GFP_HIGHUSER_MOVABLE
RECL = GFP_KERNEL | __GFP_RECLAIMABLE


def flat(pages: int = 8192, **kw: object) -> Machine:
    kw = {"nr_cpus": 1, "config_thp": False, "watermark_boost_factor": 0, **kw}
    return Machine(f"flat:{pages}", **kw)


def normal(m: Machine) -> int:
    return m.zone_id(0, "Normal")


def free_lists(m: Machine, z: int | None = None) -> dict[tuple[int, str], list[int]]:
    """Non-empty free lists of zone z: {(order, migratetype name): pfns from head to tail}."""
    z = normal(m) if z is None else z
    st = m.state
    out = {}
    for order in range(11):
        for mt in range(MIGRATE_TYPES):
            head = int(st.zs[z, I.ZF_FREE_SENT]) + order * MIGRATE_TYPES + mt
            pfns = pa.list_pfns(st, head)
            if len(pfns):
                out[(order, MIGRATETYPE_NAMES[mt])] = [int(p) for p in pfns]
    return out


def pcp_lists(m: Machine, z: int | None = None) -> dict[tuple[int, int], list[int]]:
    """Non-empty pcp lists of zone z: {(cpu, pindex): pfns from head to tail}."""
    z = normal(m) if z is None else z
    st = m.state
    n = int(st.prm[I.P_NR_PCP_LISTS])
    out = {}
    for cpu in range(m.nr_cpus):
        for pindex in range(n):
            pfns = pa.list_pfns(st, int(st.zs[z, I.ZF_PCP_SENT]) + cpu * n + pindex)
            if len(pfns):
                out[(cpu, pindex)] = [int(p) for p in pfns]
    return out


def nr_free(m: Machine) -> list[int]:
    return [int(x) for x in m.state.nr_free[normal(m)]]


def pb_types(m: Machine) -> list[str]:
    return [MIGRATETYPE_NAMES[int(x) & 7] for x in m.state.pb]


def zs(m: Machine, field: int) -> int:
    return int(m.state.zs[normal(m), field])


def state_hash(m: Machine) -> str:
    h = hashlib.sha256()
    for name, arr in zip(m.state._fields, m.state, strict=True):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def fill_all_but_last_pageblock(m: Machine) -> None:
    """Allocate pfns 0..7679 of a flat:8192 zone as MOVABLE (7 order-10 blocks from the list
    head, then the lower half of the last one): pageblock 15 (7680..8191) stays a free MOVABLE
    order-9 block."""
    assert [m.alloc_pages(MOV, 10) for _ in range(7)] == [1024 * i for i in range(7)]
    assert m.alloc_pages(MOV, 9) == 7168
    assert free_lists(m) == {(9, M): [7680]}


# ---------------------------------------------------------------------------------------------
# boot, split, merge
# ---------------------------------------------------------------------------------------------


def test_boot_frees_max_order_chunks_to_the_tail() -> None:
    """memblock_free_all -> __free_pages_memory: naturally aligned chunks of at most order 10,
    each freed with FPI_TO_TAIL, so the order-10 list is in pfn order."""
    m = flat(8192)
    assert free_lists(m) == {(10, M): [0, 1024, 2048, 3072, 4096, 5120, 6144, 7168]}
    assert nr_free(m) == [0] * 10 + [8]
    assert zs(m, I.ZF_NR_FREE_PAGES) == 8192
    assert zs(m, I.ZF_MANAGED) == 8192
    assert zs(m, I.ZF_NR_FREE_CMA) == 0
    assert pb_types(m) == [M] * 16
    assert pcp_lists(m) == {}


def test_boot_of_an_odd_sized_zone() -> None:
    """5000 pages: order 10 x4, then the largest aligned chunks that fit: 4096 (o9),
    4608 (o8), 4864 (o7), 4992 (o3). No chunk merges: each one's buddy is not free yet or lies
    outside the zone. The mem_map is rounded up to a pageblock; pfns 5000.. are reserved."""
    m = flat(5000)
    assert free_lists(m) == {
        (10, M): [0, 1024, 2048, 3072],
        (9, M): [4096],
        (8, M): [4608],
        (7, M): [4864],
        (3, M): [4992],
    }
    assert nr_free(m) == [0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 4]
    assert zs(m, I.ZF_NR_FREE_PAGES) == 5000
    assert m.max_pfn == 5120
    assert (m.state.zoneid[5000:] == -1).all()


def test_order0_alloc_splits_an_order10_block() -> None:
    """__rmqueue_smallest takes the head of the order-10 MOVABLE list (pfn 0); expand() puts
    each upper half (512, 256, ..., 1) on the list of its order. (The lists below the block's
    order are empty at that moment, so head and tail insertion cannot be told apart here.)"""
    m = flat(8192)
    assert m.alloc_pages(MOV, 0) == 0
    expect = {(k, M): [1 << k] for k in range(10)}
    expect[(10, M)] = [1024 * i for i in range(1, 8)]
    assert free_lists(m) == expect
    assert nr_free(m) == [1] * 10 + [7]
    assert zs(m, I.ZF_NR_FREE_PAGES) == 8191
    assert pcp_lists(m) == {}  # batch is 1 on 8192 pages: the one page refilled is handed out
    assert m.state.refcount[0] == 1 and m.state.order[0] == 0
    # the next order-0 request takes pfn 1 from the order-0 list, then 2 splits the order-1 block
    assert [m.alloc_pages(MOV, 0) for _ in range(3)] == [1, 2, 3]
    assert free_lists(m)[(2, M)] == [4] and (0, M) not in free_lists(m)


def test_free_merges_back_to_the_boot_state() -> None:
    """Freeing pfn 0 (through the pcp list and a drain) merges it with 1, 2, 4, ..., 512 back
    into the order-10 block; at order 10 buddy_merge_likely() is false, so it goes to the head,
    which restores the boot order."""
    m = flat(8192)
    boot = free_lists(m)
    assert m.alloc_pages(MOV, 0) == 0
    m.free_pages(0, 0)
    assert pcp_lists(m) == {(0, 1): [0]}  # pindex 3*0 + MOVABLE
    assert zs(m, I.ZF_NR_FREE_PAGES) == 8191  # pages on pcp lists are not NR_FREE_PAGES
    m.drain_all_pages()
    assert free_lists(m) == boot
    assert nr_free(m) == [0] * 10 + [8]
    assert zs(m, I.ZF_NR_FREE_PAGES) == 8192


def test_order10_frees_go_to_the_head_without_merging() -> None:
    """__free_pages_ok(order 10): the merge loop does not run at MAX_ORDER-1 and
    buddy_merge_likely() is false for order >= 9, so each block is added at the head."""
    m = flat(8192)
    assert m.alloc_pages(MOV, 10) == 0
    assert m.alloc_pages(MOV, 10) == 1024
    m.free_pages(0, 10)
    m.free_pages(1024, 10)
    assert free_lists(m) == {(10, M): [1024, 0, 2048, 3072, 4096, 5120, 6144, 7168]}


def test_buddy_merge_likely_tail_and_head() -> None:
    """__free_one_page: a block that cannot merge goes to the tail when the buddy of its
    would-be parent is free at order+1 (buddy_merge_likely), else to the head."""
    m = flat(8192)
    assert [m.alloc_pages(MOV, 0) for _ in range(8)] == list(range(8))

    def free(pfn: int) -> None:
        m.free_pages(pfn, 0)
        m.drain_all_pages()

    # 2: buddy 3 allocated; parent 2's buddy 0 is not free at order 1 -> head.
    # 3: merges with 2 into order 1; buddy 0 not free; parent 0's buddy 4 not free -> head.
    # 5: buddy 4 allocated; parent 4's buddy 6 allocated -> head.
    for pfn in (2, 3, 5):
        free(pfn)
    lists = free_lists(m)
    assert lists[(0, M)] == [5] and lists[(1, M)] == [2]
    # 0: buddy 1 allocated; parent 0's buddy at order 1 is pfn 2, a free order-1 block -> TAIL
    free(0)
    assert free_lists(m)[(0, M)] == [5, 0]
    # 7: buddy 6 allocated; parent 6's buddy at order 1 is pfn 4, allocated -> HEAD
    free(7)
    assert free_lists(m)[(0, M)] == [7, 5, 0]
    assert nr_free(m)[:3] == [3, 1, 0]


# ---------------------------------------------------------------------------------------------
# fallback (__rmqueue_fallback / steal_suitable_fallback, 6.1)
# ---------------------------------------------------------------------------------------------


def test_fallback_of_a_block_ge_pageblock_order_retypes_the_range() -> None:
    """An UNMOVABLE order-0 request on a fresh (all MOVABLE) zone: the largest fallback is the
    order-10 MOVABLE block at 0; change_pageblock_range() re-types both of its pageblocks, the
    block moves to the UNMOVABLE list, and the retried __rmqueue_smallest splits it onto the
    UNMOVABLE lists."""
    m = flat(8192)
    assert m.alloc_pages(GFP_KERNEL, 0) == 0
    expect = {(k, U): [1 << k] for k in range(10)}
    expect[(10, M)] = [1024 * i for i in range(1, 8)]
    assert free_lists(m) == expect
    assert pb_types(m) == [U, U] + [M] * 14
    assert zs(m, I.ZF_BOOST) == 0  # no boost from a block >= pageblock_order


def test_fallback_claims_a_pageblock_at_least_half_free() -> None:
    """UNMOVABLE request; the only free memory is pageblock 15 with pfn 7680 allocated. The
    largest fallback is the MOVABLE order-8 block 7936: move_freepages_block() moves all 511
    free pages to the UNMOVABLE lists (tail, pfn order), free 511 + alike 1 >= 256, so the
    pageblock becomes UNMOVABLE; the retried __rmqueue_smallest takes the order-0 block 7681."""
    m = flat(8192)
    fill_all_but_last_pageblock(m)
    assert m.alloc_pages(MOV, 0) == 7680
    assert free_lists(m) == {(k, M): [7680 + (1 << k)] for k in range(9)}
    assert m.alloc_pages(GFP_KERNEL, 0) == 7681
    assert free_lists(m) == {(k, U): [7680 + (1 << k)] for k in range(1, 9)}
    assert pb_types(m) == [M] * 15 + [U]
    assert zs(m, I.ZF_BOOST) == 0  # watermark_boost_factor 0
    assert zs(m, I.ZF_NR_FREE_PAGES) == 510


def test_fallback_boosts_the_watermark_and_wakes_kswapd() -> None:
    """The same steal with watermark_boost_factor 15000: boost_watermark() (block below
    pageblock_order) sets boost = min(0 + 512, max(512, mult_frac(high 271, 15000, 10000)))
    = 512; with ALLOC_KSWAPD it flags ZONE_BOOSTED_WATERMARK, which rmqueue() clears while
    waking kswapd for order 0 at the zone's index. When kswapd runs (balance_pgdat, 6.1) it
    removes the boost it saw and wakes kcompactd for pageblock_order."""
    m = flat(8192, watermark_boost_factor=15000)
    m.daemons = False  # look at the state between the wake-up and kswapd's run
    assert zs(m, I.ZF_WMARK_HIGH) == 271
    fill_all_but_last_pageblock(m)
    assert m.alloc_pages(MOV, 0) == 7680
    wakeups = int(m.state.nd[0, I.ND_KSWAPD_WAKEUPS])
    assert m.alloc_pages(GFP_KERNEL, 0) == 7681
    assert zs(m, I.ZF_BOOST) == 512
    assert zs(m, I.ZF_FLAGS) & I.ZONE_BOOSTED_WATERMARK == 0
    nd = m.state.nd[0]
    assert nd[I.ND_KSWAPD_WAKEUPS] == wakeups + 1
    assert nd[I.ND_KSWAPD_ORDER] == 0
    assert nd[I.ND_KSWAPD_HIGHEST_ZONEIDX] == m.zone_index("Normal")
    assert nd[I.ND_KSWAPD_AWAKE] == 1
    assert pb_types(m)[15] == U
    from fragsim.mm.vmscan import kswapd

    kswapd(m, 0)
    assert zs(m, I.ZF_BOOST) == 0
    assert nd[I.ND_KSWAPD_AWAKE] == 0 and nd[I.ND_KSWAPD_FAILURES] == 1  # nothing to reclaim
    assert nd[I.ND_KCOMPACTD_MAX_ORDER] == m.pageblock_order and nd[I.ND_KCOMPACTD_AWAKE]


def test_fallback_without_claim_moves_free_pages_but_keeps_the_type() -> None:
    """Pageblock 15 is UNMOVABLE with 288 pages allocated (order 8 at 7680, order 5 at 7936)
    and 224 free. A RECLAIMABLE request steals from the UNMOVABLE order-7 block 8064: all free
    pages of the block move to the RECLAIMABLE lists, but free 224 + alike 0 (old type not
    MOVABLE) < 256, so the pageblock stays UNMOVABLE. The retried __rmqueue_smallest splits the
    order-5 block 7968 on the RECLAIMABLE lists."""
    m = flat(8192)
    fill_all_but_last_pageblock(m)
    assert m.alloc_pages(GFP_KERNEL, 8) == 7680  # order-9 block >= pageblock_order: re-typed
    assert pb_types(m)[15] == U
    assert m.alloc_pages(GFP_KERNEL, 5) == 7936
    assert free_lists(m) == {(5, U): [7968], (6, U): [8000], (7, U): [8064]}
    assert m.alloc_pages(RECL, 0) == 7968
    assert free_lists(m) == {
        (0, R): [7969],
        (1, R): [7970],
        (2, R): [7972],
        (3, R): [7976],
        (4, R): [7984],
        (6, R): [8000],
        (7, R): [8064],
    }
    assert pb_types(m) == [M] * 15 + [U]


def test_movable_fallback_takes_the_smallest_block_and_steals_one_page() -> None:
    """A MOVABLE order-0 request cannot steal below order 4 (can_steal_fallback). The largest
    fallback found is the UNMOVABLE order-2 block 7684 with can_steal false, so find_smallest
    scans up from order 0 and takes the UNMOVABLE order-0 block 7681; only that block moves
    (single_page, list tail) and the pageblock stays UNMOVABLE."""
    m = flat(8192)
    m.set_min_free_kbytes(0)  # min/low/high 0/8/16 so that the last few pages can be used
    fill_all_but_last_pageblock(m)
    assert m.alloc_pages(GFP_KERNEL, 0) == 7680  # order-9 fallback: pageblock 15 UNMOVABLE
    got = [m.alloc_pages(GFP_KERNEL, o) for o in (8, 7, 6, 5, 4, 3, 1)]
    assert got == [7936, 7808, 7744, 7712, 7696, 7688, 7682]
    assert free_lists(m) == {(0, U): [7681], (2, U): [7684]}
    assert m.alloc_pages(MOV, 0) == 7681
    assert free_lists(m) == {(2, U): [7684]}
    assert pb_types(m) == [M] * 15 + [U]


# ---------------------------------------------------------------------------------------------
# highatomic reserves
# ---------------------------------------------------------------------------------------------


def test_highatomic_reservation_after_a_slowpath_success() -> None:
    """224 pages free (orders 5, 6, 7 of pageblock 15), below the low mark (226): the
    GFP_ATOMIC order-1 fast path fails. gfp_to_alloc_flags gives MIN_RESERVE|NON_BLOCK|
    HIGHATOMIC; the min mark 181 halves to 91 and loses a quarter to 69, so the slow path
    passes. The pcp refill steals pageblock 15 for UNMOVABLE (free 224 + alike 288 >= 256) and
    splits 7968. reserve_highatomic_pageblock() then re-types the pageblock HIGHATOMIC, moves
    its free blocks to the HIGHATOMIC lists and reserves one pageblock (cap 8192/100 + 512)."""
    m = flat(8192)
    assert (zs(m, I.ZF_WMARK_MIN), zs(m, I.ZF_WMARK_LOW)) == (181, 226)
    fill_all_but_last_pageblock(m)
    assert [m.alloc_pages(MOV, o) for o in (8, 5)] == [7680, 7936]
    assert free_lists(m) == {(5, M): [7968], (6, M): [8000], (7, M): [8064]}
    assert zs(m, I.ZF_NR_RESERVED_HIGHATOMIC) == 0
    assert m.alloc_pages(GFP_ATOMIC, 1) == 7968
    assert pb_types(m) == [M] * 15 + [HA]
    assert zs(m, I.ZF_NR_RESERVED_HIGHATOMIC) == 512
    assert free_lists(m) == {
        (1, HA): [7970],
        (2, HA): [7972],
        (3, HA): [7976],
        (4, HA): [7984],
        (6, HA): [8000],
        (7, HA): [8064],
    }
    assert zs(m, I.ZF_NR_FREE_PAGES) == 222


def test_highatomic_reserve_is_used_first_by_highatomic_requests() -> None:
    """rmqueue_buddy: an ALLOC_HIGHATOMIC request of an order the pcp lists do not serve takes
    __rmqueue_smallest(HIGHATOMIC) first: order 4 gets the HIGHATOMIC order-4 block 7984."""
    m = flat(8192)
    fill_all_but_last_pageblock(m)
    assert [m.alloc_pages(MOV, o) for o in (8, 5)] == [7680, 7936]
    assert m.alloc_pages(GFP_ATOMIC, 1) == 7968
    assert m.alloc_pages(GFP_ATOMIC, 4) == 7984
    assert (4, HA) not in free_lists(m)
    assert zs(m, I.ZF_NR_RESERVED_HIGHATOMIC) == 512  # the pageblock is already HIGHATOMIC


def test_highatomic_page_freed_through_pcp_keeps_its_type() -> None:
    """free_unref_page: a page of a HIGHATOMIC pageblock goes on the MOVABLE pcp list with
    HIGHATOMIC cached as its pcppage migratetype, and free_pcppages_bulk returns it to the
    HIGHATOMIC free lists: 7968 merges with 7970, 7972, 7976 and 7984 into an order-5 block;
    its buddy 7936 is allocated, and the parent's buddy 8000 is a free order-6 block, so it
    goes to the tail (buddy_merge_likely)."""
    m = flat(8192)
    fill_all_but_last_pageblock(m)
    assert [m.alloc_pages(MOV, o) for o in (8, 5)] == [7680, 7936]
    assert m.alloc_pages(GFP_ATOMIC, 1) == 7968
    m.free_pages(7968, 1)
    assert pcp_lists(m) == {(0, 3 * 1 + 1): [7968]}
    assert m.state.pcpmt[7968] == MIGRATE_HIGHATOMIC
    m.drain_all_pages()
    assert free_lists(m) == {(5, HA): [7968], (6, HA): [8000], (7, HA): [8064]}
    assert zs(m, I.ZF_NR_FREE_PAGES) == 224


# ---------------------------------------------------------------------------------------------
# per-CPU lists
# ---------------------------------------------------------------------------------------------


def test_pcp_refill_free_to_head_high_flush_and_drain() -> None:
    """flat:32768 with min_free_kbytes 0: batch = 7 (zone_batchsize), high = low = 32.

    * the first order-0 MOVABLE request refills 7 pages (0..6, split in pfn order, appended to
      the tail) and hands out the head;
    * a free goes to the head of the list;
    * the free that makes count reach high (32) flushes nr_pcp_free() = clamp(7 << 0, 7,
      32 - 7) = 7 pages from the tail (pfns 0..6), free_factor becomes 1, and they merge as
      worked out below;
    * drain_all_pages() empties the lists: 0..31 merge into one order-5 block (32 is still
      allocated)."""
    m = flat(32768)
    m.set_min_free_kbytes(0)
    pc = m.state.pcp[normal(m), 0]
    assert (pc[I.PCP_BATCH], pc[I.PCP_HIGH]) == (7, 32)
    assert m.alloc_pages(MOV, 0) == 0
    assert pcp_lists(m) == {(0, 1): [1, 2, 3, 4, 5, 6]}
    assert pc[I.PCP_COUNT] == 6
    assert zs(m, I.ZF_NR_FREE_PAGES) == 32768 - 7
    lists = free_lists(m)
    assert lists[(0, M)] == [7] and (1, M) not in lists and (2, M) not in lists
    m.free_pages(0, 0)
    assert pcp_lists(m) == {(0, 1): [0, 1, 2, 3, 4, 5, 6]}
    # 7 pages from the list, then 4 refills of 7: pfns 0..34 allocated, the lists empty
    assert [m.alloc_pages(MOV, 0) for _ in range(35)] == list(range(35))
    assert pcp_lists(m) == {} and pc[I.PCP_COUNT] == 0
    lists = free_lists(m)
    assert [lists.get((k, M)) for k in range(6)] == [[35], None, [36], [40], [48], None]
    for pfn in range(31):
        m.free_pages(pfn, 0)
    assert pc[I.PCP_COUNT] == 31 and pc[I.PCP_FREE_FACTOR] == 0
    m.free_pages(31, 0)
    assert pcp_lists(m) == {(0, 1): list(range(31, 6, -1))}
    assert pc[I.PCP_COUNT] == 25 and pc[I.PCP_FREE_FACTOR] == 1
    # 0: no merge (1 on pcp), parent's buddy 2 not free -> head of o0 [0, 35]
    # 1: merges with 0 -> o1 block 0; buddy 2 on pcp; parent's buddy 4 not free -> o1 [0]
    # 2: buddy 3 on pcp; parent 2's buddy 0 is a free order-1 block -> tail: o0 [35, 2]
    # 3: 2+3 -> o1, + 0 -> o2 block 0; buddy 4 on pcp; parent's buddy 8 not free -> o2 [0, 36]
    # 4: buddy 5 on pcp; parent 4's buddy 6 not free -> head: o0 [4, 35]
    # 5: 4+5 -> o1 block 4; parent 4's buddy 0 is a free order-2 block -> tail: o1 [4]
    # 6: buddy 7 on pcp; parent 6's buddy 4 is a free order-1 block -> tail: o0 [35, 6]
    lists = free_lists(m)
    assert [lists.get((k, M)) for k in range(4)] == [[35, 6], [4], [0, 36], [40]]
    m.drain_all_pages()
    assert pcp_lists(m) == {} and pc[I.PCP_COUNT] == 0
    lists = free_lists(m)
    assert [lists.get((k, M)) for k in range(6)] == [[35], None, [36], [40], [48], [0]]
    assert zs(m, I.ZF_NR_FREE_PAGES) == 32768 - 3


def test_pcp_high_order_free_with_free_factor_flushes_everything() -> None:
    """free_unref_page_commit: free_high (free_factor > 0 and 0 < order <= 3) makes
    nr_pcp_high() 0 and nr_pcp_free() the whole count: an order-1 free right after a flush
    that raised free_factor empties this CPU's lists."""
    m = flat(32768)
    m.set_min_free_kbytes(0)
    pc = m.state.pcp[normal(m), 0]
    a = [m.alloc_pages(MOV, 0) for _ in range(40)]
    b = m.alloc_pages(MOV, 1)
    for pfn in a[:32]:
        m.free_pages(pfn, 0)
    assert pc[I.PCP_FREE_FACTOR] == 1 and pc[I.PCP_COUNT] > 0
    m.free_pages(b, 1)
    assert pc[I.PCP_COUNT] == 0 and pcp_lists(m) == {}


def test_drain_all_pages_empties_every_cpu() -> None:
    m = flat(32768, nr_cpus=2)
    m.set_min_free_kbytes(0)
    x = [m.alloc_pages(MOV, 0, cpu=0), m.alloc_pages(GFP_KERNEL, 0, cpu=1)]
    m.alloc_pages(MOV, 2, cpu=1)
    assert m.state.pcp[normal(m), :, I.PCP_COUNT].tolist() == [6, 6 + 2 * 4 - 4]
    m.free_pages(x[0], 0, cpu=1)
    m.drain_all_pages()
    assert pcp_lists(m) == {}
    assert m.state.pcp[normal(m), :, I.PCP_COUNT].tolist() == [0, 0]


# ---------------------------------------------------------------------------------------------
# known deviations from 6.1
# ---------------------------------------------------------------------------------------------


def cma_machine() -> Machine:
    prof = MachineProfile(
        name="cma-8k",
        nodes=(NodeSpec(zones=(ZoneSpec("Normal", 0, 8192),), cma=((4096, 8192),)),),
        config_cma=True,
        config_thp=False,
        nr_cpus=1,
        watermark_boost_factor=0,
    )
    return Machine(prof)


def test_cma_free_pages_do_not_count_for_an_unmovable_order0_pcp_hit() -> None:
    """CONFIG_CMA: pageblocks 8..15 are CMA. Non-CMA free memory is brought to exactly the min
    mark (181) with one UNMOVABLE page sitting on the pcp list. For GFP_NOWAIT (UNMOVABLE, no
    ALLOC_CMA) zone_watermark_fast() counts NR_FREE_PAGES - NR_FREE_CMA_PAGES = 181: it fails
    the low mark in the fast path and the min mark in the slow path (ALLOC_NON_BLOCK alone does
    not lower it), so 6.1 returns NULL without touching the pcp list."""
    m = cma_machine()
    assert zs(m, I.ZF_NR_FREE_CMA) == 4096 and zs(m, I.ZF_WMARK_MIN) == 181
    assert [m.alloc_pages(GFP_KERNEL, 10) for _ in range(3)] == [0, 1024, 2048]
    assert [m.alloc_pages(GFP_KERNEL, o) for o in (9, 8, 6)] == [3072, 3584, 3840]
    got = [m.alloc_pages(GFP_KERNEL, 0) for _ in range(11)]
    assert got == list(range(3904, 3915))
    m.free_pages(3914, 0)
    assert pcp_lists(m) == {(0, 0): [3914]}
    assert zs(m, I.ZF_NR_FREE_PAGES) - zs(m, I.ZF_NR_FREE_CMA) == 181
    assert m.alloc_pages(GFP_NOWAIT, 0) == -1


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def busy() -> tuple[Machine, dict[str, int]]:
    """A machine with an order-0 and an order-2 block allocated on pcp-sized orders and an
    order-5 block allocated from the buddy lists."""
    m = flat(8192, nr_cpus=2)
    blocks = {
        "o0": m.alloc_pages(MOV, 0),
        "o2": m.alloc_pages(GFP_KERNEL, 2),
        "o5": m.alloc_pages(MOV, 5),
    }
    return m, blocks


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("order 11", r"invalid order 11.*0x"),
        ("order -1", r"invalid order -1.*0x"),
        ("double free via pcp", r"double free.*pfn 0x0 order 0"),
        ("double free via buddy", r"double free.*pfn 0x[0-9a-f]+ order 5"),
        ("wrong order", r"wrong order.*pfn 0x[0-9a-f]+ order 1"),
        ("tail pfn", r"tail page.*pfn 0x[0-9a-f]+ order 0"),
        ("outside", r"outside every zone.*pfn 0x100000 order 0"),
        ("negative pfn", r"outside every zone.*pfn -0x1 order 0"),
        ("no cpu", r"no cpu 5.*pfn 0x0 order 0"),
    ],
)
def test_bad_free_raises_and_leaves_the_state_unchanged(
    busy: tuple[Machine, dict[str, int]], case: str, match: str
) -> None:
    m, b = busy
    if case == "double free via pcp":
        m.free_pages(b["o0"], 0)
    if case == "double free via buddy":
        m.free_pages(b["o5"], 5)
    before = state_hash(m)
    args = {
        "order 11": (b["o5"], 11),
        "order -1": (b["o5"], -1),
        "double free via pcp": (b["o0"], 0),
        "double free via buddy": (b["o5"], 5),
        "wrong order": (b["o2"], 1),
        "tail pfn": (b["o2"] + 1, 0),
        "outside": (1 << 20, 0),
        "negative pfn": (-1, 0),
        "no cpu": (b["o0"], 0, 5),
    }[case]
    with pytest.raises(AllocatorError, match=match):
        m.free_pages(*args)
    assert state_hash(m) == before
    check_invariants(m)


def test_free_of_a_reserved_pfn_and_a_hole() -> None:
    """x86_64-1g: pfn 0 is in no zone; pfn 200 is a hole inside ZONE_DMA; pfn 5 is
    memblock-reserved inside ZONE_DMA."""
    m = Machine("x86_64-1g")
    before = state_hash(m)
    with pytest.raises(AllocatorError, match=r"outside every zone.*pfn 0x0 order 0"):
        m.free_pages(0, 0)
    for pfn in (200, 5):
        with pytest.raises(AllocatorError, match=rf"not an allocated.*pfn {pfn:#x} order 0"):
            m.free_pages(pfn, 0)
    assert state_hash(m) == before


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"order": 11}, r"invalid order 11"),
        ({"order": -1}, r"invalid order -1"),
        ({"cpu": 2}, r"no cpu 2"),
        ({"nid": 1}, r"no node 1"),
    ],
)
def test_bad_alloc_raises_and_leaves_the_state_unchanged(kw: dict[str, int], match: str) -> None:
    m = flat(8192, nr_cpus=2)
    m.alloc_pages(MOV, 3)
    before = state_hash(m)
    args = {"gfp": GFP_KERNEL, "order": 0, **kw}
    with pytest.raises(AllocatorError, match=match):
        m.alloc_pages(**args)
    assert state_hash(m) == before


def test_bad_event_in_a_batch_stops_there() -> None:
    """Machine.run: the events before the bad one take effect, the bad one raises naming the
    event index, pfn and order, and nothing after it runs."""
    m = flat(8192)
    ev = np.zeros((3, I.NR_EV), np.int64)
    ev[0] = (I.OP_ALLOC, 3, MOV, 0, 0, 0, 0)
    ev[1] = (I.OP_FREE_PFN, 2, 0, 0, 0, 0, 0)  # pfn 0 was allocated with order 3
    ev[2] = (I.OP_ALLOC, 0, MOV, 1, 0, 0, 0)
    handles = np.full(2, -1, np.int32)
    with pytest.raises(
        AllocatorError,
        match=r"event 1: freed with the wrong order: pfn 0x0 "
        r"order 2",
    ):
        m.run(ev, handles)
    assert handles.tolist() == [0, -1]
    assert m.state.refcount[0] == 1 and m.state.order[0] == 3
    ev2 = np.array([[I.OP_FREE_HANDLE, 0, 0, 7, 0, 0, 0]], np.int64)
    with pytest.raises(AllocatorError, match="unknown handle"):
        m.run(ev2, handles)


def test_free_with_an_extra_reference_only_drops_it() -> None:
    """__free_pages(): put_page_testzero() fails while another reference is held, so the block
    stays allocated; the last put frees it (and traces mm_page_free then)."""
    m = Machine("flat:8192", nr_cpus=1)
    pfn = m.alloc_pages(GFP_KERNEL, 2)
    m.state.refcount[pfn] += 1  # get_page()
    free_before = int(m.state.zs[:, I.ZF_NR_FREE_PAGES].sum())
    m.free_pages(pfn, 2)
    assert m.state.refcount[pfn] == 1
    assert int(m.state.zs[:, I.ZF_NR_FREE_PAGES].sum()) == free_before
    m.free_pages(pfn, 2)
    assert m.state.refcount[pfn] == 0
