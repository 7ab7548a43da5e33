"""Pure analysis of snapshots of real (or simulated) machines: functions of parsed ``/proc`` and
kpageflags data that never import the simulator. :mod:`fragsim.analysis.inspect` explains why a
high-order allocation fails (``fragsim inspect``)."""

from fragsim.analysis.inspect import (
    BlockObstacles,
    CompactResult,
    InspectReport,
    MixedBlocks,
    OrderReport,
    Snapshot,
    Verdict,
    ZoneObstacles,
    ZoneReport,
    block_obstacles,
    compaction_suitable,
    format_report,
    inspect_snapshot,
    load_snapshot,
    parse_vm_sysctl,
    zone_watermark_ok,
)

__all__ = [
    "BlockObstacles",
    "CompactResult",
    "InspectReport",
    "MixedBlocks",
    "OrderReport",
    "Snapshot",
    "Verdict",
    "ZoneObstacles",
    "ZoneReport",
    "block_obstacles",
    "compaction_suitable",
    "format_report",
    "inspect_snapshot",
    "load_snapshot",
    "parse_vm_sysctl",
    "zone_watermark_ok",
]
