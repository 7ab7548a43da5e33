"""The seed's A/B study on the model: seed-arm-gpu-zram-512m (an ARM phone, GPU ~35 %, zram ~25 %)
for one simulated hour with the drivers' pages unmovable (movable=off) and movable (on), for
three seeds. What the model says, for every seed tried:

* the drivers' unmovable pages spread over most pageblocks (they fall back into movable
  pageblocks and claim them); movable, they leave only a handful of unmovable pageblocks;
* with them movable, compaction has next to nothing to do; unmovable, kcompactd (woken by
  kswapd after each boosted fallback, and by proactive compaction) migrates tens of thousands
  of pages to rebuild free blocks;
* no order-3 allocation fails either way at these rates (Linux 6.1's boosting, kcompactd,
  the highatomic reserve and direct compaction keep them satisfied), so "fewer order-3 failures
  with movable" is "no more".

What the model does NOT say is the seed's second claim, "more free high-order blocks with
movable": free blocks of order 3+ at the end go either way between seeds (compaction works hard
in the unmovable run and builds them). The summary's "Why" line gives the mechanism; the
notes of issue 5 give the one-day numbers."""

from __future__ import annotations

from typing import Any

import pytest

from fragsim.scenario.config import load_scenario
from fragsim.scenario.runner import run_scenario
from fragsim.scenario.summary import explain

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def runs() -> dict[int, dict[str, dict[str, Any]]]:
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in SEEDS:
        out[seed] = {}
        for mv in ("off", "on"):
            sc = load_scenario(
                "seed-arm-gpu-zram-512m", sets=[f"movable={mv}"], seed=seed, until="1h"
            )
            out[seed][mv] = run_scenario(sc).summary
    return out


def _failures(s: dict[str, Any], order: int) -> int:
    return sum(c["failures"][order] for c in s["alloc"].values())


@pytest.mark.parametrize("seed", SEEDS)
def test_movable_driver_pages_leave_few_unmovable_pageblocks(
    runs: dict[int, dict[str, dict[str, Any]]], seed: int
) -> None:
    off, on = runs[seed]["off"]["pageblocks"], runs[seed]["on"]["pageblocks"]
    assert off["Unmovable"] > 100  # of 256: GPU and zsmalloc pages claimed them
    assert on["Unmovable"] * 10 < off["Unmovable"]


@pytest.mark.parametrize("seed", SEEDS)
def test_movable_driver_pages_need_far_less_compaction(
    runs: dict[int, dict[str, dict[str, Any]]], seed: int
) -> None:
    off, on = runs[seed]["off"]["compaction"], runs[seed]["on"]["compaction"]
    assert off["pgmigrate_success"] > 5000
    assert on["pgmigrate_success"] * 5 < off["pgmigrate_success"]


@pytest.mark.parametrize("seed", SEEDS)
def test_no_more_high_order_failures_with_movable_pages(
    runs: dict[int, dict[str, dict[str, Any]]], seed: int
) -> None:
    off, on = runs[seed]["off"], runs[seed]["on"]
    for order in (2, 3):
        assert _failures(on, order) <= _failures(off, order)
    # both runs asked for the same order-3 network buffers (GFP_ATOMIC)
    assert off["alloc"]["ATOMIC"]["attempts"][3] == on["alloc"]["ATOMIC"]["attempts"][3] > 10000


def test_the_summary_says_why(runs: dict[int, dict[str, dict[str, Any]]]) -> None:
    off, on = runs[0]["off"], runs[0]["on"]
    text = "\n".join(explain([off, on], ["movable=off", "movable=on"]))
    assert (
        f"Unmovable pageblocks at the end: {off['pageblocks']['Unmovable']} with movable=off"
        in (text)
    )
    assert "Why: with movable=off, unmovable allocations spread over" in text
    assert "boost_watermark" in text
