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
from typing import ClassVar

from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm.gfp import __GFP_MOVABLE, GFP_MOVABLE_MASK
from fragsim.mm.internal import alloc_events
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    ClearPageMovable,
    CompiledPolicy,
    IsolateMode,
    MigrateMode,
    MigrateResult,
    MigrationCost,
    SetPageMovable,
    get_page,
    put_page,
)
from fragsim.mm.page import Page

__all__ = ["DRIVERS", "MovableDriver", "driver_class", "register_driver"]

GFP_F_MOVABLE = __GFP_MOVABLE  # (a name with two leading underscores is mangled in a class)

#: name -> driver class, filled by @register_driver
DRIVERS: dict[str, type[MovableDriver]] = {}


def register_driver(name: str) -> Callable[[type[MovableDriver]], type[MovableDriver]]:
    """Class decorator: make the driver available by ``name`` (scenario files use it)."""

    def deco(cls: type[MovableDriver]) -> type[MovableDriver]:
        if name in DRIVERS and DRIVERS[name] is not cls:
            raise ConfigError(f"driver {name!r} registered twice")
        DRIVERS[name] = cls
        cls.name = name
        return cls

    return deco


def driver_class(name: str) -> type[MovableDriver]:
    try:
        return DRIVERS[name]
    except KeyError:
        raise ConfigError(f"unknown driver {name!r}; known: {', '.join(sorted(DRIVERS))}") from None


class MovableDriver:
    """A memory user with the seed's ``movable`` switch, a migration cost and, optionally, a
    compiled policy. Pages are allocated with ``alloc_page`` and freed with ``free_page``, both
    by handle."""

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
        self.machine = machine
        self.movable = movable
        self.cost = cost or MigrationCost()
        self.policy = policy if policy is not None else self.default_policy

    # ------------------------------------------------------------------ the seed's switch
    def gfp(self, gfp: int) -> int:
        """The request's mask for this driver's pages: __GFP_MOVABLE with the framework (movable
        on), no mobility bits without it."""
        gfp &= ~GFP_MOVABLE_MASK
        return gfp | GFP_F_MOVABLE if self.movable else gfp

    def alloc_page(self, gfp: int, order: int = 0, cpu: int = 0) -> int:
        """Allocate a block for the driver under a new handle; register the ops on its head if
        movable. Returns the handle, or -1 if the allocation failed."""
        m = self.machine
        h = m.new_handles(1)
        pfn = int(m.run(alloc_events([h], self.gfp(gfp), order, cpu=cpu))[0])
        if pfn < 0:
            return -1
        if self.movable:
            SetPageMovable(m, pfn, self)
        return h

    def pfn(self, handle: int) -> int:
        """The pfn of the block held under ``handle``."""
        handles = self.machine.handles
        pfn = int(handles[handle]) if 0 <= handle < handles.shape[0] else -1
        if pfn < 0:
            raise AllocatorError(f"driver {self.name}: handle {handle} holds no page")
        return pfn

    def free_page(self, handle: int, cpu: int = 0) -> None:
        """Release the block: drop the ops (__ClearPageMovable) and the driver's reference; if
        the page is isolated right now, the core frees it when it is done with it."""
        m = self.machine
        pfn = self.pfn(handle)
        if self.movable and m.state.mops[pfn]:
            ClearPageMovable(m, pfn)
        m.handles[handle] = -1
        put_page(m, pfn)

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
