"""The SLUB slab allocator as a memory user. Models mm/slub.c, mm/slab_common.c and
include/linux/slab.h (Linux 6.1.192): kmem caches, their slabs taken from the page allocator
and given back when empty, kmalloc's size classes, kmalloc_large, /proc/slabinfo and the
dcache/icache shrinker.

What it is for: slab pages are unmovable (or reclaimable) and a slab page returns to the buddy
allocator only when *every* object on it is freed, so long-lived objects scattered over many
slabs pin pageblocks ("slab pollution"). The allocation order decides which slab an object lands
in, and is modelled as SLUB does it::

    kmem_cache_alloc(s):                          # slab_alloc_node / ___slab_alloc
        the cpu slab, while it has free objects
        else the cpu slab becomes full (off every list), then
             the head of the cpu partial list     # slub_percpu_partial
             else get_partial_node(): the head of the node partial list, plus more slabs
                  onto the cpu partial list (up to cpu_partial_slabs / 2)
             else new_slab(): the cache's order with __GFP_NORETRY, then its min order
    kmem_cache_free(s, x):                        # do_slab_free / __slab_free
        a full slab gets frozen onto this cpu's partial list (put_cpu_partial; a list already
            holding cpu_partial_slabs slabs is first unfrozen onto the node partial list)
        an empty slab on the node partial list is discarded when nr_partial >= min_partial

Objects are ids (int64); per-object and per-slab state are NumPy arrays, and a batch of
allocations takes its new slabs in one ``alloc_pages`` call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MemoryUser, register_driver
from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm.gfp import GFP
from fragsim.mm.machine import Machine
from fragsim.mm.mmzone import PAGE_ALLOC_COSTLY_ORDER
from fragsim.mm.page import PG_slab
from fragsim.mm.slub import calculate_order, get_order, order_objects

__all__ = [
    "CACHES",
    "KMALLOC_MAX_CACHE_SIZE",
    "KmemCache",
    "Slab",
    "SlabShrinker",
    "kmalloc_index",
]

# include/linux/slab.h (6.1) slab_flags_t bits
SLAB_HWCACHE_ALIGN = 0x00002000
SLAB_CACHE_DMA = 0x00004000
SLAB_RECLAIM_ACCOUNT = 0x00020000
SLAB_PANIC = 0x00040000
SLAB_TYPESAFE_BY_RCU = 0x00080000
SLAB_MEM_SPREAD = 0x00100000
SLAB_ACCOUNT = 0x04000000

# GFP bits (module-level aliases: names with two leading underscores are mangled in classes)
GFP_F_COMP = GFP["__GFP_COMP"]
GFP_F_NOWARN = GFP["__GFP_NOWARN"]
GFP_F_NORETRY = GFP["__GFP_NORETRY"]
GFP_F_NOFAIL = GFP["__GFP_NOFAIL"]
GFP_F_NOMEMALLOC = GFP["__GFP_NOMEMALLOC"]
GFP_F_DIRECT_RECLAIM = GFP["__GFP_DIRECT_RECLAIM"]
GFP_F_RECLAIM = GFP["__GFP_RECLAIM"]
GFP_F_RECLAIMABLE = GFP["__GFP_RECLAIMABLE"]
GFP_F_ACCOUNT = GFP["GFP_KERNEL_ACCOUNT"] & ~GFP["GFP_KERNEL"]
GFP_F_DMA = GFP["__GFP_DMA"]
GFP_F_DMA32 = GFP["__GFP_DMA32"]
GFP_F_HIGHMEM = GFP["__GFP_HIGHMEM"]
GFP_KERNEL = GFP["GFP_KERNEL"]
#: GFP_SLAB_BUG_MASK (mm/slab.h): bits kmalloc_fix_flags() strips
GFP_SLAB_BUG_MASK = GFP_F_DMA32 | GFP_F_HIGHMEM

PAGE_SIZE = 4096
KMALLOC_SHIFT_LOW = 3  # x86-64: KMALLOC_MIN_SIZE = 8
KMALLOC_SHIFT_HIGH = 13  # SLUB: PAGE_SHIFT + 1
#: larger kmalloc() requests go to the page allocator (kmalloc_large)
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
MIN_PARTIAL = 5
MAX_PARTIAL = 10

# kmalloc_info[] (mm/slab_common.c): index -> size and name suffix
_KMALLOC_NAMES = {1: "96", 2: "192", 10: "1k", 11: "2k", 12: "4k", 13: "8k"}
# enum kmalloc_cache_type (CONFIG_ZONE_DMA, CONFIG_MEMCG_KMEM): creation order and name prefix
KMALLOC_NORMAL, KMALLOC_CGROUP, KMALLOC_RECLAIM, KMALLOC_DMA = range(4)
_KMALLOC_PREFIX = ("kmalloc-", "kmalloc-cg-", "kmalloc-rcl-", "dma-kmalloc-")
_KMALLOC_FLAGS = (0, SLAB_ACCOUNT, SLAB_RECLAIM_ACCOUNT, SLAB_CACHE_DMA)

# where a slab is (struct slab's frozen bit and the list it is on)
SLAB_NONE, SLAB_CPU, SLAB_CPU_PARTIAL, SLAB_NODE_PARTIAL, SLAB_FULL = range(5)
# per-object state
OBJ_FREE, OBJ_INUSE, OBJ_UNUSED = 0, 1, 2
# obj_slab: >= 0 slab id, NO_SLAB, or LARGE_BASE - handle for a kmalloc_large block
NO_SLAB = -1
LARGE_BASE = -2

#: Named caches in their creation order: name -> (s->size, slab flags, on a shrinker LRU).
#: Sizes are the s->size of the real 6.1 guest's /proc/slabinfo
#: (tests/fixtures/slabinfo/oracle-6.1-s00_start.slabinfo); flags are their kmem_cache_create
#: calls' (fs/dcache.c, fs/inode.c, kernel/fork.c, mm/rmap.c, lib/radix-tree.c, ...).
#: ext4_inode_cache is not in the fixture (the guest had no ext4): 1152 bytes as other 6.x
#: x86-64 kernels show.
CACHES: dict[str, tuple[int, int, bool]] = {
    "vmap_area": (64, SLAB_PANIC, False),
    "mm_struct": (1152, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT, False),
    "radix_tree_node": (584, SLAB_PANIC | SLAB_RECLAIM_ACCOUNT, False),
    "maple_node": (256, SLAB_PANIC, False),
    "pid": (128, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT, False),
    "anon_vma": (104, SLAB_TYPESAFE_BY_RCU | SLAB_PANIC | SLAB_ACCOUNT, False),
    "anon_vma_chain": (64, SLAB_PANIC | SLAB_ACCOUNT, False),
    "cred_jar": (192, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT, False),
    "task_struct": (6208, SLAB_PANIC | SLAB_ACCOUNT, False),
    "sighand_cache": (2112, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_TYPESAFE_BY_RCU, False),
    "signal_cache": (1152, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT, False),
    "files_cache": (704, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT, False),
    "vm_area_struct": (152, SLAB_PANIC | SLAB_ACCOUNT, False),
    "names_cache": (4096, SLAB_HWCACHE_ALIGN | SLAB_PANIC, False),
    "dentry": (192, SLAB_RECLAIM_ACCOUNT | SLAB_PANIC | SLAB_MEM_SPREAD | SLAB_ACCOUNT, True),
    "inode_cache": (640, SLAB_RECLAIM_ACCOUNT | SLAB_PANIC | SLAB_MEM_SPREAD | SLAB_ACCOUNT, True),
    "filp": (256, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT, False),
    "kernfs_node_cache": (128, SLAB_PANIC | SLAB_TYPESAFE_BY_RCU, False),
    "shmem_inode_cache": (784, SLAB_PANIC | SLAB_ACCOUNT, False),
    "proc_inode_cache": (712, SLAB_RECLAIM_ACCOUNT | SLAB_MEM_SPREAD | SLAB_ACCOUNT, False),
    "buffer_head": (104, SLAB_RECLAIM_ACCOUNT | SLAB_PANIC | SLAB_MEM_SPREAD, False),
    "skbuff_head_cache": (256, SLAB_HWCACHE_ALIGN | SLAB_PANIC, False),
    "sock_inode_cache": (
        832,
        SLAB_HWCACHE_ALIGN | SLAB_RECLAIM_ACCOUNT | SLAB_MEM_SPREAD | SLAB_ACCOUNT,
        False,
    ),
    "ext4_inode_cache": (1152, SLAB_RECLAIM_ACCOUNT | SLAB_MEM_SPREAD | SLAB_ACCOUNT, True),
}


def kmalloc_index(size: int) -> int:
    """__kmalloc_index() (include/linux/slab.h, 6.1) with KMALLOC_MIN_SIZE 8: the kmalloc
    cache index of a ``size``-byte request (1 = kmalloc-96, 2 = kmalloc-192, 3..13 = 8..8k);
    0 for size 0 (ZERO_SIZE_PTR). Sizes above KMALLOC_MAX_CACHE_SIZE have no cache."""
    if size < 0 or size > KMALLOC_MAX_CACHE_SIZE:
        raise ConfigError(f"kmalloc_index: no kmalloc cache for {size} bytes")
    if size == 0:
        return 0
    if size <= 8:
        return KMALLOC_SHIFT_LOW
    if 64 < size <= 96:
        return 1
    if 128 < size <= 192:
        return 2
    return (size - 1).bit_length()  # fls(size - 1), as kmalloc_slab() computes it


def kmalloc_type(gfp: int) -> int:
    """kmalloc_type() (6.1): DMA before RECLAIM before CGROUP (__GFP_ACCOUNT)."""
    if gfp & GFP_F_DMA:
        return KMALLOC_DMA
    if gfp & GFP_F_RECLAIMABLE:
        return KMALLOC_RECLAIM
    if gfp & GFP_F_ACCOUNT:
        return KMALLOC_CGROUP
    return KMALLOC_NORMAL


def kmalloc_cache_name(kind: int, index: int) -> str:
    size = _KMALLOC_NAMES.get(index, str(1 << index))
    return _KMALLOC_PREFIX[kind] + size


@dataclass(slots=True, eq=False)
class KmemCache:
    """Models struct kmem_cache with its kmem_cache_cpu and kmem_cache_node parts (mm/slub.c,
    include/linux/slub_def.h, Linux 6.1) as far as they decide which slab an object goes to:
    ``oo`` / ``min`` (order and objects per slab, from calculate_sizes()), ``min_partial``
    (set_min_partial), ``cpu_partial_slabs`` (set_cpu_partial), ``allocflags``, the cpu slab
    and cpu partial list of each CPU, and the partial list of each node (a dict used as an
    ordered list: insertion order is list order)."""

    name: str
    size: int
    flags: int
    index: int  # position in the Slab's cache table
    order: int
    objects: int
    min_order: int
    min_objects: int
    min_partial: int
    cpu_partial_slabs: int  # 0: no cpu partial list
    allocflags: int
    lru: bool  # objects may be put on the shrinker's LRU
    cpu_slab: list[int] = field(default_factory=list)
    cpu_partial: list[list[int]] = field(default_factory=list)  # head is the last element
    partial: list[dict[int, None]] = field(default_factory=list)
    # the LRU of unused objects (list_lru): object ids and their sequence numbers, from head
    lru_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    lru_seq: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    nr_unused: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def reclaimable(self) -> bool:
        return bool(self.flags & SLAB_RECLAIM_ACCOUNT)


@register_driver("slab")
class Slab(MemoryUser):
    """The SLUB allocator of one machine: its kmem caches, objects and slab pages.

    ``caches``: names of the named caches to create (default: every one in ``CACHES``); the
    kmalloc caches (kmalloc-*, kmalloc-cg-*, kmalloc-rcl-*, dma-kmalloc-*, 8 bytes to 8 KiB)
    always exist. ``cpu_partial=False`` models a kernel without CONFIG_SLUB_CPU_PARTIAL.
    ``slub_min_objects`` / ``slub_max_order`` / ``slub_min_order`` are the boot parameters.

    SIMPLIFICATION: node is always NUMA_NO_NODE: new slabs come from the local node ``nid``
    given to the call, get_partial() searches only that node's partial list (no
    get_any_partial), and a cpu slab of another node is never deactivated.
    SIMPLIFICATION: no cache merging (every cache is its own), no debugging metadata, no
    freelist randomisation (which object of a slab is handed out does not matter here).
    """

    name = "slab"

    def __init__(
        self,
        machine: Machine,
        *,
        caches: Iterable[str] | None = None,
        cpu_partial: bool = True,
        slub_min_objects: int = 0,
        slub_max_order: int = PAGE_ALLOC_COSTLY_ORDER,
        slub_min_order: int = 0,
    ) -> None:
        super().__init__(machine)
        self.has_cpu_partial = cpu_partial
        self._sizing = (slub_min_objects, slub_max_order, slub_min_order)
        self.caches: dict[str, KmemCache] = {}
        self.cache_list: list[KmemCache] = []
        #: kmalloc_caches[type][index]
        self.kmalloc_caches: list[list[KmemCache | None]] = [
            [None] * (KMALLOC_SHIFT_HIGH + 1) for _ in range(4)
        ]
        # per slab (indexed by slab id)
        self.slab_cache = np.zeros(0, np.int32)
        self.slab_base = np.zeros(0, np.int64)
        self.slab_objects = np.zeros(0, np.int32)
        self.slab_inuse = np.zeros(0, np.int32)
        self.slab_handle = np.zeros(0, np.int64)
        self.slab_order = np.zeros(0, np.int8)
        self.slab_nid = np.zeros(0, np.int32)
        self.slab_where = np.zeros(0, np.int8)
        self._free_slab_ids: list[int] = []
        self._nr_slab_ids = 0
        # per object (indexed by object id)
        self.obj_slab = np.zeros(0, np.int64)
        self.obj_state = np.zeros(0, np.int8)
        self.obj_lru = np.zeros(0, np.int64)
        self._nr_obj_ids = 0
        self._free_blocks: dict[int, list[int]] = {}
        self._lru_clock = 0
        # during one free batch: each freed slab's last position, and the slabs to discard
        self._last: dict[int, int] = {}
        self._discard: list[int] = []
        create_kmalloc_caches(self)
        for name in CACHES if caches is None else caches:
            if name not in CACHES:
                raise ConfigError(f"slab: unknown cache {name!r}; known: {', '.join(CACHES)}")
            size, flags, lru = CACHES[name]
            self.kmem_cache_create(name, size, flags, lru=lru)
        self.shrinker = SlabShrinker(self)
        if any(c.lru for c in self.cache_list):
            machine.register_shrinker(self.shrinker)

    # ------------------------------------------------------------------ caches
    def kmem_cache_create(
        self, name: str, size: int, flags: int = 0, *, lru: bool = False
    ) -> KmemCache:
        """kmem_cache_create() -> kmem_cache_open(): calculate_sizes() (``size`` is s->size:
        the object with its alignment), set_min_partial() and set_cpu_partial() of 6.1."""
        if name in self.caches:
            raise ConfigError(f"slab: cache {name!r} exists")
        if size <= 0:
            raise ConfigError(f"slab: cache {name!r}: object size {size} must be positive")
        min_objects, max_order, min_order = self._sizing
        m = self.machine
        order = calculate_order(size, m.nr_cpus, min_objects, max_order, min_order)
        allocflags = GFP_F_COMP if order else 0
        if flags & SLAB_CACHE_DMA:
            allocflags |= GFP_F_DMA
        if flags & SLAB_RECLAIM_ACCOUNT:
            allocflags |= GFP_F_RECLAIMABLE
        objects = order_objects(order, size)
        ilog2 = size.bit_length() - 1
        min_partial = max(MIN_PARTIAL, min(MAX_PARTIAL, ilog2 // 2))
        if not self.has_cpu_partial:
            nr_objects = 0
        elif size >= PAGE_SIZE:
            nr_objects = 6
        elif size >= 1024:
            nr_objects = 24
        elif size >= 256:
            nr_objects = 52
        else:
            nr_objects = 120
        cpu_partial_slabs = -(-nr_objects * 2 // objects)
        c = KmemCache(
            name=name,
            size=size,
            flags=flags,
            index=len(self.cache_list),
            order=order,
            objects=objects,
            min_order=get_order(size),
            min_objects=order_objects(get_order(size), size),
            min_partial=min_partial,
            cpu_partial_slabs=cpu_partial_slabs,
            allocflags=allocflags,
            lru=lru,
            cpu_slab=[-1] * m.nr_cpus,
            cpu_partial=[[] for _ in range(m.nr_cpus)],
            partial=[{} for _ in range(m.nr_nodes)],
            nr_unused=np.zeros(m.nr_nodes, np.int64),
        )
        self.caches[name] = c
        self.cache_list.append(c)
        return c

    def cache(self, name: str) -> KmemCache:
        try:
            return self.caches[name]
        except KeyError:
            raise ConfigError(f"slab: unknown cache {name!r}") from None

    def kmalloc_slab(self, size: int, gfp: int = GFP_KERNEL) -> KmemCache:
        """kmalloc_slab() (6.1): the kmalloc cache of a ``size``-byte request for ``gfp``."""
        if size <= 0 or size > KMALLOC_MAX_CACHE_SIZE:
            raise ConfigError(f"kmalloc_slab: no kmalloc cache for {size} bytes")
        c = self.kmalloc_caches[kmalloc_type(gfp)][kmalloc_index(size)]
        assert c is not None
        return c

    # ------------------------------------------------------------------ id tables
    def _new_slab_ids(self, n: int) -> npt.NDArray[np.int64]:
        take = min(n, len(self._free_slab_ids))
        ids = [self._free_slab_ids.pop() for _ in range(take)]
        first = self._nr_slab_ids
        need = first + n - take
        if need > self.slab_cache.shape[0]:
            cap = max(need, 2 * self.slab_cache.shape[0], 64)
            for a in (
                "slab_cache",
                "slab_base",
                "slab_objects",
                "slab_inuse",
                "slab_handle",
                "slab_order",
                "slab_nid",
                "slab_where",
            ):
                old = getattr(self, a)
                new = np.zeros(cap, old.dtype)
                new[: old.shape[0]] = old
                setattr(self, a, new)
        self._nr_slab_ids = need
        return np.concatenate([np.array(ids, np.int64), np.arange(first, need, dtype=np.int64)])

    def _new_objects(self, size: int) -> int:
        """A block of ``size`` object ids (reused blocks of that size first)."""
        free = self._free_blocks.get(size)
        if free:
            return free.pop()
        base = self._nr_obj_ids
        need = base + size
        if need > self.obj_slab.shape[0]:
            cap = max(need, 2 * self.obj_slab.shape[0], 1024)
            for a, fill in (("obj_slab", NO_SLAB), ("obj_state", 0), ("obj_lru", -1)):
                old = getattr(self, a)
                new = np.full(cap, fill, old.dtype)
                new[: old.shape[0]] = old
                setattr(self, a, new)
        self._nr_obj_ids = need
        return base

    def _check_ids(self, ids: npt.ArrayLike, what: str) -> npt.NDArray[np.int64]:
        x = np.asarray(ids, np.int64).reshape(-1)
        bad = (x < 0) | (x >= self._nr_obj_ids)
        if not bad.any():
            bad = self.obj_state[x] == OBJ_FREE
        if bad.any():
            raise AllocatorError(
                f"slab: {what}: object {int(x[bad][0])} is not allocated (freed twice?)"
            )
        if x.size > 1:
            xs = np.sort(x)
            dup = xs[1:] == xs[:-1]
            if dup.any():
                raise AllocatorError(f"slab: {what}: object {int(xs[1:][dup][0])} freed twice")
        return x

    # ------------------------------------------------------------------ allocation
    def kmem_cache_alloc(
        self, cache: str | KmemCache, n: int = 1, gfp: int = GFP_KERNEL, cpu: int = 0, nid: int = 0
    ) -> npt.NDArray[np.int64]:
        """kmem_cache_alloc() of ``n`` objects, one after the other (slab_alloc_node and
        ___slab_alloc, 6.1); returns their ids, -1 where the allocation failed.
        SIMPLIFICATION: the cpu's freelist and the slab's remote-free list are one pool (every
        free object of the cpu slab is available at once, as get_freelist() would find it);
        when a batch's new slabs cannot all be had, the rest of the batch fails instead of
        each later object trying the page allocator again."""
        c = cache if isinstance(cache, KmemCache) else self.cache(cache)
        if n < 0:
            raise ConfigError(f"kmem_cache_alloc: cannot allocate {n} objects")
        if not 0 <= cpu < self.machine.nr_cpus:
            raise ConfigError(f"kmem_cache_alloc: no cpu {cpu}")
        out = np.full(n, -1, np.int64)
        pos = 0
        where = self.slab_where
        while pos < n:
            s = c.cpu_slab[cpu]
            if s >= 0:
                free = int(self.slab_objects[s] - self.slab_inuse[s])
                if free > 0:
                    k = min(free, n - pos)
                    base = int(self.slab_base[s])
                    st = self.obj_state[base : base + int(self.slab_objects[s])]
                    slots = np.flatnonzero(st == OBJ_FREE)[:k]
                    st[slots] = OBJ_INUSE
                    self.slab_inuse[s] += k
                    out[pos : pos + k] = base + slots
                    pos += k
                    continue
                # no freelist left: c->slab = NULL, the slab is full and on no list
                self.slab_where[s] = SLAB_FULL
                c.cpu_slab[cpu] = -1
            # new_slab: the cpu partial list first
            if c.cpu_partial[cpu]:
                s = c.cpu_partial[cpu].pop()
                where[s] = SLAB_CPU
                c.cpu_slab[cpu] = s
                continue
            if self.get_partial_node(c, nid, cpu):
                continue
            need = -(-(n - pos) // c.objects)
            got = self.new_slabs(c, need, gfp, cpu, nid)
            if got.size == 0:
                break  # slab_out_of_memory: the rest fail
            where = self.slab_where  # (new_slabs may have grown the arrays)
            objs = self.slab_objects[got].astype(np.int64)
            cap = int(objs.sum())
            k = min(cap, n - pos)
            ids = np.concatenate(
                [
                    np.arange(b, b + o, dtype=np.int64)
                    for b, o in zip(self.slab_base[got], objs, strict=True)
                ]
            )[:k]
            self.obj_state[ids] = OBJ_INUSE
            used = np.minimum(np.maximum(k - (np.cumsum(objs) - objs), 0), objs)
            self.slab_inuse[got] = used
            where[got[:-1]] = SLAB_FULL  # each exhausted before the next was taken
            where[got[-1]] = SLAB_CPU
            c.cpu_slab[cpu] = int(got[-1])
            out[pos : pos + k] = ids
            pos += k
            if got.size < need:
                break  # some slab allocations failed: the objects they would hold fail
        return out

    def get_partial_node(self, c: KmemCache, nid: int, cpu: int) -> bool:
        """get_partial_node() (6.1): the head of the node's partial list becomes the cpu slab
        (acquire_slab); with a cpu partial list, more slabs follow onto it
        (put_cpu_partial without drain) until more than cpu_partial_slabs / 2 were taken."""
        lst = c.partial[nid]
        if not lst:
            return False
        first = True
        taken = 0
        for s in list(lst):
            del lst[s]
            if first:
                self.slab_where[s] = SLAB_CPU
                c.cpu_slab[cpu] = s
                first = False
            else:
                self.put_cpu_partial(c, s, cpu, drain=False, pos=-1)
                taken += 1
            if not c.cpu_partial_slabs or taken > c.cpu_partial_slabs // 2:
                break
        return True

    def new_slabs(
        self, c: KmemCache, count: int, gfp: int, cpu: int, nid: int
    ) -> npt.NDArray[np.int64]:
        """allocate_slab() (6.1) for ``count`` slabs in one batch: the cache's order with
        ``(flags | __GFP_NOWARN | __GFP_NORETRY) & ~__GFP_NOFAIL`` (and no direct reclaim, but
        __GFP_NOMEMALLOC, when that order is above the minimum), then for each failure the
        minimum order with the caller's flags; alloc_slab_page() sets PG_slab on the head and
        account_slab() adds the pages to nr_slab_(un)reclaimable. Returns the new slab ids in
        request order (failed ones left out).
        SIMPLIFICATION: the batch tries every slab at the cache's order before the fallbacks,
        where the kernel falls back slab by slab."""
        m = self.machine
        flags = gfp
        if flags & GFP_SLAB_BUG_MASK:
            flags &= ~GFP_SLAB_BUG_MASK  # kmalloc_fix_flags
        flags |= c.allocflags
        alloc_gfp = (flags | GFP_F_NOWARN | GFP_F_NORETRY) & ~GFP_F_NOFAIL
        if (alloc_gfp & GFP_F_DIRECT_RECLAIM) and c.order > c.min_order:
            alloc_gfp = (alloc_gfp | GFP_F_NOMEMALLOC) & ~GFP_F_RECLAIM
        hs = self.alloc_pages(count, alloc_gfp, c.order, flags=PG_slab, cpu=cpu, nid=nid)
        orders = np.full(count, c.order, np.int8)
        failed = np.flatnonzero(hs < 0)
        if failed.size:
            hs2 = self.alloc_pages(failed.size, flags, c.min_order, flags=PG_slab, cpu=cpu, nid=nid)
            hs[failed] = hs2
            orders[failed] = c.min_order
        ok = hs >= 0
        hs, orders = hs[ok], orders[ok]
        if hs.size == 0:
            return np.zeros(0, np.int64)
        ids = self._new_slab_ids(hs.size)
        pfns = self.pfns(hs)
        nids = m.pfn_to_nid(pfns)
        objects = np.where(orders == c.order, c.objects, c.min_objects)
        self.slab_cache[ids] = c.index
        self.slab_objects[ids] = objects
        self.slab_inuse[ids] = 0
        self.slab_handle[ids] = hs
        self.slab_order[ids] = orders
        self.slab_nid[ids] = nids
        self.slab_where[ids] = SLAB_NONE
        for i, s in enumerate(ids):
            base = self._new_objects(int(objects[i]))
            self.slab_base[s] = base
            self.obj_slab[base : base + int(objects[i])] = s
        stat = "nr_slab_reclaimable" if c.reclaimable else "nr_slab_unreclaimable"
        pages = np.bincount(nids, weights=1 << orders.astype(np.int64), minlength=m.nr_nodes)
        for node in np.flatnonzero(pages):
            m.mod_node_page_state(int(node), stat, int(pages[node]))
        return ids

    def kmalloc(
        self, size: int, n: int = 1, gfp: int = GFP_KERNEL, cpu: int = 0, nid: int = 0
    ) -> npt.NDArray[np.int64]:
        """kmalloc() of ``n`` objects of ``size`` bytes (__do_kmalloc_node, 6.1): the kmalloc
        cache kmalloc_slab() picks, or above KMALLOC_MAX_CACHE_SIZE a compound page of
        get_order(size) straight from the page allocator (kmalloc_large)."""
        if size <= 0:
            raise ConfigError(f"kmalloc: size {size} must be positive")
        if size > KMALLOC_MAX_CACHE_SIZE:
            return self.kmalloc_large(size, n, gfp, cpu, nid)
        return self.kmem_cache_alloc(self.kmalloc_slab(size, gfp), n, gfp, cpu, nid)

    def kmalloc_large(
        self, size: int, n: int = 1, gfp: int = GFP_KERNEL, cpu: int = 0, nid: int = 0
    ) -> npt.NDArray[np.int64]:
        """__kmalloc_large_node() (6.1): alloc_pages(flags | __GFP_COMP, get_order(size)),
        counted in nr_slab_unreclaimable; no PG_slab."""
        m = self.machine
        order = get_order(size)
        flags = gfp & ~GFP_SLAB_BUG_MASK
        hs = self.alloc_pages(n, flags | GFP_F_COMP, order, cpu=cpu, nid=nid)
        out = np.full(n, -1, np.int64)
        ok = np.flatnonzero(hs >= 0)
        for i in ok:
            base = self._new_objects(1)
            self.obj_slab[base] = LARGE_BASE - int(hs[i])
            self.obj_state[base] = OBJ_INUSE
            out[i] = base
        if ok.size:
            nids = m.pfn_to_nid(self.pfns(hs[ok]))
            for node, cnt in zip(*np.unique(nids, return_counts=True), strict=True):
                m.mod_node_page_state(int(node), "nr_slab_unreclaimable", int(cnt) << order)
        return out

    # ------------------------------------------------------------------ freeing
    def kmem_cache_free(self, cache: str | KmemCache, ids: npt.ArrayLike, cpu: int = 0) -> None:
        """kmem_cache_free() of each object of ``ids``, in order (do_slab_free and
        __slab_free, 6.1); every object must belong to ``cache``."""
        c = cache if isinstance(cache, KmemCache) else self.cache(cache)
        x = self._check_ids(ids, f"kmem_cache_free({c.name})")
        s = self.obj_slab[x]
        wrong = (s < 0) | (self.slab_cache[np.maximum(s, 0)] != c.index)
        if wrong.any():
            raise AllocatorError(
                f"kmem_cache_free({c.name}): object {int(x[wrong][0])} is not of this cache"
            )
        self._slab_free(x, cpu)

    def kfree(self, ids: npt.ArrayLike, cpu: int = 0) -> None:
        """kfree() of each object of ``ids`` in order: a slab object goes back to its slab
        (__slab_free), a kmalloc_large block to the page allocator (free_large_kmalloc)."""
        x = self._check_ids(ids, "kfree")
        large = self.obj_slab[x] <= LARGE_BASE
        if large.any():
            lx = x[large]
            hs = LARGE_BASE - self.obj_slab[lx]
            m = self.machine
            pfns = self.pfns(hs)
            nids = m.pfn_to_nid(pfns)
            pages = np.bincount(nids, weights=1 << m.state.order[pfns].astype(np.int64))
            for node in np.flatnonzero(pages):
                m.mod_node_page_state(int(node), "nr_slab_unreclaimable", -int(pages[node]))
            self.free_pages(hs, cpu)
            self.obj_slab[lx] = NO_SLAB
            self.obj_state[lx] = OBJ_FREE
            self._free_blocks.setdefault(1, []).extend(int(i) for i in lx)
        self._slab_free(x[~large], cpu)

    def _slab_free(self, x: npt.NDArray[np.int64], cpu: int) -> None:
        """The objects' frees in order, as a batch: the counts change at once; the list moves
        of __slab_free (a full slab's first free, a slab's last free) are replayed in the
        objects' order, so the result is that of freeing them one by one."""
        if x.size == 0:
            return
        self._lru_del(x)
        self.obj_state[x] = OBJ_FREE
        slabs = self.obj_slab[x]
        order = np.argsort(slabs, kind="stable")
        ss = slabs[order]
        starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
        ends = np.r_[starts[1:], ss.size]
        uniq = ss[starts]
        first_pos = order[starts]
        last_pos = order[ends - 1]
        self.slab_inuse[uniq] -= (ends - starts).astype(np.int32)
        was_full = self.slab_where[uniq] == SLAB_FULL
        empty = self.slab_inuse[uniq] == 0
        if not (was_full.any() or empty.any()):
            return
        # events: (pos, kind, slab); kind 0 = first free of a full slab, 1 = slab now empty
        ev = [(int(p), 0, int(s)) for p, s in zip(first_pos[was_full], uniq[was_full], strict=True)]
        ev += [(int(p), 1, int(s)) for p, s in zip(last_pos[empty], uniq[empty], strict=True)]
        ev.sort()
        self._last = dict(zip(uniq.tolist(), last_pos.tolist(), strict=True))
        self._discard = []
        for pos, kind, s in ev:
            c = self.cache_list[int(self.slab_cache[s])]
            w = self.slab_where[s]
            if kind == 0:
                if c.cpu_partial_slabs:
                    self.put_cpu_partial(c, s, cpu, drain=True, pos=pos)
                elif self._empty_at(s, pos) and len(c.partial[self.slab_nid[s]]) >= c.min_partial:
                    self._discard.append(s)
                    self.slab_where[s] = SLAB_NONE
                else:
                    self.add_partial(c, s)
            elif w == SLAB_NODE_PARTIAL:
                lst = c.partial[self.slab_nid[s]]
                if len(lst) >= c.min_partial:
                    del lst[s]
                    self._discard.append(s)
                    self.slab_where[s] = SLAB_NONE
        self._last = {}
        if self._discard:
            self.discard_slabs(np.array(self._discard, np.int64), cpu)
        self._discard = []

    def _empty_at(self, s: int, pos: int) -> bool:
        """Whether slab ``s`` holds no object once the batch's frees before ``pos`` (and at
        it) are done."""
        return bool(self.slab_inuse[s] == 0) and self._last.get(s, -1) <= pos

    def add_partial(self, c: KmemCache, s: int) -> None:
        """add_partial(n, slab, DEACTIVATE_TO_TAIL)."""
        self.slab_where[s] = SLAB_NODE_PARTIAL
        c.partial[int(self.slab_nid[s])][s] = None

    def put_cpu_partial(self, c: KmemCache, s: int, cpu: int, drain: bool, pos: int) -> None:
        """put_cpu_partial() (6.1): freeze the slab onto the head of the cpu's partial list; a
        list that already holds cpu_partial_slabs slabs is first unfrozen (with drain)."""
        lst = c.cpu_partial[cpu]
        if drain and len(lst) >= c.cpu_partial_slabs:
            c.cpu_partial[cpu] = []
            self.unfreeze_partials(c, lst[::-1], pos)
            lst = c.cpu_partial[cpu]
        lst.append(s)
        self.slab_where[s] = SLAB_CPU_PARTIAL

    def unfreeze_partials(self, c: KmemCache, slabs: list[int], pos: int) -> None:
        """__unfreeze_partials() (6.1): each slab, from the list's head, goes to the tail of
        its node's partial list, or is discarded when empty and the node already has
        min_partial partial slabs."""
        for s in slabs:
            nid = int(self.slab_nid[s])
            if self._empty_at(s, pos) and len(c.partial[nid]) >= c.min_partial:
                self.slab_where[s] = SLAB_NONE
                self._discard.append(s)  # discarded once the list is walked
            else:
                self.add_partial(c, s)

    def discard_slabs(self, slabs: npt.NDArray[np.int64], cpu: int = 0) -> None:
        """discard_slab() (6.1) of each slab: dec_slabs_node, then free_slab(): PG_slab
        cleared, the pages back to the page allocator, and the pages taken off
        nr_slab_(un)reclaimable (unaccount_slab)."""
        m = self.machine
        for s in slabs.tolist():
            c = self.cache_list[int(self.slab_cache[s])]
            stat = "nr_slab_reclaimable" if c.reclaimable else "nr_slab_unreclaimable"
            m.mod_node_page_state(int(self.slab_nid[s]), stat, -(1 << int(self.slab_order[s])))
            base, nobj = int(self.slab_base[s]), int(self.slab_objects[s])
            self.obj_slab[base : base + nobj] = NO_SLAB
            self._free_blocks.setdefault(nobj, []).append(base)
            self.slab_where[s] = SLAB_NONE
            self.slab_cache[s] = -1
            self._free_slab_ids.append(s)
        hs = self.slab_handle[slabs]
        self.slab_handle[slabs] = -1  # (free_pages_prepare clears PG_slab: __folio_clear_slab)
        self.free_pages(hs, cpu)

    # ------------------------------------------------------------------ the LRU
    def mark_unused(self, ids: npt.ArrayLike) -> None:
        """The objects' last user let go, but they stay cached: put them at the tail of their
        cache's LRU (d_lru_add / inode_lru_list_add, in ``ids`` order), where the shrinker
        finds them. Each must be in use, in a cache with an LRU."""
        x = self._check_ids(ids, "mark_unused")
        s = self.obj_slab[x]
        caches = np.where(s >= 0, self.slab_cache[np.maximum(s, 0)], -1)
        for ci in np.unique(caches).tolist():
            if ci < 0 or not self.cache_list[ci].lru:
                what = "kmalloc_large" if ci < 0 else self.cache_list[ci].name
                raise ConfigError(f"mark_unused: {what} objects have no LRU")
        if (self.obj_state[x] != OBJ_INUSE).any():
            raise AllocatorError(
                f"mark_unused: object {int(x[self.obj_state[x] != OBJ_INUSE][0])} already unused"
            )
        seq = np.arange(self._lru_clock, self._lru_clock + x.size, dtype=np.int64)
        self._lru_clock += x.size
        self.obj_state[x] = OBJ_UNUSED
        self.obj_lru[x] = seq
        for ci in np.unique(caches).tolist():
            c = self.cache_list[ci]
            sel = caches == ci
            c.lru_ids = np.concatenate([c.lru_ids, x[sel]])
            c.lru_seq = np.concatenate([c.lru_seq, seq[sel]])
            c.nr_unused += np.bincount(self.slab_nid[s[sel]], minlength=c.nr_unused.size)

    def mark_used(self, ids: npt.ArrayLike) -> None:
        """Unused objects are used again (a cache hit: dget of an unused dentry): off the LRU."""
        x = self._check_ids(ids, "mark_used")
        if (self.obj_state[x] != OBJ_UNUSED).any():
            raise AllocatorError(
                f"mark_used: object {int(x[self.obj_state[x] != OBJ_UNUSED][0])} is not unused"
            )
        self._lru_del(x)

    def _lru_del(self, x: npt.NDArray[np.int64]) -> None:
        on = x[self.obj_state[x] == OBJ_UNUSED]
        if on.size == 0:
            return
        self.obj_state[on] = OBJ_INUSE
        self.obj_lru[on] = -1
        s = self.obj_slab[on]
        ci = self.slab_cache[s]
        for i in np.unique(ci).tolist():
            c = self.cache_list[i]
            c.nr_unused -= np.bincount(self.slab_nid[s[ci == i]], minlength=c.nr_unused.size)
            live = int(c.nr_unused.sum())
            if c.lru_ids.size > 64 and c.lru_ids.size > 2 * live:  # drop stale entries
                keep = self.obj_lru[c.lru_ids] == c.lru_seq
                c.lru_ids, c.lru_seq = c.lru_ids[keep], c.lru_seq[keep]

    def lru_oldest(self, c: KmemCache, nid: int, nr: int) -> npt.NDArray[np.int64]:
        """Up to ``nr`` unused objects of the cache on node ``nid``, oldest first."""
        out: list[npt.NDArray[np.int64]] = []
        got = 0
        start = 0
        chunk = max(2 * nr, 64)
        while got < nr and start < c.lru_ids.size:
            ids = c.lru_ids[start : start + chunk]
            ok = self.obj_lru[ids] == c.lru_seq[start : start + chunk]
            ok &= self.slab_nid[self.obj_slab[ids]] == nid
            sel = ids[ok][: nr - got]
            out.append(sel)
            got += sel.size
            start += chunk
            chunk *= 2
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    # ------------------------------------------------------------------ /proc
    def get_slabinfo(self, c: KmemCache) -> tuple[int, int, int]:
        """get_slabinfo() (6.1): (active_objs, num_objs, num_slabs); active counts every
        object not free on a node partial slab (cpu and cpu partial slabs count as active)."""
        n = self._nr_slab_ids
        mine = self.slab_cache[:n] == c.index
        live = mine & (self.slab_where[:n] != SLAB_NONE) & (self.slab_handle[:n] >= 0)
        objs = int(self.slab_objects[:n][live].sum())
        part = mine & (self.slab_where[:n] == SLAB_NODE_PARTIAL)
        free = int((self.slab_objects[:n][part] - self.slab_inuse[:n][part]).sum())
        return objs - free, objs, int(np.count_nonzero(live))

    def slabinfo(self) -> str:
        """/proc/slabinfo (slab_show / cache_show, 6.1) for this instance's caches, newest
        first as slab_caches is listed; SLUB prints 0 for the tunables and sharedavail."""
        lines = [
            "slabinfo - version: 2.1",
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
            " : tunables <limit> <batchcount> <sharedfactor>"
            " : slabdata <active_slabs> <num_slabs> <sharedavail>",
        ]
        for c in reversed(self.cache_list):
            active, objs, slabs = self.get_slabinfo(c)
            lines.append(
                f"{c.name:<17} {active:6d} {objs:6d} {c.size:6d} {c.objects:4d} {1 << c.order:4d}"
                f" : tunables {0:4d} {0:4d} {0:4d} : slabdata {slabs:6d} {slabs:6d} {0:6d}"
            )
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ checking
    def check(self) -> None:
        """Recompute every count from the per-object state and raise AllocatorError on a
        difference: objects in use per slab, list membership, slab pages (PG_slab, owner) and
        the nr_slab_* gauges."""
        m = self.machine
        n = self._nr_slab_ids
        live = np.flatnonzero(self.slab_cache[:n] >= 0)
        used = self.obj_state[: self._nr_obj_ids] != OBJ_FREE
        os_ = self.obj_slab[: self._nr_obj_ids]
        cnt = np.bincount(os_[used & (os_ >= 0)], minlength=n)
        if (cnt[live] != self.slab_inuse[live]).any():
            s = live[cnt[live] != self.slab_inuse[live]][0]
            raise AllocatorError(f"slab {s}: inuse {self.slab_inuse[s]}, objects used {cnt[s]}")
        if ((self.slab_inuse[live] < 0) | (self.slab_inuse[live] > self.slab_objects[live])).any():
            raise AllocatorError("slab: inuse out of range")
        if (self.obj_state[: self._nr_obj_ids][os_ == NO_SLAB] != OBJ_FREE).any():
            raise AllocatorError("slab: a used object has no slab")
        pfns = self.pfns(self.slab_handle[live])
        if not (m.state.flags[pfns] & PG_slab).all():
            raise AllocatorError("slab: a slab page lacks PG_slab")
        expect = {
            "nr_slab_reclaimable": [0] * m.nr_nodes,
            "nr_slab_unreclaimable": [0] * m.nr_nodes,
        }
        for s in live.tolist():
            c = self.cache_list[int(self.slab_cache[s])]
            w = int(self.slab_where[s])
            stat = "nr_slab_reclaimable" if c.reclaimable else "nr_slab_unreclaimable"
            expect[stat][int(self.slab_nid[s])] += 1 << int(self.slab_order[s])
            nid = int(self.slab_nid[s])
            on_partial = s in c.partial[nid]
            on_cpu = s in c.cpu_slab
            on_cpu_partial = any(s in lst for lst in c.cpu_partial)
            ok = {
                SLAB_CPU: on_cpu and not on_partial and not on_cpu_partial,
                SLAB_CPU_PARTIAL: on_cpu_partial and not on_partial and not on_cpu,
                SLAB_NODE_PARTIAL: on_partial and not on_cpu and not on_cpu_partial,
                SLAB_FULL: not (on_partial or on_cpu or on_cpu_partial),
            }.get(w, False)
            if not ok:
                raise AllocatorError(f"slab {s} ({c.name}): list state {w} is inconsistent")
            if w == SLAB_FULL and self.slab_inuse[s] != self.slab_objects[s]:
                raise AllocatorError(f"slab {s} ({c.name}): on no list but not full")
            if w == SLAB_NODE_PARTIAL and self.slab_inuse[s] == self.slab_objects[s]:
                raise AllocatorError(f"slab {s} ({c.name}): full but on the partial list")
        large = np.flatnonzero(os_ <= LARGE_BASE)
        if large.size:
            lp = self.pfns(LARGE_BASE - os_[large])
            lnid = m.pfn_to_nid(lp)
            for p, nid in zip(lp.tolist(), lnid.tolist(), strict=True):
                expect["nr_slab_unreclaimable"][nid] += 1 << int(m.state.order[p])
        for stat, per_node in expect.items():
            for nid, v in enumerate(per_node):
                if m.node_stat[nid][stat] != v:
                    raise AllocatorError(
                        f"slab: {stat} node {nid}: {m.node_stat[nid][stat]} != {v}"
                    )
        unused = os_[(self.obj_state[: self._nr_obj_ids] == OBJ_UNUSED) & (os_ >= 0)]
        for c in self.cache_list:
            if c.lru:
                on = self.slab_cache[unused] == c.index
                if int(np.count_nonzero(on)) != int(c.nr_unused.sum()):
                    raise AllocatorError(f"slab: {c.name}: LRU count is off")

    def __repr__(self) -> str:
        nr = int(np.count_nonzero(self.slab_cache[: self._nr_slab_ids] >= 0))
        return f"<Slab {len(self.cache_list)} caches, {nr} slabs>"


def create_kmalloc_caches(slab: Slab) -> None:
    """create_kmalloc_caches() (mm/slab_common.c, 6.1): for each kmalloc type (normal, cg,
    rcl, dma) the caches 8 .. 8k, kmalloc-96 right after kmalloc-64 and kmalloc-192 after
    kmalloc-128 (new_kmalloc_cache: rcl caches get SLAB_RECLAIM_ACCOUNT, cg SLAB_ACCOUNT, dma
    SLAB_CACHE_DMA)."""
    for kind in range(4):
        for i in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1):
            idx = [i] + ([1] if i == 6 else [2] if i == 7 else [])
            for j in idx:
                size = {1: 96, 2: 192}.get(j, 1 << j)
                c = slab.kmem_cache_create(kmalloc_cache_name(kind, j), size, _KMALLOC_FLAGS[kind])
                slab.kmalloc_caches[kind][j] = c


@dataclass(slots=True, eq=False)
class SlabShrinker:
    """The superblock shrinker of the dentry and inode caches (super_cache_count /
    super_cache_scan of fs/super.c, Linux 6.1): it counts the unused objects of the caches with
    an LRU and frees the oldest ones, dividing ``nr_to_scan`` between the caches in proportion
    to their unused objects (mult_frac), as super_cache_scan divides it between dentries and
    inodes. Freeing scattered objects rarely empties a whole slab: that is slab pollution.

    The count is scaled by vm.vfs_cache_pressure (vfs_pressure_ratio: 100 is neutral, 0 never
    reclaims, more reclaims harder).

    SIMPLIFICATION: no DCACHE_REFERENCED / I_REFERENCED second chance (list_lru_walk rotates
    referenced entries), and freeing a dentry does not free its inode (the workload couples
    them)."""

    slab: Slab
    seeks: int = 2  # DEFAULT_SEEKS

    def count_objects(self, nid: int) -> int:
        unused = int(sum(int(c.nr_unused[nid]) for c in self.slab.cache_list if c.lru))
        return unused * self.slab.machine.vfs_cache_pressure // 100  # vfs_pressure_ratio()

    def scan_objects(self, nid: int, nr_to_scan: int) -> int:
        """Free up to ``nr_to_scan`` unused objects on node ``nid``; returns how many."""
        caches = [c for c in self.slab.cache_list if c.lru]
        total = sum(int(c.nr_unused[nid]) for c in caches)
        if not total or nr_to_scan <= 0:
            return 0
        freed = 0
        for c in caches:
            nr = nr_to_scan * int(c.nr_unused[nid]) // total  # mult_frac
            if nr <= 0:
                continue
            victims = self.slab.lru_oldest(c, nid, nr)
            if victims.size:
                self.slab.kmem_cache_free(c, victims)
                freed += int(victims.size)
        return freed
