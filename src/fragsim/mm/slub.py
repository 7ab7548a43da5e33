"""SLUB's slab sizing. Models calculate_order() and calc_slab_order() of mm/slub.c (Linux
6.1.192): the page order of a cache's slabs, chosen so that a slab holds at least min_objects
objects (4 * (fls(nr_cpus) + 1) by default) while wasting at most 1/16, 1/8 or 1/4 of it, up to
slub_max_order (PAGE_ALLOC_COSTLY_ORDER). This is what makes e.g. kmalloc-8k an order-3 cache:
the long-lived unmovable high-order slabs that pin pageblocks.

The slab allocator itself (caches, objects, slabs returning to the buddy allocator when empty)
is the drivers issue's; this module is its sizing rule.
"""

from __future__ import annotations

from fragsim.errors import ConfigError
from fragsim.mm.mmzone import MAX_ORDER, PAGE_ALLOC_COSTLY_ORDER

__all__ = ["calculate_order", "order_objects"]

PAGE_SIZE = 4096
MAX_OBJS_PER_PAGE = 32767  # slab.objects is u15


def order_objects(order: int, size: int) -> int:
    """order_objects(): objects of ``size`` bytes in a slab of 2^order pages."""
    return (PAGE_SIZE << order) // size


def get_order(size: int) -> int:
    """get_order(): the smallest order whose block holds ``size`` bytes."""
    order = 0
    while (PAGE_SIZE << order) < size:
        order += 1
    return order


def calc_slab_order(
    size: int, min_objects: int, max_order: int, fract_leftover: int, min_order: int = 0
) -> int:
    """calc_slab_order() (6.1): the lowest order from the one that holds min_objects up to
    max_order whose leftover is at most 1/fract_leftover of the slab (max_order + 1 if none)."""
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE:
        return get_order(size * MAX_OBJS_PER_PAGE) - 1
    order = max(min_order, get_order(min_objects * size))
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(
    size: int,
    nr_cpus: int,
    slub_min_objects: int = 0,
    slub_max_order: int = PAGE_ALLOC_COSTLY_ORDER,
    slub_min_order: int = 0,
) -> int:
    """calculate_order() (6.1) for a cache whose objects take ``size`` bytes (s->size, with
    alignment and metadata) on a machine with ``nr_cpus`` CPUs."""
    if size <= 0:
        raise ConfigError(f"slab object size {size} must be positive")
    min_objects = slub_min_objects or 4 * (nr_cpus.bit_length() + 1)  # 4 * (fls(nr_cpus) + 1)
    min_objects = min(min_objects, order_objects(slub_max_order, size))
    while min_objects > 1:
        fraction = 16
        while fraction >= 4:
            order = calc_slab_order(size, min_objects, slub_max_order, fraction, slub_min_order)
            if order <= slub_max_order:
                return order
            fraction //= 2
        min_objects -= 1
    order = calc_slab_order(size, 1, slub_max_order, 1, slub_min_order)
    if order <= slub_max_order:
        return order
    order = calc_slab_order(size, 1, MAX_ORDER, 1, slub_min_order)
    if order < MAX_ORDER:
        return order
    raise ConfigError(f"slab object size {size}: no slab order up to {MAX_ORDER - 1} holds it")
