"""The GPU driver (fragsim/drivers/gpu.py): BOs from a large and a 4 KiB pool, pins while a
job uses a BO, and what compaction does with pinned pages (the compiled ``pinned`` policy)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fragsim.drivers import DRIVERS
from fragsim.drivers.gpu import GFP_GPU_LARGE, GpuDriver
from fragsim.errors import ConfigError
from fragsim.mm import vmstat
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import __GFP_MOVABLE, __GFP_NORETRY, __GFP_NOWARN
from fragsim.mm.machine import Machine
from fragsim.mm.mmzone import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE
from fragsim.mm.page import PG_isolated, PG_movable
from fragsim.mm.trace import Tracer


def machine() -> Machine:
    m = Machine("flat:8192", nr_cpus=1, config_thp=False, min_free_kbytes=128, debug=True)
    m.daemons = False
    return m


def fragmented(**kw: object) -> tuple[Machine, GpuDriver]:
    """flat:8192 (16 pageblocks): BOs of 16 pages fill memory; the first BO of each pageblock
    stays, the rest are destroyed."""
    m = machine()
    g = GpuDriver(m, large_order=None, **kw)  # type: ignore[arg-type]
    bos = []
    while (bo := g.create_bo(16)) >= 0:
        bos.append(bo)
    keep: dict[int, int] = {}
    for bo in bos:
        keep.setdefault(int(g.bo_pfns(bo).min()) >> 9, bo)
    for bo in bos:
        if bo not in keep.values():
            g.destroy_bo(bo)
    m.drain_all_pages()
    assert len(g.bos) == 16
    return m, g


def positions(g: GpuDriver) -> dict[int, np.ndarray]:
    return {bo: g.bo_pfns(bo).copy() for bo in g.bos}


def test_registered_and_options_checked() -> None:
    assert DRIVERS["gpu"] is GpuDriver
    m = machine()
    for kw, opt in [
        ({"duty_cycle": 1.5}, "duty_cycle"),
        ({"pinned": "ignore"}, "pinned"),
        ({"large_order": 11}, "large_order"),
        ({"migrate_eagain": -0.1}, "migrate_eagain"),
    ]:
        with pytest.raises(ConfigError, match=opt):
            GpuDriver(m, **kw)  # type: ignore[arg-type]
    g = GpuDriver(m)
    with pytest.raises(ConfigError, match="pages"):
        g.create_bo(-3)
    with pytest.raises(ConfigError, match="exactly one"):
        g.create_bo(4, nbytes=4096)
    with pytest.raises(ConfigError, match="no buffer object 7"):
        g.destroy_bo(7)


def test_bo_pools_orders_and_gfp() -> None:
    """A BO of 37 pages with large_order 4: two order-4 blocks (unmovable, no ops: kbase's
    large pool) and five order-0 pages (movable, with the driver's ops)."""
    m = machine()
    g = GpuDriver(m, large_order=4)
    assert GFP_GPU_LARGE & (__GFP_NORETRY | __GFP_NOWARN) == __GFP_NORETRY | __GFP_NOWARN
    bo = g.create_bo(nbytes=37 * 4096 - 100)
    obj = g.bos[bo]
    assert sorted(obj.orders.tolist()) == [0] * 5 + [4] * 2 and obj.nr_pages == 37
    pfns = g.bo_pfns(bo)
    small, large = pfns[obj.orders == 0], pfns[obj.orders == 4]
    st = m.state
    assert (st.flags[small] & PG_movable).all() and not (st.flags[large] & PG_movable).any()
    assert (st.pb[small >> 9] & 7 == MIGRATE_MOVABLE).all()
    assert (st.pb[large >> 9] & 7 == MIGRATE_UNMOVABLE).all()
    assert (st.order[large] == 4).all()
    g.destroy_bo(bo)
    m.drain_all_pages()
    assert not g.bos


def test_large_blocks_fall_back_to_order_0() -> None:
    """Once no order-4 block can be had, BOs of 16 pages are made of order-0 pages."""
    m = machine()
    g = GpuDriver(m, large_order=4)
    held = []  # fragment memory: hold one page of each aligned 16
    while (bo := g.create_bo(1)) >= 0:
        held.append(bo)
    for bo in held:
        if int(g.bo_pfns(bo)[0]) % 16:
            g.destroy_bo(bo)
    m.drain_all_pages()
    kinds = []
    for _ in range(600):
        bo = g.create_bo(16)
        assert bo >= 0
        kinds.append(tuple(sorted(g.bos[bo].orders.tolist())))
        if kinds[-1] == (0,) * 16:
            break
    assert kinds[0] == (4,) and kinds[-1] == (0,) * 16  # the reserve's blocks, then 4 KiB


def test_create_bo_that_cannot_be_backed_rolls_back() -> None:
    m = machine()
    g = GpuDriver(m, large_order=None)
    m.drain_all_pages()
    free_before = int(m.state.zs[:, 6].sum())
    assert g.create_bo(100_000) == -1 and g.nr_bo_failed == 1 and not g.bos
    m.drain_all_pages()
    assert int(m.state.zs[:, 6].sum()) == free_before  # nothing kept


def test_unpinned_pages_move_and_counters_count_them() -> None:
    m, g = fragmented(duty_cycle=0.0)
    before = positions(g)
    g.tick(0)
    assert g.busy_bos() == []
    m.compact_memory()
    check_invariants(m)
    after = positions(g)
    moved = sum(int((after[b] != before[b]).sum()) for b in g.bos)
    assert moved >= 15 * 16  # everything but (at most) the top pageblock's BO
    c = g.counters()
    assert c["migrated"] == moved == vmstat.vmstat_counters(m)["pgmigrate_success"]
    assert c["isolated"] >= moved and c["failed"] == 0
    # MigrationCost: 1.5 us per page, 20 us per migrate_pages() call (the TLB flush)
    assert c["time_ns"] > 1_500 * moved and (c["time_ns"] - 1_500 * moved) % 20_000 == 0


def test_pinned_pages_are_retried_then_skipped_eagain() -> None:
    """duty_cycle 1: every BO is busy, its pages pinned. With pinned="eagain" compaction
    isolates them, migrate_page answers -EAGAIN on each of migrate_pages()'s 10 passes, the
    page is counted in pgmigrate_fail and put back where it was."""
    m, g = fragmented(duty_cycle=1.0, pinned="eagain")
    g.tick(0)
    assert len(g.busy_bos()) == 16
    before = positions(g)
    pinned = np.concatenate(list(before.values()))
    assert (m.state.refcount[pinned] == 2).all()  # the driver's reference and the pin
    buf = io.StringIO()
    Tracer(buf, ["mm_migrate_pages"]).attach(m)
    m.compact_memory()
    m.tracer.flush(m)
    check_invariants(m)
    after = positions(g)
    assert all((after[b] == before[b]).all() for b in g.bos)  # nothing moved
    c = g.counters()
    v = vmstat.vmstat_counters(m)
    assert c["migrated"] == 0 and v["pgmigrate_success"] == 0
    assert c["isolated"] > 0
    assert v["pgmigrate_fail"] == c["isolated"]  # every isolated page failed, once
    assert c["failed"] == 10 * c["isolated"]  # ... after 10 -EAGAIN answers each
    lines = buf.getvalue().splitlines()
    assert lines and all("nr_succeeded=0" in line for line in lines)
    assert sum(int(line.split("nr_failed=")[1].split()[0]) for line in lines) == c["isolated"]
    assert (m.state.refcount[pinned] == 2).all()
    assert not (m.state.flags[pinned] & PG_isolated).any()
    # the jobs end: the next tick with duty 0 unpins, and now they move
    g.duty_cycle = 0.0
    g.tick(1)
    assert (m.state.refcount[pinned] == 1).all()
    m.compact_memory()
    assert g.counters()["migrated"] >= 10 * 16  # (some pageblocks keep their skip bit)


@pytest.mark.parametrize("answer", ["isolate", "ebusy"])
def test_pinned_pages_other_answers(answer: str) -> None:
    """ "isolate": isolate_page says no (never isolated, no migrate_page call); "ebusy": one
    migrate_page call, permanent: no retry."""
    m, g = fragmented(duty_cycle=1.0, pinned=answer)
    g.tick(0)
    before = positions(g)
    m.compact_memory()
    check_invariants(m)
    assert all((positions(g)[b] == before[b]).all() for b in g.bos)
    c = g.counters()
    v = vmstat.vmstat_counters(m)
    assert c["migrated"] == 0
    if answer == "isolate":
        assert c["isolated"] == 0 and c["failed"] == 0 and v["pgmigrate_fail"] == 0
    else:
        assert c["isolated"] > 0 and c["failed"] == c["isolated"] == v["pgmigrate_fail"]


def test_duty_cycle_between() -> None:
    """A duty cycle of 0.5 pins about half of the BOs; only the idle ones move."""
    m, g = fragmented(duty_cycle=0.5, pinned="isolate")
    g.tick(0)
    busy = set(g.busy_bos())
    assert 3 <= len(busy) <= 13
    before = positions(g)
    m.compact_memory()
    after = positions(g)
    assert all((after[b] == before[b]).all() for b in busy)
    assert sum(int((after[b] != before[b]).sum()) for b in g.bos if b not in busy) > 0
    # a busy BO can be destroyed: its pins are dropped with it
    for b in busy:
        g.destroy_bo(b)
    check_invariants(m)


def test_duty_cycle_draws_are_seeded() -> None:
    def busy(seed: int) -> list[list[int]]:
        m = Machine("flat:4096", nr_cpus=1, seed=seed)
        g = GpuDriver(m, large_order=None, duty_cycle=0.5)
        for _ in range(20):
            g.create_bo(1)
        out = []
        for t in range(4):
            g.tick(t)
            out.append(g.busy_bos())
        return out

    assert busy(1) == busy(1)
    assert busy(1) != busy(2)


def test_unmovable_gpu_pages_never_move() -> None:
    m, g = fragmented(movable=False, duty_cycle=0.0)
    before = positions(g)
    pfns = np.concatenate(list(before.values()))
    assert not (m.state.flags[pfns] & PG_movable).any()
    assert (m.state.pb[pfns >> 9] & 7 == MIGRATE_UNMOVABLE).all()
    assert not GpuDriver(m, movable=False).gfp(GFP_GPU_LARGE | __GFP_MOVABLE) & __GFP_MOVABLE
    g.tick(0)
    m.compact_memory()
    assert all((positions(g)[b] == before[b]).all() for b in g.bos)
    assert g.counters() == {"isolated": 0, "migrated": 0, "failed": 0, "time_ns": 0}
