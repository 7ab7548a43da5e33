"""The fidelity tier: fragsim's oracle scenarios against the real Linux 6.1 runs
(tests/fixtures/oracle-6.1, copied from shared/data/oracle-6.1), stage by stage.

The thresholds lock in what is achieved now (tests/fidelity/baseline.json): a model change
that moves a metric further from the kernel than its baseline distance allows, or adds an
"off" verdict, fails. After an intended improvement, rewrite the baseline with
``PYTHONPATH=src python tests/fidelity/test_fidelity.py --rebaseline`` and review its diff.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from fragsim.errors import FragsimError
from fragsim.fidelity import (
    Comparison,
    compare,
    counter_deltas,
    distance,
    load_real_runs,
    run_fidelity,
    stage_metrics,
    update_doc,
    verdict,
)
from fragsim.workloads.oracle import Xorshift64, draw_jobs, fill_page_draws, tmpfs_sizes

HERE = Path(__file__).parent
REAL = HERE.parent / "fixtures" / "oracle-6.1"
BASELINE = HERE / "baseline.json"
#: the scenarios of the tier, their real runs and the seeds (full length: 13 s and 4 s)
TIER = {
    "oracle-default": (REAL / "default", (0,)),
    "oracle-anon-churn": (REAL / "anon-churn", (0,)),
}


# ---------------------------------------------------------------------- the comparison's rules
def test_distance_is_the_median_gap_over_the_kernels_spread() -> None:
    # kernel 890, 956, 22720: median 956, spread 21830 -> (7544 - 956) / 21830
    assert distance([890, 22720, 956], [7544]) == pytest.approx(6588 / 21830)
    # identical runs: the floor is 10 % of the median (49152 -> 4915.2)
    assert distance([49152, 49152, 49152], [81942]) == pytest.approx(32790 / 4915.2)
    # ... or 2 pages for small counts
    assert distance([19, 19, 19], [10]) == pytest.approx(4.5)
    assert [verdict(d) for d in (0.0, 1.0, 1.01, 3.0, 3.01)] == [
        "match",
        "match",
        "near",
        "near",
        "off",
    ]


def test_stage_metrics_of_a_real_stage() -> None:
    d = REAL / "default" / "20261125T211925Z" / "snapshots" / "s00_boot"
    m = stage_metrics({n: (d / n).read_text() for n in ("buddyinfo", "pagetypeinfo", "vmstat")})
    # buddyinfo: DMA 0 0 0 0 0 1 1 1 0 1 3, DMA32 0 0 1 2 1 2 1 3 1 2 223
    assert [m[f"buddy.o{o}"] for o in range(11)] == [0, 0, 1, 2, 1, 3, 2, 4, 1, 3, 226]
    assert m["buddy.free_pages"] == 233988 == m["vmstat.nr_free_pages"]
    # pagetypeinfo blocks: DMA 1 7 0 0 0, DMA32 18 480 6 0 0
    assert (m["pageblocks.Unmovable"], m["pageblocks.Movable"]) == (19, 487)
    assert m["pageblocks.Reclaimable"] == 6 and m["pageblocks.HighAtomic"] == 0
    assert "vmstat.nr_inactive_anon" not in m and "vmstat.pgmigrate_success" in m


def test_counters_are_changes_since_the_first_stage() -> None:
    stages = {
        "a": {"vmstat.pgfree": 100, "vmstat.nr_free_pages": 50, "buddy.o0": 3},
        "b": {"vmstat.pgfree": 130, "vmstat.nr_free_pages": 40, "buddy.o0": 5},
    }
    assert counter_deltas(stages)["b"] == {
        "vmstat.pgfree": 30,
        "vmstat.nr_free_pages": 40,
        "buddy.o0": 5,
    }


def test_compare_needs_every_real_stage_and_skips_all_zero_metrics() -> None:
    k = {"s0": [{"x": 0, "y": 4}, {"x": 0, "y": 6}]}
    rows = compare(k, {"s0": [{"x": 0, "y": 5}]})
    assert [(r.metric, r.kernel, r.fragsim, r.verdict) for r in rows] == [
        ("y", (4.0, 6.0), (5.0,), "match")
    ]
    with pytest.raises(FragsimError, match="stage s0: the scenario has no snapshot"):
        compare(k, {"s1": [{"y": 5}]})


def test_real_runs_load_in_stage_order_with_their_cpus() -> None:
    runs = load_real_runs(REAL / "default")
    assert [(r.name, r.nr_cpus) for r in runs] == [
        ("20261125T211925Z", 2),
        ("20261125T211948Z", 2),
        ("20261125T212010Z", 2),
        ("20261125T212117Z", 1),
    ]
    assert list(runs[0].stages)[::4] == ["s00_boot", "s04_balloon_inflated", "s08_released"]
    # balloon_inflate as a change since s00: the README's 131072
    assert runs[0].stages["s04_balloon_inflated"]["vmstat.balloon_inflate"] == 131072
    with pytest.raises(FragsimError, match="no run folders"):
        load_real_runs(REAL)


def test_update_doc_replaces_only_its_block(tmp_path: Path) -> None:
    doc = tmp_path / "f.md"
    doc.write_text("intro\n<!-- fidelity:x:begin -->\nold\n<!-- fidelity:x:end -->\nend\n")
    update_doc(str(doc), "x", "new table\n")
    assert doc.read_text() == (
        "intro\n<!-- fidelity:x:begin -->\nnew table\n<!-- fidelity:x:end -->\nend\n"
    )
    with pytest.raises(FragsimError, match="no block"):
        update_doc(str(doc), "y", "t\n")
    assert [p.name for p in tmp_path.iterdir()] == ["f.md"]  # no temporary file left


# ---------------------------------------------------------------------- the oracle workloads
def test_churn_jobs_are_drawn_as_oracle_work_drew_them() -> None:
    # s06_end/results of every real run: jobs=140 anon_mib=440.1 files=7175 pipes=930
    # forks=149 elapsed_s=69.07..69.09
    jobs = draw_jobs(60, 6, 1, 8192, setup_ns=20_000_000, page_ns=0)
    assert len(jobs) == 140
    assert round(sum(j.anon_kb for j in jobs) / 1024, 1) == 440.1
    assert sum(j.nfiles for j in jobs) == 7175
    assert sum(j.npipes for j in jobs) == 930
    assert sum(j.nforks for j in jobs) == 149
    assert 68.5e9 < max(j.end_ns for j in jobs) < 69.5e9


def test_tmpfs_file_sizes_are_oracle_works() -> None:
    # console.log: "oracle_work: tmpfs files=12000 pages_written=23980 deleted_files=6000
    # pages_deleted=12045". The sizes depend on the draws fill_page() takes between them;
    # oracle_work's delete loop re-draws the sizes without those, so its 12045 is not what it
    # unlinked (11999 pages).
    sizes = tmpfs_sizes(12000, 1, 3)
    assert sum(sizes) == 23980
    assert sum(sizes[1::2]) == 11999
    rng = Xorshift64(0x1234567)
    redraw = [1 + rng.next() % 3 for _ in range(12000)]
    assert sum(redraw[1::2]) == 12045


def test_skip_is_the_same_as_drawing() -> None:
    a, b = Xorshift64(0x1234567), Xorshift64(0x1234567)
    for _ in range(100_003):
        a.next()
    b.skip(100_003)
    assert a.state == b.state
    # k = (unsigned)((7 * 2654435761) >> 7) % 9 = 145164455 % 9 = 8: the whole page random,
    # 8 * 64 draws
    assert ((7 * 2654435761) >> 7) % 2**32 % 9 == 8
    assert fill_page_draws([7]) == 512
    # the push region's pages with k = 0 (same-filled): the real zram's same_pages at s01
    assert sum(fill_page_draws([i]) == 0 for i in range(7, 7 + 49152)) == 5464


# ---------------------------------------------------------------------- the tier
def _comparison(name: str) -> Comparison:
    real, seeds = TIER[name]
    return run_fidelity(name, real, seeds=seeds)


@pytest.fixture(scope="module")
def comparisons() -> dict[str, Comparison]:
    return {name: _comparison(name) for name in TIER}


def _baseline_of(c: Comparison) -> dict[str, Any]:
    return {
        "runs": c.runs,
        "seeds": c.seeds,
        "verdicts": c.verdicts(),
        "distance": {f"{r.stage} {r.metric}": r.distance for r in c.rows},
    }


@pytest.mark.parametrize("name", list(TIER))
def test_fidelity_is_not_worse_than_the_baseline(
    name: str, comparisons: dict[str, Comparison]
) -> None:
    c = comparisons[name]
    base = json.loads(BASELINE.read_text())[name]
    assert c.runs == base["runs"] and c.seeds == base["seeds"]
    worse = []
    for r in c.rows:
        key = f"{r.stage} {r.metric}"
        b = base["distance"].get(key)
        limit = 0.5 if b is None else b + 0.5 + 0.25 * b
        if r.distance > limit:
            worse.append(
                f"{key}: distance {r.distance} > {limit:.2f} (kernel "
                f"{r.kernel_range}, fragsim {r.fragsim_range})"
            )
    assert not worse, "fidelity got worse:\n" + "\n".join(worse)
    assert c.verdicts()["off"] <= base["verdicts"]["off"]
    assert c.verdicts()["match"] >= base["verdicts"]["match"] - 3


def test_default_left_out_the_one_cpu_run(comparisons: dict[str, Comparison]) -> None:
    c = comparisons["oracle-default"]
    assert c.excluded == {"20261125T212117Z": "1 CPUs, the scenario's machine has 2"}
    stages = list(dict.fromkeys(r.stage for r in c.rows))
    assert stages == [
        "s00_boot",
        "s01_zram_loaded",
        "s02_fragmented",
        "s03_compacted",
        "s04_balloon_inflated",
        "s05_balloon_compacted",
        "s06_balloon_deflated",
        "s07_thp_faulted",
        "s08_released",
    ]


def test_key_numbers_match_the_kernel(comparisons: dict[str, Comparison]) -> None:
    """What the README's variance section says a model must get right, within the kernel's
    own spread: the checkerboard's order-0 blocks before and after compact_memory, what zram
    and kswapd took, free memory and THP faults; anon-churn's free memory at every stage."""
    d = comparisons["oracle-default"]
    for stage, metric in [
        ("s02_fragmented", "buddy.o0"),
        ("s03_compacted", "buddy.o0"),
        ("s03_compacted", "vmstat.pgmigrate_success"),
        ("s01_zram_loaded", "vmstat.pswpout"),
        ("s04_balloon_inflated", "vmstat.pswpout"),
        ("s04_balloon_inflated", "vmstat.pgsteal_kswapd"),
        ("s04_balloon_inflated", "buddy.free_pages"),
        ("s06_balloon_deflated", "buddy.o0"),
        ("s07_thp_faulted", "vmstat.thp_fault_alloc"),
    ]:
        assert d.row(stage, metric).verdict == "match", (stage, metric)
    a = comparisons["oracle-anon-churn"]
    for r in a.rows:
        if r.metric == "buddy.free_pages":
            assert r.verdict == "match", r


def test_cli_prints_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from fragsim.cli import main

    one = tmp_path / "runs"
    shutil.copytree(REAL / "anon-churn" / "20261125T212204Z", one / "r1")
    assert main(["fidelity", "oracle-anon-churn", str(one), "--seeds", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"] == ["r1"] and doc["seeds"] == [0]
    row = next(
        r for r in doc["rows"] if r["stage"] == "s00_start" and r["metric"] == "buddy.free_pages"
    )
    assert row["kernel_range"] == [169587, 169587]
    assert main(["fidelity", "oracle-anon-churn", str(one), "--seeds", "0"]) == 2


def rebaseline() -> None:
    out = {name: _baseline_of(_comparison(name)) for name in TIER}
    BASELINE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    for name, b in out.items():
        print(name, b["verdicts"])


if __name__ == "__main__":
    if sys.argv[1:] == ["--rebaseline"]:
        rebaseline()
    else:
        print(__doc__)
