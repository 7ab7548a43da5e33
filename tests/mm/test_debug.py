"""fragsim.mm.debug: check_invariants accepts real states (also big ones, fast) and names each
kind of corruption; enable_debug_checks checks after every batch."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fragsim.errors import InvariantError
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.debug import check_invariants, disable_debug_checks, enable_debug_checks
from fragsim.mm.gfp import GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from fragsim.mm.machine import Machine
from fragsim.mm.mmzone import (
    MIGRATE_HIGHATOMIC,
    MIGRATE_MOVABLE,
    MIGRATE_TYPES,
    PB_MIGRATETYPE_MASK,
)
from fragsim.mm.page import PG_buddy, PG_pcp

MOV = GFP_HIGHUSER_MOVABLE


def flat(pages: int = 8192, **kw: object) -> Machine:
    kw = {"nr_cpus": 1, "config_thp": False, "watermark_boost_factor": 0, **kw}
    return Machine(f"flat:{pages}", **kw)


def zone(m: Machine) -> int:
    return m.zone_id(0, "Normal")


def free_head(m: Machine, order: int, mt: int = MIGRATE_MOVABLE) -> int:
    return int(m.state.zs[zone(m), I.ZF_FREE_SENT]) + order * MIGRATE_TYPES + mt


def pcp_head(m: Machine, cpu: int, pindex: int) -> int:
    st = m.state
    return int(st.zs[zone(m), I.ZF_PCP_SENT] + cpu * st.prm[I.P_NR_PCP_LISTS] + pindex)


def unlink(m: Machine, node: int) -> None:
    nxt, prv = m.state.nxt, m.state.prv
    n, p = nxt[node], prv[node]
    nxt[p] = n
    prv[n] = p
    nxt[node] = prv[node] = -1


def link_head(m: Machine, node: int, head: int) -> None:
    nxt, prv = m.state.nxt, m.state.prv
    first = nxt[head]
    nxt[node], prv[node] = first, head
    prv[first] = node
    nxt[head] = node


def raises(m: Machine, pattern: str) -> None:
    with pytest.raises(InvariantError, match=pattern):
        check_invariants(m)


# ---------------------------------------------------------------------------------------------
# real states pass, quickly
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["flat:8192", "x86_64-1g", "arm32-1g", "arm64-4g"])
def test_fresh_machines_pass(profile: str) -> None:
    check_invariants(Machine(profile))


def test_check_is_fast_on_1g() -> None:
    """Vectorised: a 1 GiB machine (262144 pfns), fragmented, checks in well under 0.5 s."""
    m = Machine("x86_64-1g")
    pfns = [m.alloc_pages(g, o) for g in (GFP_KERNEL, MOV) for o in (0, 1, 3, 5) * 200]
    for p, o in zip(pfns[::3], ((0, 1, 3, 5) * 400)[::3], strict=True):
        if p >= 0:
            m.free_pages(p, o)
    check_invariants(m)
    t = time.perf_counter()
    check_invariants(m)
    assert time.perf_counter() - t < 0.5


def test_check_scales_to_16g() -> None:
    m = Machine("flat-16g")
    for o in (0, 3, 9):
        m.alloc_pages(MOV, o)
    t = time.perf_counter()
    check_invariants(m)
    assert time.perf_counter() - t < 5.0


def test_unreserved_highatomic_block_next_to_a_free_buddy_is_accepted() -> None:
    """6.1 state, not a bug: pageblock 15 is HIGHATOMIC and wholly free (order 9) when its
    MOVABLE buddy pageblock 14 is freed, so __free_one_page does not merge them (HIGHATOMIC is
    not mergeable). unreserve_highatomic_pageblock(force) then re-types pageblock 15 MOVABLE
    and moves the block without merging: two free MOVABLE order-9 buddies."""
    m = flat(8192)
    assert [m.alloc_pages(MOV, 10) for _ in range(7)] == [1024 * i for i in range(7)]
    assert [m.alloc_pages(MOV, o) for o in (9, 8, 5)] == [7168, 7680, 7936]
    assert m.alloc_pages(GFP_ATOMIC, 1) == 7968
    assert m.state.pb[15] & PB_MIGRATETYPE_MASK == MIGRATE_HIGHATOMIC
    for pfn, order in ((7680, 8), (7936, 5), (7968, 1), (7168, 9)):
        m.free_pages(pfn, order)
    m.drain_all_pages()
    check_invariants(m)
    assert pa.list_pfns(m.state, free_head(m, 9, MIGRATE_HIGHATOMIC)).tolist() == [7680]
    assert pa.list_pfns(m.state, free_head(m, 9)).tolist() == [7168]
    ev = np.array([[I.OP_UNRESERVE_HIGHATOMIC, 1, MOV, -1, 0, 0, 0]], np.int64)
    assert m.run(ev)[0] == 1
    assert pa.list_pfns(m.state, free_head(m, 9)).tolist() == [7168, 7680]
    assert m.state.pb[15] & PB_MIGRATETYPE_MASK == MIGRATE_MOVABLE
    check_invariants(m)


# ---------------------------------------------------------------------------------------------
# each kind of corruption is named
# ---------------------------------------------------------------------------------------------


@pytest.mark.corrupts_state
def test_wrong_nr_free() -> None:
    m = flat()
    m.state.nr_free[zone(m), 10] += 1
    raises(m, r"zone Normal \(z=2\) order 10: nr_free is 9 but its free lists hold 8 blocks")


@pytest.mark.corrupts_state
def test_wrong_nr_free_pages() -> None:
    m = flat()
    m.state.zs[zone(m), I.ZF_NR_FREE_PAGES] += 1
    raises(m, r"zone Normal.*NR_FREE_PAGES is 8193 but the non-isolate free lists hold 8192")


@pytest.mark.corrupts_state
def test_wrong_nr_free_cma() -> None:
    m = flat()
    m.state.zs[zone(m), I.ZF_NR_FREE_CMA] = 4
    raises(m, r"NR_FREE_CMA_PAGES is 4 but the CMA free lists hold 0")


@pytest.mark.corrupts_state
def test_wrong_pcp_count() -> None:
    m = flat(32768)
    m.alloc_pages(MOV, 0)
    m.state.pcp[zone(m), 0, I.PCP_COUNT] -= 1
    raises(m, r"cpu 0: pcp count is 5 but its pcp lists hold 6 pages")


@pytest.mark.corrupts_state
def test_lost_page() -> None:
    """A free order-3 block taken off its list with all counters adjusted: its 8 pages are in
    no block any more."""
    m = flat()
    assert m.alloc_pages(MOV, 0) == 0
    z = zone(m)
    unlink(m, 8)
    m.state.flags[8] &= ~PG_buddy
    m.state.nr_free[z, 3] -= 1
    m.state.zs[z, I.ZF_NR_FREE_PAGES] -= 8
    raises(
        m,
        r"pfn 0x8 \(node 0 zone Normal \(z=2\)\) is not PG_reserved but belongs to no "
        r"free, pcp or allocated block \(lost page",
    )


@pytest.mark.corrupts_state
def test_page_inside_a_free_block_also_on_a_pcp_list() -> None:
    """Pfn 5 lies inside the free order-10 block at 0 and is put on a pcp list as well."""
    m = flat()
    z = zone(m)
    link_head(m, 5, pcp_head(m, 0, MIGRATE_MOVABLE))
    m.state.flags[5] |= PG_pcp
    m.state.order[5] = 0
    m.state.refcount[5] = 0
    m.state.pcpmt[5] = MIGRATE_MOVABLE
    m.state.pcp[z, 0, I.PCP_COUNT] += 1
    raises(
        m,
        r"pfn 0x5 .* accounted 2 times: free block pfn 0x0 order 10 "
        r"\(.*free_area\[10\]\.free_list\[Movable\]\); pcp block pfn 0x5 order 0",
    )


@pytest.mark.corrupts_state
def test_pfn_linked_into_two_lists() -> None:
    """The order-10 list's last block is also made the successor of the order-0 list's block:
    the links no longer agree."""
    m = flat()
    assert m.alloc_pages(MOV, 0) == 0
    m.state.nxt[1] = 7168  # pfn 1 is alone on free_list[Movable] of order 0
    raises(
        m,
        r"list corrupted at pfn 0x1: its next is pfn 0x1c00 whose prev is pfn 0x1800 "
        r"\(a pfn on two lists",
    )


@pytest.mark.corrupts_state
def test_list_walk_into_another_head() -> None:
    """Two lists spliced into one ring (links consistent): the walk from one head runs into the
    other head instead of a pfn."""
    m = flat()
    a, b = free_head(m, 10), free_head(m, 9)  # order 9 list is empty: b -> b
    last = int(m.state.prv[a])
    m.state.nxt[last], m.state.prv[b] = b, last
    m.state.nxt[b], m.state.prv[a] = a, b
    raises(
        m,
        r"free_area\[9\]\.free_list\[Movable\] runs into head of .*free_area\[10\]"
        r"\.free_list\[Movable\]",
    )


@pytest.mark.corrupts_state
def test_misaligned_head() -> None:
    """The order-0 block at pfn 1 relabelled as an order-1 block (covering 1..2)."""
    m = flat()
    assert m.alloc_pages(MOV, 0) == 0
    z = zone(m)
    unlink(m, 1)
    link_head(m, 1, free_head(m, 1))
    m.state.order[1] = 1
    m.state.nr_free[z, 0] -= 1
    m.state.nr_free[z, 1] += 1
    m.state.zs[z, I.ZF_NR_FREE_PAGES] += 1
    raises(
        m,
        r"free block pfn 0x1 order 1 on .*free_area\[1\]\.free_list\[Movable\] is not "
        r"aligned to its size",
    )


@pytest.mark.corrupts_state
def test_free_head_with_wrong_order_or_flags() -> None:
    m = flat()
    m.state.order[1024] = 9
    raises(m, r"free block pfn 0x400 order 10 .* has the wrong buddy order")
    m = flat()
    m.state.flags[1024] &= ~PG_buddy
    raises(m, r"free block pfn 0x400 order 10 .* has no PG_buddy")
    m = flat()
    m.state.refcount[1024] = 1
    raises(m, r"free block pfn 0x400 order 10 .* has a non-zero refcount")


@pytest.mark.corrupts_state
def test_stray_buddy_flag() -> None:
    m = flat()
    assert m.alloc_pages(MOV, 3) == 0
    m.state.flags[0] |= PG_buddy
    raises(m, r"pfn 0x0 .* has PG_buddy but is on no free list")


@pytest.mark.corrupts_state
def test_overlapping_allocations() -> None:
    """An order-2 block at 0 and an order-0 'allocation' at 2 inside it."""
    m = flat()
    assert m.alloc_pages(MOV, 2) == 0
    m.state.refcount[2] = 1
    raises(
        m,
        r"pfn 0x2 .* accounted 2 times: allocated block pfn 0x0 order 2 .*; "
        r"allocated block pfn 0x2 order 0",
    )


@pytest.mark.corrupts_state
def test_unmerged_buddies() -> None:
    """Split the free order-10 block at 0 into two order-9 halves on the lists."""
    m = flat()
    z = zone(m)
    unlink(m, 0)
    link_head(m, 512, free_head(m, 9))
    link_head(m, 0, free_head(m, 9))
    m.state.flags[512] |= PG_buddy
    m.state.order[0] = m.state.order[512] = 9
    m.state.nr_free[z, 10] -= 1
    m.state.nr_free[z, 9] += 2
    raises(m, r"buddies pfn 0x0 and 0x200 of order 9 are both free but not merged")


@pytest.mark.corrupts_state
def test_pcp_block_with_a_foreign_cached_type() -> None:
    m = flat(32768)
    m.alloc_pages(MOV, 0)
    m.state.pcpmt[1] = 0  # UNMOVABLE cached on the MOVABLE list
    raises(
        m,
        r"pcp block pfn 0x1 order 0 on .*pcp list 1 \(order 0, Movable\) has a cached "
        r"migratetype that does not belong on this list",
    )


@pytest.mark.corrupts_state
def test_bad_highatomic_counter_and_pageblock_type() -> None:
    m = flat()
    m.state.zs[zone(m), I.ZF_NR_RESERVED_HIGHATOMIC] = 100
    raises(
        m,
        r"nr_reserved_highatomic is 100, not a non-negative multiple of "
        r"pageblock_nr_pages \(512\)",
    )
    m = flat()
    m.state.pb[3] = 7
    raises(m, r"pageblock 3 \(pfn 0x600\): invalid pageblock flags 0x7")


@pytest.mark.corrupts_state
def test_unreserved_pfn_outside_every_zone() -> None:
    m = flat(5000)
    m.state.flags[5100] = 0
    raises(m, r"pfn 0x13ec lies in no zone but is not PG_reserved")


# ---------------------------------------------------------------------------------------------
# enable_debug_checks
# ---------------------------------------------------------------------------------------------


@pytest.mark.corrupts_state
def test_debug_checks_run_after_every_batch() -> None:
    m = flat()
    enable_debug_checks(m)
    enable_debug_checks(m)  # idempotent
    assert m.alloc_pages(MOV, 0) == 0
    m.state.zs[zone(m), I.ZF_NR_FREE_PAGES] += 1
    with pytest.raises(InvariantError, match="NR_FREE_PAGES"):
        m.alloc_pages(MOV, 0)
    disable_debug_checks(m)
    m.alloc_pages(MOV, 0)  # no check any more
    with pytest.raises(InvariantError):
        check_invariants(m)


def test_debug_checks_also_follow_a_failing_batch() -> None:
    """A bad free raises AllocatorError and the state, checked on the way out, is intact."""
    from fragsim.errors import AllocatorError

    m = flat()
    enable_debug_checks(m)
    p = m.alloc_pages(MOV, 2)
    with pytest.raises(AllocatorError, match="wrong order"):
        m.free_pages(p, 1)
    m.free_pages(p, 2)


def test_debug_switch_from_the_constructor_and_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    m = Machine("flat:4096", nr_cpus=1, debug=True)
    pfn = m.alloc_pages(GFP_KERNEL, 0)
    m.state.nr_free[2, 3] += 1  # corrupt, then any batch reports it
    with pytest.raises(InvariantError):
        m.free_pages(pfn, 0)
    m.state.nr_free[2, 3] -= 1
    monkeypatch.setenv("FRAGSIM_DEBUG", "1")
    assert Machine("flat:4096", nr_cpus=1).debug
    monkeypatch.delenv("FRAGSIM_DEBUG")
    assert not Machine("flat:4096", nr_cpus=1).debug
