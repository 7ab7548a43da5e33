"""The movable_operations contract, checked on every movable driver.

Parametrised over every ``MovableDriver`` subclass registered (``@register_driver``) by a module
of the ``fragsim.drivers`` package (all its modules are imported with pkgutil first), plus the
user's example ``examples/ion_pool.py`` loaded by path through ``fragsim.drivers.loader``.
(Drivers registered by test modules are not included: which of those exist depends on what
pytest collected.)

The hook a driver defines to join this suite (a driver without the two required classmethods
FAILS the suite, it is not skipped)::

    @classmethod
    def contract_instance(cls, machine: Machine, movable: bool) -> Self:
        '''Required. A driver of ``machine`` with the seed's switch ``movable``, configured so
        that the pages contract_fill gives it are order-0 and movable right now (when
        ``movable``): no pins, no jobs, no refusal probabilities.'''

    @classmethod
    def contract_fill(cls, driver, n_pages: int) -> numpy.ndarray:  # int64 handles
        '''Required. Make ``driver`` hold at least ``n_pages`` more order-0 pages through its
        normal API (BOs, buffers, zspages, balloon pages, ...), in as few allocation batches as
        the driver allows, and return the handles (Machine.handles entries) of every page this
        call made it hold.'''

    @classmethod
    def contract_free(cls, driver, handles: numpy.ndarray) -> None:
        '''Optional (default: ``driver.free_pages(handles)``). Release the pages held under
        ``handles`` through the driver's normal API. It may release more pages of the same
        fills (e.g. the whole BO or zspage holding one of them); once every handle
        contract_fill returned has been given to it, the driver holds none of those pages.'''

    contract_frees_isolated: bool = True
        '''Optional. False for a driver that, like 6.1's balloon, keeps only pages on its own
        list releasable: a page isolated right now stays the driver's (the suite checks that it
        comes back whole at putback instead of being freed).'''

The checks: pages are allocated __GFP_MOVABLE (in MOVABLE pageblocks, with the driver's ops)
iff ``movable``; ``compact_memory()`` keeps every page accounted (each handle points at an
allocated page that it owns, with the driver's ops, no two handles at one page, no page lost;
the invariant checker is green); unmovable pages never move, movable ones do; after a
migration the old page is freed and the new one carries the ops; isolate/putback leave
PG_isolated to the core; a page freed while isolated is freed when the core puts it back; and
freeing everything gives every page back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fragsim.drivers import DRIVERS, MovableDriver
from fragsim.drivers.loader import import_builtin_drivers, load_driver
from fragsim.mm import internal as I
from fragsim.mm.debug import check_invariants
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    IsolateMode,
    MigrateResult,
    isolate_movable_page,
    putback_movable_page,
)
from fragsim.mm.mmzone import MIGRATE_MOVABLE
from fragsim.mm.page import PG_isolated, PG_movable

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ion_pool.py"


def contract_drivers() -> list[type[MovableDriver]]:
    import_builtin_drivers()
    found = {
        cls
        for cls in DRIVERS.values()
        if issubclass(cls, MovableDriver) and cls.__module__.startswith("fragsim.drivers.")
    }
    example = load_driver(f"{EXAMPLE}:IonPool")
    assert issubclass(example, MovableDriver)
    found.add(example)
    return sorted(found, key=lambda c: c.name)


DRIVER_CLASSES = contract_drivers()
IDS = [c.name for c in DRIVER_CLASSES]


def require_hook(cls: type[MovableDriver]) -> None:
    """Fail (not skip) a registered movable driver that does not define the hook."""
    missing = [
        f for f in ("contract_instance", "contract_fill") if not callable(getattr(cls, f, None))
    ]
    if missing:
        pytest.fail(
            f"driver {cls.name!r} ({cls.__module__}.{cls.__qualname__}) is a registered "
            f"MovableDriver but does not define {' and '.join(missing)}: define the classmethods "
            "contract_instance(machine, movable) and contract_fill(driver, n_pages) (see "
            "tests/drivers/test_contract.py's docstring) so the contract suite can run it"
        )


def new_machine() -> Machine:
    """flat:4096: 8 pageblocks of 512 pages."""
    m = Machine("flat:4096", nr_cpus=1, config_thp=False, min_free_kbytes=128, debug=True)
    m.daemons = False
    return m


def instance(cls: type[MovableDriver], m: Machine, movable: bool) -> Any:
    require_hook(cls)
    d = cls.contract_instance(m, movable)  # type: ignore[attr-defined]
    assert isinstance(d, cls) and d.machine is m and d.movable is movable
    return d


def fill(d: Any, n: int) -> npt.NDArray[np.int64]:
    hs = np.asarray(type(d).contract_fill(d, n), np.int64)
    assert hs.size >= n and np.unique(hs).size == hs.size
    assert (d.machine.handles[hs] >= 0).all()
    return hs


def free(d: Any, hs: npt.NDArray[np.int64]) -> None:
    f = getattr(type(d), "contract_free", None)
    if f is None:
        d.free_pages(hs)
    else:
        f(d, hs)


def ops_of(m: Machine, pfn: int) -> Any:
    i = int(m.state.mops[pfn])
    return m.movable_ops[i - 1] if i > 0 else None


def check_held(d: Any, hs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Every handle holds one allocated page it owns, distinct, with the driver's ops iff
    movable, none isolated; returns the pfns."""
    m = d.machine
    st = m.state
    pfns: npt.NDArray[np.int64] = m.handles[hs].astype(np.int64)
    assert (pfns >= 0).all(), "a handle lost its page"
    assert np.unique(pfns).size == pfns.size, "two handles point at one page"
    assert (st.refcount[pfns] >= 1).all()
    assert (st.owner[pfns] == hs).all()
    assert (st.order[pfns] == 0).all()
    assert not (st.flags[pfns] & PG_isolated).any()
    if d.movable:
        assert (st.flags[pfns] & PG_movable).all()
        assert all(ops_of(m, int(p)) is d for p in pfns)
    else:
        assert not (st.flags[pfns] & PG_movable).any() and not st.mops[pfns].any()
    return pfns


def scattered(cls: type[MovableDriver], movable: bool) -> tuple[Machine, Any, Any]:
    """The driver fills most of memory in fills of 64 pages, then keeps one fill in four:
    its pages sit in every pageblock, with free holes between them."""
    m = new_machine()
    d = instance(cls, m, movable)
    fills = []
    while int(m.state.zs[:, I.ZF_NR_FREE_PAGES].sum()) > 600:
        fills.append(fill(d, 64))
    for i, hs in enumerate(fills):
        if i % 4:
            free(d, hs)
    m.drain_all_pages()
    kept = np.concatenate(fills[::4])
    return m, d, kept


def nr_free(m: Machine) -> int:
    m.drain_all_pages()
    return int(m.state.zs[:, I.ZF_NR_FREE_PAGES].sum())


@pytest.mark.parametrize("cls", DRIVER_CLASSES, ids=IDS)
def test_the_hook_is_defined(cls: type[MovableDriver]) -> None:
    require_hook(cls)


def test_a_registered_driver_without_the_hook_fails_the_suite() -> None:
    class NoHook(MovableDriver):
        name = "no-hook"

    with pytest.raises(pytest.fail.Exception, match="does not define contract_instance and "):
        require_hook(NoHook)


@pytest.mark.parametrize("movable", [True, False])
@pytest.mark.parametrize("cls", DRIVER_CLASSES, ids=IDS)
def test_pages_are_movable_iff_the_switch_is_on(cls: type[MovableDriver], movable: bool) -> None:
    m = new_machine()
    d = instance(cls, m, movable)
    hs = fill(d, 32)
    pfns = check_held(d, hs)
    mt = m.state.pb[pfns >> m.pageblock_order] & 7
    if movable:
        assert (mt == MIGRATE_MOVABLE).all()
    else:
        assert not (mt == MIGRATE_MOVABLE).any()
    check_invariants(m)


@pytest.mark.parametrize("movable", [True, False])
@pytest.mark.parametrize("cls", DRIVER_CLASSES, ids=IDS)
def test_compaction_keeps_every_page_accounted(cls: type[MovableDriver], movable: bool) -> None:
    m, d, hs = scattered(cls, movable)
    before = check_held(d, hs)
    free_before = nr_free(m)
    m.compact_memory()
    check_invariants(m)
    after = check_held(d, hs)
    assert nr_free(m) == free_before  # no page lost or double-counted
    moved = after != before
    if not movable:
        assert not moved.any()  # a kernel without the framework cannot move them
        return
    assert moved.sum() >= hs.size // 4
    st = m.state
    for h, old in zip(hs[moved], before[moved], strict=True):
        # the old page was freed (or reused for another of the driver's pages)
        assert st.owner[old] != h
        assert st.refcount[old] == 0 or old in set(after.tolist())
    # the driver's pages moved up: the low pageblocks are free now
    assert before.min() < after.min()
    # every page freed through the driver's API: all memory comes back
    free(d, hs)
    assert nr_free(m) == free_before + hs.size


@pytest.mark.parametrize("cls", DRIVER_CLASSES, ids=IDS)
def test_isolate_and_putback_leave_pg_isolated_to_the_core(cls: type[MovableDriver]) -> None:
    m = new_machine()
    d = instance(cls, m, True)
    hs = fill(d, 8)
    pfn = int(m.handles[hs[0]])
    rc = int(m.state.refcount[pfn])
    assert isolate_movable_page(m, pfn, IsolateMode.ISOLATE_NONE) == 0
    assert m.state.flags[pfn] & PG_isolated and m.state.refcount[pfn] == rc + 1
    # a second isolation of an isolated page is refused by the core
    assert isolate_movable_page(m, pfn) == MigrateResult.EBUSY
    putback_movable_page(m, pfn)
    assert not m.state.flags[pfn] & PG_isolated and m.state.refcount[pfn] == rc
    check_held(d, hs)
    check_invariants(m)


@pytest.mark.parametrize("cls", DRIVER_CLASSES, ids=IDS)
def test_unmovable_pages_cannot_be_isolated(cls: type[MovableDriver]) -> None:
    m = new_machine()
    d = instance(cls, m, False)
    hs = fill(d, 8)
    pfn = int(m.handles[hs[0]])
    assert isolate_movable_page(m, pfn) == MigrateResult.EBUSY
    assert not m.state.flags[pfn] & PG_isolated
    check_held(d, hs)


@pytest.mark.parametrize("cls", DRIVER_CLASSES, ids=IDS)
def test_freeing_a_page_while_it_is_isolated(cls: type[MovableDriver]) -> None:
    m = new_machine()
    d = instance(cls, m, True)
    base = nr_free(m)
    hs = fill(d, 8)
    pfn = int(m.handles[hs[0]])
    assert isolate_movable_page(m, pfn) == 0
    free(d, hs[:1])
    if not getattr(cls, "contract_frees_isolated", True):
        # a driver whose isolated pages are off its own lists (6.1's balloon) cannot release
        # one: it stays the driver's, isolated, and comes back whole at putback
        assert m.handles[hs[0]] == pfn and m.state.flags[pfn] & PG_isolated
        putback_movable_page(m, pfn)
        assert not m.state.flags[pfn] & PG_isolated and m.state.refcount[pfn] == 1
        assert ops_of(m, pfn) is d
        free(d, hs)
        assert nr_free(m) == base
        check_invariants(m)
        return
    # the driver let go (its ops are gone), the core still holds the isolated page
    assert m.handles[hs[0]] < 0
    assert m.state.refcount[pfn] == 1 and m.state.flags[pfn] & PG_isolated
    assert m.state.mops[pfn] == 0
    putback_movable_page(m, pfn)  # the core puts it back: freed
    assert m.state.refcount[pfn] == 0
    free(d, hs[m.handles[hs] >= 0])
    assert nr_free(m) == base
    check_invariants(m)
