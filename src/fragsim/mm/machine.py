"""A booted simulated machine: memory init, watermark set-up, and the page allocator's API.
Models mm/mm_init.c-era boot (free_area_init, memmap_init, memblock_free_all), the watermark
set-up of mm/page_alloc.c (init_per_zone_wmark_min, __setup_per_zone_wmarks,
setup_per_zone_lowmem_reserve, zone_batchsize, zone_highsize), khugepaged's
set_recommended_min_free_kbytes and __alloc_pages_slowpath (Linux 6.1.192).

``Machine`` owns one ``State`` (fragsim/mm/internal.py). The compiled allocator
(fragsim/mm/page_alloc.py) runs the fast path over batches of events; an allocation it cannot
satisfy comes back here and runs the slow path's stages in the kernel's order, with direct
compaction (fragsim/mm/compaction.py). Page reclaim and the OOM killer plug in through
``Machine.hooks``; until they exist reclaim makes no progress. The daemons a batch woke (kswapd,
kcompactd) run after it (``run_daemons``); ``advance`` moves the simulated clock.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm import compaction as c
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm import vmscan, vmstat
from fragsim.mm._numba import njit
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import GFP, GFP_HIGHUSER_MOVABLE, GFP_USER, gfp_migratetype
from fragsim.mm.mmzone import (
    MAX_ORDER,
    MIGRATE_CMA,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    PAGE_ALLOC_COSTLY_ORDER,
)
from fragsim.mm.page import Page, PG_nopage, PG_reserved
from fragsim.profiles import MachineProfile, kernel_profile, machine_profile

__all__ = ["GFP_CLASSES", "Machine", "SlowpathHooks", "gfp_class"]

NO_PAGE = -1
MEM_MAP_DTYPE = np.dtype(
    [
        ("flags", np.int32),
        ("refcount", np.int32),
        ("owner", np.int32),
        ("order", np.int8),
        ("pcpmt", np.int8),
        ("zoneid", np.int8),
        ("mops", np.int8),
    ]
)
# Names starting with two underscores are mangled inside a class body: alias the bits used there.
GFP_F_ATOMIC = GFP["__GFP_ATOMIC"]
GFP_F_DIRECT_RECLAIM = GFP["__GFP_DIRECT_RECLAIM"]
GFP_F_HIGH = GFP["__GFP_HIGH"]
GFP_F_IO = GFP["__GFP_IO"]
GFP_F_KSWAPD_RECLAIM = GFP["__GFP_KSWAPD_RECLAIM"]
GFP_F_MEMALLOC = GFP["__GFP_MEMALLOC"]
GFP_F_NOFAIL = GFP["__GFP_NOFAIL"]
GFP_F_NOMEMALLOC = GFP["__GFP_NOMEMALLOC"]
GFP_F_NORETRY = GFP["__GFP_NORETRY"]
GFP_F_RETRY_MAYFAIL = GFP["__GFP_RETRY_MAYFAIL"]
GFP_F_THISNODE = GFP["__GFP_THISNODE"]
MAX_COMPACT_RETRIES = 16  # mm/page_alloc.c
# (names with two leading underscores cannot be used inside the Machine class body)
zone_watermark_ok = getattr(pa, "__zone_watermark_ok")
_RUN_ERRORS = {
    I.RUN_EBADORDER: "invalid order",
    I.RUN_ENOTALLOC: "not an allocated block head (double free or a tail page)",
    I.RUN_EWRONGORDER: "freed with the wrong order",
    I.RUN_EOUTSIDE: "pfn outside every zone",
    I.RUN_EHANDLE: "unknown handle",
}


#: the classes allocation requests are counted by: no direct reclaim (ATOMIC, GFP_NOWAIT and
#: the like), then by mobility: KERNEL (unmovable), RECLAIMABLE, MOVABLE (user pages)
GFP_CLASSES = ("ATOMIC", "KERNEL", "RECLAIMABLE", "MOVABLE")


_GFP_DIRECT_RECLAIM = GFP["__GFP_DIRECT_RECLAIM"]
_GFP_MOVABLE = GFP["__GFP_MOVABLE"]
_GFP_RECLAIMABLE = GFP["__GFP_RECLAIMABLE"]


@njit(inline="always")
def gfp_class(gfp: int) -> int:
    """The GFP_CLASSES index of a mask."""
    if not (gfp & _GFP_DIRECT_RECLAIM):
        return 0
    if gfp & _GFP_MOVABLE:
        return 3
    return 2 if gfp & _GFP_RECLAIMABLE else 1


@njit
def count_requests(ev: Any, out: Any, attempts: Any, failures: Any) -> None:
    """Count a batch's allocation requests and failures by GFP class and order, in one pass
    over its rows (compiled: NumPy column passes over a big batch cost 0.28 s per 10 M rows,
    this 0.05 s). Its only outside constants come from internal.py and gfp.py, which key the
    numba cache (_numba.COMPILED_SOURCES); numba itself tracks this file's source."""
    for i in range(ev.shape[0]):
        if ev[i, I.EV_OP] != I.OP_ALLOC:
            continue
        c = gfp_class(ev[i, I.EV_GFP])
        o = ev[i, I.EV_ORDER]
        attempts[c, o] += 1
        if out[i] < 0:
            failures[c, o] += 1


@dataclass(slots=True)
class SlowpathHooks:
    """The slow path's reclaim stages, replaceable. Each gets the machine and the request;
    ``Machine`` starts with fragsim/mm/vmscan.py's direct reclaim and reclaimable-page estimate,
    no OOM killer (a memory user that can kill processes installs one) and kswapd's own
    kswapd_shrink_node (a ``kswapd_reclaim`` hook replaces it). None disables a stage.

    * ``direct_reclaim(machine, gfp, order, nid) -> pages reclaimed`` (try_to_free_pages)
    * ``zone_reclaimable_pages(machine, z) -> pages`` (should_reclaim_retry's estimate)
    * ``oom_kill(machine, gfp, order) -> True`` if it freed memory (out_of_memory)
    * ``kswapd_reclaim(machine, nid, order, highest_zoneidx) -> pages reclaimed`` (replaces
      the reclaim part of balance_pgdat)
    """

    direct_reclaim: Callable[..., int] | None = None
    zone_reclaimable_pages: Callable[..., int] | None = None
    oom_kill: Callable[..., bool] | None = None
    kswapd_reclaim: Callable[..., int] | None = None


class Machine:
    """One simulated machine: its profile, its memory state and its page allocator."""

    def __init__(
        self,
        profile: MachineProfile | str = "x86_64-1g",
        *,
        debug: bool | None = None,
        seed: int = 0,
        **overrides: Any,
    ) -> None:
        if isinstance(profile, str):
            profile = machine_profile(profile, **overrides)
        elif overrides:
            profile = profile.with_(**overrides)
        self.kernel = kernel_profile(profile.kernel)
        self.profile = profile
        self.hooks = SlowpathHooks(
            direct_reclaim=vmscan.try_to_free_pages,
            zone_reclaimable_pages=vmscan.zone_reclaimable_pages,
        )
        #: sysctl vm.swappiness and vm.vfs_cache_pressure (defaults 60 and 100)
        self.swappiness = 60
        self.vfs_cache_pressure = 100
        self.tracer: Any = None  # a fragsim.mm.trace.Tracer once attached
        #: the debug switch: check every invariant after each batch (fragsim/mm/debug.py);
        #: default from the environment variable FRAGSIM_DEBUG
        self.debug = bool(os.environ.get("FRAGSIM_DEBUG")) if debug is None else debug
        self.nr_zone_types = len(profile.zone_types)
        self.nr_nodes = len(profile.nodes)
        self.nr_cpus = profile.nr_cpus
        self.pageblock_order = profile.pageblock_order
        self.user_min_free_kbytes = profile.min_free_kbytes
        self.min_free_kbytes = 0
        self.page_group_by_mobility_disabled = False
        self.allocstall = [0] * self.nr_zone_types  # ALLOCSTALL by zone index (vm_event)
        #: handle -> pfn of the block allocated under it (-1: none); the caller's table given to
        #: ``run`` replaces it. Migration updates it, as the kernel's rmap walk updates PTEs.
        self.handles: npt.NDArray[np.int32] = np.full(1, NO_PAGE, np.int32)
        #: what replaces a page reclaim evicted, per handle (-1: none): the workingset shadow
        #: entry (fragsim/mm/workingset.py) and, for an anonymous page, its swap slot (the PTE's
        #: swap entry); the owner reads them when the page faults back in
        self.shadow: npt.NDArray[np.int64] = np.full(1, -1, np.int64)
        self.swap_entry: npt.NDArray[np.int64] = np.full(1, -1, np.int64)
        #: the movable_operations of non-LRU movable pages: State.mops[pfn] - 1 indexes it
        self.movable_ops: list[Any] = []
        self.seed = seed
        #: run kswapd and kcompactd after each batch that woke them (fragsim/mm/vmscan.py)
        self.daemons = True
        self._depth = 0
        self._next_handle = 0
        #: handles given back with release_handles(), reused first by alloc_handles()
        self._free_handles: list[npt.NDArray[np.int64]] = []
        self._handle_released = np.zeros(1, bool)  # on _free_handles (a double release errs)
        #: vm events counted by Python-side code (drivers, reclaim): /proc/vmstat name -> count
        self.vm_events: Counter[str] = Counter()
        #: node_stat_item gauges kept by Python-side code, per node: name -> pages
        self.node_stat: list[Counter[str]] = [Counter() for _ in range(self.nr_nodes)]
        #: zone_stat_item gauges kept by Python-side code, per zone id: name -> pages
        self.zone_stat: list[Counter[str]] = []
        #: event rows processed by run() (all callers), and allocation requests and failures
        #: by GFP class (GFP_CLASSES) and order
        self.nr_events = 0
        self.alloc_attempts = np.zeros((len(GFP_CLASSES), MAX_ORDER), np.int64)
        self.alloc_failures = np.zeros((len(GFP_CLASSES), MAX_ORDER), np.int64)
        #: current->flags & PF_MEMALLOC: reclaim is running (its allocations may use the
        #: reserves and never recurse into reclaim)
        self.pf_memalloc = False
        #: register_shrinker(): slab caches reclaim can shrink (fragsim/mm/vmscan.py)
        self.shrinkers: list[Any] = []
        #: register_oom_notifier(): called by out_of_memory() before the OOM killer
        self.oom_notifiers: list[Callable[[], int]] = []
        #: swapon(): the swap device anonymous pages are written to (None: no swap)
        self.swap: Any = None
        #: when the flusher next runs (vmscan.writeback)
        self.next_writeback_ns = 0
        #: each node's lruvec reclaim state (costs, non-resident age: fragsim/mm/vmscan.py)
        self.lruvecs = [vmscan.Lruvec() for _ in range(self.nr_nodes)]
        self._build()
        self.zone_stat = [Counter() for _ in range(self.state.zs.shape[0])]
        self._boot()

    # ------------------------------------------------------------------ layout and arrays
    def zone_index(self, name: str) -> int:
        """The index of a configured zone type in a node (zone_idx())."""
        try:
            return self.profile.zone_types.index(name)
        except ValueError:
            return -1

    def zone_id(self, nid: int, name: str) -> int:
        return nid * self.nr_zone_types + self.zone_index(name)

    def zone_name(self, z: int) -> str:
        return self.profile.zone_types[z % self.nr_zone_types]

    def nr_zones(self, nid: int) -> int:
        """pgdat->nr_zones: one more than the index of the node's highest populated zone."""
        spans = [
            self.zone_index(z.name)
            for z in self.profile.nodes[nid].zones
            if z.end_pfn > z.start_pfn
        ]
        return max(spans, default=-1) + 1

    def populated_zones(self) -> list[int]:
        return [z for z in range(self.state.zs.shape[0]) if self.state.zs[z, I.ZF_MANAGED] > 0]

    def _build(self) -> None:
        p = self.profile
        npfn = p.max_pfn
        npfn = -(-npfn // (1 << p.pageblock_order)) * (1 << p.pageblock_order)
        self.max_pfn = npfn
        nz = self.nr_nodes * self.nr_zone_types
        nr_pcp_lists = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1) + (2 if p.config_thp else 0)
        free_sent = npfn
        pcp_sent = free_sent + nz * MAX_ORDER * MIGRATE_TYPES
        aux_sent = pcp_sent + nz * self.nr_cpus * nr_pcp_lists
        lru_sent = aux_sent + I.NR_AUX_LISTS
        nlinks = lru_sent + self.nr_nodes * I.NR_LRU_LISTS
        # page->lru: next and prev of a pfn share a cache line (a (nlinks, 2) array, two views)
        links = np.full((nlinks, 2), -1, np.int32)
        nxt, prv = links[:, 0], links[:, 1]
        heads = np.arange(free_sent, nlinks, dtype=np.int32)
        nxt[free_sent:] = heads
        prv[free_sent:] = heads
        zs = np.zeros((nz, I.NR_ZF), np.int64)
        # struct page: the other per-pfn fields of one page are one 16-byte record, so a page
        # touched at random costs one cache miss, not one per field (design/performance.md)
        mem_map = np.zeros(npfn, MEM_MAP_DTYPE)
        mem_map["flags"] = PG_reserved
        mem_map["refcount"] = 1
        mem_map["owner"] = -1
        mem_map["zoneid"] = -1
        zoneid = mem_map["zoneid"]
        for nid, node in enumerate(p.nodes):
            for zi in range(self.nr_zone_types):
                z = nid * self.nr_zone_types + zi
                zs[z, I.ZF_NODE] = nid
                zs[z, I.ZF_ZIDX] = zi
                zs[z, I.ZF_FREE_SENT] = free_sent + z * MAX_ORDER * MIGRATE_TYPES
                zs[z, I.ZF_PCP_SENT] = pcp_sent + z * self.nr_cpus * nr_pcp_lists
            for spec in node.zones:
                z = self.zone_id(nid, spec.name)
                zs[z, I.ZF_START] = spec.start_pfn
                zs[z, I.ZF_END] = spec.end_pfn
                zs[z, I.ZF_SPANNED] = spec.end_pfn - spec.start_pfn
                zoneid[spec.start_pfn : spec.end_pfn] = z
        # zonelists: for each node and highest zone index, the populated zones from that index
        # down, local node first, then the other nodes in id order (build_zonelists).
        zl = np.full((self.nr_nodes, self.nr_zone_types, nz + 1), -1, np.int32)
        for nid in range(self.nr_nodes):
            order = [nid] + [n for n in range(self.nr_nodes) if n != nid]
            for hz in range(self.nr_zone_types):
                lst = [
                    n * self.nr_zone_types + zi
                    for n in order
                    for zi in range(hz, -1, -1)
                    if zs[n * self.nr_zone_types + zi, I.ZF_SPANNED] > 0
                ]
                zl[nid, hz, : len(lst)] = lst
        prm = np.zeros(I.NR_P, np.int64)
        prm[I.P_PAGEBLOCK_ORDER] = p.pageblock_order
        prm[I.P_NR_CPUS] = self.nr_cpus
        k = self.kernel
        prm[I.P_PCP_THP] = 1 if (p.config_thp and k.pcp_high_order) else 0
        prm[I.P_PCP_MAX_ORDER] = PAGE_ALLOC_COSTLY_ORDER if k.pcp_high_order else 0
        prm[I.P_BOOST_FACTOR] = p.watermark_boost_factor if k.watermark_boost else 0
        prm[I.P_CONFIG_CMA] = 1 if p.config_cma else 0
        prm[I.P_NR_ONLINE_NODES] = self.nr_nodes
        prm[I.P_ZONE_DMA32] = 1 if (p.config_zone_dma32 and k.alloc_nofragment) else 0
        prm[I.P_ZONE_NORMAL_IDX] = self.zone_index("Normal")
        prm[I.P_ZONE_DMA32_IDX] = self.zone_index("DMA32")
        prm[I.P_NR_PCP_LISTS] = nr_pcp_lists
        prm[I.P_PCP_BATCH_SCALE_MAX] = p.pcp_batch_scale_max
        prm[I.P_NR_ZONE_TYPES] = self.nr_zone_types
        prm[I.P_GFPZONE : I.P_GFPZONE + 16] = self._gfp_zone_table()
        prm[I.P_AUX_SENT] = aux_sent
        prm[I.P_LRU_SENT] = lru_sent
        prm[I.P_COMPACT_UNEVICTABLE] = 1  # sysctl compact_unevictable_allowed
        prm[I.P_EXTFRAG_THRESHOLD] = 500  # sysctl extfrag_threshold
        prm[I.P_COMPACTION_PROACTIVENESS] = 20  # sysctl compaction_proactiveness
        prm[I.P_FS_MIGRATE_DIRTY] = 1  # ext4, shmem and swap have migrate_folio
        prm[I.P_CAPC_ZONE] = -1
        prm[I.P_CAPC_PAGE] = -1
        # the drivers' generator: a splitmix64 step of the seed, never 0
        prm[I.P_RNG] = ((self.seed + 0x9E3779B97F4A7C15) * 0xBF58476D1CE4E5B9 & (2**63 - 1)) | 1
        pcp = np.zeros((nz, self.nr_cpus, I.NR_PCPF), np.int64)
        pcp[:, :, I.PCP_BATCH] = 1  # boot pagesets: high 0, batch 1
        nd = np.zeros((self.nr_nodes, I.NR_NDF), np.int64)
        nd[:, I.ND_KSWAPD_ORDER] = -1
        nd[:, I.ND_KSWAPD_HIGHEST_ZONEIDX] = -1
        nd[:, I.ND_KCOMPACTD_HIGHEST_ZONEIDX] = [
            self.nr_zones(nid) - 1 for nid in range(self.nr_nodes)
        ]
        nd[:, I.ND_PROACTIVE_NEXT] = 500 * 1_000_000  # kcompactd's first timeout
        self.state = I.State(
            nxt=nxt,
            prv=prv,
            flags=mem_map["flags"],
            order=mem_map["order"],
            pcpmt=mem_map["pcpmt"],
            refcount=mem_map["refcount"],
            owner=mem_map["owner"],
            zoneid=zoneid,
            mops=mem_map["mops"],
            pb=np.full(npfn >> p.pageblock_order, MIGRATE_MOVABLE, np.uint8),
            zs=zs,
            nr_free=np.zeros((nz, MAX_ORDER), np.int64),
            pcp=pcp,
            nd=nd,
            vm=np.zeros(I.NR_VM, np.int64),
            zonelist=zl,
            prm=prm,
            tbuf=np.zeros((1, I.NR_TB), np.int64),
            drv=np.zeros((I.MAX_MOPS, I.NR_DRV), np.int64),
        )
        for nid, node in enumerate(p.nodes):
            for a, b in node.holes:
                self.state.flags[a:b] |= PG_nopage
            for a, b in node.cma:
                pbo = p.pageblock_order
                if a % (1 << pbo) or b % (1 << pbo):
                    raise ConfigError(f"profile {p.name}: CMA range {a}-{b} not pageblock aligned")
                self.state.pb[a >> pbo : b >> pbo] = MIGRATE_CMA
                for spec in node.zones:
                    if spec.start_pfn <= a < spec.end_pfn:
                        zs[self.zone_id(nid, spec.name), I.ZF_CMA_PAGES] += b - a

    def _gfp_zone_table(self) -> list[int]:
        """GFP_ZONE_TABLE (include/linux/gfp.h): zone bits -> highest usable zone index; the
        OPT_ZONE_* fallbacks map unconfigured zone types to ZONE_NORMAL."""

        def idx(name: str) -> int:
            i = self.zone_index(name)
            return i if i >= 0 else self.zone_index("Normal")

        table = []
        for bits in range(16):
            dma, highmem, dma32, movable = bits & 1, bits & 2, bits & 4, bits & 8
            if dma + (1 if highmem else 0) + (1 if dma32 else 0) > 1:
                table.append(-1)  # BAD combination
            elif dma:
                table.append(idx("DMA"))
            elif dma32:
                table.append(idx("DMA32"))
            elif highmem and movable:
                table.append(idx("Movable") if self.zone_index("Movable") >= 0 else idx("HighMem"))
            elif highmem:
                table.append(idx("HighMem"))
            else:
                table.append(idx("Normal"))
        return table

    # ------------------------------------------------------------------ boot
    def _boot(self) -> None:
        """memmap_init (all pages reserved, pageblocks MOVABLE), memblock_free_all, the
        initcalls that set watermarks and pcp sizes, then the late frees (initrd, initmem)."""
        p = self.profile
        st = self.state
        for nid, node in enumerate(p.nodes):
            keep = np.zeros(self.max_pfn, bool)
            for a, b in (*node.holes, *node.reserved, *node.late_free):
                keep[a:b] = True
            for spec in node.zones:
                z = self.zone_id(nid, spec.name)
                span = keep[spec.start_pfn : spec.end_pfn]
                holes = sum(
                    max(0, min(b, spec.end_pfn) - max(a, spec.start_pfn)) for a, b in node.holes
                )
                st.zs[z, I.ZF_PRESENT] = spec.end_pfn - spec.start_pfn - holes
                edges = np.flatnonzero(np.diff(np.r_[True, span, True].astype(np.int8)))
                for a, b in zip(edges[0::2], edges[1::2], strict=True):
                    pa.free_boot_range(st, z, spec.start_pfn + int(a), spec.start_pfn + int(b))
                    st.zs[z, I.ZF_MANAGED] += int(b - a)
        self._build_all_zonelists()
        self.init_per_zone_wmark_min()
        self.set_trace_buffer(1)
        for node in p.nodes:
            for a, b in node.late_free:
                self.free_reserved_area(a, b)

    def _build_all_zonelists(self) -> None:
        """build_all_zonelists(): mobility grouping is off when too few pages are free."""
        total = self.nr_free_zone_pages(self.gfp_zone(GFP_HIGHUSER_MOVABLE))
        # MIGRATE_TYPES as configured: CMA exists only with CONFIG_CMA
        nr_types = MIGRATE_TYPES if self.profile.config_cma else MIGRATE_TYPES - 1
        self.page_group_by_mobility_disabled = total < (1 << self.pageblock_order) * nr_types
        self.state.prm[I.P_GROUPING_DISABLED] = int(self.page_group_by_mobility_disabled)

    def free_reserved_area(self, start: int, end: int) -> None:
        """free_reserved_area(): each page un-reserved and freed (order 0, through the pcp lists),
        adding to the zone's managed pages; watermarks are not recomputed (as in the kernel)."""
        st = self.state
        st.flags[start:end] &= ~PG_reserved
        st.refcount[start:end] = 1
        st.order[start:end] = 0
        for z in np.unique(st.zoneid[start:end]):
            st.zs[int(z), I.ZF_MANAGED] += int(np.count_nonzero(st.zoneid[start:end] == z))
        ev = np.zeros((end - start, I.NR_EV), np.int64)
        ev[:, I.EV_OP] = I.OP_FREE_PFN
        ev[:, I.EV_ARG] = np.arange(start, end)
        self.run(ev)

    # ------------------------------------------------------------------ watermarks
    def gfp_zone(self, gfp: int) -> int:
        return int(self.state.prm[I.P_GFPZONE + (gfp & 0xF)])

    def nr_free_zone_pages(self, offset: int) -> int:
        """nr_free_zone_pages(): sum of max(managed - high, 0) over zones up to ``offset``."""
        zs = self.state.zs
        return sum(
            max(int(zs[z, I.ZF_MANAGED] - zs[z, I.ZF_WMARK_HIGH]), 0)
            for z in range(zs.shape[0])
            if zs[z, I.ZF_ZIDX] <= offset
        )

    def _is_highmem(self, z: int) -> bool:
        return self.zone_name(z) == "HighMem" or (
            self.zone_name(z) == "Movable" and self.zone_index("HighMem") >= 0
        )

    def calculate_min_free_kbytes(self) -> None:
        """calculate_min_free_kbytes(): int_sqrt(lowmem_kbytes * 16), clamped to [128, 262144];
        a user-set value sticks when larger."""
        lowmem_kbytes = self.nr_free_zone_pages(self.gfp_zone(GFP_USER)) * (
            self.profile.page_size >> 10
        )
        new = min(max(math.isqrt(lowmem_kbytes * 16), 128), 262144)
        user = self.user_min_free_kbytes
        self.min_free_kbytes = new if user is None or new > user else user

    def setup_per_zone_wmarks(self) -> None:
        """__setup_per_zone_wmarks() (6.1) and the pcp high/batch update that follows it."""
        zs = self.state.zs
        page_shift = int(math.log2(self.profile.page_size))
        pages_min = self.min_free_kbytes >> (page_shift - 10)
        lowmem = sum(
            int(zs[z, I.ZF_MANAGED]) for z in range(zs.shape[0]) if not self._is_highmem(z)
        )
        wsf = self.profile.watermark_scale_factor
        for z in range(zs.shape[0]):
            managed = int(zs[z, I.ZF_MANAGED])
            tmp = pages_min * managed // lowmem if lowmem else 0
            if self._is_highmem(z):
                zs[z, I.ZF_WMARK_MIN] = min(max(managed // 1024, 32), 128)
            else:
                zs[z, I.ZF_WMARK_MIN] = tmp
            delta = max(tmp >> 2, (managed // 10000) * wsf + (managed % 10000) * wsf // 10000)
            zs[z, I.ZF_BOOST] = 0
            zs[z, I.ZF_WMARK_LOW] = zs[z, I.ZF_WMARK_MIN] + delta
            zs[z, I.ZF_WMARK_HIGH] = zs[z, I.ZF_WMARK_LOW] + delta
            zs[z, I.ZF_WMARK_PROMO] = zs[z, I.ZF_WMARK_HIGH] + delta
        for z in range(zs.shape[0]):
            self.zone_set_pageset_high_and_batch(z)

    def zone_batchsize(self, z: int) -> int:
        """zone_batchsize() (6.1): ~0.1% of the zone or 1 MiB, /4, rounded to 2^n - 1."""
        batch = min(int(self.state.zs[z, I.ZF_MANAGED]) >> 10, (1 << 20) // self.profile.page_size)
        batch = max(batch // 4, 1)
        b = batch + batch // 2
        return (1 << (b.bit_length() - 1)) - 1

    def zone_highsize(self, z: int, batch: int) -> int:
        """zone_highsize() (6.1): the low watermark (or managed/high_fraction) split across the
        node's CPUs, at least 4 * batch."""
        zs = self.state.zs
        frac = self.profile.percpu_pagelist_high_fraction
        total = int(zs[z, I.ZF_MANAGED]) // frac if frac else int(zs[z, I.ZF_WMARK_LOW])
        return max(total // self.nr_cpus, batch << 2)

    def zone_set_pageset_high_and_batch(self, z: int) -> None:
        batch = max(1, self.zone_batchsize(z))
        high = self.zone_highsize(z, batch)
        self.state.zs[z, I.ZF_PCP_HIGH] = high
        self.state.zs[z, I.ZF_PCP_BATCH] = batch
        self.state.pcp[z, :, I.PCP_HIGH] = high
        self.state.pcp[z, :, I.PCP_BATCH] = batch

    def setup_per_zone_lowmem_reserve(self) -> None:
        """setup_per_zone_lowmem_reserve(): lowmem_reserve[j] = managed(i+1..j) / ratio[i]."""
        zs = self.state.zs
        ratios = self.profile.lowmem_reserve_ratio
        nzt = self.nr_zone_types
        for nid in range(self.nr_nodes):
            for i in range(nzt - 1):
                z = nid * nzt + i
                ratio = ratios[i] if i < len(ratios) else 0
                clear = ratio == 0 or zs[z, I.ZF_MANAGED] == 0
                managed = 0
                for j in range(i + 1, nzt):
                    managed += int(zs[nid * nzt + j, I.ZF_MANAGED])
                    zs[z, I.ZF_LOWMEM_RESERVE + j] = 0 if clear else managed // ratio

    def set_recommended_min_free_kbytes(self) -> None:
        """set_recommended_min_free_kbytes() (mm/khugepaged.c, 6.1), run when THP is enabled."""
        user_zone = self.gfp_zone(GFP_USER)
        nr_zones = sum(
            1
            for z in range(self.state.zs.shape[0])
            if self.state.zs[z, I.ZF_MANAGED] > 0 and self.state.zs[z, I.ZF_ZIDX] <= user_zone
        )
        nr = 1 << self.pageblock_order
        rec = nr * nr_zones * 2 + nr * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
        rec = min(rec, self.nr_free_zone_pages(user_zone) // 20)
        rec <<= int(math.log2(self.profile.page_size)) - 10
        if rec > self.min_free_kbytes:
            self.min_free_kbytes = rec
        self.setup_per_zone_wmarks()

    def init_per_zone_wmark_min(self) -> None:
        """init_per_zone_wmark_min() (postcore_initcall) and khugepaged's update after it."""
        self.calculate_min_free_kbytes()
        self.setup_per_zone_wmarks()
        self.setup_per_zone_lowmem_reserve()
        if self.profile.config_thp and self.user_min_free_kbytes is None:
            self.set_recommended_min_free_kbytes()

    def set_min_free_kbytes(self, kbytes: int) -> None:
        """Write /proc/sys/vm/min_free_kbytes (min_free_kbytes_sysctl_handler)."""
        if kbytes < 0:
            raise ConfigError(f"min_free_kbytes: {kbytes} is below 0")
        self.user_min_free_kbytes = kbytes
        self.min_free_kbytes = kbytes
        self.setup_per_zone_wmarks()

    # ------------------------------------------------------------------ sysctls
    #: /proc/sys/vm tunables fragsim models: name -> (min, max) as the kernel's sysctl table
    #: (kernel/sysctl.c, mm/*.c, 6.1) bounds them
    SYSCTLS = {
        "min_free_kbytes": (0, 2**31 - 1),
        "watermark_boost_factor": (0, 2**31 - 1),
        "watermark_scale_factor": (1, 3000),
        "extfrag_threshold": (0, 1000),
        "compact_unevictable_allowed": (0, 1),
        "compaction_proactiveness": (0, 100),
        "swappiness": (0, 200),
        "vfs_cache_pressure": (0, 2**31 - 1),
    }

    def sysctl(self, name: str, value: int | None = None) -> int:
        """Read or write a vm sysctl by its name (``vm.extfrag_threshold``,
        ``/proc/sys/vm/extfrag_threshold`` or ``extfrag_threshold``), with the kernel's bounds
        and side effects (a watermark tunable recomputes the watermarks). Returns the value."""
        key = name.removeprefix("/proc/sys/vm/").removeprefix("vm.")
        if key not in self.SYSCTLS:
            raise ConfigError(f"sysctl {name!r}: unknown; known: vm.{', vm.'.join(self.SYSCTLS)}")
        prm = self.state.prm
        if value is not None:
            lo, hi = self.SYSCTLS[key]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ConfigError(f"sysctl vm.{key}: {value!r} is not an integer in [{lo}, {hi}]")
            if key == "min_free_kbytes":
                self.set_min_free_kbytes(value)
            elif key == "watermark_boost_factor":
                self.profile = self.profile.with_(watermark_boost_factor=value)
                prm[I.P_BOOST_FACTOR] = value if self.kernel.watermark_boost else 0
            elif key == "watermark_scale_factor":
                self.profile = self.profile.with_(watermark_scale_factor=value)
                self.setup_per_zone_wmarks()
            elif key in ("swappiness", "vfs_cache_pressure"):
                setattr(self, key, value)
            else:
                prm[self._SYSCTL_PRM[key]] = value
            if key == "compaction_proactiveness" and value:
                # compaction_proactiveness_sysctl_handler(): kcompactd checks right away
                for nid in range(self.nr_nodes):
                    c.kcompactd(self, nid, int(prm[I.P_NOW]), trigger=True)
        if key == "min_free_kbytes":
            return self.min_free_kbytes
        if key in ("swappiness", "vfs_cache_pressure"):
            return int(getattr(self, key))
        if key in ("watermark_boost_factor", "watermark_scale_factor"):
            return int(getattr(self.profile, key))
        return int(prm[self._SYSCTL_PRM[key]])

    _SYSCTL_PRM = {
        "extfrag_threshold": I.P_EXTFRAG_THRESHOLD,
        "compact_unevictable_allowed": I.P_COMPACT_UNEVICTABLE,
        "compaction_proactiveness": I.P_COMPACTION_PROACTIVENESS,
    }

    # ------------------------------------------------------------------ running events
    def set_trace_buffer(self, rows: int) -> None:
        st = self.state
        self.state = st._replace(tbuf=np.zeros((max(rows, 1), I.NR_TB), np.int64))
        st.prm[I.P_TPOS] = 0

    def run(
        self,
        ev: npt.NDArray[np.int64],
        handles: npt.NDArray[np.int32] | None = None,
        tracer: Any = None,
    ) -> npt.NDArray[np.int64]:
        """Process a batch of event rows (internal.EV_*); returns each event's pfn (-1: none).

        Allocations that miss the fast path run ``__alloc_pages_slowpath`` here, then the batch
        resumes. After the batch, the daemons it woke run (``run_daemons``: kswapd, then
        kcompactd). Bad frees raise AllocatorError naming the event, pfn and order. With the
        debug switch on, every invariant is checked after the batch, whatever its outcome."""
        self._depth += 1
        try:
            out = self._run(ev, handles, tracer)
            self._count_requests(ev, out)
            if self._depth == 1 and self.daemons:
                self.run_daemons()
            return out
        finally:
            self._depth -= 1
            if self.debug and self._depth == 0:
                check_invariants(self)

    @property
    def now(self) -> int:
        """Simulated time, ns."""
        return int(self.state.prm[I.P_NOW])

    def _count_requests(self, ev: npt.NDArray[np.int64], out: npt.NDArray[np.int64]) -> None:
        """Count the batch's rows (``nr_events``) and its allocation requests and failures by
        order and GFP class (``alloc_attempts`` / ``alloc_failures``, rows of GFP_CLASSES)."""
        self.nr_events += ev.shape[0]
        count_requests(ev, out, self.alloc_attempts, self.alloc_failures)

    def run_daemons(self) -> None:
        """Run the kernel threads that were woken: kswapd (fragsim/mm/vmscan.py), then
        kcompactd (fragsim/mm/compaction.py), once each per node.
        SIMPLIFICATION: the daemons run between batches, not concurrently with them; a
        scenario's batch length sets how soon they react. The batches a daemon runs itself
        (kswapd's shrinkers freeing pages) are part of its work: they do not run the daemons
        again in the middle of it."""
        st = self.state
        now = int(st.prm[I.P_NOW])
        self._depth += 1
        try:
            for nid in range(self.nr_nodes):
                if st.nd[nid, I.ND_KSWAPD_AWAKE]:
                    vmscan.kswapd(self, nid)
                if st.nd[nid, I.ND_KCOMPACTD_AWAKE]:
                    c.kcompactd(self, nid, now)
        finally:
            self._depth -= 1
            if self.debug and self._depth == 0:
                check_invariants(self)

    def advance(self, now_ns: int) -> None:
        """Move the simulated clock to ``now_ns`` and run what is due: the flusher (dirty file
        pages are written back, earlier writeback completes: vmscan.writeback), woken daemons,
        and kcompactd's 500 ms timeout (proactive compaction)."""
        st = self.state
        if now_ns < st.prm[I.P_NOW]:
            raise ConfigError(f"advance: time goes back ({now_ns} < {int(st.prm[I.P_NOW])} ns)")
        st.prm[I.P_NOW] = now_ns
        vmscan.writeback(self)
        self.run_daemons()
        self._depth += 1  # kcompactd's batches do not run the daemons again
        try:
            for nid in range(self.nr_nodes):
                c.kcompactd(self, nid, now_ns)
        finally:
            self._depth -= 1
            if self.debug and self._depth == 0:
                check_invariants(self)

    def _run(
        self,
        ev: npt.NDArray[np.int64],
        handles: npt.NDArray[np.int32] | None,
        tracer: Any,
    ) -> npt.NDArray[np.int64]:
        if handles is not None and handles is not self.handles:
            self.handles = handles  # compaction keeps the owners' mappings in this table
            self._grow_handle_tables(handles.shape[0])
        tracer = tracer if tracer is not None else self.tracer
        out = np.full(ev.shape[0], NO_PAGE, np.int64)
        i = 0
        while True:
            # the table of the moment: Python code between the segments (the slow path,
            # reclaim, a driver) may have grown it, which replaces the array
            handles = self.handles
            status, i = pa.run_events(self.state, ev, i, handles, out)
            if self.state.prm[I.P_TPOS] and tracer is not None:
                tracer.flush(self)
            if status == I.RUN_DONE:
                return out
            if status == I.RUN_TRACE_FULL:
                if tracer is None:
                    self.state.prm[I.P_TPOS] = 0
                continue
            if status == I.RUN_SLOWPATH:
                row = ev[i]
                page = self.__alloc_pages_slowpath(
                    int(row[I.EV_GFP]),
                    int(row[I.EV_ORDER]),
                    int(row[I.EV_NID]),
                    int(row[I.EV_CPU]),
                    int(row[I.EV_ARG]),
                )
                out[i] = page
                if page >= 0:
                    pa.set_caller_flags(self.state, page, int(row[I.EV_FLAGS]))
                i += 1
                continue
            pfn = int(ev[i, I.EV_ARG])
            if ev[i, I.EV_OP] == I.OP_FREE_HANDLE and 0 <= pfn < handles.shape[0]:
                pfn = int(handles[pfn])
            raise AllocatorError(
                f"event {i}: {_RUN_ERRORS.get(status, status)}: pfn {pfn:#x} "
                f"order {int(ev[i, I.EV_ORDER])}"
            )

    def _one(
        self,
        op: int,
        order: int = 0,
        gfp: int = 0,
        arg: int = -1,
        cpu: int = 0,
        nid: int = 0,
        flags: int = 0,
        handles: Any = None,
    ) -> int:
        ev = np.array([[op, order, gfp, arg, cpu, nid, flags]], np.int64)
        return int(self.run(ev, handles)[0])

    def alloc_pages(
        self, gfp: int, order: int, cpu: int = 0, nid: int = 0, page_flags: int = 0
    ) -> int:
        """__alloc_pages(gfp, order): the pfn of the block's first page, or -1 on failure.
        ``page_flags`` (PG_*) are set on the head afterwards, as the kernel's caller does
        (e.g. PG_lru | PG_anon | PG_swapbacked for an anonymous page put on the LRU)."""
        self._check_request(order, cpu, nid)
        return self._one(I.OP_ALLOC, order, gfp, -1, cpu, nid, page_flags)

    def free_pages(self, pfn: int, order: int, cpu: int = 0) -> None:
        """__free_pages(pfn_to_page(pfn), order)."""
        if not 0 <= order < MAX_ORDER:
            raise AllocatorError(f"free_pages: invalid order {order} for pfn {pfn:#x}")
        if not 0 <= cpu < self.nr_cpus:
            raise AllocatorError(f"free_pages: no cpu {cpu} (pfn {pfn:#x} order {order})")
        self._one(I.OP_FREE_PFN, order, 0, pfn, cpu)

    def compact_memory(self) -> list[int]:
        """Write /proc/sys/vm/compact_memory: compact every populated zone of every node
        (compact_nodes, fragsim/mm/compaction.py). Returns each zone's compact_result."""
        return c.compact_nodes(self)

    def drain_all_pages(self) -> None:
        """drain_all_pages(NULL): return every per-CPU list to the buddy allocator."""
        self._one(I.OP_DRAIN_ALL)

    def _check_request(self, order: int, cpu: int, nid: int) -> None:
        if not 0 <= order < MAX_ORDER:
            raise AllocatorError(f"alloc_pages: invalid order {order} (0..{MAX_ORDER - 1})")
        if not 0 <= cpu < self.nr_cpus:
            raise AllocatorError(f"alloc_pages: no cpu {cpu}")
        if not 0 <= nid < self.nr_nodes:
            raise AllocatorError(f"alloc_pages: no node {nid}")

    def new_handles(self, n: int) -> int:
        """Reserve ``n`` new handles in the machine's handle table (``self.handles``, fragsim's
        rmap: migration keeps it pointing at each block); returns the first. Everything that
        allocates under handles on one machine should share this table: ``run(ev, handles)``
        with another table replaces it."""
        if n < 0:
            raise ConfigError(f"new_handles: cannot reserve {n} handles")
        first = self._next_handle
        need = first + n
        if need > self.handles.shape[0]:
            size = max(need, 2 * self.handles.shape[0])
            grown = np.full(size, NO_PAGE, np.int32)
            grown[: self.handles.shape[0]] = self.handles
            self.handles = grown
            self._grow_handle_tables(size)
        self._next_handle = need
        return first

    def _grow_handle_tables(self, size: int) -> None:
        """Keep the per-handle shadow and swap tables as long as the handle table."""
        for name in ("shadow", "swap_entry"):
            old = getattr(self, name)
            if old.shape[0] < size:
                new = np.full(size, -1, np.int64)
                new[: old.shape[0]] = old
                setattr(self, name, new)
        if self._handle_released.shape[0] < size:
            grown = np.zeros(size, bool)
            grown[: self._handle_released.shape[0]] = self._handle_released
            self._handle_released = grown

    def alloc_handles(self, n: int) -> npt.NDArray[np.int64]:
        """``n`` handles of the machine's table, reusing released ones first (a long run's
        table stays as large as what is live, not as all that was ever allocated)."""
        if n < 0:
            raise ConfigError(f"alloc_handles: cannot reserve {n} handles")
        out: list[npt.NDArray[np.int64]] = []
        need = n
        while need and self._free_handles:
            chunk = self._free_handles[-1]
            if chunk.size <= need:
                out.append(self._free_handles.pop())
                need -= chunk.size
            else:
                out.append(chunk[-need:])
                self._free_handles[-1] = chunk[:-need]
                need = 0
        if need:
            first = self.new_handles(need)
            out.append(np.arange(first, first + need, dtype=np.int64))
        hs = out[0] if len(out) == 1 else np.concatenate(out) if out else np.zeros(0, np.int64)
        self._handle_released[hs] = False
        return hs

    def release_handles(self, handles: npt.ArrayLike) -> None:
        """Give handles back for reuse; each must hold no page any more."""
        h = np.array(handles, np.int64).reshape(-1)
        if h.size == 0:
            return
        if ((h < 0) | (h >= self._next_handle)).any():
            raise ConfigError(
                f"release_handles: {int(h[(h < 0) | (h >= self._next_handle)][0])} "
                "is not a handle of this machine"
            )
        held = self.handles[h] >= 0
        if held.any():
            raise AllocatorError(
                f"release_handles: handle {int(h[held][0])} still holds pfn "
                f"{int(self.handles[h[held][0]]):#x}"
            )
        if (self.swap_entry[h] >= 0).any():
            raise AllocatorError(
                f"release_handles: handle {int(h[self.swap_entry[h] >= 0][0])} still holds swap "
                f"slot {int(self.swap_entry[h[self.swap_entry[h] >= 0][0]])} (swap_free it first)"
            )
        if self._handle_released[h].any() or np.unique(h).size != h.size:
            again = h[self._handle_released[h]]
            raise AllocatorError(
                f"release_handles: handle {int(again[0]) if again.size else int(h[0])} "
                "released twice"
            )
        self.shadow[h] = -1
        self._handle_released[h] = True
        self._free_handles.append(h)

    def register_shrinker(self, shrinker: Any) -> None:
        """register_shrinker(): reclaim asks ``shrinker.count_objects(nid)`` for its freeable
        objects and frees some with ``shrinker.scan_objects(nid, nr_to_scan)`` (which returns
        how many it freed); ``shrinker.seeks`` (default DEFAULT_SEEKS = 2) is the cost of
        recreating an object."""
        for f in ("count_objects", "scan_objects"):
            if not callable(getattr(shrinker, f, None)):
                raise ConfigError(f"register_shrinker: {shrinker!r} has no {f}()")
        if shrinker not in self.shrinkers:
            self.shrinkers.append(shrinker)

    def register_oom_notifier(self, notifier: Callable[[], int]) -> None:
        """register_oom_notifier(): out_of_memory() calls each notifier first (it returns the
        pages it freed, e.g. a balloon deflating); pages freed end the episode without a kill."""
        if notifier not in self.oom_notifiers:
            self.oom_notifiers.append(notifier)

    def unregister_oom_notifier(self, notifier: Callable[[], int]) -> None:
        if notifier in self.oom_notifiers:
            self.oom_notifiers.remove(notifier)

    def out_of_memory(self, gfp: int, order: int) -> bool:
        """out_of_memory() (6.1): the OOM notifier chain first (freed pages: progress), then
        the OOM killer (``hooks.oom_kill``). True if memory was freed."""
        freed = sum(int(n()) for n in list(self.oom_notifiers))
        if freed > 0:
            return True
        h = self.hooks.oom_kill
        return bool(h(self, gfp, order)) if h is not None else False

    def adjust_managed_page_count(self, pfn: int, count: int) -> None:
        """adjust_managed_page_count(page, count): the page's zone manages ``count`` more
        pages (a balloon takes pages away from the guest with -1 and gives them back with +1).
        Watermarks are not recomputed, as in the kernel."""
        z = int(self.state.zoneid[pfn])
        if z < 0:
            raise AllocatorError(f"adjust_managed_page_count: pfn {pfn:#x} is in no zone")
        self.state.zs[z, I.ZF_MANAGED] += count

    def swapon(self, device: Any) -> None:
        """swapon(): anonymous pages reclaim evicts go to ``device``, which offers
        ``swap_out(count) -> slots`` (-1 where it cannot store a page), ``swap_in(slots)``,
        ``swap_free(slots)``, ``nr_slots()`` and ``nr_free_slots()`` (fragsim/mm/vmscan.py)."""
        for f in ("swap_out", "swap_in", "swap_free", "nr_slots", "nr_free_slots"):
            if not callable(getattr(device, f, None)):
                raise ConfigError(f"swapon: {device!r} has no {f}()")
        if self.swap is not None and self.swap is not device:
            raise ConfigError("swapon: fragsim models one swap device per machine")
        self.swap = device

    # ------------------------------------------------------------------ counters
    def count_vm_event(self, name: str, n: int = 1) -> None:
        """count_vm_events(item, n): a /proc/vmstat event counter kept by Python-side code
        (``balloon_inflate``, ``pswpout``, ``pgscan_kswapd``, ...)."""
        if name not in vmstat.vm_event_names(self):
            raise ConfigError(f"count_vm_event: {name!r} is not a vm_event_item of /proc/vmstat")
        self.vm_events[name] += n

    def mod_node_page_state(self, nid: int, name: str, delta: int) -> None:
        """mod_node_page_state(pgdat, item, delta): a node_stat_item gauge
        (``nr_slab_unreclaimable``, ``nr_kernel_stack``, ``workingset_refault_anon``, ...)."""
        if name not in vmstat.NODE_STAT_ITEMS or name in vmstat.NODE_STATS_IN_STATE:
            raise ConfigError(f"mod_node_page_state: {name!r} is not a node_stat_item kept here")
        self.node_stat[nid][name] += delta

    def mod_zone_page_state(self, z: int, name: str, delta: int) -> None:
        """mod_zone_page_state(zone, item, delta): a zone_stat_item gauge (``nr_zspages``,
        ``nr_mlock``, ...) of zone id ``z``."""
        if name not in vmstat.ZONE_STAT_ITEMS or name in vmstat.ZONE_STATS_IN_STATE:
            raise ConfigError(f"mod_zone_page_state: {name!r} is not a zone_stat_item kept here")
        self.zone_stat[z][name] += delta

    def order0_headroom(self) -> int:
        """Order-0 pages a batch can take without any allocation failing, in the current
        context: the most any zone has above its high watermark plus boost plus its largest
        lowmem reserve (a zone that passes zone_watermark_ok at the high mark for every request
        of the batch), or, under PF_MEMALLOC (reclaim's own allocations: ALLOC_NO_WATERMARKS),
        above nothing; never counting the highatomic reserve and free CMA pages. A driver that
        allocates ahead in one batch what it would allocate one by one checks this first."""
        st = self.state
        best = 0
        for z in self.populated_zones():
            row = st.zs[z]
            usable = int(row[I.ZF_NR_FREE_PAGES] - row[I.ZF_NR_RESERVED_HIGHATOMIC])
            usable -= int(row[I.ZF_NR_FREE_CMA])
            mark = 0
            if not self.pf_memalloc:
                mark = int(row[I.ZF_WMARK_HIGH] + row[I.ZF_BOOST])
                mark += int(row[I.ZF_LOWMEM_RESERVE : I.ZF_LOWMEM_RESERVE + I.MAX_NR_ZONES].max())
            best = max(best, usable - mark)
        return best

    def present_pages(self) -> int:
        """The pages of RAM every zone has (present_pages: the machine's memory size)."""
        return int(self.state.zs[:, I.ZF_PRESENT].sum())

    def totalram_pages(self) -> int:
        """totalram_pages(): the pages every zone manages."""
        return int(self.state.zs[:, I.ZF_MANAGED].sum())

    def pfn_to_nid(self, pfns: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """pfn_to_nid() of each pfn (-1 outside every zone)."""
        z = self.state.zoneid[np.asarray(pfns, np.int64)].astype(np.int64)
        return np.where(z >= 0, z // self.nr_zone_types, -1)

    def page(self, pfn: int) -> Page:
        return Page(self, pfn)

    # ------------------------------------------------------------------ the slow path
    def gfp_to_alloc_flags(self, gfp: int, order: int) -> int:
        """gfp_to_alloc_flags() (6.1.192; compiled in page_alloc)."""
        return int(pa.gfp_to_alloc_flags(self.state, gfp, order))

    def _migratetype(self, gfp: int) -> int:
        return gfp_migratetype(gfp, not self.page_group_by_mobility_disabled)

    def _freelist(
        self, gfp: int, order: int, alloc_flags: int, nid: int, cpu: int, handle: int
    ) -> int:
        return self._one(I.OP_GET_PAGE_FROM_FREELIST, order, gfp, handle, cpu, nid, alloc_flags)

    def gfp_migratetype(self, gfp: int) -> int:
        """gfp_migratetype()."""
        return self._migratetype(gfp)

    def _wake_all_kswapds(self, order: int, gfp: int, nid: int) -> None:
        """wake_all_kswapds(): wakeup_kswapd() for every zone of the zonelist."""
        hz = self.gfp_zone(gfp)
        for z in self.zonelist(gfp, nid):
            pa.wakeup_kswapd(self.state, z, gfp, order, hz)

    def zonelist(self, gfp: int, nid: int) -> list[int]:
        """The zones a request may use, preferred first (node_zonelist from gfp_zone())."""
        return [int(z) for z in self.state.zonelist[nid, self.gfp_zone(gfp)] if z >= 0]

    def __alloc_pages_direct_compact(
        self,
        gfp: int,
        order: int,
        alloc_flags: int,
        nid: int,
        cpu: int,
        prio: int,
        handle: int,
    ) -> tuple[int, int]:
        """__alloc_pages_direct_compact() (6.1): try_to_compact_pages(); unless every zone was
        skipped, count a compact_stall; take the captured block (prep_new_page) or try the free
        lists; count compact_success (and reset the zone's deferral) or compact_fail.
        Returns (pfn or -1, compact_result)."""
        st = self.state
        result, page = c.try_to_compact_pages(self, gfp, order, alloc_flags, nid, prio, cpu)
        if result == c.COMPACT_SKIPPED:
            return NO_PAGE, result
        st.vm[I.VM_COMPACT_STALL] += 1
        if page >= 0:
            self._one(I.OP_PREP_NEW_PAGE, order, gfp, handle, cpu, nid, page)
        else:
            page = self._freelist(gfp, order, alloc_flags, nid, cpu, handle)
        if page >= 0:
            z = int(st.zoneid[page])
            st.zs[z, I.ZF_BLOCKSKIP_FLUSH] = 0
            c.compaction_defer_reset(st, z, order, True)
            if self.tracer is not None:
                self.tracer.flush(self)
            st.vm[I.VM_COMPACT_SUCCESS] += 1
            return page, result
        st.vm[I.VM_COMPACT_FAIL] += 1
        return NO_PAGE, result

    def _should_reclaim_retry(
        self, gfp: int, order: int, nid: int, alloc_flags: int, progress: bool, loops: list[int]
    ) -> bool:
        """should_reclaim_retry() (6.1): count a loop without progress (progress resets it for
        non-costly orders); up to MAX_RECLAIM_RETRIES retry while some zone would pass its min
        watermark for the order with its free plus reclaimable pages; when not, unreserve a
        highatomic block (force) and retry if that worked."""
        if progress and order <= PAGE_ALLOC_COSTLY_ORDER:
            loops[0] = 0
        else:
            loops[0] += 1
        ret = False
        if loops[0] <= pa.MAX_RECLAIM_RETRIES:
            st = self.state
            hz = self.gfp_zone(gfp)
            for z in self.zonelist(gfp, nid):
                available = int(st.zs[z, I.ZF_NR_FREE_PAGES])
                if self.hooks.zone_reclaimable_pages is not None:
                    available += self.hooks.zone_reclaimable_pages(self, z)
                mark = int(pa.wmark_pages(st, z, I.ALLOC_WMARK_MIN))
                if zone_watermark_ok(st, z, order, mark, hz, alloc_flags, available):
                    ret = True
                    break
        if not ret:
            return self._unreserve_highatomic(gfp, nid, True)
        return ret

    def _compaction_zonelist_suitable(
        self, gfp: int, nid: int, order: int, alloc_flags: int
    ) -> bool:
        """compaction_zonelist_suitable() (6.1): some zone would pass __compaction_suitable() with
        its free pages plus its reclaimable pages / order."""
        st = self.state
        hz = self.gfp_zone(gfp)
        for z in self.zonelist(gfp, nid):
            available = int(st.zs[z, I.ZF_NR_FREE_PAGES])
            if self.hooks.zone_reclaimable_pages is not None:
                available += self.hooks.zone_reclaimable_pages(self, z) // order
            suitable = getattr(c, "__compaction_suitable")
            if suitable(st, z, order, alloc_flags, hz, available) == c.COMPACT_CONTINUE:
                return True
        return False

    def _should_compact_retry(
        self, gfp: int, nid: int, order: int, alloc_flags: int, result: int, state: list[int]
    ) -> bool:
        """should_compact_retry() (6.1); ``state`` is [compact_priority, compaction_retries].
        Progress (SUCCESS) counts a retry; a COMPLETE pass or a withdrawn attempt (DEFERRED,
        CONTENDED, PARTIAL_SKIPPED) retries at a higher priority while there is one; SKIPPED
        retries if reclaim could make compaction suitable; otherwise retry up to
        MAX_COMPACT_RETRIES (a quarter for costly orders)."""
        if not order:
            return False
        if result == c.COMPACT_SUCCESS:
            state[1] += 1
        if result == c.COMPACT_SKIPPED:  # compaction_needs_reclaim()
            return self._compaction_zonelist_suitable(gfp, nid, order, alloc_flags)
        if result not in (
            c.COMPACT_COMPLETE,
            c.COMPACT_DEFERRED,
            c.COMPACT_CONTENDED,
            c.COMPACT_PARTIAL_SKIPPED,
        ):
            max_retries = MAX_COMPACT_RETRIES
            if order > PAGE_ALLOC_COSTLY_ORDER:
                max_retries //= 4
            if state[1] <= max_retries:
                return True
        min_priority = (
            c.MIN_COMPACT_COSTLY_PRIORITY
            if order > PAGE_ALLOC_COSTLY_ORDER
            else c.MIN_COMPACT_PRIORITY
        )
        if state[0] > min_priority:
            state[0] -= 1
            state[1] = 0
            return True
        return False

    def __alloc_pages_slowpath(self, gfp: int, order: int, nid: int, cpu: int, handle: int) -> int:
        """__alloc_pages_slowpath() (6.1.192) after its first attempt (kswapd woken, the free
        lists tried at the min watermark: compiled, page_alloc.slowpath_first_attempt): initial
        async compaction for costly or unmovable high-order requests
        (__GFP_NORETRY costly requests give up if it was skipped or deferred), then the retry
        loop: free lists (with the memalloc reserves when allowed), direct reclaim, direct
        compaction at the current priority, __GFP_NORETRY and costly-order exits,
        should_reclaim_retry, should_compact_retry (only after reclaim progress), and the OOM
        stage (a last try at the high watermark, then the OOM killer). Returns the pfn or -1;
        traces mm_page_alloc either way.
        SIMPLIFICATION: a __GFP_NOFAIL request that still fails after the cpuset fallback
        fails instead of looping forever."""
        if (gfp & GFP_F_ATOMIC) and (gfp & GFP_F_DIRECT_RECLAIM):
            gfp &= ~GFP_F_ATOMIC
        costly = order > PAGE_ALLOC_COSTLY_ORDER
        can_direct_reclaim = bool(gfp & GFP_F_DIRECT_RECLAIM)
        can_compact = bool(gfp & GFP_F_IO)  # gfp_compaction_allowed()
        mt = self._migratetype(gfp)
        h = self.hooks
        no_progress_loops = [0]
        compact = [c.DEF_COMPACT_PRIORITY, 0]  # compact_priority, compaction_retries
        compact_result = c.COMPACT_SKIPPED
        alloc_flags = self.gfp_to_alloc_flags(gfp, order)
        # gfp_pfmemalloc_allowed(): __GFP_MEMALLOC, or PF_MEMALLOC (reclaim's own allocations)
        pfmemalloc = bool(gfp & GFP_F_MEMALLOC or self.pf_memalloc) and not (gfp & GFP_F_NOMEMALLOC)

        def attempt(flags: int) -> int:
            return self._freelist(gfp, order, flags, nid, cpu, handle)

        def direct_compact(prio: int) -> int:
            nonlocal compact_result
            if not order:
                return NO_PAGE
            page, compact_result = self.__alloc_pages_direct_compact(
                gfp, order, alloc_flags, nid, cpu, prio, handle
            )
            return page

        # (the first wake_all_kswapds and free-list attempt at the min watermark ran compiled
        # in run_events: page_alloc.slowpath_first_attempt)
        if (
            can_direct_reclaim
            and can_compact
            and (costly or (order > 0 and mt != MIGRATE_MOVABLE))
            and not pfmemalloc
        ):
            page = direct_compact(c.INIT_COMPACT_PRIORITY)
            if page != NO_PAGE:
                return self._got(page, order, mt, gfp)
            if costly and (gfp & GFP_F_NORETRY):
                if compact_result in (c.COMPACT_SKIPPED, c.COMPACT_DEFERRED):
                    return self._fail(gfp, order, mt)
                if gfp & GFP_F_THISNODE:
                    return self._fail(gfp, order, mt)
                compact[0] = c.INIT_COMPACT_PRIORITY
        while True:  # retry:
            if alloc_flags & I.ALLOC_KSWAPD:
                self._wake_all_kswapds(order, gfp, nid)
            if pfmemalloc:  # __gfp_pfmemalloc_flags(): ALLOC_NO_WATERMARKS
                alloc_flags = I.ALLOC_NO_WATERMARKS | (alloc_flags & (I.ALLOC_CMA | I.ALLOC_KSWAPD))
            page = attempt(alloc_flags)
            if page != NO_PAGE:
                break
            if not can_direct_reclaim:
                break
            if self.pf_memalloc:  # avoid recursion of direct reclaim
                break
            # __alloc_pages_direct_reclaim(); do_try_to_free_pages() counts allocstall_<zone>
            self.allocstall[self.gfp_zone(gfp)] += 1
            progress = h.direct_reclaim(self, gfp, order, nid) if h.direct_reclaim else 0
            if progress:
                page = attempt(alloc_flags)
                if page == NO_PAGE:
                    self._unreserve_highatomic(gfp, nid, False)
                    self.drain_all_pages()
                    page = attempt(alloc_flags)
                if page != NO_PAGE:
                    break
            page = direct_compact(compact[0])
            if page != NO_PAGE:
                break
            if gfp & GFP_F_NORETRY:
                break
            if costly and (not can_compact or not (gfp & GFP_F_RETRY_MAYFAIL)):
                break
            if self._should_reclaim_retry(
                gfp, order, nid, alloc_flags, progress > 0, no_progress_loops
            ):
                continue
            if (
                progress > 0
                and can_compact
                and self._should_compact_retry(
                    gfp, nid, order, alloc_flags, compact_result, compact
                )
            ):
                continue
            # __alloc_pages_may_oom(): a last attempt at the high watermark, then the killer
            page = attempt(I.ALLOC_WMARK_HIGH | I.ALLOC_CPUSET)
            if page != NO_PAGE:
                break
            if (
                order <= PAGE_ALLOC_COSTLY_ORDER
                and not (gfp & (GFP_F_RETRY_MAYFAIL | GFP_F_THISNODE))
                and self.out_of_memory(gfp, order)
            ):
                no_progress_loops[0] = 0
                continue
            break
        if page == NO_PAGE and (gfp & GFP_F_NOFAIL) and can_direct_reclaim:
            page = attempt(I.ALLOC_MIN_RESERVE | I.ALLOC_CPUSET)  # cpuset fallback
        if page == NO_PAGE:
            return self._fail(gfp, order, mt)
        return self._got(page, order, mt, gfp)

    def _got(self, page: int, order: int, mt: int, gfp: int) -> int:
        self._trace_alloc(page, order, mt, gfp)
        return page

    def _unreserve_highatomic(self, gfp: int, nid: int, force: bool) -> bool:
        return self._one(I.OP_UNRESERVE_HIGHATOMIC, 1 if force else 0, gfp, -1, 0, nid) == 1

    def _fail(self, gfp: int, order: int, mt: int) -> int:
        self.state.vm[I.VM_PGALLOC_FAIL] += 1
        self._trace_alloc(NO_PAGE, order, mt, gfp)
        return NO_PAGE

    def _trace_alloc(self, pfn: int, order: int, mt: int, gfp: int) -> None:
        self.trace(I.TP_MM_PAGE_ALLOC, pfn, order, mt, gfp)

    def trace(
        self, tp: int, pfn: int, order: int, a: int = 0, b: int = 0, c: int = 0, d: int = 0
    ) -> None:
        """Record a tracepoint hit from Python code, as the compiled trace() does."""
        st = self.state
        if not (st.prm[I.P_TRACE] >> tp) & 1:
            return
        i = int(st.prm[I.P_TPOS])
        st.prm[I.P_SEQ] += 1
        if i >= st.tbuf.shape[0] and self.tracer is not None:
            self.tracer.flush(self)
            i = 0
        if i < st.tbuf.shape[0]:
            st.tbuf[i] = (
                tp | (int(st.prm[I.P_CPU]) << 16),
                st.prm[I.P_NOW],
                pfn,
                order,
                a,
                b,
                c,
                d,
            )
            st.prm[I.P_TPOS] = i + 1

    # ------------------------------------------------------------------ views
    def zone_names(self) -> list[str]:
        return [self.zone_name(z) for z in range(self.state.zs.shape[0])]

    def describe(self) -> str:
        zs = self.state.zs
        lines = [
            f"machine {self.profile.name}: {self.max_pfn} pfns, {self.nr_cpus} cpus, "
            f"pageblock_order {self.pageblock_order}, min_free_kbytes {self.min_free_kbytes}"
        ]
        for z in self.populated_zones():
            lines.append(
                f"  node {zs[z, I.ZF_NODE]} {self.zone_name(z):>8}: "
                f"pfn [{zs[z, I.ZF_START]:#x}, {zs[z, I.ZF_END]:#x}) managed {zs[z, I.ZF_MANAGED]}"
                f" min/low/high {zs[z, I.ZF_WMARK_MIN]}/{zs[z, I.ZF_WMARK_LOW]}/"
                f"{zs[z, I.ZF_WMARK_HIGH]}"
            )
        return "\n".join(lines)
