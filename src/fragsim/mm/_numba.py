"""How fragsim compiles its hot loops with numba (not a kernel file).

* ``njit`` is ``numba.njit(cache=True)``. numba's cache is keyed on each file's own source, so an
  edit in one module would not recompile a cached function of another module that inlines its
  constants or functions. The cache directory is therefore keyed on a hash of every module the
  compiled code reads (``COMPILED_SOURCES``); a module that adds compiled code joins that list.
* ``borrow(arr)`` returns a view of ``arr`` without its reference-counted owner. Passing borrowed
  arrays to compiled helpers removes numba's atomic reference counting at each call, which
  otherwise costs several nanoseconds per array per call (design/performance.md, pitfall 1).
  A borrowed array must never outlive the call that borrowed it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["COMPILED_SOURCES", "borrow", "njit"]

F = TypeVar("F", bound=Callable[..., Any])

_MM = Path(__file__).resolve().parent
#: the modules whose source the compiled code depends on (compiled functions and constants)
COMPILED_SOURCES = (
    "_numba.py",
    "compaction.py",
    "gfp.py",
    "internal.py",
    "migrate.py",
    "mmzone.py",
    "page.py",
    "page_alloc.py",
)


def _cache_dir() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    for name in COMPILED_SOURCES:
        h.update(name.encode())
        h.update((_MM / name).read_bytes())
    base = os.environ.get("FRAGSIM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "fragsim"
    )
    return os.path.join(base, "numba-" + h.hexdigest()[:16])


if not os.environ.get("NUMBA_CACHE_DIR"):
    setattr(numba.config, "CACHE_DIR", _cache_dir())  # noqa: B010 (untyped module attribute)


@overload
def njit(func: F, /) -> F: ...
@overload
def njit(*, inline: str = ..., cache: bool = ..., nogil: bool = ...) -> Callable[[F], F]: ...
def njit(*args: Any, **kw: Any) -> Any:
    """``numba.njit`` with ``cache=True`` and ``nogil=True`` (see the module docstring)."""
    kw.setdefault("cache", True)
    kw.setdefault("nogil", True)
    return numba.njit(*args, **kw)


@intrinsic
def _borrow(typingctx: Any, arr: Any) -> Any:
    """Return ``arr`` without its owner reference (see the module docstring)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        src = context.make_array(aryty)(context, builder, value=args[0])
        dst = context.make_array(aryty)(context, builder)
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)  # type: ignore[no-untyped-call]
        dst.parent = cgutils.get_null_value(dst.parent.type)  # type: ignore[no-untyped-call]
        dst.nitems = src.nitems
        dst.itemsize = src.itemsize
        dst.data = src.data
        dst.shape = src.shape
        dst.strides = src.strides
        return dst._getvalue()

    return arr(arr), codegen


#: ``borrow(arr)``: see the module docstring (typed for mypy as the identity it is)
borrow: Callable[[Any], Any] = cast(Callable[[Any], Any], _borrow)
