"""fragsim inspect: indices, verdicts and kpageflags obstacles, on real snapshots (oracle 6.1,
a 6.18 machine) with hand-checked numbers and on small synthetic snapshots for the edge cases."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from fragsim.analysis import (
    CompactResult,
    InspectReport,
    Verdict,
    block_obstacles,
    compaction_suitable,
    format_report,
    inspect_snapshot,
    load_snapshot,
    parse_vm_sysctl,
    zone_watermark_ok,
)
from fragsim.analysis.inspect import movable_kinds
from fragsim.cli import main
from fragsim.errors import FragsimError, ParseError
from fragsim.parsers import PageKind, classify, parse_extfrag, read_kpageflags
from fragsim.parsers.kpageflags import (
    KPF_ANON,
    KPF_BUDDY,
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_LRU,
    KPF_NOPAGE,
    KPF_OFFLINE,
    KPF_PGTABLE,
    KPF_PRIVATE,
    KPF_SLAB,
    KPF_THP,
)

REAL = Path(__file__).resolve().parent.parent / "fixtures" / "real"
ORACLE = REAL / "oracle-6.1"
FC = REAL / "firecracker-6.18"


def order(report: InspectReport, zname: str, o: int):  # type: ignore[no-untyped-def]
    z = next(z for z in report.zones if z.zone == zname)
    return next(x for x in z.orders if x.order == o)


# -- real snapshots: hand-checked numbers ---------------------------------------------------


@pytest.fixture(scope="module")
def s00() -> InspectReport:
    return inspect_snapshot(load_snapshot(ORACLE / "s00_boot"))


@pytest.fixture(scope="module")
def s02() -> InspectReport:
    return inspect_snapshot(load_snapshot(ORACLE / "s02_fragmented"))


@pytest.fixture(scope="module")
def fc() -> InspectReport:
    return inspect_snapshot(load_snapshot(FC))


def test_s00_dma32_order9(s00: InspectReport) -> None:
    """s00_boot DMA32 buddyinfo: 0 0 1 2 1 2 1 3 1 2 223.

    free pages = 1*4 + 2*8 + 1*16 + 2*32 + 1*64 + 3*128 + 1*256 + 2*512 + 223*1024
               = 4 + 16 + 16 + 64 + 64 + 384 + 256 + 1024 + 228352 = 230180 (= zoneinfo);
    order-9 blocks = 2 (order 9) + 223*2 (order 10) = 448, i.e. 448*512 = 229376 pages;
    unusable = (230180 - 229376) * 1000 // 230180 = 804000 // 230180 = 3 -> 0.003;
    fragindex = -1000 (a block exists). Watermark: 230180 - 511 = 229669 > min 11085 +
    protection[Normal=2] 0, and order-9/10 blocks sit on the Movable list -> succeeds now.
    """
    o = order(s00, "DMA32", 9)
    assert (o.free_blocks, o.usable_pages, o.unusable_index) == (448, 229376, 3)
    assert o.fragmentation_index == -1000
    assert o.compaction_suitable is CompactResult.COMPACT_SUCCESS
    assert o.verdict is Verdict.SUCCEEDS_NOW
    assert o.reason == "229669 usable free > min 11085 + reserve 0; order-9 block free"
    z = s00.zones[1]
    assert (z.free_pages, z.nr_free_pages, z.min, z.low, z.lowmem_reserve) == (
        230180,
        230180,
        11085,
        13856,
        0,
    )
    assert z.pageblocks == {
        "Unmovable": 18,
        "Movable": 480,
        "Reclaimable": 6,
        "HighAtomic": 0,
        "Isolate": 0,
    }


def test_s00_indices_equal_the_kernels_debugfs_files(s00: InspectReport) -> None:
    """s00 was captured on an idle guest: the kernel's own extfrag files agree order by order."""
    unusable = parse_extfrag((ORACLE / "s00_boot/unusable_index").read_text())
    extfrag = parse_extfrag((ORACLE / "s00_boot/extfrag_index").read_text())
    for z, u, e in zip(s00.zones, unusable, extfrag, strict=True):
        assert (z.node, z.zone) == (u.node, u.zone)
        assert [o.unusable_index for o in z.orders] == list(u.values[1:])
        assert [o.fragmentation_index for o in z.orders] == list(e.values[1:])


def test_s02_dma32(s02: InspectReport) -> None:
    """s02_fragmented DMA32 buddyinfo: 26101 0 1 2 2 2 2 1 1 2 95.

    free pages = 26101 + 0 + 4 + 16 + 32 + 64 + 128 + 128 + 256 + 1024 + 95*1024(97280)
               = 125033 (zoneinfo says 125087: read a moment later);
    order 1: blocks = 0 + 1*2 + 2*4 + 2*8 + 2*16 + 2*32 + 1*64 + 1*128 + 2*256 + 95*512
           = 2 + 8 + 16 + 32 + 64 + 64 + 128 + 512 + 48640 = 49466 (98932 pages);
           unusable = (125033 - 98932) * 1000 // 125033 = 26101000 // 125033 = 208;
    order 10: 95 blocks = 97280 pages; unusable = 27753000 // 125033 = 221.
    The DMA zone is protected from GFP_KERNEL by protection[2] = 945 but has 3808 free pages:
    order 3: 3808 - 7 = 3801 > 178 + 945 and an order-5 block is free -> succeeds now.
    """
    o1, o10 = order(s02, "DMA32", 1), order(s02, "DMA32", 10)
    assert (o1.free_blocks, o1.usable_pages, o1.unusable_index) == (49466, 98932, 208)
    assert (o10.free_blocks, o10.usable_pages, o10.unusable_index) == (95, 97280, 221)
    assert s02.zones[1].free_pages == 125033 and s02.zones[1].nr_free_pages == 125087
    assert s02.zones[1].pcp_pages == 6870 + 247
    dma3 = order(s02, "DMA", 3)
    assert dma3.verdict is Verdict.SUCCEEDS_NOW
    assert dma3.reason == "3801 usable free > min 178 + reserve 945; order-5 block free"
    # the kernel's extfrag_index file of that moment: -1.000 everywhere, as computed
    extfrag = parse_extfrag((ORACLE / "s02_fragmented/extfrag_index").read_text())
    assert [o.fragmentation_index for o in s02.zones[1].orders] == list(extfrag[1].values[1:])


def test_s04_dma_fails_for_lack_of_memory_because_of_the_lowmem_reserve() -> None:
    """s04_balloon_inflated DMA buddyinfo: 1 0 1 1 1 2 2 1 1 1 0 -> 1 + 4 + 8 + 16 + 64 + 128
    + 128 + 256 + 512 = 1117 free (= zoneinfo). For GFP_KERNEL, protection[2] = 945:
    order 3: 1117 - 7 = 1110 <= min 178 + 945 = 1123 -> the watermark fails; compaction's
    order-0 check (non-costly: min) 1117 <= 178 + gap 16 + 945 = 1139 -> COMPACT_SKIPPED.
    DMA32 (17519 free, 9 order-10 blocks): order 9: 17519 - 511 = 17008 > 11085 -> succeeds now."""
    r = inspect_snapshot(load_snapshot(ORACLE / "s04_balloon_inflated"))
    o = order(r, "DMA", 3)
    assert o.compaction_suitable is CompactResult.COMPACT_SKIPPED
    assert o.verdict is Verdict.FAILS_LACK_OF_MEMORY
    assert o.reason == (
        "1110 usable free <= min 178 + reserve 945; 1117 free <= min 178 + gap 16 + "
        "reserve 945: reclaim first"
    )
    assert order(r, "DMA32", 9).verdict is Verdict.SUCCEEDS_NOW
    assert r.zones[1].free_lists_from == "buddyinfo"  # s04 has no pagetypeinfo


def test_s07_without_zoneinfo_order9_likely_after_compaction() -> None:
    """s07_thp_faulted (buddyinfo and kpageflags only) DMA32: 5148 992 928 391 76 24 15 16 13 0 0.

    free pages = 5148 + 1984 + 3712 + 3128 + 1216 + 768 + 960 + 2048 + 3328 = 22292 in
    5148 + 992 + 928 + 391 + 76 + 24 + 15 + 16 + 13 = 7603 blocks, none of order >= 9:
    fragindex(9) = 1000 - (1000 + 22292000 // 512) // 7603 = 1000 - 44539 // 7603 = 1000 - 5
    = 995 > 500, and with no zoneinfo the watermarks are 0: 22292 > gap 1024 -> compaction
    continues -> likely after compaction."""
    r = inspect_snapshot(load_snapshot(ORACLE / "s07_thp_faulted"))
    o = order(r, "DMA32", 9)
    assert (o.free_blocks, o.unusable_index, o.fragmentation_index) == (0, 1000, 995)
    assert o.compaction_suitable is CompactResult.COMPACT_CONTINUE
    assert o.verdict is Verdict.LIKELY_AFTER_COMPACTION
    assert o.reason == (
        "no free block of order >= 9 on the free lists; 22292 free > gap 1024; "
        "fragindex 0.995 > 0.500"
    )
    assert not r.zones[1].watermarks_known
    assert any("no zoneinfo" in n for n in r.notes)
    # kpageflags analysed whole: 262144 pfns, 512 pageblocks
    (ob,) = r.obstacles
    assert ob.node is None and ob.end_pfn == 262144 and ob.by_order[0].blocks == 512


def test_firecracker_618(fc: InspectReport) -> None:
    """6.18 machine, zone Normal buddyinfo: 2649 4802 2440 1011 568 286 326 207 112 75 520.

    free pages = 2649 + 9604 + 9760 + 8088 + 9088 + 9152 + 20864 + 26496 + 28672 + 38400 +
    532480 = 695253; order 9: 75 + 520*2 = 1115 blocks = 570880 pages, unusable =
    124373000 // 695253 = 178; order 10: 520 blocks = 532480 pages, unusable =
    162773000 // 695253 = 234. Lowmem reserve for GFP_KERNEL = protection[2]: DMA 6987,
    DMA32 3968, Normal 0. DMA: order 1: 3840 - 1 = 3839 <= 36 + 6987 -> fails for lack of
    memory (GFP_KERNEL never gets DMA pages here)."""
    o9, o10 = order(fc, "Normal", 9), order(fc, "Normal", 10)
    assert (o9.free_blocks, o9.usable_pages, o9.unusable_index) == (1115, 570880, 178)
    assert (o10.free_blocks, o10.usable_pages, o10.unusable_index) == (520, 532480, 234)
    assert o10.verdict is Verdict.SUCCEEDS_NOW
    assert [z.lowmem_reserve for z in fc.zones] == [6987, 3968, 0]
    assert order(fc, "DMA", 1).verdict is Verdict.FAILS_LACK_OF_MEMORY
    assert fc.zones[2].pageblocks == {
        "Unmovable": 64,
        "Movable": 1862,
        "Reclaimable": 58,
        "HighAtomic": 0,
        "Isolate": 0,
    }


def test_firecracker_kpageflags_analysed_in_seconds() -> None:
    """6.5 M pfns (24 GiB): read, classify and analyse well within the few-seconds budget."""
    t = time.perf_counter()
    r = inspect_snapshot(load_snapshot(FC))
    assert time.perf_counter() - t < 10
    normal = next(z for z in r.obstacles if z.zone == "Normal")
    assert normal.end_pfn == 1048576 + 5505024
    assert sum(normal.kinds.values()) == 5505024
    for bo in normal.by_order:
        assert bo.free + bo.compactable + sum(bo.sole.values()) + bo.several == bo.blocks


# -- kpageflags obstacles -------------------------------------------------------------------


def test_s02_ranking_counts_sum(s02: InspectReport) -> None:
    """Real s02 kpageflags: every aligned block is counted exactly once, and the pageblock
    counts equal a per-block recount in plain Python."""
    dma32 = next(z for z in s02.obstacles if z.zone == "DMA32")
    assert (dma32.start_pfn, dma32.end_pfn) == (4096, 4096 + 258016)
    assert sum(dma32.kinds.values()) == 258016
    by = {(b.order, b.nonlru_movable): b for b in dma32.by_order}
    # (262112 // 512 * 512 - 4096) / 512 = 503 pageblocks; (262112 - 4096) / 8 = 32252
    assert by[(9, False)].blocks == 503 and by[(3, False)].blocks == 32252
    for b in dma32.by_order:
        assert b.free + b.compactable + sum(b.sole.values()) + b.several == b.blocks
        assert all(b.present[k] >= n for k, n in b.sole.items())
    kinds = classify(read_kpageflags(ORACLE / "s02_fragmented/kpageflags.gz"))
    for nonlru in (False, True):
        movable = movable_kinds(nonlru_movable=nonlru, compact_unevictable_allowed=True)
        free = clear = several = 0
        sole: dict[str, int] = {}
        for start in range(4096, 261632, 512):
            present = {PageKind(int(k)) for k in np.unique(kinds[start : start + 512])}
            obst = present - movable
            if present == {PageKind.BUDDY}:
                free += 1
            elif not obst:
                clear += 1
            elif len(obst) == 1:
                (k,) = obst
                sole[k.name.lower()] = sole.get(k.name.lower(), 0) + 1
            else:
                several += 1
        b = by[(9, nonlru)]
        assert (b.free, b.compactable, b.several, b.sole) == (free, clear, several, sole)
    # zsmalloc pages are the first obstacle with the framework off, and gone with it on
    assert next(iter(by[(9, False)].sole)) == "zsmalloc"
    assert "zsmalloc" not in by[(9, True)].sole
    assert by[(9, True)].compactable > by[(9, False)].compactable
    text = format_report(s02)
    n = by[(9, False)].sole["zsmalloc"]
    assert (
        f"Zsmalloc pages are the only obstacle in {n} of 503 pageblocks "
        f"({100 * n / 503:.0f}%) of zone DMA32" in text
    )


def _synthetic_kinds() -> np.ndarray:
    """8 pageblocks (order 9) of known content."""
    k = np.full(8 * 512, PageKind.BUDDY, np.uint8)

    def blk(i: int) -> np.ndarray:
        return k[i * 512 : (i + 1) * 512]

    blk(1)[:100] = PageKind.LRU_ANON  # 1: free + LRU -> compactable
    blk(2)[:] = PageKind.LRU_FILE
    blk(2)[7] = PageKind.SLAB  # 2: one slab page -> slab alone
    blk(3)[0] = PageKind.SLAB
    blk(3)[9] = PageKind.PGTABLE  # 3: slab + page tables -> several
    blk(4)[:50] = PageKind.LRU_ANON
    blk(4)[60] = PageKind.ZSMALLOC  # 4: zsmalloc alone (framework off) / compactable (on)
    blk(5)[:] = PageKind.NOPAGE  # 5: a hole, not counted
    blk(6)[0] = PageKind.OFFLINE
    blk(6)[1] = PageKind.SLAB  # 6: balloon + slab: several (off), slab alone (on)
    blk(7)[:] = PageKind.COMPOUND  # 7: a THP: compound alone
    return k


@pytest.mark.parametrize("nonlru", [False, True])
def test_block_obstacles_synthetic(nonlru: bool) -> None:
    k = _synthetic_kinds()
    mv = movable_kinds(nonlru_movable=nonlru, compact_unevictable_allowed=True)
    b = block_obstacles(k, 0, k.size, 9, mv, nonlru_movable=nonlru)
    assert (b.blocks, b.holes, b.free) == (7, 1, 1)
    if nonlru:
        assert b.compactable == 2  # blocks 1, 4
        assert b.sole == {"slab": 2, "compound": 1}  # blocks 2, 6; 7
        assert b.several == 1  # block 3
        assert b.present == {"slab": 3, "compound": 1, "pgtable": 1}
    else:
        assert b.compactable == 1
        assert b.sole == {"compound": 1, "slab": 1, "zsmalloc": 1}
        assert b.several == 2  # blocks 3, 6
        assert b.present == {"slab": 3, "compound": 1, "offline": 1, "pgtable": 1, "zsmalloc": 1}
    # order 3: 512 blocks; block 2's slab page at pfn 1031 sits alone in block 128 with LRU pages
    b3 = block_obstacles(k, 0, k.size, 3, mv)
    assert b3.blocks + b3.holes == 512 and b3.holes == 64
    assert b3.free + b3.compactable + sum(b3.sole.values()) + b3.several == b3.blocks
    # a range not aligned to the order: only blocks wholly inside count
    assert block_obstacles(k, 1, 4095, 9, mv).blocks + block_obstacles(k, 1, 4095, 9, mv).holes == 6


def test_unevictable_follows_compact_unevictable_allowed() -> None:
    k = np.full(1024, PageKind.BUDDY, np.uint8)
    k[3] = PageKind.UNEVICTABLE
    on = block_obstacles(
        k, 0, 1024, 9, movable_kinds(nonlru_movable=False, compact_unevictable_allowed=True)
    )
    off = block_obstacles(
        k, 0, 1024, 9, movable_kinds(nonlru_movable=False, compact_unevictable_allowed=False)
    )
    assert (on.compactable, on.sole) == (1, {})
    assert (off.compactable, off.sole) == (0, {"unevictable": 1})


# -- synthetic snapshots: verdict edge cases ------------------------------------------------

ZONEINFO = """Node 0, zone   Normal
  pages free     {free}
        boost    0
        min      {min}
        low      {low}
        high     {high}
        spanned  {spanned}
        present  {spanned}
        managed  {spanned}
        cma      0
        protection: (0, 0)
      nr_free_pages {free}
      nr_free_cma  0
  start_pfn:           0
"""


def write_snap(
    d: Path,
    nr_free: list[int],
    *,
    min_: int = 1000,
    low: int = 1250,
    high: int = 1500,
    free: int | None = None,
    spanned: int = 1 << 16,
    pagetypeinfo: str | None = None,
    sysctl: str | None = None,
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    counts = "".join(f"{n:6d} " for n in nr_free)
    (d / "buddyinfo").write_text(f"Node 0, zone   Normal {counts}\n")
    total = sum(n << o for o, n in enumerate(nr_free)) if free is None else free
    (d / "zoneinfo").write_text(
        ZONEINFO.format(free=total, min=min_, low=low, high=high, spanned=spanned)
    )
    if pagetypeinfo is not None:
        (d / "pagetypeinfo").write_text(pagetypeinfo)
    if sysctl is not None:
        (d / "vm_sysctl").write_text(sysctl)
    return d


def one(d: Path, o: int, **kw: object):  # type: ignore[no-untyped-def]
    r = inspect_snapshot(load_snapshot(d), **kw)  # type: ignore[arg-type]
    return next(x for x in r.zones[0].orders if x.order == o)


def test_verdict_succeeds_now(tmp_path: Path) -> None:
    """One order-5 block and 20000 order-0 pages: order 5: 20032 - 31 = 20001 > min 1000."""
    o = one(write_snap(tmp_path, [20000, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]), 5)
    assert o.verdict is Verdict.SUCCEEDS_NOW and o.free_blocks == 1


def test_verdict_likely_after_compaction(tmp_path: Path) -> None:
    """20000 order-0 and 2000 order-1 pages (24000 free, 22000 blocks): order 9 has no block;
    fragindex = 1000 - (1000 + 24000000 // 512) // 22000 = 1000 - 47875 // 22000 = 998 > 500;
    order-0 check: 24000 > low 1250 + gap 1024 -> COMPACT_CONTINUE."""
    o = one(write_snap(tmp_path, [20000, 2000, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 9)
    assert o.fragmentation_index == 998
    assert o.compaction_suitable is CompactResult.COMPACT_CONTINUE
    assert o.verdict is Verdict.LIKELY_AFTER_COMPACTION


def test_verdict_fails_watermark_gap(tmp_path: Path) -> None:
    """2200 free order-0 pages: order 9 needs low 1250 + gap 1024 = 2274 >= 2200 -> SKIPPED,
    although fragindex = 1000 - (1000 + 2200000 // 512) // 2200 = 1000 - 5296 // 2200 = 998."""
    o = one(write_snap(tmp_path, [2200] + [0] * 10), 9)
    assert o.fragmentation_index == 998
    assert o.compaction_suitable is CompactResult.COMPACT_SKIPPED
    assert o.verdict is Verdict.FAILS_LACK_OF_MEMORY
    assert "2200 free <= low 1250 + gap 1024 + reserve 0: reclaim first" in o.reason


def test_verdict_fails_fragindex_below_threshold(tmp_path: Path) -> None:
    """100 order-8 blocks (25600 pages) and nothing else: order 9: fragindex = 1000 - (1000 +
    25600000 // 512) // 100 = 1000 - 51000 // 100 = 490 <= 500 -> COMPACT_NOT_SUITABLE_ZONE
    (lack of memory), though the order-0 check passes (25600 > 1250 + 1024). With
    extfrag_threshold = 400 from the snapshot's vm_sysctl, 490 > 400 -> compaction continues."""
    d = write_snap(tmp_path / "a", [0] * 8 + [100, 0, 0])
    o = one(d, 9)
    assert o.fragmentation_index == 490
    assert o.compaction_suitable is CompactResult.COMPACT_NOT_SUITABLE_ZONE
    assert o.verdict is Verdict.FAILS_LACK_OF_MEMORY
    assert "fragindex 0.490 <= extfrag_threshold 0.500: lack of memory" in o.reason
    d2 = write_snap(
        tmp_path / "b",
        [0] * 8 + [100, 0, 0],
        sysctl="/proc/sys/vm/extfrag_threshold:400\n/proc/sys/vm/lowmem_reserve_ratio:256\t32\n",
    )
    r = inspect_snapshot(load_snapshot(d2))
    assert (r.extfrag_threshold, r.extfrag_threshold_source) == (400, "vm_sysctl")
    assert r.zones[0].orders[8].verdict is Verdict.LIKELY_AFTER_COMPACTION
    assert one(d, 9, extfrag_threshold=400).verdict is Verdict.LIKELY_AFTER_COMPACTION


def test_non_costly_order_ignores_fragindex(tmp_path: Path) -> None:
    """6.1 consults the index for order > 3 only. 3000 order-2 blocks (12000 pages):
    fragindex(3) = 1000 - (1000 + 12000000 // 8) // 3000 = 1000 - 1501000 // 3000 = 500 <= 500,
    yet order 3 continues (12000 > min 1000 + gap 16). The same shape one order up, 3000
    order-3 blocks (24000 pages): fragindex(4) = 1000 - (1000 + 24000000 // 16) // 3000 = 500
    and order 4 is costly -> COMPACT_NOT_SUITABLE_ZONE."""
    o3 = one(write_snap(tmp_path / "a", [0, 0, 3000] + [0] * 8), 3)
    assert o3.fragmentation_index == 500
    assert o3.compaction_suitable is CompactResult.COMPACT_CONTINUE
    assert o3.verdict is Verdict.LIKELY_AFTER_COMPACTION
    assert o3.reason.endswith("order <= 3: fragindex not consulted")
    o4 = one(write_snap(tmp_path / "b", [0, 0, 0, 3000] + [0] * 7), 4)
    assert o4.fragmentation_index == 500
    assert o4.compaction_suitable is CompactResult.COMPACT_NOT_SUITABLE_ZONE


def test_watermark_boundary(tmp_path: Path) -> None:
    """__zone_watermark_ok fails when free - (2^order - 1) <= min + reserve (not <)."""
    # order 1: 1002 - 1 = 1001 > 1000 passes; 1001 - 1 = 1000 fails
    ok = one(write_snap(tmp_path / "a", [0] * 10 + [1], free=1002), 1)
    assert ok.verdict is Verdict.SUCCEEDS_NOW
    bad = one(write_snap(tmp_path / "b", [0] * 10 + [1], free=1001), 1)
    assert bad.watermark_ok is False and bad.verdict is Verdict.FAILS_LACK_OF_MEMORY
    assert bad.reason.startswith("1000 usable free <= min 1000 + reserve 0;")


def pagetypeinfo(free: dict[str, list[int]], blocks: dict[str, int]) -> str:
    """A one-zone /proc/pagetypeinfo in the kernel's layout."""
    types = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
    hdr = "Free pages count per migrate type at order"
    lines = ["Page block order: 9", "Pages per block:  512", "", f"{hdr:<43s} "]
    lines[-1] += "".join(f"{o:6d} " for o in range(11))
    for t in types:
        counts = free.get(t, [0] * 11)
        lines.append(f"Node {0:4d}, zone {'Normal':>8s}, type {t:>12s} ")
        lines[-1] += "".join(f"{n:6d} " for n in counts)
    lines += ["", f"{'Number of blocks type':<23s}" + "".join(f"{t:>12s} " for t in types)]
    lines.append("Node 0, zone   Normal " + "".join(f"{blocks.get(t, 0):12d} " for t in types))
    return "\n".join(lines) + "\n"


PTI_HIGHATOMIC = pagetypeinfo(
    {"Unmovable": [20000] + [0] * 10, "HighAtomic": [0] * 9 + [1, 0]},
    {"Unmovable": 10, "Movable": 117, "HighAtomic": 1},
)


def test_block_only_in_highatomic_reserve(tmp_path: Path) -> None:
    """The only order-9 block is on the HighAtomic list, which GFP_KERNEL may not use; the
    reserve (1 block = 512 pages) is also subtracted from the free count. fragindex = -1000,
    so compaction_suitable continues (the kernel would compact)."""
    d = write_snap(tmp_path, [20000] + [0] * 8 + [1, 0], pagetypeinfo=PTI_HIGHATOMIC)
    r = inspect_snapshot(load_snapshot(d))
    z = r.zones[0]
    assert z.nr_reserved_highatomic == 512 and z.free_lists_from == "pagetypeinfo"
    o = z.orders[8]
    assert o.fragmentation_index == -1000 and not o.watermark_ok
    assert o.compaction_suitable is CompactResult.COMPACT_CONTINUE
    assert "not usable by this allocation" in o.reason
    assert "Unmovable/Movable/Reclaimable lists" in o.reason
    # outside the HighAtomic list there is no block of order >= 1 at all
    assert not any(o.watermark_ok for o in z.orders)


def test_pure_checks() -> None:
    nonempty = [True] + [False] * 10
    assert zone_watermark_ok(5000, 0, 1000, 0, nonempty)
    assert not zone_watermark_ok(5000, 1, 1000, 0, nonempty)
    assert not zone_watermark_ok(5000, 0, 1000, 4000, nonempty)  # lowmem reserve
    assert not zone_watermark_ok(5000, 0, 1000, 0, nonempty, nr_free_cma=4000)
    assert zone_watermark_ok(5000, 0, 1000, 0, nonempty, nr_free_cma=4000, alloc_cma=True)
    r = compaction_suitable(4, 5000, 1000, 2000, 0, nonempty, 900)
    assert r is CompactResult.COMPACT_CONTINUE
    assert compaction_suitable(4, 2031, 1000, 2000, 0, nonempty, 900) is (
        CompactResult.COMPACT_SKIPPED  # 2031 <= low 2000 + gap 32
    )
    assert compaction_suitable(3, 1017, 1000, 2000, 0, nonempty, 900) is (
        CompactResult.COMPACT_CONTINUE  # non-costly: min 1000 + gap 16 < 1017
    )


# -- loading, errors, output ----------------------------------------------------------------


def test_missing_buddyinfo_lists_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "zoneinfo").write_text("x")
    with pytest.raises(FragsimError, match=r"missing buddyinfo .* holds: zoneinfo"):
        load_snapshot(tmp_path)
    with pytest.raises(FragsimError, match="not a snapshot directory"):
        load_snapshot(tmp_path / "nope")


def test_malformed_file_names_file_and_line(tmp_path: Path) -> None:
    d = write_snap(tmp_path, [1] * 11)
    (d / "zoneinfo").write_text((d / "zoneinfo").read_text().replace("min      1000", "min  x"))
    with pytest.raises(ParseError) as e:
        load_snapshot(d)
    assert e.value.path.endswith("zoneinfo") and e.value.lineno == 4
    (d / "buddyinfo").write_text("Node 0, zone   Normal 1 2\nNode 0, zone Movable oops\n")
    with pytest.raises(ParseError, match=r"buddyinfo:2: expected"):
        load_snapshot(d)


def test_vm_sysctl_formats() -> None:
    assert parse_vm_sysctl(
        "/proc/sys/vm/extfrag_threshold:500\nvm.swappiness = 60\n\n"
        "/proc/sys/vm/lowmem_reserve_ratio:256\t256\t32\t0\t0\n"
    ) == {
        "extfrag_threshold": "500",
        "swappiness": "60",
        "lowmem_reserve_ratio": "256\t256\t32\t0\t0",
    }
    with pytest.raises(ParseError, match=r"<vm_sysctl>:2:"):
        parse_vm_sysctl("vm.a = 1\nbogus\n")


def test_gzipped_text_and_page_owner_mixed_count(tmp_path: Path) -> None:
    """page_owner dumps give the kernel's mixed count: a block counts once, at its first
    allocation whose migratetype differs from the block's (CMA blocks under Movable)."""
    d = write_snap(tmp_path, [0] * 10 + [1])
    rec = (
        "Page allocated via order 0, mask 0xcc0(GFP_KERNEL), pid 1, tgid 1 (init), ts 1 ns, "
        "free_ts 0 ns\nPFN {pfn} type {t} Block {b} type {bt} Flags 0x0()\n f+0x1/0x2\n\n"
    )
    text = "".join(
        rec.format(pfn=p, t=t, b=p >> 9, bt=bt)
        for p, t, bt in [
            (10, "Unmovable", "Movable"),  # block 0 mixed (Movable)
            (11, "Unmovable", "Movable"),  # same block: counted once
            (600, "Movable", "Movable"),  # block 1 clean
            (1100, "Movable", "Unmovable"),  # block 2 mixed (Unmovable)
            (1600, "Movable", "CMA"),  # block 3: counted under Movable
        ]
    )
    (d / "page_owner.gz").write_bytes(gzip.compress(text.encode()))
    r = inspect_snapshot(load_snapshot(d))
    m = r.zones[0].mixed
    assert m is not None and m.source == "page_owner" and not m.estimate
    assert m.by_type == {"Movable": 2, "Unmovable": 1} and m.total == 3


def test_synthetic_kpageflags_through_classify_and_report(tmp_path: Path) -> None:
    """Raw kpageflags bits -> classify -> the obstacle ranking and its sentence."""
    kinds = _synthetic_kinds()
    bits = {
        PageKind.BUDDY: 1 << KPF_BUDDY,
        PageKind.LRU_ANON: (1 << KPF_ANON) | (1 << KPF_LRU),
        PageKind.LRU_FILE: 1 << KPF_LRU,
        PageKind.SLAB: 1 << KPF_SLAB,
        PageKind.PGTABLE: 1 << KPF_PGTABLE,
        PageKind.ZSMALLOC: 1 << KPF_PRIVATE,
        PageKind.NOPAGE: 1 << KPF_NOPAGE,
        PageKind.OFFLINE: 1 << KPF_OFFLINE,
        PageKind.COMPOUND: (1 << KPF_THP) | (1 << KPF_COMPOUND_TAIL),
    }
    flags = np.zeros(kinds.size, np.uint64)
    for k, b in bits.items():
        flags[kinds == k] = b
    flags[7 * 512] = (1 << KPF_THP) | (1 << KPF_COMPOUND_HEAD)
    assert np.array_equal(classify(flags), kinds)
    d = write_snap(tmp_path, [0] * 11, spanned=kinds.size)
    (d / "kpageflags").write_bytes(flags.tobytes())
    r = inspect_snapshot(load_snapshot(d))
    (ob,) = r.obstacles
    off = ob.by_order[0]
    assert (off.order, off.nonlru_movable, off.blocks) == (9, False, 7)
    assert off.sole == {"compound": 1, "slab": 1, "zsmalloc": 1}
    text = format_report(r)
    assert "Slab pages are the only obstacle in 1 of 7 pageblocks (14%) of zone Normal" in text
    assert "non-LRU movable framework on" in text
    m = r.zones[0].mixed
    # kpageflags estimate: movable and unmovable allocations together in blocks 2 (file LRU +
    # slab) and 6 (balloon + slab); 3 is unmovable-only, 4 and 7 movable-only
    assert m is not None and m.estimate and m.source == "kpageflags" and m.total == 2


def test_json_and_text_output(s02: InspectReport) -> None:
    d = json.loads(s02.to_json())
    assert d["zones"][1]["orders"][0]["verdict"] == "succeeds now"
    assert d["zones"][1]["orders"][0]["compaction_suitable"] == "COMPACT_SUCCESS"
    assert d["obstacles"][1]["zone"] == "DMA32"
    text = format_report(s02)
    assert "== Node 0, zone DMA32: 125033 pages free in buddyinfo, 125087 in zoneinfo" in text
    assert "   10          95     97280    0.221    -1.000  succeeds now" in text


def test_cli_inspect(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["inspect", str(ORACLE / "s02_fragmented")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fragsim inspect ") and "What holds high-order blocks" in out
    assert main(["inspect", "--json", str(ORACLE / "s00_boot")]) == 0
    assert json.loads(capsys.readouterr().out)["pageblock_order"] == 9
    assert main(["inspect", str(tmp_path)]) == 2
    assert "missing buddyinfo" in capsys.readouterr().err
    (tmp_path / "buddyinfo").write_text("garbage\n")
    assert main(["inspect", str(tmp_path)]) == 2
    assert f"{tmp_path / 'buddyinfo'}:1: expected" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["inspect"])
    with pytest.raises(SystemExit):
        main(["inspect", "--live", str(tmp_path)])
