"""The workload registry: a stand-in for the one ``fragsim.scenario.engine`` provides.

A workload is a class (or a function) called as ``Workload(sim, **options)``; it registers
itself by name with one line next to its definition::

    @register_workload("android")
    class Android: ...

``fragsim.scenario.config`` reads ``fragsim.scenario.engine.WORKLOADS`` when that module exists
and this registry otherwise; once the engine provides ``WORKLOADS`` and ``register_workload``,
this module can go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fragsim.errors import ConfigError

__all__ = ["WORKLOADS", "register_workload"]

#: name -> workload class or function, filled by @register_workload
WORKLOADS: dict[str, Callable[..., Any]] = {}

W = TypeVar("W", bound=Callable[..., Any])


def register_workload(name: str) -> Callable[[W], W]:
    """Decorator: make the workload available to scenario files by ``name``."""

    def deco(obj: W) -> W:
        if name in WORKLOADS and WORKLOADS[name] is not obj:
            raise ConfigError(f"workload {name!r} registered twice")
        WORKLOADS[name] = obj
        return obj

    return deco
