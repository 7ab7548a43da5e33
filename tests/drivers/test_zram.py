"""zram (fragsim/drivers/zram.py, Linux 6.1): writes into zsmalloc, mem_limit, same-filled and
huge pages, mm_stat's exact text, compact, and the swap-device protocol."""

from __future__ import annotations

import numpy as np
import pytest

from fragsim.drivers import DRIVERS
from fragsim.drivers.zram import ZRAM_GFP_FAST, ZRAM_GFP_SLOW, Zram
from fragsim.errors import AllocatorError, ConfigError
from fragsim.mm.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_HIGHMEM,
    __GFP_IO,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MOVABLE,
)
from fragsim.mm.machine import Machine


def machine(seed: int = 0) -> Machine:
    m = Machine("flat:8192", nr_cpus=1, config_thp=False, debug=True, seed=seed)
    m.daemons = False
    return m


def test_gfp_of_zram_write_page() -> None:
    assert not ZRAM_GFP_FAST & __GFP_DIRECT_RECLAIM and ZRAM_GFP_FAST & __GFP_KSWAPD_RECLAIM
    assert ZRAM_GFP_SLOW & __GFP_DIRECT_RECLAIM and not ZRAM_GFP_SLOW & __GFP_IO
    assert ZRAM_GFP_FAST & ZRAM_GFP_SLOW & (__GFP_MOVABLE | __GFP_HIGHMEM) == (
        __GFP_MOVABLE | __GFP_HIGHMEM
    )


def test_mm_stat_huge_pages() -> None:
    m = machine()
    z = Zram(m, disksize=16 * 4096, compression="incompressible")
    assert DRIVERS["zram"] is Zram and m.shrinkers == [z.mem_pool]
    assert (
        z.mm_stat()
        == "       0        0        0        0        0        0        0        0        0\n"
    )
    slots = z.swap_out(3)
    assert slots.tolist() == [0, 1, 2]
    # 3 huge pages (4096 >= huge_class_size 3257): one 1-page zspage each
    assert z.mm_stat() == (
        "   12288    12288    12288        0    12288        0        0        3        3\n"
    )
    z.swap_free([1])
    assert z.mm_stat() == (
        "    8192     8192     8192        0    12288        0        0        2        3\n"
    )
    assert z.nr_free_slots() == 14
    z.mem_pool.check()


def test_mem_limit_and_swap_bookkeeping() -> None:
    m = machine()
    z = Zram(m, disksize=1 << 20, mem_limit=8000, compression=[(1.0, 1000)])
    assert z.mem_limit == 8192  # PAGE_ALIGN
    # 1000 + 8 -> class 1008, merged into 1024: 4 objects a page; the 9th write needs a
    # third page: above the limit, its object is freed again and the write fails
    slots = z.swap_out(10)
    assert slots.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, -1, -1]
    assert z.failed_writes == 2 and z.writestall == 0
    assert z.mm_stat() == (
        "   32768     8000     8192     8192    12288        0        0        0        0\n"
    )
    assert z.nr_free_slots() == 256 - 8
    sizes = z.swap_in([0, 1])
    assert sizes.tolist() == [1000, 1000]
    z.swap_free([2, 3])  # the first zspage is empty now: its page goes back
    assert z.mm_stat().split()[:3] == ["16384", "4000", "4096"]
    assert z.nr_free_slots() == 256 - 4
    assert z.swap_out(2).tolist() == [0, 1]  # the lowest free slots
    with pytest.raises(AllocatorError, match="swap_in of slot 2, which holds no page"):
        z.swap_in([2])
    with pytest.raises(AllocatorError, match="same slot twice"):
        z.swap_free([4, 4])
    z.mem_pool.check()


def test_disk_full_same_pages_and_compact() -> None:
    m = machine()
    z = Zram(m, disksize=64 * 4096, compression=[(0.5, 300), (0.5, 700)], same_filled=0.25)
    slots = z.swap_out(80)
    assert (slots[:64] >= 0).all() and (slots[64:] == -1).all()
    assert z.nr_free_slots() == 0 and z.failed_writes == 16
    nr_same = int(np.count_nonzero(z.table_flags & 1))
    assert z.same_pages == nr_same > 0
    stored = [int(s) for s in slots[:64] if not z.table_flags[s] & 1]
    assert z.compr_data_size == int(z.table_size[stored].sum())
    z.swap_free(slots[:64:2])
    before = z.mem_pool.pages_allocated
    freeable = z.mem_pool.count_objects(0)
    freed = z.compact()
    assert freed == before - z.mem_pool.pages_allocated and freed >= freeable > 0
    assert int(z.mm_stat().split()[6]) == z.mem_pool.pages_compacted == freed
    z.swap_in(slots[1:64:2])
    assert z.pages_stored == 0 and z.mem_pool.pages_allocated == 0 and z.same_pages == 0
    assert z.mm_stat().split()[:3] == ["0", "0", "0"]
    z.mem_pool.check()


def test_seeded_and_deterministic() -> None:
    sizes = []
    for _ in range(2):
        z = Zram(machine(seed=7), disksize=1 << 20, same_filled=0.1)
        z.swap_out(100)
        sizes.append(z.table_size.copy())
    assert (sizes[0] == sizes[1]).all()
    other = Zram(machine(seed=8), disksize=1 << 20, same_filled=0.1)
    other.swap_out(100)
    assert not (other.table_size == sizes[0]).all()


def test_bad_options() -> None:
    m = machine()
    with pytest.raises(ConfigError, match="zram disksize"):
        Zram(m, disksize=-1)
    with pytest.raises(ConfigError, match="unknown distribution 'zstd'"):
        Zram(m, disksize=4096, compression="zstd")
    with pytest.raises(ConfigError, match="sum 1"):
        Zram(m, disksize=4096, compression=[(0.5, 100)])
    with pytest.raises(ConfigError, match="same_filled"):
        Zram(m, disksize=4096, same_filled=2.0)
    with pytest.raises(ConfigError, match="mem_limit"):
        Zram(m, disksize=4096, mem_limit=-5)
    z = Zram(m, disksize=4096)
    with pytest.raises(ConfigError, match="swap_out: count -1"):
        z.swap_out(-1)


def test_swapon_accepts_zram() -> None:
    m = machine()
    z = Zram(m, disksize=1 << 20)
    m.swapon(z)
    assert m.swap is z
