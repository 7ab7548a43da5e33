"""The SLUB memory user (fragsim/drivers/slab.py, Linux 6.1): cache geometry against the real
6.1 guest's /proc/slabinfo, kmalloc's size classes and kmalloc_large, which slab an object goes
to, when a slab page returns to the buddy allocator, GFP mobility of slab pages, /proc/slabinfo
text, the nr_slab_* gauges and the dcache/icache shrinker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragsim.drivers import DRIVERS, MovableDriver
from fragsim.drivers.slab import (
    KMALLOC_MAX_CACHE_SIZE,
    SLAB_CPU,
    SLAB_CPU_PARTIAL,
    SLAB_FULL,
    SLAB_NODE_PARTIAL,
    Slab,
    kmalloc_index,
)
from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm import vmstat
from fragsim.mm.gfp import GFP, GFP_KERNEL, GFP_KERNEL_ACCOUNT
from fragsim.mm.machine import Machine
from fragsim.mm.mmzone import MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE
from fragsim.mm.page import PG_head, PG_slab, PG_tail

SLABINFO = Path(__file__).resolve().parents[1] / "fixtures/slabinfo/oracle-6.1-s00_start.slabinfo"
GFP_RECLAIMABLE = GFP_KERNEL | 0x10  # __GFP_RECLAIMABLE
GFP_DMA = 0x01


def machine(pages: int = 8192) -> Machine:
    """A one-CPU machine like the guest (its slabinfo was made with one CPU online)."""
    m = Machine(f"flat:{pages}", nr_cpus=1, config_thp=False, min_free_kbytes=128, debug=True)
    m.daemons = False
    return m


def fixture_caches() -> dict[str, tuple[int, int, int]]:
    out = {}
    for line in SLABINFO.read_text().splitlines()[2:]:
        f = line.split()
        out[f[0]] = (int(f[3]), int(f[4]), int(f[5]))
    return out


def slabs_of(s: Slab, name: str) -> np.ndarray:
    c = s.cache(name)
    n = s._nr_slab_ids
    return np.flatnonzero(s.slab_cache[:n] == c.index)


def pages(m: Machine, stat: str) -> int:
    return int(m.node_stat[0][stat])


# ---------------------------------------------------------------------------- geometry
def test_cache_geometry_matches_the_real_6_1_guest() -> None:
    """Every cache modelled that the guest has: s->size, objects per slab and pages per slab
    equal the guest's (kmalloc-8k: 4 objects in 8 pages; task_struct: 5 in 8; dentry: 21 in
    1; shmem_inode_cache 10 in 2)."""
    m = machine()
    s = Slab(m)
    real = fixture_caches()
    checked = 0
    for c in s.cache_list:
        if c.name in real:
            assert (c.size, c.objects, 1 << c.order) == real[c.name], c.name
            checked += 1
    assert checked == len(s.cache_list) - 1  # all but ext4_inode_cache (the guest had no ext4)
    assert (s.cache("kmalloc-8k").order, s.cache("kmalloc-8k").objects) == (3, 4)
    assert (s.cache("task_struct").order, s.cache("task_struct").objects) == (3, 5)
    assert s.cache("kmalloc-8k").min_order == 1 and s.cache("kmalloc-8k").min_objects == 1
    # set_min_partial: ilog2(size) / 2 clamped to [5, 10]; set_cpu_partial's slab counts
    assert s.cache("kmalloc-8").min_partial == 5 and s.cache("kmalloc-8k").min_partial == 6
    assert s.cache("kmalloc-64").cpu_partial_slabs == 4  # DIV_ROUND_UP(120 * 2, 64)
    assert s.cache("kmalloc-8k").cpu_partial_slabs == 3  # DIV_ROUND_UP(6 * 2, 4)
    assert Slab(m, caches=[], cpu_partial=False).cache("kmalloc-64").cpu_partial_slabs == 0


def test_flags_and_gfp_of_caches() -> None:
    m = machine()
    s = Slab(m)
    comp, recl = GFP["__GFP_COMP"], 0x10
    for name in ("dentry", "inode_cache", "buffer_head", "radix_tree_node", "kmalloc-rcl-64"):
        assert s.cache(name).reclaimable and s.cache(name).allocflags & recl, name
    for name in ("task_struct", "filp", "shmem_inode_cache", "kmalloc-64", "kmalloc-cg-64"):
        assert not s.cache(name).reclaimable and not s.cache(name).allocflags & recl, name
    assert s.cache("kmalloc-8k").allocflags & comp and not s.cache("dentry").allocflags & comp
    assert s.cache("dma-kmalloc-64").allocflags & GFP_DMA
    assert DRIVERS["slab"] is Slab


# ---------------------------------------------------------------------------- kmalloc
@pytest.mark.parametrize(
    ("size", "index"),
    [(1, 3), (8, 3), (9, 4), (16, 4), (17, 5), (33, 6), (64, 6), (65, 1), (96, 1), (97, 7)]
    + [(128, 7), (129, 2), (192, 2), (193, 8), (256, 8), (1000, 10), (4097, 13), (8192, 13)],
)
def test_kmalloc_index(size: int, index: int) -> None:
    assert kmalloc_index(size) == index


def test_kmalloc_picks_the_cache_by_size_and_type() -> None:
    m = machine()
    s = Slab(m, caches=[])
    cases = {
        (8, GFP_KERNEL): "kmalloc-8",
        (70, GFP_KERNEL): "kmalloc-96",
        (150, GFP_KERNEL): "kmalloc-192",
        (200, GFP_KERNEL): "kmalloc-256",
        (3000, GFP_KERNEL): "kmalloc-4k",
        (8192, GFP_KERNEL): "kmalloc-8k",
        (150, GFP_RECLAIMABLE): "kmalloc-rcl-192",
        (100, GFP_KERNEL_ACCOUNT): "kmalloc-cg-128",
        (100, GFP_KERNEL_ACCOUNT | 0x10): "kmalloc-rcl-128",  # RECLAIMABLE before ACCOUNT
        (100, GFP_KERNEL | GFP_DMA | 0x10): "dma-kmalloc-128",  # DMA first
    }
    for (size, gfp), name in cases.items():
        assert s.kmalloc_slab(size, gfp).name == name, (size, gfp)
        x = s.kmalloc(size, 1, gfp)
        if gfp & GFP_DMA:  # the flat machine's ZONE_DMA is empty: the slab cannot be had
            assert x[0] == -1 and s.get_slabinfo(s.cache(name)) == (0, 0, 0)
            continue
        assert s.slab_cache[s.obj_slab[x[0]]] == s.cache(name).index
    with pytest.raises(ConfigError):
        s.kmalloc_slab(KMALLOC_MAX_CACHE_SIZE + 1)
    with pytest.raises(ConfigError, match="size -1"):
        s.kmalloc(-1)
    s.check()


def test_kmalloc_large_goes_to_the_page_allocator() -> None:
    """kmalloc(8193) is a compound page of get_order(8193) = 2 with __GFP_COMP, no PG_slab,
    counted in nr_slab_unreclaimable (4 pages each) until kfree."""
    m = machine()
    s = Slab(m, caches=[])
    x = s.kmalloc(8193, 3)
    assert (x >= 0).all()
    hs = -2 - s.obj_slab[x]  # a kmalloc_large object records its block's handle
    pfns = s.pfns(hs)
    for p in pfns:
        assert m.state.order[p] == 2
        assert m.state.flags[p] & PG_head and not m.state.flags[p] & PG_slab
        assert all(m.state.flags[p + i] & PG_tail for i in (1, 2, 3))
        assert (m.state.pb[p >> 9] & 7) == MIGRATE_UNMOVABLE
    assert pages(m, "nr_slab_unreclaimable") == 12
    assert s.get_slabinfo(s.cache("kmalloc-8k")) == (0, 0, 0)
    s.kfree(x[1:])
    assert pages(m, "nr_slab_unreclaimable") == 4
    s.check()
    s.kfree(x[:1])
    assert pages(m, "nr_slab_unreclaimable") == 0
    assert (m.handles[hs] < 0).all()
    with pytest.raises(AllocatorError, match=f"object {x[0]} is not allocated"):
        s.kfree(x[:1])


def test_kmalloc_8k_slab_is_an_order_3_compound_slab_page() -> None:
    m = machine()
    s = Slab(m, caches=[])
    x = s.kmalloc(8000, 5)
    sl = np.unique(s.obj_slab[x])
    assert sl.size == 2
    for p in s.pfns(s.slab_handle[sl]):
        assert m.state.order[p] == 3
        assert m.state.flags[p] & PG_slab and m.state.flags[p] & PG_head
        assert (m.state.pb[p >> 9] & 7) == MIGRATE_UNMOVABLE
    assert pages(m, "nr_slab_unreclaimable") == 16
    assert s.get_slabinfo(s.cache("kmalloc-8k")) == (8, 8, 2)


def test_slab_falls_back_to_the_min_order_when_the_order_fails() -> None:
    """allocate_slab(): order 3 with __GFP_NORETRY and no direct reclaim fails on a machine
    whose free memory is in order-1 pieces; the min order (get_order(8192) = 1, one object)
    succeeds with the caller's flags."""
    m = machine(4096)
    d = MovableDriver(m, movable=False)
    hs = d.alloc_pages(4096, GFP_KERNEL)
    hs = np.r_[hs, d.alloc_pages(256, GFP_KERNEL | GFP["__GFP_MEMALLOC"])]  # the reserves too
    hs = hs[hs >= 0]
    pf = d.pfns(hs)
    d.free_pages(hs[(pf % 4) < 2])  # free pairs: order-1 blocks only
    m.drain_all_pages()
    assert m.state.nr_free[:, 2:].sum() == 0 and m.state.nr_free[:, 1].sum() > 1000
    s = Slab(m, caches=[])
    x = s.kmalloc(8192, 2)
    assert (x >= 0).all()
    sl = s.obj_slab[x]
    assert sl[0] != sl[1]
    assert list(s.slab_order[sl]) == [1, 1] and list(s.slab_objects[sl]) == [1, 1]
    assert pages(m, "nr_slab_unreclaimable") == 4
    s.check()
    d.free_pages(hs[(pf % 4) >= 2])


# ---------------------------------------------------------------------------- slab lifetime
def test_a_slab_page_is_freed_only_when_all_its_objects_are() -> None:
    """kmalloc-512 (8 objects per order-0 slab, min_partial 5), no cpu partial list:
    56 objects fill slabs A..G (G the cpu slab). Freeing 7 objects of A moves it to the
    partial list; its 8th leaves it empty but kept (1 < min_partial partial slabs). One free
    in each of B..F puts them on the list (6 partial slabs); emptying B then discards it
    (6 >= 5) and its page goes back to the buddy allocator."""
    m = machine()
    s = Slab(m, caches=[], cpu_partial=False)
    c = s.cache("kmalloc-512")
    assert (c.objects, c.min_partial) == (8, 5)
    x = s.kmalloc(512, 56).reshape(7, 8)
    sl = s.obj_slab[x[:, 0]]
    assert list(s.slab_where[sl]) == [SLAB_FULL] * 6 + [SLAB_CPU]
    assert pages(m, "nr_slab_unreclaimable") == 7
    a_page = int(s.pfns(s.slab_handle[sl[:1]])[0])
    s.kfree(x[0, :7])
    assert s.slab_where[sl[0]] == SLAB_NODE_PARTIAL and s.slab_inuse[sl[0]] == 1
    s.kfree(x[0, 7:])
    assert s.slab_where[sl[0]] == SLAB_NODE_PARTIAL and s.slab_inuse[sl[0]] == 0
    assert m.state.flags[a_page] & PG_slab and pages(m, "nr_slab_unreclaimable") == 7
    s.kfree(x[1:6, 0])
    assert list(c.partial[0]) == [int(v) for v in sl[:6]]
    b_page = int(s.pfns(s.slab_handle[sl[1:2]])[0])
    b_handle = int(s.slab_handle[sl[1]])
    s.kfree(x[1, 1:])
    assert list(c.partial[0]) == [int(v) for v in sl[[0, 2, 3, 4, 5]]]
    assert pages(m, "nr_slab_unreclaimable") == 6
    assert m.handles[b_handle] < 0 and not m.state.flags[b_page] & PG_slab
    assert s.get_slabinfo(c) == (48 - 8 - 4, 48, 6)
    # the cpu slab G is full: the next allocation finds no free object in it, G goes off every
    # list, and the head of the partial list (the empty slab A) becomes the cpu slab
    y = s.kmalloc(512, 9)
    assert s.slab_where[sl[6]] == SLAB_FULL
    assert (s.obj_slab[y[:8]] == sl[0]).all() and s.slab_where[sl[0]] == SLAB_FULL
    assert s.obj_slab[y[8]] == sl[2] and s.slab_where[sl[2]] == SLAB_CPU
    assert list(c.partial[0]) == [int(v) for v in sl[3:6]]
    s.check()


def test_cpu_partial_list_keeps_freed_into_slabs_frozen() -> None:
    """With CONFIG_SLUB_CPU_PARTIAL (kmalloc-8k: cpu_partial_slabs 3, min_partial 6): the
    first free into a full slab freezes it onto the cpu partial list; the 4th such slab drains
    the list (3 slabs) onto the node partial list; empty frozen slabs are kept."""
    m = machine()
    s = Slab(m, caches=[])
    c = s.cache("kmalloc-8k")
    x = s.kmalloc(8192, 20).reshape(5, 4)
    sl = s.obj_slab[x[:, 0]]
    s.kfree(x[:3].ravel())  # slabs 0..2 empty, frozen on the cpu partial list
    assert list(s.slab_where[sl[:3]]) == [SLAB_CPU_PARTIAL] * 3
    assert c.cpu_partial[0] == [int(v) for v in sl[:3]]  # head last
    assert pages(m, "nr_slab_unreclaimable") == 40
    s.kfree(x[3, :1])  # drain: __unfreeze_partials walks from the head (slab 2)
    assert list(c.partial[0]) == [int(sl[2]), int(sl[1]), int(sl[0])]
    assert c.cpu_partial[0] == [int(sl[3])]
    assert pages(m, "nr_slab_unreclaimable") == 40  # 3 < min_partial: all kept
    assert s.get_slabinfo(c) == (20 - 12, 20, 5)
    # allocation: the cpu slab (4) is full -> the cpu partial list's slab 3 (one free object)
    # -> get_partial_node: slab 2 as cpu slab, then slabs 1 and 0 onto the cpu partial list
    # (it stops once more than cpu_partial_slabs / 2 = 1 were taken)
    y = s.kmalloc(8192, 5)
    assert s.obj_slab[y[0]] == sl[3] and s.slab_where[sl[3]] == SLAB_FULL
    assert (s.obj_slab[y[1:]] == sl[2]).all() and s.slab_where[sl[2]] == SLAB_CPU
    assert c.cpu_partial[0] == [int(sl[1]), int(sl[0])] and not c.partial[0]
    s.check()


def test_batch_free_equals_one_by_one() -> None:
    """A batch of frees ends in the same lists, counts and pages as the same frees one by one
    (the batch replays the list moves in order)."""
    order = np.random.default_rng(7).permutation(500)[:400]
    states = []
    for batch in (True, False):
        m = machine()
        s = Slab(m, caches=["dentry"])
        x = s.kmem_cache_alloc("dentry", 500)
        if batch:
            s.kmem_cache_free("dentry", x[order])
        else:
            for i in order:
                s.kmem_cache_free("dentry", x[i : i + 1])
        c = s.cache("dentry")
        states.append(
            (s.slabinfo(), list(c.partial[0]), list(c.cpu_partial[0]), m.node_stat[0].copy())
        )
        s.check()
    assert states[0] == states[1]


# ---------------------------------------------------------------------------- mobility
def test_reclaimable_caches_land_in_reclaimable_pageblocks() -> None:
    """dentry slabs are __GFP_RECLAIMABLE: their first page steals a MOVABLE pageblock and
    converts it (the fallback rules for RECLAIMABLE); kmalloc slabs go to UNMOVABLE ones."""
    m = machine()
    s = Slab(m)
    d = s.kmem_cache_alloc("dentry", 21 * 40)
    k = s.kmalloc(64, 64 * 40)
    r = s.kmalloc(64, 64, GFP_RECLAIMABLE)
    pb = m.state.pb
    for ids, mt in ((d, MIGRATE_RECLAIMABLE), (k, MIGRATE_UNMOVABLE), (r, MIGRATE_RECLAIMABLE)):
        pf = s.pfns(s.slab_handle[np.unique(s.obj_slab[ids])])
        assert ((pb[pf >> 9] & 7) == mt).all()
    assert pages(m, "nr_slab_reclaimable") == 41
    assert pages(m, "nr_slab_unreclaimable") == 40
    v = vmstat.vmstat_counters(m)
    assert v["nr_slab_reclaimable"] == 41 and v["nr_slab_unreclaimable"] == 40


# ---------------------------------------------------------------------------- /proc/slabinfo
def test_slabinfo_text() -> None:
    """A hand-built state: 30 dentries (a full slab of 21 and the cpu slab with 9: all
    active), and kmalloc-512 without cpu partial: 16 objects, 3 of the first slab freed (on the
    partial list: 13 active of 16)."""
    m = machine()
    s = Slab(m, caches=["dentry"], cpu_partial=False)
    s.kmem_cache_alloc("dentry", 30)
    x = s.kmalloc(512, 16)
    s.kfree(x[:3])
    text = s.slabinfo()
    lines = text.splitlines()
    real = SLABINFO.read_text().splitlines()
    assert lines[:2] == real[:2]
    assert len(lines) == 2 + 4 * 13 + 1
    assert lines[2] == (
        "dentry                42     42    192   21    1 : tunables    0    0    0 : "
        "slabdata      2      2      0"
    )
    assert (
        "kmalloc-512           13     16    512    8    1 : tunables    0    0    0 : "
        "slabdata      2      2      0"
    ) in lines
    assert lines[-1].startswith("kmalloc-8              0      0      8  512    1 :")
    # the kmalloc caches in the guest's order (newest first): dma, rcl, cg, normal
    names = [ln.split()[0] for ln in lines[3:]]
    assert names == [ln.split()[0] for ln in real if "kmalloc-" in ln.split()[0]]
    assert text.endswith("\n")


# ---------------------------------------------------------------------------- shrinker
def test_shrinker_frees_unused_objects_in_lru_order() -> None:
    """210 dentries in 10 slabs, marked unused one slab after another in turn (LRU order
    spreads over every slab). Scanning 100 frees the oldest 100: ~10 per slab, no slab empties
    and no page returns. Scanning the other 110 empties them all: with no cpu partial list the
    node keeps min_partial - 1 = 4 empty partial slabs and the cpu slab; 5 pages go back."""
    m = machine()
    s = Slab(m, caches=["dentry", "inode_cache"], cpu_partial=False)
    assert s.shrinker in m.shrinkers and s.shrinker.seeks == 2
    x = s.kmem_cache_alloc("dentry", 210).reshape(10, 21)
    keep = s.kmem_cache_alloc("inode_cache", 5)
    lru = x.T.ravel()
    s.mark_unused(lru)
    assert s.shrinker.count_objects(0) == 210
    assert pages(m, "nr_slab_reclaimable") == 10 + 2
    assert s.shrinker.scan_objects(0, 100) == 100
    assert (s.obj_state[lru[:100]] == 0).all() and (s.obj_state[lru[100:]] == 2).all()
    assert pages(m, "nr_slab_reclaimable") == 12
    assert s.shrinker.count_objects(0) == 110
    s.check()
    assert s.shrinker.scan_objects(0, 500) == 110
    assert pages(m, "nr_slab_reclaimable") == 5 + 2
    assert s.shrinker.count_objects(0) == 0 and s.shrinker.scan_objects(0, 10) == 0
    s.check()
    s.kmem_cache_free("inode_cache", keep)


def test_shrinker_splits_the_scan_and_skips_used_objects() -> None:
    m = machine()
    s = Slab(m, caches=["dentry", "inode_cache"])
    d = s.kmem_cache_alloc("dentry", 300)
    i = s.kmem_cache_alloc("inode_cache", 100)
    s.mark_unused(d[:150])
    s.mark_unused(i)
    s.mark_used(d[:50])  # cache hits: off the LRU
    assert s.shrinker.count_objects(0) == 200
    # mult_frac: 100 * 100 / 200 dentries, 100 * 100 / 200 inodes
    assert s.shrinker.scan_objects(0, 100) == 100
    assert (s.obj_state[d[50:100]] == 0).all() and (s.obj_state[d[100:150]] == 2).all()
    assert (s.obj_state[i[:50]] == 0).all() and (s.obj_state[i[50:]] == 2).all()
    assert (s.obj_state[d[:50]] == 1).all()
    s.kfree(d[120:130])  # freeing unused objects takes them off the LRU
    assert s.shrinker.count_objects(0) == 90
    s.check()
    with pytest.raises(ConfigError, match="kmalloc-64 objects have no LRU"):
        s.mark_unused(s.kmalloc(64, 1))


# ---------------------------------------------------------------------------- errors
def test_bad_input_is_a_clear_error() -> None:
    m = machine()
    s = Slab(m, caches=["dentry"])
    with pytest.raises(ConfigError, match="unknown cache 'nope'"):
        Slab(m, caches=["nope"])
    with pytest.raises(ConfigError, match="unknown cache 'filp'"):
        s.kmem_cache_alloc("filp")
    x = s.kmem_cache_alloc("dentry", 3)
    with pytest.raises(AllocatorError, match="not of this cache"):
        s.kmem_cache_free("kmalloc-192", x)
    with pytest.raises(AllocatorError, match=f"object {x[0]} freed twice"):
        s.kfree([x[0], x[0]])
    s.kfree(x)
    with pytest.raises(AllocatorError, match=f"object {x[1]} is not allocated"):
        s.kmem_cache_free("dentry", x[1:2])
    with pytest.raises(AllocatorError, match="object 99999 is not allocated"):
        s.kfree([99999])


# ---------------------------------------------------------------------------- properties
OPS = st.lists(
    st.tuples(
        st.sampled_from(["alloc", "free", "unused", "shrink", "large"]),
        st.sampled_from(["dentry", "kmalloc-8k", "kmalloc-64", "task_struct"]),
        st.integers(1, 60),
        st.integers(0, 2**31),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, cpu_partial=st.booleans())
def test_random_alloc_free_keeps_accounting_exact(
    ops: list[tuple[str, str, int, int]], cpu_partial: bool
) -> None:
    m = machine(4096)
    s = Slab(m, caches=["dentry", "task_struct"], cpu_partial=cpu_partial)
    live: list[int] = []
    for op, cache, n, seed in ops:
        rng = np.random.default_rng(seed)
        if op == "alloc":
            x = s.kmem_cache_alloc(cache, n, cpu=seed % 2 if m.nr_cpus > 1 else 0)
            live += [int(v) for v in x[x >= 0]]
        elif op == "large":
            x = s.kmalloc(8193 + seed % 20000, 1 + n % 3)
            live += [int(v) for v in x[x >= 0]]
        elif op == "free" and live:
            pick = rng.permutation(len(live))[: min(n, len(live))]
            s.kfree([live[i] for i in pick])
            gone = set(pick.tolist())
            live = [v for i, v in enumerate(live) if i not in gone]
        elif op == "unused":
            cand = [v for v in live if s.obj_slab[v] >= 0 and s.obj_state[v] == 1]
            cand = [v for v in cand if s.cache_list[s.slab_cache[s.obj_slab[v]]].lru]
            if cand:
                s.mark_unused(rng.permutation(cand)[:n])
        elif op == "shrink":
            freed = s.shrinker.scan_objects(0, n)
            live = [v for v in live if s.obj_state[v] != 0]
            assert freed <= n
        s.check()
        # objects in use per cache equal what is live; pages equal the gauges
        nr_pages = sum(
            1 << int(s.slab_order[sl]) for sl in np.flatnonzero(s.slab_cache[: s._nr_slab_ids] >= 0)
        )
        large = sum(
            1 << int(m.state.order[p])
            for p in s.pfns(-2 - s.obj_slab[[v for v in live if s.obj_slab[v] <= -2]])
        )
        gauges = pages(m, "nr_slab_reclaimable") + pages(m, "nr_slab_unreclaimable")
        assert gauges == nr_pages + large
        assert int(np.count_nonzero(s.obj_state[: s._nr_obj_ids])) == len(live)
    s.kfree(live)
    s.check()
    for c in s.cache_list:
        active, objs, _ = s.get_slabinfo(c)
        assert active <= objs
