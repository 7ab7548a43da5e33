"""The results database: every ``fragsim run`` recorded in one embedded DuckDB file.

A run is written by :meth:`ResultsDB.record` at its end, in one transaction: the fully expanded
scenario (JSON) and its hash, the seed, fragsim's version, the metrics time series, the
``/proc``-format snapshots, the memory maps through the run and the summary tables. Either all
of it is there or none of it: an exception (``KeyboardInterrupt`` included) rolls the
transaction back, and a process killed outright never committed (DuckDB writes its log at
commit). The run loop builds its :class:`RunRecord` only when the run is over, so an interrupted
run records nothing and says so with :func:`interrupted_message`.

Where the file is (:func:`default_db_path`): ``$FRAGSIM_DB`` if set, else
``$XDG_DATA_HOME/fragsim/results.duckdb`` (``~/.local/share/fragsim/results.duckdb``);
``--db PATH`` on the commands overrides both.

Schema (``meta.schema_version`` = 1)::

    meta(key, value)
    runs(run_id, seq, scenario, config JSON text, config_hash, seed, version, started, finished,
         status, sim_ns, wall_s, events, summary JSON text, n_samples, compare_group,
         compare_label)
    metrics(run_id, idx, metric, dtype)           -- the run's metric names, in order, int64/float64
    sample_times(run_id, i, t_ns)                 -- sample i was taken at t_ns
    samples(run_id, i, t_ns, metric, value DOUBLE) -- long form: one row per sample and metric
    snapshots(run_id, idx, t_ns, label, seq, file, text)
    memmap_frames(run_id, idx, t_ns, resolution, npages, pageblock_order, kinds JSON text,
                  info JSON text, data BLOB, pageblock_mt BLOB)

``memmap_frames`` (memory maps through the run, :class:`MemMapFrame`) was added to version 1
without changing its number: it is created in an existing file when fragsim opens it, an older
fragsim ignores it, and a run recorded without it loads with no frames. Its arrays are stored
as zlib-compressed bytes (little-endian, C order); their dtype and shape follow from the
resolution, ``npages``, ``pageblock_order`` and the number of kinds.

Why the samples are long, not wide: the metric set depends on the machine (one
``free.ZONE.oN.MIGRATETYPE`` per zone, order and migratetype, one ``pageblocks.ZONE.TYPE`` per
zone), so a wide table would need a column per metric ever seen, an ``ALTER TABLE`` whenever a
new zone layout appears, and mostly-NULL rows. The long form keeps one fixed schema for every
run; a cross-run query is a ``WHERE metric = 'free.Normal.o9.Movable'``; the insert is one bulk
scan of NumPy arrays (500 samples x 400 metrics = 200k rows in a few tens of milliseconds), and
DuckDB's dictionary and RLE compression stores the repeated ``run_id``/``metric`` strings for
almost nothing. The wide view one run needs (export, :meth:`ResultsDB.samples_frame`) is a
reshape of that run's rows in NumPy, in the metric order of ``metrics``, with each column back
in its own dtype. Values are ``DOUBLE``: integer metrics are exact up to 2**53 (checked).

Concurrency: DuckDB lets one process open a file for writing. A connection is held only for
the duration of one ``record`` or one query, never for a whole run; queries open the file
read-only (several readers at once are fine). When another process holds the file, the
connection is retried for ``lock_timeout`` seconds, then :class:`DatabaseLockedError` says who.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import re
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from fragsim.errors import ConfigError, FragsimError

__all__ = [
    "SCHEMA_VERSION",
    "DatabaseLockedError",
    "MemMapFrame",
    "ResultsDB",
    "RunRecord",
    "Snapshot",
    "add_export_parser",
    "add_runs_parser",
    "cmd_export",
    "cmd_runs",
    "default_db_path",
    "format_sim_time",
    "interrupted_message",
]

SCHEMA_VERSION = 1
EXPORT_FORMATS = ("csv", "parquet")
_EXACT_INT = 2**53  # largest magnitude a DOUBLE holds exactly for every integer below it

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    seq BIGINT NOT NULL,
    scenario VARCHAR NOT NULL,
    config VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    seed BIGINT NOT NULL,
    version VARCHAR NOT NULL,
    started TIMESTAMP NOT NULL,
    finished TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    sim_ns BIGINT NOT NULL,
    wall_s DOUBLE NOT NULL,
    events BIGINT NOT NULL,
    summary VARCHAR NOT NULL,
    n_samples INTEGER NOT NULL,
    compare_group VARCHAR,
    compare_label VARCHAR
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id VARCHAR NOT NULL, idx INTEGER NOT NULL, metric VARCHAR NOT NULL,
    dtype VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS sample_times (
    run_id VARCHAR NOT NULL, i INTEGER NOT NULL, t_ns BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    run_id VARCHAR NOT NULL, i INTEGER NOT NULL, t_ns BIGINT NOT NULL,
    metric VARCHAR NOT NULL, value DOUBLE
);
CREATE TABLE IF NOT EXISTS snapshots (
    run_id VARCHAR NOT NULL, idx INTEGER NOT NULL, t_ns BIGINT NOT NULL,
    label VARCHAR NOT NULL, seq INTEGER NOT NULL, file VARCHAR NOT NULL, text VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS memmap_frames (
    run_id VARCHAR NOT NULL, idx INTEGER NOT NULL, t_ns BIGINT NOT NULL,
    resolution VARCHAR NOT NULL, npages BIGINT NOT NULL, pageblock_order INTEGER NOT NULL,
    kinds VARCHAR NOT NULL, info VARCHAR NOT NULL, data BLOB NOT NULL, pageblock_mt BLOB NOT NULL
);
"""

#: every table that holds rows of a run (atomicity is checked against all of them)
RUN_TABLES = ("runs", "metrics", "sample_times", "samples", "snapshots", "memmap_frames")


class DatabaseLockedError(FragsimError):
    """Another process holds the results database open for writing, for longer than we wait."""


def default_db_path() -> Path:
    """The results database's file: ``$FRAGSIM_DB``, else
    ``$XDG_DATA_HOME/fragsim/results.duckdb``, else ``~/.local/share/fragsim/results.duckdb``
    (a relative ``XDG_DATA_HOME`` is ignored, as the XDG spec says)."""
    env = os.environ.get("FRAGSIM_DB")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "fragsim" / "results.duckdb"


def format_sim_time(ns: int) -> str:
    """Simulated time as ``[Nd ]HH:MM:SS[.mmm]`` (``1d 02:03:04``, ``00:00:01.500``)."""
    sign = "-" if ns < 0 else ""
    ns = abs(int(ns))
    secs, rem = divmod(ns, 1_000_000_000)
    days, secs = divmod(secs, 86400)
    h, secs = divmod(secs, 3600)
    m, s = divmod(secs, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    if rem:
        text += f".{rem // 1_000_000:03d}"
    if days:
        text = f"{days}d {text}"
    return sign + text


def interrupted_message(sim_ns: int, reason: str | BaseException) -> str:
    """What the CLI prints when a run stops before its end: ``run interrupted at 1d 02:03:04 of
    simulated time (KeyboardInterrupt): nothing was recorded``."""
    if isinstance(reason, BaseException):
        msg = str(reason)
        reason = type(reason).__name__ + (f": {msg}" if msg else "")
    return (
        f"run interrupted at {format_sim_time(sim_ns)} of simulated time ({reason}): "
        "nothing was recorded"
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """``/proc``-format files taken at simulated time ``t_ns``: file name -> text
    (``buddyinfo``, ``pagetypeinfo``, ``zoneinfo``, ``vmstat``, the names of ``fragsim
    snapshot``)."""

    t_ns: int
    label: str
    files: dict[str, str]


MEMMAP_RESOLUTIONS = ("page", "pageblock")


@dataclass(frozen=True, slots=True, eq=False)
class MemMapFrame:
    """The memory map of a simulated machine at ``t_ns``, as a run stores it
    (:func:`fragsim.viz.memmap.memmap_frame` takes one, :func:`fragsim.viz.memmap.frame_memmap`
    turns it back into a map). ``resolution`` ``page``: ``data`` is ``uint8[npages]``, the kind
    of each pfn; ``pageblock`` (big machines): ``data`` is ``uint32[nblocks, len(kinds)]``, the
    pages of each kind in each pageblock. ``kinds`` names the kind of each value (so a map
    recorded by another fragsim still reads right); ``pageblock_mt`` is ``int8[nblocks]``, each
    pageblock's migratetype; ``info`` is JSON-able (source, zones, driver names)."""

    t_ns: int
    resolution: str
    npages: int
    pageblock_order: int
    kinds: tuple[str, ...]
    data: npt.NDArray[Any]
    pageblock_mt: npt.NDArray[np.int8]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def nblocks(self) -> int:
        """Pageblocks the map covers (the last one may be partial)."""
        return -(-int(self.npages) // (1 << int(self.pageblock_order)))

    def check(self, what: str = "MemMapFrame") -> None:
        """ConfigError naming the field that does not fit the others."""
        if self.resolution not in MEMMAP_RESOLUTIONS:
            raise ConfigError(
                f"{what}.resolution: expected one of {', '.join(MEMMAP_RESOLUTIONS)}, "
                f"got {self.resolution!r}"
            )
        if not 0 <= int(self.pageblock_order) < 32 or int(self.npages) < 0:
            raise ConfigError(
                f"{what}: pageblock_order {self.pageblock_order} / npages {self.npages} "
                "out of range"
            )
        if not self.kinds or not all(isinstance(k, str) for k in self.kinds):
            raise ConfigError(f"{what}.kinds: expected the names of the kinds, got {self.kinds!r}")
        shape: tuple[int, ...]
        dtype: np.dtype[Any]
        data = np.asarray(self.data)
        if self.resolution == "page":
            shape, dtype = (int(self.npages),), np.dtype(np.uint8)
        else:
            shape, dtype = (self.nblocks, len(self.kinds)), np.dtype(np.uint32)
        if data.shape != shape or data.dtype != dtype:
            raise ConfigError(
                f"{what}.data: expected {dtype}{list(shape)}, got {data.dtype}{list(data.shape)}"
            )
        if self.resolution == "page" and data.size and int(data.max()) >= len(self.kinds):
            raise ConfigError(f"{what}.data: a kind value beyond the {len(self.kinds)} kinds")
        mt = np.asarray(self.pageblock_mt)
        if mt.shape != (self.nblocks,) or mt.dtype != np.int8:
            raise ConfigError(
                f"{what}.pageblock_mt: expected int8[{self.nblocks}], got {mt.dtype}"
                f"{list(mt.shape)}"
            )


def _pack(a: npt.NDArray[Any]) -> bytes:
    return zlib.compress(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes(), 6)


def _unpack(blob: bytes, dtype: Any, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    dt = np.dtype(dtype).newbyteorder("<")
    return np.frombuffer(zlib.decompress(blob), dtype=dt).astype(np.dtype(dtype)).reshape(shape)


def _fragsim_version() -> str:
    from fragsim import __version__

    return __version__


@dataclass(slots=True)
class RunRecord:
    """One finished run, as recorded. ``samples`` is ``{"t_ns": int64[n], metric: int64[n] or
    float64[n], ...}``; ``config`` and ``summary`` are JSON-able; ``started``/``finished`` are
    timezone-aware (a naive datetime is taken as local time; :meth:`ResultsDB.load` returns
    UTC); ``memmaps`` are the memory maps taken through the run, in time order."""

    scenario: str
    config: dict[str, Any]
    config_hash: str
    seed: int
    started: _dt.datetime
    finished: _dt.datetime
    sim_ns: int
    wall_s: float
    events: int
    summary: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    snapshots: list[Snapshot] = field(default_factory=list)
    memmaps: list[MemMapFrame] = field(default_factory=list)
    compare_group: str | None = None
    compare_label: str | None = None
    status: str = "ok"
    version: str = field(default_factory=_fragsim_version)


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"RunRecord.{what}: expected a JSON-able dict: {e}") from None


def _utc_naive(t: _dt.datetime, what: str) -> _dt.datetime:
    if not isinstance(t, _dt.datetime):
        raise ConfigError(f"RunRecord.{what}: expected a datetime, got {t!r}")
    return t.astimezone(_dt.UTC).replace(tzinfo=None)


def _check_samples(
    samples: dict[str, npt.NDArray[Any]],
) -> tuple[npt.NDArray[np.int64], list[str], list[str], npt.NDArray[np.float64]]:
    """(t_ns, metric names, their dtypes, values[metric, sample]) of a run's samples, or a
    ConfigError naming the metric that is not a 1-D int/float array of the length of t_ns."""
    if not samples:
        return np.zeros(0, np.int64), [], [], np.zeros((0, 0))
    if "t_ns" not in samples:
        raise ConfigError("RunRecord.samples: expected a 't_ns' array (the sample times)")
    t = np.asarray(samples["t_ns"])
    if t.ndim != 1 or t.dtype.kind not in "iu":
        raise ConfigError(f"RunRecord.samples.t_ns: expected a 1-D integer array, got {t.dtype}")
    n = len(t)
    names: list[str] = []
    dtypes: list[str] = []
    cols: list[npt.NDArray[np.float64]] = []
    for name, arr in samples.items():
        if name == "t_ns":
            continue
        a = np.asarray(arr)
        if a.ndim != 1 or len(a) != n:
            raise ConfigError(
                f"RunRecord.samples.{name}: expected {n} values (one per t_ns), got shape {a.shape}"
            )
        if a.dtype.kind in "iub":
            if n and int(np.max(np.abs(a.astype(np.int64)))) > _EXACT_INT:
                raise ConfigError(
                    f"RunRecord.samples.{name}: integer values beyond 2**53 are not stored exactly"
                )
            dtypes.append("int64")
        elif a.dtype.kind == "f":
            dtypes.append("float64")
        else:
            raise ConfigError(
                f"RunRecord.samples.{name}: expected integers or floats, got {a.dtype}"
            )
        names.append(str(name))
        cols.append(a.astype(np.float64))
    values = np.stack(cols) if cols else np.zeros((0, n))
    return t.astype(np.int64), names, dtypes, values


class ResultsDB:
    """The results database file at ``path`` (default :func:`default_db_path`), created with
    its schema on first use. Connections are opened per call and closed again."""

    def __init__(self, path: Path | str | None = None, *, lock_timeout: float = 5.0) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.lock_timeout = lock_timeout
        if self.path.exists() and self.path.is_dir():
            raise ConfigError(f"{self.path}: expected a results database file, got a directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as con:
            con.execute(_SCHEMA)
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                con.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?), ('created_by', ?)",
                    [str(SCHEMA_VERSION), f"fragsim {_fragsim_version()}"],
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise ConfigError(
                    f"{self.path}: results database schema version {row[0]}; this fragsim "
                    f"reads version {SCHEMA_VERSION}"
                )

    def __repr__(self) -> str:
        return f"ResultsDB({str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(
        self, *, read_only: bool, lock_timeout: float | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation; waits up to ``lock_timeout`` s (default
        ``self.lock_timeout``) for another process's lock, then raises DatabaseLockedError."""
        wait = self.lock_timeout if lock_timeout is None else lock_timeout
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as e:
                msg = str(e)
                if "lock" not in msg.lower():
                    raise ConfigError(
                        f"{self.path}: cannot open the results database: {msg}"
                    ) from None
                if time.monotonic() >= deadline:
                    holder = re.search(r"\(PID \d+\)", msg)
                    who = f"another process {holder.group(0)}" if holder else "another process"
                    raise DatabaseLockedError(
                        f"{self.path}: the results database is in use by {who}; waited "
                        f"{wait:g} s (DuckDB allows one writing process at a time)"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        try:
            yield con
        finally:
            con.close()

    def connect(
        self, *, read_only: bool, lock_timeout: float | None = None
    ) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection for one operation, with the lock waiting of every other call (for
        modules that keep their own tables in the same file: fragsim.sweep)."""
        return self._connect(read_only=read_only, lock_timeout=lock_timeout)

    # -- writing -------------------------------------------------------------------------------

    def record(
        self, run: RunRecord, *, lock_timeout: float | None = None, once: bool = False
    ) -> str:
        """Write ``run`` in one transaction and return its new id (12 hex digits). On any
        exception nothing of the run remains. ``lock_timeout`` (default: the database's) is how
        long to wait for another process's lock; a long run may want to wait longer. With
        ``once``, a run already recorded with the same config hash, seed and version (status
        ok) is not recorded again: its id is returned (checked inside the writing transaction,
        which DuckDB's file lock makes exclusive across processes)."""
        t, names, dtypes, values = _check_samples(run.samples)
        config = _json(run.config, "config")
        summary = _json(run.summary, "summary")
        started = _utc_naive(run.started, "started")
        finished = _utc_naive(run.finished, "finished")
        for s in run.snapshots:
            if not isinstance(s, Snapshot) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in s.files.items()
            ):
                raise ConfigError(
                    "RunRecord.snapshots: expected Snapshot(t_ns, label, {file: text}), "
                    f"got {s!r}"
                )
        frames = self._frame_rows(run.memmaps)
        run_id = uuid.uuid4().hex[:12]
        with self._connect(read_only=False, lock_timeout=lock_timeout) as con:
            con.begin()
            try:
                if once:
                    found = con.execute(
                        "SELECT run_id FROM runs WHERE config_hash = ? AND seed = ? "
                        "AND version = ? AND status = 'ok' ORDER BY seq LIMIT 1",
                        [run.config_hash, int(run.seed), run.version],
                    ).fetchone()
                    if found is not None:
                        con.rollback()
                        return str(found[0])
                self._insert_run(con, run_id, run, config, summary, started, finished, len(t))
                self._insert_samples(con, run_id, t, names, dtypes, values)
                self._insert_snapshots(con, run_id, run.snapshots)
                if frames:
                    con.executemany(
                        "INSERT INTO memmap_frames VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(run_id, *f) for f in frames],
                    )
                con.commit()
            except BaseException:
                con.rollback()
                raise
        return run_id

    def _insert_run(
        self,
        con: duckdb.DuckDBPyConnection,
        run_id: str,
        run: RunRecord,
        config: str,
        summary: str,
        started: _dt.datetime,
        finished: _dt.datetime,
        n_samples: int,
    ) -> None:
        row = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM runs").fetchone()
        seq = int(row[0]) if row else 1
        con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                seq,
                run.scenario,
                config,
                run.config_hash,
                int(run.seed),
                run.version,
                started,
                finished,
                run.status,
                int(run.sim_ns),
                float(run.wall_s),
                int(run.events),
                summary,
                n_samples,
                run.compare_group,
                run.compare_label,
            ],
        )

    def _insert_samples(
        self,
        con: duckdb.DuckDBPyConnection,
        run_id: str,
        t: npt.NDArray[np.int64],
        names: list[str],
        dtypes: list[str],
        values: npt.NDArray[np.float64],
    ) -> None:
        n, k = len(t), len(names)
        meta: dict[str, npt.NDArray[Any]] = {
            "idx": np.arange(k, dtype=np.int32),
            "metric": np.array(names, dtype=object),
            "dtype": np.array(dtypes, dtype=object),
        }
        times: dict[str, npt.NDArray[Any]] = {"i": np.arange(n, dtype=np.int32), "t_ns": t}
        rows: dict[str, npt.NDArray[Any]] = {
            "i": np.tile(np.arange(n, dtype=np.int32), k),
            "t_ns": np.tile(t, k),
            "metric": np.repeat(np.array(names, dtype=object), n),
            "value": values.reshape(-1),
        }
        views: list[tuple[int, dict[str, npt.NDArray[Any]], str]] = [
            (k, meta, "INSERT INTO metrics SELECT ?, idx, metric, dtype FROM _v"),
            (n, times, "INSERT INTO sample_times SELECT ?, i, t_ns FROM _v"),
            (n * k, rows, "INSERT INTO samples SELECT ?, i, t_ns, metric, value FROM _v"),
        ]
        for nrows, view, sql in views:
            if nrows == 0:
                continue
            con.register("_v", view)
            try:
                con.execute(sql, [run_id])
            finally:
                con.unregister("_v")

    @staticmethod
    def _frame_rows(frames: list[MemMapFrame]) -> list[tuple[Any, ...]]:
        """The memmap_frames rows of ``frames`` (without the run id), checked and compressed
        before the transaction starts."""
        rows = []
        for idx, f in enumerate(frames):
            if not isinstance(f, MemMapFrame):
                raise ConfigError(f"RunRecord.memmaps[{idx}]: expected a MemMapFrame, got {f!r}")
            f.check(f"RunRecord.memmaps[{idx}]")
            rows.append(
                (
                    idx,
                    int(f.t_ns),
                    f.resolution,
                    int(f.npages),
                    int(f.pageblock_order),
                    _json(list(f.kinds), f"memmaps[{idx}].kinds"),
                    _json(f.info, f"memmaps[{idx}].info"),
                    _pack(f.data),
                    _pack(f.pageblock_mt),
                )
            )
        return rows

    def _insert_snapshots(
        self, con: duckdb.DuckDBPyConnection, run_id: str, snapshots: list[Snapshot]
    ) -> None:
        rows = [
            (run_id, idx, int(s.t_ns), s.label, seq, name, text)
            for idx, s in enumerate(snapshots)
            for seq, (name, text) in enumerate(s.files.items())
        ]
        # a snapshot with no files still marks its time: one row with an empty file name
        rows += [
            (run_id, idx, int(s.t_ns), s.label, -1, "", "")
            for idx, s in enumerate(snapshots)
            if not s.files
        ]
        if rows:
            con.executemany("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    # -- reading -------------------------------------------------------------------------------

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The recorded runs, newest first (by start time, then by recording order)."""
        sql = (
            "SELECT run_id, scenario, seed, config_hash, version, started, finished, status, "
            "sim_ns, wall_s, events, compare_group, compare_label FROM runs "
            "ORDER BY started DESC, seq DESC"
        )
        params: list[Any] = []
        if limit is not None:
            if limit < 0:
                raise ConfigError(f"--limit: expected a count >= 0, got {limit}")
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._connect(read_only=True) as con:
            rows = con.execute(sql, params).fetchall()
        return [
            {
                "id": r[0],
                "scenario": r[1],
                "seed": r[2],
                "hash": r[3][:8],
                "config_hash": r[3],
                "version": r[4],
                "started": r[5].replace(tzinfo=_dt.UTC),
                "finished": r[6].replace(tzinfo=_dt.UTC),
                "status": r[7],
                "sim_ns": r[8],
                "wall_s": r[9],
                "events": r[10],
                "compare_group": r[11],
                "compare_label": r[12],
            }
            for r in rows
        ]

    def latest(self) -> str | None:
        """The id of the newest run, or None when there is none."""
        newest = self.runs(limit=1)
        return str(newest[0]["id"]) if newest else None

    def resolve(self, run_id: str) -> str:
        """The full id of the run named by ``run_id``: a full id, a unique prefix, or
        ``latest``; ConfigError when it names no run or several."""
        if not isinstance(run_id, str) or not run_id:
            raise ConfigError(f"{self.path}: expected a run id (see fragsim runs), got {run_id!r}")
        if run_id == "latest":
            newest = self.latest()
            if newest is None:
                raise ConfigError(f"{self.path}: run 'latest': no runs recorded yet")
            return newest
        with self._connect(read_only=True) as con:
            ids = [
                r[0]
                for r in con.execute(
                    "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id LIMIT 6",
                    [run_id.lower()],
                ).fetchall()
            ]
        if not ids:
            raise ConfigError(f"{self.path}: no run {run_id!r} (fragsim runs lists the ids)")
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise ConfigError(
                f"{self.path}: run id prefix {run_id!r} is ambiguous: it matches {shown}"
            )
        return str(ids[0])

    def load(self, run_id: str) -> RunRecord:
        """The run ``run_id`` (a full id, a unique prefix or ``latest``) as recorded."""
        rid = self.resolve(run_id)
        with self._connect(read_only=True) as con:
            r = con.execute(
                "SELECT scenario, config, config_hash, seed, version, started, finished, status, "
                "sim_ns, wall_s, events, summary, compare_group, compare_label "
                "FROM runs WHERE run_id = ?",
                [rid],
            ).fetchone()
            assert r is not None
            samples = self._samples_frame(con, rid)
            snaps = con.execute(
                "SELECT idx, t_ns, label, file, text FROM snapshots WHERE run_id = ? "
                "ORDER BY idx, seq",
                [rid],
            ).fetchall()
            memmaps = self._memmap_frames(con, rid)
        snapshots: list[Snapshot] = []
        for idx, t_ns, label, name, text in snaps:
            if idx == len(snapshots):
                snapshots.append(Snapshot(int(t_ns), label, {}))
            if name:
                snapshots[idx].files[name] = text
        return RunRecord(
            scenario=r[0],
            config=json.loads(r[1]),
            config_hash=r[2],
            seed=int(r[3]),
            version=r[4],
            started=r[5].replace(tzinfo=_dt.UTC),
            finished=r[6].replace(tzinfo=_dt.UTC),
            status=r[7],
            sim_ns=int(r[8]),
            wall_s=float(r[9]),
            events=int(r[10]),
            summary=json.loads(r[11]),
            samples=samples,
            snapshots=snapshots,
            memmaps=memmaps,
            compare_group=r[12],
            compare_label=r[13],
        )

    def memmap_frames(self, run_id: str) -> list[MemMapFrame]:
        """The memory maps recorded through run ``run_id``, in time order (none for a run
        recorded without them)."""
        rid = self.resolve(run_id)
        with self._connect(read_only=True) as con:
            return self._memmap_frames(con, rid)

    @staticmethod
    def _memmap_frames(con: duckdb.DuckDBPyConnection, rid: str) -> list[MemMapFrame]:
        has_table = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'memmap_frames'"
        ).fetchone()
        if not has_table or not has_table[0]:  # a file no fragsim with frames has written to
            return []
        rows = con.execute(
            "SELECT t_ns, resolution, npages, pageblock_order, kinds, info, data, pageblock_mt "
            "FROM memmap_frames WHERE run_id = ? ORDER BY idx",
            [rid],
        ).fetchall()
        out = []
        for t_ns, res, npages, pbo, kinds, info, data, mt in rows:
            names = tuple(json.loads(kinds))
            nblocks = -(-int(npages) // (1 << int(pbo)))
            if res == "page":
                arr = _unpack(data, np.uint8, (int(npages),))
            else:
                arr = _unpack(data, np.uint32, (nblocks, len(names)))
            out.append(
                MemMapFrame(
                    t_ns=int(t_ns),
                    resolution=str(res),
                    npages=int(npages),
                    pageblock_order=int(pbo),
                    kinds=names,
                    data=arr,
                    pageblock_mt=_unpack(mt, np.int8, (nblocks,)),
                    info=json.loads(info),
                )
            )
        return out

    def samples_frame(self, run_id: str) -> dict[str, npt.NDArray[Any]]:
        """The run's samples, wide: ``{"t_ns": int64[n], metric: int64[n] or float64[n], ...}``
        in the order they were recorded."""
        rid = self.resolve(run_id)
        with self._connect(read_only=True) as con:
            return self._samples_frame(con, rid)

    @staticmethod
    def _samples_frame(con: duckdb.DuckDBPyConnection, rid: str) -> dict[str, npt.NDArray[Any]]:
        times = con.execute(
            "SELECT t_ns FROM sample_times WHERE run_id = ? ORDER BY i", [rid]
        ).fetchnumpy()
        metrics = con.execute(
            "SELECT metric, dtype FROM metrics WHERE run_id = ? ORDER BY idx", [rid]
        ).fetchall()
        t = np.asarray(times["t_ns"], dtype=np.int64)
        if not metrics and len(t) == 0:
            return {}
        out: dict[str, npt.NDArray[Any]] = {"t_ns": t}
        if metrics:
            vals = con.execute(
                # NumPy NaN goes in as NULL (DuckDB's scan of float arrays); NULL comes back NaN
                "SELECT coalesce(s.value, 'NaN'::DOUBLE) AS value FROM samples s JOIN metrics m "
                "ON s.run_id = m.run_id AND s.metric = m.metric "
                "WHERE s.run_id = ? ORDER BY m.idx, s.i",
                [rid],
            ).fetchnumpy()["value"]
            grid = np.asarray(vals, dtype=np.float64).reshape(len(metrics), len(t))
            for (name, dtype), col in zip(metrics, grid, strict=True):
                out[name] = col.astype(np.int64) if dtype == "int64" else col
        return out

    # -- export --------------------------------------------------------------------------------

    def export(self, run_id: str, fmt: str, out: Path | str) -> list[Path]:
        """Write run ``run_id`` into directory ``out``: ``samples.csv`` or ``samples.parquet``
        (wide, one row per sample, written by DuckDB's COPY; a NaN is an empty cell / NULL),
        ``config.json``, ``summary.json``, ``run.json`` (id, seed, hash, version, times,
        snapshot index) and one directory per snapshot under ``snapshots/`` holding its files
        (the layout of ``fragsim snapshot``, so ``fragsim inspect`` reads them). Returns the
        files written."""
        if fmt not in EXPORT_FORMATS:
            raise ConfigError(
                f"export: --format: expected one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}"
            )
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"export: {out}: expected a directory, got a file")
        rid = self.resolve(run_id)
        rec = self.load(rid)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []

        samples_path = out / f"samples.{fmt}"
        wide = rec.samples or {"t_ns": np.zeros(0, np.int64)}
        opts = "FORMAT CSV, HEADER" if fmt == "csv" else "FORMAT PARQUET"
        with duckdb.connect(":memory:") as con:
            con.register("_wide", wide)
            path_sql = str(samples_path).replace("'", "''")
            con.execute(f"COPY (SELECT * FROM _wide) TO '{path_sql}' ({opts})")
        written.append(samples_path)

        def write(path: Path, text: str) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)

        write(out / "config.json", json.dumps(rec.config, indent=2) + "\n")
        write(out / "summary.json", json.dumps(rec.summary, indent=2) + "\n")
        snap_index = []
        for idx, s in enumerate(rec.snapshots):
            d = f"{idx:03d}-{_safe_name(s.label) or 'snapshot'}"
            snap_index.append({"dir": f"snapshots/{d}", "t_ns": s.t_ns, "label": s.label})
            for name, text in s.files.items():
                write(out / "snapshots" / d / _safe_name(name), text)
        meta = {
            "id": rid,
            "scenario": rec.scenario,
            "seed": rec.seed,
            "config_hash": rec.config_hash,
            "version": rec.version,
            "started": rec.started.isoformat(),
            "finished": rec.finished.isoformat(),
            "status": rec.status,
            "sim_ns": rec.sim_ns,
            "wall_s": rec.wall_s,
            "events": rec.events,
            "compare_group": rec.compare_group,
            "compare_label": rec.compare_label,
            "samples": samples_path.name,
            "snapshots": snap_index,
        }
        write(out / "run.json", json.dumps(meta, indent=2) + "\n")
        return written


def _safe_name(name: str) -> str:
    """``name`` as one path component: no separators, no leading dots."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", name).lstrip(".")


# -- CLI ---------------------------------------------------------------------------------------


def _db_help() -> str:
    return (
        "results database (default: $FRAGSIM_DB, else "
        "$XDG_DATA_HOME/fragsim/results.duckdb, i.e. ~/.local/share/fragsim/results.duckdb)"
    )


def add_runs_parser(sub: Any) -> argparse.ArgumentParser:
    """``fragsim runs [--db PATH] [--limit N]``."""
    p: argparse.ArgumentParser = sub.add_parser("runs", help="list the recorded runs, newest first")
    p.add_argument("--db", metavar="PATH", help=_db_help())
    p.add_argument("--limit", type=int, metavar="N", help="show the N newest runs only")
    p.set_defaults(func=cmd_runs)
    return p


def cmd_runs(args: argparse.Namespace) -> int:
    """Print the runs of the results database as a table."""
    db = ResultsDB(args.db)
    rows = db.runs(limit=args.limit)
    if not rows:
        print(f"no runs in {db.path}")
        return 0
    header = (
        "ID",
        "SCENARIO",
        "SEED",
        "HASH",
        "VERSION",
        "STARTED (UTC)",
        "STATUS",
        "SIM TIME",
        "WALL",
        "EVENTS",
        "COMPARE",
    )
    table = [header]
    for r in rows:
        compare = ""
        if r["compare_group"] is not None:
            compare = f"{r['compare_group']}:{r['compare_label'] or ''}"
        table.append(
            (
                r["id"],
                r["scenario"],
                str(r["seed"]),
                r["hash"],
                r["version"],
                r["started"].strftime("%Y-%m-%d %H:%M:%S"),
                r["status"],
                format_sim_time(r["sim_ns"]),
                f"{r['wall_s']:.1f}s",
                str(r["events"]),
                compare,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {2, 7, 8, 9}
    for row in table:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    return 0


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    """``fragsim export RUN [--db PATH] --format csv|parquet [-o DIR]``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "export", help="export one run: samples (csv/parquet), config, summary, snapshots"
    )
    p.add_argument("run", metavar="RUN", help="run id, a unique prefix of one, or 'latest'")
    p.add_argument("--db", metavar="PATH", help=_db_help())
    p.add_argument("--format", dest="format", choices=EXPORT_FORMATS, required=True)
    p.add_argument(
        "-o", "--output", metavar="DIR", help="output directory (default: ./fragsim-RUNID)"
    )
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Export one run into a directory and list the files written."""
    db = ResultsDB(args.db)
    rid = db.resolve(args.run)
    out = Path(args.output) if args.output else Path(f"fragsim-{rid}")
    for path in db.export(rid, args.format, out):
        print(path)
    print(f"fragsim export: run {rid} written to {out}", file=sys.stderr)
    return 0
