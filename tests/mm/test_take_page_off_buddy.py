"""take_page_off_buddy (mm/page_alloc.c, 6.1) generalised to blocks, and place_blocks: a block
taken at a given pfn splits its free buddy block as break_down_buddy_pages does, and the placed
block looks like an allocated page of its kind (hand-computed free lists, invariant checker)."""

from __future__ import annotations

import numpy as np

from fragsim import Machine, check_invariants
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE
from fragsim.mm.page import PG_anon, PG_head, PG_lru, PG_slab, PG_swapbacked, PG_tail


def _machine() -> Machine:
    # one Normal zone of 8192 pages from pfn 0: boot frees it as eight order-10 blocks
    m = Machine("flat:8192", nr_cpus=1)
    assert m.state.nr_free[m.zone_id(0, "Normal")].tolist() == [0] * 10 + [8]
    return m


def _own(m: Machine, pfn: int, order: int) -> None:
    """What the caller of take_page_off_buddy does next: the block is its allocation."""
    m.state.refcount[pfn] = 1
    m.state.order[pfn] = order


def test_take_one_page_splits_its_block_into_one_block_per_order() -> None:
    m = _machine()
    z = m.zone_id(0, "Normal")
    free0 = int(m.state.zs[z, I.ZF_NR_FREE_PAGES])
    # pfn 3000 lies in the order-10 block at 2048: break_down_buddy_pages leaves one free block
    # of each order 0..9 around it
    assert pa.take_page_off_buddy(m.state, 3000, 0)
    assert m.state.nr_free[z].tolist() == [1] * 10 + [7]
    assert int(m.state.zs[z, I.ZF_NR_FREE_PAGES]) == free0 - 1
    # break_down_buddy_pages halves 2048..3071 ten times, keeping the half that holds 3000
    heads = {
        int(p): int(m.state.order[p]) for p in 2048 + np.flatnonzero(m.state.flags[2048:3072] & 1)
    }
    assert heads == {
        2048: 9,
        2560: 8,
        2816: 7,
        3008: 6,
        2944: 5,
        2976: 4,
        2992: 3,
        3004: 2,
        3002: 1,
        3001: 0,
    }
    # the page itself is off every list; taking it again fails (no free block holds it)
    assert not (m.state.flags[3000] & 1)
    _own(m, 3000, 0)
    check_invariants(m)
    assert not pa.take_page_off_buddy(m.state, 3000, 0)


def test_take_block_of_order_3_and_stop_at_an_allocated_head() -> None:
    m = _machine()
    z = m.zone_id(0, "Normal")
    assert pa.take_page_off_buddy(m.state, 4096 + 8, 3)
    # the order-10 block at 4096 leaves 4096 (order 3) and the upper halves of orders 4..9
    assert m.state.nr_free[z].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 7]
    _own(m, 4104, 3)
    check_invariants(m)
    # already taken: the search stops at the allocated head 4104 (page_count() > 0)
    assert not pa.take_page_off_buddy(m.state, 4105, 0)
    assert not pa.take_page_off_buddy(m.state, 4104, 3)
    # a block not aligned to its order is refused; the free lists are unchanged
    assert not pa.take_page_off_buddy(m.state, 4100, 3)
    assert m.state.nr_free[z].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 7]


def test_place_blocks_gives_allocated_pages_of_their_kind() -> None:
    m = _machine()
    pfns = np.array([5, 6, 512, 1024], np.int64)
    orders = np.array([0, 0, 0, 9], np.int64)
    gfps = np.array([GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_KERNEL, GFP_TRANSHUGE], np.int64)
    anon = PG_lru | PG_anon | PG_swapbacked
    flags = np.array([anon, PG_slab, 0, anon], np.int64)
    h = m.alloc_handles(4)
    assert pa.place_blocks(m.state, pfns, orders, gfps, flags, h, m.handles) == -1
    st = m.state
    assert st.refcount[pfns].tolist() == [1, 1, 1, 1]
    assert st.owner[pfns].tolist() == h.tolist()
    assert m.handles[h].tolist() == pfns.tolist()
    assert st.flags[5] & PG_lru and st.flags[6] & PG_slab
    assert st.flags[1024] & PG_head and (st.flags[1025:1536] & PG_tail).all()
    # on the anon LRU: one order-0 page and one THP (512 pages)
    assert int(st.zs[2, I.ZF_NR_LRU + I.LRU_INACTIVE_ANON]) == 1 + 512
    assert int(st.zs[2, I.ZF_NR_FREE_PAGES]) == 8192 - 3 - 512
    check_invariants(m)
    # the second placement at an allocated pfn stops there
    h2 = m.alloc_handles(1)
    bad = pa.place_blocks(
        m.state, np.array([6]), np.array([0]), np.array([GFP_KERNEL]), np.array([0]), h2, m.handles
    )
    assert bad == 0
    # the placed pages free like any allocation
    m.free_pages(6, 0)
    m.free_pages(1024, 9)
    m.drain_all_pages()
    check_invariants(m)
