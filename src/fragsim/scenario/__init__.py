"""Scenarios: a run described in a TOML file (fragsim/scenario/config.py), on a simulated
clock (fragsim/scenario/engine.py)."""

from fragsim.scenario.config import Scenario, expand_compare, load_scenario

__all__ = ["Scenario", "expand_compare", "load_scenario"]
