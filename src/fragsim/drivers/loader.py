"""Find a memory-user class from a scenario's text: a registered name, a dotted path, a file
path or an entry point. Models nothing of the kernel: it is how a user's own driver joins a run
(the kernel's equivalent is loading a module whose initcall registers its ops).

``load_driver(spec)`` resolves, in this order:

(a) a registered name (``"gpu"``): ``fragsim.drivers.DRIVERS``, after importing every module of
    the ``fragsim.drivers`` package (each registers its class with ``@register_driver``);
(b) a dotted path ``package.module:ClassName`` or ``package.module.ClassName``;
(c) a file path ``path/to/file.py:ClassName`` (or ``path/to/file.py`` if the file defines
    exactly one memory user), imported once under a unique module name: a
    ``@register_driver`` in the file registers it;
(d) an entry point of the group ``fragsim.drivers`` (``importlib.metadata``) named ``spec``,
    whose object is the class.

Every failure is a ``ConfigError`` that names the spec and the cause (module not found, no such
class, not a MemoryUser subclass, the import raised: with the file and the original error).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from fragsim.drivers.base import DRIVERS, MemoryUser
from fragsim.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "import_builtin_drivers", "load_driver"]

ENTRY_POINT_GROUP = "fragsim.drivers"

#: resolved file path -> the module it was imported as (a file is imported once)
_FILE_MODULES: dict[Path, ModuleType] = {}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def import_builtin_drivers() -> list[str]:
    """Import every module of the ``fragsim.drivers`` package (registering its drivers);
    returns the modules' names."""
    import fragsim.drivers as pkg

    names = []
    for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
    return names


def _check(spec: str, obj: Any) -> type[MemoryUser]:
    if not isinstance(obj, type) or not issubclass(obj, MemoryUser):
        raise ConfigError(
            f"driver {spec!r}: {obj!r} is not a MemoryUser subclass (derive it from "
            "fragsim.MemoryUser or fragsim.MovableDriver)"
        )
    return obj


def _attr(spec: str, mod: ModuleType, cls_name: str, where: str) -> type[MemoryUser]:
    try:
        obj = getattr(mod, cls_name)
    except AttributeError:
        raise ConfigError(f"driver {spec!r}: {where} has no class {cls_name!r}") from None
    return _check(spec, obj)


def _import_module(spec: str, modname: str) -> ModuleType:
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name is not None and (modname == e.name or modname.startswith(e.name + ".")):
            raise ConfigError(f"driver {spec!r}: no module named {modname!r}") from e
        raise ConfigError(
            f"driver {spec!r}: importing module {modname!r} raised {type(e).__name__}: {e}"
        ) from e
    except Exception as e:
        raise ConfigError(
            f"driver {spec!r}: importing module {modname!r} raised {type(e).__name__}: {e}"
        ) from e


def _load_dotted(spec: str) -> type[MemoryUser]:
    if ":" in spec:
        modname, _, cls_name = spec.partition(":")
    else:
        modname, _, cls_name = spec.rpartition(".")
    if not modname or not cls_name:
        raise ConfigError(
            f"driver {spec!r}: expected package.module:ClassName or package.module.ClassName"
        )
    return _attr(spec, _import_module(spec, modname), cls_name, f"module {modname!r}")


def _import_file(spec: str, path: Path) -> ModuleType:
    """Import ``path`` once, under a module name unique to its resolved path."""
    if not path.is_file():
        raise ConfigError(f"driver {spec!r}: no such file {str(path)!r}")
    path = path.resolve()
    mod = _FILE_MODULES.get(path)
    if mod is not None:
        return mod
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    modname = f"fragsim_user_driver_{stem}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(modname, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"driver {spec!r}: {str(path)!r} cannot be imported as Python")
    mod = importlib.util.module_from_spec(loader_spec)
    sys.modules[modname] = mod  # (dataclasses and pickling look the module up by name)
    try:
        loader_spec.loader.exec_module(mod)
    except Exception as e:
        del sys.modules[modname]
        raise ConfigError(
            f"driver {spec!r}: importing file {str(path)!r} raised {type(e).__name__}: {e}"
        ) from e
    _FILE_MODULES[path] = mod
    return mod


def _load_file(spec: str) -> type[MemoryUser]:
    file_part, sep, cls_name = spec.rpartition(":")
    if not sep or not file_part.endswith(".py"):  # "path/to/file.py" or "C:\x.py"
        file_part, cls_name = spec, ""
    path = Path(file_part)
    mod = _import_file(spec, path)
    if cls_name:
        return _attr(spec, mod, cls_name, f"file {str(path)!r}")
    found = [
        v
        for v in vars(mod).values()
        if isinstance(v, type) and issubclass(v, MemoryUser) and v.__module__ == mod.__name__
    ]
    if len(found) != 1:
        raise ConfigError(
            f"driver {spec!r}: file {str(path)!r} defines {len(found)} memory users; "
            "name one: path/to/file.py:ClassName"
        )
    return found[0]


def _entry_point(spec: str) -> type[MemoryUser] | None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec:
            try:
                obj = ep.load()
            except Exception as e:
                raise ConfigError(
                    f"driver {spec!r}: loading entry point {ep.value!r} of group "
                    f"{ENTRY_POINT_GROUP!r} raised {type(e).__name__}: {e}"
                ) from e
            return _check(spec, obj)
    return None


def load_driver(spec: str) -> type[MemoryUser]:
    """The memory-user class ``spec`` names (see the module docstring for the forms)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"driver: {spec!r} is not a driver name or path")
    spec = spec.strip()
    if spec in DRIVERS:
        return DRIVERS[spec]
    if ".py" in spec or "/" in spec or "\\" in spec:
        return _load_file(spec)
    if _NAME.match(spec):
        import_builtin_drivers()
        if spec in DRIVERS:
            return DRIVERS[spec]
        cls = _entry_point(spec)
        if cls is not None:
            return cls
        raise ConfigError(
            f"unknown driver {spec!r}: not registered (known: {', '.join(sorted(DRIVERS))}) "
            f"and no entry point of group {ENTRY_POINT_GROUP!r}"
        )
    return _load_dotted(spec)
