"""Kernel-version switches (fragsim.profiles.KernelProfile): each older rule, applied to 6.1."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fragsim.errors import ConfigError
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm import vmstat
from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from fragsim.mm.machine import Machine
from fragsim.mm.mmzone import MIGRATE_UNMOVABLE
from fragsim.mm.trace import Tracer
from fragsim.profiles import kernel_profile


@pytest.mark.parametrize("boost", [True, False])
def test_watermark_boost_switch(boost: bool) -> None:
    """pfns 0..7679 MOVABLE, then one MOVABLE page from the last pageblock: an UNMOVABLE request
    falls back to the MOVABLE order-8 block, below pageblock_order, which boosts in 6.1 (see
    test_page_alloc_states.py for the hand-computed state)."""
    m = Machine(
        "flat:8192",
        nr_cpus=1,
        config_thp=False,
        kernel=kernel_profile("6.1", watermark_boost=boost),
    )
    m.daemons = False  # kswapd would take the boost away after the batch
    assert [m.alloc_pages(GFP_HIGHUSER_MOVABLE, 10) for _ in range(7)] == [
        1024 * i for i in range(7)
    ]
    assert m.alloc_pages(GFP_HIGHUSER_MOVABLE, 9) == 7168
    assert m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0) == 7680
    assert m.alloc_pages(GFP_KERNEL, 0) == 7681
    z = m.zone_id(0, "Normal")
    assert m.state.zs[z, I.ZF_BOOST] == (512 if boost else 0)
    assert ("boost    " in vmstat.zoneinfo(m)) == boost


@pytest.mark.parametrize("on", [True, False])
def test_alloc_nofragment_switch(on: bool) -> None:
    m = Machine("arm64-4g", kernel=kernel_profile("6.1", alloc_nofragment=on))
    normal = m.zone_id(0, "Normal")
    flags = pa.fast_alloc_flags(m.state, GFP_KERNEL, MIGRATE_UNMOVABLE, normal)
    assert bool(flags & I.ALLOC_NOFRAGMENT) == on
    dma32 = m.zone_id(0, "DMA32")
    assert not pa.fast_alloc_flags(m.state, GFP_KERNEL, MIGRATE_UNMOVABLE, dma32) & (
        I.ALLOC_NOFRAGMENT
    )


@pytest.mark.parametrize("on", [True, False])
def test_pcp_high_order_switch(on: bool) -> None:
    m = Machine("flat:65536", nr_cpus=1, kernel=kernel_profile("6.1", pcp_high_order=on))
    buf = io.StringIO()
    Tracer(buf, ["mm_page_alloc_zone_locked"]).attach(m)
    pfn = m.alloc_pages(GFP_KERNEL, 1)
    m.tracer.flush(m)
    z = m.zone_id(0, "Normal")
    assert (m.state.pcp[z, 0, I.PCP_COUNT] > 0) == on  # the refill left blocks on the pcp list
    assert buf.getvalue().splitlines()[-1].endswith(f"percpu_refill={int(on)}")
    m.free_pages(pfn, 1)


def test_pagetypeinfo_cap_switch() -> None:
    row = [(0, "Normal", [[123456] + [0] * 10])]
    blocks = [(0, "Normal", [1])]
    assert ">123456" in vmstat.format_pagetypeinfo(9, ["Unmovable"], row, blocks)
    assert " 123456" in vmstat.format_pagetypeinfo(9, ["Unmovable"], row, blocks, cap=False)
    m = Machine("flat:8192", nr_cpus=1, kernel=kernel_profile("6.1", pagetypeinfo_cap=False))
    assert not m.kernel.pagetypeinfo_cap and "Page block order: 9" in vmstat.pagetypeinfo(m)


def test_trace_pfn_decimal_switch() -> None:
    m = Machine("flat:8192", nr_cpus=1, kernel=kernel_profile("6.1", trace_pfn_hex=False))
    buf = io.StringIO()
    Tracer(buf, ["mm_page_alloc"]).attach(m)
    pfn = m.alloc_pages(GFP_KERNEL, 0)
    m.tracer.flush(m)
    assert f" pfn={pfn} order=0 " in buf.getvalue()
    m.free_pages(pfn, 0)


def test_kernel_profile_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="'5.10' is not modelled"):
        Machine("flat:8192", kernel="5.10")
    with pytest.raises(ConfigError, match="unknown switch 'boost'"):
        kernel_profile("6.1", boost=False)
    assert kernel_profile("6.1", watermark_boost=False).name == "6.1[watermark_boost=off]"
    assert np.all(Machine("flat:8192").state.prm[I.P_BOOST_FACTOR] == 15000)


def test_a_profile_name_carries_its_switches() -> None:
    """What a scenario file's [machine] kernel holds: the name a changed profile prints."""
    p = kernel_profile("6.1[watermark_boost=off, pcp_high_order=off]")
    assert (p.watermark_boost, p.pcp_high_order, p.alloc_nofragment) == (False, False, True)
    assert p.name == "6.1[pcp_high_order=off,watermark_boost=off]"
    assert kernel_profile(p.name) == p
    m = Machine("flat:8192", nr_cpus=1, kernel=p.name)
    assert not m.kernel.watermark_boost and m.state.prm[I.P_BOOST_FACTOR] == 0
    with pytest.raises(ConfigError, match="'watermark_boost=no' is not SWITCH=on or SWITCH=off"):
        kernel_profile("6.1[watermark_boost=no]")
    with pytest.raises(ConfigError, match="unknown switch 'boost'"):
        kernel_profile("6.1[boost=off]")
    with pytest.raises(ConfigError, match="'4.4' is not modelled"):
        kernel_profile("4.4[watermark_boost=off]")
