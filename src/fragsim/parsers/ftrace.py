"""Columnar parser for the ftrace text output of the page-allocator tracepoints.

Reads the text that ``kernel/trace/trace_output.c`` prints into ``/sys/kernel/tracing/trace``
(and ``trace_pipe``) in Linux 6.1::

    <comm>-<pid> [<cpu>] <flags> <sec>.<usec>: <event>: <fields>
               init-1       [000] .....     4.024826: mm_page_alloc: page=... pfn=0x61cc order=1 ...

with or without the latency ``<flags>`` column (4 or 5 characters), with the optional
``(<tgid>)`` column, and ``trace-cmd report`` output
(``comm-pid [cpu] sec.usec: event:   fields``, 6 or 9 decimals, ``cpus=N`` / ``version = N`` /
``CPU N is empty`` header lines). Lines starting with ``#`` are header lines.

The fields of the kmem (``mm_page_alloc``, ``mm_page_free``, ``mm_page_free_batched``,
``mm_page_alloc_zone_locked``, ``mm_page_pcpu_drain``, ``mm_page_alloc_extfrag``), compaction,
migrate, vmscan and oom (``compact_retry``, ``reclaim_retry_zone``, ...) events are parsed into
typed numpy columns, following their ``print fmt`` in include/trace/events/{kmem,compaction,
migrate,vmscan,oom}.h of 6.1 and tolerant of the differences of other versions:

* ``pfn=%lu`` (decimal, old kernels) and ``pfn=0x%lx`` (hex) are both read;
* fields missing in some kernels (``percpu_refill``, ``nr_thp_*``, ``nr_split``) or renamed
  (``classzone_idx`` / ``highest_zoneidx``) simply become other columns; a column missing on
  some lines of one file is filled with :data:`MISSING` (or code -1 for string columns);
* a failed ``mm_page_alloc`` prints ``page=0000000000000000 pfn=0x0`` (``page=(null)`` in old
  kernels): its ``page`` column is 0.

Other events are kept as raw field strings (:class:`RawEventTable`). ``tracing_mark_write``
markers (and trace-cmd's ``print: tracing_mark_write: ...``) are kept with their time and text in
:class:`MarkerTable`; ``CPU:N [LOST M EVENTS]`` lines in :class:`LostEvents`.

Speed: the hot path is vectorised with numpy over 16 MiB chunks. Delimiters (newline, ``:``,
``=``) are located with whole-buffer comparisons; the kernel's fixed-width prefix
(``"%16s-%-7d [%03d] "``), the timestamp and every ``key=value`` field are then checked and decoded
for all lines at once with 8-byte word arithmetic (digit/hex tests and conversions on uint64
words); strings (comm, event name, gfp flags, zone names) are factorised by hashing all their
bytes with two independent 64-bit hashes. A line that does not fit the common layout is re-read
by a per-line regular-expression path, which either parses it (other layouts, odd values) or
raises :class:`~fragsim.errors.ParseError` naming the line; both paths give identical results
(tested on all real traces and by fuzzing). Measured with :func:`bench_ftrace` on the 2-core
development VM: about 1.2-1.5 M lines/s for the kmem-dominated 6.1 traces (1.5 M lines).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from fragsim.errors import ParseError
from fragsim.parsers._io import read_input

__all__ = [
    "EVENT_FIELDS",
    "MISSING",
    "EventTable",
    "LostEvents",
    "MarkerTable",
    "RawEventTable",
    "Trace",
    "bench_ftrace",
    "parse_ftrace",
    "read_ftrace",
]

Arr = npt.NDArray[Any]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Kind = Literal["int", "pfn", "ptr", "str", "range"]

MISSING: Final = np.iinfo(np.int64).min
"""Value of a numeric column on lines that do not have that field."""

_KMEM_PAGE: Final[Mapping[str, Kind]] = {"page": "ptr", "pfn": "pfn", "order": "int"}
_ISOLATE: Final[Mapping[str, Kind]] = {"range": "range", "nr_scanned": "int", "nr_taken": "int"}
_ZONE_ORDER: Final[Mapping[str, Kind]] = {
    "node": "int",
    "zone": "str",
    "order": "int",
    "ret": "str",
}
_DEFER: Final[Mapping[str, Kind]] = {
    "node": "int",
    "zone": "str",
    "order": "int",
    "order_failed": "int",
    "consider": "int",
    "limit": "int",
}
_KCOMPACTD: Final[Mapping[str, Kind]] = {
    "nid": "int",
    "order": "int",
    "classzone_idx": "str",
    "highest_zoneidx": "str",
}
_COMPACT_RANGE: Final[Mapping[str, Kind]] = {
    "zone_start": "pfn",
    "migrate_pfn": "pfn",
    "free_pfn": "pfn",
    "zone_end": "pfn",
    "mode": "str",
    "status": "str",
}
_PID: Final[Mapping[str, Kind]] = {"pid": "int"}

_EVENT_FIELDS: dict[str, Mapping[str, Kind]] = {
    # kmem
    "mm_page_alloc": {**_KMEM_PAGE, "migratetype": "int", "gfp_flags": "str"},
    "mm_page_free": _KMEM_PAGE,
    "mm_page_free_batched": _KMEM_PAGE,
    "mm_page_alloc_zone_locked": {**_KMEM_PAGE, "migratetype": "int", "percpu_refill": "int"},
    "mm_page_pcpu_drain": {**_KMEM_PAGE, "migratetype": "int"},
    "mm_page_alloc_extfrag": {
        "page": "ptr",
        "pfn": "pfn",
        "alloc_order": "int",
        "fallback_order": "int",
        "pageblock_order": "int",
        "alloc_migratetype": "int",
        "fallback_migratetype": "int",
        "fragmenting": "int",
        "change_ownership": "int",
    },
    # compaction
    "mm_compaction_isolate_migratepages": _ISOLATE,
    "mm_compaction_isolate_freepages": _ISOLATE,
    "mm_compaction_fast_isolate_freepages": _ISOLATE,
    "mm_compaction_migratepages": {"nr_migrated": "int", "nr_failed": "int"},
    "mm_compaction_begin": _COMPACT_RANGE,
    "mm_compaction_end": _COMPACT_RANGE,
    "mm_compaction_try_to_compact_pages": {
        "order": "int",
        "gfp_mask": "str",
        "priority": "int",
        "mode": "int",
    },
    "mm_compaction_finished": _ZONE_ORDER,
    "mm_compaction_suitable": _ZONE_ORDER,
    "mm_compaction_deferred": _DEFER,
    "mm_compaction_defer_compaction": _DEFER,
    "mm_compaction_defer_reset": _DEFER,
    "mm_compaction_kcompactd_sleep": {"nid": "int"},
    "mm_compaction_wakeup_kcompactd": _KCOMPACTD,
    "mm_compaction_kcompactd_wake": _KCOMPACTD,
    # migrate
    "mm_migrate_pages": {
        "nr_succeeded": "int",
        "nr_failed": "int",
        "nr_thp_succeeded": "int",
        "nr_thp_failed": "int",
        "nr_thp_split": "int",
        "nr_split": "int",
        "mode": "str",
        "reason": "str",
    },
    "mm_migrate_pages_start": {"mode": "str", "reason": "str"},
    # vmscan
    "mm_vmscan_kswapd_sleep": {"nid": "int"},
    "mm_vmscan_kswapd_wake": {"nid": "int", "zid": "int", "order": "int"},
    "mm_vmscan_wakeup_kswapd": {"nid": "int", "zid": "int", "order": "int", "gfp_flags": "str"},
    "mm_vmscan_direct_reclaim_begin": {"order": "int", "gfp_flags": "str"},
    "mm_vmscan_direct_reclaim_end": {"nr_reclaimed": "int"},
    "mm_vmscan_node_reclaim_begin": {"nid": "int", "order": "int", "gfp_flags": "str"},
    "mm_vmscan_node_reclaim_end": {"nr_reclaimed": "int"},
    "mm_vmscan_lru_isolate": {
        "isolate_mode": "int",
        "classzone": "int",
        "order": "int",
        "nr_requested": "int",
        "nr_scanned": "int",
        "nr_skipped": "int",
        "nr_taken": "int",
        "lru": "str",
    },
    "mm_vmscan_lru_shrink_inactive": {
        "nid": "int",
        "nr_scanned": "int",
        "nr_reclaimed": "int",
        "nr_dirty": "int",
        "nr_writeback": "int",
        "nr_congested": "int",
        "nr_immediate": "int",
        "nr_activate_anon": "int",
        "nr_activate_file": "int",
        "nr_ref_keep": "int",
        "nr_unmap_fail": "int",
        "priority": "int",
        "flags": "str",
    },
    "mm_vmscan_lru_shrink_active": {
        "nid": "int",
        "nr_taken": "int",
        "nr_active": "int",
        "nr_deactivated": "int",
        "nr_referenced": "int",
        "priority": "int",
        "flags": "str",
    },
    "mm_vmscan_write_folio": {"pfn": "pfn", "flags": "str"},
    "mm_vmscan_throttled": {
        "nid": "int",
        "usec_timeout": "int",
        "usec_delayed": "int",
        "reason": "str",
    },
    # oom
    "compact_retry": {
        "order": "int",
        "priority": "str",
        "compaction_result": "str",
        "retries": "int",
        "max_retries": "int",
        "should_retry": "int",
    },
    "reclaim_retry_zone": {
        "node": "int",
        "zone": "str",
        "order": "int",
        "reclaimable": "int",
        "available": "int",
        "min_wmark": "int",
        "no_progress_loops": "int",
        "wmark_check": "int",
    },
    "mark_victim": _PID,
    "wake_reaper": _PID,
    "start_task_reaping": _PID,
    "finish_task_reaping": _PID,
    "skip_task_reaping": _PID,
    "oom_score_adj_update": {"pid": "int", "comm": "str", "oom_score_adj": "int"},
}
EVENT_FIELDS: Final[Mapping[str, Mapping[str, Kind]]] = MappingProxyType(
    {name: MappingProxyType(dict(kinds)) for name, kinds in _EVENT_FIELDS.items()}
)
"""Events parsed into typed columns (read-only): field name -> kind. A ``range=(a ~ b)`` field
becomes the two columns ``start_pfn`` and ``end_pfn``; fields not listed are string columns."""
del _EVENT_FIELDS

_MARKER_EVENTS: Final = frozenset({"tracing_mark_write", "print"})

# --------------------------------------------------------------------------------------------
# Public result types


@dataclass(frozen=True, slots=True)
class _Common:
    line: I64
    """1-based line number of each event in the file."""
    ts: I64
    """Timestamp in nanoseconds."""
    cpu: I32
    pid: I32
    comm: I32
    """Index into :attr:`Trace.comms`."""

    def __len__(self) -> int:
        return int(self.line.shape[0])


@dataclass(frozen=True, slots=True)
class EventTable(_Common):
    """All lines of one known event: common columns plus one column per field."""

    name: str = ""
    columns: Mapping[str, Arr] = field(default_factory=dict)
    """Field name -> int64 array (``page`` is uint64; string fields are int32 codes)."""
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """String field name -> the strings its codes index (code -1: field absent)."""

    def __getitem__(self, key: str) -> Arr:
        return self.columns[key]

    def __contains__(self, key: object) -> bool:
        return key in self.columns

    def strings(self, key: str) -> list[str]:
        """The values of a string column as Python strings ('' where absent)."""
        cats = self.categories[key]
        return ["" if c < 0 else cats[c] for c in self.columns[key].tolist()]


@dataclass(frozen=True, slots=True)
class RawEventTable(_Common):
    """All lines of an event this module does not parse: the field text is kept as is."""

    name: str = ""
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MarkerTable(_Common):
    """``tracing_mark_write`` lines: the text written to ``trace_marker``."""

    text: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LostEvents:
    """``CPU:N [LOST M EVENTS]`` lines."""

    line: I64
    cpu: I32
    count: I64


@dataclass(frozen=True, slots=True)
class Trace:
    """A parsed ftrace text file."""

    path: str
    nr_lines: int
    """Lines read, including header and blank lines."""
    comms: tuple[str, ...]
    events: Mapping[str, EventTable]
    """Known events, by name (only those present)."""
    raw: Mapping[str, RawEventTable]
    """Other events, by name."""
    markers: MarkerTable
    lost: LostEvents
    header: tuple[str, ...]
    """The ``#`` comment lines and trace-cmd header lines, in order."""
    event_names: tuple[str, ...]
    """Names indexed by :attr:`seq_event` (known events, then raw events, then the marker)."""
    seq_event: npt.NDArray[np.int16]
    """For every event line in file order: index into :attr:`event_names`."""
    seq_row: I64
    """For every event line in file order: its row in that event's table."""

    def __getitem__(self, name: str) -> EventTable:
        return self.events[name]

    def event_id(self, name: str) -> int:
        """The id of an event name in :attr:`seq_event`."""
        return self.event_names.index(name)

    def counts(self) -> dict[str, int]:
        """Lines per event name (markers under ``tracing_mark_write``)."""
        out = {name: len(t) for name, t in self.events.items()}
        out.update({name: len(t) for name, t in self.raw.items()})
        if len(self.markers):
            out["tracing_mark_write"] = len(self.markers)
        return out

    @property
    def nr_events(self) -> int:
        return int(self.seq_event.shape[0])


# --------------------------------------------------------------------------------------------
# Word-at-a-time helpers: 8 text bytes are loaded as one little-endian uint64 (byte 0 = the
# first character) and tested or converted with a few integer operations per word, for all
# lines at once ("SIMD within a register").

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
Bool = npt.NDArray[np.bool_]


def _u(x: int) -> np.uint64:
    return np.uint64(x)


_REP: Final = 0x0101010101010101
_B01, _B03, _B06, _B09 = _u(_REP), _u(3 * _REP), _u(6 * _REP), _u(9 * _REP)
_B0F, _B10, _B20, _B30 = _u(0x0F * _REP), _u(0x10 * _REP), _u(0x20 * _REP), _u(0x30 * _REP)
_B60, _B7F, _B80, _BF0 = _u(0x60 * _REP), _u(0x7F * _REP), _u(0x80 * _REP), _u(0xF0 * _REP)


def _byte_masks() -> tuple[U64, U64]:
    lo = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)
    hi = np.array([((1 << 64) - 1) ^ ((1 << (8 * (8 - k))) - 1) for k in range(9)], np.uint64)
    lo.flags.writeable = False
    hi.flags.writeable = False
    return lo, hi


_LO, _HI = _byte_masks()
"""``_LO[k]`` selects the first k characters of a word, ``_HI[k]`` the last k."""

_PAD: Final = 128
_CHUNK: Final = 1 << 24
_SP, _NL, _COLON, _EQ, _DOT = 32, 10, 58, 61, 46
_LBR, _RBR, _DASH, _COMMA, _HASH = 91, 93, 45, 44, 35
_MAX_ROUNDS: Final = 6
_EVENT_NAME_RE = re.compile(r"[A-Za-z_]\w*")


def _flag_chars() -> U8:
    t = np.zeros(256, np.uint8)
    for c in b".0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        t[c] = 1
    t.flags.writeable = False
    return t


_FLAG_CHARS: Final = _flag_chars()
"""Bytes allowed in the latency-flags column (``d..3.``, ``.N.h2``, ...)."""


def _load8(buf: U8, pos: Arr) -> U64:
    """The 8 bytes at each position as little-endian words (``len(buf)`` is a multiple of 8).

    Two aligned gathers and shifts; much faster than fancy-indexing a sliding window.
    """
    words = buf.view("<u8")
    q = pos >> 3
    r = ((pos & 7) << 3).view(np.uint64)
    out: U64 = (words[q] >> r) | (words[1:][q] << (_u(64) - r))
    return out


def _win(buf: U8, pos: Arr, width: int) -> U8:
    """Rows of ``width`` bytes starting at each position (a copy)."""
    out: U8 = sliding_window_view(buf, width)[pos]
    return out


def _first(mask: Bool) -> tuple[I64, Bool]:
    """Column of the first True per row, and whether there is one."""
    idx = mask.argmax(axis=1).astype(np.int64)
    return idx, mask[np.arange(mask.shape[0]), idx]


def _nz(v: U64) -> U64:
    """0x80 in every byte of ``v`` that is not zero, 0 in the others (exact, no carries)."""
    return (((v & _B7F) + _B7F) | v) & _B80


def _nondigit(x: U64) -> U64:
    """0x80 in every byte that is not an ASCII digit."""
    return _nz(((x & _BF0) ^ _B30) | (((x & _B0F) + _B06) & _BF0))


def _nonhex(x: U64) -> U64:
    """0x80 in every byte that is not a hex digit (either case)."""
    low = x | _B20
    hi = (low >> _u(4)) & _B0F
    lo = low & _B0F
    dig = (hi ^ _B03) | ((lo + _B06) & _B10)
    let = (hi ^ _B06) | ((lo + _B09) & _B10) | (((lo + _B0F) & _B10) ^ _B10)
    return (_nz(dig) & _nz(let)) | (_nz(x & _B60) ^ _B80)


def _nonflag(x: U64) -> U64:
    """0x80 in every byte that is not ``.``, a digit or an ASCII letter (latency flags)."""
    low = x | _B20
    high = x & _B80
    letter = ((low & _B7F) + _u(0x1F * _REP)) & ~((low & _B7F) + _u(0x05 * _REP)) & _B80
    letter &= ~high
    dot = _nz(x ^ _u(0x2E * _REP)) ^ _B80
    out: U64 = ~(letter | dot | (_nondigit(x) ^ _B80)) & _B80
    return out


def _dec8(x: U64) -> U64:
    """Value of 8 ASCII digits."""
    x = x & _B0F
    x = (x * _u(10) + (x >> _u(8))) & _u(0x00FF00FF00FF00FF)
    x = (x * _u(100) + (x >> _u(16))) & _u(0x0000FFFF0000FFFF)
    out: U64 = (x * _u(10000) + (x >> _u(32))) & _u(0xFFFFFFFF)
    return out


def _hex8(x: U64) -> U64:
    """Value of 8 hex digits."""
    v = (x & _B0F) + ((x >> _u(6)) & _B01) * _u(9)
    v = ((v << _u(4)) + (v >> _u(8))) & _u(0x00FF00FF00FF00FF)
    v = ((v << _u(8)) + (v >> _u(16))) & _u(0x0000FFFF0000FFFF)
    out: U64 = ((v << _u(16)) + (v >> _u(32))) & _u(0xFFFFFFFF)
    return out


def _hibit(v: U64) -> I64:
    """Index of the highest set bit of each (non-zero) value."""
    _, e = np.frexp(v.astype(np.float64))
    return e.astype(np.int64) - 1


def _digit_run(buf: U8, end: I64) -> I64:
    """Number of ASCII digits right before ``end`` (16 means 16 or more)."""
    nd = _nondigit(_load8(buf, end - 8))
    run = np.full(len(end), 8, np.int64)
    has = nd != 0
    run[has] = 7 - (_hibit(nd[has]) >> 3)
    more = np.flatnonzero(~has)
    if more.size:
        nd2 = _nondigit(_load8(buf, end[more] - 16))
        r2 = np.full(more.size, 8, np.int64)
        h2 = nd2 != 0
        r2[h2] = 7 - (_hibit(nd2[h2]) >> 3)
        run[more] = 8 + r2
    return run


def _digits(buf: U8, vs: I64, ve: I64, hexa: bool) -> tuple[U64, Bool]:
    """Value of the digits in ``[vs, ve)`` (1 to 16 of them) and whether they are all digits."""
    ln = ve - vs
    ok = (ln >= 1) & (ln <= 16)
    ln = np.clip(ln, 0, 16)
    bad, conv, scale = (_nonhex, _hex8, _u(1 << 32)) if hexa else (_nondigit, _dec8, _u(10**8))
    m = _HI[np.minimum(ln, 8)]
    x = (_load8(buf, ve - 8) & m) | (_B30 & ~m)
    ok &= bad(x) == 0
    val = conv(x)
    sel = np.flatnonzero(ln > 8)
    if sel.size:
        m2 = _HI[ln[sel] - 8]
        y = (_load8(buf, ve[sel] - 16) & m2) | (_B30 & ~m2)
        ok[sel] &= bad(y) == 0
        val[sel] += conv(y) * scale
    return val, ok


def _parse_int(buf: U8, vs: I64, ve: I64) -> tuple[I64, Bool]:
    """Signed decimal (at most 16 digits here; longer ones go to the per-line path)."""
    neg = buf[vs] == _DASH
    v, ok = _digits(buf, vs + neg, ve, False)
    iv = v.astype(np.int64)
    return np.where(neg, -iv, iv), ok


def _is_0x(buf: U8, vs: I64, ve: I64) -> Bool:
    out: Bool = (buf[vs] == 48) & ((buf[vs + 1] | 0x20) == ord("x")) & (ve - vs > 2)
    return out


def _parse_auto(buf: U8, vs: I64, ve: I64) -> tuple[I64, Bool]:
    """``0x<hex>`` (at most 15 digits) or decimal, non-negative."""
    hx = _is_0x(buf, vs, ve)
    val = np.zeros(len(vs), np.int64)
    ok = np.zeros(len(vs), np.bool_)
    for is_hex in (True, False):
        sel = np.flatnonzero(hx == is_hex)
        if sel.size:
            a = vs[sel] + (2 if is_hex else 0)
            v, okv = _digits(buf, a, ve[sel], is_hex)
            val[sel] = v.astype(np.int64)
            ok[sel] = okv & (ve[sel] - a <= (15 if is_hex else 16))
    return val, ok


def _parse_ptr(buf: U8, vs: I64, ve: I64) -> tuple[U64, Bool]:
    """Hex pointer with or without ``0x``; ``(null)`` is 0."""
    v, ok = _digits(buf, vs + 2 * _is_0x(buf, vs, ve), ve, True)
    nul = (ve - vs == 6) & ((_load8(buf, vs) & _LO[6]) == _u(int.from_bytes(b"(null)", "little")))
    return np.where(nul, _u(0), v), ok | nul


_GOLDEN: Final = _u(0x9E3779B97F4A7C15)
_MIX1: Final = _u(0xBF58476D1CE4E5B9)
_MIX2: Final = _u(0x94D049BB133111EB)


def _factorize(buf: U8, start: I64, length: I64) -> tuple[I32, list[bytes]]:
    """Codes and distinct byte strings of the substrings ``buf[start:start+length]``.

    Strings are told apart by two independent 64-bit hashes of all their bytes.
    """
    n = len(start)
    if n == 0:
        return np.zeros(0, np.int32), []
    limit = len(buf) - 8
    h1 = length.astype(np.uint64) * _GOLDEN
    h2 = length.astype(np.uint64) + _MIX2
    for j in range((int(length.max()) + 7) // 8):
        rem = np.clip(length - 8 * j, 0, 8)
        w = _load8(buf, np.minimum(start + 8 * j, limit)) & _LO[rem]
        h1 = (h1 ^ w) * _MIX1
        h1 ^= h1 >> _u(31)
        h2 = (h2 + w) * _MIX2
        h2 ^= h2 >> _u(29)
    bits = int(min(20, max(8, n.bit_length() + 4)))
    bk = (h1 >> _u(64 - bits)).astype(np.intp)
    present = np.zeros(1 << bits, dtype=np.bool_)
    present[bk] = True
    ids = np.cumsum(present) - 1
    codes = ids[bk].astype(np.int32)
    nuniq = int(ids[-1]) + 1
    for attempt in range(2):
        rep = np.empty(nuniq, dtype=np.intp)
        rep[codes] = np.arange(n)
        rc = rep[codes]
        if bool(((h1 == h1[rc]) & (h2 == h2[rc]) & (length == length[rc])).all()):
            cats = [buf[int(start[r]) : int(start[r] + length[r])].tobytes() for r in rep]
            return codes, cats
        if attempt == 0:
            # Two strings share a bucket (many distinct strings): sort the full hashes.
            uniq, inv = np.unique(h1, return_inverse=True)
            codes, nuniq = inv.astype(np.int32).ravel(), len(uniq)
    # A full 64-bit collision: fall back to a dictionary (slow, correct).
    table: dict[bytes, int] = {}
    out = np.empty(n, dtype=np.int32)
    for i in range(n):
        a = int(start[i])
        out[i] = table.setdefault(buf[a : a + int(length[i])].tobytes(), len(table))
    return out, list(table)


# --------------------------------------------------------------------------------------------
# Per-line fallback path (also the source of every error message)

_LINE_RE = re.compile(
    r"^ *(?P<comm>.*?)-(?P<pid>\d+) +(?:\( *(?:\d+|-+)\) +)?"
    r"(?:\[(?P<cpu>\d+)\] +(?:[.A-Za-z0-9]+ +)?|(?P<cpu2>\d+)[.A-Za-z][.A-Za-z0-9]* +)"
    r"(?P<sec>\d+)\.(?P<frac>\d+): (?P<event>[A-Za-z_]\w*):(?= |$)"
)
_LOST_RE = re.compile(r"^CPU:(\d+) \[(?:LOST (\d+) EVENTS|(\d+) EVENTS DROPPED)\]\s*$")
_TRACECMD_HDR_RE = re.compile(r"^\s*(?:cpus=\d+|version = \S+|CPU \d+ is empty)\s*$")
_KEY_RE = re.compile(r"(?:^|(?<=\s))([A-Za-z_][\w-]*)=")
_INT_RE = re.compile(r"-?\d+")
_HEXNUM_RE = re.compile(r"0[xX]([0-9a-fA-F]+)")
_DECNUM_RE = re.compile(r"\d+")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_PTR_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]{1,16})")
_RANGE_RE = re.compile(r"\(\s*(\S+) ~ (\S+?)\s*\)")
_IP_PREFIX_RE = re.compile(r"^(?:0x)?[0-9a-fA-F]+s?: ")


def _auto_num(v: str) -> int | None:
    if m := _HEXNUM_RE.fullmatch(v):
        return int(m.group(1), 16)
    if _DECNUM_RE.fullmatch(v):
        return int(v)
    return None


def _slow_value(event: str, key: str, kind: Kind, v: str, path: str, lineno: int) -> Any:
    what: str
    if kind == "int":
        if _INT_RE.fullmatch(v) and _I64_MIN < int(v) <= _I64_MAX:
            return int(v)
        what = "a decimal integer (64-bit)"
    elif kind == "pfn":
        n = _auto_num(v)
        if n is not None and n <= _I64_MAX:
            return n
        what = "0x<hex> or a decimal pfn"
    elif kind == "ptr":
        if v == "(null)":
            return 0
        if m := _PTR_RE.fullmatch(v):
            return int(m.group(1), 16)
        what = "a hex pointer"
    elif kind == "range":
        if m := _RANGE_RE.fullmatch(v):
            a, b = _auto_num(m.group(1)), _auto_num(m.group(2))
            if a is not None and b is not None and max(a, b) <= _I64_MAX:
                return (a, b)
        what = "(0x<start> ~ 0x<end>)"
    else:
        return v
    raise ParseError(path, lineno, f"{event}: expected {what} for {key}=, got {v!r}")


def _split_kv(fields: str) -> list[tuple[str, int, int]] | None:
    """(key, value start, value end) of ``key=value`` fields, or None if not that shape."""
    ms = list(_KEY_RE.finditer(fields))
    if not ms or ms[0].start() != 0:
        return None
    out = []
    for i, m in enumerate(ms):
        end = ms[i + 1].start() if i + 1 < len(ms) else len(fields)
        vs = m.end()
        ve = end
        while ve > vs and fields[ve - 1] in " ,":
            ve -= 1
        out.append((m.group(1), vs, ve))
    return out


def _marker_text(event: str, text: str) -> str:
    if event == "print":
        t = text.lstrip(" ")
        if t.startswith("tracing_mark_write: "):
            return t[len("tracing_mark_write: ") :]
        if m := _IP_PREFIX_RE.match(t):
            return t[m.end() :]
        return t
    return text


@dataclass(slots=True)
class _Piece:
    """Rows of one event from one chunk or from the slow path."""

    line: I64
    ts: I64
    cpu: I32
    pid: I32
    comm: I32
    cols: dict[str, Arr] = field(default_factory=dict)
    texts: list[str] | None = None


@dataclass(slots=True)
class _SlowRows:
    line: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    cpu: list[int] = field(default_factory=list)
    pid: list[int] = field(default_factory=list)
    comm: list[int] = field(default_factory=list)
    vals: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


class _Builder:
    """Accumulates pieces over chunks; all mutable state of one parse lives here."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.comm_ids: dict[str, int] = {}
        self.cat_ids: dict[tuple[str, str], dict[str, int]] = {}
        self.pieces: dict[str, list[_Piece]] = {}
        self.kinds: dict[str, dict[str, Kind]] = {}
        self.header: list[tuple[int, str]] = []
        self.lost: list[tuple[int, int, int]] = []

    # -- registries
    def comm_id(self, name: str) -> int:
        return self.comm_ids.setdefault(name, len(self.comm_ids))

    def cat_id(self, event: str, key: str, value: str) -> int:
        d = self.cat_ids.setdefault((event, key), {})
        return d.setdefault(value, len(d))

    def map_codes(self, event: str, key: str, codes: I32, cats: list[bytes]) -> I32:
        table = np.array(
            [self.cat_id(event, key, c.decode("utf-8", "replace")) for c in cats], np.int32
        )
        out: I32 = table[codes]
        return out

    def add(self, event: str, piece: _Piece) -> None:
        self.pieces.setdefault(event, []).append(piece)

    # -- slow path
    def slow_line(self, line: str, lineno: int, slow: dict[str, _SlowRows]) -> None:
        """Parse one line that the vectorised path could not; raise ParseError if malformed."""
        path = self.path
        stripped = line.strip()
        if not stripped:
            return
        if line.startswith("#") or _TRACECMD_HDR_RE.match(line):
            self.header.append((lineno, line))
            return
        if m := _LOST_RE.match(stripped):
            self.lost.append((lineno, int(m.group(1)), int(m.group(2) or m.group(3))))
            return
        m = _LINE_RE.match(line)
        if m is None:
            raise ParseError(
                path,
                lineno,
                "expected '<comm>-<pid> [<cpu>] [flags] <sec>.<usec>: <event>: "
                f"<fields>', got {line[:100]!r}",
            )
        event = m.group("event")
        frac = m.group("frac")
        if len(frac) > 9:
            raise ParseError(path, lineno, f"timestamp with more than 9 decimals: {frac!r}")
        ts = int(m.group("sec")) * 1_000_000_000 + int(frac) * 10 ** (9 - len(frac))
        if ts > _I64_MAX:
            raise ParseError(path, lineno, "timestamp too large for int64 nanoseconds")
        cpu = int(m.group("cpu") if m.group("cpu") is not None else m.group("cpu2"))
        if cpu >= 1 << 31 or int(m.group("pid")) >= 1 << 31:
            raise ParseError(path, lineno, "cpu or pid does not fit in 32 bits")
        rest = line[m.end() + 1 :] if m.end() < len(line) else ""
        rows = slow.setdefault(event, _SlowRows())
        rows.line.append(lineno)
        rows.ts.append(ts)
        rows.cpu.append(cpu)
        rows.pid.append(int(m.group("pid")))
        rows.comm.append(self.comm_id(m.group("comm").lstrip(" ")))
        if event in _MARKER_EVENTS:
            rows.texts.append(_marker_text(event, rest))
            rows.vals.append({})
            return
        kinds = EVENT_FIELDS.get(event)
        if kinds is None:
            rows.texts.append(rest)
            rows.vals.append({})
            return
        rows.vals.append(self.slow_fields(event, kinds, rest.strip(" "), lineno))

    def slow_fields(
        self, event: str, kinds: Mapping[str, Kind], fields: str, lineno: int
    ) -> dict[str, Any]:
        kv = _split_kv(fields)
        if kv is None:
            if not fields:
                return {}
            raise ParseError(
                self.path, lineno, f"{event}: expected 'key=value ...' fields, got {fields[:80]!r}"
            )
        vals: dict[str, Any] = {}
        for key, vs, ve in kv:
            if key in vals or (key == "range" and "start_pfn" in vals):
                raise ParseError(self.path, lineno, f"{event}: duplicate field {key}=")
            kind = kinds.get(key, "str")
            v = _slow_value(event, key, kind, fields[vs:ve], self.path, lineno)
            if kind == "range":
                vals["start_pfn"], vals["end_pfn"] = v
            else:
                vals[key] = v
        return vals

    def flush_slow(self, slow: dict[str, _SlowRows]) -> None:
        for event, rows in slow.items():
            piece = _Piece(
                np.array(rows.line, np.int64),
                np.array(rows.ts, np.int64),
                np.array(rows.cpu, np.int32),
                np.array(rows.pid, np.int32),
                np.array(rows.comm, np.int32),
            )
            kinds = EVENT_FIELDS.get(event)
            if event in _MARKER_EVENTS or kinds is None:
                piece.texts = rows.texts
            else:
                keys: dict[str, None] = {}
                for v in rows.vals:
                    keys.update(dict.fromkeys(v))
                for key in keys:
                    kind = _column_kind(kinds, key)
                    if kind == "str":
                        piece.cols[key] = np.array(
                            [
                                self.cat_id(event, key, v[key]) if key in v else -1
                                for v in rows.vals
                            ],
                            np.int32,
                        )
                    elif kind == "ptr":
                        piece.cols[key] = np.array([v.get(key, 0) for v in rows.vals], np.uint64)
                    else:
                        piece.cols[key] = np.array(
                            [v.get(key, MISSING) for v in rows.vals], np.int64
                        )
            self.add("\0marker" if event in _MARKER_EVENTS else event, piece)


def _column_kind(kinds: Mapping[str, Kind], key: str) -> Kind:
    if key in ("start_pfn", "end_pfn") and kinds.get("range") == "range":
        return "pfn"
    return kinds.get(key, "str")


# --------------------------------------------------------------------------------------------
# Vectorised path


class _Chunk:
    """One chunk of the file as a padded byte array."""

    def __init__(self, data: bytes, line0: int) -> None:
        tail = _PAD + (-(_PAD + len(data)) % 8)
        self.buf: U8 = np.frombuffer(b"\0" * _PAD + data + b"\0" * tail, np.uint8)
        self.line0 = line0
        self._eqs: I64 | None = None

    @property
    def eqs(self) -> I64:
        """Positions of every '=' (computed on first use)."""
        if self._eqs is None:
            self._eqs = np.flatnonzero(self.buf == _EQ).astype(np.int64)
        return self._eqs

    def text(self, a: int, b: int) -> str:
        return self.buf[a:b].tobytes().decode("utf-8", "replace")


def _match(buf: U8, pos: I64, lit: bytes) -> Bool:
    """Whether the bytes at each position equal ``lit``."""
    ok = np.ones(len(pos), np.bool_)
    for j in range(0, len(lit), 8):
        part = lit[j : j + 8]
        want = _u(int.from_bytes(part.ljust(8, b"\0"), "little"))
        ok &= (_load8(buf, pos + j) & _LO[len(part)]) == want
    return ok


def _timestamps(buf: U8, tsc: I64) -> tuple[I64, I64, Bool]:
    """``<sec>.<frac>`` ending at each ``tsc`` (the colon): ns, start of <sec>, validity."""
    n = len(tsc)
    frac = np.zeros(n, np.int64)
    pending = np.arange(n)
    for d in (6, 9, 3, 1, 2, 4, 5, 7, 8):
        if not pending.size:
            break
        hit = buf[tsc[pending] - 1 - d] == _DOT
        frac[pending[hit]] = d
        pending = pending[~hit]
    ok = frac > 0
    dot = tsc - 1 - frac
    fv, fok = _digits(buf, dot + 1, tsc, False)
    x = _load8(buf, dot - 8)
    nd = _nondigit(x)
    run = np.full(n, 9, np.int64)  # 9: eight or more digits, handled below
    has = nd != 0
    run[has] = 7 - (_hibit(nd[has]) >> 3)
    m = _HI[np.minimum(run, 8)]
    sec = _dec8((x & m) | (_B30 & ~m))
    long = np.flatnonzero(~has)
    if long.size:  # 9 digits at most (31 years); longer: the per-line path checks int64 range
        r2 = _digit_run(buf, dot[long])
        run[long] = r2
        v2, ok2 = _digits(buf, dot[long] - r2, dot[long], False)
        sec[long] = v2
        ok[long] &= ok2
    ok &= fok & (run >= 1) & (run <= 9)
    tstart = dot - run
    ok &= buf[tstart - 1] == _SP
    scale = np.power(10, 9 - np.minimum(frac, 9)).astype(np.int64)
    ts = sec.astype(np.int64) * 1_000_000_000 + fv.astype(np.int64) * scale
    return ts, tstart, ok


_W1_MASK: Final = _u(0xFF | 0xFF << 8 | 0xFF << 40 | 0xFF << 48)
_W1_WANT: Final = _u(_SP | _LBR << 8 | _RBR << 40 | _SP << 48)


def _prefix_fixed(buf: U8, s: I64, tstart: I64, flags_w: int) -> tuple[Bool, U64, U64]:
    """The kernel's own layout ``"%16s-%-7d [%03d] "`` + flags + spaces up to the timestamp."""
    w0 = _load8(buf, s + 16)  # '-' and the 7 pid characters
    w1 = _load8(buf, s + 24)  # ' [ddd] ' and one more byte
    ok = (w0 & _u(0xFF)) == _u(_DASH)
    ok &= (w1 & _W1_MASK) == _W1_WANT
    c = ((w1 << _u(24)) & _HI[3]) | (_B30 & _LO[5])
    ok &= _nondigit(c) == 0
    cpu = _dec8(c)
    p = w0 >> _u(8)  # pid digits left-aligned, then spaces, then a zero byte
    nd = _nondigit(p)
    ndig = _hibit(nd & (~nd + _u(1))) >> 3
    ok &= ndig >= 1
    ok &= ((p ^ _B20) & (_LO[7] & ~_LO[ndig])) == 0
    shift = (8 * (8 - ndig)).astype(np.uint64)
    pid = _dec8((p << shift) | (_B30 & _LO[8 - ndig]))
    if flags_w:
        ok &= (_nonflag(_load8(buf, s + 31)) & _LO[flags_w]) == 0
        pad0 = s + 31 + flags_w
    else:
        pad0 = s + 30
    plen = tstart - pad0
    ok &= (plen >= 1) & (plen <= 8)
    ok &= ((_load8(buf, pad0) ^ _B20) & _LO[np.clip(plen, 0, 8)]) == 0
    return ok, cpu, pid


def _prefix_generic(buf: U8, s: I64, tstart: I64) -> tuple[Bool, U64, U64, I64]:
    """Any ``comm-pid [cpu] [flags] `` prefix (trace-cmd, other column widths)."""
    W = 24
    p = tstart - 1
    rv = _win(buf, p - (W - 1), W)[:, ::-1]
    sp = rv == _SP
    cols = np.arange(W)[None, :]
    a, has_a = _first(~sp)
    bb, has_b = _first(sp & (cols > a[:, None]))
    c, has_c = _first(~sp & (cols > bb[:, None]))
    rows = np.arange(len(s))
    at_a = rv[rows, a] == _RBR
    ok = has_a & (at_a | (has_b & has_c & (rv[rows, c] == _RBR)))
    in_flags = (cols >= a[:, None]) & (cols < bb[:, None]) & ~at_a[:, None]
    ok &= (_FLAG_CHARS[rv].astype(np.bool_) | ~in_flags).all(axis=1)
    rb = p - np.where(at_a, a, c)
    crun = _digit_run(buf, rb)
    ok &= (crun >= 1) & (crun <= 5)
    cpu, okc = _digits(buf, rb - crun, rb, False)
    lb = rb - crun - 1
    ok &= okc & (buf[lb] == _LBR)
    a2, has_a2 = _first(_win(buf, lb - 16, 16)[:, ::-1] != _SP)
    ok &= has_a2 & (a2 >= 1)
    pe = lb - a2
    prun = _digit_run(buf, pe)
    ok &= (prun >= 1) & (prun <= 7)
    pid, okp = _digits(buf, pe - prun, pe, False)
    dash = pe - prun - 1
    ok &= okp & (buf[dash] == _DASH) & (dash >= s) & (dash - s <= 64)
    return ok, cpu, pid, dash - s


def _process_chunk(ch: _Chunk, b: _Builder) -> int:
    """Parse one chunk into the builder; return its number of lines."""
    buf = ch.buf
    nl = np.flatnonzero(buf == _NL).astype(np.int64)
    n = len(nl)
    if n == 0:
        return 0
    starts = np.empty(n, np.int64)
    starts[0] = _PAD
    starts[1:] = nl[:-1] + 1
    ends = nl
    first = buf[starts]
    special = (ends == starts) | (first == _HASH)
    # Empty lines need no work; '#' lines go to the header through the per-line path.
    slow_rows: list[int] = np.flatnonzero(first == _HASH).tolist()
    idx = np.flatnonzero(~special)
    s = starts[idx]
    e = ends[idx]

    colon = np.flatnonzero(buf == _COLON).astype(np.int64)
    after = buf[colon + 1]
    cs = np.concatenate([colon[(after == _SP) | (after == _NL)], [len(buf), len(buf)]])
    k = np.searchsorted(cs, s)
    tsc = cs[k]
    evc = cs[k + 1]
    ok = (evc < e) & (tsc - s >= 8)
    tsc = np.where(ok, tsc, s + 40)
    evc = np.where(ok, evc, s + 41)

    ts, tstart, okt = _timestamps(buf, tsc)
    ok &= okt
    cpu = np.zeros(len(s), np.uint64)
    pid = np.zeros(len(s), np.uint64)
    clen = np.full(len(s), 16, np.int64)
    pending = np.flatnonzero(ok)
    for flags_w in (5, 4, 0):
        if not pending.size:
            break
        okf, c, p = _prefix_fixed(buf, s[pending], tstart[pending], flags_w)
        hit = pending[okf]
        cpu[hit] = c[okf]
        pid[hit] = p[okf]
        pending = pending[~okf]
    if pending.size:
        okg, c, p, cl = _prefix_generic(buf, s[pending], tstart[pending])
        hit = pending[okg]
        cpu[hit], pid[hit], clen[hit] = c[okg], p[okg], cl[okg]
        ok[pending[~okg]] = False
    elen = evc - tsc - 2
    ok &= (elen >= 1) & (elen <= 64) & (cpu < 1 << 31) & (pid < 1 << 31)

    good = np.flatnonzero(ok)
    slow_rows.extend(idx[~ok].tolist())
    gidx = idx[good]
    s, e, tsc, evc, clen, elen, ts = (x[good] for x in (s, e, tsc, evc, clen, elen, ts))
    cpu_i, pid_i = cpu[good].astype(np.int32), pid[good].astype(np.int32)
    lines = ch.line0 + gidx + 1

    ccodes, ccats = _factorize(buf, s, clen)
    ctable = np.array(
        [b.comm_id(c.decode("utf-8", "replace").lstrip(" ")) for c in ccats], np.int32
    )
    comm_i = ctable[ccodes] if len(ccodes) else np.zeros(0, np.int32)

    ecodes, ecats = _factorize(buf, tsc + 2, elen)
    for code, raw_name in enumerate(ecats):
        rows_e = np.flatnonzero(ecodes == code)
        name = raw_name.decode("utf-8", "replace")
        if not _EVENT_NAME_RE.fullmatch(name):
            slow_rows.extend(gidx[rows_e].tolist())
            continue
        piece = _Piece(lines[rows_e], ts[rows_e], cpu_i[rows_e], pid_i[rows_e], comm_i[rows_e])
        fe = e[rows_e]
        fs = np.minimum(evc[rows_e] + 2, fe)
        if name in _MARKER_EVENTS:
            spans = zip(fs.tolist(), fe.tolist(), strict=True)
            piece.texts = [_marker_text(name, ch.text(x, y)) for x, y in spans]
            b.add("\0marker", piece)
            continue
        kinds = EVENT_FIELDS.get(name)
        if kinds is None:
            piece.texts = [ch.text(x, y) for x, y in zip(fs.tolist(), fe.tolist(), strict=True)]
            b.add(name, piece)
            continue
        bad = _process_kv(ch, b, name, kinds, piece, fs, fe)
        slow_rows.extend(gidx[rows_e[bad]].tolist())

    if slow_rows:
        slow: dict[str, _SlowRows] = {}
        for r in sorted(slow_rows):
            lo, hi = int(starts[r]), int(ends[r])
            b.slow_line(ch.text(lo, hi), ch.line0 + r + 1, slow)
        b.flush_slow(slow)
    return n


def _process_kv(
    ch: _Chunk,
    b: _Builder,
    name: str,
    kinds: Mapping[str, Kind],
    piece: _Piece,
    fs: I64,
    fe: I64,
) -> I64:
    """Parse the ``key=value`` fields of one event's lines and add them to the builder.

    Lines are grouped by layout (the key sequence of a representative line, checked on every
    line); returns the rows (indices into ``fs``) left for the per-line path.
    """
    buf = ch.buf
    n = len(fs)
    lead = np.flatnonzero((buf[fs] == _SP) & (fs < fe))
    if lead.size:  # trace-cmd pads the event name
        nsp, has = _first(_win(buf, fs[lead], 32) != _SP)
        fs[lead] = np.minimum(fs[lead] + np.where(has, nsp, 32), fe[lead])
    eqs = ch.eqs
    e0 = np.searchsorted(eqs, fs)
    cnt = np.searchsorted(eqs, fe) - e0
    remaining = np.arange(n)
    slow: list[I64] = []
    for _ in range(_MAX_ROUNDS):
        if not remaining.size:
            break
        r0 = int(remaining[0])
        kv = _split_kv(ch.text(int(fs[r0]), int(fe[r0])))
        if kv is None or len({k for k, _, _ in kv}) != len(kv):
            slow.append(remaining[:1])
            remaining = remaining[1:]
            continue
        keys = [k for k, _, _ in kv]
        K = len(keys)
        sel = remaining[cnt[remaining] == K]
        E = eqs[e0[sel][:, None] + np.arange(K)[None, :]]
        okr = np.ones(len(sel), np.bool_)
        for j, key in enumerate(keys):
            lit = (" " + key + "=" if j else key + "=").encode()
            pos = E[:, j] - (len(lit) - 1)
            if j == 0:
                okr &= pos == fs[sel]
            okr &= _match(buf, pos, lit)
        good = sel[okr]
        rest = np.setdiff1d(remaining, good, assume_unique=True)
        if good.size == 0 or int(good[0]) != r0:
            # The representative does not fit its own layout (e.g. a '=' inside a value).
            slow.append(np.array([r0], np.int64))
            rest = rest[rest != r0]
        remaining = rest
        if not good.size:
            continue
        Eg = E[okr]
        vs = Eg + 1
        ve = np.empty_like(Eg)
        for j in range(K - 1):
            ve[:, j] = Eg[:, j + 1] - len(keys[j + 1]) - 1
        ve[:, K - 1] = fe[good]
        for _strip in range(16):
            last = buf[ve - 1]
            m = (ve > vs) & ((last == _SP) | (last == _COMMA))
            if not m.any():
                break
            ve -= m
        cols: dict[str, Arr] = {}
        vok = np.ones(len(good), np.bool_)
        for j, key in enumerate(keys):
            kind = kinds.get(key, "str")
            a, z = vs[:, j], ve[:, j]
            if kind == "int":
                cols[key], okv = _parse_int(buf, a, z)
            elif kind == "pfn":
                cols[key], okv = _parse_auto(buf, a, z)
            elif kind == "ptr":
                cols[key], okv = _parse_ptr(buf, a, z)
            elif kind == "range":
                okv = (buf[a] == ord("(")) & (buf[z - 1] == ord(")")) & (z - a >= 7)
                tpos, has_t = _first(_win(buf, a, 48) == ord("~"))
                t = a + tpos
                okv &= has_t & (t < z) & (buf[t - 1] == _SP) & (buf[t + 1] == _SP)
                t = np.where(okv, t, a + 3)
                lo, ok1 = _parse_auto(buf, a + 1, t - 1)
                hi, ok2 = _parse_auto(buf, t + 2, z - 1)
                okv &= ok1 & ok2
                cols["start_pfn"], cols["end_pfn"] = lo, hi
            else:
                ln = z - a
                okv = ln <= 256
                codes, cats = _factorize(buf, a, np.minimum(ln, 256))
                cols[key] = b.map_codes(name, key, codes, cats)
            vok &= okv
        if not bool(vok.all()):
            slow.append(good[~vok])
            keep = np.flatnonzero(vok)
            good = good[keep]
            cols = {k: v[keep] for k, v in cols.items()}
        if good.size:
            b.add(
                name,
                _Piece(
                    piece.line[good],
                    piece.ts[good],
                    piece.cpu[good],
                    piece.pid[good],
                    piece.comm[good],
                    cols,
                ),
            )
    if remaining.size:
        slow.append(remaining)
    return np.concatenate(slow).astype(np.int64) if slow else np.zeros(0, np.int64)


# --------------------------------------------------------------------------------------------
# Assembly


def _concat_pieces(
    b: _Builder, event: str, pieces: list[_Piece]
) -> tuple[I64, I64, I32, I32, I32, dict[str, Arr], list[str] | None]:
    line = np.concatenate([p.line for p in pieces])
    order = None
    if len(pieces) > 1 and bool((np.diff(line) < 0).any()):
        order = np.argsort(line, kind="stable")
        line = line[order]

    def cat(arrs: list[Arr]) -> Arr:
        out: Arr = np.concatenate(arrs)
        return out if order is None else out[order]

    ts, cpu, pid, comm = (
        cat([getattr(p, f) for p in pieces]) for f in ("ts", "cpu", "pid", "comm")
    )
    cols: dict[str, Arr] = {}
    kinds = EVENT_FIELDS.get(event, {})
    keys: dict[str, None] = {}
    for p in pieces:
        keys.update(dict.fromkeys(p.cols))
    for key in keys:
        kind = _column_kind(kinds, key)
        parts: list[Arr] = []
        for p in pieces:
            if key in p.cols:
                parts.append(p.cols[key])
            elif kind == "str":
                parts.append(np.full(len(p.line), -1, np.int32))
            elif kind == "ptr":
                parts.append(np.zeros(len(p.line), np.uint64))
            else:
                parts.append(np.full(len(p.line), MISSING, np.int64))
        cols[key] = cat(parts)
    texts: list[str] | None = None
    if pieces[0].texts is not None:
        texts = [t for p in pieces for t in (p.texts or [])]
        if order is not None:
            texts = [texts[i] for i in order.tolist()]
    return line, ts, cpu, pid, comm, cols, texts


def _empty_i64() -> I64:
    return np.zeros(0, np.int64)


def _empty_i32() -> I32:
    return np.zeros(0, np.int32)


def _finish(b: _Builder, nr_lines: int) -> Trace:
    events: dict[str, EventTable] = {}
    raw: dict[str, RawEventTable] = {}
    markers = MarkerTable(_empty_i64(), _empty_i64(), _empty_i32(), _empty_i32(), _empty_i32())
    for event in sorted(b.pieces):
        line, ts, cpu, pid, comm, cols, texts = _concat_pieces(b, event, b.pieces[event])
        if event == "\0marker":
            markers = MarkerTable(line, ts, cpu, pid, comm, text=tuple(texts or ()))
        elif event in EVENT_FIELDS:
            cats = {
                key: tuple(b.cat_ids.get((event, key), {}))
                for key, v in cols.items()
                if _column_kind(EVENT_FIELDS[event], key) == "str"
            }
            events[event] = EventTable(line, ts, cpu, pid, comm, event, cols, cats)
        else:
            raw[event] = RawEventTable(line, ts, cpu, pid, comm, event, tuple(texts or ()))
    names = (*events, *raw, "tracing_mark_write")
    tables: list[_Common] = [*events.values(), *raw.values(), markers]
    all_lines = np.concatenate([t.line for t in tables])
    ev = np.concatenate([np.full(len(t), i, np.int16) for i, t in enumerate(tables)])
    rows = np.concatenate([np.arange(len(t), dtype=np.int64) for t in tables])
    order = np.argsort(all_lines, kind="stable")
    seq_event, seq_row = ev[order], rows[order]
    lost = LostEvents(
        np.array([x[0] for x in b.lost], np.int64),
        np.array([x[1] for x in b.lost], np.int32),
        np.array([x[2] for x in b.lost], np.int64),
    )
    header = tuple(t for _, t in sorted(b.header))
    return Trace(
        path=b.path,
        nr_lines=nr_lines,
        comms=tuple(b.comm_ids),
        events=events,
        raw=raw,
        markers=markers,
        lost=lost,
        header=header,
        event_names=names,
        seq_event=seq_event,
        seq_row=seq_row,
    )


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    """Split at newlines into pieces of about ``size`` bytes, each ending with a newline."""
    pos = 0
    n = len(data)
    while pos < n:
        end = min(n, pos + size)
        if end < n:
            cut = data.rfind(b"\n", pos, end)
            end = cut + 1 if cut >= pos else (data.find(b"\n", end) + 1 or n)
        piece = data[pos:end]
        if not piece.endswith(b"\n"):
            piece += b"\n"
        yield piece
        pos = end


def parse_ftrace(data: str | bytes, path: str = "<trace>", *, chunk_size: int = _CHUNK) -> Trace:
    """Parse ftrace text (``trace`` file or ``trace-cmd report`` output) into a :class:`Trace`."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    b = _Builder(path)
    nr_lines = 0
    for piece in _chunks(raw, chunk_size):
        nr_lines += _process_chunk(_Chunk(piece, nr_lines), b)
    return _finish(b, nr_lines)


def _parse_per_line(data: str | bytes, path: str = "<trace>") -> Trace:
    """Reference parser: every line through the per-line path (slow; for tests)."""
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    b = _Builder(path)
    slow: dict[str, _SlowRows] = {}
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        b.slow_line(line, i + 1, slow)
    b.flush_slow(slow)
    return _finish(b, len(lines))


def _read_bytes(src: str | os.PathLike[str]) -> tuple[bytes, str]:
    return read_input(src, "trace")


def read_ftrace(src: str | os.PathLike[str]) -> Trace:
    """Read and parse an ftrace text file (plain or gzip)."""
    data, path = _read_bytes(src)
    return parse_ftrace(data, path)


def bench_ftrace(src: str | os.PathLike[str] | bytes, repeat: int = 3) -> float:
    """Parse a trace ``repeat`` times; return the best rate in lines per second.

    The file is read and decompressed once, before timing: the figure is the parser's own.
    """
    if isinstance(src, bytes):
        data, path = src, "<bench>"
    else:
        data, path = _read_bytes(src)
    nlines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        parse_ftrace(data, path)
        best = min(best, time.perf_counter() - t0)
    return nlines / best if best > 0 else float("inf")
