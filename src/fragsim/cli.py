"""The ``fragsim`` command: a thin argparse shell over the library."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

__all__ = ["main"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Boot a 1 GiB machine, fragment it, print buddyinfo/pagetypeinfo before and after."""
    from fragsim.mm import internal as I
    from fragsim.mm import vmstat
    from fragsim.mm.gfp import __GFP_RECLAIMABLE, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
    from fragsim.mm.machine import Machine

    m = Machine(args.profile)
    print(m.describe())
    print("\n== before: /proc/buddyinfo ==")
    print(vmstat.buddyinfo(m), end="")
    print("\n== before: /proc/pagetypeinfo ==")
    print(vmstat.pagetypeinfo(m), end="")
    rng = np.random.default_rng(args.seed)
    n = int(m.state.zs[:, I.ZF_MANAGED].sum() * 0.85)
    kinds = rng.choice(3, size=n, p=[0.08, 0.88, 0.04])
    gfps = np.array([GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_RECLAIMABLE])[kinds]
    ev = np.zeros((n, I.NR_EV), np.int64)
    ev[:, I.EV_OP] = I.OP_ALLOC
    ev[:, I.EV_GFP] = gfps
    ev[:, I.EV_ARG] = np.arange(n)
    ev[:, I.EV_CPU] = rng.integers(0, m.nr_cpus, n)
    handles = np.full(n, -1, np.int32)
    m.run(ev, handles)
    # free every other movable page and most unmovable ones: long-lived pollution stays behind
    free = np.flatnonzero(
        ((kinds == 1) & (np.arange(n) % 2 == 0)) | ((kinds != 1) & (rng.random(n) < 0.7))
    )
    fr = np.zeros((free.size, I.NR_EV), np.int64)
    fr[:, I.EV_OP] = I.OP_FREE_HANDLE
    fr[:, I.EV_ARG] = free
    m.run(fr, handles)
    m.drain_all_pages()
    print(f"\n== after {n} allocations and {free.size} frees: /proc/buddyinfo ==")
    print(vmstat.buddyinfo(m), end="")
    print("\n== after: /proc/pagetypeinfo ==")
    print(vmstat.pagetypeinfo(m), end="")
    print("\n== after: extfrag/unusable_index ==")
    print(vmstat.unusable_index(m), end="")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from fragsim.bench import run_bench

    print(json.dumps(run_bench(args.trace, args.pages, args.cpus, args.repeat)))
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from fragsim.profiles import PROFILES

    for name in PROFILES:
        print(name)
    print("flat:<pages>")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fragsim", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="boot 1 GiB, fragment it, show /proc before and after")
    d.add_argument("--profile", default="x86_64-1g")
    d.add_argument("--seed", type=int, default=1)
    d.set_defaults(func=cmd_demo)
    b = sub.add_parser("bench", help="replay a speed-of-light trace; print one JSON line")
    b.add_argument("--trace", required=True, help="trace .npy (shared/bench/speed-of-light)")
    b.add_argument("--pages", type=int, default=262144)
    b.add_argument("--cpus", type=int, default=1)
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--json", action="store_true", help="(the output is always JSON)")
    b.set_defaults(func=cmd_bench)
    pr = sub.add_parser("profiles", help="list machine profiles")
    pr.set_defaults(func=cmd_profiles)
    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as e:  # noqa: BLE001 - clear one-line errors for users
        from fragsim.errors import FragsimError

        if isinstance(e, FragsimError | FileNotFoundError):
            print(f"fragsim: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
