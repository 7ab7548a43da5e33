"""Page migration's driver contract: the non-LRU movable page framework. Models
include/linux/migrate.h (struct movable_operations, __SetPageMovable, __ClearPageMovable,
__PageMovable, PageMovable, PageIsolated), include/linux/migrate_mode.h and the non-LRU parts of
mm/migrate.c (isolate_movable_page, move_to_new_folio, putback_movable_pages) of Linux 6.1.192.

A driver implements ``MovableOperations`` (three methods, the kernel's contract, copied below)
and marks each page it owns with ``__SetPageMovable(machine, pfn, ops)``: that is the whole
registration. (Inside a class, call it ``SetPageMovable``: Python mangles names that start with
two underscores in class bodies.) The core, not the driver, sets and clears PG_isolated. The
contract is enforced: a driver that breaks it gets a ``ContractError`` naming the driver and
the pfn.

Two optional attributes of a driver's ops object extend the kernel's contract for the
simulator: ``cost`` (a ``MigrationCost``: the time its migrate_page takes per page and per
migrate_pages() batch; charged to State.drv and the machine's migration time) and ``policy``
(a ``CompiledPolicy``): with one, compaction decides the driver's isolate/migrate/putback answers
itself in compiled code, by the policy's probabilities, and moves the page's owner handle,
without calling the driver; such a driver refers to its pages by handle only (the handle table
is fragsim's rmap, updated on every move). Without a policy, each callback is a Python call.

SIMPLIFICATION: page locks are not modelled (a trylock always succeeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from fragsim.errors import FragsimError
from fragsim.mm import internal as I
from fragsim.mm.page import Page, PG_isolated, PG_movable

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = [
    "ClearPageMovable",
    "ClearPagesMovable",
    "CompiledPolicy",
    "MigrationCost",
    "ContractError",
    "IsolateMode",
    "MigrateMode",
    "MigrateReason",
    "MigrateResult",
    "MovableOperations",
    "PageIsolated",
    "PageMovable",
    "SetPageMovable",
    "SetPagesMovable",
    "__ClearPageMovable",
    "__PageMovable",
    "__SetPageMovable",
    "get_page",
    "isolate_movable_page",
    "migrate_movable_page",
    "move_to_new_page",
    "put_page",
    "putback_movable_page",
]


class MigrateMode(IntEnum):
    """enum migrate_mode (include/linux/migrate_mode.h, 6.1)."""

    MIGRATE_ASYNC = 0
    MIGRATE_SYNC_LIGHT = 1
    MIGRATE_SYNC = 2
    MIGRATE_SYNC_NO_COPY = 3


class MigrateReason(IntEnum):
    """enum migrate_reason (include/linux/migrate_mode.h, 6.1), in the kernel's order."""

    MR_COMPACTION = 0
    MR_MEMORY_FAILURE = 1
    MR_MEMORY_HOTPLUG = 2
    MR_SYSCALL = 3
    MR_MEMPOLICY_MBIND = 4
    MR_NUMA_MISPLACED = 5
    MR_CONTIG_RANGE = 6
    MR_LONGTERM_PIN = 7
    MR_DEMOTION = 8


class MigrateResult(IntEnum):
    """What ``migrate_page`` returns: MIGRATEPAGE_SUCCESS, or a negative errno. -EAGAIN means
    "temporary, retry" (the 10-pass loop of migrate_pages); anything else is permanent."""

    MIGRATEPAGE_SUCCESS = 0
    EAGAIN = -11
    ENOMEM = -12
    EBUSY = -16
    EINVAL = -22
    ENOSYS = -38


class IsolateMode(IntFlag):
    """isolate_mode_t (include/linux/mmzone.h, 6.1)."""

    ISOLATE_NONE = 0
    ISOLATE_ASYNC_MIGRATE = 0x4
    ISOLATE_UNEVICTABLE = 0x8


class ContractError(FragsimError):
    """A driver broke the movable_operations contract; names the driver and the pfn."""


@runtime_checkable
class MovableOperations(Protocol):
    """struct movable_operations (include/linux/migrate.h, 6.1). The kernel's contract:

    * ``isolate_page(page, mode) -> bool``: called with the page locked (the driver must not
      unlock it). Return True if the page is movable now; the driver detaches it from its own
      structures and the VM then owns the page's list links (``page->lru``): the driver must
      not touch them until the page is migrated or put back.
    * ``migrate_page(dst, src, mode) -> MigrateResult``: both pages locked. Copy the contents and
      the driver's metadata to ``dst``, switch the driver's references to it, mark ``dst``
      movable (``__SetPageMovable``) and, on success, call ``__ClearPageMovable(src)`` and
      return MIGRATEPAGE_SUCCESS. -EAGAIN is temporary (the VM retries); any other error is
      permanent for this attempt (the page is put back).
    * ``putback_page(page)``: migration failed or was not attempted: take the isolated page back.

    PG_isolated belongs to the core: a driver never sets or clears it. A driver that frees a
    page while it is isolated calls ``__ClearPageMovable`` and drops its reference; the core
    then treats migration as done and puts back nothing.
    """

    name: str

    def isolate_page(self, page: Page, mode: IsolateMode) -> bool: ...

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult: ...

    def putback_page(self, page: Page) -> None: ...


@dataclass(frozen=True, slots=True)
class MigrationCost:
    """What moving a driver's pages costs: ``per_page_ns`` for each page its migrate_page moves
    (copy, cache flush, remapping the device), ``per_batch_ns`` once for each migrate_pages()
    call that asks it for at least one page (e.g. a GPU's TLB flush)."""

    per_page_ns: int = 0
    per_batch_ns: int = 0


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A driver's answers, decided by compiled code with the machine's seeded generator:
    ``isolate_busy`` is the probability that isolate_page says no (the device holds the page),
    ``migrate_eagain`` / ``migrate_ebusy`` that migrate_page returns -EAGAIN (retried) /
    -EBUSY (permanent). ``pinned`` is the answer for a page the driver has pinned (a reference
    beyond its own, ``get_page``): ``"ignore"``, ``"isolate"`` (isolate_page says no),
    ``"eagain"`` (migrate_page returns -EAGAIN on every pass: retried, then counted failed) or
    ``"ebusy"``. Otherwise the page moves with its owner handle."""

    isolate_busy: float = 0.0
    migrate_eagain: float = 0.0
    migrate_ebusy: float = 0.0
    pinned: str = "ignore"

    def __post_init__(self) -> None:
        if self.pinned not in _PIN_ANSWERS:
            raise ContractError(
                f"CompiledPolicy.pinned: {self.pinned!r} is not one of {', '.join(_PIN_ANSWERS)}"
            )
        for f in ("isolate_busy", "migrate_eagain", "migrate_ebusy"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise ContractError(f"CompiledPolicy.{f}: {v} is not a probability (0..1)")


_PIN_ANSWERS = {
    "ignore": I.PIN_IGNORE,
    "isolate": I.PIN_ISOLATE_BUSY,
    "eagain": I.PIN_EAGAIN,
    "ebusy": I.PIN_EBUSY,
}


def _ppm(p: float) -> int:
    return round(p * 1_000_000)


def _register(m: Machine, ops: MovableOperations, i: int) -> None:
    """Fill the driver's row of State.drv from its optional ``cost`` and ``policy``."""
    row = m.state.drv[i]
    row[:] = 0
    cost = getattr(ops, "cost", None)
    if cost is not None:
        if not isinstance(cost, MigrationCost) or cost.per_page_ns < 0 or cost.per_batch_ns < 0:
            raise ContractError(f"driver {ops.name}: cost must be a MigrationCost >= 0: {cost!r}")
        row[I.DRV_COST_NS] = cost.per_page_ns
        row[I.DRV_BATCH_NS] = cost.per_batch_ns
    row[I.DRV_LAST_CALL] = -1
    policy = getattr(ops, "policy", None)
    if policy is not None:
        if not isinstance(policy, CompiledPolicy):
            raise ContractError(f"driver {ops.name}: policy must be a CompiledPolicy: {policy!r}")
        row[I.DRV_COMPILED] = 1
        row[I.DRV_ISOLATE_BUSY] = _ppm(policy.isolate_busy)
        row[I.DRV_MIGRATE_EAGAIN] = _ppm(policy.migrate_eagain)
        row[I.DRV_MIGRATE_EBUSY] = _ppm(policy.migrate_ebusy)
        row[I.DRV_PINNED] = _PIN_ANSWERS[policy.pinned]


def _ops_id(m: Machine, ops: MovableOperations) -> int:
    """page->mapping for ``ops``: 1 + its index in the machine's table (kept in mem_map). The
    contract is checked once, when ``ops`` is first seen (a runtime Protocol check costs ~10 us)."""
    for i, known in enumerate(m.movable_ops):
        if known is ops:
            return i + 1
    if not isinstance(ops, MovableOperations):
        missing = [
            f
            for f in ("isolate_page", "migrate_page", "putback_page", "name")
            if not hasattr(ops, f)
        ]
        raise ContractError(
            f"{type(ops).__name__} is not a movable_operations: missing {', '.join(missing)}"
        )
    if len(m.movable_ops) >= 127:
        raise ContractError("more than 127 movable_operations on one machine")
    _register(m, ops, len(m.movable_ops))
    m.movable_ops.append(ops)
    return len(m.movable_ops)


def _ops_of(m: Machine, pfn: int) -> MovableOperations | None:
    i = int(m.state.mops[pfn])
    return m.movable_ops[i - 1] if i > 0 else None


def _name(m: Machine, pfn: int) -> str:
    ops = _ops_of(m, pfn)
    return getattr(ops, "name", type(ops).__name__) if ops is not None else "?"


def __SetPageMovable(m: Machine, pfn: int, ops: MovableOperations) -> None:  # noqa: N802
    """__SetPageMovable(page, mops): page->mapping = mops | PAGE_MAPPING_MOVABLE. The page must
    be allocated (the driver owns a reference)."""
    if m.state.refcount[pfn] <= 0:
        raise ContractError(
            f"driver {getattr(ops, 'name', type(ops).__name__)}: __SetPageMovable on pfn "
            f"{pfn:#x}, which is not allocated"
        )
    m.state.mops[pfn] = _ops_id(m, ops)
    m.state.flags[pfn] |= PG_movable


def SetPagesMovable(m: Machine, pfns: npt.ArrayLike, ops: MovableOperations) -> None:  # noqa: N802
    """__SetPageMovable() on many pages at once (a driver's batch of new pages)."""
    p = np.asarray(pfns, np.int64).reshape(-1)
    if p.size == 0:
        return
    st = m.state
    if (st.refcount[p] <= 0).any():
        bad = int(p[st.refcount[p] <= 0][0])
        raise ContractError(
            f"driver {getattr(ops, 'name', type(ops).__name__)}: __SetPageMovable on pfn "
            f"{bad:#x}, which is not allocated"
        )
    st.mops[p] = _ops_id(m, ops)
    st.flags[p] |= PG_movable


def ClearPagesMovable(m: Machine, pfns: npt.ArrayLike) -> None:  # noqa: N802
    """__ClearPageMovable() on many pages at once."""
    p = np.asarray(pfns, np.int64).reshape(-1)
    if p.size and not (m.state.flags[p] & PG_movable).all():
        bad = int(p[(m.state.flags[p] & PG_movable) == 0][0])
        raise ContractError(f"__ClearPageMovable on pfn {bad:#x}, which is not a movable page")
    m.state.mops[p] = 0


def __ClearPageMovable(m: Machine, pfn: int) -> None:  # noqa: N802
    """__ClearPageMovable(page): keep only the PAGE_MAPPING_MOVABLE tag (the ops are gone), so
    __PageMovable stays true and PageMovable becomes false."""
    if not m.state.flags[pfn] & PG_movable:
        raise ContractError(f"__ClearPageMovable on pfn {pfn:#x}, which is not a movable page")
    m.state.mops[pfn] = 0


def __PageMovable(m: Machine, pfn: int) -> bool:  # noqa: N802
    """__PageMovable(): the mapping carries the PAGE_MAPPING_MOVABLE tag."""
    return bool(m.state.flags[pfn] & PG_movable)


def PageMovable(m: Machine, pfn: int) -> bool:  # noqa: N802
    """PageMovable(): tagged and the ops are still there."""
    return __PageMovable(m, pfn) and int(m.state.mops[pfn]) > 0


#: The same functions without the leading underscores: Python mangles a name that starts with
#: two underscores inside a class body, so a driver's methods call these.
SetPageMovable = __SetPageMovable
ClearPageMovable = __ClearPageMovable


def PageIsolated(m: Machine, pfn: int) -> bool:  # noqa: N802
    return bool(m.state.flags[pfn] & PG_isolated)


def _links(m: Machine, pfn: int) -> tuple[int, int]:
    return int(m.state.nxt[pfn]), int(m.state.prv[pfn])


def isolate_movable_page(m: Machine, pfn: int, mode: IsolateMode = IsolateMode.ISOLATE_NONE) -> int:
    """isolate_movable_page() (mm/migrate.c, 6.1): 0 if isolated, -EBUSY if not. Takes a
    reference that putback or migration drops."""
    st = m.state
    if st.refcount[pfn] <= 0:  # get_page_unless_zero()
        return MigrateResult.EBUSY
    if not __PageMovable(m, pfn) or not PageMovable(m, pfn) or PageIsolated(m, pfn):
        return MigrateResult.EBUSY
    ops = _ops_of(m, pfn)
    assert ops is not None
    st.refcount[pfn] += 1
    ok = ops.isolate_page(Page(m, pfn), mode)
    if not isinstance(ok, bool):
        st.refcount[pfn] -= 1
        raise ContractError(f"driver {ops.name}: isolate_page(pfn {pfn:#x}) returned {ok!r}")
    if PageIsolated(m, pfn):
        raise ContractError(f"driver {ops.name}: set PG_isolated on pfn {pfn:#x} itself")
    if not ok:
        st.refcount[pfn] -= 1
        return MigrateResult.EBUSY
    st.flags[pfn] |= PG_isolated
    return 0


def _check_links(m: Machine, ops: MovableOperations, pfn: int, before: tuple[int, int]) -> None:
    """The VM owns an isolated page's list links: the driver's callback must leave them."""
    if _links(m, pfn) != before:
        raise ContractError(f"driver {ops.name}: touched the list links of isolated pfn {pfn:#x}")


def move_to_new_page(m: Machine, dst: int, src: int, mode: MigrateMode) -> MigrateResult:
    """move_to_new_folio() for a non-LRU page (mm/migrate.c, 6.1): if the driver released the
    isolated source (no longer PageMovable), success without calling it; else call
    ``migrate_page`` and check the contract; on success the core clears PG_isolated."""
    if not PageIsolated(m, src):
        raise ContractError(f"migration of pfn {src:#x}, which was never isolated")
    if not PageMovable(m, src):
        _done(m, src)
        return MigrateResult.MIGRATEPAGE_SUCCESS
    ops = _ops_of(m, src)
    assert ops is not None
    before = _links(m, src)
    rc = ops.migrate_page(Page(m, dst), Page(m, src), mode)
    _check_links(m, ops, src, before)
    try:
        rc = MigrateResult(rc)
    except ValueError:
        raise ContractError(
            f"driver {ops.name}: migrate_page(pfn {dst:#x} <- {src:#x}) returned {rc!r}"
        ) from None
    if PageIsolated(m, dst) or not PageIsolated(m, src):
        raise ContractError(f"driver {ops.name}: changed PG_isolated during migrate_page")
    if rc == MigrateResult.MIGRATEPAGE_SUCCESS:
        if PageMovable(m, src):
            raise ContractError(
                f"driver {ops.name}: migrate_page(pfn {dst:#x} <- {src:#x}) claimed success but "
                "did not __ClearPageMovable the source (its data did not move)"
            )
        if _ops_of(m, dst) is not ops:
            raise ContractError(
                f"driver {ops.name}: migrate_page(pfn {dst:#x} <- {src:#x}) claimed success but "
                "did not __SetPageMovable the destination"
            )
        _done(m, src)
    return rc


def _done(m: Machine, src: int) -> None:
    m.state.flags[src] &= ~PG_isolated


def putback_movable_page(m: Machine, pfn: int) -> None:
    """putback_movable_pages() for one non-LRU page (6.1): if still PageMovable, the driver's
    ``putback_page``; clear PG_isolated; drop the isolation reference (freeing the page if the
    driver released it meanwhile)."""
    if not PageIsolated(m, pfn):
        raise ContractError(
            f"driver {_name(m, pfn)}: putback of pfn {pfn:#x}, which is not isolated"
        )
    ops = _ops_of(m, pfn)
    if ops is not None:
        before = _links(m, pfn)
        ops.putback_page(Page(m, pfn))
        _check_links(m, ops, pfn, before)
    _done(m, pfn)
    put_page(m, pfn)


def get_page(m: Machine, pfn: int) -> None:
    """get_page(): take a reference."""
    if m.state.refcount[pfn] <= 0:
        raise ContractError(f"get_page on pfn {pfn:#x}, which is not allocated")
    m.state.refcount[pfn] += 1


def put_page(m: Machine, pfn: int) -> None:
    """put_page(): drop a reference; the last one frees the block (__free_pages)."""
    if m.state.refcount[pfn] > 1:
        m.state.refcount[pfn] -= 1  # put_page_testzero() is false: nothing else happens
        return
    m.free_pages(pfn, int(m.state.order[pfn]))


def migrate_movable_page(m: Machine, src: int, dst: int, mode: MigrateMode) -> MigrateResult:
    """The non-LRU path of migrate_folio_unmap + migrate_folio_move (6.1.192) for one isolated
    page and a destination the caller allocated (the core's reference): a source whose other
    references are gone (refcount 1) is done; otherwise move_to_new_page(). On success the
    core's references on both pages are dropped (the driver holds its own on ``dst``); on a
    permanent failure the source is put back; on -EAGAIN it stays isolated for a retry. The
    destination's core reference is dropped in every case: a driver that took none on success
    loses the page, as in the kernel."""
    if m.state.refcount[src] == 1:
        _done(m, src)
        put_page(m, src)
        put_page(m, dst)
        return MigrateResult.MIGRATEPAGE_SUCCESS
    rc = move_to_new_page(m, dst, src, mode)
    put_page(m, dst)
    if rc == MigrateResult.MIGRATEPAGE_SUCCESS:
        put_page(m, src)
    elif rc != MigrateResult.EAGAIN:
        putback_movable_page(m, src)
    return rc
