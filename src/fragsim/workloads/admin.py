"""An administrator's commands to the guest on the simulated clock: writes to
``/proc/sys/vm/compact_memory`` (compact every zone: Machine.compact_memory) and
``/proc/sys/vm/drop_caches`` (1: the page cache's clean pages; 2: the slab shrinkers; 3:
both), as experiment scripts do between their steps."""

from __future__ import annotations

from typing import Any

from fragsim.drivers.pagecache import PageCache
from fragsim.errors import ConfigError
from fragsim.mm import vmscan
from fragsim.mm.gfp import GFP_KERNEL
from fragsim.scenario.engine import Simulation, Workload, register_workload

__all__ = ["Admin"]


@register_workload("admin")
class Admin(Workload):
    """An administrator writing compact_memory and drop_caches at given times.
    ``compact_memory`` (on or off) at ``compact_memory_at_ns``; ``drop_caches`` (the value
    written: 1, 2 or 3; 0 never) at ``drop_caches_at_ns``."""

    def __init__(
        self,
        sim: Simulation,
        *,
        compact_memory: bool = False,
        compact_memory_at_ns: int = 0,
        drop_caches: int = 0,
        drop_caches_at_ns: int = 0,
    ) -> None:
        super().__init__(sim)
        if drop_caches not in (0, 1, 2, 3):
            raise ConfigError(
                f"workload admin: drop_caches: expected 0, 1, 2 or 3, got {drop_caches}"
            )
        if compact_memory_at_ns < 0 or drop_caches_at_ns < 0:
            raise ConfigError("workload admin: the times must be >= 0")
        self.compact = compact_memory
        self.compact_at = compact_memory_at_ns
        self.drop_at = drop_caches_at_ns
        self.drop = drop_caches
        self.done: dict[str, int] = {}

    def start(self) -> None:
        now = self.sim.now
        if self.drop:
            self.sim.at(now + self.drop_at, self.drop_caches)
        if self.compact:
            self.sim.at(now + self.compact_at, self.compact_memory)

    def compact_memory(self) -> None:
        self.sim.machine.compact_memory()
        self.done["compact_memory"] = self.done.get("compact_memory", 0) + 1

    def drop_caches(self) -> None:
        """drop_caches_sysctl_handler(): 1 drops the clean page cache, 2 shrinks slab until
        the shrinkers free nothing more (drop_slab)."""
        m = self.sim.machine
        if self.drop & 1:
            for pc in self.sim.drivers_of(PageCache):
                pc.drop_caches()  # type: ignore[attr-defined]
        if self.drop & 2:
            m.count_vm_event("drop_slab")
            for nid in range(m.nr_nodes):
                while vmscan.shrink_slab(m, GFP_KERNEL, nid, 0) > 10:
                    pass
        self.done["drop_caches"] = self.done.get("drop_caches", 0) + 1

    def summary(self) -> dict[str, Any]:
        return dict(self.done)
