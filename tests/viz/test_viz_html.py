"""The HTML report builder, the reports fragsim writes, and the commands that write them
(``fragsim memmap``, ``fragsim inspect --html``), checked as files; test_viz_browser.py opens
them in Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from fragsim.analysis.inspect import inspect_snapshot, load_snapshot
from fragsim.cli import main
from fragsim.viz.html import Report, Swatch, png_bytes
from fragsim.viz.reports import inspect_html

S02 = Path(__file__).resolve().parent.parent / "fixtures" / "real" / "oracle-6.1" / "s02_fragmented"


def decode_png(data: bytes) -> np.ndarray:
    return (mpimg.imread(io.BytesIO(data), format="png")[:, :, :3] * 255).round().astype(np.uint8)


def data_uris(html: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    ]


def test_png_bytes_round_trip() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(7, 13, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(png_bytes(a)), a)
    with pytest.raises(ValueError, match="height, width, 3"):
        png_bytes(np.zeros((4, 4), np.uint8))


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    rep = Report("t <1>", "intro & more")
    s = rep.section("Tables")
    s.table(["a", "b"], [["<b>x</b>", 3], [Swatch("#ff0000"), None]], caption="cap")
    s.image(np.zeros((2, 3, 3), np.uint8), alt="black", caption="img")
    s.slider(
        [(np.zeros((2, 2, 3), np.uint8), "zero"), (np.full((2, 2, 3), 255, np.uint8), "</script>")],
        label="t",
    )
    rep.section("Second").paragraph("p")
    out = tmp_path / "r.html"
    rep.write(out)
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "<title>t &lt;1&gt;</title>" in html and "intro &amp; more" in html
    assert '<td class="num">3</td>' in html and "background:#ff0000" in html
    # nothing is fetched: no external URL, stylesheet or script source
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<link" not in html
    assert len(data_uris(html)) == 4  # the image, the slider's first frame, its two frames
    # the frames' JSON cannot end its script element early
    frames = re.search(r'<script type="application/json">(.*?)</script>', html, re.S)
    assert frames is not None
    assert [f["caption"] for f in json.loads(frames.group(1))] == ["zero", "</script>"]
    assert 'max="1"' in html and '<a href="#s2">Second</a>' in html


def test_table_and_swatch_errors() -> None:
    s = Report("t").section("s")
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        s.table(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="colour"):
        Swatch("red")
    with pytest.raises(ValueError, match="at least one frame"):
        s.slider([], label="t")
    with pytest.raises(ValueError, match="PNG"):
        s.image(b"GIF89a", alt="x")


def test_inspect_html_has_the_reports_tables_and_the_map() -> None:
    snap = load_snapshot(S02)
    r = inspect_snapshot(snap)
    html = inspect_html(r, snap).html()
    for z in r.zones:
        assert f"Node {z.node}, zone {z.zone}" in html
        for o in z.orders:
            assert o.reason.replace("<", "&lt;").replace(">", "&gt;") in html
    assert html.count("<table>") >= 2 * len(r.zones) + 2
    assert "Memory map" in html and "What holds high-order blocks" in html
    (png,) = data_uris(html)
    assert decode_png(png).shape[1] > 600
    # without kpageflags there is no map
    no_map = inspect_html(r, None).html()
    assert "Memory map" not in no_map and not data_uris(no_map)


def test_cli_memmap_demo_writes_png_and_html(tmp_path: Path) -> None:
    png, html = tmp_path / "map.png", tmp_path / "map.html"
    args = ["memmap", "--demo", "--profile", "flat:16384", "-o", str(png), "--html", str(html)]
    assert main(args) == 0
    img = mpimg.imread(png)
    assert img.shape[1] > 2 * img.shape[0]  # two maps side by side, then the legend
    text = html.read_text()
    frames = re.search(r'<script type="application/json">(.*?)</script>', text, re.S)
    assert frames is not None
    caps = [f["caption"] for f in json.loads(frames.group(1))]
    assert caps[0] == "0: boot" and caps[-1] == "3: after compact_memory" and len(caps) == 4
    assert len({f["src"] for f in json.loads(frames.group(1))}) == 4  # four different maps
    assert "Before and after compact_memory" in text and "Node 0, zone   Normal" in text


def test_cli_memmap_snapshot_and_inspect_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "s02.png"
    assert main(["memmap", str(S02), "-o", str(png)]) == 0
    assert mpimg.imread(png).shape[0] > 500
    out = tmp_path / "inspect.html"
    assert main(["inspect", str(S02), "--html", str(out)]) == 0
    printed = capsys.readouterr()
    assert "fragsim inspect" in printed.out and f"wrote {out}" in printed.err
    assert "Memory map" in out.read_text()


def test_cli_memmap_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["memmap", str(S02), "--demo", "-o", str(tmp_path / "x.png")])
    assert e.value.code == 2 and "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["memmap", str(S02)])
    assert "give -o PNG" in capsys.readouterr().err
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "buddyinfo").write_text("Node 0, zone Normal 1 0 0 0 0 0 0 0 0 0 0\n")
    assert main(["memmap", str(tmp_path / "snap"), "-o", str(tmp_path / "x.png")]) == 2
    assert "no kpageflags" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
