"""The public surface: what ``import fragsim`` offers, and the README's example."""

from __future__ import annotations

import doctest

import fragsim

EXPECTED = {
    "ClearPageMovable",
    "ClearPagesMovable",
    "CompiledPolicy",
    "MemoryUser",
    "SetPagesMovable",
    "get_page",
    "put_page",
    "ContractError",
    "IsolateMode",
    "MigrateMode",
    "MigrateResult",
    "MigrationCost",
    "MovableDriver",
    "SetPageMovable",
    "register_driver",
    "GFP_ATOMIC",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_KERNEL",
    "GFP_NOWAIT",
    "GFP_TRANSHUGE",
    "GFP_TRANSHUGE_LIGHT",
    "GFP_USER",
    "AllocatorError",
    "ConfigError",
    "FragsimError",
    "InvariantError",
    "Machine",
    "MachineProfile",
    "NodeSpec",
    "Page",
    "ParseError",
    "Tracer",
    "ZoneSpec",
    "check_invariants",
    "machine_profile",
    "parse_gfp",
    "show_gfp_flags",
    "vmstat",
}


def test_public_names() -> None:
    assert set(fragsim.__all__) == EXPECTED
    for name in fragsim.__all__:
        assert getattr(fragsim, name) is not None


def test_package_doctest() -> None:
    failed, tried = doctest.testmod(fragsim)
    assert tried > 0 and failed == 0
