"""The base of a driver whose pages may be movable, and the driver registry.

A ``MovableDriver`` owns pages of one machine, each recorded under a handle of the machine's
handle table (``Machine.handles``, fragsim's rmap: compaction updates it when a page moves), so
the driver never has to track pfns itself. Its ``movable`` setting is the seed's switch (see
fragsim/drivers/__init__.py). A subclass that sets ``policy`` (a ``CompiledPolicy``) is decided
by compiled code during compaction; otherwise compaction calls its ``isolate_page`` /
``migrate_page`` / ``putback_page`` (fragsim/mm/migrate.py states the contract), which by default
accept every request and move the handle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm import internal as I
from fragsim.mm.gfp import __GFP_MOVABLE, GFP_MOVABLE_MASK
from fragsim.mm.internal import alloc_events, free_events
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    ClearPageMovable,
    ClearPagesMovable,
    CompiledPolicy,
    IsolateMode,
    MigrateMode,
    MigrateResult,
    MigrationCost,
    SetPageMovable,
    SetPagesMovable,
    get_page,
    put_page,
)
from fragsim.mm.page import Page

__all__ = ["DRIVERS", "MemoryUser", "MovableDriver", "driver_class", "register_driver"]

GFP_F_MOVABLE = __GFP_MOVABLE  # (a name with two leading underscores is mangled in a class)

#: name -> memory-user class, filled by @register_driver
DRIVERS: dict[str, type[MemoryUser]] = {}

U = TypeVar("U", bound="type[MemoryUser]")


def register_driver(name: str) -> Callable[[U], U]:
    """Class decorator: make the memory user available by ``name`` (scenario files use it)."""

    def deco(cls: U) -> U:
        if name in DRIVERS and DRIVERS[name] is not cls:
            raise ConfigError(f"driver {name!r} registered twice")
        DRIVERS[name] = cls
        cls.name = name
        return cls

    return deco


def driver_class(name: str) -> type[MemoryUser]:
    try:
        return DRIVERS[name]
    except KeyError:
        raise ConfigError(f"unknown driver {name!r}; known: {', '.join(sorted(DRIVERS))}") from None


class MemoryUser:
    """Something that holds pages of one machine under handles of the machine's handle table:
    a driver, a kernel cache, a process. Pages are allocated and freed in batches
    (``alloc_pages`` / ``free_pages``), which keeps the compiled allocator's speed; handles are
    recycled through the machine (``alloc_handles`` / ``release_handles``)."""

    name: str = "memory-user"

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def gfp(self, gfp: int) -> int:
        """The mask this user's requests are made with (subclasses adjust mobility)."""
        return gfp

    def alloc_pages(
        self,
        count: int,
        gfp: int,
        order: int = 0,
        *,
        flags: int = 0,
        cpu: int = 0,
        nid: int = 0,
        into: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.int64]:
        """Allocate ``count`` blocks of ``order`` in one batch; returns their handles, -1 where
        an allocation failed (that handle is released). ``flags`` are PG_* bits the caller sets
        on each head (PG_slab, PG_lru | PG_anon, ...). With ``into``, the blocks go under
        those handles (the user's own, e.g. a file's page indexes; ``count`` must match) and a
        handle whose allocation failed stays the user's, holding no page."""
        m = self.machine
        if into is None:
            hs = m.alloc_handles(count)
        else:
            hs = np.asarray(into, np.int64).reshape(-1)
            if hs.size != count:
                raise ConfigError(f"alloc_pages: {count} blocks into {hs.size} handles")
        pfns = m.run(alloc_events(hs, self.gfp(gfp), order, flags, cpu=cpu, nid=nid))
        ok = pfns >= 0
        if not ok.all() and into is None:
            m.release_handles(hs[~ok])
            hs = np.where(ok, hs, -1)
        if ok.any():
            self.allocated(pfns[ok])
        return hs

    def allocated(self, pfns: npt.NDArray[np.int64]) -> None:
        """Called with the pfns of each batch of new blocks (a subclass marks them)."""

    def freeing(self, pfns: npt.NDArray[np.int64]) -> None:
        """Called with the pfns of blocks about to be freed (a subclass unmarks them)."""

    def pfn(self, handle: int) -> int:
        """The pfn of the block held under ``handle``."""
        handles = self.machine.handles
        pfn = int(handles[handle]) if 0 <= handle < handles.shape[0] else -1
        if pfn < 0:
            raise AllocatorError(f"driver {self.name}: handle {handle} holds no page")
        return pfn

    def pfns(self, handles: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The pfns of the blocks held under ``handles`` (each must hold one)."""
        h = np.asarray(handles, np.int64).reshape(-1)
        table = self.machine.handles
        bad = (h < 0) | (h >= table.shape[0])
        p = np.full(h.shape, -1, np.int64)
        p[~bad] = table[h[~bad]]
        if (p < 0).any():
            raise AllocatorError(f"driver {self.name}: handle {int(h[p < 0][0])} holds no page")
        return p

    def free_pages(self, handles: npt.ArrayLike, cpu: int = 0, *, release: bool = True) -> None:
        """Release the blocks held under ``handles`` (put_page: a block another reference
        still holds, e.g. isolated by compaction, is freed when that is dropped) and give the
        handles back (``release=False``: the user keeps them, holding no page)."""
        h = np.asarray(handles, np.int64).reshape(-1)
        if h.size == 0:
            return
        self.freeing(self.pfns(h))
        m = self.machine
        m.run(free_events(h, cpu))
        if release:
            m.release_handles(h)


class MovableDriver(MemoryUser):
    """A memory user with the seed's ``movable`` switch, a migration cost and, optionally, a
    compiled policy. Pages are allocated with ``alloc_pages`` / ``alloc_page`` and freed with
    ``free_pages`` / ``free_page``, by handle."""

    name: str = "driver"
    #: the class's compiled policy (None: Python callbacks)
    default_policy: ClassVar[CompiledPolicy | None] = None

    def __init__(
        self,
        machine: Machine,
        *,
        movable: bool = True,
        cost: MigrationCost | None = None,
        policy: CompiledPolicy | None = None,
    ) -> None:
        super().__init__(machine)
        self.movable = movable
        self.cost = cost or MigrationCost()
        self.policy = policy if policy is not None else self.default_policy

    # ------------------------------------------------------------------ the seed's switch
    def gfp(self, gfp: int) -> int:
        """The request's mask for this driver's pages: __GFP_MOVABLE with the framework (movable
        on), no mobility bits without it."""
        gfp &= ~GFP_MOVABLE_MASK
        return gfp | GFP_F_MOVABLE if self.movable else gfp

    def allocated(self, pfns: npt.NDArray[np.int64]) -> None:
        """__SetPageMovable on each new page when movable."""
        if self.movable:
            SetPagesMovable(self.machine, pfns, self)

    def freeing(self, pfns: npt.NDArray[np.int64]) -> None:
        """__ClearPageMovable before the driver drops its reference: a page isolated right now
        is then freed by the core when it is done with it."""
        if self.movable:
            live = pfns[self.machine.state.mops[pfns] != 0]
            ClearPagesMovable(self.machine, live)

    def alloc_page(self, gfp: int, order: int = 0, cpu: int = 0) -> int:
        """One block under a new handle (see ``alloc_pages``); -1 if the allocation failed."""
        return int(self.alloc_pages(1, gfp, order, cpu=cpu)[0])

    def free_page(self, handle: int, cpu: int = 0) -> None:
        """Release one block (see ``free_pages``)."""
        self.free_pages([handle], cpu)

    def migration_counters(self) -> dict[str, int]:
        """What compaction did with this driver's pages (its row of State.drv): pages isolated,
        migrated, migrate_page calls that failed, and the time its migrations cost (ns).
        Zeros before its first movable page."""
        for i, ops in enumerate(self.machine.movable_ops):
            if ops is self:
                row = self.machine.state.drv[i]
                return {
                    "isolated": int(row[I.DRV_NR_ISOLATED]),
                    "migrated": int(row[I.DRV_NR_MIGRATED]),
                    "failed": int(row[I.DRV_NR_FAILED]),
                    "time_ns": int(row[I.DRV_TIME_NS]),
                }
        return dict.fromkeys(("isolated", "migrated", "failed", "time_ns"), 0)

    # ------------------------------------------------------------------ movable_operations
    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        """Move the page: the data and the handle go to ``dst`` (the core moves the owner and
        the handle), the driver's reference too."""
        m = self.machine
        get_page(m, dst.pfn)
        SetPageMovable(m, dst.pfn, self)
        ClearPageMovable(m, src.pfn)
        put_page(m, src.pfn)
        return MigrateResult.MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Page) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} movable={self.movable}>"
