"""vm sysctls by name (Machine.sysctl), with the kernel's bounds and side effects (6.1)."""

from __future__ import annotations

import pytest

from fragsim.errors import ConfigError
from fragsim.mm import internal as I
from fragsim.mm.machine import Machine


def test_read_write_and_bounds() -> None:
    m = Machine("flat:8192", nr_cpus=1)
    assert m.sysctl("vm.extfrag_threshold") == 500
    assert m.sysctl("/proc/sys/vm/compaction_proactiveness") == 20
    assert m.sysctl("compact_unevictable_allowed") == 1
    m.sysctl("vm.extfrag_threshold", 1000)
    assert m.state.prm[I.P_EXTFRAG_THRESHOLD] == 1000
    with pytest.raises(
        ConfigError, match=r"vm.extfrag_threshold: 1001 is not an integer in \[0, 1000\]"
    ):
        m.sysctl("vm.extfrag_threshold", 1001)
    with pytest.raises(ConfigError, match="unknown"):
        m.sysctl("vm.swappiness_typo", 1)
    with pytest.raises(ConfigError, match="not an integer"):
        m.sysctl("vm.compact_unevictable_allowed", True)


def test_watermark_tunables_recompute_the_watermarks() -> None:
    m = Machine("flat:65536", nr_cpus=1)
    z = m.zone_id(0, "Normal")
    low, high = int(m.state.zs[z, I.ZF_WMARK_LOW]), int(m.state.zs[z, I.ZF_WMARK_HIGH])
    m.sysctl("vm.watermark_scale_factor", 1000)  # 10 % of memory between the marks
    assert m.state.zs[z, I.ZF_WMARK_HIGH] - m.state.zs[z, I.ZF_WMARK_LOW] > high - low
    assert m.sysctl("vm.watermark_scale_factor") == 1000
    m.sysctl("vm.min_free_kbytes", 4096)
    assert m.state.zs[z, I.ZF_WMARK_MIN] == 4096 // 4
    m.sysctl("vm.watermark_boost_factor", 0)
    assert m.state.prm[I.P_BOOST_FACTOR] == 0


def test_writing_proactiveness_makes_kcompactd_check_at_once() -> None:
    m = Machine("flat:16384", nr_cpus=1, config_thp=False)
    m.sysctl("vm.compaction_proactiveness", 0)
    m.advance(10**9)
    m.sysctl("vm.compaction_proactiveness", 50)
    assert m.state.nd[0, I.ND_PROACTIVE_NEXT] == 10**9 + 500_000_000  # checked, next in 500 ms
