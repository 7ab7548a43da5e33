"""Memory users: the drivers and subsystems that hold a device's memory (balloon, zsmalloc /
zram, GPU, slab, page cache, anonymous memory). Each is a plugin in one file under this package,
built on fragsim's public API only, and registered with one line next to its class::

    @register_driver("gpu")
    class GpuDriver(MovableDriver): ...

``MovableDriver`` (fragsim/drivers/base.py) carries the seed's switch: ``movable=True`` allocates
the driver's pages __GFP_MOVABLE and registers its movable_operations (a kernel with the
framework); ``movable=False`` allocates them unmovable and compaction cannot touch them (a
kernel without it).

The public API a memory user builds on (built-in or a user's own): ``fragsim`` itself,
``fragsim.drivers`` (``MemoryUser``, ``MovableDriver``, ``register_driver``) and the modules named
after the kernel's: ``fragsim.mm.gfp``, ``page``, ``mmzone``, ``migrate``, ``machine``, ``swap``,
``workingset``, ``slub``. ``fragsim.mm.internal`` (the state layout) is not part of it.
"""

from __future__ import annotations

from fragsim.drivers.base import DRIVERS, MemoryUser, MovableDriver, driver_class, register_driver

__all__ = ["DRIVERS", "MemoryUser", "MovableDriver", "driver_class", "register_driver"]
