"""The LRU-facing page API of mm/swap.c (Linux 6.1.192): folio_mark_accessed,
folio_mark_young (fragsim's stand-in for a mapping's accessed bit), lru_note_cost, and how
pages join the LRU (``lru_cache_add``: allocate them with PG_lru in the caller's flags; the
compiled lruvec_add_folio in fragsim/mm/page_alloc.py puts them on their list).

These are what memory users call when their pages are used: a process touching its anonymous
or mmap()ed pages sets the accessed bit (folio_referenced() reads and clears it during reclaim);
read()/write() on the page cache calls folio_mark_accessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.page import PG_active, PG_lru, PG_referenced, PG_unevictable, PG_young

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = [
    "folio_mark_accessed",
    "folio_mark_young",
    "get_nr_swap_pages",
    "lru_note_cost",
    "lru_size",
]

EVICTABLE = (I.LRU_INACTIVE_ANON, I.LRU_ACTIVE_ANON, I.LRU_INACTIVE_FILE, I.LRU_ACTIVE_FILE)


def lru_size(m: Machine, nid: int, lru: int, reclaim_idx: int | None = None) -> int:
    """lruvec_lru_size(): the node's pages on list ``lru`` (in the zones up to
    ``reclaim_idx``, or all)."""
    nzt = m.nr_zone_types
    top = nzt if reclaim_idx is None else reclaim_idx + 1
    return int(m.state.zs[nid * nzt : nid * nzt + top, I.ZF_NR_LRU + lru].sum())


def get_nr_swap_pages(m: Machine) -> int:
    """get_nr_swap_pages(): free slots of the swap device (0 without one)."""
    return int(m.swap.nr_free_slots()) if m.swap is not None else 0


def lru_note_cost(m: Machine, nid: int, file: bool, nr_pages: int) -> None:
    """lru_note_cost() (6.1): add to the anon or file reclaim cost; halve both once they
    exceed a quarter of the node's LRU pages."""
    lv = m.lruvecs[nid]
    if file:
        lv.file_cost += nr_pages
    else:
        lv.anon_cost += nr_pages
    lrusize = sum(lru_size(m, nid, lru) for lru in EVICTABLE)
    if lv.file_cost + lv.anon_cost > lrusize // 4:
        lv.file_cost //= 2
        lv.anon_cost //= 2


def folio_mark_young(m: Machine, pfns: npt.ArrayLike) -> None:
    """A process accessed these mapped pages: their pte's accessed bit is set."""
    p = np.asarray(pfns, np.int64).reshape(-1)
    m.state.flags[p] |= PG_young


def folio_mark_accessed(m: Machine, pfns: npt.ArrayLike) -> int:
    """folio_mark_accessed() (6.1) for page cache reads and writes: a first access sets
    PG_referenced; a second one activates an inactive evictable page (folio_activate, counted
    in pgactivate; workingset_activation ages the node) and clears PG_referenced. Returns the
    pages activated."""
    from fragsim.mm.workingset import workingset_activation

    st = m.state
    p = np.unique(np.asarray(pfns, np.int64).reshape(-1))
    f = st.flags[p]
    first = (f & PG_referenced) == 0
    st.flags[p[first]] |= PG_referenced
    act = p[~first & ((f & (PG_unevictable | PG_active)) == 0)]
    if not len(act):
        return 0
    on_lru = act[(st.flags[act] & PG_lru) != 0]
    moved = pa.lru_move(st, act, len(act), PG_active, PG_referenced)
    m.count_vm_event("pgactivate", moved)
    nids = m.pfn_to_nid(on_lru)
    for nid in np.unique(nids):
        workingset_activation(m, int(nid), int(np.count_nonzero(nids == nid)))
    return moved
