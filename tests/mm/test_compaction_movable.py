"""Compaction with non-LRU movable pages (the movable_operations framework, Linux 6.1): a zone
whose only obstacles are driver pages compacts with their ops registered and cannot without;
-EAGAIN is retried up to 10 passes, then the page is put back."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from fragsim.mm import internal as I
from fragsim.mm import vmstat
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    ClearPageMovable,
    IsolateMode,
    MigrateMode,
    MigrateResult,
    PageIsolated,
    SetPageMovable,
    get_page,
    put_page,
)
from fragsim.mm.page import Page, PG_anon, PG_lru, PG_swapbacked
from fragsim.mm.trace import Tracer

ANON = PG_lru | PG_anon | PG_swapbacked


@dataclass
class Driver:
    """Keeps one datum per page; answers -EAGAIN or -EBUSY for chosen source pfns."""

    m: Machine
    name: str = "drv"
    data: dict[int, int] = field(default_factory=dict)
    eagain: set[int] = field(default_factory=set)
    ebusy: set[int] = field(default_factory=set)
    log: list[tuple[str, int]] = field(default_factory=list)

    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        self.log.append(("isolate", page.pfn))
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        self.log.append(("migrate", src.pfn))
        if src.pfn in self.eagain:
            return MigrateResult.EAGAIN
        if src.pfn in self.ebusy:
            return MigrateResult.EBUSY
        self.data[dst.pfn] = self.data.pop(src.pfn)
        get_page(self.m, dst.pfn)
        SetPageMovable(self.m, dst.pfn, self)
        ClearPageMovable(self.m, src.pfn)
        put_page(self.m, src.pfn)
        return MigrateResult.MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Page) -> None:
        self.log.append(("putback", page.pfn))


def one_page_per_pageblock(movable: bool) -> tuple[Machine, Driver, list[int]]:
    """flat:8192 where every pageblock holds exactly one driver page and nothing else."""
    m = Machine("flat:8192", nr_cpus=1, config_thp=False)
    n = int(m.state.zs[:, I.ZF_MANAGED].sum())
    handles = np.full(n, -1, np.int32)
    m.run(I.alloc_events(np.arange(n), GFP_HIGHUSER_MOVABLE | 0x2000), handles)
    used = sorted(int(p) for p in handles[handles >= 0])
    keep = {}
    for p in used:
        keep.setdefault(p >> 9, p)
    d = Driver(m)
    for i, p in enumerate(keep.values()):
        if movable:
            SetPageMovable(m, p, d)
        d.data[p] = i
    for p in used:
        if p not in d.data:
            m.free_pages(p, 0)
    m.drain_all_pages()
    return m, d, sorted(d.data)


def pageblocks_free(m: Machine) -> int:
    nr = m.state.nr_free[m.zone_id(0, "Normal")]
    return int(nr[9] + 2 * nr[10])


def test_driver_pages_block_compaction_without_ops_and_move_with_them() -> None:
    without, _, _ = one_page_per_pageblock(movable=False)
    assert pageblocks_free(without) == 0
    without.compact_memory()
    without.drain_all_pages()
    assert pageblocks_free(without) == 0  # the kernel without the framework cannot move them

    m, d, pages = one_page_per_pageblock(movable=True)
    assert pageblocks_free(m) == 0
    contents = {d.data[p] for p in pages}
    m.compact_memory()
    m.drain_all_pages()  # the freed sources sit on the pcp lists until drained
    check_invariants(m)
    assert pageblocks_free(m) >= 6  # the driver pages moved up; the low blocks are free
    assert {v for v in d.data.values()} == contents  # no datum lost or duplicated
    for pfn in d.data:  # every datum sits on a movable page the driver owns, none isolated
        assert m.state.refcount[pfn] == 1 and not PageIsolated(m, pfn)
        assert m.movable_ops[m.state.mops[pfn] - 1] is d
    c = vmstat.vmstat_counters(m)
    assert c["pgmigrate_success"] == sum(1 for op, _ in d.log if op == "migrate") > 0


def test_eagain_is_retried_for_ten_passes_then_the_page_is_put_back() -> None:
    m, d, pages = one_page_per_pageblock(movable=True)
    stuck, refused = pages[0], pages[1]
    d.eagain.add(stuck)
    d.ebusy.add(refused)
    m.compact_memory()
    check_invariants(m)
    attempts = [op for op, p in d.log if p == stuck]
    assert attempts == ["isolate"] + ["migrate"] * 10 + ["putback"]
    assert [op for op, p in d.log if p == refused] == ["isolate", "migrate", "putback"]
    assert d.data[stuck] == 0 and d.data[refused] == 1  # both stayed, with their data
    assert m.state.refcount[stuck] == 1 and not PageIsolated(m, stuck)
    c = vmstat.vmstat_counters(m)
    assert c["pgmigrate_fail"] == 2


def test_eagain_tracepoints_and_driver_calls_in_order() -> None:
    """The kernel's view of one stuck driver page: mm_compaction_isolate_migratepages takes it,
    migrate_pages retries it for ten passes (the driver sees ten migrate_page calls; the kernel
    traces no pass), mm_migrate_pages reports it failed, mm_compaction_migratepages too, and the
    driver gets its putback_page."""
    m, d, pages = one_page_per_pageblock(movable=True)
    stuck = pages[0]
    d.eagain.add(stuck)
    buf = io.StringIO()
    Tracer(
        buf,
        [
            "mm_compaction_isolate_migratepages",
            "mm_migrate_pages",
            "mm_compaction_migratepages",
        ],
    ).attach(m)
    m.compact_memory()
    m.tracer.flush(m)
    lines = [line.split(": ", 1)[1] for line in buf.getvalue().splitlines()]
    block = stuck >> 9 << 9
    assert lines[0].startswith(
        f"mm_compaction_isolate_migratepages: range=({block:#x} ~ {block + 512:#x}) "
    )
    assert lines[0].endswith("nr_taken=1")
    assert lines[1].startswith("mm_migrate_pages: nr_succeeded=0 nr_failed=1 ")
    assert lines[2] == "mm_compaction_migratepages: nr_migrated=0 nr_failed=1"
    assert [op for op, p in d.log if p == stuck] == ["isolate"] + ["migrate"] * 10 + ["putback"]
