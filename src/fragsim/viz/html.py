"""Self-contained HTML reports: one file with everything embedded (images as ``data:`` URIs,
inline CSS and JavaScript, no network), to open offline or send to a colleague.

A :class:`Report` is a title and a list of :class:`Section` objects; a section holds paragraphs,
tables, images and time sliders, in the order they were added. A time slider
(:meth:`Section.slider`) is an ``<input type=range>`` over a sequence of embedded frames: its
``input`` event swaps the displayed image and its caption. Images are PNG bytes or RGB arrays
(:func:`png_bytes` encodes those without any plotting library).

:func:`memmaps` adds memory maps (:mod:`fragsim.viz.memmap`) with their legend as a table.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import re
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from fragsim.viz.memmap import MemMap

__all__ = ["Report", "Section", "Swatch", "memmaps", "png_bytes"]


def png_bytes(rgb: npt.NDArray[np.uint8]) -> bytes:
    """Encode an (height, width, 3) uint8 array as a PNG file (8-bit RGB, no filter)."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (height, width, 3) array, got shape {a.shape}")
    h, w = a.shape[:2]
    raw = np.zeros((h, 1 + 3 * w), np.uint8)  # each row: filter type 0, then the pixels
    raw[:, 1:] = a.reshape(h, 3 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def _data_uri(img: bytes | npt.NDArray[np.uint8]) -> str:
    data = img if isinstance(img, bytes) else png_bytes(img)
    if not data.startswith(b"\x89PNG"):
        raise ValueError("images must be PNG bytes or an RGB array")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class Swatch:
    """A table cell showing a colour (``#rrggbb``)."""

    colour: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", self.colour):
            raise ValueError(f"not a #rrggbb colour: {self.colour!r}")


Cell = str | int | float | Swatch | None


def _width(width: int | None) -> str:
    return f' style="width:{int(width)}px"' if width else ""


def _cell(v: Cell, tag: str) -> str:
    if isinstance(v, Swatch):
        return f'<{tag}><span class="swatch" style="background:{v.colour}"></span></{tag}>'
    if v is None:
        return f"<{tag}></{tag}>"
    cls = ' class="num"' if isinstance(v, int | float) else ""
    return f"<{tag}{cls}>{html.escape(str(v))}</{tag}>"


@dataclass
class Section:
    """One titled part of a report; its ``add``-style methods append in order."""

    title: str
    anchor: str
    parts: list[str] = field(default_factory=list)

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def preformatted(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[Cell]],
        *,
        caption: str | None = None,
    ) -> None:
        """A table; each row has one cell per header column."""
        for i, r in enumerate(rows):
            if len(r) != len(header):
                raise ValueError(f"row {i} has {len(r)} cells for {len(header)} columns")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        head = "".join(_cell(h, "th") for h in header)
        body = "".join("<tr>" + "".join(_cell(c, "td") for c in r) + "</tr>" for r in rows)
        self.parts.append(
            f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def image(
        self,
        img: bytes | npt.NDArray[np.uint8],
        *,
        alt: str,
        caption: str | None = None,
        pixelated: bool = True,
        width: int | None = None,
    ) -> None:
        """An embedded PNG (bytes, or an RGB array), shown ``width`` CSS pixels wide (default:
        its own width); ``pixelated`` keeps cells sharp when the browser scales it."""
        cls = ' class="pixelated"' if pixelated else ""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(
            f'<figure><img{cls}{_width(width)} src="{_data_uri(img)}" alt="{html.escape(alt)}">'
            f"{cap}</figure>"
        )

    def slider(
        self,
        frames: Sequence[tuple[bytes | npt.NDArray[np.uint8], str]],
        *,
        label: str,
        width: int | None = None,
    ) -> None:
        """A time slider over ``frames`` (image, caption): moving it shows that frame (the
        images ``width`` CSS pixels wide)."""
        if not frames:
            raise ValueError("a slider needs at least one frame")
        data = [{"src": _data_uri(img), "caption": cap} for img, cap in frames]
        # "</" would end the script element early; JSON allows the escaped form
        js = json.dumps(data).replace("</", "<\\/")
        first = html.escape(frames[0][1])
        self.parts.append(
            '<figure class="slider">'
            f'<label>{html.escape(label)} <input type="range" min="0" max="{len(frames) - 1}" '
            f'value="0" step="1" aria-valuetext="{first}"></label> '
            f'<span class="frame-caption">{first}</span>'
            f'<img class="pixelated"{_width(width)} src="{data[0]["src"]}" alt="{first}">'
            f'<script type="application/json">{js}</script></figure>'
        )


_CSS: Final = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: .15em .5em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .2em 0; }
figure { margin: .8em 0; display: inline-block; vertical-align: top; margin-right: 1.5em; }
figcaption, .frame-caption { font-size: .9em; color: #444; }
img { max-width: 100%; height: auto; display: block; border: 1px solid #ddd; }
img.pixelated { image-rendering: pixelated; }
.slider img { margin-top: .4em; }
.slider input { width: 20em; vertical-align: middle; }
.swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #555;
          vertical-align: middle; }
pre { background: #f6f6f6; padding: .5em; overflow-x: auto; }
"""

_JS: Final = """
document.querySelectorAll('figure.slider').forEach(function (fig) {
  var frames = JSON.parse(fig.querySelector('script[type="application/json"]').textContent);
  var input = fig.querySelector('input[type=range]');
  var img = fig.querySelector('img');
  var caption = fig.querySelector('.frame-caption');
  function show(i) {
    var f = frames[i];
    img.src = f.src;
    img.alt = f.caption;
    caption.textContent = f.caption;
    input.setAttribute('aria-valuetext', f.caption);
  }
  input.addEventListener('input', function () { show(Number(input.value)); });
  show(Number(input.value));
});
"""


class Report:
    """A self-contained HTML report: a title, an optional introduction and sections."""

    def __init__(self, title: str, intro: str | None = None) -> None:
        self.title = title
        self.intro = intro
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        """Append a new section and return it."""
        s = Section(title, f"s{len(self.sections) + 1}")
        self.sections.append(s)
        return s

    def html(self) -> str:
        """The whole document."""
        toc = "".join(
            f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in self.sections
        )
        body = "".join(
            f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{"".join(s.parts)}</section>'
            for s in self.sections
        )
        intro = f"<p>{html.escape(self.intro)}</p>" if self.intro else ""
        nav = f"<nav><ol>{toc}</ol></nav>" if len(self.sections) > 1 else ""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body><h1>{html.escape(self.title)}</h1>{intro}{nav}{body}"
            f"<script>{_JS}</script></body></html>\n"
        )

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`html` to ``path`` (UTF-8) atomically: into a new file next to it
        (created with the usual permissions), then renamed over it, so a failure leaves the
        old file whole and no partial one."""
        text = self.html()
        dest = Path(path)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "x", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def memmaps(
    section: Section,
    maps: Sequence[MemMap],
    titles: Sequence[str],
    *,
    slider_label: str | None = None,
) -> None:
    """Add memory maps to ``section``: side by side (or, with ``slider_label``, as the frames
    of one time slider), then one legend table with every map's counts."""
    from fragsim.viz.memmap import legend, map_notes, render

    if len(titles) != len(maps):
        raise ValueError(f"{len(titles)} titles for {len(maps)} maps")
    rendered = [render(m) for m in maps]
    # small maps are shown enlarged, by whole pixels (pixelated scaling stays sharp)
    w = max(r.rgb.shape[1] for r in rendered)
    zoom = max(1, min(4, 800 // (w * (1 if slider_label else len(maps)))))
    if slider_label is not None:
        frames = [(r.rgb, t) for r, t in zip(rendered, titles, strict=True)]
        section.slider(frames, label=slider_label, width=w * zoom)
    else:
        for r, t in zip(rendered, titles, strict=True):
            width = r.rgb.shape[1] * zoom
            section.image(r.rgb, alt=f"memory map: {t}", caption=t, width=width)
    section.paragraph(rendered[0].describe() + ".")
    for n in map_notes(maps):
        section.paragraph(n + ".")
    rows: list[list[Cell]] = [[Swatch(e.colour), e.label, e.unit, *e.counts] for e in legend(maps)]
    section.table(["", "kind", "unit", *titles], rows, caption="Legend")
