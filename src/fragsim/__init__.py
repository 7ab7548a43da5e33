"""fragsim: simulate, explain and what-if Linux physical-memory fragmentation, faithful to the
Linux 6.1 page allocator.

>>> from fragsim import Machine, GFP_KERNEL, vmstat
>>> m = Machine("flat:65536", nr_cpus=1)
>>> pfn = m.alloc_pages(GFP_KERNEL, 3)
>>> m.free_pages(pfn, 3)
>>> vmstat.buddyinfo(m).startswith("Node 0, zone   Normal")
True
"""

from fragsim.drivers import MemoryUser, MovableDriver, register_driver
from fragsim.errors import AllocatorError, ConfigError, FragsimError, InvariantError, ParseError
from fragsim.mm import vmstat
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import (
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    GFP_TRANSHUGE,
    GFP_TRANSHUGE_LIGHT,
    GFP_USER,
    parse_gfp,
    show_gfp_flags,
)
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    ClearPageMovable,
    ClearPagesMovable,
    CompiledPolicy,
    ContractError,
    IsolateMode,
    MigrateMode,
    MigrateResult,
    MigrationCost,
    SetPageMovable,
    SetPagesMovable,
    get_page,
    put_page,
)
from fragsim.mm.page import Page
from fragsim.mm.trace import Tracer
from fragsim.profiles import MachineProfile, NodeSpec, ZoneSpec, machine_profile

__version__ = "0.1.0"

__all__ = [
    "GFP_ATOMIC",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_KERNEL",
    "GFP_NOWAIT",
    "GFP_TRANSHUGE",
    "GFP_TRANSHUGE_LIGHT",
    "GFP_USER",
    "AllocatorError",
    "ClearPageMovable",
    "ClearPagesMovable",
    "CompiledPolicy",
    "ContractError",
    "IsolateMode",
    "MigrateMode",
    "MigrateResult",
    "MigrationCost",
    "MemoryUser",
    "MovableDriver",
    "SetPageMovable",
    "SetPagesMovable",
    "register_driver",
    "ConfigError",
    "FragsimError",
    "InvariantError",
    "Machine",
    "MachineProfile",
    "NodeSpec",
    "Page",
    "ParseError",
    "Tracer",
    "ZoneSpec",
    "check_invariants",
    "get_page",
    "machine_profile",
    "parse_gfp",
    "put_page",
    "show_gfp_flags",
    "vmstat",
]
