"""Android bugreport: BUDDYINFO / PAGETYPEINFO sections, both end-marker styles, zip input."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from fragsim.errors import ParseError
from fragsim.parsers import bugreport_sections, parse_bugreport, read_bugreport
from fragsim.parsers.procfs import parse_buddyinfo, parse_pagetypeinfo

REAL = Path(__file__).resolve().parent.parent / "fixtures" / "real"
BUDDY = (REAL / "firecracker-6.18/buddyinfo").read_text()
PTI = (REAL / "firecracker-6.18/pagetypeinfo").read_text()
MEMINFO = (REAL / "firecracker-6.18/meminfo").read_text()


def report(buddy_end: str = "duration", pti: str = PTI) -> str:
    end = {
        "duration": "------ 0.002s was the duration of 'BUDDYINFO' ------\n",
        "elapsed": "[BUDDYINFO: 0.002s elapsed]\n",
        "none": "",
    }[buddy_end]
    return (
        "========================================================\n"
        "== dumpstate: 2025-01-01 00:00:00\n"
        "========================================================\n"
        "------ MEMORY INFO (/proc/meminfo) ------\n"
        + MEMINFO
        + "------ 0.001s was the duration of 'MEMORY INFO' ------\n"
        "------ PAGETYPEINFO (/proc/pagetypeinfo) ------\n"
        + pti
        + "------ 0.003s was the duration of 'PAGETYPEINFO' ------\n"
        "------ BUDDYINFO (/proc/buddyinfo) ------\n"
        + BUDDY
        + end
        + "------ FRAGMENTATION INFO (/d/extfrag/unusable_index) ------\n"
        "Node 0, zone   Normal 0.000 0.010 \n"
    )


@pytest.mark.parametrize("style", ["duration", "elapsed", "none"])
def test_sections_parsed(style: str) -> None:
    mem = parse_bugreport(report(style), "bugreport.txt")
    assert mem.buddyinfo == parse_buddyinfo(BUDDY)
    assert mem.pagetypeinfo == parse_pagetypeinfo(PTI)
    assert mem.errors == {}
    assert set(mem.sections) == {"MEMORY INFO", "PAGETYPEINFO", "BUDDYINFO", "FRAGMENTATION INFO"}
    sec = mem.sections["BUDDYINFO"]
    assert sec.source == "/proc/buddyinfo" and sec.lines == tuple(BUDDY.splitlines())
    assert (
        sec.lineno
        == report(style).splitlines().index("------ BUDDYINFO (/proc/buddyinfo) ------") + 2
    )


def test_unreadable_and_missing_sections() -> None:
    text = report(pti="*** /proc/pagetypeinfo: Permission denied\n")
    mem = parse_bugreport(text)
    assert mem.pagetypeinfo is None and mem.buddyinfo is not None
    assert mem.errors == {"PAGETYPEINFO": "/proc/pagetypeinfo: Permission denied"}
    none = parse_bugreport("------ MEMORY INFO (/proc/meminfo) ------\nMemTotal: 1 kB\n")
    assert none.buddyinfo is None and none.pagetypeinfo is None and none.errors == {}


def test_renamed_title_found_by_source() -> None:
    text = report().replace("BUDDYINFO (/proc/buddyinfo)", "BUDDY INFO (/proc/buddyinfo)")
    assert parse_bugreport(text).buddyinfo == parse_buddyinfo(BUDDY)


def test_error_names_bugreport_line() -> None:
    text = report()
    lines = text.splitlines(keepends=True)
    hdr = lines.index("------ BUDDYINFO (/proc/buddyinfo) ------\n")
    lines[hdr + 2] = "Node 0, zone    DMA32      1      x \n"
    with pytest.raises(ParseError) as ei:
        parse_bugreport("".join(lines), "br.txt")
    assert ei.value.path == "br.txt" and ei.value.lineno == hdr + 3
    assert "in section BUDDYINFO" in ei.value.msg


def test_sections_split() -> None:
    secs = bugreport_sections(report())
    assert [s.title for s in secs] == [
        "MEMORY INFO",
        "PAGETYPEINFO",
        "BUDDYINFO",
        "FRAGMENTATION INFO",
    ]
    assert secs[-1].lines == ("Node 0, zone   Normal 0.000 0.010 ",)


def test_read_txt_and_zip(tmp_path: Path) -> None:
    txt = tmp_path / "bugreport-x.txt"
    txt.write_text(report())
    assert read_bugreport(txt).buddyinfo == parse_buddyinfo(BUDDY)
    z = tmp_path / "bugreport.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("version.txt", "2.0")
        zf.writestr("bugreport-device-2025.txt", report("elapsed"))
    assert read_bugreport(z).pagetypeinfo == parse_pagetypeinfo(PTI)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(ParseError, match="no bugreport"):
        read_bugreport(empty)
