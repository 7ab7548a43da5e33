"""SLUB's slab orders (calculate_order, Linux 6.1) against the real 6.1 guest's /proc/slabinfo
(one CPU online: zoneinfo lists one pageset per zone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fragsim.errors import ConfigError
from fragsim.mm.slub import calculate_order, order_objects

SLABINFO = Path(__file__).resolve().parents[1] / "fixtures/slabinfo/oracle-6.1-s00_start.slabinfo"


def caches() -> list[tuple[str, int, int, int]]:
    """(name, objsize, objperslab, pagesperslab) of every cache in the real file."""
    out = []
    for line in SLABINFO.read_text().splitlines()[2:]:
        f = line.split()
        out.append((f[0], int(f[3]), int(f[4]), int(f[5])))
    return out


def test_kmalloc_orders_match_the_real_kernel() -> None:
    """Every kmalloc cache: size is the object size (no metadata without debugging), and the
    order and objects per slab equal the guest's: kmalloc-8k is order 3, kmalloc-1k order 1..."""
    seen = 0
    for name, objsize, perslab, pages in caches():
        if not name.startswith("kmalloc-"):
            continue
        order = calculate_order(objsize, nr_cpus=1)
        assert (1 << order, order_objects(order, objsize)) == (pages, perslab), name
        seen += 1
    assert seen >= 30


def test_other_caches_whose_size_is_their_object_size() -> None:
    """Caches whose slab holds exactly slab_size // objsize objects have s->size == objsize; for
    all of them the order is the kernel's (task_struct: 6208 bytes, order 3, 5 per slab)."""
    checked = 0
    for name, objsize, perslab, pages in caches():
        if (4096 * pages) // objsize != perslab:
            continue  # alignment or metadata make s->size larger than objsize
        assert 1 << calculate_order(objsize, nr_cpus=1) == pages, name
        checked += 1
    assert checked >= 80
    assert calculate_order(6208, nr_cpus=1) == 3


def test_bad_size() -> None:
    with pytest.raises(ConfigError):
        calculate_order(0, nr_cpus=1)
