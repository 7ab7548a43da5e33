"""Workingset detection: shadow entries of evicted pages and refault activation. Models
mm/workingset.c of Linux 6.1.192 without MGLRU and memory cgroups: workingset_age_nonresident,
workingset_eviction, workingset_refault and workingset_activation.

A shadow entry packs the node, the node's non-resident age at eviction and the page's
PG_workingset bit (pack_shadow); vmscan stores it in ``Machine.shadow[handle]`` of the evicted
page's owner, who hands it back when the page faults in again.

SIMPLIFICATION: a batch of refaults is judged against the age when the batch starts (the
kernel ages the node by each activation in turn; the difference is at most the batch size).
No bucket_order (all of the age's bits fit in 64 bits) and no shadow-node shrinker
(workingset_nodes stays 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fragsim.mm import internal as I
from fragsim.mm.page import PG_active, PG_workingset
from fragsim.mm.swap import get_nr_swap_pages, lru_note_cost, lru_size

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = [
    "workingset_activation",
    "workingset_age_nonresident",
    "workingset_eviction",
    "workingset_refault",
]

NODE_BITS = 6  # nodes a shadow entry can name


def workingset_age_nonresident(m: Machine, nid: int, nr_pages: int) -> None:
    """workingset_age_nonresident(): evictions and activations age the node's LRU."""
    m.lruvecs[nid].nonresident_age += nr_pages


def workingset_eviction(
    m: Machine, nid: int, flags: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """workingset_eviction() for pages evicted in order from node ``nid`` (their PG_* flags):
    each ages the node by one page and gets a shadow of the age after it."""
    n = len(flags)
    lv = m.lruvecs[nid]
    ages = lv.nonresident_age + np.arange(1, n + 1, dtype=np.int64)
    lv.nonresident_age += n
    ws = ((flags & PG_workingset) != 0).astype(np.int64)
    shadows: npt.NDArray[np.int64] = (((ages << NODE_BITS) | nid) << 1) | ws
    return shadows


def workingset_refault(
    m: Machine, nid: int, shadows: npt.ArrayLike, file: bool
) -> npt.NDArray[np.int64]:
    """workingset_refault() (6.1) for pages faulting back in on node ``nid`` with these
    shadows (-1: none, a first fault): counts workingset_refault_{anon,file}; a page whose
    refault distance (the age since its eviction) fits in the workingset (active file pages;
    for anon also inactive file; with swap also active anon and, for file, inactive anon)
    starts active (workingset_activate_*), and one that was in the workingset when evicted
    also gets PG_workingset and counts as a restore (lru_note_cost). Returns the PG_* flags
    each new page starts with."""
    sh = np.asarray(shadows, np.int64).reshape(-1)
    out = np.zeros(sh.shape, np.int64)
    have = sh >= 0
    if not have.any():
        return out
    kind = "file" if file else "anon"
    ns = m.node_stat[nid]
    ns[f"workingset_refault_{kind}"] += int(have.sum())
    ws = (sh & 1) != 0
    eviction = sh >> (NODE_BITS + 1)
    enid = (sh >> 1) & ((1 << NODE_BITS) - 1)
    activate = np.zeros(sh.shape, bool)
    for e in np.unique(enid[have]):
        e = int(e)
        sel = have & (enid == e)
        size = lru_size(m, e, I.LRU_ACTIVE_FILE)
        if not file:
            size += lru_size(m, e, I.LRU_INACTIVE_FILE)
        if get_nr_swap_pages(m) > 0:
            size += lru_size(m, e, I.LRU_ACTIVE_ANON)
            if file:
                size += lru_size(m, e, I.LRU_INACTIVE_ANON)
        distance = m.lruvecs[e].nonresident_age - eviction
        activate |= sel & (distance <= size)
    nact = int(activate.sum())
    if nact:
        out[activate] |= PG_active
        workingset_age_nonresident(m, nid, nact)
        ns[f"workingset_activate_{kind}"] += nact
        restore = activate & ws
        nres = int(restore.sum())
        if nres:
            out[restore] |= PG_workingset
            lru_note_cost(m, nid, file, nres)
            ns[f"workingset_restore_{kind}"] += nres
    return out


def workingset_activation(m: Machine, nid: int, nr_pages: int) -> None:
    """workingset_activation(): a page activated by access ages the node."""
    workingset_age_nonresident(m, nid, nr_pages)
