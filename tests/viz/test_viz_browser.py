"""The HTML reports in a real browser: headless Chromium (Debian's ``chromium`` package, which
scripts/setup installs) driven by Playwright through its ``executable_path`` (no browser
download). A missing Chromium or Playwright fails these tests with a message saying how to
install them; it never skips them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fragsim.cli import main
from fragsim.results import ResultsDB

S02 = Path(__file__).resolve().parent.parent / "fixtures" / "real" / "oracle-6.1" / "s02_fragmented"
INSTALL = (
    "scripts/setup installs it (apt-get install chromium, and Playwright from PyPI through "
    "pip install -e '.[dev]'); or set FRAGSIM_CHROMIUM to a Chromium executable"
)


def chromium_path() -> str:
    """FRAGSIM_CHROMIUM, else ``chromium`` on the PATH; a clear failure when neither works."""
    path = os.environ.get("FRAGSIM_CHROMIUM")
    if path:
        if not os.access(path, os.X_OK):
            pytest.fail(f"FRAGSIM_CHROMIUM={path} is not an executable: {INSTALL}")
        return path
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(f"headless Chromium not found (no 'chromium' on the PATH): {INSTALL}")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.fail(f"Playwright for Python is not installed ({e}): {INSTALL}")
    exe = chromium_path()
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, headless=True)
        except Exception as e:  # noqa: BLE001 - say which executable failed, and how
            pytest.fail(f"Chromium at {exe} did not start: {e}")
        yield b
        b.close()


@dataclass
class Loaded:
    """A page opened from a file, with everything it logged and requested."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def open_report(browser: Any, path: Path) -> Loaded:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    loaded = Loaded(page)
    page.on("console", lambda m: m.type in ("error", "warning") and loaded.errors.append(m.text))
    page.on("pageerror", lambda e: loaded.errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: loaded.errors.append(f"request failed: {r.url}"))
    page.on("request", lambda r: loaded.requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    return loaded


def check_loaded(loaded: Loaded, path: Path) -> None:
    """No console error or warning, nothing fetched but the file itself and its data: URIs,
    every image decoded."""
    page = loaded.page
    assert loaded.errors == []
    assert [u for u in loaded.requests if not u.startswith("data:")] == [path.as_uri()]
    sizes = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert sizes and all(ok and w > 0 and h > 0 for ok, w, h in sizes)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reports")
    paths = {"inspect": d / "inspect.html", "demo": d / "demo.html"}
    assert main(["inspect", str(S02), "--html", str(paths["inspect"])]) == 0
    demo = ["memmap", "--demo", "--profile", "flat:16384", "--html", str(paths["demo"])]
    assert main(demo) == 0
    return paths


def test_inspect_report_loads_with_tables_and_map(browser: Any, reports: dict[str, Path]) -> None:
    path = reports["inspect"]
    loaded = open_report(browser, path)
    check_loaded(loaded, path)
    page = loaded.page
    assert page.title() == f"fragsim inspect {S02}"
    headings = page.locator("h2").all_inner_texts()
    assert "Node 0, zone DMA32" in headings and "Memory map" in headings
    assert page.locator("table").count() >= 6
    # the order table of DMA32 shows a verdict for orders 1..10
    rows = page.locator("section:has(h2:text-is('Node 0, zone DMA32')) table >> nth=1 >> tbody tr")
    assert rows.count() == 10
    assert "succeeds now" in rows.nth(0).inner_text()
    box = page.locator("section:has(h2:text-is('Memory map')) img").bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 400
    page.close()


def test_slider_changes_the_map(browser: Any, reports: dict[str, Path]) -> None:
    path = reports["demo"]
    loaded = open_report(browser, path)
    check_loaded(loaded, path)
    page = loaded.page
    slider = page.locator("figure.slider input[type=range]")
    img = page.locator("figure.slider img")
    caption = page.locator("figure.slider .frame-caption")
    assert caption.inner_text() == "0: boot"
    shots = [img.screenshot()]
    srcs = [hash(img.get_attribute("src"))]
    slider.focus()
    page.keyboard.press("ArrowRight")  # as a user would: the input event fires
    assert slider.input_value() == "1"
    assert caption.inner_text().startswith("1: after ") and "allocations" in caption.inner_text()
    shots.append(img.screenshot())
    srcs.append(hash(img.get_attribute("src")))
    page.keyboard.press("End")
    assert caption.inner_text() == "3: after compact_memory"
    assert img.get_attribute("alt") == "3: after compact_memory"
    shots.append(img.screenshot())
    srcs.append(hash(img.get_attribute("src")))
    assert len(set(srcs)) == 3
    # what is on screen changed, not only the attribute: compare the rendered pixels
    import io

    import matplotlib.image as mpimg

    px = [mpimg.imread(io.BytesIO(s), format="png") for s in shots]
    assert px[0].shape == px[1].shape == px[2].shape
    assert not np.array_equal(px[0], px[1]) and not np.array_equal(px[1], px[2])
    page.keyboard.press("Home")
    assert caption.inner_text() == "0: boot"
    assert np.array_equal(mpimg.imread(io.BytesIO(img.screenshot()), format="png"), px[0])
    assert loaded.errors == []
    page.close()


SMALL = Path(__file__).resolve().parent.parent / "fixtures" / "scenarios" / "small-android.toml"


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fragsim report latest`` of a --compare pair of tiny runs (two runs overlaid)."""
    d = tmp_path_factory.mktemp("run-report")
    db, out = d / "r.duckdb", d / "report.html"
    run = ["run", str(SMALL), "--compare", "drivers.gpu.movable=false,true", "--db", str(db)]
    assert main(run) == 0
    ids = [r["id"] for r in ResultsDB(db).runs()]  # newest first
    assert main(["report", ids[1], ids[0], "--db", str(db), "-o", str(out)]) == 0
    return out


def test_run_report_loads_with_plots_tables_and_a_moving_map(
    browser: Any, run_report: Path
) -> None:
    import io

    import matplotlib.image as mpimg

    loaded = open_report(browser, run_report)
    check_loaded(loaded, run_report)
    page = loaded.page
    assert page.title().startswith("fragsim report: small-android (")
    headings = page.locator("h2").all_inner_texts()
    assert headings[:3] == ["Runs", "Summary", "Over simulated time"]
    assert "drivers.gpu.movable=false: memory map through the run" in headings
    # the summary tables, one column per run and the difference
    comp = page.locator("table:has(caption:text-is('Compaction and migration'))")
    assert comp.locator("thead th").all_inner_texts() == [
        "",
        "drivers.gpu.movable=false",
        "drivers.gpu.movable=true",
        "diff",
    ]
    assert comp.locator("tbody tr").count() == 8
    assert page.locator("table").count() >= 10
    # seven plots, each drawn at a readable size
    plots = page.locator("section:has(h2:text-is('Over simulated time')) img")
    assert plots.count() == 7
    for i in range(7):
        box = plots.nth(i).bounding_box()
        assert box is not None and box["width"] > 500 and box["height"] > 200
    # the slider of the first run walks its map through the run
    fig = page.locator("figure.slider").first
    slider, img, caption = (
        fig.locator("input[type=range]"),
        fig.locator("img"),
        fig.locator(".frame-caption"),
    )
    assert caption.inner_text() == "00:00:00 (map 1 of 11)"
    first = mpimg.imread(io.BytesIO(img.screenshot()), format="png")
    slider.focus()
    page.keyboard.press("End")
    assert slider.input_value() == "10"
    assert caption.inner_text() == "00:20:00 (map 11 of 11)"
    last = mpimg.imread(io.BytesIO(img.screenshot()), format="png")
    assert first.shape == last.shape and not np.array_equal(first, last)
    page.keyboard.press("ArrowLeft")
    assert caption.inner_text() == "00:18:00 (map 10 of 11)"
    assert loaded.errors == []
    page.close()
