"""``fragsim snapshot``: capture a machine's memory-fragmentation state into a portable directory.

The directory holds copies of the kernel's files under fixed names, which every fragsim command
that reads a snapshot accepts (``fragsim inspect``):

==================  ============================================================
file                source
==================  ============================================================
``buddyinfo``       ``/proc/buddyinfo`` (the minimum; everything else is optional)
``pagetypeinfo``    ``/proc/pagetypeinfo`` (root only)
``zoneinfo``        ``/proc/zoneinfo``
``vmstat``          ``/proc/vmstat``
``meminfo``         ``/proc/meminfo``
``slabinfo``        ``/proc/slabinfo`` (root only)
``unusable_index``  ``/sys/kernel/debug/extfrag/unusable_index`` (debugfs, root only)
``extfrag_index``   ``/sys/kernel/debug/extfrag/extfrag_index`` (debugfs, root only)
``kpageflags.gz``   ``/proc/kpageflags``, gzip (root only)
``kpagecount.gz``   ``/proc/kpagecount``, gzip (root only)
``page_owner.gz``   ``/sys/kernel/debug/page_owner``, gzip (root, CONFIG_PAGE_OWNER and
                    ``page_owner=on``)
``vm_sysctl``       every readable ``/proc/sys/vm/*`` as ``/proc/sys/vm/NAME:VALUE`` lines
``kernel-release``  ``uname -r`` (``/proc/sys/kernel/osrelease``)
``cmdline``         ``/proc/cmdline``
``manifest.json``   what was captured (bytes, sha256, seconds after the start) and what was
                    skipped and why
==================  ============================================================

Every file is written to a temporary name in the output directory and renamed into place, so
an interrupted capture leaves no partial file. ``root`` (default ``/``) is the directory under
which ``proc`` and ``sys`` are read; tests point it at a fake tree. :func:`capture_bugreport`
makes the same layout from the BUDDYINFO and PAGETYPEINFO (and, when present, ZONEINFO, vmstat,
meminfo, slabinfo) sections of an Android bugreport.
"""

from __future__ import annotations

import datetime as _dt
import errno
import gzip
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Final

from fragsim.errors import FragsimError, ParseError
from fragsim.parsers import (
    BugreportSection,
    parse_meminfo,
    parse_vmstat,
    parse_zoneinfo,
    read_bugreport,
)

__all__ = [
    "MANIFEST",
    "SNAPSHOT_FORMAT",
    "CapturedFile",
    "Manifest",
    "SkippedFile",
    "capture",
    "capture_bugreport",
]

SNAPSHOT_FORMAT: Final = "fragsim-snapshot/1"
MANIFEST: Final = "manifest.json"
NEEDS_ROOT: Final = "needs root"
_CHUNK = 1 << 20

_NO_PAGEMON: Final = "no /proc/kpageflags, /proc/kpagecount (CONFIG_PROC_PAGE_MONITOR off)"
# (file in the snapshot, path under root, gzip?, why it may be absent)
_SOURCES: Final = (
    ("buddyinfo", "proc/buddyinfo", False, "no /proc/buddyinfo (procfs not mounted?)"),
    ("pagetypeinfo", "proc/pagetypeinfo", False, "no /proc/pagetypeinfo in this kernel"),
    ("zoneinfo", "proc/zoneinfo", False, "no /proc/zoneinfo in this kernel"),
    ("vmstat", "proc/vmstat", False, "no /proc/vmstat"),
    ("meminfo", "proc/meminfo", False, "no /proc/meminfo"),
    ("slabinfo", "proc/slabinfo", False, "no /proc/slabinfo (CONFIG_SLUB_DEBUG off)"),
    (
        "unusable_index",
        "sys/kernel/debug/extfrag/unusable_index",
        False,
        "no extfrag directory in debugfs (CONFIG_COMPACTION or CONFIG_DEBUG_FS off)",
    ),
    (
        "extfrag_index",
        "sys/kernel/debug/extfrag/extfrag_index",
        False,
        "no extfrag directory in debugfs (CONFIG_COMPACTION or CONFIG_DEBUG_FS off)",
    ),
    ("kpageflags.gz", "proc/kpageflags", True, _NO_PAGEMON),
    ("kpagecount.gz", "proc/kpagecount", True, _NO_PAGEMON),
    (
        "page_owner.gz",
        "sys/kernel/debug/page_owner",
        True,
        "no page_owner in debugfs (CONFIG_PAGE_OWNER off, or the kernel was booted without "
        "page_owner=on)",
    ),
    ("cmdline", "proc/cmdline", False, "no /proc/cmdline"),
    ("kernel-release", "proc/sys/kernel/osrelease", False, "no /proc/sys/kernel/osrelease"),
)
SNAPSHOT_FILES: Final = tuple(s[0] for s in _SOURCES) + ("vm_sysctl", MANIFEST)
"""Every name a snapshot directory may hold."""


@dataclass(frozen=True, slots=True)
class CapturedFile:
    """One file written into the snapshot."""

    file: str
    source: str
    bytes: int
    """Size of the file as written (compressed for ``.gz``)."""
    sha256: str
    seconds: float
    """When the copy finished, in seconds after the capture started."""
    source_bytes: int | None = None
    """Size of the source before compression (``.gz`` files only)."""


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """One file the capture could not take, and why."""

    file: str
    source: str
    reason: str
    """``needs root``, ``debugfs not mounted``, a missing kernel feature, or a read error."""
    detail: str = ""


@dataclass(slots=True)
class Manifest:
    """The content of ``manifest.json``."""

    fragsim_version: str
    created: str
    source: dict[str, str]
    captured: list[CapturedFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    format: str = SNAPSHOT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = asdict(self)
        return d

    @property
    def needs_root(self) -> list[str]:
        """Files skipped for lack of privileges."""
        return [s.file for s in self.skipped if s.reason == NEEDS_ROOT]

    def summary(self, outdir: str) -> list[str]:
        """Lines for stderr: what was written, what needs root, what else was skipped."""
        out = [f"captured {len(self.captured)} files into {outdir} (see {MANIFEST})"]
        if self.needs_root:
            out.append(
                "skipped, needs root (run as root to capture them): " + ", ".join(self.needs_root)
            )
        for s in self.skipped:
            if s.reason != NEEDS_ROOT:
                out.append(f"skipped {s.file}: {s.reason}")
        if "buddyinfo" not in {c.file for c in self.captured}:
            out.append("buddyinfo was not captured: 'fragsim inspect' cannot read this snapshot")
        return out


class _SourceError(Exception):
    """Reading the source failed (as opposed to writing the snapshot)."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fragsim")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _open_source(path: str) -> IO[bytes]:
    """Open a source file for reading (unbuffered: procfs files are read in big chunks)."""
    return open(path, "rb", buffering=0)


def _atomic_write(outdir: str, name: str, fill: Callable[[IO[bytes]], None]) -> str:
    """Write ``outdir/name`` through ``fill`` into a temporary file renamed into place; on any
    error the temporary file is removed and nothing named ``name`` is left behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=outdir)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would have made
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        final = os.path.join(outdir, name)
        os.replace(tmp, final)
        return final
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _write_bytes(outdir: str, name: str, data: bytes) -> str:
    def fill(fh: IO[bytes]) -> None:
        fh.write(data)

    return _atomic_write(outdir, name, fill)


def _copy(src: IO[bytes], outdir: str, name: str, compress: bool) -> tuple[str, int]:
    """Copy ``src`` into ``outdir/name`` (gzip-compressed when ``compress``); returns the path and
    the number of source bytes. Source read errors are raised as :class:`_SourceError`."""
    n = 0

    def pump(dst: IO[bytes] | gzip.GzipFile) -> None:
        nonlocal n
        while True:
            try:
                chunk = src.read(_CHUNK)
            except OSError as exc:
                raise _SourceError(exc) from exc
            if not chunk:
                return
            n += len(chunk)
            dst.write(chunk)

    def fill(fh: IO[bytes]) -> None:
        if not compress:
            pump(fh)
            return
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=6, mtime=0) as gz:
            pump(gz)

    return _atomic_write(outdir, name, fill), n


def _reason(exc: OSError, rel: str, root: str, missing: str) -> str:
    """Why a source could not be read, in words a user can act on."""
    if isinstance(exc, PermissionError):
        return NEEDS_ROOT
    if isinstance(exc, FileNotFoundError) and rel.startswith("sys/kernel/debug/"):
        debugfs = os.path.join(root, "sys/kernel/debug")
        try:
            mounted = os.path.isdir(debugfs) and bool(os.listdir(debugfs))
        except PermissionError:
            return NEEDS_ROOT
        if not mounted:
            return "debugfs not mounted (mount -t debugfs none /sys/kernel/debug)"
    if isinstance(exc, FileNotFoundError):
        return missing
    return f"read error: {exc.strerror or exc}"


def _prepare(outdir: str, force: bool) -> str:
    out = os.fspath(outdir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise FragsimError(f"{out}: exists and is not a directory")
    os.makedirs(out, exist_ok=True)
    present = [f for f in os.listdir(out) if not f.startswith(".")]
    if present and not force:
        raise FragsimError(
            f"{out}: directory is not empty ({', '.join(sorted(present)[:5])}"
            f"{', ...' if len(present) > 5 else ''}); use --force to overwrite a snapshot"
        )
    if force:  # leave no stale file of an earlier snapshot beside the new one
        for f in present:
            if f in SNAPSHOT_FILES:
                os.unlink(os.path.join(out, f))
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_manifest(out: str, man: Manifest) -> None:
    _write_bytes(out, MANIFEST, (json.dumps(man.to_dict(), indent=2) + "\n").encode())


def capture(outdir: str | os.PathLike[str], root: str = "/", *, force: bool = False) -> Manifest:
    """Copy the running machine's files (read under ``root``) into ``outdir`` and write its
    ``manifest.json``. Files that cannot be read are listed in ``Manifest.skipped``; an error
    writing ``outdir`` aborts the capture and leaves no partial file."""
    out = _prepare(os.fspath(outdir), force)
    root = os.fspath(root)
    t0 = time.monotonic()
    man = Manifest(_version(), _now(), {"kind": "live", "root": root})

    for name, rel, compress, missing in _SOURCES:
        src_path = os.path.join(root, rel)
        shown = "/" + rel
        try:
            src = _open_source(src_path)
        except OSError as exc:
            man.skipped.append(SkippedFile(name, shown, _reason(exc, rel, root, missing), str(exc)))
            continue
        try:
            with src:
                path, n = _copy(src, out, name, compress)
        except _SourceError as exc:
            reason = _reason(exc.exc, rel, root, missing)
            if rel.endswith("page_owner") and exc.exc.errno == errno.EINVAL:
                reason = "page_owner not enabled (boot with page_owner=on)"
            man.skipped.append(SkippedFile(name, shown, reason, str(exc.exc)))
            continue
        man.captured.append(
            CapturedFile(
                name,
                shown,
                os.path.getsize(path),
                _sha256(path),
                round(time.monotonic() - t0, 3),
                n if compress else None,
            )
        )
    _capture_sysctl(out, root, man, t0)
    _write_manifest(out, man)
    return man


def _capture_sysctl(out: str, root: str, man: Manifest, t0: float) -> None:
    """Every readable /proc/sys/vm value into ``vm_sysctl``; write-only knobs are left out."""
    vmdir = os.path.join(root, "proc/sys/vm")
    try:
        names = sorted(os.listdir(vmdir))
    except OSError as exc:
        why = _reason(exc, "proc/sys/vm", root, "no /proc/sys/vm")
        man.skipped.append(SkippedFile("vm_sysctl", "/proc/sys/vm", why, str(exc)))
        return
    lines: list[str] = []
    for name in names:
        path = os.path.join(vmdir, name)
        try:
            mode = os.stat(path).st_mode
            if not stat.S_ISREG(mode) or not mode & 0o444:
                continue  # compact_memory, drop_caches: write-only triggers
            with _open_source(path) as fh:
                value = fh.read().decode("utf-8", errors="replace")
        except OSError as exc:
            man.skipped.append(
                SkippedFile(
                    f"vm_sysctl:{name}",
                    f"/proc/sys/vm/{name}",
                    _reason(exc, "proc/sys/vm", root, "vanished"),
                    str(exc),
                )
            )
            continue
        value = " ".join(value.split("\n")).strip()
        lines.append(f"/proc/sys/vm/{name}:{value}\n")
    path = _write_bytes(out, "vm_sysctl", "".join(lines).encode())
    man.captured.append(
        CapturedFile(
            "vm_sysctl",
            "/proc/sys/vm/*",
            os.path.getsize(path),
            _sha256(path),
            round(time.monotonic() - t0, 3),
        )
    )


# (file, section title, source file, validating parser or None)
_BUGREPORT: Final = (
    ("zoneinfo", "ZONEINFO", "/proc/zoneinfo", parse_zoneinfo),
    ("vmstat", "VIRTUAL MEMORY STATS", "/proc/vmstat", parse_vmstat),
    ("meminfo", "MEMORY INFO", "/proc/meminfo", parse_meminfo),
    ("slabinfo", "SLAB INFO", "/proc/slabinfo", None),
)


def _find_section(
    sections: dict[str, BugreportSection], title: str, source: str
) -> BugreportSection | None:
    sec = sections.get(title)
    if sec is None:
        sec = next((s for s in sections.values() if s.source == source), None)
    return sec


def capture_bugreport(
    outdir: str | os.PathLike[str], bugreport: str | os.PathLike[str], *, force: bool = False
) -> Manifest:
    """Extract an Android bugreport's (``.txt`` or ``.zip``) BUDDYINFO and PAGETYPEINFO sections
    (and ZONEINFO, vmstat, meminfo, slabinfo when present and well-formed) into the snapshot
    layout. A malformed BUDDYINFO/PAGETYPEINFO section raises :class:`ParseError` with the
    bugreport's line; a bugreport without BUDDYINFO is an error."""
    src = os.fspath(bugreport)
    mem = read_bugreport(src)  # validates BUDDYINFO and PAGETYPEINFO
    if mem.buddyinfo is None:
        why = mem.errors.get("BUDDYINFO", "no 'BUDDYINFO (/proc/buddyinfo)' section")
        raise ParseError(src, None, f"no usable buddyinfo in the bugreport: {why}")
    out = _prepare(os.fspath(outdir), force)
    t0 = time.monotonic()
    man = Manifest(_version(), _now(), {"kind": "bugreport", "file": os.path.abspath(src)})

    def put(name: str, sec: BugreportSection) -> None:
        data = sec.text.encode()
        path = _write_bytes(out, name, data)
        man.captured.append(
            CapturedFile(
                name,
                f"{src}:{sec.lineno} {sec.title} ({sec.source})",
                len(data),
                _sha256(path),
                round(time.monotonic() - t0, 3),
            )
        )

    for name, title, source in (
        ("buddyinfo", "BUDDYINFO", "/proc/buddyinfo"),
        ("pagetypeinfo", "PAGETYPEINFO", "/proc/pagetypeinfo"),
    ):
        sec = _find_section(mem.sections, title, source)
        if sec is not None and title not in mem.errors:
            put(name, sec)
        else:
            man.skipped.append(
                SkippedFile(name, source, mem.errors.get(title, "not in the bugreport"))
            )
    for name, title, source, parse in _BUGREPORT:
        sec = _find_section(mem.sections, title, source)
        if sec is None:
            man.skipped.append(SkippedFile(name, source, "not in the bugreport"))
            continue
        if sec.error is not None or not sec.text.strip():
            man.skipped.append(SkippedFile(name, source, sec.error or "empty section"))
            continue
        if parse is not None:
            try:
                parse(sec.text, f"{src}[{title}]")
            except ParseError as exc:
                line = None if exc.lineno is None else exc.lineno + sec.lineno - 1
                man.skipped.append(
                    SkippedFile(name, source, "malformed section", f"{src}:{line}: {exc.msg}")
                )
                continue
        put(name, sec)
    ver = _find_section(mem.sections, "KERNEL VERSION", "/proc/version")
    words = ver.text.split() if ver is not None and ver.error is None else []
    if len(words) >= 3 and words[:2] == ["Linux", "version"]:
        path = _write_bytes(out, "kernel-release", (words[2] + "\n").encode())
        man.captured.append(
            CapturedFile(
                "kernel-release",
                f"{src}:{ver.lineno} {ver.title} ({ver.source})" if ver is not None else src,
                os.path.getsize(path),
                _sha256(path),
                round(time.monotonic() - t0, 3),
            )
        )
    for name, _rel, _gz, _missing in _SOURCES:
        if name not in {c.file for c in man.captured} | {s.file for s in man.skipped}:
            man.skipped.append(SkippedFile(name, "/" + _rel, "not in a bugreport"))
    _write_manifest(out, man)
    return man
