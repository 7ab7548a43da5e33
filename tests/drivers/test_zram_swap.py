"""zram as the machine's swap: reclaim writes anonymous pages to it (their zsmalloc pages are
allocated from reclaim, under PF_MEMALLOC), page faults read them back, and the pool's pages are
movable pages compaction can move."""

from __future__ import annotations

import numpy as np

from fragsim.drivers.process import Processes
from fragsim.drivers.zram import Zram
from fragsim.mm import vmstat
from fragsim.mm.machine import Machine
from fragsim.mm.page import PG_movable


def test_reclaim_swaps_to_zram_and_faults_read_back() -> None:
    m = Machine("flat:16384", nr_cpus=1, config_thp=False, debug=True)
    zram = Zram(m, disksize=32 << 20, compression="typical")
    m.swapon(zram)
    pr = Processes(m, oom_killer=False)
    pid = pr.spawn("app")
    for _ in range(40):
        pr.fault(pid, 500)
    v = vmstat.vmstat_counters(m)
    rss, swapped = pr.rss(pid)
    assert swapped > 0 and v["pswpout"] == swapped
    assert zram.pages_stored == swapped
    fields = zram.mm_stat().split()
    assert int(fields[0]) == swapped * 4096  # orig_data_size
    pool_pages = zram.mem_pool.zs_get_total_pages()
    assert 0 < pool_pages < swapped  # compressed: fewer pages than it stores
    assert v["nr_zspages"] == pool_pages
    # the pool's pages are movable (zsmalloc registers its ops on each)
    hs = np.array(sorted(zram.mem_pool._subpage), np.int64)
    assert (m.state.flags[m.handles[hs]] & PG_movable).all()
    # every swapped-out page comes back when touched
    pr.touch(pid)
    v2 = vmstat.vmstat_counters(m)
    assert v2["pswpin"] >= swapped - pr.rss(pid)[1]
    rss2, swapped2 = pr.rss(pid)
    assert zram.pages_stored == swapped2
    pr.exit(pid)
    assert zram.pages_stored == 0 and zram.mem_pool.zs_get_total_pages() == 0


def test_oom_kill_during_its_own_swap_in_leaves_no_handle_twice() -> None:
    """A process whose swap-in runs the machine out of memory is the OOM killer's victim while
    the batch that reads its pages is still filling their handles: exit() must leave those
    handles to the swap-in (they are not free while the batch writes pages into them), which
    frees them and their slots afterwards. (Before: exit() released them, zsmalloc reused them
    for its pages, and a swap slot ended up on a zsmalloc page's handle.)"""
    m = Machine("flat:8192", nr_cpus=1, config_thp=False, debug=True)
    m.daemons = False
    zram = Zram(m, disksize=64 << 20, compression="typical")
    m.swapon(zram)
    pr = Processes(m)
    a = pr.spawn("big")
    for _ in range(20):
        pr.fault(a, 500)
    assert pr.rss(a)[1] > 3000  # much of it swapped out
    b = pr.spawn("small", 3000)
    assert b > 0 and a in pr.procs
    pr.touch(a)  # reading 10000 pages back into 32 MiB: the OOM killer takes a
    assert a not in pr.procs and vmstat.vmstat_counters(m)["oom_kill"] >= 1
    live = np.concatenate([np.zeros(0, np.int64), *(p.anon for p in pr.procs.values())])
    held = np.flatnonzero(m.swap_entry[: m.handles.shape[0]] >= 0)
    assert set(held.tolist()) <= set(live.tolist())  # every slot is a live process's page
    assert zram.pages_stored == sum(pr.rss(p)[1] for p in pr.procs)
    zram.mem_pool.check()
