"""Tracepoint text in 6.1's ftrace format, the bench trace decoder, and the CLI demo."""

from __future__ import annotations

import io
import re

import numpy as np

from fragsim.bench import events_from_trace
from fragsim.cli import main
from fragsim.mm.gfp import GFP_KERNEL, parse_gfp, show_gfp_flags
from fragsim.mm.machine import Machine
from fragsim.mm.trace import Tracer

LINE = re.compile(
    r"^ +fragsim-1 +\[000\] \.\.\.\.\. +\d+\.\d{6}: (mm_page_\w+): "
    r"page=[0-9a-f]{16} pfn=0x[0-9a-f]+ "
)


def test_kmem_tracepoints_are_written_in_ftrace_format() -> None:
    m = Machine("flat:262144", nr_cpus=1)  # pcp batch 63
    buf = io.StringIO()
    t = Tracer(buf)
    t.attach(m)
    pfn = m.alloc_pages(GFP_KERNEL, 0)
    m.free_pages(pfn, 0)
    m.drain_all_pages()
    t.flush(m)
    lines = buf.getvalue().splitlines()
    events = [LINE.match(x)[1] for x in lines]  # type: ignore[index]
    # boot leaves only MOVABLE blocks: the first UNMOVABLE refill falls back once, claiming an
    # order-10 block (two pageblocks), then takes a batch of 63 blocks from the UNMOVABLE lists
    assert events[0] == "mm_page_alloc_extfrag"
    assert lines[0].endswith(
        "alloc_order=0 fallback_order=10 pageblock_order=9 alloc_migratetype=0 "
        "fallback_migratetype=1 fragmenting=0 change_ownership=1"
    )
    assert events[1:64] == ["mm_page_alloc_zone_locked"] * 63
    assert lines[1].endswith("order=0 migratetype=0 percpu_refill=1")
    assert events[64] == "mm_page_alloc"
    assert lines[64].endswith(f"pfn={pfn:#x} order=0 migratetype=0 gfp_flags=GFP_KERNEL")
    assert events[65] == "mm_page_free"
    assert events[66:] == ["mm_page_pcpu_drain"] * 63
    vmemmap = 0xFFFFEA0000000000 + pfn * 64
    assert f"page={vmemmap:016x} pfn={pfn:#x}" in lines[64]


def test_gfp_flags_print_like_the_kernel() -> None:
    # strings seen in the oracle's real 6.1 traces
    for s in (
        "GFP_KERNEL_ACCOUNT|__GFP_ZERO",
        "GFP_HIGHUSER_MOVABLE|__GFP_COMP",
        "GFP_NOWAIT|__GFP_NOWARN",
        "GFP_ATOMIC|__GFP_NOWARN|__GFP_COMP",
        "none",
    ):
        assert show_gfp_flags(parse_gfp(s)) == s
    assert parse_gfp("GFP_ATOMIC") == 0xA20 and parse_gfp("GFP_HIGHUSER_MOVABLE") == 0x100CCA


def test_bench_trace_decoding() -> None:
    trace = np.array(
        [-1 - ((0 << 2) | 1), -1 - ((9 << 2) | 1), 0, -1 - ((3 << 2) | 2), 1], np.int32
    )
    ev, n = events_from_trace(trace)
    assert n == 3
    m = Machine("flat:8192", nr_cpus=1)
    handles = np.full(n, -1, np.int32)
    out = m.run(ev, handles)
    assert (out >= 0).all() and list(handles) == [-1, -1, out[3]]


def test_demo_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["demo", "--profile", "flat:65536"]) == 0
    out = capsys.readouterr().out
    assert out.count("Node 0, zone   Normal") >= 4 and "unusable_index" in out
