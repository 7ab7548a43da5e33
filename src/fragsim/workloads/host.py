"""The host side of a virtual machine: the hypervisor's monitor commands to the guest on the
simulated clock. Models QEMU's ``balloon SIZE`` command: the host asks the guest to be left
with SIZE of memory, so the virtio-balloon device's target (``num_pages``) becomes the guest's
RAM minus SIZE, and the guest's driver inflates towards it (fragsim/drivers/balloon.py: its
work item runs now and, while it is not done, again every ``retry_ns``, as
update_balloon_size_func requeues itself after fill_balloon runs out of memory).
"""

from __future__ import annotations

from typing import Any

from fragsim.drivers.balloon import VirtioBalloon
from fragsim.errors import ConfigError
from fragsim.scenario.engine import MS, Simulation, Workload, register_workload

__all__ = ["Host"]

MIB_PAGES = 256


@register_workload("host")
class Host(Workload):
    """The hypervisor's balloon command (QEMU's ``balloon SIZE``) at a given time.
    At ``balloon_at_ns`` the host runs ``balloon balloon_mib``: the guest should be left with
    ``balloon_mib`` MiB. ``driver`` names the balloon instance (default: the first
    virtio-balloon of the scenario)."""

    def __init__(
        self,
        sim: Simulation,
        *,
        balloon_at_ns: int = 0,
        balloon_mib: int = 512,
        driver: str = "",
        retry_ns: int = 200 * MS,
    ) -> None:
        super().__init__(sim)
        if balloon_mib < 0 or balloon_at_ns < 0 or retry_ns <= 0:
            raise ConfigError(
                "workload host: balloon_mib and balloon_at_ns must be >= 0, retry_ns > 0"
            )
        self.at_ns = balloon_at_ns
        self.mib = balloon_mib
        self.retry_ns = retry_ns
        if driver:
            b = sim.driver(driver)
        else:
            found = sim.drivers_of(VirtioBalloon)
            if not found:
                raise ConfigError("workload host: the scenario has no virtio-balloon driver")
            b = found[0]
        if not isinstance(b, VirtioBalloon):
            raise ConfigError(f"workload host: driver {driver!r} is not a virtio-balloon")
        self.balloon = b
        self.done_ns = -1

    def start(self) -> None:
        self.sim.at(self.sim.now + self.at_ns, self.command)

    def command(self) -> None:
        """``balloon SIZE``: the target is the guest's RAM (its present pages) minus SIZE."""
        ram = self.sim.machine.present_pages()
        self.balloon.set_target(max(ram - self.mib * MIB_PAGES, 0))
        self.work()

    def work(self) -> None:
        self.balloon.work()
        if self.balloon.work_pending:
            self.sim.after(self.retry_ns, self.work)
        elif self.done_ns < 0:
            self.done_ns = self.sim.now

    def summary(self) -> dict[str, Any]:
        b = self.balloon
        return {
            "balloon_target_pages": b.num_pages,
            "balloon_actual_pages": b.actual,
            "inflated_at_ns": self.done_ns,
        }
