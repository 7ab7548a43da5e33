"""The movable_operations contract (Linux 6.1): isolate -> migrate / putback, the core's
PG_isolated, a page released while isolated, and errors for drivers that break the contract."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    ClearPageMovable,
    ContractError,
    IsolateMode,
    MigrateMode,
    MigrateResult,
    PageIsolated,
    PageMovable,
    SetPageMovable,
    __ClearPageMovable,
    __PageMovable,
    __SetPageMovable,
    get_page,
    isolate_movable_page,
    migrate_movable_page,
    put_page,
)
from fragsim.mm.page import Page

SYNC = MigrateMode.MIGRATE_SYNC


@dataclass
class ToyDriver:
    """A driver that keeps one datum per page and follows the contract (unless told not to)."""

    m: Machine
    name: str = "toy"
    data: dict[int, str] = field(default_factory=dict)  # pfn -> contents
    busy: set[int] = field(default_factory=set)
    migrate_result: MigrateResult = MigrateResult.MIGRATEPAGE_SUCCESS
    log: list[str] = field(default_factory=list)
    breaks: str = ""

    def new_page(self, contents: str) -> int:
        pfn = self.m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
        SetPageMovable(self.m, pfn, self)
        self.data[pfn] = contents
        return pfn

    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        self.log.append(f"isolate {page.pfn:#x}")
        return page.pfn not in self.busy

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        self.log.append(f"migrate {src.pfn:#x}->{dst.pfn:#x}")
        if self.migrate_result != MigrateResult.MIGRATEPAGE_SUCCESS:
            return self.migrate_result
        if self.breaks == "lie":
            return MigrateResult.MIGRATEPAGE_SUCCESS  # claims success, moves nothing
        if self.breaks == "links":
            self.m.state.prv[src.pfn] = 7
        self.data[dst.pfn] = self.data.pop(src.pfn)
        get_page(self.m, dst.pfn)  # the driver's own reference moves to dst
        SetPageMovable(self.m, dst.pfn, self)
        ClearPageMovable(self.m, src.pfn)
        put_page(self.m, src.pfn)
        return MigrateResult.MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Page) -> None:
        self.log.append(f"putback {page.pfn:#x}")


def machine() -> Machine:
    return Machine("flat:8192", nr_cpus=1)


def test_isolate_then_migrate_moves_the_data_and_the_ownership() -> None:
    m = machine()
    d = ToyDriver(m)
    src = d.new_page("hello")
    assert __PageMovable(m, src) and PageMovable(m, src) and not PageIsolated(m, src)
    assert isolate_movable_page(m, src) == 0
    assert PageIsolated(m, src) and m.state.refcount[src] == 2  # the isolation reference
    assert isolate_movable_page(m, src) == MigrateResult.EBUSY  # never isolated twice
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    assert migrate_movable_page(m, src, dst, SYNC) == MigrateResult.MIGRATEPAGE_SUCCESS
    assert d.data == {dst: "hello"}
    assert m.state.refcount[dst] == 1 and PageMovable(m, dst) and not PageIsolated(m, dst)
    assert m.state.refcount[src] == 0  # freed
    assert d.log == [f"isolate {src:#x}", f"migrate {src:#x}->{dst:#x}"]


def test_busy_pages_are_not_isolated_and_failures_are_put_back() -> None:
    m = machine()
    d = ToyDriver(m)
    a, b = d.new_page("a"), d.new_page("b")
    d.busy.add(a)
    assert isolate_movable_page(m, a) == MigrateResult.EBUSY and m.state.refcount[a] == 1
    assert isolate_movable_page(m, b) == 0
    d.migrate_result = MigrateResult.EAGAIN  # temporary: stays isolated for a retry
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    assert migrate_movable_page(m, b, dst, SYNC) == MigrateResult.EAGAIN
    assert PageIsolated(m, b) and m.state.refcount[dst] == 0  # dst went back to the allocator
    d.migrate_result = MigrateResult.EBUSY  # permanent: put back
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    assert migrate_movable_page(m, b, dst, SYNC) == MigrateResult.EBUSY
    assert not PageIsolated(m, b) and m.state.refcount[b] == 1 and d.data[b] == "b"
    assert d.log[-1] == f"putback {b:#x}"


def test_a_page_released_while_isolated_counts_as_migrated() -> None:
    """The driver frees an isolated page: __ClearPageMovable and drop its reference; the core
    then sees refcount 1 and treats the migration as done without calling the driver."""
    m = machine()
    d = ToyDriver(m)
    p = d.new_page("gone")
    assert isolate_movable_page(m, p) == 0
    __ClearPageMovable(m, p)
    put_page(m, p)
    assert __PageMovable(m, p) and not PageMovable(m, p) and m.state.refcount[p] == 1
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    assert migrate_movable_page(m, p, dst, SYNC) == MigrateResult.MIGRATEPAGE_SUCCESS
    assert m.state.refcount[p] == 0 and m.state.refcount[dst] == 0
    assert d.log == [f"isolate {p:#x}"]


@pytest.mark.corrupts_state  # the misbehaving driver leaves broken links behind
@pytest.mark.parametrize("how", ["lie", "links"])
def test_contract_breaches_name_the_driver_and_the_pfn(how: str) -> None:
    """Claiming success without moving the data (the source still movable), or touching an
    isolated page's list links, is reported with the driver's name and the pfn."""
    m = machine()
    d = ToyDriver(m, breaks=how)
    p = d.new_page("x")
    assert isolate_movable_page(m, p) == 0
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    if how == "lie":
        match = rf"driver toy: .*{p:#x}\) claimed success but did not __ClearPageMovable"
    else:
        match = rf"driver toy: touched the list links of isolated pfn {p:#x}"
    with pytest.raises(ContractError, match=match):
        migrate_movable_page(m, p, dst, SYNC)


def test_not_a_driver_and_putback_of_a_page_never_isolated() -> None:
    m = machine()
    pfn = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)

    class Half:
        name = "half"

        def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
            return True

    with pytest.raises(ContractError, match="missing migrate_page, putback_page"):
        __SetPageMovable(m, pfn, Half())  # type: ignore[arg-type]
    d = ToyDriver(m)
    p = d.new_page("y")
    from fragsim.mm.migrate import putback_movable_page

    with pytest.raises(ContractError, match=rf"driver toy: putback of pfn {p:#x}, which is not"):
        putback_movable_page(m, p)
    with pytest.raises(ContractError, match="not allocated"):
        __SetPageMovable(m, 4095, d)
    m.free_pages(pfn, 0)
