"""The results database (fragsim.results): exact round trips, ids, ordering, export, atomicity
(a failed and a killed write leave nothing), locking, bad inputs, and where the file lives."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

import fragsim
from fragsim.errors import ConfigError
from fragsim.results import (
    RUN_TABLES,
    DatabaseLockedError,
    MemMapFrame,
    ResultsDB,
    RunRecord,
    Snapshot,
    add_export_parser,
    add_runs_parser,
    default_db_path,
    format_sim_time,
    interrupted_message,
)

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def make_samples(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """A realistic shape: t_ns, vmstat counters (int), free pages per zone/order/migratetype
    (int), pageblocks (int) and a few float metrics."""
    rng = np.random.default_rng(seed)
    s: dict[str, np.ndarray] = {"t_ns": np.arange(n, dtype=np.int64) * 60_000_000_000}
    for name in ("pgalloc_normal", "compact_stall", "pgmigrate_success", "nr_free_pages"):
        s[name] = np.cumsum(rng.integers(0, 1000, n)).astype(np.int64)
    for zone in ("DMA32", "Normal"):
        for order in range(11):
            for mt in ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"):
                s[f"free.{zone}.o{order}.{mt}"] = rng.integers(0, 5000, n).astype(np.int64)
        for mt in ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"):
            s[f"pageblocks.{zone}.{mt}"] = rng.integers(0, 512, n).astype(np.int64)
    s["unusable_index.Normal.o9"] = rng.random(n)
    s["extfrag_index.Normal.o9"] = np.round(rng.random(n), 3) - 0.5
    s["third"] = np.full(n, 1 / 3)
    return s


def make_frame(t_ns: int = 0) -> MemMapFrame:
    """A memory map of 1024 pages (two pageblocks): free and anonymous pages in turn."""
    return MemMapFrame(
        t_ns=t_ns,
        resolution="page",
        npages=1024,
        pageblock_order=9,
        kinds=("FREE_0", "LRU_ANON"),
        data=(np.arange(1024) % 2).astype(np.uint8),
        pageblock_mt=np.array([1, 0], np.int8),
        info={"source": "test"},
    )


def make_run(**kw: Any) -> RunRecord:
    args: dict[str, Any] = dict(
        scenario="phone-day",
        config={
            "scenario": "phone-day",
            "machine": {"profile": "x86_64-1g", "nr_cpus": 2},
            "vm": {"compaction_proactiveness": 20, "watermark_boost_factor": 15000},
            "drivers": {"gpu": {"movable": True, "duty_cycle": 0.25}},
            "workloads": [{"name": "thp-burst", "every": "10m"}],
            "seed": 7,
        },
        config_hash="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        seed=7,
        started=T0,
        finished=T0 + dt.timedelta(seconds=12.5),
        sim_ns=86_400_000_000_000 + 7_384_000_000_000,
        wall_s=12.5,
        events=123_456_789,
        summary={
            "allocations": {"order9": {"ok": 120, "failed": 3}},
            "compaction": [{"zone": "Normal", "compact_success": 5, "ratio": 0.1}],
        },
        samples=make_samples(),
        snapshots=[
            Snapshot(
                0, "start", {"buddyinfo": "Node 0, zone   Normal   1 2 3\n", "vmstat": "a 1\n"}
            ),
            Snapshot(
                3_600_000_000_000,
                "1h",
                {"buddyinfo": "Node 0, zone   Normal   4 5 6\n", "pagetypeinfo": "Page block\n"},
            ),
        ],
        memmaps=[make_frame(0), make_frame(3_600_000_000_000)],
    )
    args.update(kw)
    return RunRecord(**args)


@pytest.fixture
def db(tmp_path: Path) -> ResultsDB:
    return ResultsDB(tmp_path / "results.duckdb")


def table_counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        counts = {}
        for t in RUN_TABLES:
            row = con.execute(f"SELECT count(*) FROM {t}").fetchone()
            assert row is not None
            counts[t] = int(row[0])
        return counts


def assert_same_run(a: RunRecord, b: RunRecord) -> None:
    for f in (
        "scenario",
        "config",
        "config_hash",
        "seed",
        "version",
        "started",
        "finished",
        "status",
        "sim_ns",
        "wall_s",
        "events",
        "summary",
        "snapshots",
        "compare_group",
        "compare_label",
    ):
        assert getattr(a, f) == getattr(b, f), f
    assert [(f.t_ns, f.kinds, f.info) for f in a.memmaps] == [
        (f.t_ns, f.kinds, f.info) for f in b.memmaps
    ]
    for fa, fb in zip(a.memmaps, b.memmaps, strict=True):
        np.testing.assert_array_equal(fa.data, fb.data)
        np.testing.assert_array_equal(fa.pageblock_mt, fb.pageblock_mt)
    assert list(a.samples) == list(b.samples)
    for k in a.samples:
        assert a.samples[k].dtype == b.samples[k].dtype, k
        np.testing.assert_array_equal(a.samples[k], b.samples[k], err_msg=k)


# -- round trip, ids, ordering -----------------------------------------------------------------


def test_record_load_round_trip_is_exact(db: ResultsDB) -> None:
    run = make_run(compare_group="g1", compare_label="movable=on")
    assert len(run.samples) > 100
    rid = db.record(run)
    back = db.load(rid)
    assert_same_run(run, back)
    assert back.version == fragsim.__version__
    assert back.started.tzinfo is not None
    assert back.snapshots[1].files["pagetypeinfo"] == "Page block\n"
    frame = db.samples_frame(rid)
    assert list(frame) == list(run.samples)
    np.testing.assert_array_equal(
        frame["free.Normal.o3.Movable"], run.samples["free.Normal.o3.Movable"]
    )
    # the long form holds one row per sample and metric, queryable by name
    with duckdb.connect(str(db.path), read_only=True) as con:
        rows = con.execute(
            "SELECT t_ns, value FROM samples WHERE run_id = ? AND metric = 'compact_stall' "
            "ORDER BY t_ns",
            [rid],
        ).fetchall()
    assert [r[0] for r in rows] == run.samples["t_ns"].tolist()
    assert [r[1] for r in rows] == run.samples["compact_stall"].tolist()


def test_round_trip_of_edge_cases(db: ResultsDB) -> None:
    s = {"t_ns": np.array([0, 5, 5], np.int64), "nan": np.array([np.nan, np.inf, -0.5])}
    s["big"] = np.array([2**53, -(2**53), 0], np.int64)
    s["flag"] = np.array([True, False, True])
    run = make_run(
        samples=s,
        snapshots=[Snapshot(5, "empty", {}), Snapshot(5, "empty", {"x": ""})],
        summary={},
        config={"nested": {"list": [1, 2.5, None, "s"], "ünïcode": "✓"}},
    )
    back = db.load(db.record(run))
    assert back.snapshots == run.snapshots
    assert back.config == run.config
    assert back.samples["flag"].dtype == np.int64
    np.testing.assert_array_equal(back.samples["flag"], [1, 0, 1])
    np.testing.assert_array_equal(back.samples["nan"], s["nan"])
    np.testing.assert_array_equal(back.samples["big"], s["big"])
    np.testing.assert_array_equal(back.samples["t_ns"], [0, 5, 5])
    # no samples at all
    back = db.load(db.record(make_run(samples={}, snapshots=[])))
    assert back.samples == {} and back.snapshots == []


def test_naive_datetimes_are_local_time_and_come_back_in_utc(db: ResultsDB) -> None:
    naive = dt.datetime(2024, 1, 2, 3, 4, 5)
    back = db.load(db.record(make_run(started=naive, finished=naive)))
    assert back.started == naive.astimezone(dt.UTC)
    assert back.started.tzinfo == dt.UTC


def test_ids_prefixes_and_ambiguity(db: ResultsDB, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = db.record(make_run())
    assert len(rid) == 12 and int(rid, 16) >= 0
    assert db.load(rid[:5]).scenario == "phone-day"
    assert db.resolve(rid.upper()[:6]) == rid
    fixed = iter([uuid.UUID("abc12300" + "0" * 24), uuid.UUID("abc45600" + "0" * 24)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(fixed))
    a, b = db.record(make_run(seed=1)), db.record(make_run(seed=2))
    assert (a, b) == ("abc123000000", "abc456000000")
    assert db.load("abc1").seed == 1
    assert db.load("abc4").seed == 2
    with pytest.raises(
        ConfigError, match=r"'abc' is ambiguous: it matches abc123000000, abc456000000"
    ):
        db.load("abc")
    with pytest.raises(ConfigError, match=r"no run 'fffff'.*fragsim runs") as e:
        db.load("fffff")
    assert str(db.path) in str(e.value)
    with pytest.raises(ConfigError, match="expected a run id"):
        db.load("")


def test_latest_and_runs_ordering(db: ResultsDB) -> None:
    assert db.latest() is None
    assert db.runs() == []
    with pytest.raises(ConfigError, match="run 'latest': no runs recorded"):
        db.load("latest")
    hour = dt.timedelta(hours=1)
    ids = {}
    for name, start in (("b", T0 + hour), ("c", T0 + 2 * hour), ("a", T0)):
        ids[name] = db.record(
            make_run(
                scenario=name,
                started=start,
                finished=start + hour,
                compare_group="grp",
                compare_label=f"movable={name}",
            )
        )
    # recorded in the same second: the later recording wins
    ids["c2"] = db.record(make_run(scenario="c2", started=T0 + 2 * hour))
    runs = db.runs()
    assert [r["scenario"] for r in runs] == ["c2", "c", "b", "a"]
    assert [r["id"] for r in runs] == [ids["c2"], ids["c"], ids["b"], ids["a"]]
    assert db.latest() == ids["c2"]
    assert db.load("latest").scenario == "c2"
    assert [r["scenario"] for r in db.runs(limit=2)] == ["c2", "c"]
    r = runs[1]
    assert r["hash"] == "9f86d081" and r["seed"] == 7 and r["version"] == fragsim.__version__
    assert r["started"] == T0 + 2 * hour and r["status"] == "ok"
    assert r["sim_ns"] == 93_784_000_000_000 and r["wall_s"] == 12.5
    assert r["events"] == 123_456_789
    assert (r["compare_group"], r["compare_label"]) == ("grp", "movable=c")
    assert runs[0]["compare_group"] is None
    with pytest.raises(ConfigError, match="--limit"):
        db.runs(limit=-1)


# -- export ------------------------------------------------------------------------------------


def test_export_csv(db: ResultsDB, tmp_path: Path) -> None:
    run = make_run()
    rid = db.record(run)
    out = tmp_path / "exp"
    files = db.export(rid[:6], "csv", out)
    assert out / "samples.csv" in files and all(p.exists() for p in files)
    with open(out / "samples.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(run.samples)
    body = rows[1:]
    assert len(body) == len(run.samples["t_ns"])
    for j, name in enumerate(rows[0]):
        want = run.samples[name]
        col = [r[j] for r in body]
        if want.dtype == np.int64:
            assert [int(c) for c in col] == want.tolist(), name
        else:
            assert [float(c) for c in col] == want.tolist(), name
    assert json.loads((out / "config.json").read_text()) == run.config
    assert json.loads((out / "summary.json").read_text()) == run.summary
    meta = json.loads((out / "run.json").read_text())
    assert meta["id"] == rid and meta["seed"] == 7 and meta["config_hash"] == run.config_hash
    assert [s["label"] for s in meta["snapshots"]] == ["start", "1h"]
    for s, snap in zip(meta["snapshots"], run.snapshots, strict=True):
        assert s["t_ns"] == snap.t_ns
        for name, text in snap.files.items():
            assert (out / s["dir"] / name).read_text() == text
    assert (out / "snapshots" / "001-1h" / "buddyinfo") in files


def test_export_parquet(db: ResultsDB, tmp_path: Path) -> None:
    run = make_run()
    db.record(make_run(scenario="other"))
    rid = db.record(
        run,
    )
    files = db.export("latest", "parquet", tmp_path / "p")
    pq = tmp_path / "p" / "samples.parquet"
    assert pq in files
    with duckdb.connect(":memory:") as con:
        rel = con.execute(f"SELECT * FROM read_parquet('{pq}')")
        cols = [d[0] for d in rel.description]
        data = rel.fetchnumpy()
        types = dict(
            con.execute(
                f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{pq}')"
            ).fetchall()
        )
    assert cols == list(run.samples)
    for name, want in run.samples.items():
        np.testing.assert_array_equal(np.asarray(data[name]), want, err_msg=name)
        assert types[name] == ("BIGINT" if want.dtype == np.int64 else "DOUBLE"), name
    assert json.loads((tmp_path / "p" / "run.json").read_text())["id"] == rid


def test_export_bad_inputs(db: ResultsDB, tmp_path: Path) -> None:
    rid = db.record(make_run())
    with pytest.raises(ConfigError, match=r"--format: expected one of csv, parquet, got 'xml'"):
        db.export(rid, "xml", tmp_path / "x")
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="afile: expected a directory"):
        db.export(rid, "csv", tmp_path / "afile")
    with pytest.raises(ConfigError, match="no run 'deadbeef'"):
        db.export("deadbeef", "csv", tmp_path / "x")
    assert not (tmp_path / "x").exists()


# -- atomicity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_midway_leaves_nothing(
    db: ResultsDB, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    keep = db.record(make_run(scenario="kept"))
    before = table_counts(db.path)
    seen: dict[str, int] = {}

    def failing(self: ResultsDB, con: duckdb.DuckDBPyConnection, run_id: str, snaps: Any) -> None:
        # midway: the run's row and its samples are in the (uncommitted) transaction
        for t in ("runs", "samples", "metrics"):
            row = con.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [run_id]).fetchone()
            assert row is not None
            seen[t] = int(row[0])
        raise exc

    monkeypatch.setattr(ResultsDB, "_insert_snapshots", failing)
    with pytest.raises(type(exc)):
        db.record(make_run(scenario="doomed"))
    assert seen["runs"] == 1 and seen["samples"] > 1000 and seen["metrics"] > 100
    assert table_counts(db.path) == before
    assert [r["scenario"] for r in db.runs()] == ["kept"]
    monkeypatch.undo()
    assert_same_run(db.load(keep), make_run(scenario="kept"))
    db.record(make_run(scenario="after"))  # the file is fine for the next writer


def test_bad_records_are_refused_before_writing(db: ResultsDB) -> None:
    s = make_samples()
    s["free.Normal.o3.Movable"] = s["free.Normal.o3.Movable"][:-1]
    with pytest.raises(
        ConfigError, match=r"samples\.free\.Normal\.o3\.Movable: expected 40 values"
    ):
        db.record(make_run(samples=s))
    s = make_samples()
    s["name"] = np.array(["a"] * 40)
    with pytest.raises(ConfigError, match=r"samples\.name: expected integers or floats"):
        db.record(make_run(samples=s))
    with pytest.raises(ConfigError, match=r"samples: expected a 't_ns' array"):
        db.record(make_run(samples={"x": np.zeros(3)}))
    s = make_samples()
    s["huge"] = np.full(40, 2**60, np.int64)
    with pytest.raises(ConfigError, match=r"samples\.huge: integer values beyond 2\*\*53"):
        db.record(make_run(samples=s))
    with pytest.raises(ConfigError, match=r"RunRecord\.config: expected a JSON-able dict"):
        db.record(make_run(config={"x": object()}))
    with pytest.raises(ConfigError, match=r"RunRecord\.snapshots"):
        db.record(make_run(snapshots=[Snapshot(0, "s", {"buddyinfo": 3})]))  # type: ignore[dict-item]
    assert set(table_counts(db.path).values()) == {0}


CHILD = r"""
import os, sys, time
from pathlib import Path
from fragsim.results import ResultsDB, interrupted_message
sys.path.insert(0, sys.argv[3])
from test_results import make_run

db = ResultsDB(sys.argv[1])
print("kept", db.record(make_run(scenario="kept")), flush=True)
marker = Path(sys.argv[2])

def slow_snapshots(self, con, run_id, snaps):
    marker.write_text(run_id)          # the run's row and samples are inserted, not committed
    for _ in range(6000):
        time.sleep(0.05)               # the parent signals us here

ResultsDB._insert_snapshots = slow_snapshots
try:
    db.record(make_run(scenario="interrupted"))
except KeyboardInterrupt as e:
    print(interrupted_message(7_384_000_000_000, e), flush=True)
    sys.exit(130)
print("not interrupted", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_writer_leaves_no_trace(tmp_path: Path, sig: signal.Signals) -> None:
    path = tmp_path / "r.duckdb"
    marker = tmp_path / "midway"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    src = str(Path(fragsim.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    locked = ResultsDB(path)  # created before the child opens it
    child = subprocess.Popen(
        [sys.executable, str(script), str(path), str(marker), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 600  # generous: the child may load numba's cache
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), child.communicate()
        doomed = marker.read_text()
        # while the child holds the file, another writer waits, then gets a clear error
        with pytest.raises(DatabaseLockedError, match=r"r\.duckdb: the results database is in use"):
            ResultsDB(path, lock_timeout=0.1)
        with pytest.raises(DatabaseLockedError, match=r"\(PID \d+\); waited 0\.2 s"):
            locked.record(make_run(scenario="second writer"), lock_timeout=0.2)
        child.send_signal(sig)
        out, err = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if sig == signal.SIGINT:
        assert child.returncode == 130, err
        assert (
            "run interrupted at 02:03:04 of simulated time (KeyboardInterrupt): nothing was "
            "recorded" in out
        )
    else:
        assert child.returncode == -signal.SIGKILL
    kept = out.split()[1]
    db = ResultsDB(path)
    assert [r["id"] for r in db.runs()] == [kept]
    with duckdb.connect(str(path), read_only=True) as con:
        for t in RUN_TABLES:
            row = con.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [doomed]).fetchone()
            assert row == (0,), t
            row = con.execute(f"SELECT count(DISTINCT run_id) FROM {t}").fetchone()
            assert row == (1,), t
    assert_same_run(db.load(kept), make_run(scenario="kept"))


# -- messages, paths, CLI ----------------------------------------------------------------------


def test_interrupted_message_and_sim_time() -> None:
    ns = ((1 * 24 + 2) * 3600 + 3 * 60 + 4) * 1_000_000_000
    assert interrupted_message(ns, "KeyboardInterrupt") == (
        "run interrupted at 1d 02:03:04 of simulated time (KeyboardInterrupt): nothing was recorded"
    )
    assert interrupted_message(0, MemoryError("no more")).startswith(
        "run interrupted at 00:00:00 of simulated time (MemoryError: no more)"
    )
    assert format_sim_time(1_500_000_000) == "00:00:01.500"
    assert format_sim_time(3 * 86_400_000_000_000) == "3d 00:00:00"


def test_default_db_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FRAGSIM_DB", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_db_path() == tmp_path / "home/.local/share/fragsim/results.duckdb"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    assert default_db_path() == tmp_path / "home/.local/share/fragsim/results.duckdb"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg/fragsim/results.duckdb"
    monkeypatch.setenv("FRAGSIM_DB", str(tmp_path / "env.duckdb"))
    assert default_db_path() == tmp_path / "env.duckdb"
    assert ResultsDB().path == tmp_path / "env.duckdb"
    assert (tmp_path / "env.duckdb").exists()


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="fragsim")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_runs_parser(sub)
    add_export_parser(sub)
    args = p.parse_args(argv)
    return int(args.func(args))


def test_cli_runs_honours_env_and_db(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_db, flag_db = tmp_path / "env.duckdb", tmp_path / "flag.duckdb"
    monkeypatch.setenv("FRAGSIM_DB", str(env_db))
    a = ResultsDB(env_db).record(make_run(scenario="from-env"))
    b = ResultsDB(flag_db).record(
        make_run(scenario="from-flag", compare_group="cmp1", compare_label="movable=on")
    )
    assert cli(["runs"]) == 0
    out = capsys.readouterr().out
    assert a in out and "from-env" in out and b not in out
    assert cli(["runs", "--db", str(flag_db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["ID", "SCENARIO", "SEED", "HASH"]
    assert lines[1].split() == [
        b,
        "from-flag",
        "7",
        "9f86d081",
        fragsim.__version__,
        "2024-05-01",
        "12:00:00",
        "ok",
        "1d",
        "02:03:04",
        "12.5s",
        "123456789",
        "cmp1:movable=on",
    ]
    assert a not in "\n".join(lines)
    assert cli(["runs", "--db", str(tmp_path / "empty.duckdb")]) == 0
    assert capsys.readouterr().out == f"no runs in {tmp_path / 'empty.duckdb'}\n"
    ResultsDB(flag_db).record(make_run(scenario="second"))
    assert cli(["runs", "--db", str(flag_db), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "second" in out and "from-flag" not in out


def test_cli_export(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRAGSIM_DB", str(tmp_path / "env.duckdb"))
    dbp = tmp_path / "flag.duckdb"
    rid = ResultsDB(dbp).record(make_run())
    out = tmp_path / "out"
    assert cli(["export", rid[:4], "--db", str(dbp), "--format", "parquet", "-o", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "samples.parquet") in printed and (out / "samples.parquet").exists()
    monkeypatch.chdir(tmp_path)
    assert cli(["export", "latest", "--db", str(dbp), "--format", "csv"]) == 0
    assert (tmp_path / f"fragsim-{rid}" / "samples.csv").exists()
    with pytest.raises(ConfigError, match="no run 'zz'"):
        cli(["export", "zz", "--db", str(dbp), "--format", "csv"])
    with pytest.raises(SystemExit):
        cli(["export", rid, "--db", str(dbp), "--format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_not_a_database_and_directories(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_text("this is not a database\n" * 100)
    with pytest.raises(ConfigError, match="bad.duckdb: cannot open the results database"):
        ResultsDB(bad)
    with pytest.raises(ConfigError, match="expected a results database file, got a directory"):
        ResultsDB(tmp_path)


def test_exported_snapshot_is_a_fragsim_snapshot_directory(
    db: ResultsDB, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fragsim import Machine, vmstat
    from fragsim.cli import main

    m = Machine("flat:65536", nr_cpus=1)
    files = {"buddyinfo": vmstat.buddyinfo(m), "pagetypeinfo": vmstat.pagetypeinfo(m)}
    rid = db.record(make_run(snapshots=[Snapshot(0, "boot", files)]))
    db.export(rid, "csv", tmp_path / "e")
    assert main(["inspect", str(tmp_path / "e" / "snapshots" / "000-boot")]) == 0
    assert "pageblocks (" in capsys.readouterr().out
