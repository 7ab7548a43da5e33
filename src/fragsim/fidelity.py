"""Fidelity against a real kernel: run a scenario over several seeds and compare it, stage by
stage, with a set of real runs of the same experiment (issue 7).

Both sides go through the same path: the /proc files of a stage (``buddyinfo``,
``pagetypeinfo``, ``vmstat``; the real ones as captured, fragsim's as
fragsim/scenario/runner.py's ``snapshot_files`` prints them) are parsed by fragsim/parsers
and reduced to metrics by ``stage_metrics``:

* ``buddy.o<k>``: free blocks of order k, all zones (buddyinfo); ``buddy.free_pages``;
* ``pageblocks.<type>``: pageblocks of each migratetype, all zones (pagetypeinfo);
* ``vmstat.<name>``: the event counters both sides have (compaction, migration, balloon,
  reclaim, swap, THP faults, pgalloc/pgfree), as the change since the first stage (the
  kernel's counters include its boot, fragsim's boot counts nothing), and the gauge
  ``nr_free_pages``.

The real kernel varies a lot between runs, so a metric is compared as two distributions: the
kernel's values over the runs and fragsim's over the seeds. ``distance`` is the distance of
the two medians divided by the kernel's own spread (max - min over the runs), with a floor of
10 % of the kernel's median and 2 (so three identical runs do not make every difference
infinite). The verdict: ``match`` when distance <= 1 (fragsim is as far from the kernel as the
kernel is from itself), ``near`` when <= 3, ``off`` beyond.

The comparison takes plain metric dictionaries (``compare``), so a final state from a trace
replay (``stage_metrics(snapshot_files(machine))``) can be compared the same way.

``fragsim fidelity SCENARIO REAL_RUNS_DIR [--seeds N] [--json]`` is the command; with
``--update-doc FILE`` it rewrites the scenario's table in FILE between
``<!-- fidelity:SCENARIO:begin -->`` and ``<!-- fidelity:SCENARIO:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fragsim.errors import ConfigError, FragsimError
from fragsim.parsers.procfs import parse_buddyinfo, parse_pagetypeinfo, parse_vmstat

__all__ = [
    "VMSTAT_PREFIXES",
    "Comparison",
    "RealRun",
    "Row",
    "add_fidelity_parser",
    "cmd_fidelity",
    "compare",
    "counter_deltas",
    "format_markdown",
    "format_table",
    "load_real_runs",
    "run_fidelity",
    "simulate",
    "stage_metrics",
]

#: the vmstat items compared (those both sides print): event counters by prefix
VMSTAT_PREFIXES = (
    "compact_",
    "pgmigrate_",
    "balloon_",
    "pswp",
    "pgsteal_",
    "pgscan_",
    "allocstall_",
    "oom_kill",
    "thp_fault_",
    "workingset_refault_",
    "pgalloc_",
    "pgfree",
    "pageoutrun",
)
#: gauges compared as they are (not as changes since the first stage)
VMSTAT_GAUGES = ("nr_free_pages",)
#: the files a stage needs
STAGE_FILES = ("buddyinfo", "pagetypeinfo", "vmstat")
#: verdict thresholds on the distance
MATCH, NEAR = 1.0, 3.0


# ---------------------------------------------------------------------- metrics of a stage
def stage_metrics(files: Mapping[str, str], where: str = "<stage>") -> dict[str, int]:
    """The metrics of one stage from its /proc files (``buddyinfo``, ``pagetypeinfo``,
    ``vmstat`` texts; ``where`` names the stage in parse errors). Counters are absolute
    here; ``counter_deltas`` makes them changes since a baseline."""
    for name in STAGE_FILES:
        if name not in files:
            raise FragsimError(f"{where}: no {name}")
    out: dict[str, int] = {}
    rows = parse_buddyinfo(files["buddyinfo"], f"{where}/buddyinfo")
    norders = max(len(r.nr_free) for r in rows)
    free_pages = 0
    for o in range(norders):
        n = sum(r.nr_free[o] for r in rows if o < len(r.nr_free))
        out[f"buddy.o{o}"] = n
        free_pages += n << o
    out["buddy.free_pages"] = free_pages
    pti = parse_pagetypeinfo(files["pagetypeinfo"], f"{where}/pagetypeinfo")
    for mt in pti.migratetypes:
        if mt == "CMA":
            continue  # neither the oracle guest nor its model has CMA
        out[f"pageblocks.{mt}"] = sum(b.get(mt, 0) for b in pti.blocks.values())
    vm = parse_vmstat(files["vmstat"], f"{where}/vmstat")
    for k, v in vm.items():
        if k in VMSTAT_GAUGES or k.startswith(VMSTAT_PREFIXES):
            out[f"vmstat.{k}"] = v
    return out


def counter_deltas(
    stages: Mapping[str, Mapping[str, int]], base: str | None = None
) -> dict[str, dict[str, int]]:
    """Every stage's vmstat event counters as the change since ``base`` (default: the first
    stage); gauges and the buddy/pageblock metrics unchanged."""
    if not stages:
        return {}
    b = stages[base if base is not None else next(iter(stages))]
    out: dict[str, dict[str, int]] = {}
    for name, m in stages.items():
        out[name] = {
            k: v - b.get(k, 0) if k.startswith("vmstat.") and k[7:] not in VMSTAT_GAUGES else v
            for k, v in m.items()
        }
    return out


# ---------------------------------------------------------------------- the real runs
@dataclass
class RealRun:
    """One real run: its folder, how many CPUs the guest had, its MemTotal (kB) and the
    metrics of each stage (in the run's order, counters as changes since the first)."""

    name: str
    nr_cpus: int
    mem_total_kb: int
    stages: dict[str, dict[str, int]]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as e:
        raise FragsimError(f"{path}: cannot read: {e.strerror}") from None


def _stage_order(snapdir: str) -> list[str]:
    """The stage order of a run: index.json's, else the sorted folder names that have a
    buddyinfo."""
    index = os.path.join(snapdir, "index.json")
    names = [
        d
        for d in sorted(os.listdir(snapdir))
        if os.path.isfile(os.path.join(snapdir, d, "buddyinfo"))
    ]
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as fh:
                doc = json.load(fh)
            order = [s["stage"] for s in doc.get("stages", []) if s.get("stage") in names]
            if order:
                return order
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            pass
    return names


def _count_cpus(snapdir: str) -> int:
    p = os.path.join(snapdir, "meta", "cpuinfo")
    if not os.path.isfile(p):
        return 0
    return sum(1 for line in _read(p).splitlines() if re.match(r"processor\s*:", line))


def _mem_total(stagedir: str) -> int:
    p = os.path.join(stagedir, "meminfo")
    if not os.path.isfile(p):
        return 0
    m = re.search(r"^MemTotal:\s+(\d+)", _read(p), re.M)
    return int(m.group(1)) if m else 0


def load_real_runs(path: str | os.PathLike[str]) -> list[RealRun]:
    """The real runs under ``path``: a run folder (with ``snapshots/``) or a folder of them
    (shared/data/oracle-6.1/default). Each stage folder needs buddyinfo, pagetypeinfo and
    vmstat; the guest's CPUs come from snapshots/meta/cpuinfo."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FragsimError(f"{root}: not a folder of real runs")
    if os.path.isdir(os.path.join(root, "snapshots")):
        dirs = [root]
    else:
        dirs = [
            os.path.join(root, d)
            for d in sorted(os.listdir(root))
            if os.path.isdir(os.path.join(root, d, "snapshots"))
        ]
    if not dirs:
        raise FragsimError(f"{root}: no run folders (a run has a snapshots/ folder)")
    runs = []
    for d in dirs:
        snap = os.path.join(d, "snapshots")
        order = _stage_order(snap)
        if not order:
            raise FragsimError(f"{snap}: no stage folder with a buddyinfo")
        stages = {}
        for s in order:
            sd = os.path.join(snap, s)
            files = {n: _read(os.path.join(sd, n)) for n in STAGE_FILES}
            stages[s] = stage_metrics(files, sd)
        runs.append(
            RealRun(
                name=os.path.basename(os.path.normpath(d)),
                nr_cpus=_count_cpus(snap),
                mem_total_kb=_mem_total(os.path.join(snap, order[0])),
                stages=counter_deltas(stages),
            )
        )
    return runs


# ---------------------------------------------------------------------- fragsim's side
def simulate(
    scenario: str, seeds: Sequence[int], sets: Iterable[str] = ()
) -> tuple[Any, list[dict[str, dict[str, int]]]]:
    """Run ``scenario`` once per seed; returns (the loaded scenario of the first seed, per
    seed the metrics of each named snapshot in time order, counters as changes since the
    first). A snapshot is named after the workload's stage at its time
    (``Workload.stages()``), else ``t<ns>`` / ``end``."""
    from fragsim.scenario.config import load_scenario
    from fragsim.scenario.runner import run_scenario

    out = []
    first = None
    for seed in seeds:
        sc = load_scenario(scenario, sets=list(sets), seed=seed)
        first = first or sc
        res = run_scenario(sc)
        if res.interrupted:
            raise KeyboardInterrupt
        stages = {
            label: stage_metrics(files, f"{sc.source} seed {seed} {label}")
            for _, label, files in res.snapshots
        }
        out.append(counter_deltas(stages))
    return first, out


# ---------------------------------------------------------------------- the comparison
@dataclass(frozen=True)
class Row:
    """One metric at one stage: the kernel's values over the runs, fragsim's over the seeds,
    the scaled distance of the medians and the verdict."""

    stage: str
    metric: str
    kernel: tuple[float, ...]
    fragsim: tuple[float, ...]
    distance: float
    verdict: str

    @property
    def kernel_range(self) -> tuple[float, float]:
        return min(self.kernel), max(self.kernel)

    @property
    def fragsim_range(self) -> tuple[float, float]:
        return min(self.fragsim), max(self.fragsim)


@dataclass
class Comparison:
    """The rows of a comparison, with what it compared."""

    scenario: str
    real: str
    runs: list[str]
    seeds: list[int]
    rows: list[Row]
    excluded: dict[str, str] = field(default_factory=dict)

    def verdicts(self, stage: str | None = None) -> dict[str, int]:
        """How many metrics got each verdict (at one stage, or overall)."""
        out = {"match": 0, "near": 0, "off": 0}
        for r in self.rows:
            if stage is None or r.stage == stage:
                out[r.verdict] += 1
        return out

    def row(self, stage: str, metric: str) -> Row:
        for r in self.rows:
            if r.stage == stage and r.metric == metric:
                return r
        raise KeyError(f"no row {stage} {metric}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for r in d["rows"]:
            r["kernel_range"] = [min(r["kernel"]), max(r["kernel"])]
            r["fragsim_range"] = [min(r["fragsim"]), max(r["fragsim"])]
        d["verdicts"] = self.verdicts()
        return d


def distance(kernel: Sequence[float], sim: Sequence[float]) -> float:
    """|median(sim) - median(kernel)| / scale, scale = max(kernel max - min, 10 % of
    |median(kernel)|, 2)."""
    km = statistics.median(kernel)
    scale = max(max(kernel) - min(kernel), 0.1 * abs(km), 2.0)
    return abs(statistics.median(sim) - km) / scale


def verdict(d: float) -> str:
    return "match" if d <= MATCH else "near" if d <= NEAR else "off"


def compare(
    kernel: Mapping[str, Sequence[Mapping[str, float]]],
    sim: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    skip_zero: bool = True,
) -> list[Row]:
    """Compare, stage by stage (the kernel's stage order), every metric both sides have.
    ``kernel[stage]`` is one metric dict per real run, ``sim[stage]`` one per seed. A stage
    fragsim does not have is an error; metrics that are 0 in every run and seed are left out
    (``skip_zero``)."""
    rows = []
    for stage, kruns in kernel.items():
        if stage not in sim:
            raise FragsimError(
                f"stage {stage}: the scenario has no snapshot of that name "
                f"(its snapshots: {', '.join(sim) or 'none'})"
            )
        sruns = sim[stage]
        if not kruns or not sruns:
            continue
        names = [k for k in kruns[0] if all(k in r for r in kruns) and all(k in r for r in sruns)]
        for name in names:
            kv = tuple(float(r[name]) for r in kruns)
            sv = tuple(float(r[name]) for r in sruns)
            if skip_zero and not any(kv) and not any(sv):
                continue
            d = distance(kv, sv)
            rows.append(Row(stage, name, kv, sv, round(d, 3), verdict(d)))
    return rows


def run_fidelity(
    scenario: str,
    real_dir: str | os.PathLike[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    sets: Iterable[str] = (),
    all_runs: bool = False,
) -> Comparison:
    """``fragsim fidelity``: the scenario over ``seeds`` against the real runs of
    ``real_dir`` that had as many CPUs as the scenario's machine (all of them with
    ``all_runs``)."""
    from fragsim.scenario.config import load_scenario

    sc0 = load_scenario(scenario, sets=list(sets))
    ncpu = int(sc0.machine.machine_profile().nr_cpus)
    runs = load_real_runs(real_dir)
    excluded = {}
    used = []
    for r in runs:
        if not all_runs and r.nr_cpus and r.nr_cpus != ncpu:
            excluded[r.name] = f"{r.nr_cpus} CPUs, the scenario's machine has {ncpu}"
        else:
            used.append(r)
    if not used:
        raise FragsimError(
            f"{real_dir}: no real run with {ncpu} CPUs like the scenario's machine "
            "(--all-runs compares with every run)"
        )
    stage_names = list(used[0].stages)
    for r in used[1:]:
        if list(r.stages) != stage_names:
            raise FragsimError(
                f"{real_dir}: run {r.name} has stages {list(r.stages)}, run {used[0].name} "
                f"has {stage_names}: not the same experiment"
            )
    _, per_seed = simulate(scenario, seeds, sets)
    kernel = {s: [r.stages[s] for r in used] for s in stage_names}
    sim: dict[str, list[dict[str, int]]] = {}
    for stages in per_seed:
        for s, m in stages.items():
            sim.setdefault(s, []).append(m)
    return Comparison(
        scenario=sc0.scenario.name,
        real=os.fspath(real_dir),
        runs=[r.name for r in used],
        seeds=list(seeds),
        rows=compare(kernel, sim),
        excluded=excluded,
    )


# ---------------------------------------------------------------------- output
def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _range(vals: Sequence[float]) -> str:
    lo, hi = min(vals), max(vals)
    return _fmt(lo) if lo == hi else f"{_fmt(lo)}..{_fmt(hi)}"


def format_table(c: Comparison) -> str:
    """The comparison as a plain-text table, one block per stage."""
    out = [
        f"fidelity of {c.scenario} against {len(c.runs)} real runs ({', '.join(c.runs)}), "
        f"fragsim seeds {', '.join(map(str, c.seeds))}"
    ]
    for name, why in c.excluded.items():
        out.append(f"  left out: {name} ({why})")
    stages = list(dict.fromkeys(r.stage for r in c.rows))
    w = max([len(r.metric) for r in c.rows] + [6])
    for s in stages:
        v = c.verdicts(s)
        out += ["", f"{s}  (match {v['match']}, near {v['near']}, off {v['off']})"]
        out.append(f"  {'metric':<{w}}  {'kernel':>21}  {'fragsim':>21}  {'dist':>7}  verdict")
        for r in c.rows:
            if r.stage == s:
                out.append(
                    f"  {r.metric:<{w}}  {_range(r.kernel):>21}  {_range(r.fragsim):>21}  "
                    f"{r.distance:>7.2f}  {r.verdict}"
                )
    v = c.verdicts()
    out += ["", f"all stages: match {v['match']}, near {v['near']}, off {v['off']}"]
    return "\n".join(out) + "\n"


def format_markdown(c: Comparison, command: str = "") -> str:
    """The comparison as Markdown tables (docs/fidelity.md), one per stage."""
    v = c.verdicts()
    out = [
        f"Real runs: {', '.join(c.runs)}; fragsim seeds {', '.join(map(str, c.seeds))}. "
        f"Overall: **{v['match']} match, {v['near']} near, {v['off']} off**."
    ]
    if command:
        out += ["", f"Regenerate: `{command}`"]
    for name, why in c.excluded.items():
        out += ["", f"Left out: `{name}` ({why})."]
    for s in dict.fromkeys(r.stage for r in c.rows):
        sv = c.verdicts(s)
        out += [
            "",
            f"**{s}** (match {sv['match']}, near {sv['near']}, off {sv['off']})",
            "",
            "| metric | kernel | fragsim | distance | verdict |",
            "|---|---|---|---|---|",
        ]
        for r in c.rows:
            if r.stage == s:
                out.append(
                    f"| {r.metric} | {_range(r.kernel)} | {_range(r.fragsim)} | "
                    f"{r.distance:.2f} | {r.verdict} |"
                )
    return "\n".join(out) + "\n"


def update_doc(path: str, key: str, body: str) -> None:
    """Replace the text between ``<!-- fidelity:KEY:begin -->`` and ``<!-- fidelity:KEY:end
    -->`` in ``path`` with ``body``, atomically (a temporary file renamed over it)."""
    text = _read(path)
    begin, end = f"<!-- fidelity:{key}:begin -->", f"<!-- fidelity:{key}:end -->"
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise FragsimError(f"{path}: no block {begin} ... {end} to update")
    new = text[: i + len(begin)] + "\n" + body + text[j:]
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".fidelity-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# ---------------------------------------------------------------------- the command
def add_fidelity_parser(sub: Any) -> argparse.ArgumentParser:
    """``fragsim fidelity SCENARIO REAL_RUNS_DIR [--seeds N] [--json] [--update-doc FILE]``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "fidelity",
        help="run a scenario over N seeds and compare it stage by stage with real runs",
    )
    p.add_argument("scenario", metavar="SCENARIO", help="a scenario file or built-in name")
    p.add_argument(
        "real", metavar="REAL_RUNS_DIR", help="a folder of real runs (each with snapshots/)"
    )
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 (default 3)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key (as in fragsim run); repeatable",
    )
    p.add_argument("--all-runs", action="store_true", help="also runs with another number of CPUs")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument(
        "--update-doc",
        metavar="FILE",
        help="rewrite the scenario's table in FILE (between <!-- fidelity:NAME:begin/end -->)",
    )
    p.set_defaults(func=cmd_fidelity)
    return p


def cmd_fidelity(args: argparse.Namespace) -> int:
    """Run the comparison and print it (table or JSON); optionally update a document."""
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: expected at least 1")
    c = run_fidelity(
        args.scenario,
        args.real,
        seeds=list(range(args.seeds)),
        sets=args.sets,
        all_runs=args.all_runs,
    )
    if args.json:
        json.dump(c.to_json(), sys.stdout, indent=1)
        print()
    else:
        print(format_table(c), end="")
    if args.update_doc:
        cmd = f"fragsim fidelity {args.scenario} {args.real} --seeds {args.seeds}"
        cmd += "".join(f" --set {s}" for s in args.sets)
        cmd += " --all-runs" if args.all_runs else ""
        cmd += f" --update-doc {args.update_doc}"
        update_doc(args.update_doc, c.scenario, format_markdown(c, cmd))
    return 0
