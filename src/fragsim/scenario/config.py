"""Scenario files: load a TOML scenario, validate it, apply ``--set`` overrides, expand it.

Models nothing of the kernel; it is the declarative shell of a run (style principle 12). A
scenario file has five sections::

    [scenario]                      # name (default: the file's stem), description, duration,
    duration = "3d"                 # seed, sample_every, snapshots (durations or "end"), batch
    [machine]                       # profile (fragsim.profiles), kernel ("6.1", or with older
    profile = "x86_64-1g"           # rules: "6.1[watermark_boost=off]"), and any field of
                                    # MachineProfile to override (nr_cpus, config_thp, ...)
    [sysctl]                        # vm tunables by sysctl name, with or without "vm."
    "vm.swappiness" = 100
    [drivers.gpu]                   # one table per driver instance; the key is its name
    type = "gpu"                    # a registered name, dotted path or file.py:Class
    movable = true                  # any other key: a keyword argument of the class
    [[workloads]]                   # an array of tables, one per workload
    type = "android"                # a registered workload (fragsim.scenario.engine)

Driver and workload options are checked against the ``__init__`` signature of the class (the
parameters after ``machine``/``sim``): an unknown key is an error listing the known ones, a
missing parameter without default is an error, and each value is checked against the
annotation: ``bool``, ``int``, ``float`` (an integer is accepted), ``str``, ``Literal``, unions,
arrays (``list``/``tuple``/``Sequence``/``Iterable``), tables (``dict``/``Mapping``) and
dataclasses (a table of its fields, e.g. ``cost = { per_page_ns = 1500 }`` for a
``MigrationCost``). Units, for a parameter annotated ``int``, by its name:

* a name ending in ``size``, ``_bytes`` or ``limit`` (``disksize``, ``thread_size``,
  ``mem_limit``) is a **size** in bytes and also accepts ``"256MiB"`` (fragsim.scenario.units);
* a name ending in ``_ns``, ``interval``, ``period``, ``duration``, ``timeout`` or ``_every``
  is a **duration** in nanoseconds and also accepts ``"10min"``.

A class whose ``__init__`` takes ``**options`` (the balloon) is checked against the named
parameters of its base classes' ``__init__``; other keys go to the class unchecked, which
checks them when the run builds it. A parameter whose default TOML cannot write (None) is left
out of the file: omitting it gives the default. Ranges of driver options are checked by the
driver's constructor (``DriverSpec.create`` names the file and key).

``load_scenario()`` returns a ``Scenario``, a frozen tree whose ``to_dict()`` is fully expanded
(every default filled in, sizes in bytes and durations in ns), ``to_toml()`` prints it back as a
scenario file that loads to the same dict, and ``config_hash()`` identifies the configuration
(without the seed). Every error is a ``ConfigError`` naming the file, the key path and what was
expected (``seed.toml: drivers.gpu.duty_cycle: expected a number, got "high"``).
"""

from __future__ import annotations

import argparse
import builtins
import collections.abc as cabc
import copy
import dataclasses
import hashlib
import importlib
import importlib.resources
import importlib.util
import inspect
import json
import math
import re
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from fragsim.errors import ConfigError
from fragsim.scenario.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "SECTIONS",
    "DriverSpec",
    "MachineSection",
    "Scenario",
    "ScenarioSection",
    "WorkloadSpec",
    "add_list_parser",
    "add_scenario_options",
    "add_show_parser",
    "builtin_scenarios",
    "cmd_list",
    "cmd_show",
    "expand_compare",
    "load_scenario",
    "scenario_from_args",
    "workload_registry",
]

SECTIONS = ("scenario", "machine", "sysctl", "drivers", "workloads")

#: [scenario] keys and their defaults (durations as written)
_SCENARIO_DEFAULTS: dict[str, Any] = {
    "name": None,  # the file's stem
    "description": "",
    "duration": "1h",
    "seed": 0,
    "sample_every": "1min",
    "snapshots": ["0s", "end"],
    "batch": 256,
}

#: MachineProfile fields a scenario may not set (the layout comes from the profile)
_MACHINE_FIXED = ("name", "nodes", "extra", "kernel")

#: ranges of the integer MachineProfile fields (the kernel's bounds where it has them)
_MACHINE_RANGES: dict[str, tuple[int, int]] = {
    "page_size": (4096, 65536),
    "pageblock_order": (1, 10),
    "nr_cpus": (1, 4096),
    "min_free_kbytes": (0, 2**31 - 1),
    "watermark_scale_factor": (1, 3000),
    "watermark_boost_factor": (0, 2**31 - 1),
    "percpu_pagelist_high_fraction": (0, 2**31 - 1),
    "pcp_batch_scale_max": (0, 6),
}

_INSTANCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SIZE_SUFFIXES = ("size", "_bytes", "limit")
_DURATION_SUFFIXES = ("_ns", "interval", "period", "duration", "timeout", "_every")


# ---------------------------------------------------------------------- errors and display
class _Ctx:
    """Where errors point: the file's display name, and which key paths --set/--seed set."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.origins: dict[str, str] = {}

    def error(self, path: str, msg: str) -> ConfigError:
        where = f"{self.file}: {path}: " if path else f"{self.file}: "
        for p, origin in self.origins.items():
            if path == p or path.startswith((p + ".", p + "[")):
                return ConfigError(f"{where}{msg} (from {origin})")
        return ConfigError(where + msg)


def _show(v: Any) -> str:
    """A value as the user wrote it (TOML syntax where possible)."""
    try:
        return _toml_value(v)
    except TypeError:
        return repr(v)


def _unit(name: str) -> str | None:
    """'size' or 'duration' for an int parameter whose name says so (module docstring)."""
    if name.endswith(_SIZE_SUFFIXES):
        return "size"
    if name.endswith(_DURATION_SUFFIXES):
        return "duration"
    return None


# ---------------------------------------------------------------------- annotations
_SEQUENCES = (
    list,
    tuple,
    cabc.Sequence,
    cabc.MutableSequence,
    cabc.Iterable,
    cabc.Collection,
)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)


def _describe(ann: Any, unit: str | None = None) -> str:
    """What a value of annotation ``ann`` looks like, for an error message."""
    origin = get_origin(ann)
    if ann is Any or ann is inspect.Parameter.empty:
        return "any value"
    if origin is typing.Annotated:
        return _describe(get_args(ann)[0], unit)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a, unit) for a in get_args(ann) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(_show(a) for a in get_args(ann))
    if ann is bool:
        return "true or false"
    if ann is int:
        if unit == "size":
            return 'a size (bytes, or a string such as "256MiB")'
        if unit == "duration":
            return 'a duration (ns, or a string such as "10min")'
        return "an integer"
    if ann is float:
        return "a number"
    if ann is str:
        return "a string"
    if ann in _SEQUENCES or origin in _SEQUENCES:
        args = get_args(ann)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"an array of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"an array of {_describe(args[0])}" if args else "an array"
    if ann in _MAPPINGS or origin in _MAPPINGS:
        return "a table"
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        names = ", ".join(f.name for f in dataclasses.fields(ann))
        return f"a table of {ann.__name__} ({names})"
    return f"a {getattr(ann, '__name__', ann)}"


def _coerce(v: Any, ann: Any, unit: str | None, path: str, ctx: _Ctx) -> tuple[Any, Any]:
    """Check a TOML value against ``ann``; returns (canonical value, value to pass)."""
    origin = get_origin(ann)
    if ann is Any or ann is inspect.Parameter.empty or ann is object:
        return v, v
    if origin is typing.Annotated:
        return _coerce(v, get_args(ann)[0], unit, path, ctx)
    if origin in (Union, types.UnionType):
        members = [m for m in get_args(ann) if m is not type(None)]
        fits = [m for m in members if _shape_fits(v, m)]
        if len(fits) == 1:  # the value's shape picks the member: its error is the precise one
            return _coerce(v, fits[0], unit, path, ctx)
        for member in fits:
            try:
                return _coerce(v, member, unit, path, ctx)
            except ConfigError:
                pass
        raise ctx.error(path, f"expected {_describe(ann, unit)}, got {_show(v)}")
    if origin is Literal:
        for a in get_args(ann):
            if type(a) is type(v) and a == v:
                return v, v
        raise ctx.error(path, f"expected {_describe(ann)}, got {_show(v)}")
    if ann is bool:
        if isinstance(v, bool):
            return v, v
    elif ann is int:
        if unit is not None and isinstance(v, int | str) and not isinstance(v, bool):
            try:
                n = parse_size(v) if unit == "size" else parse_duration(v)
            except ValueError as e:
                raise ctx.error(path, str(e)) from None
            return n, n
        if isinstance(v, int) and not isinstance(v, bool):
            return v, v
    elif ann is float:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v), float(v)
    elif ann is str:
        if isinstance(v, str):
            return v, v
    elif ann in _SEQUENCES or origin in _SEQUENCES:
        if isinstance(v, list):
            return _coerce_array(v, ann, path, ctx)
    elif ann in _MAPPINGS or origin in _MAPPINGS:
        if isinstance(v, dict):
            args = get_args(ann)
            vann = args[1] if len(args) == 2 else Any
            pairs = {k: _coerce(x, vann, None, f"{path}.{k}", ctx) for k, x in v.items()}
            return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    elif isinstance(ann, type) and dataclasses.is_dataclass(ann):
        if isinstance(v, dict):
            return _coerce_dataclass(v, ann, path, ctx)
    else:
        raise ctx.error(path, f"cannot be set in a scenario file (a {_describe(ann)})")
    raise ctx.error(path, f"expected {_describe(ann, unit)}, got {_show(v)}")


def _shape_fits(v: Any, ann: Any) -> bool:
    """Whether ``v`` has the TOML shape of ``ann`` (array, table or scalar)."""
    origin = get_origin(ann)
    if origin is typing.Annotated:
        return _shape_fits(v, get_args(ann)[0])
    if ann in _SEQUENCES or origin in _SEQUENCES:
        return isinstance(v, list)
    if ann in _MAPPINGS or origin in _MAPPINGS or dataclasses.is_dataclass(ann):
        return isinstance(v, dict)
    return not isinstance(v, list | dict)


def _coerce_array(v: list[Any], ann: Any, path: str, ctx: _Ctx) -> tuple[Any, Any]:
    origin = get_origin(ann) or ann
    args = get_args(ann)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(v) != len(args):
            raise ctx.error(path, f"expected {_describe(ann)}, got {_show(v)}")
        elems = [
            _coerce(x, a, None, f"{path}[{i}]", ctx)
            for i, (x, a) in enumerate(zip(v, args, strict=True))
        ]
    else:
        elem = args[0] if args else Any
        elems = [_coerce(x, elem, None, f"{path}[{i}]", ctx) for i, x in enumerate(v)]
    canon = [e[0] for e in elems]
    value = [e[1] for e in elems]
    return canon, tuple(value) if origin is tuple else value


def _coerce_dataclass(v: dict[str, Any], cls: type, path: str, ctx: _Ctx) -> tuple[Any, Any]:
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    given: dict[str, Any] = {}
    for k, x in v.items():
        if k not in fields:
            raise ctx.error(
                f"{path}.{k}", f"unknown field of {cls.__name__}; known: {', '.join(fields)}"
            )
        given[k] = _coerce(x, hints.get(k, Any), _unit(k), f"{path}.{k}", ctx)[1]
    try:
        obj = cls(**given)
    except Exception as e:  # noqa: BLE001 - the dataclass's own validation, named by path
        raise ctx.error(path, f"{type(e).__name__}: {e}") from None
    canon = {name: _canonical(getattr(obj, name)) for name in fields}
    return {k: c for k, c in canon.items() if c is not _OMIT}, obj


_OMIT = object()


def _canonical(v: Any) -> Any:
    """A default value as the expanded config stores it, or _OMIT if TOML cannot write it."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, list | tuple):
        items = [_canonical(x) for x in v]
        return _OMIT if any(x is _OMIT or x is None for x in items) else items
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        items2 = {k: _canonical(x) for k, x in v.items()}
        return _OMIT if any(x is _OMIT for x in items2.values()) else items2
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        d = {f.name: _canonical(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return _OMIT if any(x is _OMIT for x in d.values()) else d
    return _OMIT


def _hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations of a function or class; an annotation that does not resolve is
    Any (its values are passed unchecked)."""
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:  # noqa: BLE001 - forward references under TYPE_CHECKING
        pass
    raw = getattr(obj, "__annotations__", {})
    glob = getattr(obj, "__globals__", None)
    if glob is None:
        mod = sys.modules.get(getattr(obj, "__module__", ""), None)
        glob = vars(mod) if mod else {}
    out: dict[str, Any] = {}
    for k, a in raw.items():
        if isinstance(a, str):
            try:
                a = eval(a, glob)  # noqa: S307 - an annotation of the user's own class
            except Exception:  # noqa: BLE001
                a = Any
        out[k] = a
    return out


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty: required


@dataclass(frozen=True, slots=True)
class _Signature:
    params: dict[str, _Param]
    open: bool  # takes **options: other keys go to the class unchecked


def _options_signature(obj: Any) -> _Signature:
    """The options of a driver or workload: the parameters of ``obj.__init__`` (a class) or
    ``obj`` (a function) after the first (``machine`` / ``sim``)."""
    params: dict[str, _Param] = {}
    is_open = False
    funcs: list[Any] = []
    if isinstance(obj, type):
        for base in obj.__mro__:
            init = vars(base).get("__init__")
            if init is None or base is object:
                continue
            funcs.append(init)
            if not any(
                p.kind is inspect.Parameter.VAR_KEYWORD
                for p in inspect.signature(init).parameters.values()
            ):
                break
    else:
        funcs.append(obj)
    for i, func in enumerate(funcs):
        sig = inspect.signature(func)
        hints = _hints(func)
        plist = list(sig.parameters.values())
        plist = plist[2:] if isinstance(obj, type) else plist[1:]  # self, machine / sim
        for p in plist:
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                if i == 0:
                    is_open = True
                continue
            if p.kind is inspect.Parameter.VAR_POSITIONAL or p.name in params:
                continue
            params[p.name] = _Param(p.name, hints.get(p.name, Any), p.default)
    return _Signature(params, is_open)


# ---------------------------------------------------------------------- the tree
@dataclass(frozen=True, slots=True)
class ScenarioSection:
    """[scenario]: what the run is called, how long it runs and what it records."""

    name: str
    description: str
    #: simulated time the run covers (ns)
    duration_ns: int
    #: the one seed of the run (numpy SeedSequence spawns every component's generator)
    seed: int
    #: sampling interval of the metrics time series (ns)
    sample_every_ns: int
    #: times of the /proc-format snapshots (ns, sorted; "end" is duration_ns)
    snapshots_ns: tuple[int, ...]
    #: how many requests workloads hand over per batch
    batch: int


@dataclass(frozen=True, slots=True)
class MachineSection:
    """[machine]: a profile name, the kernel profile and every overridable MachineProfile
    field's value (``fields``; the profile's own where the file does not set it)."""

    profile: str
    kernel: str
    fields: dict[str, Any]
    #: the fields the file sets, as MachineProfile takes them (tuples)
    overrides: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)

    def machine_profile(self) -> Any:
        """The fragsim.profiles.MachineProfile this section describes."""
        from fragsim.profiles import machine_profile

        return machine_profile(self.profile, kernel=self.kernel, **self.overrides)


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """One [drivers.NAME] table: the class ``type`` names, its options (every default filled
    in, canonical units) and whether the machine swapons it."""

    name: str
    type: str
    cls: builtins.type[Any]
    options: dict[str, Any]
    swap: bool = False
    #: the options the file sets, as the class takes them (MigrationCost objects, tuples)
    kwargs: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)
    #: option name -> "size" / "duration" (to_toml writes those with units)
    units: dict[str, str] = field(compare=False, repr=False, default_factory=dict)
    #: "FILE: drivers.NAME", for errors the constructor raises
    where: str = field(compare=False, repr=False, default="")

    def create(self, machine: Any) -> Any:
        """``cls(machine, **kwargs)``; a bad option the class rejects names the file and key."""
        try:
            return self.cls(machine, **self.kwargs)
        except (ConfigError, ValueError, TypeError) as e:
            raise ConfigError(f"{self.where}: {e}") from e


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """One [[workloads]] table: the registered workload ``type`` and its options."""

    index: int
    type: str
    factory: Callable[..., Any]
    options: dict[str, Any]
    kwargs: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)
    units: dict[str, str] = field(compare=False, repr=False, default_factory=dict)
    where: str = field(compare=False, repr=False, default="")

    def create(self, sim: Any) -> Any:
        """``factory(sim, **kwargs)``; a bad option it rejects names the file and key."""
        try:
            return self.factory(sim, **self.kwargs)
        except (ConfigError, ValueError, TypeError) as e:
            raise ConfigError(f"{self.where}: {e}") from e


@dataclass(frozen=True, slots=True)
class Scenario:
    """A loaded, validated scenario (``load_scenario``). ``source`` is where it came from."""

    source: str
    scenario: ScenarioSection
    machine: MachineSection
    #: "vm.NAME" -> value, the sysctls the file sets (sorted by name)
    sysctl: dict[str, int]
    drivers: tuple[DriverSpec, ...]
    workloads: tuple[WorkloadSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """The fully expanded configuration: every default filled in, sizes in bytes,
        durations in ns; None where a default has no TOML form (to_toml leaves it out)."""
        s = self.scenario
        return copy.deepcopy(
            {
                "scenario": {
                    "name": s.name,
                    "description": s.description,
                    "duration": s.duration_ns,
                    "seed": s.seed,
                    "sample_every": s.sample_every_ns,
                    "snapshots": list(s.snapshots_ns),
                    "batch": s.batch,
                },
                "machine": {
                    "profile": self.machine.profile,
                    "kernel": self.machine.kernel,
                    **self.machine.fields,
                },
                "sysctl": dict(self.sysctl),
                "drivers": {
                    d.name: {"type": d.type, "swap": d.swap, **d.options} for d in self.drivers
                },
                "workloads": [{"type": w.type, **w.options} for w in self.workloads],
            }
        )

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of ``to_dict()`` without the seed: the same
        configuration run with another seed has the same hash."""
        d = self.to_dict()
        del d["scenario"]["seed"]
        text = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_toml(self) -> str:
        """The expanded configuration as a scenario file (``fragsim show``); loading it gives
        the same ``to_dict()``."""
        d = self.to_dict()
        out = [
            f"# fragsim show: {self.source}, fully expanded",
            f"# config hash {self.config_hash()}",
        ]
        sc = d["scenario"]
        sc["duration"] = format_duration(sc["duration"])
        sc["sample_every"] = format_duration(sc["sample_every"])
        sc["snapshots"] = [format_duration(t) for t in sc["snapshots"]]
        out += ["", "[scenario]"] + _toml_table(sc)
        out += ["", "[machine]"] + _toml_table(d["machine"])
        out += ["", "[sysctl]"] + _toml_table(d["sysctl"])
        for spec in self.drivers:
            out += ["", f"[drivers.{_toml_key(spec.name)}]"]
            out += _toml_table(_with_units(d["drivers"][spec.name], spec.units))
        for wspec, w in zip(self.workloads, d["workloads"], strict=True):
            out += ["", "[[workloads]]"] + _toml_table(_with_units(w, wspec.units))
        return "\n".join(out) + "\n"


def _with_units(table: dict[str, Any], units: dict[str, str]) -> dict[str, Any]:
    for k, u in units.items():
        if isinstance(table.get(k), int) and not isinstance(table[k], bool):
            table[k] = format_size(table[k]) if u == "size" else format_duration(table[k])
    return table


# ---------------------------------------------------------------------- TOML writing
def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    """One value in TOML syntax (tomllib only reads)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = [f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"no TOML form for {v!r}")


def _toml_table(d: Mapping[str, Any]) -> list[str]:
    """``key = value`` lines; a None (a default TOML cannot write) becomes a comment."""
    return [
        f"# {k}: not set (the default applies)"
        if v is None
        else f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in d.items()
    ]


# ---------------------------------------------------------------------- sources
def _builtin_dir() -> Any:
    return importlib.resources.files("fragsim") / "scenarios"


def builtin_scenarios() -> dict[str, str]:
    """Built-in scenario name -> its description (src/fragsim/scenarios/NAME.toml)."""
    out: dict[str, str] = {}
    d = _builtin_dir()
    if not d.is_dir():
        return out
    for f in sorted(d.iterdir(), key=lambda f: f.name):
        if not f.name.endswith(".toml"):
            continue
        try:
            sc = tomllib.loads(f.read_text(encoding="utf-8")).get("scenario", {})
            desc = sc.get("description", "") if isinstance(sc, dict) else ""
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            desc = f"(unreadable: {e})"
        out[f.name.removesuffix(".toml")] = str(desc).strip().splitlines()[0] if desc else ""
    return out


def _read_source(source: str | Path) -> tuple[str, str, Path | None, str]:
    """(text, display name, directory relative paths start from, stem) of a scenario."""
    p = Path(source)
    if isinstance(source, Path) or p.suffix == ".toml" or "/" in str(source) or p.exists():
        if not p.is_file():
            raise ConfigError(f"{source}: no such scenario file")
        try:
            return p.read_text(encoding="utf-8"), str(source), p.parent, p.stem
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source}: cannot read: {e}") from None
    f = _builtin_dir() / f"{source}.toml"
    if f.is_file():
        return f.read_text(encoding="utf-8"), f"{source}.toml", Path(str(_builtin_dir())), source
    known = ", ".join(builtin_scenarios()) or "none"
    raise ConfigError(
        f"unknown scenario {str(source)!r}: no such file and no built-in scenario of that name "
        f"(built-in: {known})"
    )


_DRIVER_HEADER = re.compile(r'^\s*\[\s*drivers\s*\.\s*(?:"([^"]*)"|([A-Za-z0-9_-]+))\s*\]')


def _parse_toml(text: str, ctx: _Ctx) -> dict[str, Any]:
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _DRIVER_HEADER.match(line)
        if m:
            name = m.group(1) if m.group(1) is not None else m.group(2)
            if name in seen:
                raise ConfigError(
                    f"{ctx.file}: line {lineno}: drivers.{name}: a driver named {name!r} is "
                    f"already declared at line {seen[name]}; each driver needs its own name"
                )
            seen[name] = lineno
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{ctx.file}: invalid TOML: {e}") from None


# ---------------------------------------------------------------------- --set and --compare
def _parse_value(text: str) -> Any:
    """A --set value: TOML (``false``, ``10``, ``[1, 2]``, ``"x"``), else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def expand_compare(spec: str) -> list[list[str]]:
    """``--compare key=v1,v2,...``: one list of --set overrides per value
    (``"movable=off,on"`` -> ``[["movable=off"], ["movable=on"]]``). Commas inside brackets,
    braces or quotes do not split (``x=[1,2],[3]``)."""
    key, sep, values = spec.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--compare {spec!r}: expected KEY=V1,V2,... (e.g. movable=off,on)")
    parts: list[str] = []
    depth, quote = 0, ""
    cur: list[str] = []
    for ch in values:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    if any(not p for p in parts):
        raise ConfigError(f"--compare {spec!r}: an empty value (expected KEY=V1,V2,...)")
    for i, p in enumerate(parts):
        if p in parts[:i]:
            raise ConfigError(f"--compare {spec!r}: value {p!r} appears twice")
    return [[f"{key}={p}"] for p in parts]


def _set_nested(table: dict[str, Any], keys: list[str], value: Any, text: str) -> None:
    for k in keys[:-1]:
        sub = table.setdefault(k, {})
        if not isinstance(sub, dict):
            raise ConfigError(f"--set {text}: {k} is {_show(sub)}, not a table")
        table = sub
    table[keys[-1]] = value


def _section(raw: dict[str, Any], name: str, kind: type, text: str, ctx: _Ctx) -> Any:
    sec = raw.setdefault(name, kind())
    if not isinstance(sec, kind):
        raise ConfigError(
            f"--set {text}: {name} in {ctx.file} is not a {'table' if kind is dict else 'array'}"
        )
    return sec


def _apply_set(raw: dict[str, Any], text: str, ctx: _Ctx, base: Path | None) -> None:
    key, sep, vtext = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE (e.g. drivers.gpu.movable=false)")
    value = _parse_value(vtext.strip())
    if key == "movable":
        _apply_movable(raw, value, text, ctx, base)
        return
    section, _, rest = key.partition(".")
    if section not in SECTIONS:
        raise ConfigError(
            f"--set {text}: unknown section {section!r}; known: {', '.join(SECTIONS)} "
            "(or movable=on|off for every driver)"
        )
    if not rest:
        raise ConfigError(f"--set {text}: name a key inside [{section}] ({section}.KEY=VALUE)")
    if section in ("scenario", "machine"):
        if "." in rest:
            raise ConfigError(
                f"--set {text}: [{section}] has no sub-tables; expected {section}.KEY"
            )
        _section(raw, section, dict, text, ctx)[rest] = value
        path = f"{section}.{rest}"
    elif section == "sysctl":
        _section(raw, section, dict, text, ctx)[rest] = value
        path = f"sysctl.{rest}"
    elif section == "drivers":
        drivers = _section(raw, section, dict, text, ctx)
        name, _, opt = rest.partition(".")
        if name not in drivers:
            known = ", ".join(drivers) or "none"
            raise ConfigError(f"--set {text}: no driver {name!r} in {ctx.file} (drivers: {known})")
        if not opt or not isinstance(drivers[name], dict):
            raise ConfigError(f"--set {text}: expected drivers.{name}.OPTION=VALUE")
        _set_nested(drivers[name], opt.split("."), value, text)
        path = f"drivers.{name}.{opt}"
    else:
        wls = _section(raw, section, list, text, ctx)
        which, _, opt = rest.partition(".")
        if which.isdigit():
            i = int(which)
            if i >= len(wls):
                raise ConfigError(
                    f"--set {text}: {ctx.file} has {len(wls)} workloads (0..{len(wls) - 1})"
                )
        else:
            hits = [j for j, w in enumerate(wls) if isinstance(w, dict) and w.get("type") == which]
            if len(hits) != 1:
                raise ConfigError(
                    f"--set {text}: {len(hits)} workloads of type {which!r} in {ctx.file}; "
                    "name one by index (workloads.0.KEY)"
                )
            i = hits[0]
        if not opt or not isinstance(wls[i], dict):
            raise ConfigError(f"--set {text}: expected workloads.INDEX.OPTION=VALUE")
        _set_nested(wls[i], opt.split("."), value, text)
        path = f"workloads[{i}].{opt}"
    ctx.origins[path] = f"--set {text}"


def _apply_movable(
    raw: dict[str, Any], value: Any, text: str, ctx: _Ctx, base: Path | None
) -> None:
    """``movable=on|off``: set ``movable`` on every driver whose class takes it."""
    flags = {"on": True, "off": False, True: True, False: False}
    if not isinstance(value, str | bool) or value not in flags:
        raise ConfigError(f"--set {text}: expected movable=on, off, true or false")
    drivers = raw.get("drivers", {})
    hit = []
    if isinstance(drivers, dict):
        for name, table in drivers.items():
            if not isinstance(table, dict):
                continue  # the validation says what is wrong with it
            cls = _driver_class(table.get("type"), f"drivers.{name}.type", ctx, base)
            if "movable" in _options_signature(cls).params:
                table["movable"] = flags[value]
                ctx.origins[f"drivers.{name}.movable"] = f"--set {text}"
                hit.append(name)
    if not hit:
        known = ", ".join(drivers) if isinstance(drivers, dict) and drivers else "none"
        raise ConfigError(
            f"--set {text}: no driver in {ctx.file} takes a movable setting (drivers: {known})"
        )


# ---------------------------------------------------------------------- validation
def _table(raw: Any, path: str, ctx: _Ctx) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ctx.error(path, f"expected a table, got {_show(raw)}")
    return raw


def _known(d: Mapping[str, Any], known: Iterable[str], path: str, what: str, ctx: _Ctx) -> None:
    known = list(known)
    for k in d:
        if k not in known:
            p = f"{path}.{k}" if path else k
            raise ctx.error(p, f"unknown {what}; known: {', '.join(known)}")


def _int_in(v: Any, lo: int, hi: int | None, path: str, ctx: _Ctx) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.error(path, f"expected an integer, got {_show(v)}")
    if v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ctx.error(path, f"{v} is out of range (expected an integer {rng})")
    return v


def _duration(v: Any, path: str, ctx: _Ctx) -> int:
    try:
        return parse_duration(v)
    except ValueError as e:
        raise ctx.error(path, str(e)) from None


def _scenario_section(raw: Any, stem: str, until_ns: int | None, ctx: _Ctx) -> ScenarioSection:
    d = _table(raw, "scenario", ctx)
    _known(d, _SCENARIO_DEFAULTS, "scenario", "key", ctx)
    v = {**_SCENARIO_DEFAULTS, **d}
    name = stem if v["name"] is None else v["name"]
    if not isinstance(name, str) or not name.strip():
        raise ctx.error("scenario.name", f"expected a non-empty string, got {_show(name)}")
    if not isinstance(v["description"], str):
        raise ctx.error("scenario.description", f"expected a string, got {_show(v['description'])}")
    duration = _duration(v["duration"], "scenario.duration", ctx)
    if until_ns is not None:
        duration = until_ns
    if duration <= 0:
        raise ctx.error("scenario.duration", "must be longer than 0s")
    every = _duration(v["sample_every"], "scenario.sample_every", ctx)
    if not 0 < every <= duration:
        raise ctx.error(
            "scenario.sample_every",
            f"{format_duration(every)} is out of range (expected more than 0s and at most the "
            f"duration, {format_duration(duration)})",
        )
    snaps = v["snapshots"]
    if not isinstance(snaps, list):
        raise ctx.error(
            "scenario.snapshots", f'expected an array of durations or "end", got {_show(snaps)}'
        )
    times = set()
    for i, t in enumerate(snaps):
        p = f"scenario.snapshots[{i}]"
        ns = duration if t == "end" else _duration(t, p, ctx)
        if ns > duration:
            if until_ns is not None:
                continue  # --until cut the run short: later snapshots are not taken
            raise ctx.error(
                p,
                f"{format_duration(ns)} is after the end of the run ({format_duration(duration)})",
            )
        times.add(ns)
    return ScenarioSection(
        name=name,
        description=v["description"],
        duration_ns=duration,
        seed=_int_in(v["seed"], 0, 2**63 - 1, "scenario.seed", ctx),
        sample_every_ns=every,
        snapshots_ns=tuple(sorted(times)),
        batch=_int_in(v["batch"], 1, None, "scenario.batch", ctx),
    )


def _machine_section(raw: Any, ctx: _Ctx) -> MachineSection:
    from fragsim.profiles import MachineProfile, kernel_profile, machine_profile

    d = _table(raw, "machine", ctx)
    hints = _hints(MachineProfile)
    settable = [f.name for f in dataclasses.fields(MachineProfile) if f.name not in _MACHINE_FIXED]
    _known(d, ["profile", "kernel", *settable], "machine", "key", ctx)
    profile = d.get("profile", "x86_64-1g")
    if not isinstance(profile, str):
        raise ctx.error("machine.profile", f"expected a profile name, got {_show(profile)}")
    kernel = d.get("kernel", "6.1")
    if not isinstance(kernel, str):
        raise ctx.error("machine.kernel", f"expected a kernel profile name, got {_show(kernel)}")
    try:
        kernel_profile(kernel)
    except ConfigError as e:
        raise ctx.error("machine.kernel", str(e)) from None
    try:
        base = machine_profile(profile)
    except ConfigError as e:
        raise ctx.error("machine.profile", str(e)) from None
    overrides: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    for name in settable:
        path = f"machine.{name}"
        if name in d:
            canon, value = _coerce(d[name], hints[name], None, path, ctx)
            if name in _MACHINE_RANGES and isinstance(canon, int):
                _int_in(canon, *_MACHINE_RANGES[name], path, ctx)
            overrides[name] = value
        else:
            canon = _canonical(getattr(base, name))
        if canon is not _OMIT:
            fields[name] = canon
    try:
        machine_profile(profile, kernel=kernel, **overrides)
    except ConfigError as e:
        raise ctx.error("machine", str(e)) from None
    return MachineSection(profile, kernel, fields, overrides)


def _sysctl_section(raw: Any, ctx: _Ctx) -> dict[str, int]:
    from fragsim.mm.machine import Machine

    d = _table(raw, "sysctl", ctx)
    out: dict[str, int] = {}
    names: dict[str, str] = {}
    for k, v in d.items():
        path = f"sysctl.{k}"
        name = k.removeprefix("vm.")
        if name not in Machine.SYSCTLS:
            known = ", ".join(f"vm.{n}" for n in Machine.SYSCTLS)
            raise ctx.error(path, f"unknown sysctl; known: {known}")
        if name in names:
            raise ctx.error(path, f"set twice (also as sysctl.{names[name]})")
        names[name] = k
        lo, hi = Machine.SYSCTLS[name]
        out[f"vm.{name}"] = _int_in(v, lo, hi, path, ctx)
    return dict(sorted(out.items()))


def _driver_class(spec: Any, path: str, ctx: _Ctx, base: Path | None) -> type:
    from fragsim.drivers.loader import load_driver

    if not isinstance(spec, str) or not spec.strip():
        if spec is None:
            raise ctx.error(
                path, "missing (a registered driver name, dotted path or file.py:Class)"
            )
        raise ctx.error(path, f"expected a driver name or path, got {_show(spec)}")
    spec = _resolve_file_spec(spec, base)
    try:
        return load_driver(spec)
    except ConfigError as e:
        raise ctx.error(path, str(e)) from None


def _resolve_file_spec(spec: str, base: Path | None) -> str:
    """A relative ``file.py[:Class]`` is relative to the scenario file's directory."""
    if ".py" not in spec or base is None:
        return spec
    file_part, sep, cls = spec.rpartition(":")
    if not sep or not file_part.endswith(".py"):
        file_part, sep, cls = spec, "", ""
    p = Path(file_part)
    if not p.is_absolute() and (base / p).is_file():
        p = base / p
    return f"{p}{sep}{cls}"


def _options(
    d: dict[str, Any], target: Any, reserved: tuple[str, ...], path: str, what: str, ctx: _Ctx
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(canonical options with every default, the given options as the class takes them,
    option -> unit) of a driver or workload table."""
    sig = _options_signature(target)
    known = [*reserved, *sig.params]
    canon: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    units: dict[str, str] = {}
    for k, v in d.items():
        if k in reserved:
            continue
        if k not in sig.params:
            if sig.open:
                canon[k], kwargs[k] = v, v
                continue
            raise ctx.error(f"{path}.{k}", f"unknown option of {what}; known: {', '.join(known)}")
    for name, p in sig.params.items():
        unit = _unit(name) if p.annotation is int or get_args(p.annotation).count(int) else None
        if unit:
            units[name] = unit
        if name in d:
            canon[name], kwargs[name] = _coerce(d[name], p.annotation, unit, f"{path}.{name}", ctx)
        elif p.default is inspect.Parameter.empty:
            raise ctx.error(f"{path}.{name}", f"missing: {what} requires it")
        else:
            c = _canonical(p.default)
            if c is not _OMIT:
                canon[name] = c
    return canon, kwargs, units


def _driver_specs(raw: Any, ctx: _Ctx, base: Path | None) -> tuple[DriverSpec, ...]:
    d = _table(raw, "drivers", ctx)
    specs = []
    swap_by = ""
    for name, table in d.items():
        path = f"drivers.{name}"
        if not _INSTANCE_NAME.match(name):
            raise ctx.error(path, "a driver name is letters, digits, '_' and '-' (not first)")
        t = _table(table, path, ctx)
        cls = _driver_class(t.get("type"), f"{path}.type", ctx, base)
        what = f"driver {t['type']} ({cls.__module__}.{cls.__qualname__})"
        swap = t.get("swap", False)
        if not isinstance(swap, bool):
            raise ctx.error(f"{path}.swap", f"expected true or false, got {_show(swap)}")
        if swap:
            missing = [
                f
                for f in ("swap_out", "swap_in", "swap_free", "nr_slots", "nr_free_slots")
                if not callable(getattr(cls, f, None))
            ]
            if missing:
                raise ctx.error(
                    f"{path}.swap", f"{what} is not a swap device (it has no {missing[0]}())"
                )
            if swap_by:
                raise ctx.error(
                    f"{path}.swap",
                    f"drivers.{swap_by} is the swap device already (one per machine)",
                )
            swap_by = name
        canon, kwargs, units = _options(t, cls, ("type", "swap"), path, what, ctx)
        type_ = _resolve_file_spec(t["type"].strip(), base)
        specs.append(
            DriverSpec(name, type_, cls, canon, swap, kwargs, units, f"{ctx.file}: {path}")
        )
    return tuple(specs)


def workload_registry() -> dict[str, Callable[..., Any]]:
    """The registered workloads (``fragsim.scenario.engine.WORKLOADS``, after the built-in
    ones in fragsim/workloads are imported)."""
    from fragsim.scenario import engine

    engine.import_builtin_workloads()
    return typing.cast(dict[str, Callable[..., Any]], engine.WORKLOADS)


def _workload_specs(raw: Any, ctx: _Ctx) -> tuple[WorkloadSpec, ...]:
    if not isinstance(raw, list):
        raise ctx.error(
            "workloads", f"expected an array of tables ([[workloads]]), got {_show(raw)}"
        )
    registry = workload_registry()
    specs = []
    for i, table in enumerate(raw):
        path = f"workloads[{i}]"
        t = _table(table, path, ctx)
        typ = t.get("type")
        if not isinstance(typ, str):
            raise ctx.error(
                f"{path}.type",
                "missing (a registered workload name)"
                if typ is None
                else f"expected a workload name, got {_show(typ)}",
            )
        if typ not in registry:
            known = ", ".join(sorted(registry)) or "none registered"
            raise ctx.error(f"{path}.type", f"unknown workload {typ!r}; known: {known}")
        factory = registry[typ]
        canon, kwargs, units = _options(t, factory, ("type",), path, f"workload {typ}", ctx)
        specs.append(WorkloadSpec(i, typ, factory, canon, kwargs, units, f"{ctx.file}: {path}"))
    return tuple(specs)


def load_scenario(
    source: str | Path,
    *,
    sets: Iterable[str] = (),
    seed: int | None = None,
    until: str | None = None,
) -> Scenario:
    """Load and validate a scenario: ``source`` is a file path or a built-in scenario's name;
    ``sets`` are ``key.path=value`` overrides (``drivers.gpu.movable=false``,
    ``sysctl.vm.swappiness=10``, ``scenario.duration=1d``, ``movable=off`` for every driver
    that takes it; the value is TOML, else a string); ``seed`` replaces scenario.seed;
    ``until`` (a duration) replaces scenario.duration, dropping later snapshots."""
    text, display, base, stem = _read_source(source)
    ctx = _Ctx(display)
    raw = _parse_toml(text, ctx)
    _known(raw, SECTIONS, "", "section", ctx)
    for s in sets:
        _apply_set(raw, s, ctx, base)
    if seed is not None:
        _section(raw, "scenario", dict, f"--seed {seed}", ctx)["seed"] = seed
        ctx.origins["scenario.seed"] = f"--seed {seed}"
    until_ns = None
    if until is not None:
        try:
            until_ns = parse_duration(until)
        except ValueError as e:
            raise ConfigError(f"--until {until}: {e}") from None
        if until_ns <= 0:
            raise ConfigError(f"--until {until}: must be longer than 0s")
    return Scenario(
        source=display,
        scenario=_scenario_section(raw.get("scenario", {}), stem, until_ns, ctx),
        machine=_machine_section(raw.get("machine", {}), ctx),
        sysctl=_sysctl_section(raw.get("sysctl", {}), ctx),
        drivers=_driver_specs(raw.get("drivers", {}), ctx, base),
        workloads=_workload_specs(raw.get("workloads", []), ctx),
    )


# ---------------------------------------------------------------------- the commands
def add_scenario_options(p: argparse.ArgumentParser, *, compare: bool = False) -> None:
    """--set, --seed and --until (and --compare) on a command that loads a scenario."""
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key (drivers.gpu.movable=false, sysctl.vm.swappiness=10, "
        "scenario.duration=1d, movable=off for every driver); repeatable",
    )
    p.add_argument("--seed", type=int, help="replace the scenario's seed")
    p.add_argument("--until", metavar="DURATION", help="run until this time (e.g. 3d)")
    if compare:
        p.add_argument(
            "--compare",
            metavar="KEY=V1,V2",
            help="one run per value (e.g. movable=off,on)",
        )


def scenario_from_args(args: argparse.Namespace, extra_sets: Iterable[str] = ()) -> Scenario:
    """``load_scenario`` with the options ``add_scenario_options`` added (and, for one run of
    a --compare, that run's sets after the user's)."""
    return load_scenario(
        args.scenario,
        sets=[*(args.sets or []), *extra_sets],
        seed=args.seed,
        until=args.until,
    )


def _first_line(obj: Any) -> str:
    """The first sentence of ``obj``'s docstring (its first paragraph up to ". ", at most
    100 characters)."""
    doc = (inspect.getdoc(obj) or "").strip()
    para = " ".join(doc.split("\n\n", 1)[0].split())
    end = para.find(". ")
    para = para[: end + 1] if end >= 0 else para
    return para if len(para) <= 100 else para[:97].rsplit(" ", 1)[0] + " ..."


def _profile_summary(name: str) -> str:
    from fragsim.profiles import machine_profile

    p = machine_profile(name)
    pages = sum(z.end_pfn - z.start_pfn for n in p.nodes for z in n.zones)
    pages -= sum(e - s for n in p.nodes for s, e in n.holes)
    zones = ", ".join(z.name for n in p.nodes for z in n.zones)
    mib = pages * p.page_size >> 20
    size = f"{mib >> 10} GiB" if mib % 1024 == 0 else f"{mib} MiB"
    return f"{size}, {p.nr_cpus} CPUs, zones {zones}"


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    w = max(len(n) for n, _ in rows)
    return [f"  {n:<{w}}  {d}".rstrip() for n, d in rows]


def cmd_list(args: argparse.Namespace) -> int:
    """Print the built-in scenarios, machine and kernel profiles, workloads and drivers."""
    from fragsim.drivers import DRIVERS
    from fragsim.drivers.loader import import_builtin_drivers
    from fragsim.profiles import KERNELS, PROFILES, KernelProfile

    import_builtin_drivers()
    out = ["Scenarios (fragsim show NAME):"]
    out += _rows(list(builtin_scenarios().items()))
    out += ["", "Machine profiles ([machine] profile):"]
    out += _rows(
        [(n, _profile_summary(n)) for n in PROFILES]
        + [("flat:<pages>", "one Normal zone of that many pages")]
    )
    out += ["", "Kernel profiles ([machine] kernel):"]
    out += _rows([(n, f"Linux {n}") for n in KERNELS])
    switches = [f for f in KernelProfile.__dataclass_fields__ if f != "name"]
    out.append(
        "  NAME[SWITCH=off,...]  an older rule on the named kernel (what-if); switches: "
        + ", ".join(switches)
    )
    out += ["", "Workloads ([[workloads]] type):"]
    out += _rows([(n, _first_line(w)) for n, w in sorted(workload_registry().items())])
    out += ["", "Drivers ([drivers.NAME] type):"]
    out += _rows([(n, _first_line(c)) for n, c in sorted(DRIVERS.items())])
    print("\n".join(out))
    return 0


def add_list_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fragsim list``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "list", help="list built-in scenarios, machine profiles, workloads and drivers"
    )
    p.set_defaults(func=cmd_list)
    return p


def cmd_show(args: argparse.Namespace) -> int:
    """Print the scenario fully expanded (every default filled in), as a scenario file."""
    print(scenario_from_args(args).to_toml(), end="")
    return 0


def add_show_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``fragsim show SCENARIO [--set KEY=VALUE ...] [--seed N] [--until DURATION]``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "show", help="print a scenario fully expanded (every default filled in)"
    )
    p.add_argument("scenario", metavar="SCENARIO", help="a scenario file or built-in name")
    add_scenario_options(p)
    p.set_defaults(func=cmd_show)
    return p
