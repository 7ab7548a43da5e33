"""compaction_suitable() and __compact_finished() for an allocation order (Linux 6.1)."""

from __future__ import annotations

import io

import numpy as np

from fragsim.mm import internal as I
from fragsim.mm import vmstat
from fragsim.mm.compaction import (
    COMPACT_CONTINUE,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    MIGRATE_SYNC,
    compact_zone,
    compaction_suitable,
    new_compact_control,
)
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import __GFP_NOWARN, GFP_HIGHUSER_MOVABLE
from fragsim.mm.machine import Machine
from fragsim.mm.mmzone import MIGRATE_MOVABLE
from fragsim.mm.page import PG_anon, PG_lru, PG_swapbacked
from fragsim.mm.trace import Tracer

ANON = PG_lru | PG_anon | PG_swapbacked
MIN = I.ALLOC_WMARK_MIN


def filled(order: int, keep: int = 2) -> tuple[Machine, int]:
    """flat:65536 filled with MOVABLE LRU blocks of ``order``, every ``keep``-th one kept; the
    free blocks larger than ``order`` that the watermark left are then allocated away."""
    m = Machine("flat:65536", nr_cpus=1)
    n = 65536 >> order
    handles = np.full(n, -1, np.int32)
    m.run(I.alloc_events(np.arange(n), GFP_HIGHUSER_MOVABLE | __GFP_NOWARN, order, ANON), handles)
    m.run(I.free_events([h for h in range(n) if h % keep and handles[h] >= 0]), handles)
    m.drain_all_pages()
    z = m.zone_id(0, "Normal")
    for o in range(10, order, -1):
        while m.state.nr_free[z, o]:
            if m.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_NOWARN, o) < 0:
                break  # the watermark keeps the rest
        m.drain_all_pages()
    return m, z


def suitable(m: Machine, z: int, order: int) -> int:
    return int(compaction_suitable(m.state, z, order, MIN, m.zone_index("Normal")))


def test_suitable_success_continue_and_skipped() -> None:
    fresh = Machine("flat:65536", nr_cpus=1)
    z = fresh.zone_id(0, "Normal")
    assert suitable(fresh, z, 3) == COMPACT_SUCCESS  # the allocation would succeed already

    m, z = filled(0)  # a checkerboard: half the zone free, no free block above order 0
    assert vmstat.fragmentation_index(m.state.nr_free[z], 9) > 500
    assert suitable(m, z, 3) == COMPACT_CONTINUE  # order <= 3: no fragmentation-index test
    assert suitable(m, z, 9) == COMPACT_CONTINUE  # fragmentation, not lack of memory

    full, z = filled(0, keep=10**9)  # everything kept: only the watermark's pages are free
    assert suitable(full, z, 3) == COMPACT_SKIPPED  # not min + compact_gap(3) free


def test_costly_order_with_a_low_fragmentation_index_is_not_suitable() -> None:
    """Free memory in order-8 blocks only: for order 9 the index is
    1000 - (1000 + free*1000/512)/blocks = 500 - 1000/blocks <= extfrag_threshold 500, so the
    zone is not suitable (traced as not_suitable_zone, returned as skipped)."""
    m, z = filled(8)
    nr = m.state.nr_free[z]
    assert nr[8] > 10 and nr[9:].sum() == 0
    assert vmstat.fragmentation_index(nr, 9) == 500 - 1000 // int(nr[8])
    buf = io.StringIO()
    Tracer(buf, ["mm_compaction_suitable"]).attach(m)
    assert suitable(m, z, 9) == COMPACT_SKIPPED
    m.tracer.flush(m)
    assert buf.getvalue().rstrip().endswith("order=9 ret=not_suitable_zone")
    m.state.prm[I.P_EXTFRAG_THRESHOLD] = 0  # the sysctl at 0: always worth compacting
    assert suitable(m, z, 9) == COMPACT_CONTINUE


def checkerboard() -> tuple[Machine, int]:
    """flat:65536 with small watermarks, filled with order-0 LRU pages, a random half of them
    freed (seeded): no free block of pageblock order anywhere. (A perfect checkerboard would
    blind the free scanner: once a block yields nothing its stride doubles, and an even stride
    only lands on the allocated half; the kernel behaves the same.)"""
    m = Machine("flat:65536", nr_cpus=1, min_free_kbytes=256)
    n = 65536
    handles = np.full(n, -1, np.int32)
    m.run(I.alloc_events(np.arange(n), GFP_HIGHUSER_MOVABLE | __GFP_NOWARN, flags=ANON), handles)
    z = m.zone_id(0, "Normal")
    while m.state.nr_free[z, 9:].sum():  # what the watermark left in large blocks: taken
        assert m.alloc_pages(GFP_HIGHUSER_MOVABLE, 9) >= 0
    live = np.flatnonzero(handles >= 0)
    m.run(I.free_events(np.random.default_rng(1).permutation(live)[: live.size // 2]), handles)
    m.drain_all_pages()
    while m.state.nr_free[z, 9:].sum():
        assert m.alloc_pages(GFP_HIGHUSER_MOVABLE, 9) >= 0
    return m, z


def test_compaction_for_an_order_stops_once_a_block_is_free() -> None:
    """__compact_finished(): at a pageblock boundary, SUCCESS as soon as the request's
    migratetype has a free block of the order (check_drain has flushed the freed pages from the
    pcp lists so that they merge); so an order-9 compaction moves far fewer pages than
    compact_memory of the same zone."""
    m, z = checkerboard()
    assert m.state.nr_free[z, 9:].sum() == 0
    assert suitable(m, z, 9) == COMPACT_CONTINUE
    cc = new_compact_control(
        z,
        order=9,
        mode=MIGRATE_SYNC,
        migratetype=MIGRATE_MOVABLE,
        alloc_flags=MIN,
        highest_zoneidx=m.zone_index("Normal"),
    )
    assert compact_zone(m, cc) == COMPACT_SUCCESS
    check_invariants(m)
    moved = vmstat.vmstat_counters(m)["pgmigrate_success"]
    assert m.state.nr_free[z, 9:].sum() > 0

    whole, _ = checkerboard()
    whole.compact_memory()
    assert 0 < moved < vmstat.vmstat_counters(whole)["pgmigrate_success"] / 4
