"""Property tests (hypothesis): compaction never loses, duplicates or corrupts a page, and every
migrated page's owner and kind move with it; the invariant checker runs on every batch."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragsim.drivers import MovableDriver
from fragsim.mm import internal as I
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import __GFP_NOWARN, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import CompiledPolicy, MigrateMode, MigrateResult
from fragsim.mm.page import Page, PG_anon, PG_lru, PG_swapbacked, PG_unevictable

ANON = PG_lru | PG_anon | PG_swapbacked
#: (gfp, order, page flags): anonymous LRU pages, unevictable ones, kernel blocks, THPs
KINDS = (
    (GFP_HIGHUSER_MOVABLE, 0, ANON),
    (GFP_HIGHUSER_MOVABLE, 0, ANON | PG_unevictable),
    (GFP_KERNEL, 0, 0),
    (GFP_KERNEL, 2, 0),
    (GFP_TRANSHUGE, 9, ANON),
)

plans = st.lists(
    st.tuples(st.sampled_from(range(len(KINDS))), st.booleans(), st.booleans()),
    min_size=50,
    max_size=400,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=plans,
    pin_every=st.integers(3, 50),
    unevictable_allowed=st.booleans(),
    cpus=st.integers(1, 2),
)
def test_compaction_keeps_every_page_and_owner(
    plan: list[tuple[int, bool, bool]], pin_every: int, unevictable_allowed: bool, cpus: int
) -> None:
    m = Machine("flat:16384", nr_cpus=cpus, debug=True)
    m.state.prm[I.P_COMPACT_UNEVICTABLE] = int(unevictable_allowed)
    # Lay down many small LRU pages first so that the plan's frees leave holes to compact.
    n = len(plan)
    base = 6000
    kinds = [KINDS[kind] for kind, _, _ in plan]
    handles = np.full(base + n, -1, np.int32)
    m.run(
        I.alloc_events(
            np.arange(base + n),
            [GFP_HIGHUSER_MOVABLE | __GFP_NOWARN] * base + [g | __GFP_NOWARN for g, _, _ in kinds],
            order=[0] * base + [o for _, o, _ in kinds],
            flags=[ANON] * base + [f for _, _, f in kinds],
            cpu=np.arange(base + n) % cpus,
        ),
        handles,
    )
    # free every other base page, and the plan's pages marked for freeing; pin some
    free = [h for h in range(0, base, 2)] + [base + i for i, p in enumerate(plan) if p[1]]
    m.run(I.free_events(free), handles)
    pinned = [h for h in range(1, base, 2) if h % pin_every == 0 and handles[h] >= 0]
    for h in pinned:
        m.state.refcount[handles[h]] += 1024
    m.drain_all_pages()
    live = np.flatnonzero(handles >= 0)
    kinds_before = m.state.flags[handles[live]].copy()
    orders_before = m.state.order[handles[live]].copy()
    pinned_at = {h: int(handles[h]) for h in pinned}

    m.compact_memory()

    check_invariants(m)
    pfns = handles[live]
    assert len(np.unique(pfns)) == len(pfns)  # nothing duplicated
    assert (pfns >= 0).all()  # nothing lost
    assert (m.state.owner[pfns] == live).all()  # owners moved with their pages
    assert (m.state.flags[pfns] == kinds_before).all()  # so did their kinds
    assert (m.state.order[pfns] == orders_before).all()
    assert all(handles[h] == p for h, p in pinned_at.items())  # pins never move
    for i, (kind, _freed, _) in enumerate(plan):
        h = base + i
        if handles[h] >= 0 and KINDS[kind][2] & PG_lru == 0:
            assert handles[h] == ev_pfn_before(h, live, pfns)  # kernel pages never move
    for h in pinned:
        m.state.refcount[handles[h]] -= 1024


def ev_pfn_before(h: int, live: np.ndarray, pfns: np.ndarray) -> int:
    return int(pfns[np.searchsorted(live, h)])


class Keeper(MovableDriver):
    """A Python driver that keeps a datum per page, keyed by pfn, and moves it on migration."""

    name = "keeper"

    def __init__(self, m: Machine, **kw: object) -> None:
        super().__init__(m, **kw)  # type: ignore[arg-type]
        self.data: dict[int, int] = {}

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        self.data[dst.pfn] = self.data.pop(src.pfn)
        return super().migrate_page(dst, src, mode)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keep=st.lists(st.booleans(), min_size=64, max_size=64),
    busy=st.sampled_from([0.0, 0.3, 1.0]),
    eagain=st.sampled_from([0.0, 0.5]),
    requests=st.lists(
        st.sampled_from([(GFP_KERNEL, 3), (GFP_ATOMIC, 2), (GFP_TRANSHUGE, 9), (GFP_KERNEL, 1)]),
        max_size=12,
    ),
    seed=st.integers(0, 3),
)
def test_direct_compaction_and_drivers_keep_every_page_and_datum(
    keep: list[bool],
    busy: float,
    eagain: float,
    requests: list[tuple[int, int]],
    seed: int,
) -> None:
    """Driver pages (a compiled policy and a Python driver), LRU pages and kernel pages mixed;
    high-order requests go through the slow path (direct compaction, capture, kswapd and
    kcompactd); then compact_memory. Every page is where its owner's handle says, once; every
    Python datum moved with its page; the invariant checker passes after every batch."""
    m = Machine("flat:16384", nr_cpus=1, config_thp=False, seed=seed)
    gpu = MovableDriver(m, policy=CompiledPolicy(isolate_busy=busy, migrate_eagain=eagain))
    py = Keeper(m)
    hs: list[tuple[MovableDriver, int]] = []
    for i in range(3000):
        d = gpu if i % 3 else py
        h = d.alloc_page(GFP_KERNEL)
        if h < 0:
            break
        if d is py:
            py.data[py.pfn(h)] = h
        hs.append((d, h))
    lru = m.new_handles(6000)
    m.run(
        I.alloc_events(np.arange(lru, lru + 6000), GFP_HIGHUSER_MOVABLE | __GFP_NOWARN, flags=ANON)
    )
    kept = []
    for i, (d, h) in enumerate(hs):
        if keep[i % 64]:
            kept.append((d, h))
        else:
            if d is py:
                py.data.pop(py.pfn(h))
            d.free_page(h)
    m.run(I.free_events(np.arange(lru, lru + 6000, 2)))
    check_invariants(m)
    m.debug = True  # from here on, after every batch
    for gfp, order in requests:
        m.alloc_pages(gfp | __GFP_NOWARN, order)
    m.compact_memory()
    check_invariants(m)
    live = np.flatnonzero(m.handles >= 0)
    pfns = m.handles[live]
    assert len(np.unique(pfns)) == len(pfns)
    assert (m.state.owner[pfns] == live).all()
    for d, h in kept:
        p = d.pfn(h)
        assert m.movable_ops[m.state.mops[p] - 1] is d
        if d is py:
            assert py.data[p] == h
    assert len(py.data) == sum(1 for d, _ in kept if d is py)
