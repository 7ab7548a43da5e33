"""Reading an input file's bytes, plain or gzip-compressed (shared by the parsers)."""

from __future__ import annotations

import gzip
import os

from fragsim.errors import ParseError


def read_input(
    src: str | os.PathLike[str] | bytes | bytearray | memoryview, what: str = "input"
) -> tuple[bytes, str]:
    """The bytes of ``src`` (a path, or the bytes themselves), gunzipped when they start with
    the gzip magic, and the name to use in errors (the path, or ``<what>``)."""
    if isinstance(src, bytes | bytearray | memoryview):
        data, path = bytes(src), f"<{what}>"
    else:
        path = os.fspath(src)
        with open(path, "rb") as fh:
            data = fh.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ParseError(path, None, f"corrupt gzip data: {exc}") from None
    return data, path


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` as an editor numbers them: split at ``\\n`` only (``str.splitlines``
    also splits at form feeds, ``\\x1c``..``\\x1e``, ``\\u2028`` and others, which would shift
    the line numbers in errors), a trailing ``\\r`` dropped, no empty line after a final
    newline."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
