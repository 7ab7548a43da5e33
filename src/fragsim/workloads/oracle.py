"""The real-kernel oracle's experiments (shared/oracle, data in shared/data/oracle-6.1) as
workloads: the guest's script and its workload program ``oracle_work`` (oracle_work.c), step
by step, on the simulated clock, with a named stage (and so a snapshot) where the real run took
one. ``fragsim fidelity`` (fragsim/fidelity.py) compares the stages with the real runs.

``oracle-default`` (scenarios/default.sh; stage times from the real runs' markers, s00_boot at
0 s)::

    s00_boot               0.00 s  nothing
    push                   1.38 s  256 MiB anonymous (MADV_NOHUGEPAGE), MADV_PAGEOUT of the
                                   first 192 MiB into zram (one page table's 512 pages at a time)
    s01_zram_loaded        3.26 s
    tmpfs                  3.60 s  12000 shmem files of 1-3 pages (oracle_work's xorshift64
                                   with its seed, so the same sizes), each with its
                                   shmem_inode_cache object, dentry and (2+ pages) a
                                   radix_tree_node; every odd file unlinked
    frag                   4.13 s  256 MiB anonymous with a pipe (one unmovable page, its
                                   pipe_inode_info, pipe_buffer array, pipefs inode and dentry,
                                   two files) after every 16 pages; MADV_DONTNEED of every odd
                                   page
    s02_fragmented         5.28 s
    compact_memory         5.67 s  -> s03_compacted 5.84 s
    balloon 512            6.22 s  the host asks for 512 MiB: the balloon takes 131072 pages
                                   (the work item retried every 200 ms) -> s04 9.34 s
    compact_memory         9.77 s  -> s05_balloon_compacted 9.86 s
    balloon 1024          10.27 s  -> s06_balloon_deflated 12.57 s
    thp                   13.03 s  MADV_HUGEPAGE region of (free MiB in order>=9 blocks + 32)
                                   MiB: one GFP_TRANSHUGE order-9 fault per 2 MiB
                                   (thp_fault_alloc), on failure 512 small pages
                                   (thp_fault_fallback) -> s07_thp_faulted 13.45 s
    release               13.50 s  every process killed, pipes closed, tmpfs emptied
    s08_released          16.18 s

``oracle-anon-churn`` (scenarios/anon-churn.sh): a 256 MiB resident set (s00_start), then
``oracle_work churn DIR 60 6 1 8192``: the job sequence drawn exactly as oracle_work draws it
(the same xorshift64 and seed: 140 jobs), up to 6 jobs alive, each: fork (kernel stack, page
tables, task/mm slab objects), anonymous memory (1 in 4 jobs left to THP ``always``: the
2 MiB-aligned parts try GFP_TRANSHUGE_LIGHT first), small shmem files, pipes, 1-4 short-lived
children, 64 KiB MADV_DONTNEED chunks, a lifetime, directory clean-up, exit. Stages every
10 s of churn, ``s06_end`` 2 s after the last job exits, then compact_memory and
``s07_compacted``. A job's time before its lifetime starts is ``setup_ns`` plus ``page_ns``
per page it touches; the defaults (20 ms, 0) give what the real runs printed: 140 jobs,
440.1 MiB, 7175 files, 930 pipes, 149 forks, the last exit after 69.0 s (real: 69.1 s).

SIMPLIFICATION: tmpfs files are swap-backed pages of a memory user of this module (no
shmem_getpage, no swap cache; their slab objects are the ones named above, other per-file
objects such as lsm blobs are left out). A pipe's page is GFP_HIGHUSER | __GFP_ACCOUNT (the
kernel's pipe_write), unmovable.
SIMPLIFICATION: a THP whose 64 KiB chunk a job MADV_DONTNEEDs stays whole until the job exits
(6.1 splits the PMD and queues the folio for the deferred split shrinker, which frees its
pages only under memory pressure; anon-churn has none).
SIMPLIFICATION: the snapshots' own allocations (busybox processes, a /tmp file) and the
harness's shell are not modelled.
SIMPLIFICATION: every step runs on CPU 0 (its allocations and frees use CPU 0's per-CPU
lists), as do the daemons' frees; the guest had two vCPUs in `default`.
SIMPLIFICATION: `default`'s THPs are order-9 blocks of a memory user of this module, mapped by
no page table (the kernel's PMD mapping needs no PTE page); its fallback pages are the thp
process's anonymous pages.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fragsim.drivers.balloon import VirtioBalloon
from fragsim.drivers.base import MemoryUser
from fragsim.drivers.process import Processes
from fragsim.drivers.slab import Slab
from fragsim.errors import ConfigError
from fragsim.mm.gfp import (
    __GFP_COMP,
    __GFP_RECLAIMABLE,
    __GFP_RETRY_MAYFAIL,
    GFP_HIGHUSER,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_TRANSHUGE,
    GFP_TRANSHUGE_LIGHT,
)
from fragsim.mm.page import (
    PG_anon,
    PG_dirty,
    PG_lru,
    PG_mapped,
    PG_referenced,
    PG_swapbacked,
    PG_young,
)
from fragsim.scenario.engine import MS, S, Simulation, Workload, register_workload

__all__ = [
    "OracleAnonChurn",
    "OracleDefault",
    "Xorshift64",
    "draw_jobs",
    "fill_page_draws",
    "tmpfs_sizes",
]

MIB_PAGES = 256
HPAGE_ORDER = 9
HPAGE_PAGES = 1 << HPAGE_ORDER
#: madvise_cold_or_pageout_pte_range() collects one page table's pages, then reclaim_pages()
PAGEOUT_BATCH = 512
GFP_F_COMP = __GFP_COMP  # (a name with two leading underscores is mangled in a class)
GFP_F_RETRY_MAYFAIL = __GFP_RETRY_MAYFAIL
GFP_F_RECLAIMABLE = __GFP_RECLAIMABLE
#: a pipe's page: pipe_write's alloc_page(GFP_HIGHUSER | __GFP_ACCOUNT)
GFP_PIPE = GFP_HIGHUSER | (GFP_KERNEL_ACCOUNT & ~GFP_KERNEL)
#: an anonymous THP mapped into a process (the head carries the LRU flags)
THP_FLAGS = PG_lru | PG_anon | PG_swapbacked | PG_mapped | PG_young
#: a shmem page just written (shmem_get_folio_gfp with SGP_WRITE: __folio_set_referenced;
#: shmem_write_end: dirty)
SHMEM_FLAGS = PG_lru | PG_swapbacked | PG_dirty | PG_referenced
#: the slab objects of fork() (copy_process: task_struct, its cred, pid; dup_mm's mm_struct
#: and about ten VMAs with their anon_vma chains; signal, sighand, files)
FORK_OBJECTS = (
    ("task_struct", 1),
    ("cred_jar", 1),
    ("pid", 1),
    ("mm_struct", 1),
    ("vm_area_struct", 10),
    ("anon_vma", 4),
    ("anon_vma_chain", 8),
    ("signal_cache", 1),
    ("sighand_cache", 1),
    ("files_cache", 1),
)


def _xorshift_step(x: int) -> int:
    m = (1 << 64) - 1
    x ^= (x << 13) & m
    x ^= x >> 7
    x ^= (x << 17) & m
    return x


def _apply(cols: list[int], x: int) -> int:
    """The GF(2)-linear map with column images ``cols`` applied to the 64-bit vector ``x``."""
    out = 0
    b = 0
    while x:
        if x & 1:
            out ^= cols[b]
        x >>= 1
        b += 1
    return out


class Xorshift64:
    """oracle_work.c's xorshift64 (13, 7, 17), so the scenario draws what the program drew.
    ``skip(n)`` jumps n draws ahead (the step is linear over GF(2): its 64x64 matrix raised to
    n by squaring), for the draws oracle_work's fill_page() spends on page contents."""

    MASK = (1 << 64) - 1
    #: the step's matrix raised to 2^i, as column images (filled on first use)
    _powers: list[list[int]] = []

    def __init__(self, state: int) -> None:
        self.state = state & self.MASK

    def next(self) -> int:
        self.state = _xorshift_step(self.state)
        return self.state

    def rnd(self, lo: int, hi: int) -> int:
        """oracle_work's rnd(): lo + next() % (hi - lo + 1), inclusive."""
        return lo + self.next() % (hi - lo + 1)

    def skip(self, n: int) -> None:
        """Advance ``n`` draws at once."""
        if n < 0:
            raise ValueError(f"skip({n})")
        powers = Xorshift64._powers
        if not powers:
            powers.append([_xorshift_step(1 << b) for b in range(64)])
        i = 0
        while n:
            while len(powers) <= i:
                p = powers[-1]
                powers.append([_apply(p, c) for c in p])
            if n & 1:
                self.state = _apply(powers[i], self.state)
            n >>= 1
            i += 1


def fill_page_draws(idx: npt.ArrayLike) -> int:
    """The draws oracle_work's fill_page() takes for pages of these indexes: the first k/8 of
    a page is random, k = (unsigned)((idx * 2654435761) >> 7) % 9 (the cast keeps 32 bits),
    one 64-bit draw per 8 bytes."""
    i = np.asarray(idx, np.uint64)
    k = (((i * np.uint64(2654435761)) >> np.uint64(7)) & np.uint64(0xFFFFFFFF)) % np.uint64(9)
    return int(k.sum()) * (4096 // 8 // 8)


@dataclass
class Job:
    """oracle_work's struct job, plus when it starts and exits (ns from the churn's start)."""

    id: int
    anon_kb: int
    thp_default: bool
    free_q: int
    nfiles: int
    npipes: int
    nforks: int
    life_ms: int
    keep_files: bool
    seed: int
    start_ns: int = 0
    end_ns: int = 0
    touched_pages: int = 0


def draw_job(rng: Xorshift64, id_: int, anon_max_kb: int) -> Job:
    """oracle_work.c draw_job()."""
    maxlog = 8
    while maxlog < 30 and (1 << (maxlog + 1)) <= anon_max_kb:
        maxlog += 1
    lg = rng.rnd(8, maxlog)
    anon_kb = min((1 << lg) + rng.rnd(0, (1 << lg) - 1), anon_max_kb)
    thp_default = rng.rnd(0, 3) == 0
    free_q = rng.rnd(0, 3)
    nfiles = rng.rnd(1, 150) if rng.rnd(0, 9) < 6 else 0
    npipes = rng.rnd(1, 32) if rng.rnd(0, 9) < 3 else 0
    nforks = rng.rnd(1, 4) if rng.rnd(0, 1) else 0
    life_ms = rng.rnd(100, 2000) if rng.rnd(0, 9) else rng.rnd(5000, 20000)
    keep_files = rng.rnd(0, 9) < 4
    seed = rng.next() | 1
    return Job(id_, anon_kb, thp_default, free_q, nfiles, npipes, nforks, life_ms, keep_files, seed)


def _job_cost_pages(j: Job) -> int:
    """Pages a job touches before its lifetime starts: its region, its files (2.5 pages on
    average; the exact sizes are drawn when it runs) and its children's memory (72 pages on
    average)."""
    return j.anon_kb // 4 + (j.nfiles * 5) // 2 + j.nforks * 72


def draw_jobs(
    seconds: float,
    maxprocs: int,
    seed: int,
    anon_max_kb: int,
    setup_ns: int,
    page_ns: int,
) -> list[Job]:
    """oracle_work.c cmd_churn()'s schedule: while less than ``seconds`` have passed, start
    jobs until ``maxprocs`` run, then wait for one to exit. A job exits ``setup_ns + page_ns
    * pages touched + life_ms`` after its start."""
    rng = Xorshift64(seed if seed else 1)
    jobs: list[Job] = []
    running: list[int] = []  # end times
    now = 0
    limit = int(seconds * S)
    while now < limit:
        while len(running) < maxprocs:
            j = draw_job(rng, len(jobs), anon_max_kb)
            j.touched_pages = _job_cost_pages(j)
            j.start_ns = now
            j.end_ns = now + setup_ns + page_ns * j.touched_pages + j.life_ms * MS
            jobs.append(j)
            running.append(j.end_ns)
        running.sort()
        now = max(now, running.pop(0))
    return jobs


@dataclass
class _File:
    pages: npt.NDArray[np.int64]  # handles
    slab: list[tuple[str, int]] = field(default_factory=list)  # (cache, object id)


class _OracleBase(Workload):
    """The oracle guest's memory users: the scenario's ``process``, ``slab``, (``zram`` as
    swap), ``virtio-balloon``; plus memory users of its own for shmem files, pipe pages and
    THPs."""

    def __init__(self, sim: Simulation) -> None:
        super().__init__(sim)
        self.m = sim.machine
        self.procs = self._find(Processes, "process")
        self.slab = self._find(Slab, "slab")
        self.shmem = MemoryUser(self.m)
        self.shmem.name = "shmem"
        self.pipes_user = MemoryUser(self.m)
        self.pipes_user.name = "pipe"
        self.thp_user = MemoryUser(self.m)
        self.thp_user.name = "thp"
        self._stages: dict[int, str] = {}
        self.counts: dict[str, int] = {}

    def boot(self, shmem: int, reclaimable: int, unmovable: int) -> None:
        """What the guest held when its first snapshot was taken and fragsim's boot does not
        model: the initramfs root file system (shmem pages), reclaimable slab, and other
        kernel memory (unreclaimable slab, vmalloc, kernel stacks, percpu, ...), allocated as
        order-0 pages in that order. The sizes are the real s00 snapshot's: meminfo's Shmem
        and SReclaimable, and as unmovable the rest of the difference between fragsim's free
        pages after boot and the real ones (MemFree plus the per-CPU lists' counts in
        zoneinfo; the median of the runs)."""
        user = MemoryUser(self.m)
        user.name = "boot"
        for lo in range(0, shmem, 256):
            n = min(256, shmem - lo)
            self.shmem.alloc_pages(n, GFP_HIGHUSER_MOVABLE, flags=SHMEM_FLAGS & ~PG_dirty)
        for lo in range(0, reclaimable, 256):
            user.alloc_pages(min(256, reclaimable - lo), GFP_KERNEL | GFP_F_RECLAIMABLE)
        for lo in range(0, unmovable, 256):
            user.alloc_pages(min(256, unmovable - lo), GFP_KERNEL)
        self._count("boot_pages", shmem + reclaimable + unmovable)

    def _find(self, cls: type[Any], what: str) -> Any:
        found = self.sim.drivers_of(cls)
        if not found:
            raise ConfigError(f"workload {self.name}: the scenario has no {what} driver")
        return found[0]

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def stages(self) -> dict[int, str]:
        return dict(self._stages)

    def summary(self) -> dict[str, Any]:
        return dict(self.counts)

    # ------------------------------------------------------------------ slab objects
    def _objects(self, cache: str, n: int, cpu: int = 0) -> list[tuple[str, int]]:
        ids = self.slab.kmem_cache_alloc(cache, n, cpu=cpu)
        return [(cache, int(i)) for i in ids if i >= 0]

    def _kmalloc(self, size: int, n: int, cpu: int = 0) -> list[tuple[str, int]]:
        ids = self.slab.kmalloc(size, n, GFP_KERNEL_ACCOUNT, cpu=cpu)
        return [("", int(i)) for i in ids if i >= 0]

    def _free_objects(self, objs: list[tuple[str, int]], cpu: int = 0) -> None:
        by: dict[str, list[int]] = {}
        for cache, i in objs:
            by.setdefault(cache, []).append(i)
        for cache, ids in by.items():
            if cache:
                self.slab.kmem_cache_free(cache, ids, cpu)
            else:
                self.slab.kfree(ids, cpu)

    # ------------------------------------------------------------------ shmem files
    def _create_files(self, sizes: list[int], cpu: int = 0) -> list[_File]:
        """shmem files of these sizes (pages), written: per file a shmem_inode_cache object,
        a dentry, a radix_tree_node when it has more than one page, its pages."""
        files = []
        for np_ in sizes:
            objs = self._objects("shmem_inode_cache", 1, cpu) + self._objects("dentry", 1, cpu)
            if np_ > 1:
                objs += self._objects("radix_tree_node", 1, cpu)
            hs = self.shmem.alloc_pages(np_, GFP_HIGHUSER_MOVABLE, flags=SHMEM_FLAGS, cpu=cpu)
            files.append(_File(hs[hs >= 0], objs))
        self._count("files_created", len(sizes))
        return files

    def _delete_file(self, f: _File, cpu: int = 0) -> None:
        """unlink(): shmem_evict_inode frees the pages (and the swap slots of swapped-out
        ones), the inode and dentry are freed."""
        self._drop_handles(self.shmem, f.pages, cpu)
        self._free_objects(f.slab, cpu)
        f.pages = np.zeros(0, np.int64)
        f.slab = []

    def _drop_handles(self, user: MemoryUser, hs: npt.NDArray[np.int64], cpu: int = 0) -> None:
        """Resident pages freed, swap slots of swapped-out ones freed, handles released."""
        if hs.size == 0:
            return
        m = self.m
        res = hs[m.handles[hs] >= 0]
        rest = hs[m.handles[hs] < 0]
        if res.size:
            user.free_pages(res, cpu)
        if rest.size:
            sw = rest[m.swap_entry[rest] >= 0]
            if sw.size:
                m.swap.swap_free(m.swap_entry[sw])
                m.swap_entry[sw] = -1
            m.shadow[rest] = -1
            m.release_handles(rest)

    # ------------------------------------------------------------------ pipes
    def _pipes(self, n: int, cpu: int = 0) -> tuple[npt.NDArray[np.int64], list[tuple[str, int]]]:
        """``n`` pipes with one page written into each: create_pipe_files() (pipefs inode and
        dentry, two files), alloc_pipe_info() (pipe_inode_info in kmalloc-cg-192, 16
        pipe_buffers in kmalloc-cg-1k), pipe_write()'s page."""
        objs: list[tuple[str, int]] = []
        for _ in range(n):
            objs += self._kmalloc(192, 1, cpu) + self._kmalloc(640, 1, cpu)
            objs += self._objects("inode_cache", 1, cpu) + self._objects("dentry", 1, cpu)
            objs += self._objects("filp", 2, cpu)
        pages = self.pipes_user.alloc_pages(n, GFP_PIPE, cpu=cpu)
        self._count("pipes", n)
        return pages[pages >= 0], objs

    def _close_pipes(
        self, pages: npt.NDArray[np.int64], objs: list[tuple[str, int]], cpu: int = 0
    ) -> None:
        if pages.size:
            self.pipes_user.free_pages(pages, cpu)
        self._free_objects(objs, cpu)

    # ------------------------------------------------------------------ processes
    def _fork(self, name: str, cpu: int = 0) -> tuple[int, list[tuple[str, int]]]:
        objs: list[tuple[str, int]] = []
        for cache, n in FORK_OBJECTS:
            objs += self._objects(cache, n, cpu)
        return self.procs.spawn(name, cpu=cpu), objs

    def _exit(self, pid: int, objs: list[tuple[str, int]], cpu: int = 0) -> None:
        if pid in self.procs.procs:
            self.procs.exit(pid)
        self._free_objects(objs, cpu)

    def _fault(self, pid: int, pages: int, chunk: int = 1024, cpu: int = 0) -> None:
        """Touch ``pages`` new anonymous pages, ``chunk`` at a time (the daemons run between
        the chunks, as kswapd runs while a program faults its memory in)."""
        done = 0
        while done < pages and pid in self.procs.procs:
            n = min(chunk, pages - done)
            self.procs.fault(pid, n, cpu)
            done += n

    def madvise_dontneed(self, pid: int, idx: npt.NDArray[np.int64], cpu: int = 0) -> int:
        """MADV_DONTNEED of the anonymous pages at virtual page indexes ``idx`` (zap_pte_range:
        resident pages freed, swap slots freed); the process keeps the handles, holding
        nothing (a later touch would fault a new page). Returns pages freed."""
        if pid not in self.procs.procs:
            return 0
        m = self.m
        hs = self.procs.procs[pid].anon[idx]
        pfns = m.handles[hs]
        res = hs[pfns >= 0]
        if res.size:
            m.state.flags[m.handles[res]] &= ~PG_mapped
            self.procs.free_pages(res, cpu, release=False)
        rest = hs[pfns < 0]
        sw = rest[m.swap_entry[rest] >= 0]
        if sw.size:
            m.swap.swap_free(m.swap_entry[sw])
            m.swap_entry[sw] = -1
        return int(res.size)

    def madvise_pageout(self, pid: int, start: int, count: int, cpu: int = 0) -> int:
        """MADV_PAGEOUT of ``count`` anonymous pages from ``start``: the pages of one page
        table at a time (madvise_cold_or_pageout_pte_range) go to reclaim_pages() ->
        shrink_folio_list: a swap slot each, written to the swap device (zram allocates its
        zspages as it goes), then the batch is freed (free_unref_page_list). Returns pages
        swapped out."""
        m = self.m
        if m.swap is None:
            raise ConfigError(f"workload {self.name}: MADV_PAGEOUT needs a swap device")
        p = self.procs.procs[pid]
        out = 0
        for lo in range(start, start + count, PAGEOUT_BATCH):
            hs = p.anon[lo : min(lo + PAGEOUT_BATCH, start + count)]
            hs = hs[m.handles[hs] >= 0]
            if not hs.size:
                continue
            slots = np.asarray(m.swap.swap_out(hs.size), np.int64)
            ok = slots >= 0
            gone = hs[ok]
            if gone.size:
                m.state.flags[m.handles[gone]] &= ~PG_mapped
                self.procs.free_pages(gone, cpu, release=False)
                m.swap_entry[gone] = slots[ok]
                out += int(gone.size)
        # count_swpout_vm_event(); zram writes through bdev_write_page (rw_page), which counts
        # no pgpgout (the real s01: pswpout 49152, pgpgout 0)
        m.count_vm_event("pswpout", out)
        return out

    def _thp_fault(self, nr: int, gfp: int, cpu: int = 0) -> tuple[npt.NDArray[np.int64], int]:
        """``nr`` THP faults (do_huge_pmd_anonymous_page: vma_alloc_folio of HPAGE_PMD_ORDER
        with ``gfp``): thp_fault_alloc per success, thp_fault_fallback per failure. Returns
        (the THP handles, failures)."""
        hs = self.thp_user.alloc_pages(nr, gfp | GFP_F_COMP, HPAGE_ORDER, flags=THP_FLAGS, cpu=cpu)
        ok = hs[hs >= 0]
        if ok.size:
            self.m.count_vm_event("thp_fault_alloc", int(ok.size))
        if nr - ok.size:
            self.m.count_vm_event("thp_fault_fallback", int(nr - ok.size))
        return ok, int(nr - ok.size)


def tmpfs_sizes(nfiles: int, minpages: int, maxpages: int) -> list[int]:
    """oracle_work tmpfs's file sizes: xorshift64 seeded 0x1234567, each file's size drawn,
    then its pages filled (fill_page of index i * 16 + j takes draws too)."""
    rng = Xorshift64(0x1234567)
    sizes = []
    for i in range(nfiles):
        np_ = minpages + rng.next() % (maxpages - minpages + 1)
        rng.skip(fill_page_draws(np.arange(i * 16, i * 16 + np_)))
        sizes.append(np_)
    return sizes


def _boot_pages(w: str, v: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(v) != 3 or any(x < 0 for x in v):
        raise ConfigError(f"{w}: boot_pages: expected [shmem, reclaimable, unmovable] >= 0")
    return (int(v[0]), int(v[1]), int(v[2]))


def _t(seconds: float) -> int:
    return int(round(seconds * S))


@register_workload("oracle-default")
class OracleDefault(_OracleBase):
    """The oracle's ``default`` scenario (zram, tmpfs and anonymous checkerboard,
    compact_memory, balloon inflate/compact/deflate, THP faults, release) with its stages
    s00_boot .. s08_released. Options are oracle_params' (oracle_push_mib, ...);
    ``balloon_pages`` is the balloon's size (QEMU: 1024 MiB - 512 MiB)."""

    #: stage name -> time (s from the start); the real runs' STAGE markers less s00_boot's
    STAGES = {
        "s00_boot": 0.0,
        "s01_zram_loaded": 3.26,
        "s02_fragmented": 5.28,
        "s03_compacted": 5.84,
        "s04_balloon_inflated": 9.34,
        "s05_balloon_compacted": 9.86,
        "s06_balloon_deflated": 12.57,
        "s07_thp_faulted": 13.45,
        "s08_released": 16.18,
    }

    def __init__(
        self,
        sim: Simulation,
        *,
        push_mib: int = 256,
        pageout_mib: int = 192,
        tmpfs_files: int = 12000,
        tmpfs_minpages: int = 1,
        tmpfs_maxpages: int = 3,
        frag_mib: int = 256,
        frag_pipes: int = 4096,
        balloon_pages: int = 131072,
        thp_extra_mib: int = 32,
        balloon_retry_ns: int = 200 * MS,
        boot_pages: tuple[int, int, int] = (2290, 2248, 4018),
    ) -> None:
        super().__init__(sim)
        w = "workload oracle-default"
        for k, v in (
            ("push_mib", push_mib),
            ("pageout_mib", pageout_mib),
            ("tmpfs_files", tmpfs_files),
            ("frag_mib", frag_mib),
            ("frag_pipes", frag_pipes),
            ("balloon_pages", balloon_pages),
            ("thp_extra_mib", thp_extra_mib),
        ):
            if v < 0:
                raise ConfigError(f"{w}: {k}: expected >= 0, got {v}")
        if not 1 <= tmpfs_minpages <= tmpfs_maxpages:
            raise ConfigError(f"{w}: expected 1 <= tmpfs_minpages <= tmpfs_maxpages")
        if balloon_retry_ns <= 0:
            raise ConfigError(f"{w}: balloon_retry_ns: expected > 0")
        self.push_mib = push_mib
        self.pageout_mib = min(pageout_mib, push_mib)
        self.tmpfs_files = tmpfs_files
        self.tmpfs_pages = (tmpfs_minpages, tmpfs_maxpages)
        self.frag_mib = frag_mib
        self.frag_pipes = frag_pipes
        self.balloon_pages = balloon_pages
        self.thp_extra_mib = thp_extra_mib
        self.retry_ns = balloon_retry_ns
        self.boot_pages = _boot_pages(w, boot_pages)
        self.balloon: VirtioBalloon = self._find(VirtioBalloon, "virtio-balloon")
        self._stages = {_t(s): name for name, s in self.STAGES.items()}
        self.pids: list[tuple[int, list[tuple[str, int]]]] = []
        self.files: list[_File] = []
        self.pipe_pages = np.zeros(0, np.int64)
        self.pipe_objs: list[tuple[str, int]] = []
        self.thps = np.zeros(0, np.int64)

    def start(self) -> None:
        self.boot(*self.boot_pages)
        at = self.sim.at
        t0 = self.sim.now
        at(t0 + _t(1.38), self.push)
        at(t0 + _t(3.60), self.tmpfs)
        at(t0 + _t(4.13), self.frag)
        at(t0 + _t(5.67), self.compact)
        at(t0 + _t(6.22), lambda: self.balloon_to(self.balloon_pages))
        at(t0 + _t(9.77), self.compact)
        at(t0 + _t(10.27), lambda: self.balloon_to(0))
        at(t0 + _t(13.03), self.thp)
        at(t0 + _t(13.50), self.release)

    # ------------------------------------------------------------------ the steps
    def push(self) -> None:
        """oracle_work push: fill, then MADV_PAGEOUT the first pageout_mib."""
        pid, objs = self._fork("push")
        self.pids.append((pid, objs))
        self._fault(pid, self.push_mib * MIB_PAGES)
        self._count("pageout_pages", self.madvise_pageout(pid, 0, self.pageout_mib * MIB_PAGES))

    def tmpfs(self) -> None:
        """oracle_work tmpfs: NFILES files with sizes from xorshift64 (seed 0x1234567), then
        every odd file unlinked."""
        sizes = tmpfs_sizes(self.tmpfs_files, *self.tmpfs_pages)
        for a in range(0, len(sizes), 64):
            self.files += self._create_files(sizes[a : a + 64])
        for i in range(1, len(self.files), 2):
            self._delete_file(self.files[i])
        self.files = self.files[0::2]

    def frag(self) -> None:
        """oracle_work frag: touch MIB of anonymous memory with a pipe after every
        npages/NPIPES pages, then MADV_DONTNEED every odd page."""
        pid, objs = self._fork("frag")
        self.pids.append((pid, objs))
        npages = self.frag_mib * MIB_PAGES
        every = npages // self.frag_pipes if self.frag_pipes else 0
        step = every * 16 if every else npages
        made = 0
        for lo in range(0, npages, step):
            n = min(step, npages - lo)
            self.procs.fault(pid, n)
            want = min(n // every if every else 0, self.frag_pipes - made)
            if want > 0:
                pages, pobjs = self._pipes(want)
                self.pipe_pages = np.concatenate([self.pipe_pages, pages])
                self.pipe_objs += pobjs
                made += want
        self._count("frag_freed", self.madvise_dontneed(pid, np.arange(1, npages, 2)))

    def compact(self) -> None:
        self.m.compact_memory()
        self._count("compact_memory")

    def balloon_to(self, pages: int) -> None:
        """The host's QMP ``balloon``: the device's target, the guest's work item run now and
        every balloon_retry_ns until it reaches it."""
        self.balloon.set_target(pages)
        self._balloon_work()

    def _balloon_work(self) -> None:
        self.balloon.work()
        if self.balloon.work_pending:
            self.sim.after(self.retry_ns, self._balloon_work)

    def thp(self) -> None:
        """oracle_work thp: (free MiB in order>=9 blocks + thp_extra_mib) of MADV_HUGEPAGE
        memory, one GFP_TRANSHUGE fault per 2 MiB, falling back to 512 small pages."""
        st = self.m.state
        free_hi = sum(int(st.nr_free[:, o].sum()) << o for o in range(HPAGE_ORDER, 11))
        mib = free_hi // MIB_PAGES + self.thp_extra_mib
        pid, objs = self._fork("thp")
        self.pids.append((pid, objs))
        got = []
        fallbacks = 0
        for _ in range(mib // 2):
            hs, failed = self._thp_fault(1, GFP_TRANSHUGE)
            got.append(hs)
            if failed:
                fallbacks += 1
                self.procs.fault(pid, HPAGE_PAGES)
        self.thps = np.concatenate([self.thps, *got]) if got else self.thps
        self._count("thp_mib", mib)

    def release(self) -> None:
        """kill_bg; rm -rf the tmpfs; umount."""
        for pid, objs in self.pids:
            self._exit(pid, objs)
        self.pids = []
        self._drop_handles(self.thp_user, self.thps)
        self.thps = np.zeros(0, np.int64)
        self._close_pipes(self.pipe_pages, self.pipe_objs)
        self.pipe_pages = np.zeros(0, np.int64)
        self.pipe_objs = []
        for f in self.files:
            self._delete_file(f)
        self.files = []


@register_workload("oracle-anon-churn")
class OracleAnonChurn(_OracleBase):
    """The oracle's ``anon-churn`` scenario: a resident set, then oracle_work churn (140 jobs
    drawn as the program draws them), snapshots every 10 s, s06_end, compact_memory,
    s07_compacted. ``ring_buffer_mib`` is the traced guest's ftrace buffer (allocated as
    unmovable pages before the workload starts; the guest had that much more RAM)."""

    def __init__(
        self,
        sim: Simulation,
        *,
        resident_mib: int = 256,
        seconds: int = 60,
        procs: int = 6,
        seed: int = 1,
        anon_max_kb: int = 8192,
        snap_every_ns: int = 10 * S,
        ring_buffer_mib: int = 64,
        setup_ns: int = 20 * MS,
        page_ns: int = 0,
        churn_at_ns: int = 410 * MS,
        boot_pages: tuple[int, int, int] = (2279, 2229, 4969),
    ) -> None:
        super().__init__(sim)
        w = "workload oracle-anon-churn"
        if resident_mib < 0 or ring_buffer_mib < 0 or anon_max_kb < 256:
            raise ConfigError(f"{w}: resident_mib, ring_buffer_mib >= 0; anon_max_kb >= 256")
        if seconds <= 0 or procs <= 0 or snap_every_ns <= 0 or setup_ns < 0 or page_ns < 0:
            raise ConfigError(f"{w}: seconds, procs, snap_every_ns > 0; setup_ns, page_ns >= 0")
        self.resident_mib = resident_mib
        self.boot_pages = _boot_pages(w, boot_pages)
        self.ring_buffer_mib = ring_buffer_mib
        self.t_churn = churn_at_ns
        self.jobs = draw_jobs(seconds, procs, seed, anon_max_kb, setup_ns, page_ns)
        self._stages = {0: "s00_start"}
        i = 1
        while i * snap_every_ns < seconds * S:
            self._stages[churn_at_ns + i * snap_every_ns] = f"s0{i}_t{i * snap_every_ns // S}"
            i += 1
        end = churn_at_ns + max(j.end_ns for j in self.jobs) + 2 * S
        self._stages[end] = f"s0{i}_end"
        self.t_compact = end + 350 * MS
        self._stages[self.t_compact + 20 * MS] = f"s0{i + 1}_compacted"
        self.dirs: dict[int, list[_File]] = {}
        self.live: dict[int, dict[str, Any]] = {}

    def start(self) -> None:
        t0 = self.sim.now
        self.boot(*self.boot_pages)
        if self.ring_buffer_mib:
            # ring_buffer_resize(): rb_allocate_pages, one order-0 page at a time, unmovable
            user = MemoryUser(self.m)
            user.name = "ring-buffer"
            user.alloc_pages(self.ring_buffer_mib * MIB_PAGES, GFP_KERNEL | GFP_F_RETRY_MAYFAIL)
        pid, objs = self._fork("resident")
        self._fault(pid, self.resident_mib * MIB_PAGES)
        for j in self.jobs:
            self.sim.at(t0 + self.t_churn + j.start_ns, functools.partial(self.job_start, j))
            self.sim.at(t0 + self.t_churn + j.end_ns, functools.partial(self.job_exit, j))
        self.sim.at(t0 + self.t_compact, self.compact)

    def compact(self) -> None:
        self.m.compact_memory()
        self._count("compact_memory")

    def job_start(self, j: Job) -> None:
        """run_job() up to its sleep: region, files, pipes, children, early frees."""
        rng = Xorshift64(j.seed)
        npages = j.anon_kb * 1024 // 4096
        rng.skip(fill_page_draws(np.arange(npages) + j.id))  # the region's fill_page()
        pid, objs = self._fork(f"job{j.id}")
        if pid < 0:  # fork failed: -ENOMEM
            self._free_objects(objs)
            self.live[j.id] = {
                "pid": -1,
                "objs": [],
                "thps": np.zeros(0, np.int64),
                "pipes": (np.zeros(0, np.int64), []),
            }
            self._count("fork_failed")
            return
        thps = np.zeros(0, np.int64)
        small = npages
        if j.thp_default and npages >= 2 * HPAGE_PAGES:
            # an unaligned mmap: its whole 2 MiB-aligned parts can be THPs (enabled=always,
            # defrag=madvise, not madvised: GFP_TRANSHUGE_LIGHT, no reclaim or compaction)
            nthp = (npages - (HPAGE_PAGES - 1)) // HPAGE_PAGES
            thps, failed = self._thp_fault(nthp, GFP_TRANSHUGE_LIGHT)
            small = npages - HPAGE_PAGES * int(thps.size)
        self._fault(pid, small, chunk=512)
        if j.nfiles:
            sizes = []
            for k in range(j.nfiles):
                np_ = rng.rnd(1, 4)
                rng.skip(fill_page_draws(np.arange(np_) + k * 4 + j.id))
                sizes.append(np_)
            self.dirs[j.id] = self._create_files(sizes)
        pipes, pobjs = self._pipes(j.npipes) if j.npipes else (np.zeros(0, np.int64), [])
        for _ in range(j.nforks):
            gpages = rng.rnd(16, 128)
            cpid, cobjs = self._fork(f"job{j.id}-child")
            if cpid >= 0:
                self.procs.fault(cpid, gpages)
            self._exit(cpid, cobjs)
        self._count("forks", j.nforks)
        if j.free_q:
            chunks = npages // 16
            nfree = chunks * j.free_q // 4
            small_chunks = small // 16  # chunks in the small-page part of the region
            for _ in range(nfree):
                at = rng.rnd(0, chunks - 1 if chunks else 0)
                if at < small_chunks:
                    self.madvise_dontneed(pid, np.arange(at * 16, at * 16 + 16))
        self.live[j.id] = {"pid": pid, "objs": objs, "thps": thps, "pipes": (pipes, pobjs)}
        self._count("jobs")
        self._count("anon_pages", npages)

    def job_exit(self, j: Job) -> None:
        """The job's clean-up (own directory unless kept, job id-100's) and exit (its pipes
        closed, its memory freed)."""
        if j.nfiles and not j.keep_files:
            self._rm_dir(j.id)
        if j.id >= 100:
            self._rm_dir(j.id - 100)
        st = self.live.pop(j.id)
        self._close_pipes(*st["pipes"])
        self._drop_handles(self.thp_user, st["thps"])
        self._exit(st["pid"], st["objs"])

    def _rm_dir(self, id_: int) -> None:
        for f in self.dirs.pop(id_, []):
            self._delete_file(f)
