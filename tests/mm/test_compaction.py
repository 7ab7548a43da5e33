"""Full compaction (/proc/sys/vm/compact_memory) of LRU pages, Linux 6.1 (mm/compaction.c)."""

from __future__ import annotations

import io

import numpy as np

from fragsim.mm import internal as I
from fragsim.mm import vmstat
from fragsim.mm.compaction import COMPACT_COMPLETE
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from fragsim.mm.machine import Machine
from fragsim.mm.page import PG_anon, PG_lru, PG_movable, PG_swapbacked, PG_unevictable
from fragsim.mm.trace import Tracer

ANON = PG_lru | PG_anon | PG_swapbacked


def fragment(m: Machine, n: int, keep_every: int = 2, flags: int = ANON) -> np.ndarray:
    """Allocate n order-0 LRU pages under handles 0..n-1, free all but every keep_every-th one,
    drain the pcp lists. Returns the handle table."""
    handles = np.full(n, -1, np.int32)
    m.run(I.alloc_events(np.arange(n), GFP_HIGHUSER_MOVABLE, flags=flags), handles)
    m.run(I.free_events([h for h in range(n) if h % keep_every]), handles)
    m.drain_all_pages()
    return handles


def high_order_free(m: Machine, order: int = 9) -> int:
    """Free memory in blocks of at least ``order``, in units of 2^order pages."""
    nr = m.state.nr_free
    return int(
        sum((nr[z, o] << (o - order)) for z in m.populated_zones() for o in range(order, 11))
    )


def fill_lru(m: Machine, flags: int = ANON) -> np.ndarray:
    """Allocate order-0 LRU pages until the watermark stops it; returns the handle table."""
    n = int(m.state.zs[:, I.ZF_MANAGED].sum())
    handles = np.full(n, -1, np.int32)
    m.run(I.alloc_events(np.arange(n), GFP_HIGHUSER_MOVABLE | 0x2000, flags=flags), handles)
    return handles


def free_pfns(m: Machine, pfns: list[int]) -> None:
    for p in pfns:
        m.free_pages(p, 0)
    m.drain_all_pages()


def test_compact_memory_makes_pageblocks_and_moves_owners_with_their_pages() -> None:
    m = Machine("flat:65536", nr_cpus=1)
    handles = fragment(m, 60000)
    before = high_order_free(m)
    assert before <= 12
    owners_before = {int(handles[h]): h for h in range(0, 60000, 2)}
    assert m.compact_memory() == [COMPACT_COMPLETE]
    check_invariants(m)
    assert high_order_free(m) > before + 30  # the checkerboard became free pageblocks
    live = handles[0::2]
    assert (live >= 0).all() and len(set(live.tolist())) == live.size
    # each page's owner moved with it, and the handle table follows (rmap)
    assert (m.state.owner[live] == np.arange(0, 60000, 2)).all()
    assert (m.state.flags[live] & ANON == ANON).all()
    moved = sum(1 for p, h in owners_before.items() if handles[h] != p)
    c = vmstat.vmstat_counters(m)
    assert c["pgmigrate_success"] == moved > 0 and c["pgmigrate_fail"] == 0
    assert c["compact_migrate_scanned"] > 0 and c["compact_free_scanned"] > 0
    # compact_isolated counts pages isolated by both scanners
    assert c["compact_isolated"] >= 2 * moved


def test_compaction_tracepoints_follow_the_kernels_sequence() -> None:
    """Three LRU pages in the first pageblock of an eight-block zone: the migration scanner
    isolates them, migrate_pages takes free pages from the last block. (flat:2048 would be too
    small for mobility grouping: fewer pages than pageblock_nr_pages * MIGRATE_TYPES.)"""
    m = Machine("flat:4096", nr_cpus=1, config_thp=False)
    handles = fill_lru(m)
    used = np.sort(handles[handles >= 0])
    block0 = [int(p) for p in used if p < 512]
    pfns = block0[:3]
    # free the rest of block 0, and every other page of the last block (the targets)
    free_pfns(m, block0[3:] + [int(p) for p in used if p >= 3584 and p % 2])
    buf = io.StringIO()
    Tracer(
        buf,
        [
            "mm_compaction_begin",
            "mm_compaction_end",
            "mm_compaction_isolate_migratepages",
            "mm_compaction_isolate_freepages",
            "mm_compaction_migratepages",
            "mm_migrate_pages",
            "mm_compaction_suitable",
            "mm_compaction_finished",
        ],
    ).attach(m)
    assert m.compact_memory() == [COMPACT_COMPLETE]
    m.tracer.flush(m)
    events = [line.split(": ")[1] for line in buf.getvalue().splitlines()]
    bodies = [line.split(": ", 2)[2] for line in buf.getvalue().splitlines()]
    # the real 6.1 trace of compact_memory starts the same way (shared/data/oracle-6.1, s03)
    assert events[:2] == ["mm_compaction_suitable", "mm_compaction_begin"]
    assert bodies[0] == "node=0 zone=Normal   order=-1 ret=continue"
    assert bodies[1] == "zone_start=0x0 migrate_pfn=0x0 free_pfn=0xe00 zone_end=0x1000, mode=sync"
    assert events[2] == "mm_compaction_finished"
    assert bodies[2] == "node=0 zone=Normal   order=-1 ret=continue"
    assert events[3] == "mm_compaction_isolate_migratepages"
    assert bodies[3].startswith("range=(0x0 ~ 0x200) ") and bodies[3].endswith(" nr_taken=3")
    assert events[4] == "mm_compaction_isolate_freepages"
    assert bodies[4].startswith("range=(0xe00 ~ ")
    assert events[5] == "mm_migrate_pages"
    assert bodies[5] == (
        "nr_succeeded=3 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 "
        "nr_thp_split=0 mode=MIGRATE_SYNC reason=compaction"
    )
    assert events[6] == "mm_compaction_migratepages" and bodies[6] == "nr_migrated=3 nr_failed=0"
    assert events[-2:] == ["mm_compaction_finished", "mm_compaction_end"]
    assert bodies[-2] == "node=0 zone=Normal   order=-1 ret=complete"
    assert bodies[-1].endswith("mode=sync status=complete")
    assert all(m.state.owner[p] == -1 for p in pfns)  # the sources were freed


def test_pinned_unevictable_and_non_lru_pages_stay_where_they_are() -> None:
    """A page with an extra reference (a pin) fails ``page_count - 1 > mapcount``; unevictable
    pages need compact_unevictable_allowed; a non-LRU page without registered movable ops is
    never isolated."""
    m = Machine("flat:4096", nr_cpus=1, config_thp=False)
    pinned = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, page_flags=ANON)
    m.state.refcount[pinned] += 1024  # pin_user_pages(): GUP_PIN_COUNTING_BIAS
    unevictable = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, page_flags=ANON | PG_unevictable)
    driver = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, page_flags=PG_movable)
    kernel = m.alloc_pages(GFP_KERNEL, 0)
    assert max(pinned, unevictable, driver) < 512
    # migration targets: a checkerboard of free pages in the last pageblock
    handles = fill_lru(m)
    free_pfns(m, [int(p) for p in handles[handles >= 0] if p >= 3584 and p % 2])
    m.state.prm[I.P_COMPACT_UNEVICTABLE] = 0
    m.compact_memory()
    assert m.state.refcount[pinned] == 1025 and m.state.flags[pinned] & PG_lru
    assert m.state.flags[unevictable] & PG_lru and m.state.refcount[unevictable] == 1
    assert m.state.flags[driver] & PG_movable and m.state.refcount[driver] == 1
    assert m.state.refcount[kernel] == 1
    migrated = vmstat.vmstat_counters(m)["pgmigrate_success"]
    m.state.prm[I.P_COMPACT_UNEVICTABLE] = 1
    # fresh targets: free every other LRU page left in the last pageblock
    top = sorted(int(p) for p in m.handles[m.handles >= 3584])
    free_pfns(m, top[::2])
    m.compact_memory()
    assert not m.state.flags[unevictable] & PG_lru  # migrated: the old pfn was freed
    assert vmstat.vmstat_counters(m)["pgmigrate_success"] > migrated
    m.state.refcount[pinned] -= 1024


def test_compaction_is_deterministic() -> None:
    def run() -> bytes:
        m = Machine("flat:16384", nr_cpus=2)
        fragment(m, 12000, keep_every=3)
        m.compact_memory()
        st = m.state
        return b"".join(a.tobytes() for a in (st.nxt, st.prv, st.flags, st.order, st.pb))

    assert run() == run()
