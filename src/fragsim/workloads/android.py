"""An Android-like device: apps launched, used, backgrounded and killed, each with anonymous
and file working sets and GPU buffers; zram swap under pressure; lmkd killing cached apps; and
the kernel allocations such a device makes at orders 2-3 with their GFP flags, whose failures
the seed reports:

* network receive buffers: ``skb_page_frag_refill`` / ``page_frag_alloc`` take an order-3
  block (SKB_FRAG_PAGE_ORDER, 32 KiB) with ``GFP_ATOMIC | __GFP_COMP | __GFP_NOWARN |
  __GFP_NORETRY`` and fall back to order 0 when that fails (net/core/sock.c, Linux 6.1);
* ``kmalloc()`` of 16 and 32 KiB (above KMALLOC_MAX_CACHE_SIZE = 8 KiB, so ``kmalloc_large``:
  compound pages of order 2 and 3, GFP_KERNEL): binder transactions, ION/dma-buf metadata,
  firmware and sensor buffers; some live long (the pollution that pins pageblocks);
* fork()'s kernel stack: THREAD_SIZE (16 KiB, order 2) without CONFIG_VMAP_STACK, as on the
  seed's ARM devices (the ``process`` memory user's ``vmap_stack`` setting);
* slab objects of each process (task_struct, mm_struct, vm_area_struct, anon_vma, filp) and the
  dentries and inodes of the files it opens (reclaimable, shrunk by reclaim).

The device runs in steps of ``tick_s`` simulated seconds. Each step: the GPU redraws which
buffers its jobs use (their pages pinned); the network and kmalloc_large allocations of the
step are made in one batch each and those of the previous step freed (a fraction of the
kmalloc_large ones live for ``kmalloc_long_lived_h`` hours); short-lived processes fork and
exit; the foreground app touches part of its anonymous memory and mmap()ed files; and lmkd
kills the least recently used cached app while free plus file-cache memory is below
``lmk_minfree_mib``. App switches come at exponential intervals (mean ``switch_every_s``);
apps are picked by a Zipf-like popularity (a few apps are used most).

The memory users are the scenario's drivers of each type (``process``, ``pagecache``, ``slab``,
``gpu``: the first of each); a missing ``process``, ``pagecache`` or ``slab`` is created with
its defaults, a missing GPU means apps have no GPU buffers.

SIMPLIFICATIONS: lmkd's decision is the classic minfree rule on free + file pages (not PSI);
an app's files are mapped whole at launch and a window of them is touched while it is in the
foreground; one thread per app; the kernel's allocations of a step happen at its start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MemoryUser
from fragsim.drivers.gpu import GpuDriver
from fragsim.drivers.pagecache import PageCache
from fragsim.drivers.process import Processes
from fragsim.drivers.slab import Slab
from fragsim.errors import ConfigError
from fragsim.mm import vmstat
from fragsim.mm.gfp import GFP
from fragsim.mm.machine import Machine
from fragsim.scenario.engine import H, S, Simulation, Workload, register_workload

__all__ = ["Android"]

SKB_FRAG_PAGE_ORDER = 3
#: skb_page_frag_refill()'s first attempt (gfp = GFP_ATOMIC for receive buffers)
SKB_FRAG_GFP = GFP["GFP_ATOMIC"] | GFP["__GFP_COMP"] | GFP["__GFP_NOWARN"] | GFP["__GFP_NORETRY"]
GFP_ATOMIC = GFP["GFP_ATOMIC"]
GFP_KERNEL = GFP["GFP_KERNEL"]
MIB = 256  # pages


class PageFrag(MemoryUser):
    """The per-CPU page_frag caches of the network stack (not a registered driver: part of
    this workload)."""

    name = "page_frag"


@dataclass
class App:
    """One installed app: its sizes in pages, and while it runs its pid, GPU buffers and slab
    objects."""

    index: int
    anon: int
    file: int
    gpu: int
    fid: int = -1
    pid: int = -1
    bos: list[int] = field(default_factory=list)
    slab: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    dentries: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    last_used: int = 0


@register_workload("android")
class Android(Workload):
    """An Android-like device (see the module docstring). Sizes are per app, drawn uniformly
    within ±50 % of the mean; rates are per simulated second."""

    def __init__(
        self,
        sim: Simulation,
        *,
        apps: int = 24,
        anon_mib: float = 48.0,
        file_mib: float = 24.0,
        gpu_mib: float = 24.0,
        system_anon_mib: float = 96.0,
        system_gpu_mib: float = 48.0,
        switch_every_s: float = 40.0,
        tick_s: float = 10.0,
        touch_fraction: float = 0.25,
        lmk_minfree_mib: float = 48.0,
        net_frags_per_s: float = 4.0,
        kmalloc_large_per_s: float = 0.5,
        kmalloc_long_lived: float = 0.05,
        kmalloc_long_lived_h: float = 6.0,
        forks_per_s: float = 0.2,
        popularity: float = 1.0,
    ) -> None:
        super().__init__(sim)
        for name, v in (
            ("apps", apps),
            ("anon_mib", anon_mib),
            ("tick_s", tick_s),
            ("switch_every_s", switch_every_s),
        ):
            if v <= 0:
                raise ConfigError(f"android: {name} must be > 0, got {v}")
        if not 0 < touch_fraction <= 1 or not 0 <= kmalloc_long_lived <= 1:
            raise ConfigError("android: touch_fraction and kmalloc_long_lived are fractions")
        m = sim.machine
        self.rng = sim.rng("android")
        self.tick_ns = int(tick_s * S)
        self.switch_ns = switch_every_s * S
        self.touch_fraction = touch_fraction
        self.minfree = int(lmk_minfree_mib * MIB)
        self.rates = (net_frags_per_s * tick_s, kmalloc_large_per_s * tick_s, forks_per_s * tick_s)
        self.long_lived = kmalloc_long_lived
        self.long_lived_ns = int(kmalloc_long_lived_h * H)
        self.procs = self._user(Processes, m)
        self.cache = self._user(PageCache, m)
        self.slab = self._user(Slab, m)
        gpus = sim.drivers_of(GpuDriver)
        self.gpu: GpuDriver | None = gpus[0] if gpus else None  # type: ignore[assignment]
        self.frag = PageFrag(m)

        def sizes(mean_mib: float) -> npt.NDArray[np.int64]:
            return (mean_mib * MIB * self.rng.uniform(0.5, 1.5, apps)).astype(np.int64)

        a, f, g = sizes(anon_mib), sizes(file_mib), sizes(gpu_mib)
        self.apps = [App(i, int(a[i]), int(f[i]), int(g[i])) for i in range(apps)]
        w = 1.0 / np.arange(1, apps + 1) ** popularity
        self.popularity = w / w.sum()
        self.system = (int(system_anon_mib * MIB), int(system_gpu_mib * MIB))
        self.foreground: App | None = None
        self.frags = np.zeros(0, np.int64)
        self.kmalloc_short = np.zeros(0, np.int64)
        self.kmalloc_long: list[tuple[int, npt.NDArray[np.int64]]] = []
        self.forked: list[int] = []
        self.stats = {
            "launches": 0,
            "switches": 0,
            "lmk_kills": 0,
            "oom_killed_apps": 0,
            "frag_order3_failed": 0,
            "frag_order0_fallback_failed": 0,
            "kmalloc_large_failed": 0,
            "fork_failed": 0,
            "gpu_bo_failed": 0,
        }

    def _user(self, cls: type[Any], m: Machine) -> Any:
        have = self.sim.drivers_of(cls)
        return have[0] if have else cls(m)

    # ------------------------------------------------------------------ the clock
    def start(self) -> None:
        pid = self.procs.spawn("system_server", self.system[0])
        if pid < 0:
            raise ConfigError("android: the machine cannot even start system_server")
        self.system_pid = pid
        if self.gpu is not None and self.system[1]:
            self.gpu.create_bo(pages=self.system[1])  # the compositor's buffers, for good
        self.sim.every(self.tick_ns, self.tick, start_ns=self.sim.now)
        self._next_switch()

    def _next_switch(self) -> None:
        self.sim.after(int(self.rng.exponential(self.switch_ns)) + 1, self.switch)

    def tick(self) -> None:
        now = self.sim.now
        if self.gpu is not None:
            self.gpu.tick(now)
        self._network()
        self._kmalloc_large(now)
        self._forks()
        fg = self.foreground
        if fg is not None and self._alive(fg):
            n = max(1, int(fg.anon * self.touch_fraction))
            start = int(self.rng.integers(0, max(fg.anon - n, 0) + 1))
            self.procs.touch(fg.pid, start, n)
            nf = max(1, int(fg.file * self.touch_fraction))
            fstart = int(self.rng.integers(0, max(fg.file - nf, 0) + 1))
            self.cache.mmap_touch(fg.fid, fstart, nf)
            fg.last_used = now
        self._lmkd()

    def switch(self) -> None:
        """The user switches to an app (by popularity): a cached app comes back to the
        foreground (its memory touched whole: swap-ins), else it is launched."""
        app = self.apps[int(self.rng.choice(len(self.apps), p=self.popularity))]
        self.stats["switches"] += 1
        if self._alive(app):
            self.procs.touch(app.pid)
            self.cache.mmap_touch(app.fid)
        else:
            self._launch(app)
        app.last_used = self.sim.now
        self.foreground = app
        self._lmkd()
        self._next_switch()

    # ------------------------------------------------------------------ apps
    def _alive(self, app: App) -> bool:
        if app.pid < 0:
            return False
        if app.pid not in self.procs.procs:  # the OOM killer took it
            self.stats["oom_killed_apps"] += 1
            self._release(app)
            return False
        return True

    def _launch(self, app: App) -> None:
        self.stats["launches"] += 1
        pid = self.procs.spawn(f"app{app.index}")
        if pid < 0:
            self.stats["fork_failed"] += 1
            return
        app.pid = pid
        app.slab = np.concatenate(
            [
                self.slab.kmem_cache_alloc("task_struct", 1),
                self.slab.kmem_cache_alloc("mm_struct", 1),
                self.slab.kmem_cache_alloc("vm_area_struct", 64),
                self.slab.kmem_cache_alloc("anon_vma", 16),
                self.slab.kmem_cache_alloc("filp", 32),
            ]
        )
        app.slab = app.slab[app.slab >= 0]
        self.procs.fault(pid, app.anon)
        if app.fid < 0:
            app.fid = self.cache.create(app.file)
        app.dentries = self.slab.kmem_cache_alloc("dentry", 64)
        app.dentries = app.dentries[app.dentries >= 0]
        self.cache.mmap_touch(app.fid)
        if self.gpu is not None and app.gpu:
            bo = self.gpu.create_bo(pages=app.gpu)
            if bo < 0:
                self.stats["gpu_bo_failed"] += 1
            else:
                app.bos.append(bo)

    def _release(self, app: App) -> None:
        """What an app's death gives back besides its process: GPU buffers, slab objects (the
        dentries stay cached, unused: the shrinker may free them)."""
        if self.gpu is not None:
            for bo in app.bos:
                self.gpu.destroy_bo(bo)
        app.bos = []
        if app.slab.size:
            self.slab.kfree(app.slab)
        if app.dentries.size:
            self.slab.mark_unused(app.dentries)
        app.slab = app.dentries = np.zeros(0, np.int64)
        app.pid = -1
        if self.foreground is app:
            self.foreground = None

    def _kill(self, app: App) -> None:
        self.procs.exit(app.pid)
        self._release(app)

    def _lmkd(self) -> None:
        """lmkd's minfree rule: while free + file-cache pages are below minfree, kill the least
        recently used cached (background) app."""
        m = self.sim.machine
        while True:
            v = _free_and_file(m)
            if v >= self.minfree:
                return
            cached = [a for a in self.apps if a is not self.foreground and self._alive(a)]
            if not cached:
                return
            victim = min(cached, key=lambda a: (a.last_used, a.index))
            self._kill(victim)
            self.stats["lmk_kills"] += 1

    # ------------------------------------------------------------------ kernel allocations
    def _network(self) -> None:
        """One step of receive traffic: the previous step's buffers are consumed (freed), new
        order-3 frags are allocated atomically, falling back to order 0."""
        if self.frags.size:
            self.frag.free_pages(self.frags)
        n = int(self.rng.poisson(self.rates[0]))
        if not n:
            self.frags = np.zeros(0, np.int64)
            return
        hs = self.frag.alloc_pages(n, SKB_FRAG_GFP, SKB_FRAG_PAGE_ORDER)
        failed = int(np.count_nonzero(hs < 0))
        self.stats["frag_order3_failed"] += failed
        got = [hs[hs >= 0]]
        if failed:
            fb = self.frag.alloc_pages(failed, GFP_ATOMIC, 0)
            self.stats["frag_order0_fallback_failed"] += int(np.count_nonzero(fb < 0))
            got.append(fb[fb >= 0])
        self.frags = np.concatenate(got)

    def _kmalloc_large(self, now: int) -> None:
        if self.kmalloc_short.size:
            self.slab.kfree(self.kmalloc_short)
        while self.kmalloc_long and self.kmalloc_long[0][0] <= now:
            self.slab.kfree(self.kmalloc_long.pop(0)[1])
        n = int(self.rng.poisson(self.rates[1]))
        if not n:
            self.kmalloc_short = np.zeros(0, np.int64)
            return
        big = self.rng.random(n) < 0.5
        ids = []
        for size, k in ((16384, int(np.count_nonzero(~big))), (32768, int(big.sum()))):
            if k:
                got = self.slab.kmalloc(size, k, GFP_KERNEL)
                self.stats["kmalloc_large_failed"] += int(np.count_nonzero(got < 0))
                ids.append(got[got >= 0])
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        long = self.rng.random(all_ids.size) < self.long_lived
        if long.any():
            self.kmalloc_long.append((now + self.long_lived_ns, all_ids[long]))
        self.kmalloc_short = all_ids[~long]

    def _forks(self) -> None:
        """Short-lived processes (shell commands, services): the previous step's exit, this
        step's fork (a kernel stack, page tables, a little anonymous memory)."""
        for pid in self.forked:
            if pid in self.procs.procs:
                self.procs.exit(pid)
        self.forked = []
        for _ in range(int(self.rng.poisson(self.rates[2]))):
            pid = self.procs.spawn("sh", 64)
            if pid < 0:
                self.stats["fork_failed"] += 1
            else:
                self.forked.append(pid)

    def summary(self) -> dict[str, Any]:
        running = sum(1 for a in self.apps if a.pid >= 0)
        return dict(self.stats, apps_running=running)


def _free_and_file(m: Machine) -> int:
    """Free pages plus file LRU pages (lmkd's minfree measure)."""
    zs = vmstat.zone_state_stats
    total = 0
    for z in range(m.state.zs.shape[0]):
        v = zs(m, z)
        total += v["nr_free_pages"] + v["nr_zone_inactive_file"] + v["nr_zone_active_file"]
    return total
