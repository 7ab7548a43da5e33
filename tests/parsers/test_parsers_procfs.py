"""procfs / debugfs text parsers against real Linux 6.1 and 6.18 files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragsim.errors import ParseError
from fragsim.parsers import (
    parse_buddyinfo,
    parse_extfrag,
    parse_meminfo,
    parse_pagetypeinfo,
    parse_vmstat,
    parse_zoneinfo,
)

REAL = Path(__file__).resolve().parent.parent / "fixtures" / "real"


def read_real(rel: str) -> str:
    return (REAL / rel).read_text()


S00 = "oracle-6.1/s00_boot"
S02 = "oracle-6.1/s02_fragmented"
FC = "firecracker-6.18"


# -- buddyinfo ------------------------------------------------------------------------------


def test_buddyinfo_61_rows() -> None:
    rows = parse_buddyinfo(read_real(f"{S00}/buddyinfo"), "buddyinfo")
    assert [(r.node, r.zone) for r in rows] == [(0, "DMA"), (0, "DMA32")]
    assert rows[0].nr_free == (0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 3)
    assert rows[1].nr_free == (0, 0, 1, 2, 1, 2, 1, 3, 1, 2, 223)
    frag = parse_buddyinfo(read_real(f"{S02}/buddyinfo"))
    assert frag[1].nr_free == (26101, 0, 1, 2, 2, 2, 2, 1, 1, 2, 95)
    assert frag[1].free_pages == 26101 + 4 + 16 + 32 + 64 + 128 + 128 + 256 + 1024 + 95 * 1024


def test_buddyinfo_618_three_zones() -> None:
    rows = parse_buddyinfo(read_real(f"{FC}/buddyinfo"))
    assert [r.zone for r in rows] == ["DMA", "DMA32", "Normal"]
    assert rows[2].nr_free == (2649, 4802, 2440, 1011, 568, 286, 326, 207, 112, 75, 520)


def test_buddyinfo_any_number_of_orders() -> None:
    rows = parse_buddyinfo("Node 1, zone   Normal      1      2      3 \n")
    assert rows[0].node == 1 and rows[0].nr_free == (1, 2, 3)


@pytest.mark.parametrize(
    ("text", "lineno", "what"),
    [
        ("Node 0, zone DMA 1 2 3\nNode 0, zone DMA32 1 x 3\n", 2, "expected 'Node N, zone"),
        ("Node 0, zone DMA 1 2 3\nNode 0, zone DMA32 1 2\n", 2, "expected 3 per-order counts"),
        ("garbage\n", 1, "expected 'Node N, zone"),
    ],
)
def test_buddyinfo_errors(text: str, lineno: int, what: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse_buddyinfo(text, "/proc/buddyinfo")
    assert ei.value.lineno == lineno and ei.value.path == "/proc/buddyinfo"
    assert str(ei.value).startswith(f"/proc/buddyinfo:{lineno}: {what}")


def test_buddyinfo_empty_is_an_error() -> None:
    with pytest.raises(ParseError, match="at least one"):
        parse_buddyinfo("\n", "b")


# -- pagetypeinfo ---------------------------------------------------------------------------

MT = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")


def test_pagetypeinfo_61() -> None:
    p = parse_pagetypeinfo(read_real(f"{S00}/pagetypeinfo"), "pagetypeinfo")
    assert (p.pageblock_order, p.pages_per_block, p.nr_orders) == (9, 512, 11)
    assert p.migratetypes == MT
    assert len(p.free) == 10
    mov = p.free[(0, "DMA32", "Movable")]
    assert mov.counts == (0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 223)
    assert not any(mov.capped)
    assert p.free[(0, "DMA", "Unmovable")].counts == (0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0)
    assert p.blocks[(0, "DMA")] == dict(zip(MT, (1, 7, 0, 0, 0), strict=True))
    assert p.blocks[(0, "DMA32")] == dict(zip(MT, (18, 480, 6, 0, 0), strict=True))
    assert p.mixed_blocks is None
    assert p.zones() == [(0, "DMA"), (0, "DMA32")]


def test_pagetypeinfo_618() -> None:
    p = parse_pagetypeinfo(read_real(f"{FC}/pagetypeinfo"))
    assert p.free[(0, "Normal", "Movable")].counts == (
        1804,
        4251,
        2137,
        730,
        396,
        199,
        280,
        184,
        103,
        74,
        520,
    )
    assert p.blocks[(0, "Normal")]["Reclaimable"] == 58


def _cap_dma32_movable_order0(text: str) -> str:
    """Edit the real file the way the kernel prints a list it stopped counting at 100000."""
    out = []
    for line in text.splitlines(keepends=True):
        if m := re.match(r"Node\s+0, zone\s+DMA32, type\s+Movable ", line):
            head, counts = line[: m.end()], line[m.end() :]
            toks = counts.split()
            toks[0] = ">100000"
            line = head + "".join(f"{t:>6} " for t in toks) + "\n"
        out.append(line)
    return "".join(out)


def test_pagetypeinfo_capped_count() -> None:
    text = _cap_dma32_movable_order0(read_real(f"{S00}/pagetypeinfo"))
    assert ">100000" in text
    p = parse_pagetypeinfo(text)
    mov = p.free[(0, "DMA32", "Movable")]
    assert mov.counts == (100000, 0, 0, 1, 0, 0, 1, 1, 1, 1, 223)
    assert mov.capped == (True,) + (False,) * 10


def test_pagetypeinfo_mixed_blocks_and_two_nodes() -> None:
    text = read_real(f"{S00}/pagetypeinfo")
    # pagetypeinfo_showmixedcount: "\n%-23s" "Number of mixed blocks " then "%12s " per type
    mixed = "\n" + f"{'Number of mixed blocks ':<23}" + "".join(f"{m:>12} " for m in MT) + "\n"
    for zone, vals in (("DMA", (0, 1, 0, 0, 0)), ("DMA32", (2, 3, 0, 0, 0))):
        mixed += f"Node 0, zone {zone:>8} " + "".join(f"{v:12d} " for v in vals) + "\n"
    node1 = text.replace("Node    0,", "Node    1,").replace("Node 0,", "Node 1,")
    p = parse_pagetypeinfo(text + mixed + node1)
    assert p.mixed_blocks is not None
    assert p.mixed_blocks[(0, "DMA32")] == dict(zip(MT, (2, 3, 0, 0, 0), strict=True))
    assert p.blocks[(1, "DMA32")] == p.blocks[(0, "DMA32")]
    assert p.free[(1, "DMA32", "Movable")] == p.free[(0, "DMA32", "Movable")]
    assert len(p.zones()) == 4


def test_pagetypeinfo_errors_name_the_line() -> None:
    lines = read_real(f"{S00}/pagetypeinfo").splitlines(keepends=True)
    bad = list(lines)
    bad[5] = bad[5].replace("      0      0      0", "      0      ?      0", 1)
    with pytest.raises(ParseError) as ei:
        parse_pagetypeinfo("".join(bad), "pti")
    assert ei.value.lineno == 6
    bad = list(lines)
    bad[6] = bad[6].rsplit(" ", 3)[0] + "\n"  # drop a count
    with pytest.raises(ParseError, match=r"pti:7: expected 11 per-order counts"):
        parse_pagetypeinfo("".join(bad), "pti")
    with pytest.raises(ParseError, match="missing 'Number of blocks type'"):
        parse_pagetypeinfo("".join(lines[:15]), "pti")


# -- zoneinfo -------------------------------------------------------------------------------


def test_zoneinfo_61() -> None:
    zones = parse_zoneinfo(read_real(f"{S00}/zoneinfo"), "zoneinfo")
    assert [z.zone for z in zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    dma, dma32, normal = zones[0], zones[1], zones[2]
    assert (dma.min, dma.low, dma.high, dma.boost, dma.promo) == (178, 222, 266, 0, None)
    assert (dma.spanned, dma.present, dma.managed, dma.cma) == (4095, 3998, 3840, 0)
    assert dma.protection == (0, 945, 945, 945, 945)
    assert dma.pages_free == 3808
    assert dma.node_stats is not None and len(dma.node_stats) == 43
    assert dma.node_stats["nr_inactive_anon"] == 1536
    assert list(dma.node_stats)[-1] == "pgpromote_candidate"
    assert dma.stats["nr_free_pages"] == 3808 and dma.stats["numa_interleave"] == 1
    assert [(p.cpu, p.count, p.high, p.batch, p.vm_stats_threshold) for p in dma.pagesets] == [
        (0, 0, 111, 1, 4),
        (1, 0, 111, 1, 4),
    ]
    assert (dma.node_unreclaimable, dma.start_pfn) == (0, 1)
    assert (dma32.min, dma32.low, dma32.high) == (11085, 13856, 16627)
    assert (dma32.managed, dma32.present, dma32.spanned) == (242034, 258016, 258016)
    assert dma32.protection == (0, 0, 0, 0, 0)
    assert dma32.node_stats is None
    assert [(p.count, p.high, p.batch) for p in dma32.pagesets] == [
        (2248, 6928, 63),
        (1107, 6928, 63),
    ]
    assert dma32.pcp_count == 3355 and dma32.start_pfn == 4096
    assert not normal.populated and normal.present == 0
    assert normal.stats == {} and normal.pagesets == () and normal.start_pfn is None
    assert zones[4].zone == "Device" and zones[4].protection == (0, 0, 0, 0, 0)


def test_zoneinfo_618_promo_and_high_min_max() -> None:
    zones = parse_zoneinfo(read_real(f"{FC}/zoneinfo"))
    dma32 = zones[1]
    assert (dma32.min, dma32.low, dma32.high, dma32.promo) == (7285, 9106, 10927, 12748)
    assert dma32.protection == (0, 0, 3968, 3968, 3968)
    p0 = dma32.pagesets[0]
    assert (p0.count, p0.high, p0.batch, p0.vm_stats_threshold) == (67, 4553, 63, 24)
    assert p0.extra == {"high_min": 4553, "high_max": 48307}
    assert zones[0].node_stats is not None and "nr_balloon_pages" in zones[0].node_stats
    assert zones[2].stats["nr_free_pages_blocks"] > 0
    assert zones[3].zone == "Movable" and zones[3].min == 32 and not zones[3].populated


def test_zoneinfo_old_kernel_layout() -> None:
    """3.x/4.x print 'scanned', no boost/cma, and the zone stats before 'protection'."""
    text = (
        "Node 0, zone      DMA\n  pages free     3977\n        min      5\n        low      6\n"
        "        high     7\n        scanned  0\n        spanned  4095\n        present  3998\n"
        "        managed  3977\n    nr_free_pages 3977\n    nr_alloc_batch 1\n"
        "        protection: (0, 3236, 15945, 15945)\n  pagesets\n    cpu: 0\n"
        "              count: 0\n              high:  0\n              batch: 1\n"
        "  vm stats threshold: 8\n  all_unreclaimable: 1\n  start_pfn:         1\n"
        "  inactive_ratio:    1\n"
    )
    (z,) = parse_zoneinfo(text)
    assert z.boost is None and z.cma is None and z.protection == (0, 3236, 15945, 15945)
    assert z.stats == {"nr_free_pages": 3977, "nr_alloc_batch": 1}
    assert z.extra == {"scanned": 0, "all_unreclaimable": 1, "inactive_ratio": 1}
    assert z.start_pfn == 1 and z.pagesets[0].vm_stats_threshold == 8


@pytest.mark.parametrize(
    ("lineno", "new", "match"),
    [
        (48, "        min      x\n", "expected 'name value'"),
        (55, "        protection: (0, 945 945)\n", "expected 'name value'"),
        (56, "\n", None),  # blank lines are fine
        (75, "              count: -\n", "expected 'name value'"),
        (77, "              batch  1\n", "expected a 'batch' counter inside the zone stats"),
    ],
)
def test_zoneinfo_errors(lineno: int, new: str, match: str | None) -> None:
    lines = read_real(f"{S00}/zoneinfo").splitlines(keepends=True)
    lines[lineno - 1] = new
    if match is None:
        parse_zoneinfo("".join(lines))
        return
    with pytest.raises(ParseError) as ei:
        parse_zoneinfo("".join(lines), "zoneinfo")
    assert ei.value.lineno == lineno and match in ei.value.msg


def test_zoneinfo_missing_watermark_names_zone_line() -> None:
    lines = read_real(f"{S00}/zoneinfo").splitlines(keepends=True)
    del lines[47]  # "        min      178"
    with pytest.raises(ParseError, match=r"zi:1: zone DMA has no 'min' line"):
        parse_zoneinfo("".join(lines), "zi")


# -- vmstat / meminfo -----------------------------------------------------------------------


def test_vmstat() -> None:
    v = parse_vmstat(read_real(f"{S00}/vmstat"))
    keys = list(v)
    assert keys[:3] == ["nr_free_pages", "nr_zone_inactive_anon", "nr_zone_active_anon"]
    assert keys[-1] == "nr_unstable" and v["nr_unstable"] == 0
    assert v["nr_free_pages"] == 233988
    assert keys.index("pgmigrate_success") < keys.index("compact_stall")
    v4 = parse_vmstat(read_real("oracle-6.1/s04_balloon_inflated/vmstat"))
    assert v4["balloon_inflate"] - v4["balloon_deflate"] == 131072
    assert "nr_free_pages_blocks" in parse_vmstat(read_real(f"{FC}/vmstat"))


def test_meminfo() -> None:
    m = parse_meminfo(read_real(f"{S00}/meminfo"))
    assert m["MemTotal"] == 983496 and m["MemFree"] == 935952
    assert m["Active(anon)"] == 3172 and m["HugePages_Total"] == 0
    assert m["Hugepagesize"] == 2048 and m["VmallocTotal"] == 34359738367
    assert list(m)[0] == "MemTotal"
    assert parse_meminfo(read_real(f"{FC}/meminfo"))["DirectMap1G"] == 25165824


def test_vmstat_meminfo_errors() -> None:
    with pytest.raises(ParseError, match=r"v:2: expected 'name value'"):
        parse_vmstat("a 1\nb\n", "v")
    with pytest.raises(ParseError, match=r"v:2: duplicate item 'a'"):
        parse_vmstat("a 1\na 2\n", "v")
    with pytest.raises(ParseError, match=r"m:1: expected 'Key:  value \[kB\]'"):
        parse_meminfo("MemTotal 12 kB\n", "m")


# -- extfrag --------------------------------------------------------------------------------


def test_extfrag_real() -> None:
    ext = parse_extfrag(read_real(f"{S00}/extfrag_index"), "extfrag_index")
    assert [r.zone for r in ext] == ["DMA", "DMA32"]
    assert all(v == -1000 for r in ext for v in r.values) and len(ext[0].values) == 11
    unus = parse_extfrag(read_real(f"{S00}/unusable_index"))
    assert unus[0].values == (0, 0, 0, 0, 0, 0, 8, 25, 58, 58, 193)
    unus2 = parse_extfrag(read_real(f"{S02}/unusable_index"))
    assert unus2[1].values == (0, 208, 208, 208, 208, 209, 210, 211, 212, 214, 222)


def test_extfrag_formats() -> None:
    (r,) = parse_extfrag("Node 0, zone   Normal  0.000  0.996 -1.000  1.000 \n")
    assert r.values == (0, 996, -1000, 1000)
    (r,) = parse_extfrag("Node 0, zone   Normal 0.734 1.000 \n")
    assert r.values == (734, 1000)
    with pytest.raises(ParseError, match=r"x:1:"):
        parse_extfrag("Node 0, zone   Normal 0.73 1.000 \n", "x")


# -- fuzzing: malformed input raises ParseError, never anything else ----------------------

_FILES = [
    (parse_buddyinfo, f"{S02}/buddyinfo"),
    (parse_pagetypeinfo, f"{S00}/pagetypeinfo"),
    (parse_zoneinfo, f"{S00}/zoneinfo"),
    (parse_vmstat, f"{S00}/vmstat"),
    (parse_meminfo, f"{S00}/meminfo"),
    (parse_extfrag, f"{S02}/unusable_index"),
    (parse_zoneinfo, f"{FC}/zoneinfo"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(_FILES) - 1),
    pos=st.floats(0, 1, exclude_max=True),
    junk=st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=4),
    cut=st.integers(0, 3),
)
def test_mutations_raise_only_parse_error(which: int, pos: float, junk: str, cut: int) -> None:
    parse, rel = _FILES[which]
    text = read_real(rel)
    i = int(pos * len(text))
    mutated = text[:i] + junk + text[i + cut :]
    try:
        parse(mutated, "fuzz")
    except ParseError as exc:
        assert exc.path == "fuzz"
        assert exc.lineno is None or 1 <= exc.lineno <= mutated.count("\n") + 1


@settings(max_examples=100, deadline=None)
@given(
    which=st.integers(0, len(_FILES) - 1),
    line=st.integers(0, 10**6),
    junk=st.from_regex(r"[@!?]{1,3}[A-Za-z0-9 ]{0,6}", fullmatch=True),
)
def test_garbage_data_line_is_reported_at_its_line(which: int, line: int, junk: str) -> None:
    parse, rel = _FILES[which]
    lines = read_real(rel).splitlines(keepends=True)
    n = line % len(lines)
    lines[n] = junk + "\n"
    with pytest.raises(ParseError) as ei:
        parse("".join(lines), "g")
    assert ei.value.lineno == n + 1
