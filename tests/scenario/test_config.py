"""Scenario files: units, loading, validation errors (exact messages), --set, movable=on|off,
--compare, the expanded dict and its TOML round trip, config_hash, fragsim list / show."""

from __future__ import annotations

import argparse
import io
import shutil
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, Literal

import pytest

from fragsim.errors import ConfigError
from fragsim.scenario.config import (
    add_list_parser,
    add_show_parser,
    builtin_scenarios,
    cmd_list,
    cmd_show,
    expand_compare,
    load_scenario,
    workload_registry,
)
from fragsim.scenario.units import format_duration, format_size, parse_duration, parse_size

FIXTURES = Path(__file__).parent.parent / "fixtures" / "scenarios"


class Steady:
    """Steady-state churn at a fixed rate (test workload)."""

    def __init__(
        self,
        sim: Any,
        *,
        rate: float = 1.0,
        working_set_size: int = 1 << 20,
        burst_interval: int = 10**9,
        mode: Literal["steady", "burst"] = "steady",
        orders: tuple[int, ...] = (0, 3),
    ) -> None:
        self.sim, self.rate, self.mode = sim, rate, mode


def idle(sim: Any, *, quiet: bool = True) -> Any:
    """Does nothing (test workload as a function)."""
    return None


workload_registry()["test-steady"] = Steady
workload_registry()["test-idle"] = idle


def write(tmp_path: Path, text: str, name: str = "seed.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(path: Path, sets: list[str] | None = None, **kw: Any) -> str:
    with pytest.raises(ConfigError) as ei:
        load_scenario(path, sets=sets or [], **kw)
    return str(ei.value)


# ---------------------------------------------------------------------- units
@pytest.mark.parametrize(
    ("text", "n"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("256MiB", 256 << 20),
        ("1.5GiB", 3 << 29),
        ("64K", 64 << 10),
        ("64KB", 64 << 10),
        ("2 gb", 2 << 30),
        ("1TiB", 1 << 40),
        ("10B", 10),
    ],
)
def test_parse_size(text: int | str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["12XB", "MiB", "1.3B", "-1", "", "1 2MiB"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_parse_size_rejects_non_sizes() -> None:
    for bad in (True, 1.5, -1, [1]):
        with pytest.raises(ValueError):
            parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        (7, 7),
        ("0s", 0),
        ("1d12h", 36 * 3600 * 10**9),
        ("10min", 600 * 10**9),
        ("500ms", 500 * 10**6),
        ("0.5s", 5 * 10**8),
        ("1h 30min", 5400 * 10**9),
        ("3us", 3000),
        ("12ns", 12),
    ],
)
def test_parse_duration(text: int | str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("bad", ["5m", "1d x", "", "abc", "0.5ns", "3 days", "10", "1h-2min"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_round_trips() -> None:
    assert format_duration(36 * 3600 * 10**9) == "1d12h"
    assert format_duration(1_500_000_000) == "1s500ms"
    assert format_duration(0) == "0s"
    assert format_size(256 << 20) == "256MiB"
    assert format_size(1536 << 10) == "1536KiB"
    assert format_size(100) == "100B"
    for ns in (1, 999, 10**9 + 1, 86_400 * 10**9 * 3 + 7):
        assert parse_duration(format_duration(ns)) == ns
    for n in (0, 1, 4095, 4096, 3 << 29, (1 << 40) + 4096):
        assert parse_size(format_size(n)) == n


# ---------------------------------------------------------------------- loading
def test_full_fixture_loads_expanded() -> None:
    sc = load_scenario(FIXTURES / "full.toml")
    s = sc.scenario
    assert (s.name, s.seed, s.batch) == ("full", 7, 128)
    assert s.duration_ns == 36 * 3600 * 10**9
    assert s.sample_every_ns == 600 * 10**9
    assert s.snapshots_ns == (0, 86_400 * 10**9, 36 * 3600 * 10**9)
    assert sc.machine.profile == "flat:65536"
    assert sc.machine.fields["nr_cpus"] == 4
    assert sc.machine.fields["watermark_scale_factor"] == 10  # the profile's own value
    assert sc.machine.machine_profile().nr_cpus == 4
    assert sc.sysctl == {"vm.extfrag_threshold": 400, "vm.swappiness": 100}
    gpu, zram, cache, pool = sc.drivers
    assert gpu.options == {
        "movable": True,
        "large_order": 9,
        "duty_cycle": 0.3,
        "pinned": "eagain",
        "isolate_busy": 0.0,
        "migrate_eagain": 0.0,
        "migrate_ebusy": 0.0,
        "cost": {"per_page_ns": 2000, "per_batch_ns": 0},
    }
    from fragsim.mm.migrate import MigrationCost

    assert gpu.kwargs == {"movable": True, "duty_cycle": 0.3, "cost": MigrationCost(2000, 0)}
    assert (zram.swap, zram.options["disksize"]) == (True, 256 << 20)
    assert zram.options["compression"] == [[0.5, 1024], [0.5, 2048]]
    assert zram.kwargs["compression"] == [(0.5, 1024), (0.5, 2048)]
    assert cache.options == {"gfp": cache.cls.__init__.__kwdefaults__["gfp"]}
    # a file driver is found relative to the scenario file
    assert pool.type == str(FIXTURES / "drivers" / "pool.py") + ":FixturePool"
    assert pool.options == {"pool_size": 65536, "refresh_interval": 10**9, "movable": True}
    assert pool.units == {"pool_size": "size", "refresh_interval": "duration"}
    steady, idle_ = sc.workloads
    assert steady.options == {
        "rate": 2.0,
        "working_set_size": 1 << 20,
        "burst_interval": 5 * 10**9,
        "mode": "burst",
        "orders": [0, 3],
    }
    assert (idle_.type, idle_.options) == ("test-idle", {"quiet": True})
    assert steady.create("SIM").rate == 2.0


def test_name_defaults_to_stem_and_defaults_fill_in(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, "", "bare.toml"))
    d = sc.to_dict()
    assert d["scenario"] == {
        "name": "bare",
        "description": "",
        "duration": 3600 * 10**9,
        "seed": 0,
        "sample_every": 60 * 10**9,
        "snapshots": [0, 3600 * 10**9],
        "batch": 256,
    }
    assert d["machine"]["profile"] == "x86_64-1g"
    assert (d["sysctl"], d["drivers"], d["workloads"]) == ({}, {}, [])


@pytest.mark.parametrize("source", ["full", *sorted(builtin_scenarios())])
def test_round_trip_to_toml(source: str, tmp_path: Path) -> None:
    src = FIXTURES / "full.toml" if source == "full" else source
    sc = load_scenario(src)
    if source == "full":  # the file driver resolves relative to its directory
        shutil.copytree(FIXTURES / "drivers", tmp_path / "drivers")
    again = load_scenario(write(tmp_path, sc.to_toml(), "again.toml"))
    assert again.to_dict() == sc.to_dict()
    assert again.config_hash() == sc.config_hash()
    assert again.to_toml().splitlines()[1:] == sc.to_toml().splitlines()[1:]


def test_to_toml_writes_units() -> None:
    text = load_scenario(FIXTURES / "full.toml").to_toml()
    assert 'duration = "1d12h"' in text
    assert 'snapshots = ["0s", "1d", "1d12h"]' in text
    assert 'disksize = "256MiB"' in text
    assert 'refresh_interval = "1s"' in text
    assert '"vm.swappiness" = 100' in text
    assert "cost = { per_page_ns = 2000, per_batch_ns = 0 }" in text
    assert "# min_free_kbytes: not set (the default applies)" in text


def test_builtin_by_name_and_unknown_name() -> None:
    sc = load_scenario("example-fragmenter")
    assert sc.source == "example-fragmenter.toml"
    assert sc.scenario.name == "example-fragmenter"
    with pytest.raises(ConfigError) as ei:
        load_scenario("no-such-scenario")
    assert str(ei.value).startswith(
        "unknown scenario 'no-such-scenario': no such file and no built-in scenario of that "
        "name (built-in: "
    )
    assert "example-fragmenter" in str(ei.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"^nope/x\.toml: no such scenario file$"):
        load_scenario("nope/x.toml")


# ---------------------------------------------------------------------- errors
GPU = '[drivers.gpu]\ntype = "gpu"\n'


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("[foo]\n", "foo: unknown section; known: scenario, machine, sysctl, drivers, workloads"),
        (
            '[scenario]\ndurration = "1d"\n',
            "scenario.durration: unknown key; known: name, description, duration, seed, "
            "sample_every, snapshots, batch",
        ),
        ('[scenario]\nseed = "x"\n', 'scenario.seed: expected an integer, got "x"'),
        (
            "[scenario]\nseed = -1\n",
            "scenario.seed: -1 is out of range (expected an integer [0, 9223372036854775807])",
        ),
        ("[scenario]\nbatch = 0\n", "scenario.batch: 0 is out of range (expected an integer >= 1)"),
        (
            '[scenario]\nduration = "3 days"\n',
            'scenario.duration: expected a duration such as "500ms", "10min", "3d" or "1d12h" '
            "(units ns, us, ms, s, min, h, d), got '3 days'",
        ),
        ("[scenario]\nduration = 0\n", "scenario.duration: must be longer than 0s"),
        (
            '[scenario]\nduration = "1h"\nsample_every = "2h"\n',
            "scenario.sample_every: 2h is out of range (expected more than 0s and at most the "
            "duration, 1h)",
        ),
        (
            '[scenario]\nduration = "1h"\nsnapshots = ["0s", "2h"]\n',
            "scenario.snapshots[1]: 2h is after the end of the run (1h)",
        ),
        (
            '[scenario]\nsnapshots = "end"\n',
            'scenario.snapshots: expected an array of durations or "end", got "end"',
        ),
        ("scenario = 3\n", "scenario: expected a table, got 3"),
        (
            '[machine]\nprofile = "pdp11"\n',
            "machine.profile: unknown machine profile 'pdp11'; known: x86_64-1g, x86_64-1088m, "
            "arm32-1g, arm64-4g, arm64-512m, arm64-1g, flat-1g, flat-16g",
        ),
        (
            '[machine]\nkernel = "4.19"\n',
            "machine.kernel: kernel profile '4.19' is not modelled; known: 6.1",
        ),
        (
            "[machine]\nnr_cpus = 0\n",
            "machine.nr_cpus: 0 is out of range (expected an integer [1, 4096])",
        ),
        ("[machine]\nconfig_thp = 1\n", "machine.config_thp: expected true or false, got 1"),
        (
            "[machine]\nnodes = []\n",
            "machine.nodes: unknown key; known: profile, kernel, zone_types, page_size, "
            "pageblock_order, nr_cpus, config_zone_dma32, config_cma, config_thp, "
            "min_free_kbytes, watermark_scale_factor, watermark_boost_factor, "
            "lowmem_reserve_ratio, percpu_pagelist_high_fraction, pcp_batch_scale_max",
        ),
        (
            '[machine]\nlowmem_reserve_ratio = [1, "x"]\n',
            'machine.lowmem_reserve_ratio[1]: expected an integer, got "x"',
        ),
        (
            '[sysctl]\n"vm.swappiness" = 300\n',
            "sysctl.vm.swappiness: 300 is out of range (expected an integer [0, 200])",
        ),
        (
            "[sysctl]\nvm_swappiness = 3\n",
            "sysctl.vm_swappiness: unknown sysctl; known: vm.min_free_kbytes, "
            "vm.watermark_boost_factor, vm.watermark_scale_factor, vm.extfrag_threshold, "
            "vm.compact_unevictable_allowed, vm.compaction_proactiveness, vm.swappiness, "
            "vm.vfs_cache_pressure",
        ),
        (
            '[sysctl]\n"vm.swappiness" = 3\nswappiness = 4\n',
            "sysctl.swappiness: set twice (also as sysctl.vm.swappiness)",
        ),
        (
            GPU + 'duty_cycle = "high"\n',
            'drivers.gpu.duty_cycle: expected a number, got "high"',
        ),
        (
            GPU + "duty = 0.5\n",
            "drivers.gpu.duty: unknown option of driver gpu (fragsim.drivers.gpu.GpuDriver); "
            "known: type, swap, movable, large_order, duty_cycle, pinned, isolate_busy, "
            "migrate_eagain, migrate_ebusy, cost",
        ),
        (
            GPU + "cost = { per_page = 3 }\n",
            "drivers.gpu.cost.per_page: unknown field of MigrationCost; known: per_page_ns, "
            "per_batch_ns",
        ),
        (
            GPU + "cost = 5\n",
            "drivers.gpu.cost: expected a table of MigrationCost (per_page_ns, per_batch_ns), "
            "got 5",
        ),
        (
            GPU + "swap = true\n",
            "drivers.gpu.swap: driver gpu (fragsim.drivers.gpu.GpuDriver) is not a swap device "
            "(it has no swap_out())",
        ),
        (
            '[drivers.z]\ntype = "zsmalloc"\npolicy = { isolate_busy = 2.0 }\n',
            "drivers.z.policy: ContractError: CompiledPolicy.isolate_busy: 2.0 is not a "
            "probability (0..1)",
        ),
        (
            '[drivers.z]\ntype = "zram"\ndisksize = "12XB"\n',
            'drivers.z.disksize: expected a size such as "4096", "64KiB", "256MiB" or "1GiB" '
            "(units B, KiB, MiB, GiB, TiB; K/KB, M/MB, G/GB, T/TB mean the same), got '12XB'",
        ),
        (
            '[drivers.z]\ntype = "zram"\n',
            "drivers.z.disksize: missing: driver zram (fragsim.drivers.zram.Zram) requires it",
        ),
        (
            '[drivers.z]\ntype = "zram"\ndisksize = "1MiB"\ncompression = [[0.5]]\n',
            "drivers.z.compression[0]: expected an array of 2 (a number, an integer), got [0.5]",
        ),
        (
            '[drivers.a]\ntype = "zram"\ndisksize = 4096\nswap = true\n'
            '[drivers.b]\ntype = "zram"\ndisksize = 4096\nswap = true\n',
            "drivers.b.swap: drivers.a is the swap device already (one per machine)",
        ),
        (
            '[drivers.gpu]\ntype = "warp-drive"\n',
            "drivers.gpu.type: unknown driver 'warp-drive': not registered (known: ",
        ),
        (
            "[drivers.gpu]\nmovable = true\n",
            "drivers.gpu.type: missing (a registered driver name, dotted path or file.py:Class)",
        ),
        ("[drivers]\ngpu = 3\n", "drivers.gpu: expected a table, got 3"),
        (
            '[drivers."my gpu"]\ntype = "gpu"\n',
            "drivers.my gpu: a driver name is letters, digits, '_' and '-' (not first)",
        ),
        (
            '[drivers.b]\ntype = "virtio-balloon"\nmovable = "yes"\n',
            'drivers.b.movable: expected true or false, got "yes"',
        ),
        (
            '[workloads]\ntype = "test-steady"\n',
            'workloads: expected an array of tables ([[workloads]]), got { type = "test-steady" }',
        ),
        ("[[workloads]]\nrate = 1\n", "workloads[0].type: missing (a registered workload name)"),
        (
            '[[workloads]]\ntype = "test-idle"\n[[workloads]]\ntype = "fortnite"\n',
            "workloads[1].type: unknown workload 'fortnite'; known: ",
        ),
        (
            '[[workloads]]\ntype = "test-steady"\nmode = "chaos"\n',
            'workloads[0].mode: expected one of "steady", "burst", got "chaos"',
        ),
        (
            '[[workloads]]\ntype = "test-steady"\nspeed = 1\n',
            "workloads[0].speed: unknown option of workload test-steady; known: type, rate, "
            "working_set_size, burst_interval, mode, orders",
        ),
        (
            '[[workloads]]\ntype = "test-steady"\nworking_set_size = true\n',
            'workloads[0].working_set_size: expected a size (bytes, or a string such as "256MiB"), '
            "got true",
        ),
        (
            '[[workloads]]\ntype = "test-steady"\norders = [0, 1.5]\n',
            "workloads[0].orders[1]: expected an integer, got 1.5",
        ),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, msg: str) -> None:
    path = write(tmp_path, text)
    got = error_of(path)
    if msg.endswith("known: "):  # the registries hold other tests' plugins too
        assert got.startswith(f"{path}: {msg}")
        known = got[len(f"{path}: {msg}") :]
        if "driver" in msg:
            builtin = "gpu pagecache process slab virtio-balloon zram zsmalloc".split()
            assert all(d in known for d in builtin)
            assert known.endswith(") and no entry point of group 'fragsim.drivers'")
        else:
            assert "test-idle" in known
    else:
        assert got == f"{path}: {msg}"


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[scenario\n")
    assert error_of(path).startswith(f"{path}: invalid TOML: ")


def test_duplicate_driver_names(tmp_path: Path) -> None:
    path = write(tmp_path, GPU + "movable = true\n\n" + GPU)
    assert error_of(path) == (
        f"{path}: line 5: drivers.gpu: a driver named 'gpu' is already declared at line 1; "
        "each driver needs its own name"
    )


def test_driver_constructor_errors_name_the_key() -> None:
    sc = load_scenario(FIXTURES / "full.toml", sets=["drivers.pool.pool_size=0"])
    with pytest.raises(ConfigError) as ei:
        sc.drivers[3].create(None)
    assert str(ei.value) == (
        f"{FIXTURES / 'full.toml'}: drivers.pool: pool: pool_size 0 must be positive"
    )


def test_open_options_pass_through(tmp_path: Path) -> None:
    """The balloon takes **options: its base class's parameters are checked, others pass."""
    sc = load_scenario(
        write(tmp_path, '[drivers.b]\ntype = "virtio-balloon"\ndeflate_on_oom = true\n')
    )
    (b,) = sc.drivers
    assert b.options == {"deflate_on_oom": True, "movable": True, "cost": None, "policy": None}
    assert b.kwargs == {"deflate_on_oom": True}


# ---------------------------------------------------------------------- --set, --seed, --until
def test_sets_override(tmp_path: Path) -> None:
    sc = load_scenario(
        FIXTURES / "full.toml",
        sets=[
            "drivers.gpu.movable=false",
            "drivers.gpu.cost.per_batch_ns=5us",
            "sysctl.vm.swappiness=10",
            "sysctl.compaction_proactiveness=0",
            "scenario.duration=2d",
            "scenario.description=a what-if",
            "machine.config_thp=false",
            "workloads.0.rate=3.5",
            "workloads.test-idle.quiet=false",
        ],
    )
    gpu = sc.drivers[0]
    assert gpu.options["movable"] is False
    assert gpu.options["cost"] == {"per_page_ns": 2000, "per_batch_ns": 5000}
    assert sc.sysctl == {
        "vm.compaction_proactiveness": 0,
        "vm.extfrag_threshold": 400,
        "vm.swappiness": 10,
    }
    assert sc.scenario.duration_ns == 2 * 86_400 * 10**9
    assert sc.scenario.description == "a what-if"
    assert sc.machine.fields["config_thp"] is False
    assert sc.workloads[0].options["rate"] == 3.5
    assert sc.workloads[1].options["quiet"] is False


def test_seed_and_until(tmp_path: Path) -> None:
    sc = load_scenario(FIXTURES / "full.toml", seed=99, until="1d")
    assert sc.scenario.seed == 99
    assert sc.scenario.duration_ns == 86_400 * 10**9
    # "end" is the new end; 1d is kept, and a later snapshot would be dropped
    assert sc.scenario.snapshots_ns == (0, 86_400 * 10**9)
    short = load_scenario(FIXTURES / "full.toml", until="12h")
    assert short.scenario.snapshots_ns == (0, 12 * 3600 * 10**9)


@pytest.mark.parametrize(
    ("sets", "msg"),
    [
        (
            ["drivers.gpu.movable"],
            "--set 'drivers.gpu.movable': expected KEY=VALUE (e.g. drivers.gpu.movable=false)",
        ),
        (
            ["gpu.movable=false"],
            "--set gpu.movable=false: unknown section 'gpu'; known: "
            "scenario, machine, sysctl, drivers, workloads (or movable=on|off for every driver)",
        ),
        (["drivers=1"], "--set drivers=1: name a key inside [drivers] (drivers.KEY=VALUE)"),
        (
            ["drivers.vpu.movable=false"],
            "--set drivers.vpu.movable=false: no driver 'vpu' in "
            "{file} (drivers: gpu, zram, cache, pool)",
        ),
        (["drivers.gpu=3"], "--set drivers.gpu=3: expected drivers.gpu.OPTION=VALUE"),
        (
            ["drivers.gpu.duty_cycle.x=3"],
            "--set drivers.gpu.duty_cycle.x=3: duty_cycle is 0.3, not a table",
        ),
        (
            ["scenario.x.y=1"],
            "--set scenario.x.y=1: [scenario] has no sub-tables; expected scenario.KEY",
        ),
        (["workloads.5.rate=1"], "--set workloads.5.rate=1: {file} has 2 workloads (0..1)"),
        (
            ["workloads.nope.rate=1"],
            "--set workloads.nope.rate=1: 0 workloads of type 'nope' "
            "in {file}; name one by index (workloads.0.KEY)",
        ),
        (["movable=maybe"], "--set movable=maybe: expected movable=on, off, true or false"),
    ],
)
def test_bad_sets(sets: list[str], msg: str) -> None:
    path = FIXTURES / "full.toml"
    assert error_of(path, sets) == msg.format(file=path)


def test_set_value_errors_say_where_the_value_came_from() -> None:
    path = FIXTURES / "full.toml"
    assert error_of(path, ["drivers.gpu.duty_cycle=high"]) == (
        f'{path}: drivers.gpu.duty_cycle: expected a number, got "high" '
        "(from --set drivers.gpu.duty_cycle=high)"
    )
    assert error_of(path, ["scenario.colour=red"]) == (
        f"{path}: scenario.colour: unknown key; known: name, description, duration, seed, "
        "sample_every, snapshots, batch (from --set scenario.colour=red)"
    )
    assert error_of(path, seed=-3) == (
        f"{path}: scenario.seed: -3 is out of range (expected an integer "
        "[0, 9223372036854775807]) (from --seed -3)"
    )
    with pytest.raises(ConfigError, match=r"^--until soon: expected a duration"):
        load_scenario(path, until="soon")


@pytest.mark.parametrize(
    ("word", "flag"), [("on", True), ("off", False), ("true", True), ("false", False)]
)
def test_movable_switches_every_driver_that_takes_it(word: str, flag: bool) -> None:
    sc = load_scenario(FIXTURES / "full.toml", sets=[f"movable={word}"])
    got = {d.name: d.options.get("movable") for d in sc.drivers}
    # pagecache takes no movable argument: untouched
    assert got == {"gpu": flag, "zram": flag, "cache": None, "pool": flag}
    assert all(d.kwargs["movable"] is flag for d in sc.drivers if d.name != "cache")


def test_movable_without_movable_drivers(tmp_path: Path) -> None:
    path = write(tmp_path, '[drivers.cache]\ntype = "pagecache"\n')
    assert error_of(path, ["movable=off"]) == (
        f"--set movable=off: no driver in {path} takes a movable setting (drivers: cache)"
    )


# ---------------------------------------------------------------------- --compare
def test_expand_compare() -> None:
    assert expand_compare("movable=off,on") == [["movable=off"], ["movable=on"]]
    assert expand_compare("drivers.gpu.duty_cycle=0.1, 0.5,0.9") == [
        ["drivers.gpu.duty_cycle=0.1"],
        ["drivers.gpu.duty_cycle=0.5"],
        ["drivers.gpu.duty_cycle=0.9"],
    ]
    assert expand_compare('w.orders=[0,1],[3],"a,b"') == [
        ["w.orders=[0,1]"],
        ["w.orders=[3]"],
        ['w.orders="a,b"'],
    ]


@pytest.mark.parametrize(
    ("spec", "msg"),
    [
        ("movable", "--compare 'movable': expected KEY=V1,V2,... (e.g. movable=off,on)"),
        ("=on,off", "--compare '=on,off': expected KEY=V1,V2,... (e.g. movable=off,on)"),
        ("movable=off,,on", "--compare 'movable=off,,on': an empty value (expected KEY=V1,V2,...)"),
        ("movable=on,on", "--compare 'movable=on,on': value 'on' appears twice"),
    ],
)
def test_expand_compare_errors(spec: str, msg: str) -> None:
    with pytest.raises(ConfigError) as ei:
        expand_compare(spec)
    assert str(ei.value) == msg


def test_compare_runs_differ_only_in_movable() -> None:
    runs = [load_scenario(FIXTURES / "full.toml", sets=s) for s in expand_compare("movable=off,on")]
    a, b = (r.to_dict() for r in runs)
    assert a["drivers"]["gpu"]["movable"] is False and b["drivers"]["gpu"]["movable"] is True
    for d in (a, b):
        for name in ("gpu", "zram", "pool"):
            d["drivers"][name].pop("movable")
    assert a == b


# ---------------------------------------------------------------------- config_hash
def test_config_hash() -> None:
    path = FIXTURES / "full.toml"
    base = load_scenario(path)
    h = base.config_hash()
    assert len(h) == 64 and int(h, 16) >= 0
    assert load_scenario(path, seed=12345).config_hash() == h
    assert load_scenario(path, sets=["scenario.seed=3"]).config_hash() == h
    assert load_scenario(path, sets=["drivers.gpu.duty_cycle=0.31"]).config_hash() != h
    assert load_scenario(path, sets=["movable=off"]).config_hash() != h
    assert load_scenario(path, until="1d").config_hash() != h
    # writing a default out explicitly is the same configuration
    assert load_scenario(path, sets=["drivers.gpu.pinned=eagain"]).config_hash() == h
    assert load_scenario(path, sets=["machine.watermark_scale_factor=10"]).config_hash() == h


# ---------------------------------------------------------------------- list and show
def run_cmd(func: Any, **kw: Any) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = func(argparse.Namespace(**kw))
    return rc, buf.getvalue()


def test_cmd_list() -> None:
    rc, out = run_cmd(cmd_list)
    assert rc == 0
    lines = out.splitlines()
    heads = [ln for ln in lines if not ln.startswith(" ") and ln]
    assert heads == [
        "Scenarios (fragsim show NAME):",
        "Machine profiles ([machine] profile):",
        "Kernel profiles ([machine] kernel):",
        "Workloads ([[workloads]] type):",
        "Drivers ([drivers.NAME] type):",
    ]
    row = [ln.split() for ln in lines]
    assert [
        "example-fragmenter",
        *"256 MiB flat machine: a GPU driver and zram swap, movable pages on".split(),
    ] in row
    assert ["x86_64-1g", "1023", "MiB,", "2", "CPUs,", "zones", "DMA,", "DMA32"] in row
    assert ["flat-16g", "16", "GiB,", "2", "CPUs,", "zones", "Normal"] in row
    assert ["6.1", "Linux", "6.1"] in row
    assert ["test-steady", *"Steady-state churn at a fixed rate (test workload).".split()] in row
    assert ["test-idle", *"Does nothing (test workload as a function).".split()] in row
    gpu = [r for r in row if r and r[0] == "gpu"]
    assert len(gpu) == 1 and len(gpu[0]) > 1


def test_cmd_show() -> None:
    path = str(FIXTURES / "full.toml")
    rc, out = run_cmd(
        cmd_show, scenario=path, sets=["drivers.gpu.movable=false"], seed=5, until=None
    )
    sc = load_scenario(path, sets=["drivers.gpu.movable=false"], seed=5)
    assert rc == 0
    assert out == sc.to_toml()
    assert out.splitlines()[:2] == [
        f"# fragsim show: {path}, fully expanded",
        f"# config hash {sc.config_hash()}",
    ]
    gpu = out.split("[drivers.gpu]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert gpu[:3] == ['type = "gpu"', "swap = false", "movable = false"]
    assert "seed = 5" in out.splitlines()


def test_parsers_wire_the_commands() -> None:
    p = argparse.ArgumentParser(prog="fragsim")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_list_parser(sub)
    add_show_parser(sub)
    a = p.parse_args(
        ["show", "x", "--set", "a.b=1", "--set", "movable=off", "--seed", "3", "--until", "1d"]
    )
    assert (a.func, a.scenario, a.sets, a.seed, a.until) == (
        cmd_show,
        "x",
        ["a.b=1", "movable=off"],
        3,
        "1d",
    )
    assert p.parse_args(["list"]).func is cmd_list


def test_specs_build_the_real_drivers() -> None:
    """The options as passed (MigrationCost objects, tuples) are what the classes take."""
    from fragsim.drivers.gpu import GpuDriver
    from fragsim.drivers.zram import Zram
    from fragsim.mm.machine import Machine

    sc = load_scenario(FIXTURES / "full.toml", sets=["movable=off"])
    m = Machine(sc.machine.machine_profile(), seed=sc.scenario.seed)
    assert m.nr_cpus == 4
    gpu, zram, cache, pool = (d.create(m) for d in sc.drivers)
    assert isinstance(gpu, GpuDriver) and isinstance(zram, Zram)
    assert (gpu.movable, gpu.duty_cycle, gpu.cost.per_page_ns) == (False, 0.3, 2000)
    assert (zram.disksize, zram.mem_pool.movable) == (256 << 20, False)
    assert (pool.pool_size, pool.movable) == (65536, False)
    for name, value in sc.sysctl.items():
        assert m.sysctl(name, value) == value
