"""Property tests (hypothesis): compaction never loses, duplicates or corrupts a page, and every
migrated page's owner and kind move with it; the invariant checker runs on every batch."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragsim.mm import internal as I
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import __GFP_NOWARN, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE
from fragsim.mm.machine import Machine
from fragsim.mm.page import PG_anon, PG_lru, PG_swapbacked, PG_unevictable

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
    ev = np.zeros((base + n, I.NR_EV), np.int64)
    ev[:base, I.EV_OP] = I.OP_ALLOC
    ev[:base, I.EV_GFP] = GFP_HIGHUSER_MOVABLE | __GFP_NOWARN
    ev[:base, I.EV_FLAGS] = ANON
    for i, (kind, _, _) in enumerate(plan):
        gfp, order, flags = KINDS[kind]
        ev[base + i] = (I.OP_ALLOC, order, gfp | __GFP_NOWARN, 0, i % cpus, 0, flags)
    ev[:, I.EV_ARG] = np.arange(base + n)
    ev[:, I.EV_CPU] = np.arange(base + n) % cpus
    handles = np.full(base + n, -1, np.int32)
    m.run(ev, handles)
    # free every other base page, and the plan's pages marked for freeing; pin some
    free = [h for h in range(0, base, 2)] + [base + i for i, p in enumerate(plan) if p[1]]
    fr = np.zeros((len(free), I.NR_EV), np.int64)
    fr[:, I.EV_OP] = I.OP_FREE_HANDLE
    fr[:, I.EV_ARG] = free
    m.run(fr, handles)
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
