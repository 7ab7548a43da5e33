"""The virtio-balloon driver and balloon compaction. Models drivers/virtio/virtio_balloon.c,
mm/balloon_compaction.c and include/linux/balloon_compaction.h of Linux 6.1.192.

The host asks for a balloon size (``set_target``: the config field ``num_pages``, in 4 KiB
balloon pages; the config-change interrupt queues ``update_balloon_size_work``). The work item
(``work()``, the scenario engine's tick) moves the balloon towards the target one batch of at
most VIRTIO_BALLOON_ARRAY_PFNS_MAX (256) balloon pfns per run, requeueing itself until it gets
there::

    update_balloon_size_func:
        diff = towards_target()                  # ALIGN(num_pages, PAGES_PER_PAGE) - vb->num_pages
        fill_balloon(diff) if diff > 0 else leak_balloon(-diff)
        update_balloon_size()                    # config "actual" = vb->num_pages
        requeue while diff != 0
    fill_balloon: allocate pages (stop at the first failure: "Out of puff!", msleep(200)),
        then under balloon_lock enqueue each (PG_offline, __SetPageMovable, head of
        b_dev_info->pages, balloon_inflate), managed -1 each, tell the host (inflate vq)
    leak_balloon: under balloon_lock dequeue from the head of the list (finalize: PG_offline and
        the movable ops cleared, balloon_deflate), tell the host (deflate vq), managed +1 and
        put_page each

With ``movable=True`` (CONFIG_BALLOON_COMPACTION) the pages are GFP_HIGHUSER_MOVABLE and carry
``balloon_mops``: compaction isolates a balloon page (it leaves the list), and
``virtballoon_migratepage`` puts the new page at the head of the list, tells the host about the
new page (inflate vq) and then the old one (deflate vq), counts balloon_migrate and drops the
old page. With ``movable=False`` the pages are GFP_HIGHUSER (unmovable pageblocks) and never
move.

SIMPLIFICATION: "later" after an allocation failure (fill_balloon's msleep(200) before the
work item runs again) is the next ``work()`` call; time is not advanced.
SIMPLIFICATION: the balloon_lock mutex is held only while a fill or leak batch runs its
enqueue/dequeue and host notification; fragsim runs nothing concurrently with those, so
compaction's ``virtballoon_migratepage`` always gets it unless a scenario holds it explicitly
(``hold_balloon_lock()``, a fill or leak running on another CPU), when it returns -EAGAIN.
One case arises by itself: leak_balloon frees its pages under the lock, and if that batch woke
kcompactd, which fragsim runs right after the batch, kcompactd's balloon migrations get -EAGAIN.
adjust_managed_page_count() (without DEFLATE_ON_OOM) changes the zone's managed pages
(zoneinfo's ``managed``); ``managed_delta`` keeps the driver's own total per zone.
SIMPLIFICATION: free page hinting (VIRTIO_BALLOON_F_FREE_PAGE_HINT), free page reporting,
the stats queue and page poisoning are not modelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fragsim.drivers.base import MovableDriver, register_driver
from fragsim.errors import ConfigError
from fragsim.mm.gfp import GFP, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE
from fragsim.mm.machine import Machine
from fragsim.mm.migrate import (
    ClearPagesMovable,
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
from fragsim.mm.page import Page, PG_offline

__all__ = [
    "VIRTIO_BALLOON_ARRAY_PFNS_MAX",
    "VIRTIO_BALLOON_OOM_NR_PAGES",
    "VIRTIO_BALLOON_PFN_SHIFT",
    "BalloonHost",
    "VirtioBalloon",
]

#: include/uapi/linux/virtio_balloon.h: the balloon's page size is 4 KiB whatever PAGE_SIZE is
VIRTIO_BALLOON_PFN_SHIFT = 12
#: drivers/virtio/virtio_balloon.c: balloon pfns per host notification (one fill/leak batch)
VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256
#: drivers/virtio/virtio_balloon.c: balloon pages to deflate per OOM notification
VIRTIO_BALLOON_OOM_NR_PAGES = 256

#: balloon_page_alloc(): balloon_mapping_gfp_mask() | __GFP_NOMEMALLOC | __GFP_NORETRY |
#: __GFP_NOWARN
BALLOON_ALLOC_FLAGS = GFP["__GFP_NOMEMALLOC"] | GFP["__GFP_NORETRY"] | GFP["__GFP_NOWARN"]

_OPTIONS = ("movable", "deflate_on_oom", "host_log_pfns", "cost", "policy")


@dataclass(slots=True)
class BalloonHost:
    """The host's side of the inflate and deflate virtqueues: every ``tell_host()`` is one
    notification carrying up to 256 balloon pfns (pfn << (PAGE_SHIFT - 12), + i for each 4 KiB
    part of a page). ``ballooned`` is what the host believes the guest has given it (one bool per
    balloon pfn). With ``keep_pfns`` each notification's pfns are kept in ``log``."""

    nr_balloon_pfns: int
    keep_pfns: bool = False
    inflate_notifications: int = 0
    deflate_notifications: int = 0
    inflated_pfns: int = 0
    deflated_pfns: int = 0
    log: list[tuple[str, npt.NDArray[np.int64]]] = field(default_factory=list)
    ballooned: npt.NDArray[np.bool_] = field(init=False)

    def __post_init__(self) -> None:
        self.ballooned = np.zeros(self.nr_balloon_pfns, np.bool_)

    def tell_host(self, vq: str, pfns: npt.NDArray[np.int64]) -> None:
        """One buffer on the ``vq`` ("inflate" or "deflate") virtqueue, read by the host."""
        if vq == "inflate":
            self.inflate_notifications += 1
            self.inflated_pfns += pfns.size
            self.ballooned[pfns] = True
        elif vq == "deflate":
            self.deflate_notifications += 1
            self.deflated_pfns += pfns.size
            self.ballooned[pfns] = False
        else:
            raise ValueError(f"virtio-balloon has no {vq!r} virtqueue here")
        if self.keep_pfns:
            self.log.append((vq, pfns.copy()))

    @property
    def nr_ballooned(self) -> int:
        """Balloon pfns the host holds now (inflated minus deflated)."""
        return self.inflated_pfns - self.deflated_pfns


@register_driver("virtio-balloon")
class VirtioBalloon(MovableDriver):
    """struct virtio_balloon with its struct balloon_dev_info ``vb_dev_info`` (the page list,
    ``isolated_pages``) and, when ``movable``, ``balloon_mops`` (drivers/virtio/virtio_balloon.c,
    mm/balloon_compaction.c, Linux 6.1).

    Options: ``movable`` (CONFIG_BALLOON_COMPACTION), ``deflate_on_oom``
    (VIRTIO_BALLOON_F_DEFLATE_ON_OOM: no managed-page adjustment, and an OOM notifier that leaks
    256 pages before the OOM killer runs), ``host_log_pfns`` (keep every notification's pfns in
    ``host.log``), ``cost`` (a MigrationCost per migrated page). Compaction's decisions go through
    the Python callbacks (the balloon keeps a list and talks to the host), so ``policy`` must be
    None.
    """

    name = "virtio-balloon"

    def __init__(self, machine: Machine, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"virtio-balloon: unknown option {unknown[0]!r}; known: {', '.join(_OPTIONS)}"
            )
        for flag in ("movable", "deflate_on_oom", "host_log_pfns"):
            if not isinstance(options.get(flag, False), bool):
                raise ConfigError(f"virtio-balloon: option {flag!r} must be True or False")
        if options.get("policy") is not None:
            raise ConfigError(
                "virtio-balloon: option 'policy' is not supported (balloon_mops keeps the "
                "balloon list and tells the host: Python callbacks only)"
            )
        cost = options.get("cost")
        if cost is not None and not isinstance(cost, MigrationCost):
            raise ConfigError("virtio-balloon: option 'cost' must be a MigrationCost")
        super().__init__(machine, movable=options.get("movable", True), cost=cost, policy=None)
        self.deflate_on_oom: bool = options.get("deflate_on_oom", False)
        page_size = int(machine.profile.page_size)
        #: VIRTIO_BALLOON_PAGES_PER_PAGE: 4 KiB balloon pages per guest page
        self.pages_per_page = page_size >> VIRTIO_BALLOON_PFN_SHIFT
        if self.pages_per_page < 1 or self.pages_per_page > VIRTIO_BALLOON_ARRAY_PFNS_MAX:
            raise ConfigError(f"virtio-balloon: page size {page_size} is not supported")
        nr = int(machine.state.flags.shape[0])
        self.host = BalloonHost(nr * self.pages_per_page, options.get("host_log_pfns", False))
        # b_dev_info->pages: an intrusive list over pfns (the page->lru the balloon owns while
        # a page is not isolated); index nr is the list head; -1: not on the list
        self._head = nr
        self._next = np.full(nr + 1, -1, np.int64)
        self._prev = np.full(nr + 1, -1, np.int64)
        self._next[nr] = self._prev[nr] = nr
        self._nr_listed = 0
        #: b_dev_info->isolated_pages: balloon pages compaction holds isolated
        self.isolated_pages = 0
        #: vb->num_pages: balloon pages (4 KiB units) the host was told the guest gave it
        self._num_pages = 0
        #: the config space: ``num_pages`` (the host's target) and ``actual`` (the guest's
        #: reported size, written by update_balloon_size())
        self.config_num_pages = 0
        self.config_actual = 0
        #: adjust_managed_page_count() per zone id, as fragsim cannot apply it (see the module)
        self.managed_delta: dict[int, int] = {}
        self._balloon_lock = False
        self._work_queued = False
        self._out_of_puff = False
        #: "Out of puff!" events: fill_balloon found no page (dev_info_ratelimited)
        self.nr_out_of_puff = 0
        if self.deflate_on_oom:
            self.register_oom_notifier()

    # ------------------------------------------------------------------ the config space
    @property
    def num_pages(self) -> int:
        """vb->num_pages: the balloon's size in 4 KiB balloon pages."""
        return self._num_pages

    @property
    def actual(self) -> int:
        """The config field ``actual`` the guest reports (update_balloon_size())."""
        return self.config_actual

    @property
    def nr_pages(self) -> int:
        """Guest pages in the balloon (on the list or isolated by compaction)."""
        return self._num_pages // self.pages_per_page

    def set_target(self, pages: int) -> None:
        """The host writes the config field ``num_pages`` (4 KiB balloon pages) and raises the
        config-change interrupt: virtballoon_changed() queues update_balloon_size_work, which
        runs on the next ``work()``."""
        if isinstance(pages, bool) or not isinstance(pages, (int, np.integer)):
            raise ConfigError(f"virtio-balloon: target {pages!r} is not a number of pages")
        if not 0 <= pages < 1 << 32:
            raise ConfigError(f"virtio-balloon: target {pages} pages is outside 0 .. 2^32-1")
        self.config_num_pages = int(pages)
        self._work_queued = True

    def set_target_mib(self, mib: float) -> None:
        """``set_target`` in MiB (as QEMU's ``balloon`` monitor command takes the guest's size,
        this takes the balloon's)."""
        if mib < 0:
            raise ConfigError(f"virtio-balloon: target {mib} MiB is negative")
        self.set_target(int(mib * (1 << 20)) >> VIRTIO_BALLOON_PFN_SHIFT)

    def towards_target(self) -> int:
        """towards_target(): the target aligned up to whole guest pages, minus vb->num_pages."""
        ppp = self.pages_per_page
        target = (self.config_num_pages + ppp - 1) // ppp * ppp
        return target - self._num_pages

    def update_balloon_size(self) -> None:
        """update_balloon_size(): write vb->num_pages to the config field ``actual``."""
        self.config_actual = self._num_pages

    # ------------------------------------------------------------------ the work item
    @property
    def work_pending(self) -> bool:
        """update_balloon_size_work is queued."""
        return self._work_queued

    def update_balloon_size_func(self) -> int:
        """One run of update_balloon_size_work (6.1): one fill or leak batch towards the target,
        ``actual`` updated, requeued while the target is not reached. Returns the balloon pfns
        moved (positive inflated, negative deflated)."""
        self._work_queued = False
        diff = self.towards_target()
        if diff == 0:
            return 0
        if diff > 0:
            done = self.fill_balloon(diff)
            diff -= done
        else:
            done = -self.leak_balloon(-diff)
            diff -= done
        self.update_balloon_size()
        if diff:
            self._work_queued = True
        return done

    def work(self, max_runs: int | None = None) -> int:
        """Run the queued work item until it stops requeueing (the target is reached), or
        fill_balloon ran out of puff (it sleeps 200 ms before the work item runs again: that
        run is the next ``work()`` call), or a leak found nothing to dequeue, or ``max_runs``
        runs. Returns the balloon pfns moved (positive inflated, negative deflated)."""
        if max_runs is not None and max_runs < 0:
            raise ConfigError(f"virtio-balloon: work(max_runs={max_runs}) is negative")
        moved = runs = 0
        while self._work_queued and (max_runs is None or runs < max_runs):
            self._out_of_puff = False
            done = self.update_balloon_size_func()
            moved += done
            runs += 1
            if self._out_of_puff or done == 0:
                break
        return moved

    tick = work

    # ------------------------------------------------------------------ fill and leak
    def balloon_gfp(self) -> int:
        """balloon_page_alloc()'s mask: balloon_mapping_gfp_mask() (GFP_HIGHUSER_MOVABLE with
        CONFIG_BALLOON_COMPACTION, else GFP_HIGHUSER) | __GFP_NOMEMALLOC | __GFP_NORETRY |
        __GFP_NOWARN."""
        return (GFP_HIGHUSER_MOVABLE if self.movable else GFP_HIGHUSER) | BALLOON_ALLOC_FLAGS

    def allocated(self, pfns: npt.NDArray[np.int64]) -> None:
        """Nothing: a balloon page becomes movable when it is enqueued (balloon_page_insert),
        not when it is allocated."""

    def fill_balloon(self, num: int) -> int:
        """fill_balloon() (6.1): at most 256 balloon pfns. balloon_page_alloc() one page after
        the other until the first failure ("Out of puff!": the work item sleeps 200 ms, see
        ``work()``), then under balloon_lock pop each page from the local list (last allocated
        first), balloon_page_enqueue() it, count it in vb->num_pages, adjust_managed_page_count
        (-1) unless DEFLATE_ON_OOM, and tell the host (inflate vq) if any. Returns the balloon
        pfns inflated.
        SIMPLIFICATION: the pages are allocated in one batch; pages that the batch allocated
        after its first failure (the kernel would not have tried) are freed at once."""
        if num < 0:
            raise ConfigError(f"virtio-balloon: fill_balloon({num}) is negative")
        ppp = self.pages_per_page
        num = min(num, VIRTIO_BALLOON_ARRAY_PFNS_MAX)
        want = -(-num // ppp)
        if want == 0:
            return 0
        hs = self.alloc_pages(want, self.balloon_gfp())
        failed = np.flatnonzero(hs < 0)
        if failed.size:
            first = int(failed[0])
            extra = hs[first:]
            extra = extra[extra >= 0]
            if extra.size:
                self.free_pages(extra)
            hs = hs[:first]
            self._out_of_puff = True
            self.nr_out_of_puff += 1
        if hs.size == 0:
            return 0
        with self._locked():
            # balloon_page_push() each page onto a local list, then balloon_page_pop() from it:
            # the last page allocated is enqueued (and told to the host) first
            pfns = self.pfns(hs)[::-1].copy()
            self.balloon_page_list_enqueue(pfns)
            self._num_pages += pfns.size * ppp
            if not self.deflate_on_oom:
                self._adjust_managed_page_count(pfns, -1)
            self.host.tell_host("inflate", self._balloon_pfns(pfns))
        return int(pfns.size * ppp)

    def leak_balloon(self, num: int) -> int:
        """leak_balloon() (6.1): at most 256 balloon pfns and no more than vb->num_pages; under
        balloon_lock balloon_page_dequeue() pages from the head of the list until the count is
        reached or the list is empty, tell the host (deflate vq) first, then
        release_pages_balloon(): adjust_managed_page_count(+1) unless DEFLATE_ON_OOM and drop
        the balloon's reference (last dequeued first). Returns the balloon pfns deflated."""
        if num < 0:
            raise ConfigError(f"virtio-balloon: leak_balloon({num}) is negative")
        ppp = self.pages_per_page
        num = min(num, VIRTIO_BALLOON_ARRAY_PFNS_MAX, self._num_pages)
        with self._locked():
            pfns = self.balloon_page_list_dequeue(-(-num // ppp))
            self._num_pages -= pfns.size * ppp
            if pfns.size == 0:
                return 0
            self.host.tell_host("deflate", self._balloon_pfns(pfns))
            # release_pages_balloon() walks the local list, to which each page was list_add()ed
            released = pfns[::-1]
            if not self.deflate_on_oom:
                self._adjust_managed_page_count(released, +1)
            self.free_pages(self.machine.state.owner[released].astype(np.int64))
        return int(pfns.size * ppp)

    def remove(self) -> None:
        """virtballoon_remove() (6.1): unregister the OOM notifier, stop the work item and leak
        everything (remove_common())."""
        self.unregister_oom_notifier()
        self._work_queued = False
        while self._num_pages:
            if not self.leak_balloon(self._num_pages):
                raise ContractError(
                    f"driver {self.name}: {self.isolated_pages} balloon pages are isolated; "
                    "cannot remove the balloon now"
                )
        self.update_balloon_size()

    # ------------------------------------------------------------------ the OOM notifier
    def virtio_balloon_oom_notify(self) -> int:
        """virtio_balloon_oom_notify() (6.1): leak up to VIRTIO_BALLOON_OOM_NR_PAGES balloon
        pages and report the size; returns the guest pages freed.
        SIMPLIFICATION: while balloon_lock is held (``hold_balloon_lock()``) the notifier frees
        nothing instead of waiting for the mutex."""
        if self._balloon_lock:
            return 0
        freed = self.leak_balloon(VIRTIO_BALLOON_OOM_NR_PAGES) // self.pages_per_page
        self.update_balloon_size()
        return freed

    def register_oom_notifier(self) -> None:
        """register_oom_notifier(&vb->oom_nb): out_of_memory() asks the balloon first."""
        self.machine.register_oom_notifier(self.virtio_balloon_oom_notify)

    def unregister_oom_notifier(self) -> None:
        self.machine.unregister_oom_notifier(self.virtio_balloon_oom_notify)

    # ------------------------------------------------------------------ balloon_dev_info
    def balloon_page_list_enqueue(self, pfns: npt.NDArray[np.int64]) -> None:
        """balloon_page_list_enqueue() (6.1): balloon_page_insert() each page in order
        (__SetPageOffline, __SetPageMovable with balloon_mops when movable, list_add at the head
        of the balloon list) and count balloon_inflate for each."""
        st = self.machine.state
        st.flags[pfns] |= PG_offline
        if self.movable:
            SetPagesMovable(self.machine, pfns, self)
        self._list_add_each(pfns)
        self.machine.count_vm_event("balloon_inflate", int(pfns.size))

    def balloon_page_list_dequeue(self, n_req_pages: int) -> npt.NDArray[np.int64]:
        """balloon_page_list_dequeue() (6.1): take up to ``n_req_pages`` pages from the head of
        the balloon list (isolated pages are not on it), balloon_page_finalize() each
        (__ClearPageMovable when movable, __ClearPageOffline) and count balloon_deflate for
        each. Returns their pfns in dequeue order. (trylock_page always succeeds: page locks
        are not modelled.)"""
        nxt = self._next
        out: list[int] = []
        p = int(nxt[self._head])
        while p != self._head and len(out) < n_req_pages:
            out.append(p)
            p = int(nxt[p])
        pfns = np.array(out, np.int64)
        if pfns.size:
            self._list_cut_head(pfns.size, p)
            if self.movable:
                ClearPagesMovable(self.machine, pfns)
            self.machine.state.flags[pfns] &= ~PG_offline
            self.machine.count_vm_event("balloon_deflate", int(pfns.size))
        return pfns

    def balloon_pages(self) -> npt.NDArray[np.int64]:
        """The pfns on the balloon list, from its head (the order pages are dequeued in)."""
        nxt = self._next.tolist()
        out = []
        p = nxt[self._head]
        while p != self._head:
            out.append(p)
            p = nxt[p]
        return np.array(out, np.int64)

    # ------------------------------------------------------------------ balloon_mops
    def isolate_page(self, page: Page, mode: IsolateMode) -> bool:
        """balloon_page_isolate() (6.1): off the balloon list, isolated_pages++; always yes."""
        self._list_del(page.pfn)
        self.isolated_pages += 1
        return True

    def putback_page(self, page: Page) -> None:
        """balloon_page_putback() (6.1): back at the head of the list, isolated_pages--."""
        self._list_add(page.pfn)
        self.isolated_pages -= 1

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> MigrateResult:
        """balloon_page_migrate() -> virtballoon_migratepage() (6.1): -EINVAL for
        MIGRATE_SYNC_NO_COPY; -EAGAIN if balloon_lock is held (a fill or leak is running); else
        the balloon's reference on ``dst``, the managed counts of both zones fixed up if they
        differ (unless DEFLATE_ON_OOM), balloon_page_insert(dst) (PG_offline, balloon_mops,
        head of the list), isolated_pages--, balloon_migrate, the host told about ``dst``
        (inflate vq) then ``src`` (deflate vq), balloon_page_finalize(src) and the balloon's
        reference on ``src`` dropped.
        SIMPLIFICATION: the core's migrate_page_move() copies the source's page flags onto the
        destination after this returns, so PG_offline is left on ``src`` here (it reaches
        ``dst`` that way) and cleared when the core frees ``src`` (free_pages_prepare)."""
        if mode == MigrateMode.MIGRATE_SYNC_NO_COPY:
            return MigrateResult.EINVAL
        if self._balloon_lock:  # !mutex_trylock(&vb->balloon_lock)
            return MigrateResult.EAGAIN
        m = self.machine
        with self._locked():
            get_page(m, dst.pfn)  # balloon reference
            zid = m.state.zoneid
            if not self.deflate_on_oom and zid[src.pfn] != zid[dst.pfn]:
                self._adjust_managed_page_count(np.array([src.pfn], np.int64), +1)
                self._adjust_managed_page_count(np.array([dst.pfn], np.int64), -1)
            m.state.flags[dst.pfn] |= PG_offline
            SetPageMovable(m, dst.pfn, self)
            self._list_add(dst.pfn)
            self.isolated_pages -= 1
            m.count_vm_event("balloon_migrate")
            self.host.tell_host("inflate", self._balloon_pfns(np.array([dst.pfn], np.int64)))
            self.host.tell_host("deflate", self._balloon_pfns(np.array([src.pfn], np.int64)))
        ClearPagesMovable(m, np.array([src.pfn], np.int64))  # balloon_page_finalize()
        put_page(m, src.pfn)  # balloon reference
        return MigrateResult.MIGRATEPAGE_SUCCESS

    # ------------------------------------------------------------------ balloon_lock
    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self._balloon_lock:
            raise ContractError(f"driver {self.name}: balloon_lock taken twice (deadlock)")
        self._balloon_lock = True
        try:
            yield
        finally:
            self._balloon_lock = False

    @contextmanager
    def hold_balloon_lock(self) -> Iterator[None]:
        """Hold vb->balloon_lock, as a fill_balloon or leak_balloon running on another CPU
        would: compaction's virtballoon_migratepage then answers -EAGAIN."""
        with self._locked():
            yield

    # ------------------------------------------------------------------ helpers
    def _balloon_pfns(self, pfns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """set_page_pfns() for each page: page_to_balloon_pfn(page) + 0 .. PAGES_PER_PAGE-1."""
        ppp = self.pages_per_page
        return (pfns[:, None] * ppp + np.arange(ppp, dtype=np.int64)).reshape(-1)

    def _adjust_managed_page_count(self, pfns: npt.NDArray[np.int64], count: int) -> None:
        zoneid = self.machine.state.zoneid[pfns]
        zones, first, n = np.unique(zoneid, return_index=True, return_counts=True)
        for z, i, k in zip(zones.tolist(), first.tolist(), n.tolist(), strict=True):
            self.managed_delta[z] = self.managed_delta.get(z, 0) + count * k
            self.machine.adjust_managed_page_count(int(pfns[i]), count * k)

    def _list_add(self, pfn: int) -> None:
        """list_add(&page->lru, &b_dev_info->pages)."""
        if self._next[pfn] >= 0:
            raise ContractError(f"driver {self.name}: pfn {pfn:#x} is on the balloon list twice")
        head = self._head
        first = int(self._next[head])
        self._next[pfn] = first
        self._prev[pfn] = head
        self._prev[first] = pfn
        self._next[head] = pfn
        self._nr_listed += 1

    def _list_add_each(self, pfns: npt.NDArray[np.int64]) -> None:
        """list_add() of each page in turn: the last one ends up at the head."""
        if (self._next[pfns] >= 0).any():
            bad = int(pfns[self._next[pfns] >= 0][0])
            raise ContractError(f"driver {self.name}: pfn {bad:#x} is on the balloon list twice")
        head = self._head
        seq = pfns[::-1]
        first = int(self._next[head])
        self._next[seq[:-1]] = seq[1:]
        self._prev[seq[1:]] = seq[:-1]
        self._next[seq[-1]] = first
        self._prev[first] = seq[-1]
        self._prev[seq[0]] = head
        self._next[head] = seq[0]
        self._nr_listed += int(pfns.size)

    def _list_del(self, pfn: int) -> None:
        nxt, prv = int(self._next[pfn]), int(self._prev[pfn])
        if nxt < 0:
            raise ContractError(
                f"driver {self.name}: pfn {pfn:#x} is not on the balloon list (isolated twice?)"
            )
        self._next[prv] = nxt
        self._prev[nxt] = prv
        self._next[pfn] = self._prev[pfn] = -1
        self._nr_listed -= 1

    def _list_cut_head(self, n: int, rest: int) -> None:
        """Unlink the first ``n`` pages (walked already; ``rest`` follows them)."""
        head = self._head
        p = int(self._next[head])
        for _ in range(n):
            q = int(self._next[p])
            self._next[p] = self._prev[p] = -1
            p = q
        self._next[head] = rest
        self._prev[rest] = head
        self._nr_listed -= n

    # ------------------------------------------------------------------ the contract suite's hook
    #: leak_balloon dequeues only pages on the balloon list: an isolated page is not releasable
    contract_frees_isolated = False

    @classmethod
    def contract_instance(cls, machine: Machine, movable: bool) -> VirtioBalloon:
        """tests/drivers/test_contract.py: a balloon with the seed's switch."""
        return cls(machine, movable=movable)

    @classmethod
    def contract_fill(cls, driver: MovableDriver, n_pages: int) -> npt.NDArray[np.int64]:
        """The host asks for ``n_pages`` more; returns the new balloon pages' handles."""
        assert isinstance(driver, VirtioBalloon)
        before = driver.balloon_pages()
        driver.set_target(driver.num_pages + n_pages)
        driver.work()
        new = np.setdiff1d(driver.balloon_pages(), before)
        return driver.machine.state.owner[new].astype(np.int64)

    @classmethod
    def contract_free(cls, driver: MovableDriver, handles: npt.ArrayLike) -> None:
        """The host gives back as many pages as ``handles``; the guest deflates those pages
        (they are moved to the list's head first, where leak_balloon dequeues). A page that is
        isolated right now is not on the list: the balloon deflates another one, as 6.1's
        leak_balloon would."""
        assert isinstance(driver, VirtioBalloon)
        h = np.asarray(handles, np.int64).reshape(-1)
        pfns = driver.machine.handles[h]
        for pfn in pfns[pfns >= 0].tolist():
            if driver._next[pfn] >= 0:
                driver._list_del(pfn)
                driver._list_add(pfn)
        driver.set_target(max(driver.num_pages - h.size, 0))
        driver.work()

    def __repr__(self) -> str:
        return (
            f"<VirtioBalloon movable={self.movable} num_pages={self._num_pages} "
            f"target={self.config_num_pages} isolated={self.isolated_pages}>"
        )
