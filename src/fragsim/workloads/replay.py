"""The trace player: replays a recorded allocation trace (page-allocator requests and frees) on
the simulated clock, through the raw batch API ``Machine.run`` (the compiled
__alloc_pages / __free_pages of mm/page_alloc.c, Linux 6.1).

Trace files (``trace`` option; ``load_trace`` reads them, ``save_trace`` writes the first):

``.npz`` (the timed format, what the ftrace parsers produce)
    ``t_ns``   int64, shape (N,): the time of each row, ns from any origin, non-decreasing
    ``ev``     int64, shape (N, 7): event rows as ``fragsim.mm.internal.alloc_events`` /
               ``free_events`` make them, columns EV_OP, EV_ORDER, EV_GFP, EV_ARG, EV_CPU,
               EV_NID, EV_FLAGS. Ops allowed: OP_ALLOC (ARG: the trace's handle of the block,
               or -1 to record none), OP_FREE_HANDLE (ARG: a trace handle; freeing a handle
               whose allocation failed does nothing), OP_DRAIN_ALL. A trace's pfns mean
               nothing on another machine, so OP_FREE_PFN is refused.
    ``handles_size`` optional int64 scalar: the number of trace handles (every ARG is below
               it; default max ARG + 1)
``.npy`` (untimed; rows are spaced 1/``rate`` s apart, ``rate`` is required)
    either the same (N, 7) int64 rows, or the speed-of-light encoding of
    ``/work/shared/bench/speed-of-light/gen_trace.py``: a 1-D int32 array, ``e < 0`` allocates
    (``code = -1 - e``, order ``code >> 2``, migratetype ``code & 3``, the next handle), ``e >= 0``
    frees handle ``e``; converted by ``fragsim.bench.events_from_trace``.

Trace handles are the trace's own numbers: the player takes ``handles_size`` handles of the
machine's table and maps each trace handle to one, so a trace replays beside other memory users.
A row's CPU and node are taken modulo the machine's CPUs and nodes.

Batching rule: a batch starts at the first row not yet played, at time ``t0``; it takes the rows
that follow while their time is at most ``t0 + window_ns`` and it holds fewer than ``sim.batch``
rows; it runs at simulated time ``start_ns + (t0 - t_first)``, where ``t_first`` is the trace's
first time. Rows of one time therefore share a batch unless it is full, and the daemons and
timers of the machine run between batches.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fragsim.errors import ConfigError
from fragsim.mm.internal import (
    EV_ARG,
    EV_CPU,
    EV_NID,
    EV_OP,
    EV_ORDER,
    NR_EV,
    OP_ALLOC,
    OP_DRAIN_ALL,
    OP_FREE_HANDLE,
    free_events,
)
from fragsim.mm.mmzone import MAX_ORDER
from fragsim.scenario.engine import MS, S, Simulation, Workload, register_workload

__all__ = ["TraceReplay", "load_trace", "save_trace"]

_ALLOWED_OPS = (OP_ALLOC, OP_FREE_HANDLE, OP_DRAIN_ALL)


def save_trace(
    path: str | os.PathLike[str],
    t_ns: npt.ArrayLike,
    ev: npt.ArrayLike,
    handles_size: int | None = None,
) -> None:
    """Write a timed trace (a compressed ``.npz``: ``t_ns``, ``ev`` and, if given,
    ``handles_size``)."""
    arrays: dict[str, Any] = {
        "t_ns": np.asarray(t_ns, np.int64),
        "ev": np.asarray(ev, np.int64),
    }
    if handles_size is not None:
        arrays["handles_size"] = np.int64(handles_size)
    np.savez_compressed(path, **arrays)


def load_trace(
    path: str | os.PathLike[str], rate: float = 0.0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """Read a trace file (see the module docstring): (t_ns, ev rows, handles_size). ``rate``
    (events/s) times an untimed ``.npy``. Raises ConfigError naming the file and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: trace: no such file")
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: trace: not a .npy or .npz file ({e})") from None
    size: int | None = None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            for key in ("t_ns", "ev"):
                if key not in data.files:
                    raise ConfigError(f"{p}: trace: missing array {key!r} (has {data.files})")
            extra = set(data.files) - {"t_ns", "ev", "handles_size"}
            if extra:
                raise ConfigError(f"{p}: trace: unknown arrays {sorted(extra)}")
            t = data["t_ns"]
            ev = data["ev"]
            if "handles_size" in data.files:
                hs = data["handles_size"]
                if hs.shape != () or hs.dtype.kind not in "iu":
                    raise ConfigError(f"{p}: handles_size: expected an integer scalar")
                size = int(hs)
        if t.dtype.kind not in "iu" or t.ndim != 1:
            raise ConfigError(f"{p}: t_ns: expected a 1-D integer array, got {t.dtype} {t.shape}")
        if ev.ndim != 2 or ev.shape[1] != NR_EV or ev.dtype.kind not in "iu":
            raise ConfigError(
                f"{p}: ev: expected an (N, 7) integer array, got {ev.dtype} {ev.shape}"
            )
        if t.shape[0] != ev.shape[0]:
            raise ConfigError(f"{p}: t_ns has {t.shape[0]} rows, ev {ev.shape[0]}")
        t = t.astype(np.int64)
        ev = ev.astype(np.int64)
        if t.size > 1 and (np.diff(t) < 0).any():
            i = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
            raise ConfigError(f"{p}: t_ns: times go back at row {i}")
    else:
        arr = np.asarray(data)
        if not rate > 0:
            raise ConfigError(
                f"{p}: rate: an untimed .npy trace needs rate (events/s) > 0, got {rate!r}"
            )
        if arr.ndim == 1 and arr.dtype.kind in "iu":
            from fragsim.bench import events_from_trace

            ev, nalloc = events_from_trace(arr.astype(np.int32))
            size = nalloc
        elif arr.ndim == 2 and arr.shape[1] == NR_EV and arr.dtype.kind in "iu":
            ev = arr.astype(np.int64)
        else:
            raise ConfigError(
                f"{p}: trace: expected (N, 7) integer event rows or a 1-D int32 speed-of-light "
                f"trace, got {arr.dtype} {arr.shape}"
            )
        t = (np.arange(ev.shape[0], dtype=np.float64) * (1e9 / rate)).astype(np.int64)
    _check_rows(p, ev)
    uses = (ev[:, EV_OP] != OP_DRAIN_ALL) & (ev[:, EV_ARG] >= 0)
    need = int(ev[uses, EV_ARG].max()) + 1 if uses.any() else 0
    if size is None:
        size = need
    elif size < need:
        raise ConfigError(f"{p}: handles_size: {size} is below the largest handle + 1 ({need})")
    return t, ev, size


def _check_rows(p: Path, ev: npt.NDArray[np.int64]) -> None:
    op = ev[:, EV_OP]
    bad = ~np.isin(op, _ALLOWED_OPS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"{p}: ev[{i}]: op {int(op[i])} cannot be replayed (expected OP_ALLOC 0, "
            "OP_FREE_HANDLE 1 or OP_DRAIN_ALL 4)"
        )
    checks = (
        ((op == OP_ALLOC) & ((ev[:, EV_ORDER] < 0) | (ev[:, EV_ORDER] >= MAX_ORDER)), "order"),
        ((op == OP_ALLOC) & (ev[:, EV_ARG] < -1), "handle"),
        ((op == OP_FREE_HANDLE) & (ev[:, EV_ARG] < 0), "handle"),
        ((ev[:, EV_CPU] < 0) | (ev[:, EV_NID] < 0), "cpu or node"),
    )
    for mask, what in checks:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise ConfigError(f"{p}: ev[{i}]: bad {what} in row {ev[i].tolist()}")


@register_workload("replay")
class TraceReplay(Workload):
    """Replay a trace file on the simulated clock (see the module docstring for the formats
    and the batching rule).

    Options: ``trace`` (the file; a relative path is taken from the current directory);
    ``rate`` (events/s, for an untimed ``.npy``; ignored for ``.npz``); ``window_ns`` (rows
    within this time of a batch's first row join it); ``start_ns`` (the simulated time of the
    trace's first row); ``loop`` (replay again after the end, every row's handle freed first:
    the trace's leftover blocks are released)."""

    def __init__(
        self,
        sim: Simulation,
        *,
        trace: str = "",
        rate: float = 0.0,
        window_ns: int = 1 * MS,
        start_ns: int = 0,
        loop: bool = False,
    ) -> None:
        super().__init__(sim)
        w = "workload replay"
        if not trace:
            raise ConfigError(f"{w}: trace: expected the path of a .npz or .npy trace file")
        if rate < 0:
            raise ConfigError(f"{w}: rate: expected a number >= 0 (events/s), got {rate!r}")
        if window_ns < 0:
            raise ConfigError(f"{w}: window_ns: expected a duration >= 0, got {window_ns!r}")
        if start_ns < 0:
            raise ConfigError(f"{w}: start_ns: expected a duration >= 0, got {start_ns!r}")
        self.path = trace
        self.t_ns, self.ev, self.handles_size = load_trace(trace, rate)
        self.window_ns = window_ns
        self.start_ns = start_ns
        self.loop = loop
        self.pos = 0
        self.map = np.zeros(0, np.int64)  # trace handle -> machine handle
        self._t0 = 0  # simulated time of the trace's first row in this pass
        self.counts = {
            "passes": 0,
            "events": 0,
            "batches": 0,
            "allocs": 0,
            "frees": 0,
            "alloc_failures": 0,
            "pages_allocated": 0,
        }

    # ------------------------------------------------------------------ the clock
    def start(self) -> None:
        m = self.sim.machine
        self.map = m.alloc_handles(self.handles_size)
        if self.ev.shape[0]:
            self._begin_pass(self.sim.now + self.start_ns)

    def _begin_pass(self, at: int) -> None:
        self.pos = 0
        self._t0 = at
        self.counts["passes"] += 1
        self.sim.at(at, self._batch)

    def _batch(self) -> None:
        """Play the batch that starts at ``pos``, then schedule the next."""
        t, i = self.t_ns, self.pos
        n = t.shape[0]
        end = min(n, i + self.sim.batch)
        end = i + int(np.searchsorted(t[i:end], t[i] + self.window_ns, side="right"))
        self.play(i, end)
        self.pos = end
        if end < n:
            self.sim.at(self._t0 + int(t[end] - t[0]), self._batch)
        elif self.loop:
            self.release_all()
            gap = int(t[-1] - t[0]) // max(n - 1, 1) if n > 1 else S
            self._begin_pass(self.sim.now + max(gap, 1))

    def play(self, lo: int, hi: int) -> npt.NDArray[np.int64]:
        """Run rows ``lo .. hi`` of the trace as one batch; returns each row's pfn."""
        m = self.sim.machine
        ev = self.ev[lo:hi].copy()
        op = ev[:, EV_OP]
        mapped = (op != OP_DRAIN_ALL) & (ev[:, EV_ARG] >= 0)
        ev[mapped, EV_ARG] = self.map[ev[mapped, EV_ARG]]
        ev[:, EV_CPU] %= m.nr_cpus
        ev[:, EV_NID] %= m.nr_nodes
        out = m.run(ev)
        alloc = op == OP_ALLOC
        c = self.counts
        c["events"] += int(ev.shape[0])
        c["batches"] += 1
        c["allocs"] += int(alloc.sum())
        c["frees"] += int((op == OP_FREE_HANDLE).sum())
        ok = alloc & (out >= 0)
        c["alloc_failures"] += int((alloc & (out < 0)).sum())
        c["pages_allocated"] += int((1 << ev[ok, EV_ORDER]).sum())
        return out

    def release_all(self) -> None:
        """Free every block the trace's handles still hold (in batches of sim.batch rows)."""
        m = self.sim.machine
        held = self.map[m.handles[self.map] >= 0]
        for lo in range(0, held.size, self.sim.batch):
            m.run(free_events(held[lo : lo + self.sim.batch]))

    # ------------------------------------------------------------------ results
    @property
    def nr_held(self) -> int:
        """Blocks the trace's handles hold now."""
        m = self.sim.machine
        return int(np.count_nonzero(m.handles[self.map] >= 0))

    def summary(self) -> dict[str, Any]:
        """Passes, rows played, batches, allocations (failed among them), frees, pages
        allocated and blocks held now."""
        return {**self.counts, "rows": int(self.ev.shape[0]), "blocks_held": self.nr_held}
