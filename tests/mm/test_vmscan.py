"""Page reclaim (fragsim/mm/vmscan.py, workingset.py, swap.py) with the page cache and process
memory users: the LRU lists and their counters, kswapd and direct reclaim, swap, writeback,
refaults, the shrinkers, and compaction keeping LRU pages on their lists."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragsim.drivers.pagecache import PageCache
from fragsim.drivers.process import Processes
from fragsim.errors import ConfigError
from fragsim.mm import internal as I
from fragsim.mm import vmscan, vmstat
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import GFP_KERNEL
from fragsim.mm.machine import Machine
from fragsim.mm.page import PG_active, PG_dirty, PG_lru, PG_reclaim, PG_referenced, PG_writeback


class RamSwap:
    """A swap device with ``slots`` slots (the protocol Machine.swapon checks)."""

    def __init__(self, slots: int) -> None:
        self.free = list(range(slots - 1, -1, -1))
        self.used: set[int] = set()
        self.slots = slots

    def swap_out(self, count: int) -> np.ndarray:
        out = np.full(count, -1, np.int64)
        for i in range(min(count, len(self.free))):
            out[i] = self.free.pop()
            self.used.add(int(out[i]))
        return out

    def swap_in(self, slots: np.ndarray) -> None:
        self.swap_free(slots)

    def swap_free(self, slots: np.ndarray) -> None:
        for s in np.asarray(slots).tolist():
            self.used.remove(s)
            self.free.append(s)

    def nr_free_slots(self) -> int:
        return len(self.free)

    def nr_slots(self) -> int:
        return self.slots


def machine(pages: int = 16384, **kw: object) -> Machine:
    m = Machine(f"flat:{pages}", nr_cpus=1, config_thp=False, debug=True, **kw)
    return m


def counters(m: Machine) -> dict[str, int]:
    return vmstat.vmstat_counters(m)


def test_lru_lists_follow_allocation_access_and_free() -> None:
    m = machine()
    pc = PageCache(m)
    f = pc.create(100)
    assert pc.read(f) == 0
    v = counters(m)
    assert v["nr_inactive_file"] == 100 and v["nr_active_file"] == 0
    assert v["nr_file_pages"] == 100 and v["pgpgin"] == 400
    # the first access after the read marks referenced, the second activates
    pc.read(f, 0, 10)
    pfns = m.handles[pc.files[f][:10]]
    assert (m.state.flags[pfns] & PG_referenced).all()
    assert counters(m)["nr_active_file"] == 0
    pc.read(f, 0, 10)
    v = counters(m)
    assert v["nr_active_file"] == 10 and v["nr_inactive_file"] == 90 and v["pgactivate"] == 10
    assert not (m.state.flags[pfns] & PG_referenced).any()
    assert (m.state.flags[pfns] & PG_active).all()
    assert m.lruvecs[0].nonresident_age == 10  # workingset_activation
    zi = vmstat.zoneinfo(m)
    assert "nr_zone_active_file 10" in zi and "nr_active_file 10" in zi
    pc.delete(f)
    v = counters(m)
    assert v["nr_inactive_file"] == v["nr_active_file"] == v["nr_file_pages"] == 0


def test_lru_pages_stay_on_their_lists_through_compaction() -> None:
    m = machine()
    pr = Processes(m, oom_killer=False)
    pc = PageCache(m)
    pids = [pr.spawn("p", 300) for _ in range(20)]
    files = [pc.create(200) for _ in range(20)]
    for f in files:
        pc.read(f)
    for pid in pids[::2]:
        pr.exit(pid)
    for f in files[::2]:
        pc.delete(f)
    before = {k: counters(m)[k] for k in vmstat.NODE_STATS_IN_STATE}
    m.compact_memory()
    assert counters(m)["pgmigrate_success"] > 0
    after = {k: counters(m)[k] for k in vmstat.NODE_STATS_IN_STATE}
    assert after == before
    for pid in pids[1::2]:
        assert pr.rss(pid) == (300, 0)  # every handle still points at a resident page


def fill_with_cache(m: Machine, pc: PageCache, pages: int) -> int:
    f = pc.create(pages)
    for start in range(0, pages, 512):
        pc.read(f, start, min(512, pages - start))
    return f


def test_kswapd_reclaims_clean_page_cache_to_the_high_watermark() -> None:
    m = machine()
    pc = PageCache(m)
    z = m.zone_id(0, "Normal")
    high = int(m.state.zs[z, I.ZF_WMARK_HIGH])
    f = fill_with_cache(m, pc, 20000)
    v = counters(m)
    assert v["pgsteal_kswapd"] > 0 and v["pgscan_kswapd"] >= v["pgsteal_kswapd"]
    assert v["pageoutrun"] >= 1
    assert v["pgsteal_file"] == v["pgsteal_kswapd"] + v["pgsteal_direct"]
    assert m.state.zs[z, I.ZF_NR_FREE_PAGES] >= high - 512  # a batch's worth below high
    # the oldest pages were evicted (the file was read front to back), with shadow entries
    cached = pc.cached(f)
    assert not cached[0] and cached[-1]
    evicted = pc.files[f][~cached]
    assert (m.shadow[evicted] >= 0).all()
    assert v["nr_file_pages"] == int(cached.sum())


def test_refault_of_a_recently_evicted_page_activates_it() -> None:
    m = machine()
    pc = PageCache(m)
    f = fill_with_cache(m, pc, 20000)
    cached = pc.cached(f)
    first_gone = int(np.flatnonzero(~cached)[-1])  # the most recently evicted page
    pc.read(f, first_gone, 1)
    v = counters(m)
    assert v["workingset_refault_file"] == 1
    assert v["workingset_activate_file"] + 0 <= 1
    # refault distance: pages evicted after it (none) <= the workingset: activated
    assert v["workingset_activate_file"] == 1
    assert m.state.flags[m.handles[pc.files[f][first_gone]]] & PG_active


def test_anon_pages_need_swap() -> None:
    m = machine()
    pr = Processes(m, oom_killer=False)
    pid = pr.spawn("big", 0)
    failed = pr.fault(pid, 18000)
    v = counters(m)
    assert v["pswpout"] == 0 and v["pgsteal_anon"] == 0  # nowhere to put them
    assert pr.rss(pid) == (18000 - failed, 0) and failed > 1500
    assert v["pgscan_anon"] == 0  # get_scan_count: SCAN_FILE without swap


def test_swap_out_and_in_with_refault_accounting() -> None:
    m = machine()
    m.swapon(RamSwap(20000))
    pr = Processes(m, oom_killer=False)
    pid = pr.spawn("big", 0)
    for _ in range(36):
        pr.fault(pid, 500)
    v = counters(m)
    rss, swapped = pr.rss(pid)
    assert swapped > 0 and v["pswpout"] == swapped == v["pgsteal_anon"]
    assert rss + swapped == 18000
    hs = pr.procs[pid].anon
    out = hs[m.handles[hs] < 0]
    assert (m.swap_entry[out] >= 0).all() and (m.shadow[out] >= 0).all()
    assert len(m.swap.used) == swapped
    # touch the first 100 pages: they come back from swap
    gone = int(np.count_nonzero(m.handles[hs[:100]] < 0))
    assert gone == 100
    assert pr.touch(pid, 0, 100) == 0
    v = counters(m)
    assert v["pswpin"] == 100 and v["workingset_refault_anon"] == 100
    assert (m.swap_entry[hs[:100]] == -1).all()
    pr.exit(pid)
    assert not m.swap.used  # exit freed every slot
    assert counters(m)["nr_anon_pages"] == 0


def test_swappiness_zero_prefers_file_pages() -> None:
    def run(swappiness: int) -> dict[str, int]:
        m = machine()
        m.sysctl("vm.swappiness", swappiness)
        m.swapon(RamSwap(20000))
        pr = Processes(m, oom_killer=False)
        pc = PageCache(m)
        pid = pr.spawn("app", 0)
        pr.fault(pid, 6000)
        f = pc.create(14000)
        for start in range(0, 14000, 500):  # each chunk read three times: the cache is
            for _ in range(3):  # active, so reclaim is not in cache-trim mode
                pc.read(f, start, 500)
        return counters(m)

    lazy, eager = run(0), run(200)
    assert lazy["pgsteal_file"] > 0
    assert lazy["pswpout"] < eager["pswpout"]
    with pytest.raises(ConfigError, match="swappiness"):
        machine().sysctl("vm.swappiness", 201)


def test_dirty_pages_are_written_back_then_rotated_and_reclaimed() -> None:
    m = machine()
    pc = PageCache(m)
    f = pc.create(2000)
    pc.write(f)
    pfns = m.handles[pc.files[f]]
    assert (m.state.flags[pfns] & PG_dirty).all()
    assert counters(m)["nr_dirty"] == 2000 and counters(m)["nr_dirtied"] == 2000
    # reclaim meets dirty pages: PG_reclaim and activated, nothing freed
    sc = vmscan.ScanControl(gfp_mask=GFP_KERNEL, order=0, reclaim_idx=m.nr_zone_types - 1)
    got = vmscan.shrink_inactive_list(m, 0, 32, sc, I.LRU_INACTIVE_FILE)
    assert got == 0
    tail = pfns[:32]
    assert (m.state.flags[tail] & PG_reclaim).all() and (m.state.flags[tail] & PG_active).all()
    m.advance(10**9)  # the flusher's first period: writeback of every dirty page starts
    assert counters(m)["nr_writeback"] == 2000 and counters(m)["nr_dirty"] == 0
    assert counters(m)["nr_written"] == 2000
    m.advance(3 * 10**9)  # within the flusher's 5 s period: nothing happens
    assert counters(m)["nr_writeback"] == 2000
    m.advance(6 * 10**9)  # writeback ends: the 32 reclaim wanted go to the inactive tail
    v = counters(m)
    assert v["nr_writeback"] == 0 and v["pgrotated"] == 32
    assert not (m.state.flags[tail] & (PG_reclaim | PG_active | PG_writeback)).any()
    got = vmscan.shrink_inactive_list(m, 0, 32, sc, I.LRU_INACTIVE_FILE)
    assert got == 32 and (m.handles[pc.files[f][:32]] < 0).all()


class CountingShrinker:
    seeks = 2

    def __init__(self, objects: int) -> None:
        self.objects = objects
        self.scanned: list[int] = []

    def count_objects(self, nid: int) -> int:
        return self.objects

    def scan_objects(self, nid: int, nr: int) -> int:
        self.scanned.append(nr)
        freed = min(nr, self.objects)
        self.objects -= freed
        return freed


def test_shrink_slab_scans_in_batches_and_defers_the_rest() -> None:
    m = machine()
    sh = CountingShrinker(100_000)
    m.register_shrinker(sh)
    # priority 12: delta = (100000 >> 12) * 4 / 2 = 48 < batch 128: all deferred
    vmscan.shrink_slab(m, GFP_KERNEL, 0, 12)
    assert sh.scanned == [] and m.lruvecs[0].nr_deferred == {0: 48}
    # priority 6: (48 >> 6) + (100000 >> 6) * 4 / 2 = 0 + 3124: 24 batches of 128, 52 deferred
    vmscan.shrink_slab(m, GFP_KERNEL, 0, 6)
    assert sh.scanned == [128] * 24
    assert m.lruvecs[0].nr_deferred == {0: 48 + 3124 - 24 * 128}
    assert counters(m)["slabs_scanned"] == 24 * 128
    with pytest.raises(ConfigError, match="count_objects"):
        m.register_shrinker(object())


def test_direct_reclaim_when_kswapd_cannot_keep_up() -> None:
    m = machine()
    m.daemons = False  # kswapd never runs: allocations reclaim for themselves
    pc = PageCache(m)
    fill_with_cache(m, pc, 20000)
    v = counters(m)
    stalls = sum(n for k, n in v.items() if k.startswith("allocstall_"))
    assert stalls > 0 and v["pgsteal_direct"] > 0 and v["pgsteal_kswapd"] == 0


def test_processes_hold_stacks_and_page_tables() -> None:
    m = machine()
    pr = Processes(m, oom_killer=False)
    pid = pr.spawn("p", 1000)
    v = counters(m)
    assert v["nr_kernel_stack"] == 16  # KiB
    assert v["nr_page_table_pages"] == 1 + 2  # PGD + two PTE pages for 1000 pages
    assert v["nr_anon_pages"] == 1000 and v["nr_inactive_anon"] == 1000
    pr.unmap(pid, 600)
    assert counters(m)["nr_page_table_pages"] == 2 and counters(m)["nr_anon_pages"] == 400
    pr.exit(pid)
    v = counters(m)
    assert v["nr_kernel_stack"] == 0 and v["nr_page_table_pages"] == 0
    assert v["nr_anon_pages"] == 0
    nostack = Processes(m, thread_size=16384, vmap_stack=False, oom_killer=False)
    pid = nostack.spawn("q")
    assert m.state.order[nostack.pfns(nostack.procs[pid].stack)].tolist() == [2]


def test_oom_killer_frees_the_biggest_process() -> None:
    m = machine()
    pr = Processes(m)
    small = pr.spawn("small", 1000)
    big = pr.spawn("big", 9000)
    pr.fault(small, 8000)  # runs out of memory: the OOM killer picks "big"
    assert counters(m)["oom_kill"] >= 1
    assert big not in pr.procs and small in pr.procs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(
                ["spawn", "fault", "touch", "exit", "read", "write", "del", "advance", "compact"]
            ),
            st.integers(0, 3000),
        ),
        max_size=30,
    )
)
def test_random_workload_keeps_every_page_accounted(ops: list[tuple[str, int]]) -> None:
    m = machine(8192)
    m.swapon(RamSwap(4000))
    pr = Processes(m)
    pc = PageCache(m)
    now = 0
    for op, n in ops:
        pids = sorted(pr.procs)
        if op == "spawn":
            pr.spawn("t", n)
        elif op == "fault" and pids:
            pr.fault(pids[n % len(pids)], n)
        elif op == "touch" and pids:
            pr.touch(pids[n % len(pids)])
        elif op == "exit" and pids:
            pr.exit(pids[n % len(pids)])
        elif op in ("read", "write"):
            f = pc.create(n)
            getattr(pc, op)(f)
        elif op == "del" and pc.files:
            pc.delete(sorted(pc.files)[n % len(pc.files)])
        elif op == "advance":
            now += 10**9
            m.advance(now)
        elif op == "compact":
            m.compact_memory()
        check_invariants(m)
        # each process page is resident, or swapped out with a slot, never both
        for p in pr.procs.values():
            res = m.handles[p.anon] >= 0
            sw = m.swap_entry[p.anon] >= 0
            assert not (res & sw).any()
        used = sum(int(np.count_nonzero(m.swap_entry[p.anon] >= 0)) for p in pr.procs.values())
        assert used == len(m.swap.used)
        lru = sum(int(m.state.zs[:, I.ZF_NR_LRU + i].sum()) for i in range(I.NR_LRU_LISTS))
        assert lru == int(np.count_nonzero(m.state.flags & PG_lru))
