"""Shared test set-up: warm numba once per session, and check the allocator invariants of every
``Machine`` a test created when the test ends (tests that corrupt a state on purpose opt out
with ``@pytest.mark.corrupts_state``)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest

from fragsim.errors import InvariantError
from fragsim.mm.debug import check_invariants
from fragsim.mm.gfp import GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from fragsim.mm.machine import Machine


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "corrupts_state: the test breaks allocator invariants on purpose; the after-test "
        "check_invariants of its machines is skipped",
    )


@pytest.fixture(scope="session", autouse=True)
def warm_numba() -> None:
    """Compile (or load from numba's cache) the allocator kernels once, before any timing."""
    m = Machine("flat:8192", nr_cpus=2)
    pfns = [
        m.alloc_pages(g, o, cpu=o & 1)
        for g in (GFP_KERNEL, GFP_HIGHUSER_MOVABLE)
        for o in (0, 1, 4, 9, 10)
    ]
    m.alloc_pages(GFP_ATOMIC, 2)
    for p, o in zip(pfns, [0, 1, 4, 9, 10] * 2, strict=True):
        if p >= 0:
            m.free_pages(p, o, cpu=1)
    m.drain_all_pages()
    try:
        check_invariants(m)  # compiles list_pfns too
    except InvariantError:
        pass  # a broken allocator is reported, precisely, by the tests themselves


@pytest.fixture(autouse=True)
def check_machines_after_test(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Machine]]:
    """Record every Machine built during the test and run check_invariants on each at the end."""
    created: list[Machine] = []
    orig_init = Machine.__init__

    @functools.wraps(orig_init)
    def init(self: Machine, *args: Any, **kwargs: Any) -> None:
        orig_init(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(Machine, "__init__", init)
    yield created
    if request.node.get_closest_marker("corrupts_state") is None:
        for m in created:
            check_invariants(m)
