"""Machine profiles: the memory layout, page-size facts and kernel config of a simulated machine.

A profile is what ``free_area_init()`` and memblock know at boot (Linux 6.1): nodes, zones with
their pfn spans, holes, the ranges memblock keeps reserved, and the ranges freed only after the
initcalls (initrd, unused kernel image). ``x86_64-1g`` is the real QEMU guest of
shared/data/oracle-6.1 (layout read off its zoneinfo, kpageflags and boot log).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from fragsim.errors import ConfigError
from fragsim.mm.mmzone import ZONE_NAMES

__all__ = [
    "KERNELS",
    "PROFILES",
    "KernelProfile",
    "MachineProfile",
    "NodeSpec",
    "ZoneSpec",
    "kernel_profile",
    "machine_profile",
]

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class KernelProfile:
    """The page-allocator rules that changed across kernel versions, as switches.

    ``6.1`` (6.1.192) is the modelled kernel; every switch is on there. Turning a switch off
    applies the older rule to an otherwise-6.1 kernel: a what-if, not a complete older kernel
    (fragsim does not model the other changes those versions had). The switches:

    * ``watermark_boost``: boost_watermark() on fallbacks and the zoneinfo ``boost`` line
      (Linux kernel commit 1c30844d2dfe ("mm: reclaim small amounts of memory when an external
      fragmentation event occurs") (in v5.0)).
    * ``alloc_nofragment``: ALLOC_NOFRAGMENT for ZONE_NORMAL requests on CONFIG_ZONE_DMA32
      kernels (commit 6bb154504f8b ("mm, page_alloc: spread allocations across zones before
      introducing fragmentation") (in v5.0)).
    * ``pcp_high_order``: orders 1..3 and the THP order on the per-CPU lists (commit 44042b449872
      ("mm/page_alloc: allow high-order pages to be stored on the per-cpu lists") (in v5.13));
      off, only order-0 pages are cached per CPU.
    * ``pagetypeinfo_cap``: /proc/pagetypeinfo stops counting a free list at 100000 and prints
      ``>100000`` (commit 93b3a674485f ("mm,vmstat: reduce zone->lock holding time by
      /proc/pagetypeinfo") (in v5.5)).
    * ``trace_pfn_hex``: tracepoints print ``pfn=0x%lx`` (decimal ``pfn=%lu`` before 5.x).
    """

    name: str = "6.1"
    watermark_boost: bool = True
    alloc_nofragment: bool = True
    pcp_high_order: bool = True
    pagetypeinfo_cap: bool = True
    trace_pfn_hex: bool = True


#: Named kernel profiles. Only 6.1.192 is modelled as a whole kernel.
KERNELS: dict[str, KernelProfile] = {"6.1": KernelProfile()}


def kernel_profile(spec: str | KernelProfile, **switches: bool) -> KernelProfile:
    """A named kernel profile, with some switches changed (``kernel_profile("6.1",
    watermark_boost=False)``). A name may carry its switches the way a changed profile is named,
    ``"6.1[watermark_boost=off,pcp_high_order=off]"`` (what a scenario file's
    ``[machine] kernel`` holds)."""
    if isinstance(spec, str) and spec.endswith("]") and "[" in spec:
        base, _, rest = spec[:-1].partition("[")
        parsed: dict[str, bool] = {}
        for item in filter(None, (x.strip() for x in rest.split(","))):
            k, eq, v = item.partition("=")
            if not eq or v not in ("on", "off"):
                raise ConfigError(
                    f"kernel profile {spec!r}: {item!r} is not SWITCH=on or SWITCH=off"
                )
            parsed[k.strip()] = v == "on"
        return kernel_profile(base, **{**parsed, **switches})
    if isinstance(spec, str):
        if spec not in KERNELS:
            raise ConfigError(
                f"kernel profile {spec!r} is not modelled; known: {', '.join(KERNELS)}"
            )
        spec = KERNELS[spec]
    if not switches:
        return spec
    names = {f for f in KernelProfile.__dataclass_fields__ if f != "name"}
    for k, v in switches.items():
        if k not in names:
            raise ConfigError(f"kernel profile: unknown switch {k!r}; known: {sorted(names)}")
        if not isinstance(v, bool):
            raise ConfigError(f"kernel profile: switch {k} must be true or false, not {v!r}")
    changed = ",".join(f"{k}={'on' if v else 'off'}" for k, v in sorted(switches.items()))
    return replace(spec, name=f"{spec.name}[{changed}]", **switches)


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """One zone: its type name (``DMA``, ``DMA32``, ``Normal``, ``HighMem``, ``Movable``) and
    its span [start_pfn, end_pfn)."""

    name: str
    start_pfn: int
    end_pfn: int


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One NUMA node (pg_data_t): its populated zones and its memblock facts."""

    zones: tuple[ZoneSpec, ...]
    holes: tuple[Range, ...] = ()  # pfns with no memory (pfn_valid() false)
    reserved: tuple[Range, ...] = ()  # memblock-reserved at boot, never freed
    late_free: tuple[Range, ...] = ()  # reserved at boot, freed after the initcalls
    cma: tuple[Range, ...] = ()  # CMA areas (pageblock-aligned)


@dataclass(frozen=True, slots=True)
class MachineProfile:
    """A machine: layout, kernel config and the defaults of its tunables (6.1 names)."""

    name: str
    nodes: tuple[NodeSpec, ...]
    zone_types: tuple[str, ...] = ("DMA", "DMA32", "Normal", "Movable", "Device")
    page_size: int = 4096
    pageblock_order: int = 9
    nr_cpus: int = 2
    kernel: str | KernelProfile = "6.1"
    config_zone_dma32: bool = True
    config_cma: bool = False
    config_thp: bool = True  # CONFIG_TRANSPARENT_HUGEPAGE with THP enabled (khugepaged runs)
    min_free_kbytes: int | None = None  # None: computed as the kernel does
    watermark_scale_factor: int = 10
    watermark_boost_factor: int = 15000
    lowmem_reserve_ratio: tuple[int, ...] = (256, 256, 32, 0, 0)
    percpu_pagelist_high_fraction: int = 0
    pcp_batch_scale_max: int = 5  # CONFIG_PCP_BATCH_SCALE_MAX
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in self.zone_types:
            if t not in ZONE_NAMES:
                raise ConfigError(f"profile {self.name}: unknown zone type {t!r}")
        if not 1 <= self.pageblock_order <= 10:
            raise ConfigError(f"profile {self.name}: pageblock_order must be 1..10")
        if self.nr_cpus < 1:
            raise ConfigError(f"profile {self.name}: nr_cpus must be >= 1")
        for nid, node in enumerate(self.nodes):
            last = -1
            for z in node.zones:
                if z.name not in self.zone_types:
                    raise ConfigError(
                        f"profile {self.name}: node {nid} zone {z.name} is not configured"
                    )
                if z.start_pfn < last or z.end_pfn < z.start_pfn:
                    raise ConfigError(f"profile {self.name}: node {nid} zones overlap or reversed")
                last = z.end_pfn

    @property
    def max_pfn(self) -> int:
        return max(z.end_pfn for n in self.nodes for z in n.zones)

    def with_(self, **kw: Any) -> MachineProfile:
        """A copy with some fields replaced (``profile.with_(nr_cpus=4)``)."""
        try:
            return replace(self, **kw)
        except TypeError as e:
            raise ConfigError(f"profile {self.name}: {e}") from None


def _flat(name: str, pages: int, **kw: Any) -> MachineProfile:
    """One node, one zone of ``pages`` pages starting at pfn 0 (the speed-of-light layout)."""
    zone = kw.pop("zone", "Normal")
    return MachineProfile(name=name, nodes=(NodeSpec(zones=(ZoneSpec(zone, 0, pages),)),), **kw)


def _x86_64_1g() -> MachineProfile:
    # shared/data/oracle-6.1/default, s00_boot: zoneinfo spans, kpageflags RESERVED ranges, and
    # the boot log's "Freeing ..." lines, which match the gaps between reserved ranges exactly.
    return MachineProfile(
        name="x86_64-1g",
        nodes=(
            NodeSpec(
                zones=(ZoneSpec("DMA", 1, 4096), ZoneSpec("DMA32", 4096, 262112)),
                holes=((159, 256),),
                reserved=(
                    (1, 159),
                    (4096, 7682),
                    (8192, 10475),
                    (10752, 12356),
                    (13071, 16899),
                    (17408, 17425),
                    (256256, 256574),
                    (256768, 256830),
                    (256896, 261120),
                    (261171, 261231),
                ),
                late_free=(
                    (7682, 8192),  # unused kernel image (text/rodata gap) 2040K
                    (10475, 10752),  # unused kernel image (rodata/data gap) 1108K
                    (12356, 13071),  # initmem 2824K + SMP alternatives 36K
                    (16899, 17408),  # unused decrypted memory 2036K
                    (261231, 262112),  # initrd 3524K
                ),
            ),
        ),
        nr_cpus=2,
    )


def _x86_64_1088m() -> MachineProfile:
    # The traced anon-churn guest of shared/data/oracle-6.1 (1024 MiB + the 64 MiB ftrace
    # buffer, 1 vCPU): s00_start's zoneinfo spans and kpageflags RESERVED ranges. The low
    # ranges (kernel image, nokaslr) are the 1 GiB guest's; memblock's top-down ranges and the
    # initrd moved up with the end of RAM (278496), the boot log's "Freeing" sizes are the same.
    return MachineProfile(
        name="x86_64-1088m",
        nodes=(
            NodeSpec(
                zones=(ZoneSpec("DMA", 1, 4096), ZoneSpec("DMA32", 4096, 278496)),
                holes=((159, 256),),
                reserved=(
                    (1, 159),
                    (4096, 7682),
                    (8192, 10475),
                    (10752, 12356),
                    (13071, 16899),
                    (17408, 17425),
                    (271872, 272446),
                    (272640, 277504),
                    (277555, 277615),
                ),
                late_free=(
                    (7682, 8192),  # unused kernel image (text/rodata gap) 2040K
                    (10475, 10752),  # unused kernel image (rodata/data gap) 1108K
                    (12356, 13071),  # initmem 2824K + SMP alternatives 36K
                    (16899, 17408),  # unused decrypted memory 2036K
                    (277615, 278496),  # initrd 3524K
                ),
            ),
        ),
        nr_cpus=1,
    )


def _arm32_1g() -> MachineProfile:
    # ARM32 without LPAE: no THP/HugeTLB, so pageblock_order = MAX_ORDER-1 = 10; 3G/1G split
    # leaves ~760 MiB of lowmem (Normal) and the rest HighMem; no ZONE_DMA32.
    base = 0x60000  # RAM at 0x6000_0000, as on many ARM boards
    low = base + (760 << 8)
    return MachineProfile(
        name="arm32-1g",
        nodes=(
            NodeSpec(
                zones=(ZoneSpec("Normal", base, low), ZoneSpec("HighMem", low, base + (1 << 18))),
                reserved=((base, base + 4096),),
            ),
        ),
        zone_types=("Normal", "HighMem", "Movable"),
        pageblock_order=10,
        nr_cpus=4,
        config_zone_dma32=False,
        config_thp=False,
        lowmem_reserve_ratio=(32, 0, 0),
    )


def _arm64_4g() -> MachineProfile:
    # arm64, 4 KiB pages: RAM at 1 GiB; ZONE_DMA (< 1 GiB) is empty, DMA32 below 4 GiB.
    base = 0x40000
    return MachineProfile(
        name="arm64-4g",
        nodes=(
            NodeSpec(
                zones=(ZoneSpec("DMA32", base, 0x100000), ZoneSpec("Normal", 0x100000, 0x140000)),
                reserved=((base, base + 8192),),
            ),
        ),
        nr_cpus=8,
    )


def _arm64_phone(name: str, mib: int) -> MachineProfile:
    # An arm64 Android device (4 KiB pages, GKI-like config: THP configured, so pageblock_order
    # 9): RAM at 2 GiB physical, all of it below 4 GiB: one DMA32 zone (ZONE_DMA empty), 4 CPUs.
    base = 0x80000
    return MachineProfile(
        name=name,
        nodes=(
            NodeSpec(
                zones=(ZoneSpec("DMA32", base, base + (mib << 8)),),
                reserved=((base, base + 6144),),  # kernel image, DT, reserved-memory carve-outs
            ),
        ),
        zone_types=("DMA", "DMA32", "Normal", "Movable"),
        nr_cpus=4,
    )


PROFILES: dict[str, Any] = {
    "x86_64-1g": _x86_64_1g,
    "x86_64-1088m": _x86_64_1088m,
    "arm32-1g": _arm32_1g,
    "arm64-4g": _arm64_4g,
    "arm64-512m": lambda: _arm64_phone("arm64-512m", 512),
    "arm64-1g": lambda: _arm64_phone("arm64-1g", 1024),
    "flat-1g": lambda: _flat("flat-1g", 1 << 18),
    "flat-16g": lambda: _flat("flat-16g", 1 << 22),
}


def machine_profile(name: str, **overrides: Any) -> MachineProfile:
    """A named profile (``x86_64-1g``, ``x86_64-1088m``, ``arm32-1g``, ``arm64-4g``,
    ``arm64-512m``, ``arm64-1g``, ``flat-1g``, ``flat-16g``,
    or ``flat:<pages>`` for a single Normal zone of that many pages), with fields overridden."""
    if name.startswith("flat:"):
        try:
            pages = int(name.split(":", 1)[1], 0)
        except ValueError:
            raise ConfigError(f"bad profile {name!r}: expected flat:<pages>") from None
        if pages < 1024:
            raise ConfigError(f"profile {name!r}: needs at least 1024 pages")
        prof = _flat(name, pages)
    elif name in PROFILES:
        prof = PROFILES[name]()
    else:
        raise ConfigError(f"unknown machine profile {name!r}; known: {', '.join(PROFILES)}")
    return prof.with_(**overrides) if overrides else prof
