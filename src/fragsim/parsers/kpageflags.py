"""Reader and classifier for ``/proc/kpageflags`` and ``/proc/kpagecount``.

Reads the binary files of ``fs/proc/page.c`` (Linux 6.1): one native-endian u64 per pfn,
starting at pfn 0, for ``[0, round_up(max_pfn, PAGES_PER_SECTION))``. The bit numbers are those
of ``include/uapi/linux/kernel-page-flags.h`` (bits 0..26) and of the "kernel hack" bits of
``include/linux/kernel-page-flags.h`` (32..41), unchanged from 4.x to 6.18.

:func:`classify` maps every pfn to one :class:`PageKind`, using the 6.1 meaning of the bits
(``stable_page_flags``). The rules are tested in this order; the first that matches wins:

1. ``NOPAGE`` bit -> :attr:`PageKind.NOPAGE` (hole, or an offline memory section).
2. ``BUDDY`` -> :attr:`PageKind.BUDDY`: every page of a free buddy block (6.1 sets the bit on
   the tail pages of a free block too). Free pages on per-cpu lists have no BUDDY bit and no
   other flag, so they end up in :attr:`PageKind.OTHER_KERNEL`.
3. ``OFFLINE`` -> :attr:`PageKind.OFFLINE`: PageOffline, i.e. inflated balloon pages (and
   virtio-mem's unplugged pages).
4. ``RESERVED`` -> :attr:`PageKind.RESERVED`: PG_reserved (kernel image, memblock allocations,
   the zero page, vdso, ...), which the buddy allocator never owns.
5. ``SLAB`` -> :attr:`PageKind.SLAB` (6.1 also sets it on the tail pages of a slab).
6. ``PGTABLE`` -> :attr:`PageKind.PGTABLE`.
7. ``COMPOUND_HEAD``/``COMPOUND_TAIL`` together with ``THP`` or ``HUGE`` ->
   :attr:`PageKind.COMPOUND` (every page of a transparent huge page or a hugetlb page; tested
   before the LRU rules so that the head and the tails of one folio get the same kind).
   Other compound pages (large kmalloc, ``__GFP_COMP`` driver pages) fall through.
8. ``UNEVICTABLE`` -> :attr:`PageKind.UNEVICTABLE` (mlocked, ramfs, ... pages).
9. ``ANON`` or ``SWAPBACKED`` -> :attr:`PageKind.LRU_ANON`: anonymous and shmem/tmpfs memory,
   which 6.1 keeps on the anon LRU lists; pages briefly off the LRU (isolated for migration,
   or waiting in a per-cpu LRU-add batch) count here too.
10. ``LRU`` -> :attr:`PageKind.LRU_FILE` (page cache).
11. ``PRIVATE`` -> :attr:`PageKind.ZSMALLOC`: in 6.1 zsmalloc sets PG_private on the first
    page of every zspage, and no other non-LRU, non-slab page of interest has it. The other
    pages of a multi-page zspage carry no distinguishing bit and are OTHER_KERNEL.
12. A page mapped into user space (``MMAP`` bit, or a count > 0 in ``kpagecount`` when given)
    -> :attr:`PageKind.LRU_FILE`: a user page not on an LRU list at the time of the read.
13. Everything else -> :attr:`PageKind.OTHER_KERNEL`: allocated pages without a telling flag
    (vmalloc, kernel stacks, pipe buffers, zsmalloc tail pages, ...) and pcp-free pages.
"""

from __future__ import annotations

import os
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from fragsim.errors import ParseError
from fragsim.parsers._io import read_input

__all__ = [
    "KPF_ACTIVE",
    "KPF_ANON",
    "KPF_ARCH",
    "KPF_ARCH_2",
    "KPF_BUDDY",
    "KPF_COMPOUND_HEAD",
    "KPF_COMPOUND_TAIL",
    "KPF_DIRTY",
    "KPF_ERROR",
    "KPF_HUGE",
    "KPF_HWPOISON",
    "KPF_IDLE",
    "KPF_KSM",
    "KPF_LOCKED",
    "KPF_LRU",
    "KPF_MAPPEDTODISK",
    "KPF_MLOCKED",
    "KPF_MMAP",
    "KPF_NOPAGE",
    "KPF_OFFLINE",
    "KPF_OWNER_PRIVATE",
    "KPF_PGTABLE",
    "KPF_PRIVATE",
    "KPF_PRIVATE_2",
    "KPF_RECLAIM",
    "KPF_REFERENCED",
    "KPF_RESERVED",
    "KPF_SLAB",
    "KPF_SOFTDIRTY",
    "KPF_SWAPBACKED",
    "KPF_SWAPCACHE",
    "KPF_THP",
    "KPF_UNCACHED",
    "KPF_UNEVICTABLE",
    "KPF_UPTODATE",
    "KPF_WRITEBACK",
    "KPF_ZERO_PAGE",
    "PageKind",
    "classify",
    "kind_counts",
    "read_kpagecount",
    "read_kpageflags",
]

# include/uapi/linux/kernel-page-flags.h
KPF_LOCKED: Final = 0
KPF_ERROR: Final = 1
KPF_REFERENCED: Final = 2
KPF_UPTODATE: Final = 3
KPF_DIRTY: Final = 4
KPF_LRU: Final = 5
KPF_ACTIVE: Final = 6
KPF_SLAB: Final = 7
KPF_WRITEBACK: Final = 8
KPF_RECLAIM: Final = 9
KPF_BUDDY: Final = 10
KPF_MMAP: Final = 11
KPF_ANON: Final = 12
KPF_SWAPCACHE: Final = 13
KPF_SWAPBACKED: Final = 14
KPF_COMPOUND_HEAD: Final = 15
KPF_COMPOUND_TAIL: Final = 16
KPF_HUGE: Final = 17
KPF_UNEVICTABLE: Final = 18
KPF_HWPOISON: Final = 19
KPF_NOPAGE: Final = 20
KPF_KSM: Final = 21
KPF_THP: Final = 22
KPF_OFFLINE: Final = 23
"""Was KPF_BALLOON (same bit) before PG_balloon became PG_offline."""
KPF_ZERO_PAGE: Final = 24
KPF_IDLE: Final = 25
KPF_PGTABLE: Final = 26
# include/linux/kernel-page-flags.h ("kernel hack" bits, raw page flags)
KPF_RESERVED: Final = 32
KPF_MLOCKED: Final = 33
KPF_MAPPEDTODISK: Final = 34
KPF_PRIVATE: Final = 35
KPF_PRIVATE_2: Final = 36
KPF_OWNER_PRIVATE: Final = 37
KPF_ARCH: Final = 38
KPF_UNCACHED: Final = 39
KPF_SOFTDIRTY: Final = 40
KPF_ARCH_2: Final = 41


class PageKind(IntEnum):
    """What a pfn holds, as :func:`classify` decides it (see the module docstring)."""

    NOPAGE = 0
    BUDDY = 1
    RESERVED = 2
    SLAB = 3
    PGTABLE = 4
    OFFLINE = 5
    ZSMALLOC = 6
    LRU_ANON = 7
    LRU_FILE = 8
    UNEVICTABLE = 9
    COMPOUND = 10
    OTHER_KERNEL = 11
    THP = 10
    """Alias of COMPOUND."""


def _read_u64(src: str | os.PathLike[str] | bytes, what: str) -> npt.NDArray[np.uint64]:
    data, path = read_input(src, what)
    if len(data) % 8:
        raise ParseError(
            path, None, f"size {len(data)} bytes is not a multiple of 8 (one u64 per pfn)"
        )
    return np.frombuffer(data, dtype=np.dtype(np.uint64).newbyteorder("=")).copy()


def read_kpageflags(src: str | os.PathLike[str] | bytes) -> npt.NDArray[np.uint64]:
    """Read a ``/proc/kpageflags`` dump (raw or gzip) as one u64 of flags per pfn."""
    return _read_u64(src, "kpageflags")


def read_kpagecount(src: str | os.PathLike[str] | bytes) -> npt.NDArray[np.uint64]:
    """Read a ``/proc/kpagecount`` dump (raw or gzip) as one u64 map count per pfn."""
    return _read_u64(src, "kpagecount")


def _bit(b: int) -> np.uint64:
    return np.uint64(1 << b)


def classify(
    flags: npt.NDArray[np.uint64], counts: npt.NDArray[np.uint64] | None = None
) -> npt.NDArray[np.uint8]:
    """Map every pfn's kpageflags (and optional kpagecount) to a :class:`PageKind` value."""
    f = np.asarray(flags)
    if f.dtype != np.uint64 or f.ndim != 1:
        raise ValueError(f"flags must be a 1-D uint64 array, got {f.dtype} {f.shape}")
    if counts is not None:
        c = np.asarray(counts)
        if c.shape != f.shape:
            raise ValueError(f"counts has shape {c.shape}, flags {f.shape}")
    # Assign in reverse precedence so that the highest-precedence rule is written last.
    out = np.full(f.shape, PageKind.OTHER_KERNEL, dtype=np.uint8)

    def has(mask: int) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = (f & np.uint64(mask)) != 0
        return out

    mapped = has(1 << KPF_MMAP)
    if counts is not None:
        mapped |= np.asarray(counts) > 0
    out[mapped] = PageKind.LRU_FILE
    out[has(1 << KPF_PRIVATE)] = PageKind.ZSMALLOC
    out[has(1 << KPF_LRU)] = PageKind.LRU_FILE
    out[has((1 << KPF_ANON) | (1 << KPF_SWAPBACKED))] = PageKind.LRU_ANON
    out[has(1 << KPF_UNEVICTABLE)] = PageKind.UNEVICTABLE
    compound = has((1 << KPF_COMPOUND_HEAD) | (1 << KPF_COMPOUND_TAIL))
    out[compound & has((1 << KPF_THP) | (1 << KPF_HUGE))] = PageKind.COMPOUND
    out[has(1 << KPF_PGTABLE)] = PageKind.PGTABLE
    out[has(1 << KPF_SLAB)] = PageKind.SLAB
    out[has(1 << KPF_RESERVED)] = PageKind.RESERVED
    out[has(1 << KPF_OFFLINE)] = PageKind.OFFLINE
    out[has(1 << KPF_BUDDY)] = PageKind.BUDDY
    out[has(1 << KPF_NOPAGE)] = PageKind.NOPAGE
    return out


def kind_counts(kinds: npt.NDArray[np.uint8]) -> dict[PageKind, int]:
    """Number of pfns of every :class:`PageKind` (all kinds present, in enum order)."""
    n = np.bincount(np.asarray(kinds, dtype=np.intp), minlength=len(PageKind))
    return {k: int(n[k.value]) for k in PageKind}
