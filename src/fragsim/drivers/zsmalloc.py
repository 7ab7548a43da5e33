"""zsmalloc: the compressed-object allocator behind zram. Models mm/zsmalloc.c of Linux 6.1.192.

A pool has 255 size classes (32 .. 4096 bytes, 16 apart). A class stores objects of its size in
*zspages*: chains of 1..4 (ZS_MAX_PAGES_PER_ZSPAGE) order-0 pages allocated one by one, the
first page marked PG_private, every page __SetPageMovable(zsmalloc_mops) once the zspage is set
up. Neighbouring classes with the same (pages_per_zspage, objs_per_zspage) are merged into the
larger one. Each class keeps its zspages on 4 fullness lists (EMPTY, ALMOST_EMPTY, ALMOST_FULL,
FULL; the threshold is 3/4 of the objects)::

    zs_malloc(size): class = size_class[index(size + handle)]
                     zspage = head of ALMOST_FULL, else ALMOST_EMPTY, else EMPTY,
                              else alloc_zspage(gfp)    (pages_per_zspage x alloc_page)
                     take the zspage's first free object; fix its fullness group
    zs_free(handle): push the object on its zspage's free list (LIFO); fix the fullness group;
                     an EMPTY zspage is freed at once (its pages go back to the buddy allocator)
    zs_compact():    per class, highest index first: move objects from ALMOST_EMPTY (else
                     ALMOST_FULL) zspages into ALMOST_FULL (else ALMOST_EMPTY) ones and free the
                     emptied sources, while zs_can_compact() > 0
    page migration:  one subpage at a time (zs_page_isolate / zs_page_migrate / zs_page_putback)

Objects are kept the kernel's way: a handle maps to its location (zspage, obj_idx), the page
it starts on being the subpage ``obj_idx * size >> PAGE_SHIFT`` of the chain; the zspage is
found from a page through page_private (here the page's owner handle in the machine's handle
table, which compaction keeps pointing at the page, so zs_page_migrate's rewrite of the
locations is the core moving the handle). Each zspage records which handle is in each object
slot, so an object is read back (``zs_read``) from where its handle says.

The pool's state is in arrays; zs_malloc, zs_free and __zs_compact are compiled with numba (this
file's own numba cache: its compiled functions use only this file's constants) and run a batch
of objects at a time, returning to Python only to allocate or free a zspage's pages.

SIMPLIFICATION: page locks and the pool lock are not modelled: trylock_zspage always succeeds
(an EMPTY zspage is freed at once, so kick_deferred_free / async_free_zspage never run, and the
EMPTY lists stay empty), spin_is_contended() is always false in __zs_compact, and migration never
waits.
SIMPLIFICATION: a zspage's chain refers to its pages by handle of the machine's table; the core
moves the handle after a successful migration, which is replace_sub_page() for the chain.
SIMPLIFICATION: object contents are not stored, only which object is in which slot.
SIMPLIFICATION: the pool is not NUMA-aware (as in 6.1: zsmalloc's shrinker has no
SHRINKER_NUMA_AWARE): count_objects / scan_objects ignore the node.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MovableDriver, register_driver
from fragsim.errors import AllocatorError, ConfigError, InvariantError
from fragsim.mm._numba import njit
from fragsim.mm.gfp import __GFP_HIGHMEM, __GFP_KSWAPD_RECLAIM, __GFP_MOVABLE, __GFP_NOWARN
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    CompiledPolicy,
    IsolateMode,
    MigrateMode,
    MigrateResult,
    MigrationCost,
    SetPagesMovable,
)
from fragsim.mm.page import Page, PG_isolated, PG_movable, PG_private

__all__ = [
    "FullnessGroup",
    "HUGE_CLASS_SIZE",
    "PAGE_SIZE",
    "SizeClass",
    "ZS_HANDLE_SIZE",
    "ZS_MAX_ALLOC_SIZE",
    "ZS_MAX_PAGES_PER_ZSPAGE",
    "ZS_MIN_ALLOC_SIZE",
    "ZS_SIZE_CLASSES",
    "ZS_SIZE_CLASS_DELTA",
    "ZsPage",
    "ZsPool",
    "get_pages_per_zspage",
    "get_size_class_index",
    "size_class_geometry",
]

#: zram's first zs_malloc gfp (a module name: two leading underscores are mangled in a class)
CONTRACT_GFP = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN | __GFP_HIGHMEM | __GFP_MOVABLE

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
ZS_ALIGN = 8
ZS_MAX_ZSPAGE_ORDER = 2
ZS_MAX_PAGES_PER_ZSPAGE = 1 << ZS_MAX_ZSPAGE_ORDER
ZS_HANDLE_SIZE = 8  # sizeof(unsigned long)
#: x86-64: MAX_PHYSMEM_BITS 46, so OBJ_INDEX_BITS = 64 - (46 - 12) - 1 = 29
OBJ_INDEX_BITS = 64 - (46 - PAGE_SHIFT) - 1
ZS_MIN_ALLOC_SIZE = max(32, (ZS_MAX_PAGES_PER_ZSPAGE << PAGE_SHIFT) >> OBJ_INDEX_BITS)
ZS_MAX_ALLOC_SIZE = PAGE_SIZE
CLASS_BITS = 8
ZS_SIZE_CLASS_DELTA = PAGE_SIZE >> CLASS_BITS
ZS_SIZE_CLASSES = -(-(ZS_MAX_ALLOC_SIZE - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA) + 1
fullness_threshold_frac = 4
DEFAULT_SEEKS = 2


class FullnessGroup(IntEnum):
    """enum fullness_group (mm/zsmalloc.c, 6.1)."""

    ZS_EMPTY = 0
    ZS_ALMOST_EMPTY = 1
    ZS_ALMOST_FULL = 2
    ZS_FULL = 3


ZS_EMPTY, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL, ZS_FULL = (int(g) for g in FullnessGroup)
NR_ZS_FULLNESS = 4
# enum class_stat_type: the fullness groups' zspage counts, then these
OBJ_ALLOCATED = 4
OBJ_USED = 5
NR_ZS_STAT_TYPE = 6


def get_pages_per_zspage(class_size: int) -> int:
    """get_pages_per_zspage() (6.1): the first number of pages (1..4) with the strictly
    largest integer percentage of the zspage used by whole objects."""
    max_usedpc = 0
    max_usedpc_order = 1
    for i in range(1, ZS_MAX_PAGES_PER_ZSPAGE + 1):
        zspage_size = i * PAGE_SIZE
        waste = zspage_size % class_size
        usedpc = (zspage_size - waste) * 100 // zspage_size
        if usedpc > max_usedpc:
            max_usedpc = usedpc
            max_usedpc_order = i
    return max_usedpc_order


def get_size_class_index(size: int) -> int:
    """get_size_class_index() (6.1): the index of the class whose size holds ``size`` (which
    includes the handle's ZS_HANDLE_SIZE bytes)."""
    idx = 0
    if size > ZS_MIN_ALLOC_SIZE:
        idx = -(-(size - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA)
    return min(ZS_SIZE_CLASSES - 1, idx)


# The pool's state is kept in NumPy arrays so that zs_malloc and zs_free run compiled, a batch at
# a time (see the ZsPool docstring). Nodes: the first _NS rows of the node table are list
# sentinels (class c's list l is row c * _NR_LISTS + l), the others are zspages.
_NR_LISTS = NR_ZS_FULLNESS + 1
#: a class's list of zspage records not in use (their object slots are reused by the class)
_RECYCLE = NR_ZS_FULLNESS
_NS = ZS_SIZE_CLASSES * _NR_LISTS
# node table columns
Z_NEXT, Z_PREV, Z_CLS, Z_FG, Z_INUSE, Z_ISOLATED, Z_NFREE, Z_BASE, Z_PAGE = range(9)
_NZ_COLS = Z_PAGE + ZS_MAX_PAGES_PER_ZSPAGE
# object slot columns (rows z_base .. z_base + objs_per_zspage - 1 of a zspage)
O_HANDLE, O_FREE = 0, 1  # the handle at obj_idx (-1: free); the free-object stack
# handle columns
H_Z, H_IDX, H_SIZE = 0, 1, 2
# class table columns (rows by class index; only a real class's row is used)
C_SIZE, C_PAGES, C_OBJS, C_STATS = 0, 1, 2, 3
# scalars
SC_HTOP, SC_NOBJ, SC_PAGES, SC_NZ, SC_NSLOTS, SC_LIMIT, SC_EMPTIED, SC_SUPPLY = range(8)


@njit(inline="always")
def _list_add(zs: Any, new: int, head: int) -> None:
    """list_add(): insert ``new`` right after ``head``."""
    nxt = zs[head, Z_NEXT]
    zs[nxt, Z_PREV] = new
    zs[new, Z_NEXT] = nxt
    zs[new, Z_PREV] = head
    zs[head, Z_NEXT] = new


@njit(inline="always")
def _list_del_init(zs: Any, e: int) -> None:
    zs[zs[e, Z_PREV], Z_NEXT] = zs[e, Z_NEXT]
    zs[zs[e, Z_NEXT], Z_PREV] = zs[e, Z_PREV]
    zs[e, Z_NEXT] = e
    zs[e, Z_PREV] = e


@njit(inline="always")
def _get_fullness_group(cl: Any, zs: Any, z: int) -> int:
    """get_fullness_group() (6.1)."""
    inuse = zs[z, Z_INUSE]
    objs = cl[zs[z, Z_CLS], C_OBJS]
    if inuse == 0:
        return ZS_EMPTY
    if inuse == objs:
        return ZS_FULL
    if inuse <= 3 * objs // fullness_threshold_frac:
        return ZS_ALMOST_EMPTY
    return ZS_ALMOST_FULL


@njit(inline="always")
def _insert_zspage(cl: Any, zs: Any, z: int, fg: int) -> None:
    """insert_zspage() (6.1): at the head of the list, or second if it has fewer objects in use
    than the head."""
    c = zs[z, Z_CLS]
    cl[c, C_STATS + fg] += 1
    sent = c * _NR_LISTS + fg
    head = zs[sent, Z_NEXT]
    if head != sent and zs[z, Z_INUSE] < zs[head, Z_INUSE]:
        _list_add(zs, z, head)
    else:
        _list_add(zs, z, sent)


@njit(inline="always")
def _remove_zspage(cl: Any, zs: Any, z: int, fg: int) -> None:
    """remove_zspage() (6.1)."""
    _list_del_init(zs, z)
    cl[zs[z, Z_CLS], C_STATS + fg] -= 1


@njit(inline="always")
def _fix_fullness_group(cl: Any, zs: Any, z: int) -> int:
    """fix_fullness_group() (6.1): move the zspage to the list of its new group."""
    newfg = _get_fullness_group(cl, zs, z)
    if newfg != zs[z, Z_FG]:
        _remove_zspage(cl, zs, z, zs[z, Z_FG])
        _insert_zspage(cl, zs, z, newfg)
        zs[z, Z_FG] = newfg
    return newfg


@njit(inline="always")
def _find_get_zspage(zs: Any, c: int) -> int:
    """find_get_zspage() (6.1): the head of ALMOST_FULL, ALMOST_EMPTY, then EMPTY; -1."""
    for fg in (ZS_ALMOST_FULL, ZS_ALMOST_EMPTY, ZS_EMPTY):
        sent = c * _NR_LISTS + fg
        if zs[sent, Z_NEXT] != sent:
            return int(zs[sent, Z_NEXT])
    return -1


@njit(inline="always")
def _obj_malloc(zs: Any, ob: Any, hd: Any, z: int, h: int) -> None:
    """obj_malloc() (6.1): the zspage's first free object (the top of its free stack)."""
    base = zs[z, Z_BASE]
    nfree = zs[z, Z_NFREE] - 1
    idx = ob[base + nfree, O_FREE]
    zs[z, Z_NFREE] = nfree
    ob[base + idx, O_HANDLE] = h
    zs[z, Z_INUSE] += 1
    hd[h, H_Z] = z
    hd[h, H_IDX] = idx


@njit(inline="always")
def _obj_free(zs: Any, ob: Any, hd: Any, h: int) -> int:
    """obj_free() (6.1): the object goes on the front of its zspage's free list."""
    z = hd[h, H_Z]
    idx = hd[h, H_IDX]
    base = zs[z, Z_BASE]
    ob[base + idx, O_HANDLE] = -1
    ob[base + zs[z, Z_NFREE], O_FREE] = idx
    zs[z, Z_NFREE] += 1
    zs[z, Z_INUSE] -= 1
    return int(z)


@njit
def _zs_malloc_run(
    cl: Any, zs: Any, ob: Any, hd: Any, hfree: Any, sc: Any, cidx: Any, sizes: Any, out: Any,
    start: int, supply: Any,
) -> int:  # fmt: skip
    """zs_malloc() for objects start.. in turn while each finds a zspage with a free object, or
    the next zspage of ``supply`` (set up ahead, its pages allocated: alloc_zspage) is of its
    class, and a free handle, and (zram's mem_limit, SC_LIMIT > 0) the pool is not over its
    limit; returns the first object it did not store."""
    for i in range(start, cidx.shape[0]):
        c = cidx[i]
        z = _find_get_zspage(zs, c)
        if sc[SC_HTOP] == 0 or (sc[SC_LIMIT] > 0 and sc[SC_PAGES] > sc[SC_LIMIT]):
            return i
        new = False
        if z < 0:
            p = sc[SC_SUPPLY]
            if p >= supply.shape[0] or zs[supply[p], Z_CLS] != c:
                return i
            z = supply[p]
            sc[SC_SUPPLY] = p + 1
            new = True
        sc[SC_HTOP] -= 1
        h = hfree[sc[SC_HTOP]]
        hd[h, H_SIZE] = sizes[i]
        _obj_malloc(zs, ob, hd, z, h)
        if new:  # zs_malloc's new-zspage path: insert_zspage at its group, the counts
            _putback_zspage(cl, zs, z)
            sc[SC_PAGES] += cl[c, C_PAGES]
            cl[c, C_STATS + OBJ_ALLOCATED] += cl[c, C_OBJS]
        else:
            _fix_fullness_group(cl, zs, z)
        cl[c, C_STATS + OBJ_USED] += 1
        sc[SC_NOBJ] += 1
        out[i] = h
    return cidx.shape[0]


@njit
def _zs_free_run(
    cl: Any, zs: Any, ob: Any, hd: Any, hfree: Any, sc: Any, handles: Any, start: int
) -> int:
    """zs_free() of handles start.. in turn; stops after a handle whose zspage became EMPTY
    (the caller frees it) and returns the next index, or the number of handles."""
    for i in range(start, handles.shape[0]):
        h = handles[i]
        z = _obj_free(zs, ob, hd, h)
        cl[zs[z, Z_CLS], C_STATS + OBJ_USED] -= 1
        hd[h, H_Z] = -1
        hd[h, H_IDX] = -1
        hd[h, H_SIZE] = 0
        hfree[sc[SC_HTOP]] = h
        sc[SC_HTOP] += 1
        sc[SC_NOBJ] -= 1
        if _fix_fullness_group(cl, zs, z) == ZS_EMPTY:
            sc[SC_EMPTIED] = z
            return i + 1
    return handles.shape[0]


@njit
def _zs_compact_class(cl: Any, zs: Any, ob: Any, hd: Any, c: int, emptied: Any) -> int:
    """__zs_compact() (6.1) for class ``c``. An emptied source is taken off the EMPTY list and
    its objects off OBJ_ALLOCATED, and written to ``emptied`` (in the order the kernel frees
    them) for the caller to free its pages. Returns how many.

    SIMPLIFICATION: spin_is_contended(&pool->lock) is never true."""
    n_emptied = 0
    objs = cl[c, C_OBJS]
    src = -1
    while True:
        src = _isolate_zspage(cl, zs, c, True)
        if src < 0:
            break
        if _zs_can_compact(cl, c) == 0:
            break
        cursor = 0
        dst = -1
        while True:
            dst = _isolate_zspage(cl, zs, c, False)
            if dst < 0:
                break
            # migrate_zspage(): the source's objects, in order from cursor, until dst is full
            drained = True
            base = zs[src, Z_BASE]
            while cursor < objs:
                h = ob[base + cursor, O_HANDLE]
                if h < 0:
                    cursor += 1
                    continue
                if zs[dst, Z_INUSE] == objs:  # zspage_full()
                    drained = False
                    break
                _obj_free(zs, ob, hd, h)
                _obj_malloc(zs, ob, hd, dst, h)  # zs_object_copy + record_obj
                cursor += 1
            if drained:
                break
            _putback_zspage(cl, zs, dst)
            dst = -1
        if dst < 0:
            break  # no destination
        _putback_zspage(cl, zs, dst)
        if _putback_zspage(cl, zs, src) == ZS_EMPTY:
            # free_zspage(): off the EMPTY list, OBJ_ALLOCATED down (the pages: the caller)
            _remove_zspage(cl, zs, src, ZS_EMPTY)
            cl[c, C_STATS + OBJ_ALLOCATED] -= objs
            emptied[n_emptied] = src
            n_emptied += 1
        src = -1
    if src >= 0:
        _putback_zspage(cl, zs, src)
    return n_emptied


@njit(inline="always")
def _zs_can_compact(cl: Any, c: int) -> int:
    """zs_can_compact() (6.1): pages that moving the wasted objects would free."""
    allocated = cl[c, C_STATS + OBJ_ALLOCATED]
    used = cl[c, C_STATS + OBJ_USED]
    if allocated <= used:
        return 0
    return int((allocated - used) // cl[c, C_OBJS] * cl[c, C_PAGES])


@njit(inline="always")
def _isolate_zspage(cl: Any, zs: Any, c: int, source: bool) -> int:
    """isolate_zspage() (6.1): the head of ALMOST_EMPTY, else ALMOST_FULL (a source), or of
    ALMOST_FULL, else ALMOST_EMPTY (a destination), taken off its list; -1 if none."""
    for k in range(2):
        fg = (
            (ZS_ALMOST_EMPTY if k == 0 else ZS_ALMOST_FULL)
            if source
            else (ZS_ALMOST_FULL if k == 0 else ZS_ALMOST_EMPTY)
        )
        sent = c * _NR_LISTS + fg
        z = zs[sent, Z_NEXT]
        if z != sent:
            _remove_zspage(cl, zs, z, fg)
            return int(z)
    return -1


@njit(inline="always")
def _putback_zspage(cl: Any, zs: Any, z: int) -> int:
    """putback_zspage() (6.1): onto the list of its fullness group; returns the group."""
    fg = _get_fullness_group(cl, zs, z)
    _insert_zspage(cl, zs, z, fg)
    zs[z, Z_FG] = fg
    return fg


@njit
def _call(op: int, cl: Any, zs: Any, c: int, z: int, fg: int) -> int:
    """One list operation on a zspage, for the Python side (0 insert, 1 remove, 2 fix, 3
    isolate a source, 4 isolate a destination, 5 putback, 6 find_get_zspage)."""
    if op == 0:
        _insert_zspage(cl, zs, z, fg)
        return 0
    if op == 1:
        _remove_zspage(cl, zs, z, fg)
        return 0
    if op == 2:
        return _fix_fullness_group(cl, zs, z)
    if op == 3 or op == 4:
        return _isolate_zspage(cl, zs, c, op == 3)
    if op == 5:
        return _putback_zspage(cl, zs, z)
    return _find_get_zspage(zs, c)


class ZsPage:
    """struct zspage (mm/zsmalloc.c, 6.1), as a view of one row of the pool's node table: the
    chain of pages (handles of the machine's table, first page first), the class, the fullness
    group, the count of isolated subpages, the objects in use and the free-object list
    (``freeobj``: its last element is the head). The pool hands out one view per zspage."""

    __slots__ = ("id", "pool")

    def __init__(self, pool: ZsPool, zid: int) -> None:
        self.pool = pool
        self.id = zid

    def _row(self) -> npt.NDArray[np.int64]:
        return self.pool._zs[self.id]

    @property
    def cls(self) -> SizeClass:
        return self.pool.size_class[int(self._row()[Z_CLS])]

    @property
    def fullness(self) -> int:
        return int(self._row()[Z_FG])

    @property
    def inuse(self) -> int:
        return int(self._row()[Z_INUSE])

    @property
    def isolated(self) -> int:
        return int(self._row()[Z_ISOLATED])

    @property
    def pages(self) -> list[int]:
        return [int(h) for h in self._row()[Z_PAGE : Z_PAGE + self.cls.pages_per_zspage]]

    @property
    def objs(self) -> list[int]:
        """obj_idx -> handle of the object allocated there (-1: free)."""
        base = int(self._row()[Z_BASE])
        return [int(h) for h in self.pool._ob[base : base + self.cls.objs_per_zspage, O_HANDLE]]

    @property
    def freeobj(self) -> list[int]:
        row = self._row()
        base = int(row[Z_BASE])
        return [int(i) for i in self.pool._ob[base : base + int(row[Z_NFREE]), O_FREE]]

    def __repr__(self) -> str:
        return f"<ZsPage {self.id} class={self.cls.index} inuse={self.inuse}>"


class SizeClass:
    """struct size_class (mm/zsmalloc.c, 6.1): size, geometry, index (the highest index of the
    classes merged into it) and stats (class_stat_type, a row of the pool's class table; its
    fullness lists are the pool's node-table lists of this index)."""

    __slots__ = ("_cl", "index", "objs_per_zspage", "pages_per_zspage", "size")

    def __init__(
        self, cl: npt.NDArray[np.int64], size: int, index: int, pages: int, objs: int
    ) -> None:
        self._cl = cl
        self.size = size
        self.index = index
        self.pages_per_zspage = pages
        self.objs_per_zspage = objs
        cl[index, C_SIZE] = size
        cl[index, C_PAGES] = pages
        cl[index, C_OBJS] = objs

    @property
    def stats(self) -> list[int]:
        """class_stat_type: the zspages of each fullness group, OBJ_ALLOCATED, OBJ_USED."""
        return [int(v) for v in self._cl[self.index, C_STATS : C_STATS + NR_ZS_STAT_TYPE]]

    def __repr__(self) -> str:
        return (
            f"<SizeClass {self.index} size={self.size} pages={self.pages_per_zspage} "
            f"objs={self.objs_per_zspage}>"
        )


def size_class_geometry() -> tuple[list[tuple[int, int, int, int]], int]:
    """The classes zs_create_pool() (6.1) builds, from the highest index down: for each index,
    (index of the class it uses, size, pages_per_zspage, objs_per_zspage), and huge_class_size:
    the first size, scanning down, with pages_per_zspage != 1 and objs_per_zspage != 1 (6.1's
    test), minus ZS_HANDLE_SIZE - 1."""
    rows: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * ZS_SIZE_CLASSES
    huge_class_size = 0
    prev: tuple[int, int, int, int] | None = None
    for i in range(ZS_SIZE_CLASSES - 1, -1, -1):
        size = min(ZS_MIN_ALLOC_SIZE + i * ZS_SIZE_CLASS_DELTA, ZS_MAX_ALLOC_SIZE)
        pages = get_pages_per_zspage(size)
        objs = pages * PAGE_SIZE // size
        if pages != 1 and objs != 1 and not huge_class_size:
            huge_class_size = size - (ZS_HANDLE_SIZE - 1)
        if prev is not None and prev[2] == pages and prev[3] == objs:  # can_merge()
            rows[i] = prev
            continue
        prev = (i, size, pages, objs)
        rows[i] = prev
    return rows, huge_class_size


_GEOMETRY, HUGE_CLASS_SIZE = size_class_geometry()


@register_driver("zsmalloc")
class ZsPool(MovableDriver):
    """struct zs_pool (mm/zsmalloc.c, 6.1) with zsmalloc_mops: ``zs_malloc`` / ``zs_free`` by
    size, ``zs_compact``, the shrinker (registered at creation, as zs_create_pool does) and the
    debugfs ``classes`` table. ``movable=False`` is a kernel whose zsmalloc pages are unmovable
    (allocated without __GFP_MOVABLE, no movable_operations).

    The state is a set of arrays (a node table of list sentinels and zspages, object slots,
    handles, the class table): zs_malloc of an object that finds a zspage with room, zs_free of
    one that leaves its zspage non-empty and __zs_compact run compiled, a batch at a time;
    allocating and freeing a zspage's pages, and page migration, run in Python. ``ZsPage`` and
    ``SizeClass`` are views of those arrays."""

    #: the shrinker's seeks (zs_register_shrinker: DEFAULT_SEEKS)
    seeks = DEFAULT_SEEKS

    def __init__(
        self,
        machine: Machine,
        *,
        movable: bool = True,
        pool_name: str = "zspool",
        cost: MigrationCost | None = None,
        policy: CompiledPolicy | None = None,
    ) -> None:
        if policy is not None:
            raise ConfigError("zsmalloc: policy is not supported (zs_page_migrate runs in Python)")
        super().__init__(machine, movable=movable, cost=cost, policy=None)
        self.pool_name = pool_name
        self._cl = np.zeros((ZS_SIZE_CLASSES, C_STATS + NR_ZS_STAT_TYPE), np.int64)
        self.size_class: list[SizeClass] = []
        made: dict[int, SizeClass] = {}
        for idx, size, pages, objs in _GEOMETRY:
            if idx not in made:
                made[idx] = SizeClass(self._cl, size, idx, pages, objs)
            self.size_class.append(made[idx])
        #: zs_huge_class_size(): objects this large or larger are stored in a page of their own
        self.huge_class_size = HUGE_CLASS_SIZE
        self.pages_compacted = 0  # pool->stats.pages_compacted
        self.compaction_in_progress = False
        self._zs = np.zeros((_NS + 64, _NZ_COLS), np.int64)
        self._zs[:, Z_NEXT] = self._zs[:, Z_PREV] = np.arange(_NS + 64)
        self._ob = np.full((1024, 2), -1, np.int64)
        self._hd = np.zeros((64, 3), np.int64)
        self._hd[:, :2] = -1
        self._hfree = np.arange(63, -1, -1, dtype=np.int64)
        self._sc = np.zeros(8, np.int64)
        self._supply = np.zeros(0, np.int64)
        self._sc[SC_HTOP] = 64
        self._sc[SC_NZ] = _NS
        #: class index of each size class index (the merged classes' real one)
        self._cls_of = np.array([c.index for c in self.size_class], np.int64)
        #: page_private: machine handle of a subpage -> (its zspage, its index in the chain)
        self._subpage: dict[int, tuple[int, int]] = {}
        self._views: dict[int, ZsPage] = {}
        machine.register_shrinker(self)  # zs_register_shrinker()

    # ------------------------------------------------------------------ counters
    @property
    def pages_allocated(self) -> int:
        """pool->pages_allocated."""
        return int(self._sc[SC_PAGES])

    @property
    def nr_objects(self) -> int:
        return int(self._sc[SC_NOBJ])

    def _view(self, z: int) -> ZsPage:
        v = self._views.get(z)
        if v is None:
            v = self._views[z] = ZsPage(self, z)
        return v

    # ------------------------------------------------------------------ fullness lists
    @staticmethod
    def get_fullness_group(cls: SizeClass, zspage: ZsPage) -> int:
        """get_fullness_group() (6.1)."""
        return int(_get_fullness_group(cls._cl, zspage.pool._zs, zspage.id))

    def insert_zspage(self, cls: SizeClass, zspage: ZsPage, fullness: int) -> None:
        """insert_zspage() (6.1): at the head of the list, or second if it has fewer objects in
        use than the head."""
        _call(0, self._cl, self._zs, cls.index, zspage.id, fullness)

    def remove_zspage(self, cls: SizeClass, zspage: ZsPage, fullness: int) -> None:
        """remove_zspage() (6.1)."""
        _call(1, self._cl, self._zs, cls.index, zspage.id, fullness)

    def fix_fullness_group(self, cls: SizeClass, zspage: ZsPage) -> int:
        """fix_fullness_group() (6.1): move the zspage to the list of its new group."""
        return int(_call(2, self._cl, self._zs, cls.index, zspage.id, 0))

    def find_get_zspage(self, cls: SizeClass) -> ZsPage | None:
        """find_get_zspage() (6.1): the head of ALMOST_FULL, ALMOST_EMPTY, then EMPTY."""
        z = int(_call(6, self._cl, self._zs, cls.index, 0, 0))
        return self._view(z) if z >= 0 else None

    def zspages(self, cls: SizeClass, fullness: int) -> list[ZsPage]:
        """The zspages on one fullness list, head first."""
        sent = cls.index * _NR_LISTS + fullness
        out = []
        z = int(self._zs[sent, Z_NEXT])
        while z != sent:
            out.append(self._view(z))
            z = int(self._zs[z, Z_NEXT])
        return out

    def classes(self) -> list[SizeClass]:
        """The real (unmerged) classes, lowest index first."""
        return [c for i, c in enumerate(self.size_class) if c.index == i]

    # ------------------------------------------------------------------ pages
    def get_zspage(self, pfn: int) -> tuple[ZsPage, int]:
        """get_zspage(page) (page_private): the zspage of a subpage and its index in the chain."""
        info = self._subpage.get(int(self.machine.state.owner[pfn]))
        if info is None or self.pfn(int(self._zs[info[0], Z_PAGE + info[1]])) != pfn:
            raise AllocatorError(f"zsmalloc {self.pool_name}: pfn {pfn:#x} is not a zspage page")
        return self._view(info[0]), info[1]

    def _zone(self, pfn: int) -> int:
        return int(self.machine.state.zoneid[pfn])

    def _new_zspage(self, cls: SizeClass) -> int:
        """A zspage record of the class: a recycled one, else a new row with new object
        slots (the arrays grow by doubling)."""
        rec = cls.index * _NR_LISTS + _RECYCLE
        z = int(self._zs[rec, Z_NEXT])
        if z != rec:
            _list_del_init(self._zs, z)
        else:
            z = int(self._sc[SC_NZ])
            if z == self._zs.shape[0]:
                old = self._zs.shape[0]
                self._zs = np.concatenate([self._zs, np.zeros_like(self._zs)])
                self._zs[old:, Z_NEXT] = self._zs[old:, Z_PREV] = np.arange(old, 2 * old)
            base = int(self._sc[SC_NSLOTS])
            while base + cls.objs_per_zspage > self._ob.shape[0]:
                self._ob = np.concatenate([self._ob, np.full_like(self._ob, -1)])
            self._sc[SC_NZ] += 1
            self._sc[SC_NSLOTS] += cls.objs_per_zspage
            self._zs[z, Z_BASE] = base
        row = self._zs[z]
        row[Z_CLS] = cls.index
        row[Z_FG] = ZS_EMPTY
        row[Z_INUSE] = row[Z_ISOLATED] = 0
        # init_zspage(): objects threaded in index order (the stack's top is object 0)
        n = cls.objs_per_zspage
        base = int(row[Z_BASE])
        row[Z_NFREE] = n
        self._ob[base : base + n, O_HANDLE] = -1
        self._ob[base : base + n, O_FREE] = np.arange(n - 1, -1, -1)
        return z

    def alloc_zspage(self, cls: SizeClass, gfp: int) -> ZsPage | None:
        """alloc_zspage() (6.1): pages_per_zspage order-0 pages with the caller's gfp (one
        batch), NR_ZSPAGES per page, create_page_chain (PG_private on the first page) and
        init_zspage; None (the pages freed again) if one allocation failed."""
        hs = self.alloc_pages(cls.pages_per_zspage, gfp, 0)
        if (hs < 0).any():
            ok = hs[hs >= 0]
            if ok.size:
                self.free_pages(ok)
            return None
        pfns = self.pfns(hs)
        m = self.machine
        for p in pfns:
            m.mod_zone_page_state(self._zone(int(p)), "nr_zspages", 1)
        m.state.flags[pfns[0]] |= PG_private
        z = self._new_zspage(cls)
        self._zs[z, Z_PAGE : Z_PAGE + hs.size] = hs
        for k, h in enumerate(hs):
            self._subpage[int(h)] = (z, k)
        return self._view(z)

    def allocated(self, pfns: npt.NDArray[np.int64]) -> None:
        """The pages become movable only once the zspage is set up (SetZsPageMovable)."""

    def SetZsPageMovable(self, zspage: ZsPage) -> None:  # noqa: N802
        """SetZsPageMovable() (6.1): __SetPageMovable(zsmalloc_mops) on every page."""
        if self.movable:
            SetPagesMovable(self.machine, self.pfns(zspage.pages), self)

    def __free_zspage(self, cls: SizeClass, zspage: ZsPage) -> None:
        """__free_zspage() (6.1): OBJ_ALLOCATED goes down, then the pages (_release)."""
        self._cl[cls.index, C_STATS + OBJ_ALLOCATED] -= cls.objs_per_zspage
        self._release([zspage.id])

    def _release(self, zids: list[int]) -> None:
        """__free_zspage()'s pages (6.1) for zspages, in the order they were freed: reset each
        page (__ClearPageMovable, ClearPagePrivate), NR_ZSPAGES--, put_page, in one batch (the
        callers allocate nothing in between, so the buddy allocator sees the same frees in the
        same order); pages_allocated goes down and the zspage records are recycled."""
        if not zids:
            return
        m = self.machine
        chains = []
        for z in zids:
            cls = self.size_class[int(self._zs[z, Z_CLS])]
            chain = self._zs[z, Z_PAGE : Z_PAGE + cls.pages_per_zspage].copy()
            chains.append(chain)
            for h in chain:
                del self._subpage[int(h)]
            self._sc[SC_PAGES] -= cls.pages_per_zspage
            self._views.pop(z, None)
            _list_add(self._zs, z, cls.index * _NR_LISTS + _RECYCLE)
        pages = np.concatenate(chains)
        pfns = self.pfns(pages)
        zones = m.state.zoneid[pfns].astype(np.int64)
        for zone, n in enumerate(np.bincount(zones)):
            if n:
                m.mod_zone_page_state(zone, "nr_zspages", -int(n))
        m.state.flags[pfns] &= ~PG_private
        self.free_pages(pages)  # reset_page's __ClearPageMovable, then put_page

    def free_zspage(self, cls: SizeClass, zspage: ZsPage) -> None:
        """free_zspage() (6.1): trylock_zspage (always succeeds here), off the EMPTY list,
        __free_zspage."""
        self.remove_zspage(cls, zspage, ZS_EMPTY)
        self.__free_zspage(cls, zspage)

    # ------------------------------------------------------------------ objects
    def _grow_handles(self) -> None:
        """Twice the handles: the new ones go under the free ones, lowest on top."""
        n = self._hd.shape[0]
        top = int(self._sc[SC_HTOP])
        add = np.zeros((n, 3), np.int64)
        add[:, :2] = -1
        self._hd = np.concatenate([self._hd, add])
        self._hfree = np.concatenate(
            [np.arange(2 * n - 1, n - 1, -1), self._hfree[:top], np.zeros(n - top, np.int64)]
        )  # the free handles stay on top
        self._sc[SC_HTOP] = n + top

    def _location(self, z: int, obj_idx: int) -> tuple[int, int]:
        """(pfn of the page the object starts on, its offset in that page)."""
        size = int(self._cl[self._zs[z, Z_CLS], C_SIZE])
        offset = obj_idx * size
        return self.pfn(int(self._zs[z, Z_PAGE + (offset >> PAGE_SHIFT)])), offset & (PAGE_SIZE - 1)

    def class_indexes(self, sizes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """size_class[get_size_class_index(size + ZS_HANDLE_SIZE)].index for each size."""
        x = sizes + ZS_HANDLE_SIZE
        idx = np.where(x > ZS_MIN_ALLOC_SIZE, -(-(x - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA), 0)
        return self._cls_of[np.minimum(idx, ZS_SIZE_CLASSES - 1)]

    def _malloc_slow(self, c: int, size: int, gfp: int) -> int:
        """zs_malloc() of one object in Python: a new zspage or new handles are needed."""
        if self._sc[SC_HTOP] == 0:
            self._grow_handles()
        cls = self.size_class[c]
        self._sc[SC_HTOP] -= 1
        handle = int(self._hfree[self._sc[SC_HTOP]])
        self._hd[handle, H_SIZE] = size
        z = int(_call(6, self._cl, self._zs, c, 0, 0))
        if z >= 0:
            _obj_malloc(self._zs, self._ob, self._hd, z, handle)
            _call(2, self._cl, self._zs, c, z, 0)
        else:
            zspage = self.alloc_zspage(cls, gfp)
            if zspage is None:
                self._hfree[self._sc[SC_HTOP]] = handle
                self._sc[SC_HTOP] += 1
                self._hd[handle, H_SIZE] = 0
                return -1
            z = zspage.id
            _obj_malloc(self._zs, self._ob, self._hd, z, handle)
            _call(5, self._cl, self._zs, c, z, 0)  # insert_zspage at its group
            self._sc[SC_PAGES] += cls.pages_per_zspage
            self._cl[c, C_STATS + OBJ_ALLOCATED] += cls.objs_per_zspage
            self.SetZsPageMovable(zspage)
        self._cl[c, C_STATS + OBJ_USED] += 1
        self._sc[SC_NOBJ] += 1
        return handle

    def _check_sizes(self, s: npt.NDArray[np.int64]) -> None:
        bad = (s <= 0) | (s > ZS_MAX_ALLOC_SIZE)
        if bad.any():
            raise ConfigError(f"zs_malloc: size {int(s[bad][0])} is not in 1..{ZS_MAX_ALLOC_SIZE}")

    def zs_malloc_run(
        self,
        sizes: npt.NDArray[np.int64],
        out: npt.NDArray[np.int64],
        start: int = 0,
        limit_pages: int = 0,
        cidx: npt.NDArray[np.int64] | None = None,
    ) -> int:
        """zs_malloc() (6.1) of ``sizes[start:]`` in turn into ``out``, compiled, while each
        object finds room in a zspage (no page allocation) and the pool is not over
        ``limit_pages`` (> 0); returns the index of the first object not stored
        (``sizes.size``: all). ``zs_malloc`` stores that one; zram's write path applies its
        retry and mem_limit rules to it. ``cidx``: the sizes' class indexes
        (``class_indexes``), when the caller has them."""
        if self._sc[SC_HTOP] == 0:
            self._grow_handles()
        self._sc[SC_LIMIT] = limit_pages
        return int(
            _zs_malloc_run(
                self._cl, self._zs, self._ob, self._hd, self._hfree, self._sc,
                self.class_indexes(sizes) if cidx is None else cidx, sizes, out, start,
                self._supply,
            )
        )  # fmt: skip

    def prefill(self, cidx: npt.NDArray[np.int64], gfp: int) -> None:
        """Allocate ahead, in one batch, the zspages that zs_malloc of objects of classes
        ``cidx`` (in that order) will create, and set them up (alloc_zspage, 6.1): the same
        page allocations in the same order as one zspage at a time, since nothing else
        allocates between them. Only when no allocation can fail
        (``Machine.order0_headroom``): a failure would be answered per zspage (zram's retry
        with another gfp), which a batch cannot do. ``zs_malloc_run`` then takes them in
        order (and ``finish_prefill`` marks their pages movable)."""
        free = self._cl[:, C_STATS + OBJ_ALLOCATED] - self._cl[:, C_STATS + OBJ_USED]
        objs = self._cl[:, C_OBJS]
        need: list[int] = []
        for c in cidx.tolist():
            if free[c] == 0:
                need.append(c)
                free[c] += objs[c]
            free[c] -= 1
        if not need:
            return
        pages = self._cl[need, C_PAGES]
        total = int(pages.sum())
        if self.machine.order0_headroom() < total + 64:
            return
        while int(self._sc[SC_HTOP]) < cidx.size:
            self._grow_handles()
        hs = self.alloc_pages(total, gfp, 0)
        if (hs < 0).any():  # cannot happen with that headroom; give them back, go one by one
            self.free_pages(hs[hs >= 0])
            return
        pfns = self.pfns(hs)
        m = self.machine
        zones = m.state.zoneid[pfns].astype(np.int64)
        for zone, n in enumerate(np.bincount(zones)):
            if n:
                m.mod_zone_page_state(zone, "nr_zspages", int(n))
        starts = np.concatenate([[0], np.cumsum(pages)[:-1]])
        m.state.flags[pfns[starts]] |= PG_private
        supply = np.empty(len(need), np.int64)
        for k, (c, at, n) in enumerate(zip(need, starts.tolist(), pages.tolist(), strict=True)):
            z = self._new_zspage(self.size_class[c])
            chain = hs[at : at + n]
            self._zs[z, Z_PAGE : Z_PAGE + n] = chain
            for j, h in enumerate(chain.tolist()):
                self._subpage[h] = (z, j)
            supply[k] = z
        self._supply = supply
        self._sc[SC_SUPPLY] = 0

    def finish_prefill(self) -> None:
        """After the objects of a ``prefill``: every zspage taken, SetZsPageMovable on their
        pages. A zspage not taken is a bug of the prediction."""
        if not self._supply.size:
            return
        if int(self._sc[SC_SUPPLY]) != self._supply.size:
            raise InvariantError(
                f"zsmalloc {self.pool_name}: {self._supply.size - int(self._sc[SC_SUPPLY])} "
                "zspages allocated ahead were not used"
            )
        if self.movable:
            chains = [
                self._zs[z, Z_PAGE : Z_PAGE + int(self._cl[self._zs[z, Z_CLS], C_PAGES])]
                for z in self._supply.tolist()
            ]
            SetPagesMovable(self.machine, self.pfns(np.concatenate(chains)), self)
        self._supply = np.zeros(0, np.int64)
        self._sc[SC_SUPPLY] = 0

    def zs_malloc(self, size: int, gfp: int) -> int:
        """zs_malloc() (6.1): a handle for an object of ``size`` bytes (1..PAGE_SIZE), -1 if a
        new zspage was needed and its pages could not be allocated (-ENOMEM)."""
        s = np.array([size], np.int64)
        self._check_sizes(s)
        return self._malloc_slow(int(self.class_indexes(s)[0]), size, gfp)

    def zs_malloc_batch(self, sizes: npt.ArrayLike, gfp: int) -> npt.NDArray[np.int64]:
        """zs_malloc() for each size in turn (the kernel's order); handles, -1 where it failed."""
        s = np.asarray(sizes, np.int64).reshape(-1)
        self._check_sizes(s)
        out = np.full(s.size, -1, np.int64)
        cidx = self.class_indexes(s)
        self.prefill(cidx, gfp)
        i = 0
        while (i := self.zs_malloc_run(s, out, i, 0, cidx)) < s.size:
            out[i] = self._malloc_slow(int(cidx[i]), int(s[i]), gfp)
            i += 1
        self.finish_prefill()
        return out

    def _check_handles(self, h: npt.NDArray[np.int64]) -> None:
        bad = (h < 0) | (h >= self._hd.shape[0])
        bad[~bad] = self._hd[h[~bad], H_Z] < 0
        if bad.any():
            raise AllocatorError(
                f"zsmalloc {self.pool_name}: handle {int(h[bad][0])} is not allocated"
            )
        if np.unique(h).size != h.size:
            raise AllocatorError(f"zsmalloc {self.pool_name}: a handle is freed twice")

    def zs_free(self, handle: int) -> None:
        """zs_free() (6.1): free the object; a zspage left EMPTY is freed."""
        self.zs_free_batch([handle])

    def zs_free_batch(self, handles: npt.ArrayLike) -> None:
        """zs_free() for each handle in turn (compiled); the emptied zspages' pages are freed
        after the batch, in the order they emptied."""
        h = np.asarray(handles, np.int64).reshape(-1)
        self._check_handles(h)
        i = 0
        emptied: list[int] = []
        while i < h.size:
            self._sc[SC_EMPTIED] = -1
            i = int(
                _zs_free_run(self._cl, self._zs, self._ob, self._hd, self._hfree, self._sc, h, i)
            )
            z = int(self._sc[SC_EMPTIED])
            if z >= 0:  # free_zspage(): off the EMPTY list, OBJ_ALLOCATED down, then the pages
                c = int(self._zs[z, Z_CLS])
                _call(1, self._cl, self._zs, c, z, ZS_EMPTY)
                self._cl[c, C_STATS + OBJ_ALLOCATED] -= self.size_class[c].objs_per_zspage
                emptied.append(z)
        self._release(emptied)

    def zs_get_total_pages(self) -> int:
        """zs_get_total_pages() (6.1): pages held by the pool."""
        return self.pages_allocated

    def zs_huge_class_size(self) -> int:
        return self.huge_class_size

    def zs_obj_location(self, handle: int) -> tuple[int, int]:
        """handle_to_obj + obj_to_location: (pfn, obj_idx) of an allocated object."""
        self._check_handles(np.array([handle], np.int64))
        z, idx = int(self._hd[handle, H_Z]), int(self._hd[handle, H_IDX])
        return self._location(z, idx)[0], idx

    def zs_read(self, handle: int) -> int:
        """zs_map_object(ZS_MM_RO) of the object: read it at the location its handle records;
        returns its size. Raises InvariantError if the page there does not hold it."""
        pfn, obj_idx = self.zs_obj_location(handle)
        zspage, _ = self.get_zspage(pfn)
        base = int(self._zs[zspage.id, Z_BASE])
        if self._ob[base + obj_idx, O_HANDLE] != handle:
            raise InvariantError(
                f"zsmalloc {self.pool_name}: object {handle} is not at pfn {pfn:#x} "
                f"object {obj_idx}"
            )
        return int(self._hd[handle, H_SIZE])

    def live_handles(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self._hd[:, H_Z] >= 0).astype(np.int64)

    def _objects_on(self, z: int, k: int) -> list[int]:
        """The handles of the objects that start on subpage ``k`` of zspage ``z``."""
        c = int(self._zs[z, Z_CLS])
        size, n = int(self._cl[c, C_SIZE]), int(self._cl[c, C_OBJS])
        base = int(self._zs[z, Z_BASE])
        first = -(-k * PAGE_SIZE // size)
        last = min(n, -(-(k + 1) * PAGE_SIZE // size))
        hs = self._ob[base + first : base + last, O_HANDLE]
        return [int(h) for h in hs if h >= 0]

    # ------------------------------------------------------------------ zsmalloc_mops
    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        """zs_page_isolate() (6.1): always true; zspage->isolated++."""
        zspage, _ = self.get_zspage(page.pfn)
        self._zs[zspage.id, Z_ISOLATED] += 1
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        """zs_page_migrate() (6.1): -EINVAL for MIGRATE_SYNC_NO_COPY; else copy the page,
        rewrite the location of every allocated object starting on it (here the location is
        the subpage's handle, which the core moves to the new page), replace the subpage in the
        chain (PG_private if it is the first), isolated--, move NR_ZSPAGES if the zone differs,
        then get_page(newpage), reset and put the old page."""
        if mode == MigrateMode.MIGRATE_SYNC_NO_COPY:
            return MigrateResult.EINVAL
        m = self.machine
        zspage, k = self.get_zspage(src.pfn)
        if k == 0:
            # create_page_chain(): SetPagePrivate(first page). The old page keeps its flag:
            # the core copies the source's flags to the destination after this callback, and
            # the old page's flags are reset when it is freed.
            m.state.flags[dst.pfn] |= PG_private
        self._zs[zspage.id, Z_ISOLATED] -= 1
        if self._zone(dst.pfn) != self._zone(src.pfn):
            m.mod_zone_page_state(self._zone(src.pfn), "nr_zspages", -1)
            m.mod_zone_page_state(self._zone(dst.pfn), "nr_zspages", 1)
        return super().migrate_page(dst, src, mode)

    def putback_page(self, page: Page) -> None:
        """zs_page_putback() (6.1): isolated--."""
        zspage, _ = self.get_zspage(page.pfn)
        self._zs[zspage.id, Z_ISOLATED] -= 1

    # ------------------------------------------------------------------ compaction
    def zs_can_compact(self, cls: SizeClass) -> int:
        """zs_can_compact() (6.1): pages that moving the wasted objects would free."""
        return int(_zs_can_compact(self._cl, cls.index))

    def isolate_zspage(self, cls: SizeClass, source: bool) -> ZsPage | None:
        """isolate_zspage() (6.1): take the head of ALMOST_EMPTY, else ALMOST_FULL (a source),
        or of ALMOST_FULL, else ALMOST_EMPTY (a destination), off its list."""
        z = int(_call(3 if source else 4, self._cl, self._zs, cls.index, 0, 0))
        return self._view(z) if z >= 0 else None

    def putback_zspage(self, cls: SizeClass, zspage: ZsPage) -> int:
        """putback_zspage() (6.1): onto the list of its fullness group; returns the group."""
        return int(_call(5, self._cl, self._zs, cls.index, zspage.id, 0))

    def __zs_compact(self, cls: SizeClass) -> int:
        """__zs_compact() (6.1) for one class (compiled), then free_zspage of the emptied
        sources; returns the pages freed."""
        emptied = np.zeros(int(self._cl[cls.index, C_STATS : C_STATS + 4].sum()) + 1, np.int64)
        n = int(_zs_compact_class(self._cl, self._zs, self._ob, self._hd, cls.index, emptied))
        self._release([int(z) for z in emptied[:n]])
        return n * cls.pages_per_zspage

    def zs_compact(self) -> int:
        """zs_compact() (6.1): every class from the highest index down; returns the pages freed
        and adds them to pages_compacted. A call while one runs returns 0."""
        if self.compaction_in_progress:
            return 0
        self.compaction_in_progress = True
        try:
            pages_freed = 0
            for i in range(ZS_SIZE_CLASSES - 1, -1, -1):
                cls = self.size_class[i]
                if cls.index != i:
                    continue
                pages_freed += self.__zs_compact(cls)
            self.pages_compacted += pages_freed
        finally:
            self.compaction_in_progress = False
        return pages_freed

    # ------------------------------------------------------------------ the shrinker
    def count_objects(self, nid: int = 0) -> int:
        """zs_shrinker_count() (6.1): the sum of zs_can_compact over the classes."""
        cl = self._cl
        allocated = cl[:, C_STATS + OBJ_ALLOCATED]
        used = cl[:, C_STATS + OBJ_USED]
        objs = np.maximum(cl[:, C_OBJS], 1)
        waste = np.maximum(allocated - used, 0)
        return int((waste // objs * cl[:, C_PAGES]).sum())

    def scan_objects(self, nid: int = 0, nr_to_scan: int = 0) -> int:
        """zs_shrinker_scan() (6.1): zs_compact(); the pages freed (0 is SHRINK_STOP)."""
        return self.zs_compact()

    # ------------------------------------------------------------------ debugfs
    def classes_show(self) -> str:
        """/sys/kernel/debug/zsmalloc/<pool>/classes (zs_stats_size_show, 6.1)."""
        out = [
            " %5s %5s %11s %12s %13s %10s %10s %16s %8s\n"  # noqa: UP031 (kernel printf)
            % (
                "class",
                "size",
                "almost_full",
                "almost_empty",
                "obj_allocated",
                "obj_used",
                "pages_used",
                "pages_per_zspage",
                "freeable",
            )
        ]
        tot = [0] * 6
        for i, cls in enumerate(self.size_class):
            if cls.index != i:
                continue
            af = cls.stats[ZS_ALMOST_FULL]
            ae = cls.stats[ZS_ALMOST_EMPTY]
            alloc = cls.stats[OBJ_ALLOCATED]
            used = cls.stats[OBJ_USED]
            freeable = self.zs_can_compact(cls)
            pages_used = alloc // cls.objs_per_zspage * cls.pages_per_zspage
            out.append(
                " %5u %5u %11u %12u %13u %10u %10u %16d %8u\n"  # noqa: UP031 (kernel printf)
                % (i, cls.size, af, ae, alloc, used, pages_used, cls.pages_per_zspage, freeable)
            )
            for j, v in enumerate((af, ae, alloc, used, pages_used, freeable)):
                tot[j] += v
        out.append("\n")
        out.append(
            " %5s %5s %11u %12u %13u %10u %10u %16s %8u\n"  # noqa: UP031 (kernel printf)
            % ("Total", "", tot[0], tot[1], tot[2], tot[3], tot[4], "", tot[5])
        )
        return "".join(out)

    # ------------------------------------------------------------------ consistency
    def check(self) -> None:
        """Check the pool against itself and the machine: every object where its handle says,
        lists and stats consistent, pages allocated, owned, marked and counted. Raises
        InvariantError."""
        m = self.machine
        st = m.state
        zs, hd = self._zs, self._hd

        def fail(msg: str) -> None:
            raise InvariantError(f"zsmalloc {self.pool_name}: {msg}")

        pages = 0
        seen: set[int] = set()
        for cls in self.classes():
            allocated = used = 0
            for fg in range(NR_ZS_FULLNESS):
                zl = self.zspages(cls, fg)
                if len(zl) != cls.stats[fg]:
                    fail(f"class {cls.index}: {len(zl)} zspages on list {fg}, stat {cls.stats[fg]}")
                for z in zl:
                    row = zs[z.id]
                    if row[Z_CLS] != cls.index or row[Z_FG] != fg:
                        fail(f"class {cls.index}: zspage on the wrong list")
                    if self.get_fullness_group(cls, z) != fg:
                        fail(f"class {cls.index}: zspage with {z.inuse} objects on list {fg}")
                    objs = z.objs
                    free = sorted(i for i, h in enumerate(objs) if h < 0)
                    if len(objs) - len(free) != z.inuse or free != sorted(z.freeobj):
                        fail(f"class {cls.index}: zspage inuse/free list out of step")
                    if not 0 <= z.isolated <= cls.pages_per_zspage:
                        fail(f"class {cls.index}: zspage isolated count {z.isolated}")
                    pfns = self.pfns(z.pages)
                    if not st.flags[pfns[0]] & PG_private:
                        fail(f"first page {int(pfns[0]):#x} has no PG_private")
                    nr_iso = 0
                    for k, (h, p) in enumerate(zip(z.pages, pfns, strict=True)):
                        p = int(p)
                        if st.refcount[p] <= 0 or int(st.owner[p]) != h:
                            fail(f"page {p:#x} is not allocated to the pool")
                        if self._subpage.get(h) != (z.id, k):
                            fail(f"page {p:#x}: page_private out of step")
                        movable = bool(st.flags[p] & PG_movable) and st.mops[p] > 0
                        if movable != self.movable:
                            fail(f"page {p:#x}: movable is {movable}")
                        nr_iso += bool(st.flags[p] & PG_isolated)
                    if nr_iso != z.isolated:
                        fail(f"zspage with {nr_iso} isolated pages counts {z.isolated}")
                    for i, h in enumerate(objs):
                        if h < 0:
                            continue
                        if h in seen:
                            fail(f"object {h} twice")
                        seen.add(h)
                        if hd[h, H_Z] != z.id or hd[h, H_IDX] != i:
                            fail(f"object {h}: location out of step")
                        self.zs_read(h)
                    allocated += cls.objs_per_zspage
                    used += z.inuse
                    pages += cls.pages_per_zspage
            if (allocated, used) != tuple(cls.stats[OBJ_ALLOCATED:]):
                fail(f"class {cls.index}: object stats out of step")
        if pages != self.pages_allocated or len(seen) != self.nr_objects:
            fail("pages_allocated or the object count out of step")
        if len(self._subpage) != pages:
            fail("page_private of freed pages left behind")
        if set(int(h) for h in self.live_handles()) != seen:
            fail("a live handle is on no zspage")
        top = int(self._sc[SC_HTOP])
        if set(int(h) for h in self._hfree[:top]) != set(
            int(h) for h in np.flatnonzero(hd[:, H_Z] < 0)
        ) or top != hd.shape[0] - len(seen):
            fail("the free handles are out of step")
        return None

    # ------------------------------------------------------------------ the contract suite's hook
    @classmethod
    def contract_instance(cls, machine: Machine, movable: bool) -> ZsPool:
        """tests/drivers/test_contract.py: a pool with the seed's switch."""
        return cls(machine, movable=movable)

    @classmethod
    def contract_fill(cls, driver: MovableDriver, n_pages: int) -> npt.NDArray[np.int64]:
        """Store ``n_pages`` incompressible pages (PAGE_SIZE objects: the huge class, one
        single-page zspage each) the way zram does; returns the subpages' machine handles."""
        assert isinstance(driver, ZsPool)
        before = set(driver._subpage)
        driver.zs_malloc_batch(np.full(n_pages, ZS_MAX_ALLOC_SIZE), CONTRACT_GFP)
        return np.array(sorted(set(driver._subpage) - before), np.int64)

    @classmethod
    def contract_free(cls, driver: MovableDriver, handles: npt.ArrayLike) -> None:
        """zs_free() every object that starts on the subpages held under ``handles``."""
        assert isinstance(driver, ZsPool)
        for h in np.asarray(handles, np.int64).reshape(-1):
            info = driver._subpage.get(int(h))
            if info is not None:
                objs = driver._objects_on(*info)
                if objs:
                    driver.zs_free_batch(objs)

    def __repr__(self) -> str:
        return (
            f"<ZsPool {self.pool_name} movable={self.movable} objects={self.nr_objects} "
            f"pages={self.pages_allocated}>"
        )
