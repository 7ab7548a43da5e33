"""GFP flags: the page allocator's request flags. Models include/linux/gfp_types.h and
include/linux/gfp.h (Linux 6.1.192, x86-64 config without HW-tag KASAN or lockdep).

Every ``__GFP_*`` and ``GFP_*`` name of the kernel is a module-level ``int`` here, spelled as the
kernel spells it. Python mangles names that start with two underscores when they appear *inside a
class body*; code in a class should therefore use ``gfp.GFP["__GFP_MOVABLE"]`` or import the name
at module level under another alias. ``show_gfp_flags`` prints a mask exactly as the kernel's
tracepoints do (``include/trace/events/mmflags.h``), and ``parse_gfp`` reads such text back.
"""

from __future__ import annotations

from fragsim.errors import ConfigError

__all__ = [
    "GFP",
    "GFP_ATOMIC",
    "GFP_DMA",
    "GFP_DMA32",
    "GFP_HIGHUSER",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_KERNEL",
    "GFP_KERNEL_ACCOUNT",
    "GFP_NOFS",
    "GFP_NOIO",
    "GFP_NOWAIT",
    "GFP_TRANSHUGE",
    "GFP_TRANSHUGE_LIGHT",
    "GFP_USER",
    "GFP_ZONEMASK",
    "__GFP_ACCOUNT",
    "__GFP_ATOMIC",
    "__GFP_COMP",
    "__GFP_DIRECT_RECLAIM",
    "__GFP_DMA",
    "__GFP_DMA32",
    "__GFP_FS",
    "__GFP_HARDWALL",
    "__GFP_HIGH",
    "__GFP_HIGHMEM",
    "__GFP_IO",
    "__GFP_KSWAPD_RECLAIM",
    "__GFP_MEMALLOC",
    "__GFP_MOVABLE",
    "__GFP_NOFAIL",
    "__GFP_NOMEMALLOC",
    "__GFP_NORETRY",
    "__GFP_NOWARN",
    "__GFP_RECLAIM",
    "__GFP_RECLAIMABLE",
    "__GFP_RETRY_MAYFAIL",
    "__GFP_THISNODE",
    "__GFP_WRITE",
    "__GFP_ZERO",
    "__GFP_ZEROTAGS",
    "gfp_migratetype",
    "parse_gfp",
    "show_gfp_flags",
]

# include/linux/gfp_types.h, Linux 6.1.192: the ___GFP_* bit values.
__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
__GFP_RECLAIMABLE = 0x10
__GFP_HIGH = 0x20
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_ZERO = 0x100
__GFP_ATOMIC = 0x200  # 6.1 only: removed in 6.4
__GFP_DIRECT_RECLAIM = 0x400
__GFP_KSWAPD_RECLAIM = 0x800
__GFP_WRITE = 0x1000
__GFP_NOWARN = 0x2000
__GFP_RETRY_MAYFAIL = 0x4000
__GFP_NOFAIL = 0x8000
__GFP_NORETRY = 0x10000
__GFP_MEMALLOC = 0x20000
__GFP_COMP = 0x40000
__GFP_NOMEMALLOC = 0x80000
__GFP_HARDWALL = 0x100000
__GFP_THISNODE = 0x200000
__GFP_ACCOUNT = 0x400000
__GFP_ZEROTAGS = 0x800000
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
GFP_ZONEMASK = __GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE
GFP_MOVABLE_MASK = __GFP_RECLAIMABLE | __GFP_MOVABLE
GFP_MOVABLE_SHIFT = 3

GFP_ATOMIC = __GFP_HIGH | __GFP_ATOMIC | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE  # SKIP_KASAN bits are 0 in this config
GFP_TRANSHUGE_LIGHT = (
    GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN
) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM

# The print order of __def_gfpflag_names (include/trace/events/mmflags.h, 6.1): the first entry
# whose bits are all set is printed and its bits removed, then the walk goes on.
_PRINT_ORDER: tuple[tuple[str, int], ...] = (
    ("GFP_TRANSHUGE", GFP_TRANSHUGE),
    ("GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", GFP_HIGHUSER),
    ("GFP_USER", GFP_USER),
    ("GFP_KERNEL_ACCOUNT", GFP_KERNEL_ACCOUNT),
    ("GFP_KERNEL", GFP_KERNEL),
    ("GFP_NOFS", GFP_NOFS),
    ("GFP_ATOMIC", GFP_ATOMIC),
    ("GFP_NOIO", GFP_NOIO),
    ("GFP_NOWAIT", GFP_NOWAIT),
    ("GFP_DMA", GFP_DMA),
    ("__GFP_HIGHMEM", __GFP_HIGHMEM),
    ("GFP_DMA32", GFP_DMA32),
    ("__GFP_HIGH", __GFP_HIGH),
    ("__GFP_ATOMIC", __GFP_ATOMIC),
    ("__GFP_IO", __GFP_IO),
    ("__GFP_FS", __GFP_FS),
    ("__GFP_NOWARN", __GFP_NOWARN),
    ("__GFP_RETRY_MAYFAIL", __GFP_RETRY_MAYFAIL),
    ("__GFP_NOFAIL", __GFP_NOFAIL),
    ("__GFP_NORETRY", __GFP_NORETRY),
    ("__GFP_COMP", __GFP_COMP),
    ("__GFP_ZERO", __GFP_ZERO),
    ("__GFP_NOMEMALLOC", __GFP_NOMEMALLOC),
    ("__GFP_MEMALLOC", __GFP_MEMALLOC),
    ("__GFP_HARDWALL", __GFP_HARDWALL),
    ("__GFP_THISNODE", __GFP_THISNODE),
    ("__GFP_RECLAIMABLE", __GFP_RECLAIMABLE),
    ("__GFP_MOVABLE", __GFP_MOVABLE),
    ("__GFP_ACCOUNT", __GFP_ACCOUNT),
    ("__GFP_WRITE", __GFP_WRITE),
    ("__GFP_RECLAIM", __GFP_RECLAIM),
    ("__GFP_DIRECT_RECLAIM", __GFP_DIRECT_RECLAIM),
    ("__GFP_KSWAPD_RECLAIM", __GFP_KSWAPD_RECLAIM),
    ("__GFP_ZEROTAGS", __GFP_ZEROTAGS),
)

#: Every GFP name this module knows, mapped to its mask (``GFP["__GFP_MOVABLE"]``).
GFP: dict[str, int] = {name: mask for name, mask in _PRINT_ORDER}
GFP.update({"__GFP_DMA": __GFP_DMA, "__GFP_DMA32": __GFP_DMA32, "GFP_ZONEMASK": GFP_ZONEMASK})


def show_gfp_flags(gfp: int) -> str:
    """Format a mask as ``show_gfp_flags()`` does in 6.1 tracepoints (``none`` for 0)."""
    if gfp == 0:
        return "none"
    names = []
    rest = gfp
    for name, mask in _PRINT_ORDER:
        if mask and (rest & mask) == mask:
            names.append(name)
            rest &= ~mask
            if not rest:
                break
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names)


def parse_gfp(text: str | int) -> int:
    """Read a GFP mask from text: ``"GFP_KERNEL|__GFP_COMP"``, ``"0xcc0"``, ``"none"`` or an int."""
    if isinstance(text, int):
        return text
    s = text.strip()
    if s in ("", "none"):
        return 0
    mask = 0
    for part in s.split("|"):
        part = part.strip()
        if part in GFP:
            mask |= GFP[part]
        else:
            try:
                mask |= int(part, 0)
            except ValueError:
                raise ConfigError(f"unknown GFP flag {part!r} in {text!r}") from None
    return mask


def gfp_migratetype(gfp: int, group_by_mobility: bool = True) -> int:
    """Models gfp_migratetype() (gfp.h, 6.1): 0 UNMOVABLE, 1 MOVABLE, 2 RECLAIMABLE."""
    if not group_by_mobility:
        return 0
    return (gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT
