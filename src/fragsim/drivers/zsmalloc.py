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

Objects are kept the kernel's way: a handle maps to an encoded location (pfn, obj_idx), which
zs_page_migrate rewrites; the zspage is found from the page (page_private: here the page's owner
handle in the machine's handle table, which compaction keeps pointing at the page). Page
contents are modelled as which object starts at which offset of which pfn, so a moved object is
read back from its new page (``zs_read``).

SIMPLIFICATION: page locks and the pool lock are not modelled: trylock_zspage always succeeds
(an EMPTY zspage is freed at once, so kick_deferred_free / async_free_zspage never run, and the
EMPTY lists stay empty), spin_is_contended() is always false in __zs_compact, and migration never
waits.
SIMPLIFICATION: a zspage's chain refers to its pages by handle of the machine's table; the core
moves the handle after a successful migration, which is replace_sub_page() for the chain.
SIMPLIFICATION: object contents are not stored, only which object starts where (enough to read an
object back from the page its handle points at).
SIMPLIFICATION: the pool is not NUMA-aware (as in 6.1: zsmalloc's shrinker has no
SHRINKER_NUMA_AWARE): count_objects / scan_objects ignore the node.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MovableDriver, register_driver
from fragsim.errors import AllocatorError, ConfigError, InvariantError
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


class _ListHead:
    """struct list_head: an intrusive circular doubly linked list (a sentinel or an entry)."""

    __slots__ = ("next", "prev")

    def __init__(self) -> None:
        self.next: _ListHead = self
        self.prev: _ListHead = self


def _list_add(new: _ListHead, head: _ListHead) -> None:
    """list_add(): insert ``new`` right after ``head``."""
    nxt = head.next
    nxt.prev = new
    new.next = nxt
    new.prev = head
    head.next = new


def _list_del_init(entry: _ListHead) -> None:
    entry.prev.next = entry.next
    entry.next.prev = entry.prev
    entry.next = entry.prev = entry


def _list_entries(head: _ListHead) -> list[ZsPage]:
    out: list[ZsPage] = []
    e = head.next
    while e is not head:
        assert isinstance(e, ZsPage)
        out.append(e)
        e = e.next
    return out


class ZsPage(_ListHead):
    """struct zspage (mm/zsmalloc.c, 6.1): the chain of pages (handles of the machine's table,
    first page first), the class, the fullness group, the count of isolated subpages, the
    objects in use and the free-object list (``freeobj``: its last element is the head)."""

    __slots__ = ("cls", "fullness", "freeobj", "huge", "inuse", "isolated", "objs", "pages")

    def __init__(self, cls: SizeClass, pages: list[int]) -> None:
        super().__init__()
        self.cls = cls
        self.pages = pages
        self.huge = cls.objs_per_zspage == 1 and cls.pages_per_zspage == 1
        self.fullness = ZS_EMPTY
        self.isolated = 0
        self.inuse = 0
        #: obj_idx -> handle of the object allocated there (-1: free)
        self.objs = [-1] * cls.objs_per_zspage
        #: init_zspage(): objects threaded in index order (the head is the last element)
        self.freeobj = list(range(cls.objs_per_zspage - 1, -1, -1))


class SizeClass:
    """struct size_class (mm/zsmalloc.c, 6.1): size, geometry, index (the highest index of the
    classes merged into it), fullness lists and stats (class_stat_type)."""

    __slots__ = ("fullness_list", "index", "objs_per_zspage", "pages_per_zspage", "size", "stats")

    def __init__(self, size: int, index: int, pages_per_zspage: int, objs_per_zspage: int):
        self.size = size
        self.index = index
        self.pages_per_zspage = pages_per_zspage
        self.objs_per_zspage = objs_per_zspage
        self.fullness_list = [_ListHead() for _ in range(NR_ZS_FULLNESS)]
        self.stats = [0] * NR_ZS_STAT_TYPE

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
    (allocated without __GFP_MOVABLE, no movable_operations)."""

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
        self.size_class: list[SizeClass] = []
        made: dict[int, SizeClass] = {}
        for _i, (idx, size, pages, objs) in enumerate(_GEOMETRY):
            if idx not in made:
                made[idx] = SizeClass(size, idx, pages, objs)
            self.size_class.append(made[idx])
        #: zs_huge_class_size(): objects this large or larger are stored in a page of their own
        self.huge_class_size = HUGE_CLASS_SIZE
        self.pages_allocated = 0  # pool->pages_allocated
        self.pages_compacted = 0  # pool->stats.pages_compacted
        self.compaction_in_progress = False
        # objects: handle -> encoded location (pfn, obj_idx), and the size asked for
        self._obj_pfn = np.full(64, -1, np.int64)
        self._obj_idx = np.full(64, -1, np.int32)
        self._obj_size = np.zeros(64, np.int32)
        self._free_handles: list[int] = list(range(63, -1, -1))
        self.nr_objects = 0
        #: page_private: machine handle of a subpage -> (its zspage, its index in the chain)
        self._subpage: dict[int, tuple[ZsPage, int]] = {}
        #: the pages' contents: pfn -> {offset in the page: handle of the object starting there}
        self._contents: dict[int, dict[int, int]] = {}
        machine.register_shrinker(self)  # zs_register_shrinker()

    # ------------------------------------------------------------------ fullness lists
    @staticmethod
    def get_fullness_group(cls: SizeClass, zspage: ZsPage) -> int:
        """get_fullness_group() (6.1)."""
        inuse = zspage.inuse
        objs = cls.objs_per_zspage
        if inuse == 0:
            return ZS_EMPTY
        if inuse == objs:
            return ZS_FULL
        if inuse <= 3 * objs // fullness_threshold_frac:
            return ZS_ALMOST_EMPTY
        return ZS_ALMOST_FULL

    @staticmethod
    def insert_zspage(cls: SizeClass, zspage: ZsPage, fullness: int) -> None:
        """insert_zspage() (6.1): at the head of the list, or second if it has fewer objects in
        use than the head."""
        cls.stats[fullness] += 1
        head_list = cls.fullness_list[fullness]
        head = head_list.next
        if head is not head_list:
            assert isinstance(head, ZsPage)
            if zspage.inuse < head.inuse:
                _list_add(zspage, head)
                return
        _list_add(zspage, head_list)

    @staticmethod
    def remove_zspage(cls: SizeClass, zspage: ZsPage, fullness: int) -> None:
        """remove_zspage() (6.1)."""
        _list_del_init(zspage)
        cls.stats[fullness] -= 1

    def fix_fullness_group(self, cls: SizeClass, zspage: ZsPage) -> int:
        """fix_fullness_group() (6.1): move the zspage to the list of its new group."""
        newfg = self.get_fullness_group(cls, zspage)
        if newfg != zspage.fullness:
            self.remove_zspage(cls, zspage, zspage.fullness)
            self.insert_zspage(cls, zspage, newfg)
            zspage.fullness = newfg
        return newfg

    @staticmethod
    def find_get_zspage(cls: SizeClass) -> ZsPage | None:
        """find_get_zspage() (6.1): the head of ALMOST_FULL, ALMOST_EMPTY, then EMPTY."""
        for fg in (ZS_ALMOST_FULL, ZS_ALMOST_EMPTY, ZS_EMPTY):
            head = cls.fullness_list[fg]
            if head.next is not head:
                z = head.next
                assert isinstance(z, ZsPage)
                return z
        return None

    def zspages(self, cls: SizeClass, fullness: int) -> list[ZsPage]:
        """The zspages on one fullness list, head first."""
        return _list_entries(cls.fullness_list[fullness])

    def classes(self) -> list[SizeClass]:
        """The real (unmerged) classes, lowest index first."""
        return [c for i, c in enumerate(self.size_class) if c.index == i]

    # ------------------------------------------------------------------ pages
    def get_zspage(self, pfn: int) -> tuple[ZsPage, int]:
        """get_zspage(page) (page_private): the zspage of a subpage and its index in the chain."""
        info = self._subpage.get(int(self.machine.state.owner[pfn]))
        if info is None or self.pfn(info[0].pages[info[1]]) != pfn:
            raise AllocatorError(f"zsmalloc {self.pool_name}: pfn {pfn:#x} is not a zspage page")
        return info

    def _zone(self, pfn: int) -> int:
        return int(self.machine.state.zoneid[pfn])

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
        zspage = ZsPage(cls, [int(h) for h in hs])
        for k, h in enumerate(zspage.pages):
            self._subpage[h] = (zspage, k)
        return zspage

    def allocated(self, pfns: npt.NDArray[np.int64]) -> None:
        """The pages become movable only once the zspage is set up (SetZsPageMovable)."""

    def SetZsPageMovable(self, zspage: ZsPage) -> None:  # noqa: N802
        """SetZsPageMovable() (6.1): __SetPageMovable(zsmalloc_mops) on every page."""
        if self.movable:
            SetPagesMovable(self.machine, self.pfns(zspage.pages), self)

    def __free_zspage(self, cls: SizeClass, zspage: ZsPage) -> None:
        """__free_zspage() (6.1): reset each page (__ClearPageMovable, ClearPagePrivate),
        NR_ZSPAGES--, put_page; OBJ_ALLOCATED and pages_allocated go down."""
        m = self.machine
        pfns = self.pfns(zspage.pages)
        for p in pfns:
            m.mod_zone_page_state(self._zone(int(p)), "nr_zspages", -1)
            self._contents.pop(int(p), None)
        m.state.flags[pfns] &= ~PG_private
        for h in zspage.pages:
            del self._subpage[h]
        self.free_pages(zspage.pages)  # reset_page's __ClearPageMovable, then put_page
        cls.stats[OBJ_ALLOCATED] -= cls.objs_per_zspage
        self.pages_allocated -= cls.pages_per_zspage

    def free_zspage(self, cls: SizeClass, zspage: ZsPage) -> None:
        """free_zspage() (6.1): trylock_zspage (always succeeds here), off the EMPTY list,
        __free_zspage."""
        self.remove_zspage(cls, zspage, ZS_EMPTY)
        self.__free_zspage(cls, zspage)

    # ------------------------------------------------------------------ objects
    def _new_handle(self) -> int:
        if not self._free_handles:
            n = self._obj_pfn.shape[0]
            self._obj_pfn = np.concatenate([self._obj_pfn, np.full(n, -1, np.int64)])
            self._obj_idx = np.concatenate([self._obj_idx, np.full(n, -1, np.int32)])
            self._obj_size = np.concatenate([self._obj_size, np.zeros(n, np.int32)])
            self._free_handles = list(range(2 * n - 1, n - 1, -1))
        return self._free_handles.pop()

    def _location(self, cls: SizeClass, zspage: ZsPage, obj_idx: int) -> tuple[int, int]:
        """(pfn of the page the object starts on, its offset in that page)."""
        offset = obj_idx * cls.size
        return self.pfn(zspage.pages[offset >> PAGE_SHIFT]), offset & (PAGE_SIZE - 1)

    def obj_malloc(self, zspage: ZsPage, handle: int) -> None:
        """obj_malloc() (6.1): take the zspage's first free object for ``handle`` and record
        its location (pfn, obj_idx)."""
        cls = zspage.cls
        obj_idx = zspage.freeobj.pop()
        zspage.objs[obj_idx] = handle
        zspage.inuse += 1
        pfn, off = self._location(cls, zspage, obj_idx)
        self._contents.setdefault(pfn, {})[off] = handle
        self._obj_pfn[handle] = pfn
        self._obj_idx[handle] = obj_idx

    def obj_free(self, handle: int) -> ZsPage:
        """obj_free() (6.1): the object goes on the front of its zspage's free list."""
        pfn = int(self._obj_pfn[handle])
        obj_idx = int(self._obj_idx[handle])
        zspage, _ = self.get_zspage(pfn)
        off = (obj_idx * zspage.cls.size) & (PAGE_SIZE - 1)
        del self._contents[pfn][off]
        zspage.objs[obj_idx] = -1
        zspage.freeobj.append(obj_idx)
        zspage.inuse -= 1
        return zspage

    def zs_malloc(self, size: int, gfp: int) -> int:
        """zs_malloc() (6.1): a handle for an object of ``size`` bytes (1..PAGE_SIZE), -1 if a
        new zspage was needed and its pages could not be allocated (-ENOMEM)."""
        if not 0 < size <= ZS_MAX_ALLOC_SIZE:
            raise ConfigError(f"zs_malloc: size {size} is not in 1..{ZS_MAX_ALLOC_SIZE}")
        cls = self.size_class[get_size_class_index(size + ZS_HANDLE_SIZE)]
        handle = self._new_handle()
        self._obj_size[handle] = size
        zspage = self.find_get_zspage(cls)
        if zspage is not None:
            self.obj_malloc(zspage, handle)
            self.fix_fullness_group(cls, zspage)
            cls.stats[OBJ_USED] += 1
        else:
            zspage = self.alloc_zspage(cls, gfp)
            if zspage is None:
                self._free_handles.append(handle)
                return -1
            self.obj_malloc(zspage, handle)
            newfg = self.get_fullness_group(cls, zspage)
            self.insert_zspage(cls, zspage, newfg)
            zspage.fullness = newfg
            self.pages_allocated += cls.pages_per_zspage
            cls.stats[OBJ_ALLOCATED] += cls.objs_per_zspage
            cls.stats[OBJ_USED] += 1
            self.SetZsPageMovable(zspage)
        self.nr_objects += 1
        return handle

    def zs_malloc_batch(self, sizes: npt.ArrayLike, gfp: int) -> npt.NDArray[np.int64]:
        """zs_malloc() for each size in turn (the kernel's order); handles, -1 where it failed."""
        s = np.asarray(sizes, np.int64).reshape(-1)
        bad = (s <= 0) | (s > ZS_MAX_ALLOC_SIZE)
        if bad.any():
            raise ConfigError(f"zs_malloc: size {int(s[bad][0])} is not in 1..{ZS_MAX_ALLOC_SIZE}")
        return np.array([self.zs_malloc(int(x), gfp) for x in s], np.int64)

    def _check_handle(self, handle: int) -> None:
        if not 0 <= handle < self._obj_pfn.shape[0] or self._obj_pfn[handle] < 0:
            raise AllocatorError(f"zsmalloc {self.pool_name}: handle {handle} is not allocated")

    def zs_free(self, handle: int) -> None:
        """zs_free() (6.1): free the object; a zspage left EMPTY is freed."""
        self._check_handle(handle)
        zspage = self.obj_free(handle)
        cls = zspage.cls
        cls.stats[OBJ_USED] -= 1
        self._obj_pfn[handle] = -1
        self._obj_idx[handle] = -1
        self._obj_size[handle] = 0
        self._free_handles.append(handle)
        self.nr_objects -= 1
        if self.fix_fullness_group(cls, zspage) == ZS_EMPTY:
            self.free_zspage(cls, zspage)

    def zs_free_batch(self, handles: npt.ArrayLike) -> None:
        """zs_free() for each handle in turn."""
        for h in np.asarray(handles, np.int64).reshape(-1):
            self.zs_free(int(h))

    def zs_get_total_pages(self) -> int:
        """zs_get_total_pages() (6.1): pages held by the pool."""
        return self.pages_allocated

    def zs_huge_class_size(self) -> int:
        return self.huge_class_size

    def zs_obj_location(self, handle: int) -> tuple[int, int]:
        """handle_to_obj + obj_to_location: (pfn, obj_idx) of an allocated object."""
        self._check_handle(handle)
        return int(self._obj_pfn[handle]), int(self._obj_idx[handle])

    def zs_read(self, handle: int) -> int:
        """zs_map_object(ZS_MM_RO) of the object: read it at the location its handle records;
        returns its size. Raises InvariantError if the page there does not hold it."""
        pfn, obj_idx = self.zs_obj_location(handle)
        zspage, _ = self.get_zspage(pfn)
        off = (obj_idx * zspage.cls.size) & (PAGE_SIZE - 1)
        if self._contents.get(pfn, {}).get(off) != handle:
            raise InvariantError(
                f"zsmalloc {self.pool_name}: object {handle} is not at pfn {pfn:#x} offset {off}"
            )
        return int(self._obj_size[handle])

    def live_handles(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self._obj_pfn >= 0).astype(np.int64)

    # ------------------------------------------------------------------ zsmalloc_mops
    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        """zs_page_isolate() (6.1): always true; zspage->isolated++."""
        zspage, _ = self.get_zspage(page.pfn)
        zspage.isolated += 1
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        """zs_page_migrate() (6.1): -EINVAL for MIGRATE_SYNC_NO_COPY; else copy the page,
        rewrite the location of every allocated object starting on it, replace the subpage in
        the chain (PG_private if it is the first), isolated--, move NR_ZSPAGES if the zone
        differs, then get_page(newpage), reset and put the old page."""
        if mode == MigrateMode.MIGRATE_SYNC_NO_COPY:
            return MigrateResult.EINVAL
        m = self.machine
        zspage, k = self.get_zspage(src.pfn)
        contents = self._contents.pop(src.pfn, {})
        if contents:
            self._contents[dst.pfn] = contents
            hs = np.fromiter(contents.values(), np.int64, len(contents))
            self._obj_pfn[hs] = dst.pfn
        if k == 0:
            # create_page_chain(): SetPagePrivate(first page). The old page keeps its flag:
            # the core copies the source's flags to the destination after this callback, and
            # the old page's flags are reset when it is freed.
            m.state.flags[dst.pfn] |= PG_private
        zspage.isolated -= 1
        if self._zone(dst.pfn) != self._zone(src.pfn):
            m.mod_zone_page_state(self._zone(src.pfn), "nr_zspages", -1)
            m.mod_zone_page_state(self._zone(dst.pfn), "nr_zspages", 1)
        return super().migrate_page(dst, src, mode)

    def putback_page(self, page: Page) -> None:
        """zs_page_putback() (6.1): isolated--."""
        zspage, _ = self.get_zspage(page.pfn)
        zspage.isolated -= 1

    # ------------------------------------------------------------------ compaction
    @staticmethod
    def zs_can_compact(cls: SizeClass) -> int:
        """zs_can_compact() (6.1): pages that moving the wasted objects would free."""
        allocated = cls.stats[OBJ_ALLOCATED]
        used = cls.stats[OBJ_USED]
        if allocated <= used:
            return 0
        return (allocated - used) // cls.objs_per_zspage * cls.pages_per_zspage

    def isolate_zspage(self, cls: SizeClass, source: bool) -> ZsPage | None:
        """isolate_zspage() (6.1): take the head of ALMOST_EMPTY, else ALMOST_FULL (a source),
        or of ALMOST_FULL, else ALMOST_EMPTY (a destination), off its list."""
        fgs = (ZS_ALMOST_EMPTY, ZS_ALMOST_FULL) if source else (ZS_ALMOST_FULL, ZS_ALMOST_EMPTY)
        for fg in fgs:
            head = cls.fullness_list[fg]
            z = head.next
            if z is not head:
                assert isinstance(z, ZsPage)
                self.remove_zspage(cls, z, fg)
                return z
        return None

    def putback_zspage(self, cls: SizeClass, zspage: ZsPage) -> int:
        """putback_zspage() (6.1): onto the list of its fullness group; returns the group."""
        fg = self.get_fullness_group(cls, zspage)
        self.insert_zspage(cls, zspage, fg)
        zspage.fullness = fg
        return fg

    def migrate_zspage(self, cls: SizeClass, src: ZsPage, dst: ZsPage, cursor: int) -> int:
        """migrate_zspage() (6.1): move the source's allocated objects, in order from
        ``cursor``, into the destination until it is full; returns the new cursor, or -1 if
        the source was drained (the kernel's 0 / -ENOMEM)."""
        n = cls.objs_per_zspage
        while cursor < n:
            handle = src.objs[cursor]
            if handle < 0:
                cursor += 1
                continue
            if dst.inuse == n:  # zspage_full(): no more space
                return cursor
            self.obj_free(handle)
            self.obj_malloc(dst, handle)  # zs_object_copy + record_obj
            cursor += 1
        return -1

    def __zs_compact(self, cls: SizeClass) -> int:
        """__zs_compact() (6.1) for one class; returns the pages freed."""
        pages_freed = 0
        src = None
        while (src := self.isolate_zspage(cls, True)) is not None:
            if not self.zs_can_compact(cls):
                break
            cursor = 0
            dst = None
            while (dst := self.isolate_zspage(cls, False)) is not None:
                cursor = self.migrate_zspage(cls, src, dst, cursor)
                if cursor < 0:
                    break  # the source is drained
                self.putback_zspage(cls, dst)
                dst = None
                # SIMPLIFICATION: spin_is_contended(&pool->lock) is never true
            if dst is None:
                break  # no destination
            self.putback_zspage(cls, dst)
            if self.putback_zspage(cls, src) == ZS_EMPTY:
                self.free_zspage(cls, src)
                pages_freed += cls.pages_per_zspage
            src = None
        if src is not None:
            self.putback_zspage(cls, src)
        return pages_freed

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
        return sum(self.zs_can_compact(c) for c in self.classes())

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

        def fail(msg: str) -> None:
            raise InvariantError(f"zsmalloc {self.pool_name}: {msg}")

        pages = 0
        seen: set[int] = set()
        for cls in self.classes():
            allocated = used = 0
            for fg in range(NR_ZS_FULLNESS):
                zs = self.zspages(cls, fg)
                if len(zs) != cls.stats[fg]:
                    fail(f"class {cls.index}: {len(zs)} zspages on list {fg}, stat {cls.stats[fg]}")
                for z in zs:
                    if z.cls is not cls or z.fullness != fg:
                        fail(f"class {cls.index}: zspage on the wrong list")
                    if self.get_fullness_group(cls, z) != fg:
                        fail(f"class {cls.index}: zspage with {z.inuse} objects on list {fg}")
                    live = [h for h in z.objs if h >= 0]
                    if len(live) != z.inuse or sorted(
                        [i for i, h in enumerate(z.objs) if h < 0]
                    ) != sorted(z.freeobj):
                        fail(f"class {cls.index}: zspage inuse/free list out of step")
                    if not 0 <= z.isolated <= len(z.pages):
                        fail(f"class {cls.index}: zspage isolated count {z.isolated}")
                    pfns = self.pfns(z.pages)
                    if len(pfns) != cls.pages_per_zspage:
                        fail(f"class {cls.index}: zspage of {len(pfns)} pages")
                    if not st.flags[pfns[0]] & PG_private:
                        fail(f"first page {int(pfns[0]):#x} has no PG_private")
                    nr_iso = 0
                    for k, (h, p) in enumerate(zip(z.pages, pfns, strict=True)):
                        p = int(p)
                        if st.refcount[p] <= 0 or int(st.owner[p]) != h:
                            fail(f"page {p:#x} is not allocated to the pool")
                        if self._subpage.get(h) != (z, k):
                            fail(f"page {p:#x}: page_private out of step")
                        movable = bool(st.flags[p] & PG_movable) and st.mops[p] > 0
                        if movable != self.movable:
                            fail(f"page {p:#x}: movable is {movable}")
                        nr_iso += bool(st.flags[p] & PG_isolated)
                    if nr_iso != z.isolated:
                        fail(f"zspage with {nr_iso} isolated pages counts {z.isolated}")
                    for i, h in enumerate(z.objs):
                        if h < 0:
                            continue
                        if h in seen:
                            fail(f"object {h} twice")
                        seen.add(h)
                        if int(self._obj_idx[h]) != i or int(self._obj_pfn[h]) != int(
                            self._location(cls, z, i)[0]
                        ):
                            fail(f"object {h}: location out of step")
                        self.zs_read(h)
                    allocated += cls.objs_per_zspage
                    used += z.inuse
                    pages += cls.pages_per_zspage
            if (allocated, used) != (cls.stats[OBJ_ALLOCATED], cls.stats[OBJ_USED]):
                fail(f"class {cls.index}: object stats out of step")
        if pages != self.pages_allocated or len(seen) != self.nr_objects:
            fail("pages_allocated or the object count out of step")
        if len(self._subpage) != pages:
            fail("page_private of freed pages left behind")
        if set(int(h) for h in self.live_handles()) != seen:
            fail("a live handle is on no zspage")
        if sum(len(c) for c in self._contents.values()) != len(seen):
            fail("page contents out of step")
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
        """zs_free() every object on the subpages held under ``handles``."""
        assert isinstance(driver, ZsPool)
        m = driver.machine
        for h in np.asarray(handles, np.int64).reshape(-1):
            pfn = int(m.handles[h])
            if pfn >= 0 and pfn in driver._contents:
                for obj in list(driver._contents[pfn].values()):
                    driver.zs_free(obj)

    def __repr__(self) -> str:
        return (
            f"<ZsPool {self.pool_name} movable={self.movable} objects={self.nr_objects} "
            f"pages={self.pages_allocated}>"
        )
