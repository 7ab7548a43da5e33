"""Plots over simulated time, from the metrics a run samples (:func:`fragsim.scenario.runner
.sample_metrics`, stored in the results database): free memory by order (stacked), allocation
failures by order and by GFP class, compaction stalls / successes / failures, pageblocks per
migratetype, pages migrated, and proactive compaction's fragmentation score with its
watermarks.

Two steps, so that what is drawn can be checked as numbers: a panel function reads a run's
samples (``{"t_ns": int64[n], metric: values[n], ...}``, the wide form of
:meth:`fragsim.results.ResultsDB.samples_frame`) and returns a :class:`Panel` of named series;
:func:`panel_figure` draws one panel for one or more runs with matplotlib (Agg, the optional
extra ``fragsim[plot]``): a stacked panel gets one stacked area chart per run side by side, a
line panel overlays the runs (one colour per series, one line style per run). Metrics a run did
not sample (an older run, a machine without that zone) are left out, never guessed.

Counters (failures, compaction) are the cumulative /proc/vmstat-style counts since boot, as
sampled.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PANELS",
    "Panel",
    "Series",
    "alloc_failures_by_class",
    "alloc_failures_by_order",
    "compaction_events",
    "figure_png",
    "fragmentation_score",
    "free_by_order",
    "migrated_pages",
    "pageblocks_by_migratetype",
    "panel_figure",
    "run_panels",
    "time_axis",
]

Samples = Mapping[str, npt.NDArray[Any]]

_FREE: Final = re.compile(r"free\.([^.]+)\.o(\d+)\.([^.]+)")
_FAIL: Final = re.compile(r"fail\.([^.]+)\.o(\d+)")
_PAGEBLOCKS: Final = re.compile(r"pageblocks\.([^.]+)\.([^.]+)")
_SCORE_NODE: Final = re.compile(r"fragmentation_score\.node(\d+)")


@dataclass(frozen=True, slots=True)
class Series:
    """One curve: a label and a value per sample."""

    label: str
    values: npt.NDArray[np.float64]
    style: str = "-"
    """matplotlib line style of this series (a line panel; runs are told apart by style
    only when every series of the panel is solid)."""


@dataclass(frozen=True, slots=True)
class Panel:
    """What one plot of one run shows: its series over the sample times ``t_ns``."""

    key: str
    title: str
    ylabel: str
    t_ns: npt.NDArray[np.int64]
    series: tuple[Series, ...]
    stacked: bool = False
    note: str | None = None
    """Why the panel has no series (nothing happened, or the run did not sample it)."""
    colours: dict[str, str] = field(default_factory=dict)
    """Colour of a series by label (default: matplotlib's cycle)."""


def _sum(samples: Samples, names: list[str], n: int) -> npt.NDArray[np.float64]:
    out = np.zeros(n, np.float64)
    for name in names:
        out += np.asarray(samples[name], np.float64)
    return out


def _t(samples: Samples) -> npt.NDArray[np.int64]:
    return np.asarray(samples.get("t_ns", np.zeros(0, np.int64)), np.int64)


def free_by_order(samples: Samples) -> Panel:
    """Free memory by buddy order, in pages, stacked: ``free.<zone>.o<N>.<type>`` counts free
    blocks (as /proc/pagetypeinfo does), so order N contributes blocks x 2^N pages, summed over
    zones and migratetypes. The top of the stack is the buddy allocator's free pages (per-CPU
    lists not included)."""
    t = _t(samples)
    by_order: dict[int, list[str]] = {}
    for name in samples:
        m = _FREE.fullmatch(name)
        if m:
            by_order.setdefault(int(m.group(2)), []).append(name)
    series = tuple(
        Series(f"order {o}", _sum(samples, by_order[o], len(t)) * (1 << o))
        for o in sorted(by_order)
    )
    cmap = _order_colours(max(by_order, default=0) + 1)
    return Panel(
        "free_by_order",
        "Free memory by order",
        "free pages (buddy lists)",
        t,
        series,
        stacked=True,
        note=None if series else "no free-list metrics in this run's samples",
        colours={s.label: cmap[int(s.label.split()[1])] for s in series},
    )


def _failures(samples: Samples, group: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in samples:
        m = _FAIL.fullmatch(name)
        if m:
            key = m.group(group)
            out.setdefault(f"order {key}" if group == 2 else key, []).append(name)
    return out


def alloc_failures_by_order(samples: Samples) -> Panel:
    """Allocation failures since boot by order (``fail.<class>.o<N>`` summed over the GFP
    classes); orders that never failed are left out."""
    t = _t(samples)
    groups = _failures(samples, 2)
    series = []
    for label in sorted(groups, key=lambda s: int(s.split()[1])):
        v = _sum(samples, groups[label], len(t))
        if v.any():
            series.append(Series(label, v))
    cmap = _order_colours(11)
    note = None
    if not groups:
        note = "no allocation metrics in this run's samples"
    elif not series:
        note = "no allocation failed"
    return Panel(
        "alloc_failures_by_order",
        "Allocation failures by order",
        "failed allocations (cumulative)",
        t,
        tuple(series),
        note=note,
        colours={s.label: cmap[int(s.label.split()[1])] for s in series},
    )


def alloc_failures_by_class(samples: Samples) -> Panel:
    """Allocation failures since boot by GFP class (``fail.<class>.o<N>`` summed over the
    orders: ATOMIC, KERNEL, RECLAIMABLE, MOVABLE as fragsim classifies requests); classes
    that never failed are left out."""
    t = _t(samples)
    groups = _failures(samples, 1)
    series = []
    for label, names in groups.items():
        v = _sum(samples, names, len(t))
        if v.any():
            series.append(Series(label, v))
    note = None
    if not groups:
        note = "no allocation metrics in this run's samples"
    elif not series:
        note = "no allocation failed"
    return Panel(
        "alloc_failures_by_class",
        "Allocation failures by GFP class",
        "failed allocations (cumulative)",
        t,
        tuple(series),
        note=note,
    )


#: the /proc/vmstat counters of direct compaction the compaction panel shows
COMPACTION_COUNTERS: Final = ("compact_stall", "compact_success", "compact_fail")


def compaction_events(samples: Samples) -> Panel:
    """Direct compaction since boot: ``compact_stall`` (an allocation entered direct
    compaction), ``compact_success`` (a stall that ended with the page), ``compact_fail``
    (/proc/vmstat, mm/compaction.c)."""
    t = _t(samples)
    series = tuple(
        Series(k, np.asarray(samples[k], np.float64)) for k in COMPACTION_COUNTERS if k in samples
    )
    note = None
    if not series:
        note = "no compaction counters in this run's samples"
    elif not any(s.values.any() for s in series):
        note = "no direct compaction stall"
    return Panel(
        "compaction",
        "Direct compaction",
        "events (cumulative)",
        t,
        series,
        note=note,
        colours={
            "compact_stall": "#1f77b4",
            "compact_success": "#2ca02c",
            "compact_fail": "#d62728",
        },
    )


#: page migration counters (/proc/vmstat, mm/migrate.c): every compaction, direct or kcompactd's
MIGRATION_COUNTERS: Final = ("pgmigrate_success", "pgmigrate_fail")


def migrated_pages(samples: Samples) -> Panel:
    """Pages migrated since boot by all compaction, direct, kcompactd's (woken by kswapd or
    proactive) and ``compact_memory``: ``pgmigrate_success`` and ``pgmigrate_fail``
    (/proc/vmstat, mm/migrate.c)."""
    t = _t(samples)
    series = tuple(
        Series(k, np.asarray(samples[k], np.float64)) for k in MIGRATION_COUNTERS if k in samples
    )
    note = None
    if not series:
        note = "no migration counters in this run's samples"
    elif not any(s.values.any() for s in series):
        note = "no page was migrated"
    return Panel(
        "migration",
        "Pages migrated by compaction",
        "pages (cumulative)",
        t,
        series,
        note=note,
        colours={"pgmigrate_success": "#2ca02c", "pgmigrate_fail": "#d62728"},
    )


def pageblocks_by_migratetype(samples: Samples) -> Panel:
    """Pageblocks per migratetype (``pageblocks.<zone>.<type>`` summed over zones), stacked;
    migratetypes with no pageblock in any sample are left out."""
    from fragsim.viz.memmap import MIGRATETYPE_COLOURS

    t = _t(samples)
    groups: dict[str, list[str]] = {}
    for name in samples:
        m = _PAGEBLOCKS.fullmatch(name)
        if m:
            groups.setdefault(m.group(2), []).append(name)
    order = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
    known = [k for k in order if k in groups] + sorted(set(groups) - set(order))
    series = []
    for k in known:
        v = _sum(samples, groups[k], len(t))
        if v.any():
            series.append(Series(k, v))
    colours = {k: MIGRATETYPE_COLOURS[order.index(k)] for k in known if k in order}
    return Panel(
        "pageblocks",
        "Pageblocks per migratetype",
        "pageblocks",
        t,
        tuple(series),
        stacked=True,
        note=None if series else "no pageblock metrics in this run's samples",
        colours=colours,
    )


def fragmentation_score(samples: Samples) -> Panel:
    """Proactive compaction's fragmentation score of each node (fragmentation_score_node(),
    mm/compaction.c, Linux 6.1: 0-100, the share of free memory in blocks smaller than a
    pageblock, zones weighted by size) with the watermarks kcompactd compares it with
    (fragmentation_score_wmark(): compaction starts above ``high`` and stops at ``low``).
    Runs recorded before fragsim sampled the score have none."""
    t = _t(samples)
    series = []
    for name in sorted(samples):
        m = _SCORE_NODE.fullmatch(name)
        if m:
            series.append(Series(f"node {m.group(1)}", np.asarray(samples[name], np.float64)))
    for w in ("high", "low"):
        name = f"fragmentation_score_wmark.{w}"
        if series and name in samples:
            series.append(Series(f"wmark {w}", np.asarray(samples[name], np.float64), ":"))
    return Panel(
        "fragmentation_score",
        "Fragmentation score (proactive compaction)",
        "score (0-100)",
        t,
        tuple(series),
        note=None if series else "this run did not sample the fragmentation score",
        colours={"wmark high": "#d62728", "wmark low": "#ff7f0e"},
    )


#: every panel of a run's report, in order
PANELS: Final[tuple[Callable[[Samples], Panel], ...]] = (
    free_by_order,
    fragmentation_score,
    alloc_failures_by_order,
    alloc_failures_by_class,
    compaction_events,
    migrated_pages,
    pageblocks_by_migratetype,
)


def run_panels(samples: Samples) -> list[Panel]:
    """Every panel of :data:`PANELS` for one run."""
    return [p(samples) for p in PANELS]


def _order_colours(n: int) -> list[str]:
    """Free orders from dark (order 0, the most fragmented) to pale, as the memory maps
    colour free pages."""
    from fragsim.viz.memmap import KIND_COLOURS, MapKind

    return [KIND_COLOURS[MapKind(min(o, 10))] for o in range(max(n, 11))]


_UNITS: Final = (("d", 86_400e9), ("h", 3_600e9), ("min", 60e9), ("s", 1e9))


def time_axis(t_ns: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float64], str]:
    """Sample times in the largest unit (d, h, min, s) that the run spans at least twice."""
    span = float(np.max(t_ns)) if len(t_ns) else 0.0
    for unit, ns in _UNITS:
        if span >= 2 * ns:
            return np.asarray(t_ns, np.float64) / ns, unit
    return np.asarray(t_ns, np.float64) / 1e9, "s"


_RUN_STYLES: Final = ("-", "--", "-.", ":")


def panel_figure(panels: Sequence[Panel], labels: Sequence[str]) -> Figure:
    """One panel of one or more runs (``panels[i]`` of the run labelled ``labels[i]``, the
    same panel function each): a stacked panel is drawn as one stacked area chart per run side
    by side on a shared y axis; a line panel overlays the runs, the series told apart by
    colour and the runs by line style (a reference line, such as a watermark, is drawn once
    when the runs agree on it)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        from fragsim.errors import FragsimError

        raise FragsimError(f"plots need matplotlib ({exc}): pip install 'fragsim[plot]'") from None
    if not panels or len(panels) != len(labels):
        raise ValueError(f"{len(panels)} panels for {len(labels)} labels")
    p0 = panels[0]
    span = max((int(p.t_ns.max()) for p in panels if len(p.t_ns)), default=0)
    _, unit = time_axis(np.array([span], np.int64))
    scale = dict(_UNITS)[unit]
    side = p0.stacked and len(panels) > 1
    ncols = len(panels) if side else 1
    fig = Figure(figsize=(min(5.0 * ncols, 14.0) if side else 8.0, 3.6), dpi=100)
    axes = fig.subplots(1, ncols, sharey=True, squeeze=False)[0]
    palette = [f"C{i}" for i in range(10)]
    labels_seen: dict[str, str] = {}
    refs: dict[str, npt.NDArray[np.float64]] = {}

    def colour(p: Panel, label: str) -> str:
        if label in p.colours:
            return p.colours[label]
        return labels_seen.setdefault(label, palette[len(labels_seen) % len(palette)])

    for i, (p, run) in enumerate(zip(panels, labels, strict=True)):
        ax = axes[i] if side else axes[0]
        x = np.asarray(p.t_ns, np.float64) / scale
        if p.stacked and p.series:
            ax.stackplot(
                x,
                np.vstack([s.values for s in p.series]),
                labels=[s.label for s in p.series],
                colors=[colour(p, s.label) for s in p.series],
                linewidth=0,
            )
        elif p.series:
            style = _RUN_STYLES[i % len(_RUN_STYLES)]
            for s in p.series:
                name = s.label if len(panels) == 1 else f"{s.label} ({run})"
                if s.style != "-":  # a reference line (a watermark): once if the runs agree
                    prev = refs.setdefault(s.label, s.values)
                    if prev is not s.values and np.array_equal(prev, s.values):
                        continue
                    name = s.label if prev is s.values else name
                ls = style if s.style == "-" else s.style
                ax.plot(x, s.values, ls, color=colour(p, s.label), label=name, linewidth=1.4)
        if side:
            ax.set_title(run, fontsize=9)
        ax.set_xlabel(f"simulated time ({unit})")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0)
    axes[0].set_ylabel(p0.ylabel)
    if p0.key == "fragmentation_score":
        axes[0].set_ylim(0, 100)
    elif not any(s.values.any() for p in panels for s in p.series):
        axes[0].set_ylim(0, 1)  # nothing happened: a flat line at 0, not one mid-axis
    else:
        axes[0].set_ylim(bottom=0)  # counts and pages
    notes = [
        f"{run}: {p.note}" if len(panels) > 1 else p.note
        for p, run in zip(panels, labels, strict=True)
        if p.note
    ]
    title = p0.title + (f" ({'; '.join(notes)})" if notes else "")
    fig.suptitle(title, fontsize=11)
    handles, names = axes[0].get_legend_handles_labels()
    if p0.stacked:  # top to bottom, as the stack reads
        handles, names = handles[::-1], names[::-1]
    if handles:
        fig.legend(
            handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False
        )
    fig.tight_layout()
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (legends outside the axes included)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buf.getvalue()
