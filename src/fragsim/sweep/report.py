"""``fragsim sweep-report``: per-setting means and confidence intervals across seeds, from the
results database alone (the sweep's stored plan and its recorded runs).

The main metrics of a run, read from its recorded summary (fragsim/scenario/runner.py):

* ``fail% oN``: allocation failure rate of order N, in percent of the requests of that order
  (all GFP classes together); for every order that some run of the sweep requested. A run
  without requests of that order has no value for it.
* ``compact_stall``: direct compactions (the ``compactstall`` vmstat counter), and
  ``compact_scanned``: pages both scanners looked at (``compact_migrate_scanned`` +
  ``compact_free_scanned``): what compaction cost.
* ``pgmigrate_success``: pages compaction (and other migration) moved.
* ``free_MiB oN+``: free memory at the end in buddy blocks of order >= N, for N = 3 and the
  pageblock order: the free high-order memory.

A metric's mean over the seeds of a setting comes with the half-width of its two-sided
confidence interval from Student's t distribution with n - 1 degrees of freedom
(:func:`t_quantile`, exact for integer degrees of freedom); one seed has no interval.
The plot (matplotlib, extra ``[plot]``) draws each metric against the first grid key (its
values on the x axis, numeric when they are numbers), one line per combination of the other
keys and variants, with the intervals as error bars.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fragsim.errors import ConfigError
from fragsim.results import ResultsDB
from fragsim.sweep.spec import _label_value
from fragsim.sweep.store import StoredSweep, load_plan

__all__ = [
    "MetricStats",
    "SettingReport",
    "SweepReport",
    "format_report",
    "mean_ci",
    "plot_report",
    "run_metrics",
    "sweep_report",
    "t_quantile",
]


# ---------------------------------------------------------------------- statistics
def _t_central(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` (Abramowitz and Stegun 26.7.3-4: a
    finite sum in theta = atan(t / sqrt(df)))."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term, total = math.cos(theta), math.cos(theta)
        for k in range(2, df - 1, 2):  # cos^(k+1): coefficient 2*4*..*k / 3*5*..*(k+1)
            term *= c2 * k / (k + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term, total = 1.0, 1.0
    for k in range(2, df - 1, 2):  # cos^k: coefficient 1*3*..*(k-1) / 2*4*..*k
        term *= c2 * (k - 1) / k
        total += term
    return math.sin(theta) * total


def t_quantile(level: float, df: int) -> float:
    """The t with P(|T| < t) = ``level`` for Student's t with ``df`` degrees of freedom (the
    critical value of a two-sided ``level`` interval: 12.706 for 0.95 and 1, 2.093 for 0.95
    and 19)."""
    if not 0 < level < 1:
        raise ConfigError(f"confidence level: expected a number in (0, 1), got {level}")
    if df < 1:
        raise ConfigError(f"t_quantile: expected df >= 1, got {df}")
    lo, hi = 0.0, 1.0
    while _t_central(hi, df) < level:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_central(mid, df) < level:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return (lo + hi) / 2


@dataclass(frozen=True, slots=True)
class MetricStats:
    """A metric over the seeds of one setting: mean, half-width of the confidence interval
    (None with one value), sample standard deviation and how many values."""

    mean: float
    half_width: float | None
    std: float | None
    n: int


def mean_ci(values: Sequence[float], level: float = 0.95) -> MetricStats | None:
    """Mean and the Student-t confidence interval's half-width of ``values`` (None when
    there are none)."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return None
    mean = math.fsum(xs) / n
    if n == 1:
        return MetricStats(mean, None, None, 1)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    return MetricStats(mean, t_quantile(level, n - 1) * std / math.sqrt(n), std, n)


# ---------------------------------------------------------------------- metrics of a run
def run_metrics(summary: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    """The main metrics (module docstring) of one recorded run."""
    out: dict[str, float] = {}
    classes = list(summary["alloc"].values())
    orders = len(classes[0]["attempts"]) if classes else 0
    for o in range(orders):
        att = sum(c["attempts"][o] for c in classes)
        if att:
            out[f"fail% o{o}"] = 100.0 * sum(c["failures"][o] for c in classes) / att
    comp = summary["compaction"]
    out["compact_stall"] = float(comp["compact_stall"])
    out["compact_scanned"] = float(comp["compact_migrate_scanned"] + comp["compact_free_scanned"])
    out["pgmigrate_success"] = float(comp["pgmigrate_success"])
    page = int(config["machine"]["page_size"])
    blocks = summary["free_blocks"]
    for lo in sorted({3, int(config["machine"]["pageblock_order"])}):
        pages = sum(n << o for o, n in enumerate(blocks) if o >= lo)
        out[f"free_MiB o{lo}+"] = pages * page / 2**20
    return out


def _metric_order(name: str) -> tuple[int, int, str]:
    if name.startswith("fail% o"):
        return (0, int(name[7:]), name)
    rest = ["compact_stall", "compact_scanned", "pgmigrate_success"]
    if name in rest:
        return (1, rest.index(name), name)
    if name.startswith("free_MiB o"):
        return (2, int(name[10:].rstrip("+")), name)
    return (3, 0, name)


# ---------------------------------------------------------------------- the report
@dataclass
class SettingReport:
    """One setting: its label and values, how many of its runs are recorded, and the
    statistics of every metric."""

    index: int
    label: str
    values: tuple[tuple[str, Any], ...]
    planned: int
    recorded: int
    stats: dict[str, MetricStats] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)


@dataclass
class SweepReport:
    """A sweep's report (``sweep_report``)."""

    name: str
    version: str
    scenario: str
    level: float
    #: the grid keys (x axis: the first) and whether the sweep has [[variants]]
    grid_keys: list[str]
    has_variants: bool
    seeds: int
    metrics: list[str]
    settings: list[SettingReport]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "scenario": self.scenario,
            "level": self.level,
            "metrics": self.metrics,
            "settings": [
                {
                    "label": s.label,
                    "values": dict(s.values),
                    "planned": s.planned,
                    "recorded": s.recorded,
                    "runs": s.run_ids,
                    "stats": {
                        m: {"mean": st.mean, "half_width": st.half_width, "std": st.std, "n": st.n}
                        for m, st in s.stats.items()
                    },
                }
                for s in self.settings
            ],
        }


def sweep_report(db: ResultsDB, name: str, *, level: float = 0.95) -> SweepReport:
    """The report of the stored sweep ``name``: for every setting, the statistics of the
    main metrics over its recorded runs (by config hash, seed and the sweep's version)."""
    t_quantile(level, 1)  # checks the level
    plan = load_plan(db, name)
    runs = _recorded_runs(db, plan)
    settings: dict[int, SettingReport] = {}
    values: dict[int, dict[str, list[float]]] = {}
    for row in plan.rows:
        s = settings.setdefault(
            row.setting, SettingReport(row.setting, row.label, row.values, 0, 0)
        )
        s.planned += 1
        hit = runs.get((row.config_hash, row.seed))
        if hit is None:
            continue
        rid, summary, config = hit
        s.recorded += 1
        s.run_ids.append(rid)
        for m, v in run_metrics(summary, config).items():
            values.setdefault(row.setting, {}).setdefault(m, []).append(v)
    names = sorted({m for d in values.values() for m in d}, key=_metric_order)
    for idx, s in settings.items():
        for m in names:
            st = mean_ci(values.get(idx, {}).get(m, []), level)
            if st is not None:
                s.stats[m] = st
    d = plan.definition
    return SweepReport(
        name=plan.name,
        version=plan.version,
        scenario=plan.scenario,
        level=level,
        grid_keys=list(d.get("grid", {})),
        has_variants=bool(d.get("variants")),
        seeds=len(d.get("seeds", [])),
        metrics=names,
        settings=[settings[k] for k in sorted(settings)],
    )


def _recorded_runs(
    db: ResultsDB, plan: StoredSweep
) -> dict[tuple[str, int], tuple[str, dict[str, Any], dict[str, Any]]]:
    """(config hash, seed) -> (run id, summary, config) of the plan's recorded runs (the
    first recorded, if a run was ever recorded twice)."""
    import json

    hashes = sorted({r.config_hash for r in plan.rows})
    out: dict[tuple[str, int], tuple[str, dict[str, Any], dict[str, Any]]] = {}
    if not hashes:
        return out
    with db.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT run_id, config_hash, seed, summary, config FROM runs "
            "WHERE version = ? AND status = 'ok' AND list_contains(?, config_hash) "
            "ORDER BY seq",
            [plan.version, hashes],
        ).fetchall()
    for rid, h, seed, summary, config in rows:
        out.setdefault((str(h), int(seed)), (str(rid), json.loads(summary), json.loads(config)))
    return out


def format_report(rep: SweepReport) -> str:
    """The report as text: a header, then one table per metric (a row per setting: seeds
    recorded, mean, half-width of the interval, the interval)."""
    planned = sum(s.planned for s in rep.settings)
    recorded = sum(s.recorded for s in rep.settings)
    pct = f"{rep.level * 100:g} %"
    out = [
        f"sweep {rep.name}: scenario {rep.scenario}, fragsim {rep.version}; "
        f"{len(rep.settings)} settings x {rep.seeds} seeds; {recorded} of {planned} runs recorded",
        f"means across seeds with {pct} confidence intervals (Student's t)",
    ]
    if recorded < planned:
        out.append(
            f"{planned - recorded} runs are not recorded (not run yet, interrupted or failed): "
            "fragsim sweep runs them"
        )
    wl = max([len("setting")] + [len(s.label) for s in rep.settings])
    for m in rep.metrics:
        out += ["", m]
        head = f"  {'setting':<{wl}}  {'n':>3}  {'mean':>12}  {'± ' + pct:>10}  interval"
        out.append(head)
        for s in rep.settings:
            st = s.stats.get(m)
            if st is None:
                out.append(f"  {s.label:<{wl}}  {0:>3}  {'-':>12}")
                continue
            if st.half_width is None:
                hw, iv = "-", "(one seed)"
            else:
                hw = f"{st.half_width:.4g}"
                iv = f"[{st.mean - st.half_width:.4g}, {st.mean + st.half_width:.4g}]"
            out.append(f"  {s.label:<{wl}}  {st.n:>3}  {st.mean:>12.4g}  {hw:>10}  {iv}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- the plot
def _series(rep: SweepReport) -> tuple[str, list[Any], bool, dict[str, list[tuple[int, int]]]]:
    """(x label, x values in order, numeric?, series label -> [(x index, setting index)])."""
    key = rep.grid_keys[0] if rep.grid_keys else None
    xs: list[Any] = []
    series: dict[str, list[tuple[int, int]]] = {}
    for i, s in enumerate(rep.settings):
        vals = dict(s.values)
        if key is not None:
            x = vals.get(key)
            # the label without the x key's part: the variant's label and the other keys
            part = f"{key}={_label_value(x)}"
            name = ",".join(p for p in s.label.split(",") if p != part) or rep.name
        else:
            x, name = s.label, rep.name
        if x not in xs:
            xs.append(x)
        series.setdefault(name, []).append((xs.index(x), i))
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)
    return key or "setting", xs, numeric, series


def plot_report(rep: SweepReport, path: str | Path) -> Path:
    """Draw every metric against the setting (error bars: the confidence intervals) into
    the PNG ``path`` (written atomically); needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "sweep-report: the plot needs matplotlib (pip install 'fragsim[plot]'); "
            "--no-plot skips it"
        ) from None
    path = Path(path)
    xlabel, xs, numeric, series = _series(rep)
    n = max(1, len(rep.metrics))
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, rep.metrics, strict=False):
        for name, pts in series.items():
            px, py, pe = [], [], []
            for xi, si in pts:
                st = rep.settings[si].stats.get(m)
                if st is None:
                    continue
                px.append(xs[xi] if numeric else xi)
                py.append(st.mean)
                pe.append(st.half_width or 0.0)
            if px:
                ax.errorbar(px, py, yerr=pe, marker="o", capsize=3, label=name)
        ax.set_title(m, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        if not numeric:
            ax.set_xticks(range(len(xs)))
            ax.set_xticklabels([_label_value(x) for x in xs], rotation=30, ha="right", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if len(series) > 1:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(
        f"sweep {rep.name} ({rep.scenario}): means over seeds, "
        f"{rep.level * 100:g} % confidence intervals",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
