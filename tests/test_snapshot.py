"""fragsim snapshot: capture from a fake /proc + /sys tree built from the real fixtures, the
manifest (captured with sha256, skipped with reasons), atomic writes, Android bugreports, CLI."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fragsim import snapshot
from fragsim.analysis import Verdict, format_report, inspect_snapshot, load_snapshot
from fragsim.cli import main
from fragsim.errors import FragsimError, ParseError
from fragsim.parsers import read_kpageflags

REAL = Path(__file__).resolve().parent / "fixtures" / "real"
S00 = REAL / "oracle-6.1" / "s00_boot"
FC = REAL / "firecracker-6.18"


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A machine without debugfs, slabinfo and kpagecount, with a write-only sysctl."""
    root = tmp_path / "root"
    proc = root / "proc"
    proc.mkdir(parents=True)
    for name in ("buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat", "meminfo"):
        shutil.copy(S00 / name, proc / name)
    (proc / "cmdline").write_text("console=ttyS0 panic=-1 nokaslr\n")
    (proc / "kpageflags").write_bytes(gzip.decompress((S00 / "kpageflags.gz").read_bytes()))
    vm = proc / "sys" / "vm"
    vm.mkdir(parents=True)
    (vm / "extfrag_threshold").write_text("500\n")
    (vm / "lowmem_reserve_ratio").write_text("256\t256\t32\t0\t0\n")
    (vm / "compact_memory").write_text("")
    (vm / "compact_memory").chmod(0o200)
    (proc / "sys" / "kernel").mkdir()
    (proc / "sys" / "kernel" / "osrelease").write_text("6.1.0-56-amd64\n")
    (root / "sys" / "kernel").mkdir(parents=True)
    return root


def leftovers(d: Path) -> list[str]:
    return sorted(f for f in os.listdir(d) if f.startswith(".") or f.endswith(".tmp"))


def test_capture_fake_tree(fake_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    man = snapshot.capture(out, str(fake_root))
    captured = [c.file for c in man.captured]
    assert captured == [
        "buddyinfo",
        "pagetypeinfo",
        "zoneinfo",
        "vmstat",
        "meminfo",
        "kpageflags.gz",
        "cmdline",
        "kernel-release",
        "vm_sysctl",
    ]
    skipped = {s.file: s.reason for s in man.skipped}
    assert skipped == {
        "slabinfo": "no /proc/slabinfo (CONFIG_SLUB_DEBUG off)",
        "unusable_index": "debugfs not mounted (mount -t debugfs none /sys/kernel/debug)",
        "extfrag_index": "debugfs not mounted (mount -t debugfs none /sys/kernel/debug)",
        "kpagecount.gz": snapshot._NO_PAGEMON,
        "page_owner.gz": "debugfs not mounted (mount -t debugfs none /sys/kernel/debug)",
    }
    assert man.needs_root == []
    # the manifest on disk says the same, with sizes and hashes of the files as written
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["format"] == "fragsim-snapshot/1" and doc["source"]["root"] == str(fake_root)
    assert doc["fragsim_version"] and doc["created"].endswith("Z")
    for c in doc["captured"]:
        data = (out / c["file"]).read_bytes()
        assert c["bytes"] == len(data) and c["sha256"] == hashlib.sha256(data).hexdigest()
    assert {s["file"]: s["reason"] for s in doc["skipped"]} == skipped
    kpf = next(c for c in doc["captured"] if c["file"] == "kpageflags.gz")
    assert kpf["source"] == "/proc/kpageflags" and kpf["source_bytes"] == 262144 * 8
    assert (out / "buddyinfo").read_bytes() == (S00 / "buddyinfo").read_bytes()
    assert (out / "kernel-release").read_text() == "6.1.0-56-amd64\n"
    assert (out / "vm_sysctl").read_text() == (
        "/proc/sys/vm/extfrag_threshold:500\n/proc/sys/vm/lowmem_reserve_ratio:256\t256\t32\t0\t0\n"
    )  # compact_memory is write-only and left out
    assert leftovers(out) == []


def test_snapshot_round_trips_into_inspect(fake_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    snapshot.capture(out, str(fake_root))
    snap = load_snapshot(out)
    assert snap.kernel_release == "6.1.0-56-amd64"
    assert snap.vm_sysctl["extfrag_threshold"] == "500"
    assert snap.kpageflags is not None
    assert np.array_equal(snap.kpageflags, read_kpageflags(S00 / "kpageflags.gz"))
    assert snap.skipped["slabinfo"] == "no /proc/slabinfo (CONFIG_SLUB_DEBUG off)"
    direct = inspect_snapshot(load_snapshot(S00))
    r = inspect_snapshot(snap)
    assert r.zones == direct.zones and r.obstacles == direct.obstacles
    assert r.extfrag_threshold_source == "vm_sysctl"
    text = format_report(r)
    assert "kernel 6.1.0-56-amd64" in text
    assert "not captured: page_owner.gz (debugfs not mounted" in text


def test_needs_root_is_reported(
    fake_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = snapshot._open_source

    def denied(path: str):  # type: ignore[no-untyped-def]
        if path.endswith(("pagetypeinfo", "kpageflags")):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(snapshot, "_open_source", denied)
    assert main(["snapshot", str(tmp_path / "snap"), "--root", str(fake_root)]) == 0
    err = capsys.readouterr().err
    assert (
        "fragsim snapshot: skipped, needs root (run as root to capture them): "
        "pagetypeinfo, kpageflags.gz" in err
    )
    assert "skipped slabinfo: no /proc/slabinfo (CONFIG_SLUB_DEBUG off)" in err
    doc = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    pti = next(s for s in doc["skipped"] if s["file"] == "pagetypeinfo")
    assert pti["reason"] == "needs root" and "Permission denied" in pti["detail"]
    assert not (tmp_path / "snap" / "pagetypeinfo").exists()


def test_debugfs_mounted_without_page_owner(fake_root: Path, tmp_path: Path) -> None:
    ext = fake_root / "sys" / "kernel" / "debug" / "extfrag"
    ext.mkdir(parents=True)
    shutil.copy(S00 / "unusable_index", ext / "unusable_index")
    shutil.copy(S00 / "extfrag_index", ext / "extfrag_index")
    man = snapshot.capture(tmp_path / "snap", str(fake_root))
    assert {"unusable_index", "extfrag_index"} <= {c.file for c in man.captured}
    reason = {s.file: s.reason for s in man.skipped}["page_owner.gz"]
    assert reason.startswith("no page_owner in debugfs (CONFIG_PAGE_OWNER off")
    assert (tmp_path / "snap" / "unusable_index").read_bytes() == (
        S00 / "unusable_index"
    ).read_bytes()


class _FailingReader(io.RawIOBase):
    """Gives one chunk, then fails like a device error (or page_owner's -EINVAL)."""

    def __init__(self, err: int) -> None:
        self.err = err
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.calls += 1
        if self.calls == 1:
            return b"\0" * 4096
        raise OSError(self.err, os.strerror(self.err))


def test_source_read_error_leaves_no_partial_file(
    fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_root / "sys" / "kernel" / "debug").mkdir()
    (fake_root / "sys" / "kernel" / "debug" / "page_owner").write_text("")
    real = snapshot._open_source

    def flaky(path: str):  # type: ignore[no-untyped-def]
        if path.endswith("kpageflags"):
            return _FailingReader(errno.EIO)
        if path.endswith("page_owner"):
            return _FailingReader(errno.EINVAL)
        return real(path)

    monkeypatch.setattr(snapshot, "_open_source", flaky)
    out = tmp_path / "snap"
    man = snapshot.capture(out, str(fake_root))
    skipped = {s.file: s.reason for s in man.skipped}
    assert skipped["kpageflags.gz"] == "read error: Input/output error"
    assert skipped["page_owner.gz"] == "page_owner not enabled (boot with page_owner=on)"
    assert not (out / "kpageflags.gz").exists() and not (out / "page_owner.gz").exists()
    assert leftovers(out) == []


def test_write_error_aborts_without_partial_files(
    fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def full(src: str, dst: str) -> None:
        if str(dst).endswith("zoneinfo"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    out = tmp_path / "snap"
    with pytest.raises(OSError, match="No space left"):
        snapshot.capture(out, str(fake_root))
    assert sorted(os.listdir(out)) == ["buddyinfo", "pagetypeinfo"]  # complete files only


def test_outdir_must_be_empty_unless_forced(fake_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    snapshot.capture(out, str(fake_root))
    with pytest.raises(FragsimError, match="not empty.*--force"):
        snapshot.capture(out, str(fake_root))
    (out / "slabinfo").write_text("stale\n")  # from an earlier, root, capture
    (out / "notes.txt").write_text("mine\n")
    snapshot.capture(out, str(fake_root), force=True)
    assert not (out / "slabinfo").exists() and (out / "notes.txt").exists()


def test_capture_without_buddyinfo(
    fake_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_root / "proc" / "buddyinfo").unlink()
    assert main(["snapshot", str(tmp_path / "snap"), "--root", str(fake_root)]) == 1
    assert "buddyinfo was not captured" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "snap")]) == 2
    err = capsys.readouterr().err
    assert "missing buddyinfo" in err and "no /proc/buddyinfo" in err


def test_cli_snapshot_and_live_inspect(
    fake_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "snap"
    assert main(["snapshot", str(out), "--root", str(fake_root)]) == 0
    err = capsys.readouterr().err
    assert f"fragsim snapshot: captured 9 files into {out}" in err
    assert "skipped unusable_index: debugfs not mounted" in err
    assert main(["inspect", str(out)]) == 0
    from_dir = capsys.readouterr().out
    assert main(["inspect", "--live", "--root", str(fake_root)]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith(f"fragsim inspect live machine (root {fake_root})")
    assert "fragsim inspect --live: captured 9 files" in cap.err
    # the same report but for the first line
    assert cap.out.splitlines()[1:] == from_dir.splitlines()[1:]
    assert main(["inspect", "--live", "--json", "--root", str(fake_root)]) == 0
    assert json.loads(capsys.readouterr().out)["zones"][0]["zone"] == "DMA"


# -- Android bugreports ---------------------------------------------------------------------


def bugreport(buddy: str | None = None, vmstat: str = "nr_free_pages 12\n") -> str:
    buddy = (FC / "buddyinfo").read_text() if buddy is None else buddy
    return (
        "========================================================\n"
        "== dumpstate: 2025-01-01 00:00:00\n"
        "------ KERNEL VERSION (/proc/version) ------\n"
        "Linux version 6.1.57-android14-11-g1234 (build-user@build-host) #1 SMP PREEMPT\n"
        "------ 0.001s was the duration of 'KERNEL VERSION' ------\n"
        "------ ZONEINFO (/proc/zoneinfo) ------\n"
        + (FC / "zoneinfo").read_text()
        + "------ 0.002s was the duration of 'ZONEINFO' ------\n"
        "------ PAGETYPEINFO (/proc/pagetypeinfo) ------\n"
        + (FC / "pagetypeinfo").read_text()
        + "------ 0.003s was the duration of 'PAGETYPEINFO' ------\n"
        "------ BUDDYINFO (/proc/buddyinfo) ------\n"
        + buddy
        + "------ 0.002s was the duration of 'BUDDYINFO' ------\n"
        "------ VIRTUAL MEMORY STATS (/proc/vmstat) ------\n"
        + vmstat
        + "[VIRTUAL MEMORY STATS: 0.001s elapsed]\n"
    )


def test_from_bugreport(tmp_path: Path) -> None:
    br = tmp_path / "bugreport.txt"
    text = bugreport(vmstat="nr_free_pages 12\nthis is not vmstat\n")
    br.write_text(text)
    out = tmp_path / "snap"
    man = snapshot.capture_bugreport(out, br)
    assert [c.file for c in man.captured] == [
        "buddyinfo",
        "pagetypeinfo",
        "zoneinfo",
        "kernel-release",
    ]
    lines = text.splitlines()
    first = lines.index("------ BUDDYINFO (/proc/buddyinfo) ------") + 2
    assert man.captured[0].source == f"{br}:{first} BUDDYINFO (/proc/buddyinfo)"
    skipped = {s.file: s for s in man.skipped}
    assert skipped["meminfo"].reason == "not in the bugreport"
    assert skipped["kpageflags.gz"].reason == "not in a bugreport"
    bad = lines.index("this is not vmstat") + 1
    assert skipped["vmstat"].reason == "malformed section"
    assert skipped["vmstat"].detail.startswith(f"{br}:{bad}: expected 'name value'")
    assert (out / "buddyinfo").read_text() == (FC / "buddyinfo").read_text()
    assert (out / "kernel-release").read_text() == "6.1.57-android14-11-g1234\n"
    assert json.loads((out / "manifest.json").read_text())["source"]["kind"] == "bugreport"
    # inspect reads it like the machine's own files
    r = inspect_snapshot(load_snapshot(out))
    direct = inspect_snapshot(load_snapshot(FC))  # which also has kpageflags
    assert [z.orders for z in r.zones] == [z.orders for z in direct.zones]
    assert r.zones[2].orders[9].verdict is Verdict.SUCCEEDS_NOW


def test_from_bugreport_zip_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    z = tmp_path / "bugreport-x-2025.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("bugreport-x-2025.txt", bugreport())
    out = tmp_path / "snap"
    assert main(["snapshot", str(out), "--from-bugreport", str(z)]) == 0
    assert "fragsim snapshot: captured 5 files" in capsys.readouterr().err
    assert (out / "vmstat").read_text() == "nr_free_pages 12\n"


def test_bad_bugreports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    br = tmp_path / "bugreport.txt"
    text = bugreport(buddy="Node 0, zone   Normal  1 2 3\nNode 0, zone Movable x\n")
    br.write_text(text)
    line = text.splitlines().index("Node 0, zone Movable x") + 1
    with pytest.raises(ParseError) as e:
        snapshot.capture_bugreport(tmp_path / "a", br)
    assert (e.value.path, e.value.lineno) == (str(br), line)
    assert not (tmp_path / "a").exists()  # nothing written for a bad report
    br.write_text("------ MEMORY INFO (/proc/meminfo) ------\nMemTotal: 1 kB\n")
    assert main(["snapshot", str(tmp_path / "b"), "--from-bugreport", str(br)]) == 2
    assert "no usable buddyinfo in the bugreport" in capsys.readouterr().err
