"""A sweep's plan in the results database, beside the runs (fragsim.results).

The runs of a sweep are ordinary runs (table ``runs``). What makes them a sweep is kept in two
tables of this module, created in the same DuckDB file on first use::

    sweeps(name, version, scenario, definition JSON, updated)
    sweep_runs(name, setting, label, setting_values JSON, config_hash, seed)

``sweep_runs`` lists every planned run: the setting it belongs to and the (config hash, seed)
that identifies its run in ``runs`` together with ``sweeps.version``. So ``fragsim
sweep-report NAME`` needs nothing but the database, and a run that an earlier sweep or a
plain ``fragsim run`` recorded counts for every sweep that plans it. Starting a sweep of the
same name again replaces its plan (a changed sweep file means a changed plan).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from fragsim.errors import ConfigError
from fragsim.results import ResultsDB
from fragsim.sweep.spec import SweepPlan

__all__ = ["PlanRow", "StoredSweep", "load_plan", "recorded_keys", "save_plan", "sweep_names"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    name VARCHAR PRIMARY KEY, version VARCHAR NOT NULL, scenario VARCHAR NOT NULL,
    definition VARCHAR NOT NULL, updated TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    name VARCHAR NOT NULL, setting INTEGER NOT NULL, label VARCHAR NOT NULL,
    setting_values VARCHAR NOT NULL, config_hash VARCHAR NOT NULL, seed BIGINT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One planned run of a stored sweep."""

    setting: int
    label: str
    #: [(key, value), ...] the setting sets, in order
    values: tuple[tuple[str, Any], ...]
    config_hash: str
    seed: int


@dataclass(frozen=True, slots=True)
class StoredSweep:
    """A sweep as the database has it: its definition (``SweepSpec.to_dict``), the fragsim
    version whose runs it counts, and its planned runs."""

    name: str
    version: str
    scenario: str
    definition: dict[str, Any]
    rows: tuple[PlanRow, ...]


def _version() -> str:
    from fragsim import __version__

    return __version__


def save_plan(db: ResultsDB, plan: SweepPlan) -> None:
    """Store (or replace) the plan of ``plan.spec.name``, in one transaction."""
    spec = plan.spec
    rows = [
        (
            spec.name,
            r.setting.index,
            r.setting.label,
            json.dumps([list(kv) for kv in r.setting.values]),
            r.config_hash,
            r.seed,
        )
        for r in plan.runs
    ]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with db.connect(read_only=False, lock_timeout=60) as con:
        con.execute(_SCHEMA)
        con.begin()
        try:
            con.execute("DELETE FROM sweep_runs WHERE name = ?", [spec.name])
            con.execute("DELETE FROM sweeps WHERE name = ?", [spec.name])
            con.execute(
                "INSERT INTO sweeps VALUES (?, ?, ?, ?, ?)",
                [spec.name, _version(), spec.scenario, json.dumps(spec.to_dict()), now],
            )
            if rows:
                con.executemany("INSERT INTO sweep_runs VALUES (?, ?, ?, ?, ?, ?)", rows)
            con.commit()
        except BaseException:
            con.rollback()
            raise


def recorded_keys(db: ResultsDB, version: str | None = None) -> set[tuple[str, int]]:
    """(config hash, seed) of every run recorded with status ok by fragsim ``version``
    (default: this one)."""
    with db.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT config_hash, seed FROM runs WHERE version = ? AND status = 'ok'",
            [version or _version()],
        ).fetchall()
    return {(str(h), int(s)) for h, s in rows}


def _has_tables(con: Any) -> bool:
    n = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'sweep_runs'"
    ).fetchone()
    return bool(n and n[0])


def sweep_names(db: ResultsDB) -> list[str]:
    """The names of the sweeps stored in ``db``."""
    with db.connect(read_only=True) as con:
        if not _has_tables(con):
            return []
        return [str(r[0]) for r in con.execute("SELECT name FROM sweeps ORDER BY name").fetchall()]


def load_plan(db: ResultsDB, name: str) -> StoredSweep:
    """The stored sweep ``name``; a ConfigError listing the known ones if there is none."""
    with db.connect(read_only=True) as con:
        head = None
        if _has_tables(con):
            head = con.execute(
                "SELECT version, scenario, definition FROM sweeps WHERE name = ?", [name]
            ).fetchone()
        if head is None:
            known = ""
            if _has_tables(con):
                names = con.execute("SELECT name FROM sweeps ORDER BY name").fetchall()
                known = ", ".join(str(r[0]) for r in names)
            raise ConfigError(
                f"{db.path}: no sweep named {name!r} (known: {known or 'none'}; "
                "fragsim sweep records one)"
            )
        rows = con.execute(
            "SELECT setting, label, setting_values, config_hash, seed FROM sweep_runs "
            "WHERE name = ? ORDER BY seed, setting",
            [name],
        ).fetchall()
    return StoredSweep(
        name=name,
        version=str(head[0]),
        scenario=str(head[1]),
        definition=json.loads(head[2]),
        rows=tuple(
            PlanRow(int(s), str(lab), tuple((k, v) for k, v in json.loads(vals)), str(h), int(sd))
            for s, lab, vals, h, sd in rows
        ),
    )
