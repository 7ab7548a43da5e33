"""Sweeps: many runs of a scenario across settings and seeds, on this machine's cores or on a
Dask distributed cluster, recorded in the results database, resumable, with a report of
means and confidence intervals across seeds.

Reading order: ``spec.py`` (the sweep file and its expansion into runs), ``execute.py``
(where the runs execute, retries, progress, recording), ``store.py`` (the sweep's plan in the
database), ``report.py`` (statistics and the plot), ``cli.py`` (the commands).
"""

from __future__ import annotations

from fragsim.sweep.execute import SweepOutcome, run_sweep
from fragsim.sweep.report import SweepReport, format_report, plot_report, sweep_report
from fragsim.sweep.spec import SweepPlan, SweepSpec, load_sweep, plan_sweep, sweep_from_args

__all__ = [
    "SweepOutcome",
    "SweepPlan",
    "SweepReport",
    "SweepSpec",
    "format_report",
    "load_sweep",
    "plan_sweep",
    "plot_report",
    "run_sweep",
    "sweep_from_args",
    "sweep_report",
]
