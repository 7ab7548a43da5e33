"""Sweep files: many runs of one scenario across settings and seeds.

Models nothing of the kernel; like a scenario file it is the declarative shell of runs (style
principle 12). A sweep file is TOML::

    [sweep]
    name = "gpu-movable"               # default: the file's stem; sweep-report finds it by name
    scenario = "seed-arm-gpu-zram-512m"  # a built-in name or a file (relative to this file)
    seeds = "0..19"                    # "A..B" (inclusive), "0,3,7", "0..9,20", or [0, 3, 7]
    until = "3h"                       # optional: replaces the scenario's duration
    set = ["sysctl.vm.swappiness=100"] # optional: --set overrides applied to every run
    workers = 2                        # optional: local processes (default: the machine's cores)
    scheduler = "tcp://HOST:8786"      # optional: run on this Dask cluster instead
    retries = 1                        # optional: how often a failed run is tried again (0..5)

    [grid]                             # the product of these lists, first key slowest
    "sysctl.vm.extfrag_threshold" = [300, 500, 700]
    sysctl.vm.compaction_proactiveness = [0, 20]   # dotted keys may also be written bare

    [[variants]]                       # explicit settings whose keys change together
    label = "512 MiB"                  # optional (default: its KEY=VALUE list)
    "machine.profile" = "arm64-512m"
    [[variants]]
    label = "1 GiB, small GPU buffers"
    "machine.profile" = "arm64-1g"
    "drivers.gpu.large_order" = 0

Keys are those of ``fragsim run --set`` (``sysctl.vm.NAME``, ``drivers.NAME.OPTION``,
``workloads.TYPE.OPTION``, ``machine.FIELD``, ``scenario.KEY``, ``movable``); values are TOML
values. The settings are every variant (or the scenario as it is, without ``[[variants]]``)
combined with every point of the grid; each setting runs once per seed. Every setting is
loaded and validated before anything runs: an error names the sweep file and the key
(``sweep.toml: grid."sysctl.vm.swappiness"[1]: ...``).

``fragsim run SCENARIO --sweep KEY=V1,V2 [--sweep ...] --seeds 0..19`` is the short form: one
grid key per ``--sweep`` (values as ``--compare`` splits them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fragsim.errors import ConfigError
from fragsim.scenario.config import (
    Scenario,
    _toml_value,
    expand_compare,
    load_scenario,
)

__all__ = [
    "PlannedRun",
    "Setting",
    "SweepPlan",
    "SweepSpec",
    "load_sweep",
    "parse_seeds",
    "plan_sweep",
    "sweep_from_args",
]

_SWEEP_KEYS = ("name", "scenario", "seeds", "until", "set", "workers", "scheduler", "retries")
_SECTIONS = ("sweep", "grid", "variants")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+=,-]*$")
_MAX_SEEDS = 100_000


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """A sweep as written: the scenario, the seeds, fixed overrides, the grid and the variants.
    ``where`` is what errors name (the sweep file, or the ``fragsim run`` options)."""

    name: str
    #: a built-in scenario name or an absolute file path
    scenario: str
    seeds: tuple[int, ...]
    until: str | None = None
    sets: tuple[str, ...] = ()
    #: (key, values) in file order; the product, first key slowest
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    #: (label or "", {key: value}) per [[variants]] table
    variants: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    workers: int | None = None
    scheduler: str | None = None
    retries: int = 1
    where: str = "sweep"

    def to_dict(self) -> dict[str, Any]:
        """The sweep as JSON-able data (stored with its plan in the results database)."""
        return {
            "name": self.name,
            "scenario": self.scenario,
            "seeds": list(self.seeds),
            "until": self.until,
            "set": list(self.sets),
            "grid": {k: list(v) for k, v in self.grid},
            "variants": [{"label": lab, **dict(kv)} for lab, kv in self.variants],
        }


@dataclass(frozen=True, slots=True)
class Setting:
    """One point of the sweep: its label (``key=value,...``), the values it sets (key ->
    TOML value, grid keys and variant keys in order) and the ``--set`` strings that make it."""

    index: int
    label: str
    values: tuple[tuple[str, Any], ...]
    sets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """One run of the sweep: a setting with one seed, its loaded scenario and its config
    hash (the seed is not part of the hash)."""

    setting: Setting
    seed: int
    scenario: Scenario
    config_hash: str


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """The expanded sweep: its settings and its runs, seeds outermost (an interrupted sweep
    has covered every setting about equally)."""

    spec: SweepSpec
    settings: tuple[Setting, ...]
    runs: tuple[PlannedRun, ...]
    #: the keys that vary across settings, in order (the report's axes)
    keys: tuple[str, ...]


# ---------------------------------------------------------------------- values and seeds
def _show(v: Any) -> str:
    try:
        return _toml_value(v)
    except TypeError:
        return repr(v)


def _set_text(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` parses it back to ``value`` (strings quoted)."""
    return f"{key}={_toml_value(value)}"


def _label_value(v: Any) -> str:
    """A value in a setting's label: strings bare, the rest in TOML syntax."""
    return v if isinstance(v, str) else _show(v)


def parse_seeds(spec: Any, where: str) -> tuple[int, ...]:
    """Seeds from ``"0..19"`` (inclusive), ``"1,4,9"``, ``"0..4,10"``, an integer or an array
    of integers; a ConfigError naming ``where`` for anything else (empty, negative, repeated,
    reversed ranges)."""
    out: list[int] = []
    if isinstance(spec, bool):
        raise ConfigError(f'{where}: expected seeds such as "0..19" or [0, 1], got {spec}')
    if isinstance(spec, int):
        out = [spec]
    elif isinstance(spec, list):
        for i, s in enumerate(spec):
            if isinstance(s, bool) or not isinstance(s, int):
                raise ConfigError(f"{where}[{i}]: expected an integer seed, got {_show(s)}")
            out.append(s)
    elif isinstance(spec, str):
        for part in spec.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)\s*\.\.\s*(\d+)", part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ConfigError(f"{where}: range {part!r} ends before it starts")
                if hi - lo + 1 > _MAX_SEEDS:
                    raise ConfigError(f"{where}: range {part!r} has more than {_MAX_SEEDS} seeds")
                out.extend(range(lo, hi + 1))
            elif re.fullmatch(r"\d+", part):
                out.append(int(part))
            else:
                raise ConfigError(
                    f"{where}: {part!r} is not a seed or a range (expected e.g. 0..19 or 1,4,9)"
                )
    else:
        raise ConfigError(f'{where}: expected seeds such as "0..19" or [0, 1], got {_show(spec)}')
    if not out:
        raise ConfigError(f"{where}: no seeds")
    for s in out:
        if not 0 <= s < 2**63:
            raise ConfigError(f"{where}: seed {s} is out of range (expected 0 <= seed < 2**63)")
    dup = sorted({s for s in out if out.count(s) > 1})
    if dup:
        raise ConfigError(f"{where}: seed {dup[0]} appears twice")
    return tuple(out)


# ---------------------------------------------------------------------- the sweep file
def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Bare dotted TOML keys (``sysctl.vm.x = [..]``) are nested tables: join them back."""
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out += _flatten(v, key)
        else:
            out.append((key, v))
    return out


def _qkey(key: str) -> str:
    return json.dumps(key)


def load_sweep(path: str | Path) -> SweepSpec:
    """Load and check a sweep file (module docstring); the scenario and the settings are
    validated by ``plan_sweep``."""
    p = Path(path)
    file = str(path)
    if not p.is_file():
        raise ConfigError(f"{file}: no such sweep file")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{file}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: invalid TOML: {e}") from None
    for k in raw:
        if k not in _SECTIONS:
            raise ConfigError(f"{file}: {k}: unknown section; known: {', '.join(_SECTIONS)}")
    sw = raw.get("sweep")
    if not isinstance(sw, dict):
        raise ConfigError(
            f"{file}: sweep: missing [sweep] table (it names the scenario and the seeds)"
            if sw is None
            else f"{file}: sweep: expected a table, got {_show(sw)}"
        )
    for k in sw:
        if k not in _SWEEP_KEYS:
            raise ConfigError(f"{file}: sweep.{k}: unknown key; known: {', '.join(_SWEEP_KEYS)}")

    def err(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{file}: {key}: {msg}")

    name = sw.get("name", p.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise err("sweep.name", f"expected a name of letters, digits and _.:+=,- got {_show(name)}")
    scen = sw.get("scenario")
    if not isinstance(scen, str) or not scen.strip():
        raise err(
            "sweep.scenario",
            "missing (a built-in scenario name or a scenario file)"
            if scen is None
            else f"expected a scenario name or file, got {_show(scen)}",
        )
    scenario = _resolve_scenario(scen.strip(), p.parent)
    seeds = parse_seeds(sw.get("seeds", 0), f"{file}: sweep.seeds")
    until = sw.get("until")
    if until is not None and not isinstance(until, str):
        raise err("sweep.until", f'expected a duration such as "3h", got {_show(until)}')
    sets = sw.get("set", [])
    if isinstance(sets, str):
        sets = [sets]
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise err("sweep.set", f'expected an array of "KEY=VALUE" strings, got {_show(sets)}')
    for i, s in enumerate(sets):
        if "=" not in s:
            raise err(f"sweep.set[{i}]", f"expected KEY=VALUE, got {s!r}")
    workers = sw.get("workers")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 4096
    ):
        raise err("sweep.workers", f"expected an integer in [1, 4096], got {_show(workers)}")
    scheduler = sw.get("scheduler")
    if scheduler is not None and (not isinstance(scheduler, str) or "://" not in scheduler):
        raise err(
            "sweep.scheduler",
            f'expected an address such as "tcp://HOST:8786", got {_show(scheduler)}',
        )
    retries = sw.get("retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 5:
        raise err("sweep.retries", f"expected an integer in [0, 5], got {_show(retries)}")

    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise err("grid", f"expected a table of KEY = [values], got {_show(grid_raw)}")
    grid: list[tuple[str, tuple[Any, ...]]] = []
    for key, values in _flatten(grid_raw):
        where = f"grid.{_qkey(key)}"
        if not isinstance(values, list) or not values:
            raise err(where, f"expected a non-empty array of values, got {_show(values)}")
        for i, v in enumerate(values):
            if any(type(x) is type(v) and x == v for x in values[:i]):
                raise err(f"{where}[{i}]", f"value {_show(v)} appears twice")
        grid.append((key, tuple(values)))
    var_raw = raw.get("variants", [])
    if not isinstance(var_raw, list):
        raise err("variants", f"expected an array of tables ([[variants]]), got {_show(var_raw)}")
    variants: list[tuple[str, tuple[tuple[str, Any], ...]]] = []
    labels: set[str] = set()
    for i, t in enumerate(var_raw):
        where = f"variants[{i}]"
        if not isinstance(t, dict):
            raise err(where, f"expected a table, got {_show(t)}")
        t = dict(t)
        label = t.pop("label", "")
        if not isinstance(label, str):
            raise err(f"{where}.label", f"expected a string, got {_show(label)}")
        kv = tuple(_flatten(t))
        if not kv:
            raise err(where, "sets nothing (expected KEY = VALUE pairs)")
        gkeys = [k for k, _ in kv if k in dict(grid)]
        if gkeys:
            raise err(f"{where}.{_qkey(gkeys[0])}", "is also a grid key; set it in one place")
        label = label or ",".join(f"{k}={_label_value(v)}" for k, v in kv)
        if label in labels:
            raise err(f"{where}.label", f"{label!r} is the label of another variant")
        labels.add(label)
        variants.append((label, kv))
    return SweepSpec(
        name=name,
        scenario=scenario,
        seeds=seeds,
        until=until,
        sets=tuple(sets),
        grid=tuple(grid),
        variants=tuple(variants),
        workers=workers,
        scheduler=scheduler,
        retries=retries,
        where=file,
    )


def _resolve_scenario(source: str, base: Path) -> str:
    """A scenario file relative to the sweep file's directory becomes an absolute path (the
    workers may run elsewhere); a built-in name stays a name."""
    p = Path(source)
    if p.suffix == ".toml" or "/" in source:
        if not p.is_absolute():
            p = base / p
        return str(p.resolve())
    return source


def sweep_from_args(
    scenario: str,
    sweeps: Iterable[str],
    seeds: str | None,
    *,
    sets: Iterable[str] = (),
    until: str | None = None,
    seed: int | None = None,
    name: str | None = None,
) -> SweepSpec:
    """The sweep of ``fragsim run SCENARIO --sweep KEY=V1,V2 ... --seeds A..B``: one grid key
    per ``--sweep``; without ``--seeds`` the one seed of ``--seed`` or of the scenario. The
    name (unless given) is the scenario's stem and a short hash of the options, so running
    the same command again resumes the same sweep."""
    grid: list[tuple[str, tuple[Any, ...]]] = []
    for spec in sweeps:
        try:
            variants = expand_compare(spec)
        except ConfigError as e:
            raise ConfigError(str(e).replace("--compare", "--sweep", 1)) from None
        key = variants[0][0].partition("=")[0].strip()
        if key in dict(grid):
            raise ConfigError(f"--sweep {spec}: {key} is swept twice")
        grid.append((key, tuple(_parse_set_value(v[0].partition("=")[2]) for v in variants)))
    if seeds is not None:
        seed_list = parse_seeds(seeds, f"--seeds {seeds}")
    elif seed is not None:
        seed_list = parse_seeds(seed, f"--seed {seed}")
    else:
        seed_list = (load_scenario(scenario, sets=sets).scenario.seed,)
    p = Path(scenario)
    source = str(p.resolve()) if p.suffix == ".toml" or "/" in scenario else scenario
    if name is None:
        ident = json.dumps([source, list(sets), until, [[k, list(v)] for k, v in grid]])
        name = f"{p.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"
    return SweepSpec(
        name=name,
        scenario=source,
        seeds=seed_list,
        until=until,
        sets=tuple(sets),
        grid=tuple(grid),
        where="fragsim run",
    )


def _parse_set_value(text: str) -> Any:
    """A --sweep value as --set reads it: TOML, else the text itself."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ---------------------------------------------------------------------- expansion
def _settings(spec: SweepSpec) -> list[Setting]:
    variants = spec.variants or (("", ()),)
    points = itertools.product(*(v for _, v in spec.grid)) if spec.grid else [()]
    out: list[Setting] = []
    for (vlabel, vkv), point in itertools.product(variants, list(points)):
        gkv = tuple(zip((k for k, _ in spec.grid), point, strict=True))
        parts = ([vlabel] if vlabel else []) + [f"{k}={_label_value(v)}" for k, v in gkv]
        out.append(
            Setting(
                index=len(out),
                label=",".join(parts) or "baseline",
                values=vkv + gkv,
                sets=tuple(_set_text(k, v) for k, v in vkv + gkv),
            )
        )
    return out


def _where_of(spec: SweepSpec, setting: Setting) -> str:
    return f"{spec.where}: setting {setting.label!r}"


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    """Expand ``spec`` into its settings and runs, loading (so validating) the scenario of
    every setting first. Two settings that give the same configuration are an error (each
    would be the other's run)."""
    settings = _settings(spec)
    runs: list[PlannedRun] = []
    loaded: list[tuple[Scenario, str]] = []
    seen: dict[str, str] = {}
    for st in settings:
        try:
            sc = load_scenario(spec.scenario, sets=[*spec.sets, *st.sets], until=spec.until)
        except ConfigError as e:
            raise ConfigError(f"{_where_of(spec, st)}: {e}") from None
        h = sc.config_hash()
        if h in seen:
            raise ConfigError(
                f"{_where_of(spec, st)}: gives the same configuration as setting "
                f"{seen[h]!r} (config hash {h[:8]})"
            )
        seen[h] = st.label
        loaded.append((sc, h))
    for seed in spec.seeds:
        for st, (sc, h) in zip(settings, loaded, strict=True):
            run_sc = dataclasses.replace(sc, scenario=dataclasses.replace(sc.scenario, seed=seed))
            runs.append(PlannedRun(st, seed, run_sc, h))
    keys: list[str] = []
    for st in settings:
        for k, _ in st.values:
            if k not in keys:
                keys.append(k)
    return SweepPlan(spec, tuple(settings), tuple(runs), tuple(keys))
