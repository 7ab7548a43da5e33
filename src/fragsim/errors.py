"""fragsim's exceptions: every bad input ends in one of these, naming what was wrong and where."""

from __future__ import annotations

__all__ = ["FragsimError", "ParseError", "ConfigError", "AllocatorError", "InvariantError"]


class FragsimError(Exception):
    """Base class of every error fragsim raises on purpose."""


class ParseError(FragsimError, ValueError):
    """A real-system input file is malformed; names the file and the line."""

    def __init__(self, path: str, lineno: int | None, msg: str) -> None:
        self.path = str(path)
        self.lineno = lineno
        self.msg = msg
        where = f"{self.path}:{lineno}" if lineno is not None else self.path
        super().__init__(f"{where}: {msg}")


class ConfigError(FragsimError, ValueError):
    """A configuration (machine profile, tunable, scenario) is invalid; names the key."""


class AllocatorError(FragsimError, ValueError):
    """A caller broke the page allocator's contract (bad order, double free, pfn outside a zone)."""


class InvariantError(FragsimError, AssertionError):
    """The simulated kernel's state is inconsistent: a page lost, double-counted or misfiled."""
