"""Processes: anonymous memory with swap, and the unmovable kernel memory each process ties up
(its kernel stack and page tables). Models, Linux 6.1.192: fork's alloc_thread_stack_node
(kernel/fork.c: THREAD_SIZE from vmalloc'd order-0 pages with CONFIG_VMAP_STACK, else one
THREAD_SIZE_ORDER block), pgd_alloc / __pte_alloc (GFP_PGTABLE_USER page tables, one PTE page
per 512 mapped pages), do_anonymous_page (GFP_HIGHUSER_MOVABLE, folio_add_lru_vma), do_swap_page
(swap-in: pswpin, pgmajfault, workingset_refault on the swap shadow), zap_pte_range /
free_swap_and_cache at munmap and exit, and out_of_memory()'s choice of victim (oom_badness: the
process with the most resident, swapped and page-table pages).

Pages are referred to by handle: a process's anonymous memory is an array of handles, one per
virtual page; reclaim (fragsim/mm/vmscan.py) swaps a page out by giving its handle a swap slot
(``Machine.swap_entry``) and a shadow entry and no page.

SIMPLIFICATIONS: one thread per process; page tables are one PGD page plus one PTE page per 512
virtual pages (the PMD/PUD levels of a small process fit in one page each and are counted with
the PGD); no THP, no KSM, no fork-time copy-on-write sharing (each process's pages are its own,
mapped once); no swap cache and no swap readahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MemoryUser, register_driver
from fragsim.errors import ConfigError
from fragsim.mm.gfp import __GFP_ZERO, GFP_HIGHUSER_MOVABLE, GFP_KERNEL_ACCOUNT
from fragsim.mm.machine import Machine
from fragsim.mm.page import PG_anon, PG_lru, PG_mapped, PG_swapbacked, PG_young
from fragsim.mm.swap import folio_mark_young
from fragsim.mm.workingset import workingset_refault

__all__ = ["Process", "Processes"]

GFP_PGTABLE_USER = GFP_KERNEL_ACCOUNT | __GFP_ZERO
PTRS_PER_PTE = 512
ANON_FLAGS = PG_lru | PG_anon | PG_swapbacked | PG_mapped | PG_young


@dataclass
class Process:
    """A process: its anonymous pages (handles, one per virtual page), kernel stack and page
    tables (handles of unmovable blocks)."""

    pid: int
    name: str
    anon: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    stack: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    pgtables: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    oom_score_adj: int = 0


@register_driver("process")
class Processes(MemoryUser):
    """The processes of one machine. ``thread_size`` (bytes, 16 KiB on x86-64 and arm64, 8 KiB
    on arm32) and ``vmap_stack`` (CONFIG_VMAP_STACK: the stack is THREAD_SIZE/PAGE_SIZE order-0
    pages; without it one block of THREAD_SIZE_ORDER) shape each kernel stack; ``pgd_order`` is
    the PGD allocation order (1 on x86-64 with page-table isolation, else 0). ``oom_killer``
    installs out_of_memory() in the machine's slow path."""

    def __init__(
        self,
        machine: Machine,
        *,
        thread_size: int = 16384,
        vmap_stack: bool = True,
        pgd_order: int = 0,
        oom_killer: bool = True,
    ) -> None:
        super().__init__(machine)
        if thread_size < 4096 or thread_size & (thread_size - 1):
            raise ConfigError(f"process: thread_size {thread_size} is not a power of two >= 4096")
        if not 0 <= pgd_order <= 2:
            raise ConfigError(f"process: pgd_order {pgd_order} is not 0..2")
        self.thread_size = thread_size
        self.vmap_stack = vmap_stack
        self.pgd_order = pgd_order
        self.procs: dict[int, Process] = {}
        self._next_pid = 1
        #: handles a swap-in is reading pages into: an OOM kill in the middle of that batch
        #: leaves them to the swap-in (the batch goes on filling them)
        self._reading = np.zeros(0, np.int64)
        if oom_killer:
            machine.hooks.oom_kill = self.out_of_memory

    # ------------------------------------------------------------------ life cycle
    def spawn(self, name: str = "task", anon_pages: int = 0, cpu: int = 0) -> int:
        """fork() + exec(): a kernel stack and a PGD (GFP_KERNEL_ACCOUNT, unmovable), then
        ``anon_pages`` of anonymous memory faulted in. Returns the pid, or -1 if the kernel
        stack or PGD could not be allocated (fork fails with -ENOMEM)."""
        order = (self.thread_size // 4096).bit_length() - 1
        if self.vmap_stack:
            stack = self.alloc_pages(1 << order, GFP_KERNEL_ACCOUNT, 0, cpu=cpu)
        else:
            stack = self.alloc_pages(1, GFP_KERNEL_ACCOUNT, order, cpu=cpu)
        pgd = self.alloc_pages(1, GFP_PGTABLE_USER, self.pgd_order, cpu=cpu)
        if (stack < 0).any() or (pgd < 0).any():
            self.free_pages(stack[stack >= 0])
            self.free_pages(pgd[pgd >= 0])
            return -1
        m = self.machine
        m.mod_node_page_state(0, "nr_kernel_stack", self.thread_size // 1024)
        m.mod_node_page_state(0, "nr_page_table_pages", 1 << self.pgd_order)
        pid = self._next_pid
        self._next_pid += 1
        self.procs[pid] = Process(pid, name, stack=stack, pgtables=pgd)
        if anon_pages:
            self.fault(pid, anon_pages, cpu)
        return pid

    def exit(self, pid: int) -> None:
        """exit(): unmap everything (anonymous pages freed, swap slots freed), then the page
        tables and the kernel stack."""
        p = self._proc(pid)
        self.unmap(pid, len(p.anon))
        m = self.machine
        self.free_pages(p.pgtables)
        self.free_pages(p.stack)
        m.mod_node_page_state(0, "nr_kernel_stack", -(self.thread_size // 1024))
        m.mod_node_page_state(0, "nr_page_table_pages", -(1 << self.pgd_order))
        del self.procs[pid]

    def _proc(self, pid: int) -> Process:
        try:
            return self.procs[pid]
        except KeyError:
            raise ConfigError(f"process: no pid {pid}") from None

    # ------------------------------------------------------------------ anonymous memory
    def fault(self, pid: int, nr_pages: int, cpu: int = 0) -> int:
        """Touch ``nr_pages`` new anonymous pages (do_anonymous_page: GFP_HIGHUSER_MOVABLE,
        onto the inactive anon list, mapped and young), with a PTE page (GFP_PGTABLE_USER) for
        each 512 virtual pages begun. Returns pages that could not be allocated (the fault
        would fail: the caller decides what that means)."""
        if nr_pages < 0:
            raise ConfigError(f"process: fault of {nr_pages} pages")
        p = self._proc(pid)
        m = self.machine
        old = len(p.anon)
        new_ptes = -(-(old + nr_pages) // PTRS_PER_PTE) - (-(-old // PTRS_PER_PTE))
        if new_ptes:
            pt = self.alloc_pages(new_ptes, GFP_PGTABLE_USER, 0, cpu=cpu)
            ok = pt[pt >= 0]
            if pid not in self.procs:  # the OOM killer chose this process meanwhile
                self.free_pages(ok)
                return nr_pages
            p.pgtables = np.concatenate([p.pgtables, ok])
            m.mod_node_page_state(0, "nr_page_table_pages", len(ok))
        hs = m.alloc_handles(nr_pages)
        self.alloc_pages(nr_pages, GFP_HIGHUSER_MOVABLE, flags=ANON_FLAGS, cpu=cpu, into=hs)
        m.count_vm_event("pgfault", nr_pages)
        if pid not in self.procs:  # killed by the OOM killer during its own fault
            self._drop(hs)
            return nr_pages
        p.anon = np.concatenate([p.anon, hs])
        return int(np.count_nonzero(m.handles[hs] < 0))

    def _drop(self, hs: npt.NDArray[np.int64]) -> None:
        """Give back anonymous pages: resident ones freed, swap slots freed
        (free_swap_and_cache), the handles released."""
        m = self.machine
        if self._reading.size:
            hs = hs[~np.isin(hs, self._reading)]
        resident = m.handles[hs] >= 0
        res = hs[resident]
        rest = hs[~resident]
        if len(res):
            m.state.flags[m.handles[res]] &= ~PG_mapped
            self.free_pages(res)  # (gives their handles back)
        sw = rest[m.swap_entry[rest] >= 0]
        if len(sw):
            m.swap.swap_free(m.swap_entry[sw])
            m.swap_entry[sw] = -1
        m.release_handles(rest)

    def touch(self, pid: int, start: int = 0, count: int | None = None, cpu: int = 0) -> int:
        """Access pages ``start .. start+count`` of the process's anonymous memory: resident
        pages get their accessed bit; swapped-out ones are swapped in (do_swap_page: the slot
        is read and freed, pswpin, pgmajfault; workingset_refault decides whether the new page
        starts active). Returns pages that could not be swapped in."""
        p = self._proc(pid)
        end = len(p.anon) if count is None else start + count
        if not 0 <= start <= end <= len(p.anon):
            raise ConfigError(f"process {pid}: pages {start}..{end} outside 0..{len(p.anon)}")
        m = self.machine
        hs = p.anon[start:end]
        pfns = m.handles[hs]
        folio_mark_young(m, pfns[pfns >= 0])
        out = hs[pfns < 0]
        swapped = out[m.swap_entry[out] >= 0]
        if not len(swapped):
            return 0
        # the slots are taken off the page table while their pages are read in (a reclaim
        # or OOM kill during the allocations must not see them twice)
        slots = m.swap_entry[swapped].copy()
        m.swap_entry[swapped] = -1
        flags = workingset_refault(m, 0, m.shadow[swapped], False) | ANON_FLAGS
        m.shadow[swapped] = -1
        self._reading = swapped
        try:
            for fl in np.unique(flags):
                sel = swapped[flags == fl]
                self.alloc_pages(sel.size, GFP_HIGHUSER_MOVABLE, flags=int(fl), cpu=cpu, into=sel)
        finally:
            self._reading = np.zeros(0, np.int64)
        m.count_vm_event("pgfault", len(swapped))
        if pid not in self.procs:
            # killed meanwhile: exit() gave back everything but these, which the batch went
            # on filling; their pages (some maybe swapped out again) and the old slots go now
            self._drop(swapped)
            m.swap.swap_free(slots)
            return len(swapped)
        got = m.handles[swapped] >= 0
        # a page read in and swapped out again within the batch holds a new slot: it was read
        read = got | (m.swap_entry[swapped] >= 0)
        if read.any():
            m.swap.swap_in(slots[read])
            m.count_vm_event("pswpin", int(read.sum()))
            m.count_vm_event("pgmajfault", int(read.sum()))
        m.swap_entry[swapped[~read]] = slots[~read]  # not read in: still swapped out
        return int(np.count_nonzero(~read))

    def unmap(self, pid: int, nr_pages: int) -> None:
        """munmap() of the last ``nr_pages`` anonymous pages: resident pages are freed, swap
        slots freed (free_swap_and_cache), PTE pages no longer needed freed."""
        p = self._proc(pid)
        m = self.machine
        nr_pages = min(nr_pages, len(p.anon))
        if nr_pages <= 0:
            return
        self._drop(p.anon[len(p.anon) - nr_pages :])
        p.anon = p.anon[: len(p.anon) - nr_pages]
        keep_ptes = -(-len(p.anon) // PTRS_PER_PTE)
        first_pte = 1  # the PGD comes first
        extra = p.pgtables[first_pte + keep_ptes :]
        if len(extra):
            self.free_pages(extra)
            m.mod_node_page_state(0, "nr_page_table_pages", -len(extra))
            p.pgtables = p.pgtables[: first_pte + keep_ptes]

    # ------------------------------------------------------------------ accounting and OOM
    def rss(self, pid: int) -> tuple[int, int]:
        """(resident anonymous pages, swapped-out pages) of a process."""
        p = self._proc(pid)
        m = self.machine
        return int(np.count_nonzero(m.handles[p.anon] >= 0)), int(
            np.count_nonzero(m.swap_entry[p.anon] >= 0)
        )

    def oom_badness(self, pid: int) -> int:
        """oom_badness() (6.1): rss + swap entries + page-table pages, adjusted by
        oom_score_adj (per mille of total RAM)."""
        p = self._proc(pid)
        rss, swap = self.rss(pid)
        points = rss + swap + len(p.pgtables)
        if p.oom_score_adj:
            m = self.machine
            total = m.totalram_pages()
            if m.swap is not None:
                total += int(m.swap.nr_slots())  # total_swap_pages
            points += p.oom_score_adj * total // 1000
        return points

    def out_of_memory(self, m: Machine, gfp: int, order: int) -> bool:
        """out_of_memory() (6.1) as the slow path's last resort: kill the process with the
        highest oom_badness (select_bad_process; its memory is freed at once, as the OOM reaper
        would) and count oom_kill. False if there is no process to kill."""
        if not self.procs:
            return False
        victim = max(self.procs, key=lambda pid: (self.oom_badness(pid), -pid))
        if self.oom_badness(victim) <= 0:
            return False
        m.count_vm_event("oom_kill")
        self.exit(victim)
        return True
