"""A user's own driver in one file: a camera buffer pool in the style of Android's ION page
pools (drivers/staging/android/ion/ion_page_pool.c) with its pages movable while idle.

Load it into a run by its path, no installation needed::

    from fragsim.drivers.loader import load_driver
    IonPool = load_driver("examples/ion_pool.py:IonPool")   # or simply "ion-pool" afterwards

The camera pipeline takes a buffer of ``buffer_pages`` pages for each frame (``acquire``), the
sensor DMAs into it (``dma_start`` pins the pages with ``get_page``; ``dma_done`` unpins them),
and the frame consumer gives the buffer back (``release``). Returned buffers stay in the pool
for the next frame; the pool is refilled to ``pool_min`` idle buffers and shrunk to
``pool_max`` (``refill`` / ``shrink``; a memory-pressure shrinker would call ``shrink``).

Its movable_operations are Python callbacks, so this file shows the whole contract:

* ``isolate_page`` says no for a page of a buffer under DMA (the device writes into it);
  otherwise the page leaves the driver's "may be handed to the device" set (``isolated``).
* ``migrate_page`` moves the page: -EAGAIN if a DMA started meanwhile (retried by the core),
  else take a reference on ``dst``, ``SetPageMovable(dst)``, ``ClearPageMovable(src)``,
  drop the reference on ``src``. The core moves the page's handle (the buffer's page list
  refers to pages by handle), so the buffer follows its page.
* ``putback_page`` takes the page back into the driver's structures.

PG_isolated is the core's: the driver never touches it. A buffer freed while compaction holds
one of its pages isolated is fine: ``free_pages`` clears the page's ops and drops the driver's
reference; the core frees the page when it lets go.

SIMPLIFICATION: a buffer is order-0 pages (real ION system heaps prefer orders 8 and 4);
no contents, no DMA addresses or IOMMU mappings.
"""

from __future__ import annotations

import numpy as np

from fragsim import (
    GFP_USER,
    ClearPageMovable,
    ConfigError,
    ContractError,
    IsolateMode,
    Machine,
    MigrateMode,
    MigrateResult,
    MigrationCost,
    MovableDriver,
    Page,
    SetPageMovable,
    get_page,
    put_page,
    register_driver,
)


@register_driver("ion-pool")
class IonPool(MovableDriver):
    """A pool of fixed-size camera buffers (ION-style), movable while idle, pinned during DMA.

    ``buffer_pages``: pages per buffer; ``pool_min`` / ``pool_max``: idle buffers kept."""

    def __init__(
        self,
        machine: Machine,
        *,
        movable: bool = True,
        buffer_pages: int = 16,
        pool_min: int = 2,
        pool_max: int = 8,
        cost: MigrationCost | None = None,
    ) -> None:
        if not isinstance(buffer_pages, int) or buffer_pages <= 0:
            raise ConfigError(f"ion-pool: buffer_pages {buffer_pages!r} must be a positive int")
        if not 0 <= pool_min <= pool_max:
            raise ConfigError(f"ion-pool: need 0 <= pool_min ({pool_min}) <= pool_max ({pool_max})")
        super().__init__(machine, movable=movable, cost=cost or MigrationCost(per_page_ns=1_000))
        self.buffer_pages = buffer_pages
        self.pool_min = pool_min
        self.pool_max = pool_max
        self.buffers: dict[int, np.ndarray] = {}  # buffer id -> handles of its pages
        self.idle: list[int] = []  # buffers in the pool
        self.in_use: set[int] = set()  # handed to a frame
        self.dma: set[int] = set()  # handed to a frame and being DMA'd (pages pinned)
        self.page_buffer: dict[int, int] = {}  # handle -> buffer id (the driver's page list)
        self.isolated: set[int] = set()  # handles of pages compaction has taken
        self._next = 0
        self.calls = {"isolate": 0, "refused": 0, "migrate": 0, "eagain": 0, "putback": 0}

    # ------------------------------------------------------------------ the pool
    def _new_buffer(self) -> int:
        hs = self.alloc_pages(self.buffer_pages, GFP_USER)
        if (hs < 0).any():
            self.free_pages(hs[hs >= 0])
            return -1
        b = self._next
        self._next += 1
        self.buffers[b] = hs
        for h in hs.tolist():
            self.page_buffer[h] = b
        return b

    def _free_buffer(self, b: int) -> None:
        hs = self.buffers.pop(b)
        for h in hs.tolist():
            del self.page_buffer[h]
        self.free_pages(hs)  # isolated pages are freed by the core when it lets go

    def refill(self) -> int:
        """Allocate buffers until ``pool_min`` are idle; returns how many were added."""
        added = 0
        while len(self.idle) < self.pool_min:
            b = self._new_buffer()
            if b < 0:
                break
            self.idle.append(b)
            added += 1
        return added

    def shrink(self, keep: int | None = None) -> int:
        """Free idle buffers beyond ``keep`` (default ``pool_max``); returns pages freed."""
        keep = self.pool_max if keep is None else keep
        freed = 0
        while len(self.idle) > keep:
            self._free_buffer(self.idle.pop())
            freed += self.buffer_pages
        return freed

    def acquire(self) -> int:
        """A buffer for the next frame (from the pool, or a new one): its id, -1 if none."""
        b = self.idle.pop() if self.idle else self._new_buffer()
        if b >= 0:
            self.in_use.add(b)
        return b

    def dma_start(self, b: int) -> None:
        """The sensor writes the frame: pin the buffer's pages (get_page)."""
        if b not in self.in_use or b in self.dma:
            raise ContractError(f"ion-pool: DMA into buffer {b}, which is not an acquired idle one")
        for h in self.buffers[b].tolist():
            get_page(self.machine, self.pfn(h))
        self.dma.add(b)

    def dma_done(self, b: int) -> None:
        """The frame is written: unpin (put_page; the driver's own reference stays)."""
        if b not in self.dma:
            raise ContractError(f"ion-pool: buffer {b} is not under DMA")
        self.dma.discard(b)
        for h in self.buffers[b].tolist():
            put_page(self.machine, self.pfn(h))

    def release(self, b: int) -> None:
        """The consumer is done with the frame: the buffer goes back to the pool."""
        if b not in self.in_use:
            raise ContractError(f"ion-pool: release of buffer {b}, which was not acquired")
        if b in self.dma:
            self.dma_done(b)
        self.in_use.discard(b)
        self.idle.append(b)
        self.shrink()

    def destroy(self) -> None:
        """Free every buffer (the camera is closed)."""
        for b in list(self.dma):
            self.dma_done(b)
        for b in list(self.buffers):
            self._free_buffer(b)
        self.idle.clear()
        self.in_use.clear()

    # ------------------------------------------------------------------ movable_operations
    def _buffer_of(self, page: Page) -> int:
        b = self.page_buffer.get(page.owner, -1)
        if b < 0:
            raise ContractError(f"ion-pool: pfn {page.pfn:#x} is not one of the pool's pages")
        return b

    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        self.calls["isolate"] += 1
        if self._buffer_of(page) in self.dma:
            self.calls["refused"] += 1
            return False  # the device is writing into it
        self.isolated.add(page.owner)
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        self.calls["migrate"] += 1
        if self._buffer_of(src) in self.dma:
            self.calls["eagain"] += 1
            return MigrateResult.EAGAIN
        m = self.machine
        get_page(m, dst.pfn)
        SetPageMovable(m, dst.pfn, self)
        ClearPageMovable(m, src.pfn)
        put_page(m, src.pfn)
        self.isolated.discard(src.owner)  # the core moves the handle to dst after this
        return MigrateResult.MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Page) -> None:
        self.calls["putback"] += 1
        self.isolated.discard(page.owner)

    # ------------------------------------------------------------------ contract-suite hook
    @classmethod
    def contract_instance(cls, machine: Machine, movable: bool) -> IonPool:
        """tests/drivers/test_contract.py: 4-page buffers, an empty pool."""
        return cls(machine, movable=movable, buffer_pages=4, pool_min=0, pool_max=0)

    @classmethod
    def contract_fill(cls, driver: MovableDriver, n_pages: int) -> np.ndarray:
        """Frames in flight: acquired buffers covering ``n_pages`` pages; their handles."""
        assert isinstance(driver, IonPool)
        out = []
        for _ in range(-(-n_pages // driver.buffer_pages)):
            b = driver.acquire()
            if b < 0:
                raise ContractError("ion-pool: contract_fill could not allocate")
            out.append(driver.buffers[b])
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    @classmethod
    def contract_free(cls, driver: MovableDriver, handles: np.ndarray) -> None:
        """Release (and, with pool_max 0, free) the buffers holding ``handles``."""
        assert isinstance(driver, IonPool)
        owned = driver.page_buffer
        for b in sorted({owned[int(h)] for h in handles if int(h) in owned}):
            driver.release(b)
