"""Zones, migratetypes and orders. Models include/linux/mmzone.h and
include/linux/pageblock-flags.h (Linux 6.1.192).

Constants here are fragsim's fixed internal numbering, used by the compiled allocator. The kernel
numbers migratetypes by config (``MIGRATE_CMA`` exists only with CONFIG_CMA, so ``MIGRATE_ISOLATE``
is 4 without it); the machine profile maps internal numbers to the kernel's for output.
"""

from __future__ import annotations

__all__ = [
    "MAX_ORDER",
    "MIGRATETYPE_NAMES",
    "MIGRATE_CMA",
    "MIGRATE_HIGHATOMIC",
    "MIGRATE_ISOLATE",
    "MIGRATE_MOVABLE",
    "MIGRATE_PCPTYPES",
    "MIGRATE_RECLAIMABLE",
    "MIGRATE_TYPES",
    "MIGRATE_UNMOVABLE",
    "PAGE_ALLOC_COSTLY_ORDER",
    "ZONE_NAMES",
    "ZoneType",
]

from enum import IntEnum

#: 6.1: MAX_ORDER is exclusive; orders 0..MAX_ORDER-1 (MAX_PAGE_ORDER = 10 in 6.8+ naming).
MAX_ORDER = 11
PAGE_ALLOC_COSTLY_ORDER = 3

MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3
MIGRATE_HIGHATOMIC = MIGRATE_PCPTYPES
MIGRATE_CMA = 4
MIGRATE_ISOLATE = 5
MIGRATE_TYPES = 6  # internal count; a profile without CONFIG_CMA shows 5

#: migratetype_names[] (mm/page_alloc.c)
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

PB_MIGRATETYPE_MASK = 0x7
PB_MIGRATE_SKIP = 0x8
#: fragsim's own pageblock bit (not in the kernel): the block has been MIGRATE_HIGHATOMIC at some
#: point. unreserve_highatomic_pageblock() re-types without merging, so the invariant checker
#: needs this history to tell a legitimately unmerged pair from a lost merge.
PB_WAS_HIGHATOMIC = 0x10


class ZoneType(IntEnum):
    """enum zone_type; the value is fragsim's internal id, not the configured index."""

    ZONE_DMA = 0
    ZONE_DMA32 = 1
    ZONE_NORMAL = 2
    ZONE_HIGHMEM = 3
    ZONE_MOVABLE = 4
    ZONE_DEVICE = 5


#: zone_names[] (mm/page_alloc.c), by ZoneType
ZONE_NAMES = ("DMA", "DMA32", "Normal", "HighMem", "Movable", "Device")


def is_migrate_mergeable(mt: int) -> bool:
    """migratetype_is_mergeable(): the three pcp types may merge with one another."""
    return mt < MIGRATE_PCPTYPES
