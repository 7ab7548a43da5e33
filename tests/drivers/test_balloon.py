"""The virtio-balloon driver (drivers/virtio/virtio_balloon.c, mm/balloon_compaction.c, Linux
6.1): inflate and deflate in 256-pfn batches with the host told each batch, the balloon list's
order, fill_balloon stopping when allocation fails, the deflate-on-OOM notifier, and balloon
compaction (balloon_mops) on a loaded 1 GiB guest."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragsim.drivers import DRIVERS, MemoryUser, driver_class
from fragsim.drivers.balloon import (
    BALLOON_ALLOC_FLAGS,
    VIRTIO_BALLOON_ARRAY_PFNS_MAX,
    VirtioBalloon,
)
from fragsim.errors import ConfigError
from fragsim.mm import internal as I
from fragsim.mm import vmstat
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import GFP, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    CompiledPolicy,
    MigrateMode,
    MigrateResult,
    PageMovable,
    isolate_movable_page,
    migrate_movable_page,
)
from fragsim.mm.mmzone import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE
from fragsim.mm.page import PG_anon, PG_lru, PG_offline, PG_swapbacked

ANON = PG_lru | PG_anon | PG_swapbacked


def small(**kw: object) -> tuple[Machine, VirtioBalloon]:
    m = Machine("flat:8192", nr_cpus=1, config_thp=False, debug=True)
    m.daemons = False
    return m, VirtioBalloon(m, **kw)


def check_balloon(b: VirtioBalloon) -> None:
    """The balloon's own invariants: its list holds distinct allocated pages with PG_offline
    (and balloon_mops when movable), the list plus the isolated pages are vb->num_pages, the
    host holds exactly the listed pages, balloon_inflate - balloon_deflate = the size, and the
    managed-page adjustment is minus the size (0 with DEFLATE_ON_OOM)."""
    m = b.machine
    pfns = b.balloon_pages()
    assert len(set(pfns.tolist())) == pfns.size
    assert pfns.size + b.isolated_pages == b.nr_pages
    st_ = m.state
    assert (st_.refcount[pfns] == 1).all()
    assert (st_.flags[pfns] & PG_offline).all()
    assert all(PageMovable(m, int(p)) == b.movable for p in pfns)
    assert int(((st_.flags & PG_offline) != 0).sum()) == b.nr_pages
    assert np.array_equal(np.flatnonzero(b.host.ballooned), np.sort(pfns))
    ev = m.vm_events
    assert ev["balloon_inflate"] - ev["balloon_deflate"] == b.nr_pages
    managed = sum(b.managed_delta.values())
    assert managed == (0 if b.deflate_on_oom else -b.nr_pages)


def free_high_order(m: Machine, order: int = 9) -> int:
    """Free blocks of at least ``order``, counted in blocks of that order."""
    nr = m.state.nr_free
    return int(
        sum(int(nr[z, o]) << (o - order) for z in range(nr.shape[0]) for o in range(order, 11))
    )


# ---------------------------------------------------------------------------------- contract


def test_registry_and_gfp_masks() -> None:
    assert DRIVERS["virtio-balloon"] is VirtioBalloon
    assert driver_class("virtio-balloon") is VirtioBalloon
    m, b = small()
    flags = GFP["__GFP_NOMEMALLOC"] | GFP["__GFP_NORETRY"] | GFP["__GFP_NOWARN"]
    assert BALLOON_ALLOC_FLAGS == flags
    assert b.balloon_gfp() == GFP_HIGHUSER_MOVABLE | flags
    assert b.gfp(b.balloon_gfp()) == GFP_HIGHUSER_MOVABLE | flags
    u = VirtioBalloon(m, movable=False)
    assert u.gfp(u.balloon_gfp()) == GFP_HIGHUSER | flags
    assert b.pages_per_page == 1 and VIRTIO_BALLOON_ARRAY_PFNS_MAX == 256


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"free_page_hint": True}, "unknown option 'free_page_hint'"),
        ({"deflate_on_oom": "yes"}, "option 'deflate_on_oom' must be True or False"),
        ({"movable": 1}, "option 'movable' must be True or False"),
        ({"policy": CompiledPolicy()}, "option 'policy' is not supported"),
        ({"cost": 5}, "option 'cost' must be a MigrationCost"),
    ],
)
def test_bad_options_raise_config_error(options: dict[str, object], match: str) -> None:
    m = Machine("flat:4096", nr_cpus=1)
    with pytest.raises(ConfigError, match=match):
        VirtioBalloon(m, **options)


def test_bad_targets_raise_config_error() -> None:
    _, b = small()
    with pytest.raises(ConfigError, match="target -1 pages is outside"):
        b.set_target(-1)
    with pytest.raises(ConfigError, match="outside 0 .. 2"):
        b.set_target(1 << 32)
    with pytest.raises(ConfigError, match="-2 MiB is negative"):
        b.set_target_mib(-2)
    with pytest.raises(ConfigError, match="not a number of pages"):
        b.set_target("10")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fill_balloon"):
        b.fill_balloon(-1)
    b.set_target_mib(3)
    assert b.config_num_pages == 768 and b.work_pending


# ---------------------------------------------------------------------------------- fill and leak


def test_list_order_host_pfns_and_dequeue_order() -> None:
    """fill_balloon pushes the pages it allocated on a local list and pops them: the last
    allocated is enqueued and told to the host first, and each list_add() at the head leaves
    the first allocated at the head of b_dev_info->pages, which leak_balloon dequeues first."""
    m, b = small(host_log_pfns=True)
    b.set_target(3)
    assert b.work() == 3
    (vq, told) = b.host.log[0]
    a1, a2, a3 = told[::-1].tolist()  # allocation order
    assert vq == "inflate" and told.tolist() == [a3, a2, a1]
    assert b.balloon_pages().tolist() == [a1, a2, a3]
    assert b.num_pages == b.actual == 3 and not b.work_pending
    b.set_target(1)
    assert b.work() == -2
    assert b.host.log[1][0] == "deflate" and b.host.log[1][1].tolist() == [a1, a2]
    assert b.balloon_pages().tolist() == [a3]
    for p in (a1, a2):
        assert m.state.refcount[p] == 0 and not m.state.flags[p] & PG_offline
    assert m.state.flags[a3] & PG_offline
    check_balloon(b)


def test_inflate_deflate_batches_counts_and_host_log() -> None:
    m, b = small()
    managed = int(m.state.zs[m.zone_id(0, "Normal"), I.ZF_MANAGED])
    b.set_target(1000)
    assert b.work_pending and b.num_pages == 0  # the host's request waits for the work item
    assert b.work() == 1000
    # 256 + 256 + 256 + 232 balloon pfns: one host notification per batch
    assert b.host.inflate_notifications == 4 and b.host.inflated_pfns == 1000
    assert b.num_pages == b.actual == 1000 and b.nr_pages == 1000
    assert m.vm_events["balloon_inflate"] == 1000
    z = m.zone_id(0, "Normal")
    assert b.managed_delta == {z: -1000}
    assert f"managed  {managed - 1000}" in vmstat.zoneinfo(m)  # adjust_managed_page_count
    pfns = b.balloon_pages()
    assert (m.state.pb[pfns >> 9] & 7 == MIGRATE_MOVABLE).all()
    check_balloon(b)

    b.set_target(200)
    assert b.work(max_runs=1) == -256 and b.actual == 744 and b.work_pending
    assert b.work() == -544
    assert b.host.deflate_notifications == 4 and b.host.deflated_pfns == 800
    assert m.vm_events["balloon_deflate"] == 800
    assert b.num_pages == b.actual == 200 and b.managed_delta == {z: -200}
    gone = np.setdiff1d(pfns, b.balloon_pages())
    assert gone.size == 800 and (m.state.refcount[gone] == 0).all()
    check_balloon(b)

    b.remove()  # virtballoon_remove(): everything leaks back
    assert b.num_pages == b.actual == 0 and b.host.nr_ballooned == 0
    assert b.managed_delta == {z: 0} and m.vm_events["balloon_deflate"] == 1000
    assert int(m.state.zs[z, I.ZF_MANAGED]) == managed
    check_balloon(b)


def test_fill_stops_on_allocation_failure_and_retries_on_the_next_work() -> None:
    """fill_balloon stops at the first page it cannot get ("Out of puff!", msleep(200)); the
    work item stays queued and the next work() call tries again."""
    m, b = small()
    hog = MemoryUser(m)
    held = hog.alloc_pages(8192, GFP_HIGHUSER_MOVABLE)
    held = held[held >= 0]
    hog.free_pages(held[:300])
    m.drain_all_pages()
    b.set_target(2000)
    got = b.work()
    # the hog stopped at the same (min) watermark the balloon's requests stop at: the balloon
    # gets the 300 pages freed, in a full batch of 256 and one cut short at 44
    assert got == 300 and b.nr_out_of_puff == 1
    assert b.host.inflate_notifications == 2 and b.host.inflated_pfns == 300
    assert b.num_pages == b.actual == got and b.work_pending
    assert b.work() == 0 and b.nr_out_of_puff == 2 and b.work_pending
    hog.free_pages(held[300:1300])
    m.drain_all_pages()
    assert b.work() == 1000 and b.num_pages == 1300 and b.nr_out_of_puff == 3
    check_balloon(b)
    check_invariants(m)


def test_deflate_on_oom_feeds_the_oom_notifier_and_keeps_managed_counts() -> None:
    m, b = small(deflate_on_oom=True)
    b.set_target(100_000)
    b.work()
    full = b.num_pages
    assert full > 7000 and b.managed_delta == {}
    # a GFP_KERNEL allocation that reclaim cannot help reaches out_of_memory(): the
    # notifier leaks 256 balloon pages and the allocation is retried
    pfn = m.alloc_pages(GFP_KERNEL, 0)
    assert pfn >= 0
    assert b.num_pages == b.actual == full - 256
    assert m.vm_events["balloon_deflate"] == 256
    check_balloon(b)
    b.remove()
    assert not m.oom_notifiers


def test_without_deflate_on_oom_the_allocation_fails() -> None:
    m, b = small()
    b.set_target(100_000)
    b.work()
    full = b.num_pages
    assert m.alloc_pages(GFP_KERNEL, 0) == -1
    assert b.num_pages == full and not m.oom_notifiers


# ---------------------------------------------------------------------------------- balloon_mops


def test_migrate_page_contract_einval_then_success() -> None:
    """balloon_page_isolate takes the page off the list; MIGRATE_SYNC_NO_COPY is -EINVAL (put
    back at the head); a migration puts the new page at the head, tells the host new then old,
    counts balloon_migrate and frees the old page."""
    m, b = small(host_log_pfns=True)
    b.set_target(4)
    b.work()
    p1, p2, p3, p4 = b.balloon_pages().tolist()
    assert isolate_movable_page(m, p3) == 0
    assert b.isolated_pages == 1 and b.balloon_pages().tolist() == [p1, p2, p4]
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    rc = migrate_movable_page(m, p3, dst, MigrateMode.MIGRATE_SYNC_NO_COPY)
    assert rc == MigrateResult.EINVAL
    assert b.isolated_pages == 0 and b.balloon_pages().tolist() == [p3, p1, p2, p4]
    assert m.state.refcount[dst] == 0  # the unused destination was freed
    assert m.vm_events["balloon_migrate"] == 0
    check_balloon(b)

    assert isolate_movable_page(m, p2) == 0
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    n = len(b.host.log)
    rc = migrate_movable_page(m, p2, dst, MigrateMode.MIGRATE_SYNC)
    assert rc == MigrateResult.MIGRATEPAGE_SUCCESS
    assert b.balloon_pages().tolist() == [dst, p3, p1, p4]
    assert [(vq, x.tolist()) for vq, x in b.host.log[n:]] == [("inflate", [dst]), ("deflate", [p2])]
    assert m.vm_events["balloon_migrate"] == 1 and b.num_pages == 4
    assert m.state.refcount[p2] == 0 and not m.state.flags[p2] & PG_offline
    # fragsim's migrate_movable_page does not copy page flags (compaction's migrate_page_move
    # does): the driver set PG_offline on the new page itself (balloon_page_insert)
    assert m.state.flags[dst] & PG_offline and PageMovable(m, dst)
    check_balloon(b)


def scattered() -> tuple[Machine, VirtioBalloon]:
    """flat:8192 whose 100 balloon pages sit in every 64th page of the zone."""
    m, b = small(host_log_pfns=True)
    hog = MemoryUser(m)
    held = hog.alloc_pages(8192, GFP_HIGHUSER_MOVABLE)
    held = held[held >= 0]
    at = hog.pfns(held)
    hog.free_pages(held[at % 64 == 0])
    m.drain_all_pages()
    b.set_target(100)
    assert b.work() == 100
    assert (b.balloon_pages() % 64 == 0).all()
    hog.free_pages(held[at % 64 != 0])
    m.drain_all_pages()
    return m, b


def test_compaction_moves_scattered_balloon_pages() -> None:
    m, b = scattered()
    before = set(b.balloon_pages().tolist())
    high = free_high_order(m)
    assert high <= 3  # the 100 balloon pages pin 13 of the 16 pageblocks
    m.compact_memory()
    m.drain_all_pages()
    moved = m.vm_events["balloon_migrate"]
    after = set(b.balloon_pages().tolist())
    assert moved > 50 and len(after - before) == moved
    assert b.num_pages == 100 and b.isolated_pages == 0
    assert b.host.inflated_pfns == 100 + moved and b.host.deflated_pfns == moved
    assert free_high_order(m) >= high + 10
    check_balloon(b)


def test_balloon_lock_held_makes_migration_eagain() -> None:
    """virtballoon_migratepage's mutex_trylock fails while a fill or leak runs: -EAGAIN on each
    of migrate_pages' 10 passes, then the page is put back on the balloon list."""
    m, b = scattered()
    before = set(b.balloon_pages().tolist())
    with b.hold_balloon_lock():
        m.compact_memory()
    assert m.vm_events["balloon_migrate"] == 0
    assert set(b.balloon_pages().tolist()) == before and b.isolated_pages == 0
    assert b.host.inflated_pfns == 100 and b.host.deflated_pfns == 0
    assert m.state.vm[I.VM_PGMIGRATE_FAIL] > 0
    check_balloon(b)


def test_unmovable_balloon_takes_unmovable_pageblocks() -> None:
    m, b = small(movable=False)
    b.set_target(3000)
    b.work()
    pfns = b.balloon_pages()
    assert (m.state.pb[pfns >> 9] & 7 == MIGRATE_UNMOVABLE).all()
    m2, b2 = small(movable=True)
    b2.set_target(3000)
    b2.work()
    assert (m2.state.pb[b2.balloon_pages() >> 9] & 7 == MIGRATE_MOVABLE).all()


# ---------------------------------------------------------------------------------- 1 GiB guest


def loaded_guest(movable: bool) -> tuple[Machine, VirtioBalloon, MemoryUser]:
    """The real 1 GiB guest with 200,000 pages of anonymous (90%) and kernel (10%) memory, of
    which 70% of the anonymous and half the kernel pages are freed again at random, then a
    balloon inflated to 100,000 pages (390 MiB) into the holes."""
    m = Machine("x86_64-1g", debug=True, seed=1)
    u = MemoryUser(m)
    rng = np.random.default_rng(7)
    kern_n = int((rng.random(200_000) < 0.1).sum())
    anon = u.alloc_pages(200_000 - kern_n, GFP_HIGHUSER_MOVABLE, flags=ANON)
    kern = u.alloc_pages(kern_n, GFP_KERNEL)
    assert (anon >= 0).all() and (kern >= 0).all()
    u.free_pages(anon[rng.random(anon.size) < 0.7])
    u.free_pages(kern[rng.random(kern.size) < 0.5])
    m.drain_all_pages()
    b = VirtioBalloon(m, movable=movable)
    b.set_target(100_000)
    assert b.work() == 100_000
    return m, b, u


def _offline(m: Machine) -> npt.NDArray[np.int64]:
    return np.flatnonzero(m.state.flags & PG_offline)


def test_compaction_migrates_balloon_pages_on_a_loaded_1g_guest() -> None:
    m, b, _ = loaded_guest(True)
    check_balloon(b)
    assert b.host.inflate_notifications == 391  # ceil(100000 / 256)
    before = set(b.balloon_pages().tolist())
    high = free_high_order(m)
    m.compact_memory()
    m.drain_all_pages()
    moved = m.vm_events["balloon_migrate"]
    assert moved > 1000
    after = set(b.balloon_pages().tolist())
    assert len(after - before) == moved and len(before - after) == moved
    # the host was told about each new page (inflate) and each old one (deflate)
    assert b.host.inflate_notifications == 391 + moved
    assert b.host.deflate_notifications == moved
    assert b.num_pages == b.actual == 100_000 and b.isolated_pages == 0
    assert set(_offline(m).tolist()) == after  # PG_offline moved with each page
    assert free_high_order(m) > high
    check_balloon(b)


def test_unmovable_balloon_on_a_loaded_1g_guest_never_migrates() -> None:
    m, b, _ = loaded_guest(False)
    before = b.balloon_pages().tolist()
    pb = m.state.pb[np.array(before) >> 9] & 7
    # an unmovable request takes over whole free pageblocks; only the few taken from a
    # movable pageblock without claiming it stay there
    assert (pb == MIGRATE_UNMOVABLE).sum() >= 0.99 * len(before)
    m.compact_memory()
    assert b.balloon_pages().tolist() == before
    assert "balloon_migrate" not in m.vm_events
    check_balloon(b)


# ---------------------------------------------------------------------------------- properties

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("target"), st.integers(0, 5000)),
        st.tuples(st.just("work"), st.integers(1, 4)),
        st.tuples(st.just("compact"), st.just(0)),
        st.tuples(st.just("hog"), st.integers(1, 2000)),
        st.tuples(st.just("unhog"), st.integers(0, 2000)),
    ),
    max_size=12,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, movable=st.booleans())
def test_balloon_invariants_hold_under_any_sequence(
    ops: list[tuple[str, int]], movable: bool
) -> None:
    m, b = small(movable=movable)
    hog = MemoryUser(m)
    held: list[int] = []
    for op, n in ops:
        if op == "target":
            b.set_target(n)
        elif op == "work":
            b.work(max_runs=n)
        elif op == "compact":
            m.compact_memory()
        elif op == "hog":
            hs = hog.alloc_pages(n, GFP_HIGHUSER_MOVABLE, flags=ANON)
            held += hs[hs >= 0].tolist()
        elif held:
            k = min(n, len(held))
            hog.free_pages(held[:k])
            del held[:k]
        check_balloon(b)
        assert b.num_pages == b.actual
    b.set_target(0)
    b.work()
    assert b.num_pages == 0 and b.host.nr_ballooned == 0
    check_balloon(b)
    check_invariants(m)
