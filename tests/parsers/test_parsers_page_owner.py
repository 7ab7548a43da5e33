"""page_owner records: the 6.1.192 format and those of older and newer kernels."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fragsim.errors import ParseError
from fragsim.parsers import parse_page_owner

STACK = """ post_alloc_hook+0x1ed/0x210
 get_page_from_freelist+0x4cc/0x1120
 __alloc_pages+0x15d/0x310
 pte_alloc_one+0x1c/0x50
"""

V61 = (
    "Page allocated via order 0, mask 0x400dc0(GFP_KERNEL_ACCOUNT|__GFP_ZERO), pid 1, tgid 1 "
    "(swapper/0), ts 419738032 ns, free_ts 0 ns\n"
    "PFN 4352 type Unmovable Block 8 type Unmovable "
    "Flags 0xfffffc0000000(node=0|zone=1|lastcpupid=0x1fffff)\n" + STACK + "\n"
    "Page allocated via order 9, mask 0x1c4dca(GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE), "
    "pid 1574, tgid 1570 (oracle (work)), ts 34720206000 ns, free_ts 34000000000 ns\n"
    "PFN 257536 type Movable Block 503 type Unmovable "
    "Flags 0xfffffc0010064(referenced|lru|active|head|node=0|zone=1|lastcpupid=0x1fffff)\n"
    + STACK
    + "Page has been migrated, last migrate reason: compaction\n"
    "Slab cache page\n"
    "Charged (via objcg) to memcg /system.slice\n"
    "\n"
)


def test_61_records() -> None:
    recs = parse_page_owner(V61, "page_owner")
    assert len(recs) == 2
    a, b = recs
    assert (a.lineno, a.order, a.gfp_mask, a.gfp_flags) == (
        1,
        0,
        0x400DC0,
        "GFP_KERNEL_ACCOUNT|__GFP_ZERO",
    )
    assert (a.pid, a.tgid, a.comm, a.ts_ns, a.free_ts_ns) == (1, 1, "swapper/0", 419738032, 0)
    assert (a.pfn, a.migratetype, a.block, a.block_migratetype) == (
        4352,
        "Unmovable",
        8,
        "Unmovable",
    )
    assert a.page_flags == 0xFFFFFC0000000
    assert a.page_flags_text == "node=0|zone=1|lastcpupid=0x1fffff"
    assert a.stack[0] == "post_alloc_hook+0x1ed/0x210" and len(a.stack) == 4
    assert a.migrate_reason is None and a.memcg == () and not a.mixed and a.nr_pages == 1
    assert b.lineno == 8 and b.order == 9 and b.pfn == 257536 and b.block == 257536 >> 9
    assert b.comm == "oracle (work)" and b.tgid == 1570 and b.free_ts_ns == 34000000000
    assert b.mixed and b.nr_pages == 512
    assert b.migrate_reason == "compaction"
    assert b.memcg == ("Slab cache page", "Charged (via objcg) to memcg /system.slice")


def test_other_kernel_versions() -> None:
    newer = (  # >= 6.9: hex PFN, no free_ts
        "Page allocated via order 1, mask 0x52800(GFP_NOWAIT|__GFP_NORETRY), pid 7, tgid 7 "
        "(kworker/0:1), ts 1000 ns\n"
        "PFN 0x1100 type Unmovable Block 8 type Unmovable Flags 0x4000000000000040(head|zone=1)\n"
        + STACK
        + "\n"
    )
    old = (  # 4.x: no pid/ts
        "Page allocated via order 0, mask 0x24200ca(GFP_HIGHUSER_MOVABLE)\n"
        "PFN 4352 type Movable Block 8 type Movable Flags 0x1fffff80000068(uptodate|lru|active)\n"
        + STACK
        + "\n"
    )
    mid = (  # 5.11-5.16: pid, ts, free_ts, no comm
        "Page allocated via order 0, mask 0x0(), pid 300, ts 5 ns, free_ts 0 ns\n"
        "PFN 99 type Unmovable Block 0 type Unmovable Flags 0x0()\n\n"
    )
    (n,) = parse_page_owner(newer)
    assert (n.pfn, n.tgid, n.comm, n.ts_ns, n.free_ts_ns) == (0x1100, 7, "kworker/0:1", 1000, None)
    (o,) = parse_page_owner(old)
    assert (o.pfn, o.pid, o.ts_ns, o.gfp_mask, o.page_flags_text) == (
        4352,
        None,
        None,
        0x24200CA,
        "uptodate|lru|active",
    )
    (m,) = parse_page_owner(mid)
    assert (m.pid, m.tgid, m.comm, m.ts_ns, m.gfp_mask, m.stack) == (300, None, None, 5, 0, ())
    assert len(parse_page_owner(V61 + newer + old + mid)) == 5
    assert parse_page_owner("") == []


@pytest.mark.parametrize(
    ("text", "lineno", "msg"),
    [
        ("Page allocated via order x, mask 0x1()\n", 1, "expected 'Page allocated via order N"),
        (V61.replace("PFN 4352", "PFN four"), 2, "expected 'PFN N type T Block N"),
        (
            V61.replace(" pte_alloc_one+0x1c/0x50\n\n", " pte_alloc_one+0x1c/0x50\njunk\n\n", 1),
            7,
            "expected a stack frame",
        ),
        ("Page allocated via order 0, mask 0x1(A)\n", 1, "record ends before its 'PFN"),
        (V61.replace("reason: compaction", "reason: "), 14, "expected a migrate reason"),
    ],
    ids=["head", "pfn-line", "junk-after-stack", "truncated", "empty-reason"],
)
def test_errors(text: str, lineno: int, msg: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse_page_owner(text, "po")
    assert ei.value.lineno == lineno and msg in ei.value.msg and ei.value.path == "po"


@settings(max_examples=200, deadline=None)
@given(pos=st.floats(0, 1, exclude_max=True), junk=st.text(max_size=3), cut=st.integers(0, 3))
def test_mutations_raise_only_parse_error(pos: float, junk: str, cut: int) -> None:
    i = int(pos * len(V61))
    try:
        parse_page_owner(V61[:i] + junk + V61[i + cut :], "po")
    except ParseError as exc:
        assert exc.path == "po"
