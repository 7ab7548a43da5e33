"""Sweep files and --sweep/--seeds: expansion into settings x seeds, and precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fragsim.cli import main
from fragsim.errors import ConfigError
from fragsim.scenario.config import load_scenario
from fragsim.sweep.spec import load_sweep, parse_seeds, plan_sweep, sweep_from_args

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SCEN = FIX / "scenarios" / "small-android.toml"


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("spec", "seeds"),
    [
        ("0..3", (0, 1, 2, 3)),
        ("7", (7,)),
        ("1,4, 9", (1, 4, 9)),
        ("0..2,10", (0, 1, 2, 10)),
        ("5..5", (5,)),
        ([3, 1], (3, 1)),
        (4, (4,)),
    ],
)
def test_parse_seeds(spec: object, seeds: tuple[int, ...]) -> None:
    assert parse_seeds(spec, "--seeds") == seeds


@pytest.mark.parametrize(
    ("spec", "msg"),
    [
        ("3..1", "--seeds: range '3..1' ends before it starts"),
        ("0..2,1", "--seeds: seed 1 appears twice"),
        ("a..b", "--seeds: 'a..b' is not a seed or a range"),
        ("", "--seeds: '' is not a seed or a range"),
        ([], "--seeds: no seeds"),
        ([1, "2"], '--seeds[1]: expected an integer seed, got "2"'),
        (True, "--seeds: expected seeds"),
        (-1, "--seeds: seed -1 is out of range"),
    ],
)
def test_parse_seeds_errors(spec: object, msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_seeds(spec, "--seeds")
    assert str(e.value).startswith(msg)


def test_grid_and_variants_expand_in_order() -> None:
    """variants x grid (first key slowest), seeds outermost; labels and --set strings."""
    plan = plan_sweep(load_sweep(FIX / "sweeps" / "grid.toml"))
    spec = plan.spec
    assert spec.name == "grid-test"
    assert spec.scenario == str(SCEN)  # relative to the sweep file, made absolute
    assert spec.seeds == (5, 7) and spec.retries == 2
    assert [s.label for s in plan.settings[:3]] == [
        "gpu movable,sysctl.vm.extfrag_threshold=300,sysctl.vm.compaction_proactiveness=0",
        "gpu movable,sysctl.vm.extfrag_threshold=300,sysctl.vm.compaction_proactiveness=20",
        "gpu movable,sysctl.vm.extfrag_threshold=300,sysctl.vm.compaction_proactiveness=40",
    ]
    assert len(plan.settings) == 2 * 2 * 3
    last = plan.settings[-1]
    assert last.label == (
        "drivers.gpu.movable=false,drivers.gpu.duty_cycle=0.5,"
        "sysctl.vm.extfrag_threshold=700,sysctl.vm.compaction_proactiveness=40"
    )
    assert last.sets == (
        "drivers.gpu.movable=false",
        "drivers.gpu.duty_cycle=0.5",
        "sysctl.vm.extfrag_threshold=700",
        "sysctl.vm.compaction_proactiveness=40",
    )
    assert [(r.setting.index, r.seed) for r in plan.runs] == [
        (i, s) for s in (5, 7) for i in range(12)
    ]
    assert plan.keys == (
        "drivers.gpu.movable",
        "sysctl.vm.extfrag_threshold",
        "sysctl.vm.compaction_proactiveness",
        "drivers.gpu.duty_cycle",
    )
    # each run is the scenario loaded with the sweep's sets, the setting's sets and its seed
    r = plan.runs[12 + 11]
    ref = load_scenario(SCEN, sets=["sysctl.vm.swappiness=60", *last.sets], seed=7, until="2min")
    assert r.scenario.to_dict() == ref.to_dict()
    assert r.config_hash == ref.config_hash()
    d = r.scenario.to_dict()
    assert d["sysctl"] == {
        "vm.compaction_proactiveness": 40,
        "vm.extfrag_threshold": 700,
        "vm.swappiness": 60,
    }
    assert d["drivers"]["gpu"]["duty_cycle"] == 0.5 and d["scenario"]["duration"] == 120 * 10**9
    # the seed is not part of the config hash: one hash per setting
    assert len({r.config_hash for r in plan.runs}) == 12


def test_sweep_from_run_args_matches_the_equivalent_file(tmp_path: Path) -> None:
    spec = sweep_from_args(
        str(SCEN),
        ["drivers.gpu.movable=false,true", "scenario.batch=64,128"],
        "0..2",
        sets=["sysctl.vm.swappiness=60"],
        until="2min",
    )
    f = write(
        tmp_path,
        f"""
[sweep]
scenario = "{SCEN}"
seeds = "0..2"
until = "2min"
set = ["sysctl.vm.swappiness=60"]
[grid]
"drivers.gpu.movable" = [false, true]
"scenario.batch" = [64, 128]
""",
    )
    a, b = plan_sweep(spec), plan_sweep(load_sweep(f))
    assert [(r.setting.label, r.seed, r.config_hash) for r in a.runs] == [
        (r.setting.label, r.seed, r.config_hash) for r in b.runs
    ]
    assert len(a.runs) == 12
    # the default name is stable (a rerun resumes the same sweep) and depends on the options
    again = sweep_from_args(
        str(SCEN),
        ["drivers.gpu.movable=false,true", "scenario.batch=64,128"],
        "0..2",
        sets=["sysctl.vm.swappiness=60"],
        until="2min",
    )
    assert again.name == spec.name and spec.name.startswith("small-android-")
    other = sweep_from_args(str(SCEN), ["drivers.gpu.movable=false,true"], "0..2")
    assert other.name != spec.name
    # without --seeds: the scenario's own seed (1 in small-android), or --seed
    assert sweep_from_args(str(SCEN), ["scenario.batch=64,128"], None).seeds == (1,)
    assert sweep_from_args(str(SCEN), ["scenario.batch=64,128"], None, seed=9).seeds == (9,)


def test_string_values_stay_strings(tmp_path: Path) -> None:
    """A string that reads as TOML (\"true\") is passed quoted, so it stays a string."""
    f = write(
        tmp_path,
        f"""
[sweep]
scenario = "{SCEN}"
[grid]
"scenario.description" = ["true", "a b"]
""",
    )
    plan = plan_sweep(load_sweep(f))
    assert [r.scenario.scenario.description for r in plan.runs] == ["true", "a b"]
    assert plan.settings[0].sets == ('scenario.description="true"',)


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ("[sweep]\nscenario = 'x'\n[other]\n", "s.toml: other: unknown section; known: sweep"),
        ("[grid]\n", "s.toml: sweep: missing [sweep] table"),
        ("[sweep]\nseeds = '0..1'\n", "s.toml: sweep.scenario: missing"),
        ("[sweep]\nscenario = 'x'\nseed = 1\n", "s.toml: sweep.seed: unknown key; known: name"),
        ("[sweep]\nscenario = 'x'\nseeds = '2..1'\n", "s.toml: sweep.seeds: range '2..1'"),
        ("[sweep]\nscenario = 'x'\nretries = 9\n", "s.toml: sweep.retries: expected an integer"),
        ("[sweep]\nscenario = 'x'\nuntil = 60\n", "s.toml: sweep.until: expected a duration such"),
        ("[sweep]\nscenario = 'x'\nworkers = 0\n", "s.toml: sweep.workers: expected an integer"),
        ("[sweep]\nscenario = 'x'\nscheduler = 'h:1'\n", "s.toml: sweep.scheduler: expected an"),
        ("[sweep]\nscenario = 'x'\nset = ['a']\n", "s.toml: sweep.set[0]: expected KEY=VALUE"),
        ("[sweep]\nscenario = 'x'\nname = 'a b'\n", "s.toml: sweep.name: expected a name"),
        (
            "[sweep]\nscenario = 'x'\n[grid]\n'sysctl.vm.swappiness' = 60\n",
            's.toml: grid."sysctl.vm.swappiness": expected a non-empty array of values, got 60',
        ),
        (
            "[sweep]\nscenario = 'x'\n[grid]\nsysctl.vm.swappiness = [1, 2, 1]\n",
            's.toml: grid."sysctl.vm.swappiness"[2]: value 1 appears twice',
        ),
        (
            "[sweep]\nscenario = 'x'\n[grid]\na = [1]\n[[variants]]\na = 2\n",
            's.toml: variants[0]."a": is also a grid key',
        ),
        (
            "[sweep]\nscenario = 'x'\n[[variants]]\nlabel = 'v'\n",
            "s.toml: variants[0]: sets nothing",
        ),
        (
            "[sweep]\nscenario = 'x'\n[[variants]]\nlabel='v'\na=1\n[[variants]]\nlabel='v'\nb=2\n",
            "s.toml: variants[1].label: 'v' is the label of another variant",
        ),
        ("[sweep\n", "s.toml: invalid TOML"),
    ],
)
def test_bad_sweep_files(tmp_path: Path, body: str, msg: str) -> None:
    f = write(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_sweep(f)
    assert str(e.value).startswith(str(f.parent) + "/" + msg), str(e.value)


def test_bad_settings_name_the_setting_and_key(tmp_path: Path) -> None:
    """Every setting is loaded before anything runs; the error names the sweep file, the
    setting and the scenario's own message."""
    f = write(
        tmp_path,
        f"""
[sweep]
scenario = "{SCEN}"
[grid]
"sysctl.vm.swappiness" = [60, 500]
""",
    )
    with pytest.raises(ConfigError) as e:
        plan_sweep(load_sweep(f))
    assert str(e.value) == (
        f"{f}: setting 'sysctl.vm.swappiness=500': {SCEN}: sysctl.vm.swappiness: 500 is out of "
        "range (expected an integer [0, 200]) (from --set sysctl.vm.swappiness=500)"
    )
    g = write(tmp_path, f"[sweep]\nscenario = '{SCEN}'\n[grid]\n'drivers.nope.x' = [1]\n", "g.toml")
    with pytest.raises(ConfigError, match=r"g.toml: setting 'drivers.nope.x=1': --set "):
        plan_sweep(load_sweep(g))
    missing = write(tmp_path, "[sweep]\nscenario = 'nope.toml'\n", "m.toml")
    with pytest.raises(ConfigError, match="no such scenario file"):
        plan_sweep(load_sweep(missing))


def test_two_settings_with_one_configuration_are_an_error(tmp_path: Path) -> None:
    """small-android sets swappiness 100 already: the two settings would be one."""
    f = write(
        tmp_path,
        f"""
[sweep]
scenario = "{SCEN}"
[[variants]]
label = "as is"
"scenario.batch" = 256
[[variants]]
label = "default batch"
"scenario.description" = "64 MiB test device"
""",
    )
    with pytest.raises(
        ConfigError,
        match="setting 'default batch': gives the same configuration as setting 'as is'",
    ):
        plan_sweep(load_sweep(f))


def test_run_options_errors() -> None:
    with pytest.raises(ConfigError, match="--sweep 'x': expected KEY=V1,V2"):
        sweep_from_args(str(SCEN), ["x"], "0")
    with pytest.raises(ConfigError, match="scenario.batch is swept twice"):
        sweep_from_args(str(SCEN), ["scenario.batch=1,2", "scenario.batch=3"], "0")
    with pytest.raises(ConfigError, match=r"--seeds 0\.\.x: '0\.\.x' is not a seed"):
        sweep_from_args(str(SCEN), ["scenario.batch=1,2"], "0..x")


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        (
            ["--compare", "movable=off,on"],
            "--compare and --sweep/--seeds: use --sweep KEY=V1,V2 for both",
        ),
        (["--no-record"], "--sweep/--seeds record every run (resuming needs them): no --no-record"),
        (["--seed", "3"], "--seed 3 and --seeds 0..1: give one of them"),
        (["--workers", "0"], "--workers 0: expected at least 1"),
    ],
)
def test_run_sweep_option_conflicts(
    extra: list[str], msg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", str(SCEN), "--sweep", "scenario.batch=64,128", "--seeds", "0..1"]
    assert main([*args, "--db", str(tmp_path / "x.duckdb"), *extra]) == 2
    assert capsys.readouterr().err == f"fragsim: error: {msg}\n"
    assert not (tmp_path / "x.duckdb").exists()


def test_the_documented_example_is_a_valid_sweep(tmp_path: Path) -> None:
    """The sweep file in fragsim.sweep.spec's docstring loads and expands as it says."""
    import fragsim.sweep.spec as spec_module

    doc = spec_module.__doc__ or ""
    block = doc.split("A sweep file is TOML::\n\n", 1)[1].split("\n\nKeys are", 1)[0]
    text = "\n".join(line[4:] for line in block.splitlines())
    plan = plan_sweep(load_sweep(write(tmp_path, text, "doc.toml")))
    assert plan.spec.name == "gpu-movable" and plan.spec.seeds == tuple(range(20))
    assert len(plan.settings) == 2 * 3 * 2 and len(plan.runs) == 12 * 20
    assert plan.settings[0].label == (
        "512 MiB,sysctl.vm.extfrag_threshold=300,sysctl.vm.compaction_proactiveness=0"
    )
    d = plan.runs[-1].scenario.to_dict()
    assert d["machine"]["profile"] == "arm64-1g" and d["drivers"]["gpu"]["large_order"] == 0
    assert d["sysctl"]["vm.swappiness"] == 100 and d["scenario"]["duration"] == 3 * 3600 * 10**9
