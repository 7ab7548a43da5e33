"""fragsim.drivers.loader.load_driver: a registered name, a dotted path, a file path, an entry
point, and a clear ConfigError for each way it can fail. The user's example
(examples/ion_pool.py) is loaded by path and run with compaction."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fragsim.drivers import DRIVERS, MemoryUser
from fragsim.drivers.gpu import GpuDriver
from fragsim.drivers.loader import ENTRY_POINT_GROUP, load_driver
from fragsim.errors import ConfigError
from fragsim.mm import vmstat
from fragsim.mm.debug import check_invariants
from fragsim.mm.machine import Machine
from fragsim.mm.page import PG_isolated

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ion_pool.py"


def test_registered_name_and_dotted_paths() -> None:
    assert load_driver("gpu") is GpuDriver
    assert load_driver("fragsim.drivers.gpu:GpuDriver") is GpuDriver
    assert load_driver("fragsim.drivers.gpu.GpuDriver") is GpuDriver
    assert load_driver("fragsim.drivers.base:MemoryUser") is MemoryUser


def test_dotted_path_errors() -> None:
    with pytest.raises(ConfigError, match="no module named 'nosuch.module'"):
        load_driver("nosuch.module:Driver")
    with pytest.raises(ConfigError, match="module 'fragsim.drivers.gpu' has no class 'Nope'"):
        load_driver("fragsim.drivers.gpu:Nope")
    with pytest.raises(ConfigError, match="is not a MemoryUser subclass"):
        load_driver("fragsim.drivers.gpu:BufferObject")
    with pytest.raises(ConfigError, match="is not a MemoryUser subclass"):
        load_driver("fragsim.drivers.gpu:PAGE_SIZE")
    with pytest.raises(ConfigError, match="unknown driver 'no-such-driver'"):
        load_driver("no-such-driver")


def test_file_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_driver(f"{tmp_path}/missing.py:X")
    broken = tmp_path / "broken_drv.py"
    broken.write_text("import fragsim\nraise RuntimeError('the device is on fire')\n")
    with pytest.raises(ConfigError) as e:
        load_driver(f"{broken}:X")
    assert str(broken) in str(e.value) and "RuntimeError: the device is on fire" in str(e.value)
    assert isinstance(e.value.__cause__, RuntimeError)
    notcls = tmp_path / "notcls.py"
    notcls.write_text("X = 3\nclass Y:\n    pass\n")
    with pytest.raises(ConfigError, match="no class 'Z'"):
        load_driver(f"{notcls}:Z")
    with pytest.raises(ConfigError, match="not a MemoryUser subclass"):
        load_driver(f"{notcls}:Y")
    with pytest.raises(ConfigError, match="defines 0 memory users"):
        load_driver(str(notcls))
    importing = tmp_path / "imports_missing.py"
    importing.write_text("import fragsim_no_such_dependency\n")
    with pytest.raises(ConfigError, match="ModuleNotFoundError.*fragsim_no_such_dependency"):
        load_driver(f"{importing}:X")


def test_a_user_file_registers_its_driver_and_is_imported_once(tmp_path: Path) -> None:
    f = tmp_path / "my_dev.py"
    f.write_text(
        "from fragsim import MovableDriver, register_driver\n"
        "IMPORTS = []\n"
        "IMPORTS.append(1)\n"
        "@register_driver('loader-test-dev')\n"
        "class MyDev(MovableDriver):\n"
        "    pass\n"
    )
    cls = load_driver(f"{f}:MyDev")
    assert DRIVERS["loader-test-dev"] is cls and cls.__name__ == "MyDev"
    assert load_driver(str(f)) is cls  # the one memory user of the file
    assert load_driver(f"{tmp_path}/./my_dev.py:MyDev") is cls  # same file, not re-imported
    assert load_driver("loader-test-dev") is cls
    mod = sys.modules[cls.__module__]
    assert mod.IMPORTS == [1] and cls.__module__.startswith("fragsim_user_driver_my_dev_")


def test_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A throwaway installed distribution (a .dist-info directory on sys.path) declaring an
    entry point of the group fragsim.drivers."""
    (tmp_path / "ep_gpu_plugin.py").write_text(
        "from fragsim import MovableDriver\nclass PluginGpu(MovableDriver):\n    name = 'x'\n"
        "class NotADriver:\n    pass\n"
    )
    dist = tmp_path / "ep_gpu_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-gpu-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "ep-gpu = ep_gpu_plugin:PluginGpu\n"
        "ep-bad = ep_gpu_plugin:NotADriver\n"
        "ep-missing = ep_gpu_plugin_missing:Driver\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    cls = load_driver("ep-gpu")
    assert cls.__name__ == "PluginGpu" and cls.__module__ == "ep_gpu_plugin"
    with pytest.raises(ConfigError, match="not a MemoryUser subclass"):
        load_driver("ep-bad")
    with pytest.raises(ConfigError, match="loading entry point .*ModuleNotFoundError"):
        load_driver("ep-missing")


def test_the_example_loaded_by_path_runs_with_compaction() -> None:
    """The camera pool from examples/ion_pool.py: frames come and go; buffers under DMA stay
    where they are (isolate_page says no), idle ones move; a shrink while the pool is full
    gives the pages back."""
    IonPool = load_driver(f"{EXAMPLE}:IonPool")
    assert DRIVERS["ion-pool"] is IonPool and load_driver("ion-pool") is IonPool
    m = Machine("flat:8192", nr_cpus=1, config_thp=False, min_free_kbytes=128, debug=True)
    m.daemons = False
    pool: Any = IonPool(m, buffer_pages=16, pool_min=4, pool_max=1000)  # type: ignore[call-arg]
    assert pool.refill() == 4
    frames = []
    while (b := pool.acquire()) >= 0:  # the camera fills memory with frames in flight
        frames.append(b)
    keep: dict[int, int] = {}
    for b in frames:
        keep.setdefault(int(pool.pfns(pool.buffers[b]).min()) >> 9, b)
    for b in frames:
        if b not in keep.values():
            pool.release(b)
    pool.shrink(0)  # memory pressure: the idle buffers go
    m.drain_all_pages()
    live = sorted(keep.values())
    dma = live[::2]
    for b in dma:
        pool.dma_start(b)
    before = {b: pool.pfns(pool.buffers[b]).copy() for b in live}
    m.compact_memory()
    check_invariants(m)
    after = {b: pool.pfns(pool.buffers[b]) for b in live}
    for b in dma:
        assert (after[b] == before[b]).all()  # pinned: never isolated
    moved = sum(int((after[b] != before[b]).sum()) for b in live if b not in dma)
    assert moved > 0
    assert pool.calls["refused"] > 0 and pool.calls["migrate"] == moved
    assert vmstat.vmstat_counters(m)["pgmigrate_success"] == moved
    assert not pool.isolated
    pfns = np.concatenate(list(after.values()))
    assert not (m.state.flags[pfns] & PG_isolated).any()
    for b in dma:
        pool.dma_done(b)
        pool.release(b)
    for b in live:
        if b not in dma:
            pool.release(b)
    pool.destroy()
    m.drain_all_pages()
    check_invariants(m)
    assert not pool.buffers and not pool.page_buffer
