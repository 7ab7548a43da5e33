"""What a run records for the pictures: proactive compaction's fragmentation score in every
sample (checked by hand against mm/compaction.c's formulas), memory maps at evenly spaced
samples, and their round trip through the results database (both resolutions, old databases
without the table, bad frames refused, atomic writes)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from fragsim import GFP_KERNEL, Machine, vmstat
from fragsim.cli import demo_workload
from fragsim.errors import ConfigError
from fragsim.results import ResultsDB, RunRecord
from fragsim.scenario.config import load_scenario
from fragsim.scenario.runner import fragmentation_scores, memmap_frame_indices, run_scenario
from fragsim.viz.memmap import (
    NR_MAP_KINDS,
    MapKind,
    frame_memmap,
    memmap_frame,
    memmap_from_machine,
    render,
)

SMALL = Path(__file__).resolve().parent.parent / "fixtures" / "scenarios" / "small-android.toml"
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def record_of(frames: list[Any], **kw: Any) -> RunRecord:
    args: dict[str, Any] = dict(
        scenario="maps",
        config={"scenario": "maps"},
        config_hash="0" * 64,
        seed=1,
        started=T0,
        finished=T0,
        sim_ns=0,
        wall_s=0.0,
        events=0,
        samples={"t_ns": np.array([0, 60], np.int64), "x": np.array([1, 2], np.int64)},
        memmaps=frames,
    )
    args.update(kw)
    return RunRecord(**args)


def test_fragmentation_score_by_hand() -> None:
    m = Machine("flat:4096", nr_cpus=1)  # one zone, Normal, 4096 present pages, pageblock order 9
    pfns = [m.alloc_pages(GFP_KERNEL, 0) for _ in range(1200)]
    for p in pfns[::2]:
        m.free_pages(p, 0)
    m.drain_all_pages()
    assert vmstat.buddyinfo(m).split()[4:] == "600 0 0 0 1 0 1 0 1 1 2".split()
    # free pages: 600 + 16 + 64 + 256 + 512 + 2 * 1024 = 3496; in blocks of order >= 9
    # (COMPACTION_HPAGE_ORDER = pageblock order): 512 + 2048 = 2560; extfrag_for_order(9) =
    # (3496 - 2560) * 100 / 3496 = 26 (integer division); weighted by present pages over the
    # node's present pages + 1: 4096 * 26 / 4097 = 25
    s = fragmentation_scores(m)
    assert s["fragmentation_score.node0.Normal"] == 25
    assert s["fragmentation_score.node0"] == 25
    # fragmentation_score_wmark(): low = max(100 - proactiveness, 5), high = min(low + 10, 100)
    assert (s["fragmentation_score_wmark.low"], s["fragmentation_score_wmark.high"]) == (80, 90)
    m.sysctl("vm.compaction_proactiveness", 97)
    s = fragmentation_scores(m)
    assert (s["fragmentation_score_wmark.low"], s["fragmentation_score_wmark.high"]) == (5, 15)
    m.sysctl("vm.compaction_proactiveness", 0)
    s = fragmentation_scores(m)
    assert (s["fragmentation_score_wmark.low"], s["fragmentation_score_wmark.high"]) == (100, 100)


def test_node_score_is_the_sum_of_the_weighted_zone_scores() -> None:
    m = Machine("x86_64-1g", nr_cpus=1)  # DMA (3998 present pages) and DMA32 (258016)
    ev, fr, handles = demo_workload(m, 1)
    m.run(ev, handles)
    m.run(fr, handles)
    m.drain_all_pages()
    s = fragmentation_scores(m)
    zones = {k: v for k, v in s.items() if k.startswith("fragmentation_score.node0.")}
    assert set(zones) == {"fragmentation_score.node0.DMA", "fragmentation_score.node0.DMA32"}
    assert s["fragmentation_score.node0"] == sum(zones.values()) > 0
    # the big zone dominates: DMA32's weight is 258016 / 262015
    assert zones["fragmentation_score.node0.DMA32"] >= 10 * zones["fragmentation_score.node0.DMA"]


def test_memmap_frame_indices() -> None:
    assert memmap_frame_indices(5, 50) == {0, 1, 2, 3, 4}
    assert memmap_frame_indices(181, 50) >= {0, 180} and len(memmap_frame_indices(181, 50)) == 50
    picked = sorted(memmap_frame_indices(181, 50))
    gaps = np.diff(picked)
    assert set(gaps.tolist()) <= {3, 4}  # 180 / 49 = 3.67: evenly spaced
    assert memmap_frame_indices(11, 3) == {0, 5, 10}
    assert memmap_frame_indices(11, 1) == {10}
    assert memmap_frame_indices(11, 0) == set() and memmap_frame_indices(0, 5) == set()


@pytest.fixture(scope="module")
def small_run() -> Any:
    return run_scenario(load_scenario(SMALL), memmap_frames=4)


def test_run_stores_maps_at_evenly_spaced_samples_and_scores(small_run: Any) -> None:
    r = small_run
    # 20 minutes sampled every 2 minutes: 11 samples; 4 frames at samples 0, 3, 7, 10
    t = r.samples["t_ns"]
    assert len(t) == 11
    assert [f.t_ns for f in r.memmaps] == [int(t[i]) for i in (0, 3, 7, 10)]
    last = r.memmaps[-1]
    assert last.resolution == "page" and last.npages == 16384 and last.pageblock_order == 9
    assert last.kinds == tuple(k.name for k in MapKind)
    # the end map agrees with the end summary: free pages of each order (per-CPU pages show as
    # order 0) add up to the buddy counts of the last sample
    kinds = frame_memmap(last).kinds
    for o in range(1, 11):
        blocks = sum(
            int(r.samples[k][-1])
            for k in r.samples
            if k.startswith("free.") and k.split(".")[2] == f"o{o}"
        )
        assert int((kinds == MapKind(o)).sum()) == blocks << o, o
    score = r.samples["fragmentation_score.node0"]
    assert score.dtype == np.int64 and (0 <= score).all() and (score <= 100).all() and score.any()
    np.testing.assert_array_equal(score, r.samples["fragmentation_score.node0.Normal"])


def test_frames_round_trip_through_the_database(small_run: Any, tmp_path: Path) -> None:
    db = ResultsDB(tmp_path / "r.duckdb")
    rid = db.record(record_of(small_run.memmaps))
    back = db.load(rid).memmaps
    assert [f.t_ns for f in db.memmap_frames(rid[:5])] == [f.t_ns for f in back]
    assert len(back) == 4
    for a, b in zip(small_run.memmaps, back, strict=True):
        assert (a.t_ns, a.resolution, a.npages, a.pageblock_order, a.kinds, a.info) == (
            b.t_ns,
            b.resolution,
            b.npages,
            b.pageblock_order,
            b.kinds,
            b.info,
        )
        assert b.data.dtype == np.uint8 and b.pageblock_mt.dtype == np.int8
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.pageblock_mt, b.pageblock_mt)
    # compressed: far below one byte per page per frame
    with duckdb.connect(str(db.path), read_only=True) as con:
        row = con.execute("SELECT sum(octet_length(data)) FROM memmap_frames").fetchone()
    assert row is not None and 0 < row[0] < 4 * 16384 // 4


def test_pageblock_resolution_draws_the_same_picture(tmp_path: Path) -> None:
    m = Machine("flat:16384", nr_cpus=1)
    ev, fr, handles = demo_workload(m, 3)
    m.run(ev, handles)
    m.run(fr, handles)
    m.drain_all_pages()
    full = memmap_from_machine(m)
    f = memmap_frame(m, 7, max_pages=8192)  # 16384 pages > 8192: per-pageblock counts
    assert f.resolution == "pageblock" and f.data.shape == (32, NR_MAP_KINDS)
    expect = np.stack([np.bincount(b, minlength=NR_MAP_KINDS) for b in full.kinds.reshape(32, 512)])
    np.testing.assert_array_equal(f.data, expect)
    db = ResultsDB(tmp_path / "r.duckdb")
    (back,) = db.load(db.record(record_of([f]))).memmaps
    assert back.data.dtype == np.uint32
    np.testing.assert_array_equal(back.data, f.data)
    mm = frame_memmap(back)
    assert "recorded per pageblock" in mm.notes[0]
    np.testing.assert_array_equal(mm.counts(), full.counts())
    a = render(mm, mode="pageblock").rgb
    b = render(full, mode="pageblock").rgb
    np.testing.assert_array_equal(a, b)
    # the per-page frame of the same machine is the map itself
    np.testing.assert_array_equal(frame_memmap(memmap_frame(m, 7)).kinds, full.kinds)


def test_frames_are_matched_by_kind_name(small_run: Any) -> None:
    import dataclasses

    f = small_run.memmaps[-1]
    # a recording whose kind list is in another order, with a kind this fragsim does not know
    names = list(reversed(f.kinds))
    names[names.index("LRU_ANON")] = "SOMETHING_NEW"
    remap = {k: names.index(MapKind[k].name) for k in f.kinds if MapKind[k].name in names}
    data = np.array([remap.get(f.kinds[v], names.index("SOMETHING_NEW")) for v in f.data], np.uint8)
    g = dataclasses.replace(f, kinds=tuple(names), data=data)
    kinds = frame_memmap(g).kinds
    orig = frame_memmap(f).kinds
    anon = orig == MapKind.LRU_ANON
    assert anon.any()
    np.testing.assert_array_equal(kinds[~anon], orig[~anon])
    assert (kinds[anon] == MapKind.OTHER_KERNEL).all()


def test_old_databases_and_runs_without_frames_still_load(tmp_path: Path) -> None:
    db = ResultsDB(tmp_path / "r.duckdb")
    rid = db.record(record_of([]))
    assert db.load(rid).memmaps == [] and db.memmap_frames(rid) == []
    # a file written by a fragsim without the table: the run loads, with no frames
    with duckdb.connect(str(db.path)) as con:
        con.execute("DROP TABLE memmap_frames")
    assert db.load(rid).memmaps == []
    assert db.load(rid).samples["x"].tolist() == [1, 2]
    # opening it again for writing adds the table (additive schema, same version)
    ResultsDB(db.path)
    with duckdb.connect(str(db.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM memmap_frames").fetchone() == (0,)


def test_bad_frames_are_refused_before_writing(small_run: Any, tmp_path: Path) -> None:
    import dataclasses

    db = ResultsDB(tmp_path / "r.duckdb")
    f = small_run.memmaps[0]
    bad = [
        (dataclasses.replace(f, resolution="pixel"), "memmaps\\[0\\].resolution"),
        (
            dataclasses.replace(f, data=f.data[:-1]),
            "memmaps\\[0\\].data: expected uint8\\[16384\\]",
        ),
        (dataclasses.replace(f, data=f.data.astype(np.int64)), "memmaps\\[0\\].data"),
        (dataclasses.replace(f, pageblock_mt=f.pageblock_mt[:3]), "pageblock_mt: expected int8"),
        (dataclasses.replace(f, kinds=("FREE_0",)), "a kind value beyond the 1 kinds"),
        (dataclasses.replace(f, info={"x": object()}), "memmaps\\[0\\].info"),
    ]
    for frame, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            db.record(record_of([frame]))
    with pytest.raises(ConfigError, match="expected a MemMapFrame"):
        db.record(record_of(["frame"]))
    assert db.runs() == []


def test_a_failing_write_leaves_no_frames(
    small_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = ResultsDB(tmp_path / "r.duckdb")
    good = ResultsDB._frame_rows

    def one_bad_row(frames: list[Any]) -> list[tuple[Any, ...]]:
        rows = good(frames)
        return [*rows, (len(rows), 0, "page", 1, 9, "[]", "{}", None, b"")]  # data NOT NULL

    monkeypatch.setattr(ResultsDB, "_frame_rows", staticmethod(one_bad_row))
    with pytest.raises(duckdb.ConstraintException):
        db.record(record_of(small_run.memmaps))
    with duckdb.connect(str(db.path), read_only=True) as con:
        for table in ("runs", "samples", "memmap_frames"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


def test_frames_leave_out_the_pfns_below_the_first_zone() -> None:
    m = Machine("arm64-512m", nr_cpus=1)  # RAM at 2 GiB: pfns 524288-655359, one DMA32 zone
    f = memmap_frame(m, 0)
    assert f.info["start_pfn"] == 524288 and f.npages == 131072 and f.pageblock_mt.shape == (256,)
    full = memmap_from_machine(m)
    mm = frame_memmap(f)
    assert mm.start_pfn == 524288
    np.testing.assert_array_equal(mm.kinds, full.kinds[524288:])
    np.testing.assert_array_equal(mm.pageblock_mt, full.pageblock_mt[1024:])
    assert "pfns 0-524287 (below the first zone, no memory) are not drawn" in mm.notes
    assert mm.describe_zones() == "zones: DMA32 pfns 524288-655359"
