"""Compaction deferral (defer_compaction, compaction_deferred, compaction_defer_reset,
compaction_restarting; Linux 6.1 mm/compaction.c) and its tracepoints."""

from __future__ import annotations

import io

from fragsim.mm import internal as I
from fragsim.mm.compaction import (
    COMPACT_MAX_DEFER_SHIFT,
    compaction_defer_reset,
    compaction_deferred,
    compaction_restarting,
    defer_compaction,
)
from fragsim.mm.machine import Machine
from fragsim.mm.trace import Tracer


def test_deferral_counts_and_limits() -> None:
    """After n failures in a row, 2^n - 1 attempts are skipped (up to 63), then one runs; a
    success resets everything, and orders below the lowest failed order are never deferred."""
    m = Machine("flat:8192", nr_cpus=1)
    z = m.zone_id(0, "Normal")
    assert not compaction_deferred(m.state, z, 3)  # nothing failed yet
    defer_compaction(m.state, z, 3)  # shift 1, order_failed 0 -> stays 0 (3 > 0)
    zs = m.state.zs
    assert (zs[z, I.ZF_COMPACT_DEFER_SHIFT], zs[z, I.ZF_COMPACT_CONSIDERED]) == (1, 0)
    assert [compaction_deferred(m.state, z, 3) for _ in range(3)] == [True, False, False]
    for shift in range(2, COMPACT_MAX_DEFER_SHIFT + 3):
        defer_compaction(m.state, z, 3)
        limit = 1 << min(shift, COMPACT_MAX_DEFER_SHIFT)
        skipped = [compaction_deferred(m.state, z, 3) for _ in range(limit)]
        assert skipped == [True] * (limit - 1) + [False]
    assert zs[z, I.ZF_COMPACT_DEFER_SHIFT] == COMPACT_MAX_DEFER_SHIFT
    assert compaction_restarting(m.state, z, 3)
    compaction_defer_reset(m.state, z, 3, alloc_success=True)
    assert (zs[z, I.ZF_COMPACT_DEFER_SHIFT], zs[z, I.ZF_COMPACT_CONSIDERED]) == (0, 0)
    assert zs[z, I.ZF_COMPACT_ORDER_FAILED] == 4
    defer_compaction(m.state, z, 5)
    assert not compaction_deferred(m.state, z, 3)  # below compact_order_failed (4): never deferred
    assert compaction_deferred(m.state, z, 5)


def test_deferral_tracepoints() -> None:
    m = Machine("flat:8192", nr_cpus=1)
    z = m.zone_id(0, "Normal")
    buf = io.StringIO()
    Tracer(
        buf,
        ["mm_compaction_deferred", "mm_compaction_defer_compaction", "mm_compaction_defer_reset"],
    ).attach(m)
    defer_compaction(m.state, z, 2)
    compaction_deferred(m.state, z, 2)
    compaction_defer_reset(m.state, z, 2, alloc_success=False)
    m.tracer.flush(m)
    lines = [line.split(": ", 1)[1] for line in buf.getvalue().splitlines()]
    assert lines == [
        "mm_compaction_defer_compaction: node=0 zone=Normal   order=2 order_failed=0 "
        "consider=0 limit=2",
        "mm_compaction_deferred: node=0 zone=Normal   order=2 order_failed=0 consider=1 limit=2",
        "mm_compaction_defer_reset: node=0 zone=Normal   order=2 order_failed=3 consider=1 limit=2",
    ]
