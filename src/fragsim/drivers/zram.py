"""zram: a compressed RAM block device used as swap. Models drivers/block/zram/zram_drv.c of
Linux 6.1.192 (__zram_bvec_write, zram_free_page, mm_stat_show, compact_store,
mem_limit_store) on a zsmalloc pool (fragsim/drivers/zsmalloc.py).

Each slot (a PAGE_SIZE sector of the disk) stores one page::

    write (swap_out): same-filled page  -> no object, ZRAM_SAME, same_pages++
                      else comp_len = the compressed size (>= huge_class_size: PAGE_SIZE,
                           ZRAM_HUGE, huge_pages++, huge_pages_since++)
                           zs_malloc(comp_len, __GFP_KSWAPD_RECLAIM | __GFP_NOWARN |
                                     __GFP_HIGHMEM | __GFP_MOVABLE)
                           failed: writestall++, retry with GFP_NOIO | __GFP_HIGHMEM |
                                   __GFP_MOVABLE; failed again: the write fails
                           pool pages > mem_limit: free the object, the write fails
    free (swap_in / swap_free): zram_free_page: zs_free, the stats go down

The compressed sizes come from a configurable distribution drawn with the machine's seeded
generator. The device offers the swap-device protocol of ``Machine.swapon``.

SIMPLIFICATION: compression is not run: each page's compressed size is drawn from the
distribution (and whether it is same-filled from ``same_filled``).
SIMPLIFICATION: the device picks the slot of each page itself (the lowest free ones), where the
kernel's swap allocator (get_swap_pages) would choose the offsets.
SIMPLIFICATION: no writeback device, idle tracking or recompression (CONFIG_ZRAM_WRITEBACK,
CONFIG_ZRAM_MEMORY_TRACKING).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MemoryUser, register_driver
from fragsim.drivers.zsmalloc import PAGE_SHIFT, PAGE_SIZE, ZsPool
from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm.gfp import (
    __GFP_HIGHMEM,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MOVABLE,
    __GFP_NOWARN,
    GFP_NOIO,
)
from fragsim.mm.machine import Machine

__all__ = ["COMPRESSION_PROFILES", "Zram"]

#: the gfp of zram_write_page's first zs_malloc (no direct reclaim: it cannot sleep there)
ZRAM_GFP_FAST = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN | __GFP_HIGHMEM | __GFP_MOVABLE
#: the gfp of the retry (may reclaim, no IO)
ZRAM_GFP_SLOW = GFP_NOIO | __GFP_HIGHMEM | __GFP_MOVABLE

#: named compressed-size distributions: (probability, compressed size in bytes).
#: Illustrative shapes, not measurements: "typical" is about 3:1 on average with a tail of
#: incompressible pages; "incompressible" stores every page as a huge object.
COMPRESSION_PROFILES: dict[str, list[tuple[float, int]]] = {
    "typical": [
        (0.10, 256),
        (0.20, 768),
        (0.30, 1200),
        (0.20, 1800),
        (0.12, 2600),
        (0.08, 4096),
    ],
    "compressible": [(0.5, 200), (0.3, 600), (0.2, 1000)],
    "incompressible": [(1.0, 4096)],
}

ZRAM_SAME = 1 << 0
ZRAM_HUGE = 1 << 1
#: the per-driver salt of the generator (seeded from the machine's seed)
RNG_SALT = 0x7A72_616D  # "zram"


def _distribution(spec: str | Sequence[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(spec, str):
        if spec not in COMPRESSION_PROFILES:
            raise ConfigError(
                f"zram compression: unknown distribution {spec!r}; known: "
                f"{', '.join(sorted(COMPRESSION_PROFILES))}"
            )
        spec = COMPRESSION_PROFILES[spec]
    try:
        p = np.array([float(a) for a, _ in spec])
        s = np.array([int(b) for _, b in spec], np.int64)
    except (TypeError, ValueError):
        raise ConfigError(
            f"zram compression: expected (probability, compressed_size) pairs, got {spec!r}"
        ) from None
    if p.size == 0 or (p < 0).any() or abs(p.sum() - 1.0) > 1e-9:
        raise ConfigError(f"zram compression: probabilities {p.tolist()} must be >= 0, sum 1")
    if (s <= 0).any():
        raise ConfigError(f"zram compression: compressed sizes {s.tolist()} must be > 0")
    return p / p.sum(), s


@register_driver("zram")
class Zram(MemoryUser):
    """struct zram (drivers/block/zram/zram_drv.h, 6.1): a disk of ``disksize`` bytes on a
    zsmalloc pool, ``mem_limit`` bytes (0: none), compressed sizes from ``compression`` (a
    name of COMPRESSION_PROFILES or (probability, size) pairs), ``same_filled`` the fraction of
    same-filled pages; ``movable`` is the pool's switch (see ZsPool)."""

    def __init__(
        self,
        machine: Machine,
        *,
        disksize: int,
        mem_limit: int = 0,
        compression: str | Sequence[tuple[float, int]] = "typical",
        same_filled: float = 0.0,
        movable: bool = True,
        disk_name: str = "zram0",
    ) -> None:
        super().__init__(machine)
        if not isinstance(disksize, int) or disksize <= 0:
            raise ConfigError(f"zram disksize: {disksize!r} must be a positive number of bytes")
        if not 0.0 <= same_filled <= 1.0:
            raise ConfigError(f"zram same_filled: {same_filled!r} is not a fraction (0..1)")
        self.disk_name = disk_name
        self.disksize = -(-disksize // PAGE_SIZE) * PAGE_SIZE  # PAGE_ALIGN
        self.limit_pages = 0
        self.mem_limit = mem_limit
        self._p, self._sizes = _distribution(compression)
        self.same_filled = float(same_filled)
        self.rng = np.random.default_rng([machine.seed, RNG_SALT])
        #: zs_create_pool(disk_name) at disksize_store (registers the pool's shrinker)
        self.mem_pool = ZsPool(machine, movable=movable, pool_name=disk_name)
        nr = self.disksize >> PAGE_SHIFT
        self.table_handle = np.full(nr, -1, np.int64)  # zram->table[index].handle
        self.table_size = np.zeros(nr, np.int32)  # obj_size
        self.table_flags = np.zeros(nr, np.int8)  # ZRAM_SAME / ZRAM_HUGE
        self.used = np.zeros(nr, bool)
        self._nr_used = 0
        self._low_free = 0  # no slot below it is free
        # struct zram_stats
        self.compr_data_size = 0
        self.pages_stored = 0
        self.same_pages = 0
        self.huge_pages = 0
        self.huge_pages_since = 0
        self.max_used_pages = 0
        self.writestall = 0
        self.failed_writes = 0

    # ------------------------------------------------------------------ attributes
    @property
    def mem_limit(self) -> int:
        return self.limit_pages << PAGE_SHIFT

    @mem_limit.setter
    def mem_limit(self, limit: int) -> None:
        """mem_limit_store() (6.1): PAGE_ALIGN(limit) >> PAGE_SHIFT pages (0: no limit)."""
        if not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"zram mem_limit: {limit!r} must be a number of bytes >= 0")
        self.limit_pages = -(-limit // PAGE_SIZE)

    def compact(self) -> int:
        """compact_store() (6.1): zs_compact() on the pool; the pages it freed."""
        return self.mem_pool.zs_compact()

    def mm_stat(self) -> str:
        """/sys/block/zramN/mm_stat (mm_stat_show, 6.1)."""
        return "%8u %8u %8u %8u %8d %8u %8u %8u %8u\n" % (  # noqa: UP031 (kernel printf)
            self.pages_stored << PAGE_SHIFT,
            self.compr_data_size,
            self.mem_pool.zs_get_total_pages() << PAGE_SHIFT,
            self.limit_pages << PAGE_SHIFT,
            self.max_used_pages << PAGE_SHIFT,
            self.same_pages,
            self.mem_pool.pages_compacted,
            self.huge_pages,
            self.huge_pages_since,
        )

    # ------------------------------------------------------------------ writes and frees
    def update_used_max(self, pages: int) -> None:
        self.max_used_pages = max(self.max_used_pages, pages)

    def zram_write_page(self, index: int, same: bool, comp_len: int) -> bool:
        """__zram_bvec_write() (6.1) of one page into slot ``index``; False if it failed."""
        ok = self._write(np.array([index], np.int64), np.array([same]), np.array([comp_len]))
        return bool(ok[0])

    def _store_object(self, comp_len: int) -> int:
        """The zs_malloc part of __zram_bvec_write() (6.1) for one object that needs a new
        zspage (or finds the pool over mem_limit): the fast gfp, the retry, the used-max and
        mem_limit checks; the handle, or -1 (the write fails)."""
        pool = self.mem_pool
        handle = pool.zs_malloc(comp_len, ZRAM_GFP_FAST)
        if handle < 0:
            self.writestall += 1
            handle = pool.zs_malloc(comp_len, ZRAM_GFP_SLOW)
            if handle < 0:
                return -1
        alloced_pages = pool.zs_get_total_pages()
        self.update_used_max(alloced_pages)
        if self.limit_pages and alloced_pages > self.limit_pages:
            pool.zs_free(handle)
            return -1
        return handle

    def _write(
        self,
        slots: npt.NDArray[np.int64],
        same: npt.NDArray[np.bool_],
        comp: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """__zram_bvec_write() (6.1) of pages into ``slots``, in order: same-filled pages take
        no object; the others are stored by the pool a batch at a time, the zspages they need
        allocated ahead when no allocation can fail (``ZsPool.prefill``; without a mem_limit,
        which is checked per new zspage), else one by one with the retry and the limit
        (``_store_object``). Returns which writes worked."""
        ok = np.ones(slots.size, bool)
        nz = np.flatnonzero(~same)
        lens = comp[nz].astype(np.int64)
        lens[lens >= self.mem_pool.huge_class_size] = PAGE_SIZE
        handles = np.full(nz.size, -1, np.int64)
        pool = self.mem_pool
        cidx = pool.class_indexes(lens)
        if not self.limit_pages:  # (the limit is checked per new zspage: one at a time)
            pool.prefill(cidx, ZRAM_GFP_FAST)
        i = 0
        while (i := pool.zs_malloc_run(lens, handles, i, self.limit_pages, cidx)) < nz.size:
            handles[i] = self._store_object(int(lens[i]))
            i += 1
        pool.finish_prefill()
        if pool.zs_get_total_pages() > self.max_used_pages:
            self.update_used_max(pool.zs_get_total_pages())
        stored = handles >= 0
        ok[nz[~stored]] = False
        s_same = slots[same]
        self.same_pages += s_same.size
        self.table_flags[s_same] = ZRAM_SAME
        s = slots[nz[stored]]
        ln = lens[stored]
        huge = ln == PAGE_SIZE
        self.compr_data_size += int(ln.sum())
        self.huge_pages += int(huge.sum())
        self.huge_pages_since += int(huge.sum())
        self.table_flags[s] = np.where(huge, ZRAM_HUGE, 0)
        self.table_handle[s] = handles[stored]
        self.table_size[s] = ln
        self.used[slots[ok]] = True
        self._nr_used += int(ok.sum())
        self.pages_stored += int(ok.sum())
        return ok

    def zram_free_page(self, index: int) -> None:
        """zram_free_page() (6.1)."""
        self._free(np.array([index], np.int64))

    def _free(self, slots: npt.NDArray[np.int64]) -> None:
        """zram_free_page() (6.1) of each slot, in order (their objects freed in that order)."""
        flags = self.table_flags[slots]
        self.huge_pages -= int(np.count_nonzero(flags & ZRAM_HUGE))
        same = (flags & ZRAM_SAME) != 0
        self.same_pages -= int(same.sum())
        objs = slots[~same]
        if objs.size:
            self.mem_pool.zs_free_batch(self.table_handle[objs])
            self.compr_data_size -= int(self.table_size[objs].sum())
        self.pages_stored -= slots.size
        self.table_flags[slots] = 0
        self.table_handle[slots] = -1
        self.table_size[slots] = 0
        self.used[slots] = False
        self._nr_used -= slots.size
        if slots.size:
            self._low_free = min(self._low_free, int(slots.min()))

    # ------------------------------------------------------------------ the swap device
    def nr_slots(self) -> int:
        """The swap area's size in pages (total_swap_pages of this device)."""
        return int(self.used.size)

    def nr_free_slots(self) -> int:
        return int(self.used.size - self._nr_used)

    def _lowest_free(self, count: int) -> npt.NDArray[np.int64]:
        """The ``count`` lowest free slots (fewer if the disk is fuller), searched from the
        lowest slot that can be free, a window at a time."""
        used, n = self.used, self.used.size
        start = self._low_free
        found: list[npt.NDArray[np.int64]] = []
        have = 0
        while have < count and start < n:
            end = min(n, start + max(4 * count, 1024))
            f = np.flatnonzero(~used[start:end]) + start
            if not have:
                self._low_free = int(f[0]) if f.size else end
            found.append(f[: count - have])
            have += found[-1].size
            start = end
        return np.concatenate(found) if found else np.zeros(0, np.int64)

    def swap_out(self, count: int) -> npt.NDArray[np.int64]:
        """Store ``count`` pages: the slot of each, -1 where it could not be stored (the disk is
        full, mem_limit reached, zs_malloc failed). Every page's compressed size is drawn, so
        the stream does not depend on which writes fail."""
        if not isinstance(count, (int, np.integer)) or count < 0:
            raise ConfigError(f"zram swap_out: count {count!r} must be >= 0")
        count = int(count)
        same = self.rng.random(count) < self.same_filled
        comp = self._sizes[self.rng.choice(self._sizes.size, size=count, p=self._p)]
        free = self._lowest_free(count)
        out = np.full(count, -1, np.int64)
        ok = self._write(free, same[: free.size], comp[: free.size])
        out[: free.size][ok] = free[ok]
        self.failed_writes += count - int(ok.sum())
        return out

    def _slots(self, slots: npt.ArrayLike, what: str) -> npt.NDArray[np.int64]:
        s = np.asarray(slots, np.int64).reshape(-1)
        bad = (s < 0) | (s >= self.used.size)
        if bad.any() or not self.used[s].all():
            b = int(s[bad][0]) if bad.any() else int(s[~self.used[s]][0])
            raise AllocatorError(f"zram {self.disk_name}: {what} of slot {b}, which holds no page")
        if np.unique(s).size != s.size:
            raise AllocatorError(f"zram {self.disk_name}: {what} of the same slot twice")
        return s

    def swap_in(self, slots: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Read the pages of ``slots`` back (zram_bvec_read: the object is read where its
        handle says) and free the slots (swap_slot_free_notify). Returns each page's stored
        compressed size (0: same-filled)."""
        s = self._slots(slots, "swap_in")
        sizes = np.where(self.table_flags[s] & ZRAM_SAME, 0, self.table_size[s]).astype(np.int64)
        self._free(s)
        return sizes

    def swap_free(self, slots: npt.ArrayLike) -> None:
        """zram_slot_free_notify() for each slot (a process exited)."""
        self._free(self._slots(slots, "swap_free"))

    def __repr__(self) -> str:
        return (
            f"<Zram {self.disk_name} disksize={self.disksize} stored={self.pages_stored} "
            f"pool={self.mem_pool.pages_allocated} pages>"
        )
