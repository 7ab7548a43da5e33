"""sweep-report: Student-t intervals, the main metrics of a run, and a report built from the
database alone (a stored plan and runs recorded by hand, with hand-computed numbers)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest

from fragsim.cli import main
from fragsim.errors import ConfigError
from fragsim.results import ResultsDB, RunRecord
from fragsim.sweep.report import format_report, mean_ci, run_metrics, sweep_report, t_quantile
from fragsim.sweep.spec import load_sweep, plan_sweep
from fragsim.sweep.store import load_plan, recorded_keys, save_plan

FIX = Path(__file__).resolve().parents[1] / "fixtures"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("level", "df", "t"),
    [
        # two-sided critical values of Student's t (any statistics table)
        (0.95, 1, 12.706204736),
        (0.95, 2, 4.302652730),
        (0.95, 4, 2.776445105),
        (0.95, 19, 2.093024054),
        (0.95, 30, 2.042272456),
        (0.99, 5, 4.032142984),
        (0.90, 3, 2.353363435),
    ],
)
def test_t_quantile(level: float, df: int, t: float) -> None:
    assert t_quantile(level, df) == pytest.approx(t, abs=1e-8)


def test_mean_ci_by_hand() -> None:
    # 1, 2, 3, 4: mean 2.5, s = sqrt(5/3), half-width t(0.95, 3) * s / 2
    st = mean_ci([1, 2, 3, 4])
    assert st is not None
    assert st.mean == 2.5 and st.n == 4
    assert st.std == pytest.approx(math.sqrt(5 / 3))
    assert st.half_width == pytest.approx(3.182446305 * math.sqrt(5 / 3) / 2)
    one = mean_ci([7.0])
    assert one is not None and one.mean == 7.0 and one.half_width is None
    assert mean_ci([]) is None
    with pytest.raises(ConfigError, match="confidence level"):
        t_quantile(1.0, 3)


def summary(fail3: int, stall: int, free9: int) -> dict[str, Any]:
    """A run summary of the runner's shape: 8 order-3 requests (4 kernel, 4 atomic) of which
    ``fail3`` failed, 10 order-0 requests, compaction counts, free blocks."""
    z = [0] * 11
    kern_att, kern_fail = list(z), list(z)
    atom_att, atom_fail = list(z), list(z)
    kern_att[0], kern_att[3], atom_att[3] = 10, 4, 4
    kern_fail[3], atom_fail[3] = min(fail3, 4), max(fail3 - 4, 0)
    free = [5, 0, 0, 2, 1, 0, 0, 0, 0, free9, 1]
    return {
        "alloc": {
            "kernel": {"attempts": kern_att, "failures": kern_fail},
            "atomic": {"attempts": atom_att, "failures": atom_fail},
        },
        "compaction": {
            "compact_stall": stall,
            "compact_migrate_scanned": 100,
            "compact_free_scanned": 50,
            "pgmigrate_success": 7,
        },
        "free_blocks": free,
    }


CONFIG = {"machine": {"page_size": 4096, "pageblock_order": 9}}


def test_run_metrics_by_hand() -> None:
    m = run_metrics(summary(fail3=4, stall=2, free9=1), CONFIG)
    # order >= 3: 2*8 + 1*16 + 1*512 + 1*1024 = 1568 pages; order >= 9: 1536 pages
    assert m == {
        "fail% o0": 0.0,
        "fail% o3": 50.0,
        "compact_stall": 2.0,
        "compact_scanned": 150.0,
        "pgmigrate_success": 7.0,
        "free_MiB o3+": 1568 * 4096 / 2**20,
        "free_MiB o9+": 1536 * 4096 / 2**20,
    }


def record(db: ResultsDB, plan_run: Any, summ: dict[str, Any], version: str | None = None) -> str:
    rec = RunRecord(
        scenario="small-android",
        config=CONFIG,
        config_hash=plan_run.config_hash,
        seed=plan_run.seed,
        started=T0,
        finished=T0,
        sim_ns=1,
        wall_s=0.1,
        events=1,
        summary=summ,
    )
    if version:
        rec.version = version
    return db.record(rec, once=True)


def test_report_from_the_database_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "r.toml"
    f.write_text(
        f"""
[sweep]
name = "rep"
scenario = "{FIX / "scenarios" / "small-android.toml"}"
seeds = "1..3"
[grid]
"scenario.batch" = [64, 128]
"""
    )
    plan = plan_sweep(load_sweep(f))
    db = ResultsDB(tmp_path / "r.duckdb")
    save_plan(db, plan)
    by = {(r.setting.index, r.seed): r for r in plan.runs}
    # batch=64: three seeds; order-3 failures 0, 2, 4 of 8; stalls 1, 2, 6; free order-9 0,1,2
    for seed, (f3, stall, f9) in zip((1, 2, 3), [(0, 1, 0), (2, 2, 1), (4, 6, 2)], strict=True):
        record(db, by[(0, seed)], summary(f3, stall, f9))
    # batch=128: two seeds; and one run of another fragsim version that must not count
    record(db, by[(1, 1)], summary(8, 3, 0))
    record(db, by[(1, 2)], summary(8, 5, 0))
    record(db, by[(1, 3)], summary(0, 0, 0), version="0.0.1")
    # recording a run twice returns the first id and adds nothing
    first = record(db, by[(1, 1)], summary(8, 3, 0))
    assert record(db, by[(1, 1)], summary(0, 0, 0)) == first
    assert len(db.runs()) == 6
    assert recorded_keys(db) == {(r.config_hash, r.seed) for k, r in by.items() if k != (1, 3)}

    rep = sweep_report(db, "rep")
    a, b = rep.settings
    assert (a.label, a.planned, a.recorded) == ("scenario.batch=64", 3, 3)
    assert (b.label, b.planned, b.recorded) == ("scenario.batch=128", 3, 2)
    assert rep.metrics == [
        "fail% o0",
        "fail% o3",
        "compact_stall",
        "compact_scanned",
        "pgmigrate_success",
        "free_MiB o3+",
        "free_MiB o9+",
    ]
    # fail% o3 of batch=64: 0, 25, 50 %: mean 25, s = 25, half-width t(0.95, 2) * 25 / sqrt(3)
    st = a.stats["fail% o3"]
    assert st.mean == 25.0 and st.n == 3
    assert st.half_width == pytest.approx(4.302652730 * 25 / math.sqrt(3))
    # stalls of batch=128: 3 and 5: mean 4, s = sqrt(2), half-width t(0.95, 1) * sqrt(2)/sqrt(2)
    st = b.stats["compact_stall"]
    assert st.mean == 4.0 and st.half_width == pytest.approx(12.706204736)
    assert b.stats["fail% o3"].mean == 100.0 and b.stats["fail% o3"].half_width == 0.0
    # free order >= 9 of batch=64: 0, 512, 1024 pages of order 9 + 1024 of order 10: 4, 6, 8 MiB
    assert a.stats["free_MiB o9+"].mean == 6.0

    text = format_report(rep)
    assert text.splitlines()[0] == (
        f"sweep rep: scenario {FIX / 'scenarios' / 'small-android.toml'}, fragsim 0.1.0; "
        "2 settings x 3 seeds; 5 of 6 runs recorded"
    )
    assert "1 runs are not recorded" in text
    assert "  scenario.batch=128    2             4       12.71  [-8.706, 16.71]" in text

    # the CLI: by name or by the sweep file, with the plot
    png = tmp_path / "out" / "rep.png"
    assert main(["sweep-report", str(f), "--db", str(db.path), "--plot", str(png)]) == 0
    out = capsys.readouterr()
    assert out.out == text and f"wrote {png}" in out.err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep-report", "rep", "--db", str(db.path), "--json", "--no-plot"]) == 0
    assert '"half_width": 12.7062' in capsys.readouterr().out
    assert main(["sweep-report", "nope", "--db", str(db.path)]) == 2
    assert "no sweep named 'nope' (known: rep;" in capsys.readouterr().err


def test_saving_a_plan_again_replaces_it(tmp_path: Path) -> None:
    db = ResultsDB(tmp_path / "p.duckdb")
    base = f"[sweep]\nname = 'p'\nscenario = '{FIX / 'scenarios' / 'small-android.toml'}'\n"
    f = tmp_path / "p.toml"
    f.write_text(base + "seeds = '1..2'\n[grid]\n'scenario.batch' = [64, 128]\n")
    save_plan(db, plan_sweep(load_sweep(f)))
    assert len(load_plan(db, "p").rows) == 4
    f.write_text(base + "seeds = '1..3'\n[grid]\n'scenario.batch' = [64]\n")
    save_plan(db, plan_sweep(load_sweep(f)))
    p = load_plan(db, "p")
    assert [(r.label, r.seed) for r in p.rows] == [("scenario.batch=64", s) for s in (1, 2, 3)]
    assert p.rows[0].values == (("scenario.batch", 64),)
    assert p.definition["seeds"] == [1, 2, 3]
