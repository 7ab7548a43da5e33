"""Running a scenario: build the machine, its memory users and workloads from a loaded
``Scenario`` (fragsim/scenario/config.py), run the simulated clock with sampling and
snapshots, and summarize. The CLI (``fragsim run``) and sweeps call ``run_scenario``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fragsim.drivers.base import MovableDriver
from fragsim.mm import compaction, vmstat
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.machine import GFP_CLASSES, Machine
from fragsim.mm.mmzone import MAX_ORDER, MIGRATETYPE_NAMES
from fragsim.results import MemMapFrame
from fragsim.scenario.config import Scenario
from fragsim.scenario.engine import Progress, Simulation

__all__ = [
    "MAX_MEMMAP_FRAMES",
    "RunResult",
    "build_simulation",
    "fragmentation_scores",
    "memmap_frame_indices",
    "run_scenario",
    "sample_metrics",
    "snapshot_files",
    "summarize",
]


def build_simulation(sc: Scenario) -> Simulation:
    """The machine (profile, kernel profile, overrides; then the sysctls), the memory users in
    definition order (a ``swap = true`` one is swapon()ed) and the workloads, seeded with the
    scenario's seed."""
    seed = sc.scenario.seed
    m = Machine(sc.machine.machine_profile(), seed=seed)
    for name, value in sc.sysctl.items():
        m.sysctl(name, value)
    sim = Simulation(m, seed=seed, batch=sc.scenario.batch)
    for d in sc.drivers:
        drv = d.create(m)
        sim.add_driver(d.name, drv)
        if d.swap:
            m.swapon(drv)
    for w in sc.workloads:
        sim.add_workload(w.create(sim))
    return sim


#: memory-map frames a run stores at most (evenly spaced over its samples)
MAX_MEMMAP_FRAMES = 50


def fragmentation_scores(m: Machine) -> dict[str, int]:
    """Proactive compaction's fragmentation scores now (mm/compaction.c, Linux 6.1), each 0-100:
    ``fragmentation_score.node<N>`` is fragmentation_score_node() (what kcompactd compares with
    the watermarks), ``fragmentation_score.node<N>.<zone>`` each zone's
    fragmentation_score_zone_weighted() (extfrag_for_order(COMPACTION_HPAGE_ORDER) scaled by the
    zone's present pages over the node's present pages + 1; the node score is their sum), and
    ``fragmentation_score_wmark.low`` / ``.high`` fragmentation_score_wmark() for the current
    vm.compaction_proactiveness. The compiled functions of fragsim/mm/compaction.py compute
    them."""
    st = m.state
    nzt = m.nr_zone_types
    out: dict[str, int] = {}
    for nid in range(m.nr_nodes):
        zones = range(nid * nzt, (nid + 1) * nzt)
        node_present = int(sum(int(st.zs[z, I.ZF_PRESENT]) for z in zones))
        out[f"fragmentation_score.node{nid}"] = int(compaction.fragmentation_score_node(st, nid))
        for z in zones:
            if st.zs[z, I.ZF_PRESENT]:
                zone_score = int(compaction.fragmentation_score_zone(st, z))
                weighted = int(st.zs[z, I.ZF_PRESENT]) * zone_score // (node_present + 1)
                out[f"fragmentation_score.node{nid}.{m.zone_name(z)}"] = weighted
    out["fragmentation_score_wmark.low"] = int(compaction.fragmentation_score_wmark(st, True))
    out["fragmentation_score_wmark.high"] = int(compaction.fragmentation_score_wmark(st, False))
    return out


def sample_metrics(sim: Simulation) -> dict[str, int]:
    """One sample: every /proc/vmstat item, free blocks per zone, order and migratetype
    (``free.<zone>.o<order>.<type>``, the counts of /proc/pagetypeinfo), pageblocks per zone
    and migratetype (``pageblocks.<zone>.<type>``), allocation requests and failures per GFP
    class and order (``alloc.<class>.o<order>`` / ``fail.<class>.o<order>``), and the
    fragmentation scores of proactive compaction (:func:`fragmentation_scores`)."""
    m = sim.machine
    out: dict[str, int] = dict(vmstat.vmstat_counters(m))
    st = m.state
    nmt = len(MIGRATETYPE_NAMES)
    for z in range(st.zs.shape[0]):
        if not st.zs[z, I.ZF_MANAGED]:
            continue
        zn = m.zone_name(z)
        for mt, mtn in enumerate(MIGRATETYPE_NAMES):
            if mtn == "CMA" and not m.profile.config_cma:
                continue
            for o in range(MAX_ORDER):
                head = int(st.zs[z, I.ZF_FREE_SENT]) + o * nmt + mt
                out[f"free.{zn}.o{o}.{mtn}"] = int(pa.count_free_list(st, head, 1 << 62))
        bc = vmstat.pageblock_counts(m, z)
        for mt, mtn in enumerate(MIGRATETYPE_NAMES):
            if mtn == "CMA" and not m.profile.config_cma:
                continue
            out[f"pageblocks.{zn}.{mtn}"] = int(bc[mt])
    for c, cn in enumerate(GFP_CLASSES):
        for o in range(MAX_ORDER):
            out[f"alloc.{cn}.o{o}"] = int(m.alloc_attempts[c, o])
            out[f"fail.{cn}.o{o}"] = int(m.alloc_failures[c, o])
    out.update(fragmentation_scores(m))
    out["events"] = int(m.nr_events)
    return out


def snapshot_files(m: Machine) -> dict[str, str]:
    """The /proc files of a snapshot, in the kernel's formats."""
    return {
        "buddyinfo": vmstat.buddyinfo(m),
        "pagetypeinfo": vmstat.pagetypeinfo(m),
        "zoneinfo": vmstat.zoneinfo(m),
        "vmstat": vmstat.vmstat(m),
        "unusable_index": vmstat.unusable_index(m),
        "extfrag_index": vmstat.extfrag_index(m),
    }


@dataclass
class RunResult:
    """What a run produced (the results database stores it)."""

    scenario: Scenario
    sim_ns: int
    wall_s: float
    events: int
    samples: dict[str, np.ndarray]
    snapshots: list[tuple[int, str, dict[str, str]]]
    summary: dict[str, Any]
    interrupted: str | None = None
    memmaps: list[MemMapFrame] = field(default_factory=list)
    """Memory maps of the machine at evenly spaced samples (:func:`memmap_frame_indices`)."""
    extra: dict[str, Any] = field(default_factory=dict)


def memmap_frame_indices(n_samples: int, max_frames: int = MAX_MEMMAP_FRAMES) -> set[int]:
    """The samples (0 .. n_samples - 1) that also store a memory map: all of them when there
    are at most ``max_frames``, else ``max_frames`` evenly spaced ones, first and last
    included (none when ``max_frames`` is 0)."""
    if max_frames <= 0 or n_samples <= 0:
        return set()
    if n_samples <= max_frames:
        return set(range(n_samples))
    if max_frames == 1:
        return {n_samples - 1}
    return {round(k * (n_samples - 1) / (max_frames - 1)) for k in range(max_frames)}


def run_scenario(
    sc: Scenario,
    *,
    progress: Callable[[Progress], None] | None = None,
    memmap_frames: int = MAX_MEMMAP_FRAMES,
) -> RunResult:
    """Run a loaded scenario (its duration, sampling and snapshots, its seed), storing a
    memory map at up to ``memmap_frames`` evenly spaced samples (and at the end). A
    KeyboardInterrupt stops the run; the result then says where (``interrupted``) and the
    caller records nothing."""
    from fragsim.viz.memmap import memmap_frame

    until = sc.scenario.duration_ns
    sim = build_simulation(sc)
    rows: list[dict[str, int]] = []
    snaps: list[tuple[int, str, dict[str, str]]] = []
    frames: list[MemMapFrame] = []
    every = sc.scenario.sample_every_ns
    # samples at 0, every, 2 every, ... <= until, and one at the end if that is not one of them
    n_samples = until // every + 1 + (1 if until % every else 0)
    frame_at = memmap_frame_indices(n_samples, memmap_frames)

    def on_sample(s: Simulation) -> None:
        row = sample_metrics(s)
        row["t_ns"] = s.now
        if len(rows) in frame_at:
            frames.append(memmap_frame(s.machine, s.now))
        rows.append(row)

    stages = {t: name for w in sim.workloads for t, name in w.stages().items()}

    def on_snapshot(s: Simulation, t: int) -> None:
        snaps.append((t, stages.get(t) or _label(t, until), snapshot_files(s.machine)))

    t0 = time.perf_counter()
    interrupted = None
    try:
        done = sim.run(
            until,
            sample_every=sc.scenario.sample_every_ns,
            on_sample=on_sample,
            snapshot_at=sorted(set(sc.scenario.snapshots_ns) | set(stages)),
            on_snapshot=on_snapshot,
            progress=progress,
        )
    except KeyboardInterrupt:
        interrupted = "KeyboardInterrupt"
        done = Progress(sim.now, until, sim.machine.nr_events, time.perf_counter() - t0)
    if interrupted is None and (not rows or rows[-1]["t_ns"] != sim.now):
        on_sample(sim)  # the end state
    last = rows[-1]["t_ns"] if rows else None
    if interrupted is None and memmap_frames > 0 and (not frames or frames[-1].t_ns != last):
        frames.append(memmap_frame(sim.machine, sim.now))  # a run that stopped early
    return RunResult(
        scenario=sc,
        sim_ns=done.now_ns,
        wall_s=done.wall_s,
        events=done.events,
        samples=_columns(rows),
        snapshots=snaps,
        summary=summarize(sim, done),
        interrupted=interrupted,
        memmaps=frames,
    )


def _label(t: int, until: int) -> str:
    return "end" if t == until else f"t{t}"


def _columns(rows: list[dict[str, int]]) -> dict[str, np.ndarray]:
    if not rows:
        return {"t_ns": np.zeros(0, np.int64)}
    names = ["t_ns"] + sorted({k for r in rows for k in r} - {"t_ns"})
    return {k: np.array([r.get(k, 0) for r in rows], np.int64) for k in names}


def summarize(sim: Simulation, done: Progress) -> dict[str, Any]:
    """The run's summary: allocation requests and failures by order and GFP class,
    compaction stalls / successes / failures, pages migrated per driver, fragmentation and
    unusable index per order, free memory by order, the workloads' own counts, speed."""
    m = sim.machine
    v = vmstat.vmstat_counters(m)
    st = m.state
    zones = [z for z in range(st.zs.shape[0]) if st.zs[z, I.ZF_MANAGED]]
    nr_free = st.nr_free[zones].sum(axis=0)
    unusable = [vmstat.unusable_free_index(nr_free, o) for o in range(MAX_ORDER)]
    frag = [vmstat.fragmentation_index(nr_free, o) for o in range(MAX_ORDER)]
    drivers: dict[str, Any] = {}
    for name, d in sim.drivers.items():
        info: dict[str, Any] = {"type": d.name}
        if isinstance(d, MovableDriver):
            info["movable"] = d.movable
            info.update(d.migration_counters())
        drivers[name] = info
    return {
        "alloc": {
            cn: {
                "attempts": [int(x) for x in m.alloc_attempts[c]],
                "failures": [int(x) for x in m.alloc_failures[c]],
            }
            for c, cn in enumerate(GFP_CLASSES)
        },
        "compaction": {
            k: v[k]
            for k in (
                "compact_stall",
                "compact_success",
                "compact_fail",
                "compact_migrate_scanned",
                "compact_free_scanned",
                "compact_daemon_wake",
                "pgmigrate_success",
                "pgmigrate_fail",
            )
        },
        "reclaim": {
            k: v[k]
            for k in (
                "pgscan_kswapd",
                "pgscan_direct",
                "pgsteal_kswapd",
                "pgsteal_direct",
                "pswpin",
                "pswpout",
                "workingset_refault_anon",
                "workingset_refault_file",
                "oom_kill",
            )
        },
        "drivers": drivers,
        "free_blocks": [int(x) for x in nr_free],
        "pageblock_order": m.pageblock_order,
        "pageblocks": {
            mtn: int(sum(vmstat.pageblock_counts(m, z)[mt] for z in zones))
            for mt, mtn in enumerate(MIGRATETYPE_NAMES)
            if mtn != "CMA" or m.profile.config_cma
        },
        "unusable_index": unusable,
        "fragmentation_index": frag,
        "workloads": {w.name: w.summary() for w in sim.workloads},
        "sim_ns": done.now_ns,
        "events": done.events,
        "wall_s": round(done.wall_s, 3),
        "events_per_s": round(done.events_per_s),
    }
