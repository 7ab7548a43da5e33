"""kswapd's control flow. Models kswapd(), balance_pgdat() and kswapd_try_to_sleep() of
mm/vmscan.c (Linux 6.1.192) around a reclaim hook: how kswapd is woken (wakeup_kswapd() lives in
fragsim/mm/page_alloc.py, compiled), how it decides the node is balanced, how it drops the
watermark boost and wakes kcompactd, and kswapd_failures.

SIMPLIFICATION: the page reclaim itself (shrink_node: LRU scanning, swap, writeback) is the
``kswapd_reclaim`` hook of ``Machine.hooks``, which the reclaim issue provides; without it
kswapd reclaims nothing, and a node it cannot balance counts a kswapd failure per run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fragsim.mm import compaction
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = ["balance_pgdat", "kswapd", "prepare_kswapd_sleep"]

DEF_PRIORITY = 12


def balance_pgdat(m: Machine, nid: int, order: int, highest_zoneidx: int) -> int:
    """balance_pgdat() (6.1): reclaim at falling priorities (DEF_PRIORITY .. 1) until the node
    is balanced for the order; a boosted watermark makes kswapd reclaim the boost even when
    balanced (and restart without it when that is not enough). Afterwards the boosts taken at
    the start are removed and kcompactd is woken for pageblock_order; a run that reclaimed
    nothing counts a kswapd failure. Once twice the request (compact_gap) is reclaimed, the
    order drops to 0 (kswapd_shrink_node: compaction will do the rest). Returns that order."""
    st = m.state
    nzt = m.nr_zone_types
    zones = [nid * nzt + i for i in range(highest_zoneidx + 1)]
    boosts = {z: int(st.zs[z, I.ZF_BOOST]) for z in zones if st.zs[z, I.ZF_MANAGED]}
    nr_boost_reclaim = sum(boosts.values())
    boosted = nr_boost_reclaim > 0
    reclaimed = 0
    hook = m.hooks.kswapd_reclaim
    priority = DEF_PRIORITY
    while priority >= 1:
        balanced = pa.pgdat_balanced(st, nid, order, highest_zoneidx)
        if not balanced and nr_boost_reclaim:
            nr_boost_reclaim = 0  # restart without boost reclaim
            priority = DEF_PRIORITY
            continue
        if not nr_boost_reclaim and balanced:
            break
        got = hook(m, nid, order, highest_zoneidx) if hook is not None else 0
        reclaimed += got
        if order and reclaimed >= 2 << order:
            order = 0
        if nr_boost_reclaim:
            nr_boost_reclaim -= min(nr_boost_reclaim, got)
            if not nr_boost_reclaim:
                break
        if not got:
            priority -= 1
    else:
        if not reclaimed:
            st.nd[nid, I.ND_KSWAPD_FAILURES] += 1
    if reclaimed:
        st.nd[nid, I.ND_KSWAPD_FAILURES] = 0
    if boosted:
        for z, b in boosts.items():
            if b:
                st.zs[z, I.ZF_BOOST] -= min(int(st.zs[z, I.ZF_BOOST]), b)
        pa.wakeup_kcompactd(st, nid, m.pageblock_order, highest_zoneidx)
    return order


def prepare_kswapd_sleep(m: Machine, nid: int, order: int, highest_zoneidx: int) -> bool:
    """prepare_kswapd_sleep() (6.1): a hopeless node, or a balanced one."""
    st = m.state
    if st.nd[nid, I.ND_KSWAPD_FAILURES] >= pa.MAX_RECLAIM_RETRIES:
        return True
    return bool(pa.pgdat_balanced(st, nid, order, highest_zoneidx))


def kswapd(m: Machine, nid: int) -> None:
    """One wake-up of kswapd() (6.1): take the requested order and highest zone, reset them,
    balance_pgdat(); then kswapd_try_to_sleep(): if balance_pgdat dropped to order 0 after
    reclaiming, try to sleep with the allocation's order, else (the loop's next round, the
    order read back as 0) with order 0; a node that can sleep has the skip bits of a finished
    direct compaction flushed (reset_isolation_suitable) and kcompactd woken for that order."""
    st = m.state
    st.nd[nid, I.ND_KSWAPD_AWAKE] = 0
    order = max(int(st.nd[nid, I.ND_KSWAPD_ORDER]), 0)
    hz = int(st.nd[nid, I.ND_KSWAPD_HIGHEST_ZONEIDX])
    if hz < 0:
        hz = m.nr_zone_types - 1
    st.nd[nid, I.ND_KSWAPD_ORDER] = 0
    st.nd[nid, I.ND_KSWAPD_HIGHEST_ZONEIDX] = -1
    reclaim_order = balance_pgdat(m, nid, order, hz)
    alloc_order = order
    if reclaim_order >= alloc_order:
        alloc_order = reclaim_order = 0
    if prepare_kswapd_sleep(m, nid, reclaim_order, hz):
        compaction.reset_isolation_suitable(m, nid)
        pa.wakeup_kcompactd(st, nid, alloc_order, hz)
