"""The README's Python examples run as written (and the driver example shows the seed's switch:
more free pageblocks after compaction when the driver's pages are movable)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks:
            exec(compile(code, str(README), "exec"), {})
    got = dict(
        re.findall(
            r"movable=(\w+): free blocks of order >= 9 after compaction: (\d+)", out.getvalue()
        )
    )
    assert int(got["True"]) > 5 * int(got["False"])
