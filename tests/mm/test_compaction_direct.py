"""Direct compaction in the allocator's slow path, capture, kswapd waking kcompactd, proactive
compaction, the LRU isolation and migration rules, and drivers' compiled policies
(Linux 6.1 mm/compaction.c, mm/page_alloc.c, mm/vmscan.c, mm/migrate.c)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fragsim.mm import compaction as c
from fragsim.mm import internal as I
from fragsim.mm import vmstat
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import (
    __GFP_COMP,
    __GFP_NOWARN,
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOFS,
)
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import CompiledPolicy, MigrationCost, SetPageMovable
from fragsim.mm.page import (
    PG_anon,
    PG_dirty,
    PG_lru,
    PG_movable,
    PG_swapbacked,
    PG_writeback,
)
from fragsim.mm.trace import Tracer

ANON = PG_lru | PG_anon | PG_swapbacked
FILE = PG_lru


def counters(m: Machine) -> dict[str, int]:
    return vmstat.vmstat_counters(m)


def spread(
    m: Machine, keep: object, flags: int = ANON, gfp: int = GFP_HIGHUSER_MOVABLE
) -> np.ndarray:
    """Fill the machine with order-0 pages (handles 0..n-1), then free every page whose pfn
    ``keep(pfn)`` rejects; returns the handle table."""
    n = int(m.state.zs[:, I.ZF_MANAGED].sum())
    handles = np.full(n, -1, np.int32)
    m.run(I.alloc_events(np.arange(n), gfp | __GFP_NOWARN, flags=flags), handles)
    drop = [h for h in range(n) if handles[h] >= 0 and not keep(int(handles[h]))]  # type: ignore[operator]
    m.run(I.free_events(drop), handles)
    m.drain_all_pages()
    return handles


def take_free_blocks(m: Machine, order: int) -> None:
    """Allocate away (unmovable, no flags) the free blocks of ``order`` or more that the
    watermark left at the end of the fill."""
    z = m.zone_id(0, "Normal")
    for o in range(10, order - 1, -1):
        while m.state.nr_free[z, o]:
            if m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, o) < 0:
                break
        m.drain_all_pages()
    assert m.state.nr_free[z, order:].sum() == 0


def quiet(pages: int = 16384, **kw: object) -> Machine:
    """A flat machine without daemons (tests drive them explicitly) and small watermarks.
    Its zone starts at pfn 0, so the kernel's zero-initialised compact_cached_free_pfn would
    lie inside it and the first cached-position compaction would meet its scanners at once
    (then reset them); the tests start from reset positions instead."""
    m = Machine(f"flat:{pages}", nr_cpus=1, config_thp=False, min_free_kbytes=256, **kw)
    m.daemons = False
    for z in m.populated_zones():
        c.reset_cached_positions(m.state, z)
    return m


def test_unmovable_order3_request_compacts_directly_then_succeeds() -> None:
    """GFP_KERNEL order 3 with only order-0/1 free blocks (one page in four kept): the slow path
    first compacts async (only UNMOVABLE pageblocks are sources then: none, so it fails), then,
    after direct reclaim found nothing, sync-light at DEF_COMPACT_PRIORITY, which stops as soon
    as a stealable order-3 block exists; the allocation then steals it. compact_stall 2,
    compact_fail 1, compact_success 1, and the zone's deferral is reset by the success."""
    m = quiet()
    handles = spread(m, lambda p: p % 4 == 1)
    take_free_blocks(m, 3)
    z = m.zone_id(0, "Normal")
    before = {p: h for h, p in enumerate(handles) if p >= 0}
    pfn = m.alloc_pages(GFP_KERNEL, 3)
    assert pfn >= 0
    v = counters(m)
    assert (v["compact_stall"], v["compact_fail"], v["compact_success"]) == (2, 1, 1)
    assert v["pgmigrate_success"] > 0 and v["pgmigrate_fail"] == 0
    assert m.state.zs[z, I.ZF_COMPACT_DEFER_SHIFT] == 0
    assert m.state.zs[z, I.ZF_COMPACT_ORDER_FAILED] == 4  # defer_reset(order 3): order + 1
    # every LRU page kept its owner: the handle table follows the pages that moved
    live = handles[handles >= 0]
    assert len(live) == len(before)
    assert all(m.state.owner[p] == h for h, p in enumerate(handles) if p >= 0)
    check_invariants(m)


def test_norety_costly_request_gives_up_when_compaction_is_skipped() -> None:
    """A costly __GFP_NORETRY request on a zone without enough free memory for compaction
    (compaction_suitable: SKIPPED) fails after the first attempt, with no compaction stall."""
    m = quiet(8192)
    spread(m, lambda p: True)  # everything kept: only the watermark's pages are free
    gfp = GFP_HIGHUSER_MOVABLE | __GFP_COMP | 0x1000 | __GFP_NOWARN  # __GFP_NORETRY
    assert m.alloc_pages(gfp, 9) == -1
    assert counters(m)["compact_stall"] == 0


def test_a_pageblock_order_request_captures_the_block_compaction_frees() -> None:
    """An order-9 movable request (costly: the initial async compaction runs first): the
    pages of the first pageblock migrate away and, when check_drain flushes the pcp lists,
    __free_one_page merges them into an order-9 block that compaction_capture() hands to the
    request: it never reaches a free list (no mm_page_alloc_zone_locked for it)."""
    m = quiet()
    spread(m, lambda p: p % 512 == 7)  # one page per pageblock
    z = m.zone_id(0, "Normal")
    assert m.state.nr_free[z, 9:].sum() == 0
    buf = io.StringIO()
    Tracer(buf, ["mm_page_alloc", "mm_page_alloc_zone_locked"]).attach(m)
    pfn = m.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_COMP, 9)
    m.tracer.flush(m)
    assert pfn >= 0 and pfn % 512 == 0
    lines = buf.getvalue().splitlines()
    assert not any("zone_locked" in line and "order=9" in line for line in lines)
    assert any("mm_page_alloc:" in line and "order=9" in line for line in lines)
    v = counters(m)
    assert (v["compact_stall"], v["compact_fail"], v["compact_success"]) == (1, 0, 1)
    check_invariants(m)


def test_kswapd_wakes_kcompactd_once_reclaim_made_room() -> None:
    """GFP_ATOMIC order 3 cannot reclaim or compact: it fails and wakes kswapd (the node is not
    balanced at order 3). kswapd's balance_pgdat reclaims (a stand-in reclaim hook reports
    compact_gap(3) = 16 pages: the reclaim issue provides the real one), so the order drops to
    0; the node is balanced at order 0, and kswapd_try_to_sleep wakes kcompactd for order 3.
    kcompactd compacts sync-light from the cached positions and the next request succeeds."""
    m = quiet(watermark_boost_factor=0)
    spread(m, lambda p: p % 4 == 1)
    take_free_blocks(m, 3)
    m.run_daemons()  # kswapd, woken while the fill went below the low watermark
    m.daemons = True
    m.hooks.kswapd_reclaim = lambda m, nid, order, hz: 16
    buf = io.StringIO()
    tps = ["wakeup_kcompactd", "kcompactd_wake", "kcompactd_sleep", "end", "wakeup_kswapd"]
    Tracer(
        buf, [("mm_vmscan_" if t == "wakeup_kswapd" else "mm_compaction_") + t for t in tps]
    ).attach(m)
    assert m.alloc_pages(GFP_ATOMIC | __GFP_NOWARN, 3) == -1
    m.tracer.flush(m)
    events = [line.split(": ")[1] for line in buf.getvalue().splitlines()]
    assert events == [
        "mm_vmscan_wakeup_kswapd",
        "mm_compaction_wakeup_kcompactd",
        "mm_compaction_kcompactd_wake",
        "mm_compaction_end",
        "mm_compaction_kcompactd_sleep",
    ]
    assert "order=3" in buf.getvalue().splitlines()[1]
    assert "status=success" in buf.getvalue()
    v = counters(m)
    assert v["compact_daemon_wake"] == 1 and v["compact_daemon_migrate_scanned"] > 0
    assert v["compact_stall"] == 0  # kcompactd is not a stall
    assert m.alloc_pages(GFP_ATOMIC, 3) >= 0


def test_without_reclaim_kswapd_gives_up_and_wakeup_kswapd_asks_kcompactd() -> None:
    """With nothing to reclaim, each kswapd run counts a failure; after MAX_RECLAIM_RETRIES the
    node is hopeless and wakeup_kswapd() wakes kcompactd directly for a request that cannot
    reclaim."""
    m = quiet(watermark_boost_factor=0)
    spread(m, lambda p: p % 4 == 1)
    take_free_blocks(m, 3)
    m.run_daemons()
    m.daemons = True
    for _ in range(16):
        assert m.alloc_pages(GFP_ATOMIC | __GFP_NOWARN, 3) == -1
    assert m.state.nd[0, I.ND_KSWAPD_FAILURES] >= 16
    assert counters(m)["compact_daemon_wake"] == 0
    m.alloc_pages(GFP_ATOMIC | __GFP_NOWARN, 3)
    assert counters(m)["compact_daemon_wake"] == 1


def score(m: Machine) -> int:
    return int(c.fragmentation_score_node(m.state, 0))


def test_proactive_compaction_runs_on_kcompactd_timeout_above_the_high_watermark() -> None:
    """compaction_proactiveness 20: wmarks low 80, high 90. A zone whose free memory is all
    in blocks below pageblock order scores 100: at the 500 ms timeout kcompactd compacts the
    node. As in the kernel, the pages it frees stay on this CPU's pcp list (compaction for
    order -1 never drains it), so the score it sees does not fall: it compacts the whole zone,
    and since the score did not improve, the next check is 64 timeouts (32 s) later. The
    drained zone scores below the low watermark."""
    m = quiet()
    spread(m, lambda p: p % 64 == 3)
    assert score(m) > 90
    m.advance(499_000_000)
    assert counters(m)["compact_migrate_scanned"] == 0  # not yet due
    m.advance(500_000_000)
    done = counters(m)["pgmigrate_success"]
    assert done > 200 and score(m) > 90
    assert m.state.nd[0, I.ND_PROACTIVE_NEXT] == 500_000_000 + (500_000_000 << 6)
    m.advance(30_000_000_000)
    assert counters(m)["pgmigrate_success"] == done
    m.drain_all_pages()
    assert score(m) <= 80
    check_invariants(m)


def test_proactive_compaction_is_off_at_proactiveness_0_and_while_kswapd_runs() -> None:
    m = quiet()
    spread(m, lambda p: p % 64 == 3)
    m.state.prm[I.P_COMPACTION_PROACTIVENESS] = 0
    m.advance(600_000_000)
    assert counters(m)["compact_migrate_scanned"] == 0
    m.state.prm[I.P_COMPACTION_PROACTIVENESS] = 20
    m.state.nd[0, I.ND_KSWAPD_AWAKE] = 1  # kswapd_is_running()
    m.daemons = False
    c.kcompactd(m, 0, 2_000_000_000)
    assert counters(m)["compact_migrate_scanned"] == 0


def one_block(flags: int, refs: int = 1, pages: int = 4) -> tuple[Machine, int, list[int]]:
    """flat:4096 (eight pageblocks) filled, then everything freed but ``pages`` pages at the
    start of the first pageblock, with page flags ``flags`` and ``refs`` references each, and
    one page in every other block (so that those are migration targets: a free pageblock is
    not). Returns the machine, the zone and the first pages' pfns."""
    m = quiet(4096)
    handles = spread(m, lambda p: p < pages or p % 512 == 300, flags=flags)
    pfns = [p for p in range(pages)]
    for p in pfns:
        m.state.refcount[p] = refs
    m.handles = handles
    return m, m.zone_id(0, "Normal"), pfns


def moved(m: Machine, pfns: list[int]) -> int:
    """How many of the pages that were at ``pfns`` (their owner handles are their pfns' order
    of allocation) are somewhere else now."""
    return sum(1 for p in pfns if not (m.state.flags[p] & PG_lru))


def compact(m: Machine, z: int, mode: int, gfp: int = GFP_KERNEL) -> np.ndarray:
    cc = c.new_compact_control(z, order=-1, mode=mode, gfp=gfp)
    c.compact_zone(m, cc)
    return cc


def test_file_page_with_an_extra_reference_is_isolated_but_fails_with_eagain() -> None:
    """A file page's extra reference does not stop isolation (only anonymous pages are checked
    against their mapcount) but folio_migrate_mapping's refcount check answers -EAGAIN: ten
    passes, then the page counts as failed and is put back on the LRU."""
    m, z, pfns = one_block(FILE, refs=2, pages=1)
    buf = io.StringIO()
    Tracer(buf, ["mm_migrate_pages"]).attach(m)
    compact(m, z, c.MIGRATE_SYNC)
    m.tracer.flush(m)
    assert "nr_succeeded=1 nr_failed=1" in buf.getvalue()  # with page 300 of the same block
    v = counters(m)
    assert v["pgmigrate_fail"] == 1
    assert m.state.flags[pfns[0]] & PG_lru and m.state.refcount[pfns[0]] == 2


def test_pinned_anonymous_page_is_never_isolated() -> None:
    m, z, pfns = one_block(ANON, refs=2, pages=1)
    compact(m, z, c.MIGRATE_SYNC)
    assert moved(m, pfns) == 0 and counters(m)["pgmigrate_fail"] == 0


@pytest.mark.parametrize(
    ("mode", "moves"),
    [(c.MIGRATE_ASYNC, False), (c.MIGRATE_SYNC_LIGHT, False), (c.MIGRATE_SYNC, True)],
)
def test_writeback_pages_move_only_in_sync_mode(mode: int, moves: bool) -> None:
    """ISOLATE_ASYNC_MIGRATE (every mode but MIGRATE_SYNC) skips pages under writeback; sync
    compaction isolates them and waits for the write."""
    m, z, pfns = one_block(FILE | PG_writeback)
    compact(m, z, mode)
    assert moved(m, pfns) == (len(pfns) if moves else 0)


def test_dirty_file_pages_and_gfp_nofs() -> None:
    """Dirty file pages move in async mode when the filesystem has migrate_folio (the default);
    not when it has none. Without __GFP_FS, file pages are not isolated at all."""
    m, z, pfns = one_block(FILE | PG_dirty)
    compact(m, z, c.MIGRATE_SYNC_LIGHT)
    assert moved(m, pfns) == len(pfns)
    m, z, pfns = one_block(FILE | PG_dirty)
    m.state.prm[I.P_FS_MIGRATE_DIRTY] = 0
    compact(m, z, c.MIGRATE_SYNC_LIGHT)
    assert moved(m, pfns) == 0
    compact(m, z, c.MIGRATE_SYNC)
    assert moved(m, pfns) == len(pfns)
    m, z, pfns = one_block(FILE)
    compact(m, z, c.MIGRATE_SYNC, gfp=GFP_NOFS)
    assert moved(m, pfns) == 0


class Device:
    """A built-in-style driver: its pages are moved by a compiled policy, its state is kept by
    handle (the core updates the handle table when a page moves)."""

    name = "gpu"

    def __init__(self, policy: CompiledPolicy, cost: MigrationCost) -> None:
        self.policy = policy
        self.cost = cost

    def isolate_page(self, page: object, mode: object) -> bool:  # pragma: no cover
        raise AssertionError("a compiled policy is never called back")

    def migrate_page(self, dst: object, src: object, mode: object) -> int:  # pragma: no cover
        raise AssertionError("a compiled policy is never called back")

    def putback_page(self, page: object) -> None:  # pragma: no cover
        raise AssertionError("a compiled policy is never called back")


def device_pages(
    policy: CompiledPolicy, cost: MigrationCost | None = None, seed: int = 0
) -> tuple[Machine, Device, np.ndarray]:
    """flat:8192: one driver page (movable, compiled policy) in each pageblock, else free."""
    m = Machine("flat:8192", nr_cpus=1, config_thp=False, seed=seed)
    m.daemons = False
    handles = spread(m, lambda p: p % 512 == 100, flags=0)
    d = Device(policy, cost or MigrationCost())
    pfns = sorted(int(p) for p in handles[handles >= 0])
    for p in pfns:
        SetPageMovable(m, p, d)
    m.handles = handles
    return m, d, handles


def test_compiled_policy_moves_driver_pages_without_python_calls() -> None:
    m, d, handles = device_pages(
        CompiledPolicy(), MigrationCost(per_page_ns=2000, per_batch_ns=50_000)
    )
    owners = {int(h): int(p) for h, p in enumerate(handles) if p >= 0}
    z = m.zone_id(0, "Normal")
    m.compact_memory()
    m.drain_all_pages()
    assert m.state.nr_free[z, 9] + 2 * m.state.nr_free[z, 10] >= 14  # blocks freed
    moved = [h for h, p in owners.items() if handles[h] != p]
    assert moved
    for h in owners:
        p = int(handles[h])
        assert m.state.owner[p] == h and m.state.flags[p] & PG_movable
        assert m.state.mops[p] == 1 and m.state.refcount[p] == 1
    row = m.state.drv[0]
    assert row[I.DRV_NR_MIGRATED] == len(moved) == counters(m)["pgmigrate_success"]
    batches = int(m.state.prm[I.P_MIGRATE_CALL])
    assert row[I.DRV_TIME_NS] == 2000 * len(moved) + 50_000 * batches
    check_invariants(m)


def test_compiled_policy_busy_device_blocks_compaction() -> None:
    m, d, handles = device_pages(CompiledPolicy(isolate_busy=1.0))
    m.compact_memory()
    assert counters(m)["compact_isolated"] == 0
    m, d, handles = device_pages(CompiledPolicy(migrate_ebusy=1.0))
    m.compact_memory()
    v = counters(m)
    isolated = int(m.state.drv[0, I.DRV_NR_ISOLATED])
    assert v["pgmigrate_success"] == 0 and v["pgmigrate_fail"] == isolated > 0
    assert m.state.drv[0, I.DRV_NR_FAILED] == isolated
    check_invariants(m)


def test_compiled_policy_draws_are_seeded() -> None:
    """A device that holds each page half the time: the pages that move depend on the seed,
    and only on it."""

    def run(seed: int) -> tuple[int, ...]:
        m, d, handles = device_pages(CompiledPolicy(isolate_busy=0.5), seed=seed)
        m.compact_memory()
        return tuple(int(p) for p in handles[handles >= 0])

    assert run(1) == run(1)
    assert len({run(s) for s in range(4)}) > 1
