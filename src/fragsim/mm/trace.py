"""Tracepoints in ftrace's text format. Models include/trace/events/kmem.h (Linux 6.1.192) and
the default ``trace`` file layout of kernel/trace (5 flag columns since 5.14).

The compiled allocator records each enabled tracepoint hit as a row of ``State.tbuf``; a
``Tracer`` turns the rows into the kernel's lines and writes them to a file. When no tracer is
attached, a tracepoint costs one bit test. ``page=%p`` prints the page's vmemmap address, as a
kernel booted with ``no_hash_pointers`` does (0xffffea0000000000 + pfn * 64 on x86-64).
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

from fragsim.errors import ConfigError
from fragsim.mm import internal as I
from fragsim.mm.gfp import show_gfp_flags
from fragsim.mm.migrate import MigrateMode
from fragsim.mm.mmzone import MIGRATE_CMA

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = ["Tracer", "TRACEPOINTS"]

VMEMMAP_START = 0xFFFFEA0000000000
STRUCT_PAGE_SIZE = 64
TRACEPOINTS = I.TP_NAMES


class Tracer:
    """Writes the enabled kmem tracepoints of one machine to ``out`` as ftrace text.

    ``events``: tracepoint names (default: all of TRACEPOINTS). ``comm``/``pid`` fill the task
    column; timestamps come from the machine's simulated clock (``State.prm[P_NOW]``, ns)."""

    def __init__(
        self,
        out: IO[str],
        events: tuple[str, ...] | list[str] | None = None,
        comm: str = "fragsim",
        pid: int = 1,
        buffer_rows: int = 1 << 16,
    ) -> None:
        names = list(TRACEPOINTS if events is None else events)
        for n in names:
            if n not in TRACEPOINTS:
                raise ConfigError(f"unknown tracepoint {n!r}; known: {', '.join(TRACEPOINTS)}")
        self.out = out
        self.mask = sum(1 << TRACEPOINTS.index(n) for n in names)
        self.task = f"{comm}-{pid}"
        self.buffer_rows = buffer_rows
        self.lines = 0

    def attach(self, m: Machine) -> None:
        """Enable the tracepoints on ``m`` and give it a trace buffer."""
        m.set_trace_buffer(self.buffer_rows)
        m.state.prm[I.P_TRACE] = self.mask
        m.tracer = self

    def detach(self, m: Machine) -> None:
        self.flush(m)
        m.state.prm[I.P_TRACE] = 0
        m.tracer = None

    def flush(self, m: Machine) -> None:
        """Write the buffered records and empty the buffer."""
        st = m.state
        n = int(st.prm[I.P_TPOS])
        rows = st.tbuf[:n].tolist()
        st.prm[I.P_TPOS] = 0
        pbo = m.pageblock_order
        mtmap = _mt_map(m)
        pfn_fmt = "#x" if m.kernel.trace_pfn_hex else "d"
        write = self.out.write
        task = f"{self.task:>16s}"
        for tid, t, pfn, order, a, b, c, d in rows:
            tp = tid & 0xFFFF
            cpu = tid >> 16
            sec, ns = divmod(t, 1_000_000_000)
            prefix = f"{task} [{cpu:03d}] ..... {sec:5d}.{ns // 1000:06d}: {TRACEPOINTS[tp]}: "
            if tp <= I.TP_MM_PAGE_ALLOC_EXTFRAG:
                page = f"{VMEMMAP_START + pfn * STRUCT_PAGE_SIZE:016x}" if pfn >= 0 else "0" * 16
                p = f"page={page} pfn={max(pfn, 0):{pfn_fmt}}"
            if tp == I.TP_MM_PAGE_ALLOC:
                body = f"{p} order={order} migratetype={mtmap[a]} gfp_flags={show_gfp_flags(b)}"
            elif tp == I.TP_MM_PAGE_FREE:
                body = f"{p} order={order}"
            elif tp == I.TP_MM_PAGE_ALLOC_ZONE_LOCKED:
                body = f"{p} order={order} migratetype={mtmap[a]} percpu_refill={b}"
            elif tp == I.TP_MM_PAGE_PCPU_DRAIN:
                body = f"{p} order={order} migratetype={mtmap[a]}"
            elif tp == I.TP_MM_PAGE_ALLOC_EXTFRAG:  # order=alloc_order, a=fallback_order
                body = (
                    f"{p} alloc_order={order} fallback_order={a} pageblock_order={pbo} "
                    f"alloc_migratetype={mtmap[b]} fallback_migratetype={mtmap[c]} "
                    f"fragmenting={1 if a < pbo else 0} change_ownership={d}"
                )
            elif tp in (
                I.TP_MM_COMPACTION_DEFERRED,
                I.TP_MM_COMPACTION_DEFER_COMPACTION,
                I.TP_MM_COMPACTION_DEFER_RESET,
            ):
                node = int(m.state.zs[pfn, I.ZF_NODE])
                body = (
                    f"node={node} zone={m.zone_name(pfn):<8s} order={order} "
                    f"order_failed={a} consider={b} limit={c}"
                )
            elif tp in (I.TP_MM_COMPACTION_SUITABLE, I.TP_MM_COMPACTION_FINISHED):
                node = int(m.state.zs[pfn, I.ZF_NODE])
                body = (
                    f"node={node} zone={m.zone_name(pfn):<8s} order={order} "
                    f"ret={COMPACTION_STATUS[a]}"
                )
            elif tp == I.TP_MM_COMPACTION_TRY_TO_COMPACT_PAGES:
                body = f"order={order} gfp_mask={show_gfp_flags(a)} priority={b}"
            elif tp == I.TP_MM_COMPACTION_KCOMPACTD_SLEEP:
                body = f"nid={pfn}"
            elif tp in (I.TP_MM_COMPACTION_WAKEUP_KCOMPACTD, I.TP_MM_COMPACTION_KCOMPACTD_WAKE):
                body = f"nid={pfn} order={order} classzone_idx={m.zone_name(a):<8s}"
            elif tp == I.TP_MM_VMSCAN_WAKEUP_KSWAPD:
                body = f"nid={pfn} order={order} gfp_flags={show_gfp_flags(b)}"
            else:
                body = _compaction_body(tp, pfn, order, a, b, c, d)
            write(prefix + body + "\n")
        self.lines += n


#: include/trace/events/mmflags.h: compaction_status_string (6.1)
COMPACTION_STATUS = (
    "not_suitable_zone",
    "skipped",
    "deferred",
    "no_suitable_page",
    "continue",
    "complete",
    "partial_skipped",
    "contended",
    "success",
)
#: MIGRATE_REASON (include/trace/events/migrate.h, 6.1)
MIGRATE_REASON = (
    "compaction",
    "memory_failure",
    "memory_hotplug",
    "syscall_or_cpuset",
    "mempolicy_mbind",
    "numa_misplaced",
    "contig_range",
    "longterm_pin",
    "demotion",
)


def _compaction_body(tp: int, pfn: int, order: int, a: int, b: int, c: int, d: int) -> str:
    """include/trace/events/compaction.h and migrate.h formats (6.1)."""
    if tp in (I.TP_MM_COMPACTION_BEGIN, I.TP_MM_COMPACTION_END):
        s = (
            f"zone_start={pfn:#x} migrate_pfn={order:#x} free_pfn={a:#x} zone_end={b:#x}, "
            f"mode={'sync' if c else 'async'}"
        )
        return s + (f" status={COMPACTION_STATUS[d]}" if tp == I.TP_MM_COMPACTION_END else "")
    if tp in (I.TP_MM_COMPACTION_ISOLATE_MIGRATEPAGES, I.TP_MM_COMPACTION_ISOLATE_FREEPAGES):
        return f"range=({pfn:#x} ~ {order:#x}) nr_scanned={a} nr_taken={b}"
    if tp == I.TP_MM_COMPACTION_MIGRATEPAGES:
        return f"nr_migrated={pfn} nr_failed={order}"
    # TP_MM_MIGRATE_PAGES
    return (
        f"nr_succeeded={pfn} nr_failed={order} nr_thp_succeeded={a} nr_thp_failed={b} "
        f"nr_thp_split={c} mode={MigrateMode(d & 0xFF).name} reason={MIGRATE_REASON[d >> 8]}"
    )


def _mt_map(m: Machine) -> list[int]:
    """Internal migratetype id -> the kernel's number in this config (no CMA: ISOLATE is 4)."""
    if m.profile.config_cma:
        return list(range(6))
    return [0, 1, 2, 3, MIGRATE_CMA, MIGRATE_CMA]
