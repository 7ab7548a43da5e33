"""A generic vendor GPU driver whose buffer pages use the non-LRU movable page framework.

No mainline GPU driver of Linux 6.1 uses movable_operations (spec linux-mm.md §7.4); out-of-tree
vendor drivers did, the best known being Arm Mali "kbase" page migration
(``mali_kbase_mem_migrate.c`` / ``mali_kbase_mem_pool.c``). ``GpuDriver`` models such a
driver as a configurable movable_operations client:

* **Buffer objects (BOs).** The workload creates and destroys BOs (``create_bo`` /
  ``destroy_bo``). A BO is backed by blocks from two pools, as kbase's 2 MiB and 4 KiB memory
  pools: first ``pages >> large_order`` blocks of ``large_order`` (kbase: order 9, 2 MiB), each
  requested with ``GFP_HIGHUSER | __GFP_NOWARN | __GFP_NORETRY`` (a high order must not stall
  in reclaim nor warn: it has a fallback), then every page not covered (the remainder and the
  large blocks that failed) from the 4 KiB pool: order-0 pages with ``GFP_HIGHUSER`` plus
  ``__GFP_MOVABLE`` when ``movable`` (kbase: ``GFP_HIGHUSER_MOVABLE`` when
  ``kbase_page_migration_enabled``). Only order-0 pages get the driver's movable_operations:
  kbase sets up migration metadata for 4 KiB pool pages only (``!pool->order``), its large
  pages are plain unmovable allocations. A BO whose 4 KiB pages cannot all be allocated is
  rolled back (-ENOMEM to the workload: ``create_bo`` returns -1).
* **Pins.** While the device uses a BO (a job runs on it) its pages are pinned: each holds a
  reference beyond the driver's own (``get_page``; ``put_page`` when the job ends).
  ``tick(now_ns)``, called by the scenario engine, re-draws which BOs are busy: each live BO
  independently with probability ``duty_cycle``, from the driver's seeded generator.
* **Migration of a pinned page** is answered by the compiled ``CompiledPolicy`` (no Python call
  per page) with the ``pinned`` setting:

  - ``"eagain"`` (default): migrate_page returns -EAGAIN while a job uses the page (spec §7.4:
    "migrate may return -EAGAIN while a job runs"); migrate_pages() retries it on each of its
    10 passes, then counts it in pgmigrate_fail and puts it back: the page stays.
  - ``"isolate"``: isolate_page says no for a pinned page, as kbase's ``kbase_page_isolate``
    for a page whose status is NOT_MOVABLE (imported / shared with the firmware): it is never
    taken off the driver's lists.
  - ``"ebusy"``: migrate_page fails permanently for this attempt (-EBUSY): no retry.

  An unpinned order-0 page always moves (with the optional ``migrate_eagain`` /
  ``migrate_ebusy`` / ``isolate_busy`` probabilities of the policy for transient refusals).
* **Cost.** ``MigrationCost(per_page_ns, per_batch_ns)``: per page the copy and the GPU MMU PTE
  update, per migrate_pages() call one GPU TLB flush (kbase flushes the GPU MMU after the
  page-table update). Defaults are assumptions, not measurements.

High-order BO pages and compaction: fragsim's ``isolate_migratepages_block``
(mm/compaction.py, 6.1) skips a compound page whole (``PG_head``: ``low_pfn += (1 << order) -
1``, isolate_fail) before it looks at ``__PageMovable``, so a compound non-LRU page is never
offered to its driver; a non-compound high-order block (this driver's, as kbase's, allocated
without ``__GFP_COMP``) has an unmovable head and tails that look like nothing to the scanner:
each fails isolation. Either way a high-order BO block never moves and pins its pageblock,
which is why the driver does not mark it movable (the core's ``migrate_page_move`` would, in
any case, move only one page: it sets the destination's order to 0).

SIMPLIFICATION: a BO is busy or idle for a whole tick; jobs are not modelled one by one.
SIMPLIFICATION: all pages of a busy BO are pinned, including its high-order blocks (whose pins
change nothing: they never move).
SIMPLIFICATION: a BO destroyed while busy waits for nothing: its job is dropped (pins released)
and its pages are freed at once.
SIMPLIFICATION: no BO contents, GPU page tables or DMA addresses; a move is a handle update.
SIMPLIFICATION: kbase's pools keep freed pages for reuse; here a destroyed BO's pages go back to
the buddy allocator at once (no pool caching, no shrinker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MovableDriver, register_driver
from fragsim.errors import ConfigError
from fragsim.mm.gfp import __GFP_NORETRY, __GFP_NOWARN, GFP_HIGHUSER, GFP_MOVABLE_MASK
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    CompiledPolicy,
    ContractError,
    IsolateMode,
    MigrateMode,
    MigrateResult,
    MigrationCost,
)
from fragsim.mm.mmzone import MAX_ORDER
from fragsim.mm.page import Page

__all__ = ["GpuDriver", "BufferObject", "get_pages", "put_pages"]

PAGE_SIZE = 4096
#: the driver's generator: numpy.random.default_rng([machine.seed, GPU_SALT])
GPU_SALT = 0x6770_7564  # "gpud"
#: the 4 KiB pool's mask (its mobility added by MovableDriver.gfp when movable)
GFP_GPU_SMALL = GFP_HIGHUSER | __GFP_NOWARN
#: the large pool's mask: a high order with a fallback must not stall or warn
GFP_GPU_LARGE = GFP_HIGHUSER | __GFP_NOWARN | __GFP_NORETRY


def get_pages(m: Machine, pfns: npt.NDArray[np.int64]) -> None:
    """get_page() on many pages at once: one more reference on each (each must be allocated)."""
    if pfns.size == 0:
        return
    rc = m.state.refcount
    if (rc[pfns] <= 0).any():
        bad = int(pfns[rc[pfns] <= 0][0])
        raise ContractError(f"get_page on pfn {bad:#x}, which is not allocated")
    rc[pfns] += 1


def put_pages(m: Machine, pfns: npt.NDArray[np.int64]) -> None:
    """put_page() on many pages that keep another reference (the driver's own): drops one
    reference from each; dropping a page's last one this way is a contract error (a pin never
    is the last reference)."""
    if pfns.size == 0:
        return
    rc = m.state.refcount
    if (rc[pfns] <= 1).any():
        bad = int(pfns[rc[pfns] <= 1][0])
        raise ContractError(f"put_pages on pfn {bad:#x}: that would drop the last reference")
    rc[pfns] -= 1


@dataclass
class BufferObject:
    """One BO: the handles of its blocks and their orders; ``busy`` while a job uses it (its
    pages pinned at ``pinned``)."""

    handles: npt.NDArray[np.int64]
    orders: npt.NDArray[np.int64]
    busy: bool = False
    pinned: npt.NDArray[np.int64] | None = None

    @property
    def nr_pages(self) -> int:
        return int((1 << self.orders).sum())


_PINNED_ANSWERS = ("eagain", "isolate", "ebusy")


@register_driver("gpu")
class GpuDriver(MovableDriver):
    """A vendor GPU driver's buffer objects (see the module docstring).

    ``large_order``: order of the large pool (None or 0: 4 KiB pages only; kbase: 9).
    ``duty_cycle``: the fraction of live BOs a job uses at each ``tick``. ``pinned``: the
    compiled answer for a pinned page (``"eagain"``, ``"isolate"``, ``"ebusy"``). ``isolate_busy`` /
    ``migrate_eagain`` / ``migrate_ebusy``: probabilities of transient refusals for unpinned
    pages (0 by default)."""

    default_cost: ClassVar[MigrationCost] = MigrationCost(per_page_ns=1_500, per_batch_ns=20_000)

    def __init__(
        self,
        machine: Machine,
        *,
        movable: bool = True,
        large_order: int | None = 9,
        duty_cycle: float = 0.5,
        pinned: str = "eagain",
        isolate_busy: float = 0.0,
        migrate_eagain: float = 0.0,
        migrate_ebusy: float = 0.0,
        cost: MigrationCost | None = None,
    ) -> None:
        if large_order == 0:  # a scenario file's way to say "no large pool" (TOML has no None)
            large_order = None
        if large_order is not None and (
            not isinstance(large_order, int) or not 0 < large_order < MAX_ORDER
        ):
            raise ConfigError(f"gpu: large_order {large_order!r} is not in 1..{MAX_ORDER - 1}")
        if not 0.0 <= duty_cycle <= 1.0:
            raise ConfigError(f"gpu: duty_cycle {duty_cycle!r} is not a fraction (0..1)")
        if pinned not in _PINNED_ANSWERS:
            raise ConfigError(
                f"gpu: pinned {pinned!r} is not one of {', '.join(_PINNED_ANSWERS)} (a pinned "
                "page that moved would leave its pin on the old page)"
            )
        for opt, p in (
            ("isolate_busy", isolate_busy),
            ("migrate_eagain", migrate_eagain),
            ("migrate_ebusy", migrate_ebusy),
        ):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"gpu: {opt} {p!r} is not a probability (0..1)")
        policy = CompiledPolicy(
            isolate_busy=isolate_busy,
            migrate_eagain=migrate_eagain,
            migrate_ebusy=migrate_ebusy,
            pinned=pinned,
        )
        super().__init__(machine, movable=movable, cost=cost or self.default_cost, policy=policy)
        self.large_order = large_order
        self.duty_cycle = duty_cycle
        self.pinned = pinned
        self.rng = np.random.default_rng([machine.seed, GPU_SALT])
        self.bos: dict[int, BufferObject] = {}
        self._next_bo = 0
        self._alloc_order = 0
        self.last_tick_ns = -1
        #: create_bo calls that failed (-ENOMEM to the workload)
        self.nr_bo_failed = 0

    # ------------------------------------------------------------------ allocation masks
    def gfp(self, gfp: int) -> int:
        """The 4 KiB pool's pages are __GFP_MOVABLE when movable; the large pool's never."""
        if self._alloc_order > 0:
            return gfp & ~GFP_MOVABLE_MASK
        return super().gfp(gfp)

    def allocated(self, pfns: npt.NDArray[np.int64]) -> None:
        """__SetPageMovable on new 4 KiB pool pages only (kbase: ``!pool->order``)."""
        if self._alloc_order == 0:
            super().allocated(pfns)

    def _alloc(self, count: int, order: int) -> npt.NDArray[np.int64]:
        self._alloc_order = order
        try:
            gfp = GFP_GPU_LARGE if order else GFP_GPU_SMALL
            return self.alloc_pages(count, gfp, order)
        finally:
            self._alloc_order = 0

    # ------------------------------------------------------------------ buffer objects
    def create_bo(self, pages: int | None = None, *, nbytes: int | None = None) -> int:
        """Create a BO of ``pages`` pages (or ``nbytes`` bytes, rounded up to pages): large
        blocks first, order-0 pages for the rest. Returns the BO's id, or -1 (-ENOMEM) if its
        order-0 pages could not all be allocated (nothing is kept)."""
        if (pages is None) == (nbytes is None):
            raise ConfigError("gpu.create_bo: give exactly one of pages, nbytes")
        if nbytes is not None:
            if not isinstance(nbytes, int) or nbytes <= 0:
                raise ConfigError(f"gpu.create_bo: nbytes {nbytes!r} must be a positive int")
            pages = -(-nbytes // PAGE_SIZE)
        if not isinstance(pages, int) or pages <= 0:
            raise ConfigError(f"gpu.create_bo: pages {pages!r} must be a positive int")
        parts_h: list[npt.NDArray[np.int64]] = []
        parts_o: list[npt.NDArray[np.int64]] = []
        small = pages
        if self.large_order is not None and pages >> self.large_order:
            hs = self._alloc(pages >> self.large_order, self.large_order)
            ok = hs[hs >= 0]
            parts_h.append(ok)
            parts_o.append(np.full(ok.size, self.large_order, np.int64))
            small = pages - (ok.size << self.large_order)
        if small:
            hs = self._alloc(small, 0)
            ok = hs[hs >= 0]
            parts_h.append(ok)
            parts_o.append(np.zeros(ok.size, np.int64))
            if ok.size < small:  # -ENOMEM: roll the whole BO back
                for h, o in zip(parts_h, parts_o, strict=True):
                    self._free(h, o)
                self.nr_bo_failed += 1
                return -1
        bo = self._next_bo
        self._next_bo += 1
        self.bos[bo] = BufferObject(np.concatenate(parts_h), np.concatenate(parts_o))
        return bo

    def _free(self, handles: npt.NDArray[np.int64], orders: npt.NDArray[np.int64]) -> None:
        for o in np.unique(orders):
            self._alloc_order = int(o)  # the hooks know which pool the pages came from
            try:
                self.free_pages(handles[orders == o])
            finally:
                self._alloc_order = 0

    def freeing(self, pfns: npt.NDArray[np.int64]) -> None:
        if self._alloc_order == 0:
            super().freeing(pfns)

    def destroy_bo(self, bo: int) -> None:
        """Destroy a BO: its job (if any) is dropped, its pins released, its pages freed (a
        page compaction holds isolated right now is freed when compaction lets go)."""
        obj = self.bos.pop(bo, None)
        if obj is None:
            raise ConfigError(f"gpu.destroy_bo: no buffer object {bo!r}")
        self._unpin(obj)
        self._free(obj.handles, obj.orders)

    def bo_pfns(self, bo: int) -> npt.NDArray[np.int64]:
        """The pfns of a BO's blocks (where compaction has put them)."""
        return self.pfns(self.bos[bo].handles)

    @property
    def nr_pages(self) -> int:
        return sum(b.nr_pages for b in self.bos.values())

    # ------------------------------------------------------------------ the device's jobs
    def _pin(self, obj: BufferObject) -> None:
        pfns = self.pfns(obj.handles)
        get_pages(self.machine, pfns)
        obj.pinned = pfns
        obj.busy = True

    def _unpin(self, obj: BufferObject) -> None:
        if not obj.busy:
            return
        assert obj.pinned is not None
        now = self.pfns(obj.handles)
        if not np.array_equal(now, obj.pinned):
            raise ContractError(f"driver {self.name}: a pinned page moved (policy {self.policy})")
        put_pages(self.machine, obj.pinned)
        obj.pinned = None
        obj.busy = False

    def tick(self, now_ns: int) -> None:
        """The device's work at ``now_ns``: each live BO is busy until the next tick with
        probability ``duty_cycle`` (its pages pinned), idle otherwise (unpinned)."""
        if now_ns < self.last_tick_ns:
            raise ConfigError(f"gpu.tick: time goes back ({now_ns} < {self.last_tick_ns} ns)")
        self.last_tick_ns = now_ns
        ids = sorted(self.bos)
        busy = self.rng.random(len(ids)) < self.duty_cycle
        for bo, b in zip(ids, busy, strict=True):
            obj = self.bos[bo]
            if obj.busy and not b:
                self._unpin(obj)
        for bo, b in zip(ids, busy, strict=True):
            obj = self.bos[bo]
            if b and not obj.busy:
                self._pin(obj)

    def busy_bos(self) -> list[int]:
        return [bo for bo, o in self.bos.items() if o.busy]

    # ------------------------------------------------------------------ counters
    def counters(self) -> dict[str, int]:
        """This driver's migration counters (``migration_counters``)."""
        return self.migration_counters()

    # ------------------------------------------------------------------ movable_operations
    # The compiled policy answers during compaction; these Python callbacks give the same
    # answers when the core calls them directly (isolate_movable_page / migrate_movable_page).
    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        if self.pinned == "isolate" and page.refcount > 2:  # ours, the caller's, a pin
            return False
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        if src.refcount > 2:  # ours, the isolation's, a pin
            if self.pinned == "ebusy":
                return MigrateResult.EBUSY
            return MigrateResult.EAGAIN
        return super().migrate_page(dst, src, mode)

    # ------------------------------------------------------------------ contract-suite hook
    @classmethod
    def contract_instance(cls, machine: Machine, movable: bool) -> GpuDriver:
        """tests/drivers/test_contract.py: a driver of 4 KiB pages whose device is idle."""
        return cls(machine, movable=movable, large_order=None, duty_cycle=0.0)

    @classmethod
    def contract_fill(cls, driver: MovableDriver, n_pages: int) -> npt.NDArray[np.int64]:
        """One BO of ``n_pages`` order-0 pages; its handles."""
        assert isinstance(driver, GpuDriver)
        bo = driver.create_bo(n_pages)
        if bo < 0:
            raise ContractError("gpu: contract_fill could not allocate")
        return driver.bos[bo].handles.copy()

    @classmethod
    def contract_free(cls, driver: MovableDriver, handles: npt.ArrayLike) -> None:
        """Destroy every BO holding one of ``handles``."""
        assert isinstance(driver, GpuDriver)
        h = np.asarray(handles, np.int64)
        for bo in [bo for bo, o in driver.bos.items() if np.isin(o.handles, h).any()]:
            driver.destroy_bo(bo)
