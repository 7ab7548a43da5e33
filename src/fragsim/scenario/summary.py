"""The text a run ends with: its summary tables, one column per run (``--compare`` puts the
runs side by side, with the difference of the last against the first), and the progress line
shown while it runs."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from fragsim.mm.machine import GFP_CLASSES
from fragsim.scenario.engine import Progress
from fragsim.scenario.units import format_duration

__all__ = ["ProgressBar", "diff", "explain", "format_summary", "summary_tables"]

ORDERS = range(11)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


Row = tuple[str, list[Any]]


def diff(vals: list[Any]) -> str:
    """The difference column: last run minus the first (``+3``, ``-0.250``), or empty when
    either is not a number."""
    a, b = vals[0], vals[-1]
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return ""
    d = b - a
    return f"{d:+.3f}" if isinstance(d, float) else f"{d:+d}"


def _table(title: str, rows: list[Row], labels: list[str]) -> list[str]:
    """Rows of numbers, one column per run, and a difference column (last - first) when
    there are two or more runs."""
    with_diff = len(labels) > 1
    head = ["", *labels] + (["diff"] if with_diff else [])
    body = []
    for name, vals in rows:
        cells = [name, *(_fmt(v) for v in vals)]
        if with_diff:
            cells.append(diff(vals))
        body.append(cells)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    out = [f"{title}", "  " + "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    for r in body:
        out.append("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return out


def summary_tables(summaries: list[dict[str, Any]]) -> list[tuple[str, list[Row]]]:
    """The summary of one or more runs as (title, rows) tables, each row a name and one value
    per run: what :func:`format_summary` prints and the HTML report shows."""
    s0 = summaries[0]
    tables: list[tuple[str, list[Row]]] = []
    # allocation failures by order and class (only the rows that have attempts)
    rows: list[Row] = []
    for cn in GFP_CLASSES:
        for o in ORDERS:
            att = [s["alloc"][cn]["attempts"][o] for s in summaries]
            if not any(att):
                continue
            fail = [s["alloc"][cn]["failures"][o] for s in summaries]
            rows.append((f"{cn} order {o} failed", fail))
            rows.append((f"{cn} order {o} requests", att))
    tables.append(("Allocations (requests and failures by GFP class and order)", rows))
    comp = [(k, [s["compaction"][k] for s in summaries]) for k in s0["compaction"]]
    tables.append(("Compaction and migration", comp))
    rec = [(k, [s["reclaim"][k] for s in summaries]) for k in s0["reclaim"]]
    tables.append(("Reclaim", rec))
    drows: list[Row] = []
    for name in s0["drivers"]:
        if "migrated" not in s0["drivers"][name]:
            continue
        drows.append(
            (f"{name} movable", [int(s["drivers"][name].get("movable", False)) for s in summaries])
        )
        for k in ("migrated", "failed"):
            drows.append((f"{name} pages {k}", [s["drivers"][name][k] for s in summaries]))
    if drows:
        tables.append(("Pages migrated per driver", drows))
    frows: list[Row] = []
    for o in ORDERS:
        frows.append((f"order {o} free blocks", [s["free_blocks"][o] for s in summaries]))
    for o in (1, 2, 3, 4, 9):
        frows.append(
            (f"order {o} unusable index", [s["unusable_index"][o] / 1000 for s in summaries])
        )
        frows.append(
            (
                f"order {o} fragmentation index",
                [s["fragmentation_index"][o] / 1000 for s in summaries],
            )
        )
    tables.append(("Free memory at the end (all zones)", frows))
    if all("pageblocks" in s for s in summaries):  # runs recorded before it have none
        prows: list[Row] = [
            (f"{mtn} pageblocks", [s["pageblocks"].get(mtn, 0) for s in summaries])
            for mtn in s0["pageblocks"]
        ]
        tables.append(("Pageblocks by migratetype at the end (all zones)", prows))
    wrows: list[Row] = []
    for wname, w in s0["workloads"].items():
        for k in w:
            if isinstance(w[k], (int, float)):
                wrows.append((f"{wname} {k}", [s["workloads"][wname][k] for s in summaries]))
    if wrows:
        tables.append(("Workloads", wrows))
    speed: list[Row] = [
        ("simulated", [format_duration(s["sim_ns"]) for s in summaries]),
        ("events", [s["events"] for s in summaries]),
        ("wall seconds", [s["wall_s"] for s in summaries]),
        ("events per second", [s["events_per_s"] for s in summaries]),
    ]
    tables.append(("Run", speed))
    return tables


def format_summary(summaries: list[dict[str, Any]], labels: list[str]) -> str:
    """The summary tables of one or more runs."""
    out: list[str] = []
    for title, rows in summary_tables(summaries):
        if out:
            out.append("")
        out += _table(title, rows, labels)
    if len(summaries) > 1:
        out += ["", *explain(summaries, labels)]
    return "\n".join(out) + "\n"


def _high_order_failures(s: dict[str, Any], lo: int = 2) -> int:
    return sum(sum(c["failures"][lo:]) for c in s["alloc"].values())


def _high_order_requests(s: dict[str, Any], lo: int = 2) -> int:
    return sum(sum(c["attempts"][lo:]) for c in s["alloc"].values())


def explain(summaries: list[dict[str, Any]], labels: list[str]) -> list[str]:
    """The comparison in words: high-order failures, free high-order blocks at the end, and
    the compaction and reclaim work each run needed, last run against the first."""
    a, b = summaries[0], summaries[-1]
    la, lb = labels[0], labels[-1]
    fa, fb = _high_order_failures(a), _high_order_failures(b)
    ra, rb = _high_order_requests(a), _high_order_requests(b)
    ha, hb = sum(a["free_blocks"][3:]), sum(b["free_blocks"][3:])
    ma, mb = a["compaction"]["pgmigrate_success"], b["compaction"]["pgmigrate_success"]
    wa, wb = a["compaction"]["compact_daemon_wake"], b["compaction"]["compact_daemon_wake"]
    lines = [f"What changed ({lb} against {la})"]
    if fa == fb == 0:
        lines.append(
            f"  No allocation of order 2 or more failed in either run ({ra} and {rb} requests)."
        )
    else:
        pa = 100.0 * fa / ra if ra else 0.0
        pb = 100.0 * fb / rb if rb else 0.0
        lines.append(
            f"  Allocations of order 2 or more that failed: {fa} of {ra} ({pa:.2f} %) with {la}, "
            f"{fb} of {rb} ({pb:.2f} %) with {lb}."
        )
    lines.append(f"  Free blocks of order 3 or more at the end: {ha} with {la}, {hb} with {lb}.")
    pbo = a.get("pageblock_order")
    if pbo is not None:
        ba, bb = sum(a["free_blocks"][pbo:]), sum(b["free_blocks"][pbo:])
        lines.append(
            f"  Free blocks of a whole pageblock or more (order {pbo}+): {ba} with {la}, "
            f"{bb} with {lb}."
        )
    lines.append(
        f"  Compaction: {ma} pages migrated and {wa} kcompactd wake-ups with {la}; "
        f"{mb} and {wb} with {lb}."
    )
    if "pageblocks" in a and "pageblocks" in b:
        ua, ub = a["pageblocks"].get("Unmovable", 0), b["pageblocks"].get("Unmovable", 0)
        lines.append(f"  Unmovable pageblocks at the end: {ua} with {la}, {ub} with {lb}.")
        lines += _why(a, b, la, lb, ua, ub)
    return lines


def _why(a: dict[str, Any], b: dict[str, Any], la: str, lb: str, ua: int, ub: int) -> list[str]:
    """The mechanism behind the numbers, when they show it: a run whose unmovable allocations
    took more pageblocks and whose compaction worked harder (Linux 6.1's answer to a fallback:
    boost_watermark wakes kswapd, kswapd wakes kcompactd)."""
    ma, mb = a["compaction"]["pgmigrate_success"], b["compaction"]["pgmigrate_success"]
    wa, wb = a["compaction"]["compact_daemon_wake"], b["compaction"]["compact_daemon_wake"]
    for (lx, ux, mx, wx), (ly, uy, my, wy) in (
        ((la, ua, ma, wa), (lb, ub, mb, wb)),
        ((lb, ub, mb, wb), (la, ua, ma, wa)),
    ):
        if ux > uy and mx > 2 * my and wx > wy:
            return [
                f"  Why: with {lx}, unmovable allocations spread over {ux - uy} more "
                "pageblocks: they fell back into movable pageblocks and claimed them. In "
                "Linux 6.1 such a fallback boosts the watermarks (boost_watermark), which wakes "
                f"kswapd and then kcompactd: {wx} kcompactd runs migrated {mx} pages to rebuild "
                f"free blocks, against {wy} runs and {my} pages with {ly}. That work, not the "
                "layout, is what keeps free blocks of a few pages available; the blocks of a "
                "whole pageblock survive where no unmovable page was scattered."
            ]
    return []


class ProgressBar:
    """A one-line progress bar on a terminal (simulated time, events/s); nothing when the
    stream is not a terminal, unless forced."""

    def __init__(self, label: str, stream: TextIO | None = None, force: bool = False) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.last = ""

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        frac = min(p.now_ns / p.until_ns, 1.0) if p.until_ns else 1.0
        bar = "#" * int(frac * 30)
        line = (
            f"\r{self.label} [{bar:<30}] {format_duration(p.now_ns)} / "
            f"{format_duration(p.until_ns)}  {p.events_per_s / 1e6:6.2f} M events/s"
        )
        self.last = line
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.last:
            self.stream.write("\n")
            self.stream.flush()
