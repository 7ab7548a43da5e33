"""The sweep commands: ``fragsim sweep SWEEP.toml``, ``fragsim sweep-report SWEEP`` and the
``--sweep`` / ``--seeds`` options of ``fragsim run`` (fragsim/cli.py registers them)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from fragsim.errors import ConfigError
from fragsim.results import ResultsDB
from fragsim.sweep.execute import SweepOutcome, SweepProgress, run_sweep
from fragsim.sweep.report import format_report, plot_report, sweep_report
from fragsim.sweep.spec import SweepSpec, load_sweep, plan_sweep, sweep_from_args
from fragsim.sweep.store import recorded_keys

__all__ = [
    "add_run_sweep_options",
    "add_sweep_parser",
    "add_sweep_report_parser",
    "cmd_run_sweep",
    "cmd_sweep",
    "cmd_sweep_report",
]

_DB_HELP = "the results database (default: $FRAGSIM_DB, else ~/.local/share/fragsim/)"


def _where_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers", type=int, metavar="N", help="local worker processes (default: the cores)"
    )
    p.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on this Dask distributed cluster instead of local processes (default: the "
        "sweep file's scheduler, else $FRAGSIM_SCHEDULER)",
    )


def add_sweep_parser(sub: Any) -> argparse.ArgumentParser:
    """``fragsim sweep SWEEP.toml [--workers N | --scheduler ADDR] [--db PATH]``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "sweep", help="run a sweep file: settings x seeds, in parallel, recorded in the database"
    )
    p.add_argument("sweep", metavar="SWEEP.toml", help="a sweep file (see fragsim.sweep.spec)")
    _where_options(p)
    p.add_argument("--db", metavar="PATH", help=_DB_HELP)
    p.add_argument("--progress", action="store_true", help="show the bar even off a terminal")
    p.add_argument(
        "--dry-run", action="store_true", help="list the settings and what is left to run"
    )
    p.set_defaults(func=cmd_sweep)
    return p


def add_run_sweep_options(p: argparse.ArgumentParser) -> None:
    """``--sweep KEY=V1,V2``, ``--seeds A..B``, ``--workers``, ``--scheduler`` and
    ``--sweep-name`` on ``fragsim run``."""
    p.add_argument(
        "--sweep",
        dest="sweeps",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep a key over values (repeatable: the grid of all of them); runs in parallel",
    )
    p.add_argument("--seeds", metavar="A..B", help="run every setting with these seeds (0..19)")
    _where_options(p)
    p.add_argument("--sweep-name", metavar="NAME", help="the sweep's name (for sweep-report)")


def add_sweep_report_parser(sub: Any) -> argparse.ArgumentParser:
    """``fragsim sweep-report SWEEP [--db PATH] [--plot PNG | --no-plot] [--json]``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "sweep-report",
        help="per-setting means and confidence intervals of a sweep, and a plot (from the db)",
    )
    p.add_argument("sweep", metavar="SWEEP", help="a sweep's name, or its sweep file")
    p.add_argument("--db", metavar="PATH", help=_DB_HELP)
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--plot", metavar="PNG", help="where the plot goes (default: sweep-NAME.png)")
    p.add_argument("--no-plot", action="store_true", help="print the tables only")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_sweep_report)
    return p


def _execute(spec: SweepSpec, args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: expected at least 1")
    plan = plan_sweep(spec)
    db = ResultsDB(args.db)
    if getattr(args, "dry_run", False):
        have = recorded_keys(db)
        for st in plan.settings:
            runs = [r for r in plan.runs if r.setting.index == st.index]
            done = sum((r.config_hash, r.seed) in have for r in runs)
            print(
                f"{st.label}: {len(runs)} runs, {done} recorded, config {runs[0].config_hash[:8]}"
            )
        return 0
    # --workers on the command line means this machine, whatever the sweep file or
    # $FRAGSIM_SCHEDULER says
    scheduler = args.scheduler or (
        None if args.workers else spec.scheduler or os.environ.get("FRAGSIM_SCHEDULER") or None
    )
    workers = args.workers or spec.workers
    bar = SweepProgress(spec.name, len(plan.runs), force=args.progress)
    out = run_sweep(plan, db, workers=workers, scheduler=scheduler, progress=bar)
    print(_outcome_text(out, db), file=sys.stderr)
    if out.interrupted:
        return 130
    print(format_report(sweep_report(db, spec.name)), end="")
    return 1 if out.failed else 0


def _outcome_text(out: SweepOutcome, db: ResultsDB) -> str:
    head = "interrupted" if out.interrupted else "done"
    lines = [
        f"sweep {out.name} {head}: {out.planned} runs planned, {out.skipped} already recorded, "
        f"{len(out.recorded)} recorded now, {len(out.failed)} failed, {out.retried} retried"
        + (f", {out.not_run} not run" if out.not_run else "")
        + (f" ({out.wall_s:.1f} s on {out.where})" if out.where else "")
    ]
    for label, seed, err in out.failed:
        lines.append(f"  failed: {label}, seed {seed}: {err}")
    if out.interrupted:
        lines.append(
            "  every run recorded so far stays recorded; run the same command again to resume"
        )
    lines.append(f"  report: fragsim sweep-report {out.name} --db {db.path}")
    return "\n".join(lines)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a sweep file (or with --dry-run, say what it would run)."""
    return _execute(load_sweep(args.sweep), args)


def cmd_run_sweep(args: argparse.Namespace) -> int:
    """``fragsim run SCENARIO --sweep ... --seeds ...``: the sweep of those options."""
    if args.compare:
        raise ConfigError("--compare and --sweep/--seeds: use --sweep KEY=V1,V2 for both")
    if args.no_record:
        raise ConfigError("--sweep/--seeds record every run (resuming needs them): no --no-record")
    if args.seed is not None and args.seeds is not None:
        raise ConfigError(f"--seed {args.seed} and --seeds {args.seeds}: give one of them")
    spec = sweep_from_args(
        args.scenario,
        args.sweeps,
        args.seeds,
        sets=args.sets or [],
        until=args.until,
        seed=args.seed,
        name=args.sweep_name,
    )
    return _execute(spec, args)


def cmd_sweep_report(args: argparse.Namespace) -> int:
    """Print a sweep's report and draw its plot."""
    name = args.sweep
    if name.endswith(".toml") or "/" in name:
        name = load_sweep(name).name
    rep = sweep_report(ResultsDB(args.db), name, level=args.level)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(format_report(rep), end="")
    if not args.no_plot:
        path = plot_report(rep, Path(args.plot or f"sweep-{rep.name}.png"))
        print(f"fragsim sweep-report: wrote {path}", file=sys.stderr)
    return 0
