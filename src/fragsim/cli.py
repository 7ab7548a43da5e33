"""The ``fragsim`` command: a thin argparse shell over the library."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from fragsim.mm.machine import Machine

__all__ = ["main"]


def demo_workload(
    m: Machine, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """The demo's fragmenting workload for ``m``: (allocation events, free events, handle table)
    for ``m.run``. 85 % of the managed pages are allocated one page at a time (8 % GFP_KERNEL,
    88 % anonymous LRU pages, 4 % reclaimable); then every other movable page and about 70 % of
    the others are freed, so long-lived pollution stays behind."""
    from fragsim.mm import internal as I
    from fragsim.mm.gfp import __GFP_RECLAIMABLE, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
    from fragsim.mm.page import PG_anon, PG_lru, PG_swapbacked

    rng = np.random.default_rng(seed)
    n = int(m.state.zs[:, I.ZF_MANAGED].sum() * 0.85)
    kinds = rng.choice(3, size=n, p=[0.08, 0.88, 0.04])
    gfps = np.array([GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_RECLAIMABLE])[kinds]
    # movable allocations are anonymous pages put on the LRU (lru_cache_add after the fault)
    flags = np.where(kinds == 1, PG_lru | PG_anon | PG_swapbacked, 0)
    ev = I.alloc_events(np.arange(n), gfps, flags=flags, cpu=rng.integers(0, m.nr_cpus, n))
    handles = np.full(n, -1, np.int32)
    free = np.flatnonzero(
        ((kinds == 1) & (np.arange(n) % 2 == 0)) | ((kinds != 1) & (rng.random(n) < 0.7))
    )
    return ev, I.free_events(free), handles


def cmd_demo(args: argparse.Namespace) -> int:
    """Boot a 1 GiB machine, fragment it, print buddyinfo/pagetypeinfo before and after."""
    from fragsim.mm import vmstat
    from fragsim.mm.machine import Machine

    m = Machine(args.profile)
    print(m.describe())
    print("\n== before: /proc/buddyinfo ==")
    print(vmstat.buddyinfo(m), end="")
    print("\n== before: /proc/pagetypeinfo ==")
    print(vmstat.pagetypeinfo(m), end="")
    ev, fr, handles = demo_workload(m, args.seed)
    m.run(ev, handles)
    m.run(fr, handles)
    m.drain_all_pages()
    print(f"\n== after {len(ev)} allocations and {len(fr)} frees: /proc/buddyinfo ==")
    print(vmstat.buddyinfo(m), end="")
    print("\n== after: /proc/pagetypeinfo ==")
    print(vmstat.pagetypeinfo(m), end="")
    print("\n== after: extfrag/unusable_index ==")
    print(vmstat.unusable_index(m), end="")
    m.compact_memory()
    print("\n== echo 1 > /proc/sys/vm/compact_memory: /proc/buddyinfo ==")
    print(vmstat.buddyinfo(m), end="")
    print("\n== after compaction: extfrag/unusable_index ==")
    print(vmstat.unusable_index(m), end="")
    counters = vmstat.vmstat_counters(m)
    print("\n== /proc/vmstat (compaction and migration) ==")
    for name in (
        "compact_migrate_scanned",
        "compact_free_scanned",
        "compact_isolated",
        "pgmigrate_success",
        "pgmigrate_fail",
    ):
        print(f"{name} {counters[name]}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from fragsim.bench import run_bench

    print(json.dumps(run_bench(args.trace, args.pages, args.cpus, args.repeat)))
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from fragsim.profiles import PROFILES

    for name in PROFILES:
        print(name)
    print("flat:<pages>")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Capture the live machine (or a bugreport) into a snapshot directory."""
    from fragsim import snapshot

    if args.from_bugreport:
        man = snapshot.capture_bugreport(args.outdir, args.from_bugreport, force=args.force)
    else:
        man = snapshot.capture(args.outdir, args.root, force=args.force)
    for line in man.summary(args.outdir):
        print(f"fragsim snapshot: {line}", file=sys.stderr)
    return 0 if any(c.file == "buddyinfo" for c in man.captured) else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    """Explain high-order allocation failures from a snapshot (or the live machine)."""
    import dataclasses
    import tempfile

    from fragsim.analysis.inspect import format_report, inspect_snapshot, load_snapshot

    if args.live == (args.snapshot is not None):
        args.parser.error("inspect takes a SNAPSHOT directory or --live, not both")
    if args.live:
        from fragsim.snapshot import capture

        with tempfile.TemporaryDirectory(prefix="fragsim-live-") as tmp:
            man = capture(tmp, args.root)
            for line in man.summary("a temporary directory"):
                print(f"fragsim inspect --live: {line}", file=sys.stderr)
            snap = dataclasses.replace(load_snapshot(tmp), path=f"live machine (root {args.root})")
    else:
        snap = load_snapshot(args.snapshot)
    report = inspect_snapshot(snap, extfrag_threshold=args.extfrag_threshold)
    print(report.to_json() if args.json else format_report(report), end="\n" if args.json else "")
    if args.html:
        from fragsim.viz.reports import inspect_html

        inspect_html(report, snap).write(args.html)
        print(f"fragsim inspect: wrote {args.html}", file=sys.stderr)
    return 0


def cmd_memmap(args: argparse.Namespace) -> int:
    """Draw the memory map of a snapshot, or of the demo machine before and after compaction."""
    from fragsim.viz.memmap import memmap_from_machine, memmap_from_snapshot, write_png
    from fragsim.viz.reports import memmap_html

    if args.demo == (args.snapshot is not None):
        args.parser.error("memmap takes a SNAPSHOT directory or --demo, not both")
    if not (args.output or args.html):
        args.parser.error("give -o PNG, --html FILE, or both")
    texts: list[tuple[str, str]] = []
    if args.demo:
        from fragsim.mm import vmstat
        from fragsim.mm.machine import Machine

        m = Machine(args.profile)
        stages = [("boot", memmap_from_machine(m), vmstat.buddyinfo(m))]
        ev, fr, handles = demo_workload(m, args.seed)
        m.run(ev, handles)
        stages.append((f"{len(ev)} allocations", memmap_from_machine(m), vmstat.buddyinfo(m)))
        m.run(fr, handles)
        m.drain_all_pages()
        stages.append((f"{len(fr)} frees", memmap_from_machine(m), vmstat.buddyinfo(m)))
        m.compact_memory()
        stages.append(("compact_memory", memmap_from_machine(m), vmstat.buddyinfo(m)))
        titles = [f"{i}: after {t}" if i else "0: boot" for i, (t, _, _) in enumerate(stages)]
        maps = [mm for _, mm, _ in stages]
        texts = [(t, b) for t, (_, _, b) in zip(titles, stages, strict=True)]
        png_maps, png_titles = maps[2:], ["before compaction", "after compact_memory"]
        source = f"fragsim demo ({args.profile}, seed {args.seed})"
    else:
        from fragsim.analysis.inspect import load_snapshot

        maps = png_maps = [memmap_from_snapshot(load_snapshot(args.snapshot))]
        titles = png_titles = [args.snapshot]
        source = args.snapshot
    if args.output:
        write_png(args.output, png_maps, png_titles, mode=args.mode)
        print(f"fragsim memmap: wrote {args.output}", file=sys.stderr)
    if args.html:
        rep = memmap_html(
            f"fragsim memmap {source}",
            maps,
            titles,
            slider_label="stage" if args.demo else None,
            compare=(2, 3) if args.demo else None,
            compare_title="Before and after compact_memory",
            texts=texts,
            texts_title="/proc/buddyinfo at each stage",
        )
        rep.write(args.html)
        print(f"fragsim memmap: wrote {args.html}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run a scenario (or one run per --compare value), record each run in the results
    database and print the summary, runs side by side."""
    import datetime as dt
    import uuid

    from fragsim.results import ResultsDB, RunRecord, Snapshot, interrupted_message
    from fragsim.scenario.config import expand_compare, scenario_from_args
    from fragsim.scenario.runner import run_scenario
    from fragsim.scenario.summary import ProgressBar, format_summary

    if args.sweeps or args.seeds is not None:
        from fragsim.sweep.cli import cmd_run_sweep

        return cmd_run_sweep(args)
    variants = expand_compare(args.compare) if args.compare else [[]]
    scenarios = [scenario_from_args(args, extra) for extra in variants]
    labels = [",".join(v) or scenarios[0].scenario.name for v in variants]
    group = uuid.uuid4().hex[:12] if len(variants) > 1 else None
    db = None if args.no_record else ResultsDB(args.db)
    summaries = []
    made: list[tuple[RunRecord, str | None]] = []
    for sc, label, extra in zip(scenarios, labels, variants, strict=True):
        bar = ProgressBar(f"{sc.scenario.name} {label}".strip(), force=args.progress)
        started = dt.datetime.now(dt.UTC)
        res = run_scenario(sc, progress=bar)
        bar.close()
        if res.interrupted:
            print(interrupted_message(res.sim_ns, res.interrupted), file=sys.stderr)
            return 130
        summaries.append(res.summary)
        rec = RunRecord(
            scenario=sc.scenario.name,
            config=sc.to_dict(),
            config_hash=sc.config_hash(),
            seed=sc.scenario.seed,
            started=started,
            finished=dt.datetime.now(dt.UTC),
            sim_ns=res.sim_ns,
            wall_s=res.wall_s,
            events=res.events,
            summary=res.summary,
            samples=res.samples,
            snapshots=[Snapshot(t, lab, files) for t, lab, files in res.snapshots],
            memmaps=res.memmaps,
            compare_group=group,
            compare_label=",".join(extra) or None,
        )
        run_id = None
        if db is not None:
            run_id = db.record(rec, lock_timeout=60)
            print(f"recorded run {run_id} ({label}) in {db.path}", file=sys.stderr)
        made.append((rec, run_id))
    print(format_summary(summaries, labels), end="")
    if args.report:
        from fragsim.viz.runreport import labelled, write_report

        write_report(args.report, labelled(made))
        print(f"fragsim run: wrote the report {args.report}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fragsim", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="boot 1 GiB, fragment it, show /proc before and after")
    d.add_argument("--profile", default="x86_64-1g")
    d.add_argument("--seed", type=int, default=1)
    d.set_defaults(func=cmd_demo)
    b = sub.add_parser("bench", help="replay a speed-of-light trace; print one JSON line")
    b.add_argument("--trace", required=True, help="trace .npy (shared/bench/speed-of-light)")
    b.add_argument("--pages", type=int, default=262144)
    b.add_argument("--cpus", type=int, default=1)
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--json", action="store_true", help="(the output is always JSON)")
    b.set_defaults(func=cmd_bench)
    pr = sub.add_parser("profiles", help="list machine profiles")
    pr.set_defaults(func=cmd_profiles)
    sn = sub.add_parser("snapshot", help="capture /proc, debugfs and kpageflags into a directory")
    sn.add_argument("outdir", metavar="OUTDIR")
    sn.add_argument("--root", default="/", help="read proc/ and sys/ under this directory")
    sn.add_argument("--from-bugreport", metavar="FILE", help="extract an Android bugreport instead")
    sn.add_argument("--force", action="store_true", help="overwrite a non-empty OUTDIR")
    sn.set_defaults(func=cmd_snapshot)
    ins = sub.add_parser("inspect", help="explain high-order allocation failures of a snapshot")
    ins.add_argument("snapshot", metavar="SNAPSHOT", nargs="?", help="a snapshot directory")
    ins.add_argument("--live", action="store_true", help="capture the running machine first")
    ins.add_argument("--root", default="/", help="with --live: read proc/ and sys/ under DIR")
    ins.add_argument("--json", action="store_true", help="print the report as JSON")
    ins.add_argument("--extfrag-threshold", type=int, help="override vm.extfrag_threshold")
    ins.add_argument(
        "--html", metavar="FILE", help="also write the report as a self-contained HTML"
    )
    ins.set_defaults(func=cmd_inspect, parser=ins)
    mp = sub.add_parser("memmap", help="draw a memory map (snapshot, or the demo before/after)")
    mp.add_argument("snapshot", metavar="SNAPSHOT", nargs="?", help="a snapshot with kpageflags")
    mp.add_argument("--demo", action="store_true", help="the demo machine, before/after compaction")
    mp.add_argument("--profile", default="x86_64-1g", help="with --demo: the machine profile")
    mp.add_argument("--seed", type=int, default=1, help="with --demo: the workload's seed")
    mp.add_argument("-o", "--output", metavar="PNG", help="write the map(s) with a legend as PNG")
    mp.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    mp.add_argument(
        "--mode",
        choices=("auto", "page", "pageblock"),
        default="auto",
        help="one cell per page, or one stacked bar per pageblock (auto: by size)",
    )
    mp.set_defaults(func=cmd_memmap, parser=mp)
    from fragsim.results import add_export_parser, add_runs_parser
    from fragsim.scenario.config import add_list_parser, add_scenario_options, add_show_parser

    rn = sub.add_parser("run", help="run a scenario (built-in name or TOML file) on the clock")
    rn.add_argument("scenario", metavar="SCENARIO")
    add_scenario_options(rn, compare=True)
    rn.add_argument("--db", metavar="PATH", help="the results database (default: $FRAGSIM_DB)")
    rn.add_argument("--no-record", action="store_true", help="do not record the run")
    rn.add_argument("--progress", action="store_true", help="show progress even off a terminal")
    rn.add_argument(
        "--report", metavar="FILE", help="then write the runs' HTML report (fragsim report)"
    )
    rn.set_defaults(func=cmd_run)
    from fragsim.sweep.cli import add_run_sweep_options, add_sweep_parser, add_sweep_report_parser

    add_run_sweep_options(rn)
    add_sweep_parser(sub)
    add_sweep_report_parser(sub)
    add_list_parser(sub)
    add_show_parser(sub)
    add_runs_parser(sub)
    add_export_parser(sub)
    from fragsim.fidelity import add_fidelity_parser

    add_fidelity_parser(sub)
    from fragsim.viz.runreport import add_report_parser

    add_report_parser(sub)
    from fragsim.trace_replay import add_replay_parser
    from fragsim.whatif import add_whatif_parser

    add_whatif_parser(sub)
    add_replay_parser(sub)
    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as e:  # noqa: BLE001 - clear one-line errors for users
        from fragsim.errors import FragsimError

        if isinstance(e, FragsimError | FileNotFoundError):
            print(f"fragsim: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
