"""The HTML reports fragsim writes, built with :mod:`fragsim.viz.html`:

* :func:`inspect_html`: ``fragsim inspect SNAPSHOT --html FILE``, the explain-a-failure report
  (:mod:`fragsim.analysis.inspect`) as tables, with the snapshot's memory map when it has
  kpageflags;
* :func:`memmap_html`: ``fragsim memmap ... --html FILE``, memory maps side by side and, for a
  sequence of states, a time slider through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fragsim.viz.html import Cell, Report, memmaps

if TYPE_CHECKING:
    from fragsim.analysis.inspect import InspectReport, Snapshot, ZoneObstacles
    from fragsim.viz.memmap import MemMap

__all__ = ["inspect_html", "memmap_html"]


def _thousandths(v: int) -> str:
    """A thousandths value as the kernel prints it (``%d.%03d``)."""
    sign = "-" if v < 0 else ""
    return f"{sign}{abs(v) // 1000}.{abs(v) % 1000:03d}"


def inspect_html(r: InspectReport, snap: Snapshot | None = None) -> Report:
    """``fragsim inspect`` as an HTML report: what :func:`fragsim.analysis.format_report` prints,
    as tables, plus the memory map of ``snap`` when it has kpageflags."""
    rep = Report(
        f"fragsim inspect {r.source}",
        "Why high-order allocations fail on this machine, with Linux 6.1's watermark and "
        "compaction checks applied to the snapshot's files.",
    )
    s = rep.section("Snapshot")
    rows: list[list[Cell]] = [
        ["source", r.source],
        ["kernel", r.kernel_release or "unknown"],
        ["files", " ".join(r.files)],
        [
            "allocation checked",
            f"GFP_KERNEL (highest zone {r.highest_zone}, min watermark, no CMA, no reserves)",
        ],
        ["extfrag_threshold", f"{r.extfrag_threshold} ({r.extfrag_threshold_source})"],
        ["compact_unevictable_allowed", int(r.compact_unevictable_allowed)],
        ["pageblock order", r.pageblock_order],
    ]
    rows += [[f"not captured: {f}", why] for f, why in r.skipped.items()]
    s.table(["", "value"], rows)
    for n in r.notes:
        s.paragraph(f"Note: {n}")

    for z in r.zones:
        s = rep.section(f"Node {z.node}, zone {z.zone}")
        facts: list[list[Cell]] = [["free pages (buddyinfo)", z.free_pages]]
        if z.watermarks_known:
            facts += [
                ["NR_FREE_PAGES (zoneinfo)", z.nr_free_pages],
                ["watermarks min / low / high", f"{z.min} / {z.low} / {z.high}"],
                ["watermark boost", z.boost if z.boost is not None else "-"],
                ["lowmem reserve", z.lowmem_reserve],
                ["free on per-cpu lists", z.pcp_pages if z.pcp_pages is not None else "-"],
                ["highatomic reserve", z.nr_reserved_highatomic],
                ["free CMA", z.nr_free_cma],
            ]
            if z.start_pfn is not None and z.spanned:
                facts.append(["pfns", f"{z.start_pfn}-{z.start_pfn + z.spanned - 1}"])
        s.table(["", "pages"], facts)
        s.table(
            ["order", "free blocks", "in pages", "unusable", "fragindex", "verdict", "why"],
            [
                [
                    o.order,
                    o.free_blocks,
                    o.usable_pages,
                    _thousandths(o.unusable_index),
                    _thousandths(o.fragmentation_index),
                    o.verdict.value,
                    o.reason,
                ]
                for o in z.orders
            ],
            caption=f"A GFP_KERNEL allocation of each order (free lists: {z.free_lists_from})",
        )
        if z.pageblocks is not None:
            s.table(
                ["migratetype", "pageblocks"],
                [[k, v] for k, v in z.pageblocks.items()],
                caption="Pageblocks per migratetype",
            )
        if z.mixed is not None:
            by = (
                "; " + ", ".join(f"{k} {v}" for k, v in z.mixed.by_type.items())
                if z.mixed.by_type
                else ""
            )
            at_least = "at least " if z.mixed.estimate else ""
            s.paragraph(f"Mixed pageblocks: {at_least}{z.mixed.total}{by} ({z.mixed.note}).")

    for zo in r.obstacles:
        _obstacles(rep, zo, r.pageblock_order)

    if snap is not None and snap.kpageflags is not None:
        from fragsim.viz.memmap import memmap_from_snapshot

        s = rep.section("Memory map")
        memmaps(s, [memmap_from_snapshot(snap)], [r.source])
    return rep


def _obstacles(rep: Report, zo: ZoneObstacles, pb_order: int) -> None:
    from fragsim.analysis.inspect import KIND_NAMES
    from fragsim.parsers import PageKind

    def name(k: str) -> str:
        return KIND_NAMES[PageKind[k.upper()]]

    where = "all pfns" if zo.node is None else f"node {zo.node}, zone {zo.zone}"
    s = rep.section(f"What holds high-order blocks: {where}")
    s.paragraph(f"pfns {zo.start_pfn}-{zo.end_pfn - 1}, from kpageflags.")
    s.table(
        ["kind", "pages"],
        [[name(k), v] for k, v in zo.kinds.items() if v],
        caption="Pages by kind",
    )
    rows: list[list[Cell]] = []
    for bo in zo.by_order:
        what = "pageblocks" if bo.order == pb_order else f"order-{bo.order} blocks"
        rows.append(
            [
                bo.order,
                "on" if bo.nonlru_movable else "off",
                f"{bo.blocks} {what}",
                bo.holes,
                bo.free,
                bo.compactable,
                sum(bo.sole.values()),
                bo.several,
                ", ".join(f"{name(k)} {n}" for k, n in bo.sole.items()) or "-",
            ]
        )
    s.table(
        [
            "order",
            "non-LRU movable",
            "blocks",
            "all holes",
            "wholly free",
            "compaction can empty",
            "held by one kind",
            "held by several",
            "the one kind",
        ],
        rows,
        caption="Aligned blocks and their obstacles (framework off: zsmalloc and balloon pinned)",
    )


def memmap_html(
    title: str,
    maps: Sequence[MemMap],
    titles: Sequence[str],
    *,
    intro: str | None = None,
    slider_label: str | None = None,
    compare: tuple[int, int] | None = None,
    compare_title: str = "Side by side",
    texts: Sequence[tuple[str, str]] = (),
    texts_title: str = "Details",
) -> Report:
    """A report of memory maps: with ``slider_label``, one time slider through ``maps``, else
    the maps side by side; ``compare`` (two indices) also shows those two maps side by side;
    ``texts`` are (caption, preformatted text) pairs of one more section (e.g. /proc/buddyinfo
    at each stage)."""
    rep = Report(title, intro)
    if slider_label is not None:
        memmaps(rep.section("Memory map over time"), maps, titles, slider_label=slider_label)
    else:
        memmaps(rep.section("Memory map"), maps, titles)
    if compare is not None:
        a, b = compare
        memmaps(rep.section(compare_title), [maps[a], maps[b]], [titles[a], titles[b]])
    if texts:
        s = rep.section(texts_title)
        for caption, text in texts:
            s.paragraph(caption)
            s.preformatted(text)
    return rep
