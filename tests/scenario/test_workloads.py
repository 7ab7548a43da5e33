"""The workloads fragmenter, kbuild and replay (fragsim/workloads/) on a Simulation: each leaves
the machine consistent, does what it is for (fragments memory; grows slab and page cache;
places exactly the trace's events), has golden numbers for a fixed seed, and is deterministic
(same seed: same machine; another seed: another run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fragsim.drivers.pagecache import PageCache
from fragsim.drivers.process import Processes
from fragsim.drivers.slab import Slab
from fragsim.errors import ConfigError
from fragsim.mm import internal as I
from fragsim.mm import vmstat
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from fragsim.mm.machine import Machine
from fragsim.scenario.engine import MS, S, Simulation, Workload, workload_class
from fragsim.workloads.fragmenter import Fragmenter
from fragsim.workloads.kbuild import KernelBuild
from fragsim.workloads.replay import TraceReplay, load_trace, save_trace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/workloads"
BURSTY = FIXTURES / "bursty-3000.npz"
SOL = FIXTURES / "sol-3000.npy"


def small(debug: bool = True) -> Machine:
    return Machine("flat:16384", nr_cpus=1, config_thp=False, debug=debug)


def big() -> Machine:
    return Machine("flat:65536", nr_cpus=1, config_thp=False)


def run(m: Machine, cls: type[Workload], until: int, seed: int = 1, **opts: Any) -> Any:
    sim = Simulation(m, seed=seed)
    w = cls(sim, **opts)
    sim.add_workload(w)
    sim.run(until)
    check_invariants(m)
    return w


def free_blocks(m: Machine) -> np.ndarray:
    out: np.ndarray = np.asarray(m.state.nr_free).sum(axis=0)
    return out


def machine_state(m: Machine) -> tuple[Any, ...]:
    """What two identical runs must share: free lists, per-page state, the handle table and
    every vmstat counter."""
    st = m.state
    return (
        free_blocks(m).tolist(),
        st.flags.tobytes(),
        st.order.tobytes(),
        st.pb.tobytes(),
        m.handles.tobytes(),
        vmstat.vmstat_counters(m),
    )


def test_registered_by_name() -> None:
    assert workload_class("fragmenter") is Fragmenter
    assert workload_class("kbuild") is KernelBuild
    assert workload_class("replay") is TraceReplay


# ---------------------------------------------------------------------- fragmenter
def test_fragmenter_every_other_fragments_with_free_memory_high() -> None:
    m = small()
    before = free_blocks(m)
    sim = Simulation(m, seed=1)
    f = Fragmenter(sim, pattern="every-other", fill=0.9, unmovable_fraction=0.2)
    sim.add_workload(f)
    seen: dict[str, np.ndarray] = {}

    def look() -> None:
        seen["after"] = free_blocks(m)

    sim.at(1 * MS, look)
    sim.run(2 * S)
    check_invariants(m)
    after = seen["after"]
    assert vmstat.unusable_free_index(before, 3) == 0
    assert vmstat.unusable_free_index(after, 3) > 750  # most free memory is in order < 3
    free_pages = int((after << np.arange(after.size)).sum())
    assert free_pages > 0.5 * m.totalram_pages()  # ... while more than half is free
    assert after[3:].sum() < after[:3].sum() // 100
    # golden numbers (seed 1)
    assert f.summary() == {
        "cycles": 1,
        "blocks_allocated": 14745,
        "unmovable_allocated": 2977,
        "blocks_freed": 7372,
        "pages_allocated": 14745,
        "alloc_failures": 0,
        "blocks_held": 7373,
        "pages_held": 7373,
        "unmovable_held": 1489,
    }
    assert after.tolist() == GOLDEN_EVERY_OTHER


GOLDEN_EVERY_OTHER = [7099, 1, 1, 2, 1, 0, 1, 0, 0, 1, 1]


def test_fragmenter_sparse_unmovable_pins_pageblocks() -> None:
    m = small()
    f = run(m, Fragmenter, 10 * MS, pattern="sparse-unmovable", unmovable_fraction=0.1)
    after = free_blocks(m)
    free_pages = int((after << np.arange(after.size)).sum())
    s = f.summary()
    # only unmovable blocks are left, a few percent of memory...
    assert s["blocks_held"] == s["unmovable_held"] > 0
    assert s["pages_held"] < 0.1 * m.totalram_pages()
    assert free_pages > 0.85 * m.totalram_pages()
    # ... yet they are sprinkled over most pageblocks: few free pageblock-sized blocks
    pageblocks = m.totalram_pages() >> m.pageblock_order
    assert int(after[m.pageblock_order :].sum()) < pageblocks // 2
    assert vmstat.unusable_free_index(after, m.pageblock_order) > 400


def test_fragmenter_hold_and_period_free_everything_between_cycles() -> None:
    m = small()
    f = run(m, Fragmenter, 2500 * MS, pattern="random", order=2, hold_ns=200 * MS, period_ns=S)
    s = f.summary()
    assert s["cycles"] == 3  # at 0, 1 s and 2 s
    assert s["blocks_held"] == 0  # the last cycle's hold ended at 2.2 s
    assert s["blocks_freed"] == s["blocks_allocated"]
    assert s["pages_allocated"] == 4 * s["blocks_allocated"]


def test_fragmenter_seeds() -> None:
    def one(seed: int) -> tuple[Any, ...]:
        m = small(debug=False)
        f = run(m, Fragmenter, 100 * MS, seed=seed, pattern="random")
        return (f.summary(), machine_state(m))

    a, b, c = one(3), one(3), one(4)
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


@pytest.mark.parametrize(
    ("opts", "key"),
    [
        ({"pattern": "stripes"}, "pattern"),
        ({"fill": 1.5}, "fill"),
        ({"unmovable_fraction": -0.1}, "unmovable_fraction"),
        ({"pattern": "sparse-unmovable", "unmovable_fraction": 0.0}, "unmovable_fraction"),
        ({"order": 11}, "order"),
        ({"hold_ns": 2 * S, "period_ns": S}, "hold_ns"),
    ],
)
def test_fragmenter_bad_options(opts: dict[str, Any], key: str) -> None:
    sim = Simulation(small(debug=False))
    with pytest.raises(ConfigError, match=f"workload fragmenter: {key}: expected"):
        Fragmenter(sim, **opts)


# ---------------------------------------------------------------------- kbuild
def test_kbuild_runs_the_jobs_and_grows_slab_and_page_cache() -> None:
    m = big()
    v0 = vmstat.vmstat_counters(m)
    k = run(m, KernelBuild, 30 * S, jobs=3, total_jobs=20, job_ns=S, anon_mib=16.0)
    k.slab.check()
    v = vmstat.vmstat_counters(m)
    s = k.summary()
    assert s["jobs_started"] == s["jobs_done"] == 20 and s["jobs_running"] == 0
    assert s["own_drivers"] == ["process", "pagecache", "slab"]
    assert not k.procs.procs  # every compile process exited
    assert v["nr_anon_pages"] == 0
    # the page cache holds the headers, the sources and the objects
    assert v["nr_file_pages"] - v0["nr_file_pages"] > 4000
    assert v["nr_written"] == s["pages_written"]  # the objects were written back
    # slab grew: dentries and inodes stay cached after the jobs
    assert v["nr_slab_reclaimable"] > v0["nr_slab_reclaimable"] + 100
    dentry = k.slab.cache("dentry")
    assert int(dentry.nr_unused.sum()) == s["dentries_cached"] > 1000
    # golden numbers (seed 1)
    assert s == GOLDEN_KBUILD
    assert (v["nr_file_pages"], v["nr_slab_reclaimable"], v["nr_slab_unreclaimable"]) == (
        GOLDEN_KBUILD_VM
    )


GOLDEN_KBUILD = {
    "jobs_started": 20,
    "jobs_done": 20,
    "fork_failures": 0,
    "anon_pages_faulted": 82329,
    "fault_failures": 0,
    "pages_read": 10371,
    "pages_written": 258,
    "read_failures": 0,
    "write_failures": 0,
    "slab_objects_allocated": 7948,
    "slab_alloc_failures": 0,
    "dentries_cached": 1064,
    "jobs_running": 0,
    "own_drivers": ["process", "pagecache", "slab"],
}
GOLDEN_KBUILD_VM = (4248, 229, 82)


def test_kbuild_until_the_end_keeps_jobs_slots_busy() -> None:
    m = big()
    k = run(m, KernelBuild, 5 * S, jobs=2, job_ns=500 * MS, anon_mib=8.0)
    s = k.summary()
    assert s["jobs_running"] == 2  # total_jobs=0: the slots are refilled until the end
    assert s["jobs_started"] == s["jobs_done"] + 2
    assert 10 < s["jobs_done"] < 30  # ~ 2 slots * 5 s / 0.5 s


def test_kbuild_uses_the_scenarios_drivers() -> None:
    m = big()
    sim = Simulation(m, seed=2)
    procs, pc, slab = Processes(m), PageCache(m), Slab(m)
    sim.add_driver("p", procs)
    sim.add_driver("pc", pc)
    sim.add_driver("slab", slab)
    k = KernelBuild(sim, jobs=2, total_jobs=4, job_ns=100 * MS, anon_mib=4.0)
    sim.add_workload(k)
    sim.run(2 * S)
    check_invariants(m)
    slab.check()
    assert k.procs is procs and k.pagecache is pc and k.slab is slab
    assert k.summary()["own_drivers"] == []
    assert len(pc.files) == 1 + 2 * 4  # the header set, a source and an object per job


def test_kbuild_seeds() -> None:
    def one(seed: int) -> tuple[Any, ...]:
        m = big()
        k = run(m, KernelBuild, 3 * S, seed=seed, jobs=2, job_ns=300 * MS, anon_mib=4.0)
        return (k.summary(), machine_state(m))

    a, b, c = one(5), one(5), one(6)
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


@pytest.mark.parametrize(
    ("opts", "key"),
    [
        ({"jobs": 0}, "jobs"),
        ({"job_ns": 0}, "job_ns"),
        ({"total_jobs": -1}, "total_jobs"),
        ({"anon_mib": 0.0}, "anon_mib"),
        ({"headers_mib": 1.0, "headers_per_job": 1000}, "headers_per_job"),
    ],
)
def test_kbuild_bad_options(opts: dict[str, Any], key: str) -> None:
    sim = Simulation(small(debug=False))
    with pytest.raises(ConfigError, match=f"workload kbuild: {key}: expected"):
        KernelBuild(sim, **opts)


# ---------------------------------------------------------------------- replay
def trace_expectation(ev: np.ndarray) -> tuple[int, int, set[int]]:
    """(allocations, frees, trace handles live at the end) of a trace's rows."""
    live: set[int] = set()
    for op, arg in ev[:, [I.EV_OP, I.EV_ARG]].tolist():
        if op == I.OP_ALLOC and arg >= 0:
            live.add(arg)
        elif op == I.OP_FREE_HANDLE:
            live.discard(arg)
    op = ev[:, I.EV_OP]
    return int((op == I.OP_ALLOC).sum()), int((op == I.OP_FREE_HANDLE).sum()), live


def test_replay_places_exactly_the_traces_events() -> None:
    m = small()
    t, ev, size = load_trace(BURSTY)
    n0 = m.nr_events
    sim = Simulation(m, seed=1)
    r = TraceReplay(sim, trace=str(BURSTY), start_ns=10 * MS)
    sim.add_workload(r)
    sim.run(2 * S)
    check_invariants(m)
    nalloc, nfree, live = trace_expectation(ev)
    s = r.summary()
    assert s["events"] == s["rows"] == ev.shape[0] == m.nr_events - n0
    assert (s["allocs"], s["frees"], s["alloc_failures"]) == (nalloc, nfree, 0)
    # the blocks the trace leaves allocated are exactly those held, with their orders
    held = r.map[m.handles[r.map] >= 0]
    assert set(np.flatnonzero(m.handles[r.map] >= 0).tolist()) == live
    want = {h: o for h, o in ev[ev[:, I.EV_OP] == I.OP_ALLOC][:, [I.EV_ARG, I.EV_ORDER]].tolist()}
    orders = m.state.order[m.handles[held]]
    assert orders.tolist() == [want[h] for h in np.flatnonzero(m.handles[r.map] >= 0).tolist()]
    allocated = sum(1 << o for h, o in want.items() if h in live)
    assert m.totalram_pages() - vmstat.vmstat_counters(m)["nr_free_pages"] >= allocated
    # golden numbers: 3000 rows in batches by the 1 ms window
    assert s == {
        "passes": 1,
        "events": 3000,
        "batches": GOLDEN_REPLAY_BATCHES,
        "allocs": 2312,
        "frees": 688,
        "alloc_failures": 0,
        "pages_allocated": GOLDEN_REPLAY_PAGES,
        "rows": 3000,
        "blocks_held": 1624,
    }


GOLDEN_REPLAY_BATCHES = 479
GOLDEN_REPLAY_PAGES = 5688


def test_replay_batching_rule(tmp_path: Path) -> None:
    # rows at 0, 0, 0, 0.5 ms, 2 ms, 2 ms, 5 ms: window 1 ms, batch 2 rows
    t = np.array([0, 0, 0, 500_000, 2_000_000, 2_000_000, 5_000_000]) + 7 * S
    ev = I.alloc_events(np.arange(7), GFP_KERNEL, 0)
    path = tmp_path / "t.npz"
    save_trace(path, t, ev)
    m = small()
    sim = Simulation(m, batch=2)
    r = TraceReplay(sim, trace=str(path), start_ns=S)
    sim.add_workload(r)
    times: list[tuple[int, int, int]] = []
    play = r.play

    def spy(lo: int, hi: int) -> np.ndarray:
        times.append((sim.now, lo, hi))
        out: np.ndarray = play(lo, hi)
        return out

    r.play = spy  # type: ignore[method-assign,unused-ignore]
    sim.run(2 * S)
    ms = MS
    assert times == [
        (S, 0, 2),
        (S, 2, 4),  # the third row at 0 and the 0.5 ms row: the batch starts at the first
        (S + 2 * ms, 4, 6),
        (S + 5 * ms, 6, 7),
    ]
    assert r.summary()["batches"] == 4


def test_replay_twice_gives_identical_machines() -> None:
    def one(seed: int) -> tuple[Any, ...]:
        m = small()
        r = run(m, TraceReplay, S, seed=seed, trace=str(BURSTY))
        return (r.summary(), machine_state(m))

    # the trace has no randomness of its own: the seed does not change it
    assert one(1) == one(1) == one(2)


def test_replay_speed_of_light_npy_with_rate() -> None:
    m = small()
    r = run(m, TraceReplay, 3 * S, trace=str(SOL), rate=1000.0)
    s = r.summary()
    raw = np.load(SOL)
    assert s["events"] == raw.size and s["allocs"] == int((raw < 0).sum())
    assert s["batches"] == -(-raw.size // 2)  # 1000 events/s: two rows within 1 ms
    assert m.now == 3 * S


def test_replay_beside_other_memory_users_and_loop(tmp_path: Path) -> None:
    m = small()
    sim = Simulation(m, seed=1)
    pc = PageCache(m)
    f = pc.create(64)
    pc.read(f)
    hs = np.arange(100)
    ev = np.concatenate([I.alloc_events(hs, GFP_HIGHUSER_MOVABLE, 1), I.free_events(hs[::2])])
    path = tmp_path / "rows.npy"
    np.save(path, ev)
    r = TraceReplay(sim, trace=str(path), rate=1e5, loop=True)
    sim.add_workload(r)
    sim.run(10 * MS)
    check_invariants(m)
    assert pc.cached(f).all()  # the trace's handles are its own
    s = r.summary()
    assert s["passes"] > 1
    assert s["allocs"] >= 100 * (s["passes"] - 1) and s["frees"] >= 50 * (s["passes"] - 1)
    assert 0 < s["blocks_held"] <= 100
    assert s["alloc_failures"] == 0


def test_replay_bad_traces(tmp_path: Path) -> None:
    sim = Simulation(small(debug=False))
    with pytest.raises(ConfigError, match="workload replay: trace: expected"):
        TraceReplay(sim)
    with pytest.raises(ConfigError, match="no such file"):
        TraceReplay(sim, trace=str(tmp_path / "none.npz"))
    with pytest.raises(ConfigError, match="rate: an untimed .npy trace needs rate"):
        TraceReplay(sim, trace=str(SOL))
    bad = I.free_events([0])
    bad[0, I.EV_OP] = I.OP_FREE_PFN
    save_trace(tmp_path / "pfn.npz", [0], bad)
    with pytest.raises(ConfigError, match=r"pfn.npz: ev\[0\]: op 2 cannot be replayed"):
        TraceReplay(sim, trace=str(tmp_path / "pfn.npz"))
    save_trace(tmp_path / "back.npz", [5, 3], I.alloc_events([0, 1], GFP_KERNEL))
    with pytest.raises(ConfigError, match="t_ns: times go back at row 1"):
        TraceReplay(sim, trace=str(tmp_path / "back.npz"))
    save_trace(tmp_path / "small.npz", [0, 1], I.alloc_events([0, 9], GFP_KERNEL), 4)
    with pytest.raises(ConfigError, match="handles_size: 4 is below"):
        TraceReplay(sim, trace=str(tmp_path / "small.npz"))
