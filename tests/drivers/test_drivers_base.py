"""The seed's switch on a driver (fragsim/drivers/base.py): movable pages are allocated
__GFP_MOVABLE with their ops registered and compaction moves them; unmovable ones are not."""

from __future__ import annotations

import pytest

from fragsim.drivers import DRIVERS, MovableDriver, driver_class, register_driver
from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm import internal as I
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import GFP_KERNEL
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import CompiledPolicy, MigrationCost
from fragsim.mm.mmzone import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE
from fragsim.mm.page import PG_movable


@register_driver("test-device")
class Device(MovableDriver):
    """A device that holds single pages."""


def scattered(
    movable: bool, policy: CompiledPolicy | None = None
) -> tuple[Machine, Device, list[int]]:
    """flat:8192 (16 pageblocks): the device takes every page, then keeps one per pageblock."""
    m = Machine("flat:8192", nr_cpus=1, config_thp=False, min_free_kbytes=128)
    m.daemons = False
    d = Device(m, movable=movable, policy=policy, cost=MigrationCost(per_page_ns=1000))
    hs = []
    while (h := d.alloc_page(GFP_KERNEL)) >= 0:
        hs.append(h)
    keep = {}
    for h in hs:
        keep.setdefault(d.pfn(h) >> 9, h)
    for h in hs:
        if h not in keep.values():
            d.free_page(h)
    m.drain_all_pages()
    return m, d, sorted(keep.values())


def free_pageblocks(m: Machine) -> int:
    nr = m.state.nr_free[m.zone_id(0, "Normal")]
    return int(nr[9] + 2 * nr[10])


@pytest.mark.parametrize("policy", [None, CompiledPolicy()])
def test_movable_driver_pages_move_and_keep_their_handles(policy: CompiledPolicy | None) -> None:
    m, d, hs = scattered(True, policy)
    before = {h: d.pfn(h) for h in hs}
    assert all(m.state.flags[p] & PG_movable for p in before.values())
    assert free_pageblocks(m) == 0
    m.compact_memory()
    m.drain_all_pages()
    assert free_pageblocks(m) >= 13
    after = {h: d.pfn(h) for h in hs}
    assert sum(after[h] != before[h] for h in hs) >= 13
    for h, p in after.items():
        assert m.state.owner[p] == h and m.state.mops[p] > 0
    moved = sum(after[h] != before[h] for h in hs)
    assert m.state.drv[0, I.DRV_TIME_NS] == 1000 * moved
    check_invariants(m)
    for h in hs:  # the driver lets go of everything
        d.free_page(h)
    m.drain_all_pages()
    check_invariants(m)


def test_unmovable_driver_pages_pin_their_pageblocks() -> None:
    m, d, hs = scattered(False)
    pfns = [d.pfn(h) for h in hs]
    assert not any(m.state.flags[p] & PG_movable for p in pfns)
    pb = m.state.pb
    assert all((pb[p >> 9] & 7) == MIGRATE_UNMOVABLE for p in pfns)
    m.compact_memory()
    assert [d.pfn(h) for h in hs] == pfns
    assert free_pageblocks(m) == 0


def test_movable_switch_sets_the_gfp_mobility() -> None:
    m = Machine("flat:4096", nr_cpus=1)
    assert Device(m, movable=True).gfp(GFP_KERNEL) & 0x8
    assert not Device(m, movable=False).gfp(GFP_KERNEL | 0x8) & 0x18
    h = Device(m, movable=True).alloc_page(GFP_KERNEL)
    assert (m.state.pb[m.handles[h] >> 9] & 7) == MIGRATE_MOVABLE


def test_registry() -> None:
    assert DRIVERS["test-device"] is Device and Device.name == "test-device"
    assert driver_class("test-device") is Device
    with pytest.raises(ConfigError, match="unknown driver 'nope'"):
        driver_class("nope")
    with pytest.raises(ConfigError, match="registered twice"):
        register_driver("test-device")(type("Other", (MovableDriver,), {}))


def test_freeing_a_handle_that_holds_nothing_is_a_clear_error() -> None:
    m = Machine("flat:4096", nr_cpus=1)
    d = Device(m)
    h = d.alloc_page(GFP_KERNEL)
    d.free_page(h)
    with pytest.raises(AllocatorError, match=f"driver test-device: handle {h} holds no page"):
        d.free_page(h)
    with pytest.raises(AllocatorError, match="handle 99999 holds no page"):
        d.pfn(99999)
