"""The page cache: files whose pages are read, written and mmap()ed by the workload. Models the
page-cache side of mm/filemap.c (filemap_read / filemap_get_pages with folio_mark_accessed,
filemap_add_folio with workingset_refault, filemap_fault), mm/page-writeback.c
(folio_mark_dirty) and mm/truncate.c (truncate_inode_pages), Linux 6.1.192, for one regular
filesystem whose mapping_gfp_mask is GFP_HIGHUSER_MOVABLE.

A file is an array of handles, one per page index; a handle holds a page while it is cached.
Reclaim (fragsim/mm/vmscan.py) evicts clean pages and leaves a shadow entry in
``Machine.shadow``; the next access finds no page, allocates one and lets workingset_refault
decide from the shadow whether it starts on the active list. Dirty pages are written back by the
flusher (``Machine.advance``).

SIMPLIFICATION: no readahead window (each access reads exactly the pages it touches), no
large folios, one mapping per page; truncating a file frees pages under writeback at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MemoryUser, register_driver
from fragsim.errors import ConfigError
from fragsim.mm.gfp import GFP_HIGHUSER_MOVABLE
from fragsim.mm.machine import Machine
from fragsim.mm.page import PG_dirty, PG_lru, PG_mapped, PG_writeback, PG_young
from fragsim.mm.swap import folio_mark_accessed, folio_mark_young
from fragsim.mm.workingset import workingset_refault

__all__ = ["PageCache"]


@register_driver("pagecache")
class PageCache(MemoryUser):
    """Files in the page cache of one filesystem (``gfp`` is its mapping_gfp_mask)."""

    def __init__(self, machine: Machine, *, gfp: int = GFP_HIGHUSER_MOVABLE) -> None:
        super().__init__(machine)
        self.mapping_gfp = gfp
        self.files: dict[int, npt.NDArray[np.int64]] = {}
        self._next_id = 0

    # ------------------------------------------------------------------ files
    def create(self, nr_pages: int) -> int:
        """A new file of ``nr_pages`` pages, none cached; returns its id."""
        if nr_pages < 0:
            raise ConfigError(f"pagecache: a file of {nr_pages} pages")
        fid = self._next_id
        self._next_id += 1
        self.files[fid] = self.machine.alloc_handles(nr_pages)
        return fid

    def _range(self, fid: int, start: int, count: int | None) -> npt.NDArray[np.int64]:
        try:
            hs = self.files[fid]
        except KeyError:
            raise ConfigError(f"pagecache: no file {fid}") from None
        end = hs.shape[0] if count is None else start + count
        if not 0 <= start <= end <= hs.shape[0]:
            raise ConfigError(f"pagecache: pages {start}..{end} outside file {fid} ({hs.shape[0]})")
        return hs[start:end]

    def cached(self, fid: int) -> npt.NDArray[np.bool_]:
        """Which of the file's pages are in memory."""
        return self.machine.handles[self.files[fid]] >= 0

    def _fault_in(self, hs: npt.NDArray[np.int64], flags: int, cpu: int) -> int:
        """filemap_add_folio() of the missing pages among ``hs`` (GFP of the mapping; the
        new page joins the LRU, active if workingset_refault says so). Counts pgpgin (KiB
        read). Returns the pages that could not be allocated."""
        m = self.machine
        missing = hs[m.handles[hs] < 0]
        if not len(missing):
            return 0
        nid = 0
        start_flags = workingset_refault(m, nid, m.shadow[missing], True) | flags | PG_lru
        m.shadow[missing] = -1
        # one batch per distinct set of start flags (active or not)
        failed = 0
        for fl in np.unique(start_flags):
            sel = missing[start_flags == fl]
            self.alloc_pages(sel.size, self.mapping_gfp, flags=int(fl), cpu=cpu, into=sel)
            failed += int(np.count_nonzero(m.handles[sel] < 0))
        m.count_vm_event("pgpgin", 4 * (len(missing) - failed))
        return failed

    def read(self, fid: int, start: int = 0, count: int | None = None, cpu: int = 0) -> int:
        """read(): pages not cached are read in, cached ones marked accessed
        (folio_mark_accessed: a second access activates). Returns pages that could not be
        read in (allocation failed)."""
        hs = self._range(fid, start, count)
        m = self.machine
        present = hs[m.handles[hs] >= 0]
        failed = self._fault_in(hs, 0, cpu)
        if len(present):
            folio_mark_accessed(m, m.handles[present])
        return failed

    def write(self, fid: int, start: int = 0, count: int | None = None, cpu: int = 0) -> int:
        """write(): as read, then the pages are dirty (folio_mark_dirty; nr_dirtied)."""
        failed = self.read(fid, start, count, cpu)
        m = self.machine
        hs = self._range(fid, start, count)
        pfns = m.handles[hs]
        pfns = pfns[pfns >= 0]
        fl = m.state.flags
        newly = pfns[(fl[pfns] & PG_dirty) == 0]
        fl[pfns] |= PG_dirty
        if len(newly):
            m.mod_node_page_state(0, "nr_dirtied", len(newly))
        return failed

    def mmap_touch(self, fid: int, start: int = 0, count: int | None = None, cpu: int = 0) -> int:
        """Accesses through an mmap() of the file: missing pages fault in (filemap_fault:
        pgfault, pgmajfault), all are mapped and their accessed bit set. Returns pages that
        could not be faulted in."""
        hs = self._range(fid, start, count)
        m = self.machine
        nmiss = int(np.count_nonzero(m.handles[hs] < 0))
        failed = self._fault_in(hs, PG_mapped | PG_young, cpu)
        m.count_vm_event("pgfault", len(hs))
        m.count_vm_event("pgmajfault", nmiss - failed)
        pfns = m.handles[hs]
        pfns = pfns[pfns >= 0]
        m.state.flags[pfns] |= PG_mapped
        folio_mark_young(m, pfns)
        return failed

    def delete(self, fid: int) -> None:
        """unlink() of a file nobody has open: truncate_inode_pages frees its cached pages and
        drops its shadow entries; the handles go back to the machine."""
        hs = self._range(fid, 0, None)
        m = self.machine
        cached = m.handles[hs] >= 0
        held = hs[cached]
        if len(held):
            pfns = m.handles[held]
            m.state.flags[pfns] &= ~(PG_dirty | PG_writeback)
            self.free_pages(held)  # (gives their handles back)
        m.release_handles(hs[~cached])
        del self.files[fid]

    def drop_caches(self) -> int:
        """echo 1 > /proc/sys/vm/drop_caches (drop_pagecache): every clean, unmapped cached
        page is freed, without shadow entries (invalidate_mapping_pages). Returns pages freed."""
        m = self.machine
        m.count_vm_event("drop_pagecache")
        freed = 0
        for hs in self.files.values():
            pfns = m.handles[hs]
            sel = pfns >= 0
            f = np.zeros(hs.shape, np.int64)
            f[sel] = m.state.flags[pfns[sel]]
            ok = sel & ((f & (PG_dirty | PG_writeback | PG_mapped)) == 0) & ((f & PG_lru) != 0)
            ok[sel] &= m.state.refcount[pfns[sel]] == 1
            if ok.any():
                self.free_pages(hs[ok], release=False)  # the file keeps its indexes
                freed += int(ok.sum())
        return freed

    @property
    def nr_cached(self) -> int:
        """Pages of all files in memory."""
        m = self.machine
        return int(sum(np.count_nonzero(m.handles[hs] >= 0) for hs in self.files.values()))

    def describe(self) -> dict[str, Any]:
        return {"files": len(self.files), "cached_pages": self.nr_cached}
