"""Sweeps that really run: a small sweep on the local pool, the same on a real Dask cluster
(a scheduler and two workers started here, on 127.0.0.1) with identical results, resuming
after an interrupted sweep, and failing runs retried once and reported."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fragsim.cli import main
from fragsim.errors import ConfigError
from fragsim.results import ResultsDB
from fragsim.scenario.config import load_scenario
from fragsim.scenario.runner import run_scenario
from fragsim.sweep.execute import DaskCluster, SweepProgress
from fragsim.sweep.spec import load_sweep, plan_sweep

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SRC = Path(__file__).resolve().parents[2] / "src"
SMALL = FIX / "sweeps" / "small.toml"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}

#: what differs between two runs of one scenario and seed: the wall-clock time
TIMING = ("wall_s", "events_per_s")


def runs_by_key(db: ResultsDB) -> dict[tuple[str, int], Any]:
    """(config hash, seed) -> the recorded run (each key once, or the test fails)."""
    out: dict[tuple[str, int], Any] = {}
    for r in db.runs():
        key = (r["config_hash"], r["seed"])
        assert key not in out, f"run {key} recorded twice"
        out[key] = db.load(r["id"])
    return out


def deterministic(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in TIMING}


def assert_same_runs(a: ResultsDB, b: ResultsDB) -> None:
    ra, rb = runs_by_key(a), runs_by_key(b)
    assert set(ra) == set(rb)
    for key in ra:
        x, y = ra[key], rb[key]
        assert x.config == y.config
        assert deterministic(x.summary) == deterministic(y.summary)
        assert x.sim_ns == y.sim_ns and x.events == y.events
        assert list(x.samples) == list(y.samples)
        for name in x.samples:
            np.testing.assert_array_equal(x.samples[name], y.samples[name], err_msg=name)
        assert x.snapshots == y.snapshots


@pytest.fixture(scope="module")
def reference() -> dict[tuple[str, int], Any]:
    """small.toml's six runs made in this process, one after the other, as `fragsim run`
    makes them: (config hash, seed) -> RunResult. (This also compiles any allocator path the
    runs need once, here, rather than in every worker at the same time.)"""
    plan = plan_sweep(load_sweep(SMALL))
    return {(r.config_hash, r.seed): run_scenario(r.scenario) for r in plan.runs}


@pytest.fixture(scope="module")
def local_db(tmp_path_factory: pytest.TempPathFactory, reference: dict[Any, Any]) -> Path:
    """small.toml (2 settings x 3 seeds) on a local pool of 2 processes."""
    path = tmp_path_factory.mktemp("local") / "local.duckdb"
    assert main(["sweep", str(SMALL), "--db", str(path), "--workers", "2"]) == 0
    return path


def test_local_pool_sweep(
    local_db: Path, reference: dict[tuple[str, int], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db = ResultsDB(local_db)
    runs = runs_by_key(db)
    assert len(runs) == 6
    assert sorted({seed for _, seed in runs}) == [1, 2, 3]
    assert {r["compare_label"] for r in db.runs()} == {
        "drivers.gpu.movable=false",
        "drivers.gpu.movable=true",
    }
    assert {r["compare_group"] for r in db.runs()} == {"sweep:small"}
    # a sweep's runs are the runs `fragsim run` makes of the same scenario and seed
    assert set(runs) == set(reference)
    for key, rec in runs.items():
        res = reference[key]
        assert rec.config == res.scenario.to_dict()
        assert deterministic(rec.summary) == deterministic(res.summary)
        assert (rec.sim_ns, rec.events) == (res.sim_ns, res.events)
        assert list(rec.samples) == list(res.samples)
        for name, col in res.samples.items():
            np.testing.assert_array_equal(rec.samples[name], col, err_msg=name)
        assert [(s.t_ns, s.label, s.files) for s in rec.snapshots] == res.snapshots
    # the one setting spelled out: seed 2, gpu pages unmovable
    sc = load_scenario(
        FIX / "scenarios" / "small-android.toml",
        sets=['scenario.sample_every="1min"', "drivers.gpu.movable=false"],
        seed=2,
        until="4min",
    )
    rec = runs[(sc.config_hash(), 2)]
    assert rec.config == sc.to_dict() and rec.config["drivers"]["gpu"]["movable"] is False
    assert len(rec.samples["t_ns"]) == 5  # 0..4 min, one a minute

    # started again: everything is recorded already, nothing runs, nothing is recorded twice
    capsys.readouterr()
    assert main(["sweep", str(SMALL), "--db", str(local_db), "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "6 runs planned, 6 already recorded, 0 recorded now, 0 failed" in err
    assert len(runs_by_key(db)) == 6
    # --dry-run says the same
    assert main(["sweep", str(SMALL), "--db", str(local_db), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(", config")[0] for line in out] == [
        "drivers.gpu.movable=false: 3 runs, 3 recorded",
        "drivers.gpu.movable=true: 3 runs, 3 recorded",
    ]
    # and the report reads it
    assert main(["sweep-report", "small", "--db", str(local_db), "--no-plot"]) == 0
    report = capsys.readouterr().out
    assert "6 of 6 runs recorded" in report

    # the short form plans the same runs: all of them recorded already; it ends with the report
    args = ["run", str(FIX / "scenarios" / "small-android.toml"), "--until", "4min"]
    args += ["--set", 'scenario.sample_every="1min"', "--sweep", "drivers.gpu.movable=false,true"]
    assert main([*args, "--seeds", "1..3", "--db", str(local_db), "--sweep-name", "short"]) == 0
    out = capsys.readouterr()
    assert "sweep short done: 6 runs planned, 6 already recorded, 0 recorded now" in out.err
    assert out.out == report.replace("sweep small:", "sweep short:", 1)
    assert len(runs_by_key(db)) == 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A Dask scheduler and two single-thread workers, separate processes on 127.0.0.1,
    started in an empty directory (the workers get the scenario as text, not a path)."""
    # `python -m dask` of this interpreter: the `dask` on PATH may belong to another Python
    dask = [sys.executable, "-m", "dask"]
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    work = tmp_path / "cwd"
    work.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        with open(logs / f"{name}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [*dask, *args],
                    cwd=work,
                    env=ENV,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the nanny's worker too
                )
            )

    try:
        start(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"
        )
        for i in (1, 2):
            start(
                f"worker{i}",
                "worker",
                addr,
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--name",
                f"w{i}",
                "--local-directory",
                str(work),
            )
        from distributed import Client

        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(addr, timeout=5, set_as_default=False) as c:
                    c.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield addr
    finally:
        # workers first, then the scheduler; each process group we started, by its id
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_dask_cluster_gives_identical_results(
    local_db: Path, dask_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dask.duckdb"
    assert main(["sweep", str(SMALL), "--db", str(path), "--scheduler", dask_cluster]) == 0
    err = capsys.readouterr().err
    assert f"6 to run on Dask cluster {dask_cluster}" in err
    workers = set(re.findall(r"recorded run \w+ \(.*\) in [\d.]+ s on (\S+)", err))
    assert len(workers) == 2, err  # both workers ran some
    assert_same_runs(ResultsDB(local_db), ResultsDB(path))

    # failures on the cluster: a raising run is retried by fragsim; a worker process that
    # dies is restarted by its nanny and the scheduler runs its task again
    sweep = flaky_sweep(tmp_path)
    fpath = tmp_path / "fail.duckdb"
    assert main(["sweep", str(sweep), "--db", str(fpath), "--scheduler", dask_cluster]) == 1
    err = capsys.readouterr().err
    assert "run raises once, seed 1 failed (attempt 1 of 2): RuntimeError" in err
    assert "run always raises, seed 1 FAILED (attempt 2 of 2): RuntimeError" in err
    assert re.search(r"recorded run \w+ \(raises once, seed 1\) .* \(attempt 2\)", err)
    assert (tmp_path / "died").exists()  # a worker process did die
    labels = sorted(r["compare_label"] for r in ResultsDB(fpath).runs())
    assert labels == ["ok", "raises once", "worker dies once"]


def test_interrupted_sweep_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C (SIGINT to the client) after the first recorded run: what is recorded stays,
    nothing is half-written, and the same command finishes the rest without duplicates."""
    path = tmp_path / "r.duckdb"
    cmd = [sys.executable, "-m", "fragsim", "sweep", str(SMALL), "--db", str(path)]
    with subprocess.Popen(
        [*cmd, "--workers", "1"], env=ENV, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    ) as p:
        assert p.stderr is not None
        lines = []
        for line in p.stderr:
            lines.append(line)
            if line.startswith("recorded run"):
                p.send_signal(signal.SIGINT)
                break
        rest = p.stderr.read()
        assert p.wait(timeout=120) == 130, "".join(lines) + rest
    assert "sweep small interrupted: 6 runs planned, 0 already recorded" in rest
    assert "run the same command again to resume" in rest
    done = len(runs_by_key(ResultsDB(path)))
    assert 1 <= done < 6
    assert main(["sweep", str(SMALL), "--db", str(path), "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert f"{done} already recorded, {6 - done} recorded now, 0 failed" in err
    assert len(runs_by_key(ResultsDB(path))) == 6


def flaky_sweep(tmp_path: Path) -> Path:
    """A sweep of four runs on one worker slot: one fine, one that raises once, one that
    raises every time, one whose worker process dies once (fixtures/sweeps/drivers/flaky.py)."""
    scen = tmp_path / "flaky.toml"
    scen.write_text(
        (FIX / "scenarios" / "small-android.toml").read_text()
        + f'\n[drivers.flaky]\ntype = "{FIX / "sweeps" / "drivers" / "flaky.py"}:Flaky"\n'
    )
    sweep = tmp_path / "fail.toml"
    sweep.write_text(
        f"""
[sweep]
scenario = "flaky.toml"
seeds = [1]
until = "2min"
workers = 1

[[variants]]
label = "ok"
"drivers.flaky.mode" = "ok"
[[variants]]
label = "raises once"
"drivers.flaky.mode" = "raise-once"
"drivers.flaky.marker" = "{tmp_path / "raised"}"
[[variants]]
label = "always raises"
"drivers.flaky.mode" = "raise"
[[variants]]
label = "worker dies once"
"drivers.flaky.mode" = "exit-once"
"drivers.flaky.marker" = "{tmp_path / "died"}"
"""
    )
    return sweep


def test_failing_runs_are_retried_once_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that raises every time is reported after two attempts and the sweep goes on; a
    run that raises once, and one whose worker process dies once, are recorded on the
    retry."""
    sweep = flaky_sweep(tmp_path)
    path = tmp_path / "f.duckdb"
    assert main(["sweep", str(sweep), "--db", str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        "run raises once, seed 1 failed (attempt 1 of 2): RuntimeError: flaky driver: mode "
        "raise-once; trying again" in err
    )
    assert "run always raises, seed 1 failed (attempt 1 of 2): RuntimeError" in err
    assert (
        "run always raises, seed 1 FAILED (attempt 2 of 2): RuntimeError: flaky driver: mode "
        "raise; not recorded, the sweep goes on" in err
    )
    assert (
        "run worker dies once, seed 1 failed (attempt 1 of 2): a worker process died; "
        "trying again" in err
    )
    assert re.search(r"recorded run \w+ \(raises once, seed 1\) .* \(attempt 2\)", err)
    assert re.search(r"recorded run \w+ \(worker dies once, seed 1\) .* \(attempt 2\)", err)
    assert (
        "sweep fail done: 4 runs planned, 0 already recorded, 3 recorded now, 1 failed, "
        "3 retried" in err
    )
    assert "  failed: always raises, seed 1: RuntimeError: flaky driver: mode raise" in err
    db = ResultsDB(path)
    assert sorted(r["compare_label"] for r in db.runs()) == [
        "ok",
        "raises once",
        "worker dies once",
    ]
    # the report shows the missing run; a second sweep tries only the failed run again
    assert main(["sweep-report", str(sweep), "--db", str(path), "--no-plot"]) == 0
    assert "3 of 4 runs recorded" in capsys.readouterr().out
    assert main(["sweep", str(sweep), "--db", str(path)]) == 1
    assert "4 runs planned, 3 already recorded, 0 recorded now, 1 failed" in (
        capsys.readouterr().err
    )


def test_progress_line() -> None:
    """The bar: done / running / failed and an ETA from the rate so far."""
    import io

    s = io.StringIO()
    bar = SweepProgress("demo", 10, stream=s, force=True)
    assert bar.line() == "demo [                        ] 0/10 done  0 running  0 failed  ETA ?"
    bar.t0 = time.monotonic() - 40.0  # 4 runs in 40 s: 6 left take about 60 s
    bar.update(done=4, running=2, failed=0)
    assert re.fullmatch(
        r"demo \[#{9} {15}\] 4/10 done  2 running  0 failed  ETA (59s|1m00s)", bar.line()
    )
    bar.log("a message")
    bar.close()
    text = s.getvalue()
    assert text.startswith("\r\x1b[Kdemo [#########") and "\r\x1b[Ka message\ndemo [" in text
    assert text.endswith("\n")


def test_a_scheduler_that_is_not_there_is_a_clear_error() -> None:
    addr = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match=rf"--scheduler {addr}: cannot connect: "):
        DaskCluster(addr, timeout=2)
