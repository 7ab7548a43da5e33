"""The fragmenter: fill memory with a mix of movable and unmovable blocks, then free a pattern
of them, leaving free memory in small pieces, as the classic fragmentation test programs do
(Mel Gorman's ``fragmentation`` benchmark of the anti-fragmentation series, the
``page_owner``-era ``frag`` module, LTP's ``min_free_kbytes`` fill-and-free loops). The kernel
it exercises is mm/page_alloc.c's migratetype fallback (__rmqueue_fallback, steal_suitable_
fallback) and mm/compaction.c (Linux 6.1): the holes it leaves can be closed by compaction only
where the pages around them are movable.

One cycle::

    nr_blocks = fill * nr_free_pages(now) >> order
    allocate nr_blocks blocks of ``order`` in batches of sim.batch rows:
        each unmovable (GFP_KERNEL) with probability unmovable_fraction,
        else movable (GFP_HIGHUSER_MOVABLE, an anonymous LRU page: compaction can move it)
    free a pattern of them:
        every-other       sort the blocks by pfn, free every second one (a checkerboard)
        random            free each block with probability free_fraction
        sparse-unmovable  all blocks movable first; free one in every round(1/unmovable_fraction)
                          (by pfn), drain the pcp lists (drain_all_pages), allocate as many
                          unmovable blocks, which fall back into those holes; then free every
                          movable block: unmovable blocks stay sprinkled over the movable
                          pageblocks and pin them. For no large free block to be left, the
                          fill goes on without direct reclaim until the min watermark refuses
    after hold_ns (0: until the run ends or the next cycle) free what is left
    with period_ns > 0, a new cycle starts every period_ns

The fragmenter is its own memory user (a ``MemoryUser`` named "fragmenter", not entered in
``sim.drivers``): it needs no driver from the scenario.

SIMPLIFICATION: the movable blocks are anonymous pages of no process (no page tables, no kernel
stack); if reclaim swaps one out, freeing it frees its swap slot.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MemoryUser
from fragsim.errors import ConfigError
from fragsim.scenario.engine import Simulation, Workload, register_workload

__all__ = ["Fragmenter"]

Pattern = Literal["every-other", "random", "sparse-unmovable"]
PATTERNS = ("every-other", "random", "sparse-unmovable")
_GFP_DIRECT_RECLAIM = 0x400  # __GFP_DIRECT_RECLAIM (include/linux/gfp_types.h, 6.1)


def _gfp_and_flags() -> tuple[int, int, int]:
    """(unmovable gfp, movable gfp, movable page flags); imported late (the core compiles)."""
    from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
    from fragsim.mm.page import PG_anon, PG_lru, PG_mapped, PG_swapbacked

    return GFP_KERNEL, GFP_HIGHUSER_MOVABLE, PG_lru | PG_anon | PG_swapbacked | PG_mapped


@register_workload("fragmenter")
class Fragmenter(Workload):
    """Fill and free in a pattern (see the module docstring).

    Options: ``pattern`` ("every-other", "random", "sparse-unmovable"); ``fill`` (share of the
    free pages at the cycle's start to allocate, in (0, 1]; sparse-unmovable fills to the
    watermark instead); ``unmovable_fraction`` (share of
    blocks that are unmovable, in [0, 1]; for sparse-unmovable the density of the pinning
    blocks, in (0, 1)); ``free_fraction`` (random: each block's chance to be freed); ``order``
    (of every block, 0..10); ``start_ns`` (first cycle); ``hold_ns`` (how long the leftover is
    held, 0: until the end or the next cycle); ``period_ns`` (0: one cycle)."""

    def __init__(
        self,
        sim: Simulation,
        *,
        pattern: Pattern = "every-other",
        fill: float = 0.9,
        unmovable_fraction: float = 0.2,
        free_fraction: float = 0.5,
        order: int = 0,
        start_ns: int = 0,
        hold_ns: int = 0,
        period_ns: int = 0,
    ) -> None:
        super().__init__(sim)
        w = "workload fragmenter"
        if pattern not in PATTERNS:
            raise ConfigError(
                f"{w}: pattern: expected one of {', '.join(PATTERNS)}, got {pattern!r}"
            )
        if not 0 < fill <= 1:
            raise ConfigError(f"{w}: fill: expected a number in (0, 1], got {fill!r}")
        if not 0 <= unmovable_fraction <= 1:
            raise ConfigError(
                f"{w}: unmovable_fraction: expected a number in [0, 1], got {unmovable_fraction!r}"
            )
        if pattern == "sparse-unmovable" and not 0 < unmovable_fraction < 1:
            raise ConfigError(
                f"{w}: unmovable_fraction: expected a number in (0, 1) for pattern "
                f"sparse-unmovable, got {unmovable_fraction!r}"
            )
        if not 0 <= free_fraction <= 1:
            raise ConfigError(
                f"{w}: free_fraction: expected a number in [0, 1], got {free_fraction!r}"
            )
        if not 0 <= order <= 10:
            raise ConfigError(f"{w}: order: expected an integer in [0, 10], got {order!r}")
        for key, v in (("start_ns", start_ns), ("hold_ns", hold_ns), ("period_ns", period_ns)):
            if v < 0:
                raise ConfigError(f"{w}: {key}: expected a duration >= 0, got {v!r}")
        if period_ns and hold_ns > period_ns:
            raise ConfigError(
                f"{w}: hold_ns: expected at most period_ns ({period_ns}), got {hold_ns!r}"
            )
        self.pattern = pattern
        self.fill = fill
        self.unmovable_fraction = unmovable_fraction
        self.free_fraction = free_fraction
        self.order = order
        self.start_ns = start_ns
        self.hold_ns = hold_ns
        self.period_ns = period_ns
        self.user = MemoryUser(sim.machine)
        self.user.name = "fragmenter"
        #: the blocks held now (handles) and which of them are unmovable
        self.held = np.zeros(0, np.int64)
        self.held_unmovable = np.zeros(0, bool)
        self._rng: np.random.Generator | None = None
        self._cycle = 0
        self.counts = {
            "cycles": 0,
            "blocks_allocated": 0,
            "unmovable_allocated": 0,
            "blocks_freed": 0,
            "pages_allocated": 0,
            "alloc_failures": 0,
        }

    # ------------------------------------------------------------------ the clock
    def start(self) -> None:
        self._rng = self.own_rng()
        if self.period_ns:
            self.sim.every(self.period_ns, self.cycle, start_ns=self.sim.now + self.start_ns)
        else:
            self.sim.at(self.sim.now + self.start_ns, self.cycle)

    def cycle(self) -> None:
        """One fill-and-free cycle (the previous cycle's leftover is freed first)."""
        self.release_all()
        self._cycle += 1
        self.counts["cycles"] += 1
        from fragsim.mm.vmstat import vmstat_counters

        free = vmstat_counters(self.sim.machine)["nr_free_pages"]
        n = int(self.fill * free) >> self.order
        if n <= 0:
            return
        if self.pattern == "sparse-unmovable":
            self._sparse_unmovable(n)
        else:
            self._fill_and_free(n)
        if self.hold_ns:
            cycle = self._cycle
            self.sim.after(self.hold_ns, lambda: self._end_hold(cycle))

    def _end_hold(self, cycle: int) -> None:
        if cycle == self._cycle:
            self.release_all()

    def finish(self) -> None:
        return None

    # ------------------------------------------------------------------ allocation
    def _alloc(self, unmovable: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """Allocate one block per entry (True: unmovable) in batches of sim.batch rows, the
        two kinds in the order given; returns the handles (-1: failed)."""
        gfp_u, gfp_m, mflags = _gfp_and_flags()
        out = np.full(unmovable.size, -1, np.int64)
        step = self.sim.batch
        for lo in range(0, unmovable.size, step):
            sel = unmovable[lo : lo + step]
            # consecutive runs of one kind go in one call (a call is one batch)
            edges = np.flatnonzero(np.diff(sel.astype(np.int8))) + 1
            bounds = np.concatenate([[0], edges, [sel.size]])
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
                if sel[a]:
                    hs = self.user.alloc_pages(b - a, gfp_u, self.order)
                else:
                    hs = self.user.alloc_pages(b - a, gfp_m, self.order, flags=mflags)
                out[lo + a : lo + b] = hs
        ok = out >= 0
        self.counts["blocks_allocated"] += int(ok.sum())
        self.counts["unmovable_allocated"] += int((ok & unmovable).sum())
        self.counts["pages_allocated"] += int(ok.sum()) << self.order
        self.counts["alloc_failures"] += int((~ok).sum())
        return out

    def _free(self, handles: npt.NDArray[np.int64]) -> None:
        """Free blocks (resident ones to the allocator, swapped-out ones' swap slots freed), in
        batches of sim.batch rows, and give the handles back."""
        if handles.size == 0:
            return
        m = self.sim.machine
        res = handles[m.handles[handles] >= 0]
        gone = handles[m.handles[handles] < 0]
        step = self.sim.batch
        for lo in range(0, res.size, step):
            self.user.free_pages(res[lo : lo + step])
        if gone.size:
            sw = gone[m.swap_entry[gone] >= 0]
            if sw.size:
                m.swap.swap_free(m.swap_entry[sw])
                m.swap_entry[sw] = -1
            m.release_handles(gone)
        self.counts["blocks_freed"] += int(handles.size)

    def _by_pfn(self, handles: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``handles`` in pfn order (a block reclaim swapped out sorts last)."""
        return handles[np.argsort(self._pfns_or_max(handles), kind="stable")]

    def _fill_and_free(self, n: int) -> None:
        assert self._rng is not None
        unmovable = self._rng.random(n) < self.unmovable_fraction
        hs = self._alloc(unmovable)
        ok = hs >= 0
        hs, unmovable = hs[ok], unmovable[ok]
        if self.pattern == "every-other":
            order = np.argsort(self._pfns_or_max(hs), kind="stable")
            hs, unmovable = hs[order], unmovable[order]
            drop = np.zeros(hs.size, bool)
            drop[1::2] = True
        else:  # random
            drop = self._rng.random(hs.size) < self.free_fraction
        self._free(hs[drop])
        self._keep(hs[~drop], unmovable[~drop])

    def _pfns_or_max(self, hs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        pfn = self.sim.machine.handles[hs].astype(np.int64)
        return np.where(pfn < 0, np.iinfo(np.int64).max, pfn)

    def _sparse_unmovable(self, n: int) -> None:
        stride = max(2, round(1 / self.unmovable_fraction))
        del n  # (fills to the watermark instead)
        movable = self._by_pfn(self._fill_to_watermark())
        holes = movable[::stride]
        self._free(holes)
        self.sim.machine.drain_all_pages()  # the holes leave the movable pcp lists
        pins = self._alloc(np.ones(holes.size, bool))
        pins = pins[pins >= 0]
        rest = np.delete(movable, np.arange(0, movable.size, stride))
        self._free(rest)
        self._keep(pins, np.ones(pins.size, bool))

    def _fill_to_watermark(self) -> npt.NDArray[np.int64]:
        """Movable blocks without direct reclaim (GFP_HIGHUSER_MOVABLE & ~__GFP_DIRECT_RECLAIM)
        until the allocator refuses one (the min watermark): no large free block is left, so
        the unmovable blocks that follow must fall back into the holes."""
        _, gfp_m, mflags = _gfp_and_flags()
        got: list[npt.NDArray[np.int64]] = []
        while True:
            hs = self.user.alloc_pages(
                self.sim.batch, gfp_m & ~_GFP_DIRECT_RECLAIM, self.order, flags=mflags
            )
            ok = hs[hs >= 0]
            got.append(ok)
            self.counts["blocks_allocated"] += int(ok.size)
            self.counts["pages_allocated"] += int(ok.size) << self.order
            if ok.size < hs.size or ok.size == 0:
                return np.concatenate(got)

    def _keep(self, hs: npt.NDArray[np.int64], unmovable: npt.NDArray[np.bool_]) -> None:
        self.held = np.concatenate([self.held, hs])
        self.held_unmovable = np.concatenate([self.held_unmovable, unmovable])

    def release_all(self) -> None:
        """Free every block still held."""
        hs = self.held
        self.held = np.zeros(0, np.int64)
        self.held_unmovable = np.zeros(0, bool)
        self._free(hs)

    # ------------------------------------------------------------------ results
    @property
    def pages_held(self) -> int:
        return int(self.held.size) << self.order

    def summary(self) -> dict[str, Any]:
        """Cycles run, blocks allocated (unmovable among them), blocks freed, pages allocated,
        allocation failures, and what is held now (blocks, pages, unmovable blocks)."""
        return {
            **self.counts,
            "blocks_held": int(self.held.size),
            "pages_held": self.pages_held,
            "unmovable_held": int(self.held_unmovable.sum()),
        }
