"""The simulated ``mem_map``: page flags and a throwaway per-page view.
Models include/linux/page-flags.h and include/linux/mm_types.h (struct page), Linux 6.1.

Per-page state lives in flat arrays of ``State`` (fragsim/mm/internal.py) indexed by pfn; the
``PG_*`` constants below are bits of ``State.flags``. They are fragsim's own bit positions (the
kernel's depend on the config); /proc/kpageflags output maps them to the kernel's KPF_* bits.
``PG_buddy`` stands for the kernel's PageBuddy page type, ``PG_pcp`` marks a block on a per-CPU
list (the kernel knows it only by the list it is on), and ``PG_movable`` is ``__PageMovable``: a
non-LRU page whose mapping points at a driver's ``movable_operations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = [
    "GUP_PIN_COUNTING_BIAS",
    "PG_FLAG_NAMES",
    "Page",
]

PG_buddy = 1 << 0
PG_pcp = 1 << 1
PG_reserved = 1 << 2
PG_head = 1 << 3
PG_tail = 1 << 4
PG_lru = 1 << 5
PG_movable = 1 << 6
PG_isolated = 1 << 7
PG_slab = 1 << 8
PG_offline = 1 << 9
PG_table = 1 << 10
PG_anon = 1 << 11
PG_swapbacked = 1 << 12
PG_dirty = 1 << 13
PG_writeback = 1 << 14
PG_unevictable = 1 << 15
PG_mlocked = 1 << 16
PG_active = 1 << 17
PG_private = 1 << 18
PG_nopage = 1 << 19  # a hole: no struct page backs this pfn (pfn_valid() false)
PG_referenced = 1 << 20
PG_young = 1 << 21  # a mapping's accessed bit (pte young) since reclaim last looked (rmap walk)
PG_mapped = 1 << 22  # page_mapped(): mapped into a process (anon, or an mmap()ed file page)
PG_reclaim = 1 << 23  # reclaim wants it freed when its writeback ends
PG_workingset = 1 << 24

PG_FLAG_NAMES: dict[int, str] = {
    v: k[3:] for k, v in dict(globals()).items() if k.startswith("PG_") and isinstance(v, int)
}

#: include/linux/mm.h: a pin_user_pages() pin adds this much to page->_refcount.
GUP_PIN_COUNTING_BIAS = 1024


@dataclass(frozen=True, slots=True)
class Page:
    """A view of one ``struct page`` (the pfn and the machine); never stored in bulk."""

    machine: Machine
    pfn: int

    @property
    def flags(self) -> int:
        return int(self.machine.state.flags[self.pfn])

    def flag_names(self) -> list[str]:
        f = self.flags
        return [name for bit, name in PG_FLAG_NAMES.items() if f & bit]

    @property
    def order(self) -> int:
        return int(self.machine.state.order[self.pfn])

    @property
    def refcount(self) -> int:
        return int(self.machine.state.refcount[self.pfn])

    @property
    def owner(self) -> int:
        return int(self.machine.state.owner[self.pfn])

    def __repr__(self) -> str:
        return f"<Page pfn={self.pfn:#x} flags={'|'.join(self.flag_names()) or '0'}>"
