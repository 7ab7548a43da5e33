"""The simulated kernel's consistency checker. Models what CONFIG_DEBUG_VM and the
``VM_BUG_ON_PAGE`` checks of mm/page_alloc.c (Linux 6.1) assert about the buddy allocator, plus
the bookkeeping identities the kernel keeps implicitly: every page frame is in exactly one
place (a free block, a per-CPU list, an allocated block, or reserved), the free lists are
well-formed doubly linked lists, and the zone and per-CPU counters match the lists.

``check_invariants(machine)`` raises ``InvariantError`` naming the zone, pfn, order and list of
the first violation. Per-pfn checks are vectorised with NumPy; the lists are walked with the
compiled ``page_alloc.list_pfns`` only after the link arrays are known to be consistent (so a
corrupted list cannot make a walk loop forever). ``enable_debug_checks(machine)`` makes every
``Machine.run`` batch end with a check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fragsim.errors import InvariantError
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.mmzone import (
    MAX_ORDER,
    MIGRATE_CMA,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    MIGRATETYPE_NAMES,
    PAGE_ALLOC_COSTLY_ORDER,
    PB_MIGRATE_SKIP,
    PB_MIGRATETYPE_MASK,
    PB_WAS_HIGHATOMIC,
)
from fragsim.mm.page import (
    PG_active,
    PG_buddy,
    PG_head,
    PG_lru,
    PG_pcp,
    PG_reserved,
    PG_swapbacked,
    PG_tail,
    PG_unevictable,
)

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = ["check_invariants", "disable_debug_checks", "enable_debug_checks"]

Int64s = npt.NDArray[np.int64]

NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)


@dataclass(frozen=True, slots=True)
class _Blocks:
    """Blocks found on one kind of list: head pfn, order, zone, list migratetype, cpu, pindex."""

    kind: str
    pfn: Int64s
    order: Int64s
    zone: Int64s
    mt: Int64s
    cpu: Int64s
    pindex: Int64s

    @staticmethod
    def concat(kind: str, parts: list[tuple[Int64s, int, int, int, int, int]]) -> _Blocks:
        if not parts:
            e = np.zeros(0, np.int64)
            return _Blocks(kind, e, e, e, e, e, e)
        pfn = np.concatenate([p[0] for p in parts]).astype(np.int64)
        cols = [
            np.concatenate([np.full(len(p[0]), p[k], np.int64) for p in parts]) for k in range(1, 6)
        ]
        return _Blocks(kind, pfn, *cols)


class _Ctx:
    """The machine under check, with the names used in messages."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.st = machine.state
        self.npfn = int(self.st.flags.shape[0])
        self.nz = int(self.st.zs.shape[0])
        self.ncpus = int(self.st.prm[I.P_NR_CPUS])
        self.nlists = int(self.st.prm[I.P_NR_PCP_LISTS])
        self.pbo = int(self.st.prm[I.P_PAGEBLOCK_ORDER])

    def zone(self, z: int) -> str:
        try:
            name = self.m.zone_name(z)
        except Exception:  # pragma: no cover - a machine without names
            name = "?"
        return f"node {int(self.st.zs[z, I.ZF_NODE])} zone {name} (z={z})"

    def pfn_zone(self, pfn: int) -> str:
        z = int(self.st.zoneid[pfn]) if 0 <= pfn < self.npfn else -1
        return self.zone(z) if z >= 0 else "no zone"

    def free_list(self, z: int, order: int, mt: int) -> str:
        return f"{self.zone(z)} free_area[{order}].free_list[{MIGRATETYPE_NAMES[mt]}]"

    def pcp_list(self, z: int, cpu: int, pindex: int) -> str:
        order = _pindex_order(self.pbo, pindex)
        mt = _pindex_mt(pindex)
        return f"{self.zone(z)} cpu {cpu} pcp list {pindex} (order {order}, {mt})"

    def link_name(self, idx: int) -> str:
        """What a slot of State.nxt/prv is: a pfn or one of the list heads."""
        if idx < 0 or idx >= self.st.nxt.shape[0]:
            return f"index {idx} (out of range)"
        if idx < self.npfn:
            return f"pfn {idx:#x}"
        for z in range(self.nz):
            f0 = int(self.st.zs[z, I.ZF_FREE_SENT])
            if f0 <= idx < f0 + MAX_ORDER * MIGRATE_TYPES:
                o, mt = divmod(idx - f0, MIGRATE_TYPES)
                return f"head of {self.free_list(z, o, mt)}"
            p0 = int(self.st.zs[z, I.ZF_PCP_SENT])
            if p0 <= idx < p0 + self.ncpus * self.nlists:
                cpu, pindex = divmod(idx - p0, self.nlists)
                return f"head of {self.pcp_list(z, cpu, pindex)}"
        l0 = int(self.st.prm[I.P_LRU_SENT])
        if l0 <= idx < l0 + self.m.nr_nodes * I.NR_LRU_LISTS:
            nid, lru = divmod(idx - l0, I.NR_LRU_LISTS)
            return f"head of node {nid} LRU list {I.LRU_NAMES[lru]}"
        return f"auxiliary list head {idx}"

    def fail(self, msg: str) -> InvariantError:
        return InvariantError(f"{self.m.profile.name}: {msg}")


def _pindex_order(pbo: int, pindex: int) -> int:
    """pindex_to_order()."""
    return pbo if pindex >= NR_LOWORDER_PCP_LISTS else pindex // MIGRATE_PCPTYPES


def _pindex_mt(pindex: int) -> str:
    if pindex >= NR_LOWORDER_PCP_LISTS:
        return "THP Movable" if pindex > NR_LOWORDER_PCP_LISTS else "THP non-Movable"
    return MIGRATETYPE_NAMES[pindex % MIGRATE_PCPTYPES]


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


# ---------------------------------------------------------------------------------------------
# the checks, in the order they run
# ---------------------------------------------------------------------------------------------


def _check_layout(c: _Ctx) -> None:
    """memmap_init / free_area_init: zone spans match State.zoneid, pfns outside every zone are
    PG_reserved (no struct page is handed to the buddy allocator there), pageblock bitmap
    entries hold a valid migratetype (set_pfnblock_flags_mask) and no stray bits."""
    st = c.st
    expect = np.full(c.npfn, -1, np.int64)
    for z in range(c.nz):
        a, b = int(st.zs[z, I.ZF_START]), int(st.zs[z, I.ZF_END])
        if b > a:
            if not (0 <= a <= b <= c.npfn):
                raise c.fail(f"{c.zone(z)}: span [{a:#x}, {b:#x}) outside the mem_map")
            expect[a:b] = z
    bad = expect != st.zoneid
    if bad.any():
        p = _first(bad)
        raise c.fail(
            f"pfn {p:#x}: zoneid {int(st.zoneid[p])} but the zone spans say {int(expect[p])}"
        )
    bad = (st.zoneid < 0) & ((st.flags & PG_reserved) == 0)
    if bad.any():
        p = _first(bad)
        raise c.fail(f"pfn {p:#x} lies in no zone but is not PG_reserved")
    pb = st.pb.astype(np.int64)
    mt = pb & PB_MIGRATETYPE_MASK
    bad = (mt >= MIGRATE_TYPES) | (
        (pb & ~(PB_MIGRATETYPE_MASK | PB_MIGRATE_SKIP | PB_WAS_HIGHATOMIC)) != 0
    )
    if not st.prm[I.P_CONFIG_CMA]:
        bad |= mt == MIGRATE_CMA
    if bad.any():
        i = _first(bad)
        raise c.fail(
            f"pageblock {i} (pfn {i << c.pbo:#x}): invalid pageblock flags {int(pb[i]):#x}"
            + (" (MIGRATE_CMA without CONFIG_CMA)" if mt[i] == MIGRATE_CMA else "")
        )


def _check_links(c: _Ctx) -> None:
    """include/linux/list.h (CONFIG_DEBUG_LIST's __list_add_valid/__list_del_entry_valid): every
    linked slot's successor points back at it (prv[nxt[x]] == x, nxt[prv[x]] == x), unlinked
    slots have both links -1 (list_del poison), and every list head is linked. After this, each
    walk from a head terminates."""
    nxt = c.st.nxt.astype(np.int64)
    prv = c.st.prv.astype(np.int64)
    n = nxt.shape[0]
    heads_unlinked = (nxt[c.npfn :] < 0) | (prv[c.npfn :] < 0)
    if heads_unlinked.any():
        idx = c.npfn + _first(heads_unlinked)
        raise c.fail(f"list corrupted: the {c.link_name(idx)} is unlinked")
    half = (nxt < 0) != (prv < 0)
    if half.any():
        x = _first(half)
        raise c.fail(
            f"list corrupted at {c.link_name(x)}: nxt {int(nxt[x])} prv {int(prv[x])} "
            "(half-unlinked)"
        )
    linked = np.flatnonzero(nxt >= 0)
    fwd = nxt[linked]
    back = prv[linked]
    bad = (fwd >= n) | (back >= n)
    if bad.any():
        x = int(linked[_first(bad)])
        raise c.fail(f"list corrupted at {c.link_name(x)}: link out of range")
    bad = prv[fwd] != linked
    if bad.any():
        x = int(linked[_first(bad)])
        y = int(nxt[x])
        raise c.fail(
            f"list corrupted at {c.link_name(x)}: its next is {c.link_name(y)} whose prev is "
            f"{c.link_name(int(prv[y]))} (a pfn on two lists, or a lost link)"
        )
    bad = nxt[back] != linked
    if bad.any():
        x = int(linked[_first(bad)])
        y = int(prv[x])
        raise c.fail(
            f"list corrupted at {c.link_name(x)}: its prev is {c.link_name(y)} whose next is "
            f"{c.link_name(int(nxt[y]))} (a pfn on two lists, or a lost link)"
        )


def _walk(c: _Ctx, head: int, what: str) -> Int64s:
    pfns: Int64s = pa.list_pfns(c.st, head)
    bad = pfns >= c.npfn
    if bad.any():
        raise c.fail(f"{what} runs into {c.link_name(int(pfns[_first(bad)]))}")
    return pfns


def _walk_free_lists(c: _Ctx) -> _Blocks:
    """zone->free_area[order].free_list[mt] for every zone, order and type; nr_free is the number
    of blocks on the order's lists over all types (add_to_free_list/del_page_from_free_list)."""
    st = c.st
    parts: list[tuple[Int64s, int, int, int, int, int]] = []
    for z in range(c.nz):
        f0 = int(st.zs[z, I.ZF_FREE_SENT])
        heads = np.arange(f0, f0 + MAX_ORDER * MIGRATE_TYPES)
        nonempty = st.nxt[heads] != heads
        for order in range(MAX_ORDER):
            count = 0
            for mt in range(MIGRATE_TYPES):
                k = order * MIGRATE_TYPES + mt
                if not nonempty[k]:
                    continue
                pfns = _walk(c, f0 + k, c.free_list(z, order, mt))
                count += len(pfns)
                parts.append((pfns, order, z, mt, -1, -1))
            if count != st.nr_free[z, order]:
                raise c.fail(
                    f"{c.zone(z)} order {order}: nr_free is {int(st.nr_free[z, order])} but "
                    f"its free lists hold {count} blocks"
                )
    return _Blocks.concat("free", parts)


def _walk_pcp_lists(c: _Ctx) -> _Blocks:
    """per_cpu_pages.lists[pindex] of every zone and CPU (order_to_pindex/pindex_to_order)."""
    st = c.st
    parts: list[tuple[Int64s, int, int, int, int, int]] = []
    for z in range(c.nz):
        p0 = int(st.zs[z, I.ZF_PCP_SENT])
        heads = np.arange(p0, p0 + c.ncpus * c.nlists)
        nonempty = st.nxt[heads] != heads
        for k in np.flatnonzero(nonempty):
            cpu, pindex = divmod(int(k), c.nlists)
            pfns = _walk(c, p0 + int(k), c.pcp_list(z, cpu, pindex))
            parts.append((pfns, _pindex_order(c.pbo, pindex), z, -1, cpu, pindex))
    return _Blocks.concat("pcp", parts)


def _aux_list_nodes(c: _Ctx) -> int:
    """Pfns on the auxiliary lists that follow the pcp list heads (lists of allocated pages)."""
    st = c.st
    end = c.npfn + c.nz * MAX_ORDER * MIGRATE_TYPES + c.nz * c.ncpus * c.nlists
    n = 0
    for head in range(end, st.nxt.shape[0]):
        if st.nxt[head] != head:
            n += len(_walk(c, head, c.link_name(head)))
    return n


def _check_free_heads(c: _Ctx, f: _Blocks) -> None:
    """The head of a free block (set_buddy_order, __free_one_page's VM_BUG_ONs): PageBuddy,
    buddy_order() equal to the list's order, page_ref_count 0, aligned to its size, in the
    list's zone and wholly inside it (bad_range), not on a pcp list."""
    st = c.st
    if len(f.pfn) == 0:
        return
    flags = st.flags[f.pfn]
    size = np.int64(1) << f.order
    checks: list[tuple[npt.NDArray[np.bool_], str]] = [
        ((flags & PG_buddy) == 0, "has no PG_buddy"),
        ((flags & (PG_pcp | PG_reserved)) != 0, "is PG_pcp or PG_reserved"),
        (st.order[f.pfn] != f.order, "has the wrong buddy order"),
        ((f.pfn & (size - 1)) != 0, "is not aligned to its size"),
        (st.zoneid[f.pfn] != f.zone, "belongs to another zone"),
        (
            (f.pfn < st.zs[f.zone, I.ZF_START]) | (f.pfn + size > st.zs[f.zone, I.ZF_END]),
            "is not wholly inside its zone",
        ),
        (st.refcount[f.pfn] != 0, "has a non-zero refcount"),
    ]
    for bad, what in checks:
        if bad.any():
            i = _first(bad)
            p, o = int(f.pfn[i]), int(f.order[i])
            raise c.fail(
                f"free block pfn {p:#x} order {o} on {c.free_list(int(f.zone[i]), o, int(f.mt[i]))}"
                f" {what} (flags {int(st.flags[p]):#x} order {int(st.order[p])} "
                f"refcount {int(st.refcount[p])} zoneid {int(st.zoneid[p])})"
            )


def _check_pcp_heads(c: _Ctx, p: _Blocks) -> None:
    """A block on a pcp list: PG_pcp, the list's order, aligned, in the list's zone, refcount 0,
    and a cached migratetype (get_pcppage_migratetype) that belongs on that list: the list's own
    type, or HIGHATOMIC/CMA on the MOVABLE list (free_unref_page); never ISOLATE."""
    st = c.st
    if len(p.pfn) == 0:
        return
    flags = st.flags[p.pfn]
    size = np.int64(1) << p.order
    pcpmt = st.pcpmt[p.pfn].astype(np.int64)
    low = p.pindex < NR_LOWORDER_PCP_LISTS
    list_movable = np.where(
        low, (p.pindex % MIGRATE_PCPTYPES) == MIGRATE_MOVABLE, p.pindex > NR_LOWORDER_PCP_LISTS
    )
    ok_mt = np.where(
        list_movable,
        (pcpmt == MIGRATE_MOVABLE) | (pcpmt == MIGRATE_HIGHATOMIC) | (pcpmt == MIGRATE_CMA),
        np.where(
            low,
            pcpmt == p.pindex % MIGRATE_PCPTYPES,
            (pcpmt < MIGRATE_PCPTYPES) & (pcpmt != MIGRATE_MOVABLE),
        ),
    )
    checks: list[tuple[npt.NDArray[np.bool_], str]] = [
        ((flags & PG_pcp) == 0, "has no PG_pcp"),
        ((flags & (PG_buddy | PG_reserved)) != 0, "is PG_buddy or PG_reserved"),
        (st.order[p.pfn] != p.order, "has the wrong order"),
        ((p.pfn & (size - 1)) != 0, "is not aligned to its size"),
        (st.zoneid[p.pfn] != p.zone, "belongs to another zone"),
        (
            (p.pfn < st.zs[p.zone, I.ZF_START]) | (p.pfn + size > st.zs[p.zone, I.ZF_END]),
            "is not wholly inside its zone",
        ),
        (st.refcount[p.pfn] != 0, "has a non-zero refcount"),
        (~ok_mt, "has a cached migratetype that does not belong on this list"),
    ]
    for bad, what in checks:
        if bad.any():
            i = _first(bad)
            q = int(p.pfn[i])
            raise c.fail(
                f"pcp block pfn {q:#x} order {int(p.order[i])} on "
                f"{c.pcp_list(int(p.zone[i]), int(p.cpu[i]), int(p.pindex[i]))} {what} "
                f"(flags {int(st.flags[q]):#x} order {int(st.order[q])} pcpmt {int(pcpmt[i])} "
                f"refcount {int(st.refcount[q])})"
            )


def _check_flag_sets(c: _Ctx, f: _Blocks, p: _Blocks) -> None:
    """PageBuddy marks exactly the heads on the free lists and PG_pcp exactly the heads on the
    pcp lists: a flag left on a page that is on no list is a page the allocator lost track of."""
    st = c.st
    for flag, blocks, name in ((PG_buddy, f, "PG_buddy"), (PG_pcp, p, "PG_pcp")):
        marked = np.zeros(c.npfn, bool)
        marked[blocks.pfn] = True
        stray = ((st.flags & flag) != 0) & ~marked
        if stray.any():
            q = _first(stray)
            raise c.fail(
                f"pfn {q:#x} ({c.pfn_zone(q)}) has {name} but is on no "
                f"{'free' if flag == PG_buddy else 'pcp'} list (order {int(st.order[q])})"
            )


def _allocated_blocks(c: _Ctx) -> _Blocks:
    """Allocated blocks (prep_new_page): heads with page_ref_count > 0 that are neither free,
    on a pcp list nor reserved; each covers 2^order pfns of one zone."""
    st = c.st
    heads = np.flatnonzero(
        (st.refcount > 0) & ((st.flags & (PG_buddy | PG_pcp | PG_reserved)) == 0)
    ).astype(np.int64)
    order = st.order[heads].astype(np.int64)
    zone = st.zoneid[heads].astype(np.int64)
    bad = (order < 0) | (order >= MAX_ORDER)
    if bad.any():
        q = int(heads[_first(bad)])
        raise c.fail(
            f"allocated block pfn {q:#x} ({c.pfn_zone(q)}) has invalid order {int(st.order[q])}"
        )
    size = np.int64(1) << order
    bad = (heads & (size - 1)) != 0
    bad |= (zone < 0) | (heads + size > st.zs[np.maximum(zone, 0), I.ZF_END])
    if bad.any():
        i = _first(bad)
        q = int(heads[i])
        raise c.fail(
            f"allocated block pfn {q:#x} order {int(order[i])} ({c.pfn_zone(q)}) is misaligned "
            "or not wholly inside its zone"
        )
    e = np.full(len(heads), -1, np.int64)
    _check_compound(c, heads, order)
    return _Blocks("allocated", heads, order, zone, e, e, e)


def _check_compound(c: _Ctx, heads: Int64s, order: Int64s) -> None:
    """prep_compound_page(): PG_head only on an allocated head of order > 0, PG_tail on exactly
    the other pages of such a block."""
    st = c.st
    is_head = (st.flags[heads] & PG_head) != 0
    bad = is_head & (order == 0)
    flagged = np.flatnonzero((st.flags & PG_head) != 0)
    stray = np.setdiff1d(flagged, heads[is_head])
    if bad.any() or len(stray):
        q = int(heads[_first(bad)]) if bad.any() else int(stray[0])
        raise c.fail(f"pfn {q:#x} ({c.pfn_zone(q)}) has PG_head but is no compound block head")
    want = np.zeros(c.npfn + 1, np.int64)
    h, o = heads[is_head], order[is_head]
    np.add.at(want, h + 1, 1)
    np.add.at(want, h + (np.int64(1) << o), -1)
    tail = np.cumsum(want)[: c.npfn] > 0
    has = (st.flags & PG_tail) != 0
    if (tail != has).any():
        q = int(np.flatnonzero(tail != has)[0])
        what = "lacks PG_tail" if tail[q] else "has PG_tail outside a compound page"
        raise c.fail(f"pfn {q:#x} ({c.pfn_zone(q)}) {what}")


def _describe_block(c: _Ctx, b: _Blocks, i: int) -> str:
    p, o = int(b.pfn[i]), int(b.order[i])
    if b.kind == "free":
        where = c.free_list(int(b.zone[i]), o, int(b.mt[i]))
    elif b.kind == "pcp":
        where = c.pcp_list(int(b.zone[i]), int(b.cpu[i]), int(b.pindex[i]))
    else:
        where = f"{c.pfn_zone(p)}, owner {int(c.st.owner[p])}"
    return f"{b.kind} block pfn {p:#x} order {o} ({where})"


def _check_coverage(c: _Ctx, blocks: tuple[_Blocks, ...]) -> None:
    """Every pfn is accounted exactly once: inside one free, pcp or allocated block, or
    PG_reserved (memblock-reserved, a hole, or never freed) and inside none. Catches lost pages,
    double-counted pages and overlapping allocations."""
    st = c.st
    starts = np.concatenate([b.pfn for b in blocks])
    ends = starts + (np.int64(1) << np.concatenate([b.order for b in blocks]))
    diff = np.bincount(starts, minlength=c.npfn + 1)[: c.npfn + 1].astype(np.int64)
    diff -= np.bincount(ends, minlength=c.npfn + 1)[: c.npfn + 1]
    cover = np.cumsum(diff[: c.npfn])
    reserved = (st.flags & PG_reserved) != 0
    bad = np.where(reserved, cover != 0, cover != 1)
    if not bad.any():
        return
    q = _first(bad)
    owners = [
        _describe_block(c, b, int(i))
        for b in blocks
        for i in np.flatnonzero((b.pfn <= q) & (q < b.pfn + (np.int64(1) << b.order)))
    ]
    if not owners:
        raise c.fail(
            f"pfn {q:#x} ({c.pfn_zone(q)}) is not PG_reserved but belongs to no free, pcp or "
            f"allocated block (lost page; flags {int(st.flags[q]):#x} "
            f"refcount {int(st.refcount[q])})"
        )
    state = "PG_reserved and" if reserved[q] else "not reserved but"
    raise c.fail(
        f"pfn {q:#x} ({c.pfn_zone(q)}) is {state} accounted {len(owners)} times: "
        + "; ".join(owners)
    )


def _check_counters(c: _Ctx, f: _Blocks, p: _Blocks, aux_nodes: int) -> None:
    """__mod_zone_freepage_state / rmqueue_bulk accounting: NR_FREE_PAGES counts the pages on
    the free lists except ISOLATE ones, NR_FREE_CMA_PAGES those on the CMA lists; pcp->count
    the pages on that CPU's lists of the zone. Every linked pfn is on some walked list."""
    st = c.st
    size = np.int64(1) << f.order
    free = np.zeros(c.nz, np.int64)
    np.add.at(free, f.zone, np.where(f.mt != MIGRATE_ISOLATE, size, 0))
    cma = np.zeros(c.nz, np.int64)
    np.add.at(cma, f.zone, np.where(f.mt == MIGRATE_CMA, size, 0))
    pcp = np.zeros((c.nz, c.ncpus), np.int64)
    np.add.at(pcp, (p.zone, p.cpu), np.int64(1) << p.order)
    for z in range(c.nz):
        if st.zs[z, I.ZF_NR_FREE_PAGES] != free[z]:
            raise c.fail(
                f"{c.zone(z)}: NR_FREE_PAGES is {int(st.zs[z, I.ZF_NR_FREE_PAGES])} but the "
                f"non-isolate free lists hold {int(free[z])} pages"
            )
        if st.zs[z, I.ZF_NR_FREE_CMA] != cma[z]:
            raise c.fail(
                f"{c.zone(z)}: NR_FREE_CMA_PAGES is {int(st.zs[z, I.ZF_NR_FREE_CMA])} but the "
                f"CMA free lists hold {int(cma[z])} pages"
            )
        for cpu in range(c.ncpus):
            if st.pcp[z, cpu, I.PCP_COUNT] != pcp[z, cpu]:
                raise c.fail(
                    f"{c.zone(z)} cpu {cpu}: pcp count is {int(st.pcp[z, cpu, I.PCP_COUNT])} "
                    f"but its pcp lists hold {int(pcp[z, cpu])} pages"
                )
    linked = int(np.count_nonzero(st.nxt[: c.npfn] >= 0))
    on_lists = len(f.pfn) + len(p.pfn) + aux_nodes
    if linked != on_lists:
        orphan = np.ones(c.npfn, bool)
        orphan[f.pfn] = False
        orphan[p.pfn] = False
        orphan &= st.nxt[: c.npfn] >= 0
        q = _first(orphan) if orphan.any() else -1
        raise c.fail(
            f"{linked} pfns are linked but the lists hold {on_lists}: pfn {q:#x} is linked on "
            "no free or pcp list (a detached cycle)"
        )


def _check_merged(c: _Ctx, f: _Blocks) -> None:
    """__free_one_page (6.1): a freed block merges with its buddy while the buddy is a free
    block of the same order in the same zone, up to MAX_ORDER-1; from pageblock_order up the
    merge stops when the types differ and one of them is HIGHATOMIC, CMA or ISOLATE. So no two
    buddies of one order below MAX_ORDER-1 are both free, except at >= pageblock_order when
    (the pageblock types, or one block's list type and the other's pageblock type) differ with
    one not mergeable. unreserve_highatomic_pageblock re-types a HIGHATOMIC pageblock without
    merging its free blocks, so pairs next to a pageblock that was ever HIGHATOMIC
    (PB_WAS_HIGHATOMIC) are also allowed at >= pageblock_order."""
    st = c.st
    pbt = (st.pb & PB_MIGRATETYPE_MASK).astype(np.int64)
    seen = (st.pb & PB_WAS_HIGHATOMIC) != 0
    if len(f.pfn) == 0:
        return
    order_at = np.full(c.npfn, -1, np.int64)
    order_at[f.pfn] = f.order
    mt_at = np.full(c.npfn, -1, np.int64)
    mt_at[f.pfn] = f.mt
    buddy = f.pfn ^ (np.int64(1) << f.order)
    inside = buddy < c.npfn
    b = np.where(inside, buddy, 0)
    pair = (
        inside
        & (f.order < MAX_ORDER - 1)
        & (f.pfn < buddy)
        & (order_at[b] == f.order)
        & (st.zoneid[b] == f.zone)
    )
    if not pair.any():
        return
    x, y, o = f.pfn[pair], b[pair], f.order[pair]
    pbx, pby = pbt[x >> c.pbo], pbt[y >> c.pbo]
    lx, ly = f.mt[pair], mt_at[y]

    def blocks(a: Int64s, b2: Int64s) -> npt.NDArray[np.bool_]:
        stop: npt.NDArray[np.bool_] = (a != b2) & (
            (a >= MIGRATE_PCPTYPES) | (b2 >= MIGRATE_PCPTYPES)
        )
        return stop

    exempt = (o >= c.pbo) & (
        blocks(pbx, pby) | blocks(lx, pby) | blocks(ly, pbx) | seen[x >> c.pbo] | seen[y >> c.pbo]
    )
    bad = ~exempt
    if bad.any():
        i = _first(bad)
        px, py, oo = int(x[i]), int(y[i]), int(o[i])
        z = int(st.zoneid[px])
        raise c.fail(
            f"{c.zone(z)}: buddies pfn {px:#x} and {py:#x} of order {oo} are both free but not "
            f"merged (lists {MIGRATETYPE_NAMES[int(lx[i])]}/{MIGRATETYPE_NAMES[int(ly[i])]}, "
            f"pageblocks {MIGRATETYPE_NAMES[int(pbx[i])]}/{MIGRATETYPE_NAMES[int(pby[i])]})"
        )


def _check_highatomic(c: _Ctx) -> None:
    """reserve/unreserve_highatomic_pageblock: nr_reserved_highatomic moves in whole pageblocks
    and never goes below 0."""
    nr = 1 << c.pbo
    for z in range(c.nz):
        r = int(c.st.zs[z, I.ZF_NR_RESERVED_HIGHATOMIC])
        if r < 0 or r % nr:
            raise c.fail(
                f"{c.zone(z)}: nr_reserved_highatomic is {r}, not a non-negative multiple of "
                f"pageblock_nr_pages ({nr})"
            )


# ---------------------------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------------------------


def _check_lru(c: _Ctx) -> None:
    """The LRU lists (lruvec_add_folio / lruvec_del_folio, CONFIG_DEBUG_VM's checks): every page
    on a node's list is an allocated block head with PG_lru, in a zone of that node, on the list
    its flags name (folio_lru_list); each zone's NR_ZONE_LRU counters equal what its pages on
    the lists add up to; and every PG_lru page is on a list."""
    st = c.st
    nzt = c.m.nr_zone_types
    counted = np.zeros((c.nz, I.NR_LRU_LISTS), np.int64)
    on_lists = 0
    for nid in range(c.m.nr_nodes):
        for lru in range(I.NR_LRU_LISTS):
            head = int(st.prm[I.P_LRU_SENT]) + nid * I.NR_LRU_LISTS + lru
            what = f"node {nid} LRU list {I.LRU_NAMES[lru]}"
            pfns = _walk(c, head, what)
            if not len(pfns):
                continue
            on_lists += len(pfns)
            f = st.flags[pfns].astype(np.int64)
            bad = ((f & PG_lru) == 0) | (st.refcount[pfns] <= 0) | ((f & (PG_buddy | PG_pcp)) != 0)
            if bad.any():
                q = int(pfns[_first(bad)])
                raise c.fail(
                    f"{what} holds pfn {q:#x} (flags {int(st.flags[q]):#x}, refcount "
                    f"{int(st.refcount[q])}), which is not an allocated PG_lru page"
                )
            want = np.where(
                f & PG_unevictable,
                I.LRU_UNEVICTABLE,
                np.where(f & PG_swapbacked, I.LRU_INACTIVE_ANON, I.LRU_INACTIVE_FILE)
                + ((f & PG_active) != 0),
            )  # folio_lru_list()
            bad = want != lru
            if bad.any():
                q = int(pfns[_first(bad)])
                raise c.fail(
                    f"pfn {q:#x} is on {what} but its flags name the "
                    f"{I.LRU_NAMES[int(want[_first(bad)])]} list"
                )
            zones = st.zoneid[pfns].astype(np.int64)
            bad = zones // nzt != nid
            if bad.any():
                q = int(pfns[_first(bad)])
                raise c.fail(f"pfn {q:#x} of {c.pfn_zone(q)} is on {what}")
            np.add.at(counted[:, lru], zones, np.int64(1) << st.order[pfns].astype(np.int64))
    for z in range(c.nz):
        for lru in range(I.NR_LRU_LISTS):
            have = int(st.zs[z, I.ZF_NR_LRU + lru])
            if have != counted[z, lru]:
                raise c.fail(
                    f"{c.zone(z)}: nr_zone_{I.LRU_NAMES[lru]} is {have} but its pages on the "
                    f"LRU lists add up to {int(counted[z, lru])}"
                )
    marked = int(np.count_nonzero(st.flags[: c.npfn] & PG_lru))
    if marked != on_lists:
        lru_pfns = np.zeros(c.npfn, bool)
        lru_pfns[np.flatnonzero(st.flags[: c.npfn] & PG_lru)] = True
        for nid in range(c.m.nr_nodes):
            for lru in range(I.NR_LRU_LISTS):
                head = int(st.prm[I.P_LRU_SENT]) + nid * I.NR_LRU_LISTS + lru
                lru_pfns[pa.list_pfns(st, head)] = False
        q = _first(lru_pfns) if lru_pfns.any() else -1
        raise c.fail(f"{marked} pages have PG_lru but the LRU lists hold {on_lists}: pfn {q:#x}")


def check_invariants(machine: Machine) -> None:
    """Check the whole allocator state of ``machine``; raise ``InvariantError`` on the first
    violation, naming the zone, pfn, order and list involved.

    In order: the layout (zone spans, reserved pfns outside zones, pageblock types), the list
    links, the free and pcp lists (nr_free, each head's flags, order, alignment, zone and
    refcount), the PG_buddy/PG_pcp flags, the allocated blocks, that every pfn is accounted
    exactly once, the zone and pcp counters, merge completeness, and the highatomic counter."""
    c = _Ctx(machine)
    _check_layout(c)
    _check_links(c)
    free = _walk_free_lists(c)
    pcp = _walk_pcp_lists(c)
    aux = _aux_list_nodes(c)
    _check_free_heads(c, free)
    _check_pcp_heads(c, pcp)
    _check_flag_sets(c, free, pcp)
    allocated = _allocated_blocks(c)
    _check_coverage(c, (free, pcp, allocated))
    _check_counters(c, free, pcp, aux)
    _check_merged(c, free)
    _check_highatomic(c)
    _check_lru(c)


def enable_debug_checks(machine: Machine) -> None:
    """Turn on the user debug switch: every ``machine.run`` batch (and so every
    ``alloc_pages``/``free_pages``/``drain_all_pages`` and slow-path step) ends with
    ``check_invariants``, also when the batch raises ``AllocatorError``."""
    machine.debug = True


def disable_debug_checks(machine: Machine) -> None:
    """Undo ``enable_debug_checks``."""
    machine.debug = False
