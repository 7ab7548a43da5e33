"""Plots over simulated time (fragsim.viz.plots): the numbers each panel draws, from hand-made
samples with hand-computed sums and from a tiny run recorded in the results database, and
the matplotlib figures' data (not their pixels)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from fragsim.results import ResultsDB, RunRecord
from fragsim.scenario.config import load_scenario
from fragsim.scenario.runner import run_scenario
from fragsim.viz.plots import (
    PANELS,
    alloc_failures_by_class,
    alloc_failures_by_order,
    compaction_events,
    figure_png,
    fragmentation_score,
    free_by_order,
    migrated_pages,
    pageblocks_by_migratetype,
    panel_figure,
    run_panels,
    time_axis,
)

SMALL = Path(__file__).resolve().parent.parent / "fixtures" / "scenarios" / "small-android.toml"
MIN = 60_000_000_000


def arr(*v: int) -> np.ndarray:
    return np.array(v, np.int64)


def hand_samples() -> dict[str, np.ndarray]:
    return {
        "t_ns": arr(0, MIN, 2 * MIN),
        # free blocks per zone, order, migratetype
        "free.Normal.o0.Movable": arr(10, 5, 0),
        "free.Normal.o0.Unmovable": arr(1, 1, 1),
        "free.DMA.o3.Movable": arr(2, 2, 2),
        "free.Normal.o10.Movable": arr(1, 0, 0),
        "fail.KERNEL.o3": arr(0, 1, 4),
        "fail.ATOMIC.o3": arr(0, 0, 2),
        "fail.MOVABLE.o0": arr(0, 0, 0),
        "alloc.KERNEL.o3": arr(5, 9, 12),
        "compact_stall": arr(0, 2, 5),
        "compact_success": arr(0, 1, 3),
        "compact_fail": arr(0, 1, 2),
        "pgmigrate_success": arr(0, 40, 90),
        "pgmigrate_fail": arr(0, 0, 3),
        "pageblocks.DMA.Movable": arr(1, 1, 1),
        "pageblocks.Normal.Movable": arr(5, 4, 3),
        "pageblocks.Normal.Unmovable": arr(2, 3, 4),
        "pageblocks.Normal.Isolate": arr(0, 0, 0),
        "fragmentation_score.node0": arr(10, 95, 70),
        "fragmentation_score.node0.Normal": arr(10, 95, 70),
        "fragmentation_score_wmark.low": arr(80, 80, 80),
        "fragmentation_score_wmark.high": arr(90, 90, 90),
    }


def values(panel: Any) -> dict[str, list[float]]:
    return {s.label: s.values.tolist() for s in panel.series}


def test_panels_of_hand_made_samples() -> None:
    s = hand_samples()
    # pages: blocks x 2^order, summed over zones and migratetypes
    p = free_by_order(s)
    assert p.stacked and values(p) == {
        "order 0": [11, 6, 1],
        "order 3": [16, 16, 16],
        "order 10": [1024, 0, 0],
    }
    assert values(alloc_failures_by_order(s)) == {"order 3": [0, 1, 6]}  # order 0 never failed
    assert values(alloc_failures_by_class(s)) == {"KERNEL": [0, 1, 4], "ATOMIC": [0, 0, 2]}
    assert values(compaction_events(s)) == {
        "compact_stall": [0, 2, 5],
        "compact_success": [0, 1, 3],
        "compact_fail": [0, 1, 2],
    }
    assert values(migrated_pages(s)) == {
        "pgmigrate_success": [0, 40, 90],
        "pgmigrate_fail": [0, 0, 3],
    }
    p = pageblocks_by_migratetype(s)
    assert p.stacked and values(p) == {"Unmovable": [2, 3, 4], "Movable": [6, 5, 4]}
    p = fragmentation_score(s)
    assert values(p) == {
        "node 0": [10, 95, 70],
        "wmark high": [90, 90, 90],
        "wmark low": [80, 80, 80],
    }
    assert [x.style for x in p.series] == ["-", ":", ":"]
    for p in run_panels(s):
        assert p.note is None and p.t_ns.tolist() == [0, MIN, 2 * MIN]


def test_what_a_panel_says_when_there_is_nothing_to_draw() -> None:
    s = hand_samples()
    for k in ("fail.KERNEL.o3", "fail.ATOMIC.o3"):
        s[k] = arr(0, 0, 0)
    for k in ("compact_stall", "compact_success", "compact_fail", "pgmigrate_success"):
        s[k] = arr(0, 0, 0)
    s["pgmigrate_fail"] = arr(0, 0, 0)
    del s["fragmentation_score.node0"]  # a run recorded before the score was sampled
    assert alloc_failures_by_order(s).note == "no allocation failed"
    assert alloc_failures_by_class(s).note == "no allocation failed"
    assert compaction_events(s).note == "no direct compaction stall"
    assert migrated_pages(s).note == "no page was migrated"
    # nothing happened: the flat line sits at the bottom of the axis
    fig = panel_figure([migrated_pages(s)], ["r"])
    assert fig.axes[0].get_ylim() == (0.0, 1.0)
    p = fragmentation_score(s)
    assert p.series == () and p.note == "this run did not sample the fragmentation score"
    empty = {"t_ns": arr()}
    notes = [p.note for p in run_panels(empty)]
    assert all(n and "in this run's samples" in n or n and "did not sample" in n for n in notes)
    # every panel still draws (an empty chart with its note in the title)
    fig = panel_figure([fragmentation_score(s)], ["r"])
    assert "did not sample" in fig.texts[0].get_text()
    assert figure_png(fig).startswith(b"\x89PNG")


def test_time_axis() -> None:
    assert time_axis(arr(0, 90 * 10**9))[1] == "s"
    x, unit = time_axis(arr(0, MIN, 20 * MIN))
    assert unit == "min" and x.tolist() == [0, 1, 20]
    x, unit = time_axis(arr(0, 3 * 60 * MIN))
    assert unit == "h" and x.tolist() == [0, 3]
    assert time_axis(arr(0, 2 * 24 * 60 * MIN))[1] == "d"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """A tiny run (64 MiB, 20 simulated minutes, sampled every 2 minutes) written to a results
    database and read back."""
    r = run_scenario(load_scenario(SMALL), memmap_frames=0)
    db = ResultsDB(tmp_path_factory.mktemp("db") / "r.duckdb")
    now = dt.datetime.now(dt.UTC)
    rid = db.record(
        RunRecord(
            scenario="small",
            config={},
            config_hash="0" * 64,
            seed=1,
            started=now,
            finished=now,
            sim_ns=r.sim_ns,
            wall_s=r.wall_s,
            events=r.events,
            samples=r.samples,
        )
    )
    return db.samples_frame(rid)


def test_stacked_free_memory_equals_the_sampled_values(recorded: dict[str, np.ndarray]) -> None:
    s = recorded
    p = free_by_order(s)
    assert [x.label for x in p.series] == [f"order {o}" for o in range(11)]
    for o, series in enumerate(p.series):
        names = [k for k in s if k.startswith("free.") and k.split(".")[2] == f"o{o}"]
        assert len(names) == 5  # one zone, five migratetypes (no CMA)
        expect = sum(s[k] for k in names) << o
        np.testing.assert_array_equal(series.values, expect)
    # the top of the stack is the zone's NR_FREE_PAGES (buddy pages; per-CPU pages are not)
    np.testing.assert_array_equal(np.sum([x.values for x in p.series], axis=0), s["nr_free_pages"])
    p = pageblocks_by_migratetype(s)
    np.testing.assert_array_equal(np.sum([x.values for x in p.series], axis=0), np.full(11, 32))
    p = fragmentation_score(s)
    np.testing.assert_array_equal(p.series[0].values, s["fragmentation_score.node0"])
    fails = alloc_failures_by_class(s)
    for x in fails.series:
        names = [k for k in s if k.startswith(f"fail.{x.label}.")]
        np.testing.assert_array_equal(x.values, sum(s[k] for k in names))


def test_figures_hold_the_series(recorded: dict[str, np.ndarray]) -> None:
    other = dict(recorded)
    other["fragmentation_score.node0"] = recorded["fragmentation_score.node0"] // 2
    # a line panel overlays the runs: one line per series and run, the runs by line style
    fig = panel_figure([fragmentation_score(recorded), fragmentation_score(other)], ["off", "on"])
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    # the watermarks are the same in both runs: drawn once
    assert set(lines) == {"node 0 (off)", "node 0 (on)", "wmark high", "wmark low"}
    np.testing.assert_array_equal(
        lines["node 0 (off)"].get_ydata(), recorded["fragmentation_score.node0"]
    )
    np.testing.assert_array_equal(
        lines["node 0 (on)"].get_ydata(), other["fragmentation_score.node0"]
    )
    assert (
        lines["node 0 (off)"].get_linestyle() == "-"
        and lines["node 0 (on)"].get_linestyle() == "--"
    )
    np.testing.assert_array_equal(lines["node 0 (on)"].get_xdata(), recorded["t_ns"] / MIN)
    assert ax.get_xlabel() == "simulated time (min)"
    # a stacked panel is one stacked chart per run, side by side on a shared y axis
    fig = panel_figure([free_by_order(recorded), free_by_order(other)], ["off", "on"])
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == ["off", "on"]
    for a in fig.axes:
        polys = [c for c in a.collections if isinstance(c, PolyCollection)]
        assert len(polys) == 11
    assert figure_png(fig).startswith(b"\x89PNG")
    # a watermark that differs between the runs is drawn for each
    other["fragmentation_score_wmark.high"] = recorded["fragmentation_score_wmark.high"] - 5
    fig = panel_figure([fragmentation_score(recorded), fragmentation_score(other)], ["a", "b"])
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert set(lines) == {"node 0 (a)", "node 0 (b)", "wmark high", "wmark high (b)", "wmark low"}
    np.testing.assert_array_equal(lines["wmark high (b)"].get_ydata(), np.full(11, 85))
    with pytest.raises(ValueError, match="2 panels for 1 labels"):
        panel_figure([free_by_order(recorded)] * 2, ["x"])


def test_every_panel_draws_for_a_recorded_run(recorded: dict[str, np.ndarray]) -> None:
    for fn in PANELS:
        png = figure_png(panel_figure([fn(recorded)], ["run"]))
        assert png.startswith(b"\x89PNG") and len(png) > 5000
