"""mm-private definitions shared by fragsim's compiled allocator and its Python views.
Models mm/internal.h (ALLOC_* flags) and the layout of the simulated kernel's state (Linux 6.1).

The simulated kernel keeps all state of one machine in a ``State`` named tuple of NumPy arrays, so
that the compiled code (numba) can take it as one argument. Scalars of a zone, a per-CPU pageset
and the machine live in small int64 arrays indexed by the ``ZF_*``, ``PCP_*`` and ``P_*``
constants below: the compiled code cannot hold Python objects.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

# --- mm/internal.h, Linux 6.1.192: alloc_flags -------------------------------------------------
ALLOC_WMARK_MIN = 0
ALLOC_WMARK_LOW = 1
ALLOC_WMARK_HIGH = 2
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100  # 0 without CONFIG_ZONE_DMA32: see P_ZONE_DMA32
ALLOC_HIGHATOMIC = 0x200
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

# fpi_t (mm/page_alloc.c)
FPI_NONE = 0
FPI_TO_TAIL = 1 << 1

# zone->flags bits (include/linux/mmzone.h)
ZONE_BOOSTED_WATERMARK = 1 << 0
ZONE_RECLAIM_ACTIVE = 1 << 1

# --- zone scalars: State.zs[zone, ZF_*] --------------------------------------------------------
ZF_START = 0  # zone_start_pfn
ZF_END = 1  # zone_end_pfn (start + spanned)
ZF_NODE = 2
ZF_ZIDX = 3  # zone index in its node (the configured zone type's position)
ZF_MANAGED = 4
ZF_PRESENT = 5
ZF_NR_FREE_PAGES = 6  # NR_FREE_PAGES
ZF_NR_FREE_CMA = 7  # NR_FREE_CMA_PAGES
ZF_WMARK_MIN = 8  # _watermark[WMARK_MIN]; LOW, HIGH, PROMO follow
ZF_WMARK_LOW = 9
ZF_WMARK_HIGH = 10
ZF_WMARK_PROMO = 11
ZF_BOOST = 12  # watermark_boost
ZF_NR_RESERVED_HIGHATOMIC = 13
ZF_FLAGS = 14
ZF_PCP_HIGH = 15  # zone->pageset_high
ZF_PCP_BATCH = 16  # zone->pageset_batch
ZF_NR_ISOLATE_PAGEBLOCK = 17
ZF_PGALLOC = 18  # pgalloc_<zone> event counter
ZF_FREE_SENT = 19  # index of the first free_area list head in State.nxt/prv
ZF_PCP_SENT = 20  # index of the first pcp list head (cpu 0, pindex 0)
ZF_CMA_PAGES = 21  # zone->cma_pages
ZF_SPANNED = 22
ZF_LOWMEM_RESERVE = 23  # lowmem_reserve[0 .. MAX_NR_ZONES-1]
MAX_NR_ZONES = 6
ZF_COMPACT_CONSIDERED = ZF_LOWMEM_RESERVE + MAX_NR_ZONES  # compaction deferral state
ZF_COMPACT_DEFER_SHIFT = ZF_COMPACT_CONSIDERED + 1
ZF_COMPACT_ORDER_FAILED = ZF_COMPACT_CONSIDERED + 2
ZF_CACHED_MIGRATE_PFN = ZF_COMPACT_CONSIDERED + 3  # compact_cached_migrate_pfn[2]: async, sync
ZF_CACHED_FREE_PFN = ZF_COMPACT_CONSIDERED + 5  # compact_cached_free_pfn
ZF_INIT_MIGRATE_PFN = ZF_COMPACT_CONSIDERED + 6  # compact_init_migrate_pfn
ZF_INIT_FREE_PFN = ZF_COMPACT_CONSIDERED + 7  # compact_init_free_pfn
ZF_BLOCKSKIP_FLUSH = ZF_COMPACT_CONSIDERED + 8  # compact_blockskip_flush
ZF_NR_LRU = ZF_BLOCKSKIP_FLUSH + 1  # NR_ZONE_LRU_BASE: pages on each LRU list (LRU_*), per zone
NR_ZF = ZF_NR_LRU + 5

# --- enum lru_list (include/linux/mmzone.h): the per-node LRU lists ------------------------------
LRU_INACTIVE_ANON = 0
LRU_ACTIVE_ANON = 1
LRU_INACTIVE_FILE = 2
LRU_ACTIVE_FILE = 3
LRU_UNEVICTABLE = 4
NR_LRU_LISTS = 5
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")

# --- per-cpu pageset scalars: State.pcp[zone, cpu, PCP_*] ---------------------------------------
PCP_COUNT = 0
PCP_HIGH = 1
PCP_BATCH = 2
PCP_FREE_FACTOR = 3
NR_PCPF = 4

# --- per-node scalars: State.nd[node, ND_*] ------------------------------------------------------
ND_KSWAPD_ORDER = 0  # pgdat->kswapd_order requested since kswapd last ran (-1: not woken)
ND_KSWAPD_HIGHEST_ZONEIDX = 1
ND_KSWAPD_WAKEUPS = 2  # wakeup_kswapd() calls that woke it
ND_KSWAPD_AWAKE = 3  # kswapd was woken and has not run yet (not on its waitqueue)
ND_KSWAPD_FAILURES = 4  # pgdat->kswapd_failures
ND_KCOMPACTD_MAX_ORDER = 5  # pgdat->kcompactd_max_order
ND_KCOMPACTD_HIGHEST_ZONEIDX = 6  # pgdat->kcompactd_highest_zoneidx
ND_KCOMPACTD_AWAKE = 7  # wakeup_kcompactd() asked for kcompactd, which has not run yet
ND_PROACTIVE_NEXT = 8  # simulated time (ns) of kcompactd's next timeout (the proactive check)
NR_NDF = 9

# --- machine parameters: State.prm[P_*] ----------------------------------------------------------
P_PAGEBLOCK_ORDER = 0
P_NR_CPUS = 1
P_PCP_THP = 2  # CONFIG_TRANSPARENT_HUGEPAGE: a pcp list pair for pageblock_order
P_PCP_MAX_ORDER = 3  # highest low order kept on pcp lists (PAGE_ALLOC_COSTLY_ORDER; 0 before 5.13)
P_GROUPING_DISABLED = 4  # page_group_by_mobility_disabled
P_BOOST_FACTOR = 5  # watermark_boost_factor
P_CONFIG_CMA = 6
P_NR_ONLINE_NODES = 7
P_ZONE_DMA32 = 8  # CONFIG_ZONE_DMA32: ALLOC_NOFRAGMENT exists
P_ZONE_NORMAL_IDX = 9  # zone index of ZONE_NORMAL in a node (-1 if not configured)
P_ZONE_DMA32_IDX = 10
P_TRACE = 11  # bit mask of enabled tracepoints (TP_*)
P_TPOS = 12  # records written to State.tbuf
P_NOW = 13  # simulated time, ns (set by the caller, stamped on trace records)
P_NR_PCP_LISTS = 14
P_PCP_BATCH_SCALE_MAX = 15  # CONFIG_PCP_BATCH_SCALE_MAX
P_NR_ZONE_TYPES = 16  # zones per node
P_GFPZONE = 17  # 16 entries: gfp & GFP_ZONEMASK -> zone index (-1: invalid combination)
P_CPU = 33  # CPU the current operation runs on (stamped on trace records)
P_SEQ = 34  # trace records ever written (for lost-record accounting)
P_AUX_SENT = 35  # index of the first auxiliary list head (compaction's private lists)
P_COMPACT_UNEVICTABLE = 36  # sysctl compact_unevictable_allowed
P_EXTFRAG_THRESHOLD = 37  # sysctl extfrag_threshold
P_CAPC_ZONE = 38  # current->capture_control: the zone compacted directly (-1: none)
P_CAPC_ORDER = 39  # capc->cc->order
P_CAPC_PAGE = 40  # capc->page: the captured block (-1: none yet)
P_RNG = 41  # xorshift64 state for drivers' compiled policies (seeded by the machine's seed)
P_COMPACTION_PROACTIVENESS = 42  # sysctl compaction_proactiveness
P_FS_MIGRATE_DIRTY = 43  # the page cache's filesystem has a migrate_folio (dirty pages move async)
P_MIGRATE_CALL = 44  # migrate_pages() calls so far (drivers' per-batch cost accounting)
P_MIGRATE_TIME_NS = 45  # time spent in drivers' migrate_page, ns (their cost model)
P_LRU_SENT = 46  # index of the first LRU list head (node 0, LRU_INACTIVE_ANON) in State.nxt/prv
NR_P = 47

# auxiliary list heads (State.nxt/prv at prm[P_AUX_SENT] + AUX_*)
AUX_MIGRATEPAGES = 0  # cc->migratepages
AUX_FREEPAGES = 1  # cc->freepages
AUX_TMP = 2  # a scratch list (split_map_pages' tmp_list)
AUX_RET = 3  # migrate_pages' ret_folios
NR_AUX_LISTS = 4

# --- drivers' movable_operations: State.drv[mops id, DRV_*] -------------------------------------
# The core makes a driver's isolate/migrate/putback decisions itself, compiled, when DRV_COMPILED is
# set (built-in drivers); otherwise compaction returns to Python for each callback. Probabilities
# are per million; costs in ns. DRV_NR_* and DRV_TIME_NS are outputs.
MAX_MOPS = 128  # State.mops is int8: 1 + index, 0 = none
DRV_COMPILED = 0
DRV_ISOLATE_BUSY = 1  # isolate_page returns false (the device holds the page)
DRV_MIGRATE_EAGAIN = 2  # migrate_page returns -EAGAIN (busy right now; retried)
DRV_MIGRATE_EBUSY = 3  # migrate_page returns -EBUSY (permanent for this attempt)
DRV_COST_NS = 4  # time per page migrate_page moves (copy, cache flush, remap)
DRV_BATCH_NS = 5  # time per migrate_pages() call that asks the driver for at least one page
DRV_NR_ISOLATED = 6
DRV_NR_MIGRATED = 7
DRV_NR_FAILED = 8  # migrate_page calls that returned an error
DRV_TIME_NS = 9
DRV_LAST_CALL = 10  # P_MIGRATE_CALL when the batch cost was last charged
DRV_PINNED = 11  # the answer for a page the driver has pinned (a reference beyond its own): PIN_*
NR_DRV = 12
PIN_IGNORE = 0  # pins do not change the driver's answers
PIN_ISOLATE_BUSY = 1  # isolate_page says no
PIN_EAGAIN = 2  # migrate_page returns -EAGAIN (retried, then counted as failed)
PIN_EBUSY = 3  # migrate_page returns -EBUSY

# --- vm_event_item counters that live outside zones: State.vm[VM_*] ------------------------------
VM_PGFREE = 0
VM_PGALLOC_FAIL = 1  # fragsim's own: allocation attempts that returned NULL
VM_PGMIGRATE_SUCCESS = 2
VM_PGMIGRATE_FAIL = 3
VM_THP_MIGRATION_SUCCESS = 4
VM_THP_MIGRATION_FAIL = 5
VM_THP_MIGRATION_SPLIT = 6
VM_COMPACT_MIGRATE_SCANNED = 7
VM_COMPACT_FREE_SCANNED = 8
VM_COMPACT_ISOLATED = 9
VM_COMPACT_STALL = 10
VM_COMPACT_FAIL = 11
VM_COMPACT_SUCCESS = 12
VM_COMPACT_DAEMON_WAKE = 13
VM_COMPACT_DAEMON_MIGRATE_SCANNED = 14
VM_COMPACT_DAEMON_FREE_SCANNED = 15
NR_VM = 16
#: /proc/vmstat names of the State.vm counters that have one
VM_NAMES = {
    VM_PGMIGRATE_SUCCESS: "pgmigrate_success",
    VM_PGMIGRATE_FAIL: "pgmigrate_fail",
    VM_THP_MIGRATION_SUCCESS: "thp_migration_success",
    VM_THP_MIGRATION_FAIL: "thp_migration_fail",
    VM_THP_MIGRATION_SPLIT: "thp_migration_split",
    VM_COMPACT_MIGRATE_SCANNED: "compact_migrate_scanned",
    VM_COMPACT_FREE_SCANNED: "compact_free_scanned",
    VM_COMPACT_ISOLATED: "compact_isolated",
    VM_COMPACT_STALL: "compact_stall",
    VM_COMPACT_FAIL: "compact_fail",
    VM_COMPACT_SUCCESS: "compact_success",
    VM_COMPACT_DAEMON_WAKE: "compact_daemon_wake",
    VM_COMPACT_DAEMON_MIGRATE_SCANNED: "compact_daemon_migrate_scanned",
    VM_COMPACT_DAEMON_FREE_SCANNED: "compact_daemon_free_scanned",
}

# --- tracepoints: State.tbuf rows (id | cpu << 16, time, pfn, order, a, b, c, d) ----------------
TP_MM_PAGE_ALLOC = 0
TP_MM_PAGE_FREE = 1
TP_MM_PAGE_ALLOC_ZONE_LOCKED = 2
TP_MM_PAGE_PCPU_DRAIN = 3
TP_MM_PAGE_ALLOC_EXTFRAG = 4
TP_MM_COMPACTION_BEGIN = 5  # pfn=zone_start order=migrate_pfn a=free_pfn b=zone_end c=sync
TP_MM_COMPACTION_END = 6  # as begin, d=status
TP_MM_COMPACTION_ISOLATE_MIGRATEPAGES = 7  # pfn=start order=end a=nr_scanned b=nr_taken
TP_MM_COMPACTION_ISOLATE_FREEPAGES = 8  # as above
TP_MM_COMPACTION_MIGRATEPAGES = 9  # pfn=nr_migrated order=nr_failed
TP_MM_MIGRATE_PAGES = 10  # pfn=succeeded order=failed a/b/c=thp ok/failed/split d=mode|reason<<8
TP_MM_COMPACTION_SUITABLE = 11  # pfn=zone id order=order a=ret
TP_MM_COMPACTION_FINISHED = 12  # pfn=zone id order=order a=ret
TP_MM_COMPACTION_DEFERRED = 13  # pfn=zone id order a=order_failed b=considered c=limit
TP_MM_COMPACTION_DEFER_COMPACTION = 14  # as above
TP_MM_COMPACTION_DEFER_RESET = 15  # as above
TP_MM_COMPACTION_TRY_TO_COMPACT_PAGES = 16  # order=order a=gfp_mask b=priority
TP_MM_COMPACTION_KCOMPACTD_SLEEP = 17  # pfn=nid
TP_MM_COMPACTION_WAKEUP_KCOMPACTD = 18  # pfn=nid order a=highest_zoneidx (a zone id)
TP_MM_COMPACTION_KCOMPACTD_WAKE = 19  # as above
TP_MM_VMSCAN_WAKEUP_KSWAPD = 20  # pfn=nid order a=zone id b=gfp_flags
TP_NAMES = (
    "mm_page_alloc",
    "mm_page_free",
    "mm_page_alloc_zone_locked",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
    "mm_compaction_begin",
    "mm_compaction_end",
    "mm_compaction_isolate_migratepages",
    "mm_compaction_isolate_freepages",
    "mm_compaction_migratepages",
    "mm_migrate_pages",
    "mm_compaction_suitable",
    "mm_compaction_finished",
    "mm_compaction_deferred",
    "mm_compaction_defer_compaction",
    "mm_compaction_defer_reset",
    "mm_compaction_try_to_compact_pages",
    "mm_compaction_kcompactd_sleep",
    "mm_compaction_wakeup_kcompactd",
    "mm_compaction_kcompactd_wake",
    "mm_vmscan_wakeup_kswapd",
)
TB_ID, TB_TIME, TB_PFN, TB_ORDER, TB_A, TB_B, TB_C, TB_D = range(8)
NR_TB = 8

# --- event batches: rows of int64 (op, order, gfp, handle or pfn, cpu, nid, flags) ----------------
# EV_FLAGS: for OP_ALLOC the PG_* page flags the caller sets on the new block's head (what the
# kernel's caller does after allocating: lru_cache_add(), __SetPageMovable(), ...); for
# OP_GET_PAGE_FROM_FREELIST the alloc_flags.
EV_OP, EV_ORDER, EV_GFP, EV_ARG, EV_CPU, EV_NID, EV_FLAGS = range(7)
NR_EV = 7
OP_ALLOC = 0  # __alloc_pages fast path; ARG = handle to record (or -1)
OP_FREE_HANDLE = 1  # __free_pages of the block recorded under handle ARG
OP_FREE_PFN = 2  # __free_pages(pfn=ARG, order)
OP_GET_PAGE_FROM_FREELIST = 3  # one get_page_from_freelist() with explicit alloc_flags (slow path)
OP_DRAIN_ALL = 4  # drain_all_pages(NULL)
OP_UNRESERVE_HIGHATOMIC = 5  # unreserve_highatomic_pageblock(ac, force=ORDER)
OP_PREP_NEW_PAGE = 6  # prep_new_page() of a block compaction captured (pfn in FLAGS)


def alloc_events(
    handles: npt.ArrayLike,
    gfp: npt.ArrayLike,
    order: npt.ArrayLike = 0,
    flags: npt.ArrayLike = 0,
    cpu: npt.ArrayLike = 0,
    nid: npt.ArrayLike = 0,
) -> npt.NDArray[np.int64]:
    """Event rows that allocate one block per handle in ``handles`` (OP_ALLOC); the other
    fields may be scalars or arrays of the same length."""
    h = np.asarray(handles, np.int64).reshape(-1)
    ev = np.zeros((h.size, NR_EV), np.int64)
    ev[:, EV_OP] = OP_ALLOC
    ev[:, EV_ORDER] = order
    ev[:, EV_GFP] = gfp
    ev[:, EV_ARG] = h
    ev[:, EV_CPU] = cpu
    ev[:, EV_NID] = nid
    ev[:, EV_FLAGS] = flags
    return ev


def free_events(handles: npt.ArrayLike, cpu: npt.ArrayLike = 0) -> npt.NDArray[np.int64]:
    """Event rows that free the blocks recorded under ``handles`` (OP_FREE_HANDLE)."""
    h = np.asarray(handles, np.int64).reshape(-1)
    ev = np.zeros((h.size, NR_EV), np.int64)
    ev[:, EV_OP] = OP_FREE_HANDLE
    ev[:, EV_ARG] = h
    ev[:, EV_CPU] = cpu
    return ev


# run_events() return codes
RUN_DONE = 0
RUN_SLOWPATH = 1  # event i failed the fast path: the caller runs __alloc_pages_slowpath
RUN_TRACE_FULL = 2  # the trace buffer must be flushed before event i
RUN_EBADORDER = -1
RUN_ENOTALLOC = -2  # free of a pfn that is not an allocated block head (double free, tail pfn)
RUN_EWRONGORDER = -3
RUN_EOUTSIDE = -4  # pfn outside every zone
RUN_EHANDLE = -5  # free of an unknown handle


class State(NamedTuple):
    """All state of one simulated machine, as arrays the compiled allocator takes in one argument.

    Per page (indexed by pfn, the ``mem_map``): ``flags`` (PG_* bits, fragsim/mm/page.py),
    ``order`` (buddy order of a free head, order of an allocated or pcp head), ``pcpmt`` (the
    migratetype cached in the page, ``set_pcppage_migratetype``), ``refcount`` (``page->_refcount``;
    a pin adds GUP_PIN_COUNTING_BIAS), ``owner`` (the handle of the allocation), ``zoneid``,
    ``mops`` (``page->mapping`` of a non-LRU movable page: 1 + the index of its
    movable_operations in the machine's table, 0 for none; fragsim/mm/migrate.py).
    ``nxt``/``prv`` are the intrusive ``page->lru``/``buddy_list``/``pcp_list`` links for every pfn,
    followed by the list heads (free_area lists, then pcp lists, then auxiliary lists, then each
    node's LRU lists).
    Per pageblock: ``pb`` (the pageblock bitmap: migratetype in bits 0-2, PB_migrate_skip bit 3).
    """

    nxt: npt.NDArray[np.int32]
    prv: npt.NDArray[np.int32]
    flags: npt.NDArray[np.int32]
    order: npt.NDArray[np.int8]
    pcpmt: npt.NDArray[np.int8]
    refcount: npt.NDArray[np.int32]
    owner: npt.NDArray[np.int32]
    zoneid: npt.NDArray[np.int8]
    mops: npt.NDArray[np.int8]
    pb: npt.NDArray[np.uint8]
    zs: npt.NDArray[np.int64]
    nr_free: npt.NDArray[np.int64]
    pcp: npt.NDArray[np.int64]
    nd: npt.NDArray[np.int64]
    vm: npt.NDArray[np.int64]
    zonelist: npt.NDArray[np.int32]
    prm: npt.NDArray[np.int64]
    tbuf: npt.NDArray[np.int64]
    drv: npt.NDArray[np.int64]
