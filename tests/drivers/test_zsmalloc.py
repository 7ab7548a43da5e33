"""zsmalloc (fragsim/drivers/zsmalloc.py, Linux 6.1): geometry, fullness groups, zs_compact,
the debugfs classes table, page migration, and the seed's switch (unmovable zsmalloc pages
block compaction, movable ones move with their objects)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragsim.drivers import DRIVERS
from fragsim.drivers.zsmalloc import (
    HUGE_CLASS_SIZE,
    ZS_ALMOST_EMPTY,
    ZS_ALMOST_FULL,
    ZS_FULL,
    ZS_SIZE_CLASSES,
    ZsPool,
    get_pages_per_zspage,
    get_size_class_index,
)
from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm import migrate as mg
from fragsim.mm import vmstat
from fragsim.mm.gfp import __GFP_HIGHMEM, __GFP_MOVABLE, GFP_NOIO
from fragsim.mm.machine import Machine
from fragsim.mm.mmzone import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE
from fragsim.mm.page import PG_movable, PG_private

GFP = GFP_NOIO | __GFP_HIGHMEM | __GFP_MOVABLE  # zram's retry gfp


def machine() -> Machine:
    m = Machine("flat:8192", nr_cpus=1, config_thp=False, debug=True)
    m.daemons = False
    return m


# ---------------------------------------------------------------------- geometry
@pytest.mark.parametrize(
    ("size", "pages"),
    [
        (32, 1),  # 4096 % 32 == 0: 100%
        (48, 3),  # 99%, 99%, 100% (12288 = 256 x 48)
        (208, 2),  # 96%, 99%, 99% (not >), 99%: the first 99 wins
        (368, 1),  # 98% for every i: the first
        (3264, 4),  # 79, 79, 79, 99 (16320 of 16384)
        (3280, 1),
        (4096, 1),
    ],
)
def test_get_pages_per_zspage_by_hand(size: int, pages: int) -> None:
    assert get_pages_per_zspage(size) == pages


def test_class_table_by_hand() -> None:
    m = machine()
    pool = ZsPool(m)
    assert ZS_SIZE_CLASSES == 255  # ceil((4096 - 32) / 16) + 1
    assert get_size_class_index(9) == 0
    assert get_size_class_index(33) == 1
    assert get_size_class_index(4096) == 254
    assert get_size_class_index(5000) == 254
    # 3264 is the largest size whose zspage is not 1 page or not 1 object: minus 7
    assert HUGE_CLASS_SIZE == pool.zs_huge_class_size() == 3257
    c = pool.size_class
    assert (c[254].size, c[254].pages_per_zspage, c[254].objs_per_zspage) == (4096, 1, 1)
    # 4080: 99% for every i, so 1 page of 1 object: merged into the 4096 class
    assert c[253] is c[254] and c[253].index == 254
    # 1008 (index 61): 1 page of 4 objects, like 1024 (index 62): merged
    assert c[61] is c[62] and c[62].size == 1024
    assert (c[1].size, c[1].pages_per_zspage, c[1].objs_per_zspage) == (48, 3, 256)
    assert (c[11].size, c[11].pages_per_zspage, c[11].objs_per_zspage) == (208, 2, 39)
    assert len(pool.classes()) == 69
    assert DRIVERS["zsmalloc"] is ZsPool
    with pytest.raises(ConfigError, match="zs_malloc: size 0"):
        pool.zs_malloc(0, GFP)
    with pytest.raises(ConfigError, match="zs_malloc: size 4097"):
        pool.zs_malloc_batch([100, 4097], GFP)
    with pytest.raises(AllocatorError, match="handle 5 is not allocated"):
        pool.zs_free(5)


# ---------------------------------------------------------------------- fullness groups
def test_fullness_transitions_and_insert_order() -> None:
    m = machine()
    pool = ZsPool(m)
    cls = pool.size_class[30]  # 512 bytes: 1 page of 8 objects, ALMOST_EMPTY up to 6
    assert (cls.size, cls.objs_per_zspage) == (512, 8)
    a = pool.zs_malloc_batch([504] * 8, GFP)
    assert pool.zspages(cls, ZS_FULL) and cls.stats[ZS_FULL] == 1
    b = pool.zs_malloc_batch([500] * 8, GFP)
    za, zb = pool.zspages(cls, ZS_FULL)[::-1]
    pool.zs_free(int(a[0]))  # 7 in use: ALMOST_FULL
    assert pool.zspages(cls, ZS_ALMOST_FULL) == [za]
    pool.zs_free(int(a[1]))  # 6: ALMOST_EMPTY
    assert pool.zspages(cls, ZS_ALMOST_EMPTY) == [za] and za.inuse == 6
    for h in b[:3]:
        pool.zs_free(int(h))  # zb: 7, then 6 (ALMOST_EMPTY), 5
    # zb went in with 6 in use, not fewer than za's 6: at the head
    assert pool.zspages(cls, ZS_ALMOST_EMPTY) == [zb, za]
    c = pool.zs_malloc_batch([512 - 8] * 5, GFP)  # allocation takes the head: zb, then za
    assert zb.inuse == 8 and za.inuse == 8
    assert pool.zs_obj_location(int(c[0]))[1] == 2  # LIFO: the last freed object of zb
    d = pool.zs_malloc_batch([504] * 8, GFP)  # a third zspage, zd
    zd = pool.get_zspage(pool.zs_obj_location(int(d[0]))[0])[0]
    pool.zs_free_batch(d[1:])  # zd: 1 in use
    pool.zs_free_batch(a[2:])  # za: 2 in use (c[3], c[4]), arrived with 6 >= 1: the head
    assert pool.zspages(cls, ZS_ALMOST_EMPTY) == [za, zd]
    pool.zs_free_batch(b[3:])  # zb: 3 in use (c[0..2]), arrived with 6 >= 2: the head
    assert (zb.inuse, za.inuse, zd.inuse) == (3, 2, 1)
    assert pool.zspages(cls, ZS_ALMOST_EMPTY) == [zb, za, zd]
    # put back (as __zs_compact does) with fewer objects in use than the head: second
    assert pool.isolate_zspage(cls, True) is zb
    pool.putback_zspage(cls, zb)
    pool.remove_zspage(cls, zd, ZS_ALMOST_EMPTY)
    assert pool.putback_zspage(cls, zd) == ZS_ALMOST_EMPTY
    assert pool.zspages(cls, ZS_ALMOST_EMPTY) == [zb, zd, za]
    assert cls.stats[ZS_ALMOST_EMPTY] == 3 and cls.stats[ZS_ALMOST_FULL] == 0
    pool.check()
    assert m.zone_stat[m.zone_id(0, "Normal")]["nr_zspages"] == pool.pages_allocated == 3


# ---------------------------------------------------------------------- zs_compact
def three_zspages() -> tuple[Machine, ZsPool, list[np.ndarray]]:
    """Class 512 (8 objects a zspage): A keeps 1 object, B 7, C 2."""
    m = machine()
    pool = ZsPool(m)
    hs = [pool.zs_malloc_batch([504] * 8, GFP) for _ in range(3)]
    pool.zs_free_batch(hs[0][1:])  # A: 1, freed 1..7 (index 7 is the free head)
    pool.zs_free(int(hs[1][3]))  # B: 7
    pool.zs_free_batch(hs[2][2:])  # C: 2
    return m, pool, hs


def test_zs_compact_by_hand() -> None:
    m, pool, (a, b, c) = three_zspages()
    cls = pool.size_class[30]
    za = pool.get_zspage(pool.zs_obj_location(int(a[0]))[0])[0]
    zb = pool.get_zspage(pool.zs_obj_location(int(b[0]))[0])[0]
    zc_pfn = pool.zs_obj_location(int(c[0]))[0]
    assert pool.zspages(cls, ZS_ALMOST_EMPTY) == [pool.get_zspage(zc_pfn)[0], za]
    assert pool.zspages(cls, ZS_ALMOST_FULL) == [zb]
    assert pool.zs_can_compact(cls) == 1 == pool.count_objects(0)
    free_before = int(m.state.nr_free[m.zone_id(0, "Normal")][0])
    # source C (head of ALMOST_EMPTY); destination B (ALMOST_FULL) takes c[0] in its free
    # slot 3 and is full; then A (ALMOST_EMPTY) takes c[1] in its free head, slot 7
    assert pool.zs_compact() == 1
    assert pool.zs_obj_location(int(c[0])) == (pool.pfn(zb.pages[0]), 3)
    assert pool.zs_obj_location(int(c[1])) == (pool.pfn(za.pages[0]), 7)
    assert zb.inuse == 8 and za.inuse == 2
    assert pool.zspages(cls, ZS_FULL) == [zb] and pool.zspages(cls, ZS_ALMOST_EMPTY) == [za]
    assert m.state.refcount[zc_pfn] == 0  # C's page went back to the buddy allocator
    assert int(m.state.nr_free[m.zone_id(0, "Normal")].sum()) >= free_before
    assert pool.pages_compacted == 1 and pool.pages_allocated == 2
    assert cls.stats[4:] == [16, 10]
    assert pool.zs_compact() == 0 and pool.pages_compacted == 1
    assert pool.scan_objects(0, 10) == 0
    for h in (*a[:1], *c[:2], *b[:3], *b[4:]):
        assert pool.zs_read(int(h)) in (500, 504)
    pool.check()


def test_classes_table() -> None:
    m, pool, _ = three_zspages()
    text = pool.classes_show()
    lines = text.split("\n")
    assert lines[0] == (
        " class  size almost_full almost_empty obj_allocated   obj_used pages_used "
        "pages_per_zspage freeable"
    )
    assert len(lines) == 1 + 69 + 3  # header, one row per class, blank, Total, ""
    assert lines[1] == "     0    32           0            0             0          0" + (
        "          0                1        0"
    )
    row30 = [ln for ln in lines if ln.startswith("    30 ")]
    assert row30 == [
        "    30   512           1            2            24         10          3"
        "                1        1"
    ]
    assert lines[-3] == ""
    assert lines[-2] == (
        " Total                 1            2            24         10          3"
        "                         1"
    )
    assert text.endswith("\n")


# ---------------------------------------------------------------------- migration
def test_page_migration_rewrites_object_locations() -> None:
    m = machine()
    pool = ZsPool(m)
    hs = pool.zs_malloc_batch([1000] * 5, GFP)  # class 1024: 4 a page
    src = pool.zs_obj_location(int(hs[0]))[0]
    assert m.state.flags[src] & PG_private and m.state.flags[src] & PG_movable
    assert mg.isolate_movable_page(m, src) == 0
    zspage, _ = pool.get_zspage(src)
    assert zspage.isolated == 1
    dst = m.alloc_pages(GFP, 0)
    rc = mg.move_to_new_page(m, dst, src, mg.MigrateMode.MIGRATE_SYNC_NO_COPY)
    assert rc == mg.MigrateResult.EINVAL
    mg.putback_movable_page(m, src)
    assert zspage.isolated == 0
    m.free_pages(dst, 0)
    pool.check()
    m.compact_memory()  # the pool's pages are at the low end: compaction moves them
    pool.check()
    assert all(pool.zs_read(int(h)) == 1000 for h in hs)


def test_zspage_freed_while_a_page_is_isolated() -> None:
    """6.1: zs_free frees the zspage (trylock_zspage works: the isolated page is not locked);
    reset_page clears its movable state, and the core drops it without calling the driver."""
    m = machine()
    pool = ZsPool(m)
    hs = pool.zs_malloc_batch([504] * 16, GFP)
    pfn = pool.zs_obj_location(int(hs[0]))[0]
    assert mg.isolate_movable_page(m, pfn) == 0
    pool.zs_free_batch(hs[:8])
    assert m.state.refcount[pfn] == 1 and not mg.PageMovable(m, pfn)
    assert pool.pages_allocated == 1
    pool.check()
    mg.putback_movable_page(m, pfn)
    assert m.state.refcount[pfn] == 0
    pool.check()


def fragmented(movable: bool) -> tuple[Machine, ZsPool, list[int]]:
    """Objects of 1-page zspages over most of memory, then one zspage per 8 pages kept."""
    m = machine()
    pool = ZsPool(m, movable=movable)
    hs = pool.zs_malloc_batch([2040] * 2 * 6000, GFP)  # class 2048: 1 page of 2 objects
    assert (hs >= 0).all()
    keep: dict[int, int] = {}
    for h in hs:
        keep.setdefault(pool.zs_obj_location(int(h))[0] >> 3, int(h))
    kept_pfns = {pool.zs_obj_location(h)[0] for h in keep.values()}
    pool.zs_free_batch([h for h in hs if pool.zs_obj_location(int(h))[0] not in kept_pfns])
    m.drain_all_pages()
    return m, pool, sorted(keep.values())


def free_blocks_order3(m: Machine) -> int:
    nr = m.state.nr_free[m.zone_id(0, "Normal")]
    return int(sum(int(nr[o]) << (o - 3) for o in range(3, nr.shape[0])))


def test_unmovable_zsmalloc_pages_block_compaction_movable_ones_move() -> None:
    results = {}
    for movable in (False, True):
        m, pool, hs = fragmented(movable)
        before = {h: pool.zs_obj_location(h)[0] for h in hs}
        pb = int(m.state.pb[next(iter(before.values())) >> 9] & 7)
        assert pb == (MIGRATE_MOVABLE if movable else MIGRATE_UNMOVABLE)
        nr_before = free_blocks_order3(m)
        m.compact_memory()
        m.drain_all_pages()
        pool.check()
        after = {h: pool.zs_obj_location(h)[0] for h in hs}
        moved = sum(after[h] != before[h] for h in hs)
        assert all(pool.zs_read(h) == 2040 for h in hs)  # readable where the handle says
        results[movable] = (nr_before, free_blocks_order3(m), moved)
    (u_before, u_after, u_moved), (v_before, v_after, v_moved) = results[False], results[True]
    assert u_moved == 0 and u_after == u_before
    assert u_before == v_before == 274  # 750 kept pages, one in each 8-page block
    assert v_moved > 400
    assert v_after > v_before + 400 and v_after > u_after + 400


# ---------------------------------------------------------------------- properties
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("malloc"), st.lists(st.integers(1, 4096), min_size=1, max_size=40)),
            st.tuples(st.just("free"), st.integers(0, 10_000)),
            st.tuples(st.just("compact"), st.just(0)),
            st.tuples(st.just("migrate"), st.just(0)),
            st.tuples(st.just("isolate_free"), st.integers(0, 10_000)),
        ),
        max_size=12,
    )
)
def test_random_sequences_keep_every_object(ops: list[tuple[str, object]]) -> None:
    m = machine()
    pool = ZsPool(m)
    live: dict[int, int] = {}
    for op, arg in ops:
        if op == "malloc":
            assert isinstance(arg, list)
            for h, s in zip(pool.zs_malloc_batch(arg, GFP), arg, strict=True):
                assert h >= 0
                live[int(h)] = s
        elif op in ("free", "isolate_free") and live:
            assert isinstance(arg, int)
            h = sorted(live)[arg % len(live)]
            pfn = pool.zs_obj_location(h)[0]
            isolated = op == "isolate_free" and mg.isolate_movable_page(m, pfn) == 0
            pool.zs_free(h)
            del live[h]
            if isolated:
                pool.check()
                mg.putback_movable_page(m, pfn)
        elif op == "compact":
            pool.zs_compact()
        elif op == "migrate":
            m.compact_memory()
        pool.check()
        assert {int(h) for h in pool.live_handles()} == set(live)
        assert all(pool.zs_read(h) == s for h, s in live.items())
        assert m.zone_stat[m.zone_id(0, "Normal")]["nr_zspages"] == pool.pages_allocated


def test_zspages_allocated_ahead_are_the_ones_one_at_a_time_would_get() -> None:
    """prefill: a batch's zspages allocated ahead in one batch of pages end with the same pages,
    objects and free lists as zs_malloc one object at a time; and nothing is allocated ahead
    when an allocation could fail (order0_headroom)."""
    rng = np.random.default_rng(5)
    sizes = rng.choice([100, 700, 1200, 2000, 3000, 4096], size=600)
    pools = []
    for batch in (True, False):
        m = machine()
        pool = ZsPool(m)
        calls: list[int] = []

        def counted(
            n: int, *a: Any, calls: list[int] = calls, alloc: Any = pool.alloc_pages, **k: Any
        ) -> Any:
            calls.append(n)
            return alloc(n, *a, **k)

        pool.alloc_pages = counted  # type: ignore[method-assign]
        if batch:
            hs = pool.zs_malloc_batch(sizes, GFP)
            assert len(calls) == 1 and calls[0] == pool.pages_allocated  # one batch of pages
            assert pool._supply.size == 0  # every zspage allocated ahead was taken
        else:
            hs = np.array([pool.zs_malloc(int(s), GFP) for s in sizes])
        pool.check()
        pools.append((m, pool, hs))
    (ma, pa, ha), (mb, pb, hb) = pools
    assert vmstat.buddyinfo(ma) == vmstat.buddyinfo(mb)
    assert pa.classes_show() == pb.classes_show()
    assert [pa.zs_obj_location(int(h)) for h in ha] == [pb.zs_obj_location(int(h)) for h in hb]
    # almost no room left: the batch goes one zspage at a time (nothing allocated ahead)
    m = machine()
    pool = ZsPool(m)
    hog = m.alloc_pages(GFP, 0)
    held = []
    while m.order0_headroom() > 100:
        held.append(m.alloc_pages(GFP, 0))
    before = m.state.nr_free.sum()
    pool.prefill(pool.class_indexes(np.full(200, 4096, np.int64)), GFP)
    assert pool._supply.size == 0 and m.state.nr_free.sum() == before
    assert hog >= 0 and all(p >= 0 for p in held)
