"""Memory maps: page classification of simulated machines and of kpageflags snapshots, the
renderer's layout and aggregation, and the PNG figure."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fragsim.analysis.inspect import load_snapshot
from fragsim.mm import internal as I
from fragsim.mm import page_alloc as pa
from fragsim.mm.gfp import __GFP_COMP, __GFP_RECLAIMABLE, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import IsolateMode, MigrateMode, MigrateResult, SetPageMovable
from fragsim.mm.mmzone import (
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    MIGRATETYPE_NAMES,
)
from fragsim.mm.page import (
    Page,
    PG_anon,
    PG_lru,
    PG_offline,
    PG_pcp,
    PG_slab,
    PG_swapbacked,
    PG_table,
    PG_unevictable,
)
from fragsim.parsers import PageKind, classify, read_kpageflags
from fragsim.parsers import kpageflags as kpf
from fragsim.viz.memmap import (
    KIND_COLOURS,
    MIGRATETYPE_COLOURS,
    MapKind,
    MemMap,
    classify_kpageflags,
    classify_machine,
    infer_free_order,
    kind_counts,
    legend,
    memmap_figure,
    memmap_from_machine,
    memmap_from_snapshot,
    render,
    write_png,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
S02 = FIXTURES / "real" / "oracle-6.1" / "s02_fragmented"
S00 = FIXTURES / "real" / "oracle-6.1" / "s00_boot"
ANON = PG_lru | PG_anon | PG_swapbacked


@dataclass
class Driver:
    """A movable_operations that is never asked to move anything here."""

    name: str

    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        raise AssertionError("not called")

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        raise AssertionError("not called")

    def putback_page(self, page: Page) -> None:
        raise AssertionError("not called")


def flat(pages: int = 4096) -> Machine:
    return Machine(f"flat:{pages}", nr_cpus=1, config_thp=False, watermark_boost_factor=0)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def free_by_order(m: Machine) -> dict[MapKind, int]:
    """Free pages by order as the allocator counts them: nr_free, plus pcp pages as order 0."""
    nr = m.state.nr_free.sum(axis=0)
    out = {MapKind(o): int(nr[o]) << o for o in range(11) if nr[o]}
    pcp = int(m.state.pcp[:, :, I.PCP_COUNT].sum())
    if pcp:
        out[MapKind.FREE_0] = out.get(MapKind.FREE_0, 0) + pcp
    return out


def hand_built() -> tuple[Machine, dict[MapKind, int]]:
    """flat:4096 with one block of every kind; returns the machine and the allocated kinds."""
    m = flat()
    allocs = [
        (GFP_KERNEL, 0, PG_slab),  # slab, unmovable
        (GFP_KERNEL | __GFP_RECLAIMABLE, 2, PG_slab),  # slab, reclaimable: 4 pages
        (GFP_HIGHUSER_MOVABLE, 3, ANON),  # anon, non-compound: tails have no flags
        (GFP_HIGHUSER_MOVABLE | __GFP_COMP, 9, ANON),  # a THP: head + 511 PG_tail pages
        (GFP_HIGHUSER_MOVABLE, 0, PG_lru),  # page cache
        (GFP_HIGHUSER_MOVABLE, 0, PG_lru | PG_unevictable),
        (GFP_KERNEL, 1, PG_table),
        (GFP_KERNEL, 2, 0),  # e.g. a kernel stack: no telling flag
        (GFP_HIGHUSER_MOVABLE, 0, PG_offline),  # an inflated balloon page
    ]
    pfns = [m.alloc_pages(g, o, page_flags=f) for g, o, f in allocs]
    assert min(pfns) >= 0
    drivers = [Driver("zsmalloc"), Driver("balloon"), Driver("gpu")]
    for d in drivers:
        for _ in range(2 if d.name == "gpu" else 1):
            pfn = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
            SetPageMovable(m, pfn, d)
    return m, {
        MapKind.SLAB_UNMOVABLE: 1,
        MapKind.SLAB_RECLAIMABLE: 4,
        MapKind.LRU_ANON: 8 + 512,
        MapKind.LRU_FILE: 1,
        MapKind.UNEVICTABLE: 1,
        MapKind.PGTABLE: 2,
        MapKind.OTHER_KERNEL: 4,
        MapKind.BALLOON: 1 + 1,
        MapKind.ZSMALLOC: 1,
        MapKind.DRIVER_MOVABLE: 2,
    }


# --------------------------------------------------------------------------------------------
# classification of a simulated machine


def test_boot_flat_is_all_free_max_order() -> None:
    m = flat()
    assert kind_counts(classify_machine(m)) == {MapKind.FREE_10: 4096}


def test_hand_built_kinds_exact() -> None:
    m, used = hand_built()
    kinds = classify_machine(m)
    assert kinds.dtype == np.uint8 and kinds.shape == (4096,)
    got = kind_counts(kinds)
    free = {k: v for k, v in got.items() if k <= MapKind.FREE_10}
    assert {k: v for k, v in got.items() if k > MapKind.FREE_10} == used
    assert free == free_by_order(m)
    assert sum(free.values()) == 4096 - sum(used.values())
    m.drain_all_pages()  # pcp pages go back to the buddy lists, and merge
    got = kind_counts(classify_machine(m))
    assert {k: v for k, v in got.items() if k > MapKind.FREE_10} == used
    assert {k: v for k, v in got.items() if k <= MapKind.FREE_10} == free_by_order(m)


def test_blocks_cover_their_pages_and_heads_decide() -> None:
    m = flat()
    a = m.alloc_pages(GFP_KERNEL | __GFP_RECLAIMABLE, 3, page_flags=PG_slab)
    b = m.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_COMP, 4, page_flags=ANON)
    kinds = classify_machine(m)
    assert set(kinds[a : a + 8]) == {MapKind.SLAB_RECLAIMABLE}
    assert set(kinds[b : b + 16]) == {MapKind.LRU_ANON}
    # the page after each block is free (and not of the block's kind)
    assert kinds[a + 8] <= MapKind.FREE_10 and kinds[b + 16] <= MapKind.FREE_10


def test_pcp_pages_count_as_free_order_0() -> None:
    m = flat()
    p = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 3, page_flags=ANON)
    m.free_pages(p, 3)  # an order-3 block goes to a pcp list (pcp_allowed_order)
    assert m.state.flags[p] & PG_pcp  # on a per-CPU list, not in the buddy
    kinds = classify_machine(m)
    assert set(kinds[p : p + 8]) == {MapKind.FREE_0}
    m.drain_all_pages()
    assert kind_counts(classify_machine(m)) == {MapKind.FREE_10: 4096}


def test_driver_names_and_legend_label() -> None:
    m, _ = hand_built()
    mm = memmap_from_machine(m)
    assert mm.driver_names == ("gpu",)  # zsmalloc and balloon have kinds of their own
    assert mm.label(MapKind.DRIVER_MOVABLE) == "driver movable (gpu)"
    assert mm.source == "simulated flat:4096"
    assert mm.zones == (("Normal", 0, 4096),)


def test_pageblock_migratetypes_as_the_allocator_reads_them() -> None:
    m, _ = hand_built()
    mm = memmap_from_machine(m)
    pbo = m.pageblock_order
    want = [pa.get_pageblock_migratetype(m.state, i << pbo) for i in range(4096 >> pbo)]
    assert mm.pageblock_mt.tolist() == want
    # the reclaimable allocation claimed a block of its own; THP and movable pages stay Movable
    assert MIGRATE_RECLAIMABLE in want and MIGRATE_UNMOVABLE in want
    assert want.count(MIGRATE_MOVABLE) >= 4


def test_boot_x86_64_holes_reserved_and_zones() -> None:
    m = Machine("x86_64-1g")
    c = kind_counts(classify_machine(m))
    node = m.profile.nodes[0]
    assert c[MapKind.HOLE] == sum(b - a for a, b in node.holes) == 97
    # pfn 0 and the pfns past the DMA32 zone's end are PG_reserved pages of no zone
    assert c[MapKind.RESERVED] == sum(b - a for a, b in node.reserved) + 1 + (262144 - 262112)
    free = sum(v for k, v in c.items() if k <= MapKind.FREE_10)
    assert free == sum(free_by_order(m).values())
    assert (
        memmap_from_machine(m).describe_zones() == "zones: DMA pfns 1-4095, DMA32 pfns 4096-262111"
    )


def test_compaction_before_after_keeps_every_used_page() -> None:
    m = flat(8192)
    rng = np.random.default_rng(3)
    pfns = [m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, page_flags=ANON) for _ in range(4000)]
    for p in rng.permutation(pfns)[:3000]:
        m.free_pages(int(p), 0)
    m.drain_all_pages()
    before = memmap_from_machine(m)
    m.compact_memory()
    m.drain_all_pages()
    after = memmap_from_machine(m)
    assert before.counts()[MapKind.LRU_ANON] == after.counts()[MapKind.LRU_ANON] == 1000
    high = slice(MapKind.FREE_9, MapKind.FREE_10 + 1)
    assert after.counts()[high].sum() > before.counts()[high].sum()
    e = {x.label: x.counts for x in legend([before, after])}
    assert e["LRU anon"] == (1000, 1000)


# --------------------------------------------------------------------------------------------
# kpageflags snapshots


def test_infer_free_order() -> None:
    free = np.zeros(32, bool)
    free[[*range(8), 8, 10, 11, 12, 14, 15]] = True
    free[16:32] = True
    got = infer_free_order(free)
    assert got[:8].tolist() == [3] * 8
    assert got[8:16].tolist() == [0, -1, 1, 1, 0, -1, 1, 1]
    assert got[16:].tolist() == [4] * 16
    all_free = infer_free_order(np.ones(3000, bool))
    # 3000 = 2 x 1024 + 512 + 256 + 128 + 32 + 16 + 8: capped at order 10, aligned blocks
    sizes = [1024, 1024, 512, 256, 128, 32, 16, 8]
    assert all_free.tolist() == [s.bit_length() - 1 for s in sizes for _ in range(s)]


def bits(*names: int) -> int:
    return sum(1 << b for b in names)


@pytest.fixture
def tiny_snapshot(tmp_path: Path) -> Path:
    """1024 pfns (two order-9 pageblocks) with hand-placed kinds, a page_owner record in the
    second pageblock, no pagetypeinfo (pageblock order 9 by default)."""
    f = np.zeros(1024, np.uint64)
    f[0:16] = bits(kpf.KPF_BUDDY)  # one order-4 free block
    f[16] = bits(kpf.KPF_BUDDY)  # order 0 (17 is used)
    f[32:64] = bits(kpf.KPF_SLAB)
    f[64:128] = bits(kpf.KPF_LRU, kpf.KPF_ANON)
    f[128] = bits(kpf.KPF_PGTABLE)
    f[129] = bits(kpf.KPF_OFFLINE)
    f[130] = bits(kpf.KPF_PRIVATE)  # zsmalloc's first page of a zspage
    f[131] = bits(kpf.KPF_LRU)
    f[132] = bits(kpf.KPF_RESERVED)
    f[133] = bits(kpf.KPF_NOPAGE)
    f[134:136] = bits(kpf.KPF_COMPOUND_HEAD, kpf.KPF_THP)
    f[512:1024] = bits(kpf.KPF_BUDDY)  # a whole free pageblock
    d = tmp_path / "snap"
    d.mkdir()
    (d / "buddyinfo").write_text(
        "Node 0, zone   Normal      1      0      0      0      1      0      0      0      0"
        "      1      0 \n"
    )
    (d / "kpageflags.gz").write_bytes(gzip.compress(f.tobytes()))
    (d / "page_owner").write_text(
        "Page allocated via order 0, mask 0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), pid 1, "
        "tgid 1 (init), ts 1 ns, free_ts 0 ns\n"
        "PFN 600 type Movable Block 1 type Reclaimable Flags 0x0()\n"
        " post_alloc_hook+0x1ed/0x210\n\n"
    )
    return d


def test_snapshot_kinds_exact(tiny_snapshot: Path) -> None:
    mm = memmap_from_snapshot(load_snapshot(tiny_snapshot))
    assert kind_counts(mm.kinds) == {
        MapKind.FREE_0: 1,
        MapKind.FREE_4: 16,
        MapKind.FREE_9: 512,
        MapKind.SLAB: 32,
        MapKind.LRU_ANON: 64,
        MapKind.PGTABLE: 1,
        MapKind.BALLOON: 1,
        MapKind.ZSMALLOC: 1,
        MapKind.LRU_FILE: 1,
        MapKind.RESERVED: 1,
        MapKind.HOLE: 1,
        MapKind.COMPOUND: 2,
        MapKind.OTHER_KERNEL: 1024 - 1 - 16 - 512 - 32 - 64 - 8,
    }
    assert mm.pageblock_order == 9
    # page_owner says block 1 is Reclaimable; block 0 has no record
    assert mm.pageblock_mt.tolist() == [-1, MIGRATE_RECLAIMABLE]
    assert any("page_owner" in n for n in mm.notes)


def test_snapshot_without_kpageflags_is_an_error(tmp_path: Path) -> None:
    from fragsim.errors import FragsimError

    (tmp_path / "buddyinfo").write_text("Node 0, zone   Normal  1 0 0 0 0 0 0 0 0 0 0\n")
    with pytest.raises(FragsimError, match="no kpageflags"):
        memmap_from_snapshot(load_snapshot(tmp_path))


@pytest.mark.parametrize("snap", [S00, S02], ids=["s00_boot", "s02_fragmented"])
def test_real_snapshot_agrees_with_kpageflags_and_buddyinfo(snap: Path) -> None:
    s = load_snapshot(snap)
    mm = memmap_from_snapshot(s)
    assert mm.pageblock_order == 9 and mm.kinds.size == 262144
    pk = kind_counts_pagekind(classify(read_kpageflags(snap / "kpageflags.gz")))
    c = mm.counts()
    assert int(c[: MapKind.FREE_10 + 1].sum()) == pk[PageKind.BUDDY]
    assert int(c[MapKind.SLAB]) == pk[PageKind.SLAB]
    assert int(c[MapKind.RESERVED]) == pk[PageKind.RESERVED]
    assert int(c[MapKind.OTHER_KERNEL]) == pk[PageKind.OTHER_KERNEL]
    # the DMA zone is quiet while the snapshot is read: its free blocks are buddyinfo's exactly
    dma = next(z for z in mm.zones if z[0] == "DMA")
    cd = np.bincount(mm.kinds[dma[1] : dma[2]], minlength=len(MapKind))
    row = next(r for r in s.buddyinfo if r.zone == "DMA")
    assert [int(cd[o]) >> o for o in range(11)] == list(row.nr_free)
    assert (mm.pageblock_mt == -1).all()  # no page_owner: block types unknown


def kind_counts_pagekind(kinds: np.ndarray) -> dict[PageKind, int]:
    n = np.bincount(kinds, minlength=len(PageKind))
    return {k: int(n[k]) for k in PageKind}


def test_classify_kpageflags_maps_every_pagekind() -> None:
    f = np.array(
        [bits(kpf.KPF_SLAB), bits(kpf.KPF_LRU, kpf.KPF_UNEVICTABLE), bits(kpf.KPF_SWAPBACKED), 0],
        np.uint64,
    )
    assert classify_kpageflags(f).tolist() == [
        MapKind.SLAB,
        MapKind.UNEVICTABLE,
        MapKind.LRU_ANON,
        MapKind.OTHER_KERNEL,
    ]


# --------------------------------------------------------------------------------------------
# rendering


def synthetic(kinds: list[int] | np.ndarray, mts: list[int], pbo: int = 4) -> MemMap:
    return MemMap(
        kinds=np.asarray(kinds, np.uint8),
        pageblock_order=pbo,
        pageblock_mt=np.asarray(mts, np.int8),
        source="test",
    )


def test_page_mode_layout_pixel_exact() -> None:
    # pageblock order 4: 16 pages as a 4x4 tile; three pageblocks, two per row
    kinds = [MapKind.FREE_4] * 16 + [MapKind.SLAB_UNMOVABLE] * 16 + [MapKind.LRU_ANON] * 10
    mm = synthetic(kinds, [MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, -1])
    r = render(mm, mode="page", columns=2, target_pixels=16 * 42)
    assert (r.mode, r.cell, r.columns) == ("page", 4, 2)
    strip, gap, cell = 2, 1, 4  # tile = strip + 4 cells of 4 px + gap
    th, tw = strip + 4 * cell + gap, 4 * cell + gap
    assert r.rgb.shape == (gap + 2 * th, gap + 2 * tw, 3)

    def page_px(pfn: int) -> tuple[int, int, int]:
        b, i = divmod(pfn, 16)
        y = gap + (b // 2) * th + strip + (i // 4) * cell
        x = gap + (b % 2) * tw + (i % 4) * cell
        block = r.rgb[y : y + cell, x : x + cell].reshape(-1, 3)
        assert (block == block[0]).all()
        return tuple(int(v) for v in block[0])  # type: ignore[return-value]

    assert page_px(0) == rgb(KIND_COLOURS[MapKind.FREE_4])
    assert page_px(17) == rgb(KIND_COLOURS[MapKind.SLAB_UNMOVABLE])
    assert page_px(41) == rgb(KIND_COLOURS[MapKind.LRU_ANON])
    assert page_px(42) == (255, 255, 255)  # past the end of memory: background
    # migratetype strips above each tile; the grid line between tiles is background
    assert tuple(r.rgb[gap, gap]) == rgb(MIGRATETYPE_COLOURS[MIGRATE_MOVABLE])
    assert tuple(r.rgb[gap, gap + tw]) == rgb(MIGRATETYPE_COLOURS[MIGRATE_UNMOVABLE])
    assert tuple(r.rgb[gap + th, gap]) == rgb(MIGRATETYPE_COLOURS[-1])  # unknown
    assert tuple(r.rgb[gap + 5, gap + 4 * cell]) == (255, 255, 255)
    assert "one cell (4x4 pixels) per page" in r.describe()


def test_auto_mode_aggregates_when_pages_outnumber_cells() -> None:
    mm = synthetic([MapKind.FREE_0] * 64, [1, 1, 1, 1])
    assert render(mm).mode == "page"
    r = render(mm, max_cells=63)
    assert r.mode == "pageblock"
    assert r.describe().startswith("aggregated (more pages than pixels): each pageblock")


def test_pageblock_mode_is_a_stacked_bar_of_kinds() -> None:
    # block 0: 4 anon, 12 free order 2 (sorted by kind: free first); block 1: all holes
    kinds = [MapKind.LRU_ANON] * 4 + [MapKind.FREE_2] * 12 + [MapKind.HOLE] * 16
    r = render(synthetic(kinds, [MIGRATE_RECLAIMABLE, -1]), mode="pageblock", columns=2)
    assert (r.mode, r.cell) == ("pageblock", 8)
    strip, gap = 2, 1
    t0 = r.rgb[gap + strip : gap + strip + 8, gap : gap + 8]
    # 64 pixels for 16 pages: the top 3/4 free order 2, the bottom quarter anon, in bands
    assert (t0[:6] == rgb(KIND_COLOURS[MapKind.FREE_2])).all()
    assert (t0[6:] == rgb(KIND_COLOURS[MapKind.LRU_ANON])).all()
    t1 = r.rgb[gap + strip : gap + strip + 8, gap + 9 : gap + 17]
    assert (t1 == 0).all()  # hole: black
    assert tuple(r.rgb[gap, gap]) == rgb(MIGRATETYPE_COLOURS[MIGRATE_RECLAIMABLE])


def test_pageblock_mode_proportions_on_a_large_map() -> None:
    rng = np.random.default_rng(0)
    kinds = rng.choice([MapKind.FREE_0, MapKind.SLAB_UNMOVABLE], size=1 << 20, p=[0.75, 0.25])
    kinds[: 1 << 19] = MapKind.LRU_FILE
    mm = synthetic(kinds.astype(np.uint8), [1] * (1 << 11), pbo=9)
    r = render(mm, max_cells=1 << 19)
    assert r.mode == "pageblock"
    px = r.rgb.reshape(-1, 3)
    n = {k: int((px == rgb(KIND_COLOURS[k])).all(axis=1).sum()) for k in MapKind}
    assert n[MapKind.LRU_FILE] == 1024 * 64  # half the blocks, every pixel
    assert n[MapKind.FREE_0] / (1024 * 64) == pytest.approx(0.75, abs=0.02)
    assert n[MapKind.SLAB_UNMOVABLE] / (1024 * 64) == pytest.approx(0.25, abs=0.02)


def test_render_rejects_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        render(synthetic([0] * 16, [1]), mode="pixels")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# legend and figure


def test_legend_lists_present_kinds_and_pageblock_types() -> None:
    a = synthetic([MapKind.FREE_4] * 16 + [MapKind.ZSMALLOC] * 16, [1, 0])
    b = synthetic([MapKind.FREE_4] * 32, [1, 1])
    e = legend([a, b])
    assert [(x.label, x.counts, x.unit) for x in e] == [
        ("free, order 4", (16, 32), "pages"),
        ("zsmalloc", (16, 0), "pages"),
        (f"pageblock: {MIGRATETYPE_NAMES[0]}", (1, 0), "pageblocks"),
        (f"pageblock: {MIGRATETYPE_NAMES[1]}", (1, 2), "pageblocks"),
    ]


def test_png_holds_each_map_pixel_for_pixel(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    m, _ = hand_built()
    before = memmap_from_machine(m)
    m.drain_all_pages()
    after = memmap_from_machine(m)
    out = tmp_path / "map.png"
    write_png(out, [before, after], ["before", "after drain"])
    img = (mpimg.imread(out)[:, :, :3] * 255).round().astype(np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view
    for mm in (before, after):
        r = render(mm).rgb
        h, w = r.shape[:2]
        found = []
        for y in range(64):  # the maps sit under their titles, at the top
            # candidates: where row 1 (pageblock strips, not background) starts
            starts = windows(img[y + 1], (16, 3))[: img.shape[1] - w + 1, 0]
            for x in np.flatnonzero((starts == r[1, :16]).all(axis=(1, 2))):
                if np.array_equal(img[y : y + h, x : x + w], r):
                    found.append((y, int(x)))
        assert len(found) >= 1, "the rendered map is not in the PNG"
    fig = memmap_figure([before])
    assert fig.get_figwidth() * fig.dpi > render(before).rgb.shape[1]
    with pytest.raises(ValueError, match="titles"):
        memmap_figure([before, after], ["only one"])
