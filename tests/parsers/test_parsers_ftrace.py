"""ftrace text parser: real 6.1.192 traces, other layouts, errors, fast path == per-line path."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragsim.errors import ParseError
from fragsim.parsers import MISSING, Trace, bench_ftrace, parse_ftrace, read_ftrace
from fragsim.parsers.ftrace import _parse_per_line

TRACES = Path(__file__).resolve().parent.parent / "fixtures" / "real" / "traces"
S07 = TRACES / "s07_thp_faulted.trace.txt.gz"
S03 = TRACES / "s03_compacted.head6000.trace.txt.gz"
CHURN = TRACES / "anon-churn.head4000.trace.txt.gz"


@pytest.fixture(scope="module")
def s07() -> Trace:
    return read_ftrace(S07)


def assert_same(a: Trace, b: Trace) -> None:
    """Two parses hold exactly the same data (codes may differ, strings may not)."""
    assert a.nr_lines == b.nr_lines and a.header == b.header
    assert a.counts() == b.counts() and a.event_names == b.event_names
    for name, x in a.events.items():
        y = b.events[name]
        for f in ("line", "ts", "cpu", "pid"):
            assert np.array_equal(getattr(x, f), getattr(y, f)), (name, f)
        assert [a.comms[c] for c in x.comm] == [b.comms[c] for c in y.comm]
        assert set(x.columns) == set(y.columns)
        for k in x.columns:
            if k in x.categories:
                assert x.strings(k) == y.strings(k), (name, k)
            else:
                assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), (name, k)
    for name, r in a.raw.items():
        assert r.fields == b.raw[name].fields and np.array_equal(r.line, b.raw[name].line)
    assert a.markers.text == b.markers.text
    assert np.array_equal(a.markers.ts, b.markers.ts)
    assert np.array_equal(a.lost.line, b.lost.line) and np.array_equal(a.lost.count, b.lost.count)
    assert np.array_equal(a.seq_event, b.seq_event) and np.array_equal(a.seq_row, b.seq_row)


# -- the whole s07_thp_faulted stage trace against the harness's own summary ----------------


def test_s07_counts_match_harness_summary(s07: Trace) -> None:
    summary = json.loads((TRACES / "s07_thp_faulted.trace_summary.json").read_text())
    assert s07.counts() == summary["events"]
    assert s07.nr_events == summary["lines"] == 25351
    assert s07.nr_lines == 25363 and len(s07.header) == 12
    assert s07.header[2] == "# entries-in-buffer/entries-written: 25351/25351   #P:1"
    alloc = s07["mm_page_alloc"]
    orders, n = np.unique(alloc["order"], return_counts=True)
    assert (
        dict(zip(map(str, orders.tolist()), n.tolist(), strict=True))
        == summary["mm_page_alloc_by_order"]
    )
    mts, n = np.unique(alloc["migratetype"], return_counts=True)
    assert (
        dict(zip(map(str, mts.tolist()), n.tolist(), strict=True))
        == summary["mm_page_alloc_by_migratetype"]
    )
    orders, n = np.unique(s07["mm_page_free"]["order"], return_counts=True)
    assert (
        dict(zip(map(str, orders.tolist()), n.tolist(), strict=True))
        == summary["mm_page_free_by_order"]
    )
    first = min(int(t.ts.min()) for t in [*s07.events.values(), s07.markers])
    last = max(int(t.ts.max()) for t in [*s07.events.values(), s07.markers])
    assert (first, last) == (round(summary["first_ts"] * 1e9), round(summary["last_ts"] * 1e9))
    assert [(round(t * 1e9), text) for t, text in summary["markers"]] == list(
        zip(s07.markers.ts.tolist(), s07.markers.text, strict=True)
    )


def test_s07_values(s07: Trace) -> None:
    alloc = s07["mm_page_alloc"]
    assert alloc.name == "mm_page_alloc"
    assert alloc["pfn"].dtype == np.int64 and alloc["page"].dtype == np.uint64
    # page= is the real struct page address (no_hash_pointers): vmemmap + 64 * pfn.
    assert np.array_equal(
        alloc["page"],
        np.uint64(0xFFFFEA0000000000) + alloc["pfn"].astype(np.uint64) * np.uint64(64),
    )
    thp = alloc["order"] == 9
    assert int(thp.sum()) == 208
    assert set(np.array(alloc.strings("gfp_flags"))[thp].tolist()) >= {
        "GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE"
    }
    assert np.all(alloc["pfn"][thp] % 512 == 0)
    ext = s07["mm_page_alloc_extfrag"]
    assert len(ext) == 1
    assert {k: int(ext[k][0]) for k in ext.columns if k != "page"} == {
        "pfn": 0x3EE00,
        "alloc_order": 9,
        "fallback_order": 9,
        "pageblock_order": 9,
        "alloc_migratetype": 1,
        "fallback_migratetype": 0,
        "fragmenting": 0,
        "change_ownership": 1,
    }
    begin, end = s07["mm_compaction_begin"], s07["mm_compaction_end"]
    assert [int(begin[k][0]) for k in ("zone_start", "migrate_pfn", "free_pfn", "zone_end")] == [
        0x1000,
        0x1000,
        0x42E00,
        0x42FE0,
    ]
    assert begin.strings("mode") == ["async"] and end.strings("status") == ["success"]
    assert int(end["migrate_pfn"][0]) == 0xA800
    iso = s07["mm_compaction_isolate_migratepages"]
    assert (int(iso["start_pfn"][0]), int(iso["end_pfn"][0])) == (0x4400, 0x4600)
    assert iso["nr_scanned"][:3].tolist() == [1, 1, 1]
    fin = s07["mm_compaction_finished"]
    assert set(fin.strings("zone")) == {"DMA32"} and fin["order"].tolist() == [9] * 8
    mig = s07["mm_migrate_pages"]
    assert mig["nr_succeeded"].tolist() == [3] and mig.strings("reason") == ["compaction"]
    assert mig.strings("mode") == ["MIGRATE_ASYNC"]
    try_ = s07["mm_compaction_try_to_compact_pages"]
    assert try_["priority"].tolist() == [2] and try_["order"].tolist() == [9]
    dr = s07["mm_compaction_defer_reset"]
    assert dr["consider"].tolist() == [1, 0] and dr["limit"].tolist() == [1, 1]
    sleep = s07["mm_compaction_kcompactd_sleep"]
    assert sleep["nid"].tolist() == [0] and s07.comms[sleep.comm[0]] == "kcompactd0"
    assert int(sleep.pid[0]) == 28 and int(sleep.ts[0]) == 34_777_643_000


def test_s07_common_columns_and_order(s07: Trace) -> None:
    comm_counts: dict[str, int] = {}
    for t in [*s07.events.values(), s07.markers]:
        for c in t.comm.tolist():
            comm_counts[s07.comms[c]] = comm_counts.get(s07.comms[c], 0) + 1
    assert comm_counts["oracle_work"] == 13816 and comm_counts["cat"] == 3778
    assert {int(c) for t in s07.events.values() for c in t.cpu} == {0}
    # seq_event / seq_row replay every event in file order; one CPU -> time is monotonic.
    tables = [s07.events.get(n) or s07.markers for n in s07.event_names]
    ts = np.array(
        [tables[e].ts[r] for e, r in zip(s07.seq_event.tolist(), s07.seq_row.tolist(), strict=True)]
    )
    lines = np.array(
        [
            tables[e].line[r]
            for e, r in zip(s07.seq_event.tolist(), s07.seq_row.tolist(), strict=True)
        ]
    )
    assert np.all(np.diff(lines) > 0) and np.all(np.diff(ts) >= 0)
    assert lines[0] == 13 and lines[-1] == 25363


def test_marker_text_and_stage_split(s07: Trace) -> None:
    m = s07.markers
    assert m.text[0] == "oracle TRACE-RESUME after=s06_balloon_deflated uptime=34.37"
    assert m.line.tolist()[:2] == [164, 805]
    begin = int(m.ts[m.text.index("oracle WORK-BEGIN name=thp uptime=34.38")])
    end = int(m.ts[m.text.index("oracle WORK-END name=thp pid=1574 uptime=34.82")])
    alloc = s07["mm_page_alloc"]
    during = (alloc.ts > begin) & (alloc.ts < end) & (alloc["order"] == 9)
    assert int(during.sum()) == 208


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            S03,
            {
                "mm_compaction_begin": 2,
                "mm_compaction_end": 1,
                "mm_compaction_finished": 59,
                "mm_compaction_isolate_freepages": 175,
                "mm_compaction_isolate_migratepages": 58,
                "mm_compaction_migratepages": 15,
                "mm_compaction_suitable": 2,
                "mm_migrate_pages": 15,
                "mm_page_alloc": 209,
                "mm_page_free": 3090,
                "mm_page_free_batched": 189,
                "mm_page_pcpu_drain": 2171,
                "tracing_mark_write": 2,
            },
        ),
        (
            CHURN,
            {
                "mm_page_alloc": 1936,
                "mm_page_alloc_zone_locked": 1426,
                "mm_page_free": 328,
                "mm_page_free_batched": 296,
                "tracing_mark_write": 2,
            },
        ),
    ],
)
def test_fixture_counts_and_reference(path: Path, expected: dict[str, int]) -> None:
    data = gzip.decompress(path.read_bytes())
    tr = parse_ftrace(data, str(path))
    assert tr.counts() == expected
    assert tr.nr_events == sum(expected.values()) == tr.nr_lines - 12
    assert_same(tr, _parse_per_line(data, str(path)))
    assert_same(tr, parse_ftrace(data, str(path), chunk_size=4096))


def test_s03_compaction_values() -> None:
    tr = read_ftrace(S03)
    suit = tr["mm_compaction_suitable"]
    assert suit.strings("zone") == ["DMA", "DMA32"] and suit["order"].tolist() == [-1, -1]
    assert suit.strings("ret") == ["continue", "continue"]
    iso = tr["mm_compaction_isolate_migratepages"]
    assert (iso["start_pfn"][0], iso["end_pfn"][0], iso["nr_scanned"][0]) == (1, 0x200, 290)
    zl = read_ftrace(CHURN)["mm_page_alloc_zone_locked"]
    assert set(zl["percpu_refill"].tolist()) <= {0, 1} and zl["pfn"][0] == 0x1A24C


def test_s07_fast_equals_per_line(s07: Trace) -> None:
    data = gzip.decompress(S07.read_bytes())
    assert_same(s07, _parse_per_line(data, str(S07)))
    assert_same(s07, parse_ftrace(data.decode(), str(S07), chunk_size=65536))


# -- other layouts -------------------------------------------------------------------------

TRACE_CMD = """version = 6
CPU 1 is empty
cpus=2
          <idle>-0     [000]   100.000001: mm_page_alloc:        page=0xffffea0004bd4b00 pfn=1242412 order=0 migratetype=0 gfp_flags=GFP_KERNEL
            bash-1234  [001]   100.000500: mm_page_free:         page=0xffffea0004bd4b00 pfn=1242412 order=0
              sh-1379  [002]   353.397813: print:                tracing_mark_write: TRACE_MARKER_START
              sh-1379  [002]   353.397814: print:                0xffffffff81234567s: hello
          rt-app-5732  [001]   471.410977940: mm_page_alloc:        page=0xffffea0004bd4b00 pfn=0x12f52c order=3 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP
"""  # noqa: E501


def test_trace_cmd_report() -> None:
    tr = parse_ftrace(TRACE_CMD, "report.txt")
    assert tr.header == ("version = 6", "CPU 1 is empty", "cpus=2")
    a = tr["mm_page_alloc"]
    assert a["pfn"].tolist() == [1242412, 0x12F52C]  # old decimal and hex pfn
    assert a["page"].tolist() == [0xFFFFEA0004BD4B00] * 2
    assert a.ts.tolist() == [100_000_001_000, 471_410_977_940]  # 6 and 9 decimals
    assert a.cpu.tolist() == [0, 1] and a.pid.tolist() == [0, 5732]
    assert [tr.comms[c] for c in a.comm] == ["<idle>", "rt-app"]
    assert a.strings("gfp_flags") == ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP"]
    assert tr.markers.text == ("TRACE_MARKER_START", "hello")
    assert tr.markers.line.tolist() == [6, 7]
    assert_same(tr, _parse_per_line(TRACE_CMD, "report.txt"))


ODD = """# tracer: nop
            init-1     [000]     4.024826: mm_page_alloc: page=ffffea0000187300 pfn=0x61cc order=1 migratetype=0 gfp_flags=GFP_KERNEL
            bash-2118  [001] d..2  1234.567890: mm_page_alloc_zone_locked: page=ffffea0000187300 pfn=24012 order=0 migratetype=1 percpu_refill=1
            bash-2118  [001] d..2  1234.567891: mm_page_alloc_zone_locked: page=ffffea0000187300 pfn=24013 order=0 migratetype=1
     oracle_work-725     [000] .....     6.658520: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE|__GFP_NORETRY
     oracle_work-725     [000] .....     6.658521: mm_page_alloc: page=(null) pfn=0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE
CPU:0 [LOST 123 EVENTS]
           bash-1234  (  1234) [002] d..1. 12345.678901: mm_page_free: page=000000009b1e6a2f pfn=0x1a2b3 order=0
     Web Content-4242    [003] ..... 12345.678902: mm_page_free: page=000000009b1e6a2f pfn=0x1a2b4 order=0
 systemd-journal-300     [003] ..... 12345.678903: mm_page_free: page=000000009b1e6a2f pfn=0x1a2b5 order=0
          a: b-c-77      [003] ..... 12345.678904: mm_page_free: page=000000009b1e6a2f pfn=0x1a2b6 order=0
   kworker/u16:3-9999999 [003] ..... 1234567890.678905: mm_page_free: page=000000009b1e6a2f pfn=0x1a2b7 order=0

          <idle>-0       [1023] ..... 12345.678906: sched_switch: prev_comm=swapper/3 prev_pid=0 ==> next_comm=bash
      kcompactd0-28      [000] .....    19.929958: mm_compaction_kcompactd_wake: nid=0 order=1 classzone_idx=DMA32   
      kcompactd0-28      [000] .....    19.929959: mm_compaction_kcompactd_wake: nid=0 order=1 highest_zoneidx=Normal  
            init-1       [000] .....    17.031353: mm_compaction_isolate_freepages: range=(4096 ~ 4608) nr_scanned=290 nr_taken=0
            init-1       [000] .....    17.031354: tracing_mark_write: text with key=val: and colon
            init-1       [000] .....    17.031355: mm_compaction_kcompactd_sleep:
            init-1       [000] .....    17.031356: compact_retry: order=9 priority=COMPACT_PRIO_SYNC_LIGHT compaction_result=withdrawn retries=0 max_retries=16 should_retry=1
            init-1       [000] .....    17.031357: mm_migrate_pages: nr_succeeded=1 nr_failed=0 mode=MIGRATE_SYNC reason=compaction
"""  # noqa: W291, E501


def test_odd_layouts_and_versions() -> None:
    tr = parse_ftrace(ODD, "odd.txt")
    assert_same(tr, _parse_per_line(ODD, "odd.txt"))
    a = tr["mm_page_alloc"]
    assert a["pfn"].tolist() == [0x61CC, 0, 0] and a["page"].tolist()[1:] == [0, 0]
    assert a.ts.tolist()[0] == 4_024_826_000  # no flags column
    zl = tr["mm_page_alloc_zone_locked"]
    assert zl["pfn"].tolist() == [24012, 24013]  # 4-char flags, decimal pfn
    assert zl["percpu_refill"].tolist() == [1, MISSING]  # field absent on an older line
    assert (tr.lost.line.tolist(), tr.lost.cpu.tolist(), tr.lost.count.tolist()) == (
        [7],
        [0],
        [123],
    )
    f = tr["mm_page_free"]
    assert [tr.comms[c] for c in f.comm] == [
        "bash",
        "Web Content",
        "systemd-journal",
        "a: b-c",
        "kworker/u16:3",
    ]
    assert f.pid.tolist() == [1234, 4242, 300, 77, 9999999]
    assert f.ts.tolist()[-1] == 1_234_567_890_678_905_000
    assert f.cpu.tolist() == [2, 3, 3, 3, 3]
    raw = tr.raw["sched_switch"]
    assert raw.fields == ("prev_comm=swapper/3 prev_pid=0 ==> next_comm=bash",)
    assert raw.cpu.tolist() == [1023] and raw.line.tolist() == [14]
    wake = tr["mm_compaction_kcompactd_wake"]
    assert wake.strings("classzone_idx") == ["DMA32", ""]
    assert wake.strings("highest_zoneidx") == ["", "Normal"]
    iso = tr["mm_compaction_isolate_freepages"]
    assert (iso["start_pfn"].tolist(), iso["end_pfn"].tolist()) == ([4096], [4608])
    assert tr.markers.text == ("text with key=val: and colon",)
    assert len(tr["mm_compaction_kcompactd_sleep"]) == 1
    cr = tr["compact_retry"]
    assert cr.strings("priority") == ["COMPACT_PRIO_SYNC_LIGHT"]
    assert cr["max_retries"].tolist() == [16]
    mig = tr["mm_migrate_pages"]
    assert "nr_thp_split" not in mig and mig["nr_succeeded"].tolist() == [1]  # 4.8 format
    assert tr.counts()["mm_page_free"] == 5 and tr.nr_lines == ODD.count("\n")


# -- errors -------------------------------------------------------------------------------

GOOD = (
    "            init-1       [000] .....     4.024826: mm_page_alloc: page=ffffea0000187300 "
    "pfn=0x61cc order=1 migratetype=0 gfp_flags=GFP_KERNEL\n"
)


@pytest.mark.parametrize(
    ("bad", "msg"),
    [
        (
            GOOD.replace("pfn=0x61cc", "pfn=0xZZ"),
            "mm_page_alloc: expected 0x<hex> or a decimal pfn for pfn=, got '0xZZ'",
        ),
        (GOOD.replace("order=1", "order=one"), "expected a decimal integer (64-bit) for order="),
        (GOOD.replace("ffffea0000187300", "ffffea00001873001"), "expected a hex pointer"),
        (GOOD.replace("4.024826:", "4.024826"), "expected '<comm>-<pid> [<cpu>]"),
        ("garbage line here\n", "expected '<comm>-<pid> [<cpu>]"),
        (GOOD.replace(" migratetype=0", " migratetype=0 order=2"), "duplicate field order="),
        (GOOD.replace("order=1 ", "order=1 junk "), "got '1 junk'"),
        (GOOD.replace("0x61cc", "99999999999999999999999"), "for pfn="),
        (GOOD.replace(": mm_page_alloc:", ": mm page alloc:"), "expected '<comm>-<pid>"),
        (GOOD.replace("[000]", "[0x0]"), "expected '<comm>-<pid>"),
        (GOOD.replace("4.024826", "4.0248261234"), "more than 9 decimals"),
        (
            "            init-1       [000] .....     4.024826: mm_compaction_isolate_freepages: "
            "range=(0x1 - 0x2) nr_scanned=1 nr_taken=0\n",
            "expected (0x<start> ~ 0x<end>)",
        ),
        (
            "            init-1       [000] .....     4.024826: mm_page_free: junk\n",
            "expected 'key=value ...' fields",
        ),
    ],
)
def test_malformed_line_names_file_and_line(bad: str, msg: str) -> None:
    text = "# tracer: nop\n" + GOOD + bad + GOOD
    for parse in (parse_ftrace, _parse_per_line):
        with pytest.raises(ParseError) as ei:
            parse(text, "trace.txt")
        assert ei.value.path == "trace.txt" and ei.value.lineno == 3
        assert str(ei.value).startswith("trace.txt:3: ") and msg in ei.value.msg


def test_first_error_in_file_order_is_reported() -> None:
    bad = GOOD.replace("order=1", "order=x")
    lines = [GOOD] * 50
    lines[10] = bad
    lines[40] = "nonsense\n"
    with pytest.raises(ParseError) as ei:
        parse_ftrace("".join(lines), "t", chunk_size=1024)
    assert ei.value.lineno == 11


def test_corrupt_gzip(tmp_path: Path) -> None:
    p = tmp_path / "trace.txt.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(ParseError, match="corrupt gzip"):
        read_ftrace(p)


def test_bench_returns_a_rate() -> None:
    rate = bench_ftrace(gzip.decompress(CHURN.read_bytes()), repeat=1)
    assert rate > 0


# -- fuzzing: fast path and per-line path agree; only ParseError ever escapes --------------

_BASE = (
    gzip.decompress(S03.read_bytes()).decode().splitlines(keepends=True)[100:160]
    + [line for line in ODD.splitlines(keepends=True)]
    + TRACE_CMD.splitlines(keepends=True)[3:]
)


def _outcome(parse: Callable[[str, str], Trace], text: str) -> Trace | tuple[int | None, str]:
    try:
        return parse(text, "fuzz")
    except ParseError as exc:
        return (exc.lineno, exc.msg)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=st.integers(0, len(_BASE) - 1),
    pos=st.floats(0, 1, exclude_max=True),
    junk=st.text(alphabet=st.sampled_from(list(" :=-[]().x0179afgz\t#~,|") + ["é"]), max_size=3),
    cut=st.integers(0, 3),
)
def test_mutated_lines_fast_equals_reference(line: int, pos: float, junk: str, cut: int) -> None:
    lines = list(_BASE)
    s = lines[line]
    i = int(pos * len(s.rstrip("\n")))
    lines[line] = s[:i] + junk + s[i + cut :]
    if not lines[line].endswith("\n"):
        lines[line] += "\n"
    text = "".join(lines)
    fast = _outcome(parse_ftrace, text)
    ref = _outcome(_parse_per_line, text)
    if isinstance(fast, Trace) or isinstance(ref, Trace):
        assert isinstance(fast, Trace) and isinstance(ref, Trace), (fast, ref)
        assert_same(fast, ref)
    else:
        assert fast == ref
