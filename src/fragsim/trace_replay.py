"""Replay a real kernel's page-allocator trace two ways and compare the final states
(``fragsim replay TRACE --mode pinned|decide|both``).

* ``pinned`` rebuilds the kernel's state over time: every block goes where the kernel put it.
  The ftrace events of include/trace/events/kmem.h and compaction.h (Linux 6.1) are applied at
  their pfns by :func:`fragsim.mm.page_alloc.replay_pinned`: ``mm_page_alloc`` takes the block off
  the CPU's pcp list or out of the buddy lists (``take_page_off_buddy``), ``mm_page_free`` puts it
  on the pcp list (orders the pcp lists take) or into the buddy lists, ``mm_page_pcpu_drain`` and
  ``mm_page_alloc_zone_locked`` with ``percpu_refill=1`` move blocks between the pcp lists and the
  buddy lists exactly as ``free_pcppages_bulk`` and ``rmqueue_bulk`` did, ``mm_page_alloc_extfrag``
  re-types pageblocks as ``steal_suitable_fallback`` did, and ``mm_compaction_isolate_freepages``
  (a range and a count, no pfns) takes the free blocks of its range in pfn order, as
  ``isolate_freepages_block`` scans it. ``mm_page_free_batched`` repeats ``mm_page_free`` and is
  skipped; failed allocations (``page=0``) are skipped.
* ``decide`` gives fragsim the same request stream: every ``mm_page_alloc`` becomes a request of
  its order and GFP flags (movable ones become anonymous LRU pages), every ``mm_page_free`` frees
  the request that holds that pfn in the kernel's timeline, and the harness's ``COMPACT-BEGIN``
  marker (``echo 1 > compact_memory``) runs ``compact_memory``; fragsim's allocator, pcp lists,
  fallbacks and direct compaction place everything. kswapd, kcompactd and direct reclaim are off:
  the kernel's reclaim is already in the stream as frees.

The state before the trace: a snapshot with kpageflags and zoneinfo (``--start``; for the
oracle's traces, the stage before the one traced) is loaded as ``fragsim whatif`` loads it
(:func:`fragsim.whatif.load_machine`); without one the machine boots empty from ``--profile`` and
every page allocated before tracing started is unknown (its frees are counted as such).
``--final`` adds the kernel's own final state (a snapshot taken when the trace ended) to the
comparison.

SIMPLIFICATIONS (also in docs/design.md):

* Pages compaction takes through ``fast_isolate_freepages`` or captures leave no event; pages the
  kernel had on pcp lists at the start look allocated in kpageflags. Such disagreements are
  counted (``stats``) and the kernel's view wins when a later event contradicts the model.
* A ``.npz`` trace (fragsim.workloads.replay) holds handles, not pfns: it replays in ``decide``
  mode only.
* The "distance" between two free-block distributions is the total variation distance between
  the fractions of free pages held in blocks of each order (0: same shape, 1: disjoint).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fragsim.errors import FragsimError
from fragsim.mm.mmzone import MAX_ORDER, MIGRATE_MOVABLE, MIGRATETYPE_NAMES

__all__ = [
    "ReplayResult",
    "TraceStream",
    "add_replay_parser",
    "cmd_replay",
    "format_replay",
    "free_distance",
    "read_stream",
    "replay",
]

I64 = npt.NDArray[np.int64]


@dataclass
class TraceStream:
    """The requests of one trace. ``pinned``: rows for replay_pinned (None for a .npz);
    ``decide``: event rows (fragsim.mm.internal EV_*) of the allocations and frees (a free's
    order is in its row), with ``free_pfn`` the kernel's pfn of each free (-1 for allocations)
    and ``compact_at`` the row indices before which compact_memory runs."""

    path: str
    pinned: I64 | None
    alloc_pfn: I64
    """Per decide row: the kernel's pfn of an allocation (-1 for frees or unknown)."""
    decide: I64
    free_pfn: I64
    compact_at: list[int]
    counts: dict[str, int] = field(default_factory=dict)


def _ftrace_stream(path: str) -> TraceStream:
    from fragsim.mm import internal as I
    from fragsim.mm import page_alloc as pa
    from fragsim.mm.gfp import parse_gfp
    from fragsim.parsers import read_ftrace

    tr = read_ftrace(path)
    parts: list[tuple[I64, I64]] = []  # (line, rows)
    counts: dict[str, int] = {}

    def add(line: I64, rows: I64, name: str) -> None:
        parts.append((line, rows))
        counts[name] = int(rows.shape[0])

    def rows_for(n: int) -> I64:
        r = np.zeros((n, pa.NR_PE), np.int64)
        return r

    ev = tr.events
    if "mm_page_alloc" in ev:
        t = ev["mm_page_alloc"]
        ok = np.asarray(t["page"]) != 0
        r = rows_for(int(ok.sum()))
        r[:, pa.PE_OP] = pa.PINNED_ALLOC
        r[:, pa.PE_PFN] = t["pfn"][ok]
        r[:, pa.PE_ORDER] = t["order"][ok]
        r[:, pa.PE_MT] = t["migratetype"][ok]
        r[:, pa.PE_CPU] = t.cpu[ok]
        cats = t.categories["gfp_flags"]
        gfp_of = np.array([parse_gfp(c) for c in cats] + [0], np.int64)
        r[:, pa.PE_A] = gfp_of[t["gfp_flags"][ok]]
        add(t.line[ok], r, "mm_page_alloc")
        counts["mm_page_alloc failed"] = int((~ok).sum())
    if "mm_page_free" in ev:
        t = ev["mm_page_free"]
        r = rows_for(len(t))
        r[:, pa.PE_OP] = pa.PINNED_FREE
        r[:, pa.PE_PFN] = t["pfn"]
        r[:, pa.PE_ORDER] = t["order"]
        r[:, pa.PE_CPU] = t.cpu
        add(t.line, r, "mm_page_free")
    if "mm_page_alloc_zone_locked" in ev:
        t = ev["mm_page_alloc_zone_locked"]
        refill = (
            np.asarray(t["percpu_refill"]) == 1 if "percpu_refill" in t else np.zeros(len(t), bool)
        )
        r = rows_for(int(refill.sum()))
        r[:, pa.PE_OP] = pa.PINNED_REFILL
        r[:, pa.PE_PFN] = t["pfn"][refill]
        r[:, pa.PE_ORDER] = t["order"][refill]
        r[:, pa.PE_MT] = t["migratetype"][refill]
        r[:, pa.PE_CPU] = t.cpu[refill]
        add(t.line[refill], r, "mm_page_alloc_zone_locked percpu_refill=1")
    if "mm_page_pcpu_drain" in ev:
        t = ev["mm_page_pcpu_drain"]
        r = rows_for(len(t))
        r[:, pa.PE_OP] = pa.PINNED_DRAIN
        r[:, pa.PE_PFN] = t["pfn"]
        r[:, pa.PE_ORDER] = t["order"]
        r[:, pa.PE_MT] = t["migratetype"]
        r[:, pa.PE_CPU] = t.cpu
        add(t.line, r, "mm_page_pcpu_drain")
    if "mm_page_alloc_extfrag" in ev:
        t = ev["mm_page_alloc_extfrag"]
        r = rows_for(len(t))
        r[:, pa.PE_OP] = pa.PINNED_EXTFRAG
        r[:, pa.PE_PFN] = t["pfn"]
        r[:, pa.PE_ORDER] = t["fallback_order"]
        r[:, pa.PE_MT] = t["alloc_migratetype"]
        r[:, pa.PE_CPU] = t.cpu
        r[:, pa.PE_A] = t["change_ownership"]
        r[:, pa.PE_B] = t["fallback_migratetype"]
        add(t.line, r, "mm_page_alloc_extfrag")
    if "mm_compaction_isolate_freepages" in ev:
        t = ev["mm_compaction_isolate_freepages"]
        r = rows_for(len(t))
        r[:, pa.PE_OP] = pa.PINNED_ISOLATE_FREE
        r[:, pa.PE_PFN] = t["start_pfn"]
        r[:, pa.PE_A] = t["end_pfn"]
        r[:, pa.PE_B] = t["nr_taken"]
        r[:, pa.PE_CPU] = t.cpu
        add(t.line, r, "mm_compaction_isolate_freepages")
    if not parts:
        raise FragsimError(
            f"{path}: no page-allocator events (mm_page_alloc, mm_page_free, ...) in this trace"
        )
    lines = np.concatenate([p[0] for p in parts])
    rows = np.concatenate([p[1] for p in parts])
    idx = np.argsort(lines, kind="stable")
    lines, rows = lines[idx], rows[idx]
    alloc = rows[:, pa.PE_OP] == pa.PINNED_ALLOC
    rows[alloc, pa.PE_B] = np.arange(int(alloc.sum()))
    rows[
        ~alloc
        & (rows[:, pa.PE_OP] != pa.PINNED_EXTFRAG)
        & (rows[:, pa.PE_OP] != pa.PINNED_ISOLATE_FREE),
        pa.PE_B,
    ] = -1
    # the decide stream: allocations and frees in order
    keep = (rows[:, pa.PE_OP] == pa.PINNED_ALLOC) | (rows[:, pa.PE_OP] == pa.PINNED_FREE)
    sel = rows[keep]
    dline = lines[keep]
    dec = np.zeros((sel.shape[0], I.NR_EV), np.int64)
    is_alloc = sel[:, pa.PE_OP] == pa.PINNED_ALLOC
    dec[:, I.EV_OP] = np.where(is_alloc, I.OP_ALLOC, I.OP_FREE_HANDLE)
    dec[:, I.EV_ORDER] = sel[:, pa.PE_ORDER]
    dec[:, I.EV_GFP] = np.where(is_alloc, sel[:, pa.PE_A], 0)
    dec[:, I.EV_ARG] = np.where(is_alloc, sel[:, pa.PE_B], -1)
    dec[:, I.EV_CPU] = sel[:, pa.PE_CPU]
    free_pfn = np.where(is_alloc, -1, sel[:, pa.PE_PFN])
    alloc_pfn = np.where(is_alloc, sel[:, pa.PE_PFN], -1)
    compact_at = []
    for ln, text in zip(tr.markers.line.tolist(), tr.markers.text, strict=True):
        if "COMPACT-BEGIN" in text:
            compact_at.append(int(np.searchsorted(dline, ln)))
    return TraceStream(path, rows, alloc_pfn, dec, free_pfn, compact_at, counts)


def read_stream(path: str | os.PathLike[str]) -> TraceStream:
    """Read a trace: ftrace text (raw or .gz) or a fragsim .npz (decide mode only)."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FragsimError(f"{p}: trace: no such file")
    if p.endswith(".npz") or p.endswith(".npy"):
        from fragsim.mm import internal as I
        from fragsim.workloads.replay import load_trace

        _, ev, _ = load_trace(p, rate=1.0)
        n = ev.shape[0]
        return TraceStream(
            p,
            None,
            np.full(n, -1, np.int64),
            ev,
            np.full(n, -1, np.int64),
            [],
            {"rows": n, "allocations": int((ev[:, I.EV_OP] == I.OP_ALLOC).sum())},
        )
    return _ftrace_stream(p)


# --------------------------------------------------------------------------------------------
# Replaying


@dataclass
class FinalState:
    """One machine's final state, per zone (``Node N, zone NAME``): free blocks per order (buddy
    lists), pages on pcp lists, pageblocks per migratetype; and which pfns are free."""

    nr_free: dict[str, tuple[int, ...]]
    pcp_pages: dict[str, int]
    pageblocks: dict[str, dict[str, int]]
    free_pfns: npt.NDArray[np.bool_] | None = None


def _final(m: Any) -> FinalState:
    from fragsim.mm import internal as I
    from fragsim.mm.page import PG_buddy

    st = m.state
    nr_free, pcp, blocks = {}, {}, {}
    pbo = m.pageblock_order
    for z in m.populated_zones():
        name = f"Node {int(st.zs[z, I.ZF_NODE])}, zone {m.zone_name(z)}"
        nr_free[name] = tuple(int(x) for x in st.nr_free[z])
        pcp[name] = int(st.pcp[z, :, I.PCP_COUNT].sum())
        a, b = int(st.zs[z, I.ZF_START]), int(st.zs[z, I.ZF_END])
        mts = [int(st.pb[pfn >> pbo]) & 7 for pfn in range(a, b, 1 << pbo)]
        blocks[name] = {
            MIGRATETYPE_NAMES[t]: mts.count(t)
            for t in range(len(MIGRATETYPE_NAMES))
            if mts.count(t)
        }
    # free pfns (buddy blocks painted over their pages)
    heads = np.flatnonzero(st.flags & PG_buddy)
    mark = np.zeros(st.flags.shape[0] + 1, np.int64)
    np.add.at(mark, heads, 1)
    np.add.at(mark, heads + (np.int64(1) << st.order[heads].astype(np.int64)), -1)
    return FinalState(nr_free, pcp, blocks, np.cumsum(mark)[:-1] > 0)


@dataclass
class ReplayResult:
    path: str
    start: str
    counts: dict[str, int]
    pinned: FinalState | None
    pinned_stats: dict[str, int]
    decide: FinalState | None
    decide_stats: dict[str, int]
    kernel: FinalState | None
    kernel_source: str | None
    notes: list[str]


def _machine(start: Any, profile: str) -> tuple[Any, Any]:
    from fragsim.mm.machine import Machine
    from fragsim.whatif import load_machine

    if start is not None:
        ld = load_machine(start)
        return ld.machine, ld
    return Machine(profile), None


def pcp_at_start(stream: TraceStream, flags: npt.NDArray[np.uint64] | None) -> I64:
    """Rows (pfn, order, cpu) of the blocks the trace shows were free on a per-CPU list when it
    began: the first event at that pfn is an ``mm_page_pcpu_drain`` or an ``mm_page_alloc``, and
    every page of the block has no kpageflags bit in the start snapshot (pcp pages have none)."""
    from fragsim.mm import page_alloc as pa

    if stream.pinned is None or flags is None:
        return np.zeros((0, 3), np.int64)
    ev = stream.pinned
    touch = np.isin(
        ev[:, pa.PE_OP], (pa.PINNED_ALLOC, pa.PINNED_FREE, pa.PINNED_DRAIN, pa.PINNED_REFILL)
    )
    idx = np.flatnonzero(touch)
    pfn = ev[idx, pa.PE_PFN]
    _, first = np.unique(pfn, return_index=True)
    rows = ev[idx[first]]
    cand = rows[np.isin(rows[:, pa.PE_OP], (pa.PINNED_DRAIN, pa.PINNED_ALLOC))]
    cand = cand[cand[:, pa.PE_PFN] + (1 << cand[:, pa.PE_ORDER]) <= flags.size]
    ok = np.array(
        [not flags[p : p + (1 << o)].any() for p, o in cand[:, [pa.PE_PFN, pa.PE_ORDER]].tolist()],
        bool,
    ).reshape(-1)
    cand = cand[ok]
    return np.stack([cand[:, pa.PE_PFN], cand[:, pa.PE_ORDER], cand[:, pa.PE_CPU]], axis=1)


def _run_pinned(stream: TraceStream, start: Any, profile: str) -> tuple[Any, dict[str, int]]:
    from fragsim.mm import page_alloc as pa

    assert stream.pinned is not None
    m, _ = _machine(start, profile)
    m.handles  # noqa: B018
    nalloc = int((stream.pinned[:, pa.PE_OP] == pa.PINNED_ALLOC).sum())
    base = m.alloc_handles(nalloc)
    ev = stream.pinned.copy()
    a = ev[:, pa.PE_OP] == pa.PINNED_ALLOC
    ev[a, pa.PE_B] = base[ev[a, pa.PE_B]]
    stats = np.zeros(pa.NR_PS, np.int64)
    big = ev[:, pa.PE_PFN] >= m.max_pfn
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise FragsimError(
            f"{stream.path}: pfn {int(ev[i, pa.PE_PFN]):#x} is beyond the machine's memory "
            f"(max pfn {m.max_pfn:#x}); give the snapshot the trace was taken on (--start)"
        )
    # blocks on the kernel's pcp lists when the trace began: onto the pcp lists first
    pre = pcp_at_start(stream, start.kpageflags if start is not None else None)
    head = np.zeros((pre.shape[0], pa.NR_PE), np.int64)
    head[:, pa.PE_OP] = pa.PINNED_FREE
    head[:, pa.PE_PFN] = pre[:, 0]
    head[:, pa.PE_ORDER] = pre[:, 1]
    head[:, pa.PE_CPU] = pre[:, 2]
    head[:, pa.PE_B] = -1
    pa.replay_pinned(m.state, head, m.handles, stats)
    stats[:] = 0
    pa.replay_pinned(m.state, ev, m.handles, stats)
    names = [n for n in dir(pa) if n.startswith("PS_") and n != "NR_PS"]
    out = {"pcp_at_start": int(pre.shape[0])}
    out.update({n[3:].lower(): int(stats[getattr(pa, n)]) for n in names})
    return m, out


def _run_decide(stream: TraceStream, start: Any, profile: str) -> tuple[Any, dict[str, int]]:
    from fragsim.mm import internal as I
    from fragsim.mm.gfp import GFP_MOVABLE_MASK, GFP_MOVABLE_SHIFT
    from fragsim.mm.page import PG_anon, PG_lru, PG_swapbacked

    m, ld = _machine(start, profile)
    m.daemons = False  # the kernel's reclaim is in the stream (its frees)
    m.hooks.direct_reclaim = None
    ev = stream.decide.copy()
    ev[:, I.EV_CPU] %= m.nr_cpus
    a = ev[:, I.EV_OP] == I.OP_ALLOC
    nalloc = int(ev[a, I.EV_ARG].max()) + 1 if a.any() else 0
    base = m.alloc_handles(nalloc)
    ev[a, I.EV_ARG] = base[ev[a, I.EV_ARG]]
    movable = ((ev[:, I.EV_GFP] & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT) == MIGRATE_MOVABLE
    ev[a & movable, I.EV_FLAGS] = PG_lru | PG_anon | PG_swapbacked
    stats = {"frees_unknown": 0, "frees_of_start_pages": 0, "alloc_failures": 0}
    if stream.pinned is None:  # a .npz: its frees already name handles
        out = ev
        cut_at = sorted(stream.compact_at)
    else:
        # each free frees the request holding its pfn in the kernel's timeline, or the pages the
        # start snapshot placed there
        st = m.state
        start_owner: dict[int, int] = {}
        if ld is not None:
            heads = np.flatnonzero((st.owner >= 0) & (st.refcount > 0))
            start_owner = dict(zip(heads.tolist(), st.owner[heads].tolist(), strict=True))
        holder: dict[int, int] = {}
        rows: list[npt.NDArray[np.int64]] = []
        pre = pcp_at_start(stream, start.kpageflags if start is not None else None)
        for pfn, order, cpu in pre.tolist():
            for q in range(pfn, pfn + (1 << order)):
                hq = start_owner.pop(q, None)
                if hq is not None:
                    r = np.zeros(I.NR_EV, np.int64)
                    r[I.EV_OP] = I.OP_FREE_HANDLE
                    r[I.EV_ARG] = hq
                    r[I.EV_CPU] = cpu % m.nr_cpus
                    rows.append(r)
        stats["pcp_at_start"] = len(rows)
        pos = np.zeros(ev.shape[0] + 1, np.int64)
        alloc_pfn = stream.alloc_pfn.tolist()
        free_pfn = stream.free_pfn.tolist()
        for i in range(ev.shape[0]):
            pos[i] = len(rows)
            if a[i]:
                holder[alloc_pfn[i]] = int(ev[i, I.EV_ARG])
                rows.append(ev[i])
                continue
            pfn, order = free_pfn[i], int(ev[i, I.EV_ORDER])
            h = holder.pop(pfn, None)
            if h is not None:
                ev[i, I.EV_ARG] = h
                rows.append(ev[i])
                continue
            found = False
            for q in range(pfn, pfn + (1 << order)):
                hq = start_owner.pop(q, None)
                if hq is not None:
                    found = True
                    extra = ev[i].copy()
                    extra[I.EV_ARG] = hq
                    rows.append(extra)
            stats["frees_of_start_pages" if found else "frees_unknown"] += 1
        pos[ev.shape[0]] = len(rows)
        out = np.array(rows, np.int64).reshape(-1, I.NR_EV)
        cut_at = sorted(int(pos[c]) for c in stream.compact_at)
    lo = 0
    for cut in [*sorted(set(cut_at)), None]:
        hi = out.shape[0] if cut is None else cut
        if hi > lo:
            res = m.run(out[lo:hi])
            stats["alloc_failures"] += int(((out[lo:hi, I.EV_OP] == I.OP_ALLOC) & (res < 0)).sum())
            lo = hi
        if cut is not None:
            m.compact_memory()
            stats["compact_memory"] = stats.get("compact_memory", 0) + 1
    return m, stats


def _kernel_final(snap: Any) -> FinalState:
    """The kernel's final state from a snapshot: buddyinfo, zoneinfo's pcp counts,
    pagetypeinfo's block counts, kpageflags' free pages."""
    from fragsim.parsers import PageKind, classify

    nr_free = {f"Node {r.node}, zone {r.zone}": tuple(r.nr_free) for r in snap.buddyinfo}
    pcp = {f"Node {z.node}, zone {z.zone}": z.pcp_count for z in snap.zoneinfo or [] if z.populated}
    blocks = {}
    if snap.pagetypeinfo is not None:
        blocks = {
            f"Node {node}, zone {zone}": {k: v for k, v in d.items() if v}
            for (node, zone), d in snap.pagetypeinfo.blocks.items()
        }
    free = None
    if snap.kpageflags is not None:
        free = classify(snap.kpageflags, snap.kpagecount) == PageKind.BUDDY
    return FinalState(nr_free, pcp, blocks, free)


def free_distance(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Total variation distance between the distributions of free pages over block orders
    (0: the same shape, 1: no order in common); 0 when both have no free page."""
    pa_ = np.array([n << o for o, n in enumerate(a)], np.float64)
    pb_ = np.array([n << o for o, n in enumerate(b)], np.float64)
    n = max(pa_.size, pb_.size)
    pa_ = np.pad(pa_, (0, n - pa_.size))
    pb_ = np.pad(pb_, (0, n - pb_.size))
    if pa_.sum() == 0 or pb_.sum() == 0:
        return 0.0 if pa_.sum() == pb_.sum() else 1.0
    return float(0.5 * np.abs(pa_ / pa_.sum() - pb_ / pb_.sum()).sum())


def replay(
    trace: str | os.PathLike[str],
    *,
    mode: str = "both",
    start: str | os.PathLike[str] | None = None,
    final: str | os.PathLike[str] | None = None,
    profile: str = "x86_64-1g",
) -> ReplayResult:
    """Replay ``trace`` pinned and/or decided (module docstring) and collect the final states."""
    from fragsim.analysis.inspect import load_snapshot

    if mode not in ("pinned", "decide", "both"):
        raise FragsimError(f"--mode: expected pinned, decide or both, got {mode!r}")
    stream = read_stream(trace)
    notes: list[str] = []
    if stream.pinned is None and mode != "decide":
        if mode == "pinned":
            raise FragsimError(
                f"{stream.path}: a .npz trace holds handles, not the kernel's pfns: it replays "
                "in --mode decide only"
            )
        mode = "decide"
        notes.append("a .npz trace has no pfns: decide mode only")
    snap = load_snapshot(start) if start is not None else None
    if snap is None:
        notes.append(
            f"no --start snapshot: the machine boots empty ({profile}); pages allocated before "
            "the trace began are unknown"
        )
    pinned = decide = None
    pstats: dict[str, int] = {}
    dstats: dict[str, int] = {}
    if mode in ("pinned", "both"):
        m, pstats = _run_pinned(stream, snap, profile)
        if os.environ.get("FRAGSIM_DEBUG"):
            from fragsim.mm.debug import check_invariants

            check_invariants(m)
        pinned = _final(m)
    if mode in ("decide", "both"):
        m, dstats = _run_decide(stream, snap, profile)
        decide = _final(m)
    kernel = _kernel_final(load_snapshot(final)) if final is not None else None
    return ReplayResult(
        path=stream.path,
        start=os.fspath(start) if start is not None else f"empty {profile}",
        counts=stream.counts,
        pinned=pinned,
        pinned_stats=pstats,
        decide=decide,
        decide_stats=dstats,
        kernel=kernel,
        kernel_source=os.fspath(final) if final is not None else None,
        notes=notes,
    )


def format_replay(r: ReplayResult) -> str:
    """The plain-text comparison of ``fragsim replay``."""
    out = [f"fragsim replay {r.path}", f"start: {r.start}"]
    out.append("events: " + ", ".join(f"{k} {v}" for k, v in r.counts.items()))
    out += [f"note: {n}" for n in r.notes]
    if r.pinned is not None:
        out.append("pinned: " + ", ".join(f"{k} {v}" for k, v in r.pinned_stats.items()))
    if r.decide is not None:
        out.append("decide: " + ", ".join(f"{k} {v}" for k, v in r.decide_stats.items()))
    states = [
        (n, s)
        for n, s in (("pinned", r.pinned), ("decide", r.decide), ("kernel", r.kernel))
        if s is not None
    ]
    zones = list(states[0][1].nr_free)
    for zone in zones:
        out.append("")
        out.append(f"== {zone}: free blocks per order (buddy lists)")
        out.append(f"{'order':>5}" + "".join(f" {n:>9}" for n, _ in states))
        for o in range(MAX_ORDER):
            out.append(
                f"{o:>5}"
                + "".join(
                    f" {s.nr_free.get(zone, ())[o] if o < len(s.nr_free.get(zone, ())) else '-':>9}"
                    for _, s in states
                )
            )
        out.append(
            f"{'pages':>5}"
            + "".join(
                f" {sum(n << o for o, n in enumerate(s.nr_free.get(zone, ()))):>9}"
                for _, s in states
            )
        )
        out.append(f"{'pcp':>5}" + "".join(f" {s.pcp_pages.get(zone, 0):>9}" for _, s in states))
        for i, (na, sa) in enumerate(states):
            for nb, sb in states[i + 1 :]:
                if zone in sa.nr_free and zone in sb.nr_free:
                    d = free_distance(sa.nr_free[zone], sb.nr_free[zone])
                    out.append(f"   distance {na} - {nb}: {d:.3f} (total variation over orders)")
        for n, s in states:
            if zone in s.pageblocks:
                out.append(
                    f"   pageblocks {n}: "
                    + ", ".join(f"{k} {v}" for k, v in s.pageblocks[zone].items())
                )
    if r.pinned is not None and r.kernel is not None and r.kernel.free_pfns is not None:
        a = r.pinned.free_pfns
        b = r.kernel.free_pfns
        assert a is not None
        k = min(a.size, b.size)
        both = int((a[:k] & b[:k]).sum())
        only_p = int((a[:k] & ~b[:k]).sum())
        out.append("")
        out.append(
            f"pinned vs kernel, page by page: {both} pfns free in both, {only_p} "
            f"free only in pinned, {int((~a[:k] & b[:k]).sum())} free only in the kernel "
            "(kpageflags buddy bit)"
        )
    return "\n".join(out) + "\n"


def add_replay_parser(sub: Any) -> argparse.ArgumentParser:
    """``fragsim replay TRACE [--mode pinned|decide|both] [--start SNAP] [--final SNAP]``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "replay", help="replay a kernel trace pinned (kernel's pfns) and decided (fragsim's)"
    )
    p.add_argument("trace", metavar="TRACE", help="ftrace text (.gz ok) or a fragsim .npz")
    p.add_argument("--mode", choices=("pinned", "decide", "both"), default="both")
    p.add_argument("--start", metavar="SNAPSHOT", help="the state when the trace began")
    p.add_argument("--final", metavar="SNAPSHOT", help="the kernel's state when it ended")
    p.add_argument("--profile", default="x86_64-1g", help="the machine without --start")
    p.set_defaults(func=cmd_replay)
    return p


def cmd_replay(args: argparse.Namespace) -> int:
    r = replay(args.trace, mode=args.mode, start=args.start, final=args.final, profile=args.profile)
    sys.stdout.write(format_replay(r))
    return 0
