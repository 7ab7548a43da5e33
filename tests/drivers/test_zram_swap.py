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
