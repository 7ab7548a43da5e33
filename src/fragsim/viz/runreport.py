"""``fragsim report RUN [RUN...] -o report.html``: the report of recorded runs as one
self-contained HTML file (:mod:`fragsim.viz.html`; everything embedded, opens offline), to read
or send to a colleague. ``fragsim run ... --report FILE`` writes the same right after a run.

The report, for one run or several (a ``--compare`` pair) side by side:

* the runs (id, scenario, seed, configuration hash, version, times) and, for several runs, the
  configuration keys that differ;
* the summary tables of :func:`fragsim.scenario.summary.summary_tables` (what ``fragsim run``
  prints), with the difference of the last run against the first and the comparison in words;
* the plots over simulated time of :mod:`fragsim.viz.plots`, the runs overlaid;
* for each run with recorded memory maps (:class:`fragsim.results.MemMapFrame`): the maps at
  the start and at the end side by side with their legend, and a time slider walking the map
  through the run; for several runs, the maps at the end side by side;
* each run's fully expanded configuration.

Everything comes from the results database (or, for ``run --report``, from the runs just made):
no simulation is rerun.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fragsim.errors import ConfigError
from fragsim.results import ResultsDB, RunRecord, format_sim_time
from fragsim.viz.html import Cell, Report, Section, memmaps

__all__ = [
    "ReportRun",
    "add_report_parser",
    "cmd_report",
    "load_runs",
    "run_report",
    "write_plot_pngs",
    "write_report",
]


@dataclass(frozen=True, slots=True)
class ReportRun:
    """One run of a report: its record, its id (None when it was not recorded) and the label
    its column and curves carry."""

    record: RunRecord
    run_id: str | None
    label: str


def labelled(records: Sequence[tuple[RunRecord, str | None]]) -> list[ReportRun]:
    """Label each run by its ``--compare`` value (``movable=off``), else by its id, else by
    its scenario; labels that would repeat get the run id (or position) added."""
    raw = [r.compare_label or rid or r.scenario for r, rid in records]
    out = []
    for i, ((rec, rid), label) in enumerate(zip(records, raw, strict=True)):
        if raw.count(label) > 1:
            label = f"{label} [{rid or i + 1}]"
        out.append(ReportRun(rec, rid, label))
    return out


def load_runs(db: ResultsDB, run_ids: Sequence[str]) -> list[ReportRun]:
    """The runs ``run_ids`` (full ids, unique prefixes or ``latest``) of ``db``, in that
    order; a run named twice is an error."""
    if not run_ids:
        raise ConfigError("report: expected at least one RUN (an id from fragsim runs, or latest)")
    ids = [db.resolve(r) for r in run_ids]
    for i, rid in enumerate(ids):
        if rid in ids[:i]:
            raise ConfigError(f"report: run {rid} is named twice ({run_ids[i]!r})")
    return labelled([(db.load(rid), rid) for rid in ids])


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): d}


def _value(v: Any) -> Cell:
    if isinstance(v, bool):
        return "true" if v else "false"  # as the scenario file spells it
    if v is None or isinstance(v, str | int | float):
        return v
    return json.dumps(v)


def run_report(runs: Sequence[ReportRun]) -> Report:
    """The HTML report of ``runs`` (see the module's docstring)."""
    from fragsim.scenario.summary import diff, explain, summary_tables

    if not runs:
        raise ConfigError("report: no runs")
    labels = [r.label for r in runs]
    recs = [r.record for r in runs]
    names = sorted({r.scenario for r in recs})
    what = ", ".join(r.run_id or r.label for r in runs)
    rep = Report(
        f"fragsim report: {' / '.join(names)} ({what})",
        "Simulated Linux 6.1 physical-memory fragmentation, from fragsim's results database: "
        "the summary of each run, its metrics over simulated time and its memory map through "
        "the run. Everything is embedded in this file; it opens offline.",
    )

    s = rep.section("Runs")
    fields: list[tuple[str, list[Cell]]] = [
        ("run id", [r.run_id or "(not recorded)" for r in runs]),
        ("scenario", [r.scenario for r in recs]),
        ("seed", [r.seed for r in recs]),
        ("configuration hash", [r.config_hash[:12] for r in recs]),
        ("fragsim version", [r.version for r in recs]),
        ("started (UTC)", [r.started.strftime("%Y-%m-%d %H:%M:%S") for r in recs]),
        ("status", [r.status for r in recs]),
        ("simulated time", [format_sim_time(r.sim_ns) for r in recs]),
        ("wall seconds", [round(r.wall_s, 1) for r in recs]),
        ("events", [r.events for r in recs]),
        (
            "compare",
            [f"{r.compare_group}: {r.compare_label}" if r.compare_group else "-" for r in recs],
        ),
    ]
    s.table(["", *labels], [[k, *v] for k, v in fields])
    if len(runs) > 1:
        flat = [_flatten(r.config) for r in recs]
        keys = sorted(set().union(*flat))
        differ = [k for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1]
        if differ:
            s.table(
                ["configuration key", *labels],
                [[k, *(_value(f.get(k)) for f in flat)] for k in differ],
                caption="Configuration keys that differ",
            )
        else:
            s.paragraph("The runs have the same configuration.")

    s = rep.section("Summary")
    if all(r.summary for r in recs):
        try:
            groups = [(labels, summary_tables([r.summary for r in recs]))]
        except (KeyError, IndexError):  # runs with different memory users or workloads
            s.paragraph(
                "The runs have different memory users or workloads: their summaries are shown "
                "one after the other, not side by side."
            )
            groups = [([r.label], summary_tables([r.record.summary])) for r in runs]
        for cols, tables in groups:
            with_diff = len(cols) > 1
            for title, rows in tables:
                table: list[list[Cell]] = [
                    [name, *(_value(v) for v in vals), *([diff(vals)] if with_diff else [])]
                    for name, vals in rows
                ]
                s.table(["", *cols, *(["diff"] if with_diff else [])], table, caption=title)
        if len(groups[0][0]) > 1:
            words = explain([r.summary for r in recs], labels)
            s.paragraph(words[0] + ":")
            for line in words[1:]:
                s.paragraph(line.strip())
    else:
        s.paragraph(
            "No summary was recorded for "
            + ", ".join(r.label for r in runs if not r.record.summary)
            + "."
        )

    _plots(rep.section("Over simulated time"), runs)
    _maps(rep, runs)

    s = rep.section("Configuration")
    for r in runs:
        s.paragraph(f"{r.label}: the fully expanded scenario (hash {r.record.config_hash}).")
        s.preformatted(json.dumps(r.record.config, indent=2))
    return rep


def _plots(s: Section, runs: Sequence[ReportRun]) -> None:
    from fragsim.scenario.units import format_duration
    from fragsim.viz.plots import PANELS, figure_png, panel_figure

    if not any(len(r.record.samples.get("t_ns", ())) for r in runs):
        s.paragraph("No samples were recorded.")
        return
    labels = [r.label for r in runs]
    steps = sorted(
        {
            int(np.diff(t)[0])
            for t in (np.asarray(r.record.samples.get("t_ns", ())) for r in runs)
            if len(t) > 1
        }
    )
    every = " or ".join(format_duration(x) for x in steps) or "one sample"
    s.paragraph(
        f"Metrics sampled every {every} of simulated time. Counters are cumulative since "
        "boot. "
        + (
            "Runs are overlaid (line style per run); stacked charts are side by side."
            if len(runs) > 1
            else ""
        )
    )
    for fn in PANELS:
        panels = [fn(r.record.samples) for r in runs]
        png = figure_png(panel_figure(panels, labels))
        about = " ".join((inspect.getdoc(fn) or "").split("\n\n")[0].split()).replace("``", "")
        s.image(png, alt=panels[0].title, caption=about, pixelated=False)


def _maps(rep: Report, runs: Sequence[ReportRun]) -> None:
    from fragsim.viz.memmap import frame_memmap, render

    with_maps = [r for r in runs if r.record.memmaps]
    if not with_maps:
        s = rep.section("Memory maps")
        s.paragraph(
            "These runs were recorded without memory maps (by a fragsim that did not store them)."
            if len(runs) > 1
            else "This run was recorded without memory maps (by a fragsim that did not store them)."
        )
        return
    if len(with_maps) > 1:
        s = rep.section("Memory maps at the end, side by side")
        memmaps(
            s,
            [frame_memmap(r.record.memmaps[-1]) for r in with_maps],
            [f"{r.label}, {format_sim_time(r.record.memmaps[-1].t_ns)}" for r in with_maps],
        )
    for r in runs:
        frames = r.record.memmaps
        prefix = f"{r.label}: " if len(runs) > 1 else ""
        s = rep.section(f"{prefix}memory map through the run")
        if not frames:
            s.paragraph("This run was recorded without memory maps.")
            continue
        maps = [frame_memmap(f) for f in frames]
        times = [format_sim_time(f.t_ns) for f in frames]
        memmaps(s, [maps[0], maps[-1]], [f"start ({times[0]})", f"end ({times[-1]})"])
        rendered = [render(m) for m in maps]
        width = max(x.rgb.shape[1] for x in rendered)
        zoom = max(1, min(4, 800 // width))
        s.paragraph(
            f"Move the slider to walk the map through the run: {len(frames)} maps, taken with "
            "the samples (colours as in the legend above)."
        )
        s.slider(
            [
                (x.rgb, f"{t} (map {i + 1} of {len(frames)})")
                for i, (x, t) in enumerate(zip(rendered, times, strict=True))
            ],
            label="simulated time",
            width=width * zoom,
        )


def write_report(path: str | os.PathLike[str], runs: Sequence[ReportRun]) -> None:
    """Write :func:`run_report` of ``runs`` to ``path`` (atomically, :meth:`Report.write`)."""
    run_report(runs).write(path)


def write_plot_pngs(outdir: str | os.PathLike[str], runs: Sequence[ReportRun]) -> list[Path]:
    """Each plot of the report as ``OUTDIR/<panel>.png`` and, for each run with memory maps,
    ``OUTDIR/memmap[-<label>].png`` (start and end side by side with the legend)."""
    from fragsim.viz.memmap import frame_memmap, write_png
    from fragsim.viz.plots import PANELS, figure_png, panel_figure

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    labels = [r.label for r in runs]
    written = []
    for fn in PANELS:
        panels = [fn(r.record.samples) for r in runs]
        path = out / f"{panels[0].key}.png"
        path.write_bytes(figure_png(panel_figure(panels, labels)))
        written.append(path)
    for r in runs:
        if not r.record.memmaps:
            continue
        frames = r.record.memmaps
        suffix = (
            ""
            if len(runs) == 1
            else "-" + "".join(c if c.isalnum() or c in "=.-" else "_" for c in r.label)
        )
        path = out / f"memmap{suffix}.png"
        write_png(
            path,
            [frame_memmap(frames[0]), frame_memmap(frames[-1])],
            [
                f"start ({format_sim_time(frames[0].t_ns)})",
                f"end ({format_sim_time(frames[-1].t_ns)})",
            ],
        )
        written.append(path)
    return written


def add_report_parser(sub: Any) -> argparse.ArgumentParser:
    """``fragsim report RUN [RUN...] [-o FILE] [--png DIR] [--db PATH]``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="write recorded runs as one self-contained HTML report (tables, plots, memory maps)",
    )
    p.add_argument(
        "runs",
        metavar="RUN",
        nargs="+",
        help="run ids (fragsim runs), unique prefixes, or 'latest'; several are compared",
    )
    p.add_argument("--db", metavar="PATH", help="the results database (default: $FRAGSIM_DB)")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="the HTML file (default: fragsim-report-RUNID.html)"
    )
    p.add_argument("--png", metavar="DIR", help="also write each plot and memory map as a PNG")
    p.set_defaults(func=cmd_report)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report of the runs named on the command line."""
    db = ResultsDB(args.db)
    runs = load_runs(db, args.runs)
    out = Path(args.output) if args.output else Path(f"fragsim-report-{runs[0].run_id}.html")
    write_report(out, runs)
    print(f"fragsim report: wrote {out}", file=sys.stderr)
    if args.png:
        for path in write_plot_pngs(args.png, runs):
            print(path)
    return 0
