"""Compound pages (__GFP_COMP) and the slow path's vm events."""

from __future__ import annotations

from fragsim.mm import vmstat
from fragsim.mm.gfp import __GFP_COMP, __GFP_NOWARN, GFP_KERNEL, GFP_TRANSHUGE
from fragsim.mm.machine import Machine
from fragsim.mm.page import PG_head, PG_tail


def test_gfp_comp_marks_head_and_tails_until_freed() -> None:
    """prep_compound_page(): PG_head on the head, PG_tail on the other 2^order - 1 pages;
    free_pages_prepare() undoes it. Without __GFP_COMP the block is not compound."""
    m = Machine("flat:8192", nr_cpus=1)
    pfn = m.alloc_pages(GFP_KERNEL | __GFP_COMP, 2)
    flags = m.state.flags
    assert flags[pfn] & PG_head and not flags[pfn] & PG_tail
    assert all(flags[p] & PG_tail and not flags[p] & PG_head for p in range(pfn + 1, pfn + 4))
    plain = m.alloc_pages(GFP_KERNEL, 2)
    assert not any(flags[p] & (PG_head | PG_tail) for p in range(plain, plain + 4))
    m.free_pages(pfn, 2)
    assert not any(flags[p] & (PG_head | PG_tail) for p in range(pfn, pfn + 4))
    thp = m.alloc_pages(GFP_TRANSHUGE, 9)
    assert int((flags[thp : thp + 512] & PG_tail != 0).sum()) == 511
    m.free_pages(thp, 9)
    m.free_pages(plain, 2)


def test_direct_reclaim_entries_count_allocstall_for_the_highest_zone() -> None:
    """A GFP_KERNEL request that the free lists cannot satisfy enters direct reclaim
    (do_try_to_free_pages counts allocstall_<zone> at gfp_zone), which frees nothing yet."""
    m = Machine("flat:8192", nr_cpus=1)
    while m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 0) >= 0:
        pass
    counters = vmstat.vmstat_counters(m)
    assert counters["allocstall_normal"] >= 1
    assert counters["allocstall_dma32"] == 0
