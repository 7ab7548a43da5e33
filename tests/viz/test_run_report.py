"""``fragsim report`` and ``fragsim run --report`` (fragsim.viz.runreport): the HTML of recorded
runs checked as a file (tables hold the recorded numbers, the plots and memory maps are embedded,
one slider frame per stored map); test_viz_browser.py opens it in Chromium."""

from __future__ import annotations

import base64
import html as htmlmod
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from fragsim.cli import main
from fragsim.errors import ConfigError
from fragsim.results import ResultsDB
from fragsim.viz import runreport
from fragsim.viz.runreport import labelled, load_runs, run_report

SMALL = Path(__file__).resolve().parent.parent / "fixtures" / "scenarios" / "small-android.toml"
COMPARE = "drivers.gpu.movable=false,true"


def sliders(text: str) -> list[list[dict[str, str]]]:
    return [
        json.loads(m)
        for m in re.findall(r'<script type="application/json">(.*?)</script>', text, re.S)
    ]


def tables(text: str) -> dict[str, list[list[str]]]:
    """Each captioned table: its rows (header first) as cell texts."""
    out = {}
    for cap, body in re.findall(r"<table><caption>(.*?)</caption>(.*?)</table>", text, re.S):
        rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
        out[htmlmod.unescape(cap)] = [
            [htmlmod.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
            for r in rows
        ]
    return out


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A --compare pair of tiny runs recorded in a fresh database, with run's own report."""
    d = tmp_path_factory.mktemp("report")
    db, out = d / "r.duckdb", d / "run-report.html"
    argv = ["run", str(SMALL), "--compare", COMPARE, "--db", str(db), "--report", str(out)]
    assert main(argv) == 0
    ids = [r["id"] for r in ResultsDB(db).runs()][::-1]  # oldest first: movable=false, true
    return {"db": db, "html": out, "ids": ids, "dir": d}


def test_run_report_of_a_compare_pair(compared: dict[str, Any]) -> None:
    text = compared["html"].read_text()
    db = ResultsDB(compared["db"])
    off, on = (db.load(i) for i in compared["ids"])
    assert off.compare_label == "drivers.gpu.movable=false"
    assert text.startswith("<!DOCTYPE html>") and "<link" not in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    t = tables(text)
    # the configuration keys that differ: the compared one, and nothing else
    differ = t["Configuration keys that differ"]
    assert differ == [
        ["configuration key", "drivers.gpu.movable=false", "drivers.gpu.movable=true"],
        ["drivers.gpu.movable", "false", "true"],
    ]
    # the summary tables hold the recorded numbers, with last - first
    comp = {r[0]: r[1:] for r in t["Compaction and migration"]}
    for k in ("compact_stall", "pgmigrate_success", "compact_daemon_wake"):
        a, b = off.summary["compaction"][k], on.summary["compaction"][k]
        assert comp[k] == [str(a), str(b), f"{b - a:+d}"], k
    free = {r[0]: r[1:] for r in t["Free memory at the end (all zones)"]}
    assert free["order 3 free blocks"][:2] == [
        str(off.summary["free_blocks"][3]),
        str(on.summary["free_blocks"][3]),
    ]
    assert "Metrics sampled every 2min of simulated time." in text
    assert "What changed (drivers.gpu.movable=true against drivers.gpu.movable=false):" in text
    # seven plots, the end maps side by side, start/end and a slider per run
    assert text.count("<h2>") == 7
    heads = re.findall(r"<h2>(.*?)</h2>", text)
    assert heads[:4] == [
        "Runs",
        "Summary",
        "Over simulated time",
        "Memory maps at the end, side by side",
    ]
    assert heads[-1] == "Configuration"
    s = sliders(text)
    assert [len(x) for x in s] == [len(off.memmaps), len(on.memmaps)] == [11, 11]
    assert s[0][0]["caption"] == "00:00:00 (map 1 of 11)"
    assert s[0][-1]["caption"] == "00:20:00 (map 11 of 11)"
    assert len({f["src"] for f in s[0]}) > 5  # the map changes through the run
    images = re.findall(r'<img[^>]* src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 7 + 2 + 2 * 2 + 2  # plots, end maps, start/end per run, sliders
    for b64 in images:
        assert base64.b64decode(b64).startswith(b"\x89PNG")


def test_report_latest_cli(compared: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out = compared["dir"] / "latest.html"
    assert main(["report", "latest", "--db", str(compared["db"]), "-o", str(out)]) == 0
    assert f"fragsim report: wrote {out}" in capsys.readouterr().err
    text = out.read_text()
    rid = compared["ids"][-1]
    assert f"<title>fragsim report: small-android ({rid})</title>" in text
    t = tables(text)
    assert "Configuration keys that differ" not in t
    rec = ResultsDB(compared["db"]).load(rid)
    run = {r[0]: r[1:] for r in t["Run"]}
    assert run["events"] == [str(rec.summary["events"])]
    (slider,) = sliders(text)
    assert len(slider) == len(rec.memmaps) == 11
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o666 & ~_umask())
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_report_names_runs_by_prefix_default_output_and_pngs(
    compared: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = compared["ids"]
    monkeypatch.chdir(tmp_path)
    argv = ["report", b[:6], a, "--db", str(compared["db"]), "--png", "pngs"]
    assert main(argv) == 0
    text = (tmp_path / f"fragsim-report-{b}.html").read_text()
    # the order of the command line: the first run named is the baseline of the diff column
    runs = tables(text).get("Configuration keys that differ")
    assert runs is not None and runs[0][1:] == [
        "drivers.gpu.movable=true",
        "drivers.gpu.movable=false",
    ]
    printed = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in printed)
    assert names == sorted(
        [
            "free_by_order.png",
            "fragmentation_score.png",
            "alloc_failures_by_order.png",
            "alloc_failures_by_class.png",
            "compaction.png",
            "migration.png",
            "pageblocks.png",
            "memmap-drivers.gpu.movable=true.png",
            "memmap-drivers.gpu.movable=false.png",
        ]
    )
    for p in printed:
        assert (tmp_path / p).read_bytes().startswith(b"\x89PNG")


def test_report_errors(compared: dict[str, Any], tmp_path: Path) -> None:
    db = ResultsDB(compared["db"])
    a = compared["ids"][0]
    with pytest.raises(ConfigError, match=f"run {a} is named twice"):
        load_runs(db, [a, a[:5]])
    with pytest.raises(ConfigError, match="no run 'zz'"):
        load_runs(db, ["zz"])
    empty = tmp_path / "empty.duckdb"
    assert main(["report", "latest", "--db", str(empty), "-o", str(tmp_path / "x.html")]) == 2
    assert not (tmp_path / "x.html").exists()
    with pytest.raises(SystemExit):
        main(["report", "--db", str(empty)])  # RUN is required


def test_a_failed_report_leaves_the_old_file(
    compared: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fragsim.viz import html as htmlmodule

    out = tmp_path / "r.html"
    out.write_text("old report")
    runs = load_runs(ResultsDB(compared["db"]), ["latest"])
    written: list[str] = []

    def broken_rename(src: Any, dst: Any) -> None:
        written.append(Path(src).read_text())
        raise OSError("disk full")

    monkeypatch.setattr(htmlmodule.os, "replace", broken_rename)
    with pytest.raises(OSError, match="disk full"):
        runreport.write_report(out, runs)
    # the new report was written in full to a temporary file, removed again
    assert written and written[0].rstrip().endswith("</html>")
    assert out.read_text() == "old report" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_a_run_without_maps_or_samples(compared: dict[str, Any]) -> None:
    import dataclasses

    rec = ResultsDB(compared["db"]).load(compared["ids"][0])
    bare = dataclasses.replace(rec, memmaps=[], samples={}, compare_label=None)
    text = run_report(labelled([(bare, None)])).html()
    assert "This run was recorded without memory maps" in text
    assert "No samples were recorded." in text
    assert "(not recorded)" in text and sliders(text) == []
    # labels of runs that would read the same get told apart
    runs = labelled([(bare, None), (bare, None)])
    assert [r.label for r in runs] == ["small-android [1]", "small-android [2]"]


def test_runs_of_different_scenarios_are_summarised_one_after_the_other(
    compared: dict[str, Any],
) -> None:
    import dataclasses

    rec = ResultsDB(compared["db"]).load(compared["ids"][0])
    summary = json.loads(json.dumps(rec.summary))
    summary["drivers"] = {"balloon": {"type": "virtio-balloon", "migrated": 3, "failed": 0}}
    other = dataclasses.replace(rec, scenario="other", summary=summary)
    text = run_report(labelled([(rec, "a" * 12), (other, "b" * 12)])).html()
    assert "their summaries are shown one after the other" in text
    caps = re.findall(r"<caption>(.*?)</caption>", text)
    assert caps.count("Compaction and migration") == 2
    assert "What changed" not in text
    t = tables(text)
    assert t["Pages migrated per driver"][0] == ["", "drivers.gpu.movable=false [bbbbbbbbbbbb]"]
